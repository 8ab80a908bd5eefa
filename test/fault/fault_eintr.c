/*
 * test/fault/fault_eintr.c — signals never cut a wait short or change its
 * answer.
 *
 * SIGUSR1 gets an empty handler installed without SA_RESTART, so every
 * futex or nanosleep it lands in returns EINTR. A signaller thread sends it,
 * every ~100 us, to whichever thread is the current target while that thread
 * is blocked in:
 *   future_get_until (finite deadline, never completed)   -> ETIMEDOUT, not early
 *   future_get (forever, on a promise completed later)      -> 0, only after it
 *   future_wait_any / future_wait_all (finite deadline)     -> ETIMEDOUT, not early
 *   async_sleep / async_sleep_until                         -> the full duration
 *   chan_recv_until (finite deadline, empty channel)        -> ETIMEDOUT, not early
 *   chan_recv (forever, on a value sent later)              -> 0 and that value
 *   chan_select (finite deadline, nothing ready)            -> ETIMEDOUT, not early
 * from the main thread and from inside a task on a pool worker, in a loop.
 * "Later" is decided by the signals themselves: the completing thread acts
 * only once the handler has run a number of times on the target thread
 * (no sleeping for synchronisation). Each kind of wait must have been hit by
 * signals at least once over its rounds, or the test proves nothing.
 *
 *   fault_eintr [--rounds N]     (default 8; FAULT_ROUNDS sets it, else
 *                                 STRESS_SCALE scales it)
 *
 * Prints "N passed, M failed".
 */
#include <async.h>

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_NS  (20 * ASYNC_MILLISECOND)
#define HITS_FOR_LATER 20u   /* signals on the target before completing */

static atomic_uint passed, failed;

static bool check(bool ok, const char *fmt, ...) ASYNC_PRINTF(2, 3);
static bool check(bool ok, const char *fmt, ...)
{
    if (ok) {
        atomic_fetch_add(&passed, 1);
        return true;
    }
    atomic_fetch_add(&failed, 1);
    va_list ap;
    va_start(ap, fmt);
    fputs("fault_eintr: FAILED: ", stdout);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    return false;
}

/* ------------------------------------------------------------- signals */

static _Thread_local volatile sig_atomic_t hits_here;   /* per thread */
static atomic_uint hits_total;

static void on_usr1(int sig)
{
    (void)sig;
    hits_here++;
    atomic_fetch_add_explicit(&hits_total, 1, memory_order_relaxed);
}

/* The signaller's target. pthread_kill is called with the lock held, so a
 * thread that has cleared itself as target is never signalled afterwards. */
static pthread_mutex_t target_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t       target;          /* guarded by target_lock */
static bool            target_set;      /* guarded by target_lock */
static atomic_uint     target_hits;     /* signals sent to the current target */
static atomic_bool     stop;

static void target_me(void)
{
    pthread_mutex_lock(&target_lock);
    target = pthread_self();
    target_set = true;
    atomic_store(&target_hits, 0);
    pthread_mutex_unlock(&target_lock);
}

static void target_none(void)
{
    pthread_mutex_lock(&target_lock);
    target_set = false;
    pthread_mutex_unlock(&target_lock);
}

