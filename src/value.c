/*
 * value.c - Value and Array in shared memory, with Python's typecodes.
 *
 * DESIGN
 * A value is an array of one element; both are one block of a shared
 * arena: a header cache line (magic, type, length - written once, then
 * only read, so it stays cached in every CPU), the lock's cache line (an
 * RLock, as Python's Value has; absent in raw values), and the elements.
 * The lock and the elements are apart so that a process spinning on the
 * lock does not take the cache line of the data from the holder.
 *
 * Every element type is at most 8 bytes, so single elements are read and
 * written with relaxed atomic loads and stores of their width: a raw value
 * read while another process does fetch_add on it is never torn, and the
 * program has no data race in C11's terms.  The lock, where there is one,
 * orders those accesses with the critical sections of other processes, as
 * in Python, where each .value access takes the lock.  Atomic read-modify-
 * write operations work on the unsigned representation, so overflow wraps
 * instead of being undefined.
 */
#define _GNU_SOURCE
#include "sync.h"

#include "arena.h"
#include "log.h"

#include <float.h>

#define VF_LOCKED 1u

/* The magic numbers a value and an array begin with; destroy clears them. */
#define MP__VALUE_MAGIC 0x6d707661u /* "mpva" */
#define MP__ARRAY_MAGIC 0x6d706172u /* "mpar" */

typedef struct value_impl {
    _Atomic uint32_t magic; /* MP__VALUE_MAGIC or MP__ARRAY_MAGIC */
    uint16_t type;
    uint16_t flags;
    uint32_t elem_size;
    uint32_t pad;
    uint64_t n;
    uint8_t pad1[40];
    mp_lock lock; /* cache line 1; meaningful with VF_LOCKED */
    /* cache line 2 and on: the elements */
} value_impl;

_Static_assert(offsetof(value_impl, lock) == 64, "the lock has its own cache line");
_Static_assert(sizeof(value_impl) == 128, "elements start on a cache line");

static const struct type_info {
    char code;
    uint8_t size;
    bool is_signed;
    bool is_float;
} types[] = {
    [MP_TYPE_b] = {'b', sizeof(signed char), true, false},
    [MP_TYPE_B] = {'B', sizeof(unsigned char), false, false},
    [MP_TYPE_h] = {'h', sizeof(short), true, false},
    [MP_TYPE_H] = {'H', sizeof(unsigned short), false, false},
    [MP_TYPE_i] = {'i', sizeof(int), true, false},
    [MP_TYPE_I] = {'I', sizeof(unsigned int), false, false},
    [MP_TYPE_l] = {'l', sizeof(long), true, false},
    [MP_TYPE_L] = {'L', sizeof(unsigned long), false, false},
    [MP_TYPE_q] = {'q', sizeof(long long), true, false},
    [MP_TYPE_Q] = {'Q', sizeof(unsigned long long), false, false},
    [MP_TYPE_f] = {'f', sizeof(float), true, true},
    [MP_TYPE_d] = {'d', sizeof(double), true, true},
    /* Python's 'c' holds a byte: 0..255 whatever the signedness of char. */
    [MP_TYPE_c] = {'c', sizeof(char), false, false},
};

static const struct type_info *info_of(int type)
{
    if (type < MP_TYPE_b || type > MP_TYPE_c)
        return NULL;
    return &types[type];
}

int mp_type_from_code(char code)
{
    for (int t = MP_TYPE_b; t <= MP_TYPE_c; t++)
        if (types[t].code == code)
            return t;
    return mp__fail(MP_EINVAL, "mp_type_from_code: code must be one of bBhHiIlLqQfdc (got 0x%02x)",
                    (unsigned char)code);
}

char mp_type_code(mp_type type)
{
    const struct type_info *ti = info_of((int)type);
    return ti ? ti->code : '\0';
}

size_t mp_type_size(mp_type type)
{
    const struct type_info *ti = info_of((int)type);
    return ti ? ti->size : 0;
}

bool mp_type_is_integer(mp_type type)
{
    const struct type_info *ti = info_of((int)type);
    return ti && !ti->is_float;
}

