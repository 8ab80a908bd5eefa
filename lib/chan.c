/*
 * lib/chan.c — Go's channels: make, send, receive, close, len, cap, free.
 *
 * Owns: the channel record (struct chan, chan_internal.h), its ring buffer,
 * its two wait queues, and the try-send / try-receive core that select.c
 * runs too.
 *
 * Design. One short lock per channel guards everything in it; it is held for
 * a few instructions and a memcpy, never across user code or a park. A send
 * first looks for a blocked receiver and copies the value straight into that
 * receiver's buffer (direct hand-off: the ring is bypassed and only that one
 * receiver is woken); else it fills a free slot; else it blocks. A receive
 * mirrors it: a blocked sender exists only when the ring is full (or the
 * channel is unbuffered), so the receiver takes the head slot and moves that
 * sender's value into the slot it freed, which keeps the ring FIFO (Go's
 * recv); else it drains a slot; else, if closed, EPIPE; else it blocks. A
 * blocked caller puts a waiter on its own stack with one wnode in the
 * channel's queue (wnode->elem points at the caller's element) and waits in
 * async__wait; the party that completes its operation does the copy for it
 * under the lock. Rejected: a condition variable per channel (a woken
 * thread must re-take the lock and may find its value gone to a newcomer, so
 * FIFO service and direct hand-off are lost, and select could not wait on
 * several channels at once), and buffering a blocked sender's value before a
 * receiver has it (an unbuffered send must not return before a receiver holds
 * the value).
 *
 * Invariants (under c->lock, stale select wnodes aside — see below):
 *   0 <= count <= cap;  the values sit in slots recvx, recvx+1, ... (mod cap)
 *     and sendx == (recvx + count) mod cap.
 *   sendq non-empty  =>  count == cap      (senders wait only on a full ring)
 *   recvq non-empty  =>  count == 0        (receivers wait only on an empty one)
 *   At least one of sendq and recvq is empty, except for an unbuffered channel
 *     on which one select waits to send and to receive at once (it can never
 *     match itself).
 *   closed  =>  sendq and recvq are empty once chan_close has returned, and
 *     nothing is ever queued again (every operation checks closed first).
 *   A wnode in a queue has linked == true and w->claim == 0, except one
 *     whose waiter was claimed elsewhere (a select another channel took) or
 *     by itself (a waiter that gave up): it stays until its waiter unlinks
 *     it, and a firer that pops it here loses the CAS on `claim` and drops it.
 *   A value is copied into a receiver's buffer only by the party that won
 *     that receiver's waiter, so it is never delivered twice, and a waiter
 *     that reports a failure was never won (see "Unwaiting").
 *
 * Taking a waiter (struct async_waiter in internal.h: claim, then fire).
 * Under the lock the party that completes a blocked operation pops the
 * wnode, wins the CAS on its waiter's `claim` (the value: 1 for a plain send
 * or receive, case index + 1 for a select; a select sits on several queues,
 * and the first channel to win takes it), copies the value, stores the
 * result and, for a select, unlinks the select's other wnodes on this
 * channel. Only after its unlock does it fire the waiter (the store to
 * `fired`) and wake it (struct chan_wake, async__chan_wake). The waiter may
 * return the moment it sees `fired`, finds everything done, and its caller
 * may free the channel at once (Go code does: the last receive, then drop
 * the channel), so the firer must be done with the channel before the fire.
 * A select that was taken does not lock the winning channel again (select.c,
 * pass 3): the firer already unlinked its wnodes there.
 *
 * Unwaiting. When async__wait returns ETIMEDOUT or ECANCELED, the waiter
 * claims itself (async__waiter_abandon). Winning means nobody took it and
 * nobody will: it locks the channel, unlinks itself if still linked, and
 * reports the failure. Losing means a party took it: the operation happened
 * (or is finishing), so its result stands; the waiter waits for the fire
 * (a window of a few instructions on a running thread) and does not touch
 * the channel, which that party may already have let its caller free.
 *
 * Freeing. A channel may be freed as soon as the last call on it has
 * returned, and by a party that saw a hand-off even while the other party's
 * call is on its way out: no call touches the channel after its operation
 * became visible to the other side (a firer fires after its unlock, a taken
 * waiter never locks the channel again). The one exception is the futex
 * wake of a contended unlock (async__unlock_slow), a system call that only
 * names the lock's address: at worst a spurious wake of whatever waits
 * there, as with glibc's own mutexes.
 *
 * Locks: c->lock per channel. A thread holds at most one channel lock, except
 * chan_select, which holds those of its cases in ascending address order
 * (select.c). Nothing else is locked under a channel lock but parker
 * allocation's leaf lock (a thread's first wait); every fire and wake comes
 * after the unlock.
 *
 * Memory order:
 *   - c->lock (acquire on lock, release on unlock) orders every field of the
 *     channel and the ring's bytes.
 *   - Taken waiter (plain or select): the firer's copy into / out of the
 *     waiter's element and its store to wnode->result happen before its
 *     seq_cst store to w->fired (async__waiter_done); the acquire load of
 *     `fired` (async__wait, async__waiter_await) pairs with it, so the woken
 *     caller reads its element and result lock-free.
 *   - claim: acq_rel CAS, by firers under the lock and by the waiter that
 *     gives up; whoever wins owns the waiter's buffers.
 *   - count: relaxed; chan_len's read is a racy snapshot, as Go's len().
 */
