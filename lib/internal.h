/*
 * lib/internal.h — what crosses files inside libasync. Never installed.
 *
 * Layers, bottom up. A file calls only into the files above it in this list
 * (and its own); the one call that must go back up, the wait layer making a
 * parked fiber runnable on its scheduler's queues, goes through a hook
 * (async__ready_hook, set by sched.c):
 *   alloc.c    every allocation (with a test hook that fails the Nth one)
 *   time.c     the clock, deadlines as timespecs
 *   describe.c how log lines name a pool and a task ("pool NAME task 0xID
 *              fn SYMBOL"), and where they go (a pool's hook or stderr)
 *   cpus.c     the CPUs the process may use (affinity, cgroup quota)
 *   tls.c      the thread's state and the accessor that survives migration
 *   park.c     the per-thread parker, the short lock, wait queues, and the
 *              registry of wake targets (parkers and fibers by 32-bit id)
 *   fiber.c    contexts: the switch (ctx/switch_<cpu>.S, or ucontext), a
 *              fiber's start, overflow checks, the sanitizers' annotations
 *   stacks.c   stacks: classes, slabs and guard pages, the fiber records,
 *              taking stacks in batches, giving their pages back
 *   wait.c     the waiter and async__wake: one call that unparks a thread
 *              or makes a parked fiber runnable; wake sets
 *   recmem.c   the task record's memory: blocks a thread carves records
 *              from, the per-thread cache and the depot; the thread-exit
 *              hook that gives back what a thread holds
 *   record.c   a new record, the last drop, held records of the dump's
 *              walks, failure messages
 *   task.c     the task record's life: claim, run (frame, defers, panic),
 *              completion, the current task
 *   deque.c    the per-worker Chase–Lev deque
 *   timer.c    deadlines of parked fibers: a heap per pool
 *   runq.c     the injection queues (Vyukov's MPSC; push and fast pop inline
 *              in sched_internal.h, which holds the pool record the
 *              scheduler's files share with pool.c), the walks of what is
 *              queued
 *   stats.c    a pool's counters summed: the stats snapshot, quiescence,
 *              parked fibers
 *   workers.c  worker threads: the idle list and the idle park, waking on
 *              new work, starting workers and replacements for blocked
 *              ones, blocked accounting, the pin of outside threads that
 *              run a pool's task (inline runs, hosts)
 *              (the thread entry comes down as a hook set by sched.c)
 *   switch.c   the switches of parking, resuming and yielding, the workers'
 *              caches of free stacks, where a woken fiber goes (run-next,
 *              the outside fiber slot), plain threads that run a fiber
 *              they woke (the loop's entry comes down as a hook set by
 *              sched.c)
 *   sched.c    the worker loop, the run-next slot, stealing, going idle
 *   submit.c   submission, timers for futures, the pin of outside pushes
 *   block.c    the one wait loop (async__wait: spin and park a thread, or
 *              park a fiber), sleep, yield
 *   dump.c     the list of live pools, async_dump (reads fibers, threads
 *              and pools; stops nothing)
 *   watch.c    the signal dump and the watchdog (call dump.c)
 *   pool.c     pool life cycle: create, destroy, the default pool, stats
 *   cycle.c    wait cycles: the links of waiting tasks, the EDEADLK walk
 *   future.c   waiting for futures (inline run, helping), wait_all/any
 *   deadline.c callbacks at deadlines, served by one thread (scopes' deadlines)
 *   scope.c    scopes: task groups, cancellation trees
 *              (calls back down through two hooks set when the first scope
 *              opens: task.c's on a scoped task's panic, future.c's on
 *              future_cancel of a running task that opened scopes)
 *   promise.c  promises
 *   chan.c, select.c   channels and select (select also waits on futures)
 *   compose.c  async_after (a future completed by a pool's timer) and
 *              future_then (a task submitted when a future completes)
 *   checks.c   misuse caught: the abort message, the checked build's
 *              quarantine (called from every layer: it calls only alloc.c
 *              and the short lock)
 *
 * Lock order (the only nestings there are; every other lock is a leaf):
 *   default_lock (pool.c) > pool->lock > pool->idle_lock
 *   channel locks, ascending address (select.c) > nothing
 *   f->lock (a record's) > nothing
 *   scope->lock > a scope-table bucket lock (scope.c) > nothing
 *   a->lock (compose.c, an async_after timer's) > timer_lock: cancelling
 *              a timer takes it out of its pool's heap while holding its own
 *              lock, so the pool cannot be freed meanwhile (compose.c)
 *   stack_lock (stacks.c), timer_lock (timer.c), depot_lock (recmem.c),
 *   held_lock (record.c), registry_lock (park.c), inj_lock, dl_lock (deadline.c),
 *   q_lock (checks.c), sig_lock (watch.c): leaves
 *   pools_lock (dump.c) > list_lock (tls.c); the dump's walk of queued
 *   tasks also takes inj_lock, held_lock, and depot_lock or q_lock (the
 *   held records it frees) under pools_lock
 *   default_lock > pools_lock (pool_free under async_shutdown)
 * No internal lock is held while user code (a task, a deferred function, the
 * log hook) runs, nor across a park or a fiber switch.
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
#if defined(__SANITIZE_ADDRESS__)
#  define ASYNC_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define ASYNC_ASAN 1
#  endif
#endif
#ifdef ASYNC_TSAN
extern _Atomic int async__fence_word;
#  define ASYNC_FENCE() ((void)atomic_fetch_add_explicit(&async__fence_word, 0, memory_order_seq_cst))
#else
#  define ASYNC_FENCE() atomic_thread_fence(memory_order_seq_cst)
#endif
/* A spin-wait hint to the CPU (another hyperthread may run meanwhile). */
static inline void async__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
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

/* An invariant of the library (a reference count that never underflows, a
 * record never queued twice, a state that only moves forward). Checked in
 * the checked build (-Dchecks, on in debug and sanitizer builds), where a
 * broken one aborts with file, line and the predicate; compiled out (not
 * evaluated) otherwise. */
