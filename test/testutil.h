/*
 * test/testutil.h — what the unit tests and the stress programs share:
 * gates, bounded spinning, a log-hook recorder, pool helpers.
 *
 * Ordering between threads is always by a gate or a counter that one side
 * publishes (release) and the other spins on (acquire) with sched_yield —
 * never by sleeping. Every spin is bounded by TU_PATIENCE: a gate that stays
 * shut that long is reported as a failure instead of hanging the suite.
 *
 * The clock used here is clock_gettime itself, so that a broken async_now
 * cannot hide its own failures.
 */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <async.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How long any gate may stay shut before the wait counts as a failure. */
#define TU_PATIENCE (60 * ASYNC_SECOND)

int64_t tu_clock(void);                  /* CLOCK_MONOTONIC in ns */
int64_t tu_deadline(void);               /* tu_clock() + TU_PATIENCE */
/* One round of a bounded spin: yields; false once `until` has passed. */
bool    tu_spin_once(int64_t until);

/* A one-shot gate. Zero-initialised: shut. */
typedef struct { atomic_int open; } tu_gate_t;
void tu_gate_open(tu_gate_t *g);
bool tu_gate_is_open(tu_gate_t *g);
bool tu_gate_wait(tu_gate_t *g);         /* false: TU_PATIENCE ran out */

/* Spin until *c >= n; false when TU_PATIENCE ran out. */
bool tu_wait_count(atomic_uint *c, unsigned n);

/* A finite-deadline get: it never runs the task inline (API: a wait with a
 * finite deadline only waits), so the task is known to run on a worker. */
int  tu_get(future_t *f, void **result);

/* Records the lines a pool's log hook receives. */
struct tu_log {
    pthread_mutex_t mu;
    char          **lines;       /* guarded by mu */
    size_t          n, cap;      /* guarded by mu */
    atomic_uint     count;       /* lines received */
    atomic_uint     saturated;   /* "pool NAME: saturated: ..." lines */
};
void     tu_log_init(struct tu_log *log);
void     tu_log_fini(struct tu_log *log);
void     tu_log_hook(void *ctx, const char *line);
unsigned tu_log_matching(struct tu_log *log, const char *needle); /* lines containing needle */
/* Copy of the first line starting with prefix into buf; false if none. */
bool     tu_log_find_prefix(struct tu_log *log, const char *prefix, char *buf, size_t size);

/* A pool of `threads` workers (max_threads: 0 for the default cap), logging
 * into log when it is not NULL. */
async_pool_t *tu_pool(unsigned threads, unsigned max_threads, struct tu_log *log);
/* The same pool in thread mode (a blocked task holds its worker), for the
 * tests of what only thread mode does: replacements, saturation. */
async_pool_t *tu_pool_thread(unsigned threads, unsigned max_threads, struct tu_log *log);
/* Tasks blocked in library calls, whatever the mode: workers blocked
 * (thread mode) plus tasks parked on their stacks (goroutine mode). */
unsigned tu_blocked(const async_pool_stats_t *s);
unsigned      tu_cpus(void);

/* Spin until the pool's counters say it is quiet: every submitted task is
 * accounted for (succeeded + failed + cancelled == submitted). Fills *out.
 * false when TU_PATIENCE ran out. */
bool tu_pool_quiet(async_pool_t *pool, async_pool_stats_t *out);

/* Tasks used everywhere. */
void *tu_task_identity(void *arg);       /* returns arg */
void *tu_task_noop(void *arg);           /* returns NULL */
/* Increments the atomic_uint at arg, returns arg. */
void *tu_task_count(void *arg);

#endif /* TESTUTIL_H */
