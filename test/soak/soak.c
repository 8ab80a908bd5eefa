/*
 * test/soak/soak.c — every operation of the library at once, at random, for
 * a while, and then an account of everything that happened.
 *
 *   soak [--seconds S] [--drivers N] [--seed N] [-v]
 *
 * The run is a sequence of epochs (about two seconds each). In an epoch:
 *   - a main pool (1..4 threads, a few replacements allowed) and five shared
 *     channels (capacities 0, 1, 3, 16 carrying 8-byte messages, and a signal
 *     channel of capacity 2) are created;
 *   - N driver threads mix, at random: submitting tasks (kept or detached),
 *     future_get with and without deadlines, future_cancel, future_free,
 *     future_wait_any/all, promises completed / failed / freed / cancelled
 *     under tasks waiting on them, channel send / receive / select with
 *     deadlines, async_pool_stats;
 *   - the tasks themselves compute, panic with deferred functions, fork
 *     children onto their own pool, produce and consume on the shared
 *     channels (some waiting forever), select, sleep, wait on promises;
 *   - a churn thread creates small pools, loads them and destroys them under
 *     load, alternating ASYNC_DRAIN and ASYNC_CANCEL;
 *   - at the end the main pool is destroyed under load too, alternating the
 *     two modes: DRAIN epochs first close the channels, wait until the pool
 *     is quiet and check its counters exactly; CANCEL epochs destroy it with
 *     tasks still blocked on open channels and queued behind them.
 * Then: every kept future must be done with an outcome its task could have
 * produced; every message (producer id, sequence number) sent successfully
 * must have been received exactly once, in each receiver in per-producer
 * FIFO order, and no failed send may have been delivered; the signal channel
 * must have delivered exactly as many signals as were sent; the pool's
 * counters and panic lines must match what the tasks did. Memory is checked
 * by the sanitizer builds (LeakSanitizer) and valgrind.
 *
 * Threads and tasks only record; failures are counted and the first few
 * described, and main decides the exit status. Ordering is by joins, pool
 * destruction and the library's own synchronisation; the only sleeping is the
 * epoch's own duration. Prints operations per second and ends with
 * "N passed, M failed" (N: checks made).
 *
 * SOAK_SECONDS in the environment sets the default duration (for quick runs,
 * e.g. under valgrind), else STRESS_SCALE scales the 15 s; --seconds
 * overrides both.
 */
#include <async.h>

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NCH        5          /* shared channels; the last carries signals */
#define SIGCH      (NCH - 1)
#define MAXPROD    16384      /* producer ids per epoch */
#define SEQCAP     1024       /* messages per producer per channel */
#define MAXKEPT    48         /* futures a driver keeps at once */
#define MAXPROMS   6          /* promises a driver holds at once */
#define NFIFO      256        /* receiver FIFO-check table entries */
#define MAXDRIVERS 16

/* =============================================================== tally */

static atomic_ulong n_checks, n_failures;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char fail_msgs[8][200];   /* guarded by fail_lock */
static bool verbose;

