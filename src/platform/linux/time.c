/*
 * time.c - monotonic time and deadlines.
 *
 * Every wait in mproc is expressed as an absolute CLOCK_MONOTONIC deadline,
 * computed once from the caller's timeout, so that retrying after EINTR or
 * a spurious wake-up never extends the total wait.
 */
#define _GNU_SOURCE
#include "../platform.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

int64_t mp__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t mp__seconds_ns(double seconds)
{
    if (!(seconds > 0)) /* 0, below 0, NaN */
        return 0;
    /* (double)INT64_MAX rounds up to 2^63: anything that large, +INFINITY
     * included, is past what the clock counts. */
    if (seconds >= (double)INT64_MAX / 1e9)
        return INT64_MAX;
    double ns = nearbyint(seconds * 1e9);
    return ns >= (double)INT64_MAX ? INT64_MAX : (int64_t)ns;
}

int64_t mp__time_after(int64_t start, int64_t ns)
{
    if (ns >= MP__NO_DEADLINE - start)
        return MP__NO_DEADLINE;
    return start + ns;
}

int64_t mp__deadline(double timeout)
{
    if (timeout < 0)
        return MP__NO_DEADLINE;
    return mp__time_after(mp__now_ns(), mp__seconds_ns(timeout));
}

bool mp__recheck_slices(void)
{
#ifdef MPROC_TESTING
    const char *v = getenv("MPROC_TEST_NO_RECHECK");
    return !(v && v[0] == '1' && v[1] == '\0');
#else
    return true;
#endif
}

int64_t mp__slice_end(bool slices, int64_t deadline, int64_t slice_ns)
{
    if (!slices)
        return deadline;
    int64_t end = mp__time_after(mp__now_ns(), slice_ns);
    return end < deadline ? end : deadline;
}

int64_t mp__remaining_ns(int64_t deadline)
{
    if (deadline == MP__NO_DEADLINE)
        return INT64_MAX;
    return deadline - mp__now_ns();
}

bool mp__deadline_timespec(int64_t deadline, struct timespec *abs)
{
    if (deadline == MP__NO_DEADLINE)
        return false;
    abs->tv_sec = (time_t)(deadline / 1000000000);
    abs->tv_nsec = (long)(deadline % 1000000000);
    return true;
}

void mp__sleep_ns(int64_t ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
