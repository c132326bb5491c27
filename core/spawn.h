#pragma once
/* Starting a job's shim (or the shim template): the clone3 (or clone(CLONE_VM | CLONE_VFORK))
 * that puts it in new namespaces with its fds at the numbers core/shimproto.h gives, its pidfd,
 * and the exec of the runjob binary. What is said to it afterwards is core/shimproto.h's. */
#include <sys/types.h>

#include "shimproto.h"

struct spawn_args {
    const char *exe;             /* the runjob binary */
    char *const *argv;           /* its argv: {"runjob", "shim", SHIMPROTO_NET_*, NULL} */
    int fds[SHIMPROTO_FD_COUNT]; /* parent fds that become 0..4 in the shim */
    unsigned long ns_flags;      /* CLONE_NEW* */
    int cgroup_fd;               /* >= 0: CLONE_INTO_CGROUP (cgroup v2) */
};

/* clone3()s the shim with the namespaces asked, PR_SET_PDEATHSIG=SIGKILL, fds placed, and
 * execs it. Returns 0 with the child's host pid and a pidfd (O_CLOEXEC), or -errno. The child
 * is not the caller's thread's child for wait purposes but the process's (no exit signal: reap
 * it with waitid(P_PIDFD, ..., WEXITED | __WALL)). Its pdeathsig fires when the calling THREAD
 * exits: call from a thread that lives as long as the job. An execve failure of the shim is
 * reported as {SHIMPROTO_STEP_EXEC_SHIM, errno} on fds[SHIMPROTO_FD_SYNC]. Every fd the caller
 * opened must be close-on-exec (the child keeps only fds 0..4). Thread-safe. */
int spawn_clone(const struct spawn_args *a, pid_t *ret_pid, int *ret_pidfd);
