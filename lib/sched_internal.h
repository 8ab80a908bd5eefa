/*
 * lib/sched_internal.h — the pool record, shared by the scheduler (runq.c,
 * stats.c, workers.c, switch.c, sched.c, submit.c) and the pool's life
 * cycle (pool.c).
 * Never installed.
 *
 * Fields and their guards:
 *   h.log, h.log_ctx, h.name, threads (lowered once at create), max_threads,
 *   stacks, xslot, slots[] array itself        immutable after create
 *   xslot->word                                atomic: exchanged in by an
 *                                              outside waker, CASed out by
 *                                              it, taken by workers
 *   slots[i] contents, nslots, worker dead/has_thread, saturated,
 *   spawn_failed                               pool->lock
 *   idle_top, worker idle/idle_next, worker searching while idle
 *                                              pool->idle_lock
 *   inj.tail, finj.tail                        written under the queue's
 *                                              lock; read lock-free by the
 *                                              emptiness check
 *   ext_next                                   atomic: CASed in by an
 *                                              outside submitter, out by
 *                                              its inline claimer;
 *                                              exchanged out by workers
 *                                              (seq_cst: the dump's walk,
 *                                              runq.c)
 *   heap, ntimers, cap                         timer_lock
 *   h.phase, nsearching, nidle, nblocked, nalive, peak, ext_*,
 *   outside_running, destroyer, timer_next, nstacks
 *                                              atomics (seq_cst where a
 *                                              Dekker pair says so)
 *   worker counters c[]                        written by the owner only
 *                                              (relaxed load+store), summed
 *                                              by readers
 */
#ifndef ASYNC_SCHED_INTERNAL_H
#define ASYNC_SCHED_INTERNAL_H

#include "internal.h"

enum { PH_RUNNING, PH_DRAINING, PH_STOPPING, PH_CANCELLING = ASYNC_PH_CANCELLING };

/* Vyukov's intrusive MPSC queue; nodes link through their first word
 * (struct future and struct async_fiber both start with `next`). */
struct async_qnode {
    void *_Atomic next;
};
struct async_mpsc {
    struct async_qnode *_Atomic head;          /* producers exchange it */
    char                pad0[ASYNC_CACHELINE - sizeof(void *)];
    struct async_qnode *_Atomic tail;          /* written under lock */
    async_lock_t        lock;                  /* consumers serialise */
    struct async_qnode *dummy;                 /* the queue's dummy node */
    char                pad1[ASYNC_CACHELINE - 2 * sizeof(void *) - sizeof(async_lock_t)];
};

/* One pending deadline of a parked fiber: on the fiber's stack, in its
 * pool's heap while idx != ASYNC_NO_TIMER. */
#define ASYNC_NO_TIMER SIZE_MAX
struct async_timer {
    int64_t   when;
    uintptr_t target;
    size_t    idx;
};

/* The outside fiber slot (runq.c, "Fibers woken from outside"): the fiber
 * that a thread outside the workers woke last, which that thread may take
 * back and run itself when it goes on to wait. Not in the pool: the waker
 * tries to take its fiber back without knowing whether the pool still
 * exists, so slots are never freed, only reused by later pools. */
struct async_xslot {
    char                 pad0[ASYNC_CACHELINE];   /* a line of its own, however
                                                     malloc aligns it */
    _Atomic uintptr_t    word;          /* a fiber | a put's tag (ASYNC_XTAG
                                            bits, which tell a worker watching
                                            the slot a new put from the one it
                                            saw), or 0: exchanged in by a
                                            waker, CASed out by it or by a
                                            worker */
    struct async_xslot  *free_next;     /* the free list's (runq.c) */
    char                 pad1[ASYNC_CACHELINE];
};

#define ASYNC_XTAG ((uintptr_t)7)
_Static_assert(_Alignof(struct async_fiber) > ASYNC_XTAG, "a fiber's low bits are free");

static inline struct async_fiber *async__xslot_fiber(uintptr_t word)
{
    return (struct async_fiber *)(word & ~ASYNC_XTAG);
}

struct async_pool {
    struct async_pool_head h;       /* first: phase, shared counters, log */
    struct async_mpsc    inj;       /* new tasks from outside the workers */
    struct async_mpsc    finj;      /* runnable fibers from outside */

    /* written by workers as they search, idle and block */
    _Atomic unsigned     nsearching, nidle, nblocked, nalive, peak;
    char                 pad2[ASYNC_CACHELINE - 5 * sizeof(unsigned)];
    /* written by threads that are not workers (submitting, running inline) */
    _Atomic unsigned     ext_touching;       /* outside threads pushing into
                                                a queue (a task, a woken fiber)
                                                and signalling: destroy waits
                                                for 0 before and at its end */
    _Atomic unsigned     outside_running;
    struct async_parker *_Atomic destroyer;
    char                 pad3[ASYNC_CACHELINE];
    /* the newest task a thread outside the workers submitted, which that
     * thread may take back to run inline (runq.c, "The outside slot") */
    _Atomic uintptr_t    ext_next;           /* a record | ASYNC_SLOT_* tag */
    char                 pad4[ASYNC_CACHELINE - sizeof(void *)];

