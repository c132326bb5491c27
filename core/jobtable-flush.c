#include "jobtable.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "jobtable-internal.h"
#include "log.h"

/* ---- the flusher's queue ---------------------------------------------------------------- */

/* A record written while e is still queued needs no second place: the flusher syncs whatever
 * the folder holds when it gets there. */
void jobtab_flusher_queue(struct jobtab_entry *e, bool new_folder)
{
    struct jobtab_flusher *fl = &e->t->fl;

    (void)pthread_mutex_lock(&fl->mu);
    e->fl_new_folder = e->fl_new_folder || new_folder;
    if (!e->fl_queued) {
        (void)jobtab_entry_get(e); /* the queue's, put once the batch is synced */
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

/* ---- the flusher: durability, one batch at a time -------------------------------------- */

/* At most this many folders per batch (the ids are copied out of the queue onto the stack). */
#define FLUSH_BATCH 64

struct flush_item {
    char id[JOBTAB_ID_LEN + 1];
    struct jobtab_entry *e; /* the queue's reference */
};

int jobtab_sync_record_dir(int dfd)
{
    _cleanup_close_ int fd = openat(dfd, RECORD_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0 && errno != ENOENT)
        return -errno;
    if (fd >= 0 && fdatasync(fd) < 0)
        return -errno;
    if (fsync(dfd) < 0)
        return -errno;
    return 0;
}

/* fdatasync of the record, fsync of its folder (the rename). A folder gone meanwhile (a job
 * whose first record failed is removed again) has nothing left to make durable. */
static int sync_folder(int sfd, const char *id)
{
    _cleanup_close_ int dfd = openat(sfd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);

    if (dfd < 0)
        return errno == ENOENT ? 0 : -errno;
    return jobtab_sync_record_dir(dfd);
}

int jobtab_flusher_settle(struct jobtab_entry *e)
{
    struct jobtab_flusher *fl = &e->t->fl;
    _cleanup_close_ int sfd = -1;
    bool durable;

    (void)pthread_mutex_lock(&fl->mu);
    /* Taken out of the queue is not synced yet: synced_seq moves after the batch. */
    durable = !fl->running || (!e->fl_queued && fl->synced_seq >= e->fl_seq);
    (void)pthread_mutex_unlock(&fl->mu);
    if (durable)
        return 0;
    sfd = open(e->t->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0)
        return -errno;
    return sync_folder(sfd, e->spec.id); /* the flusher syncs it again later: rare, harmless */
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
            memcpy(items[n].id, e->spec.id, sizeof(items[0].id));
            items[n++].e = e;
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
        for (size_t i = 0; i < n; i++) /* outside fl->mu: a last put frees the entry */
            jobtab_entry_put(items[i].e);
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

void jobtab_writer_queue(struct jobtab_entry *e, unsigned linger_ms)
{
    struct jobtab_flusher *fl = &e->t->fl;
    uint64_t due = linger_ms ? (uint64_t)clock_ms(CLOCK_MONOTONIC) + linger_ms : 0;

    (void)pthread_mutex_lock(&fl->mu);
    if (!e->wq_queued) {
        (void)jobtab_entry_get(e); /* the queue's, put once written */
        e->wq_queued = true;
        e->wq_due_ms = due;
        e->wq_next = NULL;
        if (!fl->whead || due == 0)
            (void)pthread_cond_signal(&fl->wwake);
        *fl->wtail = e;
        fl->wtail = &e->wq_next;
    } else if (due < e->wq_due_ms) { /* an end after a running state: no more waiting */
        e->wq_due_ms = due;
        (void)pthread_cond_signal(&fl->wwake);
    }
    (void)pthread_mutex_unlock(&fl->mu);
}

/* The first queued entry whose record is due (every one at exit or while someone syncs), with
 * *ret_pp the link to it. NULL when none is: *ret_due is then the earliest due time, or 0 for an
 * empty queue. */
static struct jobtab_entry *writer_pick(struct jobtab_flusher *fl, struct jobtab_entry ***ret_pp,
                                        uint64_t *ret_due)
{
    bool all = fl->wexiting || fl->wsyncing > 0;
    uint64_t now = 0, first = 0;

    for (struct jobtab_entry **pp = &fl->whead; *pp; pp = &(*pp)->wq_next) {
        uint64_t due = (*pp)->wq_due_ms;
        if (!all && due != 0 && now == 0)
            now = (uint64_t)clock_ms(CLOCK_MONOTONIC);
        if (all || due <= now) {
            *ret_pp = pp;
            return *pp;
        }
        if (first == 0 || due < first)
            first = due;
    }
    *ret_due = first;
    return NULL;
}

static void deadline_at(struct timespec *ts, uint64_t mono_ms)
{
    ts->tv_sec = (time_t)(mono_ms / 1000);
    ts->tv_nsec = (long)(mono_ms % 1000) * 1000000;
}

/* One record at a time, the first due first; each write queues its record for the flusher. */
static void *writer_main(void *arg)
{
    struct jobtab *t = arg;
    struct jobtab_flusher *fl = &t->fl;

    (void)pthread_mutex_lock(&fl->mu);
    for (;;) {
        struct jobtab_entry *e, **pp = NULL;
        uint64_t due = 0;
        int r;

        while (!(e = writer_pick(fl, &pp, &due)) && !(fl->wexiting && !fl->whead)) {
            if (due == 0) {
                (void)pthread_cond_wait(&fl->wwake, &fl->mu);
            } else {
                struct timespec dl;
                deadline_at(&dl, due);
                (void)pthread_cond_timedwait(&fl->wwake, &fl->mu, &dl);
            }
        }
        if (!e)
            break;
        *pp = e->wq_next;
        if (!*pp)
            fl->wtail = pp;
        e->wq_queued = false;
        fl->wbusy = true;
        (void)pthread_mutex_unlock(&fl->mu);

        r = jobtab_rec_write_latest(e);
        if (r < 0)
            log_warn("job %s: writing its record: %s", e->spec.id, strerror(-r));
        jobtab_entry_put(e); /* the queue's, outside fl->mu: a last put frees the entry */
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
    fl->wsyncing++; /* lingering records are due now */
    (void)pthread_cond_signal(&fl->wwake);
    while (fl->whead || fl->wbusy) /* the writer's records first: they join the flusher's queue */
        (void)pthread_cond_wait(&fl->wdone, &fl->mu);
    fl->wsyncing--;
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
    (void)pthread_cond_init(&fl->wwake, &ca);
    (void)pthread_condattr_destroy(&ca);
    (void)pthread_cond_init(&fl->done, NULL);
    (void)pthread_cond_init(&fl->wdone, NULL);
    fl->head = NULL;
    fl->tail = &fl->head;
    fl->whead = NULL;
    fl->wtail = &fl->whead;
    fl->window_ms = window_ms;
    r = pthread_create(&fl->thread, NULL, flusher_main, t);
    if (r == 0) {
        (void)pthread_setname_np(fl->thread, "rj-flusher"); /* names seen in top -H, perf, gdb */
        r = pthread_create(&fl->wthread, NULL, writer_main, t);
        if (r == 0)
            (void)pthread_setname_np(fl->wthread, "rj-writer");
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
