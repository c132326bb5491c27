#pragma once
/* Shared between core/server.c (setup, CQ threads, unary calls, shutdown) and
 * core/server-stream.c (the Stream call). Not a public header. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "jobtable.h"
#include "outlog.h"
#include "rpc.h"
#include "server.h"

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
#if defined(__SANITIZE_THREAD__)
#define SERVER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SERVER_TSAN 1
#endif
#endif
#ifdef SERVER_TSAN
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

struct job_runner;
struct start_pool;

struct server {
    struct server_config cfg;
    grpc_server *gs;
    grpc_completion_queue *cq;
    void *method_handles[6];
    int port;
    struct job_runner *runner;
    struct jobtab *table;
    struct start_pool *pool;
    pthread_t cq_threads[2];
    unsigned n_cq_threads;
    struct tag shutdown_tag;

    pthread_mutex_t mu; /* guards the fields below */
    pthread_cond_t cond;
    bool shutting_down;  /* no re-arming of request slots */
    bool shutdown_done;  /* the shutdown tag came back */
    unsigned live_calls; /* call contexts not yet freed */
    unsigned stopping_jobs;
};

/* Identity and bookkeeping common to every call. */
struct call_info {
    grpc_call *call;
    const char *method;
    char cn[CN_MAX];
    char peer[PEER_MAX];
    char id[JOBTAB_ID_LEN + 1];
    bool is_admin;
};

/* One audit line for a finished RPC. */
void server_audit(struct server *s, const struct call_info *ci, int code);
/* Call contexts count themselves in and out so shutdown can wait for them. */
void server_call_enter(struct server *s);
void server_call_leave(struct server *s);
/* Fills a JobStatus for e (live usage while running); the strings point into e's spec and
 * into *sb, which must outlive the message. */
struct status_buf {
    Jobmanager__V1__JobStatus st;
    Jobmanager__V1__Limits limits;
    Jobmanager__V1__Usage usage;
    struct jobtab_status js;
};
void server_fill_status(struct server *s, struct jobtab_entry *e, struct status_buf *sb);

/* Starts a Stream call (request already decoded and checked, e visible to the caller).
 * Takes over ci->call; the context frees itself when the call is over. */
void server_stream_begin(struct server *s, struct call_info *ci, struct jobtab_entry *e,
                         const Jobmanager__V1__StreamRequest *req);
