/*
 * test/gdb/gdb_target.c — the process tools/libasync-gdb.py is tried on
 * (test/gdb/check.sh): a goroutine-mode pool named "gdbpool" with three
 * parked tasks (one receives on a channel two calls deep, one waits for it,
 * one sleeps) and a thread-mode pool "gdbthr" with one blocked task; then
 * it stops itself with SIGTRAP, which gdb catches. Run alone, it prints
 * its dump and exits.
 */
#include <async.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static chan_t *ch;

void *gdb_recv_task(void *arg);
void *gdb_wait_task(void *arg);
void *gdb_sleep_task(void *arg);
int   gdb_level2(chan_t *c);

__attribute__((noinline)) int gdb_level2(chan_t *c)
{
    int v = 0;
    int rc = chan_recv(c, &v);
    return rc + v;
}

__attribute__((noinline)) void *gdb_recv_task(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)gdb_level2(ch);
}

void *gdb_wait_task(void *arg)
{
    return (void *)(intptr_t)future_get(arg, NULL);
}

void *gdb_sleep_task(void *arg)
{
    (void)arg;
    async_sleep(3600 * ASYNC_SECOND);
    return NULL;
}

static void wait_blocked(async_pool_t *pool, size_t n)
{
    async_pool_stats_t st;
    for (int i = 0; i < 60000; i++) {
        async_pool_stats(pool, &st);
        if (st.parked + st.blocked >= n)
            return;
        async_sleep(ASYNC_MILLISECOND);
    }
    fprintf(stderr, "gdb_target: tasks never blocked\n");
    exit(1);
}

int main(void)
{
    ch = chan_make(sizeof(int), 0);
    async_pool_config_t g = { .threads = 1, .name = "gdbpool" };
    async_pool_config_t t = { .threads = 1, .name = "gdbthr",
                              .stack_size = ASYNC_STACK_THREAD };
    async_pool_t *gp = async_pool_create(&g), *tp = async_pool_create(&t);
    if (!ch || !gp || !tp)
        return 1;
    future_t *r = async_run_on(gp, gdb_recv_task, NULL);
    wait_blocked(gp, 1);
    future_t *w = async_run_on(gp, gdb_wait_task, r);
    future_t *s = async_run_on(gp, gdb_sleep_task, NULL);
    future_t *b = async_run_on(tp, gdb_recv_task, NULL);
    wait_blocked(gp, 3);
    wait_blocked(tp, 1);
    printf("ready: %p %p %p %p\n", (void *)r, (void *)w, (void *)s, (void *)b);
    fflush(stdout);
    raise(SIGTRAP);
    async_dump(stdout);
    (void)w;
    (void)s;
    (void)b;
    return 0;
}
