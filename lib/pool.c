/*
 * lib/pool.c — a pool's life: create, destroy, the default pool, stats.
 *
 * Owns: configuration (thread count, stack size, names, the log hook),
 * creating a pool and its first workers, the shutdown protocol, the default
 * pool, the stats snapshot. The workers, their queues and everything a pool
 * does while it runs are the scheduler's (sched.c); the record is in
 * sched_internal.h, with its fields' guards.
 *
 * Modes. A pool with a stack class (config stack_size 0 or a size) runs
 * goroutine mode: a task that blocks parks on its own stack (sched.c). With
 * ASYNC_STACK_THREAD it runs thread mode: a task that blocks holds its
 * thread. $ASYNC_STACK_SIZE (a byte count, or "thread") replaces the
 * default for pools whose config leaves stack_size 0.
 *
 * Shutdown. phase: RUNNING -> DRAINING -> STOPPING, or RUNNING -> CANCELLING.
 * Outside submitters bracket their push and its signal with ext_touching, so
 * once the destroyer has changed the phase and seen ext_touching == 0 no
 * outside submission can slip into a queue. Threads outside the pool that
 * wake one of its parked fibers bracket the same way (the fiber, counted as
 * parked, keeps the pool's workers alive until it is resumed, and a worker
 * may resume it the moment it is queued), and destroy waits for
 * ext_touching == 0 once more at its very end, so no such waker is still
 * signalling when the pool is freed. A drain ends at quiescence: every
 * submitted task finished. Quiescence is read as F == S where F (finished:
 * succeeded + failed + cancelled) is summed before S (submitted); both only
 * grow and each task is submitted before it finishes, so F == S proves that at
 * the moment F was read every submitted task was done — and with no task
 * running, only outside threads could submit, and they are refused. Whoever
 * goes idle (after its seq_cst fence) or finishes an inline run checks it.
 * A cancelling shutdown must reach every blocked call of the pool's tasks:
 * after storing the phase (seq_cst) it wakes every registered wake target
 * of the process (park.c; a parked fiber or a blocked thread re-checks, sees
 * the phase and returns ECANCELED; the others were woken spuriously and
 * wait again). That is the Dekker partner of the waiter's seq_cst step
 * before it parks (block.c). Workers leave once no fiber of the pool is
 * parked (sched.c), so every parked task has finished before the pool's
 * workers are joined.
 *
 * Reaching a pool through a record. A thread that holds only a future may
 * touch the pool only while something destroy waits for keeps the pool
 * alive. Cancelling a running task touches only the record and wakes its
 * runner (a type-stable target, future.c). Cancelling a task nobody ran
 * (CAS PENDING -> CANCELLED) touches only the record: its cancellation is
 * counted by whoever drops the queue's reference to the record (a worker
 * that pops it and cannot claim it, or the destroyer's cancel_leftovers):
 * exactly one thread, one that destroy waits for, and in a drain one that
 * goes on to check quiescence. A cancelled task thus counts as queued until
 * it leaves its queue. A thread outside the pool that runs a task inline
 * claims it first and only then registers (outside_running), which destroy
 * waits for.
 *
 * Lock order: default_lock > pool->lock > pool->idle_lock (internal.h).
 */
#include "sched_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>

#define MAX_THREADS_CAP  10000u
#define ENV_THREADS_MAX  4096

/* ------------------------------------------------ create, destroy */

static unsigned env_threads(void)
{
    static _Atomic bool warned;
    const char *s = getenv("ASYNC_THREADS");
    if (!s || !*s)
        return async__cpu_count();
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno == 0 && *end == '\0' && v >= 1 && v <= ENV_THREADS_MAX)
        return (unsigned)v;
    if (!atomic_exchange(&warned, true))
        fprintf(stderr, "libasync: ignoring ASYNC_THREADS=\"%s\" (want 1..%d); using %u\n",
                s, ENV_THREADS_MAX, async__cpu_count());
    return async__cpu_count();
}

/* The stack size a config asks for: 0 and ASYNC_STACK_THREAD as they are,
 * else page-rounded; SIZE_MAX - 1 marks an invalid size. */