/* ---- element access --------------------------------------------------------- */

static uint64_t load_bits(const void *p, size_t size)
{
    switch (size) {
    case 1:
        return __atomic_load_n((const uint8_t *)p, __ATOMIC_RELAXED);
    case 2:
        return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
    case 4:
        return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED);
    default:
        return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
    }
}

static void store_bits(void *p, size_t size, uint64_t bits)
{
    switch (size) {
    case 1:
        __atomic_store_n((uint8_t *)p, (uint8_t)bits, __ATOMIC_RELAXED);
        break;
    case 2:
        __atomic_store_n((uint16_t *)p, (uint16_t)bits, __ATOMIC_RELAXED);
        break;
    case 4:
        __atomic_store_n((uint32_t *)p, (uint32_t)bits, __ATOMIC_RELAXED);
        break;
    default:
        __atomic_store_n((uint64_t *)p, bits, __ATOMIC_RELAXED);
        break;
    }
}

/* An element's bits to / from its bytes in a caller's buffer.  The value
 * sits in the low-order bits of the uint64_t; going through a variable of
 * the element's own width puts the bytes right on any byte order. */
static void bits_to_buf(void *buf, size_t size, uint64_t bits)
{
    switch (size) {
    case 1: {
        uint8_t x = (uint8_t)bits;
        memcpy(buf, &x, 1);
        break;
    }
    case 2: {
        uint16_t x = (uint16_t)bits;
        memcpy(buf, &x, 2);
        break;
    }
    case 4: {
        uint32_t x = (uint32_t)bits;
        memcpy(buf, &x, 4);
        break;
    }
    default:
        memcpy(buf, &bits, 8);
        break;
    }
}

static uint64_t buf_to_bits(const void *buf, size_t size)
{
    switch (size) {
    case 1: {
        uint8_t x;
        memcpy(&x, buf, 1);
        return x;
    }
    case 2: {
        uint16_t x;
        memcpy(&x, buf, 2);
        return x;
    }
    case 4: {
        uint32_t x;
        memcpy(&x, buf, 4);
        return x;
    }
    default: {
        uint64_t x;
        memcpy(&x, buf, 8);
        return x;
    }
    }
}

/* The bits of an element of ti's type as an int64_t: sign-extended for
 * signed types, zero-extended (and possibly negative for 64-bit unsigned
 * types) otherwise. */
static int64_t extend(const struct type_info *ti, uint64_t bits)
{
    unsigned shift = 64u - 8u * ti->size;
    if (shift == 0)
        return (int64_t)bits;
    if (ti->is_signed) {
        uint64_t sign = (uint64_t)1 << (8u * ti->size - 1);
        return (int64_t)((bits ^ sign) - sign);
    }
    return (int64_t)(bits & ((uint64_t)-1 >> shift));
}

static int64_t type_min(const struct type_info *ti)
{
    /* -(2^(bits-1) - 1) - 1: never negates INT64_MIN. */
    return ti->is_signed ? -(int64_t)(((uint64_t)1 << (8u * ti->size - 1)) - 1) - 1 : 0;
}

static uint64_t type_max(const struct type_info *ti)
{
    if (ti->is_signed)
        return ((uint64_t)1 << (8u * ti->size - 1)) - 1;
    return ti->size == 8 ? UINT64_MAX : ((uint64_t)1 << (8u * ti->size)) - 1;
}

/* ---- objects ----------------------------------------------------------------- */

static value_impl *impl_of(const void *p, uint32_t magic)
{
    value_impl *v = (value_impl *)p;
    if (!p || ((uintptr_t)p & 63u) ||
        atomic_load_explicit(&v->magic, memory_order_acquire) != magic)
        return NULL;
    return v;
}

static inline unsigned char *elems(value_impl *v)
{
    return (unsigned char *)v + sizeof *v;
}

/* Makes a value (magic MP__VALUE_MAGIC) or an array in arena a (NULL: the
 * default one).  Returns it, or NULL with the reason in *rc. */
