/*
 * mutex.c - a robust, process-shared mutex with deadlines.
 *
 * DESIGN
 * Built on glibc's robust pthread mutexes: the kernel walks a dying
 * thread's robust list and marks each mutex it held with FUTEX_OWNER_DIED,
 * which is the only way to notice a holder killed by SIGKILL without
 * polling pids.  A library cannot keep a robust list of its own (the
 * kernel takes one list head per thread, and glibc owns it), so a lock of
 * its own making could not be robust; pthread's is.  Waits use
 * pthread_mutex_clocklock() on CLOCK_MONOTONIC against the caller's
 * absolute deadline.
 *
 * Spinning.  Contended, a robust pthread mutex goes straight to sleep in
 * the kernel; a critical section of a few instructions is far shorter than
 * the sleep and wake-up it causes (about 5 microseconds here).  So a locker
 * first spins, reading the lock word until it looks free and only then
 * trying to take it: reads keep the cache line shared instead of bouncing
 * it between CPUs with failed atomic writes.  Even a read costs the holder:
 * its next write to the line (the unlock) must take the line back, about
 * 100 ns.  Two processes hammering one lock go fastest when the waiter
 * leaves the holder alone for stretches, so the pause between reads grows
 * quickly, to 64 CPU pauses (1-2 us), and a locker polls only an eighth of
 * the spin budget (12 times, about 10 us in all, by default) before it
 * sleeps.  Measured with two processes incrementing a shared counter under
 * the lock: short pauses and long spins gave 5 M increments/s when both
 * ran truly in parallel, these settings 10-12 M.
 *
 * Lost wake-ups.  When a holder unlocks a contended mutex the kernel wakes
 * one sleeper, which then takes the lock and re-arms the waiters bit.  If
 * that sleeper is SIGKILLed between its wake-up and its atomic take, the
 * bit is gone and the other sleepers are never woken: glibc cannot know.
 * The same happens when the kernel wakes one sleeper for a dead holder.
 * So no sleep here is longer than SLICE_NS: a sleeper whose slice ends
 * tries again (and re-arms the bit), and the worst a dead waiter costs the
 * others is one slice of delay.  (Tests switch the slices off, so that a
 * wake-up lost any other way hangs: mp__recheck_slices() in platform.h.)
 *
 * The lock word.  On glibc a robust mutex's word (__data.__lock) holds the
 * holder's thread id, FUTEX_WAITERS and FUTEX_OWNER_DIED; the kernel
 * clears the id when the holder dies.  Reading it answers "is it held, and
 * by this thread?" without a system call and without trusting a stored pid
 * that a new process may have inherited by pid reuse.  The layout is glibc's
 * ABI (static initializers depend on it); it is checked at compile time.
 *
 * A glibc defect.  pthread_mutex_trylock() on a robust mutex that was made
 * unrecoverable takes the lock word, returns ENOTRECOVERABLE, and leaves
 * the word holding the caller's tid (glibc 2.36 compares the word's old
 * value, 0, with the tid to decide whether to unlock).  The next trylock
 * then says EDEADLK, or for a recursive mutex succeeds.  So trylock is not
 * called on a mutex already marked unrecoverable, and when the marking
 * races with it, the word is released here.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <linux/futex.h>

#ifndef __GLIBC__
#error "mutex.c reads glibc's robust mutex word; port mp__mutex_owner_tid() first"
#endif

/* Longest single sleep; see "Lost wake-ups" above. */
#define SLICE_NS 100000000LL /* 100 ms */

/* Longest pause between two reads of the lock word while spinning, in CPU
 * pause instructions (20-40 ns each on x86), and the share of the spin
 * budget a locker polls; see "Spinning" above. */
#define BACKOFF_MAX 64
#define POLL_SHARE  8

_Static_assert(sizeof(((pthread_mutex_t *)0)->__data.__lock) == 4, "glibc mutex word");

static int init_kind(mp__mutex *m, int type)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc == 0)
        rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutexattr_settype(&a, type);
    if (rc == 0)
        rc = pthread_mutex_init(&m->m, &a);
    pthread_mutexattr_destroy(&a);
    return -rc;
}

int mp__mutex_init(mp__mutex *m)
{
    return init_kind(m, PTHREAD_MUTEX_ERRORCHECK);
}

int mp__mutex_init_recursive(mp__mutex *m)
{
    return init_kind(m, PTHREAD_MUTEX_RECURSIVE);
}

int mp__local_mutex_init(pthread_mutex_t *m)
{
    /* Adaptive: a locker spins a little before it sleeps in the kernel,
     * which wins when every holder holds the lock only briefly. */
    pthread_mutexattr_t ma;
    int rc = pthread_mutexattr_init(&ma);
    if (rc != 0)
        return -rc;
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    rc = pthread_mutex_init(m, &ma);
    pthread_mutexattr_destroy(&ma);
    return -rc;
}

