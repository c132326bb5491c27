/* core/cgroup on this host's real cgroup v1 hierarchies (root). Every test works under its own
 * root "runjob-test.<pid>" in each hierarchy and removes it, and every job cgroup in it, in
 * .fini, pass or fail. Nothing outside those directories is touched. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/cgroup.h"
#include "core/cleanup.h"
#include "test/cg_limit_pairs.h"
#include "core/proc.h"
#include "test/probes.h"

static const char *const hiers[] = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};

static char root[64];
static bool setup_done;

/* Root, and the layout core/cgroup's probe picks v1 in: each of the six hierarchies mounted as
 * cgroup v1 (a pure v2 host, or a hybrid one without some of them, skips with what is missing:
 * the vm tier boots both layouts), and no unified hierarchy that has every controller, which the
 * probe would take first. */
static void skip_unless_v1_root(void)
{
    _cleanup_free_ char *ctl = NULL;
    unsigned mask = 0;
    struct statfs sfs;
    char path[64];

    if (geteuid() != 0)
        cr_skip_test("needs root");
    for (size_t i = 0; i < ELEMENTSOF(hiers); i++) {
        snprintf(path, sizeof(path), "/sys/fs/cgroup/%s", hiers[i]);
        if (statfs(path, &sfs) < 0 || sfs.f_type != CGROUP_SUPER_MAGIC)
            cr_skip_test("no cgroup v1 '%s' hierarchy at %s on this host", hiers[i], path);
    }
    if (proc_read_file_at(AT_FDCWD, "/sys/fs/cgroup/unified/cgroup.controllers", &ctl) == 0 &&
        proc_parse_controllers(ctl, &mask) == 0 &&
        (mask & (PROC_CG_CPU | PROC_CG_MEMORY | PROC_CG_IO | PROC_CG_PIDS)) ==
            (PROC_CG_CPU | PROC_CG_MEMORY | PROC_CG_IO | PROC_CG_PIDS))
        cr_skip_test("the unified hierarchy has every controller here: runjob uses cgroup v2");
}

static void setup(void)
{
    skip_unless_v1_root();
    snprintf(root, sizeof(root), "runjob-test.%d", (int)getpid());
    /* children re-parent to us, so grandchildren can be reaped and counted */
    cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    setup_done = true;
}

