/*
 * lib/deque.c — the per-worker work-stealing deque (Chase–Lev, with the C11
 * orderings of Lê, Pop, Cohen and Zappa Nardelli, PPoPP 2013).
 *
 * Owns: a growable ring of work items (task records, or parked fibers made
 * runnable; sched.c tags them). The owner pushes and pops at the
 * bottom (LIFO: the task it just made is cache-warm and is what its own
 * future_get will want); thieves take from the top (the oldest, usually the
 * biggest piece of a fork/join).
 *
 * Invariants:
 *   top <= bottom + 1 (bottom may dip one below top during a pop);
 *   entries [top, bottom) are live; only the owner writes bottom and ring;
 *   top only grows, by CAS (thieves, and the owner taking the last entry).
 * Memory order:
 *   push: slot store, then bottom store (release) — pairs with the thief's
 *   acquire load of bottom, so a stolen record's fields are visible. The
 *   slot store is a release too, for the dump's walk (async__deque_each).
 *   pop/steal: the seq_cst fence between the owner's bottom store and its top
 *   load, and between the thief's top load and bottom load, decides who gets
 *   the last entry (a Dekker pair); the top CAS is seq_cst.
 *   ring: stored with release by the owner on growth, loaded with acquire by
 *   thieves. A replaced ring is kept (retired list) until async__deque_fini,
 *   since a thief may still read a slot of it; that slot holds the same
 *   pointer as the new ring, so a late read is still right.
 * Rejected: a mutex per deque (the owner would pay it on every spawn).
 */
#include "internal.h"

#include <string.h>

struct async_ring {
    int64_t                  mask;      /* capacity - 1; immutable */
    struct async_ring       *retired;   /* owner only */
    void *_Atomic            slot[];   /* tagged items, see sched.c */
};

#define RING_INITIAL 256

static struct async_ring *ring_new(int64_t cap)
{
    struct async_ring *r = async__malloc(sizeof *r + (size_t)cap * sizeof r->slot[0]);
    if (!r)
        return NULL;
    r->mask = cap - 1;
    r->retired = NULL;
    for (int64_t i = 0; i < cap; i++)
        atomic_init(&r->slot[i], NULL);
    return r;
}

int async__deque_init(struct async_deque *d)
{
    struct async_ring *r = ring_new(RING_INITIAL);
    if (!r)
        return ENOMEM;
    atomic_init(&d->top, 0);
    atomic_init(&d->bottom, 0);
    atomic_init(&d->ring, r);
    d->retired = NULL;
    return 0;
}

void async__deque_fini(struct async_deque *d)
{
    async__free(atomic_load_explicit(&d->ring, memory_order_relaxed));
    while (d->retired) {
        struct async_ring *r = d->retired;
        d->retired = r->retired;
        async__free(r);
    }
}

static struct async_ring *grow(struct async_deque *d, struct async_ring *old, int64_t t,
                               int64_t b)
{
    struct async_ring *r = ring_new((old->mask + 1) * 2);
    if (!r)
        return NULL;
    for (int64_t i = t; i < b; i++)
        atomic_store_explicit(&r->slot[i & r->mask],
            atomic_load_explicit(&old->slot[i & old->mask], memory_order_relaxed),
            memory_order_relaxed);
    old->retired = d->retired;
    d->retired = old;
    atomic_store_explicit(&d->ring, r, memory_order_release);
    return r;
}

int async__deque_push(struct async_deque *d, void *f)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&d->top, memory_order_acquire);
    struct async_ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
    if (b - t > r->mask) {
        r = grow(d, r, t, b);
        if (!r)
            return ENOMEM;
    }
    /* release: the dump may read the slot without reading bottom after it
     * (async__deque_each); a plain store on x86-64 */
    atomic_store_explicit(&r->slot[b & r->mask], f, memory_order_release);
    atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
    return 0;
}

void *async__deque_pop(struct async_deque *d)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed) - 1;
    struct async_ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
    atomic_store_explicit(&d->bottom, b, memory_order_relaxed);
    ASYNC_FENCE();
    int64_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
    if (t > b) {   /* empty */
        atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
        return NULL;
    }
    void *f = atomic_load_explicit(&r->slot[b & r->mask], memory_order_relaxed);
    if (t == b) {  /* the last entry: race the thieves for it */
        if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1,
                memory_order_seq_cst, memory_order_relaxed))
            f = NULL;
        atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
    }
    return f;
}

void *async__deque_steal(struct async_deque *d)
{
    int64_t t = atomic_load_explicit(&d->top, memory_order_acquire);
    ASYNC_FENCE();
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_acquire);
    if (t >= b)
        return NULL;
    struct async_ring *r = atomic_load_explicit(&d->ring, memory_order_acquire);
    void *f = atomic_load_explicit(&r->slot[t & r->mask], memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1,
            memory_order_seq_cst, memory_order_relaxed))
        return NULL;   /* lost the race: the caller tries elsewhere */
    return f;
}

/* Peek at the bottom entry (owner only): the fork/join fast path checks
 * whether the task it waits for is the one it pushed last. */
void *async__deque_peek_bottom(struct async_deque *d)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
    if (b <= t)
        return NULL;
    struct async_ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
    return atomic_load_explicit(&r->slot[(b - 1) & r->mask], memory_order_relaxed);
}

/* For the dump (any thread): each item between top and bottom, read once
 * and racily (items come and go meanwhile). top and bottom are read seq_cst
 * after the caller's seq_cst start of its walk (runq.c's
 * async__pool_each_queued says why that makes every item it reads one that
 * was still queued when the walk began, or was pushed since). A slot reads
 * an item pushed in the same or a later lap of the ring (never an older
 * one: the push that moved bottom past it wrote it first). */
void async__deque_each(struct async_deque *d, void (*fn)(void *item, void *ctx), void *ctx)
{
    int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_seq_cst);
    struct async_ring *r = atomic_load_explicit(&d->ring, memory_order_acquire);
    if (b - t > r->mask + 1)
        t = b - (r->mask + 1);   /* top moved on meanwhile: the newest lap */
    for (int64_t i = t; i < b; i++) {
        void *it = atomic_load_explicit(&r->slot[i & r->mask], memory_order_acquire);
        if (it)
            fn(it, ctx);
    }
}

bool async__deque_empty(struct async_deque *d)
{
    int64_t t = atomic_load_explicit(&d->top, memory_order_acquire);
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_acquire);
    return b <= t;
}
