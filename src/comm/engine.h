/*
 * engine.h - the seam between the comm API (comm.c) and the engines that
 * carry it out: the communicator object, the versioned table of operations
 * an engine fills, the host table an engine loaded at run time calls back
 * through, and the engine-independent parts every engine may reuse: the
 * types and reduction kernels (ops.c) and generic collective algorithms
 * over point to point (generic.c).  Never installed.
 *
 * DESIGN
 * An engine is a `const mp__comm_ops` table, as Open MPI's collective
 * components and nng's transports are: one slot per operation.  comm.c
 * checks every argument once, turns the timeout into a deadline, and calls
 * the slot; an empty (NULL) collective slot falls back to the generic
 * algorithm of the same name, built from the engine's own send, recv and
 * sendrecv.  So an engine starts with point to point alone and replaces
 * collectives one at a time where it knows better (the local engine's
 * barrier, bcast, reduce and allreduce work in shared memory; an MPI engine
 * maps each to its MPI call).
 *
 * Versions.  The table starts with its version and its size as the engine
 * was compiled.  comm.c accepts a table whose version is
 * MP__COMM_OPS_VERSION and reads only the slots that lie within its size,
 * so slots added at the end later are empty for an older engine, never
 * garbage.  A change to an existing slot's meaning bumps the version, and
 * an engine built for another version is refused with a log line.
 *
 * Engines loaded at run time (the MPI engine, libmproc_mpi.so, loaded when
 * the program runs under mpiexec) cannot reach libmproc's hidden internal
 * symbols, so they get what they need through mp__comm_host, passed to
 * their entry point: futures, types, reduction kernels, user operations.
 *
 * Internal tags.  Generic algorithms send on the communicator they serve,
 * with negative tags below MP_ANY_TAG, which no user receive can match.
 * An engine must carry tags down to -64 (an MPI engine maps them above its
 * users' tag range, or onto a duplicate communicator).
 */
#ifndef MPROC_COMM_ENGINE_H
#define MPROC_COMM_ENGINE_H

#include "base.h"
#include "future.h"

#define MP__COMM_MAGIC        0x6d70636du /* "mpcm" */
#define MP__COMM_OPS_VERSION  1u
#define MP__COMM_HOST_VERSION 1u

/* Capabilities an engine announces in mp__comm_ops.caps. */
enum {
    /* fork() after the engine started is safe: the process and pool
     * modules may fork children (Open MPI forbids it after MPI_Init). */
    MP__COMM_CAP_FORK = 1u << 0,
    /* mp_run may start ranks of this engine in this process's children. */
    MP__COMM_CAP_RUN = 1u << 1
};

/* User operations (mp_op_new) are MP__OP_USER_BASE + a slot, 0 ..
 * MP__OP_USER_MAX - 1 (ops.c); the MPI engine has a trampoline per slot. */
#define MP__OP_USER_BASE 1024
#define MP__OP_USER_MAX  64

/* Tags the generic algorithms use (all < MP_ANY_TAG). */
enum {
    MP__TAG_BARRIER = -2,
    MP__TAG_BCAST = -3,
    MP__TAG_SCATTER = -4,
    MP__TAG_GATHER = -5,
    MP__TAG_ALLGATHER = -6,
    MP__TAG_ALLTOALL = -7,
    MP__TAG_REDUCE = -8,
    MP__TAG_SCAN = -9,
    MP__TAG_SPLIT = -10,
    MP__TAG_THREADED = -11, /* never sent: see mp__comm_ops.threaded */
    MP__TAG_MIN = -64
};

typedef struct mp__comm_ops mp__comm_ops;

/* A communicator: what comm.c knows of it.  The engine keeps its own state
 * behind impl. */
struct mp_comm {
    uint32_t magic; /* MP__COMM_MAGIC while valid, 0 once freed */
    uint32_t epoch; /* the world it belongs to (a forked rank joins anew) */
    int rank, size;
    bool is_world;
    const mp__comm_ops *ops;
    void *impl;
};

/*
 * The operations of an engine.  Deadlines are absolute CLOCK_MONOTONIC ns
 * (MP__NO_DEADLINE: none); comm.c has checked every argument (ranks in
 * range, buffers non-NULL where a size is nonzero, types and ops valid,
 * sizes that fit), so slots check only what they read from elsewhere
 * (shared memory, the wire).  Sources and destinations are ranks of c.
 */
