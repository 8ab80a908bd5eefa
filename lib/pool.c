/*
 * lib/pool.c — workers and scheduling.
 *
 * Owns: pool creation and destruction, the worker threads and their loop, the
 * injection queue for submissions from threads that are not workers of the
 * pool, idle parking and waking, blocked-worker accounting and replacements,
 * per-worker statistics, the default pool.
 *
 * Scheduling. A worker looks in its own deque (LIFO), then the injection
 * queue, then becomes a "searcher" and steals from the others, then parks.
 * A submission wakes at most one idle worker, and only when nobody is
 * searching already (Go's and Tokio's rule: a searcher will find the new
 * work, so waking another would only make a thundering herd). A searcher
 * that finds work stops searching and, if it was the last searcher, wakes
 * one more worker, so parallelism ramps up one worker at a time. Rejected:
 * one mutex+condvar queue (every submit and every take contends on one lock
 * and every submit signals), and waking on every submission.
 *
 * Lost wake-ups are excluded by a Dekker pair of seq_cst fences:
 *   submitter: publish task; fence; read nsearching and nidle.
 *   idler:     join idle list (nidle++); stop searching; fence; re-check
 *              every queue (and the shutdown phase) before parking.
 * Either the submitter sees the idler (and wakes it) or the idler sees the
 * task. The same pair covers blocking (nblocked++; fence; look for queued
 * work) against submitting when every worker is blocked.
 *
 * The injection queue is Vyukov's intrusive MPSC queue: producers do one
 * exchange on `inj_head` and link the previous node; consumers serialise on
 * `inj_lock` (a short lock) and pop from `inj_tail`. Records link through
 * their `next` field; `inj_stub` is a dummy record.
 *
 * Blocked workers. A task that parks (async__wait) calls async__block_enter:
 * a worker then counts in nblocked, and when every live worker is blocked and
 * work is visible the pool wakes an idle worker or starts a replacement, up to
 * max_threads; at the cap it logs "saturated: ..." once per episode. Idle
 * replacement workers (more alive than `threads`) exit after RETIRE_NS idle.
 * Every parked task, on a worker or not, is on the pool's `blockers` list
 * (with the task it belongs to), so an ASYNC_CANCEL shutdown can wake them
 * all and future_cancel can wake the one it cancels. Rejected: a pointer to
 * the runner's parker in every task record (8 bytes per record for a rare
 * operation; cancelling walks the blocked callers of one pool instead).
 *
 * Shutdown. phase: RUNNING -> DRAINING -> STOPPING, or RUNNING -> CANCELLING.
 * Outside submitters bracket their push with ext_submitting, so once the
 * destroyer has changed the phase and seen ext_submitting == 0 no outside
 * submission can slip into a queue. A drain ends at quiescence: every
 * submitted task finished. Quiescence is read as F == S where F (finished:
 * succeeded + failed + cancelled) is summed before S (submitted); both only
 * grow and each task is submitted before it finishes, so F == S proves that at
 * the moment F was read every submitted task was done — and with no task
 * running, only outside threads could submit, and they are refused. Whoever
 * goes idle (after its seq_cst fence) or finishes an inline run checks it.
 *
 * Fields and their guards:
 *   config fields, slots[] array itself        immutable after create
 *   slots[i] contents, nslots, worker dead/has_thread, blockers, saturated
 *                                              pool->lock
 *   idle_top, worker idle/idle_next, worker searching while idle
 *                                              pool->idle_lock
 *   inj_tail                                   written under inj_lock;
 *                                              read lock-free by the
 *                                              emptiness check
 *   phase, nsearching, nidle, nblocked, nalive, peak, ext_*, outside_running,
 *   destroyer                                  atomics (seq_cst where a
 *                                              Dekker pair says so)
 *   worker counters c[]                        written by the owner only
 *                                              (relaxed load+store), summed
 *                                              by readers
 * Lock order: pool->lock before idle_lock; inj_lock is a leaf; no internal
 * lock is held while user code (tasks, the log hook) runs.
 */
#include "internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>

