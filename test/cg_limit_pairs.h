#pragma once
/* The (from, to) limit pairs every cg_change_limits test goes through (unit tests on the fake
 * cgroupfs, the host's v1 hierarchies, the VM's v2 and v1 boots): set from 0, raise, lower, lift
 * (to 0), unchanged, and mixes of those, for every field. */
#include "core/cgroup.h"

/* Every field of LIMITS_HI is above LIMITS_LO's. */
#define LIMITS_LO                                                                                  \
    {                                                                                              \
        .cpu_millis = 300, .memory_bytes = 48 << 20, .io_riops = 100, .io_wiops = 200,             \
        .io_rbps = 1 << 20, .io_wbps = 2 << 20, .pids = 40                                         \
    }
#define LIMITS_HI                                                                                  \
    {                                                                                              \
        .cpu_millis = 1700, .memory_bytes = 160 << 20, .io_riops = 900, .io_wiops = 800,           \
        .io_rbps = 9 << 20, .io_wbps = 8 << 20, .pids = 400                                        \
    }
#define LIMITS_MIXED                                                                               \
    {                                                                                              \
        .memory_bytes = 32 << 20, .io_riops = 100, .io_wbps = 9 << 20, .pids = 1000                \
    }

static const struct cg_limit_pair {
    struct limits from, to;
} cg_limit_pairs[] = {
    {{0}, LIMITS_LO},          /* set from 0 */
    {LIMITS_LO, LIMITS_HI},    /* raise */
    {LIMITS_HI, LIMITS_LO},    /* lower */
    {LIMITS_LO, {0}},          /* lift */
    {LIMITS_HI, LIMITS_HI},    /* unchanged: nothing written */
    {LIMITS_LO, LIMITS_MIXED}, /* mixed: some lifted, some raised, some lowered, some kept */
    {LIMITS_MIXED, LIMITS_HI},
    {LIMITS_HI, LIMITS_MIXED},
    {{.cpu_millis = 1000, .memory_bytes = 512 << 20}, {.memory_bytes = 1 << 20}},
    {{0}, {0}},
};
