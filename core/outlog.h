#pragma once
/* Append-only, file-backed job output (ARCHITECTURE.md "Data flow of output").
 * One writer appends framed records (stream, length, arrival time, bytes); any number of
 * readers, each with its own cursor, read stdout, stderr or both in arrival order. Memory does
 * not grow with output size. Knows nothing of gRPC.
 *
 * Offsets: a reader's offset counts the payload bytes of the streams it selected, from the
 * first byte (a stdout-only reader's offset 10 is the 11th stdout byte; an all-streams reader's
 * offset 10 is the 11th byte of either stream in arrival order). Resume = offset + bytes read.
 *
 * Open files: a log holds its file open only while it is being written (create .. close) or
 * read (while a reader exists), so a closed log nobody reads costs memory but no fd.
 *
 * Used by the job runner (the writer) and the job manager (readers, for core/server's Stream
 * calls through jm_reader_*). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum outlog_stream {
    OUTLOG_STDOUT = 1,
    OUTLOG_STDERR = 2,
};

/* Reader selection masks. */
#define OUTLOG_SELECT_STDOUT (1u << OUTLOG_STDOUT)
#define OUTLOG_SELECT_STDERR (1u << OUTLOG_STDERR)
#define OUTLOG_SELECT_ALL    (OUTLOG_SELECT_STDOUT | OUTLOG_SELECT_STDERR)

struct outlog;
struct outlog_reader;

/* Metadata of the bytes one read returned: they all come from one stream and arrived in the
 * same millisecond, so one time describes each of them. */
struct outlog_chunk_info {
    enum outlog_stream stream;
    uint64_t offset; /* offset of the first byte, in the reader's selection (see above) */
    int64_t time_ms; /* arrival time of every byte, Unix epoch ms */
};

/* Creates a new, writable log at path (O_EXCL: fails -EEXIST if it exists). cap_bytes > 0 caps
 * the payload recorded; past it output is dropped and the log marked truncated. */
int outlog_create(const char *path, uint64_t cap_bytes, struct outlog **ret);
/* Past the cap, keep the first and the last parts instead of the first only: the records after
 * the first half of the cap are dropped, oldest first, so that the newest output is always
 * there and at most about the cap is kept; readers jump over the gap (their offsets count the
 * dropped bytes, so a reader sees the gap as a jump in offset). Not truncated: nothing is lost
 * at the end. Call before the first append; no effect without a cap. */
void outlog_keep_ends(struct outlog *l);
/* Opens an existing log (after a restart): read-only, already closed for appends; a torn last
 * record (crash mid-write) is ignored. Lazy: only checks that path exists (-ENOENT); the file
 * is read on first use (a getter, outlog_reader_new or outlog_load), and only then is a
 * foreign or unreadable file noticed. Holds no fd until a reader comes. */
int outlog_open(const char *path, struct outlog **ret);
/* Reads a log from outlog_open now, if not done yet: 0, or -errno (-EBADMSG: not a log; the
 * next use tries again). Always 0 for a log from outlog_create. Thread-safe. */
int outlog_load(struct outlog *l);

/* Appends n bytes of one stream. Writer thread only (one writer). Never blocks on readers.
 * Returns 0 (also when the bytes were dropped by the cap) or -errno (e.g. -ENOSPC: the log is
 * then marked truncated and later appends are dropped; any write error does the same), -EPIPE
 * after close, -EINVAL for a bad stream. Wakes waiting readers: armed outlog_reader_wait
 * callbacks run on this thread, inside this call, with no outlog lock held. */
int outlog_append(struct outlog *l, enum outlog_stream s, const void *buf, size_t n);
/* Marks the end of output: no more appends; readers at the end get 0 (EOF). Idempotent.
 * Fires every armed wake-up (on this thread, inside this call). Does not fsync. Called by the
 * writer (never while an append runs). Closes the file unless a reader still holds it. */
void outlog_close(struct outlog *l);
/* Frees the log. Every reader must have been freed first, and no append/close may be running.
 * NULL-safe. */
void outlog_free(struct outlog *l);

/* Thread-safe getters. On a log from outlog_open the first call reads the file (see there);
 * if that fails they answer as for an empty log (0 bytes, not truncated). */
uint64_t outlog_get_bytes(struct outlog *l); /* payload bytes recorded, both streams */
/* Payload bytes recorded of the streams in select_mask (OUTLOG_SELECT_*): the end offset of a
 * reader with that selection. */
uint64_t outlog_get_selected_bytes(struct outlog *l, unsigned select_mask);
bool outlog_is_truncated(struct outlog *l);
/* Payload bytes dropped from the middle by outlog_keep_ends (0 otherwise). */
uint64_t outlog_get_dropped_bytes(struct outlog *l);
bool outlog_is_closed(struct outlog *l);

/* A cursor over the log's selected streams from offset (beyond the end: waits there).
 * The caller keeps the log alive until the reader is freed. Opens the file again if no one
 * holds it (a closed log): -EMFILE and the like, or outlog_load's errors, can come back. */
int outlog_reader_new(struct outlog *l, unsigned select_mask, uint64_t offset,
                      struct outlog_reader **ret);
/* NULL-safe; cancels a pending wait first. The last reader of a closed log closes its file. */
void outlog_reader_free(struct outlog_reader *r);

/* Non-blocking: copies up to cap bytes of the next record(s) of one stream and one arrival
 * time (ms) into buf.
 * Returns >0 bytes (info filled), 0 at the end of a closed log, -EAGAIN when nothing is there
 * yet, other -errno on I/O error. One reader is used by one thread at a time. */
ssize_t outlog_reader_read(struct outlog_reader *r, void *buf, size_t cap,
                           struct outlog_chunk_info *ret_info);
/* Blocking version of outlog_reader_read: waits (no polling) for data or close. */
ssize_t outlog_reader_next(struct outlog_reader *r, void *buf, size_t cap,
                           struct outlog_chunk_info *ret_info);

typedef void (*outlog_wake_fn)(void *userdata);
/* Arms a one-shot wake-up: fn(userdata) is called once, from the appending (or closing)
 * thread, after the next append or close that gives this reader something to read.
 * Returns 0 when armed, or -EAGAIN when data (or EOF) is already available: read now, nothing
 * was armed. This check-and-arm is atomic with appends, so no wake-up is ever lost.
 * -EBUSY if a wake-up is already armed and has not been called yet.
 * fn is called with no outlog lock held: it (or another thread, while fn still runs) may call
 * outlog_reader_read and outlog_reader_wait on this reader again. fn must not block for long:
 * it runs on the writer thread, and other readers' wake-ups wait behind it. */
int outlog_reader_wait(struct outlog_reader *r, outlog_wake_fn fn, void *userdata);
/* Disarms a pending wake-up. On return fn is not running and will not be called. Returns
 * true if it was disarmed before firing. Must not be called from inside fn. May block while
 * an fn of this reader runs on the writer thread (so it must not be called while holding a
 * lock that fn takes). Thread-safe against append/close. */
bool outlog_reader_cancel_wait(struct outlog_reader *r);

#include "cleanup.h"
DEFINE_CLEANUP(struct outlog *, outlog_free)
DEFINE_CLEANUP(struct outlog_reader *, outlog_reader_free)
