/* Tests of futures: results, waits with time limits, states, cancel, done
 * callbacks, mp_wait in its three modes, as_completed, Ctrl-C during a
 * wait, and futures that are not a pool's. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <fcntl.h>
#include <pthread.h>

/* ---- helpers ------------------------------------------------------------ */

/* Per-task gates: task i waits until byte i of the gate file is set.  The
 * test sets it and wakes the waiters through a pipe every task polls. */
typedef struct gates {
    int r, w;               /* a pipe that wakes every waiting task */
    _Atomic uint32_t *open; /* shared: bit i opens task i */
} gates;

static gates gates_new(void)
{
    int fds[2];
    CHECK_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    void *m = NULL;
    CHECK_OK(mp__map_anon_shared(4096, &m));
    return (gates){fds[0], fds[1], m};
}

static void gates_open(gates *g, int i)
{
    atomic_fetch_or(&g->open[i / 32], 1u << (i % 32));
    /* The futex word is the bitmap itself: waiters sleep on it. */
    (void)mp__futex_wake(&g->open[i / 32], INT32_MAX);
}

static void gates_free(gates *g)
{
    close(g->r);
    close(g->w);
    mp__unmap((void *)g->open, 4096);
}

typedef struct gated_arg {
    _Atomic uint32_t *open;
    int index;
    int result; /* < 0: return it as an error */
} gated_arg;

/* Waits (at most 30 s) until its gate opens, then answers. */
static int gated_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    const gated_arg *a = arg;
    _Atomic uint32_t *word = &a->open[a->index / 32];
    uint32_t bit = 1u << (a->index % 32);
    int64_t deadline = mp__deadline(30.0);
    for (;;) {
        uint32_t v = atomic_load(word);
        if (v & bit)
            break;
        if (mp__futex_wait(word, v, deadline) == MP_ETIMEDOUT)
            return 99;
    }
    if (a->result < 0)
        return a->result;
    return mp_buf_append(out, &a->result, sizeof a->result);
}

static mp_future *gated(mp_pool *p, gates *g, int index, int result)
{
    gated_arg a = {g->open, index, result};
    mp_future *f = mp_pool_apply_async(p, gated_task, &a, sizeof a);
    CHECK(f != NULL);
    return f;
}

static mp_pool *pool_with(int workers)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = workers;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    CHECK(p != NULL);
    return p;
}

static int read_one(int fd, double secs)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    if (poll(&pf, 1, (int)(secs * 1000)) <= 0)
        return -1;
    int v;
    return read(fd, &v, sizeof v) == (ssize_t)sizeof v ? 0 : -1;
}

/* Waits until f is taken by a worker. */
static void wait_running(mp_future *f)
{
    double end = mpt_now() + 30.0;
    while (!mp_future_running(f) && !mp_future_done(f) && mpt_now() < end)
        mp__sleep_ns(1000000); /* polls a state, bounded */
    CHECK(mp_future_running(f));
}

/* ---- one future ------------------------------------------------------------ */

TEST(get_waits_with_a_limit_and_returns_the_result)
{
    gates g = gates_new();
    mp_pool *p = pool_with(1);
    mp_future *f = gated(p, &g, 0, 4242);
    CHECK(!mp_future_done(f));
    CHECK(!mp_future_ready(f));
    CHECK_ERR(mp_future_status(f), MP_ESTATE);
    CHECK(!mp_future_successful(f)); /* not yet: false, as for a failure */
    CHECK(mp_future_result(f, NULL) == NULL);
    double t0 = mpt_now();
    int v = 0;
    CHECK_ERR(mp_future_get(f, &v, sizeof v, NULL, 0.15), MP_ETIMEDOUT);
    double dt = mpt_now() - t0;
    CHECK(dt >= 0.15);
    CHECK(dt < 10.0);
    CHECK(!mp_future_done(f)); /* the wait ran out, not the task */
    CHECK_ERR(mp_future_wait(f, 0), MP_ETIMEDOUT);
    gates_open(&g, 0);
    size_t len = 0;
    CHECK_OK(mp_future_get(f, &v, sizeof v, &len, 30.0));
    CHECK_EQ(v, 4242);
    CHECK_EQ(len, sizeof v);
    CHECK(mp_future_done(f));
    CHECK(mp_future_ready(f));
    CHECK(mp_future_successful(f));
    CHECK_OK(mp_future_status(f));
    CHECK(!mp_future_running(f));
    CHECK(!mp_future_cancelled(f));
    CHECK(mp_future_report(f) == NULL);
    CHECK_EQ(mp_future_exitcode(f), 0);
    CHECK_EQ(mp_future_failed_index(f), -1);
    const int *r = mp_future_result(f, &len);
    CHECK(r != NULL);
    CHECK_EQ(*r, 4242);
    /* Too small a buffer: the size, nothing copied. */
    char c = 0;
    CHECK_ERR(mp_future_get(f, &c, 1, &len, 0), MP_EMSGSIZE);
    CHECK_EQ(len, sizeof v);
    /* future.h: "With out NULL and cap 0 the call asks for the length
     * alone: on success it returns 0 and stores the length in *len"; fails
     * when asking for the length is answered MP_EMSGSIZE. */
    len = 0;
    CHECK_OK(mp_future_get(f, NULL, 0, &len, 0));
    CHECK_EQ(len, sizeof v);
    CHECK_ERR(mp_future_get(f, &c, 0, &len, 0), MP_EMSGSIZE);
    CHECK_ERR(mp_future_get(NULL, NULL, 0, NULL, 0), MP_EINVAL);
    CHECK_ERR(mp_future_get(f, NULL, 4, NULL, 0), MP_EINVAL);
    CHECK_ERR(mp_future_wait(NULL, 0), MP_EINVAL);
    CHECK(!mp_future_successful(NULL));
    mp_future_free(f);
    mp_future_free(NULL);
    mp_pool_free(p);
    gates_free(&g);
}

