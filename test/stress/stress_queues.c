/*
 * test/stress/stress_queues.c — the scheduler's two queues, driven directly
 * (no pool): the per-worker Chase–Lev deque (lib/deque.c) and the injection
 * queue (Vyukov's MPSC queue, lib/runq.c).
 *
 * deque: one owner pushes and pops at the bottom while 3 thieves steal from
 * the top; 5 * 10^6 items at scale 1, so 10^7 successful operations (each
 * item pushed once and taken once), in rounds of a fresh deque whose owner
 * pushes bursts past the ring's size, so that it grows 4 times per round
 * while thieves steal. Checked: every item taken exactly once (none lost,
 * none twice) and each thief's steals in push order (top only moves up).
 *
 * inject: producers push their items in order while consumers pop (one
 * consumer, then two; consumers serialise on the queue's lock as workers
 * do), in rounds of a few items each: at the end of each round the
 * consumers pop until the producers are done and the queue reads empty.
 * Checked: every item exactly once, each producer's items in order as each
 * consumer sees them, and the queue never reads empty while an item is
 * still in it (the injection queue's lost-task bug: a consumer re-pushing
 * the stub behind the last node left head == stub with that node queued;
 * it shows only when no push follows, so every round's end is a chance).
 *
 * Scale: argv[1] or $STRESS_SCALE (default 1); a sanitizer build runs a
 * tenth of it (the full size takes a minute and more under ThreadSanitizer
 * on two cores). Prints what it checked and "N passed, M failed".
 */
#include "stressmain.h"

#include "sched_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#  define SANITIZED 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#    define SANITIZED 1
#  endif
#endif
#ifdef SANITIZED
#  define SIZE_DIVISOR 10
#else
#  define SIZE_DIVISOR 1
#endif

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* ================================================================ deque */

#define THIEVES     3
#define ROUND_ITEMS 20000u

struct dq_test {
    struct async_deque dq;
    pthread_barrier_t  start, end;
    unsigned           rounds;
    _Atomic unsigned   round_done;      /* the owner saw every item taken */
    _Atomic unsigned   taken;           /* items taken this round */
    _Atomic unsigned char *seen;        /* per item: times taken */
    _Atomic unsigned long dups, order_breaks, steals, steal_tries;
};

/* Items are 1-based indices (NULL is "nothing"). */
static void dq_take(struct dq_test *t, void *it)
{
    size_t i = (size_t)(uintptr_t)it - 1;
    if (atomic_fetch_add_explicit(&t->seen[i], 1, memory_order_relaxed) != 0)
        atomic_fetch_add(&t->dups, 1);
    atomic_fetch_add_explicit(&t->taken, 1, memory_order_release);
}

static void *dq_thief(void *arg)
{
    struct dq_test *t = arg;
    unsigned long steals = 0, tries = 0;
    for (unsigned r = 0; r < t->rounds; r++) {
        pthread_barrier_wait(&t->start);
        uintptr_t last = 0;
        unsigned misses = 0;
        while (!atomic_load_explicit(&t->round_done, memory_order_acquire)) {
            tries++;
            void *it = async__deque_steal(&t->dq);
            if (!it) {
                if (++misses % 64 == 0)
                    sched_yield();   /* two cores: let the owner push */
                continue;
            }
            steals++;
            if ((uintptr_t)it <= last)
                atomic_fetch_add(&t->order_breaks, 1);
            last = (uintptr_t)it;
            dq_take(t, it);
        }
        pthread_barrier_wait(&t->end);
    }
    atomic_fetch_add(&t->steals, steals);
    atomic_fetch_add(&t->steal_tries, tries);
    return NULL;
}

/* One round on a fresh deque: bursts of pushes (a few past the ring's size,
 * so that it grows under the thieves) and pops, then pop what is left. */
