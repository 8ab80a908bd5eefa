/*
 * lib/future.c — completing futures and waiting for them.
 *
 * Owns: async_run/async_run_on/async_submit, completion, future_get (inline
 * run and the helping rule), cancellation, the queries, wait_all/wait_any.
 *
 * Completion (task.c) is one seq_cst store of the final state, after the
 * outcome fields were written. A waiter publishes its wnode on f->waiters
 * under f->lock with a seq_cst store and then reads the state (seq_cst); the
 * completer stores the state and then reads f->waiters (seq_cst). One of the
 * two sees the other (a Dekker pair), so a completion with nobody waiting
 * costs no lock at all, and no waiter is ever missed.
 *
 * Waiting without a deadline never deadlocks the pool:
 *   1. a task not yet started is claimed (CAS PENDING -> RUNNING) and run on
 *      the waiting thread; the worker that pops its queue entry later finds
 *      it claimed and drops it. A worker waiting for the task it pushed last
 *      pops it from its own deque first (the fork/join fast path). An inline
 *      run needs ASYNC_INLINE_ROOM of stack left below the waiter (a chain of
 *      10,000 nested waits would overflow any stack, and a goroutine-mode
 *      stack is small); without it the waiter parks instead, and a worker
 *      runs the task.
 *   2. inside a task, a waiter whose target is already running follows the
 *      chain of `awaiting` links (target -> what it waits for -> ...) and
 *      runs the first task on it that nobody has started: the awaited task
 *      needs it, so running it can never block on something the waiter was
 *      about to produce. Nothing else is run (API.md says why).
 *   3. else it parks (block.c): a goroutine-mode task frees its worker, a
 *      thread-mode worker counts as blocked. Before it parks, a task
 *      publishes its wait and looks for a wait cycle (cycle.c): a wait that
 *      would close one returns EDEADLK instead. Finite-deadline waits of a
 *      task do the same (a poll, deadline 0, never waits and never does).
 *
 * Reading a FAILED outcome (future_get returning its code, future_error)
 * marks the record read (async__future_mark_read); one never read is
 * reported when its last reference goes (record.c).
 *
 * Cancelling a running task stores its cancel flag (seq_cst) and wakes the
 * record's runner (the fiber or thread that runs it, by its wake-target
 * id): a blocked call of the task wakes and sees the flag; a running task
 * gets a spurious wake, which costs nothing. The flag store and the wait's
 * seq_cst step before it parks are a Dekker pair (block.c), so a call about
 * to block either sees the flag or is woken. Nothing of the pool is touched,
 * so a cancel that races the pool's destruction touches no freed memory.
 * A wait with a finite deadline only parks, so it returns on time.
 *
 * Fields: f->waiters links and f->awaiting are guarded by f->lock; the state
 * and the refs are atomics; the outcome (out, err) is written once before the
 * final state store (release) and read after an acquire load of the state.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -------------------------------------------------------- waiters */

static void link_waiter(struct future *f, struct async_wnode *n)
{
    struct async_wnode *head = atomic_load_explicit(&f->waiters, memory_order_relaxed);
    n->prev = NULL;
    n->next = head;
    if (head)
        head->prev = n;
    n->linked = true;
    atomic_store_explicit(&f->waiters, n, memory_order_seq_cst);
}

static void unlink_waiter(struct future *f, struct async_wnode *n)
{
    if (!n->linked)
        return;
    if (n->prev)
        n->prev->next = n->next;
    else
        atomic_store_explicit(&f->waiters, n->next, memory_order_relaxed);
    if (n->next)
        n->next->prev = n->prev;
    n->linked = false;
}

void async__future_link(struct future *f, struct async_wnode *n)
{
    link_waiter(f, n);
}

void async__future_unlink(struct future *f, struct async_wnode *n)
{
    unlink_waiter(f, n);
}

/* Park until f is done or the deadline (or, when cancellable, the caller's
 * cancellation). 0, ETIMEDOUT, EAGAIN, ECANCELED, ENOMEM (no parker). */
