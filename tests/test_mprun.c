/*
 * test_mprun.c - the launcher: exit statuses, a crashing rank, keep-going,
 * signal forwarding, tagged output, mp_comm_abort, time limits, usage
 * errors, and one binary that runs alone or as ranks.
 *
 * The ranks are this very executable, run by mprun with "--rank WHAT ...":
 * main() plays the rank then instead of running the cases.
 */
#include "mp_test.h"

#include "mpt_helpers.h"

#include <fcntl.h>
#include <libgen.h>

/* ---- the rank side ---------------------------------------------------------------- */

static int rank_mode(int argc, char **argv)
{
    mp_comm *w;
    int rc = mp_comm_world(&w);
    if (rc < 0) {
        fprintf(stderr, "rank: no world: %s\n", mp_err_name(rc));
        return 100;
    }
    int r = mp_comm_rank(w), n = mp_comm_size(w);
    const char *what = argv[2];
    int who = argc > 3 ? atoi(argv[3]) : -1, code = argc > 4 ? atoi(argv[4]) : 0;
    char b;
    if (strcmp(what, "hello") == 0 || strcmp(what, "size") == 0) {
        printf("%s from %d of %d\n", what, r, n);
        return mp_comm_barrier(w, 10) == 0 ? 0 : 101;
    }
    if (strcmp(what, "wait") == 0) {
        printf("ready %d\n", r);
        fflush(stdout);
        return mp_comm_recv(w, &b, 1, MP_ANY_SOURCE, 1, NULL, MP_FOREVER) == 0 ? 0 : 102;
    }
    if (r == who) {
        if (strcmp(what, "exit") == 0)
            return code;
        if (strcmp(what, "crash") == 0 || strcmp(what, "keep") == 0)
            abort(); /* not SIGSEGV: AddressSanitizer would catch that one */
        if (strcmp(what, "abort") == 0)
            mp_comm_abort(w, code);
    }
    rc = mp_comm_recv(w, &b, 1, MP_ANY_SOURCE, 1, NULL, MP_FOREVER);
    if (strcmp(what, "keep") == 0 && rc == MP_EPEERDEAD) {
        printf("rank %d saw MP_EPEERDEAD\n", r);
        return 7;
    }
    return 103;
}

/* ---- running mprun ------------------------------------------------------------------ */

static char self_path[PATH_MAX], mprun_path[PATH_MAX + 32];

static void find_paths(void)
{
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    CHECK(n > 0);
    self_path[n] = '\0';
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", self_path);
    /* build/tests/test_mprun -> build/tools/mprun */
    snprintf(mprun_path, sizeof mprun_path, "%s/tools/mprun", dirname(dirname(dir)));
    CHECK_EQ(access(mprun_path, X_OK), 0);
}

typedef struct result {
    int status; /* exit status, or 128 + the signal */
    char out[16384], err[16384];
    size_t nout, nerr;
} result;

typedef struct job {
    pid_t pid;
    int out, err;
} job;