static bool check(bool ok, const char *fmt, ...) ASYNC_PRINTF(2, 3);
static bool check(bool ok, const char *fmt, ...)
{
    atomic_fetch_add_explicit(&n_checks, 1, memory_order_relaxed);
    if (ok)
        return true;
    unsigned long n = atomic_fetch_add(&n_failures, 1);
    if (n < 8 || verbose) {
        char buf[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        pthread_mutex_lock(&fail_lock);
        if (n < 8)
            memcpy(fail_msgs[n], buf, sizeof buf);
        pthread_mutex_unlock(&fail_lock);
        if (verbose)
            fprintf(stderr, "soak: FAILED: %s\n", buf);
    }
    return false;
}

/* ================================================================= rng */

struct rng {
    uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static unsigned below(struct rng *r, unsigned n)
{
    return (unsigned)(rnd(r) % n);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    r->s = seed * UINT64_C(0x9E3779B97F4A7C15) + 0x1234567;
    if (!r->s)
        r->s = 1;
    for (int i = 0; i < 4; i++)
        rnd(r);
}

/* ====================================================== epoch state */

struct msg {
    uint32_t prod, seq;
};

/* Written by the one thread or task that owns the id; read after the
 * epoch's threads are joined and its pools destroyed. */
struct producer {
    uint32_t sent[NCH];
};

/* What a pool's tasks did: compared with its counters. */
struct acct {
    atomic_ulong submitted, ran, panicked;
    atomic_uint  log_panics, log_saturated, log_unread, log_other;
};

static struct epoch {
    chan_t         *ch[NCH];
    struct producer prods[MAXPROD];
    atomic_uint     nprod;
    _Atomic uint32_t (*bits)[MAXPROD][SEQCAP / 32];   /* [NCH] */
    atomic_ulong    sig_sent, sig_recv, msgs;
    atomic_bool     stop;
    async_pool_t   *pool;
    struct acct     acct;
    unsigned        max_threads;
} E;

static atomic_ulong total_ops, total_epochs, total_pools, total_futures;

static void log_hook(void *ctx, const char *line)
{
    struct acct *a = ctx;
    if (strstr(line, ": panic: "))
        atomic_fetch_add(&a->log_panics, 1);
    else if (strstr(line, ": saturated: "))
        atomic_fetch_add(&a->log_saturated, 1);
    else if (strstr(line, "outcome was never read"))   /* a failure freed unread */
        atomic_fetch_add(&a->log_unread, 1);
    else
        atomic_fetch_add(&a->log_other, 1);
}

static int64_t deadline_in(int64_t ns)
{
    return async_now() + ns;
}

/* ============================================================ messages */

/* A sender's identity: a fresh producer id per thread or task. */
struct sender {
    uint32_t id;   /* MAXPROD: none left, send nothing */
};

static struct sender sender_new(void)
{
    unsigned id = atomic_fetch_add(&E.nprod, 1);
    return (struct sender){ id < MAXPROD ? id : MAXPROD };
}

/* The message this sender would send on c next; false if none may be. */
static bool next_msg(const struct sender *s, unsigned c, struct msg *m)
{
    if (s->id >= MAXPROD || E.prods[s->id].sent[c] >= SEQCAP)
        return false;
    *m = (struct msg){ s->id, E.prods[s->id].sent[c] };
    return true;
}

static void sent_ok(const struct sender *s, unsigned c)
{
    if (c == SIGCH)
        atomic_fetch_add(&E.sig_sent, 1);
    else
        E.prods[s->id].sent[c]++;
}

/* A receiver's FIFO check: last sequence seen per (channel, producer),
 * direct-mapped; an evicted pair starts afresh (the check stays sound). */
struct receiver {
    struct {
        uint32_t key, next;   /* key = c * MAXPROD + prod + 1; next = seq + 1 */
    } t[NFIFO];
};

static void received(struct receiver *r, unsigned c, const struct msg *m)
{
    if (c == SIGCH) {
        atomic_fetch_add(&E.sig_recv, 1);
        return;
    }
    atomic_fetch_add_explicit(&E.msgs, 1, memory_order_relaxed);
    if (!check(m->prod < MAXPROD && m->seq < SEQCAP, "chan %u: garbage message %u/%u", c,
               m->prod, m->seq))
        return;
    uint32_t bit = UINT32_C(1) << (m->seq % 32);
    uint32_t old = atomic_fetch_or(&E.bits[c][m->prod][m->seq / 32], bit);
    check(!(old & bit), "chan %u: message %u/%u delivered twice", c, m->prod, m->seq);
    uint32_t key = c * MAXPROD + m->prod + 1;
    unsigned h = (key * 2654435761u) % NFIFO;
    if (r->t[h].key == key)
        check(m->seq >= r->t[h].next, "chan %u: producer %u: seq %u after %u (FIFO)", c,
              m->prod, m->seq, r->t[h].next - 1);
    r->t[h].key = key;
    r->t[h].next = m->seq + 1;
}

/* One send on channel c; returns its code. */
static int do_send(struct sender *s, unsigned c, int64_t deadline)
{
    struct msg m;
    if (c != SIGCH && !next_msg(s, c, &m))
        return EAGAIN;
    int rc = chan_send_until(E.ch[c], c == SIGCH ? NULL : &m, deadline);
    if (rc == 0)
        sent_ok(s, c);
    else
        check(rc == EAGAIN || rc == ETIMEDOUT || rc == EPIPE || rc == ECANCELED,
              "chan_send: %d", rc);
    return rc;
}

static int do_recv(struct receiver *r, unsigned c, int64_t deadline)
{
    struct msg m = { UINT32_MAX, UINT32_MAX };
    int rc = chan_recv_until(E.ch[c], c == SIGCH ? NULL : &m, deadline);
    if (rc == 0)
        received(r, c, &m);
    else
        check(rc == EAGAIN || rc == ETIMEDOUT || rc == EPIPE || rc == ECANCELED,
              "chan_recv: %d", rc);
    return rc;
}

/* A select over 1..4 random cases, sends carrying this sender's messages. */
static int do_select(struct rng *g, struct sender *s, struct receiver *r, int64_t deadline)
{
    chan_case_t cs[4];
    struct msg m[4];
    unsigned n = 1 + below(g, 4), k = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned c = below(g, NCH);
        bool send = below(g, 2);
        if (send && c != SIGCH && !next_msg(s, c, &m[k]))
            continue;
        if (!send)
            m[k] = (struct msg){ UINT32_MAX, UINT32_MAX };
        cs[k] = (chan_case_t){ .chan = E.ch[c], .op = send ? CHAN_SEND : CHAN_RECV,
                               .elem = c == SIGCH ? NULL : &m[k] };
        k++;
    }
    if (k == 0 && deadline == ASYNC_FOREVER)
        deadline = 0;   /* select {} would wait for a cancellation */
    size_t fired = SIZE_MAX;
    int rc = chan_select(cs, k, deadline, &fired);
    if (rc == 0 || rc == EPIPE) {
        if (!check(fired < k, "select: fired %zu of %u", fired, k))
            return rc;
        unsigned c = 0;
        while (E.ch[c] != cs[fired].chan)
            c++;
        if (rc == 0 && cs[fired].op == CHAN_SEND)
            sent_ok(s, c);
        else if (rc == 0)
            received(r, c, &m[fired]);
    } else {
        check(rc == EAGAIN || rc == ETIMEDOUT || rc == ECANCELED, "select: %d", rc);
        check(fired == SIZE_MAX, "select: fired written on %d", rc);
    }
    return rc;
}

/* ================================================================ tasks */

enum kind {
    K_COMPUTE, K_PANIC, K_FORK, K_SLEEP, K_PRODUCER, K_CONSUMER, K_PROMISE_WAIT, NKINDS
};

/* The argument, copied into the task by async_submit. */
struct targ {
    enum kind     kind;
    unsigned      x;
    unsigned      ndefers;
    bool          forever;   /* may wait without a deadline */
    async_pool_t *pool;
    struct acct  *acct;
    future_t     *handle;    /* K_PROMISE_WAIT: freed by the task if it runs */
};

static uintptr_t compute(unsigned x)
{
    return (uintptr_t)(x * 2654435761u ^ 0x5a5a5a5au);
}

static int panic_code(unsigned x)
{
    return (int)(x % 50);   /* 0 becomes EIO */
}

/* Deferred functions: recorded in a heap record freed by the last to run
 * (the first registered), which checks they ran last in first out. */
struct drec {
    unsigned n, ran, order[4];
    struct dstep {
        struct drec *r;
        unsigned     i;
    } step[4];
};

static void defer_step(void *arg)
{
    struct dstep *d = arg;
    d->r->order[d->r->ran++ % 4] = d->i;
}

static void defer_last(void *arg)
{
    struct drec *r = arg;
    bool lifo = r->ran == r->n;
    for (unsigned i = 0; i < r->ran && i < 4; i++)
        lifo &= r->order[i] == r->n - 1 - i;
    check(lifo, "defers: %u of %u ran, not last in first out", r->ran, r->n);
    free(r);
}

static void register_defers(unsigned n)
{
    if (n == 0)
        return;
    struct drec *r = calloc(1, sizeof *r);
    if (!check(r != NULL, "out of memory"))
        return;
    r->n = n;
    check(async_defer(defer_last, r) == 0, "async_defer failed");
    for (unsigned i = 0; i < n; i++) {
        r->step[i] = (struct dstep){ r, i };
        check(async_defer(defer_step, &r->step[i]) == 0, "async_defer failed");
    }
}

static future_t *submit(async_pool_t *pool, struct acct *a, const struct targ *t);

static void *fork_task(const struct targ *t)
{
    struct targ c = *t;
    c.kind = K_COMPUTE;
    c.ndefers = 0;
    future_t *f1 = submit(t->pool, t->acct, &c);
    c.x = t->x + 1;
    future_t *f2 = submit(t->pool, t->acct, &c);
    void *v1 = NULL, *v2 = NULL;
    int rc1 = f1 ? future_get(f1, &v1) : errno;
    int rc2 = f2 ? future_get(f2, &v2) : errno;
    future_free(f1);
    future_free(f2);
    if (rc1 || rc2) {
        check(rc1 == ECANCELED || rc2 == ECANCELED, "fork: children %d %d", rc1, rc2);
        atomic_fetch_add(&t->acct->panicked, 1);
        async_panic(ECANCELED, "fork");
    }
    check((uintptr_t)v1 == compute(t->x) && (uintptr_t)v2 == compute(t->x + 1),
          "fork: wrong child results");
    return (void *)((uintptr_t)v1 + (uintptr_t)v2);
}

static void *sleep_task(const struct targ *t)
{
    int64_t d = deadline_in((int64_t)(t->x % 300) * ASYNC_MICROSECOND);
    int rc = async_sleep_until(d);
    if (rc == 0)
        check(async_now() >= d, "async_sleep_until returned early");
    else
        check(rc == ECANCELED && async_cancelled(), "async_sleep_until: %d", rc);
    return NULL;
}

static int64_t task_deadline(struct rng *g, bool forever)
{
    unsigned k = below(g, 4);
    if (k == 0 && forever)
        return ASYNC_FOREVER;
    return k == 1 ? 0 : deadline_in((int64_t)(1 + below(g, 2000)) * ASYNC_MICROSECOND);
}

/* Sends or receives up to n messages; returns how many went through. */
static void *channel_task(const struct targ *t, bool produce)
{
    struct rng g;
    rng_seed(&g, t->x);
    struct sender s = sender_new();
    struct receiver *r = calloc(1, sizeof *r);
    if (!check(r != NULL, "out of memory"))
        return NULL;
    unsigned n = 1 + t->x % 32, done = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned c = below(&g, NCH);
        int64_t d = task_deadline(&g, t->forever);
        int rc = below(&g, 4) == 0 ? do_select(&g, &s, r, d)
                 : produce         ? do_send(&s, c, d)
                                   : do_recv(r, c, d);
        if (rc == 0)
            done++;
        if (rc == ECANCELED)
            check(async_cancelled(), "channel op: ECANCELED, not cancelled");
        if (rc == ECANCELED || (rc == EPIPE && below(&g, 2)))
            break;
    }
    free(r);
    atomic_fetch_add_explicit(&total_ops, n, memory_order_relaxed);
    return (void *)(uintptr_t)done;
}

