/*
 * ranks.h - a pool whose workers are ranks (mp_pool_opts.comm): the wire
 * format between the root and its worker ranks, and the entry points the
 * pool's public calls branch to.  Private to src/pool/.
 *
 * DESIGN
 * Files:
 *   ranks.c       the root (rank 0): the pool object's rank side, the
 *                 thread that talks to the workers, submission
 *   rank_serve.c  a worker rank: the serve loop inside mp_pool_new()
 *
 * Every rank of the communicator calls mp_pool_new(); each makes a
 * private duplicate of it (collective), so the pool's messages never meet
 * the program's.  The root keeps every decision (which rank runs what)
 * and all the records; a worker only answers the messages it gets, in
 * the order they come.  Messages, all between the root and one worker:
 *
 *   root -> worker  RT_TASK   an rp_task header, the function's module
 *                             path, then the ctx bytes of a map;
 *                   RT_TDATA  then the task's data (argument bytes, or a
 *                             chunk's inputs) when rp_task.data_len > 0;
 *                   RT_STOP   serve no more: answer RT_BYE and return.
 *                             Tasks that came before it and not yet run
 *                             are dropped.
 *   worker -> root  RT_RESULT an rp_result header, the failed items of a
 *                             chunk (rp_fail), the first one's message;
 *                   RT_RDATA  then its data (an apply task's result or
 *                             message, a chunk's outputs) when
 *                             rp_result.data_len > 0;
 *                   RT_BYE    the answer to RT_STOP.
 *   root -> root    RT_WAKE   a submitting thread wakes the pool's thread,
 *                             which waits for its next message.
 *
 * The initializer travels as the first task of every worker (RK_INIT, its
 * argument bytes as its data); its result says whether it succeeded.
 * Nothing that arrives is trusted: lengths, kinds and task ids are
 * checked against what was sent (MP_EPROTO otherwise).
 */
#ifndef MPROC_POOL_RANKS_H
#define MPROC_POOL_RANKS_H

#include "pool_int.h"

enum { RT_TASK = 1, RT_TDATA, RT_RESULT, RT_RDATA, RT_STOP, RT_BYE, RT_WAKE };

enum { RK_INIT = 1, RK_APPLY, RK_MAP, RK_RANGE };

#define RP_MAGIC 0x6d707270u /* "mprp" */

/* The root's function references carry a module path of at most this. */
#define RP_PATH_MAX 4096u

typedef struct rp_task {
    uint32_t magic, kind;
    uint64_t tid;               /* the root's id of this message */
    uint64_t first, count;      /* a chunk: its first item's index, and items */
    uint64_t in_size, out_size; /* a chunk: bytes per input, per output */
    uint64_t ctx_len;           /* bytes of ctx after the path */
    uint64_t data_len;          /* bytes of the RT_TDATA message after this */
    uint64_t fn_off;            /* the function's offset in its module */
    uint32_t path_len, has_fn;  /* the module's path ("" the executable) */
} rp_task;

typedef struct rp_result {
    uint32_t magic;
    int32_t status;     /* 0, MP_ETASK (the task returned nonzero), or an error */
    uint64_t tid;       /* the task's */
    int64_t task_error; /* an apply task's return value */
    uint64_t data_len;  /* bytes of the RT_RDATA message after this */
    uint64_t nfails;    /* failed items of a chunk that follow */
    uint64_t msg_len;   /* then the first failed item's message */
} rp_result;

typedef struct rp_fail {
    uint64_t index; /* in the chunk */
    int64_t code;   /* what the map function returned */
} rp_fail;

/* The longest single wait on the communicator, in seconds; waits loop.
 * Never MP_FOREVER: the MPI engine makes a wait without a deadline one
 * blocking MPI call that holds its lock throughout, and the root's other
 * threads (submitting, waking the pool's thread) would wait behind it. */
#define RP_WAIT 3600.0

/* Bytes of one message the root reads before it knows better: results
 * carry at most this many failures and message bytes in their header. */
#define RP_HDR_MAX ((size_t)64 << 20)

/* ---- rank_serve.c: a worker rank ------------------------------------------ */

/* Serves the root of dc until it says stop (0) or is gone (its error).
 * own_initarg: what the initializer gets when the root ships no bytes. */
int mp__rpool_serve(mp_comm *dc, void *own_initarg);

/* ---- ranks.c: the root ------------------------------------------------------ */

/* The futures of a rank pool. */
extern const mp__future_ops mp__rpool_future_ops;

/* mp_pool_new() with opts->comm set: checks, the duplicate, then the pool
 * (root) or the serve loop (the others, *out = NULL). */
int mp__rpool_new(const mp_pool_opts *o, mp_pool **out);

/* Submits an apply task whose future f was made with mp__rpool_future_ops;
 * errors finish f.  Takes p->lock. */
void mp__rpool_apply_submit(mp_pool *p, mp_future *f, mp_task_fn fn, size_t len,
                            mp__pool_arg_fill fill, const void *arg);

/* Submits a map for future f, or for iterator it (whose outputs it then
 * holds).  Returns 0 or an error (f is not finished then).  Takes
 * p->lock. */
int mp__rpool_map_submit(mp_pool *p, const mp_map_spec *s, mp_future *f, struct mp_imap *it);

/* An iterator of p goes away: the map stops writing to it. */
void mp__rpool_imap_detach(mp_pool *p, struct mp_imap *it);

int mp__rpool_close(mp_pool *p);
int mp__rpool_terminate(mp_pool *p);
int mp__rpool_shutdown(mp_pool *p, bool cancel_pending, double timeout);
void mp__rpool_free(mp_pool *p);

/* Frees the rank side of a pool whose last reference went. */
void mp__rpool_destroy(struct mp__rpool *rp);

#endif /* MPROC_POOL_RANKS_H */
