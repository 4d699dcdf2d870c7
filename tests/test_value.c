/* Tests of Value and Array: typecodes, typed access and its range checks,
 * locked and atomic updates from several processes, a lock holder that
 * dies, and fresh images that attach the arena. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <sched.h>

#include <float.h>

/* ---- types -------------------------------------------------------------- */

TEST(typecodes_as_python_names_them)
{
    const char *codes = "bBhHiIlLqQfdc";
    const size_t sizes[] = {
        sizeof(signed char), sizeof(unsigned char),      sizeof(short), sizeof(unsigned short),
        sizeof(int),         sizeof(unsigned),           sizeof(long),  sizeof(unsigned long),
        sizeof(long long),   sizeof(unsigned long long), sizeof(float), sizeof(double),
        sizeof(char)};
    for (int i = 0; codes[i]; i++) {
        MPT_CONTEXT("typecode '%c'", codes[i]);
        int t = mp_type_from_code(codes[i]);
        CHECK_GE(t, 1);
        CHECK_EQ(mp_type_code((mp_type)t), codes[i]);
        CHECK_EQ(mp_type_size((mp_type)t), sizes[i]);
        CHECK_EQ(mp_type_is_integer((mp_type)t), codes[i] != 'f' && codes[i] != 'd');
    }
    MPT_CONTEXT_CLEAR();
    /* The seeds' note: 'd' is a double, 'i' a signed int. */
    CHECK_EQ(mp_type_from_code('d'), MP_TYPE_d);
    CHECK_EQ(mp_type_size(MP_TYPE_d), sizeof(double));
    CHECK_EQ(mp_type_from_code('i'), MP_TYPE_i);
    CHECK_ERR(mp_type_from_code('x'), MP_EINVAL);
    CHECK_ERR(mp_type_from_code('\0'), MP_EINVAL);
    CHECK_EQ(mp_type_size((mp_type)0), 0);
    CHECK_EQ(mp_type_size((mp_type)99), 0);
    CHECK_EQ(mp_type_code((mp_type)99), '\0');
    CHECK(!mp_type_is_integer((mp_type)0));
}

/* A value / an array in the default arena, checked. */
static mp_value *vnew(mp_type type, const void *init, bool lock)
{
    mp_value *v = NULL;
    CHECK_OK(mp_value_new(type, init, lock, &v));
    CHECK(v != NULL);
    return v;
}

static mp_array *anew(mp_type type, size_t n, const void *init, bool lock)
{
    mp_array *a = NULL;
    CHECK_OK(mp_array_new(type, n, init, lock, &a));
    CHECK(a != NULL);
    return a;
}

/* ---- Value ------------------------------------------------------------------ */

TEST(value_basics)
{
    int four = 4;
    mp_value *v = vnew(MP_TYPE_i, &four, true);
    CHECK(v != NULL);
    CHECK_EQ(mp_value_type(v), MP_TYPE_i);
    int64_t x = 0;
    CHECK_OK(mp_value_get_i64(v, &x));
    CHECK_EQ(x, 4);
    CHECK_OK(mp_value_set_i64(v, -64));
    int raw = 0;
    CHECK_OK(mp_value_get(v, &raw));
    CHECK_EQ(raw, -64);
    CHECK_EQ(*(int *)mp_value_ptr(v), -64);
    raw = 7;
    CHECK_OK(mp_value_set(v, &raw));
    CHECK_OK(mp_value_get_i64(v, &x));
    CHECK_EQ(x, 7);
    mp_lock *l = mp_value_get_lock(v);
    CHECK(l != NULL);
    CHECK_EQ(mp_lock_is_recursive(l), 1); /* an RLock, as Python's */
    /* The accessors take it again inside a critical section. */
    CHECK_OK(mp_lock_acquire(l, 0));
    CHECK_OK(mp_value_set_i64(v, 8));
    CHECK_OK(mp_value_get_i64(v, &x));
    CHECK_EQ(mp_lock_count(l), 1);
    CHECK_OK(mp_lock_release(l));
    CHECK_EQ(x, 8);
    mp_value_free(v);

    mp_value *r = vnew(MP_TYPE_q, NULL, false); /* RawValue */
    CHECK(mp_value_get_lock(r) == NULL);
    CHECK_OK(mp_value_get_i64(r, &x));
    CHECK_EQ(x, 0);
    mp_value_free(r);
}

