/* Tests of mp_wait_any: each kind of waitable, mixed sets, timeouts,
 * interruption by SIGINT and by a shutdown, and the degraded mode. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"
#include "testhooks.h"

#include <signal.h>

/* ---- helpers ------------------------------------------------------------ */

/* What a trigger child does once its gate opens. */
enum { T_EXIT, T_SEND, T_PUT, T_CLOSE, T_SET, T_WRITE, T_SHUTDOWN };

typedef struct trig {
    int what;
    gate g;
    mp_conn *conn;
    mp_queue *q;
    mp_event *ev;
    int fd;
} trig;

static int trigger_main(void *arg)
{
    trig *t = arg;
    if (gate_wait(&t->g, 60) < 0)
        return 99;
    int v = 7;
    switch (t->what) {
    case T_SEND:
        return mp_conn_send(t->conn, &v, sizeof v) == 0 ? 0 : 1;
    case T_PUT:
        return mp_queue_put(t->q, &v, sizeof v, 10) == 0 ? 0 : 1;
    case T_CLOSE:
        return mp_queue_close(t->q) == 0 ? 0 : 1;
    case T_SET:
        return mp_event_set(t->ev) == 0 ? 0 : 1;
    case T_WRITE:
        return write(t->fd, &v, 1) == 1 ? 0 : 1;
    case T_SHUTDOWN: {
        mp_event *e;
        return mp_shutdown_event(&e) == 0 && mp_event_set(e) == 0 ? 0 : 1;
    }
    default:
        return 0; /* T_EXIT */
    }
}

/* Starts a trigger child for t (gate made here). */
static mp_process *trigger_start(trig *t)
{
    gate_init(&t->g);
    return mpt_start(trigger_main, t);
}

/* A future finished by a thread once its gate opens. */
static void nop(void *o)
{
    (void)o;
}
static int no_cancel(void *o, mp_future *f)
{
    (void)o;
    (void)f;
    return MP_EBUSY;
}
static bool not_running(void *o, const mp_future *f)
{
    (void)o;
    (void)f;
    return false;
}
static int no_dispatch(void *o, void (*fn)(void *), void *a)
{
    (void)o;
    (void)fn;
    (void)a;
    return MP_ENOTSUP;
}
static const mp__future_ops test_ops = {nop, nop, no_cancel, not_running, nop, no_dispatch};

typedef struct finisher {
    mp_future *f;
    gate g;
} finisher;

static void *finisher_main(void *arg)
{
    finisher *fi = arg;
    if (gate_wait(&fi->g, 60) == 0)
        mp__future_finish(fi->f, 0, NULL, 0, 0, 0, NULL, -1);
    return NULL;
}

/* Waits for set, after opening g: the trigger acts while the wait sleeps
 * (it has a process start or a thread wake-up to go through first). */
static int open_and_wait(const gate *g, mp_waitable *set, size_t n, double *secs)
{
    double t0 = mpt_now();
    gate_open(g);
    int rc = mp_wait_any(set, n, 30.0);
    *secs = mpt_now() - t0;
    return rc;
}

/* The number of this process's threads. */
static int threads(void)
{
    int total, named;
    bool self;
    CHECK_OK(mp__threads_count("mproc-", &total, &named, &self));
    return total;
}

/* Spins until SIGINT's disposition is no longer the default: a wait in
 * another thread has begun and catches it. */
static void await_catching(void)
{
    double t0 = mpt_now();
    for (;;) {
        struct sigaction sa;
        CHECK_EQ(sigaction(SIGINT, NULL, &sa), 0);
        if (sa.sa_handler != SIG_DFL)
            return;
        CHECK(mpt_now() - t0 < 30);
        sched_yield();
    }
}

/* ---- bad input ---------------------------------------------------------- */

