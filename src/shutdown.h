/*
 * shutdown.h - the shutdown's internal side (shutdown.c): what a module
 * whose objects own processes or shared state registers, so that
 * mp_shutdown() can close them, and what the signal handling calls.
 */
#ifndef MP__SHUTDOWN_H
#define MP__SHUTDOWN_H

#include "base.h"

/* What a shutdown does to a registered object.  Both calls are made with
 * the registry's lock held: they must not block for long, nor call
 * mp__shutdown_register() or mp__shutdown_unregister(), nor take a lock
 * that a thread may hold while it calls those. */
typedef struct mp__closer_ops {
    const char *kind; /* "queue", "pool", ...: for the report */
    /* At the start of a shutdown: stop taking work and let the object's
     * processes finish what they do (a queue closes; a pool closes). */
    void (*close)(void *obj);
    /* Once the timeout has passed with children still running: end the
     * object's processes now, without waiting for them (the shutdown then
     * signals and reaps whatever still runs).  May be NULL. */
    void (*terminate)(void *obj);
    /* After the children: waits until deadline for the object's own
     * processes that are not mp_processes (a manager's server), then
     * kills and reaps them.  Runs with the lock held, as the others; it
     * returns by the deadline plus the moment a SIGKILL takes.  May be
     * NULL. */
    void (*reap)(void *obj, int64_t deadline);
} mp__closer_ops;

typedef struct mp__closer mp__closer;

/* Registers obj, to be closed by this process's shutdown; ops must
 * outlive the registration.  Returns 0 and sets *out, or MP_ENOMEM (*out
 * NULL).  A forked child does not inherit registrations: the objects of
 * its parent are the parent's to close. */
int mp__shutdown_register(const mp__closer_ops *ops, void *obj, mp__closer **out);

/* Ends a registration before its object goes away; waits while a shutdown
 * is calling the object's ops.  NULL is a no-op; in a forked child, a
 * registration inherited from the parent is only freed. */
void mp__shutdown_unregister(mp__closer *c);

/* Records the signal that asks for a shutdown (the first one counts), for
 * its report.  Async-signal-safe. */
void mp__shutdown_note_signal(int signo);

/* Whether a shutdown finished after the signal noted above: then the
 * signal's shutdown has been done (by a call of the program's own). */
bool mp__shutdown_ran_since_signal(void);

/* Forces the shutdown that runs (or the next one): its waits end at once
 * and what still runs is killed.  Async-signal-safe. */
void mp__shutdown_force(void);

/* Whether a shutdown is under way in this process. */
bool mp__shutdown_running(void);

#endif /* MP__SHUTDOWN_H */
