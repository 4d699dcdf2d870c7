/*
 * startmethod.h - choosing how a child starts (startmethod.c): the
 * program's default start method and the check that keeps fork away from
 * programs with threads.  For every module that starts processes: process.c
 * for each child, a pool once for all its workers.
 */
#ifndef MP__STARTMETHOD_H
#define MP__STARTMETHOD_H

#include "base.h"

/* Threads whose names start with this are the library's own (the pool's
 * supervisor, the signal thread, a wait's helper): they hold none of the
 * program's locks, so they do not make a fork unsafe, and a start made by
 * one of them is made on behalf of an object whose start method was
 * decided when it was created. */
#define MP__LIBRARY_THREAD_PREFIX "mproc-"

/* Decides how to start a child now.  requested is what the caller asked
 * for (MP_START_DEFAULT: the program's default, mp_get_start_method()).
 * copyable says whether the child's argument can travel to a fresh image
 * (no argument, or one with an arg_size).  what names the child in log
 * lines.
 *   - spawn and forkserver are used as they are;
 *   - MP_START_AUTO is fork while no other thread runs, else forkserver
 *     (logged), or MP_ETHREADS when the argument cannot be copied;
 *   - fork asked for explicitly is refused with MP_ETHREADS (logged) while
 *     another thread runs.
 * "Another thread" is one that is neither the caller nor the library's;
 * a library thread's own starts are never refused.  While a comm engine
 * that forbids fork runs (Open MPI), fork is refused with MP_ENOTSUP and
 * MP_START_AUTO means forkserver.  Returns 0 and sets *method, or
 * MP_ETHREADS, MP_ENOTSUP, or MP_EINVAL for an unknown method. */
int mp__start_method_resolve(mp_start_method requested, bool copyable, const char *what,
                             mp_start_method *method);

/* "fork", "spawn", "forkserver", "auto", "default". */
const char *mp__start_method_name(mp_start_method m);

#endif /* MP__STARTMETHOD_H */
