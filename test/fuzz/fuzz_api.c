/*
 * test/fuzz/fuzz_api.c — a libFuzzer target that drives the public API from
 * one thread and checks every answer against a sequential model.
 *
 * The input bytes are a program: each operation is one opcode byte and a few
 * parameter bytes (a missing byte reads as 0), applied to a handful of
 * objects — promises and their future handles, tasks on a pool of exactly
 * one worker (max_threads 1: no replacement ever starts), channels of
 * capacity 0..3 with element sizes 0 and 8. After every operation the answer
 * (return code, value received, chan_len, chan_cap, future_state,
 * future_error, the pool's counters, the log hook's lines) is compared with
 * the model; any difference is a finding and aborts with the last operations
 * printed.
 *
 * Determinism. Only calls that cannot block forever are made: deadline 0, a
 * deadline already passed, a few microseconds, or ASYNC_FOREVER where the
 * model proves the call completes (a ready channel, a done future, a task
 * that is queued and so runs inline on this thread). The worker is made
 * predictable with a *blocker*: a task that completes a "started" promise and
 * then waits in future_get on a gate promise that the program controls. (In
 * goroutine mode a task that waits parks and frees its worker, so there the
 * blocker first spins, holding the worker, until its gate is done or it is
 * cancelled, and only then calls future_get: the same answers, and the
 * worker is held as in thread mode.) While
 * it holds the worker every other task is certainly PENDING; once its gate
 * resolves (or it is cancelled) the worker runs the queue concurrently, and
 * those tasks become *unsettled*: the model then keeps the set of outcomes
 * each may reach and accepts any answer consistent with it, narrowing the set
 * with each observation. Counters are checked against [min, max] bounds
 * computed the same way.
 *
 * Every input creates its own pool and ends by destroying it (ASYNC_DRAIN or
 * ASYNC_CANCEL, chosen by the input), after which every future must be done,
 * each task must have run exactly once or never (cancelled), with its
 * deferred functions run last in first out; then everything is freed, so
 * LeakSanitizer sees a clean slate between inputs.
 * An input may also destroy its pool midway, while a second thread cancels
 * or gets one of its tasks and the blocker may still hold the worker (see
 * "destroy mid-flight"); the input then goes on with a fresh pool, and the
 * futures of the old one stay live.
 *
 * Built two ways: with -fsanitize=fuzzer (.ci/fuzz.sh), and as a plain
 * program with replay.c that replays the seed corpus and the minimized
 * findings (test/fuzz/regressions/) in the test suite.
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NPROM      4     /* promise slots */
#define NHANDLE    2     /* future handles per promise slot */
#define NTASK      6     /* task handle slots */
#define MAXTASKS   48    /* tasks submitted per input, at most */
#define NCHAN      4     /* channel slots */
#define MAXCASES   20    /* select cases (above 16 the library allocates) */
#define MAXDEFERS  3
#define MSGLEN     32
#define SENTINEL   UINT64_C(0x5EA7CAFEF00DBEEF)

/* =============================================================== findings */

/* The last operations, printed with a finding. */
#define NTRACE 48
static char     trace_buf[NTRACE][112];
static unsigned trace_n;

static void note(const char *fmt, ...) ASYNC_PRINTF(1, 2);
static void note(const char *fmt, ...)
{
    static int echo = -1;   /* FUZZ_TRACE set: print every operation */
    if (echo < 0)
        echo = getenv("FUZZ_TRACE") != NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(trace_buf[trace_n % NTRACE], sizeof trace_buf[0], fmt, ap);
    va_end(ap);
    if (echo)
        fprintf(stderr, "  #%u %s\n", trace_n, trace_buf[trace_n % NTRACE]);
    trace_n++;
}

