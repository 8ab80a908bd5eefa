/*
 * lib/sched.c — the scheduler: workers and their loop.
 *
 * Owns: the worker loop, finding work (run-next slot, own deque, injection
 * queues, the outside fiber slot, stealing), going idle. Around it:
 * switch.c (the switches a task makes when it parks, is resumed or
 * yields, the workers' caches of free stacks, where a woken fiber goes,
 * and plain threads that run a fiber they woke), runq.c (the injection
 * queues, the walks of what is queued), stats.c
 * (the counters and their snapshot), workers.c (the idle list, waking,
 * starting workers and replacements for blocked ones), submit.c
 * (submission and what else reaches a pool from outside); block.c decides
 * when to park; timer.c keeps deadlines.
 *
 * Items. A worker's deque and the injection queues hold two kinds of work: a
 * task record nobody has started (untagged pointer), or a fiber made
 * runnable, with its parked task on it (pointer | ASYNC_ITEM_FIBER in a deque; the
 * fiber injection queue holds only fibers). Records run as a plain call on
 * the worker's current stack; a fiber is resumed by switching to it.
 *
 * Scheduling. A worker takes its run-next fiber (Go's runnext: the fiber its
 * own task just woke, so a pair handing values back and forth stays on one
 * thread), then its own deque (LIFO), then the injection queues, then
 * becomes a "searcher" and steals from the others, then parks. Every 61st
 * turn it looks at the injection queues first, and after RUNNEXT_MAX run-next
 * picks in a row it goes round the loop, so neither can starve the other.
 * A submission wakes at most one idle worker, and only when nobody is
 * searching already (Go's and Tokio's rule: a searcher will find the new
 * work, so waking another would only make a thundering herd). A searcher
 * that finds work stops searching and, if it was the last searcher and more
 * work is visible, wakes one more worker, so parallelism ramps up one worker
 * at a time. Putting a
 * fiber in the run-next slot wakes nobody (Tokio's LIFO slot): its waker
 * runs it as soon as its own task blocks or ends, which in a hand-off is
 * at once. A searcher takes another worker's run-next fiber only when it
 * has seen the same fiber there, with the owner making no progress, for
 * RUNNEXT_GRACE (Go's rule): a hand-off between two tasks takes far less,
 * and stealing it would split the pair across threads. Rejected: one mutex+condvar queue
 * (every submit and every take contends on one lock and every submit
 * signals), and waking on every submission.
 *
 * Goroutine mode (pool->stacks != NULL). A worker thread switches at once
 * from its own stack to a stack fiber and runs its loop there; tasks run as
 * calls on top of the loop. When a task parks (block.c), its fiber — loop
 * frames below, task frames above — is set aside, and the worker goes on
 * either on its run-next fiber (a direct switch) or on a fresh fiber from
 * its cache that starts the loop again. A loop that finds a runnable fiber
 * switches to it and abandons its own stack, which the landing side gives
 * back to the cache. So a task that never blocks costs no switch at all, and
 * a parked task costs one stack. Any worker may resume any fiber of its pool:
 * the loop frames under a resumed task may have been started by another
 * worker, so the loop reads "which worker am I" afresh at every turn.
 *
 * The switches themselves, the hand-over protocol between the two sides of
 * a switch and the fiber states are switch.c's.
 *
 * Lost wake-ups are excluded by a Dekker pair of seq_cst fences:
 *   submitter: publish work; fence; read nsearching and nidle.
 *   idler:     join idle list (nidle++); stop searching; fence; re-check
 *              every queue (and the shutdown phase) before parking.
 * Either the submitter sees the idler (and wakes it) or the idler sees the
 * work. The same pair covers blocking (nblocked++; fence; look for queued
 * work) against submitting when every worker is blocked.
 *
 * Shutdown: see pool.c. Workers leave their loop when the pool is stopping
 * or cancelling and (goroutine mode) no fiber of the pool is parked or
 * runnable: a parked task must still be woken and finish before the stacks
 * it runs on can be given back.
 */
#include "sched_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>

#define RETIRE_NS        (3 * ASYNC_SECOND)
#define TRIM_DELAY_NS    (10 * ASYNC_MILLISECOND)   /* idle this long: stacks go back */
#define SEARCH_NS        (20 * ASYNC_MICROSECOND)
#define RUNNEXT_GRACE    (5 * ASYNC_MICROSECOND)
#define FAIR_TICK        61u
#define wcount async__worker_count

