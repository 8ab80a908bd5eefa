/*
 * test/test_task.c — inside a task (API.md: Inside a task): async_cancelled,
 * async_defer, async_panic; on a worker and in a task run inline by a waiter.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

static async_pool_t *pool_of(unsigned threads, struct tu_log *log)
{
    async_pool_t *pool = tu_pool(threads, 0, log);
    cr_assert_not_null(pool, "async_pool_create: %s", strerror(errno));
    return pool;
}

static void destroy(async_pool_t *pool)
{
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

/* A record of the order in which deferred functions ran. */
struct order {
    int  seq[8];
    int  n;
    bool in_task;          /* async_defer answered 0 inside the task */
    int  defer_rc[3];
};

struct step {
    struct order *order;
    int           id;
};

static void record_step(void *arg)
{
    struct step *s = arg;
    if (s->order->n < 8)
        s->order->seq[s->order->n++] = s->id;
}

/* ---------------------------------------------------- async_cancelled */

Test(task, cancelled_is_false_outside_a_task)
{
    cr_assert_not(async_cancelled());
}

static void *report_cancelled(void *arg)
{
    (void)arg;
    return async_cancelled() ? (void *)1 : (void *)2;
}

Test(task, cancelled_is_false_in_a_task_nobody_cancelled)
{
    async_pool_t *pool = pool_of(1, NULL);
    void *r = NULL;
    future_t *f = async_run_on(pool, report_cancelled, NULL);
    cr_assert_eq(tu_get(f, &r), 0);
    cr_assert_eq(r, (void *)2);
    future_free(f);
    destroy(pool);
}

/* -------------------------------------------------------- async_defer */

static void noop_defer(void *arg)
{
    (void)arg;
}

Test(task, defer_outside_a_task_returns_einval)
{
    cr_assert_eq(async_defer(noop_defer, NULL), EINVAL);
}

static void *defer_null_fn_task(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)async_defer(NULL, NULL);
}

Test(task, defer_with_null_fn_returns_einval)
{
    async_pool_t *pool = pool_of(1, NULL);
    void *r = NULL;
    future_t *f = async_run_on(pool, defer_null_fn_task, NULL);
    cr_assert_eq(tu_get(f, &r), 0);
    cr_assert_eq((int)(intptr_t)r, EINVAL);
    future_free(f);
    destroy(pool);
}

struct defer_case {
    struct order order;
    struct step  steps[3];
    bool         panic;
};

static void *defer_three_task(void *arg)
{
    struct defer_case *c = arg;
    for (int i = 0; i < 3; i++) {
        c->steps[i] = (struct step){ .order = &c->order, .id = i + 1 };
        c->order.defer_rc[i] = async_defer(record_step, &c->steps[i]);
    }
    if (c->panic)
        async_panic(EPROTO, "after three defers");
    return c;
}

static void check_lifo(struct defer_case *c)
{
    for (int i = 0; i < 3; i++)
        cr_assert_eq(c->order.defer_rc[i], 0);
    cr_assert_eq(c->order.n, 3, "every deferred function ran once");
    cr_assert_eq(c->order.seq[0], 3);
    cr_assert_eq(c->order.seq[1], 2);
    cr_assert_eq(c->order.seq[2], 1);
}

Test(task, defers_run_lifo_before_the_future_completes_on_return)
{
    async_pool_t *pool = pool_of(1, NULL);
    struct defer_case c = { .panic = false };
    void *r = NULL;
    future_t *f = async_run_on(pool, defer_three_task, &c);
    cr_assert_eq(tu_get(f, &r), 0);
    cr_assert_eq(r, &c);
    check_lifo(&c);
    future_free(f);
    destroy(pool);
}

Test(task, defers_run_lifo_before_the_future_completes_on_panic)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = pool_of(1, &log);
    struct defer_case c = { .panic = true };
    future_t *f = async_run_on(pool, defer_three_task, &c);
    cr_assert_eq(tu_get(f, NULL), EPROTO);
    check_lifo(&c);
    cr_assert_str_eq(future_error(f), "after three defers");
    future_free(f);
    destroy(pool);
    tu_log_fini(&log);
}

struct nested_defers {
    struct order outer_order, inner_order;
    struct step  outer, inner;
    async_pool_t *pool;
    int           inner_rc;
};

static void *inner_defer_task(void *arg)
{
    struct nested_defers *n = arg;
    n->inner = (struct step){ .order = &n->inner_order, .id = 20 };
    async_defer(record_step, &n->inner);
    return NULL;
}

