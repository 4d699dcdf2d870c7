/*
 * fd.c - descriptors: pipes, sockets, whole reads and writes, descriptor
 * passing, local socket addresses, closing what a process inherited.
 *
 * Everything is created close-on-exec atomically (pipe2, SOCK_CLOEXEC,
 * MSG_CMSG_CLOEXEC, F_DUPFD_CLOEXEC): setting the flag afterwards would
 * leave a window in which an exec in another thread leaks the descriptor
 * into an unrelated program.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

int mp__pipe(int fds[2], int flags)
{
    return pipe2(fds, O_CLOEXEC | flags) == 0 ? 0 : -errno;
}

int mp__socketpair(int type, int fds[2])
{
    return socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) == 0 ? 0 : -errno;
}

int mp__poll_fd(int fd, short events, int64_t deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    for (;;) {
        struct timespec rel, *tsp = NULL;
        int64_t left = mp__remaining_ns(deadline);
        if (deadline != MP__NO_DEADLINE) {
            if (left < 0)
                left = 0;
            rel.tv_sec = (time_t)(left / 1000000000);
            rel.tv_nsec = (long)(left % 1000000000);
            tsp = &rel;
        }
        int n = ppoll(&pfd, 1, tsp, NULL);
        if (n > 0)
            return pfd.revents;
        if (n == 0) {
            if (left <= 0)
                return MP_ETIMEDOUT;
            continue; /* woke a little early: try again for the rest */
        }
        if (errno != EINTR)
            return -errno;
    }
}

int mp__write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w >= 0) {
            p += w;
            len -= (size_t)w;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            int rc = mp__poll_fd(fd, POLLOUT, MP__NO_DEADLINE);
            if (rc < 0)
                return rc;
            continue;
        }
        return -errno;
    }
    return 0;
}

int mp__read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, p + got, len - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0)
            return got == 0 ? MP_EOF : MP_EPROTO;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            int rc = mp__poll_fd(fd, POLLIN, MP__NO_DEADLINE);
            if (rc < 0)
                return rc;
            continue;
        }
        return -errno;
    }
    return 0;
}

int mp__set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    int nfl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    if (nfl != fl && fcntl(fd, F_SETFL, nfl) < 0)
        return -errno;
    return 0;
}

int mp__set_cloexec(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0)
        return -errno;
    int nfl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
    if (nfl != fl && fcntl(fd, F_SETFD, nfl) < 0)
        return -errno;
    return 0;
}

int mp__dup_cloexec(int fd, int min_fd)
{
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, min_fd);
    return nfd < 0 ? -errno : nfd;
}

void mp__close(int fd)
{
    if (fd < 0)
        return;
    int saved = errno;
    (void)close(fd);
    errno = saved;
}

#define MP__MAX_PASS_FDS 96

int mp__send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
    if (nfds > MP__MAX_PASS_FDS || len == 0)
        return MP_EINVAL;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MP__MAX_PASS_FDS)];
    } ctl;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&ctl, 0, sizeof ctl);
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    for (;;) {
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n >= 0) {
            if ((size_t)n == len)
                return 0;
            /* The descriptors went with the first byte; the rest of the
             * payload follows as plain data. */
            return mp__write_all(sock, (const char *)buf + n, len - (size_t)n);
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            int rc = mp__poll_fd(sock, POLLOUT, MP__NO_DEADLINE);
            if (rc < 0)
                return rc;
            continue;
        }
        return -errno;
    }
}

ssize_t mp__recv_fds(int sock, void *buf, size_t cap, int *fds, size_t *nfds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MP__MAX_PASS_FDS)];
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    size_t want = *nfds;
    *nfds = 0;
    ssize_t n;
    for (;;) {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            int rc = mp__poll_fd(sock, POLLIN, MP__NO_DEADLINE);
            if (rc < 0)
                return rc;
            continue;
        }
        return -errno;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (*nfds < want)
                fds[(*nfds)++] = fd;
            else
                mp__close(fd);
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        /* The kernel dropped descriptors it had no room for: refuse the
         * message rather than hand on a partial set. */
        for (size_t i = 0; i < *nfds; i++)
            mp__close(fds[i]);
        *nfds = 0;
        return MP_EMSGSIZE;
    }
    return n;
}

int mp__dup2_cloexec(int fd, int to)
{
    int rc;
    do {
        rc = dup3(fd, to, O_CLOEXEC);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

/* Closes [lo, hi]. */
static void close_span(int lo, unsigned hi)
{
    if (lo < 0 || (unsigned)lo > hi)
        return;
    if (syscall(SYS_close_range, (unsigned)lo, hi, 0) == 0)
        return;
    /* Kernels before 5.9: close one by one, up to the descriptor limit
     * (bounded, in case the limit is huge or infinite). */
    struct rlimit rl;
    int top =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 65536
            ? (int)rl.rlim_cur
            : 65536;
    for (int fd = lo; fd < top && (unsigned)fd <= hi; fd++)
        close(fd);
}

void mp__close_from(int lowfd)
{
    close_span(lowfd, ~0u);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

void mp__close_fds_except(const int *keep, size_t n)
{
    int k[16] = {0};
    size_t m = 0;
    for (size_t i = 0; i < n && m < sizeof k / sizeof k[0]; i++) {
        if (keep[i] > 2)
            k[m++] = keep[i];
    }
    qsort(k, m, sizeof k[0], cmp_int);
    int lo = 3;
    for (size_t i = 0; i < m; i++) {
        close_span(lo, (unsigned)k[i] - 1);
        lo = k[i] + 1;
    }
    close_span(lo, ~0u);
}

int mp__unix_socket(int type)
{
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

int mp__accept(int lfd)
{
    int fd;
    do {
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

int mp__peer_cred(int sock, pid_t *pid, uid_t *uid)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return -errno;
    if (pid)
        *pid = cred.pid;
    if (uid)
        *uid = cred.uid;
    return 0;
}

int mp__local_address(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    /* sun_path[0] stays 0: Linux's abstract namespace, where an address
     * is no file and vanishes with the last socket bound to it. */
    int n = snprintf(sa->sun_path + 1, sizeof sa->sun_path - 1, "%s", name);
    if (n < 0 || (size_t)n >= sizeof sa->sun_path - 1)
        return MP_ENAMETOOLONG;
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    return 0;
}

ssize_t mp__recvmsg(int sock, struct msghdr *msg, int flags)
{
    ssize_t n = recvmsg(sock, msg, flags | MSG_CMSG_CLOEXEC);
    return n < 0 ? -errno : n;
}