static void *promise_task(const struct targ *t)
{
    void *v = NULL;
    int rc = t->forever ? future_get(t->handle, &v)
                        : future_get_until(t->handle, &v, deadline_in(ASYNC_MILLISECOND));
    future_free(t->handle);
    check(rc == 0 || rc == EPIPE || rc == ECANCELED || rc == ETIMEDOUT || rc == 7,
          "promise wait: %d", rc);
    if (rc == 0)
        check((uintptr_t)v == compute(t->x), "promise value");
    return NULL;
}

static void *task_main(void *arg)
{
    const struct targ *t = arg;
    atomic_fetch_add(&t->acct->ran, 1);
    switch (t->kind) {
    case K_COMPUTE:
        register_defers(t->ndefers);
        return (void *)compute(t->x);
    case K_PANIC:
        register_defers(t->ndefers);
        atomic_fetch_add(&t->acct->panicked, 1);
        async_panic(panic_code(t->x), "soak %u", t->x);
    case K_FORK:
        return fork_task(t);
    case K_SLEEP:
        return sleep_task(t);
    case K_PRODUCER:
    case K_CONSUMER:
        return channel_task(t, t->kind == K_PRODUCER);
    default:
        return promise_task(t);
    }
}

static future_t *submit(async_pool_t *pool, struct acct *a, const struct targ *t)
{
    future_t *f = async_submit(pool, task_main, t, sizeof *t);
    if (f) {
        atomic_fetch_add(&a->submitted, 1);
        atomic_fetch_add_explicit(&total_futures, 1, memory_order_relaxed);
    } else {
        check(errno == ECANCELED, "submit: errno %d", errno);
    }
    return f;
}

