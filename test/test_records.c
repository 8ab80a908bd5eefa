/*
 * test/test_records.c — where a record's memory comes from (lib/recmem.c):
 * records of the standard size are slots of a block their thread carves,
 * next to each other and aligned for the outside slot's tag; a block goes
 * back to malloc once every one of its records has come back, from
 * whichever thread; one live record keeps its block and no other; records
 * with a copied argument, and records made while a failure injection is
 * armed, are their own allocations; a pool's records all go back when its
 * threads are gone.
 *
 * Each test runs in its own process (Criterion's default), so the block
 * count starts from what that process has made. Before a count is read,
 * test hooks give back what the depot and the checked build's quarantine
 * keep: records kept for reuse, or to catch a late use, are not leaks.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdint.h>

#include "internal.h"
#include "testutil.h"

#if ASYNC_ASAN
#  include <sanitizer/asan_interface.h>
#endif

#define MAXREC 4096

struct batch {
    struct future *r[MAXREC];
    size_t         n;          /* records held */
    size_t         from, to;   /* the slice a thread frees */
};

/* Runs fn(b) on a thread of its own and joins it: whatever the thread's
 * cache and block hold goes back at its exit. */
static void on_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
}

static void *make(void *arg)
{
    struct batch *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        b->r[i] = async__record_alloc(0);
        cr_assert_not_null(b->r[i], "record %zu of %zu", i, b->n);
    }
    return NULL;
}

static void *drop(void *arg)
{
    struct batch *b = arg;
    for (size_t i = b->from; i < b->to; i++) {
        async__record_free(b->r[i]);
        b->r[i] = NULL;
    }
    return NULL;
}

static void *unquarantine(void *arg)
{
    (void)arg;
    async__test_quarantine_flush();
    return NULL;
}

/* Blocks alive once the records that the checked build's quarantine and
 * the depot keep have gone back. The quarantine releases its records into
 * the cache of a thread that then exits. */
static size_t blocks(void)
{
    on_thread(unquarantine, NULL);
    async__test_record_depot_drain();
    return async__test_record_blocks();
}

Test(records, consecutive_records_are_slots_of_one_block)
{
    const size_t per = async__test_records_per_block();
    cr_assert_geq(per, 2);
    cr_assert_leq(per * 2 + 1, MAXREC);
    size_t base = blocks();
    static struct batch b;
    b.n = per + 1;
    on_thread(make, &b);
    /* the thread carved one whole block and one slot of a second, whose
     * uncarved rest came back at its exit; the records keep both */
    cr_assert_eq(blocks(), base + 2);
    void *first = async__test_record_block(b.r[0]);
    cr_assert_not_null(first);
    size_t stride = (size_t)((char *)b.r[1] - (char *)b.r[0]);
    cr_assert_geq(stride, sizeof(struct future));
    for (size_t i = 0; i < per; i++) {
        cr_assert_eq(async__test_record_block(b.r[i]), first, "record %zu", i);
        cr_assert_eq((char *)b.r[i], (char *)b.r[0] + i * stride, "record %zu", i);
        cr_assert_eq((uintptr_t)b.r[i] % ASYNC_RECORD_ALIGN, 0, "record %zu: %p", i,
                     (void *)b.r[i]);
    }
    void *second = async__test_record_block(b.r[per]);
    cr_assert_not_null(second);
    cr_assert_neq(second, first, "the block's slots ran out: a new block");
    b.from = 0;
    b.to = b.n;
    on_thread(drop, &b);
    cr_assert_eq(blocks(), base, "every record came back: both blocks went");
}

Test(records, records_freed_on_another_thread_go_back_to_their_blocks)
{
    const size_t per = async__test_records_per_block();
    size_t base = blocks();
    static struct batch b;
    b.n = 3 * per;
    on_thread(make, &b);
    cr_assert_eq(blocks(), base + 3);
    /* two threads free halves that interleave in every block */
    static struct batch odd, even;
    odd.n = even.n = 0;
    for (size_t i = 0; i < b.n; i++) {
        struct batch *h = i % 2 ? &odd : &even;
        h->r[h->n++] = b.r[i];
    }
    odd.from = even.from = 0;
    odd.to = odd.n;
    even.to = even.n;
    on_thread(drop, &odd);
    cr_assert_eq(blocks(), base + 3, "half of each block's records still live");
    on_thread(drop, &even);
    cr_assert_eq(blocks(), base);
}

