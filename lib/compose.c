/*
 * lib/compose.c — futures made from other things: async_after (a future a
 * pool's timer completes) and future_then (a task queued when a future
 * completes).
 *
 * Owns: the two constructors and the small records that tie a timer or a
 * continuation to its future. Nothing here waits or runs user code under a
 * lock; both react to events through callback targets (ASYNC_TARGET_CALL,
 * wait.c): the timer heap fires a timer's callback after releasing
 * timer_lock, and a completing future fires the callbacks on its waiter list
 * after releasing f->lock (task.c, wake_all). A callback runs exactly once,
 * on the thread that won its waiter's CAS, so completion never recurses: a
 * chain of 100,000 continuations is 100,000 queued tasks, each queueing the
 * next from its completer, and no stack grows.
 *
 * async_after. The future is a promise record; a struct after holds the
 * promise's own reference, a timer in a pool's heap (target: T, after_fired)
 * and a waiter on the record itself (target: C, after_done). Two events end
 * it, each exactly once: the timer side (T ran, or C took the timer out of
 * the heap) and the completion side (C ran). `owners` counts them down from
 * 2; the last frees the after and drops the promise's reference.
 *   T  (the deadline came, or the pool's destroyer drains its heap): clear
 *      `attached`, then complete the record: SUCCEEDED when the deadline
 *      has passed, else CANCELLED (the pool went away first).
 *   C  (the record completed: by T, or by future_cancel): if still
 *      attached, take the timer out of the heap; if it was there, T will
 *      never run and C ends the timer side too. So a cancelled timer
 *      releases its heap slot and its memory at once.
 * Why the pool is alive when C touches its heap: C holds a->lock and sees
 * `attached`; the pool's destroyer runs T for every timer it drains
 * (taking a->lock to clear `attached`) before it frees the pool. Lock order:
 * a->lock > timer_lock (internal.h). A timer enters a heap only on the terms
 * of a submission (async__pool_timer_add), so none slips in after the drain.
 * future_free of an unfired timer's last handle cancels it (record.c calls
 * after_orphaned when a release leaves only the timer's reference on a
 * pending record: nobody could read it any more), so its heap slot and
 * memory go at once, as with future_cancel. Two last handles released at
 * the very same moment may both miss that; the timer then runs out as a
 * detached task does, and its memory goes when it fires.
 * Which pool: the calling task's when called in a task, else the default
 * pool. Its workers run due timers between tasks and sleep no longer than
 * the earliest one when idle (timer.c): no thread per timer.
 *
 * future_then. The returned future g is a task record of kind THEN (never
 * run inline by a waiter: it may run only after the antecedent is done). Its
 * argument area holds struct then: the user's fn and arg, a reference on
 * the antecedent `ante` (what fn reads as `done`), and two waiters:
 *   F  on ante's waiter list: ante is done; queue g unless it was cancelled
 *      meanwhile (then drop the queue's reference instead). A refused
 *      submission (the pool shuts down) cancels g.
 *   G  on g's own waiter list: g is done (ran, failed, or was cancelled);
 *      take F off ante if it has not fired (claiming its waiter, so that F
 *      never runs, and doing F's part), then drop the reference on ante.
 * g's references: the caller's handle, the queue's (given to the pool by F,
 * or dropped), and the machinery's, dropped by whichever of F and G ends
 * last (`owners`, from 2). Where g runs: ante's pool when ante is a task
 * that ran (its completer runs in that pool, so the pool is alive); the
 * default pool for a promise's future, and for a task cancelled before it
 * ran (its pool may be shutting down: a record whose task nobody ran must
 * not be used to reach its pool, pool.c).
 *
 * Fields: struct after: `attached` guarded by a->lock; `owners` atomic
 * (acq_rel: the last decrement sees every other side's writes); the rest
 * immutable once the timer is published. struct then: immutable once F is
 * linked, except `owners` (atomic, acq_rel) and the waiters (wait.c).
 */
#include "sched_internal.h"

#include <stddef.h>

#define CONTAINER(p, type, field) ((type *)(void *)((char *)(p) - offsetof(type, field)))

/* ------------------------------------------------------- async_after */

struct after {
    struct async_call   fire;      /* T: the timer's target */
    struct async_call   done;      /* C: the record's completion */
    struct async_waiter w;         /* C's waiter (target: &done) */
    struct async_wnode  node;      /* on rec->waiters (rec->lock) */
    struct async_timer  tm;        /* in pool's heap (timer_lock) */
    struct future      *rec;       /* immutable; we hold the promise's ref */
    struct async_pool  *pool;      /* immutable; alive while attached */
    async_lock_t        lock;      /* guards attached */
    bool                attached;  /* T has not run yet */
    _Atomic unsigned    owners;    /* sides not yet ended (2, 1, 0) */
};