TEST(value_doubles_and_floats)
{
    double d = 3.5;
    mp_value *v = vnew(MP_TYPE_d, &d, true);
    double got = 0;
    CHECK_OK(mp_value_get_double(v, &got));
    CHECK_DBL_NEAR(got, 3.5, 0);
    CHECK_OK(mp_value_set_double(v, 1e300));
    CHECK_OK(mp_value_get_double(v, &got));
    CHECK_DBL_NEAR(got, 1e300, 0);
    mp_value_free(v);

    mp_value *f = vnew(MP_TYPE_f, NULL, false);
    CHECK_OK(mp_value_set_double(f, 0.1));
    CHECK_OK(mp_value_get_double(f, &got));
    CHECK_DBL_NEAR(got, (double)0.1f, 0); /* rounded to float */
    float raw;
    CHECK_OK(mp_value_get(f, &raw));
    CHECK_DBL_NEAR(raw, 0.1f, 0);
    mp_value_free(f);
}

TEST(value_range_checks)
{
    mp_value *b = vnew(MP_TYPE_b, NULL, true);
    CHECK_OK(mp_value_set_i64(b, 127));
    CHECK_OK(mp_value_set_i64(b, -128));
    CHECK_ERR(mp_value_set_i64(b, 128), MP_ERANGE);
    CHECK_ERR(mp_value_set_i64(b, -129), MP_ERANGE);
    int64_t x;
    CHECK_OK(mp_value_get_i64(b, &x));
    CHECK_EQ(x, -128);
    uint64_t u;
    CHECK_ERR(mp_value_get_u64(b, &u), MP_ERANGE);
    CHECK_OK(mp_value_set_u64(b, 127));
    CHECK_ERR(mp_value_set_u64(b, 128), MP_ERANGE);
    mp_value_free(b);

    mp_value *ub = vnew(MP_TYPE_B, NULL, true);
    CHECK_ERR(mp_value_set_i64(ub, -1), MP_ERANGE);
    CHECK_OK(mp_value_set_i64(ub, 255));
    CHECK_ERR(mp_value_set_u64(ub, 256), MP_ERANGE);
    CHECK_OK(mp_value_get_u64(ub, &u));
    CHECK_EQ(u, 255);
    mp_value_free(ub);

    mp_value *q = vnew(MP_TYPE_Q, NULL, false);
    CHECK_OK(mp_value_set_u64(q, UINT64_MAX));
    CHECK_OK(mp_value_get_u64(q, &u));
    CHECK(u == UINT64_MAX);
    CHECK_ERR(mp_value_get_i64(q, &x), MP_ERANGE);
    CHECK_OK(mp_value_set_i64(q, INT64_MAX));
    CHECK_OK(mp_value_get_i64(q, &x));
    CHECK_EQ(x, INT64_MAX);
    mp_value_free(q);

    mp_value *sq = vnew(MP_TYPE_q, NULL, false);
    CHECK_OK(mp_value_set_i64(sq, INT64_MIN));
    CHECK_ERR(mp_value_set_u64(sq, (uint64_t)INT64_MAX + 1), MP_ERANGE);
    CHECK_ERR(mp_value_get_u64(sq, &u), MP_ERANGE);
    mp_value_free(sq);

    /* 'c' holds a byte, 0..255. */
    char c = (char)200;
    mp_value *cv = vnew(MP_TYPE_c, &c, true);
    CHECK_OK(mp_value_get_i64(cv, &x));
    CHECK_EQ(x, 200);
    CHECK_ERR(mp_value_set_i64(cv, -1), MP_ERANGE);
    mp_value_free(cv);
}

