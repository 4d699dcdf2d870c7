/*
 * arena.h - the shared arena's internal side (arena.c).
 */
#ifndef MP__ARENA_H
#define MP__ARENA_H

#include "base.h"

/* The arena mapped in this process that contains p, or NULL. */
mp_arena *mp__arena_find(const void *p);

/* mp_arena_alloc() that says why it failed: 0 and *out set; MP_EINVAL for
 * size 0; MP_ENOMEM when no free block is that large; the default arena's
 * creation error (a NULL); MP_ENOTRECOVERABLE for a broken arena.  The
 * constructors of the objects that live in arenas report these. */
int mp__arena_alloc(mp_arena *a, size_t size, void **out);

#endif /* MP__ARENA_H */
