/*
 * test/race.c — the race and stress scenarios (see race.h).
 *
 * Conventions: helper threads and tasks write what they observed into plain
 * structs; the calling thread reads them after a synchronising event (a
 * barrier, a completed future, a joined thread, a destroyed pool) and records
 * checks in the tally. Ordering is by barriers, gates and futures — never by
 * sleeping; the only sleeps are the workload of tasks that are meant to be
 * cancelled.
 */
#include "race.h"

#include "internal.h"
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------- tally */

void tally_init(struct tally *t, bool verbose)
{
    memset(t, 0, sizeof *t);
    t->scenario = "?";
    t->verbose = verbose;
}

void tally_begin(struct tally *t, const char *scenario)
{
    t->scenario = scenario;
}

bool tally_check(struct tally *t, bool ok, const char *fmt, ...)
{
    t->checks++;
    if (ok)
        return true;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (t->failures == 0)
        snprintf(t->first, sizeof t->first, "%s: %s", t->scenario, msg);
    if (t->verbose || t->failures < 10)
        fprintf(stderr, "FAIL %s: %s\n", t->scenario, msg);
    t->failures++;
    return false;
}

void tally_note(struct tally *t, const char *fmt, ...)
{
    if (!t->verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("%s: ", t->scenario);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

#define CHECK(t, cond, ...) tally_check((t), (cond), __VA_ARGS__)

async_pool_t *race_pool(struct tally *t, unsigned threads, unsigned max, struct tu_log *log)
{
    async_pool_t *pool = tu_pool(threads, max, log);
    CHECK(t, pool != NULL, "async_pool_create(%u, %u) failed: %s", threads, max,
          strerror(errno));
    return pool;
}

/* Thread mode, for what only it does (replacements, saturation). */
async_pool_t *race_thread_pool(struct tally *t, unsigned threads, unsigned max,
                               struct tu_log *log)
{
    async_pool_t *pool = tu_pool_thread(threads, max, log);
    CHECK(t, pool != NULL, "async_pool_create(%u, %u, thread mode) failed: %s", threads, max,
          strerror(errno));
    return pool;
}

void race_destroy_pool(struct tally *t, async_pool_t *pool, async_shutdown_t how)
{
    int rc = async_pool_destroy(pool, how);
    CHECK(t, rc == 0, "async_pool_destroy returned %d", rc);
}

static void barrier(pthread_barrier_t *b)
{
    int rc = pthread_barrier_wait(b);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD)
        abort();
}

static void yield_n(unsigned n)
{
    while (n--)
        sched_yield();
}

long fib_expected(int n)
{
    long a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        long c = a + b;
        a = b;
        b = c;
    }
    return a;
}

/* ---------------------------------------------------- many getters */

enum getter_kind { G_TASK, G_PROMISE, G_FAIL, G_KINDS };

struct getters {
    pthread_barrier_t start, end;
    future_t         *f;       /* published before `start` */
    bool              quit;
    struct getter_slot {
        struct getters *g;
        unsigned        index;
        int             rc;
        void           *r;
    } *slots;
};

static void *getter_main(void *arg)
{
    struct getter_slot *s = arg;
    struct getters *g = s->g;
    for (;;) {
        barrier(&g->start);
        if (g->quit)
            return NULL;
        s->r = NULL;
        switch (s->index % 3) {
        case 0:
            s->rc = future_get(g->f, &s->r);
            break;
        case 1:
            s->rc = future_get_until(g->f, &s->r, ASYNC_FOREVER);
            break;
        default:
            s->rc = future_wait_all(&g->f, 1, ASYNC_FOREVER);
            if (s->rc == 0)
                s->rc = future_get_until(g->f, &s->r, 0);
            break;
        }
        barrier(&g->end);
    }
}

struct once_task {
    atomic_uint runs;
    unsigned    value;
};

static void *once_task(void *arg)
{
    struct once_task *o = arg;
    atomic_fetch_add(&o->runs, 1);
    return (void *)(uintptr_t)o->value;
}

static void *once_fail_task(void *arg)
{
    struct once_task *o = arg;
    atomic_fetch_add(&o->runs, 1);
    async_panic(ENOTRECOVERABLE, "round %u", o->value);
}

static void getters_round(struct tally *t, struct getters *g, unsigned n,
                          async_pool_t *pool, unsigned round)
{
    enum getter_kind kind = round % G_KINDS;
    struct once_task o = { .runs = 0, .value = round + 1 };
    promise_t *p = NULL;
    if (kind == G_PROMISE) {
        p = promise_make();
        g->f = promise_future(p);
    } else {
        g->f = async_run_on(pool, kind == G_TASK ? once_task : once_fail_task, &o);
    }
    if (!CHECK(t, g->f != NULL, "round %u: no future (%s)", round, strerror(errno))) {
        promise_free(p);
        return;
    }
    barrier(&g->start);
    if (kind == G_PROMISE)
        CHECK(t, promise_complete(p, (void *)(uintptr_t)o.value) == 0, "complete failed");
    barrier(&g->end);
    int want = kind == G_FAIL ? ENOTRECOVERABLE : 0;
    for (unsigned i = 0; i < n; i++) {
        struct getter_slot *s = &g->slots[i];
        CHECK(t, s->rc == want, "round %u getter %u: rc %d, want %d", round, i, s->rc, want);
        if (want == 0)
            CHECK(t, s->r == (void *)(uintptr_t)o.value, "round %u getter %u: wrong value",
                  round, i);
    }
    if (kind != G_PROMISE)
        CHECK(t, atomic_load(&o.runs) == 1, "round %u: task ran %u times", round,
              atomic_load(&o.runs));
    future_free(g->f);
    promise_free(p);
}

void race_many_getters(struct tally *t, unsigned rounds, unsigned getters)
{
    tally_begin(t, "many_getters");
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = race_pool(t, 2, 0, &log);
    struct getters g = { .quit = false };
    pthread_t *threads = calloc(getters, sizeof *threads);
    g.slots = calloc(getters, sizeof *g.slots);
    if (!pool || !threads || !g.slots)
        goto out;
    pthread_barrier_init(&g.start, NULL, getters + 1);
    pthread_barrier_init(&g.end, NULL, getters + 1);
    for (unsigned i = 0; i < getters; i++) {
        g.slots[i] = (struct getter_slot){ .g = &g, .index = i };
        pthread_create(&threads[i], NULL, getter_main, &g.slots[i]);
    }
    for (unsigned r = 0; r < rounds; r++)
        getters_round(t, &g, getters, pool, r);
    g.quit = true;
    barrier(&g.start);
    for (unsigned i = 0; i < getters; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&g.start);
    pthread_barrier_destroy(&g.end);
    tally_note(t, "%u rounds x %u threads waiting on one future (task, promise, panic)",
               rounds, getters);
out:
    if (pool)
        race_destroy_pool(t, pool, ASYNC_DRAIN);
    free(threads);
    free(g.slots);
    tu_log_fini(&log);
}

/* ------------------------------------------------ cancel vs start */

struct cancel_counts {
    unsigned cancelled, busy, already;
};

/* Checks one cancel outcome once nothing can run any more. */
static void check_cancel_outcome(struct tally *t, future_t *f, int rc, unsigned ran,
                                 int get_rc, struct cancel_counts *c, unsigned i)
{
    if (rc == 0) {
        c->cancelled++;
        CHECK(t, ran == 0, "#%u: cancel returned 0 but the task ran %u times", i, ran);
        CHECK(t, future_state(f) == FUTURE_CANCELLED, "#%u: state %d after cancel 0", i,
              (int)future_state(f));
        CHECK(t, get_rc == ECANCELED, "#%u: get %d after cancel 0", i, get_rc);
    } else if (rc == EBUSY || rc == EALREADY) {
        if (rc == EBUSY)
            c->busy++;
        else
            c->already++;
        CHECK(t, ran == 1, "#%u: cancel returned %d but the task ran %u times", i, rc, ran);
        CHECK(t, future_state(f) == FUTURE_SUCCEEDED, "#%u: state %d", i,
              (int)future_state(f));
        CHECK(t, get_rc == 0, "#%u: get %d after cancel %d", i, get_rc, rc);
    } else {
        CHECK(t, false, "#%u: future_cancel returned %d", i, rc);
    }
}

