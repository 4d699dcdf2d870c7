/**
 * @file
 * mproc/comm.h - ranks and collectives (mpi4py's MPI.COMM_WORLD, for C).
 *
 * Included by <mproc.h>.
 *
 * A program written for ranks runs as N copies at once - every line on every
 * rank, as under mpiexec - that tell themselves apart by their rank, 0 to
 * N-1, and exchange data by messages and collective operations:
 *
 *     mp_comm *world;                         Python (mpi4py):
 *     mp_comm_world(&world);                  comm = MPI.COMM_WORLD
 *     int rank = mp_comm_rank(world);         rank = comm.Get_rank()
 *     mp_comm_bcast(world, buf, len, 0, MP_FOREVER);   comm.Bcast(buf, root=0)
 *
 * Starting ranks.  Three ways, one program:
 *   mprun -n 4 prog args...   the launcher installed with the library starts
 *                             4 copies of prog on this machine, connected
 *                             through shared memory (the local engine);
 *   mp_run(4, fn, arg)        the same inside one program: 4 forked ranks
 *                             each run fn, the caller waits for them;
 *   mpiexec -n 4 prog args... under an MPI launcher the same calls go to MPI
 *                             (the MPI engine, a separate library loaded at
 *                             run time when it is installed).
 * A program started any other way is a world of one rank.
 *
 * Messages are bytes (point to point, bcast); the other collectives work on
 * arrays of count elements of an mp_type (mproc/value.h).  Tags are 0 to
 * MP_TAG_MAX.  Messages between one pair of ranks on one communicator
 * arrive in the order they were sent; a receive may name MP_ANY_SOURCE and
 * MP_ANY_TAG.  Every rank of a communicator must call the same collectives
 * in the same order with matching sizes, as in MPI.
 *
 * Timeouts.  Every call that can block takes a timeout in seconds
 * (MP_FOREVER waits without limit, 0 tries once).  A point-to-point call
 * that times out has done nothing: the message was not sent, or nothing was
 * received.  A collective that times out on one rank cannot be taken back
 * from the others: the communicator's collectives are broken from then on,
 * and every rank's pending and later collectives on it return
 * MP_EABANDONED (point-to-point calls on it still work).
 *
 * Failures.  When a rank dies (crash, kill, exit without finishing its
 * part), every other rank's pending or next call that needs it returns
 * MP_EPEERDEAD within a bounded time, never hangs: the launcher marks the
 * dead rank at once, and a waiting rank also checks its peers every few
 * milliseconds on its own.  mprun then stops the other ranks (unless told
 * to keep going), names the dead rank and prints its report.
 *
 * Threads.  A rank may call from any thread, one thread at a time (MPI's
 * THREAD_SERIALIZED): the calls of a rank share one matching engine, which
 * they do not lock against each other.  Futures of isend and irecv may be
 * waited for from any thread; the engine then progresses them in a thread
 * of its own, started at the first request that does not finish at once.
 *
 * After fork.  A process forked from a rank is not a rank: calls there
 * return MP_ESTATE (a fork of a rank may call mp_run to make a world of its
 * own).
 *
 * Errors common to every call: MP_EINVAL for a NULL or freed communicator,
 * a rank or root out of range, a negative tag (other than MP_ANY_TAG where
 * allowed), a NULL buffer with a nonzero size, an invalid type or an
 * operation the type does not support, a NaN timeout; MP_EOVERFLOW when
 * count times the element size does not fit; MP_ETIMEDOUT; MP_EPEERDEAD;
 * MP_EABANDONED for collectives; MP_ESTATE in a forked copy of a rank.
 */
#ifndef MPROC_COMM_H
#define MPROC_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "future.h"
#include "value.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A communicator: a group of ranks with its own message space.  The world
 * comes from mp_comm_world() and belongs to the library; others come from
 * mp_comm_dup() or mp_comm_split() and are freed with mp_comm_free().
 * Opaque. */
typedef struct mp_comm mp_comm;

/* C11's _Noreturn is no C++ keyword: the attribute serves both. */
#if defined(__GNUC__)
#define MP__NORETURN __attribute__((noreturn))
#else
#define MP__NORETURN
#endif

/** The source of a receive or probe that accepts a message from any rank. */
#define MP_ANY_SOURCE (-1)
/** The tag of a receive or probe that accepts a message with any tag. */
#define MP_ANY_TAG (-1)
/** The largest tag (tags are 0 .. MP_TAG_MAX). */
#define MP_TAG_MAX 0x7fffffff
/** mp_comm_split: a color that puts the caller in no new communicator. */
#define MP_UNDEFINED (-32766)

