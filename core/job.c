#include "job.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "cleanup.h"
#include "log.h"
#include "outlog.h"
#include "spawn.h"

#define PIPE_SIZE (1 << 20)  /* F_SETPIPE_SZ: a 64 KiB pipe caps output near 1 GB/s */
#define READ_BUF (1 << 20)   /* one read drains a full pipe */
#define START_TIMEOUT_MS 30000 /* shim setup + exec; only a wedged kernel takes this long */
#define KILL_TIMEOUT_MS 5000
#define LEFTOVER_KILL_MS 200 /* shim gone, pipes still open: kill the cgroup after this */

enum watch_kind { W_EVENTFD, W_TIMER, W_STDOUT, W_STDERR, W_STATUS, W_PIDFD };

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
    int pidfd, out_fd, err_fd, status_fd;
    struct watch w_out, w_err, w_status, w_pid;

    /* Event thread only. */
    bool reaped, have_status, finalised;
    struct spawn_status st;
    int shim_code, shim_status; /* waitid si_code / si_status of the shim */

    /* Under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct job_status status;
    bool ended;            /* final status set */
    bool done;             /* ... and the cgroup removed, stop callbacks run */
    bool kill_now;         /* event thread: kill the cgroup at once */
    bool force_killed;     /* the cgroup was killed by a stop */
    int64_t deadline_ms;   /* CLOCK_MONOTONIC; 0 = none */
    struct stop_waiter *waiters;

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
struct shim {
    pid_t pid;
    int pidfd, out, err, stp, sync;
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
    struct shim pool[JOB_PRESPAWN_MAX]; /* shims for private-network jobs, started ahead */
    unsigned n_pool;
    bool pool_refill; /* the pool thread tops the pool up */
    pthread_cond_t pool_cond;
    pthread_t pool_thread;
    bool pool_thread_started;
    bool quit;
};

static int64_t clock_ms(clockid_t c)
{
    struct timespec ts;

    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake(struct job_runner *r)
{
    uint64_t one = 1;

    /* EAGAIN: the counter is already non-zero, the thread will wake anyway. */
    (void)!write(r->evfd, &one, sizeof(one));
}

const char *job_state_name(enum job_state s)
{
    switch (s) {
    case JOB_STARTING:
        return "STARTING";
    case JOB_RUNNING:
        return "RUNNING";
    case JOB_EXITED:
        return "EXITED";
    case JOB_KILLED:
        return "KILLED";
    case JOB_FAILED_TO_START:
        return "FAILED_TO_START";
    case JOB_LOST:
        return "LOST";
    }
    return "UNKNOWN";
}

/* ---- jobs: memory */

static void job_unref(struct job *j)
{
    struct stop_waiter *w;

    if (!j || atomic_fetch_sub(&j->refs, 1) != 1)
        return;
    while ((w = j->waiters)) {
        j->waiters = w->next;
        free(w);
    }
    cg_free(j->cg);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cond);
    free(j->id);
    free(j);
}

void job_free(struct job *j)
{
    job_unref(j);
}

/* ---- shims */

static void shim_init(struct shim *sh)
{
    *sh = (struct shim){.pidfd = -1, .out = -1, .err = -1, .stp = -1, .sync = -1};
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        (void)close(*fd);
    *fd = -1;
}

/* Kills (if still there), reaps and closes a shim that will run no job. */
static void shim_discard(struct shim *sh)
{
    close_fd(&sh->sync); /* a shim still waiting for its go exits on this EOF */
    if (sh->pidfd >= 0) {
        siginfo_t si;
        (void)pidfd_send_signal(sh->pidfd, SIGKILL, NULL, 0); /* ESRCH: gone already */
        (void)waitid((idtype_t)P_PIDFD, (id_t)sh->pidfd, &si, WEXITED | __WALL);
    }
    close_fd(&sh->pidfd);
    close_fd(&sh->out);
    close_fd(&sh->err);
    close_fd(&sh->stp);
}

static int run_spawn(struct job_runner *r, const struct spawn_args *a, pid_t *ret_pid,
                     int *ret_pidfd);

/* Starts a shim: its pipes, its socket, clone3 into new namespaces (and into the cgroup of
 * cgroup_fd, if >= 0) from the event thread, or from the calling thread if here (the pool
 * thread: it lives as long as the runner's jobs, so it may be the shim's pdeathsig parent).
 * 0 with *ret filled, or -errno. */