static _Noreturn void finding(int line, const char *fmt, ...) ASYNC_PRINTF(2, 3);
static _Noreturn void finding(int line, const char *fmt, ...)
{
    unsigned first = trace_n > NTRACE ? trace_n - NTRACE : 0;
    fprintf(stderr, "fuzz_api: last operations:\n");
    for (unsigned i = first; i < trace_n; i++)
        fprintf(stderr, "  #%u %s\n", i, trace_buf[i % NTRACE]);
    fprintf(stderr, "fuzz_api: FINDING (fuzz_api.c:%d): ", line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#define EXPECT(cond, ...)                                                    \
    do {                                                                     \
        if (!(cond))                                                         \
            finding(__LINE__, __VA_ARGS__);                                  \
    } while (0)

/* ================================================================== input */

struct input {
    const uint8_t *p;
    size_t         n, i;
};

static uint8_t byte(struct input *in)
{
    return in->i < in->n ? in->p[in->i++] : 0;
}

static unsigned u16(struct input *in)
{
    unsigned lo = byte(in);
    return lo | (unsigned)byte(in) << 8;
}

/* ============================================================== outcomes */

struct outcome {
    future_state_t state;   /* SUCCEEDED, FAILED or CANCELLED */
    uintptr_t      value;   /* SUCCEEDED */
    int            err;     /* FAILED */
    char           msg[MSGLEN];
};

static struct outcome out_success(uintptr_t v)
{
    return (struct outcome){ .state = FUTURE_SUCCEEDED, .value = v };
}

static struct outcome out_failure(int err, const char *fmt, ...) ASYNC_PRINTF(2, 3);
static struct outcome out_failure(int err, const char *fmt, ...)
{
    struct outcome o = { .state = FUTURE_FAILED, .err = err > 0 ? err : EIO };
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o.msg, sizeof o.msg, fmt, ap);
    va_end(ap);
    return o;
}

static struct outcome out_cancelled(void)
{
    return (struct outcome){ .state = FUTURE_CANCELLED };
}

static bool out_equal(const struct outcome *a, const struct outcome *b)
{
    if (a->state != b->state)
        return false;
    if (a->state == FUTURE_SUCCEEDED)
        return a->value == b->value;
    if (a->state == FUTURE_FAILED)
        return a->err == b->err && strcmp(a->msg, b->msg) == 0;
    return true;
}

/* What future_get answers for an outcome. */
static int out_rc(const struct outcome *o)
{
    return o->state == FUTURE_SUCCEEDED ? 0 : o->state == FUTURE_FAILED ? o->err : ECANCELED;
}

/* ========================================================= task records */

enum tkind {
    K_VALUE,          /* returns its value after registering defers */
    K_PANIC,          /* panics after registering defers */
    K_DEFER_PANIC,    /* some deferred functions panic, maybe fn too */
    K_FORK,           /* submits a child to its own pool and waits for it */
    K_DESTROY_SELF,   /* destroying its own pool from inside is EDEADLK */
    K_MISUSE,         /* bad arguments from inside a task */
    K_BLOCKER,        /* holds the worker until its gate resolves */
    NKINDS
};

static const char *const kind_name[NKINDS] = {
    "value", "panic", "defer-panic", "fork", "destroy-self", "misuse", "blocker",
};

struct trec;
struct dref {
    struct trec *r;
    unsigned     i;
};

/* What a task sees and writes. The task writes runs/order/bad before its
 * future completes; the program reads them only after it saw the future done
 * (or after the pool was destroyed), which orders the two. Freed at the end
 * of the input, after the pool: a detached task may still write here. */
struct trec {
    enum tkind    kind;
    unsigned      id;
    uintptr_t     value;
    int           err;           /* panic code (may be <= 0: EIO) */
    unsigned      ndefers;       /* recording defers, 0..MAXDEFERS */
    unsigned      panics;        /* K_DEFER_PANIC: bit i defer i, bit 3 fn */
    async_pool_t *pool;
    future_t     *gate;          /* K_BLOCKER: its own handle, freed by a defer */
    promise_t    *started;       /* K_BLOCKER: completed once it runs */
    atomic_uint   runs;
    unsigned      norder;
    unsigned      order[MAXDEFERS];
    unsigned      bad;           /* inconsistencies seen inside the task */
    struct dref   d[MAXDEFERS];
    struct trec  *next;          /* every record of this input */
};

/* The argument copied into the task by async_submit. */
struct targ {
    struct trec *r;
    uint64_t     salt;
};

#define SALT(r) (UINT64_C(0x9E3779B97F4A7C15) ^ (r)->id)
#define FORK_CHILD(v) ((v) * 3)

enum { BAD_SALT = 1, BAD_DEFER = 2, BAD_CANCELLED = 4 };

static void defer_record(void *arg)
{
    struct dref *d = arg;
    struct trec *r = d->r;
    if (r->norder < MAXDEFERS)
        r->order[r->norder] = d->i;
    r->norder++;
    if (r->kind == K_DEFER_PANIC && (r->panics >> d->i & 1u))
        async_panic(r->err + (int)d->i, "d%u.%u", r->id, d->i);
}

static void defer_free_gate(void *arg)
{
    struct trec *r = arg;
    future_free(r->gate);
    r->gate = NULL;
}

static void register_defers(struct trec *r)
{
    for (unsigned i = 0; i < r->ndefers; i++) {
        r->d[i] = (struct dref){ .r = r, .i = i };
        if (async_defer(defer_record, &r->d[i]) != 0)
            r->bad |= BAD_DEFER;
    }
}

static void *child_task(void *arg)
{
    return (void *)((uintptr_t)arg * 3);
}

static void *fork_body(struct trec *r)
{
    future_t *c = async_run_on(r->pool, child_task, (void *)r->value);
    if (!c)
        async_panic(errno, "fork");
    void *v = NULL;
    int rc = future_get(c, &v);
    future_free(c);
    if (rc)
        async_panic(rc, "fork");
    return (void *)((uintptr_t)v + 1);
}

/* Each call returns its normal answer until the task's cancellation is
 * requested, ECANCELED from then on; EINVAL forms always EINVAL. Returns a
 * bitmask of calls that broke that rule (0 expected). */
static void *misuse_body(struct trec *r)
{
    unsigned bad = 0;
    bool cancelled = false;
    int rc;
    if (async_defer(NULL, r) != EINVAL)
        bad |= 1;
    if (async_sleep_until(-5) != EINVAL)
        bad |= 2;
    if (future_get_until(NULL, NULL, 0) != EINVAL)
        bad |= 4;
    rc = async_sleep_until(1);
    if (rc == ECANCELED)
        cancelled = true;
    else if (rc != 0)
        bad |= 8;
    rc = chan_select(NULL, 0, 0, NULL);
    if (rc == ECANCELED)
        cancelled = true;
    else if (rc != EAGAIN || cancelled)
        bad |= 16;
    rc = chan_select(NULL, 0, 1, NULL);
    if (rc == ECANCELED)
        cancelled = true;
    else if (rc != ETIMEDOUT || cancelled)
        bad |= 32;
    if (async_submit(r->pool, NULL, NULL, 0) != NULL || errno != EINVAL)
        bad |= 64;
    if (cancelled && !async_cancelled())
        bad |= 128;
    return (void *)(uintptr_t)bad;
}

static bool spin_blocker;   /* goroutine mode: see the opening comment */

static void *blocker_body(struct trec *r)
{
    if (async_defer(defer_free_gate, r) != 0)
        r->bad |= BAD_DEFER;
    register_defers(r);
    promise_complete(r->started, NULL);
    promise_free(r->started);
    r->started = NULL;
    void *v = NULL;
    while (spin_blocker && !future_done(r->gate) && !async_cancelled())
        sched_yield();
    int rc = future_get(r->gate, &v);
    if (rc)
        async_panic(rc, "gate %d", rc);
    return v;
}

static void *task_body(struct trec *r)
{
    atomic_fetch_add_explicit(&r->runs, 1, memory_order_relaxed);
    switch (r->kind) {
    case K_FORK:
        return fork_body(r);
    case K_DESTROY_SELF: {
        int a = async_pool_destroy(r->pool, ASYNC_DRAIN);
        int b = async_pool_destroy(r->pool, ASYNC_CANCEL);
        return (void *)(uintptr_t)(a | b << 8);
    }
    case K_MISUSE:
        return misuse_body(r);
    case K_BLOCKER:
        return blocker_body(r);
    default:
        break;
    }
    register_defers(r);
    bool fn_panics = r->kind == K_PANIC || (r->kind == K_DEFER_PANIC && (r->panics & 8u));
    if (fn_panics) {
        if (r->id % 5 == 0)
            async_panic(r->err, NULL);
        async_panic(r->err, "p%u", r->id);
    }
    return (void *)r->value;
}

static void *task_by_pointer(void *arg)
{
    return task_body(arg);
}

static void *task_by_copy(void *arg)
{
    struct targ *t = arg;
    if (t->salt != SALT(t->r))
        t->r->bad |= BAD_SALT;
    return task_body(t->r);
}

/* ================================================================ model */

enum phase {
    PH_PENDING,    /* certainly queued, not started (the worker is held) */
    PH_RUNNING,    /* the blocker holding the worker, its gate unresolved */
    PH_UNSETTLED,  /* anywhere between queued and done */
    PH_DONE,       /* seen done */
};

struct mtask {
    struct trec   *rec;
    future_t      *f;            /* NULL once the handle was freed */
    enum phase     phase;
    bool           seen_running; /* PENDING is no longer possible */
    bool           cancel_asked; /* future_cancel answered EBUSY */
    unsigned       nout;
    struct outcome out[4];       /* the outcomes it may still reach */
    int            gate;         /* K_BLOCKER: promise slot, generation */
    unsigned       gate_gen;
    bool           retired;      /* its pool was destroyed mid-input: not
                                    in the current pool's counters */
};

struct mprom {
    promise_t     *p;            /* NULL once promise_free'd */
    future_t      *h[NHANDLE];
    unsigned       nh;
    unsigned       gen;
    struct outcome out;          /* state FUTURE_PENDING while unresolved */
};

struct mchan {
    chan_t  *c;
    size_t   esize, cap, len;
    uint64_t q[3];
    bool     closed;
};

struct logctx {
    atomic_uint panics, saturated, unread, other;
};

static struct world {
    async_pool_t *pool;
    struct mprom  prom[NPROM];
    struct mtask  task[MAXTASKS];
    unsigned      ntask;
    int           slot[NTASK];   /* index into task[], -1: empty */
    struct mchan  chan[NCHAN];
    int           holder;        /* blocker holding the worker, -1: none */
    unsigned      submitted;     /* successful submissions by this thread */
    uint64_t      next_value;
    int64_t       last_now;
    struct trec  *recs;
    struct logctx log;
} W;

static void log_hook(void *ctx, const char *line)
{
    struct logctx *l = ctx;
    if (strstr(line, ": panic: "))
        atomic_fetch_add(&l->panics, 1);
    else if (strstr(line, ": saturated: "))
        atomic_fetch_add(&l->saturated, 1);
    else if (strstr(line, ": failed and its outcome was never read: "))
        atomic_fetch_add(&l->unread, 1);   /* a failed task freed unread */
    else
        atomic_fetch_add(&l->other, 1);
}

/* -------------------------------------------------------- outcome sets */

static bool may_be_done(const struct mtask *t)
{
    return t->phase == PH_DONE || t->phase == PH_UNSETTLED;
}

static bool may_be_pending(const struct mtask *t)
{
    return t->phase == PH_PENDING || (t->phase == PH_UNSETTLED && !t->seen_running);
}

static bool may_be_running(const struct mtask *t)
{
    return t->phase == PH_RUNNING || t->phase == PH_UNSETTLED;
}

static void add_outcome(struct mtask *t, struct outcome o)
{
    for (unsigned i = 0; i < t->nout; i++)
        if (out_equal(&t->out[i], &o))
            return;
    if (t->nout < sizeof t->out / sizeof t->out[0])
        t->out[t->nout++] = o;
}

/* Keep the outcomes that match; a finding when none does. */
static void keep_outcomes(struct mtask *t, bool (*match)(const struct outcome *, const void *),
                          const void *ctx, const char *what)
{
    unsigned k = 0;
    for (unsigned i = 0; i < t->nout; i++)
        if (match(&t->out[i], ctx))
            t->out[k++] = t->out[i];
    EXPECT(k > 0, "task %u (%s): %s matches none of its %u possible outcomes",
           t->rec->id, kind_name[t->rec->kind], what, t->nout);
    t->nout = k;
    t->phase = PH_DONE;
}

static bool match_state(const struct outcome *o, const void *ctx)
{
    return o->state == *(const future_state_t *)ctx;
}

struct got {
    int       rc;
    uintptr_t value;
};

static bool match_get(const struct outcome *o, const void *ctx)
{
    const struct got *g = ctx;
    return out_rc(o) == g->rc && (g->rc != 0 || o->value == g->value);
}

static bool match_msg(const struct outcome *o, const void *ctx)
{
    return o->state == FUTURE_FAILED && strcmp(o->msg, ctx) == 0;
}

static bool not_failure(const struct outcome *o, const void *ctx)
{
    (void)ctx;
    return o->state != FUTURE_FAILED;
}

/* --------------------------------------------------- the blocker's gate */

/* What a blocker ends with once its gate has the outcome g. */
static struct outcome blocker_outcome(const struct outcome *g)
{
    if (g->state == FUTURE_SUCCEEDED)
        return out_success(g->value);
    int rc = out_rc(g);
    return out_failure(rc, "gate %d", rc);
}

/* The worker is free: every task known to be queued may now run. */
static void release_worker(void)
{
    W.holder = -1;
    for (unsigned i = 0; i < W.ntask; i++)
        if (W.task[i].phase == PH_PENDING)
            W.task[i].phase = PH_UNSETTLED;
}

/*
 * Built with -DFUZZ_ACCEPT_LATE_CANCEL, the model also accepts a known
 * deviation: a blocker cancelled while waiting on its gate, whose gate then
 * resolves before the blocker's thread has run again, ends with the gate's
 * outcome instead of ECANCELED (the wait prefers a completion to a pending
 * cancellation). The default is strict: API.md says every blocking call
 * returns ECANCELED once the cancellation was requested.
 */
static void late_cancel_alternatives(void)
{
#ifdef FUZZ_ACCEPT_LATE_CANCEL
    for (unsigned i = 0; i < W.ntask; i++) {
        struct mtask *t = &W.task[i];
        if (t->rec->kind != K_BLOCKER || !t->cancel_asked || t->gate < 0)
            continue;
        struct mprom *g = &W.prom[t->gate];
        if (t->phase == PH_DONE || g->gen != t->gate_gen || g->out.state == FUTURE_PENDING)
            continue;
        add_outcome(t, blocker_outcome(&g->out));
        t->gate = -1;
    }
#endif
}

/* After any operation: a resolved gate lets its blocker finish. */
static void gate_check(void)
{
    late_cancel_alternatives();
    if (W.holder < 0)
        return;
    struct mtask *b = &W.task[W.holder];
    struct mprom *g = &W.prom[b->gate];
    if (g->gen == b->gate_gen && g->out.state == FUTURE_PENDING)
        return;
    b->phase = PH_UNSETTLED;
    b->seen_running = true;
    b->nout = 0;
    add_outcome(b, blocker_outcome(&g->out));
    release_worker();
}

/* ========================================================== future views */

/* One future as the checks see it: a promise handle or a task handle. */
struct view {
    future_t     *f;
    struct mtask *t;        /* NULL for a promise */
    struct mprom *p;
};

static bool pick_future(struct input *in, struct view *v)
{
    unsigned k = byte(in) % (NPROM + NTASK);
    *v = (struct view){ 0 };
    if (k < NPROM) {
        struct mprom *p = &W.prom[k];
        if (p->nh == 0)
            return false;
        v->p = p;
        v->f = p->h[0];
        return true;
    }
    int s = W.slot[k - NPROM];
    if (s < 0)
        return false;
    v->t = &W.task[s];
    v->f = v->t->f;
    return true;
}

static unsigned view_id(const struct view *v)
{
    return v->t ? v->t->rec->id : (unsigned)(v->p - W.prom);
}

static void check_state(const struct view *v, future_state_t s)
{
    if (v->p) {
        EXPECT(s == v->p->out.state, "promise %u: future_state %d, model %d",
               view_id(v), (int)s, (int)v->p->out.state);
        return;
    }
    struct mtask *t = v->t;
    if (s == FUTURE_PENDING) {
        EXPECT(may_be_pending(t), "task %u (%s): PENDING in phase %d (seen running %d)",
               t->rec->id, kind_name[t->rec->kind], (int)t->phase, (int)t->seen_running);
    } else if (s == FUTURE_RUNNING) {
        EXPECT(may_be_running(t), "task %u (%s): RUNNING in phase %d", t->rec->id,
               kind_name[t->rec->kind], (int)t->phase);
        t->seen_running = true;
    } else {
        EXPECT(may_be_done(t), "task %u (%s): state %d in phase %d", t->rec->id,
               kind_name[t->rec->kind], (int)s, (int)t->phase);
        keep_outcomes(t, match_state, &s, "future_state");
    }
}

/* deadline kinds */
enum dkind { DK_POLL, DK_PAST, DK_SHORT, DK_BAD, DK_FOREVER, NDK };

static int64_t deadline_of(enum dkind k, unsigned param)
{
    switch (k) {
    case DK_POLL:    return 0;
    case DK_PAST:    return 1 + param;
    case DK_SHORT:   return async_now() + (int64_t)(param % 16 + 1) * ASYNC_MICROSECOND;
    case DK_BAD:     return -2 - (int64_t)param * 1000003;
    default:         return ASYNC_FOREVER;
    }
}

static int would_block_rc(enum dkind k)
{
    return k == DK_POLL ? EAGAIN : ETIMEDOUT;
}

/* Would future_get with no deadline return? */
static bool get_completes(const struct view *v)
{
    if (v->p)
        return v->p->out.state != FUTURE_PENDING;
    return v->t->phase != PH_RUNNING;   /* PENDING: runs inline here */
}

/* Could the future still be unfinished when the call looked? */
static bool may_wait(const struct view *v)
{
    return v->p ? v->p->out.state == FUTURE_PENDING : may_be_pending(v->t) || may_be_running(v->t);
}

/* Could the call have found it done with this answer? */
static bool may_finish_with(const struct view *v, enum dkind dk, int rc, uintptr_t value)
{
    struct got g = { rc, value };
    if (v->p)
        return v->p->out.state != FUTURE_PENDING && match_get(&v->p->out, &g);
    if (!may_be_done(v->t) && !(dk == DK_FOREVER && v->t->phase == PH_PENDING))
        return false;
    for (unsigned i = 0; i < v->t->nout; i++)
        if (match_get(&v->t->out[i], &g))
            return true;
    return false;
}

/* future_get / future_get_until answered rc (and value, SENTINEL when the
 * result was not written). A failure code may equal EAGAIN: then both
 * readings are accepted and nothing is learnt. */
static void check_get(const struct view *v, enum dkind dk, int rc, uintptr_t value)
{
    if (dk == DK_BAD) {
        EXPECT(rc == EINVAL, "future %u: get with deadline < -1: %d", view_id(v), rc);
        EXPECT(value == (uintptr_t)SENTINEL, "future %u: result written on EINVAL",
               view_id(v));
        return;
    }
    bool waited = dk != DK_FOREVER && rc == would_block_rc(dk) && may_wait(v);
    bool finished = may_finish_with(v, dk, rc, value);
    EXPECT(waited || finished, "future %u (%s): get answered %d (value %#lx), model disagrees",
           view_id(v), v->t ? kind_name[v->t->rec->kind] : "promise", rc, (unsigned long)value);
    if (rc != 0)
        EXPECT(value == (uintptr_t)SENTINEL, "future %u: result written on %d", view_id(v), rc);
    if (waited || !v->t)
        return;
    struct got g = { rc, value };
    keep_outcomes(v->t, match_get, &g, "future_get");
}

static void check_error(const struct view *v, const char *msg)
{
    if (v->p) {
        if (v->p->out.state == FUTURE_FAILED)
            EXPECT(msg && strcmp(msg, v->p->out.msg) == 0, "promise %u: error \"%s\", model \"%s\"",
                   view_id(v), msg ? msg : "(null)", v->p->out.msg);
        else
            EXPECT(!msg, "promise %u: error \"%s\" in state %d", view_id(v), msg,
                   (int)v->p->out.state);
        return;
    }
    struct mtask *t = v->t;
    if (msg) {
        EXPECT(may_be_done(t), "task %u: error \"%s\" before done", t->rec->id, msg);
        keep_outcomes(t, match_msg, msg, "future_error");
    } else if (t->phase == PH_DONE) {
        keep_outcomes(t, not_failure, NULL, "future_error NULL");
    }
}

/* ========================================================== the checks */

static void check_runs(const struct mtask *t, bool final)
{
    const struct trec *r = t->rec;
    unsigned runs = atomic_load_explicit(&r->runs, memory_order_relaxed);
    bool cancelled_only = t->nout == 1 && t->out[0].state == FUTURE_CANCELLED;
    bool any_cancelled = false;
    for (unsigned i = 0; i < t->nout; i++)
        any_cancelled |= t->out[i].state == FUTURE_CANCELLED;
    EXPECT(r->bad == 0, "task %u (%s): inconsistency %#x seen inside", r->id,
           kind_name[r->kind], r->bad);
    EXPECT(runs <= 1, "task %u (%s) ran %u times", r->id, kind_name[r->kind], runs);
    if (cancelled_only)
        EXPECT(runs == 0, "task %u (%s): cancelled but ran", r->id, kind_name[r->kind]);
    if (final && !any_cancelled)
        EXPECT(runs == 1, "task %u (%s): done but never ran", r->id, kind_name[r->kind]);
    if (runs == 1 && (final || t->phase == PH_DONE)) {
        EXPECT(r->norder == r->ndefers, "task %u (%s): %u of %u defers ran", r->id,
               kind_name[r->kind], r->norder, r->ndefers);
        for (unsigned i = 0; i < r->norder && i < MAXDEFERS; i++)
            EXPECT(r->order[i] == r->ndefers - 1 - i, "task %u: defer order broken at %u",
                   r->id, i);
    }
}

static void check_task_done(struct mtask *t)
{
    if (t->phase == PH_DONE && t->nout == 1)
        check_runs(t, true);
}

struct bound {
    uint64_t lo, hi;
};

static void bound_add(struct bound *b, bool certain)
{
    b->hi++;
    if (certain)
        b->lo++;
}

struct bounds {
    struct bound submitted, succeeded, failed, cancelled, queued, panics;
    bool         exact_queue;
};

static void task_bounds(const struct mtask *t, struct bounds *b)
{
    if (t->phase == PH_PENDING) {
        bound_add(&b->queued, true);
        return;
    }
    if (t->phase == PH_RUNNING)
        return;
    b->exact_queue &= t->phase == PH_DONE;
    bool one = t->phase == PH_DONE && t->nout > 0;
    for (unsigned i = 1; i < t->nout; i++)
        one &= t->out[i].state == t->out[0].state;
    bool s = false, f = false, c = false;
    for (unsigned i = 0; i < t->nout; i++) {
        s |= t->out[i].state == FUTURE_SUCCEEDED;
        f |= t->out[i].state == FUTURE_FAILED;
        c |= t->out[i].state == FUTURE_CANCELLED;
    }
    if (s)
        bound_add(&b->succeeded, one);
    if (f) {
        bound_add(&b->failed, one);
        bound_add(&b->panics, one);
    }
    if (c) {
        /* A task cancelled while queued is counted when it leaves its queue
         * (pool.c: the canceller never touches the pool); until then it
         * still counts as queued. */
        bound_add(&b->cancelled, false);
        bound_add(&b->queued, false);
    }
    if (t->phase != PH_DONE)
        bound_add(&b->queued, false);
    if (t->rec->kind == K_FORK && !c) {
        /* its child: exact once the parent succeeded (it waited for it) */
        bool sure = one && s;
        bound_add(&b->submitted, sure);
        bound_add(&b->succeeded, sure);
        if (!sure)
            bound_add(&b->queued, false);
        b->exact_queue &= sure;
    }
}

static void expect_in(const char *what, uint64_t v, struct bound b)
{
    EXPECT(v >= b.lo && v <= b.hi, "stats: %s = %llu, model [%llu, %llu]", what,
           (unsigned long long)v, (unsigned long long)b.lo, (unsigned long long)b.hi);
}

static void check_stats(void)
{
    struct bounds b = { .submitted = { W.submitted, W.submitted }, .exact_queue = true };
    for (unsigned i = 0; i < W.ntask; i++)
        if (!W.task[i].retired)
            task_bounds(&W.task[i], &b);
    async_pool_stats_t st;
    EXPECT(async_pool_stats(W.pool, &st) == 0, "async_pool_stats failed");
    expect_in("submitted", st.submitted, b.submitted);
    expect_in("succeeded", st.succeeded, b.succeeded);
    expect_in("failed", st.failed, b.failed);
    expect_in("cancelled", st.cancelled, b.cancelled);
    expect_in("panic lines", atomic_load(&W.log.panics), b.panics);
    if (b.exact_queue)
        expect_in("queued", st.queued, b.queued);
    EXPECT(st.threads == 1 && st.peak_threads == 1, "stats: threads %u, peak %u (max 1)",
           st.threads, st.peak_threads);
    EXPECT(st.blocked <= 1 && st.idle <= 1, "stats: blocked %u, idle %u", st.blocked, st.idle);
    EXPECT(atomic_load(&W.log.other) == 0, "log: unexpected lines");
}

/* After every operation: cheap queries on everything. */
static void check_all(void)
{
    for (unsigned i = 0; i < NCHAN; i++) {
        struct mchan *m = &W.chan[i];
        if (!m->c)
            continue;
        EXPECT(chan_len(m->c) == m->len, "chan %u: len %zu, model %zu", i, chan_len(m->c),
               m->len);
        EXPECT(chan_cap(m->c) == m->cap, "chan %u: cap %zu, model %zu", i, chan_cap(m->c),
               m->cap);
    }
    for (unsigned i = 0; i < NPROM; i++)
        for (unsigned h = 0; h < W.prom[i].nh; h++) {
            struct view v = { .f = W.prom[i].h[h], .p = &W.prom[i] };
            check_state(&v, future_state(v.f));
        }
    for (unsigned i = 0; i < NTASK; i++)
        if (W.slot[i] >= 0) {
            struct mtask *t = &W.task[W.slot[i]];
            struct view v = { .f = t->f, .t = t };
            check_state(&v, future_state(t->f));
            check_task_done(t);
        }
    int64_t now = async_now();
    EXPECT(now >= W.last_now && now >= 0, "async_now went back: %lld after %lld",
           (long long)now, (long long)W.last_now);
    W.last_now = now;
}

/* ============================================================ promises */

static struct mprom *pick_prom(struct input *in)
{
    return &W.prom[byte(in) % NPROM];
}

static void op_promise_make(struct input *in)
{
    struct mprom *p = pick_prom(in);
    if (p->p || p->nh)
        return;
    p->p = promise_make();
    EXPECT(p->p, "promise_make failed");
    p->gen++;
    p->out = (struct outcome){ .state = FUTURE_PENDING };
    note("promise_make %u", (unsigned)(p - W.prom));
}

static void op_promise_future(struct input *in)
{
    struct mprom *p = pick_prom(in);
    if (!p->p || p->nh == NHANDLE)
        return;
    future_t *h = promise_future(p->p);
    EXPECT(h, "promise_future failed");
    p->h[p->nh++] = h;
    note("promise_future %u", (unsigned)(p - W.prom));
}

static void resolve(struct mprom *p, int rc, struct outcome o)
{
    if (p->out.state == FUTURE_PENDING) {
        EXPECT(rc == 0, "promise %u: completing a pending promise: %d", (unsigned)(p - W.prom),
               rc);
        p->out = o;
    } else {
        EXPECT(rc == EALREADY, "promise %u: completing it again: %d, want EALREADY",
               (unsigned)(p - W.prom), rc);
    }
}

static void op_promise_complete(struct input *in)
{
    struct mprom *p = pick_prom(in);
    uintptr_t v = u16(in);
    if (!p->p)
        return;
    note("promise_complete %u %lu", (unsigned)(p - W.prom), (unsigned long)v);
    resolve(p, promise_complete(p->p, (void *)v), out_success(v));
}

static void op_promise_fail(struct input *in)
{
    struct mprom *p = pick_prom(in);
    int err = (int)(byte(in) % 48) - 4;
    unsigned form = byte(in) % 3;
    if (!p->p)
        return;
    note("promise_fail %u err %d form %u", (unsigned)(p - W.prom), err, form);
    int rc;
    struct outcome o;
    if (form == 0) {
        rc = promise_fail(p->p, err, NULL);
        o = out_failure(err, "%s", "");
    } else if (form == 1) {
        rc = promise_fail(p->p, err, "%s", "");
        o = out_failure(err, "%s", "");
    } else {
        rc = promise_fail(p->p, err, "f%d", err);
        o = out_failure(err, "f%d", err);
    }
    resolve(p, rc, o);
}

static void op_promise_free(struct input *in)
{
    struct mprom *p = pick_prom(in);
    if (!p->p)
        return;
    note("promise_free %u", (unsigned)(p - W.prom));
    promise_free(p->p);
    p->p = NULL;
    if (p->out.state == FUTURE_PENDING)
        p->out = out_failure(EPIPE, "broken promise");
}

static void op_handle_free(struct input *in)
{
    struct mprom *p = pick_prom(in);
    if (p->nh == 0)
        return;
    note("future_free promise %u handle %u", (unsigned)(p - W.prom), p->nh - 1);
    future_free(p->h[--p->nh]);
}

/* =============================================================== tasks */

static struct trec *new_rec(enum tkind kind, struct input *in)
{
    struct trec *r = calloc(1, sizeof *r);
    EXPECT(r, "out of memory");
    r->kind = kind;
    r->id = W.ntask;
    r->value = (uintptr_t)(W.next_value++ & 0xffff);
    r->err = (int)(byte(in) % 40) - 3;
    r->ndefers = byte(in) % (MAXDEFERS + 1);
    r->panics = byte(in) & 15u;
    r->pool = W.pool;
    if (kind != K_VALUE && kind != K_PANIC && kind != K_DEFER_PANIC && kind != K_BLOCKER)
        r->ndefers = 0;   /* these register none */
    if (kind != K_DEFER_PANIC)
        r->panics = 0;
    atomic_init(&r->runs, 0);
    r->next = W.recs;
    W.recs = r;
    return r;
}

/* The outcome of a task that runs to its end uncancelled. */
static struct outcome natural_outcome(const struct trec *r)
{
    switch (r->kind) {
    case K_VALUE:
        return out_success(r->value);
    case K_PANIC:
        return r->id % 5 == 0 ? out_failure(r->err, "%s", "") : out_failure(r->err, "p%u", r->id);
    case K_FORK:
        return out_success(FORK_CHILD(r->value) + 1);
    case K_DESTROY_SELF:
        return out_success((uintptr_t)(EDEADLK | EDEADLK << 8));
    case K_MISUSE:
        return out_success(0);
    default:
        break;
    }
    /* K_DEFER_PANIC: the last panic raised wins; fn first, then the defers
     * from the last registered to the first. */
    struct outcome o = out_success(r->value);
    unsigned live = r->panics & ((1u << r->ndefers) - 1u);
    if (r->panics & 8u)
        o = r->id % 5 == 0 ? out_failure(r->err, "%s", "") : out_failure(r->err, "p%u", r->id);
    for (unsigned i = r->ndefers; i-- > 0;)
        if (live >> i & 1u)
            o = out_failure(r->err + (int)i, "d%u.%u", r->id, i);
    return o;
}

static int free_task_slot(struct input *in)
{
    unsigned s = byte(in) % NTASK;
    if (W.slot[s] >= 0 || W.ntask == MAXTASKS)
        return -1;
    return (int)s;
}

/* Submit r by pointer or by copy; NULL is a finding. */
static future_t *submit(struct trec *r, bool copy)
{
    future_t *f;
    if (copy) {
        struct targ a = { .r = r, .salt = SALT(r) };
        f = async_submit(W.pool, task_by_copy, &a, sizeof a);
        memset(&a, 0xa5, sizeof a);   /* the task must have its own copy */
    } else {
        f = async_run_on(W.pool, task_by_pointer, r);
    }
    EXPECT(f, "submit (%s) failed: errno %d", kind_name[r->kind], errno);
    W.submitted++;
    return f;
}

static struct mtask *add_task(int slot, struct trec *r, future_t *f)
{
    struct mtask *t = &W.task[W.ntask++];
    *t = (struct mtask){ .rec = r, .f = f, .gate = -1 };
    W.slot[slot] = (int)(t - W.task);
    return t;
}

static void op_submit(struct input *in)
{
    int s = free_task_slot(in);
    enum tkind kind = (enum tkind)(byte(in) % K_BLOCKER);
    bool copy = byte(in) & 1u;
    if (s < 0)
        return;
    struct trec *r = new_rec(kind, in);
    note("submit %s id %u slot %d copy %d defers %u panics %#x err %d", kind_name[kind], r->id,
         s, (int)copy, r->ndefers, r->panics, r->err);
    struct mtask *t = add_task(s, r, submit(r, copy));
    t->phase = W.holder >= 0 ? PH_PENDING : PH_UNSETTLED;
    add_outcome(t, natural_outcome(r));
}

/* Start a blocker on gate promise g and wait until it runs. */
static void op_blocker(struct input *in)
{
    int s = free_task_slot(in);
    struct mprom *g = pick_prom(in);
    if (s < 0 || W.holder >= 0 || !g->p)
        return;
    struct trec *r = new_rec(K_BLOCKER, in);
    r->gate = promise_future(g->p);
    r->started = promise_make();
    EXPECT(r->gate && r->started, "blocker setup failed");
    future_t *started = promise_future(r->started);
    note("blocker id %u slot %d gate %u defers %u", r->id, s, (unsigned)(g - W.prom), r->ndefers);
    struct mtask *t = add_task(s, r, submit(r, false));
    /* A promise's future: this wait only waits. The worker reaches the
     * blocker once what was queued before it has run, so a long wait is a
     * lost wake-up or a stuck worker: say what the pool looked like. */
    int rc = future_get_until(started, NULL, async_now() + 5 * ASYNC_SECOND);
    if (rc != 0) {
        async_pool_stats_t st = { 0 };
        async_pool_stats(W.pool, &st);
        finding(__LINE__, "blocker %u not started after 5 s (%d): threads %u idle %u blocked %u "
                "queued %zu submitted %llu succeeded %llu failed %llu cancelled %llu",
                r->id, rc, st.threads, st.idle, st.blocked, st.queued,
                (unsigned long long)st.submitted, (unsigned long long)st.succeeded,
                (unsigned long long)st.failed, (unsigned long long)st.cancelled);
    }
    future_free(started);
    t->gate = (int)(g - W.prom);
    t->gate_gen = g->gen;
    t->phase = PH_RUNNING;
    t->seen_running = true;
    W.holder = (int)(t - W.task);
    gate_check();   /* its outcome is known once the gate resolves */
}

static void op_task_free(struct input *in)
{
    unsigned s = byte(in) % NTASK;
    if (W.slot[s] < 0)
        return;
    struct mtask *t = &W.task[W.slot[s]];
    note("future_free task %u", t->rec->id);
    future_free(t->f);
    t->f = NULL;
    W.slot[s] = -1;
}

/* -------------------------------------------------------- future ops */

static enum dkind pick_deadline(struct input *in, unsigned *param)
{
    unsigned b = byte(in);
    *param = b >> 3;
    return (enum dkind)(b % NDK);
}

static void op_get(struct input *in)
{
    struct view v;
    unsigned param;
    enum dkind dk = pick_deadline(in, &param);
    bool null_result = byte(in) % 4 == 0;
    if (!pick_future(in, &v))
        return;
    if (dk == DK_FOREVER && !get_completes(&v))
        dk = DK_PAST;
    note("get future %u deadline kind %d null_result %d", view_id(&v), (int)dk, (int)null_result);
    void *res = (void *)(uintptr_t)SENTINEL;
    void **out = null_result ? NULL : &res;
    int rc = dk == DK_FOREVER && (param & 1u) ? future_get(v.f, out)
                                              : future_get_until(v.f, out, deadline_of(dk, param));
    if (null_result && rc == 0) {
        /* learn the value through a second get, which must agree */
        int again = future_get_until(v.f, &res, 0);
        EXPECT(again == 0, "future %u: get 0, then get_until(0) %d", view_id(&v), again);
    }
    check_get(&v, dk, rc, (uintptr_t)res);
    if (v.t)
        check_task_done(v.t);
}

static void op_query(struct input *in)
{
    struct view v;
    if (!pick_future(in, &v))
        return;
    note("query future %u", view_id(&v));
    bool done = future_done(v.f);
    const char *msg = future_error(v.f);
    future_state_t s = future_state(v.f);
    if (v.p) {
        EXPECT(done == (v.p->out.state != FUTURE_PENDING), "promise %u: future_done %d",
               view_id(&v), (int)done);
    } else if (done) {
        EXPECT(may_be_done(v.t), "task %u: done in phase %d", v.t->rec->id, (int)v.t->phase);
        v.t->phase = PH_DONE;
    } else {
        EXPECT(v.t->phase != PH_DONE, "task %u: not done after it was", v.t->rec->id);
    }
    check_error(&v, msg);
    check_state(&v, s);
}

/* A cancelled running task that looks at cancellation ends differently. */
static void add_cancel_alternatives(struct mtask *t)
{
    if (t->rec->kind == K_FORK)
        add_outcome(t, out_failure(ECANCELED, "fork"));
    if (t->rec->kind == K_BLOCKER)
        add_outcome(t, out_failure(ECANCELED, "gate %d", ECANCELED));
}

static void cancel_task(struct mtask *t, int rc)
{
    if (t->phase == PH_PENDING) {
        EXPECT(rc == 0, "task %u: cancel of a queued task: %d", t->rec->id, rc);
    } else if (t->phase == PH_RUNNING) {
        EXPECT(rc == EBUSY, "task %u: cancel of the running blocker: %d", t->rec->id, rc);
    } else if (t->phase == PH_DONE) {
        EXPECT(rc == EALREADY, "task %u: cancel of a done task: %d", t->rec->id, rc);
    } else {
        EXPECT(rc == 0 || rc == EBUSY || rc == EALREADY, "task %u: cancel: %d", t->rec->id, rc);
        EXPECT(rc != 0 || may_be_pending(t), "task %u: cancelled after it ran", t->rec->id);
    }
    if (rc == 0) {
        t->nout = 0;
        add_outcome(t, out_cancelled());
        t->phase = PH_DONE;
    } else if (rc == EBUSY) {
        t->seen_running = true;
        t->cancel_asked = true;
        if (t->phase == PH_RUNNING) {
            /* the blocker's wait on its gate now answers ECANCELED */
            t->nout = 0;
            add_outcome(t, out_failure(ECANCELED, "gate %d", ECANCELED));
            t->phase = PH_UNSETTLED;
            release_worker();
        } else {
            add_cancel_alternatives(t);
        }
    } else if (rc == EALREADY) {
        t->phase = PH_DONE;
    }
}

static void op_cancel(struct input *in)
{
    struct view v;
    if (!pick_future(in, &v))
        return;
    note("future_cancel future %u", view_id(&v));
    int rc = future_cancel(v.f);
    if (v.p) {
        resolve(v.p, rc, out_cancelled());
        return;
    }
    cancel_task(v.t, rc);
}

static bool certainly_done(const struct view *v)
{
    return v->p ? v->p->out.state != FUTURE_PENDING : v->t->phase == PH_DONE;
}

static bool maybe_done(const struct view *v)
{
    return v->p ? certainly_done(v) : may_be_done(v->t);
}

/* With no deadline, all: every one must complete; any: one must complete
 * by itself (future_wait_any never runs a task inline). */
static enum dkind wait_deadline(enum dkind dk, bool any, const struct view *v, unsigned k)
{
    if (dk != DK_FOREVER)
        return dk;
    bool all_ok = true, one_ok = false;
    for (unsigned i = 0; i < k; i++) {
        bool c = get_completes(&v[i]);
        all_ok &= c;
        one_ok |= c && (v[i].p || v[i].t->phase != PH_PENDING);
    }
    return (any ? one_ok : all_ok) ? DK_FOREVER : DK_PAST;
}

static void check_wait_all(struct view *v, unsigned k, enum dkind dk, int rc)
{
    if (dk == DK_BAD) {
        EXPECT(rc == EINVAL, "wait_all: bad deadline %d", rc);
        return;
    }
    bool all_done = true, maybe_all = true;
    for (unsigned i = 0; i < k; i++) {
        all_done &= certainly_done(&v[i]);
        maybe_all &= maybe_done(&v[i]);
    }
    if (dk == DK_FOREVER || all_done) {
        EXPECT(rc == 0, "wait_all: %d, but all must be done", rc);
    } else {
        EXPECT(rc == 0 || rc == would_block_rc(dk), "wait_all: %d", rc);
        EXPECT(rc != 0 || maybe_all, "wait_all: 0 but some cannot be done");
    }
    for (unsigned i = 0; rc == 0 && i < k; i++)
        if (v[i].t) {
            EXPECT(future_done(v[i].f), "wait_all: 0, future %u not done", view_id(&v[i]));
            v[i].t->phase = PH_DONE;
        }
}

static void check_wait_any(struct view *v, unsigned k, enum dkind dk, int rc, size_t idx)
{
    if (dk == DK_BAD || k == 0) {
        EXPECT(rc == EINVAL, "wait_any: n %u deadline kind %d: %d, want EINVAL", k, (int)dk, rc);
        EXPECT(idx == SIZE_MAX, "wait_any: index written on EINVAL");
        return;
    }
    if (rc != 0) {
        EXPECT(rc == would_block_rc(dk) && dk != DK_FOREVER, "wait_any: %d", rc);
        EXPECT(idx == SIZE_MAX, "wait_any: index written on %d", rc);
        for (unsigned i = 0; i < k; i++)
            EXPECT(!certainly_done(&v[i]), "wait_any: %d but future %u is done", rc,
                   view_id(&v[i]));
        return;
    }
    EXPECT(idx < k, "wait_any: index %zu of %u", idx, k);
    for (unsigned i = 0; i < idx; i++)
        EXPECT(!certainly_done(&v[i]), "wait_any: index %zu but %u was done (lowest wins)",
               idx, i);
    EXPECT(maybe_done(&v[idx]), "wait_any: index %zu cannot be done", idx);
    if (v[idx].t)
        v[idx].t->phase = PH_DONE;
}

/* future_wait_all / future_wait_any on a few futures. */
static void op_wait(struct input *in)
{
    bool any = byte(in) & 1u;
    unsigned param;
    enum dkind dk = pick_deadline(in, &param);
    unsigned n = byte(in) % 5;
    struct view v[4];
    future_t *fs[4];
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++)
        if (pick_future(in, &v[k])) {
            fs[k] = v[k].f;
            k++;
        }
    dk = wait_deadline(dk, any, v, k);
    note("future_wait_%s n %u deadline kind %d", any ? "any" : "all", k, (int)dk);
    int64_t d = deadline_of(dk, param);
    if (!any) {
        check_wait_all(v, k, dk, future_wait_all(fs, k, d));
        return;
    }
    size_t idx = SIZE_MAX;
    int rc = future_wait_any(fs, k, d, &idx);
    check_wait_any(v, k, dk, rc, idx);
}

