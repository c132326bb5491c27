#include "outlog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

/* On-disk layout (native byte order: a log is only ever read by the host that wrote it):
 *
 *   file header  "RJOUTLOG" u32 version u32 reserved                        16 bytes
 *   record*      u16 magic, u8 stream, u8 flags, u32 len, i64 time_ms, len bytes of payload
 *
 * Why framed records in one file rather than one file per stream: "both streams in arrival
 * order" is then just file order, and one append is one pwritev. Why a magic per record: after
 * a crash the tail may hold a half-written record or zeros (delayed allocation); the magic and
 * the length check let outlog_open stop at the last whole record.
 *
 * Concurrency: the writer writes the record *outside* the mutex, then publishes the new end
 * (l->end, a record boundary) under it. Readers pread anything below the published end without
 * the lock: those bytes never change again. The mutex guards only counters, the checkpoint
 * index and the waiter lists, so a slow reader can never hold the writer back.
 *
 * Seeking: a sparse index of checkpoints (file position of a record + payload bytes of each
 * stream before it) lets a reader jump close to its start offset and walk only record headers
 * from there. The index is bounded (at most CP_MAX entries, 96 KiB, grown on demand): when full,
 * every other entry is dropped and the spacing doubles, so memory stays O(1) in the output size
 * and a seek walks at most a few MiB (or a few thousand records) of headers.
 *
 * Open files: a server keeps a struct outlog for every job it remembers, so the file must not
 * be open for each of them. The fd is held only while someone can use it: from outlog_create
 * until outlog_close (the writer), and while at least one reader exists (n_readers > 0).
 * After the close, the last reader to go closes it; the next outlog_reader_new opens the file
 * again, read-only, by its path. outlog_open opens nothing: the first getter or reader reads
 * the file headers (load_locked), keeps what they say in memory (byte counts, truncation, the
 * checkpoint index) and lets the fd go again. So a closed log with no reader holds no fd.
 * l->fd changes only under the lock, and only while nobody can be using it (no reader, and the
 * writer done: closed), which is why readers and the writer may use it without the lock. */

#define FILE_MAGIC     "RJOUTLOG"
#define FILE_VERSION   1u
#define FILE_HDR_SIZE  16
#define REC_MAGIC      0x4a52u /* "RJ" */
#define REC_HDR_SIZE   16
#define REC_MAX_LEN    (1u << 20) /* bigger appends are split; bounds a torn-tail scan */
#define STREAM_META    3          /* zero-length marker records; selected by no reader */
#define META_TRUNCATED 0x01
/* Overridable only so that test/unit/test_outlog.c can exercise index thinning cheaply. */
#ifndef CP_MAX
#define CP_MAX 4096
#endif
#ifndef CP_INIT_BYTES
#define CP_INIT_BYTES (1u << 20)
#endif
#ifndef CP_INIT_RECORDS
#define CP_INIT_RECORDS 4096u
#endif

struct rec_hdr {
    uint16_t magic;
    uint8_t stream;
    uint8_t flags;
    uint32_t len;
    int64_t time_ms;
};
_Static_assert(sizeof(struct rec_hdr) == REC_HDR_SIZE, "record header is 16 bytes on disk");

struct checkpoint {
    uint64_t pos;       /* file position of a record header */
    uint64_t before[2]; /* payload bytes of stdout, stderr before it */
};

struct outlog {
    int fd;     /* -1 while nobody needs it (see "Open files"); changes only under the lock */
    char *path; /* to open it again */
    uint64_t cap_bytes;
    uint64_t wpos; /* writer only: where the next record goes (== end unless a write failed) */

    pthread_mutex_t lock;
    pthread_cond_t data_cond; /* broadcast on append/close when readers sleep in _next */
    pthread_cond_t idle_cond; /* broadcast when a callback returns and a cancel waits for it */

