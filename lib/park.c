/*
 * lib/park.c — how every blocking call of the library sleeps and wakes.
 *
 * Owns: the per-thread parker, the short lock, waiter queues, the one wait
 * loop (async__wait) and sleeping (async_sleep*).
 *
 * Design. A blocked caller builds a waiter on its own stack, publishes it on
 * the object it waits for (a future's list, a channel's queue, several for
 * select), then calls async__wait, which spins briefly and parks on the
 * calling thread's parker until the waiter is fired, the deadline passes or
 * the calling task is cancelled. Rejected: a mutex+condvar pair per object
 * (one futex word per sleeping thread is enough, and objects stay small), and
 * parking on a word inside the waiter (the waker could then touch a stack
 * frame that has already returned).
 *
 * The parker is a permit (Java's LockSupport, Rust's thread parker):
 *   state: EMPTY (0), NOTIFIED (1), PARKED (UINT32_MAX = EMPTY - 1).
 *   park:   fetch_sub(1): NOTIFIED -> EMPTY returns at once; EMPTY -> PARKED
 *           sleeps on the futex until state != PARKED, then swaps EMPTY.
 *   unpark: swap(NOTIFIED); if it was PARKED, futex_wake.
 *   The release in unpark's swap pairs with the acquire in park's.
 * Parkers are type-stable: allocated once, never freed, recycled through a
 * free list when their thread exits. A waker reads the parker of a waiter
 * before firing it and unparks it afterwards; if the waiter has returned, or
 * its thread exited and the parker went to another thread, the unpark is a
 * spurious wake, which every wait loop tolerates. No reference count needed.
 *
 * The short lock (async_lock_t): Drepper's futex mutex, states 0 unlocked,
 * 1 locked, 2 locked with sleepers; spins ~100 times before sleeping.
 *
 * Spinning: before parking, async__wait spins while fewer threads than CPUs
 * are already spinning here — a hand-off between two running threads then
 * costs no system call, and spinners never outnumber the cores. The budget
 * adapts per thread (as adaptive mutexes do): a wait that ended within
 * SPIN_MAX_NS raises it to twice that wait, since spinning that long would
 * have caught it; a longer wait halves it. Two threads that hand work back
 * and forth thus settle into spinning (no system call per message), while a
 * thread whose waits are long stops burning its core.
 *
 * Locks: free_lock guards the parker free list (leaf lock).
 */
#include "internal.h"

#include <sched.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#define ASYNC_HAVE_FUTEX 1
#else
#define ASYNC_HAVE_FUTEX 0
#endif

#define P_EMPTY    0u
#define P_NOTIFIED 1u
#define P_PARKED   UINT32_MAX   /* EMPTY - 1: park's fetch_sub lands here */

struct async_parker {
    _Atomic uint32_t     state;
    struct async_parker *free_next;   /* guarded by free_lock */
#if !ASYNC_HAVE_FUTEX
    pthread_mutex_t      m;
    pthread_cond_t       c;
#endif
};

static pthread_mutex_t      free_lock = PTHREAD_MUTEX_INITIALIZER;
static struct async_parker *free_parkers;   /* guarded by free_lock */

#define SPIN_MIN_NS   (2 * ASYNC_MICROSECOND)
#define SPIN_START_NS (4 * ASYNC_MICROSECOND)
#define SPIN_MAX_NS   (50 * ASYNC_MICROSECOND)
static _Atomic unsigned spinners;           /* threads spinning in async__wait */
static _Atomic unsigned ncpu_cached;        /* 0 until first computed */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ------------------------------------------------------------ futex */

#if ASYNC_HAVE_FUTEX
static void futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t deadline)
{
    struct timespec ts, *tsp = NULL;
    if (deadline != ASYNC_FOREVER) {
        ts = async__timespec(deadline);
        tsp = &ts;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time. EINTR,
     * EAGAIN (value changed) and ETIMEDOUT all return to the caller's loop. */
    syscall(SYS_futex, addr, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, val, tsp, NULL,
            FUTEX_BITSET_MATCH_ANY);
}

static void futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
}
#endif

/* ----------------------------------------------------------- parker */

