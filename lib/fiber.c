/*
 * lib/fiber.c — contexts: what lets a blocked task cost a stack instead of
 * an OS thread, once stacks.c has given it one.
 *
 * Owns: the context switch (ctx/switch_<arch>.S, or ucontext where meson
 * found no assembly for the CPU), a fiber's start (async__fiber_reset),
 * stack-overflow detection at every switch, and what the sanitizers must
 * be told about switches.
 *
 * The switch. async__ctx_swap saves the callee-saved registers and the
 * floating-point control words on the current stack and swaps stack
 * pointers (about 10 ns). A switch away from a fiber that will never be
 * resumed tells ASan so (NULL fake-stack save); every switch tells TSan
 * which fiber runs next (valgrind learns each stack's bounds once, when
 * stacks.c carves it).
 *
 * Overflow. A stack without a guard page below it (stacks.c) has a canary
 * word at its lowest address instead, set at each start and checked at
 * every switch away from it (async__fiber_check), which aborts naming the
 * task and the stack size; so does a stack pointer found out of bounds.
 *
 * Locks: none. A fiber record is owned by whoever holds it (a worker's
 * cache, the run queues, a running worker); its `state` is the
 * scheduler's (switch.c).
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if ASYNC_CTX_UCONTEXT
#include <ucontext.h>
#endif
#ifdef ASYNC_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef ASYNC_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void  __tsan_switch_to_fiber(void *fiber, unsigned flags);
void  __tsan_destroy_fiber(void *fiber);
#endif

#define CANARY        0x5a17c0de5a17c0deull

/* ------------------------------------------------------------ switch */

#if ASYNC_CTX_UCONTEXT

static _Thread_local struct async_ctx *entering;

static void uc_entry(void)
{
    struct async_ctx *c = entering;
    ((async_ctx_fn)(uintptr_t)c->sp)(c->transfer);   /* ctx_make stored it */
    abort();   /* an entry function never returns */
}

static void ctx_make(struct async_ctx *c, char *lo, size_t size, async_ctx_fn fn)
{
    if (!c->uc && !(c->uc = calloc(1, sizeof(ucontext_t))))
        async__abort(__FILE__, __LINE__, "no memory for a ucontext");
    ucontext_t *uc = c->uc;
    ASYNC_CHECK(getcontext(uc));
    uc->uc_stack.ss_sp = lo;
    uc->uc_stack.ss_size = size;
    uc->uc_link = NULL;
    makecontext(uc, uc_entry, 0);
    c->sp = (void *)(uintptr_t)fn;
}

void *async__ctx_switch(struct async_ctx *from, struct async_ctx *to, void *transfer)
{
    if (!from->uc && !(from->uc = calloc(1, sizeof(ucontext_t))))
        async__abort(__FILE__, __LINE__, "no memory for a ucontext");
    to->transfer = transfer;
    entering = to;
    ASYNC_CHECK(swapcontext(from->uc, to->uc));
    return from->transfer;
}

#else

void *async__ctx_swap(void **save_sp, void *load_sp, void *transfer);
void  async__ctx_entry(void);

static void ctx_make(struct async_ctx *c, char *lo, size_t size, async_ctx_fn fn)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top - 2;   /* two zero words end backtraces */
    sp[0] = sp[1] = 0;
#if defined(__x86_64__)
    sp -= 9;   /* the frame async__ctx_swap pops: see switch_x86_64.S */
    memset(sp, 0, 9 * sizeof *sp);
    uint32_t mxcsr = 0x1F80;
    uint16_t fpcw = 0x037F;
    memcpy((char *)sp, &mxcsr, sizeof mxcsr);
    memcpy((char *)sp + 4, &fpcw, sizeof fpcw);
    sp[5] = (uint64_t)(uintptr_t)fn;                     /* r12 */
    sp[8] = (uint64_t)(uintptr_t)async__ctx_entry;       /* return address */
#elif defined(__aarch64__)
    sp -= 22;  /* 176 bytes: see switch_aarch64.S */
    memset(sp, 0, 22 * sizeof *sp);
    sp[0] = (uint64_t)(uintptr_t)fn;                     /* x19 */
    sp[11] = (uint64_t)(uintptr_t)async__ctx_entry;      /* x30 */
