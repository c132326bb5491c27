/* Shared by test_job.c (output, isolation, concurrency), test_job_limits.c (limits, the job's
 * cgroup made ahead) and test_job_stops.c (failures to start, stops, kills, the server's death),
 * and through them by test_job_pool*.c: core/job on this host, as root: real namespaces, the
 * host's cgroups (v1 here; on a v2 host a job's cgroup is found by its name, and the tests that
 * read v1's limit files skip), the real shim (RUNJOB_BIN, default bin/runjob relative to the repo
 * root). Every test makes its own runner and temp dir; Criterion runs each in its own process.
 * Limits are short so the suites are quick. Helpers are static inline so that a file using
 * only some of them builds warning-free. */
#pragma once
#include <criterion/criterion.h>
#include <dirent.h>
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
#include "test/probes.h"

#define NOBODY 65534
/* A job made ahead for id, to run as nobody (job_spare_new). */
#define AHEAD(job_id) (&(struct job_spare_spec){.id = (job_id), .uid = NOBODY, .gid = NOBODY})
/* test_job_pool*.c include a test_job*.c with 2: every test then runs on pooled shims. */
#ifndef TEST_PRESPAWN
#define TEST_PRESPAWN 0
#endif

static char tmpdir[64];
static struct job_runner *runner;
static atomic_int id_seq;

static inline const char *runjob_bin(void)
{
    const char *b = getenv("RUNJOB_BIN");
    return b && *b ? b : "bin/runjob";
}

static inline void need_root(void)
{
    if (geteuid() != 0)
        cr_skip_test("needs root (namespaces, cgroups)");
    if (access(runjob_bin(), X_OK) != 0)
        cr_skip_test("no runjob binary at '%s' (set RUNJOB_BIN or run make)", runjob_bin());
}

static inline struct job_runner *new_runner(bool allow_root)
{
    struct job_runner_config cfg = {
        .shim_exe = runjob_bin(), .allow_root_user = allow_root, .prespawn_shims = TEST_PRESPAWN};
    struct job_runner *r = NULL;

    cr_assert_eq(job_runner_new(&cfg, &r), 0, "job_runner_new failed");
    return r;
}

static void setup(void)
{
    need_root();
    /* Not below /tmp: a job has its own, empty /tmp, and some tests hand it paths here. */
    strcpy(tmpdir, "/var/lib/test_job.XXXXXX");
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

static inline void make_id(char *buf, size_t len)
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

/* A job's stdin: a pipe, or a terminal of rows x cols (0: 24x80). */
struct stdin_spec {
    enum job_input input;
    unsigned short rows, cols;
};

/* Starts path with args (NULL-terminated) as uid in cwd (NULL: "/"); limits may be NULL.
 * ahead: the job's cgroup (made ahead with job_spare_new, for run->id, already set) goes
 * in the spec. in: the job's stdin (NULL: /dev/null). */
static inline void start_spec(struct run *run, struct job_runner *r, const struct limits *lim,
                              enum job_network net, uid_t uid, const char *cwd, const char *path,
                              const char *const *args, struct job_spare *ahead,
                              const struct stdin_spec *in)
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
        .spare = ahead,
    };
    if (lim)
        spec.limits = *lim;
    if (in) {
        spec.input = in->input;
        spec.tty_rows = in->rows;
        spec.tty_cols = in->cols;
    }
    run->r = job_start(r, &spec, NULL, NULL, &run->j, run->err, sizeof(run->err));
}

static inline void start_ex(struct run *run, struct job_runner *r, const struct limits *lim,
                            enum job_network net, uid_t uid, const char *path,
                            const char *const *args)
{
    memset(run, 0, sizeof(*run));
    make_id(run->id, sizeof(run->id));
    start_spec(run, r, lim, net, uid, NULL, path, args, NULL, NULL);
}

/* start_ex in cwd. */
static inline void start_in(struct run *run, struct job_runner *r, const struct limits *lim,
                            enum job_network net, uid_t uid, const char *cwd, const char *path,
                            const char *const *args)
{
    memset(run, 0, sizeof(*run));
    make_id(run->id, sizeof(run->id));
    start_spec(run, r, lim, net, uid, cwd, path, args, NULL, NULL);
}

/* start_ex with the job's cgroup made ahead (asserted to exist before the start) with the
 * limits ahead_lim (NULL: none), as the server does with its defaults. */
static inline void start_ahead_with(struct run *run, const struct limits *ahead_lim,
                                    const struct limits *lim, const char *path,
                                    const char *const *args)
{
    struct job_spare_spec a = {.uid = NOBODY, .gid = NOBODY};
    struct job_spare *cg = NULL;

    memset(run, 0, sizeof(*run));
    make_id(run->id, sizeof(run->id));
    a.id = run->id;
    if (ahead_lim)
        a.limits = *ahead_lim;
    int r = job_spare_new(runner, &a, &cg);
    cr_assert_eq(r, 0, "job_spare_new: %s", strerror(-r));
    cr_assert_not_null(cg);
    start_spec(run, runner, lim, JOB_NET_NONE, NOBODY, NULL, path, args, cg, NULL);
}

