/* core/job on this host, as root (test_job.h): what a job writes and how it ends, what it sees
 * of the host, many jobs at once. test_job_pool.c runs these again on pooled shims. */
#include "test_job.h"

#include <stdint.h>
#include <semaphore.h>
#include <sys/syscall.h>

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

/* A spec far larger than the room the shim maps for one ahead (about 24 KiB): the command's
 * process maps its own for it. */
Test(job, big_spec_reaches_the_command)
{
    enum { N = 3000 };
    static char arg[N][64];
    static const char *args[N + 4];
    struct run run;

    args[0] = "-c";
    args[1] = "echo $# \"$1\" \"${3000}\"";
    args[2] = "sh";
    for (int i = 0; i < N; i++) {
        (void)snprintf(arg[i], sizeof(arg[i]), "argument-%04d-padded-to-forty-bytes-.....", i);
        args[3 + i] = arg[i];
    }
    args[N + 3] = NULL;
    start(&run, "/bin/sh", args);
    finish(&run);
    cr_expect_eq(run.st.exit_code, 0);
    char *out = output(&run, OUTLOG_SELECT_ALL);
    cr_expect_str_eq(out, "3000 argument-0000-padded-to-forty-bytes-..... "
                          "argument-2999-padded-to-forty-bytes-.....\n");
    free(out);
    done(&run);
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
    start(&run, "/bin/sh",
          (const char *const[]){"-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '", NULL});
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

/* Lines of out equal to line. */
static int count_lines(const char *out, const char *line)
{
    size_t n = strlen(line);
    int count = 0;

    for (const char *p = out; (p = strstr(p, line)); p += n)
        if ((p == out || p[-1] == '\n') && p[n] == '\n')
            count++;
    return count;
}

/* The host's mounts that the job's own cover are not in its namespace: neither copied in (and
 * torn down) for every job, nor listed to it. */
static void expect_no_covered_host_mount(enum job_network net)
{
    struct run run;
    start_ex(&run, runner, NULL, net, NOBODY, "/bin/sh",
             (const char *const[]){"-c", "cut -d' ' -f5 /proc/self/mountinfo", NULL});
    cr_assert_eq(run.r, 0, "%s", run.err);
    finish(&run);
    char *out = output(&run, OUTLOG_SELECT_ALL);
    cr_expect_eq(count_lines(out, "/dev/pts"), 1, "%s", out);
    cr_expect_eq(count_lines(out, "/dev/shm"), 1, "%s", out);
    cr_expect_eq(count_lines(out, "/tmp"), 1, "%s", out);
    if (net != JOB_NET_HOST) {
        cr_expect_eq(count_lines(out, "/sys"), 1, "%s", out);
        cr_expect_null(strstr(out, "\n/sys/"), "a host mount below /sys: %s", out);
    }
    free(out);
    done(&run);
}

Test(job, the_mount_table_holds_no_covered_host_mount)
{
    expect_no_covered_host_mount(JOB_NET_NONE);
    expect_no_covered_host_mount(JOB_NET_HOST);
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
          (const char *const[]){"-c",
                                "id -u; id -g; id -G; pwd; "
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
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        uint64_t mask;
    } ign = {.handler = SIG_IGN};
    struct run run;
    /* What a server started from a shell's background job (INT, QUIT) or a careless parent
     * (PIPE, and 32 and 33, which glibc's signal() cannot even reset) would pass on: SIG_IGN
     * survives exec, the job must not inherit it. Raw rt_sigaction, as glibc refuses 32 and 33. */
    for (long sig = 1; sig <= 33; sig++)
        if (sig == SIGINT || sig == SIGQUIT || sig == SIGPIPE || sig >= 32)
            cr_assert_eq(syscall(SYS_rt_sigaction, sig, &ign, NULL, sizeof(ign.mask)), 0);
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

/* ---- concurrency */

#define N_THREADS 4
#define N_JOBS    50

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

/* ---- stdin: a pipe or a terminal */

/* A pipe for the job's stdin (start_stdin). */
#define PIPE (&(struct stdin_spec){.input = JOB_INPUT_PIPE})

/* Writes all of buf into the job's stdin, polling while it is full. */
static void write_all(struct job *j, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = job_input_write(j, buf, len);
        if (n == -EAGAIN) {
            usleep(1000);
            continue;
        }
        cr_assert_gt(n, 0, "job_input_write: %s", strerror((int)-n));
        buf += n;
        len -= (size_t)n;
    }
}

Test(job, stdin_pipe_reaches_the_command_and_eof_ends_it)
{
    struct run run;

    start_stdin(&run, PIPE, "/bin/sh",
                (const char *const[]){"-c", "test -t 0 || echo not-a-tty; cat", NULL});
    cr_expect_eq(job_input_kind(run.j), JOB_INPUT_PIPE);
    cr_assert_eq(job_input_claim(run.j), 0);
    write_all(run.j, "hello\n", 6);
    job_input_close(run.j);
    finish(&run);
    cr_expect_eq(run.st.state, JOB_EXITED);
    char *out = output(&run, OUTLOG_SELECT_STDOUT);
    cr_expect_str_eq(out, "not-a-tty\nhello\n");
    free(out);
    cr_expect_eq(job_input_write(run.j, "x", 1), -EPIPE, "closed: no more input");
    cr_expect_eq(job_input_resize(run.j, 10, 10), -ENOTTY, "a pipe has no size");
    job_input_release(run.j);
    done(&run);
}

Test(job, stdin_has_one_writer_at_a_time)
{
    struct run run;

    start_stdin(&run, PIPE, "/bin/cat", (const char *const[]){NULL});
    cr_expect_eq(job_input_claim(run.j), 0);
    cr_expect_eq(job_input_claim(run.j), -EBUSY);
    job_input_release(run.j);
    cr_expect_eq(job_input_claim(run.j), 0, "free again once released");
    job_input_close(run.j);
    cr_expect_eq(job_input_claim(run.j), -EPIPE, "closed: nobody may write");
    job_input_release(run.j);
    finish(&run);
    done(&run);

    start(&run, "/bin/true", NULL);
    cr_expect_eq(job_input_claim(run.j), -ENOTTY, "a job started without input");
    cr_expect_eq(job_input_write(run.j, "x", 1), -ENOTTY);
    finish(&run);
    done(&run);
}

Test(job, terminal_is_the_commands_stdio_and_controlling_terminal)
{
    struct run run;

    start_stdin(&run, &(struct stdin_spec){.input = JOB_INPUT_TTY, .rows = 30, .cols = 100},
                "/bin/sh",
                (const char *const[]){"-c",
                                      "tty; stty size; test -t 1 && test -t 2 && echo all-three; "
                                      "read line; echo \"read $line\"; stty size",
                                      NULL});
    cr_expect_eq(job_input_kind(run.j), JOB_INPUT_TTY);
    cr_assert_eq(job_input_claim(run.j), 0);
    cr_expect_eq(job_input_resize(run.j, 0, 5), -EINVAL);
    /* Echo is on: what is written comes back as output too. The resize lands before the
     * line, so the second stty sees it. */
    cr_assert_eq(job_input_resize(run.j, 40, 120), 0);
    write_all(run.j, "typed\r", 6);
    finish(&run);
    cr_expect_eq(run.st.state, JOB_EXITED, "%s", job_state_name(run.st.state));
    char *out = output(&run, OUTLOG_SELECT_STDOUT), *err = output(&run, OUTLOG_SELECT_STDERR);
    cr_expect(strstr(out, "/dev/pts/"), "%s", out);
    cr_expect(strstr(out, "all-three"), "%s", out);
    cr_expect(strstr(out, "read typed"), "%s", out);
    cr_expect(strstr(out, "40 120"), "the resize: %s", out);
    cr_expect_str_eq(err, "", "a terminal's output is all stdout");
    free(out);
    free(err);
    job_input_release(run.j);
    done(&run);
}

struct waited {
    sem_t sem;
    atomic_int calls;
};

static void on_writable(void *userdata)
{
    struct waited *w = userdata;
    atomic_fetch_add(&w->calls, 1);
    sem_post(&w->sem);
}

static bool sem_wait_ms(sem_t *s, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    while (sem_timedwait(s, &ts) < 0)
        if (errno != EINTR)
            return false;
    return true;
}

/* Fills the job's stdin until it takes no more. */
static void fill(struct job *j)
{
    static char block[65536];
    ssize_t n;

    while ((n = job_input_write(j, block, sizeof(block))) > 0)
        ;
    cr_assert_eq(n, -EAGAIN, "full, not %s", strerror((int)-n));
}

Test(job, input_wait_fires_when_the_job_reads_and_when_it_ends)
{
    struct waited w = {0};
    struct run run;

    sem_init(&w.sem, 0, 0);
    /* Reads 8 KiB once after a while: the wait fires then, and never again. */
    start_stdin(
        &run, PIPE, "/bin/sh",
        (const char *const[]){
            "-c", "sleep 0.3; dd bs=8192 count=1 of=/dev/null 2>/dev/null; sleep 30", NULL});
    fill(run.j);
    cr_assert_eq(job_input_wait(run.j, on_writable, &w), 0);
    cr_expect_eq(job_input_wait(run.j, on_writable, &w), -EBUSY, "one wait at a time");
    cr_expect(sem_wait_ms(&w.sem, 10000), "no wake-up when the job read");
    cr_expect_gt(job_input_write(run.j, "x", 1), 0, "it takes more now");
    /* Never reads again: the wait fires at the job's end, and the stdin is gone. */
    fill(run.j);
    cr_assert_eq(job_input_wait(run.j, on_writable, &w), 0);
    cr_expect_not(sem_wait_ms(&w.sem, 200), "a wake-up while the job reads nothing");
    cr_assert_eq(job_stop(run.j, SIGKILL, -1), 0);
    cr_expect(sem_wait_ms(&w.sem, 10000), "no wake-up at the job's end");
    cr_expect_eq(job_input_write(run.j, "x", 1), -EPIPE);
    cr_expect_eq(job_input_wait(run.j, on_writable, &w), -EPIPE);
    finish(&run);
    done(&run);

    /* A wait disarmed never fires. */
    start_stdin(&run, PIPE, "/bin/sleep", (const char *const[]){"30", NULL});
    fill(run.j);
    cr_assert_eq(job_input_wait(run.j, on_writable, &w), 0);
    cr_expect(job_input_cancel_wait(run.j), "disarmed before it ran");
    cr_expect_not(job_input_cancel_wait(run.j), "nothing left to disarm");
    cr_assert_eq(job_stop(run.j, SIGKILL, -1), 0);
    finish(&run);
    cr_expect_eq(atomic_load(&w.calls), 2, "exactly the two wake-ups above");
    done(&run);
    sem_destroy(&w.sem);
}
