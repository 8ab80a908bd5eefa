/*
 * test/chan/test_select.c — chan_select (API.md: Channels): ready cases,
 * NULL cases, deadlines 0 / past / future, closed channels, waking by a later
 * operation or a close, uniform choice, many cases, and races against plain
 * operations.
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

static void put(chan_t *c, int v)
{
    cr_assert_eq(chan_send_until(c, &v, 0), 0);
}

static chan_case_t recv_case(chan_t *c, int *into)
{
    return (chan_case_t){ .chan = c, .op = CHAN_RECV, .elem = into };
}

static chan_case_t send_case(chan_t *c, int *from)
{
    return (chan_case_t){ .chan = c, .op = CHAN_SEND, .elem = from };
}

/* A select on a plain thread, reported to the test thread after joining. */
struct sel {
    chan_case_t *cases;
    size_t       n, fired;
    int64_t      deadline;
    int          rc;
    pthread_t    thread;
};

static void *sel_run(void *arg)
{
    struct sel *s = arg;
    s->rc = chan_select(s->cases, s->n, s->deadline, &s->fired);
    return NULL;
}

static void sel_start(struct sel *s, chan_case_t *cases, size_t n, int64_t deadline)
{
    *s = (struct sel){ .cases = cases, .n = n, .deadline = deadline, .fired = SIZE_MAX,
                       .rc = -1 };
    cr_assert_eq(pthread_create(&s->thread, NULL, sel_run, s), 0);
}

static void sel_join(struct sel *s)
{
    cr_assert_eq(pthread_join(s->thread, NULL), 0);
}

/* ---------------------------------------------------------- ready cases */

Test(select, performs_the_only_ready_receive)
{
    chan_t *a = make(sizeof(int), 1), *b = make(sizeof(int), 1);
    put(b, 8);
    int ra = -1, rb = -1;
    chan_case_t cs[2] = { recv_case(a, &ra), recv_case(b, &rb) };
    size_t fired = SIZE_MAX;
    cr_assert_eq(chan_select(cs, 2, 0, &fired), 0);
    cr_assert_eq(fired, 1);
    cr_assert_eq(rb, 8);
    cr_assert_eq(ra, -1, "only the fired case's element is written");
    chan_free(a);
    chan_free(b);
}

Test(select, performs_the_only_ready_send)
{
    chan_t *full = make(sizeof(int), 1), *room = make(sizeof(int), 1);
    put(full, 1);
    int x = 5, y = 6;
    chan_case_t cs[2] = { send_case(full, &x), send_case(room, &y) };
    size_t fired = SIZE_MAX;
    cr_assert_eq(chan_select(cs, 2, ASYNC_FOREVER, &fired), 0);
    cr_assert_eq(fired, 1);
    cr_assert_eq(chan_len(full), 1);
    int v = 0;
    cr_assert_eq(chan_recv_until(room, &v, 0), 0);
    cr_assert_eq(v, 6);
    chan_free(full);
    chan_free(room);
}

Test(select, mixing_sends_and_receives_performs_the_ready_one)
{
    chan_t *full = make(sizeof(int), 1), *empty = make(sizeof(int), 1),
           *room = make(sizeof(int), 2);
    put(full, 1);
    int x = 3, r = -1, z = 4;
    chan_case_t cs[3] = { send_case(full, &x), recv_case(empty, &r), send_case(room, &z) };
    size_t fired = SIZE_MAX;
    cr_assert_eq(chan_select(cs, 3, 0, &fired), 0);
    cr_assert_eq(fired, 2);
    cr_assert_eq(chan_len(room), 1);
    cr_assert_eq(chan_len(full), 1);
    cr_assert_eq(r, -1);
    chan_free(full);
    chan_free(empty);
    chan_free(room);
}

