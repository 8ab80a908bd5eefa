/*
 * test/scope_scenarios.c — the scope scenarios (see scope_scenarios.h).
 *
 * Tasks write what they saw into atomics of a shared struct; the calling
 * thread checks them after a synchronising event (a closed scope, a
 * completed future, a destroyed pool). Ordering is by counters and
 * channels, never by sleeping: the only waits for time are the deadlines
 * under test.
 */
#include "scope_scenarios.h"

#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static async_pool_t *make_pool(bool thread_mode, unsigned threads)
{
    return thread_mode ? tu_pool_thread(threads, 0, NULL) : tu_pool(threads, 0, NULL);
}

static const char *mode(bool thread_mode)
{
    return thread_mode ? "thread" : "goroutine";
}

/* ---------------------------------------------------------------- tree */

struct tree {
    async_pool_t   *pool;
    chan_t         *never;        /* nobody sends on it */
    unsigned        fanout, depth;
    atomic_uint     blocked;      /* leaves about to block */
    atomic_uint     ecanceled;    /* leaves whose blocked call said ECANCELED */
    atomic_uint     other;        /* leaves that saw anything else */
    atomic_uint     inner_cancelled;   /* inner closes that returned ECANCELED */
    atomic_int      root_rc;      /* a level-0 node's close */
    _Atomic int64_t last_end;     /* latest leaf end */
};

struct node {
    struct tree *tr;
    unsigned     level, index;
};

static void note_end(struct tree *tr)
{
    int64_t now = async_now(), seen = atomic_load(&tr->last_end);
    while (seen < now && !atomic_compare_exchange_weak(&tr->last_end, &seen, now)) {
    }
}

static void leaf(struct tree *tr, unsigned index)
{
    atomic_fetch_add(&tr->blocked, 1);
    int rc = index % 2 ? chan_recv(tr->never, NULL) : async_sleep_until(ASYNC_FOREVER);
    note_end(tr);
    atomic_fetch_add(rc == ECANCELED ? &tr->ecanceled : &tr->other, 1);
}

static void *tree_node(void *arg)
{
    struct node *nd = arg;
    struct tree *tr = nd->tr;
    if (nd->level == tr->depth) {
        leaf(tr, nd->index);
        return NULL;
    }
    async_scope_t *s = async_scope_open(tr->pool, 0, ASYNC_FOREVER);
    if (!s) {
        atomic_fetch_add(&tr->other, 1);
        return NULL;
    }
    for (unsigned i = 0; i < tr->fanout; i++) {
        struct node child = { tr, nd->level + 1, nd->index * tr->fanout + i };
        future_free(async_scope_submit(s, tree_node, &child, sizeof child));
    }
    int rc = async_scope_close(s);
    if (nd->level == 0)
        atomic_store(&tr->root_rc, rc);
    else if (rc == ECANCELED)
        atomic_fetch_add(&tr->inner_cancelled, 1);
    return NULL;
}

static bool tree_init(struct tally *t, struct tree *tr, bool thread_mode, unsigned fanout)
{
    memset(tr, 0, sizeof *tr);
    tr->fanout = fanout;
    tr->depth = 3;
    tr->pool = make_pool(thread_mode, 2);
    tr->never = chan_make(0, 0);
    return tally_check(t, tr->pool && tr->never, "pool and channel");
}

static unsigned ipow(unsigned b, unsigned e)
{
    unsigned r = 1;
    while (e--)
        r *= b;
    return r;
}

