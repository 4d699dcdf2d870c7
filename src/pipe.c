/*
 * pipe.c - connections: whole messages over a stream socket.
 *
 * DESIGN
 * Transport.  Both kinds of pipe are AF_UNIX SOCK_STREAM socketpairs; a
 * simplex pipe only restricts which end may do what.  Measured on the
 * reference machine (../shared/anchors, limits_ipc): a socketpair moves
 * about three times the bytes per second of pipe(2) (5.6 against
 * 1.7 GB/s) and wakes its peer at least as fast (5.9 against 6.8 us each
 * way); and only a socket can carry descriptors (SCM_RIGHTS), take per-call
 * flags (MSG_DONTWAIT, MSG_NOSIGNAL, MSG_WAITALL) and so never raise
 * SIGPIPE.  Python makes the same choice for its duplex Pipe.
 *
 * Framing.  Every message is an 8-byte header - the length shifted left by
 * 8, a kind (bytes or descriptor) in the low byte - then the payload.  The
 * header and payload go out in one sendmsg().
 *
 * Receiving.  A connection reads into its own buffer (64 KiB), so that a
 * stream of small messages costs one recvmsg() per buffer-full rather than
 * two per message.  A message larger than a quarter of that buffer is read
 * straight into the caller's memory once its header is in: large messages
 * are copied once, by the kernel.  Whatever a call cannot deliver stays in
 * the connection: a header too large for the caller's buffer (MP_EMSGSIZE)
 * is simply left in place, and the part of a large message that arrived
 * before a timeout is moved back into the connection's buffer (grown for
 * the purpose), where the next call resumes.  Nothing read from the kernel
 * is ever dropped, except the remains of a message cut short by the end
 * of the stream.
 *
 * Blocking.  The descriptors stay in blocking mode, because the open file
 * description (and so O_NONBLOCK) is shared with every process that
 * inherited it.  A call without a time limit makes plain blocking calls -
 * one syscall per message each way on the hot path - and a call with one
 * uses MSG_DONTWAIT and waits in ppoll() against its absolute deadline.
 *
 * Descriptors.  A descriptor travels as SCM_RIGHTS on the header of its own
 * frame.  The kernel delivers the descriptors of a sendmsg() with the
 * recvmsg() that reads its first byte, and never reads past a message that
 * carried some in the same call, so descriptors arrive no later than their
 * frame and at most one batch per read: they wait in a small queue beside
 * the byte buffer until their frame is read.
 */
#define _GNU_SOURCE
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HDR       8
#define KIND_DATA 1u
#define KIND_FD   2u
#define MAX_LEN   ((((uint64_t)1) << 56) - 1)
#define RBUF_SIZE ((size_t)64 * 1024)
/* Frames up to this size are gathered in the connection's buffer; larger
 * ones are read into the caller's memory. */
#define SMALL_FRAME (RBUF_SIZE / 4)
/* Descriptors received ahead of their frame.  One read brings at most one
 * batch, and a read happens only when no whole frame is buffered, so a
 * handful is plenty; more means a foreign sender. */
#define FDQ_MAX 8

struct mp_conn {
    int fd;
    int flags; /* MP_CONN_READABLE | MP_CONN_WRITABLE */
    bool send_broken;
    bool recv_broken;
    pthread_mutex_t slock; /* serialises senders */
    pthread_mutex_t rlock; /* serialises receivers; guards what follows */
    char *rbuf;
    size_t rcap, rpos, rend; /* bytes [rpos, rend) of rbuf are unread */
    int fdq[FDQ_MAX];        /* -1 marks a descriptor the kernel dropped */
    size_t nfdq;
};

/* What a call may wait for. */
typedef struct wait_spec {
    bool forever;
    bool nowait;
    int64_t deadline;
} wait_spec;

static wait_spec wait_spec_of(double timeout)
{
    wait_spec w = {.forever = timeout < 0, .nowait = !(timeout < 0) && !(timeout > 0)};
    w.deadline = mp__deadline(timeout);
    return w;
}

/* Waits for events on the socket.  Returns 0 when ready, MP_EAGAIN for a
 * call that may not wait, MP_ETIMEDOUT, or -errno. */
