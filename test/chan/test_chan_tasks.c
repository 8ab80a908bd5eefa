/*
 * test/chan/test_chan_tasks.c — channels inside pool tasks (API.md: Channels,
 * future_cancel, "Waiting never deadlocks the pool"): tasks and plain threads
 * on the same channels, a 1,000-stage pipeline on a 2-thread pool, and
 * cancellation of tasks blocked in chan_send, chan_recv and chan_select.
 * Also the allocation a thread's first wait makes.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "chanutil.h"

static chan_t *make(size_t elem_size, size_t capacity)
{
    chan_t *c = chan_make(elem_size, capacity);
    cr_assert_not_null(c, "chan_make: %s", strerror(errno));
    return c;
}

static async_pool_t *pool_of(unsigned threads)
{
    async_pool_t *pool = tu_pool(threads, 0, NULL);
    cr_assert_not_null(pool, "async_pool_create: %s", strerror(errno));
    return pool;
}

static void destroy(async_pool_t *pool)
{
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

/* The return code of a task's channel operation, carried as its result. */
static int task_rc(future_t *f)
{
    void *res = (void *)(intptr_t)-1;
    cr_assert_eq(tu_get(f, &res), 0, "the task itself failed");
    future_free(f);
    return (int)(intptr_t)res;
}

struct chan_arg {
    chan_t *c, *other;
    int     value, got;
};

static void *task_recv(void *arg)
{
    struct chan_arg *a = arg;
    return (void *)(intptr_t)chan_recv(a->c, &a->got);
}

static void *task_send(void *arg)
{
    struct chan_arg *a = arg;
    return (void *)(intptr_t)chan_send(a->c, &a->value);
}

static void *task_select(void *arg)
{
    struct chan_arg *a = arg;
    chan_case_t cs[2] = {
        { .chan = a->c, .op = CHAN_RECV, .elem = &a->got },
        { .chan = a->other, .op = CHAN_SEND, .elem = &a->value },
    };
    return (void *)(intptr_t)chan_select(cs, 2, ASYNC_FOREVER, NULL);
}

static void *task_select_nothing(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)chan_select(NULL, 0, ASYNC_FOREVER, NULL);
}

/* -------------------------------------------------- tasks and threads */

Test(chan_tasks, a_task_receives_what_a_thread_sends_and_back)
{
    async_pool_t *pool = pool_of(2);
    chan_t *c = make(sizeof(int), 0);
    struct chan_arg a = { .c = c, .value = 5 };
    future_t *f = async_run_on(pool, task_send, &a);
    cr_assert_not_null(f);
    int v = 0;
    cr_assert_eq(chan_recv(c, &v), 0);
    cr_assert_eq(v, 5);
    cr_assert_eq(task_rc(f), 0);
    f = async_run_on(pool, task_recv, &a);
    cr_assert_not_null(f);
    v = 6;
    cr_assert_eq(chan_send(c, &v), 0);
    cr_assert_eq(task_rc(f), 0);
    cr_assert_eq(a.got, 6);
    chan_free(c);
    destroy(pool);
}

Test(chan_tasks, tasks_and_threads_mixed_deliver_every_item_once_buffered)
{
    async_pool_t *pool = pool_of(2);
    struct ct_tally t = { 0 };
    cr_assert_eq(ct_mpmc(16, 4, 4, 200000, CT_MIXED, pool, &t), 0);
    cr_assert_eq(ct_mpmc(16, 3, 3, 100000, CT_TASKS, pool, &t), 0);
    ct_tally_print("mixed buffered", &t);
    cr_assert(ct_tally_ok(&t));
    cr_assert_eq(t.sent, 300000);
    destroy(pool);
}

Test(chan_tasks, tasks_and_threads_mixed_deliver_every_item_once_unbuffered)
{
    async_pool_t *pool = pool_of(2);
    struct ct_tally t = { 0 };
    cr_assert_eq(ct_mpmc(0, 4, 4, 100000, CT_MIXED, pool, &t), 0);
    cr_assert_eq(ct_mpmc(0, 3, 3, 50000, CT_TASKS, pool, &t), 0);
    ct_tally_print("mixed unbuffered", &t);
    cr_assert(ct_tally_ok(&t));
    cr_assert_eq(t.sent, 150000);
    destroy(pool);
}

