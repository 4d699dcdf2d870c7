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

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

/* The kernel's struct futex_waitv (linux/futex.h, 5.16), spelled out so
 * that the build does not depend on the headers' age. */
struct waitv {
    uint64_t val;
    uint64_t uaddr;
    uint32_t flags;
    uint32_t reserved;
};

#define WAITV_FUTEX_32 2u /* FUTEX_32: a 32-bit word, shared (no private flag) */

int mp__futex_waitv(_Atomic uint32_t *const *words, const uint32_t *expected, size_t n,
                    int64_t deadline)
{
    if (n == 0 || n > MP__FUTEX_WAITV_MAX)
        return MP_EINVAL;
    struct waitv v[MP__FUTEX_WAITV_MAX];
    for (size_t i = 0; i < n; i++)
        v[i] = (struct waitv){expected[i], (uint64_t)(uintptr_t)words[i], WAITV_FUTEX_32, 0};
    struct timespec abs, *tsp = NULL;
    if (mp__deadline_timespec(deadline, &abs)) {
        if (deadline <= mp__now_ns())
            return MP_ETIMEDOUT;
        tsp = &abs;
    }
    /* The timeout is absolute, on the clock named last: a wait interrupted
     * by a signal resumes against the same deadline. */
    long rc = syscall(SYS_futex_waitv, v, (unsigned)n, 0u, tsp, CLOCK_MONOTONIC);
    if (rc >= 0)
        return (int)rc;
    switch (errno) {
    case EAGAIN: /* a word differed from its expected value already */
        return 0;
    case ETIMEDOUT:
        return MP_ETIMEDOUT;
    case EINTR:
        return MP_EINTR;
    default:
        return -errno;
    }
}
