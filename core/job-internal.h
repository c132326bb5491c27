#pragma once
/* Shared by core/job.c (jobs, the event thread, the runner, stop and status), core/job-start.c
 * (starting shims, the shim template, job_start) and core/job-pool.c (the pool thread, pooled
 * shims, spares); not for other modules. */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "clock.h"
#include "cgroup.h"
#include "job.h"
#include "shimproto.h"
#include "spawn.h"

#define PIPE_SIZE        (1 << 20) /* F_SETPIPE_SZ: a 64 KiB pipe caps output near 1 GB/s */
#define READ_BUF         (1 << 20) /* one read drains a full pipe */
#define START_TIMEOUT_MS 30000     /* shim setup + exec; only a wedged kernel takes this long */
#define KILL_TIMEOUT_MS  5000
#define LEFTOVER_KILL_MS 200 /* shim gone, pipes still open: kill the cgroup after this */

enum watch_kind { W_EVENTFD, W_TIMER, W_STDOUT, W_STDERR, W_STATUS, W_PIDFD, W_INPUT };

struct job;
struct watch {
    enum watch_kind kind;
    struct job *j; /* NULL for runner-level fds */
};

struct stop_waiter {
    job_event_fn fn;
    void *userdata;
    struct stop_waiter *next;
};

struct job {
    struct job_runner *r;
    atomic_int refs; /* the caller's + the event thread's (until finalised) */
    char *id;
    struct outlog *log;
    struct cg *cg;
    job_event_fn on_end;
    void *on_end_userdata;
    int pidfd, out_fd, err_fd, status_fd; /* a terminal job's out_fd is its terminal */
    struct watch w_out, w_err, w_status, w_pid, w_in;
    enum job_input input;

    /* Event thread only. */
    bool reaped, have_status, end_published, finalised;
    struct shimproto_status st;
    int shim_code, shim_status; /* waitid si_code / si_status of the shim */

    /* Under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct job_status status;
    bool ended;          /* final status set */
    bool done;           /* ... and the cgroup removed, stop callbacks run */
    bool kill_now;       /* event thread: kill the cgroup at once */
    bool force_killed;   /* the cgroup was killed by a stop */
    int64_t deadline_ms; /* CLOCK_MONOTONIC; 0 = none */
    int64_t timeout_at;  /* CLOCK_MONOTONIC: the stop of job_spec.timeout_ms; 0 = none */
    int timeout_signal;
    int64_t timeout_grace_ms;
    struct stop_waiter *waiters;
    /* stdin: the pipe's write end or the terminal (a dup of out_fd), non-blocking; -1 once
     * closed. in_polled: registered on the epoll (one-shot EPOLLOUT). */
    int in_fd;
    bool in_claimed, in_polled, in_wait_running;
    job_input_fn in_wait_fn;
    void *in_wait_userdata;

    /* Under r->mu. */
    struct job *prev, *next;
};

struct spawn_req {
    const struct spawn_args *args;
    pid_t pid;
    int pidfd;
    int r;
    sem_t done;
    struct spawn_req *next;
};

/* A started shim, waiting for its go: the server's ends of its fds. */
struct job_shim {
    pid_t pid;
    int pidfd, out, err, stp, sync;
    bool prepped; /* sent its prep: its command's process waits for the go as uid:gid */
    uid_t uid;
    gid_t gid;
};

/* A job's cgroup made ahead (job_spare_new) and, once the pool thread has moved one in,
 * a pooled shim waiting in it: a start that takes it writes the limits and sends the go, with
 * no write to cgroup.procs on its path. Such a write takes the kernel's threadgroup rwsem for
 * writing, and the first one after a pause waits out an RCU grace period: 5-13 ms here. */
struct job_spare {
    struct cg *cg;
    uid_t uid; /* the user the job will run as: its shim is prepped for it */
    gid_t gid;
    struct limits limits;   /* written into cg at the spare */
    struct job_shim sh;     /* pidfd < 0: none (yet) */
    bool attaching;         /* the pool thread is moving a shim into cg; under r->mu */
    bool no_shim;           /* that failed once: the start brings its own */
    struct job_spare *next; /* on r->ahead until taken or released; under r->mu */
    struct job_runner *r;
};

