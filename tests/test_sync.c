/* Tests of the process-shared synchronisation objects: Lock, RLock,
 * Semaphore, BoundedSemaphore, Event, Condition, Barrier - contention
 * between processes, every timeout, bad input, and processes that die at
 * the worst moment. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"
#include "testhooks.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/time.h>

/* ---- helpers ------------------------------------------------------------ */

/* Objects in the default arena, checked. */
static mp_lock *new_lock(void)
{
    mp_lock *l = NULL;
    CHECK_OK(mp_lock_new(&l));
    CHECK(l != NULL);
    return l;
}

static mp_rlock *new_rlock(void)
{
    mp_rlock *l = NULL;
    CHECK_OK(mp_rlock_new(&l));
    CHECK(l != NULL);
    return l;
}

static mp_sem *new_sem(unsigned value, bool bounded)
{
    mp_sem *s = NULL;
    CHECK_OK(bounded ? mp_sem_new_bounded(value, &s) : mp_sem_new(value, &s));
    CHECK(s != NULL);
    return s;
}

static mp_event *new_event(void)
{
    mp_event *e = NULL;
    CHECK_OK(mp_event_new(&e));
    CHECK(e != NULL);
    return e;
}

static mp_cond *new_cond(mp_lock *lock)
{
    mp_cond *c = NULL;
    CHECK_OK(mp_cond_new(lock, &c));
    CHECK(c != NULL);
    return c;
}

static mp_barrier *new_barrier(unsigned parties)
{
    mp_barrier *b = NULL;
    CHECK_OK(mp_barrier_new(parties, &b));
    CHECK(b != NULL);
    return b;
}

/* Waits until fn(arg) holds, polling without sleeping, for at most secs.
 * For states that no event announces (a process asleep in a wait). */
static bool eventually(bool (*fn)(void *), void *arg, double secs)
{
    double end = mpt_now() + secs;
    while (!fn(arg)) {
        if (mpt_now() > end)
            return false;
        sched_yield();
    }
    return true;
}

/* Whether process pid is asleep in a futex wait, from /proc/<pid>/syscall
 * (the number of the system call it is blocked in). */
static bool in_futex_wait(void *arg)
{
    pid_t pid = (pid_t)(intptr_t)arg;
    char path[64], buf[64] = {0};
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool yes = fgets(buf, sizeof buf, f) && atol(buf) == SYS_futex;
    fclose(f);
    return yes;
}

static void *pid_arg(mp_process *p)
{
    return (void *)(intptr_t)mp_process_pid(p);
}

/* ---- Lock and RLock ----------------------------------------------------- */

TEST(lock_basics)
{
    mp_lock *l = new_lock();
    CHECK(l != NULL);
    CHECK(!mp_lock_is_recursive(l));
    CHECK(!mp_lock_is_owned(l));
    CHECK_EQ(mp_lock_count(l), 0);
    CHECK_EQ(mp_lock_owner(l, NULL, NULL), 0);
    CHECK_OK(mp_lock_acquire(l, MP_FOREVER));
    CHECK(mp_lock_is_owned(l));
    CHECK_EQ(mp_lock_count(l), 1);
    pid_t pid = 0, tid = 0;
    CHECK_EQ(mp_lock_owner(l, &pid, &tid), 1);
    CHECK_EQ(pid, getpid());
    CHECK_EQ(tid, gettid());
    /* Python's Lock would hang here; this one says so. */
    CHECK_ERR(mp_lock_acquire(l, 1.0), MP_EDEADLK);
    CHECK_ERR(mp_lock_acquire(l, 0), MP_EDEADLK);
    CHECK_ERR(mp_lock_destroy(l), MP_EBUSY);
    CHECK_ERR(mp_lock_consistent(l), MP_EINVAL); /* not after a death */
    CHECK_OK(mp_lock_release(l));
    CHECK_ERR(mp_lock_release(l), MP_EPERM);
    CHECK_OK(mp_lock_acquire(l, 0));
    CHECK_OK(mp_lock_release(l));
    mp_lock_free(l);
}

TEST(lock_bad_input)
{
    CHECK_ERR(mp_lock_init(NULL), MP_EINVAL);
    CHECK_ERR(mp_lock_acquire(NULL, 0), MP_EINVAL);
    CHECK_ERR(mp_lock_release(NULL), MP_EINVAL);
    CHECK(!mp_lock_is_owned(NULL));
    CHECK_ERR(mp_lock_count(NULL), MP_EINVAL);
    CHECK_ERR(mp_lock_owner(NULL, NULL, NULL), MP_EINVAL);
    CHECK(!mp_lock_is_recursive(NULL));
    CHECK_ERR(mp_lock_consistent(NULL), MP_EINVAL);
    CHECK_ERR(mp_lock_destroy(NULL), MP_EINVAL);
    CHECK_ERR(mp_lock_new(NULL), MP_EINVAL);
    CHECK_ERR(mp_rlock_new(NULL), MP_EINVAL);
    mp_lock_free(NULL);

    /* Never initialised, misaligned, destroyed, another type. */
    _Alignas(64) unsigned char raw[2 * sizeof(mp_lock)];
    memset(raw, 0x5a, sizeof raw);
    mp_lock *l = (mp_lock *)raw;
    CHECK_ERR(mp_lock_acquire(l, 0), MP_EINVAL);
    CHECK_ERR(mp_lock_init((mp_lock *)(raw + 4)), MP_EINVAL);
    CHECK_OK(mp_lock_init(l));
    CHECK_OK(mp_lock_destroy(l));
    CHECK_ERR(mp_lock_acquire(l, 0), MP_EINVAL);
    CHECK_ERR(mp_lock_destroy(l), MP_EINVAL);
    /* The predicates say false for what is no lock any more. */
    CHECK_OK(mp_rlock_init(l));
    CHECK(mp_lock_is_recursive(l));
    CHECK_OK(mp_lock_destroy(l));
    CHECK(!mp_lock_is_recursive(l));
    CHECK(!mp_lock_is_owned(l));
    mp_sem s;
    CHECK_OK(mp_sem_init(&s, 1));
    CHECK_ERR(mp_lock_acquire((mp_lock *)&s, 0), MP_EINVAL);
    /* A lock the caller placed is not the library's to free. */
    CHECK_OK(mp_lock_init(l));
    mp_lock_free(l);
    CHECK_OK(mp_lock_acquire(l, 0));
    CHECK_OK(mp_lock_release(l));
    CHECK_OK(mp_lock_destroy(l));
}

TEST(rlock_counts_and_owner)
{
    mp_rlock *r = new_rlock();
    CHECK(r != NULL);
    CHECK(mp_lock_is_recursive(r));
    for (int i = 1; i <= 3; i++) {
        CHECK_OK(mp_lock_acquire(r, i == 2 ? 0 : MP_FOREVER));
        CHECK_EQ(mp_lock_count(r), i);
    }
    CHECK_ERR(mp_lock_destroy(r), MP_EBUSY);
    for (int i = 2; i >= 0; i--) {
        CHECK_OK(mp_lock_release(r));
        CHECK_EQ(mp_lock_count(r), i);
    }
    CHECK_ERR(mp_lock_release(r), MP_EPERM);
    CHECK_EQ(mp_lock_owner(r, NULL, NULL), 0);
    mp_lock_free(r);
}

/* Shared state for the contention tests: a plain counter that only the
 * lock protects, and a barrier every contender waits at before its first
 * increment, so that they all run at once (started one by one, the first
 * could finish before the last began, and the count came out right with
 * the locks switched off). */
typedef struct counter_arg {
    mp_lock *lock;
    volatile long *count;
    int n;
    mp_barrier *start;
} counter_arg;

static int add_under_lock(void *arg)
{
    counter_arg *a = arg;
    if (mp_barrier_wait(a->start, 30.0) < 0)
        return 3;
    for (int i = 0; i < a->n; i++) {
        if (mp_lock_acquire(a->lock, 30.0) != 0)
            return 1;
        /* A read-modify-write in two steps, now and then with the CPU
         * given away in between: without exclusion, updates are lost. */
        long v = *a->count;
        if (i % 16 == 0)
            sched_yield();
        *a->count = v + 1;
        if (mp_lock_release(a->lock) != 0)
            return 2;
    }
    return 0;
}