#include "chan_internal.h"

#include <string.h>

/* -------------------------------------------------------------- ring */

static inline size_t ring_count(const struct chan *c)
{
    return atomic_load_explicit(&c->count, memory_order_relaxed);
}

static inline void ring_set_count(struct chan *c, size_t n)
{
    atomic_store_explicit(&c->count, n, memory_order_relaxed);
}

static inline unsigned char *ring_slot(struct chan *c, size_t i)
{
    return c->buf + i * c->elem_size;
}

/* Copy one element; a NULL destination (a receive that discards) or a
 * signal-only channel copies nothing. */
static inline void elem_copy(const struct chan *c, void *dst, const void *src)
{
    if (dst && c->elem_size)
        memcpy(dst, src, c->elem_size);
}

static inline size_t ring_next(const struct chan *c, size_t i)
{
    return ++i == c->cap ? 0 : i;
}

/* -------------------------------------------------------- hand-off */

/*
 * Under c->lock: pop the first waiter of q that this channel may still take,
 * and claim it (the CAS fails for a select that another channel took, or a
 * waiter that gave up: those are dropped). A select's other wnodes on this
 * channel (it may name one channel in several cases) are unlinked now, since
 * the select will not lock this channel again. The caller moves the value
 * and then, after its unlock, fires the waiter: async__chan_wake.
 */
static inline struct async_wnode *wq_take(struct async_wqueue *q, struct chan_wake *cw)
{
    struct async_wnode *n;
    while ((n = async__wq_pop(q)) != NULL) {
        uintptr_t v = n->index == ASYNC_CHAN_SOLO ? 1 : (uintptr_t)n->index + 1;
        if (!async__waiter_claim(n->w, v))
            continue;
        for (struct async_wnode *o = n->same; o && o != n; o = o->same)
            if (o->linked)
                async__wq_remove(o->queue, o);
        cw->taken = n;
        return n;
    }
    return NULL;
}

/* Fire a taken waiter and wake it. No lock held: once fired the waiter (on
 * its caller's stack) may be gone, and so may its channel. */
static inline void wnode_fire(struct async_wnode *n)
{
    struct async_waiter *w = n->w;
    uintptr_t t = w->target;   /* before the fire */
    async__waiter_done(w, atomic_load_explicit(&w->claim, memory_order_relaxed));
    async__wake(t);
}

void async__chan_wake(struct chan_wake *cw)
{
    if (cw->taken)
        wnode_fire(cw->taken);
}

/* Under c->lock, after the value moved: the taken waiter's result (read by
 * the waiter once fired). */
static inline void wnode_done(struct async_wnode *n, int result)
{
    n->result = result;
}

