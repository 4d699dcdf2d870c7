/**
 * @file
 * mproc/pool.h - a pool of worker processes (Python's multiprocessing.Pool
 * and concurrent.futures.ProcessPoolExecutor), with fault isolation.
 *
 * Included by <mproc.h>.
 *
 * A pool starts N worker processes once and runs many tasks on them:
 *
 *   apply / apply_async / submit   one function call with argument bytes,
 *                                  answering with result bytes (a future)
 *   map / map_async / starmap      one function over an array of
 *                                  fixed-size elements, into an array
 *   imap / imap_unordered          the same, results taken one by one
 *   map_bytes / imap_bytes         one function over byte strings of any
 *                                  size, one output of any size per item
 *
 * Data.  Task arguments, map inputs and outputs travel through shared
 * memory that the pool owns, never as a message per item: a worker claims
 * a chunk of a map with one atomic operation and writes its outputs in
 * place.  mp_pool_shared_alloc() hands out memory the workers already see;
 * a map whose input or output lies there is not copied at all.
 *
 * Fault isolation.  A worker that crashes (segfault, abort, bus error),
 * is killed (the OOM killer's SIGKILL) or calls _exit() in the middle of a
 * task fails that task alone, with MP_EWORKER, its exit status and its
 * crash report; the worker is replaced and every other task completes.  A
 * task that runs past opts.task_timeout has its worker killed and replaced
 * and fails with MP_ETIMELIMIT.  opts.retries re-runs such a task on a fresh
 * worker before giving up.  A worker initializer that fails breaks the
 * pool once (MP_EINIT), instead of being retried forever.  Nothing a task
 * does hangs the parent: a task that closes every descriptor costs its
 * worker (which leaves; the next task there may fail with MP_EBADF if its
 * result must grow), not the pool.  Tasks share the pool's memory,
 * though: a task that writes over it (a stray pointer) can fail, or spoil
 * the outputs of, the work in progress at that moment.  The parent keeps
 * its own records and checks the shared memory against them after any
 * worker dies and every 100 ms while work runs; when they disagree it
 * kills every worker, fails the work in progress (and queued work whose
 * data lies in shared memory) with MP_EPROTO, rebuilds its shared state
 * and goes on with fresh workers (mp_pool_stats.pool_resets counts it).
 * Every future still finishes, and mp_pool_free() still returns.
 *
 * Map items and failures.  A map item whose function returns nonzero fails
 * with MP_ETASK; the other items go on.  When the worker running a chunk
 * dies, the item it was running fails (or is retried, with opts.retries);
 * the items before it in the chunk keep their results, and the items after
 * it are run again on another worker; a worker that dies after claiming a
 * chunk but before starting its first item fails nothing, the chunk is
 * simply run again, and one that dies after the chunk's last item but
 * before reporting the chunk done fails nothing either, the chunk is
 * collected.  Likewise an apply task whose worker dies after taking it but
 * before starting it runs again, and one whose worker dies after writing
 * its result is collected.  No item is ever lost, and no item's result is
 * delivered twice.  Outputs of failed items are unspecified.  The per-item outcome is available through
 * mp_map_spec.errors; the map's return value (or its future's status) is
 * the error of the first failed item.
 *
 * Threads.  A pool runs two threads of its own in the parent: a supervisor
 * that starts and watches the workers (it reaps dead ones, fails and
 * re-queues their work, enforces time limits, starts replacements, and
 * collects results) and, when needed, a callback thread that runs done
 * callbacks and progress reports.  Every call on a pool is thread-safe.
 * Workers are started by the supervisor thread, which lives as long as the
 * pool, so they die with the parent (PR_SET_PDEATHSIG) however it ends.
 * They are the pool's, not the program's: mp_active_children() does not
 * list them.  A program's shutdown (mp_shutdown, mproc/shutdown.h) closes
 * every live pool, and terminates those whose workers outlast its
 * timeout; a worker that cannot start because the program is shutting
 * down closes the pool too (with no worker left, what it holds fails with
 * MP_ESHUTDOWN).
 *
 * Start methods (opts.start_method), decided once by mp_pool_new() for
 * every worker.  MP_START_DEFAULT (what MP_POOL_OPTS_INIT sets) takes the
 * program's default (mp_get_start_method()); that and MP_START_AUTO fork
 * while the program has no other thread, and otherwise use the forkserver
 * (a log line says so) - or refuse with MP_ETHREADS when the initializer's
 * argument cannot be copied (initarg without initarg_size).  MP_START_FORK
 * asked for in a program with other threads is refused (MP_ETHREADS); the
 * pool's own threads, and the library's, do not count.  MP_START_FORK
 * forks the parent: task functions and the initializer argument are used as they
 * are, and a worker sees the parent's memory as it was when the worker
 * started (workers replaced later see it as it is then) - so a task
 * function from a library the parent loads (dlopen) after the workers
 * started is not in them: load it first, or use forkserver.  Forking a
 * program whose other threads hold locks (inside malloc, stdio, or the
 * program's own) is unsafe; such programs should use MP_START_FORKSERVER:
 * a clean single-threaded server, started when the pool is created, forks
 * the workers, and functions are found again in that fresh image by their
 * place in their executable or library (static functions work too).  With
 * forkserver (and MP_START_SPAWN) nothing of the parent's memory reaches
 * the workers except what the pool copies: initarg_size bytes of initarg,
 * task arguments, map inputs and ctx bytes.
 *
 * Errors.  Calls that make an object (mp_pool_new, mp_pool_imap and its
 * kin) return an int, 0 or a negative MP_E* code, and hand the object back
 * through their last argument (NULL on failure).  Calls that start work
 * (apply_async, submit, map_async, starmap_async) return a future and
 * report every error through its status, as Python's apply_async answers
 * with an AsyncResult; they return NULL only when memory for the future
 * itself runs out.
 *
 * Worker processes ignore SIGINT: a Ctrl-C reaches the parent, which
 * coordinates (see mproc/future.h): a SIGINT while a thread waits in map,
 * imap_next or a future's get terminates the pool and returns MP_ECANCELED.
 *
 * Workers that are ranks (opts.comm; mpi4py's MPICommExecutor).  Under
 * mprun -n N or mpiexec -n N every rank calls mp_pool_new() with
 * opts.comm set to a communicator (the world, typically) and the same
 * options: the call is collective (it duplicates the communicator, so the
 * pool's messages never meet the program's).  On rank 0 it returns a pool
 * whose workers are ranks 1..N-1 (or the first opts.processes of them),
 * used through every call of this header.  On every other rank it serves
 * that pool - runs the tasks rank 0 sends - until rank 0's pool is closed
 * and done, terminated, freed, or rank 0 exits; it then returns 0 with
 * *out NULL, and the program goes on (typically to the end of main).
 * Functions are found on the worker ranks by their place in their module,
 * as for spawn (the same binary on every host); one that lies in no
 * module's code fails its submission with MP_EINVAL.  Arguments, inputs
 * and ctx are copied at the call and travel as messages, a map chunk per
 * message, up to two tasks in flight per rank; outputs come back the same
 * way.  Refused with MP_EINVAL (mp_last_error_detail() names why): a
 * communicator of one rank, processes above N-1, a start_method other than
 * MP_START_DEFAULT or MP_START_AUTO, maxtasksperchild: a rank is started
 * by its launcher and cannot be replaced.  task_timeout (per task or map
 * chunk) fails a task past it with MP_ETIMELIMIT at once, but its rank
 * cannot be stopped from rank 0: it runs the task to its end, gets no
 * other work meanwhile (with a time limit each rank has one task in flight,
 * not two) and serves again after; its late answer is dropped.  Progress
 * is reported a chunk at a time.  The
 * initializer runs once on each worker rank with initarg_size bytes of rank
 * 0's initarg (with initarg_size 0: that rank's own opts.initarg).  retries,
 * terminate_grace and name have no effect.  mp_pool_shared_alloc() returns
 * NULL and mp_pool_worker_pids() 0.  Terminate and free fail the work not
 * done with MP_ECANCELED, and return once every worker rank has finished
 * the task it runs (a rank cannot be interrupted).  A worker rank that
 * dies: under the local engine every call on the world fails from then on
 * (mproc/comm.h), so its task and every other unfinished one fail with
 * MP_EWORKER, the pool breaks (mp_pool_error() MP_EWORKER) and the other
 * worker ranks return MP_EPEERDEAD from mp_pool_new(); under Open MPI the
 * launcher ends the whole job.  A rank 0 that dies ends the serving ranks
 * with MP_EPEERDEAD under the local engine (under Open MPI the launcher
 * ends the job).  docs/pool.md, "Workers that are ranks", has the rest.
 */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include <sys/types.h>

