/* core/manager without gRPC, as another program would drive it: Start, Stop, status, list,
 * names, the running cap, output readers, end events, shutdown and restart recovery, removal
 * (jm_remove, a reader across it, retention and the state cap). As root,
 * with real namespaces, the host's cgroups and the real shim (RUNJOB_BIN). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/manager.h"

#define NOBODY 65534

static char tmpdir[64];
static char state_dir[128];
static const char *const admins[] = {"administrator", NULL};
static atomic_int ends;

static const char *runjob_bin(void)
{
    const char *b = getenv("RUNJOB_BIN");
    return b && *b ? b : "bin/runjob";
}

static void setup(void)
{
    if (geteuid() != 0)
        cr_skip_test("needs root (namespaces, cgroups)");
    if (access(runjob_bin(), X_OK) != 0)
        cr_skip_test("no runjob binary at '%s' (set RUNJOB_BIN or run make)", runjob_bin());
    strcpy(tmpdir, "/var/lib/test_manager.XXXXXX");
    cr_assert(mkdtemp(tmpdir));
    snprintf(state_dir, sizeof(state_dir), "%s/state", tmpdir);
}

static void teardown(void)
{
    char cmd[128];

    if (tmpdir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        (void)!system(cmd);
    }
}

TestSuite(jm, .init = setup, .fini = teardown, .timeout = 60);

static void count_end(struct jm_job *j, void *userdata)
{
    (void)j;
    (void)userdata;
    atomic_fetch_add(&ends, 1);
}

/* The configuration every manager here runs with: spares made ahead (with as many shims
 * started ahead), cap running jobs per owner (0 = none). */
static struct jm_config manager_config(unsigned spares, unsigned cap)
{
    return (struct jm_config){
        .state_dir = state_dir,
        .admin_cns = admins,
        .max_running_per_user = cap,
        .job_uid = NOBODY,
        .job_gid = NOBODY,
        .stop_grace_ms = 2000,
        .spares = spares,
        .runner = {.shim_exe = runjob_bin(), .prespawn_shims = spares ? 2 : 0},
    };
}

static struct jm *new_manager(unsigned spares, unsigned cap)
{
    struct jm_config cfg = manager_config(spares, cap);
    char err[256] = "";
    struct jm *m = NULL;
    int r;

    cfg.on_end = count_end;
    r = jm_new(&cfg, &m, err, sizeof(err));
    cr_assert_eq(r, 0, "jm_new: %s (%s)", err, strerror(-r));
    return m;
}

/* Starts /bin/sh -c script for owner; returns jm_start's error, st filled. */
static int start_sh(struct jm *m, const char *owner, const char *name, const char *script,
                    struct jm_started *st)
{
    const char *args[] = {"-c", script};
    struct jm_start_request rq = {
        .owner = owner, .name = name, .command = "/bin/sh", .args = args, .n_args = 2};

    return jm_start(m, &rq, st);
}

static struct jm_job *must_start(struct jm *m, const char *owner, const char *name,
                                 const char *script)
{
    struct jm_started st;
    int r = start_sh(m, owner, name, script, &st);

    cr_assert_eq(r, 0, "start: %s (%s)", st.reason, strerror(-r));
    cr_assert(st.recorded);
    cr_assert_eq(strlen(st.id), JM_ID_LEN);
    struct jm_job *j = jm_lookup(m, st.id, owner);
    cr_assert_not_null(j);
    return j;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    (void)nanosleep(&ts, NULL);
}

/* Every byte of the selection from offset until the output ends, into buf (NUL-terminated). */
static size_t read_all(struct jm *m, struct jm_job *j, unsigned mask, uint64_t offset, char *buf,
                       size_t cap)
{
    struct jm_reader *rd = NULL;
    size_t n = 0;

    cr_assert_eq(jm_reader_open(m, j, mask, offset, &rd, NULL), 0);
    for (int i = 0; i < 20000; i++) {
        struct outlog_chunk_info info;
        ssize_t r = jm_reader_read(rd, buf + n, cap - 1 - n, &info);
        if (r == 0)
            break;
        if (r == -EAGAIN) {
            sleep_ms(1);
            continue;
        }
        cr_assert_gt(r, 0, "read: %s", strerror((int)-r));
        n += (size_t)r;
    }
    buf[n] = '\0';
    jm_reader_free(rd);
    return n;
}

