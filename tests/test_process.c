/* Tests of child processes: start, join, exit codes, signals, crash
 * reports, start methods, reaping, and death with the parent. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <pthread.h>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>

/* ---- helpers ------------------------------------------------------------ */

static int ret_arg(void *arg)
{
    return *(int *)arg;
}

/* ---- the basics --------------------------------------------------------- */

TEST(start_join_exitcode)
{
    int v = 42;
    mp_process *p = mpt_new(ret_arg, &v, NULL);
    CHECK_EQ(mp_process_pid(p), 0);
    int code = 12345;
    CHECK_ERR(mp_process_exitcode(p, &code), MP_ESTATE);
    CHECK_EQ(code, 12345); /* left alone until there is a code */
    CHECK_OK(mp_process_start(p));
    CHECK(mp_process_pid(p) > 0);
    CHECK_OK(mp_process_join(p, 10.0));
    CHECK_EQ(mpt_exitcode(p), 42);
    CHECK(!mp_process_is_alive(p));
    /* process.h: a child that exits with a status other than 0 has a
     * report that says so. */
    CHECK_CONTAINS(mp_process_report(p), "status 42");
    CHECK_EQ(mpt_error(p), 0);
    /* A second join returns at once; the child was reaped exactly once. */
    CHECK_OK(mp_process_join(p, 0));
    CHECK_EQ(waitpid(mp_process_pid(p), NULL, WNOHANG), -1);
    CHECK_EQ(errno, ECHILD);
    mp_process_free(p);
}

TEST(default_names_count_like_python)
{
    int v = 0;
    mp_process *a = mpt_new(ret_arg, &v, NULL);
    mp_process *b = mpt_new(ret_arg, &v, NULL);
    mp_process *c = mpt_new(ret_arg, &v, "worker");
    CHECK_CONTAINS(mp_process_name(a), "Process-");
    CHECK(strcmp(mp_process_name(a), mp_process_name(b)) != 0);
    CHECK_STREQ(mp_process_name(c), "worker");
    CHECK_STREQ(mp_process_current_name(), "MainProcess");
    mp_process_free(a);
    mp_process_free(b);
    mp_process_free(c);
}

static int name_child(void *arg)
{
    (void)arg;
    return strcmp(mp_process_current_name(), "named-kid") == 0 ? 7 : 1;
}

TEST(child_knows_its_name)
{
    mp_process *p = mpt_new(name_child, NULL, "named-kid");
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_join(p, 10.0));
    CHECK_EQ(mpt_exitcode(p), 7);
    mp_process_free(p);
}

TEST(bad_input)
{
    int v = 0;
    mp_process *p = mpt_not_null();
    CHECK_ERR(mp_process_new(NULL, &v, NULL, &p), MP_EINVAL);
    CHECK(p == NULL);
    CHECK_ERR(mp_process_new(ret_arg, &v, NULL, NULL), MP_EINVAL);
    CHECK_ERR(mp_process_new_opts(ret_arg, &v, NULL, NULL), MP_EINVAL);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = (mp_start_method)99;
    p = mpt_not_null();
    CHECK_ERR(mp_process_new_opts(ret_arg, &v, &o, &p), MP_EINVAL);
    CHECK(p == NULL);
    o = (mp_process_opts)MP_PROCESS_OPTS_INIT;
    o.nfds = MP__MAX_FDS + 1;
    int fds[MP__MAX_FDS + 1] = {0};
    o.fds = fds;
    p = mpt_not_null();
    CHECK_ERR(mp_process_new_opts(ret_arg, &v, &o, &p), MP_EINVAL);
    CHECK(p == NULL);
    o = (mp_process_opts)MP_PROCESS_OPTS_INIT;
    o.nfds = 1; /* and fds NULL */
    CHECK_ERR(mp_process_new_opts(ret_arg, &v, &o, &p), MP_EINVAL);
    o = (mp_process_opts)MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_SPAWN;
    o.arg_size = MP__MAX_ARG + 1;
    p = mpt_not_null();
    CHECK_ERR(mp_process_new_opts(ret_arg, &v, &o, &p), MP_EINVAL);
    CHECK(p == NULL);
    o.arg_size = sizeof v; /* bytes to copy, from nowhere */
    CHECK_ERR(mp_process_new_opts(ret_arg, NULL, &o, &p), MP_EINVAL);
    CHECK(p == NULL);
    /* With fork, arg is passed as it is: NULL is fine. */
    CHECK_OK(mp_process_new_opts(ret_arg, NULL, NULL, &p));
    int code, err;
    CHECK_ERR(mp_process_exitcode(NULL, &code), MP_EINVAL);
    CHECK_ERR(mp_process_exitcode(p, NULL), MP_EINVAL);
    CHECK_ERR(mp_process_error(NULL, &err), MP_EINVAL);
    CHECK_ERR(mp_process_error(p, NULL), MP_EINVAL);
    CHECK_ERR(mp_process_error(p, &err), MP_ESTATE);
    mp_process_free(p);

    CHECK_ERR(mp_process_start(NULL), MP_EINVAL);
    CHECK_ERR(mp_process_join(NULL, 0), MP_EINVAL);
    CHECK_ERR(mp_process_signal(NULL, SIGTERM), MP_EINVAL);
    CHECK(!mp_process_is_alive(NULL));
    mp_process_free(NULL);

    p = mpt_new(ret_arg, &v, NULL);
    CHECK_ERR(mp_process_join(p, 0), MP_ESTATE);
    CHECK_ERR(mp_process_terminate(p), MP_ESTATE);
    CHECK_ERR(mp_process_signal(p, 12345), MP_EINVAL);
    CHECK_OK(mp_process_start(p));
    CHECK_ERR(mp_process_start(p), MP_ESTATE);
    CHECK_OK(mp_process_join(p, 10.0));
    CHECK_EQ(mpt_exitcode(p), 0);
    /* Signalling an ended child is not an error, and sends nothing. */
    CHECK_OK(mp_process_terminate(p));
    mp_process_free(p);
}

static int exit_directly(void *arg)
{
    _exit(*(int *)arg);
}

