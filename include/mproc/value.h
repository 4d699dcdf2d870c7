/**
 * @file
 * mproc/value.h - typed values and arrays in shared memory (Python's
 * multiprocessing.Value, Array, RawValue and RawArray), with the atomic
 * operations Python lacks.
 *
 * Included by <mproc.h>.
 *
 * A value or array lives in a shared arena (the default one, or one given
 * to the _in variants), so a child started after it was created - or given
 * the arena, see mproc/shm.h - reads and writes the same memory.  With a
 * lock (the default, as in Python) the getters and setters take the
 * object's RLock around each access, and mp_value_get_lock() returns it for
 * a longer critical section:
 *
 *     mp_lock *l = mp_value_get_lock(v);      Python:  with v.get_lock():
 *     mp_lock_acquire(l, MP_FOREVER);                      v.value += 1
 *     mp_value_get_i64(v, &x);
 *     mp_value_set_i64(v, x + 1);
 *     mp_lock_release(l);
 *
 * or, for integers, one lock-free atomic step: mp_value_fetch_add(v, 1, NULL).
 * Atomic operations never take the lock: do not mix them with updates made
 * under the lock on the same element.
 *
 * Errors common to every call: MP_EINVAL for NULL, a destroyed object, an
 * object of the other kind (an array given to mp_value_*), or a type the
 * call does not handle (mp_value_get_double on an int); MP_ERANGE for an
 * index beyond the end or a number the type cannot hold.  A getter or
 * setter that finds the lock's previous holder dead does its work, marks
 * the lock consistent, and returns MP_EOWNERDEAD, so that the caller knows
 * a process died in the middle of an update.
 *
 * After fork: the data is shared; the lock's story is mp_lock's.
 */
#ifndef MPROC_VALUE_H
#define MPROC_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "shm.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Element types, named by Python's typecodes (module array / ctypes):
 * 'i' is a signed int, 'd' a double-precision float.
 */
typedef enum mp_type {
    MP_TYPE_b = 1, /**< signed char */
    MP_TYPE_B,     /**< unsigned char */
    MP_TYPE_h,     /**< short */
    MP_TYPE_H,     /**< unsigned short */
    MP_TYPE_i,     /**< int */
    MP_TYPE_I,     /**< unsigned int */
    MP_TYPE_l,     /**< long */
    MP_TYPE_L,     /**< unsigned long */
    MP_TYPE_q,     /**< long long */
    MP_TYPE_Q,     /**< unsigned long long */
    MP_TYPE_f,     /**< float */
    MP_TYPE_d,     /**< double */
    MP_TYPE_c,     /**< char (Python: a bytes object of length 1) */
    /** Value-index pairs, for the reductions MP_OP_MINLOC and MP_OP_MAXLOC
     * of mproc/comm.h only: Value and Array refuse them, and
     * mp_type_size() gives 0 for them. */
    MP_TYPE_FLOAT_INT = 32, /**< mp_float_int */
    MP_TYPE_DOUBLE_INT,     /**< mp_double_int */
    MP_TYPE_LONG_INT,       /**< mp_long_int */
    MP_TYPE_2INT,           /**< mp_2int */
    MP_TYPE_SHORT_INT       /**< mp_short_int */
} mp_type;

/** The type for a typecode ('i' -> MP_TYPE_i), or MP_EINVAL. */
MP_EXTERN int mp_type_from_code(char code);

/** The typecode of a type ('d' for MP_TYPE_d), or '\0' for an invalid one. */
MP_EXTERN char mp_type_code(mp_type type);

/** The size in bytes of one element (sizeof(int) for MP_TYPE_i), 0 for an
 * invalid type. */
MP_EXTERN size_t mp_type_size(mp_type type);

/** Whether the type is an integer type (every type but f and d): the types
 * with the _i64/_u64 accessors and the atomic operations. */
MP_EXTERN bool mp_type_is_integer(mp_type type);

/* ---- Value ------------------------------------------------------------------ */

/** A shared value of one mp_type, with an optional lock (Python's Value).  Opaque. */
typedef struct mp_value mp_value;

/** @{ */
/**
 * Makes a value of type in the default arena (mp_value_new_in: in arena a;
 * NULL there means the default arena too), initialised from
 * mp_type_size(type) bytes at init (NULL: zero), with an RLock when lock is
 * true (Python's Value) or none (RawValue), and stores it in *out; the
 * caller frees it (mp_value_free).  Returns 0; MP_EINVAL for an invalid
 * type or a NULL out; MP_ENOMEM when the arena has no room; the default
 * arena's creation error (MP_EMFILE, ...); MP_ENOTRECOVERABLE for an arena
 * broken by a process that died inside its allocator.  On failure *out is
 * NULL (when out is not).  Safe across processes and threads.
 */
MP_EXTERN int mp_value_new(mp_type type, const void *init, bool lock, mp_value **out);
MP_EXTERN int mp_value_new_in(mp_arena *a, mp_type type, const void *init, bool lock,
                              mp_value **out);
/** @} */

/** Frees the value (NULL is a no-op); no process may use it afterwards. */
MP_EXTERN void mp_value_free(mp_value *v);

