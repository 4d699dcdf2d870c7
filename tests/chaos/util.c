/*
 * util.c - what every round uses: the PRNG, the tally, shared memory,
 * signals as faults, bounded waits on processes, and children that run
 * under a resource limit.
 */
#include "chaos.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

chaos_tally *chaos_t;
char chaos_dir[256];
pid_t chaos_driver;

uint64_t chaos_next(chaos_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

unsigned chaos_below(chaos_rng *r, unsigned n)
{
    return n ? (unsigned)(chaos_next(r) % n) : 0;
}

/* The tally is shared with the round's children too (they are forks of
 * the round), so counters are bumped atomically. */
void chaos_fault(enum chaos_fault kind)
{
    __atomic_fetch_add(&chaos_t->faults[kind], 1, __ATOMIC_RELAXED);
}

void chaos_expose(void)
{
    __atomic_fetch_add(&chaos_t->exposed, 1, __ATOMIC_RELAXED);
}

void chaos_reported(void)
{
    __atomic_fetch_add(&chaos_t->reported, 1, __ATOMIC_RELAXED);
}

__attribute__((format(printf, 1, 0))) static void note(const char *fmt, va_list ap)
{
    if (chaos_t->note[0] == '\0')
        vsnprintf(chaos_t->note, sizeof chaos_t->note, fmt, ap);
}

void chaos_fail(const char *fmt, ...)
{
    va_list ap;
    __atomic_fetch_add(&chaos_t->failed, 1, __ATOMIC_RELAXED);
    va_start(ap, fmt);
    note(fmt, ap);
    va_end(ap);
}

void chaos_finding(const char *fmt, ...)
{
    va_list ap;
    __atomic_fetch_add(&chaos_t->findings, 1, __ATOMIC_RELAXED);
    va_start(ap, fmt);
    note(fmt, ap);
    va_end(ap);
}

bool chaos_bug_on(const char *name)
{
    const char *on = getenv("CHAOS_KNOWN_BUGS");
    size_t len = strlen(name);
    if (on && strcmp(on, "all") == 0)
        return true;
    for (const char *p = on ? strstr(on, name) : NULL; p; p = strstr(p + 1, name))
        if ((p == on || p[-1] == ',') && (p[len] == '\0' || p[len] == ','))
            return true;
    return false;
}

bool chaos_bug_enabled(const char *name)
{
    if (chaos_bug_on(name))
        return true;
    chaos_skip("%s: off (a known bug; CHAOS_KNOWN_BUGS=%s turns it on)", name, name);
    return false;
}

void chaos_skip(const char *fmt, ...)
{
    va_list ap;
    __atomic_fetch_add(&chaos_t->skipped, 1, __ATOMIC_RELAXED);
    va_start(ap, fmt);
    note(fmt, ap);
    va_end(ap);
}

void *chaos_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("chaos: mmap");
        exit(3);
    }
    return p;
}

void chaos_unshare(void *p, size_t size)
{
    munmap(p, size);
}

double chaos_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sleeps are the faults' random timing here, never synchronisation. */
void chaos_sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

enum chaos_fault chaos_signal_kind(chaos_rng *r)
{
    static const enum chaos_fault k[] = {CHAOS_F_SIGKILL, CHAOS_F_SIGSEGV, CHAOS_F_STOPKILL};
    return k[chaos_below(r, 3)];
}

int chaos_signal_code(enum chaos_fault kind)
{
    return kind == CHAOS_F_SIGSEGV ? -SIGSEGV : -SIGKILL;
}

void chaos_signal(pid_t pid, enum chaos_fault kind, chaos_rng *r)
{
    chaos_fault(kind);
    if (kind == CHAOS_F_SIGSEGV) {
        kill(pid, SIGSEGV);
        return;
    }
    if (kind == CHAOS_F_STOPKILL) {
        /* Stopped, a process holds whatever it held: its peers must time
         * out or be told, never wait forever. */
        kill(pid, SIGSTOP);
        chaos_sleep_us(1000 + chaos_below(r, 20000));
    }
    kill(pid, SIGKILL);
}

bool chaos_wait_gone(pid_t pid, double timeout)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return errno == ESRCH;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    double end = chaos_now() + timeout;
    int n;
    do {
        double left = end - chaos_now();
        n = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
    } while (n < 0 && errno == EINTR);
    close(fd);
    return n > 0;
}

void chaos_check_gone(const pid_t *pids, int n, double timeout, const char *what)
{
    for (int i = 0; i < n; i++) {
        if (pids[i] > 0 && !chaos_wait_gone(pids[i], timeout)) {
            chaos_fail("%s: process %d outlived its killed parent", what, (int)pids[i]);
            kill(pids[i], SIGKILL);
        }
    }
}

void chaos_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("chaos: pipe2");
        exit(3);
    }
}

void chaos_put_int(int fd, int v)
{
    ssize_t n;
    do
        n = write(fd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
}

int chaos_get_int(int fd, int *v, double timeout)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    double end = chaos_now() + timeout;
    for (;;) {
        double left = end - chaos_now();
        int n = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -ETIMEDOUT;
        ssize_t got = read(fd, v, sizeof *v);
        if (got == (ssize_t)sizeof *v)
            return 0;
        if (got < 0 && errno == EINTR)
            continue;
        return -EPIPE;
    }
}

/* In the limited child: drops root, then sets the limit.  Returns 0, or
 * a negative errno of the step that failed. */
static int limit_self(int resource, unsigned long value, bool as_nobody)
{
    if (as_nobody && geteuid() == 0) {
        if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
            return -errno;
    }
    struct rlimit rl;
    if (resource < 0)
        return 0;
    if (getrlimit(resource, &rl) != 0)
        return -errno;
    rl.rlim_cur = value;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < value)
        rl.rlim_cur = rl.rlim_max;
    return setrlimit(resource, &rl) == 0 ? 0 : -errno;
}

int chaos_limited(int resource, unsigned long value, bool as_nobody, int (*fn)(void *), void *arg,
                  double timeout)
{
    int fds[2];
    chaos_pipe(fds);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return INT_MIN;
    if (pid == 0) {
        close(fds[0]);
        int rc = limit_self(resource, value, as_nobody);
        /* INT_MIN + 1: the limit itself could not be set. */
        chaos_put_int(fds[1], rc < 0 ? INT_MIN + 1 : fn(arg));
        _exit(0);
    }
    close(fds[1]);
    int v = INT_MIN;
    if (chaos_get_int(fds[0], &v, timeout) != 0)
        v = INT_MIN;
    close(fds[0]);
    if (!chaos_wait_gone(pid, timeout))
        kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return v;
}