TEST(exit_status_and_errors)
{
    int five = 5;
    mp_process *p = mpt_new(exit_directly, &five, NULL);
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_join(p, 10.0));
    CHECK_EQ(mpt_exitcode(p), 5);
    CHECK_CONTAINS(mp_process_report(p), "exited with status 5");
    CHECK_EQ(mpt_error(p), 0);
    mp_process_free(p);

    int err = MP_ETIMEDOUT;
    p = mpt_new(ret_arg, &err, "erring");
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_join(p, 10.0));
    CHECK_EQ(mpt_exitcode(p), 1);
    CHECK_ERR(mpt_error(p), MP_ETIMEDOUT);
    CHECK_CONTAINS(mp_process_report(p), "MP_ETIMEDOUT");
    CHECK_CONTAINS(mp_process_report(p), "'erring'");
    mp_process_free(p);

    int big = 300;
    p = mpt_new(ret_arg, &big, NULL);
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_join(p, 10.0));
    CHECK_EQ(mpt_exitcode(p), 1);
    CHECK_EQ(mpt_error(p), 300);
    CHECK_CONTAINS(mp_process_report(p), "returned 300");
    mp_process_free(p);
}

/* ---- waiting with time limits --------------------------------------------- */

static int wait_gate(void *arg)
{
    return gate_wait(arg, 30.0) == 0 ? 3 : 99;
}

TEST(join_timeout_never_blocks_past_it)
{
    gate g;
    gate_init(&g);
    mp_process *p = mpt_new(wait_gate, &g, NULL);
    CHECK_OK(mp_process_start(p));

    double t0 = mpt_now();
    CHECK_ERR(mp_process_join(p, 0.2), MP_ETIMEDOUT);
    double dt = mpt_now() - t0;
    CHECK(dt >= 0.2); /* strict lower bound */
    CHECK(dt < 10.0); /* loose upper bound: the machine may be busy */

    t0 = mpt_now();
    CHECK_ERR(mp_process_join(p, 0), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 < 5.0);
    CHECK(mp_process_is_alive(p));
    int code, err;
    CHECK_ERR(mp_process_exitcode(p, &code), MP_ESTATE);
    CHECK_ERR(mp_process_error(p, &err), MP_ESTATE);

    gate_open(&g);
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK_EQ(mpt_exitcode(p), 3);
    CHECK(!mp_process_is_alive(p));
    gate_close(&g);
    mp_process_free(p);
}

TEST(terminate_and_kill)
{
    gate g;
    gate_init(&g);
    mp_process *p = mpt_new(wait_gate, &g, NULL);
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_terminate(p));
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK_EQ(mpt_exitcode(p), -SIGTERM);
    CHECK_CONTAINS(mp_process_report(p), "killed by SIGTERM");
    mp_process_free(p);

    p = mpt_new(wait_gate, &g, NULL);
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_kill(p));
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK_EQ(mpt_exitcode(p), -SIGKILL);
    mp_process_free(p);

    p = mpt_new(wait_gate, &g, NULL);
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_signal(p, SIGUSR1));
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK_EQ(mpt_exitcode(p), -SIGUSR1);
    mp_process_free(p);
    gate_close(&g);
}

/* A child killed by signal N has exit code -N, which is also the value of
 * some -errno code (-SIGKILL is MP_EBADF, -SIGUSR2 MP_ENOMEM, -SIGINT
 * MP_ENOENT): the code must come back through *code, with the call itself
 * returning 0, so that a caller never takes a death for a failed call. */
TEST(signal_deaths_are_codes_not_call_errors)
{
    const int signals[] = {SIGINT, SIGKILL, SIGUSR2};
    gate g;
    gate_init(&g);
    for (size_t i = 0; i < sizeof signals / sizeof *signals; i++) {
        mp_process *p = mpt_new(wait_gate, &g, NULL);
        CHECK_OK(mp_process_start(p));
        CHECK_OK(mp_process_signal(p, signals[i]));
        CHECK_OK(mp_process_join(p, 30.0));
        int code = 0;
        CHECK_EQ(mp_process_exitcode(p, &code), 0);
        CHECK_EQ(code, -signals[i]);
        int err = 12345;
        CHECK_EQ(mp_process_error(p, &err), 0);
        CHECK_EQ(err, 0);
        mp_process_free(p);
    }
    gate_close(&g);
}

/* With SIGCHLD ignored the kernel reaps children itself: the child still
 * ends and is joined, but its code is unknown, and exitcode says so
 * instead of reporting a clean exit. */
TEST(exitcode_of_a_child_reaped_elsewhere_is_unknown)
{
    mp_log_set_level(MP_LOG_OFF); /* the warning is expected */
    signal(SIGCHLD, SIG_IGN);
    int v = 3;
    mp_process *p = mpt_new(ret_arg, &v, NULL);
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK(!mp_process_is_alive(p));
    int code = 12345;
    CHECK_ERR(mp_process_exitcode(p, &code), MP_ECHILD);
    CHECK_EQ(code, 12345);
    mp_process_free(p);
    signal(SIGCHLD, SIG_DFL);
}

typedef struct stubborn_arg {
    gate g;
    int ready_w;
} stubborn_arg;

static int stubborn(void *arg)
{
    stubborn_arg *a = arg;
    signal(SIGTERM, SIG_IGN);
    int one = 1;
    if (write(a->ready_w, &one, sizeof one) != sizeof one)
        return 2;
    return gate_wait(&a->g, 30.0) == 0 ? 0 : 98;
}

TEST(stop_escalates_to_sigkill)
{
    stubborn_arg a;
    gate_init(&a.g);
    int ready[2];
    CHECK_EQ(pipe2(ready, O_CLOEXEC), 0);
    a.ready_w = ready[1];
    mp_process *p = mpt_new(stubborn, &a, NULL);
    CHECK_OK(mp_process_start(p));
    int v;
    CHECK_EQ(read_int(ready[0], &v, 30.0), 0); /* SIGTERM is ignored from here on */
    double t0 = mpt_now();
    CHECK_OK(mp_process_stop(p, 0.2));
    CHECK(mpt_now() - t0 >= 0.2);
    CHECK_EQ(mpt_exitcode(p), -SIGKILL);
    mp_process_free(p);
    gate_close(&a.g);
    close(ready[0]);
    close(ready[1]);
}

/* ---- crash reports -------------------------------------------------------- */

/* An address the compiler cannot see through, so it emits the store. */
static volatile uintptr_t bad_address = 16;

__attribute__((noinline, no_sanitize("undefined"))) static int crash_segv(void *arg)
{
    (void)arg;
    *(volatile int *)bad_address = 1;
    return 0;
}

__attribute__((noinline, no_sanitize("undefined"))) static int crash_fpe(void *arg)
{
    volatile int zero = 0;
    return *(int *)arg / zero;
}

