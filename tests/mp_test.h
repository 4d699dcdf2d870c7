/*
 * mp_test.h - the test harness: one executable per module, each case in a
 * process of its own.
 *
 *   TEST(name) { CHECK_OK(...); CHECK_EQ(a, b); }
 *   TEST_TIMEOUT(name, 20) { ... }       a case with its own time limit
 *   MPT_MAIN()                           at the end of the file
 *
 * The runner (the executable's main process) forks one process per case
 * and gives it a time limit (default 60 s); a case that runs over is
 * killed and fails.  The runner is a child subreaper, so a process a case
 * leaves behind - even an orphaned grandchild - is re-parented to it,
 * found, reported and killed: a test that leaks a process fails.  So does
 * a case that leaves a /dev/shm entry of this run behind, or a child or
 * zombie of its own when it returns.  Each case exits through exit(), so
 * LeakSanitizer checks it for leaked memory under MPROC_SANITIZE.
 *
 * A case ends in one of three ways: it returns (passed), a check fails
 * (failed), or it calls MPT_SKIP("why") because what it needs is not there
 * (skipped: counted apart, and reported to ctest as skipped).
 *
 * Assertions print both operands, and mp_err_name() of error codes:
 * CHECK_EQ/NE/GE/LE for signed integers, CHECK_EQ_U/NE_U/GE_U/LE_U for
 * unsigned ones (sizes, counters), CHECK_PTR_EQ/NE, CHECK_NULL and
 * CHECK_NOT_NULL for pointers.  A loop over modes names the mode it is in
 * with MPT_CONTEXT("mode=%s", name): every failure message of the case
 * carries it until it is changed or cleared (MPT_CONTEXT_CLEAR()).
 * Names that must be unique (segments, sockets) come from mpt_name(),
 * which includes the runner's pid, so executables can run in parallel.
 *
 *   ./test_x            run every case
 *   ./test_x name...    run the named cases (a "module." prefix, as ctest
 *                       names them, is accepted)
 *   ./test_x --list     print "name timeout [label...]" for every case;
 *                       tests/CMakeLists.txt registers each with ctest
 *
 * The runner exits 0 when every case it ran passed or was skipped and one
 * passed, MPT_SKIP_CODE (77) when every case it ran was skipped, 1 when one
 * failed, 2 on a usage error.
 *
 * Every case runs with MPROC_TEST_NO_RECHECK=1 in its environment (unless
 * the runner's environment sets it already: MPROC_TEST_NO_RECHECK=0 keeps
 * the slices, to tell a lost wake-up from another hang).  In the test build
 * of the library (MPROC_TESTING), a wait then sleeps until it is woken or
 * its deadline passes, without the periodic re-check that otherwise bounds
 * the cost of a lost wake-up: a lost wake hangs and the case's time limit
 * catches it.  A case that tests recovery through the re-check (a waker
 * killed before its wake) calls mpt_allow_recheck() before it starts.
 */
#ifndef MPROC_TEST_H
#define MPROC_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "mproc.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef void (*mpt_fn)(void);

#define MPT_DEFAULT_TIMEOUT 60.0
/* The exit status of a skipped case, and of a runner that ran only skipped
 * cases: ctest's SKIP_RETURN_CODE, automake's convention. */
#define MPT_SKIP_CODE 77

static struct mpt_case {
    const char *name;
    mpt_fn fn;
    double timeout;
} * mpt_cases;
static int mpt_ncases, mpt_cap_cases;
static pid_t mpt_runner_pid;
static unsigned mpt_name_counter;
static char mpt_context[256];

/* Runs before main() (from each case's constructor): the table grows as
 * needed, so no case is ever dropped; running out of memory here is an
 * error that stops the program, never a case silently left out. */
static void mpt_register(const char *name, mpt_fn fn, double timeout)
{
    if (mpt_ncases == mpt_cap_cases) {
        int cap = mpt_cap_cases ? 2 * mpt_cap_cases : 64;
        struct mpt_case *c = realloc(mpt_cases, (size_t)cap * sizeof *c);
        if (!c) {
            fprintf(stderr, "mp_test: no memory to register case %s\n", name);
            exit(2);
        }
        mpt_cases = c;
        mpt_cap_cases = cap;
    }
    mpt_cases[mpt_ncases++] = (struct mpt_case){name, fn, timeout};
}

