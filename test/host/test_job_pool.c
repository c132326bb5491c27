/* core/job with shims started ahead of time (job_runner_config.prespawn_shims): every test of
 * test_job.c (output, isolation, concurrency) again, on pooled shims, plus what only the pool
 * has, and when a job's end is published (the server's default runner). test_job_pool_limits.c
 * and test_job_pool_stops.c run the other test_job_*.c on pooled shims. */
#define TEST_PRESPAWN 2
#include "test_job.c"

#include <dirent.h>
#include <poll.h>
#include <sys/pidfd.h>
#include <sys/socket.h>

#include "core/shimproto.h"

static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

/* Our children (every thread's: the event thread clones the shims) into pids; their count. */
static int children_all(pid_t *pids, int max)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    int n = 0;

    cr_assert(d);
    while ((de = readdir(d))) {
        char path[300];
        FILE *f;
        int pid;
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/children", de->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        while (fscanf(f, "%d", &pid) == 1)
            if (n < max)
                pids[n++] = pid;
        fclose(f);
    }
    closedir(d);
    return n;
}

/* Whether pid's pid namespace is ours (-1: it has none, a zombie). */
static int in_our_pid_ns(pid_t pid)
{
    char path[64], mine[64] = "", its[64] = "";

    snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
    if (readlink("/proc/self/ns/pid", mine, sizeof(mine) - 1) < 0 ||
        readlink(path, its, sizeof(its) - 1) < 0)
        return -1;
    return strcmp(mine, its) == 0;
}

/* Whether pid's argv has the shim template's marker: the template, and the shims it forked
 * (no exec: they keep its argv), have it; an exec'd shim has not. */
static bool has_template_arg(pid_t pid)
{
    char path[64], buf[512];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1) {
        buf[n] = '\0';
        if (strcmp(buf + i, "--template") == 0)
            return true;
    }
    return false;
}

/* Our live children in new namespaces (the shims, not the shim template) into pids; their
 * count. */
static int children(pid_t *pids, int max)
{
    pid_t all[32];
    int n = children_all(all, 32), k = 0;

    for (int i = 0; i < n; i++)
        if (in_our_pid_ns(all[i]) == 0 && k < max)
            pids[k++] = all[i];
    return k;
}

/* The shim template (a live child in our namespaces with its marker), or 0. */
static pid_t template_pid(void)
{
    pid_t all[32];
    int n = children_all(all, 32);

    for (int i = 0; i < n; i++)
        if (in_our_pid_ns(all[i]) == 1 && has_template_arg(all[i]))
            return all[i];
    return 0;
}

/* Waits (up to 10 s) until we have want children: the pool has filled. */
static void wait_children(int want)
{
    pid_t pids[16];
    for (int i = 0; i < 1000 && children(pids, 16) != want; i++)
        usleep(10 * 1000);
    cr_assert_eq(children(pids, 16), want, "the pool never reached %d shims", want);
}

Test(job, pool_fills_after_the_first_start_and_runner_free_reaps_it)
{
    pid_t pids[16];
    int fds0, kids0;
    struct run run;

    job_runner_free(runner); /* the fixture's: count without any runner */
    runner = NULL;
    fds0 = count_fds();
    kids0 = children_all(pids, 16);
    runner = new_runner(false);
    cr_expect_eq(children_all(pids, 16), kids0, "a pool before any job started");
    for (int i = 0; i < 3; i++) {
        start(&run, "/bin/true", NULL);
        finish(&run);
        cr_expect_eq(run.st.state, JOB_EXITED);
        cr_expect_eq(run.st.exit_code, 0);
        done(&run);
    }
    wait_children(TEST_PRESPAWN);
    cr_expect_neq(template_pid(), 0, "no shim template");
    job_runner_free(runner);
    runner = NULL;
    cr_expect_eq(children_all(pids, 16), kids0,
                 "pooled shims or the template left after job_runner_free");
    cr_expect_eq(count_fds(), fds0, "fds left after job_runner_free");
}

