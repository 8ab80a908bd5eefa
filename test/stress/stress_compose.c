/*
 * test/stress/stress_compose.c — the races of composing futures: a select
 * on a channel and a future that both fire, a select giving up as its
 * future completes, a timer cancelled as it fires, a continuation cancelled
 * as its antecedent completes, long chains.
 *
 * A plain program (the ThreadSanitizer build runs it; Criterion cannot run
 * there). Scale: argv[1] or $STRESS_SCALE (default 1). Prints what it
 * checked and "N passed, M failed"; exits non-zero on any failure.
 */
#include "sched_internal.h"
#include "stressmain.h"
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

static bool has_waiters(future_t *f)
{
    return atomic_load(&((struct future *)f)->waiters) != NULL;
}

static void spin_ns(int64_t ns)
{
    int64_t until = tu_clock() + ns;
    while (tu_clock() < until)
        ;
}

/* ------------------------------------- both ready: a uniform choice */

static void *value_task(void *arg)
{
    return arg;
}

static void both_ready(struct tally *t, unsigned rounds)
{
    tally_begin(t, "select_both_ready");
    chan_t *c = chan_make(sizeof(unsigned), 1);
    unsigned wins[2] = { 0, 0 };
    future_t *f = NULL;
    for (unsigned n = 0; n < rounds; n++) {
        if (n % 64 == 0) {   /* a fresh completed task now and then */
            future_free(f);
            f = async_run(value_task, (void *)(uintptr_t)(n + 1));
            future_get(f, NULL);
        }
        if (chan_len(c) == 0)
            chan_send(c, &n);
        unsigned got = UINT32_MAX;
        void *slot = NULL;
        size_t fired = SIZE_MAX;
        chan_case_t cs[2] = {
            { .op = CHAN_FUTURE, .future = f, .elem = &slot },
            { .chan = c, .op = CHAN_RECV, .elem = &got },
        };
        int rc = chan_select(cs, 2, 0, &fired);
        if (!tally_check(t, rc == 0 && fired < 2, "round %u: rc %d fired %zu", n, rc, fired))
            continue;
        wins[fired]++;
        if (fired == 0)
            tally_check(t, slot != NULL && got == UINT32_MAX, "round %u: future case", n);
        else
            tally_check(t, slot == NULL && got != UINT32_MAX, "round %u: channel case", n);
    }
    future_free(f);
    chan_free(c);
    tally_check(t, wins[0] >= rounds * 4 / 10, "the future won %u of %u", wins[0], rounds);
    tally_check(t, wins[1] >= rounds * 4 / 10, "the channel won %u of %u", wins[1], rounds);
    tally_note(t, "%u rounds: future %u, channel %u", rounds, wins[0], wins[1]);
}

/* ------------------------------- a parked select, two firers at once */

struct duel {
    pthread_barrier_t start;
    promise_t        *p;
    chan_t           *c;
    int64_t           delay;
    atomic_int        armed;   /* the completer passed the barrier */
};

static void *completer(void *arg)
{
    struct duel *d = arg;
    pthread_barrier_wait(&d->start);
    atomic_store(&d->armed, 1);
    spin_ns(d->delay);
    promise_complete(d->p, (void *)0x1);
    return NULL;
}

static void *sender(void *arg)
{
    struct duel *d = arg;
    pthread_barrier_wait(&d->start);
    unsigned v = 7;
    chan_send(d->c, &v);
    return NULL;
}

