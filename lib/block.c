/*
 * lib/block.c — the one wait loop every blocking call goes through, and
 * sleeping and yielding.
 *
 * Owns: async__wait, async_sleep, async_sleep_until, async_yield, and the
 * spin policy of threads that wait.
 *
 * A waiter (wait.c) names its target, which decides how it waits:
 *
 * A fiber (a task on a goroutine-mode worker) parks: it marks itself
 * PARKING, re-checks (fired, cancelled, deadline passed), and switches away
 * (switch.c); the worker runs other work, and a wake makes the fiber runnable
 * again. Its deadline, if any, is a timer in its pool's heap (timer.c), not
 * a thread. The PARKING store and the read of `claim` that follows are both
 * seq_cst, against the taker's seq_cst CAS on `claim` and its later read of
 * the state (wait.c): either the taker sees PARKING/PARKED and wakes the
 * fiber, or the fiber sees itself claimed and does not park; it then waits
 * the few instructions until the taker fires it (async__waiter_await). Cancellation is the same pair with
 * the cancel flag (future.c) or the pool's phase (pool.c). A fiber that
 * finds no stack to switch to (out of memory) blocks its thread instead
 * (state TBLOCK), as in thread mode.
 *
 * A parker (any other thread) spins briefly, then parks the thread. It
 * spins while fewer threads than CPUs are already spinning here — a
 * hand-off between two running threads then costs no system call, and
 * spinners never outnumber the cores. The budget adapts per thread (as
 * adaptive mutexes do): a wait that ended within SPIN_MAX_NS raises it to
 * twice that wait, since spinning that long would have caught it; a longer
 * wait halves it. Two threads that hand work back and forth thus settle into
 * spinning (no system call per message), while a thread whose waits are long
 * stops burning its core. An untimed spin counts rounds instead of reading
 * the clock (a clock read costs as much as a dozen rounds on some virtual
 * machines, and a hand-off spins only a few dozen): each thread measures
 * how long a round takes on its first spin and every SPIN_CALIB spins
 * after, and converts its budget into rounds. A wait that parks reads the
 * clock around the park only, where a system call dwarfs it. A worker that
 * parks its thread tells the pool (async__block_enter), which may start a
 * replacement.
 *
 * A worker whose thread parks in either path still runs its pool's due
 * timers and parks no longer than the earliest: a timer may stand for a
 * future (async_after), and in thread mode every worker may be blocked.
 *
 * Neither path runs other tasks (future.c does that, before it waits).
 * async__wait_uncancellable is the same loop deaf to cancellation, for the
 * one wait that must outlast it (a scope's close waits for its tasks even
 * when the closing task is cancelled, scope.c).
 */
#include "sched_internal.h"

#include <sched.h>
#include <unistd.h>

#define SPIN_MIN_NS   (2 * ASYNC_MICROSECOND)
#define SPIN_START_NS (4 * ASYNC_MICROSECOND)
#define SPIN_MAX_NS   (50 * ASYNC_MICROSECOND)
#define SPIN_CALIB    4096   /* untimed spins between two measurements */
#define SPIN_CALIB_ROUNDS 128
#define SPIN_ROUND_MAX_PS 500000u   /* 500 ns: a pause is 140 cycles at most */
static _Atomic unsigned spinners;           /* threads spinning in a wait */
static _Atomic unsigned ncpu_cached;        /* 0 until first computed */


static unsigned ncpu(void)
{
    unsigned n = atomic_load_explicit(&ncpu_cached, memory_order_relaxed);
    if (n == 0) {
        long v = sysconf(_SC_NPROCESSORS_ONLN);
        n = v > 0 ? (unsigned)v : 1;
        atomic_store_explicit(&ncpu_cached, n, memory_order_relaxed);
    }
    return n;
}

/* A worker that parks its thread still serves its pool's timers (a timer
 * may stand for a future, compose.c, and every worker may be blocked): it
 * runs what is due and parks no longer than the earliest. A new earliest
 * timer unparks it (submit.c, async__pool_timer_add). */
