/*
 * mpi_int.h - the Open MPI engine's internals: its state, the mapping of
 * mproc's communicators, tags and types onto MPI's, and the helpers its
 * three files share (mpi_world.c, mpi_p2p.c, mpi_coll.c).
 *
 * DESIGN
 * The engine is libmproc_mpi.so, loaded by comm.c under an MPI launcher.
 * It sees libmproc only through the host table (engine.h): everything it
 * uses from the library comes from there, never from libmproc's hidden
 * symbols.
 *
 * One lock.  Every MPI call the engine makes while another thread may
 * make one is made under one mutex, so MPI never sees two calls at once
 * and MPI_THREAD_SINGLE is enough (mpi_world.c: Open MPI's higher levels
 * lock every call of their own, and cost the ping-pong more than half its
 * time).  Another thread may call once the progress thread (which
 * finishes the futures of isend and irecv) exists, or once the library
 * said several threads will call (the `threaded` slot, mpi_world.c).
 * Before either, the caller's calls are the only ones (the API allows one
 * at a time), so a blocking call without a deadline - one that never
 * releases the lock part-way - skips it (mpe_enter): the ping-pong pays no
 * atomic operation of the engine's.  `locking` is set only from a call of
 * the caller's, under the lock, before any other thread exists, and never
 * goes back to false, so a call that sees it false cannot overlap any
 * other MPI call.
 *
 * Two ways to wait.  An operation without a deadline is the blocking MPI
 * call itself, made with the lock held: nothing is faster, and MPI makes
 * progress on every pending request meanwhile.  One with a deadline is the
 * nonblocking call, then MPI_Test under the lock, released between tries,
 * until it completes or the deadline passes (MPI calls take no timeouts).
 * What a timeout leaves behind is MPI's to keep: see docs/comm.md.
 *
 * Communicators.  Each mp_comm has two MPI communicators over the same
 * ranks: one for the user's tags (0 .. MPI_TAG_UB), one for the library's
 * own (the negative tags of engine.h, sent as their negation, and the
 * notice that a rank abandoned the collectives).  So MP_ANY_TAG is
 * MPI_ANY_TAG on the first one and never sees the library's messages.
 * They are made with MPI_Comm_create_group, never MPI_Comm_dup or
 * MPI_Comm_split: in Open MPI 4.1 those agree on the new context id with
 * a nonblocking allreduce on the parent, which registers the nonblocking
 * collectives' progress function for as long as the parent lives - the
 * world's for the whole run - and every poll of every wait then calls it
 * (a tenth of a waiting rank's samples, and of the broadcast loop's
 * rate).  MPI_Comm_create_group agrees with point-to-point messages among
 * the members instead, on the parent with a tag of ours (MPE_TAG_CREATE):
 * the world's internal communicator is made from MPI_COMM_WORLD, its user
 * one from that, and a dup's or a split's from the parent's internal
 * communicator, which carries no receive of any tag.  When the engine
 * initialized MPI itself, the world's user communicator is MPI_COMM_WORLD
 * itself: no other code of the program can have messages there (it would
 * have had to initialize MPI first), and Open MPI's ob1 serves
 * MPI_COMM_WORLD faster than any communicator made later - 20 to 40 ns
 * of an 8-byte ping-pong's 230 ns hop, measured with raw MPI calls on
 * both.  A split gathers
 * every rank's color and key first (MPI_Allgather, a blocking collective,
 * which registers nothing) and makes the group of each color.
 */
#ifndef MPROC_COMM_MPI_INT_H
#define MPROC_COMM_MPI_INT_H

#include "comm/engine.h"

#include <mpi.h>

/* The tag, on a communicator's internal MPI communicator, of the notice a
 * rank sends every other when it abandons the collectives (engine.h's
 * internal tags are -2 .. -64, sent as 2 .. 64). */
#define MPE_TAG_ABANDON 1000

/* The tag MPI_Comm_create_group agrees on a new communicator with, on
 * its parent (mpi_world.c). */
#define MPE_TAG_CREATE 1001

