/*
 * bench/chan_bench.c — what a channel operation costs.
 *
 *   ping-pong   two threads bounce one value over two unbuffered channels:
 *               every operation is a rendezvous, so this is the price of a
 *               hand-off between blocked parties (spin or park + wake).
 *   mpmc        P producers and C consumers over one buffered channel: the
 *               uncontended-lock ring path under contention.
 *
 * Usage: chan_bench [round trips] [mpmc items]
 * Prints ns per operation; plain threads only, public API only.
 */
#include <async.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static void check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "chan_bench: %s failed: %d\n", what, rc);
        exit(1);
    }
}

/* ---------------------------------------------------------- ping-pong */

struct pingpong {
    chan_t *ping, *pong;
    long    rounds;
};

static void *ponger(void *arg)
{
    struct pingpong *pp = arg;
    long v;
    for (long i = 0; i < pp->rounds; i++) {
        check(chan_recv(pp->ping, &v), "chan_recv");
        check(chan_send(pp->pong, &v), "chan_send");
    }
    return NULL;
}

static void bench_pingpong(long rounds)
{
    struct pingpong pp = { chan_make(sizeof(long), 0), chan_make(sizeof(long), 0), rounds };
    if (!pp.ping || !pp.pong)
        check(errno, "chan_make");
    pthread_t t;
    check(pthread_create(&t, NULL, ponger, &pp), "pthread_create");
    int64_t start = async_now();
    for (long i = 0; i < rounds; i++) {
        long v = i;
        check(chan_send(pp.ping, &v), "chan_send");
        check(chan_recv(pp.pong, &v), "chan_recv");
    }
    int64_t ns = async_now() - start;
    check(pthread_join(t, NULL), "pthread_join");
    printf("ping-pong, unbuffered, 2 threads: %.1f ns per hand-off "
           "(%.1f ns per round trip, %ld round trips)\n",
           (double)ns / (2.0 * (double)rounds), (double)ns / (double)rounds, rounds);
    chan_free(pp.ping);
    chan_free(pp.pong);
}

/* --------------------------------------------------------------- mpmc */

struct mpmc {
    chan_t *c;
    long    per_producer;
};

static void *producer(void *arg)
{
    struct mpmc *m = arg;
    for (long i = 0; i < m->per_producer; i++)
        check(chan_send(m->c, &i), "chan_send");
    return NULL;
}

static void *consumer(void *arg)
{
    struct mpmc *m = arg;
    long v, n = 0;
    int rc;
    while ((rc = chan_recv(m->c, &v)) == 0)
        n++;
    if (rc != EPIPE)
        check(rc, "chan_recv");
    return (void *)(intptr_t)n;
}

static void bench_mpmc(long items, unsigned np, unsigned nc, size_t cap)
{
    struct mpmc m = { chan_make(sizeof(long), cap), items / np };
    if (!m.c)
        check(errno, "chan_make");
    pthread_t p[16], c[16];
    int64_t start = async_now();
    for (unsigned i = 0; i < nc; i++)
        check(pthread_create(&c[i], NULL, consumer, &m), "pthread_create");
    for (unsigned i = 0; i < np; i++)
        check(pthread_create(&p[i], NULL, producer, &m), "pthread_create");
    for (unsigned i = 0; i < np; i++)
        check(pthread_join(p[i], NULL), "pthread_join");
    check(chan_close(m.c), "chan_close");
    long got = 0;
    for (unsigned i = 0; i < nc; i++) {
        void *n;
        check(pthread_join(c[i], &n), "pthread_join");
        got += (long)(intptr_t)n;
    }
    int64_t ns = async_now() - start;
    if (got != m.per_producer * (long)np) {
        fprintf(stderr, "chan_bench: mpmc lost items: %ld of %ld\n", got, m.per_producer * (long)np);
        exit(1);
    }
    printf("mpmc, buffered %zu, %u producers x %u consumers: %.1f ns per item (%ld items)\n",
           cap, np, nc, (double)ns / (double)got, got);
    chan_free(m.c);
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 200000;
    long items = argc > 2 ? atol(argv[2]) : 2000000;
    if (rounds <= 0 || items <= 0) {
        fprintf(stderr, "usage: chan_bench [round trips] [mpmc items]\n");
        return 2;
    }
    bench_pingpong(rounds);
    bench_mpmc(items, 1, 1, 1024);
    bench_mpmc(items, 4, 4, 1024);
    bench_mpmc(items, 4, 4, 16);
    return 0;
}