static int wait_ready(const mp_conn *c, short events, const wait_spec *w)
{
    if (w->nowait)
        return MP_EAGAIN;
    int rc = mp__poll_fd(c->fd, events, w->deadline);
    return rc < 0 ? rc : 0;
}

static uint64_t frame_word(uint64_t len, unsigned kind)
{
    return len << 8 | kind;
}

/* ---- creating ------------------------------------------------------------ */

static mp_conn *conn_alloc(int fd, int flags)
{
    mp_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->flags = flags;
    pthread_mutex_init(&c->slock, NULL);
    pthread_mutex_init(&c->rlock, NULL);
    return c;
}

int mp_pipe(mp_conn **a, mp_conn **b, bool duplex)
{
    if (!a || !b)
        return MP_EINVAL;
    *a = *b = NULL;
    int fds[2];
    int rc = mp__socketpair(SOCK_STREAM, fds);
    if (rc < 0)
        return rc;
    int both = MP_CONN_READABLE | MP_CONN_WRITABLE;
    mp_conn *x = conn_alloc(fds[0], duplex ? both : MP_CONN_READABLE);
    mp_conn *y = conn_alloc(fds[1], duplex ? both : MP_CONN_WRITABLE);
    if (!x || !y) {
        mp_conn_free(x);
        mp_conn_free(y);
        if (!x)
            mp__close(fds[0]);
        if (!y)
            mp__close(fds[1]);
        return MP_ENOMEM;
    }
    *a = x;
    *b = y;
    return 0;
}

int mp_conn_from_fd(int fd, int flags, mp_conn **out)
{
    if (!out)
        return MP_EINVAL;
    *out = NULL;
    int both = MP_CONN_READABLE | MP_CONN_WRITABLE;
    if (fd < 0 || (flags & both) == 0 || (flags & ~both) != 0)
        return MP_EINVAL;
    int domain = 0, type = 0;
    socklen_t sl = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &sl) != 0)
        return errno == EBADF ? MP_EBADF : MP_EINVAL;
    sl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) != 0 || domain != AF_UNIX ||
        type != SOCK_STREAM)
        return MP_EINVAL;
    int rc = mp__set_cloexec(fd, true);
    if (rc < 0)
        return rc;
    mp_conn *c = conn_alloc(fd, flags);
    if (!c)
        return MP_ENOMEM;
    *out = c;
    return 0;
}

/* ---- sending ------------------------------------------------------------- */

/* Sends one frame, with a descriptor on its header when pass_fd >= 0.
 * Caller holds slock. */