static void wait_ended(struct jm_job *j)
{
    struct jm_info info;

    for (int i = 0; i < 10000; i++) {
        jm_job_info(j, &info);
        if (!info.is_running)
            return;
        sleep_ms(1);
    }
    cr_assert_fail("job %s did not end", jm_job_id(j));
}

Test(jm, start_runs_the_job_and_readers_see_its_output)
{
    struct jm *m = new_manager(JM_SPARES_DEFAULT, 0);
    struct jm_job *j = must_start(m, "alice", NULL, "echo out; echo err >&2; exit 3");
    struct jm_reader *rd = NULL;
    struct jm_info info;
    char buf[256];

    read_all(m, j, OUTLOG_SELECT_STDOUT, 0, buf, sizeof(buf));
    cr_expect_str_eq(buf, "out\n");
    read_all(m, j, OUTLOG_SELECT_STDERR, 0, buf, sizeof(buf));
    cr_expect_str_eq(buf, "err\n");
    cr_assert_eq(jm_reader_open(m, j, OUTLOG_SELECT_ALL, 0, &rd, NULL), 0);
    jm_reader_final_info(rd, &info);
    jm_reader_free(rd);
    cr_expect_eq(info.status.job.state, JOB_EXITED);
    cr_expect_eq(info.status.job.exit_code, 3);
    cr_expect_eq(info.status.output_bytes, 8);
    cr_expect_not(info.is_running);
    cr_expect_str_eq(info.spec->owner, "alice");
    cr_expect_str_eq(info.spec->command, "/bin/sh");
    jm_free(m);
}

Test(jm, a_command_that_cannot_run_is_recorded_as_failed)
{
    struct jm *m = new_manager(0, 0);
    struct jm_start_request rq = {.owner = "alice", .command = "/nonexistent/cmd"};
    struct jm_started st;
    struct jm_info info;
    char buf[64];

    cr_assert_eq(jm_start(m, &rq, &st), -ENOENT);
    cr_assert(st.recorded);
    cr_expect(strstr(st.reason, "/nonexistent/cmd") != NULL, "reason: %s", st.reason);
    struct jm_job *j = jm_lookup(m, st.id, "alice");
    cr_assert_not_null(j);
    jm_job_info(j, &info);
    cr_expect_eq(info.status.job.state, JOB_FAILED_TO_START);
    cr_expect_str_eq(info.status.job.error, st.reason);
    cr_expect_eq(read_all(m, j, OUTLOG_SELECT_ALL, 0, buf, sizeof(buf)), 0);
    jm_free(m);
}

static atomic_int stopped;

static void on_stopped(void *userdata)
{
    (void)userdata;
    atomic_fetch_add(&stopped, 1);
}

Test(jm, stop_signals_then_reports_the_end)
{
    struct jm *m = new_manager(JM_SPARES_DEFAULT, 0);
    struct jm_job *j = must_start(m, "alice", NULL, "exec sleep 100");
    const char *id = jm_job_id(j);
    struct jm_info info;

    cr_expect_eq(jm_stop(m, id, "bob", SIGTERM, 5000, on_stopped, NULL), -ENOENT);
    cr_expect_eq(jm_stop(m, "not-an-id", "alice", SIGTERM, 5000, on_stopped, NULL), -ENOENT);
    cr_assert_eq(jm_stop(m, id, "alice", SIGTERM, 5000, on_stopped, NULL), 0);
    for (int i = 0; i < 5000 && atomic_load(&stopped) == 0; i++)
        sleep_ms(1);
    cr_assert_eq(atomic_load(&stopped), 1);
    jm_job_info(j, &info);
    cr_expect_eq(info.status.job.state, JOB_KILLED);
    cr_expect_eq(info.status.job.signal, SIGTERM);
    /* An ended job: done runs at once, on this thread. */
    cr_assert_eq(jm_stop(m, id, "administrator", SIGKILL, -1, on_stopped, NULL), 0);
    cr_expect_eq(atomic_load(&stopped), 2);
    jm_free(m);
}

