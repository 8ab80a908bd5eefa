/*
 * lib/record.c — the task record's life between its making and its memory:
 * a new record's fields, the last drop of a reference, held records of the
 * dump's walks, and failure messages. Where the memory comes from and goes
 * back to is recmem.c's.
 *
 * Owns: async__task_new, async__promise_new, async__record_release, the
 * failure message's storage (async__format, async__msg_is_static), the
 * dump's record walks (held records).
 *
 * Unread failures: the last drop of a FAILED record whose ASYNC_RF_READ bit
 * is clear logs one line (log_unread): through the pool's hook while the
 * pool lives (dump.c's list of live pools, through async__live_log_hook),
 * else, and for promises, to stderr. Nothing of the record grows for it.
 *
 * The checked build poisons a record on its last drop and hands it to the
 * quarantine (checks.c), which releases it to async__record_free later.
 *
 * Held records. The dump lists queued tasks by reading records it finds in
 * the run queues, holding no reference (runq.c, async__pool_each_queued).
 * While a walk runs (`walkers` > 0), a record's last drop puts it on the
 * `held` list instead of freeing or caching it; the last walk to end frees
 * the list. `walkers` is read seq_cst on every last drop (a plain load on
 * x86-64) and changed under held_lock, which also guards `held`, so a drop
 * that saw a walk either holds its record before the walk's end takes the
 * list, or sees under the lock that the walk has ended and frees it.
 */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static async_lock_t     held_lock;
static _Atomic unsigned walkers;   /* dump walks in progress; changed under held_lock */
static struct future   *held;      /* chained through `next`; guarded by held_lock */
static size_t           nheld;     /* guarded by held_lock */

#if ASYNC_CHECKS
static void record_free_any(void *f)
{
    async__record_free(f);
}
#endif

static void record_init(struct future *f, uint8_t kind, struct async_pool *pool)
{
    atomic_init(&f->next, NULL);
    atomic_init(&f->state, ASYNC_S_PENDING);
    atomic_init(&f->refs, 2);
    atomic_init(&f->lock.word, 0);
    f->err = 0;
    atomic_init(&f->cancel, 0);
    f->kind = kind;
    atomic_init(&f->flags, 0);
    atomic_init(&f->runner, 0);
    f->fn = NULL;
    f->io.arg = NULL;
    f->pool = pool;
    atomic_init(&f->waiters, NULL);
    f->awaiting = NULL;
#if ASYNC_CHECKS
    f->magic = ASYNC_MAGIC_FUTURE;
    f->gen++;
    atomic_init(&f->handles, 1);   /* the submitter's; promise_make says 0 */
    atomic_init(&f->phold, 0);
#endif
}

struct future *async__task_new(struct async_pool *pool, async_fn fn, const void *arg,
                               size_t arg_size)
{
    struct future *f = async__record_alloc(arg_size);
    if (!f)
        return NULL;
    record_init(f, ASYNC_KIND_TASK, pool);
    f->fn = fn;
    if (arg_size) {
        void *copy = (char *)f + ASYNC_ARG_OFFSET;
        memcpy(copy, arg, arg_size);
        f->io.arg = copy;
    } else {
        f->io.arg = (void *)arg;
    }
    return f;
}

struct future *async__promise_new(void)
{
    struct future *f = async__record_alloc(0);
    if (!f)
        return NULL;
    record_init(f, ASYNC_KIND_PROMISE, NULL);
    return f;
}

void (*_Atomic async__live_log_hook)(struct async_pool *pool, uintptr_t task, uintptr_t fn,
                                    const char *what);

/* A FAILED record nobody read goes: say so, as Python's "Task exception was
 * never retrieved". The last reference may be dropped long after its pool
 * was destroyed (a handle freed late), so the line goes through the pool's
 * hook only if the pool is still alive (pool.c keeps the live ones). */
static void log_unread(struct future *f)
{
    char what[512];
    snprintf(what, sizeof what, "failed and its outcome was never read: %s (error %d)",
             f->io.msg, f->err);
    if (f->kind == ASYNC_KIND_PROMISE) {
        char line[600];
        snprintf(line, sizeof line, "promise 0x%" PRIxPTR " %s", (uintptr_t)f, what);
        async__pool_log(NULL, line);
        return;
    }
    void (*live)(struct async_pool *, uintptr_t, uintptr_t, const char *) =
        atomic_load_explicit(&async__live_log_hook, memory_order_acquire);
    if (live) {
        live(f->pool, (uintptr_t)f, (uintptr_t)f->fn, what);
    } else {
        char line[768];
        int n = async__describe_named(line, sizeof line, "(destroyed)", (uintptr_t)f,
                                      (uintptr_t)f->fn);
        snprintf(line + n, sizeof line - (size_t)n, ": %s", what);
        async__pool_log(NULL, line);
    }
}

