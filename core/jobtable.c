#include "clock.h"
#include "jobtable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "cleanup.h"
#include "id.h"
#include "jobtable-internal.h"
#include "log.h"

#define LOST_MESSAGE "server restarted while the job was running"

/* How long a written record may wait for others before the flusher syncs them together. */
#define FLUSH_WINDOW_MS_DEFAULT 10

/* ---- ids ------------------------------------------------------------------------------- */

int jobtab_new_id(char buf[JOBTAB_ID_LEN + 1])
{
    uint8_t b[16];
    size_t got = 0;

    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    (void)snprintf(buf, JOBTAB_ID_LEN + 1,
                   "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                   b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                   b[14], b[15]);
    return 0;
}

/* ---- files ----------------------------------------------------------------------------- */

/* Marks the state directory as the top of independent hierarchies (chattr +T): ext4 then
 * spreads the job folders over block groups with room (Orlov), instead of packing them into the
 * state directory's own group. Without a journal, ext4 skips every inode freed in a group in the
 * last minutes one by one at each new file there (recently_deleted), so a group that other
 * programs churn (/tmp, /var next to a build) made each job's four new files cost up to a
 * millisecond of CPU. Best effort: other file systems do without. */
static void mark_top_dir(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int flags = 0;
    DIR *d;
    struct dirent *de;
    bool ours = true;

    if (fd < 0 || ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0 || (flags & FS_TOPDIR_FL))
        return;
    /* Only a directory of job folders: a --state-dir shared with others (/tmp, /var/lib)
     * keeps its attributes. */
    d = opendir(path);
    if (!d)
        return;
    while (ours && (de = readdir(d)))
        ours = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
               strcmp(de->d_name, JOBTAB_LOCK_FILE) == 0 || id_is_valid(de->d_name);
    closedir(d);
    if (!ours)
        return;
    flags |= FS_TOPDIR_FL;
    if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)
        log_debug("state: marking %s as a top directory: %s (ignored)", path, strerror(errno));
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];

    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* ---- table ----------------------------------------------------------------------------- */

static uint64_t hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (uint8_t)*id) * 1099511628211ull;
    return h;
}

static int index_grow(struct jobtab *t)
{
    size_t cap = t->cap_index ? t->cap_index * 2 : 256;
    struct jobtab_entry **idx = calloc(cap, sizeof(*idx));

    if (!idx)
        return -ENOMEM;
    for (size_t i = 0; i < t->n; i++) {
        size_t h = (size_t)hash_id(t->entries[i]->spec.id) & (cap - 1);
        while (idx[h])
            h = (h + 1) & (cap - 1);
        idx[h] = t->entries[i];
    }
    free(t->index);
    t->index = idx;
    t->cap_index = cap;
    return 0;
}

/* Appends e to the table (lock held or single-threaded). 0 or -ENOMEM. */
static int insert_locked(struct jobtab *t, struct jobtab_entry *e)
{
    size_t h;

    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct jobtab_entry **a = realloc(t->entries, cap * sizeof(*a));
        if (!a)
            return -ENOMEM;
        t->entries = a;
        t->cap = cap;
    }
    if ((t->n + 1) * 2 > t->cap_index) {
        int r = index_grow(t);
        if (r < 0)
            return r;
    }
    h = (size_t)hash_id(e->spec.id) & (t->cap_index - 1);
    while (t->index[h])
        h = (h + 1) & (t->cap_index - 1);
    t->index[h] = e;
    e->seq = t->n;
    t->entries[t->n++] = e;
    return 0;
}

/* Takes e out of the index (lock held): linear probing's deletion, which moves every later
 * entry of the same run back into the hole it may have probed past. */
static void index_remove_locked(struct jobtab *t, struct jobtab_entry *e)
{
    size_t mask = t->cap_index - 1, i, j;

    i = (size_t)hash_id(e->spec.id) & mask;
    while (t->index[i] && t->index[i] != e)
        i = (i + 1) & mask;
    if (!t->index[i])
        return;
    for (j = (i + 1) & mask; t->index[j]; j = (j + 1) & mask) {
        size_t k = (size_t)hash_id(t->index[j]->spec.id) & mask;
        /* index[j] may move to the hole i when its home k is not cyclically in (i, j]. */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays)
            continue;
        t->index[i] = t->index[j];
        i = j;
    }
    t->index[i] = NULL;
}

