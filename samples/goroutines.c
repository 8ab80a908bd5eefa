/*
 * goroutines.c — the seed's first Go program: main starts longWait (5 s) and
 * shortWait (2 s) as goroutines and sleeps 10 s while they run.
 *
 *     go longWait()          ->  async_run(long_wait, NULL)
 *     go shortWait()         ->  async_run(short_wait, NULL)
 *     time.Sleep(10 * 1e9)   ->  async_sleep(10 * ASYNC_SECOND)
 *
 * Usage: goroutines [--sequential | --wait | --many N] [--scale F]
 *
 *   (default)     both run concurrently with main's sleep: about 10 s in all.
 *   --sequential  the same calls one after the other, as the seed does when
 *                 the `go` keywords are removed: 5 + 2 + 10 = about 17 s.
 *   --wait        main does not sleep: it waits for both futures instead,
 *                 which is what the sleep stood in for: about 5 s.
 *   --many N      N tasks at once, half of them longWait and half shortWait
 *                 (without their lines), and main waits for all of them: a
 *                 goroutine is a lightweight thread of execution, so 100,000
 *                 sleeping tasks take about longWait's 5 s, a few kilobytes
 *                 each and a handful of OS threads. Prints the peak RSS and
 *                 the process's thread count while they sleep.
 *   --scale F     multiply every duration by F (0.1 runs the default in 1 s).
 *
 * The last line is the elapsed time, which is what the modes differ in.
 */
#include <async.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static double scale = 1.0;   /* set once in main before any task starts */

static void sleep_seconds(double seconds)
{
    async_sleep((int64_t)(seconds * scale * (double)ASYNC_SECOND));
}

static void *long_wait(void *arg)
{
    (void)arg;
    printf("Beginning longWait()\n");
    sleep_seconds(5);   /* sleep for 5 seconds */
    printf("End of longWait()\n");
    return NULL;
}

static void *short_wait(void *arg)
{
    (void)arg;
    printf("Beginning shortWait()\n");
    sleep_seconds(2);   /* sleep for 2 seconds */
    printf("End of shortWait()\n");
    return NULL;
}

/* --many: the same two sleeps, without their lines. */
static void *long_wait_quiet(void *arg)
{
    (void)arg;
    sleep_seconds(5);
    return NULL;
}

static void *short_wait_quiet(void *arg)
{
    (void)arg;
    sleep_seconds(2);
    return NULL;
}

enum mode { CONCURRENT, SEQUENTIAL, WAIT, MANY };
static long many;   /* --many N */

static int usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--sequential | --wait | --many N] [--scale F]\n", prog);
    return 2;
}

static int parse_args(int argc, char **argv, enum mode *mode)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--sequential") == 0) {
            *mode = SEQUENTIAL;
        } else if (strcmp(argv[i], "--wait") == 0) {
            *mode = WAIT;
        } else if (strcmp(argv[i], "--many") == 0 && i + 1 < argc) {
            *mode = MANY;
            many = strtol(argv[++i], NULL, 10);
            if (many < 1 || many > 10000000)
                return EINVAL;
        } else if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) {
            scale = strtod(argv[++i], NULL);
            if (!(scale > 0))
                return EINVAL;
        } else {
            return EINVAL;
        }
    }
    return 0;
}

/* The seed without the `go` keywords: one thing after the other. */
static int run_sequential(void)
{
    long_wait(NULL);
    short_wait(NULL);
    printf("About to sleep in main()\n");
    sleep_seconds(10);
    return 0;
}

/* The seed as written; with wait, main waits for the futures instead of
 * sleeping long enough for both. */