__attribute__((noinline)) static int crash_ill(void *arg)
{
    (void)arg;
    __builtin_trap();
}

__attribute__((noinline)) static int crash_abrt(void *arg)
{
    (void)arg;
    abort();
}

__attribute__((noinline)) static int crash_bus(void *arg)
{
    (void)arg;
    /* Touching a page of a mapping beyond the end of its file. */
    int fd = memfd_create("mproc-test-bus", MFD_CLOEXEC);
    volatile char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return 2;
    p[0] = 1;
    return 0;
}

static const char *method_name(mp_start_method m)
{
    return m == MP_START_FORK ? "fork" : m == MP_START_SPAWN ? "spawn" : "forkserver";
}

static void check_crash(mp_target_fn fn, int signo, const char *signame, const char *fname,
                        mp_start_method method)
{
    MPT_CONTEXT("%s in a child started by %s", signame, method_name(method));
    int one = 1;
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.name = "crasher";
    o.start_method = method;
    o.arg_size = method == MP_START_FORK ? 0 : sizeof one;
    mp_process *p = mpt_new_opts(fn, &one, &o);
    CHECK(p != NULL);
    mp_log_set_level(MP_LOG_OFF); /* the report is checked here, not printed */
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK_EQ(mpt_exitcode(p), -signo);
    const char *r = mp_process_report(p);
    CHECK_CONTAINS(r, "'crasher'");
    CHECK_CONTAINS(r, signame);
    CHECK_CONTAINS(r, "backtrace:");
    CHECK_CONTAINS(r, fname);
    if (signo == SIGSEGV)
        CHECK_CONTAINS(r, "at address 0x10");
    mp_process_free(p);
    MPT_CONTEXT_CLEAR();
}

TEST(crash_report_for_each_fatal_signal)
{
    check_crash(crash_segv, SIGSEGV, "SIGSEGV (address not mapped", "crash_segv", MP_START_FORK);
    check_crash(crash_fpe, SIGFPE, "SIGFPE (integer divide by zero)", "crash_fpe", MP_START_FORK);
    check_crash(crash_ill, SIGILL, "SIGILL", "crash_ill", MP_START_FORK);
    check_crash(crash_abrt, SIGABRT, "SIGABRT", "crash_abrt", MP_START_FORK);
    check_crash(crash_bus, SIGBUS, "SIGBUS (nonexistent physical address", "crash_bus",
                MP_START_FORK);
}

TEST(crash_report_from_fresh_images)
{
    check_crash(crash_segv, SIGSEGV, "SIGSEGV", "crash_segv", MP_START_SPAWN);
    check_crash(crash_abrt, SIGABRT, "SIGABRT", "crash_abrt", MP_START_FORKSERVER);
}

/* Recursion with a stop the compiler cannot prove unreachable. */
static volatile int recursion_limit = 1 << 30;

__attribute__((noinline)) static int recurse_forever(void *arg)
{
    volatile char pad[4096];
    uintptr_t depth = (uintptr_t)arg;
    pad[0] = (char)depth;
    if ((int)depth >= recursion_limit)
        return pad[0];
    return recurse_forever((void *)(depth + 1)) + pad[0];
}

TEST(stack_overflow_is_reported)
{
    mp_log_set_level(MP_LOG_OFF);
    mp_process *p = mpt_new(recurse_forever, NULL, NULL);
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_join(p, 60.0));
    CHECK_EQ(mpt_exitcode(p), -SIGSEGV);
    CHECK_CONTAINS(mp_process_report(p), "SIGSEGV");
    CHECK_CONTAINS(mp_process_report(p), "recurse_forever");
    mp_process_free(p);
}

TEST(crash_report_goes_to_the_log)
{
    char path[] = "/tmp/mproc-test-log-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_OK(mp_log_set_fd(fd));
    mp_log_set_level(MP_LOG_WARNING);
    mp_process *p = mpt_new(crash_segv, NULL, "logged");
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_join(p, 30.0));
    mp_process_free(p);
    char buf[8192] = {0};
    CHECK(pread(fd, buf, sizeof buf - 1, 0) > 0);
    CHECK_CONTAINS(buf, "ERROR");
    CHECK_CONTAINS(buf, "'logged'");
    CHECK_CONTAINS(buf, "SIGSEGV");
    CHECK_CONTAINS(buf, "crash_segv");
    CHECK_OK(mp_log_set_fd(STDERR_FILENO));
    close(fd);
    unlink(path);
}

/* ---- no zombies, no orphans ---------------------------------------------- */

TEST(many_children_all_reaped)
{
    enum { N = 64 };
    mp_process *ps[N];
    int vals[N];
    for (int i = 0; i < N; i++) {
        vals[i] = i;
        ps[i] = mpt_new(ret_arg, &vals[i], NULL);
        CHECK_OK(mp_process_start(ps[i]));
    }
    for (int i = N - 1; i >= 0; i--) {
        CHECK_OK(mp_process_join(ps[i], 30.0));
        CHECK_EQ(mpt_exitcode(ps[i]), i);
        mp_process_free(ps[i]);
    }
}

TEST(free_kills_a_running_daemon)
{
    gate g;
    gate_init(&g);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.daemon = true;
    mp_process *p = mpt_new_opts(wait_gate, &g, &o);
    CHECK(mp_process_daemon(p));
    CHECK_OK(mp_process_start(p));
    pid_t pid = mp_process_pid(p);
    mp_process_free(p);
    /* Killed and reaped: not even a zombie is left. */
    CHECK_EQ(waitpid(pid, NULL, WNOHANG), -1);
    CHECK_EQ(errno, ECHILD);
    CHECK_EQ(kill(pid, 0), -1);
    gate_close(&g);
}

TEST(free_leaves_a_running_child_and_reaps_it_later)
{
    gate g;
    gate_init(&g);
    mp_process *p = mpt_new(wait_gate, &g, NULL);
    CHECK_OK(mp_process_start(p));
    pid_t pid = mp_process_pid(p);
    double t0 = mpt_now();
    mp_process_free(p); /* never waits */
    CHECK(mpt_now() - t0 < 5.0);
    CHECK_EQ(kill(pid, 0), 0); /* still running */
    gate_open(&g);
    CHECK(mpt_wait_gone(pid, 30.0)); /* it ended (a zombie until reaped) */
    mp__registry_reap_detached();
    CHECK_EQ(waitpid(pid, NULL, WNOHANG), -1);
    CHECK_EQ(errno, ECHILD);
    gate_close(&g);
}