#include "common.h"
#include "future.h"
#include "log.h"
#include "process.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A pool of worker processes: made by mp_pool_new(), freed by
 * mp_pool_free().  Opaque; every call on it is thread-safe. */
typedef struct mp_pool mp_pool;

/**
 * The result of an apply task under construction, in the worker: bytes
 * appended to it come back to the parent as the future's result.  Small
 * results travel inside the task's slot; larger ones through a shared
 * file of the worker's, without a message.  Only valid inside the task.
 */
typedef struct mp_buf mp_buf;

/**
 * Grows the result by len bytes and returns a pointer to them (to be
 * filled), valid until the next call on b.  NULL when memory runs out
 * (the task may then return an error).
 */
MP_EXTERN void *mp_buf_alloc(mp_buf *b, size_t len);

/** Appends len bytes.  Returns 0, MP_ENOMEM, or MP_EBADF when the result
 * had to grow and a task had closed the worker's result file (the worker
 * then leaves the pool once this task is over). */
MP_EXTERN int mp_buf_append(mp_buf *b, const void *data, size_t len);

/** The result so far: its bytes (valid until the next call on b); see
 * mp_buf_len() for its length. */
MP_EXTERN void *mp_buf_data(mp_buf *b);
/** The length in bytes of the result so far. */
MP_EXTERN size_t mp_buf_len(const mp_buf *b);

