/*
 * test/death/stack_overflow.c — a task that recurses without end on a
 * 64 KiB stack must crash, not corrupt memory silently (API.md: Goroutine
 * mode: "A stack overflow is detected and aborts").
 *
 * Registered with should_fail: the process must die. It exits 0 (so the
 * test fails as an "unexpected pass") when anything else happens: the pool
 * cannot be made, the recursion comes back, or the fault it takes is not on
 * the guard page just below the task's stack (a write that ran past the
 * guard into other memory). A fault on the guard page, or the abort of the
 * canary check, ends it with a signal, as it should. The task overflows a
 * stack carved after three others, whose guards a slab installs at once.
 */
#include <async.h>

#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STACK ((size_t)64 * 1024)

static char *volatile entry;           /* a local of the task's first frame */
static char altstack[64 * 1024];

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    char *addr = si->si_addr;
    /* The guard is at most a page or two below the lowest usable byte, and
     * the task's first frame lies within the 64 KiB above that. */
    bool guard = addr < entry && addr >= entry - STACK - 2 * 4096;
    static const char hit[] = "stack_overflow: SIGSEGV on the guard page, as it should\n";
    static const char miss[] = "stack_overflow: SIGSEGV far from the task's stack\n";
    if (guard) {
        (void)!write(2, hit, sizeof hit - 1);
        signal(sig, SIG_DFL);   /* the faulting write runs again, and kills */
        return;
    }
    (void)!write(2, miss, sizeof miss - 1);
    _exit(0);
}

static void *park(void *arg)
{
    return (void *)(intptr_t)chan_recv(arg, NULL);
}

static long depth;

static int recurse(int n)
{
    volatile char buf[512];
    buf[0] = (char)n;
    buf[511] = (char)n;
    depth++;
    if (depth > 1000000)   /* 500 MB of frames: nothing stopped it */
        return 0;
    return recurse(n + 1) + buf[0] + buf[511];
}

static void *overflow_task(void *arg)
{
    (void)arg;
    char here;
    entry = &here;
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack };
    if (sigaltstack(&ss, NULL) != 0)
        return NULL;
    int r = recurse(0);
    fprintf(stderr, "stack_overflow: %ld frames of 512 bytes on a 64 KiB stack "
            "came back (%d)\n", depth, r);
    return NULL;
}

int main(void)
{
    struct sigaction sa = { .sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_ONSTACK };
    sigaction(SIGSEGV, &sa, NULL);
    async_pool_config_t cfg = { .threads = 1, .stack_size = STACK };
    async_pool_t *pool = async_pool_create(&cfg);
    if (!pool) {
        perror("async_pool_create");
        return 0;
    }
    /* Three tasks parked first take the slab's first stacks, so the one
     * that overflows has a neighbour below its guard: without the guard it
     * would run on into that stack, not off the slab's start. */
    chan_t *c = chan_make(0, 0);
    for (int i = 0; i < 3; i++)
        if (!c || !async_run_on(pool, park, c)) {   /* left to the end */
            perror("async_run_on");
            return 0;
        }
    async_pool_stats_t st;
    int64_t until = async_now() + 30 * ASYNC_SECOND;
    while (async_pool_stats(pool, &st) == 0 && st.parked < 3 && async_now() < until)
        sched_yield();
    if (st.parked != 3) {
        fprintf(stderr, "stack_overflow: %zu tasks parked, not 3\n", st.parked);
        return 0;
    }
    future_t *f = async_run_on(pool, overflow_task, NULL);
    future_get_until(f, NULL, async_now() + 60 * ASYNC_SECOND);   /* on the worker, never inline */
    fprintf(stderr, "stack_overflow: the task ended without a crash\n");
    return 0;
}
