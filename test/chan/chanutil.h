/*
 * test/chan/chanutil.h — what the channel tests and the channel stress
 * programs share: a gate on a channel's wait queues, a ledger that counts
 * loss, duplication and phantom deliveries, and the racing scenarios
 * themselves.
 *
 * Every race the Criterion suite covers is one of the ct_* scenarios below,
 * run by a Criterion test at one size and by a plain stress program (the
 * programs ThreadSanitizer runs) at another. A scenario never asserts: it
 * fills a tally, and the caller judges it.
 */
#ifndef CHANUTIL_H
#define CHANUTIL_H

#include "chan_internal.h"
#include "stressmain.h"
#include "testutil.h"

/* ---------------------------------------------------------------- gates */

/* How many wnodes wait on c's send (CHAN_SEND) or receive queue now. */
size_t ct_queued(chan_t *c, chan_op_t op);
/* Spin until at least k wait there; false when TU_PATIENCE ran out. */
bool   ct_wait_queued(chan_t *c, chan_op_t op, size_t k);
/* Spin until the pool reports at least k blocked workers. */
bool   ct_wait_blocked(async_pool_t *pool, unsigned k);

/* A small per-thread random generator (xorshift) for jitter. */
uint64_t ct_rand(uint64_t *state);

/* --------------------------------------------------------------- ledger */

/*
 * Values are (party << 40 | seq). The ledger has one entry per value that
 * may be sent: its send outcome and how many times it was received. At the
 * end: sent once and received once is right; anything else is loss,
 * duplication or a phantom (received though its send failed or never ran).
 */
struct ct_tally {
    uint64_t sent, failed, received;  /* sends that returned 0 / failed; receipts */
    uint64_t lost;                     /* sent, never received */
    uint64_t duplicated;               /* received more than once */
    uint64_t phantom;                  /* received, yet its send failed or never ran */
    uint64_t misordered;               /* a party's values out of order (where checked) */
    uint64_t errors;                   /* an unexpected return code */
    uint64_t sum_sent, sum_received;   /* checksums over the values */
};

struct ct_ledger {
    size_t        per;       /* values per party */
    size_t        n;         /* parties * per */
    atomic_uchar *state;     /* per value: 0 not sent, 1 sent, 2 failed */
    atomic_uint  *seen;      /* per value: receipts */
    atomic_ulong  errors;
    atomic_ulong  misordered;
    atomic_ulong  sum_received;
};

int      ct_ledger_init(struct ct_ledger *l, size_t parties, size_t per);
void     ct_ledger_fini(struct ct_ledger *l);
uint64_t ct_value(size_t party, size_t seq);
/* A send of v returned rc (0: sent; any other: failed). */
void     ct_ledger_sent(struct ct_ledger *l, uint64_t v, int rc);
void     ct_ledger_seen(struct ct_ledger *l, uint64_t v);
void     ct_ledger_error(struct ct_ledger *l, int rc);
/* Add the ledger's verdict to t. */
void     ct_ledger_tally(struct ct_ledger *l, struct ct_tally *t);

bool     ct_tally_ok(const struct ct_tally *t);
/* One line of counts; "name: ok" or "name: FAILED". */
void     ct_tally_print(const char *name, const struct ct_tally *t);

/* ------------------------------------------------------------ scenarios */

/* How the parties of a scenario run. */
enum ct_mode {
    CT_THREADS,   /* plain threads */
    CT_TASKS,     /* tasks on a pool */
    CT_MIXED,     /* alternately a task and a plain thread */
};

/*
 * producers x consumers over one channel of capacity cap, `items` values in
 * all (split among the producers). Consumers check each producer's values
 * arrive in order (a FIFO channel cannot reorder one sender's values even
 * across receivers). pool: for CT_TASKS / CT_MIXED.
 */
int ct_mpmc(size_t cap, unsigned producers, unsigned consumers, size_t items,
            enum ct_mode mode, async_pool_t *pool, struct ct_tally *t);

/* rounds of: senders send until EPIPE, receivers receive until EPIPE, and
 * the channel is closed at a random point (sometimes with every party
 * blocked). */
int ct_close_race(size_t cap, unsigned senders, unsigned receivers, size_t per_sender,
                  unsigned rounds, struct ct_tally *t);

/* Sends and receives with short random deadlines racing each other: a send
 * that timed out is never received, one that returned 0 exactly once. */
int ct_timeout_race(size_t cap, unsigned senders, unsigned receivers, size_t per_sender,
                    struct ct_tally *t);

/* Threads selecting over nchans channels with random send, receive and NULL
 * cases and random deadlines (0, short, forever), against selecting
 * consumers and plain receivers; then every channel is closed under them. */
int ct_select_race(unsigned nchans, size_t cap, unsigned mixers, unsigned consumers,
                   size_t per_mixer, struct ct_tally *t);

/* rounds of: tasks blocked in chan_send, chan_recv and chan_select on one
 * channel, served by a plain thread, and cancelled at random moments. A
 * cancelled send is never delivered, a cancelled receive takes nothing. */
int ct_cancel_race(async_pool_t *pool, unsigned tasks, unsigned rounds, struct ct_tally *t);

/* A pipeline of `stages` tasks (recv -> send on unbuffered channels) on a
 * new pool of `threads` workers, fed by a plain thread and drained by the
 * caller: every item arrives once, in order. */
int ct_pipeline(unsigned stages, unsigned threads, size_t items, struct ct_tally *t);

/* An unbuffered ping: after each send returns, the sender reads the
 * receiver's element — the receiver must already hold the value. */
int ct_rendezvous(size_t rounds, struct ct_tally *t);

/* ------------------------------------------------------ stress programs */

/* n times the stress scale (stress_scale in stressmain.h: argv[1] or
 * $STRESS_SCALE; sanitizer builds pass 0.25), never below lo. */
size_t ct_scaled(size_t n, double scale, size_t lo);

/* A stress program's score: each scenario's tally printed and judged (ok
 * also requires `expect_ok`, the program's own extra check), then the last
 * line "N passed, M failed"; ct_score_end returns the exit status. */
struct ct_score {
    unsigned passed, failed;
};
void ct_score_add(struct ct_score *s, const char *name, int rc, const struct ct_tally *t,
                  bool expect_ok);
int  ct_score_end(const struct ct_score *s);

#endif /* CHANUTIL_H */