static int64_t serve_timers(int64_t until)
{
    struct async_worker *w = async__tls_get()->worker;
    if (!w)
        return until;
    async__timers_run(w->pool);
    int64_t t = async__timers_next(w->pool);
    return t != ASYNC_FOREVER && (until == ASYNC_FOREVER || t < until) ? t : until;
}

/* ------------------------------------------------------- threads */

/* How a spin went: fired or not, and how long it took (ns). */
struct spin_out {
    bool    fired;
    int64_t ns;
};

/* Measure how long one spin round takes on this thread: SPIN_CALIB_ROUNDS
 * pauses, timed (about 5 us where a pause is slow, once per SPIN_CALIB
 * spins). */
static void calibrate(struct async_tls *t)
{
    int64_t start = async_now();
    for (unsigned i = 0; i < SPIN_CALIB_ROUNDS; i++)
        async__cpu_relax();
    int64_t ps = (async_now() - start) * 1000 / SPIN_CALIB_ROUNDS;
    /* A thread preempted while it measured would believe a round takes
     * milliseconds and stop spinning until the next measurement: no pause
     * takes more than SPIN_ROUND_MAX_PS. */
    t->spin_ps = ps < 1 ? 1 : ps > SPIN_ROUND_MAX_PS ? SPIN_ROUND_MAX_PS : (uint32_t)ps;
    t->spin_calib = SPIN_CALIB;
}

/* Spin until fired, the budget (ns) is spent or the deadline passes. With a
 * deadline it reads the clock every 64 rounds; else it counts rounds. */
static struct spin_out spin(struct async_waiter *w, struct async_tls *t, int64_t budget,
                            int64_t deadline)
{
    struct spin_out out = { false, 0 };
    unsigned n = ncpu();
    if (n < 2)
        return out;
    if (atomic_fetch_add_explicit(&spinners, 1, memory_order_relaxed) >= n) {
        atomic_fetch_sub_explicit(&spinners, 1, memory_order_relaxed);
        return out;
    }
    if (deadline != ASYNC_FOREVER) {
        int64_t start = async_now(), until = start + budget, now = start;
        if (deadline < until)
            until = deadline;
        for (unsigned i = 1;; i++) {
            if (atomic_load_explicit(&w->fired, memory_order_acquire)) {
                out.fired = true;
                now = async_now();
                break;
            }
            async__cpu_relax();
            if ((i & 63) == 0 && (now = async_now()) >= until)
                break;
        }
        out.ns = now - start;
    } else {
        if (t->spin_calib-- == 0 || t->spin_ps == 0)
            calibrate(t);
        uint64_t rounds = (uint64_t)budget * 1000 / t->spin_ps, i = 1;
        for (;; i++) {
            if (atomic_load_explicit(&w->fired, memory_order_acquire)) {
                out.fired = true;
                break;
            }
            if (i >= rounds)
                break;
            async__cpu_relax();
        }
        out.ns = (int64_t)(i * t->spin_ps / 1000);
    }
    atomic_fetch_sub_explicit(&spinners, 1, memory_order_relaxed);
    return out;
}

/* A wait that lasted d ns has been fired: adapt the spin budget. */
static void adapt_spin(struct async_tls *t, int64_t d)
{
    int64_t b = t->spin_ns;
    if (d <= SPIN_MAX_NS)
        b = b > 2 * d ? b : (2 * d < SPIN_MAX_NS ? 2 * d : SPIN_MAX_NS);
    else
        b = b / 2 > SPIN_MIN_NS ? b / 2 : SPIN_MIN_NS;
    t->spin_ns = b;
}

/* A wait in a channel operation or a select. */
static bool chan_wait(struct async_waiter *w)
{
    uint32_t k = atomic_load_explicit(&w->self->wait.kind, memory_order_relaxed);
    return k == ASYNC_W_CHAN || k == ASYNC_W_SELECT;
}

