/*
 * test/stressmain.c — scale parsing and the summary line of the stress
 * programs (see stressmain.h).
 */
#include "stressmain.h"

#include <stdio.h>
#include <stdlib.h>

double stress_scale(int argc, char **argv)
{
    const char *s = argc > 1 ? argv[1] : getenv("STRESS_SCALE");
    if (!s || !*s)
        return 1.0;
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v > 0)) {
        fprintf(stderr, "bad scale \"%s\": using 1\n", s);
        return 1.0;
    }
    return v;
}

unsigned stress_n(double scale, unsigned base)
{
    double n = scale * base;
    return n < 1 ? 1 : n > 1e9 ? 1000000000u : (unsigned)n;
}

int stress_finish(struct tally *t)
{
    printf("%lu passed, %lu failed\n", t->checks - t->failures, t->failures);
    if (t->failures)
        printf("first failure: %s\n", t->first);
    fflush(stdout);
    return t->failures == 0 && t->checks > 0 ? 0 : 1;
}
