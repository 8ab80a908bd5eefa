/*
 * test/test_goroutine.c — goroutine mode (API.md: Goroutine mode): tasks
 * that block park on stacks of their own, so a pool of one worker runs
 * thousands of blocked tasks; the stack_size config and $ASYNC_STACK_SIZE;
 * async_yield; a task's own state (defers, cancellation, panic) follows it
 * to whatever worker resumes it; cancellation, pool cancellation and timers
 * of parked tasks; nested waits far deeper than one stack; deep recursion.
 *
 * Every pool here names its mode explicitly (stack_size), so these tests
 * mean the same whatever $ASYNC_STACK_SIZE the suite runs under; the tests
 * of the default and of $ASYNC_STACK_SIZE set the variable themselves
 * (Criterion runs each test in a process of its own).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testutil.h"

#define KIB ((size_t)1024)
#define MANY 1000u

/* A goroutine-mode pool of `threads` workers with stacks of `stack` bytes
 * (0: 256 KiB, stated here rather than left to the environment). */
static async_pool_t *gpool(unsigned threads, size_t stack)
{
    async_pool_config_t cfg = {
        .threads = threads,
        .name = "gtest",
        .stack_size = stack ? stack : 256 * KIB,
    };
    async_pool_t *pool = async_pool_create(&cfg);
    cr_assert_not_null(pool, "async_pool_create(%u threads, %zu-byte stacks): %s",
                       threads, cfg.stack_size, strerror(errno));
    return pool;
}

/* The calling thread's id. Not pthread_self(): glibc declares it const, so
 * a compiler may reuse its value across a call that migrated (pool.h's
 * migration hazard). A system call is never merged. */
static long thread_id(void)
{
    return syscall(SYS_gettid);
}

static async_pool_stats_t stats_of(async_pool_t *pool)
{
    async_pool_stats_t s;
    cr_assert_eq(async_pool_stats(pool, &s), 0);
    return s;
}

/* Spin until the pool has `n` tasks parked; false when patience ran out. */
static bool wait_parked(async_pool_t *pool, size_t n)
{
    int64_t until = tu_deadline();
    for (;;) {
        async_pool_stats_t s = stats_of(pool);
        if (s.parked >= n)
            return true;
        if (!tu_spin_once(until))
            return false;
    }
}

/* Spin until `n` tasks are blocked, parked or not. */
static bool wait_blocked(async_pool_t *pool, unsigned n)
{
    int64_t until = tu_deadline();
    for (;;) {
        async_pool_stats_t s = stats_of(pool);
        if (tu_blocked(&s) >= n)
            return true;
        if (!tu_spin_once(until))
            return false;
    }
}

static intptr_t get_int(future_t *f)
{
    void *r = NULL;
    int rc = tu_get(f, &r);
    cr_assert_eq(rc, 0, "future_get: %s (%s)", strerror(rc),
                 future_error(f) ? future_error(f) : "-");
    return (intptr_t)r;
}

/* Receives one int from the channel at arg; returns it, or -errno. */
static void *recv_one(void *arg)
{
    int v = 0;
    int rc = chan_recv(arg, &v);
    return (void *)(intptr_t)(rc == 0 ? v : -rc);
}

/* ------------------------------------------------------ stacks given back */

#define BURST 3000u
#define TOUCH (64 * KIB)

/* Dirties TOUCH bytes of its stack (a volatile store in every 512 bytes:
 * no compiler may drop them), then waits for one int; returns it. */
static void *touch_and_recv(void *arg)
{
    volatile char buf[TOUCH];
    for (size_t i = 0; i < TOUCH; i += 512)
        buf[i] = 1;
    int v = 0;
    int rc = chan_recv(arg, &v);
    return (void *)(intptr_t)(rc == 0 ? v + buf[TOUCH - 512] - 1 : -rc);
}

/* The process's resident bytes (/proc/self/statm). */
static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert_not_null(f);
    unsigned long size = 0, resident = 0;
    cr_assert_eq(fscanf(f, "%lu %lu", &size, &resident), 2);
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* One burst on pool: BURST tasks each dirty TOUCH bytes of stack and park,
 * then are fed and finish; once the worker is idle, the resident memory
 * must fall back to within a third of what the burst added. */
static void burst_and_trim(async_pool_t *pool, chan_t *c, int round)
{
    static future_t *fs[BURST];
    size_t before = rss_bytes();
    for (unsigned i = 0; i < BURST; i++)
        cr_assert_not_null(fs[i] = async_submit(pool, touch_and_recv, c, 0));
    cr_assert(wait_parked(pool, BURST), "round %d: the burst did not park", round);
    size_t peak = rss_bytes();
    cr_assert_geq(peak - before, (size_t)BURST * TOUCH / 2,
                  "round %d: %u parked tasks hold only %zu KiB", round, BURST,
                  (peak - before) / KIB);
    int one = 1;
    for (unsigned i = 0; i < BURST; i++)
        cr_assert_eq(chan_send(c, &one), 0);
    for (unsigned i = 0; i < BURST; i++) {
        cr_assert_eq(get_int(fs[i]), 1);
        future_free(fs[i]);
    }
    /* The worker trims as it goes idle: wait for the pages to go. */
    size_t bound = before + (peak - before) / 3, now;
    int64_t until = tu_deadline();
    while ((now = rss_bytes()) > bound && tu_spin_once(until))
        ;
    cr_assert_leq(now, bound, "round %d: resident %zu KiB after the burst, %zu KiB at its "
                  "peak, %zu KiB before it", round, now / KIB, peak / KIB, before / KIB);
}

