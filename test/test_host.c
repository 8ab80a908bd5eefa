/*
 * test/test_host.c — a plain thread that wakes a parked task and then waits
 * on a channel runs that task itself (lib/runq.c, "Fibers woken from
 * outside"): the task's hand-off stays on one core.
 *
 * Most tests hold the pool's only worker with a task that spins (never
 * blocking in the library), so that nothing but the waiting thread can run
 * the woken task: where it runs is then certain, not a race. What is
 * checked: a ping-pong runs every round on the waiting thread; a task that
 * ends there gives its stack back and its future its value; one that
 * yields there goes back to the pool; one that panics there fails its
 * future after its defers ran; the dump lists it as running; a wait with
 * a deadline, or for a future, never runs the woken task; a thread-mode
 * pool never does.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testutil.h"

#define ROUNDS 500

/* A goroutine-mode pool of one worker (64 KiB stacks), logging to log
 * (NULL: stderr). */
static async_pool_t *logged_pool(struct tu_log *log)
{
    async_pool_config_t cfg = { .threads = 1, .max_threads = 1, .name = "host",
                                .stack_size = 64 * 1024,
                                .log = log ? tu_log_hook : NULL, .log_ctx = log };
    async_pool_t *pool = async_pool_create(&cfg);
    cr_assert_not_null(pool, "async_pool_create: %s", strerror(errno));
    return pool;
}

static async_pool_t *one_worker_pool(void)
{
    return logged_pool(NULL);
}

/* Not pthread_self(): glibc declares it const (pool.h's migration hazard). */
static long thread_id(void)
{
    return syscall(SYS_gettid);
}

static size_t parked_of(async_pool_t *pool)
{
    async_pool_stats_t s;
    cr_assert_eq(async_pool_stats(pool, &s), 0);
    return s.parked;
}

/* Spin until `n` tasks of pool are parked. */
static void until_parked(async_pool_t *pool, size_t n)
{
    int64_t until = tu_deadline();
    while (parked_of(pool) < n)
        cr_assert(tu_spin_once(until), "never %zu tasks parked", n);
}

/* The worker's holder: spins (no library call, so it never parks) until
 * released. */
struct hold {
    tu_gate_t running, release;
};

static void *hold_worker(void *arg)
{
    struct hold *h = arg;
    tu_gate_open(&h->running);
    int64_t until = tu_deadline();
    while (!tu_gate_is_open(&h->release))
        if (!tu_spin_once(until))
            return (void *)(intptr_t)-1;
    return NULL;
}

static future_t *hold(async_pool_t *pool, struct hold *h)
{
    future_t *f = async_run_on(pool, hold_worker, h);
    cr_assert_not_null(f);
    cr_assert(tu_gate_wait(&h->running), "the holder never ran");
    return f;
}

static void release(struct hold *h, future_t *f)
{
    tu_gate_open(&h->release);
    void *r = (void *)1;
    cr_assert_eq(tu_get(f, &r), 0);
    cr_assert_null(r, "the holder ran out of patience");
    future_free(f);
}

/* ------------------------------------------------------- ping-pong */

struct pingpong {
    chan_t *ping, *pong;
    long    tid[ROUNDS];   /* where each round's answer was sent from */
};

static void *answer(void *arg)
{
    struct pingpong *p = arg;
    for (int i = 0; i < ROUNDS; i++) {
        int v;
        if (chan_recv(p->ping, &v) != 0)
            return (void *)(intptr_t)-1;
        p->tid[i] = thread_id();
        v = -v;
        if (chan_send(p->pong, &v) != 0)
            return (void *)(intptr_t)-2;
    }
    return NULL;
}

/* Start the answerer on pool; with h, let it park on its first receive,
 * then hold the worker (*holder). */
static future_t *start_answerer(async_pool_t *pool, struct pingpong *p, struct hold *h,
                                future_t **holder)
{
    p->ping = chan_make(sizeof(int), 0);
    p->pong = chan_make(sizeof(int), 0);
    cr_assert(p->ping && p->pong);
    future_t *f = async_run_on(pool, answer, p);
    cr_assert_not_null(f);
    if (h) {
        until_parked(pool, 1);
        *holder = hold(pool, h);
    }
    return f;
}

