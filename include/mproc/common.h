/**
 * @file
 * mproc/common.h - what every part of mproc shares: the export macro, the
 * timeout convention and the error model.
 *
 * Included by <mproc.h>; not meant to be included on its own.
 */
#ifndef MPROC_COMMON_H
#define MPROC_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Marks a declaration as part of the public API.  The library is built with
 * symbols hidden by default, so only what carries MP_EXTERN is exported
 * from libmproc.so; outside the library's own build it expands to nothing.
 */
#if defined(MPROC_BUILDING) && defined(__GNUC__)
#define MP_EXTERN __attribute__((visibility("default")))
#else
#define MP_EXTERN
#endif

/**
 * A timeout that waits without limit (any negative timeout does).
 *
 * Times.  Every call that can block takes a timeout, and a few calls and
 * options take a duration (a grace period, a time limit, an interval): both
 * are seconds in a double, measured on CLOCK_MONOTONIC so that changes to
 * the wall clock never shorten or stretch them, and every one of them is
 * read by this one rule:
 *
 *   - NaN is refused: the call returns MP_EINVAL and does nothing (an
 *     options struct holding one makes its constructor fail so);
 *   - +INFINITY, and any value too large for the clock to count (beyond
 *     about 292 years), means "no limit";
 *   - a finite positive value is rounded to the nearest nanosecond;
 *   - a timeout below 0 (MP_FOREVER; -INFINITY too) waits without limit,
 *     and a timeout of 0 (or -0.0) never blocks: the call tries once and,
 *     where it would have to wait, returns what its declaration names for
 *     that (MP_ETIMEDOUT, or MP_EAGAIN for pipes and queues);
 *   - a duration below 0 is MP_EINVAL, except where its declaration gives
 *     negative values a meaning; each declaration says what 0 means.
 *
 * A wait that runs out returns MP_ETIMEDOUT.
 */
#define MP_FOREVER (-1.0)

/**
 * The table of error codes, one XX(name, code, message) entry per code:
 * the mp_errno enum, mp_strerror() and mp_err_name() are all generated
 * from it, so that a code, its name and its message cannot drift apart.
 *
 * Errors.  A call that can fail returns int: 0 (or a non-negative count) on
 * success, a negative MP_E* code on failure.  Where an errno value fits, the
 * code is -errno (as in libuv), so that system call failures pass through
 * unchanged; the library's own conditions live in a reserved range below
 * -4000 that no errno reaches.  mp_strerror() and mp_err_name() describe any
 * code, including -errno values not listed here.
 *
 * @param XX  a macro taking (name, code, message); name lacks the MP_
 *            prefix (EINVAL for MP_EINVAL), code is the negative value,
 *            message the text mp_strerror() returns.
 */
