/*
 * future.c - futures, waits on many of them, iteration in order of
 * completion, and waits that a Ctrl-C can interrupt.
 *
 * DESIGN
 * A future is a small object in the parent: a mutex, an outcome written
 * once, a list of watchers and a list of done callbacks.  Whoever finishes
 * it (a pool's supervisor) writes the outcome and sets `finished` with
 * release ordering; a reader that sees it needs no lock to read the
 * outcome, which never changes afterwards.
 *
 * Callbacks before waiters (as Python's Pool: a result's callback has run
 * before get() returns; Future.cancel() runs the callbacks before it
 * returns).  A future is seen as done - by every query and every wait -
 * only once its done callbacks have run: `done` is set after them (at
 * once when there are none), and watchers are told then.  The callbacks
 * themselves, and anything they call, see a finished future as done: a
 * thread running callbacks (in_callback) judges by `finished`, so that a
 * callback may read its own future, and wait for another one whose
 * callbacks are queued behind it in the same thread, without waiting for
 * itself.  For that, watchers hear of `finished` too (on_finish).  A
 * cancel that finishes the future in the cancelling thread leaves its
 * callbacks to that thread (cancelling), which runs them before
 * mp_future_cancel() returns.
 *
 * Every wait - on one future, on many (mp_wait), for the next completion
 * (as_completed), for an imap item - is a waiter: a 32-bit word the thread
 * sleeps on with a futex, which each awaited event bumps.  So one thread
 * can wait for any number of things without a condition variable per
 * pair, and a wait is one futex call once registered.
 *
 * Ctrl-C.  A wait that starts while SIGINT has its default action installs
 * the library's handler for its duration (reference-counted across
 * threads, the original disposition restored by the last one out).  The
 * handler bumps a generation count and the words of every registered
 * waiter, so a waiter in any thread wakes up, sees the count moved, and
 * returns MP_ECANCELED after asking the owners of what it waited for to
 * stop (a pool terminates).  The words live in a static table: the handler
 * may run in another thread at any moment, and must never touch memory a
 * returning waiter has released.  A program with a SIGINT handler of its
 * own, or that ignores SIGINT, is left exactly as it is.
 *
 * Shutdown.  mp__waiter_cancel_all() (called by mp_shutdown() and by the
 * handlers of mp_signals_install()) moves a second count and wakes every
 * registered waiter the same way, whatever SIGINT's disposition: every
 * library wait in progress in this process then returns MP_ECANCELED.
 *
 * Descriptors.  A wait that sleeps in poll() rather than on its word
 * (joining a process, waiting on connections) asks for an eventfd with its
 * slot (mp__waiter_begin_fd); the handler and cancel_all write to it as
 * well as bumping the word.  The eventfds are made once per slot and kept:
 * a slot is reused, and a wait should cost no descriptor set-up.  A forked
 * child drops its copies (they are shared with the parent's file table
 * entries) and makes its own when it needs them.
 *
 * Lock order: a future's lock, then an as_completed iterator's lock; an
 * owner's (pool's) locks come before a future's, so calls into the owner
 * (cancel, running, interrupt) are made with no future lock held.
 */
#define _GNU_SOURCE
#include "future.h"
#include "log.h"
#include "testhooks.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>

typedef struct cb_node {
    struct cb_node *next;
    mp_future_cb fn;
    void *ctx;
} cb_node;

struct mp_future {
    pthread_mutex_t lock;
    _Atomic int refs;
    _Atomic uint32_t finished; /* the outcome is written */
    _Atomic uint32_t done;     /* and its callbacks have run */
    bool deferred;             /* finished by a cancel whose thread runs the callbacks */
    int status;
    int task_error;
    int exitcode;
    long long failed_index;
    char *report;
    void *result;
    size_t len;
    bool cancelled;
    mp__watch *watchers;
    cb_node *cbs, **cbs_tail;
    const mp__future_ops *ops; /* NULL once finished */
    void *owner;
    uint64_t token;
};

/* ---- interruptible waits ----------------------------------------------- */

#define WAIT_SLOTS 128

static struct {
    pthread_mutex_t lock;
    int users; /* waits counting on the handler */
    bool installed;
    struct sigaction old;
} intr = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Atomic uint32_t intr_gen;
static _Atomic uint32_t cancel_gen;
static _Atomic uint32_t slot_used[WAIT_SLOTS];
static _Atomic uint32_t slot_word[WAIT_SLOTS];
/* The slot's eventfd plus one (0: none yet). */
static _Atomic int slot_fd[WAIT_SLOTS];

/* Wakes every registered waiter, through its word and its eventfd.
 * Async-signal-safe. */
