/*
 * lib/switch.c — switching fibers: parking, resuming, yielding, and where
 * a woken fiber goes.
 *
 * Owns: the workers' caches of free stacks (loop fibers), making a fiber
 * runnable (the waker's run-next slot, the pool's outside fiber slot, the
 * fiber injection queue), the hand-over protocol between the two sides of
 * a switch, parking and yielding a task's fiber, resuming one from the
 * worker loop, and plain threads that run a fiber they woke (hosts). The
 * loop itself is sched.c's; a fresh loop fiber starts at sched.c's entry,
 * which comes down as a hook (async__loop_entry, set by async__sched_init).
 *
 * The hand-over protocol. Every switch passes a transfer word to the side
 * that lands: the fiber it comes from, and what to do with it:
 *   T_RELEASE  it will never run again: back to the stack cache (on a
 *              host: to its class);
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
 * (queued twice) breaks RUNNABLE -> RUNNING. RUNNABLE -> RUNNING is also
 * a host's (async__host_run).
 *
 * Hosts. A thread that is not a worker, waiting on a channel with no
 * deadline, may take back the fiber it woke from the pool's outside fiber
 * slot (runq.c, "Fibers woken from outside") and run it on the fiber's own
 * stack (async__host_run). Such a fiber, when it parks or yields, switches
 * back to the host's own stack (T_PARK, T_YIELD, landed there as anywhere);
 * when its task ends it reaches the loop frames below it, which see no
 * worker and switch back with T_RELEASE: the host gives the stack back to
 * its class. The host is pinned as an inline runner (outside_running) from
 * before it counts the fiber resumed until it has landed.
 *
 * Locks: none of its own. A worker's cache and run-next slot are the
 * worker's (run-next: exchanged by the owner and by thieves); fiber states
 * move by the table above.
 */
#include "sched_internal.h"

#ifdef ASYNC_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#define RUNNEXT_MAX      32u
#define FIBER_CACHE      ASYNC_FIBER_BATCH
#define wcount async__worker_count

enum { T_RELEASE = 1, T_PARK = 2, T_YIELD = 3 };

_Atomic async_ctx_fn async__loop_entry;

/* ---------------------------------------------------- fiber caches */

/* A fiber to switch to that starts the loop afresh; NULL: no stack. */
struct async_fiber *async__cache_get(struct async_worker *w)
{
    async_ctx_fn entry = atomic_load_explicit(&async__loop_entry, memory_order_acquire);
    struct async_fiber *f = w->cache;
    if (f) {
        w->cache = atomic_load_explicit(&f->next, memory_order_relaxed);
        w->ncache--;
    } else {
        /* Refill the cache at once: one lock, and one system call for the
         * pages of those not resident (stacks.c) */
        struct async_fiber *got[FIBER_CACHE];
        size_t n = async__fiber_take(w->pool->stacks, got, FIBER_CACHE);
        if (n == 0)
            return NULL;
        atomic_fetch_add_explicit(&w->pool->nstacks, n, memory_order_relaxed);
        f = got[0];
        for (size_t i = n; i-- > 1;) {
            atomic_store_explicit(&got[i]->next, w->cache, memory_order_relaxed);
            w->cache = got[i];
            w->ncache++;
        }
    }
    async__fiber_reset(f, entry);
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

void async__cache_flush(struct async_worker *w)
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

/* A thread that is neither a worker nor running a task or a fiber (main):
 * the only kind that puts fibers in an outside fiber slot and runs them. */
static bool plain_thread(struct async_tls *t)
{
    return !t->worker && !t->fiber && !async__current_task();
}

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
    if (runnext && x && plain_thread(t)) {
        uintptr_t word = (uintptr_t)f | (++t->puts & ASYNC_XTAG);
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

void async__fiber_ready(struct async_fiber *f)
{
    fiber_push(f, true);
}

/* The first thing after every switch: deal with the fiber we came from. */
void async__land(void *transfer)
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
_Noreturn void async__fiber_resume(struct async_worker *w, struct async_fiber *f)
{
    async__fiber_prefetch(f);
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
    async__land(tr);
    return true;
}

_Noreturn void async__fiber_leave(struct async_fiber *to)
{
    switch_to(async__fiber_self(), to, T_RELEASE, true);
    async__abort(__FILE__, __LINE__, "a released fiber was resumed");
}

bool async__host_run(void)
{
    struct async_tls *t = async__tls_get();
    uintptr_t v = t->gave;
    struct async_xslot *x = t->gave_slot;
    t->gave = 0;
    if (!v || !plain_thread(t) || atomic_load_explicit(&x->word, memory_order_relaxed) != v ||
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
    async__thread_run(f);
    async__pool_inline_end(pool);
    return true;
}

void async__thread_run(struct async_fiber *f)
{
    struct async_tls *t = async__tls_get();
    t->fiber = f;
    void *tr = async__fiber_switch(&t->self, f, NULL, false);
    t = async__tls_get();
    t->fiber = NULL;
    async__land(tr);
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
    } else if ((next = async__cache_get(w)) == NULL) {
        return false;
    }
    wcount(w, ASYNC_C_PARKED);
    atomic_store_explicit(&w->turns, w->turns + 1, memory_order_relaxed);
    lsan_park(self);
    void *tr = switch_to(self, next, T_PARK, false);
    lsan_unpark(self);
    async__land(tr);
    return true;
}

/* async_yield on a stack fiber: to the back of the pool's queue. */
bool async__fiber_yield(struct async_fiber *self)
{
    struct async_worker *w = async__tls_get()->worker;
    if (!w)
        return host_return(self, T_YIELD);
    struct async_fiber *next = async__cache_get(w);
    if (!next)
        return false;
    wcount(w, ASYNC_C_PARKED);
    lsan_park(self);
    void *tr = switch_to(self, next, T_YIELD, false);
    lsan_unpark(self);
    async__land(tr);
    return true;
}