#define MAX_THREADS_CAP  10000u
#define ENV_THREADS_MAX  4096
#define RETIRE_NS        (3 * ASYNC_SECOND)
#define SEARCH_NS        (20 * ASYNC_MICROSECOND)
#define SPAWN_RETRY_NS   (10 * ASYNC_MILLISECOND)

enum { PH_RUNNING, PH_DRAINING, PH_STOPPING, PH_CANCELLING = ASYNC_PH_CANCELLING };

struct async_pool {
    _Atomic int          phase;   /* first: see async__pool_phase_cancelling */
    char                 pad_phase[ASYNC_CACHELINE - sizeof(int)];
    /* injection queue: producers' line, then the consumers' */
    _Atomic(struct future *) inj_head;
    char                 pad0[ASYNC_CACHELINE - sizeof(void *)];
    struct future *_Atomic inj_tail;         /* written under inj_lock */
    async_lock_t         inj_lock;
    char                 pad1[ASYNC_CACHELINE - sizeof(void *) - sizeof(async_lock_t)];

    /* written by workers as they search, idle and block */
    _Atomic unsigned     nsearching, nidle, nblocked, nalive, peak;
    char                 pad2[ASYNC_CACHELINE - 5 * sizeof(unsigned)];
    /* written by threads that are not workers (submitting, running inline) */
    _Atomic unsigned     ext_submitting, outside_running;
    struct async_parker *_Atomic destroyer;
    _Atomic uint64_t     ext_c[ASYNC_NCOUNTERS];   /* counts of non-worker threads */
    char                 pad3[ASYNC_CACHELINE];

    /* configuration: immutable after create */
    _Atomic unsigned     threads;            /* lowered if fewer start */
    unsigned             max_threads;
    char                 name[12];
    void               (*log)(void *ctx, const char *line);
    void                *log_ctx;

    pthread_mutex_t      lock;
    struct async_worker **slots;             /* max_threads entries */
    _Atomic unsigned     nslots;
    struct async_blocker *blockers;          /* guarded by lock */
    _Atomic bool         saturated;          /* written under lock */
    _Atomic bool         spawn_failed;       /* written under lock */

    pthread_mutex_t      idle_lock;
    struct async_worker *idle_top;           /* guarded by idle_lock */

    struct future       *inj_stub;            /* the queue's dummy node */
};

_Static_assert(offsetof(struct async_pool, phase) == 0,
               "async__pool_phase_cancelling reads the phase at offset 0");

static void *worker_main(void *arg);

/* ------------------------------------------------------- counters */

#define wcount async__worker_count

void async__pool_count_ext(struct async_pool *pool, int c)
{
    atomic_fetch_add_explicit(&pool->ext_c[c], 1, memory_order_relaxed);
}

static void sum_counters(struct async_pool *pool, uint64_t out[ASYNC_NCOUNTERS])
{
    for (int i = 0; i < ASYNC_NCOUNTERS; i++)
        out[i] = atomic_load_explicit(&pool->ext_c[i], memory_order_relaxed);
    unsigned n = atomic_load_explicit(&pool->nslots, memory_order_acquire);
    for (unsigned s = 0; s < n; s++)
        for (int i = 0; i < ASYNC_NCOUNTERS; i++)
            out[i] += atomic_load_explicit(&pool->slots[s]->c[i], memory_order_relaxed);
}

static uint64_t sum_one(struct async_pool *pool, int c)
{
    uint64_t v = atomic_load_explicit(&pool->ext_c[c], memory_order_relaxed);
    unsigned n = atomic_load_explicit(&pool->nslots, memory_order_acquire);
    for (unsigned s = 0; s < n; s++)
        v += atomic_load_explicit(&pool->slots[s]->c[c], memory_order_relaxed);
    return v;
}

static size_t queued_estimate(struct async_pool *pool)
{
    uint64_t c[ASYNC_NCOUNTERS];
    sum_counters(pool, c);
    uint64_t gone = c[ASYNC_C_STARTED] + c[ASYNC_C_CANCELLED];
    return c[ASYNC_C_SUBMITTED] > gone ? (size_t)(c[ASYNC_C_SUBMITTED] - gone) : 0;
}

