/*
 * test/test_dump.c — seeing inside (API.md: Seeing inside): async_dump
 * names every unfinished task and what it waits on, in both modes;
 * async_dump_on_signal hands the dump to a thread; every log line names the
 * pool and the task.
 *
 * The big test blocks 1,000 tasks in five kinds of wait (a running task's
 * future, a promise, a channel receive, a two-case select, a sleep), waits
 * until the pool's counters say all 1,000 are parked or blocked, dumps into
 * memory and parses the text back: 1,000 task lines, each task id one of
 * the futures the test holds, each wait the right kind naming the right
 * object. Queued tasks, in a worker's deque and in the injection queue,
 * are listed too ("state queued"). This program is linked with -rdynamic (meson: export_dynamic), so
 * dladdr names its task functions.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"   /* the record walk and its test hook */
#include "testutil.h"

#define PER_KIND 200u
#define KINDS    5u
#define TOTAL    (PER_KIND * KINDS)

static async_pool_t *dpool(bool goroutine, unsigned threads, struct tu_log *log)
{
    async_pool_config_t cfg = {
        .threads = threads,
        .name = "dumptest",
        .log = log ? tu_log_hook : NULL,
        .log_ctx = log,
        .stack_size = goroutine ? 64 * 1024 : ASYNC_STACK_THREAD,
    };
    async_pool_t *pool = async_pool_create(&cfg);
    cr_assert_not_null(pool, "async_pool_create: %s", strerror(errno));
    return pool;
}

/* ------------------------------------------------- the waiting tasks */

struct world {
    chan_t    *ch;          /* receivers wait here */
    chan_t    *s1, *s2;     /* selects wait on both */
    promise_t *p;
    future_t  *pf;          /* the promise's future, for its waiters */
    int64_t    far;         /* the sleepers' deadline */
};
static struct world W;

/* Not static, so that dladdr finds them (-rdynamic). */
void *dump_recv_task(void *arg);
void *dump_future_task(void *arg);
void *dump_promise_task(void *arg);
void *dump_select_task(void *arg);
void *dump_sleep_task(void *arg);
void *dump_spin_task(void *arg);
void *dump_panic_task(void *arg);

void *dump_recv_task(void *arg)
{
    (void)arg;
    int v;
    return (void *)(intptr_t)chan_recv(W.ch, &v);
}

void *dump_future_task(void *arg)
{
    return (void *)(intptr_t)future_get(arg, NULL);
}

void *dump_promise_task(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)future_get(W.pf, NULL);
}

void *dump_select_task(void *arg)
{
    (void)arg;
    int a, b;
    chan_case_t cases[2] = {
        { .chan = W.s1, .op = CHAN_RECV, .elem = &a },
        { .chan = W.s2, .op = CHAN_RECV, .elem = &b },
    };
    size_t which;
    return (void *)(intptr_t)chan_select(cases, 2, ASYNC_FOREVER, &which);
}

void *dump_sleep_task(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)async_sleep_until(W.far);
}

/* Spin until `want` tasks of the pool are parked or blocked. */
static void wait_blocked(async_pool_t *pool, unsigned want)
{
    int64_t until = tu_deadline();
    async_pool_stats_t st;
    do {
        cr_assert_eq(async_pool_stats(pool, &st), 0);
        if (tu_blocked(&st) >= want)
            return;
    } while (tu_spin_once(until));
    cr_assert_fail("only %u of %u tasks blocked", tu_blocked(&st), want);
}

/* async_dump's text, in a string to free. */
static char *dump_to_string(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    cr_assert_not_null(mem);
    cr_assert_eq(async_dump(mem), 0);
    cr_assert_eq(fclose(mem), 0);
    return text;
}

/* ------------------------------------------------------ the parser */

struct parsed {
    unsigned  pools, header_tasks, lines, end;
    unsigned  kind[KINDS];          /* future, promise, chan, select, sleep */
    unsigned  bad;                  /* lines that named the wrong thing */
    char      first_bad[512];
};

static bool holds(future_t *const *fs, size_t n, uintptr_t id)
{
    for (size_t i = 0; i < n; i++)
        if ((uintptr_t)fs[i] == id)
            return true;
    return false;
}

static void bad(struct parsed *p, const char *line)
{
    if (!p->bad++)
        snprintf(p->first_bad, sizeof p->first_bad, "%s", line);
}

