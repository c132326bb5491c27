/* The agent's side of the relay (core/rpc-relay-internal.h): each accepted connection is one
 * exchange, a HELLO or a call made on the agent's own channel with the client's messages
 * passed through as bytes, never decoded here. A call whose request comes whole is one thread's
 * work; an Input call takes two: this one takes the client's frames to the call (one message
 * in flight: gRPC's flow control reaches the client through the socket's), the other takes the
 * call's replies and status to the client. */
#include "rpc-internal.h"
#include "rpc-relay-internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

struct relay_call {
    int fd;
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_metadata_array md_initial, md_trailing;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    char tag_first, tag_end, tag_recv, tag_send;
};

static void pluck(struct relay_call *rc, void *tag, bool *ret_ok)
{
    grpc_event ev =
        grpc_completion_queue_pluck(rc->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ret_ok)
        *ret_ok = ev.success != 0;
}

/* How long a new connection may take to say what it wants. */
#define FIRST_FRAME_S 5
/* A wait on the call can last as long as the job (a quiet job's Stream, an Input whose job does
 * not read): meanwhile the client hanging up is looked for on the socket this often, and
 * cancels the call. */
#define WATCH_MS 200

/* How long a call waits for the agent's channel to reconnect when it finds it failed: a TLS
 * connection's few round trips to a server that is back; to one still down, this is the delay
 * added to the failure. */
#define RETRY_WAIT_MS 500

static void pluck_watching(struct relay_call *rc, void *tag, bool *ret_ok)
{
    for (;;) {
        gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                          gpr_time_from_millis(WATCH_MS, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_pluck(rc->cq, tag, until, NULL);
        struct pollfd p = {.fd = rc->fd, .events = POLLRDHUP};
        if (ev.type != GRPC_QUEUE_TIMEOUT) {
            if (ret_ok)
                *ret_ok = ev.success != 0;
            return;
        }
        if (poll(&p, 1, 0) > 0 && p.revents & (POLLRDHUP | POLLHUP | POLLERR))
            (void)grpc_call_cancel(rc->call, NULL);
    }
}

static int send_headers(struct relay_call *rc)
{
    struct iovec v[64];
    int n = 0;

    for (size_t i = 0; i < rc->md_initial.count && n + 2 <= 64; i++) {
        /* By address: a short slice holds its bytes inline, and a copy's would be ours. */
        grpc_slice *k = &rc->md_initial.metadata[i].key;
        v[n++] = (struct iovec){GRPC_SLICE_START_PTR(*k), GRPC_SLICE_LENGTH(*k)};
        v[n++] = (struct iovec){(void *)"", 1};
    }
    return relay_send(rc->fd, RELAY_HEADERS, v, n);
}

/* A reply message to the client, its slices written as they are (no copy). */
static int send_message(struct relay_call *rc, grpc_byte_buffer *bb)
{
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count <= 64) {
        struct iovec v[64];
        size_t n = bb->data.raw.slice_buffer.count;
        for (size_t i = 0; i < n; i++) {
            grpc_slice *s = &bb->data.raw.slice_buffer.slices[i]; /* inline bytes: by address */
            v[i] = (struct iovec){GRPC_SLICE_START_PTR(*s), GRPC_SLICE_LENGTH(*s)};
        }
        return relay_send(rc->fd, RELAY_MSG, v, (int)n);
    }
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return -EBADMSG;
    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    int ret =
        relay_send_bytes(rc->fd, RELAY_MSG, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
    grpc_slice_unref(all);
    return ret;
}

static int send_status(struct relay_call *rc)
{
    uint8_t code[4];
    const char *e = rc->error_string ? rc->error_string : "";
    for (int i = 0; i < 4; i++)
        code[i] = (uint8_t)((uint32_t)rc->status >> (8 * i));
    struct iovec v[5] = {
        {code, 4},       {GRPC_SLICE_START_PTR(rc->details), GRPC_SLICE_LENGTH(rc->details)},
        {(void *)"", 1}, {(void *)e, strlen(e)},
        {(void *)"", 1},
    };
    return relay_send(rc->fd, RELAY_STATUS, v, 5);
}

/* The call's replies and its end, to the client. A client that has gone makes the rest moot:
 * the call is cancelled and its batches still plucked. */
static void *downstream(void *arg)
{
    struct relay_call *rc = arg;
    bool gone = false;

    pluck_watching(rc, &rc->tag_first, NULL);
    gone = send_headers(rc) < 0;
    for (;;) {
        grpc_byte_buffer *bb = NULL;
        grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
        op.data.recv_message.recv_message = &bb;
        if (grpc_call_start_batch(rc->call, &op, 1, &rc->tag_recv, NULL) != GRPC_CALL_OK)
            break;
        pluck_watching(rc, &rc->tag_recv, NULL);
        if (!bb)
            break;
        if (!gone && send_message(rc, bb) < 0) {
            gone = true;
            (void)grpc_call_cancel(rc->call, NULL);
        }
        grpc_byte_buffer_destroy(bb);
    }
    pluck_watching(rc, &rc->tag_end, NULL);
    if (!gone)
        (void)send_status(rc);
    return NULL;
}

/* A MSG frame's payload as a message for the call (a copy: the frame is reused). */
static grpc_byte_buffer *frame_message(const struct relay_frame *f)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)f->data, f->len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);

    grpc_slice_unref(s);
    return bb;
}

