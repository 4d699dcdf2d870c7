/*
 * mpt_gate.h - helpers shared by the pipe and queue tests: a gate that one
 * process waits on until another opens it, and reaping with a verdict.
 * Include after mp_test.h.
 */
#ifndef MPROC_TEST_GATE_H
#define MPROC_TEST_GATE_H

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

#endif /* MPROC_TEST_GATE_H */