enum way { PLAIN, SELECT, DEADLINES };

/* ROUNDS round trips, each waited for the given way. */
static void play(struct pingpong *p, enum way way)
{
    for (int i = 1; i <= ROUNDS; i++) {
        int v = i, got = 0;
        int64_t deadline = async_now() + 60 * ASYNC_SECOND;
        if (way == DEADLINES) {
            cr_assert_eq(chan_send_until(p->ping, &v, deadline), 0);
            cr_assert_eq(chan_recv_until(p->pong, &got, deadline), 0);
        } else if (way == SELECT) {
            cr_assert_eq(chan_send(p->ping, &v), 0);
            chan_case_t c = { .chan = p->pong, .op = CHAN_RECV, .elem = &got };
            size_t which = 9;
            cr_assert_eq(chan_select(&c, 1, ASYNC_FOREVER, &which), 0);
            cr_assert_eq(which, 0);
        } else {
            cr_assert_eq(chan_send(p->ping, &v), 0);
            cr_assert_eq(chan_recv(p->pong, &got), 0);
        }
        cr_assert_eq(got, -i);
    }
}

/* Every round ran on this thread (on_waiter), or none did; then the task
 * has ended, and the pool and channels go. */
static void finish(async_pool_t *pool, struct pingpong *p, future_t *f, bool on_waiter)
{
    cr_assert_eq(tu_get(f, NULL), 0);
    long me = thread_id();
    for (int i = 0; i < ROUNDS; i++)
        cr_assert_eq(p->tid[i] == me, on_waiter, "round %d ran on thread %ld (waiter %ld)",
                     i, p->tid[i], me);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(p->ping);
    chan_free(p->pong);
}

/* The task ends on this thread too: its stack goes back, nothing is
 * parked, and its future has its value. */
static void hosted(enum way way)
{
    async_pool_t *pool = one_worker_pool();
    static struct pingpong p;
    struct hold h = { 0 };
    future_t *holder;
    future_t *f = start_answerer(pool, &p, &h, &holder);
    play(&p, way);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(parked_of(pool), 0);
    release(&h, holder);
    finish(pool, &p, f, true);
}

Test(host, pingpong_runs_the_woken_task_on_the_waiting_thread)
{
    hosted(PLAIN);
}

Test(host, select_with_no_deadline_runs_the_woken_task_too)
{
    hosted(SELECT);
}

/* A wait with a deadline only waits (API.md): the worker runs every round
 * (so it is not held here). Both directions have deadlines: a send that
 * waited with none would run the task woken by the receive before it. */
Test(host, a_wait_with_a_deadline_never_runs_the_woken_task)
{
    async_pool_t *pool = one_worker_pool();
    static struct pingpong p;
    future_t *f = start_answerer(pool, &p, NULL, NULL);
    play(&p, DEADLINES);
    finish(pool, &p, f, false);
}

/* ------------------------------------------- future waits, thread mode */

struct one {
    chan_t *c;
    long    tid;
};

static void *recv_then_note(void *arg)
{
    struct one *o = arg;
    int v;
    if (chan_recv(o->c, &v) != 0)
        return (void *)(intptr_t)-1;
    o->tid = thread_id();
    return (void *)(intptr_t)v;
}

static void future_wait_does_not_host(async_pool_t *pool)
{
    struct one o = { .c = chan_make(sizeof(int), 0) };
    future_t *f = async_run_on(pool, recv_then_note, &o);
    cr_assert_not_null(f);
    int v = 41;
    cr_assert_eq(chan_send(o.c, &v), 0);
    void *r = NULL;
    cr_assert_eq(tu_get(f, &r), 0);
    cr_assert_eq((intptr_t)r, 41);
    cr_assert_neq(o.tid, thread_id(), "future_get ran the woken task itself");
    future_free(f);
    chan_free(o.c);
}