static struct async_parker *parker_alloc(void)
{
    ASYNC_CHECK(pthread_mutex_lock(&free_lock));
    struct async_parker *p = free_parkers;
    if (p)
        free_parkers = p->free_next;
    ASYNC_CHECK(pthread_mutex_unlock(&free_lock));
    if (p)
        return p;
    p = async__calloc(1, sizeof *p);
    if (!p)
        return NULL;
    atomic_init(&p->state, P_EMPTY);
#if !ASYNC_HAVE_FUTEX
    pthread_condattr_t ca;
    ASYNC_CHECK(pthread_condattr_init(&ca));
    ASYNC_CHECK(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    ASYNC_CHECK(pthread_mutex_init(&p->m, NULL));
    ASYNC_CHECK(pthread_cond_init(&p->c, &ca));
    pthread_condattr_destroy(&ca);
#endif
    return p;
}

/* A parker for a new thread (workers get theirs before they start). */
struct async_parker *async__parker_new(void)
{
    return parker_alloc();
}

/* Give a parker back when its thread exits. Never freed: see above. */
void async__parker_put(struct async_parker *p)
{
    if (!p)
        return;
    atomic_store_explicit(&p->state, P_EMPTY, memory_order_relaxed);
    ASYNC_CHECK(pthread_mutex_lock(&free_lock));
    p->free_next = free_parkers;
    free_parkers = p;
    ASYNC_CHECK(pthread_mutex_unlock(&free_lock));
}

struct async_parker *async__parker_self_slow(void)
{
    struct async_parker *p = parker_alloc();
    if (p) {
        async__tls.parker = p;
        async__tls_register();
    }
    return p;
}

void async__park(struct async_parker *p, int64_t deadline)
{
    if (atomic_fetch_sub_explicit(&p->state, 1, memory_order_acquire) == P_NOTIFIED)
        return;   /* consumed a permit: NOTIFIED -> EMPTY */
#if ASYNC_HAVE_FUTEX
    futex_wait(&p->state, P_PARKED, deadline);
#else
    ASYNC_CHECK(pthread_mutex_lock(&p->m));
    while (atomic_load_explicit(&p->state, memory_order_relaxed) == P_PARKED) {
        if (deadline == ASYNC_FOREVER) {
            ASYNC_CHECK(pthread_cond_wait(&p->c, &p->m));
        } else {
            struct timespec ts = async__timespec(deadline);
            if (pthread_cond_timedwait(&p->c, &p->m, &ts) == ETIMEDOUT)
                break;
        }
    }
    ASYNC_CHECK(pthread_mutex_unlock(&p->m));
#endif
    atomic_exchange_explicit(&p->state, P_EMPTY, memory_order_acquire);
}

void async__unpark(struct async_parker *p)
{
    if (atomic_exchange_explicit(&p->state, P_NOTIFIED, memory_order_release) != P_PARKED)
        return;
#if ASYNC_HAVE_FUTEX
    futex_wake(&p->state, 1);
#else
    ASYNC_CHECK(pthread_mutex_lock(&p->m));
    ASYNC_CHECK(pthread_cond_signal(&p->c));
    ASYNC_CHECK(pthread_mutex_unlock(&p->m));
#endif
}

/* ------------------------------------------------------- short lock */

void async__lock_slow(async_lock_t *l)
{
    for (int i = 0; i < 100; i++) {
        uint32_t zero = 0;
        if (atomic_load_explicit(&l->word, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->word, &zero, 1,
                memory_order_acquire, memory_order_relaxed))
            return;
        cpu_relax();
    }
    while (atomic_exchange_explicit(&l->word, 2, memory_order_acquire) != 0) {
#if ASYNC_HAVE_FUTEX
        futex_wait(&l->word, 2, ASYNC_FOREVER);
#else
        sched_yield();
#endif
    }
}

void async__unlock_slow(async_lock_t *l)
{
#if ASYNC_HAVE_FUTEX
    futex_wake(&l->word, 1);
#else
    (void)l;
#endif
}

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

void async__wakeset_add(struct async_wakeset *ws, struct async_parker *p)
{
    if (ws->n == sizeof ws->p / sizeof ws->p[0]) {
        /* Full: wake now. The parker is type-stable, so even under the
         * caller's lock this is only a system call, never user code. */
        async__unpark(p);
        return;
    }
    ws->p[ws->n++] = p;
}

void async__wakeset_flush(struct async_wakeset *ws)
{
    for (unsigned i = 0; i < ws->n; i++)
        async__unpark(ws->p[i]);
    ws->n = 0;
}

/* ------------------------------------------------------------- wait */

static unsigned ncpu(void)
{
    unsigned n = atomic_load_explicit(&ncpu_cached, memory_order_relaxed);
    if (n == 0) {
        long v = sysconf(_SC_NPROCESSORS_ONLN);
        n = v > 0 ? (unsigned)v : 1;
        atomic_store_explicit(&ncpu_cached, n, memory_order_relaxed);
    }
    return n;
}

/* Spin until fired or the budget passed; true when fired. */
static bool spin(struct async_waiter *w, int64_t until)
{
    unsigned n = ncpu();
    if (n < 2)
        return false;
    if (atomic_fetch_add_explicit(&spinners, 1, memory_order_relaxed) >= n) {
        atomic_fetch_sub_explicit(&spinners, 1, memory_order_relaxed);
        return false;
    }
    bool fired = false;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&w->fired, memory_order_acquire)) {
            fired = true;
            break;
        }
        cpu_relax();
        if ((i & 63) == 0 && async_now() >= until)
            break;
    }
    atomic_fetch_sub_explicit(&spinners, 1, memory_order_relaxed);
    return fired;
}

