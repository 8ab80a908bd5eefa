/*
 * chan_cancel_stress — tasks blocked in chan_send, chan_recv and chan_select
 * cancelled at random moments while a plain thread serves them: a cancelled
 * send is never delivered, a cancelled receive takes nothing, and every
 * completed operation is accounted for exactly once.
 *
 * Usage: chan_cancel_stress [scale]
 */
#include "chanutil.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    unsigned rounds = (unsigned)ct_scaled(400, scale, 10);
    struct ct_score s = { 0 };
    async_pool_t *pool = tu_pool(2, 0, NULL);
    if (!pool) {
        perror("async_pool_create");
        return 1;
    }
    struct ct_tally t = { 0 };
    int rc = ct_cancel_race(pool, 24, rounds, &t);
    ct_score_add(&s, "24 tasks on 2 workers", rc, &t, true);
    async_pool_destroy(pool, ASYNC_DRAIN);
    pool = tu_pool(1, 0, NULL);
    if (!pool) {
        perror("async_pool_create");
        return 1;
    }
    t = (struct ct_tally){ 0 };
    rc = ct_cancel_race(pool, 6, rounds, &t);
    ct_score_add(&s, "6 tasks on 1 worker", rc, &t, true);
    async_pool_destroy(pool, ASYNC_DRAIN);
    return ct_score_end(&s);
}
