/**
 * @file
 * mproc/future.h - results that arrive later (Python's concurrent.futures).
 *
 * Included by <mproc.h>.
 *
 * A future stands for the outcome of one piece of work run elsewhere: a
 * task submitted to a pool (mp_pool_apply_async, mp_pool_submit) or a whole
 * map (mp_pool_map_async).  It lives in the parent process; it is
 * thread-safe, so any thread may wait on it, query it or cancel it.
 *
 * Outcomes.  A finished future holds a status:
 *   0             the work succeeded; its result bytes are in the future
 *   MP_ETASK      the task ran and returned a nonzero code
 *                 (mp_future_task_error() gives it)
 *   MP_EWORKER    the worker process died while running it (segfault,
 *                 abort, SIGKILL from the OOM killer, _exit()):
 *                 mp_future_exitcode() gives its exit status or -SIGNUM and
 *                 mp_future_report() the crash report
 *   MP_ETIMELIMIT it ran past the pool's task timeout; its worker was
 *                 killed and replaced
 *   MP_ECANCELED  it was cancelled, or the pool was terminated first
 *   MP_EINIT      the pool's worker initializer failed, so nothing runs
 *   MP_ECLOSED    it was submitted to a closed pool
 *   other codes   a resource failure at submission (MP_ENOMEM, ...)
 *
 * Ownership.  The function that made a future returns it with one
 * reference, which the caller drops with mp_future_free().  Freeing does
 * not cancel: the work still runs and its result is discarded.  A future
 * may outlive its pool.
 *
 * Callbacks.  Done callbacks run once the outcome is known, and before
 * anyone else sees the future finished (as in Python's Pool, where a
 * result's callback has run before get() returns): a waiter sees a future
 * finished only once its done callbacks have run, and so do
 * mp_future_done() and the other queries.  For futures of a pool they run
 * in that pool's callback thread, one at a time, in the order the futures
 * finished; never in a worker process and never in the pool's supervisor,
 * so a slow callback delays other callbacks but never crash detection or
 * timeouts.  A cancel runs them in the cancelling thread (see
 * mp_future_cancel).  A callback sees its own future finished, and any
 * other whose outcome is known; it may query any future, submit new work,
 * or wait for other futures; it must not free or join its own pool (those
 * return MP_EDEADLK from there).  A callback added to a future that is
 * already finished runs at once, in the thread that adds it.
 *
 * Ctrl-C.  While a thread waits in mp_future_get/mp_future_wait/mp_wait/
 * mp_as_completed_next and SIGINT has its default action, a SIGINT does not
 * kill the program: the wait returns MP_ECANCELED, and the pools of the
 * futures waited on are terminated (their workers stopped, their pending
 * work cancelled).  The default action is restored when the wait returns.
 * A program that installed its own SIGINT handler, or ignores SIGINT,
 * keeps exactly that behaviour.
 */
#ifndef MPROC_FUTURE_H
#define MPROC_FUTURE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The outcome of work submitted to a pool: made by the pool's submitting
 * calls, released with mp_future_free().  Opaque; thread-safe. */
typedef struct mp_future mp_future;

/** A done callback: runs once, when f finishes, with the ctx given to
 * mp_future_add_done_callback() (see "Callbacks" above for the thread). */
typedef void (*mp_future_cb)(mp_future *f, void *ctx);

/**
 * Waits up to timeout seconds for f to finish, then copies its result into
 * out (at most cap bytes) and stores the result's full length in *len.
 * len may be NULL.  Returns f's status (see "Outcomes" above): 0 on
 * success, the task's error otherwise; or, about the call itself: MP_ETIMEDOUT when
 * the wait ran out while f is not finished (a task that ran past the
 * pool's time limit is MP_ETIMELIMIT, so the two never mix); MP_EMSGSIZE
 * when the result is longer than cap > 0 (nothing is copied; *len tells
 * the size needed); MP_ECANCELED when SIGINT interrupted the wait;
 * MP_EINVAL for a NULL f, a NULL out with cap > 0, or a NaN timeout.
 * With out NULL and cap 0 the call asks for the length alone: on success
 * it returns 0 and stores the length in *len.  Blocks; thread-safe.
 *
 * @param f        the future to wait for.
 * @param out      where the result bytes go (NULL when cap is 0).
 * @param cap      the size of out in bytes.
 * @param len      receives the result's full length; may be NULL.
 * @param timeout  seconds to wait; MP_FOREVER waits without limit, 0 polls.
 * @return f's status, or MP_ETIMEDOUT, MP_EMSGSIZE, MP_ECANCELED, MP_EINVAL.
 */
