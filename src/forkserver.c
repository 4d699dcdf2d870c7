/*
 * forkserver.c - starting children from a clean image: the spawn and
 * forkserver start methods.
 *
 * DESIGN
 * Both methods execute the program afresh (/proc/self/exe) with a socket
 * named in the environment; the library's constructor (self.c) sees it and
 * serves, before main() runs.  The request on that socket names the target
 * as (module file, offset) - see fnref.c - and carries the argument bytes,
 * the child's name, and descriptors: the report pipe's write end, a status
 * channel, the log destination, and the caller's own descriptors.
 *
 *   spawn       the fresh image reads one request and runs it itself.
 *   forkserver  the fresh image is a server: single-threaded, started once,
 *               it forks one child per request.  A fork of it is safe in a
 *               program full of threads, because the server has none.
 *
 * Forkserver protocol.  For each child the client makes a socketpair and
 * sends one end (the channel) with the request.  On the channel the server
 * answers with the child's pid and a pidfd for it (so the client can signal
 * it without pid-reuse races), and later with its wait status, when the
 * server has reaped it; then the server closes the channel.
 *
 * Lifetime.  The server dies with its client: every copy of the client's
 * end of the request socket is close-on-exec and closed in forked children
 * (pthread_atfork), so end-of-file on it means the client process is gone,
 * or stopped the server.  The server then kills the children still
 * running, reaps them, reports their status and exits.  Its children have
 * the server as parent for PR_SET_PDEATHSIG, so even a SIGKILLed server
 * takes them along.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define REQ_MAGIC  0x6d707271u /* "mprq" */
#define REQ_REPORT 1u
#define REQ_CHAN   2u
#define REQ_LOG    4u

typedef struct req_hdr {
    uint32_t magic;
    uint32_t flags;
    uint32_t nuser_fds;
    uint32_t path_len;
    int32_t parent;
    int32_t session;
    int32_t log_level;
    uint32_t pad;
    uint64_t offset;
    uint64_t arg_len;
    char name[MP__MAX_NAME];
    char ident[MP__MAX_NAME];
} req_hdr;

/* What the server sends on a child's channel. */
typedef struct chan_msg {
    int32_t kind; /* 1: started (pid, with a pidfd attached), 2: ended (status) */
    int32_t value;
} chan_msg;

int mp__request_send(int sock, const mp__request_out *r)
{
    if (r->nfds > MP__MAX_FDS || r->arg_len > MP__MAX_ARG)
        return MP_EINVAL;
    mp__fnref ref;
    int rc = mp__fnref_from_ptr((const void *)r->fn, &ref);
    if (rc < 0)
        return rc;
    size_t path_len = strlen(ref.path);
    struct {
        req_hdr h;
        char path[PATH_MAX];
    } msg;
    memset(&msg.h, 0, sizeof msg.h);
    msg.h.magic = REQ_MAGIC;
    msg.h.parent = (int32_t)getpid();
    msg.h.session = (int32_t)mp__session();
    msg.h.log_level = (int32_t)mp_log_get_level();
    msg.h.offset = ref.offset;
    msg.h.arg_len = r->arg ? r->arg_len : 0;
    msg.h.path_len = (uint32_t)path_len;
    snprintf(msg.h.name, sizeof msg.h.name, "%s", r->name ? r->name : "");
    snprintf(msg.h.ident, sizeof msg.h.ident, "%s", r->ident ? r->ident : "");
    memcpy(msg.path, ref.path, path_len);

    int fds[MP__MAX_FDS + 3];
    size_t n = 0;
    if (r->report_fd >= 0) {
        msg.h.flags |= REQ_REPORT;
        fds[n++] = r->report_fd;
    }
    if (r->chan_fd >= 0) {
        msg.h.flags |= REQ_CHAN;
        fds[n++] = r->chan_fd;
    }
    bool custom;
    int log_fd = mp__log_fd(&custom);
    if (custom) {
        msg.h.flags |= REQ_LOG;
        fds[n++] = log_fd;
    }
    msg.h.nuser_fds = (uint32_t)r->nfds;
    for (size_t i = 0; i < r->nfds; i++)
        fds[n++] = r->fds[i];
    rc = mp__send_fds(sock, &msg, sizeof msg.h + path_len, fds, n);
    if (rc == 0 && msg.h.arg_len > 0)
        rc = mp__write_all(sock, r->arg, (size_t)msg.h.arg_len);
    return rc;
}

void mp__request_release(mp__request *req)
{
    free(req->arg);
    req->arg = NULL;
    mp__close(req->report_fd);
    mp__close(req->chan_fd);
    mp__close(req->log_fd);
    for (size_t i = 0; i < req->nfds; i++)
        mp__close(req->fds[i]);
    req->report_fd = req->chan_fd = req->log_fd = -1;
    req->nfds = 0;
}

