/*
 * test_comm_coll.c - the collectives on the local engine: every call on
 * 1, 2, 3, 4 and 7 ranks, over several element types and sizes from 0
 * bytes to 16 MiB, each result checked against a sequential computation
 * done independently here; communicators split and duplicated (beyond
 * the 32 that have shared-memory blocks, where the generic algorithms
 * take over); bad arguments; a collective abandoned by a timeout.
 */
#include "mp_test.h"

#include "comm/engine.h"
#include "comm/local.h"
#include "comm_test.h"

#include <math.h>
#include <stdatomic.h>
#include <sys/mman.h>

/* ---- values and their sequential reductions --------------------------------------- */

static const mp_type itypes[] = {MP_TYPE_b, MP_TYPE_i, MP_TYPE_Q};

static size_t tsize(mp_type t)
{
    size_t s = 0;
    (void)mp__comm_type_size(t, &s);
    return s;
}

static bool is_signed(mp_type t)
{
    return t == MP_TYPE_b || t == MP_TYPE_h || t == MP_TYPE_i || t == MP_TYPE_l || t == MP_TYPE_q;
}

/* Element i of an integer array, widened (sign-extended for signed
 * types) to 64 bits. */
static uint64_t get_u(mp_type t, const void *p, size_t i)
{
    const unsigned char *b = (const unsigned char *)p + i * tsize(t);
    switch (tsize(t)) {
    case 1: {
        uint8_t v;
        memcpy(&v, b, 1);
        return is_signed(t) ? (uint64_t)(int64_t)(int8_t)v : v;
    }
    case 2: {
        uint16_t v;
        memcpy(&v, b, 2);
        return is_signed(t) ? (uint64_t)(int64_t)(int16_t)v : v;
    }
    case 4: {
        uint32_t v;
        memcpy(&v, b, 4);
        return is_signed(t) ? (uint64_t)(int64_t)(int32_t)v : v;
    }
    default: {
        uint64_t v;
        memcpy(&v, b, 8);
        return v;
    }
    }
}

static void set_u(mp_type t, void *p, size_t i, uint64_t v)
{
    unsigned char *b = (unsigned char *)p + i * tsize(t);
    size_t s = tsize(t);
    uint8_t v1 = (uint8_t)v;
    uint16_t v2 = (uint16_t)v;
    uint32_t v4 = (uint32_t)v;
    memcpy(b, s == 1 ? (void *)&v1 : s == 2 ? (void *)&v2 : s == 4 ? (void *)&v4 : (void *)&v, s);
}

/* The value rank r contributes at element i: zero now and then (for the
 * logical operations), negative for signed types. */
static uint64_t ival(int r, size_t i)
{
    if ((r + i) % 5 == 0)
        return 0;
    return (uint64_t)r * 1000003u + i * 7919u + 12345u - (i % 3 == 0 ? 40000u : 0u);
}

static double dval(int r, size_t i)
{
    return (double)((r * 31 + (int)(i % 4096) * 17) % 997) / 8.0 - 40.0;
}

/* a op b for integers of type t, widened; the result is narrowed back by
 * the caller through set_u / get_u. */
static uint64_t iop(mp_op op, mp_type t, uint64_t a, uint64_t b)
{
    bool s = is_signed(t);
    bool lt = s ? (int64_t)a < (int64_t)b : a < b;
    switch (op) {
    case MP_OP_SUM:
        return a + b;
    case MP_OP_PROD:
        return a * b;
    case MP_OP_MIN:
        return lt ? a : b;
    case MP_OP_MAX:
        return lt ? b : a;
    case MP_OP_LAND:
        return a && b;
    case MP_OP_LOR:
        return a || b;
    case MP_OP_LXOR:
        return !a != !b;
    case MP_OP_BAND:
        return a & b;
    case MP_OP_BOR:
        return a | b;
    case MP_OP_BXOR:
        return a ^ b;
    default:
        return 0;
    }
}

static uint64_t narrow(mp_type t, uint64_t v)
{
    uint64_t x;
    set_u(t, &x, 0, v);
    return get_u(t, &x, 0);
}

static double dop(mp_op op, double a, double b)
{
    switch (op) {
    case MP_OP_SUM:
        return a + b;
    case MP_OP_PROD:
        return a * b;
    case MP_OP_MIN:
        return b < a ? b : a;
    default:
        return b > a ? b : a;
    }
}

/* The reduction of ranks lo..hi at element i (any order: the operations
 * are associative, and the tests compare doubles with a tolerance). */