Test(job, host_network_jobs_never_take_a_pooled_shim)
{
    struct run run;
    start(&run, "/bin/true", NULL); /* fills the pool (private network) */
    finish(&run);
    done(&run);
    wait_children(TEST_PRESPAWN);
    struct job_runner *r = runner;
    start_ex(&run, r, NULL, JOB_NET_HOST, NOBODY, "/bin/sh",
             (const char *const[]){"-c", "ls /sys/class/net | grep -vx lo | head -1", NULL});
    cr_assert_eq(run.r, 0, "%s", run.err);
    finish(&run);
    char *out = output(&run, OUTLOG_SELECT_STDOUT);
    cr_expect(out[0] != '\0', "a host-network job sees no device but lo");
    free(out);
    done(&run);
    cr_expect_eq(children((pid_t[16]){0}, 16), TEST_PRESPAWN, "the pool was used or grew");
}

Test(job, a_pooled_shim_killed_while_waiting_is_not_handed_out)
{
    pid_t pids[16];
    struct run run;
    int n;

    start(&run, "/bin/true", NULL);
    finish(&run);
    done(&run);
    wait_children(TEST_PRESPAWN);
    n = children(pids, 16);
    for (int i = 0; i < n; i++)
        cr_assert_eq(kill(pids[i], SIGKILL), 0);
    usleep(50 * 1000); /* they are zombies now; the runner reaps them when it looks */
    start(&run, "/bin/sh", (const char *const[]){"-c", "exit 7", NULL});
    finish(&run);
    cr_expect_eq(run.st.state, JOB_EXITED, "%s", job_state_name(run.st.state));
    cr_expect_eq(run.st.exit_code, 7);
    done(&run);
}

struct end_probe {
    pid_t shim;
    bool shim_unreaped; /* at on_end */
    struct job_status st;
    atomic_int calls;
};

static void on_end_probe(struct job *j, void *userdata)
{
    struct end_probe *p = userdata;

    p->shim_unreaped = kill(p->shim, 0) == 0; /* a zombie not yet waited for counts too */
    job_get_state(j, &p->st);
    atomic_fetch_add(&p->calls, 1);
}

/* The end goes out on the shim's status record once the output is at EOF, not when the shim
 * (PID 1) has exited: its exit first kills and waits for whatever the command left behind (here
 * a dd holding 256 MiB, whose teardown takes tens of ms). job_wait still waits for all of it. */
Test(job, end_is_published_before_the_shim_exits_and_job_wait_waits_for_it)
{
    static const char *const args[] = {
        "-c", "dd if=/dev/zero of=/dev/null bs=256M count=100000 2>/dev/null & sleep 0.5; exit 3",
        NULL};
    struct end_probe probe = {0};
    struct job_status st;
    char logpath[256], id[64], err[256];
    struct outlog *log;
    struct job *j;

    make_id(id, sizeof(id));
    snprintf(logpath, sizeof(logpath), "%s/%s.log", tmpdir, id);
    cr_assert_eq(outlog_create(logpath, 0, &log), 0);
    struct job_spec spec = {.id = id,
                            .path = "/bin/sh",
                            .args = args,
                            .n_args = 2,
                            .uid = NOBODY,
                            .gid = NOBODY,
                            .log = log};
    cr_assert_eq(job_start(runner, &spec, on_end_probe, &probe, &j, err, sizeof(err)), 0, "%s",
                 err);
    job_get_state(j, &st);
    probe.shim = st.pid;
    cr_assert_gt(probe.shim, 0);
    job_wait(j);
    cr_assert_eq(atomic_load(&probe.calls), 1);
    cr_expect_eq(probe.st.state, JOB_EXITED, "%s", job_state_name(probe.st.state));
    cr_expect_eq(probe.st.exit_code, 3);
    cr_expect(probe.shim_unreaped, "on_end ran only after the shim was reaped");
    cr_expect_neq(kill(probe.shim, 0), 0, "job_wait returned before the shim was reaped");
    cr_expect(!cgroup_exists(id), "job_wait returned before the cgroup was removed");
    job_free(j);
    outlog_free(log);
}

/* ---- cgroups made ahead (job_spare_new): the pool thread moves a shim into each */

/* A field of /proc/PID/status ("Uid", "Seccomp", ...): its first number (hex for the Cap*
 * masks), or -1. */
static long proc_status_field(pid_t pid, const char *field)
{
    char path[64], line[256];
    size_t n = strlen(field);
    long v = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, strncmp(field, "Cap", 3) == 0 ? 16 : 10);
            break;
        }
    fclose(f);
    return v;
}

/* Whether pid has loaded the job's filter: one filter more than this process has
 * (Seccomp_filters, Linux 5.9; before it, the mode), so that tests run under a filter of their
 * own (a container's, a service's), which every process here inherits, do not take that one for
 * the job's. */