/* Part 1: a worker starts the task while the submitter cancels it. */
static void cancel_vs_worker(struct tally *t, unsigned rounds, struct cancel_counts *c)
{
    enum { BATCH = 500 };
    atomic_uint *ran = calloc(BATCH, sizeof *ran);
    future_t **fs = calloc(BATCH, sizeof *fs);
    int *rcs = calloc(BATCH, sizeof *rcs);
    for (unsigned done = 0; done < rounds && ran && fs && rcs; done += BATCH) {
        unsigned n = rounds - done < BATCH ? rounds - done : BATCH;
        async_pool_t *pool = race_pool(t, 2, 0, NULL);
        if (!pool)
            break;
        for (unsigned i = 0; i < n; i++) {
            atomic_init(&ran[i], 0);
            fs[i] = async_run_on(pool, tu_task_count, &ran[i]);
            yield_n(i % 4);
            rcs[i] = fs[i] ? future_cancel(fs[i]) : -1;
        }
        race_destroy_pool(t, pool, ASYNC_DRAIN);    /* nothing can run after this */
        for (unsigned i = 0; i < n; i++) {
            if (!CHECK(t, fs[i] != NULL, "submit failed"))
                continue;
            int get_rc = future_get_until(fs[i], NULL, 0);
            check_cancel_outcome(t, fs[i], rcs[i], atomic_load(&ran[i]), get_rc, c, done + i);
            future_free(fs[i]);
        }
    }
    free(ran);
    free(fs);
    free(rcs);
}

struct inline_racer {
    pthread_barrier_t start, end;
    future_t         *f;
    bool              quit;
    int               get_rc;
};

static void *inline_racer_main(void *arg)
{
    struct inline_racer *ir = arg;
    for (;;) {
        barrier(&ir->start);
        if (ir->quit)
            return NULL;
        ir->get_rc = future_get(ir->f, NULL);
        barrier(&ir->end);
    }
}

struct hold {
    tu_gate_t running, release;
};

static void *hold_task(void *arg)
{
    struct hold *h = arg;
    tu_gate_open(&h->running);
    tu_gate_wait(&h->release);
    return NULL;
}

/* Part 2: a waiter claims the task to run it inline while another thread
 * cancels it; the only worker is held, so nothing else can start it. */
static void cancel_vs_inline(struct tally *t, unsigned rounds, struct cancel_counts *c)
{
    async_pool_t *pool = race_pool(t, 1, 1, NULL);
    atomic_uint *ran = calloc(rounds, sizeof *ran);
    future_t **fs = calloc(rounds, sizeof *fs);
    int *rcs = calloc(rounds, sizeof *rcs), *gets = calloc(rounds, sizeof *gets);
    struct hold h = { 0 };
    struct inline_racer ir = { .quit = false };
    pthread_t racer;
    if (!pool || !ran || !fs || !rcs || !gets)
        goto out;
    future_t *held = async_run_on(pool, hold_task, &h);
    CHECK(t, tu_gate_wait(&h.running), "the holding task never started");
    pthread_barrier_init(&ir.start, NULL, 2);
    pthread_barrier_init(&ir.end, NULL, 2);
    pthread_create(&racer, NULL, inline_racer_main, &ir);
    for (unsigned i = 0; i < rounds; i++) {
        atomic_init(&ran[i], 0);
        ir.f = fs[i] = async_run_on(pool, tu_task_count, &ran[i]);
        if (!fs[i])
            break;
        barrier(&ir.start);
        yield_n(i % 3);
        rcs[i] = future_cancel(fs[i]);
        barrier(&ir.end);
        gets[i] = ir.get_rc;
    }
    ir.quit = true;
    barrier(&ir.start);
    pthread_join(racer, NULL);
    pthread_barrier_destroy(&ir.start);
    pthread_barrier_destroy(&ir.end);
    tu_gate_open(&h.release);
    CHECK(t, tu_get(held, NULL) == 0, "the holding task failed");
    future_free(held);
    race_destroy_pool(t, pool, ASYNC_DRAIN);
    pool = NULL;
    for (unsigned i = 0; i < rounds; i++) {
        if (!CHECK(t, fs[i] != NULL, "submit %u failed", i))
            break;
        check_cancel_outcome(t, fs[i], rcs[i], atomic_load(&ran[i]), gets[i], c, i);
        future_free(fs[i]);
    }
out:
    if (pool)
        race_destroy_pool(t, pool, ASYNC_DRAIN);
    free(ran);
    free(fs);
    free(rcs);
    free(gets);
}

void race_cancel_vs_start(struct tally *t, unsigned rounds)
{
    tally_begin(t, "cancel_vs_start");
    struct cancel_counts w = { 0 }, in = { 0 };
    cancel_vs_worker(t, rounds, &w);
    tally_note(t, "%u cancels racing a worker's start: %u cancelled (never ran), "
               "%u EBUSY, %u EALREADY (ran once)", rounds, w.cancelled, w.busy, w.already);
    cancel_vs_inline(t, rounds, &in);
    tally_note(t, "%u cancels racing an inline run by a waiter: %u cancelled, %u EBUSY, "
               "%u EALREADY", rounds, in.cancelled, in.busy, in.already);
}

/* ------------------------------------------------ promise completion */

enum promise_variant {
    PV_COMPLETE_FREE_VS_GET_FREE,   /* complete+promise_free  |  get+future_free */
    PV_BREAK_VS_CANCEL,             /* promise_free           |  cancel+get */
    PV_COMPLETE_FAIL_CANCEL,        /* complete | fail | cancel (main) */
    PV_COMPLETE_FREE_VS_FREE,       /* complete+promise_free  |  future_free */
    PV_BREAK_VS_GET,                /* promise_free           |  get */
    PV_COMPLETE_VS_GET,             /* complete               |  get */
    PV_COUNT
};

struct pround {
    pthread_barrier_t start, end;
    bool              quit;
    enum promise_variant v;
    promise_t        *p;
    future_t         *f;
    void             *value;
    int               rc1, rc2, grc;
    void             *gr;
    bool              broken_msg;
};

static void promise_side1(struct pround *pr)
{
    switch (pr->v) {
    case PV_COMPLETE_FREE_VS_GET_FREE:
    case PV_COMPLETE_FREE_VS_FREE:
        pr->rc1 = promise_complete(pr->p, pr->value);
        promise_free(pr->p);
        break;
    case PV_BREAK_VS_CANCEL:
    case PV_BREAK_VS_GET:
        promise_free(pr->p);
        break;
    case PV_COMPLETE_FAIL_CANCEL:
    case PV_COMPLETE_VS_GET:
        pr->rc1 = promise_complete(pr->p, pr->value);
        break;
    case PV_COUNT:
        break;
    }
}

static void promise_side2(struct pround *pr)
{
    switch (pr->v) {
    case PV_COMPLETE_FREE_VS_GET_FREE:
        pr->grc = future_get(pr->f, &pr->gr);
        future_free(pr->f);
        break;
    case PV_BREAK_VS_CANCEL:
        pr->rc2 = future_cancel(pr->f);
        pr->grc = future_get(pr->f, NULL);
        break;
    case PV_COMPLETE_FAIL_CANCEL:
        pr->rc2 = promise_fail(pr->p, EIO, "failed");
        break;
    case PV_COMPLETE_FREE_VS_FREE:
        future_free(pr->f);
        break;
    case PV_BREAK_VS_GET:
        pr->grc = future_get(pr->f, NULL);
        pr->broken_msg = future_error(pr->f) && strcmp(future_error(pr->f), "broken promise") == 0;
        future_free(pr->f);
        break;
    case PV_COMPLETE_VS_GET:
        pr->grc = future_get(pr->f, &pr->gr);
        break;
    case PV_COUNT:
        break;
    }
}

