/* The job manager: the table, the runner and the output logs composed into Start, Stop,
 * status, list and output readers; the jobs made ahead of their Start; restart recovery. */
#include "manager.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "log.h"
#include "strbuf.h"

#define START_THREADS 4
#define SPARES_MAX    8
/* How long jm_shutdown waits past the grace for the jobs' ends. */
#define SHUTDOWN_EXTRA_MS 30000
/* The sweep's period bounds: a short retention is honoured within half of it, a long one is
 * checked every minute; a cap on the state's bytes is checked every second. */
#define SWEEP_MIN_MS 250
#define SWEEP_MAX_MS 60000
#define SWEEP_CAP_MS 1000

/* A job made ahead of its Start: its folder with an empty output log, and its cgroup with a
 * shim waiting in it (NULL if that could not be made: the Start then makes it). */
struct spare {
    struct jobtab_spare *spare;
    struct outlog *log;
    struct job_spare *cg;
    uid_t uid; /* the job's, taken with uid_take */
};

/* A Start between its record and its outcome. */
struct start {
    STAILQ_ENTRY(start) next;
    struct jm *m;
    struct jobtab_entry *e; /* a reference, put with the start */
    struct outlog *log;
    struct job_spare *cg; /* made ahead, or NULL; job_start takes it */
    uid_t uid;            /* the job's (uid_take), given back if it does not run */
    char **env;           /* the job's whole environment, or NULL for the default */
    unsigned short tty_rows, tty_cols;
    jm_started_fn done;
    void *userdata;
    int64_t begun_ms; /* CLOCK_MONOTONIC when jm_start_async took it */
};

/* Upper bounds (ms) of the Start latency histogram's buckets; +Inf follows. */
static const unsigned start_buckets_ms[] = {5, 10, 25, 50, 100, 250, 500, 1000, 2500};
#define START_BUCKETS ELEMENTSOF(start_buckets_ms)

struct jm {
    struct jm_config cfg;
    struct job_runner *runner;
    struct jobtab *table;

    pthread_mutex_t mu; /* guards the fields below */
    pthread_cond_t cond, idle, changed;
    STAILQ_HEAD(, start) queue;
    bool refusing; /* Starts not yet begun fail with -ESHUTDOWN */
    bool exiting;  /* the start threads return */
    unsigned busy; /* Starts a start thread is running */
    pthread_t threads[START_THREADS];
    unsigned n_threads;
    struct spare spares[SPARES_MAX];
    unsigned n_spares;
    bool making_spares; /* a thread is topping the spares up */
    unsigned stopping;  /* jobs jm_shutdown waits for */
    unsigned readers;   /* open jm_readers */
    /* The sweep thread: jobs jm_remove took out of the table (a reference each) whose folders
     * it renames away, then deletes; retention and the cap on the state's bytes. */
    pthread_t sweeper;
    bool sweeper_started;
    bool sweep_exiting;
    pthread_cond_t sweep_wake;
    struct jobtab_entry **removed;
    size_t n_removed, cap_removed;
    uint64_t removals;  /* jobs removed, for the metrics */
    int lock_fd;        /* <state>/lock, flock'ed for the manager's life */
    int lock_dir_fd;    /* <state> itself, flock'ed too: the file can be removed, it cannot */
    uint8_t *uids_used; /* a bit per uid of uid_first..uid_last held by a job or a spare */
    uint64_t uid_next;  /* where uid_take looks first */
    /* For jm_write_metrics: */
    uint64_t starts, start_failures;
    uint64_t start_hist[START_BUCKETS + 1]; /* per bucket, not cumulative; [last] = +Inf */
    int64_t start_sum_ms;
};

struct jm_reader {
    struct jm *m;
    struct jobtab_entry *e; /* a reference, put with the reader */
    struct outlog *log;
    struct outlog_reader *rd;
};

static struct jobtab_entry *entry_of(struct jm_job *j)
{
    return (struct jobtab_entry *)j;
}

static struct jm_job *job_of(struct jobtab_entry *e)
{
    return (struct jm_job *)e;
}

/* ---- the state directory's lock -------------------------------------------------------- */

/* One manager per state directory: a second would take the first one's spares for its own
 * leftovers and remove them. flock (not a pid file's word) so that a dead holder's lock goes
 * with it, on the directory (which cannot be removed from under its holder as a file can) and
 * on the lock file (which older servers lock, and which keeps the holder's pid for the
 * message). */