TEST(bad_input)
{
    mp_event *e;
    CHECK_OK(mp_event_new(&e));
    mp_waitable ok = mp_waitable_event(e);
    CHECK_ERR(mp_wait_any(NULL, 1, 0), MP_EINVAL);
    CHECK_ERR(mp_wait_any(&ok, 0, 0), MP_EINVAL);
    mp_waitable bad[] = {mp_waitable_event(NULL), mp_waitable_fd(-1),
                         mp_waitable_queue(NULL), mp_waitable_process(NULL),
                         mp_waitable_conn(NULL),  mp_waitable_future(NULL)};
    for (size_t i = 0; i < MP__ARRAY_SIZE(bad); i++) {
        mp_waitable set[] = {ok, bad[i]};
        CHECK_ERR(mp_wait_any(set, 2, 0), MP_EINVAL);
    }
    mp_waitable unknown = ok;
    unknown.kind = (mp_wait_kind)99;
    CHECK_ERR(mp_wait_any(&unknown, 1, 0), MP_EINVAL);
    /* A process never started, and a descriptor that is not open. */
    mp_process *p = mpt_new(trigger_main, NULL, NULL);
    mp_waitable np = mp_waitable_process(p);
    CHECK_ERR(mp_wait_any(&np, 1, 0), MP_ESTATE);
    mp_process_free(p);
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    close(fds[0]);
    close(fds[1]);
    mp_waitable closed = mp_waitable_fd(fds[0]);
    CHECK_ERR(mp_wait_any(&closed, 1, 0), MP_EBADF);
    /* A destroyed event is no event. */
    mp_event dead;
    CHECK_OK(mp_event_init(&dead));
    CHECK_OK(mp_event_destroy(&dead));
    mp_waitable de = mp_waitable_event(&dead);
    CHECK_ERR(mp_wait_any(&de, 1, 0.1), MP_EINVAL);
    mp_event_free(e);
}

TEST(too_many_words)
{
    enum { N = 128 };
    mp_event *e[N];
    mp_waitable set[N];
    for (int i = 0; i < N; i++) {
        CHECK_OK(mp_event_new(&e[i]));
        set[i] = mp_waitable_event(e[i]);
    }
    CHECK_ERR(mp_wait_any(set, N, 0.01), MP_E2BIG);
    CHECK_ERR(mp_wait_any(set, N - 1, 0.01), MP_ETIMEDOUT);
    for (int i = 0; i < N; i++)
        mp_event_free(e[i]);
}

/* ---- each kind, ready already -------------------------------------------- */

TEST(ready_at_once_for_each_kind)
{
    trig t = {.what = T_EXIT};
    mp_process *p = trigger_start(&t);
    gate_open(&t.g);
    CHECK_OK(mp_process_join(p, 30));
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    CHECK_OK(mp_conn_send(b, "x", 1));
    mp_queue *q, *qc;
    CHECK_OK(mp_queue_new(0, &q));
    CHECK_OK(mp_queue_new(0, &qc));
    CHECK_OK(mp_queue_put(q, "x", 1, 0));
    CHECK_OK(mp_queue_close(qc)); /* closed and empty: a get would not wait */
    mp_future *f = mp__future_new_failed(MP_ECANCELED, NULL);
    mp_event *e;
    CHECK_OK(mp_event_new(&e));
    CHECK_OK(mp_event_set(e));
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    CHECK_EQ(write(fds[1], "x", 1), 1);
    mp_waitable set[] = {mp_waitable_process(p), mp_waitable_conn(a),   mp_waitable_queue(q),
                         mp_waitable_queue(qc),  mp_waitable_future(f), mp_waitable_event(e),
                         mp_waitable_fd(fds[0])};
    size_t n = MP__ARRAY_SIZE(set);
    for (size_t i = 0; i < n; i++) {
        set[i].ready = false;
        CHECK_EQ(mp_wait_any(&set[i], 1, 0), 1);
        CHECK(set[i].ready);
    }
    CHECK_EQ(mp_wait_any(set, n, 0), (int)n);
    /* And not ready: a poll says so at once. */
    CHECK_OK(mp_event_clear(e));
    mp_waitable idle = mp_waitable_event(e);
    CHECK_ERR(mp_wait_any(&idle, 1, 0), MP_ETIMEDOUT);
    CHECK(!idle.ready);
    mp_process_free(p);
    mp_conn_free(a);
    mp_conn_free(b);
    mp_queue_free(q);
    mp_queue_free(qc);
    mp_future_free(f);
    mp_event_free(e);
    close(fds[0]);
    close(fds[1]);
    gate_close(&t.g);
}