static uint64_t ifold(mp_op op, mp_type t, int lo, int hi, size_t i)
{
    uint64_t acc = narrow(t, ival(lo, i));
    for (int r = lo + 1; r <= hi; r++)
        acc = narrow(t, iop(op, t, acc, narrow(t, ival(r, i))));
    return acc;
}

static double dfold(mp_op op, int lo, int hi, size_t i)
{
    double acc = dval(lo, i);
    for (int r = lo + 1; r <= hi; r++)
        acc = dop(op, acc, dval(r, i));
    return acc;
}

static bool near(double a, double b)
{
    return fabs(a - b) <= 1e-9 * (fabs(a) + fabs(b)) + 1e-12;
}

/* ---- reductions ------------------------------------------------------------------------- */

static int check_ireduce(mp_comm *w, mp_type t, mp_op op, size_t count)
{
    int n = mp_comm_size(w), root = (int)(count % (size_t)n);
    size_t es = tsize(t);
    unsigned char *send = malloc(count * es + 1), *recv = malloc(count * es + 1);
    RK_CHECK(send && recv);
    for (size_t i = 0; i < count; i++)
        set_u(t, send, i, ival(rk_me, i));
    RK_OK(mp_comm_reduce(w, send, recv, count, t, op, root, 30));
    for (size_t i = 0; rk_me == root && i < count; i++)
        RK_EQ(get_u(t, recv, i), ifold(op, t, 0, n - 1, i));
    memset(recv, 0, count * es + 1);
    RK_OK(mp_comm_allreduce(w, send, recv, count, t, op, 30));
    for (size_t i = 0; i < count; i++)
        RK_EQ(get_u(t, recv, i), ifold(op, t, 0, n - 1, i));
    RK_OK(mp_comm_scan(w, send, recv, count, t, op, 30));
    for (size_t i = 0; i < count; i++)
        RK_EQ(get_u(t, recv, i), ifold(op, t, 0, rk_me, i));
    free(send);
    free(recv);
    return 0;
}

static int check_dreduce(mp_comm *w, mp_op op, size_t count)
{
    int n = mp_comm_size(w), root = n - 1;
    double *send = malloc(count * sizeof(double) + 1), *recv = malloc(count * sizeof(double) + 1);
    RK_CHECK(send && recv);
    for (size_t i = 0; i < count; i++)
        send[i] = dval(rk_me, i);
    RK_OK(mp_comm_reduce(w, send, recv, count, MP_TYPE_d, op, root, 30));
    for (size_t i = 0; rk_me == root && i < count; i++)
        RK_CHECK(near(recv[i], dfold(op, 0, n - 1, i)));
    RK_OK(mp_comm_allreduce(w, send, recv, count, MP_TYPE_d, op, 30));
    for (size_t i = 0; i < count; i++)
        RK_CHECK(near(recv[i], dfold(op, 0, n - 1, i)));
    RK_OK(mp_comm_scan(w, send, recv, count, MP_TYPE_d, op, 30));
    for (size_t i = 0; i < count; i++)
        RK_CHECK(near(recv[i], dfold(op, 0, rk_me, i)));
    free(send);
    free(recv);
    return 0;
}

/* minloc / maxloc on value-index pairs, with many ties. */
static int check_loc(mp_comm *w, size_t count)
{
    int n = mp_comm_size(w);
    mp_2int *send = malloc((count + 1) * sizeof *send), *recv = malloc((count + 1) * sizeof *recv);
    mp_double_int *ds = malloc((count + 1) * sizeof *ds), *dr = malloc((count + 1) * sizeof *dr);
    RK_CHECK(send && recv && ds && dr);
    for (size_t i = 0; i < count; i++) {
        send[i] = (mp_2int){(rk_me * 7 + (int)(i % 1000)) % 5, rk_me};
        ds[i] = (mp_double_int){((rk_me * 3 + (int)(i % 1000)) % 4) * 0.5, rk_me};
    }
    for (int k = 0; k < 2; k++) {
        mp_op op = k ? MP_OP_MAXLOC : MP_OP_MINLOC;
        RK_OK(mp_comm_allreduce(w, send, recv, count, MP_TYPE_2INT, op, 30));
        RK_OK(mp_comm_allreduce(w, ds, dr, count, MP_TYPE_DOUBLE_INT, op, 30));
        for (size_t i = 0; i < count; i++) {
            int bv = 0, bi = -1, dbi = -1;
            double dbv = 0;
            for (int r = 0; r < n; r++) {
                int v = (r * 7 + (int)(i % 1000)) % 5;
                double dv = ((r * 3 + (int)(i % 1000)) % 4) * 0.5;
                if (bi < 0 || (k ? v > bv : v < bv))
                    bv = v, bi = r;
                if (dbi < 0 || (k ? dv > dbv : dv < dbv))
                    dbv = dv, dbi = r;
            }
            RK_EQ(recv[i].value, bv);
            RK_EQ(recv[i].index, bi);
            RK_CHECK(dr[i].value == dbv);
            RK_EQ(dr[i].index, dbi);
        }
    }
    free(send);
    free(recv);
    free(ds);
    free(dr);
    return 0;
}

