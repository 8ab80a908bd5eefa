/*
 * test/stress/stress_destroy_race.c — async_pool_destroy racing the threads
 * that still hold futures of the pool: one thread destroys while another
 * cancels a running task, cancels queued tasks (ASYNC_CANCEL and
 * ASYNC_DRAIN), waits without a deadline (claiming queued tasks to run
 * them inline) while the pool's own tasks submit more, or sends to a task
 * parked in chan_recv (waking a goroutine-mode fiber from outside its
 * pool: the waker queues it, and the pool must not go before the waker has
 * finished signalling). Every round: destroy
 * returns 0 without hanging, every future is done, every call answers one of
 * its documented codes; the sanitizer builds see any touch of the freed pool.
 *
 * The windows are a few instructions wide, so the racing thread is paused,
 * in one round of two, where it has read a record and is about to act on it
 * (the library's test hook async__test_window), for PAUSE_NS: longer than a
 * destroy of a one-worker pool takes.
 *
 * A plain program (the ThreadSanitizer build runs it; Criterion cannot run
 * there). Scale: argv[1] or $STRESS_SCALE (default 1: 10,000 rounds in all).
 * Prints what it checked and "N passed, M failed"; exits non-zero on any
 * failure. A round that hangs (a drain that never ends) is reported by an
 * alarm and fails the program.
 */
#include "stressmain.h"
#include "testutil.h"
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NQUEUED  8
#define HANG_S   60
#define PAUSE_NS (200 * ASYNC_MICROSECOND)

enum scenario { CANCEL_RUNNING, CANCEL_QUEUED_CANCEL, CANCEL_QUEUED_DRAIN, GET_INLINE,
                WAKE_PARKED, NSCENARIOS };
static const char *const names[NSCENARIOS] = {
    "cancel_running_vs_destroy", "cancel_queued_vs_destroy_cancel",
    "cancel_queued_vs_destroy_drain", "get_inline_vs_destroy", "wake_parked_vs_destroy",
};

struct round {
    enum scenario     kind;
    pthread_barrier_t go;
    future_t         *running;          /* CANCEL_RUNNING, WAKE_PARKED */
    chan_t           *chan;             /* WAKE_PARKED */
    tu_gate_t         started, release;
    future_t         *fs[NQUEUED];
    int               rc[NQUEUED];      /* what the racing thread's calls returned */
    unsigned          seed;
};

static _Thread_local bool is_racer;    /* this thread may be paused */
static _Thread_local bool pause_armed; /* once per round, in one round of two */

static atomic_uint npaused;           /* pauses made, per scenario */

static void pause_racer(void)
{
    if (!is_racer || !pause_armed)
        return;
    pause_armed = false;
    atomic_fetch_add(&npaused, 1);
    int64_t until = tu_clock() + PAUSE_NS;
    while (tu_clock() < until)
        ;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL destroy_race: a round hung (destroy never returned)\n";
    ssize_t n = write(2, msg, sizeof msg - 1);
    (void)n;
    _exit(1);
}

static void *spin_until_cancelled(void *arg)
{
    tu_gate_open(arg);
    while (!async_cancelled())
        sched_yield();
    return NULL;
}

static void *block_until_cancelled(void *arg)
{
    tu_gate_open(arg);
    async_sleep_until(ASYNC_FOREVER);   /* ends with ECANCELED */
    return NULL;
}

/* Holds the only worker until the round lets it go (or cancels it). */
static void *hold_until_released(void *arg)
{
    struct round *r = arg;
    tu_gate_open(&r->started);
    while (!tu_gate_is_open(&r->release) && !async_cancelled())
        sched_yield();
    return NULL;
}

static void *child(void *arg)
{
    return arg;
}

/* WAKE_PARKED: waits for the racer's value. */
static void *receive_one(void *arg)
{
    int v = 0;
    int rc = chan_recv(arg, &v);
    return (void *)(intptr_t)(rc ? -rc : v);
}

/* A queued task of the pool that submits a child (its own work: accepted
 * while the pool drains, refused once it cancels). */
static void *parent(void *arg)
{
    future_t *c = async_run(child, arg);
    if (c) {
        future_get(c, NULL);
        future_free(c);
    }
    return arg;
}

static void *racer(void *arg)
{
    struct round *r = arg;
    is_racer = true;
    pause_armed = rand_r(&r->seed) % 2;
    pthread_barrier_wait(&r->go);
    switch (r->kind) {
    case CANCEL_RUNNING:
        r->rc[0] = future_cancel(r->running);
        break;
    case CANCEL_QUEUED_CANCEL:
    case CANCEL_QUEUED_DRAIN:
        for (int i = NQUEUED; i-- > 0;)
            r->rc[i] = future_cancel(r->fs[i]);
        break;
    case GET_INLINE:
        for (int i = NQUEUED; i-- > 0;)
            r->rc[i] = future_get(r->fs[i], NULL);
        break;
    case WAKE_PARKED: {
        int v = 7;
        r->rc[0] = chan_send(r->chan, &v);
        break;
    }
    default:
        break;
    }
    return NULL;
}

