/*
 * lib/sched.c — the scheduler: workers, their loop, and switching fibers.
 *
 * Owns: the worker loop, finding work (run-next slot, own deque, injection
 * queues, stealing), going idle, the workers' caches of free stacks, and
 * the switches a task makes when it parks, is resumed or yields. Around
 * it: runq.c (the injection queues, the walks of what is queued), stats.c
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
 * The hand-over protocol. Every switch passes a transfer word to the side
 * that lands: the fiber it comes from, and what to do with it:
 *   T_RELEASE  it will never run again: back to the stack cache;
 *   T_PARK     its task is parking: CAS its state PARKING -> PARKED; if a
 *              wake came first (WOKEN), it is runnable at once;
 *   T_YIELD    it yields: it goes to the back of the fiber injection queue.
 * A fiber's registers are saved by the switch itself, before the landing
 * side runs, so nothing can resume a fiber before its context is complete.
 *
 * Fiber states (wait.c makes the waking transitions):
 *   FREE -> RUNNING          taken from a cache (async__fiber_reset)
 *   RUNNING -> PARKING       its task is about to park (block.c)
 *   PARKING -> RUNNING       the task found a reason not to park after all
 *   WOKEN -> RUNNING         the same, after a wake came meanwhile
 *   PARKING -> PARKED        the landing side, after the switch
 *   PARKING -> WOKEN         a wake before the switch completed
 *   PARKING -> TBLOCK        no stack to switch to: it waits on its worker's
 *                            parker (block.c); a wake or its own timeout or
 *                            cancellation makes it RUNNING (TBLOCK -> RUNNING)
 *   WOKEN -> PARKING         it found itself woken instead of blocking and
 *                            looks again (block.c)
 *   WOKEN -> RUNNABLE        the landing side, which then queues it
 *   PARKED -> RUNNABLE       a wake; queued through async__ready_hook
 *   RUNNABLE -> RUNNING      the worker that resumes it
 *   RUNNING -> RUNNABLE      it yields (the landing side queues it)
 *   RUNNING -> FREE          released (a loop fiber left for good)
 * internal.h's async__fiber_edge holds this list; the checked build asserts
 * every plain store against it (ASYNC_FIBER_SET), and a fiber resumed twice
 * (queued twice) breaks RUNNABLE -> RUNNING.
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
#ifdef ASYNC_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#define RETIRE_NS        (3 * ASYNC_SECOND)
#define TRIM_DELAY_NS    (10 * ASYNC_MILLISECOND)   /* idle this long: stacks go back */
#define SEARCH_NS        (20 * ASYNC_MICROSECOND)
#define RUNNEXT_GRACE    (5 * ASYNC_MICROSECOND)
#define RUNNEXT_MAX      32u
#define FAIR_TICK        61u
#define FIBER_CACHE      16u
#define wcount async__worker_count

enum { T_RELEASE = 1, T_PARK = 2, T_YIELD = 3 };

/* ---------------------------------------------------- fiber caches */

static void sched_main(void *transfer);
static void *worker_main(void *arg);

/* A fiber to switch to that starts the loop afresh; NULL: no stack. */
static struct async_fiber *cache_get(struct async_worker *w)
{
    struct async_fiber *f = w->cache;
    if (f) {
        w->cache = atomic_load_explicit(&f->next, memory_order_relaxed);
        w->ncache--;
        async__fiber_reset(f, sched_main);
    } else {
        f = async__fiber_new(w->pool->stacks, sched_main);
        if (!f)
            return NULL;
        atomic_fetch_add_explicit(&w->pool->nstacks, 1, memory_order_relaxed);
    }
    f->pool = w->pool;
    return f;
}

/* A loop fiber that will never run again: to w's cache, or back to its
 * class when the cache is full or the caller is not a worker (a host,
 * async__host_run: f's pool is alive while it runs f). */
static void cache_put(struct async_worker *w, struct async_fiber *f)
{
    if (w && w->ncache < FIBER_CACHE) {
        ASYNC_FIBER_SET(f, ASYNC_F_FREE, memory_order_release);
        atomic_store_explicit(&f->next, w->cache, memory_order_relaxed);
        w->cache = f;
        w->ncache++;
        return;
    }
    ASYNC_DEC(&f->pool->nstacks, memory_order_relaxed);
    async__fiber_release(f);
}