static void *outer_defer_task(void *arg)
{
    struct nested_defers *n = arg;
    n->outer = (struct step){ .order = &n->outer_order, .id = 10 };
    async_defer(record_step, &n->outer);
    future_t *f = async_run_on(n->pool, inner_defer_task, n);
    n->inner_rc = future_get(f, NULL);     /* often run inline: a nested frame */
    future_free(f);
    n->outer_order.in_task = n->inner_order.n == 1 && n->outer_order.n == 0;
    return NULL;
}

Test(task, a_nested_task_runs_only_its_own_defers)
{
    async_pool_t *pool = pool_of(1, NULL);
    struct nested_defers n = { .pool = pool, .inner_rc = -1 };
    future_t *f = async_run_on(pool, outer_defer_task, &n);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(n.inner_rc, 0);
    cr_assert(n.outer_order.in_task, "the inner task ran its defer, not the outer's");
    cr_assert_eq(n.outer_order.n, 1);
    cr_assert_eq(n.outer_order.seq[0], 10);
    cr_assert_eq(n.inner_order.n, 1);
    cr_assert_eq(n.inner_order.seq[0], 20);
    future_free(f);
    destroy(pool);
}

/* -------------------------------------------------------- async_panic */

struct panic_args {
    int         err;
    const char *fmt;   /* NULL: panic with a NULL format */
    int         value;
};

static void deep(int depth, const struct panic_args *a)
{
    if (!a)
        return;
    if (depth == 0) {
        if (a->fmt)
            async_panic(a->err, a->fmt, a->value);
        async_panic(a->err, NULL);
    }
    deep(depth - 1, a);
}

static void *panic_task(void *arg)
{
    deep(5, arg);
    return (void *)1;
}

static future_t *run_panic(async_pool_t *pool, struct panic_args *a)
{
    future_t *f = async_run_on(pool, panic_task, a);
    cr_assert_not_null(f);
    return f;
}

Test(task, panic_fails_the_future_with_its_code_and_formatted_message)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = pool_of(1, &log);
    struct panic_args a = { .err = ERANGE, .fmt = "value %d out of range", .value = 42 };
    void *r = &r;
    future_t *f = run_panic(pool, &a);
    cr_assert_eq(tu_get(f, &r), ERANGE);
    cr_assert_eq(r, &r);
    cr_assert_eq(future_state(f), FUTURE_FAILED);
    cr_assert_str_eq(future_error(f), "value 42 out of range");
    future_free(f);
    destroy(pool);
    tu_log_fini(&log);
}

Test(task, panic_with_err_zero_or_negative_becomes_eio)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = pool_of(1, &log);
    struct panic_args zero = { .err = 0, .fmt = "zero %d", .value = 0 };
    struct panic_args neg = { .err = -7, .fmt = "negative %d", .value = -7 };
    future_t *f0 = run_panic(pool, &zero);
    future_t *f1 = run_panic(pool, &neg);
    cr_assert_eq(tu_get(f0, NULL), EIO);
    cr_assert_eq(tu_get(f1, NULL), EIO);
    cr_assert_str_eq(future_error(f0), "zero 0");
    cr_assert_str_eq(future_error(f1), "negative -7");
    future_free(f0);
    future_free(f1);
    destroy(pool);
    tu_log_fini(&log);
}

Test(task, panic_with_null_fmt_has_an_empty_message)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = pool_of(1, &log);
    struct panic_args a = { .err = EBADF, .fmt = NULL };
    future_t *f = run_panic(pool, &a);
    cr_assert_eq(tu_get(f, NULL), EBADF);
    cr_assert_not_null(future_error(f));
    cr_assert_str_eq(future_error(f), "");
    future_free(f);
    destroy(pool);
    tu_log_fini(&log);
}

Test(task, panic_writes_one_line_naming_the_message_through_the_log_hook)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = pool_of(1, &log);
    struct panic_args a = { .err = EDOM, .fmt = "kaboom-%d", .value = 4711 };
    future_t *f = run_panic(pool, &a);
    cr_assert_eq(tu_get(f, NULL), EDOM);
    destroy(pool);
    cr_assert_eq(atomic_load(&log.count), 1, "one line per panic");
    cr_assert_eq(tu_log_matching(&log, "kaboom-4711"), 1);
    future_free(f);
    tu_log_fini(&log);
}

static void redirect_stderr(void)
{
    cr_redirect_stderr();
}

Test(task, panic_logs_to_stderr_without_a_log_hook, .init = redirect_stderr)
{
    async_pool_t *pool = pool_of(1, NULL);
    struct panic_args a = { .err = EDOM, .fmt = "to-stderr-%d", .value = 99 };
    future_t *f = run_panic(pool, &a);
    cr_assert_eq(tu_get(f, NULL), EDOM);
    destroy(pool);
    future_free(f);
    fflush(stderr);
    FILE *err = cr_get_redirected_stderr();
    char line[512];
    bool found = false;
    while (fgets(line, sizeof line, err))
        if (strstr(line, "to-stderr-99"))
            found = true;
    cr_assert(found, "the panic line names the message");
}

