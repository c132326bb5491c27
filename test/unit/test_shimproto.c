/* core/shimproto: the spec blob round trip, malformed blobs, step names, messages; the fd
 * passing under the messages, and each exchange over a socketpair. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/shimproto.h"

/* Counts the heap allocations this process makes while `counting`: the spec parser must make
 * none (the shim's command process parses in the shim's memory, core/shim.c). Sanitizer builds
 * own malloc, and tell through their hook; otherwise this file's malloc stands in front of
 * libc's. */
static volatile bool counting;
static volatile unsigned long allocs;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));

static void count_malloc(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
    if (counting)
        allocs++;
}

static void count_nothing(const volatile void *p)
{
    (void)p;
}

static void start_counting(void)
{
    /* Both hooks, or it installs none. */
    cr_assert_neq(__sanitizer_install_malloc_and_free_hooks(count_malloc, count_nothing), 0);
    allocs = 0;
    counting = true;
}
#else
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t k, size_t n);
void *__libc_realloc(void *p, size_t n);

void *malloc(size_t n)
{
    allocs += counting;
    return __libc_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    allocs += counting;
    return __libc_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    allocs += counting;
    return __libc_realloc(p, n);
}

static void start_counting(void)
{
    allocs = 0;
    counting = true;
}
#endif

static const char *const argv_ok[] = {"/bin/echo", "hello", "", "wörld", NULL};
static const char *const envp_ok[] = {"PATH=/bin", "HOME=/", NULL};

static struct shimproto_spec sample(void)
{
    return (struct shimproto_spec){
        .id = "0f3c2a1e-aaaa-bbbb-cccc-123456789abc",
        .path = "/bin/echo",
        .cwd = "/",
        .argv = argv_ok,
        .envp = envp_ok,
        .uid = 65534,
        .gid = 65534,
        .host_net = true,
    };
}

Test(shimproto, spec_round_trip)
{
    struct shimproto_spec in = sample(), out;
    const char *vec[16];
    void *blob = NULL;
    size_t len = 0;

    cr_assert_eq(shimproto_spec_pack(&in, &blob, &len), 0);
    cr_assert_eq(shimproto_spec_parse(blob, len, vec, 16, &out), 0);
    cr_expect_str_eq(out.id, in.id);
    cr_expect_str_eq(out.path, in.path);
    cr_expect_str_eq(out.cwd, in.cwd);
    for (int i = 0; argv_ok[i]; i++)
        cr_expect_str_eq(out.argv[i], argv_ok[i]);
    cr_expect_null(out.argv[4]);
    cr_expect_str_eq(out.envp[0], "PATH=/bin");
    cr_expect_str_eq(out.envp[1], "HOME=/");
    cr_expect_null(out.envp[2]);
    cr_expect_eq(out.uid, 65534);
    cr_expect_eq(out.gid, 65534);
    cr_expect(out.host_net);
    free(blob);
}

Test(shimproto, spec_empty_env_round_trips)
{
    static const char *const none[] = {NULL};
    struct shimproto_spec in = sample(), out;
    const char *vec[16];
    void *blob = NULL;
    size_t len = 0;

    in.envp = none;
    in.host_net = false;
    cr_assert_eq(shimproto_spec_pack(&in, &blob, &len), 0);
    cr_assert_eq(shimproto_spec_parse(blob, len, vec, 16, &out), 0);
    cr_expect_null(out.envp[0]);
    cr_expect_not(out.host_net);
    free(blob);
}

Test(shimproto, pack_rejects_missing_fields)
{
    static const char *const no_argv[] = {NULL};
    struct shimproto_spec in = sample();
    void *blob = NULL;
    size_t len = 0;

    in.path = NULL;
    cr_expect_eq(shimproto_spec_pack(&in, &blob, &len), -EINVAL);
    in = sample();
    in.argv = no_argv;
    cr_expect_eq(shimproto_spec_pack(&in, &blob, &len), -EINVAL);
    in = sample();
    in.envp = NULL;
    cr_expect_eq(shimproto_spec_pack(&in, &blob, &len), -EINVAL);
}

Test(shimproto, parse_rejects_every_truncation_and_trailing_bytes)
{
    struct shimproto_spec in = sample(), out;
    const char *vec[16];
    char *blob = NULL, *big;
    size_t len = 0;

    cr_assert_eq(shimproto_spec_pack(&in, (void **)&blob, &len), 0);
    for (size_t n = 0; n < len; n++) {
        cr_expect_eq(shimproto_spec_parse(blob, n, vec, 16, &out), -EBADMSG,
                     "prefix of %zu bytes parsed", n);
    }
    big = malloc(len + 1);
    memcpy(big, blob, len);
    big[len] = 0;
    cr_expect_eq(shimproto_spec_parse(big, len + 1, vec, 16, &out), -EBADMSG);
    free(big);
    free(blob);
}

