/**
 * @file
 * mproc/shutdown.h - ending a program cleanly: one shutdown event that
 * every process of the program sees, mp_shutdown(), which makes sure every
 * child really ended and nothing named is left, and SIGINT / SIGTERM
 * handling that starts it.
 *
 * Included by <mproc.h>.  The guide is docs/shutdown.md.
 *
 * The pattern (the seeds' "always clean up after yourself"):
 *
 *   worker:  mp_event *stop;  mp_shutdown_event(&stop);
 *            while (!mp_event_is_set(stop)) { ...one unit of work... }
 *   parent:  mp_signals_install(NULL);      Ctrl-C or SIGTERM now shut down
 *            ... start workers, do the work ...
 *            mp_shutdown(5.0);              or let a signal do it
 *
 * A shutdown (mp_shutdown_ex) proceeds in steps, each logged:
 *   1. the shutdown event is set, so that every loop that checks it ends;
 *      waits in progress in this process return MP_ECANCELED;
 *   2. every queue of this process is closed (puts fail with MP_ECLOSED,
 *      gets drain what is left and then return MP_EOF), and every object
 *      that owns processes is asked to close: pools stop taking work, a
 *      manager server this process started (not a detached one) gets
 *      SIGTERM and closes its connections; ranks started by mp_run are
 *      children like any other;
 *   3. it waits up to the timeout for every child of this process to end
 *      by itself;
 *   4. then those objects are told to stop at once, each remaining child
 *      gets SIGTERM and a grace period, then SIGKILL; every child is reaped
 *      (none is left a zombie), a manager server still running after a
 *      further grace period is killed and reaped (its socket file removed),
 *      and the forkserver is stopped;
 *   5. every named segment of the program is unlinked (the tracker knows
 *      them all, whichever process created them).
 * It returns how many children had to be signalled, and a report the
 * caller can read.  Children are those started by this process; each of
 * them takes its own children along when it dies (see mproc/process.h).
 *
 * After a shutdown, new children are refused (MP_ESHUTDOWN) until the
 * event is cleared (mp_event_clear on the shutdown event).
 *
 * The event and the named segments are the program's, so a shutdown run
 * in a child asks the whole program to stop: to stop only a child's own
 * children, use mp_process_stop() on each.
 */
#ifndef MPROC_SHUTDOWN_H
#define MPROC_SHUTDOWN_H

#include "common.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the shutdown event ------------------------------------------------------- */

/**
 * The program's shutdown event in *out: an mp_event (mproc/sync.h) in
 * shared memory that every process of the program sees - children forked
 * from this one inherit it, spawn and forkserver children are handed it
 * when they start, and their own children in turn.  Made on first use,
 * and at the latest before the first child starts.  Wait on it, test it,
 * include it in mp_wait_any() (mproc/wait.h); set it to ask every process
 * to finish (mp_shutdown() does; a child may too).  Do not free or destroy
 * it.  Returns 0, MP_EINVAL for a NULL out, or the error of making its
 * shared memory (MP_EMFILE, MP_ENOMEM, ...); *out is then NULL.
 * Thread-safe.
 */
MP_EXTERN int mp_shutdown_event(mp_event **out);

/** Whether the shutdown event is set (false before it exists).  A snapshot;
 * no system call: cheap enough for every iteration of a loop. */
MP_EXTERN bool mp_shutdown_requested(void);

/* ---- shutting down ----------------------------------------------------------- */

/** Options for mp_shutdown_ex().  Start from MP_SHUTDOWN_OPTS_INIT. */
typedef struct mp_shutdown_opts {
    /** How long children get to end by themselves once the event is set
     * (step 3).  0: none; MP_FOREVER: no limit (shutdown then never
     * signals anyone, unless a second signal forces it). */
    double timeout;
    /** How long children get after SIGTERM before SIGKILL (step 4). */
    double grace;
} mp_shutdown_opts;

/** The defaults of mp_shutdown_opts: 5 s for children to end, then 1 s after SIGTERM. */
#define MP_SHUTDOWN_OPTS_INIT \
    {                         \
        5.0, 1.0              \
    }

