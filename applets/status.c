/* runjob status (alias query): one job's state, exit code, resource use. */
#include "applets/client.h"

static const char usage[] =
    "Usage: runjob status [flags] <job>      (also: runjob query <job>)\n"
    "\n"
    "Show one job: its state (running, exited, killed, failed, lost), exit code or signal,\n"
    "when it started and how long it ran, peak memory, CPU time, whether it ran out of memory\n"
    "(oom) or wrote more output than the server keeps (truncated), and any error.\n"
    "-o wide adds the command, pid, limits and output size; -o json prints every field, the\n"
    "state in the table's words (\"state\": \"exited\") and each time twice: milliseconds\n"
    "since the epoch (\"start_time_ms\") and RFC 3339 in UTC with milliseconds\n"
    "(\"start_time\": \"2026-12-04T02:30:00.123Z\", null until it happens).\n"
    "The job is its id, a unique prefix of the id (7c9e), or a name: your most recent job of\n"
    "that name.\n"
    "\n" CLIENT_USAGE "\n"
    "Examples:\n"
    "  runjob status 7c9e6679-7425-40de-944b-e07fc1f90ae7\n"
    "  runjob status 7c9e        (a unique prefix)   runjob status backup   (by name)\n"
    "  runjob status -o json 7c9e6679-7425-40de-944b-e07fc1f90ae7 | python3 -m json.tool\n";

int applet_status_main(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS, {NULL, 0, NULL, 0}};
    Runjob__V1__StatusRequest req = RUNJOB__V1__STATUS_REQUEST__INIT;
    Runjob__V1__JobStatus *st = NULL;
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    struct client_opts o;
    struct rpc_error err = {0};
    _cleanup_(client_jobs_freep) struct client_jobs *js = NULL;
    char id[ID_LEN + 1];
    const char *arg;
    int r;

    client_init(&o, argc, argv);
    if ((r = client_parse_flags(&o, CLIENT_SHORTOPTS, longopts, usage, NULL, NULL)) !=
        CLIENT_OPT_DONE)
        return r;
    if ((r = client_one_arg(&o, argc, argv, "job id or name", &arg)) ||
        (r = client_connect(&o, &c)) || (r = client_jobs_resolve(&o, c, &js, arg, id)))
        return r;
    req.id = (char *)id;
    if (rpc_client_status(c, &req, &st, &err) < 0)
        return client_fail(&o, &err);
    r = client_print_jobs(&o, &st, 1, false, false);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    return r;
}
