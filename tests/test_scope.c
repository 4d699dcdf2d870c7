/* Tests of the scope cleanups (mproc/scope.h): each MP_AUTO_* variable
 * really cleans up when it leaves its scope - processes gone, the queue
 * closed for everyone, descriptors back, memory freed (LeakSanitizer
 * checks that under ASan) - on every way out of a scope, and NULL is left
 * alone. */
#define _GNU_SOURCE
/* Short, so that a child that never ends is stopped quickly. */
#define MP_SCOPE_JOIN_TIMEOUT 0.3
#define MP_SCOPE_STOP_GRACE   0.2

#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <dirent.h>
#include <time.h>

#ifndef MP_HAVE_SCOPE
#error "mproc/scope.h defines MP_HAVE_SCOPE with GCC and Clang"
#endif

/* How many descriptors this process has open. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK_NOT_NULL(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own */
}

static void wait_workers(mp_pool *p, int n, pid_t *pids)
{
    double deadline = mpt_now() + 20.0;
    while (mp_pool_worker_pids(p, pids, (size_t)n) < n) {
        CHECK(mpt_now() < deadline);
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
}

TEST(the_join_timeout_and_grace_are_chosen_per_file)
{
    CHECK_EQ(MP_HAVE_SCOPE, 1);
    /* This file's own values, set before the header, win. */
    CHECK_DBL_NEAR(MP_SCOPE_JOIN_TIMEOUT, 0.3, 1e-9);
    CHECK_DBL_NEAR(MP_SCOPE_STOP_GRACE, 0.2, 1e-9);
}

TEST(a_pool_is_terminated_and_freed)
{
    pid_t pids[2];
    {
        mp_pool_opts o = MP_POOL_OPTS_INIT;
        o.processes = 2;
        MP_AUTO_POOL pool = NULL;
        CHECK_OK(mp_pool_new(&o, &pool));
        wait_workers(pool, 2, pids);
    }
    CHECK_OK(mpt_wait_gone(pids[0], 10.0));
    CHECK_OK(mpt_wait_gone(pids[1], 10.0));
}

/* Creates a pool, then gives up half-way: the early return cleans up. */
static int start_then_bail(pid_t *pids)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    MP_AUTO_POOL pool = NULL;
    if (mp_pool_new(&o, &pool) < 0)
        return -1;
    wait_workers(pool, 2, pids);
    return MP_ECANCELED;
}

TEST(an_early_return_cleans_up_too)
{
    pid_t pids[2];
    CHECK_ERR(start_then_bail(pids), MP_ECANCELED);
    CHECK_OK(mpt_wait_gone(pids[0], 10.0));
    CHECK_OK(mpt_wait_gone(pids[1], 10.0));
}

static int quick(void *arg)
{
    (void)arg;
    return 7;
}

/* Waits for a byte that never comes (until its parent goes). */
static int stuck(void *arg)
{
    char c;
    return (int)read(*(int *)arg, &c, 1);
}

TEST(a_process_is_joined_and_freed)
{
    pid_t pid;
    {
        MP_AUTO_PROCESS p = NULL;
        CHECK_OK(mp_process_new(quick, NULL, "quick", &p));
        CHECK_OK(mp_process_start(p));
        pid = mp_process_pid(p);
    }
    /* Joined, hence reaped: the pid names no process, not even a zombie. */
    CHECK_EQ(kill(pid, 0), -1);
    CHECK_EQ(errno, ESRCH);
}

TEST(a_process_that_will_not_end_is_stopped_after_the_join_timeout)
{
    int never[2];
    CHECK_EQ(pipe(never), 0);
    pid_t pid;
    double t0 = mpt_now();
    {
        MP_AUTO_PROCESS p = NULL;
        CHECK_OK(mp_process_new(stuck, &never[0], "stuck", &p));
        CHECK_OK(mp_process_start(p));
        pid = mp_process_pid(p);
    }
    double took = mpt_now() - t0;
    CHECK_EQ(kill(pid, 0), -1);
    CHECK_EQ(errno, ESRCH);
    /* It was given its join timeout first, and not much more. */
    CHECK(took >= MP_SCOPE_JOIN_TIMEOUT);
    CHECK(took < 10.0);
    close(never[0]);
    close(never[1]);
}

TEST(a_process_never_started_is_just_freed)
{
    double t0 = mpt_now();
    {
        MP_AUTO_PROCESS p = NULL;
        CHECK_OK(mp_process_new(quick, NULL, NULL, &p));
    }
    CHECK(mpt_now() - t0 < MP_SCOPE_JOIN_TIMEOUT);
}

static int square(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    int x = *(const int *)arg * *(const int *)arg;
    return mp_buf_append(out, &x, sizeof x);
}

TEST(futures_are_freed_before_their_pool)
{
    MP_AUTO_POOL pool = NULL;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    CHECK_OK(mp_pool_new(&o, &pool));
    for (int i = 1; i <= 3; i++) {
        /* A future per turn of the loop, freed at the end of each. */
        MP_AUTO_FUTURE f = mp_pool_apply_async(pool, square, &i, sizeof i);
        int r = 0;
        CHECK_OK(mp_future_get(f, &r, sizeof r, NULL, 30.0));
        CHECK_EQ(r, i * i);
    }
    /* One left pending when the scope ends: freed, then the pool goes. */
    int x = 5;
    MP_AUTO_FUTURE last = mp_pool_apply_async(pool, square, &x, sizeof x);
    CHECK_NOT_NULL(last);
}

TEST(a_queue_is_closed_for_everyone_and_freed)
{
    int before = open_fds();
    mp_queue *other = NULL;
    {
        MP_AUTO_QUEUE q = NULL;
        CHECK_OK(mp_queue_new(4096, &q));
        /* A second handle, as another process would hold. */
        CHECK_OK(mp_queue_attach(mp_queue_fd(q), &other));
        CHECK_OK(mp_queue_put(q, "left", 4, 1.0));
    }
    CHECK(mp_queue_closed(other));
    CHECK_ERR(mp_queue_put(other, "x", 1, 0), MP_ECLOSED);
    char buf[8];
    size_t len = 0;
    CHECK_OK(mp_queue_get(other, buf, sizeof buf, &len, 1.0)); /* what was in it drains */
    CHECK_EQ_U(len, 4);
    CHECK_ERR(mp_queue_get(other, buf, sizeof buf, &len, 0), MP_EOF);
    mp_queue_free(other);
    CHECK_EQ(open_fds(), before);
}

TEST(a_conn_is_closed_and_freed)
{
    int before = open_fds();
    mp_conn *b = NULL;
    {
        MP_AUTO_CONN a = NULL;
        CHECK_OK(mp_pipe(&a, &b, true));
        CHECK_OK(mp_conn_send(a, "hi", 2));
    }
    char buf[4];
    size_t len = 0;
    CHECK_OK(mp_conn_recv(b, buf, sizeof buf, &len, 1.0));
    CHECK_ERR(mp_conn_recv(b, buf, sizeof buf, &len, 1.0), MP_EOF);
    mp_conn_free(b);
    CHECK_EQ(open_fds(), before);
}

TEST(null_variables_are_left_alone)
{
    MP_AUTO_POOL pool = NULL;
    MP_AUTO_PROCESS p = NULL;
    MP_AUTO_FUTURE f = NULL;
    MP_AUTO_QUEUE q = NULL;
    MP_AUTO_CONN c = NULL;
    CHECK_NULL(pool);
    CHECK_NULL(p);
    CHECK_NULL(f);
    CHECK_NULL(q);
    CHECK_NULL(c);
}

MPT_MAIN()