int async__chan_try_send(struct chan *c, const void *elem, struct chan_wake *cw)
{
    if (c->closed)
        return EPIPE;
    struct async_wnode *r = wq_take(&c->recvq, cw);
    if (r) {
        elem_copy(c, r->elem, elem);
        wnode_done(r, 0);
        return 0;
    }
    size_t n = ring_count(c);
    if (n == c->cap)
        return EAGAIN;
    elem_copy(c, ring_slot(c, c->sendx), elem);
    c->sendx = ring_next(c, c->sendx);
    ring_set_count(c, n + 1);
    return 0;
}

/* A sender waits: the ring is full (or absent). Take from the sender, or take
 * the head slot and refill it at the tail with the sender's value. */
static void recv_from_sender(struct chan *c, struct async_wnode *s, void *elem)
{
    if (c->cap == 0) {
        elem_copy(c, elem, s->elem);
    } else {
        unsigned char *head = ring_slot(c, c->recvx);
        elem_copy(c, elem, head);
        elem_copy(c, head, s->elem);
        c->recvx = ring_next(c, c->recvx);
        c->sendx = c->recvx;
    }
    wnode_done(s, 0);
}

int async__chan_try_recv(struct chan *c, void *elem, struct chan_wake *cw)
{
    struct async_wnode *s = wq_take(&c->sendq, cw);
    if (s) {
        recv_from_sender(c, s, elem);
        return 0;
    }
    size_t n = ring_count(c);
    if (n > 0) {
        elem_copy(c, elem, ring_slot(c, c->recvx));
        c->recvx = ring_next(c, c->recvx);
        ring_set_count(c, n - 1);
        return 0;
    }
    return c->closed ? EPIPE : EAGAIN;
}

/* ---------------------------------------------------------- blocking */

/* After a failed wait: give the waiter up, unlinking it, and report rc; or,
 * when a party took it first, wait for its fire: the operation happened and
 * its result stands. The channel is not touched then (the party may have
 * made the hand-off visible to a caller that frees it). */
static int unwait(struct chan *c, struct async_wqueue *q, struct async_wnode *n, int rc)
{
    if (!async__waiter_abandon(n->w)) {
        async__waiter_await(n->w);
        return n->result;
    }
    async__lock(&c->lock);
    if (n->linked)
        async__wq_remove(q, n);
    async__unlock(&c->lock);
    return rc;
}

/*
 * Called with c->lock held after the try returned EAGAIN; returns with it
 * released. elem is the caller's element (read for a send, written for a
 * receive, by the party that takes this waiter).
 */
static int block_on(struct chan *c, struct async_wqueue *q, void *elem, int64_t deadline)
{
    struct async_waiter w;
    int rc = async__waiter_prepare(&w, deadline);
    if (rc != 0) {
        async__unlock(&c->lock);
        return rc;
    }
    struct async_wnode n = { .w = &w, .elem = elem, .index = ASYNC_CHAN_SOLO };
    async__wq_push(q, &n);
    async__unlock(&c->lock);

    async__wait_note(&w, ASYNC_W_CHAN, c, q == &c->sendq ? ASYNC_W_SEND : ASYNC_W_RECV, deadline);
    rc = async__wait(&w, deadline);
    return rc == 0 ? n.result : unwait(c, q, &n, rc);
}

/* Finish a try that did not block: drop the lock, then fire and wake the
 * party. c is not touched after the unlock. */
static int done(struct chan *c, int rc, struct chan_wake *cw)
{
    async__unlock(&c->lock);
    async__chan_wake(cw);
    return rc;
}

/* ------------------------------------------------------- public API */

chan_t *chan_make(size_t elem_size, size_t capacity)
{
    if (elem_size && capacity > SIZE_MAX / elem_size) {
        errno = EINVAL;
        return NULL;
    }
    size_t bytes = elem_size * capacity;
    /* No malloc serves more than PTRDIFF_MAX bytes: answer without asking.
     * A product that fits a size_t is a valid size, only an unservable one
     * (even when the header no longer fits either): ENOMEM, not EINVAL. */
    if (bytes > (size_t)PTRDIFF_MAX - sizeof(struct chan)) {
        errno = ENOMEM;
        return NULL;
    }
    struct chan *c = async__malloc(sizeof(struct chan) + bytes);
    if (!c)
        return NULL;   /* errno ENOMEM */
    atomic_init(&c->lock.word, 0);
    c->closed = false;
    c->elem_size = elem_size;
    c->cap = capacity;
    atomic_init(&c->count, 0);
    c->sendx = c->recvx = 0;
    c->sendq.head = c->sendq.tail = NULL;
    c->recvq.head = c->recvq.tail = NULL;
#if ASYNC_CHECKS
    c->magic = ASYNC_MAGIC_CHAN;
#endif
    return c;
}

