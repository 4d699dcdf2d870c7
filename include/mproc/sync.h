/**
 * @file
 * mproc/sync.h - process-shared synchronisation: Lock, RLock, Semaphore,
 * BoundedSemaphore, Event, Condition and Barrier, as in Python's
 * multiprocessing, and able to survive the death of a process.
 *
 * Included by <mproc.h>.
 *
 * Two ways to get each object:
 *   mp_X_new(..., &x) / mp_X_free(x)  the library allocates it in the
 *                                   default shared arena (mproc/shm.h);
 *   mp_X_init(p) / mp_X_destroy(p)  the caller places it in shared memory
 *                                   of its own: a struct in a named segment
 *                                   or in mp_arena_alloc() memory.  The
 *                                   types below have a fixed size and
 *                                   alignment so that they can be embedded;
 *                                   their members are private.
 * Objects hold no pointers, so a named segment may be mapped at different
 * addresses in different processes.  Destroy or free an object only when no
 * process uses it any more.
 *
 * Waits.  Every call that can wait takes a timeout in seconds: MP_FOREVER
 * waits without limit, 0 tries once without waiting, and a positive value
 * is measured on CLOCK_MONOTONIC as one absolute deadline, which signals
 * (EINTR) and spurious wake-ups never extend.  A wait that runs out returns
 * MP_ETIMEDOUT.  Waits spin briefly (mp_sync_set_spin) before sleeping on a
 * futex, so that a short wait costs no system call.
 *
 * Errors common to every call: MP_EINVAL for NULL, for an object that was
 * never initialised or was destroyed, and for an object of another type.
 * The predicates (mp_lock_is_owned, mp_event_is_set, ...) return false for
 * such an object.
 *
 * Constructors.  Each mp_X_new() stores the new object in its last
 * argument and returns 0; or MP_EINVAL for a bad argument or a NULL out,
 * MP_ENOMEM when the default arena has no room, the arena's creation error
 * (MP_EMFILE, ...), or MP_ENOTRECOVERABLE for an arena broken by a process
 * that died inside its allocator; *out is then NULL.  Safe across threads.
 *
 * Dead processes.  A lock whose holder died (even by SIGKILL) is not a
 * deadlock: the next acquirer gets it with MP_EOWNERDEAD, repairs what the
 * lock protects, and calls mp_lock_consistent().  A process killed while
 * waiting leaves nothing behind that could block the others: waiter counts
 * are hints, never trusted for correctness.
 *
 * Threads.  Every object works between threads as well as processes.
 * Locks are owned by a thread: a lock taken by one thread must be released
 * by the same thread.
 */
#ifndef MPROC_SYNC_H
#define MPROC_SYNC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Sets how many times a wait polls before it sleeps in the kernel (each
 * poll followed by a CPU pause of a few tens of nanoseconds).  0 never
 * spins; a negative value restores the default (100).  Process-wide.
 * Semaphores, events, conditions and barriers scale it down, each by how
 * often spinning on it has paid off lately (when the CPUs are busy, a
 * spin only delays the sleep); locks poll an eighth as often, with longer
 * pauses, so as to leave the holder's cache lines alone.  Returns the
 * previous value.
 */
MP_EXTERN int mp_sync_set_spin(int polls);

/* ---- Lock and RLock ---------------------------------------------------------- */

/**
 * A mutual-exclusion lock.  mp_lock_init() makes a Lock: its holder may
 * not take it again (MP_EDEADLK, where Python would hang).
 * mp_rlock_init() makes an RLock: its holder may take it again, and must
 * release it as many times; mp_lock_count() tells how deep.  Both kinds
 * share the type and every mp_lock_* call; mp_rlock is the same type, for
 * readability.  Unlike Python's Lock, only the holder may release a lock:
 * ownership is what lets a dead holder be detected.
 *
 * After fork: a child inherits no lock.  A lock its parent holds is still
 * held, by the parent's thread; the child waits for it like any other
 * process, cannot release it (MP_EPERM), and gets it with MP_EOWNERDEAD
 * if the parent dies holding it.  An RLock's count belongs to its holder.
 */
typedef struct mp_lock {
    uint64_t _opaque[8]; /**< private: the lock's state; use the mp_lock_* calls */
} mp_lock;
/** A reentrant lock: an mp_lock set up by mp_rlock_init() or mp_rlock_new(). */
typedef mp_lock mp_rlock;