static void cache_flush(struct async_worker *w)
{
    while (w->cache) {
        struct async_fiber *f = w->cache;
        w->cache = atomic_load_explicit(&f->next, memory_order_relaxed);
        ASYNC_DEC(&w->pool->nstacks, memory_order_relaxed);
        async__fiber_release(f);
    }
    w->ncache = 0;
}

/* ------------------------------------------------- runnable fibers */

/* Put a runnable fiber where its pool will run it: the calling worker's
 * run-next slot when it is one of the pool's workers (the old occupant
 * moves to its deque); from a plain thread, the pool's outside fiber slot,
 * which that thread may take back (runq.c, "Fibers woken from outside");
 * else the pool's fiber injection queue. */
static void fiber_push(struct async_fiber *f, bool runnext)
{
    struct async_pool *pool = f->pool;
    struct async_tls *t = async__tls_get();
    struct async_worker *w = t->worker;
    if (w && w->pool == pool) {
        struct async_fiber *old = runnext
            ? atomic_exchange_explicit(&w->runnext, f, memory_order_acq_rel) : f;
        if (!old)
            return;   /* run-next: see the opening comment */
        if (async__deque_push(&w->dq, async__fiber_item(old)) != 0)
            async__mpsc_push(&pool->finj, old);   /* no memory to grow: shared queue */
        async__signal_work(pool);
        return;
    }
    /* From outside the pool: once f is queued a worker may resume it, its
     * task end and the pool be destroyed, so the pool is pinned (destroy
     * waits for ext_touching to drop) until the signal has been given. */
    atomic_fetch_add_explicit(&pool->ext_touching, 1, memory_order_seq_cst);
    struct async_xslot *x = pool->xslot;
    if (runnext && x && !w && !t->fiber && !async__current_task()) {
        uintptr_t word = (uintptr_t)f | (++t->xtag & ASYNC_XTAG);
        uintptr_t old = atomic_exchange_explicit(&x->word, word, memory_order_seq_cst);
        t->gave = word;
        t->gave_slot = x;
        if (old)
            async__mpsc_push(&pool->finj, async__xslot_fiber(old));
    } else {
        async__mpsc_push(&pool->finj, f);
    }
    ASYNC_TEST_WINDOW();
    async__signal_work(pool);
    ASYNC_DEC(&pool->ext_touching, memory_order_release);
}

static void ready(struct async_fiber *f)
{
    fiber_push(f, true);
}

void async__sched_init(void)
{
    /* Stored by every pool creation, read by every fiber wake: atomic (the
     * value never changes once stored, before any fiber exists). */
    atomic_store_explicit(&async__ready_hook, ready, memory_order_release);
    atomic_store_explicit(&async__worker_entry, worker_main, memory_order_release);
}

/* The first thing after every switch: deal with the fiber we came from. */
static void land(void *transfer)
{
    uintptr_t t = (uintptr_t)transfer;
    struct async_fiber *prev = (struct async_fiber *)(t & ~(uintptr_t)3);
    if (!prev)
        return;
    switch ((int)(t & 3)) {
    case T_RELEASE:
        cache_put(async__tls_get()->worker, prev);
        break;
    case T_PARK: {
        uint32_t s = ASYNC_F_PARKING;
        if (!atomic_compare_exchange_strong_explicit(&prev->state, &s, ASYNC_F_PARKED,
                memory_order_seq_cst, memory_order_seq_cst)) {
            /* WOKEN: a wake came while it was switching away */
            ASYNC_ASSERT(s == ASYNC_F_WOKEN);
            ASYNC_FIBER_SET(prev, ASYNC_F_RUNNABLE, memory_order_relaxed);
            fiber_push(prev, false);
        }
        break;
    }
    case T_YIELD: {
        /* A fiber in the outside slot was made runnable before this yield:
         * it goes first (workers leave the slot alone for a while). */
        struct async_xslot *x = prev->pool->xslot;
        uintptr_t o = x && atomic_load_explicit(&x->word, memory_order_relaxed)
            ? atomic_exchange_explicit(&x->word, 0, memory_order_seq_cst) : 0;
        if (o)
            async__mpsc_push(&prev->pool->finj, async__xslot_fiber(o));
        ASYNC_FIBER_SET(prev, ASYNC_F_RUNNABLE, memory_order_relaxed);
        async__mpsc_push(&prev->pool->finj, prev);
        async__signal_work(prev->pool);
        break;
    }
    }
}

