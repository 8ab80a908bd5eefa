/*
 * bench/bench.c — libasync on the six peer workloads.
 *
 * Prints one line per workload in the peer harness's format (see
 * docs/bench.md):
 *
 *   peer=libasync workload=W# n=N ns_per_op=X [key=value ...]
 *
 * Usage: bench [--threads N] [--workload W#] [--peer NAME] [--w3-tasks]
 *   --threads N    worker threads of the pool (default 2, as every peer)
 *   --workload W#  run one workload in this process (default: all of them,
 *                  each in a fresh child process, as the peer protocol asks)
 *   --peer NAME    the name printed after peer= (default "libasync")
 *   --w3-tasks     W3 with both parties as pool tasks (the same as W3T)
 * Pools run in goroutine mode unless $ASYNC_STACK_SIZE=thread.
 *
 * Protocol (the peers'): one untimed warm-up pass (N/10; W4 fib(20); W5 100
 * primes; none for W6), then one timed pass on CLOCK_MONOTONIC. Every result
 * is checked; a wrong one exits 2, a library error exits 1.
 *
 *   W1  spawn-get: N = 1,000,000 tasks (task i returns i+1), every future
 *       kept, then each one got and summed. ns_per_op = wall / N.
 *   W2  round trip: N = 100,000 times submit one task and get it at once.
 *   W3  ping-pong over two unbuffered channels, 200,000 round trips: the main
 *       thread sends i and receives the reply, one pool task answers i+1 (as
 *       the Go peer: main goroutine + one goroutine); --w3-tasks makes the
 *       asking side a pool task too. handoff_floor_ns= is the same number
 *       of round trips between two plain threads spinning on two cache
 *       lines, measured after the pool is gone: the floor for any design
 *       in which the two sides run on two threads.
 *   W3T W3 with both parties pool tasks (Go's W3 is two goroutines); the
 *       main thread waits for them with a finite deadline, so that it runs
 *       neither itself.
 *   W4  fib(27), a task per call: spawn fib(n-1), compute fib(n-2) inline,
 *       get (the tbb-taskgroup peer's shape). The root runs on the pool and
 *       the main thread waits with a finite deadline, which never runs tasks,
 *       so exactly `threads` workers compute (plus replacements the pool may
 *       start for blocked workers: see threads_reached). ns_per_op = wall /
 *       317,810 spawned tasks.
 *   W5  concurrent prime sieve: a generator task and one filter task per
 *       prime, unbuffered channels, first 1,000 primes; the pool has the
 *       default max_threads. The main thread receives the primes. After the
 *       timed pass the pool is destroyed with ASYNC_CANCEL, which ends every
 *       blocked filter (teardown_ms).
 *   W6  memory per pending task: a pool with threads = max_threads = 2 whose
 *       two workers are held by a pthread condvar gate (not a library wait,
 *       so no replacement and no helping), then N = 1,000,000 tasks
 *       submitted. bytes_per_task = (peak RSS - RSS just before submitting)
 *       / N; the array of handles is allocated and touched before the
 *       baseline.
 *   W7  100,000 tasks blocked at once on one unbuffered channel, then fed one
 *       value each; each answers on a buffered channel (Go's W7). ns_per_op =
 *       (first submission to last answer) / N; bytes_per_task as W6, with
 *       the peak taken once every task has started.
 *
 * Every line also carries threads= (the --threads value) and
 * threads_reached= (the pool's peak_threads); W5 and W7 also os_threads=,
 * the threads of the whole process at the end of the timed pass.
 */
#include <async.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned    opt_threads = 2;
static const char *opt_peer = "libasync";

/* ------------------------------------------------------------ helpers */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The value of a "Key:   123 kB" line of /proc/self/status, in KiB; -1 when
 * it cannot be read. */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    size_t kl = strlen(key);
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static long rss_now_kb(void)
{
    return status_kb("VmRSS");
}

/* Peak RSS of this process so far, KiB (ru_maxrss, the same as VmHWM). */
static long rss_peak_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static _Noreturn void fail(const char *what, int err)
{
    fprintf(stderr, "bench: %s: %s\n", what, strerror(err));
    exit(1);
}

static void check(const char *wl, long long got, long long want)
{
    if (got != want) {
        fprintf(stderr, "bench: %s: checksum mismatch %lld != %lld\n", wl, got, want);
        exit(2);
    }
}

