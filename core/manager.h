#pragma once
/* The job manager: the library's front. It owns the job table (core/jobtable), the job runner
 * (core/job), every job's output log (core/outlog) and the jobs made ahead of their Start (a
 * folder, its empty log, a cgroup with a shim waiting in it), and composes them: Start, Stop,
 * status, list, output readers, restart recovery. It knows nothing of gRPC: core/server maps
 * RPCs onto it, and any other program can drive it the same way (test/host/test_manager.c).
 *
 * Callers are named by their identity (a certificate's CN for the server): a caller sees its
 * own jobs; an administrator sees every job. A job another caller may not see is reported
 * exactly as an unknown one.
 *
 * Job handles: a struct jm_job * is a reference to the job (core/jobtable.h "Entry lifetime").
 * jm_lookup and jm_list hand out references, which the caller drops with jm_job_put (jm_jobs_put
 * for a list); an open jm_reader holds one of its own, and so does the manager while a Start
 * or a running job needs its job. A job removed (jm_remove, the retention sweep) is gone from
 * lookups at once; its output log and memory are freed at the last put, so a handle or a
 * reader held across the removal stays valid, and a reader still reads what the log had.
 *
 * Removal: ended jobs only. jm_remove takes the job out of the table on the calling thread;
 * its folder is renamed away and deleted by the manager's sweep thread, which also removes the
 * ended jobs past retain_ended_ms and, over max_state_bytes, the oldest ended jobs first: at
 * start, then every half retention (250 ms to a minute; every second with a cap). A job removed and
 * not yet renamed away when the server dies comes back at the next start (and is removed again by
 * the sweep if it has expired).
 *
 * Threads: Starts run on the manager's start threads, which live until jm_free (the shims
 * themselves are cloned by the runner's own threads, see core/spawn.h); job ends are seen on
 * the runner's event thread; removals on the sweep thread. Every function is thread-safe. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "job.h"
#include "jobtable.h"
#include "limits.h"
#include "outlog.h"

#define JM_ID_LEN JOBTAB_ID_LEN

struct jm;
struct jm_job;    /* a reference to a job the manager knows (see "Job handles" above) */
struct jm_reader; /* a cursor over one job's output */

struct jm_config {
    const char *state_dir;         /* one folder per job; created if missing */
    const char *const *admin_cns;  /* NULL-terminated; these callers see and stop every job */
    unsigned max_running_per_user; /* 0 = no cap */
    uid_t job_uid;                 /* every job runs as job_uid:job_gid ... */
    gid_t job_gid;
    /* ... unless uid_first is set: then each job gets a uid (and the gid of that number) of
     * its own from uid_first..uid_last, handed out in turn, so that a uid comes back only
     * after every other in the range was used, and never while its job runs. */
    uid_t uid_first, uid_last;
    uint64_t max_output_bytes; /* per job; past it output is dropped (0 = no cap) */
    bool keep_output_head;     /* past the cap keep the first part only, not both ends */
    /* > 0: a Start is refused (-EDQUOT) while the owner's jobs keep this much output */
    uint64_t max_user_output_bytes;
    struct limits default_limits; /* what a job made ahead is given until its Start */
    int64_t stop_grace_ms;        /* jm_shutdown's grace between stop_signal and the kill */
    int stop_signal;              /* what jm_shutdown sends first; 0 = SIGTERM */
    unsigned spares;              /* jobs made ahead of their Start (0 = none) */
    int64_t retain_ended_ms;      /* ended jobs are removed this long after their end (0 = kept) */
    uint64_t max_state_bytes;     /* over this much output, the oldest ended jobs are removed
                                     first (0 = no cap) */
    /* A Start is refused (-ENOSPC) while the state directory's file system has less free than
     * the larger of this and 1% of its size (0 = JM_STATE_RESERVE_DEFAULT). */
    uint64_t state_reserve_bytes;
    struct job_runner_config runner;
    /* Called once per job that ends while the manager runs, after its final status is set, on
     * the runner's event thread (must not block); j is valid during the call. NULL = none. */
    void (*on_end)(struct jm_job *j, void *userdata);
    void *userdata;
};
#define JM_SPARES_DEFAULT          2 /* back-to-back Starts never wait for a folder or a cgroup */
#define JM_RETAIN_ENDED_DEFAULT_MS (7 * 24 * 3600 * 1000LL)
#define JM_STATE_RESERVE_DEFAULT   (4ull << 20)

