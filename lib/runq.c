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
 * fiber (both begin with `next`); the queue keeps a stub node so that it is
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
 *   - Several outside threads share the slot: a submission that finds it
 *     taken goes on the queue, and its submitter claims it inline as before.
 *   - The slot holds a record, never a fiber. Every exchange and CAS on it
 *     is seq_cst: taking a record out of it is a removal that the dump's
 *     walk orders against (below).
 *
 * Locks: each queue's lock (a leaf) guards its tail and the re-push of the
 * stub; pushes take no lock. The outside slot is one atomic pointer.
 */
#include "sched_internal.h"

#include <sched.h>

int async__mpsc_init(struct async_mpsc *q)
{
    q->stub = async__calloc(1, sizeof(struct async_fiber) > sizeof(struct future)
                               ? sizeof(struct async_fiber) : sizeof(struct future));
    if (!q->stub)
        return ENOMEM;
    atomic_init(&q->stub->next, NULL);
    atomic_init(&q->head, q->stub);
    atomic_init(&q->tail, q->stub);
    atomic_init(&q->lock.word, 0);
    return 0;
}

void async__mpsc_fini(struct async_mpsc *q)
{
    async__free(q->stub);
    q->stub = NULL;
}

/* Under q->lock. NULL when empty or when a producer is mid-push. */
static void *mpsc_pop_locked(struct async_mpsc *q)
{
    ASYNC_ASSERT(async__lock_mine(&q->lock));
    struct async_qnode *stub = q->stub;
    struct async_qnode *tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    struct async_qnode *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == stub) {
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
    async__mpsc_push(q, stub);
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
        if (node != q->stub)
            fn((struct future *)(void *)node, ctx);
        node = atomic_load_explicit(&node->next, memory_order_acquire);
    }
    async__unlock(&q->lock);
    /* The slot: taking a record out of it is a seq_cst RMW, which orders
     * like a thief's CAS above; a record read here and taken out since is
     * held by the walk, never freed. */
    struct future *f = atomic_load_explicit(&pool->ext_next, memory_order_seq_cst);
    if (f)
        fn(f, ctx);
}

bool async__work_visible(struct async_pool *pool)
{
    if (!async__mpsc_empty(&pool->inj) || !async__mpsc_empty(&pool->finj) ||
        atomic_load_explicit(&pool->ext_next, memory_order_seq_cst))
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

