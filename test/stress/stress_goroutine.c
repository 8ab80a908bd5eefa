/*
 * test/stress/stress_goroutine.c — goroutine mode under load: tasks parked
 * and resumed on other workers (ping-pong over unbuffered channels, many
 * senders and receivers on one channel, yields in between), cancellation
 * racing the wake of a parked task, deadline timers racing channel wakes,
 * and pools destroyed (DRAIN and CANCEL) with tasks parked. Every value is
 * delivered exactly once and every future ends.
 *
 * A plain program (the ThreadSanitizer build runs it; Criterion cannot run
 * there). Scale: argv[1] or $STRESS_SCALE (default 1). Prints what it
 * checked and "N passed, M failed"; exits non-zero on any failure.
 */
#include "stressmain.h"
#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(t, cond, ...) tally_check((t), (cond), __VA_ARGS__)

static async_pool_t *gpool(struct tally *t, unsigned threads, size_t stack)
{
    async_pool_config_t cfg = { .threads = threads, .name = "gstress",
                                .stack_size = stack };
    async_pool_t *pool = async_pool_create(&cfg);
    CHECK(t, pool != NULL, "async_pool_create(%u, %zu): %s", threads, stack,
          strerror(errno));
    return pool;
}

/* ------------------------------------------------------------ ping-pong */

struct pair {
    chan_t  *ab, *ba;
    unsigned n;
    unsigned bad;       /* written by the pinger, read after its future */
};

/* Sends 0..n-1 on ab, expects v+1 back on ba each time; yields now and then. */
static void *pinger(void *arg)
{
    struct pair *p = arg;
    for (unsigned i = 0; i < p->n; i++) {
        unsigned v = i, back = 0;
        if (chan_send(p->ab, &v) != 0 || chan_recv(p->ba, &back) != 0 || back != i + 1)
            p->bad++;
        if (i % 17 == 0)
            async_yield();
    }
    return NULL;
}

static void *ponger(void *arg)
{
    struct pair *p = arg;
    unsigned got = 0;
    for (;;) {
        unsigned v;
        int rc = chan_recv(p->ab, &v);
        if (rc == EPIPE)
            break;
        if (rc != 0)
            return (void *)(uintptr_t)(0x10000u + (unsigned)rc);
        v++;
        if (chan_send(p->ba, &v) != 0)
            return (void *)(uintptr_t)0x20000u;
        got++;
        if (got % 13 == 0)
            async_yield();
    }
    return (void *)(uintptr_t)got;
}

static void ping_pong(struct tally *t, unsigned threads, unsigned pairs, unsigned n)
{
    tally_begin(t, "ping_pong");
    async_pool_t *pool = gpool(t, threads, 0 /* the default, goroutine unless env says */);
    if (!pool)
        return;
    struct pair *ps = calloc(pairs, sizeof *ps);
    future_t **fa = calloc(pairs, sizeof *fa), **fb = calloc(pairs, sizeof *fb);
    for (unsigned i = 0; i < pairs; i++) {
        ps[i] = (struct pair){ chan_make(sizeof(unsigned), 0), chan_make(sizeof(unsigned), 0),
                               n, 0 };
        fb[i] = async_run_on(pool, ponger, &ps[i]);
        fa[i] = async_run_on(pool, pinger, &ps[i]);
    }
    unsigned bad = 0;
    for (unsigned i = 0; i < pairs; i++) {
        int rc = tu_get(fa[i], NULL);
        CHECK(t, rc == 0, "pinger %u: %s", i, strerror(rc));
        chan_close(ps[i].ab);
        void *r = NULL;
        rc = tu_get(fb[i], &r);
        CHECK(t, rc == 0 && (uintptr_t)r == n, "ponger %u: rc %d, answered %#lx of %u", i,
              rc, (unsigned long)(uintptr_t)r, n);
        bad += ps[i].bad;
        future_free(fa[i]);
        future_free(fb[i]);
        chan_free(ps[i].ab);
        chan_free(ps[i].ba);
    }
    CHECK(t, bad == 0, "%u wrong answers", bad);
    async_pool_stats_t s;
    CHECK(t, tu_pool_quiet(pool, &s), "pool never quiet");
    CHECK(t, s.parked == 0, "%zu parked after all ended", s.parked);
    CHECK(t, async_pool_destroy(pool, ASYNC_DRAIN) == 0, "destroy");
    tally_note(t, "%u pairs x %u messages on %u workers", pairs, n, threads);
    free(ps);
    free(fa);
    free(fb);
}

