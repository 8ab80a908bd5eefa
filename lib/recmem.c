/*
 * lib/recmem.c — where a record's memory comes from and where it goes back:
 * blocks that a thread carves records from, the per-thread cache of free
 * records, and the process-wide depot between the caches.
 *
 * Owns: async__record_alloc, async__record_free, the thread-exit hook
 * (async__tls_register) that gives back what a thread holds (its cached
 * records, its block's uncarved rest, its defer stack, its parker), and the
 * test hooks that count blocks and empty the depot.
 *
 * Blocks. A record of the standard size (no closure copied in) is carved
 * from a block of BLOCK_BYTES that its thread got from one malloc: the
 * thread takes the block's records in address order, so a submitter that
 * makes a million futures calls malloc some 4,400 times, not a million, and
 * its records lie next to each other. The records of a block are
 * RECORDS_PER_BLOCK slots of STRIDE bytes after a BLOCK_HDR header: 80
 * bytes on x86-64, as malloc's chunk for a 72-byte record, since a record's
 * address keeps malloc's 16-byte alignment (ASYNC_RECORD_ALIGN). A record knows its slot
 * by its size_class: index + 1, so 0 stays for a record of its own malloc
 * (one with a copied argument, or one made while a failure injection is
 * armed, so that each record is an allocation site the test can fail).
 *
 * A block's `left` counts its records that have not come back to it,
 * carved or not. It starts at RECORDS_PER_BLOCK. The carving thread's
 * uncarved rest comes back in one subtraction when the thread leaves the
 * block early (at its exit); a carved record comes back once, when it is
 * freed and neither its thread's cache nor the depot has room for it.
 * Records come back in chains, and consecutive records of one block cost
 * one atomic subtraction between them. Whoever takes `left` to zero frees
 * the block (acq_rel: every use of its records happened before). No one
 * else reads a block: its carving thread keeps only `t->block` and
 * `t->carved`, and drops the block when the last slot is carved.
 *
 * The cost: a block lives as long as one of its records does, or sits in
 * a cache or the depot. Blocks are small (RECORDS_PER_BLOCK records), so one
 * long-lived record pins 16 KiB at most.
 *
 * Cache and depot. A thread keeps up to CACHE_MAX free records of the
 * standard size and hands BATCH of them at a time to the depot when its
 * cache fills; a thread whose cache is empty takes a batch from the depot
 * before it carves. So a submitter that only allocates is fed by the
 * workers that only free, one short lock per BATCH records. A record in a
 * thread's cache has refs == 0 and is touched by no one else. What the
 * depot has no room for goes back to its block (or to free(), for a record
 * of its own malloc).
 *
 * Sanitizers. Under AddressSanitizer, a slot not carved yet and a record
 * given back to its block are poisoned: a late use of either is reported
 * as one (the records in caches stay usable, as they are reused).
 */
#include "internal.h"

#include <stdlib.h>

#if defined(ASYNC_ASAN)
#  include <sanitizer/asan_interface.h>
#  define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#  define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#  define POISON(p, n)   ((void)(p), (void)(n))
#  define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define CACHE_MAX   256          /* records a thread keeps */
#define BATCH       (CACHE_MAX / 2)
#define DEPOT_MAX   64           /* batches the depot keeps */

#define BLOCK_BYTES ((size_t)16 * 1024)
#define BLOCK_HDR   ASYNC_RECORD_ALIGN   /* malloc's alignment is kept */
#define STRIDE      ((sizeof(struct future) + ASYNC_RECORD_ALIGN - 1) & \
                     ~(ASYNC_RECORD_ALIGN - 1))
#define RECORDS_PER_BLOCK ((unsigned)((BLOCK_BYTES - BLOCK_HDR) / STRIDE))
_Static_assert(RECORDS_PER_BLOCK >= 2 && RECORDS_PER_BLOCK <= 255,
               "a slot's index + 1 fits a record's size_class");

struct async_rblock {
    _Atomic uint32_t left;       /* records not come back; see above */
};
_Static_assert(sizeof(struct async_rblock) <= BLOCK_HDR, "the header fits");

static _Atomic size_t blocks_live;   /* test hook's count */

/* The depot: batches of free records chained through `next`; batches
 * chain through `awaiting` (unused while free). */
static async_lock_t   depot_lock;
static struct future *depot;       /* guarded by depot_lock */
static unsigned       ndepot;      /* guarded by depot_lock */

/* ------------------------------------------------------------- blocks */

static struct future *slot(struct async_rblock *b, unsigned i)
{
    return (struct future *)((char *)b + BLOCK_HDR + (size_t)i * STRIDE);
}

static struct async_rblock *block_of(struct future *f)
{
    return (struct async_rblock *)((char *)f - BLOCK_HDR - (size_t)(f->size_class - 1) * STRIDE);
}