/* One task line: "pool dumptest task 0xID fn SYM state ST wait W ...". */
static void parse_task(struct parsed *p, const char *line, future_t *const *all,
                       future_t *const *receivers, const char *want_state)
{
    uintptr_t id, obj;
    char fn[128], state[32], kind[32], rest[256];
    int n = sscanf(line, "pool dumptest task 0x%" SCNxPTR " fn %127s state %31s wait %31s %255[^\n]",
                   &id, fn, state, kind, rest);
    if (n != 5 || !holds(all, TOTAL, id) || strcmp(state, want_state) != 0) {
        bad(p, line);
        return;
    }
    p->lines++;
    bool forever = strstr(rest, "deadline none") != NULL;
    if (strcmp(kind, "future") == 0 && strcmp(fn, "dump_future_task") == 0 &&
        sscanf(rest, "0x%" SCNxPTR, &obj) == 1 && holds(receivers, PER_KIND, obj) && forever)
        p->kind[0]++;
    else if (strcmp(kind, "promise") == 0 && strcmp(fn, "dump_promise_task") == 0 &&
             sscanf(rest, "0x%" SCNxPTR, &obj) == 1 && obj == (uintptr_t)W.pf && forever)
        p->kind[1]++;
    else if (strcmp(kind, "chan") == 0 && strcmp(fn, "dump_recv_task") == 0 &&
             sscanf(rest, "0x%" SCNxPTR, &obj) == 1 && obj == (uintptr_t)W.ch &&
             strstr(rest, " recv for ") && forever)
        p->kind[2]++;
    else if (strcmp(kind, "select") == 0 && strcmp(fn, "dump_select_task") == 0 &&
             strncmp(rest, "2 for ", 6) == 0 && forever)
        p->kind[3]++;
    else if (strcmp(kind, "sleep") == 0 && strcmp(fn, "dump_sleep_task") == 0 &&
             strncmp(rest, "for ", 4) == 0 && strstr(rest, " deadline 3") != NULL)
        p->kind[4]++;   /* the deadline is an hour away: 3,5xx s */
    else
        bad(p, line);
}

static struct parsed parse_dump(char *text, future_t *const *all, future_t *const *receivers,
                                const char *want_state)
{
    struct parsed p = { 0 };
    unsigned npools;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (sscanf(line, "libasync dump: pid %*d, %u pools, %u tasks", &npools,
                   &p.header_tasks) == 2)
            continue;
        if (strcmp(line, "libasync dump end") == 0) {
            p.end++;
            continue;
        }
        if (strncmp(line, "pool dumptest mode ", 19) == 0) {
            p.pools++;
            continue;
        }
        parse_task(&p, line, all, receivers, want_state);
    }
    return p;
}

/* ------------------------------------------------------------- tests */

static void thousand(bool goroutine)
{
    async_pool_t *pool = dpool(goroutine, 2, NULL);
    W.ch = chan_make(sizeof(int), 0);
    W.s1 = chan_make(sizeof(int), 0);
    W.s2 = chan_make(sizeof(int), 0);
    W.p = promise_make();
    W.pf = promise_future(W.p);
    W.far = async_now() + 3600 * ASYNC_SECOND;
    cr_assert(W.ch && W.s1 && W.s2 && W.p && W.pf);
    future_t *all[TOTAL];
    /* the receivers first, and all blocked: a future waiter must find its
     * task running (a pending one it would run inline) */
    for (unsigned i = 0; i < PER_KIND; i++)
        cr_assert_not_null(all[i] = async_run_on(pool, dump_recv_task, NULL));
    wait_blocked(pool, PER_KIND);
    for (unsigned i = 0; i < PER_KIND; i++) {
        cr_assert_not_null(all[PER_KIND + i] = async_run_on(pool, dump_future_task, all[i]));
        cr_assert_not_null(all[2 * PER_KIND + i] = async_run_on(pool, dump_promise_task, NULL));
        cr_assert_not_null(all[3 * PER_KIND + i] = async_run_on(pool, dump_select_task, NULL));
        cr_assert_not_null(all[4 * PER_KIND + i] = async_run_on(pool, dump_sleep_task, NULL));
    }
    wait_blocked(pool, TOTAL);

    char *text = dump_to_string();
    struct parsed p = parse_dump(text, all, all, goroutine ? "parked" : "blocked");
    free(text);
    cr_assert_eq(p.bad, 0, "%u unexpected lines, the first: %s", p.bad, p.first_bad);
    cr_assert_eq(p.pools, 1);
    cr_assert_eq(p.end, 1);
    cr_assert_eq(p.header_tasks, TOTAL);
    cr_assert_eq(p.lines, TOTAL);
    for (unsigned k = 0; k < KINDS; k++)
        cr_assert_eq(p.kind[k], PER_KIND, "kind %u: %u lines", k, p.kind[k]);

    /* a cancelling destroy ends every wait */
    cr_assert_eq(async_pool_destroy(pool, ASYNC_CANCEL), 0);
    for (unsigned i = 0; i < TOTAL; i++) {
        cr_assert(future_done(all[i]));
        future_free(all[i]);
    }
    future_free(W.pf);
    promise_free(W.p);
    chan_free(W.ch);
    chan_free(W.s1);
    chan_free(W.s2);
}