Test(records, one_live_record_keeps_its_block_and_no_other)
{
    const size_t per = async__test_records_per_block();
    size_t base = blocks();
    static struct batch b;
    b.n = 2 * per + 5;
    on_thread(make, &b);
    cr_assert_eq(blocks(), base + 3);
    size_t keep = per + per / 2;                 /* in the second block */
    struct future *kept = b.r[keep];
    char *before = (char *)b.r[keep - 1], *after = (char *)b.r[keep + 1];
    b.from = 0;
    b.to = keep;
    on_thread(drop, &b);
    b.from = keep + 1;
    b.to = b.n;
    on_thread(drop, &b);
    cr_assert_eq(blocks(), base + 1, "the kept record's block stays");
#if ASYNC_ASAN
    /* its neighbours came back to the block: a late use of either is caught */
    cr_assert(__asan_address_is_poisoned(before));
    cr_assert(__asan_address_is_poisoned(after));
    cr_assert_not(__asan_address_is_poisoned(kept));
#else
    (void)before;
    (void)after;
#endif
    b.r[keep] = kept;
    b.from = keep;
    b.to = keep + 1;
    on_thread(drop, &b);
    cr_assert_eq(blocks(), base);
}

/* On a thread of its own: a record freed, then one taken. */
static void *reuse(void *arg)
{
    struct batch *b = arg;
    b->r[0] = async__record_alloc(0);
    cr_assert_not_null(b->r[0]);
    async__record_free(b->r[0]);
    b->r[1] = async__record_alloc(0);
    cr_assert_not_null(b->r[1]);
    async__record_free(b->r[1]);
    return NULL;
}

Test(records, a_freed_record_is_taken_again_before_a_new_slot)
{
    static struct batch b;
    size_t base = blocks();
    on_thread(reuse, &b);
    cr_assert_eq(b.r[1], b.r[0], "the thread's cache gave the same memory back");
    cr_assert_eq(blocks(), base, "and the thread's exit gave its block back");
}

Test(records, records_with_an_argument_are_their_own_allocation)
{
    struct future *f = async__record_alloc(40);
    cr_assert_not_null(f);
    cr_assert_null(async__test_record_block(f));
    cr_assert_eq((uintptr_t)f % ASYNC_RECORD_ALIGN, 0);
    struct future *g = async__record_alloc(0);
    cr_assert_not_null(g);
    cr_assert_not_null(async__test_record_block(g), "the standard size is a slot");
    cr_assert_eq((uintptr_t)g % ASYNC_RECORD_ALIGN, 0);
    async__record_free(g);
    async__record_free(f);
    struct future *h = async__record_alloc(0);
    cr_assert_eq(h, g, "the cached slot, not f's memory");
    async__record_free(h);
}

Test(records, an_armed_failure_reaches_every_record_and_answers_enomem)
{
    /* while armed, every record is an allocation the test may fail */
    async__test_fail_alloc(2);
    struct future *f = async__record_alloc(0);
    cr_assert_not_null(f);
    cr_assert_null(async__test_record_block(f), "its own malloc, not a slot");
    errno = 0;
    struct future *g = async__record_alloc(0);
    int err = errno;
    async__test_fail_alloc(0);
    cr_assert_null(g, "the second allocation was armed to fail");
    cr_assert_eq(err, ENOMEM);
    async__record_free(f);
    /* through the API: the promise that could not be made says so */
    async__test_fail_alloc(1);
    errno = 0;
    promise_t *p = promise_make();
    err = errno;
    async__test_fail_alloc(0);
    cr_assert_null(p);
    cr_assert_eq(err, ENOMEM);
}

struct feeder {
    unsigned  n;
    long long sum;
    size_t    during;        /* blocks alive with every task done */
};

/* On a thread of its own: a pool made, fed n tasks in windows, drained and
 * destroyed. Everything the library does here happens on this thread or
 * on the pool's workers, so all of it goes back by the time it exits. */
static void *feed(void *arg)
{
    struct feeder *fd = arg;
    enum { WINDOW = 5000 };
    static future_t *fs[WINDOW];
    async_pool_t *pool = tu_pool(2, 0, NULL);
    for (unsigned base = 0; base < fd->n; base += WINDOW) {
        for (unsigned i = 0; i < WINDOW; i++) {
            fs[i] = async_run_on(pool, tu_task_identity, (void *)(uintptr_t)(base + i + 1));
            cr_assert_not_null(fs[i]);
        }
        for (unsigned i = 0; i < WINDOW; i++) {
            void *r = NULL;
            cr_assert_eq(future_get(fs[i], &r), 0);
            fd->sum += (long long)(uintptr_t)r;
            future_free(fs[i]);
        }
    }
    fd->during = async__test_record_blocks();
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    return NULL;
}

Test(records, a_pools_records_all_go_back_when_its_threads_are_gone, .timeout = 120)
{
    size_t base = blocks();
    struct feeder fd = { .n = 200000 };
    on_thread(feed, &fd);
    cr_assert_eq(fd.sum, (long long)fd.n * (fd.n + 1) / 2);
    cr_assert_gt(fd.during, base, "the records came from blocks");
    size_t left = blocks();
    cr_assert_eq(left, base, "blocks left behind by the feeder or the workers: %zu, %zu before",
                 left, base);
}
