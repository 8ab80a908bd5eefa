/*
 * test/stress/stress_watchdog.c — $ASYNC_WATCHDOG on a real deadlock, and no
 * false alarm.
 *
 * With ASYNC_WATCHDOG=1 (set here, before any pool exists): two tasks each
 * receive from the channel the other would send on after its own receive,
 * so neither ever can. The pool logs, through its hook, exactly one line
 * "pool wdtest: no progress for S: 2 tasks parked or blocked, nothing
 * runnable, no timer pending", followed by its dump, which names both tasks
 * and the channel each waits on; and nothing more while it stays stuck.
 * Closing the channels ends it. A task sleeping longer than the watchdog's
 * limit (a pending timer: in the heap in goroutine mode, a thread's own
 * deadline in thread mode), and a pool with nothing to do, log nothing.
 * Both modes.
 *
 * A plain program (the ThreadSanitizer build runs it). The scale does not
 * apply: the watchdog's timing is what it tests. Prints what it checked and
 * "N passed, M failed"; exits non-zero on any failure.
 */
#include "stressmain.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct pair {
    chan_t *mine, *theirs;
};

static void *recv_then_send(void *arg)
{
    struct pair *p = arg;
    int v = 0;
    int rc = chan_recv(p->mine, &v);
    if (rc == 0)
        chan_send(p->theirs, &v);
    return (void *)(intptr_t)rc;
}

static void *sleeper(void *arg)
{
    (void)arg;
    async_sleep(2 * ASYNC_SECOND);
    return NULL;
}

static async_pool_t *wd_pool(bool goroutine, struct tu_log *log)
{
    async_pool_config_t cfg = {
        .threads = 2,
        .name = "wdtest",
        .log = tu_log_hook,
        .log_ctx = log,
        /* a size, not 0: $ASYNC_STACK_SIZE (CI's thread-mode runs) must
         * not turn the goroutine-mode case into a second thread-mode one */
        .stack_size = goroutine ? (size_t)256 * 1024 : ASYNC_STACK_THREAD,
    };
    return async_pool_create(&cfg);
}

/* Index of the first line containing needle at or after `from`; -1: none. */
static long find_line(struct tu_log *log, const char *needle, size_t from)
{
    long at = -1;
    pthread_mutex_lock(&log->mu);
    for (size_t i = from; i < log->n && at < 0; i++)
        if (strstr(log->lines[i], needle))
            at = (long)i;
    pthread_mutex_unlock(&log->mu);
    return at;
}

static void pause_ns(int64_t ns)
{
    struct timespec ts = { (time_t)(ns / ASYNC_SECOND), (long)(ns % ASYNC_SECOND) };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void deadlock(struct tally *t, bool goroutine)
{
    const char *mode = goroutine ? "goroutine" : "thread";
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = wd_pool(goroutine, &log);
    tally_check(t, pool != NULL, "%s: pool_create failed", mode);
    if (!pool)
        return;
    chan_t *ca = chan_make(sizeof(int), 0), *cb = chan_make(sizeof(int), 0);
    struct pair pa = { ca, cb }, pb = { cb, ca };
    future_t *a = async_run_on(pool, recv_then_send, &pa);
    future_t *b = async_run_on(pool, recv_then_send, &pb);
    int64_t until = tu_deadline();
    while (find_line(&log, "libasync dump end", 0) < 0 && tu_spin_once(until))
        ;
    long np = find_line(&log, "pool wdtest: no progress for ", 0);
    long head = find_line(&log, "libasync dump: ", 0);
    long end = find_line(&log, "libasync dump end", 0);
    tally_check(t, np >= 0 && head == np + 1 && end > head,
                "%s: no-progress line at %ld, dump from %ld to %ld", mode, np, head, end);
    tally_check(t, tu_log_matching(&log, ": 2 tasks parked or blocked, nothing runnable, "
                                         "no timer pending") == 1,
                "%s: the no-progress line does not count 2 waiting tasks", mode);
    char want[160];
    snprintf(want, sizeof want, "pool wdtest task %p fn ", (void *)a);
    long la = find_line(&log, want, 0);
    snprintf(want, sizeof want, "pool wdtest task %p fn ", (void *)b);
    long lb = find_line(&log, want, 0);
    tally_check(t, la > head && la < end && lb > head && lb < end,
                "%s: the dump lacks a task line (%ld, %ld)", mode, la, lb);
    snprintf(want, sizeof want, " state %s wait chan %p recv for ",
             goroutine ? "parked" : "blocked", (void *)ca);
    tally_check(t, tu_log_matching(&log, want) == 1, "%s: no line waiting on A's channel",
                mode);
    snprintf(want, sizeof want, " state %s wait chan %p recv for ",
             goroutine ? "parked" : "blocked", (void *)cb);
    tally_check(t, tu_log_matching(&log, want) == 1, "%s: no line waiting on B's channel",
                mode);
    /* still stuck: no second report (4 more watchdog periods) */
    pause_ns(ASYNC_SECOND);
    tally_check(t, tu_log_matching(&log, "no progress") == 1, "%s: %u no-progress lines",
                mode, tu_log_matching(&log, "no progress"));
    chan_close(ca);
    chan_close(cb);
    tally_check(t, tu_get(a, NULL) == 0 && tu_get(b, NULL) == 0, "%s: tasks never ended",
                mode);
    future_free(a);
    future_free(b);
    async_pool_destroy(pool, ASYNC_DRAIN);
    chan_free(ca);
    chan_free(cb);
    tu_log_fini(&log);
}

static void no_false_alarm(struct tally *t, bool goroutine)
{
    const char *mode = goroutine ? "goroutine" : "thread";
    struct tu_log log, idle_log;
    tu_log_init(&log);
    tu_log_init(&idle_log);
    async_pool_t *pool = wd_pool(goroutine, &log);
    async_pool_t *idle = wd_pool(goroutine, &idle_log);
    tally_check(t, pool && idle, "%s: pool_create failed", mode);
    if (pool && idle) {
        future_t *f = async_run_on(pool, sleeper, NULL);
        tally_check(t, tu_get(f, NULL) == 0, "%s: the sleeper failed", mode);
        future_free(f);
    }
    if (pool)
        async_pool_destroy(pool, ASYNC_DRAIN);
    if (idle)
        async_pool_destroy(idle, ASYNC_DRAIN);
    tally_check(t, atomic_load(&log.count) == 0, "%s: a sleeping task made %u log lines",
                mode, atomic_load(&log.count));
    tally_check(t, atomic_load(&idle_log.count) == 0, "%s: an idle pool made %u log lines",
                mode, atomic_load(&idle_log.count));
    tu_log_fini(&log);
    tu_log_fini(&idle_log);
}

int main(int argc, char **argv)
{
    (void)stress_scale(argc, argv);
    setenv("ASYNC_WATCHDOG", "1", 1);
    struct tally t;
    tally_init(&t, true);
    tally_begin(&t, "watchdog_deadlock");
    deadlock(&t, true);
    deadlock(&t, false);
    tally_note(&t, "two tasks receiving from each other: one no-progress line and the "
               "dump, both modes");
    tally_begin(&t, "watchdog_no_false_alarm");
    no_false_alarm(&t, true);
    no_false_alarm(&t, false);
    tally_note(&t, "a 2 s sleep and an idle pool under a 1 s watchdog: silent, both modes");
    return stress_finish(&t);
}
