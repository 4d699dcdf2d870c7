/*
 * server.c - the manager's server process: it owns the store, listens,
 * authenticates clients, and performs the calls of remote ones.
 *
 * DESIGN
 * A thread per connection, not an event loop.  Some calls wait: a lock
 * acquire, a queue get, a barrier, a condition - for as long as their
 * timeout, on the same futex words in the store that local clients wait
 * on.  With a thread per connection such a call is simply a blocking wait
 * in that connection's thread; an event loop would need a second,
 * asynchronous implementation of every waiting operation, and one slow
 * operation or one slow client would hold up all the others.  Here a
 * client that stops reading its replies, or sends half a frame and
 * stalls, holds only its own thread: every send has a deadline
 * (SEND_TIMEOUT) after which the connection is dropped, the handshake has
 * one, and receive buffers are bounded by the frame limit.  Threads are
 * cheap at this scale (max_clients, 256 by default, small stacks), and
 * local clients, the fast majority, do not use one for their calls at
 * all: they work on the store directly and keep their connection only so
 * that the server learns when they end.
 *
 * The main thread is a loop of phases - accept, admit, stop - over the
 * listening sockets and a self-pipe that SIGTERM (and SIGINT when serving
 * in the foreground), and MX_SHUTDOWN from any client, write to.  It holds
 * the store's life lock for as long as the server runs (store.c).
 *
 * A connection's end, however it comes (the client closed it, exited or
 * was killed, or sent something malformed), releases the locks that client
 * held (mp__mexec_forget), so that no dead client deadlocks the others.
 *
 * Stopping: no new connections; every connection's socket is shut down,
 * which ends its thread's read at once and its waits within a slice; the
 * main thread waits a few seconds for them, removes a socket file it
 * created, releases the life lock (local clients then see MP_ECONNRESET)
 * and returns.
 */
#define _GNU_SOURCE
#include "mgr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define HANDSHAKE_TIMEOUT 10.0
#define SEND_TIMEOUT      30.0
#define STOP_TIMEOUT      5.0
#define THREAD_STACK      ((size_t)256 << 10)
#define DEFAULT_CLIENTS   256

typedef struct srv srv;

typedef struct srv_conn {
    srv *S;
    mp__mconn c;
    uint32_t id;
    bool tcp;
    char peer[80];
    struct srv_conn *next;
} srv_conn;

struct srv {
    const mp__mserver_cfg *cfg;
    ms_store store;
    int lfd[2];
    mp__maddr laddr[2];
    bool bound[2]; /* for removing a socket file this server created */
    int nl;
    int pipe[2];
    pthread_mutex_t lock;
    pthread_cond_t gone;
    srv_conn *conns;
    int nconns;
    int max_clients;
    uint32_t next_id;
    _Atomic bool stopping;
};

/* The self-pipe a signal handler writes to.  A process-wide variable
 * because a handler reaches nothing else; one server per process uses it. */
static _Atomic int stop_fd = -1;

static void on_signal(int signo)
{
    (void)signo;
    int saved = errno;
    int fd = atomic_load(&stop_fd);
    if (fd >= 0) {
        char b = 's';
        ssize_t n = write(fd, &b, 1);
        (void)n;
    }
    errno = saved;
}

static void request_stop(srv *S)
{
    char b = 's';
    ssize_t n = write(S->pipe[1], &b, 1);
    (void)n;
}

/* ---- a connection ------------------------------------------------------------- */

static int conn_check(void *arg)
{
    srv_conn *k = arg;
    if (atomic_load(&k->S->stopping) || mp__mconn_hung_up(&k->c))
        return MP_ECONNRESET;
    return 0;
}

