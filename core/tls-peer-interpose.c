/* The refused handshakes' peer in a dynamic runjob (the ASan, TSan and debug builds; see
 * core/tls.h "Refused handshakes"): shutdown(2), where gRPC ends a connection whose handshake
 * failed, logs a refusal pending on this thread with the socket's peer address. Linked into
 * that executable only, like core/accept-interpose.c and for the same reason: in libcore.a,
 * the static link would take this shutdown for the C library's (that link wraps shutdown with
 * --wrap, core/tls-wrap.c). Exported by -rdynamic, so libgrpc.so's shutdown binds here. The
 * shutdown itself is the system call: no sanitizer intercepts it, and no lookup of the next
 * definition can fail. */
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tls-internal.h"

static int sys_shutdown(int fd, int how)
{
    return (int)syscall(SYS_shutdown, fd, how);
}

int shutdown(int fd, int how)
{
    return tls_refusal_shutdown(sys_shutdown, fd, how);
}
