/*
 * thread.c - the calling thread's and process's ids, cached, thread names,
 * and the spin budget of the waits.
 *
 * Locks ask "do I hold this?" on every recursive acquisition, condition
 * wait and notify, and the answer needs the caller's thread id.  gettid()
 * and getpid() are system calls (glibc caches neither any more), about
 * 150 ns each on a virtual machine with speculation mitigations: more than
 * a whole uncontended lock.  So both are cached, the tid per thread and
 * the pid per process.
 *
 * After fork the child's only thread is the one that forked, with that
 * thread's thread-local storage: its cached tid is the parent's.  A
 * pthread_atfork child handler clears both caches.  It is registered the
 * first time a cache is filled, so there is never a filled cache without
 * the handler.  A process made by a raw clone() or _Fork(), which skip the
 * handlers, must not use mproc's locks before it execs.
 */
#define _GNU_SOURCE
#include "../platform.h"

#include <errno.h>

#include <sys/prctl.h>
#include <unistd.h>

static _Thread_local pid_t tid_cache __attribute__((tls_model("initial-exec")));
static _Atomic pid_t pid_cache;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void ids_atfork_child(void)
{
    tid_cache = 0;
    atomic_store_explicit(&pid_cache, 0, memory_order_relaxed);
}

static void ids_register(void)
{
    pthread_atfork(NULL, NULL, ids_atfork_child);
}

pid_t mp__self_tid(void)
{
    pid_t t = tid_cache;
    if (t == 0) {
        pthread_once(&atfork_once, ids_register);
        t = tid_cache = mp__gettid();
    }
    return t;
}

pid_t mp__self_pid(void)
{
    pid_t p = atomic_load_explicit(&pid_cache, memory_order_relaxed);
    if (p == 0) {
        pthread_once(&atfork_once, ids_register);
        p = getpid();
        atomic_store_explicit(&pid_cache, p, memory_order_relaxed);
    }
    return p;
}

/* ---- names -------------------------------------------------------------- */

int mp__thread_set_name(const char *name)
{
    /* The kernel keeps 15 bytes and a NUL, and truncates a longer name
     * itself.  PR_SET_NAME names the calling thread only (unlike
     * pthread_setname_np, it needs no handle and cannot fail on length). */
    return prctl(PR_SET_NAME, name, 0, 0, 0) == 0 ? 0 : -errno;
}

/* ---- spinning ----------------------------------------------------------- */

/* About 100 polls, each followed by a pause of 20 to 40 ns on current x86
 * cores: 2-4 microseconds, a little less than what sleeping and being woken
 * costs (5-7 us through the kernel).  A wait that is about to be satisfied
 * - a lock held for a few instructions, an event set right away - ends
 * without a system call; a long wait loses at most that much CPU time. */
#define SPIN_DEFAULT 100

static _Atomic int spin_budget = SPIN_DEFAULT;

int mp__spin_get(void)
{
    return atomic_load_explicit(&spin_budget, memory_order_relaxed);
}

int mp__spin_set(int polls)
{
    if (polls < 0)
        polls = SPIN_DEFAULT;
    return atomic_exchange_explicit(&spin_budget, polls, memory_order_relaxed);
}