static int lock_state_dir(struct jm *m, char *errbuf, size_t errlen)
{
    char path[PATH_MAX], pid[24] = "";
    int fd, r;

    if (snprintf(path, sizeof(path), "%s/" JOBTAB_LOCK_FILE, m->cfg.state_dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    m->lock_dir_fd = open(m->cfg.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (m->lock_dir_fd < 0) {
        r = -errno;
        (void)snprintf(errbuf, errlen, "open the state directory '%s'", m->cfg.state_dir);
        return r;
    }
    r = flock(m->lock_dir_fd, LOCK_EX | LOCK_NB) < 0 ? -errno : 0;
    /* Held: the file is only read, for the holder's pid (it may have been removed). */
    fd = open(path, (r == 0 ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
              0600);
    if (r == 0 && fd < 0) {
        r = -errno;
        (void)snprintf(errbuf, errlen, "open the state directory's lock file '%s'", path);
        return r;
    }
    if (r == 0 && flock(fd, LOCK_EX | LOCK_NB) < 0)
        r = -errno;
    if (r < 0) {
        ssize_t n = fd >= 0 ? pread(fd, pid, sizeof(pid) - 1, 0) : -1;
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (fd >= 0)
            (void)close(fd);
        if (r == -EWOULDBLOCK) {
            (void)snprintf(errbuf, errlen,
                           "use the state directory '%s': it is locked by pid %s (another runjob "
                           "serve)",
                           m->cfg.state_dir, pid[0] ? pid : "?");
            return -EBUSY;
        }
        (void)snprintf(errbuf, errlen, "lock the state directory '%s'", m->cfg.state_dir);
        return r;
    }
    (void)snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, strlen(pid), 0) < 0)
        log_debug("state: writing our pid into %s: %s (ignored)", path, strerror(errno));
    m->lock_fd = fd;
    return 0;
}

/* ---- restart recovery ------------------------------------------------------------------- */

/* A job a previous server made ahead and never started (its folder removed at load): its
 * cgroup may be there too. */
static void remove_unused_cgroup(const char *id, void *userdata)
{
    struct jm *m = userdata;
    int r = job_runner_cleanup_stale(m->runner, id);

    if (r < 0)
        log_warn("job folder %s: removing the cgroup a previous server made ahead: %s, ignoring",
                 id, strerror(-r));
}

static void on_loaded(struct jobtab_entry *e, bool was_running, void *userdata)
{
    struct jm *m = userdata;
    const struct jobtab_spec *spec = jobtab_entry_spec(e);
    struct outlog *log = NULL;
    char path[PATH_MAX];
    int r;

    if (was_running) {
        r = job_runner_cleanup_stale(m->runner, spec->id);
        if (r < 0)
            log_warn("job %s: removing the cgroup a previous server left: %s, ignoring", spec->id,
                     strerror(-r));
    }
    r = jobtab_entry_output_path(m->table, e, path, sizeof(path));
    if (r == 0)
        r = outlog_open(path, &log);
    if (r < 0)
        log_warn("job %s: its output log is unreadable (%s), ignoring", spec->id, strerror(-r));
    else
        jobtab_entry_attach(e, NULL, log);
}

/* A job folder of that id in the state directory: its cgroup is this server's to keep (a job
 * loaded, or one made ahead). */
static bool has_folder(const char *id, void *userdata)
{
    struct jm *m = userdata;
    char path[PATH_MAX];
    struct stat st;

    if (snprintf(path, sizeof(path), "%s/%s", m->cfg.state_dir, id) >= (int)sizeof(path))
        return true;
    return stat(path, &st) == 0 || errno != ENOENT;
}

/* ---- job uids ---------------------------------------------------------------------------- */

/* A uid for a job: the configured one, or the next free one of the range. 0 or -EAGAIN (every
 * uid of the range is held). */
static int uid_take(struct jm *m, uid_t *ret)
{
    uint64_t n = (uint64_t)m->cfg.uid_last - m->cfg.uid_first + 1;
    int r = -EAGAIN;

    if (!m->uids_used) {
        *ret = m->cfg.job_uid;
        return 0;
    }
    (void)pthread_mutex_lock(&m->mu);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = m->uid_next++ % n;
        if (!(m->uids_used[k / 8] & (1u << (k % 8)))) {
            m->uids_used[k / 8] |= (uint8_t)(1u << (k % 8));
            *ret = (uid_t)(m->cfg.uid_first + k);
            r = 0;
            break;
        }
    }
    (void)pthread_mutex_unlock(&m->mu);
    return r;
}

static void uid_give_back(struct jm *m, uid_t u)
{
    uint64_t k = (uint64_t)u - m->cfg.uid_first;

    if (!m->uids_used || u < m->cfg.uid_first || u > m->cfg.uid_last)
        return;
    (void)pthread_mutex_lock(&m->mu);
    m->uids_used[k / 8] &= (uint8_t) ~(1u << (k % 8));
    (void)pthread_mutex_unlock(&m->mu);
}

static gid_t gid_of(struct jm *m, uid_t u)
{
    return m->uids_used ? (gid_t)u : m->cfg.job_gid;
}

/* ---- jobs made ahead -------------------------------------------------------------------- */

static void spare_free(struct jm *m, struct spare *a)
{
    /* The cgroup before the folder: a cgroup made ahead is found at a restart through its
     * folder (jobtab_drain_unused), so it must never outlive it. */
    job_spare_free(a->cg);
    outlog_free(a->log); /* closes the file; jobtab_spare_free removes it */
    jobtab_spare_free(m->table, a->spare);
    if (a->spare)
        uid_give_back(m, a->uid);
    *a = (struct spare){0};
}

static int spare_make(struct jm *m, struct spare *ret)
{
    struct spare a = {0};
    char path[PATH_MAX];
    int r;

    r = uid_take(m, &a.uid);
    if (r < 0)
        return r;
    r = jobtab_spare_new(m->table, &a.spare);
    if (r < 0)
        uid_give_back(m, a.uid);
    if (r == 0)
        r = jobtab_spare_output_path(m->table, a.spare, path, sizeof(path));
    if (r == 0)
        r = outlog_create(path, m->cfg.max_output_bytes, &a.log);
    if (r == 0 && !m->cfg.keep_output_head)
        outlog_keep_ends(a.log);
    if (r < 0) {
        spare_free(m, &a);
        return r;
    }
    /* After the folder (see spare_free), with the limits a Start without its own will have. */
    r = job_spare_new(m->runner,
                      &(struct job_spare_spec){.id = jobtab_spare_id(a.spare),
                                               .uid = a.uid,
                                               .gid = gid_of(m, a.uid),
                                               .limits = m->cfg.default_limits},
                      &a.cg);
    if (r < 0)
        log_debug("job %s: making its cgroup ahead: %s", jobtab_spare_id(a.spare), strerror(-r));
    *ret = a;
    return 0;
}

/* Tops the jobs made ahead up (a thread at a time; the others return at once). */
static void spare_fill(struct jm *m)
{
    (void)pthread_mutex_lock(&m->mu);
    if (m->making_spares) {
        (void)pthread_mutex_unlock(&m->mu);
        return;
    }
    m->making_spares = true;
    while (m->n_spares < m->cfg.spares && !m->refusing) {
        struct spare a;
        int r;

        (void)pthread_mutex_unlock(&m->mu);
        r = spare_make(m, &a);
        (void)pthread_mutex_lock(&m->mu);
        if (r < 0) {
            /* A Start then makes its folder itself, and reports what fails there. */
            log_debug("making a job folder ahead: %s", strerror(-r));
            break;
        }
        m->spares[m->n_spares++] = a;
    }
    m->making_spares = false;
    (void)pthread_mutex_unlock(&m->mu);
}

/* A job made ahead, or one with nothing in it when none is left. */
static struct spare spare_take(struct jm *m)
{
    struct spare a = {0};

    (void)pthread_mutex_lock(&m->mu);
    if (m->n_spares > 0)
        a = m->spares[--m->n_spares];
    (void)pthread_mutex_unlock(&m->mu);
    return a;
}

/* One a Start did not use (its name was taken, the owner at the cap) goes back. */
static void spare_put_back(struct jm *m, struct spare *a)
{
    if (!a->spare)
        return;
    (void)pthread_mutex_lock(&m->mu);
    if (m->n_spares < m->cfg.spares && !m->refusing) {
        m->spares[m->n_spares++] = *a;
        *a = (struct spare){0};
    }
    (void)pthread_mutex_unlock(&m->mu);
    if (a->spare)
        spare_free(m, a);
}

static void spare_free_all(struct jm *m)
{
    struct spare all[SPARES_MAX];
    unsigned n;

    /* Freed outside the lock: a spare gives its uid back under it. */
    (void)pthread_mutex_lock(&m->mu);
    n = m->n_spares;
    memcpy(all, m->spares, n * sizeof(all[0]));
    m->n_spares = 0;
    (void)pthread_mutex_unlock(&m->mu);
    while (n > 0)
        spare_free(m, &all[--n]);
}

/* ---- Start ------------------------------------------------------------------------------ */

/* What a running job's end needs to know: job_start's userdata, freed at the end. */
struct running {
    struct jm *m;
    struct jobtab_entry *e;
    uid_t uid;
};

/* Event thread, once per job, after its final status is set and its log closed. The record
 * is written by the table's writer thread (a job's end does not hold up the other jobs' output
 * on the disk; write errors are logged there). */
static void on_job_end(struct job *j, void *userdata)
{
    struct running *run = userdata;
    struct jobtab_entry *e = run->e;
    struct jm *m = run->m;
    struct outlog *log = jobtab_entry_log(e);
    struct jobtab_status st = {0};

    job_get_status(j, &st.job);
    if (log) {
        st.output_bytes = outlog_get_bytes(log);
        st.output_truncated = outlog_is_truncated(log);
    }
    jobtab_entry_set_status_async(e, &st);
    /* Every process of the job is gone (its cgroup killed), its private directories with its
     * mount namespace: the uid may serve another job, after the rest of the range. */
    uid_give_back(m, run->uid);
    free(run);
    if (m->cfg.on_end)
        m->cfg.on_end(job_of(e), m->cfg.userdata);
    jobtab_entry_put(e); /* the running job's: from here it may be removed */
}

static void started_init(struct jm_started *st, struct jobtab_entry *e)
{
    *st = (struct jm_started){0};
    if (e) {
        const struct jobtab_spec *spec = jobtab_entry_spec(e);
        st->recorded = true;
        (void)snprintf(st->id, sizeof(st->id), "%s", spec->id);
        st->name = spec->name;
    } else {
        st->name = "";
    }
}

/* The job is recorded FAILED_TO_START with why, its log closed, and done told. */
static void strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* Frees a Start, with its reference to the job. */
static void start_free(struct start *s)
{
    if (s) {
        strv_free(s->env);
        jobtab_entry_put(s->e);
    }
    free(s);
}

/* The job's environment: job_default_env, then rq's, a later entry of a key replacing the
 * earlier one in its place. 0 with *ret (NULL when rq names none: the default as it is), or
 * -ENOMEM. */
static int build_env(const struct jm_start_request *rq, char ***ret)
{
    size_t n_def = 0, n = 0;
    char **v;

    *ret = NULL;
    if (!rq->n_env)
        return 0;
    while (job_default_env[n_def])
        n_def++;
    v = calloc(n_def + rq->n_env + 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n_def + rq->n_env; i++) {
        const char *kv = i < n_def ? job_default_env[i] : rq->env[i - n_def];
        size_t klen = strcspn(kv, "="), k;
        char *dup = strdup(kv);

        if (!dup) {
            strv_free(v);
            return -ENOMEM;
        }
        for (k = 0; k < n; k++)
            if (strncmp(v[k], kv, klen) == 0 && v[k][klen] == '=')
                break;
        if (k < n)
            free(v[k]);
        else
            n++;
        v[k] = dup;
    }
    *ret = v;
    return 0;
}

static void start_failed(struct start *s, int err, const char *why)
{
    struct jobtab_status st = {0};
    struct jm_started out;

    job_spare_free(TAKE_PTR(s->cg)); /* made ahead, and no job_start took it */
    uid_give_back(s->m, s->uid);
    jobtab_entry_get_status(s->e, &st);
    st.job.state = JOB_FAILED_TO_START;
    st.job.end_ms = st.job.start_ms;
    (void)snprintf(st.job.error, sizeof(st.job.error), "%s", why);
    (void)jobtab_entry_set_status(s->e, &st);
    /* The record first, then the close: a reader that sees the end finds FAILED_TO_START. */
    if (s->log)
        outlog_close(s->log);
    started_init(&out, s->e);
    out.err = err;
    (void)snprintf(out.reason, sizeof(out.reason), "%s", why);
    s->done(&out, s->userdata);
}

static void count_start(struct jm *m, int64_t begun_ms, int r)
{
    int64_t ms = clock_ms(CLOCK_MONOTONIC) - begun_ms;
    size_t b = 0;

    while (b < START_BUCKETS && ms > (int64_t)start_buckets_ms[b])
        b++;
    (void)pthread_mutex_lock(&m->mu);
    if (r < 0) {
        m->start_failures++;
    } else {
        m->starts++;
        m->start_hist[b]++;
        m->start_sum_ms += ms;
    }
    (void)pthread_mutex_unlock(&m->mu);
}

static void run_start(struct start *s)
{
    struct jm *m = s->m;
    struct jobtab_entry *e = s->e;
    const struct jobtab_spec *spec = jobtab_entry_spec(e);
    struct job_spec js = {0};
    struct jobtab_status st = {0};
    struct jm_started out;
    struct running *run = malloc(sizeof(*run));
    struct job *j = NULL;
    char errbuf[256] = "";
    int r;

    if (!run) {
        start_failed(s, -ENOMEM, "the server is out of memory");
        return;
    }
    /* A reference of the running job's own: the Start's (s->e) goes at the end of this
     * function, which may come after the job's end. */
    *run = (struct running){m, jobtab_entry_get(e), s->uid};
    js.id = spec->id;
    js.path = spec->command;
    js.args = (const char *const *)spec->args;
    js.n_args = spec->n_args;
    js.limits = spec->limits;
    js.network = spec->network;
    js.env = (const char *const *)s->env;
    js.cwd = spec->workdir && spec->workdir[0] ? spec->workdir : NULL;
    js.timeout_ms = spec->timeout_ms;
    js.input = spec->input;
    js.tty_rows = s->tty_rows;
    js.tty_cols = s->tty_cols;
    js.timeout_signal = m->cfg.stop_signal;
    js.timeout_grace_ms = m->cfg.stop_grace_ms;
    js.uid = s->uid;
    js.gid = gid_of(m, s->uid);
    js.log = s->log;
    js.spare = TAKE_PTR(s->cg); /* job_start's now, whatever it returns */
    r = job_start(m->runner, &js, on_job_end, run, &j, errbuf, sizeof(errbuf));
    count_start(m, s->begun_ms, r);
    if (r < 0) {
        jobtab_entry_put(run->e);
        free(run);
        start_failed(s, r, errbuf[0] ? errbuf : strerror(-r));
        return;
    }
    jobtab_entry_attach(e, j, s->log);
    jobtab_entry_get_status(e, &st);
    job_get_state(j, &st.job); /* a job just started has used nothing yet: no cgroup reads */
    started_init(&out, e);
    s->done(&out, s->userdata);
    /* RUNNING is written by the table's writer thread, woken only once the caller has its
     * answer: a restart treats a STARTING record exactly like a RUNNING one (both become
     * LOST), and until then every reader of the entry sees the attached job's own status. */
    jobtab_entry_set_status_async(e, &st);
}

static void *start_thread(void *arg)
{
    struct jm *m = arg;

    (void)pthread_mutex_lock(&m->mu);
    for (;;) {
        struct start *s;
        bool refuse;

        while (STAILQ_EMPTY(&m->queue) && !m->exiting)
            (void)pthread_cond_wait(&m->cond, &m->mu);
        s = STAILQ_FIRST(&m->queue);
        if (!s)
            break;
        STAILQ_REMOVE_HEAD(&m->queue, next);
        refuse = m->refusing;
        m->busy++;
        (void)pthread_mutex_unlock(&m->mu);
        if (refuse)
            start_failed(s, -ESHUTDOWN, "the server is shutting down");
        else
            run_start(s);
        start_free(s);
        spare_fill(m); /* after the answer: the next Start's folder */
        (void)pthread_mutex_lock(&m->mu);
        m->busy--;
        if (STAILQ_EMPTY(&m->queue) && m->busy == 0)
            (void)pthread_cond_broadcast(&m->idle);
    }
    (void)pthread_mutex_unlock(&m->mu);
    return NULL;
}

static void fail_unrecorded(const struct jm_start_request *rq, int err, const char *why,
                            jm_started_fn done, void *userdata)
{
    struct jm_started out;

    started_init(&out, NULL);
    out.name = rq->name ? rq->name : "";
    out.err = err;
    (void)snprintf(out.reason, sizeof(out.reason), "%s", why);
    done(&out, userdata);
}

/* -ENOSPC with why when the state's file system has less free than its reserve: a job there
 * would find no room for its output (nor its records). A file system that cannot tell passes. */
static int check_state_room(struct jm *m, char *why, size_t len)
{
    struct statvfs sv;
    uint64_t free_b, reserve, pct;

    if (statvfs(m->cfg.state_dir, &sv) < 0)
        return 0;
    free_b = (uint64_t)sv.f_bavail * sv.f_frsize;
    pct = (uint64_t)sv.f_blocks * sv.f_frsize / 100;
    reserve = m->cfg.state_reserve_bytes ? m->cfg.state_reserve_bytes : JM_STATE_RESERVE_DEFAULT;
    if (pct > reserve)
        reserve = pct;
    if (free_b >= reserve)
        return 0;
    (void)snprintf(why, len,
                   "the server's state file system has %llu MiB free, below its reserve of %llu "
                   "MiB (the larger of 1%% and %llu MiB); remove ended jobs (runjob rm) to make "
                   "room",
                   (unsigned long long)(free_b >> 20), (unsigned long long)(reserve >> 20),
                   (unsigned long long)((m->cfg.state_reserve_bytes ? m->cfg.state_reserve_bytes
                                                                    : JM_STATE_RESERVE_DEFAULT) >>
                                        20));
    return -ENOSPC;
}

static void job_info(struct jobtab_entry *e, struct jm_info *ret, bool with_usage);

struct owner_output {
    const char *owner;
    uint64_t bytes;
};

static void add_owner_output(struct jobtab_entry *e, void *userdata)
{
    struct owner_output *oo = userdata;
    struct jm_info info;

    job_info(e, &info, false);
    if (strcmp(info.spec->owner, oo->owner) == 0)
        oo->bytes += info.status.output_bytes - info.status.output_dropped;
}

/* -EDQUOT with why when owner's jobs already keep max_user_output_bytes of output on the
 * server (what their logs hold: a gap of keep-both-ends takes no room). */
static int check_user_quota(struct jm *m, const char *owner, char *why, size_t len)
{
    struct owner_output oo = {.owner = owner};

    if (!m->cfg.max_user_output_bytes)
        return 0;
    jobtab_foreach(m->table, add_owner_output, &oo);
    if (oo.bytes < m->cfg.max_user_output_bytes)
        return 0;
    (void)snprintf(why, len,
                   "your jobs keep %llu %s of output on this server, its per-user quota is %llu "
                   "%s: remove ended jobs (runjob rm) to start more",
                   (unsigned long long)(oo.bytes >> (oo.bytes >= (1u << 20) ? 20 : 10)),
                   oo.bytes >= (1u << 20) ? "MiB" : "KiB",
                   (unsigned long long)(m->cfg.max_user_output_bytes >>
                                        (m->cfg.max_user_output_bytes >= (1u << 20) ? 20 : 10)),
                   m->cfg.max_user_output_bytes >= (1u << 20) ? "MiB" : "KiB");
    return -EDQUOT;
}

void jm_start_async(struct jm *m, const struct jm_start_request *rq, jm_started_fn done,
                    void *userdata)
{
    int64_t begun_ms = clock_ms(CLOCK_MONOTONIC);
    char **env = NULL;
    struct spare a;
    struct start *s;
    struct jobtab_entry *e = NULL;
    char path[PATH_MAX], why[256];
    int r;

    if (check_state_room(m, why, sizeof(why)) < 0) {
        fail_unrecorded(rq, -ENOSPC, why, done, userdata);
        return;
    }
    if (check_user_quota(m, rq->owner, why, sizeof(why)) < 0) {
        fail_unrecorded(rq, -EDQUOT, why, done, userdata);
        return;
    }
    if (build_env(rq, &env) < 0) {
        fail_unrecorded(rq, -ENOMEM, "the server is out of memory", done, userdata);
        return;
    }
    a = spare_take(m);
    s = calloc(1, sizeof(*s));
    if (!s) {
        strv_free(env);
        spare_put_back(m, &a);
        fail_unrecorded(rq, -ENOMEM, "the server is out of memory", done, userdata);
        return;
    }
    if (!a.spare && uid_take(m, &a.uid) < 0) { /* no spare, with its uid, was left */
        strv_free(env);
        start_free(s);
        fail_unrecorded(rq, -EAGAIN, "every job uid of the server's range is in use", done,
                        userdata);
        return;
    }
    s->m = m;
    s->env = TAKE_PTR(env);
    s->tty_rows = rq->tty_rows;
    s->tty_cols = rq->tty_cols;
    {
        struct jobtab_spec want = {
            .owner = (char *)rq->owner,
            .name = (char *)(rq->name ? rq->name : ""),
            .command = (char *)rq->command,
            .args = (char **)rq->args,
            .n_args = rq->n_args,
            .limits = rq->limits,
            .network = rq->network,
            .workdir = (char *)rq->workdir,
            .timeout_ms = rq->timeout_ms,
            .input = rq->input,
        };
        r = jobtab_add_spec(m->table, &a.spare, &want, &e);
    }
    if (r < 0 && !a.spare)
        uid_give_back(m, a.uid); /* a spare still held gives its own back with it */
    if (r == -EEXIST || r == -EUSERS) {
        spare_put_back(m, &a);
    } else if (r < 0) { /* its folder went with the failed job */
        job_spare_free(TAKE_PTR(a.cg));
        outlog_free(TAKE_PTR(a.log));
        if (a.spare)
            uid_give_back(m, a.uid);
    }
    if (r < 0) {
        start_free(s);
        if (r != -EEXIST && r != -EUSERS)
            log_errno(r, "Start: recording a new job");
        fail_unrecorded(rq, r,
                        r == -EEXIST   ? "the owner has a running job of that name"
                        : r == -EUSERS ? "the owner has the most running jobs allowed"
                                       : "the server could not record the job",
                        done, userdata);
        return;
    }
    s->e = e;
    s->uid = a.uid;
    s->begun_ms = begun_ms;
    s->done = done;
    s->userdata = userdata;
    s->cg = TAKE_PTR(a.cg);
    if (a.log) {
        s->log = TAKE_PTR(a.log);
    } else {
        r = jobtab_entry_output_path(m->table, e, path, sizeof(path));
        if (r == 0)
            r = outlog_create(path, m->cfg.max_output_bytes, &s->log);
        if (r == 0 && !m->cfg.keep_output_head)
            outlog_keep_ends(s->log);
        if (r == -ENOSPC || r == -EDQUOT) {
            start_failed(s, -ENOSPC, "the server's disk is full");
            start_free(s);
            return;
        }
        if (r < 0) {
            log_errno(r, "job %s: creating its output log", jobtab_entry_spec(e)->id);
            start_failed(s, -EIO, "the server could not create the job's output log");
            start_free(s);
            return;
        }
    }
    /* Readers may open from now on (the job follows once it runs). */
    jobtab_entry_attach(e, NULL, s->log);

    (void)pthread_mutex_lock(&m->mu);
    STAILQ_INSERT_TAIL(&m->queue, s, next);
    (void)pthread_cond_signal(&m->cond);
    (void)pthread_mutex_unlock(&m->mu);
}

struct start_wait {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;
    struct jm_started *st;
};

static void start_waited(const struct jm_started *st, void *userdata)
{
    struct start_wait *w = userdata;

    (void)pthread_mutex_lock(&w->mu);
    *w->st = *st;
    w->done = true;
    (void)pthread_cond_signal(&w->cond);
    (void)pthread_mutex_unlock(&w->mu);
}

int jm_start(struct jm *m, const struct jm_start_request *rq, struct jm_started *st)
{
    struct start_wait w = {
        .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .st = st};

    jm_start_async(m, rq, start_waited, &w);
    (void)pthread_mutex_lock(&w.mu);
    while (!w.done)
        (void)pthread_cond_wait(&w.cond, &w.mu);
    (void)pthread_mutex_unlock(&w.mu);
    (void)pthread_cond_destroy(&w.cond);
    (void)pthread_mutex_destroy(&w.mu);
    return st->err;
}

/* ---- Stop ------------------------------------------------------------------------------- */

struct stop {
    jm_stopped_fn done;
    void *userdata;
};

static void on_stopped(struct job *j, void *userdata)
{
    struct stop *st = userdata;

    (void)j;
    st->done(st->userdata);
    free(st);
}

int jm_stop(struct jm *m, const char *id, const char *caller, int sig, int64_t grace_ms,
            jm_stopped_fn done, void *userdata)
{
    struct jobtab_entry *e = jobtab_lookup(m->table, id, caller);
    struct stop *st;
    struct job *j;
    int r;

    if (!e)
        return -ENOENT;
    if (!jobtab_entry_is_running(e)) {
        jobtab_entry_put(e);
        done(userdata); /* already ended */
        return 0;
    }
    /* The job runs: it cannot be removed, and its runner keeps j until its end. */
    j = jobtab_entry_job(e);
    st = j ? malloc(sizeof(*st)) : NULL;
    if (!st) {
        jobtab_entry_put(e);
        return j ? -ENOMEM : -EAGAIN;
    }
    *st = (struct stop){done, userdata};
    r = job_stop_async(j, sig, grace_ms, on_stopped, st);
    if (r < 0) {
        free(st);
        log_errno(r, "job %s: stop", id);
    }
    jobtab_entry_put(e);
    return r;
}

/* ---- status and list -------------------------------------------------------------------- */

const struct jm_config *jm_get_config(struct jm *m)
{
    return &m->cfg;
}

bool jm_is_admin(struct jm *m, const char *caller)
{
    return jobtab_is_admin(m->table, caller);
}

struct jm_job *jm_lookup(struct jm *m, const char *id, const char *caller)
{
    return job_of(jobtab_lookup(m->table, id, caller));
}

int jm_list(struct jm *m, const char *caller, struct jm_job ***ret, size_t *ret_n)
{
    struct jobtab_entry **entries = NULL;
    int r = jobtab_list(m->table, caller, &entries, ret_n);

    *ret = (struct jm_job **)entries;
    return r;
}

void jm_job_put(struct jm_job *j)
{
    jobtab_entry_put(entry_of(j));
}

void jm_jobs_put(struct jm_job **jobs, size_t n)
{
    jobtab_entries_put((struct jobtab_entry **)jobs, n);
}

/* ---- removal ---------------------------------------------------------------------------- */

static void job_info(struct jobtab_entry *e, struct jm_info *ret, bool with_usage);

/* The last reference to a removed job: its log and its job go with it (no reader is left: each
 * holds a reference). On whichever thread put it last, with no lock held. */
static void on_release(struct jobtab_entry *e, void *userdata)
{
    struct job *j = jobtab_entry_job(e);
    struct outlog *log = jobtab_entry_log(e);

    (void)userdata;
    jobtab_entry_attach(e, NULL, NULL);
    job_free(j); /* ended: the runner keeps its own reference while it still needs it */
    outlog_free(log);
}

/* Takes e (a reference the caller holds) out of the table and hands it to the sweep thread,
 * which renames its folder away. 0, -EBUSY, -ENOENT (jobtab_remove), -ENOMEM. */
static int remove_entry(struct jm *m, struct jobtab_entry *e)
{
    int r;

    (void)pthread_mutex_lock(&m->mu);
    /* Room first: once out of the table, the entry must reach the sweep thread. */
    if (m->n_removed == m->cap_removed) {
        size_t cap = m->cap_removed ? m->cap_removed * 2 : 16;
        struct jobtab_entry **a = realloc(m->removed, cap * sizeof(*a));
        if (!a) {
            (void)pthread_mutex_unlock(&m->mu);
            return -ENOMEM;
        }
        m->removed = a;
        m->cap_removed = cap;
    }
    r = jobtab_remove(m->table, e);
    if (r == 0) {
        m->removed[m->n_removed++] = jobtab_entry_get(e);
        m->removals++;
        (void)pthread_cond_signal(&m->sweep_wake);
    }
    (void)pthread_mutex_unlock(&m->mu);
    return r;
}

int jm_remove(struct jm *m, const char *id, const char *caller)
{
    struct jobtab_entry *e = jobtab_lookup(m->table, id, caller);
    int r;

    if (!e)
        return -ENOENT;
    r = remove_entry(m, e);
    jobtab_entry_put(e);
    return r;
}

/* One ended job as the sweep weighs it. */
struct sweep_item {
    struct jobtab_entry *e; /* a reference */
    int64_t end_ms;
    uint64_t bytes;
};

struct sweep {
    struct jm *m;
    int64_t now_ms;
    struct sweep_item *ended; /* the ended jobs kept, for the cap */
    size_t n, cap;
    uint64_t total; /* every job's output bytes, running ones too */
    bool failed;
};

static void sweep_one(struct jobtab_entry *e, void *userdata)
{
    struct sweep *sw = userdata;
    struct jm *m = sw->m;
    struct jm_info info;

    uint64_t kept;

    job_info(e, &info, false);
    /* What its log holds: the middle dropped by keep-both-ends takes no room. */
    kept = info.status.output_bytes - info.status.output_dropped;
    sw->total += kept;
    if (info.is_running)
        return;
    if (m->cfg.retain_ended_ms > 0 && info.status.job.end_ms > 0 &&
        info.status.job.end_ms + m->cfg.retain_ended_ms <= sw->now_ms) {
        if (remove_entry(m, e) == 0)
            sw->total -= kept;
        return;
    }
    if (!m->cfg.max_state_bytes)
        return;
    if (sw->n == sw->cap) {
        size_t cap = sw->cap ? sw->cap * 2 : 64;
        struct sweep_item *a = realloc(sw->ended, cap * sizeof(*a));
        if (!a) {
            sw->failed = true;
            return;
        }
        sw->ended = a;
        sw->cap = cap;
    }
    sw->ended[sw->n++] = (struct sweep_item){jobtab_entry_get(e), info.status.job.end_ms, kept};
}

static int cmp_end(const void *a, const void *b)
{
    const struct sweep_item *x = a, *y = b;

    return x->end_ms < y->end_ms ? -1 : x->end_ms > y->end_ms;
}

/* Retention, then the cap: the ended jobs that ended first go first, until the output of what
 * is left fits (running jobs are never removed, so it may not). */
static void sweep_jobs(struct jm *m)
{
    struct sweep sw = {.m = m, .now_ms = clock_ms(CLOCK_REALTIME)};
    size_t i;

    jobtab_foreach(m->table, sweep_one, &sw);
    if (sw.n > 1)
        qsort(sw.ended, sw.n, sizeof(sw.ended[0]), cmp_end);
    for (i = 0; i < sw.n && sw.total > m->cfg.max_state_bytes; i++)
        if (remove_entry(m, sw.ended[i].e) == 0)
            sw.total -= sw.ended[i].bytes;
    for (i = 0; i < sw.n; i++)
        jobtab_entry_put(sw.ended[i].e);
    free(sw.ended);
}

static int64_t sweep_period_ms(const struct jm *m)
{
    int64_t ms = m->cfg.retain_ended_ms > 0 ? m->cfg.retain_ended_ms / 2 : SWEEP_MAX_MS;

    if (ms < SWEEP_MIN_MS)
        ms = SWEEP_MIN_MS;
    if (ms > SWEEP_MAX_MS)
        ms = SWEEP_MAX_MS;
    if (m->cfg.max_state_bytes && ms > SWEEP_CAP_MS)
        ms = SWEEP_CAP_MS;
    return ms;
}

/* Renames the folders of the jobs removed so far away, then drops their references. */
static void trash_removed(struct jm *m)
{
    struct jobtab_entry **a;
    size_t n;

    (void)pthread_mutex_lock(&m->mu);
    a = m->removed;
    n = m->n_removed;
    m->removed = NULL;
    m->n_removed = m->cap_removed = 0;
    (void)pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n; i++) {
        int r = jobtab_entry_trash(a[i]);
        if (r < 0)
            log_warn("job %s: removing its folder: %s, ignoring", jobtab_entry_spec(a[i])->id,
                     strerror(-r));
    }
    jobtab_entries_put(a, n);
}

