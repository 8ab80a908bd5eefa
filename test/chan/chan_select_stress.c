/*
 * chan_select_stress — selects mixing send, receive and NULL cases with
 * deadlines 0, short and forever, against selecting consumers and plain
 * receivers, over buffered and unbuffered channels that are finally closed
 * under them: every value sent once is received once, a send that did not
 * fire is never received. Then the uniform choice among ready cases.
 *
 * Usage: chan_select_stress [scale]
 */
#include "chanutil.h"

#include <stdio.h>

/* Two always-ready cases: each must be chosen 45%..55% of the time. */
static bool fairness(size_t n)
{
    chan_t *a = chan_make(sizeof(int), 1), *b = chan_make(sizeof(int), 1);
    if (!a || !b)
        return false;
    int v = 0;
    chan_send(a, &v);
    chan_send(b, &v);
    chan_case_t cs[2] = {
        { .chan = a, .op = CHAN_RECV, .elem = &v },
        { .chan = b, .op = CHAN_RECV, .elem = &v },
    };
    size_t count[2] = { 0, 0 };
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        size_t k = 2;
        ok = chan_select(cs, 2, 0, &k) == 0 && k < 2;
        if (ok) {
            count[k]++;
            ok = chan_send_until(cs[k].chan, &v, 0) == 0;
        }
    }
    printf("fairness: case 0 %zu, case 1 %zu of %zu\n", count[0], count[1], n);
    ok = ok && count[0] * 100 >= n * 45 && count[0] * 100 <= n * 55;
    chan_free(a);
    chan_free(b);
    return ok;
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    size_t per = ct_scaled(40000, scale, 500);
    struct ct_score s = { 0 };
    struct ct_tally t = { 0 };
    int rc = ct_select_race(4, 2, 3, 3, per, &t);
    ct_score_add(&s, "4 channels, 3 mixers x 3 consumers", rc, &t, t.sent == 3 * per);
    t = (struct ct_tally){ 0 };
    rc = ct_select_race(2, 1, 4, 2, per, &t);
    ct_score_add(&s, "2 channels, 4 mixers x 2 consumers", rc, &t, t.sent == 4 * per);
    t = (struct ct_tally){ 0 };
    rc = ct_select_race(8, 4, 2, 4, per, &t);
    ct_score_add(&s, "8 channels, 2 mixers x 4 consumers", rc, &t, t.sent == 2 * per);
    t = (struct ct_tally){ 0 };
    ct_score_add(&s, "fairness", 0, &t, fairness(100000));
    return ct_score_end(&s);
}
