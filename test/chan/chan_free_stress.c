/*
 * chan_free_stress — a channel may be freed the moment its hand-off is
 * visible to the freeing side: the party on the other side must not touch
 * the channel after that (API.md, Channels; chan.c, "Freeing").
 *
 * Each round makes a fresh unbuffered channel, lets a task and the main
 * thread meet on it once, and has the side that sees the outcome first free
 * it at once, while the other side may still be inside its call. A firer
 * that touched the channel after the fire (its unlock, its wake) would be a
 * use-after-free: AddressSanitizer and ThreadSanitizer report it, a plain
 * build may crash. Random spins before each side's call make either side
 * arrive first, so each scenario covers both the blocked-then-fired and the
 * firing side. Scenarios:
 *   recv_free      main receives, then frees; a task sends
 *   send_free      a task receives, then frees; main sends
 *   select_free    a task receives, then frees; main sends through chan_select
 *   close_free     a task receives (EPIPE), then frees; main closes
 *   close_sender   main sends (EPIPE), then frees; a task closes
 *   timed_free     a task receives with a short deadline (on a timeout, once
 *                  more without one), then frees; main sends: a timeout that
 *                  races the hand-off must still wait for its fire
 * each on a goroutine-mode and a thread-mode pool.
 *
 * Usage: chan_free_stress [scale]
 */
#include "chanutil.h"

#include <stdio.h>
#include <string.h>

enum scenario { RECV_FREE, SEND_FREE, SELECT_FREE, CLOSE_FREE, CLOSE_SENDER, TIMED_FREE,
                NSCENARIOS };
static const char *const names[NSCENARIOS] = {
    "recv_free", "send_free", "select_free", "close_free", "close_sender", "timed_free",
};

struct round {
    enum scenario sc;
    chan_t       *c;
    unsigned      jitter;     /* spins before the task's call */
    int64_t       timeout;    /* timed_free: the receive's budget */
    uint64_t      value;      /* what the task sent or received */
    int           rc;         /* the task's call */
};

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

static void *task(void *arg)
{
    struct round *r = arg;
    spin(r->jitter);
    switch (r->sc) {
    case RECV_FREE:
        r->rc = chan_send(r->c, &r->value);
        break;   /* main frees */
    case SEND_FREE:
    case SELECT_FREE:
    case CLOSE_FREE:
        r->rc = chan_recv(r->c, &r->value);
        chan_free(r->c);
        break;
    case CLOSE_SENDER:
        r->rc = chan_close(r->c);
        break;   /* main frees */
    case TIMED_FREE:
        r->rc = chan_recv_until(r->c, &r->value, async_now() + r->timeout);
        if (r->rc == ETIMEDOUT)
            r->rc = chan_recv(r->c, &r->value);
        chan_free(r->c);
        break;
    default:
        break;
    }
    return NULL;
}

/* Main's side of one round; returns its call's result. */
static int main_side(struct round *r, uint64_t v)
{
    uint64_t got = 0;
    int rc;
    switch (r->sc) {
    case RECV_FREE:
        rc = chan_recv(r->c, &got);
        chan_free(r->c);
        return rc == 0 && got != v ? -1 : rc;
    case SEND_FREE:
    case TIMED_FREE:
        return chan_send(r->c, &v);   /* the task frees */
    case SELECT_FREE: {
        chan_case_t cs = { .chan = r->c, .op = CHAN_SEND, .elem = &v };
        size_t fired = SIZE_MAX;
        rc = chan_select(&cs, 1, ASYNC_FOREVER, &fired);
        return rc == 0 && fired != 0 ? -1 : rc;
    }
    case CLOSE_FREE:
        return chan_close(r->c);
    case CLOSE_SENDER:
        rc = chan_send(r->c, &v);
        chan_free(r->c);
        return rc;
    default:
        return -1;
    }
}

/* Did the round end as its scenario must? */
static bool round_ok(const struct round *r, int main_rc, uint64_t v)
{
    switch (r->sc) {
    case RECV_FREE:
        return main_rc == 0 && r->rc == 0;
    case SEND_FREE:
    case SELECT_FREE:
    case TIMED_FREE:
        return main_rc == 0 && r->rc == 0 && r->value == v;
    case CLOSE_FREE:
        return main_rc == 0 && r->rc == EPIPE;
    case CLOSE_SENDER:
        return main_rc == EPIPE && r->rc == 0;
    default:
        return false;
    }
}

static int run(async_pool_t *pool, enum scenario sc, size_t rounds, struct ct_tally *t)
{
    uint64_t rng = 0x9e3779b97f4a7c15u ^ (uint64_t)sc;
    struct round r;
    for (size_t i = 0; i < rounds; i++) {
        uint64_t v = i + 1;
        memset(&r, 0, sizeof r);
        r.sc = sc;
        r.value = sc == RECV_FREE ? v : 0;
        r.c = chan_make(sizeof(uint64_t), 0);
        if (!r.c)
            return ENOMEM;
        r.jitter = (unsigned)(ct_rand(&rng) % 2000);
        r.timeout = (int64_t)(ct_rand(&rng) % 20000);
        future_t *f = async_run_on(pool, task, &r);
        if (!f) {
            chan_free(r.c);
            return errno;
        }
        spin((unsigned)(ct_rand(&rng) % 2000));
        int main_rc = main_side(&r, v);
        future_get(f, NULL);   /* the task's call has returned */
        future_free(f);
        if (round_ok(&r, main_rc, v)) {
            t->sent++;
            t->received++;
        } else {
            t->errors++;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    size_t rounds = ct_scaled(20000, scale, 1000);
    struct ct_score s = { 0 };
    for (int mode = 0; mode < 2; mode++) {
        async_pool_t *pool = mode == 0 ? tu_pool(2, 4, NULL) : tu_pool_thread(2, 4, NULL);
        if (!pool) {
            printf("no pool: %s\n", strerror(errno));
            return 1;
        }
        for (int sc = 0; sc < NSCENARIOS; sc++) {
            char name[64];
            snprintf(name, sizeof name, "%s (%s)", names[sc], mode == 0 ? "goroutine" : "thread");
            struct ct_tally t = { 0 };
            int rc = run(pool, (enum scenario)sc, rounds, &t);
            ct_score_add(&s, name, rc, &t, t.sent == rounds);
        }
        async_pool_destroy(pool, ASYNC_DRAIN);
    }
    return ct_score_end(&s);
}