/* Parent -> child -> grandchild, each started through mproc.  The
 * grandchild and the child report their pids and wait; the test then
 * SIGKILLs the parent, and both must die. */
typedef struct tree_arg {
    int pids_w;
    gate g;
} tree_arg;

static int tree_grandchild(void *arg)
{
    tree_arg *a = arg;
    int me = getpid();
    if (write(a->pids_w, &me, sizeof me) != sizeof me)
        return 2;
    return gate_wait(&a->g, 60.0) == 0 ? 0 : 97;
}

static int tree_child(void *arg)
{
    tree_arg *a = arg;
    mp_process *gc = mpt_new(tree_grandchild, a, "grandchild");
    if (!gc || mp_process_start(gc) != 0)
        return 2;
    int me = getpid();
    if (write(a->pids_w, &me, sizeof me) != sizeof me)
        return 2;
    gate_wait(&a->g, 60.0);
    mp_process_join(gc, 60.0);
    return 0;
}

static int tree_parent(void *arg)
{
    tree_arg *a = arg;
    mp_process *c = mpt_new(tree_child, a, "child");
    if (!c || mp_process_start(c) != 0)
        return 2;
    gate_wait(&a->g, 60.0);
    mp_process_join(c, 60.0);
    return 0;
}

TEST(killed_parent_takes_children_and_grandchildren)
{
    tree_arg a;
    int fds[2];
    CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
    a.pids_w = fds[1];
    gate_init(&a.g);
    mp_process *p = mpt_new(tree_parent, &a, "parent");
    CHECK_OK(mp_process_start(p));
    int pid1, pid2;
    CHECK_EQ(read_int(fds[0], &pid1, 30.0), 0);
    CHECK_EQ(read_int(fds[0], &pid2, 30.0), 0);
    CHECK_EQ(kill(pid1, 0), 0);
    CHECK_EQ(kill(pid2, 0), 0);

    CHECK_OK(mp_process_kill(p));
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK_EQ(mpt_exitcode(p), -SIGKILL);
    CHECK(mpt_wait_gone(pid1, 30.0));
    CHECK(mpt_wait_gone(pid2, 30.0));
    mp_process_free(p);
    gate_close(&a.g);
    close(fds[0]);
    close(fds[1]);
}

/* A program that exits with children running: daemons are terminated,
 * the others joined (Python's rule).  Markers on a pipe show the test what
 * happened to each child; the daemon tells the program it is ready on a
 * pipe of its own. */
static int marker_w, ready_w;

static void on_term(int sig)
{
    (void)sig;
    char m = 'T';
    (void)!write(marker_w, &m, 1);
    _exit(0);
}

static int exit_daemon(void *arg)
{
    gate *g = arg;
    signal(SIGTERM, on_term);
    char m = 'd';
    (void)!write(ready_w, &m, 1); /* running, SIGTERM handled */
    gate_wait(g, 60.0);
    return 0;
}

static int exit_worker(void *arg)
{
    gate *g = arg;
    if (gate_wait(g, 60.0) != 0)
        return 1;
    char m = 'W';
    (void)!write(marker_w, &m, 1); /* ran to completion */
    return 0;
}

TEST(exit_terminates_daemons_and_joins_the_rest)
{
    int marks[2], ready[2];
    CHECK_EQ(pipe2(marks, O_CLOEXEC), 0);
    CHECK_EQ(pipe2(ready, O_CLOEXEC), 0);
    marker_w = marks[1];
    ready_w = ready[1];
    gate daemon_gate, worker_gate;
    gate_init(&daemon_gate);
    gate_init(&worker_gate);
    fflush(NULL);
    pid_t prog = fork();
    if (prog == 0) {
        mp_process_opts o = MP_PROCESS_OPTS_INIT;
        o.daemon = true;
        mp_process *d = mpt_new_opts(exit_daemon, &daemon_gate, &o);
        mp_process *w = mpt_new(exit_worker, &worker_gate, NULL);
        if (mp_process_start(d) || mp_process_start(w))
            _exit(3);
        struct pollfd rp = {.fd = ready[0], .events = POLLIN};
        char c;
        if (poll(&rp, 1, 30000) != 1 || read(ready[0], &c, 1) != 1)
            _exit(4);
        char e = 'E';
        (void)!write(marker_w, &e, 1);
        exit(0); /* the library's exit handler takes over */
    }
    char m = 0;
    struct pollfd pf = {.fd = marks[0], .events = POLLIN};
    /* The program announces its exit ... */
    CHECK(poll(&pf, 1, 30000) == 1);
    CHECK_EQ(read(marks[0], &m, 1), 1);
    CHECK_EQ(m, 'E');
    /* ... its daemon is terminated ... */
    CHECK(poll(&pf, 1, 30000) == 1);
    CHECK_EQ(read(marks[0], &m, 1), 1);
    CHECK_EQ(m, 'T');
    /* ... and it waits for its worker, which finishes when let go. */
    gate_open(&worker_gate);
    CHECK(poll(&pf, 1, 30000) == 1);
    CHECK_EQ(read(marks[0], &m, 1), 1);
    CHECK_EQ(m, 'W');
    CHECK(mpt_wait_gone(prog, 30.0));
    int st;
    CHECK_EQ(waitpid(prog, &st, 0), prog);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    gate_close(&daemon_gate);
    gate_close(&worker_gate);
    close(marks[0]);
    close(marks[1]);
    close(ready[0]);
    close(ready[1]);
}

/* ---- start methods -------------------------------------------------------- */

static int global_mark = 1; /* the parent changes it; a fresh image does not see that */

typedef struct job {
    int a, b;
    char text[32];
} job;

static int fresh_job(void *arg)
{
    job *j = arg;
    int fd = mp_process_inherited_fd(0);
    if (fd < 0)
        return 10;
    if (mp_process_inherited_fd(1) != MP_EBADF)
        return 11;
    int sum = j->a + j->b;
    if (write(fd, &sum, sizeof sum) != sizeof sum)
        return 12;
    if (strcmp(j->text, "hello") != 0)
        return 13;
    if (strcmp(mp_process_current_name(), "fresh") != 0)
        return 14;
    return global_mark; /* 1 in a fresh image, 2 in a fork */
}