static void after_release(struct after *a)
{
    if (atomic_fetch_sub_explicit(&a->owners, 1, memory_order_acq_rel) != 1)
        return;
    struct future *rec = a->rec;
    async__free(a);
    async__record_release(rec);   /* the promise's own hold */
}

/* T: the heap let go of the timer (due, or drained by a destroyer). */
static void after_fired(struct async_call *c)
{
    struct after *a = CONTAINER(c, struct after, fire);
    async__lock(&a->lock);
    a->attached = false;
    async__unlock(&a->lock);
    if (async_now() >= a->tm.when)
        promise_complete((promise_t *)(void *)a->rec, NULL);   /* EALREADY: cancelled */
    else
        async__promise_cancel(a->rec);   /* its pool was destroyed first */
    after_release(a);   /* after it, a may be gone */
}

/* C: the record completed (T completed it, or future_cancel did). */
static void after_done(struct async_call *c)
{
    struct after *a = CONTAINER(c, struct after, done);
    bool removed = false;
    async__lock(&a->lock);
    if (a->attached && async__timer_del(a->pool, &a->tm)) {
        a->attached = false;
        removed = true;
    }
    async__unlock(&a->lock);
    if (removed)
        after_release(a);   /* the timer side: T will never run */
    after_release(a);
}

/* The pool whose timers serve a new timer: the calling task's, else the
 * default pool. NULL with errno on failure. */
static struct async_pool *timer_pool(void)
{
    struct future *cur = async__current_task();
    return cur && cur->pool ? cur->pool : async__pool_resolve(NULL);
}

/* The last handle of a pending timer went (record.c, ASYNC_RF_TIMER). */
static void after_orphaned(struct future *rec)
{
    async__promise_cancel(rec);   /* C takes the timer out and frees it all */
}

static int after_arm(struct future *rec, int64_t deadline)
{
    struct async_pool *pool = timer_pool();
    if (!pool)
        return errno ? errno : ENOMEM;
    struct after *a = async__calloc(1, sizeof *a);
    if (!a)
        return ENOMEM;
    a->fire.fn = after_fired;
    a->done.fn = after_done;
    a->w.target = (uintptr_t)&a->done | ASYNC_TARGET_CALL;
    atomic_init(&a->w.claim, 0);
    atomic_init(&a->w.fired, 0);
    a->node = (struct async_wnode){ .w = &a->w };
    a->tm = (struct async_timer){ .when = deadline, .idx = ASYNC_NO_TIMER,
                                  .target = (uintptr_t)&a->fire | ASYNC_TARGET_CALL };
    a->rec = rec;
    a->pool = pool;
    a->attached = true;
    atomic_init(&a->owners, 2);
    async__lock(&rec->lock);
    async__future_link(rec, &a->node);   /* nothing completes rec before T or C */
    async__unlock(&rec->lock);
    atomic_store_explicit(&async__orphan_hook, after_orphaned, memory_order_release);
    atomic_fetch_or_explicit(&rec->flags, ASYNC_RF_TIMER, memory_order_relaxed);
    int rc = async__pool_timer_add(pool, &a->tm);
    if (rc) {
        async__lock(&rec->lock);
        async__future_unlink(rec, &a->node);
        async__unlock(&rec->lock);
        async__free(a);
    }
    return rc;
}

/* rec handed to the caller as a handle: the checked build counts handles
 * (future_free catches a second free by it). */
static future_t *as_handle(struct future *rec)
{
#if ASYNC_CHECKS
    atomic_fetch_add_explicit(&rec->handles, 1, memory_order_relaxed);
#endif
    return rec;
}

future_t *async_after(int64_t deadline)
{
    if (async__deadline_valid(deadline)) {
        errno = EINVAL;
        return NULL;
    }
    promise_t *p = promise_make();
    if (!p)
        return NULL;
    struct future *rec = (struct future *)(void *)p;
    if (deadline == ASYNC_FOREVER)
        return as_handle(rec);   /* never fires: the promise's hold becomes the handle */
    if (async__deadline_passed(deadline) || deadline == 0) {
        promise_complete(p, NULL);
        return as_handle(rec);
    }
    async__record_retain(rec);   /* the caller's handle; the hold is the after's */
    int rc = after_arm(rec, deadline);
    if (rc) {
        atomic_store_explicit(&rec->refs, 1, memory_order_relaxed);
        async__record_release(rec);
        errno = rc;
        return NULL;
    }
    return as_handle(rec);
}

/* ------------------------------------------------------- future_then */

