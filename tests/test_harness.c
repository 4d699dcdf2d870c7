/*
 * test_harness.c - the harness checks itself: each check fails when it
 * should and says what it saw; a case ends as passed, failed or skipped and
 * the runner counts it so; the runner lists its cases, rejects names it
 * does not know, and runs every case with the re-check slices off.
 *
 * A failing check ends its process, so each failing variant runs in a child
 * whose stderr is read back.  What the runner does is checked by running
 * this program again (/proc/self/exe) on its own "fixture" case, which does
 * what MPT_HARNESS_DO says.
 */
#include "mp_test.h"

#include <fcntl.h>

/* ---- running a check, or this program, in a child -------------------------- */

/* Reads fd to its end (at most 30 s) into out, NUL-terminated. */
static void read_all(int fd, char *out, size_t cap)
{
    size_t len = 0;
    double end = mpt_now() + 30.0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        double left = end - mpt_now();
        CHECK(left > 0);
        int n = poll(&p, 1, (int)(left * 1000) + 1);
        if (n < 0 && errno == EINTR)
            continue;
        CHECK_EQ(n, 1);
        ssize_t r = read(fd, out + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        CHECK_GE(r, 0);
        if (r == 0 || len + (size_t)r == cap - 1) {
            len += (size_t)r;
            break;
        }
        len += (size_t)r;
    }
    out[len] = '\0';
}

/* Forks; the child sends its stdout and stderr into a pipe and runs
 * fn(which), then exits 0 if fn returned.  Returns the child's wait status,
 * and what it wrote in out. */
static int run_child(void (*fn)(int), int which, char *out, size_t cap)
{
    int fds[2];
    CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK_GE(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        fn(which);
        fflush(NULL);
        exit(0);
    }
    close(fds[1]);
    read_all(fds[0], out, cap);
    close(fds[0]);
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    return st;
}

/* What the re-run program gets: its arguments, and MPT_HARNESS_DO. */
static const char *const *self_argv;
static const char *self_do;

static void exec_self(int recheck)
{
    if (self_do)
        setenv("MPT_HARNESS_DO", self_do, 1);
    if (recheck >= 0)
        setenv("MPROC_TEST_NO_RECHECK", recheck ? "1" : "0", 1);
    else
        unsetenv("MPROC_TEST_NO_RECHECK");
    execv("/proc/self/exe", (char *const *)self_argv);
    _exit(127);
}

/* Runs this program with argv (argv[0] included, NULL-terminated), the
 * fixture doing `what`, MPROC_TEST_NO_RECHECK set to recheck (or unset
 * when it is -1).  Returns its exit code; out gets what it printed. */
static int run_self(const char *const *argv, const char *what, int recheck, char *out, size_t cap)
{
    self_argv = argv;
    self_do = what;
    int st = run_child(exec_self, recheck, out, cap);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* Runs fn(which) in a child and requires it to fail (exit 1) saying want. */
static void expect_failure(void (*fn)(int), int which, const char *want)
{
    char out[4096];
    int st = run_child(fn, which, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 1)
        fprintf(stderr, "variant %d: status %#x, output: %s\n", which, st, out);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 1);
    CHECK_CONTAINS(out, "FAILED");
    CHECK_CONTAINS(out, want);
}

/* ---- the fixture ------------------------------------------------------------ */

/* The case the other cases run through this program again; run as part of
 * the suite (MPT_HARNESS_DO unset) it checks what every case may rely on. */
TEST(fixture)
{
    const char *what = getenv("MPT_HARNESS_DO");
    if (!what) {
        CHECK_NOT_NULL(getenv("MPROC_TEST_NO_RECHECK"));
        return;
    }
    if (strcmp(what, "skip") == 0)
        MPT_SKIP("asked to skip (%d)", 42);
    if (strcmp(what, "fail") == 0)
        CHECK_EQ(1 + 1, 3);
    if (strcmp(what, "env") == 0) {
        const char *v = getenv("MPROC_TEST_NO_RECHECK");
        printf("MPROC_TEST_NO_RECHECK=%s\n", v ? v : "(unset)");
        mpt_allow_recheck();
        v = getenv("MPROC_TEST_NO_RECHECK");
        printf("then MPROC_TEST_NO_RECHECK=%s\n", v ? v : "(unset)");
    }
}

