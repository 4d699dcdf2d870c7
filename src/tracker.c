/*
 * tracker.c - the tracker of named segments: a small process that counts,
 * for every segment a program created, the processes of the program that
 * hold it, and unlinks the segment when none does - however they ended.
 *
 * DESIGN
 * One tracker per program (per session, see mp__session()), found by the
 * processes of the program at an abstract Unix socket address,
 * "\0mproc-tracker-<uid>-<session>": nothing on the file system, and the
 * address vanishes with the tracker.  Each process of the program that
 * uses named segments holds one connection (SOCK_SEQPACKET, so messages
 * keep their boundaries); the kernel closes it when the process ends, by
 * exit or by SIGKILL, and the tracker drops that process's holds.  That is
 * the whole reference-counting scheme: counts live in one process that
 * sees every end, instead of in shared memory that a dying process can
 * leave half-updated.
 *
 * Creation goes through the tracker: it opens the name with O_EXCL and
 * passes the descriptor back (SCM_RIGHTS).  So no segment exists that the
 * tracker does not know, even if the creator is killed a moment after, and
 * the tracker never unlinks a segment it did not create.  It remembers each
 * segment's inode and unlinks a name only while it still names that inode
 * (someone may have removed it and made another).  attach waits until the
 * tracker has counted its hold, so that a close by another process once
 * attach has returned cannot unlink the segment under it (messages of
 * different processes are not ordered); close does not wait, since
 * messages from one process arrive in order and it never overtakes its
 * attach.  Unlinking by a
 * program's process also goes through the tracker, synchronously, so that
 * an unlink and a re-creation of the same name by two processes cannot be
 * reordered into unlinking the new segment.
 *
 * Starting.  The first process that needs the tracker binds the address
 * itself (so two processes racing to start one agree: the loser gets
 * EADDRINUSE and connects), and hands the listening socket to a fresh
 * image of the program (/proc/self/exe, with MPROC_TRACKER=<fd> in its
 * environment; this file's constructor sees it and serves before main()).
 * A fresh image, not a fork, because a fork would keep the whole memory of
 * a possibly large program alive, copy-on-write, for as long as the
 * program runs.  It is started through an intermediate process that exits
 * at once: the tracker must outlive any process of the program, so it is
 * no process's child; init (or the nearest child subreaper) reaps it.  It
 * leaves the session and process group (setsid), so terminal signals
 * meant for the program do not kill it before it has cleaned up, closes
 * every descriptor it inherited, and ignores SIGINT, SIGTERM and SIGHUP.
 *
 * Stopping.  The tracker exits once no process of the program is
 * connected and none is waiting to be: after the last one ends.  Before
 * its first client it waits at most IDLE_MS.  A process that talks to a
 * tracker that has just exited gets end-of-file and starts a new one.
 *
 * After fork, the child closes its copy of the connection (pthread_atfork):
 * the tracker must see each process's end separately.  The child connects
 * again when it needs to.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define TRK_MAGIC 0x6d70746bu /* "mptk" */
#define PATH_CAP  256
#define IDLE_MS   5000
/* How long a process waits for the tracker's answer: starting it is an
 * exec, slow under sanitizers or on a loaded machine, never this slow. */
#define REPLY_TIMEOUT 30.0

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

enum { OP_CREATE = 1, OP_ATTACH = 2, OP_CLOSE = 3, OP_UNLINK = 4 };

typedef struct trk_msg {
    uint32_t magic;
    uint32_t op;
    uint64_t ino;
    char path[PATH_CAP];
} trk_msg;

typedef struct trk_reply {
    uint32_t magic;
    int32_t result;
} trk_reply;

extern char **environ;

static void tracker_address(struct sockaddr_un *sa, socklen_t *len)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    /* sun_path[0] stays 0: the abstract namespace. */
    int n = snprintf(sa->sun_path + 1, sizeof sa->sun_path - 1, "mproc-tracker-%u-%d",
                     (unsigned)getuid(), (int)mp__session());
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* ---- the client side ------------------------------------------------------------- */

