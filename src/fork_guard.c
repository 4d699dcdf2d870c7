/*
 * fork_guard.c - whether fork() is safe under the comm engine in use.
 *
 * Open MPI objects to fork() after MPI_Init (its shared memory, its
 * registered memory and its progress threads do not survive a child that
 * uses them).  The comm module records here what the engine that joined
 * the world allows; process and pool ask before they fork, and refuse or
 * take another start method with a clear error instead of breaking MPI.
 */
#define _GNU_SOURCE
#include "fork_guard.h"

static _Atomic bool forbidden;

bool mp__comm_fork_allowed(void)
{
    return !atomic_load_explicit(&forbidden, memory_order_acquire);
}

void mp__comm_fork_set(bool allowed)
{
    atomic_store_explicit(&forbidden, !allowed, memory_order_release);
}