TEST(value_bad_input)
{
    mp_value *bad = mpt_not_null();
    CHECK_ERR(mp_value_new((mp_type)0, NULL, true, &bad), MP_EINVAL);
    CHECK(bad == NULL);
    bad = mpt_not_null();
    CHECK_ERR(mp_value_new((mp_type)42, NULL, true, &bad), MP_EINVAL);
    CHECK(bad == NULL);
    CHECK_ERR(mp_value_new(MP_TYPE_i, NULL, true, NULL), MP_EINVAL);
    CHECK_ERR(mp_value_new_in(NULL, MP_TYPE_i, NULL, true, NULL), MP_EINVAL);
    int64_t x;
    double d;
    CHECK_ERR(mp_value_type(NULL), MP_EINVAL);
    CHECK_ERR(mp_value_get_i64(NULL, &x), MP_EINVAL);
    CHECK_ERR(mp_value_set_i64(NULL, 1), MP_EINVAL);
    CHECK_ERR(mp_value_get(NULL, &x), MP_EINVAL);
    CHECK_ERR(mp_value_set(NULL, &x), MP_EINVAL);
    CHECK_ERR(mp_value_fetch_add(NULL, 1, NULL), MP_EINVAL);
    CHECK(mp_value_ptr(NULL) == NULL);
    CHECK(mp_value_get_lock(NULL) == NULL);
    mp_value_free(NULL);

    mp_value *i = vnew(MP_TYPE_i, NULL, true);
    CHECK_ERR(mp_value_get_double(i, &d), MP_EINVAL);
    CHECK_ERR(mp_value_set_double(i, 1.0), MP_EINVAL);
    CHECK_ERR(mp_value_get_i64(i, NULL), MP_EINVAL);
    CHECK_ERR(mp_value_get(i, NULL), MP_EINVAL);
    CHECK_ERR(mp_value_set(i, NULL), MP_EINVAL);
    CHECK_ERR(mp_value_compare_exchange(i, NULL, 1), MP_EINVAL);
    /* A value is not an array, nor the other way round. */
    CHECK_ERR(mp_array_get_i64((mp_array *)i, 0, &x), MP_EINVAL);
    CHECK_EQ(mp_array_len((mp_array *)i), 0);
    mp_array *a = anew(MP_TYPE_i, 2, NULL, true);
    CHECK_ERR(mp_value_get_i64((mp_value *)a, &x), MP_EINVAL);
    mp_array_free(a);

    mp_value *dv = vnew(MP_TYPE_d, NULL, true);
    CHECK_ERR(mp_value_get_i64(dv, &x), MP_EINVAL);
    CHECK_ERR(mp_value_set_u64(dv, 1), MP_EINVAL);
    CHECK_ERR(mp_value_fetch_add(dv, 1, NULL), MP_EINVAL);
    CHECK_ERR(mp_value_compare_exchange(dv, &x, 1), MP_EINVAL);
    mp_value_free(dv);

    /* Freed: every call refuses it (its memory is still mapped). */
    mp_value_free(i);
    CHECK_ERR(mp_value_get_i64(i, &x), MP_EINVAL);
    CHECK_ERR(mp_value_type(i), MP_EINVAL);
}

static int cube(void *arg)
{
    mp_value *num = arg;
    double x;
    if (mp_value_get_double(num, &x) != 0)
        return 1;
    return mp_value_set_double(num, x * x * x) == 0 ? 0 : 2;
}

TEST(value_cubed_in_a_child)
{
    double four = 4;
    mp_value *num = vnew(MP_TYPE_d, &four, true);
    CHECK_EQ(mpt_finish(mpt_start(cube, num)), 0);
    double got;
    CHECK_OK(mp_value_get_double(num, &got));
    CHECK_DBL_NEAR(got, 64.0, 0);
    mp_value_free(num);
}

/* A value, how many increments each process makes, and a barrier every
 * process waits at before its first (started one by one, the first could
 * be done before the last began, and a count came out right without the
 * lock or the atomics). */
typedef struct incr_arg {
    mp_value *v;
    int n;
    mp_barrier *start;
} incr_arg;

/* Python's   with v.get_lock(): v.value += 1 */
static int locked_increments(void *arg)
{
    incr_arg *a = arg;
    if (mp_barrier_wait(a->start, 30.0) < 0)
        return 3;
    mp_lock *l = mp_value_get_lock(a->v);
    for (int i = 0; i < a->n; i++) {
        int64_t x;
        if (mp_lock_acquire(l, 30.0) != 0)
            return 1;
        /* Now and then the CPU is given away between the read and the
         * write: without the lock, updates are lost. */
        if (mp_value_get_i64(a->v, &x) != 0)
            return 2;
        if (i % 16 == 0)
            sched_yield();
        if (mp_value_set_i64(a->v, x + 1) != 0)
            return 2;
        mp_lock_release(l);
    }
    return 0;
}

