#pragma once
/* Shared between core/server.c (setup, shutdown), core/server-calls.c (request slots, CQ
 * threads, dispatch), core/server-unary.c (the unary calls) and core/server-stream.c (the
 * Stream call). Not a public header. */
#include <pthread.h>
#include <sys/queue.h>
#include <stdbool.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "manager.h"
#include "rpc.h"
#include "server.h"
#include "tsan.h"

/* Every outstanding batch carries a tag: a struct tag inside the call's context, whose fn the
 * CQ thread calls with the batch's success flag. */
struct tag {
    void (*fn)(struct tag *t, bool ok);
};

/* The CQ orders everything a thread did before it handed a tag to gRPC (start_batch,
 * request_call, shutdown_and_notify) before the CQ thread that gets the tag back. ThreadSanitizer
 * cannot see that edge: Debian's libgrpc is not instrumented, so its queue and locks are
 * invisible and every context handed over through the CQ looked like a race (e.g. a slot
 * calloc'ed by the main thread and read by on_request on a CQ thread). These two calls state
 * the edge for TSan and nothing more: tag_publish right before the gRPC call that takes the
 * tag, tag_arrived right after the CQ returned it. Accesses that do not go through this hand-off
 * (event thread, start pool, streams' own locking) stay fully checked. No-ops without TSan.
 * The context must not be read after tag_publish (the CQ thread may free it at once): load the
 * gRPC call's arguments first, as tag_start_batch does by taking them as parameters. */
#if RUNJOB_TSAN
#include <sanitizer/tsan_interface.h>
static inline void tag_publish(struct tag *t)
{
    __tsan_release(t);
}
static inline void tag_arrived(struct tag *t)
{
    __tsan_acquire(t);
}
#else
static inline void tag_publish(struct tag *t)
{
    (void)t;
}
static inline void tag_arrived(struct tag *t)
{
    (void)t;
}
#endif

/* grpc_call_start_batch with the hand-off above; the arguments are read before it. */
static inline grpc_call_error tag_start_batch(grpc_call *call, const grpc_op *ops, size_t n,
                                              struct tag *t)
{
    tag_publish(t);
    return grpc_call_start_batch(call, ops, n, t, NULL);
}

#define CN_MAX   256
#define PEER_MAX 128

/* grpc.health.v1.Health's methods, registered after ours (server-health.c). */
enum { SERVER_HEALTH_CHECK, SERVER_HEALTH_WATCH, SERVER_HEALTH_METHODS };
#define SERVER_METHODS (RPC_M_COUNT + SERVER_HEALTH_METHODS)

struct hwatch;

struct server {
    struct server_config cfg;
    struct jm *jm;
    grpc_server *gs;
    grpc_completion_queue *cq;
    void *method_handles[SERVER_METHODS]; /* ours (enum rpc_method), then Health's */
    int port;
    pthread_t cq_threads[2];
    unsigned n_cq_threads;
    struct tag shutdown_tag;

    pthread_mutex_t mu; /* guards the fields below */
    pthread_cond_t cond;
    bool shutting_down;           /* no re-arming of request slots */
    bool shutdown_done;           /* the shutdown tag came back */
    unsigned live_calls;          /* call contexts not yet freed */
    LIST_HEAD(, hwatch) watchers; /* Health.Watch calls not yet closed */
};

/* Identity and bookkeeping common to every call. */
struct call_info {
    grpc_call *call;
    const char *method;
    char cn[CN_MAX];
    char peer[PEER_MAX];
    char id[JM_ID_LEN + 1];
    bool is_admin;
};

/* ---- calls (server-calls.c) ---- */

/* Registers every RPC method with s->gs (before grpc_server_start). */
void server_register_methods(struct server *s);
/* Arms the request slots: a few per method, and a few for unknown methods. */
void server_arm_slots(struct server *s);
/* A completion-queue thread (arg: the server): runs every tag's fn until the CQ shuts down. */
void *server_cq_thread(void *arg);
/* One audit line for a finished RPC. */
void server_audit(struct server *s, const struct call_info *ci, int code);
/* Call contexts count themselves in and out so shutdown can wait for them. */
void server_call_enter(struct server *s);
void server_call_leave(struct server *s);
/* Hands a parked call to a CQ thread: an empty batch completes at once on the server's queue
 * and t's fn runs there. A wake-up on another thread (a job's output or stdin, the stream
 * budget) only passes the call's token on this way, so that the call's work and its freeing
 * stay on CQ threads. False if the batch did not start (an empty one cannot fail; if it did,
 * the call is cancelled and its close follows): the caller still holds the token. */
