/*
 * test/test_cpus.c — the default pool size: the CPUs of the affinity mask,
 * capped by the cgroup v2 quota (cpu.max, rounded up), overridden by
 * $ASYNC_THREADS (lib/cpus.c, README "Environment").
 *
 * A fake cgroup directory stands in for the process's own cgroup through
 * $ASYNC_TEST_CGROUP_ROOT. Criterion runs each test in a process of its own,
 * so a test may narrow its affinity mask (as taskset does) or set the
 * environment without touching the others. meson also runs this program under
 * `taskset -c 0` with TEST_CPUS_EXPECT=1.
 */
#include <criterion/criterion.h>

#include "internal.h"
#include "testutil.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char root[64];

static unsigned affinity(void)
{
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    return (unsigned)CPU_COUNT(&set);
}

/* A fake cgroup whose cpu.max holds text (NULL: no cpu.max at all). */
static void fake_cgroup(const char *text)
{
    snprintf(root, sizeof root, "/tmp/async-cgroup-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    if (text) {
        char path[128];
        snprintf(path, sizeof path, "%s/cpu.max", root);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(text, f);
        fclose(f);
    }
    setenv("ASYNC_TEST_CGROUP_ROOT", root, 1);
    unsetenv("ASYNC_THREADS");
}

static void remove_cgroup(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/cpu.max", root);
    unlink(path);
    rmdir(root);
}

/* Runs the pool's default sizing and returns how many workers it started. */
static unsigned default_pool_threads(void)
{
    async_pool_t *pool = async_pool_create(NULL);
    cr_assert_not_null(pool);
    async_pool_stats_t s;
    cr_assert(tu_pool_quiet(pool, &s));
    cr_assert_eq(async_pool_destroy(pool, ASYNC_DRAIN), 0);
    return s.threads;
}

static unsigned at_most(unsigned quota)
{
    unsigned a = affinity();
    return quota < a ? quota : a;
}

Test(cpus, no_quota_gives_the_affinity_mask)
{
    fake_cgroup("max 100000\n");
    cr_assert_eq(async__cpu_count(), affinity());
    remove_cgroup();
}

Test(cpus, missing_cpu_max_gives_the_affinity_mask)
{
    fake_cgroup(NULL);
    cr_assert_eq(async__cpu_count(), affinity());
    remove_cgroup();
}

Test(cpus, malformed_cpu_max_is_ignored)
{
    fake_cgroup("lots\n");
    cr_assert_eq(async__cpu_count(), affinity());
    remove_cgroup();
}

Test(cpus, quota_of_one_cpu_gives_one)
{
    fake_cgroup("100000 100000\n");
    cr_assert_eq(async__cpu_count(), 1);
    remove_cgroup();
}

Test(cpus, fractional_quota_rounds_up)
{
    fake_cgroup("150000 100000\n");
    cr_assert_eq(async__cpu_count(), at_most(2));
    remove_cgroup();
}

Test(cpus, quota_below_one_cpu_still_gives_one)
{
    fake_cgroup("10000 100000\n");
    cr_assert_eq(async__cpu_count(), 1);
    remove_cgroup();
}

Test(cpus, quota_above_the_affinity_mask_gives_the_mask)
{
    fake_cgroup("100000000 100000\n");   /* 1000 CPUs */
    cr_assert_eq(async__cpu_count(), affinity());
    remove_cgroup();
}

Test(cpus, narrowed_affinity_mask_is_counted)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() >= 0 ? sched_getcpu() : 0, &one);
    cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);   /* taskset -c N */
    fake_cgroup("max 100000\n");
    cr_assert_eq(async__cpu_count(), 1);
    cr_assert_eq(default_pool_threads(), 1);
    remove_cgroup();
}

Test(cpus, default_pool_size_follows_the_quota)
{
    fake_cgroup("100000 100000\n");
    cr_assert_eq(default_pool_threads(), 1);
    remove_cgroup();
}

Test(cpus, async_threads_overrides_the_quota)
{
    fake_cgroup("100000 100000\n");
    setenv("ASYNC_THREADS", "3", 1);
    cr_assert_eq(default_pool_threads(), 3);
    remove_cgroup();
}

/* Under `taskset -c 0` (meson's cpus_taskset test) the mask holds one CPU. */
Test(cpus, runs_with_the_expected_cpus)
{
    const char *want = getenv("TEST_CPUS_EXPECT");
    unsetenv("ASYNC_TEST_CGROUP_ROOT");
    unsigned n = async__cpu_count();
    cr_assert_geq(n, 1);
    cr_assert_leq(n, affinity());
    if (want)
        cr_assert_eq(n, (unsigned)atoi(want));
}