/* ============================================================ channels */

static uint64_t next_elem(void)
{
    return UINT64_C(0xC0DE000000000000) | W.next_value++;
}

static void op_chan_make(struct input *in)
{
    struct mchan *m = &W.chan[byte(in) % NCHAN];
    unsigned b = byte(in);
    if (m->c)
        return;
    *m = (struct mchan){ .esize = (b & 1u) ? 8 : 0, .cap = (b >> 1) % 4 };
    m->c = chan_make(m->esize, m->cap);
    EXPECT(m->c, "chan_make(%zu, %zu) failed", m->esize, m->cap);
    note("chan_make %u esize %zu cap %zu", (unsigned)(m - W.chan), m->esize, m->cap);
}

static void op_chan_free(struct input *in)
{
    struct mchan *m = &W.chan[byte(in) % NCHAN];
    note("chan_free %u", (unsigned)(m - W.chan));
    chan_free(m->c);   /* NULL: a no-op */
    *m = (struct mchan){ 0 };
}

static void model_push(struct mchan *m, uint64_t v)
{
    m->q[m->len++] = v;
}

static uint64_t model_pop(struct mchan *m)
{
    uint64_t v = m->q[0];
    memmove(m->q, m->q + 1, (m->len - 1) * sizeof m->q[0]);
    m->len--;
    return v;
}

