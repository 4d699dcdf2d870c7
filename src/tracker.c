/*
 * tracker.c - the client side of the tracker of named segments: finding the
 * program's tracker, starting it, and telling it about segments created,
 * attached, closed and unlinked.  The tracker itself is trackerd.c.
 *
 * DESIGN
 * One tracker per program (per session, see mp__session()), found by the
 * processes of the program at a local socket address in no file system,
 * "mproc-tracker-<uid>-<session>": nothing to clean up, and the address
 * vanishes with the tracker.  Each process that uses named segments holds
 * one connection, and the tracker counts holds per connection.
 *
 * attach waits until the tracker has counted its hold, so that a close by
 * another process once attach has returned cannot unlink the segment under
 * it (messages of different processes are not ordered); close does not
 * wait, since messages from one process arrive in order and it never
 * overtakes its attach.  Unlinking by a program's process also goes through
 * the tracker, synchronously, so that an unlink and a re-creation of the
 * same name by two processes cannot be reordered into unlinking the new
 * segment.
 *
 * Starting.  The first process that needs the tracker binds the address
 * itself (so two processes racing to start one agree: the loser gets
 * EADDRINUSE and connects), connects to it - the connection waits in the
 * listening socket's backlog - and only then hands the listening socket to
 * a fresh image of the program in the tracker role (boot.c).  Connecting
 * first is what lets the tracker go at once when the program is killed
 * while it starts it: the tracker's first client is already there, and its
 * end shows the death; connecting after, a program killed in between left
 * a tracker waiting for a first client that never came.  A fresh image, not a
 * fork, because a fork would keep the whole memory of a possibly large
 * program alive, copy-on-write, for as long as the program runs.  It is
 * started through an intermediate process that exits at once: the tracker
 * must outlive any process of the program, so it is no process's child.
 * It leaves the session and process group (setsid), so terminal signals
 * meant for the program do not kill it before it has cleaned up.
 *
 * A process that talks to a tracker that has just exited (its last client
 * left a moment before) gets end-of-file and starts a new one.
 *
 * After fork, the child closes its copy of the connection (pthread_atfork):
 * the tracker must see each process's end separately.  The child connects
 * again when it needs to.
 */
#define _GNU_SOURCE
#include "tracker.h"

#include "boot.h"
#include "request.h"
#include "self.h"
#include "trackerd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testhooks.h"

/* How long a process waits for the tracker's answer: starting it is an
 * exec, slow under sanitizers or on a loaded machine, never this slow. */
#define REPLY_TIMEOUT 30.0

static void tracker_address(struct sockaddr_un *sa, socklen_t *len)
{
    char name[64];
    snprintf(name, sizeof name, "mproc-tracker-%u-%d", (unsigned)getuid(), (int)mp__session());
    (void)mp__local_address(name, sa, len); /* a short name: cannot fail */
}

static struct {
    pthread_mutex_t lock;
    int fd;
    pthread_once_t once;
} cl = {PTHREAD_MUTEX_INITIALIZER, -1, PTHREAD_ONCE_INIT};

void (*mp__tracker_fault)(mp__tracker_point where);

static void fault_point(mp__tracker_point where)
{
    if (__builtin_expect(mp__tracker_fault != NULL, 0))
        mp__tracker_fault(where);
}

/* No prepare handler takes cl.lock: starting the tracker forks while
 * holding it.  A fork by another thread in the middle of a request leaves
 * the child a locked mutex and a half-used socket, both replaced here. */
static void cl_child(void)
{
    /* The tracker must see this process's end apart from its parent's. */
    mp__close(cl.fd);
    cl.fd = -1;
    pthread_mutex_init(&cl.lock, NULL);
}

static void cl_init(void)
{
    pthread_atfork(NULL, NULL, cl_child);
}

/* Starts a tracker serving the listening socket lfd (see DESIGN).
 * Returns 0 or an error. */
