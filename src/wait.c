/*
 * wait.c - mp_wait_any(): one wait over children, connections, queues,
 * futures, events and descriptors, as Python's connection.wait() over
 * sentinels.
 *
 * DESIGN
 * Two kinds of things are waited for.  Children (a pidfd, or a forkserver
 * channel), connections and plain descriptors are descriptors: poll()
 * sleeps on them.  Queues and events are futex words in shared memory, and
 * futures bump the word of a library waiter (future.c) when they finish:
 * futex_waitv() sleeps on up to 128 such words at once.  Linux has no call
 * that sleeps on both kinds (io_uring learned futex waits in 6.7; too
 * recent to require), so:
 *   - only words: one futex_waitv() over them and the waiter's word;
 *   - only descriptors: one poll() over them and the waiter's eventfd;
 *   - both: the calling thread sleeps in poll(), and a helper thread of the
 *     library ("mproc-wait", every signal blocked) in futex_waitv(); when
 *     the helper wakes it writes the waiter's eventfd, which ends the
 *     poll(); when the poll() ends first, the caller bumps the waiter's
 *     word, which is one of the helper's words, and joins it.  A thread per
 *     sleep costs tens of microseconds, against a slice's milliseconds of
 *     latency, and only sets that mix descriptors and words pay it.
 * The waiter's word and eventfd also carry SIGINT and shutdown
 * cancellation (future.c), so every sleep can be interrupted.
 *
 * No lost wake-ups: every word is armed first (a watcher count raised on
 * the queue or event, so that their wakers make the futex call; the
 * future's watch list), then each round reads the words' values, then
 * checks every condition, then sleeps only while the words still hold the
 * values read.  A waker changes the state before it changes the word, so
 * either the check sees the new state or the sleep sees the new word.
 *
 * A queue's sleep is cut at MP__QUEUE_RECHECK_NS (queue.c: a producer may
 * die between its commit and its wake-up call).  On kernels without
 * futex_waitv, or when the helper thread cannot start, sleeps are cut into
 * slices of FALLBACK_NS and every condition re-checked: degraded, never
 * wrong.
 */
#define _GNU_SOURCE
#include "base.h"

#include "log.h"

#include "future.h"
#include "process.h"
#include "queue.h"
#include "startmethod.h"
#include "sync.h"
#include "testhooks.h"

#include <errno.h>
#include <poll.h>

#define FALLBACK_NS 5000000LL                 /* 5 ms */
#define MAX_WORDS   (MP__FUTEX_WAITV_MAX - 1) /* one is the waiter's */

bool mp__wait_degraded;

/* One waitable, armed. */
typedef struct item {
    mp_waitable *w;
    int fd;                 /* descriptor kinds: what poll() watches, -1 if none */
    bool own_fd;            /* fd is a duplicate of ours, closed at the end */
    _Atomic uint32_t *word; /* queues and events */
    mp__watch node;         /* futures */
    bool armed;
} item;

typedef struct waitset {
    item *it;
    size_t n;
    size_t nfd, nword;
    bool has_queue;
    bool degraded; /* a descriptor kind without a descriptor: re-check in slices */
    mp__waiter w;
    bool begun;
} waitset;

/* ---- checking --------------------------------------------------------------------- */

static bool is_fd_kind(mp_wait_kind k)
{
    return k == MP_WAIT_PROCESS || k == MP_WAIT_CONN || k == MP_WAIT_FD;
}

/* 0 when set[i] can be waited for, else MP_EINVAL with a detail. */
static int check_valid(const mp_waitable *set, size_t i)
{
    const mp_waitable *w = &set[i];
    switch (w->kind) {
    case MP_WAIT_PROCESS:
    case MP_WAIT_CONN:
    case MP_WAIT_QUEUE:
    case MP_WAIT_FUTURE:
    case MP_WAIT_EVENT:
        if (w->obj.process) /* any member: a pointer */
            return 0;
        return mp__fail(MP_EINVAL, "mp_wait_any: set[%zu].obj must not be NULL", i);
    case MP_WAIT_FD:
        if (w->obj.fd >= 0)
            return 0;
        return mp__fail(MP_EINVAL, "mp_wait_any: set[%zu].obj.fd must be >= 0 (got %d)", i,
                        w->obj.fd);
    }
    return mp__fail(MP_EINVAL, "mp_wait_any: set[%zu].kind must be an mp_wait_kind (got %d)", i,
                    (int)w->kind);
}

