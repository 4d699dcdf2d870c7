/*
 * launch.c - starting ranks and watching them (launch.h), and mp_run.
 *
 * Ranks are mproc processes (fork start method), so they die with their
 * launcher (PR_SET_PDEATHSIG), and a forked rank that crashes leaves its
 * crash report, which the process module logs when the rank is reaped.
 * An executed rank (mprun) loses the crash handler at exec: its report
 * says how it ended (the signal), without a backtrace.
 *
 * The launcher learns that a rank ended from its pidfd, peeks at how it
 * ended (waitid with WNOWAIT), marks it in the segment and rings every
 * bell, and only then reaps it: so a rank that reads a peer's pid while
 * the peer is still marked alive never reads a recycled one.
 */
#define _GNU_SOURCE
#include "launch.h"

#include "fork_guard.h"
#include "local.h"
#include "log.h"
#include "process.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

/* How long a stopped rank has between SIGTERM and SIGKILL. */
#define GRACE_NS 1000000000LL

typedef struct rank_arg {
    mp__rankset *s;
    int rank;
    mp_rank_fn fn;
    void *arg;
    char *const *argv;
    bool io;
} rank_arg;

struct mp__rankset {
    int n;
    int fd;
    void *base;
    size_t size;
    bool keep_going, bind;
    int running;
    int first_failed;
    int64_t kill_at; /* SIGKILL for the stopped ranks, 0: none due */
    mp_process **procs;
    rank_arg *args;
    int *codes, *errors;
    bool *ended, *stopped;
};

