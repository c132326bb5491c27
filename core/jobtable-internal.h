#pragma once
/* core/jobtable's private parts, shared by its four files:
 *   jobtable.c         the table: ids, lookups, authorisation, the job lifecycle, loading
 *   jobtable-spare.c    job folders made ahead (spares), and the ids of unused ones found at load
 *   jobtable-record.c  the on-disk record: text format and parser, the atomic write
 *   jobtable-flush.c   the writer thread (records handed over by set_status_async) and the
 *                      flusher thread that makes written records durable (group commit)
 * Nothing here is for other modules: core/jobtable.h is the one public header. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "jobtable.h"

#define RECORD_FILE "status"
#define RECORD_TMP  "status.tmp"
/* A second reserve, made with a spare (jobtab_spare_new): becomes RECORD_TMP when the first
 * record takes the first one, so that the Start path allocates nothing. */
#define RECORD_SPARE "status.spare"
#define OUTPUT_FILE  "output"
/* A removed job's folder is renamed to this prefix and its id (a name jobtab_load never takes
 * for a job) before its files are deleted: a restart never finds half a job. */
#define TRASH_PREFIX ".rm-"
/* The room reserved for a record is a multiple of this: a spare's two reserves are one each
 * (a new job's records are well under it), a running job's next record gets its record's
 * length and one more (jobtable-record.c). */
#define RECORD_RESERVE_MIN 4096
/* How much longer a job's later record can be than its first one (the error text escaped, the
 * end's figures): the first record leaves at least this much room for the next one. */
#define RECORD_GROWTH_MAX 1024

/* A job folder made ahead of time (jobtab_spare_new). */
struct jobtab_spare {
    char id[JOBTAB_ID_LEN + 1];
};

struct jobtab_entry {
    struct jobtab *t;
    /* The references (see core/jobtable.h "Entry lifetime"): the table's while the entry is in
     * it, each handle given out, and one per queue (writer, flusher) the entry is on. Taken
     * only from a reference already held, or under t->lock while the entry is in the table. */
    atomic_uint refs;
    bool removed;                /* under t->lock: out of the table (jobtab_remove) */
    struct jobtab_spec spec;     /* immutable after add/load */
    struct jobtab_status status; /* under t->lock */
    struct job *job;             /* under t->lock (set once) */
    struct outlog *log;          /* under t->lock (set once) */
    uint64_t seq;                /* insertion order */
    pthread_mutex_t wlock;       /* serialises record writes (one status.tmp per folder) */
    bool spare;                  /* under wlock: the folder holds RECORD_SPARE */
    bool tmp_is_prev;            /* under wlock: RECORD_TMP is the previous RECORD_FILE */
    /* The flusher's queue, under t->fl.mu: queued while the last record written is not yet
     * known durable; new_folder when the state directory's entry for the folder is not. */
    bool fl_queued, fl_new_folder;
    uint64_t fl_seq;
    struct jobtab_entry *fl_next;
    /* The writer's queue, under t->fl.mu: a status set by jobtab_entry_set_status_async whose
     * record is not written yet, due at wq_due_ms (CLOCK_MONOTONIC; 0: at once). */
    bool wq_queued;
    uint64_t wq_due_ms;
    struct jobtab_entry *wq_next;
};

/* Group commit of records written (and renamed) but not yet fsync'd. A FIFO of entries; each
 * queueing takes the next seq, and synced_seq says up to which seq every queued record is
 * durable, which is what jobtab_sync waits for. The same lock guards the writer: a second
 * thread that writes the records handed over by jobtab_entry_set_status_async, at once (no
 * window, and never behind an fsync), so that their callers never wait on the disk. */
struct jobtab_flusher {
    pthread_mutex_t mu;
    pthread_cond_t wake; /* work queued, urgent, or exiting */
    pthread_cond_t done; /* synced_seq moved */
    pthread_t thread;
    bool running;
    struct jobtab_entry *head, **tail;
    uint64_t queued_seq; /* the last seq handed out */
    uint64_t synced_seq;
    unsigned window_ms; /* how long a record may wait for others to join its batch */
    bool busy;          /* a batch is being synced */
    bool urgent;        /* someone waits in jobtab_sync: no window until the queue is empty */
    bool exiting;       /* jobtab_free: drain the queue, then end */
    int err;            /* the first error since the last jobtab_sync, or 0 */

