#pragma once
/* A job's life: spawn under isolation (namespaces, cgroups, job user, seccomp), pump its output
 * into an outlog, wait, stop, status, usage. Knows nothing of gRPC or protobuf: any program can
 * link it (ARCHITECTURE.md "Process tree of one job").
 *
 * One struct job_runner owns an event thread (epoll over every job's stdout/stderr pipes, status
 * fds, pidfds, a timerfd for stop grace periods). Output is appended to each job's outlog on
 * that thread; job-end callbacks run on that thread and must not block.
 *
 * The job manager (core/manager) drives it; core/jobtable keeps its state and status types in
 * job records. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "limits.h"

struct outlog;
struct job;
struct job_runner;
struct job_spare; /* a job's cgroup made ahead by job_spare_new(), with its shim (opaque) */

enum job_state {
    JOB_STARTING = 0,
    JOB_RUNNING = 1,
    JOB_EXITED = 2,
    JOB_KILLED = 3,
    JOB_FAILED_TO_START = 4,
    JOB_LOST = 5,
};

enum job_network {
    JOB_NET_NONE = 0, /* private netns with lo only */
    JOB_NET_HOST = 1, /* the server's netns */
};

struct job_runner_config {
    const char *shim_exe;    /* the runjob binary to re-exec as "shim"; NULL = /proc/self/exe */
    const char *cgroup_root; /* NULL = default (v2: child of our cgroup; v1: <hier>/runjob) */
    const char *const *io_devices; /* "MAJ:MIN" list, NULL-terminated; NULL = every real disk */
    bool allow_root_user;          /* may a job run as uid 0 */
    /* Shims kept started ahead of time (0 = none, at most JOB_PRESPAWN_MAX): each waits in its
     * own new namespaces, /proc, /sys and lo set up and the seccomp filter built, for a job
     * with a private network to take it; the runner starts a replacement off the caller's
     * path. Each holds one process and five fds of the server while it waits. The pool is
     * filled once the first such job starts or the first cgroup is reserved. Each spare
     * (job_spare_new) holds one more, taken from the pool; 0 turns that off too. */
    unsigned prespawn_shims;
};
#define JOB_PRESPAWN_MAX     8
#define JOB_PRESPAWN_DEFAULT 2 /* back-to-back starts never wait for a clone */

/* The environment of a job whose spec names none: PATH (the usual directories) and HOME=/.
 * NULL-terminated "K=V" strings. */
extern const char *const job_default_env[];

/* A job's stdin: /dev/null, a pipe the caller writes (job_input_write), or a pseudo-terminal of
 * the job's own devpts, which is its stdin, stdout and stderr at once (its output is then all
 * stdout) and its controlling terminal. */
enum job_input {
    JOB_INPUT_NONE = 0,
    JOB_INPUT_PIPE = 1,
    JOB_INPUT_TTY = 2,
};

struct job_spec {
    const char *id;          /* unique id (UUID); names the cgroup and the hostname */
    const char *path;        /* absolute path of the command */
    const char *const *args; /* arguments without argv[0]; n_args of them */
    size_t n_args;
    const char *const *env; /* NULL-terminated "K=V"; NULL = job_default_env */
    const char *cwd;        /* NULL = "/" */
    struct limits limits;
    enum job_network network;
    /* > 0: that long after its start the job is stopped as job_stop_async(timeout_signal,
     * timeout_grace_ms) would, and its status says timed_out. */
    int64_t timeout_ms;
    int timeout_signal;       /* 0 = SIGTERM */
    int64_t timeout_grace_ms; /* < 0: kill at once */
    uid_t uid;                /* job user; default nobody (65534) is the caller's choice */
    gid_t gid;
    struct outlog *log; /* output goes here; caller owns, keeps it alive past the job */
    enum job_input input;
    unsigned short tty_rows, tty_cols; /* JOB_INPUT_TTY: its size at the start (0: 24x80) */
    /* The job's cgroup made ahead by job_spare_new() for this id, or NULL (job_start makes
     * it). job_start takes it whatever it returns: the job's from then on, or removed at once
     * when the start fails. */
    struct job_spare *spare;
};

struct job_status {
    enum job_state state;
    pid_t pid;     /* host pid of the shim while running, else 0 */
    int exit_code; /* JOB_EXITED */
    int signal;    /* JOB_KILLED: terminating signal (9 when force-killed) */
    bool oom_killed;
    bool timed_out;           /* stopped because its timeout_ms ran out */
    char error[256];          /* JOB_FAILED_TO_START / JOB_LOST: why, in plain words */
    int64_t start_ms, end_ms; /* Unix epoch ms; end 0 while running */
    uint64_t cpu_usec;        /* live while running, final after */
    uint64_t memory_peak_bytes;
};

/* Probes cgroups (v2 with cpu,memory,io,pids, else v1) and starts the event thread.
 * 0 or -errno; -ENOTSUP when neither cgroup layout is usable (log names what is missing). */
int job_runner_new(const struct job_runner_config *cfg, struct job_runner **ret);
/* Kills every running job (whole cgroup), waits for them, stops the thread. NULL-safe. */
void job_runner_free(struct job_runner *r);
/* "v1" or "v2". */
const char *job_runner_cgroup_mode(struct job_runner *r);
/* Empties and removes the cgroup a previous server made for id (restart: LOST jobs). 0 if
 * there was none. */
int job_runner_cleanup_stale(struct job_runner *r, const char *id);
/* cg_remove_leftovers (core/cgroup.h) with CG_LEFTOVER_MIN_AGE_S: the job cgroups under the
 * runner's root that no server uses and keep does not claim. Returns how many, or -errno. */
