/*
 * cap_proc.c - processes: children killed at random points (from outside,
 * or by their own crash), a parent killed with its children running, and
 * fork made to fail.
 */
#include "chaos.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAXKIDS 4

typedef struct proc_shared {
    volatile int stop[MAXKIDS];
    volatile int self_crash[MAXKIDS]; /* crash after this many steps, or 0 */
    volatile pid_t grandkids[2];
} proc_shared;

static proc_shared *ps;
static int ready_fd = -1;

/* Steps until told to stop, or crashes itself on the step chosen. */
static int spinner(void *arg)
{
    int i = (int)(intptr_t)arg;
    chaos_put_int(ready_fd, i);
    for (int step = 1; !ps->stop[i]; step++) {
        if (ps->self_crash[i] == step)
            raise(SIGSEGV);
        chaos_sleep_us(200);
    }
    return 7;
}

/* Plays n children, some of which meet a fault. */
static void kill_children(chaos_rng *r)
{
    int n = 1 + (int)chaos_below(r, MAXKIDS), fds[2];
    mp_process *p[MAXKIDS] = {0};
    enum chaos_fault fate[MAXKIDS];
    chaos_pipe(fds);
    ready_fd = fds[1];
    for (int i = 0; i < n; i++) {
        unsigned roll = chaos_below(r, 4);
        fate[i] = roll < 3 ? chaos_signal_kind(r) : CHAOS_NFAULTS; /* NFAULTS: none */
        if (fate[i] == CHAOS_F_SIGSEGV && chaos_below(r, 2))
            ps->self_crash[i] = 1 + (int)chaos_below(r, 20);
        CHAOS_CHECK(mp_process_new(spinner, (void *)(intptr_t)i, NULL, &p[i]) == 0, "new");
        CHAOS_CHECK(p[i] && mp_process_start(p[i]) == 0, "start");
    }
    for (int i = 0; i < n; i++) {
        int who;
        if (chaos_below(r, 2)) /* half the time, strike before the child is ready */
            CHAOS_CHECK(chaos_get_int(fds[0], &who, 10) == 0, "a child never said ready");
        if (fate[i] == CHAOS_NFAULTS) {
            ps->stop[i] = 1;
        } else if (ps->self_crash[i]) {
            chaos_fault(CHAOS_F_SIGSEGV);
        } else {
            chaos_sleep_us(chaos_below(r, 5000));
            chaos_signal(mp_process_pid(p[i]), fate[i], r);
        }
    }
    for (int i = 0; i < n; i++) {
        int code = 0;
        int rc = mp_process_join(p[i], 10);
        if (fate[i] != CHAOS_NFAULTS)
            chaos_expose();
        CHAOS_CHECK(rc == 0, "join: %s", mp_err_name(rc));
        CHAOS_CHECK(mp_process_exitcode(p[i], &code) == 0, "exitcode");
        if (fate[i] == CHAOS_NFAULTS) {
            CHAOS_CHECK(code == 7, "a child left alone exited %d", code);
        } else if (code == chaos_signal_code(fate[i]) && mp_process_report(p[i])) {
            chaos_reported();
        } else {
            chaos_fail("child %d: fault %d, exit code %d", i, (int)fate[i], code);
        }
        mp_process_free(p[i]);
    }
    close(fds[0]);
    close(fds[1]);
}

/* The middle process: starts two grandchildren, says their pids, waits. */
static int middle(void *arg)
{
    (void)arg;
    mp_process *g[2];
    for (int i = 0; i < 2; i++) {
        if (mp_process_new(spinner, (void *)(intptr_t)(2 + i), NULL, &g[i]) != 0 ||
            mp_process_start(g[i]) != 0)
            return 1;
        ps->grandkids[i] = mp_process_pid(g[i]);
    }
    chaos_put_int(ready_fd, -1);
    for (;;)
        pause();
}

/* A parent killed with children running: they must die with it. */
static void kill_parent(chaos_rng *r)
{
    int fds[2], v;
    mp_process *m;
    chaos_pipe(fds);
    ready_fd = fds[1];
    CHAOS_CHECK(mp_process_new(middle, NULL, "chaos-middle", &m) == 0, "new");
    CHAOS_CHECK(mp_process_start(m) == 0, "start");
    if (chaos_get_int(fds[0], &v, 10) != 0) {
        chaos_fail("the middle process never said ready");
        v = 0;
    }
    /* Half the time the grandchildren are not all spinning yet. */
    chaos_sleep_us(chaos_below(r, 3000));
    enum chaos_fault k = chaos_signal_kind(r);
    chaos_fault(CHAOS_F_PARENT_KILLED);
    chaos_signal(mp_process_pid(m), k, r);
    chaos_expose();
    int code = 0;
    if (mp_process_join(m, 10) == 0 && mp_process_exitcode(m, &code) == 0 &&
        code == chaos_signal_code(k))
        chaos_reported();
    pid_t g[2] = {ps->grandkids[0], ps->grandkids[1]};
    chaos_check_gone(g, 2, 5, "grandchild");
    mp_process_free(m);
    close(fds[0]);
    close(fds[1]);
}

static int try_start(void *arg)
{
    (void)arg;
    mp_process *p;
    int rc = mp_process_new(spinner, NULL, NULL, &p);
    if (rc != 0)
        return rc;
    rc = mp_process_start(p);
    if (rc == 0) { /* fork worked after all: tidy up, report it */
        mp_process_kill(p);
        mp_process_join(p, 5);
    }
    mp_process_free(p);
    return rc;
}

/* fork made to fail: RLIMIT_NPROC 0, as a uid that it binds. */
static void nproc(void)
{
    chaos_fault(CHAOS_F_NPROC);
    int rc = chaos_limited(RLIMIT_NPROC, 0, true, try_start, NULL, 10);
    if (rc == INT_MIN + 1) {
        chaos_skip("RLIMIT_NPROC: cannot drop to uid 65534 or set the limit");
        return;
    }
    chaos_expose();
    if (rc == MP_EAGAIN)
        chaos_reported();
    else
        chaos_fail("start under RLIMIT_NPROC 0 returned %d %s", rc, mp_err_name(rc));
}

void chaos_proc_round(chaos_rng *r)
{
    ps = chaos_shared(sizeof *ps);
    unsigned v = chaos_below(r, 6);
    if (v < 4)
        kill_children(r);
    else if (v == 4)
        kill_parent(r);
    else
        nproc();
}
