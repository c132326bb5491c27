/* core/cgroup against a fake cgroupfs in a mkdtemp dir: both backends' path and value
 * translation. The test plays the kernel through cg_test_hooks: after_mkdir creates the
 * interface files a real cgroup directory would have (leaving some out to simulate older
 * kernels), rmdir removes them. Files written several times per job (io.max, blkio.throttle.*)
 * are FIFOs held open here, so every write can be read back in order. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/cgroup.h"
#include "core/cleanup.h"

#define MAX_FIFOS 64

struct fake {
    char dir[64];  /* the temp dir */
    char base[96]; /* <dir>/cg: the fake cgroupfs */
    char block[96];
    bool v2;
    bool no_memsw, no_swap_max, no_kill, no_peak, no_pids_max, comount;
    const char *events; /* cgroup.events content on v2 */
    struct {
        char path[256];
        int fd;
    } fifo[MAX_FIFOS];
    int n_fifo;
};

static struct fake F;

static void put(int dfd, const char *name, const char *content)
{
    int fd = openat(dfd, name, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0, "create %s: %s", name, strerror(errno));
    cr_assert_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static void fifo(int dfd, const char *name)
{
    cr_assert_eq(mkfifoat(dfd, name, 0644), 0);
    cr_assert_lt(F.n_fifo, MAX_FIFOS);
    int fd = openat(dfd, name, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", dfd);
    ssize_t n = readlink(link, F.fifo[F.n_fifo].path, sizeof(F.fifo[0].path) - 64);
    cr_assert_gt(n, 0);
    snprintf(F.fifo[F.n_fifo].path + n, 64, "/%s", name);
    F.fifo[F.n_fifo].fd = fd;
    F.n_fifo++;
}

/* Everything written so far to the FIFO at base-relative path rel. */
static char *drain(const char *rel)
{
    char want[256];
    snprintf(want, sizeof(want), "%s/%s", F.base, rel);
    for (int i = 0; i < F.n_fifo; i++) {
        if (strcmp(F.fifo[i].path, want) != 0)
            continue;
        char *buf = calloc(1, 65536);
        ssize_t n = read(F.fifo[i].fd, buf, 65535);
        if (n < 0)
            n = 0;
        buf[n] = '\0';
        return buf;
    }
    cr_assert_fail("no fifo %s", want);
    return NULL;
}

static char *slurp(const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", F.base, rel);
    FILE *f = fopen(path, "re");
    cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
    char *buf = calloc(1, 4096);
    size_t n = fread(buf, 1, 4095, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void assert_file(const char *rel, const char *want)
{
    _cleanup_free_ char *got = slurp(rel);
    cr_assert_str_eq(got, want, "%s", rel);
}

static void write_file(const char *rel, const char *content)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", F.base, rel);
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static bool exists(const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", F.base, rel);
    return access(path, F_OK) == 0;
}

static void v1_files(int dfd, const char *hier)
{
    put(dfd, "cgroup.procs", "");
    put(dfd, "tasks", "");
    if (strcmp(hier, "cpu") == 0 || strcmp(hier, "cpu,cpuacct") == 0) {
        put(dfd, "cpu.cfs_quota_us", "-1\n");
        put(dfd, "cpu.cfs_period_us", "100000\n");
    }
    if (strcmp(hier, "cpuacct") == 0 || strcmp(hier, "cpu,cpuacct") == 0 ||
        (F.comount && strcmp(hier, "cpu") == 0))
        put(dfd, "cpuacct.usage", "0\n");
    if (strcmp(hier, "memory") == 0) {
        put(dfd, "memory.limit_in_bytes", "9223372036854771712\n");
        if (!F.no_memsw)
            put(dfd, "memory.memsw.limit_in_bytes", "9223372036854771712\n");
        put(dfd, "memory.max_usage_in_bytes", "0\n");
        put(dfd, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
    }
    if (strcmp(hier, "blkio") == 0) {
        fifo(dfd, "blkio.throttle.read_iops_device");
        fifo(dfd, "blkio.throttle.write_iops_device");
        fifo(dfd, "blkio.throttle.read_bps_device");
        fifo(dfd, "blkio.throttle.write_bps_device");
    }
    if (strcmp(hier, "pids") == 0 && !F.no_pids_max)
        put(dfd, "pids.max", "max\n");
    if (strcmp(hier, "freezer") == 0)
        put(dfd, "freezer.state", "THAWED\n");
}

static void v2_files(int dfd)
{
    put(dfd, "cgroup.procs", "");
    put(dfd, "cgroup.events", F.events ? F.events : "populated 0\nfrozen 0\n");
    put(dfd, "cgroup.controllers", "cpu io memory pids\n");
    put(dfd, "cgroup.subtree_control", "");
    put(dfd, "cgroup.freeze", "0\n");
    if (!F.no_kill)
        put(dfd, "cgroup.kill", "");
    put(dfd, "cpu.max", "max 100000\n");
    put(dfd, "cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n");
    put(dfd, "memory.max", "max\n");
    if (!F.no_swap_max)
        put(dfd, "memory.swap.max", "max\n");
    put(dfd, "memory.current", "0\n");
    if (!F.no_peak)
        put(dfd, "memory.peak", "0\n");
    put(dfd, "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
    fifo(dfd, "io.max");
    if (!F.no_pids_max)
        put(dfd, "pids.max", "max\n");
}

static void after_mkdir(int dfd, const char *hier, void *userdata)
{
    (void)userdata;
    if (F.v2)
        v2_files(dfd);
    else
        v1_files(dfd, hier);
}

/* Removes a fake cgroup directory: its files, then itself (subdirs are gone already). */
static int fake_rmdir(int parent, const char *name, void *userdata)
{
    (void)userdata;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_type != DT_DIR)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    return unlinkat(parent, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

static const struct cg_test_hooks hooks = {.after_mkdir = after_mkdir, .rmdir = fake_rmdir};

static void mkdirs(const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", F.base, rel);
    cr_assert_eq(mkdir(path, 0755), 0, "mkdir %s: %s", path, strerror(errno));
}

static void add_block(const char *name, const char *dev)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", F.block, name);
    cr_assert_eq(mkdir(path, 0755), 0);
    if (dev) {
        int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        put(dfd, "dev", dev);
        close(dfd);
    }
}

static void setup(void)
{
    memset(&F, 0, sizeof(F));
    strcpy(F.dir, "/tmp/test_cgroup.XXXXXX");
    cr_assert_not_null(mkdtemp(F.dir));
    snprintf(F.base, sizeof(F.base), "%s/cg", F.dir);
    snprintf(F.block, sizeof(F.block), "%s/block", F.dir);
    cr_assert_eq(mkdir(F.base, 0755), 0);
    cr_assert_eq(mkdir(F.block, 0755), 0);
    add_block("vda", "254:0\n");
    add_block("sda", "8:0\n");
    add_block("dm-0", "253:0\n");
    add_block("loop0", "7:0\n");
    add_block("ram0", "1:0\n");
    add_block("zram0", "252:0\n");
    add_block("hugetlb", NULL); /* no dev file: not a block device */
}

static void teardown(void)
{
    for (int i = 0; i < F.n_fifo; i++)
        close(F.fifo[i].fd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F.dir);
    cr_assert_eq(system(cmd), 0);
}

static void v1_layout(void)
{
    static const char *h[] = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};
    for (size_t i = 0; i < ELEMENTSOF(h); i++)
        mkdirs(h[i]);
}

static struct cg_manager *new_manager(enum cg_mode mode, const char *root, const char *self)
{
    struct cg_config cfg = {.base = F.base,
                            .mode = mode,
                            .root = root,
                            .self_cgroup = self,
                            .sys_block = F.block,
                            .test_hooks = &hooks};
    struct cg_manager *m = NULL;
    char err[256] = "";
    F.v2 = mode == CG_V2;
    int r = cg_manager_new(&cfg, &m, err, sizeof(err));
    cr_assert_eq(r, 0, "cg_manager_new: %s (%s)", strerror(-r), err);
    return m;
}

static const struct cg_limits full_limits = {
    .cpu_millis = 500,
    .memory_bytes = 64 << 20,
    .io_riops = 100,
    .io_wiops = 200,
    .io_rbps = 1000000,
    .io_wbps = 2000000,
    .pids = 32,
};

TestSuite(cg, .init = setup, .fini = teardown);

/* ---- probe and errors -------------------------------------------------------------------- */

Test(cg, v1_default_root_in_every_hierarchy)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    cr_assert_eq(cg_manager_mode(m), CG_V1);
    cr_assert_str_eq(cg_mode_name(cg_manager_mode(m)), "v1");
    cr_assert(exists("cpu/runjob"));
    cr_assert(exists("cpuacct/runjob"));
    cr_assert(exists("memory/runjob"));
    cr_assert(exists("blkio/runjob"));
    cr_assert(exists("pids/runjob"));
    cr_assert(exists("freezer/runjob"));
}

Test(cg, v1_root_override_nested)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, "/a/b/", NULL);
    struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "j1", NULL, &cg), 0);
    cr_assert(exists("memory/a/b/j1/memory.limit_in_bytes"));
    cr_assert(exists("freezer/a/b/j1/freezer.state"));
    cr_assert_eq(cg_destroy(cg, 100), 0);
    cr_assert_not(exists("memory/a/b/j1"));
    cr_assert(exists("memory/a/b"), "the root is never removed");
    cg_free(cg);
}

