#include "job.h"
#include "job-internal.h"

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
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "cleanup.h"
#include "log.h"
#include "outlog.h"
#include "shimproto.h"
#include "spawn.h"

void job_runner_wake(struct job_runner *r)
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
    struct shimproto_status st;

    if (j->status_fd < 0 || j->have_status)
        return;
    if (shimproto_recv_status(j->status_fd, &st) == 1) {
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
        job_runner_wake(r);
    }
}

static void set_final_status(struct job *j, const struct cg_usage *u)
{
    struct job_status *s = &j->status;

    if (j->have_status && j->st.kind == SHIMPROTO_EXITED) {
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

/* The command's end is known (the shim's status record, or the shim reaped without one) and its
 * pipes are at EOF: the final status, then the log closed, then on_end. This does not wait for
 * the shim's own exit: as PID 1 it takes its namespaces down first (the mount namespace alone,
 * ~0.8 ms here), and only then does its pidfd say so; the client learns the end that much
 * sooner. What the shim's exit still kills (processes of the job that closed its stdout and
 * stderr) goes with it right after; retire() waits for that before the cgroup goes. */
static void publish_end(struct job *j)
{
    struct cg_usage u = {0};
    int e;

    j->end_published = true;
    e = cg_read_usage(j->cg, &u);
    if (e < 0)
        log_debug("job %s: reading cgroup usage: %s", j->id, strerror(-e));
    pthread_mutex_lock(&j->mu);
    set_final_status(j, &u);
    j->ended = true;
    j->deadline_ms = 0;
    pthread_mutex_unlock(&j->mu);
    unwatch(j->r, &j->status_fd);

    if (j->log)
        outlog_close(j->log);
    if (j->on_end)
        j->on_end(j, j->on_end_userdata);
}

/* The stdin's end, under j->mu: off the epoll, closed, and the wait (if armed) taken, for the
 * caller to run outside the lock. */
static job_input_fn input_close_locked(struct job *j, void **ret_userdata)
{
    job_input_fn fn = TAKE_PTR(j->in_wait_fn);

    *ret_userdata = TAKE_PTR(j->in_wait_userdata);
    if (j->in_fd >= 0) {
        /* Explicitly: a terminal's in_fd shares its file with out_fd, which keeps the
         * registration alive past this close. */
        if (j->in_polled)
            (void)epoll_ctl(j->r->epfd, EPOLL_CTL_DEL, j->in_fd, NULL);
        (void)close(j->in_fd);
        j->in_fd = -1;
    }
    j->in_polled = false;
    return fn;
}

/* Runs a wait taken off the job (under j->mu, which this drops and takes back), marked as
 * running so that job_input_cancel_wait can wait for its end. */
static void input_run_locked(struct job *j, job_input_fn fn, void *userdata)
{
    if (!fn)
        return;
    j->in_wait_running = true;
    pthread_mutex_unlock(&j->mu);
    fn(userdata);
    pthread_mutex_lock(&j->mu);
    j->in_wait_running = false;
    pthread_cond_broadcast(&j->cond);
}

/* The stdin can take more (or failed): the armed wait runs. Event thread. */
static void input_ready(struct job *j)
{
    job_input_fn fn;
    void *userdata;

    pthread_mutex_lock(&j->mu);
    fn = TAKE_PTR(j->in_wait_fn);
    userdata = TAKE_PTR(j->in_wait_userdata);
    input_run_locked(j, fn, userdata);
    pthread_mutex_unlock(&j->mu);
}

/* Shim reaped and the end published: the cgroup gone, then the stop callbacks and waiters (a
 * stop returns once nothing of the job is left). */
static void retire(struct job_runner *r, struct job *j)
{
    struct stop_waiter *w;
    job_input_fn in_fn;
    void *in_userdata;
    int e;

    j->finalised = true;
    /* Nobody sends through the pidfd once ended is set (job_stop_async checks under mu). */
    (void)close(j->pidfd);
    j->pidfd = -1;

    e = cg_destroy(j->cg, KILL_TIMEOUT_MS);
    if (e < 0)
        log_debug("job %s: removing cgroup: %s", j->id, strerror(-e));

    pthread_mutex_lock(&j->mu);
    w = TAKE_PTR(j->waiters);
    in_fn = input_close_locked(j, &in_userdata);
    input_run_locked(j, in_fn, in_userdata);
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

/* With j->mu held: a timeout that came stops the job as job_stop_async would (its signal now,
 * the kill at the end of its grace). Returns the job's next deadline to wait for, or 0. */
static int64_t handle_timeout_locked(struct job *j, int64_t now)
{
    if (!j->timeout_at)
        return 0;
    if (j->timeout_at > now)
        return j->timeout_at;
    j->timeout_at = 0;
    j->status.timed_out = true;
    if (j->timeout_signal == SIGKILL || j->timeout_grace_ms < 0) {
        j->kill_now = true;
        return 0;
    }
    if (!j->deadline_ms || now + j->timeout_grace_ms < j->deadline_ms)
        j->deadline_ms = now + j->timeout_grace_ms;
    /* The shim forwards it to the command's process group. ESRCH: already exiting. */
    (void)pidfd_send_signal(j->pidfd, j->timeout_signal, NULL, 0);
    return 0;
}

/* Stops the jobs whose timeout came, kills the cgroups whose stop deadline passed and re-arms
 * the timer for the next of either. */
static void handle_deadlines(struct job_runner *r)
{
    int64_t now = clock_ms(CLOCK_MONOTONIC), next = 0;
    struct itimerspec its;

    pthread_mutex_lock(&r->mu);
    for (struct job *j = r->jobs; j; j = j->next) {
        bool kill_it = false;

        pthread_mutex_lock(&j->mu);
        if (!j->ended) {
            int64_t t = handle_timeout_locked(j, now);
            if (t && (!next || t < next))
                next = t;
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
            case W_INPUT:
                input_ready(j);
                break;
            }
            if (!j || j->out_fd >= 0 || j->err_fd >= 0)
                continue;
            if ((j->have_status || j->reaped) && !j->end_published)
                publish_end(j);
            if (j->reaped && !j->finalised) {
                retire(r, j);
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

/* ---- stdin */

int job_input_claim(struct job *j)
{
    int r = 0;

    pthread_mutex_lock(&j->mu);
    if (j->input == JOB_INPUT_NONE)
        r = -ENOTTY;
    else if (j->in_fd < 0)
        r = -EPIPE;
    else if (j->in_claimed)
        r = -EBUSY;
    else
        j->in_claimed = true;
    pthread_mutex_unlock(&j->mu);
    return r;
}

void job_input_release(struct job *j)
{
    pthread_mutex_lock(&j->mu);
    j->in_claimed = false;
    pthread_mutex_unlock(&j->mu);
}

ssize_t job_input_write(struct job *j, const void *buf, size_t len)
{
    ssize_t n;

    pthread_mutex_lock(&j->mu);
    if (j->input == JOB_INPUT_NONE) {
        n = -ENOTTY;
    } else if (j->in_fd < 0) {
        n = -EPIPE;
    } else {
        do
            n = write(j->in_fd, buf, len);
        while (n < 0 && errno == EINTR);
        /* EIO: a terminal whose every slave is closed; the job is as good as gone. */
        if (n < 0)
            n = errno == EAGAIN ? -EAGAIN : -EPIPE;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

int job_input_wait(struct job *j, job_input_fn fn, void *userdata)
{
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLONESHOT, .data.ptr = &j->w_in};
    int r = 0;

    pthread_mutex_lock(&j->mu);
    if (j->input == JOB_INPUT_NONE) {
        r = -ENOTTY;
    } else if (j->in_fd < 0) {
        r = -EPIPE;
    } else if (j->in_wait_fn) {
        r = -EBUSY;
    } else {
        j->in_wait_fn = fn;
        j->in_wait_userdata = userdata;
        if (epoll_ctl(j->r->epfd, j->in_polled ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, j->in_fd, &ev) <
            0) {
            r = -errno;
            j->in_wait_fn = NULL;
            j->in_wait_userdata = NULL;
        } else {
            j->in_polled = true;
        }
    }
    pthread_mutex_unlock(&j->mu);
    return r;
}

bool job_input_cancel_wait(struct job *j)
{
    bool had;

    pthread_mutex_lock(&j->mu);
    had = j->in_wait_fn != NULL;
    j->in_wait_fn = NULL;
    j->in_wait_userdata = NULL;
    while (!had && j->in_wait_running)
        pthread_cond_wait(&j->cond, &j->mu);
    pthread_mutex_unlock(&j->mu);
    return had;
}

void job_input_close(struct job *j)
{
    static const char eof_line[] = {'\025', '\004'}; /* VKILL, then VEOF: a Ctrl-D alone */
    job_input_fn fn;
    void *userdata;

    pthread_mutex_lock(&j->mu);
    if (j->input == JOB_INPUT_TTY) {
        /* A terminal stays: the job's output is read from it. Its EOF is a character; what
         * does not fit now is not worth waiting for. */
        if (j->in_fd >= 0)
            (void)!write(j->in_fd, eof_line, sizeof(eof_line));
        pthread_mutex_unlock(&j->mu);
        return;
    }
    fn = input_close_locked(j, &userdata);
    input_run_locked(j, fn, userdata);
    pthread_mutex_unlock(&j->mu);
}

int job_input_resize(struct job *j, unsigned rows, unsigned cols)
{
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    int r = 0;

    if (rows == 0 || cols == 0 || rows > 0xffff || cols > 0xffff)
        return -EINVAL;
    pthread_mutex_lock(&j->mu);
    if (j->input != JOB_INPUT_TTY)
        r = -ENOTTY;
    else if (j->in_fd < 0)
        r = -EPIPE;
    else if (ioctl(j->in_fd, TIOCSWINSZ, &ws) < 0)
        r = -errno;
    pthread_mutex_unlock(&j->mu);
    return r;
}

enum job_input job_input_kind(struct job *j)
{
    return j->input;
}

/* ---- runner */

int job_epoll_add(struct job_runner *r, int fd, struct watch *w)
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
    r->tmpl_pidfd = r->tmpl_sock = -1;
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
    if ((e = job_epoll_add(r, r->evfd, &r->w_ev)) < 0 ||
        (e = job_epoll_add(r, r->tfd, &r->w_timer)) < 0)
        goto fail;
    e = -pthread_create(&r->thread, NULL, event_thread, r);
    if (e < 0)
        goto fail;
    (void)pthread_setname_np(r->thread, "rj-events"); /* names seen in top -H, perf, gdb */
    r->thread_started = true;
    if (r->pool_size) {
        e = -pthread_create(&r->pool_thread, NULL, job_pool_thread, r);
        if (e < 0) {
            job_runner_free(r);
            return e;
        }
        (void)pthread_setname_np(r->pool_thread, "rj-shims");
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
    job_runner_wake(r);
    pthread_mutex_lock(&r->mu);
    while (r->jobs || r->starting)
        pthread_cond_wait(&r->cond, &r->mu);
    pthread_cond_broadcast(&r->pool_cond);
    pthread_mutex_unlock(&r->mu);
    job_runner_wake(r);
    if (r->thread_started)
        pthread_join(r->thread, NULL);
    /* Only now: jobs that took a pooled shim had their pdeathsig tied to this thread. */
    if (r->pool_thread_started)
        pthread_join(r->pool_thread, NULL);
    /* The pool thread cloned them: their pdeathsig fired as it exited. Reap them. */
    while (r->n_pool)
        job_shim_discard(&r->pool[--r->n_pool]);
    job_spare_discard_all(r); /* none, if the caller released its spares first */
    runner_close(r);
}

const char *job_runner_cgroup_mode(struct job_runner *r)
{
    return cg_mode_name(cg_manager_mode(r->cgm));
}

int job_runner_remove_leftovers(struct job_runner *r, bool (*keep)(const char *id, void *userdata),
                                void *userdata)
{
    return cg_remove_leftovers(r->cgm, CG_LEFTOVER_MIN_AGE_S, keep, userdata);
}

int job_runner_cleanup_stale(struct job_runner *r, const char *id)
{
    int e = cg_cleanup_stale(r->cgm, id);

    return e < 0 ? e : 0;
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
    job_runner_wake(j->r);
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

void job_get_state(struct job *j, struct job_status *ret)
{
    pthread_mutex_lock(&j->mu);
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
