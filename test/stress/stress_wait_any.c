/*
 * test/stress/stress_wait_any.c — future_wait_any on an array holding one
 * future many times, racing that future's completion: the answer is always
 * index 0, the lowest done entry, never an entry the scan happened to reach
 * first after the completion.
 *
 * A plain program (the ThreadSanitizer build runs it; Criterion cannot run
 * there). Scale: argv[1] or $STRESS_SCALE (default 1). Prints what it
 * checked and "N passed, M failed"; exits non-zero on any failure.
 *
 * The completion must land while wait_any scans the array, so the completer
 * waits a random time up to a few times what one whole call takes (measured
 * first, on an array already done): a fair share of the rounds hit the scan.
 */
#include "stressmain.h"
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>

#define NFUTURES 4096

struct round {
    pthread_barrier_t start;
    promise_t        *p;
    int64_t           delay_ns;
};

static void *completer(void *arg)
{
    struct round *r = arg;
    pthread_barrier_wait(&r->start);
    int64_t until = tu_clock() + r->delay_ns;
    while (tu_clock() < until)
        ;
    promise_complete(r->p, NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    struct tally t;
    tally_init(&t, true);
    tally_begin(&t, "wait_any_lowest");
    future_t **fs = calloc(NFUTURES, sizeof *fs);
    if (!fs)
        return 1;

    /* How long one call takes on a done array. */
    promise_t *done = promise_make();
    promise_complete(done, NULL);
    future_t *df = promise_future(done);
    for (size_t i = 0; i < NFUTURES; i++)
        fs[i] = df;
    size_t index = SIZE_MAX;
    int64_t t0 = tu_clock();
    future_wait_any(fs, NFUTURES, ASYNC_FOREVER, &index);
    int64_t span = tu_clock() - t0;
    future_free(df);
    promise_free(done);

    unsigned rounds = stress_n(scale, 400), wrong = 0;
    for (unsigned n = 0; n < rounds; n++) {
        struct round r = { .p = promise_make(),
                           .delay_ns = (int64_t)(rand() % 1000) * 3 * span / 1000 };
        future_t *f = promise_future(r.p);
        for (size_t i = 0; i < NFUTURES; i++)
            fs[i] = f;
        pthread_barrier_init(&r.start, NULL, 2);
        pthread_t th;
        pthread_create(&th, NULL, completer, &r);
        pthread_barrier_wait(&r.start);
        index = SIZE_MAX;
        int rc = future_wait_any(fs, NFUTURES, ASYNC_FOREVER, &index);
        pthread_join(th, NULL);
        tally_check(&t, rc == 0, "round %u: future_wait_any returned %d", n, rc);
        if (!tally_check(&t, index == 0, "round %u: index %zu, not 0", n, index))
            wrong++;
        pthread_barrier_destroy(&r.start);
        future_free(f);
        promise_free(r.p);
    }
    tally_note(&t, "%u rounds over %d entries (one call: %lld ns), %u wrong index",
               rounds, NFUTURES, (long long)span, wrong);
    free(fs);
    return stress_finish(&t);
}