TEST(a_buffered_message_is_ready)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    CHECK_OK(mp_conn_send(b, "one", 3));
    CHECK_OK(mp_conn_send(b, "two", 3));
    char buf[8];
    size_t len;
    /* Both arrive in one read; the second stays in the connection's
     * buffer, where poll() on the socket cannot see it. */
    CHECK_OK(mp_conn_recv(a, buf, sizeof buf, &len, 5));
    mp_waitable w = mp_waitable_conn(a);
    CHECK_EQ(mp_wait_any(&w, 1, 0), 1);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- each kind wakes the wait --------------------------------------------- */

/* Starts a trigger doing `what`, waits on set (which it makes ready), and
 * checks that the wait woke for it, long before the timeout. */
static void wake_case(trig *t, mp_waitable *set, size_t n, size_t which)
{
    mp_process *p = trigger_start(t);
    if (set[which].kind == MP_WAIT_PROCESS)
        set[which].obj.process = p;
    double secs;
    int rc = open_and_wait(&t->g, set, n, &secs);
    CHECK_GE(rc, 1);
    CHECK(set[which].ready);
    CHECK_LE((long long)secs, 10);
    CHECK_OK(mp_process_join(p, 30));
    CHECK_EQ(mpt_exitcode(p), 0);
    mp_process_free(p);
    gate_close(&t->g);
}

TEST(wakes_when_a_child_ends)
{
    trig t = {.what = T_EXIT};
    mp_waitable set[] = {mp_waitable_process(NULL)};
    wake_case(&t, set, 1, 0);
}

TEST(wakes_when_a_message_arrives)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    trig t = {.what = T_SEND, .conn = b};
    mp_waitable set[] = {mp_waitable_conn(a)};
    wake_case(&t, set, 1, 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

TEST(wakes_on_a_queue_put_and_close)
{
    mp_queue *q;
    CHECK_OK(mp_queue_new(0, &q));
    trig t = {.what = T_PUT, .q = q};
    mp_waitable set[] = {mp_waitable_queue(q)};
    wake_case(&t, set, 1, 0);
    char buf[8];
    size_t len;
    CHECK_OK(mp_queue_get(q, buf, sizeof buf, &len, 0));
    t.what = T_CLOSE;
    set[0].ready = false;
    wake_case(&t, set, 1, 0);
    CHECK(mp_queue_closed(q));
    mp_queue_free(q);
}

TEST(wakes_when_an_event_is_set)
{
    mp_event *e;
    CHECK_OK(mp_event_new(&e));
    trig t = {.what = T_SET, .ev = e};
    mp_waitable set[] = {mp_waitable_event(e)};
    wake_case(&t, set, 1, 0);
    mp_event_free(e);
}

TEST(wakes_when_the_shutdown_event_is_set)
{
    mp_event *stop;
    CHECK_OK(mp_shutdown_event(&stop));
    trig t = {.what = T_SHUTDOWN};
    mp_waitable set[] = {mp_waitable_event(stop)};
    wake_case(&t, set, 1, 0);
    CHECK(mp_shutdown_requested());
}

TEST(wakes_when_a_descriptor_is_readable)
{
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    trig t = {.what = T_WRITE, .fd = fds[1]};
    mp_waitable set[] = {mp_waitable_fd(fds[0])};
    wake_case(&t, set, 1, 0);
    close(fds[0]);
    close(fds[1]);
}

TEST(wakes_when_a_future_finishes)
{
    finisher fi = {mp__future_new(&test_ops, NULL), {0, 0}};
    CHECK(fi.f != NULL);
    gate_init(&fi.g);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, finisher_main, &fi), 0);
    mp_waitable set[] = {mp_waitable_future(fi.f)};
    double secs;
    CHECK_EQ(open_and_wait(&fi.g, set, 1, &secs), 1);
    CHECK(set[0].ready);
    CHECK_LE((long long)secs, 10);
    pthread_join(th, NULL);
    mp_future_free(fi.f);
    gate_close(&fi.g);
}