Test(select, fired_may_be_null)
{
    chan_t *c = make(sizeof(int), 1);
    put(c, 2);
    int v = 0;
    chan_case_t cs[1] = { recv_case(c, &v) };
    cr_assert_eq(chan_select(cs, 1, 0, NULL), 0);
    cr_assert_eq(v, 2);
    chan_free(c);
}

Test(select, receive_case_with_null_elem_discards)
{
    chan_t *c = make(sizeof(int), 2);
    put(c, 1);
    put(c, 2);
    chan_case_t cs[1] = { recv_case(c, NULL) };
    cr_assert_eq(chan_select(cs, 1, 0, NULL), 0);
    int v = 0;
    cr_assert_eq(chan_recv_until(c, &v, 0), 0);
    cr_assert_eq(v, 2);
    chan_free(c);
}

Test(select, signal_channels_need_no_elements)
{
    chan_t *c = make(0, 1);
    chan_case_t cs[1] = { { .chan = c, .op = CHAN_SEND, .elem = NULL } };
    cr_assert_eq(chan_select(cs, 1, 0, NULL), 0);
    cs[0].op = CHAN_RECV;
    cr_assert_eq(chan_select(cs, 1, 0, NULL), 0);
    cr_assert_eq(chan_select(cs, 1, 0, NULL), EAGAIN);
    chan_free(c);
}

Test(select, the_same_channel_may_appear_in_several_cases)
{
    chan_t *c = make(sizeof(int), 4);
    put(c, 1);
    int a = 0, b = 0, x = 9;
    chan_case_t cs[3] = { recv_case(c, &a), send_case(c, &x), recv_case(c, &b) };
    size_t fired = SIZE_MAX;
    cr_assert_eq(chan_select(cs, 3, 0, &fired), 0);
    cr_assert(fired < 3);
    chan_free(c);
}

/* ------------------------------------------------------------ NULL cases */

Test(select, null_cases_never_fire)
{
    chan_t *c = make(sizeof(int), 1);
    int v = 0;
    chan_case_t cs[3] = { recv_case(NULL, &v), recv_case(c, &v), send_case(NULL, &v) };
    for (int i = 0; i < 200; i++) {
        put(c, i);
        size_t fired = SIZE_MAX;
        cr_assert_eq(chan_select(cs, 3, 0, &fired), 0);
        cr_assert_eq(fired, 1);
        cr_assert_eq(v, i);
    }
    chan_free(c);
}

Test(select, only_null_cases_and_deadline_0_returns_eagain)
{
    int v = 0;
    chan_case_t cs[2] = { recv_case(NULL, &v), send_case(NULL, NULL) };
    size_t fired = 77;
    cr_assert_eq(chan_select(cs, 2, 0, &fired), EAGAIN);
    cr_assert_eq(fired, 77, "fired untouched");
}

Test(select, only_null_cases_and_a_past_deadline_returns_etimedout)
{
    chan_case_t cs[1] = { recv_case(NULL, NULL) };
    cr_assert_eq(chan_select(cs, 1, 1, NULL), ETIMEDOUT);
}

Test(select, only_null_cases_wait_for_a_future_deadline)
{
    chan_case_t cs[1] = { recv_case(NULL, NULL) };
    int64_t deadline = async_now() + 20 * ASYNC_MILLISECOND;
    cr_assert_eq(chan_select(cs, 1, deadline, NULL), ETIMEDOUT);
    cr_assert_geq(async_now(), deadline);
}

Test(select, no_cases_wait_for_the_deadline)
{
    cr_assert_eq(chan_select(NULL, 0, 0, NULL), EAGAIN);
    cr_assert_eq(chan_select(NULL, 0, 1, NULL), ETIMEDOUT);
    int64_t deadline = async_now() + 10 * ASYNC_MILLISECOND;
    cr_assert_eq(chan_select(NULL, 0, deadline, NULL), ETIMEDOUT);
    cr_assert_geq(async_now(), deadline);
}

