/*
 * internal.h - declarations shared by mproc's modules, never installed.
 *
 * Internal non-static functions are named mp__<noun>_<verb>.
 */
#ifndef MPROC_INTERNAL_H
#define MPROC_INTERNAL_H

#include "mproc.h"
#include "platform/platform.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MP__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MP__MAX_NAME      64
#define MP__MAX_FDS       64
#define MP__MAX_ARG       ((size_t)16 << 20)

/* ---- this process (self.c) ---------------------------------------------- */

/* The calling process's name ("MainProcess" unless mproc started it). */
const char *mp__self_name(void);

/* The next child's default name, "Process-N" in the main process and
 * "Process-<parent's numbers>:N" in a child, as Python numbers them. */
void mp__self_next_child_name(char *buf, size_t cap, char *ident, size_t ident_cap);

/* Called in a child started by mproc before its target runs. */
void mp__self_enter_child(const char *name, const char *ident, pid_t session);

/* The session: the pid of the first process of this program that mproc ran
 * in.  Children inherit it, so names made from it say which program made
 * them (and a leak is easy to attribute). */
pid_t mp__session(void);

/* Descriptors a child received for mp_process_opts.fds. */
void mp__self_set_inherited_fds(const int *fds, size_t n);

/* ---- function references (fnref.c) -------------------------------------- */

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

/* ---- the child side (child.c) ------------------------------------------- */

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

/* ---- reports (report.c) ------------------------------------------------- */

/* Records a child writes to its report pipe. */
enum { MP__REPORT_CRASH = 1, MP__REPORT_ERROR = 2, MP__REPORT_SETUP = 3 };
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

