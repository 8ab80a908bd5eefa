/*
 * test/stress/stress_forkjoin.c — recursive fork/join, fib(25) with a task at every call and no cutoff, on pools of 1 and 2 workers: right result, no deadlock.
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
    int n = scale >= 1 ? 25 : scale >= 0.3 ? 22 : 18;
    race_forkjoin_fib(&t, 1, n);
    race_forkjoin_fib(&t, 2, n);
    return stress_finish(&t);
}