/* API.md: stacks are recycled, and what a burst used is given back. 3,000
 * tasks each dirty 64 KiB of stack and park; once they have finished and
 * the worker is idle, all but a few hundred of those stacks' pages go back
 * to the kernel. A second burst runs on the stacks the first gave back. */
Test(goroutine, a_burst_of_parked_stacks_is_given_back_once_idle, .timeout = 240)
{
    async_pool_t *pool = gpool(1, 256 * KIB);
    chan_t *c = chan_make(sizeof(int), 0);
    cr_assert_not_null(c);
    burst_and_trim(pool, c, 1);
    burst_and_trim(pool, c, 2);
    async_pool_destroy(pool, ASYNC_DRAIN);
    chan_free(c);
}

/* ------------------------------------------------ many blocked, one thread */

Test(goroutine, thousand_tasks_blocked_on_one_worker)
{
    async_pool_t *pool = gpool(1, 0);
    chan_t *c = chan_make(sizeof(int), 0);
    cr_assert_not_null(c);
    future_t *fs[MANY];
    for (unsigned i = 0; i < MANY; i++) {
        fs[i] = async_run_on(pool, recv_one, c);
        cr_assert_not_null(fs[i]);
    }
    /* Impossible in thread mode without a thousand threads. */
    cr_assert(wait_parked(pool, MANY), "parked never reached %u: %zu", MANY,
              stats_of(pool).parked);
    async_pool_stats_t s = stats_of(pool);
    cr_assert_eq(s.parked, MANY);
    cr_assert_geq(s.stacks, MANY, "stacks %zu < parked %u", s.stacks, MANY);
    cr_assert_eq(s.peak_threads, 1, "peak_threads %u", s.peak_threads);
    cr_assert_eq(s.blocked, 0, "a parked task holds no worker: blocked %u", s.blocked);

    for (int i = 1; i <= (int)MANY; i++)
        cr_assert_eq(chan_send(c, &i), 0);
    long sum = 0;
    bool seen[MANY + 1] = { false };
    for (unsigned i = 0; i < MANY; i++) {
        intptr_t v = get_int(fs[i]);
        cr_assert(v >= 1 && v <= (intptr_t)MANY, "task %u got %ld", i, (long)v);
        cr_assert_not(seen[v], "value %ld received twice", (long)v);
        seen[v] = true;
        sum += v;
        future_free(fs[i]);
    }
    cr_assert_eq(sum, (long)MANY * (MANY + 1) / 2);
    cr_assert(tu_pool_quiet(pool, &s));
    cr_assert_eq(s.parked, 0, "parked %zu after every task ended", s.parked);
    cr_assert_eq(s.peak_threads, 1, "peak_threads %u", s.peak_threads);
    cr_assert_eq(s.succeeded, MANY);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(c);
}

Test(goroutine, parked_and_stacks_count_one_blocked_task)
{
    async_pool_t *pool = gpool(2, 0);
    chan_t *c = chan_make(sizeof(int), 0);
    async_pool_stats_t s;
    cr_assert(tu_pool_quiet(pool, &s));
    cr_assert_eq(s.parked, 0);
    size_t idle_stacks = s.stacks;

    future_t *f = async_run_on(pool, recv_one, c);
    cr_assert(wait_parked(pool, 1));
    s = stats_of(pool);
    cr_assert_eq(s.parked, 1);
    cr_assert_eq(s.blocked, 0);
    cr_assert_geq(s.stacks, 1);
    cr_assert_geq(s.stacks, s.parked);
    int v = 42;
    cr_assert_eq(chan_send(c, &v), 0);
    cr_assert_eq(get_int(f), 42);
    cr_assert(tu_pool_quiet(pool, &s));
    cr_assert_eq(s.parked, 0);
    /* Stacks are cached, not leaked per task: a second round needs no more
     * than the first did. */
    size_t after_one = s.stacks;
    for (int round = 0; round < 300; round++) {
        future_t *g = async_run_on(pool, recv_one, c);
        cr_assert(wait_parked(pool, 1));
        cr_assert_eq(chan_send(c, &round), 0);
        cr_assert_eq(get_int(g), round);
        future_free(g);
    }
    cr_assert(tu_pool_quiet(pool, &s));
    /* Workers cache a few free stacks each (16 today): 300 rounds may
     * fill the caches, never hold a stack per round. */
    cr_assert_leq(s.stacks, after_one + 64, "stacks grew from %zu (%zu idle) to %zu over "
                  "300 rounds of one parked task", after_one, idle_stacks, s.stacks);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(c);
}

Test(goroutine, thread_mode_pool_never_parks)
{
    async_pool_t *pool = tu_pool_thread(2, 0, NULL);
    cr_assert_not_null(pool);
    chan_t *c = chan_make(sizeof(int), 0);
    future_t *f = async_run_on(pool, recv_one, c);
    cr_assert(wait_blocked(pool, 1));
    async_pool_stats_t s = stats_of(pool);
    cr_assert_eq(s.blocked, 1, "a blocked task holds its worker: blocked %u", s.blocked);
    cr_assert_eq(s.parked, 0, "thread mode parked %zu", s.parked);
    cr_assert_eq(s.stacks, 0, "thread mode holds %zu stacks", s.stacks);
    int v = 7;
    cr_assert_eq(chan_send(c, &v), 0);
    cr_assert_eq(get_int(f), 7);
    cr_assert(tu_pool_quiet(pool, &s));
    cr_assert_eq(s.stacks, 0);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(c);
}

