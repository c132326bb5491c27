/* core/budget.c: equal shares for few readers, FIFO turns for many, grants on release, the
 * stall fallback when nobody releases, cancel, and a many-thread churn that must end with
 * nothing reserved and nobody left waiting. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "core/budget.h"

#define KiB 1024u

/* total 1 MiB: 4 turns of 256 KiB at once; max 1 MiB; min 16 KiB. */
static const struct budget_config cfg = {
    .total = 1024 * KiB, .max = 1024 * KiB, .turn = 256 * KiB, .min = 16 * KiB, .stall_ms = 100};

struct waiter {
    struct budget_waiter bw;
    atomic_int grants;
    int order; /* the grant's rank, from grant_counter */
};

static atomic_int grant_counter;

static void on_grant(struct budget_waiter *w)
{
    struct waiter *x = (struct waiter *)w;

    x->order = atomic_fetch_add(&grant_counter, 1);
    atomic_fetch_add(&x->grants, 1);
}

static void init_waiters(struct waiter *w, int n)
{
    memset(w, 0, sizeof(*w) * (size_t)n);
    for (int i = 0; i < n; i++)
        w[i].bw.on_grant = on_grant;
    atomic_store(&grant_counter, 0);
}

/* Makes the first n of w count as readers (an acquire and release of a small message each). */
static void count_readers(struct budget *b, struct waiter *w, int n)
{
    for (int i = 0; i < n; i++)
        budget_acquire(b, &w[i].bw, 0);
    for (int i = 0; i < n; i++)
        budget_release(b, 16 * KiB);
}

static struct budget *make(const struct budget_config *c)
{
    struct budget *b = NULL;

    cr_assert_eq(budget_new(c, &b), 0);
    return b;
}

Test(budget, rejects_inconsistent_configs)
{
    struct budget *b = NULL;
    struct budget_config c = cfg;

    c.turn = 300 * KiB; /* not a power of two */
    cr_expect_eq(budget_new(&c, &b), -EINVAL);
    c = cfg;
    c.min = 512 * KiB; /* min above turn */
    cr_expect_eq(budget_new(&c, &b), -EINVAL);
    c = cfg;
    c.total = 128 * KiB; /* not even one turn */
    cr_expect_eq(budget_new(&c, &b), -EINVAL);
    c = cfg;
    c.stall_ms = 0;
    cr_expect_eq(budget_new(&c, &b), -EINVAL);
    cr_expect_null(b);
}

Test(budget, one_reader_gets_the_largest_message_and_small_wants_get_min)
{
    struct budget *b = make(&cfg);
    struct waiter w[1];

    init_waiters(w, 1);
    cr_expect_eq(budget_acquire(b, &w[0].bw, 100 * 1024 * KiB), 1024 * KiB);
    budget_release(b, 1024 * KiB);
    cr_expect_eq(budget_acquire(b, &w[0].bw, 5000), 16 * KiB, "a little output: min");
    budget_release(b, 16 * KiB);
    cr_expect_eq(budget_acquire(b, &w[0].bw, 0), 16 * KiB, "nothing known yet: min");
    budget_release(b, 16 * KiB);
    cr_expect_eq(budget_acquire(b, &w[0].bw, 100 * KiB), 100 * KiB, "no more than there is");
    budget_release(b, 100 * KiB);
    budget_idle(b, &w[0].bw);

    struct budget_stats st;
    budget_get_stats(b, &st);
    cr_expect_eq(st.readers, 0);
    cr_expect_eq(st.reserved, 0);
    budget_free(b);
}

Test(budget, few_readers_share_equally)
{
    struct budget *b = make(&cfg);
    struct waiter w[2];

    init_waiters(w, 2);
    cr_expect_eq(budget_acquire(b, &w[0].bw, 1 << 30), 1024 * KiB, "alone: everything");
    budget_release(b, 1024 * KiB);
    cr_expect_eq(budget_acquire(b, &w[1].bw, 1 << 30), 512 * KiB, "two readers: half each");
    cr_expect_eq(budget_acquire(b, &w[0].bw, 1 << 30), 512 * KiB);
    budget_release(b, 512 * KiB);
    budget_release(b, 512 * KiB);
    budget_idle(b, &w[0].bw);
    budget_idle(b, &w[1].bw);
    budget_free(b);
}

