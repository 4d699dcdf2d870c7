/*
 * client.c - a manager handle: starting a server, connecting, calls
 * (local or remote), shutting down, and what a handle does across fork.
 *
 * DESIGN
 * Starting.  mp_manager_start() starts the server process (whose entry
 * point is mp__manager_serve) and waits on a descriptor for its "ready"
 * line: its pid and the addresses it bound.  Then it connects to it like
 * any client, over the server's Unix address, and so gets the fast path.
 * The server is one of two things:
 *   - a fresh image of the program in the manager role (boot.c,
 *     managerd/role.c), handed its configuration over a socket - never in
 *     its command line or environment, where other processes read it;
 *   - a fork of the caller, the fastest start (a fork costs a fraction of
 *     an exec and a dynamic load).
 * A fork is taken only when it is safe and chosen: opts.start_method (by
 * default the program's, mp_get_start_method()) is fork, or auto while no
 * other thread runs and the MPI engine allows fork.  A fork copies the
 * caller's memory with only the forking thread in it: a lock another
 * thread held (malloc's, stdio's, the program's own) stays held forever in
 * the server, which then hangs on its first allocation; and an MPI engine
 * forbids fork outright.  A fresh image has neither problem, so it is what
 * every other case gets.  Both kinds end the same way.
 * A server that is not detached asks for SIGTERM when its starter dies
 * (PR_SET_PDEATHSIG), and stops cleanly then; the starter's free() kills
 * and reaps it at once.  A detached server is started through an
 * intermediate process that exits at once, so that it is nobody's child
 * and outlives its starter; it leaves the session (setsid).  A forked
 * server closes every descriptor it inherited before it serves; a fresh
 * image never had them.  A server that ends before its ready line is
 * reported with how it ended (MP_ECHILD); one that does not answer by the
 * deadline is killed (MP_ETIMEDOUT).
 *
 * Calls.  mp__mcall() performs a request on the mapped store when the
 * handle has the fast path (exec.c, in the calling thread), else sends it
 * to the server and waits for the reply, one call at a time per handle
 * (io lock), with a deadline: rpc_timeout plus the call's own timeout
 * when it waits for a state.  A remote call that fails in transport -
 * timed out, reset, malformed reply - leaves the connection out of step,
 * so the handle drops it; later calls get MP_ECONNRESET.
 *
 * Fork.  A child must not share its parent's connection: the server
 * releases a client's locks when its connection ends, and that must
 * happen when the parent ends, not when the last of its children does.
 * So every handle is in a registry, and a fork handler closes each one's
 * socket in the child; the child's first call through a handle connects
 * anew (authenticating with the key the handle keeps) and becomes a
 * client of its own, with its own number.
 */
#define _GNU_SOURCE
#include "client.h"
#include "../boot.h"
#include "../fork_guard.h"
#include "../shutdown.h"
#include "../startmethod.h"
#include "../testhooks.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CONNECT_TIMEOUT 30.0
#define DEFAULT_KEY_LEN 32

/* ---- the registry ------------------------------------------------------------ */

static struct {
    pthread_mutex_t lock;
    mp_manager *head;
    pthread_once_t once;
} reg = {PTHREAD_MUTEX_INITIALIZER, NULL, PTHREAD_ONCE_INIT};

static void reg_prepare(void)
{
    pthread_mutex_lock(&reg.lock);
}

static void reg_parent(void)
{
    pthread_mutex_unlock(&reg.lock);
}

/* In a child: drop every inherited connection (see DESIGN); the next call
 * connects again.  The io locks may have been held by other threads of
 * the parent: they are made new. */
static void reg_child(void)
{
    for (mp_manager *m = reg.head; m; m = m->next) {
        mp__close(m->conn.fd);
        m->conn.fd = -1;
        pthread_mutex_init(&m->io, NULL);
    }
    pthread_mutex_init(&reg.lock, NULL);
}

static void reg_init(void)
{
    pthread_atfork(reg_prepare, reg_parent, reg_child);
}

static void reg_add(mp_manager *m)
{
    pthread_once(&reg.once, reg_init);
    pthread_mutex_lock(&reg.lock);
    m->next = reg.head;
    reg.head = m;
    pthread_mutex_unlock(&reg.lock);
}