/* ----------------------------------------------------------- stack_size */

static async_pool_t *pool_with_stack(size_t stack)
{
    async_pool_config_t cfg = { .threads = 1, .stack_size = stack };
    return async_pool_create(&cfg);
}

Test(goroutine, stack_size_out_of_range_is_einval)
{
    const size_t bad[] = { 1, 16 * KIB - 1, 4096, ((size_t)1 << 30) + 1, SIZE_MAX - 1 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        async_pool_t *pool = pool_with_stack(bad[i]);
        int e = errno;
        if (pool)
            async_pool_destroy(pool, ASYNC_DRAIN);
        cr_assert_null(pool, "stack_size %zu was accepted", bad[i]);
        cr_assert_eq(e, EINVAL, "stack_size %zu: errno %d (%s)", bad[i], e, strerror(e));
    }
}

/* Parks once (a chan_recv from a task that sends later), then returns 1. */
struct park_once {
    chan_t *c;
};

static void *send_later(void *arg)
{
    int v = 5;
    return (void *)(intptr_t)chan_send(arg, &v);
}

static void *park_then_return(void *unused)
{
    (void)unused;
    chan_t *c = chan_make(sizeof(int), 0);
    if (!c)
        return (void *)(intptr_t)-1;
    future_t *s = async_run(send_later, c);   /* async_run: the default pool */
    int v = 0;
    int rc = chan_recv(c, &v);
    void *r = NULL;
    future_get(s, &r);
    future_free(s);
    chan_free(c);
    return (void *)(intptr_t)(rc == 0 && v == 5 && r == NULL ? 1 : -2);
}

Test(goroutine, stack_size_in_range_is_accepted_and_works)
{
    const size_t good[] = { 16 * KIB, 16 * KIB + 1, 64 * KIB, 1024 * KIB };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        async_pool_t *pool = pool_with_stack(good[i]);
        cr_assert_not_null(pool, "stack_size %zu: %s", good[i], strerror(errno));
        chan_t *c = chan_make(sizeof(int), 0);
        future_t *f = async_run_on(pool, recv_one, c);
        cr_assert(wait_parked(pool, 1), "stack_size %zu: the task did not park", good[i]);
        int v = (int)i + 100;
        cr_assert_eq(chan_send(c, &v), 0);
        cr_assert_eq(get_int(f), v);
        future_free(f);
        cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
        chan_free(c);
    }
}

/* A pool left to its default (stack_size 0) under $ASYNC_STACK_SIZE = env
 * (NULL: unset); true when it parks a blocked task (goroutine mode), false
 * when the task holds its worker (thread mode). */
static bool default_pool_parks(const char *env)
{
    if (env)
        cr_assert_eq(setenv("ASYNC_STACK_SIZE", env, 1), 0);
    else
        cr_assert_eq(unsetenv("ASYNC_STACK_SIZE"), 0);
    async_pool_t *pool = tu_pool(1, 0, NULL);
    cr_assert_not_null(pool, "ASYNC_STACK_SIZE=%s: %s", env ? env : "(unset)",
                       strerror(errno));
    chan_t *c = chan_make(sizeof(int), 0);
    future_t *f = async_run_on(pool, recv_one, c);
    cr_assert(wait_blocked(pool, 1));
    async_pool_stats_t s = stats_of(pool);
    bool parks = s.parked == 1;
    if (parks) {
        cr_assert_eq(s.blocked, 0);
        cr_assert_geq(s.stacks, 1);
    } else {
        cr_assert_eq(s.blocked, 1, "ASYNC_STACK_SIZE=%s: neither parked nor blocked",
                     env ? env : "(unset)");
        cr_assert_eq(s.parked, 0);
        cr_assert_eq(s.stacks, 0);
    }
    int v = 3;
    cr_assert_eq(chan_send(c, &v), 0);
    cr_assert_eq(get_int(f), 3);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(c);
    return parks;
}

Test(goroutine, default_is_goroutine_mode)
{
    cr_assert(default_pool_parks(NULL));
    cr_assert(default_pool_parks(""));
}

Test(goroutine, env_stack_size_thread_gives_thread_mode)
{
    cr_assert_not(default_pool_parks("thread"));
}

Test(goroutine, env_stack_size_bytes_gives_goroutine_mode)
{
    cr_assert(default_pool_parks("65536"));
}

Test(goroutine, env_stack_size_bad_value_falls_back_to_default)
{
    /* One warning line on stderr, then the default: goroutine mode. */
    cr_assert(default_pool_parks("1"));
    cr_assert(default_pool_parks("lots"));
}

Test(goroutine, explicit_stack_size_beats_env)
{
    cr_assert_eq(setenv("ASYNC_STACK_SIZE", "thread", 1), 0);
    async_pool_t *pool = gpool(1, 0);
    chan_t *c = chan_make(sizeof(int), 0);
    future_t *f = async_run_on(pool, recv_one, c);
    cr_assert(wait_parked(pool, 1), "an explicit stack_size did not give goroutine mode");
    int v = 4;
    cr_assert_eq(chan_send(c, &v), 0);
    cr_assert_eq(get_int(f), 4);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(c);
}

/* ------------------------------------------------------------ async_yield */

#define YIELDS 20
struct yield_log {
    chan_t    *start;      /* closed when both tasks are parked on it */
    atomic_int pos;
    int        seq[2 * YIELDS];
};

struct yielder {
    struct yield_log *log;
    int               id;
};

