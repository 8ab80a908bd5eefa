/*
 * lib/select.c — chan_select: wait on several channel operations, perform
 * exactly one.
 *
 * Owns: the select algorithm; nothing persistent (every byte it uses lives
 * on the caller's stack, or in one scratch allocation for many cases).
 *
 * Design (Go's selectgo, in three passes):
 *   pass 1  lock every channel of the cases, in ascending address order (each
 *           distinct channel once), and try the cases in a random order (a
 *           Fisher-Yates shuffle with async__rand): the first that can
 *           proceed — a hand-off, a ring slot, or a closed channel (EPIPE) —
 *           is performed by the same core as chan_send / chan_recv, and is
 *           the answer. Trying every case in a uniformly random order makes
 *           each ready case equally likely to be chosen.
 *   pass 2  none can: deadline 0 answers EAGAIN, a passed deadline
 *           ETIMEDOUT; else, still holding every lock, put one wnode per case
 *           (index = case index) on its channel's send or receive queue, all
 *           for one waiter on this stack; unlock; async__wait.
 *   pass 3  the first channel to take the waiter won the CAS on its
 *           `claim` (value: case index + 1), performed that case, unlinked
 *           our wnodes on that channel and, after its unlock, fired us. We
 *           wait for that fire, then for each case on another channel lock
 *           it, unlink the wnode if still linked, unlock. A wait that failed
 *           (deadline, cancellation) first claims the waiter itself; if it
 *           wins nobody performed anything and every channel is unlinked,
 *           else it goes on as if woken.
 * Futures (CHAN_FUTURE cases). A future is a one-shot channel that is never
 * consumed, so pass 1 looks at its state (one acquire load, under the
 * channel locks but taking no lock of its own) in the same random order as
 * the channels: every ready case, of either kind, is equally likely. Pass 2
 * publishes one wnode per future on its waiter list (future.c's protocol:
 * link under f->lock, then read the state seq_cst; the completer stores the
 * state, then reads the list) after the channel locks are released, so
 * f->lock stays a leaf; a future found done there fires the waiter itself,
 * and the CAS on `claim` settles it against a channel that took it since
 * the unlock. Pass 3 takes each wnode off its future under f->lock. The
 * completer claims and fires the waiter in one step (case index + 1) and
 * wakes it once; pass 3 then unlinks every channel case (no channel took
 * the select); a firing future performs nothing, so its result is read from the future itself.
 * The caller's handle keeps every future alive for the call.
 * Rejected: locking one channel at a time in pass 1 and 2 (crossbeam's way).
 * A channel that became ready after we looked at it but before our wnode was
 * on it would then have to be noticed by re-checking after registration and
 * claiming our own waiter first; holding every lock makes poll-then-enqueue a
 * single atomic step, as Go does, at the cost of holding n short locks.
 *
 * Why the lock order is safe. Pass 1 and 2 hold several channel locks; they
 * are taken in ascending address order, and every other holder of a channel
 * lock (chan.c) holds exactly one and takes no other channel lock under it,
 * so no cycle of waits can form. The same channel appearing in several cases
 * is locked once (the sorted order puts duplicates side by side). Pass 3
 * takes one lock at a time.
 *
 * A hand-off in pass 1 fires the waiter it took only after every lock is
 * released (async__chan_wake): from the fire on, that waiter's caller may
 * free the channel (chan.c, "Freeing").
 *
 * Why pass 3 may read the result, and skips the winning channel. The firer
 * claims us, copies into (or out of) our case's element, stores the result
 * and unlinks our other wnodes on its channel, all under that channel's lock;
 * it fires us (a seq_cst store to `fired`) only after its unlock, and our
 * acquire read of `fired` pairs with it. So once fired, everything we read
 * is complete, nothing of ours is left on the winning channel, and our stack
 * frame is not touched again. We must not lock the winning channel: its
 * other party may have seen the hand-off and freed it. The other channels
 * saw no operation of ours and are still ours to unlock from.
 *
 * A select cannot match itself: its wnodes are queued only in pass 2, after
 * pass 1 has looked at every case, and a queued wnode is taken only by an
 * operation that arrives later.
 *
 * Invariants: during pass 2 and until pass 3 has visited case i, the wnode of
 *   case i is on chan(i)'s queue, or has been popped by a firer of chan(i),
 *   or unlinked by the firer that took the select on chan(i) (a future
 *   case: on its future's list, or taken off by its completer);
 *   after pass 3, no wnode of this select is linked anywhere.
 *   claim == k + 1 (k a case)  =>  exactly case k was performed, and fired
 *   becomes k + 1 once its firer is done; claim == ABANDONED  =>  nothing was.
 * Locks: the channels' locks only; order: ascending address.
 * Memory order: the waiter's `fired` (seq_cst store by the firer after its
 * copy, acquire read in async__wait / async__waiter_await) for the data and
 * the wake-up; `claim` (acq_rel CAS) for who owns our buffers.
 */
