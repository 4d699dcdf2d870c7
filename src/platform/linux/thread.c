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
#include "mproc/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/single_threaded.h>
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

typedef struct start {
    void *(*fn)(void *);
    void *arg;
    char name[16];
} start;

/* Names the thread from inside too: it may run before its creator's
 * pthread_setname_np() lands, and must see its own name from its first
 * instruction. */
static void *trampoline(void *p)
{
    start st = *(start *)p;
    free(p);
    (void)mp__thread_set_name(st.name);
    return st.fn(st.arg);
}

int mp__thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg)
{
    start *st = malloc(sizeof *st);
    if (!st)
        return MP_ENOMEM;
    st->fn = fn;
    st->arg = arg;
    snprintf(st->name, sizeof st->name, "%s", name);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, trampoline, st);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        free(st);
        return -rc;
    }
    /* And from outside, before this returns: a name the thread gives
     * itself could come a moment after someone counted it. */
    (void)pthread_setname_np(*t, name);
    return 0;
}

int mp__thread_get_name(char *buf, size_t cap)
{
    char name[16]; /* PR_GET_NAME writes up to 16 bytes */
    if (cap == 0)
        return MP_EINVAL;
    if (prctl(PR_GET_NAME, name, 0, 0, 0) != 0) {
        buf[0] = '\0';
        return -errno;
    }
    name[15] = '\0';
    snprintf(buf, cap, "%s", name);
    return 0;
}

/* Whether the thread tid of this process has a name starting with prefix;
 * false when it cannot be read (it may have ended meanwhile). */
static bool task_named(const char *tid, const char *prefix)
{
    char path[300], name[32];
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n;
    do {
        n = read(fd, name, sizeof name - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return false;
    name[n] = '\0';
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

int mp__threads_count(const char *prefix, int *total, int *named, bool *self_named)
{
    *total = 1;
    *named = 0;
    *self_named = false;
    /* glibc clears this flag when the process creates its first thread
     * (and never sets it again): while it is set, there is nothing to
     * count, nor a name to read. */
    if (__libc_single_threaded)
        return 0;
    char self[16];
    *self_named =
        mp__thread_get_name(self, sizeof self) == 0 && strncmp(self, prefix, strlen(prefix)) == 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -errno;
    int n = 0, k = 0;
    char me[16];
    snprintf(me, sizeof me, "%d", (int)mp__gettid());
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        n++;
        if (strcmp(e->d_name, me) == 0 ? *self_named : task_named(e->d_name, prefix))
            k++;
    }
    closedir(d);
    *total = n > 0 ? n : 1;
    *named = k;
    return 0;
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
