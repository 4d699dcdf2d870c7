/*
 * shutdown.c - mp_shutdown(): ending every child of this process within a
 * bounded time, closing what must be closed, and unlinking every named
 * object of the program.
 *
 * DESIGN
 * The steps are named phases, each a function with one job (the public
 * header lists them): set the event, close the registered objects, wait,
 * terminate, kill, stop the forkserver, unlink.  Each logs one line and
 * adds it to the report.
 *
 * What it covers.  Children: the registry of process.c holds every
 * running child of this process, whoever started it (the program, a pool,
 * later the manager), including children whose objects were freed while
 * they ran; a snapshot takes a reference on each, so that no owner can
 * free one under the shutdown.  Objects that own processes or shared
 * state register a closer here (queues do so themselves; a pool, the
 * manager and ranks register theirs): close at the start, terminate when
 * the timeout has passed.  Named segments: the tracker knows every one the
 * program made, whichever process made it, and unlinks them all at once.
 *
 * Waiting for many children at once is one poll() over their pidfds (or
 * forkserver channels, duplicated, since their owners may close theirs)
 * beside a library waiter's eventfd (future.c): a second signal under
 * mp_signals_install() - or a SIGINT while SIGINT has its default action -
 * cancels the waiter, and the shutdown goes straight to SIGKILL.  The wait
 * after SIGKILL is never cut short, but bounded: a child stuck in the
 * kernel (uninterruptible sleep) is reported lost rather than waited for.
 *
 * Starts are refused from the moment the event is set (process.c), so the
 * snapshot taken just after cannot miss a child.
 *
 * One shutdown at a time: a second caller waits for the running one and
 * returns its result.
 */
#define _GNU_SOURCE
#include "shutdown.h"

#include "forkserver.h"
#include "future.h"
#include "log.h"
#include "process.h"
#include "shutdown_event.h"
#include "tracker.h"

#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>

/* How long children killed with SIGKILL get to disappear. */
#define KILL_WAIT 5.0

/* ---- registered objects ---------------------------------------------------- */

struct mp__closer {
    mp__closer *prev, *next;
    const mp__closer_ops *ops;
    void *obj;
    pid_t owner;
};

static struct {
    pthread_mutex_t lock;
    mp__closer *head;
    pthread_once_t once;
} reg = {PTHREAD_MUTEX_INITIALIZER, NULL, PTHREAD_ONCE_INIT};

static void reg_atfork_prepare(void)
{
    pthread_mutex_lock(&reg.lock);
}

static void reg_atfork_parent(void)
{
    pthread_mutex_unlock(&reg.lock);
}

/* The parent's objects are the parent's to close: forget them (each node
 * is freed when its object is freed here, or stays with the parent's
 * memory image). */
static void reg_atfork_child(void)
{
    reg.head = NULL;
    pthread_mutex_init(&reg.lock, NULL);
}

static void reg_init(void)
{
    pthread_atfork(reg_atfork_prepare, reg_atfork_parent, reg_atfork_child);
}

int mp__shutdown_register(const mp__closer_ops *ops, void *obj, mp__closer **out)
{
    pthread_once(&reg.once, reg_init);
    mp__closer *c = calloc(1, sizeof *c);
    *out = c;
    if (!c)
        return MP_ENOMEM;
    c->ops = ops;
    c->obj = obj;
    c->owner = getpid();
    pthread_mutex_lock(&reg.lock);
    c->next = reg.head;
    if (reg.head)
        reg.head->prev = c;
    reg.head = c;
    pthread_mutex_unlock(&reg.lock);
    return 0;
}

void mp__shutdown_unregister(mp__closer *c)
{
    if (!c)
        return;
    if (c->owner == getpid()) {
        pthread_mutex_lock(&reg.lock);
        if (c->prev)
            c->prev->next = c->next;
        else if (reg.head == c)
            reg.head = c->next;
        if (c->next)
            c->next->prev = c->prev;
        pthread_mutex_unlock(&reg.lock);
    }
    free(c);
}

/* How many objects of each kind a phase called, for the log. */
typedef struct tally {
    const char *kind[8];
    int n[8];
    size_t nkinds;
    int total;
} tally;

static void tally_add(tally *t, const char *kind)
{
    t->total++;
    for (size_t i = 0; i < t->nkinds; i++) {
        if (strcmp(t->kind[i], kind) == 0) {
            t->n[i]++;
            return;
        }
    }
    if (t->nkinds < MP__ARRAY_SIZE(t->kind)) {
        t->kind[t->nkinds] = kind;
        t->n[t->nkinds++] = 1;
    }
}

