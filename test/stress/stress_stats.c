/*
 * test/stress/stress_stats.c — async_pool_stats read in a loop while
 * replacement workers start (every worker blocks, work is queued): every
 * snapshot is consistent in itself — peak_threads >= threads,
 * blocked <= threads, idle <= threads, queued <= submitted (never wrapped).
 *
 * A plain program (the ThreadSanitizer build runs it; Criterion cannot run
 * there). Scale: argv[1] or $STRESS_SCALE (default 1). Prints what it
 * checked and "N passed, M failed"; exits non-zero on any failure.
 */
#include "stressmain.h"
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>

#define BLOCKERS 24

struct reader {
    async_pool_t *pool;
    atomic_int    stop;
    unsigned long reads, bad;
    char          first[200];
};

static void *read_stats(void *arg)
{
    struct reader *r = arg;
    while (!atomic_load(&r->stop)) {
        /* Give the CPU away between reads: a reader that never yields starves
         * the workers it watches where threads take turns on one lock
         * (valgrind), and the round's 24 blockers never all start. */
        sched_yield();
        async_pool_stats_t s;
        if (async_pool_stats(r->pool, &s) != 0)
            continue;
        r->reads++;
        if (s.peak_threads >= s.threads && s.blocked <= s.threads &&
            s.idle <= s.threads && s.queued <= s.submitted)
            continue;
        if (r->bad++ == 0)
            snprintf(r->first, sizeof r->first,
                     "threads %u peak %u blocked %u idle %u queued %zu submitted %llu",
                     s.threads, s.peak_threads, s.blocked, s.idle, s.queued,
                     (unsigned long long)s.submitted);
    }
    return NULL;
}

static void *block_on_chan(void *arg)
{
    chan_recv(arg, NULL);   /* ends with EPIPE when the channel closes */
    return NULL;
}

static void one_round(struct tally *t)
{
    async_pool_t *pool = tu_pool_thread(1, BLOCKERS + 8, NULL);
    if (!tally_check(t, pool != NULL, "async_pool_create failed"))
        return;
    chan_t *c = chan_make(0, 0);
    struct reader r = { .pool = pool };
    pthread_t th;
    pthread_create(&th, NULL, read_stats, &r);
    future_t *fs[BLOCKERS];
    for (int i = 0; i < BLOCKERS; i++)
        fs[i] = async_run_on(pool, block_on_chan, c);
    async_pool_stats_t s = { 0 };
    int64_t until = tu_deadline();
    while (async_pool_stats(pool, &s) == 0 && s.blocked < BLOCKERS && tu_spin_once(until))
        ;
    tally_check(t, s.blocked == BLOCKERS, "only %u of %d tasks blocked", s.blocked, BLOCKERS);
    chan_close(c);
    for (int i = 0; i < BLOCKERS; i++) {
        tu_get(fs[i], NULL);
        future_free(fs[i]);
    }
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    tally_check(t, r.bad == 0, "%lu of %lu snapshots inconsistent, first: %s", r.bad, r.reads,
                r.first);
    async_pool_destroy(pool, ASYNC_DRAIN);
    chan_free(c);
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    struct tally t;
    tally_init(&t, true);
    tally_begin(&t, "stats_snapshot");
    unsigned rounds = stress_n(scale, 40);
    for (unsigned n = 0; n < rounds; n++)
        one_round(&t);
    tally_note(&t, "%u rounds, %d workers started in each", rounds, BLOCKERS);
    return stress_finish(&t);
}