static value_impl *create(const char *fn, mp_arena *a, mp_type type, size_t n, const void *init,
                          bool lock, uint32_t magic, int *rc)
{
    const struct type_info *ti = info_of((int)type);
    if (!ti) {
        *rc = mp__fail(MP_EINVAL, "%s: type must be an mp_type (got %d)", fn, (int)type);
        return NULL;
    }
    if (n == 0) {
        *rc = mp__fail(MP_EINVAL, "%s: n must be > 0", fn);
        return NULL;
    }
    *rc = MP_ENOMEM; /* no arena holds that many */
    if (n > (SIZE_MAX - sizeof(value_impl)) / ti->size)
        return NULL;
    void *mem;
    *rc = mp__arena_alloc(a, sizeof(value_impl) + n * ti->size, &mem);
    if (*rc < 0)
        return NULL;
    value_impl *v = mem;
    v->type = (uint16_t)type;
    v->elem_size = ti->size;
    v->n = n;
    if (lock) {
        *rc = mp_rlock_init(&v->lock);
        if (*rc < 0) {
            (void)mp_arena_dealloc(NULL, v);
            return NULL;
        }
        v->flags = VF_LOCKED;
    }
    if (init)
        memcpy(elems(v), init, n * ti->size);
    /* Published last: the object is valid for whoever sees the magic. */
    atomic_store_explicit(&v->magic, magic, memory_order_release);
    return v;
}

static void destroy(value_impl *v)
{
    if (!v)
        return;
    atomic_store_explicit(&v->magic, 0, memory_order_release);
    if (v->flags & VF_LOCKED)
        (void)mp_lock_destroy(&v->lock);
    (void)mp_arena_dealloc(NULL, v);
}

/* Takes v's lock, if it has one, for one access.  Returns 0 or
 * MP_EOWNERDEAD with it held, 1 when the caller held it already or there
 * is none, or an error (see mp__lock_enter). */
static int enter(value_impl *v)
{
    return (v->flags & VF_LOCKED) ? mp__lock_enter(&v->lock) : 1;
}

static void leave(value_impl *v, int entered)
{
    if (v->flags & VF_LOCKED)
        mp__lock_leave(&v->lock, entered);
}

/* What an accessor returns after enter() gave rc: 0, or MP_EOWNERDEAD to
 * say the lock came from a dead holder. */
static int done(int rc)
{
    return rc == MP_EOWNERDEAD ? rc : 0;
}

/* The failure of a call given NULL, a freed object, or an object of
 * another kind where a value or an array was due.  These return the
 * constant rather than mp__fail()'s result, so that the callers' "rc is an
 * error but not MP_EOWNERDEAD" reasoning is visible to the analyzer. */
static int not_live(const char *fn)
{
    (void)mp__fail(MP_EINVAL,
                   "%s: the object must be a live mp_value or mp_array (it is NULL, "
                   "freed, or of another kind)",
                   fn);
    return MP_EINVAL;
}

/* The element i of v, checked; NULL with *rc set otherwise. */
static void *elem(const char *fn, value_impl *v, size_t i, int *rc)
{
    if (!v) {
        *rc = not_live(fn);
        return NULL;
    }
    if (i >= v->n) {
        (void)mp__fail(MP_ERANGE, "%s: index must be < %zu (got %zu)", fn, (size_t)v->n, i);
        *rc = MP_ERANGE;
        return NULL;
    }
    return elems(v) + i * v->elem_size;
}

static int get_buf(const char *fn, value_impl *v, size_t i, void *buf)
{
    int rc;
    void *p = elem(fn, v, i, &rc);
    if (!p)
        return rc;
    if (!buf)
        return mp__fail(MP_EINVAL, "%s: buf must not be NULL", fn);
    rc = enter(v);
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    uint64_t bits = load_bits(p, v->elem_size);
    leave(v, rc);
    bits_to_buf(buf, v->elem_size, bits);
    return done(rc);
}

