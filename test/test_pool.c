/*
 * test/test_pool.c — pools (API.md: Pools): create and its limits, names,
 * destroy and both shutdown modes, the default pool and $ASYNC_THREADS,
 * statistics, blocked-worker replacement, saturation, thread-start failure.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

static async_pool_t *pool_of(unsigned threads, unsigned max_threads, struct tu_log *log)
{
    async_pool_t *pool = tu_pool(threads, max_threads, log);
    cr_assert_not_null(pool, "async_pool_create: %s", strerror(errno));
    return pool;
}

/* Replacements and saturation are what thread mode does when its workers
 * block; goroutine mode parks the task and keeps the worker. */
static async_pool_t *thread_pool_of(unsigned threads, unsigned max_threads, struct tu_log *log)
{
    async_pool_t *pool = tu_pool_thread(threads, max_threads, log);
    cr_assert_not_null(pool, "async_pool_create: %s", strerror(errno));
    return pool;
}

static void destroy(async_pool_t *pool)
{
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

/* Spin until the pool reports `threads` live workers; returns the stats. */
static async_pool_stats_t wait_threads(async_pool_t *pool, unsigned threads)
{
    async_pool_stats_t s;
    int64_t until = tu_deadline();
    do
        cr_assert_eq(async_pool_stats(pool, &s), 0);
    while (s.threads != threads && tu_spin_once(until));
    cr_assert_eq(s.threads, threads, "%u workers alive, want %u", s.threads, threads);
    return s;
}

static void *panic_task(void *arg)
{
    async_panic(EIO, "panic %d", (int)(intptr_t)arg);
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

/* ------------------------------------------------------------- create */

static void no_env(void)
{
    unsetenv("ASYNC_THREADS");
}

Test(pool, create_with_null_config_starts_one_worker_per_cpu, .init = no_env)
{
    async_pool_t *pool = async_pool_create(NULL);
    cr_assert_not_null(pool);
    wait_threads(pool, tu_cpus());
    destroy(pool);
}

Test(pool, create_starts_the_configured_number_of_workers)
{
    async_pool_t *pool = pool_of(3, 0, NULL);
    async_pool_stats_t s = wait_threads(pool, 3);
    cr_assert_geq(s.peak_threads, 3);
    cr_assert_eq(s.blocked, 0);
    cr_assert_eq(s.queued, 0);
    cr_assert_eq(s.submitted, 0);
    destroy(pool);
}

Test(pool, max_threads_below_threads_returns_einval)
{
    errno = 0;
    cr_assert_null(tu_pool(4, 2, NULL));
    cr_assert_eq(errno, EINVAL);
}

Test(pool, max_threads_above_ten_thousand_returns_einval)
{
    errno = 0;
    cr_assert_null(tu_pool(1, 10001, NULL));
    cr_assert_eq(errno, EINVAL);
}

Test(pool, max_threads_equal_to_threads_is_accepted)
{
    async_pool_t *pool = pool_of(2, 2, NULL);
    destroy(pool);
}

static void four_threads_env(void)
{
    setenv("ASYNC_THREADS", "4", 1);
}

Test(pool, max_threads_below_the_resolved_thread_count_returns_einval, .init = four_threads_env)
{
    errno = 0;
    cr_assert_null(tu_pool(0, 3, NULL));
    cr_assert_eq(errno, EINVAL);
    async_pool_t *pool = pool_of(0, 4, NULL);
    wait_threads(pool, 4);
    destroy(pool);
}

struct name_probe {
    char name[32];
};

static void *name_task(void *arg)
{
    struct name_probe *p = arg;
    if (pthread_getname_np(pthread_self(), p->name, sizeof p->name) != 0)
        strcpy(p->name, "?");
    return NULL;
}

static void check_thread_name(const char *config_name, const char *want_prefix)
{
    async_pool_config_t cfg = { .threads = 1, .name = config_name };
    async_pool_t *pool = async_pool_create(&cfg);
    struct name_probe p = { .name = "" };
    cr_assert_not_null(pool);
    future_t *f = async_run_on(pool, name_task, &p);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(strncmp(p.name, want_prefix, strlen(want_prefix)), 0,
                 "thread name \"%s\" should start with \"%s\"", p.name, want_prefix);
    future_free(f);
    destroy(pool);
}

Test(pool, workers_are_named_async_by_default)
{
    check_thread_name(NULL, "async");
}

Test(pool, workers_are_named_after_the_pool)
{
    check_thread_name("mypool", "mypool");
    check_thread_name("averyveryverylongpoolname", "averyver");
}

/* ------------------------------------------------------------ destroy */

Test(pool, destroy_of_null_returns_einval)
{
    cr_assert_eq(async_pool_destroy(NULL, ASYNC_DRAIN), EINVAL);
    cr_assert_eq(async_pool_destroy(NULL, ASYNC_CANCEL), EINVAL);
}

Test(pool, destroy_with_an_invalid_how_returns_einval_and_leaves_the_pool_alone)
{
    async_pool_t *pool = pool_of(1, 0, NULL);
    cr_assert_eq(async_pool_destroy(pool, (async_shutdown_t)7), EINVAL);
    cr_assert_eq(async_pool_destroy(pool, (async_shutdown_t)-1), EINVAL);
    future_t *f = async_run_on(pool, tu_task_noop, NULL);
    cr_assert_not_null(f, "the pool still accepts work");
    cr_assert_eq(tu_get(f, NULL), 0);
    future_free(f);
    destroy(pool);
}

struct self_destroy {
    async_pool_t *pool;
    int           rc_drain, rc_cancel, rc_shutdown;
};

static void *self_destroy_task(void *arg)
{
    struct self_destroy *d = arg;
    d->rc_drain = async_pool_destroy(d->pool, ASYNC_DRAIN);
    d->rc_cancel = async_pool_destroy(d->pool, ASYNC_CANCEL);
    return NULL;
}

Test(pool, destroy_from_one_of_its_own_tasks_returns_edeadlk)
{
    async_pool_t *pool = pool_of(1, 0, NULL);
    struct self_destroy d = { .pool = pool, .rc_drain = -1, .rc_cancel = -1 };
    future_t *f = async_run_on(pool, self_destroy_task, &d);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(d.rc_drain, EDEADLK);
    cr_assert_eq(d.rc_cancel, EDEADLK);
    future_free(f);
    f = async_run_on(pool, tu_task_noop, NULL);
    cr_assert_not_null(f, "nothing happened to the pool");
    cr_assert_eq(tu_get(f, NULL), 0);
    future_free(f);
    destroy(pool);
}

static void *shutdown_default_task(void *arg)
{
    struct self_destroy *d = arg;
    d->rc_shutdown = async_shutdown(ASYNC_DRAIN);
    return NULL;
}

Test(pool, shutdown_from_a_task_of_the_default_pool_returns_edeadlk)
{
    struct self_destroy d = { .rc_shutdown = -1 };
    future_t *f = async_run(shutdown_default_task, &d);
    cr_assert_not_null(f);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(d.rc_shutdown, EDEADLK);
    future_free(f);
    cr_assert_eq(async_shutdown(ASYNC_DRAIN), 0);
}

struct shutdown_during_drain {
    async_pool_t *pool;      /* the default pool the task runs on */
    bool          saw_drain;
    int           rc;
};

static void *shutdown_during_drain_task(void *arg)
{
    struct shutdown_during_drain *d = arg;
    /* Wait until the main thread's async_shutdown has begun the drain: the
     * pool's phase (its first word, see internal.h) leaves RUNNING (0). */
    int64_t until = tu_deadline();
    while (atomic_load((_Atomic int *)(void *)d->pool) == 0 && tu_spin_once(until))
        ;
    d->saw_drain = atomic_load((_Atomic int *)(void *)d->pool) != 0;
    d->rc = async_shutdown(ASYNC_DRAIN);
    return NULL;
}

Test(pool, shutdown_from_a_default_pool_task_during_a_drain_returns_edeadlk, .timeout = 10)
{
    struct shutdown_during_drain d = { .pool = async_default_pool(), .rc = -1 };
    cr_assert_not_null(d.pool);
    future_t *f = async_run(shutdown_during_drain_task, &d);
    cr_assert_not_null(f);
    cr_assert_eq(async_shutdown(ASYNC_DRAIN), 0, "the drain waits for the task");
    cr_assert(future_done(f));
    cr_assert(d.saw_drain, "the task never saw the drain begin");
    cr_assert_eq(d.rc, EDEADLK);
    future_free(f);
}

Test(pool, destroy_drain_runs_everything_queued)
{
    enum { N = 2000 };
    async_pool_t *pool = pool_of(1, 0, NULL);
    atomic_uint ran = 0;
    future_t **fs = calloc(N, sizeof *fs);
    for (int i = 0; i < N; i++) {
        fs[i] = async_run_on(pool, tu_task_count, &ran);
        cr_assert_not_null(fs[i]);
    }
    destroy(pool);
    cr_assert_eq(atomic_load(&ran), N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(future_state(fs[i]), FUTURE_SUCCEEDED);
        future_free(fs[i]);
    }
    free(fs);
}

struct stuck {
    tu_gate_t started;
    future_t *on;       /* NULL: sleep for an hour instead */
    int       rc;
};

static void *stuck_task(void *arg)
{
    struct stuck *s = arg;
    tu_gate_open(&s->started);
    if (s->on)
        s->rc = future_get(s->on, NULL);
    else
        s->rc = async_sleep_until(async_now() + 3600 * ASYNC_SECOND);
    return NULL;
}

Test(pool, destroy_cancel_cancels_the_queue_and_ends_blocked_tasks)
{
    enum { N = 100 };
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = thread_pool_of(1, 1, &log);  /* no replacement may run the queue */
    promise_t *never = promise_make();
    struct stuck s = { .on = promise_future(never), .rc = -1 };
    future_t *blocked = async_run_on(pool, stuck_task, &s);
    cr_assert(tu_gate_wait(&s.started));
    atomic_uint ran = 0;
    future_t *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = async_run_on(pool, tu_task_count, &ran);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_CANCEL), 0);
    cr_assert(future_done(blocked));
    cr_assert_eq(s.rc, ECANCELED);
    cr_assert_eq(atomic_load(&ran), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(future_state(fs[i]), FUTURE_CANCELLED);
        cr_assert_eq(future_get(fs[i], NULL), ECANCELED);
        future_free(fs[i]);
    }
    cr_assert_eq(future_state(s.on), FUTURE_PENDING);
    future_free(blocked);
    future_free(s.on);
    promise_free(never);
    tu_log_fini(&log);
}

