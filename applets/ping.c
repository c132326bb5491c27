/* runjob ping: is the server there, which version, and who does it think we are. */
#include <stdlib.h>
#include <time.h>

#include "applets/client.h"

static const char usage[] =
    "Usage: runjob ping [flags]\n"
    "\n"
    "Check that the server answers and that it accepts your certificate: prints the server's\n"
    "version, the round-trip time, and the name your certificate gives you there, and the\n"
    "agent the call went through, if one did (runjob agent).\n"
    "\n" CLIENT_USAGE "\n"
    "Examples:\n"
    "  runjob ping\n"
    "  runjob ping -H build.example.com -P 8443 --user alice\n";

int applet_ping_main(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS, {NULL, 0, NULL, 0}};
    Runjob__V1__PingRequest req = RUNJOB__V1__PING_REQUEST__INIT;
    Runjob__V1__PingResponse *pong = NULL;
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    struct client_opts o;
    struct rpc_error err = {0};
    struct timespec t0, t1;
    int r;

    client_init(&o, argc, argv);
    if ((r = client_parse_flags(&o, CLIENT_SHORTOPTS, longopts, usage, NULL, NULL)) !=
        CLIENT_OPT_DONE)
        return r;
    if (optind < argc)
        return client_usage_error(&o, "unexpected argument '%s'", argv[optind]);
    if ((r = client_connect(&o, &c)))
        return r;
    (void)clock_gettime(CLOCK_MONOTONIC, &t0);
    if (rpc_client_ping(c, &req, &pong, &err) < 0)
        return client_fail(&o, &err);
    (void)clock_gettime(CLOCK_MONOTONIC, &t1);
    if (o.output == CLIENT_OUTPUT_JSON) {
        r = client_print_json(&pong->base);
    } else {
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        printf("server %s at %s:%d answered in %.1f ms\n", pong->version, o.host, o.port, ms);
        /* The administrator's CN is "administrator": say what it may do, not its name twice. */
        printf("authenticated as %s%s\n", pong->peer_cn,
               pong->is_admin ? " (sees and stops every user's jobs)" : "");
        /* The time above is then the relay's too: say so, and which agent. */
        if (rpc_client_relayed(c))
            printf("via agent %s\n", getenv("RUNJOB_AGENT_SOCK"));
        r = 0;
    }
    protobuf_c_message_free_unpacked(&pong->base, NULL);
    return r;
}