struct jobtab_entry *jobtab_find_locked(struct jobtab *t, const char *id)
{
    size_t h;

    if (!t->cap_index)
        return NULL;
    h = (size_t)hash_id(id) & (t->cap_index - 1);
    while (t->index[h]) {
        if (strcmp(t->index[h]->spec.id, id) == 0)
            return t->index[h];
        h = (h + 1) & (t->cap_index - 1);
    }
    return NULL;
}

static struct jobtab_entry *entry_new(struct jobtab *t)
{
    struct jobtab_entry *e = calloc(1, sizeof(*e));

    if (!e)
        return NULL;
    e->t = t;
    atomic_init(&e->refs, 1);
    (void)pthread_mutex_init(&e->wlock, NULL);
    return e;
}

static void entry_free(struct jobtab_entry *e)
{
    if (!e)
        return;
    jobtab_flusher_forget(e);
    jobtab_spec_clear(&e->spec);
    (void)pthread_mutex_destroy(&e->wlock);
    free(e);
}

int jobtab_new(const struct jobtab_config *cfg, struct jobtab **ret)
{
    struct jobtab *t = calloc(1, sizeof(*t));
    size_t n = 0;
    int r;

    if (!t)
        return -ENOMEM;
    (void)pthread_mutex_init(&t->lock, NULL);
    {
        pthread_condattr_t ca;
        (void)pthread_condattr_init(&ca);
        (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        (void)pthread_cond_init(&t->ended, &ca);
        (void)pthread_condattr_destroy(&ca);
    }
    t->max_running = cfg->max_running_per_user;
    t->on_release = cfg->on_release;
    t->userdata = cfg->userdata;
    t->state_dir = strdup(cfg->state_dir);
    while (cfg->admin_cns && cfg->admin_cns[n])
        n++;
    t->admins = calloc(n + 1, sizeof(char *));
    if (!t->state_dir || !t->admins) {
        jobtab_free(t);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        t->admins[i] = strdup(cfg->admin_cns[i]);
        if (!t->admins[i]) {
            jobtab_free(t);
            return -ENOMEM;
        }
        t->n_admins++;
    }
    r = mkdir_p(t->state_dir, 0700);
    if (r == 0)
        mark_top_dir(t->state_dir);
    if (r == 0)
        r = jobtab_flusher_start(t, cfg->flush_window_ms ? cfg->flush_window_ms
                                                         : FLUSH_WINDOW_MS_DEFAULT);
    if (r < 0) {
        jobtab_free(t);
        return r;
    }
    *ret = t;
    return 0;
}

void jobtab_free(struct jobtab *t)
{
    if (!t)
        return;
    jobtab_flusher_stop(t); /* makes every record written so far durable */
    for (size_t i = 0; i < t->n; i++)
        entry_free(t->entries[i]);
    free(t->entries);
    free(t->index);
    for (size_t i = 0; i < t->n_admins; i++)
        free(t->admins[i]);
    free(t->admins);
    free(t->state_dir);
    free(t->unused);
    (void)pthread_cond_destroy(&t->ended);
    (void)pthread_mutex_destroy(&t->lock);
    free(t);
}

static int cmp_start(const void *a, const void *b)
{
    const struct jobtab_entry *x = *(struct jobtab_entry *const *)a;
    const struct jobtab_entry *y = *(struct jobtab_entry *const *)b;

    if (x->status.job.start_ms != y->status.job.start_ms)
        return x->status.job.start_ms < y->status.job.start_ms ? -1 : 1;
    if (x->spec.created_ns != y->spec.created_ns)
        return x->spec.created_ns < y->spec.created_ns ? -1 : 1;
    return strcmp(x->spec.id, y->spec.id);
}

/* A creation time for a new entry (lock held): the clock, but strictly after the previous one,
 * so that the order of creation survives a restart even within one clock tick. */
static uint64_t created_ns_locked(struct jobtab *t)
{
    struct timespec ts;
    uint64_t ns;

    (void)clock_gettime(CLOCK_REALTIME, &ts);
    ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    if (ns <= t->last_created_ns)
        ns = t->last_created_ns + 1;
    t->last_created_ns = ns;
    return ns;
}

/* Parses a record of folder name into e: 0, or -EBADMSG (malformed, or another job's). */
static int parse_record(const char *text, const char *name, struct jobtab_entry *e)
{
    if (jobtab_record_parse(text, &e->spec, &e->status) < 0 || strcmp(e->spec.id, name) != 0) {
        jobtab_spec_clear(&e->spec);
        return -EBADMSG;
    }
    return 0;
}

/* Loads <state>/<name>; NULL when it is not a loadable job folder. */
static struct jobtab_entry *load_one(struct jobtab *t, int sfd, const char *name, bool *ret_lost)
{
    _cleanup_close_ int dfd = -1;
    _cleanup_free_ char *text = NULL;
    struct jobtab_entry *e;
    int r;

    dfd = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return NULL;
    r = jobtab_rec_read(dfd, RECORD_FILE, &text);
    if (r == -ENOENT) /* kept even if the folder stays: no job has this id */
        jobtab_remember_unused(t, name);
    if (r == -ENOENT && jobtab_remove_unused_folder(sfd, dfd, name) == 0) {
        log_debug("state: removed the unused job folder '%s'", name);
        return NULL;
    }
    e = entry_new(t);
    if (!e)
        return NULL;
    if (r == 0)
        r = parse_record(text, name, e);
    if (r < 0 && r != -ENOENT) {
        /* A machine crash can leave the latest record torn (its folder's rename made durable
         * before its data); status.tmp then still holds the one before it. */
        _cleanup_free_ char *prev = NULL;
        int rp = jobtab_rec_read(dfd, RECORD_TMP, &prev);
        if (rp == 0)
            rp = parse_record(prev, name, e);
        if (rp == 0) {
            log_warn("state: job %s: its record is unreadable (%s), using the previous one", name,
                     strerror(-r));
            /* The previous record becomes status again, so that a rewrite (LOST) never
             * overwrites the only good copy in place (the LOST path below syncs the folder
             * before it writes; an ended job's is not rewritten). */
            (void)renameat(dfd, RECORD_TMP, dfd, RECORD_FILE);
        }
        r = rp == 0 ? 0 : r;
    }
    if (r < 0) {
        log_warn("state: job folder '%s' has no readable record (%s), ignoring", name,
                 strerror(-r));
        entry_free(e);
        return NULL;
    }
    e->status.job.pid = 0;
    *ret_lost = jobtab_state_is_running(e->status.job.state);
    if (*ret_lost) {
        struct job_status *js = &e->status.job;
        /* Whatever status.tmp holds (the previous record after an exchange), a restart cannot
         * tell whether the disk has that exchange (or the fallback's rename) yet: it settles
         * first, then writes in place. */
        (void)jobtab_sync_record_dir(dfd);
        js->state = JOB_LOST;
        (void)snprintf(js->error, sizeof(js->error), "%s", LOST_MESSAGE);
        if (js->end_ms == 0)
            js->end_ms = clock_ms(CLOCK_REALTIME);
        r = jobtab_rec_write(e, &e->status, false);
        if (r < 0)
            log_warn("state: job %s: rewriting its record as LOST failed: %s, ignoring", name,
                     strerror(-r));
    }
    return e;
}

int jobtab_load(struct jobtab *t, jobtab_loaded_fn fn, void *userdata)
{
    DIR *d;
    struct dirent *de;
    struct jobtab_entry **loaded = NULL;
    size_t n = 0, cap = 0;
    int r = 0;

    d = opendir(t->state_dir);
    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        struct jobtab_entry *e;
        bool was_running = false;

        if (!id_is_valid(de->d_name))
            continue;
        e = load_one(t, dirfd(d), de->d_name, &was_running);
        if (!e)
            continue;
        if (n == cap) {
            size_t c = cap ? cap * 2 : 64;
            struct jobtab_entry **a = realloc(loaded, c * sizeof(*a));
            if (!a) {
                entry_free(e);
                r = -ENOMEM;
                break;
            }
            loaded = a;
            cap = c;
        }
        /* Keep the LOST flag next to its entry through the sort. */
        e->seq = was_running;
        loaded[n++] = e;
    }
    (void)closedir(d);
    if (r == 0 && n > 0)
        qsort(loaded, n, sizeof(*loaded), cmp_start);
    for (size_t i = 0; i < n; i++) {
        bool was_running = loaded[i]->seq != 0;
        if (r == 0)
            r = insert_locked(t, loaded[i]);
        if (r < 0) {
            entry_free(loaded[i]);
            continue;
        }
        if (loaded[i]->spec.created_ns > t->last_created_ns)
            t->last_created_ns = loaded[i]->spec.created_ns;
        if (fn)
            fn(loaded[i], was_running, userdata);
    }
    free(loaded);
    return r < 0 ? r : (int)n;
}

