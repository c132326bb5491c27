/* Unit tests for core/outlog.c and core/outlog-reader.c: the log format, reads and seeks,
 * damaged and foreign files, the output cap and write errors. Threads, wake-up callbacks and
 * fd handover are in test_outlog_concurrency.c; test_outlog.h says how the module is built in. */
#include "test_outlog.h"

static ssize_t read_str(struct outlog_reader *r, char *buf, size_t cap,
                        struct outlog_chunk_info *info)
{
    ssize_t n = outlog_reader_read(r, buf, cap - 1, info);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

Test(outlog, append_and_read)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    struct outlog_chunk_info info;
    char buf[64];

    test_now_ms = (clock_ms)(CLOCK_REALTIME); /* every record in the same ms */
    cr_assert_eq(outlog_create(path, 0, &l), 0);
    cr_assert_eq(outlog_create(path, 0, &(struct outlog *){NULL}), -EEXIST);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 0, &r), 0);
    cr_assert_eq(outlog_reader_read(r, buf, sizeof(buf), &info), -EAGAIN);

    append_str(l, OUTLOG_STDOUT, "hello ");
    append_str(l, OUTLOG_STDOUT, "world\n");
    append_str(l, OUTLOG_STDERR, "oops\n");
    append_str(l, OUTLOG_STDOUT, "bye\n");
    cr_assert_eq(outlog_get_bytes(l), 21);
    cr_expect_eq(outlog_get_selected_bytes(l, OUTLOG_SELECT_STDOUT), 16);
    cr_expect_eq(outlog_get_selected_bytes(l, OUTLOG_SELECT_STDERR), 5);
    cr_expect_eq(outlog_get_selected_bytes(l, OUTLOG_SELECT_ALL), 21);

    /* Consecutive records of one stream and one time coalesce; a stream change ends the chunk. */
    cr_assert_eq(read_str(r, buf, sizeof(buf), &info), 12);
    cr_assert_str_eq(buf, "hello world\n");
    cr_assert_eq(info.stream, OUTLOG_STDOUT);
    cr_assert_eq(info.offset, 0);
    int64_t now = (clock_ms)(CLOCK_REALTIME);
    cr_assert(info.time_ms <= now && info.time_ms > now - 60000);
    cr_assert_eq(read_str(r, buf, sizeof(buf), &info), 5);
    cr_assert_str_eq(buf, "oops\n");
    cr_assert_eq(info.stream, OUTLOG_STDERR);
    cr_assert_eq(info.offset, 12);
    cr_assert_eq(read_str(r, buf, sizeof(buf), &info), 4);
    cr_assert_eq(info.offset, 17);
    cr_assert_eq(outlog_reader_read(r, buf, sizeof(buf), &info), -EAGAIN);

    cr_assert_not(outlog_is_closed(l));
    outlog_close(l);
    outlog_close(l); /* idempotent */
    cr_assert(outlog_is_closed(l));
    cr_assert_eq(outlog_reader_read(r, buf, sizeof(buf), &info), 0);
    cr_assert_eq(outlog_append(l, OUTLOG_STDOUT, "x", 1), -EPIPE);
    cr_assert_not(outlog_is_truncated(l));
}

Test(outlog, small_cap_splits_reads)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    struct outlog_chunk_info info;
    char buf[8];

    test_now_ms = (clock_ms)(CLOCK_REALTIME);
    cr_assert_eq(outlog_create(path, 0, &l), 0);
    append_str(l, OUTLOG_STDOUT, "abcde");
    append_str(l, OUTLOG_STDOUT, "fgh");
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_STDOUT, 0, &r), 0);
    cr_assert_eq(read_str(r, buf, 4, &info), 3);
    cr_assert_str_eq(buf, "abc");
    cr_assert_eq(read_str(r, buf, 4, &info), 3);
    cr_assert_str_eq(buf, "def");
    cr_assert_eq(info.offset, 3);
    cr_assert_eq(read_str(r, buf, 4, &info), 2);
    cr_assert_str_eq(buf, "gh");
    cr_assert_eq(info.offset, 6);
    cr_assert_eq(outlog_reader_read(r, buf, 0, &info), -EINVAL);
}