Test(jm, list_shows_the_callers_jobs_and_every_job_to_an_administrator)
{
    struct jm *m = new_manager(JM_SPARES_DEFAULT, 0);
    struct jm_job *a1 = must_start(m, "alice", NULL, "true");
    struct jm_job *b1 = must_start(m, "bob", NULL, "true");
    struct jm_job *a2 = must_start(m, "alice", NULL, "true");
    struct jm_job **jobs = NULL;
    size_t n = 0;

    cr_assert_eq(jm_list(m, "alice", &jobs, &n), 0);
    cr_assert_eq(n, 2);
    cr_expect_eq(jobs[0], a1, "oldest first");
    cr_expect_eq(jobs[1], a2);
    free(jobs);
    cr_assert_eq(jm_list(m, "bob", &jobs, &n), 0);
    cr_assert_eq(n, 1);
    cr_expect_eq(jobs[0], b1);
    free(jobs);
    cr_assert_eq(jm_list(m, "administrator", &jobs, &n), 0);
    cr_expect_eq(n, 3);
    free(jobs);
    cr_assert_eq(jm_list(m, "carol", &jobs, &n), 0);
    cr_expect_eq(n, 0);
    free(jobs);
    cr_expect(jm_is_admin(m, "administrator"));
    cr_expect_not(jm_is_admin(m, "alice"));
    cr_expect_null(jm_lookup(m, jm_job_id(a1), "bob"));
    cr_expect_eq(jm_lookup(m, jm_job_id(a1), "administrator"), a1);
    jm_free(m);
}

Test(jm, a_name_is_unique_among_the_owners_running_jobs)
{
    struct jm *m = new_manager(JM_SPARES_DEFAULT, 0);
    struct jm_job *web = must_start(m, "alice", "web", "exec sleep 100");
    struct jm_started st;

    cr_expect_eq(start_sh(m, "alice", "web", "true", &st), -EEXIST);
    cr_expect_not(st.recorded);
    cr_expect_str_eq(st.name, "web");
    cr_expect_str_eq(st.id, "");
    must_start(m, "bob", "web", "true"); /* another owner's names are theirs */
    cr_assert_eq(jm_stop(m, jm_job_id(web), "alice", SIGKILL, -1, on_stopped, NULL), 0);
    wait_ended(web);
    must_start(m, "alice", "web", "true"); /* free again once the job ended */
    jm_free(m);
}

/* The job's end is seen (by its status, as here, or its stream's end) before the end callback
 * updates its record: the name and the cap must follow what the client was told, every time. */
Test(jm, a_name_and_the_cap_are_free_once_the_end_is_seen)
{
    struct jm *m = new_manager(JM_SPARES_DEFAULT, 1);

    for (int i = 0; i < 30; i++)
        wait_ended(must_start(m, "alice", "web", "true"));
    jm_free(m);
}

Test(jm, the_running_cap_counts_per_owner)
{
    struct jm *m = new_manager(JM_SPARES_DEFAULT, 2);
    struct jm_started st;

    must_start(m, "alice", NULL, "exec sleep 100");
    must_start(m, "alice", NULL, "exec sleep 100");
    cr_expect_eq(start_sh(m, "alice", NULL, "true", &st), -EUSERS);
    cr_expect_not(st.recorded);
    must_start(m, "bob", NULL, "exec sleep 100");
    cr_expect_eq(jm_get_config(m)->max_running_per_user, 2);
    jm_free(m); /* kills what runs */
}

Test(jm, a_reader_past_the_end_of_ended_output_is_refused)
{
    struct jm *m = new_manager(0, 0);
    struct jm_job *j = must_start(m, "alice", NULL, "echo hello");
    struct jm_reader *rd = NULL;
    uint64_t end = 0;
    char buf[64];

    wait_ended(j);
    read_all(m, j, OUTLOG_SELECT_ALL, 0, buf, sizeof(buf)); /* waits for the log's close */
    cr_expect_str_eq(buf, "hello\n");
    cr_expect_eq(jm_reader_open(m, j, OUTLOG_SELECT_STDOUT, 7, &rd, &end), -ERANGE);
    cr_expect_eq(end, 6);
    cr_expect_eq(read_all(m, j, OUTLOG_SELECT_STDOUT, 6, buf, sizeof(buf)), 0);
    cr_expect_eq(read_all(m, j, OUTLOG_SELECT_STDOUT, 2, buf, sizeof(buf)), 4);
    cr_expect_str_eq(buf, "llo\n");
    jm_free(m);
}

