/*
 * cpu.c - how many CPUs this process may really use.
 *
 * The count of online CPUs overstates it twice over in containers: the
 * affinity mask (taskset, cpusets) restricts which CPUs the process may run
 * on, and a cgroup CPU quota restricts how much time it gets on them.  A
 * pool sized by the online count on a machine with 64 CPUs and a 2-CPU
 * quota runs 64 workers that are throttled in turn.  Both are read here.
 */
#define _GNU_SOURCE
#include "../platform.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int affinity_count(cpu_set_t *set)
{
    if (sched_getaffinity(0, sizeof *set, set) == 0) {
        int n = CPU_COUNT(set);
        if (n > 0)
            return n;
    }
    /* A mask larger than cpu_set_t (over 1024 CPUs) or no syscall. */
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    CPU_ZERO(set);
    return n > 0 ? (int)n : 1;
}

/* Reads a whole small file into buf (NUL-terminated).  Returns the length
 * or -1. */
static int read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (int)n;
}

/* The quota of a cgroup v2 directory as a CPU count rounded up, or 0 for
 * none ("max"). */
static int v2_quota(const char *dir)
{
    char path[PATH_MAX + 16], buf[128];
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    if (read_small(path, buf, sizeof buf) <= 0)
        return 0;
    if (strncmp(buf, "max", 3) == 0)
        return 0;
    long long quota = 0, period = 100000;
    if (sscanf(buf, "%lld %lld", &quota, &period) < 1 || quota <= 0 || period <= 0)
        return 0;
    return (int)((quota + period - 1) / period);
}

/* The smallest cgroup quota on the way from this process's cgroup up to
 * the root (a parent's limit binds its children too), or 0 for none. */
static int cgroup_quota(void)
{
    char buf[4096];
    if (read_small("/proc/self/cgroup", buf, sizeof buf) <= 0)
        return 0;
    int best = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *controllers = c1 + 1, *rel = c2 + 1;
        char dir[PATH_MAX];
        if (strncmp(line, "0", 1) == 0 && controllers[0] == '\0') {
            /* cgroup v2: walk from our group up to the root. */
            snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", strcmp(rel, "/") == 0 ? "" : rel);
            for (;;) {
                int q = v2_quota(dir);
                if (q > 0 && (best == 0 || q < best))
                    best = q;
                char *slash = strrchr(dir, '/');
                if (!slash || slash == dir || strcmp(dir, "/sys/fs/cgroup") == 0)
                    break;
                *slash = '\0';
                if (strlen(dir) < strlen("/sys/fs/cgroup"))
                    break;
            }
        } else if (strstr(controllers, "cpu")) {
            /* cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us. */
            const char *roots[] = {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"};
            for (size_t i = 0; i < 2; i++) {
                char path[PATH_MAX + 64], q[64], p[64];
                snprintf(path, sizeof path, "%s%s/cpu.cfs_quota_us", roots[i], rel);
                if (read_small(path, q, sizeof q) <= 0)
                    continue;
                snprintf(path, sizeof path, "%s%s/cpu.cfs_period_us", roots[i], rel);
                if (read_small(path, p, sizeof p) <= 0)
                    continue;
                long long quota = atoll(q), period = atoll(p);
                if (quota > 0 && period > 0) {
                    int n = (int)((quota + period - 1) / period);
                    if (best == 0 || n < best)
                        best = n;
                }
                break;
            }
        }
    }
    return best;
}

int mp__cpu_count(void)
{
    cpu_set_t set;
    int n = affinity_count(&set);
    int q = cgroup_quota();
    if (q > 0 && q < n)
        n = q;
    return n > 0 ? n : 1;
}

int mp__physical_cores(void)
{
    cpu_set_t set;
    int n = affinity_count(&set);
    if (CPU_COUNT(&set) == 0)
        return n;
    /* A core is a (package, core id) pair; hyper-threads share one. */
    long seen[CPU_SETSIZE][2];
    int cores = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set))
            continue;
        char path[128], buf[32];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id",
                 cpu);
        if (read_small(path, buf, sizeof buf) <= 0)
            return n;
        long pkg = atol(buf);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
        if (read_small(path, buf, sizeof buf) <= 0)
            return n;
        long core = atol(buf);
        int dup = 0;
        for (int i = 0; i < cores && !dup; i++)
            dup = seen[i][0] == pkg && seen[i][1] == core;
        if (!dup) {
            seen[cores][0] = pkg;
            seen[cores][1] = core;
            cores++;
        }
    }
    if (cores < 1)
        return 1;
    /* The quota limits time, not cores; never report more than it allows. */
    int q = cgroup_quota();
    if (q > 0 && q < cores)
        cores = q;
    return cores;
}
