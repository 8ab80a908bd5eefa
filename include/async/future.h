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
 *
 * Wait cycles: a task that waits for a future whose task, directly or through
 * a chain of waits (or of tasks run inline), waits for it, gets EDEADLK at
 * once instead of hanging; a task waiting for its own future too. When
 * several waits close one cycle at the same moment, at least one of them
 * gets EDEADLK. A chain that does not close, however long, never does.
 *
 * Unread failures: a FAILED future whose outcome nobody read (future_get or
 * future_get_until returning its code, future_error, a select on it,
 * future_then) logs one line when its last handle is freed, through its
 * pool's log hook (a promise's, or once the pool is destroyed: stderr),
 * naming the pool, the task's id (the record's address), its function and
 * the message — as Python's "Task exception was never retrieved".
 *
 * The checked build (-Dchecks; on in debug and sanitizer builds) aborts with
 * a message naming the call and the future on future_free twice and on any
 * call on a future whose record was freed (within a window of recent frees:
 * freed records are kept poisoned for a while before they are reused).
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
 *   Blocks:        no (the first use creates the default pool, see
 *                  async_default_pool).
 *   Thread-safety: any thread, pool tasks included; not concurrently with
 *                  async_shutdown (see there).
 *   Ownership:     arg stays the caller's and must stay valid until fn is
 *                  done with it; the returned handle is the caller's, ended
 *                  with future_free.
 *   Returns:       the future, or NULL with errno: EINVAL (fn NULL);
 *                  ENOMEM (no memory for the task); ECANCELED (the default
 *                  pool is shutting down); EAGAIN (the default pool could not
 *                  be created: no worker thread started).
 */
ASYNC_API future_t *async_run(async_fn fn, void *arg);

/*
 * async_run_on — run fn(arg) on pool (NULL: the default pool).
 *   Blocks:        no.
 *   Thread-safety: any thread, pool tasks included, until
 *                  async_pool_destroy(pool) has returned (the pool must not
 *                  be used after that).
 *   Ownership:     as async_run.
 *   Returns:       the future, or NULL with errno: EINVAL (fn NULL); ENOMEM;
 *                  ECANCELED (the pool is being destroyed: draining accepts
 *                  submissions only from its own tasks, cancelling from
 *                  none); EAGAIN (pool NULL and the default pool could not be
 *                  created).
 */
ASYNC_API future_t *async_run_on(async_pool_t *pool, async_fn fn, void *arg);

/*
 * async_submit — run fn on pool (NULL: the default pool) with a copy of
 *                  arg_size bytes of arg: a C closure.
 *   With arg_size > 0 the arg_size bytes at arg are copied into the task and
 *   fn receives a pointer to that copy (valid until fn returns, aligned for
 *   any type), so the caller may pass a struct on its stack. With arg_size 0
 *   it is async_run_on.
 *   Blocks:        no.
 *   Thread-safety: as async_run_on.
 *   Ownership:     arg is only read during the call; the copy belongs to the
 *                  task. The returned handle is the caller's (future_free).
 *   Returns:       the future, or NULL with errno: EINVAL (fn NULL, or arg
 *                  NULL with arg_size > 0); ENOMEM (no memory for the task,
 *                  including an arg_size that cannot be allocated);
 *                  ECANCELED (the pool is being destroyed); EAGAIN (pool NULL
 *                  and the default pool could not be created).
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
 *                  answers the same. The handle must stay valid for the whole
 *                  wait: future_free on it must not run concurrently.
 *   Ownership:     the value in *result is the task's return value; what it
 *                  points to is the program's business (the library never
 *                  frees it).
 *   Returns:       0 with the task's return value in *result (result may be
 *                  NULL); the failure code of a FAILED future (see
 *                  async_panic, promise_fail; EPIPE for a broken promise);
 *                  ECANCELED when the future was cancelled, or when the
 *                  calling task is cancelled while it waits; EDEADLK (the
 *                  calling task would wait for itself: f is its own future,
 *                  or f's task waits, directly or through a chain, for the
 *                  caller; returned at once); ENOMEM (this thread's first
 *                  wait found no memory for its parker); EINVAL (f NULL).
 *                  *result is untouched unless 0 is returned.
 */
ASYNC_API int future_get(future_t *f, void **result);

