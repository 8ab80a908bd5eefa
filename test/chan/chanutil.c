/*
 * test/chan/chanutil.c — gates, the ledger and the racing scenarios shared
 * by the channel tests and stress programs (see chanutil.h).
 *
 * Nothing here sleeps to order events: parties meet through the channels
 * under test, through counters spun on with sched_yield, or through the
 * channel's own wait queues (ct_wait_queued). A setup failure (no thread, no
 * memory for the ledger) is not what is tested: it aborts the program with a
 * message.
 */
#include "chanutil.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEQ_BITS 40
#define SEQ_MASK ((UINT64_C(1) << SEQ_BITS) - 1)

static void must(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "chan test setup: %s: %s\n", what, strerror(rc));
        abort();
    }
}

static void *must_alloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        must(ENOMEM, "calloc");
    return p;
}

/* ---------------------------------------------------------------- gates */

size_t ct_queued(chan_t *c, chan_op_t op)
{
    struct async_wqueue *q = op == CHAN_SEND ? &c->sendq : &c->recvq;
    size_t n = 0;
    async__lock(&c->lock);
    for (struct async_wnode *w = q->head; w; w = w->next)
        n++;
    async__unlock(&c->lock);
    return n;
}

bool ct_wait_queued(chan_t *c, chan_op_t op, size_t k)
{
    int64_t until = tu_deadline();
    while (ct_queued(c, op) < k)
        if (!tu_spin_once(until))
            return ct_queued(c, op) >= k;
    return true;
}

bool ct_wait_blocked(async_pool_t *pool, unsigned k)
{
    int64_t until = tu_deadline();
    async_pool_stats_t st;
    for (;;) {
        if (async_pool_stats(pool, &st) == 0 && tu_blocked(&st) >= k)
            return true;
        if (!tu_spin_once(until))
            return false;
    }
}