#define TEST_TIMEOUT(name, secs)                                  \
    static void name(void);                                       \
    __attribute__((constructor)) static void mpt_reg_##name(void) \
    {                                                             \
        mpt_register(#name, name, (secs));                        \
    }                                                             \
    static void name(void)

#define TEST(name) TEST_TIMEOUT(name, MPT_DEFAULT_TIMEOUT)

__attribute__((noreturn, format(printf, 3, 4))) static void mpt_fail(const char *file, int line,
                                                                     const char *fmt, ...)
{
    va_list ap;
    if (mpt_context[0])
        fprintf(stderr, "%s:%d: FAILED (%s): ", file, line, mpt_context);
    else
        fprintf(stderr, "%s:%d: FAILED: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(NULL);
    exit(1);
}

/* Ends the case as skipped, saying why on stderr. */
__attribute__((noreturn, format(printf, 3, 4))) static inline void
mpt_skip(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: SKIPPED: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(NULL);
    exit(MPT_SKIP_CODE);
}

#define MPT_SKIP(...) mpt_skip(__FILE__, __LINE__, __VA_ARGS__)

/* What the case is doing now, printed with each failure after it. */
__attribute__((format(printf, 1, 2))) static inline void mpt_context_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mpt_context, sizeof mpt_context, fmt, ap);
    va_end(ap);
}

#define MPT_CONTEXT(...)    mpt_context_set(__VA_ARGS__)
#define MPT_CONTEXT_CLEAR() (mpt_context[0] = '\0')

/* For a case that tests recovery through the re-check slices (see the top
 * of this file): turns them back on for the rest of the case. */
static inline void mpt_allow_recheck(void)
{
    setenv("MPROC_TEST_NO_RECHECK", "0", 1);
}

#define CHECK(cond)                                           \
    do {                                                      \
        if (!(cond))                                          \
            mpt_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); \
    } while (0)

#define CHECK_EQ(a, b)                                                                      \
    do {                                                                                    \
        long long mpt_a_ = (long long)(a), mpt_b_ = (long long)(b);                         \
        if (mpt_a_ != mpt_b_)                                                               \
            mpt_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, mpt_a_, mpt_b_); \
    } while (0)