/* LeakSanitizer scans thread stacks, not a parked fiber's stack, so what
 * only a parked task's frames point to (its record, its own allocations)
 * would be reported as leaked at exit: the used part of a parked stack is a
 * root region while it is parked. */
static void lsan_park(struct async_fiber *f)
{
#ifdef ASYNC_ASAN
    char *lo = (char *)__builtin_frame_address(0) - 1024;   /* + the switch's frame */
    if (lo < f->lo)
        lo = f->lo;
    f->lsan_lo = lo;
    f->lsan_size = (size_t)(f->lo + f->size - lo);
    __lsan_register_root_region(f->lsan_lo, f->lsan_size);
#else
    (void)f;
#endif
}

static void lsan_unpark(struct async_fiber *f)
{
#ifdef ASYNC_ASAN
    __lsan_unregister_root_region(f->lsan_lo, f->lsan_size);
#else
    (void)f;
#endif
}

/* Switch from the running fiber to `to`, which this thread now runs. */
static void *switch_to(struct async_fiber *self, struct async_fiber *to, uintptr_t how,
                       bool leaving)
{
    async__tls_get()->fiber = to;
    return async__fiber_switch(self, to, (void *)((uintptr_t)self | how), leaving);
}

/* From the loop: run the parked task on f; this stack is left for good. */
_Noreturn static void resume(struct async_worker *w, struct async_fiber *f)
{
    ASYNC_FIBER_SET(f, ASYNC_F_RUNNING, memory_order_relaxed);
    wcount(w, ASYNC_C_RESUMED);
    switch_to(async__fiber_self(), f, T_RELEASE, true);
    async__abort(__FILE__, __LINE__, "a released fiber was resumed");
}

/* A fiber that a thread outside the workers runs (async__host_run) parks
 * (T_PARK) or yields (T_YIELD): back to that thread's own stack, where the
 * host lands it. Returns once the fiber has been resumed, by a worker or
 * by a host. */
static bool host_return(struct async_fiber *self, uintptr_t how)
{
    async__pool_count(self->pool, ASYNC_C_PARKED);
    lsan_park(self);
    void *tr = switch_to(self, &async__tls_get()->self, how, false);
    lsan_unpark(self);
    land(tr);
    return true;
}

/* Its task ended on a host: back to the host, which gives the stack back. */
_Noreturn static void host_leave(void)
{
    switch_to(async__fiber_self(), &async__tls_get()->self, T_RELEASE, true);
    async__abort(__FILE__, __LINE__, "a released fiber was resumed");
}

bool async__host_run(void)
{
    struct async_tls *t = async__tls_get();
    uintptr_t v = t->gave;
    struct async_xslot *x = t->gave_slot;
    t->gave = 0;
    if (!v || t->worker || t->fiber || async__current_task() ||
        atomic_load_explicit(&x->word, memory_order_relaxed) != v ||
        !atomic_compare_exchange_strong_explicit(&x->word, &v, 0,
                memory_order_seq_cst, memory_order_relaxed))
        return false;
    struct async_fiber *f = async__xslot_fiber(v);
    /* f was runnable in x's pool, counted as parked: the pool lives until
     * f is counted resumed, and from then on through outside_running. */
    struct async_pool *pool = f->pool;
    async__pool_inline_begin(pool);
    async__pool_count(pool, ASYNC_C_RESUMED);
    ASYNC_FIBER_SET(f, ASYNC_F_RUNNING, memory_order_relaxed);
    t->fiber = f;
    void *tr = async__fiber_switch(&t->self, f, NULL, false);
    t = async__tls_get();
    t->fiber = NULL;
    land(tr);
    async__pool_inline_end(pool);
    return true;
}