Test(outlog, stream_selection_and_offsets)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    struct outlog_reader *out = NULL, *err = NULL, *all = NULL, *mid = NULL;
    struct outlog_chunk_info info;
    char buf[64];

    test_now_ms = (clock_ms)(CLOCK_REALTIME); /* records of one stream read as one chunk */
    cr_assert_eq(outlog_create(path, 0, &l), 0);
    append_str(l, OUTLOG_STDOUT, "o1");
    append_str(l, OUTLOG_STDERR, "E1");
    append_str(l, OUTLOG_STDOUT, "o2");
    append_str(l, OUTLOG_STDERR, "E2");
    cr_assert_eq(outlog_reader_new(l, 0, 0, &out), -EINVAL);
    cr_assert_eq(outlog_reader_new(l, 1u << 7, 0, &out), -EINVAL);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_STDOUT, 0, &out), 0);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_STDERR, 1, &err), 0);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 0, &all), 0);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 5, &mid), 0);

    cr_assert_eq(read_str(out, buf, sizeof(buf), &info), 4);
    cr_assert_str_eq(buf, "o1o2");
    cr_assert_eq(info.offset, 0);
    cr_assert_eq(read_str(err, buf, sizeof(buf), &info), 3);
    cr_assert_str_eq(buf, "1E2");
    cr_assert_eq(info.offset, 1);
    cr_assert_eq(info.stream, OUTLOG_STDERR);

    const char *want[] = {"o1", "E1", "o2", "E2"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(read_str(all, buf, sizeof(buf), &info), 2);
        cr_assert_str_eq(buf, want[i]);
        cr_assert_eq(info.offset, (uint64_t)i * 2);
    }
    cr_assert_eq(read_str(mid, buf, sizeof(buf), &info), 1);
    cr_assert_str_eq(buf, "2");
    cr_assert_eq(info.offset, 5);
    cr_assert_eq(info.stream, OUTLOG_STDOUT);

    /* A stderr append does not give the stdout reader anything. */
    append_str(l, OUTLOG_STDERR, "E3");
    cr_assert_eq(outlog_reader_read(out, buf, sizeof(buf), &info), -EAGAIN);
    append_str(l, OUTLOG_STDOUT, "o3");
    cr_assert_eq(read_str(out, buf, sizeof(buf), &info), 2);
    cr_assert_str_eq(buf, "o3");
    cr_assert_eq(info.offset, 4);

    outlog_reader_free(out);
    outlog_reader_free(err);
    outlog_reader_free(all);
    outlog_reader_free(mid);
}

/* ---- arrival times ---------------------------------------------------------------------- */

struct chunk {
    enum outlog_stream stream;
    uint64_t offset;
    int64_t time_ms;
    char data[16];
};

/* Reads chunks until the reader has nothing more; returns how many. */
static size_t read_chunks(struct outlog_reader *r, struct chunk *ret, size_t max)
{
    struct outlog_chunk_info info;
    size_t n = 0;
    ssize_t k;

    while (n < max && (k = read_str(r, ret[n].data, sizeof(ret[n].data), &info)) > 0) {
        ret[n].stream = info.stream;
        ret[n].offset = info.offset;
        ret[n].time_ms = info.time_ms;
        n++;
    }
    return n;
}

/* Lines written a second apart: read live (one record at a time), read after the end, and
 * read after a restart, each line comes with its own time. */
