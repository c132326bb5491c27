/* libFuzzer target: every /proc and cgroupfs text parser (core/proc.h) on arbitrary bytes.
 * The first byte picks the parser so one corpus exercises them all. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/proc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    /* Parsers take NUL-terminated text, as the readers give them. */
    buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    switch (data[0] % 8) {
    case 0:
        if (proc_parse_cgroup(buf, "memory", &path) == 0)
            free(path);
        break;
    case 1:
        if (proc_parse_cgroup(buf, NULL, &path) == 0)
            free(path);
        break;
    case 2:
        (void)proc_parse_controllers(buf, &mask);
        break;
    case 3:
        (void)proc_parse_keyed_u64(buf, "usage_usec", &v);
        (void)proc_parse_keyed_u64(buf, "oom_kill", &v);
        break;
    case 4:
        (void)proc_parse_u64(buf, &v);
        break;
    case 5:
        (void)proc_parse_devnum(buf, &maj, &min);
        break;
    case 6:
        if (proc_parse_pids(buf, &pids, &n) == 0)
            free(pids);
        break;
    default:
        (void)proc_parse_freezer_state(buf, &fs);
        break;
    }
    free(buf);
    return 0;
}
