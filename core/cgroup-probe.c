/* Building a manager: probing the cgroup layout under base (v2 unified, else the v1
 * hierarchies) and resolving the io devices limits apply to, once, at server start. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "cleanup.h"
#include "log.h"
#include "proc.h"

#define CG_DEFAULT_BASE      "/sys/fs/cgroup"
#define CG_DEFAULT_SYS_BLOCK "/sys/block"

/* ---- probe ------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned role;
} v1_controllers[] = {
    {"cpu", CG_ROLE_CPU},     {"cpuacct", CG_ROLE_CPUACCT}, {"memory", CG_ROLE_MEMORY},
    {"blkio", CG_ROLE_BLKIO}, {"pids", CG_ROLE_PIDS},       {"freezer", CG_ROLE_FREEZER},
};

static bool is_fs_type(const char *path, unsigned long magic)
{
    struct statfs sfs;
    return statfs(path, &sfs) == 0 && (unsigned long)sfs.f_type == magic;
}

/* v2 candidate: the unified mount at base (pure v2) or base/unified (hybrid). Fills *ret_path
 * and the controller mask of its root; 0, or -ENOENT if there is no unified hierarchy. */
static int probe_v2(const char *base, bool check_fs, char **ret_path, unsigned *ret_mask)
{
    _cleanup_free_ char *unified = NULL;
    _cleanup_free_ char *buf = NULL;
    const char *path = NULL;
    unsigned mask = 0;
    int r;

    if (asprintf(&unified, "%s/unified", base) < 0) {
        unified = NULL;
        return -ENOMEM;
    }
    if (!check_fs)
        path = base;
    else if (is_fs_type(base, CGROUP2_SUPER_MAGIC))
        path = base;
    else if (is_fs_type(unified, CGROUP2_SUPER_MAGIC))
        path = unified;
    else
        return -ENOENT;

    _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    r = proc_read_file_at(fd, "cgroup.controllers", &buf);
    if (r == 0)
        r = proc_parse_controllers(buf, &mask);
    if (r < 0 && r != -ENOENT)
        return r;
    *ret_path = strdup(path);
    if (!*ret_path)
        return -ENOMEM;
    *ret_mask = mask;
    return 0;
}

static void mask_names(unsigned mask, char *buf, size_t len)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{PROC_CG_CPU, "cpu"},
                 {PROC_CG_MEMORY, "memory"},
                 {PROC_CG_IO, "io"},
                 {PROC_CG_PIDS, "pids"}};
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < ELEMENTSOF(names); i++) {
        if (!(mask & names[i].bit))
            continue;
        int n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", names[i].name);
        if (n < 0 || (size_t)n >= len - off)
            break;
        off += (size_t)n;
    }
}

#define V2_NEEDED (PROC_CG_CPU | PROC_CG_MEMORY | PROC_CG_IO | PROC_CG_PIDS)

/* Finds the v1 hierarchies under base. Co-mounted hierarchies (base/cpu and base/cpuacct
 * both leading to "cpu,cpuacct") are recognised by inode and kept once with both roles.
 * Returns the mask of roles found. */
static int probe_v1(struct cg_manager *m, bool check_fs, unsigned *ret_found)
{
    struct stat st[CG_MAX_HIER];
    unsigned found = 0;

    for (size_t i = 0; i < ELEMENTSOF(v1_controllers); i++) {
        _cleanup_free_ char *path = NULL;
        struct stat s;

        if (asprintf(&path, "%s/%s", m->base, v1_controllers[i].name) < 0) {
            path = NULL;
            return -ENOMEM;
        }
        if (stat(path, &s) < 0 || !S_ISDIR(s.st_mode))
            continue;
        if (check_fs && !is_fs_type(path, CGROUP_SUPER_MAGIC))
            continue;
        found |= v1_controllers[i].role;
        size_t j;
        for (j = 0; j < m->n_hier; j++)
            if (st[j].st_dev == s.st_dev && st[j].st_ino == s.st_ino)
                break;
        if (j < m->n_hier) {
            m->hier[j].roles |= v1_controllers[i].role;
            continue;
        }
        m->hier[m->n_hier].name = strdup(v1_controllers[i].name);
        if (!m->hier[m->n_hier].name)
            return -ENOMEM;
        m->hier[m->n_hier].roles = v1_controllers[i].role;
        st[m->n_hier] = s;
        m->n_hier++;
    }
    *ret_found = found;
    return 0;
}

static bool skip_block_device(const char *name)
{
    /* Virtual or memory-backed: loop IO is charged again on its backing file's disk, ram and
     * zram are memory. dm-* and md* stay: they are how LVM and RAID disks appear. */
    return strncmp(name, "loop", 4) == 0 || strncmp(name, "ram", 3) == 0 ||
           strncmp(name, "zram", 4) == 0;
}

static int cmp_dev(const void *a, const void *b)
{
    const struct cg_dev *x = a, *y = b;
    if (x->major != y->major)
        return x->major < y->major ? -1 : 1;
    return x->minor < y->minor ? -1 : x->minor > y->minor;
}

static int add_dev(struct cg_manager *m, unsigned major, unsigned minor)
{
    for (size_t i = 0; i < m->n_devs; i++)
        if (m->devs[i].major == major && m->devs[i].minor == minor)
            return 0;
    struct cg_dev *nd = realloc(m->devs, (m->n_devs + 1) * sizeof(*nd));
    if (!nd)
        return -ENOMEM;
    m->devs = nd;
    m->devs[m->n_devs++] = (struct cg_dev){major, minor};
    return 0;
}