int mp__rankset_new(int n, bool keep_going, bool bind, mp__rankset **out)
{
    if (n < 1 || n > MP__L_MAX_RANKS)
        return MP_EINVAL;
    mp__rankset *s = calloc(1, sizeof *s);
    if (!s)
        return MP_ENOMEM;
    s->n = n;
    s->keep_going = keep_going;
    s->bind = bind;
    s->first_failed = -1;
    s->procs = calloc((size_t)n, sizeof(mp_process *));
    s->args = calloc((size_t)n, sizeof *s->args);
    s->codes = calloc((size_t)n, sizeof *s->codes);
    s->errors = calloc((size_t)n, sizeof *s->errors);
    s->ended = calloc((size_t)n, sizeof *s->ended);
    s->stopped = calloc((size_t)n, sizeof *s->stopped);
    int rc = s->procs && s->args && s->codes && s->errors && s->ended && s->stopped ? 0 : MP_ENOMEM;
    if (rc == 0)
        rc = mp__lseg_create(n, getpid(), &s->fd, &s->base, &s->size);
    if (rc < 0) {
        s->fd = -1;
        mp__rankset_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- starting ---------------------------------------------------------------------- */

static int rank_fork_main(void *p)
{
    rank_arg *a = p;
    mp_comm *world;
    if (a->s->bind)
        (void)mp__cpu_bind_nth(a->rank); /* best effort: unbound ranks work too */
    int rc = mp__comm_enter_forked(a->s->base, a->s->size, a->rank, &world);
    if (rc < 0)
        return rc;
    rc = a->fn(world, a->arg);
    (void)mp_comm_finalize();
    return rc;
}

static int set_env_int(const char *name, int v)
{
    char buf[16];
    snprintf(buf, sizeof buf, "%d", v);
    return setenv(name, buf, 1) == 0 ? 0 : -errno;
}

/* In the forked child: standard descriptors, environment, exec. */
static int rank_exec_main(void *p)
{
    rank_arg *a = p;
    int seg = mp_process_inherited_fd(0);
    if (a->s->bind)
        (void)mp__cpu_bind_nth(a->rank); /* kept across exec */
    if (a->io &&
        (dup2(mp_process_inherited_fd(1), 1) < 0 || dup2(mp_process_inherited_fd(2), 2) < 0))
        return -errno;
    if (a->rank > 0) {
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (nul >= 0 && nul != 0) {
            (void)dup2(nul, 0);
            close(nul);
        }
    }
    int rc = mp__set_cloexec(seg, false);
    if (rc == 0)
        rc = set_env_int("MPROC_COMM_FD", seg);
    if (rc == 0)
        rc = set_env_int("MPROC_COMM_RANK", a->rank);
    if (rc == 0)
        rc = set_env_int("MPROC_COMM_SIZE", a->s->n);
    if (rc < 0)
        return rc;
    execvp(a->argv[0], a->argv);
    fprintf(stderr, "mprun: cannot run %s: %s\n", a->argv[0], strerror(errno));
    fflush(stderr);
    return 127; /* as a shell says "not found" */
}

static int start_one(mp__rankset *s, int r, mp_target_fn target, const int *fds, size_t nfds)
{
    char name[32];
    snprintf(name, sizeof name, "rank-%d", r);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.name = name;
    o.fds = fds;
    o.nfds = nfds;
    mp_process *p;
    int rc = mp_process_new_opts(target, &s->args[r], &o, &p);
    if (rc < 0)
        return rc;
    rc = mp_process_start(p);
    if (rc < 0) {
        mp_process_free(p);
        return rc;
    }
    s->procs[r] = p;
    s->running++;
    return 0;
}

int mp__rankset_start_fn(mp__rankset *s, mp_rank_fn fn, void *arg)
{
    for (int r = 0; r < s->n; r++) {
        s->args[r] = (rank_arg){.s = s, .rank = r, .fn = fn, .arg = arg};
        int rc = start_one(s, r, rank_fork_main, NULL, 0);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int mp__rankset_start_exec(mp__rankset *s, char *const argv[], const int *io)
{
    for (int r = 0; r < s->n; r++) {
        s->args[r] = (rank_arg){.s = s, .rank = r, .argv = argv, .io = io != NULL};
        int fds[3] = {s->fd, io ? io[2 * (size_t)r] : -1, io ? io[2 * (size_t)r + 1] : -1};
        int rc = start_one(s, r, rank_exec_main, fds, io ? 3 : 1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- watching ---------------------------------------------------------------------- */

void mp__rankset_signal(mp__rankset *s, int signo)
{
    for (int r = 0; r < s->n; r++)
        if (s->procs[r] && !s->ended[r])
            (void)mp_process_signal(s->procs[r], signo);
}

void mp__rankset_stop(mp__rankset *s)
{
    bool any = false;
    for (int r = 0; r < s->n; r++) {
        if (s->procs[r] && !s->ended[r] && !s->stopped[r]) {
            s->stopped[r] = true;
            (void)mp_process_terminate(s->procs[r]);
            any = true;
        }
    }
    if (any && s->kill_at == 0)
        s->kill_at = mp__now_ns() + GRACE_NS;
}

/* Rank r's process has ended (its pidfd said so): mark, reap, decide. */
static void on_end(mp__rankset *s, int r)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)mp_process_pid(s->procs[r]), &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        si.si_pid == 0)
        return; /* not ended after all */
    bool clean = si.si_code == CLD_EXITED && si.si_status == 0;
    mp__lseg_mark(s->base, r, !clean);
    (void)mp_process_join(s->procs[r], MP_FOREVER);
    (void)mp_process_exitcode(s->procs[r], &s->codes[r]);
    (void)mp_process_error(s->procs[r], &s->errors[r]);
    s->ended[r] = true;
    s->running--;
    if (!clean && !s->stopped[r] && s->first_failed < 0)
        s->first_failed = r;
    if ((!clean && !s->keep_going) || mp__lseg_aborted(s->base) >= 0)
        mp__rankset_stop(s);
}

/* The poll timeout for the next wake-up: the deadline or the SIGKILL. */
static int poll_ms(const mp__rankset *s, int64_t deadline)
{
    int64_t until = deadline;
    if (s->kill_at && s->kill_at < until)
        until = s->kill_at;
    if (until == MP__NO_DEADLINE)
        return -1;
    int64_t left = mp__remaining_ns(until);
    return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

static void kill_due(mp__rankset *s)
{
    if (s->kill_at == 0 || mp__now_ns() < s->kill_at)
        return;
    for (int r = 0; r < s->n; r++)
        if (s->procs[r] && !s->ended[r])
            (void)mp_process_kill(s->procs[r]);
    s->kill_at = 0;
}

int mp__rankset_wait(mp__rankset *s, struct pollfd *extra, size_t nextra, int64_t deadline)
{
    size_t cap = (size_t)s->n + nextra;
    struct pollfd *pf = calloc(cap, sizeof *pf);
    int *who = calloc((size_t)s->n, sizeof *who);
    int rc = pf && who ? 0 : MP_ENOMEM;
    while (rc == 0 && s->running > 0) {
        size_t np = 0;
        for (int r = 0; r < s->n; r++) {
            int fd = s->procs[r] && !s->ended[r] ? mp__process_wait_fd(s->procs[r]) : -1;
            if (fd >= 0) {
                who[np] = r;
                pf[np++] = (struct pollfd){.fd = fd, .events = POLLIN};
            }
        }
        size_t nranks = np;
        for (size_t i = 0; i < nextra; i++)
            pf[np++] = (struct pollfd){.fd = extra[i].fd, .events = extra[i].events};
        int k = poll(pf, (nfds_t)np, poll_ms(s, deadline));
        if (k < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        for (size_t i = 0; k > 0 && i < nranks; i++)
            if (pf[i].revents)
                on_end(s, who[i]);
        kill_due(s);
        bool ready = false;
        for (size_t i = 0; i < nextra; i++) {
            extra[i].revents = k > 0 ? pf[nranks + i].revents : 0;
            ready = ready || extra[i].revents;
        }
        if (ready && s->running > 0)
            rc = s->running;
        else if (s->running > 0 && mp__remaining_ns(deadline) <= 0)
            rc = MP_ETIMEDOUT;
    }
    free(pf);
    free(who);
    return rc;
}

int mp__rankset_failed(const mp__rankset *s)
{
    return s->first_failed;
}

int mp__rankset_code(const mp__rankset *s, int r, int *error, const char **report, bool *stopped)
{
    if (error)
        *error = s->errors[r];
    if (report)
        *report = s->procs[r] ? mp_process_report(s->procs[r]) : NULL;
    if (stopped)
        *stopped = s->stopped[r];
    return s->codes[r];
}

int mp__rankset_aborted(const mp__rankset *s)
{
    return mp__lseg_aborted(s->base);
}

void mp__rankset_free(mp__rankset *s)
{
    if (!s)
        return;
    for (int r = 0; s->procs && r < s->n; r++) {
        if (s->procs[r] && !s->ended[r]) {
            (void)mp_process_kill(s->procs[r]);
            (void)mp_process_join(s->procs[r], MP_FOREVER);
        }
        mp_process_free(s->procs[r]);
    }
    if (s->base)
        mp__unmap(s->base, s->size);
    mp__close(s->fd);
    free(s->procs);
    free(s->args);
    free(s->codes);
    free(s->errors);
    free(s->ended);
    free(s->stopped);
    free(s);
}

/* ---- mp_run -------------------------------------------------------------------------- */

/* One rank's outcome as mp_run reports it. */
static int outcome(const mp__rankset *s, int r)
{
    if (s->codes[r] < 0)
        return MP_EWORKER;
    if (s->errors[r] < 0)
        return s->errors[r];
    return s->codes[r];
}

/* The worst outcome over the ranks the set did not stop itself: a death,
 * then an error, then the largest exit status. */
static int worst(const mp__rankset *s)
{
    if (s->first_failed >= 0 && !s->keep_going)
        return outcome(s, s->first_failed);
    int err = 0, status = 0;
    for (int r = 0; r < s->n; r++) {
        int o = outcome(s, r);
        if (o == MP_EWORKER && !s->stopped[r])
            return MP_EWORKER;
        if (o < 0 && err == 0)
            err = o;
        if (o > status)
            status = o;
    }
    return err ? err : status;
}

int mp_run_with_opts(int n, mp_rank_fn fn, void *arg, const mp_run_opts *opts)
{
    mp_run_opts defaults = MP_RUN_OPTS_INIT;
    if (!opts)
        opts = &defaults;
    if (n < 1 || n > MP__L_MAX_RANKS)
        return mp__fail(MP_EINVAL, "mp_run_with_opts: n must be 1 to %d (got %d)", MP__L_MAX_RANKS,
                        n);
    MP__NONNULL(fn);
    if (opts->timeout != opts->timeout)
        return mp__fail(MP_EINVAL, "mp_run_with_opts: opts.timeout must be a number (got %g)",
                        opts->timeout);
    if (!mp__comm_fork_allowed())
        return mp__fail(MP_ENOTSUP, "mp_run_with_opts: the world's engine must allow fork");
    mp__rankset *s;
    int rc = mp__rankset_new(n, opts->keep_going, opts->bind && n <= mp_cpu_count(), &s);
    if (rc < 0)
        return rc;
    rc = mp__rankset_start_fn(s, fn, arg);
    if (rc < 0)
        mp__rankset_stop(s);
    int wrc = mp__rankset_wait(s, NULL, 0, rc < 0 ? MP__NO_DEADLINE : mp__deadline(opts->timeout));
    if (wrc == MP_ETIMEDOUT) {
        mp__rankset_stop(s);
        (void)mp__rankset_wait(s, NULL, 0, MP__NO_DEADLINE);
    }
    if (rc == 0)
        rc = wrc < 0 ? wrc : worst(s);
    for (int r = 0; opts->exitcodes && r < n; r++)
        opts->exitcodes[r] = s->ended[r] ? s->codes[r] : 0;
    mp__rankset_free(s);
    return rc;
}

int mp_run(int n, mp_rank_fn fn, void *arg)
{
    return mp_run_with_opts(n, fn, arg, NULL);
}