static void *yield_alternately(void *arg)
{
    struct yielder *y = arg;
    struct yield_log *log = y->log;
    if (chan_recv(log->start, NULL) != EPIPE)
        return (void *)(intptr_t)-1;
    for (int i = 0; i < YIELDS; i++) {
        int p = atomic_fetch_add(&log->pos, 1);
        log->seq[p] = y->id;
        async_yield();
    }
    return NULL;
}

Test(goroutine, yield_interleaves_two_tasks_on_one_worker)
{
    async_pool_t *pool = gpool(1, 0);
    struct yield_log log = { .start = chan_make(0, 0) };
    struct yielder y0 = { &log, 0 }, y1 = { &log, 1 };
    future_t *a = async_run_on(pool, yield_alternately, &y0);
    future_t *b = async_run_on(pool, yield_alternately, &y1);
    /* Both started and parked: from here on only yields hand the worker
     * from one to the other. */
    cr_assert(wait_parked(pool, 2));
    cr_assert_eq(chan_close(log.start), 0);
    cr_assert_eq(get_int(a), 0);
    cr_assert_eq(get_int(b), 0);
    cr_assert_eq(atomic_load(&log.pos), 2 * YIELDS);
    char trace[2 * YIELDS + 1];
    for (int i = 0; i < 2 * YIELDS; i++)
        trace[i] = (char)('A' + log.seq[i]);
    trace[2 * YIELDS] = '\0';
    for (int i = 1; i < 2 * YIELDS; i++)
        cr_assert_neq(log.seq[i], log.seq[i - 1], "no strict alternation: %s", trace);
    future_free(a);
    future_free(b);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(log.start);
}

/* Yields until the task at arg has started, for 2 s at most; 1 when it did. */
static void *yield_until_started(void *arg)
{
    atomic_int *started = arg;
    int64_t until = async_now() + 2 * ASYNC_SECOND;
    while (!atomic_load(started)) {
        if (async_now() > until)
            return (void *)0;
        async_yield();
    }
    return (void *)1;
}

static void *mark_started(void *arg)
{
    atomic_store((atomic_int *)arg, 1);
    return NULL;
}

/* Go's Gosched lets every runnable goroutine run, new ones included: a task
 * that yields in a loop on a one-worker pool must let a task submitted
 * after it start (the loop above would otherwise spin forever). */
Test(goroutine, yield_lets_a_queued_task_start)
{
    async_pool_t *pool = gpool(1, 0);
    atomic_int started = 0;
    future_t *a = async_run_on(pool, yield_until_started, &started);
    future_t *b = async_run_on(pool, mark_started, &started);
    cr_assert_eq(get_int(a), 1, "a task yielding in a loop starved a queued task for 2 s");
    cr_assert_eq(get_int(b), 0);
    future_free(a);
    future_free(b);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

static void *yield_in_thread_mode(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++)
        async_yield();
    return (void *)(intptr_t)11;
}

