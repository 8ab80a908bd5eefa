/*
 * test/stressmain.h — what every stress program does around its scenarios:
 * read the scale, print what was checked, end with "N passed, M failed" and
 * an exit status (0 only when nothing failed).
 *
 * The scale is argv[1] or $STRESS_SCALE: a positive number, 1 by default,
 * multiplying every round count (0.1 for a quick run, 10 for a soak).
 */
#ifndef STRESSMAIN_H
#define STRESSMAIN_H

#include "race.h"

double   stress_scale(int argc, char **argv);
/* base * scale, at least 1. */
unsigned stress_n(double scale, unsigned base);
/* Prints the summary line; returns the exit status. */
int      stress_finish(struct tally *t);

#endif /* STRESSMAIN_H */