#ifndef ASYNC_CHECKS
#  define ASYNC_CHECKS 0
#endif
#if ASYNC_CHECKS
#  define ASYNC_ASSERT(pred)                                                 \
    do {                                                                     \
        if (ASYNC_UNLIKELY(!(pred)))                                         \
            async__abort(__FILE__, __LINE__, "assertion failed: " #pred);   \
    } while (0)
#else
#  define ASYNC_ASSERT(pred) ((void)sizeof(!(pred)))
#endif
/* Decrement a count that must never go below zero (the checked build
 * asserts it was positive; otherwise a plain fetch_sub). */
#define ASYNC_DEC(obj, mo)                                                   \
    do {                                                                     \
        long long async_old_ = (long long)atomic_fetch_sub_explicit((obj), 1, (mo)); \
        ASYNC_ASSERT(async_old_ > 0);                                        \
    } while (0)

/* Misuse of the API caught (checks.c): print "libasync: call(obj): what"
 * and abort. */
_Noreturn void async__misuse(const char *call, const char *what, const void *obj);
/* Magic words of the checked build (and of the few checks release builds
 * keep): an object's word while it lives, ASYNC_MAGIC_FREED once freed. */
#define ASYNC_MAGIC_FUTURE 0x46555455u   /* "FUTU": a record (task or promise) */
#define ASYNC_MAGIC_CHAN   0x4348414eu   /* "CHAN" */
#define ASYNC_MAGIC_POOL   0x504f4f4cu   /* "POOL" */
#define ASYNC_MAGIC_FREED  0xdeadf5eeu
#if ASYNC_CHECKS
/* Keep a freed object poisoned for a while, then release(obj) it. */
void async__quarantine(void *obj, void (*release)(void *obj));
#endif
/* Test hook: release every object the quarantine holds, on this thread
 * (nothing outside the checked build). */
void async__test_quarantine_flush(void);

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

/* Test hook: called (when set) where a thread that holds only a future has
 * read the record and is about to act on it or on its pool, so a stress
 * program can pause it there while the pool is destroyed. Set once, before
 * any thread uses the library; NULL in production. */
extern void (*async__test_window)(void);
#define ASYNC_TEST_WINDOW()                                                  \
    do {                                                                     \
        if (ASYNC_UNLIKELY(async__test_window != NULL))                      \
            async__test_window();                                            \
    } while (0)

/* ------------------------------------------------------------- time.c */

struct timespec async__timespec(int64_t ns);
/* 0 for a valid deadline (>= -1), else EINVAL. */
static inline int async__deadline_valid(int64_t d) { return d >= -1 ? 0 : EINVAL; }
/* true when a finite deadline has passed (no clock read for ASYNC_FOREVER,
 * which every untimed blocking call passes) */
static inline bool async__deadline_passed(int64_t deadline)
{
    return deadline != ASYNC_FOREVER && async_now() >= deadline;
}
/* now + ns, saturated at INT64_MAX (a deadline that never comes) rather
 * than wrapping to the past. */
static inline int64_t async__deadline_after(int64_t ns)
{
    int64_t now = async_now();
    return ns > INT64_MAX - now ? INT64_MAX : now + ns;
}

/* CLOCK_MONOTONIC_COARSE in ns: a few ns to read, a tick (about 4 ms) of
 * resolution; for the dump's "waiting since", which a blocking call stores. */
int64_t async__now_coarse(void);

/* -------------------------------------------------------------- tls.c */

/*
 * A fiber is what a task runs on: a stack, the saved context of a task
 * parked on it, and what used to be per-thread while a task runs (its frame
 * chain and deferred functions; runs nest like the stack they are on). A
 * thread's own stack is a fiber too (embedded in its struct async_tls), so
 * code that asks "which task runs here" asks the current fiber, whatever the
 * mode. Stack fibers live in slabs (stacks.c) and are type-stable: never
 * unmapped, so a late wake-up of one is at worst spurious.
 */
struct async_frame;
struct async_defer;
struct async_pool;
struct async_worker;
struct async_xslot;
struct async_parker;
struct async_stack_class;

struct async_ctx {
    void *sp;                  /* saved stack pointer (asm switch) */
    void *uc;                  /* ucontext_t * (portable fallback), else NULL */
    void *transfer;            /* ucontext fallback: the value handed over */
};

/* Fiber states (stack fibers; a thread's own fiber stays RUNNING). See
 * switch.c for the transitions and who makes each. */
enum {
    ASYNC_F_FREE = 0,      /* in a cache or the slab's free list */
    ASYNC_F_RUNNING,       /* a worker runs it */
    ASYNC_F_PARKING,       /* its task is switching away to wait */
    ASYNC_F_PARKED,        /* switched away; a wake makes it RUNNABLE */
    ASYNC_F_WOKEN,         /* woken while PARKING: its lander requeues it */
    ASYNC_F_RUNNABLE,      /* in a run queue */
    ASYNC_F_TBLOCK,        /* waits on its worker's parker (no stack to switch to) */
};
/* The edges of the fiber state machine (switch.c's opening comment lists
 * them, with who takes each): `from -> to` is one of them. */
static inline bool async__fiber_edge(uint32_t from, uint32_t to)
{
#define ASYNC_FE(s) (1u << ASYNC_F_##s)
    static const unsigned char next[] = {
        [ASYNC_F_FREE]     = ASYNC_FE(RUNNING),
        [ASYNC_F_RUNNING]  = ASYNC_FE(PARKING) | ASYNC_FE(RUNNABLE) | ASYNC_FE(FREE),
        [ASYNC_F_PARKING]  = ASYNC_FE(RUNNING) | ASYNC_FE(PARKED) | ASYNC_FE(WOKEN) |
                             ASYNC_FE(TBLOCK),
        [ASYNC_F_PARKED]   = ASYNC_FE(RUNNABLE),
        [ASYNC_F_WOKEN]    = ASYNC_FE(RUNNABLE) | ASYNC_FE(PARKING) | ASYNC_FE(RUNNING),
        [ASYNC_F_RUNNABLE] = ASYNC_FE(RUNNING),
        [ASYNC_F_TBLOCK]   = ASYNC_FE(RUNNING),
    };
#undef ASYNC_FE
    return from < sizeof next && (next[from] >> to & 1u);
}
/* Move a fiber to state `to` with a plain store; in the checked build the
 * store is an exchange and the edge it took is asserted. */
#if ASYNC_CHECKS
#  define ASYNC_FIBER_SET(f, to, mo)                                         \
    do {                                                                     \
        uint32_t async_from_ = atomic_exchange_explicit(&(f)->state, (to), (mo)); \
        ASYNC_ASSERT(async__fiber_edge(async_from_, (to)));                  \
    } while (0)
#else
#  define ASYNC_FIBER_SET(f, to, mo) atomic_store_explicit(&(f)->state, (to), (mo))
#endif

/* One task run on a fiber, as the dump sees it (dump.c): the record's
 * address (the task id, never dereferenced through here), its function and
 * its pool. Runs nest (an inline run); the first ASYNC_DUMP_NEST are kept. */
#define ASYNC_DUMP_NEST 4
struct async_run_note {
    _Atomic uintptr_t  task;
    _Atomic uintptr_t  fn;
    struct async_pool *_Atomic pool;
};
/* What a blocked call waits on: set by the call just before async__wait
 * (async__wait_note), cleared by async__wait when it returns. */
enum {
    ASYNC_W_NONE = 0,
    ASYNC_W_FUTURE,     /* obj: the awaited task's record (its id) */
    ASYNC_W_PROMISE,    /* obj: the promise's record */
    ASYNC_W_ANY,        /* future_wait_any; arg: how many futures */
    ASYNC_W_CHAN,       /* obj: the channel; arg: ASYNC_W_SEND or _RECV */
    ASYNC_W_SELECT,     /* arg: how many cases */
    ASYNC_W_SLEEP,      /* async_sleep, async_sleep_until */
};
enum { ASYNC_W_RECV = 0, ASYNC_W_SEND = 1 };
struct async_wait_note {
    _Atomic uint32_t  kind;       /* ASYNC_W_*; stored last (release) */
    _Atomic uint32_t  arg;
    _Atomic uintptr_t obj;
    _Atomic int64_t   since;      /* async__now_coarse() when it began */
    _Atomic int64_t   deadline;   /* ASYNC_FOREVER: none */
};

struct async_fiber {
    void *_Atomic       next;           /* run-queue / cache link; first, as
                                           in struct future */
    _Atomic uint32_t    state;          /* ASYNC_F_* */
    uint32_t            id;             /* wake-target id; immutable */
    struct async_frame *frame;          /* innermost task running here */
    struct async_defer *defers;         /* this fiber's defer stack */
    size_t              ndefers, capdefers;
    char               *lo;             /* usable stack [lo, lo + size); NULL: */
    size_t              size;           /*   unknown (a thread not yet asked) */
    struct async_pool  *pool;           /* whose scheduler runs it; set by the
                                           worker that takes it from a cache */
    struct async_parker *tparker;       /* TBLOCK: the parker to wake */
    struct async_ctx    ctx;
    struct async_stack_class *cls;      /* NULL for a thread's own fiber */
    uint64_t           *canary;         /* checked at every switch-out, or NULL */
    void               *tsan;           /* ThreadSanitizer fiber */
    void               *asan_fake;      /* AddressSanitizer fake-stack save */
    char               *lsan_lo;        /* LeakSanitizer root region of a */
    size_t              lsan_size;      /*   parked fiber (switch.c) */
    unsigned            vg_id;          /* valgrind stack id */
    bool                is_stack;       /* a stack fiber (not a thread's) */
    /* What async_dump and the watchdog read (dump.c), from any thread, with
     * no lock: written only by whoever runs on this fiber, with relaxed
     * stores (depth and wait.kind with release, after the fields they
     * publish); read with acquire, so a reader sees a whole run or wait at
     * least as new as the depth or kind it read, and at worst a mix of that
     * one and a later one (a racy snapshot; the record is never read
     * through these, so a stale id is only a stale number). */
    _Atomic unsigned    depth;          /* runs nested on this fiber */
    struct async_run_note runs[ASYNC_DUMP_NEST];   /* the outermost ones */
    struct async_wait_note wait;        /* the innermost run's wait */
};

/* Per-thread state. Read it only through async__tls_get() after anything
 * that may have switched fibers: a task can resume on another thread, and
 * the compiler may keep a thread-local's address in a register across a
 * call (it assumes the thread never changes inside a function). */
struct async_tls {
    struct async_fiber  *fiber;   /* the fiber running now (&self when none) */
    struct async_fiber   self;    /* the thread's own stack as a fiber */
    struct async_worker *worker;  /* set on pool worker threads */
    struct async_parker *parker;  /* lazily allocated */
    struct future       *cache;   /* free records of standard size */
    unsigned             ncache;
    struct async_rblock *block;   /* the block it carves records from, and */
    unsigned             carved;  /*   its slots taken (recmem.c); NULL:
                                     none, carve from a new one */
    uint64_t             rng;     /* xorshift state, lazily seeded */
    int64_t              spin_ns; /* adaptive spin budget (block.c); 0: unset */
    uint32_t             spin_ps; /* picoseconds per spin round, measured
                                     (block.c); 0: not yet */
    uint32_t             spin_calib; /* spins until the next measurement */
    uint16_t             slot_credit; /* outside submissions that may still
                                         try a pool's outside slot (submit.c) */
    uint16_t             slot_probe;  /* outside submissions since the last try */
    uintptr_t            gave;        /* the word (fiber | tag) this thread
                                         (not a worker) last put in an
                                         outside fiber slot, and that slot */
    struct async_xslot  *gave_slot;   /*   (switch.c); 0: none */
    unsigned             puts;        /* its puts into outside slots (either
                                         kind), counted for their tags */
    /* The list of threads whose own fiber has run a task (tls.c), for the
     * dump: guarded by the list's lock; `listed` is the thread's own. */
    struct async_tls    *list_next, *list_prev;
    bool                 listed;
#if ASYNC_CHECKS
    unsigned             nheld;   /* short locks this thread holds, and */
    unsigned             nrec;    /*   how many of them are in held[] */
    const void          *held[8]; /*   (async__lock, park.c) */
#endif
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

struct async_tls *async__tls_addr(void);   /* tls.c: an opaque call */
/* The calling thread's state, read anew at every call: the asm is volatile
 * and clobbers memory, so no compiler keeps its result across a switch. */
#if defined(__x86_64__) && defined(__GNUC__)
static inline struct async_tls *async__tls_get(void)
{
    struct async_tls *p;
    __asm__ __volatile__("movq %%fs:0, %0\n\taddq async__tls@gottpoff(%%rip), %0"
                         : "=r"(p) : : "memory");
    return p;
}
#else
static inline struct async_tls *async__tls_get(void)
{
    return async__tls_addr();
}
#endif

/* The fiber the caller runs on (its thread's own when it runs none). */
static inline struct async_fiber *async__fiber_self(void)
{
    struct async_tls *t = async__tls_get();
    return ASYNC_LIKELY(t->fiber != NULL) ? t->fiber : &t->self;
}


/* The list of threads whose own fiber runs or has run a task (thread mode,
 * inline runs), so that the dump reaches their tasks: a thread joins it
 * with async__tls_list_add (first run) and leaves it at exit (record.c's
 * exit hook calls async__tls_list_remove). async__tls_each calls fn for
 * each listed thread's own fiber under the list's lock (a leaf), which
 * keeps every listed thread's state alive meanwhile: fn must be short and
 * take no lock. */
void async__tls_list_add(struct async_tls *t);
void async__tls_list_remove(struct async_tls *t);
void async__tls_each(void (*fn)(struct async_fiber *f, void *ctx), void *ctx);

/* -------------------------------------------------------- describe.c */

/* The words every log line of the library starts with, so that a line
 * names its pool and, where there is one, its task: "pool NAME" or "pool
 * NAME task 0xID fn SYMBOL". NAME is the pool's name (NULL pool: "-"),
 * with blanks and control characters made '_' so that the line splits on
 * blanks; the task id is the record's address; SYMBOL the function's name
 * as dladdr finds it (a program linked with -rdynamic, or a shared
 * object's exported function), else its address. task 0: no task. Returns
 * what snprintf returns. */
int async__describe(char *buf, size_t size, const struct async_pool *pool,
                    uintptr_t task, uintptr_t fn);
/* The same from the pool's name (NULL: no pool). */
int async__describe_named(char *buf, size_t size, const char *pool_name, uintptr_t task,
                          uintptr_t fn);
/* The function's name as dladdr finds it, else its address in hex. */
void async__symbol(char *buf, size_t size, uintptr_t fn);
/* Write "DESCRIBE: MESSAGE" through the pool's log hook. */
void async__log_task(struct async_pool *pool, uintptr_t task, uintptr_t fn,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

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
struct async_parker *async__parker_self_slow(void);   /* NULL: ENOMEM */
struct async_parker *async__parker_new(void);    /* for a thread not yet started */
void async__parker_put(struct async_parker *p);  /* its thread exits */
uint32_t async__parker_id(const struct async_parker *p);
/* Sleeps until unparked or the deadline (ASYNC_FOREVER: none). May return
 * spuriously; the caller re-checks its condition. */
void async__park(struct async_parker *p, int64_t deadline);
void async__unpark(struct async_parker *p);

static inline struct async_parker *async__parker_self(void)
{
    struct async_parker *p = async__tls_get()->parker;
    return ASYNC_LIKELY(p != NULL) ? p : async__parker_self_slow();
}

/*
 * Wake targets: a parker (low bit 0) or a stack fiber (low bit 1), both
 * type-stable. A record that runs stores its runner's 32-bit id (a record
 * has room for 32 bits, not 64), and future_cancel turns it back into a
 * target through this registry. Ids are never reused; 0 is "none".
 */
#define ASYNC_TARGET_FIBER ((uintptr_t)1)
/* A third kind of target, never registered: a callback (struct async_call,
 * low bits 10). Waking it calls fn, on the waker's thread, with no lock held
 * (the future's completer and the timer heap call it after unlocking). Its
 * owner keeps it alive until the call has returned (compose.c). */
#define ASYNC_TARGET_CALL ((uintptr_t)2)
struct async_call {
    void (*fn)(struct async_call *self);
};
uint32_t  async__target_register(uintptr_t target);   /* 0 when out of memory */
uintptr_t async__target_lookup(uint32_t id);          /* 0 for 0 */
/* Every registered target, for a cancelling shutdown that must reach every
 * blocked call: fn is called for each (spurious wakes are harmless). */
void async__target_each(void (*fn)(uintptr_t target));
/* The same with a context, for the dump (which reads stack fibers through
 * the registry: they are type-stable, so reading one is always safe). */
void async__target_walk(void (*fn)(uintptr_t target, void *ctx), void *ctx);

/*
 * The short lock: a futex mutex (spin briefly, then sleep) for sections of a
 * few instructions; never held across user code or a park. Zero-initialised
 * means unlocked.
 */
typedef struct { _Atomic uint32_t word; } async_lock_t;
void async__lock_slow(async_lock_t *l);
void async__unlock_slow(async_lock_t *l);
/*
 * Checked builds track which short locks each thread holds (in its
 * struct async_tls, read through async__tls_get: a lock is never held across
 * a switch, so the thread cannot change in between): a function whose name
 * says `_locked` asserts that the calling thread holds the lock, an unlock
 * that the thread holds, and a fiber switch or a park that it holds none.
 * The first 8 are recorded; beyond them (select locks every channel it
 * waits on) ownership falls back to "the word is nonzero".
 */
#if ASYNC_CHECKS
static inline void async__held_add(const async_lock_t *l)
{
    struct async_tls *t = async__tls_get();
    if (t->nrec < sizeof t->held / sizeof t->held[0])
        t->held[t->nrec++] = l;
    t->nheld++;
}
static inline void async__held_del(const async_lock_t *l)
{
    struct async_tls *t = async__tls_get();
    for (unsigned i = 0; i < t->nrec; i++)
        if (t->held[i] == l) {
            t->held[i] = t->held[--t->nrec];
            break;
        }
    /* an unlock of a lock this thread does not hold */
    ASYNC_ASSERT(t->nheld > t->nrec);
    t->nheld--;
}
/* Does the calling thread hold l? */
static inline bool async__lock_mine(const async_lock_t *l)
{
    struct async_tls *t = async__tls_get();
    for (unsigned i = 0; i < t->nrec; i++)
        if (t->held[i] == l)
            return true;
    return t->nheld > t->nrec && atomic_load_explicit(&l->word, memory_order_relaxed) != 0;
}
/* Short locks the calling thread holds (0 before a switch or a park). */
static inline unsigned async__locks_held(void)
{
    return async__tls_get()->nheld;
}
#else   /* named by asserts, which are not evaluated here */
static inline void async__held_add(const async_lock_t *l) { (void)l; }
static inline void async__held_del(const async_lock_t *l) { (void)l; }
static inline bool async__lock_mine(const async_lock_t *l) { (void)l; return true; }
static inline unsigned async__locks_held(void) { return 0; }
#endif
static inline void async__lock(async_lock_t *l)
{
    uint32_t zero = 0;
    if (!atomic_compare_exchange_strong_explicit(&l->word, &zero, 1,
            memory_order_acquire, memory_order_relaxed))
        async__lock_slow(l);
    async__held_add(l);
}
static inline void async__unlock(async_lock_t *l)
{
    ASYNC_ASSERT(atomic_load_explicit(&l->word, memory_order_relaxed) != 0);
    async__held_del(l);
    if (atomic_exchange_explicit(&l->word, 0, memory_order_release) != 1)
        async__unlock_slow(l);
}

/* ------------------------------------------------------------ fiber.c */

/* The switch (ctx/switch_*.S, or ucontext). A new context starts in fn with
 * the transfer value of the switch that first enters it; fn never returns. */
typedef void (*async_ctx_fn)(void *transfer);
void *async__ctx_switch(struct async_ctx *from, struct async_ctx *to, void *transfer);

/* Make a free fiber start afresh in fn. */
void async__fiber_reset(struct async_fiber *f, async_ctx_fn fn);
/* Switch from the running fiber `from` to `to` (which must not be running),
 * telling the sanitizers; `leaving` when `from` will never be resumed (it is
 * released by whoever lands). Returns the transfer of the switch that
 * resumes `from`. */
void *async__fiber_switch(struct async_fiber *from, struct async_fiber *to,
                          void *transfer, bool leaving);
/* Start loading what resuming the parked fiber f reads first: the frames
 * it returns through, from its saved stack pointer up (about a kilobyte
 * when it parked in the library). Its stack went cold when it parked; with
 * thousands parked, each of those frames' lines was a cache miss of its
 * own, one after the other (each return waits for its address to load),
 * and the prefetches overlap them. */
static inline void async__fiber_prefetch(const struct async_fiber *f)
{
#if !ASYNC_CTX_UCONTEXT
    const char *sp = f->ctx.sp, *top = f->lo + f->size;
    if (sp < f->lo || sp >= top)
        return;
    for (const char *p = sp; p < top && p < sp + 2048; p += 64)
        __builtin_prefetch(p, 1, 3);
#else
    (void)f;   /* the saved context is in the ucontext */
#endif
}
/* First thing after landing on a fiber (after async__fiber_switch returns,
 * or at the start of a new fiber's function). */
void async__fiber_landed(struct async_fiber *self);
/* Abort, naming the task and the stack size, if the canary of f is gone or
 * its stack pointer is out of bounds. */
void async__fiber_check(struct async_fiber *f);
/* Bytes of stack left below the caller's frame on the running fiber;
 * SIZE_MAX when unknown. */
size_t async__stack_room(void);
/* Inline runs need this much room (else the waiter parks instead). */
#define ASYNC_INLINE_ROOM ((size_t)64 * 1024)

/* ----------------------------------------------------------- stacks.c */

/* Stack sizes: ASYNC_STACK_DEFAULT for config 0; below ASYNC_STACK_MIN or
 * above ASYNC_STACK_MAX is EINVAL. */
#define ASYNC_STACK_DEFAULT ((size_t)256 * 1024)
#define ASYNC_STACK_MIN     ((size_t)16 * 1024)
#define ASYNC_STACK_MAX     ((size_t)1 << 30)
/* A class of stacks of one size (one per distinct size in use). */
struct async_stack_class *async__stack_class(size_t size);   /* NULL: ENOMEM */
size_t async__stack_class_size(const struct async_stack_class *c);
/* Up to `want` (at most ASYNC_FIBER_BATCH) free stack fibers of c into out,
 * each with its top page resident; returns how many (0: no memory, or no
 * more address space). They are FREE: async__fiber_reset starts one. */
#define ASYNC_FIBER_BATCH 16u
size_t async__fiber_take(struct async_stack_class *c, struct async_fiber **out, size_t want);
/* Give a fiber back (state FREE); its pages may be returned to the kernel. */
void async__fiber_release(struct async_fiber *f);
/* Whether c holds more free stacks than it keeps resident (a relaxed read);
 * hand all but those back to the kernel (a worker that stayed idle: a burst
 * is over). */
bool async__stacks_trimmable(const struct async_stack_class *c);
void async__stacks_trim(struct async_stack_class *c);
/* Stacks allocated (in use or cached) across every class. */
size_t async__stacks_allocated(void);
/* Whether async__fiber_take makes pages resident (false once the kernel
 * refused, and under valgrind). */
bool async__stacks_populating(void);
/* Tests: the decay's period (stacks.c, "Recycling"). */
void async__test_trim_period(int64_t ns);

/* ------------------------------------------------------------- wait.c */

/*
 * The waiter: one per blocked call, on the caller's stack. It is published on
 * one or more objects through wnodes (one per object: a future's waiter list,
 * a channel's send or receive queue). Taking it is two steps:
 *   claim  the first object to win the CAS on `claim` (under its own lock)
 *          owns the waiter; the waiter itself may claim it first after a
 *          failed wait (async__waiter_abandon), and then nobody takes it;
 *   fire   the owner stores the claim's value in `fired` once it is done
 *          with the waiter's buffers, and then wakes it. From that store on
 *          the waiter may return, and its caller may free the object.
 * A future, kept alive by its references, claims and fires in one step under
 * its lock (async__waiter_fire). A channel, which its users may free the
 * moment a hand-off is visible, claims and copies under its lock and fires
 * only after its unlock (chan.c, "Freeing"). Objects touch their wnodes only
 * under their own lock, so once the waiter has unlinked itself from every
 * object, or has been fired, nothing else touches it.
 */
struct async_waiter {
    uintptr_t         target;     /* whom to wake: a parker or a fiber
                                     (ASYNC_TARGET_FIBER); immutable while
                                     published */
    struct async_fiber *self;     /* the fiber that waits (a thread's own
                                     for a parker), whose wait note the dump
                                     reads; NULL for a callback target */
    _Atomic uintptr_t claim;      /* 0 while open; set once, by a CAS: the
                                     taker's value, or ASYNC_WAITER_ABANDONED */
    /* `fired` sits alone on its cache line, whatever the waiter's own
     * alignment (a waiter lives on stacks and inside records, so it cannot
     * ask for 64): a thread spins reading it (block.c), and the taker's
     * earlier stores (the claim, the node, the element) then neither pull
     * the line from under the spinner nor wait for its reads. */
    char              pad0[ASYNC_CACHELINE - sizeof(uintptr_t)];
    _Atomic uintptr_t fired;      /* 0 until the taker is done; then the
                                     claim's value (release store), read with
                                     acquire by the waiting side */
    char              pad1[ASYNC_CACHELINE - sizeof(uintptr_t)];
};
#define ASYNC_WAITER_ABANDONED UINTPTR_MAX

struct async_wnode {
    struct async_wnode  *next, *prev;  /* guarded by the owning object's lock */
    struct async_waiter *w;            /* immutable while linked */
    struct async_wnode  *same;         /* select: the next wnode of this
                                          waiter on the same channel (a
                                          ring), or NULL; immutable */
    struct async_wqueue *queue;        /* select: the queue it is on;
                                          immutable */
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

/* Wake a target: unpark a thread, or make a parked fiber runnable (through
 * async__ready_hook). Type-stable targets make a late call a spurious wake. */
void async__wake(uintptr_t target);
extern void (*_Atomic async__ready_hook)(struct async_fiber *f);

/* A wait by the caller, right now: on its fiber when it runs on a stack
 * fiber, else on its thread's parker (0: no memory for one, ENOMEM). */
static inline int async__waiter_init(struct async_waiter *w)
{
    struct async_fiber *f = async__fiber_self();
    w->self = f;
    w->target = f->is_stack ? (uintptr_t)f | ASYNC_TARGET_FIBER
                            : (uintptr_t)async__parker_self();
    atomic_init(&w->claim, 0);
    atomic_init(&w->fired, 0);
    return w->target ? 0 : ENOMEM;
}

/* A blocking call says what it waits on, just before async__wait (which
 * clears it): a few plain stores on the waiting fiber (dump.c reads them). */
static inline void async__wait_note(struct async_waiter *w, uint32_t kind, const void *obj,
                                    uint32_t arg, int64_t deadline)
{
    struct async_wait_note *n = &w->self->wait;
    atomic_store_explicit(&n->obj, (uintptr_t)obj, memory_order_relaxed);
    atomic_store_explicit(&n->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&n->deadline, deadline, memory_order_relaxed);
    atomic_store_explicit(&n->since, async__now_coarse(), memory_order_relaxed);
    atomic_store_explicit(&n->kind, kind, memory_order_release);
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

/* Under the owner's lock: claim the waiter with value (nonzero, not
 * ASYNC_WAITER_ABANDONED). true when this call won it. */
static inline bool async__waiter_claim(struct async_waiter *w, uintptr_t value)
{
    /* seq_cst: with the wake's seq_cst read of a fiber's state, a Dekker
     * pair against the fiber's PARKING store and its read of `claim` */
    uintptr_t zero = 0;
    return atomic_compare_exchange_strong_explicit(&w->claim, &zero, value,
            memory_order_seq_cst, memory_order_relaxed);
}

/* The claimer is done with the waiter: fire it with its claim's value. The
 * caller must then async__wake(w->target), read before this store, since a
 * fired waiter may return at once. */
static inline void async__waiter_done(struct async_waiter *w, uintptr_t value)
{
    /* release: publishes the taker's copies to the waiter's acquire read.
     * The Dekker pair against a fiber's PARKING store is the claim's
     * seq_cst CAS with the wake's seq_cst read of the fiber's state (a
     * fiber parks only while unclaimed: block.c, wait_fiber); a thread's
     * parker keeps a wake that comes before its park. */
    atomic_store_explicit(&w->fired, value, memory_order_release);
}

/* Under the owner's lock: claim and fire in one step. true when this call
 * won; the caller must then wake the target (read before the call). */
static inline bool async__waiter_fire(struct async_waiter *w, uintptr_t value)
{
    if (!async__waiter_claim(w, value))
        return false;
    async__waiter_done(w, value);
    return true;
}

/* After a failed wait: claim the waiter for itself, so that no object takes
 * it any more. false when an object claimed it first: the operation happened
 * (or is happening), and the waiter must wait until `fired` before it
 * returns (async__waiter_await). */
static inline bool async__waiter_abandon(struct async_waiter *w)
{
    uintptr_t zero = 0;
    return atomic_compare_exchange_strong_explicit(&w->claim, &zero,
            ASYNC_WAITER_ABANDONED, memory_order_acq_rel, memory_order_acquire);
}

/* A claimed waiter waits for its claimer to fire it: a window of a few
 * instructions on a running thread (the claimer holds no wait of its own
 * between the claim and the fire), so it spins, then yields. Returns the
 * claim's value. */
uintptr_t async__waiter_await(struct async_waiter *w);

/* A small set of targets to wake once a lock is released. */
struct async_wakeset {
    unsigned  n;
    uintptr_t t[15];
};
void async__wakeset_add(struct async_wakeset *ws, uintptr_t target);
void async__wakeset_flush(struct async_wakeset *ws);

/* ---------------------------------------------------- record.c, task.c */

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

/* ASYNC_KIND_THEN: a task (future_then) that may run only once another
 * future is done: never claimed by a waiter's inline run, so nothing runs
 * it before compose.c has queued it. Otherwise a task like any other. */
enum { ASYNC_KIND_TASK = 0, ASYNC_KIND_PROMISE = 1, ASYNC_KIND_THEN = 2 };

/* Bits of a record's `flags` (set with atomic fetch_or, never cleared while
 * the record lives; zero when the record is made). */
enum {
    ASYNC_RF_READ  = 1u << 0,   /* the outcome was read (unread failures) */
    ASYNC_RF_SCOPE = 1u << 1,   /* the task belongs to a scope, or opened one */
    ASYNC_RF_TIMER = 1u << 7,   /* an async_after's record (compose.c): when a
                                   handle is released leaving only the timer's
                                   reference on a pending record, the release
                                   calls async__orphan_hook, which cancels it */
    ASYNC_RF_QUEUED = 1u << 6,  /* checked builds: the task entered a run
                                   queue (once in its life; sched.c) */
};

/*
 * The record behind a future_t: one allocation per submission (argument copy
 * included), recycled through a per-thread cache. 72 bytes on LP64 (the
 * argument and the outcome share a word: one is dead before the other lives).
 *
 * Reference counting: refs = handles (the submitter's, a promise's own hold,
 * each promise_future handle) + 1 while the record sits in a queue. The last
 * drop frees it.
 */
struct future {
    void *_Atomic    next;        /* injection-queue link (queue-owned), or
                                     the record cache's; first, as in
                                     struct async_fiber (sched.c's queues
                                     link both through it) */
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
    uint8_t          size_class;  /* 0: its own malloc; else a slot of a
                                     block: its index + 1 (recmem.c) */
    _Atomic uint8_t  flags;       /* ASYNC_RF_* bits, set with fetch_or */
    _Atomic uint32_t runner;      /* wake-target id of whoever runs it (its
                                     fiber, or its thread's parker): stored
                                     when the run starts, read by
                                     future_cancel to wake a blocked call */
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
#if ASYNC_CHECKS
    /* the checked build's (checks.c): set by record_init, poisoned when the
     * record is freed; 88 bytes then */
    uint32_t         magic;       /* ASYNC_MAGIC_FUTURE, or _FREED */
    uint32_t         gen;         /* incarnations of this memory as a record */
    _Atomic uint32_t handles;     /* future handles its user holds */
    _Atomic uint32_t phold;       /* a promise: 1 until promise_free */
#endif
    /* async_submit's copy of the argument follows, at ASYNC_ARG_OFFSET (no
     * flexible array member: its alignment would pad every record to 80) */
};
/* Every record starts at a multiple of this: malloc's alignment (16 on
 * x86-64 and AArch64), kept by recmem.c's blocks, leaves the low bits free
 * for the outside slot's tag (sched_internal.h). */
#define ASYNC_RECORD_ALIGN ((size_t)_Alignof(max_align_t))
#define ASYNC_ARG_OFFSET \
    ((sizeof(struct future) + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1))

/* The checked build's test of a future handle at the top of a public call. */
#if ASYNC_CHECKS
#  define ASYNC_CHECK_FUTURE(f, call)                                        \
    do {                                                                     \
        if (ASYNC_UNLIKELY((f)->magic != ASYNC_MAGIC_FUTURE))                \
            async__misuse(call, "future used after it was freed", (f));      \
    } while (0)
#else
#  define ASYNC_CHECK_FUTURE(f, call) ((void)0)
#endif

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

static inline struct future *async__current_task(void)
{
    struct async_frame *fr = async__fiber_self()->frame;
    return fr ? fr->task : NULL;
}

/*
 * What sits at the start of every struct async_pool (sched_internal.h), so that the
 * layers below the scheduler (the cancellation check, task counting and the
 * panic log) read it inline without calling up.
 */
#define ASYNC_PH_CANCELLING 3
enum {
    ASYNC_C_STARTED, ASYNC_C_SUCCEEDED, ASYNC_C_FAILED, ASYNC_C_CANCELLED,
    ASYNC_C_SUBMITTED, ASYNC_C_STOLEN, ASYNC_C_PARKED, ASYNC_C_RESUMED,
    ASYNC_NCOUNTERS
};
struct async_pool_head {
    _Atomic int   phase;                      /* PH_* (sched_internal.h) */
    char          pad0[ASYNC_CACHELINE - sizeof(int)];
    _Atomic uint64_t ext_c[ASYNC_NCOUNTERS];  /* counts of non-worker threads */
    void        (*log)(void *ctx, const char *line);   /* immutable */
    void         *log_ctx;
    char          name[16];
};

static inline bool async__pool_phase_cancelling(const struct async_pool *pool)
{
    const struct async_pool_head *h = (const struct async_pool_head *)(const void *)pool;
    return atomic_load_explicit(&((struct async_pool_head *)(uintptr_t)h)->phase,
                                memory_order_acquire) == ASYNC_PH_CANCELLING;
}

/* Is cancellation requested for the task running here (its own flag, or an
 * ASYNC_CANCEL shutdown of its pool)? */
static inline bool async__cancel_requested(void)
{
    struct future *f = async__current_task();
    if (!f)
        return false;
    return atomic_load_explicit(&f->cancel, memory_order_acquire) ||
           (f->pool && async__pool_phase_cancelling(f->pool));
}

/* Write one line through the pool's log hook (NULL pool or hook: stderr). */
void async__pool_log(struct async_pool *pool, const char *line);
/* Write one line about a task of pool, which may have been destroyed
 * already: "DESCRIBE: what" through its hook if it is alive, else to stderr
 * naming the pool "(destroyed)" (dump.c sets it when it lists its first
 * pool; it never touches a freed pool). */
extern void (*_Atomic async__live_log_hook)(struct async_pool *pool, uintptr_t task,
                                           uintptr_t fn, const char *what);

/* The outcome of f was read (future_get, future_error, select, future_then):
 * a failure of f is then not reported as unread when f goes. */
static inline void async__future_mark_read(struct future *f)
{
    /* relaxed: the reader's handle drop (acq_rel on refs) publishes it to
     * whoever drops the last reference and checks it */
    if (!(atomic_load_explicit(&f->flags, memory_order_relaxed) & ASYNC_RF_READ))
        atomic_fetch_or_explicit(&f->flags, ASYNC_RF_READ, memory_order_relaxed);
}

/* ----------------------------------------------------------- recmem.c */

/* Memory for a record with arg_size bytes of copied argument after it:
 * from the thread's cache, the depot, or its block for the standard size
 * (arg_size 0); its own malloc otherwise. Only size_class (and gen) set.
 * NULL with errno ENOMEM. */
struct future *async__record_alloc(size_t arg_size);
/* A dead record's memory: to the thread's cache, or back where it came
 * from. */
void async__record_free(struct future *f);
/* Make sure the thread-exit hook will give back this thread's records,
 * defer stack and parker. */
void async__tls_register(void);
/* Test hooks: blocks alive now; slots per block; the block of f (NULL for
 * its own malloc); give every record in the depot back. */
size_t   async__test_record_blocks(void);
unsigned async__test_records_per_block(void);
void    *async__test_record_block(struct future *f);
void     async__test_record_depot_drain(void);

/* ----------------------------------------------------------- record.c */

/* A new record for fn(arg), arg_size bytes copied when > 0, refs = 2 (the
 * handle and the queue). NULL with errno ENOMEM. */
struct future *async__task_new(struct async_pool *pool, async_fn fn, const void *arg,
                               size_t arg_size);
struct future *async__promise_new(void);
/* Drop one reference; frees the record (and its message) on the last. */
void async__record_release(struct future *f);
/* The dump's walk of the run queues (dump.c, sched.c): between begin and
 * end, a record whose last reference drops is held, not freed or reused,
 * so a record read from a queue after begin stays readable until end (the
 * proof is at async__pool_each_queued). Walks may overlap; the last end
 * frees what was held. */
void async__record_walk_begin(void);
void async__record_walk_end(void);
/* Test hook: records held now. */
size_t async__test_records_held(void);
/* Set by compose.c: cancels an async_after nobody holds (ASYNC_RF_TIMER). */
extern void (*_Atomic async__orphan_hook)(struct future *f);
static inline void async__record_retain(struct future *f)
{
    uint32_t old = atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    ASYNC_ASSERT(old != 0 && old != UINT32_MAX);   /* a dead record, or a wrap */
}
/* CAS PENDING -> RUNNING: true when the caller now owns the run. */
static inline bool async__task_claim(struct future *f)
{
    uint32_t s = ASYNC_S_PENDING;
    return atomic_compare_exchange_strong_explicit(&f->state, &s, ASYNC_S_RUNNING,
            memory_order_acquire, memory_order_relaxed);
}
/* Run a claimed task on this fiber: frame, defers, panic, counting,
 * completion. */
void async__task_run(struct future *f);
/* Complete a claimed (RUNNING or COMPLETING) record: store the outcome, then
 * the final state, then wake the waiters. After it, the caller must not touch
 * f unless it holds a reference. */
void async__future_complete(struct future *f, uint32_t final, int err, void *value);
/* CAS PENDING -> CANCELLED for a task nobody ran; wakes (and touches nothing
 * of the pool). true when this call cancelled it. */
bool async__future_cancel_pending(struct future *f);
/* Scopes (scope.c) are reached from below through these hooks, set before
 * the first record gets ASYNC_RF_SCOPE and called only for records that
 * carry it: fail when a scoped task panicked (before its future completes),
 * cancel when future_cancel asks a running scoped task to stop (to cancel
 * the scopes it opened). */
extern void (*_Atomic async__scope_fail_hook)(struct future *f, int err);
extern void (*_Atomic async__scope_cancel_hook)(struct future *f);
/* Wait until f is done, whatever the caller's cancellation (future.c). 0,
 * or ENOMEM (no parker for this thread). */
int async__future_wait_uncancellable(struct future *f);
/* Format a failure message (NULL fmt: ""); never NULL: a static
 * "out of memory" string when allocation fails (sets *oom). */
char *async__format(const char *fmt, va_list ap, bool *oom);
bool  async__msg_is_static(const char *msg);
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
int  async__deque_push(struct async_deque *d, void *item);  /* 0 | ENOMEM */
void *async__deque_pop(struct async_deque *d);              /* owner */
void *async__deque_steal(struct async_deque *d);            /* any thread */
bool async__deque_empty(struct async_deque *d);
void *async__deque_peek_bottom(struct async_deque *d);      /* owner */
void async__deque_each(struct async_deque *d,                /* any thread: */
                       void (*fn)(void *item, void *ctx), void *ctx);   /* the dump */

/* ------------------------------------------------------------ sched.c */

/* A worker: its thread, its deque, its counters. Defined here so that the
 * hot-path counting stays inline. */
struct async_worker {
    struct async_deque   dq;
    struct async_pool   *pool;        /* immutable */
    struct async_parker *parker;      /* immutable while the thread lives */
    struct async_fiber *_Atomic runnext;  /* a fiber to run next (Go's runnext);
                                         the owner and thieves exchange it */
    struct async_fiber  *cache;       /* owner: free stack fibers */
    unsigned             ncache;      /* owner */
    _Atomic unsigned     turns;       /* owner writes at every loop turn and
                                         park; a thief that sees it and
                                         runnext unchanged for a while may
                                         take runnext */
    unsigned             streak;      /* owner: run-next picks in a row */
    unsigned             tick;        /* owner: loop turns, for fairness */
    struct async_worker *peek_v;      /* thief: the runnext it last saw */
    struct async_fiber  *peek_f;
    unsigned             peek_turns;
    int64_t              peek_at;
    uintptr_t            xpeek;       /* owner: the outside fiber slot's word */
    int64_t              xpeek_at;    /*   it last saw, and since when */
    uintptr_t            speek;       /* owner: the same for the outside */
    int64_t              speek_at;    /*   slot's held record */
    pthread_t            thread;      /* guarded by pool->lock */
    bool                 has_thread;  /* guarded by pool->lock */
    bool                 dead;        /* thread exited; guarded by pool->lock */
    bool                 searching;   /* owner; the waker's while idle */
    bool                 idle;        /* guarded by pool->idle_lock */
    struct async_worker *idle_next;   /* guarded by pool->idle_lock */
    unsigned             index;       /* immutable */
    struct async_fiber  *thread_fiber;/* the thread's own fiber (goroutine
                                         mode: where the thread returns to) */
    _Atomic uint64_t     c[ASYNC_NCOUNTERS]; /* owner writes; readers sum */
};

static inline void async__worker_count(struct async_worker *w, int c)
{
    atomic_store_explicit(&w->c[c],
        atomic_load_explicit(&w->c[c], memory_order_relaxed) + 1, memory_order_relaxed);
}

/* Count an event of pool: in the calling worker's own counters when it is
 * one of pool's workers, else with an atomic add on the pool's shared ones. */
static inline void async__pool_count(struct async_pool *pool, int c)
{
    struct async_worker *w = async__tls_get()->worker;
    if (!pool)
        return;
    if (w && w->pool == pool)
        async__worker_count(w, c);
    else
        /* release: an inline runner's outside_running increment happens
         * before destroy's quiescence check sees its task finished (the
         * fence there acquires it); free on x86 */
        atomic_fetch_add_explicit(&((struct async_pool_head *)(void *)pool)->ext_c[c], 1,
                                  memory_order_release);
}

/* Queue a new record on its pool. 0, or ECANCELED (the pool is shutting down
 * and does not accept this submitter). On 0 the queue owns one reference. */
int  async__pool_submit(struct async_pool *pool, struct future *f);
/* The submitting pool for NULL: the default pool (NULL + errno on failure). */
struct async_pool *async__pool_resolve(struct async_pool *pool);
/*
 * The one wait loop. Returns 0 once w is fired, else ETIMEDOUT (the deadline
 * passed; EAGAIN is the caller's answer for deadline 0, which never gets
 * here), or ECANCELED (the calling task's cancellation was requested). On a
 * nonzero return the caller unlinks its wnodes under each object's lock and
 * then checks `fired` once more: a fire that won the race means the operation
 * happened, and its result stands.
 *
 * A fiber target parks the fiber (its worker runs other work); a parker
 * target spins briefly, then parks the thread, telling the pool that a worker
 * blocks (replacements, stats). It never runs other tasks.
 */
int async__wait(struct async_waiter *w, int64_t deadline);
/* As async__wait, but the caller's cancellation does not end it (it never
 * returns ECANCELED): for a scope's close, which waits for its tasks even
 * once it is cancelled. */
int async__wait_uncancellable(struct async_waiter *w, int64_t deadline);
/* Is the pool being cancelled (ASYNC_CANCEL shutdown)? */
bool async__pool_cancelling(const struct async_pool *pool);
/* The queue's reference to f is being dropped by a thread that did not run
 * it: count f as cancelled if it was (see pool.c on why the canceller does
 * not). The caller is a worker of f's pool or its destroyer. */
void async__pool_count_unrun(struct future *f);
/* A thread that is not a worker of pool has claimed one of its tasks and is
 * about to run it (in a cancelling pool too: the task then sees
 * async_cancelled()); async__pool_inline_end once it has finished. */
void async__pool_inline_begin(struct async_pool *pool);
/* Test hook: give the calling thread credit for n submissions through an
 * outside slot (at most what a take-back gives; runq.c, "The outside
 * slot"), as if it had just taken a task back. */
void async__test_slot_credit(unsigned n);
void async__pool_inline_end(struct async_pool *pool);
/* Pop the task f from the bottom of the calling worker's deque if it is
 * there (the fork/join fast path); true when the caller now owns the
 * queue's reference. */
bool async__pool_pop_local(struct future *f);
/* The caller, not a worker of pool, has claimed f (so pool lives): take f
 * back out of the pool's outside slot if it is still there; true when the
 * caller now owns the queue's reference, and no worker will meet f. */
bool async__pool_unslot(struct async_pool *pool, struct future *f);

/* --------------------------------------------------------- deadline.c */

/* An entry of the deadline thread's heap, embedded in its owner. fire is
 * called once, on that thread with no lock held, when `when` has passed,
 * unless async__deadline_del took the entry out first. */
#define ASYNC_DL_NONE SIZE_MAX
struct async_deadline {
    int64_t when;                              /* immutable while queued */
    size_t  idx;                               /* guarded by dl_lock */
    void  (*fire)(struct async_deadline *d);   /* immutable */
};
/* Queue d (idx ASYNC_DL_NONE), starting the thread if none runs. 0, ENOMEM,
 * or EAGAIN (no thread could be started). */
int  async__deadline_add(struct async_deadline *d);
/* Take d out if it is still queued: true when it was (it will not fire). */
bool async__deadline_del(struct async_deadline *d);

/* ------------------------------------------------------------ cycle.c */

/* The calling task is about to wait for f: publish that (and that the tasks
 * running it inline on its fiber wait for it), then look for the caller on
 * f's chain of waits. 0, or EDEADLK (nothing left published). Outside a task:
 * 0, nothing published. */
int  async__cycle_enter(struct future *f);
/* The wait published by async__cycle_enter has returned. */
void async__cycle_leave(void);
/* Does f's chain of waits lead back to a task on the caller's fiber?
 * Publishes nothing. */
bool async__cycle_closes(struct future *f);

/* Publish n (n->w, n->index set) on f's waiter list / take it off; under
 * f->lock. After linking, read f's state (seq_cst): the completer stores the
 * state and then reads the list, so one of the two sees the other. */
void async__future_link(struct future *f, struct async_wnode *n);
void async__future_unlink(struct future *f, struct async_wnode *n);
/* What future_get returns for a done future (value into *result, may be
 * NULL); reads the state with acquire. */
int async__future_outcome(struct future *f, void **result);

/* ---------------------------------------------------------- promise.c */

extern char async__broken_promise[];   /* "broken promise" */
int async__promise_cancel(struct future *f);   /* future_cancel on a promise */

#endif /* ASYNC_INTERNAL_H */