/* The first sweep runs at once: what expired while the server was down goes first. */
static void *sweep_thread(void *arg)
{
    struct jm *m = arg;
    bool do_sweep = m->cfg.retain_ended_ms > 0 || m->cfg.max_state_bytes > 0;
    int64_t period = sweep_period_ms(m), next = 0;

    (void)pthread_mutex_lock(&m->mu);
    for (;;) {
        int64_t now = clock_ms(CLOCK_MONOTONIC);
        bool due = do_sweep && now >= next, removed = m->n_removed > 0;
        bool exiting = m->sweep_exiting;

        if (!due && !removed && !exiting) {
            struct timespec dl;
            int64_t at = do_sweep ? next : now + SWEEP_MAX_MS;
            dl.tv_sec = (time_t)(at / 1000);
            dl.tv_nsec = (long)(at % 1000) * 1000000;
            (void)pthread_cond_timedwait(&m->sweep_wake, &m->mu, &dl);
            continue;
        }
        if (exiting && !removed)
            break;
        (void)pthread_mutex_unlock(&m->mu);
        if (due && !exiting) {
            sweep_jobs(m);
            next = clock_ms(CLOCK_MONOTONIC) + period;
        }
        trash_removed(m);
        (void)jobtab_purge(m->table);
        (void)pthread_mutex_lock(&m->mu);
    }
    (void)pthread_mutex_unlock(&m->mu);
    return NULL;
}

