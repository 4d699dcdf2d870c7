/*
 * ptrace.c - letting related processes read this one's memory.
 *
 * process_vm_readv(2) is allowed as ptrace would be.  Under Yama's
 * ptrace_scope 1 (the default of several distributions) only a process's
 * ancestors may, so two sibling ranks could not read each other's buffers.
 * PR_SET_PTRACER names a process whose descendants may, too: naming the
 * launcher of the ranks lets exactly the ranks (and the launcher) in, not
 * every process of the user as PR_SET_PTRACER_ANY would.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <sys/prctl.h>

#ifndef PR_SET_PTRACER
#define PR_SET_PTRACER 0x59616d61
#endif

int mp__ptrace_allow(pid_t ancestor)
{
    if (ancestor <= 0)
        return MP_EINVAL;
    return prctl(PR_SET_PTRACER, (unsigned long)ancestor, 0, 0, 0) == 0 ? 0 : -errno;
}
