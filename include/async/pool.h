/*
 * async/pool.h — thread pools.
 *
 * A pool runs tasks (see async/future.h) on worker threads. Each worker owns a
 * work-stealing deque for the tasks it submits; submissions from other threads
 * enter a shared injection queue; idle workers steal, then park.
 *
 * Goroutine mode (the default): tasks run M:N, as Go's goroutines do. A task
 * that blocks in the library (a channel operation, chan_select, future_get or
 * future_wait_* on a running task, async_sleep) parks on a stack of its own,
 * and its worker runs other tasks; waking it makes it runnable, and any
 * worker of the pool may resume it — so it may resume on another thread.
 * Tasks that never block run on their worker's current stack and cost no
 * switch. Stacks (stack_size, 256 KiB by default) are reserved in large
 * slabs and committed only as they are touched: 100,000 parked tasks cost a
 * few kilobytes each. Finished tasks' stacks are reused; what a burst of
 * parked tasks touched goes back to the kernel (MADV_DONTNEED) once a
 * worker has found nothing to do for 10 ms, or the pool is destroyed,
 * keeping a few hundred stacks warm (a pool that never idles gives back,
 * all but those, the stacks that stayed free a whole second; it keeps what
 * a burst frees until the burst is over). An overflow hits a guard page or
 * a canary checked at every switch, and aborts with a message; it never
 * corrupts silently.
 * Timers of parked tasks live in a heap on the pool, not in threads.
 *
 *   Migration hazard: a blocking call may return on another thread. The
 *   library's own state follows the task, but code that keeps thread-local
 *   state across a blocking call does not: thread-local variables, pthread
 *   keys, thread affinity, locks that must be unlocked by the thread that
 *   took them (a pthread mutex held across a blocking call is a bug in any
 *   mode). errno is thread-local too, and since glibc declares
 *   __errno_location() `const`, a compiler may reuse errno's address across a
 *   call that migrated: read errno before a blocking call, not after one.
 *   Such code runs on a thread-mode pool.
 *
 * Thread mode (stack_size ASYNC_STACK_THREAD): a task that blocks holds its
 * worker thread. Such a worker is counted as blocked, and when every worker
 * is blocked while work is queued the pool starts a replacement, up to
 * max_threads. At that cap it writes one line through its log hook:
 * "pool NAME: saturated: N workers blocked, M tasks queued" (every log line
 * starts by naming the pool, and its task where there is one: see README,
 * "What it logs"). Replacement workers that stay idle for a few seconds
 * exit. Apart from replacements a pool never runs more
 * than `threads` tasks at once; threads that run a task inline while waiting
 * for it (see future_get) are not counted. Threads that are not workers
 * (main) always block as in thread mode; but in goroutine mode such a
 * thread that woke a parked task over a channel and then waits on a
 * channel or a select with no deadline may resume that task itself, until
 * it blocks again, yields or returns (so a ping-pong between main and a
 * task stays on one core; see README, "What is not supported, and why").
 *
 * The default pool is created on first use (async_run, async_default_pool),
 * sized by $ASYNC_THREADS or else the number of CPUs the process may use: the
 * smaller of its affinity mask (taskset, cpusets) and its cgroup v2 CPU quota
 * (cpu.max, rounded up), so that a container limited to 2 CPUs gets 2
 * workers. A bad $ASYNC_THREADS (0, negative, not a number, above 4096) falls
 * back to that count with one warning line on stderr: "libasync: ignoring
 * ASYNC_THREADS=...". A program may return from main with
 * tasks in flight, as in Go: the default pool adds no exit-time wait.
 *
 * Not supported: fork() while a pool has live workers (the child has none of
 * the workers; use the pools only in the parent, or before any is created).
 */
#ifndef ASYNC_POOL_H
#define ASYNC_POOL_H

#include <async/common.h>

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct async_pool async_pool_t;

/* stack_size for thread mode: a task that blocks holds its thread. */
#define ASYNC_STACK_THREAD ((size_t)-1)

typedef struct async_pool_config {
    unsigned    threads;      /* 0: $ASYNC_THREADS, else the number of online CPUs */
    unsigned    max_threads;  /* cap with replacements for blocked workers; 0: 10,000 as Go's */
    const char *name;         /* thread-name prefix seen in debuggers; NULL: "async" */
    void      (*log)(void *ctx, const char *line);   /* panic lines; NULL: stderr */
    void       *log_ctx;
    size_t      stack_size;   /* goroutine mode's task stacks: 0 the default
                                 ($ASYNC_STACK_SIZE, else 256 KiB), or a size
                                 in bytes (16 KiB .. 1 GiB, rounded up to
                                 pages); ASYNC_STACK_THREAD: thread mode */
} async_pool_config_t;