static void report(const char *wl, long n, double ns_per_op, const char *extra)
{
    printf("peer=%s workload=%s n=%ld ns_per_op=%.1f%s%s\n", opt_peer, wl, n, ns_per_op,
           *extra ? " " : "", extra);
    fflush(stdout);
}

static long os_threads(void)
{
    return status_kb("Threads");
}

static unsigned peak_threads(async_pool_t *pool)
{
    async_pool_stats_t st;
    return async_pool_stats(pool, &st) == 0 ? st.peak_threads : 0;
}

static async_pool_t *make_pool(unsigned threads, unsigned max_threads)
{
    async_pool_config_t cfg = { .threads = threads, .max_threads = max_threads,
                                .name = "bench" };
    async_pool_t *pool = async_pool_create(&cfg);
    if (!pool)
        fail("async_pool_create", errno);
    return pool;
}

static void destroy_pool(async_pool_t *pool, async_shutdown_t how)
{
    int rc = async_pool_destroy(pool, how);
    if (rc)
        fail("async_pool_destroy", rc);
}

static future_t *spawn(async_pool_t *pool, async_fn fn, void *arg)
{
    future_t *f = async_run_on(pool, fn, arg);
    if (!f)
        fail("async_run_on", errno);
    return f;
}

static intptr_t get_int(future_t *f)
{
    void *r = NULL;
    int rc = future_get(f, &r);
    if (rc)
        fail("future_get", rc);
    return (intptr_t)r;
}

/* --------------------------------------------------------- W1 and W2 */

static void *plus_one(void *arg)
{
    return (void *)((intptr_t)arg + 1);
}

static long long w1_pass(async_pool_t *pool, long n, future_t **fs)
{
    for (long i = 0; i < n; i++)
        fs[i] = spawn(pool, plus_one, (void *)(intptr_t)i);
    long long sum = 0;
    for (long i = 0; i < n; i++) {
        sum += get_int(fs[i]);
        future_free(fs[i]);
    }
    return sum;
}

static void w1(void)
{
    const long n = 1000000;
    async_pool_t *pool = make_pool(opt_threads, 0);
    future_t **fs = calloc((size_t)n, sizeof *fs);
    if (!fs)
        fail("calloc", ENOMEM);
    w1_pass(pool, n / 10, fs);
    uint64_t t0 = now_ns();
    long long sum = w1_pass(pool, n, fs);
    uint64_t t1 = now_ns();
    check("W1", sum, (long long)n * (n + 1) / 2);
    char extra[128];
    snprintf(extra, sizeof extra, "threads=%u threads_reached=%u", opt_threads,
             peak_threads(pool));
    destroy_pool(pool, ASYNC_DRAIN);
    free(fs);
    report("W1", n, (double)(t1 - t0) / (double)n, extra);
}

static long long w2_pass(async_pool_t *pool, long n)
{
    long long sum = 0;
    for (long i = 0; i < n; i++) {
        future_t *f = spawn(pool, plus_one, (void *)(intptr_t)i);
        sum += get_int(f);
        future_free(f);
    }
    return sum;
}

static void w2(void)
{
    const long n = 100000;
    async_pool_t *pool = make_pool(opt_threads, 0);
    w2_pass(pool, n / 10);
    uint64_t t0 = now_ns();
    long long sum = w2_pass(pool, n);
    uint64_t t1 = now_ns();
    check("W2", sum, (long long)n * (n + 1) / 2);
    char extra[128];
    snprintf(extra, sizeof extra, "threads=%u threads_reached=%u", opt_threads,
             peak_threads(pool));
    destroy_pool(pool, ASYNC_DRAIN);
    report("W2", n, (double)(t1 - t0) / (double)n, extra);
}

/* ---------------------------------------------------------------- W3 */

struct pingpong {
    chan_t *ping, *pong;
    long    n;
};

/* The answering side: pong <- (<-ping) + 1, n times. */
static void *ponger(void *arg)
{
    struct pingpong *pp = arg;
    for (long i = 0; i < pp->n; i++) {
        int64_t v;
        int rc = chan_recv(pp->ping, &v);
        if (rc)
            return (void *)(intptr_t)rc;
        v++;
        if ((rc = chan_send(pp->pong, &v)))
            return (void *)(intptr_t)rc;
    }
    return NULL;
}