static int set_bits(const char *fn, value_impl *v, size_t i, uint64_t bits)
{
    int rc;
    void *p = elem(fn, v, i, &rc);
    if (!p)
        return rc;
    rc = enter(v);
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    store_bits(p, v->elem_size, bits);
    leave(v, rc);
    return done(rc);
}

static int set_buf(const char *fn, value_impl *v, size_t i, const void *buf)
{
    if (!v)
        return not_live(fn);
    if (!buf)
        return mp__fail(MP_EINVAL, "%s: buf must not be NULL", fn);
    return set_bits(fn, v, i, buf_to_bits(buf, v->elem_size));
}

static const struct type_info *int_info(const value_impl *v)
{
    const struct type_info *ti = v ? info_of(v->type) : NULL;
    return ti && !ti->is_float ? ti : NULL;
}

static const struct type_info *float_info(const value_impl *v)
{
    const struct type_info *ti = v ? info_of(v->type) : NULL;
    return ti && ti->is_float ? ti : NULL;
}

/* The failure of an integer accessor on v, which int_info() refused. */
static int not_int(const char *fn, const value_impl *v)
{
    if (!v)
        return not_live(fn);
    (void)mp__fail(MP_EINVAL, "%s: needs an integer type (this one is '%c')", fn,
                   mp_type_code((mp_type)v->type));
    return MP_EINVAL;
}

/* The failure of a floating-point accessor on v, which float_info() refused. */
static int not_float(const char *fn, const value_impl *v)
{
    if (!v)
        return not_live(fn);
    (void)mp__fail(MP_EINVAL, "%s: needs a floating-point type ('f' or 'd'; this one is '%c')", fn,
                   mp_type_code((mp_type)v->type));
    return MP_EINVAL;
}

/* Reads element i of an integer value under its lock, sign-extended into
 * *x, and its type into *tip.  Returns 0 or MP_EOWNERDEAD (for done()), or
 * an error. */
static int read_int(const char *fn, value_impl *v, size_t i, const struct type_info **tip,
                    int64_t *x)
{
    const struct type_info *ti = int_info(v);
    if (!ti)
        return not_int(fn, v);
    int rc;
    void *p = elem(fn, v, i, &rc);
    if (!p)
        return rc;
    rc = enter(v);
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    *x = extend(ti, load_bits(p, ti->size));
    leave(v, rc);
    *tip = ti;
    return rc;
}

static int get_i64(const char *fn, value_impl *v, size_t i, int64_t *out)
{
    const struct type_info *ti;
    int64_t x;
    if (!out)
        return mp__fail(MP_EINVAL, "%s: out must not be NULL", fn);
    int rc = read_int(fn, v, i, &ti, &x);
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    if (!ti->is_signed && x < 0) /* an unsigned 64-bit value beyond INT64_MAX */
        return mp__fail(MP_ERANGE, "%s: the element, %llu, does not fit in an int64_t", fn,
                        (unsigned long long)x);
    *out = x;
    return done(rc);
}

static int get_u64(const char *fn, value_impl *v, size_t i, uint64_t *out)
{
    const struct type_info *ti;
    int64_t x;
    if (!out)
        return mp__fail(MP_EINVAL, "%s: out must not be NULL", fn);
    int rc = read_int(fn, v, i, &ti, &x);
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    if (ti->is_signed && x < 0)
        return mp__fail(MP_ERANGE, "%s: the element, %lld, does not fit in a uint64_t", fn,
                        (long long)x);
    *out = (uint64_t)x;
    return done(rc);
}

static int set_i64(const char *fn, value_impl *v, size_t i, int64_t x)
{
    const struct type_info *ti = int_info(v);
    if (!ti)
        return not_int(fn, v);
    if (x < type_min(ti) || (x > 0 && (uint64_t)x > type_max(ti)))
        return mp__fail(MP_ERANGE, "%s: x must be %lld to %llu for type '%c' (got %lld)", fn,
                        (long long)type_min(ti), (unsigned long long)type_max(ti), ti->code,
                        (long long)x);
    return set_bits(fn, v, i, (uint64_t)x);
}

