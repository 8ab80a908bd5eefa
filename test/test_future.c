/*
 * test/test_future.c — tasks and futures (API.md: Conventions, Tasks and
 * futures): submission, get, state, error, cancel, free, wait_all, wait_any.
 *
 * A pool of one worker is "held" by a task that spins on a gate outside the
 * library (so it never counts as blocked and no replacement starts): tasks
 * submitted meanwhile stay PENDING for as long as the test needs.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "testutil.h"

/* ------------------------------------------------------------- helpers */

/* Under AddressSanitizer an impossible malloc must return NULL, as libc's
 * does, instead of aborting (submit_with_an_unallocatable_size_...). */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

struct hold {
    tu_gate_t running;
    tu_gate_t release;
    bool      gave_up;
};

static void *hold_task(void *arg)
{
    struct hold *h = arg;
    tu_gate_open(&h->running);
    if (!tu_gate_wait(&h->release))
        h->gave_up = true;
    return NULL;
}

/* Occupy the single worker of pool until hold_end. */
static future_t *hold_begin(async_pool_t *pool, struct hold *h)
{
    memset(h, 0, sizeof *h);
    future_t *f = async_run_on(pool, hold_task, h);
    cr_assert_not_null(f);
    cr_assert(tu_gate_wait(&h->running), "the holding task never started");
    return f;
}

