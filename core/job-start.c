/* Shims and job_start: spawn a shim (or take the one waiting in the job's cgroup made ahead, or
 * a pooled one: job-pool.c), attach it to the job's cgroups, send the prep and the go. */
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
#include <sys/ioctl.h>
#include <sys/eventfd.h>
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
#include "proc.h"
#include "shimproto.h"
#include "spawn.h"

/* ---- shims */

void job_shim_init(struct job_shim *sh)
{
    *sh = (struct job_shim){.pidfd = -1, .out = -1, .err = -1, .stp = -1, .sync = -1};
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        (void)close(*fd);
    *fd = -1;
}

/* Kills a child of ours (if still there), reaps it and closes its pidfd (-1: nothing to do).
 * SIGKILL through the pidfd, or by its pid where pidfd_send_signal is missing (valgrind 3.19
 * does not know it): the child is not reaped yet, so its pid names no other process. ESRCH
 * (gone already) is fine. */
static void kill_and_reap(int *pidfd, pid_t pid)
{
    siginfo_t si;

    if (*pidfd < 0)
        return;
    if (pidfd_send_signal(*pidfd, SIGKILL, NULL, 0) < 0 && errno == ENOSYS && pid > 0)
        (void)kill(pid, SIGKILL);
    (void)waitid((idtype_t)P_PIDFD, (id_t)*pidfd, &si, WEXITED | __WALL);
    close_fd(pidfd);
}

/* Kills (if still there), reaps and closes a shim that will run no job. */
void job_shim_discard(struct job_shim *sh)
{
    close_fd(&sh->sync); /* a shim still waiting for its go exits on this EOF */
    kill_and_reap(&sh->pidfd, sh->pid);
    close_fd(&sh->out);
    close_fd(&sh->err);
    close_fd(&sh->stp);
    job_shim_init(sh); /* an empty shim again: nothing prepped, no pid */
}

static int run_spawn(struct job_runner *r, const struct spawn_args *a, pid_t *ret_pid,
                     int *ret_pidfd);
/* ---- the shim template (shimproto.h): pooled shims forked from one process instead of each an
 * exec of this (static, 16 MB) binary, whose start-up and exit cost ~0.75 ms of CPU, with
 * the seccomp filter built once. Pool thread only: it is the template's pdeathsig parent,
 * hence (CLONE_PARENT) every shim's, as for those it execs. */

void job_template_stop(struct job_runner *r)
{
    struct shimproto_template_reply rep;
    int pidfd;

    /* EOF first: the template ends on it by itself, whatever becomes of the kill. */
    if (r->tmpl_sock >= 0)
        (void)shutdown(r->tmpl_sock, SHUT_WR);
    kill_and_reap(&r->tmpl_pidfd, r->tmpl_pid);
    r->tmpl_pid = 0;
    /* Replies it sent that were not read (a request given up on): their shims, ours to reap
     * (their exit signal is 0: nothing else would, a zombie of ours for good). */
    if (r->tmpl_sock >= 0 && fcntl(r->tmpl_sock, F_SETFL, O_NONBLOCK) == 0)
        while (shimproto_recv_template_reply(r->tmpl_sock, &rep, &pidfd) == 1)
            if (pidfd >= 0)
                kill_and_reap(&pidfd, rep.pid);
    close_fd(&r->tmpl_sock);
}

static int template_start(struct job_runner *r)
{
    char *argv[] = {"runjob", "shim", SHIMPROTO_NET_NONE, SHIMPROTO_TEMPLATE_ARG, NULL};
    int sock[2];
    struct spawn_args a;
    int e;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock) < 0)
        return -errno;
    memset(&a, 0, sizeof(a));
    a.exe = r->shim_exe;
    a.argv = argv;
    for (int i = 0; i < SHIMPROTO_FD_COUNT; i++)
        a.fds[i] = r->devnull;
    a.fds[SHIMPROTO_FD_SYNC] = sock[1];
    a.cgroup_fd = -1;
    e = spawn_clone(&a, &r->tmpl_pid, &r->tmpl_pidfd); /* no new namespaces: its shims get them */
    (void)close(sock[1]);
    if (e < 0) {
        (void)close(sock[0]);
        return e;
    }
    r->tmpl_sock = sock[0];
    return 0;
}

/* One shim from the template: a's fds (and cgroup) sent, its pid and pidfd back. A reply with
 * the clone's error fails this shim only. A template that fails (gone, no reply, or one that
 * makes no sense) is reaped, and restarted at the next call, unless no template ever made a
 * shim (the first would not start or work: none would). 0 or -errno; the caller then execs the
 * shim itself. */