/** @{ */
/** Initialises a Lock / an RLock in memory the caller provides (8-byte
 * aligned).  Returns 0, MP_EINVAL, or a pthread error. */
MP_EXTERN int mp_lock_init(mp_lock *l);
MP_EXTERN int mp_rlock_init(mp_lock *l);
/** @} */

/** Destroys a lock nobody holds.  Returns 0, MP_EBUSY while it is held, or
 * MP_EINVAL. */
MP_EXTERN int mp_lock_destroy(mp_lock *l);

/** @{ */
/** A Lock / an RLock in the default arena, stored in *out (see
 * "Constructors" above). */
MP_EXTERN int mp_lock_new(mp_lock **out);
MP_EXTERN int mp_rlock_new(mp_rlock **out);
/** @} */

/** Destroys and frees a lock from mp_lock_new() / mp_rlock_new().  NULL, a
 * held lock and a lock not allocated by the library are left alone. */
MP_EXTERN void mp_lock_free(mp_lock *l);

/**
 * Acquires the lock, waiting up to timeout seconds.  Returns 0 when the
 * caller holds it; MP_ETIMEDOUT; MP_EDEADLK when the caller holds a Lock
 * already; MP_EAGAIN when an RLock's count would overflow;
 * MP_EOWNERDEAD when the previous holder died holding it - the caller now
 * holds it (with a count of 1), should repair the shared state it
 * protects and call mp_lock_consistent(), or release it without doing so
 * to mark it unusable; MP_ENOTRECOVERABLE for a lock so marked (destroy and
 * initialise it again).
 */
MP_EXTERN int mp_lock_acquire(mp_lock *l, double timeout);

/** Releases the lock once (an RLock stays held until its count drops to
 * 0).  Returns 0, or MP_EPERM when the calling thread does not hold it. */
MP_EXTERN int mp_lock_release(mp_lock *l);

/** After MP_EOWNERDEAD, declares the protected state repaired, so the lock
 * works normally again.  Returns 0, or MP_EINVAL when the lock is not in
 * that state or the caller does not hold it. */
MP_EXTERN int mp_lock_consistent(mp_lock *l);

/** Whether the calling thread holds the lock (false for an invalid lock). */
MP_EXTERN bool mp_lock_is_owned(const mp_lock *l);

/** How many times the calling thread holds the lock: 0 if it does not, 1
 * for a Lock it holds, the depth for an RLock. */
MP_EXTERN int mp_lock_count(const mp_lock *l);

/** Who holds the lock: returns 1 and sets *pid and *tid (either may be
 * NULL) when some thread does, 0 when it is free.  A snapshot. */
MP_EXTERN int mp_lock_owner(const mp_lock *l, pid_t *pid, pid_t *tid);

/** Whether the lock is an RLock (false for a Lock or an invalid lock). */
MP_EXTERN bool mp_lock_is_recursive(const mp_lock *l);

/* ---- Semaphore and BoundedSemaphore ------------------------------------------- */

/**
 * A counter that acquire decrements, waiting while it is 0, and release
 * increments.  A bounded semaphore refuses, always and atomically, a
 * release that would take it above its initial value: MP_EOVERFLOW.
 *
 * After fork: the value is shared; nothing is owned, so nothing is
 * inherited but the counter itself.
 */
typedef struct mp_sem {
    uint64_t _opaque[4]; /**< private: the semaphore's state */
} mp_sem;

/** The largest value a semaphore can hold. */
#define MP_SEM_VALUE_MAX 0x7fffffffu

/** @{ */
/** Initialises a semaphore / a bounded semaphore with value (at most
 * MP_SEM_VALUE_MAX).  Returns 0 or MP_EINVAL. */
MP_EXTERN int mp_sem_init(mp_sem *s, unsigned value);
MP_EXTERN int mp_sem_init_bounded(mp_sem *s, unsigned value);
MP_EXTERN int mp_sem_destroy(mp_sem *s);
/** @} */

/** @{ */
/** A semaphore / a bounded semaphore in the default arena, stored in *out;
 * MP_EINVAL also for a value above MP_SEM_VALUE_MAX. */
