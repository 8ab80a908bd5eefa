/*
 * crawler — Go's web-crawler exercise: crawl a (fake) site in parallel,
 * fetching each page once, at most FETCHERS fetches at a time, each fetch
 * with its own timeout, and the whole crawl under one deadline.
 *
 * What it shows:
 *   - a scope (async_scope_open) holding every task of the crawl, with a
 *     deadline: when it passes, every task still running is cancelled, and
 *     async_scope_close waits for all of them;
 *   - a per-request timeout as Go writes it, a select over the fetch's
 *     future and a timer:
 *         select { case page := <-fetch: ...; case <-time.After(timeout): ... }
 *     here chan_select over two CHAN_FUTURE cases, the fetch task's future
 *     and async_after's; the losing fetch is cancelled;
 *   - a buffered channel as a counting semaphore bounding the parallelism.
 *
 * The site is the exercise's fakeFetcher, plus a page that answers too slowly.
 * Fetches sleep their page's latency (scaled by --scale).
 *
 * Usage: crawler [--scale K] [--deadline MS]
 *   --scale K      multiply latencies and the timeout by K (default 1)
 *   --deadline MS  the crawl's deadline (default 5000 ms, times K)
 */
#include <async.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FETCHERS   2     /* fetches at once */
#define TIMEOUT_MS 200   /* per fetch */
#define DEPTH      4

struct page {
    const char *url, *title;
    int         latency_ms;
    const char *links[4];
};

static const struct page site[] = {
    { "https://golang.org/", "The Go Programming Language", 30,
      { "https://golang.org/pkg/", "https://golang.org/cmd/" } },
    { "https://golang.org/pkg/", "Packages", 40,
      { "https://golang.org/", "https://golang.org/cmd/", "https://golang.org/pkg/fmt/",
        "https://golang.org/pkg/os/" } },
    { "https://golang.org/pkg/fmt/", "Package fmt", 30,
      { "https://golang.org/", "https://golang.org/pkg/" } },
    { "https://golang.org/pkg/os/", "Package os", 30,
      { "https://golang.org/", "https://golang.org/pkg/", "https://golang.org/pkg/net/" } },
    { "https://golang.org/pkg/net/", "Package net", 60000, { NULL } },   /* too slow */
};
#define NPAGES (sizeof site / sizeof site[0])

static int scale = 1;
static atomic_int fetching, most_fetching;
static chan_t *tokens;    /* the semaphore: FETCHERS slots */
static chan_t *results;   /* crawl tasks -> main */

/* One crawl of one url: the task's argument, and its report to main. */
struct job {
    const char        *url;
    int                depth;
    async_scope_t     *scope;
    const struct page *page;     /* found; NULL when not */
    int                rc;       /* 0, ENOENT, ETIMEDOUT, or why it stopped */
};

/* The fetcher: the page after its latency, or NULL (not found). */
static void *fetch(void *arg)
{
    const char *url = arg;
    int now = atomic_fetch_add(&fetching, 1) + 1;
    for (int most = atomic_load(&most_fetching);
         now > most && !atomic_compare_exchange_weak(&most_fetching, &most, now);)
        ;
    const struct page *found = NULL;
    for (size_t i = 0; i < NPAGES && !found; i++)
        if (strcmp(site[i].url, url) == 0)
            found = &site[i];
    int64_t ms = found ? found->latency_ms : 10;
    int rc = async_sleep_until(async_now() + ms * scale * ASYNC_MILLISECOND);
    atomic_fetch_sub(&fetching, 1);
    return rc == 0 ? (void *)found : NULL;   /* cancelled: nobody reads it */
}

/* Fetch one url with a timeout, holding one of the FETCHERS tokens. */
static void *crawl(void *arg)
{
    struct job *j = arg;
    char token = 0;
    j->rc = chan_send(tokens, &token);
    if (j->rc != 0)
        goto report;
    future_t *f = async_scope_run(j->scope, fetch, (void *)j->url);
    future_t *timer = async_after(async_now() + (int64_t)TIMEOUT_MS * scale * ASYNC_MILLISECOND);
    if (!f || !timer) {
        j->rc = errno;
    } else {
        void *page = NULL;
        chan_case_t cs[2] = {
            { .op = CHAN_FUTURE, .future = f, .elem = &page },
            { .op = CHAN_FUTURE, .future = timer },
        };
        size_t fired = SIZE_MAX;
        j->rc = chan_select(cs, 2, ASYNC_FOREVER, &fired);
        if (j->rc == 0 && fired == 1) {
            future_cancel(f);   /* too slow: stop it */
            j->rc = ETIMEDOUT;
        } else if (j->rc == 0) {
            j->page = page;
            j->rc = page ? 0 : ENOENT;
        }
    }
    future_free(f);
    future_free(timer);
    chan_recv(tokens, &token);
report:
    chan_send(results, &j);
    return NULL;
}