static void wake_all_slots(void)
{
    for (int i = 0; i < WAIT_SLOTS; i++) {
        if (atomic_load(&slot_used[i])) {
            atomic_fetch_add(&slot_word[i], 1);
            (void)mp__futex_wake(&slot_word[i], INT32_MAX);
            int fd = atomic_load(&slot_fd[i]) - 1;
            if (fd >= 0)
                mp__eventfd_signal(fd);
        }
    }
}

static void intr_handler(int signo)
{
    (void)signo;
    int saved = errno;
    atomic_fetch_add(&intr_gen, 1);
    wake_all_slots();
    errno = saved;
}

void mp__waiter_cancel_all(void)
{
    int saved = errno;
    atomic_fetch_add(&cancel_gen, 1);
    wake_all_slots();
    errno = saved;
}

/* In a forked child: no wait is in progress (only the forking thread
 * exists), the parent's handler is not this process's business, and the
 * slots' eventfds are the parent's open files. */
static void waiter_atfork_child(void)
{
    if (intr.installed)
        sigaction(SIGINT, &intr.old, NULL);
    intr.installed = false;
    intr.users = 0;
    pthread_mutex_init(&intr.lock, NULL);
    for (int i = 0; i < WAIT_SLOTS; i++) {
        atomic_store(&slot_used[i], 0);
        int fd = atomic_exchange(&slot_fd[i], 0) - 1;
        mp__close(fd);
    }
}

static pthread_once_t waiter_once = PTHREAD_ONCE_INIT;

void (*mp__waiter_fault)(void);

static void waiter_register_atfork(void)
{
    pthread_atfork(NULL, NULL, waiter_atfork_child);
}

void mp__waiter_begin(mp__waiter *w)
{
    pthread_once(&waiter_once, waiter_register_atfork);
    w->slot = -1;
    w->catching = false;
    w->word = NULL;
    w->fd = -1;
    w->own_fd = false;
    w->cgen = atomic_load(&cancel_gen);
    for (int i = 0; i < WAIT_SLOTS; i++) {
        uint32_t expect = 0;
        if (atomic_load_explicit(&slot_used[i], memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&slot_used[i], &expect, 1)) {
            w->slot = i;
            w->word = &slot_word[i];
            break;
        }
    }
    if (w->slot < 0) {
        /* More waits at once than the table holds: this one waits without
         * Ctrl-C support, on a word of its own. */
        w->word = malloc(sizeof *w->word);
        if (w->word)
            atomic_init(w->word, 0);
        return;
    }
    pthread_mutex_lock(&intr.lock);
    /* The generation before the handler can move it: a SIGINT the handler
     * catches from the moment it is installed interrupts this wait. */
    w->gen = atomic_load(&intr_gen);
    if (intr.users == 0) {
        struct sigaction cur;
        if (sigaction(SIGINT, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
            cur.sa_handler == SIG_DFL) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = intr_handler;
            sigemptyset(&sa.sa_mask);
            /* No SA_RESTART: a futex wait in the receiving thread returns
             * at once instead of being restarted. */
            sa.sa_flags = 0;
            intr.installed = sigaction(SIGINT, &sa, &intr.old) == 0;
            if (intr.installed && mp__waiter_fault)
                mp__waiter_fault();
        } else {
            intr.installed = false;
        }
    }
    if (intr.installed) {
        intr.users++;
        w->catching = true;
    }
    pthread_mutex_unlock(&intr.lock);
}

int mp__waiter_begin_fd(mp__waiter *w)
{
    mp__waiter_begin(w);
    if (w->slot < 0) {
        /* No slot: a descriptor of its own, which nothing but the wait
         * itself will write to (no Ctrl-C support, as for the word). */
        w->fd = mp__eventfd_new();
        w->own_fd = w->fd >= 0;
    } else {
        int fd = atomic_load(&slot_fd[w->slot]) - 1;
        if (fd < 0) {
            fd = mp__eventfd_new();
            if (fd >= 0)
                atomic_store(&slot_fd[w->slot], fd + 1);
        } else {
            mp__eventfd_drain(fd); /* what an earlier user of the slot left */
        }
        w->fd = fd;
    }
    if (w->fd < 0) {
        int rc = w->fd;
        mp__waiter_end(w);
        return rc;
    }
    return 0;
}