void scope_tree_cancel(struct tally *t, bool thread_mode, unsigned fanout, int64_t *latency)
{
    tally_begin(t, "tree_cancel");
    struct tree tr;
    if (!tree_init(t, &tr, thread_mode, fanout))
        return;
    unsigned leaves = ipow(fanout, 3), inner = fanout + fanout * fanout;
    async_scope_t *root = async_scope_open(tr.pool, 0, ASYNC_FOREVER);
    tally_check(t, root != NULL, "open root: %s", strerror(errno));
    for (unsigned i = 0; root && i < fanout; i++) {
        struct node nd = { &tr, 1, i };
        future_t *f = async_scope_submit(root, tree_node, &nd, sizeof nd);
        tally_check(t, f != NULL, "submit: %s", strerror(errno));
        future_free(f);
    }
    tally_check(t, tu_wait_count(&tr.blocked, leaves), "all %u leaves blocked", leaves);
    int64_t t0 = async_now();
    tally_check(t, async_scope_cancel(root) == 0, "cancel root");
    int64_t t1 = async_now();
    int rc = async_scope_close(root);
    int64_t lat = atomic_load(&tr.last_end) - t0;
    tally_check(t, rc == ECANCELED, "root close: %d", rc);
    tally_check(t, atomic_load(&tr.ecanceled) == leaves, "%u of %u leaves got ECANCELED (%u other)",
                atomic_load(&tr.ecanceled), leaves, atomic_load(&tr.other));
    tally_check(t, atomic_load(&tr.inner_cancelled) == inner, "%u of %u inner closes ECANCELED",
                atomic_load(&tr.inner_cancelled), inner);
    tally_note(t, "%s mode: a cancel at the root ended %u blocked leaves in %.3f ms "
               "(the cancel call: %.3f ms)", mode(thread_mode), leaves,
               (double)lat / ASYNC_MILLISECOND, (double)(t1 - t0) / ASYNC_MILLISECOND);
    if (latency)
        *latency = lat;
    tally_check(t, async_pool_destroy(tr.pool, ASYNC_DRAIN) == 0, "destroy");
    chan_free(tr.never);
}

void scope_pool_cancel(struct tally *t, bool thread_mode, unsigned fanout)
{
    tally_begin(t, "pool_cancel");
    struct tree tr;
    if (!tree_init(t, &tr, thread_mode, fanout))
        return;
    atomic_store(&tr.root_rc, -1);
    unsigned leaves = ipow(fanout, 3);
    struct node nd = { &tr, 0, 0 };
    future_t *opener = async_submit(tr.pool, tree_node, &nd, sizeof nd);
    tally_check(t, opener != NULL, "submit the opener");
    tally_check(t, tu_wait_count(&tr.blocked, leaves), "all %u leaves blocked", leaves);
    tally_check(t, async_pool_destroy(tr.pool, ASYNC_CANCEL) == 0, "destroy(ASYNC_CANCEL)");
    tally_check(t, future_done(opener), "the opener is done");
    tally_check(t, atomic_load(&tr.ecanceled) == leaves, "%u of %u leaves got ECANCELED (%u other)",
                atomic_load(&tr.ecanceled), leaves, atomic_load(&tr.other));
    tally_check(t, atomic_load(&tr.root_rc) == ECANCELED, "the opener's close: %d",
                atomic_load(&tr.root_rc));
    tally_note(t, "%s mode: ASYNC_CANCEL ended a tree of %u leaves", mode(thread_mode), leaves);
    future_free(opener);
    chan_free(tr.never);
}

/* ------------------------------------------------------------ deadline */

struct blockers {
    chan_t     *never, *go, *release;
    atomic_uint started, ecanceled, epipe, ran, go_seen;
    unsigned    bad;
};

static void *block_forever(void *arg)
{
    struct blockers *b = arg;
    atomic_fetch_add(&b->started, 1);
    if (chan_recv(b->never, NULL) == ECANCELED)
        atomic_fetch_add(&b->ecanceled, 1);
    return NULL;
}

