/*
 * shutdown_event.h - the program-wide shutdown event (shutdown_event.c):
 * one page of shared memory that every process of the program maps.
 */
#ifndef MP__SHUTDOWN_EVENT_H
#define MP__SHUTDOWN_EVENT_H

#include "base.h"

/* The event, made on first use: a memfd page mapped shared, so that
 * children forked later inherit the mapping and children started from a
 * fresh image can be handed its descriptor.  Returns 0 and sets *ev, or
 * an error (the memfd's or the mapping's).  Thread-safe. */
int mp__sdev_get(mp_event **ev);

/* The page's descriptor, to hand to a child started from a fresh image;
 * -1 while there is no page.  Owned by this module. */
int mp__sdev_fd(void);

/* In a child started from a fresh image: maps the page whose descriptor
 * came with its request, and keeps fd (to hand on to its own children).
 * A descriptor that is not such a page is closed and ignored. */
void mp__sdev_adopt(int fd);

/* Sets the event, if it exists.  Async-signal-safe. */
void mp__sdev_set(void);

#endif /* MP__SHUTDOWN_EVENT_H */
