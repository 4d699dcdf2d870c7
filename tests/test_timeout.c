/* Tests of the one rule for times (include/mproc/common.h, "Times"), for
 * every call and option that takes one: NaN is refused with MP_EINVAL and
 * nothing done; 0 never blocks; +INFINITY, -INFINITY, negative timeouts and
 * values too large for the clock wait without limit - the call returns
 * when what it waits for happens, never at once because a conversion to
 * nanoseconds overflowed; a duration below 0 is refused.  One file for all
 * the modules, so that the rule is checked in one place. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>

/* ---- the driver ------------------------------------------------------------ */

/* Timeouts that mean "no limit", each for its own reason. */
static const double unlimited[] = {
    INFINITY, -INFINITY, MP_FOREVER, -1e-300, DBL_MAX, 1e300, 1e10, /* past INT64_MAX nanoseconds */
    9.3e9 /* within them, past the clock once added to now */
};

/* A call that waits, and how to make it wait and let it through. */
typedef struct tcase tcase;
struct tcase {
    const char *name;
    /* Makes the call wait (in the test's thread). */
    void (*block)(tcase *c);
    int (*call)(tcase *c, double timeout);
    /* Lets a waiting call through (from another thread). */
    void (*unblock)(tcase *c);
    /* After the call returned: undoes what block and a successful call
     * left (may be NULL). */
    void (*reset)(tcase *c, int rc);
    int busy;  /* what a timeout of 0 returns while blocked */
    int timed; /* what a short timeout returns while blocked */
    int ok;    /* what the call returns once let through */
    void *ctx[4];
    pid_t tid; /* the test's thread */
};

/* Waits (bounded) until thread tid of this process sleeps: inside the
 * call, past its deadline checks. */
static void thread_sleeps(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    double end = mpt_now() + 30;
    while (mpt_now() < end) {
        char buf[512] = {0};
        FILE *f = fopen(path, "re");
        if (f) {
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            const char *rp = n > 0 ? strrchr(buf, ')') : NULL;
            if (rp && rp[1] == ' ' && rp[2] == 'S')
                return;
        }
        sched_yield();
    }
    fprintf(stderr, "the call never went to sleep\n");
}

static void *unblocker(void *arg)
{
    tcase *c = arg;
    thread_sleeps(c->tid);
    c->unblock(c);
    return NULL;
}

static void check_rc(const tcase *c, double t, int rc, int want)
{
    if (rc != want)
        mpt_fail(__FILE__, __LINE__, "%s with timeout %g returned %d %s, expected %d %s", c->name,
                 t, rc, mp_err_name(rc), want, mp_err_name(want));
}

/* Runs the rule on c: NaN, 0, -0.0, a short time, then every unlimited
 * value with the call let through once it sleeps. */
static void run_rule(tcase *c)
{
    MPT_CONTEXT("%s", c->name);
    c->tid = (pid_t)syscall(SYS_gettid);
    c->block(c);
    check_rc(c, NAN, c->call(c, NAN), MP_EINVAL);
    check_rc(c, 0.0, c->call(c, 0.0), c->busy);
    check_rc(c, -0.0, c->call(c, -0.0), c->busy);
    check_rc(c, 0.02, c->call(c, 0.02), c->timed);
    for (size_t i = 0; i < MP__ARRAY_SIZE(unlimited); i++) {
        pthread_t th;
        CHECK_EQ(pthread_create(&th, NULL, unblocker, c), 0);
        int rc = c->call(c, unlimited[i]);
        CHECK_EQ(pthread_join(th, NULL), 0);
        check_rc(c, unlimited[i], rc, c->ok);
        if (c->reset)
            c->reset(c, rc);
        if (i + 1 < MP__ARRAY_SIZE(unlimited))
            c->block(c);
    }
    MPT_CONTEXT_CLEAR();
}

static void nothing(tcase *c)
{
    (void)c;
}

/* ---- process.h --------------------------------------------------------------- */

static int wait_on_pipe(void *arg)
{
    char ch;
    return read(*(int *)arg, &ch, 1) == 1 ? 0 : 1;
}

