/*
 * request.h - what a process started from a clean image is asked to run
 * (request.c): the request on the wire, the environment variable that
 * hands a fresh image its socket, and the spawn role's entry point.
 */
#ifndef MP__REQUEST_H
#define MP__REQUEST_H

#include "base.h"
#include "fnref.h"

/* A request as received. */
typedef struct mp__request {
    mp__fnref fn;
    char name[MP__MAX_NAME];
    char ident[MP__MAX_NAME];
    pid_t parent; /* whose death ends the child */
    pid_t origin; /* who asked for it (the forkserver's client) */
    bool ignore_sigint;
    pid_t session;
    int log_level;
    void *arg; /* malloc'ed copy, NULL when arg_len is 0 */
    size_t arg_len;
    int report_fd; /* received descriptors, -1 when absent */
    int chan_fd;
    int log_fd;
    int sdev_fd;
    int fds[MP__MAX_FDS];
    size_t nfds;
} mp__request;

/* What a request carries, on the parent's side. */
typedef struct mp__request_out {
    mp_target_fn fn;
    const void *arg;
    size_t arg_len;
    const char *name;
    const char *ident;
    int report_fd; /* -1: none */
    int chan_fd;   /* -1: none */
    const int *fds;
    size_t nfds;
} mp__request_out;

/* Sends a request over sock, descriptors attached.  Returns 0 or -errno
 * (MP_EINVAL when the function lies in no module). */
int mp__request_send(int sock, const mp__request_out *r);

/* Receives one request.  Returns 0, MP_EOF when the peer closed, or an
 * error (nothing is leaked on error). */
int mp__request_recv(int sock, mp__request *req);

/* Releases what a received request holds (the argument copy, the
 * descriptors), in a process that does not run it. */
void mp__request_release(mp__request *req);

/* Runs a received request in this process (a fresh image, or a fork of the
 * forkserver).  Never returns. */
_Noreturn void mp__request_run(mp__request *req);

/* The spawn role (boot.c): a fresh image that reads one request from sock
 * and runs it.  Never returns. */
_Noreturn void mp__spawn_serve(int sock);

/* ---- the environment of a fresh image ----------------------------------- */

/* Builds an environment for a fresh image: the current one plus
 * NAME=fd.  Returns a malloc'ed array (free with mp__env_free) or NULL. */
char **mp__env_with(const char *name, int fd);
void mp__env_free(char **env);

/* What the descriptor an environment variable names must be. */
typedef enum mp__env_fd_kind {
    MP__ENV_SOCKET,   /* any socket */
    MP__ENV_LISTENER, /* a listening socket */
} mp__env_fd_kind;

/* The descriptor the environment variable name holds, if it is of the
 * kind asked for: made close-on-exec again, as every descriptor of the
 * library is.  The variable is removed either way, so that programs this
 * image starts do not see it.  Returns the descriptor, or -1 when the
 * variable is absent or names nothing suitable. */
int mp__env_take_fd(const char *name, mp__env_fd_kind kind);

#endif /* MP__REQUEST_H */
