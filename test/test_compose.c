/*
 * test/test_compose.c — composing futures (API.md: Composing): CHAN_FUTURE
 * cases in chan_select, async_after, future_then.
 *
 * Tests that park a select or a continuation look at the library's own
 * records (sched_internal.h) to know when a waiter is published, instead of
 * sleeping: a future's waiter list, a pool's timer heap.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "sched_internal.h"
#include "testutil.h"

/* ------------------------------------------------------------ helpers */

static void *probe(void *arg, future_t *done);   /* a continuation, below */

static bool has_waiters(future_t *f)
{
    return atomic_load(&((struct future *)f)->waiters) != NULL;
}

/* Spin until f has a waiter published (a select or a wait parked on it). */
static bool wait_published(future_t *f)
{
    int64_t until = tu_deadline();
    while (!has_waiters(f))
        if (!tu_spin_once(until))
            return false;
    return true;
}

static size_t heap_timers(async_pool_t *pool)
{
    struct async_pool *p = (struct async_pool *)pool;
    async__lock(&p->timer_lock);
    size_t n = p->ntimers;
    async__unlock(&p->timer_lock);
    return n;
}

static chan_case_t fut_case(future_t *f, void **slot)
{
    return (chan_case_t){ .op = CHAN_FUTURE, .future = f, .elem = slot };
}

static chan_case_t recv_case(chan_t *c, int *into)
{
    return (chan_case_t){ .chan = c, .op = CHAN_RECV, .elem = into };
}

struct sel {
    chan_case_t *cs;
    size_t       n;
    int64_t      deadline;
    int          rc;
    size_t       fired;
};

static void *sel_task(void *arg)
{
    struct sel *s = arg;
    s->fired = SIZE_MAX;
    s->rc = chan_select(s->cs, s->n, s->deadline, &s->fired);
    return NULL;
}

static void *sel_thread(void *arg)
{
    return sel_task(arg);
}

/* The three places a select may run: a plain thread, a goroutine-mode
 * task, a thread-mode task. */
enum where { W_THREAD, W_GOROUTINE, W_TASKTHREAD };

struct runner {
    enum where    where;
    async_pool_t *pool;
    pthread_t     th;
    future_t     *task;
};

static void run_start(struct runner *r, enum where where, struct sel *s)
{
    r->where = where;
    r->pool = NULL;
    r->task = NULL;
    if (where == W_THREAD) {
        cr_assert_eq(pthread_create(&r->th, NULL, sel_thread, s), 0);
        return;
    }
    r->pool = where == W_GOROUTINE ? tu_pool(2, 0, NULL) : tu_pool_thread(2, 0, NULL);
    cr_assert_not_null(r->pool);
    r->task = async_run_on(r->pool, sel_task, s);
    cr_assert_not_null(r->task);
}

static void run_join(struct runner *r)
{
    if (r->where == W_THREAD) {
        pthread_join(r->th, NULL);
        return;
    }
    cr_assert_eq(tu_get(r->task, NULL), 0);
    future_free(r->task);
    cr_assert_eq(async_pool_destroy(r->pool, ASYNC_DRAIN), 0);
}

/* ----------------------------------------------- select: ready futures */

Test(select_future, done_future_fires_with_its_value)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    promise_complete(p, (void *)0x5eed);
    void *slot = NULL;
    size_t fired = SIZE_MAX;
    chan_case_t cs[1] = { fut_case(f, &slot) };
    cr_assert_eq(chan_select(cs, 1, 0, &fired), 0);
    cr_assert_eq(fired, 0);
    cr_assert_eq(slot, (void *)0x5eed);
    /* It consumes nothing: a done future stays ready. */
    slot = NULL;
    cr_assert_eq(chan_select(cs, 1, ASYNC_FOREVER, &fired), 0);
    cr_assert_eq(slot, (void *)0x5eed);
    cs[0].elem = NULL;   /* the value may be discarded */
    cr_assert_eq(chan_select(cs, 1, 0, &fired), 0);
    future_free(f);
    promise_free(p);
}

