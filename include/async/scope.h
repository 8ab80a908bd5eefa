/*
 * async/scope.h — scopes: structured concurrency and cancellation trees.
 *
 * A scope groups tasks (Trio's nursery, Kotlin's coroutineScope, Go's
 * errgroup with a context): async_scope_run starts a task in it, and
 * async_scope_close waits for every one of them and reports the first
 * failure. Cancelling a scope cancels each of its tasks as future_cancel
 * does: pending ones never run, running ones see async_cancelled() turn
 * true, and every blocking call of this library inside them returns
 * ECANCELED.
 *
 * A scope opened inside a task is that task's child: cancelling the task
 * (future_cancel, the cancellation of the scope it runs in, an ASYNC_CANCEL
 * shutdown of its pool) cancels the scope, and through the scopes its tasks
 * open in turn, the whole tree below. A scope opened inside a task already
 * cancelled starts cancelled. Tasks started with async_run are nobody's
 * children.
 *
 * A scope's deadline is served by one library thread for all scopes (no
 * thread per scope); at the deadline the scope is cancelled.
 *
 * A pool's ASYNC_CANCEL shutdown ends the scoped tasks that run on that pool
 * at once. A child scope on another pool than its parent's is cancelled when
 * the parent task reaches (or waits in) async_scope_close: the shutdown of
 * the parent's pool makes no future_cancel call that could reach it sooner.
 */
#ifndef ASYNC_SCOPE_H
#define ASYNC_SCOPE_H

#include <async/common.h>
#include <async/pool.h>
#include <async/future.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct async_scope async_scope_t;

#define ASYNC_SCOPE_FAIL_FAST 1u   /* the first failure cancels every other task */

/*
 * async_scope_open — a new scope whose tasks run on pool (NULL: the default
 *                  pool). Inside a task, the scope is that task's child
 *                  (see above); it starts cancelled if the task already is.
 *                  At deadline (an async_now() instant; ASYNC_FOREVER: none)
 *                  the scope is cancelled; a deadline already passed opens
 *                  it cancelled.
 *   Blocks:        no (the first use of the default pool creates it).
 *   Thread-safety: any thread, pool tasks included.
 *   Ownership:     the caller owns the scope and ends it with
 *                  async_scope_close, which frees it. A task that opens a
 *                  scope should close it before it returns.
 *   Returns:       the scope, or NULL with errno: EINVAL (flags other than
 *                  ASYNC_SCOPE_FAIL_FAST, or a deadline below -1); ENOMEM;
 *                  EAGAIN (the deadline thread could not be started, or the
 *                  default pool could not be created).
 */
ASYNC_API async_scope_t *async_scope_open(async_pool_t *pool, unsigned flags,
                                          int64_t deadline);

/*
 * async_scope_run — run fn(arg) as a task of scope s, on the scope's pool.
 *   Blocks:        no.
 *   Thread-safety: any thread, the scope's own tasks included, also while
 *                  async_scope_close waits; not after async_scope_close
 *                  returned (the scope is gone).
 *   Ownership:     arg stays the caller's and must stay valid until fn is
 *                  done with it. The returned handle is the caller's, ended
 *                  with future_free — at once if the caller does not need it:
 *                  the scope keeps a reference of its own.
 *   Returns:       the future, or NULL with errno: EINVAL (s or fn NULL);
 *                  ECANCELED (the scope is cancelled or closed, or its pool
 *                  shuts down and does not accept the task); ENOMEM.
 */
ASYNC_API future_t *async_scope_run(async_scope_t *s, async_fn fn, void *arg);

/*
 * async_scope_submit — as async_scope_run, with arg_size > 0 bytes at arg
 *                  copied into the task (fn receives a pointer to the copy,
 *                  valid until fn returns), as async_submit does.
 *   Blocks:        no.
 *   Thread-safety: as async_scope_run.
 *   Ownership:     as async_scope_run; the bytes at arg are copied before the
 *                  call returns.
 *   Returns:       as async_scope_run; EINVAL also for arg NULL with
 *                  arg_size > 0.
 */
ASYNC_API future_t *async_scope_submit(async_scope_t *s, async_fn fn, const void *arg,
                                       size_t arg_size);

/*
 * async_scope_cancel — cancel scope s: no new task is accepted, and every
 *                  task of it is cancelled as by future_cancel, with the
 *                  scopes those tasks opened, down the whole tree.
 *   Blocks:        no (it does not wait for the tasks to end:
 *                  async_scope_close does).
 *   Thread-safety: any thread, the scope's own tasks included; not after
 *                  async_scope_close returned.
 *   Ownership:     the scope stays the caller's.
 *   Returns:       0; EALREADY (already cancelled: by a call, its deadline,
 *                  its parent, or a failure under ASYNC_SCOPE_FAIL_FAST);
 *                  EINVAL (s NULL).
 */
ASYNC_API int async_scope_cancel(async_scope_t *s);

/*
 * async_scope_close — wait for every task of scope s, then free it. While it
 *                  waits the scope's own tasks may still add tasks to it.
 *   Blocks:        yes, without a deadline, even once the scope or the
 *                  caller is cancelled (a cancelled scope's tasks end soon
 *                  if they heed async_cancelled). Inside a task it parks
 *                  like future_get; when the scope runs on the caller's own
 *                  pool (or the caller is no task) it may run a task of the
 *                  scope that has not started, so it never deadlocks the
 *                  pool (one thread included).
 *   Thread-safety: one call per scope, from any thread except the scope's
 *                  own tasks (they would wait for themselves).
 *   Ownership:     frees s; the handles async_scope_run returned stay valid
 *                  until their owners free them.
 *   Returns:       0 when every task succeeded; else the code of the first
 *                  task that failed (panicked), in the order they failed;
 *                  else ECANCELED when the scope (or one of its tasks) was
 *                  cancelled; EINVAL (s NULL, and nothing is freed); EDEADLK
 *                  (called from one of the scope's own tasks; nothing is
 *                  freed).
 */
ASYNC_API int async_scope_close(async_scope_t *s);

#ifdef __cplusplus
}
#endif

#endif /* ASYNC_SCOPE_H */
