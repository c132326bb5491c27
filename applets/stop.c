/* runjob stop: signal jobs, kill them after a grace period, print their final status. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "applets/client.h"
#include "applets/format.h"

static const char usage[] =
    "Usage: runjob stop [flags] <job>...\n"
    "       runjob stop [flags] --all\n"
    "\n"
    "Stop jobs: the server sends each a signal (its --stop-signal, SIGTERM unless set, or what\n"
    "--signal says), waits for the grace period, then kills every process the job has left.\n"
    "Prints the final status. A job that had already ended is left as it was: one line on\n"
    "stderr says so (\"job ID had already ended: exited with code 0\"), its status is printed\n"
    "and stop exits 0, so that stopping is safe to repeat.\n"
    "A job is its id, a unique prefix of the id, or a name (your most recent job of that name).\n"
    "Several jobs are stopped at once, each with its own grace; stop exits 255 if any of them\n"
    "could not be stopped (each failure has its line on stderr).\n"
    "\n"
    "Stop:\n"
    "  -s, --signal NAME|NUMBER   the first signal (TERM, INT, HUP, 15, ...; default: the\n"
    "                             server's --stop-signal, TERM unless set)\n"
    "  -g, --grace DURATION       how long to wait before the kill: 500ms, 10s, 2m (the\n"
    "                             server's default is 10s; 0 kills at once)\n"
    "      --all                  every running job of yours (only yours, administrators too)\n"
    "\n" CLIENT_USAGE "\n"
    "Examples:\n"
    "  runjob stop 7c9e6679-7425-40de-944b-e07fc1f90ae7\n"
    "  runjob stop --signal INT --grace 30s backup 7c9e\n"
    "  runjob stop --all --grace 0\n";

/* At most this many Stops in flight: each may wait out its grace. */
#define STOP_PARALLEL 16

enum { OPT_ALL = CLIENT_OPT_APPLET };

struct stop_flags {
    Runjob__V1__StopRequest req;
    const char *grace_arg; /* --grace as typed */
    bool all;
};

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
    struct stop_flags *f = ctx;

    switch (opt) {
    case 's':
        if (fmt_parse_signal(arg, &f->req.signal) < 0)
            return client_usage_error(o, "--signal '%s' is not a signal (TERM, KILL, 15 ...)", arg);
        return CLIENT_OPT_DONE;
    case 'g':
        f->grace_arg = arg;
        if (fmt_parse_duration(arg, &f->req.grace_millis) < 0)
            return client_usage_error(o, "--grace '%s' is not a duration (like 10s, 500ms)", arg);
        if (f->req.grace_millis == 0)
            f->req.grace_millis = -1; /* on the wire 0 means "the server's default" */
        return CLIENT_OPT_DONE;
    case OPT_ALL:
        f->all = true;
        return CLIENT_OPT_DONE;
    default:
        return CLIENT_OPT_OTHER;
    }
}

/* The stops, shared by the threads that make them. */
struct stops {
    const struct client_opts *o;
    struct rpc_client *c;
    const Runjob__V1__StopRequest *req;
    const char *grace_arg;
    char (*ids)[ID_LEN + 1];
    Runjob__V1__JobStatus **results; /* by index; NULL where it failed */
    size_t n;
    pthread_mutex_t mu;
    size_t next; /* under mu */
};

/* The server judges the grace in the wire's words ("grace_millis=7200000 is above the maximum
 * 3600000"): say it in the flag's, as typed, and in the help's units. */
static void grace_in_flag_words(const struct stops *sp, struct rpc_error *err)
{
    long long asked, max;
    char max_s[32];

    if (err->code != RPC_INVALID_ARGUMENT || !sp->grace_arg ||
        sscanf(err->message, "grace_millis=%lld is above the maximum %lld", &asked, &max) != 2)
        return;
    (void)snprintf(err->message, sizeof(err->message), "--grace %s is above the maximum %s",
                   sp->grace_arg, fmt_duration(max_s, sizeof(max_s), max));
}

/* Stops one job: its final status, or NULL with the failure printed. */
static Runjob__V1__JobStatus *stop_one(const struct stops *sp, const char *id)
{
    Runjob__V1__StopRequest req = *sp->req;
    Runjob__V1__StatusRequest sreq = RUNJOB__V1__STATUS_REQUEST__INIT;
    Runjob__V1__JobStatus *st = NULL;
    struct rpc_error err = {0};

    /* Ask first, so that an ended job is named as such rather than seemingly stopped now. A
     * job that ends between the two calls is stopped as usual (the Stop is then a no-op).
     * Whatever the Status call or the request itself gets wrong, the Stop says, as before. */
    sreq.id = (char *)id;
    if (req.grace_millis <= RPC_MAX_GRACE_MS && rpc_client_status(sp->c, &sreq, &st, &err) == 0 &&
        job_ended(st)) {
        char word[600];
        fprintf(stderr, "%s: %s: job %s had already ended: %s\n", sp->o->prog, sp->o->verb, id,
                fmt_status_word(word, sizeof(word), st));
        return st;
    }
    if (st)
        protobuf_c_message_free_unpacked(&st->base, NULL);
    st = NULL;
    err = (struct rpc_error){0};
    req.id = (char *)id;
    if (rpc_client_stop(sp->c, &req, &st, &err) < 0) {
        grace_in_flag_words(sp, &err);
        if (sp->n > 1) /* say which */
            (void)snprintf(err.message + strlen(err.message),
                           sizeof(err.message) - strlen(err.message), " [job %s]", id);
        (void)client_fail(sp->o, &err);
        return NULL;
    }
    return st;
}