/* A user operation that does not commute: each element is an affine map
 * x -> a*x + b (32-bit, wrapping); in op inout = in after inout. */
static void compose(const void *in, void *inout, size_t count, mp_type type, void *ctx)
{
    (void)type;
    (*(int *)ctx)++;
    const mp_2int *f = in;
    mp_2int *g = inout;
    for (size_t i = 0; i < count; i++) {
        uint32_t a = (uint32_t)f[i].value * (uint32_t)g[i].value;
        uint32_t b = (uint32_t)f[i].value * (uint32_t)g[i].index + (uint32_t)f[i].index;
        g[i].value = (int)a;
        g[i].index = (int)b;
    }
}

static mp_2int affine(int r, size_t i)
{
    return (mp_2int){2 * (r + (int)(i % 100)) + 1, r * 3 + (int)(i % 100)};
}

static int check_user(mp_comm *w, size_t count)
{
    int n = mp_comm_size(w), calls = 0;
    mp_op op;
    RK_OK(mp_op_new(compose, &calls, false, &op));
    mp_2int *send = malloc((count + 1) * sizeof *send), *recv = malloc((count + 1) * sizeof *recv);
    RK_CHECK(send && recv);
    for (size_t i = 0; i < count; i++)
        send[i] = affine(rk_me, i);
    RK_OK(mp_comm_allreduce(w, send, recv, count, MP_TYPE_2INT, op, 30));
    RK_OK(mp_comm_scan(w, send, send, 0, MP_TYPE_2INT, op, 30)); /* nothing to scan */
    for (size_t i = 0; i < count; i++) {
        /* m0 o m1 o ... o m(n-1): apply the last first. */
        uint32_t a = 1, b = 0;
        for (int r = n - 1; r >= 0; r--) {
            mp_2int m = affine(r, i);
            b = (uint32_t)m.value * b + (uint32_t)m.index;
            a = (uint32_t)m.value * a;
        }
        RK_EQ((uint32_t)recv[i].value, a);
        RK_EQ((uint32_t)recv[i].index, b);
    }
    RK_OK(mp_op_free(op));
    RK_ERR(mp_op_free(op), MP_EINVAL);
    free(send);
    free(recv);
    return 0;
}

static int reductions(mp_comm *w, size_t count)
{
    static const mp_op iops[] = {MP_OP_SUM, MP_OP_PROD, MP_OP_MIN,  MP_OP_MAX, MP_OP_LAND,
                                 MP_OP_LOR, MP_OP_LXOR, MP_OP_BAND, MP_OP_BOR, MP_OP_BXOR};
    static const mp_op dops[] = {MP_OP_SUM, MP_OP_PROD, MP_OP_MIN, MP_OP_MAX};
    for (size_t t = 0; t < MP__ARRAY_SIZE(itypes); t++)
        for (size_t k = 0; k < MP__ARRAY_SIZE(iops); k++)
            RK_PASS(check_ireduce(w, itypes[t], iops[k], count));
    for (size_t k = 0; k < MP__ARRAY_SIZE(dops); k++)
        RK_PASS(check_dreduce(w, dops[k], count));
    RK_PASS(check_loc(w, count));
    return check_user(w, count);
}

/* ---- data movement --------------------------------------------------------------------- */

/* The byte at element i (of es bytes) of rank r's block: any pattern
 * that tells ranks, blocks and positions apart. */
static unsigned char bval(int r, int blk, size_t byte)
{
    return (unsigned char)(r * 61 + blk * 17 + byte * 3 + (byte >> 10));
}

static void bfill(unsigned char *p, size_t len, int r, int blk)
{
    for (size_t i = 0; i < len; i++)
        p[i] = bval(r, blk, i);
}

