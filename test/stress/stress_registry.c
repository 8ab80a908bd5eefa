/*
 * test/stress/stress_registry.c — the wake-target registry (lib/park.c)
 * walked while it grows.
 *
 * A pool's ASYNC_CANCEL destroy wakes every registered target (every stack
 * fiber and every parker of the process), and the dump walks them too. A
 * new stack fiber or parker is registered while other threads may be
 * walking: it must be set up before the registry publishes it. The soak
 * under ThreadSanitizer once caught a destroy reading a new fiber's state
 * while carve() was still writing it (carve registered the fiber first).
 *
 * Here one thread makes the registry grow: a goroutine-mode pool gets ever
 * more tasks blocked on one channel, so that each round carves new stacks
 * (stacks are never freed, only reused: a new one is carved only when more
 * are in use at once than ever before), and each round's new tasks bring
 * new parkers (a thread-mode pool that grows). Meanwhile another thread
 * creates thread-mode pools and destroys them with ASYNC_CANCEL, and a third
 * dumps in a loop (into a memory stream), both walking the registry.
 * Checked: every blocked task ends when the channel closes, and every
 * destroy succeeds; the ThreadSanitizer build (CI's tsan step) checks the
 * rest.
 *
 * Scale: argv[1] or $STRESS_SCALE (default 1): 20 rounds of 100 tasks in
 * goroutine mode, a quarter as many in thread mode (a thread each), and
 * 500 destroys per mode at most.
 * Prints what it checked and "N passed, M failed".
 */
#include "stressmain.h"
#include "testutil.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#define PER_ROUND 100u

static atomic_bool stop;
static atomic_uint destroys, destroy_failed, dumps;   /* tallied by main */

static void *receive(void *arg)
{
    int v;
    return (void *)(intptr_t)chan_recv(arg, &v);
}

static unsigned max_destroys;   /* per mode; set by main */

static void *destroyer(void *arg)
{
    (void)arg;
    /* a thread per pool: at most max_destroys of them per mode (TSan counts
     * every thread and stack fiber the process ever made against its 8,128,
     * and valgrind runs one thread at a time) */
    for (unsigned k = 0; k < max_destroys && !atomic_load(&stop); k++) {
        async_pool_config_t cfg = { .threads = 1, .name = "walker",
                                    .stack_size = ASYNC_STACK_THREAD };
        async_pool_t *p = async_pool_create(&cfg);
        if (!p)
            continue;
        future_t *f = async_run_on(p, tu_task_noop, NULL);
        if (async_pool_destroy(p, ASYNC_CANCEL) != 0)
            atomic_fetch_add(&destroy_failed, 1);
        future_free(f);
        atomic_fetch_add(&destroys, 1);
        sched_yield();   /* valgrind runs one thread at a time: let the
                            growing pool have its turn */
    }
    return NULL;
}

static void *dumper(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        if (!mem)
            continue;
        async_dump(mem);
        fclose(mem);
        free(text);
        atomic_fetch_add(&dumps, 1);
        sched_yield();
    }
    return NULL;
}

static void grow(struct tally *t, unsigned rounds, bool goroutine)
{
    async_pool_config_t cfg = {
        .threads = 2,
        .max_threads = goroutine ? 0 : rounds * PER_ROUND + 4,
        .name = "grower",
        .stack_size = goroutine ? (size_t)32 * 1024 : ASYNC_STACK_THREAD,
    };
    async_pool_t *pool = async_pool_create(&cfg);
    chan_t *ch = chan_make(sizeof(int), 0);
    if (!tally_check(t, pool && ch, "pool or channel"))
        return;
    future_t **fs = calloc((size_t)rounds * PER_ROUND, sizeof *fs);
    if (!tally_check(t, fs != NULL, "out of memory"))
        return;
    unsigned n = 0;
    for (unsigned r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < PER_ROUND; i++)
            if ((fs[n] = async_run_on(pool, receive, ch)) != NULL)
                n++;
        async_pool_stats_t st;
        int64_t until = tu_deadline();
        do   /* this round's tasks blocked: their stacks or threads exist */
            async_pool_stats(pool, &st);
        while (tu_blocked(&st) < n && tu_spin_once(until));
    }
    chan_close(ch);
    unsigned closed = 0;
    for (unsigned i = 0; i < n; i++) {
        void *v = NULL;
        closed += tu_get(fs[i], &v) == 0 && (intptr_t)v == EPIPE;
        future_free(fs[i]);
    }
    tally_check(t, closed == n && n == rounds * PER_ROUND,
                "%u of %u blocked tasks ended by the close (%u submitted)", closed,
                rounds * PER_ROUND, n);
    tally_check(t, async_pool_destroy(pool, ASYNC_DRAIN) == 0, "destroy failed");
    chan_free(ch);
    free(fs);
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    unsigned rounds = stress_n(scale, 20);
    max_destroys = stress_n(scale, 500);
    struct tally t;
    tally_init(&t, true);
    for (int mode = 0; mode < 2; mode++) {
        tally_begin(&t, mode == 0 ? "registry_grows_under_walks_goroutine"
                                  : "registry_grows_under_walks_thread");
        atomic_store(&stop, false);
        pthread_t d, w;
        pthread_create(&d, NULL, destroyer, NULL);
        pthread_create(&w, NULL, dumper, NULL);
        /* thread mode: a thread per blocked task, a quarter as many (TSan
         * allows 8,128 threads in all; valgrind runs them one at a time) */
        unsigned r = mode == 0 ? rounds : (rounds + 3) / 4;
        grow(&t, r, mode == 0);
        atomic_store(&stop, true);
        pthread_join(d, NULL);
        pthread_join(w, NULL);
        tally_check(&t, atomic_load(&destroy_failed) == 0, "%u cancelling destroys failed",
                    atomic_load(&destroy_failed));
        tally_note(&t, "%u blocked tasks in %u rounds; %u cancelling destroys and %u dumps "
                   "meanwhile", r * PER_ROUND, r, atomic_load(&destroys),
                   atomic_load(&dumps));
    }
    return stress_finish(&t);
}
