/*
 * mpi_coll.c - the collectives on Open MPI: each is the MPI call of the
 * same name, with the MPI datatype of its mp_type and the MPI operation of
 * its mp_op; user operations through MPI_Op_create.
 *
 * DESIGN
 * Without a deadline a collective is the blocking MPI call (Open MPI's
 * tuned algorithms).  With one it is the nonblocking call (MPI_Ibcast and
 * the others) tested until the deadline.  MPI cannot withdraw a
 * collective a rank has entered: one that times out stays in flight in
 * MPI, still pointing at the caller's buffers, and completes if the other
 * ranks ever reach it.  The communicator's collectives are then abandoned
 * (comm.c calls the engine's abandon, which tells the other ranks), and
 * the calls with a deadline on every rank return MP_EABANDONED before
 * they start one more.
 *
 * User operations.  MPI calls an operation's function with no context,
 * so each of the 64 user operation slots (engine.h) has a trampoline of
 * its own that looks its function and context up in the host's table.
 * An MPI_Op is made for each call, with the operation's commute flag, and
 * freed after it (MPI keeps it for a call still in flight).
 */
#define _GNU_SOURCE
#include "mpi_int.h"

/* ---- operations -------------------------------------------------------------------- */

static void user_apply(int slot, void *in, void *inout, const int *len, const MPI_Datatype *dt)
{
    mp_op_fn fn;
    void *ctx;
    bool commute;
    if (mpe.host->op_user((mp_op)(MP__OP_USER_BASE + slot), &fn, &ctx, &commute) == 0)
        fn(in, inout, (size_t)*len, mpe_type_back(*dt), ctx);
}

#define TRAMP(a, b, c)                                                             \
    static void tramp_##a##b##c(void *in, void *inout, int *len, MPI_Datatype *dt) \
    {                                                                              \
        user_apply((a)*16 + (b)*4 + (c), in, inout, len, dt);                      \
    }
#define TRAMP4(a, b) TRAMP(a, b, 0) TRAMP(a, b, 1) TRAMP(a, b, 2) TRAMP(a, b, 3)
#define TRAMP16(a)   TRAMP4(a, 0) TRAMP4(a, 1) TRAMP4(a, 2) TRAMP4(a, 3)
TRAMP16(0)
TRAMP16(1)
TRAMP16(2)
TRAMP16(3)

#define NAME(a, b, c) tramp_##a##b##c,
#define NAME4(a, b)   NAME(a, b, 0) NAME(a, b, 1) NAME(a, b, 2) NAME(a, b, 3)
#define NAME16(a)     NAME4(a, 0) NAME4(a, 1) NAME4(a, 2) NAME4(a, 3)
static MPI_User_function *const tramps[MP__OP_USER_MAX] = {NAME16(0) NAME16(1) NAME16(2) NAME16(3)};

/* MP_OP_SUM on 8- and 16-bit integers by the library's own loop: Open
 * MPI 4.1's AVX operations (mca op avx) saturate these sums where C, and
 * the local engine, wrap around. */
static void narrow_sum(void *in, void *inout, int *len, MPI_Datatype *dt)
{
    mpe.host->op_apply(MP_OP_SUM, mpe_type_back(*dt), in, inout, (size_t)*len);
}

static bool narrow_int(mp_type t)
{
    return t == MP_TYPE_b || t == MP_TYPE_B || t == MP_TYPE_h || t == MP_TYPE_H || t == MP_TYPE_c;
}

/* The MPI operation for op on type in *mop; *made says it is one to free. */
static int op_of(mp_op op, mp_type type, MPI_Op *mop, bool *made)
{
    *made = false;
    switch (op) {
    case MP_OP_SUM:
        if (narrow_int(type)) {
            *made = true;
            return mpe_err(MPI_Op_create(narrow_sum, 1, mop));
        }
        *mop = MPI_SUM;
        return 0;
    case MP_OP_PROD:
        *mop = MPI_PROD;
        return 0;
    case MP_OP_MIN:
        *mop = MPI_MIN;
        return 0;
    case MP_OP_MAX:
        *mop = MPI_MAX;
        return 0;
    case MP_OP_MINLOC:
        *mop = MPI_MINLOC;
        return 0;
    case MP_OP_MAXLOC:
        *mop = MPI_MAXLOC;
        return 0;
    case MP_OP_LAND:
        *mop = MPI_LAND;
        return 0;
    case MP_OP_LOR:
        *mop = MPI_LOR;
        return 0;
    case MP_OP_LXOR:
        *mop = MPI_LXOR;
        return 0;
    case MP_OP_BAND:
        *mop = MPI_BAND;
        return 0;
    case MP_OP_BOR:
        *mop = MPI_BOR;
        return 0;
    case MP_OP_BXOR:
        *mop = MPI_BXOR;
        return 0;
    }
    mp_op_fn fn;
    void *ctx;
    bool commute;
    int slot = (int)op - MP__OP_USER_BASE;
    if (slot < 0 || slot >= MP__OP_USER_MAX || mpe.host->op_user(op, &fn, &ctx, &commute) < 0)
        return MP_EINVAL;
    *made = true;
    return mpe_err(MPI_Op_create(tramps[slot], commute, mop));
}