Test(select, forever_with_nothing_to_fire_outside_a_task_returns_einval)
{
    cr_assert_eq(chan_select(NULL, 0, ASYNC_FOREVER, NULL), EINVAL);
    chan_case_t cs[2] = { recv_case(NULL, NULL), send_case(NULL, NULL) };
    cr_assert_eq(chan_select(cs, 2, ASYNC_FOREVER, NULL), EINVAL);
}

/* --------------------------------------------------------- bad arguments */

Test(select, bad_arguments_return_einval)
{
    chan_t *c = make(sizeof(int), 1);
    int v = 0;
    cr_assert_eq(chan_select(NULL, 1, 0, NULL), EINVAL, "cases NULL with n > 0");
    chan_case_t bad_op[1] = { { .chan = c, .op = (chan_op_t)7, .elem = &v } };
    cr_assert_eq(chan_select(bad_op, 1, 0, NULL), EINVAL, "an op that is neither");
    chan_case_t null_send[1] = { send_case(c, NULL) };
    cr_assert_eq(chan_select(null_send, 1, 0, NULL), EINVAL, "a send of nothing");
    chan_case_t ok[1] = { recv_case(c, &v) };
    cr_assert_eq(chan_select(ok, 1, -2, NULL), EINVAL, "a deadline below -1");
    cr_assert_eq(chan_len(c), 0);
    chan_free(c);
}

Test(select, einval_is_reported_before_a_ready_or_closed_case)
{
    chan_t *c = make(sizeof(int), 1);
    put(c, 1);
    int v = 0;
    chan_case_t cs[2] = { recv_case(c, &v), send_case(c, NULL) };
    cr_assert_eq(chan_select(cs, 2, 0, NULL), EINVAL);
    cr_assert_eq(chan_len(c), 1, "nothing performed");
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(chan_select(cs, 2, 0, NULL), EINVAL);
    chan_free(c);
}

/* ------------------------------------------------------------- deadlines */

Test(select, nothing_ready_with_deadline_0_returns_eagain)
{
    chan_t *a = make(sizeof(int), 0), *b = make(sizeof(int), 1);
    put(b, 1);
    int x = 1, y = 2;
    chan_case_t cs[2] = { send_case(a, &x), send_case(b, &y) };
    size_t fired = 5;
    cr_assert_eq(chan_select(cs, 2, 0, &fired), EAGAIN);
    cr_assert_eq(fired, 5);
    cr_assert_eq(ct_queued(a, CHAN_SEND) + ct_queued(b, CHAN_SEND), 0, "nothing left queued");
    chan_free(a);
    chan_free(b);
}

Test(select, nothing_ready_with_a_past_deadline_returns_etimedout)
{
    chan_t *a = make(sizeof(int), 1);
    int v;
    chan_case_t cs[1] = { recv_case(a, &v) };
    cr_assert_eq(chan_select(cs, 1, async_now() - 1, NULL), ETIMEDOUT);
    chan_free(a);
}

Test(select, nothing_ready_until_a_future_deadline_returns_etimedout_and_unregisters)
{
    chan_t *a = make(sizeof(int), 0), *b = make(sizeof(int), 1);
    int x = 1, r = 0;
    chan_case_t cs[2] = { send_case(a, &x), recv_case(b, &r) };
    int64_t deadline = async_now() + 20 * ASYNC_MILLISECOND;
    cr_assert_eq(chan_select(cs, 2, deadline, NULL), ETIMEDOUT);
    cr_assert_geq(async_now(), deadline);
    cr_assert_eq(ct_queued(a, CHAN_SEND), 0);
    cr_assert_eq(ct_queued(b, CHAN_RECV), 0);
    int v;
    cr_assert_eq(chan_recv_until(a, &v, 0), EAGAIN, "the send was never performed");
    chan_free(a);
    chan_free(b);
}

