/*
 * launch.h - a set of ranks started and watched together: what mp_run and
 * tools/mprun.c share.  Internal.
 *
 * The set makes the world's segment, starts n ranks (forked functions, or
 * a program executed n times), and watches them: a rank that ends is
 * marked in the segment before it is reaped (done for status 0, dead
 * otherwise, which breaks the world for the others), and unless the set
 * keeps going, the first rank that fails stops the others (SIGTERM, then
 * SIGKILL after a grace period).  mp_comm_abort stops them in any case.
 */
#ifndef MPROC_COMM_LAUNCH_H
#define MPROC_COMM_LAUNCH_H

#include "engine.h"

#include <poll.h>

typedef struct mp__rankset mp__rankset;

/* A set for n ranks (not started); with bind, rank k is bound to the k-th
 * CPU the launcher may use.  Returns 0 and *out, MP_EINVAL for n out of
 * range, or the error making the segment. */
int mp__rankset_new(int n, bool keep_going, bool bind, mp__rankset **out);

/* Starts every rank as a fork of the caller running fn(world, arg).
 * Returns 0, or the first start error (ranks started before it run on;
 * stop them). */
int mp__rankset_start_fn(mp__rankset *s, mp_rank_fn fn, void *arg);

/* Starts every rank as an execution of argv (found in PATH), with
 * MPROC_COMM_FD, MPROC_COMM_RANK and MPROC_COMM_SIZE in its environment.
 * io: NULL (the ranks share the caller's output), or 2 descriptors per
 * rank, the write ends their stdout and stderr go to.  Rank 0 keeps the
 * caller's stdin; the others read /dev/null. */
int mp__rankset_start_exec(mp__rankset *s, char *const argv[], const int *io);

/* Watches the ranks until every one has ended (returns 0), one of the
 * extra descriptors is ready (returns the number still running, > 0, with
 * their revents set), or the deadline (MP_ETIMEDOUT). */
int mp__rankset_wait(mp__rankset *s, struct pollfd *extra, size_t nextra, int64_t deadline);

/* Sends signo to every rank still running. */
void mp__rankset_signal(mp__rankset *s, int signo);

/* Stops every rank still running: SIGTERM now, SIGKILL once the grace
 * period has passed (mp__rankset_wait sends it). */
void mp__rankset_stop(mp__rankset *s);

/* The rank that failed first (died, or exited nonzero) and was not
 * stopped by the set, or -1. */
int mp__rankset_failed(const mp__rankset *s);

/* Rank r's exit code (status, or -SIGNUM), the error its function
 * returned (0 if none), its report (NULL when clean), and whether the set
 * stopped it.  Valid once it ended. */
int mp__rankset_code(const mp__rankset *s, int r, int *error, const char **report, bool *stopped);

/* The abort code a rank gave mp_comm_abort, or -1. */
int mp__rankset_aborted(const mp__rankset *s);

/* Frees the set; its ranks must have ended (or they are killed). */
void mp__rankset_free(mp__rankset *s);

#endif /* MPROC_COMM_LAUNCH_H */