static struct {
    pthread_mutex_t lock;
    int fd;
    pthread_once_t once;
} cl = {PTHREAD_MUTEX_INITIALIZER, -1, PTHREAD_ONCE_INIT};

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
    char **env = mp__env_with("MPROC_TRACKER", lfd);
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
            execve("/proc/self/exe", argv, env);
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
        int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (s < 0)
            return -errno;
        if (connect(s, (struct sockaddr *)&sa, len) == 0)
            return s;
        int err = errno;
        if ((err != ECONNREFUSED && err != ENOENT) || !start) {
            mp__close(s);
            return err == ENOENT ? MP_ECONNREFUSED : -err;
        }
        int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (l < 0) {
            mp__close(s);
            return -errno;
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
        int rc = listen(l, 128) == 0 ? 0 : -errno;
        if (rc == 0)
            rc = spawn_tracker(l);
        if (rc == 0)
            rc = connect(s, (struct sockaddr *)&sa, len) == 0 ? 0 : -errno;
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
    trk_msg m;
    memset(&m, 0, sizeof m);
    m.magic = TRK_MAGIC;
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
    trk_reply r;
    int got = -1;
    size_t nfd = fd ? 1 : 0;
    ssize_t n = mp__recv_fds(cl.fd, &r, sizeof r, fd ? &got : NULL, &nfd);
    if (n == 0)
        return MP_ECONNRESET;
    if (n < 0)
        return (int)n;
    if (n != (ssize_t)sizeof r || r.magic != TRK_MAGIC) {
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
    return request_retry(OP_CREATE, path, 0, fd, true);
}

int mp__tracker_unlink(const char *path, uint64_t ino)
{
    int rc = request_retry(OP_UNLINK, path, ino, NULL, false);
    /* No tracker: this program tracks nothing. */
    return rc == MP_ECONNREFUSED ? MP_ESRCH : rc;
}

/* Reports a hold taken by attach, and waits for the tracker to count it,
 * so that a close by another process after this returns cannot unlink the
 * segment under this one.  Only to a tracker that runs already: a program
 * without one created no segment, so there is nothing to count. */
void mp__tracker_attach(const char *path, uint64_t ino)
{
    (void)request_retry(OP_ATTACH, path, ino, NULL, false);
}

/* Reports a hold dropped, without waiting: messages from one process are
 * handled in order, so it never overtakes the attach. */
void mp__tracker_close(const char *path, uint64_t ino)
{
    pthread_mutex_lock(&cl.lock);
    if (ensure_connected(false) == 0 && send_msg(OP_CLOSE, path, ino) < 0)
        drop_connection();
    pthread_mutex_unlock(&cl.lock);
}

/* ---- the tracker --------------------------------------------------------------------- */

typedef struct seg {
    char path[PATH_CAP];
    uint64_t ino;
    uint64_t dev;
    uint32_t refs; /* holds, over all clients */
} seg;

typedef struct hold {
    uint64_t client; /* the client's id */
    size_t seg;
    uint32_t count;
} hold;

typedef struct client {
    int fd;
    uint64_t id;
} client;

static struct {
    seg *segs;
    size_t nsegs, capsegs;
    hold *holds;
    size_t nholds, capholds;
    client *clients;
    size_t nclients, capclients;
    uint64_t next_id;
} T;

static bool grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return true;
    size_t nc = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, nc * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = nc;
    return true;
}

static ssize_t find_seg(const char *path)
{
    for (size_t i = 0; i < T.nsegs; i++)
        if (strcmp(T.segs[i].path, path) == 0)
            return (ssize_t)i;
    return -1;
}

/* Unlinks the segment's name if it still names the segment.  Returns 0 or
 * MP_ENOENT. */
static int unlink_if_same(const seg *s)
{
    char full[PATH_CAP + 16];
    snprintf(full, sizeof full, "/dev/shm%s", s->path);
    struct stat st;
    if (stat(full, &st) != 0 || (uint64_t)st.st_ino != s->ino || (uint64_t)st.st_dev != s->dev)
        return MP_ENOENT;
    return shm_unlink(s->path) == 0 ? 0 : -errno;
}

/* Forgets segment i and every hold on it. */
static void forget_seg(size_t i)
{
    size_t last = T.nsegs - 1;
    for (size_t h = 0; h < T.nholds;) {
        if (T.holds[h].seg == i) {
            T.holds[h] = T.holds[--T.nholds];
            continue;
        }
        if (T.holds[h].seg == last)
            T.holds[h].seg = i;
        h++;
    }
    T.segs[i] = T.segs[last];
    T.nsegs--;
}

static void drop_ref(size_t i, uint32_t n)
{
    seg *s = &T.segs[i];
    s->refs = s->refs > n ? s->refs - n : 0;
    if (s->refs == 0) {
        (void)unlink_if_same(s);
        forget_seg(i);
    }
}

