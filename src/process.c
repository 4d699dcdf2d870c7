/*
 * process.c - child processes: start, join, signal, reap, and the registry
 * that makes sure none is left behind.
 *
 * DESIGN
 * Starting (fork).  The child's report pipe is made close-on-exec before
 * fork, stdio is flushed (or buffered output would be printed twice), and
 * every signal is blocked around fork(), so that the child cannot run one
 * of the parent's handlers before its own set-up is done; the child
 * restores the parent's mask just before calling the target.
 *
 * Start method.  A process that names none takes the program's default;
 * startmethod.c decides, at start, whether fork is safe (no other thread
 * runs) and else switches to the forkserver or refuses.  A start after the
 * program's shutdown event is set is refused: a shutdown must not race
 * with new children.  The shutdown event's page is made before the first
 * child starts, so that every child can reach it.
 *
 * Waiting.  mp_process_join() polls a pidfd, opened at the first join
 * (safe from pid reuse, because an unreaped child keeps its pid), beside
 * the eventfd of a library waiter (future.c), so that a SIGINT or a
 * shutdown interrupts it (MP_ECANCELED).  It polls a duplicate of the
 * descriptor: another thread that reaps the child closes the original, and
 * the number could be reused under the poll.  Internal waits (free, exit,
 * stop) are not interruptible.  Without pidfds (kernels before 5.3) a
 * timed wait polls waitpid(WNOHANG) with a growing back-off, and a wait
 * without limit blocks in waitid().
 * Children of the forkserver are not ours to wait for: their wait status
 * arrives on a channel from the server, and the server's pidfd lets us
 * signal them.  waitpid(-1) is never used: other children of the program
 * are none of mproc's business.
 *
 * The registry.  Every started, unreaped child is on one list.  It lets
 * mp_process_free() leave a running non-daemon child to be reaped later
 * instead of waiting for it, and lets the exit handler terminate daemon
 * children and join the rest, as Python does.  The list is emptied in a
 * forked child (pthread_atfork): the parent's children are not its own.
 *
 * After fork, in a child: process objects inherited from the parent
 * belong to the parent; every call on them returns MP_ESTATE (they record
 * the pid of the process that may use them).
 */
#define _GNU_SOURCE
#include "process.h"

#include "boot.h"
#include "child.h"
#include "forkserver.h"
#include "future.h"
#include "log.h"
#include "report.h"
#include "request.h"
#include "self.h"
#include "shutdown_event.h"
#include "startmethod.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { ST_NEW, ST_RUNNING, ST_DONE };

struct mp_process {
    mp_target_fn target;
    void *arg;
    size_t arg_size;
    char name[MP__MAX_NAME];
    char ident[MP__MAX_NAME];
    bool daemon;
    _Atomic bool freed;        /* freed while running: the registry holds the owner's reference */
    bool status_lost;          /* someone else reaped it: its exit code is unknown */
    bool internal;             /* started by the library for an object of its own */
    mp_start_method requested; /* as given in the options */
    mp_start_method method;    /* as started */
    _Atomic int refs;          /* the owner's, and snapshots of the registry */
    int fds[MP__MAX_FDS];
    size_t nfds;

    int state;
    pid_t owner; /* the process that started it, the only one that may use it */
    pid_t pid;
    int pidfd;     /* -1 without pidfd support */
    int chan;      /* forkserver status channel, -1 for own children */
    int report_fd; /* read end of the report pipe */
    mp__outcome out;
    pthread_mutex_t lock; /* serialises reaping */

    struct mp_process *prev, *next; /* registry links while running */
};

static struct {
    pthread_mutex_t lock;   /* the list */
    pthread_mutex_t reaper; /* destroying detached objects */
    mp_process *head;
    pthread_once_t once;
} reg = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, NULL, PTHREAD_ONCE_INIT};

/* ---- registry ----------------------------------------------------------- */

static void reg_atfork_prepare(void)
{
    pthread_mutex_lock(&reg.lock);
}

static void reg_atfork_parent(void)
{
    pthread_mutex_unlock(&reg.lock);
}

