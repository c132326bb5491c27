/* The accept guard in a dynamic runjob (the ASan, TSan and debug builds): linked into that
 * executable only (not into libcore.a, where the static link would take this accept4 for the C
 * library's), exported by -rdynamic, so libgrpc.so's accept4 binds here; the C library's (or a
 * sanitizer's interceptor) is the next definition, found with dlsym(RTLD_NEXT). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include "accept.h"

static accept4_fn next_accept4;
static pthread_once_t next_once = PTHREAD_ONCE_INIT;

static void resolve_next(void)
{
    next_accept4 = (accept4_fn)dlsym(RTLD_NEXT, "accept4");
    if (!next_accept4) /* calling ourselves would recurse forever */
        abort();
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    (void)pthread_once(&next_once, resolve_next);
    return accept_guard_accept4(next_accept4, fd, addr, len, flags);
}
