/*
 * future.h - futures' internal side (future.c): what the owner of a future
 * (a pool) implements and calls, and interruptible waits.
 */
#ifndef MP__FUTURE_H
#define MP__FUTURE_H

#include "base.h"

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
    bool catching; /* this wait counts on the library's SIGINT handler */
} mp__waiter;

void mp__waiter_begin(mp__waiter *w);
void mp__waiter_end(mp__waiter *w);
bool mp__waiter_interrupted(const mp__waiter *w);

/* Wakes a waiter (bumps its word).  word may be NULL. */
void mp__waiter_wake(_Atomic uint32_t *word);

#endif /* MP__FUTURE_H */
