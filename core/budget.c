/* The shared budget of readers' messages in flight, and their turns (see budget.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "budget.h"

TAILQ_HEAD(waiters, budget_waiter);

struct budget {
    struct budget_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the timer thread: the queue changed, or stop */
    pthread_t timer;
    bool timer_started, stopping, stalled;
    unsigned readers, queued;
    size_t reserved;
    struct waiters queue; /* waiting for a turn, oldest first */
};

static bool is_pow2(size_t v)
{
    return v && !(v & (v - 1));
}

int budget_new(const struct budget_config *cfg, struct budget **ret)
{
    struct budget *b;
    pthread_condattr_t ca;

    if (!cfg->min || cfg->min > cfg->turn || cfg->turn > cfg->max || cfg->turn > cfg->total ||
        !is_pow2(cfg->turn) || !is_pow2(cfg->max) || cfg->stall_ms <= 0)
        return -EINVAL;
    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->cfg = *cfg;
    TAILQ_INIT(&b->queue);
    (void)pthread_mutex_init(&b->mu, NULL);
    (void)pthread_condattr_init(&ca);
    (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    (void)pthread_cond_init(&b->cv, &ca);
    (void)pthread_condattr_destroy(&ca);
    *ret = b;
    return 0;
}

void budget_free(struct budget *b)
{
    if (!b)
        return;
    (void)pthread_mutex_lock(&b->mu);
    b->stopping = true;
    (void)pthread_cond_signal(&b->cv);
    (void)pthread_mutex_unlock(&b->mu);
    if (b->timer_started)
        (void)pthread_join(b->timer, NULL);
    (void)pthread_cond_destroy(&b->cv);
    (void)pthread_mutex_destroy(&b->mu);
    free(b);
}

static size_t left_locked(const struct budget *b)
{
    return b->reserved < b->cfg.total ? b->cfg.total - b->reserved : 0;
}

static size_t pow2_floor(size_t v)
{
    size_t p = 1;

    while (p <= v / 2)
        p *= 2;
    return p;
}

/* With mu held: moves the queue's head to granted with `bytes` reserved for it. */
static void grant_head_locked(struct budget *b, size_t bytes, struct waiters *granted)
{
    struct budget_waiter *w = TAILQ_FIRST(&b->queue);

    TAILQ_REMOVE(&b->queue, w, link);
    b->queued--;
    w->queued = false;
    w->has_grant = true;
    w->granted = bytes;
    b->reserved += bytes;
    TAILQ_INSERT_HEAD(granted, w, link);
}

/* Without mu: tells each granted waiter (their order does not matter: each was reserved
 * its own bytes). */
static void notify(struct waiters *granted)
{
    struct budget_waiter *w;

    while ((w = TAILQ_FIRST(granted))) {
        TAILQ_REMOVE(granted, w, link); /* first: on_grant may queue w again */
        w->on_grant(w);
    }
}

/* The timer thread: runs while the budget exists once anyone queued. Sleeps on the queue's
 * head; if the head is still the head stall_ms after it queued, turns are stalled (the
 * budget is held by messages nobody reads): everyone waiting goes on with small messages. */
static void *run_timer(void *arg)
{
    struct budget *b = arg;

    (void)pthread_mutex_lock(&b->mu);
    while (!b->stopping) {
        struct waiters granted = TAILQ_HEAD_INITIALIZER(granted);
        int64_t due;

        if (TAILQ_EMPTY(&b->queue)) {
            (void)pthread_cond_wait(&b->cv, &b->mu);
            continue;
        }
        due = TAILQ_FIRST(&b->queue)->since_ms + b->cfg.stall_ms;
        if (clock_ms(CLOCK_MONOTONIC) < due) {
            struct timespec ts = {.tv_sec = (time_t)(due / 1000),
                                  .tv_nsec = (long)(due % 1000) * 1000000};
            (void)pthread_cond_timedwait(&b->cv, &b->mu, &ts);
            continue;
        }
        b->stalled = true;
        while (!TAILQ_EMPTY(&b->queue))
            grant_head_locked(b, b->cfg.min, &granted);
        (void)pthread_mutex_unlock(&b->mu);
        notify(&granted);
        (void)pthread_mutex_lock(&b->mu);
    }
    (void)pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* With mu held: appends w to the queue (starting the timer thread the first time). False if
 * the timer thread cannot be started: then w is not queued (the caller sends a small message
 * instead, as when stalled). */
static bool enqueue_locked(struct budget *b, struct budget_waiter *w)
{
    if (!b->timer_started) {
        if (pthread_create(&b->timer, NULL, run_timer, b) != 0)
            return false;
        (void)pthread_setname_np(b->timer, "rj-budget"); /* names seen in top -H, perf, gdb */
        b->timer_started = true;
    }
    w->queued = true;
    w->since_ms = clock_ms(CLOCK_MONOTONIC);
    TAILQ_INSERT_TAIL(&b->queue, w, link);
    if (b->queued++ == 0)
        (void)pthread_cond_signal(&b->cv); /* the timer sleeps on the new head */
    return true;
}

size_t budget_acquire(struct budget *b, struct budget_waiter *w, uint64_t want)
{
    const struct budget_config *c = &b->cfg;
    size_t size, share, left;
    unsigned readers;

    (void)pthread_mutex_lock(&b->mu);
    if (w->has_grant) {
        w->has_grant = false;
        size = w->granted;
        w->granted = 0;
        (void)pthread_mutex_unlock(&b->mu);
        return size;
    }
    if (!w->sending) {
        w->sending = true;
        b->readers++;
    }
    readers = b->readers;
    share = c->total / readers;
    share = pow2_floor(share < c->max ? share : c->max);
    left = left_locked(b);
    if (want <= c->min) {
        /* A little live output: a small message costs little, and waiting would only add
         * latency. */
        size = c->min;
    } else if (TAILQ_EMPTY(&b->queue) && share >= c->turn) {
        /* Few readers: an equal share each, no more than is left (never below min: a share
         * that shrank as readers came may still be out with the earlier readers). */
        size = share <= left ? share : left < c->min ? c->min : pow2_floor(left);
    } else if (TAILQ_EMPTY(&b->queue) && left >= c->turn) {
        size = c->turn;
    } else if (b->stalled || !enqueue_locked(b, w)) {
        size = c->min;
    } else {
        (void)pthread_mutex_unlock(&b->mu);
        return 0;
    }
    if (want < size)
        size = want < c->min ? c->min : (size_t)want;
    b->reserved += size;
    (void)pthread_mutex_unlock(&b->mu);
    return size;
}

/* With mu held: gives bytes back and grants waiters what is now free. */
static void release_locked(struct budget *b, size_t bytes, struct waiters *granted)
{
    b->reserved = bytes < b->reserved ? b->reserved - bytes : 0;
    while (!TAILQ_EMPTY(&b->queue) && left_locked(b) >= b->cfg.turn)
        grant_head_locked(b, b->cfg.turn, granted);
    if (left_locked(b) >= b->cfg.turn)
        b->stalled = false; /* room again: readers take turns again */
}

void budget_release(struct budget *b, size_t bytes)
{
    struct waiters granted = TAILQ_HEAD_INITIALIZER(granted);

    if (!bytes)
        return;
    (void)pthread_mutex_lock(&b->mu);
    release_locked(b, bytes, &granted);
    (void)pthread_mutex_unlock(&b->mu);
    notify(&granted);
}

void budget_idle(struct budget *b, struct budget_waiter *w)
{
    struct waiters granted = TAILQ_HEAD_INITIALIZER(granted);

    (void)pthread_mutex_lock(&b->mu);
    if (w->sending) {
        w->sending = false;
        b->readers--;
    }
    if (w->has_grant) { /* granted, but the stream ended before it took its turn */
        w->has_grant = false;
        release_locked(b, w->granted, &granted);
        w->granted = 0;
    }
    (void)pthread_mutex_unlock(&b->mu);
    notify(&granted);
}

bool budget_cancel(struct budget *b, struct budget_waiter *w)
{
    bool was_queued = false;

    (void)pthread_mutex_lock(&b->mu);
    if (w->queued) {
        TAILQ_REMOVE(&b->queue, w, link);
        b->queued--;
        w->queued = false;
        was_queued = true;
    }
    (void)pthread_mutex_unlock(&b->mu);
    return was_queued;
}

void budget_get_stats(struct budget *b, struct budget_stats *ret)
{
    (void)pthread_mutex_lock(&b->mu);
    ret->readers = b->readers;
    ret->queued = b->queued;
    ret->reserved = b->reserved;
    ret->stalled = b->stalled;
    (void)pthread_mutex_unlock(&b->mu);
}
