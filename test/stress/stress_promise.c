/*
 * test/stress/stress_promise.c — promise completion racing promise_free, future_free, future_cancel, promise_fail and waiters: one outcome, seen by all.
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
    race_promise_completion(&t, stress_n(scale, 60000));
    return stress_finish(&t);
}