static size_t bdiff(const unsigned char *p, size_t len, int r, int blk)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != bval(r, blk, i))
            return i + 1;
    return 0;
}

static int check_bcast(mp_comm *w, size_t len, int root)
{
    unsigned char *b = malloc(len + 1);
    RK_CHECK(b);
    if (rk_me == root)
        bfill(b, len, root, 0);
    else
        memset(b, 0, len + 1);
    RK_OK(mp_comm_bcast(w, b, len, root, 30));
    RK_EQ(bdiff(b, len, root, 0), 0);
    free(b);
    return 0;
}

static int check_scatter_gather(mp_comm *w, mp_type t, size_t count)
{
    int n = mp_comm_size(w), root = (int)((count + 1) % (size_t)n);
    size_t blk = count * tsize(t), all = blk * (size_t)n;
    unsigned char *big = malloc(all + 1), *mine = malloc(blk + 1);
    RK_CHECK(big && mine);
    for (int i = 0; rk_me == root && i < n; i++)
        bfill(big + (size_t)i * blk, blk, root, i);
    RK_OK(mp_comm_scatter(w, big, mine, count, t, root, 30));
    RK_EQ(bdiff(mine, blk, root, rk_me), 0);
    bfill(mine, blk, rk_me, 0);
    memset(big, 0, all + 1);
    RK_OK(mp_comm_gather(w, mine, rk_me == root ? big : NULL, count, t, root, 30));
    for (int i = 0; rk_me == root && i < n; i++)
        RK_EQ(bdiff(big + (size_t)i * blk, blk, i, 0), 0);
    memset(big, 0, all + 1);
    RK_OK(mp_comm_allgather(w, mine, big, count, t, 30));
    for (int i = 0; i < n; i++)
        RK_EQ(bdiff(big + (size_t)i * blk, blk, i, 0), 0);
    free(big);
    free(mine);
    return 0;
}

static int check_alltoall(mp_comm *w, mp_type t, size_t count)
{
    int n = mp_comm_size(w);
    size_t blk = count * tsize(t), all = blk * (size_t)n;
    unsigned char *out = malloc(all + 1), *in = malloc(all + 1);
    RK_CHECK(out && in);
    for (int j = 0; j < n; j++)
        bfill(out + (size_t)j * blk, blk, rk_me, j);
    RK_OK(mp_comm_alltoall(w, out, in, count, t, 30));
    for (int i = 0; i < n; i++)
        RK_EQ(bdiff(in + (size_t)i * blk, blk, i, rk_me), 0);
    free(out);
    free(in);
    return 0;
}

/* The v forms with uneven blocks laid out in reverse rank order. */
static int check_v(mp_comm *w, mp_type t, size_t count)
{
    int n = mp_comm_size(w), root = n / 2;
    size_t es = tsize(t), counts[8], displs[8], total = 0;
    for (int i = n - 1; i >= 0; i--) {
        counts[i] = count + (size_t)i * (count / 3 + 1);
        displs[i] = total;
        total += counts[i] + 1; /* a gap between blocks */
    }
    unsigned char *big = calloc(total * es + 1, 1), *mine = malloc(counts[n - 1] * es + 1);
    RK_CHECK(big && mine);
    for (int i = 0; rk_me == root && i < n; i++)
        bfill(big + displs[i] * es, counts[i] * es, root, i);
    /* The receive room is the largest block on every rank. */
    RK_OK(mp_comm_scatterv(w, big, counts, displs, mine, counts[n - 1], t, root, 30));
    RK_EQ(bdiff(mine, counts[rk_me] * es, root, rk_me), 0);
    bfill(mine, counts[rk_me] * es, rk_me, 0);
    memset(big, 0, total * es + 1);
    RK_OK(mp_comm_gatherv(w, mine, counts[rk_me], big, counts, displs, t, root, 30));
    for (int i = 0; rk_me == root && i < n; i++)
        RK_EQ(bdiff(big + displs[i] * es, counts[i] * es, i, 0), 0);
    memset(big, 0, total * es + 1);
    RK_OK(mp_comm_allgatherv(w, mine, counts[rk_me], big, counts, displs, t, 30));
    for (int i = 0; i < n; i++)
        RK_EQ(bdiff(big + displs[i] * es, counts[i] * es, i, 0), 0);
    free(big);
    free(mine);
    return 0;
}

/* ---- every call ---------------------------------------------------------------------- */