#else
#error "no context switch for this CPU: configure with -Dcontext=ucontext"
#endif
    c->sp = sp;
}

void *async__ctx_switch(struct async_ctx *from, struct async_ctx *to, void *transfer)
{
    return async__ctx_swap(&from->sp, to->sp, transfer);
}

#endif

/* ------------------------------------------------------------ fibers */

void async__fiber_reset(struct async_fiber *f, async_ctx_fn fn)
{
    if (f->canary)
        *f->canary = CANARY;
#ifdef ASYNC_TSAN
    /* A fiber starting afresh is a new thread of execution to TSan: the
     * old one kept the frames of the run it abandoned (a switch away for
     * good tells TSan nothing), and its shadow call stack would grow by
     * them at every reuse until it overflowed. f is not current anywhere.
     * (A new stack fiber gets its first TSan fiber here too.) */
    if (f->is_stack) {
        if (f->tsan)
            __tsan_destroy_fiber(f->tsan);
        f->tsan = __tsan_create_fiber(0);
    }
#endif
    ctx_make(&f->ctx, f->lo, f->size, fn);
    f->frame = NULL;
    f->ndefers = 0;
    f->pool = NULL;
    f->asan_fake = NULL;
    ASYNC_FIBER_SET(f, ASYNC_F_RUNNING, memory_order_relaxed);
}

/* ------------------------------------------------------ the switch */

/* The stack bounds of a thread's own fiber, asked once. */
static void thread_bounds(struct async_fiber *f)
{
    pthread_attr_t a;
    void *lo;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &a) != 0)
        return;
    if (pthread_attr_getstack(&a, &lo, &size) == 0) {
        f->lo = lo;
        f->size = size;
    }
    pthread_attr_destroy(&a);
}

_Noreturn static void overflow(struct async_fiber *f, const char *what)
{
    struct future *t = f->frame ? f->frame->task : NULL;
    fprintf(stderr, "libasync: stack overflow (%s) in task %p (function %p) on a "
            "%zu-byte stack; give the pool a larger stack_size, or run such "
            "tasks on a thread-mode pool (ASYNC_STACK_THREAD)\n",
            what, (void *)t, t ? (void *)(uintptr_t)t->fn : NULL, f->size);
    abort();
}

void async__fiber_check(struct async_fiber *f)
{
    if (!f->is_stack)
        return;
    if (f->canary && *f->canary != CANARY)
        overflow(f, "canary overwritten");
    char *sp = __builtin_frame_address(0);
    if (sp < f->lo || sp > f->lo + f->size)
        overflow(f, "stack pointer out of bounds");
}

size_t async__stack_room(void)
{
    struct async_fiber *f = async__fiber_self();
    if (!f->lo)
        thread_bounds(f);
    if (!f->lo)
        return SIZE_MAX;
    char *sp = __builtin_frame_address(0);
    /* the canary word and a little slack are not room */
    char *floor = f->lo + 256;
    return sp > floor ? (size_t)(sp - floor) : 0;
}

void async__fiber_landed(struct async_fiber *self)
{
#ifdef ASYNC_ASAN
    const void *from_lo = NULL;
    size_t from_size = 0;
    __sanitizer_finish_switch_fiber(self->asan_fake, &from_lo, &from_size);
#endif
    (void)self;
}

void *async__fiber_switch(struct async_fiber *from, struct async_fiber *to,
                          void *transfer, bool leaving)
{
    async__fiber_check(from);
    /* no short lock is held across a switch */
    ASYNC_ASSERT(async__locks_held() == 0);
#ifdef ASYNC_ASAN
    if (!to->lo)
        thread_bounds(to);
    __sanitizer_start_switch_fiber(leaving ? NULL : &from->asan_fake, to->lo, to->size);
#endif
#ifdef ASYNC_TSAN
    if (!from->tsan)
        from->tsan = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(to->tsan, 0);
#endif
    (void)leaving;
    void *r = async__ctx_switch(&from->ctx, &to->ctx, transfer);
    async__fiber_landed(from);
    return r;
}