const char *jm_job_id(const struct jm_job *j)
{
    return jobtab_entry_spec((const struct jobtab_entry *)j)->id;
}

/* jm_job_info, with the live job's usage read from its cgroup only when with_usage: the
 * metrics need each job's state, not a cgroup read per running job every interval. */
static void job_info(struct jobtab_entry *e, struct jm_info *ret, bool with_usage)
{
    struct job *j = jobtab_entry_job(e);
    struct outlog *log = jobtab_entry_log(e);

    ret->spec = jobtab_entry_spec(e);
    jobtab_entry_get_status(e, &ret->status);
    /* A live job knows better than the record: usage, pid, and its end before on_end ran. */
    if (j && with_usage)
        job_get_status(j, &ret->status.job);
    else if (j)
        job_get_state(j, &ret->status.job);
    if (log) {
        ret->status.output_bytes = outlog_get_bytes(log);
        /* A log reopened after a restart cannot tell that its tail was cut: the record can. */
        ret->status.output_truncated |= outlog_is_truncated(log);
        ret->status.output_dropped = outlog_get_dropped_bytes(log);
    }
    ret->is_running = ret->status.job.state == JOB_STARTING || ret->status.job.state == JOB_RUNNING;
    if (!ret->is_running)
        ret->status.job.pid = 0;
}

