/* The calls' way in and what every call shares: the request slots (one outstanding
 * grpc_server_request_(registered_)call each), the completion-queue threads, the caller's
 * identity, decoding and routing to the handlers (server-unary.c, server-stream.c); the
 * live-call count, the hop of a woken call to a CQ thread, the audit line and the JobStatus
 * message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/grpc_security_constants.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "log.h"
#include "rpc-internal.h"
#include "server-internal.h"
#include "tls.h"

#define SLOTS_PER_METHOD 8
#define GENERIC_SLOTS    2

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

bool server_hop(const struct call_info *ci, struct tag *t)
{
    grpc_call_error e = tag_start_batch(ci->call, NULL, 0, t);

    if (e == GRPC_CALL_OK)
        return true;
    log_error("%s %s: hop to a CQ thread: %d", ci->method, ci->id, (int)e);
    (void)grpc_call_cancel(ci->call, NULL);
    return false;
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

    server_count_call(ci->method, code);
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

static Runjob__V1__JobState state_to_proto(enum job_state st)
{
    switch (st) {
    case JOB_STARTING:
        return RUNJOB__V1__JOB_STATE__JOB_STATE_STARTING;
    case JOB_RUNNING:
        return RUNJOB__V1__JOB_STATE__JOB_STATE_RUNNING;
    case JOB_EXITED:
        return RUNJOB__V1__JOB_STATE__JOB_STATE_EXITED;
    case JOB_KILLED:
        return RUNJOB__V1__JOB_STATE__JOB_STATE_KILLED;
    case JOB_FAILED_TO_START:
        return RUNJOB__V1__JOB_STATE__JOB_STATE_FAILED_TO_START;
    case JOB_LOST:
    default:
        return RUNJOB__V1__JOB_STATE__JOB_STATE_LOST;
    }
}

void server_fill_status(struct status_buf *sb)
{
    const struct jobtab_spec *spec = sb->info.spec;
    struct job_status *js = &sb->info.status.job;

    runjob__v1__job_status__init(&sb->st);
    runjob__v1__limits__init(&sb->limits);
    runjob__v1__usage__init(&sb->usage);
    sb->st.owner = spec->owner;
    sb->st.name = spec->name;
    sb->st.id = (char *)spec->id;
    sb->st.command = spec->command;
    sb->st.args = spec->args;
    sb->st.n_args = spec->n_args;
    sb->st.state = state_to_proto(js->state);
    sb->st.is_running = sb->info.is_running;
    sb->st.pid = js->pid;
    sb->st.exit_code = js->exit_code;
    sb->st.signal = js->signal;
    sb->st.error = js->error;
    sb->st.oom_killed = js->oom_killed;
    sb->st.timed_out = js->timed_out;
    sb->st.workdir = spec->workdir ? spec->workdir : (char *)"";
    sb->st.timeout_millis = spec->timeout_ms > 0 ? (uint64_t)spec->timeout_ms : 0;
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
    sb->usage.output_bytes = sb->info.status.output_bytes;
    sb->usage.output_truncated = sb->info.status.output_truncated;
    sb->usage.output_dropped_bytes = sb->info.status.output_dropped;
    sb->st.usage = &sb->usage;
    sb->st.input = spec->input == JOB_INPUT_TTY    ? RUNJOB__V1__INPUT_MODE__INPUT_MODE_TTY
                   : spec->input == JOB_INPUT_PIPE ? RUNJOB__V1__INPUT_MODE__INPUT_MODE_PIPE
                                                   : RUNJOB__V1__INPUT_MODE__INPUT_MODE_NONE;
    sb->st.network = spec->network == JOB_NET_HOST ? RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_HOST
                                                   : RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_NONE;
}

/* ---- request slots --------------------------------------------------------------------- */

static void arm(struct slot *sl);

/* How many CNs the subject of the call's verified certificate names: the auth context holds
 * the certificate itself (PEM) besides the CN. >=0, or -ENOKEY when it cannot be read. */
static int peer_cn_count(const grpc_auth_context *ctx)
{
    grpc_auth_property_iterator it =
        grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_PEM_CERT_PROPERTY_NAME);
    const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
    int n;

    if (!p || !p->value)
        return -ENOKEY;
    n = tls_subject_cn_count(p->value, p->value_length);
    return n < 0 ? -ENOKEY : n;
}

/* The verified client certificate's CN into buf. 0; -ENOKEY: none, empty or unprintable, or
 * the certificate unreadable; -ENOTUNIQ: the subject names more than one CN. The user is the
 * CN, so a certificate with two (CN=alice/CN=administrator) names two users, and which one it
 * is depends on the reader: gRPC puts the first in the auth context and no second, Go's
 * crypto/x509 keeps the last. A CA that signed such a request for alice without looking twice
 * would have issued an administrator's certificate: refuse it rather than pick. The CNs are
 * counted in the certificate itself; a second CN property is refused as well, should gRPC
 * ever list them. */