static void check_exact_count(mp_lock *lock, const char *kind)
{
    MPT_CONTEXT("%s", kind);
    enum { PROCS = 4, N = 20000 };
    volatile long *count = mp_arena_alloc(NULL, sizeof(long));
    CHECK(count != NULL);
    counter_arg a = {lock, count, N, new_barrier(PROCS)};
    mp_process *ps[PROCS];
    for (int i = 0; i < PROCS; i++)
        ps[i] = mpt_start(add_under_lock, &a);
    for (int i = 0; i < PROCS; i++)
        CHECK_EQ(mpt_finish(ps[i]), 0);
    CHECK_EQ(*count, (long)PROCS * N);
    CHECK_OK(mp_arena_dealloc(NULL, (void *)count));
    mp_barrier_free(a.start);
    MPT_CONTEXT_CLEAR();
}

/* sync.h: a Lock and an RLock exclude each other's holders, here four
 * processes that start together. */
TEST(lock_exact_count_under_contention)
{
    mp_lock *l = new_lock();
    check_exact_count(l, "Lock");
    mp_lock_free(l);
    mp_rlock *r = new_rlock();
    check_exact_count(r, "RLock");
    mp_lock_free(r);
}

/* Two threads in each of two processes, all on one lock. */
static void *thread_adds(void *arg)
{
    return (void *)(intptr_t)add_under_lock(arg);
}

static int threads_add(void *arg)
{
    pthread_t t;
    if (pthread_create(&t, NULL, thread_adds, arg) != 0)
        return 10;
    int mine = add_under_lock(arg);
    void *theirs;
    pthread_join(t, &theirs);
    return mine ? mine : (int)(intptr_t)theirs;
}

TEST(lock_exact_count_between_threads_and_processes)
{
    mp_rlock *l = new_rlock();
    volatile long *count = mp_arena_alloc(NULL, sizeof(long));
    counter_arg a = {l, count, 10000, new_barrier(4)};
    mp_process *p = mpt_start(threads_add, &a);
    CHECK_EQ(threads_add(&a), 0);
    CHECK_EQ(mpt_finish(p), 0);
    CHECK_EQ(*count, 40000);
    CHECK_OK(mp_arena_dealloc(NULL, (void *)count));
    mp_barrier_free(a.start);
    mp_lock_free(l);
}

typedef struct holder_arg {
    mp_lock *lock;
    gate ready, go;
    int depth;
} holder_arg;

/* Takes the lock (depth times), says so, and waits to be told to let go -
 * or to be killed. */
static int hold_lock(void *arg)
{
    holder_arg *h = arg;
    for (int i = 0; i < h->depth; i++)
        if (mp_lock_acquire(h->lock, 30.0) != 0)
            return 1;
    gate_open(&h->ready);
    if (gate_wait(&h->go, 60.0) != 0)
        return 2;
    for (int i = 0; i < h->depth; i++)
        mp_lock_release(h->lock);
    return 0;
}

/* sync.h, mp_lock_acquire: "MP_EAGAIN when an RLock's count would
 * overflow" - and the lock stays held, at the same depth. */
TEST(rlock_count_overflow_is_eagain)
{
    mp_rlock *r = new_rlock();
    CHECK_OK(mp_lock_acquire(r, 0));
    CHECK_OK(mp_lock_acquire(r, 0));
    CHECK_EQ(mp_lock_count(r), 2);
    /* Four billion acquisitions, without the four billion calls. */
    CHECK_OK(mp__mutex_set_depth(mp__lock_mutex(r), UINT32_MAX));
    CHECK_ERR(mp_lock_acquire(r, 0), MP_EAGAIN);
    CHECK_ERR(mp_lock_acquire(r, MP_FOREVER), MP_EAGAIN);
    CHECK(mp_lock_is_owned(r));
    CHECK_EQ((unsigned)mp_lock_count(r), UINT32_MAX);
    CHECK_OK(mp_lock_release(r));
    CHECK_EQ((unsigned)mp_lock_count(r), UINT32_MAX - 1);
    CHECK_OK(mp_lock_acquire(r, 0));
    CHECK_OK(mp__mutex_set_depth(mp__lock_mutex(r), 1));
    CHECK_OK(mp_lock_release(r));
    CHECK(!mp_lock_is_owned(r));
    CHECK_EQ(mp_lock_owner(r, NULL, NULL), 0);
    mp_lock_free(r);
}

