/* jobmanager.v1.JobManager, the published second design's service (proto/jobmanager.proto),
 * as a thin adapter over the same manager that runjob.v1 uses: same identity and
 * authorization (another user's job is NOT_FOUND; administrators see every job), same
 * status codes, same jobs (a job started through one service is seen through the other).
 *
 * Where the design is terse, this is what it means here:
 *   Start        the server's default limits, no network but loopback; a name in use among
 *                the caller's running jobs is ALREADY_EXISTS.
 *   Stop         SIGKILL to every process of the job at once, answered once it has ended;
 *                a job that has already ended is left as it was (OK).
 *   JobStatus    exitCode is the job's exit status once it exited, else -1 (running, killed
 *                by a signal, failed to start); signalNumber is the killing signal (9 after
 *                Stop), else 0; errorMessage says why a job failed to start or was lost.
 *   StreamOutput both streams interleaved as written (UNSPECIFIED) or one, from the first
 *                byte, following the job until it ends; then the call ends with OK. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outlog.h"
#include "server-internal.h"

/* A JobStatus made from a job's info; its strings point into the job's spec and into *sb. */
struct jobmanager_status {
    Jobmanager__V1__JobStatus st;
    Jobmanager__V1__Job job;
    Jobmanager__V1__JobId id;
    struct jm_info info;
};

static void fill_status(struct jobmanager_status *sb, struct jm_job *j)
{
    const struct job_status *js;

    jm_job_info(j, &sb->info);
    js = &sb->info.status.job;
    jobmanager__v1__job_status__init(&sb->st);
    jobmanager__v1__job__init(&sb->job);
    jobmanager__v1__job_id__init(&sb->id);
    sb->id.id = (char *)sb->info.spec->id;
    sb->job.id = &sb->id;
    sb->job.name = sb->info.spec->name;
    sb->st.job = &sb->job;
    sb->st.owner = sb->info.spec->owner;
    sb->st.isrunning = sb->info.is_running;
    sb->st.pid = js->pid;
    sb->st.signalnumber = js->state == JOB_KILLED ? js->signal : 0;
    sb->st.exitcode = js->state == JOB_EXITED ? js->exit_code : -1;
    sb->st.errormessage = (char *)js->error;
}

/* ---- Start ------------------------------------------------------------------------------- */

