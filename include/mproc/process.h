/**
 * @file
 * mproc/process.h - child processes (Python's multiprocessing.Process).
 *
 * Included by <mproc.h>.
 *
 * A process object runs one target function in a child process.  The child
 * is isolated: whatever it does - crash, abort, _exit(), loop forever - the
 * parent learns it as an exit code and a report, never as a crash or a hang
 * of its own.
 *
 * Lifetime and reaping.  A started child is reaped exactly once, by join,
 * is_alive, exitcode, error or free, whichever notices its end first.  Every child
 * has PR_SET_PDEATHSIG set to SIGKILL, so it dies when its parent dies, even
 * by SIGKILL; grandchildren started through mproc die in turn.  Linux ties
 * that signal to the thread that called mp_process_start(): start children
 * from a thread that outlives them (the main thread, or a pool's own thread).
 *
 * At normal exit (exit() or a return from main) the library terminates the
 * daemon children that are still running (SIGTERM, a grace period, then
 * SIGKILL) and joins the others, as Python does.
 *
 * Start methods.
 *   MP_START_FORK        fork() the caller.  The child sees a copy of the
 *                        caller's memory, so target and arg are used as
 *                        they are.  Fastest; unsafe when other threads of
 *                        the caller hold locks the target needs: so while
 *                        the program has other threads, an explicit fork
 *                        is refused (MP_ETHREADS) rather than risk a child
 *                        that hangs.
 *   MP_START_SPAWN       execute the program afresh (/proc/self/exe) and run
 *                        the target in the new image before main().  Nothing
 *                        of the caller's memory is inherited: arg must point
 *                        to opts.arg_size bytes, which are copied.
 *   MP_START_FORKSERVER  ask a server process - started once, by exec, as a
 *                        clean single-threaded image - to fork the child.
 *                        Safe in programs with threads, far cheaper than
 *                        spawn.  arg is copied as for spawn.
 *   MP_START_AUTO        fork while the program has a single thread, and
 *                        forkserver once it has others (said in the log):
 *                        the program's default.  arg must then be NULL or
 *                        have an arg_size, so that it can be copied.
 * A process object that names no method (MP_START_DEFAULT, what
 * MP_PROCESS_OPTS_INIT and mp_process_new() give) uses the program's
 * default, mp_get_start_method().  Threads the library starts itself are
 * named "mproc-..." and are not counted: they hold none of the program's
 * locks.  (Do not give threads of your own names that start that way.)
 *
 * With spawn and forkserver the target runs in a fresh image of the same
 * executable: globals hold their load-time values, main() has not run, and
 * neither have the executable's own constructors.  The target function is
 * found again by its offset inside the executable or shared library that
 * holds it, so any function of the program works, static ones included.
 * Such a child receives descriptors 0, 1 and 2 and those in
 * mp_process_opts.fds, and nothing else of what its parent had open.
 *
 * Signals in children.  A child starts with its parent's signal
 * dispositions (fork) or the defaults (spawn, forkserver), so SIGINT - the
 * terminal's Ctrl-C, which reaches every process of the foreground group -
 * ends a child as it ends its parent, as in Python.  Once the parent has
 * called mp_signals_install() (mproc/shutdown.h), children started
 * afterwards ignore SIGINT instead: the parent coordinates the shutdown,
 * and the children learn of it through the shutdown event.  The
 * forkserver always ignores SIGINT, SIGTERM and SIGHUP for the same reason:
 * it ends when the program does.  Every child handles SIGURG, which the
 * library sends to ask it for its stack (a SIGINT under
 * mp_signals_install()): the child records where it is on its report pipe
 * and goes on; the parent logs the trace, named as in a crash report, when
 * it reaps the child.  A target that needs SIGURG for its own use may
 * install its own handler.
 */
#ifndef MPROC_PROCESS_H
#define MPROC_PROCESS_H