static void sched_main(void *transfer);
static void *worker_main(void *arg);

/* -------------------------------------------------------- workers */

/* v's run-next fiber, if this thief has watched it sit there while v made
 * no progress for RUNNEXT_GRACE. */
static struct async_fiber *steal_runnext(struct async_worker *w, struct async_worker *v,
                                         int64_t now)
{
    struct async_fiber *f = atomic_load_explicit(&v->runnext, memory_order_acquire);
    if (!f)
        return NULL;
    unsigned turns = atomic_load_explicit(&v->turns, memory_order_relaxed);
    if (w->peek_v != v || w->peek_f != f || w->peek_turns != turns) {
        w->peek_v = v;
        w->peek_f = f;
        w->peek_turns = turns;
        w->peek_at = now;
        return NULL;
    }
    if (now - w->peek_at < RUNNEXT_GRACE ||
        !atomic_compare_exchange_strong_explicit(&v->runnext, &f, NULL,
                memory_order_acq_rel, memory_order_relaxed))
        return NULL;
    w->peek_v = NULL;
    return f;
}

static void *steal_from(struct async_worker *w, int64_t now)
{
    struct async_pool *pool = w->pool;
    unsigned n = atomic_load_explicit(&pool->nslots, memory_order_acquire);
    if (n < 2)
        return NULL;
    unsigned start = (unsigned)(async__rand() % n);
    for (unsigned i = 0; i < n; i++) {
        struct async_worker *v = pool->slots[(start + i) % n];
        if (v == w)
            continue;
        void *it = async__deque_steal(&v->dq);
        if (!it && v->pool->stacks) {
            struct async_fiber *f = steal_runnext(w, v, now);
            it = f ? async__fiber_item(f) : NULL;
        }
        if (it) {
            wcount(w, ASYNC_C_STOLEN);
            return it;
        }
    }
    return NULL;
}

/* An outside slot (word v, nonzero) that this worker watches through *peek
 * and *at: true once it has seen the same word there for RUNNEXT_GRACE. */
static bool seen_long_enough(uintptr_t v, uintptr_t *peek, int64_t *at)
{
    int64_t now = async_now();
    if (*peek != v) {
        *peek = v;
        *at = now;
        return false;
    }
    return now - *at >= RUNNEXT_GRACE;
}

/* The outside fiber slot's fiber, once this worker has seen the same one
 * there (the same put) for RUNNEXT_GRACE: its waker may be about to take
 * it back (runq.c, "Fibers woken from outside"). */
static struct async_fiber *xslot_take(struct async_worker *w)
{
    struct async_xslot *x = w->pool->xslot;
    uintptr_t v = atomic_load_explicit(&x->word, memory_order_relaxed);
    if (!v || !seen_long_enough(v, &w->xpeek, &w->xpeek_at) ||
        !atomic_compare_exchange_strong_explicit(&x->word, &v, 0,
                memory_order_seq_cst, memory_order_relaxed))
        return NULL;
    w->xpeek = 0;
    return async__xslot_fiber(v);
}

/* The oldest new task from outside the workers: the outside slot's, then
 * the injection queue's (runq.c, "The outside slot"). A record its
 * submitter holds (ASYNC_SLOT_HOLD) is taken only once this worker has
 * seen it there, the same put, for RUNNEXT_GRACE, and meanwhile the
 * queue's tasks, submitted after it, wait too. `look`: when the queue is
 * empty, look at the slot at all (a searcher looks every eighth round: each
 * look takes the line from the submitter, whose next put then misses). */
static struct future *new_take(struct async_worker *w, bool look)
{
    struct async_pool *pool = w->pool;
    bool queued = !async__mpsc_drained(&pool->inj);
    if (!look && !queued)
        return NULL;
    uintptr_t v = atomic_load_explicit(&pool->ext_next, memory_order_relaxed);
    if (v) {
        if ((v & ASYNC_SLOT_HOLD) && !seen_long_enough(v, &w->speek, &w->speek_at))
            return NULL;
        v = atomic_exchange_explicit(&pool->ext_next, 0, memory_order_seq_cst);
        if (v)
            return async__slot_record(v);
    }
    return queued ? async__mpsc_pop_slow(&pool->inj) : NULL;
}