static void on_started(const struct jm_started *st, void *userdata)
{
    struct ucall *uc = userdata;

    if (st->recorded)
        (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", st->id);
    if (st->err == 0) {
        Jobmanager__V1__JobId id = JOBMANAGER__V1__JOB_ID__INIT;
        Jobmanager__V1__Job reply = JOBMANAGER__V1__JOB__INIT;
        id.id = uc->ci.id;
        reply.id = &id;
        reply.name = (char *)st->name;
        server_finish(uc, RPC_OK, NULL, &reply.base); /* uc may be freed from here on */
        return;
    }
    server_finish_start_error(uc, st);
}

static void handle_start(struct ucall *uc, const struct rpc_request *rq)
{
    const Jobmanager__V1__JobCreationRequest *req =
        (const Jobmanager__V1__JobCreationRequest *)rq->msg;
    struct jm_start_request sr = {
        .owner = uc->ci.cn,
        .name = req->name,
        .command = req->programpath,
        .args = (const char *const *)req->arguments,
        .n_args = req->n_arguments,
        .limits = rq->limits,
        .network = JOB_NET_NONE,
    };

    jm_start_async(uc->s->jm, &sr, on_started, uc);
}

/* ---- Stop, Query, List ------------------------------------------------------------------- */

static void on_stopped(void *userdata)
{
    struct ucall *uc = userdata;
    Jobmanager__V1__NilMessage nil = JOBMANAGER__V1__NIL_MESSAGE__INIT;

    server_finish(uc, RPC_OK, NULL, &nil.base);
}

static void handle_stop(struct ucall *uc, const Jobmanager__V1__JobId *req)
{
    /* Replies from on_stopped: on the event thread once the job has ended, or here when it
     * had already ended. */
    int r = jm_stop(uc->s->jm, req->id, uc->ci.cn, SIGKILL, -1, on_stopped, uc);

    if (r == -ENOENT)
        server_not_found(uc);
    else if (r == -EAGAIN)
        server_finishf(uc, RPC_FAILED_PRECONDITION, "job %s is still starting; try again", req->id);
    else if (r < 0)
        server_finishf(uc, RPC_INTERNAL, "the server could not stop the job");
}

static void handle_query(struct ucall *uc, const Jobmanager__V1__JobId *req)
{
    struct jm_job *j = jm_lookup(uc->s->jm, req->id, uc->ci.cn);
    struct jobmanager_status sb;

    if (!j) {
        server_not_found(uc);
        return;
    }
    fill_status(&sb, j);
    server_finish(uc, RPC_OK, NULL, &sb.st.base); /* packs now: the job may go */
    jm_job_put(j);
}

static void handle_list(struct ucall *uc)
{
    Jobmanager__V1__JobStatusList resp = JOBMANAGER__V1__JOB_STATUS_LIST__INIT;
    struct jm_job **jobs = NULL;
    struct jobmanager_status *sbs = NULL;
    Jobmanager__V1__JobStatus **ptrs = NULL;
    size_t n = 0;

    if (jm_list(uc->s->jm, uc->ci.cn, &jobs, &n) < 0 || !(sbs = calloc(n + 1, sizeof(*sbs))) ||
        !(ptrs = calloc(n + 1, sizeof(*ptrs)))) {
        jm_jobs_put(jobs, n);
        free(sbs);
        server_finishf(uc, RPC_RESOURCE_EXHAUSTED, "server out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        fill_status(&sbs[i], jobs[i]);
        ptrs[i] = &sbs[i].st;
    }
    resp.jobstatuslist = ptrs;
    resp.n_jobstatuslist = n;
    server_finish(uc, RPC_OK, NULL, &resp.base); /* packs now; the buffers can go */
    jm_jobs_put(jobs, n);
    free(sbs);
    free(ptrs);
}

/* ---- StreamOutput ------------------------------------------------------------------------ */

static void handle_stream_output(struct ucall *uc, const Jobmanager__V1__StreamOutputRequest *req)
{
    struct server_stream_spec spec = {
        .select = req->outputstream == JOBMANAGER__V1__OUTPUT_STREAM__STDOUT ? OUTLOG_SELECT_STDOUT
                  : req->outputstream == JOBMANAGER__V1__OUTPUT_STREAM__STDERR
                      ? OUTLOG_SELECT_STDERR
                      : OUTLOG_SELECT_ALL,
        .offset = 0,
        .follow = true,
        .form = SERVER_STREAM_OUTPUTS,
    };
    struct jm_job *j = jm_lookup(uc->s->jm, req->jobid->id, uc->ci.cn);

    if (!j) {
        server_not_found(uc);
        return;
    }
    /* The stream takes the call and its place in live_calls; its reader holds the job. */
    server_stream_begin(uc->s, &uc->ci, j, &spec);
    jm_job_put(j);
    free(uc);
}

void server_jobmanager_dispatch(struct ucall *uc, enum rpc_method m, const struct rpc_request *rq)
{
    switch (m) {
    case RPC_M_JOBMANAGER_START:
        handle_start(uc, rq);
        break;
    case RPC_M_JOBMANAGER_STOP:
        (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s",
                       ((const Jobmanager__V1__JobId *)rq->msg)->id);
        handle_stop(uc, (const Jobmanager__V1__JobId *)rq->msg);
        break;
    case RPC_M_JOBMANAGER_QUERY:
        (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s",
                       ((const Jobmanager__V1__JobId *)rq->msg)->id);
        handle_query(uc, (const Jobmanager__V1__JobId *)rq->msg);
        break;
    case RPC_M_JOBMANAGER_LIST:
        handle_list(uc);
        break;
    case RPC_M_JOBMANAGER_STREAM_OUTPUT: {
        const Jobmanager__V1__StreamOutputRequest *req =
            (const Jobmanager__V1__StreamOutputRequest *)rq->msg;
        (void)snprintf(uc->ci.id, sizeof(uc->ci.id), "%s", req->jobid->id);
        handle_stream_output(uc, req);
        break;
    }
    case RPC_M_START:
    case RPC_M_STOP:
    case RPC_M_STATUS:
    case RPC_M_LIST:
    case RPC_M_STREAM:
    case RPC_M_PING:
    case RPC_M_METRICS:
    case RPC_M_REMOVE:
    case RPC_M_INPUT:
    case RPC_M_COUNT:
    default:
        server_finish(uc, RPC_UNIMPLEMENTED, "unknown method", NULL);
        break;
    }
}