void (*_Atomic async__orphan_hook)(struct future *f);

/* An async_after's record about to lose a handle: if the one reference left
 * would be its timer's (2 now) and it is pending, nobody could ever read it,
 * so the timer is cancelled now rather than at its deadline; our reference
 * pins the record meanwhile. Two handles released at once may both miss
 * it: the timer then runs out, as a detached task does. */
static void release_timer(struct future *f)
{
    if (atomic_load_explicit(&f->refs, memory_order_acquire) == 2 &&
        atomic_load_explicit(&f->state, memory_order_acquire) == ASYNC_S_PENDING)
        atomic_load_explicit(&async__orphan_hook, memory_order_acquire)(f);
}

/* A dead record's memory goes back: to the quarantine (checked build), or
 * to the caches. */
static void record_dispose(struct future *f)
{
#if ASYNC_CHECKS
    async__quarantine(f, record_free_any);
#else
    async__record_free(f);
#endif
}

/* A walk is on (seen without the lock): hold f until it ends. false: it
 * ended meanwhile, f is the caller's to dispose of. */
static bool record_hold(struct future *f)
{
    async__lock(&held_lock);
    bool kept = atomic_load_explicit(&walkers, memory_order_relaxed) != 0;
    if (kept) {
        atomic_store_explicit(&f->next, held, memory_order_relaxed);
        held = f;
        nheld++;
    }
    async__unlock(&held_lock);
    return kept;
}

void async__record_walk_begin(void)
{
    async__lock(&held_lock);
    atomic_fetch_add_explicit(&walkers, 1, memory_order_seq_cst);
    async__unlock(&held_lock);
}

void async__record_walk_end(void)
{
    async__lock(&held_lock);
    struct future *h = NULL;
    if (atomic_fetch_sub_explicit(&walkers, 1, memory_order_seq_cst) == 1) {
        h = held;
        held = NULL;
        nheld = 0;
    }
    async__unlock(&held_lock);
    while (h) {
        struct future *next = atomic_load_explicit(&h->next, memory_order_relaxed);
        record_dispose(h);
        h = next;
    }
}

size_t async__test_records_held(void)
{
    async__lock(&held_lock);
    size_t n = nheld;
    async__unlock(&held_lock);
    return n;
}

void async__record_release(struct future *f)
{
    if (ASYNC_UNLIKELY(atomic_load_explicit(&f->flags, memory_order_relaxed) &
                       ASYNC_RF_TIMER))
        release_timer(f);
    /* A sole owner needs no atomic read-modify-write: nobody else holds a
     * handle that could take another reference. */
    uint32_t refs = atomic_load_explicit(&f->refs, memory_order_acquire);
    ASYNC_ASSERT(refs != 0);   /* a reference dropped twice, or a freed record */
    if (refs != 1) {
        refs = atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel);
        ASYNC_ASSERT(refs != 0);
        if (refs != 1)
            return;
    }
    /* the last reference: nobody waits any more */
    ASYNC_ASSERT(atomic_load_explicit(&f->waiters, memory_order_relaxed) == NULL);
    if (atomic_load_explicit(&f->state, memory_order_relaxed) == ASYNC_S_FAILED) {
        if (!(atomic_load_explicit(&f->flags, memory_order_relaxed) & ASYNC_RF_READ))
            log_unread(f);
        if (!async__msg_is_static(f->io.msg))
            async__free(f->io.msg);
    }
#if ASYNC_CHECKS
    f->magic = ASYNC_MAGIC_FREED;   /* checks.c: poisoned until reused */
#endif
    if (ASYNC_UNLIKELY(atomic_load_explicit(&walkers, memory_order_seq_cst) != 0) &&
        record_hold(f))
        return;   /* the dump may be reading it: its walk's end disposes of it */
    record_dispose(f);
}

/* ------------------------------------------------- failure messages */

static char static_empty[] = "";
static char static_oom[] = "out of memory";

bool async__msg_is_static(const char *msg)
{
    return msg == static_empty || msg == static_oom || msg == async__broken_promise;
}

char *async__format(const char *fmt, va_list ap, bool *oom)
{
    *oom = false;
    if (!fmt || !*fmt)
        return static_empty;
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    char *s = n >= 0 ? async__malloc((size_t)n + 1) : NULL;
    if (!s) {
        *oom = true;
        return static_oom;
    }
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}
