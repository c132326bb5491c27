#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "tsan.h"

#define SPEC_MAGIC      0x314a5352u /* "RSJ1" little-endian */
#define SPEC_MAX_STR    (1u << 20)
#define SPEC_MAX_TOTAL  (64u << 20)
#define SPEC_MAX_ITEMS  (1u << 20)
#define SPEC_F_HOST_NET 1u

static const char *const step_names[SHIM_STEP__MAX] = {
    [SHIM_STEP_NONE] = "none",
    [SHIM_STEP_EXEC_SHIM] = "exec shim",
    [SHIM_STEP_READ_SPEC] = "read spec",
    [SHIM_STEP_SIGNALS] = "signals",
    [SHIM_STEP_WAIT_GO] = "wait for parent",
    [SHIM_STEP_CGROUP_NS] = "cgroup namespace",
    [SHIM_STEP_MOUNT_PRIVATE] = "make / private",
    [SHIM_STEP_MOUNT_PROC] = "mount /proc",
    [SHIM_STEP_MOUNT_SYS] = "mount /sys",
    [SHIM_STEP_LOOPBACK] = "loopback up",
    [SHIM_STEP_HOSTNAME] = "hostname",
    [SHIM_STEP_SECCOMP_BUILD] = "build seccomp filter",
    [SHIM_STEP_FORK] = "fork",
    [SHIM_STEP_SETPGID] = "setpgid",
    [SHIM_STEP_SIGNAL_RESET] = "reset signals",
    [SHIM_STEP_FDS] = "close fds",
    [SHIM_STEP_CAPBSET] = "drop capability bounding set",
    [SHIM_STEP_SETGROUPS] = "setgroups",
    [SHIM_STEP_SETGID] = "setgid",
    [SHIM_STEP_SETUID] = "setuid",
    [SHIM_STEP_CAPS] = "clear capabilities",
    [SHIM_STEP_CHDIR] = "chdir",
    [SHIM_STEP_NO_NEW_PRIVS] = "no_new_privs",
    [SHIM_STEP_SECCOMP] = "load seccomp filter",
    [SHIM_STEP_EXEC] = "exec",
    [SHIM_STEP_WAIT_PREP] = "wait for the job",
    [SHIM_STEP_MOUNT_TMP] = "mount the job's own /tmp",
};

const char *spawn_step_name(int step)
{
    if (step < 0 || step >= SHIM_STEP__MAX || !step_names[step])
        return "unknown step";
    return step_names[step];
}

/* ---- the spec blob: u32 magic, uid, gid, flags; str id, path, cwd; u32 argc, str...;
 * u32 envc, str...  where str = u32 length, bytes, NUL. Host byte order: both ends are the same
 * binary on the same machine. */

struct packer {
    char *buf;
    size_t len, cap;
    int err;
};

static void pack_bytes(struct packer *p, const void *data, size_t n)
{
    if (p->err)
        return;
    if (n > SPEC_MAX_TOTAL - p->len) {
        p->err = -E2BIG;
        return;
    }
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap < p->len + n)
            cap *= 2;
        char *b = realloc(p->buf, cap);
        if (!b) {
            p->err = -ENOMEM;
            return;
        }
        p->buf = b;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, data, n);
    p->len += n;
}

static void pack_u32(struct packer *p, uint32_t v)
{
    pack_bytes(p, &v, sizeof(v));
}

static void pack_str(struct packer *p, const char *s)
{
    size_t n;

    if (!s) {
        p->err = p->err ? p->err : -EINVAL;
        return;
    }
    n = strlen(s);
    if (n > SPEC_MAX_STR) {
        p->err = p->err ? p->err : -EINVAL;
        return;
    }
    pack_u32(p, (uint32_t)n);
    pack_bytes(p, s, n + 1);
}

static void pack_strv(struct packer *p, const char *const *v)
{
    uint32_t n = 0;

    if (!v) {
        p->err = p->err ? p->err : -EINVAL;
        return;
    }
    while (v[n])
        if (++n > SPEC_MAX_ITEMS) {
            p->err = p->err ? p->err : -E2BIG;
            return;
        }
    pack_u32(p, n);
    for (uint32_t i = 0; i < n; i++)
        pack_str(p, v[i]);
}