/** What arrived, filled in by a receive or probe. */
typedef struct mp_comm_status {
    int source;   /**< the sender's rank in the communicator */
    int tag;      /**< the tag it was sent with */
    size_t count; /**< the message's size in bytes */
} mp_comm_status;

/* ---- the world, ranks --------------------------------------------------- */

/**
 * The communicator of every rank of this program (MPI_COMM_WORLD), in
 * *out.  The first call joins the world this process was started in: as a
 * rank of mprun or mp_run, under an MPI launcher (MPI_Init happens here),
 * or else a world of one.  Later calls return the same object, which the
 * library owns (never free it).  Does not block.  Returns 0; MP_ENOTSUP
 * when the program runs under an MPI launcher but the MPI engine cannot be
 * loaded (the log says why); MP_EPROTO when the launcher's shared memory is
 * not what it should be; MP_ESTATE in a forked copy of a rank; -errno.
 * Thread-safe.
 */
MP_EXTERN int mp_comm_world(mp_comm **out);

/**
 * Leaves the world: tells the other ranks this one is done, stops the
 * engine's thread if it started one and, under MPI, calls MPI_Finalize.
 * Called by the library at exit (and when an mp_run rank's function
 * returns), so programs need not call it; after it, comm calls return
 * MP_ECLOSED.  Returns 0.  Does not block beyond joining that thread.
 */
MP_EXTERN int mp_comm_finalize(void);

/** The caller's rank in c (0 .. size-1), or MP_EINVAL for an invalid c.
 * Never blocks. */
MP_EXTERN int mp_comm_rank(const mp_comm *c);

/** The number of ranks in c, or MP_EINVAL for an invalid c.  Never
 * blocks. */
MP_EXTERN int mp_comm_size(const mp_comm *c);

/** The engine behind c: "local" (shared memory, mprun, mp_run, or a world
 * of one) or "mpi".  NULL for an invalid communicator. */
MP_EXTERN const char *mp_comm_engine(const mp_comm *c);

/**
 * The name of the machine the caller runs on (MPI_Get_processor_name), as
 * a NUL-terminated string in buf.  Returns its length, or MP_EINVAL for a
 * NULL buf, MP_ERANGE when cap is too small.
 */
MP_EXTERN int mp_comm_processor_name(char *buf, size_t cap);

/**
 * A new communicator with the same ranks as c but its own message space:
 * messages and collectives on one never match the other's (for a library
 * that must not see its caller's messages).  Collective: every rank of c
 * calls it.  Returns 0 and *out, to be freed with mp_comm_free(); common
 * errors; MP_ENOMEM.
 */
MP_EXTERN int mp_comm_dup(mp_comm *c, double timeout, mp_comm **out);

/**
 * Splits c into disjoint communicators, one per color: the ranks that pass
 * the same color (>= 0) form one, ordered by key, ties by their rank in c.
 * A rank passing MP_UNDEFINED gets *out = NULL.  Collective over c.
 * Returns 0, common errors (MP_EINVAL for a negative color other than
 * MP_UNDEFINED), MP_ENOMEM.
 */
MP_EXTERN int mp_comm_split(mp_comm *c, int color, int key, double timeout, mp_comm **out);

/**
 * Frees a communicator made by dup or split.  Never waits.  The world and
 * NULL are ignored.  Requests still pending on it (isend/irecv) keep what
 * they need alive and finish as they would have.
 */
MP_EXTERN void mp_comm_free(mp_comm *c);

/**
 * Ends every rank of the program at once (MPI_Abort): under a launcher the
 * others are killed and the launcher exits with status code & 255 (1 when
 * that is 0); in a world of one the process exits with it.  Never returns.
 */
MP_EXTERN void mp_comm_abort(mp_comm *c, int code) MP__NORETURN;

/* ---- point to point --------------------------------------------------------- */

/**
 * Sends len bytes at buf to rank dest of c with tag.  Returns once buf may
 * be reused: at once for small messages (copied into a ring shared with
 * dest), or once dest has received a large one (copied straight from buf,
 * a single copy).  Sending to oneself works for messages that fit the ring
 * (and for any size with mp_comm_isend + mp_comm_recv).  Returns 0; common
 * errors.
 */