    /* Published state. end and closed are atomics so that readers can check them without the
     * lock; they change only under it. */
    _Atomic uint64_t end;
    atomic_bool closed;
    atomic_bool truncated;
    atomic_bool loaded;    /* the state below describes the file (false: outlog_open'ed only) */
    uint64_t bytes[2];     /* payload below end: stdout, stderr */
    unsigned n_sleepers;   /* threads in outlog_reader_next's cond_wait */
    unsigned n_cancelling; /* threads in outlog_reader_cancel_wait waiting for a callback */
    unsigned n_readers;    /* each holds the fd open */

    struct checkpoint *cps;
    size_t n_cps, cap_cps; /* grows by doubling up to CP_MAX: small logs stay small */
    uint64_t cp_every_bytes, cp_every_records, cp_records; /* records since the last one */

    /* Wake-ups. armed: waiting for data. queue: data came, fn not yet called. One thread at a
     * time (dispatching) empties the queue, calling each fn with the mutex released. */
    struct outlog_reader *armed;
    struct outlog_reader *queue_head, **queue_tail;
    bool dispatching;
    pthread_t dispatcher;
};

struct outlog_reader {
    struct outlog *log;
    unsigned mask;

    /* Cursor, owned by the reading thread. */
    uint64_t pos;       /* file position of the current record header */
    struct rec_hdr hdr; /* header at pos, valid when have_hdr */
    bool have_hdr;
    uint32_t in_rec; /* payload bytes of the current record already consumed or skipped */
    uint64_t cur;    /* selected bytes before pos + in_rec */
    uint64_t target; /* next offset to return; cur < target while still seeking */

    /* Wake-up state, under log->lock. */
    outlog_wake_fn fn;
    void *userdata;
    uint64_t want; /* target when armed: wake once the selection holds more than this */
    bool is_armed, is_queued, is_running;
    struct outlog_reader *prev, *next; /* log->armed list */
    struct outlog_reader *qnext;       /* log->queue */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_REALTIME, &ts); /* cannot fail with a valid clock id */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t selected_bytes(const uint64_t before[2], unsigned mask)
{
    return ((mask & OUTLOG_SELECT_STDOUT) ? before[0] : 0) +
           ((mask & OUTLOG_SELECT_STDERR) ? before[1] : 0);
}

static bool hdr_is_valid(const struct rec_hdr *h)
{
    if (h->magic != REC_MAGIC || h->len > REC_MAX_LEN)
        return false;
    if (h->stream == STREAM_META)
        return h->len == 0;
    return h->stream == OUTLOG_STDOUT || h->stream == OUTLOG_STDERR;
}

static bool hdr_is_selected(const struct rec_hdr *h, unsigned mask)
{
    return h->stream < 32 && (mask & (1u << h->stream));
}

static struct outlog *log_alloc(const char *path)
{
    struct outlog *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->fd = -1;
    l->path = strdup(path);
    l->cp_every_bytes = CP_INIT_BYTES;
    l->cp_every_records = CP_INIT_RECORDS;
    l->queue_tail = &l->queue_head;
    atomic_init(&l->end, FILE_HDR_SIZE);
    l->wpos = FILE_HDR_SIZE;
    l->cap_cps = CP_MAX < 16 ? CP_MAX : 16;
    l->cps = calloc(l->cap_cps, sizeof(*l->cps));
    if (!l->cps || !l->path) {
        free(l->cps);
        free(l->path);
        free(l);
        return NULL;
    }
    /* Error checks omitted on purpose: with default attributes these cannot fail on Linux. */
    (void)pthread_mutex_init(&l->lock, NULL);
    (void)pthread_cond_init(&l->data_cond, NULL);
    (void)pthread_cond_init(&l->idle_cond, NULL);
    /* The first checkpoint, at the first record, makes every lookup find an entry. */
    l->cps[0].pos = FILE_HDR_SIZE;
    l->n_cps = 1;
    return l;
}

/* Back to the state of an empty log, after a load that failed half-way (so that a retry does
 * not count records twice). Under the lock, with no reader. */
static void index_reset(struct outlog *l)
{
    l->bytes[0] = l->bytes[1] = 0;
    l->cps[0] = (struct checkpoint){.pos = FILE_HDR_SIZE};
    l->n_cps = 1;
    l->cp_every_bytes = CP_INIT_BYTES;
    l->cp_every_records = CP_INIT_RECORDS;
    l->cp_records = 0;
    atomic_store(&l->truncated, false);
    atomic_store(&l->end, FILE_HDR_SIZE);
    l->wpos = FILE_HDR_SIZE;
}