/* Messages (mpi_p2p.c).  One of up to MPE_SMALL bytes travels as one MPI
 * message of its bytes.  A longer one travels as two: its *head*, exactly
 * MPE_HEAD bytes on its own tag - its first MPE_HEAD_DATA bytes, then an
 * mtrail - and its *body*, the rest, on the internal communicator with
 * the tag the trailer names (MPE_TAG_BODY and up).  So no message on a
 * user or library tag is longer than MPE_HEAD bytes, and a receive posted
 * with room for MPE_HEAD bytes never truncates one. */
#define MPE_HEAD      4032
#define MPE_SMALL     (MPE_HEAD - 1)
#define MPE_TRAIL_MAG 0x6d706864u /* "mphd" */
typedef struct mtrail {
    uint64_t len; /* the whole message's length, > MPE_SMALL */
    int32_t btag; /* its body's tag on the internal communicator */
    uint32_t magic;
} mtrail;
#define MPE_HEAD_DATA (MPE_HEAD - (int)sizeof(mtrail))
#define MPE_TAG_BODY  2048

/* A message received, or whose head was, that a receive could not take
 * (longer than its buffer, or its body did not come before the deadline):
 * held, first in line, for a later receive (mpi_p2p.c). */
typedef struct mheld {
    struct mheld *next;
    MPI_Comm comm; /* the MPI communicator it came on (user or lib) */
    int source, tag;
    size_t len;   /* the message's length */
    int btag;     /* its body's tag, or -1: data holds all of it */
    size_t ndata; /* bytes in data: len, or MPE_HEAD_DATA */
    unsigned char data[];
} mheld;

/* A communicator's engine part (mp_comm.impl). */
typedef struct mcomm {
    MPI_Comm user; /* user tags */
    MPI_Comm lib;  /* the library's tags and notices, and bodies */
    bool abandoned;
    mheld *held;   /* in the order they were taken from MPI */
    uint32_t *seq; /* per destination: bodies sent, for their tags */
} mcomm;

/* Where a receive request is (mreq.stage). */
enum { MPE_R_HEAD, MPE_R_BODY };

/* A request with a future (isend, irecv), or an orphan: a request a
 * timed-out call left in flight, kept until MPI completes it. */
typedef struct mreq {
    struct mreq *next;
    MPI_Request rq;
    mp_future *fut; /* NULL for an orphan */
    bool recv;
    bool lib_tag;  /* received on the internal communicator */
    void *owned;   /* freed when it completes (an orphan's copy) */
    mcomm *holder; /* comm kept alive by the request, or NULL */
    /* A receive: the caller's buffer, the bounce buffer MPI writes the
     * first message into when buf is shorter than MPE_HEAD, the stage it
     * is at, and what it got (len, source, MPI tag). */
    unsigned char *buf, *bounce;
    size_t cap, len;
    int stage, source, tag;
    MPI_Comm lib; /* where its body comes from */
} mreq;

/* The engine's state: one per process. */
typedef struct mpe_state {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    const mp__comm_host *host;
    bool inited_mpi; /* we called MPI_Init (else the program did) */
    bool closed;
    int tag_ub;
    mreq *pending;  /* futures' requests and orphans */
    int level_got;  /* the thread level MPI gives */
    int level_want; /* what we asked (when inited_mpi) */
    pthread_t thread;
    bool thread_on;       /* the progress thread was started */
    _Atomic bool locking; /* every call takes the lock (see "One lock") */
    bool stop;
} mpe_state;

extern mpe_state mpe;

/* Takes the lock for a call with deadline, unless it may skip it (no
 * deadline and no progress thread: see "One lock").  Returns whether it
 * took it, for mpe_leave. */
static inline bool mpe_enter(int64_t deadline)
{
    if (deadline == MP__NO_DEADLINE && !atomic_load_explicit(&mpe.locking, memory_order_acquire))
        return false;
    pthread_mutex_lock(&mpe.lock);
    return true;
}

static inline void mpe_leave(bool locked)
{
    if (locked)
        pthread_mutex_unlock(&mpe.lock);
}

/* ---- mpi_world.c ---------------------------------------------------------------- */

/* An MPI return code as an MP_E* code. */
int mpe_err(int mpi_rc);