/* From the injection queues: runnable fibers first (their tasks have
 * started; finishing them frees stacks), or new tasks first on the
 * fairness tick (a task that yields in a loop must not starve a task that
 * has not started: Go's Gosched lets a new goroutine run). `look`: look at
 * the outside slots (new_take). */
static void *inject_take(struct async_worker *w, bool new_first, bool look)
{
    struct async_pool *pool = w->pool;
    if (new_first) {
        void *it = new_take(w, look);
        if (it)
            return it;
    }
    struct async_fiber *f = async__mpsc_pop(&pool->finj);
    if (!f && look && pool->xslot)
        f = xslot_take(w);
    return f ? async__fiber_item(f) : new_take(w, look);
}

static void *search(struct async_worker *w)
{
    struct async_pool *pool = w->pool;
    if (!w->searching) {
        unsigned busy = atomic_load(&pool->nalive) - atomic_load(&pool->nidle);
        if (2 * atomic_load(&pool->nsearching) >= busy)
            return NULL;   /* enough searchers already */
        w->searching = true;
        atomic_fetch_add_explicit(&pool->nsearching, 1, memory_order_seq_cst);
    }
    int64_t now = async_now(), until = now + SEARCH_NS;
    for (unsigned round = 0;; round++) {
        void *it = steal_from(w, now);
        if (!it)
            it = inject_take(w, false, (round & 7) == 0);
        if (it)
            return it;
        if (atomic_load_explicit(&pool->h.phase, memory_order_relaxed) != PH_RUNNING &&
            !pool->stacks)
            return NULL;
        if ((round & 7) == 7) {
            now = async_now();
            if (now >= until)
                return NULL;
            if (async__timers_due(pool, now))
                return NULL;   /* back to the loop, which runs them */
        }
        sched_yield();   /* not a pause loop: it would contend with the
                            threads that make the work, and on a machine
                            with no spare core take their CPU */
    }
}

static void *find_work(struct async_worker *w)
{
    struct async_pool *pool = w->pool;
    void *it = NULL;
    if (++w->tick % FAIR_TICK == 0)
        it = inject_take(w, true, true);
    if (!it && atomic_load_explicit(&w->runnext, memory_order_relaxed)) {
        struct async_fiber *f = atomic_exchange_explicit(&w->runnext, NULL,
                                                         memory_order_acq_rel);
        it = f ? async__fiber_item(f) : NULL;
    }
    if (!it)
        it = async__deque_pop(&w->dq);
    if (!it)
        it = inject_take(w, false, true);
    if (!it)
        it = search(w);
    if (it && w->searching) {
        /* The last searcher found work: if there is more, wake another (not
         * otherwise: a hand-off from one thread to a task would wake a
         * second worker for nothing every time, and on a small machine it
         * would take the CPU from the very threads doing the hand-off). */
        w->searching = false;
        unsigned searching = atomic_fetch_sub_explicit(&pool->nsearching, 1,
                                                       memory_order_seq_cst);
        ASYNC_ASSERT(searching > 0);
        if (searching == 1 && async__work_visible(pool))
            async__signal_work(pool);
    }
    return it;
}

void async__pool_count_unrun(struct future *f)
{
    if (atomic_load_explicit(&f->state, memory_order_seq_cst) == ASYNC_S_CANCELLED)
        async__pool_count(f->pool, ASYNC_C_CANCELLED);
}

static void run_popped(struct future *f)
{
    /* it entered a queue (once: async__pool_submit) */
    ASYNC_ASSERT(atomic_load_explicit(&f->flags, memory_order_relaxed) & ASYNC_RF_QUEUED);
    if (async__task_claim(f))
        async__task_run(f);
    else
        async__pool_count_unrun(f);
    async__record_release(f);   /* the queue's reference */
}

/* Park until there is work (or a timer is due). false: this worker should
 * leave its loop. */