void scope_deadline(struct tally *t, bool thread_mode, unsigned ntasks)
{
    tally_begin(t, "deadline");
    async_pool_t *pool = make_pool(thread_mode, 2);
    struct blockers b = { .never = chan_make(0, 0) };
    int64_t start = async_now(), d = start + 30 * ASYNC_MILLISECOND;
    async_scope_t *s = async_scope_open(pool, 0, d);
    tally_check(t, s != NULL, "open with a deadline");
    for (unsigned i = 0; s && i < ntasks; i++)
        future_free(async_scope_run(s, block_forever, &b));
    int rc = async_scope_close(s);
    int64_t end = async_now();
    tally_check(t, rc == ECANCELED, "close: %d", rc);
    tally_check(t, end >= d, "close returned %lld ns before the deadline",
                (long long)(d - end));
    tally_check(t, atomic_load(&b.ecanceled) == atomic_load(&b.started),
                "%u of %u started tasks got ECANCELED", atomic_load(&b.ecanceled),
                atomic_load(&b.started));
    tally_note(t, "%s mode: deadline ended %u tasks %.1f ms after it", mode(thread_mode),
               ntasks, (double)(end - d) / ASYNC_MILLISECOND);

    /* A passed deadline: the scope opens cancelled. */
    s = async_scope_open(pool, 0, async_now() - 1);
    tally_check(t, s != NULL, "open with a passed deadline");
    errno = 0;
    tally_check(t, async_scope_run(s, block_forever, &b) == NULL && errno == ECANCELED,
                "run on a scope whose deadline passed: ECANCELED");
    tally_check(t, async_scope_cancel(s) == EALREADY, "already cancelled");
    tally_check(t, async_scope_close(s) == ECANCELED, "close: ECANCELED");

    /* A deadline that never comes before close: 0, and no cancel. */
    s = async_scope_open(pool, 0, async_now() + 3600 * ASYNC_SECOND);
    future_free(async_scope_run(s, tu_task_noop, NULL));
    tally_check(t, async_scope_close(s) == 0, "close before the deadline: 0");
    async_pool_destroy(pool, ASYNC_DRAIN);
    chan_free(b.never);
}

/* ----------------------------------------------------------- fail fast */

struct fail_arg {
    struct blockers *b;
    unsigned         i;
};

static void *maybe_fail(void *arg)
{
    struct blockers *b = ((struct fail_arg *)arg)->b;
    unsigned i = ((struct fail_arg *)arg)->i;
    if (i != b->bad) {
        atomic_fetch_add(&b->started, 1);
        int rc = chan_recv(b->release, NULL);
        atomic_fetch_add(rc == ECANCELED ? &b->ecanceled : rc == EPIPE ? &b->epipe : &b->ran, 1);
        return NULL;
    }
    (void)chan_recv(b->go, NULL);
    async_panic(EDOM, "task %u fails", i);
}

static void fail_round(struct tally *t, async_pool_t *pool, unsigned n, unsigned bad, bool fast)
{
    struct blockers b = { .go = chan_make(0, 1), .release = chan_make(0, 0), .bad = bad };
    async_scope_t *s = async_scope_open(pool, fast ? ASYNC_SCOPE_FAIL_FAST : 0, ASYNC_FOREVER);
    future_t *bad_f = NULL;
    for (unsigned i = 0; i < n; i++) {
        struct fail_arg a = { &b, i };
        future_t *f = async_scope_submit(s, maybe_fail, &a, sizeof a);
        if (i == bad)
            bad_f = f;
        else
            future_free(f);
    }
    tally_check(t, tu_wait_count(&b.started, n - 1), "the others started");
    chan_send(b.go, NULL);
    if (!fast) {
        /* The failure does not stop the others: let them end. */
        tally_check(t, tu_get(bad_f, NULL) == EDOM, "task %u failed", bad);
        future_t *more = async_scope_run(s, tu_task_noop, NULL);
        tally_check(t, more != NULL, "the scope still takes tasks: %d", more ? 0 : errno);
        future_free(more);
        chan_close(b.release);
    }
    int rc = async_scope_close(s);
    tally_check(t, rc == EDOM, "%s close: %d", fast ? "fail-fast" : "plain", rc);
    if (fast)
        tally_check(t, atomic_load(&b.ecanceled) == n - 1, "%u of %u others cancelled",
                    atomic_load(&b.ecanceled), n - 1);
    else
        tally_check(t, atomic_load(&b.epipe) == n - 1, "%u of %u others ran on",
                    atomic_load(&b.epipe), n - 1);
    tally_check(t, future_state(bad_f) == FUTURE_FAILED, "the failed task's future");
    future_free(bad_f);
    chan_free(b.go);
    chan_free(b.release);
}

