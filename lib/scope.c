/*
 * lib/scope.c — scopes: task groups that close together and cancel as a
 * tree.
 *
 * Owns: async_scope_open/_run/_submit/_cancel/_close, the table that links
 * records to scopes, and the two hooks that the layers
 * below call (task.c on a scoped task's panic, future.c on future_cancel of a
 * running scoped task).
 *
 * Design. Cancelling a scope is future_cancel on each of its tasks; a
 * cancelled running task cancels the scopes it opened, so one cancel runs
 * down the tree with the mechanism that already reaches a running task's
 * blocked call (its cancel flag and its runner's wake). What future_cancel
 * cannot know is which scopes a task opened: the record is 72 bytes and
 * stays so (a pending task must stay small), so the tie lives in a table
 * keyed by the record's address, and only records that carry ASYNC_RF_SCOPE
 * (a member of a scope, or the opener of one) are ever looked up: the
 * common path tests one bit. A link records the scope the task belongs to
 * (`home`, for its panic under ASYNC_SCOPE_FAIL_FAST and the first failure)
 * and the scopes it opened and has not closed (`kids`). A record is a key
 * only while someone holds a reference to it (the scope holds its members,
 * a child scope holds its parent), so a recycled record never meets a stale
 * link. Rejected: hanging child scopes off the task's frame (it lives on the
 * runner's stack, which a canceller on another thread cannot reach safely),
 * and growing the record by a pointer.
 *
 * A scope's deadline is an entry of deadline.c's heap, served by one thread
 * for every scope: it fires whatever the pool's mode, even when every worker
 * is blocked, and costs no thread per scope (deadline.c says what was
 * rejected).
 *
 * Close waits until every task is done, re-reading the count under the lock,
 * so tasks added while it waits are waited for too (the newest first, then
 * the oldest not yet done: few parks when the tasks end in order); it
 * waits like future_get (it may run a pending task inline), and once the
 * caller is cancelled, with async__future_wait_uncancellable: a cancelled
 * scope's tasks still finish before it is freed. A closing parent that is
 * cancelled (even only by its pool's shutdown, which calls no future_cancel)
 * cancels the scope first.
 *
 * Invariants:
 *   s->cancelled is set once, under s->lock, and never cleared.
 *   Once cancelled or closing, s->tasks is never compacted or reallocated,
 *   so an index taken under the lock stays valid across unlocks.
 *   A link with home == NULL and kids == NULL is not in the table.
 *   A scope is in its parent's kids from open until close; in the deadline
 *   heap (dl.idx != ASYNC_DL_NONE) from open until its deadline fires or
 *   close.
 *   refs = 1 (the owner, until close) + pins (the heap's entry, a canceller
 *   that found the scope through the table); the last drop frees it.
 *
 * Locks: s->lock > bucket lock (compaction and close unlink members under
 * s->lock); deadline.c's lock is a leaf. future_cancel, record releases and wakes are called
 * with no lock held, except record releases in compaction (leaf work).
 *
 * Memory order: the cancel hook pairs with the opener: future_cancel stores
 * f->cancel then loads f->flags (seq_cst), the opener fetch_or's the flag,
 * links the scope under the bucket lock, then loads f->cancel (seq_cst):
 * either the canceller finds the link or the opener sees the cancel.
 */
#include "internal.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NBUCKETS_LOG 6
#define NBUCKETS     (1u << NBUCKETS_LOG)
#define KIDS_BATCH   8

struct async_scope {
    async_lock_t        lock;
    _Atomic uint32_t    refs;
    _Atomic bool        cancelled;   /* written under lock; read lock-free */
    bool                closing;     /* guarded by lock */
    bool                closed;      /* guarded by lock: no more tasks */
    bool                saw_cancel;  /* guarded by lock: a dropped task was cancelled */
    unsigned            flags;       /* immutable */
    int                 first_err;   /* guarded by lock */
    struct async_pool  *pool;        /* immutable */
    struct future      *parent;      /* immutable; a reference, or NULL */
    struct async_scope *sib_next, *sib_prev;   /* parent's kids: its bucket lock */
    struct future     **tasks;       /* guarded by lock; each a reference */
    size_t              n, cap;      /* guarded by lock */
    int64_t             deadline;    /* immutable */
    struct async_deadline dl;        /* deadline.c's entry (holds a pin) */
};

