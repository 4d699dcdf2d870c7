/*
 * future.h - futures' internal side (future.c): what the owner of a future
 * (a pool) implements and calls, and interruptible waits.
 */
#ifndef MP__FUTURE_H
#define MP__FUTURE_H

#include "base.h"

#include <poll.h>

/* What a future asks of the one that will finish it (a pool).  Every call
 * is made while the future is unfinished, between hold and release, which
 * keep the owner's memory alive. */
typedef struct mp__future_ops {
    void (*hold)(void *owner);
    void (*release)(void *owner);
    /* Cancels f if no worker took it: finishes f with MP_ECANCELED and
     * returns 0; MP_EBUSY when too late. */
    int (*cancel)(void *owner, mp_future *f);
    bool (*running)(void *owner, const mp_future *f);
    /* A SIGINT arrived while a thread waited for f: stop everything. */
    void (*interrupt)(void *owner);
    /* Runs fn(arg) in the owner's callback thread.  Returns 0, or an error
     * when it cannot (the caller then runs it itself). */
    int (*dispatch)(void *owner, void (*fn)(void *), void *arg);
} mp__future_ops;

/* A watcher of a future: notified once, when the future finishes. */
typedef struct mp__watch {
    struct mp__watch *prev, *next;
    bool linked;
    bool queued; /* as_completed: its index is in the ready queue */
    /* Called under the future's lock when the outcome is written (the
     * watcher stays; NULL: not told), then notify when the future is done
     * (unlinked). */
    void (*on_finish)(struct mp__watch *w, mp_future *f);
    void (*notify)(struct mp__watch *w, mp_future *f);
    _Atomic uint32_t *word; /* for plain waiters */
    int wake_fd1;           /* an eventfd to write too, plus one (0: none) */
    void *ctx;              /* for as_completed: the iterator */
    size_t index;
} mp__watch;

/* For a wait on many kinds of things (mp_wait_any): makes f wake word
 * (mp__waiter_wake), and write to the eventfd fd unless it is -1, when it
 * finishes.  node is the caller's and stays linked until
 * mp__future_unwatch(); a finished f is not watched. */
void mp__future_watch(mp_future *f, mp__watch *node, _Atomic uint32_t *word, int fd);
void mp__future_unwatch(mp_future *f, mp__watch *node);

/* A new unfinished future with two references: the caller's, and the
 * owner's, which mp__future_finish() drops.  NULL when memory runs out. */
mp_future *mp__future_new(const mp__future_ops *ops, void *owner);

/* A future finished at birth with status (an error), one reference. */
mp_future *mp__future_new_failed(int status, const char *report);

/* The owner's own data about f (which job runs it); set and read by the
 * owner under its own lock. */
void mp__future_set_token(mp_future *f, uint64_t token);
uint64_t mp__future_token(const mp_future *f);

/* Adds a reference. */
void mp__future_ref(mp_future *f);

/* Finishes f with its outcome, takes ownership of result and report
 * (malloc'ed, may be NULL), wakes its waiters, hands its callbacks to the
 * owner's callback thread, and drops the owner's reference.  Only the
 * first call for a future counts; later ones just free what they pass. */
void mp__future_finish(mp_future *f, int status, void *result, size_t len, int task_error,
                       int exitcode, char *report, long long failed_index);

/* Interruptible waits.  A waiter has a word to sleep on (a futex) that
 * whatever it waits for bumps; while SIGINT has its default action, a
 * SIGINT bumps it too and marks the wait interrupted. */
typedef struct mp__waiter {
    _Atomic uint32_t *word;
    int slot;      /* in the static table the signal handler reaches, or -1 */
    uint32_t gen;  /* SIGINT count at the start */
    uint32_t cgen; /* cancellation count at the start */
    bool catching; /* this wait counts on the library's SIGINT handler */
    int fd;        /* eventfd for waits in poll(), -1 without */
    bool own_fd;   /* fd is this wait's own (no slot), closed at the end */
} mp__waiter;

/* Begins a wait: takes a slot and, while SIGINT has its default action,
 * installs the library's handler for the wait's duration. */
void mp__waiter_begin(mp__waiter *w);

/* As mp__waiter_begin(), with an eventfd that the same events write to,
 * for a wait that sleeps in poll().  Returns 0, or the eventfd's error (the
 * wait is then ended). */
int mp__waiter_begin_fd(mp__waiter *w);

void mp__waiter_end(mp__waiter *w);

/* Whether a SIGINT (while the library caught it) or a cancellation came
 * since the wait began. */
bool mp__waiter_interrupted(const mp__waiter *w);

/* For a waiter begun with mp__waiter_begin_fd(): polls fds[0..n) and the
 * waiter's eventfd until one is ready, the wait is interrupted or the
 * deadline passes.  Returns how many of fds have revents (> 0, revents
 * set), 0 when only the waiter was woken (the caller re-checks its
 * condition and mp__waiter_interrupted()), MP_ETIMEDOUT, or -errno. */
int mp__waiter_poll(mp__waiter *w, struct pollfd *fds, size_t n, int64_t deadline);

/* The waiter's eventfd (mp__waiter_begin_fd), -1 without one: writing to
 * it (mp__eventfd_signal) wakes the wait. */
int mp__waiter_fd(const mp__waiter *w);

/* Interrupts every wait in progress in this process and marks them
 * cancelled (mp__waiter_interrupted() turns true): for a shutdown.  Waits
 * that begin afterwards are not affected.  Async-signal-safe. */
void mp__waiter_cancel_all(void);

/* Wakes a waiter (bumps its word).  word may be NULL. */
void mp__waiter_wake(_Atomic uint32_t *word);

#endif /* MP__FUTURE_H */
