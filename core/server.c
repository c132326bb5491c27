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
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "job.h"
#include "log.h"
#include "rpc-internal.h"
#include "server-internal.h"
#include "tls.h"

#define SLOTS_PER_METHOD        8
#define GENERIC_SLOTS           2
#define SHUTDOWN_STREAM_WAIT_MS 5000

/* Indexed by enum rpc_method; the request types and checks are rpc_request_decode()'s. */
static const struct {
    const char *path, *name;
} methods[RPC_M_COUNT] = {
    [RPC_M_START] = {"/jobmanager.v1.JobManager/Start", "Start"},
    [RPC_M_STOP] = {"/jobmanager.v1.JobManager/Stop", "Stop"},
    [RPC_M_STATUS] = {"/jobmanager.v1.JobManager/Status", "Status"},
    [RPC_M_LIST] = {"/jobmanager.v1.JobManager/List", "List"},
    [RPC_M_STREAM] = {"/jobmanager.v1.JobManager/Stream", "Stream"},
    [RPC_M_PING] = {"/jobmanager.v1.JobManager/Ping", "Ping"},
};

/* A request slot: one outstanding grpc_server_request_(registered_)call, re-armed as it fires. */
struct slot {
    struct tag tag;
    struct server *s;
    int method; /* -1: the generic slot for unknown methods */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details;
};

/* ---- bookkeeping ----------------------------------------------------------------------- */

void server_call_enter(struct server *s)
{
    (void)pthread_mutex_lock(&s->mu);
    s->live_calls++;
    (void)pthread_mutex_unlock(&s->mu);
}

void server_call_leave(struct server *s)
{
    (void)pthread_mutex_lock(&s->mu);
    s->live_calls--;
    (void)pthread_cond_broadcast(&s->cond);
    (void)pthread_mutex_unlock(&s->mu);
}