static int spawn_tracker(int lfd)
{
    char **env = mp__boot_env(MP__ROLE_TRACKER, lfd);
    if (!env)
        return MP_ENOMEM;
    char *argv[] = {(char *)"mproc-tracker", NULL};
    sigset_t old;
    mp__signals_block_all(&old);
    pid_t mid = fork();
    if (mid == 0) {
        /* Only async-signal-safe calls from here to exec: the parent may
         * have threads. */
        pid_t t = fork();
        if (t == 0) {
            sigset_t none;
            sigemptyset(&none);
            (void)setsid();
            (void)fcntl(lfd, F_SETFD, 0);
            (void)sigprocmask(SIG_SETMASK, &none, NULL);
            (void)mp__exec_self(argv, env);
            /* No fresh image: serve from this copy of the program. */
            mp__tracker_serve(lfd);
        }
        _exit(t < 0 ? 1 : 0);
    }
    int err = errno;
    mp__signals_restore(&old);
    mp__env_free(env);
    if (mid < 0)
        return -err;
    int st = 0;
    pid_t r;
    do {
        r = waitpid(mid, &st, 0);
    } while (r < 0 && errno == EINTR);
    /* ECHILD: the program reaps its children itself (SIGCHLD ignored). */
    if (r == mid && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        return MP_EAGAIN;
    return 0;
}

/* Connects to the program's tracker, starting it if start is true.
 * Returns the socket or an error (MP_ECONNREFUSED: none runs). */
static int tracker_connect(bool start)
{
    struct sockaddr_un sa;
    socklen_t len;
    tracker_address(&sa, &len);
    for (int attempt = 0; attempt < 5; attempt++) {
        int s = mp__unix_socket(SOCK_SEQPACKET);
        if (s < 0)
            return s;
        if (connect(s, (struct sockaddr *)&sa, len) == 0)
            return s;
        int err = errno;
        if ((err != ECONNREFUSED && err != ENOENT) || !start) {
            mp__close(s);
            return err == ENOENT ? MP_ECONNREFUSED : -err;
        }
        int l = mp__unix_socket(SOCK_SEQPACKET);
        if (l < 0) {
            mp__close(s);
            return l;
        }
        if (bind(l, (struct sockaddr *)&sa, len) != 0) {
            /* Another process of the program is starting one: connect to
             * it. */
            err = errno;
            mp__close(l);
            mp__close(s);
            if (err == EADDRINUSE)
                continue;
            return -err;
        }
        /* Connected before the tracker exists (see DESIGN: Starting). */
        int rc = listen(l, 128) == 0 ? 0 : -errno;
        if (rc == 0)
            rc = connect(s, (struct sockaddr *)&sa, len) == 0 ? 0 : -errno;
        if (rc == 0) {
            fault_point(MP__TP_CONNECTED);
            rc = spawn_tracker(l);
        }
        if (rc == 0)
            fault_point(MP__TP_STARTED);
        /* The tracker holds the listening socket now; ours must go, or the
         * address would outlive a dead tracker. */
        mp__close(l);
        if (rc == 0)
            return s;
        mp__close(s);
        return rc;
    }
    return MP_EAGAIN;
}

/* Makes sure cl.fd is connected (caller holds cl.lock).  Returns 0 or an
 * error. */
static int ensure_connected(bool start)
{
    pthread_once(&cl.once, cl_init);
    if (cl.fd >= 0)
        return 0;
    int s = tracker_connect(start);
    if (s < 0)
        return s;
    cl.fd = s;
    return 0;
}

static void drop_connection(void)
{
    mp__close(cl.fd);
    cl.fd = -1;
}

static int send_msg(uint32_t op, const char *path, uint64_t ino)
{
    mp__trk_msg m;
    memset(&m, 0, sizeof m);
    m.magic = MP__TRK_MAGIC;
    m.op = op;
    m.ino = ino;
    snprintf(m.path, sizeof m.path, "%s", path);
    /* A tracker that stopped reading must not block this process for
     * ever: its queue is full only if it is stuck. */
    int rc = mp__poll_fd(cl.fd, POLLOUT, mp__deadline(REPLY_TIMEOUT));
    if (rc < 0)
        return rc;
    ssize_t n;
    do {
        n = send(cl.fd, &m, sizeof m, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof m ? 0 : n < 0 ? -errno : MP_EPROTO;
}

/* One request and its reply (caller holds cl.lock and is connected). */
static int request(uint32_t op, const char *path, uint64_t ino, int *fd)
{
    int rc = send_msg(op, path, ino);
    if (rc < 0)
        return rc;
    rc = mp__poll_fd(cl.fd, POLLIN, mp__deadline(REPLY_TIMEOUT));
    if (rc < 0)
        return rc;
    mp__trk_reply r;
    int got = -1;
    size_t nfd = fd ? 1 : 0;
    ssize_t n = mp__recv_fds(cl.fd, &r, sizeof r, fd ? &got : NULL, &nfd);
    if (n == 0)
        return MP_ECONNRESET;
    if (n < 0)
        return (int)n;
    if (n != (ssize_t)sizeof r || r.magic != MP__TRK_MAGIC) {
        if (nfd)
            mp__close(got);
        return MP_EPROTO;
    }
    if (fd) {
        if (r.result == 0 && nfd == 1) {
            *fd = got;
        } else {
            if (nfd)
                mp__close(got);
            if (r.result == 0)
                return MP_EPROTO;
        }
    }
    return r.result;
}

/* A request that may meet a tracker which has just exited (its last
 * client left a moment before): then a new one is started, once. */
static int request_retry(uint32_t op, const char *path, uint64_t ino, int *fd, bool start)
{
    pthread_mutex_lock(&cl.lock);
    int rc = ensure_connected(start);
    if (rc == 0) {
        rc = request(op, path, ino, fd);
        if (rc == MP_ECONNRESET || rc == MP_EPIPE || rc == -ENOTCONN) {
            drop_connection();
            rc = ensure_connected(start);
            if (rc == 0)
                rc = request(op, path, ino, fd);
        }
        /* A connection in doubt (a late reply would answer the next
         * request) is not used again. */
        if (rc == MP_ECONNRESET || rc == MP_EPIPE || rc == MP_EPROTO || rc == MP_ETIMEDOUT)
            drop_connection();
    }
    pthread_mutex_unlock(&cl.lock);
    return rc;
}

int mp__tracker_create(const char *path, int *fd)
{
    return request_retry(MP__TRK_CREATE, path, 0, fd, true);
}

int mp__tracker_unlink(const char *path, uint64_t ino)
{
    int rc = request_retry(MP__TRK_UNLINK, path, ino, NULL, false);
    /* No tracker: this program tracks nothing. */
    return rc == MP_ECONNREFUSED ? MP_ESRCH : rc;
}

int mp__tracker_unlink_all(void)
{
    int rc = request_retry(MP__TRK_UNLINK_ALL, "", 0, NULL, false);
    /* No tracker runs: the program has no named segment. */
    return rc == MP_ECONNREFUSED ? 0 : rc;
}

/* Reports a hold taken by attach, and waits for the tracker to count it,
 * so that a close by another process after this returns cannot unlink the
 * segment under this one.  Only to a tracker that runs already: a program
 * without one created no segment, so there is nothing to count. */
void mp__tracker_attach(const char *path, uint64_t ino)
{
    (void)request_retry(MP__TRK_ATTACH, path, ino, NULL, false);
}

/* Reports a hold dropped, without waiting: messages from one process are
 * handled in order, so it never overtakes the attach. */
void mp__tracker_close(const char *path, uint64_t ino)
{
    pthread_mutex_lock(&cl.lock);
    if (ensure_connected(false) == 0 && send_msg(MP__TRK_CLOSE, path, ino) < 0)
        drop_connection();
    pthread_mutex_unlock(&cl.lock);
}
