/*
 * pipe.c - connections: whole messages over a Unix socket, one message per
 * receive.
 *
 * DESIGN
 * Transport.  Both kinds of pipe are AF_UNIX SOCK_SEQPACKET socketpairs; a
 * simplex pipe only restricts which end may do what.  A packet socket keeps
 * message boundaries in the kernel, so a receive takes exactly one message
 * out of it and nothing beyond: a process that receives one message and
 * exits, or two processes that read one end by turns, never take or lose
 * messages that were not theirs.  (The stream socket this replaced read up
 * to 64 KiB ahead into the process's buffer, and lost what it held when
 * the process ended.)  Only a Unix socket carries descriptors (SCM_RIGHTS)
 * and takes MSG_NOSIGNAL, so SIGPIPE is never raised.
 *
 * Framing.  Every packet starts with an 8-byte word: the message length
 * shifted left by 8, a kind in the low byte.
 *   KIND_DATA  the payload follows in the same packet (up to INLINE_MAX);
 *   KIND_FD    a descriptor rides on the packet (SCM_RIGHTS), no payload;
 *   KIND_BULK  a larger message: a stream socket rides on the packet, and
 *              the payload follows on that stream, which carries nothing
 *              else and is closed after it.
 * Large messages go through a stream of their own because packets cost
 * one system call each way and the kernel lets a packet be at most the
 * socket's buffer (200 KiB here): 1 MiB messages cut into 64 KiB packets
 * moved 1-2.5 GB/s where one stream moves 3-5; a socketpair per large
 * message costs a few microseconds.  Being private to one message, such a
 * stream cannot desynchronise anything: a sender that gives up midway (a
 * timeout) closes it, the receiver sees the message cut short (MP_EPROTO)
 * and the connection goes on; a receiver that dies midway takes only that
 * message.
 *
 * Receiving.  A receive reads one packet with one recvmsg(): the word, then
 * straight into the caller's buffer, then into the connection's own buffer
 * for what does not fit.  A message that fits is delivered without another
 * copy.  A packet that cannot be delivered now - too large for the
 * caller's buffer (MP_EMSGSIZE), of the other kind (MP_EPROTO), a large
 * message whose payload did not arrive in time, memory that could not be
 * allocated - is kept in the connection (`held`: the packet, its
 * descriptor, what arrived of a large payload), and the next receive
 * starts from it.  So a connection holds at most that one message, and
 * only after a call reported it; a peek before every read would keep it in
 * the kernel instead, at the price of a second system call per message.
 *
 * Blocking.  The descriptors stay in blocking mode, because the open file
 * description (and so O_NONBLOCK) is shared with every process that
 * inherited it.  A call without a time limit makes plain blocking calls,
 * one system call per message each way on the hot path; a call with one
 * uses MSG_DONTWAIT and waits in ppoll() against its absolute deadline.
 */
#define _GNU_SOURCE
#include "base.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HDR        8
#define KIND_DATA  1u
#define KIND_FD    2u
#define KIND_BULK  3u
#define MAX_LEN    ((((uint64_t)1) << 56) - 1)
#define PACKET_MAX ((size_t)64 * 1024)
/* The largest payload a packet carries: a 64 KiB packet is a 16 KiB head
 * and pages in the kernel, cheap to allocate; larger ones need large
 * contiguous allocations and were slower. */
#define INLINE_MAX (PACKET_MAX - HDR)
/* The default cap on what mp_conn_recv_alloc() allocates for one message. */
#define DEFAULT_MAX_MESSAGE ((size_t)1 << 30)