Test(select_future, failed_future_returns_its_code_and_sets_fired)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    promise_fail(p, EIO, "disk");
    void *slot = (void *)0x1;
    size_t fired = SIZE_MAX;
    chan_case_t cs[2] = { recv_case(NULL, NULL), fut_case(f, &slot) };
    cr_assert_eq(chan_select(cs, 2, 0, &fired), EIO);
    cr_assert_eq(fired, 1);
    cr_assert_eq(slot, (void *)0x1, "the value slot is left untouched");
    future_free(f);
    promise_free(p);
}

Test(select_future, cancelled_future_returns_ecanceled_and_sets_fired)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    cr_assert_eq(future_cancel(f), 0);
    void *slot = (void *)0x1;
    size_t fired = SIZE_MAX;
    chan_case_t cs[1] = { fut_case(f, &slot) };
    cr_assert_eq(chan_select(cs, 1, 0, &fired), ECANCELED);
    cr_assert_eq(fired, 0);
    cr_assert_eq(slot, (void *)0x1);
    future_free(f);
    promise_free(p);
}

Test(select_future, broken_promise_returns_epipe)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    promise_free(p);
    size_t fired = SIZE_MAX;
    chan_case_t cs[1] = { fut_case(f, NULL) };
    cr_assert_eq(chan_select(cs, 1, 0, &fired), EPIPE);
    cr_assert_eq(fired, 0);
    future_free(f);
}

Test(select_future, failure_code_eagain_is_the_futures_not_a_poll)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    promise_fail(p, EAGAIN, "busy");
    size_t fired = SIZE_MAX;
    chan_case_t cs[1] = { fut_case(f, NULL) };
    cr_assert_eq(chan_select(cs, 1, 0, &fired), EAGAIN);
    cr_assert_eq(fired, 0, "fired tells the future's EAGAIN from a poll's");
    future_free(f);
    promise_free(p);
}

Test(select_future, pending_future_polls_eagain_and_times_out)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    size_t fired = 77;
    chan_case_t cs[1] = { fut_case(f, NULL) };
    cr_assert_eq(chan_select(cs, 1, 0, &fired), EAGAIN);
    cr_assert_eq(chan_select(cs, 1, async_now() + 5 * ASYNC_MILLISECOND, &fired), ETIMEDOUT);
    cr_assert_eq(fired, 77);
    cr_assert_not(has_waiters(f), "a select that returned left a waiter behind");
    future_free(f);
    promise_free(p);
}

Test(select_future, null_future_is_never_ready)
{
    chan_case_t cs[1] = { fut_case(NULL, NULL) };
    size_t fired = 77;
    cr_assert_eq(chan_select(cs, 1, 0, &fired), EAGAIN);
    cr_assert_eq(chan_select(cs, 1, async_now() + ASYNC_MILLISECOND, &fired), ETIMEDOUT);
    cr_assert_eq(chan_select(cs, 1, ASYNC_FOREVER, &fired), EINVAL,
                 "nothing could end this wait outside a task");
    cr_assert_eq(fired, 77);
}

Test(select_future, bad_op_is_einval)
{
    chan_case_t cs[1] = { { .op = (chan_op_t)7 } };
    cr_assert_eq(chan_select(cs, 1, 0, NULL), EINVAL);
}

Test(select_future, channel_ready_and_future_pending_takes_the_channel)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    chan_t *c = chan_make(sizeof(int), 1);
    int v = 5, got = 0;
    chan_send(c, &v);
    size_t fired = SIZE_MAX;
    chan_case_t cs[2] = { fut_case(f, NULL), recv_case(c, &got) };
    cr_assert_eq(chan_select(cs, 2, ASYNC_FOREVER, &fired), 0);
    cr_assert_eq(fired, 1);
    cr_assert_eq(got, 5);
    chan_free(c);
    future_free(f);
    promise_free(p);
}

