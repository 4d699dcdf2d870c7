/*
 * forkserver.h - starting children through the forkserver (forkserver.c,
 * the client side; the server is forkserverd.c).
 */
#ifndef MP__FORKSERVER_H
#define MP__FORKSERVER_H

#include "base.h"
#include "request.h"

/* Starts a child through the forkserver, starting the server if needed.
 * On success *pid, *pidfd and *chan (the socket on which the child's wait
 * status will arrive) are set.  Returns 0 or an error. */
int mp__forkserver_spawn(const mp__request_out *r, pid_t *pid, int *pidfd, int *chan);

/* Reads the wait status a forkserver sends on a child's channel, without
 * blocking.  Returns 1 and sets *wstatus, 0 if it has not come yet, or
 * MP_EOF if the channel closed without one. */
int mp__forkserver_status(int chan, int *wstatus);

/* The running server's pid, 0 when none runs. */
pid_t mp__forkserver_pid(void);

#endif /* MP__FORKSERVER_H */