static int shim_spawn(struct job_runner *r, bool host_net, int cgroup_fd, bool here,
                      struct shim *ret)
{
    char *shim_argv[] = {"runjob", "shim", host_net ? SPAWN_NET_HOST : SPAWN_NET_NONE, NULL};
    int out[2] = {-1, -1}, err[2] = {-1, -1}, stp[2] = {-1, -1}, sync[2] = {-1, -1};
    struct spawn_args a;
    struct shim sh;
    int e = 0;

    shim_init(&sh);
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(stp, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) < 0) {
        e = -errno;
        goto out;
    }
    /* Best effort: a smaller pipe only costs throughput. */
    (void)fcntl(out[0], F_SETPIPE_SZ, PIPE_SIZE);
    (void)fcntl(err[0], F_SETPIPE_SZ, PIPE_SIZE);
    (void)fcntl(out[0], F_SETFL, O_NONBLOCK);
    (void)fcntl(err[0], F_SETFL, O_NONBLOCK);
    (void)fcntl(stp[0], F_SETFL, O_NONBLOCK);

    memset(&a, 0, sizeof(a));
    a.exe = r->shim_exe;
    a.argv = shim_argv;
    a.fds[SPAWN_FD_STDIN] = r->devnull;
    a.fds[SPAWN_FD_STDOUT] = out[1];
    a.fds[SPAWN_FD_STDERR] = err[1];
    a.fds[SPAWN_FD_SYNC] = sync[1];
    a.fds[SPAWN_FD_STATUS] = stp[1];
    a.ns_flags =
        CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | (host_net ? 0 : CLONE_NEWNET);
    a.cgroup_fd = cgroup_fd;
    e = here ? spawn_clone(&a, &sh.pid, &sh.pidfd) : run_spawn(r, &a, &sh.pid, &sh.pidfd);
    if (e < 0)
        goto out;
    sh.out = TAKE_FD(out[0]);
    sh.err = TAKE_FD(err[0]);
    sh.stp = TAKE_FD(stp[0]);
    sh.sync = TAKE_FD(sync[0]);
    *ret = sh;
out:
    for (int i = 0; i < 2; i++) {
        close_fd(&out[i]);
        close_fd(&err[i]);
        close_fd(&stp[i]);
        close_fd(&sync[i]);
    }
    return e;
}

/* Takes a pooled shim (private network) into *ret and asks the pool thread to start a
 * replacement. false when the pool is off or empty. */
