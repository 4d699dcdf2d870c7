/*
 * signals.c - mp_signals_install(): SIGINT and SIGTERM start a clean
 * shutdown instead of killing the program mid-way.
 *
 * DESIGN
 * The handler does only what is safe in a handler: it counts the signal,
 * records the first one, cancels the library waits of this process
 * (future.c: word bumps, futex wakes, eventfd writes), sets the shared
 * shutdown event (an atomic exchange and a futex wake) unless stacks are
 * to be collected first, on SIGINT records the interrupted thread's stack
 * (raw addresses placed in their modules, as the crash handler does, into
 * a static buffer), and writes to an eventfd.  Everything else happens in
 * a thread of the library, "mproc-signals", which sleeps on that eventfd
 * with every signal blocked: it logs the signal, names the recorded stack
 * (symbols need files and malloc), asks each child for its stack, runs
 * the shutdown and, with opts.exit, ends the program by the same signal at
 * its default action, so that whoever started the program sees how it
 * ended.
 *
 * Children's stacks.  Each child gets SIGURG and writes a STACK record to
 * its report pipe (child.c); the thread waits (up to STACK_WAIT) until
 * every child's pipe polls readable, and only then sets the event: a child
 * that saw the event first could end before it was asked.  The records are
 * logged, named, as each child is reaped during the shutdown.  A thread rather than "the next library call", because the
 * program may be computing, in no library call at all, when the signal
 * comes; and the thread is named mproc-*, so it does not make a fork
 * unsafe (startmethod.c): it holds no lock while it sleeps.
 *
 * Counting: the first signal starts the shutdown; a second one forces it
 * (mp__shutdown_force: its waits end, what runs is killed, the clean-up
 * still runs, and the program ends); a third, or a second once a
 * shutdown with exit = false is over, ends the program at once by the
 * signal's default action.  The handler masks both signals while it runs,
 * so counts never interleave.
 *
 * After fork: a child does not inherit the handling.  The child handler of
 * pthread_atfork restores the dispositions that were there before
 * install, and forgets the eventfd (the parent's) and the thread (absent).
 * Children started by mproc then ignore SIGINT (child.c).
 */
#define _GNU_SOURCE
#include "base.h"

#include "child.h"
#include "future.h"
#include "log.h"
#include "process.h"
#include "report.h"
#include "shutdown.h"
#include "shutdown_event.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

/* How long children get to answer a request for their stacks. */
#define STACK_WAIT 1.0

static struct {
    pthread_mutex_t lock; /* install / uninstall */
    pthread_once_t once;
    bool installed;
    struct sigaction old_int, old_term;
    mp_signals_opts opts;
    int wake_fd;
    pthread_t thread;
    _Atomic int count;   /* signals received */
    _Atomic int first;   /* the first one */
    _Atomic bool stop;   /* uninstall asks the thread to end */
    _Atomic bool done;   /* a shutdown with exit = false is over */
    _Atomic bool stacks; /* copy of opts.stack_traces for the handler */
    _Atomic int stack_tid;
    size_t stack_len;
} sg = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_ONCE_INIT, .wake_fd = -1};

/* The stack of the thread that received the first SIGINT. */
static unsigned char stack_rec[MP__STACK_RECORD_CAP];

/* ---- the handler ---------------------------------------------------------------- */

static void handler(int signo, siginfo_t *si, void *uctx)
{
    int saved = errno;
    int n = atomic_fetch_add(&sg.count, 1) + 1;
    if (n == 1) {
        atomic_store(&sg.first, signo);
        mp__shutdown_note_signal(signo);
        if (signo == SIGINT && atomic_load(&sg.stacks)) {
            sg.stack_len =
                mp__stack_record(stack_rec, sizeof stack_rec, MP__REPORT_STACK, signo, si, uctx);
            atomic_store(&sg.stack_tid, (int)mp__gettid());
        } else {
            mp__sdev_set();
        }
        mp__waiter_cancel_all();
    } else if (n >= 3 || atomic_load(&sg.done)) {
        /* End now.  The signal is blocked while its handler runs: raised
         * here, it is delivered, at its default action, on return. */
        signal(signo, SIG_DFL);
        raise(signo);
    } else {
        mp__shutdown_force();
    }
    mp__eventfd_signal(sg.wake_fd);
    errno = saved;
}

