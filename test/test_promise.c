/*
 * test/test_promise.c — promises (API.md: Promises), and the future side of
 * a promise: completion, failure, broken promises, cancellation, handles.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "testutil.h"

struct promised {
    promise_t *p;
    future_t  *f;
};

static struct promised make(void)
{
    struct promised pr = { .p = promise_make() };
    cr_assert_not_null(pr.p);
    pr.f = promise_future(pr.p);
    cr_assert_not_null(pr.f);
    return pr;
}

static void release(struct promised *pr)
{
    future_free(pr->f);
    promise_free(pr->p);
}

Test(promise, a_new_promise_has_a_pending_future)
{
    struct promised pr = make();
    cr_assert_eq(future_state(pr.f), FUTURE_PENDING);
    cr_assert_not(future_done(pr.f));
    cr_assert_null(future_error(pr.f));
    release(&pr);
}

Test(promise, future_of_null_returns_einval)
{
    errno = 0;
    cr_assert_null(promise_future(NULL));
    cr_assert_eq(errno, EINVAL);
}

Test(promise, complete_and_fail_on_null_return_einval)
{
    cr_assert_eq(promise_complete(NULL, NULL), EINVAL);
    cr_assert_eq(promise_fail(NULL, EIO, "x"), EINVAL);
}

Test(promise, free_of_null_is_a_no_op)
{
    promise_free(NULL);
}

Test(promise, complete_delivers_the_value)
{
    struct promised pr = make();
    int x;
    void *r = NULL;
    cr_assert_eq(promise_complete(pr.p, &x), 0);
    cr_assert_eq(future_state(pr.f), FUTURE_SUCCEEDED);
    cr_assert(future_done(pr.f));
    cr_assert_eq(future_get(pr.f, &r), 0);
    cr_assert_eq(r, &x);
    cr_assert_null(future_error(pr.f));
    release(&pr);
}

Test(promise, complete_twice_returns_ealready_and_keeps_the_first_value)
{
    struct promised pr = make();
    int x, y;
    void *r = NULL;
    cr_assert_eq(promise_complete(pr.p, &x), 0);
    cr_assert_eq(promise_complete(pr.p, &y), EALREADY);
    cr_assert_eq(promise_fail(pr.p, EIO, "late"), EALREADY);
    cr_assert_eq(future_get(pr.f, &r), 0);
    cr_assert_eq(r, &x);
    release(&pr);
}

Test(promise, fail_sets_the_code_and_the_formatted_message)
{
    struct promised pr = make();
    void *r = &r;
    cr_assert_eq(promise_fail(pr.p, ECONNRESET, "peer %s reset after %d bytes", "db", 17), 0);
    cr_assert_eq(future_state(pr.f), FUTURE_FAILED);
    cr_assert(future_done(pr.f));
    cr_assert_eq(future_get(pr.f, &r), ECONNRESET);
    cr_assert_eq(r, &r);
    cr_assert_str_eq(future_error(pr.f), "peer db reset after 17 bytes");
    cr_assert_eq(promise_complete(pr.p, NULL), EALREADY);
    cr_assert_eq(promise_fail(pr.p, EIO, NULL), EALREADY);
    release(&pr);
}

Test(promise, fail_with_err_zero_or_negative_becomes_eio)
{
    struct promised a = make(), b = make();
    cr_assert_eq(promise_fail(a.p, 0, "zero"), 0);
    cr_assert_eq(promise_fail(b.p, -1, "negative"), 0);
    cr_assert_eq(future_get(a.f, NULL), EIO);
    cr_assert_eq(future_get(b.f, NULL), EIO);
    release(&a);
    release(&b);
}

Test(promise, fail_with_null_fmt_has_an_empty_message)
{
    struct promised pr = make();
    cr_assert_eq(promise_fail(pr.p, EIO, NULL), 0);
    cr_assert_not_null(future_error(pr.f));
    cr_assert_str_eq(future_error(pr.f), "");
    release(&pr);
}

Test(promise, free_unfulfilled_breaks_the_promise_with_epipe)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    void *r = &r;
    promise_free(p);
    cr_assert_eq(future_state(f), FUTURE_FAILED);
    cr_assert(future_done(f));
    cr_assert_eq(future_get(f, &r), EPIPE);
    cr_assert_eq(r, &r);
    cr_assert_str_eq(future_error(f), "broken promise");
    future_free(f);
}

Test(promise, free_after_complete_keeps_the_value)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    int x;
    void *r = NULL;
    cr_assert_eq(promise_complete(p, &x), 0);
    promise_free(p);
    cr_assert_eq(future_get(f, &r), 0);
    cr_assert_eq(r, &x);
    future_free(f);
}

Test(promise, free_after_fail_keeps_the_failure)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    cr_assert_eq(promise_fail(p, ENOSPC, "full"), 0);
    promise_free(p);
    cr_assert_eq(future_get(f, NULL), ENOSPC);
    cr_assert_str_eq(future_error(f), "full");
    future_free(f);
}

Test(promise, every_future_handle_is_its_own_and_sees_the_same_outcome)
{
    promise_t *p = promise_make();
    future_t *a = promise_future(p);
    future_t *b = promise_future(p);
    int x;
    void *r = NULL;
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    future_free(a);
    cr_assert_eq(promise_complete(p, &x), 0);
    cr_assert_eq(future_get(b, &r), 0);
    cr_assert_eq(r, &x);
    future_t *c = promise_future(p);
    cr_assert_eq(future_get(c, &r), 0);
    cr_assert_eq(r, &x);
    future_free(b);
    future_free(c);
    promise_free(p);
}

Test(promise, the_message_lives_as_long_as_any_handle)
{
    promise_t *p = promise_make();
    future_t *a = promise_future(p);
    future_t *b = promise_future(p);
    cr_assert_eq(promise_fail(p, EIO, "still %s", "here"), 0);
    promise_free(p);
    const char *msg = future_error(b);
    future_free(a);
    cr_assert_str_eq(msg, "still here");
    cr_assert_str_eq(future_error(b), "still here");
    future_free(b);
}

Test(promise, the_promise_may_outlive_every_handle)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    future_free(f);
    cr_assert_eq(promise_complete(p, NULL), 0);
    promise_free(p);
    p = promise_make();
    future_free(promise_future(p));
    promise_free(p);       /* broken, and nobody listens */
}

