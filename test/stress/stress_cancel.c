/*
 * test/stress/stress_cancel.c — future_cancel racing a task's start, by a worker and by a waiter running it inline: 0 and never ran, or EBUSY/EALREADY and ran once.
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
    race_cancel_vs_start(&t, stress_n(scale, 50000));
    return stress_finish(&t);
}
