/**
 * @file
 * mproc/pipe.h - connections between two processes (Python's
 * multiprocessing.Pipe and Connection).
 *
 * Included by <mproc.h>.
 *
 * mp_pipe() makes two connected ends.  Each end sends and receives whole
 * messages: a message sent with one call arrives whole with one call, in
 * order, however large it is (messages larger than the kernel's buffer are
 * streamed through it, not refused).  A message is bytes; it can also be a
 * file descriptor (mp_conn_send_fd), which arrives as a new descriptor
 * for the same open file, socket or memory segment.
 *
 * One message per receive.  A receive takes exactly one message out of the
 * kernel, never more: a process that receives one message and exits, or
 * two processes that receive from one end by turns, leave every other
 * message where it was, for whoever receives next.  (A receive that fails
 * with MP_EMSGSIZE or MP_EPROTO for the message's kind, or that times out
 * in the middle of a message larger than 64 KiB, has taken that one
 * message from the kernel: it keeps it, and the next receive on the same
 * connection in the same process starts from it.)
 *
 * After fork.  A forked child holds both ends, as its parent does.  Close
 * the end each process does not use, as in Python: an end sees MP_EOF only
 * once every holder of the other end - in every process - has closed it,
 * so an unused copy left open keeps a reader waiting.  For spawn and
 * forkserver children, hand the descriptor over in mp_process_opts.fds and
 * wrap it in the child with mp_conn_from_fd().  A child must not use a
 * connection that another thread of its parent was inside a call on at
 * the moment of fork (its copy of the lock stays taken); the end a child
 * uses is normally one its parent does not touch.
 *
 * Sharing.  Each call is thread-safe: threads of one process may send and
 * receive on one end at once (sends are serialised with each other, and so
 * are receives).  Two processes must not use the same end at the same time
 * (as in Python, their messages could interleave); use a queue
 * (mproc/queue.h) for many producers or consumers.
 *
 * Signals.  Sending to an end whose peer is gone returns MP_EPIPE; SIGPIPE
 * is never raised.
 */
#ifndef MPROC_PIPE_H
#define MPROC_PIPE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One end of a connection: made by mp_pipe() or mp_conn_from_fd(),
 * closed by mp_conn_close(), freed by mp_conn_free().  Opaque. */
typedef struct mp_conn mp_conn;

/** Directions for mp_conn_from_fd(), combined with `|`. */
enum {
    MP_CONN_READABLE = 1, /**< the end receives */
    MP_CONN_WRITABLE = 2  /**< the end sends */
};

/**
 * Makes a connected pair.  duplex: both ends send and receive.  Not duplex:
 * *a only receives and *b only sends (Python's `r, w = Pipe(False)`).
 * Both ends are AF_UNIX SOCK_SEQPACKET sockets, close-on-exec.  The caller
 * frees each end with mp_conn_free().
 *
 * @param a       receives the first end (the receiving one when not duplex).
 * @param b       receives the second end (the sending one when not duplex).
 * @param duplex  true for two ends that both send and receive.
 * @return 0, MP_EINVAL for NULL pointers, MP_ENOMEM, or the socketpair
 *         error (MP_EMFILE, ...); on error nothing is allocated and *a, *b
 *         are NULL.
 */
MP_EXTERN int mp_pipe(mp_conn **a, mp_conn **b, bool duplex);

/**
 * Wraps a descriptor that is one end of a connection - typically one
 * inherited by a spawn or forkserver child (mp_process_inherited_fd) - in a
 * new mp_conn.  flags: MP_CONN_READABLE and/or MP_CONN_WRITABLE.  The
 * connection takes ownership of fd (closing the connection closes it) and
 * makes it close-on-exec.  Returns 0, MP_EINVAL (NULL out, a negative fd,
 * no flags or an unknown one, or fd is not an AF_UNIX SOCK_SEQPACKET socket - the other end
 * of an mp_pipe()), MP_EBADF (fd is not open), or MP_ENOMEM; *out is then
 * NULL (when out is not) and fd stays the caller's.
 */
MP_EXTERN int mp_conn_from_fd(int fd, int flags, mp_conn **out);

/**
 * The largest message mp_conn_recv_alloc() accepts on this end: a peer
 * announcing a larger one gets MP_EMSGSIZE there instead of an allocation
 * of the size it names.  Default 1 GiB.  mp_conn_recv() into the caller's
 * own buffer is bounded by that buffer instead.  Returns 0, or MP_EINVAL
 * for a NULL c or a max of 0.  Thread-safe.
 */
MP_EXTERN int mp_conn_set_max_message(mp_conn *c, size_t max);

/**
 * Sends one message of len bytes (len may be 0; buf may then be NULL),
 * blocking as long as the peer's buffer is full.  Returns 0 once the whole
 * message is handed to the kernel; MP_EPIPE when no one holds the other end
 * any more (or, for a message over 64 KiB, when the receiver that started
 * taking it went away); MP_EBADF on a receive-only end; MP_ECLOSED after
 * mp_conn_close(); MP_EINVAL for a NULL conn or NULL buf with len > 0.
 * Blocks (see mp_conn_send_timeout() for a bounded wait); thread-safe.
 */
