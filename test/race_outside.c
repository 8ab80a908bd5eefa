/*
 * test/race_outside.c — threads outside a pool submitting to it, through
 * its outside slot and its injection queue at once (lib/runq.c, "The
 * outside slot").
 *
 * race_outside_slot: OUTSIDERS threads each submit tasks and wait for them
 * at once (a single task, or two waited for newest first), so that each
 * takes its task back out of the slot, finds it moved on by another's
 * submission, or loses it to a worker; a cancelling thread cancels some of
 * them as they are submitted; a bursting thread submits tasks it never
 * waits for, so that the queue is seldom empty. Checked once everything is
 * done: each task that was not cancelled ran exactly once, a cancelled one
 * never ran, and the pool's counts add up. Both modes. Under AddressSanitizer
 * a record freed twice or never is an error of its own.
 */
#include "race.h"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define OUTSIDERS 3u
#define BURST     32u

#define CHECK(t, cond, ...) tally_check((t), (cond), __VA_ARGS__)

/* One task an outsider may submit: how often it ran, and what its
 * submitter saw (written by that thread only, read once it has joined). */
struct job {
    atomic_uint runs;
    bool        submitted, cancelled;
    int         get_rc;
    void       *got;
};

struct outside {
    async_pool_t *pool;
    unsigned      rounds;
    struct job   *jobs;            /* 2 per outsider per round */
    atomic_uint   submit_failed;
    atomic_bool   stop;            /* the burster stops */
    atomic_uint   burst_ran;
    unsigned      bursts;          /* written by the burster only */
};

struct outsider_arg {
    struct outside *o;
    unsigned        index;
};

static void *run_job(void *arg)
{
    struct job *j = arg;
    atomic_fetch_add(&j->runs, 1);
    return arg;
}

static void *count_burst(void *arg)
{
    atomic_fetch_add(&((struct outside *)arg)->burst_ran, 1);
    return NULL;
}

static future_t *submit(struct outside *o, struct job *j)
{
    future_t *f = async_run_on(o->pool, run_job, j);
    if (!f)
        atomic_fetch_add(&o->submit_failed, 1);
    j->submitted = f != NULL;
    return f;
}

static void get(future_t *f, struct job *j)
{
    if (f)
        j->get_rc = future_get(f, &j->got);
    future_free(f);
}

/* Round r: submit a (and b on odd rounds); cancel a on every fifth round;
 * wait for b, then a. */
static void *outsider(void *arg)
{
    struct outsider_arg *a = arg;
    struct outside *o = a->o;
    for (unsigned r = 0; r < o->rounds; r++) {
        struct job *ja = &o->jobs[(r * OUTSIDERS + a->index) * 2], *jb = ja + 1;
        future_t *fa = submit(o, ja);
        future_t *fb = (r & 1) ? submit(o, jb) : NULL;
        if (fa && (r + a->index) % 5 == 0)
            ja->cancelled = future_cancel(fa) == 0;
        get(fb, jb);   /* the newest first: the slot's, if it got there */
        get(fa, ja);
    }
    return NULL;
}

/* Tasks nobody waits for, a burst at a time, no more than two queued. */
static void *burster(void *arg)
{
    struct outside *o = arg;
    while (!atomic_load(&o->stop)) {
        for (unsigned i = 0; i < BURST; i++) {
            future_t *f = async_run_on(o->pool, count_burst, o);
            if (!f) {
                atomic_fetch_add(&o->submit_failed, 1);
                return NULL;
            }
            future_free(f);
            o->bursts++;
        }
        async_pool_stats_t st;
        while (!atomic_load(&o->stop) && async_pool_stats(o->pool, &st) == 0 &&
               st.queued > 2 * BURST)
            sched_yield();
    }
    return NULL;
}

static void check_jobs(struct tally *t, struct outside *o)
{
    unsigned n = o->rounds * OUTSIDERS * 2, submitted = 0, cancelled = 0;
    for (unsigned i = 0; i < n; i++) {
        struct job *j = &o->jobs[i];
        unsigned runs = atomic_load(&j->runs);
        if (!j->submitted) {
            CHECK(t, runs == 0, "job %u: not submitted, ran %u times", i, runs);
            continue;
        }
        submitted++;
        if (j->cancelled) {
            cancelled++;
            CHECK(t, runs == 0 && j->get_rc == ECANCELED,
                  "job %u: cancelled, ran %u times, get %d", i, runs, j->get_rc);
        } else {
            CHECK(t, runs == 1 && j->get_rc == 0 && j->got == j,
                  "job %u: ran %u times, get %d", i, runs, j->get_rc);
        }
    }
    tally_note(t, "%u tasks waited for at once by %u threads (%u cancelled), %u in bursts",
               submitted, OUTSIDERS, cancelled, o->bursts);
}

static void outside_mode(struct tally *t, unsigned rounds, bool thread_mode)
{
    struct outside o = { .rounds = rounds };
    o.pool = thread_mode ? race_thread_pool(t, 2, 0, NULL) : race_pool(t, 2, 0, NULL);
    o.jobs = calloc((size_t)rounds * OUTSIDERS * 2, sizeof *o.jobs);
    if (!o.pool || !CHECK(t, o.jobs != NULL, "calloc: %s", strerror(errno))) {
        if (o.pool)
            race_destroy_pool(t, o.pool, ASYNC_DRAIN);
        free(o.jobs);
        return;
    }
    pthread_t th[OUTSIDERS], bt;
    struct outsider_arg args[OUTSIDERS];
    bool burst_started = pthread_create(&bt, NULL, burster, &o) == 0;
    for (unsigned i = 0; i < OUTSIDERS; i++) {
        args[i] = (struct outsider_arg){ &o, i };
        if (pthread_create(&th[i], NULL, outsider, &args[i]) != 0)
            abort();
    }
    for (unsigned i = 0; i < OUTSIDERS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&o.stop, true);
    if (burst_started)
        pthread_join(bt, NULL);
    CHECK(t, atomic_load(&o.submit_failed) == 0, "%u submissions failed",
          atomic_load(&o.submit_failed));
    race_destroy_pool(t, o.pool, ASYNC_DRAIN);
    CHECK(t, atomic_load(&o.burst_ran) == o.bursts, "%u of %u burst tasks ran",
          atomic_load(&o.burst_ran), o.bursts);
    check_jobs(t, &o);
    free(o.jobs);
}

void race_outside_slot(struct tally *t, unsigned rounds)
{
    tally_begin(t, "outside_slot (goroutine mode)");
    outside_mode(t, rounds, false);
    tally_begin(t, "outside_slot (thread mode)");
    outside_mode(t, rounds, true);
}