Test(outlog, every_record_keeps_its_time)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    _cleanup_(outlog_reader_freep) struct outlog_reader *live = NULL, *after = NULL,
                                                        *reopened = NULL;
    const char *lines[] = {"one\n", "two\n", "three\n"};
    const int64_t t0 = 1700000000000;
    struct chunk want[3], got[8];

    cr_assert_eq(outlog_create(path, 0, &l), 0);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 0, &live), 0);
    for (int i = 0; i < 3; i++) {
        test_now_ms = t0 + i * 1000;
        append_str(l, OUTLOG_STDOUT, lines[i]);
        cr_assert_eq(read_chunks(live, &want[i], 1), 1);
        cr_assert_eq(want[i].time_ms, t0 + i * 1000);
        cr_assert_str_eq(want[i].data, lines[i]);
    }
    outlog_close(l);

    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 0, &after), 0);
    cr_assert_eq(read_chunks(after, got, 8), 3, "a chunk per time");
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(got[i].time_ms, want[i].time_ms, "line %d", i);
        cr_expect_eq(got[i].offset, want[i].offset, "line %d", i);
        cr_expect_str_eq(got[i].data, want[i].data, "line %d", i);
    }

    outlog_reader_free(TAKE_PTR(live));
    outlog_reader_free(TAKE_PTR(after));
    outlog_free(TAKE_PTR(l));
    cr_assert_eq(outlog_open(path, &l), 0);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_STDOUT, 0, &reopened), 0);
    cr_assert_eq(read_chunks(reopened, got, 8), 3, "a chunk per time after a restart");
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(got[i].time_ms, want[i].time_ms, "line %d", i);
        cr_expect_str_eq(got[i].data, want[i].data, "line %d", i);
    }
}

/* A reader that starts inside a record gets that record's time, and the next record's own. */
Test(outlog, seek_keeps_the_record_time)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    struct chunk got[4];

    cr_assert_eq(outlog_create(path, 0, &l), 0);
    test_now_ms = 5000;
    append_str(l, OUTLOG_STDOUT, "aaaa");
    test_now_ms = 6000;
    append_str(l, OUTLOG_STDOUT, "bbbb");
    test_now_ms = 7000;
    append_str(l, OUTLOG_STDOUT, "cccc");
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_STDOUT, 6, &r), 0);
    cr_assert_eq(read_chunks(r, got, 4), 2);
    cr_expect_str_eq(got[0].data, "bb");
    cr_expect_eq(got[0].offset, 6);
    cr_expect_eq(got[0].time_ms, 6000);
    cr_expect_str_eq(got[1].data, "cccc");
    cr_expect_eq(got[1].offset, 8);
    cr_expect_eq(got[1].time_ms, 7000);
}

/* A fast writer's records share their millisecond: they still read as chunks as large as the
 * reader asks for, and a new millisecond starts a new chunk. */
Test(outlog, records_of_one_time_merge, .timeout = 60)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    _cleanup_free_ char *buf = malloc(1 << 20);
    struct outlog_chunk_info info;
    uint64_t off = 0;
    ssize_t n;

    cr_assert_eq(outlog_create(path, 0, &l), 0);
    /* 64 records of 64 KiB: 16 in ms 1000 (1 MiB), then 48 in ms 1001 (3 MiB). */
    for (int i = 0; i < 64; i++) {
        test_now_ms = i < 16 ? 1000 : 1001;
        fill(buf, OUTLOG_STDOUT, off, 65536);
        cr_assert_eq(outlog_append(l, OUTLOG_STDOUT, buf, 65536), 0);
        off += 65536;
    }
    outlog_close(l);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 0, &r), 0);
    off = 0;
    for (int i = 0; i < 4; i++) {
        n = outlog_reader_read(r, buf, 1 << 20, &info);
        cr_assert_eq(n, 1 << 20, "chunk %d: %zd bytes", i, n);
        cr_assert_eq(info.offset, off);
        cr_assert_eq(info.time_ms, i == 0 ? 1000 : 1001, "chunk %d", i);
        cr_assert(check(buf, OUTLOG_STDOUT, off, (size_t)n));
        off += (uint64_t)n;
    }
    cr_assert_eq(outlog_reader_read(r, buf, 1 << 20, &info), 0);

    /* Less than a record's worth of cap still splits at the time change. */
    outlog_reader_free(TAKE_PTR(r));
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 15 * 65536 + 100, &r), 0);
    n = outlog_reader_read(r, buf, 1 << 20, &info);
    cr_assert_eq(n, 65536 - 100);
    cr_assert_eq(info.time_ms, 1000);
    n = outlog_reader_read(r, buf, 1 << 20, &info);
    cr_assert_eq(n, 1 << 20);
    cr_assert_eq(info.time_ms, 1001);
}

