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

#endif /* MP__SYNC_H */
