/*
 * cap_pool.c - the pool and its futures: tasks that crash their worker,
 * workers killed from outside at random points, the pool's owner killed,
 * and a pool that cannot fork.  Each future must finish within its bound
 * with the right result or an error naming what happened, and the pool
 * must go on working.
 */
#include "chaos.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAXT 12

/* T_CLOSEFDS closes every descriptor of its worker, T_BIG returns 1 to
 * 4 MiB: hostile to the pool's own plumbing, yet both must succeed. */
enum { T_OK, T_SEGV, T_KILL, T_ERR, T_CLOSEFDS, T_BIG };

static size_t big_len(int idx)
{
    return ((size_t)1 << 20) * (1 + (size_t)idx % 4) + (size_t)idx;
}

typedef struct task {
    int idx, action;
    unsigned spin_us;
} task;

typedef struct pool_shared {
    volatile pid_t workers[8];
    volatile int nworkers;
} pool_shared;

static pool_shared *PS;

static int run_task(const void *arg, size_t len, mp_buf *out)
{
    task t;
    if (len != sizeof t)
        return MP_EINVAL;
    memcpy(&t, arg, sizeof t);
    chaos_sleep_us(t.spin_us);
    if (t.action == T_SEGV)
        raise(SIGSEGV);
    if (t.action == T_KILL)
        raise(SIGKILL);
    if (t.action == T_ERR)
        return MP_ERANGE;
    if (t.action == T_CLOSEFDS)
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
    if (t.action == T_BIG) {
        unsigned char *b = mp_buf_alloc(out, big_len(t.idx));
        if (!b)
            return MP_ENOMEM;
        for (size_t k = 0; k < big_len(t.idx); k++)
            b[k] = (unsigned char)(k * 7 + (size_t)t.idx);
        return 0;
    }
    int v = t.idx * 3;
    return mp_buf_append(out, &v, sizeof v);
}

static mp_pool *make_pool(int n)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    mp_pool *p = NULL;
    o.processes = n;
    o.name = "Chaos";
    int rc = mp_pool_new(&o, &p);
    CHAOS_CHECK(rc == 0, "mp_pool_new: %s", mp_err_name(rc));
    return p;
}

static bool big_ok(mp_future *f, int idx)
{
    size_t len = 0;
    const unsigned char *b = mp_future_result(f, &len);
    if (!b || len != big_len(idx))
        return false;
    for (size_t k = 0; k < len; k++)
        if (b[k] != (unsigned char)(k * 7 + (size_t)idx))
            return false;
    return true;
}

/* One future's outcome against what its task did. */
static void judge(mp_future *f, const task *t, int *struck_normal)
{
    int v = -1, rc = mp_future_wait(f, 30);
    if (rc == 0)
        rc = t->action == T_BIG ? mp_future_status(f) : mp_future_get(f, &v, sizeof v, NULL, 0);
    if (rc == MP_ETIMEDOUT) {
        chaos_fail("task %d (action %d) not finished after 30 s", t->idx, t->action);
        return;
    }
    if (rc == MP_EWORKER && t->action != T_SEGV && t->action != T_KILL) {
        (*struck_normal)++; /* its worker was killed from outside */
        if (t->action == T_ERR) {
            chaos_expose();
            chaos_reported();
        }
        return;
    }
    if (t->action == T_BIG) {
        CHAOS_CHECK(rc == 0 && big_ok(f, t->idx), "task %d: a large result: %s", t->idx,
                    mp_err_name(rc));
        return;
    }
    if (t->action == T_OK || t->action == T_CLOSEFDS) {
        CHAOS_CHECK(rc == 0 && v == t->idx * 3, "task %d: %s, value %d", t->idx, mp_err_name(rc),
                    v);
        return;
    }
    chaos_expose();
    int code = mp_future_exitcode(f);
    bool ok = (t->action == T_ERR && rc == MP_ETASK && mp_future_task_error(f) == MP_ERANGE) ||
              (t->action != T_ERR && rc == MP_EWORKER && code < 0 && mp_future_report(f));
    if (ok)
        chaos_reported();
    else
        chaos_fail("task %d action %d: %s, exit code %d", t->idx, t->action, mp_err_name(rc), code);
}

static void strike_worker(mp_pool *p, chaos_rng *r)
{
    pid_t w[8];
    int n = mp_pool_worker_pids(p, w, 8);
    if (n <= 0)
        return;
    chaos_signal(w[chaos_below(r, (unsigned)(n < 8 ? n : 8))], chaos_signal_kind(r), r);
}

