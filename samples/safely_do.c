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
 * In C:
 *   - workChan is a channel of work_t pointers; `for work := range workChan`
 *     is `while (chan_recv(work_chan, &work) == 0)`, which ends with EPIPE
 *     once main closes the channel and the server has taken every item.
 *   - `go safelyDo(work)` is async_run_on(pool, safely_do, work).
 *   - do() fails with async_panic. The pool is the deferred recover: it unwinds
 *     the task, runs what the task deferred, writes one line through the log
 *     hook given to async_pool_create, and completes the task's future as
 *     FAILED with the panic's code and message (future_error). The worker
 *     goes on with the next task; the other tasks never notice.
 *   - A panic unwinds with longjmp, skipping C frames: a resource the task
 *     holds is released by async_defer, which runs on return and on panic.
 *
 * Each work item is a division; a zero divisor or a negative dividend makes
 * do() panic. At the end main prints each item's outcome (future_state,
 * future_error) and a summary.
 *
 * Usage: safely_do [--scale F]   (F multiplies the 20 ms each work takes)
 */
#include <async.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct work {
    int       id;
    int       dividend, divisor;
    int       quotient;   /* written by its task; read by main after the pool is gone */
    future_t *future;     /* written by the server; read by main after the pool is gone */
} work_t;

static double        scale = 1.0;   /* set once in main before any task starts */
static async_pool_t *pool;          /* set once in main before any task starts */
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
}

static void do_work(work_t *work, char *scratch, size_t size)
{
    async_sleep((int64_t)(20 * scale * (double)ASYNC_MILLISECOND));   /* the work */
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

static void *server(void *arg)
{
    chan_t *work_chan = arg;
    work_t *work;
    while (chan_recv(work_chan, &work) == 0) {   /* range over the channel */
        work->future = async_run_on(pool, safely_do, work);
        if (work->future == NULL)
            fprintf(stderr, "work #%d not started: %s\n", work->id, strerror(errno));
    }
    return NULL;
}

/* Hand every item to the server through the channel, then close it. */
static int feed(chan_t *work_chan, work_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        work_t *work = &items[i];
        int err = chan_send(work_chan, &work);
        if (err != 0)
            return err;
    }
    return chan_close(work_chan);   /* ends the server's range loop */
}

static void report(work_t *items, size_t n)
{
    int ok = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        work_t *work = &items[i];
        if (future_state(work->future) == FUTURE_SUCCEEDED) {
            ok++;
        } else {
            printf("Work failed with \"%s\" in work #%d (%d / %d)\n", future_error(work->future),
                   work->id, work->dividend, work->divisor);
            failed++;
        }
        future_free(work->future);
    }
    printf("summary: %d ok, %d failed, %d logged\n", ok, failed, atomic_load(&logged));
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

    work_t items[] = {
        {1, 84, 2, 0, NULL},  {2, 7, 0, 0, NULL},    {3, 99, 9, 0, NULL},
        {4, 10, 5, 0, NULL},  {5, -4, 2, 0, NULL},   {6, 1, 0, 0, NULL},
        {7, 64, 8, 0, NULL},  {8, 45, 3, 0, NULL},   {9, 12, 4, 0, NULL},
        {10, 30, 0, 0, NULL}, {11, 81, 27, 0, NULL}, {12, 100, 10, 0, NULL},
    };
    size_t n = sizeof items / sizeof items[0];

    async_pool_config_t config = {.threads = 2, .name = "server", .log = log_line};
    pool = async_pool_create(&config);
    chan_t *work_chan = chan_make(sizeof(work_t *), 0);
    future_t *srv = pool && work_chan ? async_run_on(pool, server, work_chan) : NULL;
    if (srv == NULL) {
        perror("setup");
        return 1;
    }
    int err = feed(work_chan, items, n);
    if (err == 0)
        err = future_get(srv, NULL);   /* every item has been started */
    future_free(srv);
    async_pool_destroy(pool, ASYNC_DRAIN);   /* waits for every safelyDo */
    chan_free(work_chan);
    if (err != 0) {
        fprintf(stderr, "server: %s\n", strerror(err));
        return 1;
    }
    report(items, n);
    return 0;
}

/*
 * Output (the work and log lines come in any order: the tasks run at once;
 * the text after "log: " is the pool's own line):
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
 * Work failed with "cannot divide 7 by zero" in work #2 (7 / 0)
 * Work failed with "negative input -4" in work #5 (-4 / 2)
 * Work failed with "cannot divide 1 by zero" in work #6 (1 / 0)
 * Work failed with "cannot divide 30 by zero" in work #10 (30 / 0)
 * summary: 8 ok, 4 failed, 4 logged
 */
