/*
 * safely_do.c — the seed's server/safelyDo: a failing goroutine is stopped and
 * logged without disturbing the others.
 *
 *     func server(workChan <-chan *Work) {
 *         for work := range workChan {
 *             go safelyDo(work)   // start the goroutine for that work
 *         }
 *     }
 *     func safelyDo(work *Work) {
 *         defer func() {
 *             if err := recover(); err != nil {
 *                 log.Printf("Work failed with %s in %v", err, work)
 *             }
 *         }()
 *         do(work)
 *     }
 *
 * In C, with a shutdown Go would add through a context:
 *   - workChan is a channel of work_t pointers; `for work := range workChan`
 *     is `while (chan_recv(work_chan, &work) == 0)`, which ends with EPIPE
 *     once main closes the channel and the server has taken every item.
 *   - `go safelyDo(work)` is async_scope_run(requests, safely_do, work): the
 *     server runs its requests in a scope, so that it ends only once every
 *     request it started has ended (async_scope_close), and so that stopping
 *     the server stops them all: the scope, opened inside the server's task,
 *     is that task's child, and future_cancel of the server cancels every
 *     request in flight (their blocked calls return ECANCELED).
 *   - do() fails with async_panic. The pool is the deferred recover: it unwinds
 *     the task, runs what the task deferred, writes one line through the log
 *     hook given to async_pool_create, and completes the task's future as
 *     FAILED with the panic's code and message (future_error). The worker
 *     goes on with the next task; the other tasks never notice.
 *   - A panic unwinds with longjmp, skipping C frames: a resource the task
 *     holds is released by async_defer, which runs on return and on panic.
 *
 * Each work item is a division; a zero divisor or a negative dividend makes
 * do() panic. The last three items are long (a minute each): they are still
 * in flight when main shuts the server down, and each one stops as soon as
 * its sleep returns ECANCELED. At the end main prints each item's outcome
 * (future_state, future_error) and a summary.
 *
 * Usage: safely_do [--scale F]   (F multiplies the 20 ms each work takes)
 */
#include <async.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct work {
    int       id;
    int       dividend, divisor;
    int       ms;          /* how long the work takes, before --scale */
    int       quotient;    /* written by its task; read by main after the server ended */
    bool      cancelled;   /* written by its task; read as quotient */
    future_t *future;      /* written by the server; read by main after it ended */
} work_t;

static double        scale = 1.0;   /* set once in main before any task starts */
static async_pool_t *pool;          /* set once in main before any task starts */
static chan_t       *progress;      /* ids: a short work ended, a long one started,
                                       or (0) the pool logged a failure */
static atomic_int    logged;        /* lines the pool wrote through log_line */

/* The pool's log hook: called from a worker, maybe several at once. */
static void log_line(void *ctx, const char *line)
{
    (void)ctx;
    size_t len = strlen(line);
    while (len > 0 && line[len - 1] == '\n')
        len--;
    printf("log: %.*s\n", (int)len, line);
    atomic_fetch_add(&logged, 1);
    int none = 0;
    chan_send(progress, &none);   /* the pool logs after the task's defers ran */
}

static void tell_progress(void *arg)
{
    work_t *work = arg;
    chan_send(progress, &work->id);   /* buffered for every item: never blocks */
}

static void do_work(work_t *work, char *scratch, size_t size)
{
    bool is_long = work->ms > 1000;
    if (is_long)
        tell_progress(work);   /* in flight */
    else if (async_defer(tell_progress, work) != 0) {   /* ended, on return or panic */
        tell_progress(work);
        async_panic(ENOMEM, "no memory for work #%d", work->id);
    }
    int64_t took = (int64_t)(work->ms * scale * (double)ASYNC_MILLISECOND);
    if (async_sleep_until(async_now() + took) == ECANCELED) {   /* the work */
        work->cancelled = true;
        printf("work #%d: cancelled\n", work->id);
        return;
    }
    if (work->divisor == 0)
        async_panic(EDOM, "cannot divide %d by zero", work->dividend);
    if (work->dividend < 0)
        async_panic(ERANGE, "negative input %d", work->dividend);
    work->quotient = work->dividend / work->divisor;
    snprintf(scratch, size, "%d / %d = %d", work->dividend, work->divisor,
             work->quotient);
    printf("work #%d: %s\n", work->id, scratch);
}