/* Under the lock: makes l->fd valid, opening the file again (read-only) if nobody holds it. */
static int fd_get_locked(struct outlog *l)
{
    if (l->fd >= 0)
        return 0;
    l->fd = open(l->path, O_RDONLY | O_CLOEXEC);
    return l->fd < 0 ? -errno : 0;
}

/* Under the lock: closes the fd once nobody can use it: no reader, and no more writes. */
static void fd_drop_locked(struct outlog *l)
{
    if (l->fd >= 0 && l->n_readers == 0 && atomic_load(&l->closed)) {
        (void)close(l->fd); /* read-only by now, or written without fsync: nothing to lose */
        l->fd = -1;
    }
}

/* Called for every record as it is published (under the lock, or before the log is shared). */
static void index_record(struct outlog *l, uint64_t pos, const struct rec_hdr *h)
{
    struct checkpoint *last = &l->cps[l->n_cps - 1];
    uint64_t next_pos = pos + REC_HDR_SIZE + h->len;

    if (h->stream == OUTLOG_STDOUT || h->stream == OUTLOG_STDERR)
        l->bytes[h->stream - 1] += h->len;
    l->cp_records++;
    if (next_pos - last->pos < l->cp_every_bytes && l->cp_records < l->cp_every_records)
        return;
    if (l->n_cps == l->cap_cps && l->cap_cps < CP_MAX) {
        size_t cap = l->cap_cps * 2 < CP_MAX ? l->cap_cps * 2 : CP_MAX;
        struct checkpoint *cps = realloc(l->cps, cap * sizeof(*cps));
        if (cps) { /* else thin below: the index only gets sparser, never wrong */
            l->cps = cps;
            l->cap_cps = cap;
        }
    }
    if (l->n_cps == l->cap_cps) {
        /* Keep entries 0, 2, 4...: lookups stay correct, the spacing doubles. */
        for (size_t i = 0; i < (l->n_cps + 1) / 2; i++)
            l->cps[i] = l->cps[2 * i];
        l->n_cps = (l->n_cps + 1) / 2;
        l->cp_every_bytes *= 2;
        l->cp_every_records *= 2;
    }
    l->cps[l->n_cps++] = (struct checkpoint){
        .pos = next_pos,
        .before = {l->bytes[0], l->bytes[1]},
    };
    l->cp_records = 0;
}

int outlog_create(const char *path, uint64_t cap_bytes, struct outlog **ret)
{
    _cleanup_(outlog_freep) struct outlog *l = log_alloc(path);
    char fhdr[FILE_HDR_SIZE] = FILE_MAGIC;
    uint32_t version = FILE_VERSION;
    ssize_t n;

    if (!l)
        return -ENOMEM;
    l->cap_bytes = cap_bytes;
    /* 0600: job output may hold secrets; only the server reads it. No O_APPEND: records go
     * at explicit positions with pwritev (Linux ignores the offset of pwrite on O_APPEND). */
    l->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (l->fd < 0)
        return -errno;
    memcpy(fhdr + 8, &version, sizeof(version));
    n = pwrite(l->fd, fhdr, sizeof(fhdr), 0);
    if (n != (ssize_t)sizeof(fhdr)) {
        int r = n < 0 ? -errno : -EIO;
        (void)unlink(path); /* we made it; a headerless file would only confuse a restart */
        return r;
    }
    atomic_store(&l->loaded, true); /* empty, and the writer keeps the state from now on */
    *ret = TAKE_PTR(l);
    return 0;
}

/* Walks every record header from the start, reading in blocks so that many small records cost
 * one pread. Stops at the first torn or invalid record: everything after it is ignored. */
