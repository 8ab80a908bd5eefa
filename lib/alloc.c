/*
 * lib/alloc.c — every allocation and thread creation of the library, and the
 * test hooks that make the Nth one fail.
 *
 * Owns: the failure-injection counters. Routing every malloc through one place
 * lets a test walk N = 1, 2, ... and prove that each allocation site answers
 * ENOMEM (or fails just the one future) with nothing leaked and nothing hung.
 * The counters are process-wide atomics; a test arms them from one thread
 * while the library may allocate from several, so "the Nth allocation" is the
 * Nth in the global order of fetch_add on alloc_seq.
 *
 * Invariants: async__fail_at == 0  <=>  injection disarmed.
 *             alloc_seq counts async__malloc/async__calloc calls since the
 *             last arm.
 * Memory order: relaxed throughout — the hooks order nothing else.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef ASYNC_TSAN
_Atomic int async__fence_word;
#endif

void (*async__test_window)(void);
_Atomic long async__fail_at;        /* 0: disarmed; else the failing ordinal */
static _Atomic long alloc_seq;      /* allocations since the last arm */
static _Atomic long thread_fail_at; /* same, for pthread_create */
static _Atomic long thread_seq;

_Noreturn void async__abort(const char *file, int line, const char *what)
{
    fprintf(stderr, "libasync: %s:%d: impossible failure: %s\n", file, line, what);
    abort();
}

static bool should_fail(_Atomic long *at, _Atomic long *seq)
{
    long n = atomic_fetch_add_explicit(seq, 1, memory_order_relaxed) + 1;
    long f = atomic_load_explicit(at, memory_order_relaxed);
    return f != 0 && n == f;
}

void *async__malloc(size_t n)
{
    if (should_fail(&async__fail_at, &alloc_seq)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = malloc(n ? n : 1);
    if (!p)
        errno = ENOMEM;
    return p;
}

void *async__calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    if (should_fail(&async__fail_at, &alloc_seq)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        errno = ENOMEM;
    return p;
}

void async__free(void *p)
{
    free(p);
}

void async__test_fail_alloc(long nth)
{
    atomic_store_explicit(&alloc_seq, 0, memory_order_relaxed);
    atomic_store_explicit(&async__fail_at, nth > 0 ? nth : 0, memory_order_relaxed);
}

long async__test_alloc_count(void)
{
    return atomic_load_explicit(&alloc_seq, memory_order_relaxed);
}


int async__thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    if (should_fail(&thread_fail_at, &thread_seq))
        return EAGAIN;
    return pthread_create(t, NULL, fn, arg);
}

void async__test_fail_thread(long nth)
{
    atomic_store_explicit(&thread_seq, 0, memory_order_relaxed);
    atomic_store_explicit(&thread_fail_at, nth > 0 ? nth : 0, memory_order_relaxed);
}
