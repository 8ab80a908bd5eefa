/*
 * test/stress/stress_dump.c — async_dump while everything it reads moves.
 *
 * Tasks park and wake as fast as they can (ping-pong over unbuffered
 * channels, selects, short sleeps, futures of sub-tasks that are run inline
 * or awaited), a second pool is created and destroyed over and over, and the
 * signal dump is triggered, while a thread dumps in a loop. Every dump must
 * be well formed (a header, an end line, and task lines that parse, each
 * naming a pool listed above it), never list more tasks than can be alive,
 * and the whole must stay clean under ThreadSanitizer and AddressSanitizer
 * (the dump reads fibers and threads of tasks that are finishing, and the
 * records of queued tasks that are being claimed, run and freed: the
 * sub-tasks in the workers' deques, and bursts of tasks a thread outside
 * the pool submits to its injection queue and outside slot, some of which
 * it waits for at once and so takes back from the slot). Both modes.
 *
 * A plain program (the ThreadSanitizer build runs it). Scale: argv[1] or
 * $STRESS_SCALE (default 1). Prints what it checked and "N passed, M
 * failed"; exits non-zero on any failure.
 */
#include "stressmain.h"
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAIRS   16u
#define WORKERS (4 * PAIRS)     /* every task, including sub-tasks, at most */
#define BURST   256u            /* the outsider's tasks, queued at once */

static unsigned rounds;
static async_pool_t *the_pool;
static atomic_bool stop;
static atomic_uint dumps_done;   /* by the dumper thread, this mode */

struct pair {
    chan_t *a, *b;
};

static void *sub(void *arg)
{
    async_sleep(1000);
    return arg;
}

/* `rounds` round trips, and on until the dumper has finished two dumps
 * (so that dumps run while the tasks do, however the threads are
 * scheduled); then it closes `a`, which ends its pong. */
static void *ping(void *arg)
{
    struct pair *p = arg;
    for (unsigned i = 0; i < rounds || atomic_load(&dumps_done) < 2; i++) {
        int v = (int)i;
        chan_send(p->a, &v);
        chan_recv(p->b, &v);
        future_t *f = async_run_on(the_pool, sub, NULL);   /* inline or awaited */
        if (f) {
            future_get(f, NULL);
            future_free(f);
        }
    }
    chan_close(p->a);
    return NULL;
}

static void *pong(void *arg)
{
    struct pair *p = arg;
    for (;;) {
        int v;
        chan_case_t c[1] = { { .chan = p->a, .op = CHAN_RECV, .elem = &v } };
        size_t which;
        if (chan_select(c, 1, ASYNC_FOREVER, &which) == EPIPE)
            return NULL;   /* ping is done */
        async_sleep(500);
        chan_send(p->b, &v);
    }
    return NULL;
}

struct dumper {
    struct tally *t;
    unsigned      dumps, bad, too_many;
    char          first_bad[256];
};

static void check_dump(struct dumper *d, char *text)
{
    unsigned tasks = 0, pools = 0, header = 0, end = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        uintptr_t id;
        char name[32], fn[160], state[32];
        if (strncmp(line, "libasync dump: pid ", 19) == 0)
            header++;
        else if (strcmp(line, "libasync dump end") == 0)
            end++;
        else if (sscanf(line, "pool %31s task 0x%" SCNxPTR " fn %159s state %31s", name, &id,
                        fn, state) == 4)
            tasks += pools > 0;
        else if (sscanf(line, "pool %31s mode %31s", name, state) == 2)
            pools++;
        else if (!d->bad++)
            snprintf(d->first_bad, sizeof d->first_bad, "%s", line);
    }
    if (header != 1 || end != 1 || pools == 0)
        if (!d->bad++)
            snprintf(d->first_bad, sizeof d->first_bad, "%u headers %u ends %u pools",
                     header, end, pools);
    if (tasks > 2 * WORKERS + 2 * BURST + 2 * PAIRS)
        d->too_many++;
    d->dumps++;
}

static void *dump_loop(void *arg)
{
    struct dumper *d = arg;
    while (!atomic_load(&stop)) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        if (!mem)
            continue;
        int rc = async_dump(mem);
        fclose(mem);
        if (rc == 0) {
            check_dump(d, text);
            atomic_fetch_add(&dumps_done, 1);
        }
        free(text);
    }
    return NULL;
}

/* From outside the pool: bursts of BURST tasks through its injection
 * queue, freed at once (detached), so that the workers claim, run and free
 * queued records while a dump is reading the queue. */
