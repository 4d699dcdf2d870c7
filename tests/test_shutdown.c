/* Tests of the shutdown: the program-wide event, mp_shutdown's steps
 * (close, wait, SIGTERM, SIGKILL, reap, unlink), registered closers, and
 * SIGINT / SIGTERM handling under mp_signals_install. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <signal.h>
#include <sys/stat.h>

/* ---- helpers ------------------------------------------------------------ */

/* Waits on the shutdown event; 0 once it is set, 1 if it never came. */
static int await_event(void *arg)
{
    (void)arg;
    mp_event *stop;
    if (mp_shutdown_event(&stop) < 0)
        return 2;
    return mp_event_wait(stop, 30.0) == 0 ? 0 : 1;
}

/* Ignores the event: waits on its gate, then says ready on another one
 * (after ignoring SIGTERM when asked to). */
typedef struct deaf {
    gate wait, ready;
    bool ignore_term;
} deaf;

static int deaf_main(void *arg)
{
    deaf *d = arg;
    if (d->ignore_term)
        signal(SIGTERM, SIG_IGN);
    gate_open(&d->ready);
    return gate_wait(&d->wait, 60) == 0 ? 0 : 1;
}

/* A forkserver child that says it runs (on its inherited descriptor 0),
 * then blocks until a signal ends it. */
static int served_main(void *arg)
{
    (void)arg;
    char c = 1;
    if (write(mp_process_inherited_fd(0), &c, 1) != 1)
        return 1;
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    return read(fds[0], &c, 1) == 1 ? 0 : 1; /* it holds the writer: never */
}

static mp_process *start_deaf(deaf *d, const char *name, bool ignore_term)
{
    gate_init(&d->wait);
    gate_init(&d->ready);
    d->ignore_term = ignore_term;
    mp_process *p = mpt_new(deaf_main, d, name);
    CHECK_OK(mp_process_start(p));
    CHECK_EQ(gate_wait(&d->ready, 30), 0);
    return p;
}

static void deaf_close(deaf *d)
{
    gate_close(&d->wait);
    gate_close(&d->ready);
}

static bool shm_exists(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/mproc-%s", name);
    struct stat st;
    return stat(path, &st) == 0;
}

/* Reads what is in fd now (non-blocking) into buf, NUL-terminated, after
 * what is there; returns the new length. */
static size_t slurp(int fd, char *buf, size_t len, size_t cap)
{
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

/* Reads the log pipe fd into buf until it holds needle (at most 30 s). */
static size_t read_until(int fd, char *buf, size_t len, size_t cap, const char *needle)
{
    double t0 = mpt_now();
    while (!strstr(buf, needle)) {
        CHECK(mpt_now() - t0 < 30);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 1000);
        len = slurp(fd, buf, len, cap);
    }
    return len;
}

/* ---- the event ------------------------------------------------------------ */

TEST(bad_input)
{
    CHECK_ERR(mp_shutdown_event(NULL), MP_EINVAL);
    CHECK_ERR(mp_shutdown_report_get(NULL), MP_EINVAL);
    mp_shutdown_report r;
    CHECK_ERR(mp_shutdown_report_get(&r), MP_ESTATE);
    mp_shutdown_opts o = MP_SHUTDOWN_OPTS_INIT;
    o.grace = -1;
    CHECK_ERR(mp_shutdown_ex(&o, NULL), MP_EINVAL);
    o.grace = 0.0 / 0.0;
    CHECK_ERR(mp_shutdown_ex(&o, NULL), MP_EINVAL);
    CHECK(!mp_shutdown_requested());
    mp_signals_opts so = MP_SIGNALS_OPTS_INIT;
    so.shutdown.grace = -1;
    CHECK_ERR(mp_signals_install(&so), MP_EINVAL);
    CHECK_ERR(mp_signals_uninstall(), MP_ESTATE);
}

