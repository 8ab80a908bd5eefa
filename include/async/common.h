/*
 * async/common.h — conventions shared by every libasync header.
 *
 * Errors are int return values taken from <errno.h>; 0 is success. Functions
 * that return a pointer return NULL and set errno on failure.
 *
 *   EINVAL     bad argument (NULL handle, NULL function, impossible size);
 *              argument errors are reported before any other outcome
 *   ENOMEM     out of memory; nothing leaked, nothing half done
 *   ETIMEDOUT  a finite deadline passed
 *   EAGAIN     deadline 0 (poll) and the operation would block
 *   ECANCELED  the task was cancelled, or its pool shut down before it ran
 *   EPIPE      a closed channel, or a promise freed unfulfilled
 *   EALREADY   completing something already complete
 *   EBUSY      cancelling a task that is already running
 *   EDEADLK    destroying a pool from one of its own tasks
 *
 * Time is int64_t nanoseconds on CLOCK_MONOTONIC. Every blocking call has an
 * _until form that takes an absolute deadline: ASYNC_FOREVER (-1) waits
 * forever, 0 never blocks, any other value is an async_now() instant. A
 * deadline below -1 is EINVAL.
 */
#ifndef ASYNC_COMMON_H
#define ASYNC_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  define ASYNC_API
#elif defined(__GNUC__)
#  define ASYNC_API __attribute__((visibility("default")))
#else
#  define ASYNC_API
#endif

#if defined(__GNUC__)
#  define ASYNC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#  define ASYNC_PRINTF(f, a)
#endif

/* GNU's attribute works in C99 and C++ and after ASYNC_API, where C++'s
 * [[noreturn]] may not stand; _Noreturn is C11 only (and obsolescent in C23). */
#if defined(__GNUC__)
#  define ASYNC_NORETURN __attribute__((noreturn))
#elif defined(__cplusplus)
#  define ASYNC_NORETURN [[noreturn]]
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#  define ASYNC_NORETURN _Noreturn
#else
#  define ASYNC_NORETURN
#endif

#define ASYNC_FOREVER     ((int64_t)-1)
#define ASYNC_MICROSECOND ((int64_t)1000)
#define ASYNC_MILLISECOND ((int64_t)1000000)
#define ASYNC_SECOND      ((int64_t)1000000000)

#endif /* ASYNC_COMMON_H */
