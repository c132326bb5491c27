#include "clock.h"
#include "outlog.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "outlog-internal.h"

static struct outlog *log_alloc(const char *path)
{
    struct outlog *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->fd = -1;
    l->path = strdup(path);
    l->cp_every_bytes = CP_INIT_BYTES;
    l->cp_every_records = CP_INIT_RECORDS;
    TAILQ_INIT(&l->armed);
    TAILQ_INIT(&l->queue);
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
    atomic_store(&l->gap_from, 0);
    atomic_store(&l->gap_to, 0);
    l->gap_before[0] = l->gap_before[1] = 0;
    l->dropped = 0;
    l->wpos = FILE_HDR_SIZE;
}

/* Under the lock: makes l->fd valid, opening the file again (read-only) if nobody holds it. */
int outlog_fd_get_locked(struct outlog *l)
{
    if (l->fd >= 0)
        return 0;
    l->fd = open(l->path, O_RDONLY | O_CLOEXEC);
    return l->fd < 0 ? -errno : 0;
}

/* Under the lock: closes the fd once nobody can use it: no reader, and no more writes. */
void outlog_fd_drop_locked(struct outlog *l)
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

/* A gap's markers at pos (the first one is h): 1 with the gap set up and the index carried
 * over it, 0 when they are not whole or not sane, -errno. */