MP_EXTERN int mp_sem_new(unsigned value, mp_sem **out);
MP_EXTERN int mp_sem_new_bounded(unsigned value, mp_sem **out);
MP_EXTERN void mp_sem_free(mp_sem *s);
/** @} */

/** Decrements, waiting up to timeout seconds for the value to be positive.
 * Returns 0 or MP_ETIMEDOUT. */
MP_EXTERN int mp_sem_acquire(mp_sem *s, double timeout);

/** Increments and wakes a waiter.  Returns 0, or MP_EOVERFLOW (and changes
 * nothing) beyond a bounded semaphore's initial value or MP_SEM_VALUE_MAX. */
MP_EXTERN int mp_sem_release(mp_sem *s);

/** The current value (a snapshot), >= 0. */
MP_EXTERN int mp_sem_value(const mp_sem *s);

/* ---- Event ----------------------------------------------------------------- */

/**
 * A flag processes wait for: set wakes every waiter, clear resets it.
 *
 * After fork: the flag is shared; nothing else.
 */
typedef struct mp_event {
    uint64_t _opaque[2]; /**< private: the event's state */
} mp_event;

/** @{ */
/** Initialises / destroys an event placed by the caller (8-byte aligned),
 * clear.  Return 0 or MP_EINVAL. */
MP_EXTERN int mp_event_init(mp_event *e);
MP_EXTERN int mp_event_destroy(mp_event *e);
/** @} */

/** @{ */
/** An event in the default arena, clear, stored in *out. */
MP_EXTERN int mp_event_new(mp_event **out);
MP_EXTERN void mp_event_free(mp_event *e);
/** @} */

/** Sets the flag and wakes every waiter.  Returns 0. */
MP_EXTERN int mp_event_set(mp_event *e);

/** Clears the flag.  Returns 0. */
MP_EXTERN int mp_event_clear(mp_event *e);

/** Whether the flag is set (false for an invalid event).  A snapshot. */
MP_EXTERN bool mp_event_is_set(const mp_event *e);

/** Waits up to timeout seconds for the flag to be set.  Returns 0 once it
 * is (at once if it is already), or MP_ETIMEDOUT. */
MP_EXTERN int mp_event_wait(mp_event *e, double timeout);

/* ---- Condition ------------------------------------------------------------- */

/**
 * A condition variable with its lock, as Python's Condition: wait releases
 * the lock, sleeps until notified, and takes the lock again.  The lock is
 * the condition's own RLock, or one given at init: any mp_lock, Lock or
 * RLock, that lies in the same shared memory (arena or segment) as the
 * condition - the condition records where the lock is relative to itself.
 *
 * notify(n) wakes at least min(n, sleepers) waiters, and may wake more (a
 * waiter that was about to sleep returns too), so waits belong in a loop
 * on a predicate: mp_cond_wait_for() is that loop.  A waiter killed while
 * it waits leaves no trace: the kernel drops it from the futex queue, and
 * the waiter count is only a hint (Python's Condition would hang its next
 * notify on the dead waiter).
 *
 * After fork: a child inherits no wait; the lock's story is mp_lock's.
 */
typedef struct mp_cond {
    uint64_t _opaque[16]; /**< private: the condition's state */
} mp_cond;

/** @{ */
/** Initialises a condition; lock NULL gives it an RLock of its own.
 * Returns 0, or MP_EINVAL for a lock that is not a valid mp_lock. */
MP_EXTERN int mp_cond_init(mp_cond *c, mp_lock *lock);
MP_EXTERN int mp_cond_destroy(mp_cond *c);
/** @} */

/** @{ */
/** A condition in the default arena, stored in *out.  lock is NULL (the
 * condition's own RLock) or a lock in the default arena: MP_EINVAL for any
 * other. */
MP_EXTERN int mp_cond_new(mp_lock *lock, mp_cond **out);
MP_EXTERN void mp_cond_free(mp_cond *c);
/** @} */

/** The condition's lock; NULL for an invalid condition. */
MP_EXTERN mp_lock *mp_cond_get_lock(mp_cond *c);

/** @{ */
/** mp_lock_acquire / mp_lock_release of the condition's lock. */
MP_EXTERN int mp_cond_acquire(mp_cond *c, double timeout);
MP_EXTERN int mp_cond_release(mp_cond *c);
/** @} */