static int template_spawn(struct job_runner *r, const struct spawn_args *a, pid_t *ret_pid,
                          int *ret_pidfd)
{
    struct shimproto_template_reply rep;
    int pidfd = -1, e;
    struct pollfd p;

    if (r->tmpl_off)
        return -EOPNOTSUPP;
    if (r->tmpl_sock < 0) {
        e = template_start(r);
        if (e < 0) {
            r->tmpl_off = !r->tmpl_served;
            log_debug("job runner: starting the shim template: %s; %s", strerror(-e),
                      r->tmpl_off ? "shims are exec'd" : "tried again at the next shim");
            return e;
        }
    }
    e = shimproto_send_template_req(r->tmpl_sock, a->fds, a->cgroup_fd, cg_memory_apart(r->cgm));
    if (e == 0) {
        p = (struct pollfd){.fd = r->tmpl_sock, .events = POLLIN};
        do
            e = poll(&p, 1, START_TIMEOUT_MS);
        while (e < 0 && errno == EINTR);
        e = e < 0 ? -errno : e == 0 ? -ETIMEDOUT : 0;
    }
    if (e == 0) {
        e = shimproto_recv_template_reply(r->tmpl_sock, &rep, &pidfd);
        if (e == 0)
            e = -ECONNRESET; /* EOF: the template ended */
    }
    /* e == 1: a whole reply, a shim's pid with its pidfd or the clone's error without. */
    if (e == 1 && rep.err == 0 && pidfd >= 0 && rep.pid > 0) {
        r->tmpl_served = true;
        *ret_pid = rep.pid;
        *ret_pidfd = pidfd;
        return 0;
    }
    /* The clone's error (EAGAIN, ENOMEM; EBUSY, ENODEV for a cgroup it cannot go into): this
     * request's, not the template's, which stays. */
    if (e == 1 && rep.err > 0 && pidfd < 0)
        return -rep.err;
    if (e == 1)
        e = -EPROTO;
    if (pidfd >= 0)
        kill_and_reap(&pidfd, 0); /* not to be trusted, nor kept: by its pidfd only, as a bad
                                     reply's pid may name another process */
    /* Anything else, a failed send, poll or recv included, leaves the control socket out of
     * step (a reply still to come would be read by the next request as its own): stopped. */
    if (!r->tmpl_served)
        r->tmpl_off = true;
    log_debug("job runner: the shim template failed (%s); %s", strerror(-e),
              r->tmpl_off ? "not used again" : "restarted at the next shim");
    job_template_stop(r);
    return e;
}

/* Starts a shim: its pipes, its socket, clone3 into new namespaces (and into the cgroup of
 * cgroup_fd, if >= 0) from the event thread, or from the calling thread if here (the pool
 * thread: it lives as long as the runner's jobs, so it may be the shim's pdeathsig parent).
 * 0 with *ret filled, or -errno. */
