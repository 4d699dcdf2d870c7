/*
 * report.h - what a child leaves for its parent: the records it writes to
 * its report pipe (written by child.c), and the outcome the parent builds
 * from them and the wait status (report.c).
 */
#ifndef MP__REPORT_H
#define MP__REPORT_H

#include "base.h"

/* Records a child writes to its report pipe. */
enum { MP__REPORT_CRASH = 1, MP__REPORT_ERROR = 2, MP__REPORT_SETUP = 3, MP__REPORT_STACK = 4 };
#define MP__REPORT_MAGIC      0x6d707270u /* "mprp" */
#define MP__REPORT_MAX_FRAMES 48

typedef struct mp__report_hdr {
    uint32_t magic;
    uint32_t kind;
    int32_t pid;
    int32_t signo;
    int32_t code; /* si_code for a crash; the error for ERROR and SETUP */
    int32_t nframes;
    int32_t nmodules;
    uint32_t size; /* of the whole record, header included */
    uint64_t addr; /* faulting address */
} mp__report_hdr;

/* mp__report_frame.flags: the frame lies in mproc's own shared library. */
#define MP__FRAME_MPROC 1

typedef struct mp__report_frame {
    uint64_t addr;
    uint64_t offset; /* from the module's load bias */
    int32_t module;  /* index into the record's module list, -1 if none */
    int32_t flags;   /* MP__FRAME_* */
} mp__report_frame;
/* After the frames: nmodules times (uint16_t length, length path bytes). */

/* The outcome of a child, as the parent gathers it. */
typedef struct mp__outcome {
    int exitcode; /* Python's convention: status, or -SIGNUM */
    int error;    /* from an ERROR or SETUP record, else 0 */
    char *report; /* malloc'ed text, NULL for a clean exit */
} mp__outcome;

/* Builds the outcome of child pid from its wait status and whatever its
 * report pipe holds (read without blocking; fd may be -1).  Logs crash
 * and error reports at MP_LOG_ERROR when log is true, and the stacks the
 * child was asked for (STACK records) at MP_LOG_WARNING.
 *
 * A crash report names the function of each frame, and its source file
 * and line when the build has libdw and the program debugging
 * information.  It shows the program's own frames: those of mproc (and
 * those below the child's entry, which only say how the process was
 * started) are counted, not shown, unless the environment has
 * MPROC_BACKTRACE=full.  Paths are canonical (realpath). */
void mp__outcome_build(mp__outcome *out, const char *name, pid_t pid, int wstatus, int report_fd,
                       bool log);

/* The stack in a CRASH or STACK record of len bytes, as text: one line
 * per frame, each named from the module's symbols, after a first line
 * title.  malloc'ed; NULL when the record is not valid or memory runs
 * out. */
char *mp__report_stack_text(const void *rec, size_t len, const char *title);

#endif /* MP__REPORT_H */
