/*
 * test/stress/stress_checks.c — wait cycles closed concurrently, unread
 * failures counted under churn, and the checked build's misuse checks never
 * tripping in a correct program whose records, promises and channels are
 * recycled all the time.
 *
 *   cycles  rings of 2 and 3 tasks whose waits close at the same moment, in
 *           both pool modes: every ring ends, and at least one wait of each
 *           ring gets EDEADLK (the others get 0).
 *   churn   threads that submit tasks (some fail; some read, some freed at
 *           once, detached), make promises with two handles freed in either
 *           order, and channels used and freed at once: nothing aborts, and
 *           the pool's hook gets exactly one line per failure nobody read.
 *
 * A plain program (the ThreadSanitizer build runs it). Scale: argv[1] or
 * $STRESS_SCALE. Prints what it checked and "N passed, M failed".
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stressmain.h"
#include "testutil.h"

#define CHECK(t, ok, ...) tally_check((t), (ok), __VA_ARGS__)

/* -------------------------------------------------------------- cycles */

struct ring {
    tu_gate_t         go;
    unsigned          n;
    future_t *_Atomic fs[3];
};
struct member { struct ring *r; unsigned i; };

static void *ring_task(void *arg)
{
    struct member *m = arg;
    if (!tu_gate_wait(&m->r->go))
        return (void *)(intptr_t)-1;
    future_t *next = atomic_load(&m->r->fs[(m->i + 1) % m->r->n]);
    return (void *)(intptr_t)future_get(next, NULL);
}

static void cycles(struct tally *t, unsigned rounds, int thread_mode)
{
    tally_begin(t, thread_mode ? "cycles (thread mode)" : "cycles (goroutine mode)");
    async_pool_t *pool = thread_mode ? tu_pool_thread(3, 0, NULL) : tu_pool(2, 0, NULL);
    if (!CHECK(t, pool != NULL, "no pool"))
        return;
    unsigned seen = 0;
    for (unsigned round = 0; round < rounds; round++) {
        struct ring r = { .n = 2 + round % 2 };
        struct member m[3];
        for (unsigned i = 0; i < r.n; i++) {
            m[i] = (struct member){ &r, i };
            atomic_store(&r.fs[i], async_run_on(pool, ring_task, &m[i]));
        }
        tu_gate_open(&r.go);
        unsigned deadlocks = 0;
        bool ok = true;
        for (unsigned i = 0; i < r.n; i++) {
            future_t *f = atomic_load(&r.fs[i]);
            void *v = NULL;
            if (!CHECK(t, f && tu_get(f, &v) == 0, "round %u: task %u hangs", round, i))
                return;   /* leaves the pool: the program fails anyway */
            ok &= (intptr_t)v == 0 || (intptr_t)v == EDEADLK;
            deadlocks += (intptr_t)v == EDEADLK;
        }
        CHECK(t, ok && deadlocks >= 1, "round %u: ring of %u, %u waits got EDEADLK", round,
              r.n, deadlocks);
        seen += deadlocks;
        for (unsigned i = 0; i < r.n; i++)
            future_free(atomic_load(&r.fs[i]));
    }
    CHECK(t, async_pool_destroy(pool, ASYNC_DRAIN) == 0, "destroy");
    tally_note(t, "%u rings, %u waits got EDEADLK", rounds, seen);
}

/* --------------------------------------------------------------- churn */

struct churn {
    async_pool_t *pool;
    unsigned      rounds;
    atomic_uint   unread;   /* failures left unread */
};

static void *fails(void *arg)
{
    async_panic(EDOM, "churn failure %u", (unsigned)(uintptr_t)arg);
}

static void *churner(void *arg)
{
    struct churn *c = arg;
    unsigned unread = 0;
    for (unsigned i = 0; i < c->rounds; i++) {
        bool fail = i % 3 == 0, read = i % 2 == 0;
        future_t *f = async_run_on(c->pool, fail ? fails : tu_task_noop, (void *)(uintptr_t)i);
        if (!f)
            continue;
        if (read)
            (void)future_get(f, NULL);
        future_free(f);   /* unread: detached, or done and unread */
        unread += fail && !read;

        promise_t *p = promise_make();
        future_t *a = promise_future(p), *b = promise_future(p);
        void *v;
        if (i % 2)
            promise_complete(p, NULL);
        else
            promise_fail(p, EIO, "churn promise");
        (void)future_get(a, &v);   /* read: nothing logged */
        if (i % 4 < 2) {
            future_free(a);
            promise_free(p);
            future_free(b);
        } else {
            promise_free(p);
            future_free(b);
            future_free(a);
        }

        chan_t *ch = chan_make(sizeof(int), i % 2);
        int x = (int)i, y = -1;
        if (ch && i % 2) {
            chan_send(ch, &x);
            chan_recv(ch, &y);
        }
        chan_free(ch);
    }
    atomic_fetch_add(&c->unread, unread);
    return NULL;
}

static void churn(struct tally *t, unsigned rounds, int thread_mode)
{
    tally_begin(t, thread_mode ? "churn (thread mode)" : "churn (goroutine mode)");
    struct tu_log log;
    tu_log_init(&log);
    struct churn c = { .rounds = rounds };
    c.pool = thread_mode ? tu_pool_thread(2, 0, &log) : tu_pool(2, 0, &log);
    if (!CHECK(t, c.pool != NULL, "no pool"))
        return;
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, churner, &c);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    CHECK(t, async_pool_destroy(c.pool, ASYNC_DRAIN) == 0, "destroy");
    unsigned lines = tu_log_matching(&log, "outcome was never read");
    CHECK(t, lines == atomic_load(&c.unread), "%u unread failures, %u lines", atomic_load(&c.unread),
          lines);
    tally_note(t, "%u rounds x 3 threads, %u unread failures reported", rounds, lines);
    tu_log_fini(&log);
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    struct tally t;
    tally_init(&t, true);
    for (int mode = 0; mode < 2; mode++) {
        cycles(&t, stress_n(scale, 300), mode);
        churn(&t, stress_n(scale, 3000), mode);
    }
    return stress_finish(&t);
}