/* ------------------------------------------------------------ table */

struct link {
    struct link        *next;        /* bucket chain */
    struct future      *task;        /* the key */
    struct async_scope *home;        /* the scope it belongs to, or NULL */
    struct async_scope *kids;        /* scopes it opened and has not closed */
};

static struct bucket {
    async_lock_t lock;
    struct link *head;               /* guarded by lock */
} table[NBUCKETS];

static struct bucket *bucket_of(const struct future *f)
{
    uint64_t h = (uint64_t)(uintptr_t)f * 0x9e3779b97f4a7c15ull;
    return &table[h >> (64 - NBUCKETS_LOG)];
}

/* Under b->lock. */
static struct link **find(struct bucket *b, const struct future *f)
{
    struct link **p = &b->head;
    while (*p && (*p)->task != f)
        p = &(*p)->next;
    return p;
}

/* Under b->lock: the link of f, made from spare (then *spare = NULL). */
static struct link *find_or_add(struct bucket *b, struct future *f, struct link **spare)
{
    struct link **p = find(b, f);
    if (*p)
        return *p;
    struct link *l = *spare;
    *spare = NULL;
    *l = (struct link){ .next = b->head, .task = f };
    b->head = l;
    return l;
}

/* Under b->lock: drop the link at *p if it holds nothing; returns it to
 * free after unlocking, or NULL. */
static struct link *drop_if_empty(struct link **p)
{
    struct link *l = *p;
    if (!l || l->home || l->kids)
        return NULL;
    *p = l->next;
    return l;
}

