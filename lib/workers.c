/*
 * lib/workers.c — a pool's worker threads: the idle list, waking one, and
 * starting workers, replacements for blocked ones included.
 *
 * Owns: the idle list (pool->idle_top under idle_lock, nidle), an idle
 * worker's park (async__idle_park) and the rule for leaving the loop
 * (async__should_exit), the rule for waking on new work
 * (async__signal_work), the searching count's release, the shutdown's wake
 * of every idle worker (async__set_stopping), spawning
 * (async__spawn_locked: a worker record, its thread), and the accounting of
 * workers that park their thread in a blocked call, and the pin of threads
 * outside the workers that run a task of the pool (an inline run, a host's
 * fiber: outside_running, which destroy waits for). What a worker does once
 * running is sched.c's; the thread starts in sched.c's worker_main, which
 * sched.c hands down through async__worker_entry (set with the ready hook,
 * before any pool exists), so that this file does not call back up.
 *
 * Waking. New work wakes at most one idle worker, and only when nobody is
 * searching already (Go's and Tokio's rule: a searcher will find the new
 * work, so waking another would only make a thundering herd). Lost
 * wake-ups are excluded by the Dekker pair that sched.c's opening comment
 * states (submitter: publish, fence, read nsearching and nidle; idler: join
 * the idle list, fence, look again).
 *
 * Blocked workers (thread mode, or a fiber that found no stack): a worker
 * that parks its thread counts in nblocked, and when every live worker is
 * blocked and work is visible the pool wakes an idle worker or starts a
 * replacement, up to max_threads; at the cap it logs "pool NAME: saturated:
 * ..." once per episode (an episode ends when a worker parks idle, having
 * found nothing to do). Idle replacement workers (more alive than
 * `threads`) exit after RETIRE_NS idle (sched.c's go_idle decides when, and
 * async__idle_park here parks until then).
 *
 * Locks: pool->lock (spawning, the saturation flag) > pool->idle_lock (the
 * idle list); the counters are atomics.
 */
#include "sched_internal.h"

#include <stdio.h>

#define SPAWN_RETRY_NS   (10 * ASYNC_MILLISECOND)

void *(*_Atomic async__worker_entry)(void *arg);

/* ------------------------------------------------------- idle list */

bool async__wake_one(struct async_pool *pool)
{
    ASYNC_CHECK(pthread_mutex_lock(&pool->idle_lock));
    struct async_worker *w = pool->idle_top;
    if (w) {
        pool->idle_top = w->idle_next;
        w->idle = false;
        w->searching = true;
        atomic_fetch_add_explicit(&pool->nsearching, 1, memory_order_seq_cst);
        ASYNC_DEC(&pool->nidle, memory_order_seq_cst);
    }
    ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
    if (w)
        async__unpark(w->parker);
    return w != NULL;
}

void async__wake_all_idle(struct async_pool *pool)
{
    ASYNC_CHECK(pthread_mutex_lock(&pool->idle_lock));
    struct async_worker *list = pool->idle_top;
    pool->idle_top = NULL;
    for (struct async_worker *w = list; w; w = w->idle_next) {
        w->idle = false;
        ASYNC_DEC(&pool->nidle, memory_order_seq_cst);
        async__unpark(w->parker);   /* type-stable parker: safe under the lock */
    }
    ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
}

void async__idle_push(struct async_worker *w)
{
    struct async_pool *pool = w->pool;
    ASYNC_CHECK(pthread_mutex_lock(&pool->idle_lock));
    w->idle = true;
    w->idle_next = pool->idle_top;
    pool->idle_top = w;
    atomic_fetch_add_explicit(&pool->nidle, 1, memory_order_seq_cst);
    ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
}

/* Leave the idle list if a waker has not taken us off it already (a waker
 * that did has made us a searcher). Caller holds idle_lock. */
void async__idle_remove_locked(struct async_worker *w)
{
    struct async_pool *pool = w->pool;
    /* held by someone (a pthread mutex cannot say by whom) */
    ASYNC_ASSERT(pthread_mutex_trylock(&pool->idle_lock) == EBUSY);
    if (!w->idle)
        return;
    struct async_worker **pp = &pool->idle_top;
    while (*pp != w)
        pp = &(*pp)->idle_next;
    *pp = w->idle_next;
    w->idle = false;
    ASYNC_DEC(&pool->nidle, memory_order_seq_cst);
}

void async__idle_remove(struct async_worker *w)
{
    ASYNC_CHECK(pthread_mutex_lock(&w->pool->idle_lock));
    async__idle_remove_locked(w);
    ASYNC_CHECK(pthread_mutex_unlock(&w->pool->idle_lock));
}

void async__stop_searching(struct async_worker *w)
{
    if (w->searching) {
        w->searching = false;
        ASYNC_DEC(&w->pool->nsearching, memory_order_seq_cst);
    }
}

