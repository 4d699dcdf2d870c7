/*
 * forkserver.c - the client side of the forkserver start method: starting
 * and stopping the server, asking it for children, and reading their ends.
 *
 * DESIGN
 * The server (forkserverd.c) is a fresh image of the program started in the
 * forkserver role (boot.c): single-threaded, started once, it forks one
 * child per request, so that a fork is safe even in a program full of
 * threads.  For each child the client makes a socketpair and sends one end
 * (the channel) with the request (request.c).  On the channel the server
 * answers with the child's pid and a pidfd for it (so the client can signal
 * it without pid-reuse races), and later with its wait status, when the
 * server has reaped it; then the server closes the channel.
 *
 * Lifetime.  Every copy of the client's end of the request socket is
 * close-on-exec and closed in forked children (pthread_atfork), so the
 * server sees end-of-file exactly when the client process is gone, or
 * stopped it; it then kills what still runs, reaps it and exits.
 */
#define _GNU_SOURCE
#include "forkserver.h"

#include "boot.h"
#include "forkserverd.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct {
    pthread_mutex_t lock;
    int sock;
    pid_t pid;
    pthread_once_t once;
} fs = {PTHREAD_MUTEX_INITIALIZER, -1, 0, PTHREAD_ONCE_INIT};

/* In a forked child the server is the parent's, not its own: forget it
 * and close the socket, so that only the client process holds it and its
 * death reaches the server as end-of-file. */
static void fs_atfork_prepare(void)
{
    pthread_mutex_lock(&fs.lock);
}

static void fs_atfork_parent(void)
{
    pthread_mutex_unlock(&fs.lock);
}

static void fs_atfork_child(void)
{
    mp__close(fs.sock);
    fs.sock = -1;
    fs.pid = 0;
    pthread_mutex_init(&fs.lock, NULL);
}

static void fs_register_atfork(void)
{
    pthread_atfork(fs_atfork_prepare, fs_atfork_parent, fs_atfork_child);
}

static int start_locked(void)
{
    if (fs.sock >= 0)
        return 0;
    int sv[2];
    int rc = mp__socketpair(SOCK_STREAM, sv);
    if (rc < 0)
        return rc;
    pid_t pid;
    rc = mp__boot_spawn(MP__ROLE_FORKSERVER, sv[1], &pid);
    mp__close(sv[1]);
    if (rc < 0) {
        mp__close(sv[0]);
        return rc;
    }
    fs.sock = sv[0];
    fs.pid = pid;
    return 0;
}

int mp_forkserver_start(void)
{
    pthread_once(&fs.once, fs_register_atfork);
    pthread_mutex_lock(&fs.lock);
    int rc = start_locked();
    pthread_mutex_unlock(&fs.lock);
    return rc;
}

int mp_forkserver_stop(void)
{
    pthread_mutex_lock(&fs.lock);
    int sock = fs.sock;
    pid_t pid = fs.pid;
    fs.sock = -1;
    fs.pid = 0;
    pthread_mutex_unlock(&fs.lock);
    if (sock < 0)
        return 0;
    /* End-of-file tells the server to stop; it kills what still runs,
     * reaps it and exits, which takes milliseconds. */
    mp__close(sock);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return 0;
}

pid_t mp__forkserver_pid(void)
{
    pthread_mutex_lock(&fs.lock);
    pid_t pid = fs.sock >= 0 ? fs.pid : 0;
    pthread_mutex_unlock(&fs.lock);
    return pid;
}

int mp__forkserver_spawn(const mp__request_out *r, pid_t *pid, int *pidfd, int *chan)
{
    pthread_once(&fs.once, fs_register_atfork);
    int ch[2];
    int rc = mp__socketpair(SOCK_STREAM, ch);
    if (rc < 0)
        return rc;
    mp__request_out req = *r;
    req.chan_fd = ch[1];
    pthread_mutex_lock(&fs.lock);
    rc = start_locked();
    if (rc == 0) {
        rc = mp__request_send(fs.sock, &req);
        if (rc == MP_EPIPE || rc == MP_ECONNRESET) {
            /* The server died (killed from outside): start another one
             * and try once more. */
            int st;
            mp__close(fs.sock);
            fs.sock = -1;
            while (waitpid(fs.pid, &st, 0) < 0 && errno == EINTR) {
            }
            rc = start_locked();
            if (rc == 0)
                rc = mp__request_send(fs.sock, &req);
        }
    }
    pthread_mutex_unlock(&fs.lock);
    mp__close(ch[1]);
    if (rc < 0) {
        mp__close(ch[0]);
        return rc;
    }
    /* The server answers at once with the pid (or a fork error) and a
     * pidfd. */
    mp__fs_msg m;
    int fd = -1;
    size_t nfd = 1;
    ssize_t n = mp__recv_fds(ch[0], &m, sizeof m, &fd, &nfd);
    if (n != (ssize_t)sizeof m || m.kind != MP__FS_STARTED) {
        if (nfd)
            mp__close(fd);
        mp__close(ch[0]);
        return n < 0 ? (int)n : MP_EPROTO;
    }
    if (m.value < 0) {
        if (nfd)
            mp__close(fd);
        mp__close(ch[0]);
        return m.value;
    }
    *pid = m.value;
    *pidfd = nfd ? fd : -1;
    *chan = ch[0];
    return 0;
}

int mp__forkserver_status(int chan, int *wstatus)
{
    mp__fs_msg m;
    for (;;) {
        ssize_t n = recv(chan, &m, sizeof m, MSG_DONTWAIT);
        if (n == (ssize_t)sizeof m && m.kind == MP__FS_ENDED) {
            *wstatus = m.value;
            return 1;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        return MP_EOF;
    }
}