Test(jm, every_end_is_an_event)
{
    struct jm *m = new_manager(JM_SPARES_DEFAULT, 0);

    atomic_store(&ends, 0);
    for (int i = 0; i < 5; i++)
        wait_ended(must_start(m, "alice", NULL, "true"));
    for (int i = 0; i < 5000 && atomic_load(&ends) < 5; i++)
        sleep_ms(1);
    cr_expect_eq(atomic_load(&ends), 5);
    jm_free(m);
}

Test(jm, shutdown_stops_running_jobs_and_refuses_starts)
{
    struct jm *m = new_manager(JM_SPARES_DEFAULT, 0);
    struct jm_job *j = must_start(m, "alice", NULL, "exec sleep 100");
    struct jm_started st;
    struct jm_info info;

    jm_shutdown(m);
    jm_job_info(j, &info);
    cr_expect_eq(info.status.job.state, JOB_KILLED);
    cr_expect_eq(start_sh(m, "alice", NULL, "true", &st), -ESHUTDOWN);
    cr_expect(st.recorded);
    jm_free(m);
}

static unsigned count_dirs(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    unsigned n = 0;

    cr_assert_not_null(d);
    while ((de = readdir(d)))
        if (de->d_type == DT_DIR && de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

Test(jm, a_restart_finds_a_running_job_lost_and_keeps_its_output)
{
    char id[JM_ID_LEN + 1] = "", buf[64], cg[256];
    int pipefd[2], st;
    struct jm_job **jobs = NULL;
    struct jm_info info;
    size_t n = 0;

    cr_assert_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* A server that dies with a job running and jobs made ahead: no jm_free. No cr_*
         * here (a forked child cannot report to Criterion): any failure is the exit code. */
        struct jm_config cfg = manager_config(JM_SPARES_DEFAULT, 0);
        const char *args[] = {"-c", "echo hi; exec sleep 100"};
        struct jm_start_request rq = {
            .owner = "alice", .name = "kept", .command = "/bin/sh", .args = args, .n_args = 2};
        struct jm_started started;
        struct jm_info ji = {0};
        struct jm *cm = NULL;
        char err[256];

        if (jm_new(&cfg, &cm, err, sizeof(err)) < 0 || jm_start(cm, &rq, &started) < 0)
            _exit(2);
        struct jm_job *j = jm_lookup(cm, started.id, "alice");
        for (int i = 0; j && i < 5000 && ji.status.output_bytes < 3; i++) {
            jm_job_info(j, &ji); /* "hi\n" is in the log */
            sleep_ms(1);
        }
        if (!j || ji.status.output_bytes < 3)
            _exit(3);
        sleep_ms(JOBTAB_RUNNING_LINGER_MS + 300); /* RUNNING is written */
        if (write(pipefd[1], started.id, JM_ID_LEN) != JM_ID_LEN)
            _exit(4);
        _exit(0);
    }
    close(pipefd[1]);
    cr_assert_eq(read(pipefd[0], id, JM_ID_LEN), JM_ID_LEN);
    close(pipefd[0]);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);

    struct jm *m = new_manager(JM_SPARES_DEFAULT, 0);
    cr_assert_eq(jm_list(m, "administrator", &jobs, &n), 0);
    cr_assert_eq(n, 1, "the folders made ahead are not jobs");
    cr_expect_str_eq(jm_job_id(jobs[0]), id);
    jm_job_info(jobs[0], &info);
    cr_expect_eq(info.status.job.state, JOB_LOST);
    cr_expect(strstr(info.status.job.error, "restarted") != NULL, "error: %s",
              info.status.job.error);
    cr_expect_str_eq(info.spec->name, "kept");
    read_all(m, jobs[0], OUTLOG_SELECT_ALL, 0, buf, sizeof(buf));
    cr_expect_str_eq(buf, "hi\n");
    /* The lost job's cgroup is gone (v1 here: every hierarchy; the pids one checked). */
    snprintf(cg, sizeof(cg), "/sys/fs/cgroup/pids/runjob/%s", id);
    cr_expect(access(cg, F_OK) != 0, "%s is still there", cg);
    free(jobs);
    jm_free(m);
    /* One job folder: the dead server's folders made ahead were removed at load, and this
     * manager's own at its free. */
    cr_expect_eq(count_dirs(state_dir), 1);
}