/* ---- adding a job ------------------------------------------------------------------------ */

int jobtab_add(struct jobtab *t, const char *owner, const char *name, const char *command,
               const char *const *args, size_t n_args, const struct limits *limits,
               enum job_network network, struct jobtab_entry **ret)
{
    return jobtab_add_in(t, NULL, owner, name, command, args, n_args, limits, network, ret);
}

int jobtab_add_in(struct jobtab *t, struct jobtab_spare **spare, const char *owner,
                  const char *name, const char *command, const char *const *args, size_t n_args,
                  const struct limits *limits, enum job_network network, struct jobtab_entry **ret)
{
    struct jobtab_spec want = {
        .owner = (char *)owner,
        .name = (char *)name,
        .command = (char *)command,
        .args = (char **)args,
        .n_args = n_args,
        .limits = *limits,
        .network = network,
    };

    return jobtab_add_spec(t, spare, &want, ret);
}

/* Whether o counts as running for a name or the cap, under t->lock. Its job's end is set
 * before the manager's end callback brings the record up to date: a client told the job
 * ended (by its status or its stream's end) may reuse the name at once. The job is not freed
 * while attached, and detaching takes t->lock. */
static bool entry_runs_locked(struct jobtab_entry *o)
{
    return jobtab_state_is_running(o->status.job.state) && !(o->job && !job_is_running(o->job));
}