/* "2 queue(s), 1 pool(s)" */
static void tally_text(const tally *t, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 0, used = 0; i < t->nkinds && used < cap; i++) {
        int n = snprintf(buf + used, cap - used, "%s%d %s%s", i ? ", " : "", t->n[i], t->kind[i],
                         t->n[i] == 1 ? "" : "s");
        used += n > 0 ? (size_t)n : 0;
    }
}

/* Calls close (or terminate) on every registered object and counts the
 * calls by kind. */
static void closers_call(bool terminate, tally *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_lock(&reg.lock);
    for (mp__closer *c = reg.head; c; c = c->next) {
        void (*fn)(void *) = terminate ? c->ops->terminate : c->ops->close;
        if (fn) {
            fn(c->obj);
            tally_add(t, c->ops->kind);
        }
    }
    pthread_mutex_unlock(&reg.lock);
}

/* Waits for the registered objects' own processes (see mp__closer_ops). */
static void closers_reap(int64_t deadline)
{
    pthread_mutex_lock(&reg.lock);
    for (mp__closer *c = reg.head; c; c = c->next) {
        if (c->ops->reap)
            c->ops->reap(c->obj, deadline);
    }
    pthread_mutex_unlock(&reg.lock);
}

/* ---- the report ------------------------------------------------------------- */

static struct {
    pthread_mutex_t run;  /* one shutdown at a time */
    _Atomic unsigned gen; /* shutdowns finished */
    _Atomic bool running;
    _Atomic bool force;
    _Atomic int signo;           /* the signal that asked for the shutdown */
    _Atomic unsigned signal_gen; /* gen when it came */
    int result;
    mp_shutdown_report last;
} sd = {.run = PTHREAD_MUTEX_INITIALIZER};

/* Logs a step at level and adds it to the report's text, cut short with
 * "..." when the text is full. */
static void note(mp_shutdown_report *r, mp_log_level level, const char *fmt, ...) MP__PRINTF(3, 4);

static void note(mp_shutdown_report *r, mp_log_level level, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started just above */
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    mp_log(level, "shutdown: %s", line);
    size_t used = strlen(r->text), room = sizeof r->text - used;
    int n = snprintf(r->text + used, room, "%s\n", line);
    if (n < 0 || (size_t)n >= room)
        memcpy(r->text + sizeof r->text - 5, "...\n", 5);
}

/* ---- children ----------------------------------------------------------------- */

/* The children of a shutdown and how each ended. */
enum { KID_RUNNING, KID_EXITED, KID_TERMINATED, KID_KILLED };

typedef struct kids {
    mp_process **p;
    int *fd;    /* duplicated wait descriptors, -1 once ended */
    int *state; /* KID_* */
    size_t n;
} kids;

/* Reaps every child that has ended, marking it as ending in phase
 * `state`; returns how many still run. */
static size_t kids_reap(kids *k, int state)
{
    size_t left = 0;
    for (size_t i = 0; i < k->n; i++) {
        if (k->state[i] != KID_RUNNING)
            continue;
        if (mp__process_reap(k->p[i])) {
            k->state[i] = state;
            mp__close(k->fd[i]);
            k->fd[i] = -1;
        } else {
            left++;
        }
    }
    return left;
}

/* Waits until every child has ended or the deadline passes; with
 * interruptible, a forced shutdown ends the wait too.  Children that end
 * are reaped and marked `state`.  Returns how many still run. */
static size_t kids_wait(kids *k, int64_t deadline, int state, bool interruptible)
{
    struct pollfd *pfd = calloc(k->n ? k->n : 1, sizeof *pfd);
    mp__waiter w;
    bool waiter = pfd && mp__waiter_begin_fd(&w) == 0;
    size_t left;
    while ((left = kids_reap(k, state)) > 0) {
        if (interruptible && (atomic_load(&sd.force) || (waiter && mp__waiter_interrupted(&w))))
            break;
        if (mp__remaining_ns(deadline) <= 0)
            break;
        size_t np = 0;
        for (size_t i = 0; waiter && i < k->n; i++)
            if (k->state[i] == KID_RUNNING && k->fd[i] >= 0)
                pfd[np++] = (struct pollfd){.fd = k->fd[i], .events = POLLIN};
        int64_t until = deadline;
        if (!waiter || np < left) {
            /* No descriptor for some (no pidfds, or out of memory): look
             * again in a little while. */
            int64_t slice = mp__now_ns() + 10000000;
            until = deadline < slice ? deadline : slice;
        }
        if (waiter)
            (void)mp__waiter_poll(&w, pfd, np, until);
        else
            mp__sleep_ns(1000000);
    }
    if (waiter)
        mp__waiter_end(&w);
    free(pfd);
    return left;
}

