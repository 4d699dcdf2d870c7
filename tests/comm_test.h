/*
 * comm_test.h - checks inside ranks, for the comm tests.  Include after
 * mp_test.h.
 *
 * A rank is a process mp_run started: a failed check there must not
 * exit() from the middle of the library (the harness's CHECK does), but
 * return a nonzero status, which mp_run hands back to the case.  So rank
 * functions check with R_* macros, which print what failed with the
 * rank's number and return 1; the case then checks mp_run's result.
 */
#ifndef MPROC_COMM_TEST_H
#define MPROC_COMM_TEST_H

#include <stdarg.h>

static int rk_me = -1;

__attribute__((format(printf, 3, 4))) static int rk_fail(const char *file, int line,
                                                         const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: rank %d: FAILED: ", file, line, rk_me);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    return 1;
}

#define RK_CHECK(cond)                                              \
    do {                                                            \
        if (!(cond))                                                \
            return rk_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); \
    } while (0)

#define RK_EQ(a, b)                                                                           \
    do {                                                                                      \
        long long r_a_ = (long long)(a), r_b_ = (long long)(b);                               \
        if (r_a_ != r_b_)                                                                     \
            return rk_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, r_a_, r_b_); \
    } while (0)

#define RK_OK(expr)                                                              \
    do {                                                                         \
        int r_rc_ = (int)(expr);                                                 \
        if (r_rc_ < 0)                                                           \
            return rk_fail(__FILE__, __LINE__, "%s failed: %d %s", #expr, r_rc_, \
                           mp_err_name(r_rc_));                                  \
    } while (0)

#define RK_ERR(expr, code)                                                                     \
    do {                                                                                       \
        int r_rc_ = (int)(expr), r_want_ = (int)(code);                                        \
        if (r_rc_ != r_want_)                                                                  \
            return rk_fail(__FILE__, __LINE__, "%s returned %d %s, expected %s", #expr, r_rc_, \
                           mp_err_name(r_rc_), mp_err_name(r_want_));                          \
    } while (0)

/* A helper that returns 0 or a failure status. */
#define RK_PASS(expr)       \
    do {                    \
        int r_st_ = (expr); \
        if (r_st_ != 0)     \
            return r_st_;   \
    } while (0)

/* Sanitizers make every copy and check several times slower: the largest
 * sizes shrink there (the paths they take are the same). */
#if defined(__SANITIZE_ADDRESS__)
#define RK_SLOW 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RK_SLOW 1
#endif
#endif
#ifndef RK_SLOW
#define RK_SLOW 0
#endif

#endif /* MPROC_COMM_TEST_H */