Test(goroutine, yield_outside_a_task_and_in_thread_mode_returns)
{
    int64_t t0 = tu_clock();
    for (int i = 0; i < 1000; i++)
        async_yield();
    cr_assert_lt(tu_clock() - t0, 5 * ASYNC_SECOND);
    async_pool_t *pool = tu_pool_thread(1, 0, NULL);
    cr_assert_not_null(pool);
    future_t *f = async_run_on(pool, yield_in_thread_mode, NULL);
    cr_assert_eq(get_int(f), 11);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

/* ------------------------------------ a task's state follows it to a thread */

struct migrant {
    chan_t       *c;
    async_pool_t *pool;
    chan_t       *c2;         /* the bystander's channel */
    future_t     *bystander;  /* written by the task before it parks */
    long          before, after;
    atomic_int    parked_once;
    int           order[4];
    atomic_int    norder;
    bool          cancelled_after;
    int           defer_rc[2];
};

struct mstep {
    struct migrant *m;
    int             id;
};

static void mrecord(void *arg)
{
    struct mstep *s = arg;
    int p = atomic_fetch_add(&s->m->norder, 1);
    if (p < 4)
        s->m->order[p] = s->id;
}

static struct mstep steps[2];

static void *panic_after_park(void *arg)
{
    struct migrant *m = arg;
    m->before = thread_id();
    steps[0] = (struct mstep){ m, 1 };
    steps[1] = (struct mstep){ m, 2 };
    m->defer_rc[0] = async_defer(mrecord, &steps[0]);
    m->bystander = async_run_on(m->pool, recv_one, m->c2);
    int v = 0;
    atomic_store(&m->parked_once, 1);
    if (chan_recv(m->c, &v) != 0)
        return (void *)(intptr_t)-1;
    m->after = thread_id();
    m->cancelled_after = async_cancelled();
    m->defer_rc[1] = async_defer(mrecord, &steps[1]);
    async_panic(EDOM, "panic after park, value %d", v);
}

/* Holds its worker (without parking) until the round lets it go; answers
 * whether it ran on the thread at hold->on. A holder that lands on another
 * worker holds that one too (until `wrong_release`), so that the next holder
 * can only run where the first did not: a free worker is never left to
 * take every holder while the one we want sleeps. */
struct hold {
    long       on;
    tu_gate_t  holding, release;
    tu_gate_t  wrong_holding, wrong_release;
};

static void *hold_if_on(void *arg)
{
    struct hold *h = arg;
    if (thread_id() != h->on) {
        tu_gate_open(&h->wrong_holding);
        tu_gate_wait(&h->wrong_release);
        return (void *)0;
    }
    tu_gate_open(&h->holding);
    tu_gate_wait(&h->release);
    return (void *)1;
}

/* On a 2-worker pool: hold the worker at h->on. */
static future_t *hold_thread(async_pool_t *pool, struct hold *h)
{
    future_t *first = async_run_on(pool, hold_if_on, h);
    cr_assert_not_null(first);
    int64_t until = tu_deadline();
    while (!tu_gate_is_open(&h->holding) && !tu_gate_is_open(&h->wrong_holding))
        cr_assert(tu_spin_once(until), "the first holder never ran");
    if (tu_gate_is_open(&h->holding))
        return first;
    /* It holds the other worker: the next one can only run on ours. */
    future_t *second = async_run_on(pool, hold_if_on, h);
    cr_assert_not_null(second);
    while (!tu_gate_is_open(&h->holding))
        cr_assert(tu_spin_once(until), "no holder ever ran on the parked task's worker");
    tu_gate_open(&h->wrong_release);
    cr_assert_eq(tu_get(first, NULL), 0);
    future_free(first);
    return second;
}

Test(goroutine, panic_after_migration_runs_defers_and_fails_the_future)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_config_t cfg = {
        .threads = 2, .name = "gtest", .stack_size = 256 * KIB,
        .log = tu_log_hook, .log_ctx = &log,
    };
    async_pool_t *pool = async_pool_create(&cfg);
    cr_assert_not_null(pool);
    struct migrant m = { .c = chan_make(sizeof(int), 0), .c2 = chan_make(sizeof(int), 0),
                         .pool = pool };
    future_t *f = async_run_on(pool, panic_after_park, &m);
    cr_assert(wait_parked(pool, 2));   /* the task and its bystander */
    /* Hold the task's worker busy, so that only the other one can resume it. */
    struct hold h = { .on = m.before };
    future_t *holder = hold_thread(pool, &h);
    int v = 77;
    cr_assert_eq(chan_send(m.c, &v), 0);
    int rc = tu_get(f, NULL);
    tu_gate_open(&h.release);
    cr_assert_eq(get_int(holder), 1);

    cr_assert_eq(rc, EDOM, "future_get: %d (%s)", rc, strerror(rc));
    cr_assert_eq(future_state(f), FUTURE_FAILED);
    cr_assert_str_eq(future_error(f), "panic after park, value 77");
    cr_assert_neq(m.before, m.after, "the task did not migrate");
    cr_assert_not(m.cancelled_after);
    cr_assert_eq(m.defer_rc[0], 0);
    cr_assert_eq(m.defer_rc[1], 0, "async_defer after a migration: %d", m.defer_rc[1]);
    cr_assert_eq(atomic_load(&m.norder), 2);
    cr_assert_eq(m.order[0], 2, "deferred functions not LIFO");
    cr_assert_eq(m.order[1], 1, "the defer registered before the park did not run");
    cr_assert_eq(tu_log_matching(&log, "panic after park, value 77"), 1);

    /* The bystander, parked too, is unaffected. */
    cr_assert_not(future_done(m.bystander));
    v = 78;
    cr_assert_eq(chan_send(m.c2, &v), 0);
    cr_assert_eq(get_int(m.bystander), 78);
    future_free(m.bystander);
    future_free(holder);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(m.c);
    chan_free(m.c2);
    tu_log_fini(&log);
}

/* Parks; is cancelled while parked; after the wake (on the other worker,
 * whose own is held) async_cancelled() is still true and later blocking
 * calls fail at once. */
struct cancel_migrant {
    chan_t   *c;
    long      before, after;
    int       rc_recv, rc_sleep;
    bool      cancelled;
};

static void *park_then_see_cancel(void *arg)
{
    struct cancel_migrant *m = arg;
    m->before = thread_id();
    m->rc_recv = chan_recv(m->c, NULL);
    m->after = thread_id();
    m->cancelled = async_cancelled();
    m->rc_sleep = async_sleep_until(async_now() + 60 * ASYNC_SECOND);
    return NULL;
}

Test(goroutine, cancellation_follows_a_task_that_migrates)
{
    async_pool_t *pool = gpool(2, 0);
    struct cancel_migrant m = { .c = chan_make(0, 0) };
    future_t *f = async_run_on(pool, park_then_see_cancel, &m);
    cr_assert(wait_parked(pool, 1));
    struct hold h = { .on = m.before };
    future_t *holder = hold_thread(pool, &h);
    cr_assert_eq(future_cancel(f), EBUSY);
    int rc = tu_get(f, NULL);
    tu_gate_open(&h.release);
    cr_assert_eq(get_int(holder), 1);
    cr_assert_eq(rc, 0);
    cr_assert_eq(m.rc_recv, ECANCELED);
    cr_assert_neq(m.before, m.after, "the task did not migrate");
    cr_assert(m.cancelled);
    cr_assert_eq(m.rc_sleep, ECANCELED);
    future_free(holder);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(m.c);
}

/* ------------------------------------------------- cancelling parked tasks */

enum block_kind { K_RECV, K_SEND, K_SELECT, K_GET, K_WAIT_ANY, K_WAIT_ALL, K_SLEEP, NKINDS };
static const char *const kind_name[NKINDS] = {
    "chan_recv", "chan_send", "chan_select", "future_get", "future_wait_any",
    "future_wait_all", "async_sleep_until",
};

struct blocker {
    enum block_kind kind;
    chan_t         *c;     /* unbuffered, nobody ever sends on it */
    chan_t         *out;   /* unbuffered, nobody ever receives from it */
    future_t       *never; /* a promise's future nobody completes */
};