Test(promise, cancel_of_its_future_returns_0_and_later_completions_return_ealready)
{
    struct promised pr = make();
    void *r = &r;
    cr_assert_eq(future_cancel(pr.f), 0);
    cr_assert_eq(future_state(pr.f), FUTURE_CANCELLED);
    cr_assert(future_done(pr.f));
    cr_assert_null(future_error(pr.f));
    cr_assert_eq(future_get(pr.f, &r), ECANCELED);
    cr_assert_eq(r, &r);
    cr_assert_eq(promise_complete(pr.p, NULL), EALREADY);
    cr_assert_eq(promise_fail(pr.p, EIO, "late"), EALREADY);
    cr_assert_eq(future_cancel(pr.f), EALREADY);
    release(&pr);
}

Test(promise, cancel_after_complete_returns_ealready)
{
    struct promised pr = make();
    cr_assert_eq(promise_complete(pr.p, NULL), 0);
    cr_assert_eq(future_cancel(pr.f), EALREADY);
    cr_assert_eq(future_state(pr.f), FUTURE_SUCCEEDED);
    release(&pr);
}

Test(promise, free_after_cancel_keeps_the_cancellation)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    cr_assert_eq(future_cancel(f), 0);
    promise_free(p);
    cr_assert_eq(future_state(f), FUTURE_CANCELLED);
    cr_assert_eq(future_get(f, NULL), ECANCELED);
    future_free(f);
}

struct later {
    promise_t *p;
    void      *value;
    int        rc;
};

static void *complete_later(void *arg)
{
    struct later *l = arg;
    l->rc = promise_complete(l->p, l->value);
    return NULL;
}

Test(promise, complete_from_another_thread_wakes_a_waiter)
{
    struct promised pr = make();
    int x;
    struct later l = { .p = pr.p, .value = &x, .rc = -1 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, complete_later, &l), 0);
    void *r = NULL;
    cr_assert_eq(future_get(pr.f, &r), 0);
    cr_assert_eq(r, &x);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(l.rc, 0);
    release(&pr);
}

struct task_completer {
    promise_t *p;
    int        rc;
};

static void *complete_in_task(void *arg)
{
    struct task_completer *c = arg;
    c->rc = promise_complete(c->p, arg);
    return NULL;
}

static void *wait_in_task(void *arg)
{
    void *r = NULL;
    int rc = future_get(arg, &r);
    return rc == 0 ? r : NULL;
}

Test(promise, a_task_waiting_on_a_promise_is_woken_by_another_task)
{
    async_pool_t *pool = tu_pool(2, 0, NULL);
    struct promised pr = make();
    struct task_completer c = { .p = pr.p, .rc = -1 };
    void *r = NULL;
    future_t *waiter = async_run_on(pool, wait_in_task, pr.f);
    future_t *completer = async_run_on(pool, complete_in_task, &c);
    cr_assert_eq(tu_get(waiter, &r), 0);
    cr_assert_eq(r, &c);
    cr_assert_eq(tu_get(completer, NULL), 0);
    cr_assert_eq(c.rc, 0);
    future_free(waiter);
    future_free(completer);
    release(&pr);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}