/* Whether one waitable is ready now: 1, 0, or an error. */
static int ready_one(mp_waitable *w)
{
    switch (w->kind) {
    case MP_WAIT_PROCESS:
        if (mp__process_reap(w->obj.process))
            return 1;
        /* Not reaped: running, or never started, or another process's. */
        if (mp_process_is_alive(w->obj.process))
            return 0;
        return mp__process_reap(w->obj.process) ? 1 : MP_ESTATE;
    case MP_WAIT_CONN:
        return mp_conn_poll(w->obj.conn, 0);
    case MP_WAIT_QUEUE:
        return mp__queue_readable(w->obj.queue);
    case MP_WAIT_FUTURE:
        return mp_future_done(w->obj.future);
    case MP_WAIT_EVENT:
        return mp_event_is_set(w->obj.event);
    case MP_WAIT_FD: {
        struct pollfd p = {.fd = w->obj.fd, .events = POLLIN};
        int rc = poll(&p, 1, 0);
        if (rc < 0)
            return errno == EINTR ? 0 : -errno;
        return (p.revents & POLLNVAL) ? MP_EBADF : rc > 0;
    }
    }
    return MP_EINVAL;
}

/* Checks every waitable, setting ready.  Returns how many are ready, or
 * the first error. */
static int check_all(mp_waitable *set, size_t n)
{
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        int r = ready_one(&set[i]);
        if (r < 0)
            return r;
        set[i].ready = r > 0;
        count += r > 0;
    }
    return count;
}

/* ---- arming ------------------------------------------------------------------------ */

/* The descriptor that polls readable when w may be ready, owned by the
 * item when duplicated; -1 when there is none. */
static int item_fd(mp_waitable *w, bool *own)
{
    *own = false;
    if (w->kind == MP_WAIT_FD)
        return w->obj.fd;
    if (w->kind == MP_WAIT_CONN) {
        int fd = mp_conn_fd(w->obj.conn);
        return fd >= 0 ? fd : -1;
    }
    int fd = mp__process_wait_fd_dup(w->obj.process);
    *own = fd >= 0;
    return fd >= 0 ? fd : -1;
}

static int arm(waitset *s, mp_waitable *set, size_t n)
{
    s->it = calloc(n, sizeof *s->it);
    if (!s->it)
        return MP_ENOMEM;
    s->n = n;
    s->degraded = mp__wait_degraded;
    for (size_t i = 0; i < n; i++) {
        item *it = &s->it[i];
        it->w = &set[i];
        it->fd = -1;
        if (is_fd_kind(set[i].kind)) {
            it->fd = item_fd(&set[i], &it->own_fd);
            if (it->fd < 0)
                s->degraded = true;
            else
                s->nfd++;
        } else if (set[i].kind != MP_WAIT_FUTURE) {
            if (++s->nword > MAX_WORDS)
                return MP_E2BIG;
            s->has_queue |= set[i].kind == MP_WAIT_QUEUE;
        }
    }
    int rc = s->nfd ? mp__waiter_begin_fd(&s->w) : (mp__waiter_begin(&s->w), 0);
    if (rc < 0)
        return rc;
    s->begun = true;
    for (size_t i = 0; i < n; i++) {
        item *it = &s->it[i];
        switch (set[i].kind) {
        case MP_WAIT_QUEUE:
            it->word = mp__queue_watch(set[i].obj.queue);
            break;
        case MP_WAIT_EVENT:
            it->word = mp__event_watch(set[i].obj.event);
            if (!it->word)
                return mp__fail(MP_EINVAL, "mp_wait_any: set[%zu] is not a live event", i);
            break;
        case MP_WAIT_FUTURE:
            mp__future_watch(set[i].obj.future, &it->node, s->w.word, mp__waiter_fd(&s->w));
            break;
        default:
            continue;
        }
        it->armed = true;
    }
    return 0;
}

static void disarm(waitset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        item *it = &s->it[i];
        if (it->own_fd)
            mp__close(it->fd);
        if (!it->armed)
            continue;
        if (it->w->kind == MP_WAIT_QUEUE)
            mp__queue_unwatch(it->w->obj.queue);
        else if (it->w->kind == MP_WAIT_EVENT)
            mp__event_unwatch(it->w->obj.event);
        else
            mp__future_unwatch(it->w->obj.future, &it->node);
    }
    if (s->begun)
        mp__waiter_end(&s->w);
    free(s->it);
}

/* ---- sleeping ----------------------------------------------------------------------- */

/* The words and the values they held before the round's check. */
typedef struct words {
    _Atomic uint32_t *word[MP__FUTEX_WAITV_MAX];
    uint32_t val[MP__FUTEX_WAITV_MAX];
    size_t n;
} words;

static void words_read(const waitset *s, words *ws)
{
    ws->n = 0;
    if (s->w.word) {
        ws->word[ws->n] = s->w.word;
        ws->val[ws->n++] = atomic_load(s->w.word);
    }
    for (size_t i = 0; i < s->n; i++) {
        _Atomic uint32_t *wd = s->it[i].word;
        if (!wd)
            continue;
        ws->word[ws->n] = wd;
        /* An event sleeps while its flag is 0 (clear). */
        ws->val[ws->n++] = s->it[i].w->kind == MP_WAIT_EVENT ? 0 : atomic_load(wd);
    }
}

/* Sleeps on the words alone.  Returns MP_ENOSYS without futex_waitv. */
static int sleep_words(const words *ws, int64_t until)
{
    if (ws->n == 0)
        return MP_ENOSYS; /* the waiter has no word (out of memory): slices */
    if (ws->n == 1)
        return mp__futex_wait(ws->word[0], ws->val[0], until);
    return mp__futex_waitv(ws->word, ws->val, ws->n, until);
}