int jobtab_add_spec(struct jobtab *t, struct jobtab_spare **spare, const struct jobtab_spec *want,
                    struct jobtab_entry **ret)
{
    _cleanup_free_ struct jobtab_spare *sl = NULL;
    const char *owner = want->owner;
    struct jobtab_entry *e;
    unsigned running = 0;
    int r;

    e = entry_new(t);
    if (!e)
        return -ENOMEM;
    e->spec.owner = strdup(owner);
    e->spec.name = strdup(want->name ? want->name : "");
    e->spec.command = strdup(want->command);
    e->spec.args = calloc(want->n_args + 1, sizeof(char *));
    e->spec.workdir = strdup(want->workdir ? want->workdir : "");
    if (!e->spec.owner || !e->spec.name || !e->spec.command || !e->spec.args || !e->spec.workdir) {
        entry_free(e);
        return -ENOMEM;
    }
    for (size_t i = 0; i < want->n_args; i++) {
        e->spec.args[i] = strdup(want->args[i]);
        if (!e->spec.args[i]) {
            entry_free(e);
            return -ENOMEM;
        }
        e->spec.n_args++;
    }
    e->spec.limits = want->limits;
    e->spec.network = want->network;
    e->spec.timeout_ms = want->timeout_ms;
    e->spec.input = want->input;
    e->status.job.state = JOB_STARTING;
    e->status.job.start_ms = clock_ms(CLOCK_REALTIME);