Test(dump, thousand_tasks_in_five_waits_goroutine_mode, .timeout = 120)
{
    thousand(true);
}

Test(dump, thousand_tasks_in_five_waits_thread_mode, .timeout = 120)
{
    thousand(false);
}

Test(dump, null_file_is_einval)
{
    cr_assert_eq(async_dump(NULL), EINVAL);
}

/* A running task: "state running", no wait; a pool with nothing left:
 * its line, no task line. */
static tu_gate_t run_go, run_started;

void *dump_spin_task(void *arg)
{
    (void)arg;
    tu_gate_open(&run_started);
    tu_gate_wait(&run_go);
    return NULL;
}

static void running(bool goroutine)
{
    async_pool_t *pool = dpool(goroutine, 1, NULL);
    future_t *f = async_run_on(pool, dump_spin_task, NULL);
    cr_assert(tu_gate_wait(&run_started));
    char *text = dump_to_string();
    char want[256];
    snprintf(want, sizeof want, "pool dumptest task %p fn dump_spin_task state running\n",
             (void *)f);
    cr_assert(strstr(text, want), "no \"%s\" in:\n%s", want, text);
    free(text);
    tu_gate_open(&run_go);
    cr_assert_eq(tu_get(f, NULL), 0);
    future_free(f);
    text = dump_to_string();
    cr_assert(strstr(text, "pool dumptest mode "), "%s", text);
    cr_assert_null(strstr(text, " task 0x"), "%s", text);
    free(text);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

/* Queued tasks, in both kinds of run queue: the one worker of a 1-thread
 * pool runs a task that submits QDEQUE children to its own pool (its
 * deque) and then holds its thread on a gate (no library wait, so in
 * goroutine mode too nothing else runs), and main submits QINJ more (the
 * injection queue, and the newest in the pool's outside slot). The dump lists each as "state queued", under its own
 * id and function, and the running task as running. */
#define QDEQUE 100u
#define QINJ   150u

static future_t *qchildren[QDEQUE];

void *dump_queued_task(void *arg);
void *dump_parent_task(void *arg);

void *dump_queued_task(void *arg)
{
    return arg;
}

void *dump_parent_task(void *arg)
{
    async_pool_t *pool = arg;
    for (unsigned i = 0; i < QDEQUE; i++)
        qchildren[i] = async_run_on(pool, dump_queued_task, NULL);
    tu_gate_open(&run_started);
    tu_gate_wait(&run_go);
    return NULL;
}

static void queued(bool goroutine)
{
    atomic_store(&run_started.open, 0);
    atomic_store(&run_go.open, 0);
    async_pool_t *pool = dpool(goroutine, 1, NULL);
    future_t *parent = async_run_on(pool, dump_parent_task, pool);
    cr_assert_not_null(parent);
    cr_assert(tu_gate_wait(&run_started));
    future_t *all[QDEQUE + QINJ];
    for (unsigned i = 0; i < QDEQUE; i++)
        cr_assert_not_null(all[i] = qchildren[i]);
    for (unsigned i = 0; i < QINJ; i++)
        cr_assert_not_null(all[QDEQUE + i] = async_run_on(pool, dump_queued_task, NULL));

    char *text = dump_to_string();
    char want[256];
    snprintf(want, sizeof want, "pool dumptest task %p fn dump_parent_task state running\n",
             (void *)parent);
    cr_assert(strstr(text, want), "no \"%s\" in:\n%s", want, text);
    unsigned header = 0, lines = 0, bad_lines = 0, seen[QDEQUE + QINJ] = { 0 };
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        uintptr_t id;
        char fn[128], state[32];
        unsigned n;
        if (sscanf(line, "libasync dump: pid %*d, %*u pools, %u tasks", &n) == 1)
            header = n;
        if (sscanf(line, "pool dumptest task 0x%" SCNxPTR " fn %127s state %31s", &id, fn,
                   state) != 3 || strcmp(state, "queued") != 0)
            continue;
        lines++;
        unsigned k = 0;
        while (k < QDEQUE + QINJ && (uintptr_t)all[k] != id)
            k++;
        if (k == QDEQUE + QINJ || strcmp(fn, "dump_queued_task") != 0 || seen[k]++)
            bad_lines++;
    }
    free(text);
    cr_assert_eq(bad_lines, 0, "%u queued lines with a wrong id or function", bad_lines);
    cr_assert_eq(lines, QDEQUE + QINJ, "%u queued lines", lines);
    cr_assert_eq(header, QDEQUE + QINJ + 1, "header: %u tasks", header);

    tu_gate_open(&run_go);
    cr_assert_eq(tu_get(parent, NULL), 0);
    future_free(parent);
    for (unsigned i = 0; i < QDEQUE + QINJ; i++) {
        cr_assert_eq(tu_get(all[i], NULL), 0);
        future_free(all[i]);
    }
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

Test(dump, queued_tasks_goroutine_mode)
{
    queued(true);
}

Test(dump, queued_tasks_thread_mode)
{
    queued(false);
}

/* The record walk (lib/task.c): while a walk is on, a record's last drop
 * holds it instead of freeing it; the last walk to end frees them all, and
 * then nothing is held (ASan and the checked build's quarantine see them
 * go back as usual). */
Test(dump, records_dropped_during_a_walk_are_held_until_it_ends)
{
    cr_assert_eq(async__test_records_held(), 0);
    async__record_walk_begin();
    async__record_walk_begin();   /* walks may overlap */
    for (int i = 0; i < 50; i++) {   /* last drops on this thread */
        promise_t *p = promise_make();
        cr_assert_not_null(p);
        future_t *f = promise_future(p);
        cr_assert_eq(promise_complete(p, NULL), 0);
        cr_assert_eq(future_get(f, NULL), 0);
        future_free(f);
        promise_free(p);
    }
    async_pool_t *pool = dpool(true, 1, NULL);
    future_t *fs[50];
    for (int i = 0; i < 50; i++)
        cr_assert_not_null(fs[i] = async_run_on(pool, dump_queued_task, NULL));
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(tu_get(fs[i], NULL), 0);
        future_free(fs[i]);
    }
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    cr_assert_eq(async__test_records_held(), 100, "%zu held", async__test_records_held());
    async__record_walk_end();
    cr_assert_eq(async__test_records_held(), 100, "the other walk is still on");
    async__record_walk_end();
    cr_assert_eq(async__test_records_held(), 0);
    promise_t *p = promise_make();   /* and a drop after the walks is not held */
    cr_assert_eq(promise_complete(p, NULL), 0);
    future_free(promise_future(p));
    promise_free(p);
    cr_assert_eq(async__test_records_held(), 0);
}