/* ============================================================ outcomes */

/* A future some thread kept, and what it knows about it. */
struct kept {
    future_t *f;
    struct targ t;
    bool      cancelled;     /* future_cancel answered 0 */
    bool      cancel_asked;  /* ... answered EBUSY */
};

/* May a done future have answered rc / value / msg? pool_cancel: its pool
 * was destroyed with ASYNC_CANCEL. */
static void check_outcome(const struct kept *k, int rc, uintptr_t v, bool pool_cancel)
{
    future_state_t s = future_state(k->f);
    const char *msg = future_error(k->f);
    if (k->cancelled || s == FUTURE_CANCELLED) {
        check(rc == ECANCELED && s == FUTURE_CANCELLED && !msg,
              "cancelled task: rc %d state %d", rc, (int)s);
        check(k->cancelled || pool_cancel, "task %u cancelled by nobody", k->t.x);
        return;
    }
    bool stop = k->cancel_asked || pool_cancel;
    switch (k->t.kind) {
    case K_COMPUTE:
        check(rc == 0 && v == compute(k->t.x), "compute: rc %d", rc);
        break;
    case K_PANIC: {
        int code = panic_code(k->t.x) ? panic_code(k->t.x) : EIO;
        char want[32];
        snprintf(want, sizeof want, "soak %u", k->t.x);
        check(rc == code && s == FUTURE_FAILED && msg && strcmp(msg, want) == 0,
              "panic: rc %d state %d msg %s", rc, (int)s, msg ? msg : "(null)");
        break;
    }
    case K_FORK:
        if (rc == ECANCELED)
            check(stop && msg && strcmp(msg, "fork") == 0, "fork: ECANCELED unasked");
        else
            check(rc == 0 && v == compute(k->t.x) + compute(k->t.x + 1), "fork: rc %d", rc);
        break;
    case K_PRODUCER:
    case K_CONSUMER:
        check(rc == 0 && v <= 32, "channel task: rc %d value %lu", rc, (unsigned long)v);
        break;
    default:
        check(rc == 0 && v == 0, "task kind %d: rc %d", (int)k->t.kind, rc);
        break;
    }
}

/* After the pool is gone: done, plausible, freed. */
static void settle(struct kept *k, bool pool_cancel)
{
    check(future_done(k->f), "future of task %u (kind %d) not done after destroy", k->t.x,
          (int)k->t.kind);
    void *v = NULL;
    int rc = future_get_until(k->f, &v, 0);
    check_outcome(k, rc, (uintptr_t)v, pool_cancel);
    if (k->t.kind == K_PROMISE_WAIT && future_state(k->f) == FUTURE_CANCELLED)
        future_free(k->t.handle);   /* it never ran, so never freed it */
    future_free(k->f);
    k->f = NULL;
}

/* Futures handed to main when their driver ends; guarded by kept_lock. */
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kept    *kept_all;
static size_t          kept_n, kept_cap;

static void hand_over(struct kept *k)
{
    pthread_mutex_lock(&kept_lock);
    if (kept_n == kept_cap) {
        kept_cap = kept_cap ? 2 * kept_cap : 256;
        kept_all = realloc(kept_all, kept_cap * sizeof *kept_all);
        if (!kept_all)
            abort();
    }
    kept_all[kept_n++] = *k;
    pthread_mutex_unlock(&kept_lock);
}

/* ============================================================== drivers */

struct held_promise {
    promise_t *p;
    future_t  *h;     /* our own handle, for cancelling through it */
    unsigned   x;
};

struct driver {
    pthread_t           thread;
    unsigned            index;
    struct rng          g;
    struct sender       s;
    struct receiver     r;
    struct kept         kept[MAXKEPT];
    unsigned            nkept;
    struct held_promise proms[MAXPROMS];
    unsigned            nproms;
    unsigned long       ops;
};

static struct targ random_targ(struct rng *g, async_pool_t *pool, struct acct *a, bool forever)
{
    static const enum kind kinds[] = { K_COMPUTE, K_COMPUTE, K_PANIC, K_FORK, K_SLEEP,
                                       K_PRODUCER, K_PRODUCER, K_CONSUMER, K_CONSUMER };
    return (struct targ){
        .kind = kinds[below(g, sizeof kinds / sizeof kinds[0])],
        .x = (unsigned)rnd(g) & 0xffffff,
        .ndefers = below(g, 4),
        .forever = forever && below(g, 3) == 0,
        .pool = pool,
        .acct = a,
    };
}

