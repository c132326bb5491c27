/* grpc.health.v1.Health (proto/health.proto) on the server's own port and mTLS, for probes
 * and load balancers: Check answers at once; Watch sends the status, then NOT_SERVING when the
 * server begins to shut down, and ends. The empty service name and our own service are known;
 * any other is NOT_FOUND to Check and SERVICE_UNKNOWN to Watch, as the protocol says. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

#include "health.pb-c.h"
#include "log.h"
#include "rpc-internal.h"
#include "server-internal.h"

/* The services a Check may name (besides "", the server as a whole). */
#define OUR_SERVICE        "runjob.v1.JobManager"
#define JOBMANAGER_SERVICE "jobmanager.v1.JobManager"

static const char *const health_paths[SERVER_HEALTH_METHODS] = {
    [SERVER_HEALTH_CHECK] = "/grpc.health.v1.Health/Check",
    [SERVER_HEALTH_WATCH] = "/grpc.health.v1.Health/Watch",
};
static const char *const health_names[SERVER_HEALTH_METHODS] = {
    [SERVER_HEALTH_CHECK] = "Health.Check",
    [SERVER_HEALTH_WATCH] = "Health.Watch",
};

/* A Watch call. Its batches: the status messages (send_tag, one at a time) and
 * RECV_CLOSE_ON_SERVER (close_tag); freed when both are back and the call is over. */
struct hwatch {
    struct tag send_tag, close_tag;
    struct server *s;
    struct call_info ci;
    LIST_ENTRY(hwatch) link; /* s->watchers while not closed */
    bool known;              /* the service asked about is served here */
    /* Under s->mu: */
    unsigned pending; /* batches in flight */
    bool sending, finishing, closed;
    int cancelled; /* written by gRPC at RECV_CLOSE_ON_SERVER */
    grpc_byte_buffer *bb;
};

const char *server_health_path(int h)
{
    return health_paths[h];
}

const char *server_health_name(int h)
{
    return health_names[h];
}

static bool is_known(const char *service)
{
    return !service || !service[0] || strcmp(service, OUR_SERVICE) == 0 ||
           strcmp(service, JOBMANAGER_SERVICE) == 0;
}

/* Under s->mu, or with a stale answer being harmless (Check). */
static Grpc__Health__V1__HealthCheckResponse__ServingStatus status_of(struct server *s, bool known)
{
    if (!known)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    return s->shutting_down ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                            : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
}

static grpc_byte_buffer *pack_status(Grpc__Health__V1__HealthCheckResponse__ServingStatus st)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

    resp.status = st;
    return rpc_bb_pack(&resp.base);
}

static void watch_free(struct hwatch *w)
{
    struct server *s = w->s;

    server_audit(s, &w->ci, w->cancelled ? RPC_CANCELLED : RPC_OK);
    if (w->bb)
        grpc_byte_buffer_destroy(w->bb);
    grpc_call_unref(w->ci.call);
    free(w);
    server_call_leave(s);
}

