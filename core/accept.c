/* The accept guard's policy (see core/accept.h); the two ways it is linked under gRPC are
 * core/accept-wrap.c (static) and core/accept-interpose.c (dynamic). */
#include "accept.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static atomic_int threshold;      /* an accepted fd at or above it is closed; 0 = unarmed */
static atomic_uint_fast64_t shed; /* connections closed unserved */
static atomic_int_fast64_t last_warn_ms;
static pthread_mutex_t spare_mu = PTHREAD_MUTEX_INITIALIZER;
static int spare_fd = -1; /* under spare_mu: given up to drain the queue at EMFILE */

/* Referenced so that the static link pulls core/accept-wrap.c (this call is __wrap_accept4
 * under --wrap=accept4) and a dynamic one the C library's accept4. */
__attribute__((used)) static accept4_fn const libc_accept4 = accept4;

int accept_guard_arm(unsigned reserve)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    (void)pthread_mutex_lock(&spare_mu);
    if (spare_fd < 0)
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    (void)pthread_mutex_unlock(&spare_mu);
    /* A limit too small to keep a reserve out of: connections may take every fd but one. */
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT32_MAX)
        rl.rlim_cur = INT32_MAX;
    atomic_store(&threshold, rl.rlim_cur > 2 * (rlim_t)reserve ? (int)(rl.rlim_cur - reserve)
                                                               : (int)rl.rlim_cur - 1);
    (void)libc_accept4;
    return 0;
}

uint64_t accept_guard_shed(void)
{
    return atomic_load(&shed);
}

static void count_shed(uint64_t n, const char *why)
{
    int64_t now = clock_ms(CLOCK_MONOTONIC), last = atomic_load(&last_warn_ms);
    uint64_t total = atomic_fetch_add(&shed, n) + n;

    /* Once per 10 s at most: a flood must not flood the log too. */
    if (now - last >= 10000 && atomic_compare_exchange_strong(&last_warn_ms, &last, now))
        log_warn("connection flood: %llu connection(s) closed unserved so far (%s)",
                 (unsigned long long)total, why);
}

/* At EMFILE: frees the spare fd, takes every pending connection off the queue and closes it,
 * and takes the spare back. */
static void drain_with_spare(accept4_fn real, int fd)
{
    uint64_t n = 0;
    int c;

    (void)pthread_mutex_lock(&spare_mu);
    if (spare_fd >= 0) {
        (void)close(spare_fd);
        while ((c = real(fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
            (void)close(c);
            n++;
        }
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* -1 if taken meanwhile */
    }
    (void)pthread_mutex_unlock(&spare_mu);
    count_shed(n, "out of file descriptors");
}

int accept_guard_accept4(accept4_fn real, int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    socklen_t cap = len ? *len : 0;
    uint64_t closed = 0;

    for (;;) {
        int t = atomic_load(&threshold), c, e;

        if (len)
            *len = cap;
        c = real(fd, addr, len, flags);
        if (c >= 0 && (t <= 0 || c < t)) {
            if (closed)
                count_shed(closed, "the fds kept for jobs and streams reached");
            return c;
        }
        if (c >= 0) { /* into the reserve: closed, and the next one looked at */
            (void)close(c);
            closed++;
            continue;
        }
        e = errno;
        if (closed)
            count_shed(closed, "the fds kept for jobs and streams reached");
        if (t > 0 && (e == EMFILE || e == ENFILE)) {
            drain_with_spare(real, fd);
            e = EAGAIN;
        }
        errno = e;
        return -1;
    }
}
