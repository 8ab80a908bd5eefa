/*
 * chan_rendezvous_stress — an unbuffered send returns only once the receiver
 * holds the value: after each send the sender reads the receiver's element
 * (ordered by the channel alone) and finds its own value there.
 *
 * Usage: chan_rendezvous_stress [scale]
 */
#include "chanutil.h"

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    size_t rounds = ct_scaled(500000, scale, 10000);
    struct ct_score s = { 0 };
    struct ct_tally t = { 0 };
    int rc = ct_rendezvous(rounds, &t);
    ct_score_add(&s, "rendezvous", rc, &t, t.sent == rounds);
    return ct_score_end(&s);
}
