/* The unary RPCs of the JobManager service: Start (queued to the start pool, which starts the
 * job off the completion-queue threads), Stop, Status, List and Ping, and their one reply batch. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/support/alloc.h>

#include "cleanup.h"
#include "job.h"
#include "log.h"
#include "rpc-internal.h"
#include "server-internal.h"

/* ---- unary replies --------------------------------------------------------------------- */

void server_ucall_done(struct tag *t, bool ok)
{
    struct ucall *uc = (struct ucall *)((char *)t - offsetof(struct ucall, done));
    struct server *s = uc->s;

    (void)ok;
    if (uc->reply)
        grpc_byte_buffer_destroy(uc->reply);
    if (uc->start_req)
        protobuf_c_message_free_unpacked(&uc->start_req->base, NULL);
    grpc_call_unref(uc->ci.call);
    free(uc);
    server_call_leave(s);
}

/* Sends the reply (msg may be NULL for an error) and the status in one batch; the context is
 * freed when it completes. Callable from any thread. */
void server_finish(struct ucall *uc, int code, const char *details, const ProtobufCMessage *msg)
{
    grpc_slice det = grpc_slice_from_copied_string(details ? details : "");
    grpc_op ops[4];
    size_t n = 0;
    grpc_call_error e;

    memset(ops, 0, sizeof(ops));
    server_audit(uc->s, &uc->ci, code);
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (code == RPC_OK && msg) {
        uc->reply = rpc_bb_pack(msg);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = uc->reply;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n++].data.send_status_from_server.status_details = &det;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &uc->cancelled;
    e = tag_start_batch(uc->ci.call, ops, n, &uc->done);
    grpc_slice_unref(det);
    if (e != GRPC_CALL_OK) {
        log_error("%s: start_batch: %d", uc->ci.method, (int)e);
        server_ucall_done(&uc->done, false);
    }
}

void server_finishf(struct ucall *uc, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    server_finish(uc, code, msg, NULL);
}

void server_not_found(struct ucall *uc)
{
    /* The same words for an unknown id and another user's job. */
    server_finishf(uc, RPC_NOT_FOUND, "job %s not found", uc->ci.id);
}

static void reply_status(struct ucall *uc, struct jobtab_entry *e)
{
    struct status_buf sb;

    server_fill_status(uc->s, e, &sb);
    server_finish(uc, RPC_OK, NULL, &sb.st.base);
}

/* ---- Start ----------------------------------------------------------------------------- */

/* Event thread, once per job, after its final status is set and its log closed. The record
 * is written by the table's writer thread (a job's end does not hold up the other jobs' output
 * on the disk; write errors are logged there). */
static void on_job_end(struct job *j, void *userdata)
{
    struct jobtab_entry *e = userdata;
    struct outlog *log = jobtab_entry_log(e);
    struct jobtab_status st = {0};

    job_get_status(j, &st.job);
    if (log) {
        st.output_bytes = outlog_get_bytes(log);
        st.output_truncated = outlog_is_truncated(log);
    }
    jobtab_entry_set_status_async(e, &st);
}

static void start_failed(struct ucall *uc, int r, const char *why)
{
    struct jobtab_status st = {0};
    int code = rpc_code_for_start_error(r);

    job_cgroup_release(TAKE_PTR(uc->cg)); /* made ahead, and no job_start took it */
    jobtab_entry_get_status(uc->entry, &st);
    st.job.state = JOB_FAILED_TO_START;
    st.job.end_ms = st.job.start_ms;
    (void)snprintf(st.job.error, sizeof(st.job.error), "%s", why);
    (void)jobtab_entry_set_status(uc->entry, &st);
    /* The record first, then the close: a stream that sees the end finds FAILED_TO_START. */
    if (uc->log)
        outlog_close(uc->log);
    if (code == RPC_INTERNAL) {
        log_error("job %s: start failed: %s (%s)", uc->ci.id, why, strerror(-r));
        server_finishf(uc, code, "the server could not start the job (see the server log)");
    } else {
        server_finishf(uc, code, "the job could not start: %s", why);
    }
}

