/* core/job on this host, as root: real namespaces, the host's cgroups (v1 here), the real shim
 * (RUNJOB_BIN, default bin/runjob relative to the repo root). Every test makes its own runner
 * and temp dir; Criterion runs each in its own process. Limits are short so the suite is quick.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/cgroup.h"
#include "core/job.h"
#include "core/outlog.h"

#define NOBODY 65534
/* test_job_pool.c includes this file with 2: every test then runs on pooled shims. */
#ifndef TEST_PRESPAWN
#define TEST_PRESPAWN 0
#endif

static char tmpdir[64];
static struct job_runner *runner;
static atomic_int id_seq;

static const char *runjob_bin(void)
{
    const char *b = getenv("RUNJOB_BIN");
    return b && *b ? b : "bin/runjob";
}

static void need_root(void)
{
    if (geteuid() != 0)
        cr_skip_test("needs root (namespaces, cgroups)");
    if (access(runjob_bin(), X_OK) != 0)
        cr_skip_test("no runjob binary at '%s' (set RUNJOB_BIN or run make)", runjob_bin());
}

static struct job_runner *new_runner(bool allow_root)
{
    struct job_runner_config cfg = {.shim_exe = runjob_bin(),
                                    .allow_root_user = allow_root,
                                    .prespawn_shims = TEST_PRESPAWN};
    struct job_runner *r = NULL;

    cr_assert_eq(job_runner_new(&cfg, &r), 0, "job_runner_new failed");
    return r;
}

static void setup(void)
{
    need_root();
    strcpy(tmpdir, "/tmp/test_job.XXXXXX");
    cr_assert(mkdtemp(tmpdir));
    runner = new_runner(false);
}

static void teardown(void)
{
    char cmd[128];

    job_runner_free(runner);
    runner = NULL;
    if (tmpdir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        (void)!system(cmd);
    }
}

TestSuite(job, .init = setup, .fini = teardown, .timeout = 30);

static void make_id(char *buf, size_t len)
{
    snprintf(buf, len, "t%05d%03d-job-test", (int)getpid() % 100000, atomic_fetch_add(&id_seq, 1));
}

struct run {
    char id[64];
    struct job *j;
    struct outlog *log;
    struct job_status st;
    char err[256];
    int r;
};

/* Starts path with args (NULL-terminated) as uid in cwd (NULL: "/"); limits may be NULL.
 * ahead: the job's cgroup (made ahead with job_cgroup_reserve, for run->id, already set) goes
 * in the spec. */
static void start_spec(struct run *run, struct job_runner *r, const struct job_limits *lim,
                       enum job_network net, uid_t uid, const char *cwd, const char *path,
                       const char *const *args, struct cg *ahead)
{
    char logpath[256];
    size_t n = 0;

    snprintf(logpath, sizeof(logpath), "%s/%s.log", tmpdir, run->id);
    cr_assert_eq(outlog_create(logpath, 0, &run->log), 0);
    while (args && args[n])
        n++;
    struct job_spec spec = {
        .id = run->id,
        .path = path,
        .args = args,
        .n_args = n,
        .network = net,
        .cwd = cwd,
        .uid = uid,
        .gid = uid,
        .log = run->log,
        .cgroup = ahead,
    };
    if (lim)
        spec.limits = *lim;
    run->r = job_start(r, &spec, NULL, NULL, &run->j, run->err, sizeof(run->err));
}

static void start_ex(struct run *run, struct job_runner *r, const struct job_limits *lim,
                     enum job_network net, uid_t uid, const char *path, const char *const *args)
{
    memset(run, 0, sizeof(*run));
    make_id(run->id, sizeof(run->id));
    start_spec(run, r, lim, net, uid, NULL, path, args, NULL);
}

/* start_ex in cwd. */
static void start_in(struct run *run, struct job_runner *r, const struct job_limits *lim,
                     enum job_network net, uid_t uid, const char *cwd, const char *path,
                     const char *const *args)
{
    memset(run, 0, sizeof(*run));
    make_id(run->id, sizeof(run->id));
    start_spec(run, r, lim, net, uid, cwd, path, args, NULL);
}

/* start_ex with the job's cgroup made ahead (asserted to exist before the start). */
static void start_ahead(struct run *run, const struct job_limits *lim, const char *path,
                        const char *const *args)
{
    struct cg *cg = NULL;

    memset(run, 0, sizeof(*run));
    make_id(run->id, sizeof(run->id));
    int r = job_cgroup_reserve(runner, run->id, &cg);
    cr_assert_eq(r, 0, "job_cgroup_reserve: %s", strerror(-r));
    cr_assert_not_null(cg);
    start_spec(run, runner, lim, JOB_NET_NONE, NOBODY, NULL, path, args, cg);
}

