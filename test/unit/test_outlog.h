/* Shared by test_outlog.c (format, seeks, damage, caps, errors) and test_outlog_concurrency.c
 * (threads, wake-up callbacks, fd handover): the module under test and the helpers of both.
 *
 * The module is compiled into each test directly, with a tiny checkpoint index (a checkpoint
 * every 4 KiB or 8 records, at most 16 of them) so that seeks cross many checkpoints and the
 * index thinning runs within a few MiB of output; the symbols then come from here and the
 * libcore.a copy is not linked. Everything else is the production code. Helpers are static
 * inline so that a file using only some of them builds warning-free. */
#pragma once
#define CP_MAX          16
#define CP_INIT_BYTES   4096u
#define CP_INIT_RECORDS 8u
/* The records' arrival times, set by a test: a record's time is what decides where a read's
 * chunk ends, so tests pin it rather than race the clock. 0: the real clock. */
#include <stdatomic.h>

#include "../../core/clock.h"
static _Atomic int64_t test_now_ms;
static inline int64_t test_clock_ms(clockid_t c)
{
    int64_t t = atomic_load(&test_now_ms);
    return t && c == CLOCK_REALTIME ? t : (clock_ms)(c);
}
#define clock_ms(c) test_clock_ms(c)
#include "../../core/outlog.c"
#include "../../core/outlog-reader.c"

#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>

static char tmpdir[] = "/tmp/test_outlog.XXXXXX";
static char path[256];

static void setup(void)
{
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(path, sizeof(path), "%s/out.log", tmpdir);
}

static void teardown(void)
{
    (void)unlink(path);
    (void)rmdir(tmpdir);
}

TestSuite(outlog, .init = setup, .fini = teardown, .timeout = 60);

/* Deterministic content: the byte at offset i of stream s. */
static inline char byte_at(int s, uint64_t i)
{
    return (char)((i * 131 + (i >> 8) * 7 + (uint64_t)s * 17) & 0xff);
}

static inline void fill(char *buf, int s, uint64_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = byte_at(s, off + i);
}

static inline bool check(const char *buf, int s, uint64_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != byte_at(s, off + i))
            return false;
    return true;
}

/* xorshift: a per-thread PRNG that TSan does not see as shared state. */
static inline uint64_t rnd(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *st = x;
}

static inline void append_str(struct outlog *l, enum outlog_stream s, const char *str)
{
    cr_assert_eq(outlog_append(l, s, str, strlen(str)), 0);
}
/* Open fds of this process (the directory stream's own fd counts in every call alike). */
static inline int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    cr_assert_not_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}
