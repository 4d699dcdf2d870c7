/*
 * hooks.h - the pool's test hooks: the places where a test may make a
 * worker fail on purpose.  Private to src/pool/ and its tests.
 *
 * DESIGN
 * Nothing in normal use sets them.  A test sets a hook before the pool
 * starts its workers, which inherit it by fork; the worker's code reads it
 * at the point named, in its one thread, without a lock.
 */
#ifndef MPROC_POOL_HOOKS_H
#define MPROC_POOL_HOOKS_H

/* A worker's copies from and to the caller's memory fail with
 * mp__pool_vm_fault.err once it has made mp__pool_vm_fault.after of them
 * (when err is set).  Fork workers inherit what the test set. */
extern struct mp__pool_vm_fault {
    int err;
    unsigned after;
} mp__pool_vm_fault;

#endif /* MPROC_POOL_HOOKS_H */
