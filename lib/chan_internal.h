/*
 * lib/chan_internal.h — what chan.c shares with select.c (and with the
 * channel tests, which peek at the wait queues to know when a party is
 * blocked). Never installed.
 *
 * The channel record and its locked primitives: select.c locks the channels
 * of its cases itself and then runs the same try-send / try-receive core as
 * chan_send and chan_recv, so one implementation serves both.
 */
#ifndef ASYNC_CHAN_INTERNAL_H
#define ASYNC_CHAN_INTERNAL_H

#include "internal.h"

/*
 * One channel: a ring of `cap` slots of `elem_size` bytes, in the same
 * allocation, and a FIFO of blocked senders and one of blocked receivers.
 * Field protection is written on each field; the invariants are in chan.c.
 */
struct chan {
    async_lock_t        lock;       /* the channel's short lock */
    bool                closed;     /* guarded by lock; false -> true once */
    size_t              elem_size;  /* immutable after chan_make */
    size_t              cap;        /* immutable after chan_make */
    _Atomic size_t      count;      /* values in the ring; written under lock
                                       (relaxed), read relaxed by chan_len
                                       without it: a snapshot, orders nothing */
    size_t              sendx;      /* guarded by lock: next slot to fill */
    size_t              recvx;      /* guarded by lock: next slot to drain */
    struct async_wqueue sendq;      /* guarded by lock: blocked senders */
    struct async_wqueue recvq;      /* guarded by lock: blocked receivers */
#if ASYNC_CHECKS
    uint32_t            magic;      /* ASYNC_MAGIC_CHAN; _FREED once freed */
#endif
    unsigned char       buf[];      /* cap * elem_size bytes; slots guarded by
                                       lock */
};

/*
 * wnode->index of a plain (non-select) send or receive. Such a waiter sits on
 * exactly one queue and only its channel fires it, under the channel lock, so
 * the firer can fill it in before the firing CAS. A select's wnodes carry
 * their case index (< n) instead; see chan.c on why the two differ.
 */
#define ASYNC_CHAN_SOLO SIZE_MAX

/* The checked build's test of a channel handle (checks.c). */
#if ASYNC_CHECKS
#  define ASYNC_CHECK_CHAN(c, call)                                          \
    do {                                                                     \
        if (ASYNC_UNLIKELY((c)->magic != ASYNC_MAGIC_CHAN))                  \
            async__misuse(call, "channel used after chan_free", (c));        \
    } while (0)
#else
#  define ASYNC_CHECK_CHAN(c, call) ((void)0)
#endif

/*
 * What a hand-off leaves to do once every lock is released: fire the waiter
 * it took (a plain send or receive, or a select), and wake it. Not under the
 * lock: the moment the waiter sees `fired` it may return, and its caller may
 * free the channel, so the firer must be done with the channel first.
 */
struct chan_wake {
    struct async_wnode *taken;   /* claimed under the lock, to fire; or NULL */
};

/*
 * The core, called with c->lock held. Each either completes the operation
 * now and returns 0, or returns EPIPE (closed: a send, or a receive on a
 * drained channel) or EAGAIN (it would block; nothing changed). When the
 * operation handed off to or from a blocked party, *cw says what is left to
 * do for it; pass cw to async__chan_wake once every lock is released (start
 * with { 0 }).
 */
int async__chan_try_send(struct chan *c, const void *elem, struct chan_wake *cw);
int async__chan_try_recv(struct chan *c, void *elem, struct chan_wake *cw);
/* With no channel lock held: fire and wake what a try left. After it,
 * nothing of the channel is touched. */
void async__chan_wake(struct chan_wake *cw);

#endif /* ASYNC_CHAN_INTERNAL_H */