/* ---- running a collective ----------------------------------------------------------- */

static MPI_Comm ucomm(const mp_comm *c)
{
    return ((const mcomm *)c->impl)->user;
}

/* Whether c's collectives may run.  Lock held. */
static int coll_begin(mp_comm *c, int64_t deadline)
{
    const mcomm *m = c->impl;
    if (m->abandoned || (deadline != MP__NO_DEADLINE && mpe_abandon_seen(c)))
        return MP_EABANDONED;
    return 0;
}

/* Waits for a nonblocking collective started with MPI code start; one that
 * does not finish stays in flight, with owned (see DESIGN).  Lock held. */
static int coll_wait(mp_comm *c, int start, MPI_Request *rq, int64_t deadline, void *owned)
{
    if (start != MPI_SUCCESS) {
        free(owned);
        return mpe_err(start);
    }
    int rc = mpe_wait(rq, MPI_STATUS_IGNORE, deadline, c);
    if (rc == MP_ETIMEDOUT || rc == MP_EABANDONED) {
        mpe_orphan(*rq, owned);
        return rc;
    }
    free(owned);
    return rc;
}

#define BLOCKING(deadline) ((deadline) == MP__NO_DEADLINE)

int mpe_barrier(mp_comm *c, int64_t dl)
{
    MPI_Request rq;
    bool locked = mpe_enter(dl);
    int rc = coll_begin(c, dl);
    if (rc == 0)
        rc = BLOCKING(dl) ? mpe_err(MPI_Barrier(ucomm(c)))
                          : coll_wait(c, MPI_Ibarrier(ucomm(c), &rq), &rq, dl, NULL);
    mpe_leave(locked);
    return rc;
}

int mpe_bcast(mp_comm *c, void *buf, size_t len, int root, int64_t dl)
{
    if (len > (size_t)INT_MAX)
        return MP_EOVERFLOW;
    MPI_Request rq;
    int n = (int)len;
    bool locked = mpe_enter(dl);
    int rc = coll_begin(c, dl);
    if (rc == 0)
        rc = BLOCKING(dl)
                 ? mpe_err(MPI_Bcast(buf, n, MPI_BYTE, root, ucomm(c)))
                 : coll_wait(c, MPI_Ibcast(buf, n, MPI_BYTE, root, ucomm(c), &rq), &rq, dl, NULL);
    mpe_leave(locked);
    return rc;
}

/* The checks every typed collective starts with: count fits an int. */
static int typed(size_t count, mp_type type, MPI_Datatype *dt)
{
    *dt = mpe_type(type);
    if (*dt == MPI_DATATYPE_NULL)
        return MP_EINVAL;
    return count <= (size_t)INT_MAX ? 0 : MP_EOVERFLOW;
}

/* typed() for the calls that only move data.  A pair type with padding
 * (MPI_DOUBLE_INT: 12 bytes of data in a 16-byte struct) would leave its
 * padding bytes unwritten, where the local engine copies every byte: such
 * a type moves as a block of its bytes instead, made once. */
static int moved(size_t count, mp_type type, MPI_Datatype *dt)
{
    static MPI_Datatype blocks[MP_TYPE_SHORT_INT + 1];
    int rc = typed(count, type, dt), bytes;
    size_t size;
    if (rc < 0 || mpe.host->type_size(type, &size) < 0 || (int)type > MP_TYPE_SHORT_INT)
        return rc < 0 ? rc : MP_EINVAL;
    if (MPI_Type_size(*dt, &bytes) != MPI_SUCCESS || (size_t)bytes == size)
        return 0;
    pthread_mutex_lock(&mpe.lock);
    if (blocks[type] == 0) {
        MPI_Datatype b;
        rc = mpe_err(MPI_Type_contiguous((int)size, MPI_BYTE, &b));
        if (rc == 0)
            rc = mpe_err(MPI_Type_commit(&b));
        if (rc == 0)
            blocks[type] = b;
    }
    if (rc == 0)
        *dt = blocks[type];
    pthread_mutex_unlock(&mpe.lock);
    return rc;
}