static int scan_existing(struct outlog *l, uint64_t size)
{
    enum { BLOCK = 64 * 1024 };
    _cleanup_free_ char *block = malloc(BLOCK);
    uint64_t pos = FILE_HDR_SIZE, block_pos = 0;
    size_t block_len = 0;

    if (!block)
        return -ENOMEM;
    while (pos + REC_HDR_SIZE <= size) {
        struct rec_hdr h;
        if (pos < block_pos || pos + REC_HDR_SIZE > block_pos + block_len) {
            ssize_t n = pread(l->fd, block, BLOCK, (off_t)pos);
            if (n < 0)
                return -errno;
            block_pos = pos;
            block_len = (size_t)n;
            if (block_len < REC_HDR_SIZE)
                break;
        }
        memcpy(&h, block + (pos - block_pos), sizeof(h));
        if (!hdr_is_valid(&h) || pos + REC_HDR_SIZE + h.len > size)
            break;
        if (h.stream == STREAM_META && (h.flags & META_TRUNCATED))
            atomic_store(&l->truncated, true);
        index_record(l, pos, &h);
        pos += REC_HDR_SIZE + h.len;
    }
    atomic_store(&l->end, pos);
    l->wpos = pos;
    return 0;
}

/* Under the lock, with l->fd open: reads what the file holds into memory. */
static int read_existing(struct outlog *l)
{
    char fhdr[FILE_HDR_SIZE];
    struct stat st;
    uint32_t version;
    ssize_t n;

    if (fstat(l->fd, &st) < 0)
        return -errno;
    n = pread(l->fd, fhdr, sizeof(fhdr), 0);
    if (n < 0)
        return -errno;
    if (n < (ssize_t)sizeof(fhdr))
        return 0; /* a crash right after create left a torn file header: an empty log */
    memcpy(&version, fhdr + 8, sizeof(version));
    if (memcmp(fhdr, FILE_MAGIC, 8) != 0 || version != FILE_VERSION)
        return -EBADMSG;
    return scan_existing(l, (uint64_t)st.st_size);
}

/* Under the lock: the first use of a log from outlog_open reads its headers (once; a failure
 * is retried on the next use). The fd it needs goes again unless a reader holds it. */
static int load_locked(struct outlog *l)
{
    int r;

    if (atomic_load(&l->loaded))
        return 0;
    r = fd_get_locked(l);
    if (r < 0)
        return r;
    r = read_existing(l);
    if (r < 0)
        index_reset(l);
    else
        atomic_store(&l->loaded, true);
    fd_drop_locked(l);
    return r;
}