/* Writes a few MiB in random-size records of both streams, then opens readers at random
 * offsets (mid-record, on boundaries, at and past the end) of every selection. */
static void write_random(struct outlog *l, uint64_t total, uint64_t seed, uint64_t bytes[3])
{
    _cleanup_free_ char *buf = malloc(70000);
    uint64_t st = seed;

    while (bytes[1] + bytes[2] < total) {
        int s = rnd(&st) % 3 == 0 ? OUTLOG_STDERR : OUTLOG_STDOUT;
        size_t n = rnd(&st) % 4 == 0 ? 1 + rnd(&st) % 65536 : 1 + rnd(&st) % 300;
        fill(buf, s, bytes[s], n);
        cr_assert_eq(outlog_append(l, s, buf, n), 0);
        bytes[s] += n;
    }
}

static void check_from(struct outlog *l, unsigned mask, uint64_t offset, const uint64_t bytes[3])
{
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    _cleanup_free_ char *buf = malloc(100000);
    struct outlog_chunk_info info;
    uint64_t pos[3] = {0}, expect = offset, end = 0;
    ssize_t n;

    for (int s = 1; s <= 2; s++)
        if (mask & (1u << s))
            end += bytes[s];
    cr_assert_eq(outlog_reader_new(l, mask, offset, &r), 0);
    n = outlog_reader_read(r, buf, 100000, &info);
    if (offset >= end) {
        cr_assert_eq(n, outlog_is_closed(l) ? 0 : -EAGAIN);
        return;
    }
    cr_assert_gt(n, 0);
    cr_assert_eq(info.offset, offset);
    if (mask != OUTLOG_SELECT_ALL) {
        /* One stream: the offset is the stream offset; check the first and a few chunks. */
        int s = mask == OUTLOG_SELECT_STDOUT ? OUTLOG_STDOUT : OUTLOG_STDERR;
        for (int i = 0; i < 3 && n > 0; i++) {
            cr_assert_eq(info.stream, s);
            cr_assert_eq(info.offset, expect);
            cr_assert(check(buf, s, expect, (size_t)n), "mask %u offset %" PRIu64, mask, offset);
            expect += (uint64_t)n;
            n = outlog_reader_read(r, buf, 100000, &info);
        }
        return;
    }
    /* Both streams: the stream offsets of the first byte are not known up front; the bytes
     * read must be a contiguous run of that stream, and the next chunks continue them. */
    (void)pos;
    for (int i = 0; i < 3 && n > 0; i++) {
        cr_assert_eq(info.offset, expect);
        expect += (uint64_t)n;
        n = outlog_reader_read(r, buf, 100000, &info);
    }
}

Test(outlog, seek_to_offsets, .timeout = 60)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    uint64_t bytes[3] = {0}, st = 42;

    cr_assert_eq(outlog_create(path, 0, &l), 0);
    write_random(l, 3u << 20, 7, bytes);
    cr_assert_eq(outlog_get_bytes(l), bytes[1] + bytes[2]);
    /* The index was thinned at least once and stayed bounded. */
    cr_assert_leq(l->n_cps, CP_MAX);
    cr_assert_gt(l->cp_every_bytes, CP_INIT_BYTES);

    for (int i = 0; i < 300; i++) {
        check_from(l, OUTLOG_SELECT_STDOUT, rnd(&st) % (bytes[1] + 10), bytes);
        check_from(l, OUTLOG_SELECT_STDERR, rnd(&st) % (bytes[2] + 10), bytes);
        check_from(l, OUTLOG_SELECT_ALL, rnd(&st) % (bytes[1] + bytes[2] + 10), bytes);
    }
    check_from(l, OUTLOG_SELECT_STDOUT, bytes[1] - 1, bytes);
    check_from(l, OUTLOG_SELECT_STDOUT, bytes[1], bytes);
    check_from(l, OUTLOG_SELECT_ALL, 0, bytes);
    outlog_close(l);
    check_from(l, OUTLOG_SELECT_STDERR, bytes[2], bytes);
    check_from(l, OUTLOG_SELECT_ALL, 1ull << 40, bytes);
}