typedef enum async_shutdown {
    ASYNC_DRAIN,    /* run everything already queued, then stop */
    ASYNC_CANCEL,   /* queued tasks are cancelled (ECANCELED); running ones as by future_cancel */
} async_shutdown_t;

typedef struct async_pool_stats {
    unsigned threads;        /* workers alive now, replacements included */
    unsigned peak_threads;   /* most workers alive at once */
    unsigned blocked;        /* workers blocked in library calls now */
    unsigned idle;           /* workers parked with nothing to do */
    size_t   queued;         /* tasks submitted and not yet started */
    uint64_t submitted, succeeded, failed, cancelled, stolen;
    size_t   parked;         /* tasks parked on their own stack (goroutine mode) */
    size_t   stacks;         /* task stacks the pool holds: running, parked or cached */
} async_pool_stats_t;

/*
 * async_pool_create — start a pool.
 *   config:        NULL for every default. The name is copied (truncated to
 *                  fit a thread name); log and log_ctx are kept. The log hook
 *                  may be called from any worker, concurrently, and must not
 *                  call back into the pool.
 *   Blocks:        no (starts `threads` workers and returns).
 *   Thread-safety: any thread.
 *   Ownership:     the caller owns the pool and ends it with async_pool_destroy.
 *   Returns:       the pool, or NULL with errno: EINVAL (max_threads below
 *                  the resolved thread count, or above 10,000 threads; a
 *                  stack_size below 16 KiB or above 1 GiB),
 *                  ENOMEM, EAGAIN (not a single worker thread could be started;
 *                  when some but not all start, the pool runs with those).
 */
ASYNC_API async_pool_t *async_pool_create(const async_pool_config_t *config);

/*
 * async_pool_destroy — stop a pool and free it.
 *   how:           ASYNC_DRAIN runs everything queued (work submitted by the
 *                  pool's own tasks meanwhile is accepted and runs) then stops;
 *                  ASYNC_CANCEL cancels every queued task (its future gets
 *                  ECANCELED) and asks the running ones to stop, as
 *                  future_cancel does, waking their blocked calls (a task
 *                  that a waiter claimed to run inline before the destroy
 *                  reached it counts as running: it runs, and sees
 *                  async_cancelled()).
 *                  Once destroy has begun, submissions from any thread other
 *                  than the pool's own tasks (and, when cancelling, from
 *                  anyone) fail with ECANCELED.
 *   Blocks:        until every worker has exited and every task of the pool,
 *                  including those run inline by other threads, is done.
 *                  After it returns every future the pool ever returned is
 *                  done; handles stay valid until future_free.
 *   Thread-safety: once per pool; not from one of the pool's own tasks.
 *   Returns:       0; EINVAL (NULL pool, or an invalid how); EDEADLK when
 *                  called from one of the pool's own tasks (nothing happens).
 *                  A pool already destroyed is misuse: this call and
 *                  async_pool_stats abort with a message naming the call and
 *                  the pool (best effort in release builds, where the memory
 *                  is gone; always in the checked build, -Dchecks, which also
 *                  catches a submission to it).
 */
ASYNC_API int async_pool_destroy(async_pool_t *pool, async_shutdown_t how);

/*
 * async_default_pool — the process-wide default pool, created on first use.
 *   Blocks:        only the first call, while it starts the workers; calls
 *                  racing with it wait for it and get the same pool.
 *   Thread-safety: any thread; concurrent first calls create one pool.
 *                  Not concurrently with async_shutdown (see there).
 *   Ownership:     the library owns the pool: never pass it to
 *                  async_pool_destroy; async_shutdown destroys it.
 *   Returns:       the pool, or NULL with errno: ENOMEM; EAGAIN (not a single
 *                  worker thread could be started). A failed creation is
 *                  tried again by the next call.
 */
ASYNC_API async_pool_t *async_default_pool(void);

/*
 * async_shutdown — destroy the default pool (if one exists) as
 *                  async_pool_destroy(pool, how) does; the next use of the
 *                  default pool creates a new one.
 *   Blocks:        as async_pool_destroy.
 *   Thread-safety: while it drains, the pool's own tasks may still submit
 *                  (async_run reaches the draining pool). Other threads must
 *                  not use the default pool (async_run, async_default_pool,
 *                  async_pool_stats(NULL)...) while async_shutdown runs: a
 *                  call racing with its end may touch the pool as it is
 *                  freed (guarding every submission against that would put
 *                  a shared atomic on the hot path). Calls made after it has
 *                  returned are fine: they create a new default pool.
 *   Returns:       0 (also when there was no default pool), or the error of
 *                  async_pool_destroy (EDEADLK from one of its own tasks).
 */