static void *signaller(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        pthread_mutex_lock(&target_lock);
        if (target_set && pthread_kill(target, SIGUSR1) == 0)
            atomic_fetch_add(&target_hits, 1);
        pthread_mutex_unlock(&target_lock);
        struct timespec ts = { 0, 100 * 1000 };   /* pacing, not ordering */
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Spin (yielding) until the current target was signalled n more times. */
static void await_target_hits(unsigned n)
{
    int64_t give_up = async_now() + 60 * ASYNC_SECOND;
    while (atomic_load(&target_hits) < n && async_now() < give_up)
        sched_yield();
}

/* ----------------------------------------------------------- the waits */

enum wait_kind {
    W_GET_UNTIL, W_GET_FOREVER, W_WAIT_ANY, W_WAIT_ALL, W_SLEEP, W_SLEEP_UNTIL,
    W_RECV_UNTIL, W_RECV_FOREVER, W_SELECT, NWAITS
};

static const char *const wait_name[NWAITS] = {
    "future_get_until", "future_get", "future_wait_any", "future_wait_all", "async_sleep",
    "async_sleep_until", "chan_recv_until", "chan_recv", "chan_select",
};

static atomic_uint hit_by_kind[NWAITS];

/* What a "later" completion needs: done by a helper thread. */
struct later {
    promise_t   *p;
    chan_t      *c;
    atomic_bool  done;    /* set before completing */
    pthread_t    thread;
};

static void *complete_later(void *arg)
{
    struct later *l = arg;
    await_target_hits(HITS_FOR_LATER);
    atomic_store(&l->done, true);
    if (l->p) {
        promise_complete(l->p, (void *)(uintptr_t)77);
    } else {
        uint64_t v = 77;
        chan_send(l->c, &v);
    }
    return NULL;
}

static bool timed_out_on_time(int rc, int64_t deadline)
{
    return rc == ETIMEDOUT && async_now() >= deadline;
}

static void wait_for_completion(enum wait_kind k, const char *where)
{
    struct later l = { 0 };
    future_t *f = NULL;
    if (k == W_GET_FOREVER) {
        l.p = promise_make();
        f = promise_future(l.p);
    } else {
        l.c = chan_make(sizeof(uint64_t), 0);
    }
    if (pthread_create(&l.thread, NULL, complete_later, &l) != 0)
        abort();
    void *v = NULL;
    uint64_t got = 0;
    int rc = k == W_GET_FOREVER ? future_get(f, &v) : chan_recv(l.c, &got);
    bool after = atomic_load(&l.done);
    uint64_t value = k == W_GET_FOREVER ? (uint64_t)(uintptr_t)v : got;
    check(rc == 0 && after && value == 77, "%s (%s): rc %d, completed first %d, value %llu",
          wait_name[k], where, rc, (int)after, (unsigned long long)value);
    pthread_join(l.thread, NULL);
    future_free(f);
    promise_free(l.p);
    chan_free(l.c);
}

/* One wait of kind k on the calling thread, signalled throughout. */
static void one_wait(enum wait_kind k, const char *where)
{
    promise_t *p = promise_make();
    future_t *f = promise_future(p);
    future_t *fs[2] = { f, f };
    chan_t *c = chan_make(sizeof(uint64_t), 1);
    uint64_t elem = 0;
    chan_case_t cases[2] = { { .chan = c, .op = CHAN_RECV, .elem = &elem },
                             { .chan = NULL, .op = CHAN_SEND, .elem = &elem } };
    sig_atomic_t before = hits_here;
    int64_t start = async_now(), deadline = start + WAIT_NS;
    int rc = 0;
    target_me();
    switch (k) {
    case W_GET_UNTIL:   rc = future_get_until(f, NULL, deadline); break;
    case W_WAIT_ANY:    rc = future_wait_any(fs, 2, deadline, NULL); break;
    case W_WAIT_ALL:    rc = future_wait_all(fs, 2, deadline); break;
    case W_SLEEP:       async_sleep(WAIT_NS); rc = ETIMEDOUT; break;
    case W_SLEEP_UNTIL: rc = async_sleep_until(deadline) == 0 ? ETIMEDOUT : -1; break;
    case W_RECV_UNTIL:  rc = chan_recv_until(c, &elem, deadline); break;
    case W_SELECT:      rc = chan_select(cases, 2, deadline, NULL); break;
    default:            wait_for_completion(k, where); rc = ETIMEDOUT; deadline = 0; break;
    }
    target_none();
    check(timed_out_on_time(rc, deadline), "%s (%s): rc %d after %lld us (wanted %lld us)",
          wait_name[k], where, rc, (long long)(async_now() - start) / 1000,
          (long long)WAIT_NS / 1000);
    if (hits_here != before)
        atomic_fetch_add(&hit_by_kind[k], 1);
    chan_free(c);
    future_free(f);
    promise_free(p);
}

static void *waits_in_task(void *arg)
{
    enum wait_kind k = (enum wait_kind)(uintptr_t)arg;
    one_wait(k, "in a task");
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned rounds = 8;
    const char *env = getenv("FAULT_ROUNDS");
    const char *scale = getenv("STRESS_SCALE");
    if (env && *env)
        rounds = (unsigned)atoi(env);
    else if (scale && *scale && atof(scale) > 0)
        rounds = (unsigned)(8 * atof(scale) + 0.5);
    if (argc == 3 && !strcmp(argv[1], "--rounds"))
        rounds = (unsigned)atoi(argv[2]);
    if (rounds == 0)
        rounds = 1;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;   /* no SA_RESTART: blocking calls see EINTR */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0)
        return 1;
    pthread_t sig;
    if (pthread_create(&sig, NULL, signaller, NULL) != 0)
        return 1;
    async_pool_config_t cfg = { .threads = 1 };
    async_pool_t *pool = async_pool_create(&cfg);
    if (!pool)
        return 1;

    for (unsigned r = 0; r < rounds; r++)
        for (unsigned k = 0; k < NWAITS; k++) {
            one_wait((enum wait_kind)k, "main thread");
            future_t *t = async_run_on(pool, waits_in_task, (void *)(uintptr_t)k);
            check(t && future_get_until(t, NULL, async_now() + 120 * ASYNC_SECOND) == 0,
                  "task with %s did not finish", wait_name[k]);
            future_free(t);
        }

    /* A slow machine (or valgrind) may let a short wait pass without a
     * signal: repeat such a kind until one lands, a bounded number of times. */
    for (unsigned k = 0; k < NWAITS; k++)
        for (unsigned extra = 0; extra < 50 && atomic_load(&hit_by_kind[k]) == 0; extra++)
            one_wait((enum wait_kind)k, "main thread, again");

    atomic_store(&stop, true);
    pthread_join(sig, NULL);
    check(async_pool_destroy(pool, ASYNC_DRAIN) == 0, "destroy");
    for (unsigned k = 0; k < NWAITS; k++)
        check(atomic_load(&hit_by_kind[k]) > 0, "%s was never hit by a signal while waiting",
              wait_name[k]);
    printf("fault_eintr: %u rounds, %u signals delivered\n", rounds, atomic_load(&hits_total));
    printf("%u passed, %u failed\n", atomic_load(&passed), atomic_load(&failed));
    return atomic_load(&failed) != 0;
}
