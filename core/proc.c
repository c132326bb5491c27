#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"

/* Parses the decimal digits at *p (no sign, no leading space) into a u64; advances *p. */
static int parse_u64_prefix(const char **p, uint64_t *ret)
{
    const char *s = *p;
    uint64_t v = 0;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *p = s;
    *ret = v;
    return 0;
}

/* True if only whitespace (kernel files end in "\n") remains at s. */
static bool only_space(const char *s)
{
    for (; *s; s++)
        if (*s != '\n' && *s != ' ' && *s != '\t')
            return false;
    return true;
}

int proc_parse_u64(const char *buf, uint64_t *ret)
{
    const char *p = buf;
    uint64_t v;

    if (strncmp(p, "max", 3) == 0 && only_space(p + 3)) {
        *ret = UINT64_MAX;
        return 0;
    }
    if (parse_u64_prefix(&p, &v) < 0 || !only_space(p))
        return -EINVAL;
    *ret = v;
    return 0;
}

int proc_parse_devnum(const char *buf, unsigned *ret_major, unsigned *ret_minor)
{
    const char *p = buf;
    uint64_t maj, min;

    if (parse_u64_prefix(&p, &maj) < 0 || *p++ != ':' || parse_u64_prefix(&p, &min) < 0 ||
        !only_space(p))
        return -EINVAL;
    /* Linux dev_t: 12-bit major, 20-bit minor. */
    if (maj > 0xfff || min > 0xfffff)
        return -EINVAL;
    *ret_major = (unsigned)maj;
    *ret_minor = (unsigned)min;
    return 0;
}

/* Does the comma-separated list [list, list+len) contain word exactly? */
static bool list_has(const char *list, size_t len, const char *word)
{
    size_t wl = strlen(word);
    const char *end = list + len;

    while (list <= end) {
        const char *comma = memchr(list, ',', (size_t)(end - list));
        const char *item_end = comma ? comma : end;
        if ((size_t)(item_end - list) == wl && memcmp(list, word, wl) == 0)
            return true;
        if (!comma)
            break;
        list = comma + 1;
    }
    return false;
}

int proc_parse_cgroup(const char *buf, const char *controller, char **ret_path)
{
    bool unified = !controller || !*controller;
    const char *line = buf;

    while (*line) {
        const char *nl = strchrnul(line, '\n');
        const char *c1 = memchr(line, ':', (size_t)(nl - line));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(nl - c1 - 1)) : NULL;

        if (nl == line) { /* empty line (trailing newline) */
            line = *nl ? nl + 1 : nl;
            continue;
        }
        /* "hierarchy-id:controller-list:path"; the path may itself contain ':'. */
        if (!c1 || !c2 || c1 == line || c2[1] != '/')
            return -EINVAL;
        for (const char *d = line; d < c1; d++)
            if (*d < '0' || *d > '9')
                return -EINVAL;

        const char *ctl = c1 + 1;
        size_t ctl_len = (size_t)(c2 - ctl);
        bool match = unified ? (ctl_len == 0 && c1 - line == 1 && line[0] == '0')
                             : (ctl_len > 0 && list_has(ctl, ctl_len, controller));
        if (match) {
            char *path = strndup(c2 + 1, (size_t)(nl - c2 - 1));
            if (!path)
                return -ENOMEM;
            *ret_path = path;
            return 0;
        }
        line = *nl ? nl + 1 : nl;
    }
    return -ENOENT;
}

int proc_parse_controllers(const char *buf, unsigned *ret_mask)
{
    static const struct {
        const char *name;
        unsigned bit;
    } known[] = {
        {"cpu", PROC_CG_CPU},   {"memory", PROC_CG_MEMORY}, {"io", PROC_CG_IO},
        {"pids", PROC_CG_PIDS}, {"cpuset", PROC_CG_CPUSET}, {"hugetlb", PROC_CG_HUGETLB},
    };
    unsigned mask = 0;
    const char *p = buf;

    for (;;) {
        p += strspn(p, " \t\n");
        if (!*p)
            break;
        size_t len = strcspn(p, " \t\n");
        if (len > 64)
            return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(known); i++)
            if (strlen(known[i].name) == len && memcmp(known[i].name, p, len) == 0)
                mask |= known[i].bit;
        p += len;
    }
    *ret_mask = mask;
    return 0;
}

int proc_parse_keyed_u64(const char *buf, const char *key, uint64_t *ret)
{
    size_t kl = strlen(key);
    const char *line = buf;

    if (kl == 0)
        return -EINVAL;
    while (*line) {
        const char *nl = strchrnul(line, '\n');
        if ((size_t)(nl - line) > kl && memcmp(line, key, kl) == 0 && line[kl] == ' ') {
            const char *p = line + kl + 1;
            uint64_t v;
            if (parse_u64_prefix(&p, &v) < 0 || p != nl)
                return -EINVAL;
            *ret = v;
            return 0;
        }
        line = *nl ? nl + 1 : nl;
    }
    return -ENOENT;
}