MP_EXTERN int mp_comm_send(mp_comm *c, const void *buf, size_t len, int dest, int tag,
                           double timeout);

/**
 * Receives the next message from source (or MP_ANY_SOURCE) with tag (or
 * MP_ANY_TAG) into buf, at most cap bytes; st (may be NULL) says what came.
 * Returns 0; MP_EMSGSIZE when the message is longer than cap - nothing is
 * received, the message stays first in line and st->count gives its size;
 * common errors.
 */
MP_EXTERN int mp_comm_recv(mp_comm *c, void *buf, size_t cap, int source, int tag,
                           mp_comm_status *st, double timeout);

/**
 * Sends and receives in one call, without the deadlock two ranks would
 * meet sending large messages to each other first (MPI_Sendrecv).  The two
 * buffers must not overlap.  Returns 0 once both are done, or the first
 * error (a timeout may leave the send done and the receive not).
 */
MP_EXTERN int mp_comm_sendrecv(mp_comm *c, const void *sbuf, size_t slen, int dest, int stag,
                               void *rbuf, size_t rcap, int source, int rtag, mp_comm_status *st,
                               double timeout);

/**
 * Starts a send and returns a future in *out that finishes once buf may be
 * reused (status 0, no result bytes), or with an error.  buf must stay
 * valid and unchanged until then.  mp_wait, mp_as_completed and
 * mp_future_get work on it; mp_future_cancel withdraws a send that no
 * receive has matched yet.  Messages keep their order with the caller's
 * other sends to the same rank.  Does not block.  Returns 0; common errors;
 * MP_ENOMEM.  Free the future with mp_future_free (freeing does not cancel:
 * keep buf valid until it finishes).
 */
MP_EXTERN int mp_comm_isend(mp_comm *c, const void *buf, size_t len, int dest, int tag,
                            mp_future **out);

/**
 * Starts a receive into buf (at most cap bytes) and returns a future that
 * finishes once a message is in buf, with an mp_comm_status as its result
 * bytes (mp_future_get(f, &st, sizeof st, NULL, timeout)), or with an error
 * (MP_EMSGSIZE: the message was longer than cap and stays queued).  buf
 * must stay valid until then.  Receives match messages in the order they
 * were started.  mp_future_cancel withdraws it if nothing matched yet.
 * Does not block.  Returns 0; common errors; MP_ENOMEM.
 */
MP_EXTERN int mp_comm_irecv(mp_comm *c, void *buf, size_t cap, int source, int tag,
                            mp_future **out);

/**
 * Waits until a message from source with tag (either may be ANY) can be
 * received, and fills st without receiving it.  With timeout 0 it only
 * looks (MPI_Iprobe): MP_ETIMEDOUT when nothing is there.  Returns 0;
 * common errors.
 */
MP_EXTERN int mp_comm_probe(mp_comm *c, int source, int tag, mp_comm_status *st, double timeout);

/* ---- collectives -------------------------------------------------------------- */

/** Reduction operations.  min, max, sum and prod work on every type but the
 * pairs; the logical ones on the integer types (nonzero is true, results
 * are 0 or 1); the bitwise ones on the integer types; minloc and maxloc on
 * the value-index pairs (the smallest or largest value, and among equal
 * values the smallest index).  mp_op_new() makes further ones. */
typedef enum mp_op {
    MP_OP_SUM = 1, /**< sum */
    MP_OP_PROD,    /**< product */
    MP_OP_MIN,     /**< minimum */
    MP_OP_MAX,     /**< maximum */
    MP_OP_MINLOC,  /**< smallest value and its index (value-index pairs) */
    MP_OP_MAXLOC,  /**< largest value and its index (value-index pairs) */
    MP_OP_LAND,    /**< logical and (integer types) */
    MP_OP_LOR,     /**< logical or (integer types) */
    MP_OP_LXOR,    /**< logical exclusive or (integer types) */
    MP_OP_BAND,    /**< bitwise and (integer types) */
    MP_OP_BOR,     /**< bitwise or (integer types) */
    MP_OP_BXOR     /**< bitwise exclusive or (integer types) */
} mp_op;

/* The value-index pairs for MP_OP_MINLOC / MP_OP_MAXLOC, laid out as MPI's
 * MPI_FLOAT_INT, MPI_DOUBLE_INT, MPI_LONG_INT, MPI_2INT, MPI_SHORT_INT. */