static void do_start(struct ucall *uc)
{
    struct server *s = uc->s;
    const Jobmanager__V1__StartRequest *req = uc->start_req;
    struct jobtab_entry *e = uc->entry;
    const struct jobtab_spec *spec = jobtab_entry_spec(e);
    struct job_spec js = {0};
    struct jobtab_status st = {0};
    struct job *j = NULL;
    char errbuf[256] = "";
    int r;

    js.id = spec->id;
    js.path = spec->command;
    js.args = (const char *const *)spec->args;
    js.n_args = spec->n_args;
    js.limits = spec->limits;
    js.network = spec->network;
    js.uid = s->cfg.job_uid;
    js.gid = s->cfg.job_gid;
    js.log = uc->log;
    js.cgroup = TAKE_PTR(uc->cg); /* job_start's now, whatever it returns */
    (void)req;
    r = job_start(s->runner, &js, on_job_end, e, &j, errbuf, sizeof(errbuf));
    if (r < 0) {
        start_failed(uc, r, errbuf[0] ? errbuf : strerror(-r));
        return;
    }
    jobtab_entry_attach(e, j, uc->log);
    jobtab_entry_get_status(e, &st);
    job_get_state(j, &st.job); /* a job just started has used nothing yet: no cgroup reads */
    {
        Jobmanager__V1__Job reply = JOBMANAGER__V1__JOB__INIT;
        reply.id = (char *)spec->id;
        reply.name = spec->name;
        server_finish(uc, RPC_OK, NULL, &reply.base); /* uc may be freed from here on */
    }
    /* RUNNING is written by the table's writer thread, woken only once the reply is on its way:
     * a restart treats a STARTING record exactly like a RUNNING one (both become LOST), and
     * until then every reader of the entry sees the attached job's own status. */
    jobtab_entry_set_status_async(e, &st);
}

/* ---- prepared slots --------------------------------------------------------------------- */

static void prepared_free(struct server *s, struct prepared *pr)
{
    /* The cgroup before the folder: a cgroup made ahead is found at a restart through its
     * folder (jobtab_drain_unused), so it must never outlive it. */
    job_cgroup_release(pr->cg);
    outlog_free(pr->log); /* closes the file; jobtab_slot_free removes it */
    jobtab_slot_free(s->table, pr->slot);
    *pr = (struct prepared){0};
}

static int prepared_make(struct server *s, struct prepared *ret)
{
    struct prepared pr = {0};
    char path[PATH_MAX];
    int r;

    r = jobtab_slot_new(s->table, &pr.slot);
    if (r == 0)
        r = jobtab_slot_output_path(s->table, pr.slot, path, sizeof(path));
    if (r == 0)
        r = outlog_create(path, s->cfg.max_output_bytes, &pr.log);
    if (r < 0) {
        prepared_free(s, &pr);
        return r;
    }
    /* After the folder (see prepared_free). Without it the Start makes the cgroup itself. */
    /* As a Start without limits of its own will be: the server's defaults. */
    r = job_cgroup_reserve(s->runner,
                           &(struct job_ahead){.id = jobtab_slot_id(pr.slot),
                                               .uid = s->cfg.job_uid,
                                               .gid = s->cfg.job_gid,
                                               .limits = s->cfg.policy.defaults},
                           &pr.cg);
    if (r < 0)
        log_debug("job %s: making its cgroup ahead: %s", jobtab_slot_id(pr.slot), strerror(-r));
    *ret = pr;
    return 0;
}

void server_prepare_slots(struct server *s)
{
    struct start_pool *p = s->pool;

    (void)pthread_mutex_lock(&p->mu);
    if (p->preparing) {
        (void)pthread_mutex_unlock(&p->mu);
        return;
    }
    p->preparing = true;
    while (p->n_prep < PREPARED_SLOTS && !p->stopping) {
        struct prepared pr;
        int r;

        (void)pthread_mutex_unlock(&p->mu);
        r = prepared_make(s, &pr);
        (void)pthread_mutex_lock(&p->mu);
        if (r < 0) {
            /* A Start then makes its folder itself, and reports what fails there. */
            log_debug("preparing a job folder: %s", strerror(-r));
            break;
        }
        p->prep[p->n_prep++] = pr;
    }
    p->preparing = false;
    (void)pthread_mutex_unlock(&p->mu);
}

/* A prepared slot, or one with nothing in it when none is left. */
static struct prepared prepared_take(struct server *s)
{
    struct start_pool *p = s->pool;
    struct prepared pr = {0};

    (void)pthread_mutex_lock(&p->mu);
    if (p->n_prep > 0)
        pr = p->prep[--p->n_prep];
    (void)pthread_mutex_unlock(&p->mu);
    return pr;
}