TEST(task_errors_are_outcomes)
{
    gates g = gates_new();
    gates_open(&g, 1);
    mp_pool *p = pool_with(1);
    mp_future *f = gated(p, &g, 1, MP_ENOENT);
    CHECK_ERR(mp_future_get(f, NULL, 0, NULL, 30.0), MP_ETASK);
    CHECK_ERR(mp_future_task_error(f), MP_ENOENT);
    CHECK(!mp_future_successful(f));
    CHECK(mp_future_result(f, NULL) == NULL);
    mp_future_free(f);
    mp_pool_free(p);
    gates_free(&g);
}

TEST(cancel_only_before_a_worker_takes_it)
{
    gates g = gates_new();
    mp_pool *p = pool_with(1);
    mp_future *a = gated(p, &g, 0, 1);
    mp_future *b = gated(p, &g, 1, 2);
    wait_running(a);
    CHECK(!mp_future_running(b));
    CHECK_ERR(mp_future_cancel(a), MP_EBUSY);
    CHECK_OK(mp_future_cancel(b));
    CHECK_OK(mp_future_cancel(b)); /* already cancelled: still 0 */
    CHECK(mp_future_done(b));
    CHECK(mp_future_cancelled(b));
    CHECK_ERR(mp_future_get(b, NULL, 0, NULL, 0), MP_ECANCELED);
    gates_open(&g, 0);
    gates_open(&g, 1);
    int v = 0;
    CHECK_OK(mp_future_get(a, &v, sizeof v, NULL, 30.0));
    CHECK_EQ(v, 1);
    CHECK_ERR(mp_future_cancel(a), MP_EBUSY); /* finished */
    CHECK_ERR(mp_future_cancel(NULL), MP_EINVAL);
    mp_future_free(a);
    mp_future_free(b);

    mp_pool_free(p);
    gates_free(&g);
}

static int identity(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    *(int *)out = *(const int *)in;
    return 0;
}

TEST(cancel_a_queued_map)
{
    gates g = gates_new();
    mp_pool *p = pool_with(1);
    mp_future *blocker = gated(p, &g, 0, 0);
    wait_running(blocker);
    int in[100], out[100], errs[100];
    for (int i = 0; i < 100; i++)
        in[i] = i;
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = identity;
    s.in = in;
    s.n = 100;
    s.in_size = sizeof in[0];
    s.out = out;
    s.out_size = sizeof out[0];
    s.errors = errs;
    mp_future *m = mp_pool_map_async_ex(p, &s);
    CHECK_OK(mp_future_cancel(m));
    CHECK_ERR(mp_future_get(m, NULL, 0, NULL, 30.0), MP_ECANCELED);
    CHECK(mp_future_cancelled(m));
    for (int i = 0; i < 100; i++)
        CHECK_ERR(errs[i], MP_ECANCELED);
    gates_open(&g, 0);
    CHECK_OK(mp_future_wait(blocker, 30.0));
    mp_future_free(blocker);
    mp_future_free(m);
    mp_pool_free(p);
    gates_free(&g);
}

typedef struct gated_item_ctx {
    _Atomic uint32_t *open;
    int started_fd;
} gated_item_ctx;

