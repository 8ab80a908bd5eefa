/*
 * lib/runq.c — the run queues' shared parts: the injection queues, and the
 * walks of what is queued.
 *
 * Owns: struct async_mpsc's pop (its push, emptiness check and fast pop are
 * inline in sched_internal.h), the teardown's pop of leftover records, the
 * dump's walk of queued records (async__pool_each_queued), and "is any work
 * visible" over every queue of a pool. The per-worker deques are deque.c's;
 * the scheduler (sched.c) decides who takes from which queue when.
 *
 * The injection queues are Vyukov's intrusive MPSC queue: producers (any
 * thread: an outside submitter, a waker of a fiber) do one exchange on the
 * head and link the previous node; consumers (workers) serialise on the
 * queue's short lock and pop from the tail. A node is a task record or a
 * fiber (both begin with `next`); the queue keeps a dummy node so that it is
 * never empty of nodes.
 *
 * The outside slot. A thread that is not a worker of the pool (main, say)
 * often waits for what it has just submitted (W2; a request's fan-out and
 * join), claims it and runs it inline. Through the injection queue alone,
 * each such round trip left a stale entry behind: a searching worker later
 * popped the claimed record and dropped its last reference on another core,
 * and those pops and frees bounced the queue's and the record's lines
 * against the submitter. So the pool has a one-task slot, ext_next: an
 * outside submission goes there when the slot and the injection queue are
 * both empty, and on the queue otherwise; its waiter, having claimed it,
 * CASes it back out with the queue's reference (submit.c,
 * async__pool_unslot), and no worker ever meets it.
 *   - Order: workers take from the slot before the queue, so one thread's
 *     tasks still start in the order it submitted them (the slot's task is
 *     older than any queued after it).
 *   - Credit: a thread tries the slot only while it has credit, which a
 *     take-back renews, or once every SLOT_PROBE submissions (submit.c). A
 *     burst of submissions nobody waits for at once (W1) then never reads
 *     the slot's line, which the workers write as they take from it.
 *   - Hold: a submission made with credit is tagged HOLD (its submitter is
 *     likely to take it back within a few hundred nanoseconds), and workers
 *     take a held task only once they have seen it there, the same put,
 *     for RUNNEXT_GRACE (sched.c's new_take); the queue's tasks, younger,
 *     wait with it. A probe submission (no credit) is not held.
 *   - A searching worker that finds the queue empty looks at the slot every
 *     eighth round only: each look takes the line from the submitter, whose
 *     next put then misses.
 *   - Those two took away the long tail of W2's times: half its runs took
 *     210-340 ns and the others 155-170; with them, 20 of 21 runs took
 *     140-186 ns (interleaved runs). A task that a worker takes first turns
 *     its submitter's wait into a cross-core round trip.
 *   - Several outside threads share the slot: a submission that finds it
 *     taken goes on the queue, and its submitter claims it inline as before.
 *   - The slot holds a record (with a tag in its low bits: HOLD, and the
 *     count of its submitter's puts, which tells a watching worker one put
 *     from the next of the same record), never a fiber. Every exchange and
 *     CAS on it is seq_cst: taking a record out of it is a removal that the
 *     dump's walk orders against (below).
 *
 * Fibers woken from outside. A thread that is not a worker (main, say) and
 * hands a value to a task parked in a channel operation wakes its fiber,
 * then usually waits at once for the answer (W3: a ping-pong between main
 * and a task). Queued for a worker, the fiber would run on another core,
 * and every line of the hand-off (the fiber's state, the queue's node, the
 * waiter) would cross between the cores twice per round trip. So a waker
 * outside the workers that runs no task puts the fiber in its pool's
 * outside fiber slot (the old occupant goes to the fiber injection queue),
 * remembers it (gave, gave_slot in its thread state), and, when it then
 * waits on a channel or in a select with no deadline, CASes it back out
 * and runs it itself, on the
 * fiber's own stack, until the task parks, yields or ends (switch.c,
 * async__host_run): then the thread is back in its wait and looks at it
 * again. A round trip then stays on one core, as Go's does when main's
 * goroutine and the task share a P.
 *   - Whoever takes the fiber out of the slot (an exchange or a CAS) owns
 *     the wake-up and resumes it; nobody else does.
 *   - The slot is not in the pool: the waker does not know whether the pool
 *     still exists when it tries the CAS (a worker may have taken the fiber
 *     and the pool been destroyed since). Slots come from a free list and
 *     are never freed; a pool takes one at create and returns it, empty,
 *     once its workers have left. A CAS that finds its fiber in its slot
 *     proves that the pool is alive: the fiber is runnable there and
 *     counted as parked, which keeps the workers, and so the pool, alive;
 *     the host then registers as an inline runner (outside_running) before
 *     it counts the fiber resumed.
 *   - Workers take the slot's fiber only once they have seen the same one
 *     there (the same put: the slot's word is the fiber and a 3-bit tag
 *     that the waker's thread counts) for RUNNEXT_GRACE, as they take
 *     another worker's run-next fiber (sched.c): a waker that is going to
 *     wait takes it back sooner than that. A waker that does not wait loses
 *     the grace, about as long as waking a parked worker takes. A searching
 *     worker looks at the slot every eighth round only: each look takes the
 *     line from the waker, whose next put then misses (W3: the put was a
 *     third of the main thread's time when searchers looked every round).
 *   - The put still signals the workers, as any wake from outside does: the
 *     waker may block outside the library instead of waiting.
 *   - Only plain threads use the slot: a worker of another pool, or a task
 *     running inline, could not take the fiber back (a task's waits never
 *     run other fibers).
 *   - A wait with a deadline never takes the fiber back: it only waits, so
 *     it returns on time (API.md). Nor does a wait for a future: its
 *     waiter runs only what API.md lets it run inline.
 *
 * Locks: each queue's lock (a leaf) guards its tail and the re-push of the
 * dummy; pushes take no lock. The outside slot is one atomic pointer, so is
 * the outside fiber slot; xslot_lock (a leaf) guards the free list of
 * outside fiber slots.
 */
