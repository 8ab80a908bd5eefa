/*
 * async/chan.h — Go's channels: typed by element size, bounded, with
 * capacity 0 an unbuffered rendezvous, closable, FIFO; and chan_select.
 *
 * A channel carries elements of a fixed size, copied in and out by value. A
 * buffered channel (capacity > 0) holds up to capacity elements: a send
 * blocks only while it is full, a receive only while it is empty. An
 * unbuffered channel (capacity 0) is a rendezvous: a send returns only once a
 * receiver has taken the value. A value sent to a blocked receiver goes
 * straight into that receiver's element and wakes only that receiver. Values
 * leave a channel in the order they entered it; blocked senders and blocked
 * receivers are served first come, first served. Element size 0 makes a
 * channel of signals (elements may then be NULL).
 *
 * Closing is for the sending side: it wakes every blocked sender (EPIPE: the
 * value was not sent) and every blocked receiver; receivers first drain what
 * is buffered, then get EPIPE. A closed channel answers EPIPE even to a poll
 * (deadline 0): closed wins over would-block, in chan_select too. A value is
 * never lost, never delivered twice, and never both delivered and reported
 * as failed: whatever a call returns is what happened.
 *
 * Deadlines (see async/common.h): each blocking call has an _until form;
 * ASYNC_FOREVER waits forever, 0 polls (EAGAIN: it would block), any other
 * value is an async_now() instant (ETIMEDOUT once it passes). An operation
 * that can complete at once completes even when the deadline has passed.
 *
 * Channels are usable from pool tasks and plain threads alike. A task blocked
 * in a channel operation counts as a blocked worker (the pool may start a
 * replacement). Cancellation: inside a task whose cancellation is requested
 * (future_cancel, or an ASYNC_CANCEL shutdown of its pool), chan_send,
 * chan_recv, their _until forms and chan_select return ECANCELED at once and
 * perform nothing, even when they could complete immediately; one already
 * blocked is woken and does the same. chan_close, chan_len, chan_cap and
 * chan_free never block and ignore cancellation (so a cancelled task can still
 * close the channels it produces to, e.g. from a deferred function).
 *
 * Argument errors (EINVAL) are reported before any other outcome.
 */
#ifndef ASYNC_CHAN_H
#define ASYNC_CHAN_H

#include <async/common.h>
#include <async/future.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chan chan_t;

/* CHAN_FUTURE: a future is a one-shot channel; the case is ready once the
 * future is done, in any outcome (see chan_select). */
typedef enum chan_op { CHAN_SEND, CHAN_RECV, CHAN_FUTURE } chan_op_t;

typedef struct chan_case {
    chan_t   *chan;     /* CHAN_SEND / CHAN_RECV; NULL: never ready, like
                           Go's nil channel */
    chan_op_t op;
    void     *elem;     /* what to send, or where to receive; CHAN_FUTURE: a
                           void * slot for the future's value, or NULL */
    future_t *future;   /* CHAN_FUTURE: ready once it is done; NULL: never
                           ready. Ignored by the other ops. */
} chan_case_t;

/*
 * chan_make — a new, open, empty channel.
 *   elem_size:     bytes per element; 0 for a channel of signals.
 *   capacity:      how many elements it buffers; 0 for an unbuffered
 *                  (rendezvous) channel. A signal channel may have any
 *                  capacity: it then only counts.
 *   Blocks:        no.
 *   Thread-safety: any thread.
 *   Ownership:     the caller owns the channel and ends it with chan_free.
 *                  The buffer is allocated here, once; no operation allocates
 *                  afterwards (except a thread's very first wait, see below).
 *   Returns:       the channel, or NULL with errno: EINVAL (elem_size *
 *                  capacity does not fit a size_t), ENOMEM (no memory for the
 *                  buffer, including sizes no allocator can serve).
 */
ASYNC_API chan_t *chan_make(size_t elem_size, size_t capacity);