/* Item 0 says it started and waits for gate 5; the others run at once. */
static int gated_item(const void *in, void *out, const void *ctx)
{
    const gated_item_ctx *c = ctx;
    int v = *(const int *)in;
    if (v == 0) {
        (void)!write(c->started_fd, &v, sizeof v);
        int64_t deadline = mp__deadline(30.0);
        uint32_t w;
        while (!((w = atomic_load(c->open)) & (1u << 5)))
            if (mp__futex_wait(c->open, w, deadline) == MP_ETIMEDOUT)
                return 1;
    }
    *(int *)out = v + 1;
    return 0;
}

TEST(cancel_a_started_map_cancels_the_rest)
{
    gates g = gates_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    mp_pool *p = pool_with(1);
    int in[20], out[20], errs[20];
    for (int i = 0; i < 20; i++)
        in[i] = i;
    gated_item_ctx c = {g.open, started[1]};
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = gated_item;
    s.in = in;
    s.n = 20;
    s.in_size = sizeof in[0];
    s.out = out;
    s.out_size = sizeof out[0];
    s.errors = errs;
    s.ctx = &c;
    s.ctx_size = sizeof c;
    s.chunksize = 1;
    mp_future *m = mp_pool_map_async_ex(p, &s);
    CHECK_OK(read_one(started[0], 30.0));
    CHECK_ERR(mp_future_cancel(m), MP_EBUSY);
    CHECK(!mp_future_done(m)); /* item 0 still runs */
    gates_open(&g, 5);
    CHECK_ERR(mp_future_get(m, NULL, 0, NULL, 30.0), MP_ECANCELED);
    CHECK_EQ(mp_future_failed_index(m), 1);
    CHECK_EQ(errs[0], 0);
    CHECK_EQ(out[0], 1);
    for (int i = 1; i < 20; i++)
        CHECK_ERR(errs[i], MP_ECANCELED);
    mp_future_free(m);
    mp_pool_free(p);
    gates_free(&g);
    close(started[0]);
    close(started[1]);
}

/* ---- callbacks ----------------------------------------------------------------- */

typedef struct cb_log {
    pthread_mutex_t lock;
    int order[16];
    int n;
    pthread_t thread;
    int ready_pipe[2];
} cb_log;

static cb_log cblog = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void record_cb(mp_future *f, void *ctx)
{
    (void)f;
    pthread_mutex_lock(&cblog.lock);
    cblog.order[cblog.n++] = (int)(intptr_t)ctx;
    cblog.thread = pthread_self();
    pthread_mutex_unlock(&cblog.lock);
    int one = 1;
    (void)!write(cblog.ready_pipe[1], &one, sizeof one);
}

TEST(done_callbacks_run_once_in_order_off_the_callers_thread)
{
    CHECK_EQ(pipe2(cblog.ready_pipe, O_CLOEXEC), 0);
    gates g = gates_new();
    mp_pool *p = pool_with(1);
    mp_future *f = gated(p, &g, 0, 5);
    CHECK_OK(mp_future_add_done_callback(f, record_cb, (void *)1));
    CHECK_OK(mp_future_add_done_callback(f, record_cb, (void *)2));
    CHECK_OK(mp_future_add_done_callback(f, record_cb, (void *)3));
    CHECK_ERR(mp_future_add_done_callback(f, NULL, NULL), MP_EINVAL);
    gates_open(&g, 0);
    for (int i = 0; i < 3; i++)
        CHECK_OK(read_one(cblog.ready_pipe[0], 30.0));
    pthread_mutex_lock(&cblog.lock);
    CHECK_EQ(cblog.n, 3);
    CHECK_EQ(cblog.order[0], 1);
    CHECK_EQ(cblog.order[1], 2);
    CHECK_EQ(cblog.order[2], 3);
    CHECK(!pthread_equal(cblog.thread, pthread_self()));
    pthread_mutex_unlock(&cblog.lock);
    /* Added once finished (its callbacks have run: future.h): runs at
     * once, here. */
    CHECK_OK(mp_future_wait(f, 30.0));
    CHECK_OK(mp_future_add_done_callback(f, record_cb, (void *)4));
    CHECK_EQ(cblog.n, 4);
    CHECK_EQ(cblog.order[3], 4);
    CHECK(pthread_equal(cblog.thread, pthread_self()));
    mp_future_free(f);
    mp_pool_free(p);
    gates_free(&g);
    close(cblog.ready_pipe[0]);
    close(cblog.ready_pipe[1]);
}

