/*
 * lib/tls.c — the thread's own state (struct async_tls), and its accessor
 * for CPUs without an inline one.
 *
 * Owns: the _Thread_local block. Everything else in the library reads it
 * through async__tls_get() (internal.h): a task that blocks may resume on
 * another thread, and a compiler is free to keep a thread-local's address
 * in a register across any call, so a plain `async__tls.x` after something
 * that may have switched fibers could read the previous thread's state.
 * Where internal.h has no inline assembly for the CPU, the accessor is this
 * out-of-line function: a call the compiler cannot see through (the library
 * is built without link-time optimisation).
 *
 * Also owns the list of threads whose own fiber runs tasks (thread mode,
 * inline runs), which the dump walks: a thread's state lives in its TLS
 * block and dies with the thread, so the list links the blocks under
 * list_lock (a leaf), and a thread unlinks itself at exit (record.c's exit
 * hook) before its block goes. Invariant: t is on the list <=> t->listed;
 * every listed block belongs to a live thread.
 *
 * And the thread's random numbers (async__rand: xorshift64*, seeded lazily
 * from the block's address and the clock), which thieves use to pick whom
 * to steal from first.
 */
#include "internal.h"

_Thread_local struct async_tls async__tls ASYNC_TLS_MODEL;

struct async_tls *async__tls_addr(void)
{
    return &async__tls;
}

static pthread_mutex_t   list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct async_tls *list_head;   /* guarded by list_lock */

void async__tls_list_add(struct async_tls *t)
{
    ASYNC_CHECK(pthread_mutex_lock(&list_lock));
    t->list_prev = NULL;
    t->list_next = list_head;
    if (list_head)
        list_head->list_prev = t;
    list_head = t;
    t->listed = true;
    ASYNC_CHECK(pthread_mutex_unlock(&list_lock));
}

void async__tls_list_remove(struct async_tls *t)
{
    if (!t->listed)
        return;
    ASYNC_CHECK(pthread_mutex_lock(&list_lock));
    if (t->list_prev)
        t->list_prev->list_next = t->list_next;
    else
        list_head = t->list_next;
    if (t->list_next)
        t->list_next->list_prev = t->list_prev;
    t->listed = false;
    ASYNC_CHECK(pthread_mutex_unlock(&list_lock));
}

void async__tls_each(void (*fn)(struct async_fiber *f, void *ctx), void *ctx)
{
    ASYNC_CHECK(pthread_mutex_lock(&list_lock));
    for (struct async_tls *t = list_head; t; t = t->list_next)
        fn(&t->self, ctx);
    ASYNC_CHECK(pthread_mutex_unlock(&list_lock));
}

uint64_t async__rand(void)
{
    struct async_tls *t = async__tls_get();
    uint64_t x = t->rng;
    if (ASYNC_UNLIKELY(x == 0)) {
        x = (uint64_t)(uintptr_t)t ^ (uint64_t)async_now() ^ 0x9e3779b97f4a7c15ull;
        if (x == 0)
            x = 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}