/* A whole read of the log through one selection must equal what was written. */
static void read_all_and_check(struct outlog *l, unsigned mask, const uint64_t bytes[3])
{
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    _cleanup_free_ char *buf = malloc(65536);
    struct outlog_chunk_info info;
    uint64_t pos[3] = {0}, off = 0;
    ssize_t n;

    cr_assert_eq(outlog_reader_new(l, mask, 0, &r), 0);
    while ((n = outlog_reader_read(r, buf, 1 + off % 65535, &info)) > 0) {
        cr_assert_eq(info.offset, off);
        cr_assert(mask & (1u << info.stream));
        cr_assert(check(buf, info.stream, pos[info.stream], (size_t)n));
        pos[info.stream] += (uint64_t)n;
        off += (uint64_t)n;
    }
    cr_assert_eq(n, 0);
    for (int s = 1; s <= 2; s++)
        cr_assert_eq(pos[s], (mask & (1u << s)) ? bytes[s] : 0);
}

Test(outlog, big_append_is_split_and_read_back)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    size_t n = (5u << 20) / 2 + 3;
    _cleanup_free_ char *buf = malloc(n);
    uint64_t bytes[3] = {0, n, 0};

    fill(buf, OUTLOG_STDOUT, 0, n);
    cr_assert_eq(outlog_create(path, 0, &l), 0);
    cr_assert_eq(outlog_append(l, OUTLOG_STDOUT, buf, n), 0);
    outlog_close(l);
    read_all_and_check(l, OUTLOG_SELECT_ALL, bytes);
}

Test(outlog, reopen_after_close)
{
    uint64_t bytes[3] = {0};
    struct outlog *l = NULL;

    cr_assert_eq(outlog_create(path, 0, &l), 0);
    write_random(l, 1u << 20, 3, bytes);
    outlog_close(l);
    outlog_free(l);

    cr_assert_eq(outlog_open(path, &l), 0);
    cr_assert(outlog_is_closed(l));
    cr_assert_not(outlog_is_truncated(l));
    cr_assert_eq(outlog_get_bytes(l), bytes[1] + bytes[2]);
    cr_assert_eq(outlog_append(l, OUTLOG_STDOUT, "x", 1), -EPIPE);
    read_all_and_check(l, OUTLOG_SELECT_ALL, bytes);
    read_all_and_check(l, OUTLOG_SELECT_STDOUT, bytes);
    read_all_and_check(l, OUTLOG_SELECT_STDERR, bytes);
    check_from(l, OUTLOG_SELECT_STDERR, bytes[2] / 2, bytes);
    outlog_free(l);

    cr_assert_eq(outlog_open("/nonexistent/out.log", &l), -ENOENT);
}

/* outlog_open is lazy: a foreign file is noticed on first use, and every use says so. */
Test(outlog, open_rejects_foreign_file)
{
    struct outlog *l = NULL;
    struct outlog_reader *r = NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600), fds;
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "#!/bin/sh\necho not a log\n", 25), 25);
    close(fd);
    fds = count_fds();
    cr_assert_eq(outlog_open(path, &l), 0);
    cr_assert_eq(count_fds(), fds, "outlog_open holds no fd");
    cr_assert_eq(outlog_load(l), -EBADMSG);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 0, &r), -EBADMSG);
    cr_assert_null(r);
    cr_assert_eq(outlog_get_bytes(l), 0);
    cr_assert_not(outlog_is_truncated(l));
    cr_assert_eq(outlog_load(l), -EBADMSG); /* retried, same answer */
    cr_assert_eq(count_fds(), fds, "a failed load lets its fd go");
    outlog_free(l);
    cr_assert_eq(outlog_open(tmpdir, &l), -EISDIR);
}