/* Every submitted task finished? Read F before S: see the opening comment. */
static bool quiescent(struct async_pool *pool)
{
    uint64_t f = sum_one(pool, ASYNC_C_SUCCEEDED) + sum_one(pool, ASYNC_C_FAILED) +
                 sum_one(pool, ASYNC_C_CANCELLED);
    ASYNC_FENCE();
    return f == sum_one(pool, ASYNC_C_SUBMITTED);
}

/* ------------------------------------------------ injection queue */

static void inject_push(struct async_pool *pool, struct future *f)
{
    atomic_store_explicit(&f->next, NULL, memory_order_relaxed);
    struct future *prev = atomic_exchange_explicit(&pool->inj_head, f, memory_order_acq_rel);
    atomic_store_explicit(&prev->next, f, memory_order_release);
}

/* Under inj_lock. NULL when empty or when a producer is mid-push. */
static struct future *inject_pop_locked(struct async_pool *pool)
{
    struct future *stub = pool->inj_stub;
    struct future *tail = atomic_load_explicit(&pool->inj_tail, memory_order_relaxed);
    struct future *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == stub) {
        if (!next)
            return NULL;
        atomic_store_explicit(&pool->inj_tail, next, memory_order_relaxed);
        tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next) {
        atomic_store_explicit(&pool->inj_tail, next, memory_order_relaxed);
        return tail;
    }
    if (tail != atomic_load_explicit(&pool->inj_head, memory_order_acquire))
        return NULL;   /* a producer has swapped head but not linked yet */
    inject_push(pool, stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next) {
        atomic_store_explicit(&pool->inj_tail, next, memory_order_relaxed);
        return tail;
    }
    return NULL;
}

/* Empty: the stub is the only node and nobody is pushing. head == stub alone
 * is not enough: a consumer that re-pushes the stub behind the last node
 * leaves head == stub while that node (or one a producer swapped in just
 * before) is still to be popped; then inj_tail is that node, not the stub. */
static bool inject_empty(struct async_pool *pool)
{
    struct future *stub = pool->inj_stub;
    return atomic_load_explicit(&pool->inj_head, memory_order_seq_cst) == stub &&
           atomic_load_explicit(&pool->inj_tail, memory_order_acquire) == stub &&
           atomic_load_explicit(&stub->next, memory_order_acquire) == NULL;
}

static struct future *inject_pop(struct async_pool *pool)
{
    if (inject_empty(pool))
        return NULL;
    async__lock(&pool->inj_lock);
    struct future *f = inject_pop_locked(pool);
    async__unlock(&pool->inj_lock);
    return f;
}

static bool work_visible(struct async_pool *pool)
{
    if (!inject_empty(pool))
        return true;
    unsigned n = atomic_load_explicit(&pool->nslots, memory_order_acquire);
    for (unsigned s = 0; s < n; s++)
        if (!async__deque_empty(&pool->slots[s]->dq))
            return true;
    return false;
}

/* --------------------------------------------------- idle workers */

static bool wake_one(struct async_pool *pool)
{
    ASYNC_CHECK(pthread_mutex_lock(&pool->idle_lock));
    struct async_worker *w = pool->idle_top;
    if (w) {
        pool->idle_top = w->idle_next;
        w->idle = false;
        w->searching = true;
        atomic_fetch_add_explicit(&pool->nsearching, 1, memory_order_seq_cst);
        atomic_fetch_sub_explicit(&pool->nidle, 1, memory_order_seq_cst);
    }
    ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
    if (w)
        async__unpark(w->parker);
    return w != NULL;
}

static void wake_all_idle(struct async_pool *pool)
{
    ASYNC_CHECK(pthread_mutex_lock(&pool->idle_lock));
    struct async_worker *list = pool->idle_top;
    pool->idle_top = NULL;
    for (struct async_worker *w = list; w; w = w->idle_next) {
        w->idle = false;
        atomic_fetch_sub_explicit(&pool->nidle, 1, memory_order_seq_cst);
        async__unpark(w->parker);   /* type-stable parker: safe under the lock */
    }
    ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
}