/** A float and an index, for MP_OP_MINLOC / MP_OP_MAXLOC (MPI_FLOAT_INT). */
typedef struct mp_float_int {
    float value; /**< the value compared */
    int index;   /**< its index, typically the rank it came from */
} mp_float_int;
/** A double and an index, for MP_OP_MINLOC / MP_OP_MAXLOC (MPI_DOUBLE_INT). */
typedef struct mp_double_int {
    double value; /**< the value compared */
    int index;    /**< its index, typically the rank it came from */
} mp_double_int;
/** A long and an index, for MP_OP_MINLOC / MP_OP_MAXLOC (MPI_LONG_INT). */
typedef struct mp_long_int {
    long value; /**< the value compared */
    int index;  /**< its index, typically the rank it came from */
} mp_long_int;
/** An int and an index, for MP_OP_MINLOC / MP_OP_MAXLOC (MPI_2INT). */
typedef struct mp_2int {
    int value; /**< the value compared */
    int index; /**< its index, typically the rank it came from */
} mp_2int;
/** A short and an index, for MP_OP_MINLOC / MP_OP_MAXLOC (MPI_SHORT_INT). */
typedef struct mp_short_int {
    short value; /**< the value compared */
    int index;   /**< its index, typically the rank it came from */
} mp_short_int;

/**
 * A user operation: combines count elements, inout[i] = in[i] op inout[i],
 * where in holds the contribution of lower ranks.  It must be associative;
 * commute says whether it is commutative too (the local engine keeps rank
 * order either way).  ctx is the pointer given to mp_op_new.
 */
typedef void (*mp_op_fn)(const void *in, void *inout, size_t count, mp_type type, void *ctx);

/**
 * Makes an operation from fn, in *out, for the reduce calls.  Every rank
 * that reduces with it must make it, in the same order (ranks forked by
 * mp_run after it was made inherit it).  At most 64 live at once.  Returns
 * 0, MP_EINVAL for a NULL fn or out, MP_ENOSPC when 64 are live.
 */
MP_EXTERN int mp_op_new(mp_op_fn fn, void *ctx, bool commute, mp_op *out);

/** Frees a user operation made by mp_op_new().  Returns 0, or MP_EINVAL
 * for a built-in or unknown one. */
MP_EXTERN int mp_op_free(mp_op op);

/** Waits until every rank of c has called it.  Collective.  Returns 0;
 * common errors. */
MP_EXTERN int mp_comm_barrier(mp_comm *c, double timeout);

/** Copies len bytes at buf on root into buf on every rank.  len must be the
 * same on every rank.  Collective.  Returns 0; common errors. */
MP_EXTERN int mp_comm_bcast(mp_comm *c, void *buf, size_t len, int root, double timeout);

/**
 * Scatter: root's send holds size * count elements; rank i receives
 * elements i*count .. i*count+count-1 in recv.  send is read on root only
 * (may be NULL elsewhere).  Collective.  Returns 0; common errors.
 */
MP_EXTERN int mp_comm_scatter(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                              int root, double timeout);

/**
 * Scatterv: rank i receives counts[i] elements starting at element
 * displs[i] of root's send; recv_count (on every rank) is the room in recv
 * and must be >= counts[i] (MP_EMSGSIZE otherwise).  send, counts and
 * displs are read on root only.  Collective.  Returns 0; common errors.
 */
MP_EXTERN int mp_comm_scatterv(mp_comm *c, const void *send, const size_t *counts,
                               const size_t *displs, void *recv, size_t recv_count, mp_type type,
                               int root, double timeout);

/** Gather: the inverse of scatter; recv (size * count elements) is written
 * on root only (may be NULL elsewhere).  Collective.  Returns 0; common
 * errors. */
MP_EXTERN int mp_comm_gather(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                             int root, double timeout);

/** Gatherv: rank i's send_count elements go to displs[i] in root's recv;
 * counts[i] (root's) must equal rank i's send_count (MP_EMSGSIZE
 * otherwise).  recv, counts and displs are used on root only (may be
 * NULL elsewhere).  Collective.
 * Returns 0; common errors. */
MP_EXTERN int mp_comm_gatherv(mp_comm *c, const void *send, size_t send_count, void *recv,
                              const size_t *counts, const size_t *displs, mp_type type, int root,
                              double timeout);

/** Allgather: mp_comm_gather() whose result every rank receives (recv
 * holds size * count elements on every rank).  Collective.  Returns 0;
 * common errors. */