/* The client's frames to the call until the client closes (which cancels what is left). */
static void upstream(struct relay_call *rc)
{
    struct relay_frame f = {0};
    bool ended = false, failed = false;

    while (relay_recv(rc->fd, &f) > 0) {
        grpc_op op = {0};
        bool ok;
        if (f.type == RELAY_MSG && !ended) {
            if (failed)
                continue; /* the call has ended; its STATUS is on its way to the client */
            grpc_byte_buffer *bb = frame_message(&f);
            op.op = GRPC_OP_SEND_MESSAGE;
            op.data.send_message.send_message = bb;
            ok = grpc_call_start_batch(rc->call, &op, 1, &rc->tag_send, NULL) == GRPC_CALL_OK;
            if (ok)
                pluck_watching(rc, &rc->tag_send, &ok);
            grpc_byte_buffer_destroy(bb);
            failed = !ok;
        } else if (f.type == RELAY_END && !ended) {
            ended = true;
            op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
            if (!failed &&
                grpc_call_start_batch(rc->call, &op, 1, &rc->tag_send, NULL) == GRPC_CALL_OK)
                pluck(rc, &rc->tag_send, NULL);
        } else {
            break; /* out of turn: end the exchange */
        }
    }
    relay_frame_free(&f);
    (void)grpc_call_cancel(rc->call, NULL); /* a no-op on a call that has ended */
}

/* A call whose one request comes whole (every method but Input: the client sends CALL, the
 * message and END at once): one batch takes it to the server, and this thread then relays the
 * replies. false when the frames are not that (the exchange ends). */
static bool start_whole(struct relay_call *rc)
{
    struct relay_frame f = {0};
    grpc_byte_buffer *bb = NULL;
    grpc_op ops[4];
    bool ok = false;

    if (relay_recv(rc->fd, &f) <= 0 || f.type != RELAY_MSG)
        goto out;
    bb = frame_message(&f);
    if (relay_recv(rc->fd, &f) <= 0 || f.type != RELAY_END)
        goto out;
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &rc->md_initial;
    ok = grpc_call_start_batch(rc->call, ops, 4, &rc->tag_first, NULL) == GRPC_CALL_OK;
out:
    if (bb)
        grpc_byte_buffer_destroy(bb);
    relay_frame_free(&f);
    return ok;
}