static void idle_push(struct async_worker *w)
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
static void idle_remove_locked(struct async_worker *w)
{
    struct async_pool *pool = w->pool;
    if (!w->idle)
        return;
    struct async_worker **pp = &pool->idle_top;
    while (*pp != w)
        pp = &(*pp)->idle_next;
    *pp = w->idle_next;
    w->idle = false;
    atomic_fetch_sub_explicit(&pool->nidle, 1, memory_order_seq_cst);
}

static void idle_remove(struct async_worker *w)
{
    ASYNC_CHECK(pthread_mutex_lock(&w->pool->idle_lock));
    idle_remove_locked(w);
    ASYNC_CHECK(pthread_mutex_unlock(&w->pool->idle_lock));
}

static void stop_searching(struct async_worker *w)
{
    if (w->searching) {
        w->searching = false;
        atomic_fetch_sub_explicit(&w->pool->nsearching, 1, memory_order_seq_cst);
    }
}

static void set_stopping(struct async_pool *pool)
{
    int ph = PH_DRAINING;
    if (atomic_compare_exchange_strong(&pool->phase, &ph, PH_STOPPING)) {
        wake_all_idle(pool);
        struct async_parker *d = atomic_load(&pool->destroyer);
        if (d)
            async__unpark(d);
    }
}

/* ------------------------------------------------------- spawning */

static void log_line(struct async_pool *pool, const char *line)
{
    if (pool && pool->log)
        pool->log(pool->log_ctx, line);
    else
        fprintf(stderr, "libasync: %s\n", line);
}

void async__pool_log(struct async_pool *pool, const char *line)
{
    log_line(pool, line);
}

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
    for (int i = 0; i < ASYNC_NCOUNTERS; i++)
        atomic_init(&w->c[i], 0);
    return w;
}

/* Start one more worker; pool->lock held. 0 or an errno code. */
static int spawn_locked(struct async_pool *pool)
{
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
    int rc = async__thread_create(&w->thread, worker_main, w);
    if (rc) {
        atomic_fetch_sub(&pool->nalive, 1);
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
 * once that the pool is saturated. */
static void all_blocked(struct async_pool *pool)
{
    char line[128];
    line[0] = '\0';
    ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
    unsigned alive = atomic_load(&pool->nalive);
    unsigned blocked = atomic_load(&pool->nblocked);
    if (atomic_load(&pool->phase) != PH_CANCELLING && blocked >= alive &&
        atomic_load(&pool->phase) != PH_STOPPING) {
        bool capped = alive >= pool->max_threads;
        int rc = capped ? EAGAIN : spawn_locked(pool);
        /* A replacement that could not start (no memory, no thread) is
         * tried again by the blocked workers (async__block_retry). */
        atomic_store(&pool->spawn_failed, rc != 0 && !capped);
        if (rc && !atomic_load(&pool->saturated)) {
            atomic_store(&pool->saturated, true);
            snprintf(line, sizeof line, "saturated: %u workers blocked, %zu tasks queued",
                     blocked, queued_estimate(pool));
        }
    }
    ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
    if (line[0])
        log_line(pool, line);
}

/* New work is visible: wake or start a worker if nobody will look. */
static void signal_work(struct async_pool *pool)
{
    ASYNC_FENCE();
    if (atomic_load_explicit(&pool->nsearching, memory_order_relaxed) != 0)
        return;
    if (atomic_load_explicit(&pool->nidle, memory_order_relaxed) != 0 && wake_one(pool))
        return;
    unsigned alive = atomic_load_explicit(&pool->nalive, memory_order_relaxed);
    if (alive && atomic_load_explicit(&pool->nblocked, memory_order_relaxed) >= alive)
        all_blocked(pool);
}

/* -------------------------------------------------------- workers */

static struct future *steal(struct async_worker *w)
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
        struct future *f = async__deque_steal(&v->dq);
        if (f) {
            wcount(w, ASYNC_C_STOLEN);
            return f;
        }
    }
    return NULL;
}

