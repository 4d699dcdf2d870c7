/*
 * forkserverd.h - the forkserver process (forkserverd.c) and what it says
 * to its clients (forkserver.c) on a child's channel.
 */
#ifndef MP__FORKSERVERD_H
#define MP__FORKSERVERD_H

#include "base.h"

/* Messages on a child's channel, server to client: first STARTED, with
 * value the child's pid (or a negative error when fork failed) and a pidfd
 * attached; later ENDED, with value the child's wait status. */
enum { MP__FS_STARTED = 1, MP__FS_ENDED = 2 };

typedef struct mp__fs_msg {
    int32_t kind;
    int32_t value;
} mp__fs_msg;

/* The forkserver role (boot.c): serves requests read from sock, forking one
 * child for each, until the client goes.  Never returns. */
_Noreturn void mp__forkserver_serve(int sock);

#endif /* MP__FORKSERVERD_H */