static int send_frame(mp_conn *c, uint64_t word, const void *buf, size_t len, int pass_fd,
                      double timeout)
{
    wait_spec w = wait_spec_of(timeout);
    struct iovec iov[2] = {{&word, HDR}, {(void *)buf, len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    if (pass_fd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        msg.msg_control = ctl.b;
        msg.msg_controllen = sizeof ctl.b;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
    }
    size_t total = HDR + len, sent = 0;
    int flags = MSG_NOSIGNAL | (w.forever ? 0 : MSG_DONTWAIT);
    while (sent < total) {
        ssize_t n = sendmsg(c->fd, &msg, flags);
        if (n >= 0) {
            sent += (size_t)n;
            /* The descriptor went with the first byte. */
            msg.msg_control = NULL;
            msg.msg_controllen = 0;
            while (n > 0 && msg.msg_iovlen > 0) {
                size_t k = (size_t)n < msg.msg_iov->iov_len ? (size_t)n : msg.msg_iov->iov_len;
                msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + k;
                msg.msg_iov->iov_len -= k;
                n -= (ssize_t)k;
                if (msg.msg_iov->iov_len == 0) {
                    msg.msg_iov++;
                    msg.msg_iovlen--;
                }
            }
            continue;
        }
        int rc = -errno;
        if (rc == MP_EINTR)
            continue;
        if (rc == MP_EAGAIN) {
            rc = wait_ready(c, POLLOUT, &w);
            if (rc == 0)
                continue;
            if (sent > 0 && rc == MP_EAGAIN)
                rc = MP_ETIMEDOUT;
        } else if (rc == MP_ECONNRESET) {
            rc = MP_EPIPE;
        }
        /* Part of the frame is in the stream and cannot be taken back: the
         * peer would read the next frame's bytes as the rest of this one. */
        if (sent > 0)
            c->send_broken = true;
        return rc;
    }
    return 0;
}

static int send_checked(mp_conn *c, uint64_t word, const void *buf, size_t len, int pass_fd,
                        double timeout)
{
    pthread_mutex_lock(&c->slock);
    int rc;
    if (c->fd < 0)
        rc = MP_ECLOSED;
    else if (!(c->flags & MP_CONN_WRITABLE))
        rc = MP_EBADF;
    else if (c->send_broken)
        rc = MP_ESTATE;
    else
        rc = send_frame(c, word, buf, len, pass_fd, timeout);
    pthread_mutex_unlock(&c->slock);
    return rc;
}

int mp_conn_send_timeout(mp_conn *c, const void *buf, size_t len, double timeout)
{
    if (!c || (!buf && len > 0) || len > MAX_LEN || mp__timeout_check(timeout) < 0)
        return MP_EINVAL;
    return send_checked(c, frame_word(len, KIND_DATA), buf, len, -1, timeout);
}

int mp_conn_send(mp_conn *c, const void *buf, size_t len)
{
    return mp_conn_send_timeout(c, buf, len, MP_FOREVER);
}

int mp_conn_send_fd(mp_conn *c, int fd)
{
    if (!c)
        return MP_EINVAL;
    if (fd < 0 || fcntl(fd, F_GETFD) < 0)
        return MP_EBADF;
    return send_checked(c, frame_word(0, KIND_FD), NULL, 0, fd, MP_FOREVER);
}

/* ---- receiving ----------------------------------------------------------- */

/* Queues the descriptors a read brought, in order. */
static void take_fds(mp_conn *c, struct msghdr *msg)
{
    bool got = false;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            if (c->nfdq < FDQ_MAX)
                c->fdq[c->nfdq++] = fd;
            else
                mp__close(fd); /* more than any sender of ours sends */
            got = true;
        }
    }
    /* The kernel had descriptors for us but could not install them (this
     * process is out of descriptors): keep the frame's place, so that the
     * next descriptors are not paired with the wrong frames. */
    if ((msg->msg_flags & MSG_CTRUNC) && !got && c->nfdq < FDQ_MAX)
        c->fdq[c->nfdq++] = -1;
}

/* One recvmsg() into buf.  Returns the byte count, 0 at the end of the
 * stream, or -errno. */
static ssize_t sock_recv(mp_conn *c, void *buf, size_t len, int flags)
{
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int) * FDQ_MAX)];
    } ctl;
    struct iovec iov = {buf, len};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    ssize_t n = mp__recvmsg(c->fd, &msg, flags);
    if (n < 0)
        return n == MP_ECONNRESET ? 0 : n; /* reset: the peer is gone */
    if (msg.msg_controllen > 0 || (msg.msg_flags & MSG_CTRUNC))
        take_fds(c, &msg);
    return n;
}

static int ensure_rcap(mp_conn *c, size_t need)
{
    if (c->rcap >= need)
        return 0;
    size_t cap = c->rcap ? c->rcap : RBUF_SIZE;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(c->rbuf, cap);
    if (!p)
        return MP_ENOMEM;
    c->rbuf = p;
    c->rcap = cap;
    return 0;
}

/* The end of the stream came in the middle of a frame: what there is of it
 * can never be completed. */
static int truncated(mp_conn *c)
{
    c->rpos = c->rend = 0;
    return MP_EPROTO;
}

/* Makes sure at least want bytes are buffered.  Returns 0, MP_EOF (the
 * stream ended with nothing buffered), MP_EPROTO (it ended inside a frame),
 * MP_EAGAIN / MP_ETIMEDOUT, MP_ENOMEM or -errno. */
