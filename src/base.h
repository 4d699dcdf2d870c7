/*
 * base.h - what every module of mproc sees: the public API, the platform
 * contract, the parts of the C library nearly every file uses, and the
 * limits several modules share.  Never installed.
 *
 * Each module's own internal declarations live in src/<module>.h; a module
 * includes the headers of exactly the modules it uses (see
 * docs/internals.md, "The module graph").  Internal non-static functions
 * are named mp__<noun>_<verb>.
 */
#ifndef MP__BASE_H
#define MP__BASE_H

#include "mproc.h"
#include "platform/platform.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MP__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* For the slow half of a call whose fast half runs per message: kept out
 * of line, so that the fast half needs no stack frame of its own. */
#if defined(__GNUC__)
#define MP__COLD __attribute__((cold, noinline))
#else
#define MP__COLD
#endif
/* A process's name, and the numbers that place it in the tree of
 * processes ("1:2"), with their terminating NUL. */
#define MP__MAX_NAME 64
/* Descriptors handed to one child (mp_process_opts.fds). */
#define MP__MAX_FDS 64
/* The argument bytes a spawn or forkserver child may be sent. */
#define MP__MAX_ARG ((size_t)16 << 20)

#endif /* MP__BASE_H */
