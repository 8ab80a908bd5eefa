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
 * async_cancelled — true when the task running on this thread has been asked
 *                  to stop (future_cancel, or an ASYNC_CANCEL shutdown of its
 *                  pool); false outside a task.
 *   Blocks: no.
 */
ASYNC_API bool async_cancelled(void);

/*
 * async_defer — run fn(arg) when the calling task ends, by return or panic;
 *                  deferred functions run last-in first-out, before the future
 *                  completes. A deferred function may itself call async_panic:
 *                  its message replaces the task's, and the remaining deferred
 *                  functions still run.
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
 *   Never returns. Outside a task it prints the message on stderr and aborts,
 *   as an unrecovered panic does.
 */
ASYNC_API ASYNC_NORETURN void async_panic(int err, const char *fmt, ...) ASYNC_PRINTF(2, 3);

#ifdef __cplusplus
}
#endif

#endif /* ASYNC_TASK_H */
