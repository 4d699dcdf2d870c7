/*
 * fnref.h - function references that survive a fresh image (fnref.c).
 */
#ifndef MP__FNREF_H
#define MP__FNREF_H

#include "base.h"

/* A function named by the file it lives in and its offset from that
 * module's load bias: the same in every image of the program, whatever
 * address space layout randomisation did. */
typedef struct mp__fnref {
    uint64_t offset;
    char path[PATH_MAX]; /* "" for the main executable */
} mp__fnref;

/* Names fn.  Returns 0, or MP_EINVAL if fn lies in no loaded module. */
int mp__fnref_from_ptr(const void *fn, mp__fnref *ref);

/* Finds the function again in this image, loading the module if needed.
 * Returns 0 and sets *fn, or MP_ENOENT / MP_EINVAL (not inside executable
 * code of that module). */
int mp__fnref_resolve(const mp__fnref *ref, void **fn);

#endif /* MP__FNREF_H */
