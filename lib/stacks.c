/*
 * lib/stacks.c — the memory of goroutine mode's stacks: stack classes,
 * slabs and their guard pages, the fiber records carved with the stacks,
 * taking stacks, and giving their pages back.
 *
 * Owns: async__stack_class, async__fiber_take, async__fiber_release, the
 * trims (async__stacks_trim, the decay), and the counts of stacks. The
 * switch between stacks, and what a fiber's run needs (its reset, the
 * overflow checks), are fiber.c's.
 *
 * Stacks. 100,000 parked tasks must fit under the kernel's default
 * vm.max_map_count (65,530), so a stack is not a mapping of its own: stacks
 * of one size (a class) are carved from slabs of about SLAB_BYTES, each one
 * MAP_NORESERVE mapping whose pages are committed only when touched. Region
 * i of a slab is [guard page | usable stack]; the guard is installed with
 * MADV_GUARD_INSTALL (Linux 6.13+: no extra mapping; a new slab's guards
 * all at once, with process_madvise, where the kernel takes it), else with
 * mprotect while the process has made fewer than GUARD_BUDGET such guards
 * (each splits the mapping: two more map entries), else the stack gets a canary
 * word at its lowest address instead, checked at every switch away from it
 * (async__fiber_check), which aborts naming the task and the stack size.
 * The fiber records (struct async_fiber) are not in the stacks: they sit in
 * an array per slab, allocated once and never freed, so returning a stack's
 * pages loses nothing and a late wake-up of a fiber reads valid memory.
 *
 * Taking stacks. Workers keep a few free fibers of their own (switch.c) and
 * refill that cache in batches (async__fiber_take): one lock for up to
 * ASYNC_FIBER_BATCH stacks. A stack whose pages are not resident (freshly
 * carved, or cold) would take a page fault at its first use, each fault a
 * trap into the kernel: the batch's top pages are made resident at once
 * instead, with one process_madvise(MADV_POPULATE_WRITE) over a vector of
 * them, a fifth cheaper per page than faulting them in one by one. 100,000
 * tasks that park at once each need a fresh stack, and those faults were
 * the largest part of their time. Where the kernel refuses (before Linux
 * 6.13 for MADV_POPULATE_WRITE on oneself, or under valgrind), the pages
 * fault in as before.
 *
 * Recycling. Released stacks go on their class's warm list (LIFO: the most
 * recently used pages are still resident). What a burst used is given back
 * when the burst is over: a worker that stayed idle a few milliseconds
 * (sched.c's go_idle) calls
 * async__stacks_trim, which hands all but TRIM_KEEP warm stacks back to the
 * kernel with MADV_DONTNEED, in address-sorted runs (one system call per run
 * of neighbours, not per stack), and moves them to the cold list, which is
 * used after the warm one. Returning pages is the kernel's per-page work
 * and its TLB shootdowns: with no lock held (the stacks being returned are
 * on no list), and never in the middle of a burst. A pool that never idles
 * gives back by decay instead: once a class holds more than TRIM_CHECK free
 * stacks, every 64th release looks at the clock, and once a TRIM_PERIOD has
 * passed since the last look that did, the stacks that stayed on the warm
 * list all that period (the `low` least of them, at the bottom of the LIFO)
 * go back, all but TRIM_KEEP. A burst shorter than the period gives nothing
 * back until it is over. (A high-water mark that trimmed at once, in the
 * middle of the burst that released them, was a sixth of the feeding half
 * of 100,000 blocked tasks.)
 *
 * Locks: stack_lock (a leaf) guards the class list, every class's lists,
 * counters and decay state, and every slab's carving cursor. Fiber records
 * are owned by whoever holds them (a worker's cache, the run queues, a
 * running worker); their `state` is the scheduler's (switch.c).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__has_include)
#  if __has_include(<valgrind/valgrind.h>)
#    include <valgrind/valgrind.h>
#    define ASYNC_VALGRIND 1
#  endif
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef PIDFD_SELF_THREAD
#define PIDFD_SELF_THREAD (-10000)   /* Linux 6.15+: the calling thread */
#endif

