/* cgroup v2 backend: one job directory <unified>/<root>/<id> with cpu, memory, io, pids. */
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

#define V2_NEEDED         (PROC_CG_CPU | PROC_CG_MEMORY | PROC_CG_IO | PROC_CG_PIDS)
#define V2_SERVER_LEAF    "server"
#define V2_DEFAULT_CHILD  "runjob"
#define V2_FREEZE_WAIT_MS 1000

/* "/a/b/" -> "a/b" (new string). */
static char *strip_slashes(const char *p)
{
    while (*p == '/')
        p++;
    size_t n = strlen(p);
    while (n > 0 && p[n - 1] == '/')
        n--;
    return strndup(p, n);
}

/* The default job root: <self>/runjob, where self is the server's cgroup. A server that moved
 * itself into the "server" leaf on an earlier start finds itself there now; its real cgroup is
 * the parent, else every restart would nest one level deeper. */
static int default_root(const struct cg_config *cfg, char **ret_self, char **ret_root)
{
    _cleanup_free_ char *raw = NULL;
    _cleanup_free_ char *self = NULL;
    char *root = NULL;
    int r;

    if (cfg->self_cgroup) {
        raw = strdup(cfg->self_cgroup);
        if (!raw)
            return -ENOMEM;
    } else {
        r = proc_read_cgroup(0, NULL, &raw);
        if (r < 0)
            return r;
    }
    self = strip_slashes(raw);
    if (!self)
        return -ENOMEM;
    char *slash = strrchr(self, '/');
    const char *last = slash ? slash + 1 : self;
    if (strcmp(last, V2_SERVER_LEAF) == 0) {
        if (slash)
            *slash = '\0';
        else
            self[0] = '\0';
    }
    if (asprintf(&root, "%s%s%s", self, self[0] ? "/" : "", V2_DEFAULT_CHILD) < 0)
        return -ENOMEM;
    *ret_self = TAKE_PTR(self);
    *ret_root = root;
    return 0;
}

/* Moves every process of the cgroup fd into its child leaf "server" (no-internal-process
 * rule: a non-root cgroup with controllers enabled in subtree_control holds no processes). */
static int move_to_leaf(const struct cg_manager *m, int fd)
{
    _cleanup_close_ int leaf = -1;
    int r = cg_mkdir_at(m, fd, V2_SERVER_LEAF, "");

    if (r < 0 && r != -EEXIST)
        return r;
    leaf = openat(fd, V2_SERVER_LEAF, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (leaf < 0)
        return -errno;
    /* A few rounds: a process may fork while we move the others. */
    for (int round = 0; round < 3; round++) {
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        r = proc_read_pids_at(fd, "cgroup.procs", &pids, &n);
        if (r < 0)
            return r;
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            r = proc_writef_at(leaf, "cgroup.procs", "%d", (int)pids[i]);
            if (r < 0 && r != -ESRCH)
                return r;
            log_debug("cgroup: moved pid %d into leaf '%s'", (int)pids[i], V2_SERVER_LEAF);
        }
    }
    return 0;
}

