/*
 * lib/watch.c — the dumps nobody calls async_dump for: the signal dump and
 * the watchdog that reports a pool making no progress.
 *
 * Owns: the signal dump's pipe, handler and thread (sig_lock), and each
 * pool's watchdog thread (its fields in struct async_pool: immutable after
 * create, but wd_stop, atomic). Calls dump.c, never the other way round;
 * pool.c starts a pool's watchdog once the pool is listed and stops it
 * before the pool leaves the list.
 *
 * The signal dump (Go's SIGQUIT): the handler only writes one byte to a
 * pipe (async-signal-safe; non-blocking, so a flood of signals drops bytes
 * rather than blocking the handler); a thread started on first use reads it
 * and dumps to stderr. Rejected: dumping in the handler (dladdr, stdio and
 * malloc are not async-signal-safe).
 *
 * The watchdog. With $ASYNC_WATCHDOG=N (seconds, read at pool create), a
 * thread per pool samples it every min(N/4, 1 s): the pool is stuck when no
 * worker runs or looks for work, nothing is queued or runnable, its timer
 * heap is empty, at least one of its tasks waits and none waits with a
 * deadline (a thread-mode wait with a deadline is a timer too, one that is
 * not in the heap) and none runs (dump.c's async__dump_sample). When it has
 * been stuck for N seconds with no counter moving and no wait changing (a
 * task that woke and blocked again between two samples changes its wait's
 * start), it logs one line, "pool NAME: no progress for N s: ...", followed
 * by the dump of that pool, through the pool's log hook; then nothing more
 * until it makes progress. Unset, there is no thread and no cost.
 *
 * Locks: sig_lock, a leaf. No lock is held while a dump is written.
 */
#include "sched_internal.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------- signal dump */

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int             sig_pipe[2] = { -1, -1 };   /* guarded by sig_lock; set once */
static int             sig_now;                    /* guarded by sig_lock */
static struct sigaction sig_prev;                  /* guarded by sig_lock */
static _Atomic int     sig_wfd = -1;               /* the handler's copy */

static void on_signal(int signo)
{
    (void)signo;
    int e = errno;
    char b = 1;
    ssize_t r = write(atomic_load_explicit(&sig_wfd, memory_order_relaxed), &b, 1);
    (void)r;   /* full pipe: a dump is on its way already */
    errno = e;
}

static void *sig_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        char b[64];
        ssize_t r = read(fd, b, sizeof b);
        if (r > 0)
            (void)async_dump(stderr);
        else if (r == 0 || errno != EINTR)
            return NULL;
    }
}

/* The pipe and the thread that reads it, once; under sig_lock. */
static int sig_start(void)
{
    if (sig_pipe[0] >= 0)
        return 0;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return errno == ENFILE || errno == EMFILE ? EAGAIN : ENOMEM;
    int fl = fcntl(fds[1], F_GETFL);
    if (fl < 0 || fcntl(fds[1], F_SETFL, fl | O_NONBLOCK) != 0) {
        close(fds[0]);
        close(fds[1]);
        return EAGAIN;
    }
    pthread_t t;
    int rc = async__thread_create(&t, sig_main, (void *)(intptr_t)fds[0]);
    if (rc) {
        close(fds[0]);
        close(fds[1]);
        return rc;
    }
    pthread_setname_np(t, "async-dump");
    pthread_detach(t);
    sig_pipe[0] = fds[0];
    sig_pipe[1] = fds[1];
    atomic_store(&sig_wfd, fds[1]);
    return 0;
}

static bool sig_refused(int signo)
{
    /* untrappable, or a fault whose handler returning would fault again */
    return signo < 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP ||
           signo == SIGSEGV || signo == SIGBUS || signo == SIGFPE || signo == SIGILL;
}

int async_dump_on_signal(int signo)
{
    if (sig_refused(signo))
        return EINVAL;
    ASYNC_CHECK(pthread_mutex_lock(&sig_lock));
    int rc = 0;
    if (signo != sig_now && signo != 0)
        rc = sig_start();
    if (rc == 0 && signo != sig_now && signo != 0) {
        struct sigaction sa, prev;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(signo, &sa, &prev) != 0) {
            rc = errno;
        } else {
            if (sig_now)
                sigaction(sig_now, &sig_prev, NULL);
            sig_prev = prev;
            sig_now = signo;
        }
    } else if (rc == 0 && signo == 0 && sig_now) {
        sigaction(sig_now, &sig_prev, NULL);
        sig_now = 0;
    }
    ASYNC_CHECK(pthread_mutex_unlock(&sig_lock));
    return rc;
}

/* ----------------------------------------------------------- watchdog */

/* $ASYNC_WATCHDOG in ns: a positive number of seconds; 0 when unset or bad
 * (a bad value is said once on stderr). */
static int64_t env_watchdog(void)
{
    static _Atomic bool warned;
    const char *e = getenv("ASYNC_WATCHDOG");
    if (!e || !*e)
        return 0;
    char *end;
    errno = 0;
    double v = strtod(e, &end);
    if (errno == 0 && *end == '\0' && v > 0 && v <= 1e6)
        return (int64_t)(v * 1e9) > 0 ? (int64_t)(v * 1e9) : 1;
    if (!atomic_exchange(&warned, true))
        fprintf(stderr, "libasync: ignoring ASYNC_WATCHDOG=\"%s\" (want seconds, "
                "a positive number)\n", e);
    return 0;
}

static void *wd_main(void *arg)
{
    struct async_pool *pool = arg;
    int64_t limit = pool->watchdog_ns;
    int64_t period = limit / 4 < ASYNC_SECOND ? limit / 4 : ASYNC_SECOND;
    if (period < ASYNC_MILLISECOND)
        period = ASYNC_MILLISECOND;
    uint64_t last = 0;
    int64_t since = 0;
    bool reported = false;
    while (!atomic_load_explicit(&pool->wd_stop, memory_order_acquire)) {
        async__park(pool->wd_parker, async_now() + period);
        uint64_t sig;
        size_t waiting;
        bool stuck = async__dump_sample(pool, &sig, &waiting);
        int64_t now = async_now();
        if (!stuck) {
            since = 0;
            reported = false;
            continue;
        }
        if (!since || sig != last) {   /* stuck from now on, as far as we know */
            since = now;
            last = sig;
            reported = false;
            continue;
        }
        if (!reported && now - since >= limit) {
            async__dump_report(pool, now - since, waiting);
            reported = true;
        }
    }
    return NULL;
}

void async__watchdog_start(struct async_pool *pool)
{
    pool->watchdog_ns = env_watchdog();
    if (!pool->watchdog_ns || !(pool->wd_parker = async__parker_new()))
        return;
    atomic_init(&pool->wd_stop, false);
    if (async__thread_create(&pool->wd_thread, wd_main, pool) != 0) {
        async__parker_put(pool->wd_parker);
        pool->wd_parker = NULL;
        return;
    }
    char name[16];
    snprintf(name, sizeof name, "%.9s-wdog", pool->h.name);
    pthread_setname_np(pool->wd_thread, name);
}

void async__watchdog_stop(struct async_pool *pool)
{
    if (!pool->wd_parker)
        return;
    atomic_store_explicit(&pool->wd_stop, true, memory_order_release);
    async__unpark(pool->wd_parker);
    ASYNC_CHECK(pthread_join(pool->wd_thread, NULL));
    async__parker_put(pool->wd_parker);
    pool->wd_parker = NULL;
}