/** Shortens the result to len bytes (no effect when it is not longer). */
MP_EXTERN void mp_buf_truncate(mp_buf *b, size_t len);

/**
 * Fails the task (or the item of a map over byte strings) with a message,
 * as a Python task raises an exception with its text: replaces what was
 * appended to b with the text printf formats (at most 64 KiB) and returns
 * MP_ETASK, so that `return mp_task_fail(out, "no such file: %s", name);`
 * fails the task with MP_ETASK (mp_future_task_error() is then MP_ETASK).
 * The caller reads the text from mp_future_report() (or, in a map over
 * byte strings, mp_results_message()), and a log line at MP_LOG_INFO
 * carries it.  A task that returns nonzero without it leaves what it
 * appended as its message all the same.  Only valid inside the task.
 */
MP_EXTERN int mp_task_fail(mp_buf *b, const char *fmt, ...) MP__PRINTF(2, 3);

/**
 * The same for an item of a map over fixed-size elements (mp_map_fn,
 * mp_map_range_fn), which has no mp_buf: records the message for the
 * item running now and returns MP_ETASK, so that `return mp_item_fail(...)`
 * fails it.  The map future's report (the first failed item's) and a log
 * line at MP_LOG_INFO carry it.  Outside a pool's worker it only returns
 * MP_ETASK.
 */
MP_EXTERN int mp_item_fail(const char *fmt, ...) MP__PRINTF(1, 2);

/**
 * An apply task: runs in a worker with the argument bytes the parent gave
 * (arg is NULL when len is 0) and appends its result to out.  Returns 0 on
 * success; any other value fails the task with MP_ETASK, the value being
 * available as mp_future_task_error(), and what it appended (up to 64
 * KiB) as the failure's message, mp_future_report() (see mp_task_fail).
 */
typedef int (*mp_task_fn)(const void *arg, size_t len, mp_buf *out);

/**
 * A map function: computes one output element from one input element.
 * ctx points to the map's ctx bytes (NULL when there are none).  Returns 0,
 * or nonzero to fail this item alone with MP_ETASK.
 */
typedef int (*mp_map_fn)(const void *in, void *out, const void *ctx);

/**
 * A map function over a contiguous range of n elements (in[0..n), out
 * [0..n)), for loops the compiler can vectorise.  A worker death fails the
 * whole range that was running, since the function's progress inside it
 * is unknown.  Returns 0, or nonzero to fail the range's items with
 * MP_ETASK.
 */
typedef int (*mp_map_range_fn)(const void *in, void *out, size_t n, const void *ctx);

/** A worker initializer: runs once in each worker before its first task.
 * Nonzero fails it: the pool breaks with MP_EINIT (reported once). */
typedef int (*mp_init_fn)(void *arg);

/** A progress report: done of total items of one map finished; ctx is
 * the progress_ctx given with the function. */
typedef void (*mp_progress_fn)(size_t done, size_t total, void *ctx);

/** Options for mp_pool_new().  Always start from MP_POOL_OPTS_INIT. */
typedef struct mp_pool_opts {
    /** Number of worker processes; 0: mp_cpu_count().  At most 1024. */
    int processes;
    /** Run once in each worker before its first task, with initarg.  With
     * fork, initarg is passed as it is; otherwise initarg_size bytes of it
     * are copied (at most 16 MiB). */
    mp_init_fn initializer;
    void *initarg;       /**< the initializer's argument */
    size_t initarg_size; /**< bytes of initarg to copy (see initializer) */
    /** A worker exits after this many tasks (a map chunk counts as one) and
     * is replaced by a fresh one; 0: never. */
    unsigned maxtasksperchild;
    /** Seconds one task (or one map item) may run; its worker is killed
     * past that and the task fails with MP_ETIMELIMIT (never MP_ETIMEDOUT,
     * which means that a wait ran out).  <= 0: no limit. */
    double task_timeout;
    /** How many times a task whose worker died or timed out is run again
     * on a fresh worker before it fails.  A task that returns an error is
     * not retried: that is its answer. */
    unsigned retries;
    /** How the workers are started (see "Start methods" above);
     * MP_START_DEFAULT: the program's default. */
    mp_start_method start_method;
    /** Called with the progress of every map and imap, from the pool's
     * callback thread, at most every progress_interval seconds and once at
     * the end. */
    mp_progress_fn progress;
    void *progress_ctx; /**< passed to progress as it is */
    /** Draws a progress bar of every map and imap on stderr (a line redrawn
     * in place on a terminal; a line a second otherwise). */
    bool progress_bar;
    /** Seconds between two progress calls (0: the default, 0.1). */
    double progress_interval;
    /** Workers are named "<name>Worker-<n>" (default "PoolWorker-<n>").
     * Copied; at most 40 bytes are kept. */
    const char *name;
    /** mp_pool_terminate() sends SIGTERM, waits this long for the workers to
     * end, then sends SIGKILL.  0: SIGKILL at once. */
    double terminate_grace;
    /** NULL: the workers are processes of this program.  A communicator
     * (mproc/comm.h): the workers are its ranks - see "Workers that are
     * ranks" above; mp_pool_new() is then collective over it. */
    struct mp_comm *comm;
} mp_pool_opts;

