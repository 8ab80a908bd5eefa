/*
 * test/test_cycle.c — wait cycles (API.md: Seeing inside): a wait that would
 * close a cycle of tasks waiting on each other's futures returns EDEADLK at
 * once, in both pool modes; a chain that does not close never does.
 *
 * Every test runs on a goroutine-mode pool and on a thread-mode one. Tasks
 * return the code their wait got, so the test thread does the asserting.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>

#include "testutil.h"

#define CHAIN 1000

static async_pool_t *make_pool(int thread_mode, unsigned threads, unsigned max)
{
    return thread_mode ? tu_pool_thread(threads, max, NULL) : tu_pool(threads, max, NULL);
}

static intptr_t rc_of(future_t *f)
{
    void *v = NULL;
    cr_assert_eq(tu_get(f, &v), 0);
    return (intptr_t)v;
}

/* --------------------------------------------------------- self wait */

struct self {
    tu_gate_t       published;
    future_t *_Atomic me;
    int             rc[4];
};

static void *wait_self(void *arg)
{
    struct self *s = arg;
    if (!tu_gate_wait(&s->published))
        return NULL;
    future_t *me = atomic_load(&s->me);
    size_t i = 9;
    s->rc[0] = future_get(me, NULL);
    s->rc[1] = future_get_until(me, NULL, tu_deadline());
    s->rc[2] = future_wait_all(&me, 1, ASYNC_FOREVER);
    s->rc[3] = future_wait_any(&me, 1, tu_deadline(), &i);
    return NULL;
}

Test(cycle, a_task_waiting_for_its_own_future_gets_edeadlk)
{
    for (int mode = 0; mode < 2; mode++) {
        async_pool_t *pool = make_pool(mode, 1, 0);
        struct self s = { 0 };
        future_t *f = async_run_on(pool, wait_self, &s);
        cr_assert_not_null(f);
        atomic_store(&s.me, f);
        tu_gate_open(&s.published);
        cr_assert_eq(tu_get(f, NULL), 0);
        for (int i = 0; i < 4; i++)
            cr_expect_eq(s.rc[i], EDEADLK, "mode %d, call %d: %d", mode, i, s.rc[i]);
        future_free(f);
        cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    }
}

/* -------------------------------------------------------- two tasks */

struct pair {
    tu_gate_t         go;
    future_t *_Atomic other[2];   /* other[i]: what task i waits for */
};
struct pair_arg { struct pair *p; int i; };

static void *wait_other(void *arg)
{
    struct pair_arg *a = arg;
    if (!tu_gate_wait(&a->p->go))
        return (void *)(intptr_t)-1;
    return (void *)(intptr_t)future_get(atomic_load(&a->p->other[a->i]), NULL);
}

/* A waits for B (B runs, so A blocks); then B waits for A: B's wait closes
 * the cycle and gets EDEADLK; A then gets B's result. */
Test(cycle, the_wait_that_closes_a_two_task_cycle_gets_edeadlk)
{
    for (int mode = 0; mode < 2; mode++) {
        async_pool_t *pool = make_pool(mode, 2, 0);
        struct pair pb = { 0 }, pa = { 0 };   /* each task's gate and target */
        struct pair_arg ab = { &pb, 0 }, aa = { &pa, 0 };
        future_t *b = async_run_on(pool, wait_other, &ab);
        cr_assert_not_null(b);
        atomic_store(&pa.other[0], b);
        tu_gate_open(&pa.go);
        future_t *a = async_run_on(pool, wait_other, &aa);
        cr_assert_not_null(a);
        atomic_store(&pb.other[0], a);
        async_pool_stats_t st;
        int64_t until = tu_deadline();
        while (async_pool_stats(pool, &st) == 0 && tu_blocked(&st) < 1 && tu_spin_once(until))
            ;
        cr_assert_eq(tu_blocked(&st), 1, "A never blocked on B");
        tu_gate_open(&pb.go);
        cr_expect_eq(rc_of(b), EDEADLK, "mode %d", mode);
        cr_expect_eq(rc_of(a), 0, "mode %d", mode);
        future_free(a);
        future_free(b);
        cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    }
}

/* Both close the cycle at the same moment: at least one of them must see it
 * (else both would hang). */
