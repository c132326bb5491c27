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

#define CN_MAX 256
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
    bool shutting_down;   /* no re-arming of request slots */
    bool shutdown_done;   /* the shutdown tag came back */
    unsigned live_calls;  /* call contexts not yet freed */
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