MP_EXTERN int mp_conn_send(mp_conn *c, const void *buf, size_t len);

/**
 * As mp_conn_send(), waiting at most timeout seconds for room.  A message
 * of up to 64 KiB goes whole or not at all: when the time runs out nothing
 * was sent, the call returns MP_EAGAIN for a timeout of 0, MP_ETIMEDOUT
 * otherwise, and may be repeated.  A larger message streams through the
 * kernel's buffer, so the time can run out in its middle (or before its
 * first byte, once the receiver was told it comes): the call returns
 * MP_ETIMEDOUT and the message is cut - the receiver gets MP_EPROTO for it
 * and both ends go on with the next message.  Give large messages a
 * generous timeout.  Other errors as mp_conn_send(), and MP_EINVAL for a
 * NaN timeout.
 */
MP_EXTERN int mp_conn_send_timeout(mp_conn *c, const void *buf, size_t len, double timeout);

/**
 * Receives the next message into buf (cap bytes), waiting at most timeout
 * seconds for it to arrive; sets *len to its size.  Returns 0;
 * MP_EMSGSIZE when the message is larger than cap, with *len set to the
 * size needed - the message stays and the next receive gets it;
 * MP_EAGAIN (timeout 0) or MP_ETIMEDOUT when no whole message came in time
 * (what arrived of it is kept for the next call); MP_EOF when every holder
 * of the other end has closed it and every message has been read;
 * MP_EPROTO when the sender cut the message short (a timed-out or dead
 * sender: that message is dropped, the next one follows), when a packet
 * no mproc sender makes arrived (dropped), or when the next message is a
 * descriptor (read it with mp_conn_recv_fd); MP_EMFILE when a descriptor
 * or large message came and this process is out of descriptors; MP_EBADF
 * on a send-only end; MP_ECLOSED; MP_EINVAL for NULL c or len, or NULL buf
 * with cap > 0.  On a failure the contents of buf are unspecified.  A
 * message is read straight into buf, not through an extra copy.
 */
MP_EXTERN int mp_conn_recv(mp_conn *c, void *buf, size_t cap, size_t *len, double timeout);

/**
 * As mp_conn_recv(), into a buffer the call allocates (malloc; the caller
 * frees it).  *buf is set only on success (a 0-byte message gets a
 * 1-byte allocation, never NULL).  A message larger than the end's limit
 * (mp_conn_set_max_message, 1 GiB by default) is not allocated for:
 * MP_EMSGSIZE with *len set, the message stays.  MP_ENOMEM leaves the
 * message to be read.  Other errors as mp_conn_recv(), and MP_EINVAL for
 * a NULL buf or len.
 */
MP_EXTERN int mp_conn_recv_alloc(mp_conn *c, void **buf, size_t *len, double timeout);

/**
 * Waits at most timeout seconds until a receive would not block: data is
 * waiting or the stream has ended.  Returns 1 when so, 0 when the time ran
 * out (a query, like Python's poll(), not an error), MP_EBADF on a
 * send-only end, MP_ECLOSED, or MP_EINVAL.  Data waiting may be only the
 * start of a large message still on its way.
 */
MP_EXTERN int mp_conn_poll(mp_conn *c, double timeout);

/**
 * Sends a descriptor: the receiver gets a new descriptor for the same open
 * file description (a memfd, a socket, a pipe, a file), as if dup()ed into
 * its process.  fd stays open here.  Messages and descriptors keep their
 * order on one connection.  Returns 0, MP_EBADF (fd not open, or a
 * receive-only end), MP_EPIPE, MP_ECLOSED, MP_EINVAL.
 */
MP_EXTERN int mp_conn_send_fd(mp_conn *c, int fd);

/**
 * Receives a descriptor sent with mp_conn_send_fd(), close-on-exec, into
 * *fd; the caller owns it.  Waits at most timeout seconds.  Returns 0;
 * MP_EPROTO when the next message is bytes (it stays for mp_conn_recv),
 * and at once - never after a wait - for a descriptor message that came
 * without its descriptor; MP_EMFILE when the kernel could not give it to
 * this process (out of descriptors; the message is consumed); otherwise
 * as mp_conn_recv().
 */
MP_EXTERN int mp_conn_recv_fd(mp_conn *c, int *fd, double timeout);

/**
 * The descriptor underneath, for poll()/epoll in an event loop (readable
 * means mp_conn_poll() would return 1, give or take data already buffered
 * by this connection: call mp_conn_poll(c, 0) to be sure).  Do not read,
 * write or close it.  Returns the descriptor (>= 0), MP_ECLOSED after
 * close, MP_EINVAL for NULL.  Never blocks.
 */
MP_EXTERN int mp_conn_fd(const mp_conn *c);

/**
 * Closes this process's copy of the end.  Idempotent; returns 0 (MP_EINVAL
 * for NULL).  Descriptors received but not yet taken are closed too.  Other
 * processes' copies stay open.  Must not run while another thread is inside
 * a call on the same connection.
 */
MP_EXTERN int mp_conn_close(mp_conn *c);

/** Closes (if needed) and frees the connection.  Never blocks.  NULL is a
 * no-op. */
MP_EXTERN void mp_conn_free(mp_conn *c);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_PIPE_H */