/* Answers one frame.  Returns 0 to go on, or an error to hang up. */
static int serve_one(srv_conn *k, mx_ctx *ctx, const uint8_t *p, size_t len, mp__mbytes *strs)
{
    mp__mreq rq;
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = mp__wire_decode_req(p, len, &rq, strs);
    if (rc < 0) {
        if (rq.op == 0) {
            mp_log(MP_LOG_WARNING, "manager: malformed frame from %s: disconnected", k->peer);
            return rc;
        }
        rp.status = rc; /* answered: the client learns what it did wrong */
    } else {
        ctx->shutdown = false;
        mp__mexec(ctx, &rq, &rp);
    }
    int n = mp__wire_encode_rep(rq.op, rq.seq, &rp, &k->c.tx, &k->c.tx_cap, MC_TAG);
    if (n < 0) {
        mp__mrep_free(&rp);
        rp.status = n;
        n = mp__wire_encode_rep(rq.op, rq.seq, &rp, &k->c.tx, &k->c.tx_cap, MC_TAG);
    }
    mp__mrep_free(&rp);
    if (n < 0)
        return n;
    rc = mp__mconn_send(&k->c, (size_t)n, mp__deadline(SEND_TIMEOUT));
    if (ctx->shutdown)
        request_stop(k->S);
    return rc;
}

static void serve(srv_conn *k)
{
    mp__mbytes *strs = malloc(MX_MAX_STRS * sizeof *strs);
    if (!strs)
        return;
    mx_ctx ctx = {&k->S->store, k->id, conn_check, k, false, false, false};
    for (;;) {
        const uint8_t *p;
        size_t len;
        int rc = mp__mconn_recv(&k->c, &p, &len, MP__NO_DEADLINE);
        if (rc == MP_EAUTH)
            mp_log(MP_LOG_WARNING, "manager: a frame from %s failed authentication: disconnected",
                   k->peer);
        else if (rc == MP_EPROTO)
            mp_log(MP_LOG_WARNING, "manager: oversized frame from %s: disconnected", k->peer);
        if (rc < 0 || serve_one(k, &ctx, p, len, strs) < 0 || atomic_load(&k->S->stopping))
            break;
    }
    free(strs);
}

static void *conn_main(void *arg)
{
    srv_conn *k = arg;
    srv *S = k->S;
    uint32_t agreed = 0;
    int rc = mp__mconn_server_hello(&k->c, S->cfg->master, k->tcp ? MH_ENCRYPT : 0,
                                    k->tcp ? 0 : MH_FASTPATH, k->id, S->store.fd, S->store.size,
                                    mp__deadline(HANDSHAKE_TIMEOUT), &agreed);
    if (rc == MP_EAUTH)
        mp_log(MP_LOG_WARNING, "manager: refused %s: wrong authentication key", k->peer);
    else if (rc < 0)
        mp_log(MP_LOG_INFO, "manager: handshake with %s failed: %s", k->peer, mp_strerror(rc));
    else
        serve(k);
    mp__mexec_forget(&S->store, k->id);
    pthread_mutex_lock(&S->lock);
    for (srv_conn **pp = &S->conns; *pp; pp = &(*pp)->next) {
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    }
    S->nconns--;
    pthread_cond_broadcast(&S->gone);
    pthread_mutex_unlock(&S->lock);
    mp__mconn_close(&k->c);
    free(k);
    return NULL;
}

/* ---- accepting ------------------------------------------------------------------ */

static void describe_peer(int fd, bool tcp, char *buf, size_t cap)
{
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof ss;
    if (tcp && getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        (void)mp__maddr_text(&ss, buf, cap);
        return;
    }
    pid_t pid;
    uid_t uid;
    if (mp__peer_cred(fd, &pid, &uid) == 0)
        snprintf(buf, cap, "local process %d (uid %u)", (int)pid, (unsigned)uid);
    else
        snprintf(buf, cap, "a local process");
}

/* The next client number not in use (called with S->lock held). */
static uint32_t next_id(srv *S)
{
    for (;;) {
        uint32_t id = S->next_id++;
        if (S->next_id > INT32_MAX)
            S->next_id = 1;
        bool used = false;
        for (srv_conn *k = S->conns; k && !used; k = k->next)
            used = k->id == id;
        if (!used && id != 0)
            return id;
    }
}

