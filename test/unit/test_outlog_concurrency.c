/* Unit tests for core/outlog.c and core/outlog-reader.c under threads: one writer and many
 * readers, wake-up callbacks re-armed from other threads, cancel racing append, and the fd
 * that ended logs give up and readers take back. See test_outlog.h. */
#include "test_outlog.h"

#include <sys/queue.h>

/* ---- concurrency ------------------------------------------------------------------------ */

#define CONC_TOTAL (2u << 20)

struct writer_args {
    struct outlog *log;
    uint64_t bytes[3];
    uint64_t seed;
    bool slow;
};

static void *writer_main(void *p)
{
    struct writer_args *w = p;
    _cleanup_free_ char *buf = malloc(20000);
    uint64_t st = w->seed;

    while (w->bytes[1] + w->bytes[2] < CONC_TOTAL) {
        int s = rnd(&st) % 4 == 0 ? OUTLOG_STDERR : OUTLOG_STDOUT;
        size_t n = 1 + rnd(&st) % 16384;
        fill(buf, s, w->bytes[s], n);
        cr_assert_eq(outlog_append(w->log, s, buf, n), 0);
        w->bytes[s] += n;
        if (w->slow && rnd(&st) % 8 == 0)
            usleep(50);
    }
    outlog_close(w->log);
    return NULL;
}

struct reader_args {
    struct outlog *log;
    unsigned mask;
    uint64_t seed;
    uint64_t got[3];
    bool ok;
};

static void *reader_main(void *p)
{
    struct reader_args *a = p;
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    _cleanup_free_ char *buf = malloc(40000);
    struct outlog_chunk_info info;
    uint64_t st = a->seed, off = 0;
    ssize_t n;

    a->ok = false;
    if (outlog_reader_new(a->log, a->mask, 0, &r) < 0)
        return NULL;
    while ((n = outlog_reader_next(r, buf, 1 + rnd(&st) % 40000, &info)) > 0) {
        if (info.offset != off || !(a->mask & (1u << info.stream)) ||
            !check(buf, info.stream, a->got[info.stream], (size_t)n))
            return NULL;
        a->got[info.stream] += (uint64_t)n;
        off += (uint64_t)n;
    }
    a->ok = n == 0;
    return NULL;
}

static const unsigned masks[] = {OUTLOG_SELECT_ALL, OUTLOG_SELECT_STDOUT, OUTLOG_SELECT_STDERR};

static void expect_all(const struct reader_args *a, const struct writer_args *w)
{
    cr_assert(a->ok);
    for (int s = 1; s <= 2; s++)
        cr_assert_eq(a->got[s], (a->mask & (1u << s)) ? w->bytes[s] : 0);
}

Test(outlog, one_writer_64_readers, .timeout = 60)
{
    enum { N = 64, LATE = 8 };
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    struct writer_args w = {.seed = 99, .slow = true};
    struct reader_args a[N + LATE];
    pthread_t wt, rt[N + LATE];

    cr_assert_eq(outlog_create(path, 0, &l), 0);
    w.log = l;
    for (int i = 0; i < N + LATE; i++)
        a[i] = (struct reader_args){.log = l, .mask = masks[i % 3], .seed = 1000 + i};
    for (int i = 0; i < N; i++)
        cr_assert_eq(pthread_create(&rt[i], NULL, reader_main, &a[i]), 0);
    cr_assert_eq(pthread_create(&wt, NULL, writer_main, &w), 0);
    /* Late joiners start from 0 while the writer is somewhere in the middle (or done). */
    while (outlog_get_bytes(l) < CONC_TOTAL / 2 && !outlog_is_closed(l))
        usleep(1000);
    for (int i = N; i < N + LATE; i++)
        cr_assert_eq(pthread_create(&rt[i], NULL, reader_main, &a[i]), 0);
    pthread_join(wt, NULL);
    for (int i = 0; i < N + LATE; i++) {
        pthread_join(rt[i], NULL);
        expect_all(&a[i], &w);
    }
}

Test(outlog, close_wakes_blocked_readers)
{
    enum { N = 8 };
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    struct reader_args a[N];
    pthread_t rt[N];

    cr_assert_eq(outlog_create(path, 0, &l), 0);
    append_str(l, OUTLOG_STDERR, "only stderr");
    for (int i = 0; i < N; i++) {
        a[i] = (struct reader_args){.log = l, .mask = OUTLOG_SELECT_STDOUT, .seed = 5 + i};
        cr_assert_eq(pthread_create(&rt[i], NULL, reader_main, &a[i]), 0);
    }
    usleep(50000); /* let them block in outlog_reader_next */
    outlog_close(l);
    for (int i = 0; i < N; i++) {
        pthread_join(rt[i], NULL);
        cr_assert(a[i].ok);
        cr_assert_eq(a[i].got[1] + a[i].got[2], 0);
    }
}

