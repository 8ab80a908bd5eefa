/*
 * test/race_host.c — threads outside a pool that wake its parked tasks over
 * channels and may run them themselves while they wait (lib/runq.c,
 * "Fibers woken from outside").
 *
 * race_outside_fibers: PAIRS threads each play ping-pong with a task of
 * their own, each round through a plain receive, a select, or calls with
 * deadlines (which never run the task), so that each takes its task back
 * out of the pool's outside fiber slot, finds it replaced by another
 * thread's wake, or loses it to a worker after the grace. A feeding thread
 * wakes sink tasks and never waits on a reply, so its wakes push the other
 * threads' fibers out of the slot. Then the same again while another thread
 * destroys the pool with ASYNC_CANCEL in the middle: the tasks' calls
 * return ECANCELED wherever they run, each closes its answer channel, and
 * every thread stops. Checked: every answer is the negated question, in
 * order; each sink received exactly what was fed; every destroy returns 0.
 * Both modes (thread mode never runs a task on the waiting thread, but the
 * answers must be the same).
 */
#include "race.h"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PAIRS 3u
#define SINKS 4u

#define CHECK(t, cond, ...) tally_check((t), (cond), __VA_ARGS__)

struct pair {
    chan_t       *ping, *pong;
    future_t     *task;
    unsigned      rounds;
    unsigned      done;       /* rounds answered right (the thread's) */
    int           stop_rc;    /* the call that ended it early, or 0 */
    atomic_uint  *midway;     /* players a quarter through (or stopped) */
};

struct sink {
    chan_t      *in;
    future_t    *task;
    atomic_uint  got;
};

/* The task of a pair: answers -v until its channel fails (closed, or the
 * pool cancelling), then closes both channels. */
static void *answer(void *arg)
{
    struct pair *p = arg;
    int v, rc;
    while ((rc = chan_recv(p->ping, &v)) == 0) {
        v = -v;
        if ((rc = chan_send(p->pong, &v)) != 0)
            break;
    }
    chan_close(p->pong);
    chan_close(p->ping);   /* a player's send must not wait for nobody */
    return (void *)(intptr_t)rc;
}

static void *drain_sink(void *arg)
{
    struct sink *s = arg;
    int v;
    while (chan_recv(s->in, &v) == 0)
        atomic_fetch_add(&s->got, 1);
    return NULL;
}

/* One round, its way chosen by r: 0 when answered right. */
static int round_trip(struct pair *p, unsigned r)
{
    int v = (int)r + 1, got = 0, rc;
    int64_t deadline = async_now() + 60 * ASYNC_SECOND;
    switch (r % 4) {
    case 0:
    case 1:
        if ((rc = chan_send(p->ping, &v)) != 0 || (rc = chan_recv(p->pong, &got)) != 0)
            return rc;
        break;
    case 2: {
        if ((rc = chan_send(p->ping, &v)) != 0)
            return rc;
        chan_case_t c = { .chan = p->pong, .op = CHAN_RECV, .elem = &got };
        size_t which;
        if ((rc = chan_select(&c, 1, ASYNC_FOREVER, &which)) != 0)
            return rc;
        break;
    }
    default:
        if ((rc = chan_send_until(p->ping, &v, deadline)) != 0 ||
            (rc = chan_recv_until(p->pong, &got, deadline)) != 0)
            return rc;
    }
    return got == -v ? 0 : EILSEQ;
}

static void *player(void *arg)
{
    struct pair *p = arg;
    for (unsigned r = 0; r < p->rounds; r++) {
        int rc = round_trip(p, r);
        if (rc != 0) {
            p->stop_rc = rc;
            break;
        }
        if (++p->done == p->rounds / 4)
            atomic_fetch_add(p->midway, 1);
    }
    if (p->done < p->rounds / 4)
        atomic_fetch_add(p->midway, 1);   /* never counted above */
    chan_close(p->ping);
    return NULL;
}

struct feeder {
    struct sink *sinks;
    atomic_bool  stop;
    unsigned     fed[SINKS];   /* the feeder's */
};

static void *feed(void *arg)
{
    struct feeder *fd = arg;
    for (unsigned i = 0; !atomic_load(&fd->stop); i++) {
        int v = (int)i;
        unsigned k = i % SINKS;
        if (chan_send(fd->sinks[k].in, &v) != 0)
            break;
        fd->fed[k]++;
    }
    return NULL;
}