Test(pool, destroy_cancel_ends_a_long_sleep)
{
    async_pool_t *pool = pool_of(1, 0, NULL);
    struct stuck s = { .on = NULL, .rc = -1 };
    future_t *f = async_run_on(pool, stuck_task, &s);
    cr_assert(tu_gate_wait(&s.started));
    cr_assert_eq(async_pool_destroy(pool, ASYNC_CANCEL), 0);
    cr_assert(future_done(f));
    cr_assert_eq(s.rc, ECANCELED);
    future_free(f);
}

Test(pool, destroy_of_an_idle_pool_returns_0)
{
    destroy(pool_of(2, 0, NULL));
    cr_assert_eq(async_pool_destroy(pool_of(2, 0, NULL), ASYNC_CANCEL), 0);
}

/* ------------------------------------------------------- default pool */

Test(pool, the_default_pool_is_created_on_first_use_and_stays)
{
    async_pool_t *a = async_default_pool();
    async_pool_t *b = async_default_pool();
    cr_assert_not_null(a);
    cr_assert_eq(a, b);
    cr_assert_eq(async_shutdown(ASYNC_DRAIN), 0);
}

Test(pool, shutdown_without_a_default_pool_returns_0)
{
    cr_assert_eq(async_shutdown(ASYNC_DRAIN), 0);
    cr_assert_eq(async_shutdown(ASYNC_CANCEL), 0);
}

