/* Tests of what include/mproc/pool.h and future.h promise that the other
 * pool and future tests do not show: each case quotes the sentence it
 * holds the library to, and says which bug makes it fail.
 *
 * The promises and where they are tested:
 *   pool.h "Fault isolation": crashes of every kind, the worker replaced
 *     (test_pool every_kind_of_crash_fails_one_task), task_timeout
 *     (task_timeout_kills_and_replaces), retries (here, and
 *     retries_run_a_crashed_task_again), a failing initializer
 *     (failing_initializer_is_reported_once), closing every descriptor and
 *     scribbling over shared memory (a_task_closing_..., a_task_scribbling_...)
 *   pool.h "Map items and failures": test_pool map_*, stop_after_*,
 *     random_sigkills_*; retried items here
 *   pool.h "Threads": many_threads_share_one_pool; dying with the parent here
 *   pool.h "Start methods": forkserver_workers, spawn_workers; what a fork
 *     worker sees here
 *   pool.h "Errors", SIGINT, and the declarations one by one: here, unless
 *     named in test_pool.c or test_future.c
 */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <fcntl.h>
#include <pthread.h>

/* ---- helpers ------------------------------------------------------------ */

/* Counters shared with fork workers (made before the pool). */
static _Atomic int *shared_ints(size_t n)
{
    void *m = NULL;
    CHECK_OK(mp__map_anon_shared(n * sizeof(int), &m));
    return m;
}

static mp_pool *pool_opts(int workers, double task_timeout, unsigned retries)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = workers;
    o.task_timeout = task_timeout;
    o.retries = retries;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    CHECK_NOT_NULL(p);
    return p;
}

static int square_task(const void *arg, size_t len, mp_buf *out)
{
    if (len != sizeof(long))
        return MP_EINVAL;
    long v = *(const long *)arg;
    v *= v;
    return mp_buf_append(out, &v, sizeof v);
}

static int square_item(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    long v = *(const int *)in;
    *(long *)out = v * v;
    return 0;
}

/* Says it started (its pid on fds[1]), then waits for latch fds[0]. */
static int latched_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    (void)out;
    const int *fds = arg;
    int me = (int)getpid();
    (void)!write(fds[1], &me, sizeof me);
    return latch_wait(fds[0], 60.0) < 0 ? 1 : 0;
}

/* Waits until a thread waits under the library's SIGINT handler, then
 * sends SIGINT to this process. */
static void *sigint_once_waiting(void *arg)
{
    (void)arg;
    double end = mpt_now() + 30.0;
    struct sigaction sa;
    while (sigaction(SIGINT, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL && mpt_now() < end)
        mp__sleep_ns(100000); /* polls a state, bounded */
    kill(getpid(), SIGINT);
    return NULL;
}

/* ---- threads and processes ------------------------------------------------ */

/* pool.h, "Threads": workers "die with the parent (PR_SET_PDEATHSIG)
 * however it ends".  A child process makes a pool, tells its workers'
 * pids, and is SIGKILLed.  Fails when a worker outlives it. */
TEST(workers_die_with_the_parent_however_it_ends)
{
    int fds[2];
    CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        mp_pool *p = NULL;
        mp_pool_opts o = MP_POOL_OPTS_INIT;
        o.processes = 2;
        if (mp_pool_new(&o, &p) < 0)
            _exit(1);
        pid_t pids[2];
        double end = mpt_now() + 30.0;
        while (mp_pool_worker_pids(p, pids, 2) != 2 && mpt_now() < end)
            mp__sleep_ns(1000000); /* polls a count, bounded */
        int v[2] = {(int)pids[0], (int)pids[1]};
        (void)!write(fds[1], v, sizeof v);
        for (;;)
            pause();
    }
    int pids[2];
    CHECK_OK(read_int(fds[0], &pids[0], 30.0));
    CHECK_EQ(read(fds[0], &pids[1], sizeof pids[1]), (ssize_t)sizeof pids[1]);
    CHECK_EQ(kill(c, SIGKILL), 0);
    int st = 0;
    CHECK_EQ(waitpid(c, &st, 0), c);
    CHECK(mpt_wait_gone(pids[0], 10.0));
    CHECK(mpt_wait_gone(pids[1], 10.0));
    close(fds[0]);
    close(fds[1]);
}

static int fork_seen = 1;

static int read_fork_seen_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    return mp_buf_append(out, &fork_seen, sizeof fork_seen);
}