static bool pool_take(struct job_runner *r, struct shim *ret)
{
    bool got = false;

    pthread_mutex_lock(&r->mu);
    if (r->pool_size) {
        r->pool_refill = true;
        pthread_cond_signal(&r->pool_cond);
        while (r->n_pool && !got) {
            struct shim sh = r->pool[--r->n_pool];
            siginfo_t si;
            /* One that died while it waited (killed by someone) would look like a job that
             * started and was killed: never hand it out. */
            memset(&si, 0, sizeof(si));
            if (waitid((idtype_t)P_PIDFD, (id_t)sh.pidfd, &si, WEXITED | WNOHANG | __WALL) == 0 &&
                si.si_pid == 0) {
                *ret = sh;
                got = true;
            } else {
                shim_discard(&sh);
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
    return got;
}

/* The pool thread: tops the pool up after each take, off the event thread (a clone into a new
 * network namespace takes a millisecond or more; the event thread meanwhile reaps the jobs that
 * end). A failed clone stops it until the next take. Exits when the runner quits. */
static void *pool_thread(void *arg)
{
    struct job_runner *r = arg;

    pthread_mutex_lock(&r->mu);
    for (;;) {
        struct shim sh;
        int e;

        while (!r->quit && !(r->pool_refill && r->n_pool < r->pool_size)) {
            r->pool_refill = false;
            pthread_cond_wait(&r->pool_cond, &r->mu);
        }
        if (r->quit)
            break;
        pthread_mutex_unlock(&r->mu);
        e = shim_spawn(r, false, -1, true, &sh);
        pthread_mutex_lock(&r->mu);
        if (e < 0) {
            log_debug("job runner: starting a shim ahead of time: %s", strerror(-e));
            r->pool_refill = false;
            continue;
        }
        if (r->quit || r->n_pool >= r->pool_size) {
            pthread_mutex_unlock(&r->mu);
            shim_discard(&sh);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        r->pool[r->n_pool++] = sh;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- event thread */

static void unwatch(struct job_runner *r, int *fd)
{
    if (*fd < 0)
        return;
    (void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, *fd, NULL);
    (void)close(*fd);
    *fd = -1;
}

static void pump(struct job_runner *r, struct job *j, enum watch_kind kind)
{
    int *fd = kind == W_STDOUT ? &j->out_fd : &j->err_fd;
    enum outlog_stream s = kind == W_STDOUT ? OUTLOG_STDOUT : OUTLOG_STDERR;

    /* A few reads, then back to epoll: one chatty job must not starve the others. */
    for (int i = 0; i < 4; i++) {
        ssize_t n = read(*fd, r->buf, READ_BUF);
        if (n > 0) {
            if (j->log) {
                int e = outlog_append(j->log, s, r->buf, (size_t)n);
                if (e < 0)
                    log_debug("job %s: outlog append: %s", j->id, strerror(-e));
            }
            if ((size_t)n < READ_BUF)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        unwatch(r, fd); /* EOF (or an error that only EOF can follow) */
        return;
    }
}

static void read_status(struct job *j)
{
    struct spawn_status st;
    ssize_t n;

    if (j->status_fd < 0 || j->have_status)
        return;
    n = read(j->status_fd, &st, sizeof(st));
    if (n == sizeof(st)) {
        j->st = st;
        j->have_status = true;
    }
}

static void reap(struct job_runner *r, struct job *j)
{
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    if (waitid((idtype_t)P_PIDFD, (id_t)j->pidfd, &si, WEXITED | WNOHANG | __WALL) < 0) {
        if (errno != ECHILD)
            return;
        si.si_code = CLD_KILLED; /* someone else reaped it: we know nothing more */
        si.si_status = SIGKILL;
    } else if (si.si_pid == 0) {
        return; /* not yet */
    }
    j->reaped = true;
    j->shim_code = si.si_code;
    j->shim_status = si.si_status;
    (void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, j->pidfd, NULL);
    read_status(j);
    /* The shim's exit killed its namespace, so the pipes close as those processes die. Only a
     * process outside it could keep them open; make sure, a little later, by killing the
     * cgroup (see handle_deadlines). */
    if (j->out_fd >= 0 || j->err_fd >= 0) {
        pthread_mutex_lock(&j->mu);
        j->deadline_ms = clock_ms(CLOCK_MONOTONIC) + LEFTOVER_KILL_MS;
        pthread_mutex_unlock(&j->mu);
        wake(r);
    }
}

static void set_final_status(struct job *j, const struct cg_usage *u)
{
    struct job_status *s = &j->status;

    if (j->have_status && j->st.kind == SPAWN_EXITED) {
        s->state = JOB_EXITED;
        s->exit_code = j->st.code;
    } else if (j->have_status) {
        s->state = JOB_KILLED;
        s->signal = j->st.code;
    } else {
        /* The shim itself was killed (cgroup kill after the grace period, OOM, pdeathsig):
         * its command went with it. */
        s->state = JOB_KILLED;
        s->signal = (j->shim_code == CLD_KILLED || j->shim_code == CLD_DUMPED) && !j->force_killed
                        ? j->shim_status
                        : SIGKILL;
    }
    s->oom_killed = u->oom_killed;
    s->cpu_usec = u->cpu_usec;
    if (u->memory_peak_bytes > s->memory_peak_bytes)
        s->memory_peak_bytes = u->memory_peak_bytes;
    s->end_ms = clock_ms(CLOCK_REALTIME);
    s->pid = 0;
}

/* Shim reaped, pipes at EOF: status, then the log closed, then on_end, then the cgroup gone,
 * then the stop callbacks and waiters. */
static void finalise(struct job_runner *r, struct job *j)
{
    struct cg_usage u = {0};
    struct stop_waiter *w;
    int e;

    j->finalised = true;
    e = cg_read_usage(j->cg, &u);
    if (e < 0)
        log_debug("job %s: reading cgroup usage: %s", j->id, strerror(-e));
    pthread_mutex_lock(&j->mu);
    set_final_status(j, &u);
    j->ended = true;
    j->deadline_ms = 0;
    pthread_mutex_unlock(&j->mu);
    /* Nobody sends through the pidfd once ended is set (job_stop_async checks under mu). */
    (void)close(j->pidfd);
    j->pidfd = -1;
    unwatch(r, &j->status_fd);

    if (j->log)
        outlog_close(j->log);
    if (j->on_end)
        j->on_end(j, j->on_end_userdata);

    e = cg_destroy(j->cg, KILL_TIMEOUT_MS);
    if (e < 0)
        log_debug("job %s: removing cgroup: %s", j->id, strerror(-e));

    pthread_mutex_lock(&j->mu);
    w = TAKE_PTR(j->waiters);
    pthread_mutex_unlock(&j->mu);
    while (w) {
        struct stop_waiter *next = w->next;
        if (w->fn)
            w->fn(j, w->userdata);
        free(w);
        w = next;
    }

    pthread_mutex_lock(&r->mu);
    if (j->prev)
        j->prev->next = j->next;
    else
        r->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->prev = j->next = NULL;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);

    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->mu);
}

static void handle_spawn_reqs(struct job_runner *r)
{
    struct spawn_req *q;

    pthread_mutex_lock(&r->mu);
    q = r->reqs;
    r->reqs = NULL;
    r->reqs_tail = &r->reqs;
    pthread_mutex_unlock(&r->mu);
    while (q) {
        struct spawn_req *next = q->next; /* q lives on the waiter's stack: read first */
        q->r = spawn_clone(q->args, &q->pid, &q->pidfd);
        sem_post(&q->done);
        q = next;
    }
}

/* Kills the cgroups whose stop deadline passed and re-arms the timer for the next one. */
static void handle_deadlines(struct job_runner *r)
{
    int64_t now = clock_ms(CLOCK_MONOTONIC), next = 0;
    struct itimerspec its;

    pthread_mutex_lock(&r->mu);
    for (struct job *j = r->jobs; j; j = j->next) {
        bool kill_it = false;

        pthread_mutex_lock(&j->mu);
        if (!j->ended) {
            if (j->kill_now || (j->deadline_ms && j->deadline_ms <= now)) {
                kill_it = true;
                if (!j->reaped)
                    j->force_killed = true;
                j->kill_now = false;
                j->deadline_ms = 0;
            } else if (j->deadline_ms && (!next || j->deadline_ms < next)) {
                next = j->deadline_ms;
            }
        }
        pthread_mutex_unlock(&j->mu);
        if (kill_it) {
            int e = cg_kill(j->cg, KILL_TIMEOUT_MS);
            if (e < 0)
                log_debug("job %s: killing cgroup: %s", j->id, strerror(-e));
        }
    }
    pthread_mutex_unlock(&r->mu);

    memset(&its, 0, sizeof(its));
    if (next) {
        its.it_value.tv_sec = next / 1000;
        its.it_value.tv_nsec = (next % 1000) * 1000000;
    }
    (void)timerfd_settime(r->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static bool runner_should_exit(struct job_runner *r)
{
    bool quit;

    pthread_mutex_lock(&r->mu);
    quit = r->quit && !r->jobs && !r->starting && !r->reqs;
    pthread_mutex_unlock(&r->mu);
    return quit;
}

static void *event_thread(void *arg)
{
    struct job_runner *r = arg;
    struct epoll_event evs[64];

    for (;;) {
        struct job *dead[64];
        size_t n_dead = 0;
        int n = epoll_wait(r->epfd, evs, (int)ELEMENTSOF(evs), -1);

        if (n < 0 && errno != EINTR) {
            log_debug("job runner: epoll_wait: %s", strerror(errno));
            continue;
        }
        for (int i = 0; i < n; i++) {
            struct watch *w = evs[i].data.ptr;
            struct job *j = w->j;
            uint64_t v;

            if (j && j->finalised)
                continue; /* a stale event of this batch */
            switch (w->kind) {
            case W_EVENTFD:
                (void)!read(r->evfd, &v, sizeof(v));
                handle_spawn_reqs(r);
                handle_deadlines(r);
                break;
            case W_TIMER:
                (void)!read(r->tfd, &v, sizeof(v));
                handle_deadlines(r);
                break;
            case W_STDOUT:
            case W_STDERR:
                pump(r, j, w->kind);
                break;
            case W_STATUS:
                /* One record, then EOF (or EOF alone: the shim died without one). */
                read_status(j);
                unwatch(r, &j->status_fd);
                break;
            case W_PIDFD:
                reap(r, j);
                break;
            }
            if (j && j->reaped && j->out_fd < 0 && j->err_fd < 0 && !j->finalised) {
                finalise(r, j);
                dead[n_dead++] = j; /* at most one per event: n_dead <= n <= 64 */
            }
        }
        /* Dropped after the batch, so later events of it still find the job's memory. */
        for (size_t i = 0; i < n_dead; i++)
            job_unref(dead[i]);
        if (runner_should_exit(r))
            return NULL;
    }
}

/* ---- runner */

static int epoll_add(struct job_runner *r, int fd, struct watch *w)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};

    return epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void runner_close(struct job_runner *r)
{
    if (r->epfd >= 0)
        (void)close(r->epfd);
    if (r->evfd >= 0)
        (void)close(r->evfd);
    if (r->tfd >= 0)
        (void)close(r->tfd);
    if (r->devnull >= 0)
        (void)close(r->devnull);
    cg_manager_free(r->cgm);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cond);
    pthread_cond_destroy(&r->pool_cond);
    free(r->buf);
    free(r->shim_exe);
    free(r);
}

int job_runner_new(const struct job_runner_config *cfg, struct job_runner **ret)
{
    struct cg_config cgc = {0};
    struct job_runner *r = calloc(1, sizeof(*r));
    char why[512] = "";
    int e;

    if (!r)
        return -ENOMEM;
    r->epfd = r->evfd = r->tfd = r->devnull = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cond, NULL);
    pthread_cond_init(&r->pool_cond, NULL);
    r->reqs_tail = &r->reqs;
    r->allow_root = cfg && cfg->allow_root_user;
    r->pool_size = cfg ? cfg->prespawn_shims : 0;
    if (r->pool_size > JOB_PRESPAWN_MAX)
        r->pool_size = JOB_PRESPAWN_MAX;
    r->shim_exe = strdup(cfg && cfg->shim_exe ? cfg->shim_exe : "/proc/self/exe");
    r->buf = malloc(READ_BUF);
    if (!r->shim_exe || !r->buf) {
        e = -ENOMEM;
        goto fail;
    }
    cgc.mode = CG_PROBE;
    cgc.root = cfg ? cfg->cgroup_root : NULL;
    cgc.io_devices = cfg ? cfg->io_devices : NULL;
    e = cg_manager_new(&cgc, &r->cgm, why, sizeof(why));
    if (e < 0) {
        /* job.h promises the log names what is missing: the one error line core writes. */
        log_error("job runner: cgroups unusable: %s", why[0] ? why : strerror(-e));
        goto fail;
    }
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    r->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    r->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (r->epfd < 0 || r->evfd < 0 || r->tfd < 0 || r->devnull < 0) {
        e = -errno;
        goto fail;
    }
    r->w_ev = (struct watch){.kind = W_EVENTFD};
    r->w_timer = (struct watch){.kind = W_TIMER};
    if ((e = epoll_add(r, r->evfd, &r->w_ev)) < 0 || (e = epoll_add(r, r->tfd, &r->w_timer)) < 0)
        goto fail;
    e = -pthread_create(&r->thread, NULL, event_thread, r);
    if (e < 0)
        goto fail;
    r->thread_started = true;
    if (r->pool_size) {
        e = -pthread_create(&r->pool_thread, NULL, pool_thread, r);
        if (e < 0) {
            job_runner_free(r);
            return e;
        }
        r->pool_thread_started = true;
    }
    *ret = r;
    return 0;
fail:
    runner_close(r);
    return e;
}

void job_runner_free(struct job_runner *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->quit = true;
    for (struct job *j = r->jobs; j; j = j->next) {
        pthread_mutex_lock(&j->mu);
        j->kill_now = true;
        pthread_mutex_unlock(&j->mu);
    }
    pthread_mutex_unlock(&r->mu);
    wake(r);
    pthread_mutex_lock(&r->mu);
    while (r->jobs || r->starting)
        pthread_cond_wait(&r->cond, &r->mu);
    pthread_cond_broadcast(&r->pool_cond);
    pthread_mutex_unlock(&r->mu);
    wake(r);
    if (r->thread_started)
        pthread_join(r->thread, NULL);
    /* Only now: jobs that took a pooled shim had their pdeathsig tied to this thread. */
    if (r->pool_thread_started)
        pthread_join(r->pool_thread, NULL);
    /* The pool thread cloned them: their pdeathsig fired as it exited. Reap them. */
    while (r->n_pool)
        shim_discard(&r->pool[--r->n_pool]);
    runner_close(r);
}

const char *job_runner_cgroup_mode(struct job_runner *r)
{
    return cg_mode_name(cg_manager_mode(r->cgm));
}

int job_runner_cleanup_stale(struct job_runner *r, const char *id)
{
    int e = cg_cleanup_stale(r->cgm, id);

    return e < 0 ? e : 0;
}

/* ---- start */

/* The clone must come from the event thread: the shim's pdeathsig follows the thread that
 * cloned it, and the caller's thread (a gRPC worker, a test thread) may exit long before the
 * job does. */
static int run_spawn(struct job_runner *r, const struct spawn_args *a, pid_t *ret_pid,
                     int *ret_pidfd)
{
    struct spawn_req q = {.args = a, .pidfd = -1};

    if (r->thread_started && pthread_equal(pthread_self(), r->thread))
        return spawn_clone(a, ret_pid, ret_pidfd);
    if (sem_init(&q.done, 0, 0) < 0)
        return -errno;
    pthread_mutex_lock(&r->mu);
    *r->reqs_tail = &q;
    r->reqs_tail = &q.next;
    pthread_mutex_unlock(&r->mu);
    wake(r);
    while (sem_wait(&q.done) < 0 && errno == EINTR)
        ;
    sem_destroy(&q.done);
    if (q.r < 0)
        return q.r;
    *ret_pid = q.pid;
    *ret_pidfd = q.pidfd;
    return 0;
}

/* Waits for the shim's verdict: EOF = the command was exec'd; a message = {step, errno}. */
static int read_verdict(int fd, struct spawn_sync_msg *ret_msg)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t n;
    int e;

    do
        e = poll(&p, 1, START_TIMEOUT_MS);
    while (e < 0 && errno == EINTR);
    if (e < 0)
        return -errno;
    if (e == 0)
        return -ETIMEDOUT;
    do
        n = recv(fd, ret_msg, sizeof(*ret_msg), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return 0;
    if (n != sizeof(*ret_msg) || ret_msg->err <= 0)
        return -EPROTO;
    return 1;
}

/* The go message, with the spec memfd attached (SCM_RIGHTS). 0 or -errno. */
static int send_go(int sync_fd, int spec_fd)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct spawn_sync_msg m = {0};
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *c;
    ssize_t n;

    memset(&ctl, 0, sizeof(ctl));
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &spec_fd, sizeof(int));
    do
        n = sendmsg(sync_fd, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

static char **build_argv(const struct job_spec *spec)
{
    char **v = calloc(spec->n_args + 2, sizeof(char *));

    if (!v)
        return NULL;
    v[0] = (char *)spec->path;
    for (size_t i = 0; i < spec->n_args; i++)
        v[i + 1] = (char *)spec->args[i];
    return v;
}

static int write_spec_memfd(const struct job_spec *spec, int *ret_fd)
{
    static const char *const min_env[] = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", NULL};
    _cleanup_free_ char **argv = build_argv(spec);
    _cleanup_free_ void *blob = NULL;
    _cleanup_close_ int fd = -1;
    struct spawn_spec s;
    size_t len, off = 0;
    int e;

    if (!argv)
        return -ENOMEM;
    s = (struct spawn_spec){
        .id = spec->id,
        .path = spec->path,
        .cwd = spec->cwd ? spec->cwd : "/",
        .argv = (const char *const *)argv,
        .envp = spec->env ? spec->env : min_env,
        .uid = spec->uid,
        .gid = spec->gid,
        .host_net = spec->network == JOB_NET_HOST,
    };
    e = spawn_spec_pack(&s, &blob, &len);
    if (e < 0)
        return e;
    fd = memfd_create("runjob-spec", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    while (off < len) {
        ssize_t n = write(fd, (char *)blob + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        off += (size_t)n;
    }
    *ret_fd = TAKE_FD(fd);
    return 0;
}

static void format_start_error(const struct job_spec *spec, const struct spawn_sync_msg *m,
                               char *errbuf, size_t errlen)
{
    struct stat st;
    bool is_dir = false, no_x = false;

    if (m->step == SHIM_STEP_EXEC_SHIM) {
        snprintf(errbuf, errlen, "starting the job shim: %s", strerror(m->err));
        return;
    }
    if (m->step == SHIM_STEP_EXEC && m->err == EACCES && stat(spec->path, &st) == 0) {
        is_dir = S_ISDIR(st.st_mode);
        no_x = !(st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH));
    }
    spawn_format_error(m->step, m->err, spec->path, spec->cwd ? spec->cwd : "/", is_dir, no_x,
                       errbuf, errlen);
}

static int check_spec(struct job_runner *r, const struct job_spec *spec, char *errbuf,
                      size_t errlen)
{
    if (!spec->id || !cg_id_is_valid(spec->id)) {
        snprintf(errbuf, errlen, "invalid job id '%s'", spec->id ? spec->id : "");
        return -EINVAL;
    }
    if (!spec->path || spec->path[0] != '/') {
        snprintf(errbuf, errlen, "'%s': not an absolute path", spec->path ? spec->path : "");
        return -EINVAL;
    }
    if (spec->n_args && !spec->args) {
        snprintf(errbuf, errlen, "arguments missing");
        return -EINVAL;
    }
    if (spec->cwd && spec->cwd[0] != '/') {
        snprintf(errbuf, errlen, "working directory '%s': not an absolute path", spec->cwd);
        return -EINVAL;
    }
    if ((spec->uid == 0 || spec->gid == 0) && !r->allow_root) {
        snprintf(errbuf, errlen, "running a job as root is not allowed on this server");
        return -EPERM;
    }
    return 0;
}

int job_start(struct job_runner *r, const struct job_spec *spec, job_event_fn on_end,
              void *userdata, struct job **ret, char *errbuf, size_t errlen)
{
    struct cg_limits lim = {
        .cpu_millis = spec->limits.cpu_millis,
        .memory_bytes = spec->limits.memory_bytes,
        .io_riops = spec->limits.io_riops,
        .io_wiops = spec->limits.io_wiops,
        .io_rbps = spec->limits.io_rbps,
        .io_wbps = spec->limits.io_wbps,
        .pids = spec->limits.pids,
    };
    bool host_net = spec->network == JOB_NET_HOST, attach = true;
    struct spawn_sync_msg msg = {0};
    struct shim sh;
    struct job *j = NULL;
    struct cg *cg = NULL;
    int memfd = -1, e;
    char dummy[1];

    shim_init(&sh);

    if (!errbuf || errlen == 0) {
        errbuf = dummy;
        errlen = sizeof(dummy);
    }
    errbuf[0] = '\0';
    e = check_spec(r, spec, errbuf, errlen);
    if (e < 0)
        return e;
    pthread_mutex_lock(&r->mu);
    if (r->quit) {
        pthread_mutex_unlock(&r->mu);
        snprintf(errbuf, errlen, "the job runner is shutting down");
        return -ESHUTDOWN;
    }
    r->starting++;
    pthread_mutex_unlock(&r->mu);

    e = write_spec_memfd(spec, &memfd);
    if (e < 0) {
        snprintf(errbuf, errlen, "passing the job spec: %s", strerror(-e));
        goto fail;
    }
    e = cg_create(r->cgm, spec->id, &lim, &cg);
    if (e < 0) {
        snprintf(errbuf, errlen, "creating the job cgroup: %s", strerror(-e));
        goto fail;
    }
    /* A pooled shim has its namespaces, mounts and filter ready; otherwise start one now (on
     * cgroup v2 straight into the job's cgroup). Either way it waits for the go below. */
    if (host_net || !pool_take(r, &sh)) {
        int cgfd = cg_get_dirfd(cg);
        attach = cgfd < 0; /* v1: attached below, while the shim waits for go */
        e = shim_spawn(r, host_net, cgfd < 0 ? -1 : cgfd, false, &sh);
        if (e < 0) {
            snprintf(errbuf, errlen, "cloning the job shim: %s", strerror(-e));
            goto fail;
        }
    }
    if (attach) {
        e = cg_attach(cg, sh.pid);
        if (e < 0) {
            snprintf(errbuf, errlen, "moving the job into its cgroup: %s", strerror(-e));
            goto fail;
        }
    }
    /* EPIPE: the shim already failed (e.g. its own exec) and said why: read that below. */
    e = send_go(sh.sync, memfd);
    if (e < 0 && e != -EPIPE) {
        snprintf(errbuf, errlen, "releasing the job shim: %s", strerror(-e));
        goto fail;
    }
    close_fd(&memfd);
    e = read_verdict(sh.sync, &msg);
    if (e < 0) {
        snprintf(errbuf, errlen, "waiting for the job to start: %s", strerror(-e));
        goto fail;
    }
    if (e > 0) {
        format_start_error(spec, &msg, errbuf, errlen);
        e = -msg.err;
        goto fail;
    }
    close_fd(&sh.sync);

    j = calloc(1, sizeof(*j));
    if (!j || !(j->id = strdup(spec->id))) {
        free(j);
        j = NULL;
        e = -ENOMEM;
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    atomic_init(&j->refs, 2);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cond, NULL);
    j->r = r;
    j->log = spec->log;
    j->cg = TAKE_PTR(cg);
    j->on_end = on_end;
    j->on_end_userdata = userdata;
    j->pidfd = TAKE_FD(sh.pidfd);
    j->out_fd = TAKE_FD(sh.out);
    j->err_fd = TAKE_FD(sh.err);
    j->status_fd = TAKE_FD(sh.stp);
    j->w_out = (struct watch){.kind = W_STDOUT, .j = j};
    j->w_err = (struct watch){.kind = W_STDERR, .j = j};
    j->w_status = (struct watch){.kind = W_STATUS, .j = j};
    j->w_pid = (struct watch){.kind = W_PIDFD, .j = j};
    j->status.state = JOB_RUNNING;
    j->status.pid = sh.pid;
    j->status.start_ms = clock_ms(CLOCK_REALTIME);

    pthread_mutex_lock(&r->mu);
    j->next = r->jobs;
    if (r->jobs)
        r->jobs->prev = j;
    r->jobs = j;
    j->kill_now = r->quit; /* the runner began shutting down meanwhile */
    r->starting--;
    pthread_mutex_unlock(&r->mu);
    /* Cannot fail short of ENOMEM in the kernel; the job would then never be finalised, so
     * kill it, and the pidfd watch (added last) still reaps it. */
    if (epoll_add(r, j->out_fd, &j->w_out) < 0 || epoll_add(r, j->err_fd, &j->w_err) < 0 ||
        epoll_add(r, j->status_fd, &j->w_status) < 0)
        log_debug("job %s: epoll_ctl: %s", j->id, strerror(errno));
    if (epoll_add(r, j->pidfd, &j->w_pid) < 0)
        log_debug("job %s: epoll_ctl pidfd: %s", j->id, strerror(errno));
    if (j->kill_now)
        wake(r);
    *ret = j;
    return 0;

fail:
    shim_discard(&sh);
    close_fd(&memfd);
    if (cg) {
        int d = cg_destroy(cg, KILL_TIMEOUT_MS);
        if (d < 0)
            log_debug("job %s: removing cgroup after failed start: %s", spec->id, strerror(-d));
        cg_free(cg);
    }
    pthread_mutex_lock(&r->mu);
    r->starting--;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    return e;
}

/* ---- stop, wait, status */

int job_stop_async(struct job *j, int sig, int64_t grace_ms, job_event_fn done, void *userdata)
{
    struct stop_waiter *w = NULL;

    if (sig == 0)
        sig = SIGTERM;
    if (sig < 0 || sig >= NSIG)
        return -EINVAL;
    pthread_mutex_lock(&j->mu);
    if (j->ended) {
        pthread_mutex_unlock(&j->mu);
        if (done)
            done(j, userdata);
        return 0;
    }
    if (done) {
        w = malloc(sizeof(*w));
        if (!w) {
            pthread_mutex_unlock(&j->mu);
            return -ENOMEM;
        }
        *w = (struct stop_waiter){.fn = done, .userdata = userdata, .next = j->waiters};
        j->waiters = w;
    }
    if (sig == SIGKILL || grace_ms < 0) {
        j->kill_now = true;
    } else {
        int64_t deadline = clock_ms(CLOCK_MONOTONIC) + grace_ms;
        if (!j->deadline_ms || deadline < j->deadline_ms)
            j->deadline_ms = deadline;
        /* The shim forwards it to the command's process group. ESRCH: already exiting. */
        (void)pidfd_send_signal(j->pidfd, sig, NULL, 0);
    }
    pthread_mutex_unlock(&j->mu);
    wake(j->r);
    return 0;
}

void job_wait(struct job *j)
{
    pthread_mutex_lock(&j->mu);
    while (!j->done)
        pthread_cond_wait(&j->cond, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

int job_stop(struct job *j, int sig, int64_t grace_ms)
{
    int e = job_stop_async(j, sig, grace_ms, NULL, NULL);

    if (e < 0)
        return e;
    job_wait(j);
    return 0;
}

void job_get_status(struct job *j, struct job_status *ret)
{
    pthread_mutex_lock(&j->mu);
    if (!j->ended) {
        struct cg_usage u;
        /* cg_destroy() runs only after ended is set, so the cgroup is there while we hold mu. */
        if (cg_read_usage(j->cg, &u) == 0) {
            j->status.cpu_usec = u.cpu_usec;
            if (u.memory_peak_bytes > j->status.memory_peak_bytes)
                j->status.memory_peak_bytes = u.memory_peak_bytes;
            j->status.oom_killed = u.oom_killed;
        }
    }
    *ret = j->status;
    pthread_mutex_unlock(&j->mu);
}

bool job_is_running(struct job *j)
{
    bool running;

    pthread_mutex_lock(&j->mu);
    running = !j->ended;
    pthread_mutex_unlock(&j->mu);
    return running;
}