Test(select, a_ready_case_is_performed_whatever_the_deadline)
{
    chan_t *c = make(sizeof(int), 1);
    put(c, 3);
    int v = 0;
    chan_case_t cs[1] = { recv_case(c, &v) };
    cr_assert_eq(chan_select(cs, 1, 1, NULL), 0);
    cr_assert_eq(v, 3);
    chan_free(c);
}

/* ---------------------------------------------------------------- closed */

Test(select, closed_channel_answers_epipe_even_with_deadline_0)
{
    chan_t *open = make(sizeof(int), 1), *closed = make(sizeof(int), 1);
    cr_assert_eq(chan_close(closed), 0);
    int v = 0, x = 1;
    chan_case_t rs[2] = { recv_case(open, &v), recv_case(closed, &v) };
    size_t fired = SIZE_MAX;
    cr_assert_eq(chan_select(rs, 2, 0, &fired), EPIPE);
    cr_assert_eq(fired, 1);
    chan_case_t ss[2] = { recv_case(open, &v), send_case(closed, &x) };
    fired = SIZE_MAX;
    cr_assert_eq(chan_select(ss, 2, 0, &fired), EPIPE);
    cr_assert_eq(fired, 1);
    chan_free(open);
    chan_free(closed);
}

Test(select, receive_on_a_closed_channel_drains_it_first)
{
    chan_t *c = make(sizeof(int), 2);
    put(c, 4);
    cr_assert_eq(chan_close(c), 0);
    int v = 0;
    chan_case_t cs[1] = { recv_case(c, &v) };
    cr_assert_eq(chan_select(cs, 1, 0, NULL), 0);
    cr_assert_eq(v, 4);
    cr_assert_eq(chan_select(cs, 1, 0, NULL), EPIPE);
    chan_free(c);
}

/* ---------------------------------------------------------------- waking */

Test(select, blocked_select_is_fired_by_a_later_sender)
{
    chan_t *a = make(sizeof(int), 0), *b = make(sizeof(int), 3);
    int ra = -1, rb = -1;
    chan_case_t cs[2] = { recv_case(a, &ra), recv_case(b, &rb) };
    struct sel s;
    sel_start(&s, cs, 2, ASYNC_FOREVER);
    cr_assert(ct_wait_queued(b, CHAN_RECV, 1));
    cr_assert(ct_wait_queued(a, CHAN_RECV, 1));
    put(b, 55);
    sel_join(&s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.fired, 1);
    cr_assert_eq(rb, 55);
    cr_assert_eq(ra, -1);
    cr_assert_eq(chan_len(b), 0, "handed off, never buffered");
    cr_assert_eq(ct_queued(a, CHAN_RECV), 0, "unregistered from the other channel");
    chan_free(a);
    chan_free(b);
}

Test(select, blocked_select_send_is_taken_by_a_later_receiver)
{
    chan_t *a = make(sizeof(int), 0), *b = make(sizeof(int), 0);
    int x = 10, y = 20;
    chan_case_t cs[2] = { send_case(a, &x), send_case(b, &y) };
    struct sel s;
    sel_start(&s, cs, 2, ASYNC_FOREVER);
    cr_assert(ct_wait_queued(a, CHAN_SEND, 1));
    cr_assert(ct_wait_queued(b, CHAN_SEND, 1));
    int v = 0;
    cr_assert_eq(chan_recv(a, &v), 0);
    sel_join(&s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.fired, 0);
    cr_assert_eq(v, 10);
    cr_assert_eq(chan_recv_until(b, &v, 0), EAGAIN, "the other send never happened");
    chan_free(a);
    chan_free(b);
}