/* pool.h, "Start methods": with fork "a worker sees the parent's memory
 * as it was when the worker started (workers replaced later see it as it
 * is then)".  Fails when a worker sees a later change, or a replacement
 * an old one. */
TEST(fork_workers_see_memory_as_it_was_when_they_started)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    o.maxtasksperchild = 2;
    mp_pool *p = NULL;
    fork_seen = 1;
    CHECK_OK(mp_pool_new(&o, &p));
    int v = 0;
    CHECK_OK(mp_pool_apply(p, read_fork_seen_task, NULL, 0, &v, sizeof v, NULL, 30.0));
    CHECK_EQ(v, 1);
    fork_seen = 2; /* the running worker keeps its copy */
    CHECK_OK(mp_pool_apply(p, read_fork_seen_task, NULL, 0, &v, sizeof v, NULL, 30.0));
    CHECK_EQ(v, 1);
    /* That was its second task: a fresh worker, forked now, sees 2. */
    CHECK_OK(mp_pool_apply(p, read_fork_seen_task, NULL, 0, &v, sizeof v, NULL, 30.0));
    CHECK_EQ(v, 2);
    mp_pool_free(p);
}

static int latched_init(void *arg)
{
    return latch_wait(*(const int *)arg, 30.0) < 0 ? 1 : 0;
}

/* pool.h, mp_pool_new: "the call does not wait for them, nor for their
 * initializer".  Fails when mp_pool_new waits for an initializer that
 * waits 30 s for a latch opened only after it returned. */
TEST(pool_new_waits_for_no_initializer)
{
    latch l = latch_new();
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.initializer = latched_init;
    o.initarg = &l.r;
    mp_pool *p = NULL;
    double t0 = mpt_now();
    CHECK_OK(mp_pool_new(&o, &p));
    CHECK(mpt_now() - t0 < 10.0);
    latch_open(l);
    long x = 3, r = 0;
    CHECK_OK(mp_pool_apply(p, square_task, &x, sizeof x, &r, sizeof r, NULL, 30.0));
    CHECK_EQ(r, 9);
    mp_pool_free(p);
    latch_close(l);
}

static int name_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    const char *n = mp_process_current_name();
    return mp_buf_append(out, n, strlen(n) + 1);
}

/* pool.h, opts.name: "Workers are named "<name>Worker-<n>" (default
 * "PoolWorker-<n>")". */
TEST(workers_are_named_after_the_pool)
{
    mp_pool *p = pool_opts(1, 0, 0);
    char name[64] = "";
    CHECK_OK(mp_pool_apply(p, name_task, NULL, 0, name, sizeof name, NULL, 30.0));
    CHECK_STREQ(name, "PoolWorker-1");
    mp_pool_free(p);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    o.name = "Crunch";
    CHECK_OK(mp_pool_new(&o, &p));
    CHECK_OK(mp_pool_apply(p, name_task, NULL, 0, name, sizeof name, NULL, 30.0));
    CHECK_STREQ(name, "CrunchWorker-1");
    mp_pool_free(p);
}

/* ---- retries ------------------------------------------------------------------ */

/* Counts its runs in *arg; spins past the time limit on the first. */
static int slow_first_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    _Atomic int *runs = *(_Atomic int *const *)arg;
    if (atomic_fetch_add(runs, 1) == 0) {
        volatile int spin = 1;
        while (spin) {
        }
    }
    int ok = 42;
    return mp_buf_append(out, &ok, sizeof ok);
}

static int failing_counted_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    (void)out;
    atomic_fetch_add(*(_Atomic int *const *)arg, 1);
    return 5;
}

static _Atomic int *item_runs;

/* Map item 3 crashes on its first run; every item counts its runs. */
static int crash_once_item(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    int v = *(const int *)in;
    if (atomic_fetch_add(&item_runs[v], 1) == 0 && v == 3)
        raise(SIGKILL);
    *(int *)out = v + 1;
    return 0;
}

/* pool.h, opts.retries: "How many times a task whose worker died or timed
 * out is run again on a fresh worker before it fails.  A task that
 * returns an error is not retried: that is its answer."  Fails when a
 * timed-out task or a crashed map item is not run again, or when an
 * error return is. */
