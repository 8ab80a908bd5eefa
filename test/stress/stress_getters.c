/*
 * test/stress/stress_getters.c — many threads in future_get on one future (a task's, a promise's, a panicking task's): all see the same outcome, the task runs once. Then threads outside a pool that submit and wait at once, through its outside slot.
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
    race_many_getters(&t, stress_n(scale, 20000), 8);
    race_outside_slot(&t, stress_n(scale, 20000));
    race_outside_fibers(&t, stress_n(scale, 20000));
    return stress_finish(&t);
}