/* 0, EPIPE or EAGAIN (would block) for a send / receive now. */
static int model_send_ready(const struct mchan *m)
{
    return m->closed ? EPIPE : m->len < m->cap ? 0 : EAGAIN;
}

static int model_recv_ready(const struct mchan *m)
{
    return m->len > 0 ? 0 : m->closed ? EPIPE : EAGAIN;
}

static void op_chan_send(struct input *in)
{
    struct mchan *m = &W.chan[byte(in) % NCHAN];
    unsigned param;
    enum dkind dk = pick_deadline(in, &param);
    bool null_elem = byte(in) % 6 == 0;
    uint64_t v = next_elem();
    const uint64_t copy = v;
    int want;
    if (!m->c || dk == DK_BAD || (null_elem && m->esize))
        want = EINVAL;
    else
        want = model_send_ready(m);
    if (dk == DK_FOREVER && want == EAGAIN)
        dk = DK_PAST;
    if (want == EAGAIN)
        want = would_block_rc(dk);
    note("chan_send %u deadline kind %d null %d", (unsigned)(m - W.chan), (int)dk,
         (int)null_elem);
    int64_t d = deadline_of(dk, param);
    int rc = dk == DK_FOREVER && (param & 1u) ? chan_send(m->c, null_elem ? NULL : &v)
                                              : chan_send_until(m->c, null_elem ? NULL : &v, d);
    EXPECT(rc == want, "chan_send %u (esize %zu cap %zu len %zu closed %d): %d, model %d",
           (unsigned)(m - W.chan), m->esize, m->cap, m->len, (int)m->closed, rc, want);
    EXPECT(v == copy, "chan_send wrote to its element");
    if (rc == 0)
        model_push(m, v);
}

