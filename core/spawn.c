#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tsan.h"

/* The child's stack when it shares the server's memory: child_exec needs a few hundred bytes. */
#define SPAWN_STACK_SIZE (64u << 10)

/* The child of clone3 uses raw system calls only: libc's wrappers may be intercepted (the
 * sanitizers' fd and exit bookkeeping belongs to the parent's threads, which a raw clone3
 * child does not have; TSan reported the child's dup2 as racing the parent's socketpair). */
__attribute__((no_sanitize_address)) static void child_fail(int fd, int step, int err)
{
    struct shimproto_sync m = {.step = step, .err = err};

    (void)syscall(SYS_write, fd, &m, sizeof(m));
    (void)syscall(SYS_exit_group, 127);
    __builtin_unreachable();
}

/* Runs in the clone child of a (possibly multi-threaded) server: raw system calls only. Not
 * instrumented by ASan: with shared memory its stack frames' shadow would outlive the child. */
__attribute__((no_sanitize_address)) static void child_exec(const struct spawn_args *a,
                                                            char *const *envp)
{
    int sync_fd = a->fds[SHIMPROTO_FD_SYNC];
    int tmp[SHIMPROTO_FD_COUNT];

    /* The getppid() check that usually follows cannot work here (in a new pid namespace the
     * parent is pid 0): the shim instead waits for the parent's go message, and gets EOF if the
     * parent died before this line. */
    if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        child_fail(sync_fd, SHIMPROTO_STEP_EXEC_SHIM, errno);
    /* Two passes, so that no source fd is overwritten before it was copied: first above every
     * target, then onto the targets (dup2 clears close-on-exec there). */
    for (int i = 0; i < SHIMPROTO_FD_COUNT; i++) {
        tmp[i] = (int)syscall(SYS_fcntl, a->fds[i], F_DUPFD_CLOEXEC, SHIMPROTO_FD_COUNT);
        if (tmp[i] < 0)
            child_fail(sync_fd, SHIMPROTO_STEP_EXEC_SHIM, errno);
    }
    for (int i = 0; i < SHIMPROTO_FD_COUNT; i++)
        if (syscall(SYS_dup3, tmp[i], i, 0) < 0) /* tmp[i] > i: never the same fd */
            child_fail(sync_fd, SHIMPROTO_STEP_EXEC_SHIM, errno);
    sync_fd = SHIMPROTO_FD_SYNC;
    (void)syscall(SYS_execve, a->exe, a->argv, envp);
    child_fail(sync_fd, SHIMPROTO_STEP_EXEC_SHIM, errno);
}

static char *const empty_env[] = {NULL};

__attribute__((no_sanitize_address)) static int child_main(void *arg)
{
    child_exec(arg, empty_env); /* does not return */
    return 127;
}

/* clone(CLONE_VM | CLONE_VFORK), the way posix_spawn starts a child: the server's address space
 * (tens of MB of mappings, thread stacks, gRPC's arenas) is neither copied into the child nor
 * torn down again by its exec a moment later; perf put that at ~1 ms of CPU per pooled shim.
 * The calling thread waits until the child has exec'd or exited; the child runs child_exec on
 * its own stack, touching nothing of ours but what it reads from a. glibc's clone, so only
 * without CLONE_INTO_CGROUP (clone3's). -errno or 0; *ret_pidfd set. */
static long clone_vfork(const struct spawn_args *a, int *ret_pidfd)
{
    void *stack = mmap(NULL, SPAWN_STACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    long pid;
    int err;

    if (stack == MAP_FAILED)
        return -errno;
    /* exit_signal 0 (no SIGCHLD), as with clone3 below. */
    pid = clone(child_main, (char *)stack + SPAWN_STACK_SIZE,
                (int)(a->ns_flags | CLONE_VM | CLONE_VFORK | CLONE_PIDFD), (void *)a, ret_pidfd);
    err = errno; /* the child shared and may have overwritten errno: only a failure's is ours */
    (void)munmap(stack, SPAWN_STACK_SIZE);
    return pid < 0 ? -err : pid;
}

int spawn_clone(const struct spawn_args *a, pid_t *ret_pid, int *ret_pidfd)
{
    struct clone_args ca;
    sigset_t all, old;
    int pidfd = -1;
    long pid;
    int r;

    memset(&ca, 0, sizeof(ca));
    ca.flags = a->ns_flags | CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
    ca.exit_signal = 0; /* no SIGCHLD: nobody else's waitpid(-1) or SIG_IGN can take our child */
    if (a->cgroup_fd >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)a->cgroup_fd;
    }

    /* No signal handler of the server may run in the child between clone and exec. The shim
     * sets its own mask first thing. */
    sigfillset(&all);
    r = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (r > 0)
        return -r;
    /* TSan intercepts glibc's clone (its fork handling would run in a child sharing memory). */
    if (a->cgroup_fd < 0 && !RUNJOB_TSAN) {
        pid = clone_vfork(a, &pidfd);
        r = pid < 0 ? (int)pid : 0;
    } else {
        pid = syscall(SYS_clone3, &ca, sizeof(ca));
        if (pid == 0)
            child_exec(a, empty_env); /* does not return */
        r = pid < 0 ? -errno : 0;
    }
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0)
        return r;
    *ret_pid = (pid_t)pid;
    *ret_pidfd = pidfd;
    return 0;
}