static int wait_done_ex(struct future *f, int64_t deadline, bool cancellable)
{
    if (ASYNC_S_DONE(atomic_load_explicit(&f->state, memory_order_acquire)))
        return 0;
    struct async_waiter w;
    int rc = async__waiter_prepare(&w, deadline);
    if (rc)
        return rc;
    struct async_wnode n = { .w = &w, .index = 0 };
    async__lock(&f->lock);
    link_waiter(f, &n);
    if (ASYNC_S_DONE(atomic_load_explicit(&f->state, memory_order_seq_cst))) {
        unlink_waiter(f, &n);
        async__unlock(&f->lock);
        return 0;
    }
    async__unlock(&f->lock);
    async__wait_note(&w, f->kind == ASYNC_KIND_PROMISE ? ASYNC_W_PROMISE : ASYNC_W_FUTURE, f, 0,
                     deadline);
    rc = cancellable ? async__wait(&w, deadline) : async__wait_uncancellable(&w, deadline);
    if (rc) {
        async__lock(&f->lock);
        unlink_waiter(f, &n);
        async__unlock(&f->lock);
        if (atomic_load_explicit(&w.fired, memory_order_acquire))
            rc = 0;   /* completed as we gave up: the completion stands */
    }
    return rc;
}

static int wait_done(struct future *f, int64_t deadline)
{
    return wait_done_ex(f, deadline, true);
}

int async__future_wait_uncancellable(struct future *f)
{
    return wait_done_ex(f, ASYNC_FOREVER, false);
}

/* ------------------------------------------------- inline running */

/* Run f on this thread if nobody has started it. true when f is done. */
static bool try_inline(struct future *f)
{
    if (f->kind != ASYNC_KIND_TASK ||
        atomic_load_explicit(&f->state, memory_order_acquire) != ASYNC_S_PENDING)
        return false;
    struct async_pool *pool = f->pool;
    struct async_worker *w = async__tls_get()->worker;
    ASYNC_TEST_WINDOW();
    if (async__stack_room() < ASYNC_INLINE_ROOM)
        return false;   /* park instead: a worker runs it */
    if (async__pool_pop_local(f)) {
        /* Popped from our own deque: the queue's reference is ours now. */
        if (async__task_claim(f))
            async__task_run(f);
        else
            async__pool_count_unrun(f);
        async__record_release(f);
        return true;
    }
    bool own = w && w->pool == pool;
    /* Claim first, then reach the pool: a task claimed and not finished
     * keeps its pool alive, a pending one may be cancelled and its pool
     * freed at any moment (pool.c, "Reaching a pool through a record"). */
    if (!async__task_claim(f))
        return false;
    if (own) {
        async__task_run(f);
        return true;
    }
    async__pool_inline_begin(pool);
    bool unslotted = async__pool_unslot(pool, f);
    async__task_run(f);
    async__pool_inline_end(pool);
    if (unslotted)
        async__record_release(f);   /* the queue's reference: the caller holds one too */
    return true;
}

/* Follow f's chain of awaited tasks; run the first one nobody started.
 * Each link is read under its owner's lock and pinned by a reference, since
 * the owner holds a handle on what it awaits only while it waits. */
static bool help(struct future *f)
{
    struct future *cur = f;
    bool ran = false;
    for (int depth = 0; depth < 64 && !ran; depth++) {
        async__lock(&cur->lock);
        struct future *g = cur->awaiting;
        if (g)
            async__record_retain(g);
        async__unlock(&cur->lock);
        if (cur != f)
            async__record_release(cur);
        if (!g)
            return false;
        ran = try_inline(g);
        cur = g;
    }
    if (cur != f)
        async__record_release(cur);
    return ran;
}

/* The no-deadline wait: run it, help it, or park. */
static int get_forever(struct future *f)
{
    for (;;) {
        if (try_inline(f))
            return 0;
        if (ASYNC_S_DONE(atomic_load_explicit(&f->state, memory_order_acquire)))
            return 0;
        struct future *me = async__current_task();
        if (!me)
            return wait_done(f, ASYNC_FOREVER);
        if (async__cancel_requested())
            return ECANCELED;
        if (help(f))
            continue;
        int rc = async__cycle_enter(f);
        if (rc)
            return rc;
        rc = wait_done(f, ASYNC_FOREVER);
        async__cycle_leave();
        return rc;
    }
}

/* Park until f is done or the deadline, publishing the wait (cycle.c). */
static int wait_parked(struct future *f, int64_t deadline)
{
    if (deadline == 0 || !async__current_task() ||
        ASYNC_S_DONE(atomic_load_explicit(&f->state, memory_order_acquire)))
        return wait_done(f, deadline);
    int rc = async__cycle_enter(f);
    if (rc)
        return rc;
    rc = wait_done(f, deadline);
    async__cycle_leave();
    return rc;
}

/* Wait for f until the deadline, or forever (running or helping it). */
static int wait_for(struct future *f, int64_t deadline)
{
    return deadline == ASYNC_FOREVER ? get_forever(f) : wait_parked(f, deadline);
}

/* ------------------------------------------------------ public API */

