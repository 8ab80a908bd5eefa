/*
 * async.h — libasync: Go's goroutines and channels and Java's FutureTask in C.
 *
 *   async_run(fn, arg) hands a closure to a thread pool and returns a future,
 *   a one-shot channel the task writes once; future_get() waits for it.
 *   On top: promises, cancellation, deadlines, Go-style panic/defer isolation
 *   inside tasks, and Go's channels with select.
 *
 * Per-concept headers:
 *   async/common.h   error conventions, ASYNC_FOREVER and time units
 *   async/time.h     async_now, async_sleep
 *   async/pool.h     pools, shutdown, statistics
 *   async/future.h   tasks and futures
 *   async/task.h     inside a task: cancellation, defer, panic
 *   async/promise.h  promises
 *   async/chan.h     channels and select
 *   async/scope.h    scopes: task groups and cancellation trees
 *   async/version.h  ASYNC_VERSION and async_version
 */
#ifndef ASYNC_H
#define ASYNC_H

#include <async/common.h>
#include <async/time.h>
#include <async/pool.h>
#include <async/future.h>
#include <async/task.h>
#include <async/promise.h>
#include <async/chan.h>
#include <async/scope.h>
#include <async/version.h>

#endif /* ASYNC_H */