#define BAD_STACK (SIZE_MAX - 1)
static size_t config_stack(const async_pool_config_t *cfg)
{
    size_t s = cfg ? cfg->stack_size : 0;
    if (s == 0) {
        static _Atomic bool warned;
        const char *e = getenv("ASYNC_STACK_SIZE");
        if (!e || !*e)
            return ASYNC_STACK_DEFAULT;
        if (strcmp(e, "thread") == 0)
            return ASYNC_STACK_THREAD;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(e, &end, 10);
        if (errno == 0 && *end == '\0' && v >= ASYNC_STACK_MIN && v <= ASYNC_STACK_MAX)
            return (size_t)v;
        if (!atomic_exchange(&warned, true))
            fprintf(stderr, "libasync: ignoring ASYNC_STACK_SIZE=\"%s\" (want \"thread\" "
                    "or %zu..%zu bytes)\n", e, ASYNC_STACK_MIN, ASYNC_STACK_MAX);
        return ASYNC_STACK_DEFAULT;
    }
    if (s == ASYNC_STACK_THREAD)
        return s;
    return s >= ASYNC_STACK_MIN && s <= ASYNC_STACK_MAX ? s : BAD_STACK;
}

/* ------------------------------------------------------ create, free */

static void pool_free(struct async_pool *pool)
{
    /* Timers that stand for futures (async_after) and have not fired: their
     * futures are cancelled now (compose.c). Their callbacks may complete
     * futures and so queue continuations on other pools: no lock is held. */
    async__timers_drain(pool);
    async__watchdog_stop(pool);
    async__dump_pool_remove(pool);   /* the dump and the unread-failure
                                        lines let go */
    unsigned n = atomic_load(&pool->nslots);
    for (unsigned s = 0; s < n; s++) {
        struct async_worker *w = pool->slots[s];
        async__deque_fini(&w->dq);
        async__parker_put(w->parker);
        async__free(w);
    }
    async__free(pool->slots);
    async__mpsc_fini(&pool->inj);
    async__mpsc_fini(&pool->finj);
    async__xslot_put(pool->xslot);   /* empty: no fiber is runnable now */
    async__timers_fini(pool);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->idle_lock);
    pool->magic = ASYNC_MAGIC_FREED;
#if ASYNC_CHECKS
    async__quarantine(pool, async__free);
#else
    async__free(pool);
#endif
}

static struct async_pool *pool_alloc(const async_pool_config_t *cfg, unsigned threads,
                                     unsigned max, size_t stack)
{
    struct async_pool *pool = async__calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->slots = async__calloc(max, sizeof *pool->slots);
    if (stack != ASYNC_STACK_THREAD) {
        pool->stacks = async__stack_class(stack);
        pool->xslot = async__xslot_get();
    }
    if (!pool->slots || (stack != ASYNC_STACK_THREAD && (!pool->stacks || !pool->xslot)) ||
        async__mpsc_init(&pool->inj) || async__mpsc_init(&pool->finj)) {
        async__mpsc_fini(&pool->inj);
        async__mpsc_fini(&pool->finj);
        async__xslot_put(pool->xslot);
        async__free(pool->slots);
        async__free(pool);
        return NULL;
    }
    atomic_init(&pool->threads, threads);
    pool->max_threads = max;
    snprintf(pool->h.name, sizeof pool->h.name, "%s", cfg && cfg->name ? cfg->name : "async");
    pool->h.log = cfg ? cfg->log : NULL;
    pool->h.log_ctx = cfg ? cfg->log_ctx : NULL;
    ASYNC_CHECK(pthread_mutex_init(&pool->lock, NULL));
    ASYNC_CHECK(pthread_mutex_init(&pool->idle_lock, NULL));
    atomic_init(&pool->timer_next, INT64_MAX);
    atomic_init(&pool->h.phase, PH_RUNNING);
    pool->magic = ASYNC_MAGIC_POOL;
    return pool;
}