#include <sys/types.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A child process: made by mp_process_new(), started by mp_process_start(), freed by
 * mp_process_free().  Opaque. */
typedef struct mp_process mp_process;

/**
 * The function a child runs.  Its return value becomes the exit code:
 * 0..255 exit with that status; a negative value (an MP_E* code) is
 * reported to the parent (mp_process_error, mp_process_report) and the
 * child exits with status 1; a value above 255 exits with status 1 and is
 * reported the same way.
 */
typedef int (*mp_target_fn)(void *arg);

/** How a child is started (see "Start methods" above). */
typedef enum mp_start_method {
    MP_START_DEFAULT = -1,   /**< the program's default, mp_get_start_method() */
    MP_START_FORK = 0,       /**< fork() the caller */
    MP_START_SPAWN = 1,      /**< execute the program afresh and run the target in the new image */
    MP_START_FORKSERVER = 2, /**< ask the forkserver to fork the child */
    MP_START_AUTO = 3        /**< fork in a single-threaded program, else forkserver */
} mp_start_method;

/**
 * Sets the program's default start method, which process objects that name
 * none use (and pools that name none): MP_START_FORK, MP_START_SPAWN,
 * MP_START_FORKSERVER or MP_START_AUTO (the initial default).  A default of
 * MP_START_FORK counts as asking for fork explicitly.  Returns 0, or
 * MP_EINVAL for anything else.  Affects starts made afterwards, in this
 * process (children inherit it with fork).  Thread-safe.
 */
MP_EXTERN int mp_set_start_method(mp_start_method method);

/** The program's default start method (MP_START_AUTO unless set). */
MP_EXTERN mp_start_method mp_get_start_method(void);

/** Options for mp_process_new_opts().  Always start from MP_PROCESS_OPTS_INIT. */
typedef struct mp_process_opts {
    /** The child's name, shown in logs, reports and `ps` (the first 15
     * bytes).  NULL: "Process-N", numbered per parent as Python does.
     * Copied; at most 63 bytes are kept. */
    const char *name;
    /** A daemon child is terminated when its parent exits or frees it;
     * a non-daemon child is joined at exit. */
    bool daemon;
    /** MP_START_DEFAULT: the program's default (mp_get_start_method()). */
    mp_start_method start_method;
    /** For spawn and forkserver: the number of bytes at arg to copy to the
     * child, which receives a pointer to its own copy (NULL when 0).
     * Ignored for fork, where arg is passed as it is.  At most 16 MiB. */
    size_t arg_size;
    /** Descriptors handed to the child: inherited with fork, duplicated
     * across exec with spawn, sent over a Unix socket with forkserver.  In
     * the child, mp_process_inherited_fd(i) names the descriptor that
     * stands for fds[i].  The array is copied; at most 64. */
    const int *fds;
    size_t nfds; /**< the number of descriptors in fds */
} mp_process_opts;

/** The defaults of mp_process_opts: a "Process-N" name, not a daemon, the program's start method,
 * no argument copy, no descriptors. */
#define MP_PROCESS_OPTS_INIT                      \
    {                                             \
        NULL, false, MP_START_DEFAULT, 0, NULL, 0 \
    }

/**
 * Creates a process object that will run target(arg) with the program's
 * default start method, not yet started, and stores it in *out; the caller owns it
 * (mp_process_free).  name may be NULL ("Process-N").  Returns 0;
 * MP_EINVAL for a NULL target or out; MP_ENOMEM.  On failure *out is NULL
 * (when out is not).  Does not block.  Thread-safe.
 */
MP_EXTERN int mp_process_new(mp_target_fn target, void *arg, const char *name, mp_process **out);

/**
 * As mp_process_new(), with options; opts may be NULL (the defaults).
 * MP_EINVAL also for an invalid option: an unknown start method, arg_size
 * above 16 MiB, more than 64 fds, fds NULL with nfds > 0, or arg NULL with
 * arg_size > 0 for spawn and forkserver.
 */
