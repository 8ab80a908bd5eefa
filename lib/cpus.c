/*
 * lib/cpus.c — how many CPUs this process may use: the default pool size.
 *
 * Owns nothing shared; every call reads the system afresh (pools are created
 * rarely). sysconf(_SC_NPROCESSORS_ONLN) counts the host's CPUs, so a
 * container limited to 2 CPUs on a 64-core host would start 64 workers. As
 * the JVM and Go do, the answer is the smallest of:
 *
 *   - the CPUs in the affinity mask (sched_getaffinity: taskset, cpusets);
 *   - the cgroup v2 CPU quota, cpu.max "QUOTA PERIOD" of the process's own
 *     cgroup, QUOTA / PERIOD rounded up ("max": no quota);
 *
 * and at least 1. $ASYNC_THREADS overrides all of it (pool.c reads it).
 *
 * cgroup v1 (cpu.cfs_quota_us) is not read: Debian 12 and the container
 * runtimes of its time mount v2 only. Nested cgroups may each set a quota; the
 * process's own cgroup and its ancestors up to the mount root are read and the
 * smallest quota wins, as the kernel enforces the smallest.
 *
 * Rejected: counting the cpuset.cpus.effective file (the affinity mask
 * already reflects it) and rounding the quota down (a 1.5-CPU quota would
 * then waste half a CPU; the JVM and Go round up too).
 *
 * Tests point the lookup at a fake cgroup directory with
 * $ASYNC_TEST_CGROUP_ROOT: that directory's cpu.max is read instead of the
 * process's own cgroups. Only tests set it.
 */
#include "internal.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CGROUP_ROOT "/sys/fs/cgroup"

static unsigned affinity_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return (unsigned)n;
    }
    /* more CPUs than a cpu_set_t holds, or no such call: the host's count */
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* The quota in dir/cpu.max as whole CPUs rounded up; 0 for none. */
static unsigned cpu_max_quota(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/cpu.max", dir) >= (int)sizeof path)
        return 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char quota[32];
    unsigned long long period = 0;
    int got = fscanf(f, "%31s %llu", quota, &period);
    fclose(f);
    if (got != 2 || period == 0 || strcmp(quota, "max") == 0)
        return 0;
    char *end;
    unsigned long long q = strtoull(quota, &end, 10);
    if (*end || q == 0)
        return 0;
    unsigned long long cpus = (q + period - 1) / period;
    return cpus > UINT_MAX ? UINT_MAX : (unsigned)cpus;
}

/* The process's cgroup v2 path ("0::/PATH" in /proc/self/cgroup) into buf. */
static bool own_cgroup(char *buf, size_t size)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return false;
    char line[PATH_MAX + 8];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::", 3) != 0)
            continue;
        line[strcspn(line, "\n")] = '\0';
        found = snprintf(buf, size, "%s", line + 3) < (int)size;
    }
    fclose(f);
    return found;
}

/* The smallest quota from the process's cgroup up to the root; 0 for none. */
static unsigned cgroup_cpus(void)
{
    const char *test_root = getenv("ASYNC_TEST_CGROUP_ROOT");
    if (test_root && *test_root)
        return cpu_max_quota(test_root);
    char rel[PATH_MAX], dir[PATH_MAX];
    if (!own_cgroup(rel, sizeof rel))
        return 0;
    unsigned best = 0;
    for (;;) {
        if (snprintf(dir, sizeof dir, "%s%s", CGROUP_ROOT, rel) < (int)sizeof dir) {
            unsigned q = cpu_max_quota(dir);
            if (q && (!best || q < best))
                best = q;
        }
        char *slash = strrchr(rel, '/');
        if (!slash || slash == rel)
            break;          /* the root cgroup itself has no cpu.max */
        *slash = '\0';
    }
    return best;
}

unsigned async__cpu_count(void)
{
    unsigned n = affinity_cpus();
    unsigned quota = cgroup_cpus();
    if (quota && quota < n)
        n = quota;
    return n ? n : 1;
}
