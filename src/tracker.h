/*
 * tracker.h - telling the program's tracker about named segments
 * (tracker.c; the tracker process itself is trackerd.c).
 */
#ifndef MP__TRACKER_H
#define MP__TRACKER_H

#include "base.h"

/* Names are full names, "/mproc-...".  create asks the tracker to create
 * the segment (O_EXCL) and returns its descriptor, or an error; attach
 * reports a hold taken by this process and waits until it is counted,
 * close reports one dropped without waiting (both ignored for segments the
 * tracker does not track, and skipped when no tracker runs); unlink asks
 * the tracker to unlink a segment it tracks and returns 0, MP_ENOENT, or
 * MP_ESRCH when this program does not track it. */
int mp__tracker_create(const char *path, int *fd);
void mp__tracker_attach(const char *path, uint64_t ino);
void mp__tracker_close(const char *path, uint64_t ino);
int mp__tracker_unlink(const char *path, uint64_t ino);

/* For a shutdown: asks the tracker to unlink every segment of the program,
 * whoever holds it.  Returns how many were unlinked (0 when no tracker
 * runs) or an error. */
int mp__tracker_unlink_all(void);

#endif /* MP__TRACKER_H */