static struct future *search(struct async_worker *w)
{
    struct async_pool *pool = w->pool;
    if (!w->searching) {
        unsigned busy = atomic_load(&pool->nalive) - atomic_load(&pool->nidle);
        if (2 * atomic_load(&pool->nsearching) >= busy)
            return NULL;   /* enough searchers already */
        w->searching = true;
        atomic_fetch_add_explicit(&pool->nsearching, 1, memory_order_seq_cst);
    }
    int64_t until = async_now() + SEARCH_NS;
    for (unsigned round = 0;; round++) {
        struct future *f = steal(w);
        if (!f)
            f = inject_pop(pool);
        if (f)
            return f;
        if (atomic_load_explicit(&pool->phase, memory_order_relaxed) != PH_RUNNING)
            return NULL;
        if ((round & 7) == 7 && async_now() >= until)
            return NULL;
        sched_yield();
    }
}

static struct future *find_work(struct async_worker *w)
{
    struct future *f = async__deque_pop(&w->dq);
    if (!f)
        f = inject_pop(w->pool);
    if (!f)
        f = search(w);
    if (f && w->searching) {
        /* The last searcher found work: there may be more, wake another. */
        w->searching = false;
        if (atomic_fetch_sub_explicit(&w->pool->nsearching, 1, memory_order_seq_cst) == 1)
            signal_work(w->pool);
    }
    return f;
}

static void run_popped(struct future *f)
{
    if (async__task_claim(f))
        async__task_run(f);
    async__record_release(f);   /* the queue's reference */
}

/* Park until there is work. false: this worker should exit. */
static bool go_idle(struct async_worker *w)
{
    struct async_pool *pool = w->pool;
    stop_searching(w);   /* before joining the idle list: a waker that takes
                            us off it makes us a searcher again */
    idle_push(w);
    ASYNC_FENCE();
    int ph = atomic_load(&pool->phase);
    if (ph == PH_DRAINING && quiescent(pool)) {
        set_stopping(pool);
        ph = PH_STOPPING;
    }
    if (ph == PH_STOPPING || ph == PH_CANCELLING || work_visible(pool)) {
        idle_remove(w);
        return ph == PH_RUNNING || ph == PH_DRAINING;
    }
    bool extra = atomic_load(&pool->nalive) > atomic_load(&pool->threads);
    int64_t deadline = extra && ph == PH_RUNNING ? async_now() + RETIRE_NS : ASYNC_FOREVER;
    for (;;) {
        async__park(w->parker, deadline);
        ASYNC_CHECK(pthread_mutex_lock(&pool->idle_lock));
        if (!w->idle) {
            ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
            ph = atomic_load(&pool->phase);
            return ph == PH_RUNNING || ph == PH_DRAINING;
        }
        if (deadline != ASYNC_FOREVER && async__deadline_passed(deadline) &&
            atomic_load(&pool->nalive) > atomic_load(&pool->threads)) {
            idle_remove_locked(w);
            ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
            return false;   /* an idle replacement retires */
        }
        ASYNC_CHECK(pthread_mutex_unlock(&pool->idle_lock));
    }
}

static void *worker_main(void *arg)
{
    struct async_worker *w = arg;
    struct async_pool *pool = w->pool;
    async__tls.worker = w;
    async__tls.parker = w->parker;
    async__tls_register();
    char name[16];
    snprintf(name, sizeof name, "%s-%u", pool->name, w->index);
    pthread_setname_np(pthread_self(), name);
    for (;;) {
        int ph = atomic_load_explicit(&pool->phase, memory_order_acquire);
        if (ph == PH_STOPPING || ph == PH_CANCELLING)
            break;
        struct future *f = find_work(w);
        if (f) {
            run_popped(f);
            continue;
        }
        if (!go_idle(w))
            break;
    }
    stop_searching(w);
    ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
    w->dead = true;
    atomic_fetch_sub(&pool->nalive, 1);
    ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
    /* The parker stays with the worker record (reused by a replacement in
     * this slot), not with the thread. */
    async__tls.parker = NULL;
    async__tls.worker = NULL;
    return NULL;
}

/* ----------------------------------------------------- submission */

static bool accepts(struct async_pool *pool, int ph)
{
    if (ph == PH_RUNNING)
        return true;
    if (ph != PH_DRAINING)
        return false;
    struct future *cur = async__current_task();
    return cur && cur->pool == pool;   /* own work during a drain */
}

