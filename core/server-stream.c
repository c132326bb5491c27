/* The Stream call: a job's output from an offset, live or after the fact.
 *
 * One context per call. At any moment exactly one party holds the stream's "token" and may
 * touch the reader or start a batch:
 *   PUMP    a thread is reading the log and will start the next batch
 *   WRITE   a SEND_MESSAGE is in flight (its completion takes the token back)
 *   ARMING  the pump is arming jm_reader_wait (the wake-up may fire before it returns)
 *   WAIT    parked on the log's waiter list; the wake-up callback takes the token
 *   QUEUED  parked on the message budget's queue; the grant callback takes the token
 *   CANCEL  the close handler is disarming the wait
 *   STATUS  SEND_STATUS_FROM_SERVER is in flight
 *   NONE    nothing more will happen
 * RECV_CLOSE_ON_SERVER is armed at the start; when it fires (end, cancel, disconnect,
 * deadline) no new batch is started, a parked wait is cancelled, and the context is freed once
 * the token is NONE. No thread per stream, no polling, one send in flight.
 * A wake-up only moves the token to a CQ thread (an empty batch), so the log is read and the
 * context freed on CQ threads only, never inside outlog's callback.
 *
 * Message size. The message in flight is the stream's main cost in memory: gRPC keeps its
 * slice (read straight from the log into it, zero-copy) until the transport has framed it, and
 * the TLS layer holds an encrypted copy of what it writes. All streams of the process share
 * one budget of messages in flight (core/budget.h): a few readers get an equal share each, up
 * to 1 MiB messages (the fewest per-message costs, the best single-reader rate); many readers
 * take turns with 256 KiB messages, as many at once as the budget allows (8), in order, the
 * others parked (TOK_QUEUED) until the budget grants them their turn. Turns rather than ever
 * smaller messages because each message costs its reader a wake-up (and cold caches): 100
 * readers sharing 4 MiB as 32 KiB messages spent 1.7-2.4x the CPU per byte of one reader;
 * with turns, about the same as one reader, and less memory (a parked reader holds no
 * message; bench/RESULTS.md has the figures). A reader that stops reading cannot hold the
 * others up: turns that stall fall back to small messages for everyone (budget.h). */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "budget.h"
#include "log.h"
#include "rpc-internal.h"
#include "server-internal.h"

/* One budget for all servers of the process (what they hold is the process's memory). */
static const struct budget_config chunk_budget_config = {
    .total = 2 * 1024 * 1024,
    .max = RPC_CHUNK_DATA_MAX,
    .turn = 256 * 1024,
    .min = 16 * 1024,
    .stall_ms = 250,
};
static struct budget *chunk_budget;
static pthread_once_t chunk_budget_once = PTHREAD_ONCE_INIT;

static void make_chunk_budget(void)
{
    if (budget_new(&chunk_budget_config, &chunk_budget) < 0)
        abort(); /* a constant config that is valid; only ENOMEM at start-up */
}

enum token {
    TOK_PUMP,
    TOK_WRITE,
    TOK_ARMING,
    TOK_WAIT,
    TOK_QUEUED,
    TOK_CANCEL,
    TOK_STATUS,
    TOK_NONE
};

struct scall {
    struct tag close_tag, write_tag, status_tag, hop_tag;
    struct server *s;
    struct call_info ci;
    struct jm_reader *rd;
    bool follow;
    enum server_stream_form form;
    bool stop_on_disconnect;

    pthread_mutex_t mu;
    enum token tok;
    bool close_done, woke_early, md_sent, final_sent, freed;
    /* This stream's place in the budget; touched by the token holder and scall_free. */
    struct budget_waiter bw;
    /* Reserved in the budget for the message in flight (or 0). */
    size_t chunk_bytes;
    int cancelled; /* written by gRPC at RECV_CLOSE_ON_SERVER */
    int code;      /* the status we sent, for the audit line */
    uint64_t next_offset;
    grpc_byte_buffer *bb; /* the message in flight */
};

static void pump(struct scall *sc);

/* Destroys the message in flight (if any) and gives its capacity back to the budget. */
static void drop_message(struct scall *sc)
{
    if (sc->bb) {
        grpc_byte_buffer_destroy(sc->bb);
        sc->bb = NULL;
    }
    if (sc->chunk_bytes) {
        budget_release(chunk_budget, sc->chunk_bytes);
        sc->chunk_bytes = 0;
    }
}