Test(jm, a_second_manager_on_the_same_state_directory_is_refused)
{
    struct jm *m = new_manager(JM_SPARES_DEFAULT, 0);
    struct jm_config cfg = manager_config(0, 0);
    struct jm *second = NULL;
    char err[256] = "", pid[32];

    cr_expect_eq(jm_new(&cfg, &second, err, sizeof(err)), -EBUSY);
    cr_expect_null(second);
    snprintf(pid, sizeof(pid), "pid %d", (int)getpid());
    cr_expect(strstr(err, pid) != NULL, "error: %s", err);
    must_start(m, "alice", NULL, "true"); /* the first is unharmed */
    jm_free(m);
    cr_assert_eq(jm_new(&cfg, &second, err, sizeof(err)), 0, "after the first: %s", err);
    jm_free(second);
}

Test(jm, a_cut_output_is_still_reported_cut_after_a_restart)
{
    struct jm_config cfg = manager_config(0, 0);
    struct jm *m = NULL;
    struct jm_job **jobs = NULL;
    struct jm_info info;
    char err[256], buf[64];
    size_t n = 0;

    cfg.max_output_bytes = 10;
    cfg.keep_output_head = true;
    cr_assert_eq(jm_new(&cfg, &m, err, sizeof(err)), 0, "%s", err);
    struct jm_job *j = must_start(m, "alice", NULL, "echo 0123456789abcdefghij");
    wait_ended(j);
    cr_expect_eq(read_all(m, j, OUTLOG_SELECT_ALL, 0, buf, sizeof(buf)), 10);
    jm_job_info(j, &info);
    cr_expect(info.status.output_truncated);
    jm_free(m);

    cr_assert_eq(jm_new(&cfg, &m, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(jm_list(m, "alice", &jobs, &n), 0);
    cr_assert_eq(n, 1);
    jm_job_info(jobs[0], &info);
    cr_expect(info.status.output_truncated, "the record's word survives the restart");
    cr_expect_eq(info.status.output_bytes, 10);
    free(jobs);
    jm_free(m);
}

/* Past the cap the manager keeps both ends by default: the first lines and the last, the
 * middle dropped (and counted), nothing marked truncated; the same after a restart. */
Test(jm, past_the_cap_both_ends_are_kept)
{
    struct jm_config cfg = manager_config(0, 0);
    struct jm *m = NULL;
    struct jm_job **jobs = NULL;
    struct jm_info info;
    char err[256];
    static char buf[1 << 20];
    size_t n = 0, got;

    cfg.max_output_bytes = 64 * 1024;
    cr_assert_eq(jm_new(&cfg, &m, err, sizeof(err)), 0, "%s", err);
    struct jm_job *j = must_start(m, "alice", NULL, "seq 1 200000");
    wait_ended(j);
    got = read_all(m, j, OUTLOG_SELECT_ALL, 0, buf, sizeof(buf) - 1);
    buf[got] = '\0';
    cr_expect_leq(got, 64 * 1024 + 16384, "about the cap: %zu", got);
    cr_expect(strncmp(buf, "1\n2\n3\n", 6) == 0, "the head is kept");
    cr_expect(got > 7 && strcmp(buf + got - 7, "200000\n") == 0, "the newest line is kept");
    jm_job_info(j, &info);
    cr_expect_not(info.status.output_truncated);
    cr_expect_gt(info.status.output_dropped, 0);
    cr_expect_eq(info.status.output_bytes, 1288895, "offsets count every byte of seq 1 200000");
    jm_free(m);

    cr_assert_eq(jm_new(&cfg, &m, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(jm_list(m, "alice", &jobs, &n), 0);
    cr_assert_eq(n, 1);
    jm_job_info(jobs[0], &info);
    cr_expect_gt(info.status.output_dropped, 0, "the gap survives a restart");
    cr_expect_eq(read_all(m, jobs[0], OUTLOG_SELECT_ALL, 0, buf, sizeof(buf) - 1), got);
    free(jobs);
    jm_free(m);
}

/* The first line of a running job's stdout (it waits for the newline). */
static void first_line(struct jm *m, struct jm_job *j, char *buf, size_t cap)
{
    struct jm_reader *rd = NULL;
    size_t n = 0;

    cr_assert_eq(jm_reader_open(m, j, OUTLOG_SELECT_STDOUT, 0, &rd, NULL), 0);
    for (int i = 0; i < 10000 && !memchr(buf, '\n', n) && n + 1 < cap; i++) {
        struct outlog_chunk_info info;
        ssize_t r = jm_reader_read(rd, buf + n, cap - 1 - n, &info);
        if (r > 0)
            n += (size_t)r;
        else
            sleep_ms(1);
    }
    buf[n] = '\0';
    jm_reader_free(rd);
}

Test(jm, each_job_gets_a_uid_of_its_own_from_the_range)
{
    struct jm_config cfg = manager_config(JM_SPARES_DEFAULT, 0);
    struct jm *m = NULL;
    char err[256], out[4][32] = {{0}};
    unsigned uids[4];

    cfg.uid_first = 1879048192;
    cfg.uid_last = 1879048192 + 15;
    cr_assert_eq(jm_new(&cfg, &m, err, sizeof(err)), 0, "%s", err);
    struct jm_job *held = must_start(m, "alice", NULL, "id -u; exec sleep 100");
    first_line(m, held, out[3], sizeof(out[3]));
    cr_assert_eq(sscanf(out[3], "%u", &uids[3]), 1, "output: %s", out[3]);
    for (int i = 0; i < 3; i++) {
        struct jm_job *j = must_start(m, i == 1 ? "bob" : "alice", NULL, "id -u; id -g");
        unsigned g = 0;
        wait_ended(j);
        read_all(m, j, OUTLOG_SELECT_STDOUT, 0, out[i], sizeof(out[i]));
        cr_assert_eq(sscanf(out[i], "%u\n%u", &uids[i], &g), 2, "output: %s", out[i]);
        cr_expect_eq(uids[i], g, "gid %u is not the uid %u", g, uids[i]);
    }
    for (int i = 0; i < 4; i++) {
        cr_expect(uids[i] >= cfg.uid_first && uids[i] <= cfg.uid_last, "uid %u", uids[i]);
        for (int k = 0; k < i; k++)
            cr_expect_neq(uids[i], uids[k], "jobs %d and %d share uid %u", i, k, uids[i]);
    }
    jm_free(m); /* spares holding uids are freed too */
}

static void stopped_nop(void *userdata)
{
    (void)userdata;
}

static bool folder_exists(const char *name)
{
    char path[256];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", state_dir, name);
    return stat(path, &st) == 0;
}

Test(jm, remove_takes_ended_jobs_away_for_their_owner_or_an_administrator)
{
    struct jm *m = new_manager(1, 0);
    struct jm_job *a = must_start(m, "alice", NULL, "echo a");
    struct jm_job *b = must_start(m, "alice", NULL, "echo b");
    struct jm_job *run = must_start(m, "alice", NULL, "sleep 30");
    char id_a[JM_ID_LEN + 1], id_b[JM_ID_LEN + 1];

    snprintf(id_a, sizeof(id_a), "%s", jm_job_id(a));
    snprintf(id_b, sizeof(id_b), "%s", jm_job_id(b));
    wait_ended(a);
    wait_ended(b);
    cr_expect_eq(jm_remove(m, jm_job_id(run), "alice"), -EBUSY, "a running job stays");
    cr_expect_eq(jm_remove(m, id_a, "bob"), -ENOENT, "another user's job is unknown to bob");
    cr_expect_eq(jm_remove(m, id_a, "alice"), 0);
    cr_expect_eq(jm_remove(m, id_a, "alice"), -ENOENT, "removed already");
    cr_expect_null(jm_lookup(m, id_a, "alice"));
    cr_expect_eq(jm_remove(m, id_b, "administrator"), 0);
    /* The handles taken before are still valid: the manager frees them at the last put. */
    cr_expect_str_eq(jm_job_id(a), id_a);
    jm_job_put(a);
    jm_job_put(b);
    for (int i = 0; i < 500 && (folder_exists(id_a) || folder_exists(id_b)); i++)
        sleep_ms(10);
    cr_expect_not(folder_exists(id_a), "the sweep thread deleted its folder");
    cr_expect_not(folder_exists(id_b));
    cr_expect_eq(jm_stop(m, jm_job_id(run), "alice", SIGKILL, -1, stopped_nop, NULL), 0);
    jm_job_put(run);
    jm_shutdown(m);
    jm_free(m);
}

/* Its end seen, a job can be removed at once (the end callback may not have run yet). */
Test(jm, a_job_seen_ended_can_be_removed_at_once)
{
    struct jm *m = new_manager(JM_SPARES_DEFAULT, 0);

    for (int i = 0; i < 30; i++) {
        struct jm_job *j = must_start(m, "alice", NULL, "true");
        wait_ended(j);
        cr_assert_eq(jm_remove(m, jm_job_id(j), "alice"), 0, "round %d", i);
        jm_job_put(j);
    }
    jm_free(m);
}

Test(jm, a_reader_open_across_the_removal_reads_to_the_end)
{
    struct jm *m = new_manager(1, 0);
    struct jm_job *j = must_start(m, "alice", NULL, "head -c 300000 /dev/zero; echo end");
    char id[JM_ID_LEN + 1];
    struct jm_reader *rd = NULL;
    static char buf[400000];
    size_t n = 0;
    struct jm_info info;

    snprintf(id, sizeof(id), "%s", jm_job_id(j));
    wait_ended(j);
    cr_assert_eq(jm_reader_open(m, j, OUTLOG_SELECT_ALL, 0, &rd, NULL), 0);
    jm_job_put(j); /* only the reader holds the job now */
    cr_assert_eq(jm_remove(m, id, "alice"), 0);
    for (int i = 0; i < 500 && folder_exists(id); i++)
        sleep_ms(10);
    cr_expect_not(folder_exists(id), "the folder goes while the reader is open");
    for (;;) {
        struct outlog_chunk_info ci;
        ssize_t r = jm_reader_read(rd, buf + n, sizeof(buf) - 1 - n, &ci);
        cr_assert_geq(r, 0, "read: %s", strerror((int)-r));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    cr_expect_eq(n, 300004, "every byte the output had");
    jm_reader_final_info(rd, &info);
    cr_expect_eq(info.status.job.state, JOB_EXITED);
    jm_reader_free(rd); /* the last reference: the job and its log are freed here */
    jm_shutdown(m);
    jm_free(m);
}

Test(jm, retention_and_the_state_cap_remove_ended_jobs_oldest_first)
{
    struct jm_config cfg = manager_config(1, 0);
    char err[256] = "", id1[JM_ID_LEN + 1], id2[JM_ID_LEN + 1], id3[JM_ID_LEN + 1];
    struct jm *m = NULL;
    struct jm_job *j1, *j2, *j3, *found;

    cfg.max_state_bytes = 150000;
    cr_assert_eq(jm_new(&cfg, &m, err, sizeof(err)), 0, "%s", err);
    j1 = must_start(m, "alice", NULL, "head -c 100000 /dev/zero");
    wait_ended(j1);
    j2 = must_start(m, "alice", NULL, "head -c 100000 /dev/zero");
    wait_ended(j2);
    j3 = must_start(m, "alice", NULL, "head -c 100000 /dev/zero; sleep 30");
    snprintf(id1, sizeof(id1), "%s", jm_job_id(j1));
    snprintf(id2, sizeof(id2), "%s", jm_job_id(j2));
    snprintf(id3, sizeof(id3), "%s", jm_job_id(j3));
    jm_job_put(j1);
    jm_job_put(j2);
    for (int i = 0; i < 500 && (found = jm_lookup(m, id2, "alice")); i++) {
        jm_job_put(found);
        sleep_ms(10);
    }
    cr_expect_null(jm_lookup(m, id1, "alice"), "the first job to end goes first");
    cr_expect_null(jm_lookup(m, id2, "alice"), "then the second, while over the cap");
    found = jm_lookup(m, id3, "alice");
    cr_expect_not_null(found, "a running job is never removed");
    jm_job_put(found);
    cr_expect_eq(jm_stop(m, id3, "alice", SIGKILL, -1, stopped_nop, NULL), 0);
    jm_job_put(j3);
    jm_shutdown(m);
    jm_free(m);

    /* A restart with a retention already past: the sweep at start removes the ended job. */
    cfg.max_state_bytes = 0;
    cfg.retain_ended_ms = 1;
    cr_assert_eq(jm_new(&cfg, &m, err, sizeof(err)), 0, "%s", err);
    for (int i = 0; i < 500 && (found = jm_lookup(m, id3, "alice")); i++) {
        jm_job_put(found);
        sleep_ms(10);
    }
    cr_expect_null(jm_lookup(m, id3, "alice"), "expired while the server was down");
    jm_free(m);
}
