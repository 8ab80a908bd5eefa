/*
 * lib/dump.c — seeing inside a running program: async_dump.
 *
 * Owns: the list of live pools (pools_lock), which the dump walks and the
 * unread-failure lines look their pool up in (live_log), and the dump's
 * snapshot and text. The signal dump and the watchdog, which call it, are
 * in watch.c.
 *
 * What the dump reaches, without a registry of records. A task record is 72
 * bytes and a pending one must stay under 100, so records are on no list:
 *   - a task that runs, or is parked, is on a fiber: goroutine mode's stack
 *     fibers are type-stable (stacks.c: never freed) and all are reachable
 *     through the wake-target registry (park.c); a thread's own fiber (thread
 *     mode, inline runs) is in its TLS block, reachable through tls.c's list
 *     of threads that ran a task, whose lock keeps every listed block alive;
 *   - each fiber says which tasks run on it and what the innermost one waits
 *     on (struct async_run_note, struct async_wait_note in internal.h),
 *     written by its runner with a few relaxed stores;
 *   - a pending task (queued, never started) is found in its pool's run
 *     queues (runq.c's async__pool_each_queued). Such a record may be
 *     claimed, run and dropped by another thread at any moment, and the
 *     dump takes no reference to it: it reads the queues inside a record
 *     walk (record.c), during which a dropped record is held, not freed, so
 *     what the walk reads stays readable; it copies the record's state,
 *     function and pool, and lists it only while it is still PENDING. A
 *     continuation waiting for its antecedent (future_then) is on no queue
 *     yet, and not listed.
 * Otherwise the dump never dereferences a record: a task id is the record's
 * address, printed, and a waited-on future is named by its address too.
 *
 * A snapshot, racy by design. The dump takes pools_lock (so the pools it
 * lists stay alive while it reads them; only create and destroy take it,
 * briefly) and, under it, tls.c's list lock (a leaf, held by a thread only to
 * join or leave the list). It stops nothing: workers go on running, parking
 * and waking while it reads. Each fiber's notes are read with acquire loads
 * after the depth or wait kind that publishes them, so a line shows a run or
 * a wait that did happen, but possibly one that ended while the dump was
 * reading (a task listed as parked that has just been resumed, a wait that
 * has just changed, the counters a little ahead of or behind the tasks).
 * Everything is copied under the locks; names (dladdr) are looked up and
 * lines written after they are released, so a slow FILE or log hook holds
 * nothing.
 *
 * The watchdog (watch.c) asks two things of the dump: whether a pool is
 * stuck, with a signature of everything that moves when it makes progress
 * (async__dump_sample), and to log the pool's dump line by line through its
 * hook (async__dump_report).
 *
 * Lock order: pools_lock > tls.c's list lock. No lock is held while user
 * code (a log hook) runs or a FILE is written.
 */
#include "sched_internal.h"

#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t    pools_lock = PTHREAD_MUTEX_INITIALIZER;
static struct async_pool *pools;   /* guarded by pools_lock */

/* ------------------------------------------------------------ snapshot */

enum { ST_RUNNING, ST_RUNNABLE, ST_PARKED, ST_BLOCKED, ST_QUEUED };
static const char *const state_name[] = { "running", "runnable", "parked", "blocked",
                                          "queued" };

struct snap_task {
    uintptr_t task, fn, pool;
    uintptr_t obj;            /* what it waits on (ASYNC_W_*, or inline) */
    int64_t   since, deadline;
    uint32_t  kind, arg;
    uint8_t   state;
    bool      inline_run;     /* it runs obj inline on its own stack */
};

struct snap_pool {
    uintptr_t          pool;
    char               name[16];
    bool               goroutine;
    async_pool_stats_t st;
};

struct snap {
    uintptr_t          only;         /* one pool, or 0: all */
    bool               queued;       /* list queued tasks too */
    struct snap_task  *t;
    size_t             nt, capt;
    struct snap_pool  *p;
    size_t             np;
    bool               oom;
};

static void snap_push(struct snap *s, const struct snap_task *t)
{
    if (s->nt == s->capt) {
        size_t cap = s->capt ? 2 * s->capt : 256;
        struct snap_task *v = realloc(s->t, cap * sizeof *v);
        if (!v) {
            s->oom = true;
            return;
        }
        s->t = v;
        s->capt = cap;
    }
    s->t[s->nt++] = *t;
}

/* The innermost run's state, from its fiber's state and its wait. */
static uint8_t run_state(uint32_t fstate, bool stack, uint32_t kind)
{
    if (stack) {
        switch (fstate) {
        case ASYNC_F_PARKING:
        case ASYNC_F_PARKED:   return ST_PARKED;
        case ASYNC_F_WOKEN:
        case ASYNC_F_RUNNABLE: return ST_RUNNABLE;
        case ASYNC_F_TBLOCK:   return ST_BLOCKED;
        default:               break;
        }
    }
    return kind != ASYNC_W_NONE ? (stack ? ST_PARKED : ST_BLOCKED) : ST_RUNNING;
}

