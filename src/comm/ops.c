/*
 * ops.c - element types and reduction operations for the collectives:
 * element sizes, which operation applies to which type, the kernels that
 * combine two arrays, and user operations.
 *
 * Every kernel computes inout[i] = in[i] op inout[i], MPI's convention, in
 * which in holds the lower ranks' contribution: engines that keep rank
 * order get the same result for operations that do not commute.
 *
 * Integer sums and products wrap around at the type's width, as unsigned
 * arithmetic does (a signed overflow would be undefined behaviour in C):
 * the arithmetic is done on the unsigned type of the same width and
 * converted back.  min and max compare with C's < and >; what a NaN gives
 * is whatever those comparisons make of it.
 */
#define _GNU_SOURCE
#include "engine.h"
#include "log.h"

#define USER_BASE MP__OP_USER_BASE
#define USER_MAX  MP__OP_USER_MAX

static struct {
    pthread_mutex_t lock;
    struct user_op {
        mp_op_fn fn;
        void *ctx;
        bool commute;
        bool used;
    } ops[USER_MAX];
} users = {.lock = PTHREAD_MUTEX_INITIALIZER};

int mp__comm_type_size(mp_type type, size_t *size)
{
    size_t s = mp_type_size(type);
    switch ((int)type) {
    case MP_TYPE_FLOAT_INT:
        s = sizeof(mp_float_int);
        break;
    case MP_TYPE_DOUBLE_INT:
        s = sizeof(mp_double_int);
        break;
    case MP_TYPE_LONG_INT:
        s = sizeof(mp_long_int);
        break;
    case MP_TYPE_2INT:
        s = sizeof(mp_2int);
        break;
    case MP_TYPE_SHORT_INT:
        s = sizeof(mp_short_int);
        break;
    default:
        break;
    }
    if (s == 0)
        return MP_EINVAL;
    *size = s;
    return 0;
}

static bool is_pair(mp_type t)
{
    return t >= MP_TYPE_FLOAT_INT && t <= MP_TYPE_SHORT_INT;
}

static bool is_integer(mp_type t)
{
    return mp_type_size(t) != 0 && mp_type_is_integer(t);
}

int mp__op_check(mp_op op, mp_type type)
{
    size_t sz;
    if (mp__comm_type_size(type, &sz) < 0)
        return MP_EINVAL;
    switch (op) {
    case MP_OP_SUM:
    case MP_OP_PROD:
    case MP_OP_MIN:
    case MP_OP_MAX:
        return is_pair(type) ? MP_EINVAL : 0;
    case MP_OP_MINLOC:
    case MP_OP_MAXLOC:
        return is_pair(type) ? 0 : MP_EINVAL;
    case MP_OP_LAND:
    case MP_OP_LOR:
    case MP_OP_LXOR:
    case MP_OP_BAND:
    case MP_OP_BOR:
    case MP_OP_BXOR:
        return is_integer(type) ? 0 : MP_EINVAL;
    default:
        break;
    }
    mp_op_fn fn;
    void *ctx;
    bool commute;
    return mp__op_user(op, &fn, &ctx, &commute);
}

/* ---- kernels ---------------------------------------------------------------- */

/* NOLINTBEGIN(bugprone-macro-parentheses): the arguments are types. */

/* The arithmetic ones, for a type T whose unsigned twin (for wrapping) is
 * U; for floating types U is T itself. */
#define ARITH_KERNELS(name, T, U)                                  \
    static void sum_##name(const void *in, void *inout, size_t n)  \
    {                                                              \
        const T *a = in;                                           \
        T *b = inout;                                              \
        for (size_t i = 0; i < n; i++)                             \
            b[i] = (T)((U)a[i] + (U)b[i]);                         \
    }                                                              \
    static void prod_##name(const void *in, void *inout, size_t n) \
    {                                                              \
        const T *a = in;                                           \
        T *b = inout;                                              \
        for (size_t i = 0; i < n; i++)                             \
            b[i] = (T)((U)a[i] * (U)b[i]);                         \
    }                                                              \
    static void min_##name(const void *in, void *inout, size_t n)  \
    {                                                              \
        const T *a = in;                                           \
        T *b = inout;                                              \
        for (size_t i = 0; i < n; i++)                             \
            b[i] = b[i] < a[i] ? b[i] : a[i];                      \
    }                                                              \
    static void max_##name(const void *in, void *inout, size_t n)  \
    {                                                              \
        const T *a = in;                                           \
        T *b = inout;                                              \
        for (size_t i = 0; i < n; i++)                             \
            b[i] = b[i] > a[i] ? b[i] : a[i];                      \
    }