/* ------------------------------------- many senders, many receivers, once */

struct fan {
    chan_t     *c;
    unsigned    per;         /* values per sender */
    atomic_uint *seen;        /* seen[v]: times v was received */
    atomic_uint  next_id;
};

static void *fan_send(void *arg)
{
    struct fan *f = arg;
    unsigned id = atomic_fetch_add(&f->next_id, 1);
    for (unsigned i = 0; i < f->per; i++) {
        unsigned v = id * f->per + i;
        if (chan_send(f->c, &v) != 0)
            return (void *)1;
        if (i % 29 == 0)
            async_yield();
    }
    return NULL;
}

static void *fan_recv(void *arg)
{
    struct fan *f = arg;
    unsigned v;
    uintptr_t got = 0;
    while (chan_recv(f->c, &v) == 0) {
        atomic_fetch_add(&f->seen[v], 1);
        got++;
    }
    return (void *)got;
}

static void fan_in_out(struct tally *t, unsigned threads, unsigned senders,
                       unsigned receivers, unsigned per)
{
    tally_begin(t, "fan_in_out");
    async_pool_t *pool = gpool(t, threads, 64 * 1024);
    if (!pool)
        return;
    unsigned total = senders * per;
    struct fan f = { .c = chan_make(sizeof(unsigned), 0), .per = per,
                     .seen = calloc(total, sizeof(atomic_uint)) };
    future_t **fs = calloc(senders, sizeof *fs), **fr = calloc(receivers, sizeof *fr);
    for (unsigned i = 0; i < receivers; i++)
        fr[i] = async_run_on(pool, fan_recv, &f);
    for (unsigned i = 0; i < senders; i++)
        fs[i] = async_run_on(pool, fan_send, &f);
    for (unsigned i = 0; i < senders; i++) {
        void *r = (void *)1;
        CHECK(t, tu_get(fs[i], &r) == 0 && r == NULL, "sender %u failed", i);
        future_free(fs[i]);
    }
    chan_close(f.c);
    uintptr_t got = 0;
    for (unsigned i = 0; i < receivers; i++) {
        void *r = NULL;
        CHECK(t, tu_get(fr[i], &r) == 0, "receiver %u failed", i);
        got += (uintptr_t)r;
        future_free(fr[i]);
    }
    unsigned dup = 0, lost = 0;
    for (unsigned v = 0; v < total; v++) {
        unsigned k = atomic_load(&f.seen[v]);
        dup += k > 1;
        lost += k == 0;
    }
    CHECK(t, got == total && dup == 0 && lost == 0,
          "received %lu of %u: %u duplicated, %u lost", (unsigned long)got, total, dup, lost);
    CHECK(t, async_pool_destroy(pool, ASYNC_DRAIN) == 0, "destroy");
    tally_note(t, "%u senders, %u receivers, %u values on %u workers", senders, receivers,
               total, threads);
    chan_free(f.c);
    free(f.seen);
    free(fs);
    free(fr);
}

/* ---------------------------------------------- cancel racing the wake */

struct cw {
    chan_t *c;
    int     rc;          /* the receiver's chan_recv */
    unsigned v;
};

static void *cw_recv(void *arg)
{
    struct cw *x = arg;
    x->rc = chan_recv(x->c, &x->v);
    return NULL;
}

struct cw_send {
    chan_t  *c;
    unsigned v;
    int      rc;
};

static void *cw_sender(void *arg)
{
    struct cw_send *s = arg;
    s->rc = chan_send_until(s->c, &s->v, async_now() + 300 * ASYNC_MICROSECOND);
    return NULL;
}

