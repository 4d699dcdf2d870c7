/*
 * membarrier.c - asymmetric memory barriers between processes.
 *
 * A waiter and a publisher in shared memory each store, then load what
 * the other stored (the waiter: "I sleep", then the data; the publisher:
 * the data, then "does anyone sleep?").  On x86 each side needs a full
 * fence between its store and its load, and the publisher's fence is the
 * expensive one: it runs on every message and waits for the cache lines
 * the message was written to.  membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)
 * moves that cost to the waiter, which is about to sleep anyway: it
 * interrupts every CPU that runs a registered process, which makes their
 * stores visible (an interrupt serialises), so a registered publisher
 * needs only a compiler barrier.  Linux 4.16 and later.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

static int membarrier(int cmd)
{
    return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

int mp__membarrier_register(void)
{
    int cmds = membarrier(MEMBARRIER_CMD_QUERY);
    if (cmds < 0)
        return -errno;
    if (!(cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) ||
        !(cmds & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED))
        return MP_ENOSYS;
    return membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0 ? 0 : -errno;
}

int mp__membarrier(void)
{
    return membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0 ? 0 : -errno;
}