Test(chan_tasks, a_thousand_stage_pipeline_runs_on_a_two_thread_pool)
{
    struct ct_tally t = { 0 };
    cr_assert_eq(ct_pipeline(1000, 2, 200, &t), 0);
    ct_tally_print("pipeline", &t);
    cr_assert(ct_tally_ok(&t));
    cr_assert_eq(t.sent, 200);
}

/* --------------------------------------------------------- cancellation */

Test(chan_tasks, cancelling_a_task_blocked_in_recv_returns_ecanceled)
{
    async_pool_t *pool = pool_of(2);
    chan_t *c = make(sizeof(int), 0);
    struct chan_arg a = { .c = c, .got = -1 };
    future_t *f = async_run_on(pool, task_recv, &a);
    cr_assert_not_null(f);
    cr_assert(ct_wait_queued(c, CHAN_RECV, 1));
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(task_rc(f), ECANCELED);
    cr_assert_eq(a.got, -1);
    cr_assert_eq(ct_queued(c, CHAN_RECV), 0, "the cancelled receiver left the queue");
    int v = 1;
    cr_assert_eq(chan_send_until(c, &v, 0), EAGAIN, "nobody receives any more");
    chan_free(c);
    destroy(pool);
}

Test(chan_tasks, cancelling_a_task_blocked_in_send_returns_ecanceled_and_never_delivers)
{
    async_pool_t *pool = pool_of(2);
    chan_t *c = make(sizeof(int), 1);
    int first = 1;
    cr_assert_eq(chan_send(c, &first), 0);
    struct chan_arg a = { .c = c, .value = 2 };
    future_t *f = async_run_on(pool, task_send, &a);
    cr_assert_not_null(f);
    cr_assert(ct_wait_queued(c, CHAN_SEND, 1));
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(task_rc(f), ECANCELED);
    int v = 0;
    cr_assert_eq(chan_recv_until(c, &v, 0), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(chan_recv_until(c, &v, 0), EAGAIN, "the cancelled value was never sent");
    chan_free(c);
    destroy(pool);
}

Test(chan_tasks, cancelling_a_task_blocked_in_select_returns_ecanceled)
{
    async_pool_t *pool = pool_of(2);
    chan_t *a = make(sizeof(int), 0), *b = make(sizeof(int), 0);
    struct chan_arg arg = { .c = a, .other = b, .value = 3, .got = -1 };
    future_t *f = async_run_on(pool, task_select, &arg);
    cr_assert_not_null(f);
    cr_assert(ct_wait_queued(a, CHAN_RECV, 1));
    cr_assert(ct_wait_queued(b, CHAN_SEND, 1));
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(task_rc(f), ECANCELED);
    cr_assert_eq(ct_queued(a, CHAN_RECV) + ct_queued(b, CHAN_SEND), 0);
    int v = 0;
    cr_assert_eq(chan_recv_until(b, &v, 0), EAGAIN, "the select's send never happened");
    cr_assert_eq(chan_send_until(a, &v, 0), EAGAIN);
    cr_assert_eq(arg.got, -1);
    chan_free(a);
    chan_free(b);
    destroy(pool);
}

Test(chan_tasks, select_with_nothing_to_fire_blocks_until_its_task_is_cancelled)
{
    async_pool_t *pool = pool_of(2);
    future_t *f = async_run_on(pool, task_select_nothing, NULL);
    cr_assert_not_null(f);
    cr_assert(ct_wait_blocked(pool, 1), "the select never blocked");
    cr_assert_eq(future_state(f), FUTURE_RUNNING);
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(task_rc(f), ECANCELED);
    destroy(pool);
}

struct cancelled_ops {
    chan_t *gate, *ready_recv, *ready_send;
    int     rc_gate, rc_send, rc_send_poll, rc_recv, rc_recv_poll, rc_select, rc_close;
};

/* Waits on gate until cancelled, then tries operations that could all
 * complete at once. */
static void *task_after_cancel(void *arg)
{
    struct cancelled_ops *o = arg;
    int v = 9;
    o->rc_gate = chan_recv(o->gate, NULL);
    o->rc_send = chan_send(o->ready_send, &v);
    o->rc_send_poll = chan_send_until(o->ready_send, &v, 0);
    o->rc_recv = chan_recv(o->ready_recv, &v);
    o->rc_recv_poll = chan_recv_until(o->ready_recv, &v, 0);
    chan_case_t cs[2] = {
        { .chan = o->ready_recv, .op = CHAN_RECV, .elem = &v },
        { .chan = o->ready_send, .op = CHAN_SEND, .elem = &v },
    };
    o->rc_select = chan_select(cs, 2, 0, NULL);
    o->rc_close = chan_close(o->gate);
    return NULL;
}

Test(chan_tasks, a_cancelled_task_performs_no_channel_operation_even_a_ready_one)
{
    async_pool_t *pool = pool_of(2);
    struct cancelled_ops o = {
        .gate = make(0, 0), .ready_recv = make(sizeof(int), 1), .ready_send = make(sizeof(int), 1),
    };
    int v = 4;
    cr_assert_eq(chan_send(o.ready_recv, &v), 0);
    future_t *f = async_run_on(pool, task_after_cancel, &o);
    cr_assert_not_null(f);
    cr_assert(ct_wait_queued(o.gate, CHAN_RECV, 1));
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(tu_get(f, NULL), 0);
    future_free(f);
    cr_assert_eq(o.rc_gate, ECANCELED);
    cr_assert_eq(o.rc_send, ECANCELED);
    cr_assert_eq(o.rc_send_poll, ECANCELED);
    cr_assert_eq(o.rc_recv, ECANCELED);
    cr_assert_eq(o.rc_recv_poll, ECANCELED);
    cr_assert_eq(o.rc_select, ECANCELED);
    cr_assert_eq(o.rc_close, 0, "close never blocks and ignores cancellation");
    cr_assert_eq(chan_len(o.ready_recv), 1, "still there");
    cr_assert_eq(chan_len(o.ready_send), 0, "nothing sent");
    chan_free(o.gate);
    chan_free(o.ready_recv);
    chan_free(o.ready_send);
    destroy(pool);
}

Test(chan_tasks, cancelling_shutdown_wakes_a_task_blocked_in_recv)
{
    async_pool_t *pool = pool_of(2);
    chan_t *c = make(sizeof(int), 0);
    struct chan_arg a = { .c = c };
    future_t *f = async_run_on(pool, task_recv, &a);
    cr_assert_not_null(f);
    cr_assert(ct_wait_queued(c, CHAN_RECV, 1));
    cr_assert_eq(async_pool_destroy(pool, ASYNC_CANCEL), 0);
    cr_assert_eq(task_rc(f), ECANCELED);
    cr_assert_eq(ct_queued(c, CHAN_RECV), 0);
    chan_free(c);
}

Test(chan_tasks, cancellations_racing_with_deliveries_never_lose_or_invent_a_value)
{
    async_pool_t *pool = pool_of(2);
    struct ct_tally t = { 0 };
    cr_assert_eq(ct_cancel_race(pool, 24, 40, &t), 0);
    ct_tally_print("cancel race", &t);
    cr_assert(ct_tally_ok(&t));
    destroy(pool);
}

/* ------------------------------------------------------------ allocation */

struct first_wait {
    chan_t *c;
    int     rcs[8];
    int     n;
};

/* A fresh thread has no parker yet: its first wait allocates one. */
static void *first_wait_run(void *arg)
{
    struct first_wait *fw = arg;
    int rc = ENOMEM;
    for (long n = 1; rc == ENOMEM && fw->n < 8; n++) {
        async__test_fail_alloc(n);
        int v;
        rc = chan_recv_until(fw->c, &v, async_now() + ASYNC_MILLISECOND);
        fw->rcs[fw->n++] = rc;
    }
    async__test_fail_alloc(0);
    return NULL;
}

Test(chan_tasks, a_threads_first_wait_fails_with_enomem_when_its_parker_cannot_be_allocated)
{
    chan_t *c = make(sizeof(int), 1);
    struct first_wait fw = { .c = c };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, first_wait_run, &fw), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_geq(fw.n, 2);
    cr_assert_eq(fw.rcs[0], ENOMEM, "the parker allocation failed: ENOMEM");
    cr_assert_eq(fw.rcs[fw.n - 1], ETIMEDOUT, "then the wait works");
    cr_assert_eq(ct_queued(c, CHAN_RECV), 0, "nothing left queued");
    chan_free(c);
}