/* A slot a Start did not use (its name was taken, the user at the cap) goes back. */
static void prepared_put_back(struct server *s, struct prepared *pr)
{
    struct start_pool *p = s->pool;

    if (!pr->slot)
        return;
    (void)pthread_mutex_lock(&p->mu);
    if (p->n_prep < PREPARED_SLOTS && !p->stopping) {
        p->prep[p->n_prep++] = *pr;
        *pr = (struct prepared){0};
    }
    (void)pthread_mutex_unlock(&p->mu);
    if (pr->slot)
        prepared_free(s, pr);
}

void server_prepared_free(struct server *s)
{
    struct start_pool *p = s->pool;

    (void)pthread_mutex_lock(&p->mu);
    while (p->n_prep > 0)
        prepared_free(s, &p->prep[--p->n_prep]);
    (void)pthread_mutex_unlock(&p->mu);
}

void *server_start_thread(void *arg)
{
    struct server *s = arg;
    struct start_pool *p = s->pool;

    (void)pthread_mutex_lock(&p->mu);
    for (;;) {
        struct ucall *uc;
        bool refuse;

        while (!p->head && !p->exiting)
            (void)pthread_cond_wait(&p->cond, &p->mu);
        if (!p->head)
            break;
        uc = p->head;
        p->head = uc->qnext;
        if (!p->head)
            p->tail = &p->head;
        refuse = p->stopping;
        p->busy++;
        (void)pthread_mutex_unlock(&p->mu);
        if (refuse)
            start_failed(uc, -ESHUTDOWN, "the server is shutting down");
        else
            do_start(uc);
        server_prepare_slots(s); /* after the reply: the next Start's folder */
        (void)pthread_mutex_lock(&p->mu);
        p->busy--;
        if (!p->head && p->busy == 0)
            (void)pthread_cond_broadcast(&p->idle);
    }
    (void)pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* rq was checked by rpc_request_decode (rpc_check_start); its message is kept. */
void server_handle_start(struct ucall *uc, const struct rpc_request *rq)
{
    struct server *s = uc->s;
    Jobmanager__V1__StartRequest *req = (Jobmanager__V1__StartRequest *)rq->msg;
    struct limits lim;
    struct prepared pr;
    char path[PATH_MAX];
    int r;

    uc->start_req = req; /* freed with the call */
    uc->limits = rq->limits;
    lim = uc->limits;
    pr = prepared_take(s);
    r = jobtab_add_in(s->table, &pr.slot, uc->ci.cn, req->name ? req->name : "", req->command,
                      (const char *const *)req->args, req->n_args, &lim,
                      req->network == JOBMANAGER__V1__NETWORK_MODE__NETWORK_MODE_HOST
                          ? JOB_NET_HOST
                          : JOB_NET_NONE,
                      &uc->entry);
    if (r == -EEXIST || r == -EUSERS) {
        prepared_put_back(s, &pr);
    } else if (r < 0) { /* its slot went with the failed job (folder removed) */
        job_cgroup_release(TAKE_PTR(pr.cg));
        outlog_free(TAKE_PTR(pr.log));
    }
    if (r == -EEXIST) {
        server_finishf(uc, RPC_ALREADY_EXISTS, "you already have a running job named '%s'",
                       req->name);
        return;
    }
    if (r == -EUSERS) {
        server_finishf(uc, RPC_RESOURCE_EXHAUSTED,
                       "you already have %u running jobs, the most this server allows per user",
                       s->cfg.max_running_per_user);
        return;
    }
    if (r < 0) {
        log_errno(r, "Start: recording a new job");
        server_finishf(uc,
                       rpc_code_from_errno(r) == RPC_RESOURCE_EXHAUSTED ? RPC_RESOURCE_EXHAUSTED
                                                                        : RPC_INTERNAL,
                       "the server could not record the job");
        return;
    }
    (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", jobtab_entry_spec(uc->entry)->id);
    uc->cg = TAKE_PTR(pr.cg);
    if (pr.log) {
        uc->log = TAKE_PTR(pr.log);
    } else {
        r = jobtab_entry_output_path(s->table, uc->entry, path, sizeof(path));
        if (r == 0)
            r = outlog_create(path, s->cfg.max_output_bytes, &uc->log);
        if (r == -ENOSPC || r == -EDQUOT) {
            start_failed(uc, -ENOSPC, "the server's disk is full");
            return;
        }
        if (r < 0) {
            log_errno(r, "job %s: creating its output log", uc->ci.id);
            start_failed(uc, -EIO, "the server could not create the job's output log");
            return;
        }
    }
    /* Streams may attach from now on (the job pointer follows once it runs). */
    jobtab_entry_attach(uc->entry, NULL, uc->log);

    (void)pthread_mutex_lock(&s->pool->mu);
    uc->qnext = NULL;
    *s->pool->tail = uc;
    s->pool->tail = &uc->qnext;
    (void)pthread_cond_signal(&s->pool->cond);
    (void)pthread_mutex_unlock(&s->pool->mu);
}

/* ---- Stop / Status / List / Ping ------------------------------------------------------- */

static void on_stopped(struct job *j, void *userdata)
{
    struct ucall *uc = userdata;
    struct jobtab_entry *e = jobtab_lookup(uc->s->table, uc->ci.id, uc->ci.cn);

    (void)j;
    if (e)
        reply_status(uc, e);
    else
        server_not_found(uc);
}

/* rq was checked by rpc_request_decode (rpc_check_stop: id, signal and grace resolved). */
void server_handle_stop(struct ucall *uc, const struct rpc_request *rq)
{
    struct server *s = uc->s;
    const Jobmanager__V1__StopRequest *req = (const Jobmanager__V1__StopRequest *)rq->msg;
    struct jobtab_entry *e;
    struct job *j;
    int r;

    (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", req->id);
    e = jobtab_lookup(s->table, req->id, uc->ci.cn);
    if (!e) {
        server_not_found(uc);
        return;
    }
    if (!jobtab_entry_is_running(e)) {
        reply_status(uc, e); /* already ended: its final status */
        return;
    }
    j = jobtab_entry_job(e);
    if (!j) {
        server_finishf(uc, RPC_FAILED_PRECONDITION, "job %s is still starting; try again", req->id);
        return;
    }
    /* Replies from the callback (the event thread, or here if the job already ended). */
    r = job_stop_async(j, rq->signal, rq->grace_ms, on_stopped, uc);
    if (r < 0) {
        log_errno(r, "job %s: stop", req->id);
        server_finishf(uc,
                       rpc_code_from_errno(r) == RPC_INVALID_ARGUMENT ? RPC_INVALID_ARGUMENT
                                                                      : RPC_INTERNAL,
                       "the server could not stop the job");
    }
}

/* rq was checked by rpc_request_decode (rpc_check_status). */
void server_handle_status(struct ucall *uc, const struct rpc_request *rq)
{
    const Jobmanager__V1__StatusRequest *req = (const Jobmanager__V1__StatusRequest *)rq->msg;
    struct jobtab_entry *e;

    (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", req->id);
    e = jobtab_lookup(uc->s->table, req->id, uc->ci.cn);
    if (!e)
        server_not_found(uc);
    else
        reply_status(uc, e);
}

void server_handle_list(struct ucall *uc)
{
    Jobmanager__V1__ListResponse resp = JOBMANAGER__V1__LIST_RESPONSE__INIT;
    struct jobtab_entry **entries = NULL;
    struct status_buf *sbs;
    Jobmanager__V1__JobStatus **ptrs;
    size_t n = 0;

    if (jobtab_list(uc->s->table, uc->ci.cn, &entries, &n) < 0) {
        server_finishf(uc, RPC_RESOURCE_EXHAUSTED, "server out of memory");
        return;
    }
    sbs = calloc(n + 1, sizeof(*sbs));
    ptrs = calloc(n + 1, sizeof(*ptrs));
    if (!sbs || !ptrs) {
        free(entries);
        free(sbs);
        free(ptrs);
        server_finishf(uc, RPC_RESOURCE_EXHAUSTED, "server out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        server_fill_status(uc->s, entries[i], &sbs[i]);
        ptrs[i] = &sbs[i].st;
    }
    resp.jobs = ptrs;
    resp.n_jobs = n;
    server_finish(uc, RPC_OK, NULL, &resp.base); /* packs now; the buffers can go */
    free(entries);
    free(sbs);
    free(ptrs);
}

void server_handle_ping(struct ucall *uc)
{
    Jobmanager__V1__PingResponse resp = JOBMANAGER__V1__PING_RESPONSE__INIT;

    resp.version = "runjob " RUNJOB_VERSION;
    resp.peer_cn = uc->ci.cn;
    resp.is_admin = uc->ci.is_admin;
    server_finish(uc, RPC_OK, NULL, &resp.base);
}