/* The "coll-quick" suite under a launcher: the collective checks up to
 * 1 MiB broadcasts and 4099 elements, for many oversubscribed ranks (the
 * full sizes run in-process with mp_run, coll_7_ranks). */
static bool rk_quick;

static int coll_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    int n = mp_comm_size(w);
    RK_OK(mp_comm_barrier(w, 30));
    size_t big = RK_SLOW ? (size_t)4 << 20 : (size_t)16 << 20;
    const size_t blens[] = {0, 1, 8, 100, 65535, 65537, ((size_t)1 << 20) + 5, big};
    for (size_t k = 0; k < MP__ARRAY_SIZE(blens) - (rk_quick ? 1 : 0); k++)
        RK_PASS(check_bcast(w, blens[k], (int)(k % (size_t)n)));
    /* 70001 elements cross a reduction piece (64 KiB) for every type. */
    const size_t counts[] = {0, 1, 3, 4099, RK_SLOW ? 20001 : 70001};
    const mp_type mtypes[] = {MP_TYPE_b, MP_TYPE_i, MP_TYPE_d, MP_TYPE_DOUBLE_INT};
    for (size_t c = 0; c < MP__ARRAY_SIZE(counts) - (rk_quick ? 1 : 0); c++) {
        for (size_t t = 0; t < MP__ARRAY_SIZE(mtypes); t++) {
            RK_PASS(check_scatter_gather(w, mtypes[t], counts[c]));
            RK_PASS(check_alltoall(w, mtypes[t], counts[c]));
            RK_PASS(check_v(w, mtypes[t], counts[c]));
        }
        RK_PASS(reductions(w, counts[c]));
    }
    if (rk_quick)
        return mp_comm_barrier(w, 30);
    /* The largest sizes, once each: 16 MiB in all. */
    RK_PASS(check_scatter_gather(w, MP_TYPE_B, big / (size_t)n));
    RK_PASS(check_alltoall(w, MP_TYPE_B, big / (size_t)n / (size_t)n));
    RK_PASS(check_dreduce(w, MP_OP_SUM, big / sizeof(double)));
    RK_OK(mp_comm_barrier(w, 30));
    return 0;
}

static void coll_on(int n)
{
    mp_run_opts o = MP_RUN_OPTS_INIT;
    o.timeout = 250;
    CHECK_EQ(mp_run_with_opts(n, coll_rank, NULL, &o), 0);
}

TEST_TIMEOUT(coll_1_rank, 300)
{
    coll_on(1);
}

TEST_TIMEOUT(coll_2_ranks, 300)
{
    coll_on(2);
}

TEST_TIMEOUT(coll_3_ranks, 300)
{
    coll_on(3);
}

TEST_TIMEOUT(coll_4_ranks, 300)
{
    coll_on(4);
}

TEST_TIMEOUT(coll_7_ranks, 300)
{
    coll_on(7);
}

/* With single-copy reads refused: large broadcasts go through the shared
 * slots, large messages through the pipeline. */
TEST_TIMEOUT(coll_4_ranks_no_single_copy, 300)
{
    mp__lp_set_cma(false);
    coll_on(4);
}

/* ---- the barrier, small broadcasts ----------------------------------------------------- */

/* Each rank's count of barriers it arrived at, in memory the ranks share
 * (mapped before mp_run forks them). */
typedef struct arrivals {
    _Atomic int at[8];
} arrivals;

/* Busy for about us microseconds (no sleep: the point is who arrives last,
 * not to wait for it). */
static void busy(double us)
{
    double t0 = mpt_now();
    while ((mpt_now() - t0) * 1e6 < us)
        ;
}

/* No rank leaves a barrier before every member arrived at it, whoever
 * arrives last (member 0 or another), on the world and on a communicator
 * whose member 0 is the world's last rank; now and then the late one is
 * late enough for the others to sleep. */
static int barrier_on(mp_comm *c, arrivals *a, int rounds)
{
    int n = mp_comm_size(c), me = mp_comm_rank(c);
    for (int i = 0; i < rounds; i++) {
        int late = i % n;
        if (me == late)
            busy(i % 50 == 7 ? 3000 : i % 3 == 0 ? 20 : 0);
        atomic_store(&a->at[me], i + 1);
        RK_OK(mp_comm_barrier(c, 30));
        for (int q = 0; q < n; q++)
            RK_CHECK(atomic_load(&a->at[q]) >= i + 1);
        /* Nobody arrives at the next one before everybody left this. */
        RK_OK(mp_comm_barrier(c, 30));
    }
    return 0;
}