/* Starts mprun with args (NULL-terminated, after "mprun"). */
static job start(const char *const *args)
{
    const char *argv[32] = {mprun_path};
    size_t n = 1;
    for (; args[n - 1] && n < 31; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    int o[2], e[2];
    CHECK_EQ(pipe2(o, O_CLOEXEC), 0);
    CHECK_EQ(pipe2(e, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(o[1], 1);
        dup2(e[1], 2);
        execv(mprun_path, (char *const *)argv);
        _exit(126);
    }
    close(o[1]);
    close(e[1]);
    return (job){pid, o[0], e[0]};
}

static void take(int fd, char *buf, size_t cap, size_t *len, int *open_)
{
    ssize_t k = read(fd, buf + *len, cap - 1 - *len);
    if (k > 0)
        *len += (size_t)k;
    else
        *open_ = 0;
    buf[*len] = '\0';
}

/* Reads stdout until it holds `lines` lines (0: skip), then returns. */
static void read_lines(job *j, result *r, int lines)
{
    double end = mpt_now() + 30;
    int open_ = 1;
    for (;;) {
        int count = 0;
        for (size_t i = 0; i < r->nout; i++)
            count += r->out[i] == '\n';
        if (count >= lines || !open_ || mpt_now() > end)
            break;
        struct pollfd p = {.fd = j->out, .events = POLLIN};
        if (poll(&p, 1, 100) > 0)
            take(j->out, r->out, sizeof r->out, &r->nout, &open_);
    }
}

/* Collects the rest of the output and the status (30 s at most). */
static void finish(job *j, result *r)
{
    int oo = 1, eo = 1;
    double end = mpt_now() + 30;
    while ((oo || eo) && mpt_now() < end) {
        struct pollfd p[2] = {{.fd = j->out, .events = POLLIN}, {.fd = j->err, .events = POLLIN}};
        if (poll(p, 2, 100) <= 0)
            continue;
        if (p[0].revents)
            take(j->out, r->out, sizeof r->out, &r->nout, &oo);
        if (p[1].revents)
            take(j->err, r->err, sizeof r->err, &r->nerr, &eo);
    }
    int st;
    CHECK_EQ(waitpid(j->pid, &st, 0), j->pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    close(j->out);
    close(j->err);
}

static void run(const char *const *args, result *r)
{
    memset(r, 0, sizeof *r);
    find_paths();
    job j = start(args);
    finish(&j, r);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- the cases ----------------------------------------------------------------------- */

TEST(mprun_tags_output)
{
    result r;
    find_paths();
    run(ARGS("-n", "3", "--tag-output", self_path, "--rank", "hello"), &r);
    CHECK_EQ(r.status, 0);
    CHECK_CONTAINS(r.out, "[0] hello from 0 of 3\n");
    CHECK_CONTAINS(r.out, "[1] hello from 1 of 3\n");
    CHECK_CONTAINS(r.out, "[2] hello from 2 of 3\n");
}

TEST(mprun_same_binary_alone_or_ranks)
{
    result r;
    find_paths();
    run(ARGS("-n", "2", self_path, "--rank", "size"), &r);
    CHECK_EQ(r.status, 0);
    CHECK_CONTAINS(r.out, "size from 0 of 2");
    CHECK_CONTAINS(r.out, "size from 1 of 2");
    /* The same program started plainly is a world of one. */
    fflush(NULL);
    int p[2];
    CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        execl(self_path, self_path, "--rank", "size", (char *)NULL);
        _exit(126);
    }
    close(p[1]);
    char buf[256] = {0};
    size_t len = 0;
    int open_ = 1;
    while (open_)
        take(p[0], buf, sizeof buf, &len, &open_);
    close(p[0]);
    reap_ok(pid);
    CHECK_STREQ(buf, "size from 0 of 1\n");
}

TEST(mprun_exit_status_of_failed_rank)
{
    result r;
    find_paths();
    run(ARGS("-n", "3", self_path, "--rank", "exit", "1", "5"), &r);
    CHECK_EQ(r.status, 5);
    CHECK_CONTAINS(r.err, "rank 1");
    CHECK_CONTAINS(r.err, "exited with status 5");
    CHECK_CONTAINS(r.err, "other ranks were stopped");
}

TEST(mprun_names_crashed_rank)
{
    result r;
    find_paths();
    run(ARGS("-n", "3", self_path, "--rank", "crash", "2"), &r);
    CHECK_EQ(r.status, 128 + SIGABRT);
    CHECK_CONTAINS(r.err, "mprun: rank 2: process 'rank-2'");
    CHECK_CONTAINS(r.err, "killed by SIGABRT");
    CHECK_CONTAINS(r.err, "rank 2 failed: the other ranks were stopped");
}

TEST(mprun_keep_going)
{
    result r;
    find_paths();
    run(ARGS("-n", "3", "--keep-going", self_path, "--rank", "keep", "1"), &r);
    /* The others ran on, saw the dead rank, and ended on their own. */
    CHECK_EQ(r.status, 128 + SIGABRT);
    CHECK_CONTAINS(r.out, "rank 0 saw MP_EPEERDEAD");
    CHECK_CONTAINS(r.out, "rank 2 saw MP_EPEERDEAD");
    CHECK_CONTAINS(r.err, "exited with status 7");
}

static void forwards(int signo)
{
    result r;
    memset(&r, 0, sizeof r);
    find_paths();
    job j = start(ARGS("-n", "2", "--tag-output", self_path, "--rank", "wait"));
    /* Both ranks said they are ready (and wait forever). */
    read_lines(&j, &r, 2);
    CHECK_CONTAINS(r.out, "[0] ready 0");
    CHECK_CONTAINS(r.out, "[1] ready 1");
    CHECK_EQ(kill(j.pid, signo), 0);
    finish(&j, &r);
    CHECK_EQ(r.status, 128 + signo);
    CHECK_CONTAINS(r.err, signo == SIGTERM ? "killed by SIGTERM" : "killed by SIGINT");
}

TEST(mprun_forwards_sigterm)
{
    forwards(SIGTERM);
}

TEST(mprun_forwards_sigint)
{
    forwards(SIGINT);
}

TEST(mprun_abort)
{
    result r;
    find_paths();
    run(ARGS("-n", "3", self_path, "--rank", "abort", "1", "9"), &r);
    CHECK_EQ(r.status, 9);
    CHECK_CONTAINS(r.err, "mp_comm_abort(9)");
}

TEST(mprun_time_limit)
{
    result r;
    find_paths();
    run(ARGS("-n", "2", "--timeout", "0.3", self_path, "--rank", "wait"), &r);
    CHECK_EQ(r.status, 124);
    CHECK_CONTAINS(r.err, "time limit");
}

TEST(mprun_usage_errors)
{
    result r;
    find_paths();
    run(ARGS("-n", "0", self_path), &r);
    CHECK_EQ(r.status, 2);
    run(ARGS("--no-such-option", self_path), &r);
    CHECK_EQ(r.status, 2);
    run(ARGS("-n", "2", "/nonexistent/program"), &r);
    CHECK_EQ(r.status, 127);
    CHECK_CONTAINS(r.err, "cannot run /nonexistent/program");
    const char *none[] = {NULL};
    run(none, &r);
    CHECK_EQ(r.status, 2);
    CHECK_CONTAINS(r.err, "usage: mprun");
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--rank") == 0)
        return rank_mode(argc, argv);
    return mpt_run(argc, argv);
}