/* Copy the runs of one fiber (a stack fiber, or a listed thread's own). */
static void snap_fiber(struct snap *s, struct async_fiber *f, bool stack)
{
    unsigned depth = atomic_load_explicit(&f->depth, memory_order_acquire);
    if (depth == 0)
        return;
    uint32_t fstate = stack ? atomic_load_explicit(&f->state, memory_order_acquire)
                            : ASYNC_F_RUNNING;
    if (fstate == ASYNC_F_FREE)
        return;
    struct async_wait_note *w = &f->wait;
    uint32_t kind = atomic_load_explicit(&w->kind, memory_order_acquire);
    unsigned n = depth < ASYNC_DUMP_NEST ? depth : ASYNC_DUMP_NEST;
    for (unsigned i = 0; i < n; i++) {
        struct async_run_note *r = &f->runs[i];
        struct snap_task t = { 0 };
        t.task = atomic_load_explicit(&r->task, memory_order_relaxed);
        t.fn = atomic_load_explicit(&r->fn, memory_order_relaxed);
        t.pool = (uintptr_t)atomic_load_explicit(&r->pool, memory_order_relaxed);
        if (!t.task || (s->only && t.pool != s->only))
            continue;
        if (i + 1 < depth) {   /* an outer run: it runs the next one inline */
            t.state = ST_RUNNING;
            t.inline_run = true;
            t.obj = i + 1 < n ? atomic_load_explicit(&f->runs[i + 1].task,
                                                     memory_order_relaxed) : 0;
        } else {
            t.kind = kind;
            t.state = run_state(fstate, stack, kind);
            if (kind != ASYNC_W_NONE) {
                t.obj = atomic_load_explicit(&w->obj, memory_order_relaxed);
                t.arg = atomic_load_explicit(&w->arg, memory_order_relaxed);
                t.since = atomic_load_explicit(&w->since, memory_order_relaxed);
                t.deadline = atomic_load_explicit(&w->deadline, memory_order_relaxed);
            }
        }
        snap_push(s, &t);
    }
}

static void snap_target(uintptr_t target, void *ctx)
{
    if (target & ASYNC_TARGET_FIBER)
        snap_fiber(ctx, (struct async_fiber *)(target & ~ASYNC_TARGET_FIBER), true);
}

static void snap_thread(struct async_fiber *f, void *ctx)
{
    snap_fiber(ctx, f, false);
}

/* A record found in a run queue (runq.c), during a record walk. */
static void snap_queued(struct future *f, void *ctx)
{
    if (atomic_load_explicit(&f->state, memory_order_relaxed) != ASYNC_S_PENDING)
        return;   /* claimed since (its run is on a fiber), or cancelled */
    struct snap_task t = { 0 };
    t.task = (uintptr_t)f;
    t.fn = (uintptr_t)f->fn;
    t.pool = (uintptr_t)f->pool;
    t.state = ST_QUEUED;
    snap_push(ctx, &t);
}

static void snap_one_pool(struct snap_pool *sp, struct async_pool *pool)
{
    sp->pool = (uintptr_t)pool;
    memcpy(sp->name, pool->h.name, sizeof sp->name);
    sp->goroutine = pool->stacks != NULL;
    async__pool_snapshot(pool, &sp->st);
}

/* Copy what the dump shows: pools (only, or all) and their tasks. */
static void snap_take(struct snap *s)
{
    ASYNC_CHECK(pthread_mutex_lock(&pools_lock));
    size_t n = 0;
    for (struct async_pool *p = pools; p; p = p->list_next)
        n++;
    s->p = calloc(n ? n : 1, sizeof *s->p);
    if (!s->p) {
        s->oom = true;
        ASYNC_CHECK(pthread_mutex_unlock(&pools_lock));
        return;
    }
    for (struct async_pool *p = pools; p; p = p->list_next)
        if (!s->only || (uintptr_t)p == s->only)
            snap_one_pool(&s->p[s->np++], p);
    async__target_walk(snap_target, s);
    async__tls_each(snap_thread, s);
    if (s->queued) {
        async__record_walk_begin();
        for (size_t i = 0; i < s->np; i++)
            async__pool_each_queued((struct async_pool *)s->p[i].pool, snap_queued, s);
        async__record_walk_end();
    }
    ASYNC_CHECK(pthread_mutex_unlock(&pools_lock));
}

static void snap_free(struct snap *s)
{
    free(s->t);
    free(s->p);
}

/* ------------------------------------------------------------ the text */