Test(host, a_wait_for_a_future_never_runs_the_woken_task)
{
    async_pool_t *pool = one_worker_pool();
    for (int i = 0; i < 50; i++)
        future_wait_does_not_host(pool);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

Test(host, a_thread_mode_pool_never_runs_a_task_on_the_waiting_thread)
{
    async_pool_config_t cfg = { .threads = 1, .name = "host",
                                .stack_size = ASYNC_STACK_THREAD };
    async_pool_t *pool = async_pool_create(&cfg);
    cr_assert_not_null(pool);
    static struct pingpong p;
    future_t *f = start_answerer(pool, &p, NULL, NULL);
    play(&p, PLAIN);
    finish(pool, &p, f, false);
}

/* ------------------------------------------------- yield and panic */

struct yielder {
    chan_t   *in, *out;
    tu_gate_t held, yielding;
    long      before, after;
};

/* Receives, yields (on the waiting thread: back to the pool's queue), then
 * answers from wherever it resumed. */
static void *recv_yield_send(void *arg)
{
    struct yielder *y = arg;
    int v;
    if (chan_recv(y->in, &v) != 0)
        return (void *)(intptr_t)-1;
    y->before = thread_id();
    tu_gate_open(&y->yielding);
    async_yield();
    y->after = thread_id();
    return chan_send(y->out, &v) == 0 ? NULL : (void *)(intptr_t)-2;
}

static void *hold_until_yield(void *arg)
{
    struct yielder *y = arg;
    tu_gate_open(&y->held);
    return tu_gate_wait(&y->yielding) ? NULL : (void *)(intptr_t)-1;
}

Test(host, a_task_that_yields_on_the_waiting_thread_goes_back_to_the_pool)
{
    async_pool_t *pool = one_worker_pool();
    static struct yielder y;
    y.in = chan_make(sizeof(int), 0);
    y.out = chan_make(sizeof(int), 0);
    future_t *f = async_run_on(pool, recv_yield_send, &y);
    cr_assert_not_null(f);
    until_parked(pool, 1);
    /* The worker is held until the task yields: only this thread can run
     * it before that, and only the worker after. */
    future_t *holder = async_run_on(pool, hold_until_yield, &y);
    cr_assert_not_null(holder);
    cr_assert(tu_gate_wait(&y.held), "the holder never ran");
    int v = 5, got = 0;
    cr_assert_eq(chan_send(y.in, &v), 0);
    cr_assert_eq(chan_recv(y.out, &got), 0);
    cr_assert_eq(got, 5);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(tu_get(holder, NULL), 0);
    cr_assert_eq(y.before, thread_id(), "the woken task did not run on the waiting thread");
    cr_assert_neq(y.after, thread_id(), "the yield did not give the task back to the pool");
    future_free(f);
    future_free(holder);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(y.in);
    chan_free(y.out);
}

static void close_chan(void *arg)
{
    chan_close(arg);
}

static void *recv_then_panic(void *arg)
{
    struct one *o = arg;
    cr_assert_eq(async_defer(close_chan, o->c), 0);
    int v;
    if (chan_recv(o->c, &v) != 0)
        return (void *)(intptr_t)-1;
    o->tid = thread_id();
    async_panic(EDOM, "panic on the waiting thread, value %d", v);
}

Test(host, a_task_that_panics_on_the_waiting_thread_fails_its_future)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = logged_pool(&log);
    static struct one o;
    o.c = chan_make(sizeof(int), 0);
    future_t *f = async_run_on(pool, recv_then_panic, &o);
    cr_assert_not_null(f);
    until_parked(pool, 1);
    struct hold h = { 0 };
    future_t *holder = hold(pool, &h);
    int v = 9;
    cr_assert_eq(chan_send(o.c, &v), 0);
    /* Waits on the channel, so it runs the task, which panics; its defer
     * closes the channel. */
    cr_assert_eq(chan_recv(o.c, &v), EPIPE);
    cr_assert_eq(o.tid, thread_id(), "the woken task did not run on the waiting thread");
    cr_assert_eq(tu_get(f, NULL), EDOM);
    cr_assert_str_eq(future_error(f), "panic on the waiting thread, value 9");
    cr_assert_eq(parked_of(pool), 0);
    release(&h, holder);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    cr_assert_eq(tu_log_matching(&log, "panic on the waiting thread"), 1);
    chan_free(o.c);
    tu_log_fini(&log);
}

