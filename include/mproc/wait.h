/**
 * @file
 * mproc/wait.h - waiting for any of many things at once, as Python's
 * multiprocessing.connection.wait() does over sentinels: children that end,
 * connections and queues with something to receive, futures that finish,
 * events that are set (the program's shutdown event among them), and any
 * readable descriptor.
 *
 * Included by <mproc.h>.
 *
 *   mp_waitable set[] = {mp_waitable_queue(results), mp_waitable_process(p),
 *                        mp_waitable_event(stop)};
 *   int n = mp_wait_any(set, 3, 5.0);    // n > 0: set[i].ready tells which
 *
 * How it sleeps.  Children and connections are descriptors (a pidfd, a
 * socket), which poll() waits on; queues, events and futures wake through
 * futexes in shared memory, which have no descriptor.  A set of futex kinds
 * only sleeps in one futex_waitv() call; a set of descriptors only, in one
 * poll(); a set that mixes them sleeps in poll() while a short-lived thread
 * of the library sleeps in futex_waitv(), each waking the other.  Nothing
 * is polled in time slices, so a wake-up costs what the kernel takes to
 * deliver it, never a slice.  (On kernels before 5.16, which lack
 * futex_waitv, a set with more than one queue or event re-checks every
 * 5 ms instead.)
 */
#ifndef MPROC_WAIT_H
#define MPROC_WAIT_H

#include "common.h"
#include "future.h"
#include "pipe.h"
#include "process.h"
#include "queue.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/** What a waitable is, and when it is ready. */
typedef enum mp_wait_kind {
    MP_WAIT_PROCESS = 1, /**< a started child: ready once it has ended (it is reaped) */
    MP_WAIT_CONN,        /**< a connection: a message, or the end of the stream, can be received */
    MP_WAIT_QUEUE,       /**< a queue: a get would not wait (a message, or closed and empty) */
    MP_WAIT_FUTURE,      /**< a future: finished */
    MP_WAIT_EVENT,       /**< an event: set (the shutdown event included) */
    MP_WAIT_FD           /**< any descriptor: readable (POLLIN, or hung up) */
} mp_wait_kind;

/** One thing to wait for.  Make it with the mp_waitable_*() functions;
 * mp_wait_any() sets ready. */
typedef struct mp_waitable {
    mp_wait_kind kind; /**< what obj holds */
    union {
        mp_process *process;
        mp_conn *conn;
        mp_queue *queue;
        mp_future *future;
        mp_event *event;
        int fd;
    } obj;      /**< the object, as kind says */
    bool ready; /**< set by mp_wait_any(): true when this one is ready */
} mp_waitable;

/** A waitable for a started child: ready once it has ended. */
static inline mp_waitable mp_waitable_process(mp_process *p)
{
    mp_waitable w = {MP_WAIT_PROCESS, {NULL}, false};
    w.obj.process = p;
    return w;
}

/** A waitable for a connection: ready when a message or the end of the stream can be received. */
static inline mp_waitable mp_waitable_conn(mp_conn *c)
{
    mp_waitable w = {MP_WAIT_CONN, {NULL}, false};
    w.obj.conn = c;
    return w;
}

/** A waitable for a queue: ready when a get would not wait. */
static inline mp_waitable mp_waitable_queue(mp_queue *q)
{
    mp_waitable w = {MP_WAIT_QUEUE, {NULL}, false};
    w.obj.queue = q;
    return w;
}

/** A waitable for a future: ready once it has finished. */
static inline mp_waitable mp_waitable_future(mp_future *f)
{
    mp_waitable w = {MP_WAIT_FUTURE, {NULL}, false};
    w.obj.future = f;
    return w;
}

/** A waitable for an event: ready once it is set. */
static inline mp_waitable mp_waitable_event(mp_event *e)
{
    mp_waitable w = {MP_WAIT_EVENT, {NULL}, false};
    w.obj.event = e;
    return w;
}

/** A waitable for any descriptor: ready when it is readable or hung up. */
static inline mp_waitable mp_waitable_fd(int fd)
{
    mp_waitable w = {MP_WAIT_FD, {NULL}, false};
    w.obj.fd = fd;
    return w;
}

/**
 * Waits up to timeout seconds until at least one of the n waitables is
 * ready (as mp_wait_kind says), then sets ready on every waitable that is
 * and returns how many are (> 0).  Returns at once when some are ready
 * already; with timeout 0 it only checks.  Otherwise returns MP_ETIMEDOUT;
 * MP_ECANCELED when interrupted (a SIGINT while SIGINT has its default
 * action, or a shutdown of the program: see mp_process_join); MP_EINVAL
 * for n == 0, a NULL set, an unknown kind, a NULL object, a negative fd or
 * a NaN timeout (see "Times" in common.h);
 * MP_ESTATE for a process never started or not started by this process,
 * and the error of a connection that cannot be received from (MP_EBADF
 * for a send-only end, MP_ECLOSED); MP_E2BIG for more than 127 queues and
 * events in one set (futures and descriptors are not limited); MP_ENOMEM;
 * MP_EBADF for a descriptor that is not open.  A process that is ready is
 * reaped, so its exit code can be read at once.  Readiness is a snapshot:
 * another thread or process may take the message first.  Safe to call
 * from many threads at once, on overlapping sets.
 */
MP_EXTERN int mp_wait_any(mp_waitable *set, size_t n, double timeout);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_WAIT_H */
