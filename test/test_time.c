/*
 * test/test_time.c — the clock and sleeping (API.md: Conventions).
 */
#include <criterion/criterion.h>

#include "testutil.h"

Test(time, now_is_nonnegative_and_monotonic)
{
    int64_t a = async_now();
    int64_t b = async_now();
    cr_assert_geq(a, 0);
    cr_assert_geq(b, a);
}

Test(time, now_follows_clock_monotonic)
{
    int64_t before = tu_clock();
    int64_t now = async_now();
    int64_t after = tu_clock();
    cr_assert_geq(now, before);
    cr_assert_leq(now, after);
}

Test(time, units_are_nanoseconds)
{
    cr_assert_eq(ASYNC_FOREVER, -1);
    cr_assert_eq(ASYNC_MICROSECOND, 1000);
    cr_assert_eq(ASYNC_MILLISECOND, 1000000);
    cr_assert_eq(ASYNC_SECOND, 1000000000);
}

Test(time, sleep_lasts_at_least_its_duration)
{
    int64_t t0 = tu_clock();
    async_sleep(20 * ASYNC_MILLISECOND);
    cr_assert_geq(tu_clock() - t0, 20 * ASYNC_MILLISECOND);
}

Test(time, sleep_of_zero_or_less_returns)
{
    async_sleep(0);
    async_sleep(-5);
    async_sleep(INT64_MIN);
}

Test(time, sleep_until_a_past_deadline_returns_0)
{
    cr_assert_eq(async_sleep_until(0), 0);
    cr_assert_eq(async_sleep_until(1), 0);
    cr_assert_eq(async_sleep_until(async_now()), 0);
}

Test(time, sleep_until_waits_for_the_deadline)
{
    int64_t deadline = async_now() + 20 * ASYNC_MILLISECOND;
    cr_assert_eq(async_sleep_until(deadline), 0);
    cr_assert_geq(async_now(), deadline);
}

Test(time, sleep_until_below_minus_one_returns_einval)
{
    cr_assert_eq(async_sleep_until(-2), EINVAL);
    cr_assert_eq(async_sleep_until(INT64_MIN), EINVAL);
}

Test(time, sleep_until_forever_outside_a_task_returns_einval)
{
    cr_assert_eq(async_sleep_until(ASYNC_FOREVER), EINVAL);
}

struct sleeper {
    tu_gate_t started;
    int64_t   deadline;
    int       rc;
};

static void *sleep_until_task(void *arg)
{
    struct sleeper *s = arg;
    tu_gate_open(&s->started);
    s->rc = async_sleep_until(s->deadline);
    return NULL;
}

Test(time, sleep_until_inside_a_task_reaches_its_deadline)
{
    async_pool_t *pool = tu_pool(1, 0, NULL);
    struct sleeper s = { .deadline = async_now() + 10 * ASYNC_MILLISECOND, .rc = -1 };
    future_t *f = async_run_on(pool, sleep_until_task, &s);
    cr_assert_not_null(f);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(s.rc, 0);
    cr_assert_geq(async_now(), s.deadline);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

Test(time, sleep_until_forever_in_a_task_ends_with_ecanceled_when_cancelled)
{
    async_pool_t *pool = tu_pool(1, 0, NULL);
    struct sleeper s = { .deadline = ASYNC_FOREVER, .rc = -1 };
    future_t *f = async_run_on(pool, sleep_until_task, &s);
    cr_assert_not_null(f);
    cr_assert(tu_gate_wait(&s.started));
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(s.rc, ECANCELED);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

struct overflow_sleep {
    tu_gate_t started;
    int64_t   ns;
    bool      returned;
};

static void *overflow_sleep_task(void *arg)
{
    struct overflow_sleep *s = arg;
    tu_gate_open(&s->started);
    async_sleep(s->ns);
    s->returned = true;
    return NULL;
}

/* now + ns overflows: the sleep must saturate to forever (until cancelled),
 * not wrap to a past deadline and return at once. */
static void sleep_overflowing(int64_t ns)
{
    async_pool_t *pool = tu_pool(1, 0, NULL);
    struct overflow_sleep s = { .ns = ns };
    future_t *f = async_run_on(pool, overflow_sleep_task, &s);
    cr_assert_not_null(f);
    cr_assert(tu_gate_wait(&s.started));
    async_pool_stats_t st = { 0 };
    int64_t until = tu_deadline();
    while (!future_done(f) && (async_pool_stats(pool, &st) != 0 || tu_blocked(&st) == 0))
        cr_assert(tu_spin_once(until), "the sleeping task never blocked");
    cr_assert_not(future_done(f), "async_sleep(%lld) returned at once", (long long)ns);
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert(s.returned);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

Test(time, sleep_whose_end_overflows_lasts_until_cancelled)
{
    sleep_overflowing(INT64_MAX);
    sleep_overflowing(INT64_MAX - async_now() + 1);
}

struct long_sleep {
    tu_gate_t started;
    int64_t   slept;
};

static void *long_sleep_task(void *arg)
{
    struct long_sleep *s = arg;
    int64_t t0 = tu_clock();
    tu_gate_open(&s->started);
    async_sleep(3600 * ASYNC_SECOND);
    s->slept = tu_clock() - t0;
    return (void *)1;
}

Test(time, sleep_in_a_task_ends_early_when_the_task_is_cancelled)
{
    async_pool_t *pool = tu_pool(1, 0, NULL);
    struct long_sleep s = { .slept = -1 };
    future_t *f = async_run_on(pool, long_sleep_task, &s);
    void *r = NULL;
    cr_assert_not_null(f);
    cr_assert(tu_gate_wait(&s.started));
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(tu_get(f, &r), 0);
    cr_assert_eq(r, (void *)1);
    cr_assert_lt(s.slept, 3600 * ASYNC_SECOND);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}
