/*
 * trackerd.h - the tracker process (trackerd.c) and the messages its
 * clients (tracker.c) send it.
 */
#ifndef MP__TRACKERD_H
#define MP__TRACKERD_H

#include "base.h"

#define MP__TRK_MAGIC    0x6d70746bu /* "mptk" */
#define MP__TRK_PATH_CAP 256

enum {
    MP__TRK_CREATE = 1,
    MP__TRK_ATTACH = 2,
    MP__TRK_CLOSE = 3,
    MP__TRK_UNLINK = 4,
    MP__TRK_UNLINK_ALL = 5 /* a shutdown: every segment, whoever holds it */
};

/* One request, client to tracker (a SOCK_SEQPACKET message). */
typedef struct mp__trk_msg {
    uint32_t magic;
    uint32_t op;
    uint64_t ino; /* the segment's inode, for all but CREATE */
    char path[MP__TRK_PATH_CAP];
} mp__trk_msg;

/* The answer to CREATE (with the segment's descriptor attached on
 * success), ATTACH, UNLINK and UNLINK_ALL (the number unlinked); CLOSE has
 * none. */
typedef struct mp__trk_reply {
    uint32_t magic;
    int32_t result;
} mp__trk_reply;

/* The tracker role (boot.c): serves the listening socket listen_fd until
 * the program's last process is gone.  Never returns. */
_Noreturn void mp__tracker_serve(int listen_fd);

#endif /* MP__TRACKERD_H */
