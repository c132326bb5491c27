#pragma once
/* Shared by core/outlog.c (the log: create, open, append, close, sizes) and
 * core/outlog-reader.c (readers, their cursors and wake-ups); not for other modules. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "outlog.h"

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
 * Keeping both ends (outlog_keep_ends): past the cap, the records after the first half are
 * dropped, oldest first, so that the newest output is kept; offsets do not change (a reader
 * jumps over the gap, and its offset with it). Dropping breaks "those bytes never change
 * again" for the gap only, so it goes: publish the new gap end (under the lock), then
 * overwrite or punch. A reader checks after each pread whether what it read meets the gap,
 * and if so drops it and jumps: what it read before the publish was whole, what it reads
 * after is in the gap and never used (the pattern of a seqlock, with the gap as the counter).
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
/* The gap of a log that keeps both ends (outlog_keep_ends): three marker records written over
 * the first dropped record, their time_ms fields holding where the kept tail resumes (file
 * position) and the stdout and stderr payload bytes before that point. The rest of the gap
 * is a hole (FALLOC_FL_PUNCH_HOLE) or zeros. */
#define META_GAP      0x02
#define META_GAP_OUT  0x04
#define META_GAP_ERR  0x08
#define GAP_MARK_SIZE (3 * REC_HDR_SIZE)
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

TAILQ_HEAD(outlog_readers, outlog_reader);

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
    /* The dropped middle, [gap_from, gap_to) in the file (both 0: none). gap_from is fixed
     * once set; gap_to only grows. Changed under the lock, read by readers without it. */
    _Atomic uint64_t gap_from, gap_to;
    uint64_t gap_before[2]; /* payload bytes of each stream before gap_to (under the lock) */
    uint64_t dropped;       /* payload bytes in the gap (under the lock) */
    bool keep_ends;         /* writer only, set before the first append */
    struct checkpoint head; /* writer only: where the kept head ends (pos 0: not there yet) */
    bool punch_failed;      /* writer only: the file system makes no holes (said once) */
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
    struct outlog_readers armed, queue;
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
    TAILQ_ENTRY(outlog_reader) link; /* in log->armed (is_armed) or log->queue (is_queued) */
};

static inline uint64_t selected_bytes(const uint64_t before[2], unsigned mask)
{
    return ((mask & OUTLOG_SELECT_STDOUT) ? before[0] : 0) +
           ((mask & OUTLOG_SELECT_STDERR) ? before[1] : 0);
}

static inline bool hdr_is_valid(const struct rec_hdr *h)
{
    if (h->magic != REC_MAGIC || h->len > REC_MAX_LEN)
        return false;
    if (h->stream == STREAM_META)
        return h->len == 0;
    return h->stream == OUTLOG_STDOUT || h->stream == OUTLOG_STDERR;
}

static inline bool hdr_is_selected(const struct rec_hdr *h, unsigned mask)
{
    return h->stream < 32 && (mask & (1u << h->stream));
}

/* Under the lock: makes l->fd valid, opening the file again (read-only) if nobody holds it. */
int outlog_fd_get_locked(struct outlog *l);
/* Under the lock: closes the fd once nobody can use it: no reader, and no more writes. */
void outlog_fd_drop_locked(struct outlog *l);
/* Under the lock: the first use of a log from outlog_open reads its headers (once; a failure
 * is retried on the next use). The fd it needs goes again unless a reader holds it. */
int outlog_load_locked(struct outlog *l);