static bool job_filter_loaded(pid_t pid)
{
    long mine = proc_status_field(getpid(), "Seccomp_filters");

    if (mine >= 0)
        return proc_status_field(pid, "Seccomp_filters") > mine;
    return proc_status_field(pid, "Seccomp") == 2;
}

/* Reserves a cgroup for run->id (fresh) and waits (up to 10 s) for the pool thread to move a
 * shim into it and for that shim to make the command's process, which waits for the go as the
 * job's user, already without privileges and under the filter. Returns the shim's pid. */
static pid_t reserve_with_shim(struct run *run, struct job_spare **ret)
{
    pid_t pids[4], shim = 0, cmd = 0;
    int n = 0;

    memset(run, 0, sizeof(*run));
    make_id(run->id, sizeof(run->id));
    cr_assert_eq(job_spare_new(runner, AHEAD(run->id), ret), 0);
    for (int i = 0; i < 1000 && (n = cgroup_pids(run->id, pids, 4)) < 2; i++)
        usleep(10 * 1000);
    cr_assert_eq(n, 2, "%d processes in the reserved cgroup, not its shim and command", n);
    for (int i = 0; i < 2; i++) {
        if (proc_status_field(pids[i], "PPid") == (long)getpid())
            shim = pids[i];
        else
            cmd = pids[i];
    }
    cr_assert(shim && cmd, "no shim (a child of ours) among %d and %d", pids[0], pids[1]);
    cr_expect_eq(proc_status_field(cmd, "PPid"), (long)shim);
    /* The filter is the last of its steps (after setresuid, capabilities, no_new_privs). */
    for (int i = 0; i < 100 && !job_filter_loaded(cmd); i++)
        usleep(10 * 1000);
    cr_expect_eq(proc_status_field(cmd, "Uid"), NOBODY, "the command's process is not nobody");
    cr_expect_eq(proc_status_field(cmd, "NoNewPrivs"), 1);
    cr_expect_eq(proc_status_field(cmd, "Seccomp"), 2, "the filter is not loaded");
    cr_expect(job_filter_loaded(cmd), "the job's filter is not loaded (another one is)");
    cr_expect_eq(proc_status_field(cmd, "CapEff"), 0);
    return shim;
}

/* The start takes the shim that waited in the job's cgroup: nothing is moved into a cgroup on
 * its path (the first such move after a pause waits out an RCU grace period, 5-13 ms). */
Test(job, a_cgroup_made_ahead_gets_a_shim_and_its_start_runs_the_job_in_it)
{
    struct job_spare *cg;
    struct run run;
    pid_t shim = reserve_with_shim(&run, &cg);

    start_spec(&run, runner, NULL, JOB_NET_NONE, NOBODY, NULL, "/bin/sh",
               (const char *const[]){"-c", "echo $$; exit 5", NULL}, cg, NULL);
    cr_assert_eq(run.r, 0, "%s", run.err);
    job_get_state(run.j, &run.st);
    cr_expect_eq(run.st.pid, shim, "the job runs in shim %d, not in the one in its cgroup (%d)",
                 (int)run.st.pid, (int)shim);
    finish(&run);
    cr_expect_eq(run.st.state, JOB_EXITED, "%s", job_state_name(run.st.state));
    cr_expect_eq(run.st.exit_code, 5);
    char *out = output(&run, OUTLOG_SELECT_STDOUT);
    cr_expect_str_eq(out, "2\n", "the command is not PID 2 of the shim's namespace");
    free(out);
    done(&run);
}

Test(job, releasing_a_cgroup_made_ahead_kills_and_reaps_its_shim)
{
    struct job_spare *cg;
    struct run run;
    pid_t shim = reserve_with_shim(&run, &cg);

    job_spare_free(cg);
    cr_expect_not(cgroup_exists(run.id));
    errno = 0;
    cr_expect(kill(shim, 0) < 0 && errno == ESRCH, "shim %d still there (or a zombie)", (int)shim);
}

/* A host-network job cannot use the shim in its cgroup (made with a private network): that one
 * goes, and the job gets its own, in the same cgroup. */