struct mp_conn {
    int fd;
    int flags;             /* MP_CONN_READABLE | MP_CONN_WRITABLE */
    pthread_mutex_t slock; /* serialises senders */
    pthread_mutex_t rlock; /* serialises receivers; guards what follows */
    size_t max_message;
    char *rbuf; /* PACKET_MAX bytes, allocated at the first receive */
    /* The message taken from the kernel and not yet delivered (see DESIGN:
     * Receiving): its word; its payload in rbuf (KIND_DATA); its
     * descriptor or stream (KIND_FD, KIND_BULK, else -1); what arrived of a
     * bulk payload (part, got). */
    bool held;
    uint64_t word;
    int held_fd;
    char *part;
    size_t got;
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

/* Waits for events on fd.  Returns 0 when ready, MP_EAGAIN for a call that
 * may not wait, MP_ETIMEDOUT, or -errno. */
static int wait_ready(int fd, short events, const wait_spec *w)
{
    if (w->nowait)
        return MP_EAGAIN;
    int rc = mp__poll_fd(fd, events, w->deadline);
    return rc < 0 ? rc : 0;
}

static uint64_t frame_word(uint64_t len, unsigned kind)
{
    return len << 8 | kind;
}

static unsigned word_kind(uint64_t word)
{
    return (unsigned)(word & 0xff);
}

static uint64_t word_len(uint64_t word)
{
    return word >> 8;
}

/* ---- creating ------------------------------------------------------------ */

static mp_conn *conn_alloc(int fd, int flags)
{
    mp_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->flags = flags;
    c->held_fd = -1;
    c->max_message = DEFAULT_MAX_MESSAGE;
    pthread_mutex_init(&c->slock, NULL);
    pthread_mutex_init(&c->rlock, NULL);
    return c;
}

/* The detail of a refused send or receive (mp_last_error_detail): c if it is
 * NULL, else bad (the rule another argument broke), else the timeout.  Out
 * of line, so that the checks on the way to a message cost no more. */
__attribute__((cold, noinline)) static int refused(const char *call, const mp_conn *c,
                                                   const char *bad, double timeout)
{
    if (!c)
        return mp__fail(MP_EINVAL, "%s: c must not be NULL", call);
    if (bad)
        return mp__fail(MP_EINVAL, "%s: %s", call, bad);
    return mp__fail(MP_EINVAL, "%s: timeout must be a number, < 0 for forever (got %g)", call,
                    timeout);
}

int mp_pipe(mp_conn **a, mp_conn **b, bool duplex)
{
    MP__NONNULL(a);
    MP__NONNULL(b);
    *a = *b = NULL;
    int fds[2];
    int rc = mp__socketpair(SOCK_SEQPACKET, fds);
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
    MP__NONNULL(out);
    *out = NULL;
    int both = MP_CONN_READABLE | MP_CONN_WRITABLE;
    if (fd < 0)
        return mp__fail(MP_EINVAL, "mp_conn_from_fd: fd must be >= 0 (got %d)", fd);
    if ((flags & both) == 0 || (flags & ~both) != 0)
        return mp__fail(MP_EINVAL,
                        "mp_conn_from_fd: flags must be MP_CONN_READABLE and/or "
                        "MP_CONN_WRITABLE (got %#x)",
                        (unsigned)flags);
    int domain = 0, type = 0;
    socklen_t sl = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &sl) != 0)
        return mp__fail(errno == EBADF ? MP_EBADF : MP_EINVAL,
                        "mp_conn_from_fd: fd must be an open socket (got %d)", fd);
    sl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) != 0 || domain != AF_UNIX ||
        type != SOCK_SEQPACKET)
        return mp__fail(
            MP_EINVAL, "mp_conn_from_fd: fd must be an AF_UNIX SOCK_SEQPACKET socket (got %d)", fd);
    int rc = mp__set_cloexec(fd, true);
    if (rc < 0)
        return rc;
    mp_conn *c = conn_alloc(fd, flags);
    if (!c)
        return MP_ENOMEM;
    *out = c;
    return 0;
}

int mp_conn_set_max_message(mp_conn *c, size_t max)
{
    MP__NONNULL(c);
    if (max == 0)
        return mp__fail(MP_EINVAL, "mp_conn_set_max_message: max must be > 0 (got 0)");
    pthread_mutex_lock(&c->rlock);
    c->max_message = max;
    pthread_mutex_unlock(&c->rlock);
    return 0;
}

/* ---- sending ------------------------------------------------------------- */

/* Sends one packet: word, then len bytes of buf, with a descriptor when
 * pass_fd >= 0.  A packet goes whole or not at all.  Returns 0, MP_EAGAIN
 * (timeout 0) / MP_ETIMEDOUT with nothing sent, MP_EPIPE or -errno. */
static int send_packet(int sock, uint64_t word, const void *buf, size_t len, int pass_fd,
                       const wait_spec *w)
{
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
    int flags = MSG_NOSIGNAL | (w->forever ? 0 : MSG_DONTWAIT);
    for (;;) {
        if (sendmsg(sock, &msg, flags) >= 0)
            return 0;
        int rc = -errno;
        if (rc == MP_EINTR)
            continue;
        if (rc == MP_ECONNRESET)
            return MP_EPIPE;
        if (rc != MP_EAGAIN)
            return rc;
        if ((rc = wait_ready(sock, POLLOUT, w)) < 0)
            return rc;
    }
}

/* Writes len bytes to a stream socket, waiting as w allows.  Returns 0 or
 * the error that stopped it (MP_ETIMEDOUT after a first byte too). */