Test(select, the_taking_channel_unlinks_every_case_of_the_select_on_it)
{
    /* Three cases on a, one on b: the receive that takes the select on a
     * must unlink its other two wnodes there, since the select does not
     * lock a again (a's other party may free it at once). */
    chan_t *a = make(sizeof(int), 0), *b = make(sizeof(int), 0);
    int x = 1, y = 2, z = 3, w = 4;
    chan_case_t cs[4] = { send_case(a, &x), send_case(b, &w), send_case(a, &y),
                          send_case(a, &z) };
    struct sel s;
    sel_start(&s, cs, 4, ASYNC_FOREVER);
    cr_assert(ct_wait_queued(a, CHAN_SEND, 3));
    cr_assert(ct_wait_queued(b, CHAN_SEND, 1));
    int v = 0;
    cr_assert_eq(chan_recv(a, &v), 0);
    sel_join(&s);
    cr_assert_eq(s.rc, 0);
    cr_assert(s.fired == 0 || s.fired == 2 || s.fired == 3);
    cr_assert_eq(v, *(int *)cs[s.fired].elem);
    cr_assert_eq(ct_queued(a, CHAN_SEND), 0, "no wnode of the select is left on a");
    cr_assert_eq(ct_queued(b, CHAN_SEND), 0, "nor on b");
    chan_free(a);
    chan_free(b);
}

Test(select, a_close_unlinks_every_case_of_the_select_on_the_channel)
{
    chan_t *a = make(sizeof(int), 0);
    int x = 0, y = 0;
    chan_case_t cs[2] = { recv_case(a, &x), recv_case(a, &y) };
    struct sel s;
    sel_start(&s, cs, 2, ASYNC_FOREVER);
    cr_assert(ct_wait_queued(a, CHAN_RECV, 2));
    cr_assert_eq(chan_close(a), 0);
    sel_join(&s);
    cr_assert_eq(s.rc, EPIPE);
    cr_assert_eq(ct_queued(a, CHAN_RECV), 0);
    chan_free(a);
}

Test(select, blocked_select_is_woken_by_a_close_with_epipe)
{
    chan_t *a = make(sizeof(int), 0), *b = make(sizeof(int), 0);
    int ra = 0, y = 1;
    chan_case_t cs[2] = { recv_case(a, &ra), send_case(b, &y) };
    struct sel s;
    sel_start(&s, cs, 2, ASYNC_FOREVER);
    cr_assert(ct_wait_queued(a, CHAN_RECV, 1));
    cr_assert(ct_wait_queued(b, CHAN_SEND, 1));
    cr_assert_eq(chan_close(b), 0);
    sel_join(&s);
    cr_assert_eq(s.rc, EPIPE);
    cr_assert_eq(s.fired, 1);
    cr_assert_eq(ct_queued(a, CHAN_RECV), 0);
    chan_free(a);
    chan_free(b);
}