MP_EXTERN int mp_future_get(mp_future *f, void *out, size_t cap, size_t *len, double timeout);

/**
 * The result bytes of a finished, successful future, without copying them:
 * owned by f and valid until mp_future_free().  *len receives their length
 * (len may be NULL), and 0 whenever the call returns NULL.  NULL while f
 * is not finished, when it failed, when the result is empty, and for a
 * NULL f.  Does not block.
 */
MP_EXTERN const void *mp_future_result(const mp_future *f, size_t *len);

/**
 * Waits up to timeout seconds for f to finish, whatever its outcome (read
 * it afterwards with mp_future_status() or mp_future_get()).  Returns 0
 * once it is finished, MP_ETIMEDOUT if it is not, MP_ECANCELED when SIGINT
 * interrupted the wait, MP_EINVAL for a NULL f or a NaN timeout.  Blocks;
 * thread-safe.
 */
MP_EXTERN int mp_future_wait(mp_future *f, double timeout);

/** True once f is finished (successfully, with an error, or cancelled)
 * and its done callbacks have run (see "Callbacks"): Python's
 * Future.done().  False for NULL.  Never blocks. */
MP_EXTERN bool mp_future_done(const mp_future *f);
/** mp_future_done() by the name Pool's AsyncResult.ready() gives it. */
MP_EXTERN bool mp_future_ready(const mp_future *f);

/** True while a worker runs f's task; false before a worker takes it,
 * once it has finished, and for NULL.  Never blocks. */
MP_EXTERN bool mp_future_running(const mp_future *f);

/** True when f was cancelled (by mp_future_cancel or a pool's terminate),
 * once it is finished; false otherwise and for NULL.  Never blocks. */
MP_EXTERN bool mp_future_cancelled(const mp_future *f);

/**
 * True when f has finished with status 0; false while it is not finished
 * (where Python raises ValueError: ask mp_future_done() first to tell the
 * two apart), when it finished with an error or was cancelled, and for
 * NULL.  Never blocks.
 */
MP_EXTERN bool mp_future_successful(const mp_future *f);

/** f's status once finished (0 or an error, as listed under "Outcomes");
 * MP_ESTATE while it is not finished; MP_EINVAL for NULL.  Never blocks. */
MP_EXTERN int mp_future_status(const mp_future *f);

/**
 * Cancels f if no worker has taken its work yet.  Returns 0 when f is now
 * cancelled (also when it was before); MP_EBUSY when a worker runs it or
 * it has finished.  A cancelled future finishes at once with MP_ECANCELED,
 * and its callbacks have run, in the calling thread, before the call
 * returns (as Python's Future.cancel()).  For a map's future, the items no
 * worker has started are cancelled either way (MP_ECANCELED in their errors); the
 * call returns 0 only when none had started, and the future finishes once
 * the items already running have.  Thread-safe.
 */
MP_EXTERN int mp_future_cancel(mp_future *f);

/** For a future finished with MP_ETASK: the nonzero code the task
 * returned.  0 otherwise (also while f is not finished, and for NULL). */
MP_EXTERN int mp_future_task_error(const mp_future *f);

/**
 * For a future finished with MP_EWORKER or MP_ETIMELIMIT: the worker's
 * exit status, or -SIGNUM when a signal ended it (-SIGSEGV, -SIGKILL, ...).
 * 0 otherwise (also while f is not finished, and for NULL).
 */
MP_EXTERN int mp_future_exitcode(const mp_future *f);