static void hold_end(future_t *f, struct hold *h)
{
    tu_gate_open(&h->release);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_not(h->gave_up);
    future_free(f);
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

static void *fail_task(void *arg)
{
    async_panic((int)(intptr_t)arg, "failed with %d", (int)(intptr_t)arg);
}

/* ------------------------------------------------------ submission */

Test(future, run_with_null_fn_returns_einval)
{
    errno = 0;
    cr_assert_null(async_run(NULL, NULL));
    cr_assert_eq(errno, EINVAL);
}

Test(future, run_on_with_null_fn_returns_einval)
{
    async_pool_t *pool = pool_of(1);
    errno = 0;
    cr_assert_null(async_run_on(pool, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    destroy(pool);
}

Test(future, submit_with_null_fn_returns_einval)
{
    async_pool_t *pool = pool_of(1);
    int x = 1;
    errno = 0;
    cr_assert_null(async_submit(pool, NULL, &x, sizeof x));
    cr_assert_eq(errno, EINVAL);
    destroy(pool);
}

Test(future, submit_null_arg_with_nonzero_size_returns_einval)
{
    async_pool_t *pool = pool_of(1);
    errno = 0;
    cr_assert_null(async_submit(pool, tu_task_noop, NULL, 8));
    cr_assert_eq(errno, EINVAL);
    destroy(pool);
}

Test(future, submit_with_an_unallocatable_size_returns_enomem)
{
    async_pool_t *pool = pool_of(1);
    char x = 0;
    errno = 0;
    cr_assert_null(async_submit(pool, tu_task_noop, &x, (size_t)1 << 48));
    cr_assert_eq(errno, ENOMEM);
    destroy(pool);
}

Test(future, run_returns_the_task_result_on_the_default_pool)
{
    int x;
    void *r = NULL;
    future_t *f = async_run(tu_task_identity, &x);
    cr_assert_not_null(f);
    cr_assert_eq(future_get(f, &r), 0);
    cr_assert_eq(r, &x);
    future_free(f);
    cr_assert_eq(async_shutdown(ASYNC_DRAIN), 0);
}

Test(future, run_on_null_pool_uses_the_default_pool)
{
    int x;
    void *r = NULL;
    async_pool_stats_t before, after;
    cr_assert_eq(async_pool_stats(NULL, &before), 0);
    future_t *f = async_run_on(NULL, tu_task_identity, &x);
    cr_assert_not_null(f);
    cr_assert_eq(future_get(f, &r), 0);
    cr_assert_eq(r, &x);
    cr_assert_eq(async_pool_stats(NULL, &after), 0);
    cr_assert_eq(after.submitted, before.submitted + 1);
    future_free(f);
    cr_assert_eq(async_shutdown(ASYNC_DRAIN), 0);
}

struct closure_probe {
    tu_gate_t go;
    int       a, b;
    bool      aligned, is_copy;
    const void *original;
};

struct closure {
    struct closure_probe *probe;
    int a, b;
    char tail[13];
};

static void *closure_task(void *arg)
{
    const struct closure *c = arg;
    struct closure_probe *p = c->probe;
    p->is_copy = arg != p->original;
    p->aligned = (uintptr_t)arg % _Alignof(max_align_t) == 0;
    if (!tu_gate_wait(&p->go))
        return NULL;
    p->a = c->a;
    p->b = c->b;
    return (void *)1;
}

Test(future, submit_copies_the_argument_so_later_changes_are_not_seen)
{
    async_pool_t *pool = pool_of(1);
    struct closure_probe probe = { .a = -1, .b = -1 };
    struct closure c = { .probe = &probe, .a = 7, .b = 11 };
    void *r = NULL;
    probe.original = &c;
    future_t *f = async_submit(pool, closure_task, &c, sizeof c);
    cr_assert_not_null(f);
    c.a = 99;
    c.b = 99;
    memset(c.tail, 0x55, sizeof c.tail);
    tu_gate_open(&probe.go);
    cr_assert_eq(tu_get(f, &r), 0);
    cr_assert_eq(r, (void *)1);
    cr_assert(probe.is_copy);
    cr_assert(probe.aligned, "the copy must be aligned for any type");
    cr_assert_eq(probe.a, 7);
    cr_assert_eq(probe.b, 11);
    future_free(f);
    destroy(pool);
}

Test(future, submit_with_size_zero_passes_the_pointer_itself)
{
    async_pool_t *pool = pool_of(1);
    int x;
    void *r = NULL;
    future_t *f = async_submit(pool, tu_task_identity, &x, 0);
    cr_assert_not_null(f);
    cr_assert_eq(tu_get(f, &r), 0);
    cr_assert_eq(r, &x);
    future_free(f);
    f = async_submit(pool, tu_task_identity, NULL, 0);
    cr_assert_not_null(f);
    r = &x;
    cr_assert_eq(tu_get(f, &r), 0);
    cr_assert_null(r);
    future_free(f);
    destroy(pool);
}

/* ------------------------------------------------------------- get */

Test(future, get_on_null_returns_einval)
{
    void *r = &r;
    cr_assert_eq(future_get(NULL, &r), EINVAL);
    cr_assert_eq(r, &r);
}

Test(future, get_until_on_null_returns_einval)
{
    cr_assert_eq(future_get_until(NULL, NULL, 0), EINVAL);
    cr_assert_eq(future_get_until(NULL, NULL, ASYNC_FOREVER), EINVAL);
}

Test(future, get_until_below_minus_one_returns_einval_even_when_done)
{
    async_pool_t *pool = pool_of(1);
    void *r = &r;
    future_t *f = async_run_on(pool, tu_task_identity, NULL);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(future_get_until(f, &r, -2), EINVAL);
    cr_assert_eq(future_get_until(f, &r, INT64_MIN), EINVAL);
    cr_assert_eq(r, &r);
    future_free(f);
    destroy(pool);
}

Test(future, get_returns_the_result_and_accepts_a_null_result)
{
    async_pool_t *pool = pool_of(2);
    int x;
    void *r = NULL;
    future_t *f = async_run_on(pool, tu_task_identity, &x);
    cr_assert_eq(future_get(f, &r), 0);
    cr_assert_eq(r, &x);
    cr_assert_eq(future_get(f, NULL), 0);
    future_free(f);
    destroy(pool);
}

Test(future, get_answers_the_same_every_time)
{
    async_pool_t *pool = pool_of(2);
    int x;
    future_t *ok = async_run_on(pool, tu_task_identity, &x);
    future_t *bad = async_run_on(pool, fail_task, (void *)(intptr_t)ERANGE);
    for (int i = 0; i < 5; i++) {
        void *r = NULL;
        cr_assert_eq(future_get(ok, &r), 0);
        cr_assert_eq(r, &x);
        cr_assert_eq(future_get(bad, &r), ERANGE);
        cr_assert_eq(future_get_until(bad, NULL, 0), ERANGE);
    }
    future_free(ok);
    future_free(bad);
    destroy(pool);
}

Test(future, get_of_a_failed_task_returns_its_code_and_leaves_result_untouched)
{
    async_pool_t *pool = pool_of(1);
    void *r = &r;
    future_t *f = async_run_on(pool, fail_task, (void *)(intptr_t)EDOM);
    cr_assert_eq(future_get(f, &r), EDOM);
    cr_assert_eq(r, &r);
    cr_assert_eq(future_state(f), FUTURE_FAILED);
    char want[32];
    snprintf(want, sizeof want, "failed with %d", EDOM);
    cr_assert_str_eq(future_error(f), want);
    future_free(f);
    destroy(pool);
}

Test(future, get_until_deadline_0_on_a_pending_future_returns_eagain)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    void *r = &r;
    cr_assert_eq(future_get_until(f, &r, 0), EAGAIN);
    cr_assert_eq(r, &r);
    future_free(f);
    promise_free(p);
}

Test(future, get_until_deadline_0_on_a_done_future_returns_its_outcome)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    int x;
    void *r = NULL;
    cr_assert_eq(promise_complete(p, &x), 0);
    cr_assert_eq(future_get_until(f, &r, 0), 0);
    cr_assert_eq(r, &x);
    future_free(f);
    promise_free(p);
}

Test(future, get_until_a_passed_deadline_returns_etimedout)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    void *r = &r;
    cr_assert_eq(future_get_until(f, &r, 1), ETIMEDOUT);
    int64_t deadline = async_now() + 20 * ASYNC_MILLISECOND;
    cr_assert_eq(future_get_until(f, &r, deadline), ETIMEDOUT);
    cr_assert_geq(async_now(), deadline);
    cr_assert_eq(r, &r);
    future_free(f);
    promise_free(p);
}