static void scall_free(struct scall *sc)
{
    budget_idle(chunk_budget, &sc->bw);
    drop_message(sc);
    server_audit(sc->s, &sc->ci, sc->cancelled ? RPC_CANCELLED : sc->code);
    jm_reader_free(sc->rd);
    grpc_call_unref(sc->ci.call);
    (void)pthread_mutex_destroy(&sc->mu);
    server_call_leave(sc->s);
    free(sc);
}

/* With mu held: true when the context is to be freed by the caller (after unlocking). */
static bool done_locked(struct scall *sc)
{
    if (sc->close_done && sc->tok == TOK_NONE && !sc->freed) {
        sc->freed = true;
        return true;
    }
    return false;
}

/* With mu held: unlocks, and frees the context if nothing holds it any more. */
static void unlock_and_release(struct scall *sc)
{
    bool done = done_locked(sc);

    (void)pthread_mutex_unlock(&sc->mu);
    if (done)
        scall_free(sc);
}

/* With mu held and the wake-up armed: takes it back. On return (mu held again) the wake-up is
 * disarmed or has run to completion (it saw CANCEL), and nobody holds the token. */
static void disarm_locked(struct scall *sc)
{
    sc->tok = TOK_CANCEL;
    (void)pthread_mutex_unlock(&sc->mu);
    (void)jm_reader_cancel_wait(sc->rd);
    (void)pthread_mutex_lock(&sc->mu);
    sc->tok = TOK_NONE;
}

static void drop_token(struct scall *sc)
{
    (void)pthread_mutex_lock(&sc->mu);
    sc->tok = TOK_NONE;
    unlock_and_release(sc);
}

static void stopped_for_disconnect(void *userdata)
{
    (void)userdata;
}

static void on_close(struct tag *t, bool ok)
{
    struct scall *sc = (struct scall *)((char *)t - offsetof(struct scall, close_tag));

    (void)ok;
    /* Cancelled is set only when the call did not end with our status: the client went away
     * (or cancelled) before the job's end. A tied job goes with it. */
    if (sc->stop_on_disconnect && sc->cancelled) {
        const struct rpc_policy *p = &sc->s->cfg.policy;
        int r = jm_stop(sc->s->jm, sc->ci.id, sc->ci.cn, p->default_signal, p->default_grace_ms,
                        stopped_for_disconnect, NULL);
        if (r < 0 && r != -ENOENT)
            log_warn("job %s: stopping it after its client went away: %s", sc->ci.id, strerror(-r));
        else if (r == 0)
            log_info("job %s: its client (%s) went away: stopping it", sc->ci.id, sc->ci.peer);
    }
    (void)pthread_mutex_lock(&sc->mu);
    sc->close_done = true;
    if (sc->tok == TOK_WAIT)
        disarm_locked(sc);
    else if (sc->tok == TOK_QUEUED && budget_cancel(chunk_budget, &sc->bw))
        sc->tok = TOK_NONE; /* no grant will come: nobody holds the token */
    /* (QUEUED and not cancelled: the grant is on its way and hops to a CQ thread; the pump
     * then sees close_done.) */
    unlock_and_release(sc);
}

/* Starts a batch holding the token; on failure the call is cancelled (close will follow). */
static void start(struct scall *sc, grpc_op *ops, size_t n, struct tag *tag)
{
    grpc_call_error e = tag_start_batch(sc->ci.call, ops, n, tag);

    if (e != GRPC_CALL_OK) {
        log_debug("stream %s: start_batch: %d", sc->ci.id, (int)e);
        (void)grpc_call_cancel(sc->ci.call, NULL);
        drop_message(sc);
        drop_token(sc);
    }
}

/* Starts the stream's next batch, holding the token: initial metadata if not sent yet, the
 * message bb (when want_msg), then the status (when with_status). A message that could not be
 * packed (want_msg, bb NULL) ends the stream with INTERNAL instead. */