/* Blocks forever in one kind of call; returns its error code. */
static void *block_forever(void *arg)
{
    struct blocker *b = arg;
    int v = 1;
    switch (b->kind) {
    case K_RECV:
        return (void *)(intptr_t)chan_recv(b->c, &v);
    case K_SEND:
        return (void *)(intptr_t)chan_send(b->out, &v);
    case K_SELECT: {
        chan_case_t cases[3] = {
            { .chan = b->c, .op = CHAN_RECV, .elem = &v },
            { .chan = b->out, .op = CHAN_SEND, .elem = &v },
            { .chan = NULL, .op = CHAN_SEND, .elem = &v },
        };
        return (void *)(intptr_t)chan_select(cases, 3, ASYNC_FOREVER, NULL);
    }
    case K_GET:
        return (void *)(intptr_t)future_get(b->never, NULL);
    case K_WAIT_ANY:
        return (void *)(intptr_t)future_wait_any(&b->never, 1, ASYNC_FOREVER, NULL);
    case K_WAIT_ALL:
        return (void *)(intptr_t)future_wait_all(&b->never, 1, ASYNC_FOREVER);
    case K_SLEEP:
    default:
        return (void *)(intptr_t)async_sleep_until(ASYNC_FOREVER);
    }
}

Test(goroutine, cancel_of_a_parked_task_wakes_its_call)
{
    async_pool_t *pool = gpool(1, 0);
    promise_t *p = promise_make();
    future_t *never = promise_future(p);
    chan_t *c = chan_make(sizeof(int), 0), *out = chan_make(sizeof(int), 0);
    for (int k = 0; k < NKINDS; k++) {
        struct blocker b = { .kind = (enum block_kind)k, .c = c, .out = out,
                             .never = never };
        future_t *f = async_run_on(pool, block_forever, &b);
        cr_assert(wait_parked(pool, 1), "%s did not park", kind_name[k]);
        cr_assert_eq(future_cancel(f), EBUSY, "%s: cancel of a parked task", kind_name[k]);
        intptr_t rc = get_int(f);
        cr_assert_eq(rc, ECANCELED, "%s returned %ld", kind_name[k], (long)rc);
        cr_assert_eq(future_cancel(f), EALREADY);
        async_pool_stats_t s;
        cr_assert(tu_pool_quiet(pool, &s));
        cr_assert_eq(s.parked, 0, "%s: still parked", kind_name[k]);
        future_free(f);
    }
    future_free(never);
    promise_free(p);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(c);
    chan_free(out);
}

Test(goroutine, cancel_ends_plain_async_sleep_of_a_parked_task)
{
    async_pool_t *pool = gpool(1, 0);
    future_t *f = async_run_on(pool, block_forever, &(struct blocker){ .kind = K_SLEEP });
    cr_assert(wait_parked(pool, 1));
    int64_t t0 = tu_clock();
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(get_int(f), ECANCELED);
    cr_assert_lt(tu_clock() - t0, 10 * ASYNC_SECOND);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

Test(goroutine, cancel_destroy_ends_a_thousand_parked_tasks)
{
    async_pool_t *pool = gpool(1, 0);
    promise_t *p = promise_make();
    future_t *never = promise_future(p);
    chan_t *c = chan_make(sizeof(int), 0), *out = chan_make(sizeof(int), 0);
    static struct blocker bs[MANY];
    future_t *fs[MANY];
    for (unsigned i = 0; i < MANY; i++) {
        bs[i] = (struct blocker){ .kind = (enum block_kind)(i % NKINDS), .c = c,
                                  .out = out, .never = never };
        fs[i] = async_run_on(pool, block_forever, &bs[i]);
        cr_assert_not_null(fs[i]);
    }
    cr_assert(wait_parked(pool, MANY), "only %zu of %u parked", stats_of(pool).parked, MANY);
    cr_assert_eq(stats_of(pool).peak_threads, 1);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_CANCEL), 0);
    for (unsigned i = 0; i < MANY; i++) {
        cr_assert(future_done(fs[i]), "task %u not done after destroy", i);
        void *r = NULL;
        cr_assert_eq(future_get_until(fs[i], &r, 0), 0);
        cr_assert_eq((intptr_t)r, ECANCELED, "task %u (%s) returned %ld", i,
                     kind_name[bs[i].kind], (long)(intptr_t)r);
        future_free(fs[i]);
    }
    future_free(never);
    promise_free(p);
    chan_free(c);
    chan_free(out);
}

Test(goroutine, drain_destroy_waits_for_parked_tasks_to_be_fed)
{
    /* A drain with parked tasks: they are fed by a task of the pool queued
     * behind them, so destroy returns with every value delivered once. */
    async_pool_t *pool = gpool(1, 0);
    chan_t *c = chan_make(sizeof(int), 0);
    future_t *fs[100];
    for (int i = 0; i < 100; i++)
        fs[i] = async_run_on(pool, recv_one, c);
    cr_assert(wait_parked(pool, 100));
    future_t *feeder = async_run_on(pool, send_later, c);   /* sends 5 once */
    cr_assert_not_null(feeder);
    for (int i = 1; i < 100; i++) {
        future_t *g = async_run_on(pool, send_later, c);
        cr_assert_not_null(g);
        future_free(g);
    }
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    for (int i = 0; i < 100; i++) {
        cr_assert(future_done(fs[i]));
        void *r = NULL;
        cr_assert_eq(future_get_until(fs[i], &r, 0), 0);
        cr_assert_eq((intptr_t)r, 5);
        future_free(fs[i]);
    }
    cr_assert(future_done(feeder));
    future_free(feeder);
    chan_free(c);
}