Test(cg, v1_missing_hierarchy_is_named)
{
    v1_layout();
    char path[256];
    snprintf(path, sizeof(path), "%s/blkio", F.base);
    rmdir(path);
    struct cg_config cfg = {.base = F.base, .mode = CG_V1, .sys_block = F.block};
    struct cg_manager *m = NULL;
    char err[256] = "";
    cr_assert_eq(cg_manager_new(&cfg, &m, err, sizeof(err)), -ENOTSUP);
    cr_assert_null(m);
    cr_assert_not_null(strstr(err, "blkio"), "%s", err);
    cr_assert_null(strstr(err, "memory"), "%s", err);
}

Test(cg, probe_of_plain_dir_finds_nothing)
{
    v1_layout(); /* directories, but not cgroup mounts: the real probe checks statfs */
    struct cg_config cfg = {.base = F.base, .sys_block = F.block};
    struct cg_manager *m = NULL;
    char err[256] = "";
    cr_assert_eq(cg_manager_new(&cfg, &m, err, sizeof(err)), -ENOTSUP);
    cr_assert_not_null(strstr(err, "no cgroup v2"), "%s", err);
    cr_assert_not_null(strstr(err, "cpu, cpuacct, memory, blkio, pids, freezer"), "%s", err);
    cr_assert_not(exists("memory/runjob"), "nothing created on failure");
}

