/* cgroup v1 backend: one job directory per hierarchy (cpu, cpuacct, memory, blkio, pids,
 * freezer), each <base>/<hier>/<root>/<id>. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "cleanup.h"
#include "log.h"
#include "proc.h"

#define V1_DEFAULT_ROOT   "runjob"
#define V1_FREEZE_WAIT_MS 1000
/* "No limit" in memory.limit_in_bytes is LONG_MAX rounded down to a page; far above any memory. */
#define V1_MEMORY_UNLIMITED (1ull << 62)

/* The job directory fd of the hierarchy with role, or -1. */
static int role_fd(const struct cg *cg, unsigned role)
{
    for (size_t i = 0; i < cg->m->n_hier; i++)
        if (cg->m->hier[i].roles & role)
            return cg->fd[i];
    return -1;
}

/* Whether shims may wait in the job root of the memory hierarchy (cg_memory_apart): memory must
 * be a hierarchy of its own (a co-mounted one would take the shim out of the job's freezer or
 * pids cgroup too), and the job root under no memory limit, which would make an OOM killer of its
 * own that sees every shim. */
static bool v1_memory_apart(const struct cg_manager *m)
{
    for (size_t i = 0; i < m->n_hier; i++) {
        uint64_t limit;
        if (!(m->hier[i].roles & CG_ROLE_MEMORY))
            continue;
        return m->hier[i].roles == CG_ROLE_MEMORY &&
               proc_read_keyed_u64_at(m->hier[i].rootfd, "memory.stat", "hierarchical_memory_limit",
                                      &limit) == 0 &&
               limit >= V1_MEMORY_UNLIMITED;
    }
    return false;
}

static int v1_init(struct cg_manager *m, const struct cg_config *cfg, char *errbuf, size_t errlen)
{
    const char *root = cfg->root ? cfg->root : V1_DEFAULT_ROOT;
    int r;

    while (*root == '/')
        root++;
    m->root = strdup(root);
    if (!m->root)
        return -ENOMEM;
    for (size_t i = 0; i < m->n_hier; i++) {
        _cleanup_close_ int hfd = -1;
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/%s", m->base, m->hier[i].name) < 0) {
            path = NULL;
            return -ENOMEM;
        }
        hfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (hfd < 0) {
            r = -errno;
            cg_set_err(errbuf, errlen, "cannot open %s", path);
            return r;
        }
        r = cg_mkdir_p_at(m, hfd, m->root, m->hier[i].name, &m->hier[i].rootfd);
        if (r < 0) {
            cg_set_err(errbuf, errlen, "cannot create %s/%s", path, m->root);
            return r;
        }
    }
    m->memory_apart = v1_memory_apart(m);
    return 0;
}

/* Writes "MAJ:MIN value" to a blkio.throttle file for every device; 0 removes the device's
 * rule (the kernel's way to lift it). */
static int v1_write_blkio(struct cg *cg, int fd, const char *file, uint64_t v)
{
    for (size_t i = 0; i < cg->m->n_devs; i++) {
        int r = proc_writef_at(fd, file, "%u:%u %" PRIu64 "\n", cg->m->devs[i].major,
                               cg->m->devs[i].minor, v);
        if (r < 0) {
            log_debug("cgroup: %s '%u:%u %" PRIu64 "': %s", file, cg->m->devs[i].major,
                      cg->m->devs[i].minor, v, strerror(-r));
            return r;
        }
    }
    return 0;
}

/* memory.memsw.limit_in_bytes only exists with swap accounting; without it there is only the
 * memory limit to write. */
static int v1_write_memsw(int fd, const char *value)
{
    int r = proc_write_file_at(fd, "memory.memsw.limit_in_bytes", value);
    return r == -ENOENT ? 0 : r;
}