/*
 * future_get_until — future_get with a deadline (see async/common.h).
 *   Blocks:        until done or the deadline; with a finite deadline it only
 *                  waits, it never runs tasks, so it returns on time.
 *                  ASYNC_FOREVER behaves exactly as future_get.
 *   Thread-safety: as future_get.
 *   Ownership:     as future_get.
 *   Returns:       as future_get (EDEADLK included, at once, whatever the
 *                  deadline but 0), plus ETIMEDOUT (deadline passed), EAGAIN
 *                  (deadline 0 and not done), EINVAL (deadline below -1).
 */
ASYNC_API int future_get_until(future_t *f, void **result, int64_t deadline);

/*
 * future_state — the future's state now.
 *   Blocks:        no.
 *   Thread-safety: any thread, concurrently with the task, its waiters and
 *                  future_cancel; the answer may be stale at once, except
 *                  that a done state never changes.
 *   Returns:       FUTURE_PENDING, FUTURE_RUNNING, FUTURE_SUCCEEDED,
 *                  FUTURE_FAILED or FUTURE_CANCELLED; FUTURE_FAILED for NULL.
 *                  Never sets errno.
 */
ASYNC_API future_state_t future_state(const future_t *f);

/*
 * future_done — whether the future is done (SUCCEEDED, FAILED or CANCELLED).
 *   Blocks:        no.
 *   Thread-safety: as future_state; once true, it stays true.
 *   Returns:       true when done; false when pending or running, and for
 *                  NULL. Never sets errno.
 */
ASYNC_API bool future_done(const future_t *f);

/*
 * future_error — the failure message of a FAILED future.
 *   Blocks:        no.
 *   Thread-safety: any thread; the message is written once, before the
 *                  future turns FAILED, and never changes.
 *   Ownership:     the string belongs to the future and lives as long as any
 *                  handle to it; do not free it.
 *   Returns:       the message ("broken promise" for a promise freed
 *                  unfulfilled, "out of memory" when it could not be stored,
 *                  "" when the failure gave no format); NULL when the future
 *                  is not FAILED, and for NULL. Never sets errno.
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
 *   Blocks:        no; it does not wait for a running task to stop.
 *   Thread-safety: any thread (the task itself, a waiter, another task),
 *                  concurrently with completion, waiters and other cancels;
 *                  exactly one outcome wins. Not concurrently with
 *                  future_free of the same handle.
 *   Returns:       0 (cancelled before it ran, or a promise's future);
 *                  EBUSY (running: asked to stop); EALREADY (already done);
 *                  EINVAL (f NULL).
 */
ASYNC_API int future_cancel(future_t *f);

/*
 * future_free — drop the caller's handle.
 *   Never cancels: a task still queued or running goes on, detached, and its
 *   return value is dropped unseen.
 *   Blocks:        no.
 *   Thread-safety: not with other calls on the same handle: no thread may be
 *                  in future_get, future_cancel or any other call on it, or
 *                  call one afterwards. Threads that need the future beyond
 *                  the owner's free need handles of their own (for a promise,
 *                  promise_future gives one per call). It may be called the
 *                  moment the call that saw the future done (future_get,
 *                  wait_all/any, select) has returned, even while the
 *                  completer is still waking other waiters: the record is
 *                  reference-counted, and every completer (the task's runner,
 *                  promise_complete/fail/free, future_cancel) holds a
 *                  reference of its own until its last touch.
 *   Ownership:     ends the caller's handle; the task's memory is reclaimed
 *                  once every handle is freed and the task is done. NULL is a
 *                  no-op. A FAILED future whose outcome nobody read logs one
 *                  line as its last handle goes (see above). The checked
 *                  build aborts on a second future_free of the same handle.
 */
ASYNC_API void future_free(future_t *f);

/*
 * future_wait_all — wait until every future of fs[0..n) is done, whatever its
 *                  outcome.
 *   Blocks:        until all are done or the deadline; with ASYNC_FOREVER it
 *                  may run pending tasks inline, like future_get.
 *   Thread-safety: as future_get, for each future of fs; the same future may
 *                  appear more than once.
 *   Ownership:     fs and the handles stay the caller's; read the outcomes
 *                  with future_get or future_state afterwards.
 *   Returns:       0 when all are done (n == 0 included); ETIMEDOUT; EAGAIN
 *                  (deadline 0, some not done); ECANCELED (the calling task
 *                  was cancelled); EDEADLK (waiting for one of them would
 *                  close a wait cycle, as in future_get; the futures before
 *                  it are done); ENOMEM (this thread's first wait found no
 *                  memory for its parker); EINVAL (fs NULL with n > 0, a NULL entry,
 *                  a deadline below -1).
 */
