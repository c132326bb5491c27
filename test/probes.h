/* What this host can do, asked without faulting: probes shared by the unit and host tests. Each
 * returns NULL when the feature is there, else the reason in a few words, which the caller's
 * cr_skip_test line carries. A missing feature is the host's answer, never a test failure. */
#pragma once
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Whether the file system of dir exchanges two names (renameat2 RENAME_EXCHANGE; not NFS, nor
 * ZFS before 2.2, nor a FUSE server without rename2). Two files in a directory of their own next
 * to dir, removed again. */
static inline const char *probe_rename_exchange(const char *dir)
{
    static char why[160];
    char d[256], a[300], b[300];
    int fd, r, err;

    snprintf(d, sizeof(d), "%s.xchg.XXXXXX", dir);
    if (!mkdtemp(d))
        return "no directory for the probe";
    snprintf(a, sizeof(a), "%s/a", d);
    snprintf(b, sizeof(b), "%s/b", d);
    if ((fd = open(a, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)) >= 0)
        close(fd);
    if ((fd = open(b, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)) >= 0)
        close(fd);
    r = renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
    err = errno;
    (void)unlink(a);
    (void)unlink(b);
    (void)rmdir(d);
    if (r == 0)
        return NULL;
    snprintf(why, sizeof(why),
             "renameat2(RENAME_EXCHANGE) is refused on the file system of %s (%s)", dir,
             strerror(err));
    return why;
}

/* Whether clone3 can be called: its answer to a size of 0 is EINVAL where it exists; ENOSYS
 * (a kernel before 5.3, or a seccomp filter around the tests) or EPERM (an older container
 * profile) where it cannot. Nothing is cloned. */
static inline const char *probe_clone3(void)
{
    static char why[96];

#ifdef SYS_clone3
    if (syscall(SYS_clone3, NULL, 0) < 0 && errno == EINVAL)
        return NULL;
    snprintf(why, sizeof(why), "clone3 is refused here (%s)", strerror(errno));
#else
    snprintf(why, sizeof(why), "no clone3 in this libc's headers");
#endif
    return why;
}

/* Whether swap is on while the job cgroups cannot limit it (v1 without memory.memsw.*, v2
 * without memory.swap.max: swap accounting off): a process over its memory limit is then paged
 * out rather than OOM-killed. NULL when memory limits hold. */
static inline const char *probe_swap_escapes_memory_limits(void)
{
    char line[256];
    int n = 0;
    FILE *f = fopen("/proc/swaps", "re");
    glob_t g;

    if (!f)
        return NULL;
    while (fgets(line, sizeof(line), f))
        n++;
    fclose(f);
    if (n <= 1) /* the header alone: no swap */
        return NULL;
    if (access("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", F_OK) == 0)
        return NULL;
    /* v2: the root cgroup has no memory.swap.max, its children have it with swap accounting. */
    n = glob("/sys/fs/cgroup/*/memory.swap.max", 0, NULL, &g);
    globfree(&g);
    if (n == 0)
        return NULL;
    return "swap is on and the cgroups do not account it (no memory.memsw.* or memory.swap.max): "
           "a process over its memory limit is swapped out, not OOM-killed";
}