#define SLAB_BYTES    ((size_t)64 << 20)
#define SLAB_MAX      1024u           /* stacks per slab at most */
#define GUARD_BUDGET  8192u           /* mprotect guards per process */
#define TRIM_KEEP     256u            /* free stacks a class keeps resident */
#define TRIM_CHECK    (2u * TRIM_KEEP)  /* free stacks past which releases look */
#define TRIM_PERIOD   ASYNC_SECOND      /* free this long in a busy pool: back */

struct slab {
    char                *base;       /* immutable */
    size_t               len;        /* immutable */
    unsigned             carved;     /* regions handed out so far */
    unsigned             n;          /* regions; immutable */
    bool                 canaried;   /* no guard pages: canaries */
    bool                 guarded;    /* every region's guard installed at once */
    struct async_fiber  *fibers;     /* [n]; never freed */
    struct slab         *next;
};

struct async_stack_class {
    size_t                    size;     /* usable bytes (page multiple) */
    size_t                    stride;   /* size + one guard page */
    struct slab              *slabs;    /* newest first */
    struct async_fiber       *warm;     /* released, pages resident */
    struct async_fiber       *cold;     /* released, pages returned */
    _Atomic size_t            nwarm;    /* written under stack_lock; read
                                           without it by async__stacks_trim */
    size_t                    low;      /* least nwarm since decay_at */
    int64_t                   decay_at; /* when the decay last looked */
    unsigned                  releases; /* counts to every 64th */
    struct async_stack_class *next;
};

static pthread_mutex_t           stack_lock = PTHREAD_MUTEX_INITIALIZER;
static struct async_stack_class *classes;         /* guarded by stack_lock */
static size_t                    nallocated;      /* stacks carved, all classes */
static unsigned                  nguards;         /* mprotect guards made */
static int                       guard_install = 1;   /* -1: not supported */
static _Atomic bool              populate_refused;    /* the kernel said no */
static _Atomic int64_t           trim_period = TRIM_PERIOD;   /* a test sets it */

static size_t page_size(void)
{
    static size_t ps;
    if (!ps) {
        long v = sysconf(_SC_PAGESIZE);
        ps = v > 0 ? (size_t)v : 4096;
    }
    return ps;
}

/* ----------------------------------------------------------- classes */

struct async_stack_class *async__stack_class(size_t size)
{
    size_t ps = page_size();
    size = (size + ps - 1) & ~(ps - 1);
    ASYNC_CHECK(pthread_mutex_lock(&stack_lock));
    struct async_stack_class *c = classes;
    while (c && c->size != size)
        c = c->next;
    if (!c && (c = async__calloc(1, sizeof *c)) != NULL) {
        c->size = size;
        c->stride = size + ps;
        c->next = classes;
        classes = c;
    }
    ASYNC_CHECK(pthread_mutex_unlock(&stack_lock));
    return c;
}

size_t async__stack_class_size(const struct async_stack_class *c)
{
    return c->size;
}

size_t async__stacks_allocated(void)
{
    ASYNC_CHECK(pthread_mutex_lock(&stack_lock));
    size_t n = nallocated;
    ASYNC_CHECK(pthread_mutex_unlock(&stack_lock));
    return n;
}

/* Guard region i's lowest page; false when only a canary is left. Under
 * stack_lock. */
static bool guard(struct slab *s, char *page, size_t ps)
{
    if (guard_install > 0) {
        if (madvise(page, ps, MADV_GUARD_INSTALL) == 0)
            return true;
        guard_install = -1;   /* this kernel has no guard regions */
    }
    if (nguards < GUARD_BUDGET && mprotect(page, ps, PROT_NONE) == 0) {
        nguards++;
        return true;
    }
    (void)s;
    return false;
}

#if defined(SYS_process_madvise) && defined(SYS_pidfd_open)
#define ASYNC_MADVISE_VECTOR 1
/* madvise over a vector of this process's ranges in one system call:
 * process_madvise naming the calling thread with the PIDFD_SELF_THREAD
 * sentinel (Linux 6.15), else a descriptor opened for the call (a kept one
 * would name the parent after a fork). Any advice on oneself from Linux
 * 6.13. Returns the bytes advised, or -1 with errno (ENOSYS under
 * valgrind, which does not know the call). */