future_t *async_submit(async_pool_t *pool, async_fn fn, const void *arg, size_t arg_size)
{
    if (!fn || (arg_size && !arg)) {
        errno = EINVAL;
        return NULL;
    }
    pool = async__pool_resolve(pool);
    if (!pool)
        return NULL;
    struct future *f = async__task_new(pool, fn, arg, arg_size);
    if (!f) {
        errno = ENOMEM;
        return NULL;
    }
    int rc = async__pool_submit(pool, f);
    if (rc) {
        atomic_store_explicit(&f->refs, 1, memory_order_relaxed);
        async__record_release(f);
        errno = rc;
        return NULL;
    }
    return f;
}

future_t *async_run_on(async_pool_t *pool, async_fn fn, void *arg)
{
    return async_submit(pool, fn, arg, 0);
}

future_t *async_run(async_fn fn, void *arg)
{
    return async_submit(NULL, fn, arg, 0);
}

static int outcome(struct future *f, uint32_t s, void **result)
{
    switch (s) {
    case ASYNC_S_SUCCEEDED:
        if (result)
            *result = f->io.result;
        return 0;
    case ASYNC_S_FAILED:
        async__future_mark_read(f);
        return f->err;
    default:
        return ECANCELED;
    }
}

int async__future_outcome(struct future *f, void **result)
{
    return outcome(f, atomic_load_explicit(&f->state, memory_order_acquire), result);
}

int future_get_until(future_t *f, void **result, int64_t deadline)
{
    if (!f || async__deadline_valid(deadline))
        return EINVAL;
    ASYNC_CHECK_FUTURE(f, "future_get");
    if (async__cancel_requested())
        return ECANCELED;
    uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
    if (!ASYNC_S_DONE(s)) {
        int rc = wait_for(f, deadline);
        if (rc)
            return rc;
        /* Reading a future has no side effect to preserve (unlike a channel
         * operation a firer performed for us): once the calling task is
         * asked to stop, the answer is ECANCELED even if the completion
         * won the race. */
        if (async__cancel_requested())
            return ECANCELED;
        s = atomic_load_explicit(&f->state, memory_order_acquire);
    }
    return outcome(f, s, result);
}

int future_get(future_t *f, void **result)
{
    return future_get_until(f, result, ASYNC_FOREVER);
}

future_state_t future_state(const future_t *f)
{
    if (!f)
        return FUTURE_FAILED;
    ASYNC_CHECK_FUTURE(f, "future_state");
    uint32_t s = atomic_load_explicit(&((future_t *)f)->state, memory_order_acquire);
    return s == ASYNC_S_COMPLETING ? FUTURE_PENDING : (future_state_t)s;
}

bool future_done(const future_t *f)
{
    if (f)
        ASYNC_CHECK_FUTURE(f, "future_done");
    return f && ASYNC_S_DONE(atomic_load_explicit(&((future_t *)f)->state,
                                                  memory_order_acquire));
}

const char *future_error(const future_t *f)
{
    if (f)
        ASYNC_CHECK_FUTURE(f, "future_error");
    if (!f || atomic_load_explicit(&((future_t *)f)->state, memory_order_acquire) !=
                  ASYNC_S_FAILED)
        return NULL;
    async__future_mark_read((struct future *)(uintptr_t)f);
    return f->io.msg;
}

int future_cancel(future_t *f)
{
    if (!f)
        return EINVAL;
    ASYNC_CHECK_FUTURE(f, "future_cancel");
    if (f->kind == ASYNC_KIND_PROMISE)
        return async__promise_cancel(f);
    if (async__future_cancel_pending(f))
        return 0;
    if (ASYNC_S_DONE(atomic_load_explicit(&f->state, memory_order_acquire)))
        return EALREADY;
    /* Running: ask it to stop and wake whatever it is blocked in (see the
     * opening comment). */
    atomic_store_explicit(&f->cancel, 1, memory_order_seq_cst);
    ASYNC_TEST_WINDOW();
    async__wake(async__target_lookup(atomic_load_explicit(&f->runner, memory_order_seq_cst)));
    /* A task that opened scopes: cancel them too (scope.c). seq_cst: with
     * the opener's fetch_or of the flag and its read of f->cancel, either
     * this sees the flag or the opener sees the cancel. */
    if (ASYNC_UNLIKELY(atomic_load_explicit(&f->flags, memory_order_seq_cst) & ASYNC_RF_SCOPE))
        atomic_load_explicit(&async__scope_cancel_hook, memory_order_relaxed)(f);
    return EBUSY;
}