static void proc_block(tcase *c)
{
    gate *g = c->ctx[1];
    gate_init(g);
    c->ctx[0] = mpt_start(wait_on_pipe, &g->r);
}

static int proc_join(tcase *c, double t)
{
    return mp_process_join(c->ctx[0], t);
}

static void proc_unblock(tcase *c)
{
    gate_open(c->ctx[1]);
}

static void proc_reset(tcase *c, int rc)
{
    (void)rc;
    CHECK_EQ(mpt_exitcode(c->ctx[0]), 0);
    mp_process_free(c->ctx[0]);
    gate_close(c->ctx[1]);
}

TEST(process_join)
{
    gate g;
    tcase c = {.name = "mp_process_join",
               .block = proc_block,
               .call = proc_join,
               .unblock = proc_unblock,
               .reset = proc_reset,
               .busy = MP_ETIMEDOUT,
               .timed = MP_ETIMEDOUT,
               .ok = 0,
               .ctx = {NULL, &g}};
    run_rule(&c);
}

static int until_killed(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

/* A grace period is a duration: below 0 and NaN refused before anything
 * is sent; 0 kills at once; no limit waits for SIGTERM to work. */
TEST(process_stop_grace)
{
    const double refused[] = {NAN, -1.0, -INFINITY, -1e-300};
    const double taken[] = {0.0, INFINITY, DBL_MAX, 1e10, 5.0};
    for (size_t i = 0; i < MP__ARRAY_SIZE(refused); i++) {
        MPT_CONTEXT("grace %g", refused[i]);
        mp_process *p = mpt_start(until_killed, NULL);
        CHECK_ERR(mp_process_stop(p, refused[i]), MP_EINVAL);
        CHECK(mp_process_is_alive(p));
        CHECK_OK(mp_process_kill(p));
        CHECK_OK(mp_process_join(p, 30));
        mp_process_free(p);
    }
    for (size_t i = 0; i < MP__ARRAY_SIZE(taken); i++) {
        MPT_CONTEXT("grace %g", taken[i]);
        mp_process *p = mpt_start(until_killed, NULL);
        CHECK_OK(mp_process_stop(p, taken[i]));
        /* SIGTERM ends it; with no grace at all SIGKILL follows at once,
         * and either may be the one that ends it. */
        int code = mpt_exitcode(p);
        if (taken[i] > 0 || code != -SIGTERM)
            CHECK_EQ(code, taken[i] > 0 ? -SIGTERM : -SIGKILL);
        mp_process_free(p);
    }
    MPT_CONTEXT_CLEAR();
}

/* ---- pipe.h ------------------------------------------------------------------ */

static void pipe_unblock(tcase *c)
{
    CHECK_OK(mp_conn_send(c->ctx[1], "x", 1));
}

static int pipe_recv(tcase *c, double t)
{
    char buf[4];
    size_t len;
    return mp_conn_recv(c->ctx[0], buf, sizeof buf, &len, t);
}

static int pipe_recv_alloc(tcase *c, double t)
{
    void *buf = NULL;
    size_t len;
    int rc = mp_conn_recv_alloc(c->ctx[0], &buf, &len, t);
    free(buf);
    return rc;
}

static int pipe_poll(tcase *c, double t)
{
    return mp_conn_poll(c->ctx[0], t);
}

static void pipe_poll_reset(tcase *c, int rc)
{
    (void)rc;
    CHECK_OK(pipe_recv(c, 0));
}

static void pipe_fd_unblock(tcase *c)
{
    CHECK_OK(mp_conn_send_fd(c->ctx[1], *(int *)c->ctx[2]));
}

static int pipe_recv_fd(tcase *c, double t)
{
    int fd = -1;
    int rc = mp_conn_recv_fd(c->ctx[0], &fd, t);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* A full socket: sends block until the peer reads.  One-byte messages
 * each fit whole or not at all, so the filling never leaves half a one. */
static void pipe_fill(tcase *c)
{
    while (mp_conn_send_timeout(c->ctx[1], "f", 1, 0) == 0) {
    }
}

static int pipe_send(tcase *c, double t)
{
    return mp_conn_send_timeout(c->ctx[1], "y", 1, t);
}

/* Reads what the filler sent, then the message the call sent. */
static void pipe_drain(tcase *c)
{
    char buf[4] = "";
    size_t len;
    while (buf[0] != 'y')
        CHECK_OK(mp_conn_recv(c->ctx[0], buf, sizeof buf, &len, 30));
}

TEST(pipe_calls)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    tcase cs[] = {
        {.name = "mp_conn_recv", .call = pipe_recv, .busy = MP_EAGAIN, .timed = MP_ETIMEDOUT},
        {.name = "mp_conn_recv_alloc",
         .call = pipe_recv_alloc,
         .busy = MP_EAGAIN,
         .timed = MP_ETIMEDOUT},
        {.name = "mp_conn_poll",
         .call = pipe_poll,
         .reset = pipe_poll_reset,
         .busy = 0,
         .timed = 0,
         .ok = 1},
    };
    for (size_t i = 0; i < MP__ARRAY_SIZE(cs); i++) {
        cs[i].block = nothing;
        cs[i].unblock = pipe_unblock;
        cs[i].ctx[0] = a;
        cs[i].ctx[1] = b;
        run_rule(&cs[i]);
    }
    int fds[2];
    CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
    tcase fdc = {.name = "mp_conn_recv_fd",
                 .block = nothing,
                 .call = pipe_recv_fd,
                 .unblock = pipe_fd_unblock,
                 .busy = MP_EAGAIN,
                 .timed = MP_ETIMEDOUT,
                 .ctx = {a, b, &fds[0]}};
    run_rule(&fdc);
    close(fds[0]);
    close(fds[1]);
    tcase sc = {.name = "mp_conn_send_timeout",
                .block = pipe_fill,
                .call = pipe_send,
                .unblock = pipe_drain,
                .busy = MP_EAGAIN,
                .timed = MP_ETIMEDOUT,
                .ctx = {a, b}};
    run_rule(&sc);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- queue.h ------------------------------------------------------------------ */

static int q_get(tcase *c, double t)
{
    char buf[8];
    size_t len;
    return mp_queue_get(c->ctx[0], buf, sizeof buf, &len, t);
}

static int q_get_alloc(tcase *c, double t)
{
    void *buf = NULL;
    size_t len;
    int rc = mp_queue_get_alloc(c->ctx[0], &buf, &len, t);
    free(buf);
    return rc;
}

static void q_put_one(tcase *c)
{
    CHECK_OK(mp_queue_put(c->ctx[0], "m", 1, 0));
}

static void q_fill(tcase *c)
{
    while (mp_queue_put(c->ctx[0], "full", 4, 0) == 0) {
    }
}

static int q_put(tcase *c, double t)
{
    return mp_queue_put(c->ctx[0], "m", 1, t);
}

static void q_take_one(tcase *c)
{
    CHECK_OK(q_get(c, 0));
}

static void q_drain(tcase *c, int rc)
{
    (void)rc;
    while (q_get(c, 0) == 0) {
    }
}

static void q_unfinished(tcase *c)
{
    q_put_one(c);
    CHECK_OK(q_get(c, 0));
}

static int q_join(tcase *c, double t)
{
    return mp_queue_join(c->ctx[0], t);
}

static void q_task_done(tcase *c)
{
    CHECK_OK(mp_queue_task_done(c->ctx[0]));
}

TEST(queue_calls)
{
    mp_queue_opts o = MP_QUEUE_OPTS_INIT;
    o.capacity = 256;
    o.joinable = true;
    mp_queue *q = NULL;
    CHECK_OK(mp_queue_new_opts(&o, &q));
    tcase cs[] = {
        {.name = "mp_queue_get", .block = nothing, .call = q_get, .unblock = q_put_one},
        {.name = "mp_queue_get_alloc", .block = nothing, .call = q_get_alloc, .unblock = q_put_one},
        {.name = "mp_queue_put",
         .block = q_fill,
         .call = q_put,
         .unblock = q_take_one,
         .reset = q_drain},
    };
    for (size_t i = 0; i < MP__ARRAY_SIZE(cs); i++) {
        cs[i].busy = MP_EAGAIN;
        cs[i].timed = MP_ETIMEDOUT;
        cs[i].ctx[0] = q;
        run_rule(&cs[i]);
    }
    /* Every message taken so far is done; then one stays unfinished. */
    for (;;) {
        mp_queue_stats st;
        CHECK_OK(mp_queue_stats_get(q, &st));
        if (st.unfinished == 0)
            break;
        CHECK_OK(mp_queue_task_done(q));
    }
    tcase jc = {.name = "mp_queue_join",
                .block = q_unfinished,
                .call = q_join,
                .unblock = q_task_done,
                .busy = MP_ETIMEDOUT,
                .timed = MP_ETIMEDOUT,
                .ctx = {q}};
    run_rule(&jc);
    mp_queue_free(q);
}

/* ---- sync.h ------------------------------------------------------------------- */

/* A thread that holds a lock until told. */
typedef struct holder {
    mp_lock *lock;
    gate ready, go;
    pthread_t th;
} holder;

static void *hold(void *arg)
{
    holder *h = arg;
    CHECK_OK(mp_lock_acquire(h->lock, MP_FOREVER));
    gate_open(&h->ready);
    CHECK_OK(gate_wait(&h->go, 30));
    CHECK_OK(mp_lock_release(h->lock));
    return NULL;
}

static void lock_block(tcase *c)
{
    holder *h = c->ctx[1];
    gate_init(&h->ready);
    gate_init(&h->go);
    CHECK_EQ(pthread_create(&h->th, NULL, hold, h), 0);
    CHECK_OK(gate_wait(&h->ready, 30));
}

static void lock_unblock(tcase *c)
{
    gate_open(&((holder *)c->ctx[1])->go);
}

static void lock_reset(tcase *c, int rc)
{
    (void)rc;
    holder *h = c->ctx[1];
    CHECK_OK(mp_lock_release(h->lock));
    CHECK_EQ(pthread_join(h->th, NULL), 0);
    gate_close(&h->ready);
    gate_close(&h->go);
}

static int lock_acquire(tcase *c, double t)
{
    return mp_lock_acquire(c->ctx[0], t);
}

static int cond_acquire(tcase *c, double t)
{
    return mp_cond_acquire(c->ctx[0], t);
}

static void sem_unblock(tcase *c)
{
    CHECK_OK(mp_sem_release(c->ctx[0]));
}

static int sem_acquire(tcase *c, double t)
{
    return mp_sem_acquire(c->ctx[0], t);
}

static void event_unblock(tcase *c)
{
    CHECK_OK(mp_event_set(c->ctx[0]));
}

static int event_wait(tcase *c, double t)
{
    return mp_event_wait(c->ctx[0], t);
}

static void event_reset(tcase *c, int rc)
{
    (void)rc;
    CHECK_OK(mp_event_clear(c->ctx[0]));
}

TEST(lock_sem_event_calls)
{
    mp_lock *l;
    mp_rlock *rl;
    mp_cond *cv;
    mp_sem *s;
    mp_event *e;
    CHECK_OK(mp_lock_new(&l));
    CHECK_OK(mp_rlock_new(&rl));
    CHECK_OK(mp_cond_new(NULL, &cv));
    CHECK_OK(mp_sem_new(0, &s));
    CHECK_OK(mp_event_new(&e));
    holder h = {.lock = l}, hr = {.lock = rl}, hc = {.lock = mp_cond_get_lock(cv)};
    tcase cs[] = {
        {.name = "mp_lock_acquire",
         .block = lock_block,
         .call = lock_acquire,
         .unblock = lock_unblock,
         .reset = lock_reset,
         .ctx = {l, &h}},
        {.name = "mp_lock_acquire (RLock)",
         .block = lock_block,
         .call = lock_acquire,
         .unblock = lock_unblock,
         .reset = lock_reset,
         .ctx = {rl, &hr}},
        {.name = "mp_cond_acquire",
         .block = lock_block,
         .call = cond_acquire,
         .unblock = lock_unblock,
         .reset = lock_reset,
         .ctx = {cv, &hc}},
        {.name = "mp_sem_acquire",
         .block = nothing,
         .call = sem_acquire,
         .unblock = sem_unblock,
         .ctx = {s}},
        {.name = "mp_event_wait",
         .block = nothing,
         .call = event_wait,
         .unblock = event_unblock,
         .reset = event_reset,
         .ctx = {e}},
    };
    for (size_t i = 0; i < MP__ARRAY_SIZE(cs); i++) {
        cs[i].busy = MP_ETIMEDOUT;
        cs[i].timed = MP_ETIMEDOUT;
        run_rule(&cs[i]);
    }
    mp_event_free(e);
    mp_sem_free(s);
    mp_cond_free(cv);
    mp_lock_free(rl);
    mp_lock_free(l);
}

static _Atomic int cond_flag;

static bool flag_set(void *arg)
{
    (void)arg;
    return atomic_load(&cond_flag) != 0;
}

/* The waiter holds the condition's lock; the notifier takes it once the
 * waiter sleeps (and so has released it). */
static void cond_block(tcase *c)
{
    atomic_store(&cond_flag, 0);
    CHECK_OK(mp_cond_acquire(c->ctx[0], MP_FOREVER));
}

static void cond_unblock(tcase *c)
{
    CHECK_OK(mp_cond_acquire(c->ctx[0], MP_FOREVER));
    atomic_store(&cond_flag, 1);
    CHECK_OK(mp_cond_notify_all(c->ctx[0]));
    CHECK_OK(mp_cond_release(c->ctx[0]));
}

static void cond_reset(tcase *c, int rc)
{
    (void)rc;
    CHECK_OK(mp_cond_release(c->ctx[0]));
}

static int cond_wait(tcase *c, double t)
{
    return mp_cond_wait(c->ctx[0], t);
}

static int cond_wait_for(tcase *c, double t)
{
    return mp_cond_wait_for(c->ctx[0], flag_set, NULL, t);
}

static void barrier_unblock(tcase *c)
{
    CHECK_OK(mp_barrier_wait(c->ctx[0], MP_FOREVER));
}

static int barrier_wait(tcase *c, double t)
{
    int rc = mp_barrier_wait(c->ctx[0], t);
    /* A timeout breaks it (as Python's); NaN must not have. */
    if (rc == MP_ETIMEDOUT)
        CHECK_OK(mp_barrier_reset(c->ctx[0]));
    if (rc == MP_EINVAL)
        CHECK(!mp_barrier_broken(c->ctx[0]));
    return rc < 0 ? rc : 0;
}

TEST(condition_and_barrier_calls)
{
    mp_cond *cv;
    mp_barrier *b;
    CHECK_OK(mp_cond_new(NULL, &cv));
    CHECK_OK(mp_barrier_new(2, &b));
    tcase cs[] = {
        {.name = "mp_cond_wait",
         .block = cond_block,
         .call = cond_wait,
         .unblock = cond_unblock,
         .reset = cond_reset,
         .ctx = {cv}},
        {.name = "mp_cond_wait_for",
         .block = cond_block,
         .call = cond_wait_for,
         .unblock = cond_unblock,
         .reset = cond_reset,
         .ctx = {cv}},
        {.name = "mp_barrier_wait",
         .block = nothing,
         .call = barrier_wait,
         .unblock = barrier_unblock,
         .ctx = {b}},
    };
    for (size_t i = 0; i < MP__ARRAY_SIZE(cs); i++) {
        cs[i].busy = MP_ETIMEDOUT;
        cs[i].timed = MP_ETIMEDOUT;
        run_rule(&cs[i]);
    }
    mp_barrier_free(b);
    mp_cond_free(cv);
}

/* ---- future.h and pool.h -------------------------------------------------------- */

/* Tasks wait for this event (in the default arena, which the workers
 * inherit), at most 30 s. */
static mp_event *task_gate;

static int gated(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    return mp_event_wait(task_gate, 30.0) == 0 ? 0 : 1;
}

static int gated_item(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    memcpy(out, in, sizeof(int));
    return mp_event_wait(task_gate, 30.0) == 0 ? 0 : 1;
}

static mp_pool *one_worker_pool(void)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    return p;
}

static void set_gate(tcase *c)
{
    (void)c;
    CHECK_OK(mp_event_set(task_gate));
}

/* ctx[0]: the pool; ctx[1]: a future of a gated task. */
static void fut_block(tcase *c)
{
    CHECK_OK(mp_event_clear(task_gate));
    c->ctx[1] = mp_pool_apply_async(c->ctx[0], gated, NULL, 0);
    CHECK_NOT_NULL(c->ctx[1]);
}

static void fut_reset(tcase *c, int rc)
{
    (void)rc;
    CHECK_OK(mp_future_wait(c->ctx[1], 30));
    mp_future_free(c->ctx[1]);
}

static int fut_wait(tcase *c, double t)
{
    return mp_future_wait(c->ctx[1], t);
}

static int fut_get(tcase *c, double t)
{
    size_t len;
    return mp_future_get(c->ctx[1], NULL, 0, &len, t);
}

static int fut_mp_wait(tcase *c, double t)
{
    return mp_wait((mp_future *const *)&c->ctx[1], 1, MP_ALL_COMPLETED, t);
}

static void asc_block(tcase *c)
{
    fut_block(c);
    mp_as_completed *it = NULL;
    CHECK_OK(mp_as_completed_new((mp_future *const *)&c->ctx[1], 1, &it));
    c->ctx[2] = it;
}

static int asc_next(tcase *c, double t)
{
    mp_future *f;
    return mp_as_completed_next(c->ctx[2], &f, t);
}

static void asc_reset(tcase *c, int rc)
{
    fut_reset(c, rc);
    mp_as_completed_free(c->ctx[2]);
}

static void apply_block(tcase *c)
{
    (void)c;
    CHECK_OK(mp_event_clear(task_gate));
}

static int apply_call(tcase *c, double t)
{
    size_t len;
    return mp_pool_apply(c->ctx[0], gated, NULL, 0, NULL, 0, &len, t);
}

static void imap_block(tcase *c)
{
    CHECK_OK(mp_event_clear(task_gate));
    static const int in[1] = {7};
    mp_imap *it = NULL;
    CHECK_OK(mp_pool_imap(c->ctx[0], gated_item, in, 1, sizeof(int), sizeof(int), 1, &it));
    c->ctx[2] = it;
}

static int imap_call(tcase *c, double t)
{
    int out;
    size_t index;
    return mp_imap_next(c->ctx[2], &out, &index, t);
}

static void imap_reset(tcase *c, int rc)
{
    (void)rc;
    mp_imap_free(c->ctx[2]);
}

TEST_TIMEOUT(future_and_pool_calls, 120)
{
    CHECK_OK(mp_event_new(&task_gate));
    mp_pool *p = one_worker_pool();
    tcase cs[] = {
        {.name = "mp_future_wait", .block = fut_block, .call = fut_wait, .reset = fut_reset},
        {.name = "mp_future_get", .block = fut_block, .call = fut_get, .reset = fut_reset},
        {.name = "mp_wait", .block = fut_block, .call = fut_mp_wait, .reset = fut_reset, .ok = 1},
        {.name = "mp_as_completed_next", .block = asc_block, .call = asc_next, .reset = asc_reset},
        {.name = "mp_pool_apply", .block = apply_block, .call = apply_call},
        {.name = "mp_imap_next", .block = imap_block, .call = imap_call, .reset = imap_reset},
    };
    for (size_t i = 0; i < MP__ARRAY_SIZE(cs); i++) {
        cs[i].unblock = set_gate;
        cs[i].busy = MP_ETIMEDOUT;
        cs[i].timed = MP_ETIMEDOUT;
        cs[i].ctx[0] = p;
        run_rule(&cs[i]);
    }
    CHECK_OK(mp_event_set(task_gate));
    CHECK_OK(mp_pool_close(p));
    CHECK_OK(mp_pool_join(p, 30));
    mp_pool_free(p);
    mp_event_free(task_gate);
}

/* ctx[0]: a closed pool with a gated task running. */
static void pool_block(tcase *c)
{
    CHECK_OK(mp_event_clear(task_gate));
    mp_pool *p = one_worker_pool();
    mp_future *f = mp_pool_apply_async(p, gated, NULL, 0);
    CHECK_NOT_NULL(f);
    mp_future_free(f);
    CHECK_OK(mp_pool_close(p));
    c->ctx[0] = p;
}

static void pool_reset(tcase *c, int rc)
{
    (void)rc;
    mp_pool_free(c->ctx[0]);
}

static int pool_join(tcase *c, double t)
{
    return mp_pool_join(c->ctx[0], t);
}

static int pool_shutdown(tcase *c, double t)
{
    return mp_pool_shutdown(c->ctx[0], false, t);
}

TEST_TIMEOUT(pool_join_and_shutdown, 120)
{
    CHECK_OK(mp_event_new(&task_gate));
    tcase cs[] = {
        {.name = "mp_pool_join", .call = pool_join},
        {.name = "mp_pool_shutdown", .call = pool_shutdown},
    };
    for (size_t i = 0; i < MP__ARRAY_SIZE(cs); i++) {
        cs[i].block = pool_block;
        cs[i].unblock = set_gate;
        cs[i].reset = pool_reset;
        cs[i].busy = MP_ETIMEDOUT;
        cs[i].timed = MP_ETIMEDOUT;
        run_rule(&cs[i]);
    }
    mp_event_free(task_gate);
}

/* ---- the pool's options ---------------------------------------------------------- */

/* Runs about 50 ms of CPU: longer than nothing, far shorter than any limit
 * given below. */
static int busy_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    double end = mpt_now() + 0.05;
    while (mpt_now() < end) {
    }
    return 0;
}

