/*
 * role.h - the manager server as a start-up role (role.c): the entry point
 * boot.c runs.  Kept apart from mgr.h so that boot.c sees this one name
 * only.
 */
#ifndef MP__MANAGERD_ROLE_H
#define MP__MANAGERD_ROLE_H

#include "base.h"

/* The manager role (boot.c): reads the server's configuration from sock,
 * runs the server, answers "ready" on sock, and exits when the server
 * stops.  Never returns. */
_Noreturn void mp__manager_role_serve(int sock);

#endif /* MP__MANAGERD_ROLE_H */