/*
 * chan_send — send the element at elem, waiting as long as it takes.
 *   elem:          elem_size bytes, copied out before the call returns 0;
 *                  may be NULL only when elem_size is 0.
 *   Blocks:        while the channel is open and full (unbuffered: until a
 *                  receiver has taken the value).
 *   Thread-safety: any number of senders, receivers and closers at once.
 *   Ownership:     elem stays the caller's; the channel keeps a copy.
 *   Returns:       0 (sent: a receiver holds the value, or it is buffered);
 *                  EPIPE (the channel is closed, or was closed while this
 *                  call waited: the value was not sent);
 *                  ECANCELED (the calling task's cancellation was requested:
 *                  nothing was sent);
 *                  ENOMEM (this thread's first wait found no memory for its
 *                  parker: nothing was sent);
 *                  EINVAL (c NULL, or elem NULL with elem_size > 0).
 */
ASYNC_API int chan_send(chan_t *c, const void *elem);

/*
 * chan_recv — receive one element into elem, waiting as long as it takes.
 *   elem:          where the elem_size bytes go; NULL discards the value.
 *   Blocks:        while the channel is open and empty with no blocked
 *                  sender.
 *   Thread-safety: any number of senders, receivers and closers at once.
 *   Ownership:     elem is the caller's; it is written only when 0 is
 *                  returned.
 *   Returns:       0 (received; a blocked sender of a full or unbuffered
 *                  channel is released);
 *                  EPIPE (closed, and nothing buffered is left);
 *                  ECANCELED (calling task cancelled: nothing received);
 *                  ENOMEM (this thread's first wait found no memory for its
 *                  parker: nothing received);
 *                  EINVAL (c NULL).
 */
ASYNC_API int chan_recv(chan_t *c, void *elem);

/*
 * chan_send_until — chan_send with a deadline.
 *   Blocks:        as chan_send, until the deadline at most; deadline 0
 *                  never blocks.
 *   Thread-safety: as chan_send.
 *   Ownership:     as chan_send.
 *   Returns:       as chan_send, plus EAGAIN (deadline 0 and the send would
 *                  block), ETIMEDOUT (the deadline passed first: nothing
 *                  sent), EINVAL (deadline below -1). A send that can
 *                  complete at once does so whatever the deadline.
 */
ASYNC_API int chan_send_until(chan_t *c, const void *elem, int64_t deadline);

/*
 * chan_recv_until — chan_recv with a deadline.
 *   Blocks:        as chan_recv, until the deadline at most; deadline 0
 *                  never blocks.
 *   Thread-safety: as chan_recv.
 *   Ownership:     as chan_recv.
 *   Returns:       as chan_recv, plus EAGAIN (deadline 0, open and nothing
 *                  to receive), ETIMEDOUT (the deadline passed first: nothing
 *                  received), EINVAL (deadline below -1).
 */
ASYNC_API int chan_recv_until(chan_t *c, void *elem, int64_t deadline);

/*
 * chan_close — close the channel: no more sends.
 *   Every blocked sender returns EPIPE (its value was not sent); every
 *   blocked receiver returns EPIPE (it waited, so nothing was buffered);
 *   later receives drain what is buffered, then return EPIPE.
 *   Blocks:        no. Not affected by cancellation.
 *   Thread-safety: any thread, concurrently with any operation but
 *                  chan_free.
 *   Ownership:     the channel stays the caller's; close does not free it.
 *   Returns:       0; EPIPE (already closed); EINVAL (c NULL).
 */
ASYNC_API int chan_close(chan_t *c);

/*
 * chan_len — how many elements are buffered now.
 *   Blocks:        no.
 *   Thread-safety: any thread; under concurrent use the answer is a snapshot
 *                  that may already be stale, as Go's len().
 *   Returns:       0..capacity; 0 for an unbuffered channel and for NULL.
 */
ASYNC_API size_t chan_len(const chan_t *c);

/*
 * chan_cap — the capacity given to chan_make.
 *   Blocks:        no.
 *   Thread-safety: any thread.
 *   Returns:       the capacity; 0 for NULL.
 */
ASYNC_API size_t chan_cap(const chan_t *c);