/** The default options: one worker per CPU, no initializer, no task or time
 * limit, no retries, the program's start method, no progress report, 0.1 s
 * between progress calls, 1 s of grace at terminate, no comm (the workers
 * are processes of this program).  Initialise every
 * mp_pool_opts with it, then set the fields wanted. */
#define MP_POOL_OPTS_INIT                                                                      \
    {                                                                                          \
        0, NULL, NULL, 0, 0, 0.0, 0, MP_START_DEFAULT, NULL, NULL, false, 0.1, NULL, 1.0, NULL \
    }

/**
 * Creates a pool and starts its workers (in the background: the call does
 * not wait for them, nor for their initializer), and stores it in *out.
 * opts may be NULL (the defaults).  Returns 0, or:
 *   MP_EINVAL   out is NULL, or an invalid option: processes out of range,
 *               an unknown start method, initarg_size over 16 MiB or
 *               without initarg, a negative progress_interval or
 *               terminate_grace, a NaN task_timeout (the field is named
 *               in a log line at MP_LOG_DEBUG);
 *   MP_ETHREADS the start method is fork (asked for, or the only one
 *               possible with an initarg to share) and the program has
 *               other threads: fork would copy their locks held;
 *   MP_ENOTSUP  fork, while a communication engine that forbids it runs;
 *   MP_EINVAL   with opts.comm: an option a pool of ranks refuses (see
 *               "Workers that are ranks" above);
 *   MP_EPEERDEAD  on a worker rank: rank 0 died while it served;
 *   MP_ENOMEM   out of memory;
 *   another error when the shared memory, the eventfd, the forkserver or
 *               the supervisor thread cannot be created (a log line at
 *               MP_LOG_ERROR names which).
 * *out is NULL on failure.  Free the pool with mp_pool_free().  With
 * opts.comm, collective over it, and on every rank but 0 it blocks while
 * it serves rank 0's pool, then returns 0 with *out NULL.
 */
MP_EXTERN int mp_pool_new(const mp_pool_opts *opts, mp_pool **out);

/** The number of worker processes the pool keeps running, or MP_EINVAL for
 * NULL.  Never blocks. */
MP_EXTERN int mp_pool_size(const mp_pool *p);

/**
 * Stops accepting work: later submissions fail with MP_ECLOSED.  Work
 * already submitted completes, then the workers exit.  Returns 0 (also
 * when closed already), MP_EINVAL.  Does not block.
 */
MP_EXTERN int mp_pool_close(mp_pool *p);

/**
 * Stops the pool now: pending and running work fails with MP_ECANCELED
 * (and callbacks run), the workers get SIGTERM and, after
 * opts.terminate_grace seconds, SIGKILL.  Returns 0 once every worker is
 * reaped - so within the grace period plus the kernel's time to end them
 * - MP_EINVAL.  Idempotent.
 */
MP_EXTERN int mp_pool_terminate(mp_pool *p);

/**
 * Waits up to timeout seconds for a closed or terminated pool to finish
 * its work and for every worker to exit.  Returns 0, MP_ETIMEDOUT,
 * MP_ESTATE when the pool was neither closed nor terminated (as Python),
 * MP_EDEADLK from the pool's callback thread, MP_ECANCELED on SIGINT.
 */
MP_EXTERN int mp_pool_join(mp_pool *p, double timeout);

/**
 * Python's executor shutdown: closes the pool, cancels the work no worker
 * has started when cancel_pending is true, and waits up to timeout seconds
 * as mp_pool_join() does.
 */
MP_EXTERN int mp_pool_shutdown(mp_pool *p, bool cancel_pending, double timeout);

/**
 * Frees the pool.  A pool that still has workers is terminated first (as
 * leaving Python's `with Pool()` block does).  Futures and iterators of the
 * pool stay valid (unfinished ones are cancelled).  Callbacks still queued
 * run before it returns.  NULL is a no-op.  No other thread may be using
 * the pool, or start to, once this is called; nor may it be called from
 * the pool's own callback thread (it then does nothing but log).
 */
MP_EXTERN void mp_pool_free(mp_pool *p);

/**
 * 0 while the pool can run work; the error that broke it otherwise:
 * MP_EINIT when a worker's initializer failed, or the error that kept
 * workers from starting.  mp_pool_report() says more.
 */
MP_EXTERN int mp_pool_error(const mp_pool *p);

/** The report of what broke the pool, or NULL (also for NULL).  Owned by
 * the pool: valid until mp_pool_free(). */
MP_EXTERN const char *mp_pool_report(const mp_pool *p);

/* ---- apply and submit ------------------------------------------------------- */