/* Free kept future i. A promise waiter is freed only once done: if it was
 * cancelled before it ran, its handle on the promise is ours to free. */
static void drop_kept(struct driver *d, unsigned i)
{
    struct kept *k = &d->kept[i];
    if (k->t.kind == K_PROMISE_WAIT) {
        if (!future_done(k->f))
            return;
        if (future_state(k->f) == FUTURE_CANCELLED)
            future_free(k->t.handle);
    }
    future_free(k->f);
    d->kept[i] = d->kept[--d->nkept];
}

static void op_submit(struct driver *d)
{
    struct targ t = random_targ(&d->g, E.pool, &E.acct, true);
    future_t *f = submit(E.pool, &E.acct, &t);
    if (!f)
        return;
    if (d->nkept == MAXKEPT || below(&d->g, 4) == 0) {
        future_free(f);   /* detached: it runs on, unobserved */
        return;
    }
    d->kept[d->nkept++] = (struct kept){ .f = f, .t = t };
}

static bool ends_by_itself(const struct kept *k)
{
    return k->t.kind == K_COMPUTE || k->t.kind == K_PANIC || k->t.kind == K_FORK ||
           k->t.kind == K_SLEEP;
}

static void op_get(struct driver *d)
{
    if (d->nkept == 0)
        return;
    unsigned i = below(&d->g, d->nkept);
    struct kept *k = &d->kept[i];
    unsigned how = below(&d->g, 3);
    if (how == 2 && !ends_by_itself(k))
        how = 1;
    void *v = (void *)(uintptr_t)0xdead;
    int64_t deadline = how == 0 ? 0 : deadline_in((int64_t)below(&d->g, 500) * ASYNC_MICROSECOND);
    bool done_before = future_done(k->f);
    int rc = how == 2 ? future_get(k->f, &v) : future_get_until(k->f, &v, deadline);
    if ((rc == EAGAIN && how == 0) || (rc == ETIMEDOUT && how == 1)) {
        /* a done future answers its outcome (a panic code may be EAGAIN) */
        check(!done_before || (k->t.kind == K_PANIC && rc == panic_code(k->t.x)),
              "get: %d on a future already done", rc);
        if (rc == ETIMEDOUT)
            check(async_now() >= deadline, "get_until returned early");
        return;
    }
    check_outcome(k, rc, (uintptr_t)v, false);
    if (below(&d->g, 2))
        drop_kept(d, i);
}

static void op_cancel(struct driver *d)
{
    if (d->nkept == 0)
        return;
    struct kept *k = &d->kept[below(&d->g, d->nkept)];
    bool was_done = future_done(k->f);
    int rc = future_cancel(k->f);
    check(rc == 0 || rc == EBUSY || rc == EALREADY, "future_cancel: %d", rc);
    check(!was_done || rc == EALREADY, "cancel of a done future: %d", rc);
    if (rc == 0) {
        k->cancelled = true;
        check(future_state(k->f) == FUTURE_CANCELLED, "cancelled, yet state %d",
              (int)future_state(k->f));
    } else if (rc == EBUSY) {
        k->cancel_asked = true;
    }
}

static void op_free(struct driver *d)
{
    if (d->nkept == 0)
        return;
    drop_kept(d, below(&d->g, d->nkept));
}

static void op_wait(struct driver *d)
{
    if (d->nkept == 0)
        return;
    future_t *fs[4];
    unsigned n = 1 + below(&d->g, d->nkept < 4 ? d->nkept : 4);
    for (unsigned i = 0; i < n; i++)
        fs[i] = d->kept[below(&d->g, d->nkept)].f;
    int64_t deadline = deadline_in((int64_t)below(&d->g, 300) * ASYNC_MICROSECOND);
    if (below(&d->g, 2)) {
        int rc = future_wait_all(fs, n, deadline);
        check(rc == 0 || rc == ETIMEDOUT, "wait_all: %d", rc);
        for (unsigned i = 0; rc == 0 && i < n; i++)
            check(future_done(fs[i]), "wait_all: 0 but not all done");
    } else {
        size_t idx = SIZE_MAX;
        int rc = future_wait_any(fs, n, deadline, &idx);
        check(rc == 0 || rc == ETIMEDOUT, "wait_any: %d", rc);
        if (rc == 0)
            check(idx < n && future_done(fs[idx]), "wait_any: index %zu", idx);
    }
}

/* Make a promise and a task waiting on it. */
static void promise_new(struct driver *d)
{
    if (d->nproms == MAXPROMS || d->nkept == MAXKEPT)
        return;
    struct held_promise *hp = &d->proms[d->nproms];
    hp->p = promise_make();
    if (!check(hp->p != NULL, "promise_make failed"))
        return;
    hp->h = promise_future(hp->p);
    hp->x = (unsigned)rnd(&d->g) & 0xffff;
    struct targ t = { .kind = K_PROMISE_WAIT, .x = hp->x, .forever = below(&d->g, 2),
                      .pool = E.pool, .acct = &E.acct, .handle = promise_future(hp->p) };
    future_t *f = submit(E.pool, &E.acct, &t);
    if (f)
        d->kept[d->nkept++] = (struct kept){ .f = f, .t = t };
    else
        future_free(t.handle);
    d->nproms++;
}