Test(cg, v2_missing_controller_is_named)
{
    int dfd = open(F.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    put(dfd, "cgroup.controllers", "cpu memory pids\n");
    close(dfd);
    struct cg_config cfg = {.base = F.base, .mode = CG_V2, .sys_block = F.block};
    struct cg_manager *m = NULL;
    char err[256] = "";
    cr_assert_eq(cg_manager_new(&cfg, &m, err, sizeof(err)), -ENOTSUP);
    cr_assert_not_null(strstr(err, "lacks io"), "%s", err);
}

Test(cg, ids_are_checked)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    const char *bad[] = {"", ".", "..", "../x", "a/b", "a b", "x\n", "ä"};
    struct cg *cg = NULL;
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        cr_assert_not(cg_id_is_valid(bad[i]), "'%s'", bad[i]);
        cr_assert_eq(cg_create(m, bad[i], NULL, &cg), -EINVAL);
        cr_assert_eq(cg_cleanup_stale(m, bad[i]), -EINVAL);
    }
    char longid[130];
    memset(longid, 'a', 129);
    longid[129] = '\0';
    cr_assert_not(cg_id_is_valid(longid));
    longid[128] = '\0';
    cr_assert(cg_id_is_valid(longid));
    cr_assert(cg_id_is_valid("3f2b9c1e-0d4a-4e7b-9a51-6c0f2e8d7b11"));
    cr_assert(cg_id_is_valid("job_1.x"));
    cr_assert_null(cg);
}

