/*
 * test/test_stacks.c — the memory of goroutine mode's stacks (lib/fiber.c):
 * a pool that never idles keeps a burst's stacks through the burst and
 * gives back, a period later, the ones that stayed free all that time.
 *
 * Residency is read with mincore(2), page by page: what the kernel has,
 * not a counter of the library's.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define KIB ((size_t)1024)

static size_t page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Whether the page holding address a is resident. */
static bool resident(uintptr_t a)
{
    unsigned char v = 0;
    uintptr_t p = a & ~(uintptr_t)(page() - 1);
    cr_assert_eq(mincore((void *)p, 1, &v), 0, "mincore: %s", strerror(errno));
    return v & 1;
}

/* ----------------------------------------------------- the busy pool */

#define BIG   2000u   /* more free stacks than the decay looks past */
#define SMALL 200u

struct burst {
    chan_t       *c;
    atomic_uint   n;
    uintptr_t     pages[BIG];   /* each task's stack page */
    atomic_bool   stop;
};

/* Keeps its worker from ever going idle (an idle worker gives stacks back
 * on its own): yields until told to stop. */
static void *keeper(void *arg)
{
    struct burst *b = arg;
    while (!atomic_load_explicit(&b->stop, memory_order_acquire))
        async_yield();
    return NULL;
}

/* Notes its stack page (the first tasks only), then waits for one int. */
static void *mark_and_recv(void *arg)
{
    struct burst *b = arg;
    volatile char here = 0;
    unsigned i = atomic_fetch_add_explicit(&b->n, 1, memory_order_relaxed);
    if (i < BIG)
        b->pages[i] = (uintptr_t)&here;
    int v = 0;
    int rc = chan_recv(b->c, &v);
    return (void *)(intptr_t)(rc == 0 ? v + here : -rc);
}

/* n tasks park on b->c, are fed and finish. */
static void run_burst(async_pool_t *pool, struct burst *b, unsigned n)
{
    static future_t *fs[BIG];
    for (unsigned i = 0; i < n; i++)
        cr_assert_not_null(fs[i] = async_run_on(pool, mark_and_recv, b));
    int64_t until = tu_deadline();
    async_pool_stats_t s;
    while (async_pool_stats(pool, &s) == 0 && s.parked < n)
        cr_assert(tu_spin_once(until), "%zu of %u tasks parked", s.parked, n);
    for (unsigned i = 0; i < n; i++) {
        int v = (int)i;
        cr_assert_eq(chan_send(b->c, &v), 0);
    }
    for (unsigned i = 0; i < n; i++) {
        void *r = NULL;
        cr_assert_eq(future_get(fs[i], &r), 0);
        cr_assert_eq((intptr_t)r, (intptr_t)i, "task %u returned %jd", i, (intmax_t)(intptr_t)r);
        future_free(fs[i]);
    }
}

static unsigned resident_of(const struct burst *b)
{
    unsigned r = 0;
    for (unsigned i = 0; i < BIG; i++)
        r += resident(b->pages[i]);
    return r;
}

/* API.md: what a burst used is given back. A pool whose worker never idles
 * keeps the stacks of a burst through the burst (returning pages in the
 * middle of one is work thrown away), and gives back the ones that then
 * stay free a whole period. */
Test(stacks, a_busy_pool_gives_back_what_stayed_free_a_period, .timeout = 120)
{
    async__test_trim_period(3600 * ASYNC_SECOND);
    async_pool_config_t cfg = { .threads = 1, .name = "stk", .stack_size = 44 * KIB };
    async_pool_t *pool = async_pool_create(&cfg);
    cr_assert_not_null(pool);
    static struct burst b;
    b.c = chan_make(sizeof(int), 0);
    cr_assert_not_null(b.c);
    future_t *k = async_run_on(pool, keeper, &b);
    cr_assert_not_null(k);

    run_burst(pool, &b, BIG);
    unsigned r = resident_of(&b);
    cr_assert_eq(r, BIG, "only %u of the burst's %u stacks are resident after it", r, BIG);

    /* Periods pass, each ended by a small burst whose releases look. The
     * decay's measure started at a look in the middle of the big burst,
     * so the stacks released after that have stayed free a whole period
     * only by the second look: then all but a few hundred go back. */
    const int64_t period = 20 * ASYNC_MILLISECOND;
    async__test_trim_period(period);
    for (int round = 0; round < 2; round++) {
        int64_t t = async_now();
        while (async_now() - t < 2 * period)
            async_sleep(period);
        run_burst(pool, &b, SMALL);
    }
    r = resident_of(&b);
    cr_assert_leq(r, BIG / 2, "%u of the burst's %u stacks still resident a period later",
                  r, BIG);

    atomic_store_explicit(&b.stop, true, memory_order_release);
    cr_assert_eq(future_get(k, NULL), 0);
    future_free(k);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(b.c);
}