static void *safely_do(void *arg)
{
    work_t *work = arg;
    char *scratch = malloc(64);   /* a resource held while do() runs */
    if (scratch == NULL)
        async_panic(ENOMEM, "no memory for work #%d", work->id);
    if (async_defer(free, scratch) != 0) {   /* released on return and on panic */
        free(scratch);
        async_panic(ENOMEM, "no memory for work #%d", work->id);
    }
    do_work(work, scratch, 64);
    return NULL;
}

/* Returns async_scope_close's answer: 0, the first failure's code, or
 * ECANCELED. */
static void *server(void *arg)
{
    chan_t *work_chan = arg;
    async_scope_t *requests = async_scope_open(pool, 0, ASYNC_FOREVER);
    if (requests == NULL)
        return (void *)(intptr_t)errno;
    work_t *work;
    /* range over the channel: ends with EPIPE once it is closed, or with
     * ECANCELED when the server is cancelled */
    while (chan_recv(work_chan, &work) == 0) {
        work->future = async_scope_run(requests, safely_do, work);
        if (work->future == NULL)
            fprintf(stderr, "work #%d not started: %s\n", work->id, strerror(errno));
    }
    return (void *)(intptr_t)async_scope_close(requests);   /* waits for every request */
}

/* Hand every item to the server through the channel. */
static int feed(chan_t *work_chan, work_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        work_t *work = &items[i];
        int err = chan_send(work_chan, &work);
        if (err != 0)
            return err;
    }
    return 0;
}

/* Wait until every short work has ended (and each failure is logged) and
 * every long one is in flight: n messages. */
static int await_progress(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int id, err = chan_recv(progress, &id);
        if (err != 0)
            return err;
    }
    return 0;
}

