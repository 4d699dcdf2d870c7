/*
 * startmethod.c - the program's default start method, and the check that
 * keeps fork away from programs with threads.
 *
 * DESIGN
 * fork() copies the whole process but only the calling thread: a lock that
 * another thread held at that instant is held for ever in the child, which
 * deadlocks the first time it takes it (malloc's are handled by glibc; the
 * program's own, and those of the libraries it uses, are not).  Nothing
 * warns; the child just hangs (cpython #84559, and why Python 3.14 made
 * forkserver its default on Linux).
 *
 * So a start counts the threads of the program first (through the platform
 * layer; free while the program never had a second one).  The default,
 * MP_START_AUTO, forks while the caller is alone and otherwise starts the
 * child from the forkserver, a single-threaded image; it says so in the
 * log, once at WARNING and later at DEBUG.  A caller that asked for fork
 * explicitly gets MP_ETHREADS instead of a child that may hang.  Threads
 * the library made itself are named "mproc-..." and do not count: they
 * hold none of the program's locks; and a start made by such a thread (a
 * pool replacing a worker) is the library's, decided when its pool was
 * made, so it is not checked again.
 */
#define _GNU_SOURCE
#include "startmethod.h"

#include "fork_guard.h"
#include "log.h"

static _Atomic int default_method = MP_START_AUTO;
static _Atomic bool switch_logged;

const char *mp__start_method_name(mp_start_method m)
{
    switch (m) {
    case MP_START_FORK:
        return "fork";
    case MP_START_SPAWN:
        return "spawn";
    case MP_START_FORKSERVER:
        return "forkserver";
    case MP_START_AUTO:
        return "auto";
    case MP_START_DEFAULT:
        return "default";
    }
    return "unknown";
}

int mp_set_start_method(mp_start_method m)
{
    if (m != MP_START_FORK && m != MP_START_SPAWN && m != MP_START_FORKSERVER && m != MP_START_AUTO)
        return mp__fail(MP_EINVAL,
                        "mp_set_start_method: method must be MP_START_FORK, _SPAWN, _FORKSERVER "
                        "or _AUTO (got %d)",
                        (int)m);
    atomic_store(&default_method, (int)m);
    return 0;
}

mp_start_method mp_get_start_method(void)
{
    return (mp_start_method)atomic_load(&default_method);
}

/* Threads other than the caller and the library's own; 0 when the caller
 * is one of the library's, or when they cannot be counted (the check is
 * then skipped, as before it existed). */
static int other_threads(void)
{
    int total, named;
    bool self_named;
    if (mp__threads_count(MP__LIBRARY_THREAD_PREFIX, &total, &named, &self_named) < 0 || self_named)
        return 0;
    int others = total - named - 1;
    return others > 0 ? others : 0;
}

/* The comm engine in use (Open MPI after MPI_Init) forbids fork in this
 * process: its registered memory and network state do not survive a copy.
 * The forkserver starts by exec, which such engines allow. */
static int fork_forbidden(mp_start_method m, bool copyable, const char *what,
                          mp_start_method *method)
{
    if (m == MP_START_FORK || !copyable) {
        mp_log(MP_LOG_WARNING,
               "%s: fork refused: the MPI engine of the communicator forbids fork in this "
               "process; start it with forkserver or spawn%s",
               what, copyable ? "" : " (and give its argument's size, arg_size)");
        return MP_ENOTSUP;
    }
    mp_log(MP_LOG_DEBUG, "%s: the MPI engine forbids fork: starting it from the forkserver", what);
    *method = MP_START_FORKSERVER;
    return 0;
}

int mp__start_method_resolve(mp_start_method requested, bool copyable, const char *what,
                             mp_start_method *method)
{
    mp_start_method m = requested == MP_START_DEFAULT ? mp_get_start_method() : requested;
    if (m == MP_START_SPAWN || m == MP_START_FORKSERVER) {
        *method = m;
        return 0;
    }
    if (m != MP_START_FORK && m != MP_START_AUTO)
        return MP_EINVAL;
    if (!mp__comm_fork_allowed())
        return fork_forbidden(m, copyable, what, method);
    int others = other_threads();
    if (others == 0) {
        *method = MP_START_FORK;
        return 0;
    }
    const char *s = others == 1 ? "" : "s";
    if (m == MP_START_FORK) {
        mp_log(MP_LOG_WARNING,
               "%s: fork refused: the program has %d other thread%s, and a forked child "
               "inherits whatever locks they hold at that instant (it may hang on one); "
               "start it with forkserver or spawn",
               what, others, s);
        return MP_ETHREADS;
    }
    if (!copyable) {
        mp_log(MP_LOG_WARNING,
               "%s: the program has %d other thread%s, so forking it is unsafe, and its "
               "argument cannot be copied to a forkserver child (give its size, arg_size): "
               "start refused",
               what, others, s);
        return MP_ETHREADS;
    }
    bool first = !atomic_exchange(&switch_logged, true);
    mp_log(first ? MP_LOG_WARNING : MP_LOG_DEBUG,
           "%s: the program has %d other thread%s, and a forked child inherits whatever "
           "locks they hold at that instant: starting it from the forkserver instead "
           "(mp_set_start_method() chooses a method for good)",
           what, others, s);
    *method = MP_START_FORKSERVER;
    return 0;
}