Test(shimproto, parse_rejects_corruption)
{
    struct shimproto_spec in = sample(), out;
    const char *vec[16];
    char *blob = NULL;
    size_t len = 0;

    cr_assert_eq(shimproto_spec_pack(&in, (void **)&blob, &len), 0);
    /* Bad magic. */
    blob[0] ^= 0xff;
    cr_expect_eq(shimproto_spec_parse(blob, len, vec, 16, &out), -EBADMSG);
    blob[0] ^= 0xff;
    /* An embedded NUL inside the id (first string, after 16 bytes of header + 4 of length). */
    blob[16 + 4 + 2] = '\0';
    cr_expect_eq(shimproto_spec_parse(blob, len, vec, 16, &out), -EBADMSG);
    free(blob);
    /* Every single-byte flip either parses to something self-consistent or is refused: never
     * a crash (ASan watches). */
    cr_assert_eq(shimproto_spec_pack(&in, (void **)&blob, &len), 0);
    for (size_t i = 0; i < len; i++) {
        blob[i] ^= 0x5a;
        (void)shimproto_spec_parse(blob, len, vec, 16, &out);
        blob[i] ^= 0x5a;
    }
    free(blob);
}

Test(shimproto, parse_allocates_nothing)
{
    struct shimproto_spec in = sample(), out;
    const char *vec[16];
    char *blob = NULL;
    /* Through a pointer: a call the compiler knows as malloc's it may drop or move. */
    void *(*volatile alloc)(size_t) = malloc;
    void *volatile probe;
    size_t len = 0;
    int r, bad;

    cr_assert_eq(shimproto_spec_pack(&in, (void **)&blob, &len), 0);
    /* The counter sees an allocation at all (else this test could not fail). */
    start_counting();
    probe = alloc(16);
    counting = false;
    free(probe);
    cr_assert_eq(allocs, 1, "the allocation counter does not count");

    start_counting();
    r = shimproto_spec_parse(blob, len, vec, 16, &out);
    bad = shimproto_spec_parse(blob, len - 1, vec, 16, &out);
    counting = false;
    cr_expect_eq(r, 0);
    cr_expect_eq(bad, -EBADMSG);
    cr_expect_eq(allocs, 0, "the parser allocated %lu times", allocs);
    free(blob);
}

/* The densest blob there is: every argument and variable empty. SHIMPROTO_SPEC_VEC_MAX is
 * enough for it, one slot short of what it needs is refused, and nothing is written past the
 * slots given. */
Test(shimproto, parse_vec_max_bounds_the_densest_blob)
{
    enum { ARGC = 1000, ENVC = 500 };
    static const char *argv[ARGC + 1], *envp[ENVC + 1];
    struct shimproto_spec in = sample(), out;
    const char **vec;
    size_t len = 0, need = ARGC + ENVC + 2, cap;
    void *blob = NULL;

    for (int i = 0; i < ARGC; i++)
        argv[i] = "";
    for (int i = 0; i < ENVC; i++)
        envp[i] = "";
    in.id = in.path = in.cwd = "";
    in.argv = argv;
    in.envp = envp;
    cr_assert_eq(shimproto_spec_pack(&in, &blob, &len), 0);
    cap = SHIMPROTO_SPEC_VEC_MAX(len);
    cr_assert_geq(cap, need);
    vec = malloc((cap + 1) * sizeof(*vec));
    cr_assert_not_null(vec);

    vec[need - 1] = "canary";
    cr_expect_eq(shimproto_spec_parse(blob, len, vec, need - 1, &out), -ENOBUFS);
    cr_expect_str_eq(vec[need - 1], "canary", "a slot past cap was written");

    vec[need] = "canary";
    cr_assert_eq(shimproto_spec_parse(blob, len, vec, need, &out), 0);
    cr_expect_str_eq(vec[need], "canary");
    cr_expect_null(out.argv[ARGC]);
    cr_expect_null(out.envp[ENVC]);
    cr_expect_str_eq(out.envp[ENVC - 1], "");
    cr_expect_eq(shimproto_spec_parse(blob, len, vec, cap, &out), 0);
    free(vec);
    free(blob);
}

Test(shimproto, step_names_cover_the_enum)
{
    for (int s = 0; s < SHIMPROTO_STEP__MAX; s++)
        cr_expect_str_neq(shimproto_step_name(s), "unknown step", "step %d has no name", s);
    cr_expect_str_eq(shimproto_step_name(SHIMPROTO_STEP__MAX), "unknown step");
    cr_expect_str_eq(shimproto_step_name(-1), "unknown step");
}

Test(shimproto, error_messages_in_plain_words)
{
    char buf[256];

    shimproto_format_error(SHIMPROTO_STEP_EXEC, ENOENT, "/bin/nope", "/", false, false, buf,
                           sizeof(buf));
    cr_expect_str_eq(buf, "'/bin/nope': no such file or directory");
    shimproto_format_error(SHIMPROTO_STEP_EXEC, EACCES, "/etc/passwd", "/", false, true, buf,
                           sizeof(buf));
    cr_expect_str_eq(buf, "'/etc/passwd': not executable");
    shimproto_format_error(SHIMPROTO_STEP_EXEC, EACCES, "/etc", "/", true, false, buf, sizeof(buf));
    cr_expect_str_eq(buf, "'/etc': is a directory");
    shimproto_format_error(SHIMPROTO_STEP_CHDIR, ENOENT, "/bin/true", "/nope", false, false, buf,
                           sizeof(buf));
    cr_expect_str_eq(buf, "working directory '/nope': No such file or directory");
    shimproto_format_error(SHIMPROTO_STEP_MOUNT_PROC, EPERM, "/bin/true", "/", false, false, buf,
                           sizeof(buf));
    cr_expect_str_eq(buf, "job setup failed at step 'mount /proc': Operation not permitted");
}