TEST(the_event_reaches_every_kind_of_child)
{
    mp_start_method methods[] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};
    mp_process *p[3];
    for (int i = 0; i < 3; i++) {
        mp_process_opts o = MP_PROCESS_OPTS_INIT;
        o.start_method = methods[i];
        p[i] = mpt_new_opts(await_event, NULL, &o);
        CHECK_OK(mp_process_start(p[i]));
    }
    mp_shutdown_report r;
    CHECK_EQ(mp_shutdown_ex(NULL, &r), 0);
    CHECK(mp_shutdown_requested());
    CHECK_EQ(r.children, 3);
    CHECK_EQ(r.exited, 3);
    CHECK_EQ(r.terminated + r.killed + r.lost, 0);
    CHECK_EQ(r.signo, 0);
    CHECK(!r.forced);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(mpt_exitcode(p[i]), 0); /* each saw the event: no timeout */
        mp_process_free(p[i]);
    }
    CHECK_EQ(mp__forkserver_pid(), 0); /* stopped */
    CHECK_CONTAINS(r.text, "3 ended by themselves");
    mp_shutdown_report again;
    CHECK_OK(mp_shutdown_report_get(&again));
    CHECK_EQ(again.exited, 3);
}

TEST(starts_are_refused_until_the_event_is_cleared)
{
    CHECK_EQ(mp_shutdown(1.0), 0);
    mp_process *p = mpt_new(await_event, NULL, NULL);
    CHECK_ERR(mp_process_start(p), MP_ESHUTDOWN);
    mp_event *stop;
    CHECK_OK(mp_shutdown_event(&stop));
    CHECK_OK(mp_event_clear(stop));
    CHECK(!mp_shutdown_requested());
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_event_set(stop));
    CHECK_EQ(mpt_finish(p), 0);
}

/* ---- the steps ------------------------------------------------------------ */

TEST(escalates_from_sigterm_to_sigkill)
{
    deaf polite, stubborn;
    mp_process *a = start_deaf(&polite, "polite", false);
    mp_process *b = start_deaf(&stubborn, "stubborn", true);
    mp_shutdown_opts o = {0.2, 0.3};
    mp_shutdown_report r;
    double t0 = mpt_now();
    CHECK_EQ(mp_shutdown_ex(&o, &r), 2);
    double secs = mpt_now() - t0;
    CHECK(secs >= 0.5); /* the timeout, then the grace period */
    CHECK(secs < 20);
    CHECK_EQ(r.children, 2);
    CHECK_EQ(r.exited, 0);
    CHECK_EQ(r.terminated, 1);
    CHECK_EQ(r.killed, 1);
    CHECK_EQ(r.lost, 0);
    CHECK_CONTAINS(r.text, "terminating 'polite'");
    CHECK_CONTAINS(r.text, "killing 'stubborn'");
    CHECK_EQ(mpt_exitcode(a), -SIGTERM);
    CHECK_EQ(mpt_exitcode(b), -SIGKILL);
    CHECK(!mp_process_is_alive(a) && !mp_process_is_alive(b));
    mp_process_free(a);
    mp_process_free(b);
    deaf_close(&polite);
    deaf_close(&stubborn);
}

TEST(reaps_children_freed_while_running_and_forkserver_children)
{
    deaf d;
    mp_process *freed = start_deaf(&d, "freed", false);
    pid_t pid = mp_process_pid(freed);
    mp_process_free(freed); /* not a daemon: left running */
    gate ready;
    gate_init(&ready);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_FORKSERVER;
    o.name = "served";
    o.fds = &ready.w;
    o.nfds = 1;
    mp_process *fs = mpt_new_opts(served_main, NULL, &o);
    CHECK_OK(mp_process_start(fs));
    CHECK_EQ(gate_wait(&ready, 30), 0);
    mp_shutdown_opts so = {0.1, 5.0};
    mp_shutdown_report r;
    CHECK_EQ(mp_shutdown_ex(&so, &r), 2);
    CHECK_EQ(r.terminated, 2);
    CHECK_EQ(mpt_wait_gone(pid, 5), 1);
    CHECK_EQ(mpt_exitcode(fs), -SIGTERM);
    mp_process_free(fs);
    deaf_close(&d);
    gate_close(&ready);
}