/* Makes sure cpu, memory, io, pids are enabled in fd's cgroup.subtree_control. */
static int enable_controllers(const struct cg_manager *m, int fd, bool is_self, bool is_top,
                              const char *path, char *errbuf, size_t errlen)
{
    static const struct {
        unsigned bit;
        const char *name;
    } ctl[] = {{PROC_CG_CPU, "cpu"},
               {PROC_CG_MEMORY, "memory"},
               {PROC_CG_IO, "io"},
               {PROC_CG_PIDS, "pids"}};
    _cleanup_free_ char *buf = NULL;
    unsigned have = 0;
    char add[64] = "";
    size_t off = 0;
    int r;

    r = proc_read_file_at(fd, "cgroup.subtree_control", &buf);
    if (r == 0)
        r = proc_parse_controllers(buf, &have);
    if (r < 0) {
        cg_set_err(errbuf, errlen, "cannot read %s/cgroup.subtree_control", path);
        return r;
    }
    if ((have & V2_NEEDED) == V2_NEEDED)
        return 0;
    /* The real root cgroup is exempt from the no-internal-process rule (and holds every
     * system process: never move those). The top of a cgroup namespace (a container) is not
     * exempt; it has cgroup.type, the real root has not. */
    if (is_self && (!is_top || faccessat(fd, "cgroup.type", F_OK, 0) == 0)) {
        r = move_to_leaf(m, fd);
        if (r < 0) {
            cg_set_err(errbuf, errlen, "cannot move the server's processes into %s/%s", path,
                       V2_SERVER_LEAF);
            return r;
        }
    }
    for (size_t i = 0; i < ELEMENTSOF(ctl); i++)
        if (!(have & ctl[i].bit))
            off += (size_t)snprintf(add + off, sizeof(add) - off, "%s+%s", off ? " " : "",
                                    ctl[i].name);
    r = proc_write_file_at(fd, "cgroup.subtree_control", add);
    if (r < 0) {
        cg_set_err(errbuf, errlen, "cannot write '%s' to %s/cgroup.subtree_control", add, path);
        return r;
    }
    log_debug("cgroup: enabled '%s' in %s", add, path);
    return 0;
}

static int v2_init(struct cg_manager *m, const struct cg_config *cfg, char *errbuf, size_t errlen)
{
    _cleanup_free_ char *self = NULL;
    _cleanup_free_ char *root = NULL;
    _cleanup_free_ char *path = NULL;
    _cleanup_close_ int cur = -1;
    int r;

    if (cfg->root) {
        root = strip_slashes(cfg->root);
        if (!root)
            return -ENOMEM;
        /* The server's own cgroup still matters if the root is below it. */
        if (cfg->self_cgroup) {
            self = strip_slashes(cfg->self_cgroup);
        } else {
            _cleanup_free_ char *raw = NULL;
            if (proc_read_cgroup(0, NULL, &raw) == 0)
                self = strip_slashes(raw);
        }
    } else {
        r = default_root(cfg, &self, &root);
        if (r < 0) {
            cg_set_err(errbuf, errlen, "cannot find the server's own cgroup v2");
            return r;
        }
    }

    path = strdup(m->base);
    if (!path)
        return -ENOMEM;
    cur = open(m->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cur < 0) {
        r = -errno;
        cg_set_err(errbuf, errlen, "cannot open %s", m->base);
        return r;
    }
    /* Walk from the top down to the job root: each level must pass the controllers on. */
    _cleanup_free_ char *copy = strdup(root);
    _cleanup_free_ char *rel = strdup("");
    if (!copy || !rel)
        return -ENOMEM;
    char *save = NULL;
    char *comp = strtok_r(copy, "/", &save);
    for (;;) {
        bool is_self = self && strcmp(rel, self) == 0;
        r = enable_controllers(m, cur, is_self, rel[0] == '\0', path, errbuf, errlen);
        if (r < 0)
            return r;
        if (!comp)
            break;
        if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0) {
            cg_set_err(errbuf, errlen, "bad cgroup root '%s'", root);
            return -EINVAL;
        }
        r = cg_mkdir_at(m, cur, comp, "");
        if (r < 0 && r != -EEXIST) {
            cg_set_err(errbuf, errlen, "cannot create %s/%s", path, comp);
            return r;
        }
        int next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (next < 0) {
            r = -errno;
            cg_set_err(errbuf, errlen, "cannot open %s/%s", path, comp);
            return r;
        }
        (void)close(cur);
        cur = next;
        char *np = NULL, *nr = NULL;
        if (asprintf(&np, "%s/%s", path, comp) < 0)
            return -ENOMEM;
        free(path);
        path = np;
        if (asprintf(&nr, "%s%s%s", rel, rel[0] ? "/" : "", comp) < 0)
            return -ENOMEM;
        free(rel);
        rel = nr;
        comp = strtok_r(NULL, "/", &save);
    }
    m->hier[0].name = strdup("");
    if (!m->hier[0].name)
        return -ENOMEM;
    m->hier[0].roles = CG_ROLE_ALL_V1;
    m->hier[0].rootfd = TAKE_FD(cur);
    m->n_hier = 1;
    m->root = TAKE_PTR(root);
    return 0;
}