/* Play PAIRS games of `rounds` with a feeder; with `cancel`, destroy the
 * pool (ASYNC_CANCEL) once every player is a quarter through. */
static void play(struct tally *t, unsigned rounds, bool thread_mode, bool cancel)
{
    async_pool_t *pool = thread_mode ? race_thread_pool(t, 2, 0, NULL) : race_pool(t, 2, 0, NULL);
    if (!pool)
        return;
    atomic_uint midway = 0;
    struct pair pairs[PAIRS];
    struct sink sinks[SINKS];
    struct feeder fd = { .sinks = sinks };
    for (unsigned i = 0; i < PAIRS; i++) {
        pairs[i] = (struct pair){ .ping = chan_make(sizeof(int), 0),
                                  .pong = chan_make(sizeof(int), 0),
                                  .rounds = rounds, .midway = &midway };
        pairs[i].task = async_run_on(pool, answer, &pairs[i]);
        if (!pairs[i].ping || !pairs[i].pong || !pairs[i].task)
            abort();
    }
    for (unsigned k = 0; k < SINKS; k++) {
        sinks[k].in = chan_make(sizeof(int), 0);
        atomic_init(&sinks[k].got, 0);
        sinks[k].task = async_run_on(pool, drain_sink, &sinks[k]);
        if (!sinks[k].in || !sinks[k].task)
            abort();
    }
    pthread_t th[PAIRS], ft;
    if (pthread_create(&ft, NULL, feed, &fd) != 0)
        abort();
    for (unsigned i = 0; i < PAIRS; i++)
        if (pthread_create(&th[i], NULL, player, &pairs[i]) != 0)
            abort();
    if (cancel) {
        CHECK(t, tu_wait_count(&midway, PAIRS), "the players never got a quarter through");
        CHECK(t, async_pool_destroy(pool, ASYNC_CANCEL) == 0, "destroy (cancel) failed");
    }
    for (unsigned i = 0; i < PAIRS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&fd.stop, true);
    for (unsigned k = 0; k < SINKS; k++)
        chan_close(sinks[k].in);   /* ends the sinks, and a feeder's send */
    pthread_join(ft, NULL);
    unsigned answered = 0, fed = 0;
    for (unsigned i = 0; i < PAIRS; i++) {
        struct pair *p = &pairs[i];
        void *r = NULL;
        int rc = tu_get(p->task, &r);
        answered += p->done;
        if (!cancel)
            CHECK(t, p->done == rounds && p->stop_rc == 0 && rc == 0 && r == (void *)EPIPE,
                  "pair %u: %u of %u rounds (stopped by %d), task %d/%ld", i, p->done,
                  rounds, p->stop_rc, rc, (long)(intptr_t)r);
        else
            CHECK(t, p->stop_rc != EILSEQ && (p->done == rounds || p->stop_rc == EPIPE),
                  "pair %u: %u rounds, stopped by %d", i, p->done, p->stop_rc);
        future_free(p->task);
        chan_free(p->ping);
        chan_free(p->pong);
    }
    for (unsigned k = 0; k < SINKS; k++) {
        int rc = tu_get(sinks[k].task, NULL);
        CHECK(t, cancel || rc == 0, "sink %u: %d", k, rc);
        CHECK(t, atomic_load(&sinks[k].got) == fd.fed[k], "sink %u got %u of %u", k,
              atomic_load(&sinks[k].got), fd.fed[k]);
        fed += fd.fed[k];
        future_free(sinks[k].task);
        chan_free(sinks[k].in);
    }
    if (!cancel)
        race_destroy_pool(t, pool, ASYNC_DRAIN);
    tally_note(t, "%u rounds answered by %u tasks, %u values fed to %u sinks%s", answered,
               PAIRS, fed, SINKS, cancel ? ", cancelled midway" : "");
}

void race_outside_fibers(struct tally *t, unsigned rounds)
{
    tally_begin(t, "outside_fibers (goroutine mode)");
    play(t, rounds, false, false);
    tally_begin(t, "outside_fibers cancelled (goroutine mode)");
    play(t, rounds, false, true);
    tally_begin(t, "outside_fibers (thread mode)");
    play(t, rounds, true, false);
    tally_begin(t, "outside_fibers cancelled (thread mode)");
    play(t, rounds, true, true);
}