void jm_job_info(struct jm_job *j, struct jm_info *ret)
{
    job_info(entry_of(j), ret, true);
}

/* ---- metrics ---------------------------------------------------------------------------- */

struct tally {
    struct jm *m;
    unsigned by_state[JOB_LOST + 1];
    uint64_t output_bytes;
    struct owner_count {
        const char *owner;
        unsigned running;
    } * owners;
    size_t n_owners, cap_owners;
    bool failed;
};

static void tally_one(struct jobtab_entry *e, void *userdata)
{
    struct tally *t = userdata;
    struct jm_info info;
    size_t i;

    job_info(e, &info, false);
    if ((unsigned)info.status.job.state <= JOB_LOST)
        t->by_state[info.status.job.state]++;
    t->output_bytes += info.status.output_bytes;
    if (!info.is_running)
        return;
    for (i = 0; i < t->n_owners && strcmp(t->owners[i].owner, info.spec->owner) != 0; i++)
        ;
    if (i == t->n_owners) {
        if (t->n_owners == t->cap_owners) {
            size_t cap = t->cap_owners ? t->cap_owners * 2 : 16;
            struct owner_count *o = realloc(t->owners, cap * sizeof(*o));
            if (!o) {
                t->failed = true;
                return;
            }
            t->owners = o;
            t->cap_owners = cap;
        }
        t->owners[t->n_owners++] = (struct owner_count){info.spec->owner, 0};
    }
    t->owners[i].running++;
}