struct pside {
    struct pround *pr;
    int            side;
};

static void *promise_side_main(void *arg)
{
    struct pside *s = arg;
    for (;;) {
        barrier(&s->pr->start);
        if (s->pr->quit)
            return NULL;
        if (s->side == 1)
            promise_side1(s->pr);
        else
            promise_side2(s->pr);
        barrier(&s->pr->end);
    }
}

static void check_complete_fail_cancel(struct tally *t, struct pround *pr, int rc3, unsigned i)
{
    int winners = (pr->rc1 == 0) + (pr->rc2 == 0) + (rc3 == 0);
    CHECK(t, winners == 1, "#%u: %d winners (complete %d, fail %d, cancel %d)", i, winners,
          pr->rc1, pr->rc2, rc3);
    CHECK(t, (pr->rc1 == 0 || pr->rc1 == EALREADY) && (pr->rc2 == 0 || pr->rc2 == EALREADY)
          && (rc3 == 0 || rc3 == EALREADY), "#%u: codes %d %d %d", i, pr->rc1, pr->rc2, rc3);
    void *r = NULL;
    int grc = future_get(pr->f, &r);
    if (pr->rc1 == 0)
        CHECK(t, grc == 0 && r == pr->value, "#%u: complete won, get %d", i, grc);
    else if (pr->rc2 == 0)
        CHECK(t, grc == EIO && future_error(pr->f) && strcmp(future_error(pr->f), "failed") == 0,
              "#%u: fail won, get %d", i, grc);
    else if (rc3 == 0)
        CHECK(t, grc == ECANCELED, "#%u: cancel won, get %d", i, grc);
    promise_free(pr->p);
    future_free(pr->f);
}

static void check_promise_round(struct tally *t, struct pround *pr, int rc3, unsigned i)
{
    switch (pr->v) {
    case PV_COMPLETE_FREE_VS_GET_FREE:
        CHECK(t, pr->rc1 == 0 && pr->grc == 0 && pr->gr == pr->value,
              "#%u: complete %d, get %d", i, pr->rc1, pr->grc);
        break;
    case PV_BREAK_VS_CANCEL:
        CHECK(t, (pr->rc2 == 0 && pr->grc == ECANCELED) || (pr->rc2 == EALREADY && pr->grc == EPIPE),
              "#%u: cancel %d then get %d", i, pr->rc2, pr->grc);
        future_free(pr->f);
        break;
    case PV_COMPLETE_FAIL_CANCEL:
        check_complete_fail_cancel(t, pr, rc3, i);
        break;
    case PV_COMPLETE_FREE_VS_FREE:
        CHECK(t, pr->rc1 == 0, "#%u: complete %d", i, pr->rc1);
        break;
    case PV_BREAK_VS_GET:
        CHECK(t, pr->grc == EPIPE && pr->broken_msg, "#%u: broken promise get %d", i, pr->grc);
        break;
    case PV_COMPLETE_VS_GET:
        CHECK(t, pr->rc1 == 0 && pr->grc == 0 && pr->gr == pr->value,
              "#%u: complete %d, get %d", i, pr->rc1, pr->grc);
        promise_free(pr->p);
        future_free(pr->f);
        break;
    case PV_COUNT:
        break;
    }
}

void race_promise_completion(struct tally *t, unsigned rounds)
{
    tally_begin(t, "promise_completion");
    struct pround pr = { .quit = false };
    struct pside s1 = { &pr, 1 }, s2 = { &pr, 2 };
    pthread_t t1, t2;
    pthread_barrier_init(&pr.start, NULL, 3);
    pthread_barrier_init(&pr.end, NULL, 3);
    pthread_create(&t1, NULL, promise_side_main, &s1);
    pthread_create(&t2, NULL, promise_side_main, &s2);
    for (unsigned i = 0; i < rounds; i++) {
        pr.v = (enum promise_variant)(i % PV_COUNT);
        pr.p = promise_make();
        pr.f = promise_future(pr.p);
        if (!CHECK(t, pr.p && pr.f, "promise_make/promise_future failed")) {
            future_free(pr.f);
            promise_free(pr.p);
            break;
        }
        pr.value = (void *)(uintptr_t)(i + 1);
        pr.rc1 = pr.rc2 = pr.grc = -1;
        pr.gr = NULL;
        pr.broken_msg = false;
        barrier(&pr.start);
        int rc3 = pr.v == PV_COMPLETE_FAIL_CANCEL ? future_cancel(pr.f) : -1;
        barrier(&pr.end);
        check_promise_round(t, &pr, rc3, i);
    }
    pr.quit = true;
    barrier(&pr.start);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    pthread_barrier_destroy(&pr.start);
    pthread_barrier_destroy(&pr.end);
    tally_note(t, "%u rounds over %d races (complete/free/get/cancel/fail)", rounds, PV_COUNT);
}

/* ------------------------------------------------------ future_free */

struct free_slot {
    tu_gate_t   started, go;
    atomic_uint ran;
};

static void *free_gated_task(void *arg)
{
    struct free_slot *s = arg;
    tu_gate_open(&s->started);
    tu_gate_wait(&s->go);
    atomic_fetch_add(&s->ran, 1);
    return NULL;
}

static void *free_count_task(void *arg)
{
    struct free_slot *s = arg;
    atomic_fetch_add(&s->ran, 1);
    return NULL;
}

void race_future_free(struct tally *t, unsigned rounds)
{
    tally_begin(t, "future_free");
    async_pool_t *pool = race_pool(t, 2, 0, NULL);
    struct free_slot *slots = calloc(rounds, sizeof *slots);
    unsigned phases[4] = { 0 };
    if (!pool || !slots)
        goto out;
    for (unsigned i = 0; i < rounds; i++) {
        struct free_slot *s = &slots[i];
        unsigned phase = i % 4;
        future_t *f = async_run_on(pool, phase == 1 ? free_gated_task : free_count_task, s);
        if (!CHECK(t, f != NULL, "#%u: submit failed", i))
            break;
        phases[phase]++;
        switch (phase) {
        case 0:                       /* before it starts (usually) */
            future_free(f);
            break;
        case 1:                       /* while it runs */
            CHECK(t, tu_gate_wait(&s->started), "#%u: a queued task never started "
                  "(lost wake-up?)", i);
            future_free(f);
            tu_gate_open(&s->go);
            break;
        case 2:                       /* after it completed */
            CHECK(t, tu_get(f, NULL) == 0, "#%u: get failed", i);
            future_free(f);
            break;
        default:                      /* racing its completion */
            yield_n(i % 5);
            future_free(f);
            break;
        }
    }
    race_destroy_pool(t, pool, ASYNC_DRAIN);
    pool = NULL;
    for (unsigned i = 0; i < rounds; i++)
        CHECK(t, atomic_load(&slots[i].ran) == 1, "#%u (phase %u) ran %u times", i, i % 4,
              atomic_load(&slots[i].ran));
    tally_note(t, "freed %u before start, %u while running, %u after, %u racing completion;"
               " every task ran once", phases[0], phases[1], phases[2], phases[3]);
out:
    if (pool)
        race_destroy_pool(t, pool, ASYNC_DRAIN);
    free(slots);
}

/* ------------------------------------------------ destroy with a queue */