struct mp__comm_ops {
    uint32_t version; /* MP__COMM_OPS_VERSION */
    uint32_t size;    /* sizeof(mp__comm_ops) as the engine was built */
    const char *name;
    uint32_t caps; /* MP__COMM_CAP_* */

    /* Joins the world: fills w->rank, w->size and w->impl.  Returns 0 or
     * an error. */
    int (*world_init)(mp_comm *w);
    /* Leaves it (mp_comm_finalize, or exit). */
    void (*world_fini)(mp_comm *w);
    /* Ends every rank with code; must not return. */
    void (*abort)(mp_comm *c, int code);

    /* New communicators: fill out->rank, out->size, out->impl (a split
     * leaves out->impl NULL for MP_UNDEFINED).  free releases impl. */
    int (*dup)(mp_comm *c, mp_comm *out, int64_t deadline);
    int (*split)(mp_comm *c, int color, int key, mp_comm *out, int64_t deadline);
    void (*free)(mp_comm *c);
    /* A collective failed on this rank part-way (a timeout): make every
     * rank's pending and later collectives on c return MP_EABANDONED. */
    void (*abandon)(mp_comm *c);

    /* Point to point (all required). */
    int (*send)(mp_comm *c, const void *buf, size_t len, int dest, int tag, int64_t deadline);
    int (*recv)(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_comm_status *st,
                int64_t deadline);
    int (*sendrecv)(mp_comm *c, const void *sbuf, size_t slen, int dest, int stag, void *rbuf,
                    size_t rcap, int src, int rtag, mp_comm_status *st, int64_t deadline);
    int (*isend)(mp_comm *c, const void *buf, size_t len, int dest, int tag, mp_future **out);
    int (*irecv)(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_future **out);
    int (*probe)(mp_comm *c, int src, int tag, mp_comm_status *st, int64_t deadline);

    /* Collectives: NULL falls back to the generic algorithm. */
    int (*barrier)(mp_comm *c, int64_t deadline);
    int (*bcast)(mp_comm *c, void *buf, size_t len, int root, int64_t deadline);
    int (*scatter)(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
                   int64_t deadline);
    int (*scatterv)(mp_comm *c, const void *send, const size_t *counts, const size_t *displs,
                    void *recv, size_t recv_count, mp_type type, int root, int64_t deadline);
    int (*gather)(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
                  int64_t deadline);
    int (*gatherv)(mp_comm *c, const void *send, size_t send_count, void *recv,
                   const size_t *counts, const size_t *displs, mp_type type, int root,
                   int64_t deadline);
    int (*allgather)(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                     int64_t deadline);
    int (*allgatherv)(mp_comm *c, const void *send, size_t send_count, void *recv,
                      const size_t *counts, const size_t *displs, mp_type type, int64_t deadline);
    int (*alltoall)(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                    int64_t deadline);
    int (*reduce)(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                  int root, int64_t deadline);
    int (*allreduce)(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                     int64_t deadline);
    int (*scan)(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                int64_t deadline);

    /* Several threads will call from now on (mp__comm_threaded): from the
     * return on, every call of the engine must be safe while another
     * thread is in another call - each takes the engine's lock - and it
     * may not skip that lock any more.  Called from the one thread that
     * calls the engine so far, before the others start.  Returns 0, or
     * MP_ENOTSUP when the engine cannot serve several threads (MPI
     * initialized by the program with a thread level below
     * MPI_THREAD_SERIALIZED).  Idempotent.
     * NULL - an engine built before this slot, or one with nothing of its
     * own to do: mp__comm_threaded switches it the way such engines
     * switch to their lock, by starting their progress thread (an irecv
     * nothing matches, on MP__TAG_THREADED, cancelled at once).  The
     * local engine leaves it NULL: its progress thread is what turns its
     * lock on. */
    int (*threaded)(mp_comm *c);
};

/* The slot field of ops, or NULL when the engine's table is older than
 * the field (see "Versions"). */
#define MP__COMM_SLOT(ops, field) \
    (offsetof(mp__comm_ops, field) + sizeof((ops)->field) <= (ops)->size ? (ops)->field : NULL)

/* What libmproc lends an engine loaded at run time (see DESIGN). */
typedef struct mp__comm_host {
    uint32_t version; /* MP__COMM_HOST_VERSION */
    uint32_t size;    /* sizeof(mp__comm_host) */
    mp_future *(*future_new)(const mp__future_ops *ops, void *owner);
    mp_future *(*future_new_failed)(int status, const char *report);
    void (*future_finish)(mp_future *f, int status, void *result, size_t len, int task_error,
                          int exitcode, char *report, long long failed_index);
    int (*type_size)(mp_type type, size_t *size);
    int (*op_check)(mp_op op, mp_type type);
    void (*op_apply)(mp_op op, mp_type type, const void *in, void *inout, size_t count);
    int (*op_user)(mp_op op, mp_op_fn *fn, void **ctx, bool *commute);
} mp__comm_host;