Test(select_future, both_ready_each_wins_about_half)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    promise_complete(p, NULL);
    chan_t *c = chan_make(sizeof(int), 1);
    unsigned wins[2] = { 0, 0 }, rounds = 10000;
    for (unsigned n = 0; n < rounds; n++) {
        int v = 1, got = 0;
        if (chan_len(c) == 0)
            chan_send(c, &v);
        size_t fired = SIZE_MAX;
        chan_case_t cs[2] = { fut_case(f, NULL), recv_case(c, &got) };
        cr_assert_eq(chan_select(cs, 2, 0, &fired), 0);
        cr_assert(fired < 2);
        wins[fired]++;
    }
    cr_assert_geq(wins[0], rounds * 4 / 10, "future won %u of %u", wins[0], rounds);
    cr_assert_geq(wins[1], rounds * 4 / 10, "channel won %u of %u", wins[1], rounds);
    chan_free(c);
    future_free(f);
    promise_free(p);
}

/* --------------------------------------------- select: parked, then woken */

static void parked_select_woken_by(enum where where)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    chan_t *c = chan_make(sizeof(int), 0);
    int got = 0;
    void *slot = NULL;
    chan_case_t cs[2] = { recv_case(c, &got), fut_case(f, &slot) };
    struct sel s = { .cs = cs, .n = 2, .deadline = ASYNC_FOREVER };
    struct runner r;
    run_start(&r, where, &s);
    cr_assert(wait_published(f));
    promise_complete(p, (void *)0xabc);
    run_join(&r);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.fired, 1);
    cr_assert_eq(slot, (void *)0xabc);
    cr_assert_not(has_waiters(f));
    chan_free(c);
    future_free(f);
    promise_free(p);
}

Test(select_future, parked_select_is_woken_by_completion_on_a_thread)
{
    parked_select_woken_by(W_THREAD);
}

Test(select_future, parked_select_is_woken_by_completion_in_goroutine_mode)
{
    parked_select_woken_by(W_GOROUTINE);
}

Test(select_future, parked_select_is_woken_by_completion_in_thread_mode)
{
    parked_select_woken_by(W_TASKTHREAD);
}

static void *return_arg_later(void *arg)
{
    tu_gate_wait(arg);
    return (void *)0x77;
}

Test(select_future, parked_select_is_woken_by_a_completing_task)
{
    tu_gate_t go = { 0 };
    async_pool_t *pool = tu_pool(2, 0, NULL);
    future_t *f = async_run_on(pool, return_arg_later, &go);
    void *slot = NULL;
    chan_case_t cs[1] = { fut_case(f, &slot) };
    struct sel s = { .cs = cs, .n = 1, .deadline = ASYNC_FOREVER };
    pthread_t th;
    pthread_create(&th, NULL, sel_thread, &s);
    cr_assert(wait_published(f));
    tu_gate_open(&go);
    pthread_join(th, NULL);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.fired, 0);
    cr_assert_eq(slot, (void *)0x77);
    future_free(f);
    async_pool_destroy(pool, ASYNC_DRAIN);
}

Test(select_future, channel_fires_parked_select_and_the_future_finds_no_waiter)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    chan_t *c = chan_make(sizeof(int), 0);
    int got = 0, v = 9;
    chan_case_t cs[2] = { recv_case(c, &got), fut_case(f, NULL) };
    struct sel s = { .cs = cs, .n = 2, .deadline = ASYNC_FOREVER };
    pthread_t th;
    pthread_create(&th, NULL, sel_thread, &s);
    cr_assert(wait_published(f));
    cr_assert_eq(chan_send(c, &v), 0);
    pthread_join(th, NULL);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.fired, 0);
    cr_assert_eq(got, 9);
    cr_assert_not(has_waiters(f), "the select left its wnode on the future");
    promise_complete(p, NULL);   /* wakes nobody; ASan: touches no dead stack */
    chan_free(c);
    future_free(f);
    promise_free(p);
}