int server_peer_cn(grpc_call *call, char *buf, size_t len)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    grpc_auth_property_iterator it;
    const grpc_auth_property *p;
    int r = -ENOKEY, n;

    if (!ctx)
        return -ENOKEY;
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        it = grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
        p = grpc_auth_property_iterator_next(&it);
        n = peer_cn_count(ctx);
        if (p && (grpc_auth_property_iterator_next(&it) || n > 1)) {
            r = -ENOTUNIQ;
        } else if (p && n == 1 && p->value && p->value_length > 0 && p->value_length < len) {
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
    int r;

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
    uc->ci.method =
        m < RPC_M_COUNT ? rpc_method_name((enum rpc_method)m) : server_health_name(m - RPC_M_COUNT);
    peer = grpc_call_get_peer(call);
    if (peer) {
        (void)snprintf(uc->ci.peer, sizeof(uc->ci.peer), "%s", peer);
        gpr_free(peer);
    }
    r = server_peer_cn(call, uc->ci.cn, sizeof(uc->ci.cn));
    if (r == -ENOTUNIQ) {
        uc->ci.cn[0] = '\0';
        log_warn("refused a %s call from %s: ambiguous identity, its client certificate names "
                 "more than one Common Name (CN)",
                 uc->ci.method, uc->ci.peer[0] ? uc->ci.peer : "an unknown peer");
        server_finishf(uc, RPC_UNAUTHENTICATED,
                       "ambiguous identity: your client certificate names more than one Common "
                       "Name (CN), and the CN names the user; ask for one with a single CN");
        return;
    }
    if (r < 0) {
        uc->ci.cn[0] = '\0';
        server_finishf(uc, RPC_UNAUTHENTICATED,
                       "your client certificate has no usable Common Name (CN): it names the user");
        return;
    }
    uc->ci.is_admin = jm_is_admin(s->jm, uc->ci.cn);
    if (m >= RPC_M_COUNT) {
        server_health_dispatch(uc, m - RPC_M_COUNT, payload);
        return;
    }
    /* Decode and check: the one path the fuzzers drive (test/fuzz/fuzz_rpc_*.c). */
    if (rpc_bb_decode((enum rpc_method)m, payload, &s->cfg.policy, &rq, &err) < 0) {
        server_finish(uc, err.code, err.message, NULL);
        return;
    }
    switch (m) {
    case RPC_M_START:
        server_handle_start(uc, &rq);
        break;
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
    case RPC_M_METRICS:
        server_handle_metrics(uc);
        break;
    case RPC_M_REMOVE:
        server_handle_remove(uc, &rq);
        break;
    case RPC_M_STREAM: {
        Runjob__V1__StreamRequest *req = (Runjob__V1__StreamRequest *)rq.msg;
        struct server_stream_spec spec = {
            .select = req->select == RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_STDOUT
                          ? OUTLOG_SELECT_STDOUT
                      : req->select == RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_STDERR
                          ? OUTLOG_SELECT_STDERR
                          : OUTLOG_SELECT_ALL,
            .offset = req->offset,
            .follow = !req->no_follow,
            .form = SERVER_STREAM_CHUNKS,
            .stop_on_disconnect = req->stop_on_disconnect,
        };
        struct jm_job *j;
        (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", req->id);
        j = jm_lookup(s->jm, req->id, uc->ci.cn);
        if (!j) {
            server_not_found(uc);
            break;
        }
        /* The stream takes the call and its place in live_calls; its reader holds the job. */
        server_stream_begin(s, &uc->ci, j, &spec);
        jm_job_put(j);
        free(uc);
        break;
    }
    case RPC_M_INPUT:
        server_handle_input(uc, &rq);
        break;
    case RPC_M_JOBMANAGER_START:
    case RPC_M_JOBMANAGER_STOP:
    case RPC_M_JOBMANAGER_QUERY:
    case RPC_M_JOBMANAGER_LIST:
    case RPC_M_JOBMANAGER_STREAM_OUTPUT:
        server_jobmanager_dispatch(uc, (enum rpc_method)m, &rq);
        break;
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

void server_register_methods(struct server *s)
{
    for (int m = 0; m < SERVER_METHODS; m++)
        s->method_handles[m] =
            grpc_server_register_method(s->gs,
                                        m < RPC_M_COUNT ? rpc_method_path((enum rpc_method)m)
                                                        : server_health_path(m - RPC_M_COUNT),
                                        NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
}

void server_arm_slots(struct server *s)
{
    for (int m = 0; m < SERVER_METHODS; m++)
        for (int i = 0; i < (m < RPC_M_COUNT ? SLOTS_PER_METHOD : 2); i++)
            (void)new_slot(s, m);
    for (int i = 0; i < GENERIC_SLOTS; i++)
        (void)new_slot(s, -1);
}

/* ---- threads --------------------------------------------------------------------------- */

void *server_cq_thread(void *arg)
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