static void admit(srv *S, int fd, bool tcp)
{
    srv_conn *k = calloc(1, sizeof *k);
    if (!k) {
        mp__close(fd);
        return;
    }
    k->S = S;
    k->tcp = tcp;
    mp__mconn_init(&k->c, fd);
    describe_peer(fd, tcp, k->peer, sizeof k->peer);
    pthread_mutex_lock(&S->lock);
    if (S->nconns >= S->max_clients) {
        pthread_mutex_unlock(&S->lock);
        mp_log(MP_LOG_WARNING, "manager: refused %s: too many clients", k->peer);
        uint32_t agreed;
        /* Client number 0 says "busy"; a fresh socket takes HELLO at once. */
        (void)mp__mconn_server_hello(&k->c, S->cfg->master, 0, 0, 0, -1, 0, mp__deadline(0),
                                     &agreed);
        mp__mconn_close(&k->c);
        free(k);
        return;
    }
    k->id = next_id(S);
    k->next = S->conns;
    S->conns = k;
    S->nconns++;
    pthread_mutex_unlock(&S->lock);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    /* Signals go to the main thread only: its poll is what they end. */
    sigset_t old;
    mp__signals_block_all(&old);
    pthread_t th;
    int rc = pthread_create(&th, &attr, conn_main, k);
    mp__signals_restore(&old);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_lock(&S->lock);
        S->conns = k->next;
        S->nconns--;
        pthread_mutex_unlock(&S->lock);
        mp__mconn_close(&k->c);
        free(k);
    }
}

static void accept_all(srv *S, int i)
{
    for (;;) {
        int fd = mp__accept(S->lfd[i]);
        if (fd < 0)
            return; /* EAGAIN, or a transient error the next poll retries */
        /* Each connection has a thread of its own that blocks on it. */
        (void)mp__set_nonblock(fd, false);
        mp__maddr_accepted(fd, &S->laddr[i]);
        admit(S, fd, S->laddr[i].family != AF_UNIX);
    }
}

/* ---- the phases ------------------------------------------------------------------ */

static int setup(srv *S)
{
    const mp__mserver_cfg *cfg = S->cfg;
    int rc = mp__mstore_create(cfg->memory, &S->store);
    if (rc < 0)
        return rc;
    if ((rc = mp__pipe(S->pipe, O_NONBLOCK)) < 0)
        return rc;
    S->laddr[0] = cfg->addr;
    S->nl = 1;
    if (cfg->also_local) {
        S->laddr[1] = cfg->local;
        S->nl = 2;
    }
    for (int i = 0; i < S->nl; i++) {
        if ((S->lfd[i] = mp__maddr_listen(&S->laddr[i])) < 0)
            return S->lfd[i];
        S->bound[i] = true;
    }
    return mp__mstore_live(&S->store);
}

static void notify_ready(srv *S, int ready_fd)
{
    char main_addr[300], local_addr[300], msg[700];
    mp__maddr_format(&S->laddr[0], main_addr, sizeof main_addr);
    mp__maddr_format(&S->laddr[S->nl - 1], local_addr, sizeof local_addr);
    if (ready_fd >= 0) {
        int n = snprintf(msg, sizeof msg, "OK %d %s %s\n", (int)getpid(), main_addr, local_addr);
        (void)mp__write_all(ready_fd, msg, (size_t)n);
    }
    if (S->cfg->ready)
        S->cfg->ready(main_addr, S->cfg->ready_arg);
}

static void loop(srv *S)
{
    struct pollfd pfd[3];
    for (;;) {
        for (int i = 0; i < S->nl; i++)
            pfd[i] = (struct pollfd){.fd = S->lfd[i], .events = POLLIN};
        pfd[S->nl] = (struct pollfd){.fd = S->pipe[0], .events = POLLIN};
        int n = poll(pfd, (nfds_t)S->nl + 1, -1);
        if (n < 0)
            continue; /* EINTR: the handler wrote to the pipe */
        if (pfd[S->nl].revents)
            return;
        for (int i = 0; i < S->nl; i++) {
            if (pfd[i].revents)
                accept_all(S, i);
        }
    }
}

/* Ends every connection and waits a while for their threads.  Returns
 * false if some are still running. */