Test(cg, io_device_list_checked)
{
    v1_layout();
    const char *devs[] = {"8:0", "nope", NULL};
    struct cg_config cfg = {
        .base = F.base, .mode = CG_V1, .io_devices = devs, .test_hooks = &hooks};
    struct cg_manager *m = NULL;
    char err[256] = "";
    cr_assert_eq(cg_manager_new(&cfg, &m, err, sizeof(err)), -EINVAL);
    cr_assert_not_null(strstr(err, "'nope'"), "%s", err);
}

/* ---- v1 ---------------------------------------------------------------------------------- */

Test(cg, v1_limits_translate)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", &full_limits, &cg), 0);
    cr_assert_eq(cg_get_dirfd(cg), -EOPNOTSUPP);
    assert_file("cpu/runjob/job1/cpu.cfs_period_us", "100000");
    assert_file("cpu/runjob/job1/cpu.cfs_quota_us", "50000");
    assert_file("memory/runjob/job1/memory.limit_in_bytes", "67108864");
    assert_file("memory/runjob/job1/memory.memsw.limit_in_bytes", "67108864");
    assert_file("pids/runjob/job1/pids.max", "32");
    /* every real disk, sorted; loop, ram, zram and the dev-less entry skipped */
    _cleanup_free_ char *ri = drain("blkio/runjob/job1/blkio.throttle.read_iops_device");
    cr_assert_str_eq(ri, "8:0 100\n253:0 100\n254:0 100\n");
    _cleanup_free_ char *wi = drain("blkio/runjob/job1/blkio.throttle.write_iops_device");
    cr_assert_str_eq(wi, "8:0 200\n253:0 200\n254:0 200\n");
    _cleanup_free_ char *rb = drain("blkio/runjob/job1/blkio.throttle.read_bps_device");
    cr_assert_str_eq(rb, "8:0 1000000\n253:0 1000000\n254:0 1000000\n");
    _cleanup_free_ char *wb = drain("blkio/runjob/job1/blkio.throttle.write_bps_device");
    cr_assert_str_eq(wb, "8:0 2000000\n253:0 2000000\n254:0 2000000\n");
}

Test(cg, v1_zero_limits_write_nothing)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    struct cg_limits lim = {0};
    cr_assert_eq(cg_create(m, "job1", &lim, &cg), 0);
    assert_file("cpu/runjob/job1/cpu.cfs_quota_us", "-1\n");
    assert_file("memory/runjob/job1/memory.limit_in_bytes", "9223372036854771712\n");
    assert_file("pids/runjob/job1/pids.max", "max\n");
    _cleanup_free_ char *ri = drain("blkio/runjob/job1/blkio.throttle.read_iops_device");
    cr_assert_str_eq(ri, "");
}

Test(cg, v1_cpu_quota_floor_and_explicit_devices)
{
    v1_layout();
    const char *devs[] = {"254:0", "254:0", NULL}; /* duplicates collapse */
    struct cg_config cfg = {.base = F.base,
                            .mode = CG_V1,
                            .io_devices = devs,
                            .sys_block = "/nonexistent",
                            .test_hooks = &hooks};
    _cleanup_(cg_manager_freep) struct cg_manager *m = NULL;
    cr_assert_eq(cg_manager_new(&cfg, &m, NULL, 0), 0);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    struct cg_limits lim = {.cpu_millis = 1, .io_rbps = 5};
    cr_assert_eq(cg_create(m, "job1", &lim, &cg), 0);
    assert_file("cpu/runjob/job1/cpu.cfs_quota_us", "1000");
    _cleanup_free_ char *rb = drain("blkio/runjob/job1/blkio.throttle.read_bps_device");
    cr_assert_str_eq(rb, "254:0 5\n");
}