bool server_hop(const struct call_info *ci, struct tag *t);
/* A JobStatus message made from sb->info (jm_job_info, jm_reader_final_info); its strings
 * point into the job's spec and into *sb, which must outlive the message. */
struct status_buf {
    Runjob__V1__JobStatus st;
    Runjob__V1__Limits limits;
    Runjob__V1__Usage usage;
    struct jm_info info;
};
void server_fill_status(struct status_buf *sb);

/* What a stream call sends: runjob.v1's OutputChunks (stream, offset, receive time, and the
 * final status when following), or jobmanager.v1's JobOutputs (the bytes alone; the stream
 * just ends with the job). */
enum server_stream_form { SERVER_STREAM_CHUNKS, SERVER_STREAM_OUTPUTS };
struct server_stream_spec {
    unsigned select; /* OUTLOG_SELECT_* */
    uint64_t offset;
    bool follow;
    enum server_stream_form form;
    bool stop_on_disconnect; /* the stream's caller going away stops the job */
};
/* Starts a stream call (request already decoded and checked, j visible to the caller).
 * Takes over ci->call; the context frees itself when the call is over. */
void server_stream_begin(struct server *s, struct call_info *ci, struct jm_job *j,
                         const struct server_stream_spec *spec);

/* ---- Input (server-input.c) ---- */

struct ucall;
struct rpc_request;
/* Starts an Input call from its first message (decoded and checked): takes uc's call (uc is
 * freed) and rq->msg (set to NULL), or answers it. */
void server_handle_input(struct ucall *uc, struct rpc_request *rq);

/* ---- unary calls (server-unary.c) ---- */

/* A unary call's reply context: one final batch. */
struct ucall {
    struct tag done;
    struct server *s;
    struct call_info ci;
    int cancelled;
    grpc_byte_buffer *reply;
};

/* The unary reply batch completed: frees the context. */
void server_ucall_done(struct tag *t, bool ok);
/* Sends the reply (msg may be NULL for an error) and the status in one batch; the context is
 * freed when it completes. Callable from any thread. */
void server_finish(struct ucall *uc, int code, const char *details, const ProtobufCMessage *msg);
/* server_finish with no message and a formatted status message. */
void server_finishf(struct ucall *uc, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* NOT_FOUND for uc->ci.id: the same words for an unknown job and another user's. */
void server_not_found(struct ucall *uc);
/* The handlers of the unary RPCs (server-unary.c); rq is decoded and checked. */
void server_handle_start(struct ucall *uc, const struct rpc_request *rq);
void server_handle_stop(struct ucall *uc, const struct rpc_request *rq);
void server_handle_status(struct ucall *uc, const struct rpc_request *rq);
void server_handle_list(struct ucall *uc);
void server_handle_ping(struct ucall *uc);
/* Metrics (server-metrics.c): administrators only. */
void server_handle_metrics(struct ucall *uc);
void server_handle_remove(struct ucall *uc, const struct rpc_request *rq);
/* A failed Start's answer, the same for both services (st->err < 0); finishes uc. */
void server_finish_start_error(struct ucall *uc, const struct jm_started *st);

/* ---- jobmanager.v1, the published design's service (server-jobmanager.c) ---- */

/* Handles a decoded and checked request of method m (RPC_M_JOBMANAGER_*); a StreamOutput
 * takes uc's call (uc is freed). */
void server_jobmanager_dispatch(struct ucall *uc, enum rpc_method m, const struct rpc_request *rq);

/* ---- grpc.health.v1.Health (server-health.c) ---- */

/* The method path and audit name of Health method h (SERVER_HEALTH_*). */
const char *server_health_path(int h);
const char *server_health_name(int h);
/* Answers Check, or starts a Watch (which takes uc's call; uc is freed). */
void server_health_dispatch(struct ucall *uc, int h, grpc_byte_buffer *payload);
/* The server begins to shut down: every Watch gets NOT_SERVING and ends. */
void server_health_shutdown(struct server *s);

/* ---- metrics (server-metrics.c) ---- */

struct strbuf;
/* Counts an answered call (server_audit does, for every call). */
void server_count_call(const char *method, int code);
/* Appends every metric in the Prometheus text format. 0 or -ENOMEM. */
int server_write_metrics(struct server *s, struct strbuf *b);
/* Rewrites cfg.metrics_path atomically (a temporary file renamed over it). 0 or -errno. */
int server_write_metrics_file(struct server *s);

/* The CN of the call's verified client certificate into buf. 0, -ENOKEY when there is none,
 * -ENOTUNIQ when the certificate names more than one (server-calls.c says why). */
int server_peer_cn(grpc_call *call, char *buf, size_t len);