static int consume_until_eof(void *arg)
{
    mp_queue *q = arg;
    for (;;) {
        char buf[16];
        size_t len;
        int rc = mp_queue_get(q, buf, sizeof buf, &len, 30.0);
        if (rc == MP_EOF)
            return 0;
        if (rc < 0)
            return 1;
    }
}

TEST(closes_the_queues)
{
    mp_queue *q;
    CHECK_OK(mp_queue_new(0, &q));
    mp_process *c = mpt_start(consume_until_eof, q);
    CHECK_OK(mp_queue_put(q, "x", 1, 1.0));
    mp_shutdown_report r;
    CHECK_EQ(mp_shutdown_ex(NULL, &r), 0);
    CHECK_EQ(r.exited, 1);
    CHECK_GE(r.closed, 1);
    CHECK_CONTAINS(r.text, "closed 1 queue");
    CHECK(mp_queue_closed(q));
    CHECK_ERR(mp_queue_put(q, "y", 1, 0), MP_ECLOSED);
    CHECK_EQ(mpt_exitcode(c), 0); /* it drained, then saw the end */
    mp_process_free(c);
    mp_queue_free(q);
}

TEST(unlinks_every_named_segment)
{
    char na[64], nb[64];
    mpt_name(na, sizeof na, "a");
    mpt_name(nb, sizeof nb, "b");
    mp_shm *a, *b;
    CHECK_OK(mp_shm_create(na, 4096, &a));
    CHECK_OK(mp_shm_create(nb, 4096, &b));
    CHECK(shm_exists(na) && shm_exists(nb));
    mp_shutdown_report r;
    CHECK_EQ(mp_shutdown_ex(NULL, &r), 0);
    CHECK_EQ(r.unlinked, 2);
    CHECK(!shm_exists(na));
    CHECK(!shm_exists(nb));
    /* The mappings stay valid; the names are gone. */
    memset(mp_shm_addr(a), 1, 4096);
    CHECK_ERR(mp_shm_unlink(a), MP_ENOENT);
    mp_shm_free(a);
    mp_shm_free(b);
}

/* A closer that counts its calls. */
static int closes, terminates, reaps;
static int64_t reap_left_ns; /* how long the last reap was given */
static void count_close(void *obj)
{
    (void)obj;
    closes++;
}
static void count_terminate(void *obj)
{
    (void)obj;
    terminates++;
}
static void count_reap(void *obj, int64_t deadline)
{
    (void)obj;
    reaps++;
    reap_left_ns = mp__remaining_ns(deadline);
}
static const mp__closer_ops counting = {
    .kind = "thing", .close = count_close, .terminate = count_terminate, .reap = count_reap};

static int shutdown_in_child(void *arg)
{
    (void)arg;
    /* The parent's registrations are not this process's. */
    return mp_shutdown(0) == 0 && closes == 0 ? 0 : 1;
}

TEST(registered_objects_are_closed_then_terminated)
{
    mp__closer *c, *gone;
    CHECK_OK(mp__shutdown_register(&counting, NULL, &c));
    CHECK_OK(mp__shutdown_register(&counting, NULL, &gone));
    mp__shutdown_unregister(gone);
    mp__shutdown_unregister(NULL);
    CHECK_EQ(mpt_finish(mpt_start(shutdown_in_child, NULL)), 0);
    /* Without a child still running, no terminate. */
    CHECK_EQ(mp_shutdown(0), 0);
    CHECK_EQ(closes, 1);
    CHECK_EQ(terminates, 0);
    /* Reaped after the children, with the grace period (1 s by default)
     * to end what the object runs itself. */
    CHECK_EQ(reaps, 1);
    CHECK(reap_left_ns > 500000000 && reap_left_ns <= 1000000000);
    mp_event *stop;
    CHECK_OK(mp_shutdown_event(&stop));
    CHECK_OK(mp_event_clear(stop));
    deaf d;
    mp_process *p = start_deaf(&d, "deaf", false);
    mp_shutdown_report r;
    CHECK_EQ(mp_shutdown_ex(&(mp_shutdown_opts){0.05, 5.0}, &r), 1);
    CHECK_EQ(closes, 2);
    CHECK_EQ(terminates, 1);
    CHECK_EQ(reaps, 2);
    CHECK_CONTAINS(r.text, "closed 1 thing");
    CHECK_CONTAINS(r.text, "terminating 1 thing");
    mp__shutdown_unregister(c);
    mp_process_free(p);
    deaf_close(&d);
}