static int resolve_devices(struct cg_manager *m, const struct cg_config *cfg, char *errbuf,
                           size_t errlen)
{
    int r;

    if (cfg->io_devices) {
        for (const char *const *d = cfg->io_devices; *d; d++) {
            unsigned maj, min;
            r = proc_parse_devnum(*d, &maj, &min);
            if (r < 0) {
                cg_set_err(errbuf, errlen, "io device '%s' is not MAJ:MIN", *d);
                return r;
            }
            r = add_dev(m, maj, min);
            if (r < 0)
                return r;
        }
    } else {
        const char *sys_block = cfg->sys_block ? cfg->sys_block : CG_DEFAULT_SYS_BLOCK;
        int fd = open(sys_block, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            r = -errno;
            cg_set_err(errbuf, errlen, "cannot list block devices in %s", sys_block);
            return r;
        }
        DIR *d = fdopendir(fd);
        if (!d) {
            r = -errno;
            (void)close(fd);
            return r;
        }
        for (struct dirent *e; (e = readdir(d));) {
            _cleanup_free_ char *buf = NULL;
            _cleanup_free_ char *path = NULL;
            unsigned maj, min;

            if (e->d_name[0] == '.' || skip_block_device(e->d_name))
                continue;
            if (asprintf(&path, "%s/dev", e->d_name) < 0) {
                path = NULL;
                (void)closedir(d);
                return -ENOMEM;
            }
            /* Entries without a readable "dev" are not block devices; skip them. */
            if (proc_read_file_at(dirfd(d), path, &buf) < 0 ||
                proc_parse_devnum(buf, &maj, &min) < 0) {
                log_debug("cgroup: %s/%s has no usable dev file, ignoring", sys_block, e->d_name);
                continue;
            }
            r = add_dev(m, maj, min);
            if (r < 0) {
                (void)closedir(d);
                return r;
            }
        }
        (void)closedir(d);
    }
    if (m->n_devs > 1)
        qsort(m->devs, m->n_devs, sizeof(*m->devs), cmp_dev);
    return 0;
}

/* ---- manager ----------------------------------------------------------------------------- */

static const char *v1_role_name(unsigned role)
{
    for (size_t i = 0; i < ELEMENTSOF(v1_controllers); i++)
        if (v1_controllers[i].role == role)
            return v1_controllers[i].name;
    return "?";
}

int cg_manager_new(const struct cg_config *cfg, struct cg_manager **ret, char *errbuf,
                   size_t errlen)
{
    _cleanup_(cg_manager_freep) struct cg_manager *m = calloc(1, sizeof(*m));
    const char *base = cfg && cfg->base ? cfg->base : CG_DEFAULT_BASE;
    enum cg_mode want = cfg ? cfg->mode : CG_PROBE;
    static const struct cg_config empty;
    int r;

    if (!cfg)
        cfg = &empty;
    if (!m)
        return -ENOMEM;
    for (size_t i = 0; i < CG_MAX_HIER; i++)
        m->hier[i].rootfd = -1;
    if (cfg->test_hooks)
        m->hooks = *cfg->test_hooks;

    /* v2 first: one statfs decides it (docs/STYLE.md "Kernel text files"). */
    _cleanup_free_ char *v2_path = NULL;
    unsigned v2_mask = 0;
    bool have_v2 = false;
    if (want == CG_PROBE || want == CG_V2) {
        r = probe_v2(base, want == CG_PROBE, &v2_path, &v2_mask);
        if (r < 0 && r != -ENOENT)
            return r;
        have_v2 = r == 0;
        if (have_v2 && (v2_mask & V2_NEEDED) == V2_NEEDED) {
            m->mode = CG_V2;
            m->base = TAKE_PTR(v2_path);
        }
    }
    unsigned v1_found = 0;
    if (!m->mode && (want == CG_PROBE || want == CG_V1)) {
        m->base = strdup(base);
        if (!m->base)
            return -ENOMEM;
        r = probe_v1(m, want == CG_PROBE, &v1_found);
        if (r < 0)
            return r;
        if (v1_found == CG_ROLE_ALL_V1)
            m->mode = CG_V1;
    }
    if (!m->mode) {
        char v2_missing[64], v1_missing[96] = "";
        size_t off = 0;

        mask_names(V2_NEEDED & ~v2_mask, v2_missing, sizeof(v2_missing));
        for (size_t i = 0; i < ELEMENTSOF(v1_controllers); i++) {
            if (v1_found & v1_controllers[i].role)
                continue;
            int n = snprintf(v1_missing + off, sizeof(v1_missing) - off, "%s%s", off ? ", " : "",
                             v1_role_name(v1_controllers[i].role));
            if (n > 0 && (size_t)n < sizeof(v1_missing) - off)
                off += (size_t)n;
        }
        if (want == CG_V2 || (want == CG_PROBE && have_v2))
            cg_set_err(errbuf, errlen, "cgroup v2 at %s lacks %s; cgroup v1 under %s lacks %s",
                       v2_path ? v2_path : base, v2_missing, base,
                       want == CG_V2 ? "(not tried)" : v1_missing);
        else
            cg_set_err(errbuf, errlen, "no cgroup v2 hierarchy at %s; cgroup v1 under %s lacks %s",
                       base, base, want == CG_V1 || want == CG_PROBE ? v1_missing : "?");
        return -ENOTSUP;
    }
    m->ops = m->mode == CG_V2 ? &cg_backend_v2 : &cg_backend_v1;
    r = resolve_devices(m, cfg, errbuf, errlen);
    if (r < 0)
        return r;
    r = m->ops->init(m, cfg, errbuf, errlen);
    if (r < 0)
        return r;
    log_debug("cgroup: %s at %s, job root '%s', %zu io device(s)", cg_mode_name(m->mode), m->base,
              m->root, m->n_devs);
    *ret = TAKE_PTR(m);
    return 0;
}