int chan_send_until(chan_t *c, const void *elem, int64_t deadline)
{
    if (!c || (!elem && c->elem_size) || async__deadline_valid(deadline))
        return EINVAL;
    ASYNC_CHECK_CHAN(c, "chan_send");
    if (async__cancel_requested())
        return ECANCELED;
    struct chan_wake cw = { 0 };
    async__lock(&c->lock);
    int rc = async__chan_try_send(c, elem, &cw);
    if (rc != EAGAIN)
        return done(c, rc, &cw);
    return block_on(c, &c->sendq, (void *)elem, deadline);
}

int chan_recv_until(chan_t *c, void *elem, int64_t deadline)
{
    if (!c || async__deadline_valid(deadline))
        return EINVAL;
    ASYNC_CHECK_CHAN(c, "chan_recv");
    if (async__cancel_requested())
        return ECANCELED;
    struct chan_wake cw = { 0 };
    async__lock(&c->lock);
    int rc = async__chan_try_recv(c, elem, &cw);
    if (rc != EAGAIN)
        return done(c, rc, &cw);
    return block_on(c, &c->recvq, elem, deadline);
}

int chan_send(chan_t *c, const void *elem)
{
    return chan_send_until(c, elem, ASYNC_FOREVER);
}

int chan_recv(chan_t *c, void *elem)
{
    return chan_recv_until(c, elem, ASYNC_FOREVER);
}

/* Under c->lock: fail every waiter of q with EPIPE, chaining them on *taken
 * (through their `next`, the queue's no more) to be fired after the unlock. */
static void fail_all(struct async_wqueue *q, struct async_wnode **taken)
{
    struct chan_wake cw = { 0 };
    struct async_wnode *n;
    while ((n = wq_take(q, &cw)) != NULL) {
        wnode_done(n, EPIPE);
        n->next = *taken;
        *taken = n;
    }
}

int chan_close(chan_t *c)
{
    if (!c)
        return EINVAL;
    ASYNC_CHECK_CHAN(c, "chan_close");
    struct async_wnode *taken = NULL;
    async__lock(&c->lock);
    if (c->closed) {
        async__unlock(&c->lock);
        return EPIPE;
    }
    c->closed = true;
    fail_all(&c->recvq, &taken);   /* empty unless count == 0 */
    fail_all(&c->sendq, &taken);   /* their values were never taken */
    async__unlock(&c->lock);
    /* c may be freed by a waiter from the first fire on */
    while (taken) {
        struct async_wnode *next = taken->next;   /* before the fire */
        wnode_fire(taken);
        taken = next;
    }
    return 0;
}

size_t chan_len(const chan_t *c)
{
    return c ? ring_count(c) : 0;
}

size_t chan_cap(const chan_t *c)
{
    return c ? c->cap : 0;
}

/* Freeing a channel someone is blocked on would leave that waiter on freed
 * memory, hanging or worse: caught in every build (two loads and a compare;
 * read without the lock: chan_free is not thread-safe, the last user's call
 * has returned, and any waiter still linked is the bug being reported). */
void chan_free(chan_t *c)
{
    if (!c)
        return;
#if ASYNC_CHECKS
    if (c->magic != ASYNC_MAGIC_CHAN)
        async__misuse("chan_free", "channel freed twice", c);
#endif
    if (ASYNC_UNLIKELY(c->sendq.head || c->recvq.head))
        async__misuse("chan_free", "channel freed while a task or thread is blocked on it", c);
#if ASYNC_CHECKS
    c->magic = ASYNC_MAGIC_FREED;
    async__quarantine(c, async__free);
#else
    async__free(c);
#endif
}
