#pragma once
/* The JobManager's table: id -> job, owner, name uniqueness among the owner's running jobs,
 * the per-user running cap, authorisation, and persistence in the state directory:
 *
 *   <state>/<id>/status    the job's record, key=value text, rewritten atomically
 *                          (status.tmp, then rename over status)
 *   <state>/<id>/output    its output log (core/outlog; jobtable only names the path)
 *
 * What a record survives: every write is complete (renamed) when the call that made it
 * returns (for jobtab_entry_set_status_async, when the writer thread has written it, right
 * after), so a crash of the server (kill -9; the page cache survives) then finds the latest
 * record. No call here waits for an fsync except jobtab_sync and jobtab_free. Durability against a
 * crash of the machine is group-committed: a flusher thread fsyncs the record and its folder (and
 * the state directory for a new folder) within about flush_window_ms plus the fsyncs' own time, for
 * all records written meanwhile at once; jobtab_sync waits for it, and jobtab_free flushes
 * everything. A power loss inside that window can lose the latest record (ext4's default
 * data=ordered,auto_da_alloc keeps a rename over an existing record atomic even then; a job's first
 * record may be lost, the job then unknown).
 *
 * Knows nothing of gRPC or protobuf, and calls nothing in core/job or core/outlog: the job
 * manager (core/manager) attaches its struct job / struct outlog pointers to an entry and owns
 * them.
 * Entry lifetime: an entry is reference-counted. The table holds a reference while the entry is
 * in it; jobtab_add, jobtab_add_in, jobtab_lookup and jobtab_list hand the caller a reference
 * of its own, which it drops with jobtab_entry_put (jobtab_entry_get takes another from one
 * held); the writer's and the flusher's queues hold one while the entry is on them. An entry
 * pointer is valid exactly while its holder has a reference. jobtab_remove takes an ended entry
 * out of the table (lookups and lists no longer find it) and drops the table's reference; at
 * the last put the table's on_release runs (the owner of the attachments frees them) and the
 * entry is freed. jobtab_entry_put must not be called with the table's lock held (no callback
 * of this module runs with it). jobtab_free frees every entry still in the table whatever its
 * count: no handle may be used after it.
 * Every function is thread-safe unless noted. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "id.h"
#include "job.h"

#define JOBTAB_ID_LEN ID_LEN /* canonical UUID text */
/* <state>/lock: the file the state directory's one user holds locked (core/manager). */
#define JOBTAB_LOCK_FILE "lock"

struct jobtab;
struct jobtab_entry;

/* What a job was asked to be; immutable once the entry exists. */
struct jobtab_spec {
    char id[JOBTAB_ID_LEN + 1];
    char *owner;   /* CN of the client that started it */
    char *name;    /* "" when unnamed */
    char *command; /* absolute path */
    char **args;   /* n_args strings, without argv[0] */
    size_t n_args;
    struct limits limits; /* as applied */
    enum job_network network;
    uint64_t created_ns;  /* when jobtab_add made it (CLOCK_REALTIME); orders the jobs started
                             within one millisecond after a restart (0 in older records) */
    char *workdir;        /* the directory the command starts in; NULL or "" = "/" */
    int64_t timeout_ms;   /* > 0: the job is stopped that long after its start */
    enum job_input input; /* its stdin: none, a pipe or a terminal */
};

/* What a job is; changes over its life. */
struct jobtab_status {
    struct job_status job; /* pid is never persisted */
    uint64_t output_bytes;
    bool output_truncated;
    uint64_t output_dropped; /* dropped from the middle (keep both ends); read from the log */
};

/* Called once per removed entry, at its last jobtab_entry_put, on the thread of that put and
 * with no lock of the table held, before the entry is freed: the attachments are the caller's
 * to free (jobtab_entry_job, jobtab_entry_log still answer). Must not block for long. */
typedef void (*jobtab_release_fn)(struct jobtab_entry *e, void *userdata);

struct jobtab_config {
    const char *state_dir;         /* created (0700) if missing */
    const char *const *admin_cns;  /* NULL-terminated; these CNs see and stop every job */
    unsigned max_running_per_user; /* 0 = no cap */
    unsigned flush_window_ms;      /* how long a record waits for others to be synced with
                                      it (group commit); 0 = the default, 10 ms */
    jobtab_release_fn on_release;  /* NULL = none */
    void *userdata;                /* on_release's */
};

/* Makes an empty table over cfg->state_dir (mkdir -p). 0 or -errno. */
int jobtab_new(const struct jobtab_config *cfg, struct jobtab **ret);
/* Makes every record set before the call (jobtab_entry_set_status_async included) written and
 * durable (fsync'd with its folder), waiting for the writer and the flusher. Returns 0, or the
 * first -errno they met since the last jobtab_sync. */