Test(pool, after_shutdown_the_next_use_creates_a_new_default_pool)
{
    future_t *f = async_run(tu_task_noop, NULL);
    cr_assert_eq(future_get(f, NULL), 0);
    future_free(f);
    cr_assert_eq(async_shutdown(ASYNC_DRAIN), 0);
    f = async_run(tu_task_noop, NULL);
    cr_assert_not_null(f, "a new default pool accepts work");
    cr_assert_eq(future_get(f, NULL), 0);
    future_free(f);
    async_pool_stats_t s;
    cr_assert_eq(async_pool_stats(NULL, &s), 0);
    cr_assert_eq(s.submitted, 1, "the new pool counts from zero");
    cr_assert_eq(async_shutdown(ASYNC_CANCEL), 0);
}

Test(pool, shutdown_with_an_invalid_how_returns_einval)
{
    cr_assert_not_null(async_default_pool());
    cr_assert_eq(async_shutdown((async_shutdown_t)9), EINVAL);
    cr_assert_eq(async_shutdown(ASYNC_DRAIN), 0);
}

static void threads_env(const char *value)
{
    setenv("ASYNC_THREADS", value, 1);
    cr_redirect_stderr();
}

static void env_3(void) { threads_env("3"); }
static void env_0(void) { threads_env("0"); }
static void env_negative(void) { threads_env("-2"); }
static void env_text(void) { threads_env("many"); }
static void env_trailing(void) { threads_env("3x"); }
static void env_huge(void) { threads_env("5000"); }