    /* configuration: immutable after create */
    _Atomic unsigned     threads;            /* lowered if fewer start */
    unsigned             max_threads;
    struct async_stack_class *stacks;        /* NULL: thread mode */
    struct async_xslot  *xslot;              /* goroutine mode's outside fiber
                                                slot (NULL in thread mode) */

    pthread_mutex_t      lock;
    struct async_worker **slots;             /* max_threads entries */
    _Atomic unsigned     nslots;
    _Atomic bool         saturated;          /* written under lock */
    _Atomic bool         spawn_failed;       /* written under lock */

    pthread_mutex_t      idle_lock;
    struct async_worker *idle_top;           /* guarded by idle_lock */

    async_lock_t         timer_lock;
    struct async_timer **heap;               /* min-heap on when */
    size_t               ntimers, cap;
    _Atomic int64_t      timer_next;         /* heap[0]->when, or INT64_MAX */
    _Atomic size_t       nstacks;            /* stacks this pool's workers hold */

    /* dump.c: the list of live pools (guarded by its pools_lock), which
     * the dump walks and unread-failure lines look their pool up in; and
     * watch.c: the watchdog (immutable after create, but wd_stop: atomic) */
    struct async_pool   *list_next, *list_prev;
    bool                 listed;
    unsigned             loggers;            /* lines being written through the
                                                hook of this listed pool;
                                                guarded by pools_lock */
    int64_t              watchdog_ns;        /* $ASYNC_WATCHDOG; 0: none */
    pthread_t            wd_thread;
    struct async_parker *wd_parker;          /* NULL: no watchdog thread */
    _Atomic bool         wd_stop;
    uint32_t             magic;              /* ASYNC_MAGIC_POOL; _FREED once
                                                freed (checks.c); far from
                                                the start, which free() reuses */
};

/* runq.c, for dump.c: each task record found queued in pool, during a
 * record walk (record.c); see its comment. */
void    async__pool_each_queued(struct async_pool *pool,
                                void (*fn)(struct future *f, void *ctx), void *ctx);
/* dump.c, for pool.c: a new pool joins the list the dump walks; a pool
 * leaves it before it is freed. */
void    async__dump_pool_add(struct async_pool *pool);
void    async__dump_pool_remove(struct async_pool *pool);
/* dump.c, for watch.c: is pool stuck (and a signature of everything that
 * moves when it makes progress, and how many of its tasks wait); log the
 * "no progress" line and the pool's dump through its hook. */
bool    async__dump_sample(struct async_pool *pool, uint64_t *sig, size_t *waiting);
void    async__dump_report(struct async_pool *pool, int64_t stuck_ns, size_t waiting);
/* watch.c, for pool.c: the pool's watchdog starts, once the pool is listed,
 * if $ASYNC_WATCHDOG asks (when its thread cannot start, the pool runs
 * without one); it stops (joined) before the pool leaves the list. */
void    async__watchdog_start(struct async_pool *pool);
void    async__watchdog_stop(struct async_pool *pool);

_Static_assert(offsetof(struct async_pool, h) == 0,
               "the layers below read the pool's head at offset 0");

/* A destroyed pool handed to call: abort (checks.c). */
static inline void async__pool_check(const struct async_pool *pool, const char *call)
{
    if (ASYNC_UNLIKELY(pool->magic != ASYNC_MAGIC_POOL))
        async__misuse(call, "pool used after it was destroyed", pool);
}

/* ------------------------------------------------ runq.c (run queues) */

/* A run-queue item: a task record nobody has started (untagged), or a
 * runnable fiber (pointer | ASYNC_ITEM_FIBER; the fiber injection queue
 * holds only fibers, untagged). */
#define ASYNC_ITEM_FIBER ((uintptr_t)1)

static inline void *async__fiber_item(struct async_fiber *f)
{
    return (void *)((uintptr_t)f | ASYNC_ITEM_FIBER);
}

static inline struct async_fiber *async__item_fiber(void *it)
{
    uintptr_t u = (uintptr_t)it;
    return (u & ASYNC_ITEM_FIBER) ? (struct async_fiber *)(u & ~ASYNC_ITEM_FIBER) : NULL;
}

/* The injection queues (Vyukov's intrusive MPSC queue; runq.c): a push is
 * one exchange and a link, from any thread; the emptiness check and the
 * pop's fast path stay inline on the workers' hot path. */