/* ---- callbacks --------------------------------------------------------------------------- */

static void count_fn(void *p)
{
    (*(int *)p)++;
}

Test(outlog, wait_fires_once_on_relevant_append)
{
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    int fired = 0;
    char buf[8];

    test_now_ms = (clock_ms)(CLOCK_REALTIME); /* "ab" and "cd" read as one chunk */
    cr_assert_eq(outlog_create(path, 0, &l), 0);
    cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_STDOUT, 0, &r), 0);
    cr_assert_eq(outlog_reader_wait(r, NULL, NULL), -EINVAL);
    cr_assert_eq(outlog_reader_wait(r, count_fn, &fired), 0);
    cr_assert_eq(outlog_reader_wait(r, count_fn, &fired), -EBUSY);
    append_str(l, OUTLOG_STDERR, "not for us");
    cr_assert_eq(fired, 0);
    append_str(l, OUTLOG_STDOUT, "ab");
    cr_assert_eq(fired, 1);
    append_str(l, OUTLOG_STDOUT, "cd");
    cr_assert_eq(fired, 1);                                         /* one-shot */
    cr_assert_eq(outlog_reader_wait(r, count_fn, &fired), -EAGAIN); /* data is there */
    cr_assert_eq(outlog_reader_read(r, buf, sizeof(buf), NULL), 4);
    cr_assert_eq(outlog_reader_wait(r, count_fn, &fired), 0);
    cr_assert(outlog_reader_cancel_wait(r));
    cr_assert_not(outlog_reader_cancel_wait(r));
    append_str(l, OUTLOG_STDOUT, "ef");
    cr_assert_eq(fired, 1);
    cr_assert_eq(outlog_reader_read(r, buf, sizeof(buf), NULL), 2);
    cr_assert_eq(outlog_reader_wait(r, count_fn, &fired), 0);
    outlog_close(l);
    cr_assert_eq(fired, 2);
    cr_assert_eq(outlog_reader_wait(r, count_fn, &fired), -EAGAIN); /* EOF is there */
    cr_assert_eq(outlog_reader_read(r, buf, sizeof(buf), NULL), 0);
}

/* The server's shape: the wake-up callback starts an asynchronous "send" (here: puts the
 * stream on a work queue served by a pool of "completion queue" threads); when the send
 * completes, a pool thread reads the next chunk or re-arms. Half of the streams also read and
 * re-arm from inside the callback itself, on the writer thread. At most one send in flight. */
struct pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    STAILQ_HEAD(, cb_stream) queue;
    int done, n_streams;
    bool stop;
};

struct cb_stream {
    struct pool *pool;
    struct outlog_reader *r;
    STAILQ_ENTRY(cb_stream) link;
    unsigned mask;
    bool inline_read;
    uint64_t st, off, got[3];
    char buf[20000];
    bool ok, finished;
};