static void parked_duel(struct tally *t, unsigned rounds)
{
    tally_begin(t, "select_parked_duel");
    unsigned wins[2] = { 0, 0 };
    for (unsigned n = 0; n < rounds; n++) {
        struct duel d = { .p = promise_make(), .c = chan_make(sizeof(unsigned), 1),
                          .delay = rand() % 20000 };
        future_t *f = promise_future(d.p);
        pthread_barrier_init(&d.start, NULL, 3);
        pthread_t a, b;
        pthread_create(&a, NULL, completer, &d);
        pthread_create(&b, NULL, sender, &d);
        pthread_barrier_wait(&d.start);
        unsigned got = 0;
        void *slot = NULL;
        size_t fired = SIZE_MAX;
        chan_case_t cs[2] = {
            { .chan = d.c, .op = CHAN_RECV, .elem = &got },
            { .op = CHAN_FUTURE, .future = f, .elem = &slot },
        };
        int rc = chan_select(cs, 2, ASYNC_FOREVER, &fired);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        tally_check(t, rc == 0 && fired < 2, "round %u: rc %d fired %zu", n, rc, fired);
        if (fired == 0)
            tally_check(t, got == 7 && slot == NULL && chan_len(d.c) == 0,
                        "round %u: the channel fired, yet got %u slot %p len %zu",
                        n, got, slot, chan_len(d.c));
        else
            tally_check(t, slot == (void *)0x1 && got == 0 && chan_len(d.c) == 1,
                        "round %u: the future fired, yet got %u len %zu", n, got,
                        chan_len(d.c));
        tally_check(t, !has_waiters(f), "round %u: a waiter left on the future", n);
        if (fired < 2)
            wins[fired]++;
        pthread_barrier_destroy(&d.start);
        future_free(f);
        promise_free(d.p);
        chan_free(d.c);
    }
    tally_note(t, "%u rounds: channel %u, future %u", rounds, wins[0], wins[1]);
}

/* ---------------------- a select giving up as its future completes */

static void early_return(struct tally *t, unsigned rounds)
{
    tally_begin(t, "select_gives_up_as_future_completes");
    unsigned fired_n = 0;
    for (unsigned n = 0; n < rounds; n++) {
        struct duel d = { .p = promise_make(), .delay = rand() % 200000 };
        future_t *f = promise_future(d.p);
        pthread_barrier_init(&d.start, NULL, 2);
        pthread_t a;
        pthread_create(&a, NULL, completer, &d);
        pthread_barrier_wait(&d.start);
        void *slot = NULL;
        size_t fired = SIZE_MAX;
        chan_case_t cs[1] = { { .op = CHAN_FUTURE, .future = f, .elem = &slot } };
        int rc = chan_select(cs, 1, async_now() + 50 * ASYNC_MICROSECOND, &fired);
        tally_check(t, !has_waiters(f), "round %u: a waiter left on the future", n);
        pthread_join(a, NULL);
        if (rc == 0) {
            fired_n++;
            tally_check(t, fired == 0 && slot == (void *)0x1, "round %u: fired %zu", n, fired);
        } else {
            tally_check(t, rc == ETIMEDOUT && fired == SIZE_MAX && slot == NULL,
                        "round %u: rc %d fired %zu", n, rc, fired);
        }
        pthread_barrier_destroy(&d.start);
        future_free(f);
        promise_free(d.p);
    }
    tally_note(t, "%u rounds, %u fired before the deadline", rounds, fired_n);
}

/* ------------------- a timer cancelled, or freed, as it fires */

static void after_cancel(struct tally *t, unsigned rounds)
{
    tally_begin(t, "after_cancel_vs_fire");
    unsigned cancelled = 0;
    for (unsigned n = 0; n < rounds; n++) {
        future_t *f = async_after(async_now() + rand() % (200 * ASYNC_MICROSECOND));
        spin_ns(rand() % (200 * ASYNC_MICROSECOND));
        if (n % 3 == 0) {   /* the last handle freed as the timer fires */
            future_free(f);
            continue;
        }
        int rc = future_cancel(f);
        int got = future_get(f, NULL);
        if (rc == 0) {
            cancelled++;
            tally_check(t, got == ECANCELED, "round %u: cancelled, get %d", n, got);
        } else {
            tally_check(t, rc == EALREADY && got == 0, "round %u: cancel %d get %d",
                        n, rc, got);
        }
        future_free(f);
    }
    tally_note(t, "%u rounds, %u cancelled before firing", rounds, cancelled);
}

/* A burst of timers due at once, half cancelled while the pool fires them. */
static void after_burst(struct tally *t, unsigned n)
{
    tally_begin(t, "after_burst");
    future_t **fs = calloc(n, sizeof *fs);
    int64_t when = async_now() + ASYNC_MILLISECOND;
    for (unsigned i = 0; i < n; i++)
        fs[i] = async_after(when + (int64_t)(i % 97) * ASYNC_MICROSECOND);
    unsigned cancelled = 0;
    for (unsigned i = 0; i < n; i += 2)
        cancelled += future_cancel(fs[i]) == 0;
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++) {
        int rc = future_get(fs[i], NULL);
        ok += rc == 0 || (rc == ECANCELED && i % 2 == 0);
        future_free(fs[i]);
    }
    free(fs);
    tally_check(t, ok == n, "%u of %u timers ended as they should", ok, n);
    tally_note(t, "%u timers, %u cancelled before firing", n, cancelled);
}

