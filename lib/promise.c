/*
 * lib/promise.c — the writing end of a future.
 *
 * Owns: promise_make/future/complete/fail/free and cancelling a promise's
 * future. A promise_t is the same record as its future_t (kind PROMISE), so a
 * promise costs one allocation whatever the number of handles: refs counts
 * the promise's own hold plus one per promise_future handle.
 *
 * Completing races (complete, fail, free, future_cancel, from any threads)
 * are settled by one CAS PENDING -> COMPLETING; the winner writes the outcome
 * and stores the final state (future.c), the losers answer EALREADY.
 * COMPLETING reads as PENDING from outside.
 */
#include "internal.h"

char async__broken_promise[] = "broken promise";

/* promise_t is never defined: a promise_t * is a struct future *. */
static inline struct future *rec(promise_t *p)
{
    return (struct future *)(void *)p;
}

/* The checked build's test of a promise handle (checks.c). */
static inline void check(promise_t *p, const char *call)
{
#if ASYNC_CHECKS
    struct future *f = (struct future *)(void *)p;
    if (f->magic != ASYNC_MAGIC_FUTURE || f->kind != ASYNC_KIND_PROMISE ||
        !atomic_load_explicit(&f->phold, memory_order_relaxed))
        async__misuse(call, "promise used after promise_free", p);
#else
    (void)p;
    (void)call;
#endif
}

static bool begin_completion(struct future *f)
{
    uint32_t s = ASYNC_S_PENDING;
    return atomic_compare_exchange_strong_explicit(&f->state, &s, ASYNC_S_COMPLETING,
            memory_order_acquire, memory_order_relaxed);
}

promise_t *promise_make(void)
{
    struct future *f = async__promise_new();
    if (!f) {
        errno = ENOMEM;
        return NULL;
    }
    atomic_store_explicit(&f->refs, 1, memory_order_relaxed);
#if ASYNC_CHECKS
    atomic_store_explicit(&f->handles, 0, memory_order_relaxed);
    atomic_store_explicit(&f->phold, 1, memory_order_relaxed);
#endif
    return (promise_t *)(void *)f;
}

future_t *promise_future(promise_t *p)
{
    if (!p) {
        errno = EINVAL;
        return NULL;
    }
    check(p, "promise_future");
#if ASYNC_CHECKS
    atomic_fetch_add_explicit(&rec(p)->handles, 1, memory_order_relaxed);
#endif
    async__record_retain(rec(p));
    return rec(p);
}

int promise_complete(promise_t *p, void *value)
{
    if (!p)
        return EINVAL;
    check(p, "promise_complete");
    if (!begin_completion(rec(p)))
        return EALREADY;
    async__future_complete(rec(p), ASYNC_S_SUCCEEDED, 0, value);
    return 0;
}

int promise_fail(promise_t *p, int err, const char *fmt, ...)
{
    if (!p)
        return EINVAL;
    check(p, "promise_fail");
    if (!begin_completion(rec(p)))
        return EALREADY;
    bool oom;
    va_list ap;
    va_start(ap, fmt);
    char *msg = async__format(fmt, ap, &oom);
    va_end(ap);
    async__future_complete(rec(p), ASYNC_S_FAILED, err > 0 ? err : EIO, msg);
    return oom ? ENOMEM : 0;
}

void promise_free(promise_t *p)
{
    if (!p)
        return;
#if ASYNC_CHECKS
    if (rec(p)->magic != ASYNC_MAGIC_FUTURE || rec(p)->kind != ASYNC_KIND_PROMISE ||
        !atomic_exchange_explicit(&rec(p)->phold, 0, memory_order_relaxed))
        async__misuse("promise_free", "promise freed twice", p);
#endif
    if (begin_completion(rec(p)))
        async__future_complete(rec(p), ASYNC_S_FAILED, EPIPE, async__broken_promise);
    async__record_release(rec(p));
}

int async__promise_cancel(struct future *f)
{
    if (!begin_completion(f))
        return EALREADY;
    async__future_complete(f, ASYNC_S_CANCELLED, ECANCELED, NULL);
    return 0;
}