static int atomic_increments(void *arg)
{
    incr_arg *a = arg;
    if (mp_barrier_wait(a->start, 30.0) < 0)
        return 3;
    for (int i = 0; i < a->n; i++)
        if (mp_value_fetch_add(a->v, 1, NULL) != 0)
            return 1;
    return 0;
}

static int cas_increments(void *arg)
{
    incr_arg *a = arg;
    if (mp_barrier_wait(a->start, 30.0) < 0)
        return 3;
    for (int i = 0; i < a->n; i++) {
        int64_t seen = 0;
        if (mp_value_get_i64(a->v, &seen) != 0)
            return 1;
        int rc;
        while ((rc = mp_value_compare_exchange(a->v, &seen, seen + 1)) == 0) {
        }
        if (rc != 1)
            return 2;
    }
    return 0;
}

static void check_increments(mp_type t, bool lock, mp_target_fn fn, const char *how, int n)
{
    MPT_CONTEXT("'%c', %s, %s", mp_type_code(t), lock ? "with a lock" : "raw", how);
    enum { PROCS = 4 };
    mp_barrier *start = NULL;
    CHECK_OK(mp_barrier_new(PROCS, &start));
    incr_arg a = {vnew(t, NULL, lock), n, start};
    mp_process *ps[PROCS];
    for (int i = 0; i < PROCS; i++)
        ps[i] = mpt_start(fn, &a);
    for (int i = 0; i < PROCS; i++)
        CHECK_EQ(mpt_finish(ps[i]), 0);
    int64_t x;
    CHECK_OK(mp_value_get_i64(a.v, &x));
    CHECK_EQ(x, (int64_t)PROCS * n);
    mp_value_free(a.v);
    mp_barrier_free(start);
    MPT_CONTEXT_CLEAR();
}

/* value.h: increments under get_lock(), fetch_add and compare_exchange
 * lose nothing between four processes that start together. */
TEST(value_exact_counts_from_four_processes)
{
    check_increments(MP_TYPE_i, true, locked_increments, "get_lock", 10000);
    check_increments(MP_TYPE_q, false, atomic_increments, "fetch_add", 50000);
    check_increments(MP_TYPE_I, true, atomic_increments, "fetch_add", 50000);
    check_increments(MP_TYPE_i, false, cas_increments, "compare_exchange", 10000);
}

TEST(value_atomics_wrap_at_the_type_width)
{
    int8_t m = 127;
    mp_value *b = vnew(MP_TYPE_b, &m, false);
    int64_t old;
    CHECK_OK(mp_value_fetch_add(b, 1, &old));
    CHECK_EQ(old, 127);
    int64_t x;
    CHECK_OK(mp_value_get_i64(b, &x));
    CHECK_EQ(x, -128);
    CHECK_OK(mp_value_fetch_add(b, -1, &old));
    CHECK_EQ(old, -128);
    CHECK_OK(mp_value_get_i64(b, &x));
    CHECK_EQ(x, 127);
    mp_value_free(b);

    uint16_t hm = 65535;
    mp_value *h = vnew(MP_TYPE_H, &hm, false);
    CHECK_OK(mp_value_fetch_add(h, 2, &old));
    CHECK_EQ(old, 65535);
    CHECK_OK(mp_value_get_i64(h, &x));
    CHECK_EQ(x, 1);
    /* Compare-exchange at the type's width: 65537 is 1 in 16 bits. */
    int64_t expect = 65537;
    CHECK_EQ(mp_value_compare_exchange(h, &expect, 5), 1);
    expect = 4;
    CHECK_EQ(mp_value_compare_exchange(h, &expect, 6), 0);
    CHECK_EQ(expect, 5); /* the current value came back */
    mp_value_free(h);

    mp_value *q = vnew(MP_TYPE_Q, NULL, false);
    CHECK_OK(mp_value_fetch_add(q, -1, &old));
    CHECK_EQ(old, 0);
    uint64_t u;
    CHECK_OK(mp_value_get_u64(q, &u));
    CHECK(u == UINT64_MAX);
    CHECK_OK(mp_value_fetch_add(q, 0, &old));
    CHECK_EQ(old, -1); /* the bits of UINT64_MAX, as documented */
    mp_value_free(q);
}

typedef struct die_arg {
    mp_value *v;
} die_arg;

