/*
 * test/stress/stress_blocking.c — blocked-worker replacement (chains of waits on a one-worker pool) and the saturation line at max_threads.
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
    race_blocked_replacement(&t, stress_n(scale, 40), 16);
    race_saturation(&t, stress_n(scale, 40));
    return stress_finish(&t);
}
