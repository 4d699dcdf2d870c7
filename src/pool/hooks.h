/*
 * hooks.h - the pool's test hooks: the places where a test may make a
 * worker fail on purpose.  Private to src/pool/ and its tests.
 *
 * DESIGN
 * Nothing in normal use sets them.  A test sets a hook before the pool
 * starts its workers, which inherit it by fork; the worker's code reads it
 * at the point named, in its one thread, without a lock.  In normal use a
 * hook costs an untaken branch.
 */
#ifndef MPROC_POOL_HOOKS_H
#define MPROC_POOL_HOOKS_H

#include <stddef.h>

/* The instants of the claim and completion protocol (records.h) where a
 * worker may die, for tests that must kill one exactly there. */
typedef enum mp__pool_point {
    MP__PP_CHUNK_FETCHED,  /* a map chunk's index taken (fetch-add), not yet claimed (CAS) */
    MP__PP_CLAIMED,        /* a unit claimed (CAS), nothing of it begun */
    MP__PP_LAST_ITEM,      /* a map unit's last item done, the unit not yet DONE */
    MP__PP_RESULT_WRITTEN, /* an apply task's result and status written, not yet DONE */
    MP__PP_DONE            /* a unit DONE, its completion record not yet written */
} mp__pool_point;

/* Called, when set, at each of those instants, in the worker.  NULL in
 * normal use; a test sets it before it creates the pool. */
extern void (*mp__pool_fault)(mp__pool_point where);

static inline void mp__pool_fault_point(mp__pool_point where)
{
    if (__builtin_expect(mp__pool_fault != NULL, 0))
        mp__pool_fault(where);
}

/* A worker's copies from and to the caller's memory fail with
 * mp__pool_vm_fault.err once it has made mp__pool_vm_fault.after of them
 * (when err is set).  Fork workers inherit what the test set. */
extern struct mp__pool_vm_fault {
    int err;
    unsigned after;
} mp__pool_vm_fault;

#endif /* MPROC_POOL_HOOKS_H */