/*
 * Park the running task's fiber (its state is PARKING): switch to the
 * worker's run-next fiber or to a fresh loop (on a host: back to the host).
 * Returns once the fiber has been resumed (by any worker or host), true;
 * false when there was nowhere to switch to (no stack): the caller then
 * blocks the thread instead.
 */
bool async__fiber_park(struct async_fiber *self)
{
    struct async_worker *w = async__tls_get()->worker;
    struct async_fiber *next = NULL;
    if (!w)
        return host_return(self, T_PARK);
    if (w->streak < RUNNEXT_MAX &&
        atomic_load_explicit(&w->runnext, memory_order_relaxed) &&
        (next = atomic_exchange_explicit(&w->runnext, NULL, memory_order_acq_rel)) != NULL) {
        w->streak++;
        ASYNC_FIBER_SET(next, ASYNC_F_RUNNING, memory_order_relaxed);
        wcount(w, ASYNC_C_RESUMED);
    } else if ((next = cache_get(w)) == NULL) {
        return false;
    }
    wcount(w, ASYNC_C_PARKED);
    atomic_store_explicit(&w->turns, w->turns + 1, memory_order_relaxed);
    lsan_park(self);
    void *tr = switch_to(self, next, T_PARK, false);
    lsan_unpark(self);
    land(tr);
    return true;
}

/* async_yield on a stack fiber: to the back of the pool's queue. */
bool async__fiber_yield(struct async_fiber *self)
{
    struct async_worker *w = async__tls_get()->worker;
    if (!w)
        return host_return(self, T_YIELD);
    struct async_fiber *next = cache_get(w);
    if (!next)
        return false;
    wcount(w, ASYNC_C_PARKED);
    lsan_park(self);
    void *tr = switch_to(self, next, T_YIELD, false);
    lsan_unpark(self);
    land(tr);
    return true;
}

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

/* The outside fiber slot's fiber, once this worker has seen the same one
 * there (the same put) for RUNNEXT_GRACE: its waker may be about to take
 * it back (runq.c, "Fibers woken from outside"). */
static struct async_fiber *xslot_take(struct async_worker *w)
{
    struct async_xslot *x = w->pool->xslot;
    uintptr_t v = atomic_load_explicit(&x->word, memory_order_relaxed);
    if (!v)
        return NULL;
    int64_t now = async_now();
    if (w->xpeek != v) {
        w->xpeek = v;
        w->xpeek_at = now;
        return NULL;
    }
    if (now - w->xpeek_at < RUNNEXT_GRACE ||
        !atomic_compare_exchange_strong_explicit(&x->word, &v, 0,
                memory_order_seq_cst, memory_order_relaxed))
        return NULL;
    w->xpeek = 0;
    return async__xslot_fiber(v);
}

/* From the injection queues: runnable fibers first (their tasks have
 * started; finishing them frees stacks), or new tasks first on the
 * fairness tick (a task that yields in a loop must not starve a task that
 * has not started: Go's Gosched lets a new goroutine run). */
static void *inject_take(struct async_worker *w, bool new_first, bool xslot)
{
    struct async_pool *pool = w->pool;
    if (new_first) {
        void *it = async__inject_pop(pool);
        if (it)
            return it;
    }
    struct async_fiber *f = async__mpsc_pop(&pool->finj);
    if (!f && xslot && pool->xslot)
        f = xslot_take(w);
    return f ? async__fiber_item(f) : async__inject_pop(pool);
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
        if (!w)
            host_leave();   /* its task ran on a host (async__host_run) */
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
                resume(w, f);
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
    land(transfer);
    loop();
    /* Leaving: back to the thread's own stack, which releases this fiber. */
    struct async_worker *w = async__tls_get()->worker;
    switch_to(async__fiber_self(), w->thread_fiber, T_RELEASE, true);
    async__abort(__FILE__, __LINE__, "a worker's exit returned");
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
    struct async_fiber *f = pool->stacks ? cache_get(w) : NULL;
    if (f) {
        w->thread_fiber = &t->self;
        t->fiber = f;
        void *tr = async__fiber_switch(&t->self, f, NULL, false);
        t = async__tls_get();
        t->fiber = NULL;
        land(tr);
        cache_flush(w);
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