static bool dq_round(struct dq_test *t, unsigned r, uint64_t *rng, unsigned long *pops)
{
    uintptr_t next = (uintptr_t)r * ROUND_ITEMS + 1, end = next + ROUND_ITEMS;
    unsigned burst_big = 300;
    bool ok = true;
    while (next < end) {
        unsigned k = (unsigned)(rng_next(rng) % 48) + 1;
        if (rng_next(rng) % 64 == 0 && burst_big <= 4200) {
            k = burst_big;   /* 300, 600, 1200, 2400, 4800: grows the ring */
            burst_big *= 2;
        }
        for (unsigned i = 0; i < k && next < end; i++)
            if (async__deque_push(&t->dq, (void *)next++) != 0)
                ok = false;
        /* pop about a third of what was pushed: the thieves get the rest
         * (and race the owner for the last entry when few are left) */
        unsigned j = (unsigned)(rng_next(rng) % (k / 2 + 2));
        for (unsigned i = 0; i < j; i++) {
            void *it = async__deque_pop(&t->dq);
            if (!it)
                break;
            (*pops)++;
            dq_take(t, it);
        }
        if (rng_next(rng) % 8 == 0)
            sched_yield();   /* on a busy machine the thieves must run too */
    }
    void *it;
    while ((it = async__deque_pop(&t->dq)) != NULL) {
        (*pops)++;
        dq_take(t, it);
    }
    /* A thief that won its CAS counts its item just after: wait for it. */
    while (atomic_load_explicit(&t->taken, memory_order_acquire) < ROUND_ITEMS)
        sched_yield();
    return ok;
}

static void deque_scenario(struct tally *tl, unsigned rounds)
{
    tally_begin(tl, "deque: owner push/pop against 3 thieves, growth while stealing");
    struct dq_test *t = calloc(1, sizeof *t);
    size_t n = (size_t)rounds * ROUND_ITEMS;
    t->seen = calloc(n, 1);
    if (!tally_check(tl, t && t->seen, "out of memory")) {
        if (t)
            free((void *)t->seen);
        free(t);
        return;
    }
    t->rounds = rounds;
    pthread_barrier_init(&t->start, NULL, THIEVES + 1);
    pthread_barrier_init(&t->end, NULL, THIEVES + 1);
    pthread_t th[THIEVES];
    for (int i = 0; i < THIEVES; i++)
        pthread_create(&th[i], NULL, dq_thief, t);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    unsigned long pops = 0;
    bool pushes_ok = true, empty_ok = true;
    for (unsigned r = 0; r < rounds; r++) {
        if (async__deque_init(&t->dq) != 0) {
            tally_check(tl, false, "async__deque_init failed");
            break;
        }
        atomic_store(&t->taken, 0);
        atomic_store(&t->round_done, 0);
        pthread_barrier_wait(&t->start);
        pushes_ok &= dq_round(t, r, &rng, &pops);
        atomic_store_explicit(&t->round_done, 1, memory_order_release);
        pthread_barrier_wait(&t->end);
        empty_ok &= async__deque_empty(&t->dq) && async__deque_pop(&t->dq) == NULL &&
                    async__deque_steal(&t->dq) == NULL;
        async__deque_fini(&t->dq);
    }
    for (int i = 0; i < THIEVES; i++)
        pthread_join(th[i], NULL);
    size_t lost = 0, twice = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = atomic_load_explicit(&t->seen[i], memory_order_relaxed);
        lost += c == 0;
        twice += c > 1;
    }
    unsigned long steals = atomic_load(&t->steals);
    tally_check(tl, pushes_ok, "deque: a push failed (no memory to grow)");
    tally_check(tl, lost == 0, "deque: %zu of %zu items never taken", lost, n);
    tally_check(tl, twice == 0 && atomic_load(&t->dups) == 0, "deque: %zu items taken twice",
                twice);
    tally_check(tl, atomic_load(&t->order_breaks) == 0,
                "deque: %lu steals out of push order", atomic_load(&t->order_breaks));
    tally_check(tl, empty_ok, "deque: not empty at the end of a round");
    tally_check(tl, pops + steals == n, "deque: %lu pops + %lu steals != %zu items", pops,
                steals, n);
    tally_check(tl, steals > 0 && pops > 0, "deque: no contention (%lu steals, %lu pops)",
                steals, pops);
    tally_note(tl, "deque: %zu items in %u rounds: %zu pushes, %lu pops, %lu steals "
               "(%lu attempts): %zu operations", n, rounds, n, pops, steals,
               atomic_load(&t->steal_tries), n + pops + steals);
    pthread_barrier_destroy(&t->start);
    pthread_barrier_destroy(&t->end);
    free((void *)t->seen);
    free(t);
}

