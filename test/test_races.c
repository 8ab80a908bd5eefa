/*
 * test/test_races.c — the race scenarios of race.c at unit-test size. The
 * same scenarios run large in the stress suite (test/stress/), which is what
 * the ThreadSanitizer build runs: Criterion aborts under TSan.
 */
#include <criterion/criterion.h>

#include "race.h"

#define EXPECT_CLEAN(t)                                                       \
    do {                                                                      \
        cr_assert_gt((t).checks, 0, "nothing was checked");                   \
        cr_assert_eq((t).failures, 0, "%lu of %lu checks failed; first: %s",  \
                     (t).failures, (t).checks, (t).first);                    \
    } while (0)

Test(race, many_threads_waiting_on_one_future_see_the_same_outcome)
{
    struct tally t;
    tally_init(&t, false);
    race_many_getters(&t, 60, 4);
    EXPECT_CLEAN(t);
}

Test(race, outside_threads_submitting_and_waiting_at_once_run_each_task_once)
{
    struct tally t;
    tally_init(&t, false);
    race_outside_slot(&t, 2000);
    EXPECT_CLEAN(t);
}

Test(race, outside_threads_playing_pingpong_with_tasks_get_every_answer)
{
    struct tally t;
    tally_init(&t, false);
    race_outside_fibers(&t, 3000);
    EXPECT_CLEAN(t);
}

Test(race, cancel_racing_the_start_either_cancels_or_lets_it_run_once)
{
    struct tally t;
    tally_init(&t, false);
    race_cancel_vs_start(&t, 1000);
    EXPECT_CLEAN(t);
}

Test(race, promise_completion_racing_free_cancel_fail_and_waiters_has_one_outcome)
{
    struct tally t;
    tally_init(&t, false);
    race_promise_completion(&t, 600);
    EXPECT_CLEAN(t);
}

Test(race, future_free_before_during_and_after_the_task_lets_it_run_once)
{
    struct tally t;
    tally_init(&t, false);
    race_future_free(&t, 400);
    EXPECT_CLEAN(t);
}

Test(race, destroy_drain_with_thousands_queued_runs_them_all)
{
    struct tally t;
    tally_init(&t, false);
    race_destroy_queued(&t, 3000, 1, ASYNC_DRAIN);
    race_destroy_queued(&t, 3000, 2, ASYNC_DRAIN);
    EXPECT_CLEAN(t);
}

Test(race, destroy_cancel_with_thousands_queued_leaves_each_succeeded_or_cancelled)
{
    struct tally t;
    tally_init(&t, false);
    race_destroy_queued(&t, 3000, 1, ASYNC_CANCEL);
    race_destroy_queued(&t, 3000, 2, ASYNC_CANCEL);
    EXPECT_CLEAN(t);
}

Test(race, destroy_cancel_ends_tasks_blocked_forever)
{
    struct tally t;
    tally_init(&t, false);
    race_cancel_blocked(&t, 3);
    EXPECT_CLEAN(t);
}

Test(race, a_drain_lets_a_splitting_fork_join_finish_and_refuses_foreign_submissions)
{
    struct tally t;
    tally_init(&t, false);
    race_drain_forkjoin(&t, 15);
    EXPECT_CLEAN(t);
}

Test(race, fork_join_with_a_task_per_call_completes_on_one_worker)
{
    struct tally t;
    tally_init(&t, false);
    race_forkjoin_fib(&t, 1, 20);
    EXPECT_CLEAN(t);
}

Test(race, fork_join_with_a_task_per_call_completes_on_two_workers)
{
    struct tally t;
    tally_init(&t, false);
    race_forkjoin_fib(&t, 2, 20);
    EXPECT_CLEAN(t);
}

Test(race, waits_with_deadlines_inside_tasks_return_the_value_or_time_out)
{
    struct tally t;
    tally_init(&t, false);
    race_deadline_waits(&t, 300);
    EXPECT_CLEAN(t);
}

Test(race, panics_are_isolated_and_run_defers_lifo)
{
    struct tally t;
    tally_init(&t, false);
    race_panic_isolation(&t, 1000);
    EXPECT_CLEAN(t);
}

Test(race, a_blocked_worker_is_replaced_so_the_task_it_waits_for_runs)
{
    struct tally t;
    tally_init(&t, false);
    race_blocked_replacement(&t, 6, 4);
    EXPECT_CLEAN(t);
}

Test(race, saturation_at_max_threads_is_logged_once)
{
    struct tally t;
    tally_init(&t, false);
    race_saturation(&t, 3);
    EXPECT_CLEAN(t);
}
