/*
 * test/cmake/app.c — the README's example, built by the CMake consumers of
 * an installed libasync (.ci/cmake.sh): a 50 ms service beside 100 ms of other
 * work, plus a check that the header and the library agree on the version.
 */
#include <async.h>
#include <stdio.h>
#include <string.h>

static void *service(void *arg)
{
    (void)arg;
    async_sleep(50 * ASYNC_MILLISECOND);
    return "Done";
}

int main(void)
{
    future_t *ret = async_run(service, NULL);

    puts("Working on something else");
    async_sleep(100 * ASYNC_MILLISECOND);
    puts("Task is done");

    void *value;
    int rc = future_get(ret, &value);
    if (rc == 0)
        puts(value);
    future_free(ret);
    printf("libasync %s (headers %s)\n", async_version(), ASYNC_VERSION);
    return rc == 0 && strcmp(async_version(), ASYNC_VERSION) == 0 ? 0 : 1;
}
