/*
 * futex.c - process-shared futex wait and wake.
 *
 * FUTEX_WAIT_BITSET is used for every wait because, unlike FUTEX_WAIT, it
 * takes an absolute CLOCK_MONOTONIC timeout: a wait interrupted by a signal
 * resumes against the same deadline.  The futexes are shared (no
 * FUTEX_PRIVATE_FLAG) because the words live in memory mapped by several
 * processes; the kernel then keys them by the page, not the address, so
 * they work even where the processes map the page at different addresses.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

int mp__futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t deadline)
{
    struct timespec abs, *tsp = NULL;
    if (mp__deadline_timespec(deadline, &abs)) {
        if (deadline <= mp__now_ns())
            return MP_ETIMEDOUT;
        tsp = &abs;
    }
    long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET, expected, tsp, NULL,
                      FUTEX_BITSET_MATCH_ANY);
    if (rc == 0)
        return 0;
    switch (errno) {
    case EAGAIN: /* *word != expected: the state changed already */
        return 0;
    case ETIMEDOUT:
        return MP_ETIMEDOUT;
    case EINTR:
        return MP_EINTR;
    default:
        return -errno;
    }
}

int mp__futex_wake(_Atomic uint32_t *word, int n)
{
    long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
    return rc < 0 ? -errno : (int)rc;
}
