/*
 * lib/deadline.c — callbacks at deadlines, served by one thread.
 *
 * Owns: a min-heap of struct async_deadline (embedded in their owners, e.g.
 * a scope) and the thread that sleeps until the earliest, takes it out of
 * the heap and calls its `fire` with no lock held. The thread starts with
 * the first entry and exits after DL_LINGER with an empty heap, so a
 * process that uses no deadline has no such thread.
 *
 * Why a thread and not the pools' timer heaps (timer.c): those wake parked
 * fibers only, and are served by a pool's workers, all of which may be
 * blocked in thread mode; a scope's deadline must fire whatever its pool
 * does. One thread serves every entry, so the cost is a heap entry per
 * deadline, never a thread per deadline. Rejected: a watchdog task per
 * scope (a thread per scope in thread mode).
 *
 * Invariants (under dl_lock): heap[0..n) is a min-heap on `when`;
 * heap[i]->idx == i; an entry not in the heap has idx == ASYNC_DL_NONE.
 * An entry is fired at most once, and never after async__deadline_del
 * returned true for it (both take it out under dl_lock; whoever does owns
 * what the entry stands for, e.g. the owner's reference).
 * Locks: dl_lock is a leaf; fire runs unlocked.
 */
#include "internal.h"

#include <string.h>

#define DL_LINGER ASYNC_SECOND   /* the thread's life with nothing to serve */

static pthread_mutex_t          dl_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t           dl_cond;        /* CLOCK_MONOTONIC; set once */
static pthread_once_t           dl_once = PTHREAD_ONCE_INIT;
static struct async_deadline  **heap;           /* guarded by dl_lock */
static size_t                   n, cap;         /* guarded by dl_lock */
static bool                     running;        /* guarded by dl_lock */

static void dl_init(void)
{
    pthread_condattr_t a;
    ASYNC_CHECK(pthread_condattr_init(&a));
    ASYNC_CHECK(pthread_condattr_setclock(&a, CLOCK_MONOTONIC));
    ASYNC_CHECK(pthread_cond_init(&dl_cond, &a));
    ASYNC_CHECK(pthread_condattr_destroy(&a));
}

static void place(size_t i, struct async_deadline *d)
{
    heap[i] = d;
    d->idx = i;
}

/* Move heap[i] up or down to its place. */
static void sift(size_t i)
{
    struct async_deadline *d = heap[i];
    while (i > 0 && heap[(i - 1) / 2]->when > d->when) {
        place(i, heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap[c + 1]->when < heap[c]->when)
            c++;
        if (d->when <= heap[c]->when)
            break;
        place(i, heap[c]);
        i = c;
    }
    place(i, d);
}

static void remove_locked(struct async_deadline *d)
{
    size_t i = d->idx, last = --n;
    d->idx = ASYNC_DL_NONE;
    if (i != last) {
        place(i, heap[last]);
        sift(i);
    }
}

static void wait_until(int64_t deadline)
{
    struct timespec ts = async__timespec(deadline);
    int rc = pthread_cond_timedwait(&dl_cond, &dl_lock, &ts);
    if (rc != 0 && rc != ETIMEDOUT)
        async__abort(__FILE__, __LINE__, "pthread_cond_timedwait");
}

static void *serve(void *unused)
{
    (void)unused;
    ASYNC_CHECK(pthread_mutex_lock(&dl_lock));
    int64_t idle_until = 0;
    for (;;) {
        if (n == 0) {
            if (idle_until == 0)
                idle_until = async__deadline_after(DL_LINGER);
            else if (async_now() >= idle_until)
                break;
            wait_until(idle_until);
            continue;
        }
        idle_until = 0;
        struct async_deadline *d = heap[0];
        if (d->when > async_now()) {
            wait_until(d->when);
            continue;
        }
        remove_locked(d);
        ASYNC_CHECK(pthread_mutex_unlock(&dl_lock));
        d->fire(d);   /* d may be gone after this */
        ASYNC_CHECK(pthread_mutex_lock(&dl_lock));
    }
    running = false;
    ASYNC_CHECK(pthread_mutex_unlock(&dl_lock));
    return NULL;
}

/* Under dl_lock: room for one more entry. 0 | ENOMEM. */
static int grow(void)
{
    if (n < cap)
        return 0;
    size_t c = cap ? cap * 2 : 16;
    struct async_deadline **h = async__calloc(c, sizeof *h);
    if (!h)
        return ENOMEM;
    if (n)
        memcpy(h, heap, n * sizeof *h);
    async__free(heap);
    heap = h;
    cap = c;
    return 0;
}

int async__deadline_add(struct async_deadline *d)
{
    ASYNC_CHECK(pthread_once(&dl_once, dl_init));
    ASYNC_CHECK(pthread_mutex_lock(&dl_lock));
    int rc = grow();
    if (rc == 0 && !running) {
        pthread_t t;
        if ((rc = async__thread_create(&t, serve, NULL)) == 0) {
            ASYNC_CHECK(pthread_detach(t));
            running = true;
        }
    }
    if (rc == 0) {
        place(n++, d);
        sift(d->idx);
        if (d->idx == 0)
            ASYNC_CHECK(pthread_cond_signal(&dl_cond));   /* it sleeps past d */
    }
    ASYNC_CHECK(pthread_mutex_unlock(&dl_lock));
    return rc;
}

bool async__deadline_del(struct async_deadline *d)
{
    ASYNC_CHECK(pthread_mutex_lock(&dl_lock));
    bool was = d->idx != ASYNC_DL_NONE;
    if (was)
        remove_locked(d);
    ASYNC_CHECK(pthread_mutex_unlock(&dl_lock));
    return was;
}