Test(select, blocked_select_with_a_future_deadline_is_fired_before_it)
{
    chan_t *c = make(sizeof(int), 0);
    int r = 0;
    chan_case_t cs[1] = { recv_case(c, &r) };
    struct sel s;
    sel_start(&s, cs, 1, async_now() + 60 * ASYNC_SECOND);
    cr_assert(ct_wait_queued(c, CHAN_RECV, 1));
    int v = 17;
    cr_assert_eq(chan_send(c, &v), 0);
    sel_join(&s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(r, 17);
    chan_free(c);
}

Test(select, a_select_never_matches_itself)
{
    chan_t *c = make(sizeof(int), 0);
    int x = 1, r = 0;
    chan_case_t cs[2] = { send_case(c, &x), recv_case(c, &r) };
    cr_assert_eq(chan_select(cs, 2, async_now() + 10 * ASYNC_MILLISECOND, NULL), ETIMEDOUT);
    cr_assert_eq(ct_queued(c, CHAN_SEND) + ct_queued(c, CHAN_RECV), 0);
    chan_free(c);
}

Test(select, two_selects_match_each_other)
{
    chan_t *c = make(sizeof(int), 0);
    int x = 71, r = 0;
    chan_case_t mine[1] = { recv_case(c, &r) };
    chan_case_t theirs[1] = { send_case(c, &x) };
    struct sel s;
    sel_start(&s, theirs, 1, ASYNC_FOREVER);
    cr_assert(ct_wait_queued(c, CHAN_SEND, 1));
    cr_assert_eq(chan_select(mine, 1, ASYNC_FOREVER, NULL), 0);
    sel_join(&s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(r, 71);
    chan_free(c);
}

/* -------------------------------------------------------------- fairness */

Test(select, each_of_two_ready_cases_is_chosen_about_half_the_time)
{
    enum { N = 100000 };
    chan_t *a = make(sizeof(int), 1), *b = make(sizeof(int), 1);
    put(a, 0);
    put(b, 1);
    int v = -1;
    chan_case_t cs[2] = { recv_case(a, &v), recv_case(b, &v) };
    unsigned count[2] = { 0, 0 };
    for (int i = 0; i < N; i++) {
        size_t fired = SIZE_MAX;
        cr_assert_eq(chan_select(cs, 2, 0, &fired), 0);
        cr_assert(fired < 2);
        cr_assert_eq((size_t)v, fired);
        count[fired]++;
        put(fired ? b : a, (int)fired);   /* ready again */
    }
    cr_log_info("case 0: %u, case 1: %u\n", count[0], count[1]);
    cr_assert(count[0] >= N * 45 / 100 && count[0] <= N * 55 / 100,
              "case 0 chosen %u times of %d", count[0], N);
    cr_assert(count[1] >= N * 45 / 100 && count[1] <= N * 55 / 100,
              "case 1 chosen %u times of %d", count[1], N);
    chan_free(a);
    chan_free(b);
}

Test(select, a_ready_case_among_many_not_ready_ones_is_found)
{
    enum { N = 40 };
    chan_t *c[N];
    int v[N];
    chan_case_t cs[N];
    for (int i = 0; i < N; i++) {
        c[i] = make(sizeof(int), 1);
        v[i] = -1;
        cs[i] = recv_case(c[i], &v[i]);
    }
    for (int k = 0; k < N; k += 7) {
        put(c[k], k);
        size_t fired = SIZE_MAX;
        cr_assert_eq(chan_select(cs, N, 0, &fired), 0);
        cr_assert_eq(fired, (size_t)k);
        cr_assert_eq(v[k], k);
    }
    cr_assert_eq(chan_select(cs, N, 0, NULL), EAGAIN);
    for (int i = 0; i < N; i++)
        chan_free(c[i]);
}

Test(select, many_cases_fail_with_enomem_at_every_allocation_and_then_succeed)
{
    enum { N = 40 };
    chan_t *c[N];
    int v[N];
    chan_case_t cs[N];
    for (int i = 0; i < N; i++) {
        c[i] = make(sizeof(int), 1);
        cs[i] = recv_case(c[i], &v[i]);
    }
    put(c[N - 1], 5);
    int rc = ENOMEM;
    long n;
    for (n = 1; n < 100 && rc == ENOMEM; n++) {
        async__test_fail_alloc(n);
        rc = chan_select(cs, N, 0, NULL);
        cr_assert(rc == 0 || rc == ENOMEM, "allocation %ld: %d", n, rc);
        if (rc == ENOMEM)
            cr_assert_eq(chan_len(c[N - 1]), 1, "nothing performed on ENOMEM");
    }
    async__test_fail_alloc(0);
    cr_assert_eq(rc, 0);
    cr_assert_gt(n, 2, "the bookkeeping allocation never failed");
    cr_assert_eq(v[N - 1], 5);
    for (int i = 0; i < N; i++)
        chan_free(c[i]);
}

/* ----------------------------------------------------------------- races */

Test(select, selects_mixing_sends_and_receives_race_without_losing_a_value)
{
    struct ct_tally t = { 0 };
    cr_assert_eq(ct_select_race(4, 2, 3, 3, 3000, &t), 0);
    ct_tally_print("select race", &t);
    cr_assert(ct_tally_ok(&t));
    cr_assert_eq(t.sent, 3 * 3000);
}