int mpe_scatter(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
                int64_t dl)
{
    MPI_Datatype dt;
    MPI_Request rq;
    int rc = moved(count, type, &dt), n = (int)count;
    if (rc < 0)
        return rc;
    bool locked = mpe_enter(dl);
    rc = coll_begin(c, dl);
    if (rc == 0 && BLOCKING(dl))
        rc = mpe_err(MPI_Scatter(send, n, dt, recv, n, dt, root, ucomm(c)));
    else if (rc == 0)
        rc = coll_wait(c, MPI_Iscatter(send, n, dt, recv, n, dt, root, ucomm(c), &rq), &rq, dl,
                       NULL);
    mpe_leave(locked);
    return rc;
}

int mpe_gather(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
               int64_t dl)
{
    MPI_Datatype dt;
    MPI_Request rq;
    int rc = moved(count, type, &dt), n = (int)count;
    if (rc < 0)
        return rc;
    bool locked = mpe_enter(dl);
    rc = coll_begin(c, dl);
    if (rc == 0 && BLOCKING(dl))
        rc = mpe_err(MPI_Gather(send, n, dt, recv, n, dt, root, ucomm(c)));
    else if (rc == 0)
        rc =
            coll_wait(c, MPI_Igather(send, n, dt, recv, n, dt, root, ucomm(c), &rq), &rq, dl, NULL);
    mpe_leave(locked);
    return rc;
}

int mpe_allgather(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int64_t dl)
{
    MPI_Datatype dt;
    MPI_Request rq;
    int rc = moved(count, type, &dt), n = (int)count;
    if (rc < 0)
        return rc;
    bool locked = mpe_enter(dl);
    rc = coll_begin(c, dl);
    if (rc == 0 && BLOCKING(dl))
        rc = mpe_err(MPI_Allgather(send, n, dt, recv, n, dt, ucomm(c)));
    else if (rc == 0)
        rc = coll_wait(c, MPI_Iallgather(send, n, dt, recv, n, dt, ucomm(c), &rq), &rq, dl, NULL);
    mpe_leave(locked);
    return rc;
}

int mpe_alltoall(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int64_t dl)
{
    MPI_Datatype dt;
    MPI_Request rq;
    int rc = moved(count, type, &dt), n = (int)count;
    if (rc < 0)
        return rc;
    bool locked = mpe_enter(dl);
    rc = coll_begin(c, dl);
    if (rc == 0 && BLOCKING(dl))
        rc = mpe_err(MPI_Alltoall(send, n, dt, recv, n, dt, ucomm(c)));
    else if (rc == 0)
        rc = coll_wait(c, MPI_Ialltoall(send, n, dt, recv, n, dt, ucomm(c), &rq), &rq, dl, NULL);
    mpe_leave(locked);
    return rc;
}

/* ---- the v-variants: counts and displacements as MPI's ints ------------------------- */

/* counts and displs as one array of 2n ints (counts, then displs); NULL
 * arrays give NULL (a rank that does not read them). */
static int int_blocks(const mp_comm *c, const size_t *counts, const size_t *displs, int **out)
{
    *out = NULL;
    if (!counts)
        return 0;
    int n = c->size;
    int *v = malloc(2 * (size_t)n * sizeof *v);
    if (!v)
        return MP_ENOMEM;
    for (int i = 0; i < n; i++) {
        if (counts[i] > (size_t)INT_MAX || displs[i] > (size_t)INT_MAX) {
            free(v);
            return MP_EOVERFLOW;
        }
        v[i] = (int)counts[i];
        v[n + i] = (int)displs[i];
    }
    *out = v;
    return 0;
}

int mpe_scatterv(mp_comm *c, const void *send, const size_t *counts, const size_t *displs,
                 void *recv, size_t recv_count, mp_type type, int root, int64_t dl)
{
    MPI_Datatype dt;
    MPI_Request rq;
    int *v = NULL, n = c->size;
    int rc = moved(recv_count, type, &dt);
    if (rc == 0 && c->rank == root)
        rc = int_blocks(c, counts, displs, &v);
    if (rc < 0)
        return rc;
    int *cs = v, *ds = v ? v + n : NULL, rn = (int)recv_count;
    bool locked = mpe_enter(dl);
    rc = coll_begin(c, dl);
    if (rc == 0 && BLOCKING(dl)) {
        rc = mpe_err(MPI_Scatterv(send, cs, ds, dt, recv, rn, dt, root, ucomm(c)));
        free(v);
    } else if (rc == 0) {
        rc = coll_wait(c, MPI_Iscatterv(send, cs, ds, dt, recv, rn, dt, root, ucomm(c), &rq), &rq,
                       dl, v);
    } else {
        free(v);
    }
    mpe_leave(locked);
    return rc;
}