/* ============================================================== inject */

#define MAXPROD 4
#define MAXCONS 2

struct item {
    void *_Atomic next;   /* the queue's link: first */
    unsigned      producer;
    unsigned      seq;
};

struct mq_test {
    struct async_mpsc  q;
    unsigned           nprod, ncons, per, rounds;
    struct item       *items;            /* nprod * per */
    _Atomic unsigned char *seen;
    pthread_barrier_t  start, end;       /* every producer and consumer */
    unsigned           burst[1024];      /* items per producer, per round */
    _Atomic unsigned   producers_done;   /* rounds finished, summed over
                                            producers */
    _Atomic unsigned long received, dups, order_breaks, false_empty;
};

struct mq_arg {
    struct mq_test *t;
    unsigned        index;
};

static void *mq_producer(void *arg)
{
    struct mq_arg *a = arg;
    struct mq_test *t = a->t;
    unsigned s = 0;
    for (unsigned r = 0; r < t->rounds; r++) {
        pthread_barrier_wait(&t->start);
        unsigned end = r + 1 == t->rounds ? t->per : s + t->burst[r % 1024];
        for (; s < end && s < t->per; s++)
            async__test_mpsc_push(&t->q, &t->items[(size_t)a->index * t->per + s]);
        atomic_fetch_add(&t->producers_done, 1);
        pthread_barrier_wait(&t->end);
    }
    return NULL;
}

static void mq_receive(struct mq_test *t, struct item *it, unsigned *next_seq, bool *any)
{
    size_t i = (size_t)(it - t->items);
    if (atomic_fetch_add_explicit(&t->seen[i], 1, memory_order_relaxed) != 0)
        atomic_fetch_add(&t->dups, 1);
    if (any[it->producer] && it->seq < next_seq[it->producer])
        atomic_fetch_add(&t->order_breaks, 1);
    any[it->producer] = true;
    next_seq[it->producer] = it->seq + 1;
    atomic_fetch_add(&t->received, 1);
}

/* Each round: pop until every producer of the round is done and the queue
 * reads empty; then nothing may be left (what the round pushed). */
static void *mq_consumer(void *arg)
{
    struct mq_test *t = arg;
    unsigned next_seq[MAXPROD] = { 0 };
    bool any[MAXPROD] = { false };
    unsigned long expected = 0;
    unsigned misses = 0;
    for (unsigned r = 0; r < t->rounds; r++) {
        pthread_barrier_wait(&t->start);
        unsigned b = t->burst[r % 1024];
        expected = r + 1 == t->rounds ? (unsigned long)t->nprod * t->per
                                      : expected + (unsigned long)t->nprod * b;
        if (expected > (unsigned long)t->nprod * t->per)
            expected = (unsigned long)t->nprod * t->per;
        for (;;) {
            struct item *it = async__test_mpsc_pop(&t->q);
            if (it) {
                mq_receive(t, it, next_seq, any);
                continue;
            }
            /* read done first: every push of the round finished before */
            if (atomic_load(&t->producers_done) == t->nprod * (r + 1) &&
                async__test_mpsc_empty(&t->q))
                break;
            if (++misses % 16 == 0)
                sched_yield();
        }
        pthread_barrier_wait(&t->end);
        /* nobody pushes or pops until every thread is at the next start */
        if (atomic_load(&t->received) != expected)
            atomic_fetch_add(&t->false_empty, 1);
    }
    return NULL;
}