/* Removes every job cgroup under our root and the root itself, in each hierarchy. */
static void teardown(void)
{
    if (!setup_done)
        return;
    struct cg_config cfg = {.root = root};
    struct cg_manager *m = NULL;
    if (cg_manager_new(&cfg, &m, NULL, 0) == 0) {
        char path[256];
        snprintf(path, sizeof(path), "/sys/fs/cgroup/memory/%s", root);
        DIR *d = opendir(path);
        for (struct dirent *e; d && (e = readdir(d));)
            if (e->d_type == DT_DIR && e->d_name[0] != '.')
                (void)cg_cleanup_stale(m, e->d_name);
        if (d)
            closedir(d);
        cg_manager_free(m);
    }
    for (size_t i = 0; i < ELEMENTSOF(hiers); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s", hiers[i], root);
        if (rmdir(path) < 0 && errno != ENOENT)
            fprintf(stderr, "teardown: rmdir %s: %s\n", path, strerror(errno));
    }
    /* reap anything left (a failed test) */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

TestSuite(cg_v1, .init = setup, .fini = teardown, .timeout = 60);

static struct cg_manager *manager(void)
{
    struct cg_config cfg = {.root = root};
    struct cg_manager *m = NULL;
    char err[256] = "";
    int r = cg_manager_new(&cfg, &m, err, sizeof(err));
    cr_assert_eq(r, 0, "cg_manager_new: %s (%s)", strerror(-r), err);
    cr_assert_eq(cg_manager_mode(m), CG_V1, "this host is cgroup v1");
    return m;
}

static bool cg_dir_exists(const char *hier, const char *id)
{
    char path[256];
    snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s/%s", hier, root, id);
    return access(path, F_OK) == 0;
}

static char *read_cg(const char *hier, const char *id, const char *file)
{
    char path[256];
    char *buf = NULL;
    snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s/%s/%s", hier, root, id, file);
    int r = proc_read_file_at(AT_FDCWD, path, &buf);
    cr_assert_eq(r, 0, "%s: %s", path, strerror(-r));
    return buf;
}

/* Forks a child that waits on a sync pipe until the parent has attached it (as the shim
 * does), then runs fn. */
static pid_t fork_attached(struct cg *cg, void (*fn)(void *), void *arg)
{
    int sync[2];
    cr_assert_eq(pipe2(sync, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char c;
        close(sync[1]);
        if (read(sync[0], &c, 1) != 1)
            _exit(120);
        fn(arg);
        _exit(0);
    }
    close(sync[0]);
    int r = cg_attach(cg, pid);
    cr_assert_eq(r, 0, "cg_attach: %s", strerror(-r));
    cr_assert_eq(write(sync[1], "x", 1), 1);
    close(sync[1]);
    return pid;
}

/* The disks io limits apply to, as core/cgroup-probe.c finds them ("MAJ:MIN": every entry of
 * /sys/block with a dev file, but loop, ram and zram); how many (at most max). */
static size_t io_devices(char (*devs)[32], size_t max)
{
    DIR *d = opendir("/sys/block");
    size_t n = 0;

    for (struct dirent *e; d && n < max && (e = readdir(d));) {
        char path[300];
        _cleanup_free_ char *dev = NULL;

        if (e->d_name[0] == '.' || strncmp(e->d_name, "loop", 4) == 0 ||
            strncmp(e->d_name, "ram", 3) == 0 || strncmp(e->d_name, "zram", 4) == 0)
            continue;
        snprintf(path, sizeof(path), "/sys/block/%s/dev", e->d_name);
        if (proc_read_file_at(AT_FDCWD, path, &dev) < 0)
            continue;
        dev[strcspn(dev, "\n")] = '\0';
        snprintf(devs[n++], 32, "%s", dev);
    }
    if (d)
        closedir(d);
    return n;
}

static void sleep_forever(void *arg)
{
    (void)arg;
    for (;;)
        pause();
}

static int wait_signal(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFSIGNALED(st) ? WTERMSIG(st) : -WEXITSTATUS(st);
}

/* The real probe (statfs, default base). The default root "runjob" itself is left to the unit
 * tests: creating and removing it here would race with a server or another tier using it. */
Test(cg_v1, probe_picks_v1)
{
    struct cg_config cfg = {.root = root, .mode = CG_PROBE};
    struct cg_manager *m = NULL;
    char err[256] = "";
    int r = cg_manager_new(&cfg, &m, err, sizeof(err));
    cr_assert_eq(r, 0, "%s (%s)", strerror(-r), err);
    cr_assert_eq(cg_manager_mode(m), CG_V1);
    for (size_t i = 0; i < ELEMENTSOF(hiers); i++) {
        char path[128];
        snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s", hiers[i], root);
        cr_assert(access(path, F_OK) == 0, "%s not created", path);
    }
    cg_manager_free(m);
}

Test(cg_v1, limits_attach_kill_destroy)
{
    _cleanup_(cg_manager_freep) struct cg_manager *m = manager();
    _cleanup_(cg_freep) struct cg *cg = NULL;
    struct limits lim = {.cpu_millis = 500,
                         .memory_bytes = 64 << 20,
                         .io_rbps = 1000000,
                         .io_wiops = 300,
                         .pids = 32};
    int r = cg_create(m, "job1", &lim, &cg);
    cr_assert_eq(r, 0, "cg_create: %s", strerror(-r));
    cr_assert_eq(cg_get_dirfd(cg), -EOPNOTSUPP);

    _cleanup_free_ char *quota = read_cg("cpu", "job1", "cpu.cfs_quota_us");
    cr_assert_str_eq(quota, "50000\n");
    _cleanup_free_ char *period = read_cg("cpu", "job1", "cpu.cfs_period_us");
    cr_assert_str_eq(period, "100000\n");
    _cleanup_free_ char *mem = read_cg("memory", "job1", "memory.limit_in_bytes");
    cr_assert_str_eq(mem, "67108864\n");
    char memsw_path[256];
    snprintf(memsw_path, sizeof(memsw_path),
             "/sys/fs/cgroup/memory/%s/job1/memory.memsw.limit_in_bytes", root);
    if (access(memsw_path, F_OK) == 0) {
        _cleanup_free_ char *memsw = read_cg("memory", "job1", "memory.memsw.limit_in_bytes");
        cr_assert_str_eq(memsw, "67108864\n");
    }
    _cleanup_free_ char *pids = read_cg("pids", "job1", "pids.max");
    cr_assert_str_eq(pids, "32\n");
    /* A rule for each of this host's disks, whatever they are called (vda, sda, nvme0n1). */
    char devs[64][32], want[64];
    size_t n_devs = io_devices(devs, ELEMENTSOF(devs));
    _cleanup_free_ char *rbps = read_cg("blkio", "job1", "blkio.throttle.read_bps_device");
    _cleanup_free_ char *wiops = read_cg("blkio", "job1", "blkio.throttle.write_iops_device");
    for (size_t i = 0; i < n_devs; i++) {
        snprintf(want, sizeof(want), "%s 1000000", devs[i]);
        cr_assert_not_null(strstr(rbps, want), "'%s' lacks '%s'", rbps, want);
        snprintf(want, sizeof(want), "%s 300", devs[i]);
        cr_assert_not_null(strstr(wiops, want), "'%s' lacks '%s'", wiops, want);
    }
    if (n_devs == 0)
        cr_assert_str_eq(rbps, "", "no disk in /sys/block, yet a rule");

    pid_t child = fork_attached(cg, sleep_forever, NULL);
    char want_path[96];
    snprintf(want_path, sizeof(want_path), "/%s/job1", root);
    for (size_t i = 0; i < ELEMENTSOF(hiers); i++) {
        _cleanup_free_ char *p = NULL;
        r = proc_read_cgroup(child, hiers[i], &p);
        cr_assert_eq(r, 0, "%s: %s", hiers[i], strerror(-r));
        cr_assert_str_eq(p, want_path, "controller %s", hiers[i]);
    }
    cr_assert_eq(cg_is_populated(cg), 1);

    r = cg_kill(cg, -1);
    cr_assert_eq(r, 0, "cg_kill: %s", strerror(-r));
    cr_assert_eq(wait_signal(child), SIGKILL);
    cr_assert_eq(cg_is_populated(cg), 0);
    _cleanup_free_ char *fz = read_cg("freezer", "job1", "freezer.state");
    cr_assert_str_eq(fz, "THAWED\n");

    r = cg_destroy(cg, -1);
    cr_assert_eq(r, 0, "cg_destroy: %s", strerror(-r));
    for (size_t i = 0; i < ELEMENTSOF(hiers); i++)
        cr_assert_not(cg_dir_exists(hiers[i], "job1"), "%s left", hiers[i]);
    cr_assert_eq(cg_destroy(cg, -1), 0, "idempotent");
}

/* Ignores SIGTERM, forks a grandchild that starts its own session and also ignores SIGTERM,
 * reports its pid and sleeps. */
static void stubborn(void *arg)
{
    int wfd = *(int *)arg;
    signal(SIGTERM, SIG_IGN);
    pid_t g = fork();
    if (g == 0) {
        setsid();
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        for (;;)
            pause();
    }
    if (write(wfd, &g, sizeof(g)) != sizeof(g))
        _exit(121);
    for (;;)
        pause();
}

Test(cg_v1, kill_reaches_sigterm_ignorer_and_grandchild)
{
    _cleanup_(cg_manager_freep) struct cg_manager *m = manager();
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job2", NULL, &cg), 0);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    pid_t child = fork_attached(cg, stubborn, &p[1]);
    close(p[1]);
    pid_t grandchild = 0;
    cr_assert_eq(read(p[0], &grandchild, sizeof(grandchild)), (ssize_t)sizeof(grandchild));
    close(p[0]);
    cr_assert_gt(grandchild, 0);

    _cleanup_free_ char *procs = read_cg("freezer", "job2", "cgroup.procs");
    char gs[16];
    snprintf(gs, sizeof(gs), "%d\n", grandchild);
    cr_assert_not_null(strstr(procs, gs), "grandchild in the cgroup: '%s'", procs);

    kill(child, SIGTERM); /* ignored */
    kill(grandchild, SIGTERM);
    usleep(50000);
    cr_assert_eq(kill(child, 0), 0, "SIGTERM ignored");

    int r = cg_kill(cg, -1);
    cr_assert_eq(r, 0, "cg_kill: %s", strerror(-r));
    cr_assert_eq(wait_signal(child), SIGKILL);
    cr_assert_eq(wait_signal(grandchild), SIGKILL, "re-parented to us (subreaper) and killed");
    cr_assert_eq(cg_destroy(cg, -1), 0);
    cr_assert_not(cg_dir_exists("freezer", "job2"));
}

/* Destroy without an explicit kill, with the processes still unreaped: zombies must not keep
 * the cgroup alive. */
Test(cg_v1, destroy_kills_and_zombies_do_not_block)
{
    _cleanup_(cg_manager_freep) struct cg_manager *m = manager();
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job3", NULL, &cg), 0);
    pid_t a = fork_attached(cg, sleep_forever, NULL);
    pid_t b = fork_attached(cg, sleep_forever, NULL);
    int r = cg_destroy(cg, 3000);
    cr_assert_eq(r, 0, "cg_destroy: %s", strerror(-r));
    cr_assert_not(cg_dir_exists("memory", "job3"));
    cr_assert_eq(wait_signal(a), SIGKILL);
    cr_assert_eq(wait_signal(b), SIGKILL);
}

static void burn_and_alloc(void *arg)
{
    size_t bytes = *(size_t *)arg;
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        _exit(122);
    for (size_t i = 0; i < bytes; i += 4096)
        p[i] = 1;
    struct timespec t0, t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    do
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 300000000L);
    _exit(0);
}

Test(cg_v1, usage_cpu_and_peak_memory)
{
    _cleanup_(cg_manager_freep) struct cg_manager *m = manager();
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job4", NULL, &cg), 0);
    size_t bytes = 32 << 20;
    pid_t child = fork_attached(cg, burn_and_alloc, &bytes);
    cr_assert_eq(wait_signal(child), 0, "child exited cleanly");
    struct cg_usage u;
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_geq(u.cpu_usec, 250000, "cpu %lu us", (unsigned long)u.cpu_usec);
    cr_assert_lt(u.cpu_usec, 30000000);
    cr_assert_geq(u.memory_peak_bytes, bytes, "peak %lu", (unsigned long)u.memory_peak_bytes);
    cr_assert_not(u.oom_killed);
    cr_assert_eq(cg_destroy(cg, -1), 0);
}

Test(cg_v1, oom_is_reported)
{
    const char *swap = probe_swap_escapes_memory_limits();
    if (swap)
        cr_skip_test("%s", swap);
    _cleanup_(cg_manager_freep) struct cg_manager *m = manager();
    _cleanup_(cg_freep) struct cg *cg = NULL;
    struct limits lim = {.memory_bytes = 16 << 20};
    cr_assert_eq(cg_create(m, "job5", &lim, &cg), 0);
    size_t bytes = 128 << 20;
    pid_t child = fork_attached(cg, burn_and_alloc, &bytes);
    cr_assert_eq(wait_signal(child), SIGKILL, "OOM-killed (no swap to escape to)");
    struct cg_usage u;
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert(u.oom_killed);
    cr_assert_leq(u.memory_peak_bytes, (uint64_t)16 << 20);
    cr_assert_eq(cg_destroy(cg, -1), 0);
}

static void fork_many(void *arg)
{
    int n = *(int *)arg, ok = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            pause();
            _exit(0);
        }
        if (p > 0)
            ok++;
    }
    _exit(ok); /* the children stay behind for the kill */
}