static void check_method(mp_start_method m, int expect_mark)
{
    MPT_CONTEXT("start method %s", method_name(m));
    global_mark = 2;
    int fds[2];
    CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
    job j = {20, 22, "hello"};
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.name = "fresh";
    o.start_method = m;
    o.arg_size = sizeof j;
    o.fds = &fds[1];
    o.nfds = 1;
    mp_process *p = mpt_new_opts(fresh_job, &j, &o);
    CHECK(p != NULL);
    CHECK_OK(mp_process_start(p));
    memset(&j, 0, sizeof j); /* the child has its own copy */
    CHECK_OK(mp_process_join(p, 60.0));
    CHECK_EQ(mpt_exitcode(p), expect_mark);
    int sum = 0;
    CHECK_EQ(read_int(fds[0], &sum, 10.0), 0);
    CHECK_EQ(sum, 42);
    mp_process_free(p);
    close(fds[0]);
    close(fds[1]);
    MPT_CONTEXT_CLEAR();
}

TEST(fork_method)
{
    check_method(MP_START_FORK, 2);
}

TEST(spawn_method_runs_a_fresh_image)
{
    check_method(MP_START_SPAWN, 1);
}

TEST(forkserver_method_runs_a_fresh_image)
{
    check_method(MP_START_FORKSERVER, 1);
    check_method(MP_START_FORKSERVER, 1); /* the server is reused */
}

/* Waits on the descriptor handed over as fds[0]. */
static int wait_gate_inherited(void *arg)
{
    (void)arg;
    struct pollfd p = {.fd = mp_process_inherited_fd(0), .events = POLLIN};
    if (p.fd < 0)
        return 10;
    int n;
    do {
        n = poll(&p, 1, 30000);
    } while (n < 0 && errno == EINTR);
    return n > 0 ? 3 : 99;
}

TEST(forkserver_children_can_be_signalled_and_timed_out)
{
    gate g;
    gate_init(&g);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_FORKSERVER;
    o.fds = &g.r;
    o.nfds = 1;
    /* The child waits on the inherited read end of the gate. */
    mp_process *p = mpt_new_opts(wait_gate_inherited, NULL, &o);
    CHECK_OK(mp_process_start(p));
    CHECK_ERR(mp_process_join(p, 0.1), MP_ETIMEDOUT);
    CHECK(mp_process_is_alive(p));
    CHECK_OK(mp_process_terminate(p));
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK_EQ(mpt_exitcode(p), -SIGTERM);
    mp_process_free(p);

    p = mpt_new_opts(wait_gate_inherited, NULL, &o);
    CHECK_OK(mp_process_start(p));
    gate_open(&g);
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK_EQ(mpt_exitcode(p), 3);
    mp_process_free(p);
    gate_close(&g);
}

TEST(forkserver_stop_kills_what_it_started)
{
    gate g;
    gate_init(&g);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_FORKSERVER;
    o.fds = &g.r;
    o.nfds = 1;
    mp_process *p = mpt_new_opts(wait_gate_inherited, NULL, &o);
    CHECK_OK(mp_process_start(p));
    pid_t pid = mp_process_pid(p);
    CHECK_OK(mp_forkserver_stop());
    CHECK(mpt_wait_gone(pid, 30.0));
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK_EQ(mpt_exitcode(p), -SIGKILL);
    mp_process_free(p);
    gate_close(&g);
}

TEST(setup_failure_is_reported_over_the_report_pipe)
{
    /* A request naming code that does not exist in the fresh image: the
     * child reports MP_ENOENT as a set-up failure and exits 127 without
     * running anything. */
    int rp[2];
    CHECK_OK(mp__pipe(rp, O_NONBLOCK));
    pid_t pid = fork();
    if (pid == 0) {
        mp__request req;
        memset(&req, 0, sizeof req);
        snprintf(req.fn.path, sizeof req.fn.path, "/nonexistent/libgone.so");
        snprintf(req.name, sizeof req.name, "lost");
        req.parent = getppid();
        req.session = mp__session();
        req.log_level = MP_LOG_OFF;
        req.report_fd = rp[1];
        req.chan_fd = req.log_fd = -1;
        mp__request_run(&req);
    }
    close(rp[1]);
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    mp__outcome out;
    mp__outcome_build(&out, "lost", pid, st, rp[0], false);
    CHECK_EQ(out.exitcode, 127);
    CHECK_ERR(out.error, MP_ENOENT);
    CHECK_CONTAINS(out.report, "failed to set up");
    CHECK_CONTAINS(out.report, "MP_ENOENT");
    free(out.report);
    close(rp[0]);
}

/* ---- the machine ---------------------------------------------------------- */

/* ---- start methods: the default and the threads check ------------------------ */

/* A thread that waits on its gate: another thread of the program. */
typedef struct idle_thread {
    pthread_t t;
    gate ready, go;
    const char *name; /* NULL: keep the inherited one */
} idle_thread;

static void *idle_main(void *arg)
{
    idle_thread *it = arg;
    if (it->name)
        mp__thread_set_name(it->name);
    gate_open(&it->ready); /* named, and running */
    (void)gate_wait(&it->go, 60);
    return NULL;
}

static void idle_start(idle_thread *it, const char *name)
{
    gate_init(&it->ready);
    gate_init(&it->go);
    it->name = name;
    CHECK_EQ(pthread_create(&it->t, NULL, idle_main, it), 0);
    CHECK_EQ(gate_wait(&it->ready, 30), 0);
}

static void idle_stop(idle_thread *it)
{
    gate_open(&it->go);
    pthread_join(it->t, NULL);
    gate_close(&it->ready);
    gate_close(&it->go);
}

/* Starts fn(arg) with options o and returns its exit code. */
static int run_opts(mp_target_fn fn, void *arg, const mp_process_opts *o)
{
    mp_process *p = mpt_new_opts(fn, arg, o);
    CHECK_OK(mp_process_start(p));
    return mpt_finish(p);
}

/* Reads what fd holds now into buf (NUL-terminated). */
static void read_log(int fd, char *buf, size_t cap)
{
    ssize_t n = read(fd, buf, cap - 1);
    buf[n > 0 ? n : 0] = '\0';
}