static void quiet_log(void *ctx, const char *line)
{
    (void)ctx;
    (void)line;
}

void scope_fail_fast(struct tally *t, bool thread_mode, unsigned n, unsigned bad)
{
    tally_begin(t, "fail_fast");
    async_pool_config_t cfg = { .threads = 2, .log = quiet_log,
                                .stack_size = thread_mode ? ASYNC_STACK_THREAD : 0 };
    async_pool_t *pool = async_pool_create(&cfg);
    fail_round(t, pool, n, bad, true);
    fail_round(t, pool, n, bad, false);
    async_pool_destroy(pool, ASYNC_DRAIN);
}

/* ---------------------------------------------------- close in a task */

struct relay {
    async_pool_t *pool;
    chan_t       *c;
    unsigned      n;
    atomic_uint   got;
};

static void *producer(void *arg)
{
    struct relay *r = arg;
    for (unsigned i = 0; i < r->n; i++)
        chan_send(r->c, &i);
    return NULL;
}

static void *consumer(void *arg)
{
    struct relay *r = arg;
    unsigned v;
    if (chan_recv(r->c, &v) == 0)
        atomic_fetch_add(&r->got, 1);
    return NULL;
}

static void *closer(void *arg)
{
    struct relay *r = arg;
    async_scope_t *s = async_scope_open(r->pool, 0, ASYNC_FOREVER);
    if (!s)
        return (void *)(intptr_t)errno;
    future_free(async_scope_run(s, producer, r));   /* first: run inline by close */
    for (unsigned i = 0; i < r->n; i++)
        future_free(async_scope_run(s, consumer, r));
    return (void *)(intptr_t)async_scope_close(s);
}

void scope_close_in_task(struct tally *t, bool thread_mode, unsigned ntasks)
{
    tally_begin(t, "close_in_task");
    struct relay r = { .pool = make_pool(thread_mode, 1), .c = chan_make(sizeof(unsigned), 0),
                       .n = ntasks };
    future_t *f = async_run_on(r.pool, closer, &r);
    void *res = (void *)(intptr_t)-1;
    tally_check(t, tu_get(f, &res) == 0, "the closing task ended");
    tally_check(t, res == NULL, "close inside a task: %d", (int)(intptr_t)res);
    tally_check(t, atomic_load(&r.got) == ntasks, "%u of %u values handed over",
                atomic_load(&r.got), ntasks);
    future_free(f);
    async_pool_destroy(r.pool, ASYNC_DRAIN);
    chan_free(r.c);
}

/* ------------------------------------------------------- parent cancel */

struct family {
    async_pool_t *pool;
    chan_t       *never;
    atomic_uint   started;
    atomic_int    rc[3];   /* the grandchild's receive, the child's close, the parent's */
};

struct gen_arg {
    struct family *fam;
    int            level;
};

static void *generation(void *arg)
{
    struct family *fam = ((struct gen_arg *)arg)->fam;
    int level = ((struct gen_arg *)arg)->level;
    if (level == 0) {
        atomic_fetch_add(&fam->started, 1);
        atomic_store(&fam->rc[0], chan_recv(fam->never, NULL));
        return NULL;
    }
    async_scope_t *s = async_scope_open(fam->pool, 0, ASYNC_FOREVER);
    struct gen_arg child = { fam, level - 1 };
    future_free(async_scope_submit(s, generation, &child, sizeof child));
    atomic_store(&fam->rc[level], async_scope_close(s));
    return NULL;
}