static int die_holding_value_lock(void *arg)
{
    die_arg *a = arg;
    mp_lock_acquire(mp_value_get_lock(a->v), 30.0);
    mp_value_set_i64(a->v, 41); /* half of an update the caller meant */
    _exit(0);
}

TEST(value_lock_holder_dies)
{
    die_arg a = {vnew(MP_TYPE_i, NULL, true)};
    CHECK_EQ(mpt_finish(mpt_start(die_holding_value_lock, &a)), 0);
    /* The access is done, and the caller learns a holder died. */
    int64_t x = 0;
    CHECK_ERR(mp_value_get_i64(a.v, &x), MP_EOWNERDEAD);
    CHECK_EQ(x, 41);
    CHECK_OK(mp_value_get_i64(a.v, &x));
    CHECK_OK(mp_value_set_i64(a.v, 42));
    mp_lock *l = mp_value_get_lock(a.v);
    CHECK_OK(mp_lock_acquire(l, 0));
    CHECK_OK(mp_lock_release(l));
    mp_value_free(a.v);
}

/* ---- Array ------------------------------------------------------------------- */

static int add_one_to_each(void *arg)
{
    mp_array *arr = arg;
    for (size_t i = 0; i < mp_array_len(arr); i++) {
        int64_t x;
        if (mp_array_get_i64(arr, i, &x) != 0 || mp_array_set_i64(arr, i, x + 1) != 0)
            return 1;
    }
    return 0;
}

TEST(array_each_element_plus_one_in_a_child)
{
    mp_array *arr = anew(MP_TYPE_i, 3, NULL, true);
    CHECK(arr != NULL);
    CHECK_EQ(mp_array_len(arr), 3);
    CHECK_EQ(mp_array_type(arr), MP_TYPE_i);
    CHECK_EQ(mpt_finish(mpt_start(add_one_to_each, arr)), 0);
    int out[3];
    CHECK_OK(mp_array_read(arr, 0, 3, out));
    for (int i = 0; i < 3; i++)
        CHECK_EQ(out[i], 1);
    mp_array_free(arr);
}

