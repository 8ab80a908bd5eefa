/*
 * async/future.h — tasks and futures.
 *
 * A task is a closure — a function and its argument — submitted to a pool.
 * Submitting returns a future: a handle on a one-shot channel that the task
 * writes exactly once (its result, its failure, or its cancellation) and that
 * any number of threads may read any number of times.
 *
 * Waiting never deadlocks the pool: whoever waits without a deadline on a task
 * that has not started claims it and runs it inline; a task that waits on a
 * running task may run a pending task that the awaited task is itself waiting
 * for (directly or through a chain of such waits) and nothing else. A wait with
 * a finite deadline never runs other tasks. Fork/join with a task at every
 * call completes on a pool of any size, one thread included.
 *
 * Handles: the submitter owns one handle and ends it with future_free, which
 * never blocks and never cancels. The task's memory is reclaimed when the
 * handle is freed and the task is done. The value a task returns is the
 * caller's to free.
 */
#ifndef ASYNC_FUTURE_H
#define ASYNC_FUTURE_H

#include <async/common.h>
#include <async/pool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct future future_t;
typedef void *(*async_fn)(void *arg);   /* same shape as a pthread start routine */

typedef enum future_state {
    FUTURE_PENDING,    /* queued, not started */
    FUTURE_RUNNING,
    FUTURE_SUCCEEDED,
    FUTURE_FAILED,     /* panicked, or a promise failed or was broken */
    FUTURE_CANCELLED,
} future_state_t;

/*
 * async_run — run fn(arg) on the default pool.
 *   Blocks:        no.
 *   Ownership:     arg stays the caller's; the returned handle is the
 *                  caller's, ended with future_free.
 *   Returns:       the future, or NULL with errno: EINVAL (fn NULL), ENOMEM,
 *                  ECANCELED (the default pool is shutting down), or an error
 *                  of async_default_pool.
 */
ASYNC_API future_t *async_run(async_fn fn, void *arg);

/*
 * async_run_on — run fn(arg) on pool (NULL: the default pool).
 *   Returns:       as async_run; ECANCELED when the pool is being destroyed
 *                  (draining accepts submissions only from its own tasks).
 */
ASYNC_API future_t *async_run_on(async_pool_t *pool, async_fn fn, void *arg);

/*
 * async_submit — the general form: with arg_size > 0 the arg_size bytes at
 *                  arg are copied into the task and fn receives a pointer to
 *                  that copy (valid until fn returns, aligned for any type):
 *                  a C closure, so the caller may pass a struct on its stack.
 *                  arg_size 0: as async_run_on.
 *   Returns:       as async_run_on; EINVAL also for arg NULL with arg_size > 0,
 *                  ENOMEM for an arg_size that cannot be allocated.
 */
ASYNC_API future_t *async_submit(async_pool_t *pool, async_fn fn, const void *arg,
                                 size_t arg_size);

/*
 * future_get — wait for the future forever and read its outcome.
 *   Blocks:        until done. A task not yet started is claimed and run on
 *                  the calling thread; inside a task, pending tasks that the
 *                  awaited task waits for may be run; else the caller parks
 *                  (a worker then counts as blocked).
 *   Thread-safety: any number of threads, any number of times; every call
 *                  answers the same.
 *   Returns:       0 with the task's return value in *result (result may be
 *                  NULL); the failure code of a FAILED future (see
 *                  async_panic, promise_fail; EPIPE for a broken promise);
 *                  ECANCELED when the future was cancelled, or when the
 *                  calling task is cancelled while it waits; EINVAL (f NULL).
 *                  *result is untouched unless 0 is returned.
 */
ASYNC_API int future_get(future_t *f, void **result);

/*
 * future_get_until — future_get with a deadline (see async/common.h).
 *   Blocks:        until done or the deadline; with a finite deadline it only
 *                  waits, it never runs tasks, so it returns on time.
 *                  ASYNC_FOREVER behaves exactly as future_get.
 *   Returns:       as future_get, plus ETIMEDOUT (deadline passed), EAGAIN
 *                  (deadline 0 and not done), EINVAL (deadline below -1).
 */
ASYNC_API int future_get_until(future_t *f, void **result, int64_t deadline);

/*
 * future_state — the future's state now.
 *   Blocks: no. Returns FUTURE_FAILED for NULL.
 */
ASYNC_API future_state_t future_state(const future_t *f);

/* future_done — true when SUCCEEDED, FAILED or CANCELLED; false for NULL. */
ASYNC_API bool future_done(const future_t *f);

/*
 * future_error — the failure message of a FAILED future ("broken promise" for
 *                  a promise freed unfulfilled; "" when the failure gave no
 *                  format), NULL otherwise or for NULL. The string lives as
 *                  long as any handle to the future.
 */
ASYNC_API const char *future_error(const future_t *f);

/*
 * future_cancel — ask for the task's cancellation.
 *   A task that has not started never runs: its future becomes CANCELLED at
 *   once and every waiter gets ECANCELED. A running task is asked to stop:
 *   async_cancelled() turns true inside it and every blocking call of this
 *   library inside it, one already blocked included, returns ECANCELED; the
 *   future completes with whatever the task does. On a promise's future it
 *   completes the future as CANCELLED.
 *   Blocks:        no.
 *   Returns:       0 (cancelled before it ran, or a promise's future);
 *                  EBUSY (running: asked to stop); EALREADY (already done);
 *                  EINVAL (f NULL).
 */
ASYNC_API int future_cancel(future_t *f);

/*
 * future_free — drop the caller's handle. Never blocks, never cancels: a task
 *                  still queued or running goes on, detached. NULL is a no-op.
 *                  The handle must not be used afterwards.
 */
ASYNC_API void future_free(future_t *f);

/*
 * future_wait_all — wait until every future of fs[0..n) is done, whatever its
 *                  outcome.
 *   Blocks:        until all are done or the deadline; with ASYNC_FOREVER it
 *                  may run pending tasks inline, like future_get.
 *   Returns:       0 when all are done (n == 0 included); ETIMEDOUT; EAGAIN
 *                  (deadline 0, some not done); ECANCELED (the calling task
 *                  was cancelled); EINVAL (fs NULL with n > 0, a NULL entry,
 *                  a deadline below -1).
 */
ASYNC_API int future_wait_all(future_t *const *fs, size_t n, int64_t deadline);

/*
 * future_wait_any — wait until at least one future of fs[0..n) is done.
 *   index:         NULL, or receives the position of a done future (the lowest
 *                  when several are).
 *   Blocks:        until one is done or the deadline; never runs tasks inline.
 *   Returns:       0; ETIMEDOUT; EAGAIN; ECANCELED (calling task cancelled);
 *                  ENOMEM (more than a few futures, and no memory to wait on
 *                  them all); EINVAL (n == 0, fs NULL, a NULL entry, a deadline
 *                  below -1).
 */
ASYNC_API int future_wait_any(future_t *const *fs, size_t n, int64_t deadline,
                              size_t *index);

#ifdef __cplusplus
}
#endif

#endif /* ASYNC_FUTURE_H */
