/*
 * generic.c - collectives built from point to point, for engines that
 * leave a collective's slot empty (engine.h).
 *
 * Each algorithm sends on the communicator it serves with a tag of its
 * own below MP_ANY_TAG, which no user receive matches, and relies on the
 * engine's ordering of the messages between two ranks.  They are chosen
 * to be correct with any engine, to copy each byte once where the engine
 * copies point to point once, and to keep rank order in reductions:
 *
 *   barrier          dissemination: ceil(log2 n) rounds of empty
 *                    exchanges with the ranks 2^k ahead and behind
 *   bcast            binomial tree from the root
 *   scatter(v),      the root sends (receives) each rank its block
 *   gather(v)
 *   allgather(v),    pairwise exchange: in step k every rank sends to the
 *   alltoall         rank k ahead and receives from the rank k behind
 *   reduce           the root folds the ranks' vectors from the last rank
 *                    down, in[r] op acc, so that the result is
 *                    x0 op (x1 op (... op x(n-1))) for any associative op
 *   allreduce        reduce to rank 0, then bcast
 *   scan             a chain: rank r receives the prefix of ranks < r
 */
#define _GNU_SOURCE
#include "engine.h"

static int p_send(mp_comm *c, const void *buf, size_t len, int dest, int tag, int64_t dl)
{
    return c->ops->send(c, buf, len, dest, tag, dl);
}

/* Receives exactly len bytes: a message of another size is MP_EMSGSIZE
 * (the ranks disagree on the sizes). */
static int p_recv(mp_comm *c, void *buf, size_t len, int src, int tag, int64_t dl)
{
    mp_comm_status st = {0, 0, 0};
    int rc = c->ops->recv(c, buf, len, src, tag, &st, dl);
    return rc == 0 && st.count != len ? MP_EMSGSIZE : rc;
}

static int p_xchg(mp_comm *c, const void *sbuf, size_t slen, int dest, void *rbuf, size_t rlen,
                  int src, int tag, int64_t dl)
{
    mp_comm_status st = {0, 0, 0};
    int rc = MP__COMM_SLOT(c->ops, sendrecv)
                 ? c->ops->sendrecv(c, sbuf, slen, dest, tag, rbuf, rlen, src, tag, &st, dl)
                 : mp__p2p_sendrecv(c, sbuf, slen, dest, tag, rbuf, rlen, src, tag, &st, dl);
    return rc == 0 && st.count != rlen ? MP_EMSGSIZE : rc;
}

static size_t esize(mp_type type)
{
    size_t es = 0;
    (void)mp__comm_type_size(type, &es);
    return es;
}

static double seconds_left(int64_t deadline)
{
    if (deadline == MP__NO_DEADLINE)
        return MP_FOREVER;
    int64_t left = mp__remaining_ns(deadline);
    return left > 0 ? (double)left / 1e9 : 0.0;
}

int mp__p2p_sendrecv(mp_comm *c, const void *sbuf, size_t slen, int dest, int stag, void *rbuf,
                     size_t rcap, int src, int rtag, mp_comm_status *st, int64_t deadline)
{
    mp_future *f = NULL;
    int rc = c->ops->isend(c, sbuf, slen, dest, stag, &f);
    if (rc < 0)
        return rc;
    rc = c->ops->recv(c, rbuf, rcap, src, rtag, st, deadline);
    int wrc = mp_future_wait(f, seconds_left(deadline));
    /* A send no receive matched yet is withdrawn; one under way ends. */
    if (wrc == MP_ETIMEDOUT && mp_future_cancel(f) != 0)
        wrc = mp_future_wait(f, MP_FOREVER);
    if (wrc == 0)
        wrc = mp_future_status(f);
    mp_future_free(f);
    return rc < 0 ? rc : wrc;
}