static void pool_push(struct cb_stream *s)
{
    struct pool *p = s->pool;
    pthread_mutex_lock(&p->lock);
    STAILQ_INSERT_TAIL(&p->queue, s, link);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void stream_finish(struct cb_stream *s, bool ok)
{
    struct pool *p = s->pool;
    pthread_mutex_lock(&p->lock);
    s->ok = ok;
    s->finished = true;
    p->done++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void stream_wake(void *p);

/* One step: read one chunk and "send" it (requeue), or finish, or re-arm. */
static void stream_step(struct cb_stream *s)
{
    struct outlog_chunk_info info;

    for (;;) {
        ssize_t n = outlog_reader_read(s->r, s->buf, 1 + rnd(&s->st) % sizeof(s->buf), &info);
        if (n > 0) {
            if (info.offset != s->off || !(s->mask & (1u << info.stream)) ||
                !check(s->buf, info.stream, s->got[info.stream], (size_t)n))
                return stream_finish(s, false);
            s->off += (uint64_t)n;
            s->got[info.stream] += (uint64_t)n;
            return pool_push(s); /* the send completes later, on some pool thread */
        }
        if (n == 0)
            return stream_finish(s, true);
        if (n != -EAGAIN)
            return stream_finish(s, false);
        int k = outlog_reader_wait(s->r, stream_wake, s);
        if (k == 0)
            return; /* parked; the writer calls stream_wake */
        if (k != -EAGAIN)
            return stream_finish(s, false);
    }
}

static void stream_wake(void *p)
{
    struct cb_stream *s = p;
    if (s->inline_read)
        stream_step(s);
    else
        pool_push(s);
}

static void *pool_main(void *arg)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct cb_stream *s = STAILQ_FIRST(&p->queue);
        if (!s && p->stop)
            break;
        if (!s) {
            pthread_cond_wait(&p->cond, &p->lock);
            continue;
        }
        STAILQ_REMOVE_HEAD(&p->queue, link);
        pthread_mutex_unlock(&p->lock);
        stream_step(s);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

Test(outlog, callbacks_rearm_from_other_threads, .timeout = 60)
{
    enum { N = 32, WORKERS = 4 };
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    struct writer_args w = {.seed = 7, .slow = true};
    struct pool p = {
        .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .n_streams = N};
    struct cb_stream *s = calloc(N, sizeof(*s));
    pthread_t wt, pt[WORKERS];

    STAILQ_INIT(&p.queue);
    cr_assert_eq(outlog_create(path, 0, &l), 0);
    w.log = l;
    for (int i = 0; i < WORKERS; i++)
        cr_assert_eq(pthread_create(&pt[i], NULL, pool_main, &p), 0);
    for (int i = 0; i < N; i++) {
        s[i] = (struct cb_stream){
            .pool = &p, .mask = masks[i % 3], .inline_read = i % 2, .st = 31 + i};
        cr_assert_eq(outlog_reader_new(l, s[i].mask, 0, &s[i].r), 0);
        pool_push(&s[i]);
    }
    cr_assert_eq(pthread_create(&wt, NULL, writer_main, &w), 0);
    pthread_join(wt, NULL);

    pthread_mutex_lock(&p.lock);
    while (p.done < N)
        pthread_cond_wait(&p.cond, &p.lock);
    p.stop = true;
    pthread_cond_broadcast(&p.cond);
    pthread_mutex_unlock(&p.lock);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(pt[i], NULL);
    for (int i = 0; i < N; i++) {
        cr_assert(s[i].ok, "stream %d", i);
        for (int k = 1; k <= 2; k++)
            cr_assert_eq(s[i].got[k], (s[i].mask & (1u << k)) ? w.bytes[k] : 0);
        outlog_reader_free(s[i].r);
    }
    free(s);
}

/* cancel_wait racing with appends: after cancel returns, the callback must not be running and
 * must never run again, so the caller can free what it points to at once. ASan catches a late
 * call as a use-after-free, TSan as a race with free(). The callback sleeps now and then to
 * widen the window, and in the second half re-arms itself from inside (so cancel finds the
 * reader armed *and* its previous callback still running). */
struct race_ctx {
    struct outlog_reader *r;
    bool rearm;
    int calls;
    bool running;
};

static void race_wake(void *p)
{
    struct race_ctx *c = p;
    char buf[64];

    c->running = true;
    c->calls++;
    if (c->calls % 3 == 1)
        usleep(20);
    if (c->rearm) {
        while (outlog_reader_read(c->r, buf, sizeof(buf), NULL) > 0)
            ;
        (void)outlog_reader_wait(c->r, race_wake, c);
    }
    c->running = false;
}

struct race_writer {
    struct outlog *log;
    atomic_bool stop;
};

static void *race_writer_main(void *p)
{
    struct race_writer *w = p;
    uint64_t st = 5;

    while (!atomic_load(&w->stop)) {
        cr_assert_eq(outlog_append(w->log, OUTLOG_STDOUT, "0123456789abcdef", 16), 0);
        if (rnd(&st) % 4 == 0)
            sched_yield();
    }
    return NULL;
}

Test(outlog, cancel_wait_races_append, .timeout = 60)
{
    enum { ITER = 3000 };
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    struct race_writer w = {0};
    pthread_t wt;
    uint64_t st = 77;
    int disarmed = 0, fired = 0;

    cr_assert_eq(outlog_create(path, 0, &l), 0);
    w.log = l;
    cr_assert_eq(pthread_create(&wt, NULL, race_writer_main, &w), 0);
    while (outlog_get_bytes(l) == 0)
        usleep(100);
    /* Run until both outcomes were seen often enough (timing varies, under TSan especially). */
    for (int i = 0; i < ITER || ((disarmed < 200 || fired < 200) && i < 20 * ITER); i++) {
        struct outlog_reader *r = NULL;
        struct race_ctx *c = calloc(1, sizeof(*c));
        int k;

        c->rearm = i % 2;
        cr_assert_eq(outlog_reader_new(l, OUTLOG_SELECT_STDOUT, outlog_get_bytes(l), &r), 0);
        c->r = r;
        k = outlog_reader_wait(r, race_wake, c);
        cr_assert(k == 0 || k == -EAGAIN);
        uint64_t spin = rnd(&st) % 4 == 0 ? rnd(&st) % 200000 : rnd(&st) % 5000;
        for (; spin > 0; spin--)
            __asm__ volatile("" ::: "memory");
        bool d = outlog_reader_cancel_wait(r);
        disarmed += d;
        fired += !d;
        /* Plain reads: TSan flags them if the callback still runs concurrently. */
        cr_assert_not(c->running);
        if (k == -EAGAIN)
            cr_assert(!d && c->calls == 0);
        else if (!c->rearm)
            cr_assert_eq(c->calls, d ? 0 : 1);
        free(c);
        outlog_reader_free(r);
    }
    atomic_store(&w.stop, true);
    pthread_join(wt, NULL);
    cr_log_info("cancel race: %d disarmed, %d already fired", disarmed, fired);
    cr_assert(disarmed > 0 && fired > 0, "the race was not exercised");
}

/* ---- open files ------------------------------------------------------------------------- */

/* A server keeps a log per job it remembers: an ended log nobody reads must hold no fd, or a
 * server with many old jobs runs out of them. With RLIMIT_NOFILE far below the number of logs,
 * every step below would fail with EMFILE if each log kept its file open. */
#define MANY_LOGS 400

static void many_path(char *buf, size_t len, int i)
{
    snprintf(buf, len, "%s/log.%d", tmpdir, i);
}

static void many_expect(struct outlog *l, int i, unsigned mask)
{
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    char want[64], buf[64];
    size_t n_want = 0, got = 0;
    ssize_t n;

    if (mask & OUTLOG_SELECT_STDOUT)
        n_want += (size_t)snprintf(want + n_want, sizeof(want) - n_want, "out %d\n", i);
    if (mask & OUTLOG_SELECT_STDERR)
        n_want += (size_t)snprintf(want + n_want, sizeof(want) - n_want, "err %d\n", i);
    cr_assert_eq(outlog_reader_new(l, mask, 0, &r), 0, "log %d", i);
    while ((n = outlog_reader_read(r, buf + got, sizeof(buf) - got, NULL)) > 0)
        got += (size_t)n;
    cr_assert_eq(n, 0, "log %d: %zd", i, n);
    cr_assert_eq(got, n_want, "log %d", i);
    cr_assert_eq(memcmp(buf, want, got), 0, "log %d", i);
}

Test(outlog, ended_logs_hold_no_fd, .timeout = 60)
{
    struct outlog **logs = calloc(MANY_LOGS, sizeof(*logs));
    struct outlog_reader *rs[4] = {NULL};
    char p[300], line[64];
    struct rlimit old, rl;
    int base;

    cr_assert_not_null(logs);
    base = count_fds();
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    rl = (struct rlimit){.rlim_cur = (rlim_t)base + 16, .rlim_max = old.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);

    /* Written and closed: the writer's fd goes with the close. */
    for (int i = 0; i < MANY_LOGS; i++) {
        many_path(p, sizeof(p), i);
        cr_assert_eq(outlog_create(p, 0, &logs[i]), 0, "log %d", i);
        snprintf(line, sizeof(line), "out %d\n", i);
        append_str(logs[i], OUTLOG_STDOUT, line);
        snprintf(line, sizeof(line), "err %d\n", i);
        append_str(logs[i], OUTLOG_STDERR, line);
        outlog_close(logs[i]);
    }
    cr_assert_eq(count_fds(), base, "after %d closed logs", MANY_LOGS);
    /* Read back one after another: each reader opens the file, the last one closes it. */
    for (int i = 0; i < MANY_LOGS; i++)
        many_expect(logs[i], i, masks[i % 3]);
    cr_assert_eq(count_fds(), base, "after reading them all");
    /* Several readers of one log share one fd, whatever order they go in. */
    for (int k = 0; k < 4; k++)
        cr_assert_eq(outlog_reader_new(logs[7], masks[k % 3], 0, &rs[k]), 0);
    cr_assert_eq(count_fds(), base + 1);
    many_expect(logs[7], 7, OUTLOG_SELECT_ALL);
    outlog_reader_free(rs[2]);
    outlog_reader_free(rs[0]);
    outlog_reader_free(rs[3]);
    cr_assert_eq(count_fds(), base + 1, "one reader left");
    outlog_reader_free(rs[1]);
    cr_assert_eq(count_fds(), base);
    for (int i = 0; i < MANY_LOGS; i++)
        outlog_free(logs[i]);

    /* After a restart: outlog_open opens nothing; sizes load (and let go) on first use. */
    for (int i = 0; i < MANY_LOGS; i++) {
        many_path(p, sizeof(p), i);
        cr_assert_eq(outlog_open(p, &logs[i]), 0, "log %d", i);
    }
    cr_assert_eq(count_fds(), base, "after opening %d logs", MANY_LOGS);
    for (int i = 0; i < MANY_LOGS; i += 2) {
        snprintf(line, sizeof(line), "out %d\nerr %d\n", i, i);
        cr_assert_eq(outlog_get_bytes(logs[i]), strlen(line), "log %d", i);
        cr_assert_not(outlog_is_truncated(logs[i]));
    }
    cr_assert_eq(count_fds(), base, "after their sizes");
    for (int i = 0; i < MANY_LOGS; i++) /* half loaded already, half loaded by the reader */
        many_expect(logs[i], i, masks[(i + 1) % 3]);
    cr_assert_eq(count_fds(), base, "after reading them all again");
    for (int i = 0; i < MANY_LOGS; i++) {
        outlog_free(logs[i]);
        many_path(p, sizeof(p), i);
        (void)unlink(p);
    }
    free(logs);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* Readers come and go on one log while it is written, closed, and after: the fd is handed from
 * the writer to the readers, closed by the last one, opened again by the next, under readers
 * that are in the middle of a pread or being woken by the close. Every byte must still be
 * right (a reader reading through a closed or reused fd would not be), and at the end no fd
 * is left. Half the threads block in outlog_reader_next; the other half arm wake-ups and free
 * their reader as soon as the wake-up said EOF, possibly while the close still dispatches.
 * A round starts at a random offset (single-stream selections; both streams from 0, so that
 * each byte's stream offset is known) and stops at EOF or, half the time, at a random point. */
struct churn_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool woke;
};

static void churn_wake(void *p)
{
    struct churn_waiter *w = p;
    pthread_mutex_lock(&w->mu);
    w->woke = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

struct churn_args {
    struct outlog *log;
    const struct writer_args *w;
    int idx;
    int after_close; /* rounds that started on a closed log */
    bool ok;
};

static bool churn_round(struct churn_args *a, uint64_t *st)
{
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    struct churn_waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    unsigned mask = masks[rnd(st) % 3];
    uint64_t start =
        mask == OUTLOG_SELECT_ALL ? 0 : rnd(st) % (outlog_get_selected_bytes(a->log, mask) + 1);
    uint64_t off = start, got[3] = {0};
    uint64_t stop = rnd(st) % 2 ? UINT64_MAX : start + rnd(st) % (256 * 1024);
    struct outlog_chunk_info info;
    char buf[8192];
    bool blocking = a->idx % 2 == 0;
    ssize_t n;

    if (outlog_reader_new(a->log, mask, start, &r) < 0)
        return false;
    for (;;) {
        n = blocking ? outlog_reader_next(r, buf, 1 + rnd(st) % sizeof(buf), &info)
                     : outlog_reader_read(r, buf, 1 + rnd(st) % sizeof(buf), &info);
        if (n == -EAGAIN && !blocking) {
            int k;
            w.woke = false;
            k = outlog_reader_wait(r, churn_wake, &w);
            if (k == -EAGAIN)
                continue;
            if (k < 0)
                return false;
            pthread_mutex_lock(&w.mu);
            while (!w.woke)
                pthread_cond_wait(&w.cv, &w.mu);
            pthread_mutex_unlock(&w.mu);
            continue;
        }
        if (n <= 0)
            break;
        if (info.offset != off || !(mask & (1u << info.stream)))
            return false;
        if (!check(buf, info.stream, mask == OUTLOG_SELECT_ALL ? got[info.stream] : off, (size_t)n))
            return false;
        off += (uint64_t)n;
        got[info.stream] += (uint64_t)n;
        if (off >= stop)
            return true; /* leaves early: the reader goes mid-stream */
    }
    if (n != 0)
        return false;
    /* At EOF the log is closed and the writer's counts are final (joined before we look). */
    return off == outlog_get_selected_bytes(a->log, mask) && off - start == got[1] + got[2];
}

static void *churn_main(void *p)
{
    struct churn_args *a = p;
    uint64_t st = 4242 + (uint64_t)a->idx;

    a->ok = false;
    while (a->after_close < 40) {
        bool closed = outlog_is_closed(a->log);
        if (!churn_round(a, &st))
            return NULL;
        a->after_close += closed;
    }
    a->ok = true;
    return NULL;
}

Test(outlog, readers_come_and_go_across_close, .timeout = 60)
{
    enum { N = 6 };
    struct outlog *l = NULL;
    struct writer_args w = {.seed = 3, .slow = true};
    struct churn_args a[N];
    pthread_t wt, rt[N];
    int base = count_fds();

    cr_assert_eq(outlog_create(path, 0, &l), 0);
    w.log = l;
    cr_assert_eq(pthread_create(&wt, NULL, writer_main, &w), 0);
    for (int i = 0; i < N; i++) {
        a[i] = (struct churn_args){.log = l, .w = &w, .idx = i};
        cr_assert_eq(pthread_create(&rt[i], NULL, churn_main, &a[i]), 0);
    }
    pthread_join(wt, NULL);
    for (int i = 0; i < N; i++) {
        pthread_join(rt[i], NULL);
        cr_assert(a[i].ok, "reader thread %d", i);
    }
    cr_assert_eq(outlog_get_bytes(l), w.bytes[1] + w.bytes[2]);
    cr_assert_eq(count_fds(), base, "the last reader closed the file");
    outlog_free(l);
}

struct gap_reader_args {
    struct outlog *log;
    unsigned mask;
    uint64_t end;
    bool ok;
};

/* Follows the log to its end; a stream selected alone is checked byte by byte at its offsets,
 * both together only for growing offsets. */
static void *gap_reader_main(void *p)
{
    struct gap_reader_args *a = p;
    _cleanup_(outlog_reader_freep) struct outlog_reader *r = NULL;
    _cleanup_free_ char *buf = malloc(40000);
    struct outlog_chunk_info info;
    uint64_t st = a->mask, off = 0;
    ssize_t n;

    a->ok = false;
    if (outlog_reader_new(a->log, a->mask, 0, &r) < 0)
        return NULL;
    while ((n = outlog_reader_next(r, buf, 1 + rnd(&st) % 40000, &info)) > 0) {
        if (info.offset < off || !(a->mask & (1u << info.stream)))
            return NULL;
        if (a->mask != OUTLOG_SELECT_ALL && !check(buf, info.stream, info.offset, (size_t)n))
            return NULL;
        off = info.offset + (uint64_t)n;
    }
    a->end = off;
    a->ok = n == 0;
    return NULL;
}

/* Readers following a log that drops its middle as they read: each byte they get is the one
 * written at its offset (never a byte of a dropped or overwritten record), offsets only grow,
 * and a reader of both streams ends at the writer's last byte. */
Test(outlog, keep_ends_readers_follow_a_moving_gap, .timeout = 60)
{
    enum { N = 9 };
    _cleanup_(outlog_freep) struct outlog *l = NULL;
    struct writer_args w = {.seed = 11, .slow = true};
    struct gap_reader_args a[N];
    pthread_t wt, rt[N];

    cr_assert_eq(outlog_create(path, 64 * 1024, &l), 0);
    outlog_keep_ends(l);
    w.log = l;
    for (int i = 0; i < N; i++)
        a[i] = (struct gap_reader_args){.log = l, .mask = masks[i % 3]};
    cr_assert_eq(pthread_create(&wt, NULL, writer_main, &w), 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(pthread_create(&rt[i], NULL, gap_reader_main, &a[i]), 0);
    pthread_join(wt, NULL);
    for (int i = 0; i < N; i++) {
        pthread_join(rt[i], NULL);
        cr_expect(a[i].ok, "reader %d (mask %u)", i, a[i].mask);
        /* The newest record is always kept, so a reader of both ends at the last byte; one
         * stream's last bytes may have been in the middle that went. */
        if (a[i].mask == OUTLOG_SELECT_ALL)
            cr_expect_eq(a[i].end, selected_bytes(&w.bytes[1], a[i].mask), "reader %d", i);
        else
            cr_expect_leq(a[i].end, selected_bytes(&w.bytes[1], a[i].mask), "reader %d", i);
    }
    cr_expect_gt(outlog_get_dropped_bytes(l), 0);
}
