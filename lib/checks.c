/*
 * lib/checks.c — misuse caught: the abort that names the call and the
 * object, and the quarantine of the checked build.
 *
 * Owns: async__misuse (the message and abort), async__quarantine, and the
 * test hook that releases what the quarantine holds.
 *
 * What is checked (internal.h has the inline checks, each caller names its
 * public call):
 *   always (a load and a compare, off the hot paths): chan_free of a
 *   channel a task or thread is still blocked on; a destroyed pool handed
 *   to async_pool_destroy or async_pool_stats.
 *   checked build only (-Dchecks, on in debug and sanitizer builds): every
 *   future, promise, channel and pool carries a magic word, overwritten when
 *   the object is freed; a record also counts its incarnations (gen) and the
 *   handles its user holds. Caught: future_free twice, any future call after
 *   the record was freed, promise_free twice and promise calls after it,
 *   chan_free twice and channel calls after it, use of a destroyed pool.
 *
 * Recycling. Records are recycled through per-thread caches and malloc
 * recycles the rest, so a poisoned object would soon be a live one again
 * and a stale handle would then reach another task's record. The checked
 * build therefore keeps freed objects poisoned in a quarantine (a FIFO of
 * QUARANTINE objects) before they are really released: misuse within that
 * window is caught every time. An object handed out again is alive for its
 * new owner (its magic is set anew, its gen is one more), so a correct
 * program, whose handles are all live, never sees a poisoned object and
 * never aborts. What is not caught: a stale handle used after its record
 * has left the quarantine and been recycled (it then names a live record;
 * handles are the records' own addresses, so nothing tells the two apart),
 * and a double future_free on a promise's future while another handle of
 * it is live (the count of handles cannot say whose went twice; the last
 * one's free then aborts instead).
 *
 * Under AddressSanitizer the quarantine also keeps its objects from ASan
 * (which would report the read of the magic as a use after free, without
 * naming the call): the message here comes first.
 *
 * Lock: q_lock, a leaf, taken only in the checked build.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

_Noreturn void async__misuse(const char *call, const char *what, const void *obj)
{
    fprintf(stderr, "libasync: %s(%p): %s\n", call, obj, what);
    fflush(stderr);
    abort();
}

#if ASYNC_CHECKS

#define QUARANTINE 4096

struct qslot {
    void  *obj;
    void (*release)(void *obj);
};
static async_lock_t  q_lock;
static struct qslot  q[QUARANTINE];   /* guarded by q_lock; a ring */
static unsigned      q_next;          /* guarded by q_lock */

void async__quarantine(void *obj, void (*release)(void *obj))
{
    async__lock(&q_lock);
    struct qslot out = q[q_next];
    q[q_next] = (struct qslot){ obj, release };
    q_next = (q_next + 1) % QUARANTINE;
    async__unlock(&q_lock);
    if (out.obj)
        out.release(out.obj);
}

#endif

void async__test_quarantine_flush(void)
{
#if ASYNC_CHECKS
    for (unsigned i = 0; i < QUARANTINE; i++)
        async__quarantine(NULL, NULL);
#endif
}