async_pool_t *async_pool_create(const async_pool_config_t *cfg)
{
    unsigned threads = cfg && cfg->threads ? cfg->threads : env_threads();
    unsigned max = cfg && cfg->max_threads ? cfg->max_threads : MAX_THREADS_CAP;
    size_t stack = config_stack(cfg);
    if (max < threads || max > MAX_THREADS_CAP || stack == BAD_STACK) {
        errno = EINVAL;
        return NULL;
    }
    async__sched_init();
    struct async_pool *pool = pool_alloc(cfg, threads, max, stack);
    if (!pool) {
        errno = ENOMEM;
        return NULL;
    }
    ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
    int rc = 0;
    unsigned started = 0;
    while (started < threads && (rc = async__spawn_locked(pool)) == 0)
        started++;
    ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
    if (started == 0) {
        pool_free(pool);
        errno = rc == ENOMEM ? ENOMEM : EAGAIN;
        return NULL;
    }
    atomic_store(&pool->threads, started);   /* runs with the workers it got */
    async__dump_pool_add(pool);
    async__watchdog_start(pool);
    return pool;
}

static void wake_blockers(struct async_pool *pool)
{
    (void)pool;
    async__target_each(async__wake);
}

static void wait_parked(struct async_parker *me, bool (*done)(struct async_pool *),
                        struct async_pool *pool)
{
    while (!done(pool)) {
        if (me) {
            async__park(me, ASYNC_FOREVER);
        } else {   /* no parker (out of memory): poll gently */
            struct timespec ts = { 0, 1000000 };
            nanosleep(&ts, NULL);
        }
    }
}

static bool is_stopping(struct async_pool *pool)
{
    return atomic_load(&pool->h.phase) != PH_DRAINING;
}

static bool no_outside_runs(struct async_pool *pool)
{
    return atomic_load(&pool->outside_running) == 0;
}

/* Every submitted task finished, and no inline runner is still on its way
 * out. Quiescence first: it proves every claimed task finished, and so that
 * its runner's increment is visible to the second check. */
static bool all_finished(struct async_pool *pool)
{
    return async__quiescent(pool) && no_outside_runs(pool);
}

static void join_workers(struct async_pool *pool)
{
    ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
    unsigned n = atomic_load(&pool->nslots);
    ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
    /* The phase forbids new spawns now, so the slot set is final. */
    for (unsigned s = 0; s < n; s++) {
        struct async_worker *w = pool->slots[s];
        if (w->has_thread) {
            ASYNC_CHECK(pthread_join(w->thread, NULL));
            w->has_thread = false;
        }
    }
    /* The workers gave their cached stacks back as they left: a pool that
     * goes takes its burst's pages with it. */
    if (pool->stacks)
        async__stacks_trim(pool->stacks);
}

/* Every record still queued: cancel it if nobody ran it, drop the queue's
 * reference. Single-threaded now: every worker has exited. */
static void cancel_leftovers(struct async_pool *pool)
{
    struct future *f;
    while ((f = async__inject_pop_all_leftover(pool)) != NULL) {
        async__future_cancel_pending(f);
        async__pool_count_unrun(f);
        async__record_release(f);
    }
    /* No fiber is parked or runnable once the workers have left (sched.c),
     * so the deques hold only records. */
    unsigned n = atomic_load(&pool->nslots);
    for (unsigned s = 0; s < n; s++)
        while ((f = async__deque_pop(&pool->slots[s]->dq)) != NULL) {
            async__future_cancel_pending(f);
            async__pool_count_unrun(f);
            async__record_release(f);
        }
}

