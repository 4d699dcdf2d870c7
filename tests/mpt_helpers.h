/*
 * mpt_helpers.h - helpers shared by the test programs: a gate that one
 * process waits on until another opens it, a latch that stays open, starting and finishing a child
 * with checks, and reaping with a verdict.  Include after mp_test.h.
 */
#ifndef MPROC_TEST_HELPERS_H
#define MPROC_TEST_HELPERS_H

#include <fcntl.h>

/* A pipe one process waits on until the other writes a byte: each open
 * lets one wait through.  Every wait has a limit. */
typedef struct gate {
    int r, w;
} gate;

static inline void gate_init(gate *g)
{
    int fds[2];
    CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
    g->r = fds[0];
    g->w = fds[1];
}

/* Returns 0 once the gate was opened, -1 after secs without. */
static inline int gate_wait(const gate *g, double secs)
{
    struct pollfd p = {.fd = g->r, .events = POLLIN};
    int n;
    do {
        n = poll(&p, 1, (int)(secs * 1000));
    } while (n < 0 && errno == EINTR);
    char c;
    return n > 0 && read(g->r, &c, 1) == 1 ? 0 : -1;
}

static inline void gate_open(const gate *g)
{
    char c = 1;
    CHECK_EQ(write(g->w, &c, 1), 1);
}

static inline void gate_close(gate *g)
{
    close(g->r);
    close(g->w);
}

/* A latch: waiters poll and never read, so that once opened it stays open
 * for every waiter - tasks in several workers, which get its read end as
 * a plain descriptor.  Made before a pool, inherited by fork workers. */
typedef struct latch {
    int r, w;
} latch;

static inline latch latch_new(void)
{
    int fds[2];
    CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
    return (latch){fds[0], fds[1]};
}

static inline void latch_open(latch l)
{
    char c = 1;
    CHECK_EQ(write(l.w, &c, 1), 1);
}

/* Returns 0 once fd (a latch's read end, or any pipe) is readable, -1
 * after secs without. */
static inline int latch_wait(int fd, double secs)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    do {
        n = poll(&p, 1, (int)(secs * 1000));
    } while (n < 0 && errno == EINTR);
    return n > 0 ? 0 : -1;
}

static inline void latch_close(latch l)
{
    close(l.r);
    close(l.w);
}

/* Reads one int another process wrote into the pipe fd, waiting at most
 * secs for it. */
static inline int read_int(int fd, int *v, double secs)
{
    if (latch_wait(fd, secs) < 0)
        return -1;
    return read(fd, v, sizeof *v) == (ssize_t)sizeof *v ? 0 : -1;
}

/* A pointer no constructor returns: *out is preset to it to see that a
 * failing constructor sets *out to NULL. */
static inline void *mpt_not_null(void)
{
    static char somewhere;
    return &somewhere;
}

/* A process object for fn(arg) with options o (NULL: fork), checked. */
static inline mp_process *mpt_new_opts(mp_target_fn fn, void *arg, const mp_process_opts *o)
{
    mp_process *p = NULL;
    CHECK_OK(mp_process_new_opts(fn, arg, o, &p));
    CHECK(p != NULL);
    return p;
}

/* A process object for fn(arg), started with fork, named name (may be
 * NULL), checked. */
static inline mp_process *mpt_new(mp_target_fn fn, void *arg, const char *name)
{
    mp_process *p = NULL;
    CHECK_OK(mp_process_new(fn, arg, name, &p));
    CHECK(p != NULL);
    return p;
}

/* The exit code (status or -SIGNUM) of p, which must have ended. */
static inline int mpt_exitcode(mp_process *p)
{
    int code = 12345;
    CHECK_OK(mp_process_exitcode(p, &code));
    return code;
}

/* The error p's child reported (0: none); p must have ended. */
static inline int mpt_error(mp_process *p)
{
    int err = 12345;
    CHECK_OK(mp_process_error(p, &err));
    return err;
}

/* Starts fn(arg) in a child (fork), checked. */
static inline mp_process *mpt_start(mp_target_fn fn, void *arg)
{
    mp_process *p = mpt_new(fn, arg, NULL);
    CHECK_OK(mp_process_start(p));
    return p;
}

/* Joins p (at most 60 s), frees it, and returns its exit code. */
static inline int mpt_finish(mp_process *p)
{
    CHECK_OK(mp_process_join(p, 60.0));
    int code = mpt_exitcode(p);
    mp_process_free(p);
    return code;
}

/* Reaps child pid, which must have exited with status 0. */
static inline void reap_ok(pid_t pid)
{
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "child %d: status %#x\n", (int)pid, st);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
}

#endif /* MPROC_TEST_HELPERS_H */