static void pin(struct async_scope *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

static void unpin(struct async_scope *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    ASYNC_ASSERT(s->n == 0 && s->dl.idx == ASYNC_DL_NONE);
    async__free(s->tasks);
    async__free(s);
}

/* Make f a member of s. 0 | ENOMEM. */
static int link_home(struct future *f, struct async_scope *s)
{
    struct link *spare = async__malloc(sizeof *spare);
    if (!spare)
        return ENOMEM;
    atomic_fetch_or_explicit(&f->flags, ASYNC_RF_SCOPE, memory_order_seq_cst);
    struct bucket *b = bucket_of(f);
    async__lock(&b->lock);
    find_or_add(b, f, &spare)->home = s;
    async__unlock(&b->lock);
    async__free(spare);
    return 0;
}

static void unlink_home(struct future *f)
{
    struct bucket *b = bucket_of(f);
    async__lock(&b->lock);
    struct link **p = find(b, f), *gone = NULL;
    if (*p) {
        (*p)->home = NULL;
        gone = drop_if_empty(p);
    }
    async__unlock(&b->lock);
    async__free(gone);
}

/* Hang s on its parent's link (s->parent set, referenced). 0 | ENOMEM. */
static int link_kid(struct async_scope *s)
{
    struct link *spare = async__malloc(sizeof *spare);
    if (!spare)
        return ENOMEM;
    struct future *f = s->parent;
    atomic_fetch_or_explicit(&f->flags, ASYNC_RF_SCOPE, memory_order_seq_cst);
    struct bucket *b = bucket_of(f);
    async__lock(&b->lock);
    struct link *l = find_or_add(b, f, &spare);
    s->sib_prev = NULL;
    s->sib_next = l->kids;
    if (l->kids)
        l->kids->sib_prev = s;
    l->kids = s;
    async__unlock(&b->lock);
    async__free(spare);
    return 0;
}

static void unlink_kid(struct async_scope *s)
{
    struct bucket *b = bucket_of(s->parent);
    async__lock(&b->lock);
    struct link **p = find(b, s->parent);
    ASYNC_ASSERT(*p != NULL);
    if (s->sib_prev)
        s->sib_prev->sib_next = s->sib_next;
    else
        (*p)->kids = s->sib_next;
    if (s->sib_next)
        s->sib_next->sib_prev = s->sib_prev;
    struct link *gone = drop_if_empty(p);
    async__unlock(&b->lock);
    async__free(gone);
}

/* The scope f belongs to, pinned, or NULL. */
static struct async_scope *home_of(struct future *f)
{
    if (!f || !(atomic_load_explicit(&f->flags, memory_order_acquire) & ASYNC_RF_SCOPE))
        return NULL;
    struct bucket *b = bucket_of(f);
    async__lock(&b->lock);
    struct link *l = *find(b, f);
    struct async_scope *s = l ? l->home : NULL;
    if (s)
        pin(s);
    async__unlock(&b->lock);
    return s;
}

/* ------------------------------------------------------ cancellation */

/* Cancel s and each of its tasks but skip. 0 | EALREADY. */
static int cancel_scope(struct async_scope *s, struct future *skip)
{
    async__lock(&s->lock);
    if (atomic_load_explicit(&s->cancelled, memory_order_relaxed)) {
        async__unlock(&s->lock);
        return EALREADY;
    }
    atomic_store_explicit(&s->cancelled, true, memory_order_release);
    async__unlock(&s->lock);
    /* No compaction once cancelled: indices are stable (opening comment). */
    for (size_t i = 0;; i++) {
        async__lock(&s->lock);
        struct future *t = i < s->n ? s->tasks[i] : NULL;
        if (t)
            async__record_retain(t);
        async__unlock(&s->lock);
        if (!t)
            return 0;
        if (t != skip)
            (void)future_cancel(t);
        async__record_release(t);
    }
}

/* future.c's hook: running task f is being cancelled; cancel the scopes it
 * opened (each cancelled scope leaves the batch's candidates, so this
 * ends; a scope opened meanwhile sees f's cancel itself). */
static void on_cancel(struct future *f)
{
    struct bucket *b = bucket_of(f);
    for (;;) {
        struct async_scope *batch[KIDS_BATCH];
        unsigned n = 0;
        async__lock(&b->lock);
        struct link *l = *find(b, f);
        for (struct async_scope *k = l ? l->kids : NULL; k && n < KIDS_BATCH; k = k->sib_next)
            if (!atomic_load_explicit(&k->cancelled, memory_order_acquire)) {
                pin(k);
                batch[n++] = k;
            }
        async__unlock(&b->lock);
        if (n == 0)
            return;
        for (unsigned i = 0; i < n; i++) {
            (void)cancel_scope(batch[i], NULL);
            unpin(batch[i]);
        }
    }
}

/* task.c's hook: scoped task f panicked with err (before its future
 * completes, so close has not yet seen it done). */
static void on_fail(struct future *f, int err)
{
    struct async_scope *s = home_of(f);
    if (!s)
        return;
    async__lock(&s->lock);
    bool first = s->first_err == 0;
    if (first)
        s->first_err = err;
    async__unlock(&s->lock);
    if (first && (s->flags & ASYNC_SCOPE_FAIL_FAST))
        (void)cancel_scope(s, f);
    unpin(s);
}

/* Is the task f asked to stop? seq_cst: the opener's side of the pair with
 * future_cancel (opening comment). */
static bool task_cancelled(struct future *f)
{
    return atomic_load_explicit(&f->cancel, memory_order_seq_cst) ||
           (f->pool && async__pool_phase_cancelling(f->pool));
}

/* --------------------------------------------------------- deadlines */

/* deadline.c's callback: the heap's pin is ours now. */
static void deadline_fired(struct async_deadline *d)
{
    struct async_scope *s = (struct async_scope *)(void *)((char *)d -
                            offsetof(struct async_scope, dl));
    (void)cancel_scope(s, NULL);
    unpin(s);
}

/* Take s's deadline out of the heap if it did not fire. */
static void dl_del(struct async_scope *s)
{
    if (s->deadline != ASYNC_FOREVER && async__deadline_del(&s->dl))
        unpin(s);   /* the heap's */
}

/* ------------------------------------------------------------- open */

static void install_hooks(void)
{
    /* relaxed: published before any flag, which readers load with acquire */
    atomic_store_explicit(&async__scope_cancel_hook, on_cancel, memory_order_relaxed);
    atomic_store_explicit(&async__scope_fail_hook, on_fail, memory_order_relaxed);
}

async_scope_t *async_scope_open(async_pool_t *pool, unsigned flags, int64_t deadline)
{
    if ((flags & ~ASYNC_SCOPE_FAIL_FAST) || async__deadline_valid(deadline)) {
        errno = EINVAL;
        return NULL;
    }
    if (!(pool = async__pool_resolve(pool)))
        return NULL;
    install_hooks();
    struct async_scope *s = async__calloc(1, sizeof *s);
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->flags = flags;
    s->pool = pool;
    s->deadline = deadline;
    s->dl = (struct async_deadline){ .when = deadline, .idx = ASYNC_DL_NONE,
                                     .fire = deadline_fired };
    struct future *parent = async__current_task();
    int rc = 0;
    if (parent) {
        async__record_retain(parent);
        s->parent = parent;
        if ((rc = link_kid(s)) != 0)
            goto fail_parent;
    }
    if (deadline != ASYNC_FOREVER && !async__deadline_passed(deadline)) {
        pin(s);   /* the heap's */
        if ((rc = async__deadline_add(&s->dl)) != 0) {
            atomic_store_explicit(&s->refs, 1, memory_order_relaxed);
            goto fail_kid;
        }
    }
    if ((parent && task_cancelled(parent)) ||
        (deadline != ASYNC_FOREVER && async__deadline_passed(deadline)))
        atomic_store_explicit(&s->cancelled, true, memory_order_release);
    return s;

fail_kid:
    if (parent)
        unlink_kid(s);
fail_parent:
    if (parent)
        async__record_release(parent);
    async__free(s);
    errno = rc;
    return NULL;
}

/* ------------------------------------------------------------ tasks */

/* Under s->lock: room for one more task. Done tasks are dropped first
 * (their failures were noted when they failed); then the array grows.
 * 0 | ENOMEM. */
static int make_room(struct async_scope *s)
{
    if (s->n < s->cap)
        return 0;
    if (!s->closing) {
        size_t kept = 0;
        for (size_t i = 0; i < s->n; i++) {
            struct future *t = s->tasks[i];
            uint32_t st = atomic_load_explicit(&t->state, memory_order_acquire);
            if (!ASYNC_S_DONE(st)) {
                s->tasks[kept++] = t;
                continue;
            }
            s->saw_cancel |= st == ASYNC_S_CANCELLED;
            unlink_home(t);
            async__record_release(t);
        }
        s->n = kept;
        if (s->cap && s->n <= s->cap / 2)
            return 0;   /* half free: growing can wait */
    }
    size_t cap = s->cap ? s->cap * 2 : 8;
    struct future **a = async__calloc(cap, sizeof *a);
    if (!a)
        return ENOMEM;
    if (s->n)
        memcpy(a, s->tasks, s->n * sizeof *a);
    async__free(s->tasks);
    s->tasks = a;
    s->cap = cap;
    return 0;
}

/* Add f (a new record, refs 2) to s. 0 | ECANCELED | ENOMEM; on 0 the
 * scope holds a third reference. */
static int add_task(struct async_scope *s, struct future *f)
{
    int rc = link_home(f, s);
    if (rc)
        return rc;
    async__lock(&s->lock);
    if (atomic_load_explicit(&s->cancelled, memory_order_relaxed) || s->closed)
        rc = ECANCELED;
    else if ((rc = make_room(s)) == 0) {
        async__record_retain(f);
        s->tasks[s->n++] = f;
    }
    async__unlock(&s->lock);
    if (rc)
        unlink_home(f);
    return rc;
}

future_t *async_scope_submit(async_scope_t *s, async_fn fn, const void *arg, size_t arg_size)
{
    if (!s || !fn || (arg_size && !arg)) {
        errno = EINVAL;
        return NULL;
    }
    if (atomic_load_explicit(&s->cancelled, memory_order_acquire)) {
        errno = ECANCELED;
        return NULL;
    }
    struct future *f = async__task_new(s->pool, fn, arg, arg_size);
    if (!f) {
        errno = ENOMEM;
        return NULL;
    }
    int rc = add_task(s, f);
    if (rc) {
        atomic_store_explicit(&f->refs, 1, memory_order_relaxed);
        async__record_release(f);
        errno = rc;
        return NULL;
    }
    if ((rc = async__pool_submit(s->pool, f)) != 0) {
        /* The scope keeps it, done: a pending record would hold close. */
        (void)async__future_cancel_pending(f);
        async__record_release(f);   /* the queue's, never taken */
        async__record_release(f);   /* the caller's */
        errno = rc;
        return NULL;
    }
    return f;
}

future_t *async_scope_run(async_scope_t *s, async_fn fn, void *arg)
{
    return async_scope_submit(s, fn, arg, 0);
}

int async_scope_cancel(async_scope_t *s)
{
    return s ? cancel_scope(s, NULL) : EINVAL;
}

/* ------------------------------------------------------------ close */

/* Wait until t is done: like future_get while the caller is not
 * cancelled (it may run t inline), then deaf to cancellation. A cancelled
 * parent cancels s first (its pool's shutdown calls no future_cancel). */
static void wait_task(struct async_scope *s, struct future *t, struct future *me)
{
    if (future_done(t))
        return;
    if (!me || !task_cancelled(me)) {
        /* Run t inline only on the closer's own pool: run inline from
         * another pool, t would not see the cancelling shutdown of the
         * closer's (its checks look at its own record and pool), and that
         * shutdown could not cancel s either while the closer is inside t.
         * A finite deadline never runs a task inline; INT64_MAX never
         * comes. t's own pool has workers of its own to run it. */
        future_t *one[1] = { t };
        (void)future_wait_all(one, 1, !me || me->pool == s->pool ? ASYNC_FOREVER : INT64_MAX);
        if (future_done(t))
            return;
    }
    if (me && me == s->parent && task_cancelled(me))
        (void)cancel_scope(s, NULL);
    while (async__future_wait_uncancellable(t) != 0)
        async_yield();   /* no parker for this thread (ENOMEM): poll */
}

/* After every task is done: the outcome, and the tasks dropped. */
static int finish(struct async_scope *s)
{
    async__lock(&s->lock);
    int rc = s->first_err;
    bool cancelled = atomic_load_explicit(&s->cancelled, memory_order_relaxed) ||
                     s->saw_cancel;
    for (size_t i = 0; i < s->n; i++) {
        struct future *t = s->tasks[i];
        cancelled |= atomic_load_explicit(&t->state, memory_order_acquire) ==
                     ASYNC_S_CANCELLED;
        unlink_home(t);
        async__record_release(t);
    }
    s->n = 0;
    async__unlock(&s->lock);
    return rc ? rc : cancelled ? ECANCELED : 0;
}

int async_scope_close(async_scope_t *s)
{
    if (!s)
        return EINVAL;
    struct future *me = async__current_task();
    struct async_scope *mine = home_of(me);
    if (mine)
        unpin(mine);
    if (mine == s)
        return EDEADLK;
    async__lock(&s->lock);
    s->closing = true;
    async__unlock(&s->lock);
    for (size_t i = 0;;) {
        struct future *t = NULL;
        async__lock(&s->lock);
        while (i < s->n && future_done(s->tasks[i]))
            i++;   /* a done prefix stays done: each is passed once */
        if (i < s->n) {
            /* The newest first: the one a worker's own deque pops first,
             * and, cancelled in order, the last to end (then the rest are
             * passed without a park each). */
            t = s->tasks[s->n - 1];
            if (future_done(t))
                t = s->tasks[i];
        } else {
            s->closed = true;
        }
        async__unlock(&s->lock);
        if (!t)
            break;
        wait_task(s, t, me);
    }
    if (me && me == s->parent && task_cancelled(me))
        (void)cancel_scope(s, NULL);   /* its tasks may have ended first */
    int rc = finish(s);
    dl_del(s);
    if (s->parent) {
        unlink_kid(s);
        async__record_release(s->parent);
    }
    unpin(s);
    return rc;
}
