/* Readers of an output log: a cursor per reader (select mask, offset, checkpoint seeks), lock-free
 * preads of published records, and one-shot wake-ups whose arming is atomic with appends. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cleanup.h"
#include "outlog-internal.h"

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
    k = outlog_load_locked(l);
    if (k == 0)
        k = outlog_fd_get_locked(l);
    if (k < 0) {
        l->n_readers--;
        outlog_fd_drop_locked(l);
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
    outlog_fd_drop_locked(l); /* the last reader of a closed log lets the file go */
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

/* Whether [a, a+len) meets the dropped middle (see "Keeping both ends"). Read after a pread:
 * a gap published before it ended may have changed what it read. */
static bool meets_gap(const struct outlog *l, uint64_t a, uint64_t len)
{
    uint64_t from = atomic_load(&l->gap_from), to = atomic_load(&l->gap_to);

    return from && a < to && a + len > from;
}

/* Moves the cursor to where the kept tail resumes, its offset with it. */
static void jump_gap(struct outlog_reader *r)
{
    struct outlog *l = r->log;
    uint64_t before[2], to;

    (void)pthread_mutex_lock(&l->lock);
    to = atomic_load(&l->gap_to);
    before[0] = l->gap_before[0];
    before[1] = l->gap_before[1];
    (void)pthread_mutex_unlock(&l->lock);
    r->pos = to;
    r->have_hdr = false;
    r->in_rec = 0;
    r->cur = selected_bytes(before, r->mask);
    if (r->target < r->cur)
        r->target = r->cur;
}

/* -ESTALE: what it read is in the gap (the caller jumps). */
static int load_hdr(struct outlog_reader *r)
{
    ssize_t n = pread(r->log->fd, &r->hdr, sizeof(r->hdr), (off_t)r->pos);
    if (n < 0)
        return -errno;
    if (meets_gap(r->log, r->pos, sizeof(r->hdr)))
        return -ESTALE;
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
    if (meets_gap(r->log, r->pos, REC_HDR_SIZE + r->in_rec + n))
        return -ESTALE; /* the record itself is in the gap */
    if (n_iov == 2 && meets_gap(r->log, at + n, REC_HDR_SIZE))
        n_iov = 1; /* the payload is whole; the next header is the gap's: load_hdr jumps */
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

        if (meets_gap(l, r->pos, 1)) {
            jump_gap(r);
            if (got > 0)
                break; /* the offset jumps: the next chunk says where it resumes */
            continue;
        }
        if (!r->have_hdr) {
            if (r->pos + REC_HDR_SIZE > end)
                break;
            k = load_hdr(r);
            if (k == -ESTALE)
                continue; /* the check at the top jumps */
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
        /* A chunk is of one stream and one time, which clients give each of its bytes
         * (--timestamps, --since). Records of one ms still merge: a fast writer writes many,
         * and its chunks stay as large as the reader asks. */
        if (got > 0 && (r->hdr.stream != info.stream || r->hdr.time_ms != info.time_ms))
            break;
        if (got == 0)
            info = (struct outlog_chunk_info){
                .stream = r->hdr.stream, .offset = r->cur, .time_ms = r->hdr.time_ms};
        n = cap - got < avail ? cap - got : avail;
        k = read_payload(r, (char *)buf + got, n, end);
        if (k == -ESTALE) {
            jump_gap(r);
            if (got > 0)
                break;
            continue;
        }
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
        TAILQ_INSERT_HEAD(&l->armed, r, link);
    }
    (void)pthread_mutex_unlock(&l->lock);
    return ret;
}

/* Under the lock: takes r off the armed list or the dispatch queue. */
static bool disarm_locked(struct outlog_reader *r)
{
    struct outlog *l = r->log;

    if (r->is_armed) {
        TAILQ_REMOVE(&l->armed, r, link);
        r->is_armed = false;
        return true;
    }
    if (r->is_queued) {
        /* Still ahead of the dispatcher: unlink it so fn is never called. */
        TAILQ_REMOVE(&l->queue, r, link);
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