static void reg_remove(mp_manager *m)
{
    pthread_mutex_lock(&reg.lock);
    for (mp_manager **pp = &reg.head; *pp; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    }
    pthread_mutex_unlock(&reg.lock);
}

/* ---- connecting ------------------------------------------------------------------ */

static mp_manager *handle_new(void)
{
    mp_manager *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->io, NULL);
    m->conn.fd = -1;
    m->store.fd = -1;
    m->server_pidfd = -1;
    m->rpc_timeout = 30.0;
    m->timeout = CONNECT_TIMEOUT;
    return m;
}

static int set_key(mp_manager *m, const void *key, size_t len)
{
    if (!key || len == 0 || len > MP_MANAGER_MAX_AUTHKEY)
        return MP_EINVAL;
    m->authkey = malloc(len);
    if (!m->authkey)
        return MP_ENOMEM;
    memcpy(m->authkey, key, len);
    m->authkey_len = len;
    mp__crypto_master(key, len, m->master);
    return 0;
}

/* Connects and authenticates; maps the store when the fast path is
 * granted. */
static int dial(mp_manager *m, int64_t deadline)
{
    int fd = mp__maddr_connect(&m->connect_to, deadline);
    if (fd < 0)
        return fd;
    mp__mconn_init(&m->conn, fd);
    uint32_t want = 0;
    if (m->encrypt)
        want |= MH_ENCRYPT;
    else if (!m->no_fastpath && m->conn.unix_socket)
        want |= MH_FASTPATH;
    mp__mwelcome w;
    int rc = mp__mconn_client_hello(&m->conn, m->master, want, deadline, &w);
    if (rc == 0 && w.store_fd >= 0) {
        rc = mp__mstore_attach(w.store_fd, &m->store);
        if (rc < 0)
            mp__close(w.store_fd);
    }
    if (rc < 0) {
        mp__mconn_close(&m->conn);
        return rc;
    }
    m->local = w.store_fd >= 0;
    if (!m->local && m->rpc_timeout > 0)
        mp__mconn_set_rcvtimeo(&m->conn, m->rpc_timeout / 2);
    m->client_id = w.client_id;
    m->pid = mp__self_pid();
    return 0;
}

/* The handle's connection, connecting again in a forked child. */
static int ensure(mp_manager *m)
{
    if (m->pid == mp__self_pid())
        return m->conn.fd >= 0 || m->local ? 0 : MP_ECONNRESET;
    pthread_mutex_lock(&m->io);
    int rc = 0;
    if (m->pid != mp__self_pid()) {
        mp__mconn_close(&m->conn);
        if (m->local)
            mp__mstore_detach(&m->store);
        m->local = false;
        rc = dial(m, mp__deadline(m->timeout));
    }
    pthread_mutex_unlock(&m->io);
    return rc;
}

/* ---- calls -------------------------------------------------------------------- */

static int local_check(void *arg)
{
    const mp_manager *m = arg;
    return mp__mstore_alive(&m->store) ? 0 : MP_ECONNRESET;
}

static bool waits(uint16_t op)
{
    switch (op) {
    case MX_K_ACQUIRE:
    case MX_S_ACQUIRE:
    case MX_E_WAIT:
    case MX_C_WAIT:
    case MX_B_WAIT:
    case MX_Q_PUT:
    case MX_Q_GET:
        return true;
    default:
        return false;
    }
}

/* Sends rq to the server and reads the reply into rp. */
static int remote(mp_manager *m, mp__mreq *rq, mp__mrep *rp)
{
    int64_t deadline = MP__NO_DEADLINE;
    if (m->rpc_timeout >= 0 && !(waits(rq->op) && rq->timeout < 0))
        deadline = mp__deadline(m->rpc_timeout + (waits(rq->op) ? rq->timeout : 0));
    pthread_mutex_lock(&m->io);
    rq->seq = ++m->seq;
    int rc = m->conn.fd < 0 ? MP_ECONNRESET : 0;
    int n = rc < 0 ? rc : mp__wire_encode_req(rq, &m->conn.tx, &m->conn.tx_cap, MC_TAG);
    if (n < 0) {
        pthread_mutex_unlock(&m->io);
        rp->status = n;
        return n;
    }
    rc = mp__mconn_send(&m->conn, (size_t)n, deadline);
    const uint8_t *p;
    size_t len;
    if (rc == 0)
        rc = mp__mconn_recv(&m->conn, &p, &len, deadline);
    if (rc == 0)
        rc = mp__wire_decode_rep(p, len, rq->op, rq->seq, rp);
    if (rc < 0) {
        /* Out of step with the server: no later reply can be trusted. */
        mp__close(m->conn.fd);
        m->conn.fd = -1;
        if (rc == MP_EOF || rc == MP_EPIPE)
            rc = MP_ECONNRESET;
        rp->status = rc;
    }
    pthread_mutex_unlock(&m->io);
    return rp->status;
}

