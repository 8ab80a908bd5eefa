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
 */
#include "internal.h"

_Thread_local struct async_tls async__tls ASYNC_TLS_MODEL;

struct async_tls *async__tls_addr(void)
{
    return &async__tls;
}