/* "for S": how long a task has waited, from the stamp its wait took. A
 * task blocked on a channel for at least a second by the library's clock
 * shows at least that, and not half as much again (a rate of the CPU's
 * counter measured wrong would show up as a multiple). */
static void waited_for(bool goroutine)
{
    async_pool_t *pool = dpool(goroutine, 1, NULL);
    W.ch = chan_make(sizeof(int), 0);
    cr_assert_not_null(W.ch);
    future_t *f = async_run_on(pool, dump_recv_task, NULL);
    cr_assert_not_null(f);
    wait_blocked(pool, 1);
    int64_t blocked_by = async_now();
    async_sleep(ASYNC_SECOND);
    int64_t waited = async_now() - blocked_by;
    char *text = dump_to_string();
    char *at = strstr(text, " recv for ");
    cr_assert_not_null(at, "%s", text);
    double s = strtod(at + strlen(" recv for "), NULL);
    double w = (double)(waited / ASYNC_MILLISECOND) / 1000.0;
    cr_assert(s >= w - 0.005 && s < 1.5 * w + 0.5,
              "waited %.3f s by the test's clock, the dump says %.3f s:\n%s",
              (double)waited / 1e9, s, text);
    free(text);
    chan_close(W.ch);
    cr_assert_eq(tu_get(f, NULL), 0);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    chan_free(W.ch);
}

Test(dump, waited_for_goroutine_mode)
{
    waited_for(true);
}

Test(dump, waited_for_thread_mode)
{
    waited_for(false);
}

Test(dump, running_task_goroutine_mode)
{
    running(true);
}

Test(dump, running_task_thread_mode)
{
    running(false);
}

/* ------------------------------------------------------ signal dump */

Test(dump_signal, refuses_what_it_cannot_trap)
{
    cr_assert_eq(async_dump_on_signal(-1), EINVAL);
    cr_assert_eq(async_dump_on_signal(NSIG), EINVAL);
    cr_assert_eq(async_dump_on_signal(SIGKILL), EINVAL);
    cr_assert_eq(async_dump_on_signal(SIGSTOP), EINVAL);
    cr_assert_eq(async_dump_on_signal(SIGSEGV), EINVAL);
    cr_assert_eq(async_dump_on_signal(0), 0);   /* nothing to stop: fine */
}

