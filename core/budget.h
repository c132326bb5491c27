#pragma once
/* budget: the memory that readers' messages in flight share, and the turns they take when it
 * cannot give every reader an efficient message at once.
 *
 * A reader asks for the capacity of its next message. With few readers, each gets an equal
 * share of the total (a power of two, up to `max`). With many, equal shares would be small
 * messages, and every small message costs its reader (and the sender) a wake-up: so instead
 * readers take turns, `turn` bytes each, as many at once as the total allows, in the order
 * they asked (FIFO). The capacity is reserved until the message is gone (budget_release).
 *
 * A waiting reader is never stuck behind readers that stopped reading: when the head of the
 * queue has waited `stall_ms`, the budget is declared stalled and every waiter, and every
 * reader after them, goes on at once with `min`-byte messages (what a reader could cost
 * before turns existed), until a release shows room again.
 *
 * No gRPC here (the server wraps it): a waiter learns of its grant through its callback,
 * called once, without the budget's lock, from the releasing thread or the budget's timer
 * thread. Thread-safe. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct budget;

struct budget_waiter {
    /* Set by the owner before the first budget_acquire; called once per grant. */
    void (*on_grant)(struct budget_waiter *w);
    /* Private to budget.c. */
    TAILQ_ENTRY(budget_waiter) link; /* in the queue, then in the list of grants to tell */
    int64_t since_ms;
    size_t granted;
    bool queued, has_grant, sending;
};

struct budget_config {
    size_t total; /* bytes of messages in flight shared by all readers */
    size_t max;   /* the largest message (few readers) */
    size_t turn;  /* the message of a reader's turn (many readers); a power of two */
    size_t min;   /* the smallest message, and the size when turns have stalled */
    int stall_ms; /* how long the queue's head may wait before turns count as stalled */
};

/* 0 or -errno (EINVAL for an inconsistent config, ENOMEM). */
int budget_new(const struct budget_config *cfg, struct budget **ret);
/* Every waiter must have been released or cancelled. Stops the timer thread. */
void budget_free(struct budget *b);

/* The capacity (>= cfg.min) reserved for w's next message, which will carry at most `want`
 * bytes (what there is to send; up to min, a message never waits); or 0 when w was queued
 * for a turn: w's
 * on_grant will be called, and w then calls budget_acquire again to take what it was
 * granted. w counts as a reader (for the shares) from its first acquire until
 * budget_idle. */
size_t budget_acquire(struct budget *b, struct budget_waiter *w, uint64_t want);
/* Gives back what an acquire returned (the message is gone); may grant waiting readers. */
void budget_release(struct budget *b, size_t bytes);
/* w has nothing to send for now (or is done): no longer counts as a reader, and a grant it
 * has not taken is given back (a stream that ended while its turn was on its way). w must
 * not be queued. */
void budget_idle(struct budget *b, struct budget_waiter *w);
/* Takes w out of the queue. True when it was still queued (no grant will come); false when a
 * grant is already on its way (on_grant runs, or ran) or w was not queued. */
bool budget_cancel(struct budget *b, struct budget_waiter *w);

/* For tests and benchmarks: readers counted, bytes reserved, waiters queued, stalled. */
struct budget_stats {
    unsigned readers, queued;
    size_t reserved;
    bool stalled;
};
void budget_get_stats(struct budget *b, struct budget_stats *ret);
