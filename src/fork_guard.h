/*
 * fork_guard.h - whether fork() is safe in this process as far as the comm
 * engine in use is concerned (fork_guard.c).
 *
 * Kept apart from the comm module so that the modules that fork (process,
 * pool) can ask without depending on comm, which depends on them.
 */
#ifndef MP__FORK_GUARD_H
#define MP__FORK_GUARD_H

#include "base.h"

/* True unless a comm engine that forbids fork after it started (Open MPI
 * after MPI_Init) has joined the world in this process.  Lock-free. */
bool mp__comm_fork_allowed(void);

/* Set by the comm module when a world is joined (false: the engine
 * forbids fork) and left (true again). */
void mp__comm_fork_set(bool allowed);

#endif /* MP__FORK_GUARD_H */