typedef struct caller {
    int rc;
    mp_shutdown_report r;
} caller;

static void *call_shutdown(void *arg)
{
    caller *c = arg;
    c->rc = mp_shutdown_ex(&(mp_shutdown_opts){0.1, 0.1}, &c->r);
    return NULL;
}

TEST(a_call_during_a_shutdown_waits_and_shares_its_result)
{
    deaf d;
    mp_process *p = start_deaf(&d, "stubborn", true);
    caller first = {0}, second = {0};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, call_shutdown, &first), 0);
    double t0 = mpt_now();
    while (!mp__shutdown_running()) {
        CHECK(mpt_now() - t0 < 30);
        sched_yield();
    }
    call_shutdown(&second);
    pthread_join(t, NULL);
    CHECK_EQ(first.rc, 1);
    CHECK_EQ(second.rc, 1);
    CHECK_EQ(second.r.killed, 1);
    CHECK_EQ(second.r.children, first.r.children);
    CHECK_EQ(mpt_exitcode(p), -SIGKILL);
    mp_process_free(p);
    deaf_close(&d);
}

/* ---- signals ---------------------------------------------------------------- */

static bool sigint_ignored(void)
{
    struct sigaction sa;
    return sigaction(SIGINT, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN;
}

static int report_sigint(void *arg)
{
    (void)arg;
    return sigint_ignored() ? 0 : 1;
}

/* Under mp_signals_install, children of every start method ignore SIGINT;
 * after uninstall they keep the default. */
TEST(children_ignore_sigint_while_the_parent_coordinates)
{
    mp_signals_opts so = MP_SIGNALS_OPTS_INIT;
    so.exit = false;
    CHECK_OK(mp_signals_install(&so));
    CHECK_ERR(mp_signals_install(&so), MP_EBUSY);
    struct sigaction sa;
    CHECK_EQ(sigaction(SIGINT, NULL, &sa), 0);
    CHECK(sa.sa_handler != SIG_DFL);
    mp_start_method methods[] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 3; i++) {
            mp_process_opts o = MP_PROCESS_OPTS_INIT;
            o.start_method = methods[i];
            mp_process *p = mpt_new_opts(report_sigint, NULL, &o);
            CHECK_OK(mp_process_start(p));
            /* 0: ignored (installed); 1: the default (after uninstall). */
            CHECK_EQ(mpt_finish(p), pass);
        }
        if (pass == 0) {
            CHECK_OK(mp_signals_uninstall());
            CHECK_ERR(mp_signals_uninstall(), MP_ESTATE);
            CHECK_EQ(sigaction(SIGINT, NULL, &sa), 0);
            CHECK(sa.sa_handler == SIG_DFL);
        }
    }
}

TEST(a_forked_child_does_not_inherit_the_handling)
{
    CHECK_OK(mp_signals_install(NULL));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct sigaction i, t;
        sigaction(SIGINT, NULL, &i);
        sigaction(SIGTERM, NULL, &t);
        _exit(i.sa_handler == SIG_DFL && t.sa_handler == SIG_DFL ? 0 : 1);
    }
    reap_ok(pid);
    CHECK_OK(mp_signals_uninstall());
}

