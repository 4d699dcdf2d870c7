/*
 * sync.c - process-shared Lock, RLock, Semaphore, BoundedSemaphore, Event,
 * Condition and Barrier.
 *
 * DESIGN
 * Locks are robust pthread mutexes (platform mutex.c): only they learn from
 * the kernel that a holder died.  Everything else is a futex protocol on
 * words in shared memory, with no pointers, so that any mapping of the
 * memory works.
 *
 * Waiting.  Each wait first checks its condition, then polls it for a
 * short spin (mp_sync_set_spin), then registers as a waiter and sleeps on a
 * futex against one absolute CLOCK_MONOTONIC deadline.  A wake-up of any
 * kind - a signal (MP_EINTR), a spurious one, a changed word - only sends
 * the waiter back to re-check, so time never stretches and nothing is
 * reported early.
 *
 * Waiter counts are hints.  Wakers skip the futex_wake system call when
 * nobody waits; a waiter increments the count before its last check of the
 * condition and the waker changes the word before reading the count, both
 * sequentially consistent, so one of them always sees the other.  A waiter
 * that is killed leaves the count too high, which costs the wakers a
 * useless system call and nothing else; nothing ever waits for a waiter to
 * acknowledge (that is how Python's Condition hangs on a dead waiter).  The
 * kernel drops a killed sleeper from the futex queue, so a wake-one goes
 * to a live process.
 *
 * Dying between wake-up and action.  A semaphore waiter woken by release()
 * that is killed before it takes the unit leaves the unit unclaimed while
 * others may sleep.  Semaphore sleeps therefore last at most SLICE_NS, after
 * which a sleeper re-checks the value itself: a dead waiter costs the
 * others at most one slice of delay, never a hang.  (The mutex does the same
 * for its own variant of the problem; events, conditions and barriers need
 * no slice: their wakers wake everyone, or the kernel hands a wake-one to a
 * live sleeper, and a wake-up once made is never owed again.)  The test
 * build switches the slices off (mp__recheck_slices()), so that a lost
 * wake-up hangs a test instead of costing it 100 ms.
 *
 * Condition.  A sequence word: a waiter reads it with the lock held,
 * releases the lock, and sleeps while the word is unchanged; notify(n)
 * bumps the word and wakes n sleepers.  notify requires the lock, so no new
 * waiter can slip in between the bump and the wake-up, and a waiter that
 * had not yet gone to sleep sees the bump and returns: at least n wake up.
 *
 * Barrier.  A small robust mutex orders arrivals, trips, aborts and resets;
 * waiters sleep on a sequence word outside it.  A waiter must learn how its
 * own generation ended even if it wakes up generations later (with more
 * processes than parties, a slow waiter can be overtaken): each ending
 * records "tripped" or "broken" in a ring of 64 bits indexed by the
 * generation, written before the generation number moves on, and a waiter
 * that is overtaken by more than 64 generations falls back to a count of
 * broken generations, conservatively.  A process dying inside the mutex
 * breaks the barrier (its state cannot be trusted); reset() repairs it.
 */
#define _GNU_SOURCE
#include "sync.h"

#include "arena.h"
#include "log.h"
#include "testhooks.h"

#include <errno.h>

/* The detail of a refused handle or timeout (mp_last_error_detail): call
 * is the public call, what the argument and the type it must be. */
static int bad_handle(const char *call, const char *what, const void *p)
{
    return mp__fail(MP_EINVAL, "%s: %s must be initialised and not destroyed (got %p)", call, what,
                    p);
}

static int bad_timeout(const char *call, double timeout)
{
    return mp__fail(MP_EINVAL, "%s: timeout must be a number, < 0 for forever (got %g)", call,
                    timeout);
}

#define LOCK_MAGIC    0x6d706c6bu /* "mplk" */
#define SEM_MAGIC     0x6d70736du /* "mpsm" */
#define EVENT_MAGIC   0x6d706576u /* "mpev" */
#define COND_MAGIC    0x6d706376u /* "mpcv" */
#define BARRIER_MAGIC 0x6d706272u /* "mpbr" */

/* Longest single sleep on a semaphore; see DESIGN. */
#define SLICE_NS 100000000LL /* 100 ms */

enum { KIND_LOCK = 1, KIND_RLOCK = 2 };

/* Each object keeps a score of how often spinning on it has paid off
 * lately, 0 .. SCORE_MAX (see spin_budget). */
#define SCORE_MAX 1024

/* Spinning pays when the process that will end the wait runs on another
 * CPU and acts soon; when it does not - the CPUs are busy with other work,
 * the two share one, or the wait is simply long - every poll only delays
 * the sleep that has to come, and a ping-pong between two processes on one
 * CPU doubles its latency.  So the budget follows the recent success of
 * spins on the object, an exponentially weighted score kept in the object
 * (waits on one object tend to look alike; waits on different objects do
 * not): the full budget while spins succeed, down to a sixteenth (a few
 * hundred nanoseconds) while they fail.  Relaxed accesses: a lost update
 * only nudges a heuristic. */
static int spin_budget(_Atomic uint32_t *score)
{
    int budget = mp__spin_get();
    int sc = (int)atomic_load_explicit(score, memory_order_relaxed);
    int scaled = (int)((int64_t)budget * sc / SCORE_MAX);
    return scaled > budget / 16 ? scaled : budget / 16;
}

