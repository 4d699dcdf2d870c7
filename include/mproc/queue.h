/**
 * @file
 * mproc/queue.h - message queues shared by many processes (Python's
 * multiprocessing.Queue, SimpleQueue and JoinableQueue).
 *
 * Included by <mproc.h>.
 *
 * A queue is a ring of variable-size messages in shared memory.  Any number
 * of processes and threads put and get at once; messages come out in the
 * order they went in (so each producer's messages keep their order), each
 * to exactly one consumer.  The ring is bounded by bytes and, optionally,
 * by a number of messages: a put waits (up to its timeout) while the
 * message does not fit.
 *
 * No feeder thread.  mp_queue_put() copies the message into the ring and
 * returns; nothing is left in a buffer of the producer's.  So a producer may
 * exit, or be joined, whenever it likes: Python's deadlock of joining a
 * process before its queue is drained cannot happen here.  Each message is
 * copied once on the way in and once on the way out, straight between the
 * caller's buffer and the ring.
 *
 * Crashes.  A producer or consumer may die at any instant - SIGKILL in the
 * middle of a put or a get included - without harm to the others: the next
 * process to put (or get) notices, repairs, and goes on.  A message is never
 * delivered twice and never in part.  A dying producer's message is either
 * whole in the queue or absent.  The guarantee for consumers is exact:
 * every message put is, at every instant, in the queue, or returned by a
 * get (the get returned 0 to its caller), or lost with a consumer that died
 * inside the get that took it - never silently gone.  A consumer that dies
 * before its get took the message leaves it first in the queue; one that
 * dies after taking it and before its get returned takes it away, and that
 * message is counted in mp_queue_stats_get()'s `lost` (logged at
 * MP_LOG_WARNING) and, for a joinable queue, counts as done, so join is not
 * blocked by the crash.  At most one message is lost per dead consumer.
 * The death is noticed - and the message counted - by the next get that
 * needs what the dead consumer held, by mp_queue_stats_get(), and by
 * mp_queue_join(), which looks again every 100 ms while it waits.  Deaths
 * are recognised through /proc (thread ids with their start times): a
 * consumer must be visible there to the process that notices it.
 *
 * Sharing with children.  The ring is a memory file (memfd), mapped shared:
 * forked children use the parent's mp_queue as it is; for spawn and
 * forkserver children, pass mp_queue_fd(q) in mp_process_opts.fds and call
 * mp_queue_attach() in the child.  Nothing is ever left in /dev/shm: the
 * memory goes away with the last process that has the queue open.
 *
 * Speed.  An uncontended put or get makes no system call.  A consumer (or a
 * producer facing a full ring) polls for about 20 microseconds before it
 * sleeps in the kernel, so a message reaches a waiting consumer on another
 * CPU in under a microsecond.
 */
#ifndef MPROC_QUEUE_H
#define MPROC_QUEUE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A message queue: made by mp_queue_new(), mp_queue_new_opts() or
 * mp_queue_attach(), released by mp_queue_free().  Opaque. */
typedef struct mp_queue mp_queue;

/** Options for mp_queue_new_opts().  Always start from MP_QUEUE_OPTS_INIT. */
typedef struct mp_queue_opts {
    /** Bytes of ring, rounded up to a power of two between 256 bytes and
     * 1 GiB; 0 means 1 MiB.  A message takes its length plus 8 bytes,
     * rounded up to a multiple of 8; the largest message a queue takes is
     * mp_queue_max_message() = capacity - 8. */
    size_t capacity;
    /** At most this many messages in the queue at once, as Python's maxsize;
     * 0: bounded by bytes only.  At most 2^30. */
    size_t max_messages;
    /** A joinable queue counts unfinished messages: mp_queue_task_done()
     * and mp_queue_join() work on it (Python's JoinableQueue). */
    bool joinable;
} mp_queue_opts;

/** The default options: a 1 MiB ring, bounded by bytes only, not
 * joinable.  Initialise every mp_queue_opts with it, then set the fields
 * wanted, so that fields added later get their defaults. */
#define MP_QUEUE_OPTS_INIT \
    {                      \
        0, 0, false        \
    }

/** Counters a queue keeps across all the processes that use it, read
 * with mp_queue_stats_get(). */
typedef struct mp_queue_stats {
    size_t messages;         /**< messages in the queue now */
    size_t bytes;            /**< bytes of ring in use, headers included */
    uint64_t dead_producers; /**< producers that died inside a put */
    uint64_t dead_consumers; /**< consumers that died inside a get */
    uint64_t lost;           /**< messages those consumers took away with them */
    uint64_t unfinished;     /**< joinable queues: messages put and not yet
                                  marked done (lost ones count as done) */
} mp_queue_stats;

/**
 * Creates a queue with a ring of capacity bytes (see mp_queue_opts), not
 * joinable, bounded by bytes only, and stores it in *out; the caller owns
 * it (mp_queue_free).  Returns 0; MP_EINVAL for a capacity above 1 GiB or
 * a NULL out; MP_ENOMEM, MP_EMFILE or another error of the memory file.
 * On failure *out is NULL (when out is not).  Thread-safe.
 */
MP_EXTERN int mp_queue_new(size_t capacity, mp_queue **out);

/** As mp_queue_new(), with options; opts may be NULL (the defaults).
 * MP_EINVAL also for max_messages above 2^30. */
MP_EXTERN int mp_queue_new_opts(const mp_queue_opts *opts, mp_queue **out);