/* The asking side: sends i, receives i+1, n times; the sum of the replies. */
static long long pinger(struct pingpong *pp)
{
    long long sum = 0;
    for (long i = 0; i < pp->n; i++) {
        int64_t v = i;
        int rc = chan_send(pp->ping, &v);
        if (rc)
            fail("chan_send", rc);
        if ((rc = chan_recv(pp->pong, &v)))
            fail("chan_recv", rc);
        sum += v;
    }
    return sum;
}

static void *pinger_task(void *arg)
{
    struct pingpong *pp = arg;
    long long *sum = malloc(sizeof *sum);
    if (!sum)
        fail("malloc", ENOMEM);
    *sum = pinger(pp);
    return sum;
}

/* Both parties as pool tasks (--w3-tasks), or the main thread asking. */
static bool w3_tasks;

static long long w3_pass(async_pool_t *pool, long n)
{
    struct pingpong pp = { chan_make(sizeof(int64_t), 0), chan_make(sizeof(int64_t), 0), n };
    if (!pp.ping || !pp.pong)
        fail("chan_make", errno);
    future_t *f = spawn(pool, ponger, &pp);
    long long sum;
    if (w3_tasks) {
        future_t *g = spawn(pool, pinger_task, &pp);
        /* A finite deadline: a wait without one would run the pending
         * pinger inline on the main thread, and the pair would be main and
         * a task again (W3), not two tasks. */
        void *rv = NULL;
        int grc = future_get_until(g, &rv, async_now() + 3600 * ASYNC_SECOND);
        if (grc)
            fail("future_get_until", grc);
        long long *r = rv;
        sum = *r;
        free(r);
        future_free(g);
    } else {
        sum = pinger(&pp);
    }
    intptr_t rc = get_int(f);
    if (rc)
        fail("ponger", (int)rc);
    future_free(f);
    chan_free(pp.ping);
    chan_free(pp.pong);
    return sum;
}

/* The floor under W3: two plain threads hand a counter back and forth
 * through two cache lines, spinning, n round trips; ns per round trip.
 * No design that runs the asking and the answering side on two threads can
 * beat it on this machine: each round trip moves both lines between cores
 * twice. (Go's W3 runs both goroutines on one P, and pays none of it.) */
struct handoff {
    _Alignas(64) atomic_long ask;
    _Alignas(64) atomic_long answer;
    long n;
};

static void spin_until(atomic_long *x, long v)
{
    for (unsigned spins = 0; atomic_load_explicit(x, memory_order_acquire) != v; spins++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ volatile("yield");
#endif
        if (spins >= 100000) {   /* one CPU, or a preempted partner */
            sched_yield();
            spins = 0;
        }
    }
}

static void *handoff_answer(void *arg)
{
    struct handoff *h = arg;
    for (long i = 1; i <= h->n; i++) {
        spin_until(&h->ask, i);
        atomic_store_explicit(&h->answer, i, memory_order_release);
    }
    return NULL;
}

static double handoff_floor_ns(long n)
{
    static struct handoff h;
    atomic_store(&h.ask, 0);
    atomic_store(&h.answer, 0);
    h.n = n;
    pthread_t t;
    int rc = pthread_create(&t, NULL, handoff_answer, &h);
    if (rc)
        fail("pthread_create", rc);
    uint64_t t0 = now_ns();
    for (long i = 1; i <= n; i++) {
        atomic_store_explicit(&h.ask, i, memory_order_release);
        spin_until(&h.answer, i);
    }
    uint64_t t1 = now_ns();
    pthread_join(t, NULL);
    return (double)(t1 - t0) / (double)n;
}

/* W3 (main thread + task) or W3T (two tasks). */
static void w3_run(const char *name, bool tasks)
{
    w3_tasks = tasks;
    const long n = 200000;
    async_pool_t *pool = make_pool(opt_threads, 0);
    w3_pass(pool, n / 10);
    uint64_t t0 = now_ns();
    long long sum = w3_pass(pool, n);
    uint64_t t1 = now_ns();
    check(name, sum, (long long)n * (n + 1) / 2);
    char extra[200];
    int len = snprintf(extra, sizeof extra, "threads=%u threads_reached=%u parties=%s",
                       opt_threads, peak_threads(pool), tasks ? "task+task" : "main+task");
    destroy_pool(pool, ASYNC_DRAIN);
    if (!tasks)   /* after the pool's workers are gone: the two threads alone */
        snprintf(extra + len, sizeof extra - (size_t)len, " handoff_floor_ns=%.1f",
                 handoff_floor_ns(n));
    report(name, n, (double)(t1 - t0) / (double)n, extra);
}