static void add_hold(uint64_t cid, size_t i)
{
    T.segs[i].refs++;
    for (size_t h = 0; h < T.nholds; h++) {
        if (T.holds[h].client == cid && T.holds[h].seg == i) {
            T.holds[h].count++;
            return;
        }
    }
    if (!grow((void **)&T.holds, &T.capholds, T.nholds, sizeof *T.holds)) {
        T.segs[i].refs--; /* the hold is not counted: unlinked early, never leaked */
        return;
    }
    T.holds[T.nholds++] = (hold){cid, i, 1};
}

static void reply(int fd, int result, int pass_fd)
{
    /* A client sends one request at a time and reads each answer, so its
     * socket always has room; if not, it is not one of ours: hang up
     * rather than block every other client. */
    if (mp__poll_fd(fd, POLLOUT, mp__deadline(0)) <= 0) {
        shutdown(fd, SHUT_RDWR);
        return;
    }
    trk_reply r = {TRK_MAGIC, result};
    if (mp__send_fds(fd, &r, sizeof r, &pass_fd, pass_fd >= 0 ? 1 : 0) < 0)
        shutdown(fd, SHUT_RDWR);
}

static void op_create(const client *c, const trk_msg *m)
{
    if (!grow((void **)&T.segs, &T.capsegs, T.nsegs, sizeof *T.segs)) {
        reply(c->fd, MP_ENOMEM, -1);
        return;
    }
    int fd = shm_open(m->path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        reply(c->fd, -errno, -1);
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        shm_unlink(m->path);
        mp__close(fd);
        reply(c->fd, e, -1);
        return;
    }
    /* A name in the table that no longer exists (removed from outside)
     * makes way for the new segment. */
    ssize_t old = find_seg(m->path);
    if (old >= 0)
        forget_seg((size_t)old);
    seg *s = &T.segs[T.nsegs++];
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", m->path);
    s->ino = (uint64_t)st.st_ino;
    s->dev = (uint64_t)st.st_dev;
    add_hold(c->id, T.nsegs - 1);
    /* If the creator is gone before this arrives, its end-of-file drops
     * the hold and the segment goes. */
    reply(c->fd, 0, fd);
    mp__close(fd);
}

static void handle(const client *c, const trk_msg *m)
{
    ssize_t i = m->op == OP_CREATE ? -1 : find_seg(m->path);
    /* The same name may have been unlinked and made again: a message is
     * about the segment with the inode it names. */
    bool ours = i >= 0 && T.segs[i].ino == m->ino;
    switch (m->op) {
    case OP_CREATE:
        op_create(c, m);
        break;
    case OP_ATTACH:
        if (ours)
            add_hold(c->id, (size_t)i);
        reply(c->fd, ours ? 0 : MP_ESRCH, -1);
        break;
    case OP_CLOSE:
        if (!ours)
            break;
        for (size_t h = 0; h < T.nholds; h++) {
            if (T.holds[h].client == c->id && T.holds[h].seg == (size_t)i) {
                if (--T.holds[h].count == 0)
                    T.holds[h] = T.holds[--T.nholds];
                drop_ref((size_t)i, 1);
                break;
            }
        }
        break;
    case OP_UNLINK:
        if (!ours) {
            /* Not ours to unlink: an unknown name is the caller's to
             * handle; a known name of another inode means the caller's
             * segment is gone already. */
            reply(c->fd, i < 0 ? MP_ESRCH : MP_ENOENT, -1);
            break;
        }
        reply(c->fd, unlink_if_same(&T.segs[i]), -1);
        forget_seg((size_t)i);
        break;
    default:
        break;
    }
}

/* A client is gone: its holds go with it. */
static void drop_client(size_t k)
{
    uint64_t id = T.clients[k].id;
    mp__close(T.clients[k].fd);
    T.clients[k] = T.clients[--T.nclients];
    for (size_t h = 0; h < T.nholds;) {
        if (T.holds[h].client == id) {
            size_t i = T.holds[h].seg;
            uint32_t n = T.holds[h].count;
            T.holds[h] = T.holds[--T.nholds];
            drop_ref(i, n); /* may reorder holds: start over */
            h = 0;
            continue;
        }
        h++;
    }
}