/* ---- fd passing ---- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    cr_assert_not_null(d);
    while (readdir(d))
        n++;
    (void)closedir(d);
    return n;
}

static void seqpacket_pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

Test(shimproto, fd_round_trip_arrives_close_on_exec)
{
    struct shimproto_sync in = {.step = 3, .err = 7}, out = {0};
    int sv[2], p[2], fd = -1;
    char c = 0;

    seqpacket_pair(sv);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cr_assert_eq(shimproto_send_fd(sv[0], &in, sizeof(in), p[0]), 0);
    cr_assert_eq(shimproto_recv_fd(sv[1], &out, sizeof(out), &fd), 1);
    cr_expect_eq(out.step, 3);
    cr_expect_eq(out.err, 7);
    cr_assert_geq(fd, 0);
    cr_expect_neq(fd, p[0]);
    cr_expect(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    /* the same pipe: what goes in p[1] comes out of the received fd */
    cr_assert_eq(write(p[1], "x", 1), 1);
    cr_expect_eq(read(fd, &c, 1), 1);
    cr_expect_eq(c, 'x');
}

Test(shimproto, fd_recv_sees_eof_when_the_peer_closed)
{
    struct shimproto_sync m;
    int sv[2], fd = 42;

    seqpacket_pair(sv);
    (void)close(sv[0]);
    cr_expect_eq(shimproto_recv_fd(sv[1], &m, sizeof(m), &fd), 0);
    cr_expect_eq(fd, 42, "ret_fd written on EOF");
}

Test(shimproto, fd_send_to_a_closed_peer_is_epipe_not_sigpipe)
{
    struct shimproto_sync m = {0};
    int sv[2];

    seqpacket_pair(sv);
    (void)close(sv[1]);
    /* SIGPIPE's default would kill the test process. */
    cr_expect_eq(shimproto_send_fd(sv[0], &m, sizeof(m), STDIN_FILENO), -EPIPE);
}

Test(shimproto, fd_recv_refuses_a_short_or_long_message_and_closes_its_fd)
{
    struct shimproto_sync m = {0};
    int sv[2], p[2], fd = 42, before;

    seqpacket_pair(sv);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    before = count_fds();
    cr_assert_eq(shimproto_send_fd(sv[0], &m, sizeof(m) - 1, p[0]), 0);
    cr_expect_eq(shimproto_recv_fd(sv[1], &m, sizeof(m), &fd), -EBADMSG);
    cr_expect_eq(fd, 42);
    cr_expect_eq(count_fds(), before, "the fd that came with it leaked");
    /* without an fd too */
    cr_assert_eq(send(sv[0], "abc", 3, 0), 3);
    cr_expect_eq(shimproto_recv_fd(sv[1], &m, sizeof(m), &fd), -EBADMSG);
    /* a longer one, truncated to sizeof(m) by the recv */
    cr_assert_eq(shimproto_send_fd(sv[0], (char[sizeof(m) + 1]){0}, sizeof(m) + 1, p[0]), 0);
    cr_expect_eq(shimproto_recv_fd(sv[1], &m, sizeof(m), &fd), -EBADMSG);
    cr_expect_eq(fd, 42);
    cr_expect_eq(count_fds(), before, "the fd that came with a longer message leaked");
}

Test(shimproto, fd_recv_without_an_fd_gives_minus_one)
{
    struct shimproto_sync in = {.step = 1, .err = 2}, out = {0};
    int sv[2], fd = 42;

    seqpacket_pair(sv);
    cr_assert_eq(send(sv[0], &in, sizeof(in), 0), (ssize_t)sizeof(in));
    cr_expect_eq(shimproto_recv_fd(sv[1], &out, sizeof(out), &fd), 1);
    cr_expect_eq(fd, -1);
    cr_expect_eq(out.err, 2);
}

/* Sends msg with n fds (copies of fd) in one SCM_RIGHTS message. */
static void send_n_fds(int sock, const struct shimproto_sync *m, int fd, int n)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof(*m)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = CMSG_SPACE(n * sizeof(int))};
    struct cmsghdr *c;

    cr_assert_leq(n, 4);
    memset(&ctl, 0, sizeof(ctl));
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n * sizeof(int));
    for (int i = 0; i < n; i++)
        memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(int));
    cr_assert_eq(sendmsg(sock, &mh, 0), (ssize_t)sizeof(*m));
}

Test(shimproto, fd_recv_refuses_more_than_one_fd_and_leaks_none)
{
    struct shimproto_sync m = {0};
    int sv[2], fd, before;

    seqpacket_pair(sv);
    before = count_fds();
    /* 2 still fit the receiver's (padded) control buffer, 3 do not: MSG_CTRUNC */
    for (int n = 2; n <= 4; n++) {
        fd = 42;
        send_n_fds(sv[0], &m, STDIN_FILENO, n);
        cr_expect_eq(shimproto_recv_fd(sv[1], &m, sizeof(m), &fd), 1);
        cr_expect_eq(fd, -1, "%d fds sent: one was taken", n);
        cr_expect_eq(count_fds(), before, "%d fds sent: some leaked", n);
    }
}

