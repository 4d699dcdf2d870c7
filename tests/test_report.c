/* Tests of crash reports as the parent writes them (report.c): the
 * source file and line of each of the program's frames, mproc's own frames
 * hidden unless MPROC_BACKTRACE=full, canonical paths; and, in
 * test_report_nodw (this file built again with the source lines taken
 * away), the reports of a build without libdw. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <dlfcn.h>
#include <libgen.h>

/* Whether reports must carry source lines: the library was built with
 * libdw and this executable does not take its lines away. */
#if defined(MPT_LIBRARY_HAS_DW) && !defined(MPT_WITHOUT_LINES)
#define EXPECT_LINES 1
#else
#define EXPECT_LINES 0
#endif

/* An address the compiler cannot see through, so it emits the load. */
static volatile uintptr_t bad_address = 16;

/* The faulting load and the line number the report must show stay on one
 * line, so the number is the load's line whatever is edited above. */
// clang-format off
__attribute__((noinline, no_sanitize("undefined"))) static int user_fault(void) { return *(volatile int *)bad_address; } enum { FAULT_LINE = __LINE__ };
// clang-format on

/* Its caller; "+ 1" keeps the call from being a tail call, so that
 * user_target stays on the stack. */
// clang-format off
__attribute__((noinline)) static int user_target(void *arg) { (void)arg; return user_fault() + 1; } enum { CALL_LINE = __LINE__ };
// clang-format on

/* Runs fn(arg) in a child that crashes, and copies its report to out. */
static void crash_report(mp_target_fn fn, void *arg, char *out, size_t cap)
{
    mp_log_set_level(MP_LOG_OFF); /* the report is checked here, not printed */
    mp_process *p = mpt_new(fn, arg, "crasher");
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK_EQ(mpt_exitcode(p), -SIGSEGV);
    CHECK_NOT_NULL(mp_process_report(p));
    snprintf(out, cap, "%s", mp_process_report(p));
    mp_process_free(p);
}

/* "<canonical path of this file>:<line>". */
static void source_at(int line, char *out, size_t cap)
{
    char path[PATH_MAX];
    CHECK_NOT_NULL(realpath(__FILE__, path));
    snprintf(out, cap, "%s:%d", path, line);
}

static void check_absent(const char *report, const char *what)
{
    if (strstr(report, what))
        mpt_fail(__FILE__, __LINE__, "the report shows \"%s\": %s", what, report);
}

TEST(a_crash_report_names_the_file_and_line_of_each_frame)
{
    char r[8192], at[PATH_MAX + 32], want[PATH_MAX + 64];
    crash_report(user_target, NULL, r, sizeof r);
    CHECK_CONTAINS(r, "killed by SIGSEGV");
    if (EXPECT_LINES) {
        /* The faulting load itself, and the call in its caller. */
        source_at(FAULT_LINE, at, sizeof at);
        snprintf(want, sizeof want, " in user_fault at %s\n", at);
        CHECK_CONTAINS(r, want);
        source_at(CALL_LINE, at, sizeof at);
        snprintf(want, sizeof want, " in user_target at %s\n", at);
        CHECK_CONTAINS(r, want);
    } else {
        /* Functions and their module, as before libdw. */
        char exe[PATH_MAX];
        CHECK_NOT_NULL(realpath("/proc/self/exe", exe));
        CHECK_CONTAINS(r, " in user_fault+0x");
        snprintf(want, sizeof want, " (%s)\n", exe);
        CHECK_CONTAINS(r, want);
        CHECK_CONTAINS(r, " in user_target+0x");
        check_absent(r, ".c:");
    }
}

TEST(mprocs_own_frames_are_hidden_unless_asked_for)
{
    char r[8192];
    crash_report(user_target, NULL, r, sizeof r);
    CHECK_CONTAINS(r, "user_fault");
    CHECK_CONTAINS(r, "user_target");
    /* The child's entry, mp_process_start, and below them how the test
     * runner started the case: none of them is the program's crash. */
    check_absent(r, "mp__child_main");
    check_absent(r, "mp_process_start");
    check_absent(r, " in main");
    if (EXPECT_LINES)
        check_absent(r, "/src/");
    CHECK_CONTAINS(r, "hidden: MPROC_BACKTRACE=full shows them)");

    setenv("MPROC_BACKTRACE", "full", 1);
    crash_report(user_target, NULL, r, sizeof r);
    CHECK_CONTAINS(r, "user_fault");
    CHECK_CONTAINS(r, " in mp__child_main");
    CHECK_CONTAINS(r, " in mp_process_start");
    if (EXPECT_LINES)
        CHECK_CONTAINS(r, "/src/child.c:");
    check_absent(r, "frames of mproc");
}

/* A pool's task crashes: its worker's own frames (the claim loop, running
 * the unit) are mproc's, and hidden. */
static int crashing_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    return user_fault() + 1; /* not a tail call */
}

TEST(a_pool_task_report_shows_the_task_not_the_worker)
{
    mp_log_set_level(MP_LOG_OFF);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    mp_future *f = mp_pool_apply_async(p, crashing_task, NULL, 0);
    CHECK_NOT_NULL(f);
    CHECK_ERR(mp_future_get(f, NULL, 0, NULL, 30.0), MP_EWORKER);
    const char *r = mp_future_report(f);
    CHECK_CONTAINS(r, "user_fault");
    CHECK_CONTAINS(r, "crashing_task");
    check_absent(r, "mp__");
    if (EXPECT_LINES) {
        /* Static functions of the pool, known by their source files. */
        check_absent(r, "/src/pool/");
        CHECK_CONTAINS(r, "frames of mproc");
    }
    mp_future_free(f);
    mp_pool_free(p);
}

/* The module, loaded by "<dir>/../<last part of dir>/<file>". */
static int (*module_crash)(void *);

static int call_module(void *arg)
{
    return module_crash(arg) + 1;
}

TEST(module_paths_are_canonical)
{
    char canon[PATH_MAX], dir[PATH_MAX], base[PATH_MAX], winding[3 * PATH_MAX + 8];
    CHECK_NOT_NULL(realpath(MPT_CRASH_MODULE, canon));
    snprintf(dir, sizeof dir, "%s", canon);
    snprintf(base, sizeof base, "%s", canon);
    char *d = dirname(dir), *b = basename(base);
    char last[PATH_MAX];
    snprintf(last, sizeof last, "%s", d);
    snprintf(winding, sizeof winding, "%s/../%s/./%s", d, basename(last), b);
    void *h = dlopen(winding, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        mpt_fail(__FILE__, __LINE__, "dlopen(%s): %s", winding, dlerror());
    *(void **)&module_crash = dlsym(h, "mpt_module_crash");
    CHECK_NOT_NULL(module_crash);

    setenv("MPROC_BACKTRACE", "full", 1); /* every frame with its module */
    char r[8192], want[PATH_MAX + 8];
    crash_report(call_module, NULL, r, sizeof r);
    snprintf(want, sizeof want, "(%s)", canon);
    CHECK_CONTAINS(r, " in mpt_module_crash");
    CHECK_CONTAINS(r, want);
    check_absent(r, "/../");
    check_absent(r, "/./");
    if (EXPECT_LINES)
        CHECK_CONTAINS(r, "/tests/mpt_crash_module.c:");
    dlclose(h);
}

MPT_MAIN()
