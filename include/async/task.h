/*
 * async/task.h — what a task can do while it runs: watch for cancellation,
 * register deferred functions, panic.
 *
 * async_panic is Go's panic with the pool as the recover of the seed's
 * safelyDo: it unwinds the running task to the thread that runs it, runs the
 * functions registered with async_defer last-in first-out, logs one line
 * through the pool's log hook, and completes the future as FAILED; the worker
 * goes on with its next task, and other tasks never notice. Deferred
 * functions also run, LIFO, when the task returns normally, before its future
 * completes.
 *
 * Unwinding is a longjmp: it skips the C frames between the panic and the
 * task's entry without running anything in them, so resources those frames
 * hold must be released by deferred functions. A real crash inside a task
 * (SIGSEGV, abort) is not a panic and ends the process.
 */
#ifndef ASYNC_TASK_H
#define ASYNC_TASK_H

#include <async/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * async_cancelled — whether the task running on this thread has been asked
 *                  to stop (future_cancel, or an ASYNC_CANCEL shutdown of its
 *                  pool).
 *   Blocks:        no.
 *   Thread-safety: any thread; it answers for the calling thread's own task
 *                  (a task run inline by a waiter included).
 *   Returns:       true once cancellation is requested (it stays true); false
 *                  before, and outside a task. Never sets errno.
 */
ASYNC_API bool async_cancelled(void);

/*
 * async_defer — run fn(arg) when the calling task ends, by return or panic.
 *   Deferred functions run last-in first-out, on the task's thread, before
 *   the future completes. A deferred function may itself call async_panic:
 *   its message replaces the task's, and the remaining deferred functions
 *   still run.
 *   Blocks:        no.
 *   Thread-safety: only from inside a task, for that task (a plain thread
 *                  gets EINVAL).
 *   Ownership:     arg must outlive the task function: deferred functions
 *                  run after it has returned or been unwound, so arg must
 *                  not point into the task function's own stack frame.
 *   Returns:       0; EINVAL (fn NULL, or not inside a task); ENOMEM.
 */
ASYNC_API int async_defer(void (*fn)(void *), void *arg);

/*
 * async_yield — let the other runnable tasks of this pool run (Go's
 *                  runtime.Gosched): in a goroutine-mode task, the task goes
 *                  to the back of its pool's queue of runnable tasks and
 *                  resumes later, maybe on another thread; elsewhere (thread
 *                  mode, or outside a task) it is sched_yield().
 *   Blocks:        no longer than the tasks that run meanwhile.
 *   Thread-safety: any thread.
 */
ASYNC_API void async_yield(void);

/*
 * async_panic — fail the running task with code err (err <= 0 becomes EIO)
 *                  and the printf-style message (fmt NULL: "").
 *   The task unwinds to its entry (longjmp: nothing in the C frames between
 *   runs), its deferred functions run, the pool's log hook gets one line
 *   "panic in task NAME: MESSAGE (error ERR)", and the future becomes FAILED
 *   with err and the message (future_error). Outside a task it prints the
 *   message on stderr and aborts, as an unrecovered panic does.
 *   Blocks:        no; it never returns.
 *   Thread-safety: any thread; it acts on the calling thread's task only.
 *   Ownership:     the message is copied before unwinding.
 *   Returns:       never.
 */
ASYNC_API ASYNC_NORETURN void async_panic(int err, const char *fmt, ...) ASYNC_PRINTF(2, 3);

#ifdef __cplusplus
}
#endif

#endif /* ASYNC_TASK_H */