struct job_runner {
    struct cg_manager *cgm;
    char *shim_exe;
    bool allow_root;
    unsigned pool_size;
    int epfd, evfd, tfd, devnull;
    struct watch w_ev, w_timer;
    char *buf;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct job *jobs;
    unsigned starting; /* job_start calls between the quit check and list insertion */
    struct spawn_req *reqs, **reqs_tail;
    struct job_shim pool[JOB_PRESPAWN_MAX]; /* shims for private-network jobs, started ahead */
    unsigned n_pool;
    bool pool_refill;        /* the pool thread tops the pool up */
    struct job_spare *ahead; /* reserved and not yet taken: the pool thread fills them first */
    pthread_cond_t pool_cond;
    pthread_t pool_thread;
    bool pool_thread_started;
    /* The shim template (shimproto.h), the pool thread's only: pid, pidfd, control socket (-1:
     * none); tmpl_served once any template made a shim; tmpl_off if the first failed before
     * (none would make any). */
    pid_t tmpl_pid;
    int tmpl_pidfd, tmpl_sock;
    bool tmpl_served, tmpl_off;
    bool quit;
};

/* job-start.c: an empty shim (every fd -1). */
void job_shim_init(struct job_shim *sh);
/* job-start.c: kills and reaps a pooled shim that will not be used, closing its fds. */
void job_shim_discard(struct job_shim *sh);
/* job-start.c: starts a shim in new namespaces (into the cgroup of cgroup_fd if >= 0), from the
 * event thread or, if here, from the calling thread (the pool thread: a private-network shim is
 * then forked by the shim template, or exec'd if that fails). 0 or -errno. */
int job_shim_spawn(struct job_runner *r, bool host_net, int cgroup_fd, bool here,
                   struct job_shim *ret);
/* job-start.c: ends the pool thread's shim template (if any) and reaps it. Pool thread only. */
void job_template_stop(struct job_runner *r);
/* job-start.c: moves the shim into cg: every cgroup of the job's but, on v1, the memory one
 * (cg_memory_apart), which its command's process joins. 0 or -errno. */
int job_shim_attach(struct job_runner *r, struct job_shim *sh, struct cg *cg);
/* job-start.c: sends the prep (cg's id, uid, gid; on v1 the memory cgroup's cgroup.procs for
 * the command's process). 0 or -errno (-EPIPE, -ECONNRESET: the shim already failed and said
 * why). */
int job_shim_prep(struct job_runner *r, struct job_shim *sh, struct cg *cg, uid_t uid, gid_t gid);

/* job-pool.c: whether a shim that waited is still there (a dead one is reaped). */
bool job_shim_alive(struct job_shim *sh);
/* job-pool.c: takes a pooled shim, asking for a replacement; false if none. */
bool job_pool_take(struct job_runner *r, struct job_shim *ret);
/* job-pool.c: takes a spare off the runner and frees it: its cgroup is returned, its
 * shim (or an empty one) and the limits written into it put in *ret_sh and *ret_lim. */
struct cg *job_spare_take(struct job_spare *jc, struct job_shim *ret_sh, struct limits *ret_lim);
/* job-pool.c: removes a cgroup made ahead that no job ran in (NULL-safe), killing its shim. */
void job_spare_drop(struct cg *cg, struct job_shim *sh);
/* job-pool.c: the shims of spares nobody released before job_runner_free; reaped. */
void job_spare_discard_all(struct job_runner *r);
/* job-pool.c: the pool thread, keeping r->pool topped up until the runner quits. */
void *job_pool_thread(void *arg);
/* job.c: wakes the event thread (its eventfd). */
void job_runner_wake(struct job_runner *r);
/* job.c: watches fd on the event thread's epoll, w its context. */
int job_epoll_add(struct job_runner *r, int fd, struct watch *w);
