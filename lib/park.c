/*
 * lib/park.c — how a thread sleeps and is woken; the short lock; the
 * registry of wake targets.
 *
 * Owns: the per-thread parker, the short lock, and the table that maps
 * 32-bit ids to wake targets (parkers and stack fibers).
 *
 * Design. A thread that must block sleeps on its own parker, a futex word
 * (portable fallback: a mutex+condvar per thread). Rejected: a mutex+condvar
 * pair per object (one futex word per sleeping thread is enough, and objects
 * stay small), and parking on a word inside the waiter (the waker could then
 * touch a stack frame that has already returned).
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
 * The registry. A task record has 32 spare bits, not 64, to say who runs it
 * (so that future_cancel can wake its blocked call), so wake targets get
 * ids: a two-level table, DIR_SIZE chunks of CHUNK entries, chunks allocated
 * on first use and never freed, ids never reused (parkers and stack fibers
 * are type-stable, so every id stays meaningful). Lookups are lock-free.
 *
 * Locks: free_lock guards the parker free list; registry_lock serialises
 * chunk allocation. Both are leaves.
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
    uint32_t             id;          /* wake-target id; immutable */
    struct async_parker *free_next;   /* guarded by free_lock */
#if !ASYNC_HAVE_FUTEX
    pthread_mutex_t      m;
    pthread_cond_t       c;
#endif
};

static pthread_mutex_t      free_lock = PTHREAD_MUTEX_INITIALIZER;
static struct async_parker *free_parkers;   /* guarded by free_lock */

#define CHUNK_BITS 12
#define CHUNK      (1u << CHUNK_BITS)
#define DIR_SIZE   4096u
static _Atomic(_Atomic uintptr_t *) registry[DIR_SIZE];
static _Atomic uint32_t             registry_next = 1;   /* 0 is "none" */
static pthread_mutex_t              registry_lock = PTHREAD_MUTEX_INITIALIZER;


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
    /* Set up before the registry publishes p: a pool's destroy may unpark
     * every registered target at any moment from then on. */
    atomic_init(&p->state, P_EMPTY);
#if !ASYNC_HAVE_FUTEX
    pthread_condattr_t ca;
    ASYNC_CHECK(pthread_condattr_init(&ca));
    ASYNC_CHECK(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    ASYNC_CHECK(pthread_mutex_init(&p->m, NULL));
    ASYNC_CHECK(pthread_cond_init(&p->c, &ca));
    pthread_condattr_destroy(&ca);
#endif
    p->id = async__target_register((uintptr_t)p);
    if (!p->id) {
#if !ASYNC_HAVE_FUTEX
        pthread_cond_destroy(&p->c);
        pthread_mutex_destroy(&p->m);
#endif
        async__free(p);
        return NULL;
    }
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
        async__tls_get()->parker = p;
        async__tls_register();
    }
    return p;
}

uint32_t async__parker_id(const struct async_parker *p)
{
    return p->id;
}

void async__park(struct async_parker *p, int64_t deadline)
{
    ASYNC_ASSERT(async__locks_held() == 0);   /* none is held across a park */
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
        async__cpu_relax();
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

/* --------------------------------------------------------- registry */

uint32_t async__target_register(uintptr_t target)
{
    uint32_t id = atomic_fetch_add_explicit(&registry_next, 1, memory_order_relaxed);
    if (id >= DIR_SIZE * CHUNK)
        return 0;   /* 16 M targets: parkers and stacks are never freed, so
                       this many were alive at once; no id, no cancel wake */
    _Atomic uintptr_t *chunk = atomic_load_explicit(&registry[id >> CHUNK_BITS],
                                                    memory_order_acquire);
    if (!chunk) {
        ASYNC_CHECK(pthread_mutex_lock(&registry_lock));
        chunk = atomic_load_explicit(&registry[id >> CHUNK_BITS], memory_order_relaxed);
        if (!chunk) {
            chunk = async__calloc(CHUNK, sizeof *chunk);
            if (chunk)
                atomic_store_explicit(&registry[id >> CHUNK_BITS], chunk,
                                      memory_order_release);
        }
        ASYNC_CHECK(pthread_mutex_unlock(&registry_lock));
        if (!chunk)
            return 0;
    }
    atomic_store_explicit(&chunk[id & (CHUNK - 1)], target, memory_order_release);
    return id;
}

uintptr_t async__target_lookup(uint32_t id)
{
    if (id == 0 || id >= DIR_SIZE * CHUNK)
        return 0;
    _Atomic uintptr_t *chunk = atomic_load_explicit(&registry[id >> CHUNK_BITS],
                                                    memory_order_acquire);
    return chunk ? atomic_load_explicit(&chunk[id & (CHUNK - 1)], memory_order_acquire) : 0;
}

void async__target_each(void (*fn)(uintptr_t target))
{
    uint32_t n = atomic_load_explicit(&registry_next, memory_order_acquire);
    for (uint32_t id = 1; id < n && id < DIR_SIZE * CHUNK; id++) {
        uintptr_t t = async__target_lookup(id);
        if (t)
            fn(t);
    }
}

void async__target_walk(void (*fn)(uintptr_t target, void *ctx), void *ctx)
{
    uint32_t n = atomic_load_explicit(&registry_next, memory_order_acquire);
    for (uint32_t id = 1; id < n && id < DIR_SIZE * CHUNK; id++) {
        uintptr_t t = async__target_lookup(id);
        if (t)
            fn(t, ctx);
    }
}