static int map_rc(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case EOWNERDEAD:
        return MP_EOWNERDEAD;
    case ENOTRECOVERABLE:
        return MP_ENOTRECOVERABLE;
    case ETIMEDOUT:
        return MP_ETIMEDOUT;
    case EBUSY:
        return MP_EBUSY;
    case EDEADLK:
        return MP_EDEADLK;
    default:
        return -rc;
    }
}

static inline uint32_t lock_word(const mp__mutex *m)
{
    return (uint32_t)__atomic_load_n(&m->m.__data.__lock, __ATOMIC_RELAXED);
}

/* glibc's marker in __owner of a mutex that can no longer be used. */
#define OWNER_NOTRECOVERABLE (INT32_MAX - 1)

static bool unrecoverable(const mp__mutex *m)
{
    return __atomic_load_n(&m->m.__data.__owner, __ATOMIC_RELAXED) == OWNER_NOTRECOVERABLE;
}

/* pthread_mutex_trylock, minus the defect described above. */
static int try_once(mp__mutex *m)
{
    if (unrecoverable(m))
        return ENOTRECOVERABLE;
    int rc = pthread_mutex_trylock(&m->m);
    if (rc == ENOTRECOVERABLE && (lock_word(m) & FUTEX_TID_MASK) == (uint32_t)mp__self_tid()) {
        /* Not on this thread's robust list (glibc bailed out before
         * adding it): just give the word back, waking a sleeper if the
         * word says there is one. */
        int *word = &m->m.__data.__lock;
        if ((uint32_t)__atomic_exchange_n(word, 0, __ATOMIC_RELEASE) & FUTEX_WAITERS)
            mp__futex_wake((_Atomic uint32_t *)word, 1);
    }
    return rc;
}

int mp__mutex_trylock(mp__mutex *m)
{
    return map_rc(try_once(m));
}

int mp__mutex_lock(mp__mutex *m, int64_t deadline)
{
    int rc = try_once(m);
    if (rc != EBUSY)
        return map_rc(rc);
    /* A timeout of 0 asks for one attempt, not for a spin. */
    if (deadline != MP__NO_DEADLINE && deadline <= mp__now_ns())
        return MP_ETIMEDOUT;
    int budget = mp__spin_get() / POLL_SHARE, backoff = 1;
    for (int i = 0; i < budget; i++) {
        /* Free (no tid), or free after a death (OWNER_DIED, no tid): try. */
        if ((lock_word(m) & FUTEX_TID_MASK) == 0) {
            rc = try_once(m);
            if (rc != EBUSY)
                return map_rc(rc);
        }
        for (int k = 0; k < backoff; k++)
            mp__cpu_relax();
        if (backoff < BACKOFF_MAX)
            backoff *= 2;
    }
    bool slices = mp__recheck_slices(); /* see "Lost wake-ups" above */
    for (;;) {
        int64_t now = mp__now_ns();
        if (deadline != MP__NO_DEADLINE && deadline <= now) {
            rc = map_rc(try_once(m));
            return rc == MP_EBUSY ? MP_ETIMEDOUT : rc;
        }
        int64_t until = mp__slice_end(slices, deadline, SLICE_NS);
        bool last = until == deadline;
        if (until == MP__NO_DEADLINE) {
            rc = pthread_mutex_lock(&m->m);
            return map_rc(rc);
        }
        struct timespec abs;
        mp__deadline_timespec(until, &abs);
        rc = pthread_mutex_clocklock(&m->m, CLOCK_MONOTONIC, &abs);
        if (rc == ETIMEDOUT && !last)
            continue; /* a slice ended, not the caller's time */
        return map_rc(rc);
    }
}

int mp__mutex_unlock(mp__mutex *m)
{
    return map_rc(pthread_mutex_unlock(&m->m));
}

int mp__mutex_consistent(mp__mutex *m)
{
    return -pthread_mutex_consistent(&m->m);
}

void mp__mutex_destroy(mp__mutex *m)
{
    pthread_mutex_destroy(&m->m);
}

pid_t mp__mutex_owner_tid(const mp__mutex *m)
{
    return (pid_t)(lock_word(m) & FUTEX_TID_MASK);
}

bool mp__mutex_is_mine(const mp__mutex *m)
{
    pid_t owner = mp__mutex_owner_tid(m);
    return owner != 0 && owner == mp__self_tid();
}

int mp__mutex_set_depth(mp__mutex *m, unsigned depth)
{
    if (!mp__mutex_is_mine(m) || depth == 0)
        return MP_EPERM;
    m->m.__data.__count = depth;
    return 0;
}

unsigned mp__mutex_depth(const mp__mutex *m)
{
    if (!mp__mutex_is_mine(m))
        return 0;
    /* __count is the recursion depth of a recursive mutex, written only by
     * its holder: this thread. */
    unsigned c = m->m.__data.__count;
    return c ? c : 1;
}
