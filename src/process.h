/*
 * process.h - the registry of children (process.c), for the modules that
 * start and watch processes of their own.
 */
#ifndef MP__PROCESS_H
#define MP__PROCESS_H

#include "base.h"

/* Reaps children that were freed while running, without blocking. */
void mp__registry_reap_detached(void);

/* A descriptor that becomes readable (POLLIN) when the started child p
 * ends: its pidfd, or for a forkserver child its status channel.  Lets a
 * supervisor poll many children at once; owned by p.  Returns the
 * descriptor, or an error (MP_ESTATE when p is not running, MP_ENOSYS
 * without pidfd support). */
int mp__process_wait_fd(mp_process *p);

/* As mp__process_wait_fd(), but a duplicate the caller owns and closes:
 * for a wait that may outlast the object's own descriptor (another thread
 * may reap the child and close it meanwhile). */
int mp__process_wait_fd_dup(mp_process *p);

/* A duplicate of the read end of p's report pipe, which the caller owns:
 * it polls readable once the child has written a record (a stack it was
 * asked for).  MP_ESTATE when p is not running. */
int mp__process_report_fd_dup(mp_process *p);

/* Reaps p if it has ended, without blocking.  True once p is reaped (now or
 * before); false while it runs, and for an object this process did not
 * start. */
bool mp__process_reap(mp_process *p);

/* Marks p as started by the library for an object of its own (a pool's
 * worker): it is left out of mp_active_children(). */
void mp__process_mark_internal(mp_process *p);

/* A snapshot of this process's running children (including those freed
 * while running), each with a reference that keeps the object alive until
 * mp__registry_release().  Returns the count and a malloc'ed array in
 * *list (NULL when 0), or MP_ENOMEM. */
int mp__registry_hold(mp_process ***list);
void mp__registry_release(mp_process **list, size_t n);

#endif /* MP__PROCESS_H */