static void *queued_task(void *arg)
{
    atomic_uint *ran = arg;
    atomic_fetch_add(ran, 1);
    yield_n(1);
    return arg;
}

void race_destroy_queued(struct tally *t, unsigned ntasks, unsigned threads,
                         async_shutdown_t how)
{
    tally_begin(t, how == ASYNC_DRAIN ? "destroy_drain_queued" : "destroy_cancel_queued");
    async_pool_t *pool = race_pool(t, threads, 0, NULL);
    atomic_uint *ran = calloc(ntasks, sizeof *ran);
    future_t **fs = calloc(ntasks, sizeof *fs);
    unsigned succeeded = 0, cancelled = 0, submitted = 0;
    if (!pool || !ran || !fs)
        goto out;
    for (unsigned i = 0; i < ntasks; i++) {
        fs[i] = async_run_on(pool, queued_task, &ran[i]);
        if (!CHECK(t, fs[i] != NULL, "submit %u failed: %s", i, strerror(errno)))
            break;
        submitted++;
    }
    race_destroy_pool(t, pool, how);
    pool = NULL;
    for (unsigned i = 0; i < submitted; i++) {
        future_state_t st = future_state(fs[i]);
        unsigned n = atomic_load(&ran[i]);
        CHECK(t, future_done(fs[i]), "#%u not done after destroy (state %d)", i, (int)st);
        if (st == FUTURE_SUCCEEDED) {
            succeeded++;
            CHECK(t, n == 1, "#%u succeeded but ran %u times", i, n);
            CHECK(t, future_get_until(fs[i], NULL, 0) == 0, "#%u: get failed", i);
        } else {
            cancelled++;
            CHECK(t, how == ASYNC_CANCEL && st == FUTURE_CANCELLED,
                  "#%u: state %d after destroy", i, (int)st);
            CHECK(t, n == 0, "#%u cancelled but ran %u times", i, n);
            CHECK(t, future_get(fs[i], NULL) == ECANCELED, "#%u: get not ECANCELED", i);
        }
        future_free(fs[i]);
    }
    CHECK(t, succeeded + cancelled == ntasks, "%u + %u != %u", succeeded, cancelled, ntasks);
    if (how == ASYNC_DRAIN)
        CHECK(t, succeeded == ntasks, "drain ran %u of %u", succeeded, ntasks);
    tally_note(t, "%u tasks queued on %u workers, destroyed: %u succeeded, %u cancelled",
               ntasks, threads, succeeded, cancelled);
out:
    if (pool)
        race_destroy_pool(t, pool, how);
    free(ran);
    free(fs);
}

/* ---------------------------------------------- cancel blocked forever */

enum block_kind { B_GET, B_WAIT_ANY, B_SLEEP, B_SLEEP_UNTIL, B_KINDS };

struct blocker {
    enum block_kind kind;
    future_t       *never[2];
    atomic_uint    *started;
    int             rc;
    bool            returned;
};

static void *blocker_task(void *arg)
{
    struct blocker *b = arg;
    atomic_fetch_add(b->started, 1);
    switch (b->kind) {
    case B_GET:
        b->rc = future_get(b->never[0], NULL);
        break;
    case B_WAIT_ANY:
        b->rc = future_wait_any(b->never, 2, ASYNC_FOREVER, NULL);
        break;
    case B_SLEEP:
        async_sleep(3600 * ASYNC_SECOND);
        b->rc = ECANCELED;
        break;
    default:
        b->rc = async_sleep_until(ASYNC_FOREVER);
        break;
    }
    b->returned = true;
    return b;
}

void race_cancel_blocked(struct tally *t, unsigned per_kind)
{
    tally_begin(t, "cancel_blocked_forever");
    unsigned n = per_kind * B_KINDS;
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = race_pool(t, 2, 0, &log);
    promise_t *never[2] = { promise_make(), promise_make() };
    future_t *nf[2] = { promise_future(never[0]), promise_future(never[1]) };
    struct blocker *bs = calloc(n, sizeof *bs);
    future_t **fs = calloc(n, sizeof *fs);
    atomic_uint started = 0;
    unsigned submitted = 0;
    if (!pool || !bs || !fs)
        goto out;
    for (unsigned i = 0; i < n; i++) {
        bs[i] = (struct blocker){ .kind = (enum block_kind)(i % B_KINDS),
                                  .never = { nf[0], nf[1] }, .started = &started, .rc = -1 };
        fs[i] = async_run_on(pool, blocker_task, &bs[i]);
        if (!CHECK(t, fs[i] != NULL, "submit %u failed", i))
            break;
        submitted++;
    }
    CHECK(t, tu_wait_count(&started, submitted), "only %u of %u blocked tasks started "
          "(replacements missing?)", atomic_load(&started), submitted);
    race_destroy_pool(t, pool, ASYNC_CANCEL);
    pool = NULL;
    for (unsigned i = 0; i < submitted; i++) {
        CHECK(t, future_done(fs[i]), "#%u (kind %d) not done after destroy", i, (int)bs[i].kind);
        CHECK(t, bs[i].returned && bs[i].rc == ECANCELED, "#%u (kind %d): rc %d", i,
              (int)bs[i].kind, bs[i].rc);
        future_free(fs[i]);
    }
    CHECK(t, !future_done(nf[0]) && !future_done(nf[1]), "the awaited promises were touched");
    tally_note(t, "%u tasks blocked forever (get, wait_any, sleep, sleep_until) ended by "
               "ASYNC_CANCEL", submitted);
out:
    if (pool)
        race_destroy_pool(t, pool, ASYNC_CANCEL);
    for (int i = 0; i < 2; i++) {
        future_free(nf[i]);
        promise_free(never[i]);
    }
    free(bs);
    free(fs);
    tu_log_fini(&log);
}

/* --------------------------------------------------------- fork/join */

struct fib_arg {
    async_pool_t *pool;
    int           n;
};

static void *fib_task(void *arg)
{
    const struct fib_arg *a = arg;
    if (a->n < 2)
        return (void *)(intptr_t)a->n;
    struct fib_arg l = { a->pool, a->n - 1 }, r = { a->pool, a->n - 2 };
    future_t *fl = async_submit(a->pool, fib_task, &l, sizeof l);
    future_t *fr = async_submit(a->pool, fib_task, &r, sizeof r);
    void *vl = (void *)(intptr_t)-1, *vr = (void *)(intptr_t)-1;
    if (fl && future_get(fl, &vl) != 0)
        vl = (void *)(intptr_t)-1;
    if (fr && future_get(fr, &vr) != 0)
        vr = (void *)(intptr_t)-1;
    future_free(fl);
    future_free(fr);
    if ((intptr_t)vl < 0 || (intptr_t)vr < 0)
        return (void *)(intptr_t)-1;
    return (void *)((intptr_t)vl + (intptr_t)vr);
}

void race_forkjoin_fib(struct tally *t, unsigned threads, int fib_n)
{
    tally_begin(t, "forkjoin_fib");
    async_pool_t *pool = race_pool(t, threads, 0, NULL);
    if (!pool)
        return;
    struct fib_arg a = { pool, fib_n };
    long want = fib_expected(fib_n);
    int64_t t0 = tu_clock();
    void *r = NULL;
    future_t *f = async_submit(pool, fib_task, &a, sizeof a);
    int rc = f ? tu_get(f, &r) : errno;
    CHECK(t, rc == 0 && (long)(intptr_t)r == want, "fib(%d) on %u workers: rc %d, %ld != %ld",
          fib_n, threads, rc, (long)(intptr_t)r, want);
    future_free(f);
    int64_t t1 = tu_clock();
    r = NULL;
    f = async_submit(pool, fib_task, &a, sizeof a);
    rc = f ? future_get(f, &r) : errno;      /* the root may run inline here */
    CHECK(t, rc == 0 && (long)(intptr_t)r == want, "fib(%d) joined from outside: rc %d, %ld",
          fib_n, rc, (long)(intptr_t)r);
    future_free(f);
    async_pool_stats_t s;
    CHECK(t, tu_pool_quiet(pool, &s), "the pool's counters never settled");
    tally_note(t, "fib(%d) = %ld with a task per call on %u worker(s): %.2f s from a worker root,"
               " %.2f s joined from outside; %llu tasks, %llu stolen", fib_n, want, threads,
               (double)(t1 - t0) / 1e9, (double)(tu_clock() - t1) / 1e9,
               (unsigned long long)s.submitted, (unsigned long long)s.stolen);
    race_destroy_pool(t, pool, ASYNC_DRAIN);
}