TEST(retries_run_a_timed_out_task_again_but_never_an_error_return)
{
    mp_log_set_level(MP_LOG_OFF);
    _Atomic int *runs = shared_ints(2);
    item_runs = shared_ints(10);
    mp_pool *p = pool_opts(2, 0.3, 1);
    int v = 0;
    CHECK_OK(mp_pool_apply(p, slow_first_task, &runs, sizeof runs, &v, sizeof v, NULL, 30.0));
    CHECK_EQ(v, 42);
    CHECK_EQ(atomic_load(&runs[0]), 2);
    mp_pool_stats st;
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_EQ_U(st.tasks_timed_out, 1);
    CHECK_EQ_U(st.tasks_retried, 1);
    /* An error return: one run, no retry. */
    _Atomic int *err_runs = &runs[1];
    mp_future *f = mp_pool_apply_async(p, failing_counted_task, &err_runs, sizeof err_runs);
    CHECK_ERR(mp_future_get(f, NULL, 0, NULL, 30.0), MP_ETASK);
    CHECK_EQ(mp_future_task_error(f), 5);
    mp_future_free(f);
    CHECK_EQ(atomic_load(&runs[1]), 1);
    /* A map item whose worker died: run again, and the map succeeds. */
    int in[10], out[10];
    for (int i = 0; i < 10; i++)
        in[i] = i;
    CHECK_OK(mp_pool_map(p, crash_once_item, in, 10, sizeof in[0], out, sizeof out[0], 10));
    for (int i = 0; i < 10; i++) {
        CHECK_EQ(out[i], i + 1);
        CHECK_EQ(atomic_load(&item_runs[i]), i == 3 ? 2 : 1);
    }
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_EQ_U(st.tasks_retried, 2);
    mp_pool_free(p);
    mp__unmap((void *)runs, 2 * sizeof(int));
    mp__unmap((void *)item_runs, 10 * sizeof(int));
}

/* ---- limits and refusals -------------------------------------------------------- */

/* pool.h, mp_pool_new and opts: processes "At most 1024", initarg_size "at
 * most 16 MiB", a map's ctx "at most 16 MiB"; refusals are MP_EINVAL with
 * no object.  Fails when an option beyond a limit is accepted. */
TEST(pool_new_and_map_limits)
{
    static char big[(16 << 20) + 1];
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    mp_pool *p = mpt_not_null();
    o.processes = 1025;
    CHECK_ERR(mp_pool_new(&o, &p), MP_EINVAL);
    CHECK_NULL(p);
    o = (mp_pool_opts)MP_POOL_OPTS_INIT;
    o.initarg = big;
    o.initarg_size = sizeof big;
    p = mpt_not_null();
    CHECK_ERR(mp_pool_new(&o, &p), MP_EINVAL);
    CHECK_NULL(p);
    /* At the limits: accepted. */
    o.initarg_size = sizeof big - 1;
    o.processes = 1;
    CHECK_OK(mp_pool_new(&o, &p));
    int in[2] = {1, 2};
    long out[2];
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = square_item;
    s.in = in;
    s.n = 2;
    s.in_size = sizeof in[0];
    s.out = out;
    s.out_size = sizeof out[0];
    s.ctx = big;
    s.ctx_size = sizeof big;
    CHECK_ERR(mp_pool_map_ex(p, &s), MP_EINVAL);
    s.ctx_size = sizeof big - 1;
    CHECK_OK(mp_pool_map_ex(p, &s));
    CHECK_EQ(out[1], 4);
    mp_pool_free(p);
}

/* pool.h, "Errors": calls that start work "report every error through its
 * status"; mp_pool_map: "MP_ECLOSED"; imap "returns ... MP_ECLOSED,
 * MP_EINIT ... at once".  Fails when a closed pool runs a map, or an
 * error reaches a caller other than through the code or the future. */