/* The default pool's size, then the number of lines on stderr. */
static void check_default_pool(unsigned want_threads, unsigned want_warnings)
{
    wait_threads(NULL, want_threads);
    cr_assert_eq(async_shutdown(ASYNC_DRAIN), 0);
    fflush(stderr);
    FILE *err = cr_get_redirected_stderr();
    char line[512];
    unsigned lines = 0, naming = 0;
    while (fgets(line, sizeof line, err)) {
        lines++;
        if (strstr(line, "ASYNC_THREADS"))
            naming++;
    }
    cr_assert_eq(lines, want_warnings, "%u lines on stderr, want %u", lines, want_warnings);
    cr_assert_eq(naming, want_warnings, "the warning names ASYNC_THREADS");
}

Test(pool, async_threads_sizes_the_default_pool, .init = env_3)
{
    check_default_pool(3, 0);
}

Test(pool, async_threads_zero_warns_once_and_uses_the_cpu_count, .init = env_0)
{
    check_default_pool(tu_cpus(), 1);
}

Test(pool, async_threads_negative_warns_once_and_uses_the_cpu_count, .init = env_negative)
{
    check_default_pool(tu_cpus(), 1);
}

Test(pool, async_threads_not_a_number_warns_once_and_uses_the_cpu_count, .init = env_text)
{
    check_default_pool(tu_cpus(), 1);
}

Test(pool, async_threads_with_trailing_text_warns_once_and_uses_the_cpu_count, .init = env_trailing)
{
    check_default_pool(tu_cpus(), 1);
}

Test(pool, async_threads_above_4096_warns_once_and_uses_the_cpu_count, .init = env_huge)
{
    check_default_pool(tu_cpus(), 1);
}

Test(pool, async_threads_also_sizes_a_pool_created_with_zero_threads, .init = env_3)
{
    async_pool_t *pool = pool_of(0, 0, NULL);
    wait_threads(pool, 3);
    destroy(pool);
}

/* -------------------------------------------------------------- stats */

Test(pool, stats_with_null_out_returns_einval)
{
    async_pool_t *pool = pool_of(1, 0, NULL);
    cr_assert_eq(async_pool_stats(pool, NULL), EINVAL);
    destroy(pool);
}

Test(pool, stats_of_null_reads_the_default_pool)
{
    async_pool_stats_t s;
    cr_assert_eq(async_pool_stats(NULL, &s), 0);
    cr_assert_geq(s.threads, 1);
    cr_assert_eq(async_shutdown(ASYNC_DRAIN), 0);
}