static void send_batch(struct scall *sc, bool want_msg, grpc_byte_buffer *bb, bool with_status,
                       int code, const char *msg)
{
    grpc_slice details = grpc_slice_from_static_string(msg);
    grpc_op ops[3];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    (void)pthread_mutex_lock(&sc->mu);
    if (sc->close_done || (want_msg && !bb)) {
        bool closed = sc->close_done;

        (void)pthread_mutex_unlock(&sc->mu);
        sc->bb = bb;
        drop_message(sc); /* outside mu, as everywhere: a release may lock other streams */
        if (closed)
            drop_token(sc);
        else
            send_batch(sc, false, NULL, true, RPC_INTERNAL, "the server ran out of memory");
        return;
    }
    sc->tok = with_status ? TOK_STATUS : TOK_WRITE;
    if (with_status)
        sc->code = code;
    sc->bb = bb;
    if (!sc->md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        sc->md_sent = true;
    }
    if (bb) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = bb;
    }
    if (with_status) {
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = (grpc_status_code)code;
        ops[n++].data.send_status_from_server.status_details = &details;
    }
    (void)pthread_mutex_unlock(&sc->mu);
    start(sc, ops, n, with_status ? &sc->status_tag : &sc->write_tag);
}

static void send_message(struct scall *sc, grpc_byte_buffer *bb)
{
    send_batch(sc, true, bb, false, RPC_OK, "");
}

static void send_status(struct scall *sc, int code, const char *msg)
{
    send_batch(sc, false, NULL, true, code, msg);
}

/* The final chunk and the OK status in one batch: the client learns the job's end and the
 * stream's in one read, without a send completion and another batch in between (one hop less
 * on the path of a Start followed to its end). */
static void send_final(struct scall *sc, grpc_byte_buffer *bb)
{
    send_batch(sc, true, bb, true, RPC_OK, "");
}

static void on_write(struct tag *t, bool ok)
{
    struct scall *sc = (struct scall *)((char *)t - offsetof(struct scall, write_tag));

    drop_message(sc); /* outside mu: the release may grant (and lock) other streams */
    (void)pthread_mutex_lock(&sc->mu);
    if (!ok || sc->close_done) {
        (void)pthread_mutex_unlock(&sc->mu);
        drop_token(sc);
        return;
    }
    sc->tok = TOK_PUMP;
    (void)pthread_mutex_unlock(&sc->mu);
    pump(sc);
}

static void on_status(struct tag *t, bool ok)
{
    struct scall *sc = (struct scall *)((char *)t - offsetof(struct scall, status_tag));

    (void)ok;
    drop_message(sc); /* the final chunk, if it went with the status (we hold the token) */
    drop_token(sc);
}

/* The hop from a wake-up to a CQ thread (an empty batch completes at once on our queue). */
static void on_hop(struct tag *t, bool ok)
{
    struct scall *sc = (struct scall *)((char *)t - offsetof(struct scall, hop_tag));

    (void)ok;
    pump(sc);
}

/* Budget grant: our turn to send came (or turns stalled). Called once per queueing, without
 * the budget's lock, from the thread whose release made room or from the budget's timer; like
 * on_wake it only hands the token to a CQ thread. */
static void on_grant(struct budget_waiter *w)
{
    struct scall *sc = (struct scall *)((char *)w - offsetof(struct scall, bw));

    (void)pthread_mutex_lock(&sc->mu); /* waits for the pump that queued us to let go */
    sc->tok = TOK_PUMP;
    (void)pthread_mutex_unlock(&sc->mu);
    if (!server_hop(&sc->ci, &sc->hop_tag)) { /* give the grant back, and the token */
        budget_release(chunk_budget, budget_acquire(chunk_budget, &sc->bw, 0));
        (void)pthread_mutex_lock(&sc->mu);
        sc->tok = TOK_NONE;
        unlock_and_release(sc); /* not inside outlog here: freeing is allowed */
    }
}

/* outlog wake-up: called once, from the appending/closing thread (the job event thread),
 * without outlog's lock. It must not free the reader (outlog forbids it inside the callback)
 * nor read the log on the event thread: it only hands the token to a CQ thread. */
static void on_wake(void *userdata)
{
    struct scall *sc = userdata;

    (void)pthread_mutex_lock(&sc->mu);
    if (sc->tok == TOK_ARMING) {
        sc->woke_early = true; /* the pump, still arming, will read again */
        (void)pthread_mutex_unlock(&sc->mu);
        return;
    }
    if (sc->tok != TOK_WAIT) { /* CANCEL: the close handler owns the stream */
        (void)pthread_mutex_unlock(&sc->mu);
        return;
    }
    sc->tok = TOK_PUMP;
    (void)pthread_mutex_unlock(&sc->mu);
    if (!server_hop(&sc->ci, &sc->hop_tag)) {
        /* Freeing is not allowed here: the close handler will. */
        (void)pthread_mutex_lock(&sc->mu);
        sc->tok = TOK_NONE;
        (void)pthread_mutex_unlock(&sc->mu);
    }
}