MP_EXTERN int mp_process_new_opts(mp_target_fn target, void *arg, const mp_process_opts *opts,
                                  mp_process **out);

/**
 * Starts the child.  Returns 0 once the child exists (it may not have run
 * yet), MP_ESTATE if the object was started before, MP_ETHREADS when fork
 * is not safe (see "Start methods" above), MP_ESHUTDOWN once the program's
 * shutdown event is set (mproc/shutdown.h: a shutdown must not race with
 * new children), or the fork/exec error (MP_EAGAIN, MP_ENOMEM, ...).
 * Signals are blocked around fork, so the child never runs a handler of
 * the parent's before its set-up.  Blocks only for the fork (and, for
 * forkserver, a reply from the server).  Thread-safe for distinct objects.
 */
MP_EXTERN int mp_process_start(mp_process *p);

/**
 * The start method the child was started with - the one chosen for it when
 * it asked for MP_START_DEFAULT or MP_START_AUTO - or, before start, the
 * one it asks for.  MP_START_DEFAULT for a NULL p.
 */
MP_EXTERN mp_start_method mp_process_start_method(const mp_process *p);

/**
 * Waits up to timeout seconds for the child to end, then reaps it.  Returns
 * 0 when it has ended (at once if it had already), MP_ETIMEDOUT if it is
 * still running when the time is up, MP_ESTATE if it was never started,
 * MP_ECANCELED when the wait was interrupted: by a SIGINT while SIGINT has
 * its default action (the wait catches it, as the pool's waits do, so that
 * the program can clean up instead of dying mid-way; the child is left
 * running), or by a shutdown of the program (mp_shutdown(), or a signal
 * under mp_signals_install()).  Never blocks past the timeout; retries on
 * EINTR.  A crash report of the child is collected here and logged at
 * MP_LOG_ERROR.
 */
MP_EXTERN int mp_process_join(mp_process *p, double timeout);

/** True while the child runs.  Does not block; reaps the child if it ended. */
MP_EXTERN bool mp_process_is_alive(mp_process *p);

/**
 * The exit code, as Python reports it, in *code: the status the child
 * exited with (0..255), or -SIGNUM if a signal ended it (-9 for SIGKILL).
 * The return value is only the call's own outcome, so a signal can never
 * be mistaken for an error: 0 once the child has ended (*code is set);
 * MP_ESTATE while it runs or before start; MP_ECHILD when it has ended but
 * something outside mproc reaped it first (SIGCHLD set to SIG_IGN, or a
 * waitpid(-1) elsewhere in the program), so its code is unknown; MP_EINVAL
 * for a NULL p or code.  *code is set only with 0.  Does not block; reaps
 * the child if it ended.
 */
MP_EXTERN int mp_process_exitcode(mp_process *p, int *code);

/**
 * The error the child reported, in *err: the MP_E* code (or the value
 * above 255) its target returned, or the error its set-up failed with; 0
 * when it reported none.  Returns 0 once the child has ended (*err is set);
 * MP_ESTATE while it runs or before start; MP_EINVAL for a NULL p or err.
 * Does not block; reaps the child if it ended.
 */
MP_EXTERN int mp_process_error(mp_process *p, int *err);

/**
 * What went wrong, as text, once an ended child ended abnormally: the
 * signal's name and meaning, the faulting address where there is one, and a
 * backtrace of the crashing thread - each frame's function, and its source
 * file and line when the library was built with libdw and the program has
 * debugging information (-g); or the error the target returned; or its exit
 * status.  The backtrace shows the program's frames: mproc's own, and those
 * that only say how the process was started, are counted but not shown
 * unless the environment has MPROC_BACKTRACE=full.  NULL while the child
 * runs or when it exited with status 0.  The string belongs to the object
 * and lives until free.
 */
MP_EXTERN const char *mp_process_report(const mp_process *p);