/** What a shutdown did.  The counts are of this process's children. */
typedef struct mp_shutdown_report {
    int children;   /**< running when it began */
    int exited;     /**< ended by themselves within the timeout */
    int terminated; /**< ended after SIGTERM */
    int killed;     /**< needed SIGKILL */
    int lost;       /**< still there after SIGKILL (stuck in the kernel) */
    int closed;     /**< objects closed: queues, pools, ... */
    int unlinked;   /**< named segments unlinked */
    int signo;      /**< the signal that started it; 0 when called directly */
    bool forced;    /**< a second signal cut the waits short */
    double seconds; /**< how long it took */
    /** The steps, one line each, and the name and pid of every child that
     * had to be signalled; cut short (with "...") if it does not fit. */
    char text[4096];
} mp_shutdown_report;

/**
 * Shuts the program down as described at the top of this file and fills
 * *report (which may be NULL).  Returns how many children had to be
 * signalled (terminated + killed, >= 0), or MP_EINVAL for an opts
 * field out of range (a NaN timeout; a grace NaN or negative: see "Times"
 * in common.h).  Blocks for at most
 * timeout + grace and the kernel's time to end what was killed (bounded:
 * a child stuck in the kernel is counted as lost, not waited for).
 * Thread-safe: a call made while another runs waits for it and returns its
 * result.  A SIGINT during the waits (while SIGINT has its default action)
 * or a second signal under mp_signals_install() cuts them short: what still
 * runs is killed at once.
 */
MP_EXTERN int mp_shutdown_ex(const mp_shutdown_opts *opts, mp_shutdown_report *report);

/** mp_shutdown_ex() with this timeout and a grace period of 1 second
 * (MP_EINVAL for a NaN timeout). */
MP_EXTERN int mp_shutdown(double timeout);

/**
 * The report of the last shutdown that finished in this process, in *out.
 * Returns 0, MP_ESTATE when none has finished, MP_EINVAL for NULL.  For a
 * program whose shutdown a signal started (mp_signals_install with
 * exit = false).  Thread-safe.
 */
MP_EXTERN int mp_shutdown_report_get(mp_shutdown_report *out);

/* ---- signals ----------------------------------------------------------------- */

/** Options for mp_signals_install().  Start from MP_SIGNALS_OPTS_INIT. */
typedef struct mp_signals_opts {
    mp_shutdown_opts shutdown; /**< for the shutdown a signal starts */
    /** Once that shutdown is done, end the program by the signal that
     * started it (its default action, so that whoever started the program
     * sees it killed by SIGINT or SIGTERM).  false: the program goes on;
     * its waits return MP_ECANCELED and mp_shutdown_requested() is true,
     * so that main() can finish on its own. */
    bool exit;
    /** On SIGINT, log the stack of the thread that received it (normally
     * the main thread) and ask every child for its own; each child's is
     * logged, named, when it is reaped. */
    bool stack_traces;
} mp_signals_opts;

/** The defaults of mp_signals_opts: the shutdown defaults, with both flags on. */
#define MP_SIGNALS_OPTS_INIT   \
    {                          \
        {5.0, 1.0}, true, true \
    }

/**
 * Opt-in: from now on SIGTERM and SIGINT start a shutdown (mp_shutdown_ex
 * with opts->shutdown) instead of killing the program at once.  The
 * handler only sets the shutdown event, cancels this process's waits and
 * wakes a thread of the library's ("mproc-signals", which blocks every
 * signal), which does the rest: logs the signal, on SIGINT the stacks,
 * runs the shutdown, and with opts->exit ends the program.  A second
 * SIGINT or SIGTERM while it runs forces it: no more waiting, what runs is
 * killed, the rest of the clean-up still happens, and the program ends
 * even with exit = false.  A third ends the program at once, by the
 * signal's default action (children still die with it, and the tracker
 * still unlinks named segments once the program's processes are gone).
 * Children started afterwards ignore SIGINT: the parent coordinates (see
 * mproc/process.h, "Signals in children").  opts may be NULL (the
 * defaults).  Returns 0; MP_EBUSY if installed already; MP_EINVAL for bad
 * options; or the error of the eventfd, the thread or sigaction.  Call it
 * from the main thread, before starting other threads.
 */
MP_EXTERN int mp_signals_install(const mp_signals_opts *opts);

/**
 * Restores the dispositions SIGINT and SIGTERM had before
 * mp_signals_install() and stops the library's thread, after the shutdown
 * a signal started, if one runs, is over.  Children started afterwards
 * keep SIGINT's default.  Returns 0, or MP_ESTATE when not installed.
 */
MP_EXTERN int mp_signals_uninstall(void);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_SHUTDOWN_H */