static int shim_spawn(struct job_runner *r, bool host_net, int cgroup_fd, bool here,
                      bool from_template, struct job_shim *ret)
{
    char *shim_argv[] = {"runjob", "shim", host_net ? SHIMPROTO_NET_HOST : SHIMPROTO_NET_NONE,
                         NULL};
    int out[2] = {-1, -1}, err[2] = {-1, -1}, stp[2] = {-1, -1}, sync[2] = {-1, -1};
    struct spawn_args a;
    struct job_shim sh;
    int e = 0;

    job_shim_init(&sh);
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
    a.fds[SHIMPROTO_FD_STDIN] = r->devnull;
    a.fds[SHIMPROTO_FD_STDOUT] = out[1];
    a.fds[SHIMPROTO_FD_STDERR] = err[1];
    a.fds[SHIMPROTO_FD_SYNC] = sync[1];
    a.fds[SHIMPROTO_FD_STATUS] = stp[1];
    a.ns_flags =
        CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | (host_net ? 0 : CLONE_NEWNET);
    a.cgroup_fd = cgroup_fd;
    if (from_template)
        e = template_spawn(r, &a, &sh.pid, &sh.pidfd);
    else
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

int job_shim_spawn(struct job_runner *r, bool host_net, int cgroup_fd, bool here,
                   struct job_shim *ret)
{
    /* A template that fails may have cloned a shim it could not tell us about (killed between
     * its clone and its reply): that one holds the fds it was sent, so the exec'd shim gets
     * new ones. It exits at the EOF of its sync socket, and stays a zombie of ours until the
     * server exits: its exit signal is 0 and no pidfd of it reached us, so nothing waits for
     * it (a wait for any child would take the exit of shims whose pidfds others wait on).
     * Rare: the template dies only if killed from outside; one zombie, no fd, per such death. */
    if (here && !host_net && !r->tmpl_off &&
        shim_spawn(r, host_net, cgroup_fd, here, true, ret) == 0)
        return 0;
    return shim_spawn(r, host_net, cgroup_fd, here, false, ret);
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
    job_runner_wake(r);
    while (sem_wait(&q.done) < 0 && errno == EINTR)
        ;
    sem_destroy(&q.done);
    if (q.r < 0)
        return q.r;
    *ret_pid = q.pid;
    *ret_pidfd = q.pidfd;
    return 0;
}

int job_shim_attach(struct job_runner *r, struct job_shim *sh, struct cg *cg)
{
    return cg_memory_apart(r->cgm) ? cg_attach_apart(cg, sh->pid) : cg_attach(cg, sh->pid);
}

/* The prep: the shim roots its cgroup namespace, takes the job's hostname and makes the
 * command's process as uid:gid up to its exec (which on cgroup v1 joins the job's memory cgroup
 * first). 0 or -errno (-EPIPE, -ECONNRESET: the shim already failed and said why). */
int job_shim_prep(struct job_runner *r, struct job_shim *sh, struct cg *cg, uid_t uid, gid_t gid)
{
    _cleanup_close_ int memory_fd = -1;
    int e;

    if (cg_memory_apart(r->cgm)) {
        memory_fd = cg_open_memory_procs(cg);
        if (memory_fd < 0)
            return memory_fd;
    }
    e = shimproto_send_prep(sh->sync, cg_get_id(cg), uid, gid, memory_fd);
    if (e < 0)
        return e;
    sh->prepped = true;
    sh->uid = uid;
    sh->gid = gid;
    return 0;
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

const char *const job_default_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", NULL};

static int write_spec_memfd(const struct job_spec *spec, int *ret_fd)
{
    _cleanup_free_ char **argv = build_argv(spec);
    _cleanup_free_ void *blob = NULL;
    _cleanup_close_ int fd = -1;
    struct shimproto_spec s;
    size_t len;
    int e;

    if (!argv)
        return -ENOMEM;
    s = (struct shimproto_spec){
        .id = spec->id,
        .path = spec->path,
        .cwd = spec->cwd ? spec->cwd : "/",
        .argv = (const char *const *)argv,
        .envp = spec->env ? spec->env : job_default_env,
        .uid = spec->uid,
        .gid = spec->gid,
        .host_net = spec->network == JOB_NET_HOST,
        .input = spec->input == JOB_INPUT_PIPE  ? SHIMPROTO_INPUT_PIPE
                 : spec->input == JOB_INPUT_TTY ? SHIMPROTO_INPUT_TTY
                                                : SHIMPROTO_INPUT_NONE,
    };
    e = shimproto_spec_pack(&s, &blob, &len);
    if (e < 0)
        return e;
    fd = memfd_create("runjob-spec", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    e = proc_write_fd(fd, blob, len);
    if (e < 0)
        return e;
    *ret_fd = TAKE_FD(fd);
    return 0;
}

/* A pseudo-terminal from the job's own devpts (the shim mounted it; no job code has run in its
 * namespaces yet), reached through the shim's root: *ret_master, non-blocking, is the server's,
 * *ret_slave the command's, owned by the job's user as a login's terminal is. */
static int open_terminal(const struct job_spec *spec, pid_t shim, int *ret_master, int *ret_slave)
{
    struct winsize ws = {.ws_row = spec->tty_rows ? spec->tty_rows : 24,
                         .ws_col = spec->tty_cols ? spec->tty_cols : 80};
    _cleanup_close_ int master = -1, slave = -1;
    char path[64];
    int unlock = 0;

    (void)snprintf(path, sizeof(path), "/proc/%d/root/dev/pts/ptmx", (int)shim);
    master = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (master < 0)
        return -errno;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCSWINSZ, &ws) < 0)
        return -errno;
    slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0)
        return -errno;
    if (fchown(slave, spec->uid, spec->gid) < 0 || fchmod(slave, 0620) < 0)
        return -errno;
    *ret_master = TAKE_FD(master);
    *ret_slave = TAKE_FD(slave);
    return 0;
}

/* The job's stdin, made right before its go: *ret_child goes to the command's process with the
 * go, *ret_in is the server's end (non-blocking); a terminal's master also replaces the stdout
 * pipe as where the output is read (*ret_out), the command's pipes going unused. */