Test(budget, many_readers_take_turns_in_order)
{
    struct budget *b = make(&cfg);
    struct waiter w[9];
    struct budget_stats st;

    init_waiters(w, 9);
    /* 8 readers: an equal share (128 KiB) is below a turn: 4 turns run, 4 wait in order. */
    count_readers(b, w, 8);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(budget_acquire(b, &w[i].bw, 1 << 30), 256 * KiB, "turn %d", i);
    for (int i = 4; i < 8; i++)
        cr_expect_eq(budget_acquire(b, &w[i].bw, 1 << 30), 0, "reader %d waits", i);
    budget_get_stats(b, &st);
    cr_expect_eq(st.queued, 4);
    cr_expect_eq(st.reserved, 1024 * KiB);

    /* Releases grant the waiters in the order they came, each with a turn reserved. */
    budget_release(b, 256 * KiB);
    cr_expect_eq(atomic_load(&w[4].grants), 1);
    cr_expect_eq(atomic_load(&w[5].grants), 0);
    budget_release(b, 256 * KiB);
    cr_expect_eq(atomic_load(&w[5].grants), 1);
    cr_expect_lt(w[4].order, w[5].order);
    cr_expect_eq(budget_acquire(b, &w[4].bw, 1 << 30), 256 * KiB, "takes its grant");
    cr_expect_eq(budget_acquire(b, &w[5].bw, 1 << 30), 256 * KiB);

    /* A reader whose turn ended queues behind those still waiting. */
    cr_expect_eq(budget_acquire(b, &w[0].bw, 1 << 30), 0);
    budget_release(b, 256 * KiB);
    cr_expect_eq(atomic_load(&w[6].grants), 1);
    cr_expect_eq(atomic_load(&w[0].grants), 0);

    /* A small want never waits, even with a queue. */
    cr_expect_eq(budget_acquire(b, &w[8].bw, 1000), 16 * KiB);
    budget_get_stats(b, &st);
    cr_expect_eq(st.queued, 2, "w7 and w0");
    cr_expect_eq(st.readers, 9);
    cr_expect_not(st.stalled);
    cr_expect(budget_cancel(b, &w[7].bw));
    cr_expect(budget_cancel(b, &w[0].bw));
    budget_free(b);
}