#define CHECK_NE(a, b)                                                           \
    do {                                                                         \
        long long mpt_a_ = (long long)(a), mpt_b_ = (long long)(b);              \
        if (mpt_a_ == mpt_b_)                                                    \
            mpt_fail(__FILE__, __LINE__, "%s != %s: both %lld", #a, #b, mpt_a_); \
    } while (0)

#define CHECK_GE(a, b)                                                                     \
    do {                                                                                   \
        long long mpt_a_ = (long long)(a), mpt_b_ = (long long)(b);                        \
        if (!(mpt_a_ >= mpt_b_))                                                           \
            mpt_fail(__FILE__, __LINE__, "%s >= %s: %lld < %lld", #a, #b, mpt_a_, mpt_b_); \
    } while (0)

#define CHECK_LE(a, b)                                                                     \
    do {                                                                                   \
        long long mpt_a_ = (long long)(a), mpt_b_ = (long long)(b);                        \
        if (!(mpt_a_ <= mpt_b_))                                                           \
            mpt_fail(__FILE__, __LINE__, "%s <= %s: %lld > %lld", #a, #b, mpt_a_, mpt_b_); \
    } while (0)

/* Unsigned integers (sizes, counts, offsets), compared and printed as
 * unsigned long long, so that values past LLONG_MAX and "negative" ones
 * wrapped around print as what they are.  The operands are named here,
 * before an argument such as SIZE_MAX is expanded. */
#define MPT_CHECK_U(a, op, b, bad, sa, sb)                                                   \
    do {                                                                                     \
        unsigned long long mpt_a_ = (unsigned long long)(a);                                 \
        unsigned long long mpt_b_ = (unsigned long long)(b);                                 \
        if (!(mpt_a_ op mpt_b_))                                                             \
            mpt_fail(__FILE__, __LINE__, "%s " #op " %s: %llu " bad " %llu", sa, sb, mpt_a_, \
                     mpt_b_);                                                                \
    } while (0)

#define CHECK_EQ_U(a, b) MPT_CHECK_U(a, ==, b, "!=", #a, #b)
#define CHECK_NE_U(a, b) MPT_CHECK_U(a, !=, b, "==", #a, #b)
#define CHECK_GE_U(a, b) MPT_CHECK_U(a, >=, b, "<", #a, #b)
#define CHECK_LE_U(a, b) MPT_CHECK_U(a, <=, b, ">", #a, #b)

/* Pointers, printed as addresses. */
#define CHECK_PTR_EQ(a, b)                                                              \
    do {                                                                                \
        const void *mpt_a_ = (const void *)(a), *mpt_b_ = (const void *)(b);            \
        if (mpt_a_ != mpt_b_)                                                           \
            mpt_fail(__FILE__, __LINE__, "%s == %s: %p != %p", #a, #b, mpt_a_, mpt_b_); \
    } while (0)

#define CHECK_PTR_NE(a, b)                                                     \
    do {                                                                       \
        const void *mpt_a_ = (const void *)(a), *mpt_b_ = (const void *)(b);   \
        if (mpt_a_ == mpt_b_)                                                  \
            mpt_fail(__FILE__, __LINE__, "%s != %s: both %p", #a, #b, mpt_a_); \
    } while (0)

#define CHECK_NULL(p)                                                         \
    do {                                                                      \
        const void *mpt_p_ = (const void *)(p);                               \
        if (mpt_p_ != NULL)                                                   \
            mpt_fail(__FILE__, __LINE__, "%s is NULL: it is %p", #p, mpt_p_); \
    } while (0)

#define CHECK_NOT_NULL(p)                                                   \
    do {                                                                    \
        if ((const void *)(p) == NULL)                                      \
            mpt_fail(__FILE__, __LINE__, "%s is not NULL: it is NULL", #p); \
    } while (0)

#define CHECK_DBL_NEAR(a, b, eps)                                                             \
    do {                                                                                      \
        double mpt_a_ = (double)(a), mpt_b_ = (double)(b);                                    \
        if (!(mpt_a_ - mpt_b_ <= (eps) && mpt_b_ - mpt_a_ <= (eps)))                          \
            mpt_fail(__FILE__, __LINE__, "%s ~= %s: %.17g vs %.17g", #a, #b, mpt_a_, mpt_b_); \
    } while (0)

/* An mproc call that must succeed (return >= 0). */
#define CHECK_OK(expr)                                                            \
    do {                                                                          \
        int mpt_rc_ = (int)(expr);                                                \
        if (mpt_rc_ < 0)                                                          \
            mpt_fail(__FILE__, __LINE__, "%s failed: %d %s (%s)", #expr, mpt_rc_, \
                     mp_err_name(mpt_rc_), mp_strerror(mpt_rc_));                 \
    } while (0)

/* An mproc call that must fail with exactly code. */
#define CHECK_ERR(expr, code)                                                                 \
    do {                                                                                      \
        int mpt_rc_ = (int)(expr), mpt_want_ = (int)(code);                                   \
        if (mpt_rc_ != mpt_want_)                                                             \
            mpt_fail(__FILE__, __LINE__, "%s returned %d %s, expected %d %s", #expr, mpt_rc_, \
                     mp_err_name(mpt_rc_), mpt_want_, mp_err_name(mpt_want_));                \
    } while (0)

#define CHECK_STREQ(a, b)                                                      \
    do {                                                                       \
        const char *mpt_a_ = (a), *mpt_b_ = (b);                               \
        if (!mpt_a_ || !mpt_b_ || strcmp(mpt_a_, mpt_b_) != 0)                 \
            mpt_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, \
                     mpt_a_ ? mpt_a_ : "(null)", mpt_b_ ? mpt_b_ : "(null)");  \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                        \
    do {                                                                                   \
        const char *mpt_h_ = (hay), *mpt_n_ = (needle);                                    \
        if (!mpt_h_ || !strstr(mpt_h_, mpt_n_))                                            \
            mpt_fail(__FILE__, __LINE__, "%s contains \"%s\": it is \"%s\"", #hay, mpt_n_, \
                     mpt_h_ ? mpt_h_ : "(null)");                                          \
    } while (0)

/* A name unique to this run and call: "t<runner pid>-<pid>-<n>-<tag>". */
static inline const char *mpt_name(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "t%d-%d-%u-%s", (int)mpt_runner_pid, (int)getpid(), ++mpt_name_counter,
             tag ? tag : "x");
    return buf;
}

static inline double mpt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Waits until the process pid no longer exists (is dead and, if it is our
 * child or an orphan re-parented to the runner, possibly a zombie).  Uses
 * a pidfd, so it works for any process.  Returns 1 when gone, 0 on
 * timeout. */
static inline int mpt_wait_gone(pid_t pid, double timeout)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return errno == ESRCH;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    double end = mpt_now() + timeout;
    int rc = 0;
    for (;;) {
        double left = end - mpt_now();
        int ms = left > 0 ? (int)(left * 1000) + 1 : 0;
        int n = poll(&p, 1, ms);
        if (n > 0) {
            rc = 1;
            break;
        }
        if (n == 0 || (n < 0 && errno != EINTR))
            break;
    }
    close(fd);
    return rc;
}

/* The pids whose parent is ppid, from /proc; returns how many (at most
 * cap are stored). */
static inline int mpt_children_of(pid_t ppid, pid_t *out, int cap)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%.255s/stat", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')');
        int pp = 0;
        char state = 0;
        if (rp && sscanf(rp + 1, " %c %d", &state, &pp) == 2 && pp == ppid) {
            if (n < cap)
                out[n] = (pid_t)atoi(e->d_name);
            n++;
        }
    }
    closedir(d);
    return n;
}

/* ---- the runner --------------------------------------------------------- */

#define MPT_MAX_SHM 512

static int mpt_shm_list(char names[][256], int cap)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        if (strstr(e->d_name, "mproc"))
            snprintf(names[n++], 256, "%s", e->d_name);
    }
    closedir(d);
    return n;
}

/* Whether name contains this run's pid as a number of its own (names made
 * by the library carry the session, which is the runner's pid; names made
 * by tests carry it through mpt_name()). */
static int mpt_shm_is_ours(const char *name)
{
    char pid[24];
    int len = snprintf(pid, sizeof pid, "%d", (int)mpt_runner_pid);
    for (const char *p = strstr(name, pid); p; p = strstr(p + 1, pid)) {
        bool left = p == name || !isdigit((unsigned char)p[-1]);
        bool right = !isdigit((unsigned char)p[len]);
        if (left && right)
            return 1;
    }
    return 0;
}

/* In the case's process, after the case returned: no child may remain. */
static void mpt_case_epilogue(void)
{
    mp_forkserver_stop();
    int st;
    pid_t r = waitpid(-1, &st, WNOHANG);
    if (r > 0) {
        fprintf(stderr, "case left a zombie child (pid %d): it was never joined\n", (int)r);
        exit(1);
    }
    if (r == 0) {
        pid_t kids[16];
        int n = mpt_children_of(getpid(), kids, 16);
        fprintf(stderr, "case left %d running child process(es):", n);
        for (int i = 0; i < n && i < 16; i++)
            fprintf(stderr, " %d", (int)kids[i]);
        fputc('\n', stderr);
        exit(1);
    }
}

/* After a case: every process it left behind has been re-parented to the
 * runner.  Reaps the dead; waits up to a few seconds for processes that
 * are dying (a death signal takes a moment); kills and reports the rest.
 * Returns the number of processes that were still alive. */
static int mpt_collect_orphans(void)
{
    double end = mpt_now() + 5.0;
    int leaked = 0;
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (r > 0)
            continue;
        if (r < 0)
            return leaked; /* ECHILD: nothing left */
        if (mpt_now() >= end) {
            pid_t kids[64];
            int n = mpt_children_of(getpid(), kids, 64);
            for (int i = 0; i < n && i < 64; i++) {
                char comm[64] = "?", path[64];
                snprintf(path, sizeof path, "/proc/%d/comm", (int)kids[i]);
                FILE *f = fopen(path, "re");
                if (f) {
                    if (fgets(comm, sizeof comm, f))
                        comm[strcspn(comm, "\n")] = '\0';
                    fclose(f);
                }
                fprintf(stderr, "  left behind: process %d (%s)\n", (int)kids[i], comm);
                kill(kids[i], SIGKILL);
                leaked++;
            }
            end = mpt_now() + 5.0;
            continue;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL); /* bounded polling for dying orphans */
    }
}

/* Waits for the case's process until its time limit; kills it past the
 * limit.  Returns its wait status; *timed_out says whether it was killed. */
static int mpt_wait_case(pid_t pid, double deadline, bool *timed_out)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    *timed_out = false;
    if (fd >= 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n;
        do {
            double left = deadline - mpt_now();
            n = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
        } while (n < 0 && errno == EINTR);
        if (n == 0) {
            *timed_out = true;
            kill(pid, SIGKILL);
        }
        close(fd);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return st;
}

/* Reports and removes the /dev/shm entries of this run that appeared
 * while the case ran; returns how many there were. */
static int mpt_check_shm(char before[][256], int nbefore)
{
    static char after[MPT_MAX_SHM][256];
    int nafter = mpt_shm_list(after, MPT_MAX_SHM), left = 0;
    for (int i = 0; i < nafter; i++) {
        bool old = false;
        for (int j = 0; j < nbefore && !old; j++)
            old = strcmp(after[i], before[j]) == 0;
        if (!old && mpt_shm_is_ours(after[i])) {
            char path[300];
            snprintf(path, sizeof path, "/dev/shm/%.255s", after[i]);
            fprintf(stderr, "  case left /dev/shm/%s behind\n", after[i]);
            unlink(path);
            left++;
        }
    }
    return left;
}

enum mpt_outcome { MPT_PASSED, MPT_FAILED, MPT_SKIPPED };

static enum mpt_outcome mpt_run_case(const struct mpt_case *c)
{
    static char before[MPT_MAX_SHM][256];
    int nbefore = mpt_shm_list(before, MPT_MAX_SHM);
    double t0 = mpt_now();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return MPT_FAILED;
    }
    if (pid == 0) {
        c->fn();
        mpt_case_epilogue();
        fflush(NULL);
        exit(0);
    }
    bool timed_out;
    int st = mpt_wait_case(pid, t0 + c->timeout, &timed_out);
    double dt = mpt_now() - t0;
    enum mpt_outcome out = MPT_FAILED;
    if (timed_out)
        fprintf(stderr, "  case ran over its %.0f s limit and was killed\n", c->timeout);
    else if (WIFSIGNALED(st))
        fprintf(stderr, "  case was killed by signal %d\n", WTERMSIG(st));
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        out = MPT_PASSED;
    else if (WIFEXITED(st) && WEXITSTATUS(st) == MPT_SKIP_CODE)
        out = MPT_SKIPPED;
    /* A skipped case is held to the same rules: it leaves nothing behind. */
    if (mpt_collect_orphans() > 0) {
        fprintf(stderr, "  case left processes behind\n");
        out = MPT_FAILED;
    }
    if (mpt_check_shm(before, nbefore) > 0)
        out = MPT_FAILED;
    static const char *const word[] = {"ok     ", "FAILED ", "skipped"};
    printf("%s %s (%.3f s)\n", word[out], c->name, dt);
    fflush(stdout);
    return out;
}