int jobtab_sync(struct jobtab *t);
/* Flushes (as jobtab_sync, errors logged by the flusher), then frees the table and every entry
 * (not the attached job/outlog: the caller frees those first, e.g. with jobtab_foreach).
 * NULL-safe. Not concurrent with anything else. */
void jobtab_free(struct jobtab *t);

/* Called by jobtab_load for each loaded entry; was_running is true when the record said
 * STARTING/RUNNING and the entry has just been marked LOST (cgroup clean-up is the caller's). */
typedef void (*jobtab_loaded_fn)(struct jobtab_entry *e, bool was_running, void *userdata);
/* Loads every job folder of the state directory into the table, oldest first. A record that
 * was STARTING or RUNNING becomes LOST with the error "server restarted while the job was
 * running" and is rewritten. Folders that are not job folders, or whose record is missing or
 * unparsable, are skipped (logged at warn). Returns the number loaded or -errno. Call once,
 * on an empty table, before other threads use it. */
int jobtab_load(struct jobtab *t, jobtab_loaded_fn fn, void *userdata);

/* Calls fn(id, userdata) for every job folder jobtab_load found without a record (a spare a
 * previous server made ahead and never used; load removed the folder), then forgets them: each
 * id is handed out once, so that the caller can remove what else it made ahead under it (the
 * job's cgroup). fn runs without the table lock. Thread-safe. */
void jobtab_drain_unused(struct jobtab *t, void (*fn)(const char *id, void *userdata),
                         void *userdata);

/* Makes a fresh UUIDv4 (getrandom) in canonical lower-case form into buf[37]. 0 or -errno. */
int jobtab_new_id(char buf[JOBTAB_ID_LEN + 1]);

/* Adds a STARTING job for owner: picks a new id, checks that name ("" = none) is not used by
 * another of owner's running jobs and that owner is under the running cap, creates its folder
 * and writes its record. The spec strings are copied. 0 with *ret set, -EEXIST (name in use),
 * -EUSERS (running cap reached), -errno (I/O). */
int jobtab_add(struct jobtab *t, const char *owner, const char *name, const char *command,
               const char *const *args, size_t n_args, const struct limits *limits,
               enum job_network network, struct jobtab_entry **ret);

/* A job folder made ahead of time, off the path of a Start: a fresh id, <state>/<id>/ made and
 * the room for its first two records allocated, so that jobtab_add_in only writes and renames
 * the record. Until then the folder holds no record; jobtab_load removes such folders (a spare
 * left by a server that stopped or died) and keeps their ids for jobtab_drain_unused. */
struct jobtab_spare;
/* Makes a spare. 0 or -errno. Thread-safe. */
int jobtab_spare_new(struct jobtab *t, struct jobtab_spare **ret);
/* The spare's id: the job's, once added. */
const char *jobtab_spare_id(const struct jobtab_spare *spare);
/* "<state>/<id>/output" of the spare (the caller may make the output log ahead too, there).
 * 0 or -ENAMETOOLONG. */
int jobtab_spare_output_path(struct jobtab *t, const struct jobtab_spare *spare, char *buf,
                             size_t len);
/* Removes an unused spare's folder (and an output file made in it) and frees it. NULL-safe. */
void jobtab_spare_free(struct jobtab *t, struct jobtab_spare *spare);
/* jobtab_add in the folder of *spare (NULL or *spare NULL: one is made now). *spare is taken
 * (set to NULL) once the job is in the table, whatever happens next; on -EEXIST and -EUSERS it
 * is left to the caller, still usable. */
/* jobtab_add_in with the job described by want: owner, name, command, args, limits, network,
 * workdir, timeout_ms (its id and created_ns are ignored; the strings are copied). */
int jobtab_add_spec(struct jobtab *t, struct jobtab_spare **spare, const struct jobtab_spec *want,
                    struct jobtab_entry **ret);
int jobtab_add_in(struct jobtab *t, struct jobtab_spare **spare, const char *owner,
                  const char *name, const char *command, const char *const *args, size_t n_args,
                  const struct limits *limits, enum job_network network, struct jobtab_entry **ret);

/* The entry with that id if cn may see it (its owner, or an admin), else NULL: an unknown id
 * and another user's job look the same (the caller answers NOT_FOUND to both). */
struct jobtab_entry *jobtab_lookup(struct jobtab *t, const char *id, const char *cn);
/* true when cn is one of the configured administrator CNs. */
bool jobtab_is_admin(struct jobtab *t, const char *cn);
/* true when cn may see and stop e. */
bool jobtab_may_access(struct jobtab *t, const struct jobtab_entry *e, const char *cn);