static void start(struct run *run, const char *path, const char *const *args)
{
    start_ex(run, runner, NULL, JOB_NET_NONE, NOBODY, path, args);
    cr_assert_eq(run->r, 0, "job_start('%s'): %s (%s)", path, strerror(-run->r), run->err);
}

static void finish(struct run *run)
{
    job_wait(run->j);
    job_get_status(run->j, &run->st);
}

/* Everything the job wrote on the selected streams (the log is closed by then). */
static char *output(struct run *run, unsigned mask)
{
    struct outlog_reader *rd = NULL;
    struct outlog_chunk_info info;
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ssize_t n;

    cr_assert_eq(outlog_reader_new(run->log, mask, 0, &rd), 0);
    for (;;) {
        if (cap - len < 2048)
            buf = realloc(buf, cap *= 2);
        n = outlog_reader_read(rd, buf + len, cap - len - 1, &info);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    cr_assert(n == 0, "outlog read: %zd", n);
    outlog_reader_free(rd);
    buf[len] = '\0';
    return buf;
}

static void done(struct run *run)
{
    job_free(run->j);
    outlog_free(run->log);
}

static bool cgroup_exists(const char *id)
{
    static const char *const hier[] = {"pids", "memory", "cpu", "cpuacct", "blkio", "freezer"};
    char p[256];

    for (size_t i = 0; i < sizeof(hier) / sizeof(hier[0]); i++) {
        snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/runjob/%s", hier[i], id);
        if (access(p, F_OK) == 0)
            return true;
        snprintf(p, sizeof(p), "/sys/fs/cgroup/unified/runjob/%s", id);
        if (access(p, F_OK) == 0)
            return true;
    }
    return false;
}

/* The first line of a file of the job's v1 cgroup in hier, into buf ("" if unreadable). */
static const char *cgroup_file(const char *hier, const char *id, const char *file, char *buf,
                               size_t len)
{
    char p[256];
    FILE *f;

    buf[0] = '\0';
    snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/runjob/%s/%s", hier, id, file);
    f = fopen(p, "re");
    if (f) {
        if (!fgets(buf, (int)len, f))
            buf[0] = '\0';
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

/* Pids in the job's v1 pids cgroup, or -1. */
static int cgroup_pids(const char *id, pid_t *pids, int max)
{
    char p[256];
    int n = 0, pid;
    FILE *f;

    snprintf(p, sizeof(p), "/sys/fs/cgroup/pids/runjob/%s/cgroup.procs", id);
    f = fopen(p, "r");
    if (!f)
        return -1;
    while (n < max && fscanf(f, "%d", &pid) == 1)
        pids[n++] = pid;
    fclose(f);
    return n;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- basics */

Test(job, echo_goes_to_stdout)
{
    struct run run;
    start(&run, "/bin/echo", (const char *const[]){"hello", "world", NULL});
    finish(&run);
    cr_expect_eq(run.st.state, JOB_EXITED, "state %s", job_state_name(run.st.state));
    cr_expect_eq(run.st.exit_code, 0);
    char *out = output(&run, OUTLOG_SELECT_STDOUT);
    cr_expect_str_eq(out, "hello world\n");
    free(out);
    cr_expect(run.st.start_ms > 0 && run.st.end_ms >= run.st.start_ms);
    cr_expect_not(cgroup_exists(run.id), "cgroup left behind");
    cr_expect(outlog_is_closed(run.log));
    done(&run);
}

Test(job, stdout_and_stderr_are_separate)
{
    struct run run;
    start(&run, "/bin/sh", (const char *const[]){"-c", "echo out; echo err >&2; exit 7", NULL});
    finish(&run);
    cr_expect_eq(run.st.state, JOB_EXITED);
    cr_expect_eq(run.st.exit_code, 7);
    char *o = output(&run, OUTLOG_SELECT_STDOUT), *e = output(&run, OUTLOG_SELECT_STDERR);
    cr_expect_str_eq(o, "out\n");
    cr_expect_str_eq(e, "err\n");
    free(o);
    free(e);
    done(&run);
}

Test(job, exit_codes)
{
    static const char *const codes[] = {"exit 0", "exit 1", "exit 42", "exit 255"};
    static const int want[] = {0, 1, 42, 255};
    for (int i = 0; i < 4; i++) {
        struct run run;
        start(&run, "/bin/sh", (const char *const[]){"-c", codes[i], NULL});
        finish(&run);
        cr_expect_eq(run.st.state, JOB_EXITED);
        cr_expect_eq(run.st.exit_code, want[i]);
        done(&run);
    }
}

Test(job, terminating_signal_is_reported)
{
    struct run run;
    start(&run, "/bin/sh", (const char *const[]){"-c", "kill -SEGV $$", NULL});
    finish(&run);
    cr_expect_eq(run.st.state, JOB_KILLED, "state %s", job_state_name(run.st.state));
    cr_expect_eq(run.st.signal, SIGSEGV);
    done(&run);
}

Test(job, big_output_arrives_whole)
{
    struct run run;
    /* 8 MiB through the pipe: several full pipe buffers. */
    start(&run, "/bin/sh",
          (const char *const[]){"-c", "head -c 8388608 /dev/zero | tr '\\0' x", NULL});
    finish(&run);
    cr_expect_eq(run.st.exit_code, 0);
    cr_expect_eq(outlog_get_bytes(run.log), 8388608);
    done(&run);
}

/* ---- failures to start */

Test(job, nonexistent_command)
{
    struct run run;
    start_ex(&run, runner, NULL, JOB_NET_NONE, NOBODY, "/bin/nope", NULL);
    cr_expect_eq(run.r, -ENOENT);
    cr_expect_str_eq(run.err, "'/bin/nope': no such file or directory");
    cr_expect_not(cgroup_exists(run.id), "cgroup left behind");
    outlog_free(run.log);
}

Test(job, non_executable_command)
{
    struct run run;
    start_ex(&run, runner, NULL, JOB_NET_NONE, NOBODY, "/etc/passwd", NULL);
    cr_expect_eq(run.r, -EACCES);
    cr_expect_str_eq(run.err, "'/etc/passwd': not executable");
    cr_expect_not(cgroup_exists(run.id));
    outlog_free(run.log);
}

/* The command's chdir fails with its step and errno; as the job user: after setuid. */
Test(job, bad_working_directory_is_reported)
{
    char dir[128];
    struct run run;

    start_in(&run, runner, NULL, JOB_NET_NONE, NOBODY, "/nonexistent-dir", "/bin/true", NULL);
    cr_expect_eq(run.r, -ENOENT);
    cr_expect_str_eq(run.err, "working directory '/nonexistent-dir': No such file or directory");
    cr_expect_not(cgroup_exists(run.id), "cgroup left behind");
    outlog_free(run.log);

    snprintf(dir, sizeof(dir), "%s/root-only", tmpdir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    start_in(&run, runner, NULL, JOB_NET_NONE, NOBODY, dir, "/bin/true", NULL);
    cr_expect_eq(run.r, -EACCES, "%s", run.err);
    outlog_free(run.log);
    /* The same directory is fine for a job user that owns it (and may pass through tmpdir). */
    cr_assert_eq(chown(dir, NOBODY, NOBODY), 0);
    cr_assert_eq(chmod(tmpdir, 0711), 0);
    start_in(&run, runner, NULL, JOB_NET_NONE, NOBODY, dir, "/bin/pwd", NULL);
    cr_assert_eq(run.r, 0, "%s", run.err);
    finish(&run);
    char *out = output(&run, OUTLOG_SELECT_ALL);
    char want[160];
    snprintf(want, sizeof(want), "%s\n", dir);
    cr_expect_str_eq(out, want);
    free(out);
    done(&run);
}

Test(job, relative_path_and_root_are_refused)
{
    struct run run;
    start_ex(&run, runner, NULL, JOB_NET_NONE, NOBODY, "ls", NULL);
    cr_expect_eq(run.r, -EINVAL);
    cr_expect_str_eq(run.err, "'ls': not an absolute path");
    outlog_free(run.log);
    start_ex(&run, runner, NULL, JOB_NET_NONE, 0, "/bin/true", NULL);
    cr_expect_eq(run.r, -EPERM);
    outlog_free(run.log);
}

#if TEST_PRESPAWN == 0 /* the pool refills in the background; test_job_pool.c has its own */
Test(job, failed_start_leaves_no_fd)
{
    struct run run;
    int before = 0, after = 0;
    /* Count our fds, fail a few starts, count again. */
    for (int fd = 0; fd < 1024; fd++)
        before += fcntl(fd, F_GETFD) >= 0;
    for (int i = 0; i < 5; i++) {
        start_ex(&run, runner, NULL, JOB_NET_NONE, NOBODY, "/bin/nope", NULL);
        cr_expect_eq(run.r, -ENOENT);
        outlog_free(run.log);
    }
    for (int fd = 0; fd < 1024; fd++)
        after += fcntl(fd, F_GETFD) >= 0;
    cr_expect_eq(before, after, "fds: %d before, %d after", before, after);
}
#endif

/* ---- the job's cgroup made ahead (the server makes it with the job's folder) */

Test(job, cgroup_made_ahead_is_the_jobs_with_its_limits)
{
    struct job_limits lim = {.pids = 48, .memory_bytes = 96 << 20, .cpu_millis = 700};
    struct run run;
    char buf[64];

    start_ahead(&run, &lim, "/bin/sh", (const char *const[]){"-c", "echo hi; sleep 30", NULL});
    cr_assert_eq(run.r, 0, "%s", run.err);
    /* The job runs in it, under the limits it asked for, written at its start. */
    pid_t pids[8];
    cr_expect_gt(cgroup_pids(run.id, pids, 8), 0, "the job is in its cgroup");
    cr_expect_str_eq(cgroup_file("pids", run.id, "pids.max", buf, sizeof(buf)), "48");
    cr_expect_str_eq(cgroup_file("memory", run.id, "memory.limit_in_bytes", buf, sizeof(buf)),
                     "100663296");
    cr_expect_str_eq(cgroup_file("cpu", run.id, "cpu.cfs_quota_us", buf, sizeof(buf)), "70000");
    cr_expect_eq(job_stop(run.j, SIGKILL, -1), 0);
    cr_expect_not(cgroup_exists(run.id), "the job's end removes it, as a cgroup made at start");
    done(&run);
}

Test(job, cgroup_made_ahead_without_limits_stays_unlimited)
{
    struct run run;
    char buf[64];

    start_ahead(&run, NULL, "/bin/sleep", (const char *const[]){"30", NULL});
    cr_assert_eq(run.r, 0, "%s", run.err);
    cr_expect_str_eq(cgroup_file("pids", run.id, "pids.max", buf, sizeof(buf)), "max");
    cr_expect_str_eq(cgroup_file("cpu", run.id, "cpu.cfs_quota_us", buf, sizeof(buf)), "-1");
    cr_expect_eq(job_stop(run.j, SIGKILL, -1), 0);
    cr_expect_not(cgroup_exists(run.id));
    done(&run);
}

Test(job, cgroup_made_ahead_is_removed_when_the_start_fails)
{
    struct run run;

    start_ahead(&run, NULL, "/bin/nope", NULL);
    cr_expect_eq(run.r, -ENOENT);
    cr_expect_not(cgroup_exists(run.id), "cgroup left behind");
    outlog_free(run.log);
    /* Refused before anything starts (a relative path): removed too. */
    start_ahead(&run, NULL, "nope", NULL);
    cr_expect_eq(run.r, -EINVAL);
    cr_expect_not(cgroup_exists(run.id), "cgroup left behind");
    outlog_free(run.log);
}

Test(job, cgroup_made_ahead_for_another_id_is_refused_and_removed)
{
    struct cg *cg = NULL;
    struct run run;
    char other[64];

    make_id(other, sizeof(other));
    cr_assert_eq(job_cgroup_reserve(runner, other, &cg), 0);
    memset(&run, 0, sizeof(run));
    make_id(run.id, sizeof(run.id));
    start_spec(&run, runner, NULL, JOB_NET_NONE, NOBODY, NULL, "/bin/true", NULL, cg);
    cr_expect_eq(run.r, -EINVAL);
    cr_expect_not(cgroup_exists(other));
    cr_expect_not(cgroup_exists(run.id));
    outlog_free(run.log);
}

Test(job, cgroup_made_ahead_and_unused_is_released)
{
    struct cg *cg = NULL, *dup = NULL;
    char id[64];

    make_id(id, sizeof(id));
    cr_assert_eq(job_cgroup_reserve(runner, id, &cg), 0);
    cr_expect(cgroup_exists(id));
    cr_expect_eq(job_cgroup_reserve(runner, id, &dup), -EEXIST, "never adopted twice");
    cr_expect_null(dup);
    job_cgroup_release(cg);
    cr_expect_not(cgroup_exists(id));
    job_cgroup_release(NULL);
}

/* A process that made cgroups ahead and died: the next runner's clean-up finds them by id. */
Test(job, cgroup_made_ahead_by_a_dead_runner_is_cleaned_up)
{
    struct cg *cg = NULL;
    char id[64];

    make_id(id, sizeof(id));
    cr_assert_eq(job_cgroup_reserve(runner, id, &cg), 0);
    cg_free(cg); /* the "crash": its fds go, the cgroup stays */
    cr_expect(cgroup_exists(id));
    cr_expect_eq(job_runner_cleanup_stale(runner, id), 0);
    cr_expect_not(cgroup_exists(id));
}

/* ---- isolation */

Test(job, ps_sees_only_the_job)
{
    struct run run;
    start(&run, "/bin/ps", (const char *const[]){"-e", "-o", "pid=,comm=", NULL});
    finish(&run);
    cr_expect_eq(run.st.exit_code, 0);
    char *out = output(&run, OUTLOG_SELECT_ALL);
    /* PID 1 the shim, PID 2 ps itself: nothing else. */
    int lines = 0;
    for (char *p = out; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, 2, "ps saw:\n%s", out);
    cr_expect(strstr(out, "    1 ") || strstr(out, "1 "), "%s", out);
    free(out);
    done(&run);
}

Test(job, proc_is_the_jobs_own)
{
    struct run run;
    start(&run, "/bin/sh", (const char *const[]){"-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '", NULL});
    finish(&run);
    char *out = output(&run, OUTLOG_SELECT_ALL);
    cr_expect(strncmp(out, "2\n", 2) == 0, "%s", out);
    cr_expect(strstr(out, "shim"), "/proc/1 is not the shim: %s", out);
    free(out);
    done(&run);
}

Test(job, network_has_only_lo_and_it_is_up)
{
    struct run run;
    start(&run, "/bin/sh", (const char *const[]){"-c", "ls /sys/class/net; ip -o link", NULL});
    finish(&run);
    char *out = output(&run, OUTLOG_SELECT_ALL);
    cr_expect(strncmp(out, "lo\n1: lo:", 9) == 0, "%s", out);
    cr_expect(strstr(out, "UP"), "lo not up: %s", out);
    cr_expect_null(strstr(out, "\n2:"), "more than lo: %s", out);
    free(out);
    done(&run);
}

Test(job, host_network_sees_the_hosts_interfaces)
{
    struct run run;
    start_ex(&run, runner, NULL, JOB_NET_HOST, NOBODY, "/bin/sh",
             (const char *const[]){"-c", "ip -o link | wc -l", NULL});
    cr_assert_eq(run.r, 0, "%s", run.err);
    finish(&run);
    char *out = output(&run, OUTLOG_SELECT_ALL);
    FILE *p = popen("ip -o link | wc -l", "r");
    char host[32] = "";
    cr_assert(fgets(host, sizeof(host), p));
    pclose(p);
    cr_expect_str_eq(out, host);
    free(out);
    done(&run);
}

Test(job, hostname_is_the_first_block_of_the_id)
{
    struct run run;
    start(&run, "/bin/hostname", NULL);
    finish(&run);
    char *out = output(&run, OUTLOG_SELECT_ALL), want[80];
    snprintf(want, sizeof(want), "%.*s\n", (int)strcspn(run.id, "-"), run.id);
    cr_expect_str_eq(out, want);
    free(out);
    done(&run);
}

Test(job, runs_as_nobody_without_privileges)
{
    struct run run;
    start(&run, "/bin/sh",
          (const char *const[]){"-c", "id -u; id -g; id -G; pwd; "
                                      "grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs|Seccomp):'"
                                      " /proc/self/status; env",
                                NULL});
    finish(&run);
    char *out = output(&run, OUTLOG_SELECT_ALL);
    cr_expect(strncmp(out, "65534\n65534\n65534\n/\n", 20) == 0, "%s", out);
    cr_expect(strstr(out, "CapEff:\t0000000000000000"), "%s", out);
    cr_expect(strstr(out, "CapPrm:\t0000000000000000"), "%s", out);
    cr_expect(strstr(out, "CapBnd:\t0000000000000000"), "%s", out);
    cr_expect(strstr(out, "NoNewPrivs:\t1"), "%s", out);
    cr_expect(strstr(out, "Seccomp:\t2"), "%s", out);
    cr_expect(strstr(out, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"),
              "%s", out);
    cr_expect(strstr(out, "HOME=/\n"), "%s", out);
    free(out);
    done(&run);
}

/* What the command starts with: no blocked, ignored or caught signal, its own process group,
 * only fds 0-2 (ls's own directory fd is the 3 it lists). */
Test(job, command_starts_with_clean_signals_own_group_and_three_fds)
{
    struct run run;
    start(&run, "/bin/cat", (const char *const[]){"/proc/self/status", "/proc/self/stat", NULL});
    finish(&run);
    char *out = output(&run, OUTLOG_SELECT_ALL);
    cr_expect(strstr(out, "SigBlk:\t0000000000000000\n"), "%s", out);
    cr_expect(strstr(out, "SigIgn:\t0000000000000000\n"), "%s", out);
    cr_expect(strstr(out, "SigCgt:\t0000000000000000\n"), "%s", out);
    /* /proc/self/stat: pid (comm) state ppid pgrp ... */
    int pid = 0, ppid = 0, pgrp = 0;
    const char *stat = strstr(out, "(cat) ");
    cr_assert(stat && stat - out > 2, "%s", out);
    while (stat > out && stat[-1] != '\n')
        stat--;
    cr_assert_eq(sscanf(stat, "%d (cat) %*c %d %d", &pid, &ppid, &pgrp), 3, "%s", stat);
    cr_expect_eq(ppid, 1, "the shim (PID 1) is the parent: %s", stat);
    cr_expect_eq(pgrp, pid, "own process group: %s", stat);
    free(out);
    done(&run);

    start(&run, "/bin/ls", (const char *const[]){"/proc/self/fd", NULL});
    finish(&run);
    out = output(&run, OUTLOG_SELECT_ALL);
    cr_expect_str_eq(out, "0\n1\n2\n3\n");
    free(out);
    done(&run);
}

Test(job, mount_and_unshare_fail_with_eperm_even_for_root)
{
    struct job_runner *r = new_runner(true);
    struct run run;
    /* As root (allowed here) so that the syscalls are reached: caps are gone and seccomp says
     * EPERM. python3 reports the raw errno. */
    start_ex(&run, r, NULL, JOB_NET_NONE, 0, "/usr/bin/python3",
             (const char *const[]){
                 "-c",
                 "import ctypes, os\n"
                 "libc = ctypes.CDLL(None, use_errno=True)\n"
                 "print(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())\n"
                 "print(libc.unshare(0x20000), ctypes.get_errno())\n"
                 "print(libc.unshare(0x10000000), ctypes.get_errno())\n"
                 "print(os.getuid())\n",
                 NULL});
    cr_assert_eq(run.r, 0, "%s", run.err);
    finish(&run);
    char *out = output(&run, OUTLOG_SELECT_ALL);
    cr_expect_str_eq(out, "-1 1\n-1 1\n-1 1\n0\n");
    free(out);
    done(&run);
    job_runner_free(r);
}

/* ---- limits */

Test(job, fork_bomb_stops_at_pids_max)
{
    struct job_limits lim = {.pids = 32};
    struct run run;
    start_ex(&run, runner, &lim, JOB_NET_NONE, NOBODY, "/bin/sh",
             /* The bomb runs in a background subshell: the command itself (sleep) forks once,
              * before the bomb exists; a fork failing in it would end the job with code 2. */
             (const char *const[]){"-c", "(b() { b | b & }; b) & exec sleep 5", NULL});
    cr_assert_eq(run.r, 0, "%s", run.err);
    usleep(500 * 1000);
    pid_t pids[64];
    int n = cgroup_pids(run.id, pids, 64);
    cr_expect(n > 0 && n <= 32, "%d processes in the job", n);
    /* The host is fine: we can still fork. */
    pid_t p = fork();
    cr_assert(p >= 0);
    if (p == 0)
        _exit(0);
    waitpid(p, NULL, 0);
    cr_expect_eq(job_stop(run.j, SIGKILL, -1), 0);
    job_get_status(run.j, &run.st);
    cr_expect_eq(run.st.state, JOB_KILLED);
    cr_expect_eq(run.st.signal, SIGKILL);
    cr_expect_not(cgroup_exists(run.id));
    done(&run);
}

Test(job, memory_hog_is_oom_killed_and_reported)
{
    struct job_limits lim = {.memory_bytes = 32 << 20};
    struct run run;
    start_ex(&run, runner, &lim, JOB_NET_NONE, NOBODY, "/bin/dd",
             (const char *const[]){"if=/dev/zero", "of=/dev/null", "bs=256M", "count=1", NULL});
    cr_assert_eq(run.r, 0, "%s", run.err);
    finish(&run);
    cr_expect_eq(run.st.state, JOB_KILLED, "state %s code %d", job_state_name(run.st.state),
                 run.st.exit_code);
    cr_expect_eq(run.st.signal, SIGKILL);
    cr_expect(run.st.oom_killed, "oom_killed not set");
    cr_expect(run.st.memory_peak_bytes >= 16 << 20, "peak %llu",
              (unsigned long long)run.st.memory_peak_bytes);
    done(&run);
}

Test(job, cpu_time_is_reported)
{
    struct run run;
    start(&run, "/bin/sh", (const char *const[]){"-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done", NULL});
    finish(&run);
    cr_expect_eq(run.st.exit_code, 0);
    cr_expect(run.st.cpu_usec > 10000, "cpu %llu us", (unsigned long long)run.st.cpu_usec);
    done(&run);
}

/* ---- stop */

Test(job, stop_with_sigterm)
{
    struct run run;
    start(&run, "/bin/sleep", (const char *const[]){"100", NULL});
    cr_expect(job_is_running(run.j));
    job_get_status(run.j, &run.st);
    cr_expect_eq(run.st.state, JOB_RUNNING);
    cr_expect(run.st.pid > 0);
    cr_expect_eq(job_stop(run.j, 0, 5000), 0);
    job_get_status(run.j, &run.st);
    cr_expect_eq(run.st.state, JOB_KILLED);
    cr_expect_eq(run.st.signal, SIGTERM);
    cr_expect_not(job_is_running(run.j));
    cr_expect_not(cgroup_exists(run.id));
    done(&run);
}

Test(job, sigterm_ignoring_command_is_killed_after_grace)
{
    struct run run;
    start(&run, "/bin/sh", (const char *const[]){"-c", "trap '' TERM; while :; do sleep 0.05; done", NULL});
    usleep(100 * 1000);
    int64_t t0 = now_ms();
    cr_expect_eq(job_stop(run.j, SIGTERM, 300), 0);
    int64_t took = now_ms() - t0;
    job_get_status(run.j, &run.st);
    cr_expect_eq(run.st.state, JOB_KILLED);
    cr_expect_eq(run.st.signal, SIGKILL);
    cr_expect(took >= 290 && took < 3000, "stop took %lld ms", (long long)took);
    cr_expect_not(cgroup_exists(run.id));
    done(&run);
}

Test(job, setsid_daemon_leaves_nothing_after_stop)
{
    struct run run;
    start(&run, "/bin/sh",
          (const char *const[]){"-c", "(setsid sh -c 'trap \"\" TERM HUP; exec sleep 1000' &); "
                                      "sleep 1000",
                                NULL});
    pid_t pids[16];
    int n = 0;
    for (int i = 0; i < 100 && n < 3; i++) {
        usleep(20 * 1000);
        n = cgroup_pids(run.id, pids, 16);
    }
    cr_assert(n >= 3, "expected shim, sh, sleep, daemon; got %d", n);
    cr_expect_eq(job_stop(run.j, SIGTERM, 2000), 0);
    cr_expect_not(cgroup_exists(run.id));
    for (int i = 0; i < n; i++)
        cr_expect(kill(pids[i], 0) < 0 && errno == ESRCH, "pid %d survived", pids[i]);
    done(&run);
}

static void on_stopped(struct job *j, void *ud)
{
    (void)j;
    atomic_fetch_add((atomic_int *)ud, 1);
}

Test(job, concurrent_stops_are_safe)
{
    struct run run;
    atomic_int calls = 0;
    start(&run, "/bin/sh", (const char *const[]){"-c", "trap '' TERM; sleep 1000", NULL});
    usleep(100 * 1000); /* let sh run its trap first */
    for (int i = 0; i < 10; i++)
        cr_expect_eq(job_stop_async(run.j, SIGTERM, 10000 - i * 1000, on_stopped, &calls), 0);
    /* The earliest deadline wins. */
    cr_expect_eq(job_stop_async(run.j, SIGTERM, 100, on_stopped, &calls), 0);
    finish(&run);
    for (int i = 0; i < 100 && atomic_load(&calls) < 11; i++)
        usleep(10 * 1000);
    cr_expect_eq(atomic_load(&calls), 11);
    cr_expect_eq(run.st.state, JOB_KILLED);
    cr_expect_eq(run.st.signal, SIGKILL);
    /* After the end: runs at once, on this thread. */
    cr_expect_eq(job_stop_async(run.j, SIGTERM, 0, on_stopped, &calls), 0);
    cr_expect_eq(atomic_load(&calls), 12);
    done(&run);
}

/* ---- the server dies */

/* The stand-in server: this test binary exec'd afresh with argv {STANDIN_ARGV0, fd, tmpdir}.
 * It starts a job whose shell leaves a setsid'd grandchild behind, writes the job's id to fd
 * and waits to be killed. A fresh exec, not a fork of the test process: that one is
 * multi-threaded (the runner's event and pool threads), and a forked child that starts
 * threads of its own can hang on a lock another thread held at the fork (it did, once, under
 * ASan) and is refused by TSan. glibc passes main's arguments to constructors. */
#define STANDIN_ARGV0 "runjob-test-standin-server"

__attribute__((constructor)) static void run_standin_server(int argc, char **argv)
{
    struct job_runner *r;
    struct run run;

    if (argc != 3 || strcmp(argv[0], STANDIN_ARGV0) != 0)
        return;
    snprintf(tmpdir, sizeof(tmpdir), "%s", argv[2]);
    r = new_runner(false);
    start_ex(&run, r, NULL, JOB_NET_NONE, NOBODY, "/bin/sh",
             (const char *const[]){"-c", "(setsid sleep 1000 &); sleep 1000", NULL});
    if (run.r < 0)
        _exit(1);
    (void)!write(atoi(argv[1]), run.id, sizeof(run.id));
    for (;;)
        pause();
}

Test(job, kill_9_of_the_server_kills_every_job_process)
{
    int pfd[2];
    char fdarg[16];
    cr_assert_eq(pipe(pfd), 0);
    snprintf(fdarg, sizeof(fdarg), "%d", pfd[1]);
    /* Everything the child needs is ready before the fork: it only execs. */
    char *const argv[] = {STANDIN_ARGV0, fdarg, tmpdir, NULL};
    pid_t server = fork();
    cr_assert(server >= 0);
    if (server == 0) {
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(pfd[1]);
    char id[64] = "";
    cr_assert_eq(read(pfd[0], id, sizeof(id)), (ssize_t)sizeof(id), "server child failed");
    pid_t pids[16];
    int n = 0;
    for (int i = 0; i < 100 && n < 4; i++) {
        usleep(20 * 1000);
        n = cgroup_pids(id, pids, 16);
    }
    cr_assert(n >= 4, "expected 4 job processes, got %d", n);
    cr_assert_eq(kill(server, SIGKILL), 0);
    waitpid(server, NULL, 0);
    int alive = n;
    for (int i = 0; i < 200 && alive; i++) {
        usleep(10 * 1000);
        alive = 0;
        for (int k = 0; k < n; k++)
            alive += kill(pids[k], 0) == 0;
    }
    cr_expect_eq(alive, 0, "%d job processes outlived the server", alive);
    /* What a restarted server does with it. */
    cr_expect_eq(job_runner_cleanup_stale(runner, id), 0);
    cr_expect_not(cgroup_exists(id));
}

/* ---- concurrency */

#define N_THREADS 4
#define N_JOBS 50

struct batch {
    int first, count;
    struct run runs[N_JOBS];
};

static void *starter(void *arg)
{
    struct batch *b = arg;
    for (int i = b->first; i < b->first + b->count; i++) {
        char msg[16];
        snprintf(msg, sizeof(msg), "job%d", i);
        start_ex(&b->runs[i], runner, NULL, JOB_NET_NONE, NOBODY, "/bin/sh",
                 (const char *const[]){"-c", "sleep 0.2; echo $0", msg, NULL});
    }
    return NULL;
}

Test(job, fifty_jobs_from_four_threads)
{
    pthread_t t[N_THREADS];
    int per = (N_JOBS + N_THREADS - 1) / N_THREADS;

    /* Each thread fills its slice; threads exit before their jobs end (the jobs must not die
     * with them: the shim's pdeathsig follows the runner's thread, not the caller's). */
    static struct batch slices[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        slices[i].first = i * per;
        slices[i].count = i * per + per > N_JOBS ? N_JOBS - i * per : per;
        cr_assert_eq(pthread_create(&t[i], NULL, starter, &slices[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < N_THREADS; i++)
        for (int k = slices[i].first; k < slices[i].first + slices[i].count; k++) {
            struct run *run = &slices[i].runs[k];
            cr_assert_eq(run->r, 0, "job %d: %s", k, run->err);
            finish(run);
            cr_expect_eq(run->st.state, JOB_EXITED, "job %d: %s sig %d", k,
                         job_state_name(run->st.state), run->st.signal);
            char *out = output(run, OUTLOG_SELECT_ALL), want[16];
            snprintf(want, sizeof(want), "job%d\n", k);
            cr_expect_str_eq(out, want);
            free(out);
            cr_expect_not(cgroup_exists(run->id));
            done(run);
        }
}

Test(job, runner_free_kills_running_jobs)
{
    struct job_runner *r = new_runner(false);
    struct run run;
    start_ex(&run, r, NULL, JOB_NET_NONE, NOBODY, "/bin/sleep", (const char *const[]){"1000", NULL});
    cr_assert_eq(run.r, 0, "%s", run.err);
    job_runner_free(r);
    job_get_status(run.j, &run.st);
    cr_expect_eq(run.st.state, JOB_KILLED);
    cr_expect_not(cgroup_exists(run.id));
    done(&run);
}

Test(job, missing_shim_binary_is_a_clear_start_failure)
{
    struct job_runner_config cfg = {.shim_exe = "/nonexistent/runjob"};
    struct job_runner *r = NULL;
    struct run run;
    cr_assert_eq(job_runner_new(&cfg, &r), 0);
    start_ex(&run, r, NULL, JOB_NET_NONE, NOBODY, "/bin/true", NULL);
    cr_expect_eq(run.r, -ENOENT);
    cr_expect_str_eq(run.err, "starting the job shim: No such file or directory");
    cr_expect_not(cgroup_exists(run.id));
    outlog_free(run.log);
    job_runner_free(r);
}
