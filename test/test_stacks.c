/*
 * test/test_stacks.c — the memory of goroutine mode's stacks (lib/stacks.c):
 * stacks a worker takes come with their first page resident, fresh or
 * given back before, in this process and in a forked child; a pool that
 * never idles keeps a burst's stacks through the burst and gives back, a
 * period later, the ones that stayed free all that time.
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

/* The top page of fiber f's stack: the first one a task touches. */
static uintptr_t top_page(const struct async_fiber *f)
{
    return (uintptr_t)(f->lo + f->size - page());
}

/* Takes n stacks of c in batches, as a worker refilling its cache does;
 * returns how many of their top pages are resident. */
static size_t take(struct async_stack_class *c, struct async_fiber **fs, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t want = n - i < ASYNC_FIBER_BATCH ? n - i : ASYNC_FIBER_BATCH;
        size_t got = async__fiber_take(c, fs + i, want);
        cr_assert_eq(got, want, "took %zu of %zu stacks", got, want);
        i += got;
    }
    size_t r = 0;
    for (size_t i = 0; i < n; i++)
        r += resident(top_page(fs[i]));
    return r;
}

/* ------------------------------------------------------------ resident */

/* Fresh stacks come resident (one system call for the batch), where the
 * kernel takes it; where it does not, the library knows, and their pages
 * are untouched until used. */
Test(stacks, a_batch_of_fresh_stacks_comes_resident)
{
    struct async_stack_class *c = async__stack_class(20 * KIB);
    cr_assert_not_null(c);
    struct async_fiber *fs[ASYNC_FIBER_BATCH];
    size_t r = take(c, fs, ASYNC_FIBER_BATCH);
    bool populating = async__stacks_populating();
    cr_assert_eq(r, populating ? ASYNC_FIBER_BATCH : 0,
                 "%zu of %u fresh stacks resident (populating: %d)", r,
                 ASYNC_FIBER_BATCH, populating);
    for (size_t i = 0; i < ASYNC_FIBER_BATCH; i++)
        async__fiber_release(fs[i]);
}

/* Stacks given back to the kernel (cold) are resident again when taken. */
#define COLD_ROUND 400u

Test(stacks, stacks_given_back_come_resident_again)
{
    struct async_stack_class *c = async__stack_class(28 * KIB);
    cr_assert_not_null(c);
    static struct async_fiber *fs[COLD_ROUND];
    take(c, fs, COLD_ROUND);
    for (size_t i = 0; i < COLD_ROUND; i++) {
        *(volatile char *)top_page(fs[i]) = 1;   /* resident, whatever the kernel */
        async__fiber_release(fs[i]);
    }
    /* all but a few hundred go back to the kernel */
    async__stacks_trim(c);
    size_t left = 0;
    for (size_t i = 0; i < COLD_ROUND; i++)
        left += resident(top_page(fs[i]));
    cr_assert_lt(left, COLD_ROUND, "the trim gave no page back (%zu resident)", left);
    size_t r = take(c, fs, COLD_ROUND);
    if (async__stacks_populating())
        cr_assert_eq(r, COLD_ROUND, "%zu of %u stacks resident", r, COLD_ROUND);
    else
        cr_assert_eq(r, left, "%zu resident, %zu before", r, left);
    for (size_t i = 0; i < COLD_ROUND; i++)
        async__fiber_release(fs[i]);
}

/* A forked child's stacks come resident in the child: the call names the
 * calling process, not one it was forked from. The parent takes a batch
 * first, so that any state kept from that call is there to go wrong. */
Test(stacks, a_forked_child_makes_its_own_stacks_resident)
{
    struct async_stack_class *c = async__stack_class(36 * KIB);
    cr_assert_not_null(c);
    struct async_fiber *fs[ASYNC_FIBER_BATCH];
    take(c, fs, ASYNC_FIBER_BATCH);
    bool populating = async__stacks_populating();
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        struct async_fiber *mine[ASYNC_FIBER_BATCH];
        size_t got = async__fiber_take(c, mine, ASYNC_FIBER_BATCH), r = 0;
        for (size_t i = 0; i < got; i++) {
            unsigned char v = 0;
            if (mincore((void *)top_page(mine[i]), 1, &v) == 0)
                r += v & 1;
        }
        _exit(got == ASYNC_FIBER_BATCH && r == (populating ? got : 0) ? 0 : 1);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the child's batch was not as resident as the parent's (status %d)", status);
    for (size_t i = 0; i < ASYNC_FIBER_BATCH; i++)
        async__fiber_release(fs[i]);
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
