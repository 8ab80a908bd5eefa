/*
 * lib/internal.h — what crosses files inside libasync. Never installed.
 *
 * Layers, bottom up (nothing below includes what is above):
 *   alloc.c    every allocation (with a test hook that fails the Nth one)
 *   time.c     the clock, deadlines as timespecs
 *   cpus.c     the CPUs the process may use (affinity, cgroup quota)
 *   park.c     the per-thread parker, the short lock, the waiter and the one
 *              wait loop every blocking call goes through
 *   task.c     the task record's life: init, claim, run (frame, defers,
 *              panic), the record cache, the thread's "current task"
 *   deque.c    the per-worker Chase–Lev deque
 *   pool.c     workers, injection queue, idle parking, blocked accounting,
 *              replacements, shutdown, stats
 *   future.c   completion, waiting (inline run, helping), wait_all/any
 *   promise.c  promises
 *   chan.c, select.c   channels and select, on the same waiter
 *
 * Internal symbols carry the async__ prefix; the library is built with hidden
 * visibility, so only ASYNC_API symbols are exported from the shared object.
 */
#ifndef ASYNC_INTERNAL_H
#define ASYNC_INTERNAL_H

#include <async.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define ASYNC_CACHELINE 64

/* A full (seq_cst) fence. ThreadSanitizer does not model fences, so under it
 * the fence is a seq_cst read-modify-write of a private word, which it does;
 * on x86 both are one locked instruction. */
#if defined(__SANITIZE_THREAD__)
#  define ASYNC_TSAN 1
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define ASYNC_TSAN 1
#  endif
#endif
#ifdef ASYNC_TSAN
extern _Atomic int async__fence_word;
#  define ASYNC_FENCE() ((void)atomic_fetch_add_explicit(&async__fence_word, 0, memory_order_seq_cst))
#else
#  define ASYNC_FENCE() atomic_thread_fence(memory_order_seq_cst)
#endif
#define ASYNC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ASYNC_LIKELY(x)   __builtin_expect(!!(x), 1)

/* ------------------------------------------------------------ alloc.c */

/* An impossible failure (a pthread call that cannot fail when used right):
 * print file, line and what, then abort. */