    (void)pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->n; i++) {
        struct jobtab_entry *o = t->entries[i];
        if (!entry_runs_locked(o) || strcmp(o->spec.owner, owner) != 0)
            continue;
        running++;
        if (e->spec.name[0] && strcmp(o->spec.name, e->spec.name) == 0) {
            (void)pthread_mutex_unlock(&t->lock);
            entry_free(e);
            return -EEXIST;
        }
    }
    if (t->max_running && running >= t->max_running) {
        (void)pthread_mutex_unlock(&t->lock);
        entry_free(e);
        return -EUSERS;
    }
    if (spare && *spare) {
        /* The spare's id was unique in the table when it was made, and every id added since
         * came from a folder of its own (mkdir is exclusive). */
        sl = TAKE_PTR(*spare);
        memcpy(e->spec.id, sl->id, sizeof(e->spec.id));
        e->spare = true;
    } else {
        do {
            r = jobtab_new_id(e->spec.id);
        } while (r == 0 && jobtab_find_locked(t, e->spec.id));
        if (r < 0) {
            (void)pthread_mutex_unlock(&t->lock);
            entry_free(e);
            return r;
        }
    }
    e->spec.created_ns = created_ns_locked(t);
    r = insert_locked(t, e);
    (void)pthread_mutex_unlock(&t->lock);
    if (r < 0) {
        if (sl)
            jobtab_remove_folder(t, sl->id);
        entry_free(e);
        return r;
    }
    /* From here the entry is in the table (its name reserved); the caller records a failure
     * below through jobtab_entry_set_status, which frees the name again. */
    if (!sl) {
        char dir[PATH_MAX];
        r = jobtab_state_path(t, e->spec.id, dir, sizeof(dir));
        if (r == 0 && mkdir(dir, 0700) < 0)
            r = -errno;
    }
    if (r == 0) {
        r = jobtab_rec_write(e, &e->status, true);
        if (r < 0) /* e.g. ENOSPC: leave no folder without a record behind */
            jobtab_remove_folder(t, e->spec.id);
    }
    if (r < 0) {
        struct jobtab_status st = e->status;
        st.job.state = JOB_FAILED_TO_START;
        st.job.end_ms = clock_ms(CLOCK_REALTIME);
        (void)snprintf(st.job.error, sizeof(st.job.error), "the server could not record the job");
        (void)pthread_mutex_lock(&t->lock);
        e->status = st;
        (void)pthread_mutex_unlock(&t->lock);
        return r;
    }
    *ret = jobtab_entry_get(e); /* the table keeps the reference entry_new made */
    return 0;
}

bool jobtab_is_admin(struct jobtab *t, const char *cn)
{
    for (size_t i = 0; i < t->n_admins; i++)
        if (strcmp(t->admins[i], cn) == 0)
            return true;
    return false;
}

bool jobtab_may_access(struct jobtab *t, const struct jobtab_entry *e, const char *cn)
{
    return strcmp(e->spec.owner, cn) == 0 || jobtab_is_admin(t, cn);
}

struct jobtab_entry *jobtab_lookup(struct jobtab *t, const char *id, const char *cn)
{
    struct jobtab_entry *e;

    (void)pthread_mutex_lock(&t->lock);
    e = jobtab_find_locked(t, id);
    if (e && !jobtab_may_access(t, e, cn))
        e = NULL;
    if (e)
        (void)jobtab_entry_get(e);
    (void)pthread_mutex_unlock(&t->lock);
    return e;
}

int jobtab_list(struct jobtab *t, const char *cn, struct jobtab_entry ***ret, size_t *ret_n)
{
    bool admin = jobtab_is_admin(t, cn);
    struct jobtab_entry **a;
    size_t n = 0;

    (void)pthread_mutex_lock(&t->lock);
    a = malloc((t->n + 1) * sizeof(*a));
    if (!a) {
        (void)pthread_mutex_unlock(&t->lock);
        return -ENOMEM;
    }
    for (size_t i = 0; i < t->n; i++)
        if (admin || strcmp(t->entries[i]->spec.owner, cn) == 0)
            a[n++] = jobtab_entry_get(t->entries[i]);
    (void)pthread_mutex_unlock(&t->lock);
    *ret = a;
    *ret_n = n;
    return 0;
}

void jobtab_entries_put(struct jobtab_entry **a, size_t n)
{
    if (!a)
        return;
    for (size_t i = 0; i < n; i++)
        jobtab_entry_put(a[i]);
    free(a);
}

