/*
 * test/stress/stress_destroy.c — pool destruction under load: thousands queued under DRAIN and CANCEL, tasks blocked forever ended by CANCEL, a drain while a fork/join splits (foreign submissions refused).
 *
 * A plain program (the ThreadSanitizer build runs it; Criterion cannot run
 * there). Scale: argv[1] or $STRESS_SCALE (default 1). Prints what it
 * checked and "N passed, M failed"; exits non-zero on any failure.
 */
#include "stressmain.h"

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    struct tally t;
    tally_init(&t, true);
    unsigned rounds = stress_n(scale, 4);
    for (unsigned r = 0; r < rounds; r++) {
        race_destroy_queued(&t, 10000, 1 + r % 2, ASYNC_DRAIN);
        race_destroy_queued(&t, 10000, 1 + r % 2, ASYNC_CANCEL);
    }
    race_cancel_blocked(&t, stress_n(scale, 8));
    for (unsigned r = 0; r < rounds; r++)
        race_drain_forkjoin(&t, 18);
    return stress_finish(&t);
}