static void op_chan_recv(struct input *in)
{
    struct mchan *m = &W.chan[byte(in) % NCHAN];
    unsigned param;
    enum dkind dk = pick_deadline(in, &param);
    bool null_elem = byte(in) % 5 == 0;
    int want = !m->c || dk == DK_BAD ? EINVAL : model_recv_ready(m);
    if (dk == DK_FOREVER && want == EAGAIN)
        dk = DK_PAST;
    if (want == EAGAIN)
        want = would_block_rc(dk);
    note("chan_recv %u deadline kind %d null %d", (unsigned)(m - W.chan), (int)dk,
         (int)null_elem);
    uint64_t v = SENTINEL;
    int64_t d = deadline_of(dk, param);
    int rc = dk == DK_FOREVER && (param & 1u) ? chan_recv(m->c, null_elem ? NULL : &v)
                                              : chan_recv_until(m->c, null_elem ? NULL : &v, d);
    EXPECT(rc == want, "chan_recv %u (esize %zu cap %zu len %zu closed %d): %d, model %d",
           (unsigned)(m - W.chan), m->esize, m->cap, m->len, (int)m->closed, rc, want);
    if (rc != 0 || null_elem || m->esize == 0) {
        EXPECT(v == SENTINEL, "chan_recv %u: element written (%d, esize %zu)",
               (unsigned)(m - W.chan), rc, m->esize);
    }
    if (rc == 0) {
        uint64_t head = model_pop(m);
        if (!null_elem && m->esize)
            EXPECT(v == head, "chan_recv %u: %#llx, model %#llx (FIFO)", (unsigned)(m - W.chan),
                   (unsigned long long)v, (unsigned long long)head);
    }
}

static void op_chan_close(struct input *in)
{
    struct mchan *m = &W.chan[byte(in) % NCHAN];
    note("chan_close %u", (unsigned)(m - W.chan));
    int rc = chan_close(m->c);
    int want = !m->c ? EINVAL : m->closed ? EPIPE : 0;
    EXPECT(rc == want, "chan_close %u: %d, model %d", (unsigned)(m - W.chan), rc, want);
    if (m->c)
        m->closed = true;
}

/* ------------------------------------------------------------- select */

struct sel {
    chan_case_t   cases[MAXCASES];
    uint64_t      buf[MAXCASES];
    struct mchan *m[MAXCASES];     /* NULL: a NULL channel */
    int           ready[MAXCASES]; /* model: 0, EPIPE, or EAGAIN */
    size_t        n;
    bool          invalid;         /* an EINVAL form */
    bool          null_cases;      /* cases NULL with n > 0 */
    unsigned      live, nready;
};

static void build_cases(struct input *in, struct sel *s)
{
    unsigned b = byte(in);
    s->n = b >= 240 ? 17 + b % 4 : b % 6;
    for (size_t i = 0; i < s->n; i++) {
        unsigned c = byte(in);
        chan_case_t *cs = &s->cases[i];
        /* c = slot + 5 * (op + 8 * elem): independent fields */
        unsigned slot = c % (NCHAN + 1);
        s->m[i] = slot < NCHAN && W.chan[slot].c ? &W.chan[slot] : NULL;
        cs->chan = s->m[i] ? s->m[i]->c : NULL;
        unsigned op = c / (NCHAN + 1) % 8;
        cs->op = op == 7 ? (chan_op_t)(3 + (c & 1u)) : (op & 1u) ? CHAN_RECV : CHAN_SEND;
        bool null_elem = c / (8 * (NCHAN + 1)) % 4 == 3;
        s->buf[i] = cs->op == CHAN_SEND ? next_elem() : SENTINEL;
        cs->elem = null_elem ? NULL : &s->buf[i];
        if (cs->op != CHAN_SEND && cs->op != CHAN_RECV)
            s->invalid = true;
        else if (s->m[i] && cs->op == CHAN_SEND && !cs->elem && s->m[i]->esize)
            s->invalid = true;
        s->ready[i] = EAGAIN;
        if (!s->m[i] || s->invalid)
            continue;
        s->live++;
        s->ready[i] = cs->op == CHAN_SEND ? model_send_ready(s->m[i]) : model_recv_ready(s->m[i]);
        if (s->ready[i] != EAGAIN)
            s->nready++;
    }
    if (s->n > 0 && (b & 0x30) == 0x30 && b < 240) {
        s->null_cases = true;
        s->invalid = true;
    }
}

static void check_select_effects(struct sel *s, int rc, size_t fired)
{
    EXPECT(fired < s->n, "select: fired %zu of %zu", fired, s->n);
    EXPECT(s->m[fired] && s->ready[fired] == rc, "select: case %zu fired with %d, model %d",
           fired, rc, s->m[fired] ? s->ready[fired] : -1);
    chan_case_t *cs = &s->cases[fired];
    struct mchan *m = s->m[fired];
    if (rc == 0 && cs->op == CHAN_SEND) {
        model_push(m, s->buf[fired]);
    } else if (rc == 0) {
        uint64_t head = model_pop(m);
        if (cs->elem && m->esize)
            EXPECT(s->buf[fired] == head, "select: received %#llx, model %#llx",
                   (unsigned long long)s->buf[fired], (unsigned long long)head);
    }
    for (size_t i = 0; i < s->n; i++) {
        bool written = cs->op == CHAN_RECV && i == fired && rc == 0 && cs->elem && m->esize;
        if (s->cases[i].op == CHAN_RECV && !written)
            EXPECT(s->buf[i] == SENTINEL, "select: case %zu's element written", i);
    }
}

static void op_select(struct input *in)
{
    unsigned param;
    enum dkind dk = pick_deadline(in, &param);
    bool null_fired = byte(in) % 4 == 0;
    struct sel s = { 0 };
    build_cases(in, &s);
    if (dk == DK_BAD)
        s.invalid = true;
    if (!s.invalid && s.live == 0 && dk == DK_FOREVER)
        s.invalid = true;   /* select {} outside a task */
    if (!s.invalid && s.nready == 0 && dk == DK_FOREVER)
        dk = DK_PAST;
    if (s.nready > 1)
        null_fired = false;   /* the answer must name the case */
    note("select n %zu live %u ready %u deadline kind %d invalid %d", s.n, s.live, s.nready,
         (int)dk, (int)s.invalid);
    size_t fired = SIZE_MAX;
    int rc = chan_select(s.null_cases ? NULL : s.cases, s.n, deadline_of(dk, param),
                         null_fired ? NULL : &fired);
    if (s.invalid) {
        EXPECT(rc == EINVAL, "select: %d, want EINVAL", rc);
        EXPECT(fired == SIZE_MAX, "select: fired written on EINVAL");
        return;
    }
    if (s.nready == 0) {
        EXPECT(rc == would_block_rc(dk), "select: nothing ready: %d, want %d", rc,
               would_block_rc(dk));
        EXPECT(fired == SIZE_MAX, "select: fired written on %d", rc);
        for (size_t i = 0; i < s.n; i++)
            if (s.cases[i].op == CHAN_RECV)
                EXPECT(s.buf[i] == SENTINEL, "select: case %zu's element written on %d", i, rc);
        return;
    }
    EXPECT(rc == 0 || rc == EPIPE, "select: %d with %u ready", rc, s.nready);
    if (null_fired)
        for (size_t i = 0; i < s.n; i++)
            if (s.m[i] && s.ready[i] != EAGAIN)
                fired = i;
    check_select_effects(&s, rc, fired);
}

/* ======================================================== bad arguments */

static void dummy_defer(void *arg)
{
    (void)arg;
}

static void *dummy_task(void *arg)
{
    return arg;
}

static future_t *any_future(void)
{
    for (unsigned i = 0; i < NTASK; i++)
        if (W.slot[i] >= 0)
            return W.task[W.slot[i]].f;
    for (unsigned i = 0; i < NPROM; i++)
        if (W.prom[i].nh)
            return W.prom[i].h[0];
    return NULL;
}

static chan_t *any_chan(size_t *esize)
{
    for (unsigned i = 0; i < NCHAN; i++)
        if (W.chan[i].c) {
            *esize = W.chan[i].esize;
            return W.chan[i].c;
        }
    return NULL;
}

