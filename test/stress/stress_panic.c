/*
 * test/stress/stress_panic.c — panic isolation: thousands of tasks, every 7th panics, nested panics run by waiting parents; results, messages, LIFO defers, log lines; the pool stays healthy.
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
    race_panic_isolation(&t, stress_n(scale, 10000));
    return stress_finish(&t);
}