Test(budget, cancel_takes_a_waiter_out)
{
    struct budget *b = make(&cfg);
    struct waiter w[6];
    struct budget_stats st;

    init_waiters(w, 6);
    count_readers(b, w, 6);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(budget_acquire(b, &w[i].bw, 1 << 30), 256 * KiB);
    cr_assert_eq(budget_acquire(b, &w[4].bw, 1 << 30), 0);
    cr_assert_eq(budget_acquire(b, &w[5].bw, 1 << 30), 0);
    cr_expect(budget_cancel(b, &w[4].bw));
    cr_expect_not(budget_cancel(b, &w[4].bw), "not queued any more");
    budget_release(b, 256 * KiB);
    cr_expect_eq(atomic_load(&w[4].grants), 0, "cancelled: never granted");
    cr_expect_eq(atomic_load(&w[5].grants), 1);
    cr_expect_not(budget_cancel(b, &w[5].bw), "granted: the grant is on its way");
    budget_get_stats(b, &st);
    cr_expect_eq(st.queued, 0);
    /* w5 ends without taking its turn: idle gives the grant back. */
    budget_idle(b, &w[5].bw);
    budget_get_stats(b, &st);
    cr_expect_eq(st.reserved, 3 * 256 * KiB, "w1..w3's turns only");
    cr_expect_eq(budget_acquire(b, &w[5].bw, 1 << 30), 256 * KiB,
                 "a fresh turn, not the old grant");
    budget_free(b);
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(budget, stalled_turns_fall_back_to_small_messages)
{
    struct budget *b = make(&cfg);
    struct waiter w[6];
    struct budget_stats st;
    int64_t t0;

    init_waiters(w, 6);
    count_readers(b, w, 6);
    /* Four readers take the whole budget and never read again. */
    for (int i = 0; i < 4; i++)
        cr_assert_eq(budget_acquire(b, &w[i].bw, 1 << 30), 256 * KiB);
    t0 = mono_ms();
    cr_assert_eq(budget_acquire(b, &w[4].bw, 1 << 30), 0);
    while (!atomic_load(&w[4].grants) && mono_ms() - t0 < 5000)
        usleep(1000);
    cr_assert_eq(atomic_load(&w[4].grants), 1, "the timer must grant the stuck waiter");
    cr_expect_geq(mono_ms() - t0, cfg.stall_ms - 5, "not before stall_ms");
    cr_expect_eq(budget_acquire(b, &w[4].bw, 1 << 30), 16 * KiB, "granted a small message");
    budget_get_stats(b, &st);
    cr_expect(st.stalled);
    /* While stalled, nobody waits: small messages at once. */
    cr_expect_eq(budget_acquire(b, &w[5].bw, 1 << 30), 16 * KiB);
    /* A release that leaves room for a turn ends the stall (the small messages count too:
     * 4 turns + 2 small ones, one turn back is not yet room for another). */
    budget_release(b, 256 * KiB);
    budget_get_stats(b, &st);
    cr_expect(st.stalled);
    budget_release(b, 256 * KiB);
    budget_get_stats(b, &st);
    cr_expect_not(st.stalled);
    budget_free(b);
}

/* ---- churn: threads acquiring, waiting for grants, releasing, cancelling ---------------- */

#define CHURN_THREADS 8
#define CHURN_ROUNDS  3000

struct churn {
    struct budget *b;
    struct budget_waiter bw;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool granted;
    unsigned seed;
};

static void churn_grant(struct budget_waiter *w)
{
    struct churn *c = (struct churn *)((char *)w - offsetof(struct churn, bw));

    pthread_mutex_lock(&c->mu);
    c->granted = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void *churn_thread(void *arg)
{
    struct churn *c = arg;

    for (int i = 0; i < CHURN_ROUNDS; i++) {
        uint64_t want = (rand_r(&c->seed) % 4) ? 1 << 30 : rand_r(&c->seed) % (64 * KiB);
        size_t got = budget_acquire(c->b, &c->bw, want);

        if (!got) {
            if (rand_r(&c->seed) % 8 == 0 && budget_cancel(c->b, &c->bw)) {
                budget_idle(c->b, &c->bw);
                continue; /* gave up waiting */
            }
            pthread_mutex_lock(&c->mu);
            while (!c->granted)
                pthread_cond_wait(&c->cv, &c->mu);
            c->granted = false;
            pthread_mutex_unlock(&c->mu);
            got = budget_acquire(c->b, &c->bw, want);
            cr_assert_gt(got, 0, "a grant is taken by the next acquire");
        }
        if (rand_r(&c->seed) % 16 == 0)
            sched_yield();
        budget_release(c->b, got);
        if (rand_r(&c->seed) % 4 == 0)
            budget_idle(c->b, &c->bw);
    }
    budget_idle(c->b, &c->bw);
    return NULL;
}

Test(budget, churn_ends_balanced, .timeout = 60)
{
    struct budget *b = make(&cfg);
    struct churn c[CHURN_THREADS];
    pthread_t t[CHURN_THREADS];
    struct budget_stats st;

    memset(c, 0, sizeof(c));
    for (int i = 0; i < CHURN_THREADS; i++) {
        c[i].b = b;
        c[i].bw.on_grant = churn_grant;
        c[i].seed = (unsigned)i + 1;
        pthread_mutex_init(&c[i].mu, NULL);
        pthread_cond_init(&c[i].cv, NULL);
        cr_assert_eq(pthread_create(&t[i], NULL, churn_thread, &c[i]), 0);
    }
    for (int i = 0; i < CHURN_THREADS; i++)
        pthread_join(t[i], NULL);
    budget_get_stats(b, &st);
    cr_expect_eq(st.reserved, 0, "every byte given back");
    cr_expect_eq(st.queued, 0);
    cr_expect_eq(st.readers, 0);
    budget_free(b);
}