static int v1_change_memory(struct cg *cg, uint64_t from, uint64_t to)
{
    int fd = role_fd(cg, CG_ROLE_MEMORY), r;
    char v[24] = "-1"; /* -1 lifts the limit */

    if (to)
        snprintf(v, sizeof(v), "%" PRIu64, to);
    /* The kernel refuses (EINVAL) a memsw.limit_in_bytes below limit_in_bytes at every step.
     * Equal values mean no swap at all for the job. Going up (0 = no limit, the highest):
     * memsw first; going down: the limit first. */
    bool up = to == 0 || (from != 0 && to > from);
    if (up && (r = v1_write_memsw(fd, v)) < 0)
        return r;
    r = proc_write_file_at(fd, "memory.limit_in_bytes", v);
    if (r < 0)
        return r;
    return up ? 0 : v1_write_memsw(fd, v);
}

static int v1_change_limits(struct cg *cg, const struct limits *from, const struct limits *to)
{
    int fd, r;

    if (to->cpu_millis != from->cpu_millis) {
        fd = role_fd(cg, CG_ROLE_CPU);
        if (to->cpu_millis == 0) {
            r = proc_write_file_at(fd, "cpu.cfs_quota_us", "-1");
            if (r < 0)
                return r;
        } else {
            /* The period first (the quota is checked against it); once set it stays. */
            if (from->cpu_millis == 0) {
                r = proc_writef_at(fd, "cpu.cfs_period_us", "%u", CG_CPU_PERIOD_USEC);
                if (r < 0)
                    return r;
            }
            r = proc_writef_at(fd, "cpu.cfs_quota_us", "%" PRIu64,
                               cg_cpu_quota_usec(to->cpu_millis));
            if (r < 0)
                return r;
        }
    }
    if (to->memory_bytes != from->memory_bytes) {
        r = v1_change_memory(cg, from->memory_bytes, to->memory_bytes);
        if (r < 0)
            return r;
    }
    const struct {
        const char *file;
        uint64_t from, to;
    } blk[] = {
        {"blkio.throttle.read_iops_device", from->io_riops, to->io_riops},
        {"blkio.throttle.write_iops_device", from->io_wiops, to->io_wiops},
        {"blkio.throttle.read_bps_device", from->io_rbps, to->io_rbps},
        {"blkio.throttle.write_bps_device", from->io_wbps, to->io_wbps},
    };
    fd = role_fd(cg, CG_ROLE_BLKIO);
    for (size_t i = 0; i < ELEMENTSOF(blk); i++)
        if (blk[i].from != blk[i].to && (r = v1_write_blkio(cg, fd, blk[i].file, blk[i].to)) < 0)
            return r;
    if (to->pids != from->pids) {
        fd = role_fd(cg, CG_ROLE_PIDS);
        if (to->pids)
            r = proc_writef_at(fd, "pids.max", "%" PRIu64, to->pids);
        else
            r = proc_write_file_at(fd, "pids.max", "max");
        if (r < 0)
            return r;
    }
    return 0;
}

static int v1_attach(struct cg *cg, pid_t pid, unsigned parent_roles)
{
    for (size_t i = 0; i < cg->m->n_hier; i++) {
        bool parent = cg->m->hier[i].roles & parent_roles;
        int fd = parent ? cg->m->hier[i].rootfd : cg->fd[i];
        if (fd < 0)
            return -EBADF;
        int r = proc_writef_at(fd, "cgroup.procs", "%d", (int)pid);
        if (r < 0) {
            log_debug("cgroup: attach %d to %s/%s: %s", (int)pid, cg->m->hier[i].name, cg->id,
                      strerror(-r));
            return r;
        }
    }
    return 0;
}