Test(task, the_worker_goes_on_after_a_panic)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = pool_of(1, &log);
    struct panic_args a = { .err = EPERM, .fmt = "first %d", .value = 1 };
    int x;
    void *r = NULL;
    future_t *bad = run_panic(pool, &a);
    cr_assert_eq(tu_get(bad, NULL), EPERM);
    future_t *good = async_run_on(pool, tu_task_identity, &x);
    cr_assert_eq(tu_get(good, &r), 0);
    cr_assert_eq(r, &x);
    future_free(bad);
    future_free(good);
    destroy(pool);
    tu_log_fini(&log);
}

static void panicking_defer(void *arg)
{
    (void)arg;
    async_panic(ENOTSUP, "from a deferred function");
}

struct defer_panic {
    struct order order;
    struct step  first, last;
    bool         panic_in_body;
};

static void *defer_panic_task(void *arg)
{
    struct defer_panic *d = arg;
    d->first = (struct step){ .order = &d->order, .id = 1 };
    d->last = (struct step){ .order = &d->order, .id = 3 };
    async_defer(record_step, &d->first);
    async_defer(panicking_defer, NULL);
    async_defer(record_step, &d->last);
    if (d->panic_in_body)
        async_panic(EINTR, "from the body");
    return NULL;
}

Test(task, a_panicking_defer_replaces_the_message_and_the_others_still_run)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = pool_of(1, &log);
    struct defer_panic on_return = { .panic_in_body = false };
    struct defer_panic on_panic = { .panic_in_body = true };
    future_t *f0 = async_run_on(pool, defer_panic_task, &on_return);
    future_t *f1 = async_run_on(pool, defer_panic_task, &on_panic);
    cr_assert_eq(tu_get(f0, NULL), ENOTSUP);
    cr_assert_str_eq(future_error(f0), "from a deferred function");
    cr_assert_eq(tu_get(f1, NULL), ENOTSUP);
    cr_assert_str_eq(future_error(f1), "from a deferred function");
    struct defer_panic *both[2] = { &on_return, &on_panic };
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(both[i]->order.n, 2);
        cr_assert_eq(both[i]->order.seq[0], 3);
        cr_assert_eq(both[i]->order.seq[1], 1);
    }
    future_free(f0);
    future_free(f1);
    destroy(pool);
    tu_log_fini(&log);
}

Test(task, panic_outside_a_task_aborts, .signal = SIGABRT)
{
    cr_redirect_stderr();
    async_panic(EIO, "unrecovered %d", 1);
}

/* ---------------------------------------------- inline runs behave alike */

struct hold {
    tu_gate_t running, release;
};

static void *hold_task(void *arg)
{
    struct hold *h = arg;
    tu_gate_open(&h->running);
    tu_gate_wait(&h->release);
    return NULL;
}

struct inline_probe {
    struct defer_case defers;
    pthread_t         thread;
    bool              cancelled_seen;
};

static void *inline_probe_task(void *arg)
{
    struct inline_probe *p = arg;
    p->thread = pthread_self();
    p->cancelled_seen = async_cancelled();
    return defer_three_task(&p->defers);
}

Test(task, defer_and_panic_work_in_a_task_run_inline_by_a_waiter)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = pool_of(1, &log);
    struct hold h = { 0 };
    future_t *held = async_run_on(pool, hold_task, &h);
    cr_assert(tu_gate_wait(&h.running));
    struct inline_probe ok = { .defers.panic = false };
    struct inline_probe bad = { .defers.panic = true };
    future_t *f0 = async_run_on(pool, inline_probe_task, &ok);
    future_t *f1 = async_run_on(pool, inline_probe_task, &bad);
    cr_assert_eq(future_get(f1, NULL), EPROTO);
    cr_assert_eq(future_get(f0, NULL), 0);
    cr_assert(pthread_equal(ok.thread, pthread_self()), "ran inline");
    cr_assert(pthread_equal(bad.thread, pthread_self()), "ran inline");
    cr_assert_not(ok.cancelled_seen);
    check_lifo(&ok.defers);
    check_lifo(&bad.defers);
    cr_assert_str_eq(future_error(f1), "after three defers");
    cr_assert_eq(tu_log_matching(&log, "after three defers"), 1);
    cr_assert_eq(async_defer(noop_defer, NULL), EINVAL, "the test thread is outside a task again");
    tu_gate_open(&h.release);
    cr_assert_eq(tu_get(held, NULL), 0);
    future_free(held);
    future_free(f0);
    future_free(f1);
    destroy(pool);
    tu_log_fini(&log);
}
