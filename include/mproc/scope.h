/**
 * @file
 * mproc/scope.h - cleanup when a variable leaves its scope, as Python's
 * `with` block does (GCC and Clang).
 *
 * Included by <mproc.h>.  With GCC or Clang (which provide the cleanup
 * attribute) this defines MP_HAVE_SCOPE to 1 and the declarations below;
 * with any other compiler it defines nothing.
 *
 * Declare the variable with one of the MP_AUTO_* types, one variable per
 * declaration, and always initialise it (NULL at least): when it leaves
 * its scope - the end of the block, a return, a break, a goto out of it -
 * what it holds then is cleaned up; NULL is left alone.
 *
 *   int count_words(const char *path)
 *   {
 *       MP_AUTO_POOL pool = NULL;            // terminated and freed at the }
 *       if (mp_pool_new(NULL, &pool) < 0)
 *           return -1;                       // nothing to clean: pool is NULL
 *       MP_AUTO_FUTURE f = mp_pool_apply_async(pool, count, path, strlen(path));
 *       ...
 *       return n;                            // f freed, then pool
 *   }
 *
 * Variables are cleaned up in the reverse order of their declarations, so
 * a future declared after its pool is freed before the pool.  To keep an
 * object beyond the scope, move it out and set the variable to NULL.
 *
 *   MP_AUTO_POOL      mp_pool_terminate() (as leaving `with Pool()` does:
 *                     unfinished work is cancelled), then mp_pool_free()
 *   MP_AUTO_PROCESS   a started process is joined for up to
 *                     MP_SCOPE_JOIN_TIMEOUT seconds (default 10); if it still
 *                     runs it is stopped (mp_process_stop: SIGTERM,
 *                     MP_SCOPE_STOP_GRACE seconds (default 1), SIGKILL); then
 *                     mp_process_free().  So nothing outlives the scope, and
 *                     leaving it blocks for at most the two together.
 *   MP_AUTO_FUTURE    mp_future_free() (the work is not cancelled)
 *   MP_AUTO_QUEUE     mp_queue_close() - for every process: puts fail and
 *                     gets drain - then mp_queue_free()
 *   MP_AUTO_CONN      mp_conn_free() (which closes this process's end)
 *
 * Define MP_SCOPE_JOIN_TIMEOUT and MP_SCOPE_STOP_GRACE before including
 * <mproc.h> to change them for a file.  The cleanups run in the thread and
 * process that leave the scope, with the same rules as the calls they
 * make: a forked child leaving a scope it inherited from its parent cleans
 * up its own copies of the handles, so declare such variables where no
 * child leaves them.
 */
#ifndef MPROC_SCOPE_H
#define MPROC_SCOPE_H

#if defined(__GNUC__) || defined(__clang__)

#include "pipe.h"
#include "pool.h"
#include "process.h"
#include "queue.h"

/** Defined (as 1) when the compiler has the cleanup attribute and the MP_AUTO_* declarations
 * exist. */
#define MP_HAVE_SCOPE 1

#ifndef MP_SCOPE_JOIN_TIMEOUT
/** Seconds MP_AUTO_PROCESS waits for a started child to end before it stops it; define it before
 * including mproc.h to change it. */
#define MP_SCOPE_JOIN_TIMEOUT 10.0
#endif
#ifndef MP_SCOPE_STOP_GRACE
/** Seconds a child stopped at scope exit gets between SIGTERM and SIGKILL; define it before
 * including mproc.h to change it. */
#define MP_SCOPE_STOP_GRACE 1.0
#endif

/** Declares an mp_pool pointer that is terminated (unfinished work is cancelled) and freed when it
 * leaves scope. */
#define MP_AUTO_POOL __attribute__((cleanup(mp__scope_pool))) mp_pool *
/** Declares an mp_process pointer that is joined (stopped after MP_SCOPE_JOIN_TIMEOUT) and freed
 * when it leaves scope. */
#define MP_AUTO_PROCESS __attribute__((cleanup(mp__scope_process))) mp_process *
/** Declares an mp_future pointer that is freed when it leaves scope (its work is not cancelled). */
#define MP_AUTO_FUTURE __attribute__((cleanup(mp__scope_future))) mp_future *
/** Declares an mp_queue pointer that is closed and freed when it leaves scope. */
#define MP_AUTO_QUEUE __attribute__((cleanup(mp__scope_queue))) mp_queue *
/** Declares an mp_conn pointer that is closed and freed when it leaves scope. */
#define MP_AUTO_CONN __attribute__((cleanup(mp__scope_conn))) mp_conn *

/* The cleanups themselves, called with the variable's address. */

static inline void mp__scope_pool(mp_pool **p)
{
    if (*p) {
        (void)mp_pool_terminate(*p);
        mp_pool_free(*p);
    }
}

static inline void mp__scope_process(mp_process **p)
{
    /* pid 0: never started, nothing to wait for. */
    if (*p && mp_process_pid(*p) > 0 && mp_process_join(*p, MP_SCOPE_JOIN_TIMEOUT) != 0)
        (void)mp_process_stop(*p, MP_SCOPE_STOP_GRACE);
    mp_process_free(*p);
}

static inline void mp__scope_future(mp_future **f)
{
    mp_future_free(*f);
}

static inline void mp__scope_queue(mp_queue **q)
{
    if (*q) {
        (void)mp_queue_close(*q);
        mp_queue_free(*q);
    }
}

static inline void mp__scope_conn(mp_conn **c)
{
    mp_conn_free(*c);
}

#endif /* __GNUC__ || __clang__ */

#endif /* MPROC_SCOPE_H */