static void on_usr1(int sig)
{
    (void)sig;
}

Test(shimproto, fd_recv_retries_after_a_signal)
{
    struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART: recvmsg fails EINTR */
    struct shimproto_sync in = {.step = 5, .err = 6}, out = {0};
    int sv[2], p[2], fd = -1, st;
    pid_t pid;

    seqpacket_pair(sv);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* interrupt the parent's recvmsg first, then send */
        usleep(100 * 1000);
        (void)kill(getppid(), SIGUSR1);
        usleep(200 * 1000);
        _exit(shimproto_send_fd(sv[0], &in, sizeof(in), p[0]) == 0 ? 0 : 1);
    }
    cr_expect_eq(shimproto_recv_fd(sv[1], &out, sizeof(out), &fd), 1);
    cr_expect_eq(out.step, 5);
    cr_expect_geq(fd, 0);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* The shim template's requests: several fds in one message, in order, close-on-exec. */
Test(shimproto, fds_round_trip_in_order)
{
    struct shimproto_template_req in = {.flags = SHIMPROTO_TEMPLATE_CGROUP}, out = {0};
    int sv[2], p[3][2], sent[3], got[SHIMPROTO_FDS_MAX];
    size_t n = 0;

    seqpacket_pair(sv);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(pipe2(p[i], O_CLOEXEC), 0);
        sent[i] = p[i][0];
    }
    cr_assert_eq(shimproto_send_fds(sv[0], &in, sizeof(in), sent, 3), 0);
    cr_assert_eq(shimproto_recv_fds(sv[1], &out, sizeof(out), got, SHIMPROTO_FDS_MAX, &n), 1);
    cr_expect_eq(out.flags, SHIMPROTO_TEMPLATE_CGROUP);
    cr_assert_eq(n, 3);
    for (int i = 0; i < 3; i++) {
        char c = 0;
        cr_expect(fcntl(got[i], F_GETFD) & FD_CLOEXEC);
        cr_assert_eq(write(p[i][1], &(char){(char)('a' + i)}, 1), 1);
        cr_expect_eq(read(got[i], &c, 1), 1);
        cr_expect_eq(c, 'a' + i, "fd %d arrived out of order", i);
    }
}

Test(shimproto, fds_recv_refuses_more_than_max_or_a_short_or_long_message_and_leaks_none)
{
    struct shimproto_sync m = {0};
    int sv[2], fds[SHIMPROTO_FDS_MAX], before;
    size_t n = 99;

    seqpacket_pair(sv);
    before = count_fds();
    send_n_fds(sv[0], &m, STDIN_FILENO, 3);
    cr_expect_eq(shimproto_recv_fds(sv[1], &m, sizeof(m), fds, 2, &n), -EBADMSG);
    cr_expect_eq(count_fds(), before, "3 fds sent, 2 allowed: some leaked");
    send_n_fds(sv[0], &m, STDIN_FILENO, 2);
    cr_expect_eq(shimproto_recv_fds(sv[1], &m, sizeof(m) + 1, fds, 2, &n), -EBADMSG);
    cr_expect_eq(count_fds(), before, "a message of another length: its fds leaked");
    /* a longer one comes truncated to the length asked for, yet is not that message */
    cr_assert_eq(shimproto_send_fds(sv[0], (char[sizeof(m) + 1]){0}, sizeof(m) + 1,
                                    (int[]){STDIN_FILENO}, 1),
                 0);
    cr_expect_eq(shimproto_recv_fds(sv[1], &m, sizeof(m), fds, 2, &n), -EBADMSG);
    cr_expect_eq(count_fds(), before, "a longer message: its fd leaked");
    cr_expect_eq(n, 99, "ret_n written on failure");
    /* none attached is a message with none */
    cr_assert_eq(send(sv[0], &m, sizeof(m), 0), (ssize_t)sizeof(m));
    cr_expect_eq(shimproto_recv_fds(sv[1], &m, sizeof(m), fds, 2, &n), 1);
    cr_expect_eq(n, 0);
    (void)close(sv[0]);
    cr_expect_eq(shimproto_recv_fds(sv[1], &m, sizeof(m), fds, 2, &n), 0);
}

/* ---- the exchanges ---- */

Test(shimproto, prep_round_trip)
{
    struct shimproto_prep p;
    int sv[2], fd = 42;

    seqpacket_pair(sv);
    cr_assert_eq(shimproto_send_prep(sv[0], "job-1", 65534, 65533, -1), 0);
    cr_assert_eq(shimproto_recv_prep(sv[1], &p, &fd), 1);
    cr_expect_str_eq(p.id, "job-1");
    cr_expect_eq(p.uid, 65534);
    cr_expect_eq(p.gid, 65533);
    cr_expect_eq(fd, -1, "no memory cgroup's fd was sent");
    (void)close(sv[0]);
    cr_expect_eq(shimproto_recv_prep(sv[1], &p, &fd), 0);
}