int async__pool_submit(struct async_pool *pool, struct future *f)
{
    struct async_worker *w = async__tls.worker;
    if (w && w->pool == pool) {
        if (!accepts(pool, atomic_load_explicit(&pool->phase, memory_order_acquire)))
            return ECANCELED;
        wcount(w, ASYNC_C_SUBMITTED);
        if (async__deque_push(&w->dq, f) != 0)
            inject_push(pool, f);   /* no memory to grow: the shared queue */
        signal_work(pool);
        return 0;
    }
    atomic_fetch_add_explicit(&pool->ext_submitting, 1, memory_order_seq_cst);
    if (!accepts(pool, atomic_load_explicit(&pool->phase, memory_order_seq_cst))) {
        atomic_fetch_sub_explicit(&pool->ext_submitting, 1, memory_order_release);
        return ECANCELED;
    }
    atomic_fetch_add_explicit(&pool->ext_c[ASYNC_C_SUBMITTED], 1, memory_order_relaxed);
    inject_push(pool, f);
    atomic_fetch_sub_explicit(&pool->ext_submitting, 1, memory_order_release);
    signal_work(pool);
    return 0;
}

bool async__pool_pop_local(struct future *f)
{
    struct async_worker *w = async__tls.worker;
    if (!w || w->pool != f->pool || async__deque_peek_bottom(&w->dq) != f)
        return false;
    return async__deque_pop(&w->dq) == f;
}

bool async__pool_cancelling(const struct async_pool *pool)
{
    return pool && async__pool_phase_cancelling(pool);
}

static void outside_leave(struct async_pool *pool)
{
    /* Read the destroyer before the decrement: after it the pool may go. */
    struct async_parker *d = atomic_load(&pool->destroyer);
    if (atomic_fetch_sub_explicit(&pool->outside_running, 1, memory_order_seq_cst) == 1 && d)
        async__unpark(d);
}

/* Dekker with pool_stop: it stores the phase, then reads outside_running;
 * we increment, then read the phase. A cancelling pool's destroyer cancels
 * every queued task itself, so nobody else may claim one then. */
bool async__pool_inline_begin(struct async_pool *pool)
{
    atomic_fetch_add_explicit(&pool->outside_running, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&pool->phase, memory_order_seq_cst) == PH_CANCELLING) {
        outside_leave(pool);
        return false;
    }
    return true;
}

void async__pool_inline_end(struct async_pool *pool)
{
    int ph = atomic_load(&pool->phase);
    if (ph == PH_DRAINING && quiescent(pool))
        set_stopping(pool);
    outside_leave(pool);
}

/* ------------------------------------------------------- blocking */

void async__block_enter(struct async_blocker *b)
{
    struct future *t = async__current_task();
    struct async_worker *w = async__tls.worker;
    b->pool = t ? t->pool : NULL;
    b->task = t;
    b->worker = w != NULL;
    if (b->pool) {
        ASYNC_CHECK(pthread_mutex_lock(&b->pool->lock));
        b->prev = NULL;
        b->next = b->pool->blockers;
        if (b->next)
            b->next->prev = b;
        b->pool->blockers = b;
        ASYNC_CHECK(pthread_mutex_unlock(&b->pool->lock));
    }
    if (w) {
        struct async_pool *wp = w->pool;
        unsigned nb = atomic_fetch_add_explicit(&wp->nblocked, 1, memory_order_seq_cst) + 1;
        if (nb >= atomic_load(&wp->nalive) && work_visible(wp))
            signal_work(wp);
    }
}

void async__pool_wake_task(struct async_pool *pool, struct future *task)
{
    if (!pool)
        return;
    ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
    for (struct async_blocker *b = pool->blockers; b; b = b->next)
        if (b->task == task)
            async__unpark(b->parker);   /* type-stable parker */
    ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
}

/* A blocked worker whose pool could not start a replacement tries again
 * every SPAWN_RETRY_NS while it stays blocked: a transient failure (memory,
 * threads) must not leave queued work stranded behind blocked workers. Returns
 * when to try next, or ASYNC_FOREVER when nothing needs trying. */