struct text {
    char  *buf;
    size_t len, cap;
    bool   oom;
};

static void put(struct text *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *x, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = x->cap - x->len;
        int n = x->buf ? vsnprintf(x->buf + x->len, room, fmt, ap) : -1;
        va_end(ap);
        if (n >= 0 && (size_t)n < room) {
            x->len += (size_t)n;
            return;
        }
        size_t cap = x->cap ? 2 * x->cap : 4096;
        while (n >= 0 && cap - x->len <= (size_t)n)
            cap *= 2;
        char *b = realloc(x->buf, cap);
        if (!b) {
            x->oom = true;
            return;
        }
        x->buf = b;
        x->cap = cap;
    }
}

static void put_seconds(struct text *x, int64_t ns)
{
    const char *sign = ns < 0 ? "-" : "";
    uint64_t a = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    put(x, "%s%" PRIu64 ".%03" PRIu64 "s", sign, a / 1000000000u, a / 1000000u % 1000u);
}

static void put_wait(struct text *x, const struct snap_task *t, int64_t now, int64_t coarse)
{
    if (t->inline_run) {
        put(x, " wait inline 0x%" PRIxPTR, t->obj);
        return;
    }
    switch (t->kind) {
    case ASYNC_W_NONE:    return;
    case ASYNC_W_FUTURE:  put(x, " wait future 0x%" PRIxPTR, t->obj); break;
    case ASYNC_W_PROMISE: put(x, " wait promise 0x%" PRIxPTR, t->obj); break;
    case ASYNC_W_ANY:     put(x, " wait any %" PRIu32, t->arg); break;
    case ASYNC_W_CHAN:    put(x, " wait chan 0x%" PRIxPTR " %s", t->obj,
                              t->arg == ASYNC_W_SEND ? "send" : "recv"); break;
    case ASYNC_W_SELECT:  put(x, " wait select %" PRIu32, t->arg); break;
    case ASYNC_W_SLEEP:   put(x, " wait sleep"); break;
    default:              put(x, " wait ?"); break;
    }
    put(x, " for ");
    put_seconds(x, coarse - t->since > 0 ? coarse - t->since : 0);
    put(x, " deadline ");
    if (t->deadline == ASYNC_FOREVER)
        put(x, "none");
    else
        put_seconds(x, t->deadline - now);
}

static void put_pool(struct text *x, const struct snap_pool *p)
{
    char head[64];
    async__describe_named(head, sizeof head, p->name, 0, 0);
    const async_pool_stats_t *st = &p->st;
    put(x, "%s mode %s threads %u idle %u blocked %u peak %u parked %zu queued %zu "
        "submitted %" PRIu64 " succeeded %" PRIu64 " failed %" PRIu64 " cancelled %" PRIu64
        "\n", head, p->goroutine ? "goroutine" : "thread", st->threads, st->idle,
        st->blocked, st->peak_threads, st->parked, st->queued, st->submitted,
        st->succeeded, st->failed, st->cancelled);
}

static void put_task(struct text *x, const struct snap_pool *p, const struct snap_task *t,
                     int64_t now, int64_t coarse)
{
    char head[256];
    async__describe_named(head, sizeof head, p->name, t->task, t->fn);
    put(x, "%s state %s", head, state_name[t->state]);
    put_wait(x, t, now, coarse);
    put(x, "\n");
}

/* The dump's text: a header, then each pool and its tasks, then an end. */
static int dump_text(struct text *x, uintptr_t only)
{
    struct snap s = { .only = only, .queued = true };
    snap_take(&s);
    if (s.oom) {
        snap_free(&s);
        return ENOMEM;
    }
    size_t listed = 0;
    for (size_t i = 0; i < s.np; i++)
        for (size_t k = 0; k < s.nt; k++)
            listed += s.t[k].pool == s.p[i].pool;
    int64_t now = async_now(), coarse = async__now_coarse();
    put(x, "libasync dump: pid %ld, %zu pools, %zu tasks (task id: the address of its "
        "record, its future_t; a racy snapshot)\n",
        (long)getpid(), s.np, listed);
    for (size_t i = 0; i < s.np; i++) {
        put_pool(x, &s.p[i]);
        for (size_t k = 0; k < s.nt; k++)
            if (s.t[k].pool == s.p[i].pool)
                put_task(x, &s.p[i], &s.t[k], now, coarse);
    }
    put(x, "libasync dump end\n");
    snap_free(&s);
    return x->oom ? ENOMEM : 0;
}

int async_dump(FILE *out)
{
    if (!out)
        return EINVAL;
    struct text x = { 0 };
    int rc = dump_text(&x, 0);
    if (rc == 0 && (fwrite(x.buf, 1, x.len, out) != x.len || fflush(out) != 0))
        rc = EIO;
    free(x.buf);
    return rc;
}