static void cancel_vs_wake(struct tally *t, unsigned threads, unsigned rounds)
{
    tally_begin(t, "cancel_vs_wake");
    async_pool_t *pool = gpool(t, threads, 0);
    if (!pool)
        return;
    unsigned delivered = 0, cancelled = 0, never_ran = 0, bad = 0;
    for (unsigned i = 0; i < rounds; i++) {
        struct cw x = { .c = chan_make(sizeof(unsigned), 0), .rc = -1 };
        struct cw_send s = { .c = x.c, .v = i + 1, .rc = -1 };
        future_t *r = async_run_on(pool, cw_recv, &x);
        /* Let it park some of the time, race its start the rest. */
        if (i % 2 == 0) {
            int64_t until = tu_deadline();
            async_pool_stats_t st;
            while (async_pool_stats(pool, &st) == 0 && tu_blocked(&st) == 0 &&
                   !future_done(r) && tu_spin_once(until))
                ;
        }
        future_t *snd = async_run_on(pool, cw_sender, &s);
        int crc = future_cancel(r);
        int grc = tu_get(r, NULL);
        int src = tu_get(snd, NULL);
        bad += !CHECK(t, src == 0, "round %u: sender's future: %d", i, src);
        if (crc == 0) {
            never_ran++;
            bad += !CHECK(t, grc == ECANCELED && s.rc == ETIMEDOUT,
                          "round %u: cancelled before it ran, yet get %d, send %d",
                          i, grc, s.rc);
        } else {
            bad += !CHECK(t, crc == EBUSY || crc == EALREADY, "round %u: cancel %d", i, crc);
            bad += !CHECK(t, grc == 0, "round %u: receiver's future %d", i, grc);
            if (x.rc == 0) {
                delivered++;
                bad += !CHECK(t, s.rc == 0 && x.v == i + 1,
                              "round %u: received %u but send answered %d", i, x.v, s.rc);
            } else {
                cancelled++;
                bad += !CHECK(t, x.rc == ECANCELED && s.rc == ETIMEDOUT,
                              "round %u: recv %d, send %d (exactly one must win)", i,
                              x.rc, s.rc);
            }
        }
        future_free(r);
        future_free(snd);
        chan_free(x.c);
        if (bad > 10)
            break;
    }
    CHECK(t, async_pool_destroy(pool, ASYNC_DRAIN) == 0, "destroy");
    tally_note(t, "%u rounds: %u delivered, %u cancelled while waiting, %u before running",
               rounds, delivered, cancelled, never_ran);
}

/* ------------------------------------------- timers racing channel wakes */

struct tr {
    chan_t     *c;
    unsigned    per;
    atomic_uint *seen;
    atomic_uint  next_id;
    atomic_uint  sent, received, early;
};

static void *tr_send(void *arg)
{
    struct tr *x = arg;
    unsigned id = atomic_fetch_add(&x->next_id, 1);
    for (unsigned i = 0; i < x->per; i++) {
        unsigned v = id * x->per + i;
        int rc = chan_send_until(x->c, &v, async_now() + (int64_t)(i % 7) * 50 * ASYNC_MICROSECOND);
        if (rc == 0)
            atomic_fetch_add(&x->sent, 1);
    }
    return NULL;
}

static void *tr_recv(void *arg)
{
    struct tr *x = arg;
    unsigned misses = 0;
    for (unsigned i = 0; misses < 200; i++) {
        unsigned v;
        int64_t deadline = async_now() + (int64_t)(i % 5) * 40 * ASYNC_MICROSECOND;
        int rc = chan_recv_until(x->c, &v, deadline);
        if (rc == 0) {
            atomic_fetch_add(&x->seen[v], 1);
            atomic_fetch_add(&x->received, 1);
            misses = 0;
        } else if (rc == ETIMEDOUT || rc == EAGAIN) {
            if (rc == ETIMEDOUT && async_now() < deadline)
                atomic_fetch_add(&x->early, 1);
            misses++;
        } else {
            break;   /* EPIPE: closed */
        }
    }
    return NULL;
}

static void timers_vs_wakes(struct tally *t, unsigned threads, unsigned tasks, unsigned per)
{
    tally_begin(t, "timers_vs_wakes");
    async_pool_t *pool = gpool(t, threads, 0);
    if (!pool)
        return;
    unsigned total = tasks * per;
    struct tr x = { .c = chan_make(sizeof(unsigned), 0), .per = per,
                    .seen = calloc(total, sizeof(atomic_uint)) };
    future_t **fs = calloc(2 * tasks, sizeof *fs);
    for (unsigned i = 0; i < tasks; i++) {
        fs[2 * i] = async_run_on(pool, tr_recv, &x);
        fs[2 * i + 1] = async_run_on(pool, tr_send, &x);
    }
    /* Senders first: once they are done, close so receivers stop. */
    for (unsigned i = 0; i < tasks; i++)
        CHECK(t, tu_get(fs[2 * i + 1], NULL) == 0, "sender %u", i);
    chan_close(x.c);
    for (unsigned i = 0; i < tasks; i++)
        CHECK(t, tu_get(fs[2 * i], NULL) == 0, "receiver %u", i);
    for (unsigned i = 0; i < 2 * tasks; i++)
        future_free(fs[i]);
    unsigned dup = 0;
    for (unsigned v = 0; v < total; v++)
        dup += atomic_load(&x.seen[v]) > 1;
    unsigned sent = atomic_load(&x.sent), received = atomic_load(&x.received);
    CHECK(t, sent == received, "senders delivered %u, receivers got %u", sent, received);
    CHECK(t, dup == 0, "%u values received twice", dup);
    CHECK(t, atomic_load(&x.early) == 0, "%u timeouts before their deadline",
          atomic_load(&x.early));
    CHECK(t, async_pool_destroy(pool, ASYNC_DRAIN) == 0, "destroy");
    tally_note(t, "%u of %u values delivered, the rest timed out", sent, total);
    chan_free(x.c);
    free(x.seen);
    free(fs);
}