#include "sched_internal.h"

#include <sched.h>

/* ------------------------------------------ outside fiber slots */

static pthread_mutex_t     xslot_lock = PTHREAD_MUTEX_INITIALIZER;
static struct async_xslot *xslot_free;   /* guarded by xslot_lock */

struct async_xslot *async__xslot_get(void)
{
    ASYNC_CHECK(pthread_mutex_lock(&xslot_lock));
    struct async_xslot *x = xslot_free;
    if (x)
        xslot_free = x->free_next;
    ASYNC_CHECK(pthread_mutex_unlock(&xslot_lock));
    if (!x) {
        /* never freed: see "Fibers woken from outside" */
        x = async__calloc(1, sizeof *x);
        if (!x)
            return NULL;
        atomic_init(&x->word, 0);
    }
    x->free_next = NULL;
    return x;
}

void async__xslot_put(struct async_xslot *x)
{
    if (!x)
        return;
    ASYNC_ASSERT(atomic_load(&x->word) == 0);
    ASYNC_CHECK(pthread_mutex_lock(&xslot_lock));
    x->free_next = xslot_free;
    xslot_free = x;
    ASYNC_CHECK(pthread_mutex_unlock(&xslot_lock));
}

/* ------------------------------------------------ injection queues */

int async__mpsc_init(struct async_mpsc *q)
{
    q->dummy = async__calloc(1, sizeof(struct async_fiber) > sizeof(struct future)
                               ? sizeof(struct async_fiber) : sizeof(struct future));
    if (!q->dummy)
        return ENOMEM;
    atomic_init(&q->dummy->next, NULL);
    atomic_init(&q->head, q->dummy);
    atomic_init(&q->tail, q->dummy);
    atomic_init(&q->lock.word, 0);
    return 0;
}

void async__mpsc_fini(struct async_mpsc *q)
{
    async__free(q->dummy);
    q->dummy = NULL;
}

/* Under q->lock. NULL when empty or when a producer is mid-push. */
static void *mpsc_pop_locked(struct async_mpsc *q)
{
    ASYNC_ASSERT(async__lock_mine(&q->lock));
    struct async_qnode *dummy = q->dummy;
    struct async_qnode *tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    struct async_qnode *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == dummy) {
        if (!next)
            return NULL;
        atomic_store_explicit(&q->tail, next, memory_order_relaxed);
        tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next) {
        atomic_store_explicit(&q->tail, next, memory_order_relaxed);
        return tail;
    }
    if (tail != atomic_load_explicit(&q->head, memory_order_acquire))
        return NULL;   /* a producer has swapped head but not linked yet */
    async__mpsc_push(q, dummy);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next) {
        atomic_store_explicit(&q->tail, next, memory_order_relaxed);
        return tail;
    }
    return NULL;
}

/* async__mpsc_pop past its emptiness check: take the consumers' lock. */
void *async__mpsc_pop_slow(struct async_mpsc *q)
{
    async__lock(&q->lock);
    void *n = mpsc_pop_locked(q);
    async__unlock(&q->lock);
    return n;
}

/* Test hooks: test/stress/stress_queues.c drives the queue directly. */
void async__test_mpsc_push(struct async_mpsc *q, void *node)
{
    async__mpsc_push(q, node);
}