/* Opens the state directory and locks it (-EBUSY when another manager holds it: errbuf names
 * its pid), probes cgroups and starts the job runner, and loads every job in it: a job that was
 * running when the previous server died becomes LOST, its cgroup is emptied and removed, and what
 * that server made ahead is removed. 0, or -errno with errbuf saying what failed ("open the state
 * directory '/x'"). */
int jm_new(const struct jm_config *cfg, struct jm **ret, char *errbuf, size_t errlen);
/* Refuses Starts not yet begun, waits for those in progress, then stops every running job
 * (SIGTERM, the configured grace, the kill) and waits for them to end (at most the grace plus
 * 30 s). Output logs are closed, so readers reach their end. */
void jm_shutdown(struct jm *m);
/* Kills what still runs, writes and syncs every record, frees everything. An output log with a
 * reader still open is left allocated (its reader may still be used). NULL-safe. */
void jm_free(struct jm *m);

bool jm_is_admin(struct jm *m, const char *caller);
/* The configuration the manager runs with (its copy). */
const struct jm_config *jm_get_config(struct jm *m);

/* ---- Start ------------------------------------------------------------------------------ */

struct jm_start_request {
    const char *owner; /* the caller */
    const char *name;  /* unique among the owner's running jobs; NULL or "" = unnamed */
    const char *command;
    const char *const *args; /* without argv[0] */
    size_t n_args;
    struct limits limits; /* as checked against the server's maxima, defaults applied */
    enum job_network network;
    /* "K=V" strings over the default environment (job_default_env: PATH, HOME=/); a later
     * one wins over an earlier one of the same K. Not recorded: they may hold secrets. */
    const char *const *env;
    size_t n_env;
    const char *workdir; /* absolute; NULL or "" = "/" */
    /* > 0: the job is stopped that long after its start, with the stop signal and grace of
     * jm_config (stop_signal, stop_grace_ms), and its status says timed_out. */
    int64_t timeout_ms;
    /* The job's stdin: none (/dev/null), a pipe, or a terminal of tty_rows x tty_cols (0: 24 x
     * 80) that is also its stdout and stderr; jm_input_* feed them. */
    enum job_input input;
    unsigned short tty_rows, tty_cols;
};

/* What a Start came to. err: 0, or -errno:
 *   -EEXIST   the owner has a running job of that name      (nothing recorded)
 *   -EUSERS   the owner is at max_running_per_user           (nothing recorded)
 *   -ENOSPC   the state file system is below its reserve      (nothing recorded; reason
 *             says how much is free)
 *   -ESHUTDOWN                                               (recorded as failed to start)
 *   the command's own failure (-ENOENT, -EACCES, -ENOEXEC ...), -ENOSPC (no room for its
 *   output), -EIO and the like (recorded as failed to start when recorded is true).
 * reason says it in plain words, for the user ("'/bin/nope': no such file"). */
struct jm_started {
    int err;
    bool recorded;          /* the job is in the table (its id is set) */
    char id[JM_ID_LEN + 1]; /* "" when nothing was recorded */
    const char *name;       /* the job's name ("" = unnamed): valid with the job once recorded, else
                               during the callback */
    char reason[256];
};

typedef void (*jm_started_fn)(const struct jm_started *st, void *userdata);
/* Records the job (its id, folder and output log) on the calling thread, then starts it on a
 * start thread; done runs once, with the outcome: on the calling thread, before this returns,
 * when the job could not be recorded, else on a start thread. The request is copied. */
void jm_start_async(struct jm *m, const struct jm_start_request *rq, jm_started_fn done,
                    void *userdata);
/* jm_start_async, waiting for the outcome: returns st->err. */
int jm_start(struct jm *m, const struct jm_start_request *rq, struct jm_started *st);

/* ---- Stop ------------------------------------------------------------------------------- */

typedef void (*jm_stopped_fn)(void *userdata);
/* Sends sig to the job's processes, and kills them all after grace_ms (< 0: at once). done runs
 * once the job has ended: on the runner's event thread, or on the calling thread before this
 * returns if it had ended already. 0; -ENOENT (unknown, or not the caller's); -EAGAIN (the job
 * is still starting: done will not run); other -errno (done will not run). */
int jm_stop(struct jm *m, const char *id, const char *caller, int sig, int64_t grace_ms,
            jm_stopped_fn done, void *userdata);

/* ---- status and list -------------------------------------------------------------------- */

