/*
 * lib/timer.c — deadlines of parked fibers: a min-heap per pool.
 *
 * Owns: the pool's timer heap. A fiber that parks with a finite deadline
 * (a timed channel operation, select, future wait, or async_sleep) puts a
 * struct async_timer, on its own stack, in its pool's heap; the workers run
 * what is due between tasks and sleep no longer than the earliest deadline
 * when idle. A timer is not a thread: 100,000 sleeping tasks cost 100,000
 * heap entries. Firing a timer only wakes its fiber; the wait loop sees its
 * deadline passed and returns ETIMEDOUT (or a sleep returns).
 *
 * Rejected: a timing wheel (its granularity would round every deadline; a
 * heap is O(log n) for the few thousand timers a pool has at once, and exact),
 * and a timer per worker (a fiber may be resumed by any worker, so its
 * deadline would have to move with it).
 *
 * Invariants (under timer_lock): heap[0..ntimers) is a min-heap on `when`;
 * heap[i]->idx == i; a timer not in the heap has idx == ASYNC_NO_TIMER;
 * timer_next == heap[0]->when, or INT64_MAX when empty (stored under the
 * lock, read lock-free as a hint: a stale value only makes a worker look
 * again or sleep until the deadline it saw).
 * A timer may also stand for a future (compose.c's async_after): its target
 * is then a callback (ASYNC_TARGET_CALL), run like any wake once the lock is
 * released. A pool's destroyer fires what is left in the heap before the
 * heap goes (async__timers_drain): the callback sees its deadline not
 * reached and cancels its future.
 * Locks: timer_lock is a leaf; targets are woken after it is released.
 * This file calls only the wait layer (async__wake): the caller of
 * async__timer_add wakes an idle worker when the new timer is the earliest
 * (it may be sleeping past it).
 */
#include "sched_internal.h"

#include <string.h>

static void place(struct async_pool *pool, size_t i, struct async_timer *t)
{
    pool->heap[i] = t;
    t->idx = i;
}

static void sift_up(struct async_pool *pool, size_t i)
{
    struct async_timer *t = pool->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (pool->heap[parent]->when <= t->when)
            break;
        place(pool, i, pool->heap[parent]);
        i = parent;
    }
    place(pool, i, t);
}

static void sift_down(struct async_pool *pool, size_t i)
{
    struct async_timer *t = pool->heap[i];
    size_t n = pool->ntimers;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && pool->heap[c + 1]->when < pool->heap[c]->when)
            c++;
        if (t->when <= pool->heap[c]->when)
            break;
        place(pool, i, pool->heap[c]);
        i = c;
    }
    place(pool, i, t);
}

static void publish_next(struct async_pool *pool)
{
    atomic_store_explicit(&pool->timer_next,
                          pool->ntimers ? pool->heap[0]->when : INT64_MAX,
                          memory_order_release);
}

/* Remove heap[i]; under timer_lock. */
static void remove_at(struct async_pool *pool, size_t i)
{
    struct async_timer *t = pool->heap[i];
    t->idx = ASYNC_NO_TIMER;
    size_t last = --pool->ntimers;
    if (i != last) {
        place(pool, i, pool->heap[last]);
        if (i > 0 && pool->heap[i]->when < pool->heap[(i - 1) / 2]->when)
            sift_up(pool, i);
        else
            sift_down(pool, i);
    }
}

int async__timer_add(struct async_pool *pool, struct async_timer *t, bool *earliest)
{
    async__lock(&pool->timer_lock);
    if (pool->ntimers == pool->cap) {
        size_t cap = pool->cap ? pool->cap * 2 : 64;
        struct async_timer **h = async__calloc(cap, sizeof *h);
        if (!h) {
            async__unlock(&pool->timer_lock);
            return ENOMEM;
        }
        if (pool->ntimers)
            memcpy(h, pool->heap, pool->ntimers * sizeof *h);
        async__free(pool->heap);
        pool->heap = h;
        pool->cap = cap;
    }
    place(pool, pool->ntimers++, t);
    sift_up(pool, t->idx);
    bool first = t->idx == 0;
    publish_next(pool);
    async__unlock(&pool->timer_lock);
    *earliest = first;
    return 0;
}

bool async__timer_del(struct async_pool *pool, struct async_timer *t)
{
    async__lock(&pool->timer_lock);
    bool was = t->idx != ASYNC_NO_TIMER;
    if (was) {
        remove_at(pool, t->idx);
        publish_next(pool);
    }
    async__unlock(&pool->timer_lock);
    return was;
}

bool async__timers_due(struct async_pool *pool, int64_t now)
{
    return atomic_load_explicit(&pool->timer_next, memory_order_acquire) <= now;
}

int64_t async__timers_next(struct async_pool *pool)
{
    int64_t n = atomic_load_explicit(&pool->timer_next, memory_order_acquire);
    return n == INT64_MAX ? ASYNC_FOREVER : n;
}

void async__timers_run(struct async_pool *pool)
{
    if (atomic_load_explicit(&pool->timer_next, memory_order_relaxed) == INT64_MAX)
        return;
    int64_t now = async_now();
    while (async__timers_due(pool, now)) {
        uintptr_t due[32];
        unsigned n = 0;
        async__lock(&pool->timer_lock);
        while (n < 32 && pool->ntimers && pool->heap[0]->when <= now) {
            due[n++] = pool->heap[0]->target;
            remove_at(pool, 0);
        }
        publish_next(pool);
        async__unlock(&pool->timer_lock);
        for (unsigned i = 0; i < n; i++)
            async__wake(due[i]);   /* type-stable targets */
    }
}

void async__timers_drain(struct async_pool *pool)
{
    for (;;) {
        uintptr_t t = 0;
        async__lock(&pool->timer_lock);
        if (pool->ntimers) {
            t = pool->heap[0]->target;
            remove_at(pool, 0);
        }
        publish_next(pool);
        async__unlock(&pool->timer_lock);
        if (!t)
            return;
        async__wake(t);
    }
}

void async__timers_fini(struct async_pool *pool)
{
    async__free(pool->heap);
    pool->heap = NULL;
    pool->ntimers = pool->cap = 0;
}
