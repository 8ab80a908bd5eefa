/*
 * async/time.h — the clock and sleeping.
 *
 * All times are int64_t nanoseconds on CLOCK_MONOTONIC; deadlines are absolute
 * instants of this clock (see async/common.h).
 */
#ifndef ASYNC_TIME_H
#define ASYNC_TIME_H

#include <async/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * async_now — the current CLOCK_MONOTONIC instant.
 *   Blocks:        no.
 *   Thread-safety: any thread.
 *   Returns:       nanoseconds since an unspecified origin; never negative.
 */
ASYNC_API int64_t async_now(void);

/*
 * async_sleep — sleep for ns nanoseconds, like Go's time.Sleep.
 *   Blocks:        yes, for ns (ns <= 0 returns at once; an ns so large that
 *                  now + ns overflows sleeps forever, as far as any program
 *                  can tell, until the deadline INT64_MAX). Inside a task the
 *                  worker counts as blocked, so the pool may start a
 *                  replacement; a cancellation request for the task (or an
 *                  ASYNC_CANCEL shutdown of its pool) ends the sleep early.
 *   Thread-safety: any thread. Signals never shorten the sleep.
 *   Returns:       nothing; async_sleep_until tells why it returned.
 */
ASYNC_API void async_sleep(int64_t ns);

/*
 * async_sleep_until — sleep until the absolute deadline.
 *   Blocks:        until deadline, or until the calling task is cancelled;
 *                  a deadline already passed returns at once. Inside a task
 *                  the worker counts as blocked, as in async_sleep.
 *   Thread-safety: any thread. Signals never shorten the sleep.
 *   Returns:       0 when the deadline was reached; ECANCELED when the
 *                  calling task was cancelled first; EINVAL for a deadline
 *                  below -1, or ASYNC_FOREVER outside a task (nothing could
 *                  ever end that sleep).
 */
ASYNC_API int async_sleep_until(int64_t deadline);

#ifdef __cplusplus
}
#endif

#endif /* ASYNC_TIME_H */
