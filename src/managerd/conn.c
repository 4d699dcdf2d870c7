/*
 * conn.c - one manager connection: frames over a socket, sealed when the
 * connection is encrypted, and the handshake that starts it.
 *
 * The handshake (messages in wire.c, cryptography in crypto.c):
 *   1. The server sends HELLO: its protocol version, the flags it requires
 *      (MH_ENCRYPT over TCP) and offers (MH_FASTPATH over a Unix socket),
 *      and a fresh random nonce.
 *   2. The client sends AUTH: its version, the flags it wants, its own
 *      nonce, and its proof: a MAC, keyed with the key derived from the
 *      authentication key, over the transcript (HELLO and AUTH up to the
 *      proof).
 *   3. The server compares the proof with its own computation in constant
 *      time.  A wrong one gets WELCOME with MP_EAUTH and the connection
 *      closed (and a log line, in server.c).  A right one gets WELCOME
 *      with the agreed flags, the client's number, and the server's proof
 *      over the transcript and those fields, so that the client knows the
 *      server holds the key too before it trusts anything from it: the
 *      authentication is mutual.  A client granted the fast path receives
 *      the store's descriptor with WELCOME (SCM_RIGHTS).
 *   4. On an encrypted connection both sides derive a key per direction
 *      from the transcript; every later frame is sealed with a frame
 *      counter as nonce.
 * Both sides compute the agreed flags from what was said, so a man in the
 * middle cannot turn encryption off: the flags are in the transcript that
 * both proofs cover.  The server gives each handshake a deadline, so a
 * client that connects and says nothing holds a thread for a bounded time.
 *
 * Sockets are in blocking mode, and every call says whether it may block:
 * sends never do (MSG_DONTWAIT, then poll() against a deadline), so a peer
 * that stops reading cannot hold a sender forever; receives with a
 * deadline poll first; a receive without one (a server thread waiting for
 * its client's next request) blocks in recv() itself, which saves a
 * system call per frame.
 */
#define _GNU_SOURCE
#include "mgr.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#define T_LEN (MW_HELLO_LEN + MW_AUTH_LEN - MC_PROOF)

void mp__mconn_init(mp__mconn *c, int fd)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    struct sockaddr_storage sa = {0};
    socklen_t len = sizeof sa;
    if (fd >= 0 && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        c->unix_socket = sa.ss_family == AF_UNIX;
}

void mp__mconn_close(mp__mconn *c)
{
    mp__close(c->fd);
    c->fd = -1;
    free(c->rx);
    free(c->tx);
    c->rx = c->tx = NULL;
    c->rx_cap = c->tx_cap = c->rx_len = c->rx_used = 0;
    mp__crypto_wipe(c->tx_key, sizeof c->tx_key);
    mp__crypto_wipe(c->rx_key, sizeof c->rx_key);
}

static int io_error(int err)
{
    switch (err) {
    case EPIPE:
    case ECONNRESET:
    case ENOTCONN:
    case ESHUTDOWN:
        return MP_ECONNRESET;
    default:
        return -err;
    }
}

static int write_all(const mp__mconn *c, const uint8_t *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = mp__poll_fd(c->fd, POLLOUT, deadline);
            if (rc < 0)
                return rc;
            continue;
        }
        return io_error(errno);
    }
    return 0;
}

/* Reads exactly n bytes.  An end before the first byte of a frame is
 * MP_EOF; anywhere else, MP_ECONNRESET. */
static int read_exact(const mp__mconn *c, uint8_t *p, size_t n, int64_t deadline, bool start)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = recv(c->fd, p + got, n - got, MSG_DONTWAIT);
        if (k > 0) {
            got += (size_t)k;
            continue;
        }
        if (k == 0)
            return got == 0 && start ? MP_EOF : MP_ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int rc = mp__poll_fd(c->fd, POLLIN, deadline);
            if (rc < 0)
                return rc;
            continue;
        }
        return io_error(errno);
    }
    return 0;
}

int mp__mconn_send(mp__mconn *c, size_t len, int64_t deadline)
{
    if (c->fd < 0)
        return MP_ECONNRESET;
    size_t total = len + (c->encrypted ? MC_TAG : 0);
    mw_put32(c->tx, (uint32_t)total);
    if (c->encrypted)
        mp__crypto_seal(c->tx_key, c->tx_ctr++, c->tx, 4, c->tx + 4, len);
    return write_all(c, c->tx, 4 + total, deadline);
}

/* How long a read first looks without sleeping.  A request or reply on
 * this machine comes back after a few microseconds of CPU work, while
 * waking a thread asleep in recv() or poll() costs a kernel wake-up at
 * each end of a round trip (about 7 us each on the reference VM): looking
 * for a while first takes a loopback round trip below the cost of those
 * wake-ups.  The look is bounded, so an idle connection sleeps in the
 * kernel as before; only one thread of a process looks at a time, and
 * only with more than one CPU; and a process whose looks come back empty
 * stops looking for a while (twice as long each time, up to LOOK_OFF_MAX
 * reads), so that a server with many connections, or a machine full of
 * clients whose answers take longer than a look, does not fill the CPUs
 * with threads that look. */