static void spin_feedback(_Atomic uint32_t *score, bool paid)
{
    uint32_t sc = atomic_load_explicit(score, memory_order_relaxed);
    if (sc > SCORE_MAX)
        sc = SCORE_MAX;
    sc = paid ? sc + (SCORE_MAX - sc) / 8 : sc - sc / 8;
    atomic_store_explicit(score, sc, memory_order_relaxed);
}

/* Polls cond for the object's spin budget; leaves the loop as soon as it
 * holds, and scores the outcome. */
#define SPIN_WHILE_NOT(score, cond)                   \
    do {                                              \
        int mp_budget_ = spin_budget(score);          \
        if (mp_budget_ > 0) {                         \
            int mp_i_ = 0;                            \
            while (mp_i_ < mp_budget_ && !(cond)) {   \
                mp__cpu_relax();                      \
                mp_i_++;                              \
            }                                         \
            spin_feedback(score, mp_i_ < mp_budget_); \
        }                                             \
    } while (0)

static bool aligned8(const void *p)
{
    return p && ((uintptr_t)p & 7u) == 0;
}

static bool passed(int64_t deadline)
{
    return deadline != MP__NO_DEADLINE && deadline <= mp__now_ns();
}

/* Allocates an object of size bytes from the default arena.  Returns it,
 * or NULL with the reason in *rc. */
static void *arena_obj(size_t size, int *rc)
{
    void *p;
    *rc = mp__arena_alloc(NULL, size, &p);
    return p;
}

/* Returns an object to the arena it came from; objects the caller placed
 * are not the library's to free. */
static void arena_release(void *p)
{
    mp_arena *a = mp__arena_find(p);
    if (a)
        (void)mp_arena_dealloc(a, p);
}

int mp_sync_set_spin(int polls)
{
    return mp__spin_set(polls);
}

/* ---- Lock and RLock ------------------------------------------------------------ */

typedef struct lock_impl {
    _Atomic uint32_t magic;
    uint32_t kind;
    mp__mutex mutex;
    /* The holder's pid, for mp_lock_owner(); written by each holder after
     * it takes the lock.  Ownership itself is judged from the mutex word,
     * which the kernel clears when a holder dies. */
    _Atomic int32_t owner_pid;
    uint32_t pad;
} lock_impl;

_Static_assert(sizeof(lock_impl) <= sizeof(mp_lock), "mp_lock is large enough");
_Static_assert(_Alignof(lock_impl) <= _Alignof(mp_lock), "mp_lock is aligned enough");

static lock_impl *lock_of(const mp_lock *l)
{
    lock_impl *li = (lock_impl *)l;
    if (!aligned8(l) || atomic_load_explicit(&li->magic, memory_order_relaxed) != LOCK_MAGIC)
        return NULL;
    return li;
}

static int lock_init(mp_lock *l, uint32_t kind)
{
    if (!aligned8(l))
        return mp__fail(MP_EINVAL, "%s: l must be non-NULL and 8-byte aligned (got %p)",
                        kind == KIND_RLOCK ? "mp_rlock_init" : "mp_lock_init", (void *)l);
    lock_impl *li = (lock_impl *)l;
    memset(l, 0, sizeof *l);
    int rc = kind == KIND_RLOCK ? mp__mutex_init_recursive(&li->mutex) : mp__mutex_init(&li->mutex);
    if (rc < 0)
        return rc;
    li->kind = kind;
    atomic_store_explicit(&li->magic, LOCK_MAGIC, memory_order_release);
    return 0;
}

int mp_lock_init(mp_lock *l)
{
    return lock_init(l, KIND_LOCK);
}

int mp_rlock_init(mp_lock *l)
{
    return lock_init(l, KIND_RLOCK);
}

int mp_lock_destroy(mp_lock *l)
{
    lock_impl *li = lock_of(l);
    if (!li)
        return bad_handle("mp_lock_destroy", "l", l);
    if (mp__mutex_owner_tid(&li->mutex) != 0)
        return MP_EBUSY;
    atomic_store_explicit(&li->magic, 0, memory_order_release);
    mp__mutex_destroy(&li->mutex);
    return 0;
}

static int lock_new(uint32_t kind, mp_lock **out)
{
    if (!out)
        return mp__fail(MP_EINVAL, "%s: out must not be NULL",
                        kind == KIND_RLOCK ? "mp_rlock_new" : "mp_lock_new");
    int rc;
    mp_lock *l = arena_obj(sizeof *l, &rc);
    if (l && (rc = lock_init(l, kind)) < 0) {
        arena_release(l);
        l = NULL;
    }
    *out = l;
    return rc;
}

int mp_lock_new(mp_lock **out)
{
    return lock_new(KIND_LOCK, out);
}

int mp_rlock_new(mp_rlock **out)
{
    return lock_new(KIND_RLOCK, out);
}

void mp_lock_free(mp_lock *l)
{
    if (mp__arena_find(l) && mp_lock_destroy(l) == 0)
        arena_release(l);
}

/* Takes li's mutex against deadline and records the holder. */
static int lock_take(lock_impl *li, int64_t deadline)
{
    int rc = mp__mutex_lock(&li->mutex, deadline);
    if (rc == 0 || rc == MP_EOWNERDEAD)
        atomic_store_explicit(&li->owner_pid, mp__self_pid(), memory_order_relaxed);
    return rc;
}