static void w3(void)
{
    w3_run(w3_tasks ? "W3T" : "W3", w3_tasks);
}

static void w3t(void)
{
    w3_run("W3T", true);
}

/* ---------------------------------------------------------------- W4 */

static async_pool_t *fib_pool;

static void *fib_task(void *arg)
{
    intptr_t n = (intptr_t)arg;
    if (n < 2)
        return (void *)n;
    future_t *f = spawn(fib_pool, fib_task, (void *)(n - 1));
    intptr_t b = (intptr_t)fib_task((void *)(n - 2));
    intptr_t a = get_int(f);
    future_free(f);
    return (void *)(a + b);
}

/* The root runs on the pool; the main thread only waits (finite deadline). */
static intptr_t fib_root(int n)
{
    future_t *f = spawn(fib_pool, fib_task, (void *)(intptr_t)n);
    void *r = NULL;
    int rc = future_get_until(f, &r, async_now() + 600 * ASYNC_SECOND);
    if (rc)
        fail("future_get_until(fib root)", rc);
    future_free(f);
    return (intptr_t)r;
}

static long fib_plain(int n)
{
    return n < 2 ? n : fib_plain(n - 1) + fib_plain(n - 2);
}

/* Calls with n >= 2 spawn one task each: F(n+1) - 1 of them. */
static long fib_spawns(int n)
{
    long a = 0, b = 1;
    for (int i = 0; i < n + 1; i++) {
        long t = a + b;
        a = b;
        b = t;
    }
    return a - 1;
}

static void w4(void)
{
    const int n = 27;
    fib_pool = make_pool(opt_threads, 0);
    check("W4 warm-up", fib_root(20), fib_plain(20));
    uint64_t t0 = now_ns();
    intptr_t r = fib_root(n);
    uint64_t t1 = now_ns();
    check("W4", r, fib_plain(n));
    long spawns = fib_spawns(n);
    char extra[160];
    snprintf(extra, sizeof extra, "tasks=%ld total_ms=%.1f threads=%u threads_reached=%u",
             spawns, (double)(t1 - t0) / 1e6, opt_threads, peak_threads(fib_pool));
    destroy_pool(fib_pool, ASYNC_DRAIN);
    report("W4", n, (double)(t1 - t0) / (double)spawns, extra);
}

/* ---------------------------------------------------------------- W5 */

struct filter {
    chan_t *in, *out;
    int     prime;
};

/* Sends 2, 3, 4, ... until its send fails (cancelled, or closed). */
static void *generate(void *arg)
{
    chan_t *out = arg;
    for (int i = 2;; i++)
        if (chan_send(out, &i))
            return NULL;
}

/* Passes on what its prime does not divide, until a channel call fails. */
static void *filter(void *arg)
{
    struct filter *fl = arg;
    for (;;) {
        int i;
        if (chan_recv(fl->in, &i))
            return NULL;
        if (i % fl->prime != 0 && chan_send(fl->out, &i))
            return NULL;
    }
}

/* What one sieve run owns, so that it can be ended and freed. */
struct sieve {
    chan_t        **chans;    /* nprimes + 1 */
    struct filter  *filters;  /* nprimes */
    future_t      **tasks;    /* generator + nprimes filters */
    int             nchans, ntasks;
};

static chan_t *sieve_chan(struct sieve *s)
{
    chan_t *c = chan_make(sizeof(int), 0);
    if (!c)
        fail("chan_make", errno);
    s->chans[s->nchans++] = c;
    return c;
}

/* The classic sieve; returns the last prime received. */
static int sieve_run(async_pool_t *pool, struct sieve *s, int nprimes)
{
    s->chans = calloc((size_t)nprimes + 1, sizeof *s->chans);
    s->filters = calloc((size_t)nprimes, sizeof *s->filters);
    s->tasks = calloc((size_t)nprimes + 1, sizeof *s->tasks);
    if (!s->chans || !s->filters || !s->tasks)
        fail("calloc", ENOMEM);
    chan_t *ch = sieve_chan(s);
    s->tasks[s->ntasks++] = spawn(pool, generate, ch);
    int last = 0;
    for (int i = 0; i < nprimes; i++) {
        int rc = chan_recv(ch, &last);
        if (rc)
            fail("chan_recv", rc);
        struct filter *fl = &s->filters[i];
        *fl = (struct filter){ ch, sieve_chan(s), last };
        s->tasks[s->ntasks++] = spawn(pool, filter, fl);
        ch = fl->out;
    }
    return last;
}