int spawn_spec_pack(const struct spawn_spec *spec, void **ret_buf, size_t *ret_len)
{
    struct packer p = {0};

    if (!spec->argv || !spec->argv[0])
        return -EINVAL;
    pack_u32(&p, SPEC_MAGIC);
    pack_u32(&p, (uint32_t)spec->uid);
    pack_u32(&p, (uint32_t)spec->gid);
    pack_u32(&p, spec->host_net ? SPEC_F_HOST_NET : 0);
    pack_str(&p, spec->id);
    pack_str(&p, spec->path);
    pack_str(&p, spec->cwd);
    pack_strv(&p, spec->argv);
    pack_strv(&p, spec->envp);
    if (p.err) {
        free(p.buf);
        return p.err;
    }
    *ret_buf = p.buf;
    *ret_len = p.len;
    return 0;
}

struct unpacker {
    const char *buf;
    size_t len, off;
    bool bad;
};

static uint32_t unpack_u32(struct unpacker *u)
{
    uint32_t v = 0;

    if (u->bad || u->len - u->off < sizeof(v)) {
        u->bad = true;
        return 0;
    }
    memcpy(&v, u->buf + u->off, sizeof(v));
    u->off += sizeof(v);
    return v;
}

static const char *unpack_str(struct unpacker *u)
{
    uint32_t n = unpack_u32(u);
    const char *s;

    if (u->bad || n > SPEC_MAX_STR || u->len - u->off < (size_t)n + 1) {
        u->bad = true;
        return NULL;
    }
    s = u->buf + u->off;
    /* Exactly n bytes, then the NUL: no embedded NUL hides a tail from exec. */
    if (s[n] != '\0' || memchr(s, '\0', n)) {
        u->bad = true;
        return NULL;
    }
    u->off += (size_t)n + 1;
    return s;
}

/* Counts a string vector without storing it (first pass), or stores it (second pass). */
static uint32_t unpack_strv(struct unpacker *u, const char **out)
{
    uint32_t n = unpack_u32(u);

    /* Each string takes at least 5 bytes: a count beyond what is left is a lie. */
    if (u->bad || n > SPEC_MAX_ITEMS || n > (u->len - u->off) / 5) {
        u->bad = true;
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *s = unpack_str(u);
        if (out)
            out[i] = s;
    }
    if (out)
        out[n] = NULL;
    return n;
}

int spawn_spec_parse(const void *buf, size_t len, struct spawn_spec **ret)
{
    struct unpacker u = {.buf = buf, .len = len};
    struct spawn_spec *s;
    uint32_t uid, gid, flags, argc, envc;
    const char *id, *path, *cwd;
    const char **vec;
    size_t mark;

    if (unpack_u32(&u) != SPEC_MAGIC)
        return -EBADMSG;
    uid = unpack_u32(&u);
    gid = unpack_u32(&u);
    flags = unpack_u32(&u);
    id = unpack_str(&u);
    path = unpack_str(&u);
    cwd = unpack_str(&u);
    mark = u.off;
    argc = unpack_strv(&u, NULL);
    envc = unpack_strv(&u, NULL);
    if (u.bad || u.off != len || argc == 0 || (flags & ~SPEC_F_HOST_NET))
        return -EBADMSG;

    s = calloc(1, sizeof(*s) + ((size_t)argc + envc + 2) * sizeof(char *));
    if (!s)
        return -ENOMEM;
    vec = (const char **)(s + 1);
    u.off = mark;
    (void)unpack_strv(&u, vec);
    (void)unpack_strv(&u, vec + argc + 1);
    s->id = id;
    s->path = path;
    s->cwd = cwd;
    s->argv = vec;
    s->envp = vec + argc + 1;
    s->uid = uid;
    s->gid = gid;
    s->host_net = flags & SPEC_F_HOST_NET;
    *ret = s;
    return 0;
}

void spawn_format_error(int step, int err, const char *path, const char *cwd, bool is_dir,
                        bool no_exec_bits, char *buf, size_t len)
{
    const char *what;

    if (!buf || len == 0)
        return;
    if (step == SHIM_STEP_EXEC) {
        switch (err) {
        case ENOENT:
            what = "no such file or directory";
            break;
        case EACCES:
            what = is_dir         ? "is a directory"
                   : no_exec_bits ? "not executable"
                                  : "permission denied";
            break;
        case ENOEXEC:
            what = "not an executable format";
            break;
        case ENOTDIR:
            what = "a path component is not a directory";
            break;
        case EISDIR:
            what = "is a directory";
            break;
        default:
            what = strerror(err);
            break;
        }
        snprintf(buf, len, "'%s': %s", path ? path : "", what);
    } else if (step == SHIM_STEP_CHDIR) {
        snprintf(buf, len, "working directory '%s': %s", cwd ? cwd : "", strerror(err));
    } else {
        snprintf(buf, len, "job setup failed at step '%s': %s", spawn_step_name(step),
                 strerror(err));
    }
}