#include "chan_internal.h"

#define SELECT_STACK_CASES 16

/* Scratch for one select: per case a wnode, and two orders of the live
 * (non-NULL) cases. */
struct select_scratch {
    struct async_wnode *nodes;   /* [n], indexed by case */
    size_t             *poll;    /* [npoll], random order (channels and futures) */
    size_t             *order;   /* [live], ascending channel address */
    size_t              live;    /* live channel cases */
    size_t              npoll;   /* live cases of both kinds */
    void               *heap;    /* what to free, or NULL */
};

/* ------------------------------------------------------- validation */

static bool is_chan_case(const chan_case_t *cs)
{
    return cs->op != CHAN_FUTURE && cs->chan;
}

static int select_check(const chan_case_t *cases, size_t n, int64_t deadline, size_t *live,
                        size_t *futures)
{
    if (async__deadline_valid(deadline) || (n > 0 && !cases))
        return EINVAL;
    size_t k = 0, nf = 0;
    for (size_t i = 0; i < n; i++) {
        const chan_case_t *cs = &cases[i];
        if (cs->op == CHAN_FUTURE) {
            nf += cs->future != NULL;
            continue;
        }
        if (cs->op != CHAN_SEND && cs->op != CHAN_RECV)
            return EINVAL;
        if (!cs->chan)
            continue;
        if (cs->op == CHAN_SEND && !cs->elem && cs->chan->elem_size)
            return EINVAL;
        k++;
    }
    /* Nothing can ever fire and nothing could end the wait: Go's select {}
     * outside any task is a certain hang. */
    if (k + nf == 0 && deadline == ASYNC_FOREVER && !async__current_task())
        return EINVAL;
    *live = k;
    *futures = nf;
    return 0;
}

/* --------------------------------------------------------- ordering */

static uintptr_t case_key(const chan_case_t *cases, size_t i)
{
    return (uintptr_t)cases[i].chan;
}

/* Sift the entry at j down the max-heap a[0..len). */
static void sift_down(const chan_case_t *cases, size_t *a, size_t j, size_t len)
{
    size_t v = a[j];
    for (;;) {
        size_t k = 2 * j + 1;
        if (k >= len)
            break;
        if (k + 1 < len && case_key(cases, a[k]) < case_key(cases, a[k + 1]))
            k++;
        if (case_key(cases, v) >= case_key(cases, a[k]))
            break;
        a[j] = a[k];
        j = k;
    }
    a[j] = v;
}

/* Heap sort of the live cases by channel address: O(n log n), no memory. */
static void sort_by_chan(const chan_case_t *cases, size_t *a, size_t len)
{
    for (size_t j = len / 2; j-- > 0;)
        sift_down(cases, a, j, len);
    for (size_t end = len; end-- > 1;) {
        size_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(cases, a, 0, end);
    }
}

/* An integer in [0, bound); the modulo bias is below bound / 2^64. */
static size_t rand_below(size_t bound)
{
    return (size_t)(async__rand() % bound);
}

/* poll: the live cases shuffled (inside-out Fisher-Yates); order: the same
 * cases sorted by channel address. */
static void select_orders(const chan_case_t *cases, size_t n, struct select_scratch *s)
{
    size_t k = 0, p = 0;
    for (size_t i = 0; i < n; i++) {
        bool fut = cases[i].op == CHAN_FUTURE && cases[i].future;
        if (!fut && !is_chan_case(&cases[i]))
            continue;
        size_t j = rand_below(p + 1);
        s->poll[p] = s->poll[j];
        s->poll[j] = i;
        p++;
        if (!fut)
            s->order[k++] = i;
    }
    sort_by_chan(cases, s->order, k);
}

static int scratch_init(struct select_scratch *s, size_t n, size_t live, size_t npoll,
                        struct async_wnode *nodes, size_t *idx)
{
    s->live = live;
    s->npoll = npoll;
    s->heap = NULL;
    if (n <= SELECT_STACK_CASES) {
        s->nodes = nodes;
        s->poll = idx;
        s->order = idx + SELECT_STACK_CASES;
        return 0;
    }
    size_t per = sizeof(struct async_wnode) + 2 * sizeof(size_t);
    if (n > SIZE_MAX / per)
        return ENOMEM;
    s->heap = async__malloc(n * per);
    if (!s->heap)
        return ENOMEM;
    s->nodes = s->heap;
    s->poll = (size_t *)(s->nodes + n);
    s->order = s->poll + n;
    return 0;
}

