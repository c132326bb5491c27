#include "shimproto.h"

#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPEC_MAGIC      0x314a5352u /* "RSJ1" little-endian */
#define SPEC_MAX_STR    (1u << 20)
#define SPEC_MAX_TOTAL  (64u << 20)
#define SPEC_MAX_ITEMS  (1u << 20)
#define SPEC_F_HOST_NET 1u
#define SPEC_F_PIPE     2u
#define SPEC_F_TTY      4u
#define SPEC_F_ALL      (SPEC_F_HOST_NET | SPEC_F_PIPE | SPEC_F_TTY)

static const char *const step_names[SHIMPROTO_STEP__MAX] = {
    [SHIMPROTO_STEP_NONE] = "none",
    [SHIMPROTO_STEP_EXEC_SHIM] = "exec shim",
    [SHIMPROTO_STEP_READ_SPEC] = "read spec",
    [SHIMPROTO_STEP_SIGNALS] = "signals",
    [SHIMPROTO_STEP_WAIT_GO] = "wait for parent",
    [SHIMPROTO_STEP_CGROUP_NS] = "cgroup namespace",
    [SHIMPROTO_STEP_MOUNT_PRIVATE] = "make / private",
    [SHIMPROTO_STEP_MOUNT_PROC] = "mount /proc",
    [SHIMPROTO_STEP_MOUNT_SYS] = "mount /sys",
    [SHIMPROTO_STEP_LOOPBACK] = "loopback up",
    [SHIMPROTO_STEP_HOSTNAME] = "hostname",
    [SHIMPROTO_STEP_SECCOMP_BUILD] = "build seccomp filter",
    [SHIMPROTO_STEP_FORK] = "fork",
    [SHIMPROTO_STEP_SETSID] = "setsid",
    [SHIMPROTO_STEP_SIGNAL_RESET] = "reset signals",
    [SHIMPROTO_STEP_FDS] = "close fds",
    [SHIMPROTO_STEP_CAPBSET] = "drop capability bounding set",
    [SHIMPROTO_STEP_SETGROUPS] = "setgroups",
    [SHIMPROTO_STEP_SETGID] = "setgid",
    [SHIMPROTO_STEP_SETUID] = "setuid",
    [SHIMPROTO_STEP_CAPS] = "clear capabilities",
    [SHIMPROTO_STEP_CHDIR] = "chdir",
    [SHIMPROTO_STEP_NO_NEW_PRIVS] = "no_new_privs",
    [SHIMPROTO_STEP_SECCOMP] = "load seccomp filter",
    [SHIMPROTO_STEP_EXEC] = "exec",
    [SHIMPROTO_STEP_WAIT_PREP] = "wait for the job",
    [SHIMPROTO_STEP_MOUNT_TMP] = "mount the job's own /tmp",
    [SHIMPROTO_STEP_MOUNT_DEV] = "mount the job's own /dev",
    [SHIMPROTO_STEP_RLIMITS] = "set resource limits",
    [SHIMPROTO_STEP_OOM_SCORE] = "reset the OOM score adjustment",
    [SHIMPROTO_STEP_MEMORY_CGROUP] = "join the job's memory cgroup",
    [SHIMPROTO_STEP_COMMAND_CGROUP_NS] = "the command's cgroup namespace",
};