static void inject_scenario(struct tally *tl, unsigned nprod, unsigned ncons, unsigned per)
{
    tally_begin(tl, "inject: several producers, every item once, in order per producer");
    struct mq_test *t = calloc(1, sizeof *t);
    size_t n = (size_t)nprod * per;
    if (t) {
        t->items = calloc(n, sizeof *t->items);
        t->seen = calloc(n, 1);
    }
    if (!tally_check(tl, t && t->items && t->seen && async__mpsc_init(&t->q) == 0,
                     "out of memory")) {
        if (t) {
            free(t->items);
            free((void *)t->seen);
        }
        free(t);
        return;
    }
    t->nprod = nprod;
    t->ncons = ncons;
    t->per = per;
    for (unsigned p = 0; p < nprod; p++)
        for (unsigned s = 0; s < per; s++)
            t->items[(size_t)p * per + s] = (struct item){ .producer = p, .seq = s };
    /* rounds of 1..32 items per producer (about 16): each round's end is a
     * race of the last pushes against the consumers' pops */
    uint64_t rng = 0x2545F4914F6CDD1Dull ^ nprod;
    unsigned long sum = 0;
    for (unsigned i = 0; i < 1024; i++) {
        t->burst[i] = (unsigned)(rng_next(&rng) % 32) + 1;
        sum += t->burst[i];
    }
    t->rounds = (unsigned)((unsigned long)per * 1024 / sum) + 1;
    pthread_barrier_init(&t->start, NULL, nprod + ncons);
    pthread_barrier_init(&t->end, NULL, nprod + ncons);
    pthread_t pt[MAXPROD], ct[MAXCONS];
    struct mq_arg args[MAXPROD];
    for (unsigned c = 0; c < ncons; c++)
        pthread_create(&ct[c], NULL, mq_consumer, t);
    for (unsigned p = 0; p < nprod; p++) {
        args[p] = (struct mq_arg){ t, p };
        pthread_create(&pt[p], NULL, mq_producer, &args[p]);
    }
    for (unsigned p = 0; p < nprod; p++)
        pthread_join(pt[p], NULL);
    for (unsigned c = 0; c < ncons; c++)
        pthread_join(ct[c], NULL);
    size_t lost = 0;
    for (size_t i = 0; i < n; i++)
        lost += atomic_load_explicit(&t->seen[i], memory_order_relaxed) == 0;
    tally_check(tl, atomic_load(&t->false_empty) == 0,
                "inject (%u producers, %u consumers): read empty with items in it, "
                "in %lu of %u rounds", nprod, ncons, atomic_load(&t->false_empty), t->rounds);
    tally_check(tl, lost == 0, "inject (%u producers, %u consumers): %zu of %zu items lost",
                nprod, ncons, lost, n);
    tally_check(tl, atomic_load(&t->dups) == 0, "inject: %lu items received twice",
                atomic_load(&t->dups));
    tally_check(tl, atomic_load(&t->order_breaks) == 0,
                "inject: %lu items out of their producer's order",
                atomic_load(&t->order_breaks));
    tally_check(tl, async__test_mpsc_empty(&t->q) && async__test_mpsc_pop(&t->q) == NULL,
                "inject: not empty at the end");
    tally_note(tl, "inject: %u producers x %u items, %u consumer(s), %u rounds: %zu items, "
               "each once, in order", nprod, per, ncons, t->rounds, n);
    pthread_barrier_destroy(&t->start);
    pthread_barrier_destroy(&t->end);
    async__mpsc_fini(&t->q);
    free(t->items);
    free((void *)t->seen);
    free(t);
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv) / SIZE_DIVISOR;
    struct tally t;
    tally_init(&t, true);
    deque_scenario(&t, stress_n(scale, 250));   /* 250 rounds: 5 * 10^6 items */
    inject_scenario(&t, 4, 1, stress_n(scale, 500000));
    inject_scenario(&t, 3, 2, stress_n(scale, 500000));
    return stress_finish(&t);
}