Test(cg_v1, pids_limit_holds)
{
    _cleanup_(cg_manager_freep) struct cg_manager *m = manager();
    _cleanup_(cg_freep) struct cg *cg = NULL;
    struct limits lim = {.pids = 5};
    cr_assert_eq(cg_create(m, "job6", &lim, &cg), 0);
    int n = 20;
    pid_t child = fork_attached(cg, fork_many, &n);
    int forked = -wait_signal(child);
    cr_assert_eq(forked, 4, "5 pids: the child and 4 more, got %d", forked);
    cr_assert_eq(cg_destroy(cg, -1), 0);
    while (waitpid(-1, NULL, WNOHANG) > 0) /* the orphans came to us, killed */
        ;
}

Test(cg_v1, stale_cleanup_after_crash)
{
    struct cg_manager *m = manager();
    struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "stale1", NULL, &cg), 0);
    pid_t child = fork_attached(cg, sleep_forever, NULL);
    cg_free(cg); /* the server "dies": fds gone, cgroup and process stay */
    cg_manager_free(m);

    m = manager(); /* the next server */
    cr_assert_eq(cg_cleanup_stale(m, "stale1"), 1);
    cr_assert_eq(wait_signal(child), SIGKILL);
    for (size_t i = 0; i < ELEMENTSOF(hiers); i++)
        cr_assert_not(cg_dir_exists(hiers[i], "stale1"));
    cr_assert_eq(cg_cleanup_stale(m, "stale1"), 0);
    cr_assert_eq(cg_cleanup_stale(m, "never-existed"), 0);
    cg_manager_free(m);
}