Test(cycle, two_tasks_closing_a_cycle_at_once_never_both_miss_it)
{
    for (int mode = 0; mode < 2; mode++) {
        async_pool_t *pool = make_pool(mode, 2, 0);
        for (int round = 0; round < 200; round++) {
            struct pair p = { 0 };
            struct pair_arg a0 = { &p, 0 }, a1 = { &p, 1 };
            future_t *f0 = async_run_on(pool, wait_other, &a0);
            future_t *f1 = async_run_on(pool, wait_other, &a1);
            cr_assert(f0 && f1);
            atomic_store(&p.other[0], f1);
            atomic_store(&p.other[1], f0);
            tu_gate_open(&p.go);
            intptr_t r0 = rc_of(f0), r1 = rc_of(f1);
            cr_assert(r0 == EDEADLK || r1 == EDEADLK, "mode %d round %d: %ld %ld", mode,
                      round, (long)r0, (long)r1);
            cr_assert((r0 == EDEADLK || r0 == 0) && (r1 == EDEADLK || r1 == 0));
            future_free(f0);
            future_free(f1);
        }
        cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    }
}

/* ------------------------------------------------------------ chains */

struct chain {
    tu_gate_t         go;
    tu_gate_t         last_may_return;   /* open: the last task returns */
    bool              close;             /* the last task waits for the first */
    future_t *_Atomic fs[CHAIN];
};
struct link_arg { struct chain *c; int i; };

static void *chain_task(void *arg)
{
    struct link_arg *a = arg;
    struct chain *c = a->c;
    if (!tu_gate_wait(&c->go))
        return (void *)(intptr_t)-1;
    if (a->i == CHAIN - 1) {
        if (c->close)
            return (void *)(intptr_t)future_get(atomic_load(&c->fs[0]), NULL);
        return (void *)(intptr_t)(tu_gate_wait(&c->last_may_return) ? 0 : -1);
    }
    return (void *)(intptr_t)future_get(atomic_load(&c->fs[a->i + 1]), NULL);
}

static void run_chain(int mode, bool close)
{
    async_pool_t *pool = make_pool(mode, 2, CHAIN + 8);
    struct chain *c = calloc(1, sizeof *c);
    struct link_arg *args = calloc(CHAIN, sizeof *args);
    cr_assert(c && args);
    c->close = close;
    for (int i = 0; i < CHAIN; i++) {
        args[i] = (struct link_arg){ c, i };
        future_t *f = async_run_on(pool, chain_task, &args[i]);
        cr_assert_not_null(f);
        atomic_store(&c->fs[i], f);
    }
    tu_gate_open(&c->go);
    unsigned deadlocks = 0;
    if (!close) {
        /* Every task has started and all but the last wait (or are about
         * to): nobody may see a cycle. A task outside the chain waits for
         * its head as well, with a deadline, walking the whole chain. */
        async_pool_stats_t st;
        int64_t until = tu_deadline();
        while (async_pool_stats(pool, &st) == 0 && st.queued > 0 && tu_spin_once(until))
            ;
        cr_assert_eq(st.queued, 0);
        struct chain *c2 = calloc(1, sizeof *c2);
        cr_assert_not_null(c2);
        struct link_arg outside = { c2, CHAIN - 2 };
        atomic_store(&c2->fs[CHAIN - 1], c->fs[0]);
        tu_gate_open(&c2->go);
        future_t *x = async_run_on(pool, chain_task, &outside);
        cr_assert_not_null(x);
        for (int i = 0; i < CHAIN - 1; i++)
            cr_assert(!future_done(c->fs[i]), "task %d ended early", i);
        tu_gate_open(&c->last_may_return);
        cr_assert_eq(rc_of(x), 0);
        future_free(x);
        free(c2);
    }
    for (int i = 0; i < CHAIN; i++) {
        intptr_t r = rc_of(c->fs[i]);
        cr_assert(r == 0 || (close && r == EDEADLK), "mode %d task %d: %ld", mode, i, (long)r);
        deadlocks += r == EDEADLK;
    }
    if (close)
        cr_assert_geq(deadlocks, 1, "mode %d: a cycle of %d went unseen", mode, CHAIN);
    for (int i = 0; i < CHAIN; i++)
        future_free(c->fs[i]);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    free(args);
    free(c);
}

Test(cycle, a_cycle_of_a_thousand_tasks_is_seen, .timeout = 120)
{
    run_chain(0, true);
    run_chain(1, true);
}