static int send_stream(int sock, const char *buf, size_t len, const wait_spec *w)
{
    int flags = MSG_NOSIGNAL | (w->forever ? 0 : MSG_DONTWAIT);
    while (len > 0) {
        ssize_t n = send(sock, buf, len, flags);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        int rc = n == 0 ? MP_EPIPE : -errno;
        if (rc == MP_EINTR)
            continue;
        if (rc == MP_ECONNRESET)
            return MP_EPIPE;
        if (rc != MP_EAGAIN)
            return rc;
        rc = wait_ready(sock, POLLOUT, w);
        if (rc < 0)
            return rc == MP_EAGAIN ? MP_ETIMEDOUT : rc;
    }
    return 0;
}

/* A large message (see DESIGN: Framing): the packet with the stream's
 * other end, then the payload on the stream. */
static int send_bulk(mp_conn *c, const void *buf, size_t len, const wait_spec *w)
{
    int s[2];
    int rc = mp__socketpair(SOCK_STREAM, s);
    if (rc < 0)
        return rc;
    rc = send_packet(c->fd, frame_word(len, KIND_BULK), NULL, 0, s[1], w);
    mp__close(s[1]);
    if (rc == 0)
        rc = send_stream(s[0], buf, len, w);
    /* On a failure midway the receiver sees the stream end early: that
     * message is cut (MP_EPROTO there), the connection goes on. */
    mp__close(s[0]);
    return rc;
}

static int send_checked(mp_conn *c, uint64_t word, const void *buf, size_t len, int pass_fd,
                        double timeout)
{
    pthread_mutex_lock(&c->slock);
    wait_spec w = wait_spec_of(timeout);
    int rc;
    if (c->fd < 0)
        rc = MP_ECLOSED;
    else if (!(c->flags & MP_CONN_WRITABLE))
        rc = MP_EBADF;
    else if (len > INLINE_MAX)
        rc = send_bulk(c, buf, len, &w);
    else
        rc = send_packet(c->fd, word, buf, len, pass_fd, &w);
    pthread_mutex_unlock(&c->slock);
    return rc;
}

int mp_conn_send_timeout(mp_conn *c, const void *buf, size_t len, double timeout)
{
    if (!c || (!buf && len > 0) || len > MAX_LEN || mp__timeout_check(timeout) < 0)
        return refused("mp_conn_send_timeout", c,
                       !buf && len > 0 ? "buf must not be NULL when len > 0"
                       : len > MAX_LEN ? "len must be below 2^56 bytes"
                                       : NULL,
                       timeout);
    return send_checked(c, frame_word(len, KIND_DATA), buf, len, -1, timeout);
}

int mp_conn_send(mp_conn *c, const void *buf, size_t len)
{
    return mp_conn_send_timeout(c, buf, len, MP_FOREVER);
}

int mp_conn_send_fd(mp_conn *c, int fd)
{
    MP__NONNULL(c);
    if (fd < 0 || fcntl(fd, F_GETFD) < 0)
        return mp__fail(MP_EBADF, "mp_conn_send_fd: fd must be an open descriptor (got %d)", fd);
    return send_checked(c, frame_word(0, KIND_FD), NULL, 0, fd, MP_FOREVER);
}

/* ---- receiving ----------------------------------------------------------- */

/* The descriptors a packet brought: the first in *fd (else -1), the others
 * closed (no sender of ours sends more than one).  Returns how many came,
 * or -1 when the kernel had some it could not give (out of descriptors). */
static int take_fds(struct msghdr *msg, int *fd)
{
    int n = 0;
    *fd = -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++, n++) {
            int got;
            memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof got);
            if (*fd < 0)
                *fd = got;
            else
                mp__close(got);
        }
    }
    return n == 0 && (msg->msg_flags & MSG_CTRUNC) ? -1 : n;
}

/* Checks a packet of n bytes with word and nfds descriptors against the
 * framing.  Returns 0 or MP_EPROTO (a packet no sender of ours makes; a
 * descriptor frame without its descriptor fails here at once, never after
 * a wait), MP_EMFILE (a descriptor the kernel could not give us). */