/* Complete, fail, cancel or break one promise, then let it go. */
static void promise_end(struct driver *d, unsigned i, unsigned how)
{
    struct held_promise *hp = &d->proms[i];
    int rc;
    switch (how % 4) {
    case 0:  rc = promise_complete(hp->p, (void *)compute(hp->x)); break;
    case 1:  rc = promise_fail(hp->p, 7, "failed %u", hp->x); break;
    case 2:  rc = future_cancel(hp->h); break;
    default: rc = 0; break;   /* promise_free below breaks it */
    }
    check(rc == 0, "promise resolution: %d", rc);
    if (how % 4 != 3)
        check(promise_complete(hp->p, NULL) == EALREADY, "second completion");
    promise_free(hp->p);
    future_free(hp->h);
    d->proms[i] = d->proms[--d->nproms];
}

static void op_promise(struct driver *d)
{
    if (d->nproms && below(&d->g, 2))
        promise_end(d, below(&d->g, d->nproms), below(&d->g, 4));
    else
        promise_new(d);
}

static void op_channel(struct driver *d)
{
    unsigned c = below(&d->g, NCH);
    int64_t deadline = below(&d->g, 3) == 0
                           ? 0
                           : deadline_in((int64_t)below(&d->g, 300) * ASYNC_MICROSECOND);
    switch (below(&d->g, 3)) {
    case 0:  do_send(&d->s, c, deadline); break;
    case 1:  do_recv(&d->r, c, deadline); break;
    default: do_select(&d->g, &d->s, &d->r, deadline); break;
    }
}

static void op_stats(struct driver *d)
{
    (void)d;
    async_pool_stats_t st;
    check(async_pool_stats(E.pool, &st) == 0, "async_pool_stats failed");
    check(st.threads <= E.max_threads && st.peak_threads <= E.max_threads,
          "stats: threads %u peak %u above max %u", st.threads, st.peak_threads,
          E.max_threads);
}

static void *driver_main(void *arg)
{
    struct driver *d = arg;
    d->s = sender_new();
    while (!atomic_load_explicit(&E.stop, memory_order_relaxed)) {
        unsigned op = below(&d->g, 100);
        if (op < 25)       op_submit(d);
        else if (op < 40)  op_get(d);
        else if (op < 44)  op_cancel(d);
        else if (op < 48)  op_free(d);
        else if (op < 51)  op_wait(d);
        else if (op < 58)  op_promise(d);
        else if (op < 98)  op_channel(d);
        else               op_stats(d);
        d->ops++;
        if (d->ops % 256 == 0 && d->s.id < MAXPROD)
            d->s = sender_new();   /* keep sequence numbers below SEQCAP */
    }
    while (d->nproms)
        promise_end(d, 0, below(&d->g, 4));
    for (unsigned i = 0; i < d->nkept; i++)
        hand_over(&d->kept[i]);
    atomic_fetch_add(&total_ops, d->ops);
    return NULL;
}

/* ================================================================ churn */

/* Small pools created, loaded and destroyed under load. */
struct churn {
    pthread_t  thread;
    struct rng g;
    unsigned   rounds;
};

static void churn_round(struct churn *ch)
{
    struct acct a = { 0 };
    unsigned threads = 1 + below(&ch->g, 3);
    async_pool_config_t cfg = { .threads = threads, .max_threads = threads + 2,
                                .name = "churn", .log = log_hook, .log_ctx = &a };
    async_pool_t *pool = async_pool_create(&cfg);
    if (!check(pool != NULL, "churn: async_pool_create: errno %d", errno))
        return;
    struct kept k[40];
    unsigned n = 5 + below(&ch->g, 35), m = 0;
    for (unsigned i = 0; i < n; i++) {
        struct targ t = random_targ(&ch->g, pool, &a, false);
        future_t *f = submit(pool, &a, &t);
        if (f)
            k[m++] = (struct kept){ .f = f, .t = t };
    }
    if (m && below(&ch->g, 2)) {   /* observe one before the end */
        void *v;
        int rc = future_get_until(k[0].f, &v, deadline_in(200 * ASYNC_MICROSECOND));
        if (rc != ETIMEDOUT)
            check_outcome(&k[0], rc, (uintptr_t)v, false);
    }
    bool cancel = ch->rounds++ % 2;
    check(async_pool_destroy(pool, cancel ? ASYNC_CANCEL : ASYNC_DRAIN) == 0,
          "churn: destroy failed");
    for (unsigned i = 0; i < m; i++)
        settle(&k[i], cancel);
    unsigned long sub = atomic_load(&a.submitted), ran = atomic_load(&a.ran);
    check(cancel ? ran <= sub : ran == sub, "churn (%s): %lu ran of %lu submitted",
          cancel ? "cancel" : "drain", ran, sub);
    check(atomic_load(&a.log_panics) == atomic_load(&a.panicked) &&
              atomic_load(&a.log_unread) <= atomic_load(&a.panicked) &&
              atomic_load(&a.log_other) == 0,
          "churn: %u panic lines for %lu panics", atomic_load(&a.log_panics),
          atomic_load(&a.panicked));
    atomic_fetch_add(&total_pools, 1);
}

static void *churn_main(void *arg)
{
    struct churn *ch = arg;
    while (!atomic_load_explicit(&E.stop, memory_order_relaxed))
        churn_round(ch);
    return NULL;
}

/* ================================================================ epoch */