/* A callback that takes its time, then records the future's result: a
 * waiter that returned before it ran finds nothing recorded.  The sleep
 * widens the window a wrong order leaves open; it synchronises nothing. */
static _Atomic int slow_cb_seen;

static void slow_record_cb(mp_future *f, void *ctx)
{
    (void)ctx;
    mp__sleep_ns(100 * 1000000);
    int v = 0;
    if (mp_future_get(f, &v, sizeof v, NULL, 0) == 0)
        atomic_store(&slow_cb_seen, v);
}

/* future.h, "Callbacks": "a waiter sees a future finished only once its
 * done callbacks have run" (Python's Pool runs a result's callback before
 * get() and wait() return).  One case per way of waiting; fails when a
 * waiter returns while the callback still runs. */
TEST(callbacks_have_run_before_a_waiter_returns)
{
    gates g = gates_new();
    mp_pool *p = pool_with(1);
    for (int how = 0; how < 5; how++) {
        MPT_CONTEXT("wait %d (get, wait, mp_wait, as_completed, apply_async_cb)", how);
        atomic_store(&slow_cb_seen, 0);
        gated_arg a = {g.open, how, 40 + how};
        mp_future *f;
        if (how == 4) {
            f = mp_pool_apply_async_cb(p, gated_task, &a, sizeof a, slow_record_cb, NULL, NULL);
        } else {
            f = mp_pool_apply_async(p, gated_task, &a, sizeof a);
            CHECK_OK(mp_future_add_done_callback(f, slow_record_cb, NULL));
        }
        CHECK(!mp_future_done(f));
        gates_open(&g, how);
        mp_as_completed *it = NULL;
        mp_future *got = NULL;
        switch (how) {
        case 0:
        case 4:
            CHECK_OK(mp_future_get(f, NULL, 0, NULL, 30.0));
            break;
        case 1:
            CHECK_OK(mp_future_wait(f, 30.0));
            break;
        case 2:
            CHECK_EQ(mp_wait(&f, 1, MP_ALL_COMPLETED, 30.0), 1);
            break;
        case 3:
            CHECK_OK(mp_as_completed_new(&f, 1, &it));
            CHECK_OK(mp_as_completed_next(it, &got, 30.0));
            CHECK_PTR_EQ(got, f);
            mp_as_completed_free(it);
            break;
        }
        CHECK_EQ(atomic_load(&slow_cb_seen), 40 + how);
        CHECK(mp_future_done(f));
        mp_future_free(f);
    }
    mp_pool_free(p);
    gates_free(&g);
}

static pthread_t cancel_cb_thread;
static _Atomic int cancel_cb_calls;

static void cancel_record_cb(mp_future *f, void *ctx)
{
    (void)ctx;
    if (mp_future_cancelled(f))
        atomic_fetch_add(&cancel_cb_calls, 1);
    cancel_cb_thread = pthread_self();
}

/* future.h, mp_future_cancel: "its callbacks have run, in the calling
 * thread, before the call returns" (Python's Future.cancel()).  Fails
 * when the callbacks are left to the pool's callback thread. */
TEST(cancel_runs_the_callbacks_before_it_returns)
{
    gates g = gates_new();
    mp_pool *p = pool_with(1);
    mp_future *blocker = gated(p, &g, 0, 0);
    wait_running(blocker);
    /* An apply task, and a map, both queued behind the blocker. */
    mp_future *f = gated(p, &g, 1, 1);
    CHECK_OK(mp_future_add_done_callback(f, cancel_record_cb, NULL));
    CHECK_OK(mp_future_add_done_callback(f, cancel_record_cb, NULL));
    CHECK_OK(mp_future_cancel(f));
    CHECK_EQ(atomic_load(&cancel_cb_calls), 2);
    CHECK(pthread_equal(cancel_cb_thread, pthread_self()));
    CHECK(mp_future_cancelled(f));
    int in[10] = {0}, out[10];
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = identity;
    s.in = in;
    s.n = 10;
    s.in_size = sizeof in[0];
    s.out = out;
    s.out_size = sizeof out[0];
    mp_future *m = mp_pool_map_async_ex(p, &s);
    CHECK_OK(mp_future_add_done_callback(m, cancel_record_cb, NULL));
    CHECK_OK(mp_future_cancel(m));
    CHECK_EQ(atomic_load(&cancel_cb_calls), 3);
    /* apply_async's error_callback is a done callback too. */
    gated_arg a = {g.open, 2, 2};
    mp_future *e =
        mp_pool_apply_async_cb(p, gated_task, &a, sizeof a, NULL, cancel_record_cb, NULL);
    CHECK_OK(mp_future_cancel(e));
    CHECK_EQ(atomic_load(&cancel_cb_calls), 4);
    CHECK(pthread_equal(cancel_cb_thread, pthread_self()));
    gates_open(&g, 0);
    CHECK_OK(mp_future_wait(blocker, 30.0));
    mp_future_free(blocker);
    mp_future_free(f);
    mp_future_free(m);
    mp_future_free(e);
    mp_pool_free(p);
    gates_free(&g);
}