/* Signals every child still running; notes each by name. */
static void kids_signal(kids *k, int signo, const char *verb, mp_shutdown_report *r)
{
    for (size_t i = 0; i < k->n; i++) {
        if (k->state[i] != KID_RUNNING)
            continue;
        (void)mp_process_signal(k->p[i], signo);
        note(r, MP_LOG_WARNING, "%s '%s' (pid %d)", verb, mp_process_name(k->p[i]),
             (int)mp_process_pid(k->p[i]));
    }
}

static int kids_take(kids *k)
{
    memset(k, 0, sizeof *k);
    int n = mp__registry_hold(&k->p);
    if (n <= 0)
        return n;
    k->n = (size_t)n;
    k->fd = malloc(k->n * sizeof *k->fd);
    k->state = calloc(k->n, sizeof *k->state);
    if (!k->fd || !k->state) {
        free(k->fd);
        free(k->state);
        mp__registry_release(k->p, k->n);
        memset(k, 0, sizeof *k);
        return MP_ENOMEM;
    }
    for (size_t i = 0; i < k->n; i++)
        k->fd[i] = mp__process_wait_fd_dup(k->p[i]);
    return n;
}

static void kids_free(kids *k)
{
    for (size_t i = 0; i < k->n; i++)
        mp__close(k->fd[i]);
    free(k->fd);
    free(k->state);
    if (k->p)
        mp__registry_release(k->p, k->n);
}

static int kids_count(const kids *k, int state)
{
    int n = 0;
    for (size_t i = 0; i < k->n; i++)
        n += k->state[i] == state;
    return n;
}

/* ---- the phases ------------------------------------------------------------------ */

static void phase_event(mp_shutdown_report *r)
{
    mp_event *ev;
    if (mp__sdev_get(&ev) == 0)
        (void)mp_event_set(ev);
    /* Waits in progress in this process are cancelled, so that threads
     * blocked in the library notice; the shutdown's own waits begin after
     * this and are not affected. */
    mp__waiter_cancel_all();
    r->signo = atomic_load(&sd.signo);
    note(r, MP_LOG_INFO, "begun%s%s: the shutdown event is set", r->signo ? " on " : "",
         r->signo ? mp__signal_name(r->signo) : "");
}

static void phase_close(mp_shutdown_report *r)
{
    tally t;
    closers_call(false, &t);
    r->closed = t.total;
    if (t.total) {
        char what[256];
        tally_text(&t, what, sizeof what);
        note(r, MP_LOG_INFO, "closed %s", what);
    }
}

/* Waits for the children to end by themselves, then terminates, then
 * kills what is left. */
static void phase_children(kids *k, const mp_shutdown_opts *o, mp_shutdown_report *r)
{
    r->children = (int)k->n;
    if (k->n == 0)
        return;
    note(r, MP_LOG_INFO, "waiting up to %.1f s for %d child%s to end", o->timeout, r->children,
         r->children == 1 ? "" : "ren");
    size_t left = kids_wait(k, mp__deadline(o->timeout), KID_EXITED, true);
    r->exited = kids_count(k, KID_EXITED);
    if (left > 0 && atomic_load(&sd.force))
        note(r, MP_LOG_WARNING, "forced: no more waiting");
    if (left > 0) {
        tally t;
        closers_call(true, &t);
        if (t.total) {
            char what[256];
            tally_text(&t, what, sizeof what);
            note(r, MP_LOG_INFO, "terminating %s", what);
        }
        kids_signal(k, SIGTERM, "terminating", r);
        left = kids_wait(k, mp__deadline(o->grace), KID_TERMINATED, true);
        r->terminated = kids_count(k, KID_TERMINATED);
    }
    if (left > 0) {
        kids_signal(k, SIGKILL, "killing", r);
        /* Never cut short: every child is reaped, unless the kernel holds
         * it (then it is reported lost, not waited for). */
        left = kids_wait(k, mp__deadline(KILL_WAIT), KID_KILLED, false);
        r->killed = kids_count(k, KID_KILLED);
        r->lost = (int)left;
        if (left)
            note(r, MP_LOG_ERROR, "%d child%s still there after SIGKILL", (int)left,
                 left == 1 ? " is" : "ren are");
    }
    note(r, r->terminated + r->killed ? MP_LOG_WARNING : MP_LOG_INFO,
         "children: %d ended by themselves, %d after SIGTERM, %d after SIGKILL", r->exited,
         r->terminated, r->killed);
}