struct where {
    pthread_t thread;
};

static void *where_task(void *arg)
{
    ((struct where *)arg)->thread = pthread_self();
    return arg;
}

Test(future, get_runs_a_pending_task_inline_when_every_worker_is_busy)
{
    async_pool_t *pool = pool_of(1);
    struct hold h;
    future_t *held = hold_begin(pool, &h);
    struct where w;
    void *r = NULL;
    future_t *f = async_run_on(pool, where_task, &w);
    cr_assert_eq(future_state(f), FUTURE_PENDING);
    cr_assert_eq(future_get(f, &r), 0);
    cr_assert_eq(r, &w);
    cr_assert(pthread_equal(w.thread, pthread_self()), "the waiter runs it itself");
    cr_assert_eq(future_state(held), FUTURE_RUNNING);
    hold_end(held, &h);
    future_free(f);
    destroy(pool);
}

Test(future, get_until_with_a_finite_deadline_never_runs_the_task_inline)
{
    async_pool_t *pool = pool_of(1);
    struct hold h;
    future_t *held = hold_begin(pool, &h);
    struct where w;
    future_t *f = async_run_on(pool, where_task, &w);
    cr_assert_eq(future_get_until(f, NULL, async_now() + 20 * ASYNC_MILLISECOND), ETIMEDOUT);
    cr_assert_eq(future_get_until(f, NULL, 0), EAGAIN);
    cr_assert_eq(future_state(f), FUTURE_PENDING);
    hold_end(held, &h);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_not(pthread_equal(w.thread, pthread_self()));
    future_free(f);
    destroy(pool);
}

struct getter {
    future_t *f;
    int       rc;
    void     *r;
};

static void *getter_thread(void *arg)
{
    struct getter *g = arg;
    g->rc = future_get(g->f, &g->r);
    return NULL;
}

Test(future, get_from_another_thread_sees_the_same_result)
{
    async_pool_t *pool = pool_of(1);
    int x;
    future_t *f = async_run_on(pool, tu_task_identity, &x);
    struct getter g = { .f = f, .rc = -1 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, getter_thread, &g), 0);
    void *r = NULL;
    cr_assert_eq(future_get(f, &r), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(g.rc, 0);
    cr_assert_eq(g.r, &x);
    cr_assert_eq(r, &x);
    future_free(f);
    destroy(pool);
}

/* ----------------------------------------------- state, done, error */

Test(future, queries_on_null_never_crash)
{
    cr_assert_eq(future_state(NULL), FUTURE_FAILED);
    cr_assert_not(future_done(NULL));
    cr_assert_null(future_error(NULL));
}

Test(future, state_goes_pending_running_succeeded)
{
    async_pool_t *pool = pool_of(1);
    struct hold h;
    future_t *held = hold_begin(pool, &h);
    future_t *f = async_run_on(pool, tu_task_noop, NULL);
    cr_assert_eq(future_state(held), FUTURE_RUNNING);
    cr_assert_not(future_done(held));
    cr_assert_eq(future_state(f), FUTURE_PENDING);
    cr_assert_not(future_done(f));
    cr_assert_null(future_error(f));
    hold_end(held, &h);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(future_state(f), FUTURE_SUCCEEDED);
    cr_assert(future_done(f));
    cr_assert_null(future_error(f));
    future_free(f);
    destroy(pool);
}

Test(future, a_failed_future_is_done_with_its_message)
{
    async_pool_t *pool = pool_of(1);
    future_t *f = async_run_on(pool, fail_task, (void *)(intptr_t)ENOENT);
    cr_assert_eq(tu_get(f, NULL), ENOENT);
    cr_assert_eq(future_state(f), FUTURE_FAILED);
    cr_assert(future_done(f));
    char want[32];
    snprintf(want, sizeof want, "failed with %d", ENOENT);
    cr_assert_str_eq(future_error(f), want);
    future_free(f);
    destroy(pool);
}

/* ----------------------------------------------------------- cancel */

Test(future, cancel_on_null_returns_einval)
{
    cr_assert_eq(future_cancel(NULL), EINVAL);
}