static int pool_with(double task_timeout, double grace, double interval, mp_pool **p)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    o.task_timeout = task_timeout;
    o.terminate_grace = grace;
    o.progress_interval = interval;
    *p = mpt_not_null();
    return mp_pool_new(&o, p);
}

/* NaN in any of the three, and a negative grace or interval, are refused;
 * a task_timeout below 0 is "no limit" (as documented there). */
TEST(pool_options_refused)
{
    mp_log_set_level(MP_LOG_ERROR);
    const double bad[][3] = {{NAN, 1, 0.1},       {0, NAN, 0.1}, {0, 1, NAN},    {0, -1, 0.1},
                             {0, -INFINITY, 0.1}, {0, 1, -1},    {0, 1, -1e-300}};
    for (size_t i = 0; i < MP__ARRAY_SIZE(bad); i++) {
        MPT_CONTEXT("task_timeout %g, terminate_grace %g, progress_interval %g", bad[i][0],
                    bad[i][1], bad[i][2]);
        mp_pool *p;
        CHECK_ERR(pool_with(bad[i][0], bad[i][1], bad[i][2], &p), MP_EINVAL);
        CHECK_NULL(p);
    }
    MPT_CONTEXT_CLEAR();
}

/* task_timeout of INFINITY, or of more seconds than int64 nanoseconds
 * hold, is no limit: the watchdog's conversion overflowed and killed every
 * task at once. */
