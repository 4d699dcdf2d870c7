/*
 * proc.c - pidfds, thread ids, dying with the parent, signal masks, signal
 * descriptors and signal names.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

int mp__pidfd_open(pid_t pid)
{
    /* pidfd_open(2) returns a close-on-exec descriptor by definition. */
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}

int mp__pidfd_send_signal(int pidfd, int signo)
{
    long rc = syscall(SYS_pidfd_send_signal, pidfd, signo, NULL, 0);
    return rc < 0 ? -errno : 0;
}

pid_t mp__gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* Reads /proc/<tid>/stat: state and start time (fields 3 and 22).  Returns
 * 0, MP_ESRCH (gone or dead) or -errno. */
static int thread_stat(const char *path, uint64_t *start)
{
    char buf[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? MP_ESRCH : -errno;
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    int err = errno;
    close(fd);
    if (n < 0)
        return err == ESRCH ? MP_ESRCH : -err;
    buf[n] = '\0';
    /* The name (field 2) may hold anything but ends at the last ')'. */
    const char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return MP_EPROTO;
    char state = p[2];
    if (state == 'Z' || state == 'X' || state == 'x')
        return MP_ESRCH;
    p += 2;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return MP_EPROTO;
        p++;
    }
    *start = strtoull(p, NULL, 10);
    return 0;
}

int mp__thread_check(pid_t tid, uint64_t *start)
{
    if (tid <= 0)
        return MP_ESRCH;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)tid);
    return thread_stat(path, start);
}

static _Thread_local struct {
    pid_t tid;
    uint64_t start;
} start_cache __attribute__((tls_model("initial-exec")));

uint64_t mp__thread_start_time(void)
{
    /* Keyed by the thread id, which fork changes (mp__self_tid's cache is
     * reset in the child). */
    pid_t tid = mp__self_tid();
    if (start_cache.tid != tid) {
        uint64_t start = 0;
        if (thread_stat("/proc/thread-self/stat", &start) < 0)
            start = 0;
        start_cache.start = start;
        start_cache.tid = tid;
    }
    return start_cache.start;
}

int mp__die_with_parent(int signo, pid_t parent)
{
    /* The parent may have died before the request took effect, in which
     * case no signal will ever come: check after asking. */
    if (prctl(PR_SET_PDEATHSIG, signo) != 0)
        return -errno;
    return getppid() == parent ? 0 : MP_ESRCH;
}

int mp__sigfd_new(const sigset_t *set)
{
    int fd = signalfd(-1, set, SFD_CLOEXEC | SFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

void mp__sigfd_drain(int fd)
{
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) > 0) {
    }
}

void mp__signals_block_all(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, old);
}

void mp__signals_restore(const sigset_t *old)
{
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

const char *mp__signal_name(int signo)
{
    /* sigabbrev_np() (glibc 2.32) gives "SEGV"; the full name is wanted. */
    static const char *const names[] = {
        [SIGHUP] = "SIGHUP",       [SIGINT] = "SIGINT",   [SIGQUIT] = "SIGQUIT",
        [SIGILL] = "SIGILL",       [SIGTRAP] = "SIGTRAP", [SIGABRT] = "SIGABRT",
        [SIGBUS] = "SIGBUS",       [SIGFPE] = "SIGFPE",   [SIGKILL] = "SIGKILL",
        [SIGUSR1] = "SIGUSR1",     [SIGSEGV] = "SIGSEGV", [SIGUSR2] = "SIGUSR2",
        [SIGPIPE] = "SIGPIPE",     [SIGALRM] = "SIGALRM", [SIGTERM] = "SIGTERM",
        [SIGCHLD] = "SIGCHLD",     [SIGCONT] = "SIGCONT", [SIGSTOP] = "SIGSTOP",
        [SIGTSTP] = "SIGTSTP",     [SIGTTIN] = "SIGTTIN", [SIGTTOU] = "SIGTTOU",
        [SIGURG] = "SIGURG",       [SIGXCPU] = "SIGXCPU", [SIGXFSZ] = "SIGXFSZ",
        [SIGVTALRM] = "SIGVTALRM", [SIGPROF] = "SIGPROF", [SIGWINCH] = "SIGWINCH",
        [SIGIO] = "SIGIO",         [SIGPWR] = "SIGPWR",   [SIGSYS] = "SIGSYS",
    };
    if (signo > 0 && (size_t)signo < sizeof names / sizeof names[0] && names[signo])
        return names[signo];
    if (signo >= SIGRTMIN && signo <= SIGRTMAX)
        return "SIGRT";
    return "unknown signal";
}

const char *mp__signal_code_text(int signo, int code)
{
    if (code == SI_USER)
        return "sent by kill()";
    if (code == SI_TKILL)
        return "sent by tkill() or raise()";
    if (code == SI_QUEUE)
        return "sent by sigqueue()";
    switch (signo) {
    case SIGSEGV:
        switch (code) {
        case SEGV_MAPERR:
            return "address not mapped to object";
        case SEGV_ACCERR:
            return "invalid permissions for mapped object";
#ifdef SEGV_BNDERR
        case SEGV_BNDERR:
            return "failed address bound checks";
#endif
#ifdef SEGV_PKUERR
        case SEGV_PKUERR:
            return "access denied by memory protection keys";
#endif
        }
        break;
    case SIGBUS:
        switch (code) {
        case BUS_ADRALN:
            return "invalid address alignment";
        case BUS_ADRERR:
            return "nonexistent physical address (beyond the end of a mapped file?)";
        case BUS_OBJERR:
            return "object-specific hardware error";
        }
        break;
    case SIGFPE:
        switch (code) {
        case FPE_INTDIV:
            return "integer divide by zero";
        case FPE_INTOVF:
            return "integer overflow";
        case FPE_FLTDIV:
            return "floating-point divide by zero";
        case FPE_FLTOVF:
            return "floating-point overflow";
        case FPE_FLTUND:
            return "floating-point underflow";
        case FPE_FLTRES:
            return "floating-point inexact result";
        case FPE_FLTINV:
            return "invalid floating-point operation";
        case FPE_FLTSUB:
            return "subscript out of range";
        }
        break;
    case SIGILL:
        switch (code) {
        case ILL_ILLOPC:
            return "illegal opcode";
        case ILL_ILLOPN:
            return "illegal operand";
        case ILL_ILLADR:
            return "illegal addressing mode";
        case ILL_ILLTRP:
            return "illegal trap";
        case ILL_PRVOPC:
            return "privileged opcode";
        case ILL_PRVREG:
            return "privileged register";
        case ILL_COPROC:
            return "coprocessor error";
        case ILL_BADSTK:
            return "internal stack error";
        }
        break;
    }
    return "no further detail";
}