/* ------------------------------------------------ drain while forking */

struct drain_fj {
    tu_gate_t     started, go;
    async_pool_t *pool;
    int           n;
};

static void *drain_fj_task(void *arg)
{
    struct drain_fj *d = arg;
    tu_gate_open(&d->started);
    if (!tu_gate_wait(&d->go))
        return (void *)(intptr_t)-2;
    struct fib_arg a = { d->pool, d->n };
    return fib_task(&a);
}

struct destroyer {
    async_pool_t    *pool;
    async_shutdown_t how;
    int              rc;
};

static void *destroyer_main(void *arg)
{
    struct destroyer *d = arg;
    d->rc = async_pool_destroy(d->pool, d->how);
    return NULL;
}

void race_drain_forkjoin(struct tally *t, int fib_n)
{
    tally_begin(t, "drain_while_forking");
    async_pool_t *pool = race_pool(t, 2, 0, NULL);
    if (!pool)
        return;
    struct drain_fj d = { .pool = pool, .n = fib_n };
    future_t *root = async_run_on(pool, drain_fj_task, &d);
    if (!CHECK(t, root != NULL, "submit failed")) {
        race_destroy_pool(t, pool, ASYNC_DRAIN);
        return;
    }
    CHECK(t, tu_gate_wait(&d.started), "the root task never started");
    struct destroyer killer = { .pool = pool, .how = ASYNC_DRAIN, .rc = -1 };
    pthread_t kt;
    pthread_create(&kt, NULL, destroyer_main, &killer);
    /* Submit from this (foreign) thread until the drain refuses. */
    atomic_uint foreign_ran = 0;
    unsigned accepted = 0;
    int64_t until = tu_deadline();
    for (;;) {
        future_t *f = async_run_on(pool, tu_task_count, &foreign_ran);
        if (!f)
            break;
        accepted++;
        future_free(f);
        if (!tu_spin_once(until))
            break;
    }
    CHECK(t, errno == ECANCELED, "a foreign submission during drain: errno %d", errno);
    int x = 1;
    errno = 0;
    CHECK(t, async_submit(pool, tu_task_noop, &x, sizeof x) == NULL && errno == ECANCELED,
          "async_submit during drain: errno %d", errno);
    errno = 0;
    CHECK(t, async_run_on(pool, tu_task_noop, NULL) == NULL && errno == ECANCELED,
          "async_run_on during drain: errno %d", errno);
    tu_gate_open(&d.go);               /* the fork/join now splits inside the drain */
    pthread_join(kt, NULL);
    CHECK(t, killer.rc == 0, "destroy returned %d", killer.rc);
    void *r = NULL;
    long want = fib_expected(fib_n);
    int rc = future_get_until(root, &r, 0);
    CHECK(t, rc == 0 && (long)(intptr_t)r == want, "fib(%d) during drain: rc %d, %ld != %ld",
          fib_n, rc, (long)(intptr_t)r, want);
    CHECK(t, atomic_load(&foreign_ran) == accepted, "%u foreign tasks accepted, %u ran",
          accepted, atomic_load(&foreign_ran));
    future_free(root);
    tally_note(t, "fib(%d) split while draining: right result; %u foreign submissions before "
               "the drain ran, later ones got ECANCELED", fib_n, accepted);
}

/* ------------------------------------------------- deadlines in tasks */

struct dl_slot {
    future_t *on[2];     /* [0] never done, [1] completed midway */
    int64_t   d, start, deadline, end;
    int       rc, any_rc;
    void     *r;
    size_t    index;
};

static void *deadline_task(void *arg)
{
    struct dl_slot *s = arg;
    s->start = async_now();
    s->deadline = s->d == 0 ? 0 : s->start + s->d;
    s->rc = future_get_until(s->on[1], &s->r, s->deadline);
    s->end = async_now();
    s->any_rc = future_wait_any(s->on, 2, s->deadline, &s->index);
    return NULL;
}

static void check_deadline_slot(struct tally *t, struct dl_slot *s, unsigned i,
                                int64_t done_at, void *value)
{
    if (s->rc == 0)
        CHECK(t, s->r == value, "#%u: wrong value", i);
    else if (s->rc == ETIMEDOUT)
        CHECK(t, s->d > 0 && s->end >= s->deadline, "#%u: ETIMEDOUT before the deadline "
              "(%lld ns early)", i, (long long)(s->deadline - s->end));
    else
        CHECK(t, s->rc == EAGAIN && s->d == 0, "#%u: rc %d with deadline offset %lld", i,
              s->rc, (long long)s->d);
    if (s->any_rc == 0)
        CHECK(t, s->index == 1, "#%u: wait_any index %zu", i, s->index);
    else
        CHECK(t, (s->any_rc == ETIMEDOUT && s->d > 0) || (s->any_rc == EAGAIN && s->d == 0),
              "#%u: wait_any rc %d", i, s->any_rc);
    if (s->start > done_at)
        CHECK(t, s->rc == 0 && s->any_rc == 0, "#%u started after the completion but got "
              "%d/%d", i, s->rc, s->any_rc);
}

void race_deadline_waits(struct tally *t, unsigned ntasks)
{
    tally_begin(t, "deadline_waits_in_tasks");
    async_pool_t *pool = race_pool(t, 2, 0, NULL);
    promise_t *p[2] = { promise_make(), promise_make() };
    future_t *on[2] = { promise_future(p[0]), promise_future(p[1]) };
    struct dl_slot *slots = calloc(ntasks, sizeof *slots);
    future_t **fs = calloc(ntasks, sizeof *fs);
    int64_t done_at = INT64_MAX;
    unsigned submitted = 0, counts[3] = { 0 };
    if (!pool || !slots || !fs)
        goto out;
    for (unsigned i = 0; i < ntasks; i++) {
        slots[i] = (struct dl_slot){ .on = { on[0], on[1] },
                                     .d = (int64_t)(i % 5) * 200 * ASYNC_MICROSECOND };
        fs[i] = async_run_on(pool, deadline_task, &slots[i]);
        if (!CHECK(t, fs[i] != NULL, "submit failed"))
            break;
        submitted++;
        if (i == ntasks / 2) {
            CHECK(t, promise_complete(p[1], &slots[0]) == 0, "complete failed");
            done_at = async_now();
        }
    }
    CHECK(t, future_wait_all(fs, submitted, async_now() + TU_PATIENCE) == 0, "tasks hang");
    for (unsigned i = 0; i < submitted; i++) {
        check_deadline_slot(t, &slots[i], i, done_at, &slots[0]);
        counts[slots[i].rc == 0 ? 0 : slots[i].rc == ETIMEDOUT ? 1 : 2]++;
        future_free(fs[i]);
    }
    tally_note(t, "%u tasks waiting with deadlines 0..0.8 ms: %u got the value, %u timed out,"
               " %u polled EAGAIN", submitted, counts[0], counts[1], counts[2]);
out:
    if (pool)
        race_destroy_pool(t, pool, ASYNC_DRAIN);
    for (int i = 0; i < 2; i++) {
        future_free(on[i]);
        promise_free(p[i]);
    }
    free(slots);
    free(fs);
}

