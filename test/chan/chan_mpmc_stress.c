/*
 * chan_mpmc_stress — producers x consumers x 1,000,000 items over one
 * channel, buffered and unbuffered, on plain threads and on pool tasks mixed
 * with threads: every item received exactly once (ledger and checksum), each
 * producer's items in order at every consumer.
 *
 * Usage: chan_mpmc_stress [scale]   (sizes multiplied by it; $STRESS_SCALE)
 */
#include "chanutil.h"

#include <stdio.h>

static void run(struct ct_score *s, const char *name, size_t cap, unsigned p, unsigned c,
                size_t items, enum ct_mode mode, async_pool_t *pool)
{
    struct ct_tally t = { 0 };
    int rc = ct_mpmc(cap, p, c, items, mode, pool, &t);
    ct_score_add(s, name, rc, &t, t.sent == items);
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    size_t items = ct_scaled(1000000, scale, 10000);
    struct ct_score s = { 0 };
    async_pool_t *pool = tu_pool(2, 0, NULL);
    if (!pool) {
        perror("async_pool_create");
        return 1;
    }
    run(&s, "buffered 64, 4x4 threads", 64, 4, 4, items, CT_THREADS, NULL);
    run(&s, "buffered 1, 8x2 threads", 1, 8, 2, items, CT_THREADS, NULL);
    run(&s, "unbuffered, 4x4 threads", 0, 4, 4, items, CT_THREADS, NULL);
    run(&s, "unbuffered, 2x8 threads", 0, 2, 8, items / 2, CT_THREADS, NULL);
    run(&s, "buffered 16, 4x4 tasks and threads", 16, 4, 4, items / 2, CT_MIXED, pool);
    run(&s, "unbuffered, 4x4 tasks and threads", 0, 4, 4, items / 4, CT_MIXED, pool);
    run(&s, "buffered 8, 3x3 tasks", 8, 3, 3, items / 4, CT_TASKS, pool);
    async_pool_destroy(pool, ASYNC_DRAIN);
    return ct_score_end(&s);
}