void *async__test_mpsc_pop(struct async_mpsc *q)
{
    return async__mpsc_pop(q);
}

bool async__test_mpsc_empty(struct async_mpsc *q)
{
    return async__mpsc_empty(q);
}

struct each_ctx {
    void (*fn)(struct future *f, void *ctx);
    void *ctx;
};

/* A deque item for async__pool_each_queued: a record, not a fiber. */
static void each_record(void *it, void *ctx)
{
    struct each_ctx *c = ctx;
    if (!async__item_fiber(it))
        c->fn(it, c->ctx);
}

/* For pool.c's teardown (no worker left): the next queued record, waiting
 * out a producer that is finishing its link; NULL when empty. */
struct future *async__inject_pop_all_leftover(struct async_pool *pool)
{
    for (;;) {
        async__lock(&pool->inj.lock);
        struct future *f = mpsc_pop_locked(&pool->inj);
        async__unlock(&pool->inj.lock);
        if (!f)
            f = async__slot_take(pool);
        if (f || async__mpsc_empty(&pool->inj))
            return f;
        sched_yield();
    }
}

/* For the dump (dump.c): each task record queued in pool's deques, its
 * injection queue and its outside slot, as found (fibers are not listed
 * here: the dump reaches them through the wake-target registry). The caller
 * has begun a record walk (record.c) and lists only PENDING records: fn may
 * meet a record that has just been claimed, run or even finished, never a
 * freed one.
 *
 * Why no record read here can be freed: a walk's start is a seq_cst
 * increment of record.c's `walkers`; every last drop of a record reads it
 * seq_cst, and holds the record if it sees the walk. A record is dropped
 * only after it left its queue: a thief's seq_cst CAS of top, the owner's
 * store of bottom followed by a seq_cst fence, a pop under the injection
 * queue's lock, or a seq_cst exchange or CAS out of the outside slot. If
 * the drop did not see the walk, its read of `walkers` came before the
 * walk's start in the single order of seq_cst operations, and so did the
 * removal; the walk's seq_cst loads of top, bottom and the slot (or its
 * taking of the lock) then see the record gone. The injection queue is
 * walked under its consumers' lock, which pops take: the walk holds up its
 * pops for as long as it reads (a pointer chase per queued task). */
void async__pool_each_queued(struct async_pool *pool,
                             void (*fn)(struct future *f, void *ctx), void *ctx)
{
    struct each_ctx c = { fn, ctx };
    unsigned n = atomic_load_explicit(&pool->nslots, memory_order_acquire);
    for (unsigned s = 0; s < n; s++)
        async__deque_each(&pool->slots[s]->dq, each_record, &c);
    struct async_mpsc *q = &pool->inj;
    async__lock(&q->lock);
    struct async_qnode *node = atomic_load_explicit(&q->tail, memory_order_relaxed);
    while (node) {
        if (node != q->dummy)
            fn((struct future *)(void *)node, ctx);
        node = atomic_load_explicit(&node->next, memory_order_acquire);
    }
    async__unlock(&q->lock);
    /* The slot: taking a record out of it is a seq_cst RMW, which orders
     * like a thief's CAS above; a record read here and taken out since is
     * held by the walk, never freed. */
    struct future *f = async__slot_record(atomic_load_explicit(&pool->ext_next,
                                                                memory_order_seq_cst));
    if (f)
        fn(f, ctx);
}

bool async__work_visible(struct async_pool *pool)
{
    if (!async__mpsc_empty(&pool->inj) || !async__mpsc_empty(&pool->finj) ||
        atomic_load_explicit(&pool->ext_next, memory_order_seq_cst) ||
        (pool->xslot && atomic_load_explicit(&pool->xslot->word, memory_order_seq_cst)))
        return true;
    unsigned n = atomic_load_explicit(&pool->nslots, memory_order_acquire);
    for (unsigned s = 0; s < n; s++) {
        struct async_worker *v = pool->slots[s];
        if (!async__deque_empty(&v->dq) ||
            atomic_load_explicit(&v->runnext, memory_order_relaxed))
            return true;
    }
    return false;
}

/* For the watchdog (dump.c): no worker runs or looks for work (each is idle
 * or blocked in a wait), nothing is queued or runnable, and the timer heap
 * is empty. A racy reading, which the watchdog takes only when it holds
 * for a whole period with no counter moving. */
bool async__pool_quiet(struct async_pool *pool)
{
    unsigned alive = atomic_load(&pool->nalive);
    unsigned idle = atomic_load(&pool->nidle), blocked = atomic_load(&pool->nblocked);
    return idle + blocked >= alive && !async__work_visible(pool) &&
           async__timers_next(pool) == ASYNC_FOREVER;
}

