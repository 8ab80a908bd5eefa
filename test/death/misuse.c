/*
 * test/death/misuse.c — misuse caught: each case below misuses the API once
 * and must end the process with the library's abort ("libasync: call(obj):
 * what"). meson runs each case with should_fail; a case that gets past its
 * misuse, or fails before it, exits 0 and so fails the test.
 *
 * Cases (argv[1]): chan_free_blocked (every build); with -Dchecks only:
 * future_free_twice, future_get_after_free, promise_free_twice,
 * chan_free_twice, chan_send_after_free, pool_after_destroy.
 */
#include <async.h>

#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static void *recv_forever(void *arg)
{
    return (void *)(intptr_t)chan_recv(arg, NULL);
}

static void *noop(void *arg)
{
    return arg;
}

/* A pool's task is blocked on c: chan_free(c) must abort. */
static int chan_free_blocked(void)
{
    async_pool_config_t cfg = { .threads = 1, .name = "death" };
    async_pool_t *pool = async_pool_create(&cfg);
    chan_t *c = chan_make(0, 0);
    if (!pool || !c || !async_run_on(pool, recv_forever, c))
        return 0;
    async_pool_stats_t st;
    int64_t until = async_now() + 60 * ASYNC_SECOND;
    while (async_pool_stats(pool, &st) == 0 && st.blocked + st.parked == 0 &&
           async_now() < until)
        sched_yield();
    chan_free(c);
    return 0;
}

/* A future whose record is gone for good (its pool destroyed, so nothing of
 * the pool holds it either) after its one handle was freed. */
static future_t *freed_future(void)
{
    async_pool_t *pool = async_pool_create(NULL);
    future_t *f = pool ? async_run_on(pool, noop, NULL) : NULL;
    if (!f || future_get(f, NULL) != 0 || async_pool_destroy(pool, ASYNC_DRAIN) != 0)
        return NULL;
    future_free(f);
    return f;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (strcmp(c, "chan_free_blocked") == 0) {
        chan_free_blocked();
    } else if (strcmp(c, "future_free_twice") == 0) {
        future_t *f = freed_future();
        if (f)
            future_free(f);
    } else if (strcmp(c, "future_get_after_free") == 0) {
        future_t *f = freed_future();
        if (f)
            future_get(f, NULL);
    } else if (strcmp(c, "promise_free_twice") == 0) {
        promise_t *p = promise_make();
        future_t *f = promise_future(p);   /* keeps the record alive */
        promise_free(p);
        promise_free(p);
        future_free(f);
    } else if (strcmp(c, "chan_free_twice") == 0) {
        chan_t *ch = chan_make(sizeof(int), 1);
        chan_free(ch);
        chan_free(ch);
    } else if (strcmp(c, "chan_send_after_free") == 0) {
        chan_t *ch = chan_make(sizeof(int), 1);
        int v = 1;
        chan_free(ch);
        chan_send_until(ch, &v, 0);
    } else if (strcmp(c, "pool_after_destroy") == 0) {
        async_pool_t *pool = async_pool_create(NULL);
        if (pool && async_pool_destroy(pool, ASYNC_DRAIN) == 0)
            async_run_on(pool, noop, NULL);
    } else {
        fprintf(stderr, "misuse: unknown case \"%s\"\n", c);
        return 0;
    }
    fprintf(stderr, "misuse: %s went unnoticed\n", c);
    return 0;
}