Test(pool, stats_outcomes_add_up_once_the_pool_is_quiet)
{
    enum { OK = 50, BAD = 10, CANCELLED = 5 };
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = pool_of(1, 0, &log);
    struct hold h = { 0 };
    future_t *held = async_run_on(pool, hold_task, &h);
    cr_assert(tu_gate_wait(&h.running));
    future_t *fs[OK + BAD + CANCELLED];
    int n = 0;
    for (int i = 0; i < CANCELLED; i++) {
        fs[n] = async_run_on(pool, tu_task_noop, NULL);
        cr_assert_eq(future_cancel(fs[n++]), 0);
    }
    for (int i = 0; i < BAD; i++)
        fs[n++] = async_run_on(pool, panic_task, (void *)(intptr_t)i);
    for (int i = 0; i < OK; i++)
        fs[n++] = async_run_on(pool, tu_task_noop, NULL);
    async_pool_stats_t s;
    cr_assert_eq(async_pool_stats(pool, &s), 0);
    cr_assert_eq(s.submitted, 1 + OK + BAD + CANCELLED);
    cr_assert_leq(s.queued, OK + BAD + CANCELLED);
    tu_gate_open(&h.release);
    cr_assert_eq(future_wait_all(fs, (size_t)n, async_now() + TU_PATIENCE), 0);
    cr_assert_eq(tu_get(held, NULL), 0);
    cr_assert(tu_pool_quiet(pool, &s), "the counters never settled");
    cr_assert_eq(s.submitted, 1 + OK + BAD + CANCELLED);
    cr_assert_eq(s.succeeded, 1 + OK);
    cr_assert_eq(s.failed, BAD);
    cr_assert_eq(s.cancelled, CANCELLED);
    cr_assert_eq(s.queued, 0);
    cr_assert_eq(s.blocked, 0);
    cr_assert_leq(s.stolen, s.submitted);
    cr_assert_eq(s.threads, 1);
    cr_assert_geq(s.peak_threads, 1);
    for (int i = 0; i < n; i++)
        future_free(fs[i]);
    future_free(held);
    destroy(pool);
    /* Each failure logs its panic, and again as its future goes unread. */
    cr_assert_eq(atomic_load(&log.count), 2 * BAD);
    tu_log_fini(&log);
}

Test(pool, stats_counts_idle_workers)
{
    async_pool_t *pool = pool_of(2, 0, NULL);
    async_pool_stats_t s;
    int64_t until = tu_deadline();
    do
        cr_assert_eq(async_pool_stats(pool, &s), 0);
    while (s.idle != 2 && tu_spin_once(until));
    cr_assert_eq(s.idle, 2);
    destroy(pool);
}

struct width {
    atomic_uint running, widest;
};

static void *width_task(void *arg)
{
    struct width *w = arg;
    unsigned now = atomic_fetch_add(&w->running, 1) + 1;
    unsigned widest = atomic_load(&w->widest);
    while (now > widest && !atomic_compare_exchange_weak(&w->widest, &widest, now))
        ;
    for (int i = 0; i < 20; i++)
        sched_yield();
    atomic_fetch_sub(&w->running, 1);
    return NULL;
}

Test(pool, a_pool_never_runs_more_than_threads_tasks_at_once)
{
    enum { N = 300 };
    async_pool_t *pool = pool_of(2, 0, NULL);
    struct width w = { 0, 0 };
    future_t *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = async_run_on(pool, width_task, &w);
    cr_assert_eq(future_wait_all(fs, N, async_now() + TU_PATIENCE), 0);
    for (int i = 0; i < N; i++)
        future_free(fs[i]);
    destroy(pool);
    cr_assert_leq(atomic_load(&w.widest), 2);
    cr_assert_geq(atomic_load(&w.widest), 1);
}

/* ------------------------------------------- outside submissions */

/* What a thread outside the pool submits starts in the order submitted:
 * the newest waits in the pool's outside slot, the older ones in the
 * injection queue, and a worker takes the queue's first. */
struct order_log {
    atomic_uint n;
    int         seq[64];
};

struct order_step {
    struct order_log *log;
    int               id;
};

