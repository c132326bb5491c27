/* The unary RPCs of the JobManager service: Start (answered from the manager's start thread
 * once the job runs), Stop, Status, List, Remove and Ping, and their one reply batch. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/support/alloc.h>

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

static void reply_status(struct ucall *uc, struct jm_job *j)
{
    struct status_buf sb;

    jm_job_info(j, &sb.info);
    server_fill_status(&sb);
    server_finish(uc, RPC_OK, NULL, &sb.st.base);
}

/* ---- Start ----------------------------------------------------------------------------- */

/* The manager's answer: on this call's thread when the job could not be recorded, else on a
 * start thread once it runs or failed to. */
static void on_started(const struct jm_started *st, void *userdata)
{
    struct ucall *uc = userdata;

    if (st->recorded)
        (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", st->id);
    if (st->err == 0) {
        Runjob__V1__Job reply = RUNJOB__V1__JOB__INIT;
        reply.id = uc->ci.id;
        reply.name = (char *)st->name;
        server_finish(uc, RPC_OK, NULL, &reply.base); /* uc may be freed from here on */
        return;
    }
    server_finish_start_error(uc, st);
}

void server_finish_start_error(struct ucall *uc, const struct jm_started *st)
{
    int code;

    if (st->err == -EEXIST) {
        server_finishf(uc, RPC_ALREADY_EXISTS, "you already have a running job named '%s'",
                       st->name);
        return;
    }
    if (st->err == -EUSERS) {
        server_finishf(uc, RPC_RESOURCE_EXHAUSTED,
                       "you already have %u running jobs, the most this server allows per user",
                       jm_get_config(uc->s->jm)->max_running_per_user);
        return;
    }
    if ((st->err == -ENOSPC || st->err == -EDQUOT) && !st->recorded) {
        /* the state's reserve, or the user's quota: reason says how much */
        server_finishf(uc, RPC_RESOURCE_EXHAUSTED, "%s", st->reason);
        return;
    }
    if (!st->recorded) {
        server_finishf(uc,
                       rpc_code_from_errno(st->err) == RPC_RESOURCE_EXHAUSTED
                           ? RPC_RESOURCE_EXHAUSTED
                           : RPC_INTERNAL,
                       "the server could not record the job");
        return;
    }
    code = rpc_code_for_start_error(st->err);
    if (code == RPC_INTERNAL) {
        log_error("job %s: start failed: %s (%s)", uc->ci.id, st->reason, strerror(-st->err));
        server_finishf(uc, code, "the server could not start the job (see the server log)");
    } else {
        server_finishf(uc, code, "the job could not start: %s", st->reason);
    }
}

/* rq was checked by rpc_request_decode (rpc_check_start: limits resolved). The manager copies
 * what it keeps before jm_start_async returns. */
void server_handle_start(struct ucall *uc, const struct rpc_request *rq)
{
    const Runjob__V1__StartRequest *req = (const Runjob__V1__StartRequest *)rq->msg;
    struct jm_start_request sr = {
        .owner = uc->ci.cn,
        .name = req->name,
        .command = req->command,
        .args = (const char *const *)req->args,
        .n_args = req->n_args,
        .limits = rq->limits,
        .network = req->network == RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_HOST ? JOB_NET_HOST
                                                                               : JOB_NET_NONE,
        .env = (const char *const *)req->env,
        .n_env = req->n_env,
        .workdir = req->workdir,
        .timeout_ms = (int64_t)req->timeout_millis,
        .input = req->input == RUNJOB__V1__INPUT_MODE__INPUT_MODE_TTY    ? JOB_INPUT_TTY
                 : req->input == RUNJOB__V1__INPUT_MODE__INPUT_MODE_PIPE ? JOB_INPUT_PIPE
                                                                         : JOB_INPUT_NONE,
        .tty_rows = req->terminal_size ? (unsigned short)req->terminal_size->rows : 0,
        .tty_cols = req->terminal_size ? (unsigned short)req->terminal_size->cols : 0,
    };

    jm_start_async(uc->s->jm, &sr, on_started, uc);
}

/* ---- Stop / Status / List / Ping ------------------------------------------------------- */

static void on_stopped(void *userdata)
{
    struct ucall *uc = userdata;
    struct jm_job *j = jm_lookup(uc->s->jm, uc->ci.id, uc->ci.cn);

    if (j)
        reply_status(uc, j);
    else
        server_not_found(uc);
    jm_job_put(j);
}

/* rq was checked by rpc_request_decode (rpc_check_stop: id, signal and grace resolved). */
void server_handle_stop(struct ucall *uc, const struct rpc_request *rq)
{
    struct server *s = uc->s;
    const Runjob__V1__StopRequest *req = (const Runjob__V1__StopRequest *)rq->msg;
    int r;

    (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", req->id);
    /* Replies from the callback (the event thread, or here if the job has ended). */
    r = jm_stop(s->jm, req->id, uc->ci.cn, rq->signal, rq->grace_ms, on_stopped, uc);
    if (r == -ENOENT) {
        server_not_found(uc);
    } else if (r == -EAGAIN) {
        server_finishf(uc, RPC_FAILED_PRECONDITION, "job %s is still starting; try again", req->id);
    } else if (r < 0) {
        server_finishf(uc,
                       rpc_code_from_errno(r) == RPC_INVALID_ARGUMENT ? RPC_INVALID_ARGUMENT
                                                                      : RPC_INTERNAL,
                       "the server could not stop the job");
    }
}

/* rq was checked by rpc_request_decode (rpc_check_status). */
void server_handle_status(struct ucall *uc, const struct rpc_request *rq)
{
    const Runjob__V1__StatusRequest *req = (const Runjob__V1__StatusRequest *)rq->msg;
    struct jm_job *j;

    (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", req->id);
    j = jm_lookup(uc->s->jm, req->id, uc->ci.cn);
    if (!j)
        server_not_found(uc);
    else
        reply_status(uc, j);
    jm_job_put(j);
}

/* rq was checked by rpc_request_decode (rpc_check_remove). The job leaves the table here; its
 * files go on the manager's sweep thread. */
void server_handle_remove(struct ucall *uc, const struct rpc_request *rq)
{
    const Runjob__V1__RemoveRequest *req = (const Runjob__V1__RemoveRequest *)rq->msg;
    Runjob__V1__RemoveResponse resp = RUNJOB__V1__REMOVE_RESPONSE__INIT;
    int r;

    (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", req->id);
    r = jm_remove(uc->s->jm, req->id, uc->ci.cn);
    if (r == 0) {
        resp.id = uc->ci.id;
        server_finish(uc, RPC_OK, NULL, &resp.base);
    } else if (r == -ENOENT) {
        server_not_found(uc);
    } else if (r == -EBUSY) {
        server_finishf(uc, RPC_FAILED_PRECONDITION,
                       "job %s is still running; stop it first (runjob stop %s)", req->id, req->id);
    } else {
        log_errno(r, "job %s: remove", req->id);
        server_finishf(uc, RPC_INTERNAL, "the server could not remove the job");
    }
}

void server_handle_list(struct ucall *uc)
{
    Runjob__V1__ListResponse resp = RUNJOB__V1__LIST_RESPONSE__INIT;
    struct jm_job **jobs = NULL;
    struct status_buf *sbs;
    Runjob__V1__JobStatus **ptrs;
    size_t n = 0;

    if (jm_list(uc->s->jm, uc->ci.cn, &jobs, &n) < 0) {
        server_finishf(uc, RPC_RESOURCE_EXHAUSTED, "server out of memory");
        return;
    }
    sbs = calloc(n + 1, sizeof(*sbs));
    ptrs = calloc(n + 1, sizeof(*ptrs));
    if (!sbs || !ptrs) {
        jm_jobs_put(jobs, n);
        free(sbs);
        free(ptrs);
        server_finishf(uc, RPC_RESOURCE_EXHAUSTED, "server out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        jm_job_info(jobs[i], &sbs[i].info);
        server_fill_status(&sbs[i]);
        ptrs[i] = &sbs[i].st;
    }
    resp.jobs = ptrs;
    resp.n_jobs = n;
    server_finish(uc, RPC_OK, NULL, &resp.base); /* packs now; the buffers can go */
    jm_jobs_put(jobs, n);
    free(sbs);
    free(ptrs);
}

void server_handle_ping(struct ucall *uc)
{
    Runjob__V1__PingResponse resp = RUNJOB__V1__PING_RESPONSE__INIT;

    resp.version = "runjob " RUNJOB_VERSION;
    resp.peer_cn = uc->ci.cn;
    resp.is_admin = uc->ci.is_admin;
    server_finish(uc, RPC_OK, NULL, &resp.base);
}