TEST(map_on_a_closed_pool_is_refused)
{
    mp_pool *p = pool_opts(1, 0, 0);
    CHECK_OK(mp_pool_close(p));
    int in[4] = {1, 2, 3, 4};
    long out[4] = {0};
    CHECK_ERR(mp_pool_map(p, square_item, in, 4, sizeof in[0], out, sizeof out[0], 0), MP_ECLOSED);
    CHECK_ERR(mp_pool_map(p, square_item, in, 0, sizeof in[0], out, sizeof out[0], 0), MP_ECLOSED);
    CHECK_ERR(mp_pool_starmap(p, square_item, in, 4, sizeof in[0], out, sizeof out[0], 0),
              MP_ECLOSED);
    mp_future *f = mp_pool_map_async(p, square_item, in, 4, sizeof in[0], out, sizeof out[0], 0);
    CHECK_NOT_NULL(f);
    CHECK(mp_future_done(f));
    CHECK_ERR(mp_future_status(f), MP_ECLOSED);
    mp_future_free(f);
    f = mp_pool_starmap_async(p, square_item, in, 4, sizeof in[0], out, sizeof out[0], 0);
    CHECK_ERR(mp_future_status(f), MP_ECLOSED);
    mp_future_free(f);
    CHECK_EQ(out[0], 0);
    /* Bad arguments come through the future too. */
    f = mp_pool_map_async(p, NULL, in, 4, sizeof in[0], out, sizeof out[0], 0);
    CHECK_ERR(mp_future_status(f), MP_EINVAL);
    mp_future_free(f);
    f = mp_pool_apply_async(p, square_task, NULL, 8);
    CHECK_ERR(mp_future_status(f), MP_EINVAL);
    mp_future_free(f);
    CHECK_OK(mp_pool_join(p, 30.0));
    CHECK_ERR(mp_pool_close(NULL), MP_EINVAL);
    CHECK_ERR(mp_pool_terminate(NULL), MP_EINVAL);
    CHECK_ERR(mp_pool_join(NULL, 0), MP_EINVAL);
    mp_pool_free(p);
    mp_pool_free(NULL);
    mp_imap_free(NULL);
}

/* ---- what a task receives --------------------------------------------------------- */

static int arg_null_task(const void *arg, size_t len, mp_buf *out)
{
    (void)out;
    return len == 0 && arg == NULL ? 0 : 1;
}

static int ctx_null_item(const void *in, void *out, const void *ctx)
{
    (void)in;
    *(int *)out = ctx == NULL ? 1 : 2;
    return 0;
}

static int where_item(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    *(uintptr_t *)out = (uintptr_t)in;
    return 0;
}

/* pool.h: an apply task gets "arg is NULL when len is 0"; a map function's
 * "ctx points to the map's ctx bytes (NULL when there are none)"; and "a
 * map whose input or output lies there [in mp_pool_shared_alloc memory]
 * is not copied at all": the function reads the inputs where the caller
 * put them.  Fails when a task gets a pointer to nothing, or a map copies
 * shared inputs. */
TEST(what_a_task_and_a_map_function_receive)
{
    mp_pool *p = pool_opts(2, 0, 0);
    CHECK_OK(mp_pool_apply(p, arg_null_task, NULL, 0, NULL, 0, NULL, 30.0));
    int flags[16];
    CHECK_OK(mp_pool_map(p, ctx_null_item, NULL, 16, 0, flags, sizeof flags[0], 3));
    for (int i = 0; i < 16; i++)
        CHECK_EQ(flags[i], 1);
    enum { N = 1000 };
    int *in = mp_pool_shared_alloc(p, N * sizeof *in);
    uintptr_t *where = mp_pool_shared_alloc(p, N * sizeof *where);
    CHECK_NOT_NULL(in);
    CHECK_NOT_NULL(where);
    CHECK_OK(mp_pool_map(p, where_item, in, N, sizeof *in, where, sizeof *where, 0));
    for (int i = 0; i < N; i++)
        CHECK_EQ_U(where[i], (uintptr_t)&in[i]);
    mp_pool_shared_free(p, in);
    mp_pool_shared_free(p, where);
    mp_pool_free(p);
}

/* ---- apply -------------------------------------------------------------------------- */

static int counted_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    (void)out;
    atomic_fetch_add(*(_Atomic int *const *)arg, 1);
    return 0;
}

/* pool.h, mp_pool_apply: "MP_ETIMEDOUT when the wait ran out (the task is
 * then cancelled if it has not started)".  The only worker is held, so the
 * task cannot have started.  Fails when it runs later all the same. */
TEST(apply_timing_out_cancels_an_unstarted_task)
{
    latch l = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    _Atomic int *runs = shared_ints(1);
    mp_pool *p = pool_opts(1, 0, 0);
    int fds[2] = {l.r, started[1]};
    mp_future *held = mp_pool_apply_async(p, latched_task, fds, sizeof fds);
    int pid;
    CHECK_OK(read_int(started[0], &pid, 30.0));
    double t0 = mpt_now();
    CHECK_ERR(mp_pool_apply(p, counted_task, &runs, sizeof runs, NULL, 0, NULL, 0.1), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.1);
    latch_open(l);
    CHECK_OK(mp_future_wait(held, 30.0));
    CHECK_OK(mp_pool_close(p));
    CHECK_OK(mp_pool_join(p, 30.0));
    CHECK_EQ(atomic_load(runs), 0);
    mp_future_free(held);
    mp_pool_free(p);
    latch_close(l);
    close(started[0]);
    close(started[1]);
    mp__unmap((void *)runs, sizeof(int));
}