Test(select_future, select_on_a_future_whose_other_handles_are_freed)
{
    promise_t *p = promise_make();
    future_t *mine = promise_future(p), *theirs = promise_future(p);
    chan_case_t cs[1] = { fut_case(mine, NULL) };
    struct sel s = { .cs = cs, .n = 1, .deadline = ASYNC_FOREVER };
    pthread_t th;
    pthread_create(&th, NULL, sel_thread, &s);
    cr_assert(wait_published(mine));
    future_free(theirs);
    promise_free(p);   /* broken: the select's own handle keeps the record */
    pthread_join(th, NULL);
    cr_assert_eq(s.rc, EPIPE);
    cr_assert_eq(s.fired, 0);
    future_free(mine);
}

Test(select_future, select_on_a_thousand_futures)
{
    enum { N = 1000 };
    promise_t *ps[N];
    future_t *fs[N];
    chan_case_t *cs = calloc(N, sizeof *cs);
    void *slot = NULL;
    for (size_t i = 0; i < N; i++) {
        ps[i] = promise_make();
        fs[i] = promise_future(ps[i]);
        cs[i] = fut_case(fs[i], &slot);
    }
    struct sel s = { .cs = cs, .n = N, .deadline = ASYNC_FOREVER };
    pthread_t th;
    pthread_create(&th, NULL, sel_thread, &s);
    for (size_t i = 0; i < N; i++)
        cr_assert(wait_published(fs[i]));
    promise_complete(ps[537], (void *)537);
    pthread_join(th, NULL);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.fired, 537);
    cr_assert_eq(slot, (void *)537);
    for (size_t i = 0; i < N; i++) {
        cr_assert_not(has_waiters(fs[i]), "waiter left on future %zu", i);
        future_free(fs[i]);
        promise_free(ps[i]);
    }
    free(cs);
}

static void *select_forever_task(void *arg)
{
    future_t *f = arg;
    chan_case_t cs[1] = { fut_case(f, NULL) };
    size_t fired = 77;
    int rc = chan_select(cs, 1, ASYNC_FOREVER, &fired);
    return (void *)(intptr_t)(rc == ECANCELED && fired == 77);
}

static void cancelled_select(async_pool_t *pool)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    future_t *t = async_run_on(pool, select_forever_task, f);
    cr_assert(wait_published(f));
    cr_assert_eq(future_cancel(t), EBUSY);
    void *ok = NULL;
    cr_assert_eq(tu_get(t, &ok), 0);
    cr_assert_eq(ok, (void *)1, "select returned ECANCELED, fired untouched");
    cr_assert_not(has_waiters(f));
    future_free(t);
    future_free(f);
    promise_free(p);
    async_pool_destroy(pool, ASYNC_DRAIN);
}

Test(select_future, cancelling_the_task_ends_a_select_on_futures)
{
    cancelled_select(tu_pool(1, 0, NULL));
    cancelled_select(tu_pool_thread(1, 0, NULL));
}

/* --------------------------------------------------------- async_after */

Test(after, fires_at_its_deadline_with_null)
{
    int64_t deadline = async_now() + 10 * ASYNC_MILLISECOND;
    future_t *f = async_after(deadline);
    cr_assert_not_null(f);
    void *v = (void *)1;
    cr_assert_eq(future_get(f, &v), 0);
    cr_assert_geq(async_now(), deadline, "fired early");
    cr_assert_null(v);
    cr_assert_eq(future_state(f), FUTURE_SUCCEEDED);
    future_free(f);
}

Test(after, past_deadline_or_zero_is_done_at_once)
{
    future_t *a = async_after(0), *b = async_after(async_now() - 1);
    cr_assert(future_done(a));
    cr_assert(future_done(b));
    cr_assert_eq(future_get_until(b, NULL, 0), 0);
    future_free(a);
    future_free(b);
}

Test(after, deadline_below_minus_one_is_einval)
{
    errno = 0;
    cr_assert_null(async_after(-2));
    cr_assert_eq(errno, EINVAL);
}

