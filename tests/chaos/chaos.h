/*
 * chaos.h - the fault-injection suite: one driver (chaos.c) and a table of
 * capabilities (cap_*.c), each a function that plays one round.
 *
 * DESIGN
 * The driver forks one process per round, the round's "program": it starts
 * a new session, plays the capability's round with a seed of its own, and
 * writes what happened into a tally the driver mapped shared before the
 * fork, so that the tally survives the round's process however it ends.
 * The driver is a child subreaper: whatever the round leaves running, even
 * a grandchild that left the session, is re-parented to it, so "nothing
 * left" is the driver having no child once the round is over.  A watchdog
 * (a deadline on the round's pidfd) turns a hang into a counted failure
 * instead of a stuck suite.
 *
 * Inside a round, every wait has a timeout, every fault is counted by kind,
 * and every fault the round's parent is exposed to (a child it waits for
 * killed, a call that must fail under a limit) must come back to it as an
 * MP_E* code, an exit code or a future's status: chaos_expose() counts the
 * exposure, chaos_reported() the report.
 */
#ifndef MPROC_CHAOS_H
#define MPROC_CHAOS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "mproc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* The kinds of fault, counted separately in the totals. */
#define CHAOS_FAULTS(XX)                    \
    XX(SIGKILL, "SIGKILL")                  \
    XX(SIGSEGV, "SIGSEGV")                  \
    XX(STOPKILL, "SIGSTOP then SIGKILL")    \
    XX(PARENT_KILLED, "parent killed")      \
    XX(PIPE_CLOSED, "pipe closed")          \
    XX(QUEUE_FILLED, "queue filled")        \
    XX(SHM_EXHAUSTED, "/dev/shm exhausted") \
    XX(NOFILE, "out of descriptors")        \
    XX(NPROC, "fork failed (RLIMIT_NPROC)") \
    XX(SERVER_KILLED, "manager server killed")

enum chaos_fault {
#define CHAOS__ENUM(name, text) CHAOS_F_##name,
    CHAOS_FAULTS(CHAOS__ENUM)
#undef CHAOS__ENUM
        CHAOS_NFAULTS
};

/* One round's outcome, in memory shared between the round and the driver. */
typedef struct chaos_tally {
    uint64_t faults[CHAOS_NFAULTS];
    uint64_t exposed;  /* faults the round's parent had to learn of */
    uint64_t reported; /* ... and learnt of, as an error code or exit code */
    uint64_t lost;     /* acknowledged messages gone, not counted by mproc */
    uint64_t dup;      /* messages delivered twice */
    uint64_t corrupt;  /* messages delivered with wrong bytes */
    uint64_t failed;   /* other checks that failed */
    uint64_t skipped;  /* variants that could not run here */
    uint64_t findings; /* documented library limits a round ran into */
    char note[512];    /* the first failure, or why a variant was skipped */
} chaos_tally;

/* A small PRNG (splitmix64): the whole run follows from one seed. */
typedef struct chaos_rng {
    uint64_t s;
} chaos_rng;

uint64_t chaos_next(chaos_rng *r);
/* A number in [0, n). */
unsigned chaos_below(chaos_rng *r, unsigned n);

/* The round's tally; set by the driver in the round's process. */
extern chaos_tally *chaos_t;

void chaos_fault(enum chaos_fault kind);
void chaos_expose(void);
void chaos_reported(void);
/* A check that failed: counted, and the first one's text kept. */
__attribute__((format(printf, 1, 2))) void chaos_fail(const char *fmt, ...);
/* A limit of the library a round ran into that is reported, not hidden
 * (e.g. a segment created beyond /dev/shm's room): counted, not failed. */