static int wait_thread(struct async_waiter *w, int64_t deadline, bool may_spin,
                       bool cancellable)
{
    struct async_parker *p = (struct async_parker *)w->target;
    struct async_tls *t = async__tls_get();
    int64_t spun = -1, parked = 0;   /* spun: the spin's ns; -1: no spin */
    /* A plain thread that woke a fiber and now waits on a channel runs that
     * fiber itself, if no worker has taken it yet (switch.c): the answer
     * then comes on this core. */
    while (t->gave && deadline == ASYNC_FOREVER && chan_wait(w) && async__host_run()) {
        t = async__tls_get();
        if (atomic_load_explicit(&w->fired, memory_order_acquire))
            return 0;
    }
    if (may_spin && !(cancellable && async__cancel_requested())) {
        struct spin_out s = spin(w, t, t->spin_ns ? t->spin_ns : SPIN_START_NS, deadline);
        if (s.fired) {
            adapt_spin(t, s.ns);
            return 0;
        }
        spun = s.ns;
        parked = async_now();
    }
    bool blocked = false;
    int rc;
    for (;;) {
        if (atomic_load_explicit(&w->fired, memory_order_seq_cst)) {
            rc = 0;
            break;
        }
        if (cancellable && async__cancel_requested()) {
            rc = ECANCELED;
            break;
        }
        if (async__deadline_passed(deadline)) {
            rc = ETIMEDOUT;
            break;
        }
        if (!blocked) {
            /* Count as blocked before the first park, then check again. */
            async__block_enter();
            blocked = true;
            continue;
        }
        int64_t until = deadline, retry = async__block_retry();
        if (retry != ASYNC_FOREVER && (until == ASYNC_FOREVER || retry < until))
            until = retry;
        async__park(p, serve_timers(until));
    }
    if (blocked)
        async__block_exit();
    if (spun >= 0 && rc == 0)
        adapt_spin(t, spun + (async_now() - parked));
    return rc;
}

/* -------------------------------------------------------- fibers */

/* No stack to switch to: wait on the worker's parker (state TBLOCK) until
 * a wake, the deadline or a cancellation; the caller then re-checks. */
static void tblock(struct async_fiber *self, int64_t deadline, bool cancellable)
{
    struct async_worker *wk = async__tls_get()->worker;
    /* a host's fiber (async__host_run) waits on the host's parker */
    struct async_parker *p = wk ? wk->parker : async__parker_self();
    self->tparker = p;
    uint32_t s = ASYNC_F_PARKING;
    if (!atomic_compare_exchange_strong_explicit(&self->state, &s, ASYNC_F_TBLOCK,
            memory_order_seq_cst, memory_order_seq_cst))
        return;   /* WOKEN already */
    async__block_enter();
    while (atomic_load_explicit(&self->state, memory_order_seq_cst) == ASYNC_F_TBLOCK) {
        if ((cancellable && async__cancel_requested()) || async__deadline_passed(deadline)) {
            s = ASYNC_F_TBLOCK;
            atomic_compare_exchange_strong_explicit(&self->state, &s, ASYNC_F_RUNNING,
                    memory_order_seq_cst, memory_order_seq_cst);
            break;
        }
        int64_t until = deadline, retry = async__block_retry();
        if (retry != ASYNC_FOREVER && (until == ASYNC_FOREVER || retry < until))
            until = retry;
        async__park(p, serve_timers(until));
    }
    async__block_exit();
}