/* Whether arg names case c: "name", or "module.name" as ctest names it. */
static bool mpt_names(const char *arg, const struct mpt_case *c)
{
    const char *dot = strrchr(arg, '.');
    return strcmp(dot ? dot + 1 : arg, c->name) == 0;
}

/* One line per case, "name timeout [label...]", the timeout in whole
 * seconds rounded up; a case given more than the default time is "slow". */
static void mpt_list(void)
{
    for (int i = 0; i < mpt_ncases; i++) {
        double t = mpt_cases[i].timeout;
        long secs = (long)t + ((double)(long)t < t);
        printf("%s %ld%s\n", mpt_cases[i].name, secs, t > MPT_DEFAULT_TIMEOUT ? " slow" : "");
    }
}

/* Checks the arguments: options, and names that match no case. */
static int mpt_parse_args(int argc, char **argv)
{
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--list") == 0 && argc == 2) {
            mpt_list();
            return 0;
        }
        if (argv[a][0] == '-') {
            fprintf(stderr, "usage: %s [--list | case...]\n", argv[0]);
            return 2;
        }
        bool known = false;
        for (int i = 0; i < mpt_ncases && !known; i++)
            known = mpt_names(argv[a], &mpt_cases[i]);
        if (!known) {
            fprintf(stderr, "%s: no case named %s (--list shows them)\n", argv[0], argv[a]);
            return 2;
        }
    }
    return -1;
}