typedef struct mp__report_frame {
    uint64_t addr;
    uint64_t offset; /* from the module's load bias */
    int32_t module;  /* index into the record's module list, -1 if none */
    int32_t pad;
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
 * and error reports at MP_LOG_ERROR when log is true. */
void mp__outcome_build(mp__outcome *out, const char *name, pid_t pid, int wstatus, int report_fd,
                       bool log);

/* ---- the registry of children (process.c) ------------------------------- */

/* Reaps children that were freed while running, without blocking. */
void mp__registry_reap_detached(void);

/* A descriptor that becomes readable (POLLIN) when the started child p
 * ends: its pidfd, or for a forkserver child its status channel.  Lets a
 * supervisor poll many children at once; owned by p.  Returns the
 * descriptor, or an error (MP_ESTATE when p is not running, MP_ENOSYS
 * without pidfd support). */
int mp__process_wait_fd(mp_process *p);

/* ---- spawn and forkserver requests (forkserver.c) ----------------------- */

typedef struct mp__request {
    mp__fnref fn;
    char name[MP__MAX_NAME];
    char ident[MP__MAX_NAME];
    pid_t parent;
    pid_t session;
    int log_level;
    void *arg; /* malloc'ed copy, NULL when arg_len is 0 */
    size_t arg_len;
    int report_fd; /* received descriptors, -1 when absent */
    int chan_fd;
    int log_fd;
    int fds[MP__MAX_FDS];
    size_t nfds;
} mp__request;

/* What a request carries, on the parent's side. */
typedef struct mp__request_out {
    mp_target_fn fn;
    const void *arg;
    size_t arg_len;
    const char *name;
    const char *ident;
    int report_fd; /* -1: none */
    int chan_fd;   /* -1: none */
    const int *fds;
    size_t nfds;
} mp__request_out;

/* Sends a request over sock, descriptors attached.  Returns 0 or -errno
 * (MP_EINVAL when the function lies in no module). */
int mp__request_send(int sock, const mp__request_out *r);

/* Receives one request.  Returns 0, MP_EOF when the peer closed, or an
 * error (nothing is leaked on error). */
int mp__request_recv(int sock, mp__request *req);

/* Releases what a received request holds (the argument copy, the
 * descriptors), in a process that does not run it. */
void mp__request_release(mp__request *req);

/* Runs a received request in this process (a fresh image, or a fork of the
 * server).  Never returns. */
_Noreturn void mp__request_run(mp__request *req);

/* Starts a child through the forkserver, starting the server if needed.
 * On success *pid, *pidfd and *chan (the socket on which the child's wait
 * status will arrive) are set.  Returns 0 or an error. */
int mp__forkserver_spawn(const mp__request_out *r, pid_t *pid, int *pidfd, int *chan);

/* Starts a fresh image of the program that runs the one request it will
 * read from sock_child (the spawn start method).  Returns 0 and sets *pid,
 * or the exec error. */
int mp__spawn_exec(int sock_child, pid_t *pid);

/* Reads the wait status a forkserver sends on a child's channel, without
 * blocking.  Returns 1 and sets *wstatus, 0 if it has not come yet, or
 * MP_EOF if the channel closed without one. */
int mp__forkserver_status(int chan, int *wstatus);

/* The entry points of a fresh image started by mproc (self.c); they never
 * return. */
_Noreturn void mp__forkserver_serve(int sock);
_Noreturn void mp__spawn_serve(int sock);

/* Builds an environment for a fresh image: the current one plus
 * NAME=fd.  Returns a malloc'ed array (free with mp__env_free) or NULL. */
char **mp__env_with(const char *name, int fd);
void mp__env_free(char **env);

/* ---- log (log.c) -------------------------------------------------------- */

/* The descriptor log lines go to, for handing to spawned children, and
 * whether it is something other than stderr. */
int mp__log_fd(bool *custom);

/* Adopts a log destination in a fresh image. */
void mp__log_adopt(int fd, int level);

/* ---- shared memory and synchronisation (arena.c, sync.c, shm.c, tracker.c) */

/* The arena mapped in this process that contains p, or NULL. */
mp_arena *mp__arena_find(const void *p);

/* mp_arena_alloc() that says why it failed: 0 and *out set; MP_EINVAL for
 * size 0; MP_ENOMEM when no free block is that large; the default arena's
 * creation error (a NULL); MP_ENOTRECOVERABLE for a broken arena.  The
 * constructors of the objects that live in arenas report these. */
int mp__arena_alloc(mp_arena *a, size_t size, void **out);

/* For tests: leaves a's allocator as a process killed in the middle of an
 * allocation would (lock held, lists half-changed).  The caller must then
 * end without touching the arena. */
void mp__arena_crash_in_alloc(mp_arena *a);

/* Objects in shared memory begin with a 32-bit magic number naming their
 * type; destroy clears it.  Values and arrays use these two. */
#define MP__VALUE_MAGIC 0x6d707661u /* "mpva" */
#define MP__ARRAY_MAGIC 0x6d706172u /* "mpar" */

/* Lock internals shared with value.c: take / release a lock for one short
 * access.  mp__lock_enter returns 0 or MP_EOWNERDEAD with the lock taken
 * (marked consistent: the access is atomic-sized or a copy), 1 when the
 * caller held it already (nothing taken), or an error.  mp__lock_leave
 * takes what enter returned and releases only what enter took. */
int mp__lock_enter(mp_lock *l);
void mp__lock_leave(mp_lock *l, int entered);

/* A barrier's internal mutex, for tests that die holding it. */
mp__mutex *mp__barrier_mutex(mp_barrier *b);

/* The tracker of named segments (tracker.c).  Names are full names,
 * "/mproc-...".  create asks the tracker to create the segment (O_EXCL)
 * and returns its descriptor, or an error; attach reports a hold taken by
 * this process and waits until it is counted, close reports one dropped
 * without waiting (both ignored for segments the tracker does not track,
 * and skipped when no tracker runs); unlink asks the tracker to unlink a
 * segment it tracks and returns 0, MP_ENOENT, or MP_ESRCH when this
 * program does not track it. */
int mp__tracker_create(const char *path, int *fd);
void mp__tracker_attach(const char *path, uint64_t ino);
void mp__tracker_close(const char *path, uint64_t ino);
int mp__tracker_unlink(const char *path, uint64_t ino);

/* The entry point of a fresh image started as the tracker (from the
 * library's constructor).  Never returns. */
_Noreturn void mp__tracker_serve(int listen_fd);
/* ---- queues (queue.c) ---------------------------------------------------- */

/* The instants of a put or a get where a process may die, for tests that
 * must kill one exactly there. */
typedef enum mp__queue_point {
    MP__QP_PUT_WRITTEN,   /* record written past tail, not yet published */
    MP__QP_PUT_PUBLISHED, /* published, put lock still held */
    MP__QP_GET_COPIED,    /* record copied out, head not yet moved */
    MP__QP_GET_COMMITTED, /* head moved, get lock still held */
    MP__QP_GET_WAITING,   /* about to sleep for data, get lock held */
    MP__QP_PUT_WAITING    /* about to sleep for room, put lock held */
} mp__queue_point;

/* Called, when set, at each of those instants (in the process that is
 * there).  NULL in normal use; a test sets it in a child that must die. */
extern void (*mp__queue_fault)(mp__queue_point where);
/* ---- futures and waits (future.c) --------------------------------------- */

/* What a future asks of the one that will finish it (a pool).  Every call
 * is made while the future is unfinished, between hold and release, which
 * keep the owner's memory alive. */
typedef struct mp__future_ops {
    void (*hold)(void *owner);
    void (*release)(void *owner);
    /* Cancels f if no worker took it: finishes f with MP_ECANCELED and
     * returns 0; MP_EBUSY when too late. */
    int (*cancel)(void *owner, mp_future *f);
    bool (*running)(void *owner, const mp_future *f);
    /* A SIGINT arrived while a thread waited for f: stop everything. */
    void (*interrupt)(void *owner);
    /* Runs fn(arg) in the owner's callback thread.  Returns 0, or an error
     * when it cannot (the caller then runs it itself). */
    int (*dispatch)(void *owner, void (*fn)(void *), void *arg);
} mp__future_ops;

/* A new unfinished future with two references: the caller's, and the
 * owner's, which mp__future_finish() drops.  NULL when memory runs out. */
mp_future *mp__future_new(const mp__future_ops *ops, void *owner);

/* A future finished at birth with status (an error), one reference. */
mp_future *mp__future_new_failed(int status, const char *report);

/* The owner's own data about f (which job runs it); set and read by the
 * owner under its own lock. */
void mp__future_set_token(mp_future *f, uint64_t token);
uint64_t mp__future_token(const mp_future *f);

/* Adds a reference. */
void mp__future_ref(mp_future *f);

/* Finishes f with its outcome, takes ownership of result and report
 * (malloc'ed, may be NULL), wakes its waiters, hands its callbacks to the
 * owner's callback thread, and drops the owner's reference.  Only the
 * first call for a future counts; later ones just free what they pass. */
void mp__future_finish(mp_future *f, int status, void *result, size_t len, int task_error,
                       int exitcode, char *report, long long failed_index);

/* Interruptible waits.  A waiter has a word to sleep on (a futex) that
 * whatever it waits for bumps; while SIGINT has its default action, a
 * SIGINT bumps it too and marks the wait interrupted. */
typedef struct mp__waiter {
    _Atomic uint32_t *word;
    int slot;      /* in the static table the signal handler reaches, or -1 */
    uint32_t gen;  /* SIGINT count at the start */
    bool catching; /* this wait counts on the library's SIGINT handler */
} mp__waiter;

void mp__waiter_begin(mp__waiter *w);
void mp__waiter_end(mp__waiter *w);
bool mp__waiter_interrupted(const mp__waiter *w);

/* Wakes a waiter (bumps its word).  word may be NULL. */
void mp__waiter_wake(_Atomic uint32_t *word);

#endif /* MPROC_INTERNAL_H */