static long madvise_vector(const struct iovec *iov, size_t n, int advice)
{
#ifdef ASYNC_VALGRIND
    if (RUNNING_ON_VALGRIND) {
        errno = ENOSYS;
        return -1;
    }
#endif
    long done = syscall(SYS_process_madvise, (long)PIDFD_SELF_THREAD, iov, (long)n,
                        (long)advice, 0L);
    if (done < 0 && errno == EBADF) {   /* no sentinel: Linux 6.13, 6.14 */
        int fd = (int)syscall(SYS_pidfd_open, (long)getpid(), 0L);
        if (fd >= 0) {
            done = syscall(SYS_process_madvise, (long)fd, iov, (long)n, (long)advice, 0L);
            int e = errno;
            close(fd);
            errno = e;
        }
    }
    return done;
}
#endif

/* Every region's guard page of s in one system call (madvise_vector). A
 * separate madvise per region was a seventh of the time of 100,000 tasks
 * parking at once, and it ran under stack_lock. False where the kernel
 * says no (carve() then guards region by region), and under valgrind.
 * Under stack_lock. */
static bool guard_slab(struct slab *s, size_t stride, size_t ps)
{
#ifdef ASYNC_MADVISE_VECTOR
    static bool batch_refused;
    _Static_assert(SLAB_MAX <= 1024, "one process_madvise vector (UIO_MAXIOV) per slab");
    if (guard_install <= 0 || batch_refused)
        return false;
    struct iovec *iov = async__malloc(s->n * sizeof *iov);
    if (!iov)
        return false;
    for (unsigned i = 0; i < s->n; i++)
        iov[i] = (struct iovec){ s->base + (size_t)i * stride, ps };
    int saved = errno;
    long done = madvise_vector(iov, s->n, MADV_GUARD_INSTALL);
    if (done < 0)
        batch_refused = true;   /* not this kernel's: region by region */
    errno = saved;
    async__free(iov);
    return done == (long)((size_t)s->n * ps);
#else
    (void)s;
    (void)stride;
    (void)ps;
    return false;
#endif
}

/* A new slab for class c; under stack_lock. */
static struct slab *slab_new(struct async_stack_class *c)
{
    size_t n = SLAB_BYTES / c->stride;
    if (n < 1)
        n = 1;
    if (n > SLAB_MAX)
        n = SLAB_MAX;
    struct slab *s = async__calloc(1, sizeof *s);
    struct async_fiber *fs = async__calloc(n, sizeof *fs);
    if (!s || !fs) {
        async__free(s);
        async__free(fs);
        return NULL;
    }
    size_t len = n * c->stride;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) {
        async__free(s);
        async__free(fs);
        return NULL;
    }
    s->base = base;
    s->len = len;
    s->n = (unsigned)n;
    s->fibers = fs;
    s->guarded = guard_slab(s, c->stride, page_size());
    s->next = c->slabs;
    c->slabs = s;
    return s;
}

/* Carve the next region of class c into fiber f; under stack_lock. */
static struct async_fiber *carve(struct async_stack_class *c)
{
    struct slab *s = c->slabs;
    if (!s || s->carved == s->n)
        s = slab_new(c);
    if (!s)
        return NULL;
    size_t ps = page_size();
    unsigned i = s->carved;
    struct async_fiber *f = &s->fibers[i];
    char *region = s->base + (size_t)i * c->stride;
    /* Set up before the registry publishes f (a release store): its walkers
     * (a pool's destroy waking every target, the dump) read f's state from
     * then on. A failed registration leaves the slot to the next carve. */
    bool guarded = s->guarded || guard(s, region, ps);
    f->lo = region + ps;
    f->size = c->size;
    f->cls = c;
    f->is_stack = true;
    f->canary = guarded ? NULL : (uint64_t *)(void *)f->lo;
    atomic_init(&f->state, ASYNC_F_FREE);
    atomic_init(&f->next, NULL);
    uint32_t id = async__target_register((uintptr_t)f | ASYNC_TARGET_FIBER);
    if (!id)
        return NULL;
    s->carved++;
    f->id = id;
#ifdef ASYNC_VALGRIND
    f->vg_id = VALGRIND_STACK_REGISTER(f->lo, f->lo + f->size);
#endif
    nallocated++;
    return f;
}