static void *log_order(void *arg)
{
    struct order_step *st = arg;
    unsigned i = atomic_fetch_add(&st->log->n, 1);
    if (i < 64)
        st->log->seq[i] = st->id;
    return NULL;
}

/* With `credit`, the first of the N goes to the slot held for this thread
 * (lib/runq.c, "Hold"): the queue's tasks, submitted after it, must wait
 * for it. */
static void outside_order(bool goroutine, bool credit)
{
    enum { N = 40 };
    async_pool_t *pool = goroutine ? pool_of(1, 1, NULL) : thread_pool_of(1, 1, NULL);
    struct hold h = { { 0 }, { 0 } };
    future_t *held = async_run_on(pool, hold_task, &h);
    cr_assert(tu_gate_wait(&h.running));
    if (credit)
        async__test_slot_credit(8);   /* as after a take-back */
    struct order_log log = { 0, { 0 } };
    struct order_step steps[N];
    future_t *fs[N];
    for (int i = 0; i < N; i++) {
        steps[i] = (struct order_step){ &log, i };
        cr_assert_not_null(fs[i] = async_run_on(pool, log_order, &steps[i]));
    }
    tu_gate_open(&h.release);
    cr_assert_eq(future_wait_all(fs, N, async_now() + TU_PATIENCE), 0);
    cr_assert_eq(atomic_load(&log.n), N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(log.seq[i], i, "start %d was task %d", i, log.seq[i]);
    for (int i = 0; i < N; i++)
        future_free(fs[i]);
    cr_assert_eq(tu_get(held, NULL), 0);
    future_free(held);
    destroy(pool);
}

Test(pool, outside_submissions_start_in_order_goroutine_mode)
{
    outside_order(true, false);
    outside_order(true, true);
}

Test(pool, outside_submissions_start_in_order_thread_mode)
{
    outside_order(false, false);
    outside_order(false, true);
}

/* A task held in the slot for its submitter, who then waits for it outside
 * the library (spinning on a counter), still runs: a worker takes it once
 * the hold has lasted. */
static void held_task_runs(bool goroutine)
{
    async_pool_t *pool = goroutine ? pool_of(1, 1, NULL) : thread_pool_of(1, 1, NULL);
    for (int i = 0; i < 20; i++) {
        async__test_slot_credit(8);   /* as after a take-back */
        atomic_uint ran = 0;
        future_t *f = async_run_on(pool, tu_task_count, &ran);
        cr_assert_not_null(f);
        cr_assert(tu_wait_count(&ran, 1), "round %d: the held task never ran", i);
        cr_assert_eq(tu_get(f, NULL), 0);
        future_free(f);
    }
    destroy(pool);
}

Test(pool, a_task_held_for_its_submitter_runs_when_it_does_not_come_back)
{
    held_task_runs(true);
    held_task_runs(false);
}

/* Several outside threads submitting and waiting at once, cancelling and
 * bursting: race_outside_slot (test_races.c, stress_getters). */

/* ------------------------------------------ blocking and replacements */

struct pair_wait {
    future_t  *on;        /* A waits on this */
    promise_t *p;         /* B completes this */
    tu_gate_t  a_started, b_go;
    int        a_rc, b_rc;
};

static void *wait_on_promise(void *arg)
{
    struct pair_wait *pw = arg;
    tu_gate_open(&pw->a_started);
    pw->a_rc = future_get(pw->on, NULL);
    return NULL;
}

static void *complete_promise(void *arg)
{
    struct pair_wait *pw = arg;
    if (tu_gate_wait(&pw->b_go))
        pw->b_rc = promise_complete(pw->p, arg);
    return NULL;
}

Test(pool, a_blocked_worker_is_replaced_so_later_work_runs)
{
    async_pool_t *pool = thread_pool_of(1, 0, NULL);
    promise_t *p = promise_make();
    struct pair_wait pw = { .on = promise_future(p), .p = p, .a_rc = -1, .b_rc = -1 };
    future_t *a = async_run_on(pool, wait_on_promise, &pw);
    cr_assert(tu_gate_wait(&pw.a_started));
    future_t *b = async_run_on(pool, complete_promise, &pw);
    async_pool_stats_t s;
    int64_t until = tu_deadline();
    do
        cr_assert_eq(async_pool_stats(pool, &s), 0);
    while ((s.threads < 2 || s.blocked != 1) && tu_spin_once(until));
    cr_assert_geq(s.threads, 2, "a replacement started");
    cr_assert_eq(s.blocked, 1, "A counts as blocked");
    tu_gate_open(&pw.b_go);
    cr_assert_eq(tu_get(a, NULL), 0);
    cr_assert_eq(tu_get(b, NULL), 0);
    cr_assert_eq(pw.a_rc, 0);
    cr_assert_eq(pw.b_rc, 0);
    cr_assert_eq(async_pool_stats(pool, &s), 0);
    cr_assert_geq(s.peak_threads, 2);
    future_free(a);
    future_free(b);
    future_free(pw.on);
    promise_free(p);
    destroy(pool);
}

Test(pool, an_idle_replacement_worker_exits)
{
    async_pool_t *pool = thread_pool_of(1, 0, NULL);
    promise_t *p = promise_make();
    struct pair_wait pw = { .on = promise_future(p), .p = p, .a_rc = -1, .b_rc = -1 };
    tu_gate_open(&pw.b_go);
    future_t *a = async_run_on(pool, wait_on_promise, &pw);
    cr_assert(tu_gate_wait(&pw.a_started));
    future_t *b = async_run_on(pool, complete_promise, &pw);
    cr_assert_eq(tu_get(a, NULL), 0);
    cr_assert_eq(tu_get(b, NULL), 0);
    async_pool_stats_t s;
    cr_assert_eq(async_pool_stats(pool, &s), 0);
    cr_assert_geq(s.peak_threads, 2);
    wait_threads(pool, 1);
    future_free(a);
    future_free(b);
    future_free(pw.on);
    promise_free(p);
    destroy(pool);
}

Test(pool, at_max_threads_the_pool_logs_saturation)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = thread_pool_of(1, 1, &log);
    promise_t *p = promise_make();
    struct pair_wait pw = { .on = promise_future(p), .p = p, .a_rc = -1, .b_rc = -1 };
    tu_gate_open(&pw.b_go);
    future_t *a = async_run_on(pool, wait_on_promise, &pw);
    cr_assert(tu_gate_wait(&pw.a_started));
    future_t *b = async_run_on(pool, tu_task_noop, NULL);
    cr_assert(tu_wait_count(&log.saturated, 1), "no saturation line");
    char line[256];
    unsigned blocked = 0, queued = 0;
    cr_assert(tu_log_find_prefix(&log, "pool test: saturated", line, sizeof line));
    cr_assert_eq(sscanf(line, "pool test: saturated: %u workers blocked, %u tasks queued",
                        &blocked, &queued), 2, "line: %s", line);
    cr_assert_eq(blocked, 1, "line: %s", line);
    cr_assert_eq(queued, 1, "line: %s", line);
    cr_assert_eq(future_state(b), FUTURE_PENDING);
    cr_assert_eq(promise_complete(p, NULL), 0);
    cr_assert_eq(tu_get(a, NULL), 0);
    cr_assert_eq(tu_get(b, NULL), 0);
    cr_assert_eq(pw.a_rc, 0);
    async_pool_stats_t s;
    cr_assert_eq(async_pool_stats(pool, &s), 0);
    cr_assert_eq(s.peak_threads, 1, "max_threads is a cap");
    future_free(a);
    future_free(b);
    future_free(pw.on);
    promise_free(p);
    destroy(pool);
    cr_assert_eq(atomic_load(&log.saturated), 1, "logged once");
    tu_log_fini(&log);
}

