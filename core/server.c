/* The server's life: setup (TLS, the state directory, gRPC, the threads), serving until a
 * signal, shutdown and free. The calls: server-calls.c (slots, CQ threads, dispatch),
 * server-unary.c and server-stream.c; server-internal.h between them. */
#include "server.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/grpc_security_constants.h>
#include <grpc/support/time.h>

#include "job.h"
#include "log.h"
#include "server-internal.h"
#include "tls.h"

#define SHUTDOWN_STREAM_WAIT_MS 5000

/* ---- setup ----------------------------------------------------------------------------- */

static void on_shutdown(struct tag *t, bool ok)
{
    struct server *s = (struct server *)((char *)t - offsetof(struct server, shutdown_tag));

    (void)ok;
    (void)pthread_mutex_lock(&s->mu);
    s->shutdown_done = true;
    (void)pthread_cond_broadcast(&s->cond);
    (void)pthread_mutex_unlock(&s->mu);
}

/* A slot a previous server made ahead and never used (its folder removed at load): its cgroup
 * may be there too. */
static void remove_unused_cgroup(const char *id, void *userdata)
{
    struct server *s = userdata;
    int r = job_runner_cleanup_stale(s->runner, id);

    if (r < 0)
        log_warn("job folder %s: removing the cgroup a previous server made ahead: %s, ignoring",
                 id, strerror(-r));
}

static void on_loaded(struct jobtab_entry *e, bool was_running, void *userdata)
{
    struct server *s = userdata;
    const struct jobtab_spec *spec = jobtab_entry_spec(e);
    struct outlog *log = NULL;
    char path[PATH_MAX];
    int r;

    if (was_running) {
        r = job_runner_cleanup_stale(s->runner, spec->id);
        if (r < 0)
            log_warn("job %s: removing the cgroup a previous server left: %s, ignoring", spec->id,
                     strerror(-r));
    }
    r = jobtab_entry_output_path(s->table, e, path, sizeof(path));
    if (r == 0)
        r = outlog_open(path, &log);
    if (r < 0)
        log_warn("job %s: its output log is unreadable (%s), ignoring", spec->id, strerror(-r));
    else
        jobtab_entry_attach(e, NULL, log);
}

static void fmt_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