/* ------------------------------------------------------- taking stacks */

bool async__stacks_populating(void)
{
#ifdef ASYNC_VALGRIND
    if (RUNNING_ON_VALGRIND)
        return false;
#endif
#ifdef ASYNC_MADVISE_VECTOR
    return !atomic_load_explicit(&populate_refused, memory_order_relaxed);
#else
    return false;
#endif
}

/* Make the top page of each of the n stacks resident, in one system call
 * (madvise_vector). Best effort: a page left out faults in at its first
 * use, as it would have anyway. No lock held; errno is kept (this runs
 * inside a task's blocking call). */
static void populate(struct async_fiber *const *fs, size_t n)
{
#ifdef ASYNC_MADVISE_VECTOR
    if (n == 0 || !async__stacks_populating())
        return;
    struct iovec iov[ASYNC_FIBER_BATCH];
    size_t ps = page_size();
    ASYNC_ASSERT(n <= ASYNC_FIBER_BATCH);
    for (size_t i = 0; i < n; i++)
        iov[i] = (struct iovec){ fs[i]->lo + fs[i]->size - ps, ps };
    int saved = errno;
    /* ENOMEM, EINTR, EAGAIN: this time only; anything else: not this kernel's */
    if (madvise_vector(iov, n, MADV_POPULATE_WRITE) < 0 &&
        errno != ENOMEM && errno != EINTR && errno != EAGAIN)
        atomic_store_explicit(&populate_refused, true, memory_order_relaxed);
    errno = saved;
#else
    (void)fs;
    (void)n;
#endif
}

size_t async__fiber_take(struct async_stack_class *c, struct async_fiber **out, size_t want)
{
    struct async_fiber *fresh[ASYNC_FIBER_BATCH];   /* pages not resident */
    size_t n = 0, nfresh = 0;
    if (want > ASYNC_FIBER_BATCH)
        want = ASYNC_FIBER_BATCH;
    ASYNC_CHECK(pthread_mutex_lock(&stack_lock));
    while (n < want) {
        struct async_fiber *f = c->warm;
        if (f) {
            c->warm = atomic_load_explicit(&f->next, memory_order_relaxed);
            size_t left = c->nwarm - 1;
            atomic_store_explicit(&c->nwarm, left, memory_order_relaxed);
            if (left < c->low)
                c->low = left;
        } else {
            if ((f = c->cold) != NULL)
                c->cold = atomic_load_explicit(&f->next, memory_order_relaxed);
            else if ((f = carve(c)) == NULL)
                break;
            fresh[nfresh++] = f;
        }
        out[n++] = f;
    }
    ASYNC_CHECK(pthread_mutex_unlock(&stack_lock));
    populate(fresh, nfresh);
    return n;
}

/* --------------------------------------------------------- recycling */

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(struct async_fiber *const *)a;
    uintptr_t y = (uintptr_t)*(struct async_fiber *const *)b;
    return x < y ? -1 : x > y;
}

/* Take all but the first `keep` warm stacks of c off its warm list
 * (stack_lock held): the caller returns their pages and then makes them
 * cold. NULL when there are no more than `keep`. The decay restarts: what
 * stays has been free no longer than now. */
static struct async_fiber *trim_take(struct async_stack_class *c, size_t keep, size_t *n)
{
    struct async_fiber *f = NULL;
    if (c->nwarm > keep && keep > 0) {
        struct async_fiber *last = c->warm;
        for (size_t i = 1; i < keep; i++)
            last = atomic_load_explicit(&last->next, memory_order_relaxed);
        f = atomic_load_explicit(&last->next, memory_order_relaxed);
        atomic_store_explicit(&last->next, NULL, memory_order_relaxed);
        *n = c->nwarm - keep;
        atomic_store_explicit(&c->nwarm, keep, memory_order_relaxed);
    }
    c->low = c->nwarm;
    return f;
}

