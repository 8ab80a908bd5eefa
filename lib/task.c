/*
 * lib/task.c — the task record's life, and what a task can do while it runs.
 *
 * Owns: the run of one task on the current fiber (its frame, deferred
 * functions, panic, counting, completion: the final state store and waking
 * the waiters); the "current task"; async_cancelled, async_defer,
 * async_panic. The record's memory (allocation, caches, the last drop) is
 * record.c's.
 *
 * Design. A task run is a frame on the runner's stack (struct async_frame),
 * linked to the frame it is nested in: a waiter may run another task inline,
 * so frames nest. async_panic longjmps to the innermost frame; its deferred
 * functions then run, each popped before it is called, so a deferred
 * function that panics lands in the same frame and the rest still run.
 * Frames and deferred functions belong to the fiber the run is on (a
 * thread's own stack or a task stack, internal.h), not to the thread: once
 * tasks park and interleave on a worker, only a stack's runs nest like the
 * stack. A run's defers sit above its defer_base on its fiber's defer
 * stack, nested runs push above their parent's, so the LIFO of runs and of
 * defers coincide and no per-task allocation is needed. A run never changes
 * fiber (its frames are on that stack), so the fiber pointer it took at the
 * start stays right even when the run resumes on another thread.
 * Rejected: a defer list in the record (a malloc per defer, and 8 more bytes
 * per record), and unwinding with a jmp_buf per worker (a panic inside an
 * inline run would unwind the caller's task too).
 *
 * Completion is one seq_cst store of the final state (a CAS for promises and
 * for cancelling a task nobody ran), after the outcome fields were written.
 * A waiter publishes its wnode on f->waiters under f->lock with a seq_cst
 * store and then reads the state (seq_cst); the completer stores the state
 * and then reads f->waiters (seq_cst). One of the two sees the other (a
 * Dekker pair), so a completion with nobody waiting costs no lock at all,
 * and no waiter is ever missed. Woken waiters are fired under f->lock and
 * woken after it is released (targets are type-stable, see wait.c).
 *
 * Invariants:
 *   fiber->frame == NULL  <=>  no task runs on that fiber.
 *   frame->defer_base <= fiber->ndefers while frame is its innermost frame.
 *   A record in a thread's cache has refs == 0 and is touched by no one else.
 *   refs == number of handles + (1 while the record is in a queue).
 *
 * Memory order: refs drop with acq_rel (the last dropper sees every write of
 * the others, the READ flag of a reader included); the runner's writes to
 * the outcome happen before the final state store in future.c.
 *
 */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct async_defer {
    void (*fn)(void *);
    void *arg;
};

/* --------------------------------------------------------------- run */

static void log_panic(struct future *f, int err, const char *msg)
{
    async__log_task(f->pool, (uintptr_t)f, (uintptr_t)f->fn, "panic: %s (error %d)", msg, err);
}

/* Pop and call this run's deferred functions, last in first out. */
static void run_defers(struct async_fiber *me, struct async_frame *fr)
{
    while (me->ndefers > fr->defer_base) {
        struct async_defer d = me->defers[--me->ndefers];
        d.fn(d.arg);
    }
}

void async__task_run(struct future *f)
{
    struct async_fiber *me = async__fiber_self();
    struct async_frame fr;
    fr.task = f;
    fr.prev = me->frame;
    fr.defer_base = me->ndefers;
    fr.result = NULL;
    fr.pmsg = NULL;
    fr.perr = 0;
    fr.panicked = false;
    me->frame = &fr;
    /* For the dump (dump.c): a few relaxed stores, and a thread's own fiber
     * joins the thread list the first time it runs a task. */
    unsigned depth = atomic_load_explicit(&me->depth, memory_order_relaxed);
    if (ASYNC_LIKELY(depth < ASYNC_DUMP_NEST)) {
        struct async_run_note *rn = &me->runs[depth];
        atomic_store_explicit(&rn->task, (uintptr_t)f, memory_order_relaxed);
        atomic_store_explicit(&rn->fn, (uintptr_t)f->fn, memory_order_relaxed);
        atomic_store_explicit(&rn->pool, f->pool, memory_order_relaxed);
    }
    atomic_store_explicit(&me->depth, depth + 1, memory_order_release);
    if (!me->is_stack && !async__tls_get()->listed) {
        async__tls_register();   /* its exit hook takes it off the list */
        async__tls_list_add(async__tls_get());
    }
    /* Who runs it, for future_cancel's wake (the Dekker partner of that
     * store is the seq_cst step every wait makes before it parks). */
    struct async_parker *p = me->is_stack ? NULL : async__parker_self();
    atomic_store_explicit(&f->runner, me->is_stack ? me->id : p ? async__parker_id(p) : 0,
                          memory_order_release);
    async__pool_count(f->pool, ASYNC_C_STARTED);

    /* async_panic lands here (sigsetjmp returns nonzero). Everything the
     * landing reads is reached through the fiber's frame, not through
     * locals that changed after sigsetjmp (and the fiber is the same one:
     * a run never leaves its stack, whatever thread it resumes on). */
    if (sigsetjmp(fr.jb, 0) == 0) {
        void *arg = f->io.arg;
        void *result = f->fn(arg);
        async__fiber_self()->frame->result = result;
    }
    struct async_fiber *self = async__fiber_self();
    struct async_frame *cur = self->frame;
    run_defers(self, cur);

    self->frame = cur->prev;
    atomic_store_explicit(&self->depth,
                          atomic_load_explicit(&self->depth, memory_order_relaxed) - 1,
                          memory_order_release);
    struct future *t = cur->task;
    struct async_pool *pool = t->pool;
    if (cur->panicked) {
        log_panic(t, cur->perr, cur->pmsg);
        if (atomic_load_explicit(&t->flags, memory_order_acquire) & ASYNC_RF_SCOPE)
            atomic_load_explicit(&async__scope_fail_hook, memory_order_relaxed)(t, cur->perr);
        async__pool_count(pool, ASYNC_C_FAILED);
        async__future_complete(t, ASYNC_S_FAILED, cur->perr, cur->pmsg);
    } else {
        async__pool_count(pool, ASYNC_C_SUCCEEDED);
        async__future_complete(t, ASYNC_S_SUCCEEDED, 0, cur->result);
    }
}