/* A wait that began at start has been fired: adapt the spin budget. */
static void adapt_spin(int64_t start)
{
    int64_t d = async_now() - start, b = async__tls.spin_ns;
    if (d <= SPIN_MAX_NS)
        b = b > 2 * d ? b : (2 * d < SPIN_MAX_NS ? 2 * d : SPIN_MAX_NS);
    else
        b = b / 2 > SPIN_MIN_NS ? b / 2 : SPIN_MIN_NS;
    async__tls.spin_ns = b;
}

static int wait_loop(struct async_waiter *w, int64_t deadline, bool may_spin)
{
    int64_t start = 0;
    if (may_spin && !async__cancel_requested()) {
        start = async_now();
        int64_t budget = async__tls.spin_ns ? async__tls.spin_ns : SPIN_START_NS;
        int64_t until = start + budget;
        if (deadline != ASYNC_FOREVER && deadline < until)
            until = deadline;
        if (spin(w, until)) {
            adapt_spin(start);
            return 0;
        }
    }
    struct async_blocker b = { 0 };
    bool blocked = false;
    int rc;
    for (;;) {
        if (atomic_load_explicit(&w->fired, memory_order_acquire)) {
            rc = 0;
            break;
        }
        if (async__cancel_requested()) {
            rc = ECANCELED;
            break;
        }
        if (async__deadline_passed(deadline)) {
            rc = ETIMEDOUT;
            break;
        }
        if (!blocked) {
            /* Register before the first park, then check again: a cancel or
             * shutdown that comes after this sees us in the pool's list. */
            b.parker = w->parker;
            async__block_enter(&b);
            blocked = true;
            continue;
        }
        int64_t until = deadline, retry = async__block_retry(&b);
        if (retry != ASYNC_FOREVER && (until == ASYNC_FOREVER || retry < until))
            until = retry;
        async__park(w->parker, until);
    }
    if (blocked)
        async__block_exit(&b);
    if (start && rc == 0)
        adapt_spin(start);
    return rc;
}

int async__wait(struct async_waiter *w, int64_t deadline)
{
    return wait_loop(w, deadline, true);
}

int async_sleep_until(int64_t deadline)
{
    if (async__deadline_valid(deadline))
        return EINVAL;
    if (deadline == ASYNC_FOREVER && !async__current_task())
        return EINVAL;
    if (async__cancel_requested())
        return ECANCELED;
    if (async__deadline_passed(deadline))
        return 0;
    struct async_waiter w;
    w.parker = async__parker_self();
    atomic_init(&w.fired, 0);
    if (!w.parker) {
        /* No memory for a parker: sleep without one (signals may cut a
         * nanosleep short; loop to the deadline). */
        while (!async__deadline_passed(deadline)) {
            struct timespec ts = async__timespec(deadline);
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
        return 0;
    }
    /* Nobody fires this waiter: it ends by deadline or cancellation. */
    int rc = wait_loop(&w, deadline, false);
    return rc == ETIMEDOUT ? 0 : rc;
}

void async_sleep(int64_t ns)
{
    if (ns <= 0)
        return;
    (void)async_sleep_until(async_now() + ns);
}