/* The job with that id if the caller may see it (a reference: jm_job_put it), else NULL. */
struct jm_job *jm_lookup(struct jm *m, const char *id, const char *caller);
/* The jobs the caller may see, oldest first, in a malloc'd array, a reference each (jm_jobs_put
 * puts them and frees the array). 0 or -ENOMEM. */
int jm_list(struct jm *m, const char *caller, struct jm_job ***ret, size_t *ret_n);
/* Drops a reference from jm_lookup (the last one of a removed job frees it). NULL-safe. */
void jm_job_put(struct jm_job *j);
/* Puts each of jm_list's jobs and frees the array. NULL-safe. */
void jm_jobs_put(struct jm_job **jobs, size_t n);

/* ---- removal ---------------------------------------------------------------------------- */

/* Removes an ended job with its record and output: gone from lookups when this returns, its
 * folder renamed away and deleted shortly after by the sweep thread. Does no I/O. 0; -ENOENT
 * (unknown, or not the caller's: the owner and administrators may remove a job); -EBUSY (the
 * job is starting or running). */
int jm_remove(struct jm *m, const char *id, const char *caller);

/* A job as a caller sees it: what it was asked to be and what it is now. */
struct jm_info {
    const struct jobtab_spec *spec; /* valid with the job */
    struct jobtab_status status;    /* a snapshot: the live job's own while it runs */
    bool is_running;                /* STARTING or RUNNING */
};
/* The job's status, merged: the record, the live job's state and usage (read from its cgroup),
 * and its output's size. */
void jm_job_info(struct jm_job *j, struct jm_info *ret);
const char *jm_job_id(const struct jm_job *j);

/* ---- metrics ---------------------------------------------------------------------------- */

struct strbuf;
/* Appends the manager's metrics in the Prometheus text format: jobs by state, running jobs by
 * owner, output bytes, open readers, Start latency (histogram) and failures. 0 or -ENOMEM. */
int jm_write_metrics(struct jm *m, struct strbuf *b);

/* ---- output ----------------------------------------------------------------------------- */

/* A reader of the job's output: the streams in select_mask (OUTLOG_SELECT_*) from offset. It
 * holds a reference to the job of its own until jm_reader_free.
 * 0; -ENODATA (the job has no output log); -ERANGE (the output has ended and offset is past
 * its end, *ret_end set to that end); -EIDRM (the job was removed since j was looked up);
 * -ENOENT, -EBADMSG, -EIO (the log kept from before a restart is gone or unreadable); -EMFILE
 * and the like. */
int jm_reader_open(struct jm *m, struct jm_job *j, unsigned select_mask, uint64_t offset,
                   struct jm_reader **ret, uint64_t *ret_end);
/* As outlog_reader_read, outlog_reader_wait and outlog_reader_cancel_wait (core/outlog.h). */
ssize_t jm_reader_read(struct jm_reader *rd, void *buf, size_t cap,
                       struct outlog_chunk_info *ret_info);
int jm_reader_wait(struct jm_reader *rd, outlog_wake_fn fn, void *userdata);
bool jm_reader_cancel_wait(struct jm_reader *rd);
/* Payload bytes recorded so far, both streams. */
uint64_t jm_reader_log_bytes(struct jm_reader *rd);
/* The job's final status, for a reader that reached the end of its output (the record can lag
 * the log's close by a moment; this waits for it, briefly). */
void jm_reader_final_info(struct jm_reader *rd, struct jm_info *ret);
/* NULL-safe; cancels a pending wait first. */
void jm_reader_free(struct jm_reader *rd);

/* ---- input ------------------------------------------------------------------------------ */

/* The stdin of a job started with an input (jm_start_request.input), as job_input_* (core/job.h)
 * for a job handle. One writer at a time: jm_input_claim, then the rest, then
 * jm_input_release; the caller keeps its handle meanwhile. Who may write is who may see the job
 * (jm_lookup): its owner and administrators. jm_input_claim: 0; -ENOTTY (the job takes no
 * input); -EBUSY (it has a writer); -EAGAIN (still starting); -EPIPE (its input was closed, or
 * it ended). */
int jm_input_claim(struct jm_job *j);
void jm_input_release(struct jm_job *j);
ssize_t jm_input_write(struct jm_job *j, const void *buf, size_t len);
int jm_input_wait(struct jm_job *j, job_input_fn fn, void *userdata);
bool jm_input_cancel_wait(struct jm_job *j);
void jm_input_close(struct jm_job *j);
int jm_input_resize(struct jm_job *j, unsigned rows, unsigned cols);

#include "cleanup.h"
DEFINE_CLEANUP(struct jm_reader *, jm_reader_free)