/* A label value as the text format wants it: backslash, quote and newline escaped. */
static void put_label(struct strbuf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            (void)strbuf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            (void)strbuf_puts(b, "\\n");
        else
            (void)strbuf_putn(b, v, 1);
    }
}

int jm_write_metrics(struct jm *m, struct strbuf *b)
{
    struct tally t = {.m = m};
    uint64_t hist[START_BUCKETS + 1], starts, failures, cum = 0;
    int64_t sum_ms;
    unsigned readers;
    uint64_t removals;

    jobtab_foreach(m->table, tally_one, &t);
    (void)pthread_mutex_lock(&m->mu);
    memcpy(hist, m->start_hist, sizeof(hist));
    starts = m->starts;
    failures = m->start_failures;
    sum_ms = m->start_sum_ms;
    readers = m->readers;
    removals = m->removals;
    (void)pthread_mutex_unlock(&m->mu);

    (void)strbuf_puts(b, "# HELP runjob_jobs Jobs the server knows, by state.\n"
                         "# TYPE runjob_jobs gauge\n");
    for (enum job_state st = JOB_STARTING; st <= JOB_LOST; st++) {
        char name[32];
        size_t i;
        (void)snprintf(name, sizeof(name), "%s", job_state_name(st));
        /* The words the CLI shows: running, exited, failed (FAILED_TO_START) ... */
        for (i = 0; name[i] && name[i] != '_'; i++)
            name[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
        name[i] = '\0';
        (void)strbuf_printf(b, "runjob_jobs{state=\"%s\"} %u\n", name, t.by_state[st]);
    }
    (void)strbuf_puts(b, "# HELP runjob_running_jobs Running jobs, by owner.\n"
                         "# TYPE runjob_running_jobs gauge\n");
    for (size_t i = 0; i < t.n_owners; i++) {
        (void)strbuf_puts(b, "runjob_running_jobs{user=\"");
        put_label(b, t.owners[i].owner);
        (void)strbuf_printf(b, "\"} %u\n", t.owners[i].running);
    }
    (void)strbuf_printf(b,
                        "# HELP runjob_output_bytes Bytes of job output recorded, all jobs.\n"
                        "# TYPE runjob_output_bytes gauge\n"
                        "runjob_output_bytes %llu\n"
                        "# HELP runjob_stream_readers Output readers open (streams).\n"
                        "# TYPE runjob_stream_readers gauge\n"
                        "runjob_stream_readers %u\n"
                        "# HELP runjob_start_failures_total Starts whose command could not run.\n"
                        "# TYPE runjob_start_failures_total counter\n"
                        "runjob_start_failures_total %llu\n"
                        "# HELP runjob_jobs_removed_total Ended jobs removed (rm, retention, "
                        "the state cap).\n"
                        "# TYPE runjob_jobs_removed_total counter\n"
                        "runjob_jobs_removed_total %llu\n"
                        "# HELP runjob_start_seconds Start latency: request recorded to job "
                        "running.\n"
                        "# TYPE runjob_start_seconds histogram\n",
                        (unsigned long long)t.output_bytes, readers, (unsigned long long)failures,
                        (unsigned long long)removals);
    for (size_t i = 0; i <= START_BUCKETS; i++) {
        cum += hist[i];
        if (i < START_BUCKETS)
            (void)strbuf_printf(b, "runjob_start_seconds_bucket{le=\"%g\"} %llu\n",
                                start_buckets_ms[i] / 1000.0, (unsigned long long)cum);
        else
            (void)strbuf_printf(b, "runjob_start_seconds_bucket{le=\"+Inf\"} %llu\n",
                                (unsigned long long)cum);
    }
    (void)strbuf_printf(b, "runjob_start_seconds_sum %.3f\nrunjob_start_seconds_count %llu\n",
                        sum_ms / 1000.0, (unsigned long long)starts);
    free(t.owners);
    return t.failed || strbuf_is_failed(b) ? -ENOMEM : 0;
}

/* ---- output ----------------------------------------------------------------------------- */

int jm_reader_open(struct jm *m, struct jm_job *j, unsigned select_mask, uint64_t offset,
                   struct jm_reader **ret, uint64_t *ret_end)
{
    struct jobtab_entry *e = entry_of(j);
    struct outlog *log = jobtab_entry_log(e);
    struct jm_reader *rd;
    int r;

    if (!log)
        return -ENODATA;
    /* Past the end of output that can no longer grow: nothing there will ever come. (Past the
     * end of a live job's output is fine: the reader waits there.) Closed first, then the
     * size: once closed it is final. */
    if (outlog_is_closed(log)) {
        uint64_t end = outlog_get_selected_bytes(log, select_mask);
        if (offset > end) {
            if (ret_end)
                *ret_end = end;
            return -ERANGE;
        }
    }
    rd = calloc(1, sizeof(*rd));
    if (!rd)
        return -ENOMEM;
    r = outlog_reader_new(log, select_mask, offset, &rd->rd); /* may open the file again */
    if (r < 0) {
        free(rd);
        /* A file gone because the job was removed meanwhile is no loss of data. */
        return r == -ENOENT && jobtab_entry_is_removed(e) ? -EIDRM : r;
    }
    rd->m = m;
    rd->e = jobtab_entry_get(e);
    rd->log = log;
    /* A job removed meanwhile is gone: its file may be already. (A reader opened before the
     * removal holds the log's file open: it reads to its end.) */
    if (jobtab_entry_is_removed(e)) {
        outlog_reader_free(rd->rd);
        jobtab_entry_put(rd->e);
        free(rd);
        return -EIDRM;
    }
    (void)pthread_mutex_lock(&m->mu);
    m->readers++;
    (void)pthread_mutex_unlock(&m->mu);
    *ret = rd;
    return 0;
}

ssize_t jm_reader_read(struct jm_reader *rd, void *buf, size_t cap,
                       struct outlog_chunk_info *ret_info)
{
    return outlog_reader_read(rd->rd, buf, cap, ret_info);
}

int jm_reader_wait(struct jm_reader *rd, outlog_wake_fn fn, void *userdata)
{
    return outlog_reader_wait(rd->rd, fn, userdata);
}

bool jm_reader_cancel_wait(struct jm_reader *rd)
{
    return outlog_reader_cancel_wait(rd->rd);
}

uint64_t jm_reader_log_bytes(struct jm_reader *rd)
{
    return outlog_get_bytes(rd->log);
}

void jm_reader_final_info(struct jm_reader *rd, struct jm_info *ret)
{
    /* The log is closed only after the job's final status is set (job.c publish_end) or, for a
     * failed start, after the manager recorded FAILED_TO_START; but the record may lag the
     * close by the on_end callback when no job is attached yet. Give it a moment. */
    for (int i = 0; i < 200 && !jobtab_entry_job(rd->e) && jobtab_entry_is_running(rd->e); i++) {
        struct timespec ts = {0, 1000 * 1000};
        (void)nanosleep(&ts, NULL);
    }
    jm_job_info(job_of(rd->e), ret);
}

void jm_reader_free(struct jm_reader *rd)
{
    if (!rd)
        return;
    outlog_reader_free(rd->rd);
    (void)pthread_mutex_lock(&rd->m->mu);
    rd->m->readers--;
    (void)pthread_mutex_unlock(&rd->m->mu);
    jobtab_entry_put(rd->e); /* after the reader: the last put may free the log */
    free(rd);
}

/* ---- life ------------------------------------------------------------------------------- */

int jm_new(const struct jm_config *cfg, struct jm **ret, char *errbuf, size_t errlen)
{
    struct jobtab_config tc = {0};
    struct jm *m;
    int r;

    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->cfg = *cfg;
    if (m->cfg.spares > SPARES_MAX)
        m->cfg.spares = SPARES_MAX;
    (void)pthread_mutex_init(&m->mu, NULL);
    (void)pthread_cond_init(&m->cond, NULL);
    (void)pthread_cond_init(&m->idle, NULL);
    (void)pthread_cond_init(&m->changed, NULL);
    {
        pthread_condattr_t ca;
        (void)pthread_condattr_init(&ca);
        (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        (void)pthread_cond_init(&m->sweep_wake, &ca);
        (void)pthread_condattr_destroy(&ca);
    }
    STAILQ_INIT(&m->queue);
    m->lock_fd = -1;
    m->lock_dir_fd = -1;
    if (cfg->uid_first) {
        uint64_t n = (uint64_t)cfg->uid_last - cfg->uid_first + 1;
        if (cfg->uid_last < cfg->uid_first || n > (1u << 24)) {
            (void)snprintf(errbuf, errlen, "use the job uid range %u-%u", (unsigned)cfg->uid_first,
                           (unsigned)cfg->uid_last);
            jm_free(m);
            return -EINVAL;
        }
        m->uids_used = calloc((size_t)(n + 7) / 8, 1);
        if (!m->uids_used) {
            jm_free(m);
            return -ENOMEM;
        }
        /* Where the last server left off is not known: start anywhere, so that a restart
         * does not hand the range's first uids out again at once. */
        if (getrandom(&m->uid_next, sizeof(m->uid_next), 0) != sizeof(m->uid_next))
            m->uid_next = (uint64_t)time(NULL);
        m->uid_next %= n;
    }

    tc.state_dir = cfg->state_dir;
    tc.admin_cns = cfg->admin_cns;
    tc.max_running_per_user = cfg->max_running_per_user;
    tc.on_release = on_release;
    tc.userdata = m;
    r = jobtab_new(&tc, &m->table);
    if (r < 0) {
        (void)snprintf(errbuf, errlen, "open the state directory '%s'", cfg->state_dir);
        jm_free(m);
        return r;
    }
    r = lock_state_dir(m, errbuf, errlen); /* before anything in it is touched */
    if (r < 0) {
        jm_free(m);
        return r;
    }
    r = job_runner_new(&cfg->runner, &m->runner);
    if (r < 0) {
        (void)snprintf(errbuf, errlen, "set up job isolation (cgroups)");
        jm_free(m);
        return r;
    }
    r = jobtab_load(m->table, on_loaded, m);
    if (r < 0) {
        (void)snprintf(errbuf, errlen, "load the jobs in '%s'", cfg->state_dir);
        jm_free(m);
        return r;
    }
    log_info("loaded %d job(s) from %s", r, cfg->state_dir);
    jobtab_drain_unused(m->table, remove_unused_cgroup, m); /* before any job is made ahead */
    r = job_runner_remove_leftovers(m->runner, has_folder, m);
    if (r > 0)
        log_info("removed %d leftover job cgroup(s) that no job folder names", r);
    else if (r < 0)
        log_warn("looking for leftover job cgroups: %s, ignoring", strerror(-r));

    /* Named for top -H, perf and gdb. Created at [n]: the joins take the first n, so a failed
     * create leaves no hole. */
    for (unsigned i = 0; i < START_THREADS; i++) {
        pthread_t *t = &m->threads[m->n_threads];
        if (pthread_create(t, NULL, start_thread, m) == 0) {
            (void)pthread_setname_np(*t, "rj-start");
            m->n_threads++;
        }
    }
    if (m->n_threads == 0) {
        (void)snprintf(errbuf, errlen, "start the job manager's threads");
        jm_free(m);
        return -EAGAIN;
    }
    if (pthread_create(&m->sweeper, NULL, sweep_thread, m) != 0) {
        (void)snprintf(errbuf, errlen, "start the job manager's sweep thread");
        jm_free(m);
        return -EAGAIN;
    }
    (void)pthread_setname_np(m->sweeper, "rj-sweep");
    m->sweeper_started = true;
    spare_fill(m); /* the first Starts' folders */
    *ret = m;
    return 0;
}

static void count_stopped(struct job *j, void *userdata)
{
    struct jm *m = userdata;

    (void)j;
    (void)pthread_mutex_lock(&m->mu);
    m->stopping--;
    (void)pthread_cond_broadcast(&m->changed);
    (void)pthread_mutex_unlock(&m->mu);
}

static void stop_one(struct jobtab_entry *e, void *userdata)
{
    struct jm *m = userdata;
    struct job *j = jobtab_entry_job(e);

    if (!j || !job_is_running(j))
        return;
    (void)pthread_mutex_lock(&m->mu);
    m->stopping++;
    (void)pthread_mutex_unlock(&m->mu);
    if (job_stop_async(j, m->cfg.stop_signal ? m->cfg.stop_signal : SIGTERM, m->cfg.stop_grace_ms,
                       count_stopped, m) < 0)
        count_stopped(j, m);
}

void jm_shutdown(struct jm *m)
{
    int64_t timeout_ms = m->cfg.stop_grace_ms + SHUTDOWN_EXTRA_MS;
    struct timespec dl;

    (void)pthread_mutex_lock(&m->mu);
    m->refusing = true;
    while (!STAILQ_EMPTY(&m->queue) || m->busy)
        (void)pthread_cond_wait(&m->idle, &m->mu);
    (void)pthread_mutex_unlock(&m->mu);

    jobtab_foreach(m->table, stop_one, m);
    (void)clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (timeout_ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    (void)pthread_mutex_lock(&m->mu);
    while (m->stopping > 0)
        if (pthread_cond_timedwait(&m->changed, &m->mu, &dl) == ETIMEDOUT)
            break;
    (void)pthread_mutex_unlock(&m->mu);
}

static void free_attachments(struct jobtab_entry *e, void *userdata)
{
    struct job *j = jobtab_entry_job(e);
    struct outlog *log = jobtab_entry_log(e);
    bool readers_left = *(bool *)userdata;

    jobtab_entry_attach(e, NULL, NULL);
    if (j)
        job_free(j);
    /* A reader still open must not see its log freed. */
    if (log && !readers_left)
        outlog_free(log);
}

void jm_free(struct jm *m)
{
    bool readers_left;

    if (!m)
        return;
    (void)pthread_mutex_lock(&m->mu);
    m->refusing = true;
    m->exiting = true;
    (void)pthread_cond_broadcast(&m->cond);
    (void)pthread_mutex_unlock(&m->mu);
    for (unsigned i = 0; i < m->n_threads; i++)
        (void)pthread_join(m->threads[i], NULL);
    if (m->sweeper_started) { /* renames what was removed, then ends */
        (void)pthread_mutex_lock(&m->mu);
        m->sweep_exiting = true;
        (void)pthread_cond_signal(&m->sweep_wake);
        (void)pthread_mutex_unlock(&m->mu);
        (void)pthread_join(m->sweeper, NULL);
    }
    if (m->table)
        spare_free_all(m);
    /* Kills whatever still runs and waits for it (on_end hands final records to the table's
     * writer; jobtab_free below writes them and makes every record durable). */
    job_runner_free(m->runner);
    (void)pthread_mutex_lock(&m->mu);
    readers_left = m->readers > 0;
    (void)pthread_mutex_unlock(&m->mu);
    if (readers_left)
        log_warn("%u output reader(s) still open; keeping their logs", m->readers);
    if (m->table) {
        jobtab_foreach(m->table, free_attachments, &readers_left);
        jobtab_free(m->table);
    }
    if (m->lock_fd >= 0)
        (void)close(m->lock_fd); /* every record written and synced: the next may come */
    if (m->lock_dir_fd >= 0)
        (void)close(m->lock_dir_fd);
    free(m->uids_used);
    free(m->removed);
    (void)pthread_cond_destroy(&m->sweep_wake);
    (void)pthread_cond_destroy(&m->changed);
    (void)pthread_cond_destroy(&m->idle);
    (void)pthread_cond_destroy(&m->cond);
    (void)pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---- input ------------------------------------------------------------------------------ */

/* The job's runner half once it has started; NULL while it starts, or for a job loaded from a
 * previous server (its input went with that server). */
static struct job *input_job(struct jm_job *j)
{
    return jobtab_entry_job(entry_of(j));
}

int jm_input_claim(struct jm_job *j)
{
    struct job *job = input_job(j);

    if (jobtab_entry_spec(entry_of(j))->input == JOB_INPUT_NONE)
        return -ENOTTY;
    if (!job)
        return jobtab_entry_is_running(entry_of(j)) ? -EAGAIN : -EPIPE;
    return job_input_claim(job);
}

void jm_input_release(struct jm_job *j)
{
    struct job *job = input_job(j);

    if (job)
        job_input_release(job);
}

ssize_t jm_input_write(struct jm_job *j, const void *buf, size_t len)
{
    struct job *job = input_job(j);

    return job ? job_input_write(job, buf, len) : -EPIPE;
}

int jm_input_wait(struct jm_job *j, job_input_fn fn, void *userdata)
{
    struct job *job = input_job(j);

    return job ? job_input_wait(job, fn, userdata) : -EPIPE;
}

bool jm_input_cancel_wait(struct jm_job *j)
{
    struct job *job = input_job(j);

    return job ? job_input_cancel_wait(job) : false;
}

void jm_input_close(struct jm_job *j)
{
    struct job *job = input_job(j);

    if (job)
        job_input_close(job);
}

int jm_input_resize(struct jm_job *j, unsigned rows, unsigned cols)
{
    struct job *job = input_job(j);

    return job ? job_input_resize(job, rows, cols) : -EPIPE;
}