int mp_lock_acquire(mp_lock *l, double timeout)
{
    lock_impl *li = lock_of(l);
    if (!li)
        return bad_handle("mp_lock_acquire", "l", l);
    if (mp__timeout_check(timeout) < 0)
        return bad_timeout("mp_lock_acquire", timeout);
    /* The uncontended case needs no clock: try before computing the
     * deadline. */
    int rc = mp__mutex_trylock(&li->mutex);
    if (rc == MP_EBUSY)
        rc = mp__mutex_lock(&li->mutex, mp__deadline(timeout));
    if (rc == 0 || rc == MP_EOWNERDEAD)
        atomic_store_explicit(&li->owner_pid, mp__self_pid(), memory_order_relaxed);
    return rc;
}

int mp_lock_release(mp_lock *l)
{
    lock_impl *li = lock_of(l);
    if (!li)
        return bad_handle("mp_lock_release", "l", l);
    return mp__mutex_unlock(&li->mutex);
}

int mp_lock_consistent(mp_lock *l)
{
    lock_impl *li = lock_of(l);
    if (!li)
        return bad_handle("mp_lock_consistent", "l", l);
    if (!mp__mutex_is_mine(&li->mutex))
        return mp__fail(MP_EINVAL, "mp_lock_consistent: l must be held by the calling thread");
    return mp__mutex_consistent(&li->mutex);
}

bool mp_lock_is_owned(const mp_lock *l)
{
    lock_impl *li = lock_of(l);
    return li && mp__mutex_is_mine(&li->mutex);
}

int mp_lock_count(const mp_lock *l)
{
    lock_impl *li = lock_of(l);
    if (!li)
        return bad_handle("mp_lock_count", "l", l);
    return (int)mp__mutex_depth(&li->mutex);
}

int mp_lock_owner(const mp_lock *l, pid_t *pid, pid_t *tid)
{
    lock_impl *li = lock_of(l);
    if (!li)
        return bad_handle("mp_lock_owner", "l", l);
    pid_t t = mp__mutex_owner_tid(&li->mutex);
    if (t == 0)
        return 0;
    if (pid)
        *pid = atomic_load_explicit(&li->owner_pid, memory_order_relaxed);
    if (tid)
        *tid = t;
    return 1;
}

bool mp_lock_is_recursive(const mp_lock *l)
{
    lock_impl *li = lock_of(l);
    return li && li->kind == KIND_RLOCK;
}

int mp__lock_enter(mp_lock *l)
{
    lock_impl *li = lock_of(l);
    if (!li)
        return MP_EINVAL;
    /* Inside the caller's own critical section (Python's "with
     * v.get_lock(): v.value += 1"), taking an RLock again would only count
     * up and down: skip it.  Ownership is read from the lock word, without
     * a system call. */
    if (mp__mutex_is_mine(&li->mutex))
        return 1;
    int rc = mp__mutex_trylock(&li->mutex);
    if (rc == MP_EBUSY)
        rc = mp__mutex_lock(&li->mutex, MP__NO_DEADLINE);
    if (rc == 0 || rc == MP_EOWNERDEAD)
        atomic_store_explicit(&li->owner_pid, mp__self_pid(), memory_order_relaxed);
    if (rc == MP_EOWNERDEAD)
        (void)mp__mutex_consistent(&li->mutex);
    return rc;
}

void mp__lock_leave(mp_lock *l, int entered)
{
    if (entered == 0 || entered == MP_EOWNERDEAD)
        (void)mp__mutex_unlock(&((lock_impl *)l)->mutex);
}

/* ---- Semaphore ------------------------------------------------------------------ */

typedef struct sem_impl {
    _Atomic uint32_t magic;
    uint32_t max; /* the bound: the initial value, or MP_SEM_VALUE_MAX if unbounded */
    _Atomic uint32_t value;
    _Atomic uint32_t nwaiters;
    _Atomic uint32_t spin_score;
    uint32_t pad;
} sem_impl;

_Static_assert(sizeof(sem_impl) <= sizeof(mp_sem), "mp_sem is large enough");

static sem_impl *sem_of(const mp_sem *s)
{
    sem_impl *si = (sem_impl *)s;
    if (!aligned8(s) || atomic_load_explicit(&si->magic, memory_order_relaxed) != SEM_MAGIC)
        return NULL;
    return si;
}

static int sem_init(mp_sem *s, unsigned value, bool bounded)
{
    const char *call = bounded ? "mp_sem_init_bounded" : "mp_sem_init";
    if (!aligned8(s))
        return mp__fail(MP_EINVAL, "%s: s must be non-NULL and 8-byte aligned (got %p)", call,
                        (void *)s);
    if (value > MP_SEM_VALUE_MAX)
        return mp__fail(MP_EINVAL, "%s: value must be 0 to %u (got %u)", call,
                        (unsigned)MP_SEM_VALUE_MAX, value);
    sem_impl *si = (sem_impl *)s;
    memset(s, 0, sizeof *s);
    si->max = bounded ? value : MP_SEM_VALUE_MAX;
    atomic_store_explicit(&si->spin_score, SCORE_MAX, memory_order_relaxed);
    atomic_store_explicit(&si->value, value, memory_order_relaxed);
    atomic_store_explicit(&si->magic, SEM_MAGIC, memory_order_release);
    return 0;
}