static void phase_unlink(mp_shutdown_report *r)
{
    int n = mp__tracker_unlink_all();
    r->unlinked = n > 0 ? n : 0;
    if (n > 0)
        note(r, MP_LOG_INFO, "unlinked %d named segment%s", n, n == 1 ? "" : "s");
    else if (n < 0)
        note(r, MP_LOG_ERROR, "could not unlink the named segments: %s", mp_strerror(n));
}

/* ---- the API ------------------------------------------------------------------- */

static int run(const mp_shutdown_opts *o, mp_shutdown_report *r)
{
    int64_t t0 = mp__now_ns();
    memset(r, 0, sizeof *r);
    phase_event(r);
    phase_close(r);
    kids k;
    int rc = kids_take(&k);
    if (rc < 0)
        note(r, MP_LOG_ERROR, "cannot list the children: %s", mp_strerror(rc));
    phase_children(&k, o, r);
    kids_free(&k);
    /* The children had the timeout; what the objects run themselves has
     * at least the grace period on top of what the children took. */
    closers_reap(mp__deadline(o->grace));
    /* Its children are all reaped: nothing of the program's needs it. */
    (void)mp_forkserver_stop();
    phase_unlink(r);
    r->forced = atomic_load(&sd.force);
    r->seconds = (double)(mp__now_ns() - t0) / 1e9;
    note(r, MP_LOG_INFO, "done in %.3f s%s", r->seconds, r->forced ? " (forced)" : "");
    return r->terminated + r->killed;
}

int mp_shutdown_ex(const mp_shutdown_opts *opts, mp_shutdown_report *report)
{
    mp_shutdown_opts o = MP_SHUTDOWN_OPTS_INIT;
    if (opts)
        o = *opts;
    if (mp__timeout_check(o.timeout) < 0)
        return mp__fail(MP_EINVAL, "mp_shutdown_ex: opts.timeout must be a number of seconds "
                                   "(got NaN)");
    if (mp__duration_check(o.grace) < 0)
        return mp__fail(MP_EINVAL, "mp_shutdown_ex: opts.grace must be >= 0 seconds (got %g)",
                        o.grace);
    unsigned gen = atomic_load(&sd.gen);
    pthread_mutex_lock(&sd.run);
    if (atomic_load(&sd.gen) == gen) {
        /* Nobody finished one while this call waited: run it. */
        atomic_store(&sd.running, true);
        sd.result = run(&o, &sd.last);
        atomic_store(&sd.running, false);
        atomic_fetch_add(&sd.gen, 1);
    }
    int rc = sd.result;
    if (report)
        *report = sd.last;
    pthread_mutex_unlock(&sd.run);
    return rc;
}

int mp_shutdown(double timeout)
{
    mp_shutdown_opts o = MP_SHUTDOWN_OPTS_INIT;
    o.timeout = timeout;
    return mp_shutdown_ex(&o, NULL);
}

int mp_shutdown_report_get(mp_shutdown_report *out)
{
    MP__NONNULL(out);
    pthread_mutex_lock(&sd.run);
    int rc = atomic_load(&sd.gen) ? 0 : MP_ESTATE;
    if (rc == 0)
        *out = sd.last;
    pthread_mutex_unlock(&sd.run);
    return rc;
}

void mp__shutdown_note_signal(int signo)
{
    int none = 0;
    if (atomic_compare_exchange_strong(&sd.signo, &none, signo))
        atomic_store(&sd.signal_gen, atomic_load(&sd.gen));
}

bool mp__shutdown_ran_since_signal(void)
{
    return atomic_load(&sd.signo) && atomic_load(&sd.gen) != atomic_load(&sd.signal_gen);
}

void mp__shutdown_force(void)
{
    atomic_store(&sd.force, true);
    mp__waiter_cancel_all();
}

bool mp__shutdown_running(void)
{
    return atomic_load(&sd.running);
}