static void accept_clients(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;
        struct ucred cred;
        socklen_t len = sizeof cred;
        /* Only the program's own user may speak to its tracker. */
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != getuid() ||
            !grow((void **)&T.clients, &T.capclients, T.nclients, sizeof *T.clients)) {
            mp__close(fd);
            continue;
        }
        T.clients[T.nclients++] = (client){fd, ++T.next_id};
    }
}

/* Reads what client k sent.  Returns false when it is gone. */
static bool serve_client(size_t k)
{
    for (;;) {
        trk_msg m;
        ssize_t n = recv(T.clients[k].fd, &m, sizeof m, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n <= 0)
            return false;
        if (n != (ssize_t)sizeof m || m.magic != TRK_MAGIC)
            return false; /* not one of ours: hang up */
        m.path[PATH_CAP - 1] = '\0';
        handle(&T.clients[k], &m);
    }
}

/* Gives the tracker a clean slate: the listening socket on descriptor 3,
 * /dev/null for stdin and stdout, stderr kept for messages, nothing else
 * of what the program had open. */
static int settle_descriptors(int lfd)
{
    if (lfd != 3) {
        if (dup2(lfd, 3) < 0)
            return lfd;
        lfd = 3;
    }
    (void)fcntl(lfd, F_SETFD, FD_CLOEXEC);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        (void)dup2(null, 0);
        (void)dup2(null, 1);
    }
    struct rlimit rl;
    int top =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 65536
            ? (int)rl.rlim_cur
            : 65536;
    if (syscall(SYS_close_range, 4u, ~0u, 0) != 0) {
        for (int fd = 4; fd < top; fd++)
            close(fd);
    }
    /* Many clients: as many descriptors as allowed. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    return lfd;
}

_Noreturn void mp__tracker_serve(int lfd)
{
    (void)prctl(PR_SET_NAME, "mproc-tracker", 0, 0, 0);
    /* Not a child of the program: PR_SET_PDEATHSIG does not apply, and
     * the signals meant for the program are not for the tracker. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    lfd = settle_descriptors(lfd);
    (void)mp__set_nonblock(lfd, true);

    bool served = false;
    struct pollfd *pfd = NULL;
    size_t cappfd = 0;
    for (;;) {
        if (T.nclients == 0 && served) {
            /* The last client left; a process about to connect would sit
             * in the backlog: stop only if none does. */
            struct pollfd lp = {.fd = lfd, .events = POLLIN};
            if (poll(&lp, 1, 0) <= 0)
                break;
        }
        if (!grow((void **)&pfd, &cappfd, T.nclients + 1, sizeof *pfd))
            break;
        pfd[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (size_t k = 0; k < T.nclients; k++)
            pfd[k + 1] = (struct pollfd){.fd = T.clients[k].fd, .events = POLLIN};
        size_t np = T.nclients + 1;
        int n = poll(pfd, np, served ? -1 : IDLE_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* nobody came, or poll failed */
        /* Ends first: a process that died before another one asked
         * something is accounted for before the answer, so that the answer
         * reflects every death that preceded the question.  drop_client()
         * reorders the table, so clients are found by descriptor. */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t p = 1; p < np; p++) {
                bool hup = pfd[p].revents & (POLLHUP | POLLERR);
                if (!pfd[p].revents || hup != (pass == 0))
                    continue;
                for (size_t k = 0; k < T.nclients; k++) {
                    if (T.clients[k].fd == pfd[p].fd) {
                        if (!serve_client(k) || hup)
                            drop_client(k);
                        break;
                    }
                }
            }
        }
        if (pfd[0].revents & POLLIN) {
            accept_clients(lfd);
            served = true;
        }
    }
    /* Nobody holds anything any more; whatever is left is unlinked. */
    while (T.nsegs > 0) {
        (void)unlink_if_same(&T.segs[T.nsegs - 1]);
        T.nsegs--;
    }
    _exit(0);
}

/* A fresh image started as the tracker serves before main() runs. */
__attribute__((constructor)) static void tracker_boot(void)
{
    if (getauxval(AT_SECURE))
        return;
    const char *v = getenv("MPROC_TRACKER");
    if (!v)
        return;
    char *end;
    long fd = strtol(v, &end, 10);
    unsetenv("MPROC_TRACKER");
    int acc = 0;
    socklen_t len = sizeof acc;
    if (*end != '\0' || fd < 0 || fd > INT_MAX ||
        getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0 || !acc)
        return;
    mp__tracker_serve((int)fd);
}
