/*
 * late_cancel.c — a task blocked in future_get is cancelled (future_cancel
 * answers EBUSY), and only then is the future it waits for completed. API.md:
 * "from then on, every blocking call ... inside that task ... returns
 * ECANCELED without performing its operation ... including one already
 * blocked". Counts the rounds in which the blocked future_get returned the
 * completion instead.
 *
 *   cc -Iinclude test/fuzz/repro/late_cancel.c build/lib/libasync.a -lpthread -ldl
 */
#include <async.h>
#include <stdio.h>

struct arg {
    future_t  *gate;
    promise_t *started;
};

static void *waiter(void *p)
{
    struct arg *a = p;
    promise_complete(a->started, NULL);
    void *v;
    int rc = future_get(a->gate, &v);
    return (void *)(long)rc;   /* ECANCELED expected */
}

int main(void)
{
    async_pool_config_t cfg = { .threads = 1, .max_threads = 1,
                                .log = NULL };
    async_pool_t *pool = async_pool_create(&cfg);
    unsigned late = 0, rounds = 20000;
    for (unsigned i = 0; i < rounds; i++) {
        promise_t *gate = promise_make();
        struct arg a = { promise_future(gate), promise_make() };
        future_t *started = promise_future(a.started);
        future_t *t = async_run_on(pool, waiter, &a);
        future_get(started, NULL);
        if (future_cancel(t) != EBUSY)
            return 2;
        promise_complete(gate, NULL);          /* after the cancel request */
        void *rc;
        future_get(t, &rc);
        if ((long)rc != ECANCELED)
            late++;
        future_free(t);
        future_free(started);
        promise_free(a.started);
        future_free(a.gate);
        promise_free(gate);
    }
    async_pool_destroy(pool, ASYNC_DRAIN);
    printf("%u of %u cancelled waits returned the completion, not ECANCELED\n", late, rounds);
    return late != 0;
}