static int run_concurrent(bool wait)
{
    future_t *lw = async_run(long_wait, NULL);
    future_t *sw = async_run(short_wait, NULL);
    if (lw == NULL || sw == NULL) {
        perror("async_run");
        return 1;
    }
    if (wait) {
        printf("About to wait in main()\n");
        int err = future_get(lw, NULL);
        if (err == 0)
            err = future_get(sw, NULL);
        if (err != 0)
            fprintf(stderr, "future_get: %s\n", strerror(err));
    } else {
        printf("About to sleep in main()\n");
        sleep_seconds(10);
    }
    future_free(lw);
    future_free(sw);
    return 0;
}

/* The threads of this process now, from /proc (-1 when unknown). */
static long os_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    long n = -1;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %ld", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

/* N tasks sleeping at once; main waits for every one. */
static int run_many(void)
{
    future_t **fs = calloc((size_t)many, sizeof *fs);
    if (!fs) {
        perror("calloc");
        return 1;
    }
    printf("Starting %ld tasks: %ld longWait, %ld shortWait\n", many, many - many / 2,
           many / 2);
    for (long i = 0; i < many; i++) {
        fs[i] = async_run(i % 2 ? short_wait_quiet : long_wait_quiet, NULL);
        if (!fs[i]) {
            perror("async_run");
            return 1;
        }
    }
    long threads = os_threads();   /* every task started or queued: all asleep soon */
    async_pool_stats_t st;
    if (async_pool_stats(NULL, &st) == 0)
        printf("About to wait in main(): %zu tasks parked, %ld OS threads\n", st.parked,
               threads);
    int err = future_wait_all(fs, (size_t)many, ASYNC_FOREVER);
    if (err != 0)
        fprintf(stderr, "future_wait_all: %s\n", strerror(err));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("All %ld tasks done\n", many);
    printf("peak RSS: %.1f MiB (%.1f KiB per task)\n", (double)ru.ru_maxrss / 1024.0,
           (double)ru.ru_maxrss / (double)many);
    printf("OS threads: %ld\n", os_threads() > threads ? os_threads() : threads);
    for (long i = 0; i < many; i++)
        future_free(fs[i]);
    free(fs);
    return err != 0;
}

int main(int argc, char **argv)
{
    enum mode mode = CONCURRENT;
    if (parse_args(argc, argv, &mode) != 0)
        return usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);   /* lines appear as they happen */

    int64_t start = async_now();
    printf("In main()\n");
    int rc = mode == SEQUENTIAL ? run_sequential()
           : mode == MANY     ? run_many()
                              : run_concurrent(mode == WAIT);
    printf("At the end of main()\n");
    printf("elapsed: %.3f s\n", (double)(async_now() - start) / (double)ASYNC_SECOND);
    async_shutdown(ASYNC_DRAIN);
    return rc;
}

/*
 * Output (default, the seed's order; the two "Beginning" lines may come in
 * either order, and either may come before "About to sleep in main()", since
 * the tasks start on other threads at once):
 *
 * In main()
 * About to sleep in main()
 * Beginning longWait()
 * Beginning shortWait()
 * End of shortWait()
 * End of longWait()
 * At the end of main()
 * elapsed: 10.001 s
 *
 * Output with --sequential:
 *
 * In main()
 * Beginning longWait()
 * End of longWait()
 * Beginning shortWait()
 * End of shortWait()
 * About to sleep in main()
 * At the end of main()
 * elapsed: 17.002 s
 *
 * Output with --wait:
 *
 * In main()
 * About to wait in main()
 * Beginning longWait()
 * Beginning shortWait()
 * End of shortWait()
 * End of longWait()
 * At the end of main()
 * elapsed: 5.001 s
 *
 * Output with --many 100000 (on 2 CPUs; the parked count depends on how far
 * the workers got when main looked):
 *
 * In main()
 * Starting 100000 tasks: 50000 longWait, 50000 shortWait
 * About to wait in main(): 99998 tasks parked, 3 OS threads
 * All 100000 tasks done
 * peak RSS: 480.2 MiB (4.9 KiB per task)
 * OS threads: 3
 * At the end of main()
 * elapsed: 5.184 s
 */