int mp__request_recv(int sock, mp__request *req)
{
    memset(req, 0, sizeof *req);
    req->report_fd = req->chan_fd = req->log_fd = -1;
    req_hdr h;
    int fds[MP__MAX_FDS + 3];
    size_t nfds = MP__ARRAY_SIZE(fds);
    ssize_t n = mp__recv_fds(sock, &h, sizeof h, fds, &nfds);
    if (n == 0)
        return MP_EOF;
    if (n < 0)
        return (int)n;
    int rc = 0;
    if ((size_t)n < sizeof h)
        rc = mp__read_all(sock, (char *)&h + n, sizeof h - (size_t)n);
    size_t expect =
        __builtin_popcount(h.flags & (REQ_REPORT | REQ_CHAN | REQ_LOG)) + (size_t)h.nuser_fds;
    if (rc == 0 && (h.magic != REQ_MAGIC || h.path_len >= PATH_MAX || h.arg_len > MP__MAX_ARG ||
                    h.nuser_fds > MP__MAX_FDS || nfds != expect))
        rc = MP_EPROTO;
    size_t k = 0;
    if (h.flags & REQ_REPORT && k < nfds)
        req->report_fd = fds[k++];
    if (h.flags & REQ_CHAN && k < nfds)
        req->chan_fd = fds[k++];
    if (h.flags & REQ_LOG && k < nfds)
        req->log_fd = fds[k++];
    while (k < nfds)
        req->fds[req->nfds++] = fds[k++];
    if (rc == 0)
        rc = mp__read_all(sock, req->fn.path, h.path_len);
    if (rc == 0) {
        req->fn.path[h.path_len] = '\0';
        req->fn.offset = h.offset;
        req->arg_len = (size_t)h.arg_len;
        if (req->arg_len > 0) {
            req->arg = malloc(req->arg_len);
            rc = req->arg ? mp__read_all(sock, req->arg, req->arg_len) : MP_ENOMEM;
        }
    }
    if (rc < 0) {
        mp__request_release(req);
        return rc == MP_EOF ? MP_EPROTO : rc;
    }
    memcpy(req->name, h.name, sizeof req->name);
    req->name[sizeof req->name - 1] = '\0';
    memcpy(req->ident, h.ident, sizeof req->ident);
    req->ident[sizeof req->ident - 1] = '\0';
    req->parent = h.parent;
    req->session = h.session;
    req->log_level = h.log_level;
    return 0;
}

_Noreturn void mp__request_run(mp__request *req)
{
    mp__log_adopt(req->log_fd, req->log_level);
    mp__crash_prepare();
    void *fn = NULL;
    int rc = mp__fnref_resolve(&req->fn, &fn);
    mp__child_spec spec = {
        .target = (mp_target_fn)fn,
        .arg = req->arg,
        .name = req->name,
        .ident = req->ident,
        .parent = req->parent,
        .session = req->session,
        .report_fd = req->report_fd,
        .fds = req->fds,
        .nfds = req->nfds,
        .mask = NULL,
        .setup_error = rc,
    };
    mp__child_main(&spec);
}

/* ---- environment for a fresh image -------------------------------------- */

char **mp__env_with(const char *name, int fd)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0, nlen = strlen(name);
    for (size_t i = 0; i < n; i++) {
        /* Drop an inherited value of the same variable. */
        if (strncmp(environ[i], name, nlen) == 0 && environ[i][nlen] == '=')
            continue;
        env[k++] = environ[i];
    }
    char *var = malloc(nlen + 16);
    if (!var) {
        free(env);
        return NULL;
    }
    snprintf(var, nlen + 16, "%s=%d", name, fd);
    env[k++] = var;
    env[k] = NULL;
    return env;
}

void mp__env_free(char **env)
{
    if (!env)
        return;
    /* Only the last entry was allocated here; the rest are environ's. */
    size_t n = 0;
    while (env[n])
        n++;
    if (n > 0)
        free(env[n - 1]);
    free(env);
}

/* ---- the client --------------------------------------------------------- */

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

/* Starts a fresh image of the program serving sock_child under env_name.
 * Returns 0 and sets *pid, or an error. */