/* ---------------------- a continuation cancelled as its antecedent ends */

struct probe {
    atomic_uint runs;
};

static void *count_run(void *arg, future_t *done)
{
    struct probe *pr = arg;
    atomic_fetch_add(&pr->runs, 1);
    return (void *)(uintptr_t)future_done(done);
}

static void then_cancel(struct tally *t, unsigned rounds)
{
    tally_begin(t, "then_cancel_vs_antecedent");
    struct probe *prs = calloc(rounds, sizeof *prs);
    int *rcs = calloc(rounds, sizeof *rcs);
    unsigned never = 0;
    for (unsigned n = 0; n < rounds; n++) {
        struct duel d = { .p = promise_make(), .delay = rand() % 20000 };
        future_t *f = promise_future(d.p);
        future_t *g = future_then(f, count_run, &prs[n]);
        future_free(f);
        pthread_barrier_init(&d.start, NULL, 2);
        pthread_t a;
        pthread_create(&a, NULL, completer, &d);
        pthread_barrier_wait(&d.start);
        while (!atomic_load(&d.armed))
            sched_yield();
        spin_ns(rand() % 40000);
        rcs[n] = future_cancel(g);
        void *v = NULL;
        int got = future_get(g, &v);
        pthread_join(a, NULL);
        if (rcs[n] == 0)
            tally_check(t, got == ECANCELED, "round %u: cancelled, get %d", n, got);
        else
            tally_check(t, (rcs[n] == EBUSY || rcs[n] == EALREADY) &&
                        ((got == 0 && v == (void *)1) || got == ECANCELED),
                        "round %u: cancel %d get %d", n, rcs[n], got);
        pthread_barrier_destroy(&d.start);
        future_free(g);
        promise_free(d.p);
    }
    async_pool_stats_t st;
    tally_check(t, tu_pool_quiet(async_default_pool(), &st), "the pool went quiet");
    for (unsigned n = 0; n < rounds; n++) {
        unsigned runs = atomic_load(&prs[n].runs);
        if (rcs[n] == 0) {
            never++;
            tally_check(t, runs == 0, "round %u: cancelled, yet fn ran %u times", n, runs);
        } else {
            tally_check(t, runs <= 1, "round %u: fn ran %u times", n, runs);
        }
    }
    tally_note(t, "%u rounds, %u cancelled before the antecedent was done", rounds, never);
    free(prs);
    free(rcs);
}

static void *plus_one(void *arg, future_t *done)
{
    (void)arg;
    void *v = NULL;
    future_get_until(done, &v, 0);
    return (void *)((uintptr_t)v + 1);
}

static void *gated(void *arg)
{
    tu_gate_wait(arg);
    return NULL;
}

static void then_chain(struct tally *t, unsigned n, bool thread_mode)
{
    tally_begin(t, thread_mode ? "then_chain_thread_mode" : "then_chain_goroutine_mode");
    async_pool_t *pool = thread_mode ? tu_pool_thread(2, 0, NULL) : tu_pool(2, 0, NULL);
    tu_gate_t go = { 0 };
    future_t *first = async_run_on(pool, gated, &go), *f = first;
    for (unsigned i = 0; i < n; i++) {
        future_t *g = future_then(f, plus_one, NULL);
        if (f != first)
            future_free(f);
        f = g;
    }
    tu_gate_open(&go);
    void *v = NULL;
    int rc = future_get(f, &v);
    tally_check(t, rc == 0 && (uintptr_t)v == n, "chain of %u: rc %d value %zu", n, rc,
                (size_t)(uintptr_t)v);
    future_free(f);
    future_free(first);
    async_pool_destroy(pool, ASYNC_DRAIN);
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    struct tally t;
    tally_init(&t, true);
    srand(12345);
    both_ready(&t, stress_n(scale, 100000));
    parked_duel(&t, stress_n(scale, 2000));
    early_return(&t, stress_n(scale, 2000));
    after_cancel(&t, stress_n(scale, 2000));
    after_burst(&t, stress_n(scale, 10000));
    then_cancel(&t, stress_n(scale, 2000));
    then_chain(&t, stress_n(scale, 100000), false);
    then_chain(&t, stress_n(scale, 20000), true);
    return stress_finish(&t);
}