/* ---- the checks ------------------------------------------------------------- */

static void unsigned_variant(int which)
{
    size_t big = (size_t)-1;
    unsigned zero = 0;
    switch (which) {
    case 0: /* each passing form first: none of them may end the child */
        CHECK_EQ_U(big, SIZE_MAX);
        CHECK_NE_U(big, zero);
        CHECK_GE_U(big, zero);
        CHECK_LE_U(zero, big);
        CHECK_GE_U(zero, zero);
        CHECK_LE_U(zero, zero);
        return;
    case 1:
        CHECK_EQ_U(big, zero);
        return;
    case 2:
        CHECK_NE_U(big, SIZE_MAX);
        return;
    case 3:
        CHECK_GE_U(zero, big);
        return;
    case 4:
        CHECK_LE_U(big, zero);
        return;
    default:
        return;
    }
}

TEST(unsigned_checks_fail_when_they_should_and_print_unsigned)
{
    char out[4096];
    int st = run_child(unsigned_variant, 0, out, sizeof out);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK_STREQ(out, "");
    /* SIZE_MAX prints as itself, not as -1. */
    expect_failure(unsigned_variant, 1, "big == zero: 18446744073709551615 != 0");
    expect_failure(unsigned_variant, 2, "big != SIZE_MAX: 18446744073709551615 == ");
    expect_failure(unsigned_variant, 3, "zero >= big: 0 < 18446744073709551615");
    expect_failure(unsigned_variant, 4, "big <= zero: 18446744073709551615 > 0");
}

static void pointer_variant(int which)
{
    int a = 1, b = 2;
    int *pa = &a, *pb = &b, *none = NULL;
    switch (which) {
    case 0:
        CHECK_PTR_EQ(pa, &a);
        CHECK_PTR_NE(pa, pb);
        CHECK_NULL(none);
        CHECK_NOT_NULL(pa);
        return;
    case 1:
        CHECK_PTR_EQ(pa, pb);
        return;
    case 2:
        CHECK_PTR_NE(pa, &a);
        return;
    case 3:
        CHECK_NULL(pa);
        return;
    case 4:
        CHECK_NOT_NULL(none);
        return;
    default:
        return;
    }
}

TEST(pointer_checks_fail_when_they_should_and_print_addresses)
{
    char out[4096];
    int st = run_child(pointer_variant, 0, out, sizeof out);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK_STREQ(out, "");
    expect_failure(pointer_variant, 1, "pa == pb: 0x");
    expect_failure(pointer_variant, 2, "pa != &a: both 0x");
    expect_failure(pointer_variant, 3, "pa is NULL: it is 0x");
    expect_failure(pointer_variant, 4, "none is not NULL: it is NULL");
}

/* A loop over modes, as the tests of start methods and lock kinds have:
 * the mode that fails is the one the message names. */
static void context_variant(int which)
{
    static const char *const modes[] = {"fork", "spawn", "forkserver"};
    for (int i = 0; i < 3; i++) {
        MPT_CONTEXT("mode=%s", modes[i]);
        CHECK_NE(i, which);
    }
    MPT_CONTEXT_CLEAR();
    CHECK_EQ(which, 7);
}

TEST(context_names_the_failing_mode_until_cleared)
{
    expect_failure(context_variant, 1, "FAILED (mode=spawn): i != which: both 1");
    expect_failure(context_variant, 2, "FAILED (mode=forkserver): ");
    char out[4096];
    int st = run_child(context_variant, 5, out, sizeof out);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 1);
    CHECK_CONTAINS(out, "FAILED: which == 7: 5 != 7");
    CHECK(strstr(out, "mode=") == NULL);
}

