#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "cleanup.h"
#include "id.h"
#include "log.h"
#include "proc.h"

#define CG_DEFAULT_TIMEOUT_MS 5000
#define CG_MAX_DEPTH          16

void cg_set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!errbuf || errlen == 0)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* ---- shared helpers ---------------------------------------------------------------------- */

void cg_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

uint64_t cg_cpu_quota_usec(uint64_t cpu_millis)
{
    /* millis/1000 CPUs for a period of CG_CPU_PERIOD_USEC: quota = millis * 100 us. */
    uint64_t q = cpu_millis > UINT64_MAX / 100 ? UINT64_MAX / 100 : cpu_millis * 100;
    return q < 1000 ? 1000 : q;
}

int cg_mkdir_at(const struct cg_manager *m, int dirfd, const char *name, const char *hier)
{
    if (mkdirat(dirfd, name, 0755) < 0)
        return -errno;
    if (m->hooks.after_mkdir) {
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        m->hooks.after_mkdir(fd, hier, m->hooks.userdata);
    }
    return 0;
}

int cg_mkdir_p_at(const struct cg_manager *m, int dirfd, const char *rel, const char *hier,
                  int *ret_fd)
{
    _cleanup_close_ int cur = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_free_ char *copy = strdup(rel);
    char *save = NULL;

    if (cur < 0)
        return -errno;
    if (!copy)
        return -ENOMEM;
    for (char *comp = strtok_r(copy, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
        if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0)
            return -EINVAL;
        int r = cg_mkdir_at(m, cur, comp, hier);
        if (r < 0 && r != -EEXIST)
            return r;
        int next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (next < 0)
            return -errno;
        (void)close(cur);
        cur = next;
    }
    *ret_fd = TAKE_FD(cur);
    return 0;
}

static int rmdir_one(const struct cg_manager *m, int parent_fd, const char *name)
{
    if (m->hooks.rmdir)
        return m->hooks.rmdir(parent_fd, name, m->hooks.userdata);
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0)
        return -errno;
    return 0;
}

static int rmdir_tree(const struct cg_manager *m, int parent_fd, const char *name, int depth)
{
    _cleanup_close_ int fd = -1;
    DIR *d;
    int r = 0;

    if (depth > CG_MAX_DEPTH)
        return -ELOOP;
    fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    d = fdopendir(fd);
    if (!d)
        return -errno;
    fd = -1; /* owned by d now */
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_type != DT_DIR || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        int q = rmdir_tree(m, dirfd(d), e->d_name, depth + 1);
        if (q < 0 && r == 0)
            r = q;
    }
    (void)closedir(d);
    if (r < 0)
        return r;
    r = rmdir_one(m, parent_fd, name);
    return r == -ENOENT ? 0 : r;
}

int cg_rmdir_tree(const struct cg_manager *m, int parent_fd, const char *name)
{
    return rmdir_tree(m, parent_fd, name, 0);
}

static int for_each_pid(int fd, void (*fn)(pid_t, void *), void *userdata, int depth)
{
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    int total, r;
    DIR *d;

    if (depth > CG_MAX_DEPTH)
        return -ELOOP;
    r = proc_read_pids_at(fd, "cgroup.procs", &pids, &n);
    if (r == -ENOENT || r == -ENODEV) /* removed underneath us */
        return 0;
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        fn(pids[i], userdata);
    total = (int)n;

    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? total : -errno;
    d = fdopendir(dfd);
    if (!d) {
        r = -errno;
        (void)close(dfd);
        return r;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_type != DT_DIR || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        _cleanup_close_ int child =
            openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (child < 0)
            continue; /* gone */
        r = for_each_pid(child, fn, userdata, depth + 1);
        if (r < 0) {
            (void)closedir(d);
            return r;
        }
        total += r;
    }
    (void)closedir(d);
    return total;
}

int cg_for_each_pid(int dirfd, void (*fn)(pid_t pid, void *userdata), void *userdata)
{
    return for_each_pid(dirfd, fn, userdata, 0);
}

/* ---- public API -------------------------------------------------------------------------- */