static void badargs_futures(unsigned which)
{
    void *res = (void *)(uintptr_t)SENTINEL;
    future_t *f = any_future();
    future_t *arr[2] = { f, NULL };
    size_t idx = SIZE_MAX;
    switch (which % 14) {
    case 0:  EXPECT(future_get(NULL, &res) == EINVAL, "future_get(NULL)"); break;
    case 1:  EXPECT(future_get_until(NULL, &res, 0) == EINVAL, "future_get_until(NULL)"); break;
    case 2:
        if (f)
            EXPECT(future_get_until(f, &res, -7) == EINVAL, "get_until deadline -7");
        break;
    case 3:  EXPECT(future_state(NULL) == FUTURE_FAILED, "future_state(NULL)"); break;
    case 4:  EXPECT(!future_done(NULL), "future_done(NULL)"); break;
    case 5:  EXPECT(future_error(NULL) == NULL, "future_error(NULL)"); break;
    case 6:  EXPECT(future_cancel(NULL) == EINVAL, "future_cancel(NULL)"); break;
    case 7:  future_free(NULL); break;
    case 8:
        EXPECT(future_wait_all(NULL, 0, 0) == 0, "wait_all n 0");
        EXPECT(future_wait_all(NULL, 0, ASYNC_FOREVER) == 0, "wait_all n 0 forever");
        break;
    case 9:  EXPECT(future_wait_all(NULL, 2, 0) == EINVAL, "wait_all NULL array"); break;
    case 10: EXPECT(future_wait_all(arr, 2, 0) == EINVAL, "wait_all NULL entry"); break;
    case 11:
        EXPECT(future_wait_any(NULL, 0, 0, &idx) == EINVAL, "wait_any n 0");
        EXPECT(future_wait_any(arr, 0, ASYNC_FOREVER, &idx) == EINVAL, "wait_any n 0 forever");
        break;
    case 12: EXPECT(future_wait_any(arr, 2, 0, &idx) == EINVAL, "wait_any NULL entry"); break;
    default:
        if (f)
            EXPECT(future_wait_any(arr, 1, -3, &idx) == EINVAL, "wait_any deadline -3");
        break;
    }
    EXPECT(res == (void *)(uintptr_t)SENTINEL && idx == SIZE_MAX, "output written on EINVAL");
}

static void badargs_misc(unsigned which)
{
    errno = 0;
    switch (which % 13) {
    case 0:
        EXPECT(!promise_future(NULL) && errno == EINVAL, "promise_future(NULL)");
        break;
    case 1:  EXPECT(promise_complete(NULL, NULL) == EINVAL, "promise_complete(NULL)"); break;
    case 2:  EXPECT(promise_fail(NULL, 1, "x") == EINVAL, "promise_fail(NULL)"); break;
    case 3:  promise_free(NULL); break;
    case 4:
        EXPECT(!async_submit(W.pool, NULL, NULL, 0) && errno == EINVAL, "submit fn NULL");
        break;
    case 5:
        EXPECT(!async_submit(W.pool, dummy_task, NULL, 8) && errno == EINVAL,
               "submit arg NULL size 8");
        break;
    case 6:
        EXPECT(!async_run(NULL, NULL) && errno == EINVAL, "async_run(NULL)");
        EXPECT(!async_run_on(W.pool, NULL, NULL) && errno == EINVAL, "async_run_on fn NULL");
        break;
    case 7:
        EXPECT(async_defer(dummy_defer, NULL) == EINVAL, "async_defer outside a task");
        EXPECT(async_defer(NULL, NULL) == EINVAL, "async_defer(NULL)");
        EXPECT(!async_cancelled(), "async_cancelled outside a task");
        break;
    case 8:
        EXPECT(async_sleep_until(-2) == EINVAL, "sleep_until -2");
        EXPECT(async_sleep_until(ASYNC_FOREVER) == EINVAL, "sleep_until forever outside task");
        EXPECT(async_sleep_until(0) == 0 && async_sleep_until(1) == 0, "sleep_until past");
        async_sleep(0);
        async_sleep(-5);
        break;
    case 9:
        EXPECT(async_pool_stats(W.pool, NULL) == EINVAL, "stats out NULL");
        EXPECT(async_pool_destroy(NULL, ASYNC_DRAIN) == EINVAL, "destroy(NULL)");
        EXPECT(async_pool_destroy(W.pool, (async_shutdown_t)7) == EINVAL, "destroy how 7");
        EXPECT(async_shutdown((async_shutdown_t)9) == EINVAL, "async_shutdown how 9");
        break;
    case 10: {
        async_pool_config_t cfg = { .threads = 4, .max_threads = 2 };
        EXPECT(!async_pool_create(&cfg) && errno == EINVAL, "pool max_threads < threads");
        break;
    }
    case 11:
        errno = 0;
        EXPECT(!chan_make(SIZE_MAX / 2 + 1, 2) && errno == EINVAL, "chan_make overflow");
        errno = 0;
        EXPECT(!chan_make(1, (size_t)PTRDIFF_MAX) && errno == ENOMEM, "chan_make huge");
        errno = 0;
        EXPECT(!chan_make(1, SIZE_MAX) && (errno == ENOMEM || errno == EINVAL),
               "chan_make SIZE_MAX bytes");
        break;
    default:
        EXPECT(chan_send(NULL, NULL) == EINVAL && chan_recv(NULL, NULL) == EINVAL,
               "chan ops on NULL");
        EXPECT(chan_close(NULL) == EINVAL, "chan_close(NULL)");
        EXPECT(chan_len(NULL) == 0 && chan_cap(NULL) == 0, "chan queries on NULL");
        chan_free(NULL);
        break;
    }
}

static void badargs_chan(unsigned which)
{
    size_t esize = 0;
    chan_t *c = any_chan(&esize);
    uint64_t v = SENTINEL;
    size_t fired = SIZE_MAX;
    chan_case_t cases[3] = {
        { .chan = NULL, .op = CHAN_RECV, .elem = &v },
        { .chan = NULL, .op = CHAN_SEND, .elem = NULL },
        { .chan = NULL, .op = CHAN_RECV, .elem = NULL },
    };
    switch (which % 8) {
    case 0:
        if (c)
            EXPECT(chan_send_until(c, &v, -2) == EINVAL && chan_recv_until(c, &v, -9) == EINVAL,
                   "chan ops with deadline < -1");
        break;
    case 1:
        if (c && esize)
            EXPECT(chan_send_until(c, NULL, 0) == EINVAL && chan_send(c, NULL) == EINVAL,
                   "chan_send NULL elem, esize 8");
        break;
    case 2:  EXPECT(chan_select(NULL, 2, 0, &fired) == EINVAL, "select cases NULL n 2"); break;
    case 3:
        EXPECT(chan_select(NULL, 0, 0, &fired) == EAGAIN, "select n 0 poll");
        EXPECT(chan_select(NULL, 0, 1, &fired) == ETIMEDOUT, "select n 0 past deadline");
        break;
    case 4:
        EXPECT(chan_select(NULL, 0, ASYNC_FOREVER, &fired) == EINVAL, "select {} outside task");
        EXPECT(chan_select(cases, 3, ASYNC_FOREVER, &fired) == EINVAL,
               "select only NULL chans forever outside task");
        break;
    case 5:
        EXPECT(chan_select(cases, 3, 0, &fired) == EAGAIN, "select only NULL chans poll");
        EXPECT(chan_select(cases, 3, -4, &fired) == EINVAL, "select deadline -4");
        break;
    case 6:
        cases[0].op = (chan_op_t)3;
        EXPECT(chan_select(cases, 3, 0, &fired) == EINVAL, "select op 3");
        break;
    default:
        if (c && esize) {
            cases[1].chan = c;
            EXPECT(chan_select(cases, 3, 0, &fired) == EINVAL, "select send NULL elem");
        }
        break;
    }
    EXPECT(fired == SIZE_MAX && v == SENTINEL, "output written on a bad-argument call");
}

static void op_badargs(struct input *in)
{
    unsigned b = byte(in);
    note("bad arguments %u", b);
    if (b < 96)
        badargs_futures(b);
    else if (b < 176)
        badargs_misc(b);
    else
        badargs_chan(b);
}

static void op_stats(struct input *in)
{
    (void)in;
    note("stats");
    check_stats();
}

/* ================================================================ scopes */
/* ---- begin scope ops: appended op codes (scopes), one block ---- */

/*
 * Scopes run on a pool of their own (two workers), so that the model of the
 * one-worker pool above is untouched. Their tasks never block (they return
 * a value or panic), so close always returns; the model knows, per scope,
 * whether it is certainly cancelled, maybe cancelled (a deadline of a few
 * microseconds, a fail-fast panic), and the panic codes of its tasks.
 */
#define NSCOPE 2

static struct sworld {
    async_pool_t *pool;               /* created on the first scope */
    struct mscope {
        async_scope_t *s;
        bool           cancelled;     /* certainly */
        bool           maybe;         /* maybe cancelled (not certainly) */
        bool           fail_fast;
        unsigned       ntasks;        /* accepted */
        unsigned       fails;         /* bit e-1: a task that panics with e */
    } sc[NSCOPE];
    atomic_uint logged;               /* panic lines of the scope pool */
} SW;

static void scope_log(void *ctx, const char *line)
{
    (void)ctx;
    (void)line;
    atomic_fetch_add(&SW.logged, 1);
}

static void *scope_task(void *arg)
{
    uintptr_t v = *(uintptr_t *)arg;   /* a copy (submit) or the value's slot (run) */
    if (v & 0x100)
        async_panic((int)(v & 7) + 1, "scope task %u", (unsigned)(v & 0xff));
    return (void *)v;
}

static struct mscope *pick_scope(struct input *in)
{
    return &SW.sc[byte(in) % NSCOPE];
}

static void op_scope_open(struct input *in)
{
    struct mscope *m = pick_scope(in);
    unsigned b = byte(in);
    unsigned flags = b & 3u;          /* 2, 3: unknown flags */
    unsigned dk = (b >> 2) % 4;       /* forever, passed, bad, a few us */
    int64_t d = dk == 0 ? ASYNC_FOREVER : dk == 1 ? 1 : dk == 2 ? -2
              : async_now() + (int64_t)((b >> 4) + 1) * ASYNC_MICROSECOND;
    note("scope_open slot %u flags %u deadline kind %u", (unsigned)(m - SW.sc), flags, dk);
    if (m->s)
        return;   /* one scope per slot */
    if (!SW.pool) {
        async_pool_config_t cfg = { .threads = 2, .name = "fuzzscope", .log = scope_log };
        SW.pool = async_pool_create(&cfg);
        EXPECT(SW.pool, "scope pool: errno %d", errno);
    }
    errno = 0;
    async_scope_t *s = async_scope_open(SW.pool, flags, d);
    if (flags > 1 || dk == 2) {
        EXPECT(!s && errno == EINVAL, "scope_open bad flags/deadline: %p errno %d",
               (void *)s, errno);
        return;
    }
    EXPECT(s, "scope_open: errno %d", errno);
    *m = (struct mscope){ .s = s, .cancelled = dk == 1, .maybe = dk == 3,
                          .fail_fast = flags == 1 };
}

static void op_scope_run(struct input *in)
{
    struct mscope *m = pick_scope(in);
    unsigned b = byte(in);
    note("scope_run slot %u kind %u", (unsigned)(m - SW.sc), b);
    errno = 0;
    if (!m->s) {
        EXPECT(!async_scope_run(NULL, scope_task, NULL) && errno == EINVAL,
               "scope_run(NULL): errno %d", errno);
        return;
    }
    if (b % 16 == 15) {
        EXPECT(!async_scope_run(m->s, NULL, NULL) && errno == EINVAL, "scope_run fn NULL");
        errno = 0;
        EXPECT(!async_scope_submit(m->s, scope_task, NULL, 8) && errno == EINVAL,
               "scope_submit arg NULL");
        return;
    }
    static uintptr_t values[256];     /* run's argument slots: live until teardown */
    uintptr_t v = (b & 0x7fu) | ((b & 0x80u) ? 0x100u : 0u);
    values[b] = v;
    future_t *f = b & 1u ? async_scope_submit(m->s, scope_task, &v, sizeof v)
                         : async_scope_run(m->s, scope_task, &values[b]);
    if (m->cancelled) {
        EXPECT(!f && errno == ECANCELED, "scope_run on a cancelled scope: errno %d", errno);
        return;
    }
    if (!f) {
        EXPECT(errno == ECANCELED && m->maybe, "scope_run: errno %d", errno);
        m->cancelled = true;   /* its deadline passed, or a fail-fast panic */
        return;
    }
    m->ntasks++;
    if (v & 0x100u)
        m->fails |= 1u << (v & 7);
    if (v & 0x100u && m->fail_fast)
        m->maybe = true;
    if (b & 2u) {   /* wait for it: its outcome is known */
        void *res = NULL;
        int rc = future_get(f, &res);
        EXPECT(rc == ((v & 0x100u) ? (int)(v & 7) + 1 : 0) || rc == ECANCELED,
               "scope task: %d", rc);
        EXPECT(rc || res == (void *)v, "scope task value");
    }
    future_free(f);   /* the scope keeps its own reference */
}