struct then {
    void *(*fn)(void *arg, future_t *done);   /* immutable */
    void               *arg;                  /* immutable */
    struct future      *ante;       /* immutable; our reference (dropped by G) */
    struct future      *self;       /* immutable: g */
    struct async_call   on_ante;    /* F */
    struct async_call   on_self;    /* G */
    struct async_waiter w_ante, w_self;
    struct async_wnode  n_ante;     /* on ante->waiters (ante->lock) */
    struct async_wnode  n_self;     /* on g->waiters (g->lock) */
    _Atomic unsigned    owners;     /* F's and G's sides not yet ended */
};

static void *then_run(void *p)
{
    struct then *t = p;
    async__future_mark_read(t->ante);   /* handed to fn: its outcome is fn's */
    return t->fn(t->arg, t->ante);
}

static void then_release(struct then *t)
{
    if (atomic_fetch_sub_explicit(&t->owners, 1, memory_order_acq_rel) == 1)
        async__record_release(t->self);   /* the machinery's; t may go with it */
}

/* Where a continuation of ante runs (see the opening comment). */
static struct async_pool *then_pool(const struct future *ante)
{
    uint32_t s = atomic_load_explicit(&((struct future *)ante)->state, memory_order_acquire);
    if (ante->pool && s != ASYNC_S_CANCELLED)
        return ante->pool;
    return async__pool_resolve(NULL);
}

/* F: ante is done. Queue g, unless it was cancelled meanwhile. */
static void then_ready(struct async_call *c)
{
    struct then *t = CONTAINER(c, struct then, on_ante);
    struct future *g = t->self;
    if (atomic_load_explicit(&g->state, memory_order_acquire) == ASYNC_S_PENDING) {
        struct async_pool *pool = then_pool(t->ante);
        g->pool = pool;   /* read only once g is queued (the push publishes it) */
        if (pool && async__pool_submit(pool, g) == 0) {
            then_release(t);
            return;
        }
        async__future_cancel_pending(g);   /* refused: g never runs */
    }
    async__record_release(g);   /* the queue's reference, unused */
    then_release(t);
}

/* G: g is done. Make sure F has run or never will, then let ante go. */
static void then_done(struct async_call *c)
{
    struct then *t = CONTAINER(c, struct then, on_self);
    struct future *ante = t->ante;
    async__lock(&ante->lock);
    async__future_unlink(ante, &t->n_ante);
    async__unlock(&ante->lock);
    if (async__waiter_fire(&t->w_ante, 1)) {
        /* F will never run (g was cancelled before ante was done): its part */
        async__record_release(t->self);   /* the queue's reference */
        then_release(t);
    }
    async__record_release(ante);
    then_release(t);   /* after it, t may be gone */
}

static void then_init(struct then *t, struct future *g, struct future *ante)
{
    t->self = g;
    t->ante = ante;
    t->on_ante.fn = then_ready;
    t->on_self.fn = then_done;
    t->w_ante.target = (uintptr_t)&t->on_ante | ASYNC_TARGET_CALL;
    t->w_self.target = (uintptr_t)&t->on_self | ASYNC_TARGET_CALL;
    atomic_init(&t->w_ante.claim, 0);
    atomic_init(&t->w_self.claim, 0);
    atomic_init(&t->w_ante.fired, 0);
    atomic_init(&t->w_self.fired, 0);
    t->n_ante = (struct async_wnode){ .w = &t->w_ante };
    t->n_self = (struct async_wnode){ .w = &t->w_self };
    atomic_init(&t->owners, 2);
}

future_t *future_then(future_t *f, void *(*fn)(void *arg, future_t *done), void *arg)
{
    if (!f || !fn) {
        errno = EINVAL;
        return NULL;
    }
    struct then proto = { .fn = fn, .arg = arg };
    struct future *g = async__task_new(NULL, then_run, &proto, sizeof proto);
    if (!g) {
        errno = ENOMEM;
        return NULL;
    }
    g->kind = ASYNC_KIND_THEN;   /* not yet published */
    atomic_store_explicit(&g->refs, 3, memory_order_relaxed);   /* handle, queue, machinery */
    struct then *t = g->io.arg;
    then_init(t, g, f);
    async__record_retain(f);
    async__lock(&g->lock);
    async__future_link(g, &t->n_self);
    async__unlock(&g->lock);

    async__lock(&f->lock);
    async__future_link(f, &t->n_ante);
    bool done = ASYNC_S_DONE(atomic_load_explicit(&f->state, memory_order_seq_cst));
    if (done)
        async__future_unlink(f, &t->n_ante);   /* its completer may have gone by */
    async__unlock(&f->lock);
    if (done && async__waiter_fire(&t->w_ante, 1))
        then_ready(&t->on_ante);   /* already done: queued at once */
    return g;
}