/* The MPI datatype of an mp_type for moving data, or MPI_DATATYPE_NULL. */
MPI_Datatype mpe_type(mp_type t);

/* The mp_type of an MPI datatype mpe_type returned (for user ops). */
mp_type mpe_type_back(MPI_Datatype dt);

/* The MPI communicator and tag a tag of c travels on. */
static inline MPI_Comm mpe_comm_of(const mp_comm *c, int tag, int *mtag)
{
    const mcomm *m = c->impl;
    if (tag >= 0) {
        *mtag = tag;
        return m->user;
    }
    if (tag == MP_ANY_TAG) {
        *mtag = MPI_ANY_TAG;
        return m->user;
    }
    *mtag = -tag;
    return m->lib;
}

/* Waits for rq until it completes or deadline passes, trying MPI_Test
 * with the lock held and releasing it between tries.  Called and returns
 * with the lock held.  If abandon_of is not NULL, a notice that another
 * rank abandoned its collectives ends the wait with MP_EABANDONED.
 * Returns 0, MP_ETIMEDOUT (rq still in flight) or an error. */
int mpe_wait(MPI_Request *rq, MPI_Status *st, int64_t deadline, mp_comm *abandon_of);

/* Hands a request still in flight to the progress thread, which completes
 * it (and frees owned) whenever MPI does.  Lock held. */
void mpe_orphan(MPI_Request rq, void *owned);

/* Adds a request with a future; starts the progress thread if needed.
 * Lock held.  Returns 0 or an error (the request is then untouched). */
int mpe_pending_add(mreq *r);

/* Whether another rank said it abandoned c's collectives (sets
 * m->abandoned).  Lock held. */
bool mpe_abandon_seen(mp_comm *c);

/* ---- mpi_p2p.c ------------------------------------------------------------------ */

int mpe_send(mp_comm *c, const void *buf, size_t len, int dest, int tag, int64_t deadline);
int mpe_recv(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_comm_status *st,
             int64_t deadline);
int mpe_sendrecv(mp_comm *c, const void *sbuf, size_t slen, int dest, int stag, void *rbuf,
                 size_t rcap, int src, int rtag, mp_comm_status *st, int64_t deadline);
int mpe_isend(mp_comm *c, const void *buf, size_t len, int dest, int tag, mp_future **out);
int mpe_irecv(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_future **out);
int mpe_probe(mp_comm *c, int src, int tag, mp_comm_status *st, int64_t deadline);

/* Receives and drops the messages m holds (the communicator is freed).
 * Lock held. */
void mpe_held_drop(mcomm *m);

/* A receive request MPI completed with st and rc: a whole message, or a
 * head whose body it now receives (r->rq is then that receive).  Lock
 * held.  Returns whether r is done, with its outcome in *rc. */
bool mpe_recv_step(mreq *r, const MPI_Status *st, int *rc);

/* Finishes the future of a request that is done, with rc.  Called
 * without the lock. */
void mpe_req_done(mreq *r, int rc);

extern const mp__future_ops mpe_future_ops;

/* ---- mpi_coll.c ------------------------------------------------------------------ */

int mpe_barrier(mp_comm *c, int64_t deadline);
int mpe_bcast(mp_comm *c, void *buf, size_t len, int root, int64_t deadline);
int mpe_scatter(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
                int64_t deadline);
int mpe_scatterv(mp_comm *c, const void *send, const size_t *counts, const size_t *displs,
                 void *recv, size_t recv_count, mp_type type, int root, int64_t deadline);
int mpe_gather(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
               int64_t deadline);
int mpe_gatherv(mp_comm *c, const void *send, size_t send_count, void *recv, const size_t *counts,
                const size_t *displs, mp_type type, int root, int64_t deadline);
int mpe_allgather(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                  int64_t deadline);
int mpe_allgatherv(mp_comm *c, const void *send, size_t send_count, void *recv,
                   const size_t *counts, const size_t *displs, mp_type type, int64_t deadline);
int mpe_alltoall(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                 int64_t deadline);
int mpe_reduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
               int root, int64_t deadline);
int mpe_allreduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                  int64_t deadline);
int mpe_scan(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
             int64_t deadline);

#endif /* MPROC_COMM_MPI_INT_H */