#define MP_ERRNO_MAP(XX)                                                                         \
    XX(EPERM, -EPERM, "operation not permitted")                                                 \
    XX(ENOENT, -ENOENT, "no such file or directory")                                             \
    XX(ESRCH, -ESRCH, "no such process")                                                         \
    XX(EINTR, -EINTR, "interrupted system call")                                                 \
    XX(EIO, -EIO, "input/output error")                                                          \
    XX(E2BIG, -E2BIG, "argument list too long")                                                  \
    XX(EBADF, -EBADF, "bad file descriptor")                                                     \
    XX(ECHILD, -ECHILD, "no child process")                                                      \
    XX(EAGAIN, -EAGAIN, "resource temporarily unavailable")                                      \
    XX(ENOMEM, -ENOMEM, "not enough memory")                                                     \
    XX(EACCES, -EACCES, "permission denied")                                                     \
    XX(EFAULT, -EFAULT, "bad address")                                                           \
    XX(EBUSY, -EBUSY, "resource busy")                                                           \
    XX(EEXIST, -EEXIST, "already exists")                                                        \
    XX(EINVAL, -EINVAL, "invalid argument")                                                      \
    XX(ENFILE, -ENFILE, "too many open files in the system")                                     \
    XX(EMFILE, -EMFILE, "too many open files")                                                   \
    XX(ENOSPC, -ENOSPC, "no space left")                                                         \
    XX(EPIPE, -EPIPE, "broken pipe: the other end is closed")                                    \
    XX(ERANGE, -ERANGE, "result out of range")                                                   \
    XX(EDEADLK, -EDEADLK, "resource deadlock avoided")                                           \
    XX(ENAMETOOLONG, -ENAMETOOLONG, "name too long")                                             \
    XX(ENOSYS, -ENOSYS, "function not implemented")                                              \
    XX(EPROTO, -EPROTO, "protocol error")                                                        \
    XX(EOVERFLOW, -EOVERFLOW, "value too large")                                                 \
    XX(EMSGSIZE, -EMSGSIZE, "message larger than the buffer")                                    \
    XX(ENOTSUP, -ENOTSUP, "operation not supported")                                             \
    XX(EADDRINUSE, -EADDRINUSE, "address already in use")                                        \
    XX(ECONNRESET, -ECONNRESET, "connection reset by peer")                                      \
    XX(ETIMEDOUT, -ETIMEDOUT, "timed out")                                                       \
    XX(ECONNREFUSED, -ECONNREFUSED, "connection refused")                                        \
    XX(ECANCELED, -ECANCELED, "operation canceled")                                              \
    XX(EOWNERDEAD, -EOWNERDEAD, "the previous owner died holding the lock")                      \
    XX(ENOTRECOVERABLE, -ENOTRECOVERABLE, "state not recoverable")                               \
    XX(EOF, -4095, "end of stream: every writer has closed its end")                             \
    XX(ECLOSED, -4094, "the object is closed")                                                   \
    XX(EWORKER, -4093, "the process running the task died")                                      \
    XX(EBROKEN, -4092, "the barrier is broken")                                                  \
    XX(EAUTH, -4091, "authentication failed")                                                    \
    XX(ETASK, -4090, "the task reported an error")                                               \
    XX(EINIT, -4089, "the worker initializer failed")                                            \
    XX(ESTATE, -4088, "the object is not in a state that allows this call")                      \
    XX(EPEERDEAD, -4087, "a rank the call needs has died")                                       \
    XX(EABANDONED, -4086, "a collective was abandoned: a rank timed out in it")                  \
    XX(ENOKEY, -4082, "no such key")                                                             \
    XX(ENOOBJ, -4081, "no such shared object")                                                   \
    XX(ETYPE, -4080, "the shared object has another type")                                       \
    XX(ETHREADS, -4074, "fork refused: the program has other threads (use forkserver or spawn)") \
    XX(ESHUTDOWN, -4073, "the program is shutting down")                                         \
    XX(ETIMELIMIT, -4077, "the task ran past its time limit")

/**
 * The error codes as an enum: MP_EINVAL, MP_ETIMEDOUT, MP_EOF, ..., one
 * value per MP_ERRNO_MAP entry (whose message says what each means).  Calls
 * return them as plain int; every value is negative.
 */
typedef enum mp_errno {
#define MP__ERRNO_ENUM(name, code, msg) MP_##name = (code),
    MP_ERRNO_MAP(MP__ERRNO_ENUM)
#undef MP__ERRNO_ENUM
} mp_errno;

/**
 * A message for an error code: "timed out" for MP_ETIMEDOUT.  Codes outside
 * the table that are -errno values get the C library's text; anything else
 * gets "unknown error".  Does not block; thread-safe.
 *
 * @param code  an MP_E* code or any other int.
 * @return a static string, never NULL.
 */
MP_EXTERN const char *mp_strerror(int code);

/**
 * The name of an error code: "MP_ETIMEDOUT" for MP_ETIMEDOUT, "OK" for 0 and
 * for positive counts.  Unlisted -errno values get "E..." names from the C
 * library; anything else "MP_EUNKNOWN".  Does not block; thread-safe.
 *
 * @param code  an MP_E* code, a count, or any other int.
 * @return a static string, never NULL.
 */
MP_EXTERN const char *mp_err_name(int code);

/**
 * The library's version as "MAJOR.MINOR.PATCH": the version of the library
 * the program runs with, which may differ from the MP_VERSION_* macros of
 * the headers it was compiled against (mproc/version.h).  A static string;
 * thread-safe.
 */
MP_EXTERN const char *mp_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_COMMON_H */