Test(shimproto, prep_carries_the_memory_cgroups_fd)
{
    struct shimproto_prep p;
    struct stat a, b;
    int sv[2], pipefd[2], fd = -1;

    seqpacket_pair(sv);
    cr_assert_eq(pipe(pipefd), 0);
    cr_assert_eq(shimproto_send_prep(sv[0], "job-2", 1000, 1000, pipefd[1]), 0);
    cr_assert_eq(shimproto_recv_prep(sv[1], &p, &fd), 1);
    cr_expect_str_eq(p.id, "job-2");
    cr_assert_geq(fd, 0);
    cr_expect(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    cr_assert_eq(fstat(fd, &a), 0);
    cr_assert_eq(fstat(pipefd[1], &b), 0);
    cr_expect(a.st_ino == b.st_ino && a.st_dev == b.st_dev, "another file came");
    (void)close(fd);
    (void)close(pipefd[0]);
    (void)close(pipefd[1]);
}

Test(shimproto, prep_refuses_a_long_or_empty_id)
{
    char id[SHIMPROTO_ID_MAX + 2];
    struct shimproto_prep p = {0};
    int sv[2], before, fd;

    seqpacket_pair(sv);
    memset(id, 'a', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    cr_expect_eq(shimproto_send_prep(sv[0], id, 1, 1, -1), -EINVAL);
    id[SHIMPROTO_ID_MAX] = '\0';
    cr_expect_eq(shimproto_send_prep(sv[0], id, 1, 1, -1), 0, "an id of SHIMPROTO_ID_MAX refused");
    cr_expect_eq(shimproto_recv_prep(sv[1], &p, &fd), 1);
    cr_expect_eq(shimproto_send_prep(sv[0], "", 1, 1, -1), 0);
    cr_expect_eq(shimproto_recv_prep(sv[1], &p, &fd), -EBADMSG, "an empty id");
    memset(&p, 'x', sizeof(p));
    cr_assert_eq(send(sv[0], &p, sizeof(p), 0), (ssize_t)sizeof(p));
    cr_expect_eq(shimproto_recv_prep(sv[1], &p, &fd), -EBADMSG, "an id without its NUL");
    memset(&p, 0, sizeof(p));
    before = count_fds();
    cr_assert_eq(shimproto_send_fd(sv[0], &p, sizeof(p), STDIN_FILENO), 0);
    cr_expect_eq(shimproto_recv_prep(sv[1], &p, &fd), -EBADMSG, "an empty id with an fd");
    cr_expect_eq(fd, -1);
    strcpy(p.id, "j");
    cr_assert_eq(shimproto_send_fd(sv[0], &p, sizeof(p), STDIN_FILENO), 0);
    cr_expect_eq(shimproto_recv_prep(sv[1], &p, &fd), -EBADMSG, "an fd the flags do not announce");
    memset(&p, 0, sizeof(p));
    strcpy(p.id, "j");
    p.flags = SHIMPROTO_PREP_MEMORY_FD;
    cr_assert_eq(send(sv[0], &p, sizeof(p), 0), (ssize_t)sizeof(p));
    cr_expect_eq(shimproto_recv_prep(sv[1], &p, &fd), -EBADMSG,
                 "the memory cgroup's fd announced, none came: the job would escape its limit");
    memset(&p, 0, sizeof(p));
    strcpy(p.id, "j");
    p.flags = 2;
    cr_assert_eq(send(sv[0], &p, sizeof(p), 0), (ssize_t)sizeof(p));
    cr_expect_eq(shimproto_recv_prep(sv[1], &p, &fd), -EBADMSG, "an unknown flag");
    cr_expect_eq(count_fds(), before, "the fd that came with a refused prep leaked");
}

Test(shimproto, go_carries_the_spec_fd_and_a_verdict_socket)
{
    int sv[2], p[2], fd = -1, vfd = -1, in = -2, verdict = -1;
    char c = 0;

    seqpacket_pair(sv);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cr_assert_eq(shimproto_send_go(sv[0], p[0], -1, &verdict), 0);
    cr_assert_geq(verdict, 0);
    cr_assert_eq(shimproto_recv_go(sv[1], &fd, &vfd, &in), 1);
    cr_assert_geq(fd, 0);
    cr_assert_geq(vfd, 0);
    cr_expect_eq(in, -1, "no stdin was sent");
    cr_expect_eq(fcntl(vfd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC, "the exec must close it");
    cr_assert_eq(write(p[1], "g", 1), 1);
    cr_expect_eq(read(fd, &c, 1), 1);
    cr_expect_eq(c, 'g');
    /* the command's process holds the only other end: its close is the server's EOF */
    cr_assert_eq(write(vfd, "v", 1), 1);
    cr_expect_eq(read(verdict, &c, 1), 1);
    cr_expect_eq(c, 'v');
    (void)close(vfd);
    cr_expect_eq(read(verdict, &c, 1), 0, "the verdict socket has one holder on that side");
    (void)close(sv[0]);
    cr_expect_eq(shimproto_recv_go(sv[1], &fd, &vfd, &in), 0);
}

Test(shimproto, go_carries_the_stdin_after_the_verdict_socket)
{
    int sv[2], spec[2], p[2], fd = -1, vfd = -1, in = -1, verdict = -2;
    char c = 0;

    seqpacket_pair(sv);
    cr_assert_eq(pipe2(spec, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cr_expect_eq(shimproto_send_go(sv[0], -1, p[0], &verdict), -EINVAL, "a stdin without a spec");
    cr_expect_eq(verdict, -1);
    cr_assert_eq(shimproto_send_go(sv[0], spec[0], p[0], &verdict), 0);
    cr_assert_eq(shimproto_recv_go(sv[1], &fd, &vfd, &in), 1);
    cr_assert_geq(fd, 0);
    cr_assert_geq(vfd, 0);
    cr_assert_geq(in, 0);
    cr_assert_eq(write(p[1], "i", 1), 1);
    cr_expect_eq(read(in, &c, 1), 1);
    cr_expect_eq(c, 'i', "the third fd is the stdin");
}

Test(shimproto, a_go_without_a_verdict_socket_is_refused)
{
    int sv[2], p[2], fd = -2, vfd = -2, in = -2, before;
    struct shimproto_sync m = {0};

    seqpacket_pair(sv);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    before = count_fds();
    cr_assert_eq(shimproto_send_fd(sv[0], &m, sizeof(m), p[0]), 0);
    cr_expect_eq(shimproto_recv_go(sv[1], &fd, &vfd, &in), -EBADMSG);
    cr_expect(fd == -1 && vfd == -1 && in == -1);
    cr_expect_eq(count_fds(), before, "the fd that came with the go leaked");
}

/* A go of another size with both fds: refused, but the verdict socket is handed back, so that
 * the failure goes out on it before its EOF could read as an exec. */
Test(shimproto, a_bad_go_hands_back_its_verdict_socket)
{
    int sv[2], p[2], v[2], fd = -2, vfd = -2, in = -2, before;
    char bad[3] = {0};
    struct shimproto_sync m = {0};

    seqpacket_pair(sv);
    seqpacket_pair(v);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    before = count_fds();
    cr_assert_eq(shimproto_send_fds(sv[0], bad, sizeof(bad), (int[]){p[0], v[1]}, 2), 0);
    cr_expect_eq(shimproto_recv_go(sv[1], &fd, &vfd, &in), -EBADMSG);
    cr_expect(fd == -1 && in == -1);
    cr_assert_geq(vfd, 0);
    cr_expect_eq(count_fds(), before + 1, "only the verdict socket is kept");
    cr_assert_eq(shimproto_send_failure(vfd, SHIMPROTO_STEP_WAIT_GO, EBADMSG), 0);
    (void)close(vfd);
    (void)close(v[1]);
    cr_expect_eq(shimproto_recv_verdict(v[0], sv[0], 1000, &m), 1);
    cr_expect_eq(m.step, SHIMPROTO_STEP_WAIT_GO);
}

Test(shimproto, a_go_sent_to_a_gone_shim_leaves_no_verdict_socket)
{
    int sv[2], p[2], verdict = -2;

    seqpacket_pair(sv);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    (void)close(sv[1]);
    cr_expect_eq(shimproto_send_go(sv[0], p[0], -1, &verdict), -EPIPE);
    cr_expect_eq(verdict, -1);
}

Test(shimproto, spec_input_round_trips)
{
    static const enum shimproto_input modes[] = {SHIMPROTO_INPUT_NONE, SHIMPROTO_INPUT_PIPE,
                                                 SHIMPROTO_INPUT_TTY};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        struct shimproto_spec in = sample(), out;
        const char *vec[16];
        void *blob = NULL;
        size_t len = 0;

        in.input = modes[i];
        cr_assert_eq(shimproto_spec_pack(&in, &blob, &len), 0);
        cr_assert_eq(shimproto_spec_parse(blob, len, vec, 16, &out), 0);
        cr_expect_eq(out.input, modes[i]);
        cr_expect(out.host_net);
        free(blob);
    }
}

Test(shimproto, verdict_without_a_go_is_eof_or_a_failure_on_sync)
{
    struct shimproto_sync m = {0};
    int sv[2];

    seqpacket_pair(sv);
    cr_expect_eq(shimproto_recv_verdict(-1, sv[1], 10, &m), -ETIMEDOUT);
    cr_assert_eq(shimproto_send_failure(sv[0], SHIMPROTO_STEP_CHDIR, ENOENT), 0);
    cr_expect_eq(shimproto_recv_verdict(-1, sv[1], 1000, &m), 1);
    cr_expect_eq(m.step, SHIMPROTO_STEP_CHDIR);
    cr_expect_eq(m.err, ENOENT);
    /* an errno of 0 still says "failed" */
    cr_assert_eq(shimproto_send_failure(sv[0], SHIMPROTO_STEP_EXEC, 0), 0);
    cr_expect_eq(shimproto_recv_verdict(-1, sv[1], 1000, &m), 1);
    cr_expect_eq(m.err, EIO);
    /* a ready ({0, 0}) is passed over, once */
    cr_assert_eq(shimproto_send_ready(sv[0]), 0);
    cr_assert_eq(shimproto_send_failure(sv[0], SHIMPROTO_STEP_EXEC, ENOENT), 0);
    cr_expect_eq(shimproto_recv_verdict(-1, sv[1], 1000, &m), 1);
    cr_expect_eq(m.err, ENOENT);
    cr_assert_eq(shimproto_send_ready(sv[0]), 0);
    cr_assert_eq(shimproto_send_ready(sv[0]), 0);
    cr_expect_eq(shimproto_recv_verdict(-1, sv[1], 1000, &m), -EPROTO, "two readies");
    /* the ready, waited for */
    cr_expect_eq(shimproto_recv_ready(sv[1], 10, &m), -ETIMEDOUT);
    cr_assert_eq(shimproto_send_ready(sv[0]), 0);
    cr_expect_eq(shimproto_recv_ready(sv[1], 1000, &m), 0);
    cr_assert_eq(shimproto_send_failure(sv[0], SHIMPROTO_STEP_FORK, EAGAIN), 0);
    cr_expect_eq(shimproto_recv_ready(sv[1], 1000, &m), 1, "a failure instead");
    (void)close(sv[0]);
    cr_expect_eq(shimproto_recv_verdict(-1, sv[1], 1000, &m), 0);
}

/* The verdict socket: a failure after the go on it; its EOF is the exec, unless a failure from
 * before the go waits on the sync socket (the go then died with the shim's end). */
Test(shimproto, verdict_is_the_verdict_sockets_eof_or_a_failure)
{
    struct shimproto_sync m = {0};
    int sv[2], v[2];

    seqpacket_pair(sv);
    seqpacket_pair(v);
    cr_expect_eq(shimproto_recv_verdict(v[0], sv[1], 10, &m), -ETIMEDOUT);
    cr_assert_eq(shimproto_send_failure(v[1], SHIMPROTO_STEP_CHDIR, ENOENT), 0);
    cr_expect_eq(shimproto_recv_verdict(v[0], sv[1], 1000, &m), 1);
    cr_expect_eq(m.step, SHIMPROTO_STEP_CHDIR);
    cr_expect_eq(m.err, ENOENT);
    /* a ready left on the sync socket does not hold the verdict up */
    cr_assert_eq(shimproto_send_ready(sv[0]), 0);
    (void)close(v[1]);
    cr_expect_eq(shimproto_recv_verdict(v[0], sv[1], 1000, &m), 0, "EOF: exec'd");

    /* nothing on either socket but the EOF, the sync socket still open: exec'd */
    seqpacket_pair(v);
    (void)close(v[1]);
    cr_expect_eq(shimproto_recv_verdict(v[0], sv[1], 1000, &m), 0);

    /* a failure from before the go, then the EOF */
    seqpacket_pair(v);
    cr_assert_eq(shimproto_send_failure(sv[0], SHIMPROTO_STEP_SETUID, EPERM), 0);
    (void)close(v[1]);
    cr_expect_eq(shimproto_recv_verdict(v[0], sv[1], 1000, &m), 1);
    cr_expect_eq(m.step, SHIMPROTO_STEP_SETUID);
    cr_expect_eq(m.err, EPERM);

    /* a ready on the verdict socket is no verdict */
    seqpacket_pair(v);
    cr_assert_eq(shimproto_send_ready(v[1]), 0);
    cr_expect_eq(shimproto_recv_verdict(v[0], sv[1], 1000, &m), -EPROTO);
}

/* The go reached the shim's socket but nobody read it: the verdict socket it carried goes with
 * that socket's last holder, and the failure sent before decides. */
Test(shimproto, a_go_left_unread_gives_the_failure_before_it)
{
    struct shimproto_sync m = {0};
    int sv[2], p[2], verdict = -1;

    seqpacket_pair(sv);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cr_assert_eq(shimproto_send_failure(sv[1], SHIMPROTO_STEP_SECCOMP, EINVAL), 0);
    cr_assert_eq(shimproto_send_go(sv[0], p[0], -1, &verdict), 0);
    (void)close(sv[1]);
    cr_expect_eq(shimproto_recv_verdict(verdict, sv[0], 1000, &m), 1);
    cr_expect_eq(m.step, SHIMPROTO_STEP_SECCOMP);
    cr_expect_eq(m.err, EINVAL);
    (void)close(verdict);

    /* the same without a word: no exec, and the verdict says so */
    seqpacket_pair(sv);
    cr_assert_eq(shimproto_send_go(sv[0], p[0], -1, &verdict), 0);
    (void)close(sv[1]);
    cr_expect_eq(shimproto_recv_verdict(verdict, sv[0], 1000, &m), -ECHILD);
}

Test(shimproto, status_from_a_wait_status)
{
    struct shimproto_status st;
    int p[2];

    cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    cr_expect_eq(shimproto_recv_status(p[0], &st), -EAGAIN);
    cr_assert_eq(shimproto_send_status(p[1], 3 << 8), 0); /* exited 3 */
    cr_assert_eq(shimproto_recv_status(p[0], &st), 1);
    cr_expect_eq(st.kind, SHIMPROTO_EXITED);
    cr_expect_eq(st.code, 3);
    cr_assert_eq(shimproto_send_status(p[1], SIGKILL), 0); /* killed by SIGKILL */
    cr_assert_eq(shimproto_recv_status(p[0], &st), 1);
    cr_expect_eq(st.kind, SHIMPROTO_SIGNALED);
    cr_expect_eq(st.code, SIGKILL);
    cr_assert_eq(write(p[1], "x", 1), 1);
    (void)close(p[1]);
    cr_expect_eq(shimproto_recv_status(p[0], &st), 0, "a short record");
}

Test(shimproto, template_request_and_reply_round_trip)
{
    struct shimproto_template_reply rep;
    int sv[2], fds[SHIMPROTO_FD_COUNT], got[SHIMPROTO_FD_COUNT], cg = 42, pidfd = 42;
    bool apart = true;

    seqpacket_pair(sv);
    for (int i = 0; i < SHIMPROTO_FD_COUNT; i++)
        fds[i] = STDIN_FILENO;
    cr_assert_eq(shimproto_send_template_req(sv[0], fds, -1, false), 0);
    cr_assert_eq(shimproto_recv_template_req(sv[1], got, &cg, &apart), 1);
    cr_expect_eq(cg, -1);
    cr_expect_not(apart);
    for (int i = 0; i < SHIMPROTO_FD_COUNT; i++)
        (void)close(got[i]);
    cr_assert_eq(shimproto_send_template_req(sv[0], fds, -1, true), 0);
    cr_assert_eq(shimproto_recv_template_req(sv[1], got, &cg, &apart), 1);
    cr_expect_eq(cg, -1);
    cr_expect(apart, "the memory-apart flag was lost");
    for (int i = 0; i < SHIMPROTO_FD_COUNT; i++)
        (void)close(got[i]);
    cr_assert_eq(shimproto_send_template_req(sv[0], fds, STDIN_FILENO, false), 0);
    cr_assert_eq(shimproto_recv_template_req(sv[1], got, &cg, &apart), 1);
    cr_expect_geq(cg, 0);
    cr_expect_not(apart);
    cr_expect(fcntl(cg, F_GETFD) & FD_CLOEXEC);
    for (int i = 0; i < SHIMPROTO_FD_COUNT; i++)
        (void)close(got[i]);
    (void)close(cg);

    cr_assert_eq(shimproto_send_template_reply(sv[1], 1234, STDIN_FILENO, 0), 0);
    cr_assert_eq(shimproto_recv_template_reply(sv[0], &rep, &pidfd), 1);
    cr_expect_eq(rep.pid, 1234);
    cr_expect_eq(rep.err, 0);
    cr_expect_geq(pidfd, 0);
    (void)close(pidfd);
    /* an error goes without the fd */
    cr_assert_eq(shimproto_send_template_reply(sv[1], -1, STDIN_FILENO, EAGAIN), 0);
    cr_assert_eq(shimproto_recv_template_reply(sv[0], &rep, &pidfd), 1);
    cr_expect_eq(rep.err, EAGAIN);
    cr_expect_eq(pidfd, -1);
    (void)close(sv[1]);
    cr_expect_eq(shimproto_recv_template_reply(sv[0], &rep, &pidfd), 0);
}

Test(shimproto, template_request_it_cannot_serve_is_ebadmsg_and_leaks_none)
{
    struct shimproto_template_req q = {.flags = SHIMPROTO_TEMPLATE_CGROUP};
    int sv[2], fds[SHIMPROTO_FDS_MAX], got[SHIMPROTO_FD_COUNT], cg, before;
    bool apart;

    seqpacket_pair(sv);
    for (int i = 0; i < SHIMPROTO_FDS_MAX; i++)
        fds[i] = STDIN_FILENO;
    before = count_fds();
    /* the cgroup flag without the cgroup's fd */
    cr_assert_eq(shimproto_send_fds(sv[0], &q, sizeof(q), fds, SHIMPROTO_FD_COUNT), 0);
    cr_expect_eq(shimproto_recv_template_req(sv[1], got, &cg, &apart), -EBADMSG);
    /* an unknown flag */
    q.flags = 4;
    cr_assert_eq(shimproto_send_fds(sv[0], &q, sizeof(q), fds, SHIMPROTO_FD_COUNT), 0);
    cr_expect_eq(shimproto_recv_template_req(sv[1], got, &cg, &apart), -EBADMSG);
    /* too few, too many */
    q.flags = 0;
    cr_assert_eq(shimproto_send_fds(sv[0], &q, sizeof(q), fds, 2), 0);
    cr_expect_eq(shimproto_recv_template_req(sv[1], got, &cg, &apart), -EBADMSG);
    cr_assert_eq(shimproto_send_fds(sv[0], &q, sizeof(q), fds, SHIMPROTO_FDS_MAX), 0);
    cr_expect_eq(shimproto_recv_template_req(sv[1], got, &cg, &apart), -EBADMSG);
    cr_expect_eq(count_fds(), before, "the fds of refused requests leaked");
    (void)close(sv[0]);
    cr_expect_eq(shimproto_recv_template_req(sv[1], got, &cg, &apart), 0);
}