/* ---- the thread ------------------------------------------------------------------ */

/* Ends the program by signo at its default action. */
static _Noreturn void end_by(int signo)
{
    signal(signo, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signo);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    raise(signo);
    _exit(128 + signo); /* not reached: the default action ends the process */
}

/* Waits until every report pipe in pfd polls readable (its child wrote
 * its stack), at most STACK_WAIT; a second signal cuts it short. */
static void await_records(struct pollfd *pfd, size_t n)
{
    mp__waiter w;
    if (n == 0 || mp__waiter_begin_fd(&w) < 0)
        return;
    int64_t deadline = mp__deadline(STACK_WAIT);
    size_t left = n;
    while (left > 0 && !mp__waiter_interrupted(&w)) {
        if (mp__waiter_poll(&w, pfd, left, deadline) < 0)
            break;
        /* Move the pipes that answered past the end: they would poll
         * readable again. */
        for (size_t i = 0; i < left;) {
            if (pfd[i].revents) {
                struct pollfd t = pfd[i];
                pfd[i] = pfd[--left];
                pfd[left] = t;
            } else {
                i++;
            }
        }
    }
    mp__waiter_end(&w);
}

/* Logs the recorded stack of this process, and asks each child for its
 * own. */
static void log_stacks(void)
{
    if (atomic_load(&sg.stack_tid)) {
        char title[128];
        int tid = atomic_load(&sg.stack_tid);
        snprintf(title, sizeof title, "the %s (pid %d, thread %d) was at:",
                 tid == (int)getpid() ? "main process" : "process", (int)getpid(), tid);
        char *text = mp__report_stack_text(stack_rec, sg.stack_len, title);
        if (text)
            mp_log(MP_LOG_WARNING, "%s", text);
        free(text);
    }
    mp_process **kids;
    int n = mp__registry_hold(&kids);
    if (n <= 0)
        return;
    struct pollfd *pfd = calloc((size_t)n, sizeof *pfd);
    int asked = 0;
    for (int i = 0; i < n; i++) {
        int fd = pfd ? mp__process_report_fd_dup(kids[i]) : -1;
        if (mp_process_signal(kids[i], MP__STACK_SIGNAL) == 0 && fd >= 0)
            pfd[asked++] = (struct pollfd){.fd = fd, .events = POLLIN};
        else
            mp__close(fd);
    }
    mp__registry_release(kids, (size_t)n);
    mp_log(MP_LOG_WARNING, "asked %d child%s for their stacks (logged as each is reaped)", n,
           n == 1 ? "" : "ren");
    await_records(pfd, (size_t)asked);
    for (int i = 0; i < asked; i++)
        mp__close(pfd[i].fd);
    free(pfd);
}

/* What the first signal starts. */
static void on_signal(int signo)
{
    mp_log(MP_LOG_WARNING, "%s received: shutting down (a second one forces it)",
           mp__signal_name(signo));
    if (signo == SIGINT && sg.opts.stack_traces) {
        log_stacks();
        mp__sdev_set(); /* held back until the children answered */
    }
    /* The program may have run it itself meanwhile (exit = false). */
    if (!mp__shutdown_ran_since_signal())
        (void)mp_shutdown_ex(&sg.opts.shutdown, NULL);
    if (sg.opts.exit || atomic_load(&sg.count) > 1)
        end_by(signo);
    atomic_store(&sg.done, true);
}

