/*
 * testhooks.h - what the tests reach inside the library to put it in the
 * states a crash would leave, at exactly the instant they choose.
 *
 * Only tests call these; in normal use they do nothing and cost nothing but
 * an untaken branch (mp__queue_fault) or an unused function.  The modules
 * that define them include this header for that alone; the library's other
 * modules never do, and src/internal.h does not include it.  The hooks are
 * built into every variant of the library: tests exercise the very library
 * that ships, and the hooks are hidden symbols, absent from the shared
 * library's interface.
 */
#ifndef MP__TESTHOOKS_H
#define MP__TESTHOOKS_H

#include "base.h"

/* ---- queues (queue.c) ----------------------------------------------------- */

/* The instants of a put or a get where a process may die, for tests that
 * must kill one exactly there. */
typedef enum mp__queue_point {
    MP__QP_PUT_WRITTEN,   /* record written past tail, not yet published */
    MP__QP_PUT_PUBLISHED, /* published, put lock still held */
    MP__QP_GET_COPIED,    /* record copied out, head not yet moved */
    MP__QP_GET_COMMITTED, /* head moved, slot still S_TAKING, get lock held */
    MP__QP_GET_WAITING,   /* about to sleep for data, get lock held */
    MP__QP_PUT_WAITING,   /* about to sleep for room, put lock held */
    MP__QP_GET_SLOTTED,   /* consumer slot taken, get lock not yet */
    MP__QP_GET_TAKEN,     /* slot S_TAKEN, producer woken, get lock held */
    MP__QP_GET_UNLOCKED   /* get lock released (waiters woken), slot held */
} mp__queue_point;

/* Called, when set, at each of those instants (in the process that is
 * there).  NULL in normal use; a test sets it in a child that must die. */
extern void (*mp__queue_fault)(mp__queue_point where);

/* ---- waits (future.c) ------------------------------------------------------ */

/* Called, when set, the instant a wait has installed its SIGINT handler,
 * before it goes on: a test raises SIGINT there.  NULL in normal use. */
extern void (*mp__waiter_fault)(void);

/* ---- the tracker's client (tracker.c) -------------------------------------- */

/* The instants of starting the tracker where a program may die. */
typedef enum mp__tracker_point {
    MP__TP_CONNECTED, /* listening and connected to itself, tracker not started */
    MP__TP_STARTED    /* tracker started, its first request not yet sent */
} mp__tracker_point;

/* Called, when set, at each of those instants.  NULL in normal use. */
extern void (*mp__tracker_fault)(mp__tracker_point where);

/* ---- the manager's start (src/manager/client.c) ----------------------------- */

/* What a manager server started as a fresh image does wrong on purpose,
 * for tests of a server that cannot start. */
typedef enum mp__manager_fault {
    MP__MF_NONE,  /* nothing: normal use */
    MP__MF_EXIT,  /* the image exits at once, before it is ready */
    MP__MF_STALL, /* the image never answers */
} mp__manager_fault;

/* Read by mp_manager_start() when it starts a fresh image.  MP__MF_NONE in
 * normal use; a test sets it. */
extern int mp__manager_start_fault;

/* ---- the arena (arena.c) -------------------------------------------------- */

/* Leaves a's allocator as a process killed in the middle of an allocation
 * would (lock held, lists half-changed).  The caller must then end without
 * touching the arena. */
void mp__arena_crash_in_alloc(mp_arena *a);

/* ---- locks (sync.c) ------------------------------------------------------- */

/* A barrier's internal mutex, for tests that die holding it. */
mp__mutex *mp__barrier_mutex(mp_barrier *b);

/* A lock's mutex, for tests that push an RLock's count to its limit. */
mp__mutex *mp__lock_mutex(mp_lock *l);

/* ---- waits (wait.c) -------------------------------------------------------- */

/* When set, mp_wait_any() sleeps as it does where futex_waitv is missing:
 * descriptors and the waiter are still slept on, words re-checked in
 * slices.  false in normal use. */
extern bool mp__wait_degraded;

/* ---- ranks' long messages (comm/local_p2p.c) -------------------------------- */

/* The instants of a rendezvous or a large broadcast copied by both sides
 * (comm/local.h, "Messages" and MP__BC_REMOTE) that tests choose.  The
 * receiver is a broadcast's reader, the sender its root. */
typedef enum mp__comm_point {
    MP__CP_HELP_OFFERED, /* a receiver offered the last part, before its own copy */
    MP__CP_HELP_TAKE,    /* a sender sees the offer: nonzero leaves it */
    MP__CP_HELP_WRITE    /* a sender took it, before it writes: nonzero fails the write */
} mp__comm_point;

/* Called, when set, at each of those instants (in the rank that is
 * there), with the slot's MP__HELP_* word, which a test may wait on.
 * NULL in normal use. */
extern int (*mp__comm_fault)(mp__comm_point where, _Atomic uint32_t *help);

#endif /* MP__TESTHOOKS_H */
