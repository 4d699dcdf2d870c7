/*
 * 02_crash_report.c - a child that segfaults, and the report its parent gets.
 *
 * In Python an exception in a child prints a traceback; in C a bad pointer
 * kills the process.  mproc turns that into a value for the parent: the
 * exit code is -SIGSEGV, and the report names the signal, the faulting
 * address and the functions on the crashing thread's stack.  The parent
 * itself is untouched and carries on.  A child that returns an error code
 * is reported the same way.
 */
#include <mproc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct record {
    const char *name;
    int *value;
};

/* A parser that trusts its input a little too much. */
__attribute__((noinline)) static int parse_record(const struct record *r)
{
    return *r->value + (int)strlen(r->name);
}

static int risky_task(void *arg)
{
    (void)arg;
    struct record broken = {"sensor-7", NULL};
    printf("  child %d parses a record...\n", (int)getpid());
    fflush(stdout);
    return parse_record(&broken);
}

static int failing_task(void *arg)
{
    (void)arg;
    return MP_ETIMEDOUT; /* an error code, reported as such */
}

int main(void)
{
    /* The report is printed below from mp_process_report(); keep the log
     * for other things. */
    mp_log_set_level(MP_LOG_CRITICAL);

    mp_process *p;
    if (mp_process_new(risky_task, NULL, "parser", &p) < 0 || mp_process_start(p) < 0)
        return 1;
    int rc = mp_process_join(p, 10.0);
    int code = 0;
    mp_process_exitcode(p, &code);
    printf("parent: join -> %s, exit code %d (-SIGSEGV is %d)\n", mp_err_name(rc), code, -SIGSEGV);
    printf("parent: the child's report:\n%s\n", mp_process_report(p));
    int ok = code == -SIGSEGV && strstr(mp_process_report(p), "parse_record");
    mp_process_free(p);

    if (mp_process_new(failing_task, NULL, "fetcher", &p) < 0 || mp_process_start(p) < 0)
        return 1;
    mp_process_join(p, 10.0);
    int err = 0;
    mp_process_exitcode(p, &code);
    mp_process_error(p, &err);
    printf("parent: 'fetcher' exit code %d, error %s\n  %s\n", code, mp_err_name(err),
           mp_process_report(p));
    ok &= err == MP_ETIMEDOUT;
    mp_process_free(p);

    printf("parent: still alive and well\n");
    return ok ? 0 : 1;
}