static int v2_set_defaults(struct cg *cg)
{
    /* Swap off for every job; the file is missing without swap accounting. */
    int r = proc_write_file_at(cg->fd[0], "memory.swap.max", "0");
    return r == -ENOENT ? 0 : r;
}

/* io.max: one line per device with only the keys that change; key=max lifts one (the kernel
 * drops a device whose keys are all max). */
static int v2_change_io(struct cg *cg, const struct limits *from, const struct limits *to)
{
    const struct {
        const char *key;
        uint64_t from, to;
    } kv[] = {{"riops", from->io_riops, to->io_riops},
              {"wiops", from->io_wiops, to->io_wiops},
              {"rbps", from->io_rbps, to->io_rbps},
              {"wbps", from->io_wbps, to->io_wbps}};

    for (size_t i = 0; i < cg->m->n_devs; i++) {
        char line[160];
        int off = snprintf(line, sizeof(line), "%u:%u", cg->m->devs[i].major, cg->m->devs[i].minor);
        for (size_t k = 0; k < ELEMENTSOF(kv); k++) {
            if (kv[k].from == kv[k].to)
                continue;
            if (kv[k].to)
                off += snprintf(line + off, sizeof(line) - (size_t)off, " %s=%" PRIu64, kv[k].key,
                                kv[k].to);
            else
                off += snprintf(line + off, sizeof(line) - (size_t)off, " %s=max", kv[k].key);
        }
        /* One line per write, newline-terminated as echo(1) would send it. */
        if (off < 0 || (size_t)off + 2 > sizeof(line))
            return -ENAMETOOLONG;
        line[off++] = '\n';
        line[off] = '\0';
        int r = proc_write_file_at(cg->fd[0], "io.max", line);
        if (r < 0) {
            log_debug("cgroup: io.max '%s': %s", line, strerror(-r));
            return r;
        }
    }
    return 0;
}

/* A limit value, or "max" for 0 (no limit). */
static int v2_write_max(int fd, const char *file, uint64_t v)
{
    if (v == 0)
        return proc_write_file_at(fd, file, "max");
    return proc_writef_at(fd, file, "%" PRIu64, v);
}

/* memory.swap.max is left as set_defaults wrote it: swap is off for every job. */
static int v2_change_limits(struct cg *cg, const struct limits *from, const struct limits *to)
{
    int fd = cg->fd[0], r;

    if (to->cpu_millis != from->cpu_millis) {
        if (to->cpu_millis)
            r = proc_writef_at(fd, "cpu.max", "%" PRIu64 " %u", cg_cpu_quota_usec(to->cpu_millis),
                               CG_CPU_PERIOD_USEC);
        else
            r = proc_writef_at(fd, "cpu.max", "max %u", CG_CPU_PERIOD_USEC);
        if (r < 0)
            return r;
    }
    if (to->memory_bytes != from->memory_bytes &&
        (r = v2_write_max(fd, "memory.max", to->memory_bytes)) < 0)
        return r;
    if (to->io_riops != from->io_riops || to->io_wiops != from->io_wiops ||
        to->io_rbps != from->io_rbps || to->io_wbps != from->io_wbps) {
        r = v2_change_io(cg, from, to);
        if (r < 0)
            return r;
    }
    if (to->pids != from->pids && (r = v2_write_max(fd, "pids.max", to->pids)) < 0)
        return r;
    return 0;
}

static int v2_attach(struct cg *cg, pid_t pid, unsigned parent_roles)
{
    if (parent_roles)
        return -EOPNOTSUPP; /* one hierarchy for every controller */
    if (cg->fd[0] < 0)
        return -EBADF;
    return proc_writef_at(cg->fd[0], "cgroup.procs", "%d", (int)pid);
}