/* ---------------------------------------------------- panic isolation */

struct pstep {
    int *order, *n, id;
};

/* Deferred functions run after the task function has returned or unwound,
 * so what they use lives here, not on the task's stack. */
struct pslot {
    async_pool_t *pool;
    unsigned      i;
    int           order[4], n;
    int           child_order[2], child_n;
    struct pstep  first, second, child;
    int           nested_rc;
    bool          nested_msg_ok;
};

static void pstep_run(void *arg)
{
    struct pstep *s = arg;
    if (*s->n < 4)
        s->order[(*s->n)++] = s->id;
}

static void *panic_child_task(void *arg)
{
    struct pslot *s = arg;
    s->child = (struct pstep){ s->child_order, &s->child_n, 9 };
    async_defer(pstep_run, &s->child);
    async_panic(EDOM, "[child %u]", s->i);
}

static void *panic_parent_task(void *arg)
{
    struct pslot *s = arg;
    s->first = (struct pstep){ s->order, &s->n, 1 };
    s->second = (struct pstep){ s->order, &s->n, 2 };
    async_defer(pstep_run, &s->first);
    async_defer(pstep_run, &s->second);
    if (s->i % 11 == 0) {
        future_t *child = async_run_on(s->pool, panic_child_task, s);
        s->nested_rc = child ? future_get(child, NULL) : -1;
        char want[32];
        snprintf(want, sizeof want, "[child %u]", s->i);
        s->nested_msg_ok = child && future_error(child) && strcmp(future_error(child), want) == 0;
        future_free(child);
    }
    if (s->i % 7 == 0)
        async_panic(EDOM, "[task %u] panicked", s->i);
    return (void *)(uintptr_t)(3 * s->i + 1);
}

static void check_panic_slot(struct tally *t, struct pslot *s, future_t *f, struct tu_log *log)
{
    void *r = NULL;
    int rc = future_get_until(f, &r, 0);
    if (s->i % 7 == 0) {
        char want[48];
        snprintf(want, sizeof want, "[task %u] panicked", s->i);
        CHECK(t, rc == EDOM, "#%u: rc %d, want EDOM", s->i, rc);
        CHECK(t, future_error(f) && strcmp(future_error(f), want) == 0, "#%u: message \"%s\"",
              s->i, future_error(f) ? future_error(f) : "(null)");
        CHECK(t, tu_log_matching(log, want) == 1, "#%u: log lines naming it: %u", s->i,
              tu_log_matching(log, want));
    } else {
        CHECK(t, rc == 0 && r == (void *)(uintptr_t)(3 * s->i + 1), "#%u: rc %d", s->i, rc);
    }
    CHECK(t, s->n == 2 && s->order[0] == 2 && s->order[1] == 1, "#%u: defers ran %d times, "
          "order %d %d", s->i, s->n, s->order[0], s->order[1]);
    if (s->i % 11 == 0)
        CHECK(t, s->nested_rc == EDOM && s->nested_msg_ok && s->child_n == 1
              && s->child_order[0] == 9, "#%u: nested panic rc %d, child defers %d",
              s->i, s->nested_rc, s->child_n);
}

void race_panic_isolation(struct tally *t, unsigned ntasks)
{
    tally_begin(t, "panic_isolation");
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = race_pool(t, 2, 0, &log);
    struct pslot *slots = calloc(ntasks, sizeof *slots);
    future_t **fs = calloc(ntasks, sizeof *fs);
    unsigned submitted = 0, panics = 0, children = 0;
    if (!pool || !slots || !fs)
        goto out;
    for (unsigned i = 0; i < ntasks; i++) {
        slots[i] = (struct pslot){ .pool = pool, .i = i, .nested_rc = -1 };
        fs[i] = async_run_on(pool, panic_parent_task, &slots[i]);
        if (!CHECK(t, fs[i] != NULL, "submit failed"))
            break;
        submitted++;
        panics += i % 7 == 0;
        children += i % 11 == 0;
    }
    CHECK(t, future_wait_all(fs, submitted, async_now() + TU_PATIENCE) == 0, "tasks hang");
    async_pool_stats_t s;
    CHECK(t, tu_pool_quiet(pool, &s), "the pool's counters never settled");
    CHECK(t, s.failed == panics + children && s.submitted == submitted + children,
          "stats: %llu failed, %llu submitted", (unsigned long long)s.failed,
          (unsigned long long)s.submitted);
    CHECK(t, atomic_load(&log.count) == panics + children, "%u log lines for %u panics",
          atomic_load(&log.count), panics + children);
    for (unsigned i = 0; i < submitted; i++) {
        check_panic_slot(t, &slots[i], fs[i], &log);
        future_free(fs[i]);
    }
    atomic_uint healthy = 0;
    for (unsigned i = 0; i < 100; i++) {
        future_t *f = async_run_on(pool, tu_task_count, &healthy);
        CHECK(t, f && tu_get(f, NULL) == 0, "a task after the panics failed");
        future_free(f);
    }
    CHECK(t, atomic_load(&healthy) == 100, "the pool is not healthy after the panics");
    tally_note(t, "%u tasks, %u panicked (+%u nested panics run by waiting parents): results, "
               "messages, LIFO defers on both paths, one log line each; 100 more succeeded",
               submitted, panics, children);
out:
    if (pool)
        race_destroy_pool(t, pool, ASYNC_DRAIN);
    free(slots);
    free(fs);
    tu_log_fini(&log);
}

/* -------------------------------------------- blocked-worker replacement */

struct link {
    future_t  *wait_on;      /* NULL for the last link */
    promise_t *complete;     /* NULL for the first link */
    int        rc;
};

static void *link_task(void *arg)
{
    struct link *l = arg;
    l->rc = l->wait_on ? future_get(l->wait_on, NULL) : 0;
    if (l->complete && promise_complete(l->complete, NULL) != 0)
        l->rc = -1;
    return NULL;
}

/* Link i waits on promise i and then completes promise i-1; the last link
 * does not wait. Submitted in order on one worker, each waiting link needs
 * a replacement for the next one to run. */
static void replacement_round(struct tally *t, unsigned chain, unsigned round, unsigned *peak)
{
    async_pool_t *pool = race_thread_pool(t, 1, 0, NULL);
    promise_t **ps = calloc(chain, sizeof *ps);
    future_t **pfs = calloc(chain, sizeof *pfs), **fs = calloc(chain, sizeof *fs);
    struct link *links = calloc(chain, sizeof *links);
    if (!pool || !ps || !pfs || !fs || !links)
        goto out;
    for (unsigned i = 0; i < chain; i++) {
        ps[i] = promise_make();
        pfs[i] = promise_future(ps[i]);
    }
    for (unsigned i = 0; i < chain; i++) {
        links[i] = (struct link){ .wait_on = i + 1 < chain ? pfs[i] : NULL,
                                  .complete = i > 0 ? ps[i - 1] : NULL, .rc = -2 };
        fs[i] = async_run_on(pool, link_task, &links[i]);
    }
    CHECK(t, future_wait_all(fs, chain, async_now() + TU_PATIENCE) == 0,
          "round %u: a chain of %u waits hangs on one worker", round, chain);
    for (unsigned i = 0; i < chain; i++)
        CHECK(t, links[i].rc == 0, "round %u link %u: rc %d", round, i, links[i].rc);
    async_pool_stats_t s;
    async_pool_stats(pool, &s);
    CHECK(t, s.peak_threads >= chain, "round %u: peak_threads %u < %u", round,
          s.peak_threads, chain);
    if (s.peak_threads > *peak)
        *peak = s.peak_threads;
    for (unsigned i = 0; i < chain; i++) {
        future_free(fs[i]);
        future_free(pfs[i]);
        promise_free(ps[i]);
    }
out:
    if (pool)
        race_destroy_pool(t, pool, ASYNC_DRAIN);
    free(ps);
    free(pfs);
    free(fs);
    free(links);
}