Test(future, cancel_of_a_pending_task_returns_0_and_it_never_runs)
{
    async_pool_t *pool = pool_of(1);
    struct hold h;
    future_t *held = hold_begin(pool, &h);
    atomic_uint ran = 0;
    void *r = &r;
    future_t *f = async_run_on(pool, tu_task_count, &ran);
    cr_assert_eq(future_cancel(f), 0);
    cr_assert_eq(future_state(f), FUTURE_CANCELLED);
    cr_assert(future_done(f));
    cr_assert_null(future_error(f));
    cr_assert_eq(future_get(f, &r), ECANCELED);
    cr_assert_eq(future_get_until(f, &r, 0), ECANCELED);
    cr_assert_eq(r, &r);
    hold_end(held, &h);
    destroy(pool);
    cr_assert_eq(atomic_load(&ran), 0);
    future_free(f);
}

Test(future, cancel_twice_returns_ealready)
{
    async_pool_t *pool = pool_of(1);
    struct hold h;
    future_t *held = hold_begin(pool, &h);
    future_t *f = async_run_on(pool, tu_task_noop, NULL);
    cr_assert_eq(future_cancel(f), 0);
    cr_assert_eq(future_cancel(f), EALREADY);
    hold_end(held, &h);
    future_free(f);
    destroy(pool);
}

Test(future, cancel_of_a_done_task_returns_ealready)
{
    async_pool_t *pool = pool_of(1);
    future_t *ok = async_run_on(pool, tu_task_noop, NULL);
    future_t *bad = async_run_on(pool, fail_task, (void *)(intptr_t)EIO);
    cr_assert_eq(tu_get(ok, NULL), 0);
    cr_assert_eq(tu_get(bad, NULL), EIO);
    cr_assert_eq(future_cancel(ok), EALREADY);
    cr_assert_eq(future_cancel(bad), EALREADY);
    cr_assert_eq(future_state(ok), FUTURE_SUCCEEDED);
    cr_assert_eq(future_state(bad), FUTURE_FAILED);
    future_free(ok);
    future_free(bad);
    destroy(pool);
}

struct watcher {
    tu_gate_t started;
    bool      saw_cancel;
    bool      cancelled_before;
};

static void *watch_cancel_task(void *arg)
{
    struct watcher *w = arg;
    int64_t until = tu_deadline();
    w->cancelled_before = async_cancelled();
    tu_gate_open(&w->started);
    while (!async_cancelled())
        if (!tu_spin_once(until))
            return NULL;
    w->saw_cancel = true;
    return (void *)2;
}

Test(future, cancel_of_a_running_task_returns_ebusy_and_the_task_sees_it)
{
    async_pool_t *pool = pool_of(1);
    struct watcher w = { 0 };
    void *r = NULL;
    future_t *f = async_run_on(pool, watch_cancel_task, &w);
    cr_assert(tu_gate_wait(&w.started));
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(tu_get(f, &r), 0, "the future completes with what the task does");
    cr_assert_eq(r, (void *)2);
    cr_assert_not(w.cancelled_before);
    cr_assert(w.saw_cancel);
    cr_assert_eq(future_state(f), FUTURE_SUCCEEDED);
    future_free(f);
    destroy(pool);
}

enum blocking_call { CALL_GET, CALL_GET_UNTIL, CALL_WAIT_ALL, CALL_WAIT_ANY, CALL_SLEEP_UNTIL };

struct blocked {
    tu_gate_t          started;
    enum blocking_call call;
    future_t          *on;
    int                rc;
};

static int blocking_call(enum blocking_call call, future_t *on)
{
    switch (call) {
    case CALL_GET:         return future_get(on, NULL);
    case CALL_GET_UNTIL:   return future_get_until(on, NULL, async_now() + 3600 * ASYNC_SECOND);
    case CALL_WAIT_ALL:    return future_wait_all(&on, 1, ASYNC_FOREVER);
    case CALL_WAIT_ANY:    return future_wait_any(&on, 1, ASYNC_FOREVER, NULL);
    case CALL_SLEEP_UNTIL: return async_sleep_until(ASYNC_FOREVER);
    }
    return -1;
}

static void *blocked_task(void *arg)
{
    struct blocked *b = arg;
    tu_gate_open(&b->started);
    b->rc = blocking_call(b->call, b->on);
    return NULL;
}

/* A task blocked (or about to block) in `call` on a promise nobody fulfils:
 * cancelling it makes the call return ECANCELED. */
static void check_cancel_reaches(enum blocking_call call)
{
    async_pool_t *pool = pool_of(1);
    promise_t *p = promise_make();
    struct blocked b = { .call = call, .on = promise_future(p), .rc = -1 };
    future_t *f = async_run_on(pool, blocked_task, &b);
    cr_assert(tu_gate_wait(&b.started));
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(b.rc, ECANCELED, "call %d returned %d", (int)call, b.rc);
    cr_assert_eq(future_state(b.on), FUTURE_PENDING, "the awaited future is untouched");
    future_free(f);
    future_free(b.on);
    promise_free(p);
    destroy(pool);
}

