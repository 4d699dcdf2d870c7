/**
 * @file
 * mproc/log.h - a time-stamped log shared by every process of a program.
 *
 * Included by <mproc.h>.
 *
 * One call, one line:
 *
 *   2026-11-22T09:14:03.512345Z WARNING [pid 4242 Worker-1] queue is full
 *
 * Each line is formatted in full and written with one write(2): on a file
 * (opened with O_APPEND) or a pipe (lines up to PIPE_BUF, 4096 bytes), lines
 * from many processes never interleave mid-line and none is lost to
 * another's write.  Children inherit the destination and the level.
 *
 * The level comes from the environment variable MPROC_LOG (debug, info,
 * warning, error, critical or off; default warning) when the first line is
 * logged, unless mp_log_set_level() was called before.  The destination is
 * stderr, or the file named by MPROC_LOG_FILE, or what mp_log_set_file() or
 * mp_log_set_fd() chose.  Crash reports of children are logged at
 * MP_LOG_ERROR by the parent.
 *
 * On a terminal, a line never tears a pool's progress bar: while the bar
 * shows on the same terminal, a line of the process that draws it clears
 * the bar, goes out, and the bar is drawn again below it (in that same
 * single write).  Lines of other processes are written as they come.
 */
#ifndef MPROC_LOG_H
#define MPROC_LOG_H

#include <stdarg.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Python's logging levels, with the same numbers. */
typedef enum mp_log_level {
    MP_LOG_DEBUG = 10,
    MP_LOG_INFO = 20,
    MP_LOG_WARNING = 30,
    MP_LOG_ERROR = 40,
    MP_LOG_CRITICAL = 50,
    MP_LOG_OFF = 100
} mp_log_level;

#if defined(__GNUC__)
#define MP__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MP__PRINTF(f, a)
#endif

/** @{ */
/**
 * Logs one line at level, if level is enabled.  A trailing newline in fmt
 * is not needed (one is added).  Never fails visibly: a line that cannot be
 * written is dropped.  Safe from many threads and processes; not
 * async-signal-safe.
 */
MP_EXTERN void mp_log(mp_log_level level, const char *fmt, ...) MP__PRINTF(2, 3);
MP_EXTERN void mp_vlog(mp_log_level level, const char *fmt, va_list ap) MP__PRINTF(2, 0);
/** @} */

/** Whether a line at level would be written. */
MP_EXTERN bool mp_log_enabled(mp_log_level level);

/** Sets the level for this process (and children started afterwards). */
MP_EXTERN void mp_log_set_level(mp_log_level level);

/** The current level. */
MP_EXTERN mp_log_level mp_log_get_level(void);

/**
 * Parses "debug", "info", "warning", "error", "critical", "off" (any case)
 * into *level.  Returns 0, or MP_EINVAL for anything else.
 */
MP_EXTERN int mp_log_parse_level(const char *text, mp_log_level *level);

/**
 * Logs to the file at path, created if needed and appended to; NULL goes
 * back to stderr.  Returns 0 or the open error (the destination is then
 * unchanged).
 */
MP_EXTERN int mp_log_set_file(const char *path);

/**
 * Logs to fd, which the caller keeps open while it is in use (the library
 * never closes it).  Returns 0, or MP_EBADF for a negative fd.
 */
MP_EXTERN int mp_log_set_fd(int fd);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_LOG_H */