/* -------------------------------------------------------- completion */

/* Fire every waiter of f. Callback targets (compose.c) run after the lock
 * is released: a fired callback's wnode is its owner's until the call, so
 * it is chained through its own `next` meanwhile. */
static void wake_all(struct future *f)
{
    struct async_wakeset ws = { 0 };
    struct async_wnode *calls = NULL;
    async__lock(&f->lock);
    struct async_wnode *n = atomic_load_explicit(&f->waiters, memory_order_relaxed);
    atomic_store_explicit(&f->waiters, NULL, memory_order_relaxed);
    while (n) {
        struct async_wnode *next = n->next;
        uintptr_t t = n->w->target;
        n->linked = false;
        if (async__waiter_fire(n->w, n->index + 1)) {
            if (t & ASYNC_TARGET_CALL) {
                n->next = calls;
                calls = n;
            } else {
                async__wakeset_add(&ws, t);
            }
        }
        n = next;   /* n may be gone once fired: read next first */
    }
    async__unlock(&f->lock);
    async__wakeset_flush(&ws);
    while (calls) {
        struct async_wnode *next = calls->next;
        async__wake(calls->w->target);   /* may free calls */
        calls = next;
    }
}

static void after_final_store(struct future *f)
{
    if (atomic_load_explicit(&f->waiters, memory_order_seq_cst) != NULL)
        wake_all(f);
}

void async__future_complete(struct future *f, uint32_t final, int err, void *value)
{
    if (final == ASYNC_S_SUCCEEDED) {
        f->io.result = value;
    } else if (final == ASYNC_S_FAILED) {
        f->err = err;
        f->io.msg = value;
    } else {
        f->err = ECANCELED;
    }
    ASYNC_ASSERT(ASYNC_S_DONE(final));
#if ASYNC_CHECKS
    /* forward only: RUNNING (a task) or COMPLETING (a promise) to final */
    uint32_t from = atomic_exchange_explicit(&f->state, final, memory_order_seq_cst);
    ASYNC_ASSERT(from == ASYNC_S_RUNNING || from == ASYNC_S_COMPLETING);
#else
    atomic_store_explicit(&f->state, final, memory_order_seq_cst);
#endif
    after_final_store(f);
}

bool async__future_cancel_pending(struct future *f)
{
    uint32_t s = ASYNC_S_PENDING;
    if (!atomic_compare_exchange_strong_explicit(&f->state, &s, ASYNC_S_CANCELLED,
            memory_order_seq_cst, memory_order_relaxed))
        return false;
    f->err = ECANCELED;
    ASYNC_TEST_WINDOW();
    /* Not counted here: the pool may be gone by now (pool.c, "Reaching a
     * pool through a record"); whoever drops the queue's reference counts. */
    after_final_store(f);
    return true;
}

/* ------------------------------------------------------- scope hooks */

/* Set by scope.c (relaxed: before the first fetch_or of ASYNC_RF_SCOPE,
 * which a caller reads with acquire before calling). */
void (*_Atomic async__scope_fail_hook)(struct future *f, int err);
void (*_Atomic async__scope_cancel_hook)(struct future *f);

/* ------------------------------------------------------- public API */

bool async_cancelled(void)
{
    return async__cancel_requested();
}

int async_defer(void (*fn)(void *), void *arg)
{
    struct async_fiber *t = async__fiber_self();
    if (!fn || !t->frame)
        return EINVAL;
    if (t->ndefers == t->capdefers) {
        size_t cap = t->capdefers ? t->capdefers * 2 : 16;
        struct async_defer *d = async__calloc(cap, sizeof *d);
        if (!d)
            return ENOMEM;
        if (t->ndefers)
            memcpy(d, t->defers, t->ndefers * sizeof *d);
        async__free(t->defers);
        if (!t->defers && !t->is_stack)
            async__tls_register();   /* the thread-exit hook frees it */
        t->defers = d;
        t->capdefers = cap;
    }
    t->defers[t->ndefers].fn = fn;
    t->defers[t->ndefers].arg = arg;
    t->ndefers++;
    return 0;
}

_Noreturn void async_panic(int err, const char *fmt, ...)
{
    struct async_frame *fr = async__fiber_self()->frame;
    va_list ap;
    va_start(ap, fmt);
    if (!fr) {
        fputs("libasync: panic outside a task: ", stderr);
        if (fmt)
            vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        abort();
    }
    bool oom = false;
    char *msg = async__format(fmt, ap, &oom);
    va_end(ap);
    if (fr->panicked && !async__msg_is_static(fr->pmsg))
        async__free(fr->pmsg);   /* a deferred function panicked: it wins */
    fr->panicked = true;
    fr->perr = err > 0 ? err : EIO;
    fr->pmsg = msg;
    siglongjmp(fr->jb, 1);
}