/* ---- mixed sets ----------------------------------------------------------- */

/* A set of every kind, none ready; returns what it made in the pointers. */
typedef struct mixed {
    trig t;
    mp_process *idle; /* runs until its gate opens */
    mp_conn *a, *b;
    mp_queue *q;
    mp_event *e;
    mp_future *f;
    int fds[2];
    mp_waitable set[6];
} mixed;

static void mixed_make(mixed *m)
{
    memset(m, 0, sizeof *m);
    m->t.what = T_EXIT;
    m->idle = trigger_start(&m->t);
    CHECK_OK(mp_pipe(&m->a, &m->b, true));
    CHECK_OK(mp_queue_new(0, &m->q));
    CHECK_OK(mp_event_new(&m->e));
    m->f = mp__future_new(&test_ops, NULL);
    CHECK(m->f != NULL);
    CHECK_EQ(pipe(m->fds), 0);
    m->set[0] = mp_waitable_process(m->idle);
    m->set[1] = mp_waitable_conn(m->a);
    m->set[2] = mp_waitable_queue(m->q);
    m->set[3] = mp_waitable_event(m->e);
    m->set[4] = mp_waitable_future(m->f);
    m->set[5] = mp_waitable_fd(m->fds[0]);
}

static void mixed_free(mixed *m)
{
    gate_open(&m->t.g);
    CHECK_OK(mp_process_join(m->idle, 30));
    mp_process_free(m->idle);
    gate_close(&m->t.g);
    mp_conn_free(m->a);
    mp_conn_free(m->b);
    mp_queue_free(m->q);
    mp_event_free(m->e);
    mp__future_finish(m->f, 0, NULL, 0, 0, 0, NULL, -1);
    mp_future_free(m->f);
    close(m->fds[0]);
    close(m->fds[1]);
}

/* In a mixed set, a trigger of kind `what` on set[which] wakes the wait
 * and only that one is ready; no helper thread is left behind. */
static void mixed_case(int what, size_t which)
{
    mixed m;
    mixed_make(&m);
    trig t = {.what = what, .conn = m.b, .q = m.q, .ev = m.e, .fd = m.fds[1]};
    mp_process *p = trigger_start(&t);
    double secs;
    CHECK_EQ(open_and_wait(&t.g, m.set, 6, &secs), 1);
    for (size_t i = 0; i < 6; i++)
        CHECK_EQ(m.set[i].ready, i == which);
    CHECK_LE((long long)secs, 10);
    CHECK_EQ(threads(), 1);
    CHECK_OK(mp_process_join(p, 30));
    mp_process_free(p);
    gate_close(&t.g);
    mixed_free(&m);
}

TEST(mixed_set_wakes_for_a_queue)
{
    mixed_case(T_PUT, 2);
}

TEST(mixed_set_wakes_for_an_event)
{
    mixed_case(T_SET, 3);
}

TEST(mixed_set_wakes_for_a_connection)
{
    mixed_case(T_SEND, 1);
}

TEST(mixed_set_wakes_for_a_descriptor)
{
    mixed_case(T_WRITE, 5);
}

TEST(mixed_set_wakes_for_a_future_and_a_child)
{
    mixed m;
    mixed_make(&m);
    finisher fi = {m.f, {0, 0}};
    gate_init(&fi.g);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, finisher_main, &fi), 0);
    double secs;
    CHECK_EQ(open_and_wait(&fi.g, m.set, 6, &secs), 1);
    CHECK(m.set[4].ready);
    CHECK_LE((long long)secs, 10);
    pthread_join(th, NULL);
    gate_close(&fi.g);
    /* The child ends next: it is reaped by the wait. */
    m.set[4] = mp_waitable_event(m.e); /* the finished future aside */
    CHECK_EQ(open_and_wait(&m.t.g, m.set, 6, &secs), 1);
    CHECK(m.set[0].ready);
    CHECK_EQ(mpt_exitcode(m.idle), 0); /* reaped: the code is there */
    gate_init(&m.t.g);                 /* mixed_free opens it again */
    mixed_free(&m);
}

/* ---- timeouts -------------------------------------------------------------- */