static _Atomic int ok_calls, err_calls;

static void count_ok(mp_future *f, void *ctx)
{
    (void)f;
    (void)ctx;
    atomic_fetch_add(&ok_calls, 1);
}

static void count_err(mp_future *f, void *ctx)
{
    (void)f;
    (void)ctx;
    atomic_fetch_add(&err_calls, 1);
}

static int fail_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    return 3;
}

/* pool.h, mp_pool_apply_async_cb: "callback(f, ctx) runs when the task
 * succeeds, error_callback(f, ctx) when it fails or is cancelled ...
 * Either may be NULL".  Fails when a NULL callback is called, or the other
 * one is not. */
TEST(apply_async_cb_either_callback_may_be_null)
{
    mp_pool *p = pool_opts(1, 0, 0);
    long x = 4;
    mp_future *a = mp_pool_apply_async_cb(p, square_task, &x, sizeof x, NULL, count_err, NULL);
    mp_future *b = mp_pool_apply_async_cb(p, fail_task, NULL, 0, count_ok, NULL, NULL);
    mp_future *c = mp_pool_apply_async_cb(p, fail_task, NULL, 0, NULL, count_err, NULL);
    mp_future *d = mp_pool_apply_async_cb(p, square_task, &x, sizeof x, count_ok, NULL, NULL);
    mp_future *fs[4] = {a, b, c, d};
    CHECK_EQ(mp_wait(fs, 4, MP_ALL_COMPLETED, 30.0), 4);
    /* Callbacks have run before a future is seen finished (future.h). */
    CHECK_EQ(atomic_load(&ok_calls), 1);
    CHECK_EQ(atomic_load(&err_calls), 1);
    for (int i = 0; i < 4; i++)
        mp_future_free(fs[i]);
    mp_pool_free(p);
}

/* ---- imap ---------------------------------------------------------------------------- */

static int fail_multiples_of_5(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    int v = *(const int *)in;
    *(int *)out = v;
    return v % 5 == 0 ? 9 : 0;
}

static int init_fails(void *arg)
{
    (void)arg;
    return 7;
}

/* pool.h, mp_imap_next: "the item's error (MP_ETASK, ...) with *index set,
 * when that item failed - the iteration goes on after it; MP_EOF once all
 * n items were returned"; mp_pool_imap: MP_EINIT "at once", and "A map
 * cancelled before it ran (terminate ...) says so from mp_imap_next()".
 * Fails when a failed item ends the iteration or hides its index, or an
 * error of the pool waits for the first next(). */