static int barrier_rank(mp_comm *w, void *arg)
{
    arrivals *a = arg;
    rk_me = mp_comm_rank(w);
    int n = mp_comm_size(w);
    RK_PASS(barrier_on(w, &a[0], 300));
    mp_comm *rev;
    RK_OK(mp_comm_split(w, 0, n - 1 - rk_me, 30, &rev));
    RK_CHECK(rev);
    RK_EQ(mp_comm_rank(rev), n - 1 - rk_me);
    RK_PASS(barrier_on(rev, &a[1], 300));
    mp_comm_free(rev);
    return 0;
}

TEST_TIMEOUT(barrier_holds_everyone, 120)
{
    const int ns[] = {2, 3, 4, 7};
    for (size_t k = 0; k < MP__ARRAY_SIZE(ns); k++) {
        arrivals *a =
            mmap(NULL, 2 * sizeof *a, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        CHECK(a != MAP_FAILED);
        memset(a, 0, 2 * sizeof *a);
        mp_run_opts o = MP_RUN_OPTS_INIT;
        o.timeout = 100;
        CHECK_EQ(mp_run_with_opts(ns[k], barrier_rank, a, &o), 0);
        munmap(a, 2 * sizeof *a);
    }
}

/* Many small broadcasts from changing roots, of sizes around what fits a
 * slot's line (24 bytes) and above: the 16 slots are reused many times
 * over, each time by a root other than the last one's; then one root runs
 * ahead of a late reader, and must not write a slot it has not read. */
static int small_bcast_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    int n = mp_comm_size(w);
    const size_t lens[] = {0, 1, 8, 23, 24, 25, 64, 200};
    for (int i = 0; i < 500; i++) {
        size_t len = lens[(size_t)i % MP__ARRAY_SIZE(lens)];
        int root = (i / 3) % n;
        /* Each broadcast's own bytes: a slot read one lap late differs. */
        unsigned char b[201];
        if (rk_me == root)
            bfill(b, len, root, i);
        else
            memset(b, 0, sizeof b);
        RK_OK(mp_comm_bcast(w, b, len, root, 30));
        RK_EQ(bdiff(b, len, root, i), 0);
        if (i % 97 == 0)
            busy(200); /* a root or reader behind the others */
    }
    if (rk_me == n - 1)
        busy(5000);
    for (int i = 0; i < 100; i++) {
        uint64_t v = rk_me == 0 ? 1000 + (uint64_t)i : 0;
        RK_OK(mp_comm_bcast(w, &v, sizeof v, 0, 30));
        RK_EQ(v, 1000 + i);
    }
    return mp_comm_barrier(w, 30);
}

TEST(bcast_small_from_changing_roots)
{
    CHECK_EQ(mp_run(2, small_bcast_rank, NULL), 0);
    CHECK_EQ(mp_run(3, small_bcast_rank, NULL), 0);
    CHECK_EQ(mp_run(7, small_bcast_rank, NULL), 0);
}

/* ---- communicators ------------------------------------------------------------------ */

static int split_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    int n = mp_comm_size(w);
    mp_comm *half, *none, *dup;
    /* Even and odd ranks, each in reverse order; rank 1 stays out. */
    int color = rk_me == 1 ? MP_UNDEFINED : rk_me % 2;
    RK_OK(mp_comm_split(w, color, -rk_me, 30, &half));
    if (rk_me == 1) {
        RK_CHECK(half == NULL);
    } else {
        int members = 0, pos = 0;
        for (int r = 0; r < n; r++) {
            if (r != 1 && r % 2 == rk_me % 2) {
                members++;
                pos += r > rk_me;
            }
        }
        RK_EQ(mp_comm_size(half), members);
        RK_EQ(mp_comm_rank(half), pos);
        int one = 1, sum = 0;
        RK_OK(mp_comm_allreduce(half, &one, &sum, 1, MP_TYPE_i, MP_OP_SUM, 30));
        RK_EQ(sum, members);
        int first = rk_me;
        RK_OK(mp_comm_bcast(half, &first, sizeof first, 0, 30));
        int top = rk_me;
        for (int r = 0; r < n; r++)
            if (r != 1 && r % 2 == rk_me % 2 && r > top)
                top = r;
        RK_EQ(first, top); /* rank 0 of the half has the largest key */
        mp_comm_free(half);
    }
    RK_OK(mp_comm_split(w, MP_UNDEFINED, 0, 30, &none));
    RK_CHECK(none == NULL);
    /* Messages on a duplicate never meet the world's. */
    RK_OK(mp_comm_dup(w, 30, &dup));
    RK_EQ(mp_comm_size(dup), n);
    RK_EQ(mp_comm_rank(dup), rk_me);
    int to = (rk_me + 1) % n, from = (rk_me + n - 1) % n, a = 100 + rk_me, b = 200 + rk_me, x;
    RK_OK(mp_comm_send(w, &a, sizeof a, to, 1, 30));
    RK_OK(mp_comm_send(dup, &b, sizeof b, to, 1, 30));
    RK_OK(mp_comm_recv(dup, &x, sizeof x, from, 1, NULL, 30));
    RK_EQ(x, 200 + from);
    RK_OK(mp_comm_recv(w, &x, sizeof x, from, 1, NULL, 30));
    RK_EQ(x, 100 + from);
    mp_comm_free(dup);
    return 0;
}

