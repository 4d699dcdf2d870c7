/**
 * @file
 * mproc/shm.h - shared memory: the shared arena that mproc's objects live
 * in, and named segments (Python's multiprocessing.shared_memory).
 *
 * Included by <mproc.h>.
 *
 * The arena.  Locks, semaphores, events, conditions, barriers, values and
 * arrays made with the _new() calls live in one shared arena per program:
 * a memory file (memfd) mapped shared and read-write, at the same address
 * in every process that uses it, so that a pointer to an object in it means
 * the same object everywhere.  It is created at its first use, or by
 * mp_arena_default().  It has no name: nothing of it can be left in
 * /dev/shm, and the memory is returned when the last process that maps it
 * ends.  mp_arena_new() makes further arenas, for instance of a chosen size.
 *
 * Which processes see it.
 *   fork        A child started with fork (the default start method, or
 *               fork() itself) inherits the mapping at the same address.
 *               As in Python, create the objects - or at least the arena,
 *               with mp_arena_default() - before starting the children
 *               that use them: a process that creates the default arena
 *               after it forked has one of its own, unseen by its
 *               children.  Objects allocated after the fork live in the
 *               shared memory too; a child reaches them once it learns
 *               their address (through a pipe or a queue).
 *   spawn,      A fresh image inherits nothing.  Hand it the arena's
 *   forkserver  descriptor, mp_arena_fd(), in mp_process_opts.fds; in the
 *               child, mp_arena_attach(mp_process_inherited_fd(i), &a)
 *               maps it at the same address (MAP_FIXED_NOREPLACE), after
 *               which the pointers the parent passed in the argument bytes
 *               are valid.  Arenas are placed far from where programs keep
 *               their libraries and heaps, so the address is free in a
 *               fresh image.
 *   others      Any process given the descriptor (over a Unix socket, for
 *               instance) can attach the same way.
 *
 * The allocator inside is safe across processes and threads: a robust lock
 * in the arena serialises it, and if a process dies while holding it the
 * next caller rebuilds the allocator's lists from the blocks themselves.
 *
 * Named segments.  mp_shm_create(name, size) makes a segment any process
 * can attach by name with mp_shm_attach(), like Python's SharedMemory; it
 * appears as `/dev/shm/mproc-<name>`.  Segments are tracked so that none
 * outlives its program: a small tracker process, shared by the processes
 * of the program (its session, see mp_process), counts for each segment
 * the processes of the program that hold it open, and unlinks a segment
 * the program created as soon as no process holds it any more - after
 * mp_shm_close() or mp_shm_free(), after exit, and after SIGKILL alike.  The tracker exits
 * with the last process of the program.  Unlike Python's resource tracker,
 * a process that only attaches a segment never unlinks it for its creator,
 * so a segment is never removed while the program that created it still
 * holds it.
 *   - Keep a handle open for as long as other processes may still attach
 *     by name: a segment nobody holds is gone.
 *   - A process of another program may attach too; it holds the mapping
 *     but not the name, which goes when its creator's program is done.
 *   - A forked child inherits the mapping (usable as is) but is not
 *     counted as a holder unless it attaches by name itself.
 *   - If the tracker itself is SIGKILLed, the segments it tracked stay in
 *     /dev/shm (named mproc-..., so the leak is easy to find).
 */
#ifndef MPROC_SHM_H
#define MPROC_SHM_H

#include <stddef.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the shared arena ------------------------------------------------------ */

/** The shared arena: an allocator over shared memory made before fork (see above).  Opaque. */
typedef struct mp_arena mp_arena;

/** The default arena's size when neither MPROC_ARENA_SIZE (bytes, with an
 * optional K, M or G suffix) nor mp_arena_set_default_size() says
 * otherwise.  Address space only: pages take memory once they are used. */
#define MP_ARENA_DEFAULT_SIZE ((size_t)64 << 20)

/**
 * Creates an arena of size bytes (rounded up to whole pages; at least
 * 64 KiB, at most 128 GiB) and maps it in this process.  *out receives a
 * handle owned by the caller (mp_arena_free).  Returns 0, MP_EINVAL for a
 * bad size or NULL out, or the memfd/mmap error (MP_ENOMEM, MP_EMFILE...).
 * Thread-safe.
 */
MP_EXTERN int mp_arena_new(size_t size, mp_arena **out);

/**
 * The default arena of this process, created on first use.  Returns NULL
 * only if it cannot be created (no memory, no descriptors).  The handle
 * belongs to the library: never free it.  Thread-safe.
 */
MP_EXTERN mp_arena *mp_arena_default(void);

/**
 * Sets the size of the default arena before it exists.  Returns 0,
 * MP_EINVAL for a size outside [64 KiB, 128 GiB], or MP_ESTATE when the
 * default arena exists already.
 */
MP_EXTERN int mp_arena_set_default_size(size_t size);

/**
 * Maps the arena whose descriptor is fd (from mp_arena_fd() of another
 * process) at the address it has in its creator.  The descriptor is
 * duplicated: the caller keeps its own.  If this process has no default
 * arena yet and fd is another process's default arena, it becomes this
 * process's default arena too.  Attaching an arena this process maps
 * already returns the existing handle.  Returns 0 and sets *out, MP_EINVAL
 * when fd is not an arena, MP_EEXIST when the address is taken in this
 * process, or an mmap error.
 */
MP_EXTERN int mp_arena_attach(int fd, mp_arena **out);

/** The arena's descriptor (close-on-exec, owned by the arena), for handing
 * to fresh images; MP_EINVAL for NULL, MP_ECLOSED after mp_arena_close(). */