static bool go_idle(struct async_worker *w)
{
    struct async_pool *pool = w->pool;
    async__stop_searching(w);   /* before joining the idle list: a waker that takes
                            us off it makes us a searcher again */
    async__idle_push(w);
    ASYNC_FENCE();
    int ph = atomic_load(&pool->h.phase);
    if (ph == PH_DRAINING && async__quiescent(pool))
        async__set_stopping(pool);
    if (async__should_exit(pool) || async__work_visible(pool) ||
        async__timers_due(pool, async_now())) {
        async__idle_remove(w);
        return !async__should_exit(pool);
    }
    /* Nothing left to do: a saturation episode is over, the next may log.
     * Not when a blocked worker wakes: it frees a worker for the next
     * queued task, which may block again at once, and the pool would log a
     * line per task while it is merely busy. */
    if (atomic_load_explicit(&pool->saturated, memory_order_relaxed)) {
        ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
        atomic_store(&pool->saturated, false);
        ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
    }
    /* A burst is over once the worker has stayed idle TRIM_DELAY_NS: then
     * what its parked tasks' stacks held goes back. Not at once: a pool
     * merely between two hand-offs (a feeder slower than its workers) would
     * pay the kernel's page work in the middle of its burst. */
    int64_t trim = pool->stacks && async__stacks_trimmable(pool->stacks)
                       ? async_now() + TRIM_DELAY_NS : ASYNC_FOREVER;
    bool extra = atomic_load(&pool->nalive) > atomic_load(&pool->threads);
    int64_t retire = extra && ph == PH_RUNNING ? async_now() + RETIRE_NS : ASYNC_FOREVER;
    return async__idle_park(w, retire, trim);
}

/* The worker loop; returns when the worker should exit. It may be resumed
 * on another worker's thread (goroutine mode), so it asks which worker it is
 * at every turn. */
static void loop(void)
{
    for (;;) {
        struct async_worker *w = async__tls_get()->worker;
        if (!w)   /* its task ran on a host (async__host_run): back to it */
            async__fiber_leave(&async__tls_get()->self);
        struct async_pool *pool = w->pool;
        if (async__should_exit(pool))
            return;
        w->streak = 0;
        atomic_store_explicit(&w->turns, w->turns + 1, memory_order_relaxed);
        async__timers_run(pool);
        void *it = find_work(w);
        if (it) {
            struct async_fiber *f = async__item_fiber(it);
            if (f)
                async__fiber_resume(w, f);
            if (async__pool_phase_cancelling(pool)) {
                /* goroutine mode waits out its parked tasks; queued ones
                 * are cancelled, never started */
                async__future_cancel_pending(it);
                async__pool_count_unrun(it);
                async__record_release(it);
                continue;
            }
            run_popped(it);
            continue;
        }
        if (!go_idle(w))
            return;
    }
}

/* Every loop fiber starts here. */
static void sched_main(void *transfer)
{
    async__fiber_landed(async__fiber_self());
    async__land(transfer);
    loop();
    /* Leaving: back to the thread's own stack, which releases this fiber. */
    async__fiber_leave(async__tls_get()->worker->thread_fiber);
}

static void *worker_main(void *arg)
{
    struct async_worker *w = arg;
    struct async_pool *pool = w->pool;
    struct async_tls *t = async__tls_get();
    t->worker = w;
    t->parker = w->parker;
    async__tls_register();
    char name[16];
    snprintf(name, sizeof name, "%.11s-%u", pool->h.name, w->index);
    pthread_setname_np(pthread_self(), name);
    struct async_fiber *f = pool->stacks ? async__cache_get(w) : NULL;
    if (f) {
        w->thread_fiber = &t->self;
        async__thread_run(f);
        t = async__tls_get();
        async__cache_flush(w);
    } else {
        loop();   /* thread mode (or no stack to start with: the same) */
    }
    async__stop_searching(w);
    ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
    w->dead = true;
    ASYNC_DEC(&pool->nalive, memory_order_seq_cst);
    ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
    /* The parker stays with the worker record (reused by a replacement in
     * this slot), not with the thread. */
    t->parker = NULL;
    t->worker = NULL;
    return NULL;
}

void async__sched_init(void)
{
    /* Stored by every pool creation, read by every fiber wake and every
     * fresh loop fiber: atomic (the values never change once stored,
     * before any fiber exists). */
    atomic_store_explicit(&async__ready_hook, async__fiber_ready, memory_order_release);
    atomic_store_explicit(&async__loop_entry, sched_main, memory_order_release);
    atomic_store_explicit(&async__worker_entry, worker_main, memory_order_release);
}