int mp__mcall(mp_manager *m, mp__mreq *rq, mp__mrep *rp)
{
    if (!m) {
        rp->status = MP_EINVAL;
        return MP_EINVAL;
    }
    int rc = ensure(m);
    if (rc < 0) {
        rp->status = rc;
        return rc;
    }
    if (!m->local)
        return remote(m, rq, rp);
    if (!mp__mstore_alive(&m->store)) {
        rp->status = MP_ECONNRESET;
        return MP_ECONNRESET;
    }
    mx_ctx ctx = {&m->store, m->client_id, local_check, m, false, false, false};
    return mp__mexec(&ctx, rq, rp);
}

/* ---- starting a server ---------------------------------------------------------- */

/* A private abstract address, unguessable so that nobody squats it. */
static void private_address(mp__maddr *a)
{
    uint8_t r[8];
    mp__crypto_random(r, sizeof r);
    memset(a, 0, sizeof *a);
    a->family = AF_UNIX;
    a->abstract = true;
    snprintf(a->path, sizeof a->path, "mproc-manager-%u-%d-%02x%02x%02x%02x%02x%02x%02x%02x",
             (unsigned)getuid(), (int)getpid(), r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
}

/* Reads the server's ready line ("OK pid main local" or "ERR code"). */
static int read_ready(int fd, int64_t deadline, char *line, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        int rc = mp__poll_fd(fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
        ssize_t k = read(fd, line + n, cap - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return MP_ECHILD; /* the server ended before it was ready */
        n += (size_t)k;
        line[n] = '\0';
        if (memchr(line, '\n', n))
            return 0;
    }
    return MP_EPROTO;
}

static int parse_ready(mp_manager *m, const char *line)
{
    int code;
    if (sscanf(line, "ERR %d", &code) == 1)
        return code < 0 ? code : MP_EPROTO;
    int pid;
    char main_addr[300], local_addr[300];
    if (sscanf(line, "OK %d %299s %299s", &pid, main_addr, local_addr) != 3 || pid <= 0)
        return MP_EPROTO;
    m->server_pid = pid;
    snprintf(m->address, sizeof m->address, "%s", main_addr);
    return mp__maddr_parse(local_addr, &m->connect_to);
}

static void kill_server(mp_manager *m)
{
    if (m->server_pid <= 0)
        return;
    if (m->server_pidfd >= 0)
        (void)mp__pidfd_send_signal(m->server_pidfd, SIGKILL);
    else
        (void)kill(m->server_pid, SIGKILL);
    if (!m->detached) {
        while (waitpid(m->server_pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    m->server_pid = 0;
    if (m->has_unlink_path)
        (void)unlink(m->unlink_path.path);
}

int mp__manager_start_fault = MP__MF_NONE;

/* Forks the server (and, detached, an intermediate that exits at once).
 * *ready is where its ready line will come, *child the process forked. */
static int fork_server(const mp__mserver_cfg *cfg, int *ready, pid_t *child)
{
    int fds[2];
    int rc = mp__pipe(fds, 0);
    if (rc < 0)
        return rc;
    sigset_t old;
    mp__signals_block_all(&old);
    pid_t pid = fork();
    if (pid == 0) {
        mp__close(fds[0]);
        mp__signals_restore(&old);
        if (cfg->detached) {
            pid_t t = fork();
            if (t != 0)
                _exit(t < 0 ? 1 : 0);
        }
        mp__manager_serve(cfg, fds[1]);
    }
    int err = errno;
    mp__signals_restore(&old);
    mp__close(fds[1]);
    if (pid < 0) {
        mp__close(fds[0]);
        return -err;
    }
    *ready = fds[0];
    *child = pid;
    return 0;
}

/* Starts the server as a fresh image in the manager role and sends it its
 * configuration; *ready is the socket its ready line will come on, *child
 * the image. */
static int spawn_server(const mp__mserver_cfg *cfg, int *ready, pid_t *child)
{
    int sv[2];
    int rc = mp__socketpair(SOCK_STREAM, sv);
    if (rc < 0)
        return rc;
    pid_t pid;
    rc = mp__boot_spawn(MP__ROLE_MANAGER, sv[1], &pid);
    mp__close(sv[1]);
    if (rc < 0) {
        mp__close(sv[0]);
        return mp__fail(rc, "mp_manager_start: the server's image could not be started: %s",
                        mp_strerror(rc));
    }
    bool custom;
    int log_fd = mp__log_fd(&custom);
    /* A send that fails (the image died at once) shows as end-of-file
     * where the ready line should be, and is reported there. */
    (void)mp__mrole_send(sv[0], cfg, custom ? log_fd : -1, (int)mp_log_get_level(),
                         mp__manager_start_fault);
    *ready = sv[0];
    *child = pid;
    return 0;
}

/* Whether the program has a thread other than the caller and the
 * library's own (which hold none of its locks); true when they cannot be
 * counted. */
static bool other_threads(void)
{
    int total, named;
    bool self_named;
    if (mp__threads_count(MP__LIBRARY_THREAD_PREFIX, &total, &named, &self_named) < 0)
        return true;
    return total - named - (self_named ? 0 : 1) > 0;
}

/* Whether to fork the server rather than start a fresh image (see
 * DESIGN).  Returns 0 and sets *fork_it, or the error that refuses an
 * explicit fork (MP_ETHREADS, MP_ENOTSUP) or MP_EINVAL. */
static int choose_fork(mp_start_method asked, bool *fork_it)
{
    mp_start_method m = asked == MP_START_DEFAULT ? mp_get_start_method() : asked;
    *fork_it = false;
    switch (m) {
    case MP_START_SPAWN:
    case MP_START_FORKSERVER:
        return 0;
    case MP_START_FORK: {
        mp_start_method got;
        int rc = mp__start_method_resolve(MP_START_FORK, true, "mp_manager_start", &got);
        *fork_it = rc == 0 && got == MP_START_FORK;
        return rc;
    }
    case MP_START_AUTO:
        *fork_it = mp__comm_fork_allowed() && !other_threads();
        return 0;
    default:
        return mp__fail(MP_EINVAL,
                        "mp_manager_start: opts.start_method is no start method (got %d)", (int)m);
    }
}

/* After a start that failed before the server was ready: kills and reaps
 * child (the server, or a detached one's first process) and says how it
 * ended. */
static int start_failed(mp_manager *m, pid_t child, int rc, double timeout)
{
    int st = 0;
    (void)kill(child, SIGKILL);
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
    }
    m->server_pid = 0;
    if (rc == MP_ECHILD && WIFSIGNALED(st))
        return mp__fail(rc, "mp_manager_start: the server ended before it was ready (signal %d)",
                        WTERMSIG(st));
    if (rc == MP_ECHILD)
        return mp__fail(rc, "mp_manager_start: the server ended before it was ready (exit %d)",
                        WEXITSTATUS(st));
    if (rc == MP_ETIMEDOUT)
        return mp__fail(rc, "mp_manager_start: the server was not ready within %g s: killed",
                        timeout);
    return rc;
}

/* Parses the address text of the call fn (opts.address) into *a: 0, or
 * MP_EINVAL with a detail saying what an address looks like. */
static int address_parse(const char *fn, const char *text, mp__maddr *a)
{
    int rc = mp__maddr_parse(text, a);
    if (rc == MP_EINVAL)
        return mp__fail(MP_EINVAL,
                        "%s: opts.address must be unix:/PATH, unix:@NAME or tcp://HOST:PORT "
                        "(got \"%.100s\")",
                        fn, text);
    return rc;
}

static int start_config(mp_manager *m, const mp_manager_opts *o, mp__mserver_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (o->address) {
        int rc = address_parse("mp_manager_start", o->address, &cfg->addr);
        if (rc < 0)
            return rc;
        if (cfg->addr.family != AF_UNIX) {
            cfg->also_local = true;
            private_address(&cfg->local);
        } else if (!cfg->addr.abstract) {
            m->unlink_path = cfg->addr; /* armed once the server bound it */
        }
    } else {
        private_address(&cfg->addr);
    }
    memcpy(cfg->master, m->master, MC_KEY);
    cfg->memory = o->memory;
    cfg->max_clients = o->max_clients;
    cfg->detached = o->detached;
    cfg->forked = true;
    cfg->owner = getpid();
    cfg->session = mp__session();
    bool custom;
    cfg->keep_fd = mp__log_fd(&custom);
    return 0;
}

/* Reads and parses the ready line; for a detached server, reaps the
 * first process once the server is ready. */
static int await_ready(mp_manager *m, int fd, pid_t child, int64_t deadline)
{
    char line[800];
    int rc = read_ready(fd, deadline, line, sizeof line);
    mp__close(fd);
    if (rc == 0)
        rc = parse_ready(m, line);
    if (rc < 0)
        return rc;
    if (m->detached) {
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    return 0;
}

static int start(mp_manager *m, const mp_manager_opts *o)
{
    bool fork_it;
    int rc = choose_fork(o->start_method, &fork_it);
    if (rc < 0)
        return rc;
    if (o->authkey) {
        rc = set_key(m, o->authkey, o->authkey_len);
    } else {
        uint8_t key[DEFAULT_KEY_LEN];
        mp__crypto_random(key, sizeof key);
        rc = set_key(m, key, sizeof key);
        mp__crypto_wipe(key, sizeof key);
    }
    mp__mserver_cfg cfg;
    if (rc < 0 || (rc = start_config(m, o, &cfg)) < 0)
        return rc;
    int64_t deadline = mp__deadline(o->timeout);
    m->detached = o->detached;
    m->owner_pid = getpid();
    int ready = -1;
    pid_t child = 0;
    rc = fork_it ? fork_server(&cfg, &ready, &child) : spawn_server(&cfg, &ready, &child);
    mp__crypto_wipe(cfg.master, sizeof cfg.master);
    if (rc < 0)
        return rc;
    if (!m->detached)
        m->server_pid = child;
    rc = await_ready(m, ready, child, deadline);
    if (rc < 0)
        return start_failed(m, child, rc, o->timeout);
    m->has_unlink_path = m->unlink_path.family == AF_UNIX;
    if (!m->detached)
        m->server_pidfd = mp__pidfd_open(m->server_pid);
    rc = dial(m, deadline);
    if (rc < 0)
        kill_server(m);
    return rc;
}

/* ---- the program's shutdown ------------------------------------------------------ */

/* mp_shutdown() ends a server this process started (not a detached one)
 * as it ends the children: SIGTERM first, which the server answers by
 * closing its connections and removing its socket file; SIGKILL when it
 * is still there after the children's wait. */
static void server_signal(mp_manager *m, int signo)
{
    if (m->server_pid <= 0 || m->owner_pid != getpid())
        return;
    if (m->server_pidfd >= 0)
        (void)mp__pidfd_send_signal(m->server_pidfd, signo);
    else
        (void)kill(m->server_pid, signo);
}

static void closer_close(void *obj)
{
    server_signal(obj, SIGTERM);
}

static void closer_terminate(void *obj)
{
    server_signal(obj, SIGKILL);
}

static void closer_reap(void *obj, int64_t deadline)
{
    mp_manager *m = obj;
    if (m->server_pid <= 0 || m->owner_pid != getpid())
        return;
    if (m->server_pidfd >= 0 && mp__poll_fd(m->server_pidfd, POLLIN, deadline) > 0) {
        while (waitpid(m->server_pid, NULL, 0) < 0 && errno == EINTR) {
        }
        m->server_pid = 0;
        m->dead = true;
        return;
    }
    kill_server(m); /* SIGKILL, reaped, its socket file removed */
    m->dead = true;
}

static const mp__closer_ops server_closer = {
    .kind = "manager",
    .close = closer_close,
    .terminate = closer_terminate,
    .reap = closer_reap,
};

/* ---- the public calls ------------------------------------------------------------- */

bool mp_manager_available(void)
{
    return mp__crypto_init();
}

static void handle_free(mp_manager *m)
{
    mp__mconn_close(&m->conn);
    if (m->local)
        mp__mstore_detach(&m->store);
    mp__close(m->server_pidfd);
    if (m->authkey) {
        mp__crypto_wipe(m->authkey, m->authkey_len);
        free(m->authkey);
    }
    mp__crypto_wipe(m->master, sizeof m->master);
    pthread_mutex_destroy(&m->io);
    free(m);
}

/* 0 for a key length of 1 to MP_MANAGER_MAX_AUTHKEY bytes, else MP_EINVAL
 * with a detail naming fn's argument what. */
static int keylen_check(const char *fn, const char *what, size_t len)
{
    if (len == 0 || len > MP_MANAGER_MAX_AUTHKEY)
        return mp__fail(MP_EINVAL, "%s: %s must be 1 to %d bytes (got %zu)", fn, what,
                        (int)MP_MANAGER_MAX_AUTHKEY, len);
    return 0;
}

/* 0 unless t is NaN; MP_EINVAL with a detail naming fn's argument what. */
static int time_check(const char *fn, const char *what, double t)
{
    if (t != t)
        return mp__fail(MP_EINVAL, "%s: %s must be a number of seconds (got NaN)", fn, what);
    return 0;
}

/* The checks mp_manager_start() and mp_manager_serve_notify() share. */
static int server_opts_check(const char *fn, const mp_manager_opts *o)
{
    int rc = o->authkey ? keylen_check(fn, "opts.authkey_len", o->authkey_len) : 0;
    if (rc == 0 && o->max_clients < 0)
        rc = mp__fail(MP_EINVAL, "%s: opts.max_clients must be >= 0 (got %d)", fn, o->max_clients);
    return rc;
}

int mp_manager_start(const mp_manager_opts *opts, mp_manager **out)
{
    MP__NONNULL(out);
    *out = NULL;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    if (opts)
        o = *opts;
    int bad = server_opts_check(__func__, &o);
    if (bad == 0)
        bad = time_check(__func__, "opts.timeout", o.timeout);
    if (bad < 0)
        return bad;
    if (!mp__crypto_init())
        return MP_ENOTSUP;
    mp_manager *m = handle_new();
    if (!m)
        return MP_ENOMEM;
    int rc = start(m, &o);
    if (rc == 0 && !m->detached && (rc = mp__shutdown_register(&server_closer, m, &m->closer)) < 0)
        kill_server(m);
    if (rc < 0) {
        handle_free(m);
        return rc;
    }
    reg_add(m);
    *out = m;
    return 0;
}

int mp_manager_connect_opts(const mp_manager_client_opts *opts, mp_manager **out)
{
    MP__NONNULL(out);
    *out = NULL;
    MP__NONNULL(opts);
    if (!opts->address)
        return mp__fail(MP_EINVAL, "%s: opts.address must not be NULL", __func__);
    int bad = time_check(__func__, "opts.timeout", opts->timeout);
    if (bad == 0)
        bad = time_check(__func__, "opts.rpc_timeout", opts->rpc_timeout);
    if (bad == 0 && !opts->authkey)
        bad = mp__fail(MP_EINVAL, "%s: opts.authkey must not be NULL", __func__);
    if (bad == 0)
        bad = keylen_check(__func__, "opts.authkey_len", opts->authkey_len);
    if (bad < 0)
        return bad;
    if (!mp__crypto_init())
        return MP_ENOTSUP;
    mp_manager *m = handle_new();
    if (!m)
        return MP_ENOMEM;
    int rc = address_parse(__func__, opts->address, &m->connect_to);
    if (rc == 0)
        rc = set_key(m, opts->authkey, opts->authkey_len);
    if (rc == 0) {
        snprintf(m->address, sizeof m->address, "%s", opts->address);
        m->timeout = opts->timeout;
        m->rpc_timeout = opts->rpc_timeout;
        m->no_fastpath = opts->no_fastpath || opts->encrypt;
        m->encrypt = opts->encrypt;
        rc = dial(m, mp__deadline(opts->timeout));
    }
    if (rc < 0) {
        handle_free(m);
        return rc;
    }
    reg_add(m);
    *out = m;
    return 0;
}

int mp_manager_connect(const char *address, const void *authkey, size_t keylen, mp_manager **out)
{
    mp_manager_client_opts o = MP_MANAGER_CLIENT_OPTS_INIT;
    o.address = address;
    o.authkey = authkey;
    o.authkey_len = keylen;
    return mp_manager_connect_opts(&o, out);
}

/* Waits until the server this process started has exited, and reaps it. */
static int await_server(mp_manager *m, double timeout)
{
    int rc = 0;
    if (m->server_pidfd >= 0) {
        rc = mp__poll_fd(m->server_pidfd, POLLIN, mp__deadline(timeout));
    } else {
        int64_t deadline = mp__deadline(timeout);
        while (kill(m->server_pid, 0) == 0 || errno != ESRCH) {
            int st;
            if (!m->detached && waitpid(m->server_pid, &st, WNOHANG) == m->server_pid) {
                m->server_pid = 0;
                return 0;
            }
            if (mp__remaining_ns(deadline) <= 0) {
                rc = MP_ETIMEDOUT;
                break;
            }
            mp__sleep_ns(1000000); /* no descriptor to wait on: poll */
        }
    }
    if (rc == MP_ETIMEDOUT) {
        kill_server(m);
        return rc;
    }
    if (!m->detached) {
        while (waitpid(m->server_pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    m->server_pid = 0;
    return 0;
}

int mp_manager_shutdown(mp_manager *m, double timeout)
{
    MP__NONNULL(m);
    int bad = time_check(__func__, "timeout", timeout);
    if (bad < 0)
        return bad;
    int rc = ensure(m);
    if (rc == 0) {
        mp__mreq rq = {0};
        mp__mrep rp;
        mp__mrep_init(&rp);
        rq.op = MX_SHUTDOWN;
        rc = remote(m, &rq, &rp);
        mp__mrep_free(&rp);
    }
    if (m->owner_pid == getpid() && m->server_pid > 0) {
        int wrc = await_server(m, timeout);
        if (wrc < 0)
            return wrc;
        return 0;
    }
    return rc;
}

void mp_manager_free(mp_manager *m)
{
    if (!m)
        return;
    reg_remove(m);
    mp__shutdown_unregister(m->closer);
    if (m->owner_pid == getpid() && !m->detached)
        kill_server(m);
    handle_free(m);
}

const char *mp_manager_address(const mp_manager *m)
{
    return m ? m->address : "";
}

int mp_manager_authkey(const mp_manager *m, void *buf, size_t cap)
{
    MP__NONNULL(m);
    if (!buf && cap)
        return mp__fail(MP_EINVAL, "%s: buf must not be NULL when cap is %zu", __func__, cap);
    if (cap)
        memcpy(buf, m->authkey, cap < m->authkey_len ? cap : m->authkey_len);
    return (int)m->authkey_len;
}

pid_t mp_manager_pid(const mp_manager *m)
{
    return m && m->owner_pid == getpid() ? m->server_pid : 0;
}

bool mp_manager_is_local(const mp_manager *m)
{
    return m && m->local && m->pid == mp__self_pid();
}

/* ---- serving in this process ----------------------------------------------------- */

int mp_manager_serve_notify(const mp_manager_opts *opts,
                            void (*ready)(const char *address, void *arg), void *arg)
{
    MP__NONNULL(opts);
    if (!opts->address)
        return mp__fail(MP_EINVAL, "%s: opts.address must not be NULL", __func__);
    if (!opts->authkey)
        return mp__fail(MP_EINVAL, "%s: opts.authkey must not be NULL", __func__);
    int bad = server_opts_check(__func__, opts);
    if (bad < 0)
        return bad;
    if (!mp__crypto_init())
        return MP_ENOTSUP;
    mp__mserver_cfg *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return MP_ENOMEM;
    int rc = address_parse(__func__, opts->address, &cfg->addr);
    if (rc == 0) {
        mp__crypto_master(opts->authkey, opts->authkey_len, cfg->master);
        cfg->memory = opts->memory;
        cfg->max_clients = opts->max_clients;
        cfg->keep_fd = -1;
        cfg->ready = ready;
        cfg->ready_arg = arg;
        rc = mp__mserver_run(cfg, -1);
    }
    mp__crypto_wipe(cfg->master, sizeof cfg->master);
    free(cfg);
    return rc;
}

int mp_manager_serve(const mp_manager_opts *opts)
{
    return mp_manager_serve_notify(opts, NULL, NULL);
}
