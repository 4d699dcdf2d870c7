/**
 * @file
 * mproc.h - the one public header of mproc, process-based parallelism for C.
 *
 * mproc gives C programs what Python's multiprocessing and
 * concurrent.futures give Python programs: processes, pipes, queues, shared
 * memory, process-shared locks and events, a manager of shared objects, a
 * worker pool with futures, and ranks with collectives (under mprun or
 * Open MPI's mpiexec) - at C speed, with fault isolation: a child
 * that crashes or hangs is reported to its parent as an error value, never
 * as a crash or a hang of the parent.
 *
 * Conventions, everywhere:
 *   - Calls that can fail return int: 0 or a count on success, a negative
 *     MP_E* code on failure (mproc/common.h).  Errors are returned, never
 *     only logged.
 *   - Constructors return that int too and hand the object back through
 *     their last argument, NULL on failure: int mp_x_new(..., mp_x **out).
 *     Outcomes that are not the call's own success or failure come back
 *     the same way (mp_process_exitcode(p, &code)).
 *   - Predicates (is_set, empty, done, ...) return bool; statistics come
 *     from int mp_<noun>_stats_get(obj, &stats).
 *   - Calls that can block take a timeout in seconds (double); MP_FOREVER
 *     waits without limit, 0 polls.
 *   - _new/_free for objects the library allocates; _init/_destroy for
 *     objects the caller places (for instance in shared memory); _close
 *     releases what a handle holds, is idempotent and apart from _free,
 *     which never waits.
 *
 * Each part is declared and documented in its own header below.
 */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/comm.h"
#include "mproc/common.h"
#include "mproc/error.h"
#include "mproc/future.h"
#include "mproc/log.h"
#include "mproc/manager.h"
#include "mproc/pipe.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "mproc/queue.h"
#include "mproc/scope.h"
#include "mproc/shm.h"
#include "mproc/shutdown.h"
#include "mproc/sync.h"
#include "mproc/value.h"
#include "mproc/wait.h"

#endif /* MPROC_H */