__attribute__((format(printf, 1, 2))) void chaos_finding(const char *fmt, ...);
/*
 * Variants that meet a bug known in the library, being fixed apart, are
 * off unless CHAOS_KNOWN_BUGS lists their name (or says "all"): the short
 * run in `make test` stays green on a library with the bug, and one
 * setting turns the variant on once the fix is in.  The bugs:
 *   pipe-readahead  a receive reads ahead past its message: a reader that
 *                   dies between receives takes the next messages with it
 *                   (the next reader gets MP_EPROTO and loses them)
 *   pool-closefds   a task that closes its worker's descriptors wedges
 *                   the pool (its future never finishes; later tasks of
 *                   that worker fail)
 *   tracker-outlives  a program killed while its first named segment is
 *                   being created leaves its tracker running (for good)
 *   queue-getloss   a consumer killed inside a get, after the message was
 *                   copied out, takes it away uncounted (mp_queue_stats
 *                   .lost stays 0; a joinable queue's join never returns);
 *                   off, such a message is counted as a limit met
 * chaos_bug_enabled() returns whether the variant named may run and counts
 * a skip when not; chaos_bug_on() only asks.
 */
bool chaos_bug_enabled(const char *name);
bool chaos_bug_on(const char *name);
/* A variant this machine cannot run: counted apart, with the reason. */
__attribute__((format(printf, 1, 2))) void chaos_skip(const char *fmt, ...);
#define CHAOS_CHECK(cond, ...)       \
    do {                             \
        if (!(cond))                 \
            chaos_fail(__VA_ARGS__); \
    } while (0)

/* Memory shared with forked children (anonymous, MAP_SHARED); zeroed. */
void *chaos_shared(size_t size);
void chaos_unshare(void *p, size_t size);
double chaos_now(void);
void chaos_sleep_us(unsigned us);
/* Sends the fault kind (SIGKILL, SIGSEGV, or SIGSTOP, a pause, SIGKILL)
 * to pid and counts it.  kind is one of the three signal kinds. */
void chaos_signal(pid_t pid, enum chaos_fault kind, chaos_rng *r);
/* One of the three signal kinds, at random. */
enum chaos_fault chaos_signal_kind(chaos_rng *r);
/* The exit code mproc reports for a process ended by that fault kind. */
int chaos_signal_code(enum chaos_fault kind);
/* Whether pid ended within timeout seconds (a pidfd poll; any process). */
bool chaos_wait_gone(pid_t pid, double timeout);
/* Counts a failure for each pid in pids[0..n) still running after
 * timeout seconds: what a killed parent leaves must die with it. */
void chaos_check_gone(const pid_t *pids, int n, double timeout, const char *what);
/* A pipe both ends close-on-exec; aborts the round on failure. */
void chaos_pipe(int fds[2]);
/* Writes/reads one int over a raw pipe; read waits at most timeout. */
void chaos_put_int(int fd, int v);
int chaos_get_int(int fd, int *v, double timeout);

/*
 * Runs fn(arg) in a plain forked child under a resource limit (RLIMIT_*
 * resource set to value; resource -1: none) and returns what fn returned, passed back over a
 * pipe, or INT_MIN when the child died or ran over timeout.  as_nobody:
 * the child first drops to uid/gid 65534 (RLIMIT_NPROC does not bind root).
 */
int chaos_limited(int resource, unsigned long value, bool as_nobody, int (*fn)(void *), void *arg,
                  double timeout);

/* A directory of the round's own for socket files, which the driver checks
 * is empty afterwards. */
extern char chaos_dir[256];
/* The driver's pid: names of the run's own carry it (see chaos.c). */
extern pid_t chaos_driver;

/* The capabilities: each plays one round. */
typedef struct chaos_cap {
    const char *name;
    void (*round)(chaos_rng *r);
    double budget; /* the watchdog's limit for one round, in seconds */
} chaos_cap;

void chaos_proc_round(chaos_rng *r);
void chaos_pipe_round(chaos_rng *r);
void chaos_queue_round(chaos_rng *r);
void chaos_joinable_round(chaos_rng *r);
void chaos_sync_round(chaos_rng *r);
void chaos_pool_round(chaos_rng *r);
void chaos_manager_round(chaos_rng *r);
void chaos_ranks_round(chaos_rng *r);

/* The queue round, plain or joinable (cap_queue.c). */
void chaos_queue_play(chaos_rng *r, bool joinable);

#endif /* MPROC_CHAOS_H */