TEST_TIMEOUT(pool_task_timeout_without_limit_kills_nothing, 120)
{
    const double limits[] = {INFINITY, DBL_MAX, 1e300, 1e10, 9.3e9, -INFINITY, -1.0};
    for (size_t i = 0; i < MP__ARRAY_SIZE(limits); i++) {
        MPT_CONTEXT("task_timeout %g", limits[i]);
        mp_pool *p;
        CHECK_OK(pool_with(limits[i], 1.0, 0.1, &p));
        size_t len;
        CHECK_OK(mp_pool_apply(p, busy_task, NULL, 0, NULL, 0, &len, 30));
        mp_pool_stats st;
        CHECK_OK(mp_pool_stats_get(p, &st));
        CHECK_EQ_U(st.tasks_timed_out, 0);
        CHECK_EQ_U(st.workers_died, 0);
        mp_pool_free(p);
    }
    MPT_CONTEXT_CLEAR();
}

static int ident(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    memcpy(out, in, sizeof(int));
    return 0;
}

static _Atomic int progress_calls;
static _Atomic size_t progress_last;

static void count_progress(size_t done, size_t total, void *ctx)
{
    (void)total;
    (void)ctx;
    atomic_fetch_add(&progress_calls, 1);
    atomic_store(&progress_last, done);
}

