/*
 * test/test_unread.c — unread failures (API.md: Seeing inside): a FAILED
 * future whose outcome nobody read logs one line once its last handle is
 * freed (Python's "Task exception was never retrieved"), naming the pool,
 * the task's id (the future's address) and function, and the message; a
 * failure read by future_get or future_error logs nothing.
 *
 * Built with export_dynamic, so that the dynamic linker knows this file's
 * task functions by name.
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define UNREAD "outcome was never read"

void *unread_boom(void *arg);
void *unread_boom(void *arg)
{
    tu_gate_t *g = arg;
    if (g && !tu_gate_wait(g))
        return NULL;
    async_panic(EDOM, "boom-%d", 17);
}

static void id_of(const void *f, char *buf, size_t size)
{
    snprintf(buf, size, "task 0x%" PRIxPTR " ", (uintptr_t)f);
}

/* A failed task, done, freed without reading it: one line. */
Test(unread, an_unread_task_failure_logs_one_line_naming_pool_task_and_message)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = tu_pool(1, 0, &log);
    future_t *f = async_run_on(pool, unread_boom, NULL);
    cr_assert_not_null(f);
    cr_assert_eq(future_wait_all(&f, 1, tu_deadline()), 0);   /* waits, reads nothing */
    char id[64];
    id_of(f, id, sizeof id);
    cr_assert_eq(tu_log_matching(&log, UNREAD), 0, "logged before the handle went");
    future_free(f);
    /* The worker may still hold the queue's reference for a moment: the
     * line comes with the last drop, which destroy waits for. */
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    cr_assert_eq(tu_log_matching(&log, UNREAD), 1);
    char line[512];
    cr_assert(tu_log_find_prefix(&log, "pool test task", line, sizeof line));
    cr_expect(strstr(line, id), "no id \"%s\" in \"%s\"", id, line);
    cr_expect(strstr(line, " fn unread_boom:"), "no function in \"%s\"", line);
    cr_expect(strstr(line, "boom-17"), "no message in \"%s\"", line);
    tu_log_fini(&log);
}

static void read_then_free(int how)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = tu_pool(1, 0, &log);
    future_t *f = async_run_on(pool, unread_boom, NULL);
    cr_assert_not_null(f);
    cr_assert_eq(future_wait_all(&f, 1, tu_deadline()), 0);
    if (how == 0)
        cr_assert_eq(future_get(f, NULL), EDOM);
    else if (how == 1)
        cr_assert_eq(future_get_until(f, NULL, 0), EDOM);
    else
        cr_assert_str_eq(future_error(f), "boom-17");
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    cr_expect_eq(tu_log_matching(&log, UNREAD), 0, "read by way %d", how);
    cr_expect_eq(tu_log_matching(&log, "boom-17"), 1, "the panic line");
    tu_log_fini(&log);
}

Test(unread, a_failure_read_by_get_or_error_logs_nothing)
{
    read_then_free(0);
    read_then_free(1);
    read_then_free(2);
}

/* The handle goes first (a detached task), the failure later: the line
 * comes when the pool drops its own reference. */
Test(unread, a_detached_task_that_fails_later_logs_one_line)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = tu_pool(1, 0, &log);
    tu_gate_t g = { 0 };
    future_t *f = async_run_on(pool, unread_boom, &g);
    cr_assert_not_null(f);
    future_free(f);
    tu_gate_open(&g);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    cr_expect_eq(tu_log_matching(&log, UNREAD), 1);
    tu_log_fini(&log);
}

Test(unread, successes_and_cancellations_log_nothing)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = tu_pool(1, 0, &log);
    future_t *ok = async_run_on(pool, tu_task_noop, NULL);
    cr_assert_not_null(ok);
    cr_assert_eq(future_wait_all(&ok, 1, tu_deadline()), 0);
    future_free(ok);
    promise_t *p = promise_make();
    future_t *c = promise_future(p);
    cr_assert_eq(future_cancel(c), 0);
    future_free(c);
    promise_free(p);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    cr_expect_eq(atomic_load(&log.count), 0);
    tu_log_fini(&log);
}

/* ------------------------------------------------- stderr: promises */

struct capture { int saved; FILE *tmp; };

static void capture_begin(struct capture *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    cr_assert_not_null(c->tmp);
    c->saved = dup(2);
    cr_assert_geq(c->saved, 0);
    cr_assert_geq(dup2(fileno(c->tmp), 2), 0);
}

/* What was written to stderr since capture_begin, in buf. */
static void capture_end(struct capture *c, char *buf, size_t size)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    rewind(c->tmp);
    size_t n = fread(buf, 1, size - 1, c->tmp);
    buf[n] = '\0';
    fclose(c->tmp);
}

static unsigned count(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

Test(unread, an_unread_promise_failure_goes_to_stderr_once)
{
    struct capture cap;
    char out[4096], id[64];
    capture_begin(&cap);
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    snprintf(id, sizeof id, "promise 0x%" PRIxPTR " ", (uintptr_t)f);
    cr_assert_eq(promise_fail(p, EPROTO, "bad reply %d", 9), 0);
    future_free(f);
    promise_free(p);
    /* read: nothing */
    promise_t *q = promise_make();
    future_t *g = promise_future(q);
    cr_assert_eq(promise_fail(q, EPROTO, "read reply"), 0);
    cr_assert_eq(future_get(g, NULL), EPROTO);
    promise_free(q);
    future_free(g);
    capture_end(&cap, out, sizeof out);
    cr_expect_eq(count(out, UNREAD), 1, "stderr: %s", out);
    cr_expect(strstr(out, id) && strstr(out, "bad reply 9"), "stderr: %s", out);
    cr_expect_eq(count(out, "read reply"), 0, "stderr: %s", out);
}

Test(unread, a_broken_promise_nobody_read_is_reported)
{
    struct capture cap;
    char out[4096];
    capture_begin(&cap);
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    promise_free(p);   /* broken */
    future_free(f);
    capture_end(&cap, out, sizeof out);
    cr_expect_eq(count(out, UNREAD), 1, "stderr: %s", out);
    cr_expect(strstr(out, "broken promise"), "stderr: %s", out);
}

/* The last handle freed after its pool was destroyed: the pool's hook is
 * not called any more (the pool is gone), the line goes to stderr. */
Test(unread, a_failure_freed_after_its_pool_was_destroyed_goes_to_stderr)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = tu_pool(1, 0, &log);
    future_t *f = async_run_on(pool, unread_boom, NULL);
    cr_assert_not_null(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    unsigned before = atomic_load(&log.count);
    struct capture cap;
    char out[4096];
    capture_begin(&cap);
    future_free(f);
    capture_end(&cap, out, sizeof out);
    cr_expect_eq(atomic_load(&log.count), before);
    cr_expect_eq(count(out, UNREAD), 1, "stderr: %s", out);
    cr_expect(strstr(out, "pool (destroyed)"), "stderr: %s", out);
    tu_log_fini(&log);
}
