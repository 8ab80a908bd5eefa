/*
 * test/chan/test_chan.c — channels (API.md: Channels): make, send, receive,
 * the _until forms, close, len, cap, free, every return code, FIFO order,
 * direct hand-off, rendezvous, and producers x consumers at scale.
 *
 * A party is known to be blocked when its wnode sits on the channel's wait
 * queue (ct_wait_queued); nothing here sleeps to order events.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "chanutil.h"

/* ------------------------------------------------------------- helpers */

static chan_t *make(size_t elem_size, size_t capacity)
{
    chan_t *c = chan_make(elem_size, capacity);
    cr_assert_not_null(c, "chan_make(%zu, %zu): %s", elem_size, capacity, strerror(errno));
    return c;
}

/* One blocking operation on a plain thread; the test thread reads rc, v and
 * returned after joining it. */
struct op {
    chan_t     *c;
    chan_op_t   kind;
    int         value;      /* to send, or received */
    int         rc;
    atomic_bool returned;
    pthread_t   thread;
};

static void *op_run(void *arg)
{
    struct op *o = arg;
    o->rc = o->kind == CHAN_SEND ? chan_send(o->c, &o->value) : chan_recv(o->c, &o->value);
    atomic_store(&o->returned, true);
    return NULL;
}

static void op_start(struct op *o, chan_t *c, chan_op_t kind, int value)
{
    o->c = c;
    o->kind = kind;
    o->value = value;
    o->rc = -1;
    atomic_init(&o->returned, false);
    cr_assert_eq(pthread_create(&o->thread, NULL, op_run, o), 0);
}

static void op_join(struct op *o)
{
    cr_assert_eq(pthread_join(o->thread, NULL), 0);
}

/* Start an operation and wait until it is blocked on c. */
static void op_block(struct op *o, chan_t *c, chan_op_t kind, int value, size_t queued)
{
    op_start(o, c, kind, value);
    cr_assert(ct_wait_queued(c, kind, queued), "the operation never blocked");
}

static void send_ok(chan_t *c, int v)
{
    cr_assert_eq(chan_send_until(c, &v, 0), 0, "send of %d", v);
}

static int recv_ok(chan_t *c)
{
    int v = -1;
    cr_assert_eq(chan_recv_until(c, &v, 0), 0);
    return v;
}

/* ---------------------------------------------------------------- make */

Test(chan, make_returns_an_open_empty_channel_of_the_given_capacity)
{
    chan_t *c = make(sizeof(int), 4);
    cr_assert_eq(chan_cap(c), 4);
    cr_assert_eq(chan_len(c), 0);
    chan_free(c);
}

Test(chan, make_with_capacity_0_is_unbuffered)
{
    chan_t *c = make(sizeof(int), 0);
    cr_assert_eq(chan_cap(c), 0);
    int v = 1;
    cr_assert_eq(chan_send_until(c, &v, 0), EAGAIN, "no receiver: the send would block");
    cr_assert_eq(chan_len(c), 0);
    chan_free(c);
}

Test(chan, make_with_overflowing_size_returns_einval)
{
    errno = 0;
    cr_assert_null(chan_make(SIZE_MAX / 2 + 1, 2));
    cr_assert_eq(errno, EINVAL);
}

Test(chan, make_with_unallocatable_size_returns_enomem)
{
    errno = 0;
    cr_assert_null(chan_make(1, SIZE_MAX / 2));
    cr_assert_eq(errno, ENOMEM);
}

Test(chan, make_whose_product_fits_but_not_with_the_header_returns_enomem)
{
    errno = 0;
    cr_assert_null(chan_make(1, SIZE_MAX), "the product fits a size_t: not EINVAL");
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(chan_make(SIZE_MAX, 1));
    cr_assert_eq(errno, ENOMEM);
}

Test(chan, make_fails_with_enomem_at_every_allocation_and_then_succeeds)
{
    chan_t *c = NULL;
    long n;
    for (n = 1; n < 100 && !c; n++) {
        async__test_fail_alloc(n);
        errno = 0;
        c = chan_make(sizeof(int), 8);
        if (!c)
            cr_assert_eq(errno, ENOMEM, "allocation %ld failed, yet errno is %d", n, errno);
    }
    async__test_fail_alloc(0);
    cr_assert_not_null(c, "chan_make never succeeded");
    cr_assert_gt(n, 2, "the first allocation failed without an ENOMEM");
    send_ok(c, 7);
    cr_assert_eq(recv_ok(c), 7, "the channel made after the failures works");
    chan_free(c);
}

