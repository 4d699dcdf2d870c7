/*
 * log.h - the log's internal side (log.c): handing the destination to a
 * fresh image.
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

#endif /* MP__LOG_H */