bool cg_id_is_valid(const char *id)
{
    size_t n;

    if (!id)
        return false;
    n = strlen(id);
    if (n == 0 || n > 128 || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

const char *cg_mode_name(enum cg_mode mode)
{
    switch (mode) {
    case CG_V1:
        return "v1";
    case CG_V2:
        return "v2";
    case CG_PROBE:
        break;
    }
    return "unknown";
}

enum cg_mode cg_manager_mode(const struct cg_manager *m)
{
    return m->mode;
}

void cg_manager_free(struct cg_manager *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < CG_MAX_HIER; i++) {
        free(m->hier[i].name);
        if (m->hier[i].rootfd >= 0)
            (void)close(m->hier[i].rootfd);
    }
    free(m->base);
    free(m->root);
    free(m->devs);
    free(m);
}

static void close_usage_files(struct cg *cg)
{
    for (size_t i = 0; i < CG_USAGE_FILES; i++) {
        int fd = __atomic_exchange_n(&cg->usage_fd[i], -1, __ATOMIC_ACQ_REL);
        if (fd >= 0)
            (void)close(fd);
    }
}

int cg_usage_u64(struct cg *cg, enum cg_usage_file slot, int dirfd, const char *name,
                 const char *key, uint64_t *ret)
{
    char buf[4096];
    ssize_t n;
    int fd;

    if ((unsigned)slot >= CG_USAGE_FILES)
        return -EINVAL;
    fd = __atomic_load_n(&cg->usage_fd[slot], __ATOMIC_ACQUIRE);
    if (fd < 0) {
        int mine = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        int none = -1;
        if (mine < 0)
            return -errno;
        if (__atomic_compare_exchange_n(&cg->usage_fd[slot], &none, mine, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            fd = mine;
        } else {
            (void)close(mine); /* another reader was first */
            fd = none;
        }
    }
    do
        n = pread(fd, buf, sizeof(buf) - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if ((size_t)n == sizeof(buf) - 1)
        return -EFBIG;
    buf[n] = '\0';
    return key ? proc_parse_keyed_u64(buf, key, ret) : proc_parse_u64(buf, ret);
}

void cg_free(struct cg *cg)
{
    if (!cg)
        return;
    for (size_t i = 0; i < CG_MAX_HIER; i++)
        if (cg->fd[i] >= 0)
            (void)close(cg->fd[i]);
    close_usage_files(cg);
    free(cg->id);
    free(cg);
}

/* What a new cgroup has before any limit is written: the kernel's defaults, no limits. */
static const struct limits cg_no_limits;

static int cg_alloc(struct cg_manager *m, const char *id, struct cg **ret)
{
    struct cg *cg = calloc(1, sizeof(*cg));
    if (!cg)
        return -ENOMEM;
    for (size_t i = 0; i < CG_MAX_HIER; i++)
        cg->fd[i] = -1;
    for (size_t i = 0; i < CG_USAGE_FILES; i++)
        cg->usage_fd[i] = -1;
    cg->m = m;
    cg->id = strdup(id);
    if (!cg->id) {
        free(cg);
        return -ENOMEM;
    }
    *ret = cg;
    return 0;
}

/* Removes the job directories this cg holds open, in every hierarchy. */
static int remove_dirs(struct cg *cg)
{
    int r = 0;
    for (size_t i = 0; i < cg->m->n_hier; i++) {
        if (cg->fd[i] < 0)
            continue;
        int q = cg_rmdir_tree(cg->m, cg->m->hier[i].rootfd, cg->id);
        if (q < 0) {
            if (r == 0)
                r = q;
            continue;
        }
        (void)close(cg->fd[i]);
        cg->fd[i] = -1;
    }
    return r;
}

int cg_create(struct cg_manager *m, const char *id, const struct limits *lim, struct cg **ret)
{
    _cleanup_(cg_freep) struct cg *cg = NULL;
    int r;

    if (!cg_id_is_valid(id))
        return -EINVAL;
    r = cg_alloc(m, id, &cg);
    if (r < 0)
        return r;
    for (size_t i = 0; i < m->n_hier; i++) {
        r = cg_mkdir_at(m, m->hier[i].rootfd, id, m->hier[i].name);
        if (r < 0)
            goto fail; /* -EEXIST included: never adopt a cgroup we did not make */
        cg->fd[i] = openat(m->hier[i].rootfd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (cg->fd[i] < 0) {
            r = -errno;
            /* made but not open: remove it here, remove_dirs() only knows open ones */
            (void)cg_rmdir_tree(m, m->hier[i].rootfd, id);
            goto fail;
        }
    }
    if (m->ops->set_defaults) {
        r = m->ops->set_defaults(cg);
        if (r < 0)
            goto fail;
    }
    r = m->ops->change_limits(cg, &cg_no_limits, lim ? lim : &cg_no_limits);
    if (r < 0)
        goto fail;
    log_debug("cgroup: created job cgroup '%s'", id);
    *ret = TAKE_PTR(cg);
    return 0;

fail:
    log_debug("cgroup: creating job cgroup '%s' failed: %s", id, strerror(-r));
    /* Best effort: we made these directories a moment ago and nothing runs in them. */
    (void)remove_dirs(cg);
    return r;
}

int cg_change_limits(struct cg *cg, const struct limits *from, const struct limits *to)
{
    int r = cg->m->ops->change_limits(cg, from, to);

    if (r < 0)
        log_debug("cgroup: changing the limits of '%s': %s", cg->id, strerror(-r));
    return r;
}

int cg_set_limits(struct cg *cg, const struct limits *lim)
{
    return cg_change_limits(cg, &cg_no_limits, lim);
}

const char *cg_get_id(const struct cg *cg)
{
    return cg->id;
}

int cg_get_dirfd(const struct cg *cg)
{
    if (cg->m->mode != CG_V2)
        return -EOPNOTSUPP;
    return cg->fd[0] >= 0 ? cg->fd[0] : -EBADF;
}

/* pid into the job's cgroup of every hierarchy, or the job root of those in parent_roles (only
 * where cg_memory_apart). */
static int attach(struct cg *cg, pid_t pid, unsigned parent_roles)
{
    if (pid <= 0)
        return -EINVAL;
    if (parent_roles && !cg->m->memory_apart)
        return -EOPNOTSUPP;
    return cg->m->ops->attach(cg, pid, parent_roles);
}

int cg_attach(struct cg *cg, pid_t pid)
{
    return attach(cg, pid, 0);
}

bool cg_memory_apart(const struct cg_manager *m)
{
    return m->memory_apart;
}

int cg_attach_apart(struct cg *cg, pid_t pid)
{
    return attach(cg, pid, CG_ROLE_MEMORY);
}

int cg_open_memory_procs(struct cg *cg)
{
    if (!cg_memory_apart(cg->m))
        return -EOPNOTSUPP;
    return cg->m->ops->open_memory_procs(cg);
}

int cg_is_populated(struct cg *cg)
{
    return cg->m->ops->is_populated(cg);
}

int cg_kill(struct cg *cg, int timeout_ms)
{
    int64_t deadline =
        clock_ms(CLOCK_MONOTONIC) + (timeout_ms < 0 ? CG_DEFAULT_TIMEOUT_MS : timeout_ms);
    unsigned delay = 1;

    for (;;) {
        int r = cg->m->ops->is_populated(cg);
        if (r <= 0)
            return r;
        r = cg->m->ops->kill_once(cg);
        if (r < 0)
            return r;
        /* SIGKILL is delivered at once, but exit (unmapping memory) takes a moment. */
        r = cg->m->ops->is_populated(cg);
        if (r <= 0)
            return r;
        if (clock_ms(CLOCK_MONOTONIC) >= deadline)
            return -ETIMEDOUT;
        cg_sleep_ms(delay);
        if (delay < 50)
            delay *= 2;
    }
}

int cg_read_usage(struct cg *cg, struct cg_usage *ret)
{
    return cg->m->ops->read_usage(cg, ret);
}

int cg_destroy(struct cg *cg, int timeout_ms)
{
    int64_t deadline =
        clock_ms(CLOCK_MONOTONIC) + (timeout_ms < 0 ? CG_DEFAULT_TIMEOUT_MS : timeout_ms);
    bool any = false;
    int r;

    /* The usual case first: by the time a job's shim has been reaped its cgroup is empty (the
     * shim's exit took every process of its namespace along) and has no children, so one rmdir
     * per hierarchy does it, without listing cgroup.procs and every directory (a dozen kernfs
     * listings on v1, on the job runner's event thread). What is left (EBUSY: processes or
     * children) goes the long way: kill, then the tree walk. */
    close_usage_files(cg); /* no file of a cgroup about to go is kept open */
    for (size_t i = 0; i < cg->m->n_hier; i++) {
        if (cg->fd[i] < 0)
            continue;
        r = rmdir_one(cg->m, cg->m->hier[i].rootfd, cg->id);
        if (r == 0 || r == -ENOENT) {
            (void)close(cg->fd[i]);
            cg->fd[i] = -1;
        }
        any |= cg->fd[i] >= 0;
    }
    if (!any) {
        log_debug("cgroup: removed job cgroup '%s'", cg->id);
        return 0;
    }
    r = cg_kill(cg, timeout_ms);
    if (r == -ETIMEDOUT)
        return -EBUSY;
    if (r < 0 && r != -ENOENT)
        return r;
    for (unsigned delay = 1;; delay = delay < 50 ? delay * 2 : delay) {
        r = remove_dirs(cg);
        if (r != -EBUSY)
            break;
        /* v1 can report a process gone from cgroup.procs a moment before rmdir agrees. */
        if (clock_ms(CLOCK_MONOTONIC) >= deadline)
            break;
        cg_sleep_ms(delay);
    }
    if (r == 0)
        log_debug("cgroup: removed job cgroup '%s'", cg->id);
    return r;
}

int cg_cleanup_stale(struct cg_manager *m, const char *id)
{
    _cleanup_(cg_freep) struct cg *cg = NULL;
    bool found = false;
    int r;

    if (!cg_id_is_valid(id))
        return -EINVAL;
    r = cg_alloc(m, id, &cg);
    if (r < 0)
        return r;
    for (size_t i = 0; i < m->n_hier; i++) {
        cg->fd[i] = openat(m->hier[i].rootfd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (cg->fd[i] < 0) {
            if (errno != ENOENT)
                return -errno;
            continue;
        }
        found = true;
    }
    if (!found)
        return 0;
    log_debug("cgroup: removing stale job cgroup '%s'", id);
    r = cg_destroy(cg, -1);
    return r < 0 ? r : 1;
}

/* Whether the cgroup name of every hierarchy that has it is empty and older than min_age_s: its
 * processes (none) and its directory's mtime (a cgroup made lately may be another server's,
 * about to get its shim). A hierarchy that cannot tell keeps the cgroup. */
static bool is_leftover(struct cg_manager *m, const char *name, unsigned min_age_s)
{
    time_t now = time(NULL);
    bool found = false;

    for (size_t i = 0; i < m->n_hier; i++) {
        _cleanup_close_ int fd =
            openat(m->hier[i].rootfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_free_ pid_t *pids = NULL;
        struct stat st;
        size_t n = 0;

        if (fd < 0) {
            if (errno == ENOENT)
                continue;
            return false;
        }
        /* The directory's mtime: set when the cgroup and its files were made. */
        if (fstat(fd, &st) < 0 || st.st_mtime > now - (time_t)min_age_s)
            return false;
        if (proc_read_pids_at(fd, "cgroup.procs", &pids, &n) < 0 || n > 0)
            return false;
        found = true;
    }
    return found;
}

int cg_remove_leftovers(struct cg_manager *m, unsigned min_age_s,
                        bool (*keep)(const char *id, void *userdata), void *userdata)
{
    int removed = 0;

    for (size_t i = 0; i < m->n_hier; i++) {
        int fd = openat(m->hier[i].rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d;
        struct dirent *de;

        if (fd < 0)
            return -errno;
        d = fdopendir(fd);
        if (!d) {
            int r = -errno;
            (void)close(fd);
            return r;
        }
        while ((de = readdir(d))) {
            int r;
            /* A job id only: the root may hold other programs' cgroups (another tool's
             * process_api, a "server" leaf) that are never ours to remove. */
            if (!id_is_valid(de->d_name) || keep(de->d_name, userdata) ||
                !is_leftover(m, de->d_name, min_age_s))
                continue;
            r = cg_cleanup_stale(m, de->d_name);
            if (r < 0)
                log_debug("cgroup: removing the leftover job cgroup '%s': %s", de->d_name,
                          strerror(-r));
            else if (r > 0)
                removed++;
        }
        (void)closedir(d);
    }
    return removed;
}