static int set_u64(const char *fn, value_impl *v, size_t i, uint64_t x)
{
    const struct type_info *ti = int_info(v);
    if (!ti)
        return not_int(fn, v);
    if (x > type_max(ti))
        return mp__fail(MP_ERANGE, "%s: x must be at most %llu for type '%c' (got %llu)", fn,
                        (unsigned long long)type_max(ti), ti->code, (unsigned long long)x);
    return set_bits(fn, v, i, x);
}

static int get_double(const char *fn, value_impl *v, size_t i, double *out)
{
    const struct type_info *ti = float_info(v);
    if (!ti)
        return not_float(fn, v);
    if (!out)
        return mp__fail(MP_EINVAL, "%s: out must not be NULL", fn);
    unsigned char buf[8];
    int rc = get_buf(fn, v, i, buf);
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    if (ti->size == sizeof(float)) {
        float f;
        memcpy(&f, buf, sizeof f);
        *out = f;
    } else {
        memcpy(out, buf, sizeof *out);
    }
    return rc;
}

static int set_double(const char *fn, value_impl *v, size_t i, double x)
{
    const struct type_info *ti = float_info(v);
    if (!ti)
        return not_float(fn, v);
    /* The bits are taken here, at the size the type gives, rather than
     * through set_buf(), whose size comes from the object: the compiler
     * cannot see that the two agree and warns of an overread. */
    if (ti->size == sizeof(float)) {
        float f = (float)x;
        uint32_t b;
        memcpy(&b, &f, sizeof b);
        return set_bits(fn, v, i, b);
    }
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return set_bits(fn, v, i, b);
}

static int fetch_add(const char *fn, value_impl *v, size_t i, int64_t delta, int64_t *old)
{
    const struct type_info *ti = int_info(v);
    if (!ti)
        return not_int(fn, v);
    int rc;
    void *p = elem(fn, v, i, &rc);
    if (!p)
        return rc;
    uint64_t d = (uint64_t)delta, prev;
    /* Sequentially consistent, so that these can also serve as flags and
     * counters that order other accesses. */
    switch (ti->size) {
    case 1:
        prev = __atomic_fetch_add((uint8_t *)p, (uint8_t)d, __ATOMIC_SEQ_CST);
        break;
    case 2:
        prev = __atomic_fetch_add((uint16_t *)p, (uint16_t)d, __ATOMIC_SEQ_CST);
        break;
    case 4:
        prev = __atomic_fetch_add((uint32_t *)p, (uint32_t)d, __ATOMIC_SEQ_CST);
        break;
    default:
        prev = __atomic_fetch_add((uint64_t *)p, d, __ATOMIC_SEQ_CST);
        break;
    }
    if (old)
        *old = extend(ti, prev);
    return 0;
}

static int compare_exchange(const char *fn, value_impl *v, size_t i, int64_t *expected,
                            int64_t desired)
{
    const struct type_info *ti = int_info(v);
    if (!ti)
        return not_int(fn, v);
    if (!expected)
        return mp__fail(MP_EINVAL, "%s: expected must not be NULL", fn);
    int rc;
    void *p = elem(fn, v, i, &rc);
    if (!p)
        return rc;
    uint64_t e = (uint64_t)*expected, d = (uint64_t)desired;
    bool ok;
    switch (ti->size) {
    case 1: {
        uint8_t x = (uint8_t)e;
        ok = __atomic_compare_exchange_n((uint8_t *)p, &x, (uint8_t)d, false, __ATOMIC_SEQ_CST,
                                         __ATOMIC_SEQ_CST);
        e = x;
        break;
    }
    case 2: {
        uint16_t x = (uint16_t)e;
        ok = __atomic_compare_exchange_n((uint16_t *)p, &x, (uint16_t)d, false, __ATOMIC_SEQ_CST,
                                         __ATOMIC_SEQ_CST);
        e = x;
        break;
    }
    case 4: {
        uint32_t x = (uint32_t)e;
        ok = __atomic_compare_exchange_n((uint32_t *)p, &x, (uint32_t)d, false, __ATOMIC_SEQ_CST,
                                         __ATOMIC_SEQ_CST);
        e = x;
        break;
    }
    default:
        ok = __atomic_compare_exchange_n((uint64_t *)p, &e, d, false, __ATOMIC_SEQ_CST,
                                         __ATOMIC_SEQ_CST);
        break;
    }
    if (!ok)
        *expected = extend(ti, e);
    return ok ? 1 : 0;
}

