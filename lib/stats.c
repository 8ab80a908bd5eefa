/*
 * lib/stats.c — a pool's counters, summed: async_pool_stats's snapshot, the
 * drain's "every task finished", and how many fibers are parked.
 *
 * Owns: the readers of the counters. Each worker writes its own counters
 * (struct async_worker c[], relaxed load and store by the owner only);
 * threads outside the pool add to h.ext_c with relaxed fetch_add. A reader
 * sums them all: a racy total, exact only when nothing moves, which is why
 * the snapshot makes its fields agree with each other, and why the two
 * questions that must be exact (every submitted task finished; no fiber
 * parked) read their counters in an order that can only err towards "not
 * yet" (see each).
 */
#include "sched_internal.h"

#define wcount async__worker_count

void async__sum_counters(struct async_pool *pool, uint64_t out[ASYNC_NCOUNTERS])
{
    for (int i = 0; i < ASYNC_NCOUNTERS; i++)
        out[i] = atomic_load_explicit(&pool->h.ext_c[i], memory_order_relaxed);
    unsigned n = atomic_load_explicit(&pool->nslots, memory_order_acquire);
    for (unsigned s = 0; s < n; s++)
        for (int i = 0; i < ASYNC_NCOUNTERS; i++)
            out[i] += atomic_load_explicit(&pool->slots[s]->c[i], memory_order_relaxed);
}

static uint64_t sum_one(struct async_pool *pool, int c)
{
    uint64_t v = atomic_load_explicit(&pool->h.ext_c[c], memory_order_relaxed);
    unsigned n = atomic_load_explicit(&pool->nslots, memory_order_acquire);
    for (unsigned s = 0; s < n; s++)
        v += atomic_load_explicit(&pool->slots[s]->c[c], memory_order_relaxed);
    return v;
}

size_t async__queued_estimate(struct async_pool *pool)
{
    uint64_t c[ASYNC_NCOUNTERS];
    async__sum_counters(pool, c);
    uint64_t gone = c[ASYNC_C_STARTED] + c[ASYNC_C_CANCELLED];
    return c[ASYNC_C_SUBMITTED] > gone ? (size_t)(c[ASYNC_C_SUBMITTED] - gone) : 0;
}

/* Every submitted task finished? Read F before S: see pool.c. */
bool async__quiescent(struct async_pool *pool)
{
    uint64_t f = sum_one(pool, ASYNC_C_SUCCEEDED) + sum_one(pool, ASYNC_C_FAILED) +
                 sum_one(pool, ASYNC_C_CANCELLED);
    ASYNC_FENCE();
    return f == sum_one(pool, ASYNC_C_SUBMITTED);
}

/* Fibers of the pool parked or runnable (not running): read resumes before
 * parks; both only grow and a resume follows its park. */
static uint64_t parked_now(struct async_pool *pool)
{
    uint64_t r = sum_one(pool, ASYNC_C_RESUMED);
    ASYNC_FENCE();
    uint64_t p = sum_one(pool, ASYNC_C_PARKED);
    return p > r ? p - r : 0;
}

void async__pool_snapshot(struct async_pool *pool, async_pool_stats_t *out)
{
    uint64_t c[ASYNC_NCOUNTERS];
    async__sum_counters(pool, c);
    out->parked = async__pool_parked(pool);
    out->stacks = atomic_load(&pool->nstacks);
    /* The fields are read one at a time while workers start, block and
     * exit (nalive rises before peak does), so make the snapshot agree with
     * itself: `threads` workers were alive at once, and blocked and idle
     * workers are alive ones. */
    unsigned alive = atomic_load(&pool->nalive), peak = atomic_load(&pool->peak);
    unsigned blocked = atomic_load(&pool->nblocked), idle = atomic_load(&pool->nidle);
    out->threads = alive;
    out->peak_threads = peak > alive ? peak : alive;
    out->blocked = blocked < alive ? blocked : alive;
    out->idle = idle < alive ? idle : alive;
    uint64_t gone = c[ASYNC_C_STARTED] + c[ASYNC_C_CANCELLED];
    out->queued = c[ASYNC_C_SUBMITTED] > gone ? (size_t)(c[ASYNC_C_SUBMITTED] - gone) : 0;
    out->submitted = c[ASYNC_C_SUBMITTED];
    out->succeeded = c[ASYNC_C_SUCCEEDED];
    out->failed = c[ASYNC_C_FAILED];
    out->cancelled = c[ASYNC_C_CANCELLED];
    out->stolen = c[ASYNC_C_STOLEN];
}

size_t async__pool_parked(struct async_pool *pool)
{
    return (size_t)parked_now(pool);
}