void scope_parent_cancel(struct tally *t, bool thread_mode, unsigned rounds)
{
    tally_begin(t, "parent_cancel");
    struct family fam = { .pool = make_pool(thread_mode, 2), .never = chan_make(0, 0) };
    for (unsigned r = 0; r < rounds; r++) {
        atomic_store(&fam.started, 0);
        struct gen_arg top = { &fam, 2 };
        future_t *f = async_submit(fam.pool, generation, &top, sizeof top);
        tally_check(t, tu_wait_count(&fam.started, 1), "the grandchild blocked");
        tally_check(t, future_cancel(f) == EBUSY, "cancel the running parent");
        tally_check(t, tu_get(f, NULL) == 0, "the parent returned");
        tally_check(t, atomic_load(&fam.rc[0]) == ECANCELED, "grandchild: %d",
                    atomic_load(&fam.rc[0]));
        tally_check(t, atomic_load(&fam.rc[1]) == ECANCELED, "child's close: %d",
                    atomic_load(&fam.rc[1]));
        tally_check(t, atomic_load(&fam.rc[2]) == ECANCELED, "parent's close: %d",
                    atomic_load(&fam.rc[2]));
        future_free(f);
    }
    tally_note(t, "%s mode: %u cancels of a parent reached its grandchild", mode(thread_mode),
               rounds);
    async_pool_destroy(fam.pool, ASYNC_DRAIN);
    chan_free(fam.never);
}

/* ---------------------------------------------------------- cross pool */

struct cross {
    async_pool_t *other;
    chan_t       *never;
    tu_gate_t     blocked;
    atomic_int    child_rc, close_rc;
};

static void *cross_child(void *arg)
{
    struct cross *c = arg;
    tu_gate_open(&c->blocked);
    atomic_store(&c->child_rc, chan_recv(c->never, NULL));
    return NULL;
}

static void *cross_parent(void *arg)
{
    struct cross *c = arg;
    async_scope_t *s = async_scope_open(c->other, 0, ASYNC_FOREVER);
    future_free(async_scope_run(s, cross_child, c));
    atomic_store(&c->close_rc, async_scope_close(s));
    return NULL;
}

void scope_cross_pool_cancel(struct tally *t, bool thread_mode)
{
    tally_begin(t, "cross_pool_cancel");
    async_pool_t *pool = make_pool(thread_mode, 1);
    struct cross c = { .other = make_pool(!thread_mode, 1), .never = chan_make(0, 0),
                       .child_rc = -1, .close_rc = -1 };
    future_t *f = async_run_on(pool, cross_parent, &c);
    tally_check(t, tu_gate_wait(&c.blocked), "the child blocked");
    tally_check(t, async_pool_destroy(pool, ASYNC_CANCEL) == 0, "destroy(ASYNC_CANCEL)");
    tally_check(t, future_done(f), "the parent is done");
    tally_check(t, atomic_load(&c.child_rc) == ECANCELED, "child: %d", atomic_load(&c.child_rc));
    tally_check(t, atomic_load(&c.close_rc) == ECANCELED, "close: %d", atomic_load(&c.close_rc));
    future_free(f);
    async_pool_destroy(c.other, ASYNC_DRAIN);
    chan_free(c.never);
}

/* ------------------------------------------------------- grow at close */

struct grow {
    async_scope_t *s;
    atomic_uint    ran;
};

struct grow_arg {
    struct grow *g;
    unsigned     depth;
};

static void *grow_task(void *arg)
{
    struct grow *g = ((struct grow_arg *)arg)->g;
    unsigned depth = ((struct grow_arg *)arg)->depth;
    atomic_fetch_add(&g->ran, 1);
    struct grow_arg child = { g, depth - 1 };
    for (int i = 0; depth > 0 && i < 2; i++)
        future_free(async_scope_submit(g->s, grow_task, &child, sizeof child));
    return NULL;
}

void scope_grow_while_closing(struct tally *t, bool thread_mode, unsigned depth)
{
    tally_begin(t, "grow_while_closing");
    async_pool_t *pool = make_pool(thread_mode, 2);
    struct grow g = { .s = async_scope_open(pool, 0, ASYNC_FOREVER) };
    struct grow_arg top = { &g, depth };
    future_free(async_scope_submit(g.s, grow_task, &top, sizeof top));
    tally_check(t, async_scope_close(g.s) == 0, "close");
    unsigned want = (1u << (depth + 1)) - 1;
    tally_check(t, atomic_load(&g.ran) == want, "%u of %u tasks ran before close returned",
                atomic_load(&g.ran), want);
    async_pool_destroy(pool, ASYNC_DRAIN);
}