Test(future, cancel_reaches_a_task_blocked_in_future_get)
{
    check_cancel_reaches(CALL_GET);
}

Test(future, cancel_reaches_a_task_blocked_in_future_get_until)
{
    check_cancel_reaches(CALL_GET_UNTIL);
}

Test(future, cancel_reaches_a_task_blocked_in_future_wait_all)
{
    check_cancel_reaches(CALL_WAIT_ALL);
}

Test(future, cancel_reaches_a_task_blocked_in_future_wait_any)
{
    check_cancel_reaches(CALL_WAIT_ANY);
}

Test(future, cancel_reaches_a_task_blocked_in_async_sleep_until)
{
    check_cancel_reaches(CALL_SLEEP_UNTIL);
}

struct after_cancel {
    tu_gate_t started;
    future_t *done;
    int       rc[4];
    bool      saw_cancel;
};

static void *after_cancel_task(void *arg)
{
    struct after_cancel *a = arg;
    int64_t until = tu_deadline();
    tu_gate_open(&a->started);
    while (!async_cancelled())
        if (!tu_spin_once(until))
            return NULL;
    a->saw_cancel = true;
    a->rc[0] = future_get(a->done, NULL);
    a->rc[1] = future_get_until(a->done, NULL, async_now() + ASYNC_SECOND);
    a->rc[2] = future_wait_all(&a->done, 1, ASYNC_FOREVER);
    a->rc[3] = future_wait_any(&a->done, 1, ASYNC_FOREVER, NULL);
    return NULL;
}

Test(future, after_cancel_blocking_calls_return_ecanceled_even_when_they_could_complete)
{
    async_pool_t *pool = pool_of(1);
    promise_t *p = promise_make();
    struct after_cancel a = { .done = promise_future(p) };
    cr_assert_eq(promise_complete(p, NULL), 0);
    future_t *f = async_run_on(pool, after_cancel_task, &a);
    cr_assert(tu_gate_wait(&a.started));
    cr_assert_eq(future_cancel(f), EBUSY);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert(a.saw_cancel);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(a.rc[i], ECANCELED, "call %d returned %d", i, a.rc[i]);
    future_free(f);
    future_free(a.done);
    promise_free(p);
    destroy(pool);
}

/* ------------------------------------------------------------- free */

Test(future, free_of_null_is_a_no_op)
{
    future_free(NULL);
}

Test(future, free_of_a_pending_task_lets_it_run)
{
    async_pool_t *pool = pool_of(1);
    struct hold h;
    future_t *held = hold_begin(pool, &h);
    atomic_uint ran = 0;
    future_t *f = async_run_on(pool, tu_task_count, &ran);
    future_free(f);
    hold_end(held, &h);
    cr_assert(tu_wait_count(&ran, 1));
    destroy(pool);
    cr_assert_eq(atomic_load(&ran), 1);
}

struct gated {
    tu_gate_t started, go;
    atomic_uint finished;
};

static void *gated_task(void *arg)
{
    struct gated *g = arg;
    tu_gate_open(&g->started);
    if (tu_gate_wait(&g->go))
        atomic_fetch_add(&g->finished, 1);
    return NULL;
}

Test(future, free_of_a_running_task_lets_it_finish)
{
    async_pool_t *pool = pool_of(1);
    struct gated g = { .finished = 0 };
    future_t *f = async_run_on(pool, gated_task, &g);
    cr_assert(tu_gate_wait(&g.started));
    future_free(f);
    tu_gate_open(&g.go);
    cr_assert(tu_wait_count(&g.finished, 1));
    destroy(pool);
}

Test(future, free_after_completion_releases_it)
{
    async_pool_t *pool = pool_of(1);
    int x;
    future_t *f = async_run_on(pool, tu_task_identity, &x);
    cr_assert_eq(tu_get(f, NULL), 0);
    future_free(f);
    f = async_run_on(pool, fail_task, (void *)(intptr_t)EPERM);
    cr_assert_eq(tu_get(f, NULL), EPERM);
    future_free(f);
    destroy(pool);
}

/* ------------------------------------------------------- wait_all */

Test(future, wait_all_of_nothing_returns_0)
{
    cr_assert_eq(future_wait_all(NULL, 0, 0), 0);
    cr_assert_eq(future_wait_all(NULL, 0, ASYNC_FOREVER), 0);
}

Test(future, wait_all_with_null_array_returns_einval)
{
    cr_assert_eq(future_wait_all(NULL, 1, ASYNC_FOREVER), EINVAL);
}