static int packet_check(uint64_t word, size_t n, int nfds, bool truncated)
{
    uint64_t len = word_len(word);
    if (truncated || n < HDR)
        return MP_EPROTO;
    switch (word_kind(word)) {
    case KIND_DATA:
        return nfds == 0 && len == n - HDR ? 0 : MP_EPROTO;
    case KIND_FD:
    case KIND_BULK:
        if (nfds < 0)
            return MP_EMFILE;
        if (n != HDR || nfds != 1)
            return MP_EPROTO;
        return word_kind(word) == KIND_FD ? (len == 0 ? 0 : MP_EPROTO)
                                          : (len > INLINE_MAX && len <= MAX_LEN ? 0 : MP_EPROTO);
    default:
        return MP_EPROTO;
    }
}

/* Reads the next packet: its word into *word, the payload into dst (cap
 * bytes) as far as it fits, the rest into rbuf.  Returns 0 - the message
 * is then in dst when *in_dst, else held (see DESIGN) - or MP_EOF,
 * MP_EAGAIN, MP_ETIMEDOUT, MP_EPROTO (a foreign packet, dropped),
 * MP_EMFILE, MP_ENOMEM, -errno. */
static int read_packet(mp_conn *c, void *dst, size_t cap, const wait_spec *w, uint64_t *word,
                       bool *in_dst)
{
    if (!c->rbuf && !(c->rbuf = malloc(PACKET_MAX)))
        return MP_ENOMEM;
    size_t first = cap < INLINE_MAX ? cap : INLINE_MAX;
    struct iovec iov[3] = {{word, HDR}, {dst, first}, {c->rbuf, INLINE_MAX - first}};
    if (first == 0)
        iov[1] = iov[2];
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int) * 4)];
    } ctl;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = first ? 3 : 2};
    ssize_t n;
    for (;;) {
        msg.msg_control = ctl.b;
        msg.msg_controllen = sizeof ctl.b;
        n = mp__recvmsg(c->fd, &msg, w->forever ? 0 : MSG_DONTWAIT);
        if (n >= 0 || (n != MP_EINTR && n != MP_EAGAIN))
            break;
        int rc = n == MP_EAGAIN ? wait_ready(c->fd, POLLIN, w) : 0;
        if (rc < 0)
            return rc;
    }
    if (n == MP_ECONNRESET || n == 0)
        return MP_EOF; /* every holder of the other end closed it */
    if (n < 0)
        return (int)n;
    int fd;
    int nfds = take_fds(&msg, &fd);
    int rc = packet_check(*word, (size_t)n, nfds, (msg.msg_flags & MSG_TRUNC) != 0);
    if (rc < 0) {
        mp__close(fd);
        return rc;
    }
    size_t len = (size_t)word_len(*word);
    bool data = word_kind(*word) == KIND_DATA;
    *in_dst = data && len <= cap;
    if (!*in_dst) {
        /* Held: the payload goes whole into rbuf, after what landed in
         * dst (the caller's buffer is scratch on a failed call). */
        if (data && len > first) {
            memmove(c->rbuf + first, c->rbuf, len - first);
            if (first > 0) /* dst may be NULL when the caller gave no room */
                memcpy(c->rbuf, dst, first);
        }
        c->held = true;
        c->word = *word;
        c->held_fd = fd;
        c->got = 0;
    }
    return 0;
}

/* Lets go of the held message. */
static void drop_held(mp_conn *c)
{
    mp__close(c->held_fd);
    c->held_fd = -1;
    free(c->part);
    c->part = NULL;
    c->got = 0;
    c->held = false;
}

/* Reads the rest of a held large message from its stream into dst, whose
 * first c->got bytes are in c->part.  On a timeout what arrived is kept
 * (c->part) and the next call resumes.  Returns 0, MP_EPROTO (the sender
 * gave up midway: the message is dropped), MP_EAGAIN / MP_ETIMEDOUT,
 * MP_ENOMEM, -errno. */