MP_EXTERN int mp_arena_fd(const mp_arena *a);

/** The arena's size in bytes; 0 for NULL or a closed arena. */
MP_EXTERN size_t mp_arena_size(const mp_arena *a);

/**
 * What is in use: *used receives the bytes held by live allocations
 * (headers included), *largest the largest block that could be allocated
 * now.  Either may be NULL.  Takes the arena's lock.  Returns 0,
 * MP_EINVAL for NULL, or MP_ECLOSED.
 */
MP_EXTERN int mp_arena_usage(mp_arena *a, size_t *used, size_t *largest);

/**
 * Allocates size bytes, zeroed and aligned to 64 bytes (a cache line), from
 * the arena a (NULL: the default arena).  Like malloc, returns NULL when it
 * cannot: size 0, nothing that large free, a closed or broken arena.  (The
 * constructors of objects that live in arenas, mp_value_new and the like,
 * return the reason as a code.)  Safe across processes and threads; blocks
 * only while another process or thread allocates or frees.
 */
MP_EXTERN void *mp_arena_alloc(mp_arena *a, size_t size);

/**
 * Returns a block from mp_arena_alloc() to its arena.  a may be NULL (the
 * arena is found from the address).  Returns 0, or MP_EINVAL when p is not
 * a live block of an arena mapped in this process (a double free, a
 * foreign pointer), MP_ECLOSED for a closed a.  NULL is accepted and
 * ignored (0).
 */
MP_EXTERN int mp_arena_dealloc(mp_arena *a, void *p);

/**
 * Unmaps the arena from this process and closes its descriptor; the handle
 * stays until mp_arena_free().  Other processes keep their mappings, and
 * the memory goes with the last of them.  Objects in it must not be used
 * by this process afterwards, and calls on the handle return MP_ECLOSED.
 * Idempotent: returns 0, also for an arena closed before; MP_EINVAL for
 * NULL; MP_EPERM for the default arena, which belongs to the library and
 * is never unmapped.  Must not run while another thread uses the arena.
 */
MP_EXTERN int mp_arena_close(mp_arena *a);

/**
 * Closes the arena if it is still open (as mp_arena_close) and frees the
 * handle.  Never waits.  NULL and the default arena are left alone.
 */
MP_EXTERN void mp_arena_free(mp_arena *a);

/* ---- named segments ---------------------------------------------------------- */

/** A named shared-memory segment, created or attached by name.  Opaque. */
typedef struct mp_shm mp_shm;

/** The longest name a segment may have, without the "mproc-" prefix. */
#define MP_SHM_NAME_MAX 200

/**
 * Creates a segment of size bytes (zero-filled), named `/dev/shm/mproc-<name>`,
 * and maps it.  name NULL makes a unique name, `"<session>-<pid>-<n>"`.  A
 * name is 1 to MP_SHM_NAME_MAX bytes, without '/', and not "." or "..".
 * The segment is tracked (see above).  *out receives the handle.
 * Returns 0; MP_EEXIST if the name is taken; MP_EINVAL for a bad name, a
 * size of 0 or a NULL out; MP_ENAMETOOLONG; or the system's error.
 * Blocks for a round trip to the tracker (and, the first time in a
 * program, for starting it).  Thread-safe.
 */
MP_EXTERN int mp_shm_create(const char *name, size_t size, mp_shm **out);

/**
 * Attaches the segment called name (as given to mp_shm_create) and maps
 * it, whoever created it.  Returns 0 and sets *out; MP_ENOENT if there is
 * none; MP_EAGAIN for a segment still being created (not sized yet);
 * MP_EINVAL / MP_ENAMETOOLONG for a bad name; or the system's error.  A
 * process of the creating program is counted as a holder from the moment
 * this returns until it closes the handle or ends (a round trip to the
 * tracker, when the program has one).  Thread-safe.
 */
MP_EXTERN int mp_shm_attach(const char *name, mp_shm **out);

/** @{ */
/** The mapping's address, size in bytes, and name (as given, without the
 * prefix); NULL / 0 / NULL for a NULL handle.  After mp_shm_close() the
 * address is NULL and the size 0; the name stays. */
MP_EXTERN void *mp_shm_addr(const mp_shm *s);
MP_EXTERN size_t mp_shm_size(const mp_shm *s);
MP_EXTERN const char *mp_shm_name(const mp_shm *s);
/** @} */

/**
 * Removes the name now: processes that have the segment mapped keep it,
 * nobody can attach it any more, and the memory goes with the last
 * mapping.  Any holder may unlink, not only the creator, also after its
 * own mp_shm_close().  Returns 0, MP_ENOENT if the name is gone already
 * (or names another segment now), or MP_EINVAL for NULL.
 */
MP_EXTERN int mp_shm_unlink(mp_shm *s);

/**
 * Unmaps the segment; the handle stays, for mp_shm_name() and
 * mp_shm_unlink(), until mp_shm_free().  This process stops being a
 * holder; if it was the last holder in the creating program, the tracker
 * unlinks the segment.  A handle inherited through fork is only unmapped.
 * Idempotent: returns 0, also for a handle closed before; MP_EINVAL for
 * NULL.  Does not wait for the tracker's answer.  Must not run while
 * another thread uses s or its memory.
 */
MP_EXTERN int mp_shm_close(mp_shm *s);

/**
 * Closes the segment if it is still open (as mp_shm_close) and frees the
 * handle.  Never waits.  NULL is a no-op.
 */
MP_EXTERN void mp_shm_free(mp_shm *s);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_SHM_H */