static void iso_time(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    (void)clock_gettime(CLOCK_REALTIME, &ts);
    (void)gmtime_r(&ts.tv_sec, &tm);
    n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    (void)snprintf(buf + n, len - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

void server_audit(struct server *s, const struct call_info *ci, int code)
{
    char t[40], line[1024], cn[CN_MAX * 6 + 1], peer[PEER_MAX * 6 + 1];
    int n;

    iso_time(t, sizeof(t));
    (void)log_json_escape(cn, sizeof(cn), ci->cn[0] ? ci->cn : "-");
    (void)log_json_escape(peer, sizeof(peer), ci->peer[0] ? ci->peer : "-");
    if (s->cfg.audit_json)
        n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"audit\":true,\"cn\":\"%s\",\"peer\":\"%s\","
                     "\"method\":\"%s\",\"job\":\"%s\",\"code\":\"%s\"}\n",
                     t, cn, peer, ci->method, ci->id[0] ? ci->id : "", rpc_code_name(code));
    else
        n = snprintf(line, sizeof(line), "%s audit cn=\"%s\" peer=%s method=%s job=%s code=%s\n", t,
                     cn, peer, ci->method, ci->id[0] ? ci->id : "-", rpc_code_name(code));
    if (n > (int)sizeof(line) - 1)
        n = (int)sizeof(line) - 1;
    /* One write per line: concurrent calls never interleave inside a line. */
    (void)!write(s->cfg.audit_fd, line, (size_t)n);
}

/* ---- status messages ------------------------------------------------------------------- */

static Jobmanager__V1__JobState state_to_proto(enum job_state st)
{
    switch (st) {
    case JOB_STARTING:
        return JOBMANAGER__V1__JOB_STATE__JOB_STATE_STARTING;
    case JOB_RUNNING:
        return JOBMANAGER__V1__JOB_STATE__JOB_STATE_RUNNING;
    case JOB_EXITED:
        return JOBMANAGER__V1__JOB_STATE__JOB_STATE_EXITED;
    case JOB_KILLED:
        return JOBMANAGER__V1__JOB_STATE__JOB_STATE_KILLED;
    case JOB_FAILED_TO_START:
        return JOBMANAGER__V1__JOB_STATE__JOB_STATE_FAILED_TO_START;
    case JOB_LOST:
    default:
        return JOBMANAGER__V1__JOB_STATE__JOB_STATE_LOST;
    }
}

void server_fill_status(struct server *s, struct jobtab_entry *e, struct status_buf *sb)
{
    const struct jobtab_spec *spec = jobtab_entry_spec(e);
    struct job *j = jobtab_entry_job(e);
    struct outlog *log = jobtab_entry_log(e);
    struct job_status *js = &sb->js.job;

    (void)s;
    jobtab_entry_get_status(e, &sb->js);
    /* A live job knows better than the record: usage, pid, and its end before on_end ran. */
    if (j)
        job_get_status(j, js);
    if (log) {
        sb->js.output_bytes = outlog_get_bytes(log);
        sb->js.output_truncated = outlog_is_truncated(log);
    }
    jobmanager__v1__job_status__init(&sb->st);
    jobmanager__v1__limits__init(&sb->limits);
    jobmanager__v1__usage__init(&sb->usage);
    sb->st.owner = spec->owner;
    sb->st.name = spec->name;
    sb->st.id = (char *)spec->id;
    sb->st.command = spec->command;
    sb->st.args = spec->args;
    sb->st.n_args = spec->n_args;
    sb->st.state = state_to_proto(js->state);
    sb->st.is_running = js->state == JOB_STARTING || js->state == JOB_RUNNING;
    sb->st.pid = sb->st.is_running ? js->pid : 0;
    sb->st.exit_code = js->exit_code;
    sb->st.signal = js->signal;
    sb->st.error = js->error;
    sb->st.oom_killed = js->oom_killed;
    sb->st.start_time_ms = js->start_ms;
    sb->st.end_time_ms = js->end_ms;
    sb->limits.cpu_millis = spec->limits.cpu_millis;
    sb->limits.memory_bytes = spec->limits.memory_bytes;
    sb->limits.io_riops = spec->limits.io_riops;
    sb->limits.io_wiops = spec->limits.io_wiops;
    sb->limits.io_rbps = spec->limits.io_rbps;
    sb->limits.io_wbps = spec->limits.io_wbps;
    sb->limits.pids = spec->limits.pids;
    sb->st.limits = &sb->limits;
    sb->usage.cpu_usec = js->cpu_usec;
    sb->usage.memory_peak_bytes = js->memory_peak_bytes;
    sb->usage.output_bytes = sb->js.output_bytes;
    sb->usage.output_truncated = sb->js.output_truncated;
    sb->st.usage = &sb->usage;
    sb->st.network = spec->network == JOB_NET_HOST
                         ? JOBMANAGER__V1__NETWORK_MODE__NETWORK_MODE_HOST
                         : JOBMANAGER__V1__NETWORK_MODE__NETWORK_MODE_NONE;
}

/* ---- request slots --------------------------------------------------------------------- */

static void arm(struct slot *sl);

/* The verified client certificate's CN into buf. 0, or -ENOKEY (none, empty, unprintable). */
int server_peer_cn(grpc_call *call, char *buf, size_t len)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    grpc_auth_property_iterator it;
    const grpc_auth_property *p;
    int r = -ENOKEY;

    if (!ctx)
        return -ENOKEY;
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        it = grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
        p = grpc_auth_property_iterator_next(&it);
        if (p && p->value && p->value_length > 0 && p->value_length < len) {
            memcpy(buf, p->value, p->value_length); /* not NUL-terminated */
            buf[p->value_length] = '\0';
            if (strlen(buf) == p->value_length && rpc_name_is_valid(buf, len - 1))
                r = 0;
        }
    }
    grpc_auth_context_release(ctx);
    return r;
}