static void torn_case(uint64_t cut_back, const char *garbage, size_t garbage_len)
{
    struct outlog *l = NULL;
    struct outlog_reader *r = NULL;
    struct outlog_chunk_info info;
    char buf[64];
    struct stat st;

    cr_assert_eq(outlog_create(path, 0, &l), 0);
    append_str(l, OUTLOG_STDOUT, "first ");
    append_str(l, OUTLOG_STDERR, "second ");
    append_str(l, OUTLOG_STDOUT, "third record");
    outlog_free(l); /* a crash: never closed */

    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size - (off_t)cut_back), 0);
    if (garbage_len) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        cr_assert_eq(write(fd, garbage, garbage_len), (ssize_t)garbage_len);
        close(fd);
    }

    cr_assert_eq(outlog_open(path, &l), 0);
    cr_assert(outlog_is_closed(l));
    cr_assert_eq(outlog_get_bytes(l), 13, "cut %" PRIu64 ": %" PRIu64, cut_back,
                 outlog_get_bytes(l));
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 0, &r), 0);
    cr_assert_eq(read_str(r, buf, sizeof(buf), &info), 6);
    cr_assert_str_eq(buf, "first ");
    cr_assert_eq(read_str(r, buf, sizeof(buf), &info), 7);
    cr_assert_str_eq(buf, "second ");
    cr_assert_eq(outlog_reader_read(r, buf, sizeof(buf), &info), 0);
    outlog_reader_free(r);
    outlog_free(l);
    teardown();
    strcpy(tmpdir, "/tmp/test_outlog.XXXXXX");
    setup();
}

Test(outlog, torn_last_record_is_ignored)
{
    static const char zeros[100];
    torn_case(1, NULL, 0);                    /* payload cut short */
    torn_case(12 + 5, NULL, 0);               /* header cut short */
    torn_case(12 + 16, NULL, 0);              /* the whole record gone: nothing torn */
    torn_case(12 + 16, zeros, sizeof(zeros)); /* delayed-allocation zeros after a crash */
    torn_case(12 + 16, "\x52\x4a\x01\x00\xff\xff\xff\x7f", 8); /* absurd length */
}

Test(outlog, empty_and_headerless_files)
{
    struct outlog *l = NULL;
    struct outlog_reader *r = NULL;
    char buf[8];

    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "RJOUT", 5), 5); /* crash during create */
    close(fd);
    cr_assert_eq(outlog_open(path, &l), 0);
    cr_assert_eq(outlog_get_bytes(l), 0);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 0, &r), 0);
    cr_assert_eq(outlog_reader_read(r, buf, sizeof(buf), NULL), 0);
    outlog_reader_free(r);
    outlog_free(l);
}

Test(outlog, cap_truncates)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    struct outlog_chunk_info info;
    char buf[64];

    cr_assert_eq(outlog_create(path, 10, &l), 0);
    append_str(l, OUTLOG_STDOUT, "123456");
    cr_assert_not(outlog_is_truncated(l));
    append_str(l, OUTLOG_STDERR, "abcdef");
    cr_assert(outlog_is_truncated(l));
    cr_assert_eq(outlog_get_bytes(l), 10);
    append_str(l, OUTLOG_STDOUT, "dropped");
    cr_assert_eq(outlog_get_bytes(l), 10);
    outlog_close(l);

    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 0, &r), 0);
    cr_assert_eq(read_str(r, buf, sizeof(buf), &info), 6);
    cr_assert_eq(read_str(r, buf, sizeof(buf), &info), 4);
    cr_assert_str_eq(buf, "abcd");
    cr_assert_eq(outlog_reader_read(r, buf, sizeof(buf), &info), 0);
    outlog_reader_free(TAKE_PTR(r));
    outlog_free(TAKE_PTR(l));

    /* The truncation survives a restart. */
    cr_assert_eq(outlog_open(path, &l), 0);
    cr_assert(outlog_is_truncated(l));
    cr_assert_eq(outlog_get_bytes(l), 10);
}