TEST(the_default_start_method)
{
    CHECK_EQ(mp_get_start_method(), MP_START_AUTO);
    CHECK_ERR(mp_set_start_method(MP_START_DEFAULT), MP_EINVAL);
    CHECK_ERR(mp_set_start_method((mp_start_method)7), MP_EINVAL);
    mp_process *p = mpt_new(ret_arg, NULL, NULL);
    CHECK_EQ(mp_process_start_method(p), MP_START_DEFAULT);
    CHECK_EQ(mp_process_start_method(NULL), MP_START_DEFAULT);
    mp_process_free(p);
    /* A single-threaded program forks. */
    int v = 5;
    p = mpt_start(ret_arg, &v);
    CHECK_EQ(mp_process_start_method(p), MP_START_FORK);
    CHECK_EQ(mpt_finish(p), 5);
    /* The default applies to every process that names none. */
    CHECK_OK(mp_set_start_method(MP_START_FORKSERVER));
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.arg_size = sizeof v;
    p = mpt_new_opts(ret_arg, &v, &o);
    CHECK_OK(mp_process_start(p));
    CHECK_EQ(mp_process_start_method(p), MP_START_FORKSERVER);
    CHECK_EQ(mpt_finish(p), 5);
    CHECK_EQ(mp_get_start_method(), MP_START_FORKSERVER);
}

TEST(an_explicit_fork_is_refused_while_another_thread_runs)
{
    idle_thread it;
    idle_start(&it, NULL);
    int v = 1;
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_FORK;
    mp_process *p = mpt_new_opts(ret_arg, &v, &o);
    CHECK_ERR(mp_process_start(p), MP_ETHREADS);
    CHECK_EQ(mp_process_pid(p), 0); /* nothing started */
    /* A default of fork counts as explicit too. */
    CHECK_OK(mp_set_start_method(MP_START_FORK));
    mp_process *q = mpt_new(ret_arg, &v, NULL);
    CHECK_ERR(mp_process_start(q), MP_ETHREADS);
    idle_stop(&it);
    /* Alone again: fork is fine. */
    CHECK_OK(mp_process_start(p));
    CHECK_EQ(mpt_finish(p), 1);
    mp_process_free(q);
}

TEST(the_default_switches_to_the_forkserver_while_another_thread_runs)
{
    int logp[2];
    CHECK_EQ(pipe2(logp, O_CLOEXEC | O_NONBLOCK), 0);
    CHECK_OK(mp_log_set_fd(logp[1]));
    idle_thread it;
    idle_start(&it, NULL);
    int v = 9;
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.arg_size = sizeof v; /* copyable: it can go to a forkserver child */
    mp_process *p = mpt_new_opts(ret_arg, &v, &o);
    CHECK_OK(mp_process_start(p));
    CHECK_EQ(mp_process_start_method(p), MP_START_FORKSERVER);
    CHECK_EQ(mpt_finish(p), 9);
    char buf[4096];
    read_log(logp[0], buf, sizeof buf);
    CHECK_CONTAINS(buf, "1 other thread");
    CHECK_CONTAINS(buf, "starting it from the forkserver instead");
    /* An argument without a size cannot be copied: refused, not forked. */
    mp_process *q = mpt_new(ret_arg, &v, NULL);
    CHECK_ERR(mp_process_start(q), MP_ETHREADS);
    read_log(logp[0], buf, sizeof buf);
    CHECK_CONTAINS(buf, "cannot be copied");
    mp_process_free(q);
    idle_stop(&it);
    CHECK_OK(mp_log_set_fd(2));
    close(logp[0]);
    close(logp[1]);
}

TEST(threads_of_the_library_do_not_count)
{
    idle_thread it;
    idle_start(&it, "mproc-test");
    int v = 3;
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_FORK;
    mp_process *p = mpt_new_opts(ret_arg, &v, &o);
    CHECK_OK(mp_process_start(p));
    CHECK_EQ(mpt_finish(p), 3);
    idle_stop(&it);
}

/* ---- descriptors and signals of fresh images --------------------------------- */

/* arg: the number of a descriptor the parent leaked (no close-on-exec);
 * returns 0 when it is closed here and the handed one is open. */
static int only_handed_fds(void *arg)
{
    int leaked = *(int *)arg;
    int handed = mp_process_inherited_fd(0);
    if (handed < 0 || fcntl(handed, F_GETFD) < 0)
        return 2;
    return fcntl(leaked, F_GETFD) < 0 && errno == EBADF ? 0 : 1;
}

TEST(fresh_images_get_only_the_descriptors_handed_to_them)
{
    /* No O_CLOEXEC, on purpose; and a number that the child's own
     * descriptors never take, so that an open one there is the leak. */
    int leaked = open("/dev/null", O_RDONLY);
    CHECK(leaked >= 0);
    CHECK_EQ(dup2(leaked, 200), 200);
    close(leaked);
    leaked = 200;
    int handed = open("/dev/null", O_RDONLY | O_CLOEXEC);
    mp_start_method m[] = {MP_START_SPAWN, MP_START_FORKSERVER};
    for (int i = 0; i < 2; i++) {
        mp_process_opts o = MP_PROCESS_OPTS_INIT;
        o.start_method = m[i];
        o.arg_size = sizeof leaked;
        o.fds = &handed;
        o.nfds = 1;
        CHECK_EQ(run_opts(only_handed_fds, &leaked, &o), 0);
    }
    /* A fork child shares its parent's descriptors, leaked ones too. */
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_FORK;
    o.fds = &handed;
    o.nfds = 1;
    CHECK_EQ(run_opts(only_handed_fds, &leaked, &o), 1);
    close(leaked);
    close(handed);
}

static int sigint_default(void *arg)
{
    (void)arg;
    struct sigaction sa;
    return sigaction(SIGINT, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL ? 0 : 1;
}

TEST(the_forkserver_ignores_sigint_and_its_children_go_on)
{
    gate g;
    gate_init(&g);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_FORKSERVER;
    o.fds = &g.r;
    o.nfds = 1;
    mp_process *p = mpt_new_opts(wait_gate_inherited, NULL, &o);
    CHECK_OK(mp_process_start(p));
    pid_t server = mp__forkserver_pid();
    CHECK(server > 0);
    /* What a Ctrl-C sends the whole process group, and a service manager. */
    CHECK_EQ(kill(server, SIGINT), 0);
    CHECK_EQ(kill(server, SIGTERM), 0);
    CHECK_EQ(kill(server, SIGHUP), 0);
    /* A round trip to the server after the signals: it still serves, and
     * its children have the default action back. */
    mp_process_opts o2 = MP_PROCESS_OPTS_INIT;
    o2.start_method = MP_START_FORKSERVER;
    CHECK_EQ(run_opts(sigint_default, NULL, &o2), 0);
    CHECK_EQ(mp__forkserver_pid(), server); /* the same server */
    CHECK(mp_process_is_alive(p));
    gate_open(&g);
    CHECK_EQ(mpt_finish(p), 3);
    gate_close(&g);
}

TEST(children_die_of_sigint_by_default)
{
    mp_start_method m[] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};
    for (int i = 0; i < 3; i++) {
        gate g;
        gate_init(&g);
        mp_process_opts o = MP_PROCESS_OPTS_INIT;
        o.start_method = m[i];
        o.fds = &g.r;
        o.nfds = 1;
        mp_process *p = mpt_new_opts(wait_gate_inherited, NULL, &o);
        CHECK_OK(mp_process_start(p));
        /* The child may not have reached its target yet: the signal must
         * end it all the same (no handler of the library's is in the way). */
        CHECK_OK(mp_process_signal(p, SIGINT));
        CHECK_EQ(mpt_finish(p), -SIGINT);
        gate_close(&g);
    }
}