static int read_gap(struct outlog *l, uint64_t pos, const struct rec_hdr *h, uint64_t size)
{
    struct rec_hdr m[3];
    ssize_t n = pread(l->fd, m, sizeof(m), (off_t)pos);
    uint64_t to;

    if (n < 0)
        return -errno;
    if (n != (ssize_t)sizeof(m) || memcmp(&m[0], h, sizeof(*h)) != 0 || !hdr_is_valid(&m[1]) ||
        !hdr_is_valid(&m[2]) || !(m[1].flags & META_GAP_OUT) || !(m[2].flags & META_GAP_ERR))
        return 0;
    to = (uint64_t)m[0].time_ms;
    if (to < pos + GAP_MARK_SIZE || to > size || (uint64_t)m[1].time_ms < l->bytes[0] ||
        (uint64_t)m[2].time_ms < l->bytes[1])
        return 0;
    l->dropped = ((uint64_t)m[1].time_ms - l->bytes[0]) + ((uint64_t)m[2].time_ms - l->bytes[1]);
    l->bytes[0] = l->gap_before[0] = (uint64_t)m[1].time_ms;
    l->bytes[1] = l->gap_before[1] = (uint64_t)m[2].time_ms;
    atomic_store(&l->gap_from, pos);
    atomic_store(&l->gap_to, to);
    /* A checkpoint where the tail resumes, so that seeks land there rather than in the gap. */
    if (l->n_cps < l->cap_cps)
        l->cps[l->n_cps++] = (struct checkpoint){.pos = to, .before = {l->bytes[0], l->bytes[1]}};
    return 1;
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
        if (h.stream == STREAM_META && (h.flags & META_GAP)) {
            int r = read_gap(l, pos, &h, size);
            if (r < 0)
                return r;
            if (r == 0)
                break; /* a torn marker: the log ends where the gap began */
            pos = atomic_load(&l->gap_to);
            continue;
        }
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
int outlog_load_locked(struct outlog *l)
{
    int r;

    if (atomic_load(&l->loaded))
        return 0;
    r = outlog_fd_get_locked(l);
    if (r < 0)
        return r;
    r = read_existing(l);
    if (r < 0)
        index_reset(l);
    else
        atomic_store(&l->loaded, true);
    outlog_fd_drop_locked(l);
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
    r = outlog_load_locked(l);
    (void)pthread_mutex_unlock(&l->lock);
    return r;
}

/* Moves the armed readers that now have something to read onto the queue. Under the lock. */
static void queue_ready(struct outlog *l)
{
    bool closed = atomic_load_explicit(&l->closed, memory_order_relaxed);
    struct outlog_reader *r, *next;

    for (r = TAILQ_FIRST(&l->armed); r; r = next) {
        next = TAILQ_NEXT(r, link);
        if (!closed && selected_bytes(l->bytes, r->mask) <= r->want)
            continue;
        TAILQ_REMOVE(&l->armed, r, link);
        r->is_armed = false;
        r->is_queued = true;
        TAILQ_INSERT_TAIL(&l->queue, r, link);
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
    while ((r = TAILQ_FIRST(&l->queue))) {
        outlog_wake_fn fn = r->fn;
        void *userdata = r->userdata;

        TAILQ_REMOVE(&l->queue, r, link);
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
    struct rec_hdr h = {.magic = REC_MAGIC,
                        .stream = stream,
                        .flags = flags,
                        .len = len,
                        .time_ms = clock_ms(CLOCK_REALTIME)};
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

void outlog_keep_ends(struct outlog *l)
{
    if (l->cap_bytes > 0)
        l->keep_ends = true;
}

/* Keeping both ends: once the payload kept is over the cap, drops the oldest records after
 * the head until it is 7/8 of the cap (so that a drop is not a syscall per append), writes the
 * gap's markers and frees the disk blocks. Writer thread only, after a publish. */
static void drop_middle(struct outlog *l)
{
    uint64_t kept, want, from, pos, end, before[2];
    struct rec_hdr h, marks[3];

    (void)pthread_mutex_lock(&l->lock);
    kept = l->bytes[0] + l->bytes[1] - l->dropped;
    from = atomic_load(&l->gap_from);
    pos = from ? atomic_load(&l->gap_to) : l->head.pos;
    before[0] = from ? l->gap_before[0] : l->head.before[0];
    before[1] = from ? l->gap_before[1] : l->head.before[1];
    end = atomic_load(&l->end);
    (void)pthread_mutex_unlock(&l->lock);
    if (kept <= l->cap_bytes || !l->head.pos)
        return;
    if (!from)
        from = l->head.pos;
    want = kept - (l->cap_bytes - l->cap_bytes / 8);
    /* Walk whole records; the gap holds at least its markers, and the newest record stays. */
    {
        uint64_t got = 0;
        while (pos + REC_HDR_SIZE <= end && (got < want || pos < from + GAP_MARK_SIZE)) {
            if (pread(l->fd, &h, sizeof(h), (off_t)pos) != (ssize_t)sizeof(h) ||
                !hdr_is_valid(&h) || pos + REC_HDR_SIZE + h.len >= end)
                break;
            if (h.stream == OUTLOG_STDOUT || h.stream == OUTLOG_STDERR) {
                before[h.stream - 1] += h.len;
                got += h.len;
            }
            pos += REC_HDR_SIZE + h.len;
        }
        if (pos < from + GAP_MARK_SIZE || got == 0)
            return;
        /* Publish first: from here readers treat [from, pos) as gone. */
        (void)pthread_mutex_lock(&l->lock);
        l->dropped += got;
        l->gap_before[0] = before[0];
        l->gap_before[1] = before[1];
        atomic_store(&l->gap_from, from);
        atomic_store(&l->gap_to, pos);
        (void)pthread_mutex_unlock(&l->lock);
    }
    for (int i = 0; i < 3; i++)
        marks[i] = (struct rec_hdr){.magic = REC_MAGIC,
                                    .stream = STREAM_META,
                                    .flags = i == 0   ? META_GAP
                                             : i == 1 ? META_GAP_OUT
                                                      : META_GAP_ERR,
                                    .time_ms = (int64_t)(i == 0 ? pos : before[i - 1])};
    if (pwrite(l->fd, marks, sizeof(marks), (off_t)from) != (ssize_t)sizeof(marks))
        return; /* a restart then finds zeros or old records there and ends the log at from */
    {
        uint64_t a = (from + GAP_MARK_SIZE + 4095) & ~(uint64_t)4095, b = pos & ~(uint64_t)4095;
        if (b > a && !l->punch_failed &&
            fallocate(l->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)a, (off_t)(b - a)) <
                0) {
            l->punch_failed = true;
            log_warn("%s: the file system cannot free the middle of a job's output (%s): it "
                     "keeps its place on disk",
                     l->path, strerror(errno));
        }
    }
}

int outlog_append(struct outlog *l, enum outlog_stream s, const void *buf, size_t n)
{
    uint32_t rec_max = REC_MAX_LEN;
    const char *p = buf;
    bool hit_cap = false;
    int r = 0;

    if (s != OUTLOG_STDOUT && s != OUTLOG_STDERR)
        return -EINVAL;
    if (atomic_load(&l->closed))
        return -EPIPE;
    if (atomic_load(&l->truncated) || n == 0)
        return 0;
    /* Keeping both ends drops whole records: records of at most a sixteenth of the cap keep
     * the tail near the cap whatever the size of the job's writes. */
    if (l->keep_ends && l->cap_bytes / 16 < rec_max)
        rec_max = l->cap_bytes / 16 > 4096 ? (uint32_t)(l->cap_bytes / 16) : 4096;
    if (l->cap_bytes > 0 && !l->keep_ends) {
        /* Only this thread changes bytes[], so reading them without the lock is exact. */
        uint64_t used = l->bytes[0] + l->bytes[1], room;
        room = used < l->cap_bytes ? l->cap_bytes - used : 0;
        if (n > room) {
            n = (size_t)room;
            hit_cap = true;
        }
    }

    while (n > 0) {
        uint32_t len = n > rec_max ? rec_max : (uint32_t)n;
        struct rec_hdr h;

        if (l->keep_ends && !l->head.pos) {
            /* The head ends at half the cap exactly: a record crossing it is split there, so
             * that a few big records cannot make the head the whole cap. */
            uint64_t total = l->bytes[0] + l->bytes[1], half = l->cap_bytes / 2;
            if (total < half && total + len > half)
                len = (uint32_t)(half - total);
        }
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
        if (l->keep_ends && !l->head.pos && l->bytes[0] + l->bytes[1] >= l->cap_bytes / 2)
            l->head = (struct checkpoint){.pos = l->wpos, .before = {l->bytes[0], l->bytes[1]}};
        (void)pthread_mutex_unlock(&l->lock);
        p += len;
        n -= len;
        if (l->keep_ends)
            drop_middle(l);
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
        outlog_fd_drop_locked(l); /* the writer is done with it; readers (if any) let it go later */
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
    (void)outlog_load_locked(l); /* a log that cannot be read counts no bytes (documented) */
    n = l->bytes[0] + l->bytes[1];
    (void)pthread_mutex_unlock(&l->lock);
    return n;
}

uint64_t outlog_get_selected_bytes(struct outlog *l, unsigned select_mask)
{
    uint64_t n = 0;
    (void)pthread_mutex_lock(&l->lock);
    (void)outlog_load_locked(l); /* as in outlog_get_bytes */
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
        (void)outlog_load_locked(l); /* as in outlog_get_bytes */
        (void)pthread_mutex_unlock(&l->lock);
    }
    return atomic_load(&l->truncated);
}

uint64_t outlog_get_dropped_bytes(struct outlog *l)
{
    uint64_t n;
    (void)pthread_mutex_lock(&l->lock);
    (void)outlog_load_locked(l); /* as in outlog_get_bytes */
    n = l->dropped;
    (void)pthread_mutex_unlock(&l->lock);
    return n;
}

bool outlog_is_closed(struct outlog *l)
{
    return atomic_load(&l->closed);
}
