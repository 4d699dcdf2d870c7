/*
 * cap_ranks.c - ranks on the local engine (mp_run / mp_comm): a rank
 * killed in the middle of its collectives, by its own crash or from
 * outside, and the process running mp_run killed with its ranks.  mp_run
 * must return (never hang), name the failure (MP_EWORKER and the rank's
 * exit code), and with keep_going the survivors' calls that need the dead
 * rank must fail with an error instead of waiting.
 */
#include "chaos.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NR   4
#define ITER 3000

typedef struct ranks_shared {
    volatile pid_t pids[NR];
    volatile int rc[NR], started, victim, victim_iter, self_kind, spin_forever;
    volatile pid_t middle;
} ranks_shared;

static ranks_shared *RS;

static int rank_main(mp_comm *w, void *arg)
{
    (void)arg;
    int r = mp_comm_rank(w), n = mp_comm_size(w);
    RS->pids[r] = getpid();
    __atomic_fetch_add(&RS->started, 1, __ATOMIC_RELAXED);
    for (int it = 0; it < ITER || RS->spin_forever; it++) {
        if (r == RS->victim && it == RS->victim_iter && RS->self_kind)
            raise(RS->self_kind);
        long long x = r + 1, sum = 0;
        int rc = it % 7 == 3 ? mp_comm_barrier(w, 10)
                             : mp_comm_allreduce(w, &x, &sum, 1, MP_TYPE_q, MP_OP_SUM, 10);
        if (rc == 0 && it % 7 != 3 && sum != (long long)n * (n + 1) / 2)
            rc = MP_ERANGE;
        if (rc != 0) {
            RS->rc[r] = rc;
            return 0;
        }
    }
    return 0;
}

/* A plain process that strikes pid *target once every rank runs. */
static pid_t killer(chaos_rng *r, volatile pid_t *target, int n, enum chaos_fault k)
{
    unsigned delay = chaos_below(r, 5000);
    chaos_rng mine = {chaos_next(r)};
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    double end = chaos_now() + 20;
    while ((RS->started < n || *target == 0) && chaos_now() < end)
        chaos_sleep_us(500); /* bounded polling of shared words */
    chaos_sleep_us(delay);
    if (*target > 0)
        chaos_signal(*target, k, &mine);
    _exit(0);
}

static void ranks_round(chaos_rng *r)
{
    int n = 2 + (int)chaos_below(r, NR - 1), codes[NR] = {0};
    unsigned how = chaos_below(r, 4); /* 0: no fault, 1: own crash, 2-3: from outside */
    enum chaos_fault k = chaos_signal_kind(r);
    mp_run_opts o = MP_RUN_OPTS_INIT;
    pid_t kp = 0;
    o.keep_going = chaos_below(r, 2);
    o.timeout = 60;
    o.exitcodes = codes;
    RS->victim = how ? (int)chaos_below(r, (unsigned)n) : -1;
    RS->victim_iter = (int)chaos_below(r, 200);
    if (how == 1) {
        k = chaos_below(r, 2) ? CHAOS_F_SIGSEGV : CHAOS_F_SIGKILL;
        RS->self_kind = k == CHAOS_F_SIGSEGV ? SIGSEGV : SIGKILL;
        chaos_fault(k);
    } else if (how >= 2) {
        kp = killer(r, &RS->pids[RS->victim], n, k);
    }
    int rc = mp_run_with_opts(n, rank_main, NULL, &o);
    if (kp > 0)
        waitpid(kp, NULL, 0);
    if (how == 0) {
        CHAOS_CHECK(rc == 0, "mp_run without a fault: %s", mp_err_name(rc));
        for (int i = 0; i < n; i++)
            CHAOS_CHECK(RS->rc[i] == 0, "rank %d: %s", i, mp_err_name(RS->rc[i]));
        return;
    }
    int v = RS->victim, vcode = codes[v];
    if (vcode == 0 && how >= 2)
        return; /* it had finished before the signal came */
    chaos_expose();
    if (rc == MP_EWORKER && vcode == chaos_signal_code(k))
        chaos_reported();
    else
        chaos_fail("mp_run %s, rank %d exit code %d, fault %d", mp_err_name(rc), v, vcode, (int)k);
    for (int i = 0; i < n && o.keep_going; i++)
        CHAOS_CHECK(i == v || RS->rc[i] == 0 || RS->rc[i] == MP_EPEERDEAD, "survivor %d: %s", i,
                    mp_err_name(RS->rc[i]));
}

static int runner(void *arg)
{
    (void)arg;
    RS->spin_forever = 1;
    RS->victim = -1;
    return mp_run(2 + (int)(getpid() % 3), rank_main, NULL) == 0 ? 0 : 1;
}

/* The process running mp_run killed: its ranks die with it. */
static void runner_killed(chaos_rng *r)
{
    mp_process *m;
    CHAOS_CHECK(mp_process_new(runner, NULL, "chaos-runner", &m) == 0, "new");
    CHAOS_CHECK(mp_process_start(m) == 0, "start");
    RS->middle = mp_process_pid(m);
    enum chaos_fault k = chaos_signal_kind(r);
    chaos_fault(CHAOS_F_PARENT_KILLED);
    pid_t kp = killer(r, &RS->middle, 2, k);
    waitpid(kp, NULL, 0);
    chaos_expose();
    int code = 0;
    if (mp_process_join(m, 20) == 0 && mp_process_exitcode(m, &code) == 0 &&
        code == chaos_signal_code(k))
        chaos_reported();
    pid_t p[NR];
    for (int i = 0; i < NR; i++)
        p[i] = RS->pids[i];
    chaos_check_gone(p, NR, 5, "rank");
    mp_process_free(m);
}

void chaos_ranks_round(chaos_rng *r)
{
    RS = chaos_shared(sizeof *RS);
    if (chaos_below(r, 5) == 0)
        runner_killed(r);
    else
        ranks_round(r);
}