/* The logical and bitwise ones, integer types only. */
#define INT_KERNELS(name, T)                                       \
    static void land_##name(const void *in, void *inout, size_t n) \
    {                                                              \
        const T *a = in;                                           \
        T *b = inout;                                              \
        for (size_t i = 0; i < n; i++)                             \
            b[i] = (T)(a[i] && b[i]);                              \
    }                                                              \
    static void lor_##name(const void *in, void *inout, size_t n)  \
    {                                                              \
        const T *a = in;                                           \
        T *b = inout;                                              \
        for (size_t i = 0; i < n; i++)                             \
            b[i] = (T)(a[i] || b[i]);                              \
    }                                                              \
    static void lxor_##name(const void *in, void *inout, size_t n) \
    {                                                              \
        const T *a = in;                                           \
        T *b = inout;                                              \
        for (size_t i = 0; i < n; i++)                             \
            b[i] = (T)(!a[i] != !b[i]);                            \
    }                                                              \
    static void band_##name(const void *in, void *inout, size_t n) \
    {                                                              \
        const T *a = in;                                           \
        T *b = inout;                                              \
        for (size_t i = 0; i < n; i++)                             \
            b[i] = (T)(a[i] & b[i]);                               \
    }                                                              \
    static void bor_##name(const void *in, void *inout, size_t n)  \
    {                                                              \
        const T *a = in;                                           \
        T *b = inout;                                              \
        for (size_t i = 0; i < n; i++)                             \
            b[i] = (T)(a[i] | b[i]);                               \
    }                                                              \
    static void bxor_##name(const void *in, void *inout, size_t n) \
    {                                                              \
        const T *a = in;                                           \
        T *b = inout;                                              \
        for (size_t i = 0; i < n; i++)                             \
            b[i] = (T)(a[i] ^ b[i]);                               \
    }

/* minloc / maxloc on a value-index pair struct P. */
#define LOC_KERNELS(name, P)                                                                      \
    static void minloc_##name(const void *in, void *inout, size_t n)                              \
    {                                                                                             \
        const P *a = in;                                                                          \
        P *b = inout;                                                                             \
        for (size_t i = 0; i < n; i++)                                                            \
            if (a[i].value < b[i].value || (a[i].value == b[i].value && a[i].index < b[i].index)) \
                b[i] = a[i];                                                                      \
    }                                                                                             \
    static void maxloc_##name(const void *in, void *inout, size_t n)                              \
    {                                                                                             \
        const P *a = in;                                                                          \
        P *b = inout;                                                                             \
        for (size_t i = 0; i < n; i++)                                                            \
            if (a[i].value > b[i].value || (a[i].value == b[i].value && a[i].index < b[i].index)) \
                b[i] = a[i];                                                                      \
    }

/* NOLINTEND(bugprone-macro-parentheses) */

ARITH_KERNELS(b, signed char, unsigned char)
ARITH_KERNELS(B, unsigned char, unsigned char)
ARITH_KERNELS(h, short, unsigned short)
ARITH_KERNELS(H, unsigned short, unsigned short)
ARITH_KERNELS(i, int, unsigned int)
ARITH_KERNELS(I, unsigned int, unsigned int)
ARITH_KERNELS(l, long, unsigned long)
ARITH_KERNELS(L, unsigned long, unsigned long)
ARITH_KERNELS(q, long long, unsigned long long)
ARITH_KERNELS(Q, unsigned long long, unsigned long long)
ARITH_KERNELS(f, float, float)
ARITH_KERNELS(d, double, double)
ARITH_KERNELS(c, char, unsigned char)
INT_KERNELS(b, signed char)
INT_KERNELS(B, unsigned char)
INT_KERNELS(h, short)
INT_KERNELS(H, unsigned short)
INT_KERNELS(i, int)
INT_KERNELS(I, unsigned int)
INT_KERNELS(l, long)
INT_KERNELS(L, unsigned long)
INT_KERNELS(q, long long)
INT_KERNELS(Q, unsigned long long)
INT_KERNELS(c, char)
LOC_KERNELS(fi, mp_float_int)
LOC_KERNELS(di, mp_double_int)
LOC_KERNELS(li, mp_long_int)
LOC_KERNELS(ii, mp_2int)
LOC_KERNELS(si, mp_short_int)