static void dispatch(struct server *s, int m, grpc_call *call, grpc_byte_buffer *payload)
{
    struct ucall *uc = calloc(1, sizeof(*uc));
    struct rpc_request rq;
    struct rpc_error err;
    char *peer;

    server_call_enter(s);
    if (!uc) {
        (void)grpc_call_cancel_with_status(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory",
                                           NULL);
        grpc_call_unref(call);
        server_call_leave(s);
        return;
    }
    uc->done.fn = server_ucall_done;
    uc->s = s;
    uc->ci.call = call;
    uc->ci.method = methods[m].name;
    peer = grpc_call_get_peer(call);
    if (peer) {
        (void)snprintf(uc->ci.peer, sizeof(uc->ci.peer), "%s", peer);
        gpr_free(peer);
    }
    if (server_peer_cn(call, uc->ci.cn, sizeof(uc->ci.cn)) < 0) {
        uc->ci.cn[0] = '\0';
        server_finishf(uc, RPC_UNAUTHENTICATED,
                       "your client certificate has no usable Common Name (CN): it names the user");
        return;
    }
    uc->ci.is_admin = jobtab_is_admin(s->table, uc->ci.cn);
    /* Decode and check: the one path the fuzzers drive (test/fuzz/fuzz_rpc_*.c). */
    if (rpc_bb_decode((enum rpc_method)m, payload, &s->cfg.policy, &rq, &err) < 0) {
        server_finish(uc, err.code, err.message, NULL);
        return;
    }
    switch (m) {
    case RPC_M_START:
        server_handle_start(uc, &rq); /* keeps rq.msg */
        return;
    case RPC_M_STOP:
        server_handle_stop(uc, &rq);
        break;
    case RPC_M_STATUS:
        server_handle_status(uc, &rq);
        break;
    case RPC_M_LIST:
        server_handle_list(uc);
        break;
    case RPC_M_PING:
        server_handle_ping(uc);
        break;
    case RPC_M_STREAM: {
        Jobmanager__V1__StreamRequest *req = (Jobmanager__V1__StreamRequest *)rq.msg;
        struct jobtab_entry *e;
        (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", req->id);
        e = jobtab_lookup(s->table, req->id, uc->ci.cn);
        if (!e) {
            server_not_found(uc);
            break;
        }
        if (!jobtab_entry_log(e)) {
            server_finishf(uc, RPC_DATA_LOSS, "the output of job %s is not available", req->id);
            break;
        }
        /* The stream takes the call and its place in live_calls. */
        server_stream_begin(s, &uc->ci, e, req);
        free(uc);
        break;
    }
    default:
        server_finish(uc, RPC_UNIMPLEMENTED, "unknown method", NULL);
        break;
    }
    protobuf_c_message_free_unpacked(rq.msg, NULL);
}

static void unknown_done(struct tag *t, bool ok)
{
    server_ucall_done(t, ok);
}

static void handle_unknown(struct server *s, struct slot *sl)
{
    struct ucall *uc = calloc(1, sizeof(*uc));
    char *method = grpc_slice_to_c_string(sl->details.method);
    char *peer = grpc_call_get_peer(sl->call);

    server_call_enter(s);
    if (!uc) {
        (void)grpc_call_cancel_with_status(sl->call, GRPC_STATUS_UNIMPLEMENTED, "", NULL);
        grpc_call_unref(sl->call);
        server_call_leave(s);
    } else {
        uc->done.fn = unknown_done;
        uc->s = s;
        uc->ci.call = sl->call;
        uc->ci.method = "unknown";
        if (peer)
            (void)snprintf(uc->ci.peer, sizeof(uc->ci.peer), "%s", peer);
        if (server_peer_cn(sl->call, uc->ci.cn, sizeof(uc->ci.cn)) < 0)
            uc->ci.cn[0] = '\0';
        log_debug("unknown method '%s'", method ? method : "?");
        server_finishf(uc, RPC_UNIMPLEMENTED, "unknown method");
    }
    gpr_free(method);
    gpr_free(peer);
    grpc_call_details_destroy(&sl->details);
    grpc_call_details_init(&sl->details);
    sl->call = NULL;
}

static void on_request(struct tag *t, bool ok)
{
    struct slot *sl = (struct slot *)t;
    struct server *s = sl->s;
    grpc_call *call = sl->call;
    grpc_byte_buffer *payload = sl->payload;
    int method = sl->method; /* once re-armed, the slot is gRPC's (shutdown may free it) */

    if (!ok) { /* shutdown: the slot is finished */
        grpc_metadata_array_destroy(&sl->md);
        grpc_call_details_destroy(&sl->details);
        free(sl);
        return;
    }
    if (method < 0) {
        handle_unknown(s, sl);
        grpc_metadata_array_destroy(&sl->md);
        arm(sl);
        return;
    }
    sl->call = NULL;
    sl->payload = NULL;
    grpc_metadata_array_destroy(&sl->md);
    arm(sl); /* the next call can arrive while we handle this one */
    dispatch(s, method, call, payload);
    if (payload)
        grpc_byte_buffer_destroy(payload);
}

static void arm(struct slot *sl)
{
    struct server *s = sl->s;
    grpc_call_error e;
    int method = sl->method; /* read before the hand-off (server-internal.h) */
    bool down;

    (void)pthread_mutex_lock(&s->mu);
    down = s->shutting_down;
    (void)pthread_mutex_unlock(&s->mu);
    grpc_metadata_array_init(&sl->md);
    if (down) {
        grpc_metadata_array_destroy(&sl->md);
        grpc_call_details_destroy(&sl->details);
        free(sl);
        return;
    }
    tag_publish(&sl->tag);
    if (method < 0)
        e = grpc_server_request_call(s->gs, &sl->call, &sl->details, &sl->md, s->cq, s->cq,
                                     &sl->tag);
    else
        e = grpc_server_request_registered_call(s->gs, s->method_handles[method], &sl->call,
                                                &sl->deadline, &sl->md, &sl->payload, s->cq, s->cq,
                                                &sl->tag);
    if (e != GRPC_CALL_OK) {
        log_debug("arming a request slot: %d", (int)e);
        grpc_metadata_array_destroy(&sl->md);
        grpc_call_details_destroy(&sl->details);
        free(sl);
    }
}

static int new_slot(struct server *s, int method)
{
    struct slot *sl = calloc(1, sizeof(*sl));

    if (!sl)
        return -ENOMEM;
    sl->tag.fn = on_request;
    sl->s = s;
    sl->method = method;
    grpc_call_details_init(&sl->details);
    arm(sl);
    return 0;
}

/* ---- threads --------------------------------------------------------------------------- */

static void *cq_thread(void *arg)
{
    struct server *s = arg;

    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            struct tag *t = ev.tag;
            tag_arrived(t);
            t->fn(t, ev.success != 0);
        }
    }
    return NULL;
}