typedef struct chain_ctx {
    mp_future *other; /* finishes after this one, with callbacks of its own */
    gates *g;
    _Atomic int result;
} chain_ctx;

static void noop_cb(mp_future *f, void *ctx)
{
    (void)f;
    (void)ctx;
}

/* Waits, from a callback of its own future, for a future whose callbacks
 * are queued behind it in the same thread: get, mp_wait, as_completed. */
static void wait_other_cb(mp_future *f, void *ctx)
{
    chain_ctx *c = ctx;
    int v = 0, ok = mp_future_get(f, &v, sizeof v, NULL, 0) == 0 && v == 7;
    gates_open(c->g, 1); /* now the other future may finish */
    mp_future *o = c->other;
    ok &= mp_future_get(o, &v, sizeof v, NULL, 30.0) == 0 && v == 8;
    ok &= mp_wait(&o, 1, MP_ALL_COMPLETED, 30.0) == 1;
    mp_as_completed *it = NULL;
    mp_future *got = NULL;
    ok &= mp_as_completed_new(&o, 1, &it) == 0 && mp_as_completed_next(it, &got, 30.0) == 0 &&
          got == o;
    mp_as_completed_free(it);
    atomic_store(&c->result, ok ? 1 : -1);
}

/* future.h, "Callbacks": "A callback may query any future ... or wait for
 * other futures", its own future counting as finished there.  Fails when
 * a callback waits for itself, or for a future whose callbacks are queued
 * behind it (both would wait for ever). */
TEST(a_callback_sees_its_future_done_and_waits_for_others)
{
    gates g = gates_new();
    mp_pool *p = pool_with(2);
    mp_future *f = gated(p, &g, 0, 7);
    mp_future *o = gated(p, &g, 1, 8);
    CHECK_OK(mp_future_add_done_callback(o, noop_cb, NULL));
    chain_ctx c = {o, &g, 0};
    CHECK_OK(mp_future_add_done_callback(f, wait_other_cb, &c));
    gates_open(&g, 0);
    CHECK_OK(mp_future_wait(f, 60.0));
    CHECK_EQ(atomic_load(&c.result), 1);
    CHECK_OK(mp_future_wait(o, 30.0));
    mp_future_free(f);
    mp_future_free(o);
    mp_pool_free(p);
    gates_free(&g);
}

/* ---- many futures ---------------------------------------------------------------- */

TEST(wait_first_completed_all_completed_first_exception)
{
    gates g = gates_new();
    mp_pool *p = pool_with(3);
    mp_future *fs[3] = {gated(p, &g, 0, 10), gated(p, &g, 1, 11), gated(p, &g, 2, -5)};
    double t0 = mpt_now();
    CHECK_ERR(mp_wait(fs, 3, MP_FIRST_COMPLETED, 0.1), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.1);
    gates_open(&g, 1);
    CHECK_EQ(mp_wait(fs, 3, MP_FIRST_COMPLETED, 30.0), 1);
    CHECK(mp_future_done(fs[1]));
    CHECK(!mp_future_done(fs[0]));
    /* No exception yet: FIRST_EXCEPTION waits on. */
    CHECK_ERR(mp_wait(fs, 3, MP_FIRST_EXCEPTION, 0.1), MP_ETIMEDOUT);
    gates_open(&g, 2);
    CHECK_EQ(mp_wait(fs, 3, MP_FIRST_EXCEPTION, 30.0), 2);
    CHECK_ERR(mp_future_status(fs[2]), MP_ETASK);
    CHECK_ERR(mp_wait(fs, 3, MP_ALL_COMPLETED, 0.05), MP_ETIMEDOUT);
    gates_open(&g, 0);
    CHECK_EQ(mp_wait(fs, 3, MP_ALL_COMPLETED, 30.0), 3);
    /* Once met, at once; duplicates and empty lists are fine. */
    mp_future *dup[4] = {fs[0], fs[0], fs[1], fs[2]};
    CHECK_EQ(mp_wait(dup, 4, MP_ALL_COMPLETED, 0), 4);
    CHECK_EQ(mp_wait(NULL, 0, MP_ALL_COMPLETED, 0), 0);
    CHECK_ERR(mp_wait(fs, 3, (mp_wait_mode)9, 0), MP_EINVAL);
    mp_future *withnull[2] = {fs[0], NULL};
    CHECK_ERR(mp_wait(withnull, 2, MP_ALL_COMPLETED, 0), MP_EINVAL);
    for (int i = 0; i < 3; i++)
        mp_future_free(fs[i]);
    mp_pool_free(p);
    gates_free(&g);
}