/* Every job of the crawl: main's; a job lives until main returns (a crawl
 * cut short leaves jobs that never ran, or never reported). */
static struct job jobs[64];
static size_t     njobs;

static int spawn(async_scope_t *scope, const char *url, int depth)
{
    if (njobs == sizeof jobs / sizeof jobs[0])
        return ENOMEM;
    struct job *j = &jobs[njobs++];
    *j = (struct job){ .url = url, .depth = depth, .scope = scope };
    future_t *f = async_scope_run(scope, crawl, j);
    if (!f)
        return errno;
    future_free(f);   /* the scope keeps its own reference */
    return 0;
}

/* The urls seen so far (main's alone). */
static const char *seen[64];
static size_t nseen;

static bool first_sight(const char *url)
{
    for (size_t i = 0; i < nseen; i++)
        if (strcmp(seen[i], url) == 0)
            return false;
    if (nseen < sizeof seen / sizeof seen[0])
        seen[nseen++] = url;
    return true;
}

int main(int argc, char **argv)
{
    int deadline_ms = 5000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--scale") == 0)
            scale = atoi(argv[i + 1]) > 0 ? atoi(argv[i + 1]) : 1;
        else if (strcmp(argv[i], "--deadline") == 0)
            deadline_ms = atoi(argv[i + 1]);
    }
    int64_t start = async_now();
    int64_t deadline = start + (int64_t)deadline_ms * scale * ASYNC_MILLISECOND;
    int64_t grace = (int64_t)20 * scale * ASYNC_MILLISECOND;   /* main waits a bit longer */
    tokens = chan_make(1, FETCHERS);
    results = chan_make(sizeof(struct job *), 16);
    async_scope_t *scope = async_scope_open(NULL, 0, deadline);
    if (!tokens || !results || !scope) {
        perror("crawler");
        return 1;
    }

    const char *root = "https://golang.org/";
    int pending = 0, found = 0, missing = 0, slow = 0;
    int refused = 0;   /* links found after the deadline: never fetched */
    first_sight(root);
    if (spawn(scope, root, DEPTH) == 0)
        pending++;
    while (pending > 0) {
        struct job *j;
        if (chan_recv_until(results, &j, deadline + grace) != 0) {
            /* The scope's deadline has cancelled what still runs (a
             * cancelled task cannot report). Cancel it here too, in case
             * its deadline is late on a busy machine: EALREADY, normally. */
            async_scope_cancel(scope);
            printf("crawl deadline passed with %d fetches unfinished\n", pending + refused);
            refused = 0;
            break;
        }
        pending--;
        if (j->rc == 0) {
            found++;
            printf("found: %s \"%s\"\n", j->url, j->page->title);
            for (size_t k = 0; k < 4 && j->page->links[k] && j->depth > 1; k++) {
                if (!first_sight(j->page->links[k]))
                    continue;
                int src = spawn(scope, j->page->links[k], j->depth - 1);
                if (src == 0)
                    pending++;
                else if (src == ECANCELED)
                    refused++;   /* the scope's deadline passed first */
            }
        } else if (j->rc == ENOENT) {
            missing++;
            printf("not found: %s\n", j->url);
        } else if (j->rc == ETIMEDOUT) {
            slow++;
            printf("timed out: %s (after %d ms)\n", j->url, TIMEOUT_MS * scale);
        } else {
            printf("stopped: %s (%s)\n", j->url, strerror(j->rc));
        }
    }
    /* The last page came in just as the deadline passed: its links could
     * no longer be fetched, and the crawl is cut short all the same. */
    if (refused > 0)
        printf("crawl deadline passed with %d fetches unfinished\n", refused);
    int rc = async_scope_close(scope);   /* waits for every task, the cancelled ones too */
    printf("crawl: %d found, %d not found, %d timed out in %.0f ms; at most %d fetches at once;"
           " scope: %s\n", found, missing, slow, (double)(async_now() - start) / 1e6,
           atomic_load(&most_fetching), rc == 0 ? "ok" : strerror(rc));
    chan_free(results);   /* reports of a crawl cut short may still be in it */
    chan_free(tokens);
    return 0;
}

/*
 * Output (the order of the lines before the last varies from run to run;
 * the timeout is a cancelled fetch, which the scope's close waits for):
 *
 * found: https://golang.org/ "The Go Programming Language"
 * not found: https://golang.org/cmd/
 * found: https://golang.org/pkg/ "Packages"
 * found: https://golang.org/pkg/fmt/ "Package fmt"
 * found: https://golang.org/pkg/os/ "Package os"
 * timed out: https://golang.org/pkg/net/ (after 200 ms)
 * crawl: 4 found, 1 not found, 1 timed out in 310 ms; at most 2 fetches at once; scope: ok
 */