static void timeout_case(mp_waitable *set, size_t n)
{
    double t0 = mpt_now();
    CHECK_ERR(mp_wait_any(set, n, 0.2), MP_ETIMEDOUT);
    double secs = mpt_now() - t0;
    CHECK(secs >= 0.2);
    CHECK(secs < 10);
    for (size_t i = 0; i < n; i++)
        CHECK(!set[i].ready);
}

TEST(timeouts_for_words_descriptors_and_both)
{
    mixed m;
    mixed_make(&m);
    timeout_case(m.set + 2, 3); /* queue, event, future: futex_waitv */
    timeout_case(m.set, 2);     /* child, connection: poll */
    timeout_case(m.set, 6);     /* both */
    CHECK_EQ(threads(), 1);
    mixed_free(&m);
}

TEST(degraded_mode_still_wakes_and_times_out)
{
    mp__wait_degraded = true;
    mixed_case(T_SET, 3);
    mixed_case(T_WRITE, 5);
    mixed m;
    mixed_make(&m);
    timeout_case(m.set, 6);
    mixed_free(&m);
}

/* ---- interruption ----------------------------------------------------------- */

typedef struct waiter_thread {
    mp_waitable *set;
    size_t n;
    int rc;
} waiter_thread;

static void *waiter_main(void *arg)
{
    waiter_thread *w = arg;
    w->rc = mp_wait_any(w->set, w->n, 30.0);
    return NULL;
}

/* A wait in another thread on m's set (or part of it) is interrupted by
 * interrupt() once it has begun; it returns MP_ECANCELED, not before. */
static void interrupt_case(size_t first, size_t n, void (*interrupt)(void))
{
    mixed m;
    mixed_make(&m);
    waiter_thread w = {m.set + first, n, 12345};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, waiter_main, &w), 0);
    await_catching();
    double t0 = mpt_now();
    interrupt();
    pthread_join(th, NULL);
    CHECK_ERR(w.rc, MP_ECANCELED);
    CHECK(mpt_now() - t0 < 10);
    /* The handler is gone with the wait. */
    struct sigaction sa;
    CHECK_EQ(sigaction(SIGINT, NULL, &sa), 0);
    CHECK(sa.sa_handler == SIG_DFL);
    mixed_free(&m);
}

static void send_sigint(void)
{
    CHECK_EQ(kill(getpid(), SIGINT), 0);
}

static void shut_down(void)
{
    /* The set's child does not watch the event: it is terminated. */
    CHECK_EQ(mp_shutdown(0), 1);
}

TEST(sigint_interrupts_a_wait_on_words)
{
    interrupt_case(2, 3, send_sigint);
}

TEST(sigint_interrupts_a_wait_on_descriptors)
{
    interrupt_case(0, 2, send_sigint);
}

TEST(sigint_interrupts_a_mixed_wait)
{
    interrupt_case(0, 6, send_sigint);
}

static void raise_sigint(void)
{
    CHECK_EQ(raise(SIGINT), 0);
}

/* A SIGINT that comes the instant the handler is installed, before the
 * wait has done anything else, still interrupts it: the wait reads the
 * handler's generation before installing it. */
TEST(sigint_the_instant_the_handler_is_in)
{
    mp_event *e;
    CHECK_OK(mp_event_new(&e));
    mp_waitable set[] = {mp_waitable_event(e)};
    mp__waiter_fault = raise_sigint;
    double t0 = mpt_now();
    int rc = mp_wait_any(set, 1, 20.0);
    mp__waiter_fault = NULL;
    CHECK_ERR(rc, MP_ECANCELED);
    CHECK(mpt_now() - t0 < 10);
    struct sigaction sa;
    CHECK_EQ(sigaction(SIGINT, NULL, &sa), 0);
    CHECK(sa.sa_handler == SIG_DFL);
    mp_event_free(e);
}

TEST(a_shutdown_cancels_a_wait)
{
    /* A future and a descriptor: not the child nor the queue, which the
     * shutdown makes ready (it ends the one and closes the other). */
    interrupt_case(4, 2, shut_down);
}

MPT_MAIN()
