/* The Input call: a client stream of bytes (and terminal sizes) into a job's stdin.
 *
 * Flow control end to end: the call holds one message at most. The next RECV_MESSAGE is
 * started only once the job's stdin took all of the last one; while it is full the call parks
 * on the job's stdin (jm_input_wait, a one-shot EPOLLOUT on the runner's event thread) and
 * gRPC's own flow control holds the client back. A job that never reads its stdin thus costs
 * the server one message and the transport's window, however much the client has to send.
 *
 * One party at a time holds the call's token and may touch the message or start a batch:
 *   WORK    a thread writes the message into the job's stdin
 *   RECV    a RECV_MESSAGE is in flight
 *   ARMING  the worker is arming the wait (it may fire before jm_input_wait returns)
 *   WAIT    parked on the job's stdin; the wake-up takes the token and hops to a CQ thread
 *   CANCEL  the close handler is disarming the wait
 *   STATUS  the reply and status are in flight
 *   NONE    nothing more will happen
 * RECV_CLOSE_ON_SERVER is armed at the start; when it fires (the reply went, or the client
 * cancelled or went away) a parked wait is disarmed and the context is freed once the token is
 * NONE. Only a message with eof closes the job's stdin: a client that goes away, or closes its
 * side without one, leaves it open for the next writer (half-close and cancellation look the
 * same to a RECV_MESSAGE). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/byte_buffer_reader.h>

#include "log.h"
#include "rpc-internal.h"
#include "server-internal.h"

enum itoken { ITOK_WORK, ITOK_RECV, ITOK_ARMING, ITOK_WAIT, ITOK_CANCEL, ITOK_STATUS, ITOK_NONE };

struct icall {
    struct tag close_tag, recv_tag, status_tag, hop_tag;
    struct server *s;
    struct call_info ci;
    struct jm_job *j;

    pthread_mutex_t mu;
    enum itoken tok;
    bool close_done, woke_early, freed, md_sent;
    int cancelled; /* written by gRPC at RECV_CLOSE_ON_SERVER */
    int code;      /* the status sent, for the audit line */

    /* The token holder's. */
    Runjob__V1__InputRequest *msg; /* the message being written */
    size_t off;                    /* of msg->data written so far */
    bool resized;                  /* msg's terminal size applied */
    grpc_byte_buffer *recv_bb;
    grpc_byte_buffer *reply;
    uint64_t bytes;
    bool closed; /* the job's stdin went away under us */
};

static void work(struct icall *ic);

static void icall_free(struct icall *ic)
{
    server_audit(ic->s, &ic->ci, ic->cancelled ? RPC_CANCELLED : ic->code);
    if (ic->bytes)
        log_info("job %s: %s wrote %llu bytes to its stdin", ic->ci.id, ic->ci.cn,
                 (unsigned long long)ic->bytes);
    if (ic->msg)
        runjob__v1__input_request__free_unpacked(ic->msg, NULL);
    if (ic->recv_bb)
        grpc_byte_buffer_destroy(ic->recv_bb);
    if (ic->reply)
        grpc_byte_buffer_destroy(ic->reply);
    jm_input_release(ic->j);
    jm_job_put(ic->j);
    grpc_call_unref(ic->ci.call);
    (void)pthread_mutex_destroy(&ic->mu);
    server_call_leave(ic->s);
    free(ic);
}

/* With mu held: unlocks, and frees the context if nothing holds it any more. */
static void unlock_and_release(struct icall *ic)
{
    bool done = ic->close_done && ic->tok == ITOK_NONE && !ic->freed;

    if (done)
        ic->freed = true;
    (void)pthread_mutex_unlock(&ic->mu);
    if (done)
        icall_free(ic);
}

static void drop_token(struct icall *ic)
{
    (void)pthread_mutex_lock(&ic->mu);
    ic->tok = ITOK_NONE;
    unlock_and_release(ic);
}

/* With mu held and the wait armed: disarms it and lets the token go (mu held again after). */
static void disarm_locked(struct icall *ic)
{
    ic->tok = ITOK_CANCEL;
    (void)pthread_mutex_unlock(&ic->mu);
    /* Returns once the wake-up is disarmed or has run (it saw CANCEL and let go). */
    (void)jm_input_cancel_wait(ic->j);
    (void)pthread_mutex_lock(&ic->mu);
    ic->tok = ITOK_NONE;
}

static void on_close(struct tag *t, bool ok)
{
    struct icall *ic = (struct icall *)((char *)t - offsetof(struct icall, close_tag));

    (void)ok;
    (void)pthread_mutex_lock(&ic->mu);
    ic->close_done = true;
    if (ic->tok == ITOK_WAIT)
        disarm_locked(ic);
    unlock_and_release(ic);
}