static int v2_is_populated(struct cg *cg)
{
    uint64_t v;
    int r;

    if (cg->fd[0] < 0)
        return 0;
    /* "populated" counts descendants too. */
    r = proc_read_keyed_u64_at(cg->fd[0], "cgroup.events", "populated", &v);
    if (r < 0)
        return r;
    return v != 0;
}

static void kill_pid(pid_t pid, void *userdata)
{
    (void)userdata;
    (void)kill(pid, SIGKILL); /* ESRCH: gone already; frozen pids cannot be reused */
}

/* Kernels before 5.14 have no cgroup.kill: freeze, SIGKILL every pid, thaw. */
static int v2_kill_frozen(struct cg *cg)
{
    int fd = cg->fd[0];
    int r = proc_write_file_at(fd, "cgroup.freeze", "1");

    if (r < 0)
        log_debug("cgroup: freeze '%s': %s, killing anyway", cg->id, strerror(-r));
    else {
        int64_t deadline = clock_ms(CLOCK_MONOTONIC) + V2_FREEZE_WAIT_MS;
        for (unsigned delay = 1;; delay = delay < 20 ? delay * 2 : delay) {
            uint64_t frozen = 0;
            if (proc_read_keyed_u64_at(fd, "cgroup.events", "frozen", &frozen) < 0 || frozen ||
                clock_ms(CLOCK_MONOTONIC) >= deadline)
                break;
            cg_sleep_ms(delay);
        }
    }
    r = cg_for_each_pid(fd, kill_pid, NULL);
    int q = proc_write_file_at(fd, "cgroup.freeze", "0");
    if (r >= 0 && q < 0 && q != -ENOENT)
        r = q;
    return r < 0 ? r : 0;
}

static int v2_kill_once(struct cg *cg)
{
    if (cg->fd[0] < 0)
        return 0;
    int r = proc_write_file_at(cg->fd[0], "cgroup.kill", "1");
    if (r == -ENOENT)
        return v2_kill_frozen(cg);
    return r;
}

static int v2_read_usage(struct cg *cg, struct cg_usage *ret)
{
    struct cg_usage u = {0};
    int fd = cg->fd[0];
    uint64_t v;
    int r;

    r = cg_usage_u64(cg, CG_USAGE_CPU, fd, "cpu.stat", "usage_usec", &v);
    if (r == 0)
        u.cpu_usec = v;
    else if (r != -ENOENT)
        return r;

    r = cg_usage_u64(cg, CG_USAGE_PEAK, fd, "memory.peak", NULL, &v); /* Linux 5.19 */
    if (r == 0) {
        u.memory_peak_bytes = v;
    } else if (r == -ENOENT) {
        r = cg_usage_u64(cg, CG_USAGE_CURRENT, fd, "memory.current", NULL, &v);
        if (r < 0 && r != -ENOENT)
            return r;
        uint64_t seen = __atomic_load_n(&cg->peak_seen, __ATOMIC_RELAXED);
        while (r == 0 && v > seen &&
               !__atomic_compare_exchange_n(&cg->peak_seen, &seen, v, false, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
            ;
        u.memory_peak_bytes = __atomic_load_n(&cg->peak_seen, __ATOMIC_RELAXED);
    } else {
        return r;
    }

    r = cg_usage_u64(cg, CG_USAGE_OOM, fd, "memory.events", "oom_kill", &v);
    if (r == 0)
        u.oom_killed = v > 0;
    else if (r != -ENOENT)
        return r;
    *ret = u;
    return 0;
}

const struct cg_backend cg_backend_v2 = {
    .init = v2_init,
    .set_defaults = v2_set_defaults,
    .change_limits = v2_change_limits,
    .attach = v2_attach,
    .kill_once = v2_kill_once,
    .is_populated = v2_is_populated,
    .read_usage = v2_read_usage,
};