/* ---- fd passing on SPAWN_FD_SYNC */

/* Room for SPAWN_FDS_MAX fds, and one more so that a sender that attaches too many shows up. */
union fds_ctl {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * (SPAWN_FDS_MAX + 1))];
};

int spawn_send_fds(int sock, const void *msg, size_t len, const int *fds, size_t n)
{
    union fds_ctl ctl;
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf};
    struct cmsghdr *c;
    ssize_t r;

    if (n > SPAWN_FDS_MAX)
        return -EINVAL;
    if (n > 0) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    } else {
        mh.msg_control = NULL;
    }
    do
        r = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

int spawn_send_fd(int sock, const void *msg, size_t len, int fd)
{
    return spawn_send_fds(sock, msg, len, &fd, fd >= 0 ? 1 : 0);
}

/* One message into msg: the first max fds that came with it into fds (*ret_got of them), any
 * further one closed (*ret_extra), so that a bad message leaks nothing. The message's length,
 * 0 at EOF, or -errno; *ret_flags its msg_flags. */
static ssize_t recv_with_fds(int sock, void *msg, size_t len, int *fds, size_t max, size_t *ret_got,
                             bool *ret_extra, int *ret_flags)
{
    union fds_ctl ctl;
    struct iovec iov = {.iov_base = msg, .iov_len = len};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};
    struct cmsghdr *c;
    size_t got = 0;
    bool extra = false;
    ssize_t n;

    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        size_t k;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int f;

            memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (got < max) {
                fds[got++] = f;
            } else {
                (void)close(f);
                extra = true;
            }
        }
    }
    *ret_got = got;
    *ret_extra = extra;
    *ret_flags = mh.msg_flags;
    return n;
}

static void close_all(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        (void)close(fds[i]);
}

int spawn_recv_fd(int sock, void *msg, size_t len, int *ret_fd)
{
    int fd = -1, flags;
    size_t got = 0;
    bool extra;
    ssize_t n = recv_with_fds(sock, msg, len, &fd, 1, &got, &extra, &flags);

    if (n <= 0) {
        close_all(&fd, got);
        return (int)n;
    }
    /* TRUNC: n is len for a longer message. */
    if ((size_t)n != len || (flags & MSG_TRUNC)) {
        close_all(&fd, got);
        return -EBADMSG;
    }
    /* Only an fd that came alone is kept: with others (or some cut off), none is. */
    if (got && (extra || (flags & MSG_CTRUNC))) {
        (void)close(fd);
        got = 0;
    }
    *ret_fd = got ? fd : -1;
    return 1;
}

int spawn_recv_fds(int sock, void *msg, size_t len, int *fds, size_t max, size_t *ret_n)
{
    size_t got = 0;
    bool extra;
    int flags;
    ssize_t n;

    if (max == 0 || max > SPAWN_FDS_MAX)
        return -EINVAL;
    n = recv_with_fds(sock, msg, len, fds, max, &got, &extra, &flags);
    if (n <= 0) {
        close_all(fds, got);
        return (int)n;
    }
    if ((size_t)n != len || extra || (flags & (MSG_TRUNC | MSG_CTRUNC))) {
        close_all(fds, got);
        return -EBADMSG;
    }
    *ret_n = got;
    return 1;
}

/* ---- clone3 */

/* The child's stack when it shares the server's memory: child_exec needs a few hundred bytes. */
#define SPAWN_STACK_SIZE (64u << 10)

/* The child of clone3 uses raw system calls only: libc's wrappers may be intercepted (the
 * sanitizers' fd and exit bookkeeping belongs to the parent's threads, which a raw clone3
 * child does not have; TSan reported the child's dup2 as racing the parent's socketpair). */
__attribute__((no_sanitize_address)) static void child_fail(int fd, int step, int err)
{
    struct spawn_sync_msg m = {.step = step, .err = err};

    (void)syscall(SYS_write, fd, &m, sizeof(m));
    (void)syscall(SYS_exit_group, 127);
    __builtin_unreachable();
}