void race_blocked_replacement(struct tally *t, unsigned rounds, unsigned chain)
{
    tally_begin(t, "blocked_worker_replacement");
    unsigned peak = 0;
    for (unsigned r = 0; r < rounds; r++)
        replacement_round(t, r % 2 ? chain : 2, r, &peak);
    tally_note(t, "%u pools of 1 worker with chains of 2 and %u blocking waits completed "
               "through replacements (peak %u workers)", rounds, chain, peak);
}

/* ------------------------------------------------------- saturation */

struct sat_wait {
    tu_gate_t started;
    future_t *on;
    int       rc;
};

static void *sat_wait_task(void *arg)
{
    struct sat_wait *w = arg;
    tu_gate_open(&w->started);
    w->rc = future_get(w->on, NULL);
    return NULL;
}

static void saturation_round(struct tally *t, unsigned round)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = race_thread_pool(t, 1, 1, &log);
    promise_t *p = promise_make();
    struct sat_wait w = { .on = promise_future(p), .rc = -1 };
    future_t *a = NULL, *b = NULL;
    if (!pool)
        goto out;
    a = async_run_on(pool, sat_wait_task, &w);
    CHECK(t, tu_gate_wait(&w.started), "round %u: A never started", round);
    b = async_run_on(pool, tu_task_noop, NULL);
    CHECK(t, tu_wait_count(&log.saturated, 1), "round %u: no saturation line", round);
    char line[256] = "";
    unsigned blocked = 0, queued = 0;
    tu_log_find_prefix(&log, "pool test: saturated", line, sizeof line);
    CHECK(t, sscanf(line, "pool test: saturated: %u workers blocked, %u tasks queued",
                    &blocked, &queued) == 2 && blocked == 1 && queued == 1,
          "round %u: line \"%s\"", round, line);
    CHECK(t, future_state(b) == FUTURE_PENDING, "round %u: B ran beyond max_threads", round);
    CHECK(t, promise_complete(p, NULL) == 0, "complete failed");
    int a_rc = tu_get(a, NULL);     /* (a CHECK's arguments are unsequenced) */
    CHECK(t, a_rc == 0 && w.rc == 0, "round %u: A failed (%d, %d)", round, a_rc, w.rc);
    CHECK(t, tu_get(b, NULL) == 0, "round %u: B failed", round);
    race_destroy_pool(t, pool, ASYNC_DRAIN);
    pool = NULL;
    CHECK(t, atomic_load(&log.saturated) == 1, "round %u: %u saturation lines", round,
          atomic_load(&log.saturated));
out:
    if (pool)
        race_destroy_pool(t, pool, ASYNC_DRAIN);
    future_free(a);
    future_free(b);
    future_free(w.on);
    promise_free(p);
    tu_log_fini(&log);
}

void race_saturation(struct tally *t, unsigned rounds)
{
    tally_begin(t, "saturation_log");
    for (unsigned r = 0; r < rounds; r++)
        saturation_round(t, r);
    tally_note(t, "%u pools at max_threads=1 logged one \"saturated: 1 workers blocked, "
               "1 tasks queued\" line each and recovered", rounds);
}

/* ------------------------------------------------- allocation failure */

struct alloc_counts {
    unsigned runs, fired, enomem, pools_refused;
};

struct copy_arg {
    uint64_t magic[6];
};

static void *copy_check_task(void *arg)
{
    const struct copy_arg *c = arg;
    for (int i = 0; i < 6; i++)
        if (c->magic[i] != 0x9e3779b97f4a7c15u * (uint64_t)(i + 1))
            return NULL;
    return (void *)1;
}

static void set_flag(void *arg)
{
    *(bool *)arg = true;
}

struct spawn {
    async_pool_t *pool;
    unsigned      n;
    unsigned      accepted, refused, refused_other, wrong, get_errors;
    int           defer_rc, any_rc;
    bool          defer_ran;
};

struct sub_arg {
    unsigned index;
    char     pad[20];
};

static void *sub_task(void *arg)
{
    return (void *)(uintptr_t)(((const struct sub_arg *)arg)->index + 1);
}

static void spawn_collect(struct spawn *s, future_t **fs, unsigned *idx, unsigned m)
{
    size_t any = 0;
    if (m > 0)
        s->any_rc = future_wait_any(fs, m, ASYNC_FOREVER, &any);
    for (unsigned j = 0; j < m; j++) {
        void *r = NULL;
        int rc = future_get(fs[j], &r);
        if (rc != 0)
            s->get_errors++;
        else if (r != (void *)(uintptr_t)(idx[j] + 1))
            s->wrong++;
        future_free(fs[j]);
    }
}

static void *spawn_task(void *arg)
{
    struct spawn *s = arg;
    s->defer_rc = async_defer(set_flag, &s->defer_ran);
    future_t **fs = calloc(s->n, sizeof *fs);
    unsigned *idx = calloc(s->n, sizeof *idx);
    unsigned m = 0;
    for (unsigned i = 0; fs && idx && i < s->n; i++) {
        struct sub_arg a = { .index = i };
        future_t *f = async_submit(s->pool, sub_task, &a, sizeof a);
        if (f) {
            idx[m] = i;
            fs[m++] = f;
        } else if (errno == ENOMEM) {
            s->refused++;
        } else {
            s->refused_other++;
        }
    }
    s->accepted = m;
    spawn_collect(s, fs, idx, m);
    free(fs);
    free(idx);
    return s;
}

struct panicker {
    int  defer_rc;
    bool defer_ran;
};

static void *alloc_panic_task(void *arg)
{
    struct panicker *p = arg;
    p->defer_rc = async_defer(set_flag, &p->defer_ran);
    async_panic(ERANGE, "panic %s %d", "message", 7);
}

static void *wait_promise_task(void *arg)
{
    return (void *)(intptr_t)future_get(arg, NULL);
}

static bool is_enomem(struct tally *t, struct alloc_counts *c, bool ok, const char *what)
{
    if (ok)
        return false;
    c->enomem++;
    return CHECK(t, errno == ENOMEM, "%s failed with errno %d, not ENOMEM", what, errno);
}

#define ALLOC_PROMISES 40

/* wait_any over many promises, one completed: 0 with its index, or ENOMEM. */
static void alloc_many_promises(struct tally *t, struct alloc_counts *c, long n)
{
    promise_t *ps[ALLOC_PROMISES];
    future_t *fs[ALLOC_PROMISES];
    unsigned m = 0;
    for (unsigned i = 0; i < ALLOC_PROMISES; i++) {
        promise_t *p = promise_make();
        if (is_enomem(t, c, p != NULL, "promise_make") || !p)
            continue;
        future_t *f = promise_future(p);
        if (is_enomem(t, c, f != NULL, "promise_future") || !f) {
            promise_free(p);
            continue;
        }
        ps[m] = p;
        fs[m++] = f;
    }
    if (m > 0) {
        CHECK(t, promise_complete(ps[m - 1], NULL) == 0, "n=%ld: complete failed", n);
        size_t index = 0;
        int rc = future_wait_any(fs, m, ASYNC_FOREVER, &index);
        c->enomem += rc == ENOMEM;
        CHECK(t, (rc == 0 && index == m - 1) || rc == ENOMEM, "n=%ld: wait_any over %u: rc %d "
              "index %zu", n, m, rc, index);
    }
    for (unsigned i = 0; i < m; i++) {
        future_free(fs[i]);
        promise_free(ps[i]);
    }
}