int mp__waiter_poll(mp__waiter *w, struct pollfd *fds, size_t n, int64_t deadline)
{
    struct pollfd stack[16];
    struct pollfd *all = n < MP__ARRAY_SIZE(stack) ? stack : calloc(n + 1, sizeof *all);
    if (!all)
        return MP_ENOMEM;
    if (n)
        memcpy(all, fds, n * sizeof *all);
    all[n] = (struct pollfd){.fd = w->fd, .events = POLLIN};
    int rc;
    for (;;) {
        if (mp__waiter_interrupted(w)) {
            rc = 0;
            break;
        }
        int64_t left = mp__remaining_ns(deadline);
        if (left <= 0) {
            rc = MP_ETIMEDOUT;
            break;
        }
        /* poll() takes milliseconds: round up, so as never to return
         * before the deadline (the loop re-checks it). */
        int ms = left == INT64_MAX             ? -1
                 : left / 1000000 >= INT32_MAX ? INT32_MAX
                                               : (int)((left + 999999) / 1000000);
        rc = poll(all, (nfds_t)n + 1, ms);
        if (rc < 0 && errno == EINTR)
            continue; /* a handler that matters bumped the generation */
        if (rc < 0) {
            rc = -errno;
            break;
        }
        if (rc == 0)
            continue; /* the loop decides whether the deadline passed */
        if (all[n].revents)
            mp__eventfd_drain(w->fd);
        rc = 0;
        for (size_t i = 0; i < n; i++) {
            fds[i].revents = all[i].revents;
            if (all[i].revents)
                rc++;
        }
        if (rc > 0 || all[n].revents)
            break;
    }
    if (all != stack)
        free(all);
    return rc;
}

int mp__waiter_fd(const mp__waiter *w)
{
    return w->fd;
}

void mp__waiter_end(mp__waiter *w)
{
    if (w->own_fd)
        mp__close(w->fd);
    w->fd = -1;
    w->own_fd = false;
    if (w->slot < 0) {
        free((void *)w->word);
        w->word = NULL;
        return;
    }
    if (w->catching) {
        pthread_mutex_lock(&intr.lock);
        if (--intr.users == 0 && intr.installed) {
            sigaction(SIGINT, &intr.old, NULL);
            intr.installed = false;
        }
        pthread_mutex_unlock(&intr.lock);
    }
    atomic_store(&slot_used[w->slot], 0);
    w->word = NULL;
}

bool mp__waiter_interrupted(const mp__waiter *w)
{
    return (w->catching && atomic_load(&intr_gen) != w->gen) || atomic_load(&cancel_gen) != w->cgen;
}

void mp__waiter_wake(_Atomic uint32_t *word)
{
    if (!word)
        return;
    atomic_fetch_add(word, 1);
    (void)mp__futex_wake(word, INT32_MAX);
}

/* Sleeps until the word moves past seen or the deadline.  Returns
 * MP_ETIMEDOUT at the deadline, 0 otherwise.  A waiter without a word
 * (out of memory) polls. */
static int waiter_sleep(mp__waiter *w, uint32_t seen, int64_t deadline)
{
    if (!w->word) {
        int64_t left = mp__remaining_ns(deadline);
        if (left <= 0)
            return MP_ETIMEDOUT;
        mp__sleep_ns(left < 1000000 ? left : 1000000);
        return 0;
    }
    int rc = mp__futex_wait(w->word, seen, deadline);
    return rc == MP_ETIMEDOUT ? MP_ETIMEDOUT : 0;
}

static uint32_t waiter_seen(const mp__waiter *w)
{
    return w->word ? atomic_load(w->word) : 0;
}

/* ---- futures ------------------------------------------------------------- */

/* Callbacks running in this thread (nested: a callback added to a done
 * future runs at once, in the thread that adds it). */
static _Thread_local int in_callback;

/* The future this thread is cancelling: if the cancel finishes it here,
 * its callbacks are left to mp_future_cancel(), which runs them. */
static _Thread_local const mp_future *cancelling;

/* Whether f counts as done for this thread (see DESIGN). */
static bool visible(const mp_future *f)
{
    if (atomic_load_explicit(&f->done, memory_order_acquire))
        return true;
    return in_callback && atomic_load_explicit(&f->finished, memory_order_acquire);
}

static mp_future *future_alloc(void)
{
    mp_future *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->cbs_tail = &f->cbs;
    f->failed_index = -1;
    return f;
}

mp_future *mp__future_new(const mp__future_ops *ops, void *owner)
{
    mp_future *f = future_alloc();
    if (!f)
        return NULL;
    atomic_init(&f->refs, 2);
    f->ops = ops;
    f->owner = owner;
    return f;
}

mp_future *mp__future_new_failed(int status, const char *report)
{
    mp_future *f = future_alloc();
    if (!f)
        return NULL;
    atomic_init(&f->refs, 1);
    f->status = status;
    f->cancelled = status == MP_ECANCELED;
    f->report = report ? strdup(report) : NULL;
    atomic_store(&f->finished, 1);
    atomic_store(&f->done, 1);
    return f;
}