static grpc_byte_buffer *final_chunk(struct scall *sc)
{
    Runjob__V1__OutputChunk c = RUNJOB__V1__OUTPUT_CHUNK__INIT;
    struct status_buf sb;

    jm_reader_final_info(sc->rd, &sb.info);
    server_fill_status(&sb);
    c.final_status = &sb.st;
    return rpc_bb_pack(&c.base);
}

/* Holds the token (PUMP), no lock: reads what there is and starts the next batch, or parks. */
static void pump(struct scall *sc)
{
    for (;;) {
        struct outlog_chunk_info info;
        uint64_t have = jm_reader_log_bytes(sc->rd);
        size_t cap;
        grpc_slice sl;
        ssize_t n;
        int r;

        /* Under mu, so that a close sees either the pump or the queued stream. */
        (void)pthread_mutex_lock(&sc->mu);
        if (sc->close_done) {
            (void)pthread_mutex_unlock(&sc->mu);
            drop_token(sc);
            return;
        }
        cap = budget_acquire(chunk_budget, &sc->bw,
                             have > sc->next_offset ? have - sc->next_offset : 0);
        if (!cap) { /* our turn comes with on_grant */
            sc->tok = TOK_QUEUED;
            (void)pthread_mutex_unlock(&sc->mu);
            return;
        }
        (void)pthread_mutex_unlock(&sc->mu);
        sl = rpc_chunk_slice_new(cap);
        sc->chunk_bytes = cap; /* until the send completes (drop_message) */
        n = jm_reader_read(sc->rd, GRPC_SLICE_START_PTR(sl) + RPC_CHUNK_HDR_MAX, cap, &info);

        if (n > 0) {
            int stream = info.stream == OUTLOG_STDERR
                             ? RUNJOB__V1__OUTPUT_STREAM__OUTPUT_STREAM_STDERR
                             : RUNJOB__V1__OUTPUT_STREAM__OUTPUT_STREAM_STDOUT;
            sc->next_offset = info.offset + (uint64_t)n;
            /* A JobOutput is an OutputChunk with nothing but its data: the same field 1
             * (bytes), so the same framing without stream, offset and time. */
            if (sc->form == SERVER_STREAM_OUTPUTS)
                send_message(sc, rpc_chunk_finish(sl, (size_t)n, 0, 0, 0));
            else
                send_message(sc,
                             rpc_chunk_finish(sl, (size_t)n, stream, info.offset, info.time_ms));
            return;
        }
        grpc_slice_unref(sl);
        drop_message(sc);
        budget_idle(chunk_budget, &sc->bw); /* nothing to send now: our share goes to others */
        if (n == 0) {                       /* the log is closed and everything was read */
            if (sc->follow && !sc->final_sent && sc->form == SERVER_STREAM_CHUNKS) {
                sc->final_sent = true;
                send_final(sc, final_chunk(sc));
            } else {
                send_status(sc, RPC_OK, "");
            }
            return;
        }
        if (n != -EAGAIN) {
            log_error("stream %s: reading the output log: %s", sc->ci.id, strerror((int)-n));
            send_status(sc, RPC_INTERNAL, "the server could not read the job's output");
            return;
        }
        if (!sc->follow) { /* everything that existed was sent */
            send_status(sc, RPC_OK, "");
            return;
        }
        (void)pthread_mutex_lock(&sc->mu);
        if (sc->close_done) {
            (void)pthread_mutex_unlock(&sc->mu);
            drop_token(sc);
            return;
        }
        sc->tok = TOK_ARMING;
        sc->woke_early = false;
        (void)pthread_mutex_unlock(&sc->mu);

        r = jm_reader_wait(sc->rd, on_wake, sc);

        (void)pthread_mutex_lock(&sc->mu);
        if (r == -EAGAIN || (r == 0 && sc->woke_early)) {
            sc->tok = TOK_PUMP; /* data (or EOF) came in meanwhile: read again */
            (void)pthread_mutex_unlock(&sc->mu);
            continue;
        }
        if (r < 0) {
            sc->tok = TOK_PUMP;
            (void)pthread_mutex_unlock(&sc->mu);
            log_error("stream %s: waiting on the output log: %s", sc->ci.id, strerror(-r));
            send_status(sc, RPC_INTERNAL, "the server could not follow the job's output");
            return;
        }
        if (sc->close_done) { /* closed while we armed: disarm ourselves */
            disarm_locked(sc);
            unlock_and_release(sc);
            return;
        }
        sc->tok = TOK_WAIT;
        (void)pthread_mutex_unlock(&sc->mu);
        return;
    }
}