int64_t async__block_retry(struct async_blocker *b)
{
    struct async_worker *w = async__tls.worker;
    if (!b->worker || !w)
        return ASYNC_FOREVER;
    struct async_pool *wp = w->pool;
    if (!atomic_load_explicit(&wp->spawn_failed, memory_order_relaxed))
        return ASYNC_FOREVER;
    unsigned alive = atomic_load(&wp->nalive);
    if (atomic_load(&wp->nblocked) >= alive && work_visible(wp))
        all_blocked(wp);
    return atomic_load(&wp->spawn_failed) ? async_now() + SPAWN_RETRY_NS : ASYNC_FOREVER;
}

void async__block_exit(struct async_blocker *b)
{
    if (b->pool) {
        struct async_pool *pool = b->pool;
        ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
        if (b->prev)
            b->prev->next = b->next;
        else
            pool->blockers = b->next;
        if (b->next)
            b->next->prev = b->prev;
        ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
    }
    if (b->worker) {
        struct async_pool *wp = async__tls.worker->pool;
        atomic_fetch_sub_explicit(&wp->nblocked, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&wp->saturated, memory_order_relaxed)) {
            ASYNC_CHECK(pthread_mutex_lock(&wp->lock));
            atomic_store(&wp->saturated, false);   /* a new episode may log again */
            ASYNC_CHECK(pthread_mutex_unlock(&wp->lock));
        }
    }
}

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

static void pool_free(struct async_pool *pool)
{
    unsigned n = atomic_load(&pool->nslots);
    for (unsigned s = 0; s < n; s++) {
        struct async_worker *w = pool->slots[s];
        async__deque_fini(&w->dq);
        async__parker_put(w->parker);
        async__free(w);
    }
    async__free(pool->slots);
    async__free(pool->inj_stub);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->idle_lock);
    async__free(pool);
}

static struct async_pool *pool_alloc(const async_pool_config_t *cfg, unsigned threads,
                                     unsigned max)
{
    struct async_pool *pool = async__calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->slots = async__calloc(max, sizeof *pool->slots);
    pool->inj_stub = async__calloc(1, sizeof *pool->inj_stub);
    if (!pool->slots || !pool->inj_stub) {
        async__free(pool->slots);
        async__free(pool->inj_stub);
        async__free(pool);
        return NULL;
    }
    atomic_init(&pool->threads, threads);
    pool->max_threads = max;
    snprintf(pool->name, sizeof pool->name, "%s", cfg && cfg->name ? cfg->name : "async");
    pool->log = cfg ? cfg->log : NULL;
    pool->log_ctx = cfg ? cfg->log_ctx : NULL;
    ASYNC_CHECK(pthread_mutex_init(&pool->lock, NULL));
    ASYNC_CHECK(pthread_mutex_init(&pool->idle_lock, NULL));
    atomic_init(&pool->inj_stub->next, NULL);
    atomic_init(&pool->inj_head, pool->inj_stub);
    atomic_init(&pool->inj_tail, pool->inj_stub);
    atomic_init(&pool->phase, PH_RUNNING);
    return pool;
}

async_pool_t *async_pool_create(const async_pool_config_t *cfg)
{
    unsigned threads = cfg && cfg->threads ? cfg->threads : env_threads();
    unsigned max = cfg && cfg->max_threads ? cfg->max_threads : MAX_THREADS_CAP;
    if (max < threads || max > MAX_THREADS_CAP) {
        errno = EINVAL;
        return NULL;
    }
    struct async_pool *pool = pool_alloc(cfg, threads, max);
    if (!pool) {
        errno = ENOMEM;
        return NULL;
    }
    ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
    int rc = 0;
    unsigned started = 0;
    while (started < threads && (rc = spawn_locked(pool)) == 0)
        started++;
    ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
    if (started == 0) {
        pool_free(pool);
        errno = rc == ENOMEM ? ENOMEM : EAGAIN;
        return NULL;
    }
    atomic_store(&pool->threads, started);   /* runs with the workers it got */
    return pool;
}