#define LOOK_NS      ((int64_t)40 * 1000)
#define LOOK_OFF_MAX 1024

static _Atomic int lookers;
static _Atomic int look_cpus; /* the CPU count, once known */
static _Atomic int look_skip; /* reads left without a look */
static _Atomic int look_off;  /* how many the next empty look skips */

/* Reads what the socket holds without sleeping, for up to LOOK_NS (and
 * not past deadline) while no other thread of the process looks.
 * Returns recv()'s result; -1 with EAGAIN when nothing came. */
static ssize_t recv_look(int fd, void *buf, size_t n, int64_t deadline)
{
    int cpus = atomic_load_explicit(&look_cpus, memory_order_relaxed), none = 0;
    if (cpus == 0) {
        cpus = mp__cpu_count();
        atomic_store_explicit(&look_cpus, cpus, memory_order_relaxed);
    }
    if (cpus < 2 || atomic_load_explicit(&look_skip, memory_order_relaxed) > 0 ||
        !atomic_compare_exchange_strong(&lookers, &none, 1)) {
        if (atomic_load_explicit(&look_skip, memory_order_relaxed) > 0)
            atomic_fetch_sub_explicit(&look_skip, 1, memory_order_relaxed);
        errno = EAGAIN;
        return -1;
    }
    int64_t end = mp__now_ns() + LOOK_NS;
    if (deadline != MP__NO_DEADLINE && deadline < end)
        end = deadline;
    ssize_t k;
    do {
        k = recv(fd, buf, n, MSG_DONTWAIT);
    } while (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && mp__now_ns() < end);
    int saved = errno;
    if (k < 0 && (saved == EAGAIN || saved == EWOULDBLOCK)) {
        int off = atomic_load_explicit(&look_off, memory_order_relaxed);
        off = off ? (off < LOOK_OFF_MAX ? off * 2 : off) : 1;
        atomic_store_explicit(&look_off, off, memory_order_relaxed);
        atomic_store_explicit(&look_skip, off, memory_order_relaxed);
    } else {
        atomic_store_explicit(&look_off, 0, memory_order_relaxed);
    }
    atomic_store(&lookers, 0);
    errno = saved;
    return k;
}

/* Makes the receive buffer hold at least n bytes of the stream.  After a
 * look (recv_look), without a deadline the read blocks in the kernel (one
 * system call per frame where a poll would add a second); with one,
 * poll() waits first. */
static int fill(mp__mconn *c, size_t n, int64_t deadline, bool start)
{
    if (n > c->rx_cap) {
        size_t cap = n < 4096 ? 4096 : n;
        uint8_t *p = realloc(c->rx, cap);
        if (!p)
            return MP_ENOMEM;
        c->rx = p;
        c->rx_cap = cap;
    }
    while (c->rx_len < n) {
        ssize_t k = recv_look(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, deadline);
        bool nothing = k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        /* A blocking read is bounded by SO_RCVTIMEO when one is set; it
         * may serve a deadline at least that far away. */
        bool block = deadline == MP__NO_DEADLINE ||
                     (c->rcvtimeo_ns > 0 && mp__remaining_ns(deadline) >= c->rcvtimeo_ns);
        if (nothing && block) {
            k = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, 0);
        } else if (nothing) {
            int rc = mp__poll_fd(c->fd, POLLIN, deadline);
            if (rc < 0)
                return rc;
            k = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, MSG_DONTWAIT);
        }
        if (k > 0) {
            c->rx_len += (size_t)k;
            continue;
        }
        if (k == 0)
            return c->rx_len == 0 && start ? MP_EOF : MP_ECONNRESET;
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            continue;
        return io_error(errno);
    }
    return 0;
}

int mp__mconn_recv(mp__mconn *c, const uint8_t **payload, size_t *len, int64_t deadline)
{
    if (c->fd < 0)
        return MP_ECONNRESET;
    /* Drop the frame handed out last time. */
    if (c->rx_used) {
        c->rx_len -= c->rx_used;
        if (c->rx_len)
            memmove(c->rx, c->rx + c->rx_used, c->rx_len);
        c->rx_used = 0;
    }
    /* The buffer grows to the largest frame and shrinks again after a
     * big one, so that an idle connection holds little memory. */
    if (c->rx_cap > ((size_t)1 << 20) && c->rx_len <= 65536) {
        uint8_t *p = realloc(c->rx, 65536);
        if (p) {
            c->rx = p;
            c->rx_cap = 65536;
        }
    }
    int rc = fill(c, 4, deadline, true);
    if (rc < 0)
        return rc;
    size_t total = mw_get32(c->rx), extra = c->encrypted ? MC_TAG : 0;
    if (total < extra || total - extra > MW_FRAME_LIMIT)
        return MP_EPROTO;
    if ((rc = fill(c, 4 + total, deadline, false)) < 0)
        return rc;
    if (c->encrypted && mp__crypto_open(c->rx_key, c->rx_ctr++, c->rx, 4, c->rx + 4, total) < 0)
        return MP_EAUTH;
    c->rx_used = 4 + total;
    *payload = c->rx + 4;
    *len = total - extra;
    return 0;
}