void async__set_stopping(struct async_pool *pool)
{
    int ph = PH_DRAINING;
    if (atomic_compare_exchange_strong(&pool->h.phase, &ph, PH_STOPPING)) {
        async__wake_all_idle(pool);
        struct async_parker *d = atomic_load(&pool->destroyer);
        if (d)
            async__unpark(d);
    }
}

/* ------------------------------------------------------ going idle */

/* Would a worker of this pool leave its loop now? The answer can turn true
 * without any wake-up for the idle (the last parked fiber resumed on another
 * worker), so a worker that sees it true wakes every idle worker to look
 * again: idle_push under idle_lock orders their check after this one. */
bool async__should_exit(struct async_pool *pool)
{
    int ph = atomic_load_explicit(&pool->h.phase, memory_order_acquire);
    if (ph != PH_STOPPING && ph != PH_CANCELLING)
        return false;
    if (pool->stacks && async__pool_parked(pool) != 0)
        return false;
    if (atomic_load_explicit(&pool->nidle, memory_order_relaxed) != 0)
        async__wake_all_idle(pool);
    return true;
}

/* The earlier of two deadlines (ASYNC_FOREVER is later than any). */
static int64_t earlier(int64_t a, int64_t b)
{
    return a == ASYNC_FOREVER || (b != ASYNC_FOREVER && b < a) ? b : a;
}

/* Park an idle worker (on the idle list) until it is taken off the list,
 * a timer is due, or, past `retire`, an extra worker may leave (false);
 * past `trim`, it gives its pool's spare stacks back once and parks on. */
bool async__idle_park(struct async_worker *w, int64_t retire, int64_t trim)
{
    struct async_pool *pool = w->pool;
    for (;;) {
        async__park(w->parker, earlier(earlier(retire, async__timers_next(pool)), trim));
        ASYNC_CHECK(pthread_mutex_lock(&pool->idle_lock));
        if (!w->idle) {
            ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
            return !async__should_exit(pool);
        }
        if (async__timers_due(pool, async_now())) {
            async__idle_remove_locked(w);
            ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
            return true;
        }
        if (retire != ASYNC_FOREVER && async__deadline_passed(retire) &&
            atomic_load(&pool->nalive) > atomic_load(&pool->threads)) {
            async__idle_remove_locked(w);
            ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
            return false;   /* an idle replacement retires */
        }
        ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
        if (trim != ASYNC_FOREVER && async__deadline_passed(trim)) {
            async__stacks_trim(pool->stacks);   /* still idle: a wake waits for it */
            trim = ASYNC_FOREVER;
        }
    }
}

/* ------------------------------------------------------- spawning */

static struct async_worker *worker_new(struct async_pool *pool, unsigned index)
{
    struct async_worker *w = async__calloc(1, sizeof *w);
    if (!w)
        return NULL;
    if (async__deque_init(&w->dq)) {
        async__free(w);
        return NULL;
    }
    w->parker = async__parker_new();
    if (!w->parker) {
        async__deque_fini(&w->dq);
        async__free(w);
        return NULL;
    }
    w->pool = pool;
    w->index = index;
    atomic_init(&w->runnext, NULL);
    for (int i = 0; i < ASYNC_NCOUNTERS; i++)
        atomic_init(&w->c[i], 0);
    return w;
}

/* Start one more worker; pool->lock held. 0 or an errno code. */
int async__spawn_locked(struct async_pool *pool)
{
    ASYNC_ASSERT(pthread_mutex_trylock(&pool->lock) == EBUSY);
    unsigned n = atomic_load_explicit(&pool->nslots, memory_order_relaxed);
    struct async_worker *w = NULL;
    for (unsigned s = 0; s < n && !w; s++)
        if (pool->slots[s]->dead)
            w = pool->slots[s];
    if (!w) {
        if (n == pool->max_threads)
            return EAGAIN;
        w = worker_new(pool, n);
        if (!w)
            return ENOMEM;
        /* Publish the slot before the thread starts: a worker steals from
         * slots[0, nslots), its own included. A slot whose thread fails to
         * start stays, dead, for the next spawn to reuse. */
        w->dead = true;
        pool->slots[n] = w;
        atomic_store_explicit(&pool->nslots, n + 1, memory_order_release);
    } else if (w->has_thread) {
        ASYNC_CHECK(pthread_join(w->thread, NULL));   /* it has exited */
        w->has_thread = false;
    }
    unsigned alive = atomic_fetch_add(&pool->nalive, 1) + 1;
    w->dead = false;
    int rc = async__thread_create(&w->thread,
            atomic_load_explicit(&async__worker_entry, memory_order_acquire), w);
    if (rc) {
        ASYNC_DEC(&pool->nalive, memory_order_seq_cst);
        w->dead = true;
        return rc;
    }
    w->has_thread = true;
    unsigned peak = atomic_load(&pool->peak);
    while (alive > peak && !atomic_compare_exchange_weak(&pool->peak, &peak, alive))
        ;
    return 0;
}

