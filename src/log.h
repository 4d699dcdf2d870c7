/*
 * log.h - the log's internal side (log.c): handing the destination to a
 * fresh image, the status line, and recording why a call failed
 * (mp_last_error_detail).
 */
#ifndef MP__LOG_H
#define MP__LOG_H

#include "base.h"

/* The descriptor log lines go to, for handing to spawned children, and
 * whether it is something other than stderr. */
int mp__log_fd(bool *custom);

/* Adopts a log destination in a fresh image: fd (received from the parent,
 * -1 for none) and level (-1: keep this image's own). */
void mp__log_adopt(int fd, int level);

/*
 * The status line: one line of text kept at the bottom of the terminal on
 * stderr (a progress bar), which the log owns so that its lines never tear
 * it.  While one is shown, a log line of this process written to that same
 * terminal clears it, goes out, and draws it again below - all in one
 * write(2).  On a stderr that is not a terminal there is nothing to keep:
 * each call writes text as a line of its own.
 *
 * mp__log_status_set() shows text (one line, no newline) in place of the
 * current status; with final, the text stays as an ordinary line and there
 * is no status any more.  mp__log_status_clear() erases the status.  Only
 * the process that set a status sees it: a child forked meanwhile does not
 * redraw its parent's line.  Thread-safe; not async-signal-safe.
 */
void mp__log_status_set(const char *text, bool final);
void mp__log_status_clear(void);

/*
 * Records the detail of a failure - fmt and its arguments, printf-style,
 * starting with the public call's name - as this thread's
 * mp_last_error_detail(), logs it at MP_LOG_DEBUG, and returns code, so
 * that a check reads `return mp__fail(MP_EINVAL, "mp_x_new: ...", ...);`.
 * It lives in the log module because it logs: every module that checks
 * arguments may use it without a cycle in the module graph.  Not
 * async-signal-safe (it formats and may log): for argument and state
 * checks, never in a signal handler or a child between fork and exec.
 */
int mp__fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fails the calling public function with MP_EINVAL, naming the argument,
 * when the pointer arg is NULL. */
#define MP__NONNULL(arg)                                                           \
    do {                                                                           \
        if (!(arg))                                                                \
            return mp__fail(MP_EINVAL, "%s: " #arg " must not be NULL", __func__); \
    } while (0)

#endif /* MP__LOG_H */
