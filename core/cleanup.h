#pragma once
/* Scope-bound cleanup, after systemd's cleanup-fundamental.h: a variable declared with
 * _cleanup_free_ / _cleanup_close_ / _cleanup_(mod_freep) is released when it leaves scope,
 * unless ownership was given away with TAKE_PTR / TAKE_FD. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

/* DEFINE_CLEANUP(struct outlog *, outlog_free) defines outlog_freep(struct outlog **). */
#define DEFINE_CLEANUP(type, func)                                                                 \
    static inline __attribute__((unused)) void func##p(type *p)                                    \
    {                                                                                              \
        if (*p)                                                                                    \
            func(*p);                                                                              \
    }

static inline void cleanup_freep(void *p)
{
    free(*(void **)p);
}

/* close() preserving errno: cleanup runs on error paths that still report errno. */
static inline void cleanup_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        (void)close(*fd);
        errno = saved;
    }
}

static inline void cleanup_fclosep(FILE **f)
{
    if (*f)
        (void)fclose(*f);
}

#define _cleanup_free_   _cleanup_(cleanup_freep)
#define _cleanup_close_  _cleanup_(cleanup_closep)
#define _cleanup_fclose_ _cleanup_(cleanup_fclosep)

#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _taken = (p);                                                                \
        (p) = NULL;                                                                                \
        _taken;                                                                                    \
    })

#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _taken = (fd);                                                                         \
        (fd) = -1;                                                                                 \
        _taken;                                                                                    \
    })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