/* ------------------------------------------------ thread-start failure */

Test(pool, create_returns_eagain_when_no_worker_can_start)
{
    async__test_fail_thread(1);
    errno = 0;
    async_pool_t *pool = tu_pool(1, 0, NULL);
    async__test_fail_thread(0);
    cr_assert_null(pool);
    cr_assert_eq(errno, EAGAIN);
}

Test(pool, create_runs_with_the_workers_that_started)
{
    async__test_fail_thread(2);
    async_pool_t *pool = tu_pool(3, 0, NULL);
    async__test_fail_thread(0);
    cr_assert_not_null(pool, "one worker started: the pool runs with it");
    async_pool_stats_t s;
    cr_assert_eq(async_pool_stats(pool, &s), 0);
    cr_assert_geq(s.threads, 1);
    cr_assert_lt(s.threads, 3, "the second thread could not start");
    cr_assert_lt(s.peak_threads, 3);
    atomic_uint ran = 0;
    future_t *f = async_run_on(pool, tu_task_count, &ran);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(atomic_load(&ran), 1);
    future_free(f);
    destroy(pool);
}

/* ------------------------------------- submissions while cancelling */

struct own_submit {
    async_pool_t *pool;
    tu_gate_t     started;
    bool          saw_cancel;
    int           err;
    future_t     *f;
};

