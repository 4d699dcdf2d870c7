/*
 * sync.h - the locks' internal side (sync.c), for the shared objects that
 * carry a lock of their own (value.c).
 */
#ifndef MP__SYNC_H
#define MP__SYNC_H

#include "base.h"

/* Take / release a lock for one short access.  mp__lock_enter returns 0 or
 * MP_EOWNERDEAD with the lock taken (marked consistent: the access is
 * atomic-sized or a copy), 1 when the caller held it already (nothing
 * taken), or an error.  mp__lock_leave takes what enter returned and
 * releases only what enter took. */
int mp__lock_enter(mp_lock *l);
void mp__lock_leave(mp_lock *l, int entered);

/* For a wait on many things (mp_wait_any): the word an event's waiters
 * sleep on while it is clear (it is 0 then), counting the caller as one
 * more sleeper so that set() wakes it; mp__event_unwatch() undoes that.
 * NULL for an invalid event. */
_Atomic uint32_t *mp__event_watch(mp_event *e);
void mp__event_unwatch(mp_event *e);

#endif /* MP__SYNC_H */
