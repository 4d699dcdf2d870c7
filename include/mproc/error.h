/**
 * @file
 * mproc/error.h - what the last failing call objected to, in words.
 *
 * Included by <mproc.h>.
 *
 * The codes stay the error channel (mproc/common.h): a call returns
 * MP_EINVAL, and that is what a program tests.  The detail is for the
 * person reading the program's output: which call, which argument, which
 * rule, and the value it was given.
 */
#ifndef MPROC_ERROR_H
#define MPROC_ERROR_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The detail of the last call in the calling thread that failed with one:
 * the call's name, the argument and the rule it broke, and the value given,
 * as in "mp_shm_create: size must be 1 to INT64_MAX bytes (got 0)".
 *
 * Calls record a detail when they refuse their arguments or the state of
 * an object (MP_EINVAL, MP_ESTATE, MP_ERANGE, MP_ENAMETOOLONG, ...); a
 * failure that comes from the system (MP_ENOMEM, a fork or mmap error)
 * records none.  The detail stays valid, unchanged, until the next call in
 * the same thread fails with one - a call that succeeds, or fails without
 * a detail, leaves it as it is, as Python keeps the last exception - so
 * check that it names the call you made.  The empty string when no call
 * in this thread has recorded one.  Never NULL; the string belongs to the
 * library and stays readable until the thread's next failing call.  Each
 * detail is also logged at MP_LOG_DEBUG (MPROC_LOG=debug).
 *
 * Does not block; thread-safe (each thread has its own); a forked child
 * starts with its parent's.
 *
 * @return the detail text, or "" when there is none.
 */
MP_EXTERN const char *mp_last_error_detail(void);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_ERROR_H */
