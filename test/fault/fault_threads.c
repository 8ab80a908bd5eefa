/*
 * test/fault/fault_threads.c — what the pool does when threads cannot be
 * created (async__test_fail_thread: the nth pthread_create from now fails
 * with EAGAIN).
 *
 *   1. async_pool_create with no worker started returns NULL with errno
 *      EAGAIN, and leaves nothing behind (LeakSanitizer / valgrind); the next
 *      create works.
 *   2. async_pool_create with some workers started runs with those: stats
 *      say so, every task runs, both shutdown modes work.
 *   3. The default pool: the first use fails with EAGAIN when its worker
 *      cannot start, and the next use creates it.
 *   4. A replacement worker that cannot start: the pool says it is saturated
 *      through its log hook, keeps the queued task, and runs it once the
 *      blocked worker is free; a later episode starts a replacement fine.
 *
 * Ordering uses promises and the pool's own counters (bounded spins), never
 * sleeps. Prints "N passed, M failed".
 */
#include <async.h>

#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static unsigned passed, failed;

static bool check(bool ok, const char *fmt, ...) ASYNC_PRINTF(2, 3);
static bool check(bool ok, const char *fmt, ...)
{
    if (ok) {
        passed++;
        return true;
    }
    failed++;
    va_list ap;
    va_start(ap, fmt);
    fputs("fault_threads: FAILED: ", stdout);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    return false;
}

/* ----------------------------------------------------------- log hook */

struct log {
    pthread_mutex_t mu;
    unsigned        saturated, other;   /* guarded by mu */
    char            last[160];          /* guarded by mu */
};

static void log_hook(void *ctx, const char *line)
{
    struct log *l = ctx;
    pthread_mutex_lock(&l->mu);
    if (strncmp(line, "pool async: saturated: ", 23) == 0)
        l->saturated++;
    else
        l->other++;
    snprintf(l->last, sizeof l->last, "%s", line);
    pthread_mutex_unlock(&l->mu);
}

static unsigned log_saturated(struct log *l, char *last, size_t size)
{
    pthread_mutex_lock(&l->mu);
    unsigned n = l->saturated;
    snprintf(last, size, "%s", l->last);
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* -------------------------------------------------------------- tasks */

static void *twice(void *arg)
{
    return (void *)((uintptr_t)arg * 2);
}

/* Waits (a library call: the worker counts as blocked) for a promise. */
static void *wait_gate(void *arg)
{
    void *v = NULL;
    int rc = future_get(arg, &v);
    return (void *)(uintptr_t)(rc == 0 ? (uintptr_t)v : 0xbad);
}

/* Spin until the pool reports `blocked` blocked workers; bounded. */
static bool wait_blocked(async_pool_t *pool, unsigned blocked)
{
    int64_t give_up = async_now() + 60 * ASYNC_SECOND;
    async_pool_stats_t st;
    while (async_pool_stats(pool, &st) == 0 && st.blocked < blocked) {
        if (async_now() > give_up)
            return false;
        sched_yield();
    }
    return true;
}

/* Submit n tasks and check each result; the pool must have `threads`. */
static void run_tasks(async_pool_t *pool, unsigned threads, unsigned n)
{
    future_t *fs[64];
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++)
        fs[i] = async_run_on(pool, twice, (void *)(uintptr_t)i);
    for (unsigned i = 0; i < n; i++) {
        void *v = NULL;
        ok += fs[i] && future_get_until(fs[i], &v, async_now() + 60 * ASYNC_SECOND) == 0 &&
              (uintptr_t)v == 2 * i;
        future_free(fs[i]);
    }
    check(ok == n, "%u of %u tasks on a %u-thread pool", ok, n, threads);
    /* Read first: a call's arguments are evaluated in no set order, so the
     * message's must not depend on the condition's call. */
    async_pool_stats_t st = { 0 };
    int rc = async_pool_stats(pool, &st);
    check(rc == 0 && st.threads == threads && st.peak_threads == threads,
          "stats (%d): threads %u, peak %u, want %u", rc, st.threads, st.peak_threads, threads);
}

/* ---------------------------------------------------------- scenarios */

/* 1 and 2: the nth of `threads` creations fails. */
static void create_with_failure(unsigned threads, unsigned nth, async_shutdown_t how)
{
    async_pool_config_t cfg = { .threads = threads, .max_threads = threads + 2 };
    async__test_fail_thread(nth);
    errno = 0;
    async_pool_t *pool = async_pool_create(&cfg);
    int err = errno;
    async__test_fail_thread(0);
    if (nth == 1) {
        check(!pool && err == EAGAIN, "threads %u, first creation fails: pool %p errno %d",
              threads, (void *)pool, err);
        if (pool)
            async_pool_destroy(pool, how);
        return;
    }
    unsigned got = nth <= threads ? nth - 1 : threads;
    if (!check(pool != NULL, "threads %u, creation %u fails: no pool (errno %d)", threads, nth,
               err))
        return;
    run_tasks(pool, got, 40);
    check(async_pool_destroy(pool, how) == 0, "destroy");
}

