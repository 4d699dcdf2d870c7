/*
 * self.h - who this process is (self.c): its name, its place in the tree
 * of processes mproc started, its session, the descriptors it was handed.
 */
#ifndef MP__SELF_H
#define MP__SELF_H

#include "base.h"

/* The calling process's name ("MainProcess" unless mproc started it). */
const char *mp__self_name(void);

/* The next child's default name, "Process-N" in the main process and
 * "Process-<parent's numbers>:N" in a child, as Python numbers them. */
void mp__self_next_child_name(char *buf, size_t cap, char *ident, size_t ident_cap);

/* Called in a child started by mproc before its target runs; parent is
 * the process that asked for it (mp_parent_process). */
void mp__self_enter_child(const char *name, const char *ident, pid_t session, pid_t parent);

/* The session: the pid of the first process of this program that mproc ran
 * in.  Children inherit it, so names made from it say which program made
 * them (and a leak is easy to attribute). */
pid_t mp__session(void);

/* Descriptors a child received for mp_process_opts.fds. */
void mp__self_set_inherited_fds(const int *fds, size_t n);

#endif /* MP__SELF_H */