/* ------------------------------------------------------------ locks */

static void lock_all(const chan_case_t *cases, const struct select_scratch *s)
{
    chan_t *prev = NULL;
    for (size_t k = 0; k < s->live; k++) {
        chan_t *c = cases[s->order[k]].chan;
        if (c != prev)
            async__lock(&c->lock);
        prev = c;
    }
}

static void unlock_all(const chan_case_t *cases, const struct select_scratch *s)
{
    chan_t *prev = NULL;
    for (size_t k = 0; k < s->live; k++) {
        chan_t *c = cases[s->order[k]].chan;
        if (c != prev)
            async__unlock(&c->lock);
        prev = c;
    }
}

static struct async_wqueue *case_queue(const chan_case_t *cs)
{
    return cs->op == CHAN_SEND ? &cs->chan->sendq : &cs->chan->recvq;
}

/* ---------------------------------------------------------- futures */

/* A future case's outcome, as future_get's: the value into *(void **)elem
 * on success (elem may be NULL), the slot untouched otherwise. */
static int future_fire(const chan_case_t *cs)
{
    return async__future_outcome(cs->future, (void **)cs->elem);
}

/* Pass 1's look at a future case. */
static bool future_ready(const chan_case_t *cs)
{
    return ASYNC_S_DONE(atomic_load_explicit(&cs->future->state, memory_order_acquire));
}

/* Pass 2b, no channel lock held: publish w on every future case's waiter
 * list (each f->lock a leaf, taken alone). A future found done after its
 * wnode is linked (the completer may have read the list before: the
 * seq_cst pair of future.c) fires w ourselves; the CAS decides against a
 * channel or another future that fired it meanwhile. */
static void futures_enqueue(chan_case_t *cases, struct select_scratch *s,
                            struct async_waiter *w)
{
    for (size_t k = 0; k < s->npoll; k++) {
        size_t i = s->poll[k];
        if (cases[i].op == CHAN_FUTURE)
            s->nodes[i] = (struct async_wnode){ .w = w, .index = i };
    }
    for (size_t k = 0; k < s->npoll; k++) {
        size_t i = s->poll[k];
        if (cases[i].op != CHAN_FUTURE)
            continue;
        struct future *f = cases[i].future;
        struct async_wnode *nd = &s->nodes[i];
        async__lock(&f->lock);
        async__future_link(f, nd);
        bool done = ASYNC_S_DONE(atomic_load_explicit(&f->state, memory_order_seq_cst));
        async__unlock(&f->lock);
        if (done) {
            async__waiter_fire(w, i + 1);
            return;   /* fired (by us or another): no need to publish more */
        }
    }
}

/* Pass 3b: take every wnode of ours off the futures; a future that fired
 * unlinked it already. Nothing of the future is touched afterwards except
 * through the caller's own handle. */
static void futures_unlink(chan_case_t *cases, struct select_scratch *s)
{
    for (size_t k = 0; k < s->npoll; k++) {
        size_t i = s->poll[k];
        if (cases[i].op != CHAN_FUTURE)
            continue;
        struct future *f = cases[i].future;
        async__lock(&f->lock);
        async__future_unlink(f, &s->nodes[i]);   /* no-op when not linked */
        async__unlock(&f->lock);
    }
}

/* ----------------------------------------------------------- passes */

/* Pass 1, every lock held: perform the first ready case in poll order.
 * EAGAIN when none is ready; locks are still held either way. */
static int pass_poll(chan_case_t *cases, const struct select_scratch *s, size_t *which,
                     struct chan_wake *cw)
{
    for (size_t k = 0; k < s->npoll; k++) {
        size_t i = s->poll[k];
        chan_case_t *cs = &cases[i];
        if (cs->op == CHAN_FUTURE) {
            if (!future_ready(cs))
                continue;
            *which = i;
            return future_fire(cs);   /* any code, EAGAIN included */
        }
        int rc = cs->op == CHAN_SEND ? async__chan_try_send(cs->chan, cs->elem, cw)
                                     : async__chan_try_recv(cs->chan, cs->elem, cw);
        if (rc != EAGAIN) {
            *which = i;
            return rc;
        }
    }
    return EAGAIN;
}

/* Pass 2, every lock held: queue one wnode per live case for waiter w. The
 * wnodes of one channel (side by side in address order) form a ring through
 * `same`, so that the channel that takes the select unlinks them all. */
