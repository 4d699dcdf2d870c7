/*
 * address.c - manager addresses: parsing "unix:@name", "unix:/path" and
 * "tcp://host:port", listening and connecting.
 *
 * Every socket is close-on-exec; connected sockets are left in blocking
 * mode, and conn.c says per call whether it may block.  TCP sockets get TCP_NODELAY - a call is one small
 * frame each way, which Nagle's algorithm would hold back - and
 * keep-alive, so that a peer machine that vanished is noticed eventually
 * even by a connection that waits for a long time.  A Unix socket path is
 * never unlinked to make room: a path that exists gets MP_EADDRINUSE, so
 * that a server cannot take over another's address.
 */
#define _GNU_SOURCE
#include "mgr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

int mp__maddr_parse(const char *text, mp__maddr *a)
{
    memset(a, 0, sizeof *a);
    if (!text)
        return MP_EINVAL;
    if (strncmp(text, "unix:", 5) == 0) {
        const char *p = text + 5;
        a->family = AF_UNIX;
        a->abstract = p[0] == '@';
        if (a->abstract)
            p++;
        size_t n = strlen(p);
        if (n == 0 || n >= sizeof a->path - 1 || (!a->abstract && p[0] != '/'))
            return MP_EINVAL;
        memcpy(a->path, p, n + 1);
        return 0;
    }
    if (strncmp(text, "tcp://", 6) != 0)
        return MP_EINVAL;
    const char *h = text + 6, *colon;
    size_t hl;
    if (h[0] == '[') { /* [IPv6]:port */
        const char *end = strchr(h, ']');
        if (!end || end[1] != ':')
            return MP_EINVAL;
        h++;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(h, ':');
        if (!colon)
            return MP_EINVAL;
        hl = (size_t)(colon - h);
    }
    if (hl == 0 || hl >= sizeof a->host)
        return MP_EINVAL;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || port < 0 || port > 65535)
        return MP_EINVAL;
    memcpy(a->host, h, hl);
    a->host[hl] = '\0';
    a->port = (int)port;
    a->family = AF_INET;
    return 0;
}

void mp__maddr_format(const mp__maddr *a, char *buf, size_t cap)
{
    if (a->family == AF_UNIX)
        snprintf(buf, cap, "unix:%s%s", a->abstract ? "@" : "", a->path);
    else if (strchr(a->host, ':'))
        snprintf(buf, cap, "tcp://[%s]:%d", a->host, a->port);
    else
        snprintf(buf, cap, "tcp://%s:%d", a->host, a->port);
}

static socklen_t unix_sa(const mp__maddr *a, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    size_t n = strlen(a->path);
    if (a->abstract) {
        memcpy(sa->sun_path + 1, a->path, n); /* sun_path[0] == 0: abstract */
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    }
    memcpy(sa->sun_path, a->path, n + 1);
    return (socklen_t)sizeof *sa;
}

static void tcp_options(int fd)
{
    /* Keep-alive probes after a minute of silence, every 10 s, 6 of them:
     * a peer machine that vanished is noticed in about two minutes rather
     * than the system's default of more than two hours. */
    int one = 1, idle = 60, intvl = 10, cnt = 6;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

static int resolve(const mp__maddr *a, bool passive, struct addrinfo **res)
{
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    char port[16];
    snprintf(port, sizeof port, "%d", a->port);
    int rc = getaddrinfo(a->host, port, &hints, res);
    if (rc == EAI_MEMORY)
        return MP_ENOMEM;
    return rc == 0 ? 0 : MP_EINVAL;
}

static int listen_tcp(mp__maddr *a)
{
    struct addrinfo *res;
    int rc = resolve(a, true, &res);
    if (rc < 0)
        return rc;
    rc = MP_EINVAL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
            rc = -errno;
            mp__close(fd);
            continue;
        }
        struct sockaddr_storage ss = {0};
        socklen_t len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
            a->port = mp__maddr_text(&ss, NULL, 0);
        freeaddrinfo(res);
        return fd;
    }
    freeaddrinfo(res);
    return rc;
}

int mp__maddr_listen(mp__maddr *a)
{
    if (a->family != AF_UNIX)
        return listen_tcp(a);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sa;
    socklen_t len = unix_sa(a, &sa);
    if (bind(fd, (struct sockaddr *)&sa, len) != 0 || listen(fd, 128) != 0) {
        int err = errno;
        mp__close(fd);
        return -err;
    }
    return fd;
}

/* Connects fd to sa before the deadline. */
static int connect_one(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    if (connect(fd, sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EAGAIN && errno != EINTR)
        return errno == ENOENT ? MP_ECONNREFUSED : -errno;
    int rc = mp__poll_fd(fd, POLLOUT, deadline);
    if (rc < 0)
        return rc;
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
        return -errno;
    return err ? -err : 0;
}

int mp__maddr_connect(const mp__maddr *a, int64_t deadline)
{
    if (a->family == AF_UNIX) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return -errno;
        struct sockaddr_un sa;
        socklen_t len = unix_sa(a, &sa);
        int rc = connect_one(fd, (struct sockaddr *)&sa, len, deadline);
        if (rc == 0)
            rc = mp__set_nonblock(fd, false);
        if (rc < 0) {
            mp__close(fd);
            return rc;
        }
        return fd;
    }
    struct addrinfo *res;
    int rc = resolve(a, false, &res);
    if (rc < 0)
        return rc;
    rc = MP_ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        rc = connect_one(fd, ai->ai_addr, ai->ai_addrlen, deadline);
        if (rc == 0)
            rc = mp__set_nonblock(fd, false);
        if (rc == 0) {
            tcp_options(fd);
            freeaddrinfo(res);
            return fd;
        }
        mp__close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

int mp__maddr_text(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port;
    if (ss->ss_family == AF_INET6) {
        struct sockaddr_in6 a6;
        memcpy(&a6, ss, sizeof a6);
        port = ntohs(a6.sin6_port);
        inet_ntop(AF_INET6, &a6.sin6_addr, host, sizeof host);
    } else {
        struct sockaddr_in a4;
        memcpy(&a4, ss, sizeof a4);
        port = ntohs(a4.sin_port);
        inet_ntop(AF_INET, &a4.sin_addr, host, sizeof host);
    }
    if (buf)
        snprintf(buf, cap, "%s port %d", host, port);
    return port;
}

/* For the server: TCP options on an accepted socket. */
void mp__maddr_accepted(int fd, const mp__maddr *a)
{
    if (a->family != AF_UNIX)
        tcp_options(fd);
}