Test(cg_v1, create_existing_is_refused)
{
    _cleanup_(cg_manager_freep) struct cg_manager *m = manager();
    _cleanup_(cg_freep) struct cg *a = NULL;
    struct cg *b = NULL;
    cr_assert_eq(cg_create(m, "dup", NULL, &a), 0);
    cr_assert_eq(cg_create(m, "dup", NULL, &b), -EEXIST);
    cr_assert(cg_dir_exists("freezer", "dup"), "the first one is kept");
    cr_assert_eq(cg_destroy(a, -1), 0);
}

/* The content of file in the job's directory in hier, or NULL if it cannot be read (write-only
 * files such as cgroup.event_control, memory.force_empty). */
static char *read_setting(const char *hier, const char *id, const char *file)
{
    char path[640];
    char *buf = NULL;
    snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s/%s/%s", hier, root, id, file);
    return proc_read_file_at(AT_FDCWD, path, &buf) == 0 ? buf : NULL;
}

/* got with its lines "MAJ:MIN <name> 0" left out equals want. Once a blkio throttle rule
 * existed for a device, the kernel keeps that device's group (blkg) after the rule is removed,
 * and the blkio statistics list it, with zero counters in an empty cgroup: a statistic, not a
 * setting, and nothing user space can undo. */
