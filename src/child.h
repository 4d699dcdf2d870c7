/*
 * child.h - the child's side of a process (child.c): set-up, the crash
 * handler, running the target.
 */
#ifndef MP__CHILD_H
#define MP__CHILD_H

#include "base.h"

/* What a child needs to run its target; filled by the parent for fork, or
 * decoded from a request for spawn and forkserver. */
typedef struct mp__child_spec {
    mp_target_fn target;
    void *arg;
    const char *name;
    const char *ident;
    pid_t parent; /* the pid whose death must kill this child */
    pid_t session;
    int report_fd;  /* write end of the report pipe */
    const int *fds; /* for mp_process_inherited_fd() */
    size_t nfds;
    const sigset_t *mask; /* signal mask to restore before the target runs */
    int setup_error;      /* nonzero: report it and exit 127 instead of running */
} mp__child_spec;

/* Sets the child up (death signal, name, crash handlers), runs the target,
 * reports an error it returns, flushes stdio and _exit()s.  Never returns. */
_Noreturn void mp__child_main(const mp__child_spec *spec);

/* Prepares, in the parent, what crash reports need so that children
 * inherit it ready: the unwinder loaded, the module table current.  Cheap
 * when nothing changed.  Thread-safe. */
void mp__crash_prepare(void);

#endif /* MP__CHILD_H */