/* Return the pages of the n fibers chained from f to the kernel, with no
 * lock held (they are on no list meanwhile: nobody can take one), then put
 * them on c's cold list. */
static void trim_return(struct async_stack_class *c, struct async_fiber *f, size_t n)
{
    struct async_fiber *first = f, **batch = malloc(n * sizeof *batch);
    size_t k = 0;
    for (struct async_fiber *g = f; g; g = atomic_load_explicit(&g->next, memory_order_relaxed)) {
        if (batch && k < n)
            batch[k++] = g;
        else
            madvise(g->lo, g->size, MADV_DONTNEED);   /* no memory to sort */
    }
    if (batch) {
        /* The fibers of one slab are one array, so address order of the
         * records is address order of their stacks: coalesce neighbours
         * into one call. */
        qsort(batch, k, sizeof *batch, by_address);
        for (size_t i = 0; i < k;) {
            size_t j = i + 1;
            while (j < k && batch[j] == batch[j - 1] + 1)
                j++;
            /* guard pages in between are skipped by the kernel's per-page
             * work and keep their protection (a guard marker or PROT_NONE) */
            char *from = batch[i]->lo;
            char *to = batch[j - 1]->lo + batch[j - 1]->size;
            madvise(from, (size_t)(to - from), MADV_DONTNEED);
            i = j;
        }
        free(batch);
    }
    struct async_fiber *last = first;
    while (atomic_load_explicit(&last->next, memory_order_relaxed))
        last = atomic_load_explicit(&last->next, memory_order_relaxed);
    ASYNC_CHECK(pthread_mutex_lock(&stack_lock));
    atomic_store_explicit(&last->next, c->cold, memory_order_relaxed);
    c->cold = first;
    ASYNC_CHECK(pthread_mutex_unlock(&stack_lock));
}

/* The decay, at a release (stack_lock held): once TRIM_PERIOD has passed
 * since it last looked, the stacks that stayed free all that time (the
 * `low` at the bottom of the LIFO) go back, all but TRIM_KEEP. */
static struct async_fiber *decay(struct async_stack_class *c, size_t *n)
{
    if (c->nwarm <= TRIM_CHECK || ++c->releases % 64 != 0)
        return NULL;
    int64_t now = async_now();
    if (now - c->decay_at < atomic_load_explicit(&trim_period, memory_order_relaxed))
        return NULL;
    c->decay_at = now;
    size_t idle = c->low > TRIM_KEEP ? c->low - TRIM_KEEP : 0;
    return trim_take(c, c->nwarm - idle, n);
}

void async__fiber_release(struct async_fiber *f)
{
    struct async_stack_class *c = f->cls;
    atomic_store_explicit(&f->state, ASYNC_F_FREE, memory_order_release);
    size_t n = 0;
    ASYNC_CHECK(pthread_mutex_lock(&stack_lock));
    atomic_store_explicit(&f->next, c->warm, memory_order_relaxed);
    c->warm = f;
    atomic_store_explicit(&c->nwarm, c->nwarm + 1, memory_order_relaxed);
    struct async_fiber *trimmed = decay(c, &n);
    ASYNC_CHECK(pthread_mutex_unlock(&stack_lock));
    if (trimmed)
        trim_return(c, trimmed, n);
}

void async__test_trim_period(int64_t ns)
{
    atomic_store_explicit(&trim_period, ns, memory_order_relaxed);
}

bool async__stacks_trimmable(const struct async_stack_class *c)
{
    return atomic_load_explicit(&c->nwarm, memory_order_relaxed) > TRIM_KEEP;
}

void async__stacks_trim(struct async_stack_class *c)
{
    if (atomic_load_explicit(&c->nwarm, memory_order_relaxed) <= TRIM_KEEP)
        return;   /* the common case: no lock */
    size_t n = 0;
    ASYNC_CHECK(pthread_mutex_lock(&stack_lock));
    struct async_fiber *trimmed = trim_take(c, TRIM_KEEP, &n);
    ASYNC_CHECK(pthread_mutex_unlock(&stack_lock));
    if (trimmed)
        trim_return(c, trimmed, n);
}