/* ------------------------------------------- destroys with parked tasks */

struct parked_set {
    chan_t   *c;       /* receivers park here */
    future_t *never;   /* or on this */
};

static void *park_recv(void *arg)
{
    struct parked_set *p = arg;
    unsigned v;
    int rc = chan_recv(p->c, &v);
    return (void *)(intptr_t)(rc == 0 ? 1000 + (int)v : rc);
}

static void *park_get(void *arg)
{
    struct parked_set *p = arg;
    return (void *)(intptr_t)future_get(p->never, NULL);
}

static void *park_sleep(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)async_sleep_until(async_now() + 60 * ASYNC_SECOND);
}

/* A task of the pool that closes the channel: the drain's way out. */
static void *closer(void *arg)
{
    struct parked_set *p = arg;
    async_yield();
    return (void *)(intptr_t)chan_close(p->c);
}

static void destroy_parked(struct tally *t, unsigned rounds, unsigned per_round)
{
    tally_begin(t, "destroy_parked");
    unsigned ended = 0;
    for (unsigned r = 0; r < rounds; r++) {
        unsigned threads = 2 + r % 3;
        bool drain = r % 2 == 0;
        async_pool_t *pool = gpool(t, threads, 256 * 1024);
        if (!pool)
            return;
        promise_t *pr = promise_make();
        struct parked_set p = { chan_make(sizeof(unsigned), 0), promise_future(pr) };
        future_t **fs = calloc(per_round, sizeof *fs);
        for (unsigned i = 0; i < per_round; i++) {
            async_fn fn = drain ? park_recv
                                : (i % 3 == 0 ? park_recv : i % 3 == 1 ? park_get : park_sleep);
            fs[i] = async_run_on(pool, fn, &p);
        }
        /* Some parked, some maybe not yet started. */
        int64_t until = tu_deadline();
        async_pool_stats_t st;
        while (async_pool_stats(pool, &st) == 0 && tu_blocked(&st) < per_round / 2 &&
               tu_spin_once(until))
            ;
        future_t *cl = NULL;
        if (drain)
            cl = async_run_on(pool, closer, &p);
        int rc = async_pool_destroy(pool, drain ? ASYNC_DRAIN : ASYNC_CANCEL);
        CHECK(t, rc == 0, "round %u: destroy %d", r, rc);
        for (unsigned i = 0; i < per_round; i++) {
            void *v = NULL;
            bool done = future_done(fs[i]);
            CHECK(t, done, "round %u: task %u not done after destroy", r, i);
            if (!done)
                continue;
            ended++;
            int grc = future_get_until(fs[i], &v, 0);
            if (drain)
                CHECK(t, grc == 0 && (intptr_t)v == EPIPE,
                      "round %u (drain): task %u: get %d, answered %ld", r, i, grc,
                      (long)(intptr_t)v);
            else
                CHECK(t, grc == ECANCELED || (grc == 0 && (intptr_t)v == ECANCELED),
                      "round %u (cancel): task %u: get %d, answered %ld", r, i, grc,
                      (long)(intptr_t)v);
            future_free(fs[i]);
        }
        if (cl) {
            CHECK(t, future_done(cl), "round %u: closer not done", r);
            future_free(cl);
        }
        future_free(p.never);
        promise_free(pr);
        chan_free(p.c);
        free(fs);
    }
    tally_note(t, "%u rounds, %u parked tasks ended", rounds, ended);
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    struct tally t;
    tally_init(&t, true);
    ping_pong(&t, 2, 8, stress_n(scale, 2000));
    ping_pong(&t, 4, 32, stress_n(scale, 300));
    fan_in_out(&t, 3, 16, 16, stress_n(scale, 500));
    cancel_vs_wake(&t, 2, stress_n(scale, 2000));
    cancel_vs_wake(&t, 4, stress_n(scale, 1000));
    timers_vs_wakes(&t, 3, 16, stress_n(scale, 300));
    destroy_parked(&t, stress_n(scale, 20), 500);
    return stress_finish(&t);
}