const char *shimproto_step_name(int step)
{
    if (step < 0 || step >= SHIMPROTO_STEP__MAX || !step_names[step])
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

int shimproto_spec_pack(const struct shimproto_spec *spec, void **ret_buf, size_t *ret_len)
{
    struct packer p = {0};

    if (!spec->argv || !spec->argv[0])
        return -EINVAL;
    pack_u32(&p, SPEC_MAGIC);
    pack_u32(&p, (uint32_t)spec->uid);
    pack_u32(&p, (uint32_t)spec->gid);
    pack_u32(&p, (spec->host_net ? SPEC_F_HOST_NET : 0) |
                     (spec->input == SHIMPROTO_INPUT_PIPE  ? SPEC_F_PIPE
                      : spec->input == SHIMPROTO_INPUT_TTY ? SPEC_F_TTY
                                                           : 0));
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

int shimproto_spec_parse(const void *buf, size_t len, const char **vec, size_t cap,
                         struct shimproto_spec *ret)
{
    struct unpacker u = {.buf = buf, .len = len};
    uint32_t uid, gid, flags, argc, envc;
    const char *id, *path, *cwd;
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
    if (u.bad || u.off != len || argc == 0 || (flags & ~SPEC_F_ALL) ||
        (flags & (SPEC_F_PIPE | SPEC_F_TTY)) == (SPEC_F_PIPE | SPEC_F_TTY))
        return -EBADMSG;
    if (cap < (size_t)argc + envc + 2)
        return -ENOBUFS;

    u.off = mark;
    (void)unpack_strv(&u, vec);
    (void)unpack_strv(&u, vec + argc + 1);
    *ret = (struct shimproto_spec){
        .id = id,
        .path = path,
        .cwd = cwd,
        .argv = vec,
        .envp = vec + argc + 1,
        .uid = uid,
        .gid = gid,
        .host_net = flags & SPEC_F_HOST_NET,
        .input = flags & SPEC_F_PIPE  ? SHIMPROTO_INPUT_PIPE
                 : flags & SPEC_F_TTY ? SHIMPROTO_INPUT_TTY
                                      : SHIMPROTO_INPUT_NONE,
    };
    return 0;
}

void shimproto_format_error(int step, int err, const char *path, const char *cwd, bool is_dir,
                            bool no_exec_bits, char *buf, size_t len)
{
    const char *what;

    if (!buf || len == 0)
        return;
    if (step == SHIMPROTO_STEP_EXEC) {
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
    } else if (step == SHIMPROTO_STEP_CHDIR) {
        snprintf(buf, len, "working directory '%s': %s", cwd ? cwd : "", strerror(err));
    } else {
        snprintf(buf, len, "job setup failed at step '%s': %s", shimproto_step_name(step),
                 strerror(err));
    }
}

/* ---- fd passing on SHIMPROTO_FD_SYNC */

/* Room for SHIMPROTO_FDS_MAX fds, and one more so that a sender that attaches too many shows up. */
union fds_ctl {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * (SHIMPROTO_FDS_MAX + 1))];
};

int shimproto_send_fds(int sock, const void *msg, size_t len, const int *fds, size_t n)
{
    union fds_ctl ctl;
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf};
    struct cmsghdr *c;
    ssize_t r;

    if (n > SHIMPROTO_FDS_MAX)
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

int shimproto_send_fd(int sock, const void *msg, size_t len, int fd)
{
    return shimproto_send_fds(sock, msg, len, &fd, fd >= 0 ? 1 : 0);
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

/* Whether a message of n bytes (len wanted) came other than whole: longer, shorter, or with
 * more fds than asked for or some cut off. */
static bool bad_message(ssize_t n, size_t len, bool extra, int flags)
{
    return (size_t)n != len || extra || (flags & (MSG_TRUNC | MSG_CTRUNC));
}

static void close_all(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        (void)close(fds[i]);
}

int shimproto_recv_fd(int sock, void *msg, size_t len, int *ret_fd)
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

int shimproto_recv_fds(int sock, void *msg, size_t len, int *fds, size_t max, size_t *ret_n)
{
    size_t got = 0;
    bool extra;
    int flags;
    ssize_t n;

    if (max == 0 || max > SHIMPROTO_FDS_MAX)
        return -EINVAL;
    n = recv_with_fds(sock, msg, len, fds, max, &got, &extra, &flags);
    if (n <= 0) {
        close_all(fds, got);
        return (int)n;
    }
    if (bad_message(n, len, extra, flags)) {
        close_all(fds, got);
        return -EBADMSG;
    }
    *ret_n = got;
    return 1;
}

/* ---- the exchanges */

int shimproto_send_prep(int sock, const char *id, uid_t uid, gid_t gid, int memory_fd)
{
    struct shimproto_prep m;

    memset(&m, 0, sizeof(m));
    if (strlen(id) > SHIMPROTO_ID_MAX)
        return -EINVAL;
    memcpy(m.id, id, strlen(id));
    m.flags = memory_fd >= 0 ? SHIMPROTO_PREP_MEMORY_FD : 0;
    m.uid = uid;
    m.gid = gid;
    return shimproto_send_fd(sock, &m, sizeof(m), memory_fd);
}

int shimproto_recv_prep(int sock, struct shimproto_prep *ret, int *ret_memory_fd)
{
    int fd = -1, r;

    *ret_memory_fd = -1;
    r = shimproto_recv_fd(sock, ret, sizeof(*ret), &fd);
    if (r <= 0)
        return r;
    if (memchr(ret->id, '\0', sizeof(ret->id)) == NULL || ret->id[0] == '\0' ||
        (ret->flags & ~SHIMPROTO_PREP_MEMORY_FD) ||
        !(ret->flags & SHIMPROTO_PREP_MEMORY_FD) != (fd < 0)) {
        if (fd >= 0)
            (void)close(fd);
        return -EBADMSG;
    }
    *ret_memory_fd = fd;
    return 1;
}

int shimproto_send_go(int sock, int spec_fd, int stdin_fd, int *ret_verdict)
{
    struct shimproto_sync m = {0};
    int v[2], e;

    *ret_verdict = -1;
    if (spec_fd < 0)
        return -EINVAL;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, v) < 0)
        return -errno;
    e = shimproto_send_fds(sock, &m, sizeof(m), (int[]){spec_fd, v[1], stdin_fd},
                           stdin_fd >= 0 ? 3 : 2);
    (void)close(v[1]); /* the command's alone from here: its exec closes the last copy */
    if (e < 0) {
        (void)close(v[0]);
        return e;
    }
    *ret_verdict = v[0];
    return 0;
}