void mp__future_set_token(mp_future *f, uint64_t token)
{
    f->token = token;
}

uint64_t mp__future_token(const mp_future *f)
{
    return f->token;
}

void mp__future_ref(mp_future *f)
{
    atomic_fetch_add(&f->refs, 1);
}

void mp_future_free(mp_future *f)
{
    if (!f || atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    /* The last reference: nothing can reach f any more (watchers are
     * removed by their waiters before those drop their references). */
    for (cb_node *c = f->cbs, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(f->result);
    free(f->report);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

/* Runs cbs in order, as callbacks (see in_callback), and frees them. */
static void run_cbs(mp_future *f, cb_node *cbs)
{
    in_callback++;
    for (cb_node *c = cbs, *next; c; c = next) {
        next = c->next;
        c->fn(f, c->ctx);
        free(c);
    }
    in_callback--;
}

/* f is done: every query and wait now sees it so.  Under f->lock. */
static void mark_done(mp_future *f)
{
    atomic_store_explicit(&f->done, 1, memory_order_release);
    for (mp__watch *w = f->watchers, *next; w; w = next) {
        next = w->next;
        w->linked = false;
        w->prev = w->next = NULL;
        w->notify(w, f);
    }
    f->watchers = NULL;
}

/* Runs f's done callbacks - and those added while they run - then marks
 * it done.  No lock held. */
static void settle(mp_future *f)
{
    for (;;) {
        pthread_mutex_lock(&f->lock);
        cb_node *cbs = f->cbs;
        f->cbs = NULL;
        f->cbs_tail = &f->cbs;
        if (!cbs) {
            mark_done(f);
            pthread_mutex_unlock(&f->lock);
            return;
        }
        pthread_mutex_unlock(&f->lock);
        run_cbs(f, cbs);
    }
}

/* settle() in the owner's callback thread, with the reference the
 * hand-over took. */
static void settle_handed(void *arg)
{
    mp_future *f = arg;
    settle(f);
    mp_future_free(f);
}

void mp__future_finish(mp_future *f, int status, void *result, size_t len, int task_error,
                       int exitcode, char *report, long long failed_index)
{
    pthread_mutex_lock(&f->lock);
    if (atomic_load(&f->finished)) {
        pthread_mutex_unlock(&f->lock);
        free(result);
        free(report);
        return;
    }
    f->status = status;
    f->result = status == 0 ? result : NULL;
    f->len = status == 0 ? len : 0;
    if (status != 0)
        free(result);
    f->task_error = task_error;
    f->exitcode = exitcode;
    f->report = report;
    f->failed_index = failed_index;
    f->cancelled = status == MP_ECANCELED;
    const mp__future_ops *ops = f->ops;
    void *owner = f->owner;
    f->ops = NULL;
    f->owner = NULL;
    atomic_store_explicit(&f->finished, 1, memory_order_release);
    for (mp__watch *w = f->watchers; w; w = w->next)
        if (w->on_finish)
            w->on_finish(w, f);
    /* With no callbacks it is done now; otherwise once they have run: in
     * the owner's callback thread, or in the thread whose cancel this is,
     * before its mp_future_cancel() returns. */
    bool has_cbs = f->cbs != NULL;
    f->deferred = has_cbs && cancelling == f;
    if (!has_cbs)
        mark_done(f);
    bool hand_over = has_cbs && !f->deferred;
    pthread_mutex_unlock(&f->lock);

    if (hand_over) {
        mp__future_ref(f); /* dropped by settle_handed */
        if (!ops || !ops->dispatch || ops->dispatch(owner, settle_handed, f) != 0)
            settle_handed(f);
    }
    mp_future_free(f); /* the owner's reference */
}

static void watch_add(mp_future *f, mp__watch *w)
{
    w->prev = NULL;
    w->next = f->watchers;
    if (f->watchers)
        f->watchers->prev = w;
    f->watchers = w;
    w->linked = true;
}

static void watch_remove(mp_future *f, mp__watch *w)
{
    if (!w->linked)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        f->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->linked = false;
}

static void notify_word(mp__watch *w, mp_future *f)
{
    (void)f;
    mp__waiter_wake(w->word);
    if (w->wake_fd1 > 0)
        mp__eventfd_signal(w->wake_fd1 - 1);
}

void mp__future_watch(mp_future *f, mp__watch *node, _Atomic uint32_t *word, int fd)
{
    *node = (mp__watch){.notify = notify_word, .word = word, .wake_fd1 = fd + 1};
    pthread_mutex_lock(&f->lock);
    if (!atomic_load(&f->done))
        watch_add(f, node);
    pthread_mutex_unlock(&f->lock);
}

void mp__future_unwatch(mp_future *f, mp__watch *node)
{
    pthread_mutex_lock(&f->lock);
    watch_remove(f, node);
    pthread_mutex_unlock(&f->lock);
}

/* Tells the owner of an unfinished f that a SIGINT came. */
static void interrupt_owner(mp_future *f)
{
    pthread_mutex_lock(&f->lock);
    const mp__future_ops *ops = f->ops;
    void *owner = f->owner;
    if (ops)
        ops->hold(owner);
    pthread_mutex_unlock(&f->lock);
    if (ops) {
        ops->interrupt(owner);
        ops->release(owner);
    }
}

/* Waits for f until the deadline.  Returns 0 when finished, MP_ETIMEDOUT,
 * or MP_ECANCELED on SIGINT (after interrupting f's owner). */
static int future_wait(mp_future *f, int64_t deadline)
{
    if (visible(f))
        return 0;
    if (mp__remaining_ns(deadline) <= 0)
        return MP_ETIMEDOUT;
    mp__waiter w;
    mp__waiter_begin(&w);
    mp__watch node = {.on_finish = notify_word, .notify = notify_word, .word = w.word};
    pthread_mutex_lock(&f->lock);
    if (!atomic_load(&f->done))
        watch_add(f, &node);
    pthread_mutex_unlock(&f->lock);
    int rc = 0;
    for (;;) {
        uint32_t seen = waiter_seen(&w);
        if (visible(f))
            break;
        if (mp__waiter_interrupted(&w)) {
            rc = MP_ECANCELED;
            break;
        }
        if (waiter_sleep(&w, seen, deadline) == MP_ETIMEDOUT) {
            rc = visible(f) ? 0 : MP_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_lock(&f->lock);
    watch_remove(f, &node);
    pthread_mutex_unlock(&f->lock);
    mp__waiter_end(&w);
    if (rc == MP_ECANCELED)
        interrupt_owner(f);
    return rc;
}

/* The detail of a refused wait (mp_last_error_detail): obj if it is NULL,
 * else bad (the rule another argument broke), else the timeout.  Out of
 * line, so that the checks on the way to a result cost no more. */
__attribute__((cold, noinline)) static int refused(const char *call, const char *name,
                                                   const void *obj, const char *bad, double timeout)
{
    if (!obj)
        return mp__fail(MP_EINVAL, "%s: %s must not be NULL", call, name);
    if (bad)
        return mp__fail(MP_EINVAL, "%s: %s", call, bad);
    return mp__fail(MP_EINVAL, "%s: timeout must be a number, < 0 for forever (got %g)", call,
                    timeout);
}

int mp_future_wait(mp_future *f, double timeout)
{
    if (!f || mp__timeout_check(timeout) < 0)
        return refused("mp_future_wait", "f", f, NULL, timeout);
    return future_wait(f, mp__deadline(timeout));
}

int mp_future_get(mp_future *f, void *out, size_t cap, size_t *len, double timeout)
{
    if (!f || (cap && !out) || mp__timeout_check(timeout) < 0)
        return refused("mp_future_get", "f", f,
                       cap && !out ? "out must not be NULL when cap > 0" : NULL, timeout);
    /* Finished already (the common case when draining many): no clock. */
    int rc = visible(f) ? 0 : future_wait(f, mp__deadline(timeout));
    if (rc < 0)
        return rc;
    if (len)
        *len = f->len;
    if (f->status != 0)
        return f->status;
    /* No buffer at all asks for the length only: that is an answer, not a
     * buffer too small. */
    if (!out)
        return 0;
    if (f->len > cap)
        return mp__fail(MP_EMSGSIZE,
                        "mp_future_get: cap must be at least the result's %zu bytes (got %zu)",
                        f->len, cap);
    if (f->len)
        memcpy(out, f->result, f->len);
    return 0;
}

const void *mp_future_result(const mp_future *f, size_t *len)
{
    if (len)
        *len = 0;
    if (!f || !visible(f) || f->status != 0)
        return NULL;
    if (len)
        *len = f->len;
    return f->result;
}

bool mp_future_done(const mp_future *f)
{
    return f && visible(f);
}

bool mp_future_ready(const mp_future *f)
{
    return mp_future_done(f);
}

bool mp_future_cancelled(const mp_future *f)
{
    return mp_future_done(f) && f->cancelled;
}

int mp_future_status(const mp_future *f)
{
    MP__NONNULL(f);
    return mp_future_done(f) ? f->status : MP_ESTATE;
}

bool mp_future_successful(const mp_future *f)
{
    return mp_future_done(f) && f->status == 0;
}

int mp_future_task_error(const mp_future *f)
{
    return mp_future_done(f) ? f->task_error : 0;
}

int mp_future_exitcode(const mp_future *f)
{
    return mp_future_done(f) ? f->exitcode : 0;
}

const char *mp_future_report(const mp_future *f)
{
    return mp_future_done(f) ? f->report : NULL;
}

long long mp_future_failed_index(const mp_future *f)
{
    return mp_future_done(f) ? f->failed_index : -1;
}

bool mp_future_running(const mp_future *f)
{
    if (!f)
        return false;
    mp_future *mf = (mp_future *)f;
    pthread_mutex_lock(&mf->lock);
    const mp__future_ops *ops = mf->ops;
    void *owner = mf->owner;
    if (ops)
        ops->hold(owner);
    pthread_mutex_unlock(&mf->lock);
    if (!ops)
        return false;
    bool r = ops->running(owner, f);
    ops->release(owner);
    return r;
}

int mp_future_cancel(mp_future *f)
{
    MP__NONNULL(f);
    pthread_mutex_lock(&f->lock);
    if (atomic_load(&f->finished)) {
        int rc = f->cancelled ? 0 : MP_EBUSY;
        pthread_mutex_unlock(&f->lock);
        return rc;
    }
    const mp__future_ops *ops = f->ops;
    void *owner = f->owner;
    if (ops)
        ops->hold(owner);
    pthread_mutex_unlock(&f->lock);
    if (!ops)
        return MP_EBUSY;
    /* Should the cancel finish f here, its callbacks are left to this
     * thread (mp__future_finish), which runs them before returning, as
     * Python's Future.cancel() does. */
    const mp_future *outer = cancelling;
    cancelling = f;
    int rc = ops->cancel(owner, f);
    cancelling = outer;
    ops->release(owner);
    pthread_mutex_lock(&f->lock);
    bool mine = f->deferred;
    f->deferred = false;
    pthread_mutex_unlock(&f->lock);
    if (mine)
        settle(f);
    return rc;
}

int mp_future_add_done_callback(mp_future *f, mp_future_cb fn, void *ctx)
{
    MP__NONNULL(f);
    MP__NONNULL(fn);
    cb_node *c = malloc(sizeof *c);
    if (!c)
        return MP_ENOMEM;
    c->fn = fn;
    c->ctx = ctx;
    c->next = NULL;
    pthread_mutex_lock(&f->lock);
    if (!visible(f)) {
        /* Run by whoever settles f (see settle), even when the outcome is
         * written already. */
        *f->cbs_tail = c;
        f->cbs_tail = &c->next;
        pthread_mutex_unlock(&f->lock);
        return 0;
    }
    pthread_mutex_unlock(&f->lock);
    run_cbs(f, c);
    return 0;
}

/* ---- waiting for many ------------------------------------------------------- */

static bool is_exception(const mp_future *f)
{
    return f->status != 0 && !f->cancelled;
}

/* Whether the condition holds; *ndone receives the finished count. */
static bool wait_met(mp_future *const *fs, size_t n, mp_wait_mode mode, size_t *ndone)
{
    size_t done = 0;
    bool exception = false;
    for (size_t i = 0; i < n; i++) {
        if (mp_future_done(fs[i])) {
            done++;
            exception |= is_exception(fs[i]);
        }
    }
    *ndone = done;
    switch (mode) {
    case MP_FIRST_COMPLETED:
        return done > 0 || n == 0;
    case MP_FIRST_EXCEPTION:
        return exception || done == n;
    default:
        return done == n;
    }
}

int mp_wait(mp_future *const *fs, size_t n, mp_wait_mode mode, double timeout)
{
    if (n && !fs)
        return mp__fail(MP_EINVAL, "mp_wait: fs must not be NULL when n > 0 (got n %zu)", n);
    if (mp__timeout_check(timeout) < 0)
        return mp__fail(MP_EINVAL, "mp_wait: timeout must be a number, < 0 for forever (got %g)",
                        timeout);
    if (mode != MP_ALL_COMPLETED && mode != MP_FIRST_COMPLETED && mode != MP_FIRST_EXCEPTION)
        return mp__fail(MP_EINVAL,
                        "mp_wait: mode must be MP_ALL_COMPLETED, "
                        "MP_FIRST_COMPLETED or MP_FIRST_EXCEPTION (got %d)",
                        (int)mode);
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return mp__fail(MP_EINVAL, "mp_wait: fs[%zu] must not be NULL", i);
    int64_t deadline = mp__deadline(timeout);
    size_t ndone;
    if (wait_met(fs, n, mode, &ndone))
        return (int)(ndone > INT32_MAX ? INT32_MAX : ndone);
    if (mp__remaining_ns(deadline) <= 0)
        return MP_ETIMEDOUT;

    mp__watch stack_nodes[16];
    mp__watch *nodes = n <= 16 ? stack_nodes : calloc(n, sizeof *nodes);
    if (!nodes)
        return MP_ENOMEM;
    mp__waiter w;
    mp__waiter_begin(&w);
    for (size_t i = 0; i < n; i++) {
        nodes[i] = (mp__watch){.on_finish = notify_word, .notify = notify_word, .word = w.word};
        pthread_mutex_lock(&fs[i]->lock);
        if (!atomic_load(&fs[i]->done))
            watch_add(fs[i], &nodes[i]);
        pthread_mutex_unlock(&fs[i]->lock);
    }
    int rc = 0;
    for (;;) {
        uint32_t seen = waiter_seen(&w);
        if (wait_met(fs, n, mode, &ndone))
            break;
        if (mp__waiter_interrupted(&w)) {
            rc = MP_ECANCELED;
            break;
        }
        if (waiter_sleep(&w, seen, deadline) == MP_ETIMEDOUT) {
            rc = wait_met(fs, n, mode, &ndone) ? 0 : MP_ETIMEDOUT;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&fs[i]->lock);
        watch_remove(fs[i], &nodes[i]);
        pthread_mutex_unlock(&fs[i]->lock);
    }
    mp__waiter_end(&w);
    if (nodes != stack_nodes)
        free(nodes);
    if (rc == MP_ECANCELED) {
        for (size_t i = 0; i < n; i++)
            interrupt_owner(fs[i]);
        return rc;
    }
    if (rc < 0)
        return rc;
    return (int)(ndone > INT32_MAX ? INT32_MAX : ndone);
}

/* ---- as_completed ------------------------------------------------------------- */

struct mp_as_completed {
    pthread_mutex_t lock;
    size_t n;
    mp_future **fs;
    mp__watch *nodes;
    size_t *ready; /* indices in the order the outcomes came, a queue */
    size_t ready_head, ready_tail;
    size_t yielded;
    _Atomic uint32_t *word; /* of the thread waiting in next, if any */
};

/* Queues the future's index when its outcome comes (once), and wakes the
 * waiting thread then and when the future is done.  Under f's lock. */
static void notify_iter(mp__watch *w, mp_future *f)
{
    (void)f;
    mp_as_completed *it = w->ctx;
    pthread_mutex_lock(&it->lock);
    if (!w->queued) {
        w->queued = true;
        it->ready[it->ready_tail++] = w->index;
    }
    mp__waiter_wake(it->word);
    pthread_mutex_unlock(&it->lock);
}

/* The index of the first queued future that is done for this thread,
 * taken from the queue; SIZE_MAX when there is none (an outcome may have
 * come whose callbacks still run).  Under it->lock. */
static size_t take_done(mp_as_completed *it)
{
    for (size_t k = it->ready_head; k < it->ready_tail; k++) {
        if (visible(it->fs[it->ready[k]])) {
            size_t idx = it->ready[k];
            it->ready[k] = it->ready[it->ready_head];
            it->ready[it->ready_head++] = idx;
            return idx;
        }
    }
    return SIZE_MAX;
}

/* A future's place in the caller's list, for finding repeats. */
typedef struct fut_pos {
    mp_future *f;
    size_t i;
} fut_pos;

static int fut_pos_cmp(const void *a, const void *b)
{
    const fut_pos *x = a, *y = b;
    if (x->f != y->f)
        return (uintptr_t)x->f < (uintptr_t)y->f ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Copies fs to uniq without repeats, each future at its first place (as
 * Python's as_completed iterates set(fs)).  Returns how many there are, or
 * (size_t)-1 when memory runs out. */
static size_t unique_futures(mp_future *const *fs, size_t n, mp_future **uniq)
{
    fut_pos *pos = malloc((n ? n : 1) * sizeof *pos);
    bool *repeat = calloc(n ? n : 1, sizeof *repeat);
    if (!pos || !repeat) {
        free(pos);
        free(repeat);
        return (size_t)-1;
    }
    for (size_t i = 0; i < n; i++)
        pos[i] = (fut_pos){fs[i], i};
    qsort(pos, n, sizeof *pos, fut_pos_cmp);
    for (size_t k = 1; k < n; k++)
        if (pos[k].f == pos[k - 1].f)
            repeat[pos[k].i] = true;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!repeat[i])
            uniq[m++] = fs[i];
    free(pos);
    free(repeat);
    return m;
}

int mp_as_completed_new(mp_future *const *fs, size_t n, mp_as_completed **out)
{
    MP__NONNULL(out);
    *out = NULL;
    if (n && !fs)
        return mp__fail(MP_EINVAL,
                        "mp_as_completed_new: fs must not be NULL when n > 0 (got n %zu)", n);
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return mp__fail(MP_EINVAL, "mp_as_completed_new: fs[%zu] must not be NULL", i);
    mp_as_completed *it = calloc(1, sizeof *it);
    if (!it)
        return MP_ENOMEM;
    size_t cnt = n ? n : 1;
    it->fs =
        calloc(cnt, sizeof *it->fs); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
    it->nodes = calloc(cnt, sizeof *it->nodes);
    it->ready = calloc(cnt, sizeof *it->ready);
    if (!it->fs || !it->nodes || !it->ready) {
        free(it->fs);
        free(it->nodes);
        free(it->ready);
        free(it);
        return MP_ENOMEM;
    }
    n = unique_futures(fs, n, it->fs);
    if (n == (size_t)-1) {
        free(it->fs);
        free(it->nodes);
        free(it->ready);
        free(it);
        return MP_ENOMEM;
    }
    pthread_mutex_init(&it->lock, NULL);
    it->n = n;
    for (size_t i = 0; i < n; i++) {
        mp_future *f = it->fs[i];
        mp__future_ref(f);
        it->nodes[i] =
            (mp__watch){.on_finish = notify_iter, .notify = notify_iter, .ctx = it, .index = i};
        pthread_mutex_lock(&f->lock);
        if (atomic_load(&f->finished)) {
            it->nodes[i].queued = true;
            pthread_mutex_lock(&it->lock);
            it->ready[it->ready_tail++] = i;
            pthread_mutex_unlock(&it->lock);
        }
        if (!atomic_load(&f->done))
            watch_add(f, &it->nodes[i]);
        pthread_mutex_unlock(&f->lock);
    }
    *out = it;
    return 0;
}

int mp_as_completed_next(mp_as_completed *it, mp_future **f, double timeout)
{
    if (!it || !f || mp__timeout_check(timeout) < 0)
        return refused("mp_as_completed_next", "it", it, !f ? "f must not be NULL" : NULL, timeout);
    int64_t deadline = mp__deadline(timeout);
    mp__waiter w = {.slot = -1};
    bool waiting = false;
    int rc = 0;
    for (;;) {
        pthread_mutex_lock(&it->lock);
        size_t idx = take_done(it);
        if (idx != SIZE_MAX) {
            *f = it->fs[idx];
            it->yielded++;
            it->word = NULL;
            pthread_mutex_unlock(&it->lock);
            rc = 0;
            break;
        }
        if (it->yielded == it->n) {
            it->word = NULL;
            pthread_mutex_unlock(&it->lock);
            rc = MP_EOF;
            break;
        }
        if (!waiting) {
            pthread_mutex_unlock(&it->lock);
            if (mp__remaining_ns(deadline) <= 0) {
                rc = MP_ETIMEDOUT;
                break;
            }
            mp__waiter_begin(&w);
            waiting = true;
            pthread_mutex_lock(&it->lock);
            it->word = w.word;
            pthread_mutex_unlock(&it->lock);
            continue;
        }
        uint32_t seen = waiter_seen(&w);
        pthread_mutex_unlock(&it->lock);
        /* The word was read under the lock that notify_iter bumps it
         * under, after the queue was found empty: no wake-up is lost. */
        if (mp__waiter_interrupted(&w)) {
            rc = MP_ECANCELED;
            break;
        }
        if (waiter_sleep(&w, seen, deadline) == MP_ETIMEDOUT) {
            pthread_mutex_lock(&it->lock);
            bool any = false;
            for (size_t k = it->ready_head; k < it->ready_tail && !any; k++)
                any = visible(it->fs[it->ready[k]]);
            pthread_mutex_unlock(&it->lock);
            if (!any) {
                rc = MP_ETIMEDOUT;
                break;
            }
        }
    }
    if (waiting) {
        pthread_mutex_lock(&it->lock);
        it->word = NULL;
        pthread_mutex_unlock(&it->lock);
        mp__waiter_end(&w);
    }
    if (rc == MP_ECANCELED)
        for (size_t i = 0; i < it->n; i++)
            interrupt_owner(it->fs[i]);
    return rc;
}

void mp_as_completed_free(mp_as_completed *it)
{
    if (!it)
        return;
    for (size_t i = 0; i < it->n; i++) {
        mp_future *f = it->fs[i];
        pthread_mutex_lock(&f->lock);
        watch_remove(f, &it->nodes[i]);
        pthread_mutex_unlock(&f->lock);
        mp_future_free(f);
    }
    pthread_mutex_destroy(&it->lock);
    free(it->fs);
    free(it->nodes);
    free(it->ready);
    free(it);
}