/* A failed promise waited on by a task, and a broken one. */
static future_t *alloc_promises(struct tally *t, struct alloc_counts *c, async_pool_t *pool,
                                promise_t **failed, future_t **pf, int *fail_rc)
{
    future_t *waiter = NULL;
    *failed = promise_make();
    *pf = NULL;
    *fail_rc = -1;
    if (is_enomem(t, c, *failed != NULL, "promise_make") || !*failed)
        return NULL;
    *pf = promise_future(*failed);
    if (is_enomem(t, c, *pf != NULL, "promise_future") || !*pf)
        return NULL;
    waiter = async_run_on(pool, wait_promise_task, *pf);
    is_enomem(t, c, waiter != NULL, "async_run_on");
    *fail_rc = promise_fail(*failed, EDOM, "failed %d", 5);
    c->enomem += *fail_rc == ENOMEM;
    promise_t *broken = promise_make();
    if (!is_enomem(t, c, broken != NULL, "promise_make") && broken) {
        future_t *bf = promise_future(broken);
        promise_free(broken);
        if (!is_enomem(t, c, bf != NULL, "promise_future") && bf)
            CHECK(t, future_get(bf, NULL) == EPIPE && future_error(bf)
                  && strcmp(future_error(bf), "broken promise") == 0, "broken promise");
        future_free(bf);
    }
    return waiter;
}

struct alloc_futures {
    future_t *copy, *spawn, *panic, *waiter;
};

static void alloc_check_results(struct tally *t, struct alloc_counts *c, long n,
                                struct alloc_futures *fu,
                                struct spawn *sp, struct panicker *pk, future_t *pf,
                                int fail_rc)
{
    void *r = NULL;
    if (fu->copy)
        CHECK(t, tu_get(fu->copy, &r) == 0 && r == (void *)1, "n=%ld: the copied arg", n);
    if (fu->spawn) {
        CHECK(t, tu_get(fu->spawn, NULL) == 0, "n=%ld: spawner failed", n);
        c->enomem += sp->refused + (sp->defer_rc == ENOMEM) + (sp->any_rc == ENOMEM);
        CHECK(t, sp->refused_other == 0 && sp->get_errors == 0 && sp->wrong == 0
              && sp->accepted + sp->refused == sp->n, "n=%ld: subtasks: %u accepted, %u ENOMEM,"
              " %u other, %u get errors, %u wrong", n, sp->accepted, sp->refused,
              sp->refused_other, sp->get_errors, sp->wrong);
        CHECK(t, (sp->defer_rc == 0 && sp->defer_ran) || (sp->defer_rc == ENOMEM && !sp->defer_ran),
              "n=%ld: spawner defer rc %d ran %d", n, sp->defer_rc, sp->defer_ran);
        CHECK(t, sp->accepted == 0 || sp->any_rc == 0 || sp->any_rc == ENOMEM,
              "n=%ld: wait_any in a task: %d", n, sp->any_rc);
    }
    if (fu->panic) {
        const char *msg;
        CHECK(t, tu_get(fu->panic, NULL) == ERANGE, "n=%ld: panic code", n);
        msg = future_error(fu->panic);
        c->enomem += (msg && strcmp(msg, "out of memory") == 0) + (pk->defer_rc == ENOMEM);
        CHECK(t, msg && (strcmp(msg, "panic message 7") == 0 || strcmp(msg, "out of memory") == 0),
              "n=%ld: panic message \"%s\"", n, msg ? msg : "(null)");
        CHECK(t, (pk->defer_rc == 0 && pk->defer_ran) || (pk->defer_rc == ENOMEM && !pk->defer_ran),
              "n=%ld: panicking task's defer rc %d ran %d", n, pk->defer_rc, pk->defer_ran);
    }
    if (pf) {
        const char *msg = future_error(pf);
        CHECK(t, fail_rc == 0 || fail_rc == ENOMEM, "n=%ld: promise_fail %d", n, fail_rc);
        CHECK(t, future_get_until(pf, NULL, 0) == EDOM && msg
              && strcmp(msg, fail_rc == 0 ? "failed 5" : "out of memory") == 0,
              "n=%ld: failed promise message \"%s\" (fail rc %d)", n, msg ? msg : "(null)", fail_rc);
    }
    if (fu->waiter) {
        int rc = tu_get(fu->waiter, &r);
        CHECK(t, rc == 0 && (intptr_t)r == EDOM, "n=%ld: task waiting on the failed promise: "
              "%d, saw %d", n, rc, (int)(intptr_t)r);
    }
}

/* One run with the nth allocation failing; true when the failure fired. */
static bool alloc_run(struct tally *t, struct alloc_counts *c, long n, unsigned subtasks)
{
    struct tu_log log;
    struct alloc_futures fu = { 0 };
    struct spawn sp = { .n = subtasks, .defer_rc = -1, .any_rc = -1 };
    struct panicker pk = { .defer_rc = -1 };
    promise_t *failed = NULL;
    future_t *pf = NULL;
    int fail_rc = -1;
    tu_log_init(&log);
    async__test_fail_alloc(n);
    /* One worker: nobody steals while the spawner pushes its subtasks, so its
     * deque must grow; the blocking waits start replacements. */
    async_pool_t *pool = tu_pool(1, 0, &log);
    if (is_enomem(t, c, pool != NULL, "async_pool_create") || !pool) {
        c->pools_refused++;
        goto out;
    }
    struct copy_arg ca;
    for (int i = 0; i < 6; i++)
        ca.magic[i] = 0x9e3779b97f4a7c15u * (uint64_t)(i + 1);
    fu.copy = async_submit(pool, copy_check_task, &ca, sizeof ca);
    is_enomem(t, c, fu.copy != NULL, "async_submit");
    memset(&ca, 0, sizeof ca);
    sp.pool = pool;
    fu.spawn = async_run_on(pool, spawn_task, &sp);
    is_enomem(t, c, fu.spawn != NULL, "async_run_on");
    fu.panic = async_run_on(pool, alloc_panic_task, &pk);
    is_enomem(t, c, fu.panic != NULL, "async_run_on");
    fu.waiter = alloc_promises(t, c, pool, &failed, &pf, &fail_rc);
    alloc_many_promises(t, c, n);
    alloc_check_results(t, c, n, &fu, &sp, &pk, pf, fail_rc);
    race_destroy_pool(t, pool, ASYNC_DRAIN);
    future_t *d = async_run(tu_task_noop, NULL);           /* the default pool too */
    if (!is_enomem(t, c, d != NULL, "async_run") && d)
        CHECK(t, future_get(d, NULL) == 0, "n=%ld: default pool task failed", n);
    future_free(d);
    CHECK(t, async_shutdown(ASYNC_DRAIN) == 0, "n=%ld: async_shutdown failed", n);
out:;
    bool fired = async__test_alloc_count() >= n;
    async__test_fail_alloc(0);
    future_free(fu.copy);
    future_free(fu.spawn);
    future_free(fu.panic);
    future_free(fu.waiter);
    future_free(pf);
    promise_free(failed);
    tu_log_fini(&log);
    return fired;
}

void race_alloc_failure(struct tally *t, unsigned subtasks, long stride)
{
    tally_begin(t, "allocation_failure");
    struct alloc_counts c = { 0 };
    long n;
    if (stride < 1)
        stride = 1;
    for (n = 1; n < 1000000; n += stride) {
        c.runs++;
        if (!alloc_run(t, &c, n, subtasks))
            break;
        c.fired++;
        if (t->failures > 20)
            break;
    }
    CHECK(t, c.fired < c.runs, "the scenario never ran without an injected failure");
    tally_note(t, "failed allocation n = 1..%ld (stride %ld): %u runs, %u with the failure "
               "injected, %u ENOMEM answers, %u refused pools; every other call succeeded",
               n, stride, c.runs, c.fired, c.enomem, c.pools_refused);
}
