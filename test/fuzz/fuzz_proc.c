/* libFuzzer target: every /proc and cgroupfs text parser (core/proc.h) on arbitrary bytes, with
 * the arguments the readers in core/cgroup*.c pass. The first byte picks the parser so one
 * corpus exercises them all; accepted values are checked against the header's contract. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "core/proc.h"

/* proc_parse_cgroup's controllers: v2 (NULL, ""), v1 roles, a named hierarchy. */
static const char *const controllers[] = {NULL,      "",        "memory", "cpu",         "pids",
                                          "freezer", "cpuacct", "blkio",  "name=systemd"};
/* Every key core/cgroup*.c reads from a flat-keyed file (cpu.stat, memory.events,
 * memory.oom_control, cgroup.events). */
static const char *const keys[] = {"usage_usec", "oom_kill", "populated", "frozen"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf;
    char *path = NULL;
    unsigned mask, maj, min;
    uint64_t v;
    pid_t *pids = NULL;
    size_t n;
    enum proc_freezer_state fs;

    if (size < 1)
        return 0;
    /* Parsers take NUL-terminated text, as the readers give them: an exact-size heap copy so
     * that ASan sees a read past the NUL. */
    buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    switch (data[0] % 8) {
    case 0:
    case 1:
        for (size_t i = 0; i < sizeof(controllers) / sizeof(controllers[0]); i++)
            if (proc_parse_cgroup(buf, controllers[i], &path) == 0) {
                FUZZ_CHECK(path && strlen(path) < size);
                free(path);
            }
        break;
    case 2:
        if (proc_parse_controllers(buf, &mask) == 0)
            FUZZ_CHECK(!(mask & ~(PROC_CG_CPU | PROC_CG_MEMORY | PROC_CG_IO | PROC_CG_PIDS |
                                  PROC_CG_CPUSET | PROC_CG_HUGETLB)));
        break;
    case 3:
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            (void)proc_parse_keyed_u64(buf, keys[i], &v);
        break;
    case 4:
        (void)proc_parse_u64(buf, &v);
        break;
    case 5:
        (void)proc_parse_devnum(buf, &maj, &min);
        break;
    case 6:
        if (proc_parse_pids(buf, &pids, &n) == 0) {
            FUZZ_CHECK(n == 0 ? pids == NULL : pids != NULL);
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(pids[i] > 0);
            free(pids);
        }
        break;
    default:
        if (proc_parse_freezer_state(buf, &fs) == 0)
            FUZZ_CHECK(fs == PROC_THAWED || fs == PROC_FREEZING || fs == PROC_FROZEN);
        break;
    }
    free(buf);
    return 0;
}