int shimproto_recv_go(int sock, int *ret_fd, int *ret_verdict_fd, int *ret_stdin_fd)
{
    struct shimproto_sync m;
    int fds[3] = {-1, -1, -1}, flags;
    size_t got = 0;
    bool extra;
    ssize_t n = recv_with_fds(sock, &m, sizeof(m), fds, 3, &got, &extra, &flags);

    *ret_fd = *ret_verdict_fd = *ret_stdin_fd = -1;
    if (n <= 0) {
        close_all(fds, got);
        return (int)n;
    }
    if (bad_message(n, sizeof(m), extra, flags) || got < 2) {
        /* The verdict socket, if it came, is the caller's to say so on before it closes it:
         * closed first, its EOF would read as the exec. */
        if (got >= 2) {
            *ret_verdict_fd = fds[1];
            fds[1] = fds[--got];
        }
        close_all(fds, got);
        return -EBADMSG;
    }
    *ret_fd = fds[0];
    *ret_verdict_fd = fds[1];
    *ret_stdin_fd = got > 2 ? fds[2] : -1;
    return 1;
}

int shimproto_send_failure(int sock, int step, int err)
{
    struct shimproto_sync m = {.step = step, .err = err > 0 ? err : EIO};

    return write(sock, &m, sizeof(m)) < 0 ? -errno : 0;
}