static int fill(mp_conn *c, size_t want, const wait_spec *w)
{
    int rc = ensure_rcap(c, want);
    if (rc < 0)
        return rc;
    while (c->rend - c->rpos < want) {
        if (c->rpos > 0 && c->rcap - c->rpos < want) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rend - c->rpos);
            c->rend -= c->rpos;
            c->rpos = 0;
        }
        ssize_t n =
            sock_recv(c, c->rbuf + c->rend, c->rcap - c->rend, w->forever ? 0 : MSG_DONTWAIT);
        if (n > 0) {
            c->rend += (size_t)n;
            continue;
        }
        if (n == 0)
            return c->rend == c->rpos ? MP_EOF : truncated(c);
        if (n == MP_EINTR)
            continue;
        if (n != MP_EAGAIN)
            return (int)n;
        rc = wait_ready(c, POLLIN, w);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Reads the rest of a large frame straight into dst, of which got bytes
 * are already there.  On a timeout the part received goes back into the
 * connection's buffer behind its header, so the next call resumes. */
static int recv_direct(mp_conn *c, uint64_t word, char *dst, size_t got, size_t len,
                       const wait_spec *w)
{
    while (got < len) {
        ssize_t n = sock_recv(c, dst + got, len - got, w->forever ? MSG_WAITALL : MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0)
            return MP_EPROTO; /* the rest will never come: drop it */
        if (n == MP_EINTR)
            continue;
        int rc = (int)n;
        if (rc == MP_EAGAIN) {
            rc = wait_ready(c, POLLIN, w);
            if (rc == 0)
                continue;
        }
        if (ensure_rcap(c, HDR + got) < 0) {
            /* Nowhere to keep what arrived: the stream cannot be resumed. */
            c->recv_broken = true;
            return MP_ENOMEM;
        }
        memcpy(c->rbuf, &word, HDR);
        memcpy(c->rbuf + HDR, dst, got);
        c->rpos = 0;
        c->rend = HDR + got;
        return rc;
    }
    return 0;
}

/* Reads the next frame's header into *word, leaving it buffered. */
static int peek_header(mp_conn *c, uint64_t *word, const wait_spec *w)
{
    int rc = fill(c, HDR, w);
    if (rc < 0)
        return rc;
    memcpy(word, c->rbuf + c->rpos, HDR);
    unsigned kind = (unsigned)(*word & 0xff);
    if (kind != KIND_DATA && kind != KIND_FD)
        return MP_EPROTO;
    return 0;
}

/* Receives a data frame into buf (cap bytes), or into a new allocation when
 * abuf is non-NULL.  Caller holds rlock. */
static int recv_locked(mp_conn *c, void *buf, size_t cap, size_t *len, void **abuf, double timeout)
{
    wait_spec w = wait_spec_of(timeout);
    uint64_t word;
    int rc = peek_header(c, &word, &w);
    if (rc < 0)
        return rc;
    if ((word & 0xff) != KIND_DATA)
        return MP_EPROTO;
    uint64_t mlen64 = word >> 8;
    if (mlen64 > SIZE_MAX - HDR)
        return MP_EMSGSIZE;
    size_t mlen = (size_t)mlen64;
    *len = mlen;
    if (abuf) {
        buf = malloc(mlen ? mlen : 1);
        if (!buf)
            return MP_ENOMEM;
    } else if (mlen > cap) {
        return MP_EMSGSIZE;
    }
    if (c->rend - c->rpos - HDR < mlen && HDR + mlen <= SMALL_FRAME)
        rc = fill(c, HDR + mlen, &w);
    size_t have = rc == 0 ? c->rend - c->rpos - HDR : 0;
    if (rc == 0 && have >= mlen) {
        if (mlen > 0) /* buf may be NULL for an empty message */
            memcpy(buf, c->rbuf + c->rpos + HDR, mlen);
        c->rpos += HDR + mlen;
    } else if (rc == 0) {
        /* A large frame: what is buffered, then the rest straight from the
         * socket. */
        memcpy(buf, c->rbuf + c->rpos + HDR, have);
        c->rpos = c->rend = 0;
        rc = recv_direct(c, word, buf, have, mlen, &w);
    }
    if (c->rpos == c->rend) {
        c->rpos = c->rend = 0;
        if (c->rcap > RBUF_SIZE) { /* grown for a stashed large frame */
            char *p = realloc(c->rbuf, RBUF_SIZE);
            if (p) {
                c->rbuf = p;
                c->rcap = RBUF_SIZE;
            }
        }
    }
    if (abuf) {
        if (rc == 0)
            *abuf = buf;
        else
            free(buf);
    }
    return rc;
}