static int mpt_run(int argc, char **argv)
{
    int rc = mpt_parse_args(argc, argv);
    if (rc >= 0)
        return rc;
    mpt_runner_pid = getpid();
    /* Orphans of a case come to the runner, where they can be found. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Lost wake-ups hang instead of costing a re-check slice (see the top
     * of this file); a setting from outside is kept. */
    setenv("MPROC_TEST_NO_RECHECK", "1", 0);
    int count[3] = {0, 0, 0};
    for (int i = 0; i < mpt_ncases; i++) {
        bool want = argc < 2;
        for (int a = 1; a < argc && !want; a++)
            want = mpt_names(argv[a], &mpt_cases[i]);
        if (want)
            count[mpt_run_case(&mpt_cases[i])]++;
    }
    printf("%d passed, %d failed, %d skipped\n", count[MPT_PASSED], count[MPT_FAILED],
           count[MPT_SKIPPED]);
    if (count[MPT_FAILED] > 0)
        return 1;
    if (count[MPT_PASSED] > 0)
        return 0;
    return count[MPT_SKIPPED] > 0 ? MPT_SKIP_CODE : 1;
}

#define MPT_MAIN()                  \
    int main(int argc, char **argv) \
    {                               \
        return mpt_run(argc, argv); \
    }

#endif /* MPROC_TEST_H */