static int exec_self(const char *env_name, int sock_child, pid_t *pid)
{
    char **env = mp__env_with(env_name, sock_child);
    if (!env)
        return MP_ENOMEM;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* dup2 onto itself clears close-on-exec for this one descriptor. */
    posix_spawn_file_actions_adddup2(&fa, sock_child, sock_child);
    /* The fresh image starts with no signal blocked and default actions,
     * whatever this thread's mask is. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    extern char *program_invocation_name;
    char *argv[] = {program_invocation_name, NULL};
    int rc = posix_spawn(pid, "/proc/self/exe", &fa, &attr, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    mp__env_free(env);
    return -rc;
}

int mp__spawn_exec(int sock_child, pid_t *pid)
{
    return exec_self("MPROC_SPAWN", sock_child, pid);
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
    rc = exec_self("MPROC_FORKSERVER", sv[1], &pid);
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
    chan_msg m;
    int fd = -1;
    size_t nfd = 1;
    ssize_t n = mp__recv_fds(ch[0], &m, sizeof m, &fd, &nfd);
    if (n != (ssize_t)sizeof m || m.kind != 1) {
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
    chan_msg m;
    for (;;) {
        ssize_t n = recv(chan, &m, sizeof m, MSG_DONTWAIT);
        if (n == (ssize_t)sizeof m && m.kind == 2) {
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

/* ---- the server --------------------------------------------------------- */

typedef struct served {
    pid_t pid;
    int chan;
} served;

static void send_status(int chan, int wstatus)
{
    chan_msg m = {2, wstatus};
    (void)send(chan, &m, sizeof m, MSG_NOSIGNAL | MSG_DONTWAIT);
    mp__close(chan);
}

static void reap_served(served *kids, size_t *n, bool block)
{
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, block ? 0 : WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            return;
        for (size_t i = 0; i < *n; i++) {
            if (kids[i].pid == pid) {
                send_status(kids[i].chan, st);
                kids[i] = kids[--*n];
                break;
            }
        }
    }
}

_Noreturn void mp__forkserver_serve(int sock)
{
    (void)prctl(PR_SET_NAME, "mproc-forksrv", 0, 0, 0);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    mp__crash_prepare();

    size_t nkids = 0, cap = 16;
    served *kids = calloc(cap, sizeof *kids);
    if (!kids)
        _exit(127);
    for (;;) {
        struct pollfd pfd[2] = {{.fd = sock, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        int np = poll(pfd, sfd >= 0 ? 2 : 1, sfd >= 0 ? -1 : 100);
        if (np < 0 && errno != EINTR)
            break;
        if (sfd >= 0 && (pfd[1].revents & POLLIN)) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0) {
            }
        }
        reap_served(kids, &nkids, false);
        if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        mp__request req;
        int rc = mp__request_recv(sock, &req);
        if (rc == MP_EOF || rc == MP_EPROTO || rc == MP_ECONNRESET)
            break; /* the client is gone, or the stream cannot be trusted */
        if (rc < 0)
            continue;
        if (nkids >= cap) {
            size_t ncap = cap * 2;
            served *nk = realloc(kids, ncap * sizeof *nk);
            if (!nk) {
                chan_msg m = {1, MP_ENOMEM};
                (void)send(req.chan_fd, &m, sizeof m, MSG_NOSIGNAL);
                mp__request_release(&req);
                continue;
            }
            memset(nk + cap, 0, (ncap - cap) * sizeof *nk);
            kids = nk;
            cap = ncap;
        }
        req.parent = getpid();
        pid_t pid = fork();
        if (pid == 0) {
            mp__close(sock);
            mp__close(sfd);
            for (size_t i = 0; i < nkids; i++)
                mp__close(kids[i].chan);
            mp__close(req.chan_fd);
            req.chan_fd = -1;
            sigset_t none;
            sigemptyset(&none);
            pthread_sigmask(SIG_SETMASK, &none, NULL);
            mp__request_run(&req);
        }
        chan_msg m = {1, pid < 0 ? -errno : (int32_t)pid};
        int pidfd = pid > 0 ? mp__pidfd_open(pid) : -1;
        (void)mp__send_fds(req.chan_fd, &m, sizeof m, &pidfd, pidfd >= 0 ? 1 : 0);
        mp__close(pidfd);
        if (pid > 0) {
            kids[nkids].pid = pid;
            kids[nkids].chan = req.chan_fd;
            nkids++;
            req.chan_fd = -1;
        }
        mp__request_release(&req);
    }
    /* The client is gone: take the children along, report, and go. */
    for (size_t i = 0; i < nkids; i++)
        kill(kids[i].pid, SIGKILL);
    while (nkids > 0) {
        size_t before = nkids;
        reap_served(kids, &nkids, true);
        if (nkids == before)
            break; /* ECHILD: nothing left to reap */
    }
    _exit(0);
}

_Noreturn void mp__spawn_serve(int sock)
{
    mp__request req;
    int rc = mp__request_recv(sock, &req);
    mp__close(sock);
    if (rc < 0)
        _exit(127);
    mp__request_run(&req);
}
