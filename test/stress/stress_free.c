/*
 * test/stress/stress_free.c — future_free before, during and after the task and racing its completion: every task runs exactly once, nothing leaks.
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
    race_future_free(&t, stress_n(scale, 50000));
    return stress_finish(&t);
}