static bool epoch_begin(struct rng *g, unsigned long index)
{
    memset(E.prods, 0, sizeof E.prods);
    memset(E.bits, 0, NCH * sizeof *E.bits);
    atomic_store(&E.nprod, 0);
    atomic_store(&E.sig_sent, 0);
    atomic_store(&E.sig_recv, 0);
    atomic_store(&E.stop, false);
    memset(&E.acct, 0, sizeof E.acct);
    static const size_t caps[NCH] = { 0, 1, 3, 16, 2 };
    for (unsigned c = 0; c < NCH; c++) {
        E.ch[c] = chan_make(c == SIGCH ? 0 : sizeof(struct msg), caps[c]);
        if (!check(E.ch[c] != NULL, "chan_make failed"))
            return false;
    }
    unsigned threads = 1 + below(g, 4);
    E.max_threads = threads + 6;
    async_pool_config_t cfg = { .threads = threads, .max_threads = E.max_threads,
                                .name = "soak", .log = log_hook, .log_ctx = &E.acct };
    E.pool = async_pool_create(&cfg);
    if (verbose)
        printf("soak: epoch %lu: %u threads (max %u)\n", index, threads, E.max_threads);
    return check(E.pool != NULL, "async_pool_create: errno %d", errno);
}

static void close_and_drain(struct receiver *r)
{
    for (unsigned c = 0; c < NCH; c++) {
        int rc = chan_close(E.ch[c]);
        check(rc == 0 || rc == EPIPE, "chan_close: %d", rc);
        while ((rc = do_recv(r, c, 0)) == 0)
            ;
        check(rc == EPIPE, "draining a closed channel: %d", rc);
    }
}

/* Spin (yielding) until succeeded + failed + cancelled == submitted, the
 * same in two reads in a row (the counters are summed one by one). */
static bool wait_quiet(async_pool_stats_t *st)
{
    int64_t give_up = deadline_in(60 * ASYNC_SECOND);
    async_pool_stats_t prev = { 0 };
    for (;;) {
        async_pool_stats(E.pool, st);
        if (st->succeeded + st->failed + st->cancelled == st->submitted &&
            st->submitted == prev.submitted && st->succeeded == prev.succeeded &&
            st->failed == prev.failed && st->cancelled == prev.cancelled)
            return true;
        prev = *st;
        if (async_now() > give_up)
            return false;
        sched_yield();
    }
}

static void check_counters(void)
{
    async_pool_stats_t st = { 0 };
    bool quiet = wait_quiet(&st);
    if (!check(quiet, "pool never quiet: %llu submitted, %llu finished",
               (unsigned long long)st.submitted,
               (unsigned long long)(st.succeeded + st.failed + st.cancelled)))
        return;
    unsigned long sub = atomic_load(&E.acct.submitted), ran = atomic_load(&E.acct.ran);
    unsigned long pan = atomic_load(&E.acct.panicked);
    check(st.submitted == sub, "stats: submitted %llu, counted %lu",
          (unsigned long long)st.submitted, sub);
    check(st.succeeded + st.failed == ran, "stats: %llu + %llu finished, %lu ran",
          (unsigned long long)st.succeeded, (unsigned long long)st.failed, ran);
    check(st.failed == pan, "stats: failed %llu, panicked %lu", (unsigned long long)st.failed,
          pan);
    check(st.cancelled == sub - ran, "stats: cancelled %llu, never ran %lu",
          (unsigned long long)st.cancelled, sub - ran);
    check(st.queued == 0, "stats: queued %zu when quiet", st.queued);
}

/* Submit a burst and destroy the pool under it. */
static void destroy_under_load(struct rng *g, bool cancel)
{
    struct kept burst[100];
    unsigned m = 0;
    for (unsigned i = 0; i < 100; i++) {
        struct targ t = random_targ(g, E.pool, &E.acct, false);
        if (t.kind == K_CONSUMER || t.kind == K_PRODUCER)
            t.kind = K_SLEEP;   /* the channels may be closed already */
        future_t *f = submit(E.pool, &E.acct, &t);
        if (f)
            burst[m++] = (struct kept){ .f = f, .t = t };
    }
    check(async_pool_destroy(E.pool, cancel ? ASYNC_CANCEL : ASYNC_DRAIN) == 0,
          "destroy failed");
    for (unsigned i = 0; i < m; i++)
        settle(&burst[i], cancel);
}

/* Every message sent was received once; nothing else was. Duplicates were
 * caught as they arrived (received()). */
static void check_messages(void)
{
    unsigned nprod = atomic_load(&E.nprod);
    if (nprod > MAXPROD)
        nprod = MAXPROD;
    unsigned long lost = 0, phantom = 0;
    for (unsigned c = 0; c < SIGCH; c++)
        for (unsigned p = 0; p < MAXPROD; p++) {
            uint32_t sent = p < nprod ? E.prods[p].sent[c] : 0;
            for (uint32_t w = 0; w < SEQCAP / 32; w++) {
                uint32_t got = atomic_load_explicit(&E.bits[c][p][w], memory_order_relaxed);
                uint32_t want = sent >= 32 * (w + 1) ? UINT32_MAX
                                : sent > 32 * w     ? (UINT32_C(1) << (sent - 32 * w)) - 1
                                                    : 0;
                lost += (unsigned)__builtin_popcount(want & ~got);
                phantom += (unsigned)__builtin_popcount(got & ~want);
            }
        }
    check(lost == 0, "%lu messages sent and never received", lost);
    check(phantom == 0, "%lu messages received that were never sent successfully", phantom);
    check(atomic_load(&E.sig_sent) == atomic_load(&E.sig_recv), "signals: %lu sent, %lu received",
          atomic_load(&E.sig_sent), atomic_load(&E.sig_recv));
}