void jobtab_foreach(struct jobtab *t, void (*fn)(struct jobtab_entry *e, void *userdata),
                    void *userdata)
{
    struct jobtab_entry **a;
    size_t n;

    (void)pthread_mutex_lock(&t->lock);
    n = t->n;
    a = malloc((n + 1) * sizeof(*a));
    for (size_t i = 0; a && i < n; i++)
        a[i] = jobtab_entry_get(t->entries[i]);
    (void)pthread_mutex_unlock(&t->lock);
    if (!a)
        return;
    for (size_t i = 0; i < n; i++) {
        fn(a[i], userdata);
        jobtab_entry_put(a[i]);
    }
    free(a);
}

/* ---- entry lifetime ---------------------------------------------------------------------- */

struct jobtab_entry *jobtab_entry_get(struct jobtab_entry *e)
{
    (void)atomic_fetch_add(&e->refs, 1);
    return e;
}

void jobtab_entry_put(struct jobtab_entry *e)
{
    struct jobtab *t;

    if (!e || atomic_fetch_sub(&e->refs, 1) != 1)
        return;
    /* The last reference: only a removed entry gets here (the table holds one otherwise), and
     * nothing can find it any more. */
    t = e->t;
    if (t->on_release)
        t->on_release(e, t->userdata);
    entry_free(e);
}

int jobtab_remove(struct jobtab *t, struct jobtab_entry *e)
{
    size_t i;

    (void)pthread_mutex_lock(&t->lock);
    if (e->removed) {
        (void)pthread_mutex_unlock(&t->lock);
        return -ENOENT;
    }
    /* A job whose end was seen (entry_runs_locked) but not yet recorded: its end callback is
     * under way, and the entry is removed once that has set the final status (bounded, should
     * the callback be held up). */
    if (jobtab_state_is_running(e->status.job.state) && !entry_runs_locked(e)) {
        struct timespec until;
        (void)clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += 5;
        while (jobtab_state_is_running(e->status.job.state) && !e->removed &&
               pthread_cond_timedwait(&t->ended, &t->lock, &until) == 0)
            ;
        if (e->removed) {
            (void)pthread_mutex_unlock(&t->lock);
            return -ENOENT;
        }
    }
    /* Checked under the same lock as the removal: a job cannot start running in between (an
     * entry never goes back to a running state). */
    if (jobtab_state_is_running(e->status.job.state)) {
        (void)pthread_mutex_unlock(&t->lock);
        return -EBUSY;
    }
    e->removed = true;
    index_remove_locked(t, e);
    for (i = 0; i < t->n && t->entries[i] != e; i++)
        ;
    if (i < t->n) {
        memmove(&t->entries[i], &t->entries[i + 1], (t->n - i - 1) * sizeof(t->entries[0]));
        t->n--;
    }
    (void)pthread_mutex_unlock(&t->lock);
    jobtab_entry_put(e); /* the table's: the caller still holds one */
    return 0;
}

bool jobtab_entry_is_removed(struct jobtab_entry *e)
{
    bool removed;

    (void)pthread_mutex_lock(&e->t->lock);
    removed = e->removed;
    (void)pthread_mutex_unlock(&e->t->lock);
    return removed;
}