int mp_sem_init(mp_sem *s, unsigned value)
{
    return sem_init(s, value, false);
}

int mp_sem_init_bounded(mp_sem *s, unsigned value)
{
    return sem_init(s, value, true);
}

int mp_sem_destroy(mp_sem *s)
{
    sem_impl *si = sem_of(s);
    if (!si)
        return bad_handle("mp_sem_destroy", "s", s);
    atomic_store_explicit(&si->magic, 0, memory_order_release);
    return 0;
}

static int sem_new(unsigned value, bool bounded, mp_sem **out)
{
    const char *call = bounded ? "mp_sem_new_bounded" : "mp_sem_new";
    if (!out)
        return mp__fail(MP_EINVAL, "%s: out must not be NULL", call);
    *out = NULL;
    if (value > MP_SEM_VALUE_MAX)
        return mp__fail(MP_EINVAL, "%s: value must be 0 to %u (got %u)", call,
                        (unsigned)MP_SEM_VALUE_MAX, value);
    int rc;
    mp_sem *s = arena_obj(sizeof *s, &rc);
    if (s && (rc = sem_init(s, value, bounded)) < 0) {
        arena_release(s);
        s = NULL;
    }
    *out = s;
    return rc;
}

int mp_sem_new(unsigned value, mp_sem **out)
{
    return sem_new(value, false, out);
}

int mp_sem_new_bounded(unsigned value, mp_sem **out)
{
    return sem_new(value, true, out);
}

void mp_sem_free(mp_sem *s)
{
    if (mp__arena_find(s) && mp_sem_destroy(s) == 0)
        arena_release(s);
}

