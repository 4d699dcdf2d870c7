/*
 * bench_util.h - timing and output for mproc's benchmarks.
 *
 * Each benchmark measures a fixed workload TRIALS times after an untimed
 * warm-up and reports the median, as the anchors in ../shared/anchors do,
 * on one line per figure:
 *
 *   bench <name> <value> <unit> <anchor>[,<anchor>...]
 *
 * naming the anchor figures it is to be held against.  scripts/bench.sh
 * pairs them up and prints the ratios.  "# " lines are commentary.
 */
#ifndef MPROC_BENCH_UTIL_H
#define MPROC_BENCH_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline double bench_median(const double *v, int n)
{
    double tmp[64];
    if (n <= 0 || n > 64)
        return 0;
    memcpy(tmp, v, sizeof(double) * (size_t)n);
    qsort(tmp, (size_t)n, sizeof(double), bench_cmp);
    return n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
}

/* Prints the trials and the figure line; returns the median. */
static inline double bench_report(const char *name, const double *v, int n, const char *unit,
                                  const char *anchors)
{
    double m = bench_median(v, n);
    printf("# %s trials:", name);
    for (int i = 0; i < n; i++)
        printf(" %.4g", v[i]);
    printf(" -> median %.4g %s\n", m, unit);
    printf("bench %s %.6g %s %s\n", name, m, unit, anchors ? anchors : "-");
    fflush(stdout);
    return m;
}

#endif /* MPROC_BENCH_UTIL_H */