/* Starts a batch holding the token; on failure the call is cancelled (close follows). */
static void start(struct icall *ic, grpc_op *ops, size_t n, struct tag *tag)
{
    if (tag_start_batch(ic->ci.call, ops, n, tag) != GRPC_CALL_OK) {
        (void)grpc_call_cancel(ic->ci.call, NULL);
        drop_token(ic);
    }
}

/* The reply (what the stdin took) and the status, holding the token. */
static void finish(struct icall *ic, int code, const char *details)
{
    Runjob__V1__InputResponse resp = RUNJOB__V1__INPUT_RESPONSE__INIT;
    grpc_slice det = grpc_slice_from_copied_string(details ? details : "");
    grpc_op ops[3];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    (void)pthread_mutex_lock(&ic->mu);
    if (ic->close_done) {
        ic->tok = ITOK_NONE;
        unlock_and_release(ic);
        grpc_slice_unref(det);
        return;
    }
    ic->tok = ITOK_STATUS;
    ic->code = code;
    (void)pthread_mutex_unlock(&ic->mu);
    if (!ic->md_sent)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (code == RPC_OK) {
        resp.bytes = ic->bytes;
        resp.closed = ic->closed;
        ic->reply = rpc_bb_pack(&resp.base);
        if (ic->reply) {
            ops[n].op = GRPC_OP_SEND_MESSAGE;
            ops[n++].data.send_message.send_message = ic->reply;
        }
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n++].data.send_status_from_server.status_details = &det;
    start(ic, ops, n, &ic->status_tag);
    grpc_slice_unref(det);
}

static void on_status(struct tag *t, bool ok)
{
    struct icall *ic = (struct icall *)((char *)t - offsetof(struct icall, status_tag));

    (void)ok;
    drop_token(ic);
}

/* The next message, holding the token. The first time, the initial metadata go with it and say
 * the call was taken (RPC_INPUT_READY_KEY): a refused call has a status alone. */
static void receive(struct icall *ic)
{
    grpc_metadata ready = {.key = grpc_slice_from_static_string(RPC_INPUT_READY_KEY),
                           .value = grpc_slice_from_static_string("1")};
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    (void)pthread_mutex_lock(&ic->mu);
    if (ic->close_done) {
        ic->tok = ITOK_NONE;
        unlock_and_release(ic);
        return;
    }
    ic->tok = ITOK_RECV;
    (void)pthread_mutex_unlock(&ic->mu);
    if (!ic->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].data.send_initial_metadata.count = 1;
        ops[n++].data.send_initial_metadata.metadata = &ready;
        ic->md_sent = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &ic->recv_bb;
    start(ic, ops, n, &ic->recv_tag);
}

/* The bytes of a byte buffer, flattened: a message is at most RPC_MAX_INPUT_BYTES and some
 * framing (the transport refuses larger ones). NULL without memory. */