int outlog_open(const char *path, struct outlog **ret)
{
    _cleanup_(outlog_freep) struct outlog *l = log_alloc(path);
    struct stat st;

    if (!l)
        return -ENOMEM;
    /* Only a stat: a server opens every old job's log at start, and most are never read. */
    if (stat(path, &st) < 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    atomic_store(&l->closed, true);
    *ret = TAKE_PTR(l);
    return 0;
}

int outlog_load(struct outlog *l)
{
    int r;

    (void)pthread_mutex_lock(&l->lock);
    r = load_locked(l);
    (void)pthread_mutex_unlock(&l->lock);
    return r;
}

/* Moves the armed readers that now have something to read onto the queue. Under the lock. */
static void queue_ready(struct outlog *l)
{
    bool closed = atomic_load_explicit(&l->closed, memory_order_relaxed);
    struct outlog_reader *r, *next;

    for (r = l->armed; r; r = next) {
        next = r->next;
        if (!closed && selected_bytes(l->bytes, r->mask) <= r->want)
            continue;
        if (r->prev)
            r->prev->next = r->next;
        else
            l->armed = r->next;
        if (r->next)
            r->next->prev = r->prev;
        r->prev = r->next = NULL;
        r->is_armed = false;
        r->is_queued = true;
        r->qnext = NULL;
        *l->queue_tail = r;
        l->queue_tail = &r->qnext;
    }
    if (l->n_sleepers > 0)
        (void)pthread_cond_broadcast(&l->data_cond);
}

/* Calls the queued callbacks, each with the lock released, so that a callback may read and
 * re-arm (or another thread may, while it runs). Entered and left with the lock held. A reader
 * is marked is_running for the duration of its fn; outlog_reader_cancel_wait waits that out,
 * which is what makes freeing a reader after cancel safe. Only one thread dispatches at a
 * time: a second one (a close racing an append) leaves its entries to the first. */
static void dispatch_locked(struct outlog *l)
{
    struct outlog_reader *r;

    if (l->dispatching)
        return;
    l->dispatching = true;
    l->dispatcher = pthread_self();
    while ((r = l->queue_head)) {
        outlog_wake_fn fn = r->fn;
        void *userdata = r->userdata;

        l->queue_head = r->qnext;
        if (!l->queue_head)
            l->queue_tail = &l->queue_head;
        r->qnext = NULL;
        r->is_queued = false;
        r->is_running = true;
        (void)pthread_mutex_unlock(&l->lock);
        fn(userdata);
        (void)pthread_mutex_lock(&l->lock);
        r->is_running = false; /* last touch of r: a canceller may free it once we unlock */
        if (l->n_cancelling > 0)
            (void)pthread_cond_broadcast(&l->idle_cond);
    }
    l->dispatching = false;
}

/* Writes one record at wpos, retrying short writes. Writer thread only, no lock held. */
static int write_record(struct outlog *l, uint8_t stream, uint8_t flags, const void *buf,
                        uint32_t len, struct rec_hdr *ret_hdr)
{
    struct rec_hdr h = {
        .magic = REC_MAGIC, .stream = stream, .flags = flags, .len = len, .time_ms = now_ms()};
    size_t total = REC_HDR_SIZE + (size_t)len, done = 0;

    while (done < total) {
        struct iovec iov[2];
        int n_iov = 0;
        ssize_t n;

        if (done < REC_HDR_SIZE)
            iov[n_iov++] = (struct iovec){(char *)&h + done, REC_HDR_SIZE - done};
        if (len > 0) {
            size_t in_payload = done > REC_HDR_SIZE ? done - REC_HDR_SIZE : 0;
            iov[n_iov++] = (struct iovec){(char *)buf + in_payload, len - in_payload};
        }
        n = pwritev(l->fd, iov, n_iov, (off_t)(l->wpos + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        done += (size_t)n;
    }
    *ret_hdr = h;
    return 0;
}

/* After a failed write: cut off the torn record (best effort; outlog_open would skip it
 * anyway), leave a truncation marker if there is room, and stop recording. */
static void fail_writes(struct outlog *l)
{
    struct rec_hdr h;

    (void)ftruncate(l->fd, (off_t)l->wpos); /* ignored: a torn tail is tolerated on open */
    if (write_record(l, STREAM_META, META_TRUNCATED, NULL, 0, &h) == 0)
        l->wpos += REC_HDR_SIZE; /* not published: readers skip markers anyway */
    atomic_store(&l->truncated, true);
}

int outlog_append(struct outlog *l, enum outlog_stream s, const void *buf, size_t n)
{
    const char *p = buf;
    bool hit_cap = false;
    int r = 0;

    if (s != OUTLOG_STDOUT && s != OUTLOG_STDERR)
        return -EINVAL;
    if (atomic_load(&l->closed))
        return -EPIPE;
    if (atomic_load(&l->truncated) || n == 0)
        return 0;
    if (l->cap_bytes > 0) {
        /* Only this thread changes bytes[], so reading them without the lock is exact. */
        uint64_t used = l->bytes[0] + l->bytes[1], room;
        room = used < l->cap_bytes ? l->cap_bytes - used : 0;
        if (n > room) {
            n = (size_t)room;
            hit_cap = true;
        }
    }

    while (n > 0) {
        uint32_t len = n > REC_MAX_LEN ? REC_MAX_LEN : (uint32_t)n;
        struct rec_hdr h;

        r = write_record(l, (uint8_t)s, 0, p, len, &h);
        if (r < 0) {
            fail_writes(l);
            break;
        }
        (void)pthread_mutex_lock(&l->lock);
        index_record(l, l->wpos, &h);
        l->wpos += REC_HDR_SIZE + len;
        atomic_store_explicit(&l->end, l->wpos, memory_order_release);
        queue_ready(l);
        dispatch_locked(l);
        (void)pthread_mutex_unlock(&l->lock);
        p += len;
        n -= len;
    }
    if (hit_cap && r == 0) {
        struct rec_hdr h;
        if (write_record(l, STREAM_META, META_TRUNCATED, NULL, 0, &h) == 0) {
            (void)pthread_mutex_lock(&l->lock);
            index_record(l, l->wpos, &h);
            l->wpos += REC_HDR_SIZE;
            atomic_store_explicit(&l->end, l->wpos, memory_order_release);
            (void)pthread_mutex_unlock(&l->lock);
        }
        atomic_store(&l->truncated, true);
    }
    return r;
}

void outlog_close(struct outlog *l)
{
    (void)pthread_mutex_lock(&l->lock);
    if (!atomic_load(&l->closed)) {
        atomic_store(&l->closed, true);
        queue_ready(l);
        dispatch_locked(l);
        fd_drop_locked(l); /* the writer is done with it; readers (if any) let it go later */
    }
    (void)pthread_mutex_unlock(&l->lock);
}

void outlog_free(struct outlog *l)
{
    if (!l)
        return;
    if (l->fd >= 0)
        (void)close(l->fd);
    (void)pthread_cond_destroy(&l->idle_cond);
    (void)pthread_cond_destroy(&l->data_cond);
    (void)pthread_mutex_destroy(&l->lock);
    free(l->cps);
    free(l->path);
    free(l);
}

uint64_t outlog_get_bytes(struct outlog *l)
{
    uint64_t n;
    (void)pthread_mutex_lock(&l->lock);
    (void)load_locked(l); /* a log that cannot be read counts no bytes (documented) */
    n = l->bytes[0] + l->bytes[1];
    (void)pthread_mutex_unlock(&l->lock);
    return n;
}

uint64_t outlog_get_selected_bytes(struct outlog *l, unsigned select_mask)
{
    uint64_t n = 0;
    (void)pthread_mutex_lock(&l->lock);
    (void)load_locked(l); /* as in outlog_get_bytes */
    if (select_mask & OUTLOG_SELECT_STDOUT)
        n += l->bytes[OUTLOG_STDOUT - 1];
    if (select_mask & OUTLOG_SELECT_STDERR)
        n += l->bytes[OUTLOG_STDERR - 1];
    (void)pthread_mutex_unlock(&l->lock);
    return n;
}

bool outlog_is_truncated(struct outlog *l)
{
    if (!atomic_load(&l->loaded)) {
        (void)pthread_mutex_lock(&l->lock);
        (void)load_locked(l); /* as in outlog_get_bytes */
        (void)pthread_mutex_unlock(&l->lock);
    }
    return atomic_load(&l->truncated);
}

bool outlog_is_closed(struct outlog *l)
{
    return atomic_load(&l->closed);
}

int outlog_reader_new(struct outlog *l, unsigned select_mask, uint64_t offset,
                      struct outlog_reader **ret)
{
    struct outlog_reader *r;
    int k;

    if ((select_mask & OUTLOG_SELECT_ALL) == 0 || (select_mask & ~OUTLOG_SELECT_ALL) != 0)
        return -EINVAL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->log = l;
    r->mask = select_mask;
    r->pos = FILE_HDR_SIZE;
    r->target = offset; /* the seek happens lazily in read, from the checkpoint index */
    (void)pthread_mutex_lock(&l->lock);
    l->n_readers++; /* first: then the load below keeps the fd it opens for us */
    k = load_locked(l);
    if (k == 0)
        k = fd_get_locked(l);
    if (k < 0) {
        l->n_readers--;
        fd_drop_locked(l);
    }
    (void)pthread_mutex_unlock(&l->lock);
    if (k < 0) {
        free(r);
        return k;
    }
    *ret = r;
    return 0;
}

void outlog_reader_free(struct outlog_reader *r)
{
    struct outlog *l;

    if (!r)
        return;
    l = r->log;
    (void)outlog_reader_cancel_wait(r);
    (void)pthread_mutex_lock(&l->lock);
    l->n_readers--;
    fd_drop_locked(l); /* the last reader of a closed log lets the file go */
    (void)pthread_mutex_unlock(&l->lock);
    free(r);
}

/* Jumps to the last checkpoint at or before the target, if that is ahead of the cursor. */
static void seek_checkpoint(struct outlog_reader *r)
{
    struct outlog *l = r->log;
    struct checkpoint best = {0};
    size_t lo = 0, hi;

    (void)pthread_mutex_lock(&l->lock);
    hi = l->n_cps; /* selected_bytes is monotonic along the index: binary search */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (selected_bytes(l->cps[mid].before, r->mask) <= r->target)
            lo = mid;
        else
            hi = mid;
    }
    best = l->cps[lo];
    (void)pthread_mutex_unlock(&l->lock);
    if (best.pos > r->pos) {
        r->pos = best.pos;
        r->have_hdr = false;
        r->in_rec = 0;
        r->cur = selected_bytes(best.before, r->mask);
    }
}

static int load_hdr(struct outlog_reader *r)
{
    ssize_t n = pread(r->log->fd, &r->hdr, sizeof(r->hdr), (off_t)r->pos);
    if (n < 0)
        return -errno;
    if (n != (ssize_t)sizeof(r->hdr) || !hdr_is_valid(&r->hdr))
        return -EIO; /* below the published end every header is whole and valid */
    r->have_hdr = true;
    r->in_rec = 0;
    return 0;
}

static void next_record(struct outlog_reader *r)
{
    r->pos += REC_HDR_SIZE + r->hdr.len;
    r->have_hdr = false;
    r->in_rec = 0;
}

/* Reads n payload bytes of the current record into dst; when that finishes the record and the
 * next header is published, fetches it in the same preadv (one syscall per record). */
static int read_payload(struct outlog_reader *r, char *dst, size_t n, uint64_t end)
{
    struct rec_hdr next;
    struct iovec iov[2] = {{dst, n}, {&next, sizeof(next)}};
    uint64_t at = r->pos + REC_HDR_SIZE + r->in_rec;
    bool finishes = r->in_rec + n == r->hdr.len;
    int n_iov = finishes && at + n + REC_HDR_SIZE <= end ? 2 : 1;
    size_t want = n + (n_iov == 2 ? REC_HDR_SIZE : 0);
    ssize_t got;

    do
        got = preadv(r->log->fd, iov, n_iov, (off_t)at);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return -errno;
    if ((size_t)got != want)
        return -EIO;
    r->in_rec += (uint32_t)n;
    if (finishes) {
        next_record(r);
        if (n_iov == 2) {
            if (!hdr_is_valid(&next))
                return -EIO;
            r->hdr = next;
            r->have_hdr = true;
        }
    }
    return 0;
}

ssize_t outlog_reader_read(struct outlog_reader *r, void *buf, size_t cap,
                           struct outlog_chunk_info *ret_info)
{
    struct outlog *l = r->log;
    struct outlog_chunk_info info = {0};
    /* closed before end: once closed is seen, end is final. */
    bool closed = atomic_load_explicit(&l->closed, memory_order_acquire);
    uint64_t end = atomic_load_explicit(&l->end, memory_order_acquire);
    size_t got = 0;
    int k;

    if (cap == 0)
        return -EINVAL;
    if (r->cur < r->target)
        seek_checkpoint(r);
    while (got < cap) {
        uint32_t avail;
        size_t n;

        if (!r->have_hdr) {
            if (r->pos + REC_HDR_SIZE > end)
                break;
            k = load_hdr(r);
            if (k < 0)
                return k;
        }
        if (!hdr_is_selected(&r->hdr, r->mask)) {
            next_record(r);
            continue;
        }
        avail = r->hdr.len - r->in_rec;
        if (r->cur < r->target) { /* still seeking: skip without reading payload */
            uint64_t skip = r->target - r->cur < avail ? r->target - r->cur : avail;
            r->in_rec += (uint32_t)skip;
            r->cur += skip;
            if (r->in_rec == r->hdr.len)
                next_record(r);
            continue;
        }
        if (avail == 0) {
            next_record(r);
            continue;
        }
        if (got == 0)
            info = (struct outlog_chunk_info){
                .stream = r->hdr.stream, .offset = r->cur, .time_ms = r->hdr.time_ms};
        else if (r->hdr.stream != info.stream)
            break;
        n = cap - got < avail ? cap - got : avail;
        k = read_payload(r, (char *)buf + got, n, end);
        if (k < 0 && got == 0)
            return k; /* the cursor did not move: a retry reads the same bytes */
        if (k < 0)
            break; /* return what we have; the error comes back on the next call */
        got += n;
        r->cur += n;
        r->target += n;
    }
    if (got > 0) {
        if (ret_info)
            *ret_info = info;
        return (ssize_t)got;
    }
    return closed ? 0 : -EAGAIN;
}

/* Under the lock: would a read now return data or EOF? The reader's target only moves in
 * outlog_reader_read, on the thread that is now calling us. */
static bool has_data_locked(struct outlog_reader *r)
{
    return atomic_load_explicit(&r->log->closed, memory_order_relaxed) ||
           selected_bytes(r->log->bytes, r->mask) > r->target;
}

ssize_t outlog_reader_next(struct outlog_reader *r, void *buf, size_t cap,
                           struct outlog_chunk_info *ret_info)
{
    struct outlog *l = r->log;

    for (;;) {
        ssize_t n = outlog_reader_read(r, buf, cap, ret_info);
        if (n != -EAGAIN)
            return n;
        (void)pthread_mutex_lock(&l->lock);
        l->n_sleepers++;
        while (!has_data_locked(r))
            (void)pthread_cond_wait(&l->data_cond, &l->lock);
        l->n_sleepers--;
        (void)pthread_mutex_unlock(&l->lock);
    }
}

int outlog_reader_wait(struct outlog_reader *r, outlog_wake_fn fn, void *userdata)
{
    struct outlog *l = r->log;
    int ret = 0;

    if (!fn)
        return -EINVAL;
    (void)pthread_mutex_lock(&l->lock);
    if (r->is_armed || r->is_queued)
        ret = -EBUSY;
    else if (has_data_locked(r))
        ret = -EAGAIN;
    else {
        r->fn = fn;
        r->userdata = userdata;
        r->want = r->target;
        r->is_armed = true;
        r->prev = NULL;
        r->next = l->armed;
        if (l->armed)
            l->armed->prev = r;
        l->armed = r;
    }
    (void)pthread_mutex_unlock(&l->lock);
    return ret;
}

/* Under the lock: takes r off the armed list or the dispatch queue. */
static bool disarm_locked(struct outlog_reader *r)
{
    struct outlog *l = r->log;

    if (r->is_armed) {
        if (r->prev)
            r->prev->next = r->next;
        else
            l->armed = r->next;
        if (r->next)
            r->next->prev = r->prev;
        r->prev = r->next = NULL;
        r->is_armed = false;
        return true;
    }
    if (r->is_queued) {
        /* Still ahead of the dispatcher: unlink it so fn is never called. */
        struct outlog_reader **pp = &l->queue_head;
        while (*pp != r)
            pp = &(*pp)->qnext;
        *pp = r->qnext;
        if (l->queue_tail == &r->qnext)
            l->queue_tail = pp;
        r->qnext = NULL;
        r->is_queued = false;
        return true;
    }
    return false;
}

bool outlog_reader_cancel_wait(struct outlog_reader *r)
{
    struct outlog *l = r->log;
    bool disarmed;

    (void)pthread_mutex_lock(&l->lock);
    disarmed = disarm_locked(r);
    /* An earlier wake-up's fn may still be running. Wait for it, then disarm again: it may
     * have re-armed (it is allowed to) after our first look. Unless we are that fn (forbidden
     * by the contract; waiting would deadlock, so we return and leave the caller its bug). */
    while (r->is_running && !pthread_equal(l->dispatcher, pthread_self())) {
        l->n_cancelling++;
        while (r->is_running)
            (void)pthread_cond_wait(&l->idle_cond, &l->lock);
        l->n_cancelling--;
        disarmed |= disarm_locked(r);
    }
    (void)pthread_mutex_unlock(&l->lock);
    return disarmed;
}