typedef struct helper {
    const words *ws;
    int64_t until;
    int wake_fd;
    int rc;
} helper;

static void *helper_main(void *arg)
{
    helper *h = arg;
    h->rc = sleep_words(h->ws, h->until);
    mp__eventfd_signal(h->wake_fd);
    return NULL;
}

/* Sleeps on descriptors and words at once (see DESIGN).  Returns 0, or
 * MP_ENOSYS / the thread's error when it cannot (the caller degrades). */
static int sleep_mixed(waitset *s, struct pollfd *pfd, size_t np, const words *ws, int64_t until)
{
    helper h = {ws, until, mp__waiter_fd(&s->w), 0};
    pthread_t t;
    int rc = mp__thread_start(&t, MP__LIBRARY_THREAD_PREFIX "wait", helper_main, &h);
    if (rc < 0)
        return rc;
    (void)mp__waiter_poll(&s->w, pfd, np, until);
    /* Whoever woke first, the helper must end: its waiter word moves. */
    mp__waiter_wake(s->w.word);
    pthread_join(t, NULL);
    return h.rc == MP_ENOSYS ? MP_ENOSYS : 0;
}

/* A sleep that is cut into slices, for when the words cannot all be slept
 * on (no futex_waitv, no helper thread, a child without a descriptor):
 * descriptors and the waiter are still slept on; words are re-checked
 * after each slice. */
static int sleep_degraded(waitset *s, struct pollfd *pfd, size_t np, const words *ws, int64_t until)
{
    int64_t cap = mp__now_ns() + FALLBACK_NS;
    until = until < cap ? until : cap;
    if (s->nfd > 0)
        return mp__waiter_poll(&s->w, pfd, np, until);
    if (ws->n > 0) /* the waiter's word comes first */
        return mp__futex_wait(ws->word[0], ws->val[0], until);
    mp__sleep_ns(mp__remaining_ns(until));
    return 0;
}

/* One sleep until something may have changed, or until. */
static int sleep_once(waitset *s, const words *ws, int64_t until)
{
    if (s->has_queue) {
        int64_t cap = mp__now_ns() + MP__QUEUE_RECHECK_NS;
        until = until < cap ? until : cap;
    }
    struct pollfd stack[16];
    struct pollfd *pfd = s->nfd <= 16 ? stack : calloc(s->nfd, sizeof *pfd);
    if (!pfd)
        return MP_ENOMEM;
    size_t np = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->it[i].fd >= 0)
            pfd[np++] = (struct pollfd){.fd = s->it[i].fd, .events = POLLIN};
    int rc;
    if (s->degraded)
        rc = sleep_degraded(s, pfd, np, ws, until);
    else if (np == 0)
        rc = sleep_words(ws, until);
    else if (s->nword == 0) /* futures and the waiter also write its eventfd */
        rc = mp__waiter_poll(&s->w, pfd, np, until);
    else
        rc = sleep_mixed(s, pfd, np, ws, until);
    if (rc < 0 && rc != MP_ETIMEDOUT && rc != MP_EINTR) {
        /* No futex_waitv, or no helper thread: slices from now on. */
        s->degraded = true;
        rc = 0;
    }
    if (pfd != stack)
        free(pfd);
    return rc;
}

/* ---- the API ------------------------------------------------------------------------- */

static int wait_loop(waitset *s, mp_waitable *set, size_t n, int64_t deadline)
{
    for (;;) {
        words ws;
        words_read(s, &ws);
        int ready = check_all(set, n);
        if (ready != 0)
            return ready;
        if (mp__waiter_interrupted(&s->w))
            return MP_ECANCELED;
        if (mp__remaining_ns(deadline) <= 0)
            return MP_ETIMEDOUT;
        int rc = sleep_once(s, &ws, deadline);
        if (rc == MP_ENOMEM)
            return rc;
    }
}

int mp_wait_any(mp_waitable *set, size_t n, double timeout)
{
    MP__NONNULL(set);
    if (n == 0)
        return mp__fail(MP_EINVAL, "mp_wait_any: n must be > 0");
    if (mp__timeout_check(timeout) < 0)
        return mp__fail(MP_EINVAL, "mp_wait_any: timeout must be a number of seconds (got NaN)");
    for (size_t i = 0; i < n; i++) {
        int rc = check_valid(set, i);
        if (rc < 0)
            return rc;
    }
    int64_t deadline = mp__deadline(timeout);
    int ready = check_all(set, n);
    if (ready != 0 || mp__remaining_ns(deadline) <= 0)
        return ready != 0 ? ready : MP_ETIMEDOUT;
    waitset s;
    memset(&s, 0, sizeof s);
    int rc = arm(&s, set, n);
    if (rc == 0)
        rc = wait_loop(&s, set, n, deadline);
    disarm(&s);
    return rc;
}
