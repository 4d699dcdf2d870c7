/*
 * trackerd.c - the tracker of named segments: a small process that counts,
 * for every segment a program created, the processes of the program that
 * hold it, and unlinks the segment when none does - however they ended.
 *
 * DESIGN
 * The tracker is a fresh image of the program in the tracker role (boot.c),
 * started by the first process of the program that needed it (tracker.c,
 * which also says how processes find it).  Each process of the program that
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
 * (someone may have removed it and made another).  The messages are in
 * trackerd.h.
 *
 * The tracker must outlive every process of the program, so it is no
 * process's child (init, or the nearest child subreaper, reaps it), and it
 * ignores the signals meant for the program: SIGINT, SIGTERM and SIGHUP.
 * It starts with a clean slate of descriptors.
 *
 * A shutdown of the program (mp_shutdown) asks it to unlink everything
 * at once, whoever still holds what: the names go, and mappings stay
 * valid until their holders let go of them.
 *
 * Stopping.  The tracker exits once no process of the program is
 * connected and none is waiting to be: after the last one ends.  The
 * process that starts it connects first (tracker.c), so its first client
 * is in the backlog when it starts, dead or alive; should none be, it
 * waits at most IDLE_MS - about a second, the most it may outlive a
 * program.  Whatever it still tracks then is unlinked.
 */
#define _GNU_SOURCE
#include "trackerd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDLE_MS 1000

typedef struct seg {
    char path[MP__TRK_PATH_CAP];
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
    uint64_t dev, ino;
    if (mp__shm_identity(s->path, &dev, &ino) != 0 || ino != s->ino || dev != s->dev)
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
    mp__trk_reply r = {MP__TRK_MAGIC, result};
    if (mp__send_fds(fd, &r, sizeof r, &pass_fd, pass_fd >= 0 ? 1 : 0) < 0)
        shutdown(fd, SHUT_RDWR);
}

static void op_create(const client *c, const mp__trk_msg *m)
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

/* A shutdown: unlinks every segment still named as tracked and forgets
 * them all, with every hold on them (later closes of those holds find
 * nothing and are ignored).  Returns how many names were unlinked. */
static int unlink_all(void)
{
    int n = 0;
    while (T.nsegs > 0) {
        n += unlink_if_same(&T.segs[T.nsegs - 1]) == 0;
        forget_seg(T.nsegs - 1);
    }
    return n;
}

static void handle(const client *c, const mp__trk_msg *m)
{
    ssize_t i = m->op == MP__TRK_CREATE ? -1 : find_seg(m->path);
    /* The same name may have been unlinked and made again: a message is
     * about the segment with the inode it names. */
    bool ours = i >= 0 && T.segs[i].ino == m->ino;
    switch (m->op) {
    case MP__TRK_CREATE:
        op_create(c, m);
        break;
    case MP__TRK_ATTACH:
        if (ours)
            add_hold(c->id, (size_t)i);
        reply(c->fd, ours ? 0 : MP_ESRCH, -1);
        break;
    case MP__TRK_CLOSE:
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
    case MP__TRK_UNLINK:
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
    case MP__TRK_UNLINK_ALL:
        reply(c->fd, unlink_all(), -1);
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
        int fd = mp__accept(lfd);
        if (fd < 0)
            return;
        uid_t uid;
        /* Only the program's own user may speak to its tracker. */
        if (mp__peer_cred(fd, NULL, &uid) != 0 || uid != getuid() ||
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
        mp__trk_msg m;
        ssize_t n = recv(T.clients[k].fd, &m, sizeof m, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n <= 0)
            return false;
        if (n != (ssize_t)sizeof m || m.magic != MP__TRK_MAGIC)
            return false; /* not one of ours: hang up */
        m.path[MP__TRK_PATH_CAP - 1] = '\0';
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
    mp__close_from(4);
    /* Many clients: as many descriptors as allowed. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    return lfd;
}

/* Whether the tracker may stop: its last client left, and no process
 * sits in the backlog about to connect. */
static bool idle(int lfd, bool served)
{
    if (T.nclients > 0 || !served)
        return false;
    struct pollfd lp = {.fd = lfd, .events = POLLIN};
    return poll(&lp, 1, 0) <= 0;
}

/* Acts on what poll() reported for the clients (pfd[1..np-1]).  Ends come
 * first: a process that died before another one asked something is
 * accounted for before the answer, so that the answer reflects every death
 * that preceded the question.  drop_client() reorders the table, so
 * clients are found by descriptor. */
static void serve_clients(const struct pollfd *pfd, size_t np)
{
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
}

_Noreturn void mp__tracker_serve(int lfd)
{
    (void)mp__thread_set_name("mproc-tracker");
    /* Not a child of the program: no death signal ties it to a parent, and
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
    while (!idle(lfd, served)) {
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
        serve_clients(pfd, np);
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