int proc_parse_pids(const char *buf, pid_t **ret_pids, size_t *ret_n)
{
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0, cap = 0;
    const char *p = buf;

    while (*p) {
        uint64_t v;
        if (*p == '\n') {
            p++;
            continue;
        }
        if (parse_u64_prefix(&p, &v) < 0 || v == 0 || v > 0x7fffffff || (*p && *p != '\n'))
            return -EINVAL;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            pid_t *np = realloc(pids, ncap * sizeof(*np));
            if (!np)
                return -ENOMEM;
            pids = np;
            cap = ncap;
        }
        pids[n++] = (pid_t)v;
    }
    *ret_pids = TAKE_PTR(pids);
    *ret_n = n;
    return 0;
}

const char *proc_parse_cmdline_arg(const char *buf, size_t len, unsigned i)
{
    const char *p = buf, *end = buf + len;

    for (; p < end; i--) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));

        if (i == 0)
            return p;
        if (!nul)
            return NULL;
        p = nul + 1;
    }
    return NULL;
}

int proc_parse_freezer_state(const char *buf, enum proc_freezer_state *ret)
{
    static const struct {
        const char *name;
        enum proc_freezer_state state;
    } states[] = {
        {"THAWED", PROC_THAWED},
        {"FREEZING", PROC_FREEZING},
        {"FROZEN", PROC_FROZEN},
    };
    for (size_t i = 0; i < ELEMENTSOF(states); i++) {
        size_t l = strlen(states[i].name);
        if (strncmp(buf, states[i].name, l) == 0 && only_space(buf + l)) {
            *ret = states[i].state;
            return 0;
        }
    }
    return -EINVAL;
}

int proc_read_fd(int fd, size_t max, char **ret_buf, size_t *ret_len)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0, cap = 0;

    for (;;) {
        if (cap - len < 2) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb;
            if (ncap > max + 2)
                ncap = max + 2; /* one byte past max tells "too big" from "exactly max" */
            if (!(nb = realloc(buf, ncap)))
                return -ENOMEM;
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max)
            return -EFBIG;
    }
    buf[len] = '\0';
    if (ret_len)
        *ret_len = len;
    *ret_buf = TAKE_PTR(buf);
    return 0;
}

int proc_write_fd(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int proc_read_file_at(int dirfd, const char *name, char **ret_buf)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0)
        return -errno;
    return proc_read_fd(fd, PROC_FILE_MAX, ret_buf, NULL);
}

int proc_write_file_at(int dirfd, const char *name, const char *s)
{
    /* O_TRUNC as echo(1) would: harmless on cgroupfs/sysfs/procfs. */
    _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY);
    size_t len = strlen(s);
    ssize_t n;

    if (fd < 0)
        return -errno;
    do
        n = write(fd, s, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if ((size_t)n != len)
        return -EIO;
    return 0;
}

int proc_writef_at(int dirfd, const char *name, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -ENAMETOOLONG;
    return proc_write_file_at(dirfd, name, buf);
}

int proc_read_u64_at(int dirfd, const char *name, uint64_t *ret)
{
    _cleanup_free_ char *buf = NULL;
    int r = proc_read_file_at(dirfd, name, &buf);
    if (r < 0)
        return r;
    return proc_parse_u64(buf, ret);
}

int proc_read_keyed_u64_at(int dirfd, const char *name, const char *key, uint64_t *ret)
{
    _cleanup_free_ char *buf = NULL;
    int r = proc_read_file_at(dirfd, name, &buf);
    if (r < 0)
        return r;
    return proc_parse_keyed_u64(buf, key, ret);
}

int proc_read_pids_at(int dirfd, const char *name, pid_t **ret_pids, size_t *ret_n)
{
    _cleanup_free_ char *buf = NULL;
    int r = proc_read_file_at(dirfd, name, &buf);
    if (r < 0)
        return r;
    return proc_parse_pids(buf, ret_pids, ret_n);
}

int proc_read_cgroup(pid_t pid, const char *controller, char **ret_path)
{
    _cleanup_free_ char *buf = NULL;
    char path[64];
    int r;

    if (pid == 0)
        snprintf(path, sizeof(path), "/proc/self/cgroup");
    else
        snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    r = proc_read_file_at(AT_FDCWD, path, &buf);
    if (r < 0)
        return r;
    return proc_parse_cgroup(buf, controller, ret_path);
}
