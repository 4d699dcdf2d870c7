/*
 * lifetime.c - tying a process's life to another's, and shedding what it
 * inherited: for server processes started by fork (the manager).
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

int mp__die_with_parent(int signo, pid_t parent)
{
    if (prctl(PR_SET_PDEATHSIG, signo) != 0)
        return -errno;
    /* The parent may have died before the call: then no signal comes. */
    return getppid() == parent ? 0 : MP_ESRCH;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Closes [lo, hi]. */
static void close_span(int lo, int hi)
{
    if (lo > hi)
        return;
    if (syscall(SYS_close_range, (unsigned)lo, (unsigned)hi, 0) == 0)
        return;
    /* Kernels before 5.9: one by one, up to the descriptor limit. */
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (long fd = lo; fd <= hi && fd < max; fd++)
        (void)close((int)fd);
}

void mp__close_fds_except(const int *keep, size_t n)
{
    int k[16] = {0};
    size_t m = 0;
    for (size_t i = 0; i < n && m < 16; i++) {
        if (keep[i] > 2)
            k[m++] = keep[i];
    }
    qsort(k, m, sizeof k[0], cmp_int);
    int lo = 3;
    for (size_t i = 0; i < m; i++) {
        close_span(lo, k[i] - 1);
        lo = k[i] + 1;
    }
    close_span(lo, INT32_MAX);
}
