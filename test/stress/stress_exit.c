/*
 * test/stress/stress_exit.c — a program may return from main with tasks in
 * flight, as in Go: the default pool adds no exit-time wait. Tasks sleeping
 * for an hour, blocked forever on a promise, and queued behind them are left
 * running; main returns at once. A hang here is a failure (the suite's
 * timeout), and so is anything the sanitizers find at exit.
 *
 * Prints what it checked and "N passed, M failed".
 */
#include "stressmain.h"
#include "testutil.h"

#include <stdio.h>

static void *sleep_an_hour(void *arg)
{
    atomic_fetch_add((atomic_uint *)arg, 1);
    async_sleep(3600 * ASYNC_SECOND);
    return NULL;
}

static void *wait_forever(void *arg)
{
    future_get(arg, NULL);
    return NULL;
}

int main(void)
{
    struct tally t;
    tally_init(&t, true);
    tally_begin(&t, "exit_with_tasks_in_flight");
    static atomic_uint started;
    static promise_t *never;
    never = promise_make();
    future_t *on = promise_future(never);
    unsigned submitted = 0;
    for (int i = 0; i < 4; i++) {
        future_t *a = async_run(sleep_an_hour, &started);
        future_t *b = async_run(wait_forever, on);
        future_t *c = async_run(tu_task_noop, NULL);
        tally_check(&t, a && b && c, "async_run failed");
        submitted += (a != NULL) + (b != NULL) + (c != NULL);
        future_free(a);
        future_free(b);
        future_free(c);
    }
    tally_check(&t, tu_wait_count(&started, 1), "no task started");
    tally_note(&t, "returning from main with %u tasks submitted, sleeping and blocked ones "
               "still in flight", submitted);
    return stress_finish(&t);
}