TEST(imap_item_and_submission_errors)
{
    mp_log_set_level(MP_LOG_OFF);
    mp_pool *p = pool_opts(2, 0, 0);
    enum { N = 23 };
    int in[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    for (int ordered = 0; ordered < 2; ordered++) {
        MPT_CONTEXT("%s", ordered ? "imap" : "imap_unordered");
        mp_imap *it = NULL;
        CHECK_OK(
            ordered ? mp_pool_imap(p, fail_multiples_of_5, in, N, sizeof in[0], sizeof(int), 2, &it)
                    : mp_pool_imap_unordered(p, fail_multiples_of_5, in, N, sizeof in[0],
                                             sizeof(int), 2, &it));
        int seen = 0, failed = 0;
        for (;;) {
            int v = -1;
            size_t idx = 999;
            int rc = mp_imap_next(it, &v, &idx, 30.0);
            if (rc == MP_EOF)
                break;
            CHECK(idx < N);
            if (ordered)
                CHECK_EQ(idx, seen);
            if (idx % 5 == 0) {
                CHECK_ERR(rc, MP_ETASK);
                failed++;
            } else {
                CHECK_OK(rc);
                CHECK_EQ(v, (int)idx);
            }
            seen++;
        }
        CHECK_EQ(seen, N);
        CHECK_EQ(failed, 5);
        mp_imap_free(it);
    }
    MPT_CONTEXT_CLEAR();
    /* A map queued behind a held worker, then the pool terminated. */
    latch l = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    int fds[2] = {l.r, started[1]};
    mp_pool *q = pool_opts(1, 0, 0);
    mp_future *held = mp_pool_apply_async(q, latched_task, fds, sizeof fds);
    int pid;
    CHECK_OK(read_int(started[0], &pid, 30.0));
    mp_imap *it = NULL;
    CHECK_OK(mp_pool_imap(q, fail_multiples_of_5, in, N, sizeof in[0], sizeof(int), 1, &it));
    CHECK_OK(mp_pool_terminate(q));
    size_t idx = 0;
    CHECK_ERR(mp_imap_next(it, NULL, &idx, 30.0), MP_ECANCELED);
    mp_imap_free(it);
    mp_future_free(held);
    mp_pool_free(q);
    /* A broken pool refuses at once. */
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    o.initializer = init_fails;
    CHECK_OK(mp_pool_new(&o, &q));
    long x = 2;
    CHECK_ERR(mp_pool_apply(q, square_task, &x, sizeof x, NULL, 0, NULL, 30.0), MP_EINIT);
    it = mpt_not_null();
    CHECK_ERR(mp_pool_imap(q, fail_multiples_of_5, in, N, sizeof in[0], sizeof(int), 1, &it),
              MP_EINIT);
    CHECK_NULL(it);
    mp_pool_free(q);
    mp_pool_free(p);
    latch_close(l);
    close(started[0]);
    close(started[1]);
}

static int latched_item(const void *in, void *out, const void *ctx)
{
    const int *fds = ctx;
    int v = *(const int *)in;
    if (v == 0)
        (void)!write(fds[1], &v, sizeof v);
    *(int *)out = latch_wait(fds[0], 60.0);
    return 0;
}

/* pool.h: "a SIGINT while a thread waits in map, imap_next or a future's
 * get terminates the pool and returns MP_ECANCELED"; mp_imap_next:
 * "MP_ECANCELED when SIGINT interrupted the wait (the pool is then
 * terminated)".  Fails when the wait goes on, the program dies, or the
 * workers are left running. */
TEST(sigint_during_imap_next_cancels_and_terminates)
{
    latch l = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    int fds[2] = {l.r, started[1]};
    mp_pool *p = pool_opts(2, 0, 0);
    int in[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = latched_item;
    s.in = in;
    s.n = 8;
    s.in_size = sizeof in[0];
    s.out_size = sizeof(int);
    s.ctx = fds;
    s.ctx_size = sizeof fds;
    s.chunksize = 1;
    mp_imap *it = NULL;
    CHECK_OK(mp_pool_imap_ex(p, &s, true, &it));
    int v;
    CHECK_OK(read_int(started[0], &v, 30.0));
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, sigint_once_waiting, NULL), 0);
    CHECK_ERR(mp_imap_next(it, NULL, NULL, 30.0), MP_ECANCELED);
    pthread_join(t, NULL);
    CHECK_EQ(mp_pool_worker_pids(p, NULL, 0), 0);
    struct sigaction sa;
    CHECK_EQ(sigaction(SIGINT, NULL, &sa), 0);
    CHECK(sa.sa_handler == SIG_DFL);
    mp_imap_free(it);
    mp_pool_free(p);
    latch_close(l);
    close(started[0]);
    close(started[1]);
}

/* pool.h, mp_pool_join: "MP_ECANCELED on SIGINT".  Fails when a SIGINT
 * during a join kills the program or leaves the join waiting. */
TEST(sigint_during_join_cancels_and_terminates)
{
    latch l = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    int fds[2] = {l.r, started[1]};
    mp_pool *p = pool_opts(1, 0, 0);
    mp_future *f = mp_pool_apply_async(p, latched_task, fds, sizeof fds);
    int pid;
    CHECK_OK(read_int(started[0], &pid, 30.0));
    CHECK_OK(mp_pool_close(p));
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, sigint_once_waiting, NULL), 0);
    CHECK_ERR(mp_pool_join(p, 30.0), MP_ECANCELED);
    pthread_join(t, NULL);
    CHECK_ERR(mp_future_status(f), MP_ECANCELED);
    CHECK(mpt_wait_gone(pid, 10.0));
    mp_future_free(f);
    mp_pool_free(p);
    latch_close(l);
    close(started[0]);
    close(started[1]);
}

/* ---- lifetimes -------------------------------------------------------------------------- */