typedef void (*kernel)(const void *in, void *inout, size_t n);

/* Kernels by type, in the order of the op enum from MP_OP_SUM; NULL where
 * the op does not apply (mp__op_check refuses those first). */
#define ROW_INT(n)                                                                              \
    {                                                                                           \
        sum_##n, prod_##n, min_##n, max_##n, NULL, NULL, land_##n, lor_##n, lxor_##n, band_##n, \
            bor_##n, bxor_##n                                                                   \
    }
#define ROW_FLT(n)                                                                          \
    {                                                                                       \
        sum_##n, prod_##n, min_##n, max_##n, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
    }
#define ROW_LOC(n)                                                                         \
    {                                                                                      \
        NULL, NULL, NULL, NULL, minloc_##n, maxloc_##n, NULL, NULL, NULL, NULL, NULL, NULL \
    }
#define NOPS 12

static const kernel scalar_kernels[][NOPS] = {
    [MP_TYPE_b] = ROW_INT(b), [MP_TYPE_B] = ROW_INT(B), [MP_TYPE_h] = ROW_INT(h),
    [MP_TYPE_H] = ROW_INT(H), [MP_TYPE_i] = ROW_INT(i), [MP_TYPE_I] = ROW_INT(I),
    [MP_TYPE_l] = ROW_INT(l), [MP_TYPE_L] = ROW_INT(L), [MP_TYPE_q] = ROW_INT(q),
    [MP_TYPE_Q] = ROW_INT(Q), [MP_TYPE_f] = ROW_FLT(f), [MP_TYPE_d] = ROW_FLT(d),
    [MP_TYPE_c] = ROW_INT(c),
};

static const kernel pair_kernels[][NOPS] = {
    ROW_LOC(fi), ROW_LOC(di), ROW_LOC(li), ROW_LOC(ii), ROW_LOC(si),
};

void mp__op_apply(mp_op op, mp_type type, const void *in, void *inout, size_t count)
{
    if (count == 0)
        return;
    int k = (int)op - MP_OP_SUM;
    if (k >= 0 && k < NOPS) {
        kernel fn = NULL;
        if (is_pair(type))
            fn = pair_kernels[type - MP_TYPE_FLOAT_INT][k];
        else if ((size_t)type < MP__ARRAY_SIZE(scalar_kernels))
            fn = scalar_kernels[type][k];
        if (fn)
            fn(in, inout, count);
        return;
    }
    mp_op_fn ufn;
    void *ctx;
    bool commute;
    if (mp__op_user(op, &ufn, &ctx, &commute) == 0)
        ufn(in, inout, count, type, ctx);
}

/* ---- user operations ------------------------------------------------------------ */

int mp_op_new(mp_op_fn fn, void *ctx, bool commute, mp_op *out)
{
    MP__NONNULL(fn);
    MP__NONNULL(out);
    pthread_mutex_lock(&users.lock);
    int rc = MP_ENOSPC;
    for (int i = 0; i < USER_MAX; i++) {
        if (!users.ops[i].used) {
            users.ops[i] = (struct user_op){fn, ctx, commute, true};
            *out = (mp_op)(USER_BASE + i);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&users.lock);
    return rc;
}

int mp_op_free(mp_op op)
{
    int i = (int)op - USER_BASE;
    if (i < 0 || i >= USER_MAX)
        return mp__fail(MP_EINVAL, "mp_op_free: op must come from mp_op_new (got %d)", (int)op);
    pthread_mutex_lock(&users.lock);
    int rc = users.ops[i].used ? 0 : MP_EINVAL;
    users.ops[i].used = false;
    pthread_mutex_unlock(&users.lock);
    return rc;
}

int mp__op_user(mp_op op, mp_op_fn *fn, void **ctx, bool *commute)
{
    int i = (int)op - USER_BASE;
    if (i < 0 || i >= USER_MAX)
        return MP_EINVAL;
    pthread_mutex_lock(&users.lock);
    struct user_op u = users.ops[i];
    pthread_mutex_unlock(&users.lock);
    if (!u.used)
        return MP_EINVAL;
    *fn = u.fn;
    *ctx = u.ctx;
    *commute = u.commute;
    return 0;
}