/* After the pool's destroy (or a cancel of every task): every task must be
 * done; free everything. */
static void sieve_free(struct sieve *s)
{
    for (int i = 0; i < s->ntasks; i++) {
        if (!future_done(s->tasks[i])) {
            fprintf(stderr, "bench: W5: a sieve task outlived its pool\n");
            exit(1);
        }
        future_free(s->tasks[i]);
    }
    for (int i = 0; i < s->nchans; i++)
        chan_free(s->chans[i]);
    free(s->chans);
    free(s->filters);
    free(s->tasks);
}

static long w5_os_threads;

/* One sieve on its own pool, ended by an ASYNC_CANCEL destroy. */
static int sieve_pass(int nprimes, uint64_t *ns, double *teardown_ms, unsigned *reached)
{
    async_pool_t *pool = make_pool(opt_threads, 0);
    struct sieve s = { 0 };
    uint64_t t0 = now_ns();
    int last = sieve_run(pool, &s, nprimes);
    uint64_t t1 = now_ns();
    *reached = peak_threads(pool);
    w5_os_threads = os_threads();
    destroy_pool(pool, ASYNC_CANCEL);
    uint64_t t2 = now_ns();
    sieve_free(&s);
    *ns = t1 - t0;
    *teardown_ms = (double)(t2 - t1) / 1e6;
    return last;
}

static void w5(void)
{
    const int n = 1000;
    uint64_t ns;
    double teardown;
    unsigned reached;
    check("W5 warm-up", sieve_pass(100, &ns, &teardown, &reached), 541);
    int last = sieve_pass(n, &ns, &teardown, &reached);
    check("W5", last, 7919);
    char extra[192];
    snprintf(extra, sizeof extra,
             "total_ms=%.1f threads=%u threads_reached=%u os_threads=%ld teardown_ms=%.1f",
             (double)ns / 1e6, opt_threads, reached, w5_os_threads, teardown);
    report("W5", n, (double)ns / n, extra);
}

/* ---------------------------------------------------------------- W6 */

/* The gate that holds both workers, outside the library. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t  gate_cv = PTHREAD_COND_INITIALIZER;
static int             gate_inside;
static bool            gate_open;

static void *held(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate_mu);
    gate_inside++;
    pthread_cond_broadcast(&gate_cv);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    return NULL;
}

static void w6(void)
{
    const long n = 1000000;
    async_pool_t *pool = make_pool(2, 2);
    future_t *blockers[2] = { spawn(pool, held, NULL), spawn(pool, held, NULL) };
    pthread_mutex_lock(&gate_mu);
    while (gate_inside < 2)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);

    future_t **fs = malloc((size_t)n * sizeof *fs);
    if (!fs)
        fail("malloc", ENOMEM);
    memset(fs, 0, (size_t)n * sizeof *fs);   /* touched: part of the baseline */
    long base = rss_now_kb();
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        fs[i] = spawn(pool, plus_one, (void *)(intptr_t)i);
    uint64_t t1 = now_ns();
    long peak = rss_peak_kb();
    async_pool_stats_t st;
    size_t queued = async_pool_stats(pool, &st) == 0 ? st.queued : 0;

    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    long long sum = 0;
    for (long i = 0; i < n; i++) {
        sum += get_int(fs[i]);
        future_free(fs[i]);
    }
    for (int i = 0; i < 2; i++) {
        get_int(blockers[i]);
        future_free(blockers[i]);
    }
    check("W6", sum, (long long)n * (n + 1) / 2);
    unsigned reached = peak_threads(pool);
    destroy_pool(pool, ASYNC_DRAIN);
    free(fs);
    char extra[256];
    snprintf(extra, sizeof extra,
             "bytes_per_task=%.1f raw_bytes_per_task=%.1f base_rss_kb=%ld peak_rss_kb=%ld "
             "queued=%zu threads=2 threads_reached=%u",
             (double)(peak - base) * 1024.0 / (double)n, (double)peak * 1024.0 / (double)n,
             base, peak, queued, reached);
    report("W6", n, (double)(t1 - t0) / (double)n, extra);
}