int shimproto_send_ready(int sock)
{
    struct shimproto_sync m = {0};
    ssize_t n;

    do
        n = send(sock, &m, sizeof(m), MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

/* One message of the shim's side within timeout_ms: 0 at EOF, 1 a failure (in *ret), 2 the
 * ready, or -errno (-ETIMEDOUT, -EPROTO for anything else). */
static int recv_sync(int sock, int timeout_ms, struct shimproto_sync *ret)
{
    struct pollfd p = {.fd = sock, .events = POLLIN};
    ssize_t n;
    int e;

    do
        e = poll(&p, 1, timeout_ms);
    while (e < 0 && errno == EINTR);
    if (e < 0)
        return -errno;
    if (e == 0)
        return -ETIMEDOUT;
    do
        n = recv(sock, ret, sizeof(*ret), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return 0;
    if (n == sizeof(*ret) && ret->step == SHIMPROTO_STEP_NONE && ret->err == 0)
        return 2;
    if (n != sizeof(*ret) || ret->err <= 0)
        return -EPROTO;
    return 1;
}

int shimproto_recv_ready(int sock, int timeout_ms, struct shimproto_sync *ret)
{
    int r = recv_sync(sock, timeout_ms, ret);

    if (r == 2)
        return 0;
    return r == 0 ? -ECHILD : r;
}

int shimproto_recv_verdict(int verdict, int sock, int timeout_ms, struct shimproto_sync *ret)
{
    int r;

    if (verdict >= 0) {
        r = recv_sync(verdict, timeout_ms, ret);
        if (r != 0)
            return r == 2 ? -EPROTO : r;
        /* EOF: the exec closed it, or the go never reached the command's process, which then
         * said why on sock before it ended (and with it the last hold on this socket). */
        timeout_ms = 0;
    }
    /* A ready nobody waited for (a job without a terminal) is passed over. The wait may then
     * take up to twice timeout_ms: only a wedged kernel comes near either. */
    for (int readies = 0, reset = 0; readies < 2;) {
        r = recv_sync(sock, timeout_ms, ret);
        /* The shim's end went with the go unread in it: the command never got it. What it said
         * before, if anything, comes next. */
        if (r == -ECONNRESET && !reset++)
            continue;
        if (reset && (r == 0 || r == -ETIMEDOUT))
            return -ECHILD;
        if (verdict >= 0 && (r == 0 || r == -ETIMEDOUT))
            return 0;
        if (r != 2)
            return r;
        readies++;
    }
    return -EPROTO;
}

int shimproto_send_status(int fd, int wait_status)
{
    struct shimproto_status st;

    if (WIFSIGNALED(wait_status))
        st = (struct shimproto_status){.kind = SHIMPROTO_SIGNALED, .code = WTERMSIG(wait_status)};
    else
        st = (struct shimproto_status){.kind = SHIMPROTO_EXITED, .code = WEXITSTATUS(wait_status)};
    return write(fd, &st, sizeof(st)) < 0 ? -errno : 0;
}

int shimproto_recv_status(int fd, struct shimproto_status *ret)
{
    ssize_t n = read(fd, ret, sizeof(*ret));

    if (n < 0)
        return -errno;
    return n == sizeof(*ret);
}

int shimproto_send_template_req(int sock, const int fds[SHIMPROTO_FD_COUNT], int cgroup_fd,
                                bool memory_apart)
{
    struct shimproto_template_req q = {.flags =
                                           (cgroup_fd >= 0 ? SHIMPROTO_TEMPLATE_CGROUP : 0) |
                                           (memory_apart ? SHIMPROTO_TEMPLATE_MEMORY_APART : 0)};
    int all[SHIMPROTO_FD_COUNT + 1];

    memcpy(all, fds, sizeof(int) * SHIMPROTO_FD_COUNT);
    all[SHIMPROTO_FD_COUNT] = cgroup_fd;
    return shimproto_send_fds(sock, &q, sizeof(q), all, SHIMPROTO_FD_COUNT + (cgroup_fd >= 0));
}

int shimproto_recv_template_req(int sock, int fds[SHIMPROTO_FD_COUNT], int *ret_cgroup_fd,
                                bool *ret_memory_apart)
{
    const uint32_t known = SHIMPROTO_TEMPLATE_CGROUP | SHIMPROTO_TEMPLATE_MEMORY_APART;
    struct shimproto_template_req q;
    int all[SHIMPROTO_FD_COUNT + 1];
    size_t n = 0;
    int r;

    r = shimproto_recv_fds(sock, &q, sizeof(q), all, SHIMPROTO_FD_COUNT + 1, &n);
    if (r <= 0)
        return r;
    if (n != SHIMPROTO_FD_COUNT + !!(q.flags & SHIMPROTO_TEMPLATE_CGROUP) || (q.flags & ~known)) {
        close_all(all, n);
        return -EBADMSG;
    }
    memcpy(fds, all, sizeof(int) * SHIMPROTO_FD_COUNT);
    *ret_cgroup_fd = n > SHIMPROTO_FD_COUNT ? all[SHIMPROTO_FD_COUNT] : -1;
    *ret_memory_apart = q.flags & SHIMPROTO_TEMPLATE_MEMORY_APART;
    return 1;
}

int shimproto_send_template_reply(int sock, pid_t pid, int pidfd, int err)
{
    struct shimproto_template_reply rep = {.pid = (int32_t)pid, .err = err};

    return shimproto_send_fds(sock, &rep, sizeof(rep), &pidfd, err ? 0 : 1);
}

int shimproto_recv_template_reply(int sock, struct shimproto_template_reply *ret, int *ret_pidfd)
{
    size_t n = 0;
    int fd = -1, r;

    r = shimproto_recv_fds(sock, ret, sizeof(*ret), &fd, 1, &n);
    if (r <= 0)
        return r;
    *ret_pidfd = n ? fd : -1;
    return 1;
}