static void reg_atfork_child(void)
{
    /* The parent's children are not this process's: forget them (their
     * memory stays with the parent's objects, which this process must not
     * use). */
    reg.head = NULL;
    pthread_mutex_init(&reg.lock, NULL);
    pthread_mutex_init(&reg.reaper, NULL);
}

static void at_exit(void);

static void reg_init(void)
{
    pthread_atfork(reg_atfork_prepare, reg_atfork_parent, reg_atfork_child);
    atexit(at_exit);
}

static void reg_add(mp_process *p)
{
    pthread_mutex_lock(&reg.lock);
    p->prev = NULL;
    p->next = reg.head;
    if (reg.head)
        reg.head->prev = p;
    reg.head = p;
    pthread_mutex_unlock(&reg.lock);
}

/* Caller holds reg.lock. */
static void reg_unlink_locked(mp_process *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else if (reg.head == p)
        reg.head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

/* ---- reaping ------------------------------------------------------------ */

static void close_handles(mp_process *p)
{
    mp__close(p->pidfd);
    mp__close(p->chan);
    mp__close(p->report_fd);
    p->pidfd = p->chan = p->report_fd = -1;
}

/* Drops a reference; the last one destroys the object.  The owner holds
 * one until it frees the object (or the registry reaps a freed one), and a
 * snapshot of the registry one per object it lists. */
static void destroy(mp_process *p)
{
    if (atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    close_handles(p);
    free(p->out.report);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Reaps the child if it has ended, without blocking.  Returns true once it
 * is reaped (now or before). */
static bool try_reap(mp_process *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->state != ST_RUNNING) {
        pthread_mutex_unlock(&p->lock);
        return p->state == ST_DONE;
    }
    int st = 0;
    bool done = false;
    if (p->chan >= 0) {
        int rc = mp__forkserver_status(p->chan, &st);
        if (rc == 1) {
            done = true;
        } else if (rc < 0) {
            /* The channel closed without a status: the server died, and
             * its death killed the child (PR_SET_PDEATHSIG). */
            st = SIGKILL;
            done = true;
        }
    } else {
        pid_t r;
        do {
            r = waitpid(p->pid, &st, WNOHANG);
        } while (r < 0 && errno == EINTR);
        if (r == p->pid) {
            done = true;
        } else if (r < 0) {
            /* ECHILD: someone else reaped it (SIGCHLD set to SIG_IGN, or a
             * waitpid(-1) elsewhere in the program).  Its status is lost:
             * mp_process_exitcode says so rather than invent one. */
            mp_log(MP_LOG_WARNING, "process '%s' (pid %d) was reaped outside mproc", p->name,
                   (int)p->pid);
            st = 0;
            p->status_lost = true;
            done = true;
        }
    }
    bool release = false;
    if (done) {
        mp__outcome_build(&p->out, p->name, p->pid, st, p->report_fd, true);
        close_handles(p);
        p->state = ST_DONE;
        release = atomic_load(&p->freed);
    }
    pthread_mutex_unlock(&p->lock);
    if (done) {
        pthread_mutex_lock(&reg.lock);
        reg_unlink_locked(p);
        pthread_mutex_unlock(&reg.lock);
    }
    /* Freed while it ran: the owner's reference, which the registry kept,
     * goes with the reaping (once: only one call sees the child end).
     * Whoever reaps a freed object holds a reference of its own, so the
     * object outlives this call. */
    if (release)
        destroy(p);
    return done;
}

/* Waits until the child ends or the deadline passes.  Returns 0 once it is
 * reaped, MP_ETIMEDOUT otherwise. */
static int wait_reap(mp_process *p, int64_t deadline)
{
    if (try_reap(p))
        return 0;
    if (p->chan < 0 && deadline == MP__NO_DEADLINE) {
        /* No limit: block in the kernel.  WNOWAIT leaves the reaping to
         * try_reap, under the object's lock, so concurrent joins agree. */
        for (;;) {
            siginfo_t si;
            int rc = waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOWAIT);
            if (try_reap(p))
                return 0;
            if (rc < 0 && errno != EINTR)
                return try_reap(p) ? 0 : -errno;
        }
    }
    if (p->chan < 0) {
        /* A pidfd turns the timed wait into a poll().  It is opened on
         * first need - most joins have no limit - and it is safe to open
         * now: the child is not reaped, so its pid cannot have been
         * reused. */
        pthread_mutex_lock(&p->lock);
        if (p->pidfd < 0 && p->state == ST_RUNNING)
            p->pidfd = mp__pidfd_open(p->pid);
        pthread_mutex_unlock(&p->lock);
    }
    int64_t backoff = 20000; /* ns, for the waitpid polling fallback */
    for (;;) {
        if (try_reap(p))
            return 0;
        int fd = p->chan >= 0 ? p->chan : p->pidfd;
        if (fd >= 0) {
            int rc = mp__poll_fd(fd, POLLIN, deadline);
            if (rc == MP_ETIMEDOUT)
                return try_reap(p) ? 0 : MP_ETIMEDOUT;
            if (rc >= 0 || rc == MP_EINTR)
                continue;
            /* The descriptor cannot be polled: poll waitpid instead. */
        }
        int64_t left = mp__remaining_ns(deadline);
        if (left <= 0)
            return try_reap(p) ? 0 : MP_ETIMEDOUT;
        mp__sleep_ns(backoff < left ? backoff : left);
        if (backoff < 10000000)
            backoff *= 2;
    }
}

int mp__process_wait_fd(mp_process *p)
{
    pthread_mutex_lock(&p->lock);
    int fd = MP_ESTATE;
    if (p->state == ST_RUNNING) {
        if (p->chan >= 0) {
            fd = p->chan;
        } else {
            if (p->pidfd < 0)
                p->pidfd = mp__pidfd_open(p->pid);
            fd = p->pidfd;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return fd;
}

/* ---- the API ------------------------------------------------------------ */

/* 0 when opts describe a process that can be started, else MP_EINVAL
 * with a detail naming the option and the rule it breaks. */
static int opts_check(mp_target_fn target, const void *arg, const mp_process_opts *o)
{
    static const char fn[] = "mp_process_new_opts";
    if (!target)
        return mp__fail(MP_EINVAL, "%s: target must not be NULL", fn);
    if (o->nfds > MP__MAX_FDS)
        return mp__fail(MP_EINVAL, "%s: opts.nfds must be at most %d (got %zu)", fn, MP__MAX_FDS,
                        o->nfds);
    if (o->nfds && !o->fds)
        return mp__fail(MP_EINVAL, "%s: opts.fds must not be NULL when opts.nfds is %zu", fn,
                        o->nfds);
    if (o->arg_size > MP__MAX_ARG)
        return mp__fail(MP_EINVAL, "%s: opts.arg_size must be at most %zu bytes (got %zu)", fn,
                        MP__MAX_ARG, o->arg_size);
    if (o->start_method != MP_START_FORK && o->start_method != MP_START_SPAWN &&
        o->start_method != MP_START_FORKSERVER && o->start_method != MP_START_AUTO &&
        o->start_method != MP_START_DEFAULT)
        return mp__fail(MP_EINVAL, "%s: opts.start_method must be an mp_start_method (got %d)", fn,
                        (int)o->start_method);
    /* Where a fresh image may run it, arg_size bytes are copied from arg. */
    if (o->start_method != MP_START_FORK && o->arg_size && !arg)
        return mp__fail(MP_EINVAL, "%s: arg must not be NULL when opts.arg_size is %zu", fn,
                        o->arg_size);
    return 0;
}

int mp_process_new_opts(mp_target_fn target, void *arg, const mp_process_opts *opts,
                        mp_process **out)
{
    MP__NONNULL(out);
    *out = NULL;
    mp_process_opts defaults = MP_PROCESS_OPTS_INIT;
    if (!opts)
        opts = &defaults;
    int rc = opts_check(target, arg, opts);
    if (rc < 0)
        return rc;
    mp_process *p = calloc(1, sizeof *p);
    if (!p)
        return MP_ENOMEM;
    p->target = target;
    p->arg = arg;
    p->arg_size = opts->arg_size;
    p->daemon = opts->daemon;
    p->requested = opts->start_method;
    p->method = opts->start_method;
    atomic_init(&p->refs, 1);
    p->nfds = opts->nfds;
    if (p->nfds)
        memcpy(p->fds, opts->fds, p->nfds * sizeof(int));
    mp__self_next_child_name(p->name, sizeof p->name, p->ident, sizeof p->ident);
    if (opts->name)
        snprintf(p->name, sizeof p->name, "%s", opts->name);
    p->pidfd = p->chan = p->report_fd = -1;
    p->state = ST_NEW;
    pthread_mutex_init(&p->lock, NULL);
    *out = p;
    return 0;
}

int mp_process_new(mp_target_fn target, void *arg, const char *name, mp_process **out)
{
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.name = name;
    return mp_process_new_opts(target, arg, &o, out);
}

static int start_fork(mp_process *p, int report_w)
{
    pid_t parent = getpid();
    /* Output buffered in stdio would otherwise be written twice, once by
     * each process. */
    fflush(NULL);
    sigset_t old;
    mp__signals_block_all(&old);
    pid_t pid = fork();
    if (pid == 0) {
        mp__close(p->report_fd);
        mp__child_spec spec = {
            .target = p->target,
            .arg = p->arg,
            .name = p->name,
            .ident = p->ident,
            .parent = parent,
            .session = mp__session(),
            .report_fd = report_w,
            .fds = p->fds,
            .nfds = p->nfds,
            .mask = &old,
            .origin = parent,
            .ignore_sigint = mp__child_sigint_ignored(),
        };
        mp__child_main(&spec);
    }
    int err = errno;
    mp__signals_restore(&old);
    if (pid < 0)
        return -err;
    p->pid = pid;
    return 0;
}

static int start_spawn(mp_process *p, int report_w)
{
    int sv[2];
    int rc = mp__socketpair(SOCK_STREAM, sv);
    if (rc < 0)
        return rc;
    pid_t pid;
    rc = mp__boot_spawn(MP__ROLE_SPAWN, sv[1], &pid);
    mp__close(sv[1]);
    if (rc == 0) {
        mp__request_out r = {
            .fn = p->target,
            .arg = p->arg,
            .arg_len = p->arg_size,
            .name = p->name,
            .ident = p->ident,
            .report_fd = report_w,
            .chan_fd = -1,
            .fds = p->fds,
            .nfds = p->nfds,
        };
        p->pid = pid;
        rc = mp__request_send(sv[0], &r);
        if (rc < 0) {
            /* The fresh image cannot run anything now: end it. */
            kill(pid, SIGKILL);
            int st;
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
        }
    }
    mp__close(sv[0]);
    return rc;
}

static int start_forkserver(mp_process *p, int report_w)
{
    mp__request_out r = {
        .fn = p->target,
        .arg = p->arg,
        .arg_len = p->arg_size,
        .name = p->name,
        .ident = p->ident,
        .report_fd = report_w,
        .chan_fd = -1,
        .fds = p->fds,
        .nfds = p->nfds,
    };
    return mp__forkserver_spawn(&r, &p->pid, &p->pidfd, &p->chan);
}

/* Whatever must hold before a child may start: no shutdown under way,
 * the shutdown event there for the child to see, a safe start method.
 * Returns 0 (p->method chosen) or the reason not to start. */
static int start_prepare(mp_process *p)
{
    if (mp_shutdown_requested())
        return MP_ESHUTDOWN;
    mp_event *ev;
    int rc = mp__sdev_get(&ev);
    if (rc < 0)
        return rc;
    char what[MP__MAX_NAME + 16];
    snprintf(what, sizeof what, "process '%s'", p->name);
    return mp__start_method_resolve(p->requested, !p->arg || p->arg_size > 0, what, &p->method);
}

int mp_process_start(mp_process *p)
{
    MP__NONNULL(p);
    if (p->state != ST_NEW)
        return mp__fail(MP_ESTATE, "mp_process_start: %s was started before", p->name);
    int rc = start_prepare(p);
    if (rc < 0)
        return rc;
    pthread_once(&reg.once, reg_init);
    mp__registry_reap_detached();
    mp__crash_prepare();

    int rp[2];
    /* Non-blocking both ends: the parent drains the pipe without waiting,
     * and the child's writes wait in poll() if it ever fills. */
    rc = mp__pipe(rp, O_NONBLOCK);
    if (rc < 0)
        return rc;
    p->report_fd = rp[0];
    p->owner = getpid();
    switch (p->method) {
    case MP_START_SPAWN:
        rc = start_spawn(p, rp[1]);
        break;
    case MP_START_FORKSERVER:
        rc = start_forkserver(p, rp[1]);
        break;
    default:
        rc = start_fork(p, rp[1]);
        break;
    }
    mp__close(rp[1]);
    if (rc < 0) {
        close_handles(p);
        p->pid = 0;
        return rc;
    }
    p->state = ST_RUNNING;
    reg_add(p);
    return 0;
}

/* Whether the calling process may act on p (it started it). */
static bool ours(const mp_process *p)
{
    return p->state == ST_NEW || p->owner == getpid();
}

mp_start_method mp_process_start_method(const mp_process *p)
{
    return p ? p->method : MP_START_DEFAULT;
}

/* As wait_reap(), but a SIGINT or a shutdown interrupts it (MP_ECANCELED):
 * see DESIGN, "Waiting". */
static int join_interruptible(mp_process *p, int64_t deadline)
{
    if (try_reap(p))
        return 0;
    if (mp__remaining_ns(deadline) <= 0)
        return MP_ETIMEDOUT;
    int fd = mp__process_wait_fd_dup(p);
    if (fd < 0)
        return try_reap(p) ? 0 : wait_reap(p, deadline); /* no pidfds */
    mp__waiter w;
    int rc = mp__waiter_begin_fd(&w);
    if (rc < 0) {
        mp__close(fd);
        return wait_reap(p, deadline);
    }
    for (;;) {
        if (try_reap(p)) {
            rc = 0;
            break;
        }
        if (mp__waiter_interrupted(&w)) {
            rc = MP_ECANCELED;
            break;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        rc = mp__waiter_poll(&w, &pfd, 1, deadline);
        if (rc == MP_ETIMEDOUT) {
            rc = try_reap(p) ? 0 : MP_ETIMEDOUT;
            break;
        }
        if (rc < 0)
            break;
    }
    mp__waiter_end(&w);
    mp__close(fd);
    return rc;
}

int mp_process_join(mp_process *p, double timeout)
{
    MP__NONNULL(p);
    if (mp__timeout_check(timeout) < 0)
        return mp__fail(MP_EINVAL,
                        "mp_process_join: timeout must be a number, < 0 for forever (got %g)",
                        timeout);
    if (p->state == ST_NEW)
        return mp__fail(MP_ESTATE, "mp_process_join: %s was never started", p->name);
    if (!ours(p))
        return mp__fail(MP_ESTATE, "mp_process_join: %s was started by another process", p->name);
    return join_interruptible(p, mp__deadline(timeout));
}

bool mp_process_is_alive(mp_process *p)
{
    if (!p || p->state != ST_RUNNING || !ours(p))
        return false;
    return !try_reap(p);
}

/* Reaps p if it has ended, so that its outcome can be read.  Returns 0
 * once p has ended, MP_ESTATE while it runs or was never started. */
static int outcome_ready(mp_process *p)
{
    if (p->state == ST_RUNNING && ours(p))
        try_reap(p);
    return p->state == ST_DONE ? 0 : MP_ESTATE;
}

int mp_process_exitcode(mp_process *p, int *code)
{
    MP__NONNULL(p);
    MP__NONNULL(code);
    int rc = outcome_ready(p);
    if (rc == 0 && p->status_lost)
        rc = MP_ECHILD;
    if (rc == 0)
        *code = p->out.exitcode;
    return rc;
}

int mp_process_error(mp_process *p, int *err)
{
    MP__NONNULL(p);
    MP__NONNULL(err);
    int rc = outcome_ready(p);
    if (rc == 0)
        *err = p->out.error;
    return rc;
}

const char *mp_process_report(const mp_process *p)
{
    return p && p->state == ST_DONE ? p->out.report : NULL;
}

pid_t mp_process_pid(const mp_process *p)
{
    return p ? p->pid : 0;
}

const char *mp_process_name(const mp_process *p)
{
    return p ? p->name : "";
}

bool mp_process_daemon(const mp_process *p)
{
    return p && p->daemon;
}

int mp_process_signal(mp_process *p, int signo)
{
    MP__NONNULL(p);
    if (signo < 0 || signo >= NSIG)
        return mp__fail(MP_EINVAL, "mp_process_signal: signo must be 0 to %d (got %d)", NSIG - 1,
                        signo);
    if (p->state == ST_NEW)
        return mp__fail(MP_ESTATE, "mp_process_signal: %s was never started", p->name);
    if (!ours(p))
        return mp__fail(MP_ESTATE, "mp_process_signal: %s was started by another process", p->name);
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    if (p->state == ST_RUNNING) {
        /* An own child holds its pid until reaped, and reaping takes this
         * lock: kill() cannot hit a recycled pid.  A forkserver child is
         * reaped by the server, so it is signalled through its pidfd. */
        if (p->chan < 0)
            rc = kill(p->pid, signo) == 0 ? 0 : -errno;
        else if (p->pidfd >= 0)
            rc = mp__pidfd_send_signal(p->pidfd, signo);
        else
            rc = MP_ENOSYS;
        if (rc == MP_ESRCH)
            rc = 0; /* it ended already */
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int mp_process_terminate(mp_process *p)
{
    return mp_process_signal(p, SIGTERM);
}

int mp_process_kill(mp_process *p)
{
    return mp_process_signal(p, SIGKILL);
}

int mp_process_stop(mp_process *p, double grace)
{
    if (mp__duration_check(grace) < 0)
        return mp__fail(MP_EINVAL, "mp_process_stop: grace must be a number >= 0 (got %g)", grace);
    MP__NONNULL(p);
    int rc = mp_process_terminate(p);
    if (rc < 0)
        return rc;
    /* A SIGINT or a shutdown only cuts the grace period short: the child
     * is killed and reaped all the same (wait_reap is not interruptible). */
    if (join_interruptible(p, mp__deadline(grace)) == 0)
        return 0;
    rc = mp_process_kill(p);
    if (rc < 0)
        return rc;
    return wait_reap(p, MP__NO_DEADLINE);
}

void mp_process_free(mp_process *p)
{
    if (!p)
        return;
    if (p->state == ST_RUNNING && ours(p) && !try_reap(p)) {
        if (p->daemon) {
            /* A daemon dies with its handle.  SIGKILL cannot be refused,
             * so the join below is short. */
            mp_process_kill(p);
            wait_reap(p, MP__NO_DEADLINE);
        } else {
            /* Leave it running; the registry reaps it later.  Marked
             * under the lock reaping takes, so that a reaping in another
             * thread either sees the mark or has finished (then the
             * object is destroyed here). */
            pthread_mutex_lock(&p->lock);
            bool running = p->state == ST_RUNNING;
            if (running)
                atomic_store(&p->freed, true);
            pthread_mutex_unlock(&p->lock);
            if (running) {
                mp__registry_reap_detached();
                return;
            }
        }
    }
    /* An object inherited from the parent through fork holds copies of the
     * parent's handles; closing them is all there is to do here. */
    destroy(p);
}

void mp__registry_reap_detached(void)
{
    /* One reaper at a time, and never a wait: whoever finds the lock
     * taken leaves the work to its holder.  A freed object is destroyed by
     * the reaping itself (try_reap); the references taken here keep each
     * alive until this is done with it. */
    if (pthread_mutex_trylock(&reg.reaper) != 0)
        return;
    mp_process *list[64];
    size_t n = 0;
    pthread_mutex_lock(&reg.lock);
    for (mp_process *q = reg.head; q && n < MP__ARRAY_SIZE(list); q = q->next) {
        if (atomic_load(&q->freed)) {
            atomic_fetch_add(&q->refs, 1);
            list[n++] = q;
        }
    }
    pthread_mutex_unlock(&reg.lock);
    for (size_t i = 0; i < n; i++) {
        (void)try_reap(list[i]);
        destroy(list[i]);
    }
    pthread_mutex_unlock(&reg.reaper);
}

/* ---- for the shutdown and mp_active_children ---------------------------- */

int mp__process_wait_fd_dup(mp_process *p)
{
    pthread_mutex_lock(&p->lock);
    int fd = MP_ESTATE;
    if (p->state == ST_RUNNING) {
        if (p->chan < 0 && p->pidfd < 0)
            p->pidfd = mp__pidfd_open(p->pid);
        fd = p->chan >= 0 ? p->chan : p->pidfd;
        if (fd >= 0)
            fd = mp__dup_cloexec(fd, 0);
    }
    pthread_mutex_unlock(&p->lock);
    return fd;
}

int mp__process_report_fd_dup(mp_process *p)
{
    pthread_mutex_lock(&p->lock);
    int fd =
        p->state == ST_RUNNING && p->report_fd >= 0 ? mp__dup_cloexec(p->report_fd, 0) : MP_ESTATE;
    pthread_mutex_unlock(&p->lock);
    return fd;
}

bool mp__process_reap(mp_process *p)
{
    return ours(p) && try_reap(p);
}

void mp__process_mark_internal(mp_process *p)
{
    p->internal = true;
}

int mp__registry_hold(mp_process ***out)
{
    *out = NULL;
    pid_t me = getpid();
    pthread_mutex_lock(&reg.lock);
    size_t n = 0;
    for (mp_process *q = reg.head; q; q = q->next)
        n += q->owner == me;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    mp_process **list = n ? malloc(n * sizeof *list) : NULL;
    if (n && !list) {
        pthread_mutex_unlock(&reg.lock);
        return MP_ENOMEM;
    }
    size_t k = 0;
    /* An object on the list is alive (it leaves the list when reaped,
     * before anyone destroys it), so a reference may be taken. */
    for (mp_process *q = reg.head; q && k < n; q = q->next) {
        if (q->owner == me) {
            atomic_fetch_add(&q->refs, 1);
            list[k++] = q;
        }
    }
    pthread_mutex_unlock(&reg.lock);
    *out = list;
    return (int)k;
}

void mp__registry_release(mp_process **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        destroy(list[i]); // NOLINT(clang-analyzer-unix.Malloc): this reference kept it alive
    free(list);
}

int mp_active_children(mp_process **out, size_t cap)
{
    if (cap && !out)
        return mp__fail(MP_EINVAL, "mp_active_children: out must not be NULL when cap is %zu", cap);
    mp__registry_reap_detached();
    mp_process **list;
    int n = mp__registry_hold(&list);
    if (n < 0)
        return n;
    int count = 0;
    for (int i = 0; i < n; i++) {
        mp_process *q = list[i];
        if (atomic_load(&q->freed) || q->internal || try_reap(q))
            continue;
        if ((size_t)count < cap)
            out[count] = q;
        count++;
    }
    mp__registry_release(list, (size_t)n);
    return count;
}

int mp_cpu_count(void)
{
    return mp__cpu_count();
}

int mp_physical_cores(void)
{
    return mp__physical_cores();
}

/* At exit, as Python does: terminate daemon children, join the others. */
static void at_exit(void)
{
    pthread_mutex_lock(&reg.reaper);
    for (;;) {
        mp_process **list;
        int n = mp__registry_hold(&list);
        if (n <= 0)
            break; /* none left (or no memory to list them: the death signal does) */
        for (int i = 0; i < n; i++)
            if (list[i]->daemon)
                mp_process_terminate(list[i]);
        int64_t grace = mp__deadline(2.0);
        for (int i = 0; i < n; i++) {
            /* The reference taken by the hold keeps q alive, even when its
             * reaping drops the owner's (a freed child). */
            mp_process *q = list[i];
            if (!q->daemon) {
                wait_reap(q, MP__NO_DEADLINE);
            } else if (wait_reap(q, grace) == MP_ETIMEDOUT) {
                mp_process_kill(q); // NOLINT(clang-analyzer-unix.Malloc): see above
                wait_reap(q, MP__NO_DEADLINE);
            }
        }
        mp__registry_release(list, (size_t)n);
    }
    pthread_mutex_unlock(&reg.reaper);
    mp_forkserver_stop();
}
