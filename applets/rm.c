/* runjob rm: remove ended jobs, with their records and output. */
#include <stdio.h>
#include <string.h>

#include "applets/client.h"
#include "core/id.h"

static const char usage[] =
    "Usage: runjob rm [flags] <job>...\n"
    "\n"
    "Remove ended jobs from the server: each job's record and its output are deleted, and the\n"
    "job is unknown from then on (status, stream and list no longer show it). You may remove\n"
    "your own jobs; an administrator may remove anyone's. A job that is starting or running is\n"
    "refused (FAILED_PRECONDITION): stop it first. Another user's job is reported as not found,\n"
    "like an unknown id. A stream reading a job while it is removed gets the output there was,\n"
    "then ends normally.\n"
    "\n"
    "A job is its id, a unique prefix of the id, or a name (your most recent job of that name).\n"
    "Each job is tried in turn: a removed one is printed on stdout, a failure on stderr with its\n"
    "reason. The exit status is 0 when every job was removed, 255 when any was not.\n"
    "\n"
    "The server also removes ended jobs by itself: see `runjob serve --help`, --retain-ended\n"
    "and --max-state-bytes.\n"
    "\n" CLIENT_USAGE_NO_OUTPUT "\n"
    "Examples:\n"
    "  runjob rm 7c9e6679-7425-40de-944b-e07fc1f90ae7\n"
    "  runjob rm backup 3f2b\n"
    "  runjob rm $(runjob list -q --state exited)\n";

int applet_rm_main(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS_NO_OUTPUT, {NULL, 0, NULL, 0}};
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    _cleanup_(client_jobs_freep) struct client_jobs *js = NULL;
    struct client_opts o;
    int r, failed = 0;

    client_init(&o, argc, argv);
    if ((r = client_parse_flags(&o, CLIENT_SHORTOPTS_NO_OUTPUT, longopts, usage, NULL, NULL)) !=
        CLIENT_OPT_DONE)
        return r;
    if (optind >= argc)
        return client_usage_error(&o, "missing the job id");
    for (int i = optind; i < argc; i++)
        if (!*argv[i])
            return client_usage_error(&o, "job id %d is empty", i - optind + 1);
    if ((r = client_connect(&o, &c)))
        return r;
    for (int i = optind; i < argc; i++) {
        Runjob__V1__RemoveRequest req = RUNJOB__V1__REMOVE_REQUEST__INIT;
        Runjob__V1__RemoveResponse *resp = NULL;
        struct rpc_error err = {0};

        char id[ID_LEN + 1];

        if (client_jobs_resolve(&o, c, &js, argv[i], id)) {
            failed++; /* said */
            continue;
        }
        req.id = id;
        if (rpc_client_remove(c, &req, &resp, &err) < 0) {
            /* The server's words name the job; an error of the channel does not. */
            if (strstr(err.message, id))
                (void)client_fail(&o, &err);
            else
                fprintf(stderr, "%s: %s: %s: %s (%s)\n", o.prog, o.verb, id, err.message,
                        rpc_code_name(err.code));
            failed++;
            continue;
        }
        printf("%s\n", resp->id);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    (void)fflush(stdout);
    return failed ? CLIENT_EXIT_FAILED : 0;
}