static void wake_blockers(struct async_pool *pool)
{
    ASYNC_CHECK(pthread_mutex_lock(&pool->lock));
    for (struct async_blocker *b = pool->blockers; b; b = b->next)
        async__unpark(b->parker);   /* type-stable parkers */
    ASYNC_CHECK(pthread_mutex_unlock(&pool->lock));
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
    return atomic_load(&pool->phase) != PH_DRAINING;
}

static bool no_outside_runs(struct async_pool *pool)
{
    return atomic_load(&pool->outside_running) == 0;
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
}

/* Every record still queued: cancel it if nobody ran it, drop the queue's
 * reference. Single-threaded now: every worker has exited. */
static void cancel_leftovers(struct async_pool *pool)
{
    struct future *f;
    for (;;) {
        async__lock(&pool->inj_lock);
        f = inject_pop_locked(pool);
        async__unlock(&pool->inj_lock);
        if (!f && !inject_empty(pool)) {
            sched_yield();   /* a producer finishing its link */
            continue;
        }
        if (!f)
            break;
        async__future_cancel_pending(f);
        async__record_release(f);
    }
    unsigned n = atomic_load(&pool->nslots);
    for (unsigned s = 0; s < n; s++)
        while ((f = async__deque_pop(&pool->slots[s]->dq)) != NULL) {
            async__future_cancel_pending(f);
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
    if (async__tls.worker && async__tls.worker->pool == pool)
        return EDEADLK;
    struct async_parker *me = async__parker_self();
    atomic_store(&pool->destroyer, me);
    int from = PH_RUNNING;
    if (!atomic_compare_exchange_strong(&pool->phase, &from,
            how == ASYNC_DRAIN ? PH_DRAINING : PH_CANCELLING))
        return EINVAL;   /* destroyed twice */
    while (atomic_load(&pool->ext_submitting) != 0)
        sched_yield();
    if (how == ASYNC_CANCEL) {
        wake_blockers(pool);
    } else {
        ASYNC_FENCE();
        if (quiescent(pool))
            set_stopping(pool);
        wake_all_idle(pool);   /* idlers re-check quiescence */
        wait_parked(me, is_stopping, pool);
    }
    wake_all_idle(pool);
    join_workers(pool);
    wait_parked(me, no_outside_runs, pool);
    cancel_leftovers(pool);
    return 0;
}

int async_pool_destroy(async_pool_t *pool, async_shutdown_t how)
{
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
    ASYNC_CHECK(pthread_mutex_lock(&default_lock));
    async_pool_t *p = atomic_load(&default_pool);
    /* Keep the pointer published while draining, so the pool's own tasks
     * that call async_run still reach it; outside submitters are refused. */
    int rc = p ? pool_stop(p, how) : 0;
    if (p && rc == 0) {
        atomic_store(&default_pool, NULL);
        pool_free(p);
    }
    ASYNC_CHECK(pthread_mutex_unlock(&default_lock));
    return rc;
}

struct async_pool *async__pool_resolve(struct async_pool *pool)
{
    return pool ? pool : async_default_pool();
}

int async_pool_stats(async_pool_t *pool, async_pool_stats_t *out)
{
    if (!out)
        return EINVAL;
    if (!pool && !(pool = async_default_pool()))
        return errno;
    uint64_t c[ASYNC_NCOUNTERS];
    sum_counters(pool, c);
    out->threads = atomic_load(&pool->nalive);
    out->peak_threads = atomic_load(&pool->peak);
    out->blocked = atomic_load(&pool->nblocked);
    out->idle = atomic_load(&pool->nidle);
    uint64_t gone = c[ASYNC_C_STARTED] + c[ASYNC_C_CANCELLED];
    out->queued = c[ASYNC_C_SUBMITTED] > gone ? (size_t)(c[ASYNC_C_SUBMITTED] - gone) : 0;
    out->submitted = c[ASYNC_C_SUBMITTED];
    out->succeeded = c[ASYNC_C_SUCCEEDED];
    out->failed = c[ASYNC_C_FAILED];
    out->cancelled = c[ASYNC_C_CANCELLED];
    out->stolen = c[ASYNC_C_STOLEN];
    return 0;
}
