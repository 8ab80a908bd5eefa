/*
 * test/race.h — the race and stress scenarios of the core library.
 *
 * Each scenario is written once and run twice: small, by a Criterion test
 * (test_races.c), and large, by a plain program of the stress suite
 * (test/stress/), because Criterion aborts under ThreadSanitizer and the
 * sanitizer builds must still see every race. A scenario never asserts: it
 * records each check in a tally on the thread that called it, and its caller
 * decides what a failure means (a Criterion assertion, an exit status).
 * Threads and tasks inside a scenario only record what they saw; all checks
 * are made by the calling thread once they are done.
 */
#ifndef RACE_H
#define RACE_H

#include <async.h>

#include <stdbool.h>
#include <stddef.h>

struct tally {
    const char   *scenario;     /* set by tally_begin */
    unsigned long checks, failures;
    char          first[512];   /* the first failure's message */
    bool          verbose;      /* print notes and every failure (stress) */
};

void tally_init(struct tally *t, bool verbose);
void tally_begin(struct tally *t, const char *scenario);
/* Record one check; false (and the message kept) when it failed. */
bool tally_check(struct tally *t, bool ok, const char *fmt, ...) ASYNC_PRINTF(3, 4);
/* A line about what was checked (printed when verbose). */
void tally_note(struct tally *t, const char *fmt, ...) ASYNC_PRINTF(2, 3);

struct tu_log;   /* testutil.h */

/* For the scenario files (race.c, race_outside.c): a pool (or a thread-mode
 * pool) whose creation is a check; a destroy that must return 0. */
async_pool_t *race_pool(struct tally *t, unsigned threads, unsigned max, struct tu_log *log);
async_pool_t *race_thread_pool(struct tally *t, unsigned threads, unsigned max,
                               struct tu_log *log);
void          race_destroy_pool(struct tally *t, async_pool_t *pool, async_shutdown_t how);

/* fib(n) computed iteratively. */
long fib_expected(int n);

/* Many threads wait on one future (a task's, a promise's, a failing task's);
 * each sees the same outcome and a task runs exactly once even when several
 * waiters race to run it inline. */
void race_many_getters(struct tally *t, unsigned rounds, unsigned getters);

/* Threads outside a pool submit tasks and wait for them at once, cancel
 * some, and burst others, through the pool's outside slot and injection
 * queue at once (race_outside.c): each task runs once, or never when its
 * cancel returned 0. Both modes. */
void race_outside_slot(struct tally *t, unsigned rounds);

/* Threads outside a pool play ping-pong over channels with tasks of their
 * own, which they may run themselves while they wait (race_host.c), while
 * another wakes tasks without waiting; then again with the pool cancelled
 * midway: every answer right and in order, every fed value received. Both
 * modes. */
void race_outside_fibers(struct tally *t, unsigned rounds);

/* future_cancel racing a task's start, by a worker and by a waiter running it
 * inline: either cancel returns 0 and the task never runs, or EBUSY/EALREADY
 * and it ran once. */
void race_cancel_vs_start(struct tally *t, unsigned rounds);

/* Promise completion racing promise_free, future_free, future_cancel,
 * promise_fail and waiters: exactly one outcome wins, everyone sees it. */
void race_promise_completion(struct tally *t, unsigned rounds);

/* future_free before, during and after the task, and racing its completion:
 * every task still runs exactly once; nothing leaks. */
void race_future_free(struct tally *t, unsigned rounds);

/* Destroy with thousands of tasks queued: DRAIN runs them all; CANCEL leaves
 * each succeeded or cancelled, counts adding up. */
void race_destroy_queued(struct tally *t, unsigned ntasks, unsigned threads,
                         async_shutdown_t how);

/* ASYNC_CANCEL ends tasks blocked forever: in future_get of a promise nobody
 * fulfils, future_wait_any, async_sleep, async_sleep_until(FOREVER). */
void race_cancel_blocked(struct tally *t, unsigned per_kind);

/* A drain while a fork/join is still splitting: its own submissions are
 * accepted and it completes with the right result; submissions from a
 * foreign thread get NULL/ECANCELED. */
void race_drain_forkjoin(struct tally *t, int fib_n);

/* Recursive fork/join with a task per call on a pool of `threads`. */
void race_forkjoin_fib(struct tally *t, unsigned threads, int fib_n);

/* Waits with deadlines inside tasks, racing the completion of what they wait
 * for: each returns the value, ETIMEDOUT after its deadline, or EAGAIN. */
void race_deadline_waits(struct tally *t, unsigned ntasks);

/* Thousands of tasks, every 7th panics: results, messages, LIFO defers on
 * both paths, log lines; the pool is healthy after. */
void race_panic_isolation(struct tally *t, unsigned ntasks);

/* A pool of one worker whose task blocks on a promise completed by a task
 * submitted later: a replacement runs it; chains of such waits. */
void race_blocked_replacement(struct tally *t, unsigned rounds, unsigned chain);

/* At max_threads with every worker blocked and work queued the pool logs
 * "saturated: N workers blocked, M tasks queued" once. */
void race_saturation(struct tally *t, unsigned rounds);

/* For n = 1, 2, ... until a run completes without the injected failure
 * firing: make the nth allocation fail and run a scenario that touches every
 * allocation site; every call succeeds or reports ENOMEM, nothing hangs,
 * nothing leaks (leaks: under valgrind or LeakSanitizer). `stride` > 1
 * samples every stride-th site (for very slow builds). */
void race_alloc_failure(struct tally *t, unsigned subtasks, long stride);

#endif /* RACE_H */
