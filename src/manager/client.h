/*
 * client.h - the client side of the manager (src/manager/): a handle, the
 * handles of objects, and calls.  Never installed.
 *
 * The client side is split from the server side (src/managerd/: the
 * server, and what both sides share - the wire, the crypto, the store and
 * the execution of an operation) so that the start-up roles (boot.c) can
 * run a server without depending on the client, which depends on the
 * program's shutdown and start methods, which depend on boot.c.
 */
#ifndef MPROC_MANAGER_CLIENT_H
#define MPROC_MANAGER_CLIENT_H

#include "../managerd/mgr.h"

/* ---- the client (client.c) ------------------------------------------------- */

struct mp_manager {
    pthread_mutex_t io; /* one call at a time on the connection */
    pid_t pid;          /* the process the connection belongs to */
    mp__mconn conn;
    bool local; /* the store is mapped */
    ms_store store;
    uint32_t client_id;
    uint32_t seq;
    double rpc_timeout;
    double timeout;
    bool no_fastpath, encrypt;
    uint8_t master[MC_KEY];
    uint8_t *authkey;
    size_t authkey_len;
    char address[300];    /* what clients connect to */
    mp__maddr connect_to; /* what this handle connects to */
    /* set in the process that started the server */
    pid_t server_pid;
    int server_pidfd;
    pid_t owner_pid;
    bool detached;
    bool dead;             /* the server is known to be gone */
    mp__maddr unlink_path; /* a socket file to remove after killing it */
    bool has_unlink_path;
    struct mp__closer *closer; /* the shutdown's hold on a started server */
    struct mp_manager *next;   /* the registry of handles (fork) */
};

/* The handle of an object (every public handle type is one). */
typedef struct mp__mobj {
    mp_manager *m;
    uint32_t index, gen;
    int type;
} mp__mobj;

/* Performs rq for m, locally or through the server.  Returns rp->status
 * (rp must be initialised and is filled). */
int mp__mcall(mp_manager *m, mp__mreq *rq, mp__mrep *rp);

#endif /* MPROC_MANAGER_CLIENT_H */
