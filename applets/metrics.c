/* runjob metrics: the server's metrics, as its --metrics-file has them (administrators). */
#include <stdio.h>

#include "applets/client.h"

static const char usage[] =
    "Usage: runjob metrics [flags]\n"
    "\n"
    "Print the server's metrics in the Prometheus text format: jobs by state, running jobs by\n"
    "user, Start latency, calls by method and code, connections shed, the server's open files,\n"
    "memory and threads. For administrators; others get PERMISSION_DENIED. The server can also\n"
    "write the same text to a file for node_exporter (runjob serve --metrics-file).\n"
    "\n" CLIENT_USAGE "\n"
    "Examples:\n"
    "  runjob metrics --user administrator\n"
    "  runjob metrics | grep '^runjob_jobs'\n";

int applet_metrics_main(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS, {NULL, 0, NULL, 0}};
    Runjob__V1__MetricsRequest req = RUNJOB__V1__METRICS_REQUEST__INIT;
    Runjob__V1__MetricsResponse *resp = NULL;
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    struct client_opts o;
    struct rpc_error err = {0};
    int r;

    client_init(&o, argc, argv);
    if ((r = client_parse_flags(&o, CLIENT_SHORTOPTS, longopts, usage, NULL, NULL)) !=
        CLIENT_OPT_DONE)
        return r;
    if (optind < argc)
        return client_usage_error(&o, "unexpected argument '%s'", argv[optind]);
    if ((r = client_connect(&o, &c)))
        return r;
    if (rpc_client_metrics(c, &req, &resp, &err) < 0)
        return client_fail(&o, &err);
    if (o.output == CLIENT_OUTPUT_JSON)
        r = client_print_json(&resp->base);
    else
        r = fputs(resp->text, stdout) < 0 ? 1 : 0;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return r;
}
