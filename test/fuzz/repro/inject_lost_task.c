/*
 * inject_lost_task.c — a task submitted from outside the pool can become
 * invisible to its workers, forever.
 *
 * lib/pool.c tests the injection queue for emptiness with
 * `inj_head == inj_stub` (inject_empty, used by inject_pop's fast path and
 * by work_visible). That is not an emptiness test for Vyukov's queue once
 * the consumer has re-pushed the stub: when a worker pops the last node A
 * (tail == head == A, so it re-pushes the stub) while a submitter pushes B
 * (B's exchange on inj_head comes before the stub's), the queue ends as
 * tail = B -> stub, head == stub. B is queued, but inject_empty() says
 * empty: the worker parks idle, every wake finds "nothing", and B never
 * runs (a finite-deadline wait times out; future_get would run it inline;
 * async_pool_destroy(ASYNC_DRAIN) waits for quiescence forever).
 *
 * This program submits from one thread to a one-worker pool and waits with
 * a deadline (never inline); it stops at the first task that does not start
 * within 5 s and prints the pool's stats (threads 1, idle 1, queued 1).
 *
 *   cc -Iinclude test/fuzz/repro/inject_lost_task.c build/lib/libasync.a -lpthread -ldl
 */
#include <async.h>
#include <stdio.h>

static void *noop(void *arg)
{
    return arg;
}

int main(void)
{
    async_pool_config_t cfg = { .threads = 1, .max_threads = 1 };
    async_pool_t *pool = async_pool_create(&cfg);
    for (long i = 0; i < 20000000; i++) {
        future_t *a = async_run_on(pool, noop, NULL);
        future_t *b = async_run_on(pool, noop, NULL);
        int ra = future_get_until(a, NULL, async_now() + 5 * ASYNC_SECOND);
        int rb = future_get_until(b, NULL, async_now() + 5 * ASYNC_SECOND);
        if (ra || rb) {
            async_pool_stats_t st;
            async_pool_stats(pool, &st);
            printf("round %ld: task never started (%d %d); threads %u idle %u queued %zu\n",
                   i, ra, rb, st.threads, st.idle, st.queued);
            return 1;   /* the pool cannot be drained: do not destroy it */
        }
        future_free(a);
        future_free(b);
    }
    async_pool_destroy(pool, ASYNC_DRAIN);
    puts("no lost task");
    return 0;
}