TEST(comm_split_and_dup)
{
    CHECK_EQ(mp_run(4, split_rank, NULL), 0);
    CHECK_EQ(mp_run(7, split_rank, NULL), 0);
}

/* More communicators than shared blocks: the later ones work with the
 * generic algorithms; blocks freed are taken again. */
static int many_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    enum { MANY = 40 };
    mp_comm *cs[MANY];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < MANY; i++)
            RK_OK(mp_comm_dup(w, 30, &cs[i]));
        for (int i = 0; i < MANY; i++) {
            long v = rk_me + i, sum = 0;
            RK_OK(mp_comm_allreduce(cs[i], &v, &sum, 1, MP_TYPE_l, MP_OP_SUM, 30));
            long want = 0;
            for (int r = 0; r < mp_comm_size(w); r++)
                want += r + i;
            RK_EQ(sum, want);
            RK_OK(mp_comm_barrier(cs[i], 30));
            RK_PASS(check_bcast(cs[i], 70000, i % mp_comm_size(w)));
        }
        for (int i = 0; i < MANY; i++)
            mp_comm_free(cs[i]);
        RK_OK(mp_comm_barrier(w, 30));
    }
    return 0;
}

TEST(comm_many_dups)
{
    CHECK_EQ(mp_run(3, many_rank, NULL), 0);
}

/* ---- bad arguments, abandoned collectives ------------------------------------------ */

static int bad_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    int x[4] = {0}, y[4] = {0};
    size_t counts[2] = {1, 1}, displs[2] = {0, 1}, huge = SIZE_MAX / 2;
    RK_ERR(mp_comm_bcast(w, x, 4, 2, 1), MP_EINVAL);
    RK_ERR(mp_comm_bcast(w, NULL, 4, 0, 1), MP_EINVAL);
    RK_ERR(mp_comm_barrier(w, NAN), MP_EINVAL);
    RK_ERR(mp_comm_reduce(w, x, y, 1, MP_TYPE_d, MP_OP_BAND, 0, 1), MP_EINVAL);
    RK_ERR(mp_comm_allreduce(w, x, y, 1, MP_TYPE_i, MP_OP_MINLOC, 1), MP_EINVAL);
    RK_ERR(mp_comm_allreduce(w, x, y, 1, (mp_type)99, MP_OP_SUM, 1), MP_EINVAL);
    RK_ERR(mp_comm_allreduce(w, x, y, 1, MP_TYPE_i, (mp_op)77, 1), MP_EINVAL);
    RK_ERR(mp_comm_allreduce(w, x, x, 2, MP_TYPE_i, MP_OP_SUM, 1), MP_EINVAL); /* overlap */
    RK_ERR(mp_comm_allgather(w, x, y, huge, MP_TYPE_i, 1), MP_EOVERFLOW);
    RK_ERR(mp_comm_scatter(w, x, y, 1, MP_TYPE_i, -1, 1), MP_EINVAL);
    if (rk_me == 0) {
        RK_ERR(mp_comm_scatterv(w, x, NULL, displs, y, 1, MP_TYPE_i, 0, 1), MP_EINVAL);
        RK_ERR(mp_comm_scatterv(w, x, counts, displs, y, 0, MP_TYPE_i, 0, 1), MP_EMSGSIZE);
        RK_ERR(mp_comm_gatherv(w, x, 2, y, counts, displs, MP_TYPE_i, 0, 1), MP_EMSGSIZE);
    }
    RK_ERR(mp_op_new(NULL, NULL, true, NULL), MP_EINVAL);
    RK_ERR(mp_op_free(MP_OP_SUM), MP_EINVAL);
    /* None of these started anything: the communicator works. */
    RK_OK(mp_comm_allreduce(w, x, y, 4, MP_TYPE_i, MP_OP_SUM, 10));
    return 0;
}