static bool same_but_zero_device_stats(const char *want, const char *got)
{
    _cleanup_free_ char *kept = calloc(1, strlen(got) + 1);
    size_t len = 0;
    for (const char *l = got; *l;) {
        size_t n = strcspn(l, "\n");
        unsigned maj, min;
        char name[32], zero[8];
        char line[256];
        snprintf(line, sizeof(line), "%.*s", (int)n, l);
        bool zero_dev =
            sscanf(line, "%u:%u %31s %7s", &maj, &min, name, zero) == 4 && strcmp(zero, "0") == 0;
        if (!zero_dev) {
            memcpy(kept + len, l, n);
            len += n;
            if (l[n] == '\n')
                kept[len++] = '\n';
        }
        l += n + (l[n] == '\n');
    }
    return strcmp(kept, want) == 0;
}

/* true when every setting of hier's a_id directory equals b_id's; differences go to stderr.
 * Every readable file is compared, except those whose content differs between a and its
 * control c (made exactly like a) and cpu.stat: counters and statistics, not settings. */
static bool same_files(const char *hier, const char *a_id, const char *b_id, const char *ctl_id,
                       size_t *ret_compared)
{
    char path[256];
    bool same = true;
    size_t n = 0, n_a = 0, n_b = 0;

    snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s/%s", hier, root, b_id);
    DIR *d = opendir(path);
    cr_assert_not_null(d, "%s: %s", path, strerror(errno));
    for (struct dirent *e; (e = readdir(d));)
        n_b += e->d_type == DT_REG;
    closedir(d);
    snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s/%s", hier, root, a_id);
    d = opendir(path);
    cr_assert_not_null(d, "%s: %s", path, strerror(errno));
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_type != DT_REG)
            continue;
        n_a++;
        _cleanup_free_ char *a = read_setting(hier, a_id, e->d_name);
        _cleanup_free_ char *b = read_setting(hier, b_id, e->d_name);
        _cleanup_free_ char *c = read_setting(hier, ctl_id, e->d_name);
        /* cpu.stat counts the quota periods that ran while a cpu limit was set: history. */
        if (!a || !c || strcmp(a, c) != 0 || strcmp(e->d_name, "cpu.stat") == 0)
            continue;
        n++;
        if (!b) {
            fprintf(stderr, "%s: %s unreadable in %s\n", hier, e->d_name, b_id);
            same = false;
        } else if (strcmp(a, b) != 0 && !same_but_zero_device_stats(a, b)) {
            fprintf(stderr, "%s: %s is '%s' in %s, '%s' in %s\n", hier, e->d_name, a, a_id, b,
                    b_id);
            same = false;
        }
    }
    closedir(d);
    if (n_a != n_b) {
        fprintf(stderr, "%s: %zu files in %s, %zu in %s\n", hier, n_a, a_id, n_b, b_id);
        same = false;
    }
    *ret_compared += n;
    return same;
}

/* A cgroup made ahead without limits and given them at the start ends up exactly like one
 * made with them, whatever the limits (none, some, all): every readable file in every
 * hierarchy. */
