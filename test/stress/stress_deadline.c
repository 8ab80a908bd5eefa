/*
 * test/stress/stress_deadline.c — waits with deadlines inside tasks (future_get_until, future_wait_any) racing the completion of what they wait for.
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
    race_deadline_waits(&t, stress_n(scale, 10000));
    return stress_finish(&t);
}