/*
 * chan_free — free the channel and whatever it still buffers.
 *   Blocks:        no.
 *   Thread-safety: not thread-safe: no one may be using the channel, or use
 *                  it afterwards (no operation in flight, none blocked).
 *                  A party that saw a hand-off may free it at once: a
 *                  receiver that got the last value even while the sender's
 *                  chan_send (or chan_select, or a chan_close's waking) is
 *                  still on its way out, since no call touches the channel
 *                  once its operation is visible to the other side.
 *   Ownership:     ends the caller's ownership. Buffered values are dropped:
 *                  they are bytes, so anything they point to stays the
 *                  caller's. NULL is a no-op.
 *   Misuse:        freeing a channel that a task or thread is still blocked
 *                  on aborts, in every build, with a message naming the call
 *                  and the channel. The checked build (-Dchecks) also aborts
 *                  on a second chan_free and on a channel call after it.
 */
ASYNC_API void chan_free(chan_t *c);

/*
 * chan_select — wait until one of n channel operations can proceed, and
 *                  perform exactly that one (Go's select).
 *   cases:         n operations. A case whose chan is NULL never fires; a
 *                  send case's elem is read, a receive case's elem written
 *                  (NULL discards), as by chan_send / chan_recv, and only for
 *                  the case that fires. The same channel may appear in
 *                  several cases.
 *                  A CHAN_FUTURE case (chan ignored) is ready once its
 *                  future is done, in any outcome, and a NULL future never
 *                  is. Firing it returns what future_get would: 0 with the
 *                  value stored in *(void **)elem when elem is not NULL, or
 *                  the future's failure code, ECANCELED (it was cancelled)
 *                  or EPIPE (a broken promise), the slot then untouched. It
 *                  consumes nothing: a done future stays ready. One wait
 *                  covers channels and futures together.
 *   fired:         NULL, or receives the index of the case performed
 *                  whenever one fired: when 0 or EPIPE is returned, and
 *                  when a CHAN_FUTURE case fired with its future's failure
 *                  (so a future's ECANCELED is told apart from the calling
 *                  task's own); untouched otherwise.
 *   deadline:      0 is Go's `default:` — perform a ready case or return
 *                  EAGAIN at once.
 *   Choice:        among the cases ready at the call, one is chosen
 *                  uniformly at random; a closed channel is ready (EPIPE). Once
 *                  it waits, the first case that becomes ready fires.
 *   Blocks:        until a case fires, the deadline, or the calling task's
 *                  cancellation. With no case that can ever fire (n == 0 —
 *                  cases may then be NULL — or only NULL channels and
 *                  futures) it waits
 *                  for the deadline like any other; with ASYNC_FOREVER it
 *                  blocks until its task is cancelled (Go's `select {}`).
 *   Thread-safety: any number of selects and plain operations on the same
 *                  channels at once.
 *   Ownership:     cases, their elements and futures stay the caller's and
 *                  are not used after the call returns (the caller's handle
 *                  on each future must stay valid during the call; other
 *                  handles may be freed meanwhile).
 *   Returns:       0 (the case *fired was performed);
 *                  a CHAN_FUTURE case's outcome (case *fired: as future_get);
 *                  EPIPE (case *fired is on a closed channel: a send on it,
 *                  or a receive on it with nothing left buffered);
 *                  EAGAIN (deadline 0 and no case ready);
 *                  ETIMEDOUT (the deadline passed first: nothing performed);
 *                  ECANCELED (calling task cancelled: nothing performed);
 *                  ENOMEM (no memory for the bookkeeping of more than 16
 *                  cases, or for this thread's first parker: nothing
 *                  performed);
 *                  EINVAL (cases NULL with n > 0, an op other than CHAN_SEND,
 *                  CHAN_RECV or CHAN_FUTURE, a send case with elem NULL on a channel
 *                  whose elem_size > 0, a deadline below -1, or ASYNC_FOREVER
 *                  with no case that can ever fire outside any task, where
 *                  nothing could end the wait).
 */
ASYNC_API int chan_select(chan_case_t *cases, size_t n, int64_t deadline, size_t *fired);

#ifdef __cplusplus
}
#endif

#endif /* ASYNC_CHAN_H */
