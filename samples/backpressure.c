/*
 * backpressure.c — CSP against the actor model, from the seed's notes:
 *
 *   Go's channels have a bounded capacity and exist apart from the
 *   goroutines; an Erlang-style actor's mailbox is unbounded, and the
 *   receiving process just handles messages as they come.
 *
 * A fast producer (main) sends M items to a slow consumer task that spends a
 * few milliseconds on each, twice:
 *
 *   channel   a chan_t of capacity K. A send finds the buffer full and blocks
 *             until the consumer has taken an item: the producer is held back
 *             to the consumer's pace (backpressure), and no more than K items
 *             ever wait.
 *   mailbox   an unbounded queue, a mutex-protected linked list. Sending never
 *             blocks: the producer is done at once and the queue grows to
 *             nearly all M items — memory that a producer faster than its
 *             consumer forever would exhaust.
 *
 * For each it prints the peak number of queued items, how long the producer
 * was blocked, and when the producer and the consumer were done.
 *
 * The mailbox consumer waits on a plain condition variable, which the pool
 * cannot see (a channel wait would count its worker as blocked): fine here,
 * where nothing else needs the pool, but in general prefer the library's own
 * blocking calls inside tasks.
 *
 * Usage: backpressure [--capacity K] [--items M] [--scale F]
 *        (defaults 4, 40, 1; F multiplies the consumer's 5 ms per item)
 */
#include <async.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t work_ns = 5 * ASYNC_MILLISECOND;   /* set once in main */

typedef struct result {
    size_t  peak;              /* most items queued at once */
    int64_t producer_blocked;  /* time spent in sends */
    int64_t producer_done;     /* since the start */
    int64_t consumer_done;     /* since the start */
    long    consumed;
} result_t;

/* ------------------------------------------------------------ channel */

static void *chan_consumer(void *arg)
{
    chan_t *c = arg;
    long n = 0;
    int item;
    while (chan_recv(c, &item) == 0) {   /* until closed and drained */
        async_sleep(work_ns);
        n++;
    }
    return (void *)(intptr_t)n;
}

static int run_channel(size_t capacity, int items, result_t *r)
{
    chan_t *c = chan_make(sizeof(int), capacity);
    future_t *consumer = c ? async_run(chan_consumer, c) : NULL;
    if (consumer == NULL) {
        chan_free(c);
        return errno;
    }
    int64_t start = async_now();
    for (int i = 0; i < items; i++) {
        int64_t t = async_now();
        chan_send(c, &i);
        r->producer_blocked += async_now() - t;
        size_t queued = chan_len(c);
        if (queued > r->peak)
            r->peak = queued;
    }
    r->producer_done = async_now() - start;
    chan_close(c);
    void *n = NULL;
    int err = future_get(consumer, &n);
    r->consumer_done = async_now() - start;
    r->consumed = (long)(intptr_t)n;
    future_free(consumer);
    chan_free(c);
    return err;
}

/* ------------------------------------------------------------ mailbox */

typedef struct node {
    struct node *next;
    int          item;
} node_t;

typedef struct mailbox {
    pthread_mutex_t lock;
    pthread_cond_t  nonempty;
    node_t         *head, *tail;   /* guarded by lock */
    size_t          len, peak;     /* guarded by lock */
    bool            closed;        /* guarded by lock */
} mailbox_t;