Test(chan, signal_channel_of_any_capacity_can_be_made)
{
    chan_t *c = make(0, SIZE_MAX);
    cr_assert_eq(chan_cap(c), SIZE_MAX);
    chan_free(c);
}

/* --------------------------------------------------------- bad arguments */

Test(chan, null_channel_is_einval_everywhere)
{
    int v = 0;
    cr_assert_eq(chan_send(NULL, &v), EINVAL);
    cr_assert_eq(chan_recv(NULL, &v), EINVAL);
    cr_assert_eq(chan_send_until(NULL, &v, 0), EINVAL);
    cr_assert_eq(chan_recv_until(NULL, &v, 0), EINVAL);
    cr_assert_eq(chan_close(NULL), EINVAL);
    cr_assert_eq(chan_len(NULL), 0);
    cr_assert_eq(chan_cap(NULL), 0);
    chan_free(NULL);
}

Test(chan, send_of_null_elem_with_nonzero_size_returns_einval)
{
    chan_t *c = make(sizeof(int), 1);
    cr_assert_eq(chan_send(c, NULL), EINVAL);
    cr_assert_eq(chan_send_until(c, NULL, 0), EINVAL);
    cr_assert_eq(chan_len(c), 0, "nothing was sent");
    chan_free(c);
}

Test(chan, deadline_below_minus_one_returns_einval)
{
    chan_t *c = make(sizeof(int), 1);
    int v = 1;
    cr_assert_eq(chan_send_until(c, &v, -2), EINVAL);
    cr_assert_eq(chan_recv_until(c, &v, -2), EINVAL);
    cr_assert_eq(chan_len(c), 0);
    chan_free(c);
}

Test(chan, einval_is_reported_before_epipe)
{
    chan_t *c = make(sizeof(int), 1);
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(chan_send(c, NULL), EINVAL);
    cr_assert_eq(chan_recv_until(c, NULL, -5), EINVAL);
    chan_free(c);
}

/* ------------------------------------------------------------ buffered */

Test(chan, buffered_values_come_out_in_the_order_they_went_in)
{
    chan_t *c = make(sizeof(int), 5);
    for (int i = 0; i < 5; i++)
        send_ok(c, i);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(recv_ok(c), i);
    /* and again across the ring's wrap-around */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 3; i++)
            send_ok(c, 10 * round + i);
        for (int i = 0; i < 3; i++)
            cr_assert_eq(recv_ok(c), 10 * round + i);
    }
    chan_free(c);
}

Test(chan, len_counts_the_buffered_values)
{
    chan_t *c = make(sizeof(int), 3);
    send_ok(c, 1);
    send_ok(c, 2);
    cr_assert_eq(chan_len(c), 2);
    recv_ok(c);
    cr_assert_eq(chan_len(c), 1);
    chan_free(c);
}

Test(chan, send_on_full_channel_with_deadline_0_returns_eagain_and_sends_nothing)
{
    chan_t *c = make(sizeof(int), 2);
    send_ok(c, 1);
    send_ok(c, 2);
    int v = 3;
    cr_assert_eq(chan_send_until(c, &v, 0), EAGAIN);
    cr_assert_eq(chan_len(c), 2);
    cr_assert_eq(recv_ok(c), 1);
    cr_assert_eq(recv_ok(c), 2);
    cr_assert_eq(chan_recv_until(c, &v, 0), EAGAIN, "3 was never sent");
    chan_free(c);
}

Test(chan, recv_on_empty_channel_with_deadline_0_returns_eagain_and_leaves_elem)
{
    chan_t *c = make(sizeof(int), 2);
    int v = 42;
    cr_assert_eq(chan_recv_until(c, &v, 0), EAGAIN);
    cr_assert_eq(v, 42);
    chan_free(c);
}

Test(chan, send_with_a_past_deadline_returns_etimedout)
{
    chan_t *c = make(sizeof(int), 0);
    int v = 1;
    cr_assert_eq(chan_send_until(c, &v, 1), ETIMEDOUT);
    cr_assert_eq(chan_send_until(c, &v, async_now() - ASYNC_MILLISECOND), ETIMEDOUT);
    chan_free(c);
}

Test(chan, recv_with_a_past_deadline_returns_etimedout)
{
    chan_t *c = make(sizeof(int), 4);
    int v = 9;
    cr_assert_eq(chan_recv_until(c, &v, 1), ETIMEDOUT);
    cr_assert_eq(v, 9);
    chan_free(c);
}

