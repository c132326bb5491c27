/* runjob list: the caller's jobs (every job for an administrator), oldest first. */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "applets/client.h"
#include "applets/format.h"

static const char usage[] =
    "Usage: runjob list [flags]\n"
    "\n"
    "List your jobs, oldest first (an administrator sees everyone's, with an OWNER column).\n"
    "\n"
    "Filters:\n"
    "      --state STATE[,STATE]  only jobs in these states: starting, running, exited,\n"
    "                             killed, failed, lost\n"
    "      --name PATTERN         only jobs whose name matches (shell pattern: 'build-*')\n"
    "  -q, --quiet                print only the job ids, one per line\n"
    "\n" CLIENT_USAGE
    "\n"
    "Examples:\n"
    "  runjob list\n"
    "  runjob list --state running,starting -o wide\n"
    "  runjob list --name 'nightly-*' -o json\n";

enum { OPT_STATE = CLIENT_OPT_APPLET, OPT_NAME };

int applet_list_main(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS,
                                             {"state", required_argument, NULL, OPT_STATE},
                                             {"name", required_argument, NULL, OPT_NAME},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {NULL, 0, NULL, 0}};
    Jobmanager__V1__ListRequest req = JOBMANAGER__V1__LIST_REQUEST__INIT;
    Jobmanager__V1__ListResponse *resp = NULL;
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    struct client_opts o;
    struct rpc_error err = {0};
    unsigned states = 0; /* bit per JobState; 0 = all */
    const char *name = NULL;
    bool quiet = false, admin = false;
    int opt, r;

    client_init(&o, argc, argv);
    while ((opt = getopt_long(argc, argv, ":" CLIENT_SHORTOPTS "q", longopts, NULL)) != -1) {
        if ((r = client_option(&o, opt, optarg, usage)) == CLIENT_OPT_DONE)
            continue;
        if (r != CLIENT_OPT_OTHER)
            return r;
        if (opt == 'q')
            quiet = true;
        if (opt == OPT_NAME)
            name = optarg;
        if (opt == OPT_STATE) {
            _cleanup_free_ char *list = strdup(optarg);
            char *save = NULL;
            for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int st;
                if (fmt_parse_state(t, &st) < 0)
                    return client_usage_error(&o, "--state '%s' is not a job state", t);
                states |= 1u << st;
            }
            if (!states)
                return client_usage_error(&o, "--state is empty");
        }
    }
    if (optind < argc)
        return client_usage_error(&o, "unexpected argument '%s'", argv[optind]);
    if ((r = client_opts_finish(&o)) || (r = client_dial(&o, &c)))
        return r;
    if (rpc_client_list(c, &req, &resp, &err) < 0)
        return client_fail(&o, &err);

    size_t n = 0;
    for (size_t i = 0; i < resp->n_jobs; i++) { /* filter in place */
        Jobmanager__V1__JobStatus *j = resp->jobs[i];
        if ((states && !(states & (1u << j->state))) ||
            (name && fnmatch(name, j->name ? j->name : "", 0) != 0))
            continue;
        resp->jobs[i] = resp->jobs[n];
        resp->jobs[n++] = j;
    }
    if (quiet) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", resp->jobs[i]->id);
    } else {
        if (o.output == CLIENT_OUTPUT_TABLE) { /* the OWNER column is for administrators */
            Jobmanager__V1__PingRequest preq = JOBMANAGER__V1__PING_REQUEST__INIT;
            Jobmanager__V1__PingResponse *pong = NULL;
            if (rpc_client_ping(c, &preq, &pong, &err) == 0) {
                admin = pong->is_admin;
                protobuf_c_message_free_unpacked(&pong->base, NULL);
            }
        }
        r = client_print_jobs(&o, resp->jobs, n, true, admin);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return r;
}