static void *count_task(void *arg)
{
    atomic_fetch_add((atomic_uint *)arg, 1);
    return NULL;
}

/* 3: the default pool's first creation fails, the next use works. */
static void default_pool_failure(void)
{
    async__test_fail_thread(1);
    errno = 0;
    future_t *f = async_run(twice, (void *)(uintptr_t)3);
    int err = errno;
    async__test_fail_thread(0);
    check(!f && err == EAGAIN, "default pool, no worker: %p errno %d", (void *)f, err);
    future_free(f);
    atomic_uint n = 0;
    f = async_run(count_task, &n);
    check(f && future_get(f, NULL) == 0 && atomic_load(&n) == 1, "default pool afterwards");
    future_free(f);
    check(async_shutdown(ASYNC_DRAIN) == 0, "async_shutdown");
}

/* One episode: the only worker blocks on a gate, a task is queued behind
 * it; fail_nth > 0 makes the replacement's creation fail. */
static void replacement_episode(async_pool_t *pool, struct log *log, long fail_nth)
{
    promise_t *gate = promise_make();
    future_t *gf = promise_future(gate);
    future_t *blocker = async_run_on(pool, wait_gate, gf);
    check(blocker && wait_blocked(pool, 1), "the worker never blocked on its gate");
    char last[160];
    unsigned sat_before = log_saturated(log, last, sizeof last);
    async__test_fail_thread(fail_nth);
    future_t *queued = async_run_on(pool, twice, (void *)(uintptr_t)21);
    async__test_fail_thread(0);
    async_pool_stats_t st;
    async_pool_stats(pool, &st);
    unsigned sat = log_saturated(log, last, sizeof last);
    void *v = NULL;
    if (fail_nth) {
        check(st.threads == 1, "replacement failed, yet %u threads", st.threads);
        check(sat == sat_before + 1, "saturated lines: %u, want %u", sat, sat_before + 1);
        check(strcmp(last, "pool async: saturated: 1 workers blocked, 1 tasks queued") == 0,
              "log line \"%s\"", last);
        check(future_state(queued) == FUTURE_PENDING, "queued task ran with no worker free");
        promise_complete(gate, (void *)(uintptr_t)5);
    } else {
        /* the replacement runs it while the first worker is still blocked */
        int rc = future_get_until(queued, &v, async_now() + 60 * ASYNC_SECOND);
        check(rc == 0 && future_state(blocker) == FUTURE_RUNNING,
              "replacement did not run the queued task (%d)", rc);
        async_pool_stats(pool, &st);
        check(st.threads == 2 && st.peak_threads == 2, "replacement: threads %u peak %u",
              st.threads, st.peak_threads);
        check(sat == sat_before, "saturated logged though a replacement started");
        promise_complete(gate, (void *)(uintptr_t)5);
    }
    check(future_get_until(blocker, &v, async_now() + 60 * ASYNC_SECOND) == 0 &&
              (uintptr_t)v == 5, "blocker result");
    check(future_get_until(queued, &v, async_now() + 60 * ASYNC_SECOND) == 0 &&
              (uintptr_t)v == 42, "queued task result after the gate opened");
    future_free(queued);
    future_free(blocker);
    future_free(gf);
    promise_free(gate);
}

/* 4 */
static void replacement_failure(async_shutdown_t how)
{
    struct log log = { .mu = PTHREAD_MUTEX_INITIALIZER };
    async_pool_config_t cfg = { .threads = 1, .max_threads = 4, .log = log_hook,
                                .log_ctx = &log, .stack_size = ASYNC_STACK_THREAD };
    async_pool_t *pool = async_pool_create(&cfg);
    if (!check(pool != NULL, "pool for replacements"))
        return;
    replacement_episode(pool, &log, 1);   /* the replacement cannot start */
    run_tasks(pool, 1, 20);               /* the pool still works */
    replacement_episode(pool, &log, 0);   /* and starts one next time */
    check(async_pool_destroy(pool, how) == 0, "destroy");
    check(log.other == 0, "unexpected log line: %s", log.last);
}

int main(void)
{
    for (unsigned threads = 1; threads <= 4; threads++)
        for (unsigned nth = 1; nth <= threads + 1; nth++)
            create_with_failure(threads, nth, nth % 2 ? ASYNC_DRAIN : ASYNC_CANCEL);
    async_pool_config_t cfg = { .threads = 2 };
    async_pool_t *pool = async_pool_create(&cfg);
    check(pool != NULL, "create after failures");
    if (pool) {
        run_tasks(pool, 2, 10);
        async_pool_destroy(pool, ASYNC_DRAIN);
    }
    default_pool_failure();
    replacement_failure(ASYNC_DRAIN);
    replacement_failure(ASYNC_CANCEL);
    printf("%u passed, %u failed\n", passed, failed);
    return failed != 0;
}
