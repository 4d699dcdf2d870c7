/*
 * child.h - the child's side of a process (child.c): set-up, the crash
 * handler, running the target.
 */
#ifndef MP__CHILD_H
#define MP__CHILD_H

#include "base.h"
#include "report.h"

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
    pid_t origin;         /* the process that asked for the child (mp_parent_process) */
    bool ignore_sigint;   /* the parent coordinates SIGINT (mp_signals_install) */
} mp__child_spec;

/* The signal that asks a child for its stack. */
#define MP__STACK_SIGNAL SIGURG

/* Sets the child up (death signal, name, crash handlers), runs the target,
 * reports an error it returns, flushes stdio and _exit()s.  Never returns. */
_Noreturn void mp__child_main(const mp__child_spec *spec);

/* Prepares, in the parent, what crash reports need so that children
 * inherit it ready: the unwinder loaded, the module table current.  Cheap
 * when nothing changed.  Thread-safe. */
void mp__crash_prepare(void);

/* Writes to buf a report record (report.h) of kind with the calling
 * thread's stack from the point a signal interrupted (uctx and si of an
 * SA_SIGINFO handler; NULL for none), each frame placed in its module from
 * the table mp__crash_prepare() made.  Returns the record's size, or 0 when
 * cap is too small (MP__STACK_RECORD_CAP bytes are enough).
 * Async-signal-safe after mp__crash_prepare(). */
#define MP__STACK_PATH_MAX 256
#define MP__STACK_RECORD_CAP  \
    (sizeof(mp__report_hdr) + \
     MP__REPORT_MAX_FRAMES * (sizeof(mp__report_frame) + 2 + MP__STACK_PATH_MAX))
size_t mp__stack_record(void *buf, size_t cap, uint32_t kind, int signo, const siginfo_t *si,
                        const void *uctx);

/* Whether children started from now on ignore SIGINT, because this process
 * coordinates the shutdown (mp_signals_install).  Inherited by fork. */
void mp__child_sigint_set_ignored(bool ignore);
bool mp__child_sigint_ignored(void);
#endif /* MP__CHILD_H */