/* The waker let a worker take its fiber, and the pool is gone, before it
 * waits on a channel: the take-back finds nothing (and touches no freed
 * memory: the AddressSanitizer build checks). */
static void *send_one(void *arg)
{
    int v = 3;
    return chan_send(arg, &v) == 0 ? NULL : (void *)(intptr_t)-1;
}

Test(host, a_stale_take_back_after_the_pool_is_gone_finds_nothing)
{
    async_pool_t *pool = one_worker_pool();
    struct one o = { .c = chan_make(sizeof(int), 0) };
    future_t *f = async_run_on(pool, recv_then_note, &o);
    cr_assert_not_null(f);
    until_parked(pool, 1);
    int v = 8;
    cr_assert_eq(chan_send(o.c, &v), 0);   /* into the slot */
    cr_assert_eq(tu_get(f, NULL), 0);      /* a worker took it */
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    /* Another pool (which may reuse the slot) feeds this thread's wait. */
    async_pool_t *other = one_worker_pool();
    future_t *g = async_run_on(other, send_one, o.c);
    cr_assert_not_null(g);
    cr_assert_eq(chan_recv(o.c, &v), 0);
    cr_assert_eq(v, 3);
    cr_assert_eq(tu_get(g, NULL), 0);
    future_free(g);
    cr_assert_eq(async_pool_destroy(other, ASYNC_DRAIN), 0);
    chan_free(o.c);
}

/* The dump, taken by a task while it runs on the waiting thread, lists
 * that task as running. */
struct dumper {
    chan_t   *in, *done;
    char     *text;
    size_t    len;
    long      tid;
};

static void *recv_dump_send(void *arg)
{
    struct dumper *d = arg;
    int v;
    if (chan_recv(d->in, &v) != 0)
        return (void *)(intptr_t)-1;
    d->tid = thread_id();
    FILE *m = open_memstream(&d->text, &d->len);
    if (!m || async_dump(m) != 0)
        return (void *)(intptr_t)-2;
    fclose(m);
    return chan_send(d->done, &v) == 0 ? NULL : (void *)(intptr_t)-3;
}

Test(host, the_dump_lists_a_task_running_on_the_waiting_thread_as_running)
{
    async_pool_t *pool = one_worker_pool();
    static struct dumper d;
    d.in = chan_make(sizeof(int), 0);
    d.done = chan_make(sizeof(int), 0);
    future_t *f = async_run_on(pool, recv_dump_send, &d);
    cr_assert_not_null(f);
    until_parked(pool, 1);
    struct hold h = { 0 };
    future_t *holder = hold(pool, &h);
    int v = 1;
    cr_assert_eq(chan_send(d.in, &v), 0);
    cr_assert_eq(chan_recv(d.done, &v), 0);
    cr_assert_eq(d.tid, thread_id(), "the woken task did not run on the waiting thread");
    cr_assert_eq(tu_get(f, NULL), 0);
    char want[64];
    snprintf(want, sizeof want, "task %p fn ", (void *)f);
    const char *line = d.text ? strstr(d.text, want) : NULL;
    cr_assert_not_null(line, "no \"%s\" in:\n%s", want, d.text ? d.text : "(none)");
    const char *end = strchr(line, '\n');
    const char *state = strstr(line, " state running");
    cr_assert(state && (!end || state < end), "not running: %.*s",
              (int)(end ? end - line : (long)strlen(line)), line);
    free(d.text);
    release(&h, holder);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(d.in);
    chan_free(d.done);
}