Test(after, forever_never_fires_and_cancels)
{
    future_t *f = async_after(ASYNC_FOREVER);
    cr_assert_eq(future_get_until(f, NULL, async_now() + 5 * ASYNC_MILLISECOND), ETIMEDOUT);
    cr_assert_eq(future_cancel(f), 0);
    cr_assert_eq(future_get(f, NULL), ECANCELED);
    cr_assert_eq(future_cancel(f), EALREADY);
    future_free(f);
    future_free(async_after(ASYNC_FOREVER));   /* freed unfired: nothing leaks */
}

Test(after, cancel_takes_the_timer_out_of_the_heap)
{
    async_pool_t *dp = async_default_pool();
    size_t before = heap_timers(dp);
    future_t *f = async_after(async_now() + 3600 * ASYNC_SECOND);
    cr_assert_eq(heap_timers(dp), before + 1);
    cr_assert_eq(future_cancel(f), 0);
    cr_assert_eq(heap_timers(dp), before, "a cancelled timer left the heap at once");
    cr_assert_eq(future_state(f), FUTURE_CANCELLED);
    cr_assert_eq(future_get(f, NULL), ECANCELED);
    cr_assert_eq(future_cancel(f), EALREADY);
    future_free(f);
}

Test(after, a_hundred_thousand_timers_cost_no_thread)
{
    enum { N = 100000 };
    async_pool_t *dp = async_default_pool();
    async_pool_stats_t s0, s1;
    cr_assert_eq(async_pool_stats(dp, &s0), 0);
    size_t before = heap_timers(dp);
    future_t **fs = calloc(N, sizeof *fs);
    int64_t when = async_now() + 3600 * ASYNC_SECOND;
    for (size_t i = 0; i < N; i++) {
        fs[i] = async_after(when + (int64_t)i);
        cr_assert_not_null(fs[i]);
    }
    cr_assert_eq(heap_timers(dp), before + N);
    cr_assert_eq(async_pool_stats(dp, &s1), 0);
    cr_assert_eq(s1.threads, s0.threads, "threads %u -> %u", s0.threads, s1.threads);
    for (size_t i = 0; i < N; i++) {
        if (i % 2)   /* half cancelled, half merely freed: both leave */
            cr_assert_eq(future_cancel(fs[i]), 0);
        future_free(fs[i]);
    }
    cr_assert_eq(heap_timers(dp), before);
    free(fs);
}

struct in_task {
    int64_t   deadline;
    future_t *timer;
    size_t    on_own_pool;
};

static void *after_in_task(void *arg)
{
    struct in_task *it = arg;
    async_pool_t *own = (async_pool_t *)async__current_task()->pool;
    size_t before = heap_timers(own);
    it->timer = async_after(it->deadline);
    it->on_own_pool = heap_timers(own) - before;
    return NULL;
}

static void timer_of_a_task(async_pool_t *pool)
{
    struct in_task it = { .deadline = async_now() + 3600 * ASYNC_SECOND };
    future_t *t = async_run_on(pool, after_in_task, &it);
    cr_assert_eq(tu_get(t, NULL), 0);
    future_free(t);
    cr_assert_eq(it.on_own_pool, 1, "a task's timer is served by its own pool");
    cr_assert_not(future_done(it.timer));
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    cr_assert_eq(future_get(it.timer, NULL), ECANCELED,
                 "the pool went first: its pending timer is cancelled");
    future_free(it.timer);
}

Test(after, a_task_timer_is_its_pools_and_ends_with_it)
{
    timer_of_a_task(tu_pool(1, 0, NULL));
    timer_of_a_task(tu_pool_thread(1, 0, NULL));
}

static void *wait_after_in_task(void *arg)
{
    (void)arg;
    int64_t deadline = async_now() + 5 * ASYNC_MILLISECOND;
    future_t *f = async_after(deadline);
    int rc = future_get(f, NULL);
    future_free(f);
    return (void *)(intptr_t)(rc == 0 && async_now() >= deadline);
}

Test(after, a_task_waits_for_its_timer_in_both_modes)
{
    async_pool_t *pools[2] = { tu_pool(1, 0, NULL), tu_pool_thread(1, 0, NULL) };
    for (int i = 0; i < 2; i++) {
        future_t *t = async_run_on(pools[i], wait_after_in_task, NULL);
        void *ok = NULL;
        cr_assert_eq(tu_get(t, &ok), 0);
        cr_assert_eq(ok, (void *)1);
        future_free(t);
        async_pool_destroy(pools[i], ASYNC_DRAIN);
    }
}

