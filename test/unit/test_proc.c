/* Pure parsers of core/proc.c against literal strings, including malformed input. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/proc.h"

static const char hybrid_cgroup[] = "9:name=systemd:/\n"
                                    "8:pids:/\n"
                                    "4:memory:/process_api/69267a1f\n"
                                    "2:cpu,cpuacct:/a:b/c\n"
                                    "0::/user.slice/x.scope\n";

Test(proc, cgroup_finds_v1_controller)
{
    char *p = NULL;
    cr_assert_eq(proc_parse_cgroup(hybrid_cgroup, "memory", &p), 0);
    cr_assert_str_eq(p, "/process_api/69267a1f");
    free(p);
    cr_assert_eq(proc_parse_cgroup(hybrid_cgroup, "name=systemd", &p), 0);
    cr_assert_str_eq(p, "/");
    free(p);
}

Test(proc, cgroup_comounted_and_colon_in_path)
{
    char *p = NULL;
    cr_assert_eq(proc_parse_cgroup(hybrid_cgroup, "cpuacct", &p), 0);
    cr_assert_str_eq(p, "/a:b/c");
    free(p);
    cr_assert_eq(proc_parse_cgroup(hybrid_cgroup, "cpu", &p), 0);
    cr_assert_str_eq(p, "/a:b/c");
    free(p);
}

Test(proc, cgroup_unified_line)
{
    char *p = NULL;
    cr_assert_eq(proc_parse_cgroup(hybrid_cgroup, NULL, &p), 0);
    cr_assert_str_eq(p, "/user.slice/x.scope");
    free(p);
    cr_assert_eq(proc_parse_cgroup("0::/\n", "", &p), 0);
    cr_assert_str_eq(p, "/");
    free(p);
    /* no trailing newline */
    cr_assert_eq(proc_parse_cgroup("0::/srv", NULL, &p), 0);
    cr_assert_str_eq(p, "/srv");
    free(p);
}

Test(proc, cgroup_missing_and_partial_names)
{
    char *p = (char *)0x1;
    cr_assert_eq(proc_parse_cgroup(hybrid_cgroup, "blkio", &p), -ENOENT);
    cr_assert_eq(proc_parse_cgroup(hybrid_cgroup, "mem", &p), -ENOENT);
    cr_assert_eq(proc_parse_cgroup("4:memory:/x\n", NULL, &p), -ENOENT);
    cr_assert_eq(proc_parse_cgroup("", "memory", &p), -ENOENT);
    cr_assert_eq(p, (char *)0x1, "ret written on failure");
}

Test(proc, cgroup_malformed)
{
    char *p = NULL;
    cr_assert_eq(proc_parse_cgroup("garbage\n", "memory", &p), -EINVAL);
    cr_assert_eq(proc_parse_cgroup("4:memory\n", "memory", &p), -EINVAL);
    cr_assert_eq(proc_parse_cgroup(":memory:/x\n", "memory", &p), -EINVAL);
    cr_assert_eq(proc_parse_cgroup("x:memory:/x\n", "memory", &p), -EINVAL);
    cr_assert_eq(proc_parse_cgroup("4:memory:relative\n", "memory", &p), -EINVAL);
    cr_assert_eq(proc_parse_cgroup("4:memory:\n", "memory", &p), -EINVAL);
}

Test(proc, controllers_mask)
{
    unsigned m = 0;
    cr_assert_eq(proc_parse_controllers("cpuset cpu io memory hugetlb pids rdma misc\n", &m), 0);
    cr_assert_eq(m, PROC_CG_CPUSET | PROC_CG_CPU | PROC_CG_IO | PROC_CG_MEMORY | PROC_CG_HUGETLB |
                        PROC_CG_PIDS);
    cr_assert_eq(proc_parse_controllers("\n", &m), 0);
    cr_assert_eq(m, 0);
    cr_assert_eq(proc_parse_controllers("", &m), 0);
    cr_assert_eq(m, 0);
    /* prefixes and "+cpu" (subtree_control write syntax) are not names */
    cr_assert_eq(proc_parse_controllers("cpux memor +cpu", &m), 0);
    cr_assert_eq(m, 0);
    char big[200];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    m = 7;
    cr_assert_eq(proc_parse_controllers(big, &m), -EINVAL);
    cr_assert_eq(m, 7);
}

