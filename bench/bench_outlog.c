/* bench_outlog: the cost of outlog's framing and bookkeeping against plain file I/O.
 *
 * Appends 1 GiB (BENCH_OUTLOG_MIB overrides) in 64 KiB chunks, then reads it all back with 1
 * and with 8 concurrent readers (64 KiB per read). The baseline does the same with write() and
 * pread() on a plain file, in the same run and directory, so the ratios compare like with
 * like (the page cache is warm for both: this measures our overhead, not the disk).
 * Reads are best of three. Prints MB/s and outlog/baseline ratios; asserts nothing.
 * Usage: bench_outlog [dir]   (default: $TMPDIR or /tmp) */
#include "core/outlog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/cleanup.h"

#define CHUNK (64 * 1024)

struct bench {
    char plain_path[512];
    char log_path[512];
    uint64_t total;
    struct outlog *log;
    int plain_fd;
    size_t read_size;          /* bytes asked for per read */
    _Atomic uint64_t n_chunks; /* reads that returned data, all readers */
};

static double now_s(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mbps(uint64_t bytes, double secs)
{
    return (double)bytes / 1e6 / secs;
}

static int plain_write(struct bench *b, const char *buf)
{
    int fd = open(b->plain_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    for (uint64_t done = 0; done < b->total; done += CHUNK)
        if (write(fd, buf, CHUNK) != CHUNK) {
            int r = -errno;
            close(fd);
            return r < 0 ? r : -EIO;
        }
    close(fd);
    return 0;
}

static int log_write(struct bench *b, const char *buf)
{
    int r = outlog_create(b->log_path, 0, &b->log);
    if (r < 0)
        return r;
    for (uint64_t done = 0; done < b->total; done += CHUNK) {
        r = outlog_append(b->log, (done / CHUNK) % 16 == 15 ? OUTLOG_STDERR : OUTLOG_STDOUT, buf,
                          CHUNK);
        if (r < 0)
            return r;
    }
    outlog_close(b->log);
    return 0;
}

static void *plain_reader(void *p)
{
    struct bench *b = p;
    _cleanup_free_ char *buf = malloc(CHUNK);
    uint64_t off = 0;
    ssize_t n;

    while (buf && (n = pread(b->plain_fd, buf, CHUNK, (off_t)off)) > 0)
        off += (uint64_t)n;
    return (void *)(uintptr_t)(off == b->total);
}

static void *log_reader(void *p)
{
    struct bench *b = p;
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    _cleanup_free_ char *buf = malloc(b->read_size);
    struct outlog_chunk_info info;
    uint64_t off = 0, n_chunks = 0;
    ssize_t n;

    if (!buf || outlog_reader_new(b->log, OUTLOG_SELECT_ALL, 0, &r) < 0)
        return NULL;
    while ((n = outlog_reader_read(r, buf, b->read_size, &info)) > 0) {
        off += (uint64_t)n;
        n_chunks++;
    }
    b->n_chunks += n_chunks;
    return (void *)(uintptr_t)(off == b->total);
}

/* Runs n readers at once; returns aggregate MB/s, or -1 if one came up short. */
static double run_readers_once(struct bench *b, int n, void *(*fn)(void *))
{
    pthread_t t[8];
    bool ok = true;
    double t0 = now_s();

    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, fn, b) != 0)
            return -1;
    for (int i = 0; i < n; i++) {
        void *res;
        pthread_join(t[i], &res);
        ok = ok && res;
    }
    return ok ? mbps(b->total * (uint64_t)n, now_s() - t0) : -1;
}

/* Best of three: one stray writeback burst should not decide the ratio. */
static double run_readers(struct bench *b, int n, void *(*fn)(void *))
{
    double best = 0;
    for (int i = 0; i < 3; i++) {
        double v = run_readers_once(b, n, fn);
        if (v < 0)
            return v;
        best = v > best ? v : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    const char *mib = getenv("BENCH_OUTLOG_MIB");
    struct bench b = {
        .total = (mib ? strtoull(mib, NULL, 10) : 1024) << 20, .plain_fd = -1, .read_size = CHUNK};
    _cleanup_free_ char *buf = malloc(CHUNK);
    double t0, w_plain, w_log, r_plain[2], r_log[2], r_big;
    uint64_t big_chunks;
    int r;

    if (!buf)
        return 1;
    for (size_t i = 0; i < CHUNK; i++)
        buf[i] = (char)('a' + i % 26);
    snprintf(b.plain_path, sizeof(b.plain_path), "%s/bench_outlog.%d.plain", dir, getpid());
    snprintf(b.log_path, sizeof(b.log_path), "%s/bench_outlog.%d.log", dir, getpid());

    t0 = now_s();
    r = plain_write(&b, buf);
    w_plain = mbps(b.total, now_s() - t0);
    t0 = now_s();
    if (r == 0)
        r = log_write(&b, buf);
    w_log = mbps(b.total, now_s() - t0);
    if (r < 0) {
        fprintf(stderr, "bench_outlog: write: %s\n", strerror(-r));
        goto out;
    }
    b.plain_fd = open(b.plain_path, O_RDONLY | O_CLOEXEC);
    if (b.plain_fd < 0) {
        fprintf(stderr, "bench_outlog: open: %m\n");
        r = -1;
        goto out;
    }
    r_plain[0] = run_readers(&b, 1, plain_reader);
    r_log[0] = run_readers(&b, 1, log_reader);
    r_plain[1] = run_readers(&b, 8, plain_reader);
    r_log[1] = run_readers(&b, 8, log_reader);
    /* A Stream message's size: reads of up to 1 MiB, as a lone reader's budget allows. A read
     * ends where the stream or the records' time (ms) changes, so this is what the append rate
     * leaves of 1 MiB. */
    b.read_size = 1 << 20;
    b.n_chunks = 0;
    r_big = run_readers_once(&b, 1, log_reader);
    big_chunks = b.n_chunks;

    printf("bench_outlog: %llu MiB in %d KiB chunks, dir %s\n", (unsigned long long)(b.total >> 20),
           CHUNK / 1024, dir);
    printf("%-22s %12s %12s %8s\n", "", "plain MB/s", "outlog MB/s", "ratio");
    printf("%-22s %12.0f %12.0f %8.2f\n", "append", w_plain, w_log, w_log / w_plain);
    printf("%-22s %12.0f %12.0f %8.2f\n", "read, 1 reader", r_plain[0], r_log[0],
           r_log[0] / r_plain[0]);
    printf("%-22s %12.0f %12.0f %8.2f\n", "read, 8 readers (sum)", r_plain[1], r_log[1],
           r_log[1] / r_plain[1]);
    printf("read, 1 reader, 1 MiB reads: %.0f MB/s, %llu chunks, %.0f KiB each on average\n", r_big,
           (unsigned long long)big_chunks,
           big_chunks ? (double)b.total / 1024 / (double)big_chunks : 0);
    r = 0;
out:
    if (b.plain_fd >= 0)
        close(b.plain_fd);
    outlog_free(b.log);
    (void)unlink(b.plain_path);
    (void)unlink(b.log_path);
    return r < 0 ? 1 : 0;
}