Test(cg, v1_without_memsw)
{
    v1_layout();
    F.no_memsw = true;
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    struct cg_limits lim = {.memory_bytes = 4096 * 10};
    cr_assert_eq(cg_create(m, "job1", &lim, &cg), 0);
    assert_file("memory/runjob/job1/memory.limit_in_bytes", "40960");
}

Test(cg, create_twice_is_eexist_and_keeps_the_first)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *a = NULL;
    struct cg *b = NULL;
    cr_assert_eq(cg_create(m, "job1", &full_limits, &a), 0);
    cr_assert_eq(cg_create(m, "job1", NULL, &b), -EEXIST);
    cr_assert_null(b);
    assert_file("memory/runjob/job1/memory.limit_in_bytes", "67108864");
    cr_assert(exists("freezer/runjob/job1"));
}

Test(cg, failed_create_leaves_nothing)
{
    v1_layout();
    F.no_pids_max = true; /* a kernel without pids.max: writing the limit fails */
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    struct cg *cg = NULL;
    struct cg_limits lim = {.pids = 10};
    cr_assert_eq(cg_create(m, "job1", &lim, &cg), -ENOENT);
    cr_assert_null(cg);
    const char *h[] = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};
    for (size_t i = 0; i < ELEMENTSOF(h); i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "%s/runjob/job1", h[i]);
        cr_assert_not(exists(rel), "%s left behind", rel);
    }
}

Test(cg, v1_attach_every_hierarchy)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    cr_assert_eq(cg_attach(cg, 4242), 0);
    cr_assert_eq(cg_attach(cg, 0), -EINVAL);
    const char *h[] = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};
    for (size_t i = 0; i < ELEMENTSOF(h); i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "%s/runjob/job1/cgroup.procs", h[i]);
        assert_file(rel, "4242");
    }
}

Test(cg, v1_comounted_cpu_cpuacct_used_once)
{
    mkdirs("cpu,cpuacct");
    char a[256], b[256];
    snprintf(a, sizeof(a), "%s/cpu", F.base);
    snprintf(b, sizeof(b), "%s/cpuacct", F.base);
    cr_assert_eq(symlink("cpu,cpuacct", a), 0);
    cr_assert_eq(symlink("cpu,cpuacct", b), 0);
    mkdirs("memory");
    mkdirs("blkio");
    mkdirs("pids");
    mkdirs("freezer");
    F.comount = true;
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", &(struct cg_limits){.cpu_millis = 2000}, &cg), 0);
    assert_file("cpu,cpuacct/runjob/job1/cpu.cfs_quota_us", "200000");
    write_file("cpu,cpuacct/runjob/job1/cpuacct.usage", "7000\n");
    struct cg_usage u;
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.cpu_usec, 7);
    cr_assert_eq(cg_destroy(cg, 100), 0);
    cr_assert_not(exists("cpu,cpuacct/runjob/job1"));
}