/**
 * Opens, in this process, the queue whose memory file is fd - a descriptor
 * from mp_queue_fd(), handed over with mp_process_opts.fds or
 * mp_conn_send_fd().  fd is not taken over (the queue keeps its own
 * duplicate).  Returns 0 and sets *out; MP_EINVAL when fd is not a queue's
 * memory or out is NULL; MP_EBADF for a negative or closed fd; MP_ENOMEM.
 * On failure *out is NULL (when out is not).  Free the queue with
 * mp_queue_free() as any other.
 */
MP_EXTERN int mp_queue_attach(int fd, mp_queue **out);

/**
 * The queue's memory file, to hand to another process for
 * mp_queue_attach().  Owned by the queue: do not close it.  Returns the
 * descriptor (>= 0), or MP_EINVAL for NULL.  Never blocks.
 */
MP_EXTERN int mp_queue_fd(const mp_queue *q);

/**
 * Puts one message of len bytes (0 allowed; buf may then be NULL), waiting
 * at most timeout seconds for room.  Returns 0 once the message is in the
 * queue; MP_EAGAIN (timeout 0) or MP_ETIMEDOUT when it did not fit in time
 * (nothing was put); MP_ECLOSED once the queue is closed; MP_EMSGSIZE when
 * len exceeds mp_queue_max_message(); MP_EINVAL for a NULL q, a NULL buf
 * with len > 0, or a NaN timeout.  Process- and thread-safe.
 */
MP_EXTERN int mp_queue_put(mp_queue *q, const void *buf, size_t len, double timeout);

/**
 * Takes the oldest message into buf (cap bytes), waiting at most timeout
 * seconds for one; sets *len (may be NULL) to its size.  Returns 0;
 * MP_EMSGSIZE when it is larger than cap, with *len set to the size needed:
 * the message stays first in the queue; MP_EAGAIN (timeout 0) or
 * MP_ETIMEDOUT when none came; MP_EOF once the queue is closed and empty;
 * MP_EINVAL for a NULL q, a NULL buf with cap > 0, or a NaN timeout.
 * Process- and thread-safe.
 */
MP_EXTERN int mp_queue_get(mp_queue *q, void *buf, size_t cap, size_t *len, double timeout);

/**
 * As mp_queue_get(), into a buffer the call allocates with malloc (the
 * caller frees it; a 0-byte message gets a 1-byte buffer).  *buf is set
 * only on success; MP_ENOMEM leaves the message in the queue.  Other
 * returns as mp_queue_get(), and MP_EINVAL for a NULL buf.
 */
MP_EXTERN int mp_queue_get_alloc(mp_queue *q, void **buf, size_t *len, double timeout);

/**
 * The number of messages in the queue: a snapshot, which other processes
 * may change at once (as Python's qsize).  MP_EINVAL for NULL.  Never
 * blocks.
 */
MP_EXTERN int mp_queue_qsize(const mp_queue *q);

/** Whether the queue holds no message (a snapshot).  NULL: true. */
MP_EXTERN bool mp_queue_empty(const mp_queue *q);

/** Whether not even an empty message would fit now, by bytes or by count
 * (a snapshot).  NULL: false. */
MP_EXTERN bool mp_queue_full(const mp_queue *q);

/** The ring's size in bytes (the capacity asked for, rounded up).  0 for
 * NULL. */
MP_EXTERN size_t mp_queue_capacity(const mp_queue *q);
/** The largest message the queue takes: mp_queue_capacity() - 8.  0 for
 * NULL. */
MP_EXTERN size_t mp_queue_max_message(const mp_queue *q);

/**
 * Closes the queue for every process: puts return MP_ECLOSED from now on
 * (waiting ones too), gets return what is left and then MP_EOF.  A put
 * racing with the close either completes before it or fails; a message is
 * never stranded.  Idempotent; returns 0 (MP_EINVAL for NULL).  Never blocks.
 */
MP_EXTERN int mp_queue_close(mp_queue *q);

/** Whether the queue has been closed (by any process).  NULL: true. */
MP_EXTERN bool mp_queue_closed(const mp_queue *q);

/**
 * Joinable queues: tells the queue that one message taken out has been
 * dealt with.  Returns 0; MP_ESTATE when there are more task_done calls
 * than messages put (Python's ValueError); MP_ENOTSUP for a queue that is
 * not joinable; MP_EINVAL for NULL.  Messages a dead consumer took away
 * count as done, so that a crash does not block join() forever.  Never
 * blocks.
 */
MP_EXTERN int mp_queue_task_done(mp_queue *q);

/**
 * Joinable queues: waits at most timeout seconds until every message put
 * has been marked done or lost with a dead consumer (see "Crashes" above).
 * Returns 0, MP_ETIMEDOUT, MP_ENOTSUP for a queue that is not joinable,
 * MP_EINVAL for NULL or a NaN timeout.
 */
MP_EXTERN int mp_queue_join(mp_queue *q, double timeout);

/** Fills *out with the queue's counters (a snapshot), after counting the
 * consumers found dead since the last look (see "Crashes" above).  Returns
 * 0, or MP_EINVAL for a NULL q or out. */
MP_EXTERN int mp_queue_stats_get(const mp_queue *q, mp_queue_stats *out);

/**
 * Releases this process's hold on the queue (its mapping and descriptor).
 * The queue lives on in the other processes that hold it.  Never blocks;
 * NULL is a no-op.  Must not run while another thread of this process is
 * inside a call on q.
 */
MP_EXTERN void mp_queue_free(mp_queue *q);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_QUEUE_H */