int job_runner_remove_leftovers(struct job_runner *r, bool (*keep)(const char *id, void *userdata),
                                void *userdata);

/* Makes the cgroup of the job that will have a->id, with a->limits (job_start rewrites those
 * that differ from its job's), so that its start need not: a caller that knows the id ahead calls
 * it off the start's path and passes the result in job_spec.spare. With shims started ahead
 * (prespawn_shims), the runner's pool thread then moves one into it and has it make the command's
 * process, as a->uid:a->gid, up to its exec: a start with that id, user and group then only writes
 * the limits and sends the go (another user costs that shim). 0 or -errno (-EEXIST: a cgroup of
 * that id exists). Thread-safe. If the process dies before the start,
 * job_runner_cleanup_stale(r, id) of the next one removes it. Release every spare no
 * start took before job_runner_free. */
/* What a job made ahead will be: its id, the user and group it will run as, and the limits it
 * will most likely have (written at once; a start writes only the ones that differ). */
struct job_spare_spec {
    const char *id;
    uid_t uid;
    gid_t gid;
    struct limits limits;
};
int job_spare_new(struct job_runner *r, const struct job_spare_spec *a, struct job_spare **ret);
/* Removes a reserved cgroup that no job_start took (and the shim waiting in it), and frees it.
 * NULL-safe. Thread-safe. */
void job_spare_free(struct job_spare *jc);

typedef void (*job_event_fn)(struct job *j, void *userdata);

/* Starts a job and returns once the command has been exec'd (JOB_RUNNING), with *ret set.
 * on_end(j, userdata) runs once, on the event thread, after the final status is set and then
 * the outlog closed: as soon as the command's end is known and its output is at EOF, which may
 * be while the shim (PID 1) is still taking its namespaces down; job_wait() waits for that and
 * for the cgroup's removal. On failure returns -errno and writes a plain-words reason into
 * errbuf ("'/bin/nope': no such file", "'/etc/passwd': not executable", ...) and leaves nothing
 * behind (no cgroup, spec->spare included, process or fd). Thread-safe. */
int job_start(struct job_runner *r, const struct job_spec *spec, job_event_fn on_end,
              void *userdata, struct job **ret, char *errbuf, size_t errlen);

/* Sends sig (0 = SIGTERM) to the command's process group via the shim; after grace_ms
 * (< 0: at once) kills the whole cgroup. done(j, userdata) runs once on the event thread when
 * the job has ended (immediately, on the caller's thread, if it already had). Concurrent stops
 * are safe: the earliest deadline wins. 0 or -errno. Thread-safe. */
int job_stop_async(struct job *j, int sig, int64_t grace_ms, job_event_fn done, void *userdata);
/* Blocking stop: returns when every process is gone and the cgroup removed. Not on the event
 * thread. */
int job_stop(struct job *j, int sig, int64_t grace_ms);
/* Blocks until the job has ended, its shim is gone and its cgroup removed. Not on the event
 * thread. */
void job_wait(struct job *j);

/* A consistent snapshot; live usage read from the cgroup while running. Thread-safe. */
void job_get_status(struct job *j, struct job_status *ret);
/* The same without reading the live usage from the cgroup (the figures of the last read): the
 * state, pid and times, for a caller that needs no more (and no file reads). Thread-safe. */
void job_get_state(struct job *j, struct job_status *ret);
bool job_is_running(struct job *j);
/* Frees an ended job's memory (its outlog is the caller's). Must not be running. NULL-safe. */
void job_free(struct job *j);

/* ---- the stdin of a job started with JOB_INPUT_PIPE or JOB_INPUT_TTY. One writer at a time
 * (job_input_claim); every call is thread-safe.
 *
 * Claims the job's stdin for one writer. 0; -ENOTTY: the job takes no input; -EBUSY: another
 * writer has it; -EPIPE: it was closed (job_input_close) or the job ended. */
int job_input_claim(struct job *j);
/* The writer is done (its stdin stays open for the next one). */
void job_input_release(struct job *j);
/* Writes what the job's stdin takes now, never blocking: the bytes written (> 0), -EAGAIN (full:
 * job_input_wait), -EPIPE (the job closed its end, or ended), -ENOTTY. */
ssize_t job_input_write(struct job *j, const void *buf, size_t len);
/* Calls fn(userdata) once, on the runner's event thread, when the stdin takes more or is gone
 * (the job ended). At most one wait at a time. 0, -EBUSY (one is armed), -EPIPE (gone: fn will
 * not run), -ENOTTY. fn must not block. */
typedef void (*job_input_fn)(void *userdata);
int job_input_wait(struct job *j, job_input_fn fn, void *userdata);
/* Disarms the wait. true if fn will not run; false if it has run (a running fn is waited
 * for: call this without a lock that fn takes). */
bool job_input_cancel_wait(struct job *j);
/* End of input: a pipe's write end is closed (the job reads EOF); a terminal gets its EOF
 * character at a line's start, as a typed Ctrl-D. */
void job_input_close(struct job *j);
/* A terminal job's window size (the job's foreground process group gets SIGWINCH). 0, -ENOTTY
 * (no terminal), -EPIPE (the job ended), -EINVAL (0 rows or columns). */
int job_input_resize(struct job *j, unsigned rows, unsigned cols);
/* The job's input as started. */
enum job_input job_input_kind(struct job *j);

/* "STARTING", "RUNNING", ... */
const char *job_state_name(enum job_state s);