Test(cg, v1_usage)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    struct cg_usage u = {.cpu_usec = 9, .memory_peak_bytes = 9, .oom_killed = true};
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.cpu_usec, 0);
    cr_assert_eq(u.memory_peak_bytes, 0);
    cr_assert_not(u.oom_killed);
    write_file("cpuacct/runjob/job1/cpuacct.usage", "2500999\n");
    write_file("memory/runjob/job1/memory.max_usage_in_bytes", "1048576\n");
    write_file("memory/runjob/job1/memory.oom_control",
               "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.cpu_usec, 2500);
    cr_assert_eq(u.memory_peak_bytes, 1048576);
    cr_assert(u.oom_killed);
    write_file("memory/runjob/job1/memory.oom_control", "under_oom 0\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0, "a kernel without the counter reads 0");
    cr_assert_not(u.oom_killed);
    write_file("memory/runjob/job1/memory.oom_control", "oom_kill x\n");
    cr_assert_eq(cg_read_usage(cg, &u), -EINVAL);
}

static pid_t spawn_sleeper(void)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

Test(cg, v1_kill_freezes_kills_thaws)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    cr_assert_eq(cg_is_populated(cg), 0);
    cr_assert_eq(cg_kill(cg, 100), 0, "empty: nothing to do");

    pid_t child = spawn_sleeper();
    char pid[16];
    snprintf(pid, sizeof(pid), "%d\n", child);
    write_file("memory/runjob/job1/cgroup.procs", pid);
    cr_assert_eq(cg_is_populated(cg), 1);
    /* a fake cgroup.procs never empties: the kill goes out, then it times out */
    cr_assert_eq(cg_kill(cg, 50), -ETIMEDOUT);
    int st;
    cr_assert_eq(waitpid(child, &st, 0), child);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_file("freezer/runjob/job1/freezer.state", "THAWED");
    cr_assert_eq(cg_destroy(cg, 50), -EBUSY, "populated: cannot remove");
    cr_assert(exists("memory/runjob/job1"));
}

Test(cg, v1_stale_cleanup)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "old", NULL, &cg), 0);
    cg_free(cg);                        /* a server that died: the cgroup stays */
    mkdirs("memory/runjob/old/nested"); /* and a child cgroup under it */
    int dfd = open(F.base, O_RDONLY | O_DIRECTORY);
    int n = openat(dfd, "memory/runjob/old/nested", O_RDONLY | O_DIRECTORY);
    put(n, "cgroup.procs", "");
    close(n);
    close(dfd);
    cr_assert(exists("freezer/runjob/old"));
    cr_assert_eq(cg_cleanup_stale(m, "old"), 1);
    cr_assert_not(exists("freezer/runjob/old"));
    cr_assert_not(exists("memory/runjob/old"));
    cr_assert_eq(cg_cleanup_stale(m, "old"), 0);
    cr_assert_eq(cg_cleanup_stale(m, "never"), 0);
}

Test(cg, v1_stale_cleanup_partial)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    /* a previous server died between two mkdirs */
    mkdirs("cpu/runjob/half");
    int dfd = open(F.base, O_RDONLY | O_DIRECTORY);
    int n = openat(dfd, "cpu/runjob/half", O_RDONLY | O_DIRECTORY);
    put(n, "cgroup.procs", "");
    close(n);
    close(dfd);
    cr_assert_eq(cg_cleanup_stale(m, "half"), 1);
    cr_assert_not(exists("cpu/runjob/half"));
}

/* ---- v2 ---------------------------------------------------------------------------------- */

/* base (top) with controllers, and the server's own cgroup srv.slice/runjob.service holding
 * a process. */