Test(job, a_host_network_job_in_a_cgroup_made_ahead_gets_its_own_shim)
{
    struct job_spare *cg;
    struct run run;
    pid_t shim = reserve_with_shim(&run, &cg);

    start_spec(&run, runner, NULL, JOB_NET_HOST, NOBODY, NULL, "/bin/sh",
               (const char *const[]){"-c", "ls /sys/class/net | grep -vx lo | head -1", NULL}, cg,
               NULL);
    cr_assert_eq(run.r, 0, "%s", run.err);
    errno = 0;
    cr_expect(kill(shim, 0) < 0 && errno == ESRCH, "the private-network shim %d is still there",
              (int)shim);
    finish(&run);
    char *out = output(&run, OUTLOG_SELECT_STDOUT);
    cr_expect(out[0] != '\0', "a host-network job sees no device but lo");
    free(out);
    done(&run);
}

Test(job, a_shim_killed_while_it_waited_in_a_cgroup_made_ahead_is_not_used)
{
    struct job_spare *cg;
    struct run run;
    pid_t shim = reserve_with_shim(&run, &cg);

    cr_assert_eq(kill(shim, SIGKILL), 0);
    usleep(50 * 1000);
    start_spec(&run, runner, NULL, JOB_NET_NONE, NOBODY, NULL, "/bin/sh",
               (const char *const[]){"-c", "exit 7", NULL}, cg, NULL);
    cr_assert_eq(run.r, 0, "%s", run.err);
    finish(&run);
    cr_expect_eq(run.st.state, JOB_EXITED, "%s", job_state_name(run.st.state));
    cr_expect_eq(run.st.exit_code, 7);
    done(&run);
}

/* The shim template forks its shims with clone3 (into their cgroup, where there is one): where
 * clone3 is refused (ENOSYS from an older kernel or a filter around the tests) the runner execs
 * every shim, which the other tests cover, and the template's own tests skip. */
static void need_clone3(void)
{
    const char *why = probe_clone3();

    if (why) {
        teardown(); /* a skip does not run the suite's .fini */
        cr_skip_test("%s: the runner execs every shim, no template", why);
    }
}

/* Pooled shims are forked by the shim template, yet are the server's children (CLONE_PARENT:
 * reaped by their pidfd as before) in new namespaces; a template that dies is replaced by an
 * exec'd shim for the next refill, then restarted, and jobs run throughout. */
Test(job, pooled_shims_come_from_the_template_and_its_death_falls_back_to_exec)
{
    pid_t pids[16], tmpl, tmpl2 = 0;
    struct run run;
    int n, execd = 0, forked = 0;

    need_clone3();
    start(&run, "/bin/true", NULL);
    finish(&run);
    done(&run);
    wait_children(TEST_PRESPAWN);
    tmpl = template_pid();
    cr_assert_neq(tmpl, 0, "no shim template among our children");
    n = children(pids, 16);
    for (int i = 0; i < n; i++) {
        cr_expect(has_template_arg(pids[i]), "pooled shim %d was exec'd", (int)pids[i]);
        cr_expect_eq(proc_status_field(pids[i], "PPid"), (long)getpid(),
                     "pooled shim %d is not our child", (int)pids[i]);
    }

    cr_assert_eq(kill(tmpl, SIGKILL), 0);
    usleep(20 * 1000);
    start(&run, "/bin/sh", (const char *const[]){"-c", "exit 7", NULL});
    finish(&run);
    cr_expect_eq(run.st.state, JOB_EXITED, "%s", job_state_name(run.st.state));
    cr_expect_eq(run.st.exit_code, 7);
    done(&run);
    /* The refill after that start found the template gone: its shim was exec'd. */
    wait_children(TEST_PRESPAWN);
    n = children(pids, 16);
    for (int i = 0; i < n; i++)
        execd += !has_template_arg(pids[i]);
    cr_expect_eq(execd, 1, "%d exec'd shims in the pool after the template died", execd);

    /* The next refill starts a new template and forks from it again. */
    start(&run, "/bin/sh", (const char *const[]){"-c", "exit 8", NULL});
    finish(&run);
    cr_expect_eq(run.st.exit_code, 8);
    done(&run);
    wait_children(TEST_PRESPAWN);
    for (int i = 0; i < 1000 && !(tmpl2 = template_pid()); i++)
        usleep(10 * 1000);
    cr_expect(tmpl2 != 0 && tmpl2 != tmpl, "the template was not restarted");
    n = children(pids, 16);
    for (int i = 0; i < n; i++)
        forked += has_template_arg(pids[i]);
    cr_expect_eq(forked, TEST_PRESPAWN, "%d of the pool forked by the template", forked);
}