Test(future, wait_all_with_a_null_entry_returns_einval)
{
    promise_t *p = promise_make();
    future_t *fs[2] = { promise_future(p), NULL };
    cr_assert_eq(promise_complete(p, NULL), 0);
    cr_assert_eq(future_wait_all(fs, 2, ASYNC_FOREVER), EINVAL);
    cr_assert_eq(future_wait_all(fs, 2, 0), EINVAL);
    future_free(fs[0]);
    promise_free(p);
}

Test(future, wait_all_below_minus_one_returns_einval)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    cr_assert_eq(promise_complete(p, NULL), 0);
    cr_assert_eq(future_wait_all(&f, 1, -2), EINVAL);
    future_free(f);
    promise_free(p);
}

Test(future, wait_all_returns_0_when_all_are_done_whatever_the_outcome)
{
    promise_t *p[3] = { promise_make(), promise_make(), promise_make() };
    future_t *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = promise_future(p[i]);
    cr_assert_eq(future_wait_all(fs, 3, 0), EAGAIN);
    cr_assert_eq(promise_complete(p[0], NULL), 0);
    cr_assert_eq(promise_fail(p[1], EBADMSG, "no"), 0);
    cr_assert_eq(future_wait_all(fs, 3, 0), EAGAIN);
    cr_assert_eq(future_cancel(fs[2]), 0);
    cr_assert_eq(future_wait_all(fs, 3, 0), 0);
    cr_assert_eq(future_wait_all(fs, 3, ASYNC_FOREVER), 0);
    for (int i = 0; i < 3; i++) {
        future_free(fs[i]);
        promise_free(p[i]);
    }
}

Test(future, wait_all_times_out_when_one_is_pending)
{
    promise_t *p[2] = { promise_make(), promise_make() };
    future_t *fs[2] = { promise_future(p[0]), promise_future(p[1]) };
    cr_assert_eq(promise_complete(p[1], NULL), 0);
    int64_t deadline = async_now() + 20 * ASYNC_MILLISECOND;
    cr_assert_eq(future_wait_all(fs, 2, deadline), ETIMEDOUT);
    cr_assert_geq(async_now(), deadline);
    cr_assert_eq(future_wait_all(fs, 2, 1), ETIMEDOUT);
    for (int i = 0; i < 2; i++) {
        future_free(fs[i]);
        promise_free(p[i]);
    }
}

Test(future, wait_all_forever_waits_for_running_tasks)
{
    async_pool_t *pool = pool_of(2);
    enum { N = 64 };
    atomic_uint ran = 0;
    future_t *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = async_run_on(pool, tu_task_count, &ran);
    cr_assert_eq(future_wait_all(fs, N, ASYNC_FOREVER), 0);
    for (int i = 0; i < N; i++) {
        cr_assert(future_done(fs[i]));
        future_free(fs[i]);
    }
    cr_assert_eq(atomic_load(&ran), N);
    destroy(pool);
}

/* ------------------------------------------------------- wait_any */

Test(future, wait_any_of_nothing_returns_einval)
{
    size_t i = 77;
    cr_assert_eq(future_wait_any(NULL, 0, 0, &i), EINVAL);
    cr_assert_eq(future_wait_any(NULL, 0, ASYNC_FOREVER, &i), EINVAL);
    cr_assert_eq(i, 77);
}

Test(future, wait_any_with_null_array_returns_einval)
{
    cr_assert_eq(future_wait_any(NULL, 2, ASYNC_FOREVER, NULL), EINVAL);
}

Test(future, wait_any_with_a_null_entry_returns_einval_even_if_another_is_done)
{
    promise_t *p = promise_make();
    future_t *fs[2] = { promise_future(p), NULL };
    cr_assert_eq(promise_complete(p, NULL), 0);
    cr_assert_eq(future_wait_any(fs, 2, ASYNC_FOREVER, NULL), EINVAL);
    cr_assert_eq(future_wait_any(fs, 2, 0, NULL), EINVAL);
    future_free(fs[0]);
    promise_free(p);
}

Test(future, wait_any_below_minus_one_returns_einval)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    cr_assert_eq(promise_complete(p, NULL), 0);
    cr_assert_eq(future_wait_any(&f, 1, -2, NULL), EINVAL);
    cr_assert_eq(future_wait_any(&f, 1, INT64_MIN, NULL), EINVAL);
    future_free(f);
    promise_free(p);
}

