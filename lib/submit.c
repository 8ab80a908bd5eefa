/*
 * lib/submit.c — what reaches a pool's queues from a task or a thread:
 * submission, and a timer that stands for a future.
 *
 * Owns: the acceptance rule (a running pool takes everything; a draining
 * one only its own tasks' submissions), the checked build's "queued once"
 * mark, the pin that keeps a pool alive while an outside thread pushes
 * into it (ext_touching for a push and its signal; the inline runners' pin,
 * outside_running, is workers.c's), and the local pop of a task its waiter
 * is about to run inline: from the worker's own deque, or from the pool's
 * outside slot.
 *
 * A worker of the pool pushes on its own deque; anyone else puts the task in
 * the pool's outside slot or on its injection queue (runq.c), and then
 * signals the scheduler (sched.c), all while pinned: once queued, the task
 * may run and end and a drain finish before the signal, and destroy
 * (pool.c) waits for the pin to drop.
 */
#include "sched_internal.h"

#define wcount async__worker_count

/* The outside slot's credit: a thread that took its slotted task back
 * tries the slot with its next SLOT_CREDIT submissions; one without credit
 * tries it once every SLOT_PROBE. */
#define SLOT_CREDIT 8u
#define SLOT_PROBE  64u

static bool accepts(struct async_pool *pool, int ph)
{
    if (ph == PH_RUNNING)
        return true;
    if (ph != PH_DRAINING)
        return false;
    struct future *cur = async__current_task();
    return cur && cur->pool == pool;   /* own work during a drain */
}

/* Checked builds: a record enters a run queue once in its life (a second
 * submission of a record, or a requeue, would run it twice or leak it).
 * Its state may be anything by now: a record published before it is queued
 * (a scope's task, a continuation) may already have been cancelled, or
 * claimed and run inline by a scope's close; the claim CAS keeps it to one
 * run, and the queue drops it unrun. */
static void mark_queued(struct future *f)
{
#if ASYNC_CHECKS
    uint8_t old = atomic_fetch_or_explicit(&f->flags, ASYNC_RF_QUEUED, memory_order_relaxed);
    ASYNC_ASSERT(!(old & ASYNC_RF_QUEUED));
#else
    (void)f;
#endif
}

/* Into the outside slot (runq.c, "The outside slot"), if this thread has
 * credit, and nothing else waits there or in the injection queue. */
static bool slot_put(struct async_tls *t, struct async_pool *pool, struct future *f)
{
    if (t->slot_credit == 0 && (++t->slot_probe & (SLOT_PROBE - 1)) != 1)
        return false;
    uintptr_t word = (uintptr_t)f | (t->slot_credit ? ASYNC_SLOT_HOLD : 0) |
                     ((uintptr_t)++t->puts << 1 & ASYNC_SLOT_TAG);
    if (t->slot_credit)
        t->slot_credit--;
    uintptr_t none = 0;
    return !atomic_load_explicit(&pool->ext_next, memory_order_relaxed) &&
           async__mpsc_empty(&pool->inj) &&
           atomic_compare_exchange_strong_explicit(&pool->ext_next, &none, word,
                   memory_order_seq_cst, memory_order_relaxed);
}

int async__pool_submit(struct async_pool *pool, struct future *f)
{
    struct async_tls *t = async__tls_get();
    struct async_worker *w = t->worker;
    if (w && w->pool == pool) {
        if (!accepts(pool, atomic_load_explicit(&pool->h.phase, memory_order_acquire)))
            return ECANCELED;
        wcount(w, ASYNC_C_SUBMITTED);
        mark_queued(f);
        if (async__deque_push(&w->dq, f) != 0)
            async__mpsc_push(&pool->inj, f);   /* no memory to grow: the shared queue */
        async__signal_work(pool);
        return 0;
    }
    atomic_fetch_add_explicit(&pool->ext_touching, 1, memory_order_seq_cst);
    if (!accepts(pool, atomic_load_explicit(&pool->h.phase, memory_order_seq_cst))) {
        ASYNC_DEC(&pool->ext_touching, memory_order_release);
        return ECANCELED;
    }
    atomic_fetch_add_explicit(&pool->h.ext_c[ASYNC_C_SUBMITTED], 1, memory_order_relaxed);
    mark_queued(f);
    if (!slot_put(t, pool, f))
        async__mpsc_push(&pool->inj, f);
    /* Still pinned: once queued the task may run and end, and a drain
     * finish, before the signal. */
    async__signal_work(pool);
    ASYNC_DEC(&pool->ext_touching, memory_order_release);
    return 0;
}

/* Unpark every worker thread (a spurious wake for all but those parked in
 * a blocked call, which re-read the earliest timer, block.c). */
static void wake_blocked(struct async_pool *pool)
{
    ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
    unsigned n = atomic_load(&pool->nslots);
    for (unsigned i = 0; i < n; i++) {
        struct async_worker *w = pool->slots[i];
        if (w->has_thread && !w->dead)
            async__unpark(w->parker);   /* type-stable parker */
    }
    ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
}

int async__pool_timer_add(struct async_pool *pool, struct async_timer *t)
{
    /* Bracketed like an outside submission: once the destroyer has changed
     * the phase and seen ext_touching == 0, no timer enters the heap, and
     * the drain in pool_free finds every one that did. */
    atomic_fetch_add_explicit(&pool->ext_touching, 1, memory_order_seq_cst);
    int rc = ECANCELED;
    bool earliest = false;
    if (accepts(pool, atomic_load_explicit(&pool->h.phase, memory_order_seq_cst)))
        rc = async__timer_add(pool, t, &earliest);
    if (earliest && !(atomic_load_explicit(&pool->nidle, memory_order_relaxed) &&
                      async__wake_one(pool)))
        wake_blocked(pool);   /* nobody idle: the blocked serve timers too */
    atomic_fetch_sub_explicit(&pool->ext_touching, 1, memory_order_release);
    return rc;
}

bool async__pool_pop_local(struct future *f)
{
    struct async_worker *w = async__tls_get()->worker;
    if (!w || w->pool != f->pool || async__deque_peek_bottom(&w->dq) != f)
        return false;
    return async__deque_pop(&w->dq) == f;
}

void async__test_slot_credit(unsigned n)
{
    async__tls_get()->slot_credit = (uint16_t)(n < SLOT_CREDIT ? n : SLOT_CREDIT);
}

bool async__pool_unslot(struct async_pool *pool, struct future *f)
{
    uintptr_t v = atomic_load_explicit(&pool->ext_next, memory_order_relaxed);
    if (async__slot_record(v) != f ||
        !atomic_compare_exchange_strong_explicit(&pool->ext_next, &v, 0,
                memory_order_seq_cst, memory_order_relaxed))
        return false;
    async__tls_get()->slot_credit = SLOT_CREDIT;
    return true;
}

bool async__pool_cancelling(const struct async_pool *pool)
{
    return pool && async__pool_phase_cancelling(pool);
}
