/*
 * test/test_alloc.c — out of memory at every allocation site (API.md:
 * Conventions, ENOMEM: "nothing leaked, nothing half done"). The scenario is
 * race_alloc_failure (race.c), also run by the stress program stress_alloc,
 * which the sanitizer builds run; leaks are caught by the valgrind setup and
 * by LeakSanitizer.
 */
#include <criterion/criterion.h>

#include "internal.h"
#include "race.h"
#include "testutil.h"

Test(alloc, every_failed_allocation_is_reported_as_enomem_and_nothing_hangs)
{
    struct tally t;
    tally_init(&t, false);
    race_alloc_failure(&t, 320, 1);
    cr_assert_gt(t.checks, 0);
    cr_assert_eq(t.failures, 0, "%lu of %lu checks failed; first: %s", t.failures, t.checks,
                 t.first);
}

Test(alloc, the_hook_counts_allocations_and_fails_the_nth)
{
    async__test_fail_alloc(1);
    errno = 0;
    promise_t *p = promise_make();
    int err = errno;
    long count = async__test_alloc_count();
    async__test_fail_alloc(0);
    cr_assert_null(p);
    cr_assert_eq(err, ENOMEM);
    cr_assert_geq(count, 1);
    p = promise_make();
    cr_assert_not_null(p, "disarmed: allocations succeed again");
    promise_free(p);
}

Test(alloc, a_submission_that_cannot_allocate_returns_enomem_and_the_pool_goes_on)
{
    async_pool_t *pool = async_pool_create(&(async_pool_config_t){ .threads = 1 });
    cr_assert_not_null(pool);
    int x = 3;
    void *r = NULL;
    async__test_fail_alloc(1);
    errno = 0;
    future_t *f = async_submit(pool, tu_task_identity, &x, sizeof x);
    int err = errno;
    async__test_fail_alloc(0);
    cr_assert_null(f);
    cr_assert_eq(err, ENOMEM);
    f = async_run_on(pool, tu_task_identity, &x);
    cr_assert_not_null(f);
    cr_assert_eq(tu_get(f, &r), 0);
    cr_assert_eq(r, &x);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

Test(alloc, argument_errors_come_before_out_of_memory)
{
    async_pool_t *pool = async_pool_create(&(async_pool_config_t){ .threads = 1 });
    cr_assert_not_null(pool);
    async__test_fail_alloc(1);
    errno = 0;
    future_t *f = async_submit(pool, NULL, NULL, 0);
    int err = errno;
    async__test_fail_alloc(0);
    cr_assert_null(f);
    cr_assert_eq(err, EINVAL);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}