static void *signal_thread(void *arg)
{
    (void)arg;
    bool started = false;
    while (!atomic_load(&sg.stop)) {
        struct pollfd p = {.fd = sg.wake_fd, .events = POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            break;
        mp__eventfd_drain(sg.wake_fd);
        if (atomic_load(&sg.stop) || atomic_load(&sg.count) == 0 || started)
            continue;
        started = true;
        on_signal(atomic_load(&sg.first));
    }
    return NULL;
}

/* ---- install ----------------------------------------------------------------------- */

static void sg_atfork_child(void)
{
    if (!sg.installed)
        return;
    sigaction(SIGINT, &sg.old_int, NULL);
    sigaction(SIGTERM, &sg.old_term, NULL);
    sg.installed = false;
    sg.wake_fd = -1; /* the parent's: left open, it is close-on-exec */
    atomic_store(&sg.count, 0);
    pthread_mutex_init(&sg.lock, NULL);
}

static void sg_register_atfork(void)
{
    pthread_atfork(NULL, NULL, sg_atfork_child);
}

/* 0 when o is sound, else MP_EINVAL with its detail. */
static int opts_check(const mp_signals_opts *o)
{
    if (!(o->shutdown.grace >= 0))
        return mp__fail(MP_EINVAL, "mp_signals_install: opts.shutdown.grace must be >= 0 (got %g)",
                        o->shutdown.grace);
    if (o->shutdown.timeout != o->shutdown.timeout)
        return mp__fail(MP_EINVAL,
                        "mp_signals_install: opts.shutdown.timeout must be a number (got %g)",
                        o->shutdown.timeout);
    return 0;
}

/* Starts the thread and installs the handlers.  Caller holds sg.lock. */
static int install_locked(void)
{
    int fd = mp__eventfd_new();
    if (fd < 0)
        return fd;
    sg.wake_fd = fd;
    atomic_store(&sg.count, 0);
    atomic_store(&sg.stop, false);
    atomic_store(&sg.done, false);
    atomic_store(&sg.stack_tid, 0);
    int rc = mp__thread_start(&sg.thread, "mproc-signals", signal_thread, NULL);
    if (rc < 0) {
        mp__close(fd);
        sg.wake_fd = -1;
        return rc;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    /* SA_RESTART: the program's own system calls go on; the library's
     * waits are woken by the handler itself. */
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    if (sigaction(SIGINT, &sa, &sg.old_int) != 0 || sigaction(SIGTERM, &sa, &sg.old_term) != 0) {
        rc = -errno;
        sigaction(SIGINT, &sg.old_int, NULL);
        atomic_store(&sg.stop, true);
        mp__eventfd_signal(fd);
        pthread_join(sg.thread, NULL);
        mp__close(fd);
        sg.wake_fd = -1;
        return rc;
    }
    return 0;
}

int mp_signals_install(const mp_signals_opts *opts)
{
    mp_signals_opts o = MP_SIGNALS_OPTS_INIT;
    if (opts)
        o = *opts;
    int rc = opts_check(&o);
    if (rc < 0)
        return rc;
    pthread_once(&sg.once, sg_register_atfork);
    /* What the handler needs, ready beforehand: the event's page, the
     * unwinder and the module table. */
    mp_event *ev;
    rc = mp__sdev_get(&ev);
    if (rc < 0)
        return rc;
    mp__crash_prepare();
    pthread_mutex_lock(&sg.lock);
    if (sg.installed) {
        pthread_mutex_unlock(&sg.lock);
        return mp__fail(MP_EBUSY, "mp_signals_install: the handlers are installed already");
    }
    sg.opts = o;
    atomic_store(&sg.stacks, o.stack_traces);
    rc = install_locked();
    if (rc == 0) {
        sg.installed = true;
        mp__child_sigint_set_ignored(true);
    }
    pthread_mutex_unlock(&sg.lock);
    return rc;
}

int mp_signals_uninstall(void)
{
    pthread_mutex_lock(&sg.lock);
    if (!sg.installed) {
        pthread_mutex_unlock(&sg.lock);
        return mp__fail(MP_ESTATE, "mp_signals_uninstall: the handlers are not installed");
    }
    /* A signal's shutdown in progress is finished first: the join below
     * waits for the thread (its shutdown is bounded). */
    sigaction(SIGINT, &sg.old_int, NULL);
    sigaction(SIGTERM, &sg.old_term, NULL);
    atomic_store(&sg.stop, true);
    mp__eventfd_signal(sg.wake_fd);
    pthread_join(sg.thread, NULL);
    mp__close(sg.wake_fd);
    sg.wake_fd = -1;
    sg.installed = false;
    mp__child_sigint_set_ignored(false);
    pthread_mutex_unlock(&sg.lock);
    return 0;
}