static int v1_open_memory_procs(struct cg *cg)
{
    int fd = role_fd(cg, CG_ROLE_MEMORY);

    if (fd < 0)
        return -EBADF;
    fd = openat(fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static void count_pid(pid_t pid, void *userdata)
{
    (void)pid;
    (*(unsigned *)userdata)++;
}

static void kill_pid(pid_t pid, void *userdata)
{
    (void)userdata;
    /* ESRCH: already gone. The pid cannot have been reused: it is frozen, or it is a zombie
     * whose parent has not reaped it yet. */
    (void)kill(pid, SIGKILL);
}

/* Every hierarchy, not only the freezer: a half-done attach leaves a process in some. */
static int v1_is_populated(struct cg *cg)
{
    for (size_t i = 0; i < cg->m->n_hier; i++) {
        unsigned n = 0;
        if (cg->fd[i] < 0)
            continue;
        int r = cg_for_each_pid(cg->fd[i], count_pid, &n);
        if (r < 0)
            return r;
        if (n > 0)
            return 1;
    }
    return 0;
}

static int v1_freeze(int fd, bool freeze)
{
    int r = proc_write_file_at(fd, "freezer.state", freeze ? "FROZEN" : "THAWED");
    if (r < 0 || !freeze)
        return r;
    /* FREEZING until every task stopped; a task in uninterruptible sleep can hold it there.
     * Give up waiting after a while: the kill still goes out and the caller repeats. */
    int64_t deadline = clock_ms(CLOCK_MONOTONIC) + V1_FREEZE_WAIT_MS;
    for (unsigned delay = 1;; delay = delay < 20 ? delay * 2 : delay) {
        _cleanup_free_ char *buf = NULL;
        enum proc_freezer_state st;
        r = proc_read_file_at(fd, "freezer.state", &buf);
        if (r < 0)
            return r;
        r = proc_parse_freezer_state(buf, &st);
        if (r < 0)
            return r;
        if (st == PROC_FROZEN || clock_ms(CLOCK_MONOTONIC) >= deadline)
            return 0;
        cg_sleep_ms(delay);
    }
}

static int v1_kill_once(struct cg *cg)
{
    int ffd = role_fd(cg, CG_ROLE_FREEZER);
    int r = 0;

    /* Frozen processes can neither fork nor exit, so the pid list stays true while we kill. */
    if (ffd >= 0) {
        r = v1_freeze(ffd, true);
        if (r < 0)
            log_debug("cgroup: freeze '%s': %s, killing anyway", cg->id, strerror(-r));
    }
    for (size_t i = 0; i < cg->m->n_hier; i++) {
        if (cg->fd[i] < 0)
            continue;
        r = cg_for_each_pid(cg->fd[i], kill_pid, NULL);
        if (r < 0)
            break;
    }
    /* Thaw even if listing failed: a frozen cgroup must not be left behind. SIGKILLed
     * processes die as they thaw. */
    if (ffd >= 0) {
        int q = v1_freeze(ffd, false);
        if (q < 0 && r >= 0)
            r = q;
    }
    return r < 0 ? r : 0;
}

static int v1_read_usage(struct cg *cg, struct cg_usage *ret)
{
    struct cg_usage u = {0};
    uint64_t v;
    int fd, r;

    fd = role_fd(cg, CG_ROLE_CPUACCT);
    r = cg_usage_u64(cg, CG_USAGE_CPU, fd, "cpuacct.usage", NULL, &v);
    if (r == 0)
        u.cpu_usec = v / 1000; /* ns */
    else if (r != -ENOENT)
        return r;

    fd = role_fd(cg, CG_ROLE_MEMORY);
    r = cg_usage_u64(cg, CG_USAGE_PEAK, fd, "memory.max_usage_in_bytes", NULL, &v);
    if (r == 0)
        u.memory_peak_bytes = v;
    else if (r != -ENOENT)
        return r;
    /* oom_kill appeared in memory.oom_control with Linux 4.13. */
    r = cg_usage_u64(cg, CG_USAGE_OOM, fd, "memory.oom_control", "oom_kill", &v);
    if (r == 0)
        u.oom_killed = v > 0;
    else if (r != -ENOENT)
        return r;
    *ret = u;
    return 0;
}

const struct cg_backend cg_backend_v1 = {
    .init = v1_init,
    .set_defaults = NULL, /* the kernel's defaults are no limits: nothing to write */
    .change_limits = v1_change_limits,
    .attach = v1_attach,
    .open_memory_procs = v1_open_memory_procs,
    .kill_once = v1_kill_once,
    .is_populated = v1_is_populated,
    .read_usage = v1_read_usage,
};