/**
 * Runs fn(arg, len) in a worker and waits up to timeout seconds for it.
 * The result is copied to out (cap bytes), its length stored in *out_len.
 * Returns the task's status as mp_future_get() does; MP_ETIMEDOUT when the
 * wait ran out (the task is then cancelled if it has not started).
 */
MP_EXTERN int mp_pool_apply(mp_pool *p, mp_task_fn fn, const void *arg, size_t len, void *out,
                            size_t cap, size_t *out_len, double timeout);

/**
 * Submits fn(arg, len) and returns its future at once.  The len bytes at
 * arg are copied before the call returns.  Never blocks: when more work is
 * queued than the shared task table holds, the rest waits in the parent.
 * As Python's apply_async, the call answers with a future whatever
 * happens, and errors are reported through it (MP_ECLOSED for a closed
 * pool, MP_EINIT for a broken one, MP_EINVAL for a NULL fn or arg); NULL
 * only when memory for the future itself runs out.  The caller frees the
 * future with mp_future_free().
 */
MP_EXTERN mp_future *mp_pool_apply_async(mp_pool *p, mp_task_fn fn, const void *arg, size_t len);

/**
 * As mp_pool_apply_async(), with Python's callback and error_callback:
 * callback(f, ctx) runs when the task succeeds, error_callback(f, ctx)
 * when it fails or is cancelled, in the pool's callback thread.  Either
 * may be NULL.
 */
MP_EXTERN mp_future *mp_pool_apply_async_cb(mp_pool *p, mp_task_fn fn, const void *arg, size_t len,
                                            mp_future_cb callback, mp_future_cb error_callback,
                                            void *ctx);

/** The executor's submit(): mp_pool_apply_async() by another name. */
MP_EXTERN mp_future *mp_pool_submit(mp_pool *p, mp_task_fn fn, const void *arg, size_t len);

/* ---- map --------------------------------------------------------------------- */

/** A map call in full, for mp_pool_map_ex() and its kin.  Start from
 * MP_MAP_SPEC_INIT. */
typedef struct mp_map_spec {
    mp_map_fn fn;             /**< one of fn and range_fn */
    mp_map_range_fn range_fn; /**< the other one (NULL when fn is set) */
    const void *in;           /**< n elements of in_size bytes (in_size may be 0) */
    size_t n;                 /**< the number of items */
    size_t in_size;           /**< bytes per input element */
    void *out;                /**< n elements of out_size bytes (out_size may be 0) */
    size_t out_size;          /**< bytes per output element */
    /** Items per chunk a worker claims at once; 0: as Python chooses,
     * ceil(n / (4 * workers)). */
    size_t chunksize;
    /** ctx_size bytes copied once for the whole map and passed to every
     * call (at most 16 MiB); NULL for none. */
    const void *ctx;
    size_t ctx_size; /**< bytes at ctx */
    /** Optional: n ints that receive each item's outcome, 0 or an error
     * (MP_ETASK, MP_EWORKER, MP_ETIMELIMIT, MP_ECANCELED; for a map whose
     * workers use the caller's arrays in place, also what stopped them
     * from reaching those: MP_EFAULT for a bad address, MP_EPERM). */
    int *errors;
    /** Progress of this map; NULL: the pool's (opts.progress). */
    mp_progress_fn progress;
    void *progress_ctx; /**< passed to progress as it is */
} mp_map_spec;

/** An empty map: every field 0 or NULL.  Initialise every mp_map_spec with
 * it, then set the fields wanted. */
#define MP_MAP_SPEC_INIT                                              \
    {                                                                 \
        NULL, NULL, NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, NULL, NULL \
    }

/**
 * Runs fn over n input elements of in_size bytes, writing n outputs of
 * out_size bytes, in order, and waits for all of them.  Returns 0 when
 * every item succeeded; otherwise the error of the first failed item (by
 * index) - the other outputs are valid all the same; MP_EINVAL for bad
 * arguments; MP_ECLOSED, MP_EINIT; MP_ECANCELED after a SIGINT or a
 * terminate.  Arrays in memory from mp_pool_shared_alloc() are used in
 * place.  Other arrays the workers read and write where they are, each
 * its own share, when the system allows it (see mp_pool_stats.
 * maps_direct); otherwise they are copied through shared memory.  Either
 * way no worker touches them once the call has returned.
 *
 * Elements are copied as bytes: a pointer inside one is followed in the
 * worker, in the worker's memory.  A fork worker sees the parent's memory
 * as it was when the worker started, so a map over char * (strings, any
 * pointer) allocated after the pool started reads garbage there, or
 * crashes; forkserver and spawn workers see none of it.  Put the data
 * itself in the elements (a fixed-size char array), or in memory from
 * mp_pool_shared_alloc() with offsets in the elements, or - for strings
 * and other data of any size - map over the bytes themselves with
 * mp_pool_map_bytes(), which copies them into shared memory.
 */
MP_EXTERN int mp_pool_map(mp_pool *p, mp_map_fn fn, const void *in, size_t n, size_t in_size,
                          void *out, size_t out_size, size_t chunksize);