/* n records of b came back: the last ones free it. */
static void block_put(struct async_rblock *b, uint32_t n)
{
    ASYNC_ASSERT(n > 0);
    uint32_t old = atomic_fetch_sub_explicit(&b->left, n, memory_order_acq_rel);
    ASYNC_ASSERT(old >= n);
    if (old != n)
        return;
    UNPOISON(b, BLOCK_BYTES);
    atomic_fetch_sub_explicit(&blocks_live, 1, memory_order_relaxed);
    async__free(b);
}

/* The next slot of this thread's block, or of a new one. NULL with errno
 * ENOMEM. */
static struct future *carve(struct async_tls *t)
{
    struct async_rblock *b = t->block;
    if (!b) {
        b = async__malloc(BLOCK_BYTES);
        if (!b)
            return NULL;
        atomic_init(&b->left, RECORDS_PER_BLOCK);
        POISON(slot(b, 0), (size_t)RECORDS_PER_BLOCK * STRIDE);
        atomic_fetch_add_explicit(&blocks_live, 1, memory_order_relaxed);
        async__tls_register();      /* its exit gives back the uncarved rest */
        t->block = b;
        t->carved = 0;
    }
    unsigned i = t->carved++;
    if (t->carved == RECORDS_PER_BLOCK)
        t->block = NULL;            /* every slot is out: others free it */
    struct future *f = slot(b, i);
    UNPOISON(f, sizeof *f);
    f->size_class = (uint8_t)(i + 1);
#if ASYNC_CHECKS
    f->gen = 0;
#endif
    return f;
}

/* A chain of free records (through `next`, NULL-ended) goes back to where
 * its memory came from. */
static void records_return(struct future *f)
{
    struct async_rblock *run = NULL;
    uint32_t n = 0;
    while (f) {
        struct future *next = atomic_load_explicit(&f->next, memory_order_relaxed);
        if (f->size_class == 0) {
            async__free(f);
        } else {
            struct async_rblock *b = block_of(f);
            POISON(f, sizeof *f);
            if (b != run) {
                if (run)
                    block_put(run, n);
                run = b;
                n = 0;
            }
            n++;
        }
        f = next;
    }
    if (run)
        block_put(run, n);
}

/* -------------------------------------------------- cache and depot */

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
    async__tls_register();
    t->cache = b;
    t->ncache = BATCH;
}

/* The cache is full: hand BATCH records to the depot, or give them back. */
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
    if (!kept)
        records_return(b);
}

struct future *async__record_alloc(size_t arg_size)
{
    if (arg_size == 0 && !async__alloc_hooked()) {
        struct async_tls *t = async__tls_get();
        if (!t->cache)
            depot_take(t);
        struct future *f = t->cache;
        if (!f)
            return carve(t);
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
        f->size_class = 0;
#if ASYNC_CHECKS
        f->gen = 0;
#endif
    }
    return f;
}

void async__record_free(struct future *f)
{
#if ASYNC_CHECKS
    /* cached records have refs == 0: a late release or retain is caught */
    atomic_store_explicit(&f->refs, 0, memory_order_relaxed);
#endif
    if (f->size_class == 0) {
        async__free(f);
        return;
    }
    struct async_tls *t = async__tls_get();
    if (t->ncache == CACHE_MAX)
        depot_give(t);
    if (!t->cache)
        async__tls_register();
    atomic_store_explicit(&f->next, t->cache, memory_order_relaxed);
    t->cache = f;
    t->ncache++;
}

/* ------------------------------------------------------ thread exit */

static pthread_key_t  tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

/* The thread leaves: its cached records and its block's uncarved rest go
 * back, and so do its defer stack and its parker. */
static void tls_release(void *unused)
{
    (void)unused;
    struct async_tls *t = async__tls_get();
    records_return(t->cache);
    t->cache = NULL;
    t->ncache = 0;
    if (t->block) {
        block_put(t->block, RECORDS_PER_BLOCK - t->carved);
        t->block = NULL;
    }
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

/* ------------------------------------------------------- test hooks */

size_t async__test_record_blocks(void)
{
    return atomic_load_explicit(&blocks_live, memory_order_relaxed);
}

unsigned async__test_records_per_block(void)
{
    return RECORDS_PER_BLOCK;
}

void *async__test_record_block(struct future *f)
{
    return f->size_class ? (void *)block_of(f) : NULL;
}

void async__test_record_depot_drain(void)
{
    async__lock(&depot_lock);
    struct future *b = depot;
    depot = NULL;
    ndepot = 0;
    async__unlock(&depot_lock);
    while (b) {
        struct future *next = b->awaiting;
        records_return(b);
        b = next;
    }
}