static int open_input(const struct job_spec *spec, pid_t shim, int *ret_child, int *ret_in,
                      int *ret_out)
{
    int p[2], master = -1;

    *ret_child = *ret_in = *ret_out = -1;
    if (spec->input == JOB_INPUT_PIPE) {
        if (pipe2(p, O_CLOEXEC) < 0)
            return -errno;
        if (fcntl(p[1], F_SETFL, O_NONBLOCK) < 0) {
            int e = -errno;
            (void)close(p[0]);
            (void)close(p[1]);
            return e;
        }
        *ret_child = p[0];
        *ret_in = p[1];
    } else if (spec->input == JOB_INPUT_TTY) {
        int e = open_terminal(spec, shim, &master, ret_child);
        if (e < 0)
            return e;
        *ret_in = fcntl(master, F_DUPFD_CLOEXEC, 3);
        if (*ret_in < 0) {
            e = -errno;
            (void)close(master);
            close_fd(ret_child);
            return e;
        }
        *ret_out = master;
    }
    return 0;
}

static void format_start_error(const struct job_spec *spec, const struct shimproto_sync *m,
                               char *errbuf, size_t errlen)
{
    struct stat st;
    bool is_dir = false, no_x = false;

    if (m->step == SHIMPROTO_STEP_EXEC_SHIM) {
        snprintf(errbuf, errlen, "starting the job shim: %s", strerror(m->err));
        return;
    }
    if (m->step == SHIMPROTO_STEP_EXEC && m->err == EACCES && stat(spec->path, &st) == 0) {
        is_dir = S_ISDIR(st.st_mode);
        no_x = !(st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH));
    }
    shimproto_format_error(m->step, m->err, spec->path, spec->cwd ? spec->cwd : "/", is_dir, no_x,
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
    struct limits lim = spec->limits, ahead_lim = {0};
    bool host_net = spec->network == JOB_NET_HOST, attach = true, peer_gone;
    struct shimproto_sync msg = {0};
    struct job_shim sh;
    struct job *j = NULL;
    struct cg *cg = NULL;
    int memfd = -1, verdict = -1, e;
    int child_in = -1, in_fd = -1, tty_fd = -1; /* the job's stdin (open_input) */
    char dummy[1];

    job_shim_init(&sh);
    if (spec->spare) /* ours from here on, whatever happens; with the shim waiting in it */
        cg = job_spare_take(spec->spare, &sh, &ahead_lim);

    if (!errbuf || errlen == 0) {
        errbuf = dummy;
        errlen = sizeof(dummy);
    }
    errbuf[0] = '\0';
    e = check_spec(r, spec, errbuf, errlen);
    if (e == 0 && cg && strcmp(cg_get_id(cg), spec->id) != 0) {
        snprintf(errbuf, errlen, "the job's cgroup was made for another id");
        e = -EINVAL;
    }
    if (e < 0) {
        job_spare_drop(cg, &sh);
        return e;
    }
    pthread_mutex_lock(&r->mu);
    if (r->quit) {
        pthread_mutex_unlock(&r->mu);
        job_spare_drop(cg, &sh);
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
    /* Made ahead (the server makes it with the job's folder) with the server's default limits:
     * only those this job changes are left. */
    if (cg)
        e = cg_change_limits(cg, &ahead_lim, &lim);
    else
        e = cg_create(r->cgm, spec->id, &lim, &cg);
    if (e < 0) {
        snprintf(errbuf, errlen, "%s the job cgroup: %s", cg ? "setting the limits of" : "creating",
                 strerror(-e));
        goto fail;
    }
    /* The shim that waited in the cgroup made ahead is the job's, unless the job wants the
     * host's network (that one has its own) or another user, or it died meanwhile. */
    if (sh.pidfd >= 0 &&
        (host_net || sh.uid != spec->uid || sh.gid != spec->gid || !job_shim_alive(&sh)))
        job_shim_discard(&sh);
    if (sh.pidfd >= 0) {
        attach = false;
    } else if (host_net || !job_pool_take(r, &sh)) {
        /* A pooled shim has its namespaces, mounts and filter ready; otherwise start one now
         * (on cgroup v2 straight into the job's cgroup). Either way it waits for the go. */
        int cgfd = cg_get_dirfd(cg);
        attach = cgfd < 0; /* v1: attached below, while the shim waits for go */
        e = job_shim_spawn(r, host_net, cgfd < 0 ? -1 : cgfd, false, &sh);
        if (e < 0) {
            snprintf(errbuf, errlen, "cloning the job shim: %s", strerror(-e));
            goto fail;
        }
    }
    if (attach) {
        e = job_shim_attach(r, &sh, cg);
        if (e < 0) {
            snprintf(errbuf, errlen, "moving the job into its cgroup: %s", strerror(-e));
            goto fail;
        }
    }
    /* EPIPE / ECONNRESET: the shim already failed (e.g. its own exec) and said why before it
     * closed its end: read that below. */
    e = sh.prepped ? 0 : job_shim_prep(r, &sh, cg, spec->uid, spec->gid);
    if (e < 0 && e != -EPIPE && e != -ECONNRESET) {
        snprintf(errbuf, errlen, "preparing the job shim: %s", strerror(-e));
        goto fail;
    }
    /* A terminal is opened in the shim's own devpts: once the shim has it mounted. */
    if (e == 0 && spec->input == JOB_INPUT_TTY) {
        e = shimproto_recv_ready(sh.sync, START_TIMEOUT_MS, &msg);
        if (e == 1) {
            format_start_error(spec, &msg, errbuf, errlen);
            e = -msg.err;
            goto fail;
        }
        if (e < 0) {
            snprintf(errbuf, errlen, "waiting for the job shim: %s",
                     e == -ECHILD ? "it ended without a word" : strerror(-e));
            goto fail;
        }
    }
    if (e == 0) {
        e = open_input(spec, sh.pid, &child_in, &in_fd, &tty_fd);
        if (e < 0) {
            snprintf(errbuf, errlen, "%s the job's stdin: %s",
                     spec->input == JOB_INPUT_TTY ? "opening a terminal for" : "making",
                     strerror(-e));
            goto fail;
        }
        e = shimproto_send_go(sh.sync, memfd, child_in, &verdict);
    }
    if (e < 0 && e != -EPIPE && e != -ECONNRESET) {
        snprintf(errbuf, errlen, "releasing the job shim: %s", strerror(-e));
        goto fail;
    }
    peer_gone = e < 0;
    close_fd(&memfd);
    close_fd(&child_in); /* the command's now (or nobody's) */
    e = shimproto_recv_verdict(verdict, sh.sync, START_TIMEOUT_MS, &msg);
    close_fd(&verdict);
    if (e == 0 && peer_gone) /* no exec without the go: it ended without a word */
        e = -ECHILD;
    if (e < 0) {
        snprintf(errbuf, errlen, "waiting for the job to start: %s",
                 e == -ECHILD ? "its process ended before the go" : strerror(-e));
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
    if (tty_fd >= 0) {
        j->out_fd = TAKE_FD(tty_fd);
        close_fd(&sh.out);
    } else {
        j->out_fd = TAKE_FD(sh.out);
    }
    j->err_fd = TAKE_FD(sh.err);
    j->input = spec->input;
    j->in_fd = TAKE_FD(in_fd);
    j->w_in = (struct watch){.kind = W_INPUT, .j = j};
    j->status_fd = TAKE_FD(sh.stp);
    j->w_out = (struct watch){.kind = W_STDOUT, .j = j};
    j->w_err = (struct watch){.kind = W_STDERR, .j = j};
    j->w_status = (struct watch){.kind = W_STATUS, .j = j};
    j->w_pid = (struct watch){.kind = W_PIDFD, .j = j};
    j->status.state = JOB_RUNNING;
    j->status.pid = sh.pid;
    j->status.start_ms = clock_ms(CLOCK_REALTIME);
    if (spec->timeout_ms > 0) {
        j->timeout_at = clock_ms(CLOCK_MONOTONIC) + spec->timeout_ms;
        j->timeout_signal = spec->timeout_signal ? spec->timeout_signal : SIGTERM;
        j->timeout_grace_ms = spec->timeout_grace_ms;
    }

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
    if (job_epoll_add(r, j->out_fd, &j->w_out) < 0 || job_epoll_add(r, j->err_fd, &j->w_err) < 0 ||
        job_epoll_add(r, j->status_fd, &j->w_status) < 0)
        log_debug("job %s: epoll_ctl: %s", j->id, strerror(errno));
    if (job_epoll_add(r, j->pidfd, &j->w_pid) < 0)
        log_debug("job %s: epoll_ctl pidfd: %s", j->id, strerror(errno));
    if (j->kill_now || j->timeout_at) /* the event thread arms the timer */
        job_runner_wake(r);
    *ret = j;
    return 0;

fail:
    job_shim_discard(&sh);
    close_fd(&memfd);
    close_fd(&child_in);
    close_fd(&in_fd);
    close_fd(&tty_fd);
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