/* ---- Value ------------------------------------------------------------------------ */

#define VAL(v) impl_of((v), MP__VALUE_MAGIC)

int mp_value_new_in(mp_arena *a, mp_type type, const void *init, bool lock, mp_value **out)
{
    MP__NONNULL(out);
    int rc;
    *out = (mp_value *)create(__func__, a, type, 1, init, lock, MP__VALUE_MAGIC, &rc);
    return rc;
}

int mp_value_new(mp_type type, const void *init, bool lock, mp_value **out)
{
    return mp_value_new_in(NULL, type, init, lock, out);
}

void mp_value_free(mp_value *v)
{
    destroy(VAL(v));
}

int mp_value_type(const mp_value *v)
{
    value_impl *vi = VAL(v);
    return vi ? vi->type : not_live(__func__);
}

mp_lock *mp_value_get_lock(mp_value *v)
{
    value_impl *vi = VAL(v);
    return vi && (vi->flags & VF_LOCKED) ? &vi->lock : NULL;
}

void *mp_value_ptr(mp_value *v)
{
    value_impl *vi = VAL(v);
    return vi ? elems(vi) : NULL;
}

int mp_value_get(mp_value *v, void *buf)
{
    return get_buf(__func__, VAL(v), 0, buf);
}

int mp_value_set(mp_value *v, const void *buf)
{
    return set_buf(__func__, VAL(v), 0, buf);
}

int mp_value_get_i64(mp_value *v, int64_t *out)
{
    return get_i64(__func__, VAL(v), 0, out);
}

int mp_value_set_i64(mp_value *v, int64_t x)
{
    return set_i64(__func__, VAL(v), 0, x);
}

int mp_value_get_u64(mp_value *v, uint64_t *out)
{
    return get_u64(__func__, VAL(v), 0, out);
}

int mp_value_set_u64(mp_value *v, uint64_t x)
{
    return set_u64(__func__, VAL(v), 0, x);
}

int mp_value_get_double(mp_value *v, double *out)
{
    return get_double(__func__, VAL(v), 0, out);
}

int mp_value_set_double(mp_value *v, double x)
{
    return set_double(__func__, VAL(v), 0, x);
}

int mp_value_fetch_add(mp_value *v, int64_t delta, int64_t *old)
{
    return fetch_add(__func__, VAL(v), 0, delta, old);
}

int mp_value_compare_exchange(mp_value *v, int64_t *expected, int64_t desired)
{
    return compare_exchange(__func__, VAL(v), 0, expected, desired);
}

/* ---- Array ------------------------------------------------------------------------ */

#define ARR(a) impl_of((a), MP__ARRAY_MAGIC)

int mp_array_new_in(mp_arena *ar, mp_type type, size_t n, const void *init, bool lock,
                    mp_array **out)
{
    MP__NONNULL(out);
    int rc;
    *out = (mp_array *)create(__func__, ar, type, n, init, lock, MP__ARRAY_MAGIC, &rc);
    return rc;
}

int mp_array_new(mp_type type, size_t n, const void *init, bool lock, mp_array **out)
{
    return mp_array_new_in(NULL, type, n, init, lock, out);
}

void mp_array_free(mp_array *a)
{
    destroy(ARR(a));
}

int mp_array_type(const mp_array *a)
{
    value_impl *vi = ARR(a);
    return vi ? vi->type : not_live(__func__);
}

size_t mp_array_len(const mp_array *a)
{
    value_impl *vi = ARR(a);
    return vi ? (size_t)vi->n : 0;
}

mp_lock *mp_array_get_lock(mp_array *a)
{
    value_impl *vi = ARR(a);
    return vi && (vi->flags & VF_LOCKED) ? &vi->lock : NULL;
}

