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

#endif /* MP__PROCESS_H */