static void *stopper_main(void *arg)
{
    struct stops *sp = arg;

    for (;;) {
        size_t i;
        (void)pthread_mutex_lock(&sp->mu);
        i = sp->next++;
        (void)pthread_mutex_unlock(&sp->mu);
        if (i >= sp->n)
            return NULL;
        sp->results[i] = stop_one(sp, sp->ids[i]);
    }
}

int applet_stop_main(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS,
                                             {"signal", required_argument, NULL, 's'},
                                             {"grace", required_argument, NULL, 'g'},
                                             {"all", no_argument, NULL, OPT_ALL},
                                             {NULL, 0, NULL, 0}};
    struct stop_flags f = {.req = RUNJOB__V1__STOP_REQUEST__INIT};
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    _cleanup_(client_jobs_freep) struct client_jobs *js = NULL;
    struct stops sp = {.mu = PTHREAD_MUTEX_INITIALIZER};
    pthread_t threads[STOP_PARALLEL];
    size_t n_threads = 0, n_ok = 0;
    struct client_opts o;
    int r, ret = 0;

    client_init(&o, argc, argv);
    if ((r = client_parse_flags(&o, CLIENT_SHORTOPTS "s:g:", longopts, usage, take_stop_flag,
                                &f)) != CLIENT_OPT_DONE)
        return r;
    if (f.all && optind < argc)
        return client_usage_error(&o, "--all stops every running job of yours: name no job");
    if (!f.all && optind >= argc)
        return client_usage_error(&o, "missing the job: an id, a prefix of it, or a name");
    for (int i = optind; i < argc; i++)
        if (!argv[i][0])
            return client_usage_error(&o, "a job id or name is empty");
    if ((r = client_connect(&o, &c)))
        return r;
    if (f.all) {
        if ((r = client_jobs_mine(&o, c, &js, true, &sp.ids, &sp.n)))
            return r;
        if (!sp.n) {
            fprintf(stderr, "%s: %s: you have no running job\n", o.prog, o.verb);
            free(sp.ids);
            return 0;
        }
    } else {
        sp.ids = calloc((size_t)(argc - optind), sizeof(*sp.ids));
        if (!sp.ids)
            return client_usage_error(&o, "out of memory");
        for (int i = optind; i < argc; i++) {
            char id[ID_LEN + 1];
            bool dup = false;
            if ((r = client_jobs_resolve(&o, c, &js, argv[i], id))) {
                ret = r; /* said; the others are still stopped */
                continue;
            }
            for (size_t k = 0; k < sp.n; k++)
                dup = dup || strcmp(sp.ids[k], id) == 0;
            if (!dup)
                memcpy(sp.ids[sp.n++], id, sizeof(id));
        }
    }
    sp.o = &o;
    sp.c = c;
    sp.req = &f.req;
    sp.grace_arg = f.grace_arg;
    sp.results = calloc(sp.n + 1, sizeof(*sp.results));
    if (!sp.results) {
        free(sp.ids);
        return client_usage_error(&o, "out of memory");
    }
    for (; n_threads < STOP_PARALLEL && n_threads + 1 < sp.n; n_threads++)
        if (pthread_create(&threads[n_threads], NULL, stopper_main, &sp) != 0)
            break;
    (void)stopper_main(&sp); /* and this thread too, so that one job needs no thread */
    for (size_t i = 0; i < n_threads; i++)
        (void)pthread_join(threads[i], NULL);

    /* The table in the order asked, without the failures (said on stderr). */
    for (size_t i = 0; i < sp.n; i++)
        if (sp.results[i])
            sp.results[n_ok++] = sp.results[i];
        else
            ret = CLIENT_EXIT_FAILED;
    if (n_ok && client_print_jobs(&o, sp.results, n_ok, sp.n > 1, false) != 0 && !ret)
        ret = 1;
    for (size_t i = 0; i < n_ok; i++)
        protobuf_c_message_free_unpacked(&sp.results[i]->base, NULL);
    free(sp.results);
    free(sp.ids);
    return ret;
}
