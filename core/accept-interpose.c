/* The accept guard in a dynamic runjob (the ASan, TSan and debug builds): linked into that
 * executable only (not into libcore.a, where the static link would take this accept4 for the C
 * library's), exported by -rdynamic, so libgrpc.so's accept4 binds here. The accept itself is
 * the system call, not the next definition: a sanitizer's interceptor there would start
 * tracking the connection's fd, whose close inside libgrpc (uninstrumented, its interceptor
 * calls ignored) it never sees, and TSan would then take a cgroup file that reuses the number
 * (opened with openat, which it does not intercept) for a race on the fd. */
#include <sys/syscall.h>
#include <unistd.h>

#include "accept.h"

static int sys_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return (int)syscall(SYS_accept4, fd, addr, len, flags);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return accept_guard_accept4(sys_accept4, fd, addr, len, flags);
}