TEST(wait_first_exception_all_succeed)
{
    gates g = gates_new();
    for (int i = 0; i < 20; i++)
        gates_open(&g, i);
    mp_pool *p = pool_with(2);
    mp_future *fs[20];
    for (int i = 0; i < 20; i++)
        fs[i] = gated(p, &g, i, i);
    /* With no failure, FIRST_EXCEPTION is ALL_COMPLETED. */
    CHECK_EQ(mp_wait(fs, 20, MP_FIRST_EXCEPTION, 30.0), 20);
    for (int i = 0; i < 20; i++)
        mp_future_free(fs[i]);
    mp_pool_free(p);
    gates_free(&g);
}

TEST(as_completed_yields_in_order_of_completion)
{
    gates g = gates_new();
    gates_open(&g, 4); /* finished before the iteration starts */
    mp_pool *p = pool_with(5);
    mp_future *fs[5];
    for (int i = 0; i < 5; i++)
        fs[i] = gated(p, &g, i, 100 + i);
    CHECK_OK(mp_future_wait(fs[4], 30.0));
    mp_as_completed *it = NULL;
    CHECK_OK(mp_as_completed_new(fs, 5, &it));
    CHECK(it != NULL);
    /* The iteration holds references: the caller's may go. */
    for (int i = 0; i < 5; i++)
        mp_future_free(fs[i]);
    mp_future *f = NULL;
    CHECK_OK(mp_as_completed_next(it, &f, 30.0));
    int v;
    CHECK_OK(mp_future_get(f, &v, sizeof v, NULL, 0));
    CHECK_EQ(v, 104);
    double t0 = mpt_now();
    CHECK_ERR(mp_as_completed_next(it, &f, 0.1), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.1);
    int order[4] = {2, 0, 3, 1};
    for (int k = 0; k < 4; k++) {
        gates_open(&g, order[k]);
        CHECK_OK(mp_as_completed_next(it, &f, 30.0));
        CHECK_OK(mp_future_get(f, &v, sizeof v, NULL, 0));
        CHECK_EQ(v, 100 + order[k]);
    }
    CHECK_ERR(mp_as_completed_next(it, &f, 30.0), MP_EOF);
    CHECK_ERR(mp_as_completed_next(NULL, &f, 0), MP_EINVAL);
    mp_as_completed_free(it);
    mp_as_completed_free(NULL);
    it = mpt_not_null();
    CHECK_ERR(mp_as_completed_new(NULL, 3, &it), MP_EINVAL);
    CHECK(it == NULL);
    mp_future *holes[2] = {f, NULL};
    it = mpt_not_null();
    CHECK_ERR(mp_as_completed_new(holes, 2, &it), MP_EINVAL);
    CHECK(it == NULL);
    CHECK_ERR(mp_as_completed_new(holes, 1, NULL), MP_EINVAL);
    CHECK_OK(mp_as_completed_new(NULL, 0, &it));
    CHECK_ERR(mp_as_completed_next(it, &f, 0), MP_EOF);
    mp_as_completed_free(it);
    mp_pool_free(p);
    gates_free(&g);
}

static int square_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    long v = *(const long *)arg;
    v *= v;
    return mp_buf_append(out, &v, sizeof v);
}

TEST(as_completed_over_many_tasks)
{
    mp_pool *p = pool_with(2);
    enum { N = 2000 };
    mp_future **fs = malloc(N * sizeof *fs);
    for (long i = 0; i < N; i++)
        fs[i] = mp_pool_submit(p, square_task, &i, sizeof i);
    mp_as_completed *it;
    CHECK_OK(mp_as_completed_new(fs, N, &it));
    long sum = 0;
    int count = 0;
    mp_future *f;
    while (mp_as_completed_next(it, &f, 30.0) == 0) {
        long v;
        CHECK_OK(mp_future_get(f, &v, sizeof v, NULL, 0));
        sum += v;
        count++;
    }
    CHECK_EQ(count, N);
    CHECK_EQ(sum, (long)(N - 1) * N * (2 * N - 1) / 6);
    mp_as_completed_free(it);
    for (int i = 0; i < N; i++)
        mp_future_free(fs[i]);
    free(fs);
    mp_pool_free(p);
}

