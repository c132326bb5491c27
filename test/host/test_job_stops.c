/* core/job on this host, as root (test_job.h): starts that fail, jobs stopped, killed with their
 * runner or orphaned by the server's death. test_job_pool_stops.c runs these again on pooled
 * shims. */
#include "test_job.h"

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
    start(&run, "/bin/sh",
          (const char *const[]){"-c", "trap '' TERM; while :; do sleep 0.05; done", NULL});
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
          (const char *const[]){"-c",
                                "(setsid sh -c 'trap \"\" TERM HUP; exec sleep 1000' &); "
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

Test(job, runner_free_kills_running_jobs)
{
    struct job_runner *r = new_runner(false);
    struct run run;
    start_ex(&run, r, NULL, JOB_NET_NONE, NOBODY, "/bin/sleep",
             (const char *const[]){"1000", NULL});
    cr_assert_eq(run.r, 0, "%s", run.err);
    job_runner_free(r);
    job_get_status(run.j, &run.st);
    cr_expect_eq(run.st.state, JOB_KILLED);
    cr_expect_not(cgroup_exists(run.id));
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