int mp__coll_barrier(mp_comm *c, int64_t deadline)
{
    int n = c->size, r = c->rank;
    for (int k = 1; k < n; k <<= 1) {
        int rc =
            p_xchg(c, NULL, 0, (r + k) % n, NULL, 0, (r - k + n) % n, MP__TAG_BARRIER, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int mp__coll_bcast(mp_comm *c, void *buf, size_t len, int root, int64_t deadline)
{
    int n = c->size, vr = (c->rank - root + n) % n, mask = 1;
    while (mask < n) {
        if (vr & mask) {
            int rc = p_recv(c, buf, len, (vr - mask + root) % n, MP__TAG_BCAST, deadline);
            if (rc < 0)
                return rc;
            break;
        }
        mask <<= 1;
    }
    for (mask >>= 1; mask > 0; mask >>= 1) {
        if (vr + mask < n) {
            int rc = p_send(c, buf, len, (vr + mask + root) % n, MP__TAG_BCAST, deadline);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

int mp__coll_scatterv(mp_comm *c, const void *send, const size_t *counts, const size_t *displs,
                      void *recv, size_t recv_count, mp_type type, int root, int64_t deadline)
{
    size_t es = esize(type);
    if (c->rank != root) {
        mp_comm_status st;
        int rc = c->ops->recv(c, recv, recv_count * es, root, MP__TAG_SCATTER, &st, deadline);
        return rc == 0 && st.count % es ? MP_EMSGSIZE : rc;
    }
    for (int i = 0; i < c->size; i++) {
        const char *block = (const char *)send + displs[i] * es;
        int rc = 0;
        if (i == root && counts[i])
            memcpy(recv, block, counts[i] * es);
        else if (i != root)
            rc = p_send(c, block, counts[i] * es, i, MP__TAG_SCATTER, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* counts and displacements of equal blocks, for the plain forms. */
static int equal_blocks(int n, size_t count, size_t **counts, size_t **displs)
{
    *counts = malloc((size_t)n * sizeof **counts);
    *displs = malloc((size_t)n * sizeof **displs);
    if (!*counts || !*displs) {
        free(*counts);
        free(*displs);
        return MP_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        (*counts)[i] = count;
        (*displs)[i] = (size_t)i * count;
    }
    return 0;
}

int mp__coll_scatter(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
                     int64_t deadline)
{
    size_t *counts, *displs;
    int rc = equal_blocks(c->size, count, &counts, &displs);
    if (rc < 0)
        return rc;
    rc = mp__coll_scatterv(c, send, counts, displs, recv, count, type, root, deadline);
    free(counts);
    free(displs);
    return rc;
}

int mp__coll_gatherv(mp_comm *c, const void *send, size_t send_count, void *recv,
                     const size_t *counts, const size_t *displs, mp_type type, int root,
                     int64_t deadline)
{
    size_t es = esize(type);
    if (c->rank != root)
        return p_send(c, send, send_count * es, root, MP__TAG_GATHER, deadline);
    for (int i = 0; i < c->size; i++) {
        char *block = (char *)recv + displs[i] * es;
        int rc = 0;
        if (i == root && send_count)
            memcpy(block, send, send_count * es);
        else if (i != root)
            rc = p_recv(c, block, counts[i] * es, i, MP__TAG_GATHER, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int mp__coll_gather(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
                    int64_t deadline)
{
    size_t *counts, *displs;
    int rc = equal_blocks(c->size, count, &counts, &displs);
    if (rc < 0)
        return rc;
    rc = mp__coll_gatherv(c, send, count, recv, counts, displs, type, root, deadline);
    free(counts);
    free(displs);
    return rc;
}

int mp__coll_allgatherv(mp_comm *c, const void *send, size_t send_count, void *recv,
                        const size_t *counts, const size_t *displs, mp_type type, int64_t deadline)
{
    size_t es = esize(type);
    int n = c->size, r = c->rank;
    if (send_count)
        memcpy((char *)recv + displs[r] * es, send, send_count * es);
    for (int k = 1; k < n; k++) {
        int dest = (r + k) % n, src = (r - k + n) % n;
        int rc = p_xchg(c, send, send_count * es, dest, (char *)recv + displs[src] * es,
                        counts[src] * es, src, MP__TAG_ALLGATHER, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int mp__coll_allgather(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                       int64_t deadline)
{
    size_t *counts, *displs;
    int rc = equal_blocks(c->size, count, &counts, &displs);
    if (rc < 0)
        return rc;
    rc = mp__coll_allgatherv(c, send, count, recv, counts, displs, type, deadline);
    free(counts);
    free(displs);
    return rc;
}

int mp__coll_alltoall(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                      int64_t deadline)
{
    size_t bytes = count * esize(type);
    int n = c->size, r = c->rank;
    if (bytes)
        memcpy((char *)recv + (size_t)r * bytes, (const char *)send + (size_t)r * bytes, bytes);
    for (int k = 1; k < n; k++) {
        int dest = (r + k) % n, src = (r - k + n) % n;
        int rc = p_xchg(c, (const char *)send + (size_t)dest * bytes, bytes, dest,
                        (char *)recv + (size_t)src * bytes, bytes, src, MP__TAG_ALLTOALL, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int mp__coll_reduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                    int root, int64_t deadline)
{
    size_t bytes = count * esize(type);
    int n = c->size;
    if (c->rank != root)
        return p_send(c, send, bytes, root, MP__TAG_REDUCE, deadline);
    void *tmp = malloc(bytes ? bytes : 1);
    if (!tmp)
        return MP_ENOMEM;
    /* recv accumulates, starting from the last rank's vector. */
    int rc = 0;
    if (n - 1 == root) {
        if (bytes)
            memcpy(recv, send, bytes);
    } else
        rc = p_recv(c, recv, bytes, n - 1, MP__TAG_REDUCE, deadline);
    for (int r = n - 2; rc == 0 && r >= 0; r--) {
        const void *in = send;
        if (r != root) {
            rc = p_recv(c, tmp, bytes, r, MP__TAG_REDUCE, deadline);
            in = tmp;
        }
        if (rc == 0)
            mp__op_apply(op, type, in, recv, count);
    }
    free(tmp);
    return rc;
}

int mp__coll_allreduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                       mp_op op, int64_t deadline)
{
    int rc = mp__coll_reduce(c, send, recv, count, type, op, 0, deadline);
    if (rc < 0)
        return rc;
    size_t bytes = count * esize(type);
    return MP__COMM_SLOT(c->ops, bcast) ? c->ops->bcast(c, recv, bytes, 0, deadline)
                                        : mp__coll_bcast(c, recv, bytes, 0, deadline);
}

int mp__coll_scan(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                  int64_t deadline)
{
    size_t bytes = count * esize(type);
    int r = c->rank;
    int rc = 0;
    if (r > 0) {
        void *prefix = malloc(bytes ? bytes : 1);
        if (!prefix)
            return MP_ENOMEM;
        rc = p_recv(c, prefix, bytes, r - 1, MP__TAG_SCAN, deadline);
        if (rc == 0 && bytes) {
            memcpy(recv, send, bytes);
            mp__op_apply(op, type, prefix, recv, count);
        }
        free(prefix);
    } else if (bytes) {
        memcpy(recv, send, bytes);
    }
    if (rc == 0 && r + 1 < c->size)
        rc = p_send(c, recv, bytes, r + 1, MP__TAG_SCAN, deadline);
    return rc;
}