/**
 * What went wrong, as text: the crash report of the worker (signal,
 * faulting address, symbolized backtrace) for MP_EWORKER, the time limit
 * for MP_ETIMELIMIT, the initializer's failure for MP_EINIT, the message
 * a failing task left (mp_task_fail, or what it appended before returning
 * nonzero; for a map, its first failed item's, mp_item_fail) for
 * MP_ETASK - NULL when it left none.  NULL for a success, while f is not
 * finished, and for NULL.  Owned by f: valid until mp_future_free().
 */
MP_EXTERN const char *mp_future_report(const mp_future *f);

/**
 * For a map future: the index of the first item that failed (the one whose
 * error the future's status reports), or -1 when none did, for other
 * futures, while f is not finished, and for NULL.
 */
MP_EXTERN long long mp_future_failed_index(const mp_future *f);

/**
 * Adds a done callback (see "Callbacks" above).  Callbacks run in the order
 * they were added; on a future already finished, fn runs at once, in the
 * calling thread, before the call returns.  Thread-safe.
 *
 * @param f    the future.
 * @param fn   the callback.
 * @param ctx  passed to fn as it is; may be NULL.
 * @return 0, MP_EINVAL for a NULL f or fn, MP_ENOMEM.
 */
MP_EXTERN int mp_future_add_done_callback(mp_future *f, mp_future_cb fn, void *ctx);

/** Drops the caller's reference; every future a call hands out must be
 * freed so, or it leaks.  Never waits, never cancels: unfinished work
 * still runs and its result is discarded.  NULL is a no-op. */
MP_EXTERN void mp_future_free(mp_future *f);

/** What mp_wait waits for (Python's FIRST_COMPLETED, ALL_COMPLETED,
 * FIRST_EXCEPTION). */
typedef enum mp_wait_mode {
    /** Every future has finished. */
    MP_ALL_COMPLETED = 0,
    /** At least one future has finished. */
    MP_FIRST_COMPLETED = 1,
    /** The first future that finishes with an error (cancelled ones do
     * not count, as in Python), or all of them. */
    MP_FIRST_EXCEPTION = 2
} mp_wait_mode;

/**
 * Waits up to timeout seconds until the condition mode names holds for the
 * n futures in fs.  Returns how many of them are finished (> 0, or 0 for
 * n == 0) once it holds; MP_ETIMEDOUT when the time ran out first (check
 * each future with mp_future_done); MP_ECANCELED when SIGINT interrupted
 * the wait; MP_EINVAL for a NULL array (with n > 0) or entry, an unknown
 * mode, or a NaN timeout.  The same future may appear more than once.
 * Thread-safe.
 */
MP_EXTERN int mp_wait(mp_future *const *fs, size_t n, mp_wait_mode mode, double timeout);

/** Iteration over futures in the order they finish (Python's
 * as_completed): made by mp_as_completed_new(), freed by
 * mp_as_completed_free().  Opaque. */
typedef struct mp_as_completed mp_as_completed;

/**
 * Starts an iteration over the n futures in fs, which it references (they
 * may be freed by the caller meanwhile), and stores it in *out; the caller
 * ends it with mp_as_completed_free().  n may be 0 (fs may then be NULL).
 * A future listed more than once is yielded once (as Python iterates
 * set(fs)), at its first place in fs.
 * Returns 0; MP_EINVAL for a NULL out, a NULL fs with n > 0, or a NULL
 * entry; MP_ENOMEM.  On failure *out is NULL (when out is not) and no
 * reference is taken.  Does not block.
 */
MP_EXTERN int mp_as_completed_new(mp_future *const *fs, size_t n, mp_as_completed **out);

/**
 * Waits up to timeout seconds for the next future to finish and stores it
 * in *f (borrowed from the iteration: valid until mp_as_completed_free).
 * Futures finished already come first, in the order given.  Returns 0,
 * MP_EOF once every future was returned, MP_ETIMEDOUT, MP_ECANCELED on
 * SIGINT, MP_EINVAL for a NULL it or f or a NaN timeout.  One thread at a
 * time per iteration.
 */
MP_EXTERN int mp_as_completed_next(mp_as_completed *it, mp_future **f, double timeout);

/** Ends the iteration and drops its references to the futures (the
 * caller's own references are untouched).  NULL is a no-op. */
MP_EXTERN void mp_as_completed_free(mp_as_completed *it);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_FUTURE_H */