/**
 * With the lock held (at any depth of an RLock): releases it fully, waits
 * up to timeout seconds to be notified, and takes it again to the same
 * depth before returning - in every case, even after the timeout, so a
 * lock held forever by a live process can hold this call beyond the
 * timeout.  Returns 0 when notified (or spuriously woken), MP_ETIMEDOUT,
 * MP_EPERM when the caller does not hold the lock, MP_EOWNERDEAD when the
 * lock's holder died while this caller waited (the caller holds the lock;
 * see mp_lock_acquire), or MP_ENOTRECOVERABLE when the lock was given up
 * meanwhile (the caller does not hold it then).
 */
MP_EXTERN int mp_cond_wait(mp_cond *c, double timeout);

/** A predicate over caller data, evaluated with the lock held. */
typedef bool (*mp_predicate_fn)(void *arg);

/**
 * Waits until pred(arg) is true, up to timeout seconds in all, with the
 * lock held when called and on return.  Returns 0 when pred is true (at
 * once if it already is), MP_ETIMEDOUT if it is still false at the end,
 * or an error of mp_cond_wait (MP_EINVAL for a NULL pred).
 */
MP_EXTERN int mp_cond_wait_for(mp_cond *c, mp_predicate_fn pred, void *arg, double timeout);

/** @{ */
/** With the lock held: wakes n waiters (n >= 1) / every waiter.  Returns 0,
 * MP_EPERM without the lock, MP_EINVAL for n < 1. */
MP_EXTERN int mp_cond_notify(mp_cond *c, int n);
MP_EXTERN int mp_cond_notify_all(mp_cond *c);
/** @} */

/* ---- Barrier --------------------------------------------------------------- */

/**
 * parties processes (or threads) wait until all have arrived, then all go
 * on.  wait returns each an index, 0 .. parties-1, in the order they
 * arrived.  abort() breaks the barrier: every waiter, present and future,
 * gets MP_EBROKEN until reset().  A wait that times out breaks it too (the
 * caller gets MP_ETIMEDOUT, the others MP_EBROKEN), as in Python.
 *
 * A party killed while it waits has arrived: the others still pass once
 * the rest arrive.  A process killed inside the barrier's own short
 * critical section breaks the barrier, since its state cannot be trusted;
 * reset() repairs it.
 *
 * After fork: the state (generation, arrivals) is shared; a child is not a
 * party of any wait its parent is in.
 */
typedef struct mp_barrier {
    uint64_t _opaque[16]; /**< private: the barrier's state */
} mp_barrier;

/** @{ */
/** parties: 1 .. MP_SEM_VALUE_MAX.  Returns 0 or MP_EINVAL. */
MP_EXTERN int mp_barrier_init(mp_barrier *b, unsigned parties);
MP_EXTERN int mp_barrier_destroy(mp_barrier *b);
/** @} */

/** @{ */
/** A barrier in the default arena, stored in *out; MP_EINVAL also for
 * parties outside 1 .. MP_SEM_VALUE_MAX. */
MP_EXTERN int mp_barrier_new(unsigned parties, mp_barrier **out);
MP_EXTERN void mp_barrier_free(mp_barrier *b);
/** @} */

/** Arrives and waits up to timeout seconds for the others.  Returns the
 * arrival index (>= 0), MP_EBROKEN, or MP_ETIMEDOUT. */
MP_EXTERN int mp_barrier_wait(mp_barrier *b, double timeout);

/** Breaks the barrier.  Returns 0. */
MP_EXTERN int mp_barrier_abort(mp_barrier *b);

/** Returns the barrier to its initial state; waiters present get
 * MP_EBROKEN.  Returns 0. */
MP_EXTERN int mp_barrier_reset(mp_barrier *b);

/** @{ */
/** The number of parties; how many have arrived and wait now (snapshots;
 * MP_EINVAL for an invalid barrier). */
MP_EXTERN int mp_barrier_parties(const mp_barrier *b);
MP_EXTERN int mp_barrier_n_waiting(const mp_barrier *b);
/** @} */

/** Whether the barrier is broken (false for an invalid barrier). */
MP_EXTERN bool mp_barrier_broken(const mp_barrier *b);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_SYNC_H */