static void on_shutdown(struct tag *t, bool ok)
{
    struct server *s = (struct server *)((char *)t - offsetof(struct server, shutdown_tag));

    (void)ok;
    (void)pthread_mutex_lock(&s->mu);
    s->shutdown_done = true;
    (void)pthread_cond_broadcast(&s->cond);
    (void)pthread_mutex_unlock(&s->mu);
}

/* ---- setup ----------------------------------------------------------------------------- */

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
    for (int m = 0; m < RPC_M_COUNT; m++)
        s->method_handles[m] = grpc_server_register_method(
            s->gs, methods[m].path, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
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
    for (unsigned i = 0; i < START_THREADS; i++)
        if (pthread_create(&s->pool->threads[i], NULL, server_start_thread, s) == 0)
            s->pool->n_threads++;
    for (unsigned i = 0; i < ELEMENTSOF(s->cq_threads); i++)
        if (pthread_create(&s->cq_threads[i], NULL, cq_thread, s) == 0)
            s->n_cq_threads++;
    if (s->pool->n_threads == 0 || s->n_cq_threads == 0) {
        fmt_err(errbuf, errlen, "start the server threads");
        server_free(s);
        return -EAGAIN;
    }
    server_prepare_slots(s); /* the first Starts' folders */
    for (int m = 0; m < RPC_M_COUNT; m++)
        for (int i = 0; i < SLOTS_PER_METHOD; i++)
            (void)new_slot(s, m);
    for (int i = 0; i < GENERIC_SLOTS; i++)
        (void)new_slot(s, -1);
    *ret = s;
    return 0;
}

int server_port(struct server *s)
{
    return s->port;
}

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
