/* The server's life: setup (TLS, the state directory, gRPC, the threads), serving until a
 * signal, shutdown and free. The calls: server-calls.c (slots, CQ threads, dispatch),
 * server-unary.c and server-stream.c; server-internal.h between them. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/grpc_security_constants.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "accept.h"
#include "clock.h"
#include "log.h"
#include "rpc-internal.h"
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

/* gRPC's own log lines go to core/log, in the server's format (text or JSON), as "grpc: ..."
 * lines, but for the one its TLS layer writes when a handshake fails ("Handshake failed with
 * fatal error SSL_ERROR_SSL: ... certificate verify failed"): core/tls logs that refusal itself,
 * with the client's address and the reason in words, and rate-limited (core/tls.h "Refused
 * handshakes"). gRPC filters by GRPC_VERBOSITY (errors only by default) before calling this. */
static void grpc_log_line(gpr_log_func_args *a)
{
    static const char tsi_refused[] = "Handshake failed with fatal error";
    const char *file = a->file ? a->file : "?", *base = strrchr(file, '/');
    enum log_level level = LOG_ERROR;

    base = base ? base + 1 : file;
    if (strcmp(base, "ssl_transport_security.cc") == 0 &&
        strncmp(a->message, tsi_refused, sizeof(tsi_refused) - 1) == 0)
        return;
    switch (a->severity) {
    case GPR_LOG_SEVERITY_DEBUG:
        level = LOG_DEBUG;
        break;
    case GPR_LOG_SEVERITY_INFO:
        level = LOG_INFO;
        break;
    case GPR_LOG_SEVERITY_ERROR:
        level = LOG_ERROR;
        break;
    }
    log_msg(level, "grpc: %s (%s:%d)", a->message, base, a->line);
}

bool server_port_is_taken(const char *host, int port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res, *ai;
    char service[16];
    bool in_use = false;

    if (port <= 0)
        return false;
    (void)snprintf(service, sizeof(service), "%d", port);
    if (getaddrinfo(host, service, &hints, &res) != 0)
        return false;
    for (ai = res; ai && !in_use; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol), one = 1;
        if (fd < 0)
            continue;
        /* As gRPC's listener does: only a listening socket makes the port taken, not the
         * TIME-WAIT connections a server that just stopped leaves on it. */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        in_use = bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno == EADDRINUSE;
        (void)close(fd);
    }
    freeaddrinfo(res);
    return in_use;
}