static void serve_call(struct rpc_client *c, int fd, int method, int64_t deadline_ms)
{
    struct relay_call rc = {.fd = fd, .status = GRPC_STATUS_UNKNOWN};
    bool streaming = method == RPC_M_INPUT; /* the one method whose client sends a stream */
    pthread_t down;
    grpc_op ops[2];

    rc.cq = grpc_completion_queue_create_for_pluck(NULL);
    rpc_client_await_ready(
        c, rc.cq, deadline_ms > 0 && deadline_ms < RETRY_WAIT_MS ? deadline_ms / 2 : RETRY_WAIT_MS);
    rc.call = rpc_client_call_new(c, (enum rpc_method)method, rc.cq, deadline_ms);
    rc.details = grpc_empty_slice();
    grpc_metadata_array_init(&rc.md_initial);
    grpc_metadata_array_init(&rc.md_trailing);
    if (streaming) {
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[1].data.recv_initial_metadata.recv_initial_metadata = &rc.md_initial;
        if (grpc_call_start_batch(rc.call, ops, 2, &rc.tag_first, NULL) != GRPC_CALL_OK)
            goto out;
    } else if (!start_whole(&rc)) {
        goto out;
    }
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &rc.md_trailing;
    ops[0].data.recv_status_on_client.status = &rc.status;
    ops[0].data.recv_status_on_client.status_details = &rc.details;
    ops[0].data.recv_status_on_client.error_string = &rc.error_string;
    if (grpc_call_start_batch(rc.call, ops, 1, &rc.tag_end, NULL) != GRPC_CALL_OK) {
        (void)grpc_call_cancel(rc.call, NULL);
        pluck(&rc, &rc.tag_first, NULL);
        goto out;
    }
    if (!streaming) {
        (void)downstream(&rc);
        goto out;
    }
    if (pthread_create(&down, NULL, downstream, &rc) != 0) {
        (void)grpc_call_cancel(rc.call, NULL);
        pluck(&rc, &rc.tag_first, NULL);
        pluck(&rc, &rc.tag_end, NULL);
        goto out;
    }
    upstream(&rc);
    (void)pthread_join(down, NULL);
out:
    grpc_call_unref(rc.call);
    grpc_metadata_array_destroy(&rc.md_initial);
    grpc_metadata_array_destroy(&rc.md_trailing);
    grpc_slice_unref(rc.details);
    gpr_free((void *)rc.error_string);
    grpc_completion_queue_shutdown(rc.cq);
    while (
        grpc_completion_queue_pluck(rc.cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
        GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(rc.cq);
}

int rpc_relay_serve(struct rpc_client *c, int fd)
{
    /* A connection that says nothing would hold one of the agent's few slots for good. */
    struct timeval tv = {.tv_sec = FIRST_FRAME_S};
    struct relay_frame f = {0};
    const char *mine;
    size_t len;
    int method, r;
    int64_t deadline_ms;
    bool same;

    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (relay_recv_max(fd, &f, RELAY_SETTINGS_MAX) <= 0 || f.type != RELAY_HELLO)
        goto out;
    mine = rpc_client_settings(c, &len);
    same = f.len == len && memcmp(f.data, mine, len) == 0;
    if (!same) {
        (void)relay_send_bytes(fd, RELAY_NO, NULL, 0);
        relay_frame_free(&f);
        return -EPERM;
    }
    if (relay_send_bytes(fd, RELAY_YES, NULL, 0) < 0)
        goto out;
    /* The end here: a client's check at its open. Else its call. */
    r = relay_recv_max(fd, &f, RELAY_CALL_BYTES);
    if (r <= 0 || relay_call_decode(&f, &method, &deadline_ms) < 0 || method < 0 ||
        method >= RPC_M_COUNT || deadline_ms < 0)
        goto out;
    tv.tv_sec = 0; /* from here, a call's frames come when its user types */
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    relay_frame_free(&f);
    serve_call(c, fd, method, deadline_ms);
out:
    relay_frame_free(&f);
    return 0;
}

void rpc_relay_refuse(int fd, const char *why)
{
    uint8_t code[4] = {RPC_RESOURCE_EXHAUSTED, 0, 0, 0};
    struct iovec v[4] = {{code, 4}, {(void *)why, strlen(why) + 1}, {(void *)"", 1}};

    (void)relay_send(fd, RELAY_STATUS, v, 3);
}