static inline void async__mpsc_push(struct async_mpsc *q, void *node)
{
    struct async_qnode *n = node;
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    struct async_qnode *prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

/* Empty: the dummy is the only node and nobody is pushing. head == dummy
 * is not enough: a consumer that re-pushes the dummy behind the last node
 * leaves head == dummy while that node (or one a producer swapped in just
 * before) is still to be popped; then tail is that node, not the dummy. */
static inline bool async__mpsc_empty(struct async_mpsc *q)
{
    struct async_qnode *dummy = q->dummy;
    return atomic_load_explicit(&q->head, memory_order_seq_cst) == dummy &&
           atomic_load_explicit(&q->tail, memory_order_acquire) == dummy &&
           atomic_load_explicit(&dummy->next, memory_order_acquire) == NULL;
}

void *async__mpsc_pop_slow(struct async_mpsc *q);

/* The oldest node, or NULL when empty or when a producer is mid-push.
 * Before the consumers' lock, the check that pop_locked would make first
 * (async__mpsc_drained): the dummy node is at the tail
 * with nothing behind it. Unlike
 * async__mpsc_empty it does not read head, the producers' line: searching
 * workers poll an empty queue, and each read of head would cost the next
 * submission a cache miss (W1: 0.92 of the time with this check). */
static inline bool async__mpsc_drained(struct async_mpsc *q)
{
    struct async_qnode *dummy = q->dummy;
    return atomic_load_explicit(&q->tail, memory_order_acquire) == dummy &&
           atomic_load_explicit(&dummy->next, memory_order_acquire) == NULL;
}

static inline void *async__mpsc_pop(struct async_mpsc *q)
{
    return async__mpsc_drained(q) ? NULL : async__mpsc_pop_slow(q);
}

int   async__mpsc_init(struct async_mpsc *q);
void  async__mpsc_fini(struct async_mpsc *q);
/* Test hooks (the queue's push, pop and emptiness check, for a stress
 * program that drives it without a pool); nodes start with `next`. */
void  async__test_mpsc_push(struct async_mpsc *q, void *node);
void *async__test_mpsc_pop(struct async_mpsc *q);
bool  async__test_mpsc_empty(struct async_mpsc *q);
/* The outside slot's word (runq.c, "The outside slot"): a record (malloc'd:
 * 16-byte aligned) and a tag. HOLD: its submitter had credit, so it will
 * likely take it back at once; the other bits count the puts of the
 * submitter's thread, which tell a worker watching the slot one put from
 * the next of the same record. */
#define ASYNC_SLOT_HOLD ((uintptr_t)1)
#define ASYNC_SLOT_TAG  ((uintptr_t)ASYNC_RECORD_ALIGN - 1)
_Static_assert(ASYNC_SLOT_TAG >= 3, "the tag holds HOLD and a count of puts");

static inline struct future *async__slot_record(uintptr_t word)
{
    return (struct future *)(word & ~ASYNC_SLOT_TAG);
}

/* The outside slot's record, whatever its tag (the teardown's). */
static inline struct future *async__slot_take(struct async_pool *pool)
{
    if (!atomic_load_explicit(&pool->ext_next, memory_order_relaxed))
        return NULL;   /* a plain read first: leave the line shared */
    return async__slot_record(atomic_exchange_explicit(&pool->ext_next, 0,
                                                       memory_order_seq_cst));
}

/* The outside fiber slots: one for a new pool (NULL: no memory), and back
 * to the free list once the pool's workers have left (it must be empty). */
struct async_xslot *async__xslot_get(void);
void  async__xslot_put(struct async_xslot *x);

/* For pool.c's teardown (no worker left): the next queued record. */
struct future *async__inject_pop_all_leftover(struct async_pool *pool);
/* Anything queued or runnable: an injection queue, the outside slot, a
 * deque, a run-next slot. */
bool  async__work_visible(struct async_pool *pool);
bool  async__pool_quiet(struct async_pool *pool);

/* ----------------------------------------------- stats.c (counters) */

void    async__sum_counters(struct async_pool *pool, uint64_t out[ASYNC_NCOUNTERS]);
/* Every submitted task finished (pool.c's drain, submit.c)? */
bool    async__quiescent(struct async_pool *pool);
/* Fibers of the pool parked or runnable (not running). */
size_t  async__pool_parked(struct async_pool *pool);
/* workers.c: would a worker of pool leave its loop now (stopping, and no
 * fiber parked)? Wakes every idle worker to look again when it would. */
bool    async__should_exit(struct async_pool *pool);
/* workers.c: park idle worker w (on the idle list) until it is taken off
 * it or a timer is due (true), or, past `retire`, an extra worker may
 * leave (false); past `trim`, give the spare stacks back once. */
bool    async__idle_park(struct async_worker *w, int64_t retire, int64_t trim);
/* Tasks submitted and neither started nor cancelled (the saturation line). */
size_t  async__queued_estimate(struct async_pool *pool);
/* async_pool_stats's snapshot of pool, its fields made to agree with each
 * other (pool.c, dump.c). */
void    async__pool_snapshot(struct async_pool *pool, async_pool_stats_t *out);

/* ---------------------------------------------------------- workers.c */

/* for sched.c, block.c, timer.c and submit.c */
void    async__signal_work(struct async_pool *pool);
void    async__kick_idle(struct async_pool *pool);
bool    async__wake_one(struct async_pool *pool);   /* true: one was idle */
void    async__block_enter(void);    /* a worker parks its thread */
void    async__block_exit(void);
int64_t async__block_retry(void);
/* The idle list, for sched.c's go_idle (see workers.c) */
void    async__idle_push(struct async_worker *w);
void    async__idle_remove(struct async_worker *w);
void    async__idle_remove_locked(struct async_worker *w);   /* idle_lock held */
void    async__stop_searching(struct async_worker *w);
/* Where a new worker thread starts (sched.c's worker_main), set by
 * async__sched_init before any pool can spawn. */
extern void *(*_Atomic async__worker_entry)(void *arg);

/* ----------------------------------------------------------- switch.c */

/* Park the running task's fiber (state PARKING; block.c): true once it has
 * been resumed, false when there was nowhere to switch to (no stack). */
bool    async__fiber_park(struct async_fiber *self);
/* async_yield on a stack fiber: to the back of the pool's queue. */
bool    async__fiber_yield(struct async_fiber *self);
/* For block.c: a thread outside the workers, about to wait on a channel
 * with no deadline and running no task, takes back the fiber it woke last
 * if it still sits in its pool's outside slot, and runs it until it parks,
 * yields or ends (runq.c, "Fibers woken from outside"). true: it ran one;
 * the caller looks at its own wait again. */
bool    async__host_run(void);
/* For sched.c. Where a fresh loop fiber starts (sched.c's loop), set by
 * async__sched_init before any pool can start a worker. */
extern _Atomic async_ctx_fn async__loop_entry;
/* A fiber that starts the loop afresh (NULL: no stack); a worker's cached
 * ones back to their class as it leaves. */
struct async_fiber *async__cache_get(struct async_worker *w);
void    async__cache_flush(struct async_worker *w);
/* The wait layer's ready hook: f, woken, goes where its pool will run it. */
void    async__fiber_ready(struct async_fiber *f);
/* The first thing after every switch: deal with the fiber we came from. */
void    async__land(void *transfer);
/* From the loop: run the parked task on f; this stack is left for good. */
_Noreturn void async__fiber_resume(struct async_worker *w, struct async_fiber *f);
/* From the thread's own stack: run fiber f (state RUNNING) until a switch
 * comes back here, and land that switch (a worker's start, a host's run). */
void    async__thread_run(struct async_fiber *f);
/* Leave this loop fiber for good, for `to` (a worker's own stack, or a
 * host's), which gives its stack back. */
_Noreturn void async__fiber_leave(struct async_fiber *to);

/* ------------------------------------------------------------ sched.c */

/* timer.c */
/* 0 | ENOMEM; *earliest: the new timer is the first to fire */
int     async__timer_add(struct async_pool *pool, struct async_timer *t, bool *earliest);
/* true when t was still in the heap (and is out of it now) */
bool    async__timer_del(struct async_pool *pool, struct async_timer *t);
/* Destroy: take every timer out and wake its target (after the workers left) */
void    async__timers_drain(struct async_pool *pool);
/* submit.c: add a timer that stands for a future (compose.c), on the terms of
 * a submission (refused with ECANCELED once the pool shuts down and does
 * not accept the caller); wakes an idle worker when it is the earliest.
 * 0 | ECANCELED | ENOMEM. */
int     async__pool_timer_add(struct async_pool *pool, struct async_timer *t);
void    async__timers_run(struct async_pool *pool);     /* wake what is due */
bool    async__timers_due(struct async_pool *pool, int64_t now);
int64_t async__timers_next(struct async_pool *pool);    /* ASYNC_FOREVER: none */
void    async__timers_fini(struct async_pool *pool);

/* workers.c, for pool.c */
int  async__spawn_locked(struct async_pool *pool);
void async__wake_all_idle(struct async_pool *pool);
void async__set_stopping(struct async_pool *pool);
/* sched.c, for pool.c: the hooks (ready, worker entry), at every create */
void async__sched_init(void);

#endif /* ASYNC_SCHED_INTERNAL_H */