/* ---------------------------------------------------------------- timers */

struct timed {
    chan_t  *c;
    int64_t  wait;        /* ns */
};

/* chan_recv_until a deadline `wait` away: 1 when it timed out no earlier
 * than the deadline, else -(rc) or -1000 when it returned early. */
static void *recv_with_deadline(void *arg)
{
    struct timed *t = arg;
    int64_t deadline = async_now() + t->wait;
    int rc = chan_recv_until(t->c, NULL, deadline);
    if (rc != ETIMEDOUT)
        return (void *)(intptr_t)-rc;
    return (void *)(intptr_t)(async_now() >= deadline ? 1 : -1000);
}

Test(goroutine, parked_recv_until_times_out_not_before_its_deadline)
{
    async_pool_t *pool = gpool(1, 0);
    struct timed t = { chan_make(sizeof(int), 0), 20 * ASYNC_MILLISECOND };
    for (int i = 0; i < 5; i++) {
        future_t *f = async_run_on(pool, recv_with_deadline, &t);
        intptr_t r = get_int(f);
        cr_assert_eq(r, 1, "round %d: %ld (-1000: early; else -errno)", i, (long)r);
        future_free(f);
    }
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(t.c);
}

Test(goroutine, thousand_parked_deadlines_on_one_worker_all_time_out)
{
    async_pool_t *pool = gpool(1, 0);
    chan_t *c = chan_make(sizeof(int), 0);
    static struct timed ts[MANY];
    future_t *fs[MANY];
    int64_t t0 = tu_clock();
    for (unsigned i = 0; i < MANY; i++) {
        ts[i] = (struct timed){ c, (int64_t)(20 + i % 30) * ASYNC_MILLISECOND };
        fs[i] = async_run_on(pool, recv_with_deadline, &ts[i]);
    }
    for (unsigned i = 0; i < MANY; i++) {
        intptr_t r = get_int(fs[i]);
        cr_assert_eq(r, 1, "waiter %u: %ld (-1000: early; else -errno)", i, (long)r);
        future_free(fs[i]);
    }
    int64_t took = tu_clock() - t0;
    cr_assert_lt(took, 5 * ASYNC_SECOND, "1000 timers of <= 50 ms took %lld ms",
                 (long long)(took / ASYNC_MILLISECOND));
    async_pool_stats_t s;
    cr_assert(tu_pool_quiet(pool, &s));
    cr_assert_eq(s.peak_threads, 1);
    cr_assert_eq(s.parked, 0);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(c);
}

/* Sleeps arg ms; returns 1 when it slept at least that long. */
static void *sleep_ms(void *arg)
{
    int64_t ns = (intptr_t)arg * ASYNC_MILLISECOND;
    int64_t t0 = async_now();
    async_sleep(ns);
    return (void *)(intptr_t)(async_now() - t0 >= ns ? 1 : 0);
}

