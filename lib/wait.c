/*
 * lib/wait.c — the waiter, and the one call that wakes it.
 *
 * Owns: waiter queues (FIFOs of wnodes, guarded by their owner's lock), wake
 * sets, and async__wake: the one way any object of the library (a future, a
 * channel, a select, a timer, a cancellation) wakes whoever waits on it.
 *
 * Design. A blocked caller builds a waiter on its own stack, publishes it on
 * the object it waits for, then waits (sched.c, async__wait). The waiter
 * names its target: the thread's parker when the caller runs on a thread's
 * own stack, or the fiber it runs on. Waking a parker unparks the thread;
 * waking a fiber makes it runnable: this file makes the state transition,
 * and the scheduler's hook (async__ready_hook: switch.c's, set by sched.c)
 * queues it.
 *
 * Fiber states, as far as waking goes (switch.c has the full table):
 *   PARKED   -> RUNNABLE, then queued through the hook
 *   PARKING  -> WOKEN: its task has not finished switching away; whoever
 *               lands after that switch sees WOKEN and queues it (so nobody
 *               resumes a fiber whose registers are not saved yet: Go's
 *               "mark waiting before unlocking" order)
 *   TBLOCK   -> RUNNING, then its worker's parker is unparked (a fiber that
 *               found no stack to switch to waits on its thread)
 *   RUNNING, RUNNABLE, WOKEN, FREE: nothing to do (a late or spurious wake)
 * Targets are type-stable (parkers are never freed, fiber records live in
 * slabs that are never unmapped), so a wake that comes after the waiter has
 * returned, even after its fiber went to another task, is only spurious, and
 * every wait loop re-checks its condition. A callback target (ASYNC_TARGET_CALL,
 * compose.c) is the exception: it is fired exactly once, by whoever won its
 * waiter's CAS, with no lock held, and its owner keeps it alive until then.
 */
#include "internal.h"

#include <sched.h>

void (*_Atomic async__ready_hook)(struct async_fiber *f);

/* ---------------------------------------------------- waiter queues */

void async__wq_push(struct async_wqueue *q, struct async_wnode *n)
{
    n->next = NULL;
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    n->linked = true;
}

void async__wq_remove(struct async_wqueue *q, struct async_wnode *n)
{
    if (!n->linked)
        return;
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    n->next = n->prev = NULL;
    n->linked = false;
}

struct async_wnode *async__wq_pop(struct async_wqueue *q)
{
    struct async_wnode *n = q->head;
    if (n)
        async__wq_remove(q, n);
    return n;
}

/* ------------------------------------------------------------- wake */

static void fiber_wake(struct async_fiber *f)
{
    uint32_t s = atomic_load_explicit(&f->state, memory_order_seq_cst);
    for (;;) {
        uint32_t to;
        switch (s) {
        case ASYNC_F_PARKED:  to = ASYNC_F_RUNNABLE; break;
        case ASYNC_F_PARKING: to = ASYNC_F_WOKEN;    break;
        case ASYNC_F_TBLOCK:  to = ASYNC_F_RUNNING;  break;
        default:
            return;
        }
        /* TBLOCK: read the parker before the CAS lets the fiber go on */
        struct async_parker *tp = f->tparker;
        if (atomic_compare_exchange_weak_explicit(&f->state, &s, to,
                memory_order_seq_cst, memory_order_seq_cst)) {
            if (to == ASYNC_F_RUNNABLE)
                atomic_load_explicit(&async__ready_hook, memory_order_acquire)(f);
            else if (to == ASYNC_F_RUNNING)
                async__unpark(tp);
            return;
        }
    }
}

void async__wake(uintptr_t target)
{
    if (target & ASYNC_TARGET_CALL) {
        struct async_call *c = (struct async_call *)(target & ~ASYNC_TARGET_CALL);
        c->fn(c);   /* c may be gone once fn returns */
    } else if (target & ASYNC_TARGET_FIBER)
        fiber_wake((struct async_fiber *)(target & ~ASYNC_TARGET_FIBER));
    else if (target)
        async__unpark((struct async_parker *)target);
}

uintptr_t async__waiter_await(struct async_waiter *w)
{
    uintptr_t v;
    for (unsigned spins = 0;
         (v = atomic_load_explicit(&w->fired, memory_order_acquire)) == 0; spins++) {
        if (spins < 64)
            async__cpu_relax();
        else
            sched_yield();
    }
    return v;
}

void async__wakeset_add(struct async_wakeset *ws, uintptr_t target)
{
    ASYNC_ASSERT(!(target & ASYNC_TARGET_CALL));   /* never under a lock */
    if (ws->n == sizeof ws->t / sizeof ws->t[0]) {
        /* Full: wake now. Targets are type-stable, so even under the
         * caller's lock this is a system call or a queue push, never user
         * code. */
        async__wake(target);
        return;
    }
    ws->t[ws->n++] = target;
}

void async__wakeset_flush(struct async_wakeset *ws)
{
    for (unsigned i = 0; i < ws->n; i++)
        async__wake(ws->t[i]);
    ws->n = 0;
}
