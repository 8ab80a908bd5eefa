/*
 * sieve.c — Go's concurrent prime sieve: a generator task sends 2, 3, 4, ...
 * down an unbuffered channel; each prime found starts one more filter task
 * that passes on the numbers its prime does not divide.
 *
 *     func Generate(ch chan<- int) { for i := 2; ; i++ { ch <- i } }
 *     func Filter(in <-chan int, out chan<- int, prime int) {
 *         for { i := <-in; if i%prime != 0 { out <- i } }
 *     }
 *     func main() {
 *         ch := make(chan int)
 *         go Generate(ch)
 *         for i := 0; i < 100; i++ {
 *             prime := <-ch
 *             fmt.Println(prime)
 *             ch1 := make(chan int)
 *             go Filter(ch, ch1, prime)
 *             ch = ch1
 *         }
 *     }
 *
 * Every task spends its life blocked in a channel operation; the pool starts
 * a replacement worker whenever all of its workers are blocked, so the chain
 * grows to one thread per task. When main has its primes the generator and
 * the filters are still blocked (Go simply exits). Here main destroys the
 * pool with ASYNC_CANCEL: each blocked send or receive returns ECANCELED, each
 * task returns, and the program ends cleanly, every channel freed.
 *
 * Usage: sieve [N]   (the first N primes, 1..2000; default 100)
 */
#include <async.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct filter_args {
    chan_t *in, *out;
    int     prime;
} filter_args_t;

/* Each task returns the error that stopped it. */
static void *generate(void *arg)
{
    chan_t *ch = arg;
    for (int i = 2;; i++) {
        int err = chan_send(ch, &i);
        if (err != 0)
            return (void *)(intptr_t)err;
    }
}

static void *filter(void *arg)
{
    const filter_args_t *a = arg;   /* the task's own copy (async_submit) */
    for (;;) {
        int i;
        int err = chan_recv(a->in, &i);
        if (err == 0 && i % a->prime != 0)
            err = chan_send(a->out, &i);
        if (err != 0)
            return (void *)(intptr_t)err;
    }
}

typedef struct sieve {
    async_pool_t *pool;
    chan_t      **chans;     /* chans[0] from the generator, chans[k] from filter k */
    future_t    **tasks;     /* tasks[0] the generator, tasks[k] filter k */
    int           n;         /* tasks and channels started so far */
} sieve_t;

/* Take the next prime from the last channel and start its filter. */
static int next_prime(sieve_t *s, int *prime)
{
    int err = chan_recv(s->chans[s->n - 1], prime);
    if (err != 0)
        return err;
    filter_args_t args = {s->chans[s->n - 1], chan_make(sizeof(int), 0), *prime};
    if (args.out == NULL)
        return errno;
    s->chans[s->n] = args.out;
    s->tasks[s->n] = async_submit(s->pool, filter, &args, sizeof args);
    if (s->tasks[s->n] == NULL) {
        chan_free(args.out);
        return errno;
    }
    s->n++;
    return 0;
}

static int run(sieve_t *s, int count)
{
    s->chans[0] = chan_make(sizeof(int), 0);
    if (s->chans[0] == NULL)
        return errno;
    s->tasks[0] = async_run_on(s->pool, generate, s->chans[0]);
    if (s->tasks[0] == NULL) {
        chan_free(s->chans[0]);
        return errno;
    }
    s->n = 1;
    for (int i = 0; i < count; i++) {
        int prime;
        int err = next_prime(s, &prime);
        if (err != 0)
            return err;
        printf("%5d%s", prime, i % 10 == 9 || i == count - 1 ? "\n" : " ");
    }
    return 0;
}

/* After the pool is gone: count how the tasks ended, free everything. A task
 * blocked in a channel operation returns ECANCELED; the last filter may not
 * have started at all, and then its future itself is cancelled. */
static int finish(sieve_t *s)
{
    int stopped = 0, unstarted = 0;
    for (int k = 0; k < s->n; k++) {
        void *why = NULL;
        int err = future_get(s->tasks[k], &why);
        if (err == 0 && (intptr_t)why == ECANCELED)
            stopped++;
        else if (err == ECANCELED)
            unstarted++;
        future_free(s->tasks[k]);
        chan_free(s->chans[k]);
    }
    printf("%d of %d tasks ended by cancellation (%d before they started)\n",
           stopped + unstarted, s->n, unstarted);
    return stopped + unstarted == s->n ? 0 : 1;
}

int main(int argc, char **argv)
{
    int count = argc > 1 ? atoi(argv[1]) : 100;
    if (argc > 2 || count < 1 || count > 2000) {
        fprintf(stderr, "usage: %s [N (1..2000)]\n", argv[0]);
        return 2;
    }
    sieve_t s = {0};
    s.pool = async_pool_create(&(async_pool_config_t){.name = "sieve"});
    s.chans = calloc((size_t)count + 1, sizeof *s.chans);
    s.tasks = calloc((size_t)count + 1, sizeof *s.tasks);
    if (s.pool == NULL || s.chans == NULL || s.tasks == NULL) {
        perror("setup");
        return 1;
    }

    int64_t start = async_now();
    int err = run(&s, count);
    double ms = (double)(async_now() - start) / (double)ASYNC_MILLISECOND;
    if (err != 0)
        fprintf(stderr, "sieve: %s\n", strerror(err));
    else
        printf("%d primes in %.1f ms\n", count, ms);

    async_pool_stats_t stats = {0};
    async_pool_stats(s.pool, &stats);
    printf("peak workers: %u\n", stats.peak_threads);
    async_pool_destroy(s.pool, ASYNC_CANCEL);   /* wakes every blocked task */
    int rc = finish(&s);
    free(s.chans);
    free(s.tasks);
    return err != 0 ? 1 : rc;
}

/*
 * Output (the times and the worker count depend on the machine):
 *
 *     2     3     5     7    11    13    17    19    23    29
 *    31    37    41    43    47    53    59    61    67    71
 *    73    79    83    89    97   101   103   107   109   113
 *   127   131   137   139   149   151   157   163   167   173
 *   179   181   191   193   197   199   211   223   227   229
 *   233   239   241   251   257   263   269   271   277   281
 *   283   293   307   311   313   317   331   337   347   349
 *   353   359   367   373   379   383   389   397   401   409
 *   419   421   431   433   439   443   449   457   461   463
 *   467   479   487   491   499   503   509   521   523   541
 * 100 primes in 15.2 ms
 * peak workers: 101
 * 101 of 101 tasks ended by cancellation (0 before they started)
 */