static int wait_fiber(struct async_waiter *w, int64_t deadline, bool cancellable)
{
    struct async_fiber *self = (struct async_fiber *)(w->target & ~ASYNC_TARGET_FIBER);
    struct async_pool *pool = self->pool;
    struct async_timer tm = { .when = deadline, .target = w->target, .idx = ASYNC_NO_TIMER };
    bool timed = deadline == ASYNC_FOREVER;   /* nothing to time */
    bool timer_set = false;
    int rc;
    for (;;) {
        ASYNC_FIBER_SET(self, ASYNC_F_PARKING, memory_order_seq_cst);
        /* claim, not fired, is the partner of the PARKING store: a taker
         * claims (seq_cst CAS) before it reads our state to wake us, so the
         * fire itself may be a plain release store; once claimed, the fire
         * follows within a few instructions (async__waiter_await below) */
        if (atomic_load_explicit(&w->claim, memory_order_seq_cst)) {
            rc = 0;
            break;
        }
        if (cancellable && async__cancel_requested()) {
            rc = ECANCELED;
            break;
        }
        if (async__deadline_passed(deadline)) {
            rc = ETIMEDOUT;
            break;
        }
        if (!timed) {
            bool earliest = false;
            timer_set = async__timer_add(pool, &tm, &earliest) == 0;
            if (earliest)
                async__kick_idle(pool);   /* it may sleep past the new deadline */
            timed = true;
        }
        /* Without a timer (no memory for the heap) the deadline needs a
         * thread that sleeps until it. */
        if ((deadline != ASYNC_FOREVER && !timer_set) || !async__fiber_park(self))
            tblock(self, deadline, cancellable);
        /* resumed, or back from the thread's wait: look again */
    }
    ASYNC_FIBER_SET(self, ASYNC_F_RUNNING, memory_order_seq_cst);
    if (timer_set)
        async__timer_del(pool, &tm);
    if (rc == 0 && !atomic_load_explicit(&w->fired, memory_order_acquire))
        async__waiter_await(w);   /* claimed, the fire a few instructions away */
    return rc;
}

/* ----------------------------------------------------------- API */

/* The wait is over: the dump no longer shows it (async__wait_note). */
static int wait_over(struct async_waiter *w, int rc)
{
    atomic_store_explicit(&w->self->wait.kind, ASYNC_W_NONE, memory_order_relaxed);
    return rc;
}

int async__wait(struct async_waiter *w, int64_t deadline)
{
    if (w->target & ASYNC_TARGET_FIBER)
        return wait_over(w, wait_fiber(w, deadline, true));
    return wait_over(w, wait_thread(w, deadline, true, true));
}

int async__wait_uncancellable(struct async_waiter *w, int64_t deadline)
{
    if (w->target & ASYNC_TARGET_FIBER)
        return wait_over(w, wait_fiber(w, deadline, false));
    return wait_over(w, wait_thread(w, deadline, true, false));
}

int async_sleep_until(int64_t deadline)
{
    if (async__deadline_valid(deadline))
        return EINVAL;
    if (deadline == ASYNC_FOREVER && !async__current_task())
        return EINVAL;
    if (async__cancel_requested())
        return ECANCELED;
    if (async__deadline_passed(deadline))
        return 0;
    struct async_waiter w;
    if (async__waiter_init(&w) != 0) {
        /* No memory for a parker: sleep without one (signals may cut a
         * nanosleep short; loop to the deadline). */
        while (!async__deadline_passed(deadline)) {
            struct timespec ts = async__timespec(deadline);
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
        return 0;
    }
    /* Nobody fires this waiter: it ends by deadline or cancellation. */
    async__wait_note(&w, ASYNC_W_SLEEP, NULL, 0, deadline);
    int rc = wait_over(&w, (w.target & ASYNC_TARGET_FIBER) ? wait_fiber(&w, deadline, true)
                                                       : wait_thread(&w, deadline, false, true));
    return rc == ETIMEDOUT ? 0 : rc;
}

void async_sleep(int64_t ns)
{
    if (ns <= 0)
        return;
    (void)async_sleep_until(async__deadline_after(ns));
}

void async_yield(void)
{
    struct async_fiber *self = async__fiber_self();
    if (self->is_stack && async__fiber_yield(self))
        return;
    sched_yield();
}