int mpe_gatherv(mp_comm *c, const void *send, size_t send_count, void *recv, const size_t *counts,
                const size_t *displs, mp_type type, int root, int64_t dl)
{
    MPI_Datatype dt;
    MPI_Request rq;
    int *v = NULL, n = c->size;
    int rc = moved(send_count, type, &dt);
    if (rc == 0 && c->rank == root)
        rc = int_blocks(c, counts, displs, &v);
    if (rc < 0)
        return rc;
    int *cs = v, *ds = v ? v + n : NULL, sn = (int)send_count;
    bool locked = mpe_enter(dl);
    rc = coll_begin(c, dl);
    if (rc == 0 && BLOCKING(dl)) {
        rc = mpe_err(MPI_Gatherv(send, sn, dt, recv, cs, ds, dt, root, ucomm(c)));
        free(v);
    } else if (rc == 0) {
        rc = coll_wait(c, MPI_Igatherv(send, sn, dt, recv, cs, ds, dt, root, ucomm(c), &rq), &rq,
                       dl, v);
    } else {
        free(v);
    }
    mpe_leave(locked);
    return rc;
}

int mpe_allgatherv(mp_comm *c, const void *send, size_t send_count, void *recv,
                   const size_t *counts, const size_t *displs, mp_type type, int64_t dl)
{
    MPI_Datatype dt;
    MPI_Request rq;
    int *v = NULL, n = c->size;
    int rc = moved(send_count, type, &dt);
    if (rc == 0)
        rc = int_blocks(c, counts, displs, &v);
    if (rc < 0)
        return rc;
    int sn = (int)send_count;
    bool locked = mpe_enter(dl);
    rc = coll_begin(c, dl);
    if (rc == 0 && BLOCKING(dl)) {
        rc = mpe_err(MPI_Allgatherv(send, sn, dt, recv, v, v + n, dt, ucomm(c)));
        free(v);
    } else if (rc == 0) {
        rc = coll_wait(c, MPI_Iallgatherv(send, sn, dt, recv, v, v + n, dt, ucomm(c), &rq), &rq, dl,
                       v);
    } else {
        free(v);
    }
    mpe_leave(locked);
    return rc;
}

/* ---- reductions ------------------------------------------------------------------------ */

enum red_kind { RED_REDUCE, RED_ALLREDUCE, RED_SCAN };

/* Starts (or, without a deadline, runs) one reduction.  Lock held. */
static int reduce_call(mp_comm *c, enum red_kind k, const void *send, void *recv, int n,
                       MPI_Datatype dt, MPI_Op op, int root, int64_t dl)
{
    MPI_Comm comm = ucomm(c);
    MPI_Request rq;
    int start;
    if (BLOCKING(dl)) {
        if (k == RED_REDUCE)
            return mpe_err(MPI_Reduce(send, recv, n, dt, op, root, comm));
        if (k == RED_ALLREDUCE)
            return mpe_err(MPI_Allreduce(send, recv, n, dt, op, comm));
        return mpe_err(MPI_Scan(send, recv, n, dt, op, comm));
    }
    if (k == RED_REDUCE)
        start = MPI_Ireduce(send, recv, n, dt, op, root, comm, &rq);
    else if (k == RED_ALLREDUCE)
        start = MPI_Iallreduce(send, recv, n, dt, op, comm, &rq);
    else
        start = MPI_Iscan(send, recv, n, dt, op, comm, &rq);
    return coll_wait(c, start, &rq, dl, NULL);
}

static int reduction(mp_comm *c, enum red_kind k, const void *send, void *recv, size_t count,
                     mp_type type, mp_op op, int root, int64_t dl)
{
    MPI_Datatype dt;
    MPI_Op mop;
    bool made = false;
    int rc = typed(count, type, &dt);
    if (rc < 0)
        return rc;
    bool locked = mpe_enter(dl);
    rc = coll_begin(c, dl);
    if (rc == 0)
        rc = op_of(op, type, &mop, &made);
    if (rc == 0) {
        /* MPI refuses a NULL buffer even for zero elements on some paths:
         * a zero-length reduction has nothing to do but meet the others. */
        static char none[16];
        const void *s = send ? send : none;
        void *r = recv ? recv : (k == RED_REDUCE && c->rank != root ? NULL : none);
        rc = reduce_call(c, k, s, r, (int)count, dt, mop, root, dl);
        if (made)
            MPI_Op_free(&mop);
    }
    mpe_leave(locked);
    return rc;
}

int mpe_reduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
               int root, int64_t dl)
{
    return reduction(c, RED_REDUCE, send, recv, count, type, op, root, dl);
}

int mpe_allreduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                  int64_t dl)
{
    return reduction(c, RED_ALLREDUCE, send, recv, count, type, op, 0, dl);
}

int mpe_scan(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
             int64_t dl)
{
    return reduction(c, RED_SCAN, send, recv, count, type, op, 0, dl);
}
