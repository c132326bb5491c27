/* The accept guard in the static binary: its link passes -Wl,--wrap=accept4, which sends every
 * call to accept4 (gRPC's listener's among them) here; __real_accept4 is the C library's.
 * Dynamic links never reference __wrap_accept4, so this object is not pulled from libcore.a
 * there (it would not link: __real_accept4 exists only under --wrap). */
#include "accept.h"

int __real_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return accept_guard_accept4(__real_accept4, fd, addr, len, flags);
}
