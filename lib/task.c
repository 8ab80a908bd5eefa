/*
 * lib/task.c — the task record's life, and what a task can do while it runs.
 *
 * Owns: record allocation and the per-thread record cache; the run of one
 * task on the current fiber (its frame, deferred functions, panic, counting,
 * completion: the final state store and waking the waiters); the "current
 * task"; async_cancelled, async_defer, async_panic; the thread-exit hook.
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
 * Unread failures: the last drop of a FAILED record whose ASYNC_RF_READ bit
 * is clear logs one line (log_unread): through the pool's hook while the
 * pool lives (dump.c's list of live pools, through async__live_log_hook),
 * else, and for promises, to stderr. Nothing of the record grows for it.
 *
 * The checked build poisons a record on its last drop and hands it to the
 * quarantine (checks.c), which releases it to record_free later.
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

struct async_defer {
    void (*fn)(void *);
    void *arg;
};

#define CACHE_MAX   256          /* records a thread keeps */
#define BATCH       (CACHE_MAX / 2)
#define DEPOT_MAX   64             /* batches the depot keeps */

/* The depot: batches of free records moved between threads, so a thread
 * that only allocates (a submitter) is fed by threads that only free (the
 * workers that drop the queue's reference) without going through malloc.
 * A batch is a chain through `next`; batches chain through `awaiting`
 * (unused while free). One short lock per BATCH records. */
static async_lock_t   depot_lock;
static struct future *depot;       /* guarded by depot_lock */
static unsigned       ndepot;      /* guarded by depot_lock */

static async_lock_t     held_lock;
static _Atomic unsigned walkers;   /* dump walks in progress; changed under held_lock */
static struct future   *held;      /* chained through `next`; guarded by held_lock */
static size_t           nheld;     /* guarded by held_lock */

static pthread_key_t  tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

/* ------------------------------------------------------ thread exit */

static void tls_release(void *unused)
{
    (void)unused;
    struct async_tls *t = async__tls_get();
    while (t->cache) {
        struct future *f = t->cache;
        t->cache = atomic_load_explicit(&f->next, memory_order_relaxed);
        async__free(f);
    }
    t->ncache = 0;
    async__free(t->self.defers);
    t->self.defers = NULL;
    t->self.ndefers = t->self.capdefers = 0;
    async__parker_put(t->parker);
    t->parker = NULL;
    async__tls_list_remove(t);
}

static void tls_key_create(void)
{
    ASYNC_CHECK(pthread_key_create(&tls_key, tls_release));
}

void async__tls_register(void)
{
    ASYNC_CHECK(pthread_once(&tls_once, tls_key_create));
    if (!pthread_getspecific(tls_key))
        ASYNC_CHECK(pthread_setspecific(tls_key, async__tls_get()));
}

uint64_t async__rand(void)
{
    struct async_tls *t = async__tls_get();
    uint64_t x = t->rng;
    if (ASYNC_UNLIKELY(x == 0)) {
        x = (uint64_t)(uintptr_t)t ^ (uint64_t)async_now() ^ 0x9e3779b97f4a7c15ull;
        if (x == 0)
            x = 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* ----------------------------------------------------------- records */

static void depot_take(struct async_tls *t)
{
    async__lock(&depot_lock);
    struct future *b = depot;
    if (b) {
        depot = b->awaiting;
        ndepot--;
    }
    async__unlock(&depot_lock);
    if (!b)
        return;
    if (!t->cache && !t->ncache)
        async__tls_register();
    t->cache = b;
    t->ncache = BATCH;
}

/* The cache is full: hand BATCH records to the depot, or free them. */
static void depot_give(struct async_tls *t)
{
    struct future *b = t->cache, *last = b;
    for (unsigned i = 1; i < BATCH; i++)
        last = atomic_load_explicit(&last->next, memory_order_relaxed);
    t->cache = atomic_load_explicit(&last->next, memory_order_relaxed);
    t->ncache -= BATCH;
    atomic_store_explicit(&last->next, NULL, memory_order_relaxed);
    async__lock(&depot_lock);
    bool kept = ndepot < DEPOT_MAX;
    if (kept) {
        b->awaiting = depot;
        depot = b;
        ndepot++;
    }
    async__unlock(&depot_lock);
    while (!kept && b) {
        struct future *next = atomic_load_explicit(&b->next, memory_order_relaxed);
        async__free(b);
        b = next;
    }
}

static struct future *record_alloc(size_t arg_size)
{
    struct async_tls *t = async__tls_get();
    if (arg_size == 0 && !t->cache && !async__alloc_hooked())
        depot_take(t);
    if (arg_size == 0 && t->cache && !async__alloc_hooked()) {
        struct future *f = t->cache;
        t->cache = atomic_load_explicit(&f->next, memory_order_relaxed);
        t->ncache--;
        /* nobody kept a reference to a freed record */
        ASYNC_ASSERT(atomic_load_explicit(&f->refs, memory_order_relaxed) == 0);
        return f;
    }
    if (arg_size > SIZE_MAX - ASYNC_ARG_OFFSET) {
        errno = ENOMEM;
        return NULL;
    }
    struct future *f = async__malloc(arg_size ? ASYNC_ARG_OFFSET + arg_size
                                              : sizeof(struct future));
    if (f) {
        f->size_class = arg_size == 0;
#if ASYNC_CHECKS
        f->gen = 0;
#endif
    }
    return f;
}

static void record_free(struct future *f)
{
    struct async_tls *t = async__tls_get();
#if ASYNC_CHECKS
    /* cached records have refs == 0: a late release or retain is caught */
    atomic_store_explicit(&f->refs, 0, memory_order_relaxed);
#endif
    if (f->size_class && !async__alloc_hooked()) {
        if (t->ncache == CACHE_MAX)
            depot_give(t);
        if (!t->cache)
            async__tls_register();
        atomic_store_explicit(&f->next, t->cache, memory_order_relaxed);
        t->cache = f;
        t->ncache++;
        return;
    }
    async__free(f);
}

#if ASYNC_CHECKS
static void record_free_any(void *f)
{
    record_free(f);
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
    struct future *f = record_alloc(arg_size);
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
    struct future *f = record_alloc(0);
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
    record_free(f);
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

/* --------------------------------------------------------------- run */

void async__pool_log(struct async_pool *pool, const char *line)
{
    struct async_pool_head *h = (struct async_pool_head *)(void *)pool;
    if (h && h->log)
        h->log(h->log_ctx, line);
    else
        fprintf(stderr, "libasync: %s\n", line);
}

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