/* future.h: "A future listed more than once is yielded once"; fails when
 * a repeated future comes back once per listing. */
TEST(as_completed_yields_a_repeated_future_once)
{
    gates g = gates_new();
    gates_open(&g, 1);
    mp_pool *p = pool_with(2);
    mp_future *a = gated(p, &g, 0, 1), *b = gated(p, &g, 1, 2);
    CHECK_OK(mp_future_wait(b, 30.0));
    mp_future *fs[6] = {a, a, b, a, b, b};
    mp_as_completed *it = NULL;
    CHECK_OK(mp_as_completed_new(fs, 6, &it));
    mp_future *f = NULL;
    /* b is finished already, so it comes first; a once its gate opens. */
    CHECK_OK(mp_as_completed_next(it, &f, 30.0));
    CHECK_PTR_EQ(f, b);
    CHECK_ERR(mp_as_completed_next(it, &f, 0.05), MP_ETIMEDOUT);
    gates_open(&g, 0);
    CHECK_OK(mp_as_completed_next(it, &f, 30.0));
    CHECK_PTR_EQ(f, a);
    CHECK_ERR(mp_as_completed_next(it, &f, 0.2), MP_EOF);
    mp_as_completed_free(it);
    /* Three times the same future: one item. */
    mp_future *same[3] = {a, a, a};
    CHECK_OK(mp_as_completed_new(same, 3, &it));
    CHECK_OK(mp_as_completed_next(it, &f, 0));
    CHECK_PTR_EQ(f, a);
    CHECK_ERR(mp_as_completed_next(it, &f, 0), MP_EOF);
    mp_as_completed_free(it);
    mp_future_free(a);
    mp_future_free(b);
    mp_pool_free(p);
    gates_free(&g);
}

/* ---- waiters from many threads ------------------------------------------------------ */

static void *get_in_thread(void *arg)
{
    mp_future *f = arg;
    int v = 0;
    int rc = mp_future_get(f, &v, sizeof v, NULL, 30.0);
    return (void *)(intptr_t)(rc == 0 ? v : -1);
}

TEST(many_threads_wait_for_one_future)
{
    gates g = gates_new();
    mp_pool *p = pool_with(1);
    mp_future *f = gated(p, &g, 0, 31);
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, get_in_thread, f), 0);
    gates_open(&g, 0);
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(t[i], &r);
        CHECK_EQ((intptr_t)r, 31);
    }
    mp_future_free(f);
    mp_pool_free(p);
    gates_free(&g);
}

/* ---- Ctrl-C -------------------------------------------------------------------------------- */

/* Waits until a thread waits under the library's SIGINT handler (the
 * disposition is no longer the default), then sends SIGINT. */
static void send_sigint_once_waiting(void)
{
    double end = mpt_now() + 30.0;
    struct sigaction sa;
    while (sigaction(SIGINT, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL && mpt_now() < end)
        mp__sleep_ns(100000); /* polls a state, bounded */
    kill(getpid(), SIGINT);
}

static void *sigint_when_running(void *arg)
{
    wait_running(arg);
    send_sigint_once_waiting();
    return NULL;
}

TEST(sigint_during_get_cancels_and_terminates)
{
    gates g = gates_new();
    mp_pool *p = pool_with(2);
    mp_future *a = gated(p, &g, 0, 1);
    mp_future *b = gated(p, &g, 1, 2);
    mp_future *c = gated(p, &g, 2, 3);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, sigint_when_running, a), 0);
    CHECK_ERR(mp_future_get(a, NULL, 0, NULL, 30.0), MP_ECANCELED);
    pthread_join(t, NULL);
    /* The pool was terminated: everything cancelled, no worker left. */
    CHECK_ERR(mp_future_status(a), MP_ECANCELED);
    CHECK_ERR(mp_future_status(b), MP_ECANCELED);
    CHECK_ERR(mp_future_status(c), MP_ECANCELED);
    CHECK_EQ(mp_pool_worker_pids(p, NULL, 0), 0);
    struct sigaction sa;
    CHECK_EQ(sigaction(SIGINT, NULL, &sa), 0);
    CHECK(sa.sa_handler == SIG_DFL);
    mp_future_free(a);
    mp_future_free(b);
    mp_future_free(c);
    mp_pool_free(p);
    gates_free(&g);
}