/** The child's pid; 0 before start. */
MP_EXTERN pid_t mp_process_pid(const mp_process *p);

/** The child's name (never NULL). */
MP_EXTERN const char *mp_process_name(const mp_process *p);

/** Whether the process is a daemon (see mp_process_opts.daemon). */
MP_EXTERN bool mp_process_daemon(const mp_process *p);

/** @{ */
/**
 * Sends SIGTERM (terminate), SIGKILL (kill), or any signal (signal).
 * Returns 0, also when the child has already ended (nothing is sent then);
 * MP_ESTATE before start.  Signals go through a pidfd where the kernel has
 * them, so a recycled pid is never hit.
 */
MP_EXTERN int mp_process_terminate(mp_process *p);
MP_EXTERN int mp_process_kill(mp_process *p);
MP_EXTERN int mp_process_signal(mp_process *p, int signo);
/** @} */

/**
 * Stops a child the way a shutdown should: SIGTERM, up to grace seconds
 * for it to end, then SIGKILL, then a join.  Returns 0 once the child is
 * reaped, MP_ESTATE before start.  Blocks for at most grace seconds plus
 * the kernel's time to tear the child down.
 */
MP_EXTERN int mp_process_stop(mp_process *p, double grace);

/**
 * Frees the object.  Never waits for a running child: a daemon child is
 * killed (SIGKILL) and reaped; a non-daemon child is left to run, is reaped
 * in the background by later calls of the library, and is joined at exit,
 * so that it never stays a zombie.  NULL is a no-op.
 */
MP_EXTERN void mp_process_free(mp_process *p);

/**
 * In a child started by mproc: the descriptor that stands for opts.fds[i]
 * of the parent, or MP_EBADF when i is out of range or this process was not
 * started by mproc.
 */
MP_EXTERN int mp_process_inherited_fd(size_t i);

/** The calling process's name: "MainProcess" unless mproc started it. */
MP_EXTERN const char *mp_process_current_name(void);

/**
 * Python's active_children(): the children this process started that are
 * still running, reaping those that have ended (as a join would).  Stores
 * up to cap of them in out (which may be NULL when cap is 0) and returns
 * how many run, which may exceed cap.  Children whose objects were freed
 * while running are not listed (nor are a pool's workers, which belong to
 * the pool).  The objects stay their owners': a pointer is valid until its
 * owner frees it.  Does not block.  Thread-safe.
 */
MP_EXTERN int mp_active_children(mp_process **out, size_t cap);

/**
 * Python's parent_process(): in a child started by mproc, the process that
 * started it (for a forkserver child, the process that asked the server,
 * not the server); 0 in a process mproc did not start, such as the main
 * process.  Does not block.
 */
MP_EXTERN pid_t mp_parent_process(void);

/**
 * Starts the forkserver now rather than at its first use, so that its start
 * (an exec of the program) is paid at a chosen moment.  Returns 0 (also if
 * it runs already) or the exec error.  The server is shared by the whole
 * process, dies with it, and serves every thread.  Thread-safe.
 */
MP_EXTERN int mp_forkserver_start(void);

/**
 * Stops the forkserver if it runs; children it started keep running and
 * remain joinable.  Returns 0.  Called at exit by the library itself.
 */
MP_EXTERN int mp_forkserver_stop(void);

/**
 * The number of CPUs this process may use: the CPUs in its affinity mask,
 * capped by a cgroup CPU quota (cgroup v2 cpu.max, or v1 cfs_quota), rounded
 * up.  What a pool should size itself by.  Always >= 1.
 */
MP_EXTERN int mp_cpu_count(void);

/**
 * The number of distinct physical cores among the CPUs this process may
 * use (hyper-threads of one core count once), from sysfs topology.  Falls
 * back to mp_cpu_count() when the topology is unknown.  Always >= 1.
 */
MP_EXTERN int mp_physical_cores(void);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_PROCESS_H */