static bool rc_ok(enum scenario kind, int rc)
{
    switch (kind) {
    case CANCEL_RUNNING:
        return rc == EBUSY || rc == EALREADY;
    case WAKE_PARKED:
        return rc == 0;
    case GET_INLINE:
        return rc == 0 || rc == ECANCELED;
    default:
        return rc == 0 || rc == EBUSY || rc == EALREADY;
    }
}


static void one_round(struct tally *t, enum scenario kind, unsigned n)
{
    struct tu_log log;
    tu_log_init(&log);
    struct round r = { .kind = kind, .seed = n * 7919u + (unsigned)kind };
    /* max_threads 1: a blocked task gets no replacement, so what is queued
     * behind it stays queued until the destroy. */
    async_pool_t *pool = tu_pool(1, 1, &log);
    if (!tally_check(t, pool != NULL, "async_pool_create failed"))
        return;
    future_t *blocker = NULL;
    if (kind == CANCEL_RUNNING) {
        r.running = async_run_on(pool, spin_until_cancelled, &r.started);
        tu_gate_wait(&r.started);
    } else if (kind == WAKE_PARKED) {
        r.chan = chan_make(sizeof(int), 0);
        r.running = async_run_on(pool, receive_one, r.chan);
        async_pool_stats_t st;
        int64_t until = tu_deadline();
        while (async_pool_stats(pool, &st) == 0 && tu_blocked(&st) == 0 && tu_spin_once(until))
            ;
    } else if (kind == CANCEL_QUEUED_CANCEL) {
        blocker = async_run_on(pool, block_until_cancelled, &r.started);
        tu_gate_wait(&r.started);
    } else if (kind == GET_INLINE || kind == CANCEL_QUEUED_DRAIN) {
        blocker = async_run_on(pool, hold_until_released, &r);
        tu_gate_wait(&r.started);
    }
    if (kind != CANCEL_RUNNING && kind != WAKE_PARKED)
        for (int i = 0; i < NQUEUED; i++)
            r.fs[i] = async_run_on(pool, kind == GET_INLINE ? parent : child,
                                   (void *)(uintptr_t)(i + 1));
    async_shutdown_t how = kind == CANCEL_QUEUED_CANCEL || (kind == GET_INLINE && n % 2)
                               ? ASYNC_CANCEL : ASYNC_DRAIN;
    pthread_barrier_init(&r.go, NULL, 2);
    pthread_t th;
    pthread_create(&th, NULL, racer, &r);
    pthread_barrier_wait(&r.go);
    tu_gate_open(&r.release);
    alarm(HANG_S);
    int rc = async_pool_destroy(pool, how);
    alarm(0);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&r.go);
    tally_check(t, rc == 0, "round %u: destroy returned %d", n, rc);
    if (kind == CANCEL_RUNNING || kind == WAKE_PARKED) {
        tally_check(t, future_done(r.running), "round %u: the running task is not done", n);
        tally_check(t, rc_ok(kind, r.rc[0]), "round %u: the racer's call returned %d", n,
                    r.rc[0]);
        if (kind == WAKE_PARKED) {
            void *v = NULL;
            tally_check(t, future_get(r.running, &v) == 0 && (intptr_t)v == 7,
                        "round %u: the parked task got %ld", n, (long)(intptr_t)v);
            chan_free(r.chan);
        }
        future_free(r.running);
    }
    for (int i = 0; kind != CANCEL_RUNNING && kind != WAKE_PARKED && i < NQUEUED; i++) {
        tally_check(t, future_done(r.fs[i]), "round %u: future %d is not done", n, i);
        tally_check(t, rc_ok(kind, r.rc[i]), "round %u: the racer's call on future %d "
                    "returned %d", n, i, r.rc[i]);
        future_free(r.fs[i]);
    }
    future_free(blocker);
    tu_log_fini(&log);
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    struct tally t;
    tally_init(&t, true);
    signal(SIGALRM, on_alarm);
    async__test_window = pause_racer;
    /* The scenarios run, each added with the fix it checks. */
    static const enum scenario run[] = { CANCEL_RUNNING, CANCEL_QUEUED_CANCEL,
                                         CANCEL_QUEUED_DRAIN, GET_INLINE, WAKE_PARKED };
    const size_t nrun = sizeof run / sizeof run[0];
    unsigned rounds = stress_n(scale, 10000 / NSCENARIOS);
    const char *only = getenv("DESTROY_RACE_ONLY");   /* one scenario, by name */
    for (size_t i = 0; i < nrun; i++) {
        enum scenario k = run[i];
        if (only && strcmp(only, names[k]) != 0)
            continue;
        tally_begin(&t, names[k]);
        for (unsigned n = 0; n < rounds; n++)
            one_round(&t, k, n);
        tally_note(&t, "%u rounds, the racer paused in %u", rounds, atomic_exchange(&npaused, 0));
    }
    return stress_finish(&t);
}
