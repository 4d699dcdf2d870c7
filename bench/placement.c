/*
 * placement.c - where the host put CPUs 0 and 1 right now, as the time a
 * cache line takes to move from one to the other (ns, one number on
 * stdout).  scripts/bench.sh runs it before and after each program of
 * its paired rounds, so that a figure is only held against an anchor
 * that ran with the CPUs placed as they were for it.
 *
 * On a virtual machine the host may place two CPUs in one core complex
 * (~15 or ~40 ns) or far apart (~220 ns), and move them between one
 * program and the next; latency, bandwidth and broadcasts follow.  The
 * probe is limit_cacheline_pingpong_ns_proc of ../shared/anchors (two
 * processes pinned to CPUs 0 and 1 passing a counter in one shared line),
 * shortened to about 0.1 s: the median of 5 trials of 20 000 hand-offs.
 */
#include "bench_util.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define HANDOFFS 20000u
#define TRIALS   5

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)sched_setaffinity(0, sizeof set, &set);
}

/* Waits until the line holds want; then writes want + 1 (the other side's
 * turn). */
static void turn(_Atomic uint64_t *line, uint64_t want)
{
    while (atomic_load_explicit(line, memory_order_acquire) != want)
        __builtin_ia32_pause();
    atomic_store_explicit(line, want + 1, memory_order_release);
}

int main(void)
{
    /* One CPU: the two sides would take turns by time slices. */
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return 1;
    _Atomic uint64_t *line =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (line == MAP_FAILED)
        return 1;
    atomic_store(line, 0);
    const uint64_t total = (uint64_t)HANDOFFS * TRIALS;
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        pin(1);
        for (uint64_t v = 1; v < 2 * total; v += 2)
            turn(line, v);
        _exit(0);
    }
    pin(0);
    double ns[TRIALS];
    for (int t = 0; t < TRIALS; t++) {
        double t0 = bench_now();
        for (uint64_t v = 2 * (uint64_t)t * HANDOFFS; v < 2 * (uint64_t)(t + 1) * HANDOFFS; v += 2)
            turn(line, v);
        ns[t] = (bench_now() - t0) * 1e9 / (2.0 * HANDOFFS);
    }
    waitpid(pid, NULL, 0);
    printf("%.0f\n", bench_median(ns, TRIALS));
    return 0;
}