static bool stop(srv *S)
{
    atomic_store(&S->stopping, true);
    for (int i = 0; i < S->nl; i++) {
        mp__close(S->lfd[i]);
        S->lfd[i] = -1;
    }
    int64_t deadline = mp__deadline(STOP_TIMEOUT);
    struct timespec ts;
    pthread_mutex_lock(&S->lock);
    for (srv_conn *k = S->conns; k; k = k->next)
        (void)shutdown(k->c.fd, SHUT_RDWR);
    while (S->nconns > 0 && mp__remaining_ns(deadline) > 0) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&S->gone, &S->lock, &ts);
    }
    bool clean = S->nconns == 0;
    pthread_mutex_unlock(&S->lock);
    return clean;
}

static void cleanup(srv *S, bool threads_gone)
{
    for (int i = 0; i < S->nl; i++) {
        mp__close(S->lfd[i]);
        S->lfd[i] = -1;
        if (S->bound[i] && S->laddr[i].family == AF_UNIX && !S->laddr[i].abstract)
            (void)unlink(S->laddr[i].path);
    }
    if (S->store.base && S->store.server_tid == mp__self_tid())
        (void)mp__mutex_unlock(&S->store.h->life);
    if (!threads_gone) {
        /* A thread is stuck (on the store lock of a stopped client): its
         * memory must stay; the process is about to end anyway. */
        mp_log(MP_LOG_WARNING, "manager: %d connection(s) did not end in time", S->nconns);
        return;
    }
    mp__mstore_detach(&S->store);
    mp__close(S->pipe[0]);
    mp__close(S->pipe[1]);
    pthread_mutex_destroy(&S->lock);
    pthread_cond_destroy(&S->gone);
    free(S);
}

int mp__mserver_run(const mp__mserver_cfg *cfg, int ready_fd)
{
    if (!mp__crypto_init())
        return MP_ENOTSUP;
    srv *S = calloc(1, sizeof *S);
    if (!S)
        return MP_ENOMEM;
    S->cfg = cfg;
    S->lfd[0] = S->lfd[1] = -1;
    S->pipe[0] = S->pipe[1] = -1;
    S->store.fd = -1;
    S->next_id = 1;
    S->max_clients = cfg->max_clients > 0 ? cfg->max_clients : DEFAULT_CLIENTS;
    pthread_mutex_init(&S->lock, NULL);
    pthread_cond_init(&S->gone, NULL);
    int rc = setup(S);
    if (rc < 0) {
        cleanup(S, true);
        return rc;
    }
    struct sigaction sa = {0}, old_term, old_int, old_pipe;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    atomic_store(&stop_fd, S->pipe[1]);
    sigaction(SIGTERM, &sa, &old_term);
    if (!cfg->forked)
        sigaction(SIGINT, &sa, &old_int);
    struct sigaction ign = {0};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe);
    notify_ready(S, ready_fd);
    loop(S);
    bool clean = stop(S);
    sigaction(SIGTERM, &old_term, NULL);
    if (!cfg->forked)
        sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    atomic_store(&stop_fd, -1);
    cleanup(S, clean);
    return 0;
}

_Noreturn void mp__manager_serve(const mp__mserver_cfg *cfg, int ready_fd)
{
    if (cfg->detached)
        (void)setsid();
    else if (cfg->owner > 0 && mp__die_with_parent(SIGTERM, cfg->owner) < 0)
        _exit(1); /* the starter is gone already */
    /* Hold nothing of the starter's: its pipes must see their ends when
     * it closes them, whatever this process keeps. */
    int keep[2] = {ready_fd, cfg->keep_fd};
    mp__close_fds_except(keep, 2);
    if (cfg->forked) {
        struct sigaction ign = {0};
        ign.sa_handler = SIG_IGN;
        sigaction(SIGINT, &ign, NULL); /* a terminal's Ctrl-C is the program's */
        sigaction(SIGHUP, &ign, NULL);
    }
    (void)mp__thread_set_name("mproc-manager");
    /* Its name in log lines, and the session its starter is in. */
    mp__self_enter_child("manager", "", cfg->session > 0 ? cfg->session : mp__session(),
                         cfg->owner);
    int rc = mp__mserver_run(cfg, ready_fd);
    if (rc < 0 && ready_fd >= 0) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "ERR %d\n", rc);
        (void)mp__write_all(ready_fd, msg, (size_t)n);
    }
    _exit(rc < 0 ? 1 : 0);
}