static void op_scope_cancel(struct input *in)
{
    struct mscope *m = pick_scope(in);
    note("scope_cancel slot %u", (unsigned)(m - SW.sc));
    if (!m->s) {
        EXPECT(async_scope_cancel(NULL) == EINVAL, "scope_cancel(NULL)");
        return;
    }
    int rc = async_scope_cancel(m->s);
    EXPECT(rc == (m->cancelled ? EALREADY : 0) || (rc == EALREADY && m->maybe),
           "scope_cancel: %d", rc);
    m->cancelled = true;
}

static void scope_close_slot(struct mscope *m)
{
    int rc = async_scope_close(m->s);
    bool failed = rc > 0 && rc <= 8 && (m->fails & (1u << (rc - 1)));
    bool ok = failed || (rc == ECANCELED && (m->cancelled || m->maybe)) ||
              (rc == 0 && !m->cancelled && !m->fails);
    EXPECT(ok, "scope_close: %d (cancelled %d maybe %d fails %#x)", rc, m->cancelled,
           m->maybe, m->fails);
    /* A panic that ran must be reported, unless the scope was cancelled
     * before it ran (then it never ran). */
    EXPECT(!m->fails || failed || m->cancelled || m->maybe, "scope_close hid a failure: %d",
           rc);
    *m = (struct mscope){ 0 };
}

static void op_scope_close(struct input *in)
{
    struct mscope *m = pick_scope(in);
    note("scope_close slot %u", (unsigned)(m - SW.sc));
    if (!m->s) {
        EXPECT(async_scope_close(NULL) == EINVAL, "scope_close(NULL)");
        return;
    }
    scope_close_slot(m);
}

/* Every input ends with its scopes closed and their pool destroyed. */
static void scope_teardown(void)
{
    for (unsigned i = 0; i < NSCOPE; i++)
        if (SW.sc[i].s)
            scope_close_slot(&SW.sc[i]);
    if (SW.pool)
        EXPECT(async_pool_destroy(SW.pool, ASYNC_DRAIN) == 0, "scope pool destroy");
    memset(&SW, 0, sizeof SW);
}

/* ---- end scope ops ---- */

/* ============================================================ teardown */

/* Before a drain: let the blocker holding the worker finish. */
static void teardown_release(bool cancel_holder)
{
    if (W.holder < 0)
        return;
    struct mtask *b = &W.task[W.holder];
    struct mprom *g = &W.prom[b->gate];
    if (cancel_holder && b->f) {
        note("teardown: cancel blocker %u", b->rec->id);
        cancel_task(b, future_cancel(b->f));
        return;
    }
    /* A held gate is pending, so its promise is still live (freeing it
     * would have broken it). */
    EXPECT(g->p, "model: pending gate without its promise");
    note("teardown: open gate of blocker %u", b->rec->id);
    resolve(g, promise_complete(g->p, (void *)(uintptr_t)7), out_success(7));
    gate_check();
}

/* The pool is gone: everything it ran is done. */
static void teardown_check_tasks(bool cancel)
{
    for (unsigned i = 0; i < W.ntask; i++) {
        struct mtask *t = &W.task[i];
        if (cancel && t->phase == PH_PENDING) {
            t->nout = 0;
            add_outcome(t, out_cancelled());
        } else if (cancel && t->phase == PH_RUNNING) {
            t->nout = 0;
            add_outcome(t, out_failure(ECANCELED, "gate %d", ECANCELED));
        } else if (cancel && t->phase == PH_UNSETTLED) {
            add_outcome(t, out_cancelled());
            add_cancel_alternatives(t);
        }
        if (t->phase != PH_DONE)
            t->phase = PH_UNSETTLED;
        if (t->f) {
            struct view v = { .f = t->f, .t = t };
            EXPECT(future_done(t->f), "task %u (%s) not done after destroy", t->rec->id,
                   kind_name[t->rec->kind]);
            void *res = (void *)(uintptr_t)SENTINEL;
            int rc = future_get_until(t->f, &res, 0);
            check_get(&v, DK_POLL, rc, (uintptr_t)res);
            check_state(&v, future_state(t->f));
            check_error(&v, future_error(t->f));
        }
        check_runs(t, true);
    }
}

static void teardown(struct input *in)
{
    unsigned how = byte(in);
    bool cancel = how & 1u;
    note("teardown %s", cancel ? "ASYNC_CANCEL" : "ASYNC_DRAIN");
    scope_teardown();
    if (!cancel)
        teardown_release(how & 2u);
    if (!cancel || (how & 4u))
        check_stats();
    EXPECT(async_pool_destroy(W.pool, cancel ? ASYNC_CANCEL : ASYNC_DRAIN) == 0,
           "async_pool_destroy failed");
    W.pool = NULL;
    teardown_check_tasks(cancel);
    EXPECT(atomic_load(&W.log.other) == 0, "log: unexpected lines");
    for (unsigned i = 0; i < W.ntask; i++)
        future_free(W.task[i].f);
    for (unsigned i = 0; i < NPROM; i++) {
        struct mprom *p = &W.prom[i];
        while (p->nh)
            future_free(p->h[--p->nh]);
        promise_free(p->p);
    }
    for (unsigned i = 0; i < NCHAN; i++)
        chan_free(W.chan[i].c);
    while (W.recs) {
        struct trec *r = W.recs;
        W.recs = r->next;
        EXPECT(!r->gate && !r->started, "blocker %u kept its gate or start promise", r->id);
        free(r);
    }
}

/* ============================================== composing (appended ops) */
/* CHAN_FUTURE cases, async_after and future_then, on promise handles only:
 * the model knows a promise's outcome exactly, and continuations and timers
 * then run on the default pool, leaving the model's one-worker pool and its
 * counters alone. */

static void op_select_future(struct input *in)
{
    unsigned n = 1 + byte(in) % 3;
    bool poll = byte(in) & 1u;
    chan_case_t cs[3];
    void *slot[3];
    struct mprom *mp[3];
    unsigned nready = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned c = byte(in);
        struct mprom *p = &W.prom[c % NPROM];
        unsigned h = c / NPROM % (NHANDLE + 1);
        future_t *f = h < p->nh ? p->h[h] : NULL;
        mp[i] = f ? p : NULL;
        slot[i] = (void *)(uintptr_t)SENTINEL;
        cs[i] = (chan_case_t){ .op = CHAN_FUTURE, .future = f,
                               .elem = (c & 0x80u) ? NULL : &slot[i] };
        nready += f && p->out.state != FUTURE_PENDING;
    }
    note("select futures n %u ready %u poll %d", n, nready, (int)poll);
    size_t fired = SIZE_MAX;
    int rc = chan_select(cs, n, poll ? 0 : 1, &fired);
    if (nready == 0) {
        EXPECT(rc == (poll ? EAGAIN : ETIMEDOUT) && fired == SIZE_MAX,
               "select futures: none ready: %d fired %zu", rc, fired);
    } else {
        EXPECT(fired < n && mp[fired] && mp[fired]->out.state != FUTURE_PENDING,
               "select futures: fired %zu not a done future", fired);
        EXPECT(rc == out_rc(&mp[fired]->out), "select futures: %d, model %d", rc,
               out_rc(&mp[fired]->out));
    }
    for (unsigned i = 0; i < n; i++) {
        bool written = i == fired && rc == 0 && cs[i].elem;
        void *want = written ? (void *)mp[i]->out.value : (void *)(uintptr_t)SENTINEL;
        EXPECT(slot[i] == want, "select futures: case %u's slot %p, want %p", i, slot[i],
               want);
    }
}

static void op_after(struct input *in)
{
    unsigned k = byte(in) % 4;
    int64_t dl = k == 0 ? 0 : k == 1 ? ASYNC_FOREVER : k == 2 ? -2
               : async_now() + (int64_t)(byte(in) % 16 + 1) * ASYNC_MICROSECOND;
    bool cancel = byte(in) & 1u;
    note("async_after kind %u cancel %d", k, (int)cancel);
    errno = 0;
    future_t *f = async_after(dl);
    if (k == 2) {
        EXPECT(!f && errno == EINVAL, "async_after(-2): %p errno %d", (void *)f, errno);
        return;
    }
    EXPECT(f, "async_after: NULL, errno %d", errno);
    if (k == 0)
        EXPECT(future_state(f) == FUTURE_SUCCEEDED, "async_after(0): state %d",
               (int)future_state(f));
    if (k == 1) {
        EXPECT(future_get_until(f, NULL, 0) == EAGAIN, "async_after(forever) done");
        cancel = true;   /* else the get below never returns */
    }
    int crc = cancel ? future_cancel(f) : -1;
    if (k == 0)
        EXPECT(crc == -1 || crc == EALREADY, "cancel of a fired timer: %d", crc);
    if (k == 1)
        EXPECT(crc == 0, "cancel of a pending timer: %d", crc);
    EXPECT(crc == -1 || crc == 0 || crc == EALREADY, "cancel of a timer: %d", crc);
    void *v = (void *)1;
    int rc = future_get(f, &v);
    if (crc == 0)
        EXPECT(rc == ECANCELED && v == (void *)1, "cancelled timer: get %d", rc);
    else
        EXPECT(rc == 0 && v == NULL, "timer: get %d value %p", rc, v);
    future_free(f);
}

static void *then_fn(void *arg, future_t *done)
{
    (void)arg;
    void *v = NULL;
    int rc = future_get_until(done, &v, 0);
    return (void *)(rc == 0 ? (uintptr_t)0x10000 + (uintptr_t)v : (uintptr_t)rc);
}

static void op_then(struct input *in)
{
    struct mprom *p = pick_prom(in);
    unsigned h = byte(in), mode = byte(in) % 4;
    if (p->nh == 0)
        return;
    future_t *f = p->h[h % p->nh];
    note("future_then promise %u mode %u", (unsigned)(p - W.prom), mode);
    if (mode == 3) {
        errno = 0;
        EXPECT(!future_then(f, NULL, NULL) && errno == EINVAL, "future_then(f, NULL)");
        errno = 0;
        EXPECT(!future_then(NULL, then_fn, NULL) && errno == EINVAL, "future_then(NULL)");
        return;
    }
    future_t *g = future_then(f, then_fn, NULL);
    EXPECT(g, "future_then: NULL, errno %d", errno);
    if (p->out.state != FUTURE_PENDING) {
        uintptr_t want = p->out.state == FUTURE_SUCCEEDED ? 0x10000 + p->out.value
                                                          : (uintptr_t)out_rc(&p->out);
        void *v = NULL;
        int rc = future_get(g, &v);
        EXPECT(rc == 0 && (uintptr_t)v == want, "then: %d value %#lx, want %#lx", rc,
               (unsigned long)(uintptr_t)v, (unsigned long)want);
    } else if (mode == 1) {
        EXPECT(future_cancel(g) == 0, "cancelling a continuation of a pending promise");
        EXPECT(future_get(g, NULL) == ECANCELED, "cancelled continuation");
    } else {
        /* left to run when the promise ends (at teardown at the latest) */
        EXPECT(future_get_until(g, NULL, 0) == EAGAIN, "then ran before its promise ended");
    }
    future_free(g);
}