static void *outsider(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        for (unsigned i = 0; i < BURST; i++) {
            future_t *f = async_run_on(the_pool, tu_task_noop, NULL);
            future_free(f);
        }
        /* and tasks waited for at once: taken back out of the pool's
         * outside slot and freed here while the dumper walks it */
        for (unsigned i = 0; i < BURST / 4; i++) {
            future_t *f = async_run_on(the_pool, tu_task_noop, NULL);
            if (f)
                tu_get(f, NULL);
            future_free(f);
        }
        async_pool_stats_t st;
        while (!atomic_load(&stop) && async_pool_stats(the_pool, &st) == 0 && st.queued > BURST)
            sched_yield();   /* no more than two bursts queued */
    }
    return NULL;
}

static void *churn(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        async_pool_config_t cfg = { .threads = 1, .name = "churn" };
        async_pool_t *p = async_pool_create(&cfg);
        if (p) {
            future_t *f = async_run_on(p, sub, NULL);
            if (f) {
                tu_get(f, NULL);
                future_free(f);
            }
            async_pool_destroy(p, ASYNC_DRAIN);
        }
    }
    return NULL;
}

/* What went to stderr meanwhile, but the dumps: a sanitizer's report. */
static void pass_through(FILE *err)
{
    char line[1024];
    rewind(err);
    while (fgets(line, sizeof line, err))
        if (strncmp(line, "pool ", 5) != 0 && strncmp(line, "libasync dump", 13) != 0)
            fputs(line, stderr);
}

static void one_mode(struct tally *t, bool goroutine)
{
    const char *mode = goroutine ? "goroutine" : "thread";
    async_pool_config_t cfg = { .threads = 2, .name = "stress",
                                .stack_size = goroutine ? (size_t)256 * 1024
                                                        : ASYNC_STACK_THREAD };
    async_pool_t *pool = async_pool_create(&cfg);
    tally_check(t, pool != NULL, "%s: pool_create failed", mode);
    if (!pool)
        return;
    the_pool = pool;
    atomic_store(&stop, false);
    atomic_store(&dumps_done, 0);
    struct dumper d = { .t = t };
    pthread_t dth, cth, oth;
    pthread_create(&dth, NULL, dump_loop, &d);
    pthread_create(&cth, NULL, churn, NULL);
    pthread_create(&oth, NULL, outsider, NULL);
    struct pair pairs[PAIRS];
    future_t *fs[2 * PAIRS];
    for (unsigned i = 0; i < PAIRS; i++) {
        pairs[i].a = chan_make(sizeof(int), 0);
        pairs[i].b = chan_make(sizeof(int), 0);
        fs[2 * i] = async_run_on(pool, ping, &pairs[i]);
        fs[2 * i + 1] = async_run_on(pool, pong, &pairs[i]);
    }
    /* the signal dump a few times meanwhile, into a file (stderr) */
    fflush(stderr);
    FILE *err = tmpfile();
    int saved = dup(2);
    if (err)
        dup2(fileno(err), 2);
    tally_check(t, async_dump_on_signal(SIGUSR1) == 0, "%s: async_dump_on_signal", mode);
    for (int i = 0; i < 5; i++)
        raise(SIGUSR1);
    unsigned failed = 0;
    for (unsigned i = 0; i < 2 * PAIRS; i++) {
        failed += tu_get(fs[i], NULL) != 0;
        future_free(fs[i]);
    }
    atomic_store(&stop, true);
    pthread_join(dth, NULL);
    pthread_join(cth, NULL);
    pthread_join(oth, NULL);
    async_dump_on_signal(0);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (err) {
        pass_through(err);
        fclose(err);
    }
    tally_check(t, failed == 0, "%s: %u tasks failed", mode, failed);
    tally_check(t, d.dumps > 0, "%s: no dump finished", mode);
    tally_check(t, d.bad == 0, "%s: %u malformed dumps, the first: %s", mode, d.bad,
                d.first_bad);
    tally_check(t, d.too_many == 0, "%s: %u dumps listed more tasks than can live", mode,
                d.too_many);
    for (unsigned i = 0; i < PAIRS; i++) {
        chan_free(pairs[i].a);
        chan_free(pairs[i].b);
    }
    async_pool_destroy(pool, ASYNC_DRAIN);
    tally_note(t, "%s: %u dumps while %u pairs ping-ponged %u rounds or more", mode, d.dumps,
               PAIRS, rounds);
}

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    rounds = stress_n(scale, 300);
    struct tally t;
    tally_init(&t, true);
    tally_begin(&t, "dump_while_running");
    one_mode(&t, true);
    one_mode(&t, false);
    return stress_finish(&t);
}