/**
 * As mp_pool_map(), returning at once with a future that finishes when
 * every item has.  Inputs are copied before the call returns; out must stay
 * valid, and untouched, until the future is finished.  The future carries
 * no result bytes; its status is the map's, and errors of the arguments or
 * of the pool come through it too, as for mp_pool_apply_async(): NULL only
 * when memory for the future runs out.
 */
MP_EXTERN mp_future *mp_pool_map_async(mp_pool *p, mp_map_fn fn, const void *in, size_t n,
                                       size_t in_size, void *out, size_t out_size,
                                       size_t chunksize);

/**
 * Python's starmap: in C a tuple of arguments is a struct, so starmap is a
 * map over an array of argument structs, each of args_size bytes; fn
 * receives a pointer to one struct.  Same results and errors as map.
 */
MP_EXTERN int mp_pool_starmap(mp_pool *p, mp_map_fn fn, const void *args, size_t n,
                              size_t args_size, void *out, size_t out_size, size_t chunksize);
/** As mp_pool_starmap(), returning at once with a future, as
 * mp_pool_map_async() does. */
MP_EXTERN mp_future *mp_pool_starmap_async(mp_pool *p, mp_map_fn fn, const void *args, size_t n,
                                           size_t args_size, void *out, size_t out_size,
                                           size_t chunksize);

/** mp_pool_map() with every option, from spec. */
MP_EXTERN int mp_pool_map_ex(mp_pool *p, const mp_map_spec *spec);
/** mp_pool_map_async() with every option, from spec. */
MP_EXTERN mp_future *mp_pool_map_async_ex(mp_pool *p, const mp_map_spec *spec);

/* ---- imap ---------------------------------------------------------------------- */

/** Results of a map taken one at a time, as they are ready: made by
 * mp_pool_imap() and its kin, freed by mp_imap_free().  Opaque. */
typedef struct mp_imap mp_imap;

/**
 * Starts a map whose results are taken with mp_imap_next(): in order of
 * index (imap) or as they finish (imap_unordered), and stores the
 * iterator in *out.  Inputs are copied before the call returns.  Returns
 * 0, or at once: MP_EINVAL for bad arguments (as mp_pool_map(), or a NULL
 * out), MP_ESTATE in a process that does not own the pool, MP_ECLOSED,
 * MP_EINIT, MP_ENOMEM; *out is then NULL.  A map cancelled before it ran
 * (terminate, shutdown with cancel_pending, a pool that breaks) says so
 * from mp_imap_next().  Free the iterator with mp_imap_free().
 */
MP_EXTERN int mp_pool_imap(mp_pool *p, mp_map_fn fn, const void *in, size_t n, size_t in_size,
                           size_t out_size, size_t chunksize, mp_imap **out);
/** As mp_pool_imap(), the results taken as they finish rather than in
 * order of index. */
MP_EXTERN int mp_pool_imap_unordered(mp_pool *p, mp_map_fn fn, const void *in, size_t n,
                                     size_t in_size, size_t out_size, size_t chunksize,
                                     mp_imap **out);

/** mp_pool_imap() (ordered true) or mp_pool_imap_unordered() (ordered
 * false) with every option; spec->out and spec->errors are not used. */
MP_EXTERN int mp_pool_imap_ex(mp_pool *p, const mp_map_spec *spec, bool ordered, mp_imap **out);

/**
 * Waits up to timeout seconds for the next item: copies its output
 * (out_size bytes) to out and its index to *index (either may be NULL).
 * Returns 0; the item's error (MP_ETASK, MP_EWORKER, MP_ETIMELIMIT,
 * MP_ECANCELED) with *index set, when that item failed - the iteration
 * goes on after it; MP_EOF once all n items were returned; MP_ETIMEDOUT
 * when no item was ready in time; MP_ECANCELED when SIGINT interrupted
 * the wait (the pool is then terminated); the error that cancelled the
 * map before it ran (MP_ECANCELED, MP_EINIT).  One thread at a time per
 * iterator.
 */
MP_EXTERN int mp_imap_next(mp_imap *it, void *out, size_t *index, double timeout);

/** Frees the iterator; items not taken are discarded (the map still runs to
 * its end).  NULL is a no-op. */
MP_EXTERN void mp_imap_free(mp_imap *it);

/* ---- maps over byte strings ------------------------------------------------------ */

