/*
 * role.c - the manager server as a start-up role (boot.c): the
 * configuration its starter sends it, and the role's entry point.
 *
 * DESIGN
 * mp_manager_start() runs the server in a fresh image of the program
 * unless forking the caller is safe and chosen (client.c says when).  The
 * image learns its socket from its environment, as every role does
 * (MPROC_MANAGER=<fd>), and everything else - the addresses, the key, the
 * options - from one message on that socket, never from its command line
 * or its environment: /proc/PID/cmdline is readable by every user and
 * /proc/PID/environ by every process of the same user, and the key must
 * reach nobody.  Even the message holds only the key the server needs,
 * derived from the user's (mp__crypto_master), never the user's key
 * itself, and both ends wipe it once used.  The log's descriptor travels
 * with the message (SCM_RIGHTS), so that the server logs where its starter
 * does.
 *
 * The server answers on the same socket as a forked one does on its pipe:
 * "OK pid main-address local-address" once it listens, or "ERR code" when
 * it could not start.  An image that ends before either (it could not
 * run, or died) shows as end-of-file, which its starter reports as an
 * error; one that never answers is killed at the starter's deadline.
 *
 * A detached server must be nobody's child, so the image forks once more
 * - it is single-threaded still, so that fork is safe - and the first
 * process exits at once; the second serves, and its pid is the one the
 * ready line names.
 *
 * The receiver trusts the message no more than any other: its size, magic
 * and version are checked, its strings cut to their arrays, its numbers
 * bounded, and the descriptors that came with it counted.  The sender is
 * the very same program (the image is a copy of its file), so the
 * message's layout is the same on both ends.
 */
#define _GNU_SOURCE
#include "role.h"

#include "mgr.h"
#include "testhooks.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define MR_MAGIC   0x6d706d67u /* "mpmg" */
#define MR_VERSION 1u

#define MR_ALSO_LOCAL 1u
#define MR_DETACHED   2u
#define MR_LOG        4u /* the log's descriptor is attached */

typedef struct mr_msg {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    int32_t max_clients;
    int32_t owner;
    int32_t session;
    int32_t log_level;
    int32_t fault;
    uint64_t memory;
    uint8_t master[MC_KEY];
    mp__maddr addr;
    mp__maddr local;
} mr_msg;

int mp__mrole_send(int sock, const mp__mserver_cfg *cfg, int log_fd, int log_level, int fault)
{
    mr_msg *m = calloc(1, sizeof *m); /* zeroed padding: nothing of the stack leaves */
    if (!m)
        return MP_ENOMEM;
    m->magic = MR_MAGIC;
    m->version = MR_VERSION;
    m->flags = (cfg->also_local ? MR_ALSO_LOCAL : 0) | (cfg->detached ? MR_DETACHED : 0) |
               (log_fd >= 0 ? MR_LOG : 0);
    m->max_clients = cfg->max_clients;
    m->owner = (int32_t)cfg->owner;
    m->session = (int32_t)cfg->session;
    m->log_level = log_level;
    m->fault = fault;
    m->memory = cfg->memory;
    memcpy(m->master, cfg->master, MC_KEY);
    m->addr = cfg->addr;
    m->local = cfg->local;
    int rc = mp__send_fds(sock, m, sizeof *m, &log_fd, log_fd >= 0 ? 1 : 0);
    mp__crypto_wipe(m, sizeof *m);
    free(m);
    return rc;
}

/* Whether a received address can be used: a known family, its strings
 * cut to their arrays, a port in range. */
static bool addr_sane(mp__maddr *a)
{
    a->path[sizeof a->path - 1] = '\0';
    a->host[sizeof a->host - 1] = '\0';
    if (a->family == AF_UNIX)
        return a->path[0] != '\0' || a->abstract;
    return (a->family == AF_INET || a->family == AF_INET6 || a->family == AF_UNSPEC) &&
           a->port >= 0 && a->port <= 65535;
}

/* Reads the configuration into cfg.  Returns 0 or an error; *log_fd is
 * the log's descriptor (or -1), set either way. */
static int receive(int sock, mr_msg *m, mp__mserver_cfg *cfg, int *log_fd)
{
    size_t nfd = 1;
    *log_fd = -1;
    ssize_t n = mp__recv_fds(sock, m, sizeof *m, log_fd, &nfd);
    if (nfd == 0)
        *log_fd = -1;
    if (n < 0)
        return (int)n;
    if ((size_t)n != sizeof *m || m->magic != MR_MAGIC || m->version != MR_VERSION ||
        nfd != ((m->flags & MR_LOG) ? 1u : 0u) || m->max_clients < 0 ||
        m->memory > (uint64_t)SIZE_MAX || !addr_sane(&m->addr) || !addr_sane(&m->local))
        return MP_EPROTO;
    memset(cfg, 0, sizeof *cfg);
    cfg->addr = m->addr;
    cfg->also_local = (m->flags & MR_ALSO_LOCAL) != 0;
    if (cfg->also_local && m->local.family != AF_UNIX)
        return MP_EPROTO;
    cfg->local = m->local;
    memcpy(cfg->master, m->master, MC_KEY);
    cfg->memory = (size_t)m->memory;
    cfg->max_clients = m->max_clients;
    cfg->detached = (m->flags & MR_DETACHED) != 0;
    cfg->forked = true;
    cfg->owner = cfg->detached ? 0 : (pid_t)m->owner;
    cfg->session = (pid_t)m->session;
    cfg->keep_fd = *log_fd;
    return 0;
}

/* The faults a test asks for (testhooks.h). */
static void fault(int what)
{
    if (what == MP__MF_EXIT)
        _exit(3);
    if (what == MP__MF_STALL) {
        for (;;)
            pause();
    }
}

_Noreturn void mp__manager_role_serve(int sock)
{
    mr_msg m;
    mp__mserver_cfg cfg;
    int log_fd;
    int rc = receive(sock, &m, &cfg, &log_fd);
    mp__crypto_wipe(m.master, sizeof m.master);
    if (rc < 0) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "ERR %d\n", rc);
        (void)mp__write_all(sock, msg, (size_t)len);
        _exit(1);
    }
    fault(m.fault);
    mp__log_adopt(log_fd, m.log_level);
    if (cfg.detached) {
        pid_t t = fork(); /* one thread: safe (see DESIGN) */
        if (t != 0)
            _exit(t < 0 ? 1 : 0);
    }
    mp__manager_serve(&cfg, sock);
}