/* =================================================== destroy mid-flight
 *
 * (A block of its own: op_destroy_midflight and its helpers.)
 *
 * The pool is destroyed, with ASYNC_DRAIN or ASYNC_CANCEL, while a second
 * thread acts on it: it cancels a task, or gets one (which runs it inline
 * when it is still queued), and, for a drain that would otherwise wait for
 * the blocker holding the worker, opens the blocker's gate or cancels the
 * blocker. The tasks in flight at that moment may be queued, blocked (the
 * blocker), being cancelled, or claimed inline by the helper. Afterwards
 * every future of the destroyed pool must be done with an outcome the model
 * allows, each task run exactly once or never, and the helper's answers
 * must agree with the outcomes; the handles stay live (the input goes on
 * with them) and a fresh pool takes the old one's place.
 */

/* The one pool every input uses (one worker, no replacement). */
static void pool_new(void)
{
    async_pool_config_t cfg = {
        .threads = 1, .max_threads = 1, .name = "fuzz", .log = log_hook, .log_ctx = &W.log,
    };
    W.pool = async_pool_create(&cfg);
    EXPECT(W.pool, "async_pool_create failed: errno %d", errno);
    W.holder = -1;
    W.submitted = 0;
    atomic_store(&W.log.panics, 0);
    atomic_store(&W.log.saturated, 0);
    atomic_store(&W.log.other, 0);
}

enum { MF_NONE, MF_CANCEL, MF_GET, NMF };
enum { MF_OPEN_GATE, MF_CANCEL_BLOCKER };

struct midflight {
    unsigned    action;     /* MF_*, on `target` */
    future_t   *target;
    unsigned    release;    /* MF_OPEN_GATE or MF_CANCEL_BLOCKER, when: */
    bool        do_release; /*   the holder must be released (a drain) */
    promise_t  *gate;       /* the holder's gate */
    future_t   *blocker;    /* the holder's handle */
    unsigned    delay;      /* busy turns before acting */
    atomic_int  go;
    int         rc, release_rc;
    uintptr_t   value;
};

static void mf_release(struct midflight *m)
{
    if (m->release == MF_OPEN_GATE)
        m->release_rc = promise_complete(m->gate, (void *)(uintptr_t)7);
    else
        m->release_rc = future_cancel(m->blocker);
}

static void *mf_helper(void *arg)
{
    struct midflight *m = arg;
    while (!atomic_load(&m->go))
        sched_yield();
    for (volatile unsigned i = 0; i < m->delay; i++)
        ;
    /* a get of the held blocker returns only once it is released */
    bool release_first = m->do_release && m->action == MF_GET && m->target == m->blocker;
    if (release_first)
        mf_release(m);
    void *v = (void *)(uintptr_t)SENTINEL;
    if (m->action == MF_CANCEL)
        m->rc = future_cancel(m->target);
    else if (m->action == MF_GET)
        m->rc = future_get(m->target, &v);
    m->value = (uintptr_t)v;
    if (m->do_release && !release_first &&
        !(m->action == MF_CANCEL && m->target == m->blocker))
        mf_release(m);
    return NULL;
}

/* Before the destroy: every outcome each task of the pool may now reach. */
static void mf_widen(bool cancel, const struct midflight *m, struct mtask *target,
                     const struct outcome *holder_out)
{
    bool worker_freed = m->do_release || (m->action == MF_CANCEL && m->target == m->blocker &&
                                          m->blocker);
    for (unsigned i = 0; i < W.ntask; i++) {
        struct mtask *t = &W.task[i];
        if (t->retired || t->phase == PH_DONE)
            continue;
        if (t->phase == PH_RUNNING) {   /* the holder */
            t->nout = 0;
            if (holder_out)
                add_outcome(t, *holder_out);
            if (cancel || !holder_out)
                add_outcome(t, out_failure(ECANCELED, "gate %d", ECANCELED));
        } else if (cancel || (t == target && m->action == MF_CANCEL)) {
            /* cancelled while queued, or running when it saw cancellation;
             * while the blocker holds the worker until the destroy, only
             * the helper's get can run a queued task before it is
             * cancelled */
            if (t->phase == PH_PENDING && cancel && !worker_freed &&
                !(t == target && m->action == MF_GET))
                t->nout = 0;
            add_outcome(t, out_cancelled());
            add_cancel_alternatives(t);
        }
        t->phase = PH_UNSETTLED;
    }
}

/* After the destroy: the helper's answers against the final outcomes. */
static void mf_check_helper(const struct midflight *m, struct mtask *target)
{
    if (!target)
        return;
    if (m->action == MF_CANCEL) {
        EXPECT(m->rc == 0 || m->rc == EBUSY || m->rc == EALREADY,
               "destroy mid-flight: cancel of task %u answered %d", target->rec->id, m->rc);
        future_state_t c = FUTURE_CANCELLED;
        if (m->rc == 0)
            keep_outcomes(target, match_state, &c, "cancel 0 mid-flight");
        else if (m->rc == EBUSY)
            EXPECT(atomic_load(&target->rec->runs) == 1,
                   "destroy mid-flight: cancel of task %u said EBUSY, but it never ran",
                   target->rec->id);
    } else if (m->action == MF_GET) {
        struct got g = { m->rc, m->value };
        keep_outcomes(target, match_get, &g, "get mid-flight");
    }
}

static void op_destroy_midflight(struct input *in)
{
    unsigned how = byte(in);
    unsigned what = byte(in);
    unsigned slot = byte(in) % NTASK;
    unsigned delay = byte(in);
    if (how % 4 != 0)   /* a quarter of the time: the pool usually lives on */
        return;
    bool cancel = how & 4u;
    struct midflight m = { .action = what % NMF, .release = what / NMF % 2,
                           .delay = (delay % 64) * 40 };
    struct mtask *target = W.slot[slot] >= 0 ? &W.task[W.slot[slot]] : NULL;
    if (!target || !target->f)
        m.action = MF_NONE;
    if (m.action != MF_NONE)
        m.target = target->f;
    struct mtask *holder = W.holder >= 0 ? &W.task[W.holder] : NULL;
    struct mprom *g = holder ? &W.prom[holder->gate] : NULL;
    if (holder) {
        EXPECT(g->p, "model: pending gate without its promise");
        m.gate = g->p;
        m.blocker = holder->f;
        if (!m.blocker)
            m.release = MF_OPEN_GATE;   /* its handle was freed: only the gate */
        /* a drain waits for the blocker: the helper must let it go */
        m.do_release = !cancel || (what & 64u);
    }
    note("destroy mid-flight %s: helper %s task %d, %s%s", cancel ? "ASYNC_CANCEL" : "ASYNC_DRAIN",
         m.action == MF_CANCEL ? "cancels" : m.action == MF_GET ? "gets" : "idles",
         target && m.action != MF_NONE ? (int)target->rec->id : -1,
         m.do_release ? (m.release == MF_OPEN_GATE ? "opens the gate" : "cancels the blocker")
                      : "no release", "");
    struct outcome open = out_success(7);
    bool opens = m.do_release && m.release == MF_OPEN_GATE;
    if (m.action == MF_CANCEL && target == holder && m.do_release)
        opens = false;   /* its cancel is the release */
    mf_widen(cancel, &m, m.action != MF_NONE ? target : NULL, opens ? &open : NULL);
    pthread_t th;
    EXPECT(pthread_create(&th, NULL, mf_helper, &m) == 0, "pthread_create failed");
    atomic_store(&m.go, 1);
    EXPECT(async_pool_destroy(W.pool, cancel ? ASYNC_CANCEL : ASYNC_DRAIN) == 0,
           "destroy mid-flight: async_pool_destroy failed");
    EXPECT(pthread_join(th, NULL) == 0, "pthread_join failed");
    W.pool = NULL;
    if (holder && m.do_release && (m.release == MF_OPEN_GATE || !m.blocker) &&
        !(m.action == MF_CANCEL && target == holder))
        resolve(g, m.release_rc, open);
    else if (holder && m.do_release && !(m.action == MF_CANCEL && target == holder))
        EXPECT(m.release_rc == EBUSY || m.release_rc == EALREADY,
               "destroy mid-flight: cancel of the blocker answered %d", m.release_rc);
    teardown_check_tasks(false);
    mf_check_helper(&m, m.action != MF_NONE ? target : NULL);
    EXPECT(atomic_load(&W.log.other) == 0, "log: unexpected lines");
    for (unsigned i = 0; i < W.ntask; i++)
        W.task[i].retired = true;
    pool_new();
}

/* ---- end of block: destroy mid-flight ---- */

/* ================================================================ driver */

typedef void (*op_fn)(struct input *);

static const op_fn ops[] = {
    op_promise_make, op_promise_future, op_promise_complete, op_promise_fail, op_promise_free,
    op_handle_free,  op_submit,         op_blocker,          op_task_free,    op_get,
    op_query,        op_cancel,         op_wait,             op_chan_make,    op_chan_free,
    op_chan_send,    op_chan_recv,      op_chan_close,       op_select,       op_badargs,
    op_stats,        op_chan_send,      op_chan_recv,        op_select,       op_get,
    /* scope ops (appended) */
    op_scope_open,   op_scope_run,      op_scope_cancel,     op_scope_close,
    /* ---- composing: CHAN_FUTURE, async_after, future_then ---- */
    op_select_future, op_after,         op_then,
    /* ---- end composing ---- */
    /* ---- pool destroy mid-flight (block: see "destroy mid-flight") ---- */
    op_destroy_midflight,
    /* ---- end of block: pool destroy mid-flight ---- */
};

static void world_init(void)
{
    memset(&W, 0, sizeof W);
    W.holder = -1;
    for (unsigned i = 0; i < NTASK; i++)
        W.slot[i] = -1;
    trace_n = 0;
    const char *mode = getenv("ASYNC_STACK_SIZE");
    spin_blocker = !mode || strcmp(mode, "thread") != 0;
    pool_new();
}

#ifdef FUZZ_WATCHDOG
/*
 * Debugging aid (-DFUZZ_WATCHDOG): a thread that notices an input running
 * longer than 8 s, prints the operations so far and this process's id, and
 * waits FUZZ_HANG_WAIT seconds (default 0) for a debugger before aborting.
 * Off by default: it reads the trace racily.
 */
#include <pthread.h>
#include <unistd.h>

static _Atomic int64_t input_started;   /* 0: between inputs */

static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        sleep(1);
        int64_t t = atomic_load(&input_started);
        if (!t || async_now() - t < 8 * ASYNC_SECOND)
            continue;
        fprintf(stderr, "fuzz_api: HANG: pid %d, operations so far:\n", (int)getpid());
        unsigned first = trace_n > NTRACE ? trace_n - NTRACE : 0;
        for (unsigned i = first; i < trace_n; i++)
            fprintf(stderr, "  #%u %s\n", i, trace_buf[i % NTRACE]);
        const char *w = getenv("FUZZ_HANG_WAIT");
        sleep(w ? (unsigned)atoi(w) : 0);
        abort();
    }
    return NULL;
}

static void watchdog_start(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, watchdog, NULL) == 0)
        pthread_detach(t);
}

static void watchdog_arm(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, watchdog_start);
    atomic_store(&input_started, async_now());
}
#else
static void watchdog_arm(void)
{
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = { .p = data, .n = size };
    watchdog_arm();
    world_init();
    /* the last byte chooses how the pool ends */
    if (in.n > 0)
        in.n--;
    while (in.i < in.n) {
        ops[byte(&in) % (sizeof ops / sizeof ops[0])](&in);
        gate_check();
        check_all();
    }
    in.n = size;
    teardown(&in);
#ifdef FUZZ_WATCHDOG
    atomic_store(&input_started, 0);
#endif
    return 0;
}