/**
 * @name Maps over byte strings
 *
 * Python maps over lists of strings and gets a list of any-size results
 * back; these maps do the same in C: n items of any size in (each a
 * pointer and a length), one output of any size per item back, read item
 * by item from an mp_results object (or an mp_imap_bytes iterator).
 *
 * They are the fix for the fork-visibility rule (see mp_pool_map()): a
 * map over an array of `char *` works only for memory the workers saw
 * when they started, while these copy each item's bytes into the pool's
 * shared memory before the call returns, so items allocated at any time
 * (and under every start method) reach the workers whole.
 *
 * Speed: items are cut into chunks as for mp_pool_map(); each chunk's
 * items are copied once, straight into shared memory, a worker runs the
 * function over all of them into one result buffer, and that buffer comes
 * back in one piece; the results object points into it.  No message
 * travels per item.
 *
 * Failures: an item whose function returns nonzero fails alone with
 * MP_ETASK, and what it appended (or the text of mp_task_fail() or
 * mp_item_fail()) is its message.  A chunk whose worker dies fails all
 * its items with MP_EWORKER and the crash report as their message (or
 * runs again, with opts.retries); opts.task_timeout limits a whole chunk
 * (MP_ETIMELIMIT); a terminate fails what had not run with MP_ECANCELED.
 * @{
 */

/** One item of a map over byte strings: len bytes at data (data may be
 * NULL when len is 0).  The bytes are copied; the caller keeps them. */
typedef struct mp_bytes {
    const void *data; /**< the item's first byte */
    size_t len;       /**< its length in bytes */
} mp_bytes;

/**
 * A function over one byte string, run in a worker.
 * @param in   the item's bytes (NULL when len is 0), read-only, valid
 *             during the call only
 * @param len  their length
 * @param out  the item's output: append any number of bytes to it
 *             (mp_buf_append, mp_buf_alloc); mp_buf_data() and
 *             mp_buf_len() see this item's output alone
 * @return 0, or nonzero to fail this item alone with MP_ETASK; what it
 *         appended (at most 64 KiB) is then its message (see
 *         mp_task_fail()).
 */
typedef int (*mp_bytes_fn)(const void *in, size_t len, mp_buf *out);

/** The outcomes of a map over byte strings, item by item.  Reading it is
 * thread-safe; free it with mp_results_free(). */
typedef struct mp_results mp_results;

/**
 * Runs fn over the n items at in, in chunks of chunksize items (0: as
 * Python chooses, ceil(n / (4 * workers))), and waits for all of them.
 * *out receives the results (free them with mp_results_free()).
 * @return 0 when every item succeeded; otherwise the error of the first
 * failed item (by index), the other items' outputs valid all the same;
 * MP_ECANCELED after a SIGINT or a terminate; with *out set in all these
 * cases.  MP_EINVAL (a NULL p, fn, in or out, n of 0, an item with len > 0
 * and NULL data, items whose lengths add up past what shared memory
 * holds), MP_ESTATE (a process that does not own the pool) or MP_ENOMEM
 * when the map could not start, with *out NULL.  A closed or broken pool
 * fails every item (MP_ECLOSED, MP_EINIT).  Blocks; thread-safe.
 */
MP_EXTERN int mp_pool_map_bytes(mp_pool *p, mp_bytes_fn fn, const mp_bytes *in, size_t n,
                                size_t chunksize, mp_results **out);

/**
 * As mp_pool_map_bytes(), returning at once with a future that finishes
 * when every item has; its status, mp_future_failed_index() and
 * mp_future_report() are the first failed item's.  The items' bytes are
 * copied before the call returns.  *out receives the results object, to
 * read once the future is finished (items not finished read as
 * MP_ESTATE), or NULL when the map could not start (the future's status
 * says why: the errors of mp_pool_map_bytes()).  Returns NULL (and *out
 * NULL) only when memory for the future runs out.  The caller frees both
 * the future and the results.  mp_future_cancel() on the
 * future returns MP_EBUSY: a map over byte strings stops with a
 * terminate (or a SIGINT while a thread waits for it).
 */
MP_EXTERN mp_future *mp_pool_map_bytes_async(mp_pool *p, mp_bytes_fn fn, const mp_bytes *in,
                                             size_t n, size_t chunksize, mp_results **out);

/** How many items r holds (0 for NULL). */
MP_EXTERN size_t mp_results_count(const mp_results *r);

/**
 * Item i's output, owned by r and valid until mp_results_free().
 * @param r    the results
 * @param i    the item's index
 * @param len  receives the output's length (may be NULL)
 * @return its first byte; NULL, with *len 0, when the output is empty, the
 *         item failed or has not finished, or i is out of range.
 */
MP_EXTERN const void *mp_results_item(const mp_results *r, size_t i, size_t *len);

/** Item i's outcome: 0, or MP_ETASK (its function returned nonzero),
 * MP_EWORKER, MP_ETIMELIMIT, MP_ECANCELED, MP_EPROTO, MP_ECLOSED,
 * MP_EINIT, MP_ENOMEM; MP_ESTATE while it has not finished; MP_EINVAL
 * for a NULL r or an i out of range. */
MP_EXTERN int mp_results_error(const mp_results *r, size_t i);

/** Item i's message when it failed (its own text, a crash report, the
 * time limit...), NUL-terminated and owned by r; NULL when it succeeded,
 * has not finished, or left none. */
MP_EXTERN const char *mp_results_message(const mp_results *r, size_t i);

/** Drops the caller's reference; chunks still running keep what they
 * fill until they end.  Never waits.  NULL is a no-op. */
