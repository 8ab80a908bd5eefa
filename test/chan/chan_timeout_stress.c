/*
 * chan_timeout_stress — sends and receives with deadlines of a few
 * microseconds racing each other: a send that timed out is never received,
 * one that returned 0 is received exactly once; a receive that timed out
 * took nothing.
 *
 * Usage: chan_timeout_stress [scale]
 */
#include "chanutil.h"

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    size_t per = ct_scaled(50000, scale, 1000);
    struct ct_score s = { 0 };
    struct ct_tally t = { 0 };
    int rc = ct_timeout_race(0, 4, 4, per, &t);
    ct_score_add(&s, "unbuffered", rc, &t, true);
    t = (struct ct_tally){ 0 };
    rc = ct_timeout_race(2, 4, 4, per, &t);
    ct_score_add(&s, "buffered 2", rc, &t, true);
    t = (struct ct_tally){ 0 };
    rc = ct_timeout_race(0, 1, 6, per, &t);
    ct_score_add(&s, "unbuffered, 1 sender x 6 receivers", rc, &t, true);
    return ct_score_end(&s);
}
