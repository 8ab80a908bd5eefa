/*
 * async_service.c — the seed's asyncService/otherTask, with a future.
 *
 *     func service() string { time.Sleep(50 * time.Millisecond); return "Done" }
 *     func otherTask() { ...; time.Sleep(100 * time.Millisecond); ... }
 *     retCh := asyncService(); otherTask(); fmt.Println(<-retCh)
 *
 * The seed's asyncService returns a channel that a goroutine fills once. A
 * future is exactly such a one-shot channel, but with room for its one value:
 * the task writes its result and ends without waiting for a reader, as with
 * the seed's commented-out `make(chan string, 1)`. So "asyncService exited."
 * comes as soon as the service is done, before "Task is done" (compare
 * async_service_chan.c, which uses an unbuffered channel as the seed does).
 *
 * The service (50 ms) runs while main works on otherTask (100 ms): the whole
 * takes about 100 ms, not 150 ms, and the last line says how long it took.
 *
 * Usage: async_service [--scale F]   (F multiplies every duration)
 */
#include <async.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double scale = 1.0;   /* set once in main before any task starts */

static int64_t ms(double n)
{
    return (int64_t)(n * scale * (double)ASYNC_MILLISECOND);
}

static char *service(void)
{
    async_sleep(ms(50));
    return "Done";
}

static void *async_service_task(void *arg)
{
    (void)arg;
    char *ret = service();
    printf("asyncService start.\n");
    printf("asyncService exited.\n");   /* the future holds the value: no wait */
    return ret;
}

static future_t *async_service(void)
{
    return async_run(async_service_task, NULL);
}

static void other_task(void)
{
    printf("Working on something else\n");
    async_sleep(ms(100));
    printf("Task is done\n");
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

    int64_t start = async_now();
    future_t *ret_ch = async_service();
    if (ret_ch == NULL) {
        perror("async_run");
        return 1;
    }
    other_task();

    void *value;
    int err = future_get(ret_ch, &value);
    future_free(ret_ch);
    if (err != 0) {
        fprintf(stderr, "future_get: %s\n", strerror(err));
        return 1;
    }
    printf("%s\n", (const char *)value);

    double total = (double)(async_now() - start) / (double)ASYNC_MILLISECOND;
    printf("total: %.0f ms (one after the other: %.0f ms)\n", total, 150 * scale);
    return 0;
}

/*
 * Output:
 *
 * Working on something else
 * asyncService start.
 * asyncService exited.
 * Task is done
 * Done
 * total: 100 ms (one after the other: 150 ms)
 */