/* ------------------------------------------------------ the watchdog's */

/* One sample of a pool for the watchdog: is it stuck (watch.c says when),
 * and a signature of everything that moves when it makes progress. */
bool async__dump_sample(struct async_pool *pool, uint64_t *sig, size_t *waiting)
{
    struct snap s = { .only = (uintptr_t)pool };
    snap_take(&s);
    uint64_t h = 1469598103934665603ull;
    uint64_t c[ASYNC_NCOUNTERS];
    async__sum_counters(pool, c);
    for (int i = 0; i < ASYNC_NCOUNTERS; i++)
        h = (h ^ c[i]) * 1099511628211ull;
    bool stuck = !s.oom && async__pool_quiet(pool);
    size_t nw = 0;
    for (size_t k = 0; k < s.nt; k++) {
        const struct snap_task *t = &s.t[k];
        h = (h ^ t->task ^ (uint64_t)t->since ^ t->kind) * 1099511628211ull;
        if (t->inline_run)
            continue;                         /* its inner run says */
        if (t->kind == ASYNC_W_NONE)
            stuck = false;                    /* a task runs */
        else if (t->deadline != ASYNC_FOREVER)
            stuck = false;                    /* a timer is pending */
        else
            nw++;
    }
    snap_free(&s);
    *sig = h;
    *waiting = nw;
    return stuck && nw > 0;
}

/* Log the "no progress" line, then the pool's dump, a line at a time. */
void async__dump_report(struct async_pool *pool, int64_t stuck_ns, size_t waiting)
{
    struct text x = { 0 };
    put(&x, "no progress for ");
    put_seconds(&x, stuck_ns);
    put(&x, ": %zu tasks parked or blocked, nothing runnable, no timer pending", waiting);
    if (!x.oom)
        async__log_task(pool, 0, 0, "%s", x.buf);
    x.len = 0;
    if (dump_text(&x, (uintptr_t)pool) == 0) {
        for (char *line = x.buf, *nl; line < x.buf + x.len; line = nl + 1) {
            nl = memchr(line, '\n', (size_t)(x.buf + x.len - line));
            if (!nl)
                break;
            *nl = '\0';
            async__pool_log(pool, line);
        }
    }
    free(x.buf);
}

/* ------------------------------------------------------ pool.c's calls */

/* record.c's async__live_log_hook: a line about a task of pool, whose record
 * may outlive the pool (a handle freed late). Through the pool's hook while
 * the pool is listed, the pool pinned meanwhile (its removal waits for its
 * loggers); else to stderr, naming the pool "(destroyed)". */
static void live_log(struct async_pool *pool, uintptr_t task, uintptr_t fn, const char *what)
{
    ASYNC_CHECK(pthread_mutex_lock(&pools_lock));
    struct async_pool *p = pools;
    while (p && p != pool)
        p = p->list_next;
    if (p)
        p->loggers++;
    ASYNC_CHECK(pthread_mutex_unlock(&pools_lock));
    if (!p) {
        char line[768];
        int n = async__describe_named(line, sizeof line, "(destroyed)", task, fn);
        snprintf(line + n, sizeof line - (size_t)n, ": %s", what);
        async__pool_log(NULL, line);
        return;
    }
    async__log_task(p, task, fn, "%s", what);
    ASYNC_CHECK(pthread_mutex_lock(&pools_lock));
    p->loggers--;
    ASYNC_CHECK(pthread_mutex_unlock(&pools_lock));
}

void async__dump_pool_add(struct async_pool *pool)
{
    atomic_store_explicit(&async__live_log_hook, live_log, memory_order_release);
    ASYNC_CHECK(pthread_mutex_lock(&pools_lock));
    pool->loggers = 0;
    pool->list_prev = NULL;
    pool->list_next = pools;
    if (pools)
        pools->list_prev = pool;
    pools = pool;
    pool->listed = true;
    ASYNC_CHECK(pthread_mutex_unlock(&pools_lock));
}

void async__dump_pool_remove(struct async_pool *pool)
{
    if (!pool->listed)
        return;
    ASYNC_CHECK(pthread_mutex_lock(&pools_lock));
    if (pool->list_prev)
        pool->list_prev->list_next = pool->list_next;
    else
        pools = pool->list_next;
    if (pool->list_next)
        pool->list_next->list_prev = pool->list_prev;
    pool->listed = false;
    while (pool->loggers) {   /* a hook call or two: brief */
        ASYNC_CHECK(pthread_mutex_unlock(&pools_lock));
        sched_yield();
        ASYNC_CHECK(pthread_mutex_lock(&pools_lock));
    }
    ASYNC_CHECK(pthread_mutex_unlock(&pools_lock));
}