Test(goroutine, thousand_sleepers_on_one_worker_overlap)
{
    async_pool_t *pool = gpool(1, 0);
    future_t *fs[MANY];
    int64_t t0 = tu_clock();
    for (unsigned i = 0; i < MANY; i++)
        fs[i] = async_run_on(pool, sleep_ms, (void *)(intptr_t)(1 + i % 50));
    for (unsigned i = 0; i < MANY; i++) {
        cr_assert_eq(get_int(fs[i]), 1, "sleeper %u woke before %u ms", i, 1 + i % 50);
        future_free(fs[i]);
    }
    int64_t took = tu_clock() - t0;
    /* Their sum is about 25 s; they sleep at once, parked. */
    cr_assert_lt(took, ASYNC_SECOND, "1000 sleeps of 1..50 ms took %lld ms",
                 (long long)(took / ASYNC_MILLISECOND));
    cr_assert_eq(stats_of(pool).peak_threads, 1);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

/* A timer racing a channel wake: the value is received exactly once, or the
 * call times out and the value goes to the next receiver. */
static void *send_int(void *arg)
{
    int v = 9;
    return (void *)(intptr_t)chan_send_until(arg, &v, async_now() + TU_PATIENCE);
}

Test(goroutine, deadline_racing_a_send_delivers_once)
{
    async_pool_t *pool = gpool(2, 0);
    chan_t *c = chan_make(sizeof(int), 0);
    for (int round = 0; round < 300; round++) {
        struct timed t = { c, (round % 5) * 100 * ASYNC_MICROSECOND };
        future_t *r = async_run_on(pool, recv_with_deadline, &t);
        future_t *s = async_run_on(pool, send_int, c);
        intptr_t got = get_int(r);
        if (got == 1) {
            /* Timed out: the sender is still waiting; take its value. */
            int v = 0;
            cr_assert_eq(chan_recv(c, &v), 0);
            cr_assert_eq(v, 9);
        } else {
            cr_assert_eq(got, 0, "round %d: receiver answered %ld", round, (long)got);
        }
        cr_assert_eq(get_int(s), 0);
        cr_assert_eq(chan_len(c), 0);
        future_free(r);
        future_free(s);
    }
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(c);
}

/* --------------------------------------------------------- nested waits */

#define CHAIN 10000

struct chain {
    async_pool_t *pool;
    atomic_int    ran;
};

static struct chain chain;

/* Task i waits for task i+1; the last answers. Returns the depth below. */
static void *chain_link(void *arg)
{
    intptr_t i = (intptr_t)arg;
    atomic_fetch_add(&chain.ran, 1);
    if (i == CHAIN - 1)
        return (void *)(intptr_t)1;
    future_t *next = async_run_on(chain.pool, chain_link, (void *)(i + 1));
    if (!next)
        return (void *)(intptr_t)-100000;
    void *r = NULL;
    int rc = future_get(next, &r);
    future_free(next);
    if (rc != 0)
        return (void *)(intptr_t)-rc;
    return (void *)((intptr_t)r + 1);
}

Test(goroutine, nested_gets_ten_thousand_deep_in_a_task, .timeout = 60)
{
    chain.pool = gpool(1, 0);
    atomic_store(&chain.ran, 0);
    future_t *f = async_run_on(chain.pool, chain_link, (void *)0);
    cr_assert_eq(get_int(f), CHAIN);
    cr_assert_eq(atomic_load(&chain.ran), CHAIN);
    future_free(f);
    async_pool_stats_t s;
    cr_assert(tu_pool_quiet(chain.pool, &s));
    cr_assert_eq(s.parked, 0);
    cr_assert_eq(s.peak_threads, 1);
    cr_assert_eq(async_pool_destroy(chain.pool, ASYNC_DRAIN), 0);
}

Test(goroutine, nested_gets_ten_thousand_deep_from_main, .timeout = 60)
{
    chain.pool = gpool(1, 0);
    atomic_store(&chain.ran, 0);
    future_t *f = async_run_on(chain.pool, chain_link, (void *)0);
    void *r = NULL;
    /* Forever: main may run the chain's head inline, on its own stack. */
    cr_assert_eq(future_get(f, &r), 0);
    cr_assert_eq((intptr_t)r, CHAIN);
    cr_assert_eq(atomic_load(&chain.ran), CHAIN);
    future_free(f);
    cr_assert_eq(async_pool_destroy(chain.pool, ASYNC_DRAIN), 0);
}

Test(goroutine, nested_gets_deep_on_small_stacks, .timeout = 60)
{
    /* 64 KiB stacks: never room for an inline run, every waiter parks. */
    chain.pool = gpool(1, 64 * KIB);
    atomic_store(&chain.ran, 0);
    future_t *f = async_run_on(chain.pool, chain_link, (void *)0);
    cr_assert_eq(get_int(f), CHAIN);
    future_free(f);
    cr_assert_eq(async_pool_destroy(chain.pool, ASYNC_DRAIN), 0);
}

/* ---------------------------------------------------------- fork / join */

static async_pool_t *fib_pool;

static void *fib_task(void *arg)
{
    intptr_t n = (intptr_t)arg;
    if (n < 2)
        return (void *)n;
    future_t *a = async_run_on(fib_pool, fib_task, (void *)(n - 1));
    future_t *b = async_run_on(fib_pool, fib_task, (void *)(n - 2));
    if (!a || !b)
        async_panic(ENOMEM, "fib(%ld): submit failed", (long)n);
    void *ra = NULL, *rb = NULL;
    int ea = future_get(a, &ra);
    int eb = future_get(b, &rb);
    future_free(a);
    future_free(b);
    if (ea || eb)
        async_panic(EIO, "fib(%ld): get %d %d", (long)n, ea, eb);
    return (void *)((intptr_t)ra + (intptr_t)rb);
}

static void fib_on(unsigned threads)
{
    fib_pool = gpool(threads, 0);
    future_t *f = async_run_on(fib_pool, fib_task, (void *)20);
    cr_assert_eq(get_int(f), 6765);
    future_free(f);
    async_pool_stats_t s;
    cr_assert(tu_pool_quiet(fib_pool, &s));
    cr_assert_eq(s.failed, 0);
    cr_assert_eq(s.parked, 0);
    cr_assert_leq(s.peak_threads, threads);
    cr_assert_eq(async_pool_destroy(fib_pool, ASYNC_DRAIN), 0);
}

Test(goroutine, forkjoin_fib20_on_one_worker, .timeout = 60)
{
    fib_on(1);
}

Test(goroutine, forkjoin_fib20_on_two_workers, .timeout = 60)
{
    fib_on(2);
}

/* --------------------------------------------------------- deep recursion */

static int recurse(int depth)
{
    volatile char buf[1024];
    for (size_t i = 0; i < sizeof buf; i += 64)
        buf[i] = (char)depth;
    if (depth == 0)
        return buf[0];
    return recurse(depth - 1) + buf[512] - (char)depth + 1;
}

static void *deep_recursion(void *arg)
{
    chan_t *c = arg;
    int before = recurse(100);              /* about 100 KiB */
    if (chan_recv(c, NULL) != 0)            /* park: resumed on its own stack */
        return (void *)(intptr_t)-1;
    int after = recurse(100);
    return (void *)(intptr_t)(before == 100 && after == 100 ? 1 : 0);
}

Test(goroutine, recursion_of_100_kib_on_a_256_kib_stack)
{
    async_pool_t *pool = gpool(2, 256 * KIB);
    chan_t *c = chan_make(0, 0);
    future_t *f = async_run_on(pool, deep_recursion, c);
    cr_assert(wait_parked(pool, 1));
    cr_assert_eq(chan_send(c, NULL), 0);
    cr_assert_eq(get_int(f), 1);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(c);
}

/* ----------------------------------------------- the default pool's tasks */

Test(goroutine, park_in_a_task_of_the_default_pool)
{
    cr_assert_eq(unsetenv("ASYNC_STACK_SIZE"), 0);
    future_t *f = async_run(park_then_return, NULL);
    cr_assert_not_null(f);
    cr_assert_eq(get_int(f), 1);
    future_free(f);
    cr_assert_eq(async_shutdown(ASYNC_DRAIN), 0);
}