/* RLIMIT_FSIZE makes the write fail with EFBIG, the way a full disk fails it with ENOSPC:
 * both take the same path (short or failed write -> truncated, later output dropped). */
Test(outlog, write_error_marks_truncated)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    struct rlimit rl;
    char big[3000], buf[8192];
    struct outlog_chunk_info info;
    int k;

    /* The soft limit only: raising the hard one (a CI's `ulimit -Hf`) needs CAP_SYS_RESOURCE. */
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 4096)
        cr_skip_test("RLIMIT_FSIZE's hard limit is %llu bytes here, below the 4096 this test sets",
                     (unsigned long long)rl.rlim_max);
    rl.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    fill(big, OUTLOG_STDOUT, 0, sizeof(big));
    cr_assert_eq(outlog_create(path, 0, &l), 0);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    cr_assert_eq(outlog_append(l, OUTLOG_STDOUT, big, sizeof(big)), 0);
    fill(big, OUTLOG_STDOUT, sizeof(big), sizeof(big));
    k = outlog_append(l, OUTLOG_STDOUT, big, sizeof(big)); /* crosses 4096: short write */
    cr_assert(k == -EFBIG || k == -ENOSPC, "append returned %d", k);
    cr_assert(outlog_is_truncated(l));
    cr_assert_eq(outlog_append(l, OUTLOG_STDOUT, "x", 1), 0); /* dropped, job keeps running */
    cr_assert_eq(outlog_get_bytes(l), sizeof(big));
    outlog_close(l);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_ALL, 0, &r), 0);
    cr_assert_eq(outlog_reader_read(r, buf, sizeof(buf), &info), (ssize_t)sizeof(big));
    cr_assert(check(buf, OUTLOG_STDOUT, 0, sizeof(big)));
    cr_assert_eq(outlog_reader_read(r, buf, sizeof(buf), &info), 0);
    outlog_reader_free(TAKE_PTR(r));
    outlog_free(TAKE_PTR(l));

    cr_assert_eq(outlog_open(path, &l), 0);
    cr_assert_eq(outlog_get_bytes(l), sizeof(big));
}

/* ---- keeping both ends ------------------------------------------------------------------ */

#define KEEP_CAP   (256u * 1024)
#define KEEP_TOTAL (4u << 20)

/* Reads the whole stdout of a closed log: the offsets run from 0 without a break up to the
 * gap, jump once, and run on to the end; every byte is the one written at its offset. */
static void check_keep_ends(struct outlog *l, uint64_t total)
{
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    _cleanup_free_ char *buf = malloc(65536);
    struct outlog_chunk_info info;
    uint64_t off = 0, got = 0;
    unsigned jumps = 0;
    ssize_t n;

    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_STDOUT, 0, &r), 0);
    while ((n = outlog_reader_read(r, buf, 65536, &info)) > 0) {
        if (info.offset != off) {
            cr_assert_gt(info.offset, off, "offsets only jump forwards");
            cr_assert_geq(off, KEEP_CAP / 2, "the first half of the cap is kept: %" PRIu64, off);
            jumps++;
        }
        cr_assert(check(buf, OUTLOG_STDOUT, info.offset, (size_t)n), "bytes at %" PRIu64,
                  info.offset);
        off = info.offset + (uint64_t)n;
        got += (uint64_t)n;
    }
    cr_assert_eq(n, 0);
    cr_expect_eq(jumps, 1, "one gap");
    cr_expect_eq(off, total, "the last byte is kept");
    cr_expect_leq(got, KEEP_CAP + 16384, "about the cap is kept: %" PRIu64, got);
    cr_expect_geq(got, KEEP_CAP / 2 + KEEP_CAP / 4, "and not much less: %" PRIu64, got);
    cr_expect_eq(outlog_get_dropped_bytes(l), total - got);
    cr_expect_not(outlog_is_truncated(l), "nothing is lost at the end");
}

