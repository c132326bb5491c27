#include "jobtable.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "jobtable-internal.h"
#include "log.h"

static const char *const state_names[] = {
    [JOB_STARTING] = "STARTING", [JOB_RUNNING] = "RUNNING",
    [JOB_EXITED] = "EXITED",     [JOB_KILLED] = "KILLED",
    [JOB_FAILED_TO_START] = "FAILED_TO_START", [JOB_LOST] = "LOST",
};

/* ---- record text ----------------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        char *p;
        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_putn(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* key=value with control bytes, DEL and '%' written as %XX, so a value is one line. */
static void sb_put_str(struct sbuf *b, const char *key, const char *v)
{
    sb_putn(b, key, strlen(key));
    sb_putn(b, "=", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '%') {
            char esc[4];
            (void)snprintf(esc, sizeof(esc), "%%%02X", *p);
            sb_putn(b, esc, 3);
        } else {
            sb_putn(b, (const char *)p, 1);
        }
    }
    sb_putn(b, "\n", 1);
}

int jobtab_record_format(const struct jobtab_spec *spec, const struct jobtab_status *st,
                         char **ret_text)
{
    struct sbuf b = {0};
    const struct job_status *js = &st->job;
    unsigned s = (unsigned)js->state;

    sb_printf(&b, "version=1\n");
    sb_put_str(&b, "id", spec->id);
    sb_put_str(&b, "owner", spec->owner);
    sb_put_str(&b, "name", spec->name ? spec->name : "");
    sb_put_str(&b, "command", spec->command);
    for (size_t i = 0; i < spec->n_args; i++)
        sb_put_str(&b, "arg", spec->args[i]);
    sb_printf(&b, "cpu_millis=%" PRIu64 "\n", spec->limits.cpu_millis);
    sb_printf(&b, "memory_bytes=%" PRIu64 "\n", spec->limits.memory_bytes);
    sb_printf(&b, "io_riops=%" PRIu64 "\n", spec->limits.io_riops);
    sb_printf(&b, "io_wiops=%" PRIu64 "\n", spec->limits.io_wiops);
    sb_printf(&b, "io_rbps=%" PRIu64 "\n", spec->limits.io_rbps);
    sb_printf(&b, "io_wbps=%" PRIu64 "\n", spec->limits.io_wbps);
    sb_printf(&b, "pids=%" PRIu64 "\n", spec->limits.pids);
    sb_printf(&b, "network=%s\n", spec->network == JOB_NET_HOST ? "host" : "none");
    sb_printf(&b, "created_ns=%" PRIu64 "\n", spec->created_ns);
    sb_printf(&b, "state=%s\n", s < ELEMENTSOF(state_names) ? state_names[s] : "LOST");
    sb_printf(&b, "exit_code=%d\n", js->exit_code);
    sb_printf(&b, "signal=%d\n", js->signal);
    sb_printf(&b, "oom_killed=%d\n", js->oom_killed ? 1 : 0);
    sb_put_str(&b, "error", js->error);
    sb_printf(&b, "start_ms=%" PRId64 "\n", js->start_ms);
    sb_printf(&b, "end_ms=%" PRId64 "\n", js->end_ms);
    sb_printf(&b, "cpu_usec=%" PRIu64 "\n", js->cpu_usec);
    sb_printf(&b, "memory_peak_bytes=%" PRIu64 "\n", js->memory_peak_bytes);
    sb_printf(&b, "output_bytes=%" PRIu64 "\n", st->output_bytes);
    sb_printf(&b, "output_truncated=%d\n", st->output_truncated ? 1 : 0);
    if (b.oom) {
        free(b.p);
        return -ENOMEM;
    }
    *ret_text = b.p;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes a %XX-escaped value of n bytes into a malloc'd string. NULL on malformed or OOM
 * (*bad tells which). */
static char *unescape(const char *v, size_t n, bool *bad)
{
    char *out = malloc(n + 1);
    size_t o = 0;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '%') {
            int hi = i + 2 < n ? hexval(v[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(v[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                *bad = true;
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = v[i];
        }
    }
    out[o] = '\0';
    return out;
}

static int parse_u64(const char *v, size_t n, uint64_t *ret)
{
    uint64_t x = 0;

    if (n == 0 || n > 20)
        return -EBADMSG;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -EBADMSG;
        if (x > (UINT64_MAX - (uint64_t)(v[i] - '0')) / 10)
            return -EBADMSG;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *ret = x;
    return 0;
}

static int parse_i64(const char *v, size_t n, int64_t *ret)
{
    uint64_t x;
    bool neg = n > 0 && v[0] == '-';

    if (parse_u64(v + neg, n - neg, &x) < 0 || x > (uint64_t)INT64_MAX)
        return -EBADMSG;
    *ret = neg ? -(int64_t)x : (int64_t)x;
    return 0;
}

static int parse_int(const char *v, size_t n, int *ret)
{
    int64_t x;

    if (parse_i64(v, n, &x) < 0 || x < INT_MIN || x > INT_MAX)
        return -EBADMSG;
    *ret = (int)x;
    return 0;
}

void jobtab_spec_clear(struct jobtab_spec *spec)
{
    free(spec->owner);
    free(spec->name);
    free(spec->command);
    for (size_t i = 0; i < spec->n_args; i++)
        free(spec->args[i]);
    free(spec->args);
    memset(spec, 0, sizeof(*spec));
}

static bool key_is(const char *k, size_t kn, const char *want)
{
    return strlen(want) == kn && memcmp(k, want, kn) == 0;
}

/* One key=value line into spec/st. */
static int parse_line(const char *k, size_t kn, const char *v, size_t vn, struct jobtab_spec *spec,
                      struct jobtab_status *st, unsigned *seen)
{
    struct job_status *js = &st->job;
    uint64_t u;
    bool bad = false;
    char **strp = NULL;

#define U64_FIELD(name, dst)                                                                       \
    if (key_is(k, kn, name))                                                                       \
        return parse_u64(v, vn, &(dst));
    U64_FIELD("cpu_millis", spec->limits.cpu_millis)
    U64_FIELD("memory_bytes", spec->limits.memory_bytes)
    U64_FIELD("io_riops", spec->limits.io_riops)
    U64_FIELD("io_wiops", spec->limits.io_wiops)
    U64_FIELD("io_rbps", spec->limits.io_rbps)
    U64_FIELD("io_wbps", spec->limits.io_wbps)
    U64_FIELD("pids", spec->limits.pids)
    U64_FIELD("created_ns", spec->created_ns)
    U64_FIELD("cpu_usec", js->cpu_usec)
    U64_FIELD("memory_peak_bytes", js->memory_peak_bytes)
    U64_FIELD("output_bytes", st->output_bytes)
#undef U64_FIELD
    if (key_is(k, kn, "version"))
        return parse_u64(v, vn, &u) < 0 || u != 1 ? -EBADMSG : 0;
    if (key_is(k, kn, "exit_code"))
        return parse_int(v, vn, &js->exit_code);
    if (key_is(k, kn, "signal"))
        return parse_int(v, vn, &js->signal);
    if (key_is(k, kn, "start_ms"))
        return parse_i64(v, vn, &js->start_ms);
    if (key_is(k, kn, "end_ms"))
        return parse_i64(v, vn, &js->end_ms);
    if (key_is(k, kn, "oom_killed") || key_is(k, kn, "output_truncated")) {
        if (parse_u64(v, vn, &u) < 0 || u > 1)
            return -EBADMSG;
        if (key_is(k, kn, "oom_killed"))
            js->oom_killed = u;
        else
            st->output_truncated = u;
        return 0;
    }
    if (key_is(k, kn, "network")) {
        if (vn == 4 && memcmp(v, "host", 4) == 0)
            spec->network = JOB_NET_HOST;
        else if (vn == 4 && memcmp(v, "none", 4) == 0)
            spec->network = JOB_NET_NONE;
        else
            return -EBADMSG;
        return 0;
    }
    if (key_is(k, kn, "state")) {
        for (size_t i = 0; i < ELEMENTSOF(state_names); i++)
            if (strlen(state_names[i]) == vn && memcmp(v, state_names[i], vn) == 0) {
                js->state = (enum job_state)i;
                *seen |= 1u << 3;
                return 0;
            }
        return -EBADMSG;
    }
    if (key_is(k, kn, "error")) {
        char *e = unescape(v, vn, &bad);
        if (!e)
            return bad ? -EBADMSG : -ENOMEM;
        (void)snprintf(js->error, sizeof(js->error), "%s", e);
        free(e);
        return 0;
    }
    if (key_is(k, kn, "id")) {
        if (vn != JOBTAB_ID_LEN)
            return -EBADMSG;
        memcpy(spec->id, v, vn);
        spec->id[vn] = '\0';
        if (!jobtab_is_id(spec->id))
            return -EBADMSG;
        *seen |= 1u << 0;
        return 0;
    }
    if (key_is(k, kn, "arg")) {
        char **a = realloc(spec->args, (spec->n_args + 1) * sizeof(*a));
        if (!a)
            return -ENOMEM;
        spec->args = a;
        a[spec->n_args] = unescape(v, vn, &bad);
        if (!a[spec->n_args])
            return bad ? -EBADMSG : -ENOMEM;
        spec->n_args++;
        return 0;
    }
    if (key_is(k, kn, "owner")) {
        strp = &spec->owner;
        *seen |= 1u << 1;
    } else if (key_is(k, kn, "command")) {
        strp = &spec->command;
        *seen |= 1u << 2;
    } else if (key_is(k, kn, "name")) {
        strp = &spec->name;
    } else {
        return 0; /* a key from a newer version: ignore */
    }
    if (*strp)
        return -EBADMSG; /* duplicate */
    *strp = unescape(v, vn, &bad);
    if (!*strp)
        return bad ? -EBADMSG : -ENOMEM;
    return 0;
}

int jobtab_record_parse(const char *text, struct jobtab_spec *ret_spec,
                        struct jobtab_status *ret_st)
{
    struct jobtab_spec spec = {0};
    struct jobtab_status st = {0};
    unsigned seen = 0;
    const char *p = text;
    int r = 0;

    while (*p && r == 0) {
        const char *nl = strchr(p, '\n');
        const char *eq;
        size_t len;

        if (!nl) {
            r = -EBADMSG; /* every line ends with \n: a torn write is refused */
            break;
        }
        len = (size_t)(nl - p);
        eq = memchr(p, '=', len);
        if (!eq || eq == p)
            r = -EBADMSG;
        else
            r = parse_line(p, (size_t)(eq - p), eq + 1, (size_t)(nl - eq - 1), &spec, &st, &seen);
        p = nl + 1;
    }
    if (r == 0 && seen != 0xf)
        r = -EBADMSG;
    if (r == 0 && !spec.name) {
        spec.name = strdup("");
        if (!spec.name)
            r = -ENOMEM;
    }
    if (r < 0) {
        jobtab_spec_clear(&spec);
        return r;
    }
    *ret_spec = spec;
    *ret_st = st;
    return 0;
}

/* ---- files: the atomic write ----------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Room kept for the next record of a job that still runs (RECORD_TMP, allocated ahead), so
 * that its final record still lands when the disk fills up meanwhile (by its own output, say).
 * Best effort: without it the next write simply needs free space, as any write does. */
#define RECORD_RESERVE_MIN 4096

static void reserve_next_record(int dfd, size_t len)
{
    _cleanup_close_ int fd = -1;
    size_t size = (len + 2 * RECORD_RESERVE_MIN - 1) & ~(size_t)(RECORD_RESERVE_MIN - 1);

    fd = openat(dfd, RECORD_TMP, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    if (posix_fallocate(fd, 0, (off_t)size) != 0)
        (void)unlinkat(dfd, RECORD_TMP, 0);
}

/* Queues e's latest record for the flusher. A record written while e is still queued needs no
 * second place: the flusher syncs whatever the folder holds when it gets there. */
static void flusher_queue(struct jobtab_entry *e, bool new_folder)
{
    struct jobtab_flusher *fl = &e->t->fl;

    (void)pthread_mutex_lock(&fl->mu);
    e->fl_new_folder = e->fl_new_folder || new_folder;
    if (!e->fl_queued) {
        e->fl_queued = true;
        e->fl_seq = ++fl->queued_seq;
        e->fl_next = NULL;
        if (!fl->head)
            (void)pthread_cond_signal(&fl->wake);
        *fl->tail = e;
        fl->tail = &e->fl_next;
    }
    (void)pthread_mutex_unlock(&fl->mu);
}

/* Writes the record: status.tmp, then rename over status, so that a crash of the server
 * (whose writes the page cache keeps) leaves either the old or the new record, never a torn
 * one. Durability against a crash of the machine is the flusher's (below): it fsyncs the file
 * and the folder shortly after, for every record written meanwhile at once. status.tmp may hold
 * room reserved by the previous write: it is overwritten in place, then cut to the record. */
int jobtab_rec_write(struct jobtab_entry *e, const struct jobtab_status *st, bool new_folder)
{
    _cleanup_free_ char *text = NULL;
    _cleanup_close_ int dfd = -1;
    _cleanup_close_ int fd = -1;
    char dir[PATH_MAX];
    size_t len;
    int r;

    if (snprintf(dir, sizeof(dir), "%s/%s", e->t->state_dir, e->spec.id) >= (int)sizeof(dir))
        return -ENAMETOOLONG;
    r = jobtab_record_format(&e->spec, st, &text);
    if (r < 0)
        return r;
    len = strlen(text);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    fd = openat(dfd, RECORD_TMP, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    r = write_all(fd, text, len);
    if (r < 0)
        return r;
    if (ftruncate(fd, (off_t)len) < 0)
        return -errno;
    if (renameat(dfd, RECORD_TMP, dfd, RECORD_FILE) < 0)
        return -errno;
    flusher_queue(e, new_folder);
    if (jobtab_state_is_running(st->job.state))
        reserve_next_record(dfd, len);
    return 0;
}

int jobtab_rec_write_latest(struct jobtab_entry *e)
{
    struct jobtab_status latest;
    int r;

    (void)pthread_mutex_lock(&e->wlock);
    jobtab_entry_get_status(e, &latest);
    r = jobtab_rec_write(e, &latest, false);
    (void)pthread_mutex_unlock(&e->wlock);
    return r;
}

int jobtab_rec_read(int dfd, char **ret_text)
{
    _cleanup_close_ int fd = openat(dfd, RECORD_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    _cleanup_free_ char *buf = NULL;
    size_t len = 0, cap = 0;

    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t n;
        if (len + 1 >= cap) {
            char *p;
            cap = cap ? cap * 2 : 4096;
            if (cap > (8u << 20))
                return -EFBIG;
            p = realloc(buf, cap);
            if (!p)
                return -ENOMEM;
            buf = p;
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    if (strlen(buf) != len)
        return -EBADMSG;
    *ret_text = TAKE_PTR(buf);
    return 0;
}

/* ---- the flusher: durability, one batch at a time -------------------------------------- */

/* At most this many folders per batch (the ids are copied out of the queue onto the stack). */
#define FLUSH_BATCH 64

struct flush_item {
    char id[JOBTAB_ID_LEN + 1];
};

/* fdatasync of the record, fsync of its folder (the rename). A folder gone meanwhile (a job
 * whose first record failed is removed again) has nothing left to make durable. */
static int sync_folder(int sfd, const char *id)
{
    _cleanup_close_ int dfd = -1;
    _cleanup_close_ int fd = -1;

    dfd = openat(sfd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return errno == ENOENT ? 0 : -errno;
    fd = openat(dfd, RECORD_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno != ENOENT)
        return -errno;
    if (fd >= 0 && fdatasync(fd) < 0)
        return -errno;
    if (fsync(dfd) < 0)
        return -errno;
    return 0;
}

/* One batch: every folder's record and rename, then the state directory once if a folder in
 * the batch is new. Returns the first error; the other folders are still synced. */
static int sync_batch(struct jobtab *t, const struct flush_item *items, size_t n, bool new_folder)
{
    _cleanup_close_ int sfd = open(t->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int first = 0;

    if (sfd < 0)
        return -errno;
    for (size_t i = 0; i < n; i++) {
        int r = sync_folder(sfd, items[i].id);
        if (r < 0) {
            log_warn("job %s: making its record durable: %s", items[i].id, strerror(-r));
            if (first == 0)
                first = r;
        }
    }
    if (new_folder && fsync(sfd) < 0 && first == 0)
        first = -errno;
    return first;
}

static void deadline_in(struct timespec *ts, unsigned ms)
{
    (void)clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* Group commit: once a record is queued, wait window_ms for others to join (not when someone
 * waits in jobtab_sync, nor at exit), then sync the whole queue, in batches of FLUSH_BATCH. */
static void *flusher_main(void *arg)
{
    struct jobtab *t = arg;
    struct jobtab_flusher *fl = &t->fl;
    struct flush_item items[FLUSH_BATCH];

    (void)pthread_mutex_lock(&fl->mu);
    for (;;) {
        bool new_folder = false;
        uint64_t last = 0;
        size_t n = 0;
        int r;

        while (!fl->head && !fl->exiting)
            (void)pthread_cond_wait(&fl->wake, &fl->mu);
        if (!fl->head)
            break;
        if (!fl->urgent && !fl->exiting && fl->window_ms > 0) {
            struct timespec dl;
            deadline_in(&dl, fl->window_ms);
            while (!fl->urgent && !fl->exiting)
                if (pthread_cond_timedwait(&fl->wake, &fl->mu, &dl) == ETIMEDOUT)
                    break;
        }
        while (fl->head && n < FLUSH_BATCH) {
            struct jobtab_entry *e = fl->head;
            fl->head = e->fl_next;
            memcpy(items[n++].id, e->spec.id, sizeof(items[0].id));
            new_folder = new_folder || e->fl_new_folder;
            e->fl_queued = false;
            e->fl_new_folder = false;
            last = e->fl_seq;
        }
        if (!fl->head) {
            fl->tail = &fl->head;
            fl->urgent = false;
        }
        fl->busy = true;
        (void)pthread_mutex_unlock(&fl->mu);

        r = sync_batch(t, items, n, new_folder);

        (void)pthread_mutex_lock(&fl->mu);
        fl->busy = false;
        if (r < 0 && fl->err == 0)
            fl->err = r;
        /* With the queue empty, whatever was queued after the batch was taken has been
         * forgotten again (only this thread takes from the queue). */
        fl->synced_seq = fl->head ? last : fl->queued_seq;
        (void)pthread_cond_broadcast(&fl->done);
    }
    (void)pthread_mutex_unlock(&fl->mu);
    return NULL;
}

/* ---- the writer: records handed over by jobtab_entry_set_status_async ------------------- */

void jobtab_writer_queue(struct jobtab_entry *e)
{
    struct jobtab_flusher *fl = &e->t->fl;

    (void)pthread_mutex_lock(&fl->mu);
    if (!e->wq_queued) {
        e->wq_queued = true;
        e->wq_next = NULL;
        if (!fl->whead)
            (void)pthread_cond_signal(&fl->wwake);
        *fl->wtail = e;
        fl->wtail = &e->wq_next;
    }
    (void)pthread_mutex_unlock(&fl->mu);
}

/* One record at a time, oldest request first; each write queues its record for the flusher. */
static void *writer_main(void *arg)
{
    struct jobtab *t = arg;
    struct jobtab_flusher *fl = &t->fl;

    (void)pthread_mutex_lock(&fl->mu);
    for (;;) {
        struct jobtab_entry *e;
        int r;

        while (!fl->whead && !fl->wexiting)
            (void)pthread_cond_wait(&fl->wwake, &fl->mu);
        if (!fl->whead)
            break;
        e = fl->whead;
        fl->whead = e->wq_next;
        if (!fl->whead)
            fl->wtail = &fl->whead;
        e->wq_queued = false;
        fl->wbusy = true;
        (void)pthread_mutex_unlock(&fl->mu);

        r = jobtab_rec_write_latest(e);
        if (r < 0)
            log_warn("job %s: writing its record: %s", e->spec.id, strerror(-r));

        (void)pthread_mutex_lock(&fl->mu);
        fl->wbusy = false;
        if (r < 0 && fl->err == 0)
            fl->err = r;
        (void)pthread_cond_broadcast(&fl->wdone);
    }
    (void)pthread_mutex_unlock(&fl->mu);
    return NULL;
}

int jobtab_sync(struct jobtab *t)
{
    struct jobtab_flusher *fl = &t->fl;
    uint64_t target;
    int r;

    (void)pthread_mutex_lock(&fl->mu);
    while (fl->whead || fl->wbusy) /* the writer's records first: they join the flusher's queue */
        (void)pthread_cond_wait(&fl->wdone, &fl->mu);
    target = fl->queued_seq;
    if (fl->synced_seq < target) {
        fl->urgent = true;
        (void)pthread_cond_signal(&fl->wake);
    }
    while (fl->synced_seq < target)
        (void)pthread_cond_wait(&fl->done, &fl->mu);
    r = fl->err;
    fl->err = 0;
    (void)pthread_mutex_unlock(&fl->mu);
    return r;
}

int jobtab_flusher_start(struct jobtab *t, unsigned window_ms)
{
    struct jobtab_flusher *fl = &t->fl;
    pthread_condattr_t ca;
    int r;

    (void)pthread_mutex_init(&fl->mu, NULL);
    (void)pthread_condattr_init(&ca);
    (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    (void)pthread_cond_init(&fl->wake, &ca);
    (void)pthread_condattr_destroy(&ca);
    (void)pthread_cond_init(&fl->done, NULL);
    (void)pthread_cond_init(&fl->wwake, NULL);
    (void)pthread_cond_init(&fl->wdone, NULL);
    fl->head = NULL;
    fl->tail = &fl->head;
    fl->whead = NULL;
    fl->wtail = &fl->whead;
    fl->window_ms = window_ms;
    r = pthread_create(&fl->thread, NULL, flusher_main, t);
    if (r == 0) {
        r = pthread_create(&fl->wthread, NULL, writer_main, t);
        if (r != 0) {
            (void)pthread_mutex_lock(&fl->mu);
            fl->exiting = true;
            (void)pthread_cond_signal(&fl->wake);
            (void)pthread_mutex_unlock(&fl->mu);
            (void)pthread_join(fl->thread, NULL);
        }
    }
    if (r != 0) {
        (void)pthread_cond_destroy(&fl->wdone);
        (void)pthread_cond_destroy(&fl->wwake);
        (void)pthread_cond_destroy(&fl->done);
        (void)pthread_cond_destroy(&fl->wake);
        (void)pthread_mutex_destroy(&fl->mu);
        return -r;
    }
    fl->running = true;
    return 0;
}

void jobtab_flusher_stop(struct jobtab *t)
{
    struct jobtab_flusher *fl = &t->fl;

    if (!fl->running)
        return;
    /* The writer first: what it writes still goes through the flusher. */
    (void)pthread_mutex_lock(&fl->mu);
    fl->wexiting = true;
    (void)pthread_cond_signal(&fl->wwake);
    (void)pthread_mutex_unlock(&fl->mu);
    (void)pthread_join(fl->wthread, NULL);
    (void)pthread_mutex_lock(&fl->mu);
    fl->exiting = true;
    (void)pthread_cond_signal(&fl->wake);
    (void)pthread_mutex_unlock(&fl->mu);
    (void)pthread_join(fl->thread, NULL);
    (void)pthread_cond_destroy(&fl->wdone);
    (void)pthread_cond_destroy(&fl->wwake);
    (void)pthread_cond_destroy(&fl->done);
    (void)pthread_cond_destroy(&fl->wake);
    (void)pthread_mutex_destroy(&fl->mu);
    fl->running = false;
}

void jobtab_flusher_forget(struct jobtab_entry *e)
{
    struct jobtab_flusher *fl = &e->t->fl;

    if (!fl->running) /* stopped: the queue was drained */
        return;
    (void)pthread_mutex_lock(&fl->mu);
    if (e->wq_queued) {
        struct jobtab_entry **p = &fl->whead;
        while (*p != e)
            p = &(*p)->wq_next;
        *p = e->wq_next;
        if (!*p)
            fl->wtail = p;
        e->wq_queued = false;
        (void)pthread_cond_broadcast(&fl->wdone);
    }
    if (e->fl_queued) {
        struct jobtab_entry **p = &fl->head;
        while (*p != e)
            p = &(*p)->fl_next;
        *p = e->fl_next;
        if (!*p)
            fl->tail = p;
        e->fl_queued = false;
        if (!fl->head && !fl->busy) { /* nothing left for a jobtab_sync to wait for */
            fl->synced_seq = fl->queued_seq;
            (void)pthread_cond_broadcast(&fl->done);
        }
    }
    (void)pthread_mutex_unlock(&fl->mu);
}