/* Runs in the clone child of a (possibly multi-threaded) server: raw system calls only. Not
 * instrumented by ASan: with shared memory its stack frames' shadow would outlive the child. */
__attribute__((no_sanitize_address)) static void child_exec(const struct spawn_args *a,
                                                            char *const *envp)
{
    int sync_fd = a->fds[SPAWN_FD_SYNC];
    int tmp[SPAWN_FD_COUNT];

    /* The getppid() check that usually follows cannot work here (in a new pid namespace the
     * parent is pid 0): the shim instead waits for the parent's go message, and gets EOF if the
     * parent died before this line. */
    if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        child_fail(sync_fd, SHIM_STEP_EXEC_SHIM, errno);
    /* Two passes, so that no source fd is overwritten before it was copied: first above every
     * target, then onto the targets (dup2 clears close-on-exec there). */
    for (int i = 0; i < SPAWN_FD_COUNT; i++) {
        tmp[i] = (int)syscall(SYS_fcntl, a->fds[i], F_DUPFD_CLOEXEC, SPAWN_FD_COUNT);
        if (tmp[i] < 0)
            child_fail(sync_fd, SHIM_STEP_EXEC_SHIM, errno);
    }
    for (int i = 0; i < SPAWN_FD_COUNT; i++)
        if (syscall(SYS_dup3, tmp[i], i, 0) < 0) /* tmp[i] > i: never the same fd */
            child_fail(sync_fd, SHIM_STEP_EXEC_SHIM, errno);
    sync_fd = SPAWN_FD_SYNC;
    (void)syscall(SYS_execve, a->exe, a->argv, envp);
    child_fail(sync_fd, SHIM_STEP_EXEC_SHIM, errno);
}

static char *const empty_env[] = {NULL};

__attribute__((no_sanitize_address)) static int child_main(void *arg)
{
    child_exec(arg, empty_env); /* does not return */
    return 127;
}

/* clone(CLONE_VM | CLONE_VFORK), the way posix_spawn starts a child: the server's address space
 * (tens of MB of mappings, thread stacks, gRPC's arenas) is neither copied into the child nor
 * torn down again by its exec a moment later; perf put that at ~1 ms of CPU per pooled shim.
 * The calling thread waits until the child has exec'd or exited; the child runs child_exec on
 * its own stack, touching nothing of ours but what it reads from a. glibc's clone, so only
 * without CLONE_INTO_CGROUP (clone3's). -errno or 0; *ret_pidfd set. */
static long clone_vfork(const struct spawn_args *a, int *ret_pidfd)
{
    void *stack = mmap(NULL, SPAWN_STACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    long pid;
    int err;

    if (stack == MAP_FAILED)
        return -errno;
    /* exit_signal 0 (no SIGCHLD), as with clone3 below. */
    pid = clone(child_main, (char *)stack + SPAWN_STACK_SIZE,
                (int)(a->ns_flags | CLONE_VM | CLONE_VFORK | CLONE_PIDFD), (void *)a, ret_pidfd);
    err = errno; /* the child shared and may have overwritten errno: only a failure's is ours */
    (void)munmap(stack, SPAWN_STACK_SIZE);
    return pid < 0 ? -err : pid;
}

int spawn_clone(const struct spawn_args *a, pid_t *ret_pid, int *ret_pidfd)
{
    struct clone_args ca;
    sigset_t all, old;
    int pidfd = -1;
    long pid;
    int r;

    memset(&ca, 0, sizeof(ca));
    ca.flags = a->ns_flags | CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
    ca.exit_signal = 0; /* no SIGCHLD: nobody else's waitpid(-1) or SIG_IGN can take our child */
    if (a->cgroup_fd >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)a->cgroup_fd;
    }

    /* No signal handler of the server may run in the child between clone and exec. The shim
     * sets its own mask first thing. */
    sigfillset(&all);
    r = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (r > 0)
        return -r;
    /* TSan intercepts glibc's clone (its fork handling would run in a child sharing memory). */
    if (a->cgroup_fd < 0 && !RUNJOB_TSAN) {
        pid = clone_vfork(a, &pidfd);
        r = pid < 0 ? (int)pid : 0;
    } else {
        pid = syscall(SYS_clone3, &ca, sizeof(ca));
        if (pid == 0)
            child_exec(a, empty_env); /* does not return */
        r = pid < 0 ? -errno : 0;
    }
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0)
        return r;
    *ret_pid = (pid_t)pid;
    *ret_pidfd = pidfd;
    return 0;
}