Test(outlog, keep_ends_keeps_head_and_tail, .timeout = 60)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    _cleanup_free_ char *buf = malloc(16384);
    uint64_t st = 7, total = 0;
    struct stat sb;

    cr_assert_eq(outlog_create(path, KEEP_CAP, &l), 0);
    outlog_keep_ends(l);
    while (total < KEEP_TOTAL) {
        size_t n = 1 + rnd(&st) % 16384;
        fill(buf, OUTLOG_STDOUT, total, n);
        cr_assert_eq(outlog_append(l, OUTLOG_STDOUT, buf, n), 0);
        total += n;
    }
    cr_expect_eq(outlog_get_bytes(l), total, "offsets count every byte");
    if (!l->punch_failed) {
        cr_assert_eq(stat(path, &sb), 0);
        cr_expect_leq((uint64_t)sb.st_blocks * 512, 2 * KEEP_CAP,
                      "the gap takes no room on disk: %" PRIu64 " bytes",
                      (uint64_t)sb.st_blocks * 512);
    }
    outlog_close(l);
    check_keep_ends(l, total);
    outlog_free(TAKE_PTR(l));

    /* The same after a restart: the gap's markers say where the tail resumes. */
    cr_assert_eq(outlog_open(path, &l), 0);
    cr_expect_eq(outlog_get_bytes(l), total);
    check_keep_ends(l, total);
}

Test(outlog, keep_ends_under_the_cap_drops_nothing)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;

    cr_assert_eq(outlog_create(path, KEEP_CAP, &l), 0);
    outlog_keep_ends(l);
    append_str(l, OUTLOG_STDOUT, "small");
    outlog_close(l);
    cr_expect_eq(outlog_get_dropped_bytes(l), 0);
    cr_expect_eq(outlog_get_bytes(l), 5);
}

/* Writes bigger than the cap: the head still ends at half the cap (the record crossing it is
 * split there), and what is kept stays near the cap, a tail included. */
Test(outlog, keep_ends_with_records_bigger_than_the_cap, .timeout = 60)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    _cleanup_free_ char *buf = malloc(1 << 20);
    struct outlog_chunk_info info;
    uint64_t total = 0, off = 0, head_end = 0, got = 0;
    ssize_t n;

    cr_assert_eq(outlog_create(path, KEEP_CAP, &l), 0);
    outlog_keep_ends(l);
    for (int i = 0; i < 4; i++) {
        fill(buf, OUTLOG_STDOUT, total, 1 << 20);
        cr_assert_eq(outlog_append(l, OUTLOG_STDOUT, buf, 1 << 20), 0);
        total += 1 << 20;
    }
    outlog_close(l);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_STDOUT, 0, &r), 0);
    while ((n = outlog_reader_read(r, buf, 1 << 20, &info)) > 0) {
        if (info.offset != off && !head_end)
            head_end = off;
        cr_assert(check(buf, OUTLOG_STDOUT, info.offset, (size_t)n));
        off = info.offset + (uint64_t)n;
        got += (uint64_t)n;
    }
    cr_expect_eq(head_end, KEEP_CAP / 2, "the head is half the cap");
    cr_expect_eq(off, total);
    /* Whole records are dropped; records of at most a sixteenth of the cap keep the tail. */
    cr_expect_leq(got, KEEP_CAP + KEEP_CAP / 16, "about the cap: %" PRIu64, got);
    cr_expect_geq(got, KEEP_CAP / 2 + KEEP_CAP / 4, "a tail besides the head: %" PRIu64, got);
}