Test(future, wait_any_reports_the_lowest_done_index)
{
    enum { N = 4 };
    promise_t *p[N];
    future_t *fs[N];
    for (int i = 0; i < N; i++) {
        p[i] = promise_make();
        fs[i] = promise_future(p[i]);
    }
    size_t index = 99;
    cr_assert_eq(future_wait_any(fs, N, 0, &index), EAGAIN);
    cr_assert_eq(index, 99, "index untouched unless 0");
    cr_assert_eq(promise_complete(p[3], NULL), 0);
    cr_assert_eq(future_wait_any(fs, N, 0, &index), 0);
    cr_assert_eq(index, 3);
    cr_assert_eq(promise_fail(p[1], EIO, NULL), 0);
    cr_assert_eq(future_wait_any(fs, N, ASYNC_FOREVER, &index), 0);
    cr_assert_eq(index, 1);
    cr_assert_eq(future_cancel(fs[0]), 0);
    cr_assert_eq(future_wait_any(fs, N, 0, &index), 0);
    cr_assert_eq(index, 0);
    cr_assert_eq(future_wait_any(fs, N, 0, NULL), 0, "index may be NULL");
    for (int i = 0; i < N; i++) {
        future_free(fs[i]);
        promise_free(p[i]);
    }
}

Test(future, wait_any_times_out_when_none_is_done)
{
    promise_t *p[2] = { promise_make(), promise_make() };
    future_t *fs[2] = { promise_future(p[0]), promise_future(p[1]) };
    int64_t deadline = async_now() + 20 * ASYNC_MILLISECOND;
    cr_assert_eq(future_wait_any(fs, 2, deadline, NULL), ETIMEDOUT);
    cr_assert_geq(async_now(), deadline);
    for (int i = 0; i < 2; i++) {
        future_free(fs[i]);
        promise_free(p[i]);
    }
}

struct completer {
    promise_t **p;
    size_t      which;
    int         rc;
};

static void *complete_thread(void *arg)
{
    struct completer *c = arg;
    c->rc = promise_complete(c->p[c->which], NULL);
    return NULL;
}

Test(future, wait_any_over_many_futures_wakes_on_the_one_completed)
{
    enum { N = 200 };
    promise_t *p[N];
    future_t *fs[N];
    for (int i = 0; i < N; i++) {
        p[i] = promise_make();
        fs[i] = promise_future(p[i]);
        cr_assert_not_null(fs[i]);
    }
    struct completer c = { .p = p, .which = 157, .rc = -1 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, complete_thread, &c), 0);
    size_t index = 0;
    cr_assert_eq(future_wait_any(fs, N, ASYNC_FOREVER, &index), 0);
    cr_assert_eq(index, 157);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(c.rc, 0);
    for (int i = 0; i < N; i++) {
        future_free(fs[i]);
        promise_free(p[i]);
    }
}

Test(future, wait_any_never_runs_a_pending_task_inline)
{
    async_pool_t *pool = pool_of(1);
    struct hold h;
    future_t *held = hold_begin(pool, &h);
    future_t *f = async_run_on(pool, tu_task_noop, NULL);
    cr_assert_eq(future_wait_any(&f, 1, async_now() + 20 * ASYNC_MILLISECOND, NULL), ETIMEDOUT);
    cr_assert_eq(future_state(f), FUTURE_PENDING);
    hold_end(held, &h);
    size_t index = 5;
    cr_assert_eq(future_wait_any(&f, 1, ASYNC_FOREVER, &index), 0);
    cr_assert_eq(index, 0);
    future_free(f);
    destroy(pool);
}

/* ------------------------------------- waiting inside tasks, deadlines */

struct deadline_waits {
    future_t *pending[2];
    int       get_poll, get_timed, all_timed, any_poll, any_timed;
    int64_t   timed_elapsed;
};

static void *deadline_waits_task(void *arg)
{
    struct deadline_waits *d = arg;
    int64_t t0 = async_now();
    d->get_poll = future_get_until(d->pending[0], NULL, 0);
    d->get_timed = future_get_until(d->pending[0], NULL, t0 + 10 * ASYNC_MILLISECOND);
    d->timed_elapsed = async_now() - t0;
    d->all_timed = future_wait_all(d->pending, 2, async_now() + 5 * ASYNC_MILLISECOND);
    d->any_poll = future_wait_any(d->pending, 2, 0, NULL);
    d->any_timed = future_wait_any(d->pending, 2, async_now() + 5 * ASYNC_MILLISECOND, NULL);
    return NULL;
}

Test(future, waits_with_deadlines_inside_a_task_time_out)
{
    async_pool_t *pool = pool_of(1);
    promise_t *p[2] = { promise_make(), promise_make() };
    struct deadline_waits d = { .pending = { promise_future(p[0]), promise_future(p[1]) } };
    future_t *f = async_run_on(pool, deadline_waits_task, &d);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(d.get_poll, EAGAIN);
    cr_assert_eq(d.get_timed, ETIMEDOUT);
    cr_assert_geq(d.timed_elapsed, 10 * ASYNC_MILLISECOND);
    cr_assert_eq(d.all_timed, ETIMEDOUT);
    cr_assert_eq(d.any_poll, EAGAIN);
    cr_assert_eq(d.any_timed, ETIMEDOUT);
    future_free(f);
    for (int i = 0; i < 2; i++) {
        future_free(d.pending[i]);
        promise_free(p[i]);
    }
    destroy(pool);
}