Test(proc, keyed_cpu_stat)
{
    const char *s = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n"
                    "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";
    uint64_t v = 0;
    cr_assert_eq(proc_parse_keyed_u64(s, "usage_usec", &v), 0);
    cr_assert_eq(v, 123456);
    cr_assert_eq(proc_parse_keyed_u64(s, "throttled_usec", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(proc_parse_keyed_u64(s, "usage", &v), -ENOENT);
}

Test(proc, keyed_exact_key)
{
    const char *oomc = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
    const char *events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
    uint64_t v = 0;
    cr_assert_eq(proc_parse_keyed_u64(oomc, "oom_kill", &v), 0);
    cr_assert_eq(v, 3);
    cr_assert_eq(proc_parse_keyed_u64(events, "oom", &v), 0);
    cr_assert_eq(v, 2);
    cr_assert_eq(proc_parse_keyed_u64(events, "oom_kill", &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(proc_parse_keyed_u64("populated 1\nfrozen 0", "frozen", &v), 0);
    cr_assert_eq(v, 0);
}

Test(proc, keyed_malformed)
{
    uint64_t v = 42;
    cr_assert_eq(proc_parse_keyed_u64("usage_usec abc\n", "usage_usec", &v), -EINVAL);
    cr_assert_eq(proc_parse_keyed_u64("usage_usec -1\n", "usage_usec", &v), -EINVAL);
    cr_assert_eq(proc_parse_keyed_u64("usage_usec 12 3\n", "usage_usec", &v), -EINVAL);
    cr_assert_eq(proc_parse_keyed_u64("usage_usec \n", "usage_usec", &v), -EINVAL);
    cr_assert_eq(proc_parse_keyed_u64("usage_usec 99999999999999999999\n", "usage_usec", &v),
                 -EINVAL);
    cr_assert_eq(proc_parse_keyed_u64("usage_usec\n", "usage_usec", &v), -ENOENT);
    cr_assert_eq(proc_parse_keyed_u64("", "x", &v), -ENOENT);
    cr_assert_eq(proc_parse_keyed_u64("a 1", "", &v), -EINVAL);
    cr_assert_eq(v, 42);
}

Test(proc, u64_values)
{
    uint64_t v = 0;
    cr_assert_eq(proc_parse_u64("0\n", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(proc_parse_u64("9223372036854771712\n", &v), 0);
    cr_assert_eq(v, 9223372036854771712ull);
    cr_assert_eq(proc_parse_u64("18446744073709551615", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    cr_assert_eq(proc_parse_u64("max\n", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    v = 5;
    cr_assert_eq(proc_parse_u64("18446744073709551616", &v), -EINVAL);
    cr_assert_eq(proc_parse_u64("", &v), -EINVAL);
    cr_assert_eq(proc_parse_u64("\n", &v), -EINVAL);
    cr_assert_eq(proc_parse_u64("-1", &v), -EINVAL);
    cr_assert_eq(proc_parse_u64("+1", &v), -EINVAL);
    cr_assert_eq(proc_parse_u64(" 1", &v), -EINVAL);
    cr_assert_eq(proc_parse_u64("12x", &v), -EINVAL);
    cr_assert_eq(proc_parse_u64("maxi", &v), -EINVAL);
    cr_assert_eq(proc_parse_u64("1 2", &v), -EINVAL);
    cr_assert_eq(v, 5);
}

Test(proc, devnum)
{
    unsigned ma = 0, mi = 0;
    cr_assert_eq(proc_parse_devnum("254:0\n", &ma, &mi), 0);
    cr_assert_eq(ma, 254);
    cr_assert_eq(mi, 0);
    cr_assert_eq(proc_parse_devnum("8:16", &ma, &mi), 0);
    cr_assert_eq(ma, 8);
    cr_assert_eq(mi, 16);
    ma = mi = 77;
    cr_assert_eq(proc_parse_devnum("8", &ma, &mi), -EINVAL);
    cr_assert_eq(proc_parse_devnum("8:", &ma, &mi), -EINVAL);
    cr_assert_eq(proc_parse_devnum(":1", &ma, &mi), -EINVAL);
    cr_assert_eq(proc_parse_devnum("8:1:2", &ma, &mi), -EINVAL);
    cr_assert_eq(proc_parse_devnum("8 :1", &ma, &mi), -EINVAL);
    cr_assert_eq(proc_parse_devnum("4096:0", &ma, &mi), -EINVAL); /* major is 12 bits */
    cr_assert_eq(proc_parse_devnum("1:1048576", &ma, &mi), -EINVAL);
    cr_assert_eq(proc_parse_devnum("a:b", &ma, &mi), -EINVAL);
    cr_assert_eq(ma, 77);
}

Test(proc, pids_list)
{
    pid_t *p = NULL;
    size_t n = 99;
    cr_assert_eq(proc_parse_pids("", &p, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_null(p);
    cr_assert_eq(proc_parse_pids("1\n23\n456\n", &p, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(p[0], 1);
    cr_assert_eq(p[1], 23);
    cr_assert_eq(p[2], 456);
    free(p);
    /* more than the initial capacity */
    char buf[4096] = "";
    size_t off = 0;
    for (int i = 1; i <= 100; i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%d\n", i * 7);
    cr_assert_eq(proc_parse_pids(buf, &p, &n), 0);
    cr_assert_eq(n, 100);
    cr_assert_eq(p[99], 700);
    free(p);
}

Test(proc, pids_malformed)
{
    pid_t *p = (pid_t *)0x1;
    size_t n = 99;
    cr_assert_eq(proc_parse_pids("0\n", &p, &n), -EINVAL);
    cr_assert_eq(proc_parse_pids("12 13\n", &p, &n), -EINVAL);
    cr_assert_eq(proc_parse_pids("abc\n", &p, &n), -EINVAL);
    cr_assert_eq(proc_parse_pids("-5\n", &p, &n), -EINVAL);
    cr_assert_eq(proc_parse_pids("1\n2147483648\n", &p, &n), -EINVAL);
    cr_assert_eq(n, 99);
    cr_assert_eq(p, (pid_t *)0x1);
}

Test(proc, freezer_state)
{
    enum proc_freezer_state s = PROC_THAWED;
    cr_assert_eq(proc_parse_freezer_state("FROZEN\n", &s), 0);
    cr_assert_eq(s, PROC_FROZEN);
    cr_assert_eq(proc_parse_freezer_state("FREEZING\n", &s), 0);
    cr_assert_eq(s, PROC_FREEZING);
    cr_assert_eq(proc_parse_freezer_state("THAWED", &s), 0);
    cr_assert_eq(s, PROC_THAWED);
    cr_assert_eq(proc_parse_freezer_state("FROZ\n", &s), -EINVAL);
    cr_assert_eq(proc_parse_freezer_state("FROZENX\n", &s), -EINVAL);
    cr_assert_eq(proc_parse_freezer_state("frozen\n", &s), -EINVAL);
    cr_assert_eq(proc_parse_freezer_state("", &s), -EINVAL);
}

/* The thin readers, against a temp dir. */
Test(proc, read_write_at)
{
    char dir[] = "/tmp/test_proc.XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(dfd, 0);

    /* writes need an existing file, as on cgroupfs */
    cr_assert_eq(proc_write_file_at(dfd, "memory.max", "1"), -ENOENT);
    int fd = openat(dfd, "memory.max", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(proc_writef_at(dfd, "memory.max", "%d\n", 1048576), 0);
    uint64_t v = 0;
    cr_assert_eq(proc_read_u64_at(dfd, "memory.max", &v), 0);
    cr_assert_eq(v, 1048576);

    /* a file bigger than the first read buffer */
    fd = openat(dfd, "cgroup.procs", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0);
    for (int i = 1; i <= 2000; i++)
        dprintf(fd, "%d\n", 100000 + i);
    close(fd);
    pid_t *pids = NULL;
    size_t n = 0;
    cr_assert_eq(proc_read_pids_at(dfd, "cgroup.procs", &pids, &n), 0);
    cr_assert_eq(n, 2000);
    cr_assert_eq(pids[1999], 102000);
    free(pids);

    char *buf = NULL;
    cr_assert_eq(proc_read_file_at(dfd, "nope", &buf), -ENOENT);
    cr_assert_null(buf);

    unlinkat(dfd, "memory.max", 0);
    unlinkat(dfd, "cgroup.procs", 0);
    close(dfd);
    cr_assert_eq(rmdir(dir), 0);
}

Test(proc, read_self_cgroup)
{
    static const char *const v1[] = {"memory", "pids", "cpu", "freezer", "name=systemd"};
    char *p = NULL;
    /* every Linux process has at least one line; which one depends on the host: the unified
     * hierarchy's (0::) once it is mounted, else a v1 hierarchy's, whichever this host has */
    int r = proc_read_cgroup(0, NULL, &p);
    for (size_t i = 0; r == -ENOENT && i < sizeof(v1) / sizeof(v1[0]); i++)
        r = proc_read_cgroup(0, v1[i], &p);
    if (r == -ENOENT && access("/proc/self/cgroup", F_OK) < 0)
        cr_skip_test("no /proc/self/cgroup: this kernel has no cgroups");
    cr_assert_eq(r, 0, "proc_read_cgroup: %s", strerror(-r));
    cr_assert_eq(p[0], '/');
    free(p);
}

/* proc_read_fd: everything up to max bytes, -EFBIG one byte past it, NULs kept in the length. */
Test(proc, read_fd_reads_to_the_end_within_max)
{
    char tmpl[] = "/tmp/test_proc_XXXXXX";
    int fd = mkstemp(tmpl);
    char data[10000], *buf = NULL;
    size_t len = 0;

    cr_assert_geq(fd, 0);
    (void)unlink(tmpl);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)('a' + i % 26);
    data[5] = '\0';
    cr_assert_eq(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));

    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    cr_expect_eq(proc_read_fd(fd, sizeof(data), &buf, &len), 0, "exactly max bytes");
    cr_expect_eq(len, sizeof(data));
    cr_expect_eq(memcmp(buf, data, sizeof(data)), 0);
    cr_expect_eq(buf[len], '\0');
    free(buf);
    buf = NULL;

    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    cr_expect_eq(proc_read_fd(fd, sizeof(data) - 1, &buf, &len), -EFBIG, "one byte past max");
    cr_expect_null(buf);

    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    cr_expect_eq(proc_read_fd(fd, 4096, &buf, NULL), -EFBIG, "past the first buffer");
    cr_assert_eq(lseek(fd, 0, SEEK_END), (off_t)sizeof(data));
    cr_expect_eq(proc_read_fd(fd, 0, &buf, &len), 0, "empty at the end");
    cr_expect_eq(len, 0);
    free(buf);
    close(fd);
}

struct pipe_writer {
    int fd;
    const char *data;
    size_t len;
    int r;
};

static void *write_and_close(void *arg)
{
    struct pipe_writer *w = arg;

    w->r = proc_write_fd(w->fd, w->data, w->len);
    close(w->fd);
    return NULL;
}

/* proc_write_fd: all of it through a pipe many times its capacity; -EPIPE once the reader is
 * gone (SIGPIPE ignored, as the client does). */
Test(proc, write_fd_writes_everything_or_says_epipe)
{
    static char data[1 << 20];
    struct pipe_writer w = {.data = data, .len = sizeof(data)};
    pthread_t t;
    char *got = NULL;
    size_t len = 0;
    int p[2];

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7);
    cr_assert_eq(pipe(p), 0);
    w.fd = p[1];
    cr_assert_eq(pthread_create(&t, NULL, write_and_close, &w), 0);
    cr_expect_eq(proc_read_fd(p[0], sizeof(data), &got, &len), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_expect_eq(w.r, 0);
    cr_expect_eq(len, sizeof(data));
    cr_expect(got && memcmp(got, data, sizeof(data)) == 0);
    free(got);
    close(p[0]);

    cr_expect_eq(proc_write_fd(1, "", 0), 0, "nothing to write: no write at all");
    (void)signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(pipe(p), 0);
    close(p[0]);
    cr_expect_eq(proc_write_fd(p[1], data, 10), -EPIPE);
    close(p[1]);
}

Test(proc, cmdline_args)
{
    static const char buf[] = "runjob\0agent\0-D\0"; /* sizeof - 1: the file's bytes */
    static const char cut[] = "runjob\0age";         /* a last argument without its NUL */

    cr_assert_str_eq(proc_parse_cmdline_arg(buf, sizeof(buf) - 1, 0), "runjob");
    cr_assert_str_eq(proc_parse_cmdline_arg(buf, sizeof(buf) - 1, 1), "agent");
    cr_assert_str_eq(proc_parse_cmdline_arg(buf, sizeof(buf) - 1, 2), "-D");
    cr_assert_null(proc_parse_cmdline_arg(buf, sizeof(buf) - 1, 3));
    cr_assert_str_eq(proc_parse_cmdline_arg(cut, sizeof(cut) - 1, 1), "age");
    cr_assert_null(proc_parse_cmdline_arg(cut, sizeof(cut) - 1, 2));
    cr_assert_null(proc_parse_cmdline_arg("", 0, 0));
}