Test(after, selected_with_a_channel_is_a_timeout)
{
    chan_t *c = chan_make(sizeof(int), 0);
    future_t *f = async_after(async_now() + 5 * ASYNC_MILLISECOND);
    int got = 0;
    size_t fired = SIZE_MAX;
    chan_case_t cs[2] = { recv_case(c, &got), fut_case(f, NULL) };
    cr_assert_eq(chan_select(cs, 2, ASYNC_FOREVER, &fired), 0);
    cr_assert_eq(fired, 1);
    chan_free(c);
    future_free(f);
}

Test(after, freeing_an_unfired_timer_releases_it_at_once)
{
    async_pool_t *dp = async_default_pool();
    size_t before = heap_timers(dp);
    future_t *f = async_after(async_now() + 3600 * ASYNC_SECOND);
    cr_assert_eq(heap_timers(dp), before + 1);
    future_free(f);
    cr_assert_eq(heap_timers(dp), before, "the freed timer is out of the heap");
    /* With a continuation still holding it, it stays until that is done. */
    promise_t *p = promise_make();
    future_t *t = async_after(async_now() + 3600 * ASYNC_SECOND);
    future_t *pf = promise_future(p);
    future_t *g = future_then(t, probe, NULL);
    future_free(t);
    cr_assert_eq(heap_timers(dp), before + 1, "the continuation still holds it");
    cr_assert_eq(future_cancel(g), 0);   /* its reference goes: so does the timer */
    cr_assert_eq(heap_timers(dp), before);
    future_free(g);
    future_free(pf);
    promise_free(p);
    /* A fired one is freed as any done future. */
    future_t *h = async_after(async_now() + ASYNC_MILLISECOND);
    cr_assert_eq(future_get(h, NULL), 0);
    future_free(h);
}

/* --------------------------------------------------------- future_then */

struct then_probe {
    atomic_uint runs;
    bool        done_was_done;
    bool        on_worker;
    void       *pool;
    pthread_t   caller;
};

static void *probe(void *arg, future_t *done)
{
    struct then_probe *pr = arg;
    pr->done_was_done = future_done(done);
    pr->on_worker = !pthread_equal(pthread_self(), pr->caller);
    pr->pool = async__current_task()->pool;
    void *v = NULL;
    future_get_until(done, &v, 0);
    atomic_fetch_add(&pr->runs, 1);
    return (void *)((uintptr_t)v + 1);
}

