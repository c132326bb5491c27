/* core/job on this host, as root (test_job.h): the limits a job runs under, and its cgroup made
 * ahead. test_job_pool_limits.c runs these again on pooled shims. */
#include "test_job.h"

/* ---- limits */

Test(job, fork_bomb_stops_at_pids_max)
{
    struct limits lim = {.pids = 32};
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
    need_memory_limits_without_swap();

    struct limits lim = {.memory_bytes = 32 << 20};
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
    start(&run, "/bin/sh",
          (const char *const[]){"-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done", NULL});
    finish(&run);
    cr_expect_eq(run.st.exit_code, 0);
    cr_expect(run.st.cpu_usec > 10000, "cpu %llu us", (unsigned long long)run.st.cpu_usec);
    done(&run);
}

/* ---- the job's cgroup made ahead (the server makes it with the job's folder) */

Test(job, cgroup_made_ahead_is_the_jobs_with_its_limits)
{
    need_cgroup_v1();

    struct limits lim = {.pids = 48, .memory_bytes = 96 << 20, .cpu_millis = 700};
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

/* Made ahead with the server's defaults, then started with other limits: some lower, some
 * higher, one lifted (0), one kept. The job's cgroup has its own, as if made at its start. */
Test(job, cgroup_made_ahead_with_defaults_gets_the_limits_its_start_asked_for)
{
    need_cgroup_v1();

    struct limits dflt = {.pids = 1024,
                          .memory_bytes = 512000000,
                          .cpu_millis = 1000,
                          .io_riops = 400000,
                          .io_wiops = 400000};
    struct limits lim = {
        .pids = 2048, .memory_bytes = 96 << 20, .cpu_millis = 1000, .io_wiops = 400000};
    struct run run, same;
    char buf[64], want[64];

    start_ahead_with(&run, &dflt, &lim, "/bin/sleep", (const char *const[]){"30", NULL});
    cr_assert_eq(run.r, 0, "%s", run.err);
    cr_expect_str_eq(cgroup_file("pids", run.id, "pids.max", buf, sizeof(buf)), "2048");
    cr_expect_str_eq(cgroup_file("memory", run.id, "memory.limit_in_bytes", buf, sizeof(buf)),
                     "100663296");
    cr_expect_str_eq(cgroup_file("cpu", run.id, "cpu.cfs_quota_us", buf, sizeof(buf)), "100000");
    cr_expect_str_eq(
        cgroup_file("blkio", run.id, "blkio.throttle.read_iops_device", buf, sizeof(buf)), "",
        "the read limit the start lifted is still there");
    cgroup_file("blkio", run.id, "blkio.throttle.write_iops_device", buf, sizeof(buf));
    cr_expect(strstr(buf, " 400000") != NULL, "write iops '%s'", buf);

    /* Started with exactly the defaults: nothing to write, and they hold. */
    start_ahead_with(&same, &dflt, &dflt, "/bin/sleep", (const char *const[]){"30", NULL});
    cr_assert_eq(same.r, 0, "%s", same.err);
    cr_expect_str_eq(cgroup_file("pids", same.id, "pids.max", buf, sizeof(buf)), "1024");
    snprintf(want, sizeof(want), "%d", 512000000 / 4096 * 4096); /* the kernel rounds to pages */
    cr_expect_str_eq(cgroup_file("memory", same.id, "memory.limit_in_bytes", buf, sizeof(buf)),
                     want);
    cr_expect_eq(job_stop(run.j, SIGKILL, -1), 0);
    cr_expect_eq(job_stop(same.j, SIGKILL, -1), 0);
    done(&run);
    done(&same);
}

Test(job, cgroup_made_ahead_without_limits_stays_unlimited)
{
    need_cgroup_v1();

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
    struct job_spare *cg = NULL;
    struct run run;
    char other[64];

    make_id(other, sizeof(other));
    cr_assert_eq(job_spare_new(runner, AHEAD(other), &cg), 0);
    memset(&run, 0, sizeof(run));
    make_id(run.id, sizeof(run.id));
    start_spec(&run, runner, NULL, JOB_NET_NONE, NOBODY, NULL, "/bin/true", NULL, cg, NULL);
    cr_expect_eq(run.r, -EINVAL);
    cr_expect_not(cgroup_exists(other));
    cr_expect_not(cgroup_exists(run.id));
    outlog_free(run.log);
}

Test(job, cgroup_made_ahead_and_unused_is_released)
{
    struct job_spare *cg = NULL, *dup = NULL;
    char id[64];

    make_id(id, sizeof(id));
    cr_assert_eq(job_spare_new(runner, AHEAD(id), &cg), 0);
    cr_expect(cgroup_exists(id));
    cr_expect_eq(job_spare_new(runner, AHEAD(id), &dup), -EEXIST, "never adopted twice");
    cr_expect_null(dup);
    job_spare_free(cg);
    cr_expect_not(cgroup_exists(id));
    job_spare_free(NULL);
}

/* Whether pid exists and is not a zombie. */
static bool still_runs(pid_t pid)
{
    char path[64], buf[256];
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return false;
    bool alive = fgets(buf, sizeof(buf), f) && strrchr(buf, ')') && strrchr(buf, ')')[2] != 'Z';
    fclose(f);
    return alive;
}

/* A process that made a job's cgroup ahead and died: the next runner's clean-up finds it by id,
 * and empties it too (a spare's shim, or anything else, may be left in it). The child
 * makes it as job_spare_new does (cg_create, no limits), puts a process of its own in it
 * and dies without a word. No runner in the child: its threads would start after a
 * multi-threaded fork, which ThreadSanitizer refuses, and this test runs under TSan too. */
Test(job, cgroup_made_ahead_by_a_dead_runner_is_cleaned_up)
{
    int fds[2], st;
    pid_t left = 0;
    char id[64];

    make_id(id, sizeof(id));
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct cg_manager *m = NULL;
        struct cg *cg = NULL;
        char why[256];

        if (cg_manager_new(&(struct cg_config){.mode = CG_PROBE}, &m, why, sizeof(why)) < 0 ||
            cg_create(m, id, NULL, &cg) < 0)
            _exit(1);
        pid_t k = fork();
        if (k == 0) {
            for (;;)
                pause();
        }
        if (k < 0 || cg_attach(cg, k) < 0 || write(fds[1], &k, sizeof(k)) != sizeof(k))
            _exit(1);
        _exit(0); /* the "crash": nothing freed, nothing removed */
    }
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child could not make the cgroup");
    cr_assert_eq(read(fds[0], &left, sizeof(left)), (ssize_t)sizeof(left));
    close(fds[0]);
    close(fds[1]);
    cr_expect(cgroup_exists(id));
    cr_expect_eq(job_runner_cleanup_stale(runner, id), 0);
    cr_expect_not(cgroup_exists(id));
    for (int i = 0; i < 100 && still_runs(left); i++)
        usleep(10 * 1000); /* killed; reaped whenever whoever adopted it gets to it */
    cr_expect(!still_runs(left), "process %d left in the cgroup still runs", (int)left);
}