int jobtab_entry_trash(struct jobtab_entry *e)
{
    struct jobtab *t = e->t;
    _cleanup_close_ int sfd = open(t->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char trash[sizeof(TRASH_PREFIX) + JOBTAB_ID_LEN];
    int r = 0;

    if (sfd < 0)
        return -errno;
    (void)snprintf(trash, sizeof(trash), TRASH_PREFIX "%s", e->spec.id);
    /* Under wlock: a record being written finishes first, and none is written after (a removed
     * entry's are skipped), so nothing recreates the folder. */
    (void)pthread_mutex_lock(&e->wlock);
    if (renameat(sfd, e->spec.id, sfd, trash) < 0 && errno != ENOENT)
        r = -errno;
    (void)pthread_mutex_unlock(&e->wlock);
    return r;
}

/* Deletes the folder name of sfd and what is in it (files only: a job folder holds no other
 * folder). 0 or -errno. */
static int remove_tree(int sfd, const char *name)
{
    int dfd = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d;
    struct dirent *de;

    if (dfd < 0)
        return -errno;
    d = fdopendir(dfd);
    if (!d) {
        int r = -errno;
        (void)close(dfd);
        return r;
    }
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            (void)unlinkat(dfd, de->d_name, 0); /* the rmdir below says what is left */
    (void)closedir(d);
    if (unlinkat(sfd, name, AT_REMOVEDIR) < 0)
        return -errno;
    return 0;
}

int jobtab_purge(struct jobtab *t)
{
    _cleanup_close_ int sfd = open(t->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;
    struct dirent *de;
    int n = 0;

    if (sfd < 0)
        return -errno;
    d = opendir(t->state_dir);
    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        int r;
        if (strncmp(de->d_name, TRASH_PREFIX, strlen(TRASH_PREFIX)) != 0 ||
            !id_is_valid(de->d_name + strlen(TRASH_PREFIX)))
            continue;
        r = remove_tree(sfd, de->d_name);
        if (r < 0)
            log_warn("state: deleting the removed job folder '%s': %s, ignoring", de->d_name,
                     strerror(-r));
        else
            n++;
    }
    (void)closedir(d);
    return n;
}

const struct jobtab_spec *jobtab_entry_spec(const struct jobtab_entry *e)
{
    return &e->spec;
}

void jobtab_entry_get_status(struct jobtab_entry *e, struct jobtab_status *ret)
{
    (void)pthread_mutex_lock(&e->t->lock);
    *ret = e->status;
    (void)pthread_mutex_unlock(&e->t->lock);
}

/* The in-memory half of set_status. */
static void apply_status(struct jobtab_entry *e, const struct jobtab_status *st)
{
    struct jobtab *t = e->t;

    (void)pthread_mutex_lock(&t->lock);
    /* An end seen first (a job that exits before its starter reports RUNNING) wins: a job
     * never goes back from an end state to a running one. */
    if (jobtab_state_is_running(e->status.job.state) || !jobtab_state_is_running(st->job.state)) {
        e->status = *st;
        if (!jobtab_state_is_running(e->status.job.state)) {
            e->status.job.pid = 0;
            (void)pthread_cond_broadcast(&t->ended);
        }
    }
    (void)pthread_mutex_unlock(&t->lock);
}

int jobtab_entry_set_status(struct jobtab_entry *e, const struct jobtab_status *st)
{
    apply_status(e, st);
    return jobtab_rec_write_latest(e);
}

void jobtab_entry_set_status_async(struct jobtab_entry *e, const struct jobtab_status *st)
{
    apply_status(e, st);
    jobtab_writer_queue(e, jobtab_state_is_running(st->job.state) ? JOBTAB_RUNNING_LINGER_MS : 0);
}

bool jobtab_entry_is_running(struct jobtab_entry *e)
{
    struct jobtab_status st;
    jobtab_entry_get_status(e, &st);
    return jobtab_state_is_running(st.job.state);
}

void jobtab_entry_attach(struct jobtab_entry *e, struct job *j, struct outlog *log)
{
    (void)pthread_mutex_lock(&e->t->lock);
    e->job = j;
    e->log = log;
    (void)pthread_mutex_unlock(&e->t->lock);
}

struct job *jobtab_entry_job(struct jobtab_entry *e)
{
    struct job *j;
    (void)pthread_mutex_lock(&e->t->lock);
    j = e->job;
    (void)pthread_mutex_unlock(&e->t->lock);
    return j;
}

struct outlog *jobtab_entry_log(struct jobtab_entry *e)
{
    struct outlog *l;
    (void)pthread_mutex_lock(&e->t->lock);
    l = e->log;
    (void)pthread_mutex_unlock(&e->t->lock);
    return l;
}

int jobtab_entry_output_path(struct jobtab *t, const struct jobtab_entry *e, char *buf, size_t len)
{
    if (snprintf(buf, len, "%s/%s/%s", t->state_dir, e->spec.id, OUTPUT_FILE) >= (int)len)
        return -ENAMETOOLONG;
    return 0;
}