/** The value's type (an mp_type, > 0), or MP_EINVAL. */
MP_EXTERN int mp_value_type(const mp_value *v);

/** The value's lock, NULL for a value made without one (or invalid). */
MP_EXTERN mp_lock *mp_value_get_lock(mp_value *v);

/** The value's memory, for access under the lock; NULL if invalid. */
MP_EXTERN void *mp_value_ptr(mp_value *v);

/** @{ */
/** Copies the value to / from mp_type_size() bytes at buf. */
MP_EXTERN int mp_value_get(mp_value *v, void *buf);
MP_EXTERN int mp_value_set(mp_value *v, const void *buf);
/** @} */

/** @{ */
/** Integer types: the value as a signed or an unsigned 64-bit integer
 * (MP_ERANGE if it does not fit, or in the setter if the type cannot hold
 * x). */
MP_EXTERN int mp_value_get_i64(mp_value *v, int64_t *out);
MP_EXTERN int mp_value_set_i64(mp_value *v, int64_t x);
MP_EXTERN int mp_value_get_u64(mp_value *v, uint64_t *out);
MP_EXTERN int mp_value_set_u64(mp_value *v, uint64_t x);
/** @} */

/** @{ */
/** f and d: the value as a double (the setter rounds to float for f). */
MP_EXTERN int mp_value_get_double(mp_value *v, double *out);
MP_EXTERN int mp_value_set_double(mp_value *v, double x);
/** @} */

/**
 * Integer types, lock-free and atomic across processes: adds delta,
 * wrapping around at the type's width like unsigned arithmetic, and stores
 * the previous value in *old (may be NULL), sign- or zero-extended by the
 * type's signedness.  Returns 0.
 */
MP_EXTERN int mp_value_fetch_add(mp_value *v, int64_t delta, int64_t *old);

/**
 * Integer types, lock-free and atomic: if the value equals *expected
 * (both taken at the type's width), stores desired and returns 1;
 * otherwise stores the current value in *expected and returns 0.
 */
MP_EXTERN int mp_value_compare_exchange(mp_value *v, int64_t *expected, int64_t desired);

/* ---- Array ------------------------------------------------------------------ */

/** A shared array of n elements of one mp_type, with an optional lock (Python's Array).  Opaque. */
typedef struct mp_array mp_array;

/** @{ */
/**
 * Makes an array of n elements of type, initialised from n elements at
 * init (NULL: zeros), with an RLock (Python's Array) or none (RawArray), in
 * the default arena (mp_array_new_in: in arena a), and stores it in *out.
 * Returns 0, or as mp_value_new(); MP_EINVAL also for n == 0, MP_ENOMEM
 * for n beyond what any arena holds.  On failure *out is NULL.
 */
MP_EXTERN int mp_array_new(mp_type type, size_t n, const void *init, bool lock, mp_array **out);
MP_EXTERN int mp_array_new_in(mp_arena *a, mp_type type, size_t n, const void *init, bool lock,
                              mp_array **out);
/** @} */

/** Frees the array (NULL is a no-op); no process may use it afterwards. */
MP_EXTERN void mp_array_free(mp_array *a);

/** The element type, or MP_EINVAL. */
MP_EXTERN int mp_array_type(const mp_array *a);

/** The number of elements; 0 if invalid. */
MP_EXTERN size_t mp_array_len(const mp_array *a);

/** @{ */
/** The array's lock (NULL without one), and its elements for bulk work
 * under that lock. */
MP_EXTERN mp_lock *mp_array_get_lock(mp_array *a);
MP_EXTERN void *mp_array_ptr(mp_array *a);
/** @} */

/** @{ */
/** Element i, to / from mp_type_size() bytes at buf. */
MP_EXTERN int mp_array_get(mp_array *a, size_t i, void *buf);
MP_EXTERN int mp_array_set(mp_array *a, size_t i, const void *buf);
/** @} */

/** @{ */
/** Elements start .. start+n-1 to / from buf, under one acquisition of the
 * lock (Python's slices). */
MP_EXTERN int mp_array_read(mp_array *a, size_t start, size_t n, void *buf);
MP_EXTERN int mp_array_write(mp_array *a, size_t start, size_t n, const void *buf);
/** @} */

/** @{ */
/** Element i, as for the mp_value_ accessors of the same names. */
MP_EXTERN int mp_array_get_i64(mp_array *a, size_t i, int64_t *out);
MP_EXTERN int mp_array_set_i64(mp_array *a, size_t i, int64_t x);
MP_EXTERN int mp_array_get_u64(mp_array *a, size_t i, uint64_t *out);
MP_EXTERN int mp_array_set_u64(mp_array *a, size_t i, uint64_t x);
MP_EXTERN int mp_array_get_double(mp_array *a, size_t i, double *out);
MP_EXTERN int mp_array_set_double(mp_array *a, size_t i, double x);
MP_EXTERN int mp_array_fetch_add(mp_array *a, size_t i, int64_t delta, int64_t *old);
MP_EXTERN int mp_array_compare_exchange(mp_array *a, size_t i, int64_t *expected, int64_t desired);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* MPROC_VALUE_H */