MP_EXTERN void mp_results_free(mp_results *r);

/** The outputs of a map over byte strings, taken one by one. */
typedef struct mp_imap_bytes mp_imap_bytes;

/**
 * Starts a map over byte strings whose outputs are taken with
 * mp_imap_bytes_next(): in order of index (imap_bytes) or chunk by chunk
 * as chunks finish (_unordered), and stores the iterator in *out.  The
 * items' bytes are copied before the call returns.  Returns 0, or the
 * errors of mp_pool_map_bytes() for a map that could not start (*out is
 * then NULL).  Free the iterator with mp_imap_bytes_free().
 */
MP_EXTERN int mp_pool_imap_bytes(mp_pool *p, mp_bytes_fn fn, const mp_bytes *in, size_t n,
                                 size_t chunksize, mp_imap_bytes **out);
/** mp_pool_imap_bytes(), its chunks handed out as they finish. */
MP_EXTERN int mp_pool_imap_bytes_unordered(mp_pool *p, mp_bytes_fn fn, const mp_bytes *in, size_t n,
                                           size_t chunksize, mp_imap_bytes **out);

/**
 * Waits up to timeout seconds for the next item.
 * @param it       the iterator
 * @param data     receives the item's output, or its message when it
 *                 failed (NUL-terminated; NULL when it has none); owned by
 *                 the iterator, valid until mp_imap_bytes_free() (may be
 *                 NULL)
 * @param len      receives its length (may be NULL)
 * @param index    receives the item's index (may be NULL)
 * @param timeout  seconds; MP_FOREVER waits forever, 0 polls
 * @return 0; the item's error (as mp_results_error()) when it failed -
 *         the iteration goes on after it; MP_EOF once every item was
 *         returned; MP_ETIMEDOUT; MP_ECANCELED when SIGINT interrupted the
 *         wait (the pool is then terminated); MP_EINVAL for a NULL it or a
 *         NaN timeout.  One thread at a time per iterator.
 */
MP_EXTERN int mp_imap_bytes_next(mp_imap_bytes *it, const void **data, size_t *len, size_t *index,
                                 double timeout);

/** Frees the iterator; items not taken are dropped (the map still runs to
 * its end).  Never waits.  NULL is a no-op. */
MP_EXTERN void mp_imap_bytes_free(mp_imap_bytes *it);

/** @} */

/* ---- shared memory ---------------------------------------------------------------- */

/**
 * size bytes of memory the pool's workers see too (64-byte aligned): map
 * inputs and outputs placed here are used in place, never copied.  The
 * memory lives until mp_pool_shared_free() or the pool's free.  Returns
 * NULL for size 0, a closed pool, or when memory runs out.  Thread-safe.
 */
MP_EXTERN void *mp_pool_shared_alloc(mp_pool *p, size_t size);

/** Returns memory from mp_pool_shared_alloc().  NULL is a no-op. */
MP_EXTERN void mp_pool_shared_free(mp_pool *p, void *ptr);

/* ---- inspection ---------------------------------------------------------------------- */

/** Counters of a pool since it was made, read with mp_pool_stats_get(). */
typedef struct mp_pool_stats {
    uint64_t tasks_done;       /**< tasks and map chunks run to their end */
    uint64_t tasks_failed;     /**< failed by a worker's death or a timeout */
    uint64_t tasks_retried;    /**< run again after a worker's death or a timeout */
    uint64_t tasks_timed_out;  /**< ran past task_timeout */
    uint64_t workers_started;  /**< worker processes started, replacements included */
    uint64_t workers_died;     /**< ended abnormally: crashed, killed, timed out */
    uint64_t workers_recycled; /**< exited after maxtasksperchild tasks */
    /** mp_pool_map() calls whose workers read and wrote the caller's arrays
     * where they are (one kernel copy each way, by process_vm_readv and
     * process_vm_writev) instead of through shared memory.  They do when
     * chunks hold a few KiB or more, and the system lets a process read
     * its parent's memory as a debugger would: not under Yama's
     * ptrace_scope >= 1, nor with MPROC_POOL_VM=0 in the environment. */
    uint64_t maps_direct;
    /** Times the pool found its shared memory overwritten (by a task
     * writing where it should not) and started afresh: the work then in
     * progress failed with MP_EPROTO. */
    uint64_t pool_resets;
} mp_pool_stats;

/** Fills *st with the pool's counters (a snapshot).  Returns 0, or
 * MP_EINVAL for a NULL p or st.  Never blocks; thread-safe. */
MP_EXTERN int mp_pool_stats_get(mp_pool *p, mp_pool_stats *st);

/**
 * Stores the pids of the running workers in pids (at most cap) and
 * returns how many run, which may be more than cap (pids may be NULL
 * when cap is 0); MP_EINVAL for a NULL p, or a NULL pids with cap > 0.
 * Never blocks; thread-safe.
 */
MP_EXTERN int mp_pool_worker_pids(mp_pool *p, pid_t *pids, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_POOL_H */
