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
 *   Blocks:        no.
 *   Thread-safety: any thread.
 *   Ownership:     the caller owns the promise and ends it with promise_free
 *                  (which breaks it if it is still unfulfilled).
 *   Returns:       the promise, or NULL with errno ENOMEM.
 */
ASYNC_API promise_t *promise_make(void);

/*
 * promise_future — a handle on the promise's future.
 *   Each call returns a handle of its own (handles may compare equal: they
 *   are references to the same future), so that each reader, on any thread,
 *   can free its handle when it is done without waiting for the others.
 *   Blocks:        no.
 *   Thread-safety: any thread, concurrently with completion and with the
 *                  use of other handles; not concurrently with or after
 *                  promise_free.
 *   Ownership:     the caller owns the handle and ends it with future_free,
 *                  before or after promise_free.
 *   Returns:       the handle, or NULL with errno EINVAL (p NULL).
 */
ASYNC_API future_t *promise_future(promise_t *p);

/*
 * promise_complete — fulfil the promise with value: the future becomes
 *                  SUCCEEDED and its waiters wake with value.
 *   Blocks:        no.
 *   Thread-safety: any thread; concurrent promise_complete, promise_fail and
 *                  future_cancel calls are settled so that exactly one wins.
 *                  Not concurrently with or after promise_free of the same
 *                  promise (it may free the record).
 *   Ownership:     value is handed to the future's readers as is; the
 *                  library never reads or frees it.
 *   Returns:       0; EALREADY (already completed, failed or cancelled: value
 *                  is not stored); EINVAL (p NULL).
 */
ASYNC_API int promise_complete(promise_t *p, void *value);

/*
 * promise_fail — fail the promise: the future becomes FAILED with code err
 *                  (err <= 0 becomes EIO) and the printf-style message (fmt
 *                  NULL: "").
 *   Blocks:        no.
 *   Thread-safety: as promise_complete.
 *   Ownership:     the message is copied; fmt and the arguments stay the
 *                  caller's. future_error returns the copy.
 *   Returns:       0; EALREADY (already completed, failed or cancelled:
 *                  nothing changes); ENOMEM (the message could not be stored:
 *                  the future still fails, with the message "out of
 *                  memory"); EINVAL (p NULL).
 */
ASYNC_API int promise_fail(promise_t *p, int err, const char *fmt, ...) ASYNC_PRINTF(3, 4);

/*
 * promise_free — drop the promise. If it was never fulfilled its future fails
 *                  with EPIPE and the message "broken promise".
 *   Blocks:        no.
 *   Thread-safety: the promise's last call: no thread may be completing or
 *                  failing it, or taking a handle with promise_future, at the
 *                  same time or afterwards. Readers of its future (future_get
 *                  on their own handles, future_cancel) may run concurrently:
 *                  they see either the completion or the broken promise.
 *                  It may be called as soon as this thread's
 *                  promise_complete or promise_fail has returned, while
 *                  waiters are still waking: the futures' handles keep the
 *                  shared record alive.
 *   Ownership:     ends the caller's ownership of the promise; the record is
 *                  reclaimed once every future handle is freed too. NULL is a
 *                  no-op. A failure (a broken promise included) that no one
 *                  read (future_get, future_error, ...) is reported on stderr
 *                  once the last handle is gone (see async/future.h). The
 *                  checked build (-Dchecks) aborts, naming the call and the
 *                  promise, on a second promise_free and on any promise call
 *                  after it.
 */
ASYNC_API void promise_free(promise_t *p);

#ifdef __cplusplus
}
#endif

#endif /* ASYNC_PROMISE_H */