Test(cycle, a_chain_of_a_thousand_waits_that_does_not_close_is_no_deadlock, .timeout = 120)
{
    run_chain(0, false);
    run_chain(1, false);
}

/* ------------------------------------------------------ inline runs */

struct nest {
    future_t *_Atomic outer;
    async_pool_t     *pool;
    int               inner_rc;
};

static void *inner_waits_for_outer(void *arg)
{
    struct nest *n = arg;
    n->inner_rc = future_get(atomic_load(&n->outer), NULL);
    return NULL;
}

static void *outer_runs_inner(void *arg)
{
    struct nest *n = arg;
    while (!atomic_load(&n->outer))
        ;
    /* Submitted from a task of the same pool: the get runs it inline here. */
    future_t *f = async_run_on(n->pool, inner_waits_for_outer, n);
    int rc = future_get(f, NULL);
    future_free(f);
    return (void *)(intptr_t)rc;
}

/* The inner task runs on the outer one's stack: waiting for the outer one
 * would wait for itself. */
Test(cycle, a_task_run_inline_that_waits_for_its_runner_gets_edeadlk)
{
    for (int mode = 0; mode < 2; mode++) {
        async_pool_t *pool = make_pool(mode, 1, 0);
        struct nest n = { .pool = pool };
        future_t *f = async_run_on(pool, outer_runs_inner, &n);
        cr_assert_not_null(f);
        atomic_store(&n.outer, f);
        cr_expect_eq(rc_of(f), 0);
        cr_expect_eq(n.inner_rc, EDEADLK, "mode %d: %d", mode, n.inner_rc);
        future_free(f);
        cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    }
}

/* ------------------------------------------------------------ wait_any */

struct any {
    tu_gate_t         started, go, go_other, release;
    future_t *_Atomic me;
    future_t         *other;
    int64_t           deadline;
    int               rc;
};

static void *waits_for_me(void *arg)   /* waits for the wait_any task */
{
    struct any *a = arg;
    if (!tu_gate_wait(&a->go_other))
        return (void *)(intptr_t)-1;
    return (void *)(intptr_t)future_get(atomic_load(&a->me), NULL);
}

static void *held(void *arg)
{
    struct any *a = arg;
    return (void *)(intptr_t)(tu_gate_wait(&a->release) ? 0 : -1);
}

static void *wait_any_task(void *arg)
{
    struct any *a = arg;
    tu_gate_open(&a->started);
    if (!tu_gate_wait(&a->go))
        return NULL;
    future_t *both[2] = { atomic_load(&a->me), a->other };
    a->rc = future_wait_any(both, 2, a->deadline, NULL);
    return NULL;
}

static void wait_any_case(async_pool_t *pool, bool cycle)
{
    struct any a = { .deadline = cycle ? ASYNC_FOREVER : async_now() + 20 * ASYNC_MILLISECOND };
    future_t *other = async_run_on(pool, cycle ? waits_for_me : held, &a);
    cr_assert_not_null(other);
    a.other = other;
    future_t *f = async_run_on(pool, wait_any_task, &a);
    cr_assert_not_null(f);
    atomic_store(&a.me, f);
    cr_assert(tu_gate_wait(&a.started));   /* running: never run inline by other */
    /* `other` blocks first (wait_any publishes nothing, so only its own
     * walk could see a cycle closed the other way round). */
    tu_gate_open(&a.go_other);
    async_pool_stats_t st;
    int64_t until = tu_deadline();
    while (cycle && async_pool_stats(pool, &st) == 0 && tu_blocked(&st) < 1 &&
           tu_spin_once(until))
        ;
    tu_gate_open(&a.go);
    cr_assert_eq(tu_get(f, NULL), 0);
    tu_gate_open(&a.release);
    intptr_t r_other = rc_of(other);
    if (cycle) {
        cr_expect_eq(a.rc, EDEADLK);
        cr_expect_eq(r_other, 0);
    } else {
        cr_expect_eq(a.rc, ETIMEDOUT);
    }
    future_free(other);
    future_free(f);
}

Test(cycle, wait_any_gets_edeadlk_only_when_every_future_closes_a_cycle)
{
    for (int mode = 0; mode < 2; mode++) {
        async_pool_t *pool = make_pool(mode, 2, 0);
        wait_any_case(pool, true);
        wait_any_case(pool, false);
        cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    }
}