MP_EXTERN int mp_comm_allgather(mp_comm *c, const void *send, void *recv, size_t count,
                                mp_type type, double timeout);
/** Allgatherv: mp_comm_gatherv() whose result every rank receives; recv,
 * counts and displs are used on every rank.  Collective.  Returns 0;
 * common errors. */
MP_EXTERN int mp_comm_allgatherv(mp_comm *c, const void *send, size_t send_count, void *recv,
                                 const size_t *counts, const size_t *displs, mp_type type,
                                 double timeout);

/** Alltoall: rank i's elements j*count .. j*count+count-1 of send go to
 * rank j, which stores them at i*count in recv (send and recv each hold
 * size * count elements).  Collective.  Returns 0; common errors. */
MP_EXTERN int mp_comm_alltoall(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                               double timeout);

/**
 * Reduce: element-wise send[0] op send[1] op ... over the ranks in rank
 * order, into recv on root (recv may be NULL elsewhere).  send and recv
 * must not overlap.  Collective.  Returns 0; common errors.
 */
MP_EXTERN int mp_comm_reduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                             mp_op op, int root, double timeout);

/** Allreduce: mp_comm_reduce() whose result every rank receives.
 * Collective.  Returns 0; common errors. */
MP_EXTERN int mp_comm_allreduce(mp_comm *c, const void *send, void *recv, size_t count,
                                mp_type type, mp_op op, double timeout);

/** Scan: rank i receives in recv the reduction of ranks 0 .. i
 * (inclusive).  Collective.  Returns 0; common errors. */
MP_EXTERN int mp_comm_scan(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                           mp_op op, double timeout);

/* ---- ranks inside one program ---------------------------------------------- */

/** What a rank started by mp_run runs: its world and the argument given.
 * The return value is the rank's exit status, as for a process target
 * (0..255, or a negative MP_E* code). */
typedef int (*mp_rank_fn)(mp_comm *world, void *arg);

/** Options for mp_run_with_opts(); start from MP_RUN_OPTS_INIT. */
typedef struct mp_run_opts {
    /** false: once a rank fails (dies, or returns nonzero) the others are
     * killed at once.  true: the others run on; their calls that need the
     * failed rank return MP_EPEERDEAD. */
    bool keep_going;
    /** Seconds to wait for the ranks; then every rank is killed and the call
     * returns MP_ETIMEDOUT.  MP_FOREVER: no limit. */
    double timeout;
    /** NULL, or room for n exit codes: each rank's exit status, or -SIGNUM
     * for a rank ended by a signal (its own crash, or the kill that
     * stopped it after another rank failed). */
    int *exitcodes;
    /** Binds rank k to the k-th CPU the caller may use, when there are no
     * more ranks than CPUs (mpiexec's default, and mprun's): ranks poll for
     * each other, and hand off fastest with a CPU each.  Off by default:
     * two jobs bound at once would share their CPUs. */
    bool bind;
} mp_run_opts;

/** The default options: stop every rank once one fails, no time limit, no
 * exit codes, no CPU binding.  Initialise every mp_run_opts with it, then
 * set the fields wanted. */
#define MP_RUN_OPTS_INIT               \
    {                                  \
        false, MP_FOREVER, NULL, false \
    }

/**
 * Runs fn(world, arg) on n ranks forked from the caller, connected by
 * shared memory, and waits for them all.  The caller is not a rank; it
 * supervises: a rank that dies is marked dead at once for the others, its
 * crash report is logged, and the other ranks are stopped.  Returns 0 when
 * every rank returned 0; else the worst outcome: MP_EWORKER when a rank
 * died (a crash, or killed from outside), the error a rank returned (a
 * negative code), or the largest exit status (1..255) a rank returned.
 * Errors before any rank runs: MP_EINVAL (n < 1 or above 4096, NULL fn),
 * MP_ENOTSUP where the engine in use forbids fork (under MPI), MP_ENOMEM,
 * MP_EAGAIN.  Blocks until every rank has ended.
 */
MP_EXTERN int mp_run(int n, mp_rank_fn fn, void *arg);

/** As mp_run, with options (NULL: the defaults).  MP_ETIMEDOUT when
 * opts->timeout ran out (every rank killed).  MP_EINVAL also for a NaN
 * opts->timeout. */
MP_EXTERN int mp_run_with_opts(int n, mp_rank_fn fn, void *arg, const mp_run_opts *opts);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_COMM_H */