static Runjob__V1__InputRequest *unpack(grpc_byte_buffer *bb, struct rpc_error *err)
{
    grpc_byte_buffer_reader rd;
    grpc_slice flat;
    Runjob__V1__InputRequest *m;

    if (!grpc_byte_buffer_reader_init(&rd, bb)) {
        rpc_error_set(err, RPC_INTERNAL, "reading the message");
        return NULL;
    }
    flat = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    m = (Runjob__V1__InputRequest *)rpc_unpack_request(&runjob__v1__input_request__descriptor,
                                                       GRPC_SLICE_START_PTR(flat),
                                                       GRPC_SLICE_LENGTH(flat), err);
    grpc_slice_unref(flat);
    if (m && rpc_check_input(m, false, err) < 0) {
        runjob__v1__input_request__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

static void on_recv(struct tag *t, bool ok)
{
    struct icall *ic = (struct icall *)((char *)t - offsetof(struct icall, recv_tag));
    grpc_byte_buffer *bb = ic->recv_bb;
    struct rpc_error err;

    ic->recv_bb = NULL;
    if (!ok) { /* the call is over: close follows */
        if (bb)
            grpc_byte_buffer_destroy(bb);
        drop_token(ic);
        return;
    }
    if (!bb) { /* the client closed its side (or went away: the status tells): stdin stays */
        finish(ic, RPC_OK, "");
        return;
    }
    ic->msg = unpack(bb, &err);
    grpc_byte_buffer_destroy(bb);
    if (!ic->msg) {
        finish(ic, err.code, err.message);
        return;
    }
    ic->off = 0;
    ic->resized = false;
    work(ic);
}

/* The job's stdin takes more, or went away: on the runner's event thread, only the token
 * moves to a CQ thread (an empty batch). */
static void on_writable(void *userdata)
{
    struct icall *ic = userdata;

    (void)pthread_mutex_lock(&ic->mu);
    if (ic->tok == ITOK_ARMING) {
        ic->woke_early = true;
        (void)pthread_mutex_unlock(&ic->mu);
        return;
    }
    if (ic->tok != ITOK_WAIT) { /* CANCEL: the close handler has it */
        (void)pthread_mutex_unlock(&ic->mu);
        return;
    }
    ic->tok = ITOK_WORK;
    (void)pthread_mutex_unlock(&ic->mu);
    if (!server_hop(&ic->ci, &ic->hop_tag))
        drop_token(ic);
}

static void on_hop(struct tag *t, bool ok)
{
    struct icall *ic = (struct icall *)((char *)t - offsetof(struct icall, hop_tag));

    (void)ok;
    work(ic);
}

/* Holding the token: the message's size change, then its bytes into the job's stdin as far
 * as it takes them; then the next message, or a park until it takes more. */
static void work(struct icall *ic)
{
    Runjob__V1__InputRequest *m = ic->msg;

    if (m && m->terminal_size && !ic->resized) {
        int r = jm_input_resize(ic->j, m->terminal_size->rows, m->terminal_size->cols);
        if (r == -ENOTTY) {
            finish(ic, RPC_FAILED_PRECONDITION, "the job has no terminal to resize");
            return;
        }
        ic->resized = true; /* once, whatever a park in the write below makes us redo */
    }
    while (m && ic->off < m->data.len) {
        ssize_t n = jm_input_write(ic->j, m->data.data + ic->off, m->data.len - ic->off);
        int r;

        if (n > 0) {
            ic->off += (size_t)n;
            ic->bytes += (uint64_t)n;
            continue;
        }
        if (n != -EAGAIN) { /* -EPIPE: the job closed its stdin or ended */
            ic->closed = true;
            finish(ic, RPC_OK, "");
            return;
        }
        (void)pthread_mutex_lock(&ic->mu);
        ic->tok = ITOK_ARMING;
        ic->woke_early = false;
        (void)pthread_mutex_unlock(&ic->mu);
        r = jm_input_wait(ic->j, on_writable, ic);
        (void)pthread_mutex_lock(&ic->mu);
        if (r == 0 && !ic->woke_early) {
            if (ic->close_done) { /* closed while we armed: disarm ourselves */
                disarm_locked(ic);
                unlock_and_release(ic);
                return;
            }
            ic->tok = ITOK_WAIT;
            (void)pthread_mutex_unlock(&ic->mu);
            return;
        }
        ic->tok = ITOK_WORK;
        (void)pthread_mutex_unlock(&ic->mu);
        if (r < 0) {
            ic->closed = true;
            finish(ic, RPC_OK, "");
            return;
        }
    }
    if (m && m->eof) {
        jm_input_close(ic->j);
        finish(ic, RPC_OK, "");
        return;
    }
    if (m) {
        runjob__v1__input_request__free_unpacked(m, NULL);
        ic->msg = NULL;
    }
    receive(ic);
}

static const char *claim_error(int r)
{
    switch (r) {
    case -ENOTTY:
        return "the job takes no input: start it with input (runjob run -i or -t)";
    case -EBUSY:
        return "the job's stdin has another writer: one at a time";
    case -EAGAIN:
        return "the job is still starting";
    default:
        return "the job's stdin is closed: it ended, or a writer closed it";
    }
}

void server_handle_input(struct ucall *uc, struct rpc_request *rq)
{
    Runjob__V1__InputRequest *req = (Runjob__V1__InputRequest *)rq->msg;
    struct server *s = uc->s;
    struct icall *ic;
    struct jm_job *j;
    grpc_op op;
    int r;

    (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", req->id);
    j = jm_lookup(s->jm, req->id, uc->ci.cn);
    if (!j) {
        server_not_found(uc);
        return;
    }
    r = jm_input_claim(j);
    if (r < 0) {
        jm_job_put(j);
        server_finish(uc, RPC_FAILED_PRECONDITION, claim_error(r), NULL);
        return;
    }
    ic = calloc(1, sizeof(*ic));
    if (!ic) {
        jm_input_release(j);
        jm_job_put(j);
        server_finish(uc, RPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
        return;
    }
    ic->close_tag.fn = on_close;
    ic->recv_tag.fn = on_recv;
    ic->status_tag.fn = on_status;
    ic->hop_tag.fn = on_hop;
    ic->s = s;
    ic->ci = uc->ci;
    ic->j = j;
    ic->tok = ITOK_WORK;
    ic->code = RPC_OK;
    (void)pthread_mutex_init(&ic->mu, NULL);
    ic->msg = req; /* the first message, taken from dispatch */
    rq->msg = NULL;
    ic->resized = false;
    free(uc); /* the call and its place in live_calls are the context's now */

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &ic->cancelled;
    if (tag_start_batch(ic->ci.call, &op, 1, &ic->close_tag) != GRPC_CALL_OK) {
        (void)grpc_call_cancel(ic->ci.call, NULL);
        ic->close_done = true; /* no close will come */
        drop_token(ic);
        return;
    }
    ic->off = 0;
    work(ic);
}
