/*
 * futuretask.c — the seed's Java FutureTask example in C.
 *
 *     private static FutureTask<String> service() {
 *         FutureTask<String> task = new FutureTask<String>(() -> "Do something");
 *         new Thread(task).start();
 *         return task;
 *     }
 *     FutureTask<String> ret = service();
 *     System.out.println("Do something else");
 *     System.out.println(ret.get());
 *
 * async_run plays both `new FutureTask` and `new Thread(task).start()`: the
 * closure goes to a pool thread at once and the caller gets the future back.
 * future_get is `ret.get()`: it waits for the value (or, had the task not
 * started yet, runs it right there).
 */
#include <async.h>

#include <stdio.h>
#include <string.h>

static void *something(void *arg)
{
    (void)arg;
    return "Do something";
}

static future_t *service(void)
{
    return async_run(something, NULL);
}

int main(void)
{
    future_t *ret = service();
    if (ret == NULL) {
        perror("async_run");
        return 1;
    }
    printf("Do something else\n");

    void *value;
    int err = future_get(ret, &value);
    if (err != 0) {
        fprintf(stderr, "future_get: %s\n", strerror(err));
        future_free(ret);
        return 1;
    }
    printf("%s\n", (const char *)value);
    future_free(ret);
    return 0;
}

/*
 * Output:
 *
 * Do something else
 * Do something
 */
