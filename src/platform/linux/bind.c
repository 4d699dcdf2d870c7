/*
 * bind.c - binding a process to one CPU.
 *
 * Ranks that poll shared memory for each other's messages hand off in
 * well under a microsecond only while each has a CPU of its own: two ranks
 * the scheduler happens to put on one CPU take turns a time slice at a
 * time.  Launchers bind rank k to the k-th CPU the process may use, as
 * Open MPI's mpiexec does when there are no more ranks than CPUs.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <sched.h>

int mp__cpu_bind_nth(int k)
{
    cpu_set_t set;
    if (k < 0)
        return MP_EINVAL;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return -errno;
    int n = CPU_COUNT(&set);
    if (n <= 0)
        return MP_EINVAL;
    k %= n;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &set) && k-- == 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            return sched_setaffinity(0, sizeof one, &one) == 0 ? 0 : -errno;
        }
    }
    return MP_EINVAL;
}

bool mp__cpu_bound(void)
{
    cpu_set_t set;
    return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1;
}