static void report(work_t *items, size_t n)
{
    int ok = 0, failed = 0, cancelled = 0;
    for (size_t i = 0; i < n; i++) {
        work_t *work = &items[i];
        if (future_state(work->future) == FUTURE_SUCCEEDED && work->cancelled) {
            printf("Work cancelled at shutdown: work #%d (%d / %d)\n", work->id,
                   work->dividend, work->divisor);
            cancelled++;
        } else if (future_state(work->future) == FUTURE_SUCCEEDED) {
            ok++;
        } else {
            printf("Work failed with \"%s\" in work #%d (%d / %d)\n", future_error(work->future),
                   work->id, work->dividend, work->divisor);
            failed++;
        }
        future_free(work->future);
    }
    printf("summary: %d ok, %d failed, %d cancelled, %d logged\n", ok, failed, cancelled,
           atomic_load(&logged));
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--scale") == 0)
        scale = strtod(argv[2], NULL);
    if (argc != 1 && !(argc == 3 && scale > 0)) {
        fprintf(stderr, "usage: %s [--scale F]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    enum { SHORT = 20, LONG = 60000 };   /* ms */
    work_t items[] = {
        {1, 84, 2, SHORT, 0, 0, NULL},   {2, 7, 0, SHORT, 0, 0, NULL},
        {3, 99, 9, SHORT, 0, 0, NULL},   {4, 10, 5, SHORT, 0, 0, NULL},
        {5, -4, 2, SHORT, 0, 0, NULL},   {6, 1, 0, SHORT, 0, 0, NULL},
        {7, 64, 8, SHORT, 0, 0, NULL},   {8, 45, 3, SHORT, 0, 0, NULL},
        {9, 12, 4, SHORT, 0, 0, NULL},   {10, 30, 0, SHORT, 0, 0, NULL},
        {11, 81, 27, SHORT, 0, 0, NULL}, {12, 100, 10, SHORT, 0, 0, NULL},
        {13, 50, 5, LONG, 0, 0, NULL},   {14, 70, 7, LONG, 0, 0, NULL},
        {15, 90, 3, LONG, 0, 0, NULL},
    };
    size_t n = sizeof items / sizeof items[0];

    async_pool_config_t config = {.threads = 2, .name = "server", .log = log_line};
    pool = async_pool_create(&config);
    chan_t *work_chan = chan_make(sizeof(work_t *), 0);
    progress = chan_make(sizeof(int), 2 * n);
    future_t *srv = pool && work_chan && progress ? async_run_on(pool, server, work_chan) : NULL;
    if (srv == NULL) {
        perror("setup");
        return 1;
    }
    size_t failing = 0;
    for (size_t i = 0; i < n; i++)
        failing += items[i].ms < LONG && (items[i].divisor == 0 || items[i].dividend < 0);
    int err = feed(work_chan, items, n);
    if (err == 0)
        err = await_progress(n + failing);
    if (err == 0) {
        /* The shutdown: stop the server, and with it (its scope is the
         * server task's child) every request still in flight. */
        printf("shutdown: cancelling the server\n");
        future_cancel(srv);
        void *closed = NULL;
        err = future_get(srv, &closed);   /* the server closed its scope */
        int rc = (int)(intptr_t)closed;   /* the first failure's code wins */
        if (err == 0)
            printf("server: stopped; its scope reports %s\n",
                   rc == 0 ? "success" : rc == ECANCELED ? "cancellation" : "a failed request");
    }
    future_free(srv);
    async_pool_destroy(pool, ASYNC_DRAIN);
    chan_free(work_chan);
    chan_free(progress);
    if (err != 0) {
        fprintf(stderr, "server: %s\n", strerror(err));
        return 1;
    }
    report(items, n);
    return 0;
}

/*
 * Output (the work and log lines come in any order: the tasks run at once;
 * the text after "log: " is the pool's own line; the three "cancelled" lines
 * come in any order too):
 *
 * work #1: 84 / 2 = 42
 * work #3: 99 / 9 = 11
 * log: pool server task 0x7fa5c8000b70 fn 0x55d0c1a4e660: panic: cannot divide 7 by zero (error 33)
 * work #4: 10 / 5 = 2
 * log: pool server task 0x7fa5c8000c60 fn 0x55d0c1a4e660: panic: negative input -4 (error 34)
 * log: pool server task 0x7fa5c8000c60 fn 0x55d0c1a4e660: panic: cannot divide 1 by zero (error 33)
 * work #7: 64 / 8 = 8
 * work #8: 45 / 3 = 15
 * work #9: 12 / 4 = 3
 * log: pool server task 0x7fa5c8000df0 fn 0x55d0c1a4e660: panic: cannot divide 30 by zero (error 33)
 * work #11: 81 / 27 = 3
 * work #12: 100 / 10 = 10
 * shutdown: cancelling the server
 * work #13: cancelled
 * work #14: cancelled
 * work #15: cancelled
 * server: stopped; its scope reports a failed request
 * Work failed with "cannot divide 7 by zero" in work #2 (7 / 0)
 * Work failed with "negative input -4" in work #5 (-4 / 2)
 * Work failed with "cannot divide 1 by zero" in work #6 (1 / 0)
 * Work failed with "cannot divide 30 by zero" in work #10 (30 / 0)
 * Work cancelled at shutdown: work #13 (50 / 5)
 * Work cancelled at shutdown: work #14 (70 / 7)
 * Work cancelled at shutdown: work #15 (90 / 3)
 * summary: 8 ok, 4 failed, 3 cancelled, 4 logged
 */
