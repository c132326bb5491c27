/* Shared by test_cgroup.c (probe, errors, the v1 backend) and test_cgroup_v2.c: a fake
 * cgroupfs in a mkdtemp dir. The test plays the kernel through cg_test_hooks: after_mkdir
 * creates the interface files a real cgroup directory would have (leaving some out to
 * simulate older kernels), rmdir removes them. Files written several times per job (io.max,
 * blkio.throttle.*) are FIFOs held open here, so every write can be read back in order.
 * Functions are static inline so that a file using only some of them builds warning-free. */
#pragma once
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
#include "test/cg_limit_pairs.h"

#define MAX_FIFOS 256

struct fake {
    char dir[64];  /* the temp dir */
    char base[96]; /* <dir>/cg: the fake cgroupfs */
    char block[96];
    bool v2;
    bool no_memsw, no_swap_max, no_kill, no_peak, no_pids_max, comount;
    const char *memory_stat_limit; /* v1 memory.stat hierarchical_memory_limit; NULL: none */
    const char *events;            /* cgroup.events content on v2 */
    struct {
        char path[256];
        int fd;
    } fifo[MAX_FIFOS];
    int n_fifo;
};

static struct fake F;

static inline void put(int dfd, const char *name, const char *content)
{
    int fd = openat(dfd, name, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0, "create %s: %s", name, strerror(errno));
    cr_assert_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static inline void fifo(int dfd, const char *name)
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
static inline char *drain(const char *rel)
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

static inline char *slurp(const char *rel)
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

static inline void assert_file(const char *rel, const char *want)
{
    _cleanup_free_ char *got = slurp(rel);
    cr_assert_str_eq(got, want, "%s", rel);
}

static inline void write_file(const char *rel, const char *content)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", F.base, rel);
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static inline bool exists(const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", F.base, rel);
    return access(path, F_OK) == 0;
}

static inline void v1_files(int dfd, const char *hier)
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
        char stat[128];
        snprintf(stat, sizeof(stat), "cache 0\nrss 0\nhierarchical_memory_limit %s\n",
                 F.memory_stat_limit ? F.memory_stat_limit : "9223372036854771712");
        put(dfd, "memory.stat", stat);
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

static inline void v2_files(int dfd)
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

static inline void after_mkdir(int dfd, const char *hier, void *userdata)
{
    (void)userdata;
    if (F.v2)
        v2_files(dfd);
    else
        v1_files(dfd, hier);
}

/* Removes a fake cgroup directory: its files, then itself. As the kernel does, refuses (EBUSY)
 * one that still has a child cgroup or a process listed in its cgroup.procs. */
static inline int fake_rmdir(int parent, const char *name, void *userdata)
{
    (void)userdata;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    struct stat sb;
    bool busy = fstatat(dirfd(d), "cgroup.procs", &sb, 0) == 0 && sb.st_size > 0;
    for (struct dirent *e; (e = readdir(d));)
        busy |= e->d_type == DT_DIR && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (busy) {
        closedir(d);
        return -EBUSY;
    }
    rewinddir(d);
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_type != DT_DIR)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    return unlinkat(parent, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

static const struct cg_test_hooks hooks = {.after_mkdir = after_mkdir, .rmdir = fake_rmdir};

static inline void mkdirs(const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", F.base, rel);
    cr_assert_eq(mkdir(path, 0755), 0, "mkdir %s: %s", path, strerror(errno));
}

static inline void add_block(const char *name, const char *dev)
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

static inline void setup(void)
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

static inline void teardown(void)
{
    for (int i = 0; i < F.n_fifo; i++)
        close(F.fifo[i].fd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F.dir);
    cr_assert_eq(system(cmd), 0);
}

static inline void v1_layout(void)
{
    static const char *h[] = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};
    for (size_t i = 0; i < ELEMENTSOF(h); i++)
        mkdirs(h[i]);
}

static inline struct cg_manager *new_manager(enum cg_mode mode, const char *root, const char *self)
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

static const struct limits full_limits = {
    .cpu_millis = 500,
    .memory_bytes = 64 << 20,
    .io_riops = 100,
    .io_wiops = 200,
    .io_rbps = 1000000,
    .io_wbps = 2000000,
    .pids = 32,
};

/* What the kernel would show for the blkio.throttle FIFO rel, from the writes it got:
 * "MAJ:MIN V" sets the device's rule, V 0 removes it; one line per rule, sorted. */
static inline char *fold_blkio(const char *rel)
{
    _cleanup_free_ char *log = drain(rel);
    unsigned dev[32][2];
    unsigned long long val[32];
    size_t n = 0;
    char *save = NULL;
    for (char *l = strtok_r(log, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        unsigned maj, min;
        unsigned long long v;
        cr_assert_eq(sscanf(l, "%u:%u %llu", &maj, &min, &v), 3, "%s: '%s'", rel, l);
        size_t i = 0;
        while (i < n && (dev[i][0] != maj || dev[i][1] != min))
            i++;
        if (i == n) {
            cr_assert_lt(n, 32);
            dev[n][0] = maj, dev[n][1] = min, val[n] = 0;
            n++;
        }
        val[i] = v;
    }
    char *out = calloc(1, 4096);
    size_t len = 0;
    for (;;) { /* smallest device not yet printed, in order */
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (val[i] && (best == n || dev[i][0] < dev[best][0] ||
                           (dev[i][0] == dev[best][0] && dev[i][1] < dev[best][1])))
                best = i;
        if (best == n)
            return out;
        len += (size_t)snprintf(out + len, 4096 - len, "%u:%u %llu\n", dev[best][0], dev[best][1],
                                val[best]);
        val[best] = 0;
    }
}

/* What the kernel would show for the io.max FIFO rel: "MAJ:MIN key=V ..." sets those keys of
 * the device, key=max lifts one; a device with every key max is not listed. */
static inline char *fold_io_max(const char *rel)
{
    static const char *const keys[] = {"rbps", "wbps", "riops", "wiops"}; /* the kernel's order */
    _cleanup_free_ char *log = drain(rel);
    unsigned dev[32][2];
    char val[32][4][24];
    size_t n = 0;
    char *save = NULL;
    for (char *l = strtok_r(log, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        unsigned maj, min;
        int off = 0;
        cr_assert_eq(sscanf(l, "%u:%u%n", &maj, &min, &off), 2, "%s: '%s'", rel, l);
        size_t i = 0;
        while (i < n && (dev[i][0] != maj || dev[i][1] != min))
            i++;
        if (i == n) {
            cr_assert_lt(n, 32);
            dev[n][0] = maj, dev[n][1] = min;
            for (size_t k = 0; k < 4; k++)
                strcpy(val[n][k], "max");
            n++;
        }
        char *save2 = NULL;
        for (char *kv = strtok_r(l + off, " ", &save2); kv; kv = strtok_r(NULL, " ", &save2)) {
            char *eq = strchr(kv, '=');
            cr_assert_not_null(eq, "%s: '%s'", rel, kv);
            *eq = '\0';
            size_t k = 0;
            while (k < 4 && strcmp(keys[k], kv) != 0)
                k++;
            cr_assert_lt(k, 4, "%s: key '%s'", rel, kv);
            cr_assert(strcmp(eq + 1, "max") == 0 || strspn(eq + 1, "0123456789") == strlen(eq + 1),
                      "%s: value '%s'", rel, eq + 1);
            snprintf(val[i][k], sizeof(val[i][k]), "%s", eq + 1);
        }
    }
    char *out = calloc(1, 8192);
    size_t len = 0;
    bool done[32] = {false};
    for (;;) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (!done[i] && (best == n || dev[i][0] < dev[best][0] ||
                             (dev[i][0] == dev[best][0] && dev[i][1] < dev[best][1])))
                best = i;
        if (best == n)
            return out;
        done[best] = true;
        bool any = false;
        for (size_t k = 0; k < 4; k++)
            any |= strcmp(val[best][k], "max") != 0;
        if (any)
            len += (size_t)snprintf(
                out + len, 8192 - len, "%u:%u rbps=%s wbps=%s riops=%s wiops=%s\n", dev[best][0],
                dev[best][1], val[best][0], val[best][1], val[best][2], val[best][3]);
    }
}

static inline int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Every file of the fake cgroup directory rel as the kernel would show it, "name=value" lines
 * sorted by name: FIFOs folded from their writes (and drained), others with the trailing
 * newline dropped and v1's "-1" memory limit read back as the kernel does. */
static inline char *kernel_view(const char *rel)
{
    char dir[512];
    struct dirent **ents = NULL;
    snprintf(dir, sizeof(dir), "%s/%s", F.base, rel);
    int n = scandir(dir, &ents, NULL, by_name);
    cr_assert_geq(n, 0, "%s: %s", dir, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        char path[128], full[1200];
        struct stat st;
        char *v = NULL;
        int pn = snprintf(path, sizeof(path), "%s/%s", rel, name);
        cr_assert(pn > 0 && (size_t)pn < sizeof(path), "%s/%s: name too long", rel, name);
        snprintf(full, sizeof(full), "%s/%s", dir, name);
        cr_assert_eq(lstat(full, &st), 0);
        if (S_ISFIFO(st.st_mode)) {
            v = strcmp(name, "io.max") == 0 ? fold_io_max(path) : fold_blkio(path);
        } else if (S_ISREG(st.st_mode)) {
            v = slurp(path);
            size_t l = strlen(v);
            if (l > 0 && v[l - 1] == '\n') /* the kernel ends a value with one; we write none */
                v[l - 1] = '\0';
            if ((strcmp(name, "memory.limit_in_bytes") == 0 ||
                 strcmp(name, "memory.memsw.limit_in_bytes") == 0) &&
                strcmp(v, "-1") == 0) {
                free(v);
                v = strdup("9223372036854771712"); /* "no limit", as the kernel reads it back */
            }
        }
        if (v) {
            len += (size_t)snprintf(out + len, cap - len, "%s=%s\n", name, v);
            cr_assert_lt(len, cap);
            free(v);
        }
        free(ents[i]);
    }
    free(ents);
    return out;
}

TestSuite(cg, .init = setup, .fini = teardown);

static inline pid_t spawn_sleeper(void)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}
