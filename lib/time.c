/*
 * lib/time.c — the clock: async_now, and deadlines turned into timespecs.
 *
 * Owns nothing shared. All library time is int64_t nanoseconds on
 * CLOCK_MONOTONIC; ASYNC_FOREVER (-1) means no deadline, 0 means "poll".
 * Sleeping lives in park.c, next to the one wait loop it uses.
 */
#include "internal.h"

int64_t async_now(void)
{
    struct timespec ts;
    ASYNC_CHECK(clock_gettime(CLOCK_MONOTONIC, &ts));
    return (int64_t)ts.tv_sec * ASYNC_SECOND + ts.tv_nsec;
}

struct timespec async__timespec(int64_t ns)
{
    struct timespec ts;
    if (ns < 0)
        ns = 0;
    ts.tv_sec = (time_t)(ns / ASYNC_SECOND);
    ts.tv_nsec = (long)(ns % ASYNC_SECOND);
    return ts;
}

int64_t async__now_coarse(void)
{
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
#endif
        ASYNC_CHECK(clock_gettime(CLOCK_MONOTONIC, &ts));
    return (int64_t)ts.tv_sec * ASYNC_SECOND + ts.tv_nsec;
}