void *mp_array_ptr(mp_array *a)
{
    value_impl *vi = ARR(a);
    return vi ? elems(vi) : NULL;
}

int mp_array_get(mp_array *a, size_t i, void *buf)
{
    return get_buf(__func__, ARR(a), i, buf);
}

int mp_array_set(mp_array *a, size_t i, const void *buf)
{
    return set_buf(__func__, ARR(a), i, buf);
}

/* Bulk copies: one memcpy under the lock, or element by element with
 * atomic accesses for a raw array, which other processes may be updating
 * atomically at the same time.  Reading and writing are separate functions
 * over one checked span, so that no path - inlined or not - hands memcpy
 * a NULL standing for "the other direction". */
static unsigned char *span(const char *fn, value_impl *v, size_t start, size_t n, const void *buf,
                           int *rc)
{
    if (!v) {
        *rc = not_live(fn);
        return NULL;
    }
    if (!buf) {
        (void)mp__fail(MP_EINVAL, "%s: buf must not be NULL", fn);
        *rc = MP_EINVAL;
        return NULL;
    }
    if (start > v->n || n > v->n - start) {
        (void)mp__fail(MP_ERANGE, "%s: start + n must be at most %zu (got %zu + %zu)", fn,
                       (size_t)v->n, start, n);
        *rc = MP_ERANGE;
        return NULL;
    }
    return elems(v) + start * v->elem_size;
}

static int bulk_read(const char *fn, value_impl *v, size_t start, size_t n, unsigned char *buf)
{
    int rc;
    const unsigned char *p = span(fn, v, start, n, buf, &rc);
    if (!p)
        return rc;
    size_t es = v->elem_size;
    rc = enter(v);
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    if (v->flags & VF_LOCKED)
        memcpy(buf, p, n * es);
    else
        for (size_t i = 0; i < n; i++)
            bits_to_buf(buf + i * es, es, load_bits(p + i * es, es));
    leave(v, rc);
    return done(rc);
}

static int bulk_write(const char *fn, value_impl *v, size_t start, size_t n,
                      const unsigned char *buf)
{
    int rc;
    unsigned char *p = span(fn, v, start, n, buf, &rc);
    if (!p)
        return rc;
    size_t es = v->elem_size;
    rc = enter(v);
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    if (v->flags & VF_LOCKED)
        memcpy(p, buf, n * es);
    else
        for (size_t i = 0; i < n; i++)
            store_bits(p + i * es, es, buf_to_bits(buf + i * es, es));
    leave(v, rc);
    return done(rc);
}

int mp_array_read(mp_array *a, size_t start, size_t n, void *buf)
{
    return bulk_read(__func__, ARR(a), start, n, buf);
}

int mp_array_write(mp_array *a, size_t start, size_t n, const void *buf)
{
    return bulk_write(__func__, ARR(a), start, n, buf);
}

int mp_array_get_i64(mp_array *a, size_t i, int64_t *out)
{
    return get_i64(__func__, ARR(a), i, out);
}

int mp_array_set_i64(mp_array *a, size_t i, int64_t x)
{
    return set_i64(__func__, ARR(a), i, x);
}

int mp_array_get_u64(mp_array *a, size_t i, uint64_t *out)
{
    return get_u64(__func__, ARR(a), i, out);
}

int mp_array_set_u64(mp_array *a, size_t i, uint64_t x)
{
    return set_u64(__func__, ARR(a), i, x);
}

int mp_array_get_double(mp_array *a, size_t i, double *out)
{
    return get_double(__func__, ARR(a), i, out);
}

int mp_array_set_double(mp_array *a, size_t i, double x)
{
    return set_double(__func__, ARR(a), i, x);
}

int mp_array_fetch_add(mp_array *a, size_t i, int64_t delta, int64_t *old)
{
    return fetch_add(__func__, ARR(a), i, delta, old);
}

int mp_array_compare_exchange(mp_array *a, size_t i, int64_t *expected, int64_t desired)
{
    return compare_exchange(__func__, ARR(a), i, expected, desired);
}