static void pass_enqueue(chan_case_t *cases, struct select_scratch *s, struct async_waiter *w)
{
    struct async_wnode *first = NULL;   /* of the current channel's run */
    for (size_t k = 0; k < s->live; k++) {
        size_t i = s->order[k];
        struct async_wnode *nd = &s->nodes[i];
        struct async_wqueue *q = case_queue(&cases[i]);
        *nd = (struct async_wnode){ .w = w, .queue = q, .elem = cases[i].elem, .index = i };
        if (k > 0 && cases[s->order[k - 1]].chan == cases[i].chan) {
            struct async_wnode *prev = &s->nodes[s->order[k - 1]];
            prev->same = nd;
            nd->same = first;   /* close the ring; the next one reopens it */
        } else {
            first = nd;
        }
        async__wq_push(q, nd);
    }
}

/* Pass 3: unlink every wnode still queued, each channel locked in turn,
 * except on `taken`, the channel that took the select (NULL: none did),
 * which unlinked them itself and may be freed by now (chan.c, "Freeing"). */
static void pass_unlink(chan_case_t *cases, struct select_scratch *s, const chan_t *taken)
{
    for (size_t k = 0; k < s->live; k++) {
        size_t i = s->order[k];
        chan_t *c = cases[i].chan;
        if (c == taken)
            continue;
        async__lock(&c->lock);
        async__wq_remove(case_queue(&cases[i]), &s->nodes[i]);
        async__unlock(&c->lock);
    }
}

/* Passes 2 and 3, entered with every lock held. */
static int select_block(chan_case_t *cases, struct select_scratch *s, int64_t deadline,
                        size_t *which)
{
    struct async_waiter w;
    int rc = async__waiter_prepare(&w, deadline);
    if (rc != 0) {
        unlock_all(cases, s);
        return rc;
    }
    pass_enqueue(cases, s, &w);
    unlock_all(cases, s);
    if (s->npoll > s->live)
        futures_enqueue(cases, s, &w);

    async__wait_note(&w, ASYNC_W_SELECT, NULL, (uint32_t)s->npoll, deadline);
    rc = atomic_load_explicit(&w.fired, memory_order_acquire) ? 0 : async__wait(&w, deadline);
    if (rc != 0 && async__waiter_abandon(&w)) {
        pass_unlink(cases, s, NULL);
        if (s->npoll > s->live)
            futures_unlink(cases, s);
        return rc;   /* ETIMEDOUT or ECANCELED: nothing was performed */
    }
    uintptr_t won = async__waiter_await(&w);   /* at once after a wake */
    const chan_case_t *wc = &cases[won - 1];
    pass_unlink(cases, s, wc->op == CHAN_FUTURE ? NULL : wc->chan);
    if (s->npoll > s->live)
        futures_unlink(cases, s);
    *which = (size_t)(won - 1);
    if (wc->op == CHAN_FUTURE)
        return future_fire(wc);
    return s->nodes[won - 1].result;
}

/* No case can ever fire: wait for the deadline or a cancellation. */
static int select_nothing(int64_t deadline)
{
    if (deadline == 0)
        return EAGAIN;
    if (async__deadline_passed(deadline))
        return ETIMEDOUT;
    struct async_waiter w;
    int rc = async__waiter_init(&w);
    if (rc != 0)
        return rc;
    async__wait_note(&w, ASYNC_W_SELECT, NULL, 0, deadline);
    return async__wait(&w, deadline);   /* never fired */
}

/* ------------------------------------------------------- public API */

int chan_select(chan_case_t *cases, size_t n, int64_t deadline, size_t *fired)
{
    size_t live = 0, futures = 0;
    int rc = select_check(cases, n, deadline, &live, &futures);
    if (rc != 0)
        return rc;
    if (async__cancel_requested())
        return ECANCELED;
    if (live + futures == 0)
        return select_nothing(deadline);

    struct async_wnode nodes[SELECT_STACK_CASES];
    size_t idx[2 * SELECT_STACK_CASES];
    struct select_scratch s;
    rc = scratch_init(&s, n, live, live + futures, nodes, idx);
    if (rc != 0)
        return rc;
    select_orders(cases, n, &s);

    struct chan_wake cw = { 0 };
    size_t which = SIZE_MAX;
    lock_all(cases, &s);
    rc = pass_poll(cases, &s, &which, &cw);
    if (which != SIZE_MAX) {
        unlock_all(cases, &s);
        async__chan_wake(&cw);   /* no channel is touched after it */
    } else {
        which = SIZE_MAX;
        rc = select_block(cases, &s, deadline, &which);
    }
    async__free(s.heap);
    if (fired && which != SIZE_MAX)
        *fired = which;
    return rc;
}