/* ---------------------------------------------------- the helping rule */

struct helping {
    tu_gate_t   y_running, y_release, x_running, x_go;
    atomic_int  x_waiting;
    pthread_t   x_thread, z_thread;
    bool        z_ran_inside_x;
    future_t   *y;
    int         x_rc;
};

static void *helping_y(void *arg)
{
    struct helping *h = arg;
    tu_gate_open(&h->y_running);
    tu_gate_wait(&h->y_release);
    return NULL;
}

static void *helping_x(void *arg)
{
    struct helping *h = arg;
    h->x_thread = pthread_self();
    tu_gate_open(&h->x_running);
    tu_gate_wait(&h->x_go);
    atomic_store(&h->x_waiting, 1);
    h->x_rc = future_get(h->y, NULL);
    atomic_store(&h->x_waiting, 0);
    return NULL;
}

static void *helping_z(void *arg)
{
    struct helping *h = arg;
    h->z_thread = pthread_self();
    h->z_ran_inside_x = atomic_load(&h->x_waiting) && pthread_equal(h->z_thread, h->x_thread);
    return NULL;
}

/* Thread mode: there a waiting task holds its worker's thread, so running Z
 * "inside" X is what the rule forbids (in goroutine mode X parks and its
 * worker is free to run Z beside it). */
Test(future, a_task_waiting_on_a_running_task_runs_no_unrelated_pending_task)
{
    async_pool_t *pool = tu_pool_thread(2, 2, NULL);
    cr_assert_not_null(pool);
    struct helping h = { .x_rc = -1 };
    h.y = async_run_on(pool, helping_y, &h);
    cr_assert(tu_gate_wait(&h.y_running));
    future_t *x = async_run_on(pool, helping_x, &h);
    cr_assert(tu_gate_wait(&h.x_running));
    future_t *z = async_run_on(pool, helping_z, &h);     /* queued: both workers busy */
    tu_gate_open(&h.x_go);
    async_pool_stats_t s;
    int64_t until = tu_deadline();
    do
        cr_assert_eq(async_pool_stats(pool, &s), 0);
    while (tu_blocked(&s) != 1 && tu_spin_once(until));
    cr_assert_eq(tu_blocked(&s), 1, "X parks in future_get");
    cr_assert_eq(future_state(z), FUTURE_PENDING, "X must not run Z: Y does not wait for it");
    tu_gate_open(&h.y_release);
    cr_assert_eq(tu_get(x, NULL), 0);
    cr_assert_eq(tu_get(z, NULL), 0);
    cr_assert_eq(h.x_rc, 0);
    cr_assert_not(h.z_ran_inside_x);
    future_free(h.y);
    future_free(x);
    future_free(z);
    destroy(pool);
}

struct nested_cancel {
    async_pool_t *pool;
    tu_gate_t     z_running, z_release;
    future_t     *z;
    int           x_rc;
    bool          z_saw_cancel;
    pthread_t     x_thread, z_thread;
};

static void *nested_cancel_z(void *arg)
{
    struct nested_cancel *n = arg;
    n->z_thread = pthread_self();
    tu_gate_open(&n->z_running);
    tu_gate_wait(&n->z_release);
    n->z_saw_cancel = async_cancelled();
    return (void *)7;
}

static void *nested_cancel_x(void *arg)
{
    struct nested_cancel *n = arg;
    n->x_thread = pthread_self();
    n->z = async_run_on(n->pool, nested_cancel_z, n);
    n->x_rc = n->z ? future_get(n->z, NULL) : -1;  /* one worker: runs Z inline */
    return NULL;
}

Test(future, cancelling_a_task_that_runs_another_inline_lets_that_one_finish)
{
    async_pool_t *pool = pool_of(1);
    struct nested_cancel n = { .pool = pool, .x_rc = -1 };
    future_t *x = async_run_on(pool, nested_cancel_x, &n);
    cr_assert(tu_gate_wait(&n.z_running));
    cr_assert(pthread_equal(n.x_thread, n.z_thread), "Z runs inline in X's wait");
    cr_assert_eq(future_cancel(x), EBUSY);
    cr_assert_eq(future_state(n.z), FUTURE_RUNNING);
    tu_gate_open(&n.z_release);
    cr_assert_eq(tu_get(x, NULL), 0);
    cr_assert(n.x_rc == 0 || n.x_rc == ECANCELED, "X's wait returned %d", n.x_rc);
    void *r = NULL;
    cr_assert_eq(future_get_until(n.z, &r, 0), 0);
    cr_assert_eq(r, (void *)7, "Z ran to completion");
    cr_assert_not(n.z_saw_cancel, "only X was cancelled, not the task it runs inline");
    future_free(x);
    future_free(n.z);
    destroy(pool);
}