uint64_t ct_rand(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

/* --------------------------------------------------------------- ledger */

enum { ST_NONE = 0, ST_SENT = 1, ST_FAILED = 2 };

int ct_ledger_init(struct ct_ledger *l, size_t parties, size_t per)
{
    memset(l, 0, sizeof *l);
    l->per = per;
    l->n = parties * per;
    l->state = must_alloc(l->n, sizeof *l->state);
    l->seen = must_alloc(l->n, sizeof *l->seen);
    return 0;
}

void ct_ledger_fini(struct ct_ledger *l)
{
    free(l->state);
    free(l->seen);
    l->state = NULL;
    l->seen = NULL;
}

uint64_t ct_value(size_t party, size_t seq)
{
    return (uint64_t)party << SEQ_BITS | (uint64_t)seq;
}

/* The ledger index of v, or SIZE_MAX when v is no value of this ledger. */
static size_t ledger_index(const struct ct_ledger *l, uint64_t v)
{
    uint64_t party = v >> SEQ_BITS, seq = v & SEQ_MASK;
    if (seq >= l->per || party >= l->n / (l->per ? l->per : 1))
        return SIZE_MAX;
    return (size_t)(party * l->per + seq);
}

void ct_ledger_sent(struct ct_ledger *l, uint64_t v, int rc)
{
    size_t i = ledger_index(l, v);
    if (i == SIZE_MAX) {
        atomic_fetch_add(&l->errors, 1);
        return;
    }
    atomic_store(&l->state[i], rc == 0 ? ST_SENT : ST_FAILED);
}

void ct_ledger_seen(struct ct_ledger *l, uint64_t v)
{
    size_t i = ledger_index(l, v);
    if (i == SIZE_MAX) {
        atomic_fetch_add(&l->errors, 1);
        return;
    }
    atomic_fetch_add(&l->seen[i], 1);
    atomic_fetch_add(&l->sum_received, v);
}

void ct_ledger_error(struct ct_ledger *l, int rc)
{
    fprintf(stderr, "unexpected return code: %d (%s)\n", rc, strerror(rc));
    atomic_fetch_add(&l->errors, 1);
}

void ct_ledger_tally(struct ct_ledger *l, struct ct_tally *t)
{
    for (size_t i = 0; i < l->n; i++) {
        unsigned st = atomic_load(&l->state[i]);
        unsigned seen = atomic_load(&l->seen[i]);
        uint64_t v = ct_value(i / l->per, i % l->per);
        t->received += seen;
        if (st == ST_SENT) {
            t->sent++;
            t->sum_sent += v;
            t->lost += seen == 0;
            t->duplicated += seen > 1 ? seen - 1 : 0;
        } else {
            t->failed += st == ST_FAILED;
            t->phantom += seen;
        }
    }
    t->errors += atomic_load(&l->errors);
    t->misordered += atomic_load(&l->misordered);
    t->sum_received += atomic_load(&l->sum_received);
}

bool ct_tally_ok(const struct ct_tally *t)
{
    return t->lost == 0 && t->duplicated == 0 && t->phantom == 0 && t->misordered == 0 &&
           t->errors == 0 && t->sum_sent == t->sum_received && t->sent == t->received;
}

void ct_tally_print(const char *name, const struct ct_tally *t)
{
    printf("%s: sent %llu, failed %llu, received %llu, lost %llu, duplicated %llu, "
           "phantom %llu, misordered %llu, errors %llu, checksum %s: %s\n",
           name, (unsigned long long)t->sent, (unsigned long long)t->failed,
           (unsigned long long)t->received, (unsigned long long)t->lost,
           (unsigned long long)t->duplicated, (unsigned long long)t->phantom,
           (unsigned long long)t->misordered, (unsigned long long)t->errors,
           t->sum_sent == t->sum_received ? "equal" : "DIFFERS",
           ct_tally_ok(t) ? "ok" : "FAILED");
    fflush(stdout);
}

/* -------------------------------------------------------------- parties */

/* A thread or a task, joined the same way. */
struct party {
    pthread_t thread;
    future_t *f;
};

static void party_start(struct party *p, bool as_task, async_pool_t *pool,
                        void *(*fn)(void *), void *arg)
{
    p->f = NULL;
    if (as_task) {
        p->f = async_run_on(pool, fn, arg);
        must(p->f ? 0 : errno, "async_run_on");
    } else {
        must(pthread_create(&p->thread, NULL, fn, arg), "pthread_create");
    }
}

static void party_join(struct party *p)
{
    if (p->f) {
        must(future_get(p->f, NULL), "future_get");
        future_free(p->f);
    } else {
        must(pthread_join(p->thread, NULL), "pthread_join");
    }
}

static bool as_task(enum ct_mode mode, unsigned i)
{
    return mode == CT_TASKS || (mode == CT_MIXED && i % 2 == 0);
}

static int64_t jitter_deadline(uint64_t *rng, int64_t max_ns)
{
    return async_now() + (int64_t)(ct_rand(rng) % (uint64_t)max_ns) + 1;
}

/* ----------------------------------------------------------------- mpmc */

struct mpmc {
    chan_t          *c;
    struct ct_ledger led;
    unsigned         producers;
};

struct mpmc_party {
    struct mpmc *m;
    size_t       id, count;
};

static void *mpmc_produce(void *arg)
{
    struct mpmc_party *p = arg;
    for (size_t s = 0; s < p->count; s++) {
        uint64_t v = ct_value(p->id, s);
        int rc = chan_send(p->m->c, &v);
        ct_ledger_sent(&p->m->led, v, rc);
        if (rc != 0)
            ct_ledger_error(&p->m->led, rc);
    }
    return NULL;
}

static void *mpmc_consume(void *arg)
{
    struct mpmc_party *p = arg;
    struct mpmc *m = p->m;
    int64_t *last = must_alloc(m->producers, sizeof *last);
    for (unsigned i = 0; i < m->producers; i++)
        last[i] = -1;
    uint64_t v;
    int rc;
    while ((rc = chan_recv(m->c, &v)) == 0) {
        uint64_t party = v >> SEQ_BITS;
        int64_t seq = (int64_t)(v & SEQ_MASK);
        if (party < m->producers) {
            if (seq <= last[party])
                atomic_fetch_add(&m->led.misordered, 1);
            last[party] = seq;
        }
        ct_ledger_seen(&m->led, v);
    }
    if (rc != EPIPE)
        ct_ledger_error(&m->led, rc);
    free(last);
    return NULL;
}

int ct_mpmc(size_t cap, unsigned producers, unsigned consumers, size_t items,
            enum ct_mode mode, async_pool_t *pool, struct ct_tally *t)
{
    struct mpmc m = { .producers = producers };
    m.c = chan_make(sizeof(uint64_t), cap);
    if (!m.c)
        return errno;
    size_t per = (items + producers - 1) / producers;
    ct_ledger_init(&m.led, producers, per);
    struct mpmc_party *args = must_alloc(producers + consumers, sizeof *args);
    struct party *ps = must_alloc(producers + consumers, sizeof *ps);
    for (unsigned i = 0; i < consumers; i++) {
        args[producers + i] = (struct mpmc_party){ .m = &m, .id = i };
        party_start(&ps[producers + i], as_task(mode, i + 1), pool, mpmc_consume,
                    &args[producers + i]);
    }
    for (unsigned i = 0; i < producers; i++) {
        size_t from = (size_t)i * per;
        size_t count = from >= items ? 0 : (items - from < per ? items - from : per);
        args[i] = (struct mpmc_party){ .m = &m, .id = i, .count = count };
        party_start(&ps[i], as_task(mode, i), pool, mpmc_produce, &args[i]);
    }
    for (unsigned i = 0; i < producers; i++)
        party_join(&ps[i]);
    int rc = chan_close(m.c);
    if (rc != 0)
        ct_ledger_error(&m.led, rc);
    for (unsigned i = 0; i < consumers; i++)
        party_join(&ps[producers + i]);
    ct_ledger_tally(&m.led, t);
    ct_ledger_fini(&m.led);
    chan_free(m.c);
    free(args);
    free(ps);
    return 0;
}

/* ---------------------------------------------------------- close race */

struct close_round {
    chan_t          *c;
    struct ct_ledger led;
    atomic_ulong     received;
};

struct close_party {
    struct close_round *r;
    size_t              id;
};

static void *close_send(void *arg)
{
    struct close_party *p = arg;
    for (size_t s = 0; s < p->r->led.per; s++) {
        uint64_t v = ct_value(p->id, s);
        int rc = chan_send(p->r->c, &v);
        ct_ledger_sent(&p->r->led, v, rc);
        if (rc == EPIPE)
            break;
        if (rc != 0) {
            ct_ledger_error(&p->r->led, rc);
            break;
        }
    }
    return NULL;
}

static void *close_recv(void *arg)
{
    struct close_party *p = arg;
    uint64_t v;
    int rc;
    while ((rc = chan_recv(p->r->c, &v)) == 0) {
        ct_ledger_seen(&p->r->led, v);
        atomic_fetch_add(&p->r->received, 1);
    }
    if (rc != EPIPE)
        ct_ledger_error(&p->r->led, rc);
    return NULL;
}

/* Close once `target` values were received (target == total: once every
 * sender is done and every receiver waits on an empty channel). */
static void close_round_run(struct close_round *r, unsigned senders, unsigned receivers,
                            uint64_t target)
{
    unsigned n = senders + receivers;
    struct close_party *args = must_alloc(n, sizeof *args);
    pthread_t *th = must_alloc(n, sizeof *th);
    for (unsigned i = 0; i < n; i++) {
        args[i] = (struct close_party){ .r = r, .id = i };
        must(pthread_create(&th[i], NULL, i < senders ? close_send : close_recv, &args[i]),
             "pthread_create");
    }
    int64_t until = tu_deadline();
    while (atomic_load(&r->received) < target && tu_spin_once(until))
        ;
    if (target == r->led.n && !ct_wait_queued(r->c, CHAN_RECV, receivers))
        ct_ledger_error(&r->led, ETIMEDOUT);
    int rc = chan_close(r->c);
    if (rc != 0)
        ct_ledger_error(&r->led, rc);
    for (unsigned i = 0; i < n; i++)
        must(pthread_join(th[i], NULL), "pthread_join");
    free(args);
    free(th);
}

int ct_close_race(size_t cap, unsigned senders, unsigned receivers, size_t per_sender,
                  unsigned rounds, struct ct_tally *t)
{
    uint64_t rng = 0x1234567;
    for (unsigned round = 0; round < rounds; round++) {
        struct close_round r;
        r.c = chan_make(sizeof(uint64_t), cap);
        if (!r.c)
            return errno;
        ct_ledger_init(&r.led, senders, per_sender);   /* receivers send nothing */
        atomic_init(&r.received, 0);
        uint64_t total = (uint64_t)senders * per_sender;
        /* every 4th round: close with every party blocked */
        uint64_t target = round % 4 == 3 ? total : ct_rand(&rng) % (total + 1);
        close_round_run(&r, senders, receivers, target);
        ct_ledger_tally(&r.led, t);
        ct_ledger_fini(&r.led);
        chan_free(r.c);
    }
    return 0;
}

/* -------------------------------------------------------- timeout race */

struct timeout_race {
    chan_t          *c;
    struct ct_ledger led;
};

struct timeout_party {
    struct timeout_race *r;
    size_t               id;
};

#define JITTER_NS (20 * ASYNC_MICROSECOND)

static void *timeout_send(void *arg)
{
    struct timeout_party *p = arg;
    uint64_t rng = p->id * 7919 + 1;
    for (size_t s = 0; s < p->r->led.per; s++) {
        uint64_t v = ct_value(p->id, s);
        int rc = chan_send_until(p->r->c, &v, jitter_deadline(&rng, JITTER_NS));
        if (rc != 0 && rc != ETIMEDOUT)
            ct_ledger_error(&p->r->led, rc);
        ct_ledger_sent(&p->r->led, v, rc);
    }
    return NULL;
}

static void *timeout_recv(void *arg)
{
    struct timeout_party *p = arg;
    uint64_t rng = p->id * 104729 + 3;
    for (;;) {
        uint64_t v;
        int rc = chan_recv_until(p->r->c, &v, jitter_deadline(&rng, JITTER_NS));
        if (rc == 0)
            ct_ledger_seen(&p->r->led, v);
        else if (rc == EPIPE)
            break;
        else if (rc != ETIMEDOUT) {
            ct_ledger_error(&p->r->led, rc);
            break;
        }
    }
    return NULL;
}

int ct_timeout_race(size_t cap, unsigned senders, unsigned receivers, size_t per_sender,
                    struct ct_tally *t)
{
    struct timeout_race r;
    r.c = chan_make(sizeof(uint64_t), cap);
    if (!r.c)
        return errno;
    ct_ledger_init(&r.led, senders, per_sender);
    unsigned n = senders + receivers;
    struct timeout_party *args = must_alloc(n, sizeof *args);
    pthread_t *th = must_alloc(n, sizeof *th);
    for (unsigned i = 0; i < n; i++) {
        args[i] = (struct timeout_party){ .r = &r, .id = i };
        must(pthread_create(&th[i], NULL, i < senders ? timeout_send : timeout_recv, &args[i]),
             "pthread_create");
    }
    for (unsigned i = 0; i < senders; i++)
        must(pthread_join(th[i], NULL), "pthread_join");
    int rc = chan_close(r.c);
    if (rc != 0)
        ct_ledger_error(&r.led, rc);
    for (unsigned i = senders; i < n; i++)
        must(pthread_join(th[i], NULL), "pthread_join");
    ct_ledger_tally(&r.led, t);
    ct_ledger_fini(&r.led);
    chan_free(r.c);
    free(args);
    free(th);
    return 0;
}

/* --------------------------------------------------------- select race */

#define SEL_MAX_CHANS 8

struct sel_race {
    chan_t          *ch[SEL_MAX_CHANS];
    unsigned         nch;
    struct ct_ledger led;
};

struct sel_party {
    struct sel_race *r;
    size_t           id;
};

static int64_t sel_deadline(uint64_t *rng)
{
    switch (ct_rand(rng) % 3) {
    case 0:  return 0;
    case 1:  return jitter_deadline(rng, 30 * ASYNC_MICROSECOND);
    default: return ASYNC_FOREVER;
    }
}

/* Per channel: a send of v, a receive into rbuf[j], or nothing, at random;
 * at least one send. owner[k] = the channel of case k. */
static size_t mixer_cases(struct sel_race *r, uint64_t *rng, uint64_t *v, uint64_t *rbuf,
                          chan_case_t *cs, unsigned *owner)
{
    size_t n = 0;
    bool any_send = false;
    for (unsigned j = 0; j < r->nch; j++) {
        uint64_t x = ct_rand(rng);
        chan_t *c = r->ch[j];
        if (x & 1) {
            cs[n] = (chan_case_t){ .chan = c, .op = CHAN_SEND, .elem = v };
            any_send = true;
        } else {
            cs[n] = (chan_case_t){ .chan = NULL, .op = CHAN_SEND, .elem = v };
        }
        owner[n++] = j;
        cs[n] = (chan_case_t){ .chan = (x & 6) == 0 ? c : NULL, .op = CHAN_RECV,
                               .elem = &rbuf[j] };
        owner[n++] = j;
    }
    if (!any_send)
        cs[0].chan = r->ch[0];
    return n;
}

static void *sel_mixer(void *arg)
{
    struct sel_party *p = arg;
    struct sel_race *r = p->r;
    uint64_t rng = p->id * 31337 + 5, rbuf[SEL_MAX_CHANS], v;
    chan_case_t cs[2 * SEL_MAX_CHANS];
    unsigned owner[2 * SEL_MAX_CHANS];
    size_t seq = 0;
    while (seq < r->led.per) {
        v = ct_value(p->id, seq);
        size_t n = mixer_cases(r, &rng, &v, rbuf, cs, owner), k = SIZE_MAX;
        int rc = chan_select(cs, n, sel_deadline(&rng), &k);
        if (rc == EAGAIN || rc == ETIMEDOUT)
            continue;
        if (rc != 0) {
            ct_ledger_error(&r->led, rc);
            break;
        }
        if (cs[k].op == CHAN_SEND) {
            ct_ledger_sent(&r->led, v, 0);
            seq++;
        } else {
            ct_ledger_seen(&r->led, rbuf[owner[k]]);
        }
    }
    return NULL;
}

/* One receive by a consumer: a select over the open channels, or a plain
 * receive on one of them. Returns the channel closed (EPIPE) or nch. */
static unsigned consume_once(struct sel_race *r, uint64_t *rng, const bool *open)
{
    uint64_t rbuf[SEL_MAX_CHANS];
    int rc;
    size_t k = SIZE_MAX;
    if (ct_rand(rng) % 3 == 0) {
        k = ct_rand(rng) % r->nch;
        if (!open[k])
            return r->nch;
        int64_t dl = ct_rand(rng) & 1 ? 0 : jitter_deadline(rng, 30 * ASYNC_MICROSECOND);
        rc = chan_recv_until(r->ch[k], &rbuf[k], dl);
    } else {
        chan_case_t cs[SEL_MAX_CHANS];
        for (unsigned j = 0; j < r->nch; j++)
            cs[j] = (chan_case_t){ .chan = open[j] ? r->ch[j] : NULL, .op = CHAN_RECV,
                                   .elem = &rbuf[j] };
        rc = chan_select(cs, r->nch, sel_deadline(rng), &k);
    }
    if (rc == 0)
        ct_ledger_seen(&r->led, rbuf[k]);
    else if (rc == EPIPE)
        return (unsigned)k;
    else if (rc != EAGAIN && rc != ETIMEDOUT)
        ct_ledger_error(&r->led, rc);
    return r->nch;
}

static void *sel_consumer(void *arg)
{
    struct sel_party *p = arg;
    struct sel_race *r = p->r;
    uint64_t rng = p->id * 7777 + 9;
    bool open[SEL_MAX_CHANS];
    unsigned nopen = r->nch;
    for (unsigned j = 0; j < r->nch; j++)
        open[j] = true;
    while (nopen > 0) {
        unsigned closed = consume_once(r, &rng, open);
        if (closed < r->nch && open[closed]) {
            open[closed] = false;
            nopen--;
        }
    }
    return NULL;
}

int ct_select_race(unsigned nchans, size_t cap, unsigned mixers, unsigned consumers,
                   size_t per_mixer, struct ct_tally *t)
{
    struct sel_race r = { .nch = nchans < SEL_MAX_CHANS ? nchans : SEL_MAX_CHANS };
    for (unsigned j = 0; j < r.nch; j++) {
        r.ch[j] = chan_make(sizeof(uint64_t), j % 2 ? cap : 0);
        if (!r.ch[j])
            return errno;
    }
    ct_ledger_init(&r.led, mixers, per_mixer);
    unsigned n = mixers + consumers;
    struct sel_party *args = must_alloc(n, sizeof *args);
    pthread_t *th = must_alloc(n, sizeof *th);
    for (unsigned i = 0; i < n; i++) {
        args[i] = (struct sel_party){ .r = &r, .id = i };
        must(pthread_create(&th[i], NULL, i < mixers ? sel_mixer : sel_consumer, &args[i]),
             "pthread_create");
    }
    for (unsigned i = 0; i < mixers; i++)
        must(pthread_join(th[i], NULL), "pthread_join");
    for (unsigned j = 0; j < r.nch; j++) {
        int rc = chan_close(r.ch[j]);
        if (rc != 0)
            ct_ledger_error(&r.led, rc);
    }
    for (unsigned i = mixers; i < n; i++)
        must(pthread_join(th[i], NULL), "pthread_join");
    ct_ledger_tally(&r.led, t);
    ct_ledger_fini(&r.led);
    for (unsigned j = 0; j < r.nch; j++)
        chan_free(r.ch[j]);
    free(args);
    free(th);
    return 0;
}

/* --------------------------------------------------------- cancel race */

#define PUMP_VALUES 1024   /* the most the pump sends in one round */

struct cancel_round {
    chan_t          *c;
    struct ct_ledger led;      /* parties: tasks, then the pump */
    unsigned         tasks;
    atomic_bool      stop;
};

struct cancel_party {
    struct cancel_round *r;
    size_t               id;
};

static void *cancel_task(void *arg)
{
    struct cancel_party *p = arg;
    struct cancel_round *r = p->r;
    uint64_t v = ct_value(p->id, 0), got = 0;
    size_t k = SIZE_MAX;
    int rc;
    switch (p->id % 3) {
    case 0:
        rc = chan_send(r->c, &v);
        k = 0;
        break;
    case 1:
        rc = chan_recv(r->c, &got);
        k = 1;
        break;
    default: {
        chan_case_t cs[2] = {
            { .chan = r->c, .op = CHAN_SEND, .elem = &v },
            { .chan = r->c, .op = CHAN_RECV, .elem = &got },
        };
        rc = chan_select(cs, 2, ASYNC_FOREVER, &k);
        break;
    }
    }
    if (rc == 0 && k == 0)
        ct_ledger_sent(&r->led, v, 0);
    else if (rc == 0)
        ct_ledger_seen(&r->led, got);
    else if (rc == ECANCELED && p->id % 3 != 1)
        ct_ledger_sent(&r->led, v, rc);   /* failed: must never be seen */
    else if (rc != ECANCELED)
        ct_ledger_error(&r->led, rc);
    return NULL;
}

/* The plain thread serving the tasks: receives and sends alternately, with
 * short deadlines, until told to stop. */
static void *cancel_pump(void *arg)
{
    struct cancel_round *r = arg;
    uint64_t rng = 42;
    size_t seq = 0;
    while (!atomic_load(&r->stop)) {
        uint64_t v;
        int rc = chan_recv_until(r->c, &v, jitter_deadline(&rng, JITTER_NS));
        if (rc == 0)
            ct_ledger_seen(&r->led, v);
        else if (rc != ETIMEDOUT)
            ct_ledger_error(&r->led, rc);
        if (seq == PUMP_VALUES)
            continue;
        v = ct_value(r->tasks, seq);
        rc = chan_send_until(r->c, &v, jitter_deadline(&rng, JITTER_NS));
        if (rc != 0 && rc != ETIMEDOUT)
            ct_ledger_error(&r->led, rc);
        ct_ledger_sent(&r->led, v, rc);
        seq += rc == 0;
    }
    return NULL;
}

static void cancel_round_run(struct cancel_round *r, async_pool_t *pool, uint64_t *rng)
{
    struct cancel_party *args = must_alloc(r->tasks, sizeof *args);
    future_t **fs = must_alloc(r->tasks, sizeof *fs);
    pthread_t pump;
    must(pthread_create(&pump, NULL, cancel_pump, r), "pthread_create");
    for (unsigned i = 0; i < r->tasks; i++) {
        args[i] = (struct cancel_party){ .r = r, .id = i };
        fs[i] = async_run_on(pool, cancel_task, &args[i]);
        must(fs[i] ? 0 : errno, "async_run_on");
    }
    for (unsigned i = 0; i < r->tasks; i++) {
        for (uint64_t y = ct_rand(rng) % 64; y > 0; y--)
            sched_yield();
        int rc = future_cancel(fs[i]);
        if (rc != 0 && rc != EBUSY && rc != EALREADY)
            ct_ledger_error(&r->led, rc);
    }
    for (unsigned i = 0; i < r->tasks; i++) {
        int rc = tu_get(fs[i], NULL);
        if (rc != 0 && rc != ECANCELED)
            ct_ledger_error(&r->led, rc);
        future_free(fs[i]);
    }
    atomic_store(&r->stop, true);
    must(pthread_join(pump, NULL), "pthread_join");
    free(args);
    free(fs);
}

int ct_cancel_race(async_pool_t *pool, unsigned tasks, unsigned rounds, struct ct_tally *t)
{
    uint64_t rng = 99;
    for (unsigned round = 0; round < rounds; round++) {
        struct cancel_round r = { .tasks = tasks };
        r.c = chan_make(sizeof(uint64_t), round % 2);
        if (!r.c)
            return errno;
        atomic_init(&r.stop, false);
        ct_ledger_init(&r.led, tasks + 1, PUMP_VALUES);
        cancel_round_run(&r, pool, &rng);
        uint64_t v;   /* what a task left in the buffer */
        while (chan_recv_until(r.c, &v, 0) == 0)
            ct_ledger_seen(&r.led, v);
        ct_ledger_tally(&r.led, t);
        ct_ledger_fini(&r.led);
        chan_free(r.c);
    }
    return 0;
}

/* ------------------------------------------------------------ pipeline */

struct stage {
    chan_t *in, *out;
};

static void *stage_run(void *arg)
{
    struct stage *s = arg;
    uint64_t v;
    int rc;
    while ((rc = chan_recv(s->in, &v)) == 0)
        if ((rc = chan_send(s->out, &v)) != 0)
            break;
    chan_close(s->out);
    return (void *)(intptr_t)(rc == EPIPE ? 0 : rc);
}

struct feeder {
    chan_t          *c;
    struct ct_ledger *led;
};

static void *feed(void *arg)
{
    struct feeder *fd = arg;
    for (size_t s = 0; s < fd->led->per; s++) {
        uint64_t v = ct_value(0, s);
        int rc = chan_send(fd->c, &v);
        ct_ledger_sent(fd->led, v, rc);
        if (rc != 0)
            ct_ledger_error(fd->led, rc);
    }
    chan_close(fd->c);
    return NULL;
}

static void drain_in_order(chan_t *c, struct ct_ledger *led)
{
    uint64_t v, expect = 0;
    int rc;
    while ((rc = chan_recv(c, &v)) == 0) {
        if (v != ct_value(0, expect))
            atomic_fetch_add(&led->misordered, 1);
        expect = (v & SEQ_MASK) + 1;
        ct_ledger_seen(led, v);
    }
    if (rc != EPIPE)
        ct_ledger_error(led, rc);
}

int ct_pipeline(unsigned stages, unsigned threads, size_t items, struct ct_tally *t)
{
    async_pool_t *pool = tu_pool(threads, 0, NULL);
    if (!pool)
        return errno;
    chan_t **ch = must_alloc(stages + 1, sizeof *ch);
    struct stage *st = must_alloc(stages, sizeof *st);
    future_t **fs = must_alloc(stages, sizeof *fs);
    for (unsigned i = 0; i <= stages; i++) {
        ch[i] = chan_make(sizeof(uint64_t), 0);
        must(ch[i] ? 0 : errno, "chan_make");
    }
    struct ct_ledger led;
    ct_ledger_init(&led, 1, items);
    for (unsigned i = 0; i < stages; i++) {
        st[i] = (struct stage){ .in = ch[i], .out = ch[i + 1] };
        fs[i] = async_run_on(pool, stage_run, &st[i]);
        must(fs[i] ? 0 : errno, "async_run_on");
    }
    struct feeder fd = { .c = ch[0], .led = &led };
    pthread_t feeder;
    must(pthread_create(&feeder, NULL, feed, &fd), "pthread_create");
    drain_in_order(ch[stages], &led);
    must(pthread_join(feeder, NULL), "pthread_join");
    for (unsigned i = 0; i < stages; i++) {
        void *res = NULL;
        int rc = tu_get(fs[i], &res);
        if (rc != 0 || res != NULL)
            ct_ledger_error(&led, rc ? rc : (int)(intptr_t)res);
        future_free(fs[i]);
    }
    must(async_pool_destroy(pool, ASYNC_DRAIN), "async_pool_destroy");
    ct_ledger_tally(&led, t);
    ct_ledger_fini(&led);
    for (unsigned i = 0; i <= stages; i++)
        chan_free(ch[i]);
    free(ch);
    free(st);
    free(fs);
    return 0;
}

/* ---------------------------------------------------------- rendezvous */

struct rendezvous {
    chan_t            *c;
    struct ct_ledger   led;
    uint64_t *_Atomic  holder;   /* the receiver's element */
};

static void *rendezvous_recv(void *arg)
{
    struct rendezvous *rv = arg;
    uint64_t elem = UINT64_MAX;   /* written only by the channel from now on */
    atomic_store(&rv->holder, &elem);
    int rc;
    while ((rc = chan_recv(rv->c, &elem)) == 0)
        ct_ledger_seen(&rv->led, elem);
    if (rc != EPIPE)
        ct_ledger_error(&rv->led, rc);
    return NULL;
}

int ct_rendezvous(size_t rounds, struct ct_tally *t)
{
    struct rendezvous rv;
    rv.c = chan_make(sizeof(uint64_t), 0);
    if (!rv.c)
        return errno;
    ct_ledger_init(&rv.led, 1, rounds);
    atomic_init(&rv.holder, NULL);
    pthread_t th;
    must(pthread_create(&th, NULL, rendezvous_recv, &rv), "pthread_create");
    int64_t until = tu_deadline();
    while (!atomic_load(&rv.holder) && tu_spin_once(until))
        ;
    uint64_t *held = atomic_load(&rv.holder);
    for (size_t s = 0; held && s < rounds; s++) {
        uint64_t v = ct_value(0, s);
        int rc = chan_send(rv.c, &v);
        ct_ledger_sent(&rv.led, v, rc);
        /* The send returned: the receiver holds v already (an early return
         * would read the previous value, or UINT64_MAX). */
        if (rc == 0 && *held != v)
            atomic_fetch_add(&rv.led.misordered, 1);
    }
    if (!held)
        ct_ledger_error(&rv.led, ETIMEDOUT);
    chan_close(rv.c);
    must(pthread_join(th, NULL), "pthread_join");
    ct_ledger_tally(&rv.led, t);
    ct_ledger_fini(&rv.led);
    chan_free(rv.c);
    return 0;
}

/* ------------------------------------------------------ stress programs */

size_t ct_scaled(size_t n, double scale, size_t lo)
{
    double v = (double)n * scale;
    return v < (double)lo ? lo : v > 1e12 ? (size_t)1e12 : (size_t)v;
}

void ct_score_add(struct ct_score *s, const char *name, int rc, const struct ct_tally *t,
                  bool expect_ok)
{
    if (rc != 0)
        printf("%s: could not run: %s\n", name, strerror(rc));
    else
        ct_tally_print(name, t);
    bool ok = rc == 0 && ct_tally_ok(t) && expect_ok;
    if (rc == 0 && ct_tally_ok(t) && !expect_ok)
        printf("%s: FAILED its own check\n", name);
    if (ok)
        s->passed++;
    else
        s->failed++;
}

int ct_score_end(const struct ct_score *s)
{
    printf("%u passed, %u failed\n", s->passed, s->failed);
    fflush(stdout);
    return s->failed == 0 ? 0 : 1;
}
