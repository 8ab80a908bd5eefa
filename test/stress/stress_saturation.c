/*
 * test/stress/stress_saturation.c — a pool at max_threads whose tasks all
 * block in chan_recv, fed one value at a time: the pool is saturated the
 * whole time but never deadlocked, and it logs one "saturated" line for the
 * episode, not one per task that blocks after a worker was freed.
 *
 * A plain program (the ThreadSanitizer build runs it; Criterion cannot run
 * there). Scale: argv[1] or $STRESS_SCALE (default 1). Prints what it
 * checked and "N passed, M failed"; exits non-zero on any failure.
 */
#include "stressmain.h"
#include "testutil.h"

#define MAX_THREADS 4
#define NTASKS      64

static void *recv_one(void *arg)
{
    int v = -1;
    chan_recv(arg, &v);
    return (void *)(intptr_t)v;
}

static void one_round(struct tally *t)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = tu_pool_thread(2, MAX_THREADS, &log); /* saturation: thread mode */
    chan_t *c = chan_make(sizeof(int), 0);
    future_t *fs[NTASKS];
    for (int i = 0; i < NTASKS; i++)
        fs[i] = async_run_on(pool, recv_one, c);
    tally_check(t, tu_wait_count(&log.saturated, 1), "no saturation line");
    long sum = 0;
    for (int i = 0; i < NTASKS; i++) {
        int v = i + 1;
        chan_send(c, &v);
    }
    for (int i = 0; i < NTASKS; i++) {
        void *r = NULL;
        tu_get(fs[i], &r);
        sum += (intptr_t)r;
        future_free(fs[i]);
    }
    tally_check(t, sum == (long)NTASKS * (NTASKS + 1) / 2, "values summed to %ld", sum);
    async_pool_destroy(pool, ASYNC_DRAIN);
    unsigned lines = atomic_load(&log.saturated);
    tally_check(t, lines == 1, "%u \"saturated\" lines for one episode", lines);
    chan_free(c);
    tu_log_fini(&log);
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    struct tally t;
    tally_init(&t, true);
    tally_begin(&t, "saturation_episode");
    unsigned rounds = stress_n(scale, 20);
    for (unsigned n = 0; n < rounds; n++)
        one_round(&t);
    tally_note(&t, "%u rounds of %d tasks blocked behind max_threads=%d", rounds, NTASKS,
               MAX_THREADS);
    return stress_finish(&t);
}