/* One request of len bytes with n fds (none if 0) to a template on sock; its reply (1, 0 at
 * EOF, or -errno as shimproto_recv_fds), which must come within 5 s. */
static int template_ask(int sock, const void *q, size_t len, const int *fds, size_t n,
                        struct shimproto_template_reply *rep, int *pidfd, size_t *ret_n)
{
    struct pollfd p = {.fd = sock, .events = POLLIN};

    if (n)
        cr_assert_eq(shimproto_send_fds(sock, q, len, fds, n), 0);
    else
        cr_assert_eq(send(sock, q, len, MSG_NOSIGNAL), (ssize_t)len);
    cr_assert_eq(poll(&p, 1, 5000), 1, "no reply from the template within 5 s");
    *ret_n = 0;
    return shimproto_recv_fds(sock, rep, sizeof(*rep), pidfd, 1, ret_n);
}

/* The template (run here by hand) answers every request, those it cannot serve with an err and
 * no pidfd (the server would wait out its timeout otherwise), and serves the next one. */
Test(job, the_template_answers_requests_it_cannot_serve_and_serves_the_next)
{
    struct shimproto_template_req q = {0};
    struct shimproto_template_reply rep;
    char big[sizeof(q) + 1] = {0};
    int sv[2], sync[2], nul, dir, fds[SHIMPROTO_FDS_MAX], pidfd = -1, st;
    siginfo_t si;
    size_t n;
    pid_t pid;

    need_root();
    need_clone3();
    cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync), 0);
    nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    dir = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert(nul >= 0 && dir >= 0);
    pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        if (dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0 ||
            dup2(sv[1], SHIMPROTO_FD_SYNC) < 0 || dup2(nul, SHIMPROTO_FD_STATUS) < 0)
            _exit(126);
        execl(runjob_bin(), "runjob", "shim", SHIMPROTO_NET_NONE, SHIMPROTO_TEMPLATE_ARG,
              (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    for (int i = 0; i < SHIMPROTO_FDS_MAX; i++)
        fds[i] = nul;
    fds[SHIMPROTO_FD_SYNC] = sync[1];

    /* A request of the wrong length (-EBADMSG at its recv). */
    cr_assert_eq(template_ask(sv[0], big, sizeof(big), fds, SHIMPROTO_FD_COUNT, &rep, &pidfd, &n),
                 1);
    cr_expect_eq(rep.err, EBADMSG);
    cr_expect_eq(n, 0);
    /* More fds than a request has room for (-EBADMSG too). */
    cr_assert_eq(template_ask(sv[0], &q, sizeof(q), fds, SHIMPROTO_FDS_MAX, &rep, &pidfd, &n), 1);
    cr_expect_eq(rep.err, EBADMSG);
    cr_expect_eq(n, 0);
    /* A whole request with too few fds. */
    cr_assert_eq(template_ask(sv[0], &q, sizeof(q), fds, 2, &rep, &pidfd, &n), 1);
    cr_expect_eq(rep.err, EBADMSG);
    cr_expect_eq(n, 0);
    /* A well-formed request whose clone fails: a "cgroup" that is a plain directory. */
    q.flags = SHIMPROTO_TEMPLATE_CGROUP;
    fds[SHIMPROTO_FD_COUNT] = dir;
    cr_assert_eq(template_ask(sv[0], &q, sizeof(q), fds, SHIMPROTO_FD_COUNT + 1, &rep, &pidfd, &n),
                 1);
    cr_expect_gt(rep.err, 0, "a clone into a directory that is no cgroup succeeded");
    cr_expect_eq(n, 0);

    /* Then a shim: our child (CLONE_PARENT), waited for by its pidfd. */
    q.flags = 0;
    cr_assert_eq(template_ask(sv[0], &q, sizeof(q), fds, SHIMPROTO_FD_COUNT, &rep, &pidfd, &n), 1);
    cr_assert_eq(rep.err, 0, "%s", strerror(rep.err));
    cr_assert_eq(n, 1);
    cr_expect_gt(rep.pid, 0);
    cr_expect_eq(pidfd_send_signal(pidfd, SIGKILL, NULL, 0), 0);
    cr_expect_eq(waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED | __WALL), 0);
    cr_expect_eq(si.si_pid, rep.pid);
    close(pidfd);

    /* EOF on its control socket ends it. */
    close(sv[0]);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the template ended with status %#x", st);
    close(sync[0]);
    close(sync[1]);
    close(nul);
    close(dir);
}
