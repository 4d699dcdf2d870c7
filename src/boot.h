/*
 * boot.h - the roles a fresh image of the program can take (boot.c), and
 * starting an image in one.
 */
#ifndef MP__BOOT_H
#define MP__BOOT_H

#include "base.h"

/* The roles, one entry each in boot.c's table. */
typedef enum mp__role {
    MP__ROLE_SPAWN,      /* runs one request, then exits: a spawn child */
    MP__ROLE_FORKSERVER, /* the forkserver */
    MP__ROLE_TRACKER,    /* the tracker of named segments */
    MP__ROLE_MANAGER,    /* a manager server (mp_manager_start) */
    MP__ROLE_COUNT
} mp__role;

/* Starts a fresh image of this program in role, handing it fd (a socket,
 * which the role's entry function receives).  The image starts with no
 * signal blocked and default actions, and with no descriptor of this
 * process but 0, 1, 2 and fd.  Returns 0 and sets *pid, or an error. */
int mp__boot_spawn(mp__role role, int fd, pid_t *pid);

/* The environment that makes a fresh image take role with fd, for a
 * launcher that execs by itself (mp__exec_self() after its own forks).
 * malloc'ed: free it with mp__env_free().  NULL when memory ran out. */
char **mp__boot_env(mp__role role, int fd);

#endif /* MP__BOOT_H */