TEST(coll_bad_arguments)
{
    CHECK_EQ(mp_run(2, bad_rank, NULL), 0);
}

static int abandon_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    int go = 0;
    if (rk_me == 0) {
        /* Rank 1 is busy elsewhere: the barrier times out here... */
        RK_ERR(mp_comm_barrier(w, 0.05), MP_ETIMEDOUT);
        RK_OK(mp_comm_send(w, &go, sizeof go, 1, 1, 10));
    } else {
        RK_OK(mp_comm_recv(w, &go, sizeof go, 0, 1, NULL, 10));
    }
    /* ...and the communicator's collectives are broken for both. */
    RK_ERR(mp_comm_barrier(w, 10), MP_EABANDONED);
    RK_ERR(mp_comm_bcast(w, &go, sizeof go, 0, 10), MP_EABANDONED);
    /* Point to point still works. */
    int v = rk_me, got;
    RK_OK(
        mp_comm_sendrecv(w, &v, sizeof v, 1 - rk_me, 2, &got, sizeof got, 1 - rk_me, 2, NULL, 10));
    RK_EQ(got, 1 - rk_me);
    /* A duplicate made before would be fine; one made now needs the
     * broken collectives, so it fails too. */
    mp_comm *d;
    RK_ERR(mp_comm_dup(w, 10, &d), MP_EABANDONED);
    return 0;
}

TEST(coll_timeout_abandons)
{
    CHECK_EQ(mp_run(2, abandon_rank, NULL), 0);
}

/* ---- the same checks under a launcher ----------------------------------------------- */

/* The collective checks, on whatever world this process is a rank of:
 * `mprun -n N test_comm_coll --ranks coll` or under mpiexec. */
static int coll_suite(mp_comm *w)
{
    rk_me = mp_comm_rank(w);
    RK_PASS(coll_rank(w, NULL));
    RK_PASS(split_rank(w, NULL));
    mp_comm *pair;
    RK_OK(mp_comm_split(w, rk_me < 2 ? 0 : MP_UNDEFINED, rk_me, 30, &pair));
    if (pair && mp_comm_size(pair) == 2) {
        int st = bad_rank(pair, NULL);
        if (st == 0)
            st = abandon_rank(pair, NULL);
        if (st)
            return st;
    }
    mp_comm_free(pair);
    rk_me = mp_comm_rank(w);
    RK_OK(mp_comm_barrier(w, 60));
    return 0;
}

/* Rank 1 dies (SIGKILL) while the others are in a broadcast that waits
 * forever: the launcher must end the job, the survivors with it. */
static int die_suite(mp_comm *w)
{
    rk_me = mp_comm_rank(w);
    char b[64] = {0};
    RK_OK(mp_comm_barrier(w, 60));
    if (rk_me == 1)
        raise(SIGKILL);
    RK_OK(mp_comm_bcast(w, b, sizeof b, 1, MP_FOREVER));
    return 1; /* not reached: rank 1 never sends */
}

static int ranks_main(const char *suite)
{
    mp_comm *w;
    int rc = mp_comm_world(&w);
    if (rc < 0) {
        fprintf(stderr, "test_comm_coll: no world: %s\n", mp_err_name(rc));
        return 100;
    }
    int st;
    if (strcmp(suite, "coll") == 0 || strcmp(suite, "coll-quick") == 0) {
        rk_quick = suite[4] != '\0';
        st = coll_suite(w);
    } else if (strcmp(suite, "die") == 0 && mp_comm_size(w) >= 2) {
        st = die_suite(w);
    } else {
        fprintf(stderr, "test_comm_coll: no suite %s for %d ranks\n", suite, mp_comm_size(w));
        return 2;
    }
    printf("rank %d of %d (%s): %s %s\n", mp_comm_rank(w), mp_comm_size(w), mp_comm_engine(w),
           suite, st ? "FAILED" : "ok");
    return st;
}

int main(int argc, char **argv)
{
    /* --ranks SUITE [marker]: the marker only names the job in `ps`. */
    if (argc >= 3 && strcmp(argv[1], "--ranks") == 0)
        return ranks_main(argv[2]);
    return mpt_run(argc, argv);
}
