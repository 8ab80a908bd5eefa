/*
 * async/promise.h — the writing end of a future, for results that come from
 * somewhere other than a pool task (a callback, an I/O thread, another
 * library).
 *
 * The promise and every future handle taken from it share one record: it is
 * reclaimed when the promise and all its handles have been freed.
 */
#ifndef ASYNC_PROMISE_H
#define ASYNC_PROMISE_H

#include <async/common.h>
#include <async/future.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct promise promise_t;

/*
 * promise_make — a new, unfulfilled promise.
 *   Returns: the promise, or NULL with errno ENOMEM.
 */
ASYNC_API promise_t *promise_make(void);

/*
 * promise_future — a handle on the promise's future. Each call returns a
 *                  handle of its own that must be future_free'd (handles may
 *                  compare equal: they are references to the same future).
 *   Returns: the handle, or NULL with errno EINVAL (p NULL).
 */
ASYNC_API future_t *promise_future(promise_t *p);

/*
 * promise_complete — fulfil the promise with value: the future becomes
 *                  SUCCEEDED and its waiters wake with value.
 *   Blocks: no.  Thread-safety: any thread; exactly one completion wins.
 *   Returns: 0; EALREADY (already completed, failed or cancelled); EINVAL.
 */
ASYNC_API int promise_complete(promise_t *p, void *value);

/*
 * promise_fail — fail the promise: the future becomes FAILED with code err
 *                  (err <= 0 becomes EIO) and the formatted message (fmt NULL:
 *                  "").
 *   Returns: 0; EALREADY; ENOMEM (the message could not be stored: the future
 *            still fails, with the message "out of memory"); EINVAL.
 */
ASYNC_API int promise_fail(promise_t *p, int err, const char *fmt, ...) ASYNC_PRINTF(3, 4);

/*
 * promise_free — drop the promise. If it was never fulfilled its future fails
 *                  with EPIPE and the message "broken promise". NULL is a no-op.
 *   Blocks: no.
 */
ASYNC_API void promise_free(promise_t *p);

#ifdef __cplusplus
}
#endif

#endif /* ASYNC_PROMISE_H */