static inline void start_ahead(struct run *run, const struct limits *lim, const char *path,
                               const char *const *args)
{
    start_ahead_with(run, NULL, lim, path, args);
}

/* start() with the job's stdin (in: NULL for /dev/null). */
static inline void start_stdin(struct run *run, const struct stdin_spec *in, const char *path,
                               const char *const *args)
{
    memset(run, 0, sizeof(*run));
    make_id(run->id, sizeof(run->id));
    start_spec(run, runner, NULL, JOB_NET_NONE, NOBODY, NULL, path, args, NULL, in);
    cr_assert_eq(run->r, 0, "job_start('%s'): %s (%s)", path, strerror(-run->r), run->err);
}

static inline void start(struct run *run, const char *path, const char *const *args)
{
    start_stdin(run, NULL, path, args);
}

static inline void finish(struct run *run)
{
    job_wait(run->j);
    job_get_status(run->j, &run->st);
}

/* Everything the job wrote on the selected streams (the log is closed by then). */
static inline char *output(struct run *run, unsigned mask)
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

static inline void done(struct run *run)
{
    job_free(run->j);
    outlog_free(run->log);
}

/* A directory named id below dir (depth at most 12), holding the file with (NULL: any), into
 * found. The job ids here are unique, so the name alone finds a job's cgroup wherever the runner
 * made it: v1's <hierarchy>/runjob/<id>, v2's <the runner's cgroup>/runjob/<id>. Directories
 * that go away during the walk are passed over. */
static inline bool find_cgroup_dir(const char *dir, const char *id, const char *with, int depth,
                                   char *found, size_t len)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool hit = false;
    char p[512];

    if (!d)
        return false;
    while (!hit && (e = readdir(d))) {
        if (e->d_type != DT_DIR || e->d_name[0] == '.')
            continue;
        if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) >= (int)sizeof(p))
            continue;
        if (strcmp(e->d_name, id) == 0) {
            char f[600];
            snprintf(f, sizeof(f), "%s/%s", p, with ? with : ".");
            if (access(f, F_OK) == 0) {
                snprintf(found, len, "%s", p);
                hit = true;
            }
        } else if (depth < 12) {
            hit = find_cgroup_dir(p, id, with, depth + 1, found, len);
        }
    }
    closedir(d);
    return hit;
}

static inline bool cgroup_exists(const char *id)
{
    static const char *const hier[] = {"pids", "memory", "cpu", "cpuacct", "blkio", "freezer"};
    char p[512];

    for (size_t i = 0; i < sizeof(hier) / sizeof(hier[0]); i++) {
        snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/runjob/%s", hier[i], id);
        if (access(p, F_OK) == 0)
            return true;
    }
    return find_cgroup_dir("/sys/fs/cgroup", id, NULL, 0, p, sizeof(p));
}

/* The tests that read the job's limits in v1's files (pids.max, memory.limit_in_bytes,
 * cpu.cfs_quota_us, blkio.throttle.*) skip where the runner uses v2, whose files say it in
 * other words; the vm tier checks v2's. */
static inline void need_cgroup_v1(void)
{
    const char *mode = job_runner_cgroup_mode(runner);

    if (strcmp(mode, "v1") != 0) {
        teardown(); /* a skip does not run the suite's .fini */
        cr_skip_test("reads the job's cgroup v1 files; runjob uses cgroup %s on this host", mode);
    }
}

/* A memory hog is OOM-killed only where swap cannot take its excess. */
static inline void need_memory_limits_without_swap(void)
{
    const char *why = probe_swap_escapes_memory_limits();

    if (why) {
        teardown(); /* a skip does not run the suite's .fini */
        cr_skip_test("%s", why);
    }
}

/* The first line of a file of the job's v1 cgroup in hier, into buf ("" if unreadable). */
static inline const char *cgroup_file(const char *hier, const char *id, const char *file, char *buf,
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

/* Pids in the job's pids cgroup (v1's pids hierarchy, v2's job directory), or -1. */
static inline int cgroup_pids(const char *id, pid_t *pids, int max)
{
    char p[600], dir[512];
    int n = 0, pid;
    FILE *f;

    snprintf(p, sizeof(p), "/sys/fs/cgroup/pids/runjob/%s/cgroup.procs", id);
    f = fopen(p, "r");
    if (!f && find_cgroup_dir("/sys/fs/cgroup", id, "pids.max", 0, dir, sizeof(dir))) {
        snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
        f = fopen(p, "r");
    }
    if (!f)
        return -1;
    while (n < max && fscanf(f, "%d", &pid) == 1)
        pids[n++] = pid;
    fclose(f);
    return n;
}

static inline int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