static int mailbox_put(mailbox_t *m, int item)
{
    node_t *n = malloc(sizeof *n);
    if (n == NULL)
        return ENOMEM;
    n->next = NULL;
    n->item = item;
    pthread_mutex_lock(&m->lock);
    if (m->tail)
        m->tail->next = n;
    else
        m->head = n;
    m->tail = n;
    if (++m->len > m->peak)
        m->peak = m->len;
    pthread_cond_signal(&m->nonempty);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

/* false once the mailbox is closed and empty */
static bool mailbox_take(mailbox_t *m, int *item)
{
    pthread_mutex_lock(&m->lock);
    while (m->head == NULL && !m->closed)
        pthread_cond_wait(&m->nonempty, &m->lock);
    node_t *n = m->head;
    if (n != NULL) {
        m->head = n->next;
        if (m->head == NULL)
            m->tail = NULL;
        m->len--;
    }
    pthread_mutex_unlock(&m->lock);
    if (n == NULL)
        return false;
    *item = n->item;
    free(n);
    return true;
}

static void mailbox_close(mailbox_t *m)
{
    pthread_mutex_lock(&m->lock);
    m->closed = true;
    pthread_cond_broadcast(&m->nonempty);
    pthread_mutex_unlock(&m->lock);
}

static void *mailbox_consumer(void *arg)
{
    mailbox_t *m = arg;
    long n = 0;
    int item;
    while (mailbox_take(m, &item)) {
        async_sleep(work_ns);
        n++;
    }
    return (void *)(intptr_t)n;
}

static int run_mailbox(int items, result_t *r)
{
    mailbox_t m = {.lock = PTHREAD_MUTEX_INITIALIZER, .nonempty = PTHREAD_COND_INITIALIZER};
    future_t *consumer = async_run(mailbox_consumer, &m);
    if (consumer == NULL)
        return errno;
    int64_t start = async_now();
    int err = 0;
    for (int i = 0; i < items && err == 0; i++) {
        int64_t t = async_now();
        err = mailbox_put(&m, i);
        r->producer_blocked += async_now() - t;
    }
    r->producer_done = async_now() - start;
    mailbox_close(&m);
    void *n = NULL;
    int got = future_get(consumer, &n);
    r->consumer_done = async_now() - start;
    r->consumed = (long)(intptr_t)n;
    r->peak = m.peak;   /* the consumer is done: no one else holds the lock */
    future_free(consumer);
    return err != 0 ? err : got;
}

/* --------------------------------------------------------------- main */

static void print_result(const char *title, const result_t *r)
{
    double ms = (double)ASYNC_MILLISECOND;
    printf("%s\n", title);
    printf("  peak queued:      %zu\n", r->peak);
    printf("  producer blocked: %.1f ms\n", (double)r->producer_blocked / ms);
    printf("  producer done:    %.1f ms\n", (double)r->producer_done / ms);
    printf("  consumer done:    %.1f ms (%ld items)\n", (double)r->consumer_done / ms,
           r->consumed);
}

static int parse_args(int argc, char **argv, long *capacity, long *items)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--capacity") == 0)
            *capacity = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--items") == 0)
            *items = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--scale") == 0)
            work_ns = (int64_t)(strtod(argv[i + 1], NULL) * 5 * (double)ASYNC_MILLISECOND);
        else
            return EINVAL;
    }
    bool ok = argc % 2 == 1 && *capacity >= 0 && *capacity <= 100000 && *items >= 1 &&
              *items <= 1000000 && work_ns > 0;
    return ok ? 0 : EINVAL;
}

int main(int argc, char **argv)
{
    long capacity = 4, items = 40;
    if (parse_args(argc, argv, &capacity, &items) != 0) {
        fprintf(stderr, "usage: %s [--capacity K] [--items M] [--scale F]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("producer: %ld items, as fast as it can; consumer: %.1f ms per item\n", items,
           (double)work_ns / (double)ASYNC_MILLISECOND);

    result_t chan_result = {0}, mailbox_result = {0};
    int err = run_channel((size_t)capacity, (int)items, &chan_result);
    if (err == 0)
        err = run_mailbox((int)items, &mailbox_result);
    if (err != 0) {
        fprintf(stderr, "backpressure: %s\n", strerror(err));
        return 1;
    }
    char title[64];
    snprintf(title, sizeof title, "channel (capacity %ld):", capacity);
    print_result(title, &chan_result);
    print_result("mailbox (unbounded):", &mailbox_result);
    printf("peak queued: channel %zu, mailbox %zu\n", chan_result.peak, mailbox_result.peak);
    return 0;
}

/*
 * Output (times vary a little):
 *
 * producer: 40 items, as fast as it can; consumer: 5.0 ms per item
 * channel (capacity 4):
 *   peak queued:      4
 *   producer blocked: 175.6 ms
 *   producer done:    175.7 ms
 *   consumer done:    201.0 ms (40 items)
 * mailbox (unbounded):
 *   peak queued:      39
 *   producer blocked: 0.0 ms
 *   producer done:    0.1 ms
 *   consumer done:    201.2 ms (40 items)
 * peak queued: channel 4, mailbox 39
 */