_Noreturn void async__abort(const char *file, int line, const char *what);
#define ASYNC_CHECK(expr)                                                    \
    do {                                                                     \
        if (ASYNC_UNLIKELY((expr) != 0))                                     \
            async__abort(__FILE__, __LINE__, #expr);                         \
    } while (0)

void *async__malloc(size_t n);              /* NULL on failure (errno ENOMEM) */
void *async__calloc(size_t n, size_t size); /* overflow checked */
void  async__free(void *p);

/* Test hooks. async__test_fail_alloc(n): the nth allocation from now fails
 * (1 = the next one); 0 disarms. While armed, caches are bypassed so that
 * every allocation site is reached. async__test_alloc_count: allocations made
 * through async__malloc since the last arm (or process start). */
void async__test_fail_alloc(long nth);
long async__test_alloc_count(void);
extern _Atomic long async__fail_at;
static inline bool async__alloc_hooked(void)   /* true while a failure is armed */
{
    return atomic_load_explicit(&async__fail_at, memory_order_relaxed) != 0;
}

/* Thread creation goes through here too, with the same kind of hook:
 * async__test_fail_thread(n) makes the nth pthread_create from now fail with
 * EAGAIN. */
int  async__thread_create(pthread_t *t, void *(*fn)(void *), void *arg);
void async__test_fail_thread(long nth);

/* ------------------------------------------------------------- time.c */

struct timespec async__timespec(int64_t ns);
/* 0 for a valid deadline (>= -1), else EINVAL. */
static inline int async__deadline_valid(int64_t d) { return d >= -1 ? 0 : EINVAL; }
/* true when a finite deadline has passed */
bool async__deadline_passed(int64_t deadline);

/* ------------------------------------------------------------- cpus.c */

/* The CPUs this process may use: the smaller of its affinity mask and its
 * cgroup v2 quota (cpu.max, rounded up); at least 1. The default pool size
 * when $ASYNC_THREADS is not set. */
unsigned async__cpu_count(void);

/* ------------------------------------------------------------- park.c */

/*
 * The parker: one per thread, allocated on the thread's first wait and never
 * freed (a thread that exits returns it to a free list for the next thread).
 * That type-stability is what makes wake-ups safe without reference counts: a
 * waker may read a waiter's parker, let the waiter return and even exit, and
 * still unpark that parker afterwards — the worst outcome is a spurious wake,
 * which every wait loop tolerates.
 *
 * Semantics are those of a permit (Java's LockSupport): unpark makes a permit
 * available; park consumes it or sleeps until one arrives or the deadline.
 */
struct async_parker;

struct async_parker *async__parker_self_slow(void);   /* NULL: ENOMEM */
/* async__parker_self(): the calling thread's parker (inline, after async_tls) */
struct async_parker *async__parker_new(void);    /* for a thread not yet started */
void async__parker_put(struct async_parker *p);  /* its thread exits */
/* Sleeps until unparked or the deadline (ASYNC_FOREVER: none). May return
 * spuriously; the caller re-checks its condition. */
void async__park(struct async_parker *p, int64_t deadline);
void async__unpark(struct async_parker *p);

/*
 * The short lock: a futex mutex (spin briefly, then sleep) for sections of a
 * few instructions; never held across user code or a park. Zero-initialised
 * means unlocked.
 */
typedef struct { _Atomic uint32_t word; } async_lock_t;
void async__lock_slow(async_lock_t *l);
void async__unlock_slow(async_lock_t *l);
static inline void async__lock(async_lock_t *l)
{
    uint32_t zero = 0;
    if (!atomic_compare_exchange_strong_explicit(&l->word, &zero, 1,
            memory_order_acquire, memory_order_relaxed))
        async__lock_slow(l);
}
static inline void async__unlock(async_lock_t *l)
{
    if (atomic_exchange_explicit(&l->word, 0, memory_order_release) != 1)
        async__unlock_slow(l);
}

/*
 * The waiter: one per blocked call, on the caller's stack. It is published on
 * one or more objects through wnodes (one per object: a future's waiter list,
 * a channel's send or receive queue); the first object to fire it wins the CAS
 * on `fired`. Objects touch their wnodes only under their own lock, and fire
 * a waiter only under that lock, so once the waiter has unlinked itself from
 * every object (or found itself fired) nothing else touches it.
 */
struct async_waiter {
    struct async_parker *parker;  /* immutable while published */
    _Atomic uintptr_t fired;      /* 0 while waiting; set once, by the CAS in
                                     async__waiter_fire (release), read with
                                     acquire by the waiting thread */
};

struct async_wnode {
    struct async_wnode  *next, *prev;  /* guarded by the owning object's lock */
    struct async_waiter *w;            /* immutable while linked */
    void                *elem;         /* channels: the caller's element */
    size_t               index;        /* position in a select / wait_any */
    int                  result;       /* set by the firer under the lock */
    bool                 linked;       /* guarded by the owning object's lock */
};

/* A FIFO of wnodes, guarded by its owner's lock. */
struct async_wqueue {
    struct async_wnode *head, *tail;
};
void async__wq_push(struct async_wqueue *q, struct async_wnode *n);
void async__wq_remove(struct async_wqueue *q, struct async_wnode *n);
struct async_wnode *async__wq_pop(struct async_wqueue *q);

/* 0, or ENOMEM when this thread's parker could not be allocated. */
static inline int async__waiter_init(struct async_waiter *w);

/* Under the owner's lock: claim the waiter with value (nonzero). Returns true
 * when this call won; the caller must then async__unpark(w->parker) — read the
 * parker before the CAS, since a fired waiter may return at once. */
static inline bool async__waiter_fire(struct async_waiter *w, uintptr_t value)
{
    uintptr_t zero = 0;
    return atomic_compare_exchange_strong_explicit(&w->fired, &zero, value,
            memory_order_acq_rel, memory_order_relaxed);
}

/*
 * The one wait loop. Returns 0 once w is fired, else ETIMEDOUT (the deadline
 * passed; EAGAIN is the caller's answer for deadline 0, which never gets
 * here), or ECANCELED (the calling task's cancellation was requested). On a
 * nonzero return the caller unlinks its wnodes under each object's lock and
 * then checks `fired` once more: a fire that won the race means the operation
 * happened, and its result stands.
 *
 * It spins briefly before parking, tells the pool that a worker blocks
 * (replacements, stats, cancel wake-ups) and never runs other tasks.
 */
int async__wait(struct async_waiter *w, int64_t deadline);

/* A small set of parkers to unpark once a lock is released. */
struct async_wakeset {
    unsigned             n;
    struct async_parker *p[15];
};
void async__wakeset_add(struct async_wakeset *ws, struct async_parker *p);
void async__wakeset_flush(struct async_wakeset *ws);

/* ------------------------------------------------------------- task.c */

enum {
    /* public states, as future_state_t */
    ASYNC_S_PENDING   = FUTURE_PENDING,
    ASYNC_S_RUNNING   = FUTURE_RUNNING,
    ASYNC_S_SUCCEEDED = FUTURE_SUCCEEDED,
    ASYNC_S_FAILED    = FUTURE_FAILED,
    ASYNC_S_CANCELLED = FUTURE_CANCELLED,
    /* a promise being completed: seen as PENDING from outside */
    ASYNC_S_COMPLETING = 8,
};
#define ASYNC_S_DONE(s) ((s) >= ASYNC_S_SUCCEEDED && (s) <= ASYNC_S_CANCELLED)

enum { ASYNC_KIND_TASK = 0, ASYNC_KIND_PROMISE = 1 };

/*
 * The record behind a future_t: one allocation per submission (argument copy
 * included), recycled through a per-thread cache. 72 bytes on LP64 (the
 * argument and the outcome share a word: one is dead before the other lives;
 * a cancelled task's blocked call is found through its pool's list of
 * blocked callers, not through a pointer kept here).
 *
 * Reference counting: refs = handles (the submitter's, a promise's own hold,
 * each promise_future handle) + 1 while the record sits in a queue. The last
 * drop frees it.
 */
struct future {
    struct future *_Atomic next;  /* injection-queue link (queue-owned) */
    _Atomic uint32_t state;       /* PENDING -> RUNNING by the claim CAS;
                                     RUNNING -> final by the runner's store
                                     (seq_cst: pairs with the waiter's
                                     publish-then-check in future.c) */
    _Atomic uint32_t refs;
    async_lock_t     lock;        /* guards waiters' links and awaiting */
    int32_t          err;         /* failure code; written before the final
                                     state store, read after an acquire load */
    _Atomic uint8_t  cancel;      /* cancellation requested */
    uint8_t          kind;        /* ASYNC_KIND_*; immutable */
    uint8_t          size_class;  /* 1: standard size (cacheable) */
    uint8_t          spare;
    async_fn         fn;          /* immutable after submit */
    union {
        void *arg;                /* until the run starts (read once by the
                                     runner, before fn is called) */
        void *result;             /* SUCCEEDED */
        char *msg;                /* FAILED: message (may be a static string) */
    } io;                         /* the outcome is written before the final
                                     state store; the argument is dead by then */
    struct async_pool *pool;      /* immutable; NULL for promises */
    struct async_wnode *_Atomic waiters; /* linked under lock; read lock-free
                                     by the completer's emptiness check */
    struct future   *awaiting;    /* task this one waits on; guarded by lock */
    /* async_submit's copy of the argument follows, at ASYNC_ARG_OFFSET (no
     * flexible array member: its alignment would pad every record to 80) */
};
#define ASYNC_ARG_OFFSET \
    ((sizeof(struct future) + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1))

/* The frame of one task run, on the runner's stack. */
struct async_frame {
    struct future      *task;
    struct async_frame *prev;        /* the run this one is nested in */
    size_t              defer_base;  /* this run's defers start here */
    void               *result;      /* what fn returned */
    char               *pmsg;        /* panic message (last panic wins) */
    int                 perr;        /* panic code */
    bool                panicked;
    sigjmp_buf          jb;          /* where async_panic lands */
};

struct async_worker;

/* Per-thread state. */
struct async_tls {
    struct async_frame  *frame;   /* innermost running task, NULL outside */
    struct async_worker *worker;  /* set on pool worker threads */
    struct async_parker *parker;  /* lazily allocated */
    struct async_defer  *defers;  /* the thread's defer stack */
    size_t               ndefers, capdefers;
    struct future       *cache;   /* free records of standard size */
    unsigned             ncache;
    uint64_t             rng;     /* xorshift state, lazily seeded */
    int64_t              spin_ns; /* adaptive spin budget (park.c); 0: unset */
};
/* initial-exec: a TLS access is one instruction, not a call to
 * __tls_get_addr; the block is small enough for the static TLS surplus a
 * dlopen()ed library may use. */
#if defined(__GNUC__)
#  define ASYNC_TLS_MODEL __attribute__((tls_model("initial-exec")))
#else
#  define ASYNC_TLS_MODEL
#endif
extern _Thread_local struct async_tls async__tls ASYNC_TLS_MODEL;

static inline struct future *async__current_task(void)
{
    return async__tls.frame ? async__tls.frame->task : NULL;
}

static inline struct async_parker *async__parker_self(void)
{
    struct async_parker *p = async__tls.parker;
    return ASYNC_LIKELY(p != NULL) ? p : async__parker_self_slow();
}

static inline int async__waiter_init(struct async_waiter *w)
{
    w->parker = async__parker_self();
    atomic_init(&w->fired, 0);
    return w->parker ? 0 : ENOMEM;
}

/* Before a blocking call waits: EAGAIN for a poll (deadline 0), ETIMEDOUT
 * for a deadline already passed, ENOMEM when this thread has no parker;
 * else 0 with w ready to publish. */
static inline int async__waiter_prepare(struct async_waiter *w, int64_t deadline)
{
    if (deadline == 0)
        return EAGAIN;
    if (async__deadline_passed(deadline))
        return ETIMEDOUT;
    return async__waiter_init(w);
}

/* The first member of struct async_pool (pool.c), so that the cancellation
 * check below stays inline. */
#define ASYNC_PH_CANCELLING 3
static inline bool async__pool_phase_cancelling(const struct async_pool *pool)
{
    return atomic_load_explicit((_Atomic int *)(void *)(uintptr_t)pool,
                                memory_order_acquire) == ASYNC_PH_CANCELLING;
}

/* Is cancellation requested for the task running on this thread (its own
 * flag, or an ASYNC_CANCEL shutdown of its pool)? */
static inline bool async__cancel_requested(void)
{
    struct future *f = async__current_task();
    if (!f)
        return false;
    return atomic_load_explicit(&f->cancel, memory_order_acquire) ||
           (f->pool && async__pool_phase_cancelling(f->pool));
}

/* A new record for fn(arg), arg_size bytes copied when > 0, refs = 2 (the
 * handle and the queue). NULL with errno ENOMEM. */
struct future *async__task_new(struct async_pool *pool, async_fn fn, const void *arg,
                               size_t arg_size);
struct future *async__promise_new(void);
/* Drop one reference; frees the record (and its message) on the last. */
void async__record_release(struct future *f);
static inline void async__record_retain(struct future *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}
/* CAS PENDING -> RUNNING: true when the caller now owns the run. */
static inline bool async__task_claim(struct future *f)
{
    uint32_t s = ASYNC_S_PENDING;
    return atomic_compare_exchange_strong_explicit(&f->state, &s, ASYNC_S_RUNNING,
            memory_order_acquire, memory_order_relaxed);
}
/* Run a claimed task on this thread: frame, defers, panic, completion. */
void async__task_run(struct future *f);
/* Make sure the thread-exit hook will free this thread's caches and give
 * its parker back. */
void async__tls_register(void);
uint64_t async__rand(void);

/* ------------------------------------------------------------ deque.c */

struct async_ring;
struct async_deque {
    _Atomic int64_t top;                    /* thieves CAS it */
    char pad1[ASYNC_CACHELINE - sizeof(int64_t)];
    _Atomic int64_t bottom;                 /* owner only writes */
    struct async_ring *_Atomic ring;        /* owner replaces on growth */
    struct async_ring *retired;             /* owner only; freed at fini */
};
int  async__deque_init(struct async_deque *d);
void async__deque_fini(struct async_deque *d);
int  async__deque_push(struct async_deque *d, struct future *f);  /* 0 | ENOMEM */
struct future *async__deque_pop(struct async_deque *d);           /* owner */
struct future *async__deque_steal(struct async_deque *d);         /* any thread */
bool async__deque_empty(struct async_deque *d);
struct future *async__deque_peek_bottom(struct async_deque *d);   /* owner */

/* ------------------------------------------------------------- pool.c */

struct async_pool;
/* Queue a new record on its pool. 0, or ECANCELED (the pool is shutting down
 * and does not accept this submitter). On 0 the queue owns one reference. */
int  async__pool_submit(struct async_pool *pool, struct future *f);
/* The submitting pool for NULL: the default pool (NULL + errno on failure). */
struct async_pool *async__pool_resolve(struct async_pool *pool);
/* Around a park: tell the pool of the calling thread's task that it blocks. */
struct async_blocker {
    struct async_pool    *pool;          /* the blocked task's pool, or NULL */
    struct future        *task;          /* the blocked task, or NULL */
    struct async_parker  *parker;
    struct async_blocker *next, *prev;   /* guarded by pool->lock */
    bool                  worker;        /* a worker of this pool */
};
void async__block_enter(struct async_blocker *b);
void async__block_exit(struct async_blocker *b);
/* Wake task's blocked call, if it has one (future_cancel). */
void async__pool_wake_task(struct async_pool *pool, struct future *task);
/* While blocked: retry a replacement that failed to start; the instant to
 * try again, or ASYNC_FOREVER. */
int64_t async__block_retry(struct async_blocker *b);
/* Is the pool being cancelled (ASYNC_CANCEL shutdown)? */
bool async__pool_cancelling(const struct async_pool *pool);
/* Accounting for task outcomes. A worker counts in its own record (single
 * writer, relaxed load + store, summed by readers); any other thread with an
 * atomic add on the pool's shared counters. */
enum {
    ASYNC_C_STARTED, ASYNC_C_SUCCEEDED, ASYNC_C_FAILED, ASYNC_C_CANCELLED,
    ASYNC_C_SUBMITTED, ASYNC_C_STOLEN, ASYNC_NCOUNTERS
};

/* A worker: its thread, its deque, its counters. Defined here so that the
 * hot-path counting stays inline. */
struct async_worker {
    struct async_deque   dq;
    struct async_pool   *pool;        /* immutable */
    struct async_parker *parker;      /* immutable while the thread lives */
    pthread_t            thread;      /* guarded by pool->lock */
    bool                 has_thread;  /* guarded by pool->lock */
    bool                 dead;        /* thread exited; guarded by pool->lock */
    bool                 searching;   /* owner; the waker's while idle */
    bool                 idle;        /* guarded by pool->idle_lock */
    struct async_worker *idle_next;   /* guarded by pool->idle_lock */
    unsigned             index;       /* immutable */
    _Atomic uint64_t     c[ASYNC_NCOUNTERS]; /* owner writes; readers sum */
};

static inline void async__worker_count(struct async_worker *w, int c)
{
    atomic_store_explicit(&w->c[c],
        atomic_load_explicit(&w->c[c], memory_order_relaxed) + 1, memory_order_relaxed);
}

void async__pool_count_ext(struct async_pool *pool, int c);
static inline void async__pool_count(struct async_pool *pool, int c)
{
    struct async_worker *w = async__tls.worker;
    if (!pool)
        return;
    if (w && w->pool == pool)
        async__worker_count(w, c);
    else
        async__pool_count_ext(pool, c);
}
/* A thread that is not a worker of pool is about to claim one of its tasks;
 * false (and nothing to undo) when the pool is being cancelled. */
bool async__pool_inline_begin(struct async_pool *pool);
void async__pool_inline_end(struct async_pool *pool);
/* Pop the task f from the bottom of the calling worker's deque if it is
 * there (the fork/join fast path); true when the caller now owns the
 * queue's reference. */
bool async__pool_pop_local(struct future *f);
void async__pool_log(struct async_pool *pool, const char *line);

/* ----------------------------------------------------------- future.c */

/* Complete a claimed (RUNNING or COMPLETING) record: store the outcome, then
 * the final state, then wake the waiters. After it, the caller must not touch
 * f unless it holds a reference. */
void async__future_complete(struct future *f, uint32_t final, int err, void *value);
/* CAS PENDING -> CANCELLED for a task nobody ran; counts and wakes. true when
 * this call cancelled it. */
bool async__future_cancel_pending(struct future *f);
/* Format a failure message (NULL fmt: ""); never NULL: a static
 * "out of memory" string when allocation fails (sets *oom). */
char *async__format(const char *fmt, va_list ap, bool *oom);
bool  async__msg_is_static(const char *msg);

/* ---------------------------------------------------------- promise.c */

extern char async__broken_promise[];   /* "broken promise" */
int async__promise_cancel(struct future *f);   /* future_cancel on a promise */

#endif /* ASYNC_INTERNAL_H */