/* Everything of destroy but freeing the pool. */
static int pool_stop(struct async_pool *pool, async_shutdown_t how)
{
    if (!pool || (how != ASYNC_DRAIN && how != ASYNC_CANCEL))
        return EINVAL;
    struct future *cur = async__current_task();
    if (cur && cur->pool == pool)
        return EDEADLK;
    struct async_worker *self = async__tls_get()->worker;
    if (self && self->pool == pool)
        return EDEADLK;
    struct async_parker *me = async__parker_self();
    atomic_store(&pool->destroyer, me);
    int from = PH_RUNNING;
    if (!atomic_compare_exchange_strong(&pool->h.phase, &from,
            how == ASYNC_DRAIN ? PH_DRAINING : PH_CANCELLING))
        return EINVAL;   /* destroyed twice */
    while (atomic_load(&pool->ext_touching) != 0)
        sched_yield();
    if (how == ASYNC_CANCEL) {
        wake_blockers(pool);
    } else {
        ASYNC_FENCE();
        if (async__quiescent(pool))
            async__set_stopping(pool);
        async__wake_all_idle(pool);   /* idlers re-check quiescence */
        wait_parked(me, is_stopping, pool);
    }
    async__wake_all_idle(pool);
    join_workers(pool);
    wait_parked(me, no_outside_runs, pool);
    cancel_leftovers(pool);
    /* A thread that claimed a task to run it inline after the wait above
     * (claims come before the pool is touched) keeps the pool until its
     * task has finished and it has left; outside_leave unparks us. */
    wait_parked(me, all_finished, pool);
    while (atomic_load_explicit(&pool->ext_touching, memory_order_seq_cst) != 0)
        sched_yield();   /* a waker or submitter signalling: a few instructions */
    return 0;
}

int async_pool_destroy(async_pool_t *pool, async_shutdown_t how)
{
    if (pool)
        async__pool_check(pool, "async_pool_destroy");
    int rc = pool_stop(pool, how);
    if (rc == 0)
        pool_free(pool);
    return rc;
}

/* ------------------------------------------------------ default pool */

static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;
static async_pool_t *_Atomic default_pool;

async_pool_t *async_default_pool(void)
{
    async_pool_t *p = atomic_load_explicit(&default_pool, memory_order_acquire);
    if (ASYNC_LIKELY(p != NULL))
        return p;
    ASYNC_CHECK(pthread_mutex_lock(&default_lock));
    p = atomic_load_explicit(&default_pool, memory_order_relaxed);
    if (!p) {
        p = async_pool_create(NULL);
        if (p)
            atomic_store_explicit(&default_pool, p, memory_order_release);
    }
    int e = errno;
    ASYNC_CHECK(pthread_mutex_unlock(&default_lock));
    errno = e;
    return p;
}

int async_shutdown(async_shutdown_t how)
{
    if (how != ASYNC_DRAIN && how != ASYNC_CANCEL)
        return EINVAL;
    /* One of the default pool's own tasks (or workers) must not wait for
     * default_lock: a drain in progress holds it until that task ends. The
     * pointer stays published while a drain runs, and the pool cannot go
     * while one of its tasks runs here. */
    async_pool_t *p = atomic_load(&default_pool);
    struct future *cur = async__current_task();
    struct async_worker *self = async__tls_get()->worker;
    if (p && ((cur && cur->pool == p) || (self && self->pool == p)))
        return EDEADLK;
    ASYNC_CHECK(pthread_mutex_lock(&default_lock));
    p = atomic_load(&default_pool);
    /* Keep the pointer published while draining, so the pool's own tasks
     * that call async_run still reach it; outside submitters are refused. */
    int rc = p ? pool_stop(p, how) : 0;
    if (p && rc == 0)
        atomic_store(&default_pool, NULL);
    ASYNC_CHECK(pthread_mutex_unlock(&default_lock));
    /* Unpublished and stopped: freed without the lock, since its leftover
     * timers complete futures whose continuations may reach the (next)
     * default pool. */
    if (p && rc == 0)
        pool_free(p);
    return rc;
}

struct async_pool *async__pool_resolve(struct async_pool *pool)
{
#if ASYNC_CHECKS
    if (pool)
        async__pool_check(pool, "async_submit");
#endif
    return pool ? pool : async_default_pool();
}

int async_pool_stats(async_pool_t *pool, async_pool_stats_t *out)
{
    if (!out)
        return EINVAL;
    if (!pool && !(pool = async_default_pool()))
        return errno;
    async__pool_check(pool, "async_pool_stats");
    async__pool_snapshot(pool, out);
    return 0;
}