TEST(sigint_during_mp_wait_and_as_completed)
{
    gates g = gates_new();
    mp_pool *p = pool_with(1);
    mp_future *fs[2] = {gated(p, &g, 0, 1), gated(p, &g, 1, 2)};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, sigint_when_running, fs[0]), 0);
    CHECK_ERR(mp_wait(fs, 2, MP_ALL_COMPLETED, 30.0), MP_ECANCELED);
    pthread_join(t, NULL);
    CHECK(mp_future_cancelled(fs[0]));
    mp_future_free(fs[0]);
    mp_future_free(fs[1]);
    mp_pool_free(p);

    p = pool_with(1);
    fs[0] = gated(p, &g, 2, 1);
    fs[1] = gated(p, &g, 3, 2);
    mp_as_completed *it;
    CHECK_OK(mp_as_completed_new(fs, 2, &it));
    CHECK_EQ(pthread_create(&t, NULL, sigint_when_running, fs[0]), 0);
    mp_future *f;
    CHECK_ERR(mp_as_completed_next(it, &f, 30.0), MP_ECANCELED);
    pthread_join(t, NULL);
    /* The cancelled futures still come out of the iteration. */
    CHECK_OK(mp_as_completed_next(it, &f, 5.0));
    CHECK(mp_future_cancelled(f));
    mp_as_completed_free(it);
    mp_future_free(fs[0]);
    mp_future_free(fs[1]);
    mp_pool_free(p);
    gates_free(&g);
}

/* ---- futures of another owner ---------------------------------------------------------- */

static _Atomic int owner_holds, owner_cancels;

static void fake_hold(void *owner)
{
    (void)owner;
    atomic_fetch_add(&owner_holds, 1);
}

static void fake_release(void *owner)
{
    (void)owner;
    atomic_fetch_sub(&owner_holds, 1);
}

static int fake_cancel(void *owner, mp_future *f)
{
    (void)owner;
    atomic_fetch_add(&owner_cancels, 1);
    mp__future_finish(f, MP_ECANCELED, NULL, 0, 0, 0, NULL, -1);
    return 0;
}

static bool fake_running(void *owner, const mp_future *f)
{
    (void)owner;
    (void)f;
    return true;
}

static void fake_interrupt(void *owner)
{
    (void)owner;
}

static const mp__future_ops fake_ops = {fake_hold,    fake_release,   fake_cancel,
                                        fake_running, fake_interrupt, NULL};

static void *finish_later(void *arg)
{
    char *res = malloc(6);
    memcpy(res, "hello", 6);
    mp__future_finish(arg, 0, res, 6, 0, 0, NULL, -1);
    return NULL;
}

static void count_cb(mp_future *f, void *ctx)
{
    (void)f;
    atomic_fetch_add((_Atomic int *)ctx, 1);
}

TEST(futures_of_any_owner)
{
    mp_future *f = mp__future_new(&fake_ops, NULL);
    CHECK(mp_future_running(f));
    _Atomic int calls = 0;
    CHECK_OK(mp_future_add_done_callback(f, count_cb, (void *)&calls));
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, finish_later, f), 0);
    char buf[8];
    size_t len;
    CHECK_OK(mp_future_get(f, buf, sizeof buf, &len, 30.0));
    pthread_join(t, NULL);
    CHECK_EQ(len, 6);
    CHECK_STREQ(buf, "hello");
    /* No dispatcher: the callback ran in the finishing thread. */
    CHECK_EQ(atomic_load(&calls), 1);
    CHECK(!mp_future_running(f));
    /* A second finish changes nothing. */
    mp__future_finish(f, MP_EIO, NULL, 0, 0, 0, NULL, -1);
    CHECK_OK(mp_future_status(f));
    CHECK_EQ(atomic_load(&owner_holds), 0);
    mp_future_free(f);

    f = mp__future_new(&fake_ops, NULL);
    CHECK_OK(mp_future_cancel(f));
    CHECK_EQ(atomic_load(&owner_cancels), 1);
    CHECK(mp_future_cancelled(f));
    CHECK_EQ(atomic_load(&owner_holds), 0);
    mp_future_free(f);

    f = mp__future_new_failed(MP_ECLOSED, "closed");
    CHECK_ERR(mp_future_get(f, NULL, 0, NULL, MP_FOREVER), MP_ECLOSED);
    CHECK_STREQ(mp_future_report(f), "closed");
    mp_future_free(f);
}

MPT_MAIN()
