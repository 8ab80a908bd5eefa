/*
 * chan_pipeline_stress — a pipeline of 1,000 tasks (receive, then send on
 * unbuffered channels) on a pool of 2 workers, fed by a plain thread: it
 * completes only because blocked workers are replaced; every item arrives
 * once and in order.
 *
 * Usage: chan_pipeline_stress [scale]
 */
#include "chanutil.h"

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    unsigned stages = (unsigned)ct_scaled(1000, scale, 100);
    size_t items = ct_scaled(2000, scale, 50);
    struct ct_score s = { 0 };
    struct ct_tally t = { 0 };
    int rc = ct_pipeline(stages, 2, items, &t);
    ct_score_add(&s, "pipeline on 2 workers", rc, &t, t.sent == items);
    t = (struct ct_tally){ 0 };
    rc = ct_pipeline(stages / 10, 1, items, &t);
    ct_score_add(&s, "pipeline on 1 worker", rc, &t, t.sent == items);
    return ct_score_end(&s);
}