/* progress_interval without limit: the final report only (the conversion
 * overflowed to a negative interval: a report at every look); a grace
 * without limit: terminate waits for SIGTERM to work, and returns. */
TEST(pool_interval_and_grace_without_limit)
{
    const double limits[] = {INFINITY, DBL_MAX, 1e10};
    enum { N = 2000 };
    static int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    for (size_t i = 0; i < MP__ARRAY_SIZE(limits); i++) {
        MPT_CONTEXT("progress_interval and terminate_grace %g", limits[i]);
        mp_pool_opts o = MP_POOL_OPTS_INIT;
        o.processes = 1;
        o.progress = count_progress;
        o.progress_interval = limits[i];
        o.terminate_grace = limits[i];
        mp_pool *p = NULL;
        CHECK_OK(mp_pool_new(&o, &p));
        atomic_store(&progress_calls, 0);
        CHECK_OK(mp_pool_map(p, ident, in, N, sizeof(int), out, sizeof(int), 1));
        /* The final report comes from the callback thread, which free
         * (not join) drains: "Callbacks still queued run before it
         * returns". */
        CHECK_OK(mp_pool_close(p));
        CHECK_OK(mp_pool_join(p, 30));
        mp_pool_free(p);
        CHECK_EQ(atomic_load(&progress_calls), 1);
        CHECK_EQ_U(atomic_load(&progress_last), N);
        CHECK_OK(pool_with(0, limits[i], 0.1, &p));
        CHECK_OK(mp_pool_terminate(p));
        mp_pool_free(p);
    }
    MPT_CONTEXT_CLEAR();
}