Test(chan, ready_operations_complete_whatever_the_deadline)
{
    chan_t *c = make(sizeof(int), 1);
    int v = 5, w = 0;
    cr_assert_eq(chan_send_until(c, &v, 1), 0, "a free slot: sent despite a past deadline");
    cr_assert_eq(chan_recv_until(c, &w, 1), 0);
    cr_assert_eq(w, 5);
    chan_free(c);
}

Test(chan, recv_with_a_future_deadline_returns_etimedout_once_it_passed)
{
    chan_t *c = make(sizeof(int), 1);
    int v = 0;
    int64_t deadline = async_now() + 20 * ASYNC_MILLISECOND;
    cr_assert_eq(chan_recv_until(c, &v, deadline), ETIMEDOUT);
    cr_assert_geq(async_now(), deadline, "returned before its deadline");
    chan_free(c);
}

Test(chan, send_with_a_future_deadline_returns_etimedout_and_sends_nothing)
{
    chan_t *c = make(sizeof(int), 1);
    send_ok(c, 1);
    int v = 2;
    int64_t deadline = async_now() + 20 * ASYNC_MILLISECOND;
    cr_assert_eq(chan_send_until(c, &v, deadline), ETIMEDOUT);
    cr_assert_geq(async_now(), deadline);
    cr_assert_eq(chan_len(c), 1);
    cr_assert_eq(ct_queued(c, CHAN_SEND), 0, "the timed-out sender left the queue");
    cr_assert_eq(recv_ok(c), 1);
    cr_assert_eq(chan_recv_until(c, &v, 0), EAGAIN);
    chan_free(c);
}

Test(chan, recv_with_null_elem_discards_the_value)
{
    chan_t *c = make(sizeof(int), 2);
    send_ok(c, 1);
    send_ok(c, 2);
    cr_assert_eq(chan_recv(c, NULL), 0);
    cr_assert_eq(recv_ok(c), 2);
    chan_free(c);
}

Test(chan, blocked_receiver_gets_the_value_straight_from_the_sender)
{
    chan_t *c = make(sizeof(int), 4);
    struct op r;
    op_block(&r, c, CHAN_RECV, 0, 1);
    send_ok(c, 77);
    op_join(&r);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.value, 77);
    cr_assert_eq(chan_len(c), 0, "the value never went through the buffer");
    chan_free(c);
}

Test(chan, blocked_receivers_are_served_in_arrival_order)
{
    chan_t *c = make(sizeof(int), 1);
    struct op r[3];
    for (int i = 0; i < 3; i++)
        op_block(&r[i], c, CHAN_RECV, 0, (size_t)i + 1);
    for (int i = 0; i < 3; i++)
        send_ok(c, 100 + i);
    for (int i = 0; i < 3; i++) {
        op_join(&r[i]);
        cr_assert_eq(r[i].rc, 0);
        cr_assert_eq(r[i].value, 100 + i, "receiver %d", i);
    }
    chan_free(c);
}

Test(chan, recv_from_a_full_channel_admits_the_blocked_sender_behind_the_buffer)
{
    chan_t *c = make(sizeof(int), 2);
    send_ok(c, 1);
    send_ok(c, 2);
    struct op s;
    op_block(&s, c, CHAN_SEND, 3, 1);
    cr_assert_eq(recv_ok(c), 1);
    op_join(&s);
    cr_assert_eq(s.rc, 0, "the sender's value moved into the freed slot");
    cr_assert_eq(chan_len(c), 2);
    cr_assert_eq(recv_ok(c), 2);
    cr_assert_eq(recv_ok(c), 3);
    chan_free(c);
}

Test(chan, blocked_senders_are_served_in_arrival_order)
{
    chan_t *c = make(sizeof(int), 1);
    send_ok(c, 0);
    struct op s[3];
    for (int i = 0; i < 3; i++)
        op_block(&s[i], c, CHAN_SEND, i + 1, (size_t)i + 1);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(recv_ok(c), i, "the buffered value, then the senders in order");
    for (int i = 0; i < 3; i++) {
        op_join(&s[i]);
        cr_assert_eq(s[i].rc, 0);
    }
    chan_free(c);
}

/* ---------------------------------------------------------- unbuffered */

Test(chan, unbuffered_send_returns_only_after_a_receiver_holds_the_value)
{
    chan_t *c = make(sizeof(int), 0);
    struct op s;
    op_block(&s, c, CHAN_SEND, 31, 1);
    cr_assert_not(atomic_load(&s.returned), "returned with no receiver");
    int v = 0;
    cr_assert_eq(chan_recv(c, &v), 0);
    cr_assert_eq(v, 31);
    op_join(&s);
    cr_assert_eq(s.rc, 0);
    chan_free(c);
}