/* --------------------------------------------------------------- races */

struct submitter {
    async_scope_t *s;
    struct blockers *b;
    future_t     **fs;
    unsigned       n, made;
    int            last_errno;
};

static void *submit_loop(void *arg)
{
    struct submitter *sub = arg;
    for (sub->made = 0; sub->made < sub->n; sub->made++) {
        future_t *f = async_scope_run(sub->s, block_forever, sub->b);
        if (!f) {
            sub->last_errno = errno;
            break;
        }
        sub->fs[sub->made] = f;
    }
    return NULL;
}

static void race_cancel_submit(struct tally *t, async_pool_t *pool, unsigned per_thread)
{
    enum { NSUB = 3 };
    struct blockers b = { .never = chan_make(0, 0) };
    async_scope_t *s = async_scope_open(pool, 0, ASYNC_FOREVER);
    struct submitter subs[NSUB];
    pthread_t th[NSUB];
    for (int i = 0; i < NSUB; i++) {
        subs[i] = (struct submitter){ .s = s, .b = &b, .n = per_thread,
                                      .fs = calloc(per_thread, sizeof(future_t *)) };
        pthread_create(&th[i], NULL, submit_loop, &subs[i]);
    }
    tu_wait_count(&b.started, 1);
    tally_check(t, async_scope_cancel(s) == 0, "cancel while submitting");
    for (int i = 0; i < NSUB; i++)
        pthread_join(th[i], NULL);
    tally_check(t, async_scope_close(s) == ECANCELED, "close after cancel");
    for (int i = 0; i < NSUB; i++) {
        tally_check(t, subs[i].made == per_thread || subs[i].last_errno == ECANCELED,
                    "a refused submission says ECANCELED (%d)", subs[i].last_errno);
        for (unsigned j = 0; j < subs[i].made; j++) {
            tally_check(t, future_done(subs[i].fs[j]), "every task done after close");
            future_free(subs[i].fs[j]);
        }
        free(subs[i].fs);
    }
    chan_free(b.never);
}

static void *open_and_block(void *arg)
{
    struct blockers *b = arg;
    atomic_fetch_add(&b->go_seen, 1);
    async_scope_t *s = async_scope_open(NULL, 0, ASYNC_FOREVER);
    future_free(async_scope_run(s, block_forever, b));
    int rc = async_scope_close(s);
    atomic_fetch_add(rc == ECANCELED || rc == 0 ? &b->ran : &b->epipe, 1);
    return NULL;
}

void scope_races(struct tally *t, bool thread_mode, unsigned rounds)
{
    tally_begin(t, "races");
    async_pool_t *pool = make_pool(thread_mode, 2);
    for (unsigned r = 0; r < rounds; r++)
        race_cancel_submit(t, pool, 64);
    /* future_cancel racing the task's opening of its scope: either the
     * canceller finds the scope or the opener sees the cancel; the close
     * never hangs. The scope is on the default pool (another pool than
     * its parent's). */
    struct blockers b = { .never = chan_make(0, 0) };
    unsigned ran = 0;
    for (unsigned r = 0; r < rounds * 20; r++) {
        future_t *f = async_run_on(pool, open_and_block, &b);
        if (r % 2)   /* odd rounds: cancel as it opens; even: whenever */
            tu_wait_count(&b.go_seen, ran + 1);
        int c = future_cancel(f);
        tally_check(t, tu_get(f, NULL) == (c == 0 ? ECANCELED : 0), "cancel %d", c);
        ran += c != 0;
        future_free(f);
    }
    tally_check(t, atomic_load(&b.ran) == ran && atomic_load(&b.epipe) == 0,
                "%u of %u cancelled openers closed", atomic_load(&b.ran), ran);
    tally_note(t, "%s mode: %u cancel/submit races, %u cancel/open races (%u ran)",
               mode(thread_mode), rounds, rounds * 20, ran);
    async_pool_destroy(pool, ASYNC_DRAIN);
    chan_free(b.never);
}