/* ---- wait.h and shutdown.h ------------------------------------------------- */

static int wait_any_event(tcase *c, double t)
{
    mp_waitable w = mp_waitable_event(c->ctx[0]);
    return mp_wait_any(&w, 1, t);
}

TEST(wait_any)
{
    mp_event *e;
    CHECK_OK(mp_event_new(&e));
    tcase c = {.name = "mp_wait_any",
               .block = nothing,
               .call = wait_any_event,
               .unblock = event_unblock,
               .reset = event_reset,
               .busy = MP_ETIMEDOUT,
               .timed = MP_ETIMEDOUT,
               .ok = 1,
               .ctx = {e}};
    run_rule(&c);
    mp_event_free(e);
}

static void *open_when_asleep(void *arg)
{
    tcase *c = arg;
    thread_sleeps(c->tid);
    gate_open(c->ctx[1]);
    return NULL;
}

/* mp_shutdown runs once per program, so the rule is checked in parts: a
 * NaN timeout or grace is refused before anything happens; a timeout
 * without limit waits for the child to end by itself (none is signalled). */
TEST(shutdown_timeout_and_grace)
{
    CHECK_ERR(mp_shutdown(NAN), MP_EINVAL);
    mp_shutdown_opts o = MP_SHUTDOWN_OPTS_INIT;
    o.grace = NAN;
    CHECK_ERR(mp_shutdown_ex(&o, NULL), MP_EINVAL);
    o.grace = -INFINITY;
    CHECK_ERR(mp_shutdown_ex(&o, NULL), MP_EINVAL);
    mp_shutdown_report r;
    CHECK_ERR(mp_shutdown_report_get(&r), MP_ESTATE); /* none ran */
    CHECK(!mp_shutdown_requested());
    gate g;
    gate_init(&g);
    mp_process *p = mpt_start(wait_on_pipe, &g.r);
    tcase c = {.name = "mp_shutdown", .tid = (pid_t)syscall(SYS_gettid), .ctx = {NULL, &g}};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, open_when_asleep, &c), 0);
    o = (mp_shutdown_opts)MP_SHUTDOWN_OPTS_INIT;
    o.timeout = INFINITY;
    o.grace = INFINITY;
    CHECK_EQ(mp_shutdown_ex(&o, &r), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(r.exited, 1);
    CHECK_EQ(mpt_exitcode(p), 0);
    mp_process_free(p);
    gate_close(&g);
}

MPT_MAIN()