static int read_bulk(mp_conn *c, char *dst, const wait_spec *w)
{
    size_t len = (size_t)word_len(c->word), got = c->got;
    if (got > 0)
        memcpy(dst, c->part, got);
    int rc = 0;
    while (got < len) {
        ssize_t n = recv(c->held_fd, dst + got, len - got, w->forever ? MSG_WAITALL : MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        rc = n == 0 ? MP_EPROTO : -errno;
        if (rc == MP_EINTR)
            continue;
        if (rc == MP_EAGAIN && (rc = wait_ready(c->held_fd, POLLIN, w)) == 0)
            continue;
        break;
    }
    if (rc == 0 || rc == MP_EPROTO || rc == MP_ECONNRESET) {
        drop_held(c);
        return rc == MP_ECONNRESET ? MP_EPROTO : rc;
    }
    /* Out of time (or interrupted otherwise): keep what arrived. */
    char *p = realloc(c->part, got ? got : 1);
    if (!p)
        return MP_ENOMEM; /* c->got bytes are still kept: the next call rereads them */
    memcpy(p, dst, got);
    c->part = p;
    c->got = got;
    return rc;
}

/* Delivers the held message into buf (cap bytes), or into a new allocation
 * when abuf is non-NULL.  Returns 0, MP_EMSGSIZE (with *len, the message
 * stays held), MP_EPROTO for a descriptor frame, MP_ENOMEM, or what
 * read_bulk() returns. */
static int deliver_held(mp_conn *c, void *buf, size_t cap, size_t *len, void **abuf,
                        const wait_spec *w)
{
    if (word_kind(c->word) == KIND_FD)
        return MP_EPROTO;
    size_t mlen = (size_t)word_len(c->word);
    *len = mlen;
    if (abuf ? mlen > c->max_message : mlen > cap)
        return MP_EMSGSIZE;
    if (abuf && !(buf = malloc(mlen ? mlen : 1)))
        return MP_ENOMEM;
    int rc = 0;
    if (word_kind(c->word) == KIND_BULK) {
        rc = read_bulk(c, buf, w);
    } else {
        if (mlen > 0)
            memcpy(buf, c->rbuf, mlen);
        drop_held(c);
    }
    if (abuf) {
        if (rc == 0)
            *abuf = buf;
        else
            free(buf);
    }
    return rc;
}

/* Receives a data message into buf (cap bytes), or into a new allocation
 * when abuf is non-NULL.  Caller holds rlock. */
static int recv_locked(mp_conn *c, void *buf, size_t cap, size_t *len, void **abuf, double timeout)
{
    wait_spec w = wait_spec_of(timeout);
    if (!c->held) {
        uint64_t word = 0;
        bool in_dst = false;
        int rc = read_packet(c, abuf ? NULL : buf, abuf ? 0 : cap, &w, &word, &in_dst);
        if (rc < 0)
            return rc;
        if (in_dst) {
            *len = (size_t)word_len(word);
            return 0;
        }
    }
    return deliver_held(c, buf, cap, len, abuf, &w);
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
    if (rc < 0)
        pthread_mutex_unlock(&c->rlock);
    return rc;
}

int mp_conn_recv(mp_conn *c, void *buf, size_t cap, size_t *len, double timeout)
{
    if (!c || !len || (!buf && cap > 0) || mp__timeout_check(timeout) < 0)
        return refused("mp_conn_recv", c,
                       !len              ? "len must not be NULL"
                       : !buf && cap > 0 ? "buf must not be NULL when cap > 0"
                                         : NULL,
                       timeout);
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
        return refused("mp_conn_recv_alloc", c,
                       !buf   ? "buf must not be NULL"
                       : !len ? "len must not be NULL"
                              : NULL,
                       timeout);
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
        return refused("mp_conn_recv_fd", c, !fd ? "fd must not be NULL" : NULL, timeout);
    int rc = recv_begin(c);
    if (rc < 0)
        return rc;
    wait_spec w = wait_spec_of(timeout);
    uint64_t word;
    bool in_dst = false;
    if (!c->held)
        rc = read_packet(c, NULL, 0, &w, &word, &in_dst);
    if (rc == 0 && word_kind(c->word) != KIND_FD)
        rc = MP_EPROTO; /* bytes: they stay for a byte receive */
    if (rc == 0) {
        *fd = c->held_fd;
        c->held_fd = -1;
        drop_held(c);
    }
    pthread_mutex_unlock(&c->rlock);
    return rc;
}

int mp_conn_poll(mp_conn *c, double timeout)
{
    if (!c || mp__timeout_check(timeout) < 0)
        return refused("mp_conn_poll", c, NULL, timeout);
    int rc = recv_begin(c);
    if (rc < 0)
        return rc;
    bool held = c->held;
    int fd = c->fd;
    pthread_mutex_unlock(&c->rlock);
    if (held)
        return 1;
    rc = mp__poll_fd(fd, POLLIN, mp__deadline(timeout));
    if (rc == MP_ETIMEDOUT)
        return 0;
    return rc < 0 ? rc : 1;
}

/* ---- closing ------------------------------------------------------------- */

int mp_conn_fd(const mp_conn *c)
{
    MP__NONNULL(c);
    return c->fd < 0 ? MP_ECLOSED : c->fd;
}

int mp_conn_close(mp_conn *c)
{
    MP__NONNULL(c);
    mp__close(c->fd);
    c->fd = -1;
    drop_held(c);
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