ASYNC_API int async_shutdown(async_shutdown_t how);

/*
 * async_pool_stats — a snapshot of the pool's counters.
 *   pool:          NULL: the default pool (created if need be).
 *   Blocks:        no. Counters are kept per worker and summed here, so the
 *                  snapshot is not atomic across fields: under load, queued is
 *                  an estimate; once the pool is quiet every field is exact.
 *                  Every snapshot agrees with itself all the same:
 *                  peak_threads >= threads, blocked <= threads,
 *                  idle <= threads, queued <= submitted (never wrapped).
 *   Thread-safety: any thread, pool tasks included, while the pool lives
 *                  (not concurrently with its destroy, nor with
 *                  async_shutdown for the default pool).
 *   Ownership:     *out is the caller's; it is written only when 0 is
 *                  returned.
 *   Returns:       0; EINVAL (out NULL); ENOMEM or EAGAIN (pool NULL and the
 *                  default pool could not be created).
 */
ASYNC_API int async_pool_stats(async_pool_t *pool, async_pool_stats_t *out);

/*
 * async_dump — write every live pool, its workers and its unfinished tasks.
 *   out:           where to write (not NULL). The text, a line per item:
 *                    libasync dump: pid P, N pools, T tasks (...)
 *                    pool NAME mode goroutine|thread threads N idle N
 *                      blocked N peak N parked N queued N submitted N
 *                      succeeded N failed N cancelled N
 *                    pool NAME task 0xID fn SYMBOL state STATE [wait WAIT
 *                      for S deadline D]
 *                    libasync dump end
 *                  (each on one line). A task id is the address of its
 *                  record, the future_t * its submitter holds: unique among
 *                  unfinished tasks. SYMBOL is the task function's name
 *                  where dladdr(3) finds one (link the program with
 *                  -rdynamic for its own functions), else its address.
 *                  STATE is running, runnable, parked (goroutine mode),
 *                  blocked (a thread held) or queued (not started yet). WAIT is future 0xID, promise
 *                  0xID, any N (future_wait_any), chan 0xADDR send|recv,
 *                  select N (cases with a channel), sleep, or inline 0xID
 *                  (it runs that task on its own stack while waiting for
 *                  it); S how long it has waited, D how far its deadline is
 *                  (negative: passed) or none. See README, "Debugging".
 *   Blocks:        no: it stops no pool and waits for no task; it takes a
 *                  short internal lock that pool create and destroy take too.
 *                  The text is a snapshot taken while the pools run: a task
 *                  may have moved on by the time its line is written.
 *   Thread-safety: any thread, pool tasks included; not from a signal
 *                  handler (see async_dump_on_signal).
 *   Ownership:     out stays the caller's; it is written once and flushed.
 *   Returns:       0; EINVAL (out NULL); ENOMEM; EIO (writing out failed).
 */
ASYNC_API int async_dump(FILE *out);

/*
 * async_dump_on_signal — dump to stderr whenever signal signo arrives (Go's
 *                  SIGQUIT dump, opt-in).
 *   signo:         the signal (SIGQUIT, SIGUSR1...), or 0 to stop: the
 *                  handler that was there before is put back. Calling again
 *                  with another signal moves the dump to it (the first one's
 *                  old handler is put back).
 *   Blocks:        no. The handler only writes a byte to a pipe; a thread
 *                  that the first call starts (named "async-dump") reads it
 *                  and calls async_dump(stderr). Signals that arrive while a
 *                  dump is being written may be merged into it.
 *   Thread-safety: any thread; calls are serialised.
 *   Ownership:     the signal's disposition is the library's until 0 is
 *                  passed.
 *   Returns:       0; EINVAL (signo negative, not a signal, SIGKILL, SIGSTOP,
 *                  or a fault signal: SIGSEGV, SIGBUS, SIGFPE, SIGILL; or
 *                  one sigaction refuses); EAGAIN or ENOMEM (no pipe or
 *                  thread could be made).
 */
ASYNC_API int async_dump_on_signal(int signo);

#ifdef __cplusplus
}
#endif

#endif /* ASYNC_POOL_H */