TEST(a_signal_shutdown_with_exit_false_leaves_a_report)
{
    mp_signals_opts so = MP_SIGNALS_OPTS_INIT;
    so.exit = false;
    CHECK_OK(mp_signals_install(&so));
    mp_process *p = mpt_start(await_event, NULL);
    CHECK_EQ(raise(SIGINT), 0); /* the handler runs before raise returns */
    mp_shutdown_report r;
    CHECK_EQ(mp_shutdown_ex(NULL, &r), 0); /* runs it, or waits for it */
    CHECK_EQ(r.signo, SIGINT);
    CHECK_EQ(r.exited, 1);
    CHECK_EQ(mpt_exitcode(p), 0);
    CHECK(mp_shutdown_requested());
    CHECK_OK(mp_signals_uninstall());
    struct sigaction sa;
    CHECK_EQ(sigaction(SIGINT, NULL, &sa), 0);
    CHECK(sa.sa_handler == SIG_DFL);
    mp_process_free(p);
}

/* ---- signals in a program of its own ------------------------------------------ */

/* A worker that ignores both SIGTERM and the event, and says so. */
static int stuck_worker(void *arg)
{
    gate *ready = arg;
    signal(SIGTERM, SIG_IGN);
    gate_open(ready);
    int fds[2];
    char c;
    if (pipe(fds) != 0)
        return 1;
    return read(fds[0], &c, 1) == 1 ? 0 : 1; /* it holds the writer: never */
}

static int good_worker(void *arg)
{
    gate_open(arg);
    return await_event(NULL);
}

typedef struct program {
    pid_t pid;
    int log;       /* the read end of its log */
    pid_t kids[2]; /* good, stuck (0 without) */
    char text[65536];
    size_t len;
} program;

/* Runs in a plain fork of the test: a program that installs the handling
 * with o, starts its workers, tells the test their pids, and waits for
 * signals. */
/* A closer that never returns: a shutdown that cannot finish. */
static void close_never(void *obj)
{
    (void)obj;
    int fds[2];
    char c;
    mp_log(MP_LOG_WARNING, "test: this close never returns");
    if (pipe(fds) == 0)
        (void)read(fds[0], &c, 1);
}
static const mp__closer_ops never = {.kind = "never", .close = close_never};

enum { P_GOOD, P_STUCK, P_BLOCKED }; /* what a program holds besides a good worker */

static _Noreturn void program_main(int logw, int tell, const mp_signals_opts *o, int mode)
{
    bool stuck = mode == P_STUCK;
    mp__closer *c;
    if (mode == P_BLOCKED && mp__shutdown_register(&never, NULL, &c) < 0)
        _exit(89);
    mp_log_set_fd(logw);
    mp_log_set_level(MP_LOG_INFO);
    if (mp_signals_install(o) < 0)
        _exit(90);
    gate ready;
    gate_init(&ready);
    pid_t kids[2] = {0, 0};
    mp_process *g = mpt_new(good_worker, &ready, "good");
    mp_process *s = mpt_new(stuck_worker, &ready, "stuck");
    if (mp_process_start(g) < 0 || (stuck && mp_process_start(s) < 0))
        _exit(91);
    for (int i = 0; i < 1 + stuck; i++)
        if (gate_wait(&ready, 30) < 0)
            _exit(92);
    kids[0] = mp_process_pid(g);
    kids[1] = stuck ? mp_process_pid(s) : 0;
    if (write(tell, kids, sizeof kids) != (ssize_t)sizeof kids)
        _exit(93);
    for (;;)
        pause(); /* until a signal ends the program */
}

static void program_start(program *pg, const mp_signals_opts *o, int mode)
{
    int logp[2], tell[2];
    CHECK_EQ(pipe2(logp, O_CLOEXEC | O_NONBLOCK), 0);
    CHECK_EQ(pipe2(tell, O_CLOEXEC), 0);
    pg->pid = fork();
    CHECK(pg->pid >= 0);
    if (pg->pid == 0) {
        close(logp[0]);
        close(tell[0]);
        program_main(logp[1], tell[1], o, mode);
    }
    close(logp[1]);
    close(tell[1]);
    pg->log = logp[0];
    pg->len = 0;
    pg->text[0] = '\0';
    struct pollfd p = {.fd = tell[0], .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 30000), 1);
    CHECK_EQ(read(tell[0], pg->kids, sizeof pg->kids), (long long)sizeof pg->kids);
    close(tell[0]);
}

