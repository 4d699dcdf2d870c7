/*
 * request.c - what a process started from a clean image is asked to run,
 * and how a fresh image gets the socket it is asked on.
 *
 * DESIGN
 * The spawn and forkserver start methods run a child's target in an image
 * that is not a fork of the caller, so the request names the target as
 * (module file, offset) - see fnref.c - and carries the argument bytes, the
 * child's name, its place in the tree of processes, the session, the log
 * level, whether SIGINT is the parent's to handle, and descriptors: the
 * report pipe's write end, a status channel (forkserver), the log
 * destination, the page of the program's shutdown event, and the caller's
 * own descriptors.  It
 * travels as one message with the descriptors attached (SCM_RIGHTS)
 * followed by the argument bytes.  The receiver trusts nothing in it: the
 * header's counts are checked against what arrived, and a request that
 * does not add up is refused whole, its descriptors closed.
 *
 * A fresh image learns its socket from its environment (NAME=<fd>); the
 * names belong to the start-up roles (boot.c).  The variable is removed at
 * once, so that programs the image starts later do not inherit it.
 */
#define _GNU_SOURCE
#include "request.h"

#include "child.h"
#include "log.h"
#include "self.h"
#include "shutdown_event.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define REQ_MAGIC  0x6d707271u /* "mprq" */
#define REQ_REPORT 1u
#define REQ_CHAN   2u
#define REQ_LOG    4u
#define REQ_SDEV   8u  /* the shutdown event's page */
#define REQ_NOINT  16u /* the child ignores SIGINT: the parent coordinates */
#define REQ_FDS    (REQ_REPORT | REQ_CHAN | REQ_LOG | REQ_SDEV)

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

    int fds[MP__MAX_FDS + 4];
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
    int sdev_fd = mp__sdev_fd();
    if (sdev_fd >= 0) {
        msg.h.flags |= REQ_SDEV;
        fds[n++] = sdev_fd;
    }
    if (mp__child_sigint_ignored())
        msg.h.flags |= REQ_NOINT;
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
    mp__close(req->sdev_fd);
    for (size_t i = 0; i < req->nfds; i++)
        mp__close(req->fds[i]);
    req->report_fd = req->chan_fd = req->log_fd = req->sdev_fd = -1;
    req->nfds = 0;
}

int mp__request_recv(int sock, mp__request *req)
{
    memset(req, 0, sizeof *req);
    req->report_fd = req->chan_fd = req->log_fd = req->sdev_fd = -1;
    req_hdr h;
    int fds[MP__MAX_FDS + 4];
    size_t nfds = MP__ARRAY_SIZE(fds);
    ssize_t n = mp__recv_fds(sock, &h, sizeof h, fds, &nfds);
    if (n == 0)
        return MP_EOF;
    if (n < 0)
        return (int)n;
    int rc = 0;
    if ((size_t)n < sizeof h)
        rc = mp__read_all(sock, (char *)&h + n, sizeof h - (size_t)n);
    size_t expect = __builtin_popcount(h.flags & REQ_FDS) + (size_t)h.nuser_fds;
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
    if (h.flags & REQ_SDEV && k < nfds)
        req->sdev_fd = fds[k++];
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
    req->origin = h.parent;
    req->ignore_sigint = (h.flags & REQ_NOINT) != 0;
    req->session = h.session;
    req->log_level = h.log_level;
    return 0;
}

_Noreturn void mp__request_run(mp__request *req)
{
    mp__log_adopt(req->log_fd, req->log_level);
    mp__sdev_adopt(req->sdev_fd);
    req->sdev_fd = -1;
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
        .origin = req->origin,
        .ignore_sigint = req->ignore_sigint,
    };
    mp__child_main(&spec);
}

/* ---- the spawn role ------------------------------------------------------ */

_Noreturn void mp__spawn_serve(int sock)
{
    mp__request req;
    int rc = mp__request_recv(sock, &req);
    mp__close(sock);
    if (rc < 0)
        _exit(127);
    mp__request_run(&req);
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

int mp__env_take_fd(const char *name, mp__env_fd_kind kind)
{
    const char *v = getenv(name);
    if (!v)
        return -1;
    char *end;
    long fd = strtol(v, &end, 10);
    unsetenv(name);
    if (*end != '\0' || fd < 0 || fd > INT_MAX)
        return -1;
    struct stat st;
    if (fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode))
        return -1;
    if (kind == MP__ENV_LISTENER) {
        int acc = 0;
        socklen_t len = sizeof acc;
        if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0 || !acc)
            return -1;
    }
    /* The launcher cleared close-on-exec so that the descriptor survived
     * exec; set it again, as on every descriptor of the library. */
    (void)mp__set_cloexec((int)fd, true);
    return (int)fd;
}