/* pool.h, mp_pool_free: "Futures and iterators of the pool stay valid
 * (unfinished ones are cancelled)".  Fails when an iterator read after
 * its pool's free crashes or loses what it held. */
TEST(iterators_outlive_their_pool)
{
    mp_pool *p = pool_opts(2, 0, 0);
    int in[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    mp_imap *it = NULL;
    CHECK_OK(mp_pool_imap(p, square_item, in, 10, sizeof in[0], sizeof(long), 2, &it));
    long v = 0;
    CHECK_OK(mp_imap_next(it, &v, NULL, 30.0));
    CHECK_EQ(v, 0);
    /* Let the map end, so that what follows is read, not cancelled. */
    CHECK_OK(mp_pool_close(p));
    CHECK_OK(mp_pool_join(p, 30.0));
    mp_pool_free(p);
    for (long i = 1; i < 10; i++) {
        CHECK_OK(mp_imap_next(it, &v, NULL, 5.0));
        CHECK_EQ(v, i * i);
    }
    CHECK_ERR(mp_imap_next(it, &v, NULL, 0), MP_EOF);
    mp_imap_free(it);
}

static _Atomic int free_in_cb_done;

static void free_own_pool_cb(mp_future *f, void *ctx)
{
    (void)f;
    /* Refused: it only logs.  The pool is still usable afterwards. */
    mp_pool_free(ctx);
    atomic_store(&free_in_cb_done, 1);
}

/* pool.h, mp_pool_free: it may not be "called from the pool's own callback
 * thread (it then does nothing but log)".  Fails when the pool is freed
 * (or the thread deadlocks) from its own callback. */
TEST(free_from_the_pools_own_callback_does_nothing)
{
    mp_log_set_level(MP_LOG_OFF);
    mp_pool *p = pool_opts(1, 0, 0);
    long x = 3, r = 0;
    mp_future *f = mp_pool_apply_async_cb(p, square_task, &x, sizeof x, free_own_pool_cb, NULL, p);
    CHECK_OK(mp_future_wait(f, 30.0));
    CHECK_EQ(atomic_load(&free_in_cb_done), 1);
    CHECK_OK(mp_pool_apply(p, square_task, &x, sizeof x, &r, sizeof r, NULL, 30.0));
    CHECK_EQ(r, 9);
    mp_future_free(f);
    mp_pool_free(p);
}

/* future.h, "Ownership": "Freeing does not cancel: the work still runs and
 * its result is discarded".  Fails when freeing the caller's reference
 * cancels the task. */
TEST(freeing_a_future_does_not_cancel_its_work)
{
    latch l = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    int fds[2] = {l.r, started[1]};
    _Atomic int *runs = shared_ints(1);
    mp_pool *p = pool_opts(1, 0, 0);
    mp_future *held = mp_pool_apply_async(p, latched_task, fds, sizeof fds);
    mp_future *f = mp_pool_apply_async(p, counted_task, &runs, sizeof runs);
    int pid;
    CHECK_OK(read_int(started[0], &pid, 30.0));
    mp_future_free(f); /* queued, not started */
    latch_open(l);
    CHECK_OK(mp_pool_close(p));
    CHECK_OK(mp_pool_join(p, 30.0));
    CHECK_EQ(atomic_load(runs), 1);
    mp_future_free(held);
    mp_pool_free(p);
    latch_close(l);
    close(started[0]);
    close(started[1]);
    mp__unmap((void *)runs, sizeof(int));
}

static char cb_thread_name[32];

static void name_cb(mp_future *f, void *ctx)
{
    (void)f;
    (void)ctx;
    pthread_getname_np(pthread_self(), cb_thread_name, sizeof cb_thread_name);
}

/* future.h, "Callbacks": "For futures of a pool they run in that pool's
 * callback thread ... never in a worker process and never in the pool's
 * supervisor".  Fails when a callback runs in the supervisor (or
 * anywhere but the callback thread). */
TEST(callbacks_run_in_the_callback_thread)
{
    mp_pool *p = pool_opts(1, 0, 0);
    long x = 5;
    mp_future *f = mp_pool_apply_async_cb(p, square_task, &x, sizeof x, name_cb, NULL, NULL);
    CHECK_OK(mp_future_wait(f, 30.0));
    CHECK_STREQ(cb_thread_name, "mproc-pool-cb");
    mp_future_free(f);
    mp_pool_free(p);
}

MPT_MAIN()
