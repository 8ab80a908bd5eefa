/*
 * fork_join.c — recursive fork/join: fib(n) with a task at every call, no
 * cutoff, each task waiting for its two children with future_get.
 *
 * A pool of plain threads would deadlock here as soon as every worker waits
 * for a child still queued behind it. libasync's future_get does what
 * ForkJoinTask.join does: a waiter whose future has not started runs that task
 * itself, inline; a waiter whose future is running helps with the tasks that
 * one is waiting for. So this completes on a pool of any size, one thread
 * included, and shows what a task costs: fib(30) makes 2,692,537 of them.
 *
 * Usage: fork_join [n] [--threads N]   (n defaults to 30, N to the CPU count)
 */
#include <async.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static async_pool_t *pool;   /* set once in main before any task starts */

static void *fib_task(void *arg);

/* Fork: fib(n) as a task of the pool. A failure here is a panic of the
 * calling task, which its parent's future_get reports in turn. */
static future_t *fork_fib(intptr_t n)
{
    future_t *f = async_run_on(pool, fib_task, (void *)n);
    if (f == NULL)
        async_panic(errno, "cannot start fib(%" PRIdPTR "): %s", n, strerror(errno));
    return f;
}

/* Join: wait for a child and free it. */
static intptr_t join_fib(future_t *f)
{
    void *value = NULL;
    int err = future_get(f, &value);
    future_free(f);
    if (err != 0)
        async_panic(err, "a child failed: %s", strerror(err));
    return (intptr_t)value;
}

static void *fib_task(void *arg)
{
    intptr_t n = (intptr_t)arg;
    if (n < 2)
        return (void *)n;
    future_t *a = fork_fib(n - 1);
    future_t *b = fork_fib(n - 2);
    intptr_t x = join_fib(a);
    intptr_t y = join_fib(b);
    return (void *)(x + y);
}

/* fib(n) the plain way, and how many calls the naive recursion makes:
 * calls(n) = calls(n-1) + calls(n-2) + 1 = 2 fib(n+1) - 1. */
static uint64_t fib_iter(int n)
{
    uint64_t a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        uint64_t t = a + b;
        a = b;
        b = t;
    }
    return a;
}

static int parse_args(int argc, char **argv, int *n, unsigned *threads)
{
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            long t = strtol(argv[++i], &end, 10);
            if (*end != '\0' || t < 1 || t > 1024)
                return EINVAL;
            *threads = (unsigned)t;
        } else {
            long v = strtol(argv[i], &end, 10);
            if (*end != '\0' || v < 0 || v > 50)
                return EINVAL;
            *n = (int)v;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int n = 30;
    unsigned threads = 0;
    if (parse_args(argc, argv, &n, &threads) != 0) {
        fprintf(stderr, "usage: %s [n (0..50)] [--threads N]\n", argv[0]);
        return 2;
    }
    async_pool_config_t config = {.threads = threads, .name = "fib"};
    pool = async_pool_create(&config);
    if (pool == NULL) {
        perror("async_pool_create");
        return 1;
    }
    int64_t start = async_now();
    future_t *root = async_run_on(pool, fib_task, (void *)(intptr_t)n);
    void *value = NULL;
    int err = root ? future_get(root, &value) : errno;
    double seconds = (double)(async_now() - start) / (double)ASYNC_SECOND;
    async_pool_stats_t stats = {0};
    async_pool_stats(pool, &stats);
    if (err != 0)
        fprintf(stderr, "fib(%d) failed: %s (%s)\n", n, strerror(err),
                future_error(root) ? future_error(root) : "");
    future_free(root);
    async_pool_destroy(pool, ASYNC_DRAIN);
    if (err != 0)
        return 1;

    uint64_t result = (uint64_t)(intptr_t)value;
    uint64_t tasks = 2 * fib_iter(n + 1) - 1;
    printf("fib(%d) = %" PRIu64 " (%s)\n", n, result,
           result == fib_iter(n) ? "correct" : "WRONG");
    printf("peak workers: %u\n", stats.peak_threads);
    printf("tasks: %" PRIu64 "\n", tasks);
    printf("time: %.3f s\n", seconds);
    printf("tasks per second: %.0f\n", seconds > 0 ? (double)tasks / seconds : 0.0);
    return result == fib_iter(n) ? 0 : 1;
}

/*
 * Output (2 threads; the times depend on the machine):
 *
 * fib(30) = 832040 (correct)
 * peak workers: 2
 * tasks: 2692537
 * time: 0.950 s
 * tasks per second: 2834249
 */