static void *submit_when_cancelled(void *arg)
{
    struct own_submit *o = arg;
    int64_t until = tu_deadline();
    tu_gate_open(&o->started);
    while (!async_cancelled())
        if (!tu_spin_once(until))
            return NULL;
    o->saw_cancel = true;
    errno = 0;
    o->f = async_run_on(o->pool, tu_task_noop, NULL);
    o->err = errno;
    return NULL;
}

Test(pool, once_cancelling_even_its_own_tasks_cannot_submit)
{
    async_pool_t *pool = pool_of(1, 0, NULL);
    struct own_submit o = { .pool = pool, .err = -1 };
    future_t *f = async_run_on(pool, submit_when_cancelled, &o);
    cr_assert(tu_gate_wait(&o.started));
    cr_assert_eq(async_pool_destroy(pool, ASYNC_CANCEL), 0);
    cr_assert(future_done(f));
    cr_assert(o.saw_cancel, "ASYNC_CANCEL asks running tasks to stop");
    cr_assert_null(o.f);
    cr_assert_eq(o.err, ECANCELED);
    future_free(f);
}

struct other_destroy {
    async_pool_t *other;
    int           rc;
};

static void *destroy_other_task(void *arg)
{
    struct other_destroy *d = arg;
    d->rc = async_pool_destroy(d->other, ASYNC_DRAIN);
    return NULL;
}

Test(pool, a_task_may_destroy_another_pool)
{
    async_pool_t *a = pool_of(1, 0, NULL), *b = pool_of(1, 0, NULL);
    struct other_destroy d = { .other = b, .rc = -1 };
    future_t *f = async_run_on(a, destroy_other_task, &d);
    cr_assert_eq(tu_get(f, NULL), 0);
    cr_assert_eq(d.rc, 0);
    future_free(f);
    destroy(a);
}

struct sleeper {
    tu_gate_t started;
    int       rc;
};

static void *sleep_forever_task(void *arg)
{
    struct sleeper *s = arg;
    tu_gate_open(&s->started);
    s->rc = async_sleep_until(ASYNC_FOREVER);
    return NULL;
}

Test(pool, a_sleeping_worker_is_replaced)
{
    async_pool_t *pool = pool_of(1, 0, NULL);
    struct sleeper s = { .rc = -1 };
    future_t *sleeping = async_run_on(pool, sleep_forever_task, &s);
    cr_assert(tu_gate_wait(&s.started));
    atomic_uint ran = 0;
    future_t *f = async_run_on(pool, tu_task_count, &ran);
    cr_assert_eq(tu_get(f, NULL), 0, "a replacement ran it");
    cr_assert_eq(atomic_load(&ran), 1);
    cr_assert_eq(future_state(sleeping), FUTURE_RUNNING);
    cr_assert_eq(future_cancel(sleeping), EBUSY);
    cr_assert_eq(tu_get(sleeping, NULL), 0);
    cr_assert_eq(s.rc, ECANCELED);
    future_free(f);
    future_free(sleeping);
    destroy(pool);
}
