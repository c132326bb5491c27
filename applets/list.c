/* runjob list: the caller's jobs (every job for an administrator), oldest first. */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "applets/client.h"
#include "applets/format.h"
#include "applets/suggest.h"

static const char usage[] =
    "Usage: runjob list [flags]\n"
    "\n"
    "List your jobs, oldest first (an administrator sees everyone's, with an OWNER column).\n"
    "-o json prints {\"jobs\": [...]}, each job as `runjob status -o json` prints it.\n"
    "\n"
    "Filters:\n"
    "      --state STATE[,STATE]  only jobs in these states: starting, running, exited,\n"
    "                             killed, failed, lost\n"
    "      --name PATTERN         only jobs whose name matches (shell pattern: 'build-*')\n"
    "  -q, --quiet                print only the job ids, one per line\n"
    "\n" CLIENT_USAGE "\n"
    "Examples:\n"
    "  runjob list\n"
    "  runjob list --state running,starting -o wide\n"
    "  runjob list --name 'nightly-*' -o json\n";

enum { OPT_STATE = CLIENT_OPT_APPLET, OPT_NAME };

struct list_filter {
    unsigned states; /* bit per JobState; 0 = all */
    const char *name;
    bool quiet;
};

/* "--state 'runing' is not a job state (starting, running, ...); did you mean 'running'?" */
static int bad_state(struct client_opts *o, const char *typed)
{
    const ProtobufCEnumDescriptor *d = &runjob__v1__job_state__descriptor;
    char names[16][32], all[256] = "", hint[128];
    const char *cands[16];
    size_t n = 0, len = 0;

    /* The words the table prints, in the proto's order, as completion offers them. */
    for (unsigned i = 0; i < d->n_values && n < 16; i++) {
        fmt_state_name(names[n], sizeof(names[n]), d->values[i].value);
        if (strcmp(names[n], "?") == 0)
            continue;
        len += (size_t)snprintf(all + len, sizeof(all) - len, "%s%s", n ? ", " : "", names[n]);
        if (len >= sizeof(all))
            break;
        cands[n] = names[n];
        n++;
    }
    (void)suggest_text(typed, cands, n, "", hint, sizeof(hint));
    return client_usage_error(o, "--state '%s' is not a job state (%s)%s", typed, all, hint);
}

static int take_list_flag(struct client_opts *o, int opt, const char *arg, void *ctx)
{
    struct list_filter *lf = ctx;

    switch (opt) {
    case 'q':
        lf->quiet = true;
        return CLIENT_OPT_DONE;
    case OPT_NAME:
        lf->name = arg;
        return CLIENT_OPT_DONE;
    case OPT_STATE: {
        _cleanup_free_ char *list = strdup(arg);
        char *save = NULL;
        if (!list)
            return client_usage_error(o, "out of memory");
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int st;
            if (fmt_parse_state(t, &st) < 0)
                return bad_state(o, t);
            lf->states |= 1u << st;
        }
        if (!lf->states)
            return client_usage_error(o, "--state is empty");
        return CLIENT_OPT_DONE;
    }
    default:
        return CLIENT_OPT_OTHER;
    }
}

/* A job the filter keeps (a state out of our range never matches a --state filter). */
static bool list_filter_keeps(const struct list_filter *lf, const Runjob__V1__JobStatus *j)
{
    if (lf->states && (j->state < 0 || j->state >= 32 || !(lf->states & (1u << j->state))))
        return false;
    return !lf->name || fnmatch(lf->name, j->name ? j->name : "", 0) == 0;
}

int applet_list_main(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS,
                                             {"state", required_argument, NULL, OPT_STATE},
                                             {"name", required_argument, NULL, OPT_NAME},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {NULL, 0, NULL, 0}};
    Runjob__V1__ListRequest req = RUNJOB__V1__LIST_REQUEST__INIT;
    Runjob__V1__ListResponse *resp = NULL;
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    struct client_opts o;
    struct rpc_error err = {0};
    struct list_filter lf = {0};
    bool admin = false;
    int r;

    client_init(&o, argc, argv);
    if ((r = client_parse_flags(&o, CLIENT_SHORTOPTS "q", longopts, usage, take_list_flag, &lf)) !=
        CLIENT_OPT_DONE)
        return r;
    if (optind < argc)
        return client_usage_error(&o, "unexpected argument '%s'", argv[optind]);
    if ((r = client_connect(&o, &c)))
        return r;
    if (rpc_client_list(c, &req, &resp, &err) < 0)
        return client_fail(&o, &err);

    size_t n = 0;
    for (size_t i = 0; i < resp->n_jobs; i++) { /* filter in place */
        Runjob__V1__JobStatus *j = resp->jobs[i];
        if (!list_filter_keeps(&lf, j))
            continue;
        resp->jobs[i] = resp->jobs[n];
        resp->jobs[n++] = j;
    }
    if (lf.quiet) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", resp->jobs[i]->id);
    } else {
        if (o.output == CLIENT_OUTPUT_TABLE) { /* the OWNER column is for administrators */
            Runjob__V1__PingRequest preq = RUNJOB__V1__PING_REQUEST__INIT;
            Runjob__V1__PingResponse *pong = NULL;
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
