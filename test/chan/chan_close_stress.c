/*
 * chan_close_stress — close racing with blocked and running senders and
 * receivers: a value is sent (0) exactly when it is received, exactly once;
 * a send that saw EPIPE is never received; receivers drain, then EPIPE.
 *
 * Usage: chan_close_stress [scale]
 */
#include "chanutil.h"

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    unsigned rounds = (unsigned)ct_scaled(200, scale, 8);
    size_t per = ct_scaled(2000, scale, 100);
    struct ct_score s = { 0 };
    static const size_t caps[] = { 0, 1, 4, 64 };
    static const char *names[] = { "unbuffered", "buffered 1", "buffered 4", "buffered 64" };
    for (int i = 0; i < 4; i++) {
        struct ct_tally t = { 0 };
        int rc = ct_close_race(caps[i], 4, 3, per, rounds, &t);
        ct_score_add(&s, names[i], rc, &t, true);
    }
    return ct_score_end(&s);
}