void future_free(future_t *f)
{
    if (!f)
        return;
#if ASYNC_CHECKS
    if (f->magic != ASYNC_MAGIC_FUTURE)
        async__misuse("future_free", "future freed twice (its record is gone)", f);
    uint32_t h = atomic_load_explicit(&f->handles, memory_order_relaxed);
    do {
        if (h == 0)
            async__misuse("future_free", "future freed twice", f);
    } while (!atomic_compare_exchange_weak_explicit(&f->handles, &h, h - 1,
                 memory_order_relaxed, memory_order_relaxed));
#endif
    async__record_release(f);
}

static int check_array(future_t *const *fs, size_t n, int64_t deadline)
{
    if (async__deadline_valid(deadline) || (n && !fs))
        return EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return EINVAL;
#if ASYNC_CHECKS
    for (size_t i = 0; i < n; i++)
        ASYNC_CHECK_FUTURE(fs[i], "future_wait");
#endif
    return 0;
}

int future_wait_all(future_t *const *fs, size_t n, int64_t deadline)
{
    int rc = check_array(fs, n, deadline);
    if (rc)
        return rc;
    if (n && async__cancel_requested())
        return ECANCELED;
    for (size_t i = 0; i < n; i++) {
        rc = wait_for(fs[i], deadline);
        if (rc)
            return rc;
    }
    return async__cancel_requested() ? ECANCELED : 0;
}

/* The lowest done entry. A future may complete while we scan, so an entry
 * found done is only a bound: rescan below it until the scan finds nothing
 * lower (done is forever, so each pass shrinks the bound and it ends). */
static bool lowest_done(future_t *const *fs, size_t n, size_t *index)
{
    size_t found = n;
    for (size_t i = 0; i < found;) {
        if (future_done(fs[i])) {
            found = i;
            i = 0;
        } else {
            i++;
        }
    }
    if (found < n && index)
        *index = found;
    return found < n;
}

/* Would every one of the n futures close a cycle through the calling task?
 * (Only then is waiting for any of them a deadlock; cycle.c.) */
static bool closes_cycles(future_t *const *fs, size_t n)
{
    if (!async__current_task())
        return false;
    for (size_t i = 0; i < n; i++)
        if (!async__cycle_closes(fs[i]))
            return false;
    return true;
}

/* future_wait_any on one future: a wait that publishes itself (cycle.c)
 * and never runs the task inline. */
static int wait_any_one(future_t *const *fs, int64_t deadline, size_t *index)
{
    int rc = wait_parked(fs[0], deadline);
    if (rc == EDEADLK || rc == ENOMEM)
        return rc;
    if (async__cancel_requested())
        return ECANCELED;
    if (lowest_done(fs, 1, index))
        return 0;
    return rc ? rc : ETIMEDOUT;
}

#define ANY_STACK_NODES 8

int future_wait_any(future_t *const *fs, size_t n, int64_t deadline, size_t *index)
{
    int rc = check_array(fs, n, deadline);
    if (rc || n == 0)
        return rc ? rc : EINVAL;
    if (async__cancel_requested())
        return ECANCELED;
    if (lowest_done(fs, n, index))
        return 0;
    if (n == 1)
        return wait_any_one(fs, deadline, index);
    if (deadline != 0 && closes_cycles(fs, n))
        return EDEADLK;
    struct async_waiter w;
    if ((rc = async__waiter_prepare(&w, deadline)) != 0)
        return rc;
    struct async_wnode stack_nodes[ANY_STACK_NODES];
    struct async_wnode *nodes = stack_nodes;
    if (n > ANY_STACK_NODES && !(nodes = async__calloc(n, sizeof *nodes)))
        return ENOMEM;
    bool done = false;
    size_t linked = 0;
    for (; linked < n && !done; linked++) {
        struct future *f = fs[linked];
        nodes[linked] = (struct async_wnode){ .w = &w, .index = linked };
        async__lock(&f->lock);
        link_waiter(f, &nodes[linked]);
        done = ASYNC_S_DONE(atomic_load_explicit(&f->state, memory_order_seq_cst));
        async__unlock(&f->lock);
    }
    rc = 0;
    if (!done) {
        async__wait_note(&w, ASYNC_W_ANY, NULL, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n, deadline);
        rc = async__wait(&w, deadline);
    }
    for (size_t i = 0; i < linked; i++) {
        async__lock(&fs[i]->lock);
        unlink_waiter(fs[i], &nodes[i]);
        async__unlock(&fs[i]->lock);
    }
    if (nodes != stack_nodes)
        async__free(nodes);
    if (async__cancel_requested())
        return ECANCELED;   /* as in future_get_until */
    if (lowest_done(fs, n, index))
        return 0;
    return rc ? rc : ETIMEDOUT;
}