/* ---- joins that a signal interrupts -------------------------------------------- */

typedef struct joiner {
    mp_process *p;
    int rc;
} joiner;

static void *join_main(void *arg)
{
    joiner *j = arg;
    j->rc = mp_process_join(j->p, 30.0);
    return NULL;
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

static void interrupted_join(void (*interrupt)(void))
{
    gate g;
    gate_init(&g);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.fds = &g.r;
    o.nfds = 1;
    joiner j = {mpt_new_opts(wait_gate_inherited, NULL, &o), 12345};
    CHECK_OK(mp_process_start(j.p));
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, join_main, &j), 0);
    await_catching();
    interrupt();
    pthread_join(t, NULL);
    CHECK_ERR(j.rc, MP_ECANCELED);
    /* The child is left running, and a later join works. */
    CHECK(mp_process_is_alive(j.p));
    gate_open(&g);
    CHECK_EQ(mpt_finish(j.p), 3);
    gate_close(&g);
}

static void send_sigint(void)
{
    CHECK_EQ(kill(getpid(), SIGINT), 0);
}

static void cancel_waits(void)
{
    mp__waiter_cancel_all();
}

TEST(a_join_is_interrupted_by_sigint)
{
    interrupted_join(send_sigint);
}

TEST(a_join_is_cancelled_by_a_shutdown)
{
    interrupted_join(cancel_waits);
}

/* ---- active children, parent process ----------------------------------------------- */

static int report_parent(void *arg)
{
    pid_t expect = *(pid_t *)arg;
    return mp_parent_process() == expect ? 0 : 1;
}

TEST(active_children_and_parent_process)
{
    CHECK_EQ(mp_parent_process(), 0); /* the main process */
    CHECK_EQ(mp_active_children(NULL, 0), 0);
    CHECK_ERR(mp_active_children(NULL, 1), MP_EINVAL);
    gate ga, gb;
    gate_init(&ga);
    gate_init(&gb);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.fds = &ga.r;
    o.nfds = 1;
    mp_process *a = mpt_new_opts(wait_gate_inherited, NULL, &o);
    o.fds = &gb.r;
    mp_process *b = mpt_new_opts(wait_gate_inherited, NULL, &o);
    CHECK_OK(mp_process_start(a));
    CHECK_OK(mp_process_start(b));
    mp_process *out[4] = {NULL};
    CHECK_EQ(mp_active_children(out, 4), 2);
    CHECK((out[0] == a && out[1] == b) || (out[0] == b && out[1] == a));
    CHECK_EQ(mp_active_children(out, 1), 2); /* the count, beyond cap */
    gate_open(&ga);
    CHECK_OK(mp_process_join(a, 30));
    CHECK_EQ(mp_active_children(out, 4), 1);
    CHECK(out[0] == b);
    gate_open(&gb);
    /* b is reaped by mp_active_children itself once it ends. */
    CHECK_EQ(mpt_wait_gone(mp_process_pid(b), 30), 1);
    CHECK_EQ(mp_active_children(out, 4), 0);
    CHECK_EQ(mpt_exitcode(b), 3);
    mp_process_free(a);
    mp_process_free(b);
    gate_close(&ga);
    gate_close(&gb);
    /* Every start method names the process that asked as the parent, the
     * forkserver's children too. */
    pid_t me = getpid();
    mp_start_method m[] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};
    for (int i = 0; i < 3; i++) {
        mp_process_opts po = MP_PROCESS_OPTS_INIT;
        po.start_method = m[i];
        po.arg_size = sizeof me;
        CHECK_EQ(run_opts(report_parent, &me, &po), 0);
    }
}

/* ---- stacks on request ----------------------------------------------------------------- */

/* Says it runs (inherited descriptor 1), then waits on descriptor 0. */
static int stack_target(void *arg)
{
    (void)arg;
    char c = 1;
    if (write(mp_process_inherited_fd(1), &c, 1) != 1)
        return 2;
    struct pollfd p = {.fd = mp_process_inherited_fd(0), .events = POLLIN};
    int n;
    do { /* the request interrupts poll(), as any handled signal does */
        n = poll(&p, 1, 30000);
    } while (n < 0 && errno == EINTR);
    return n > 0 ? 0 : 1;
}

TEST(a_child_records_its_stack_when_asked_and_goes_on)
{
    int logp[2];
    CHECK_EQ(pipe2(logp, O_CLOEXEC | O_NONBLOCK), 0);
    CHECK_OK(mp_log_set_fd(logp[1]));
    gate g, ready;
    gate_init(&g);
    gate_init(&ready);
    int fds[2] = {g.r, ready.w};
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.fds = fds;
    o.nfds = 2;
    o.name = "asked";
    mp_process *p = mpt_new_opts(stack_target, NULL, &o);
    CHECK_OK(mp_process_start(p));
    CHECK_EQ(gate_wait(&ready, 30), 0); /* inside its target */
    /* Its report pipe becomes readable once it has written the record. */
    int rfd = mp__process_report_fd_dup(p);
    CHECK(rfd >= 0);
    CHECK_OK(mp_process_signal(p, MP__STACK_SIGNAL));
    struct pollfd pr = {.fd = rfd, .events = POLLIN};
    CHECK_EQ(poll(&pr, 1, 30000), 1);
    close(rfd);
    CHECK(mp_process_is_alive(p)); /* it went on */
    gate_open(&g);
    CHECK_EQ(mpt_finish(p), 0); /* and ended normally; the stack is logged */
    char buf[8192];
    read_log(logp[0], buf, sizeof buf);
    CHECK_CONTAINS(buf, "process 'asked'");
    CHECK_CONTAINS(buf, "asked for its stack");
    CHECK_CONTAINS(buf, "stack_target");
    CHECK_OK(mp_log_set_fd(2));
    close(logp[0]);
    close(logp[1]);
    gate_close(&g);
    gate_close(&ready);
}

