/*
 * test/testutil.c — gates, bounded spins and the log recorder shared by the
 * unit tests and the stress programs (see testutil.h).
 */
#include "testutil.h"

#include "internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t tu_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * ASYNC_SECOND + ts.tv_nsec;
}

int64_t tu_deadline(void)
{
    return tu_clock() + TU_PATIENCE;
}

bool tu_spin_once(int64_t until)
{
    sched_yield();
    return tu_clock() < until;
}

void tu_gate_open(tu_gate_t *g)
{
    atomic_store_explicit(&g->open, 1, memory_order_release);
}

bool tu_gate_is_open(tu_gate_t *g)
{
    return atomic_load_explicit(&g->open, memory_order_acquire) != 0;
}

bool tu_gate_wait(tu_gate_t *g)
{
    int64_t until = tu_deadline();
    while (!tu_gate_is_open(g))
        if (!tu_spin_once(until))
            return tu_gate_is_open(g);
    return true;
}

bool tu_wait_count(atomic_uint *c, unsigned n)
{
    int64_t until = tu_deadline();
    while (atomic_load_explicit(c, memory_order_acquire) < n)
        if (!tu_spin_once(until))
            return atomic_load_explicit(c, memory_order_acquire) >= n;
    return true;
}

int tu_get(future_t *f, void **result)
{
    return future_get_until(f, result, async_now() + TU_PATIENCE);
}

/* ------------------------------------------------------------ log hook */

void tu_log_init(struct tu_log *log)
{
    memset(log, 0, sizeof *log);
    pthread_mutex_init(&log->mu, NULL);
}

void tu_log_fini(struct tu_log *log)
{
    for (size_t i = 0; i < log->n; i++)
        free(log->lines[i]);
    free(log->lines);
    pthread_mutex_destroy(&log->mu);
}

void tu_log_hook(void *ctx, const char *line)
{
    struct tu_log *log = ctx;
    char *copy = strdup(line ? line : "(null)");
    pthread_mutex_lock(&log->mu);
    if (copy && log->n == log->cap) {
        size_t cap = log->cap ? 2 * log->cap : 64;
        char **lines = realloc(log->lines, cap * sizeof *lines);
        if (lines) {
            log->lines = lines;
            log->cap = cap;
        }
    }
    if (copy && log->n < log->cap)
        log->lines[log->n++] = copy;
    else
        free(copy);
    pthread_mutex_unlock(&log->mu);
    /* after the line is stored: a waiter for the count then finds it */
    if (line && strstr(line, ": saturated: "))
        atomic_fetch_add(&log->saturated, 1);
    atomic_fetch_add_explicit(&log->count, 1, memory_order_release);
}

unsigned tu_log_matching(struct tu_log *log, const char *needle)
{
    unsigned n = 0;
    pthread_mutex_lock(&log->mu);
    for (size_t i = 0; i < log->n; i++)
        if (strstr(log->lines[i], needle))
            n++;
    pthread_mutex_unlock(&log->mu);
    return n;
}

bool tu_log_find_prefix(struct tu_log *log, const char *prefix, char *buf, size_t size)
{
    bool found = false;
    pthread_mutex_lock(&log->mu);
    for (size_t i = 0; i < log->n && !found; i++) {
        if (strncmp(log->lines[i], prefix, strlen(prefix)) == 0) {
            snprintf(buf, size, "%s", log->lines[i]);
            found = true;
        }
    }
    pthread_mutex_unlock(&log->mu);
    return found;
}

/* --------------------------------------------------------------- pools */

async_pool_t *tu_pool(unsigned threads, unsigned max_threads, struct tu_log *log)
{
    async_pool_config_t cfg = {
        .threads = threads,
        .max_threads = max_threads,
        .name = "test",
        .log = log ? tu_log_hook : NULL,
        .log_ctx = log,
    };
    return async_pool_create(&cfg);
}

async_pool_t *tu_pool_thread(unsigned threads, unsigned max_threads, struct tu_log *log)
{
    async_pool_config_t cfg = {
        .threads = threads,
        .max_threads = max_threads,
        .name = "test",
        .log = log ? tu_log_hook : NULL,
        .log_ctx = log,
        .stack_size = ASYNC_STACK_THREAD,
    };
    return async_pool_create(&cfg);
}

unsigned tu_blocked(const async_pool_stats_t *s)
{
    return s->blocked + (unsigned)s->parked;
}

unsigned tu_cpus(void)
{
    return async__cpu_count();   /* affinity and cgroup quota: test_cpus.c */
}

bool tu_pool_quiet(async_pool_t *pool, async_pool_stats_t *out)
{
    int64_t until = tu_deadline();
    for (;;) {
        if (async_pool_stats(pool, out) != 0)
            return false;
        if (out->succeeded + out->failed + out->cancelled == out->submitted
            && out->queued == 0)
            return true;
        if (!tu_spin_once(until))
            return false;
    }
}

/* --------------------------------------------------------------- tasks */

void *tu_task_identity(void *arg)
{
    return arg;
}

void *tu_task_noop(void *arg)
{
    (void)arg;
    return NULL;
}

void *tu_task_count(void *arg)
{
    atomic_fetch_add_explicit((atomic_uint *)arg, 1, memory_order_release);
    return arg;
}