ASYNC_API int future_wait_all(future_t *const *fs, size_t n, int64_t deadline);

/*
 * future_wait_any — wait until at least one future of fs[0..n) is done.
 *   index:         NULL, or receives the position of a done future (the lowest
 *                  when several are); written only when 0 is returned.
 *   Blocks:        until one is done or the deadline; never runs tasks inline.
 *   Thread-safety: as future_get, for each future of fs.
 *   Ownership:     fs and the handles stay the caller's.
 *   Returns:       0; ETIMEDOUT; EAGAIN; ECANCELED (calling task cancelled);
 *                  EDEADLK (every one of them would close a wait cycle, as
 *                  in future_get: the calling task's own future, or one
 *                  whose task waits for the caller; with several futures
 *                  this wait is not itself published, so a cycle closed
 *                  through it from the other side is not seen);
 *                  ENOMEM (more than a few futures, and no memory to wait on
 *                  them all); EINVAL (n == 0, fs NULL, a NULL entry, a deadline
 *                  below -1).
 */
ASYNC_API int future_wait_any(future_t *const *fs, size_t n, int64_t deadline,
                              size_t *index);

/*
 * async_after — a future that succeeds, with the value NULL, at a deadline
 *                  (Go's time.After).
 *   deadline:      an async_now() instant; ASYNC_FOREVER never fires; 0 or a
 *                  passed instant: already succeeded.
 *   Timers:        served by a pool's timers — the calling task's pool when
 *                  called in a task, else the default pool: its workers fire
 *                  due timers between tasks and sleep no longer than the
 *                  earliest when idle. No thread per timer: 100,000 pending
 *                  timers are 100,000 heap entries. A busy pool may fire
 *                  late, never early. If that pool is destroyed first, the
 *                  future is cancelled (ECANCELED).
 *   Blocks:        no.
 *   Thread-safety: any thread, pool tasks included.
 *   Ownership:     the handle is the caller's, ended with future_free.
 *                  future_cancel stops a pending timer (CANCELLED) and
 *                  releases its memory at once; so does future_free of an
 *                  unfired timer's last handle (nobody could read it).
 *   Returns:       the future, or NULL with errno: EINVAL (deadline below
 *                  -1), ENOMEM, ECANCELED (the serving pool is shutting down
 *                  and does not accept the caller), or why the default pool
 *                  could not be created.
 */
ASYNC_API future_t *async_after(int64_t deadline);

/*
 * future_then — a future for fn(arg, f), run as a task once f is done.
 *   fn:            called on a pool worker once f is done, in any outcome,
 *                  with done == f: a handle fn may read without blocking
 *                  (future_get returns at once) and must not free. Never run
 *                  inline by the thread that completes f; if f is already
 *                  done it is queued at once.
 *   Pool:          f's pool when f is a task that ran; the default pool when
 *                  f is a promise's future (async_after's included) or a
 *                  task cancelled before it ran (its pool may be shutting
 *                  down).
 *   Blocks:        no.
 *   Thread-safety: any thread; several continuations may hang on one f.
 *   Ownership:     f stays the caller's to free (at once, if it likes: the
 *                  continuation holds its own reference until it is done).
 *                  The returned handle is the caller's, ended with
 *                  future_free. Cancelling it before f is done means fn never
 *                  runs (CANCELLED); once it runs, cancelling it is as for
 *                  any running task (EBUSY, async_cancelled() in fn). A
 *                  waiter on it never runs it inline (it may not start
 *                  before f is done). If its pool refuses it (shutting
 *                  down), it is cancelled.
 *   Returns:       the future, or NULL with errno: EINVAL (f or fn NULL),
 *                  ENOMEM.
 */
ASYNC_API future_t *future_then(future_t *f, void *(*fn)(void *arg, future_t *done),
                                void *arg);

#ifdef __cplusplus
}
#endif

#endif /* ASYNC_FUTURE_H */