TEST(array_access_and_slices)
{
    double init[5] = {0.5, 1.5, 2.5, 3.5, 4.5};
    mp_array *a = anew(MP_TYPE_d, 5, init, true);
    double d;
    CHECK_OK(mp_array_get_double(a, 4, &d));
    CHECK_DBL_NEAR(d, 4.5, 0);
    CHECK_OK(mp_array_set_double(a, 0, -1.0));
    CHECK_ERR(mp_array_get_double(a, 5, &d), MP_ERANGE);
    CHECK_ERR(mp_array_set_double(a, 5, 0), MP_ERANGE);
    double two[2] = {9, 10};
    CHECK_OK(mp_array_write(a, 3, 2, two));
    CHECK_ERR(mp_array_write(a, 4, 2, two), MP_ERANGE);
    CHECK_ERR(mp_array_read(a, 6, 0, two), MP_ERANGE);
    CHECK_OK(mp_array_read(a, 5, 0, two)); /* empty slice at the end */
    double all[5];
    CHECK_OK(mp_array_read(a, 0, 5, all));
    CHECK_DBL_NEAR(all[0], -1.0, 0);
    CHECK_DBL_NEAR(all[1], 1.5, 0);
    CHECK_DBL_NEAR(all[3], 9.0, 0);
    CHECK_DBL_NEAR(all[4], 10.0, 0);
    CHECK_OK(mp_array_get(a, 1, &d));
    CHECK_DBL_NEAR(d, 1.5, 0);
    d = 7.25;
    CHECK_OK(mp_array_set(a, 2, &d));
    CHECK_DBL_NEAR(((double *)mp_array_ptr(a))[2], 7.25, 0);
    CHECK(mp_array_get_lock(a) != NULL);
    int64_t x;
    CHECK_ERR(mp_array_get_i64(a, 0, &x), MP_EINVAL);
    CHECK_ERR(mp_array_read(a, 0, 1, NULL), MP_EINVAL);
    CHECK_ERR(mp_array_write(a, 0, 1, NULL), MP_EINVAL);
    mp_array_free(a);

    /* A raw array: no lock, atomic element access, 64-bit unsigned. */
    mp_array *r = anew(MP_TYPE_L, 4, NULL, false);
    CHECK(mp_array_get_lock(r) == NULL);
    CHECK_OK(mp_array_set_u64(r, 3, UINT64_MAX));
    uint64_t u;
    CHECK_OK(mp_array_get_u64(r, 3, &u));
    CHECK(u == UINT64_MAX);
    unsigned long w[4] = {1, 2, 3, 4};
    CHECK_OK(mp_array_write(r, 0, 4, w));
    unsigned long back[4];
    CHECK_OK(mp_array_read(r, 0, 4, back));
    CHECK(memcmp(w, back, sizeof w) == 0);
    int64_t e = 2;
    CHECK_EQ(mp_array_compare_exchange(r, 1, &e, 20), 1);
    CHECK_OK(mp_array_get_i64(r, 1, &x));
    CHECK_EQ(x, 20);
    CHECK_ERR(mp_array_fetch_add(r, 4, 1, NULL), MP_ERANGE);
    CHECK_ERR(mp_array_compare_exchange(r, 4, &e, 1), MP_ERANGE);
    mp_array_free(r);

    mp_array *bad = mpt_not_null();
    CHECK_ERR(mp_array_new(MP_TYPE_i, 0, NULL, true, &bad), MP_EINVAL);
    CHECK(bad == NULL);
    bad = mpt_not_null();
    CHECK_ERR(mp_array_new((mp_type)0, 3, NULL, true, &bad), MP_EINVAL);
    CHECK(bad == NULL);
    bad = mpt_not_null();
    CHECK_ERR(mp_array_new(MP_TYPE_d, SIZE_MAX / 4, NULL, true, &bad), MP_ENOMEM);
    CHECK(bad == NULL);
    bad = mpt_not_null();
    CHECK_ERR(mp_array_new(MP_TYPE_d, (size_t)1 << 40, NULL, true, &bad), MP_ENOMEM);
    CHECK(bad == NULL);
    CHECK_ERR(mp_array_new(MP_TYPE_i, 1, NULL, true, NULL), MP_EINVAL);
    CHECK_ERR(mp_array_new_in(NULL, MP_TYPE_i, 1, NULL, true, NULL), MP_EINVAL);
    CHECK_EQ(mp_array_len(NULL), 0);
    CHECK_ERR(mp_array_type(NULL), MP_EINVAL);
    CHECK(mp_array_ptr(NULL) == NULL);
    CHECK(mp_array_get_lock(NULL) == NULL);
    CHECK_ERR(mp_array_get(NULL, 0, &x), MP_EINVAL);
    CHECK_ERR(mp_array_set(NULL, 0, &x), MP_EINVAL);
    CHECK_ERR(mp_array_set_i64(NULL, 0, 1), MP_EINVAL);
    CHECK_ERR(mp_array_set_u64(NULL, 0, 1), MP_EINVAL);
    CHECK_ERR(mp_array_get_u64(NULL, 0, &u), MP_EINVAL);
    mp_array_free(NULL);
}

typedef struct arr_arg {
    mp_array *a;
    int n;
    mp_barrier *start; /* as incr_arg's */
} arr_arg;

static int add_to_every_element(void *arg)
{
    arr_arg *a = arg;
    if (mp_barrier_wait(a->start, 30.0) < 0)
        return 3;
    size_t len = mp_array_len(a->a);
    for (int r = 0; r < a->n; r++)
        for (size_t i = 0; i < len; i++)
            if (mp_array_fetch_add(a->a, i, (int64_t)i + 1, NULL) != 0)
                return 1;
    return 0;
}

TEST(array_atomic_adds_from_four_processes)
{
    enum { PROCS = 4, N = 5000, LEN = 8 };
    mp_barrier *start = NULL;
    CHECK_OK(mp_barrier_new(PROCS, &start));
    arr_arg a = {anew(MP_TYPE_l, LEN, NULL, false), N, start};
    mp_process *ps[PROCS];
    for (int i = 0; i < PROCS; i++)
        ps[i] = mpt_start(add_to_every_element, &a);
    for (int i = 0; i < PROCS; i++)
        CHECK_EQ(mpt_finish(ps[i]), 0);
    for (size_t i = 0; i < LEN; i++) {
        int64_t x;
        CHECK_OK(mp_array_get_i64(a.a, i, &x));
        CHECK_EQ(x, (int64_t)PROCS * N * (int64_t)(i + 1));
    }
    mp_array_free(a.a);
    mp_barrier_free(start);
}