static void v2_layout(const char *top_subtree)
{
    int dfd = open(F.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    put(dfd, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    put(dfd, "cgroup.subtree_control", top_subtree);
    put(dfd, "cgroup.procs", "1\n");
    close(dfd);
    mkdirs("srv.slice");
    dfd = open(F.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int s = openat(dfd, "srv.slice", O_RDONLY | O_DIRECTORY);
    put(s, "cgroup.controllers", "cpu io memory pids\n");
    put(s, "cgroup.subtree_control", "cpu io memory pids\n");
    put(s, "cgroup.procs", "");
    close(s);
    close(dfd);
    mkdirs("srv.slice/runjob.service");
    dfd = open(F.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    s = openat(dfd, "srv.slice/runjob.service", O_RDONLY | O_DIRECTORY);
    put(s, "cgroup.controllers", "cpu io memory pids\n");
    put(s, "cgroup.subtree_control", "");
    put(s, "cgroup.procs", "4321\n");
    close(s);
    close(dfd);
}

Test(cg, v2_default_root_moves_server_into_leaf)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m =
        new_manager(CG_V2, NULL, "/srv.slice/runjob.service");
    cr_assert_eq(cg_manager_mode(m), CG_V2);
    cr_assert_str_eq(cg_mode_name(CG_V2), "v2");
    assert_file("srv.slice/runjob.service/server/cgroup.procs", "4321");
    assert_file("srv.slice/runjob.service/cgroup.subtree_control", "+cpu +memory +io +pids");
    assert_file("srv.slice/runjob.service/runjob/cgroup.subtree_control", "+cpu +memory +io +pids");
    assert_file("cgroup.subtree_control", "cpu io memory pids\n"); /* had them: untouched */
    assert_file("srv.slice/cgroup.subtree_control", "cpu io memory pids\n");
    cr_assert_not(exists("srv.slice/runjob.service/runjob/server"));

    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    cr_assert(exists("srv.slice/runjob.service/runjob/job1/cpu.max"));
}

Test(cg, v2_restart_from_server_leaf_does_not_nest)
{
    v2_layout("cpu io memory pids\n");
    mkdirs("srv.slice/runjob.service/server");
    write_file("srv.slice/runjob.service/cgroup.procs", ""); /* moved there last time */
    _cleanup_(cg_manager_freep) struct cg_manager *m =
        new_manager(CG_V2, NULL, "/srv.slice/runjob.service/server");
    cr_assert(exists("srv.slice/runjob.service/runjob"));
    cr_assert_not(exists("srv.slice/runjob.service/server/runjob"));
    cr_assert_not(exists("srv.slice/runjob.service/server/server"));
}

Test(cg, v2_server_in_root_cgroup_enables_missing_only)
{
    v2_layout("cpu io\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, NULL, "/");
    /* the root cgroup may hold processes: no leaf there */
    cr_assert_not(exists("server"));
    assert_file("cgroup.subtree_control", "+memory +pids");
    assert_file("runjob/cgroup.subtree_control", "+cpu +memory +io +pids");
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "j", NULL, &cg), 0);
    cr_assert(exists("runjob/j"));
}

Test(cg, v2_cgroupns_top_is_not_the_real_root)
{
    v2_layout("");
    int dfd = open(F.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    put(dfd, "cgroup.type", "domain\n"); /* a container's namespace root */
    close(dfd);
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, NULL, "/");
    assert_file("server/cgroup.procs", "1");
    assert_file("cgroup.subtree_control", "+cpu +memory +io +pids");
    cr_assert(exists("runjob/cgroup.procs"));
}

Test(cg, v2_root_override)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m =
        new_manager(CG_V2, "/jobs/test", "/srv.slice/runjob.service");
    cr_assert_not(exists("srv.slice/runjob.service/server"), "server's cgroup not in the path");
    assert_file("jobs/cgroup.subtree_control", "+cpu +memory +io +pids");
    assert_file("jobs/test/cgroup.subtree_control", "+cpu +memory +io +pids");
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "j", NULL, &cg), 0);
    cr_assert(exists("jobs/test/j/cgroup.procs"));
}

Test(cg, v2_limits_translate)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", &full_limits, &cg), 0);
    assert_file("r/job1/cpu.max", "50000 100000");
    assert_file("r/job1/memory.max", "67108864");
    assert_file("r/job1/memory.swap.max", "0");
    assert_file("r/job1/pids.max", "32");
    _cleanup_free_ char *io = drain("r/job1/io.max");
    cr_assert_str_eq(io, "8:0 riops=100 wiops=200 rbps=1000000 wbps=2000000\n"
                         "253:0 riops=100 wiops=200 rbps=1000000 wbps=2000000\n"
                         "254:0 riops=100 wiops=200 rbps=1000000 wbps=2000000\n");
}