    pthread_cond_t wwake; /* a record to write, or wexiting */
    pthread_cond_t wdone; /* a write finished */
    pthread_t wthread;
    struct jobtab_entry *whead, **wtail;
    bool wbusy;        /* a record is being written */
    bool wexiting;     /* jobtab_free: write what is queued, then end (before the flusher ends) */
    unsigned wsyncing; /* callers in jobtab_sync: every queued record is due at once */
};

struct jobtab {
    pthread_mutex_t lock;
    pthread_cond_t ended; /* an entry's status left a running state (CLOCK_MONOTONIC) */
    char *state_dir;
    char **admins;
    size_t n_admins;
    unsigned max_running;
    jobtab_release_fn on_release;
    void *userdata;
    struct jobtab_entry **entries; /* oldest first */
    size_t n, cap;
    struct jobtab_entry **index; /* open addressing on id; cap_index is a power of two */
    size_t cap_index;
    uint64_t last_created_ns; /* under lock: created_ns grows strictly, in insertion order */
    struct jobtab_flusher fl;
    /* Under lock: the ids of the folders jobtab_load found without a record, until
     * jobtab_drain_unused hands them out. */
    char (*unused)[JOBTAB_ID_LEN + 1];
    size_t n_unused;
};

static inline bool jobtab_state_is_running(enum job_state s)
{
    return s == JOB_STARTING || s == JOB_RUNNING;
}

/* The entry with that id, or NULL. Call with t->lock held. */
struct jobtab_entry *jobtab_find_locked(struct jobtab *t, const char *id);

/* "<state>/<id>" into buf. 0 or -ENAMETOOLONG. */
int jobtab_state_path(struct jobtab *t, const char *id, char *buf, size_t len);
/* Removes the folder name (open as dfd, in the state directory open as sfd) that never got a
 * record, with only the files a spare holds. 0 or -errno. */
int jobtab_remove_unused_folder(int sfd, int dfd, const char *name);
/* The same by id, best effort (an unused spare, or a job whose first record failed). */
void jobtab_remove_folder(struct jobtab *t, const char *id);
/* Keeps name, a folder without a record, for jobtab_drain_unused (takes t->lock; best effort). */
void jobtab_remember_unused(struct jobtab *t, const char *name);

/* Writes e's record with status st: status.tmp, rename over status (atomic against a crash of
 * the server: the old or the new record, never a torn one), then queues it for the flusher.
 * new_folder: the folder was just made (the flusher also syncs the state directory). Call with
 * e->wlock held, or before e is shared. 0 or -errno (nothing queued). */
int jobtab_rec_write(struct jobtab_entry *e, const struct jobtab_status *st, bool new_folder);
/* Writes e's latest status (taking e->wlock): whoever writes, writes the latest, so an older
 * status never lands last. 0 or -errno. */
int jobtab_rec_write_latest(struct jobtab_entry *e);
/* Hands e's record to the writer thread (once, however often it is called before the write). */
void jobtab_writer_queue(struct jobtab_entry *e, unsigned linger_ms);
/* Allocates size bytes to a new file name in dfd (the room for a record). 0 or -errno. */
int jobtab_rec_reserve(int dfd, const char *name, size_t size);
/* Reads the record of the job folder dfd into a malloc'd string. 0 or -errno (-EBADMSG for a
 * NUL byte, -EFBIG past 8 MiB). */
int jobtab_rec_read(int dfd, const char *name, char **ret_text);

/* Queues e's record, just renamed into place, for the flusher (new_folder: see
 * jobtab_rec_write). */
void jobtab_flusher_queue(struct jobtab_entry *e, bool new_folder);
/* Starts t's flusher and writer threads (window_ms: see struct jobtab_flusher). 0 or -errno. */
int jobtab_flusher_start(struct jobtab *t, unsigned window_ms);
/* Writes what the writer holds, makes everything durable, then ends both threads. Safe if they
 * never started. */
void jobtab_flusher_stop(struct jobtab *t);
/* Takes e off the flusher's and the writer's queues (before e is freed without its last put:
 * an entry that never got into the table, or jobtab_free). */
void jobtab_flusher_forget(struct jobtab_entry *e);
/* Makes e's last record and its exchange durable now, unless the flusher already has: before
 * the next record is written in place into the file that was status (RECORD_TMP after an
 * exchange), which the disk may still call status. 0 or -errno. */
int jobtab_flusher_settle(struct jobtab_entry *e);
/* fdatasync of dfd's record, fsync of dfd: its last rename or exchange made durable. */
int jobtab_sync_record_dir(int dfd);