/* ---------------------------------------------------------------- W7 */

struct w7 {
    chan_t     *c, *res;
    atomic_long started;
};

static void *w7_task(void *arg)
{
    struct w7 *w = arg;
    atomic_fetch_add_explicit(&w->started, 1, memory_order_relaxed);
    int64_t v;
    int rc = chan_recv(w->c, &v);
    if (rc)
        fail("W7 chan_recv", rc);
    v++;
    if ((rc = chan_send(w->res, &v)))
        fail("W7 chan_send", rc);
    return NULL;
}

static void w7(void)
{
    const long n = 100000;
    async_pool_t *pool = make_pool(opt_threads, 0);
    struct w7 w = { chan_make(sizeof(int64_t), 0), chan_make(sizeof(int64_t), (size_t)n), 0 };
    if (!w.c || !w.res)
        fail("chan_make", errno);
    long base = rss_now_kb();
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        future_free(spawn(pool, w7_task, &w));
    while (atomic_load_explicit(&w.started, memory_order_relaxed) < n) {
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
    }
    long peak = rss_peak_kb();
    for (long i = 0; i < n; i++) {
        int64_t v = i;
        int rc = chan_send(w.c, &v);
        if (rc)
            fail("W7 chan_send", rc);
    }
    long long sum = 0;
    for (long i = 0; i < n; i++) {
        int64_t v;
        int rc = chan_recv(w.res, &v);
        if (rc)
            fail("W7 chan_recv", rc);
        sum += v;
    }
    uint64_t t1 = now_ns();
    long threads = os_threads();
    check("W7", sum, (long long)n * (n + 1) / 2);
    async_pool_stats_t st;
    size_t stacks = async_pool_stats(pool, &st) == 0 ? st.stacks : 0;
    unsigned reached = peak_threads(pool);
    destroy_pool(pool, ASYNC_DRAIN);
    chan_free(w.c);
    chan_free(w.res);
    char extra[256];
    snprintf(extra, sizeof extra,
             "total_ms=%.1f bytes_per_task=%.1f base_rss_kb=%ld peak_rss_kb=%ld "
             "threads=%u threads_reached=%u os_threads=%ld stacks=%zu",
             (double)(t1 - t0) / 1e6, (double)(peak - base) * 1024.0 / (double)n, base, peak,
             opt_threads, reached, threads, stacks);
    report("W7", n, (double)(t1 - t0) / (double)n, extra);
}

/* -------------------------------------------------------------- main */

static const struct {
    const char *name;
    void      (*run)(void);
} workloads[] = {
    { "W1", w1 }, { "W2", w2 }, { "W3", w3 }, { "W3T", w3t }, { "W4", w4 }, { "W5", w5 },
    { "W6", w6 }, { "W7", w7 },
};
#define NWORKLOADS (sizeof workloads / sizeof workloads[0])

static _Noreturn void usage(void)
{
    fprintf(stderr, "usage: bench [--threads N] [--workload W1..W7|W3T] [--peer NAME] [--w3-tasks]\n");
    exit(64);
}

/* Each workload in a fresh process (its own peak RSS, its own pools). */
static int run_all(void)
{
    int worst = 0;
    for (size_t i = 0; i < NWORKLOADS; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            fail("fork", errno);
        if (pid == 0) {
            workloads[i].run();
            exit(0);
        }
        int st;
        if (waitpid(pid, &st, 0) < 0)
            fail("waitpid", errno);
        int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (rc) {
            printf("peer=%s workload=%s status=FAIL_rc%d\n", opt_peer, workloads[i].name, rc);
            fflush(stdout);
            if (rc > worst)
                worst = rc;
        }
    }
    return worst;
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t < 1 || t > 4096)
                usage();
            opt_threads = (unsigned)t;
        } else if (strcmp(argv[i], "--workload") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--w3-tasks") == 0) {
            w3_tasks = true;
        } else if (strcmp(argv[i], "--peer") == 0 && i + 1 < argc) {
            opt_peer = argv[++i];
        } else {
            usage();
        }
    }
    if (!only)
        return run_all();
    for (size_t i = 0; i < NWORKLOADS; i++)
        if (strcmp(only, workloads[i].name) == 0) {
            workloads[i].run();
            return 0;
        }
    usage();
}