int server_new(const struct server_config *cfg, struct server **ret, char *errbuf, size_t errlen)
{
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
    s->jm = cfg->manager;
    s->shutdown_tag.fn = on_shutdown;
    LIST_INIT(&s->watchers);
    (void)pthread_mutex_init(&s->mu, NULL);
    (void)pthread_cond_init(&s->cond, NULL);

    r = tls_init();
    if (r < 0) {
        (void)snprintf(errbuf, errlen, "TLS 1.3-only enforcement could not be verified");
        free(s);
        return r;
    }
    /* GRPC_VERBOSITY or GRPC_TRACE: someone is debugging gRPC and wants its own lines. */
    if (!getenv("GRPC_VERBOSITY") && !getenv("GRPC_TRACE"))
        gpr_set_log_function(grpc_log_line);
    rpc_grpc_init();
    pair.private_key = cfg->key_pem;
    pair.cert_chain = cfg->cert_pem;
    creds = grpc_ssl_server_credentials_create_ex(
        cfg->ca_pem, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
    if (!creds) {
        (void)snprintf(errbuf, errlen, "load the server certificate and key");
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
    /* A connection that has not finished its TLS handshake within 5 s is closed: a flood of
     * idle connections gives its fds back (core/accept.h keeps the listener alive meanwhile).
     * gRPC's default is 120 s. */
    INT_ARG(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, RPC_HANDSHAKE_MAX_MS);
    /* gRPC binds with SO_REUSEPORT by default: a second server on our port would start, and
     * the kernel would spread the connections over both. */
    INT_ARG(GRPC_ARG_ALLOW_REUSEPORT, 0);
    /* What a client may push before the server reads it: the stream window. BDP probing grows
     * it (to ~8 MiB on loopback) for a receiver that reads at speed; the server receives only
     * requests and a job's stdin, which must wait for the job (server-input.c). A fixed 1 MiB
     * holds a stalled Input call to that, and still carries 20 MB/s of stdin over a 50 ms
     * round trip. What the server sends is the client's window: untouched. */
    INT_ARG(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    INT_ARG(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1 << 20);
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
        r = server_port_is_taken(cfg->host, cfg->port) ? -EADDRINUSE : -EADDRNOTAVAIL;
        (void)snprintf(errbuf, errlen, "listen on %s%s", addr,
                       r == -EADDRINUSE ? ": the port is taken (by another runjob serve?)" : "");
        server_free(s);
        return r;
    }
    r = accept_guard_arm(ACCEPT_GUARD_RESERVE_DEFAULT);
    if (r < 0)
        log_errno(r, "arming the accept guard (serving without it)");
    grpc_server_start(s->gs);

    /* Named for top -H, perf and gdb; gRPC names its own. Created at [n]: the joins take the
     * first n, so a failed create leaves no hole. */
    for (unsigned i = 0; i < ELEMENTSOF(s->cq_threads); i++) {
        pthread_t *t = &s->cq_threads[s->n_cq_threads];
        if (pthread_create(t, NULL, server_cq_thread, s) == 0) {
            (void)pthread_setname_np(*t, "rj-rpc");
            s->n_cq_threads++;
        }
    }
    if (s->n_cq_threads == 0) {
        (void)snprintf(errbuf, errlen, "start the server threads");
        server_free(s);
        return -EAGAIN;
    }
    server_arm_slots(s);
    *ret = s;
    return 0;
}

int server_port(struct server *s)
{
    return s->port;
}

/* ---- shutdown -------------------------------------------------------------------------- */

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

static bool grpc_down(struct server *s)
{
    return s->shutdown_done;
}

static bool calls_gone(struct server *s)
{
    return s->live_calls == 0;
}

/* dup2 over the same fd number: a call writing its audit line meanwhile writes whole into
 * either file, never into a closed or reused fd. */
static void reopen_audit_log(struct server *s)
{
    int fd;

    if (!s->cfg.audit_path)
        return;
    fd = open(s->cfg.audit_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0 || dup3(fd, s->cfg.audit_fd, O_CLOEXEC) < 0)
        log_errno(-errno, "SIGHUP: reopening the audit log '%s' (keeping the old one)",
                  s->cfg.audit_path);
    else
        log_info("SIGHUP: audit log '%s' reopened", s->cfg.audit_path);
    if (fd >= 0)
        (void)close(fd);
}

static void write_metrics(struct server *s)
{
    int r = server_write_metrics_file(s);

    if (r < 0)
        log_errno(r, "writing the metrics file '%s'", s->cfg.metrics_path);
}

/* A chore of the main thread, done every period_ms (never when period_ms is 0). */
struct chore {
    int64_t period_ms;
    int64_t next_ms; /* INT64_MAX: never */
};

static struct chore chore_make(int64_t period_ms, int64_t now)
{
    return (struct chore){period_ms, period_ms > 0 ? now + period_ms : INT64_MAX};
}

/* true when the chore is due at now; its next time is then set. */
static bool chore_due(struct chore *c, int64_t now)
{
    if (now < c->next_ms)
        return false;
    c->next_ms = now + c->period_ms;
    return true;
}

int server_run(struct server *s, int sigfd)
{
    struct signalfd_siginfo si;
    struct pollfd p = {.fd = sigfd, .events = POLLIN};
    int64_t now = clock_ms(CLOCK_MONOTONIC);
    struct chore metrics = chore_make(!s->cfg.metrics_path             ? 0
                                      : s->cfg.metrics_interval_ms > 0 ? s->cfg.metrics_interval_ms
                                                                       : SERVER_METRICS_PERIOD_MS,
                                      now);
    struct chore trim = chore_make(s->cfg.heap_trim_interval_ms > 0   ? s->cfg.heap_trim_interval_ms
                                   : s->cfg.heap_trim_interval_ms < 0 ? 0
                                                                      : SERVER_HEAP_TRIM_PERIOD_MS,
                                   now);

    write_metrics(s);
    for (;;) {
        now = clock_ms(CLOCK_MONOTONIC);
        if (chore_due(&trim, now)) {
            /* glibc gives memory back only from the top of each arena; a burst (a flood's
             * handshakes, a crowd of streams) leaves its memory free but pinned under a few
             * live blocks, and RSS climbed by 1-7 MiB with every 600 flood connections.
             * malloc_trim also releases the free pages inside the arenas. Every 30 s (the
             * default), a running stream refaults at most the few MiB that applets/serve.c
             * keeps free per arena. */
            (void)malloc_trim(0);
        }
        if (chore_due(&metrics, now))
            write_metrics(s);
        int64_t next = trim.next_ms < metrics.next_ms ? trim.next_ms : metrics.next_ms;
        int n = poll(&p, 1,
                     next == INT64_MAX      ? -1
                     : next - now > INT_MAX ? INT_MAX
                                            : (int)(next - now));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            continue;
        if (read(sigfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
            continue;
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            break;
        if (si.ssi_signo == SIGHUP)
            reopen_audit_log(s);
    }
    log_info("signal %d: shutting down (stopping running jobs, grace %lld ms)", (int)si.ssi_signo,
             (long long)s->cfg.policy.default_grace_ms);

    /* 1. No new calls. */
    (void)pthread_mutex_lock(&s->mu);
    s->shutting_down = true;
    (void)pthread_mutex_unlock(&s->mu);
    tag_publish(&s->shutdown_tag);
    grpc_server_shutdown_and_notify(s->gs, s->cq, &s->shutdown_tag);
    server_health_shutdown(s); /* Health.Watch callers hear NOT_SERVING */

    /* 2. Starts still queued are refused, those in progress finish; every running job is
     *    stopped (signal, grace, kill). Their logs close, so following streams send the final
     *    status and end. */
    jm_shutdown(s->jm);

    /* 3. Give the streams a moment to drain, then cancel what is left. */
    wait_until(s, grpc_down, SHUTDOWN_STREAM_WAIT_MS);
    grpc_server_cancel_all_calls(s->gs);
    wait_until(s, grpc_down, 60000);
    wait_until(s, calls_gone, 10000);
    write_metrics(s); /* the last figures: every job stopped */
    tls_refusals_flush();
    log_info("shut down");
    return 0;
}

void server_free(struct server *s)
{
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
    if (s->live_calls > 0)
        log_warn("%u call(s) did not end", s->live_calls);
    if (s->gs)
        grpc_shutdown();
    (void)pthread_cond_destroy(&s->cond);
    (void)pthread_mutex_destroy(&s->mu);
    free(s);
}