Test(cg_v1, limits_written_later_equal_limits_at_creation)
{
    _cleanup_(cg_manager_freep) struct cg_manager *m = manager();
    const struct limits cases[] = {
        {0},
        {.pids = 40},
        {.cpu_millis = 250, .memory_bytes = 32 << 20},
        {.cpu_millis = 1500,
         .memory_bytes = 96 << 20,
         .io_riops = 100,
         .io_wiops = 200,
         .io_rbps = 1 << 20,
         .io_wbps = 2 << 20,
         .pids = 64},
    };
    for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
        struct cg *at = NULL, *later = NULL, *ctl = NULL;
        size_t compared = 0;
        cr_assert_eq(cg_create(m, "at-create", &cases[k], &at), 0);
        cr_assert_eq(cg_create(m, "control", &cases[k], &ctl), 0);
        cr_assert_eq(cg_create(m, "ahead", NULL, &later), 0);
        cr_assert_str_eq(cg_get_id(later), "ahead");
        int r = cg_set_limits(later, &cases[k]);
        cr_assert_eq(r, 0, "cg_set_limits: %s", strerror(-r));
        for (size_t i = 0; i < ELEMENTSOF(hiers); i++)
            cr_expect(same_files(hiers[i], "at-create", "ahead", "control", &compared),
                      "case %zu, %s: see stderr", k, hiers[i]);
        /* The settings that matter were among the files compared. */
        cr_expect_gt(compared, 40, "case %zu: only %zu files compared", k, compared);
        if (cases[k].pids) {
            _cleanup_free_ char *p = read_cg("pids", "ahead", "pids.max");
            cr_expect_eq(strtoull(p, NULL, 10), cases[k].pids);
        }
        cr_assert_eq(cg_destroy(at, -1), 0);
        cr_assert_eq(cg_destroy(ctl, -1), 0);
        cr_assert_eq(cg_destroy(later, -1), 0);
        cg_free(at);
        cg_free(ctl);
        cg_free(later);
    }
}

/* A cgroup made with from (e.g. the server's default limits, ahead of its job) and changed to
 * to at the start ends up exactly like one made with to: every readable file in every
 * hierarchy, for raising, lowering, lifting (to 0) and setting from 0 every field. The kernel
 * checks the memory write order itself: memsw.limit_in_bytes below limit_in_bytes is EINVAL. */
Test(cg_v1, changed_limits_equal_limits_at_creation)
{
    _cleanup_(cg_manager_freep) struct cg_manager *m = manager();
    for (size_t k = 0; k < ELEMENTSOF(cg_limit_pairs); k++) {
        struct cg *fresh = NULL, *changed = NULL, *ctl = NULL;
        size_t compared = 0;
        int r = cg_create(m, "fresh", &cg_limit_pairs[k].to, &fresh);
        cr_assert_eq(r, 0, "pair %zu: cg_create(to): %s", k, strerror(-r));
        cr_assert_eq(cg_create(m, "control", &cg_limit_pairs[k].to, &ctl), 0);
        r = cg_create(m, "changed", &cg_limit_pairs[k].from, &changed);
        cr_assert_eq(r, 0, "pair %zu: cg_create(from): %s", k, strerror(-r));
        r = cg_change_limits(changed, &cg_limit_pairs[k].from, &cg_limit_pairs[k].to);
        cr_assert_eq(r, 0, "pair %zu: cg_change_limits: %s", k, strerror(-r));
        for (size_t i = 0; i < ELEMENTSOF(hiers); i++)
            cr_expect(same_files(hiers[i], "fresh", "changed", "control", &compared),
                      "pair %zu, %s: see stderr", k, hiers[i]);
        cr_expect_gt(compared, 40, "pair %zu: only %zu files compared", k, compared);
        /* The comparison saw the limits themselves. */
        _cleanup_free_ char *mem = read_cg("memory", "changed", "memory.limit_in_bytes");
        if (cg_limit_pairs[k].to.memory_bytes)
            cr_expect_eq(strtoull(mem, NULL, 10), cg_limit_pairs[k].to.memory_bytes, "pair %zu", k);
        else
            cr_expect_gt(strtoull(mem, NULL, 10), (uint64_t)1 << 60, "pair %zu: lifted", k);
        cr_assert_eq(cg_destroy(fresh, -1), 0);
        cr_assert_eq(cg_destroy(ctl, -1), 0);
        cr_assert_eq(cg_destroy(changed, -1), 0);
        cg_free(fresh);
        cg_free(ctl);
        cg_free(changed);
    }
}