int server_new(const struct server_config *cfg, struct server **ret, char *errbuf, size_t errlen)
{
    struct job_runner_config rc = {.prespawn_shims = JOB_PRESPAWN_DEFAULT};
    struct jobtab_config tc = {0};
    grpc_ssl_pem_key_cert_pair pair;
    grpc_server_credentials *creds;
    grpc_arg args[12];
    grpc_channel_args cargs;
    struct server *s;
    char addr[512];
    int r, n = 0;

    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    s->shutdown_tag.fn = on_shutdown;
    (void)pthread_mutex_init(&s->mu, NULL);
    (void)pthread_cond_init(&s->cond, NULL);

    r = tls_init();
    if (r < 0) {
        fmt_err(errbuf, errlen, "TLS 1.3-only enforcement could not be verified");
        free(s);
        return r;
    }
    r = job_runner_new(&rc, &s->runner);
    if (r < 0) {
        fmt_err(errbuf, errlen, "set up job isolation (cgroups)");
        free(s);
        return r;
    }
    tc.state_dir = cfg->state_dir;
    tc.admin_cns = cfg->admin_cns;
    tc.max_running_per_user = cfg->max_running_per_user;
    r = jobtab_new(&tc, &s->table);
    if (r < 0) {
        fmt_err(errbuf, errlen, "open the state directory '%s'", cfg->state_dir);
        server_free(s);
        return r;
    }
    r = jobtab_load(s->table, on_loaded, s);
    if (r < 0) {
        fmt_err(errbuf, errlen, "load the jobs in '%s'", cfg->state_dir);
        server_free(s);
        return r;
    }
    log_info("loaded %d job(s) from %s", r, cfg->state_dir);
    jobtab_drain_unused(s->table, remove_unused_cgroup, s); /* before any slot is made ahead */

    grpc_init();
    pair.private_key = cfg->key_pem;
    pair.cert_chain = cfg->cert_pem;
    creds = grpc_ssl_server_credentials_create_ex(
        cfg->ca_pem, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
    if (!creds) {
        fmt_err(errbuf, errlen, "load the server certificate and key");
        server_free(s);
        return -EINVAL;
    }
    memset(args, 0, sizeof(args));
#define INT_ARG(k, v)                                                                              \
    do {                                                                                           \
        args[n].type = GRPC_ARG_INTEGER;                                                           \
        args[n].key = (char *)(k);                                                                 \
        args[n++].value.integer = (v);                                                             \
    } while (0)
    INT_ARG(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, RPC_MAX_REQUEST_BYTES);
    /* Dead peers: ping every 30 s, drop after 10 s without an answer, also on idle streams. */
    INT_ARG(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
    INT_ARG(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    INT_ARG(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    INT_ARG(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    /* Clients may ping us every 10 s (their keepalive must be >= 10 s). */
    INT_ARG(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
    /* The server receives small frames (requests, window updates, pings), but gRPC grows a
     * connection's read buffer to 64 KiB slices after a few full reads and keeps one around per
     * connection: ~55 KiB per reader at 100 readers. 8 KiB slices read any request as well. */
    INT_ARG(GRPC_ARG_TCP_READ_CHUNK_SIZE, 8192);
    INT_ARG(GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, 8192);
#undef INT_ARG
    cargs.num_args = (size_t)n;
    cargs.args = args;
    s->gs = grpc_server_create(&cargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->gs, s->cq, NULL);
    server_register_methods(s);
    if (strchr(cfg->host, ':') && cfg->host[0] != '[')
        (void)snprintf(addr, sizeof(addr), "[%s]:%d", cfg->host, cfg->port);
    else
        (void)snprintf(addr, sizeof(addr), "%s:%d", cfg->host, cfg->port);
    s->port = grpc_server_add_http2_port(s->gs, addr, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0) {
        fmt_err(errbuf, errlen, "listen on %s", addr);
        server_free(s);
        return -EADDRNOTAVAIL;
    }
    grpc_server_start(s->gs);

    s->pool = calloc(1, sizeof(*s->pool));
    if (!s->pool) {
        server_free(s);
        return -ENOMEM;
    }
    (void)pthread_mutex_init(&s->pool->mu, NULL);
    (void)pthread_cond_init(&s->pool->cond, NULL);
    (void)pthread_cond_init(&s->pool->idle, NULL);
    s->pool->tail = &s->pool->head;
    /* Named for top -H, perf and gdb; gRPC names its own. */
    /* Created at [n]: the joins take the first n, so a failed create leaves no hole. */
    for (unsigned i = 0; i < START_THREADS; i++) {
        pthread_t *t = &s->pool->threads[s->pool->n_threads];
        if (pthread_create(t, NULL, server_start_thread, s) == 0) {
            (void)pthread_setname_np(*t, "rj-start");
            s->pool->n_threads++;
        }
    }
    for (unsigned i = 0; i < ELEMENTSOF(s->cq_threads); i++) {
        pthread_t *t = &s->cq_threads[s->n_cq_threads];
        if (pthread_create(t, NULL, server_cq_thread, s) == 0) {
            (void)pthread_setname_np(*t, "rj-rpc");
            s->n_cq_threads++;
        }
    }
    if (s->pool->n_threads == 0 || s->n_cq_threads == 0) {
        fmt_err(errbuf, errlen, "start the server threads");
        server_free(s);
        return -EAGAIN;
    }
    server_prepare_slots(s); /* the first Starts' folders */
    server_arm_slots(s);
    *ret = s;
    return 0;
}

int server_port(struct server *s)
{
    return s->port;
}

/* ---- shutdown -------------------------------------------------------------------------- */

static void count_stopped(struct job *j, void *userdata)
{
    struct server *s = userdata;

    (void)j;
    (void)pthread_mutex_lock(&s->mu);
    s->stopping_jobs--;
    (void)pthread_cond_broadcast(&s->cond);
    (void)pthread_mutex_unlock(&s->mu);
}

static void stop_one(struct jobtab_entry *e, void *userdata)
{
    struct server *s = userdata;
    struct job *j = jobtab_entry_job(e);

    if (!j || !job_is_running(j))
        return;
    (void)pthread_mutex_lock(&s->mu);
    s->stopping_jobs++;
    (void)pthread_mutex_unlock(&s->mu);
    if (job_stop_async(j, SIGTERM, s->cfg.policy.default_grace_ms, count_stopped, s) < 0)
        count_stopped(j, s);
}

static void wait_until(struct server *s, bool (*cond)(struct server *), int64_t timeout_ms)
{
    struct timespec dl;

    (void)clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (timeout_ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    (void)pthread_mutex_lock(&s->mu);
    while (!cond(s))
        if (pthread_cond_timedwait(&s->cond, &s->mu, &dl) == ETIMEDOUT)
            break;
    (void)pthread_mutex_unlock(&s->mu);
}

static bool jobs_stopped(struct server *s)
{
    return s->stopping_jobs == 0;
}

static bool grpc_down(struct server *s)
{
    return s->shutdown_done;
}

static bool calls_gone(struct server *s)
{
    return s->live_calls == 0;
}

int server_run(struct server *s, int sigfd)
{
    struct signalfd_siginfo si;
    struct pollfd p = {.fd = sigfd, .events = POLLIN};

    for (;;) {
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si) &&
            (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT))
            break;
    }
    log_info("signal %d: shutting down (stopping running jobs, grace %lld ms)", (int)si.ssi_signo,
             (long long)s->cfg.policy.default_grace_ms);

    /* 1. No new calls. */
    (void)pthread_mutex_lock(&s->mu);
    s->shutting_down = true;
    (void)pthread_mutex_unlock(&s->mu);
    tag_publish(&s->shutdown_tag);
    grpc_server_shutdown_and_notify(s->gs, s->cq, &s->shutdown_tag);

    /* 2. Starts still queued are refused; wait for those in progress. */
    (void)pthread_mutex_lock(&s->pool->mu);
    s->pool->stopping = true;
    while (s->pool->head || s->pool->busy)
        (void)pthread_cond_wait(&s->pool->idle, &s->pool->mu);
    (void)pthread_mutex_unlock(&s->pool->mu);

    /* 3. Stop every running job (signal, grace, kill); their logs close, so following
     *    streams send the final status and end. */
    jobtab_foreach(s->table, stop_one, s);
    wait_until(s, jobs_stopped, s->cfg.policy.default_grace_ms + 30000);

    /* 4. Give the streams a moment to drain, then cancel what is left. */
    wait_until(s, grpc_down, SHUTDOWN_STREAM_WAIT_MS);
    grpc_server_cancel_all_calls(s->gs);
    wait_until(s, grpc_down, 60000);
    wait_until(s, calls_gone, 10000);
    log_info("shut down");
    return 0;
}

static void free_attachments(struct jobtab_entry *e, void *userdata)
{
    struct job *j = jobtab_entry_job(e);
    struct outlog *log = jobtab_entry_log(e);
    bool calls_left = *(bool *)userdata;

    jobtab_entry_attach(e, NULL, NULL);
    if (j)
        job_free(j);
    /* A reader still open (a call we could not end) must not see its log freed. */
    if (log && !calls_left)
        outlog_free(log);
}

void server_free(struct server *s)
{
    bool calls_left;

    if (!s)
        return;
    if (s->gs) {
        (void)pthread_mutex_lock(&s->mu);
        bool need_shutdown = !s->shutting_down;
        s->shutting_down = true;
        (void)pthread_mutex_unlock(&s->mu);
        if (need_shutdown) {
            tag_publish(&s->shutdown_tag);
            grpc_server_shutdown_and_notify(s->gs, s->cq, &s->shutdown_tag);
            grpc_server_cancel_all_calls(s->gs);
        }
        if (s->n_cq_threads == 0) { /* nobody drives the queue: do it here */
            while (!s->shutdown_done) {
                grpc_event ev =
                    grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
                if (ev.type == GRPC_OP_COMPLETE) {
                    tag_arrived(ev.tag);
                    ((struct tag *)ev.tag)->fn(ev.tag, ev.success != 0);
                }
            }
        } else {
            wait_until(s, grpc_down, 60000);
        }
        grpc_server_destroy(s->gs);
        grpc_completion_queue_shutdown(s->cq);
        for (unsigned i = 0; i < s->n_cq_threads; i++)
            (void)pthread_join(s->cq_threads[i], NULL);
        grpc_completion_queue_destroy(s->cq);
    }
    if (s->pool) {
        (void)pthread_mutex_lock(&s->pool->mu);
        s->pool->stopping = true;
        s->pool->exiting = true;
        (void)pthread_cond_broadcast(&s->pool->cond);
        (void)pthread_mutex_unlock(&s->pool->mu);
        for (unsigned i = 0; i < s->pool->n_threads; i++)
            (void)pthread_join(s->pool->threads[i], NULL);
        if (s->table)
            server_prepared_free(s);
        free(s->pool);
    }
    /* Kills whatever still runs and waits for it (on_end callbacks hand final records to the
     * table's writer; jobtab_free below writes them and makes every record durable). */
    job_runner_free(s->runner);
    calls_left = s->live_calls > 0;
    if (calls_left)
        log_warn("%u call(s) did not end; keeping their output logs open", s->live_calls);
    if (s->table) {
        jobtab_foreach(s->table, free_attachments, &calls_left);
        jobtab_free(s->table);
    }
    if (s->gs)
        grpc_shutdown();
    (void)pthread_cond_destroy(&s->cond);
    (void)pthread_mutex_destroy(&s->mu);
    free(s);
}