Test(cg, v2_partial_limits)
{
    v2_layout("cpu io memory pids\n");
    F.no_swap_max = true; /* no swap accounting */
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    struct cg_limits lim = {.cpu_millis = 1500, .io_wbps = 42};
    cr_assert_eq(cg_create(m, "job1", &lim, &cg), 0);
    assert_file("r/job1/cpu.max", "150000 100000");
    assert_file("r/job1/memory.max", "max\n");
    assert_file("r/job1/pids.max", "max\n");
    _cleanup_free_ char *io = drain("r/job1/io.max");
    cr_assert_str_eq(io, "8:0 wbps=42\n253:0 wbps=42\n254:0 wbps=42\n");
}

Test(cg, v2_dirfd_and_attach)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    int fd = cg_get_dirfd(cg);
    cr_assert_geq(fd, 0);
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    struct stat a, b;
    cr_assert_eq(fstat(fd, &a), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/r/job1", F.base);
    cr_assert_eq(stat(path, &b), 0);
    cr_assert(S_ISDIR(a.st_mode) && a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    cr_assert_eq(cg_attach(cg, 777), 0);
    assert_file("r/job1/cgroup.procs", "777");
}

Test(cg, v2_kill_writes_cgroup_kill)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    cr_assert_eq(cg_kill(cg, 50), 0);
    assert_file("r/job1/cgroup.kill", ""); /* not populated: nothing written */
    write_file("r/job1/cgroup.events", "populated 1\nfrozen 0\n");
    cr_assert_eq(cg_is_populated(cg), 1);
    cr_assert_eq(cg_kill(cg, 50), -ETIMEDOUT);
    assert_file("r/job1/cgroup.kill", "1");
    write_file("r/job1/cgroup.events", "populated 0\nfrozen 0\n");
    cr_assert_eq(cg_destroy(cg, 50), 0);
    cr_assert_not(exists("r/job1"));
    cr_assert_eq(cg_get_dirfd(cg), -EBADF, "destroyed");
    cr_assert_eq(cg_destroy(cg, 50), 0, "idempotent");
}

Test(cg, v2_kill_fallback_freeze_kill_thaw)
{
    v2_layout("cpu io memory pids\n");
    F.no_kill = true; /* kernel < 5.14 */
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    pid_t child = spawn_sleeper();
    char pid[16];
    snprintf(pid, sizeof(pid), "%d\n", child);
    write_file("r/job1/cgroup.procs", pid);
    write_file("r/job1/cgroup.events", "populated 1\nfrozen 1\n");
    cr_assert_eq(cg_kill(cg, 50), -ETIMEDOUT);
    int st;
    cr_assert_eq(waitpid(child, &st, 0), child);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_file("r/job1/cgroup.freeze", "0"); /* thawed after the kill */
    cr_assert_not(exists("r/job1/cgroup.kill"));
}

Test(cg, v2_usage)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    write_file("r/job1/cpu.stat", "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n");
    write_file("r/job1/memory.peak", "8388608\n");
    write_file("r/job1/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
    struct cg_usage u;
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.cpu_usec, 123456);
    cr_assert_eq(u.memory_peak_bytes, 8388608);
    cr_assert(u.oom_killed);
    write_file("r/job1/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_not(u.oom_killed, "'oom 1' alone is not a kill");
}

Test(cg, v2_usage_without_memory_peak_tracks_current)
{
    v2_layout("cpu io memory pids\n");
    F.no_peak = true; /* kernel < 5.19 */
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    struct cg_usage u;
    write_file("r/job1/memory.current", "100\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.memory_peak_bytes, 100);
    write_file("r/job1/memory.current", "50\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.memory_peak_bytes, 100);
    write_file("r/job1/memory.current", "300\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.memory_peak_bytes, 300);
}

Test(cg, v2_stale_cleanup)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "old", NULL, &cg), 0);
    cg_free(cg);
    cr_assert_eq(cg_cleanup_stale(m, "old"), 1);
    cr_assert_not(exists("r/old"));
    cr_assert_eq(cg_cleanup_stale(m, "old"), 0);
}