static bool sem_try(sem_impl *si)
{
    uint32_t v = atomic_load_explicit(&si->value, memory_order_relaxed);
    while (v > 0) {
        if (atomic_compare_exchange_weak_explicit(&si->value, &v, v - 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    }
    return false;
}

int mp_sem_acquire(mp_sem *s, double timeout)
{
    sem_impl *si = sem_of(s);
    if (!si)
        return bad_handle("mp_sem_acquire", "s", s);
    if (mp__timeout_check(timeout) < 0)
        return bad_timeout("mp_sem_acquire", timeout);
    if (sem_try(si))
        return 0;
    int64_t deadline = mp__deadline(timeout);
    if (passed(deadline))
        return MP_ETIMEDOUT;
    SPIN_WHILE_NOT(&si->spin_score, atomic_load_explicit(&si->value, memory_order_relaxed) > 0);
    if (sem_try(si))
        return 0;
    bool slices = mp__recheck_slices(); /* see DESIGN: dying between wake-up and action */
    atomic_fetch_add(&si->nwaiters, 1);
    int rc = 0;
    for (;;) {
        if (sem_try(si))
            break;
        if (passed(deadline)) {
            rc = MP_ETIMEDOUT;
            break;
        }
        int64_t until = mp__slice_end(slices, deadline, SLICE_NS);
        (void)mp__futex_wait(&si->value, 0, until); /* every outcome re-checks */
    }
    atomic_fetch_sub(&si->nwaiters, 1);
    return rc;
}

int mp_sem_release(mp_sem *s)
{
    sem_impl *si = sem_of(s);
    if (!si)
        return bad_handle("mp_sem_release", "s", s);
    uint32_t v = atomic_load_explicit(&si->value, memory_order_relaxed);
    do {
        /* Checked and incremented in one atomic step: no release can ever
         * take a bounded semaphore past its bound, however many race. */
        if (v >= si->max)
            return mp__fail(MP_EOVERFLOW, "mp_sem_release: s must be below its bound %u", si->max);
    } while (!atomic_compare_exchange_weak(&si->value, &v, v + 1));
    if (atomic_load(&si->nwaiters) > 0)
        mp__futex_wake(&si->value, 1);
    return 0;
}

int mp_sem_value(const mp_sem *s)
{
    sem_impl *si = sem_of(s);
    if (!si)
        return bad_handle("mp_sem_value", "s", s);
    return (int)atomic_load_explicit(&si->value, memory_order_relaxed);
}

/* ---- Event ------------------------------------------------------------------------ */

typedef struct event_impl {
    _Atomic uint32_t magic;
    _Atomic uint32_t flag;
    _Atomic uint32_t nwaiters;
    _Atomic uint32_t spin_score;
} event_impl;

_Static_assert(sizeof(event_impl) <= sizeof(mp_event), "mp_event is large enough");

static event_impl *event_of(const mp_event *e)
{
    event_impl *ei = (event_impl *)e;
    if (!aligned8(e) || atomic_load_explicit(&ei->magic, memory_order_relaxed) != EVENT_MAGIC)
        return NULL;
    return ei;
}

int mp_event_init(mp_event *e)
{
    if (!aligned8(e))
        return mp__fail(MP_EINVAL, "mp_event_init: e must be non-NULL and 8-byte aligned (got %p)",
                        (void *)e);
    memset(e, 0, sizeof *e);
    atomic_store_explicit(&((event_impl *)e)->spin_score, SCORE_MAX, memory_order_relaxed);
    atomic_store_explicit(&((event_impl *)e)->magic, EVENT_MAGIC, memory_order_release);
    return 0;
}

int mp_event_destroy(mp_event *e)
{
    event_impl *ei = event_of(e);
    if (!ei)
        return bad_handle("mp_event_destroy", "e", e);
    atomic_store_explicit(&ei->magic, 0, memory_order_release);
    return 0;
}

int mp_event_new(mp_event **out)
{
    if (!out)
        return mp__fail(MP_EINVAL, "mp_event_new: out must not be NULL");
    int rc;
    mp_event *e = arena_obj(sizeof *e, &rc);
    if (e && (rc = mp_event_init(e)) < 0) {
        arena_release(e);
        e = NULL;
    }
    *out = e;
    return rc;
}

void mp_event_free(mp_event *e)
{
    if (mp__arena_find(e) && mp_event_destroy(e) == 0)
        arena_release(e);
}

int mp_event_set(mp_event *e)
{
    event_impl *ei = event_of(e);
    if (!ei)
        return bad_handle("mp_event_set", "e", e);
    /* Only the change from clear to set can find sleepers. */
    if (atomic_exchange(&ei->flag, 1) == 0 && atomic_load(&ei->nwaiters) > 0)
        mp__futex_wake(&ei->flag, INT32_MAX);
    return 0;
}

int mp_event_clear(mp_event *e)
{
    event_impl *ei = event_of(e);
    if (!ei)
        return bad_handle("mp_event_clear", "e", e);
    atomic_store(&ei->flag, 0);
    return 0;
}

bool mp_event_is_set(const mp_event *e)
{
    event_impl *ei = event_of(e);
    return ei && atomic_load_explicit(&ei->flag, memory_order_acquire);
}

int mp_event_wait(mp_event *e, double timeout)
{
    event_impl *ei = event_of(e);
    if (!ei)
        return bad_handle("mp_event_wait", "e", e);
    if (mp__timeout_check(timeout) < 0)
        return bad_timeout("mp_event_wait", timeout);
    if (atomic_load_explicit(&ei->flag, memory_order_acquire))
        return 0;
    int64_t deadline = mp__deadline(timeout);
    if (passed(deadline))
        return MP_ETIMEDOUT;
    SPIN_WHILE_NOT(&ei->spin_score, atomic_load_explicit(&ei->flag, memory_order_relaxed));
    atomic_fetch_add(&ei->nwaiters, 1);
    int rc = 0;
    while (!atomic_load(&ei->flag)) {
        if (mp__futex_wait(&ei->flag, 0, deadline) == MP_ETIMEDOUT) {
            rc = atomic_load(&ei->flag) ? 0 : MP_ETIMEDOUT;
            break;
        }
    }
    atomic_fetch_sub(&ei->nwaiters, 1);
    return rc;
}

_Atomic uint32_t *mp__event_watch(mp_event *e)
{
    event_impl *ei = event_of(e);
    if (!ei)
        return NULL;
    /* Counted before the watcher's check of the flag, and set() reads the
     * count after its exchange: one of them sees the other (DESIGN). */
    atomic_fetch_add(&ei->nwaiters, 1);
    return &ei->flag;
}

void mp__event_unwatch(mp_event *e)
{
    event_impl *ei = event_of(e);
    if (ei)
        atomic_fetch_sub(&ei->nwaiters, 1);
}

/* ---- Condition ------------------------------------------------------------------- */

typedef struct cond_impl {
    _Atomic uint32_t magic;
    _Atomic uint32_t spin_score;
    int64_t lock_rel; /* the lock's address minus the condition's */
    _Atomic uint32_t seq;
    _Atomic uint32_t nwaiters;
    uint8_t pad1[40];
    mp_lock own; /* the condition's own RLock, when it was given none */
} cond_impl;

_Static_assert(sizeof(cond_impl) <= sizeof(mp_cond), "mp_cond is large enough");
_Static_assert(offsetof(cond_impl, own) % 64 == 0, "the own lock has a cache line");

static cond_impl *cond_of(const mp_cond *c)
{
    cond_impl *ci = (cond_impl *)c;
    if (!aligned8(c) || atomic_load_explicit(&ci->magic, memory_order_relaxed) != COND_MAGIC)
        return NULL;
    return ci;
}

static lock_impl *cond_lock(cond_impl *ci)
{
    return lock_of((mp_lock *)((char *)ci + ci->lock_rel));
}

int mp_cond_init(mp_cond *c, mp_lock *lock)
{
    if (!aligned8(c))
        return mp__fail(MP_EINVAL, "mp_cond_init: c must be non-NULL and 8-byte aligned (got %p)",
                        (void *)c);
    if (lock && !lock_of(lock))
        return bad_handle("mp_cond_init", "lock (when not NULL)", lock);
    cond_impl *ci = (cond_impl *)c;
    memset(c, 0, sizeof *c);
    if (!lock) {
        int rc = mp_rlock_init(&ci->own);
        if (rc < 0)
            return rc;
        lock = &ci->own;
    }
    ci->lock_rel = (int64_t)((intptr_t)lock - (intptr_t)ci);
    atomic_store_explicit(&ci->spin_score, SCORE_MAX, memory_order_relaxed);
    atomic_store_explicit(&ci->magic, COND_MAGIC, memory_order_release);
    return 0;
}

int mp_cond_destroy(mp_cond *c)
{
    cond_impl *ci = cond_of(c);
    if (!ci)
        return bad_handle("mp_cond_destroy", "c", c);
    if ((mp_lock *)((char *)ci + ci->lock_rel) == &ci->own) {
        int rc = mp_lock_destroy(&ci->own);
        if (rc < 0)
            return rc;
    }
    atomic_store_explicit(&ci->magic, 0, memory_order_release);
    return 0;
}

int mp_cond_new(mp_lock *lock, mp_cond **out)
{
    if (!out)
        return mp__fail(MP_EINVAL, "mp_cond_new: out must not be NULL");
    *out = NULL;
    int rc;
    mp_cond *c = arena_obj(sizeof *c, &rc);
    if (!c)
        return rc;
    /* The lock must be where every process finds it at the same distance:
     * in the same arena as the condition. */
    if (lock && mp__arena_find(lock) != mp__arena_find(c))
        rc = mp__fail(MP_EINVAL,
                      "mp_cond_new: lock must live in the default arena, as the "
                      "condition does (got %p)",
                      (void *)lock);
    else
        rc = mp_cond_init(c, lock);
    if (rc < 0) {
        arena_release(c);
        return rc;
    }
    *out = c;
    return 0;
}

void mp_cond_free(mp_cond *c)
{
    if (mp__arena_find(c) && mp_cond_destroy(c) == 0)
        arena_release(c);
}

mp_lock *mp_cond_get_lock(mp_cond *c)
{
    cond_impl *ci = cond_of(c);
    return ci && cond_lock(ci) ? (mp_lock *)((char *)ci + ci->lock_rel) : NULL;
}

int mp_cond_acquire(mp_cond *c, double timeout)
{
    mp_lock *l = mp_cond_get_lock(c);
    return l ? mp_lock_acquire(l, timeout) : MP_EINVAL;
}

int mp_cond_release(mp_cond *c)
{
    mp_lock *l = mp_cond_get_lock(c);
    return l ? mp_lock_release(l) : MP_EINVAL;
}

/* mp_cond_wait against an absolute deadline. */
static int cond_wait(cond_impl *ci, int64_t deadline)
{
    lock_impl *li = cond_lock(ci);
    if (!li)
        return MP_EINVAL;
    unsigned depth = mp__mutex_depth(&li->mutex);
    if (depth == 0)
        return MP_EPERM;
    /* Registered and sampled under the lock, which notify needs too: a
     * notify from now on changes seq. */
    atomic_fetch_add(&ci->nwaiters, 1);
    uint32_t s = atomic_load(&ci->seq);
    for (unsigned i = 0; i < depth; i++)
        (void)mp__mutex_unlock(&li->mutex);

    int rc = 0;
    SPIN_WHILE_NOT(&ci->spin_score, atomic_load_explicit(&ci->seq, memory_order_relaxed) != s);
    while (atomic_load(&ci->seq) == s) {
        if (mp__futex_wait(&ci->seq, s, deadline) == MP_ETIMEDOUT) {
            rc = atomic_load(&ci->seq) == s ? MP_ETIMEDOUT : 0;
            break;
        }
    }
    atomic_fetch_sub(&ci->nwaiters, 1);

    /* Back to the depth the caller had, whatever the time: the caller
     * expects to hold the lock. */
    int lrc = lock_take(li, MP__NO_DEADLINE);
    if (lrc < 0 && lrc != MP_EOWNERDEAD)
        return lrc;
    for (unsigned i = 1; i < depth; i++)
        (void)mp__mutex_lock(&li->mutex, MP__NO_DEADLINE);
    return lrc == MP_EOWNERDEAD ? lrc : rc;
}

int mp_cond_wait(mp_cond *c, double timeout)
{
    cond_impl *ci = cond_of(c);
    if (!ci)
        return bad_handle("mp_cond_wait", "c", c);
    if (mp__timeout_check(timeout) < 0)
        return bad_timeout("mp_cond_wait", timeout);
    return cond_wait(ci, mp__deadline(timeout));
}

int mp_cond_wait_for(mp_cond *c, mp_predicate_fn pred, void *arg, double timeout)
{
    cond_impl *ci = cond_of(c);
    if (!ci)
        return bad_handle("mp_cond_wait_for", "c", c);
    MP__NONNULL(pred);
    if (mp__timeout_check(timeout) < 0)
        return bad_timeout("mp_cond_wait_for", timeout);
    lock_impl *li = cond_lock(ci);
    if (!li)
        return bad_handle("mp_cond_wait_for", "c's lock", c);
    if (!mp__mutex_is_mine(&li->mutex))
        return mp__fail(MP_EPERM, "mp_cond_wait_for: c's lock must be held by the calling thread");
    int64_t deadline = mp__deadline(timeout);
    while (!pred(arg)) {
        if (passed(deadline))
            return MP_ETIMEDOUT;
        int rc = cond_wait(ci, deadline);
        if (rc == MP_ETIMEDOUT)
            return pred(arg) ? 0 : MP_ETIMEDOUT;
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int cond_notify(mp_cond *c, int n)
{
    const char *call = n == INT32_MAX ? "mp_cond_notify_all" : "mp_cond_notify";
    cond_impl *ci = cond_of(c);
    if (!ci)
        return bad_handle(call, "c", c);
    lock_impl *li = cond_lock(ci);
    if (!li)
        return bad_handle(call, "c's lock", c);
    if (!mp__mutex_is_mine(&li->mutex))
        return mp__fail(MP_EPERM, "%s: c's lock must be held by the calling thread", call);
    if (atomic_load(&ci->nwaiters) == 0)
        return 0;
    atomic_fetch_add(&ci->seq, 1);
    mp__futex_wake(&ci->seq, n);
    return 0;
}

int mp_cond_notify(mp_cond *c, int n)
{
    if (n < 1)
        return mp__fail(MP_EINVAL, "mp_cond_notify: n must be >= 1 (got %d)", n);
    return cond_notify(c, n);
}

int mp_cond_notify_all(mp_cond *c)
{
    return cond_notify(c, INT32_MAX);
}

/* ---- Barrier ------------------------------------------------------------------------ */

typedef struct barrier_impl {
    _Atomic uint32_t magic;
    uint32_t parties;
    _Atomic uint32_t seq;    /* futex word: bumped whenever waiters must look */
    _Atomic uint32_t gen;    /* the current generation */
    _Atomic uint32_t count;  /* arrivals in the current generation */
    _Atomic uint32_t broken; /* the current generation is broken */
    _Atomic uint32_t breaks; /* generations that ended broken, ever */
    _Atomic uint32_t spin_score;
    _Atomic uint64_t outcome; /* bit g % 64: generation g ended broken */
    mp__mutex mutex;
} barrier_impl;

_Static_assert(sizeof(barrier_impl) <= sizeof(mp_barrier), "mp_barrier is large enough");

static barrier_impl *barrier_of(const mp_barrier *b)
{
    barrier_impl *bi = (barrier_impl *)b;
    if (!aligned8(b) || atomic_load_explicit(&bi->magic, memory_order_relaxed) != BARRIER_MAGIC)
        return NULL;
    return bi;
}

int mp_barrier_init(mp_barrier *b, unsigned parties)
{
    if (!aligned8(b))
        return mp__fail(MP_EINVAL,
                        "mp_barrier_init: b must be non-NULL and 8-byte aligned (got %p)",
                        (void *)b);
    if (parties == 0 || parties > MP_SEM_VALUE_MAX)
        return mp__fail(MP_EINVAL, "mp_barrier_init: parties must be 1 to %u (got %u)",
                        (unsigned)MP_SEM_VALUE_MAX, parties);
    barrier_impl *bi = (barrier_impl *)b;
    memset(b, 0, sizeof *b);
    int rc = mp__mutex_init(&bi->mutex);
    if (rc < 0)
        return rc;
    bi->parties = parties;
    atomic_store_explicit(&bi->spin_score, SCORE_MAX, memory_order_relaxed);
    atomic_store_explicit(&bi->magic, BARRIER_MAGIC, memory_order_release);
    return 0;
}

int mp_barrier_destroy(mp_barrier *b)
{
    barrier_impl *bi = barrier_of(b);
    if (!bi)
        return bad_handle("mp_barrier_destroy", "b", b);
    atomic_store_explicit(&bi->magic, 0, memory_order_release);
    mp__mutex_destroy(&bi->mutex);
    return 0;
}

int mp_barrier_new(unsigned parties, mp_barrier **out)
{
    if (!out)
        return mp__fail(MP_EINVAL, "mp_barrier_new: out must not be NULL");
    *out = NULL;
    if (parties == 0 || parties > MP_SEM_VALUE_MAX)
        return mp__fail(MP_EINVAL, "mp_barrier_new: parties must be 1 to %u (got %u)",
                        (unsigned)MP_SEM_VALUE_MAX, parties);
    int rc;
    mp_barrier *b = arena_obj(sizeof *b, &rc);
    if (b && (rc = mp_barrier_init(b, parties)) < 0) {
        arena_release(b);
        b = NULL;
    }
    *out = b;
    return rc;
}

void mp_barrier_free(mp_barrier *b)
{
    if (mp__arena_find(b) && mp_barrier_destroy(b) == 0)
        arena_release(b);
}

/* Wakes every waiter to look at the state again.  Caller holds the mutex
 * or has just released it. */
static void barrier_kick(barrier_impl *bi)
{
    atomic_fetch_add(&bi->seq, 1);
    mp__futex_wake(&bi->seq, INT32_MAX);
}

/* Ends the current generation (caller holds the mutex).  The outcome bit
 * and the break count are written before the generation moves on, so a
 * waiter that sees the new generation sees them. */
static void barrier_end_gen(barrier_impl *bi, bool broken)
{
    uint32_t g = atomic_load(&bi->gen);
    uint64_t bit = (uint64_t)1 << (g % 64);
    if (broken) {
        atomic_fetch_or(&bi->outcome, bit);
        atomic_fetch_add(&bi->breaks, 1);
    } else {
        atomic_fetch_and(&bi->outcome, ~bit);
    }
    atomic_store(&bi->count, 0);
    atomic_store(&bi->broken, 0);
    atomic_store(&bi->gen, g + 1);
}

/* Takes the barrier's mutex.  A holder that died may have left the state
 * half-changed: the barrier is broken then, for reset() to repair. */
static int barrier_lock(barrier_impl *bi)
{
    int rc = mp__mutex_lock(&bi->mutex, MP__NO_DEADLINE);
    if (rc == MP_EOWNERDEAD) {
        atomic_store(&bi->broken, 1);
        (void)mp__mutex_consistent(&bi->mutex);
        barrier_kick(bi);
        rc = 0;
    }
    return rc;
}

/* How generation g ended, for a waiter that arrived in it when breaks was
 * breaks0: MP_EBROKEN or 0.  g must be over. */
static int barrier_outcome(barrier_impl *bi, uint32_t g, uint32_t breaks0)
{
    uint32_t ahead = atomic_load(&bi->gen) - g;
    uint64_t out = atomic_load(&bi->outcome);
    if (ahead <= 64)
        return (out >> (g % 64)) & 1 ? MP_EBROKEN : 0;
    /* Overtaken by more than the ring remembers: tripped for sure only if
     * no generation broke since. */
    return atomic_load(&bi->breaks) == breaks0 ? 0 : MP_EBROKEN;
}

int mp_barrier_wait(mp_barrier *b, double timeout)
{
    barrier_impl *bi = barrier_of(b);
    if (!bi)
        return bad_handle("mp_barrier_wait", "b", b);
    if (mp__timeout_check(timeout) < 0)
        return bad_timeout("mp_barrier_wait", timeout);
    int64_t deadline = mp__deadline(timeout);
    int rc = barrier_lock(bi);
    if (rc < 0)
        return rc;
    if (atomic_load(&bi->broken)) {
        mp__mutex_unlock(&bi->mutex);
        return MP_EBROKEN;
    }
    uint32_t g = atomic_load(&bi->gen);
    uint32_t breaks0 = atomic_load(&bi->breaks);
    uint32_t index = atomic_fetch_add(&bi->count, 1);
    if (index + 1 >= bi->parties) {
        barrier_end_gen(bi, false);
        atomic_fetch_add(&bi->seq, 1);
        mp__mutex_unlock(&bi->mutex);
        mp__futex_wake(&bi->seq, INT32_MAX);
        return (int)index;
    }
    mp__mutex_unlock(&bi->mutex);

    SPIN_WHILE_NOT(&bi->spin_score, atomic_load_explicit(&bi->gen, memory_order_relaxed) != g ||
                                        atomic_load_explicit(&bi->broken, memory_order_relaxed));
    for (;;) {
        uint32_t s = atomic_load(&bi->seq);
        if (atomic_load(&bi->gen) != g) {
            rc = barrier_outcome(bi, g, breaks0);
            return rc < 0 ? rc : (int)index;
        }
        if (atomic_load(&bi->broken))
            return MP_EBROKEN;
        if (mp__futex_wait(&bi->seq, s, deadline) != MP_ETIMEDOUT)
            continue;
        /* Out of time - unless the generation ended meanwhile.  Decided
         * under the mutex, so that a trip and a timeout cannot both win. */
        rc = barrier_lock(bi);
        if (rc < 0)
            return rc;
        if (atomic_load(&bi->gen) != g) {
            mp__mutex_unlock(&bi->mutex);
            rc = barrier_outcome(bi, g, breaks0);
            return rc < 0 ? rc : (int)index;
        }
        if (atomic_load(&bi->broken)) {
            mp__mutex_unlock(&bi->mutex);
            return MP_EBROKEN;
        }
        atomic_store(&bi->broken, 1);
        atomic_fetch_add(&bi->seq, 1);
        mp__mutex_unlock(&bi->mutex);
        mp__futex_wake(&bi->seq, INT32_MAX);
        return MP_ETIMEDOUT;
    }
}

int mp_barrier_abort(mp_barrier *b)
{
    barrier_impl *bi = barrier_of(b);
    if (!bi)
        return bad_handle("mp_barrier_abort", "b", b);
    int rc = barrier_lock(bi);
    if (rc < 0)
        return rc;
    atomic_store(&bi->broken, 1);
    atomic_fetch_add(&bi->seq, 1);
    mp__mutex_unlock(&bi->mutex);
    mp__futex_wake(&bi->seq, INT32_MAX);
    return 0;
}

int mp_barrier_reset(mp_barrier *b)
{
    barrier_impl *bi = barrier_of(b);
    if (!bi)
        return bad_handle("mp_barrier_reset", "b", b);
    int rc = barrier_lock(bi);
    if (rc < 0)
        return rc;
    /* Waiters of the generation being ended are told it broke. */
    barrier_end_gen(bi, atomic_load(&bi->broken) || atomic_load(&bi->count) > 0);
    atomic_fetch_add(&bi->seq, 1);
    mp__mutex_unlock(&bi->mutex);
    mp__futex_wake(&bi->seq, INT32_MAX);
    return 0;
}

mp__mutex *mp__lock_mutex(mp_lock *l)
{
    lock_impl *li = lock_of(l);
    return li ? &li->mutex : NULL;
}

mp__mutex *mp__barrier_mutex(mp_barrier *b)
{
    barrier_impl *bi = barrier_of(b);
    return bi ? &bi->mutex : NULL;
}

int mp_barrier_parties(const mp_barrier *b)
{
    barrier_impl *bi = barrier_of(b);
    return bi ? (int)bi->parties : bad_handle("mp_barrier_parties", "b", b);
}

int mp_barrier_n_waiting(const mp_barrier *b)
{
    barrier_impl *bi = barrier_of(b);
    if (!bi)
        return bad_handle("mp_barrier_n_waiting", "b", b);
    return atomic_load(&bi->broken) ? 0 : (int)atomic_load(&bi->count);
}

bool mp_barrier_broken(const mp_barrier *b)
{
    barrier_impl *bi = barrier_of(b);
    return bi && atomic_load(&bi->broken);
}
