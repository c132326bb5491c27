#pragma once
/* Milliseconds on a clock: CLOCK_MONOTONIC for timeouts and elapsed times, CLOCK_REALTIME for
 * the times people read (a job's start and end). One definition for every module. */
#include <stdint.h>
#include <time.h>

static inline int64_t clock_ms(clockid_t c)
{
    struct timespec ts;

    (void)clock_gettime(c, &ts); /* cannot fail with a valid clock id */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
