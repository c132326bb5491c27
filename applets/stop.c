/* runjob stop: signal a job, kill it after a grace period, print its final status. */
#include "applets/client.h"
#include "applets/format.h"

static const char usage[] =
    "Usage: runjob stop [flags] <job-id>\n"
    "\n"
    "Stop a job: the server sends it a signal (its --stop-signal, SIGTERM unless set, or what\n"
    "--signal says), waits for the grace period, then kills every process the job has left.\n"
    "Prints the final status. A job that had already ended is left as it was: one line on\n"
    "stderr says so (\"job ID had already ended: exited with code 0\"), its status is printed\n"
    "and stop exits 0, so that stopping is safe to repeat.\n"
    "\n"
    "Stop:\n"
    "  -s, --signal NAME|NUMBER   the first signal (TERM, INT, HUP, 15, ...; default: the\n"
    "                             server's --stop-signal, TERM unless set)\n"
    "  -g, --grace DURATION       how long to wait before the kill: 500ms, 10s, 2m (the\n"
    "                             server's default is 10s; 0 kills at once)\n"
    "\n" CLIENT_USAGE "\n"
    "Examples:\n"
    "  runjob stop 7c9e6679-7425-40de-944b-e07fc1f90ae7\n"
    "  runjob stop --signal INT --grace 30s 7c9e6679-7425-40de-944b-e07fc1f90ae7\n";

static bool job_ended(const Runjob__V1__JobStatus *st)
{
    switch (st->state) {
    case RUNJOB__V1__JOB_STATE__JOB_STATE_EXITED:
    case RUNJOB__V1__JOB_STATE__JOB_STATE_KILLED:
    case RUNJOB__V1__JOB_STATE__JOB_STATE_FAILED_TO_START:
    case RUNJOB__V1__JOB_STATE__JOB_STATE_LOST:
        return true;
    case RUNJOB__V1__JOB_STATE__JOB_STATE_STARTING:
    case RUNJOB__V1__JOB_STATE__JOB_STATE_RUNNING:
    case _RUNJOB__V1__JOB_STATE_IS_INT_SIZE:
        break;
    }
    return false;
}

static int take_stop_flag(struct client_opts *o, int opt, const char *arg, void *ctx)
{
    Runjob__V1__StopRequest *req = ctx;

    switch (opt) {
    case 's':
        if (fmt_parse_signal(arg, &req->signal) < 0)
            return client_usage_error(o, "--signal '%s' is not a signal (TERM, KILL, 15 ...)", arg);
        return CLIENT_OPT_DONE;
    case 'g':
        if (fmt_parse_duration(arg, &req->grace_millis) < 0)
            return client_usage_error(o, "--grace '%s' is not a duration (like 10s, 500ms)", arg);
        if (req->grace_millis == 0)
            req->grace_millis = -1; /* on the wire 0 means "the server's default" */
        return CLIENT_OPT_DONE;
    default:
        return CLIENT_OPT_OTHER;
    }
}

int applet_stop_main(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS,
                                             {"signal", required_argument, NULL, 's'},
                                             {"grace", required_argument, NULL, 'g'},
                                             {NULL, 0, NULL, 0}};
    Runjob__V1__StopRequest req = RUNJOB__V1__STOP_REQUEST__INIT;
    Runjob__V1__StatusRequest sreq = RUNJOB__V1__STATUS_REQUEST__INIT;
    Runjob__V1__JobStatus *st = NULL;
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    struct client_opts o;
    struct rpc_error err = {0};
    const char *id;
    int r;

    client_init(&o, argc, argv);
    if ((r = client_parse_flags(&o, CLIENT_SHORTOPTS "s:g:", longopts, usage, take_stop_flag,
                                &req)) != CLIENT_OPT_DONE)
        return r;
    if ((r = client_job_id_arg(&o, argc, argv, &id)) || (r = client_connect(&o, &c)))
        return r;
    req.id = (char *)id;
    /* Ask first, so that an ended job is named as such rather than seemingly stopped now. A
     * job that ends between the two calls is stopped as usual (the Stop is then a no-op).
     * Whatever the Status call or the request itself gets wrong, the Stop says, as before. */
    sreq.id = (char *)id;
    if (req.grace_millis <= RPC_MAX_GRACE_MS && rpc_client_status(c, &sreq, &st, &err) == 0 &&
        job_ended(st)) {
        char word[600];
        fprintf(stderr, "%s: %s: job %s had already ended: %s\n", o.prog, o.verb, id,
                fmt_status_word(word, sizeof(word), st));
    } else {
        if (st)
            protobuf_c_message_free_unpacked(&st->base, NULL);
        st = NULL;
        err = (struct rpc_error){0};
        if (rpc_client_stop(c, &req, &st, &err) < 0)
            return client_fail(&o, &err);
    }
    r = client_print_jobs(&o, &st, 1, false, false);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    return r;
}