/* Every worker is blocked and work is queued: start a replacement, or say
 * once that the pool is saturated. Both are checked again under the lock:
 * the work that sent us here may have been taken meanwhile (by the worker
 * that then blocked, as the submitter was still signalling), and then
 * there is nothing to replace a worker for, nor a saturation to report. */
static void all_blocked(struct async_pool *pool)
{
    char line[128];
    line[0] = '\0';
    ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
    unsigned alive = atomic_load(&pool->nalive);
    unsigned blocked = atomic_load(&pool->nblocked);
    int ph = atomic_load(&pool->h.phase);
    if (ph != PH_CANCELLING && ph != PH_STOPPING && blocked >= alive &&
        async__work_visible(pool)) {
        bool capped = alive >= pool->max_threads;
        int rc = capped ? EAGAIN : async__spawn_locked(pool);
        /* A replacement that could not start (no memory, no thread) is
         * tried again by the blocked workers (async__block_retry). */
        atomic_store(&pool->spawn_failed, rc != 0 && !capped);
        if (rc && !atomic_load(&pool->saturated)) {
            atomic_store(&pool->saturated, true);
            snprintf(line, sizeof line, "saturated: %u workers blocked, %zu tasks queued",
                     blocked, async__queued_estimate(pool));
        }
    }
    ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
    if (line[0])
        async__log_task(pool, 0, 0, "%s", line);
}

/* New work is visible: wake or start a worker if nobody will look. */
void async__signal_work(struct async_pool *pool)
{
    ASYNC_FENCE();
    if (atomic_load_explicit(&pool->nsearching, memory_order_relaxed) != 0)
        return;
    if (atomic_load_explicit(&pool->nidle, memory_order_relaxed) != 0 && async__wake_one(pool))
        return;
    unsigned alive = atomic_load_explicit(&pool->nalive, memory_order_relaxed);
    if (alive && atomic_load_explicit(&pool->nblocked, memory_order_relaxed) >= alive)
        all_blocked(pool);
}

/* Wake an idle worker, if any, so that it re-reads the earliest timer. */
void async__kick_idle(struct async_pool *pool)
{
    if (atomic_load_explicit(&pool->nidle, memory_order_relaxed) != 0)
        async__wake_one(pool);
}

/* ------------------------------------------------------- blocking */

void async__block_enter(void)
{
    struct async_worker *w = async__tls_get()->worker;
    if (!w)
        return;
    struct async_pool *wp = w->pool;
    unsigned nb = atomic_fetch_add_explicit(&wp->nblocked, 1, memory_order_seq_cst) + 1;
    if (nb >= atomic_load(&wp->nalive) && async__work_visible(wp))
        async__signal_work(wp);
}

void async__block_exit(void)
{
    struct async_worker *w = async__tls_get()->worker;
    if (!w)
        return;
    struct async_pool *wp = w->pool;
    ASYNC_DEC(&wp->nblocked, memory_order_seq_cst);
}

/* A blocked worker whose pool could not start a replacement tries again
 * every SPAWN_RETRY_NS while it stays blocked: a transient failure (memory,
 * threads) must not leave queued work stranded behind blocked workers. Returns
 * when to try next, or ASYNC_FOREVER when nothing needs trying. */
int64_t async__block_retry(void)
{
    struct async_worker *w = async__tls_get()->worker;
    if (!w)
        return ASYNC_FOREVER;
    struct async_pool *wp = w->pool;
    if (!atomic_load_explicit(&wp->spawn_failed, memory_order_relaxed))
        return ASYNC_FOREVER;
    unsigned alive = atomic_load(&wp->nalive);
    if (atomic_load(&wp->nblocked) >= alive && async__work_visible(wp))
        all_blocked(wp);
    return atomic_load(&wp->spawn_failed) ? async_now() + SPAWN_RETRY_NS : ASYNC_FOREVER;
}

/* --------------------------------------------- outside runners */

static void outside_leave(struct async_pool *pool)
{
    /* Read the destroyer before the decrement: after it the pool may go. */
    struct async_parker *d = atomic_load(&pool->destroyer);
    unsigned running = atomic_fetch_sub_explicit(&pool->outside_running, 1,
                                                 memory_order_seq_cst);
    ASYNC_ASSERT(running > 0);
    if (running == 1 && d)
        async__unpark(d);
}

/* The caller has claimed a task of the pool: the pool lives until that task
 * is finished (destroy waits for quiescence), and from then until
 * outside_leave through this count. Its increment is ordered before the
 * task's finished count (released there), which destroy reads before it
 * reads this count. */
void async__pool_inline_begin(struct async_pool *pool)
{
    atomic_fetch_add_explicit(&pool->outside_running, 1, memory_order_seq_cst);
}

void async__pool_inline_end(struct async_pool *pool)
{
    int ph = atomic_load(&pool->h.phase);
    if (ph == PH_DRAINING && async__quiescent(pool))
        async__set_stopping(pool);
    outside_leave(pool);
}
