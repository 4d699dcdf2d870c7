/*
 * arena.h - the shared arena's internal side (arena.c).
 */
#ifndef MP__ARENA_H
#define MP__ARENA_H

#include "base.h"

/* The arena mapped in this process that contains p, or NULL. */
mp_arena *mp__arena_find(const void *p);

#endif /* MP__ARENA_H */