static void reply_error(struct server *s, struct call_info *ci, int code, const char *msg)
{
    /* Used only before the stream context exists: a one-shot status batch on a tiny context
     * would need its own tag; cancel_with_status does exactly that inside gRPC. */
    (void)grpc_call_cancel_with_status(ci->call, (grpc_status_code)code, msg, NULL);
    server_audit(s, ci, code);
    grpc_call_unref(ci->call);
    server_call_leave(s);
}

void server_stream_begin(struct server *s, struct call_info *ci, struct jm_job *j,
                         const struct server_stream_spec *spec)
{
    unsigned mask = spec->select;
    struct scall *sc;
    grpc_op op;
    grpc_call_error ge;
    uint64_t end = 0;
    char msg[200];
    int r, code;

    (void)pthread_once(&chunk_budget_once, make_chunk_budget);
    sc = calloc(1, sizeof(*sc));
    if (!sc) {
        reply_error(s, ci, RPC_RESOURCE_EXHAUSTED, "server out of memory");
        return;
    }
    r = jm_reader_open(s->jm, j, mask, spec->offset, &sc->rd, &end);
    if (r < 0) {
        free(sc);
        if (r == -EIDRM) { /* removed since the lookup: as if it had been before */
            (void)snprintf(msg, sizeof(msg), "job %s not found", ci->id);
            reply_error(s, ci, RPC_NOT_FOUND, msg);
            return;
        }
        if (r == -ENODATA) {
            (void)snprintf(msg, sizeof(msg), "the output of job %s is not available", ci->id);
            reply_error(s, ci, RPC_DATA_LOSS, msg);
            return;
        }
        if (r == -ERANGE) {
            (void)snprintf(msg, sizeof(msg),
                           "offset %llu is past the end of the job's output: it has ended with "
                           "%llu bytes of %s",
                           (unsigned long long)spec->offset, (unsigned long long)end,
                           mask == OUTLOG_SELECT_STDOUT   ? "stdout"
                           : mask == OUTLOG_SELECT_STDERR ? "stderr"
                                                          : "stdout and stderr");
            reply_error(s, ci, RPC_OUT_OF_RANGE, msg);
            return;
        }
        log_error("stream %s: opening a reader: %s", ci->id, strerror(-r));
        /* A log kept from before a restart is read only now: gone or not a log is data loss. */
        if (r == -ENOENT || r == -EBADMSG || r == -EIO) {
            reply_error(s, ci, RPC_DATA_LOSS, "the output of this job is not available");
            return;
        }
        code = rpc_code_from_errno(r) == RPC_RESOURCE_EXHAUSTED ? RPC_RESOURCE_EXHAUSTED
                                                                : RPC_INTERNAL;
        reply_error(s, ci, code, "the server could not read the job's output");
        return;
    }
    sc->close_tag.fn = on_close;
    sc->write_tag.fn = on_write;
    sc->status_tag.fn = on_status;
    sc->hop_tag.fn = on_hop;
    sc->s = s;
    sc->ci = *ci;
    sc->follow = spec->follow;
    sc->form = spec->form;
    sc->stop_on_disconnect = spec->stop_on_disconnect;
    sc->next_offset = spec->offset;
    sc->bw.on_grant = on_grant;
    sc->tok = TOK_PUMP;
    (void)pthread_mutex_init(&sc->mu, NULL);

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &sc->cancelled;
    ge = tag_start_batch(sc->ci.call, &op, 1, &sc->close_tag);
    if (ge != GRPC_CALL_OK) {
        /* Without a close batch we would never learn of the end: give up on the call. */
        log_error("stream %s: arming RECV_CLOSE_ON_SERVER: %d", ci->id, (int)ge);
        jm_reader_free(sc->rd);
        (void)pthread_mutex_destroy(&sc->mu);
        free(sc);
        reply_error(s, ci, RPC_INTERNAL, "the server could not start the stream");
        return;
    }
    pump(sc);
}
