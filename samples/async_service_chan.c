/*
 * async_service_chan.c — the seed's asyncService written with a channel, as
 * in Go:
 *
 *     func asyncService() chan string {
 *         retCh := make(chan string)
 *         // retCh := make(chan string, 1) buffer chan 不会阻塞 (does not block)
 *         go func() {
 *             ret := service()
 *             fmt.Println("asyncService start.")
 *             retCh <- ret
 *             fmt.Println("asyncService exited.")
 *         }()
 *         return retCh
 *     }
 *
 * With capacity 0 (the default) the channel is a rendezvous: the service is
 * done after 50 ms but its send waits until main, back from its 100 ms
 * otherTask, receives. So "asyncService exited." comes after "Task is done",
 * once main has taken "Done". With --buffered (capacity 1) the send finds room
 * at once and the service exits before main even looks.
 *
 * The seed ends main with a one-second sleep so that the goroutine may print
 * its last line; here main waits for the service task's future instead, which
 * also returns how long its send was blocked.
 *
 * Usage: async_service_chan [--buffered] [--scale F]   (F multiplies durations)
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

static const char *service(void)
{
    async_sleep(ms(50));
    return "Done";
}

/* The goroutine; returns how long its send was blocked, in nanoseconds. */
static void *service_task(void *arg)
{
    chan_t *ret_ch = arg;
    const char *ret = service();
    printf("asyncService start.\n");
    int64_t start = async_now();
    int err = chan_send(ret_ch, &ret);
    int64_t blocked = async_now() - start;
    if (err != 0)
        async_panic(err, "send: %s", strerror(err));
    printf("asyncService exited.\n");
    return (void *)(intptr_t)blocked;
}

static chan_t *async_service(size_t capacity, future_t **task)
{
    chan_t *ret_ch = chan_make(sizeof(const char *), capacity);
    if (ret_ch == NULL)
        return NULL;
    *task = async_run(service_task, ret_ch);
    if (*task == NULL) {
        chan_free(ret_ch);
        return NULL;
    }
    return ret_ch;
}

static void other_task(void)
{
    printf("Working on something else\n");
    async_sleep(ms(100));
    printf("Task is done\n");
}

static int parse_args(int argc, char **argv, size_t *capacity)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--buffered") == 0) {
            *capacity = 1;
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

int main(int argc, char **argv)
{
    size_t capacity = 0;
    if (parse_args(argc, argv, &capacity) != 0) {
        fprintf(stderr, "usage: %s [--buffered] [--scale F]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    future_t *task = NULL;
    chan_t *ret_ch = async_service(capacity, &task);
    if (ret_ch == NULL) {
        perror("asyncService");
        return 1;
    }
    other_task();

    const char *ret = NULL;
    int err = chan_recv(ret_ch, &ret);
    if (err == 0)
        printf("%s\n", ret);

    void *blocked = NULL;
    if (err == 0)
        err = future_get(task, &blocked);   /* instead of the seed's time.Sleep */
    future_free(task);
    chan_free(ret_ch);
    if (err != 0) {
        fprintf(stderr, "asyncService: %s\n", strerror(err));
        return 1;
    }
    printf("capacity %zu: the service was blocked in its send for %.0f ms\n", capacity,
           (double)(intptr_t)blocked / (double)ASYNC_MILLISECOND);
    return 0;
}

/*
 * Output (capacity 0; the hand-off lets main and the service go on at once,
 * so "Done" and "asyncService exited." may come in either order, but both
 * come after "Task is done"):
 *
 * Working on something else
 * asyncService start.
 * Task is done
 * Done
 * asyncService exited.
 * capacity 0: the service was blocked in its send for 50 ms
 *
 * Output with --buffered:
 *
 * Working on something else
 * asyncService start.
 * asyncService exited.
 * Task is done
 * Done
 * capacity 1: the service was blocked in its send for 0 ms
 */
