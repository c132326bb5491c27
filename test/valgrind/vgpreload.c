/* LD_PRELOAD for the valgrind tier only (test/valgrind/run.sh): lets the server start jobs
 * under valgrind 3.19, which cannot run two things the job runner does.
 *  - clone3 is not implemented (ENOSYS). A clone3 without CLONE_INTO_CGROUP (cgroup v1: job.c
 *    attaches the child itself while the shim waits for go) becomes the legacy clone with the
 *    same namespace flags, CLONE_PIDFD and exit signal 0 (the low byte of the flags).
 *  - execve("/proc/self/exe") starts valgrind's own tool binary, not the server. The shim is
 *    exec'd by the path readlink() gives at load time, which valgrind reports as the client's.
 * Everything else passes through unchanged. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static char self_exe[4096];
static long (*real_syscall)(long n, ...);

__attribute__((constructor)) static void vg_init(void)
{
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);

    self_exe[n > 0 ? n : 0] = '\0';
    real_syscall = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
}

long syscall(long n, ...)
{
    long a[6];
    va_list ap;

    va_start(ap, n);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (n == SYS_clone3) {
        const struct clone_args *ca = (const struct clone_args *)a[0];
        if (!(ca->flags & CLONE_INTO_CGROUP) && ca->exit_signal == 0 && ca->stack == 0)
            return real_syscall(SYS_clone, (long)ca->flags, 0L, (long)(uintptr_t)ca->pidfd, 0L, 0L);
    }
    if (n == SYS_execve && self_exe[0] && a[0] && strcmp((const char *)a[0], "/proc/self/exe") == 0)
        a[0] = (long)(uintptr_t)self_exe; /* spawn's clone3 child calls execve raw */
    return real_syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    if (self_exe[0] && strcmp(path, "/proc/self/exe") == 0)
        path = self_exe;
    return (int)real_syscall(SYS_execve, path, argv, envp);
}