Test(then, null_arguments_are_einval)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    errno = 0;
    cr_assert_null(future_then(NULL, probe, NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(future_then(f, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    future_free(f);
    promise_free(p);
}

Test(then, runs_on_the_default_pool_once_a_promise_is_done)
{
    struct then_probe pr = { .caller = pthread_self() };
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    future_t *g = future_then(f, probe, &pr);
    cr_assert_not_null(g);
    future_free(f);   /* f stays the caller's to free; the continuation holds its own */
    cr_assert_eq(future_state(g), FUTURE_PENDING);
    cr_assert_eq(future_get_until(g, NULL, 0), EAGAIN);
    cr_assert_eq(atomic_load(&pr.runs), 0);
    promise_complete(p, (void *)41);
    void *v = NULL;
    cr_assert_eq(future_get(g, &v), 0);
    cr_assert_eq(v, (void *)42);
    cr_assert_eq(atomic_load(&pr.runs), 1);
    cr_assert(pr.done_was_done);
    cr_assert(pr.on_worker, "never inline in the completer");
    cr_assert_eq(pr.pool, (void *)async_default_pool());
    future_free(g);
    promise_free(p);
}

Test(then, an_already_done_future_is_queued_at_once)
{
    struct then_probe pr = { .caller = pthread_self() };
    promise_t *p = promise_make();
    promise_complete(p, (void *)1);
    future_t *f = promise_future(p);
    future_t *g = future_then(f, probe, &pr);
    void *v = NULL;
    cr_assert_eq(future_get(g, &v), 0);
    cr_assert_eq(v, (void *)2);
    future_free(g);
    future_free(f);
    promise_free(p);
}

static void then_on_task(async_pool_t *pool)
{
    struct then_probe pr = { .caller = pthread_self() };
    tu_gate_t go = { 0 };
    future_t *f = async_run_on(pool, return_arg_later, &go);
    future_t *g = future_then(f, probe, &pr);
    tu_gate_open(&go);
    void *v = NULL;
    cr_assert_eq(tu_get(g, &v), 0);
    cr_assert_eq(v, (void *)0x78);
    cr_assert_eq(pr.pool, (void *)pool, "a task's continuation runs on its pool");
    future_free(g);
    future_free(f);
    async_pool_destroy(pool, ASYNC_DRAIN);
}

Test(then, runs_on_the_antecedents_pool_in_both_modes)
{
    then_on_task(tu_pool(2, 0, NULL));
    then_on_task(tu_pool_thread(2, 0, NULL));
}

Test(then, sees_a_failure_and_may_succeed)
{
    struct then_probe pr = { .caller = pthread_self() };
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    future_t *g = future_then(f, probe, &pr);
    promise_fail(p, EIO, "no");
    void *v = NULL;
    cr_assert_eq(future_get(g, &v), 0);
    cr_assert_eq(v, (void *)1);
    cr_assert(pr.done_was_done);
    future_free(g);
    future_free(f);
    promise_free(p);
}

static void *panicking(void *arg, future_t *done)
{
    (void)arg;
    (void)done;
    async_panic(ENOTSUP, "continuation %d", 7);
}

Test(then, a_panicking_continuation_fails_its_future)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = tu_pool(1, 0, &log);
    future_t *f = async_run_on(pool, tu_task_noop, NULL);
    future_t *g = future_then(f, panicking, NULL);
    cr_assert_eq(tu_get(g, NULL), ENOTSUP);
    cr_assert_str_eq(future_error(g), "continuation 7");
    future_free(g);
    future_free(f);
    async_pool_destroy(pool, ASYNC_DRAIN);
    tu_log_fini(&log);
}

Test(then, cancelled_before_the_antecedent_is_done_never_runs)
{
    struct then_probe pr = { .caller = pthread_self() }, other = { .caller = pthread_self() };
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    future_t *g = future_then(f, probe, &pr);
    future_t *h = future_then(f, probe, &other);
    cr_assert_eq(future_cancel(g), 0);
    cr_assert_eq(future_state(g), FUTURE_CANCELLED);
    cr_assert_eq(future_get(g, NULL), ECANCELED);
    promise_complete(p, NULL);
    cr_assert_eq(future_get(h, NULL), 0);   /* queued by the same completion */
    async_pool_stats_t st;
    cr_assert(tu_pool_quiet(async_default_pool(), &st));
    cr_assert_eq(atomic_load(&pr.runs), 0, "a cancelled continuation ran");
    cr_assert_eq(atomic_load(&other.runs), 1);
    cr_assert_eq(future_cancel(g), EALREADY);
    future_free(g);
    future_free(h);
    future_free(f);
    promise_free(p);
}

static void *wait_cancel(void *arg, future_t *done)
{
    (void)done;
    tu_gate_open(arg);
    int64_t until = tu_deadline();
    while (!async_cancelled() && tu_spin_once(until))
        ;
    return (void *)(intptr_t)async_cancelled();
}

Test(then, cancelling_a_running_continuation_is_ebusy)
{
    tu_gate_t running = { 0 };
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    future_t *g = future_then(f, wait_cancel, &running);
    promise_complete(p, NULL);
    cr_assert(tu_gate_wait(&running));
    cr_assert_eq(future_cancel(g), EBUSY);
    void *v = NULL;
    cr_assert_eq(future_get(g, &v), 0);
    cr_assert_eq(v, (void *)1, "async_cancelled() turned true in fn");
    future_free(g);
    future_free(f);
    promise_free(p);
}

static void *plus_one(void *arg, future_t *done)
{
    (void)arg;
    void *v = NULL;
    future_get_until(done, &v, 0);
    return (void *)((uintptr_t)v + 1);
}

static void chain(async_pool_t *pool, unsigned n)
{
    future_t *first = async_run_on(pool, tu_task_noop, NULL);
    future_t *f = future_then(first, plus_one, NULL);
    future_free(first);
    for (unsigned i = 1; i < n; i++) {
        future_t *g = future_then(f, plus_one, NULL);
        cr_assert_not_null(g);
        future_free(f);
        f = g;
    }
    void *v = NULL;
    cr_assert_eq(future_get(f, &v), 0);
    cr_assert_eq((uintptr_t)v, n);
    future_free(f);
    async_pool_destroy(pool, ASYNC_DRAIN);
}

Test(then, a_chain_of_a_hundred_thousand_grows_no_stack, .timeout = 120)
{
    chain(tu_pool(2, 0, NULL), 100000);
    chain(tu_pool_thread(2, 0, NULL), 100000);
}

Test(then, of_a_timer)
{
    struct then_probe pr = { .caller = pthread_self() };
    future_t *t = async_after(async_now() + ASYNC_MILLISECOND);
    future_t *g = future_then(t, probe, &pr);
    future_free(t);
    void *v = NULL;
    cr_assert_eq(future_get(g, &v), 0);
    cr_assert_eq(v, (void *)1);
    future_free(g);
}

Test(then, of_a_cancelled_queued_task_runs_on_the_default_pool)
{
    struct then_probe pr = { .caller = pthread_self() };
    tu_gate_t go = { 0 };
    async_pool_t *pool = tu_pool(1, 0, NULL);
    future_t *blocker = async_run_on(pool, return_arg_later, &go);
    future_t *f = async_run_on(pool, tu_task_noop, NULL);
    future_t *g = future_then(f, probe, &pr);
    cr_assert_eq(future_cancel(f), 0);
    cr_assert_eq(future_get(g, NULL), 0);
    cr_assert_eq(pr.pool, (void *)async_default_pool());
    tu_gate_open(&go);
    future_free(g);
    future_free(f);
    future_free(blocker);
    async_pool_destroy(pool, ASYNC_DRAIN);
}

/* ------------------------------------------------------- out of memory */

Test(compose, every_allocation_failure_is_enomem_and_leaks_nothing)
{
    async_pool_t *dp = async_default_pool();   /* made before the failures */
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    size_t timers = heap_timers(dp);
    unsigned then_failed = 0, after_failed = 0;
    /* The nth allocation fails, for n = 1, 2, ... until the call succeeds. */
    for (long nth = 1; nth < 16; nth++) {
        async__test_fail_alloc(nth);
        errno = 0;
        future_t *g = future_then(f, probe, NULL);
        int e = errno;
        async__test_fail_alloc(0);
        if (!g) {
            cr_assert_eq(e, ENOMEM, "future_then: errno %d", e);
            then_failed++;
            continue;
        }
        cr_assert_eq(future_cancel(g), 0);
        future_free(g);
        break;
    }
    for (long nth = 1; nth < 16; nth++) {
        async__test_fail_alloc(nth);
        errno = 0;
        future_t *g = async_after(async_now() + 3600 * ASYNC_SECOND);
        int e = errno;
        async__test_fail_alloc(0);
        if (!g) {
            cr_assert_eq(e, ENOMEM, "async_after: errno %d", e);
            cr_assert_eq(heap_timers(dp), timers, "a failed async_after left a timer");
            after_failed++;
            continue;
        }
        cr_assert_eq(future_cancel(g), 0);
        future_free(g);
        break;
    }
    cr_assert_geq(then_failed, 1);
    cr_assert_geq(after_failed, 2, "the record and the timer are two allocations");
    future_free(f);
    promise_free(p);
}