TEST(values_in_an_arena_of_ones_own)
{
    mp_arena *ar;
    CHECK_OK(mp_arena_new(1 << 20, &ar));
    mp_value *v;
    mp_array *a;
    CHECK_OK(mp_value_new_in(ar, MP_TYPE_h, NULL, true, &v));
    CHECK_OK(mp_array_new_in(ar, MP_TYPE_B, 1000, NULL, false, &a));
    CHECK(mp__arena_find(v) == ar);
    CHECK(mp__arena_find(a) == ar);
    size_t used;
    CHECK_OK(mp_arena_usage(ar, &used, NULL));
    CHECK(used >= 1000);
    mp_value_free(v);
    mp_array_free(a);
    CHECK_OK(mp_arena_usage(ar, &used, NULL));
    CHECK_EQ(used, 0);
    mp_arena_free(ar);
}

/* An arena with no room left: the constructors say MP_ENOMEM and leave
 * *out NULL, and a freed object makes room again. */
TEST(a_full_arena_is_reported_as_such)
{
    mp_arena *ar;
    CHECK_OK(mp_arena_new(64 << 10, &ar));
    mp_array *big;
    CHECK_OK(mp_array_new_in(ar, MP_TYPE_B, 32 << 10, NULL, false, &big));
    mp_array *more = mpt_not_null();
    CHECK_ERR(mp_array_new_in(ar, MP_TYPE_B, 32 << 10, NULL, false, &more), MP_ENOMEM);
    CHECK(more == NULL);
    /* The rest of the arena, to the last byte: not even a value fits. */
    size_t largest;
    CHECK_OK(mp_arena_usage(ar, NULL, &largest));
    mp_array *rest;
    CHECK_OK(mp_array_new_in(ar, MP_TYPE_B, largest - 128, NULL, false, &rest));
    mp_value *v = mpt_not_null();
    CHECK_ERR(mp_value_new_in(ar, MP_TYPE_B, NULL, true, &v), MP_ENOMEM);
    CHECK(v == NULL);
    mp_array_free(rest);
    CHECK_OK(mp_value_new_in(ar, MP_TYPE_B, NULL, true, &v));
    mp_value_free(v);
    mp_array_free(big);
    CHECK_OK(mp_array_new_in(ar, MP_TYPE_B, 32 << 10, NULL, false, &more));
    mp_array_free(more);
    mp_arena_free(ar);
}

typedef struct fresh_arg {
    mp_value *v;
    mp_array *a;
} fresh_arg;

static int fresh_update(void *arg)
{
    fresh_arg *f = arg;
    mp_arena *ar;
    if (mp_arena_attach(mp_process_inherited_fd(0), &ar) != 0)
        return 1;
    int64_t x;
    if (mp_value_get_i64(f->v, &x) != 0 || mp_value_set_i64(f->v, x * 10) != 0)
        return 2;
    return add_one_to_each(f->a) == 0 ? 0 : 3;
}

TEST(fresh_images_update_values_after_attaching)
{
    int three = 3;
    fresh_arg f = {vnew(MP_TYPE_i, &three, true), anew(MP_TYPE_i, 3, NULL, true)};
    int fd = mp_arena_fd(mp_arena_default());
    mp_start_method methods[] = {MP_START_SPAWN, MP_START_FORKSERVER};
    for (int m = 0; m < 2; m++) {
        MPT_CONTEXT("start method %s", m == 0 ? "spawn" : "forkserver");
        mp_process_opts o = MP_PROCESS_OPTS_INIT;
        o.start_method = methods[m];
        o.arg_size = sizeof f;
        o.fds = &fd;
        o.nfds = 1;
        mp_process *p = mpt_new_opts(fresh_update, &f, &o);
        CHECK_OK(mp_process_start(p));
        CHECK_EQ(mpt_finish(p), 0);
    }
    MPT_CONTEXT_CLEAR();
    int64_t x;
    CHECK_OK(mp_value_get_i64(f.v, &x));
    CHECK_EQ(x, 300);
    int out[3];
    CHECK_OK(mp_array_read(f.a, 0, 3, out));
    CHECK_EQ(out[0], 2);
    CHECK_EQ(out[2], 2);
    mp_value_free(f.v);
    mp_array_free(f.a);
}

MPT_MAIN()
