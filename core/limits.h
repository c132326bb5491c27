#pragma once
/* A job's resource limits: what a Start asks for, what the server allows (defaults, maxima),
 * what a job record keeps and what the cgroup layer writes. One type for all of them. */
#include <stdint.h>

/* 0 in any field = no limit. */
struct limits {
    uint64_t cpu_millis;                           /* 1000 = one CPU; period 100 ms, min 10 */
    uint64_t memory_bytes;                         /* swap off */
    uint64_t io_riops, io_wiops, io_rbps, io_wbps; /* per device, on the server's io devices */
    uint64_t pids;                                 /* pids.max */
};
