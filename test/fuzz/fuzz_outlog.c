/* libFuzzer target: the outlog record reader on arbitrary files (a log left on disk by a crash,
 * a disk error or a hostile hand). outlog_open must accept or refuse it, and every reader
 * selection must read to the end without crashing, looping or reading past what it validated. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"

#include "core/outlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    static const unsigned selects[] = {OUTLOG_SELECT_ALL, OUTLOG_SELECT_STDOUT,
                                       OUTLOG_SELECT_STDERR};
    struct outlog *l = NULL;
    char buf[4096];
    int fd;

    if (!path[0])
        (void)snprintf(path, sizeof(path), "/tmp/fuzz-outlog.%d", (int)getpid());
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    if (write(fd, data, size) != (ssize_t)size)
        abort();
    close(fd);

    if (outlog_open(path, &l) == 0) {
        for (size_t i = 0; i < sizeof(selects) / sizeof(selects[0]); i++) {
            struct outlog_reader *r = NULL;
            struct outlog_chunk_info info;
            uint64_t total = 0;
            ssize_t n;
            uint64_t start = size ? data[0] % 64 : 0;
            if (outlog_reader_new(l, selects[i], start, &r) < 0)
                continue;
            /* A closed log ends: _next must reach 0 (EOF) and never block. */
            while ((n = outlog_reader_next(r, buf, sizeof(buf), &info)) > 0) {
                total += (uint64_t)n;
                if (total > size)
                    abort(); /* more payload than the file holds */
            }
            outlog_reader_free(r);
        }
        outlog_free(l);
    }
    unlink(path);
    return 0;
}