Test(chan, unbuffered_sender_that_returns_finds_its_value_in_the_receivers_hands)
{
    struct ct_tally t = { 0 };
    cr_assert_eq(ct_rendezvous(20000, &t), 0);
    ct_tally_print("rendezvous", &t);
    cr_assert(ct_tally_ok(&t));
    cr_assert_eq(t.sent, 20000);
}

Test(chan, unbuffered_receiver_blocks_until_a_sender_comes)
{
    chan_t *c = make(sizeof(int), 0);
    struct op r;
    op_block(&r, c, CHAN_RECV, 0, 1);
    cr_assert_not(atomic_load(&r.returned));
    int v = 12;
    cr_assert_eq(chan_send(c, &v), 0);
    op_join(&r);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.value, 12);
    chan_free(c);
}

/* ------------------------------------------------------------- signals */

Test(chan, signal_channel_counts_signals_without_elements)
{
    chan_t *c = make(0, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(chan_send_until(c, NULL, 0), 0);
    cr_assert_eq(chan_send_until(c, NULL, 0), EAGAIN);
    cr_assert_eq(chan_len(c), 3);
    int untouched = 5;
    cr_assert_eq(chan_recv_until(c, &untouched, 0), 0);
    cr_assert_eq(untouched, 5, "a signal has no bytes to write");
    cr_assert_eq(chan_recv(c, NULL), 0);
    cr_assert_eq(chan_recv(c, NULL), 0);
    cr_assert_eq(chan_recv_until(c, NULL, 0), EAGAIN);
    chan_free(c);
}

static void *signal_once(void *arg)
{
    chan_send(arg, NULL);
    return NULL;
}

Test(chan, unbuffered_signal_channel_is_a_rendezvous)
{
    chan_t *c = make(0, 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, signal_once, c), 0);
    cr_assert(ct_wait_queued(c, CHAN_SEND, 1));
    cr_assert_eq(chan_recv(c, NULL), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    chan_free(c);
}

/* --------------------------------------------------------------- close */

Test(chan, close_of_a_closed_channel_returns_epipe)
{
    chan_t *c = make(sizeof(int), 1);
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(chan_close(c), EPIPE);
    chan_free(c);
}

Test(chan, send_on_a_closed_channel_returns_epipe_even_with_deadline_0)
{
    chan_t *c = make(sizeof(int), 1);
    cr_assert_eq(chan_close(c), 0);
    int v = 1;
    cr_assert_eq(chan_send(c, &v), EPIPE);
    cr_assert_eq(chan_send_until(c, &v, 0), EPIPE);
    cr_assert_eq(chan_send_until(c, &v, 1), EPIPE);
    cr_assert_eq(chan_len(c), 0);
    chan_free(c);
}

Test(chan, recv_on_closed_chan_drains_the_buffer_then_returns_epipe)
{
    chan_t *c = make(sizeof(int), 3);
    send_ok(c, 1);
    send_ok(c, 2);
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(recv_ok(c), 1);
    int v = 0;
    cr_assert_eq(chan_recv(c, &v), 0);
    cr_assert_eq(v, 2);
    v = 99;
    cr_assert_eq(chan_recv(c, &v), EPIPE);
    cr_assert_eq(v, 99, "elem untouched on EPIPE");
    cr_assert_eq(chan_recv_until(c, &v, 0), EPIPE, "closed wins over would-block");
    cr_assert_eq(chan_recv_until(c, &v, 1), EPIPE);
    chan_free(c);
}

Test(chan, close_wakes_every_blocked_receiver_with_epipe)
{
    chan_t *c = make(sizeof(int), 2);
    struct op r[4];
    for (int i = 0; i < 4; i++)
        op_block(&r[i], c, CHAN_RECV, -1, (size_t)i + 1);
    cr_assert_eq(chan_close(c), 0);
    for (int i = 0; i < 4; i++) {
        op_join(&r[i]);
        cr_assert_eq(r[i].rc, EPIPE, "receiver %d", i);
        cr_assert_eq(r[i].value, -1);
    }
    cr_assert_eq(ct_queued(c, CHAN_RECV), 0);
    chan_free(c);
}

Test(chan, close_fails_every_blocked_sender_and_keeps_what_is_buffered)
{
    chan_t *c = make(sizeof(int), 2);
    send_ok(c, 1);
    send_ok(c, 2);
    struct op s[4];
    for (int i = 0; i < 4; i++)
        op_block(&s[i], c, CHAN_SEND, 10 + i, (size_t)i + 1);
    cr_assert_eq(chan_close(c), 0);
    for (int i = 0; i < 4; i++) {
        op_join(&s[i]);
        cr_assert_eq(s[i].rc, EPIPE, "sender %d", i);
    }
    cr_assert_eq(recv_ok(c), 1);
    cr_assert_eq(recv_ok(c), 2);
    int v;
    cr_assert_eq(chan_recv(c, &v), EPIPE, "no failed sender's value got in");
    chan_free(c);
}

Test(chan, close_of_an_unbuffered_channel_fails_its_blocked_senders)
{
    chan_t *c = make(sizeof(int), 0);
    struct op s[3];
    for (int i = 0; i < 3; i++)
        op_block(&s[i], c, CHAN_SEND, i, (size_t)i + 1);
    cr_assert_eq(chan_close(c), 0);
    for (int i = 0; i < 3; i++) {
        op_join(&s[i]);
        cr_assert_eq(s[i].rc, EPIPE);
    }
    int v;
    cr_assert_eq(chan_recv(c, &v), EPIPE);
    chan_free(c);
}

Test(chan, close_with_more_waiters_than_one_wake_batch_wakes_them_all)
{
    chan_t *c = make(sizeof(int), 0);
    enum { N = 40 };
    struct op *r = calloc(N, sizeof *r);
    cr_assert_not_null(r);
    for (int i = 0; i < N; i++)
        op_block(&r[i], c, CHAN_RECV, 0, (size_t)i + 1);
    cr_assert_eq(chan_close(c), 0);
    for (int i = 0; i < N; i++) {
        op_join(&r[i]);
        cr_assert_eq(r[i].rc, EPIPE);
    }
    free(r);
    chan_free(c);
}

Test(chan, close_races_with_senders_and_receivers_without_losing_a_value)
{
    struct ct_tally t = { 0 };
    cr_assert_eq(ct_close_race(0, 4, 3, 2000, 8, &t), 0);
    cr_assert_eq(ct_close_race(3, 4, 3, 2000, 8, &t), 0);
    ct_tally_print("close race", &t);
    cr_assert(ct_tally_ok(&t));
}

Test(chan, sends_and_receives_that_time_out_never_deliver)
{
    struct ct_tally t = { 0 };
    cr_assert_eq(ct_timeout_race(0, 3, 3, 3000, &t), 0);
    cr_assert_eq(ct_timeout_race(2, 3, 3, 3000, &t), 0);
    ct_tally_print("timeout race", &t);
    cr_assert(ct_tally_ok(&t));
}

/* ------------------------------------------------------------ many-many */

static void *fifo_sender(void *arg)
{
    struct op *o = arg;
    for (int s = 0; s < 5000; s++) {
        int v = o->value * 1000000 + s;
        if ((o->rc = chan_send(o->c, &v)) != 0)
            break;
    }
    return NULL;
}

Test(chan, each_senders_values_arrive_in_order_among_many_senders)
{
    enum { SENDERS = 8, PER = 5000 };
    chan_t *c = make(sizeof(int), 16);
    struct op s[SENDERS];
    for (int i = 0; i < SENDERS; i++) {
        s[i] = (struct op){ .c = c, .value = i };
        cr_assert_eq(pthread_create(&s[i].thread, NULL, fifo_sender, &s[i]), 0);
    }
    int next[SENDERS] = { 0 };
    for (int k = 0; k < SENDERS * PER; k++) {
        int v;
        cr_assert_eq(chan_recv(c, &v), 0);
        int who = v / 1000000, seq = v % 1000000;
        cr_assert(who >= 0 && who < SENDERS);
        cr_assert_eq(seq, next[who], "sender %d: got %d, expected %d", who, seq, next[who]);
        next[who]++;
    }
    for (int i = 0; i < SENDERS; i++) {
        op_join(&s[i]);
        cr_assert_eq(s[i].rc, 0);
    }
    chan_free(c);
}

Test(chan, buffered_mpmc_delivers_each_of_a_million_items_exactly_once)
{
    struct ct_tally t = { 0 };
    cr_assert_eq(ct_mpmc(64, 4, 4, 1000000, CT_THREADS, NULL, &t), 0);
    ct_tally_print("buffered mpmc", &t);
    cr_assert(ct_tally_ok(&t));
    cr_assert_eq(t.sent, 1000000);
}

Test(chan, unbuffered_mpmc_delivers_each_of_a_million_items_exactly_once)
{
    struct ct_tally t = { 0 };
    cr_assert_eq(ct_mpmc(0, 4, 4, 1000000, CT_THREADS, NULL, &t), 0);
    ct_tally_print("unbuffered mpmc", &t);
    cr_assert(ct_tally_ok(&t));
    cr_assert_eq(t.sent, 1000000);
}