void mp__mconn_set_rcvtimeo(mp__mconn *c, double seconds)
{
    if (!(seconds > 0) || seconds > 86400.0)
        return;
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0)
        c->rcvtimeo_ns = (int64_t)(seconds * 1e9);
}

bool mp__mconn_hung_up(const mp__mconn *c)
{
    if (c->fd < 0)
        return true;
    struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* ---- the handshake ------------------------------------------------------------------ */

static uint32_t agree(uint32_t require, uint32_t offer, uint32_t want)
{
    uint32_t enc = (require | want) & MH_ENCRYPT;
    return enc | (enc ? 0 : (offer & want & MH_FASTPATH));
}

/* Sends one plain handshake message of n bytes, with a descriptor when
 * fd >= 0. */
static int send_msg(const mp__mconn *c, const uint8_t *msg, size_t n, int fd, int64_t deadline)
{
    uint8_t buf[4 + MW_AUTH_LEN];
    mw_put32(buf, (uint32_t)n);
    memcpy(buf + 4, msg, n);
    if (fd < 0)
        return write_all(c, buf, 4 + n, deadline);
    for (;;) {
        int rc = mp__send_fds(c->fd, buf, 4 + n, &fd, 1);
        if (rc != MP_EAGAIN)
            return rc;
        if ((rc = mp__poll_fd(c->fd, POLLOUT, deadline)) < 0)
            return rc;
    }
}

/* Receives one plain handshake message of exactly n bytes; with fd
 * non-NULL, also a descriptor that came with it (-1 if none). */
static int recv_msg(const mp__mconn *c, uint8_t *msg, size_t n, int *fd, int64_t deadline)
{
    uint8_t buf[4 + MW_AUTH_LEN];
    size_t got = 0;
    if (fd) {
        /* The descriptor comes with the message's first bytes.  Poll
         * first: mp__recv_fds would wait without a deadline. */
        *fd = -1;
        int rc = mp__poll_fd(c->fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
        size_t nfds = 1;
        ssize_t k = mp__recv_fds(c->fd, buf, 4 + n, fd, &nfds);
        if (k < 0)
            return io_error((int)-k);
        if (nfds == 0)
            *fd = -1;
        if (k == 0)
            return MP_ECONNRESET;
        got = (size_t)k;
    }
    int rc = read_exact(c, buf + got, 4 + n - got, deadline, got == 0);
    if (rc < 0)
        return rc == MP_EOF ? MP_ECONNRESET : rc;
    if (mw_get32(buf) != n)
        return MP_EPROTO;
    memcpy(msg, buf + 4, n);
    return 0;
}

static void session_keys(mp__mconn *c, const uint8_t master[MC_KEY], const uint8_t *t, bool server)
{
    uint8_t c2s[MC_KEY], s2c[MC_KEY];
    mp__crypto_derive(master, "mproc manager c2s", t, T_LEN, c2s);
    mp__crypto_derive(master, "mproc manager s2c", t, T_LEN, s2c);
    memcpy(c->tx_key, server ? s2c : c2s, MC_KEY);
    memcpy(c->rx_key, server ? c2s : s2c, MC_KEY);
    mp__crypto_wipe(c2s, sizeof c2s);
    mp__crypto_wipe(s2c, sizeof s2c);
    c->encrypted = true;
    c->tx_ctr = c->rx_ctr = 0;
}

/* The server's proof covers the transcript and WELCOME's fields. */
static void server_proof(const uint8_t master[MC_KEY], const uint8_t *t, const uint8_t *welcome,
                         uint8_t out[MC_PROOF])
{
    uint8_t buf[T_LEN + 24];
    memcpy(buf, t, T_LEN);
    memcpy(buf + T_LEN, welcome, 24);
    mp__crypto_derive(master, "mproc manager server proof", buf, sizeof buf, out);
}

int mp__mconn_server_hello(mp__mconn *c, const uint8_t master[MC_KEY], uint32_t require,
                           uint32_t offer, uint32_t client_id, int store_fd, uint64_t store_size,
                           int64_t deadline, uint32_t *agreed)
{
    uint8_t t[T_LEN], auth_msg[MW_AUTH_LEN];
    mp__mhello h = {MW_VERSION, (uint16_t)require, (uint16_t)offer, client_id == 0, {0}};
    mp__crypto_random(h.nonce, sizeof h.nonce);
    mp__wire_hello_build(&h, t);
    int rc = send_msg(c, t, MW_HELLO_LEN, -1, deadline);
    if (rc < 0 || client_id == 0)
        return rc < 0 ? rc : MP_EAGAIN; /* client 0: too many clients */
    if ((rc = recv_msg(c, auth_msg, MW_AUTH_LEN, NULL, deadline)) < 0)
        return rc;
    mp__mauth a;
    mp__mwelcome_msg w = {0};
    if (mp__wire_auth_parse(auth_msg, MW_AUTH_LEN, &a) < 0 || a.version != MW_VERSION) {
        uint8_t out[MW_WELCOME_LEN];
        w.status = MP_EPROTO;
        mp__wire_welcome_build(&w, out);
        (void)send_msg(c, out, sizeof out, -1, deadline);
        return MP_EPROTO;
    }
    memcpy(t + MW_HELLO_LEN, auth_msg, MW_AUTH_LEN - MC_PROOF);
    uint8_t expect[MC_PROOF];
    mp__crypto_derive(master, "mproc manager client proof", t, T_LEN, expect);
    bool ok = mp__crypto_equal32(expect, a.proof);
    uint8_t out[MW_WELCOME_LEN];
    if (!ok) {
        w.status = MP_EAUTH;
        mp__wire_welcome_build(&w, out);
        (void)send_msg(c, out, sizeof out, -1, deadline);
        return MP_EAUTH;
    }
    w.agreed = agree(require, offer, a.want);
    w.client_id = client_id;
    w.store_size = (w.agreed & MH_FASTPATH) ? store_size : 0;
    mp__wire_welcome_build(&w, out);
    server_proof(master, t, out, w.proof);
    memcpy(out + 24, w.proof, MC_PROOF);
    rc = send_msg(c, out, sizeof out, (w.agreed & MH_FASTPATH) ? store_fd : -1, deadline);
    if (rc < 0)
        return rc;
    if (w.agreed & MH_ENCRYPT)
        session_keys(c, master, t, true);
    *agreed = w.agreed;
    return 0;
}

int mp__mconn_client_hello(mp__mconn *c, const uint8_t master[MC_KEY], uint32_t want,
                           int64_t deadline, mp__mwelcome *out)
{
    uint8_t t[T_LEN], msg[MW_AUTH_LEN];
    out->store_fd = -1;
    int rc = recv_msg(c, t, MW_HELLO_LEN, NULL, deadline);
    if (rc < 0)
        return rc;
    mp__mhello h;
    if (mp__wire_hello_parse(t, MW_HELLO_LEN, &h) < 0 || h.version != MW_VERSION ||
        (h.require & ~MH_ENCRYPT))
        return MP_EPROTO;
    if (h.busy)
        return MP_EAGAIN;
    mp__mauth a = {MW_VERSION, (uint16_t)want, {0}, {0}};
    mp__crypto_random(a.nonce, sizeof a.nonce);
    mp__wire_auth_build(&a, msg);
    memcpy(t + MW_HELLO_LEN, msg, MW_AUTH_LEN - MC_PROOF);
    mp__crypto_derive(master, "mproc manager client proof", t, T_LEN, msg + MW_AUTH_LEN - MC_PROOF);
    if ((rc = send_msg(c, msg, MW_AUTH_LEN, -1, deadline)) < 0)
        return rc;
    uint8_t wb[MW_WELCOME_LEN];
    int fd = -1;
    if ((rc = recv_msg(c, wb, MW_WELCOME_LEN, &fd, deadline)) < 0)
        return rc;
    mp__mwelcome_msg w;
    uint8_t expect[MC_PROOF];
    uint32_t agreed = agree(h.require, h.offer, want);
    bool parsed = mp__wire_welcome_parse(wb, sizeof wb, &w) == 0;
    if (parsed && w.status == 0)
        server_proof(master, t, wb, expect);
    if (parsed && (w.status == MP_EAUTH || (w.status == 0 && !mp__crypto_equal32(expect, w.proof))))
        rc = MP_EAUTH; /* our key is wrong, or the server does not hold it */
    else if (!parsed || w.status != 0 || w.agreed != agreed ||
             ((agreed & MH_FASTPATH) != 0) != (fd >= 0) || !w.client_id)
        rc = MP_EPROTO;
    if (rc < 0) {
        mp__close(fd);
        return rc;
    }
    if (agreed & MH_ENCRYPT)
        session_keys(c, master, t, false);
    out->client_id = w.client_id;
    out->flags = agreed;
    out->store_size = w.store_size;
    out->store_fd = fd;
    return 0;
}