/* The entries cn may see, oldest first, into a malloc'd array (*ret_n of them, a reference
 * each: jobtab_entries_put puts them and frees the array). 0 or -ENOMEM. */
int jobtab_list(struct jobtab *t, const char *cn, struct jobtab_entry ***ret, size_t *ret_n);
/* Puts each of the n entries of a, then frees a. NULL-safe. */
void jobtab_entries_put(struct jobtab_entry **a, size_t n);
/* Calls fn for every entry in the table, oldest first, without the table lock held (each
 * holding a reference during its call: fn may jobtab_remove it). */
void jobtab_foreach(struct jobtab *t, void (*fn)(struct jobtab_entry *e, void *userdata),
                    void *userdata);

/* Another reference to e, from one the caller holds. Returns e. */
struct jobtab_entry *jobtab_entry_get(struct jobtab_entry *e);
/* Drops a reference (see "Entry lifetime" above). NULL-safe. Not under the table's lock. */
void jobtab_entry_put(struct jobtab_entry *e);
/* Takes an ended entry out of the table: lookups, lists and foreach no longer see it, and its
 * records are no longer written. Its folder stays until jobtab_entry_trash. The caller's
 * reference stays the caller's. 0; -EBUSY (STARTING or RUNNING: nothing changed); -ENOENT
 * (already removed). Does no I/O. */
int jobtab_remove(struct jobtab *t, struct jobtab_entry *e);
/* true once jobtab_remove took e out of the table. */
bool jobtab_entry_is_removed(struct jobtab_entry *e);
/* Renames a removed entry's folder to a name jobtab_load skips, atomically (waits for a record
 * write in progress), so that a restart never finds the job again; jobtab_purge deletes it.
 * 0 (also when the folder was already gone) or -errno. Blocks on the disk: not on a request's
 * thread. */
int jobtab_entry_trash(struct jobtab_entry *e);
/* Deletes every folder jobtab_entry_trash renamed (also those of a previous server), with the
 * job's output. Returns how many, or -errno. Blocks on the disk. */
int jobtab_purge(struct jobtab *t);

/* The entry's immutable spec (valid while the caller holds a reference). */
const struct jobtab_spec *jobtab_entry_spec(const struct jobtab_entry *e);
/* A snapshot of the entry's status. */
void jobtab_entry_get_status(struct jobtab_entry *e, struct jobtab_status *ret);
/* Replaces the entry's status and rewrites its record (in place when this returns; durable
 * shortly after, see the top of this file). A state past RUNNING frees the name
 * and the owner's place under the running cap. 0 or -errno (the in-memory status is updated even
 * when the write fails). */
int jobtab_entry_set_status(struct jobtab_entry *e, const struct jobtab_status *st);
/* The same, except that the record is written by the table's writer thread right after, so
 * the caller never waits on the disk (the job runner's event thread: a job's end must not hold
 * up the others' output). Until it is written, typically well under a millisecond later, a
 * kill -9 of the server finds the previous record. Write errors are logged, and reported by
 * jobtab_sync; jobtab_free writes what is still queued. */
void jobtab_entry_set_status_async(struct jobtab_entry *e, const struct jobtab_status *st);
/* How long set_status_async holds a running state's record back: a job that ends meanwhile has
 * only its end written (a restart makes STARTING and RUNNING alike LOST; all the wait can lose
 * is the start time). An end is written at once, and jobtab_sync writes what waits. */
#define JOBTAB_RUNNING_LINGER_MS 500
/* true while state is STARTING or RUNNING. */
bool jobtab_entry_is_running(struct jobtab_entry *e);

/* The job manager's attachments: the live job (NULL for jobs loaded from disk or failed to
 * start, and until the job runs) and its output log (NULL if none could be opened). Set by the
 * manager as the job advances; read from any thread. */
void jobtab_entry_attach(struct jobtab_entry *e, struct job *j, struct outlog *log);
struct job *jobtab_entry_job(struct jobtab_entry *e);
struct outlog *jobtab_entry_log(struct jobtab_entry *e);

/* "<state>/<id>/output" into buf. 0 or -ENAMETOOLONG. */
int jobtab_entry_output_path(struct jobtab *t, const struct jobtab_entry *e, char *buf, size_t len);

/* Record format, pure (exposed for tests): serialise spec+status to a malloc'd text, and
 * parse such a text back (strings malloc'd into ret_spec; free with jobtab_spec_clear).
 * 0, -ENOMEM, -EBADMSG (malformed). */
int jobtab_record_format(const struct jobtab_spec *spec, const struct jobtab_status *st,
                         char **ret_text);
int jobtab_record_parse(const char *text, struct jobtab_spec *ret_spec,
                        struct jobtab_status *ret_st);
void jobtab_spec_clear(struct jobtab_spec *spec);