TEST(cpu_counts)
{
    int n = mp_cpu_count();
    int cores = mp_physical_cores();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK_GE(n, 1);
    CHECK_LE(n, online);
    CHECK_GE(cores, 1);
    CHECK_LE(cores, n);
    /* Narrowing the affinity mask narrows the count. */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    CHECK_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    CHECK_EQ(mp_cpu_count(), 1);
    CHECK_EQ(mp_physical_cores(), 1);
}

/* ---- promises of process.h, one by one ------------------------------------ */

static int exit_three(void *arg)
{
    (void)arg;
    return 3;
}

/* "A started child is reaped exactly once, by join, is_alive, exitcode,
 * error or free, whichever notices its end first." */
TEST(whichever_call_notices_the_end_reaps_the_child_once)
{
    for (int k = 0; k < 3; k++) {
        static const char *const by[] = {"is_alive", "exitcode", "error"};
        MPT_CONTEXT("noticed by mp_process_%s", by[k]);
        mp_process *p = mpt_start(exit_three, NULL);
        pid_t pid = mp_process_pid(p);
        CHECK(mpt_wait_gone(pid, 30)); /* a zombie, not yet reaped */
        int v = -1;
        if (k == 0)
            CHECK(!mp_process_is_alive(p));
        else if (k == 1)
            CHECK_OK(mp_process_exitcode(p, &v));
        else
            CHECK_OK(mp_process_error(p, &v));
        CHECK_EQ(waitpid(pid, NULL, WNOHANG), -1); /* reaped already */
        CHECK_EQ(errno, ECHILD);
        CHECK_OK(mp_process_join(p, 0));
        CHECK_EQ(mpt_exitcode(p), 3);
        mp_process_free(p);
    }
    MPT_CONTEXT_CLEAR();
}

/* The executable's own constructors, which a fresh image must not have run
 * (process.h, "Start methods"): this one marks the global. */
static int ctor_ran;

__attribute__((constructor)) static void mark_ctor(void)
{
    ctor_ran = 1;
}

static int report_ctor(void *arg)
{
    (void)arg;
    return ctor_ran ? 5 : 6;
}

/* "With spawn and forkserver ... main() has not run, and neither have the
 * executable's own constructors." (A fork copies the parent, where they
 * did.) */
TEST(fresh_images_run_no_constructor_of_the_executable)
{
    const mp_start_method m[] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};
    for (size_t i = 0; i < MP__ARRAY_SIZE(m); i++) {
        MPT_CONTEXT("start method %s", method_name(m[i]));
        mp_process_opts o = MP_PROCESS_OPTS_INIT;
        o.start_method = m[i];
        mp_process *p = mpt_new_opts(report_ctor, NULL, &o);
        CHECK_OK(mp_process_start(p));
        CHECK_EQ(mpt_finish(p), m[i] == MP_START_FORK ? 5 : 6);
    }
    MPT_CONTEXT_CLEAR();
}

static int comm_is(void *arg)
{
    char comm[32] = {0};
    FILE *f = fopen("/proc/self/comm", "re");
    if (!f || !fgets(comm, sizeof comm, f))
        return 2;
    fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
    return strcmp(comm, arg) == 0 && strcmp(mp_process_current_name(), "") != 0 ? 0 : 1;
}

/* mp_process_opts.name: shown in `ps` "(the first 15 bytes)", "at most 63
 * bytes are kept". */
TEST(long_names_are_cut_where_documented)
{
    char name[100];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    char comm[16];
    memcpy(comm, name, 15);
    comm[15] = '\0';
    mp_process *p = mpt_new(comm_is, comm, name);
    CHECK_EQ(strlen(mp_process_name(p)), 63);
    CHECK_OK(mp_process_start(p));
    CHECK_EQ(mpt_finish(p), 0);
}

/* mp_process_inherited_fd: "MP_EBADF when ... this process was not started
 * by mproc". */
TEST(the_main_process_inherited_no_descriptor)
{
    CHECK_ERR(mp_process_inherited_fd(0), MP_EBADF);
    CHECK_STREQ(mp_process_current_name(), "MainProcess");
}

/* mp_process_stop: "MP_ESTATE before start"; terminate, kill and signal:
 * "Returns 0, also when the child has already ended". */
TEST(stop_before_start_and_signals_after_the_end)
{
    mp_process *p = mpt_new(exit_three, NULL, NULL);
    CHECK_ERR(mp_process_stop(p, 1.0), MP_ESTATE);
    CHECK_ERR(mp_process_kill(p), MP_ESTATE);
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_join(p, 30));
    CHECK_OK(mp_process_kill(p));
    CHECK_OK(mp_process_signal(p, SIGUSR1));
    CHECK_OK(mp_process_stop(p, 1.0));
    CHECK_EQ(mpt_exitcode(p), 3);
    mp_process_free(p);
}

typedef struct starter_arg {
    int rc;
    int code;
} starter_arg;

static void *start_from_thread(void *arg)
{
    starter_arg *a = arg;
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_FORKSERVER;
    mp_process *p = NULL;
    a->rc = mp_process_new_opts(exit_three, NULL, &o, &p);
    if (a->rc == 0)
        a->rc = mp_process_start(p);
    if (a->rc == 0)
        a->rc = mp_process_join(p, 30);
    if (a->rc == 0)
        a->rc = mp_process_exitcode(p, &a->code);
    mp_process_free(p);
    return NULL;
}

/* mp_forkserver_start: "Returns 0 (also if it runs already)"; the server
 * "serves every thread". */
TEST(the_forkserver_starts_once_and_serves_every_thread)
{
    CHECK_OK(mp_forkserver_start());
    CHECK_OK(mp_forkserver_start());
    enum { T = 4 };
    pthread_t th[T];
    starter_arg a[T];
    for (int i = 0; i < T; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, start_from_thread, &a[i]), 0);
    for (int i = 0; i < T; i++) {
        CHECK_EQ(pthread_join(th[i], NULL), 0);
        CHECK_OK(a[i].rc);
        CHECK_EQ(a[i].code, 3);
    }
    CHECK_OK(mp_forkserver_stop());
    CHECK_OK(mp_forkserver_stop());
}

MPT_MAIN()