static void epoch_end(struct rng *g, unsigned long index, struct receiver *r)
{
    bool cancel = index % 2;
    if (!cancel) {
        close_and_drain(r);
        check_counters();
    }
    destroy_under_load(g, cancel);
    if (cancel)
        close_and_drain(r);
    for (size_t i = 0; i < kept_n; i++)
        settle(&kept_all[i], cancel);
    kept_n = 0;
    check(atomic_load(&E.acct.ran) <= atomic_load(&E.acct.submitted), "more ran than submitted");
    check(atomic_load(&E.acct.log_panics) == atomic_load(&E.acct.panicked),
          "panic lines %u, panics %lu", atomic_load(&E.acct.log_panics),
          atomic_load(&E.acct.panicked));
    check(atomic_load(&E.acct.log_unread) <= atomic_load(&E.acct.panicked),
          "%u unread-failure lines for %lu panics", atomic_load(&E.acct.log_unread),
          atomic_load(&E.acct.panicked));
    check(atomic_load(&E.acct.log_other) == 0, "unexpected log lines");
    check_messages();
    for (unsigned c = 0; c < NCH; c++)
        chan_free(E.ch[c]);
    atomic_fetch_add(&total_pools, 1);
    atomic_fetch_add(&total_epochs, 1);
}

static void run_epoch(struct rng *g, unsigned long index, int64_t until, unsigned ndrivers)
{
    static struct driver drivers[MAXDRIVERS];
    static struct receiver main_r;
    if (!epoch_begin(g, index))
        return;
    struct churn ch = { .rounds = (unsigned)index };
    rng_seed(&ch.g, rnd(g));
    for (unsigned i = 0; i < ndrivers; i++) {
        memset(&drivers[i], 0, sizeof drivers[i]);
        drivers[i].index = i;
        rng_seed(&drivers[i].g, rnd(g));
        if (pthread_create(&drivers[i].thread, NULL, driver_main, &drivers[i]))
            abort();
    }
    if (pthread_create(&ch.thread, NULL, churn_main, &ch))
        abort();
    memset(&main_r, 0, sizeof main_r);   /* producer ids restart each epoch */
    while (async_now() < until) {   /* the epoch's duration: a workload, not a gate */
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    atomic_store(&E.stop, true);
    for (unsigned i = 0; i < ndrivers; i++)
        pthread_join(drivers[i].thread, NULL);
    pthread_join(ch.thread, NULL);
    epoch_end(g, index, &main_r);
}

/* ================================================================= main */

/* SOAK_SECONDS, else 15 s times STRESS_SCALE (the stress suites' scale),
 * else 15 s. */
static double default_seconds(void)
{
    const char *s = getenv("SOAK_SECONDS");
    if (s && *s && atof(s) > 0)
        return atof(s);
    s = getenv("STRESS_SCALE");
    if (s && *s && atof(s) > 0)
        return 15.0 * atof(s) < 0.5 ? 0.5 : 15.0 * atof(s);
    return 15.0;
}

int main(int argc, char **argv)
{
    double seconds = default_seconds();
    unsigned ndrivers = 4;
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--drivers") && i + 1 < argc)
            ndrivers = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "-v"))
            verbose = true;
        else {
            fprintf(stderr, "usage: soak [--seconds S] [--drivers N] [--seed N] [-v]\n");
            return 2;
        }
    }
    if (ndrivers < 1 || ndrivers > MAXDRIVERS)
        ndrivers = 4;
    E.bits = calloc(NCH, sizeof *E.bits);
    if (!E.bits)
        return 1;
    printf("soak: %.1f s, %u drivers, seed %llu\n", seconds, ndrivers, (unsigned long long)seed);
    struct rng g;
    rng_seed(&g, seed);
    int64_t start = async_now();
    int64_t end = start + (int64_t)(seconds * 1e9);
    int64_t epoch_ns = seconds >= 8 ? 2 * ASYNC_SECOND : (int64_t)(seconds * 1e9 / 4) + 1;
    for (unsigned long e = 0; e == 0 || async_now() < end; e++) {
        int64_t until = async_now() + epoch_ns;
        run_epoch(&g, e, until < end ? until : end, ndrivers);
    }
    double elapsed = (double)(async_now() - start) / 1e9;
    unsigned long ops = atomic_load(&total_ops);
    printf("soak: %.1f s, %lu epochs, %lu pools, %lu futures, %lu messages\n", elapsed,
           atomic_load(&total_epochs), atomic_load(&total_pools), atomic_load(&total_futures),
           atomic_load(&E.msgs));
    printf("soak: %lu operations, %.0f operations/s\n", ops, (double)ops / elapsed);
    free(E.bits);
    free(kept_all);
    unsigned long nf = atomic_load(&n_failures);
    for (unsigned long i = 0; i < nf && i < 8; i++)
        printf("soak: FAILED: %s\n", fail_msgs[i]);
    printf("%lu passed, %lu failed\n", atomic_load(&n_checks) - nf, nf);
    return nf ? 1 : 0;
}