static void tasks_round(chaos_rng *r)
{
    mp_pool *p = make_pool(2);
    task t[MAXT];
    mp_future *f[MAXT];
    int n = 4 + (int)chaos_below(r, MAXT - 3), struck = 0, strikes = 0;
    if (!p)
        return;
    for (int i = 0; i < n; i++) {
        static const int acts[] = {T_OK,   T_OK,   T_OK,  T_OK,       T_OK, T_SEGV,
                                   T_SEGV, T_KILL, T_ERR, T_CLOSEFDS, T_BIG};
        t[i] = (task){i, acts[chaos_below(r, sizeof acts / sizeof acts[0])], chaos_below(r, 5000)};
        if (t[i].action == T_SEGV)
            chaos_fault(CHAOS_F_SIGSEGV);
        if (t[i].action == T_KILL)
            chaos_fault(CHAOS_F_SIGKILL);
        if (t[i].action == T_CLOSEFDS && !chaos_bug_enabled("pool-closefds"))
            t[i].action = T_OK;
        f[i] = mp_pool_apply_async(p, run_task, &t[i], sizeof t[i]);
        CHAOS_CHECK(f[i] != NULL, "apply_async");
    }
    for (int k = (int)chaos_below(r, 3); k > 0; k--, strikes++) {
        chaos_sleep_us(chaos_below(r, 8000));
        strike_worker(p, r);
    }
    for (int i = 0; i < n; i++)
        if (f[i])
            judge(f[i], &t[i], &struck);
    CHAOS_CHECK(struck <= strikes, "%d sound tasks failed, %d workers struck", struck, strikes);
    task last = {99, T_OK, 0};
    int v = 0, rc = mp_pool_apply(p, run_task, &last, sizeof last, &v, sizeof v, NULL, 30);
    CHAOS_CHECK(rc == 0 && v == 297, "the pool after the faults: %s", mp_err_name(rc));
    for (int i = 0; i < n; i++)
        mp_future_free(f[i]);
    CHAOS_CHECK(mp_pool_close(p) == 0, "close");
    rc = mp_pool_join(p, 20);
    CHAOS_CHECK(rc == 0, "join: %s", mp_err_name(rc));
    mp_pool_free(p);
}

static int ready_fd;

/* The pool's owner: busy tasks in flight, then waits to be killed. */
static int owner(void *arg)
{
    (void)arg;
    mp_pool *p = make_pool(2);
    task t = {1, T_OK, 200000};
    if (!p)
        return 1;
    for (int i = 0; i < 4; i++)
        mp_future_free(mp_pool_apply_async(p, run_task, &t, sizeof t));
    pid_t w[8];
    int n = mp_pool_worker_pids(p, w, 8);
    for (int i = 0; i < n && i < 8; i++)
        PS->workers[i] = w[i];
    PS->nworkers = n < 8 ? n : 8;
    chaos_put_int(ready_fd, 1);
    for (;;)
        pause();
}

static void owner_round(chaos_rng *r)
{
    int fds[2], v;
    mp_process *m;
    chaos_pipe(fds);
    ready_fd = fds[1];
    CHAOS_CHECK(mp_process_new(owner, NULL, "chaos-owner", &m) == 0, "new");
    CHAOS_CHECK(mp_process_start(m) == 0, "start");
    CHAOS_CHECK(chaos_get_int(fds[0], &v, 20) == 0, "the pool's owner never said ready");
    chaos_sleep_us(chaos_below(r, 5000));
    enum chaos_fault k = chaos_signal_kind(r);
    chaos_fault(CHAOS_F_PARENT_KILLED);
    chaos_signal(mp_process_pid(m), k, r);
    chaos_expose();
    int code = 0;
    if (mp_process_join(m, 10) == 0 && mp_process_exitcode(m, &code) == 0 &&
        code == chaos_signal_code(k))
        chaos_reported();
    pid_t w[8];
    for (int i = 0; i < PS->nworkers; i++)
        w[i] = PS->workers[i];
    chaos_check_gone(w, PS->nworkers, 5, "pool worker");
    mp_process_free(m);
    close(fds[0]);
    close(fds[1]);
}

static int new_pool(void *arg)
{
    (void)arg;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    mp_pool *p = NULL;
    o.processes = 2;
    int rc = mp_pool_new(&o, &p);
    if (rc == 0) {
        mp_pool_terminate(p);
        mp_pool_join(p, 5);
        mp_pool_free(p);
    }
    return rc;
}

static void nproc(void)
{
    chaos_fault(CHAOS_F_NPROC);
    int rc = chaos_limited(RLIMIT_NPROC, 0, true, new_pool, NULL, 20);
    if (rc == INT_MIN + 1) {
        chaos_skip("RLIMIT_NPROC: cannot drop to uid 65534 or set the limit");
        return;
    }
    chaos_expose();
    if (rc < 0 && rc > INT_MIN + 4)
        chaos_reported();
    else
        chaos_fail("mp_pool_new under RLIMIT_NPROC 0 returned %d %s", rc, mp_err_name(rc));
}

void chaos_pool_round(chaos_rng *r)
{
    PS = chaos_shared(sizeof *PS);
    unsigned v = chaos_below(r, 6);
    if (v < 4)
        tasks_round(r);
    else if (v == 4)
        owner_round(r);
    else
        nproc();
}