static void signal_dump(bool goroutine)
{
    async_pool_t *pool = dpool(goroutine, 1, NULL);
    W.ch = chan_make(sizeof(int), 0);
    future_t *f = async_run_on(pool, dump_recv_task, NULL);
    wait_blocked(pool, 1);
    /* stderr into a file for the dump thread to write to */
    char path[] = "/tmp/test_dump_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    cr_assert_geq(saved, 0);
    cr_assert_eq(dup2(fd, 2), 2);
    cr_assert_eq(async_dump_on_signal(SIGUSR1), 0);
    cr_assert_eq(raise(SIGUSR1), 0);
    char buf[8192];
    ssize_t n = 0;
    int64_t until = tu_deadline();
    do {
        n = pread(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
    } while (!strstr(buf, "libasync dump end\n") && tu_spin_once(until));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    char want[256];
    snprintf(want, sizeof want, "pool dumptest task %p fn dump_recv_task state %s wait chan %p "
             "recv for ", (void *)f, goroutine ? "parked" : "blocked", (void *)W.ch);
    cr_assert(strstr(buf, want), "no \"%s\" in:\n%s", want, buf);
    /* 0 puts the old disposition back */
    cr_assert_eq(async_dump_on_signal(0), 0);
    struct sigaction now;
    cr_assert_eq(sigaction(SIGUSR1, NULL, &now), 0);
    cr_assert_eq(now.sa_handler, SIG_DFL);
    chan_close(W.ch);
    cr_assert_eq(tu_get(f, NULL), 0);
    future_free(f);
    chan_free(W.ch);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
}

Test(dump_signal, sigusr1_dumps_to_stderr_goroutine_mode)
{
    signal_dump(true);
}

Test(dump_signal, sigusr1_dumps_to_stderr_thread_mode)
{
    signal_dump(false);
}

static void ignore(int s)
{
    (void)s;
}

Test(dump_signal, moving_to_another_signal_restores_the_first)
{
    struct sigaction sa = { .sa_handler = ignore };
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR2, &sa, NULL), 0);
    cr_assert_eq(async_dump_on_signal(SIGUSR2), 0);
    cr_assert_eq(async_dump_on_signal(SIGUSR1), 0);
    struct sigaction now;
    cr_assert_eq(sigaction(SIGUSR2, NULL, &now), 0);
    cr_assert_eq(now.sa_handler, ignore);
    cr_assert_eq(sigaction(SIGUSR1, NULL, &now), 0);
    cr_assert_neq(now.sa_handler, SIG_DFL);
    cr_assert_eq(async_dump_on_signal(0), 0);
    cr_assert_eq(sigaction(SIGUSR1, NULL, &now), 0);
    cr_assert_eq(now.sa_handler, SIG_DFL);
}

/* -------------------------------------------------------- log lines */

void *dump_panic_task(void *arg)
{
    (void)arg;
    async_panic(EDOM, "boom %d", 42);
}

static void panic_line(bool goroutine)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_t *pool = dpool(goroutine, 1, &log);
    future_t *f = async_run_on(pool, dump_panic_task, NULL);
    cr_assert_eq(tu_get(f, NULL), EDOM);
    char want[256];
    snprintf(want, sizeof want, "pool dumptest task %p fn dump_panic_task: panic: boom 42 "
             "(error %d)", (void *)f, EDOM);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    char line[512] = "";
    cr_assert(tu_log_find_prefix(&log, "pool dumptest task ", line, sizeof line));
    cr_assert_str_eq(line, want);
    tu_log_fini(&log);
}

Test(dump_log, panic_line_names_pool_task_and_function_goroutine_mode)
{
    panic_line(true);
}

Test(dump_log, panic_line_names_pool_task_and_function_thread_mode)
{
    panic_line(false);
}

Test(dump_log, blanks_in_a_pool_name_become_underscores)
{
    struct tu_log log;
    tu_log_init(&log);
    async_pool_config_t cfg = { .threads = 1, .name = "my pool", .log = tu_log_hook,
                                .log_ctx = &log };
    async_pool_t *pool = async_pool_create(&cfg);
    cr_assert_not_null(pool);
    future_t *f = async_run_on(pool, dump_panic_task, NULL);
    cr_assert_eq(tu_get(f, NULL), EDOM);
    future_free(f);
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    cr_assert_eq(tu_log_matching(&log, "pool my_pool task 0x"), 1);
    tu_log_fini(&log);
}
