/*
 * mutex.c - a robust, process-shared mutex with deadlines.
 *
 * Built on glibc's robust pthread mutexes: the kernel walks a dying
 * thread's robust list and marks each mutex it held with FUTEX_OWNER_DIED,
 * which is the only way to notice a holder killed by SIGKILL without
 * polling pids.  Waits use pthread_mutex_clocklock() on CLOCK_MONOTONIC,
 * so they run against the caller's absolute deadline.
 *
 * Contended, a robust pthread mutex goes straight to sleep in the kernel;
 * a critical section of a few instructions is far shorter than the
 * sleep-and-wake it causes (about 5 microseconds on these machines).  So a
 * locker first spins on trylock for a while, which lets short critical
 * sections hand over in user space.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>

/* Trylock attempts before sleeping: long enough to cover a short critical
 * section on another CPU, short enough to waste little when the holder is
 * descheduled. */
#define SPIN_TRIES 200

int mp__mutex_init(mp__mutex *m)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc == 0)
        rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    if (rc == 0)
        rc = pthread_mutex_init(&m->m, &a);
    pthread_mutexattr_destroy(&a);
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

int mp__mutex_trylock(mp__mutex *m)
{
    return map_rc(pthread_mutex_trylock(&m->m));
}

int mp__mutex_lock(mp__mutex *m, int64_t deadline)
{
    for (int i = 0; i < SPIN_TRIES; i++) {
        int rc = pthread_mutex_trylock(&m->m);
        if (rc != EBUSY)
            return map_rc(rc);
        mp__cpu_relax();
    }
    struct timespec abs;
    if (!mp__deadline_timespec(deadline, &abs))
        return map_rc(pthread_mutex_lock(&m->m));
    if (deadline <= mp__now_ns())
        return MP_ETIMEDOUT;
    return map_rc(pthread_mutex_clocklock(&m->m, CLOCK_MONOTONIC, &abs));
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