/* Waits for the program to end; returns the signal that ended it (0 if
 * it exited), and reads the rest of its log. */
static int program_end(program *pg)
{
    int st;
    CHECK_EQ(waitpid(pg->pid, &st, 0), pg->pid);
    pg->len = slurp(pg->log, pg->text, pg->len, sizeof pg->text);
    close(pg->log);
    for (int i = 0; i < 2; i++)
        if (pg->kids[i])
            CHECK_EQ(mpt_wait_gone(pg->kids[i], 10), 1);
    if (WIFEXITED(st))
        fprintf(stderr, "program exited with %d\n%s", WEXITSTATUS(st), pg->text);
    return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

TEST(sigterm_shuts_down_and_the_program_ends_by_it)
{
    program pg;
    program_start(&pg, NULL, P_GOOD);
    CHECK_EQ(kill(pg.pid, SIGTERM), 0);
    CHECK_EQ(program_end(&pg), SIGTERM);
    CHECK_CONTAINS(pg.text, "SIGTERM received");
    CHECK_CONTAINS(pg.text, "begun on SIGTERM");
    CHECK_CONTAINS(pg.text, "1 ended by themselves, 0 after SIGTERM, 0 after SIGKILL");
    CHECK_EQ(count(pg.text, "was at:"), 0); /* stacks are for SIGINT */
}

TEST(sigint_logs_every_stack_and_a_second_one_forces_the_shutdown)
{
    mp_signals_opts so = MP_SIGNALS_OPTS_INIT;
    so.shutdown.timeout = 60; /* only the second SIGINT can end it soon */
    program pg;
    program_start(&pg, &so, P_STUCK);
    CHECK_EQ(kill(pg.pid, SIGINT), 0);
    pg.len = read_until(pg.log, pg.text, pg.len, sizeof pg.text, "waiting up to 60.0 s");
    double t0 = mpt_now();
    CHECK_EQ(kill(pg.pid, SIGINT), 0);
    CHECK_EQ(program_end(&pg), SIGINT);
    CHECK(mpt_now() - t0 < 20);
    CHECK_CONTAINS(pg.text, "the main process");
    CHECK_CONTAINS(pg.text, "asked 2 children for their stacks");
    CHECK_EQ(count(pg.text, "asked for its stack"), 2);
    CHECK_CONTAINS(pg.text, "process 'stuck'");
    CHECK_CONTAINS(pg.text, "stuck_worker"); /* named, as in a crash report */
    CHECK_CONTAINS(pg.text, "killing 'stuck'");
    CHECK_CONTAINS(pg.text, "(forced)");
}

TEST(after_a_shutdown_with_exit_false_a_second_sigint_ends_the_program)
{
    mp_signals_opts so = MP_SIGNALS_OPTS_INIT;
    so.exit = false;
    program pg;
    program_start(&pg, &so, P_GOOD);
    CHECK_EQ(kill(pg.pid, SIGINT), 0);
    pg.len = read_until(pg.log, pg.text, pg.len, sizeof pg.text, "shutdown: done in");
    CHECK_EQ(kill(pg.pid, 0), 0); /* still running */
    CHECK_EQ(kill(pg.pid, SIGINT), 0);
    CHECK_EQ(program_end(&pg), SIGINT);
}

TEST(a_third_signal_ends_a_program_whose_shutdown_cannot_finish)
{
    program pg;
    program_start(&pg, NULL, P_BLOCKED);
    CHECK_EQ(kill(pg.pid, SIGINT), 0);
    pg.len = read_until(pg.log, pg.text, pg.len, sizeof pg.text, "this close never returns");
    /* Two different signals, so that neither merges into the other while
     * pending: the second forces (no effect on a stuck step), the third
     * ends the program by its default action. */
    CHECK_EQ(kill(pg.pid, SIGINT), 0);
    CHECK_EQ(kill(pg.pid, SIGTERM), 0);
    CHECK_EQ(program_end(&pg), SIGTERM);
}

MPT_MAIN()