/* The entry point a run-time engine exports under MP__COMM_ENGINE_ENTRY:
 * given the host table, its operations table (NULL when it cannot run). */
typedef const mp__comm_ops *(*mp__comm_engine_fn)(const mp__comm_host *host);
#define MP__COMM_ENGINE_ENTRY "mp__comm_engine"

/* ---- comm.c ----------------------------------------------------------------- */

/* (Whether fork is allowed under the engine in use: fork_guard.h.) */

/* Several threads will call c's engine from now on (a pool whose workers
 * are ranks: its own thread and the program's).  Call it from the only
 * thread that has called the engine so far, before any other does; it
 * holds for every communicator of the world.  Returns 0, MP_ENOTSUP when
 * the engine cannot serve several threads (the reason is logged and in
 * mp_last_error_detail), or an error of c's checks.  See
 * mp__comm_ops.threaded. */
int mp__comm_threaded(mp_comm *c);

/* In a child forked by mp_run: makes this process rank `rank` of the local
 * world whose segment the child inherited mapped at base.  Returns 0 and
 * the world in *out, or an error. */
int mp__comm_enter_forked(void *base, size_t size, int rank, mp_comm **out);

/* ---- types and reductions (ops.c) ------------------------------------------ */

/* The size of one element of type, including the value-index pairs.
 * Returns 0, or MP_EINVAL for an invalid type. */
int mp__comm_type_size(mp_type type, size_t *size);

/* Whether op applies to type: 0, or MP_EINVAL. */
int mp__op_check(mp_op op, mp_type type);

/* inout[i] = in[i] op inout[i] for count elements (op and type checked). */
void mp__op_apply(mp_op op, mp_type type, const void *in, void *inout, size_t count);

/* A user operation's parts.  Returns 0, or MP_EINVAL when op is not a
 * live user operation. */
int mp__op_user(mp_op op, mp_op_fn *fn, void **ctx, bool *commute);

/* ---- generic algorithms over point to point (generic.c) --------------------- */
/* Same contracts as the slots they stand in for. */

int mp__coll_barrier(mp_comm *c, int64_t deadline);
int mp__coll_bcast(mp_comm *c, void *buf, size_t len, int root, int64_t deadline);
int mp__coll_scatter(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
                     int64_t deadline);
int mp__coll_scatterv(mp_comm *c, const void *send, const size_t *counts, const size_t *displs,
                      void *recv, size_t recv_count, mp_type type, int root, int64_t deadline);
int mp__coll_gather(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
                    int64_t deadline);
int mp__coll_gatherv(mp_comm *c, const void *send, size_t send_count, void *recv,
                     const size_t *counts, const size_t *displs, mp_type type, int root,
                     int64_t deadline);
int mp__coll_allgather(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                       int64_t deadline);
int mp__coll_allgatherv(mp_comm *c, const void *send, size_t send_count, void *recv,
                        const size_t *counts, const size_t *displs, mp_type type, int64_t deadline);
int mp__coll_alltoall(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                      int64_t deadline);
int mp__coll_reduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                    int root, int64_t deadline);
int mp__coll_allreduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                       mp_op op, int64_t deadline);
int mp__coll_scan(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                  int64_t deadline);

/* Sendrecv from isend + recv + wait, for engines without the slot. */
int mp__p2p_sendrecv(mp_comm *c, const void *sbuf, size_t slen, int dest, int stag, void *rbuf,
                     size_t rcap, int src, int rtag, mp_comm_status *st, int64_t deadline);

/* ---- the local engine (local_*.c) ----------------------------------------- */

extern const mp__comm_ops mp__comm_local_ops;

/* Takes what mprun put in the environment (MPROC_COMM_FD, _RANK, _SIZE) at
 * load, so that programs this process starts never see the descriptor. */
void mp__local_boot(void);

/* Whether mprun started this process as a rank. */
bool mp__local_launched(void);

/* Joins, as rank, the world whose segment a child forked by mp_run
 * inherited mapped at base (see mp__comm_enter_forked). */
int mp__local_world_forked(mp_comm *w, void *base, size_t size, int rank);

#endif /* MPROC_COMM_ENGINE_H */