TEST(lock_timeouts)
{
    holder_arg h = {.lock = new_lock(), .depth = 1};
    gate_init(&h.ready);
    gate_init(&h.go);
    mp_process *p = mpt_start(hold_lock, &h);
    CHECK_EQ(gate_wait(&h.ready, 30.0), 0);
    /* Held elsewhere: a poll fails at once, a wait at its deadline. */
    double t0 = mpt_now();
    CHECK_ERR(mp_lock_acquire(h.lock, 0), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 < 5.0);
    t0 = mpt_now();
    CHECK_ERR(mp_lock_acquire(h.lock, 0.15), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.15);
    CHECK(mpt_now() - t0 < 10.0);
    pid_t pid;
    CHECK_EQ(mp_lock_owner(h.lock, &pid, NULL), 1);
    CHECK_EQ(pid, mp_process_pid(p));
    CHECK(!mp_lock_is_owned(h.lock));
    /* Not ours to release. */
    CHECK_ERR(mp_lock_release(h.lock), MP_EPERM);
    gate_open(&h.go);
    CHECK_OK(mp_lock_acquire(h.lock, 30.0)); /* woken when it lets go */
    CHECK_OK(mp_lock_release(h.lock));
    CHECK_EQ(mpt_finish(p), 0);
    mp_lock_free(h.lock);
    gate_close(&h.ready);
    gate_close(&h.go);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

TEST(waits_survive_signals_without_stretching)
{
    /* SIGALRM every 20 ms, without SA_RESTART: every sleep is interrupted,
     * and each wait must still end at its one deadline. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    CHECK_EQ(sigaction(SIGALRM, &sa, NULL), 0);
    struct itimerval it = {{0, 20000}, {0, 20000}};
    CHECK_EQ(setitimer(ITIMER_REAL, &it, NULL), 0);

    holder_arg h = {.lock = new_lock(), .depth = 1};
    gate_init(&h.ready);
    gate_init(&h.go);
    mp_process *p = mpt_start(hold_lock, &h);
    CHECK_EQ(gate_wait(&h.ready, 30.0), 0);
    double t0 = mpt_now();
    CHECK_ERR(mp_lock_acquire(h.lock, 0.2), MP_ETIMEDOUT);
    double dt = mpt_now() - t0;
    CHECK(dt >= 0.2 && dt < 10.0);

    mp_sem *s = new_sem(0, false);
    mp_event *e = new_event();
    mp_barrier *b = new_barrier(2);
    mp_cond *c = new_cond(NULL);
    t0 = mpt_now();
    CHECK_ERR(mp_sem_acquire(s, 0.2), MP_ETIMEDOUT);
    CHECK_ERR(mp_event_wait(e, 0.2), MP_ETIMEDOUT);
    CHECK_ERR(mp_barrier_wait(b, 0.2), MP_ETIMEDOUT);
    CHECK_OK(mp_cond_acquire(c, MP_FOREVER));
    CHECK_ERR(mp_cond_wait(c, 0.2), MP_ETIMEDOUT);
    CHECK_OK(mp_cond_release(c));
    dt = mpt_now() - t0;
    CHECK(dt >= 0.8 && dt < 20.0);
    CHECK(alarms > 10);

    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    gate_open(&h.go);
    CHECK_EQ(mpt_finish(p), 0);
    mp_lock_free(h.lock);
    mp_sem_free(s);
    mp_event_free(e);
    mp_barrier_free(b);
    mp_cond_free(c);
    gate_close(&h.ready);
    gate_close(&h.go);
}

static void check_owner_death(int depth)
{
    MPT_CONTEXT("%s held %d deep", depth > 1 ? "RLock" : "Lock", depth);
    holder_arg h = {.lock = depth > 1 ? new_rlock() : new_lock(), .depth = depth};
    gate_init(&h.ready);
    gate_init(&h.go);
    mp_process *p = mpt_start(hold_lock, &h);
    CHECK_EQ(gate_wait(&h.ready, 30.0), 0);
    CHECK_OK(mp_process_kill(p));
    CHECK_EQ(mpt_finish(p), -SIGKILL);
    /* The holder died: the next acquirer is told, holds it, and repairs. */
    CHECK_ERR(mp_lock_acquire(h.lock, 10.0), MP_EOWNERDEAD);
    CHECK(mp_lock_is_owned(h.lock));
    CHECK_EQ(mp_lock_count(h.lock), 1); /* the dead holder's depth is gone */
    pid_t pid;
    CHECK_EQ(mp_lock_owner(h.lock, &pid, NULL), 1);
    CHECK_EQ(pid, getpid());
    CHECK_OK(mp_lock_consistent(h.lock));
    CHECK_OK(mp_lock_release(h.lock));
    CHECK_EQ(mp_lock_count(h.lock), 0);
    CHECK_OK(mp_lock_acquire(h.lock, 10.0));
    CHECK_OK(mp_lock_release(h.lock));

    /* Again, and this time the state is declared lost. */
    p = mpt_start(hold_lock, &h);
    CHECK_EQ(gate_wait(&h.ready, 30.0), 0);
    CHECK_OK(mp_process_kill(p));
    CHECK_EQ(mpt_finish(p), -SIGKILL);
    CHECK_ERR(mp_lock_acquire(h.lock, 10.0), MP_EOWNERDEAD);
    CHECK_OK(mp_lock_release(h.lock));
    CHECK_ERR(mp_lock_acquire(h.lock, 10.0), MP_ENOTRECOVERABLE);
    CHECK_ERR(mp_lock_acquire(h.lock, 0), MP_ENOTRECOVERABLE);
    /* Destroyed and made again, it works. */
    CHECK_OK(mp_lock_destroy(h.lock));
    CHECK_OK(depth > 1 ? mp_rlock_init(h.lock) : mp_lock_init(h.lock));
    CHECK_OK(mp_lock_acquire(h.lock, 0));
    CHECK_OK(mp_lock_release(h.lock));
    mp_lock_free(h.lock);
    gate_close(&h.ready);
    gate_close(&h.go);
    MPT_CONTEXT_CLEAR();
}

TEST(lock_owner_death_is_recovered)
{
    check_owner_death(1);
}

TEST(rlock_owner_death_is_recovered)
{
    check_owner_death(3);
}

typedef struct waiter_arg {
    mp_lock *lock;
    gate ready;
} waiter_arg;

static int acquire_expect_owner_dead(void *arg)
{
    waiter_arg *w = arg;
    gate_open(&w->ready);
    int rc = mp_lock_acquire(w->lock, 60.0);
    if (rc != MP_EOWNERDEAD)
        return 10;
    if (mp_lock_consistent(w->lock) != 0 || mp_lock_release(w->lock) != 0)
        return 11;
    return 0;
}

TEST(sleeping_waiter_gets_a_dead_holders_lock)
{
    holder_arg h = {.lock = new_lock(), .depth = 1};
    gate_init(&h.ready);
    gate_init(&h.go);
    mp_process *holder = mpt_start(hold_lock, &h);
    CHECK_EQ(gate_wait(&h.ready, 30.0), 0);
    waiter_arg w = {.lock = h.lock};
    gate_init(&w.ready);
    mp_process *waiter = mpt_start(acquire_expect_owner_dead, &w);
    CHECK_EQ(gate_wait(&w.ready, 30.0), 0);
    /* Kill the holder once the waiter sleeps in the kernel. */
    CHECK(eventually(in_futex_wait, pid_arg(waiter), 30.0));
    CHECK_OK(mp_process_kill(holder));
    CHECK_EQ(mpt_finish(holder), -SIGKILL);
    CHECK_EQ(mpt_finish(waiter), 0);
    CHECK_OK(mp_lock_acquire(h.lock, 10.0));
    CHECK_OK(mp_lock_release(h.lock));
    mp_lock_free(h.lock);
    gate_close(&h.ready);
    gate_close(&h.go);
    gate_close(&w.ready);
}

static int child_of_holder(void *arg)
{
    mp_lock *l = arg;
    /* The parent holds it: the child does not, and cannot release it. */
    if (mp_lock_is_owned(l) || mp_lock_count(l) != 0)
        return 1;
    if (mp_lock_release(l) != MP_EPERM)
        return 2;
    if (mp_lock_acquire(l, 0.05) != MP_ETIMEDOUT)
        return 3;
    return 0;
}

TEST(fork_child_inherits_no_lock)
{
    mp_rlock *l = new_rlock();
    CHECK_OK(mp_lock_acquire(l, 0));
    CHECK_OK(mp_lock_acquire(l, 0));
    CHECK_EQ(mpt_finish(mpt_start(child_of_holder, l)), 0);
    CHECK_EQ(mp_lock_count(l), 2);
    CHECK_OK(mp_lock_release(l));
    CHECK_OK(mp_lock_release(l));
    mp_lock_free(l);
}

/* ---- Semaphore -------------------------------------------------------------- */

TEST(semaphore_basics_and_timeouts)
{
    mp_sem *s = new_sem(2, false);
    CHECK(s != NULL);
    CHECK_EQ(mp_sem_value(s), 2);
    CHECK_OK(mp_sem_acquire(s, 0));
    CHECK_OK(mp_sem_acquire(s, MP_FOREVER));
    CHECK_EQ(mp_sem_value(s), 0);
    double t0 = mpt_now();
    CHECK_ERR(mp_sem_acquire(s, 0), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 < 5.0);
    t0 = mpt_now();
    CHECK_ERR(mp_sem_acquire(s, 0.15), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.15);
    CHECK_OK(mp_sem_release(s));
    CHECK_OK(mp_sem_release(s));
    CHECK_OK(mp_sem_release(s)); /* an unbounded semaphore goes beyond */
    CHECK_EQ(mp_sem_value(s), 3);
    mp_sem_free(s);

    mp_sem big;
    CHECK_ERR(mp_sem_init(&big, MP_SEM_VALUE_MAX + 1u), MP_EINVAL);
    mp_sem *bad = mpt_not_null();
    CHECK_ERR(mp_sem_new(MP_SEM_VALUE_MAX + 1u, &bad), MP_EINVAL);
    CHECK(bad == NULL);
    bad = mpt_not_null();
    CHECK_ERR(mp_sem_new_bounded(MP_SEM_VALUE_MAX + 1u, &bad), MP_EINVAL);
    CHECK(bad == NULL);
    CHECK_ERR(mp_sem_new(1, NULL), MP_EINVAL);
    CHECK_ERR(mp_sem_new_bounded(1, NULL), MP_EINVAL);
    CHECK_OK(mp_sem_init(&big, MP_SEM_VALUE_MAX));
    CHECK_ERR(mp_sem_release(&big), MP_EOVERFLOW);
    CHECK_EQ(mp_sem_value(&big), (int)MP_SEM_VALUE_MAX);
    CHECK_OK(mp_sem_destroy(&big));
    CHECK_ERR(mp_sem_acquire(&big, 0), MP_EINVAL);
    CHECK_ERR(mp_sem_release(NULL), MP_EINVAL);
    CHECK_ERR(mp_sem_value(NULL), MP_EINVAL);
    CHECK_ERR(mp_sem_destroy(NULL), MP_EINVAL);
    CHECK_ERR(mp_sem_init(NULL, 0), MP_EINVAL);
    mp_sem_free(NULL);
}

typedef struct sem_arg {
    mp_sem *sem;
    volatile long *count;
    int n;
    int *successes; /* per child, in shared memory */
    int idx;
    mp_barrier *start; /* all contenders start together (see counter_arg) */
} sem_arg;

static int add_under_sem(void *arg)
{
    sem_arg *a = arg;
    if (mp_barrier_wait(a->start, 30.0) < 0)
        return 3;
    for (int i = 0; i < a->n; i++) {
        if (mp_sem_acquire(a->sem, 30.0) != 0)
            return 1;
        long v = *a->count; /* as add_under_lock */
        if (i % 16 == 0)
            sched_yield();
        *a->count = v + 1;
        if (mp_sem_release(a->sem) != 0)
            return 2;
    }
    return 0;
}

TEST(semaphore_as_mutex_exact_count)
{
    enum { PROCS = 4, N = 10000 };
    mp_sem *s = new_sem(1, true);
    volatile long *count = mp_arena_alloc(NULL, sizeof(long));
    sem_arg a = {s, count, N, NULL, 0, new_barrier(PROCS)};
    mp_process *ps[PROCS];
    for (int i = 0; i < PROCS; i++)
        ps[i] = mpt_start(add_under_sem, &a);
    for (int i = 0; i < PROCS; i++)
        CHECK_EQ(mpt_finish(ps[i]), 0);
    CHECK_EQ(*count, (long)PROCS * N);
    CHECK_EQ(mp_sem_value(s), 1);
    mp_arena_dealloc(NULL, (void *)count);
    mp_barrier_free(a.start);
    mp_sem_free(s);
}

static int release_many(void *arg)
{
    sem_arg *a = arg;
    int ok = 0;
    for (int i = 0; i < a->n; i++) {
        int rc = mp_sem_release(a->sem);
        if (rc == 0)
            ok++;
        else if (rc != MP_EOVERFLOW)
            return 1;
    }
    a->successes[a->idx] = ok;
    return 0;
}

TEST(bounded_semaphore_over_release_is_always_refused)
{
    mp_sem *s = new_sem(3, true);
    CHECK_EQ(mp_sem_value(s), 3);
    CHECK_ERR(mp_sem_release(s), MP_EOVERFLOW);
    CHECK_EQ(mp_sem_value(s), 3);
    CHECK_OK(mp_sem_acquire(s, 0));
    CHECK_OK(mp_sem_release(s));
    CHECK_ERR(mp_sem_release(s), MP_EOVERFLOW);

    /* Emptied, then four processes race 1000 releases each: exactly three
     * succeed, whatever the interleaving. */
    for (int i = 0; i < 3; i++)
        CHECK_OK(mp_sem_acquire(s, 0));
    enum { PROCS = 4 };
    int *succ = mp_arena_alloc(NULL, PROCS * sizeof(int));
    sem_arg a[PROCS];
    mp_process *ps[PROCS];
    for (int i = 0; i < PROCS; i++) {
        a[i] = (sem_arg){s, NULL, 1000, succ, i, NULL};
        ps[i] = mpt_start(release_many, &a[i]);
    }
    int total = 0;
    for (int i = 0; i < PROCS; i++) {
        CHECK_EQ(mpt_finish(ps[i]), 0);
        total += succ[i];
    }
    CHECK_EQ(total, 3);
    CHECK_EQ(mp_sem_value(s), 3);
    mp_arena_dealloc(NULL, succ);
    mp_sem_free(s);

    /* Bounded at 0: nothing may ever be released. */
    mp_sem z;
    CHECK_OK(mp_sem_init_bounded(&z, 0));
    CHECK_ERR(mp_sem_release(&z), MP_EOVERFLOW);
    CHECK_ERR(mp_sem_acquire(&z, 0), MP_ETIMEDOUT);
    CHECK_OK(mp_sem_destroy(&z));
}

typedef struct sem_wait_arg {
    mp_sem *sem;
    gate ready;
} sem_wait_arg;

static int sem_wait_child(void *arg)
{
    sem_wait_arg *w = arg;
    gate_open(&w->ready);
    return mp_sem_acquire(w->sem, 60.0) == 0 ? 0 : 1;
}

/* A release wakes a waiter asleep in the kernel.  The waiter's own limit
 * (60 s) is longer than the case's on purpose: waits re-check nothing in
 * tests (MPROC_TEST_NO_RECHECK), so a lost wake-up hangs the case until
 * its limit fails it. */
TEST_TIMEOUT(semaphore_release_wakes_a_sleeping_waiter, 20)
{
    mp_sem *s = new_sem(0, false);
    sem_wait_arg w = {.sem = s};
    gate_init(&w.ready);
    mp_process *p = mpt_start(sem_wait_child, &w);
    CHECK_EQ(gate_wait(&w.ready, 10.0), 0);
    CHECK(eventually(in_futex_wait, pid_arg(p), 10.0));
    CHECK_OK(mp_sem_release(s));
    CHECK_EQ(mpt_finish(p), 0);
    CHECK_EQ(mp_sem_value(s), 0);
    mp_sem_free(s);
    gate_close(&w.ready);
}

TEST(semaphore_waiter_killed_does_not_block_others)
{
    mp_sem *s = new_sem(0, false);
    sem_wait_arg w = {.sem = s};
    gate_init(&w.ready);
    mp_process *victim = mpt_start(sem_wait_child, &w);
    CHECK_EQ(gate_wait(&w.ready, 30.0), 0);
    mp_process *other = mpt_start(sem_wait_child, &w);
    CHECK_EQ(gate_wait(&w.ready, 30.0), 0);
    CHECK(eventually(in_futex_wait, pid_arg(victim), 30.0));
    CHECK(eventually(in_futex_wait, pid_arg(other), 30.0));
    CHECK_OK(mp_process_kill(victim));
    CHECK_EQ(mpt_finish(victim), -SIGKILL);
    /* The count still says two waiters; only a useless wake-up is lost. */
    CHECK_OK(mp_sem_release(s));
    CHECK_EQ(mpt_finish(other), 0);
    CHECK_EQ(mp_sem_value(s), 0);
    CHECK_OK(mp_sem_release(s));
    CHECK_OK(mp_sem_acquire(s, 0));
    mp_sem_free(s);
    gate_close(&w.ready);
}

/* ---- Event -------------------------------------------------------------------- */

TEST(event_basics_and_timeouts)
{
    mp_event *e = new_event();
    CHECK(e != NULL);
    CHECK(!mp_event_is_set(e));
    double t0 = mpt_now();
    CHECK_ERR(mp_event_wait(e, 0), MP_ETIMEDOUT);
    CHECK_ERR(mp_event_wait(e, 0.15), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.15);
    CHECK_OK(mp_event_set(e));
    CHECK_OK(mp_event_set(e));
    CHECK(mp_event_is_set(e));
    CHECK_OK(mp_event_wait(e, 0));
    CHECK_OK(mp_event_wait(e, MP_FOREVER));
    CHECK_OK(mp_event_clear(e));
    CHECK(!mp_event_is_set(e));
    mp_event_free(e);
    CHECK_ERR(mp_event_set(NULL), MP_EINVAL);
    CHECK_ERR(mp_event_clear(NULL), MP_EINVAL);
    CHECK(!mp_event_is_set(NULL));
    CHECK_ERR(mp_event_wait(NULL, 0), MP_EINVAL);
    CHECK_ERR(mp_event_init(NULL), MP_EINVAL);
    CHECK_ERR(mp_event_destroy(NULL), MP_EINVAL);
    CHECK_ERR(mp_event_new(NULL), MP_EINVAL);
    mp_event_free(NULL);
}

typedef struct event_arg {
    mp_event *e;
    gate ready;
} event_arg;

static int event_waiter(void *arg)
{
    event_arg *a = arg;
    gate_open(&a->ready);
    return mp_event_wait(a->e, 60.0) == 0 && mp_event_is_set(a->e) ? 0 : 1;
}

TEST(event_wakes_every_waiter_even_after_a_death)
{
    mp_event *e = new_event();
    event_arg a = {.e = e};
    gate_init(&a.ready);
    mp_process *ps[4];
    for (int i = 0; i < 4; i++) {
        ps[i] = mpt_start(event_waiter, &a);
        CHECK_EQ(gate_wait(&a.ready, 30.0), 0);
    }
    for (int i = 0; i < 4; i++)
        CHECK(eventually(in_futex_wait, pid_arg(ps[i]), 30.0));
    CHECK_OK(mp_process_kill(ps[0]));
    CHECK_EQ(mpt_finish(ps[0]), -SIGKILL);
    CHECK_OK(mp_event_set(e));
    for (int i = 1; i < 4; i++)
        CHECK_EQ(mpt_finish(ps[i]), 0);
    mp_event_free(e);
    gate_close(&a.ready);
}

TEST(waits_without_spinning)
{
    CHECK_EQ(mp_sync_set_spin(0), 100);
    mp_event *e = new_event();
    event_arg a = {.e = e};
    gate_init(&a.ready);
    mp_process *p = mpt_start(event_waiter, &a);
    CHECK_EQ(gate_wait(&a.ready, 30.0), 0);
    CHECK_OK(mp_event_set(e));
    CHECK_EQ(mpt_finish(p), 0);
    CHECK_EQ(mp_sync_set_spin(-1), 0);
    CHECK_EQ(mp_sync_set_spin(-1), 100);
    mp_event_free(e);
    gate_close(&a.ready);
}

/* ---- Condition ----------------------------------------------------------------- */

TEST(condition_requires_its_lock)
{
    mp_cond *c = new_cond(NULL);
    CHECK(c != NULL);
    mp_lock *l = mp_cond_get_lock(c);
    CHECK(l != NULL);
    CHECK(mp_lock_is_recursive(l));
    CHECK_ERR(mp_cond_wait(c, 0), MP_EPERM);
    CHECK_ERR(mp_cond_notify(c, 1), MP_EPERM);
    CHECK_ERR(mp_cond_notify_all(c), MP_EPERM);
    CHECK_OK(mp_cond_acquire(c, MP_FOREVER));
    CHECK_ERR(mp_cond_notify(c, 0), MP_EINVAL);
    CHECK_OK(mp_cond_notify(c, 1)); /* nobody waits: nothing to do */
    CHECK_OK(mp_cond_notify_all(c));
    double t0 = mpt_now();
    CHECK_ERR(mp_cond_wait(c, 0.15), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.15);
    CHECK_EQ(mp_lock_count(l), 1); /* held again on return */
    /* An RLock held twice is released fully by wait and restored. */
    CHECK_OK(mp_lock_acquire(l, 0));
    CHECK_ERR(mp_cond_wait(c, 0.01), MP_ETIMEDOUT);
    CHECK_EQ(mp_lock_count(l), 2);
    CHECK_OK(mp_cond_release(c));
    CHECK_ERR(mp_cond_destroy(c), MP_EBUSY);
    CHECK_OK(mp_cond_release(c));
    mp_cond_free(c);

    CHECK_ERR(mp_cond_wait(NULL, 0), MP_EINVAL);
    CHECK_ERR(mp_cond_notify(NULL, 1), MP_EINVAL);
    CHECK_ERR(mp_cond_notify_all(NULL), MP_EINVAL);
    CHECK_ERR(mp_cond_acquire(NULL, 0), MP_EINVAL);
    CHECK_ERR(mp_cond_release(NULL), MP_EINVAL);
    CHECK_ERR(mp_cond_init(NULL, NULL), MP_EINVAL);
    CHECK_ERR(mp_cond_destroy(NULL), MP_EINVAL);
    CHECK(mp_cond_get_lock(NULL) == NULL);
    mp_cond_free(NULL);
    mp_cond bad;
    mp_event notlock;
    CHECK_OK(mp_event_init(&notlock));
    CHECK_ERR(mp_cond_init(&bad, (mp_lock *)&notlock), MP_EINVAL);
    /* A lock outside the default arena cannot back mp_cond_new. */
    mp_lock outside;
    CHECK_OK(mp_lock_init(&outside));
    mp_cond *nc = mpt_not_null();
    CHECK_ERR(mp_cond_new(&outside, &nc), MP_EINVAL);
    CHECK(nc == NULL);
    nc = mpt_not_null();
    CHECK_ERR(mp_cond_new((mp_lock *)&notlock, &nc), MP_EINVAL);
    CHECK(nc == NULL);
    CHECK_ERR(mp_cond_new(NULL, NULL), MP_EINVAL);
    CHECK_OK(mp_lock_destroy(&outside));
}

/* A bounded buffer of ints in shared memory, with one Lock and two
 * conditions on it, as Python's queue does. */
typedef struct box {
    mp_lock lock;
    mp_cond not_empty, not_full;
    int items[8];
    int head, count;
    long consumed_sum;
    int consumed;
} box;

typedef struct box_arg {
    box *b;
    int from, n;
} box_arg;

static bool box_has_item(void *arg)
{
    return ((box *)arg)->count > 0;
}

static bool box_has_room(void *arg)
{
    return ((box *)arg)->count < 8;
}

static int producer(void *arg)
{
    box_arg *a = arg;
    box *b = a->b;
    for (int i = 0; i < a->n; i++) {
        if (mp_cond_acquire(&b->not_full, 30.0) != 0)
            return 1;
        if (mp_cond_wait_for(&b->not_full, box_has_room, b, 30.0) != 0)
            return 2;
        b->items[(b->head + b->count) % 8] = a->from + i;
        b->count++;
        mp_cond_notify(&b->not_empty, 1);
        mp_cond_release(&b->not_full);
    }
    return 0;
}

static int consumer(void *arg)
{
    box_arg *a = arg;
    box *b = a->b;
    for (int i = 0; i < a->n; i++) {
        if (mp_cond_acquire(&b->not_empty, 30.0) != 0)
            return 1;
        if (mp_cond_wait_for(&b->not_empty, box_has_item, b, 30.0) != 0)
            return 2;
        b->consumed_sum += b->items[b->head];
        b->consumed++;
        b->head = (b->head + 1) % 8;
        b->count--;
        mp_cond_notify(&b->not_full, 1);
        mp_cond_release(&b->not_empty);
    }
    return 0;
}

TEST(condition_producers_and_consumers)
{
    box *b = mp_arena_alloc(NULL, sizeof *b);
    CHECK_OK(mp_lock_init(&b->lock));
    CHECK_OK(mp_cond_init(&b->not_empty, &b->lock));
    CHECK_OK(mp_cond_init(&b->not_full, &b->lock));
    CHECK(mp_cond_get_lock(&b->not_empty) == &b->lock);
    enum { N = 3000 };
    box_arg pa = {b, 1, N}, pb = {b, N + 1, N}, ca = {b, 0, N}, cb = {b, 0, N};
    mp_process *ps[4] = {mpt_start(producer, &pa), mpt_start(producer, &pb),
                         mpt_start(consumer, &ca), mpt_start(consumer, &cb)};
    for (int i = 0; i < 4; i++)
        CHECK_EQ(mpt_finish(ps[i]), 0);
    /* Every item 1 .. 2N consumed exactly once. */
    CHECK_EQ(b->consumed, 2 * N);
    CHECK_EQ(b->consumed_sum, (long)(2 * N) * (2 * N + 1) / 2);
    CHECK_EQ(b->count, 0);
    CHECK_OK(mp_cond_destroy(&b->not_empty));
    CHECK_OK(mp_cond_destroy(&b->not_full));
    CHECK_OK(mp_lock_destroy(&b->lock));
    mp_arena_dealloc(NULL, b);
}

/* Waiters of notify_n_wakes_at_least_n: each takes the lock, says it is
 * ready, waits, and once woken counts itself and says so on a pipe. */
typedef struct notify_arg {
    mp_cond *c;
    volatile int *woken;
    gate ready, done;
} notify_arg;

static int wait_to_be_notified(void *arg)
{
    notify_arg *a = arg;
    if (mp_cond_acquire(a->c, 30.0) != 0)
        return 1;
    gate_open(&a->ready);
    int rc = mp_cond_wait(a->c, 60.0);
    (*a->woken)++;
    mp_cond_release(a->c);
    gate_open(&a->done);
    return rc == 0 ? 0 : 2;
}

/* sync.h, Condition: "notify(n) wakes at least min(n, sleepers) waiters":
 * with four asleep, notify(2) lets two through, notify(1) a third,
 * notify_all the last. */
TEST(condition_notify_n_wakes_at_least_n)
{
    enum { W = 4 };
    mp_cond *c = new_cond(NULL);
    volatile int *woken = mp_arena_alloc(NULL, sizeof(int));
    notify_arg a = {.c = c, .woken = woken};
    gate_init(&a.ready);
    gate_init(&a.done);
    mp_process *ps[W];
    for (int i = 0; i < W; i++) {
        ps[i] = mpt_start(wait_to_be_notified, &a);
        CHECK_OK(gate_wait(&a.ready, 30.0));
    }
    for (int i = 0; i < W; i++)
        CHECK(eventually(in_futex_wait, pid_arg(ps[i]), 30.0));
    const int n[] = {2, 1};
    int expect = 0;
    for (int k = 0; k < 2; k++) {
        CHECK_OK(mp_cond_acquire(c, 30.0));
        CHECK_ERR(mp_cond_notify(c, 0), MP_EINVAL);
        CHECK_OK(mp_cond_notify(c, n[k]));
        CHECK_OK(mp_cond_release(c));
        expect += n[k];
        for (int i = 0; i < n[k]; i++)
            CHECK_OK(gate_wait(&a.done, 30.0));
        CHECK_OK(mp_cond_acquire(c, 30.0));
        CHECK_GE(*woken, expect);
        CHECK_OK(mp_cond_release(c));
    }
    CHECK_OK(mp_cond_acquire(c, 30.0));
    CHECK_OK(mp_cond_notify_all(c));
    CHECK_OK(mp_cond_release(c));
    for (int i = 0; i < W; i++)
        CHECK_EQ(mpt_finish(ps[i]), 0);
    CHECK_EQ(*woken, W);
    mp_arena_dealloc(NULL, (void *)woken);
    mp_cond_free(c);
    gate_close(&a.ready);
    gate_close(&a.done);
}

typedef struct flag_arg {
    mp_cond *c;
    volatile int *flag;
    int *ready;
    gate sp;
} flag_arg;

static bool flag_is_set(void *arg)
{
    return *(volatile int *)arg != 0;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static int set_flag_and_notify(void *arg)
{
    flag_arg *a = arg;
    if (gate_wait(&a->sp, 30.0) != 0 || mp_cond_acquire(a->c, 30.0) != 0)
        return 1;
    *a->flag = 1;
    mp_cond_notify_all(a->c);
    mp_cond_release(a->c);
    return 0;
}

TEST(condition_wait_for_a_predicate)
{
    mp_cond *c = new_cond(NULL);
    volatile int *flag = mp_arena_alloc(NULL, sizeof(int));
    CHECK_OK(mp_cond_acquire(c, 0));
    /* Already true: at once, even with no time. */
    *flag = 1;
    CHECK_OK(mp_cond_wait_for(c, flag_is_set, (void *)flag, 0));
    *flag = 0;
    double t0 = mpt_now();
    CHECK_ERR(mp_cond_wait_for(c, never, NULL, 0.15), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.15);
    CHECK_ERR(mp_cond_wait_for(c, NULL, NULL, 0), MP_EINVAL);
    CHECK_EQ(mp_lock_count(mp_cond_get_lock(c)), 1);
    CHECK_OK(mp_cond_release(c));
    CHECK_ERR(mp_cond_wait_for(c, never, NULL, 0), MP_EPERM);

    /* Made true by another process while this one waits. */
    flag_arg a = {c, flag, NULL, {0, 0}};
    gate_init(&a.sp);
    mp_process *p = mpt_start(set_flag_and_notify, &a);
    CHECK_OK(mp_cond_acquire(c, 30.0));
    gate_open(&a.sp); /* the child needs the lock, which wait_for gives up */
    CHECK_OK(mp_cond_wait_for(c, flag_is_set, (void *)flag, 30.0));
    CHECK_EQ(*flag, 1);
    CHECK_OK(mp_cond_release(c));
    CHECK_EQ(mpt_finish(p), 0);
    mp_arena_dealloc(NULL, (void *)flag);
    mp_cond_free(c);
    gate_close(&a.sp);
}

/* Waiters count themselves in under the lock, then wait; once the test
 * holds the lock and sees them all counted, all are waiting. */
typedef struct gather {
    mp_cond *c;
    mp_cond *all_in; /* same lock: tells the test the count changed */
    int *ready;
    int *go;
} gather;

static bool go_set(void *arg)
{
    return *(volatile int *)arg != 0;
}

static int gather_waiter(void *arg)
{
    gather *g = arg;
    if (mp_cond_acquire(g->c, 30.0) != 0)
        return 1;
    (*g->ready)++;
    mp_cond_notify_all(g->all_in);
    int rc = mp_cond_wait_for(g->c, go_set, g->go, 60.0);
    mp_cond_release(g->c);
    return rc == 0 ? 0 : 2;
}

static bool ready_is_3(void *arg)
{
    return *(volatile int *)arg == 3;
}

TEST(condition_waiter_killed_leaves_no_trace)
{
    mp_lock *l = new_lock();
    gather g = {new_cond(l), new_cond(l), mp_arena_alloc(NULL, sizeof(int)),
                mp_arena_alloc(NULL, sizeof(int))};
    mp_process *ps[3];
    for (int i = 0; i < 3; i++)
        ps[i] = mpt_start(gather_waiter, &g);
    CHECK_OK(mp_cond_acquire(g.all_in, 30.0));
    CHECK_OK(mp_cond_wait_for(g.all_in, ready_is_3, g.ready, 30.0));
    CHECK_OK(mp_cond_release(g.all_in));
    /* All three wait.  One is killed; a notify for one must reach a live
     * waiter, and then a notify_all the last one.  (Python's Condition
     * would block the notify on the dead waiter's acknowledgement.) */
    CHECK_OK(mp_process_kill(ps[0]));
    CHECK_EQ(mpt_finish(ps[0]), -SIGKILL);
    CHECK_OK(mp_lock_acquire(l, 30.0));
    *g.go = 1;
    CHECK_OK(mp_cond_notify(g.c, 1));
    CHECK_OK(mp_lock_release(l));
    /* Exactly which one woke is not known; notify the other too. */
    CHECK_OK(mp_lock_acquire(l, 30.0));
    CHECK_OK(mp_cond_notify(g.c, 1));
    CHECK_OK(mp_lock_release(l));
    CHECK_EQ(mpt_finish(ps[1]), 0);
    CHECK_EQ(mpt_finish(ps[2]), 0);
    mp_cond_free(g.c);
    mp_cond_free(g.all_in);
    mp_lock_free(l);
    mp_arena_dealloc(NULL, g.ready);
    mp_arena_dealloc(NULL, g.go);
}

typedef struct reacq_arg {
    mp_cond *c;
    int *waiting;
    gate dying;
} reacq_arg;

static bool is_one(void *arg)
{
    return *(volatile int *)arg == 1;
}

static int cond_waiter_expect_dead_lock(void *arg)
{
    reacq_arg *a = arg;
    if (mp_cond_acquire(a->c, 30.0) != 0)
        return 1;
    *a->waiting = 1;
    int rc = mp_cond_wait(a->c, 60.0);
    if (rc != MP_EOWNERDEAD)
        return 10 + (rc == 0 ? 0 : 1);
    if (mp_lock_count(mp_cond_get_lock(a->c)) != 1)
        return 3;
    mp_lock_consistent(mp_cond_get_lock(a->c));
    mp_cond_release(a->c);
    return 0;
}

static int notify_and_die(void *arg)
{
    reacq_arg *a = arg;
    if (mp_cond_acquire(a->c, 30.0) != 0)
        return 1;
    mp_cond_notify(a->c, 1);
    _exit(0); /* holding the lock the waiter needs back */
}

TEST(condition_waiter_gets_the_lock_of_a_dead_notifier)
{
    reacq_arg a = {new_cond(NULL), mp_arena_alloc(NULL, sizeof(int)), {0, 0}};
    mp_process *w = mpt_start(cond_waiter_expect_dead_lock, &a);
    /* Once the flag is set under the lock and the lock is free again, the
     * waiter is inside wait. */
    for (double end = mpt_now() + 30.0; mpt_now() < end;) {
        CHECK_OK(mp_cond_acquire(a.c, 30.0));
        bool in = is_one(a.waiting);
        CHECK_OK(mp_cond_release(a.c));
        if (in)
            break;
        sched_yield();
    }
    CHECK_EQ(mpt_finish(mpt_start(notify_and_die, &a)), 0);
    CHECK_EQ(mpt_finish(w), 0);
    CHECK_OK(mp_cond_acquire(a.c, 10.0));
    CHECK_OK(mp_cond_release(a.c));
    mp_cond_free(a.c);
    mp_arena_dealloc(NULL, a.waiting);
}

/* ---- Barrier --------------------------------------------------------------------- */

typedef struct barrier_arg {
    mp_barrier *b;
    int rounds;
    int *seen; /* rounds x parties slots: which index each arrival got */
    int parties;
} barrier_arg;

static int barrier_rounds(void *arg)
{
    barrier_arg *a = arg;
    for (int r = 0; r < a->rounds; r++) {
        int idx = mp_barrier_wait(a->b, 30.0);
        if (idx < 0 || idx >= a->parties)
            return 1;
        __atomic_fetch_add(&a->seen[r * a->parties + idx], 1, __ATOMIC_SEQ_CST);
    }
    return 0;
}

TEST(barrier_gives_each_party_its_index)
{
    enum { PARTIES = 3, ROUNDS = 200 };
    barrier_arg a = {new_barrier(PARTIES), ROUNDS,
                     mp_arena_alloc(NULL, ROUNDS * PARTIES * sizeof(int)), PARTIES};
    CHECK_EQ(mp_barrier_parties(a.b), PARTIES);
    CHECK_EQ(mp_barrier_n_waiting(a.b), 0);
    CHECK(!mp_barrier_broken(a.b));
    mp_process *ps[2] = {mpt_start(barrier_rounds, &a), mpt_start(barrier_rounds, &a)};
    CHECK_EQ(barrier_rounds(&a), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(mpt_finish(ps[i]), 0);
    /* In every round the three parties got 0, 1 and 2, once each. */
    for (int r = 0; r < ROUNDS; r++)
        for (int i = 0; i < PARTIES; i++)
            CHECK_EQ(a.seen[r * PARTIES + i], 1);
    mp_arena_dealloc(NULL, a.seen);
    mp_barrier_free(a.b);

    mp_barrier *one = new_barrier(1);
    CHECK_EQ(mp_barrier_wait(one, 0), 0);
    CHECK_EQ(mp_barrier_wait(one, 0), 0);
    mp_barrier_free(one);
    mp_barrier *nob = mpt_not_null();
    CHECK_ERR(mp_barrier_new(0, &nob), MP_EINVAL);
    CHECK(nob == NULL);
    nob = mpt_not_null();
    CHECK_ERR(mp_barrier_new(MP_SEM_VALUE_MAX + 1u, &nob), MP_EINVAL);
    CHECK(nob == NULL);
    CHECK_ERR(mp_barrier_new(2, NULL), MP_EINVAL);
    mp_barrier bad;
    CHECK_ERR(mp_barrier_init(&bad, 0), MP_EINVAL);
    CHECK_ERR(mp_barrier_init(NULL, 2), MP_EINVAL);
    CHECK_ERR(mp_barrier_wait(NULL, 0), MP_EINVAL);
    CHECK_ERR(mp_barrier_abort(NULL), MP_EINVAL);
    CHECK_ERR(mp_barrier_reset(NULL), MP_EINVAL);
    CHECK_ERR(mp_barrier_parties(NULL), MP_EINVAL);
    CHECK_ERR(mp_barrier_n_waiting(NULL), MP_EINVAL);
    CHECK(!mp_barrier_broken(NULL));
    CHECK_ERR(mp_barrier_destroy(NULL), MP_EINVAL);
    mp_barrier_free(NULL);
}

typedef struct bwait_arg {
    mp_barrier *b;
    gate ready;
    int expect;
} bwait_arg;

static int barrier_wait_expect(void *arg)
{
    bwait_arg *a = arg;
    gate_open(&a->ready);
    int rc = mp_barrier_wait(a->b, 60.0);
    if (a->expect == 0)
        return rc >= 0 ? 0 : 1;
    return rc == a->expect ? 0 : 2;
}

static bool one_waiting(void *arg)
{
    return mp_barrier_n_waiting(arg) == 1;
}

TEST(barrier_timeout_breaks_it_until_reset)
{
    mp_barrier *b = new_barrier(2);
    bwait_arg a = {.b = b, .expect = MP_EBROKEN};
    gate_init(&a.ready);
    mp_process *p = mpt_start(barrier_wait_expect, &a);
    CHECK_EQ(gate_wait(&a.ready, 30.0), 0);
    CHECK(eventually(one_waiting, b, 30.0));
    /* A party alone times out, and breaks its barrier. */
    mp_barrier *lonely = new_barrier(2);
    double t0 = mpt_now();
    CHECK_ERR(mp_barrier_wait(lonely, 0.15), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.15);
    CHECK(mp_barrier_broken(lonely));
    CHECK_ERR(mp_barrier_wait(lonely, 0), MP_EBROKEN);
    CHECK_OK(mp_barrier_reset(lonely));
    CHECK(!mp_barrier_broken(lonely));
    CHECK_ERR(mp_barrier_wait(lonely, 0), MP_ETIMEDOUT);
    mp_barrier_free(lonely);

    /* The waiting child is broken by abort, and so is everyone after. */
    CHECK_OK(mp_barrier_abort(b));
    CHECK_EQ(mpt_finish(p), 0);
    CHECK(mp_barrier_broken(b));
    CHECK_EQ(mp_barrier_n_waiting(b), 0);
    CHECK_ERR(mp_barrier_wait(b, 0), MP_EBROKEN);
    CHECK_ERR(mp_barrier_wait(b, MP_FOREVER), MP_EBROKEN);
    CHECK_OK(mp_barrier_reset(b));
    /* Usable again. */
    a.expect = 0;
    p = mpt_start(barrier_wait_expect, &a);
    CHECK(mp_barrier_wait(b, 30.0) >= 0);
    CHECK_EQ(mpt_finish(p), 0);
    mp_barrier_free(b);
    gate_close(&a.ready);
}

static int barrier_index(void *arg)
{
    int rc = mp_barrier_wait(arg, 60.0);
    return rc < 0 ? 100 : rc;
}

static bool n_arrived(mp_barrier *b, int n)
{
    double end = mpt_now() + 30;
    while (mp_barrier_n_waiting(b) != n && mpt_now() < end)
        sched_yield();
    return mp_barrier_n_waiting(b) == n;
}

/* sync.h, Barrier: "wait returns each an index, 0 .. parties-1, in the
 * order they arrived". */
TEST(barrier_indexes_follow_the_order_of_arrival)
{
    enum { PARTIES = 4 };
    mp_barrier *b = new_barrier(PARTIES);
    mp_process *ps[PARTIES - 1];
    for (int i = 0; i < PARTIES - 1; i++) {
        ps[i] = mpt_start(barrier_index, b);
        CHECK(n_arrived(b, i + 1)); /* it arrived before the next starts */
    }
    CHECK_EQ(mp_barrier_wait(b, 30.0), PARTIES - 1);
    for (int i = 0; i < PARTIES - 1; i++)
        CHECK_EQ(mpt_finish(ps[i]), i);
    mp_barrier_free(b);
}

/* sync.h, Barrier: "A wait that times out breaks it too (the caller gets
 * MP_ETIMEDOUT, the others MP_EBROKEN)" - the others already waiting, and
 * those who come after, until reset. */
TEST(a_timed_out_wait_breaks_the_barrier_for_the_others)
{
    mp_barrier *b = new_barrier(3);
    bwait_arg a = {.b = b, .expect = MP_EBROKEN};
    gate_init(&a.ready);
    mp_process *p = mpt_start(barrier_wait_expect, &a);
    CHECK_EQ(gate_wait(&a.ready, 30.0), 0);
    CHECK(n_arrived(b, 1));
    CHECK_ERR(mp_barrier_wait(b, 0.1), MP_ETIMEDOUT);
    CHECK_EQ(mpt_finish(p), 0); /* it got MP_EBROKEN */
    CHECK(mp_barrier_broken(b));
    CHECK_ERR(mp_barrier_wait(b, 30.0), MP_EBROKEN);
    CHECK_OK(mp_barrier_reset(b));
    CHECK(!mp_barrier_broken(b));
    mp_barrier_free(b);
    gate_close(&a.ready);
}

TEST(barrier_reset_breaks_present_waiters)
{
    mp_barrier *b = new_barrier(3);
    bwait_arg a = {.b = b, .expect = MP_EBROKEN};
    gate_init(&a.ready);
    mp_process *p = mpt_start(barrier_wait_expect, &a);
    CHECK_EQ(gate_wait(&a.ready, 30.0), 0);
    CHECK(eventually(one_waiting, b, 30.0));
    CHECK_OK(mp_barrier_reset(b));
    CHECK_EQ(mpt_finish(p), 0);
    CHECK(!mp_barrier_broken(b));
    CHECK_EQ(mp_barrier_n_waiting(b), 0);
    mp_barrier_free(b);
    gate_close(&a.ready);
}

TEST(barrier_party_killed_while_waiting_has_arrived)
{
    mp_barrier *b = new_barrier(3);
    bwait_arg a = {.b = b, .expect = 0};
    gate_init(&a.ready);
    mp_process *victim = mpt_start(barrier_wait_expect, &a);
    CHECK_EQ(gate_wait(&a.ready, 30.0), 0);
    CHECK(eventually(one_waiting, b, 30.0));
    CHECK_OK(mp_process_kill(victim));
    CHECK_EQ(mpt_finish(victim), -SIGKILL);
    /* The dead party counted: two more arrivals trip the barrier. */
    mp_process *other = mpt_start(barrier_wait_expect, &a);
    int idx = mp_barrier_wait(b, 30.0);
    CHECK(idx == 1 || idx == 2);
    CHECK_EQ(mpt_finish(other), 0);
    CHECK(!mp_barrier_broken(b));
    CHECK_EQ(mp_barrier_n_waiting(b), 0);
    mp_barrier_free(b);
    gate_close(&a.ready);
}

static int die_inside_barrier_lock(void *arg)
{
    /* A process that dies inside the barrier's own critical section - the
     * worst moment there is - simulated by taking its internal mutex. */
    mp__mutex_lock(mp__barrier_mutex(arg), MP__NO_DEADLINE);
    _exit(0);
}

TEST(barrier_death_inside_its_lock_breaks_it)
{
    mp_barrier *b = new_barrier(2);
    CHECK_EQ(mpt_finish(mpt_start(die_inside_barrier_lock, b)), 0);
    CHECK_ERR(mp_barrier_wait(b, 1.0), MP_EBROKEN);
    CHECK(mp_barrier_broken(b));
    CHECK_OK(mp_barrier_reset(b));
    bwait_arg a = {.b = b, .expect = 0};
    gate_init(&a.ready);
    mp_process *p = mpt_start(barrier_wait_expect, &a);
    CHECK(mp_barrier_wait(b, 30.0) >= 0);
    CHECK_EQ(mpt_finish(p), 0);
    mp_barrier_free(b);
    gate_close(&a.ready);
}

/* ---- placement ----------------------------------------------------------------------- */

/* Objects embedded in a struct of the caller's, in a named segment mapped
 * at different addresses in different processes. */
typedef struct embedded {
    mp_lock lock;
    mp_sem sem;
    mp_event ev;
    mp_cond cond;
    mp_barrier bar;
    long total;
} embedded;

typedef struct seg_arg {
    char name[128];
} seg_arg;

static int use_segment(void *arg)
{
    seg_arg *a = arg;
    mp_shm *s;
    if (mp_shm_attach(a->name, &s) != 0)
        return 1;
    /* A second mapping, so the objects sit at another address here. */
    embedded *e = mp_shm_addr(s);
    for (int i = 0; i < 1000; i++) {
        if (mp_lock_acquire(&e->lock, 30.0) != 0)
            return 2;
        e->total++;
        mp_lock_release(&e->lock);
    }
    int rc = mp_sem_release(&e->sem) == 0 && mp_barrier_wait(&e->bar, 30.0) >= 0 &&
                     mp_event_wait(&e->ev, 30.0) == 0
                 ? 0
                 : 3;
    mp_shm_free(s);
    return rc;
}

TEST(objects_work_in_a_named_segment)
{
    seg_arg a;
    mpt_name(a.name, sizeof a.name, "sync");
    mp_shm *s;
    CHECK_OK(mp_shm_create(a.name, sizeof(embedded), &s));
    embedded *e = mp_shm_addr(s);
    CHECK_OK(mp_lock_init(&e->lock));
    CHECK_OK(mp_sem_init(&e->sem, 0));
    CHECK_OK(mp_event_init(&e->ev));
    CHECK_OK(mp_cond_init(&e->cond, &e->lock));
    CHECK_OK(mp_barrier_init(&e->bar, 3));
    mp_process *ps[2] = {mpt_start(use_segment, &a), mpt_start(use_segment, &a)};
    CHECK_OK(mp_sem_acquire(&e->sem, 30.0));
    CHECK_OK(mp_sem_acquire(&e->sem, 30.0));
    CHECK(mp_barrier_wait(&e->bar, 30.0) >= 0);
    CHECK_OK(mp_event_set(&e->ev));
    for (int i = 0; i < 2; i++)
        CHECK_EQ(mpt_finish(ps[i]), 0);
    CHECK_EQ(e->total, 2000);
    CHECK_OK(mp_cond_destroy(&e->cond));
    CHECK_OK(mp_lock_destroy(&e->lock));
    CHECK_OK(mp_sem_destroy(&e->sem));
    CHECK_OK(mp_event_destroy(&e->ev));
    CHECK_OK(mp_barrier_destroy(&e->bar));
    CHECK_OK(mp_shm_unlink(s));
    mp_shm_free(s);
}

TEST(new_and_free_return_their_memory)
{
    mp_arena *a = mp_arena_default();
    CHECK(a != NULL);
    size_t before;
    CHECK_OK(mp_arena_usage(a, &before, NULL));
    for (int round = 0; round < 3; round++) {
        mp_lock *l = new_lock();
        mp_rlock *r = new_rlock();
        mp_sem *s = new_sem(1, false);
        mp_sem *bs = new_sem(1, true);
        mp_event *e = new_event();
        mp_cond *c = new_cond(l);
        mp_barrier *b = new_barrier(2);
        CHECK(l && r && s && bs && e && c && b);
        mp_cond_free(c);
        mp_lock_free(l);
        mp_lock_free(r);
        mp_sem_free(s);
        mp_sem_free(bs);
        mp_event_free(e);
        mp_barrier_free(b);
    }
    size_t after;
    CHECK_OK(mp_arena_usage(a, &after, NULL));
    CHECK_EQ(after, before);
}

/* A default arena with no room left: every constructor says MP_ENOMEM and
 * leaves *out NULL; freeing makes room again. */
TEST(constructors_report_a_full_arena)
{
    enum { MAX = 4096 };
    CHECK_OK(mp_arena_set_default_size(64 << 10));
    static mp_event *ev[MAX];
    int n = 0, rc;
    while (n < MAX && (rc = mp_event_new(&ev[n])) == 0)
        n++;
    CHECK(n > 0 && n < MAX);
    CHECK_ERR(rc, MP_ENOMEM);
    CHECK(ev[n] == NULL);
    mp_lock *l = mpt_not_null();
    CHECK_ERR(mp_lock_new(&l), MP_ENOMEM);
    CHECK(l == NULL);
    l = mpt_not_null();
    CHECK_ERR(mp_rlock_new(&l), MP_ENOMEM);
    CHECK(l == NULL);
    mp_sem *sem = mpt_not_null();
    CHECK_ERR(mp_sem_new(1, &sem), MP_ENOMEM);
    CHECK(sem == NULL);
    sem = mpt_not_null();
    CHECK_ERR(mp_sem_new_bounded(1, &sem), MP_ENOMEM);
    CHECK(sem == NULL);
    mp_cond *c = mpt_not_null();
    CHECK_ERR(mp_cond_new(NULL, &c), MP_ENOMEM);
    CHECK(c == NULL);
    mp_barrier *b = mpt_not_null();
    CHECK_ERR(mp_barrier_new(2, &b), MP_ENOMEM);
    CHECK(b == NULL);
    for (int i = 0; i < n; i++)
        mp_event_free(ev[i]);
    CHECK_OK(mp_lock_new(&l));
    mp_lock_free(l);
}

MPT_MAIN()