/* With s->mu held and no send in flight: the last message and the status, in one batch. */
static void finish_locked(struct hwatch *w)
{
    grpc_slice det = grpc_slice_from_static_string("");
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    w->finishing = true;
    if (w->known) {
        w->bb = pack_status(status_of(w->s, true));
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = w->bb;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[n++].data.send_status_from_server.status_details = &det;
    w->sending = true;
    w->pending++;
    if (tag_start_batch(w->ci.call, ops, n, &w->send_tag) != GRPC_CALL_OK) {
        w->sending = false;
        w->pending--;
    }
}

static void on_send(struct tag *t, bool ok)
{
    struct hwatch *w = (struct hwatch *)((char *)t - offsetof(struct hwatch, send_tag));
    struct server *s = w->s;
    bool done;

    (void)pthread_mutex_lock(&s->mu);
    if (w->bb) {
        grpc_byte_buffer_destroy(w->bb);
        w->bb = NULL;
    }
    w->sending = false;
    w->pending--;
    /* The shutdown came while the first message was on its way. */
    if (ok && !w->closed && !w->finishing && s->shutting_down)
        finish_locked(w);
    done = w->closed && w->pending == 0;
    (void)pthread_mutex_unlock(&s->mu);
    if (done)
        watch_free(w);
}

static void on_close(struct tag *t, bool ok)
{
    struct hwatch *w = (struct hwatch *)((char *)t - offsetof(struct hwatch, close_tag));
    struct server *s = w->s;
    bool done;

    (void)ok;
    (void)pthread_mutex_lock(&s->mu);
    w->closed = true;
    w->pending--;
    LIST_REMOVE(w, link);
    done = w->pending == 0;
    (void)pthread_mutex_unlock(&s->mu);
    if (done)
        watch_free(w);
}

static void watch_begin(struct server *s, struct call_info *ci, const char *service)
{
    struct hwatch *w = calloc(1, sizeof(*w));
    grpc_op ops[2], close_op;

    if (!w) {
        (void)grpc_call_cancel_with_status(ci->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                           "server out of memory", NULL);
        server_audit(s, ci, RPC_RESOURCE_EXHAUSTED);
        grpc_call_unref(ci->call);
        server_call_leave(s);
        return;
    }
    w->send_tag.fn = on_send;
    w->close_tag.fn = on_close;
    w->s = s;
    w->ci = *ci;
    w->known = is_known(service);

    memset(ops, 0, sizeof(ops));
    memset(&close_op, 0, sizeof(close_op));
    close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    close_op.data.recv_close_on_server.cancelled = &w->cancelled;
    (void)pthread_mutex_lock(&s->mu);
    LIST_INSERT_HEAD(&s->watchers, w, link);
    w->pending = 1;
    if (tag_start_batch(w->ci.call, &close_op, 1, &w->close_tag) != GRPC_CALL_OK) {
        /* Without the close batch the end of the call would never be known: give it up. */
        LIST_REMOVE(w, link);
        (void)pthread_mutex_unlock(&s->mu);
        log_error("Health.Watch: arming RECV_CLOSE_ON_SERVER failed");
        (void)grpc_call_cancel_with_status(w->ci.call, GRPC_STATUS_INTERNAL, "", NULL);
        watch_free(w);
        return;
    }
    if (s->shutting_down) {
        finish_locked(w);
    } else {
        w->bb = pack_status(status_of(s, w->known));
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = w->bb;
        w->sending = true;
        w->pending++;
        if (tag_start_batch(w->ci.call, ops, 2, &w->send_tag) != GRPC_CALL_OK) {
            w->sending = false;
            w->pending--;
        }
    }
    (void)pthread_mutex_unlock(&s->mu);
}

void server_health_shutdown(struct server *s)
{
    struct hwatch *w;

    (void)pthread_mutex_lock(&s->mu);
    LIST_FOREACH(w, &s->watchers, link)
    if (!w->sending && !w->finishing && !w->closed)
        finish_locked(w);
    (void)pthread_mutex_unlock(&s->mu);
}

void server_health_dispatch(struct ucall *uc, int h, grpc_byte_buffer *payload)
{
    struct server *s = uc->s;
    Grpc__Health__V1__HealthCheckRequest *req;
    struct rpc_error err;
    bool known;

    req = (Grpc__Health__V1__HealthCheckRequest *)rpc_bb_unpack(
        &grpc__health__v1__health_check_request__descriptor, payload, &err);
    if (!req) {
        server_finish(uc, err.code, err.message, NULL);
        return;
    }
    known = is_known(req->service);
    if (h == SERVER_HEALTH_WATCH) {
        watch_begin(s, &uc->ci, req->service); /* takes the call and its place in live_calls */
        free(uc);
    } else if (!known) {
        server_finishf(uc, RPC_NOT_FOUND, "unknown service '%s'", req->service);
    } else {
        Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        (void)pthread_mutex_lock(&s->mu);
        resp.status = status_of(s, true);
        (void)pthread_mutex_unlock(&s->mu);
        server_finish(uc, RPC_OK, NULL, &resp.base);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}