/* ---- the runner ------------------------------------------------------------- */

TEST(a_skipped_case_is_counted_apart_and_exits_77)
{
    char out[8192];
    const char *const one[] = {"test_harness", "fixture", NULL};
    CHECK_EQ(run_self(one, "skip", 1, out, sizeof out), MPT_SKIP_CODE);
    CHECK_CONTAINS(out, "SKIPPED: asked to skip (42)");
    CHECK_CONTAINS(out, "skipped fixture");
    CHECK_CONTAINS(out, "0 passed, 0 failed, 1 skipped");

    /* Beside a case that passes, the run passes. */
    const char *const two[] = {"test_harness", "fixture", "harness.fixture_peer", NULL};
    CHECK_EQ(run_self(two, "skip", 1, out, sizeof out), 0);
    CHECK_CONTAINS(out, "1 passed, 0 failed, 1 skipped");
}

/* Runs with the fixture in the re-run program: whatever MPT_HARNESS_DO
 * asks of the fixture, this one passes. */
TEST(fixture_peer)
{
    CHECK_EQ(1 + 1, 2);
}

TEST(a_failed_case_fails_the_run)
{
    char out[8192];
    const char *const two[] = {"test_harness", "fixture", "fixture_peer", NULL};
    CHECK_EQ(run_self(two, "fail", 1, out, sizeof out), 1);
    CHECK_CONTAINS(out, "FAILED: 1 + 1 == 3: 2 != 3");
    CHECK_CONTAINS(out, "FAILED  fixture");
    CHECK_CONTAINS(out, "1 passed, 1 failed, 0 skipped");
}

/* The limit given here is listed rounded up, and more than the default
 * makes the case "slow". */
TEST_TIMEOUT(list_names_every_case_with_its_limit, 61.5)
{
    char out[8192];
    const char *const argv[] = {"test_harness", "--list", NULL};
    CHECK_EQ(run_self(argv, NULL, 1, out, sizeof out), 0);
    CHECK_CONTAINS(out, "fixture 60\n");
    CHECK_CONTAINS(out, "list_names_every_case_with_its_limit 62 slow\n");
    int lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')); p++)
        lines++;
    CHECK_EQ(lines, mpt_ncases);
}

TEST(unknown_names_and_options_are_errors)
{
    char out[8192];
    const char *const unknown[] = {"test_harness", "fixture", "no_such_case", NULL};
    CHECK_EQ(run_self(unknown, NULL, 1, out, sizeof out), 2);
    CHECK_CONTAINS(out, "no case named no_such_case");
    CHECK(strstr(out, "passed") == NULL); /* nothing ran */
    const char *const option[] = {"test_harness", "--bogus", NULL};
    CHECK_EQ(run_self(option, NULL, 1, out, sizeof out), 2);
    CHECK_CONTAINS(out, "usage:");
}

static void noop(void)
{
}

/* The table grows: no case past some count is dropped. */
TEST(registration_has_no_limit)
{
    int before = mpt_ncases;
    for (int i = 0; i < 1000; i++)
        mpt_register("extra", noop, 1.0);
    CHECK_EQ(mpt_ncases, before + 1000);
    CHECK_STREQ(mpt_cases[before + 999].name, "extra");
    CHECK_STREQ(mpt_cases[0].name, "fixture");
}

TEST(cases_run_with_the_recheck_slices_off_unless_told)
{
    char out[8192];
    const char *const argv[] = {"test_harness", "fixture", NULL};
    CHECK_EQ(run_self(argv, "env", -1, out, sizeof out), 0);
    CHECK_CONTAINS(out, "MPROC_TEST_NO_RECHECK=1\n");
    CHECK_CONTAINS(out, "then MPROC_TEST_NO_RECHECK=0\n");
    /* A setting from outside is kept. */
    CHECK_EQ(run_self(argv, "env", 0, out, sizeof out), 0);
    CHECK_CONTAINS(out, "MPROC_TEST_NO_RECHECK=0\n");
}

MPT_MAIN()