/* Takes rlock after checking that the end may receive. */
static int recv_begin(mp_conn *c)
{
    pthread_mutex_lock(&c->rlock);
    int rc = 0;
    if (c->fd < 0)
        rc = MP_ECLOSED;
    else if (!(c->flags & MP_CONN_READABLE))
        rc = MP_EBADF;
    else if (c->recv_broken)
        rc = MP_ESTATE;
    if (rc < 0)
        pthread_mutex_unlock(&c->rlock);
    return rc;
}

int mp_conn_recv(mp_conn *c, void *buf, size_t cap, size_t *len, double timeout)
{
    if (!c || !len || (!buf && cap > 0) || mp__timeout_check(timeout) < 0)
        return MP_EINVAL;
    int rc = recv_begin(c);
    if (rc < 0)
        return rc;
    rc = recv_locked(c, buf, cap, len, NULL, timeout);
    pthread_mutex_unlock(&c->rlock);
    return rc;
}

int mp_conn_recv_alloc(mp_conn *c, void **buf, size_t *len, double timeout)
{
    if (!c || !buf || !len || mp__timeout_check(timeout) < 0)
        return MP_EINVAL;
    int rc = recv_begin(c);
    if (rc < 0)
        return rc;
    rc = recv_locked(c, NULL, 0, len, buf, timeout);
    pthread_mutex_unlock(&c->rlock);
    return rc;
}

int mp_conn_recv_fd(mp_conn *c, int *fd, double timeout)
{
    if (!c || !fd || mp__timeout_check(timeout) < 0)
        return MP_EINVAL;
    int rc = recv_begin(c);
    if (rc < 0)
        return rc;
    wait_spec w = wait_spec_of(timeout);
    uint64_t word;
    rc = peek_header(c, &word, &w);
    if (rc == 0 && (word & 0xff) != KIND_FD)
        rc = MP_EPROTO;
    if (rc == 0) {
        c->rpos += HDR;
        if (c->nfdq == 0) {
            rc = MP_EPROTO; /* a descriptor frame that came without one */
        } else {
            int got = c->fdq[0];
            memmove(c->fdq, c->fdq + 1, (c->nfdq - 1) * sizeof(int));
            c->nfdq--;
            if (got < 0)
                rc = MP_EMFILE; /* the kernel could not give it to us */
            else
                *fd = got;
        }
    }
    pthread_mutex_unlock(&c->rlock);
    return rc;
}

int mp_conn_poll(mp_conn *c, double timeout)
{
    if (!c || mp__timeout_check(timeout) < 0)
        return MP_EINVAL;
    int rc = recv_begin(c);
    if (rc < 0)
        return rc;
    bool whole = false;
    if (c->rend - c->rpos >= HDR) {
        uint64_t word;
        memcpy(&word, c->rbuf + c->rpos, HDR);
        whole = (word >> 8) <= c->rend - c->rpos - HDR;
    }
    int fd = c->fd;
    pthread_mutex_unlock(&c->rlock);
    if (whole)
        return 1;
    rc = mp__poll_fd(fd, POLLIN, mp__deadline(timeout));
    if (rc == MP_ETIMEDOUT)
        return 0;
    return rc < 0 ? rc : 1;
}

/* ---- closing ------------------------------------------------------------- */

int mp_conn_fd(const mp_conn *c)
{
    if (!c)
        return MP_EINVAL;
    return c->fd < 0 ? MP_ECLOSED : c->fd;
}

int mp_conn_close(mp_conn *c)
{
    if (!c)
        return MP_EINVAL;
    mp__close(c->fd);
    c->fd = -1;
    for (size_t i = 0; i < c->nfdq; i++)
        mp__close(c->fdq[i]);
    c->nfdq = 0;
    return 0;
}

void mp_conn_free(mp_conn *c)
{
    if (!c)
        return;
    mp_conn_close(c);
    pthread_mutex_destroy(&c->slock);
    pthread_mutex_destroy(&c->rlock);
    free(c->rbuf);
    free(c);
}
