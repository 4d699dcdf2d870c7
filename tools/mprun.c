/*
 * mprun.c - runs a program as N ranks on this machine, connected through
 * shared memory: mpiexec for mproc's local engine.
 *
 *   mprun -n N [--tag-output] [--keep-going] [--timeout SECS] [--bind-to core|none]
 *         prog [args...]
 *
 * Exit status: 0 when every rank exited with 0; otherwise that of the rank
 * that failed first (its status, or 128 + the signal that ended it), or
 * with --keep-going the worst of all; the code given to mp_comm_abort; 124
 * when --timeout ran out; 2 for a usage error.
 *
 * When a rank dies or exits nonzero, the others are stopped (SIGTERM, then
 * SIGKILL after a second) unless --keep-going, and mprun names the rank and
 * prints its report.  SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
 * sent to mprun are forwarded to every rank; a Ctrl-C at the terminal
 * reaches the ranks directly (they share mprun's process group) and is not
 * sent twice.  With --tag-output every line a rank prints is prefixed with
 * "[rank] ".  Rank 0 reads mprun's standard input; the others /dev/null.
 * With no more ranks than CPUs, rank k is bound to the k-th CPU mprun may
 * use, as mpiexec does (--bind-to none leaves them free).
 */
#define _GNU_SOURCE
#include "comm/launch.h"
#include "comm/local.h"

#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <unistd.h>

#define EXIT_USAGE   2
#define EXIT_TIMEOUT 124

static int sig_pipe[2] = {-1, -1};

static void on_signal(int signo, siginfo_t *si, void *uctx)
{
    (void)uctx;
    /* A signal from the terminal (the kernel: si_code > 0) reached every
     * rank of the process group already; only one sent to mprun alone is
     * passed on. */
    if (si && si->si_code > 0)
        return;
    int saved = errno;
    unsigned char b = (unsigned char)signo;
    (void)!write(sig_pipe[1], &b, 1);
    errno = saved;
}

static int install_signals(void)
{
    if (mp__pipe(sig_pipe, O_NONBLOCK) < 0)
        return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0)
            return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* ---- tagged output ---------------------------------------------------------------- */

typedef struct stream {
    int fd; /* read end, -1 once closed */
    int rank;
    FILE *to;
    char *buf;
    size_t len, cap;
} stream;

static void emit(stream *st, const char *line, size_t len)
{
    fprintf(st->to, "[%d] %.*s\n", st->rank, (int)len, line);
}

/* Reads what is there and prints the complete lines.  At the end of the
 * stream a last line without a newline is printed too. */
static void pump(stream *st)
{
    char chunk[4096];
    ssize_t n;
    while ((n = read(st->fd, chunk, sizeof chunk)) > 0) {
        if (st->len + (size_t)n > st->cap) {
            size_t cap = st->cap ? st->cap : 4096;
            while (cap < st->len + (size_t)n)
                cap *= 2;
            char *b = realloc(st->buf, cap);
            if (!b)
                break; /* out of memory: drop this chunk, keep going */
            st->buf = b;
            st->cap = cap;
        }
        memcpy(st->buf + st->len, chunk, (size_t)n);
        st->len += (size_t)n;
        size_t start = 0;
        for (size_t i = 0; i < st->len; i++) {
            if (st->buf[i] == '\n') {
                emit(st, st->buf + start, i - start);
                start = i + 1;
            }
        }
        memmove(st->buf, st->buf + start, st->len - start);
        st->len -= start;
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        if (st->len)
            emit(st, st->buf, st->len);
        st->len = 0;
        close(st->fd);
        st->fd = -1;
    }
    fflush(st->to);
}

/* Two pipes per rank; the write ends go to the ranks (io), the read ends
 * stay here, non-blocking. */
static stream *make_streams(int n, int **io)
{
    stream *sts = calloc((size_t)n * 2, sizeof *sts);
    int *w = calloc((size_t)n * 2, sizeof *w);
    int made = 0;
    for (; sts && w && made < 2 * n; made++) {
        int fds[2];
        if (mp__pipe(fds, 0) < 0)
            break;
        (void)mp__set_nonblock(fds[0], true);
        sts[made] = (stream){.fd = fds[0], .rank = made / 2, .to = made % 2 ? stderr : stdout};
        w[made] = fds[1];
    }
    if (sts && w && made == 2 * n) {
        *io = w;
        return sts;
    }
    for (int i = 0; i < made; i++) {
        close(sts[i].fd);
        close(w[i]);
    }
    free(sts);
    free(w);
    return NULL;
}

/* ---- the run ---------------------------------------------------------------------- */

typedef struct run {
    mp__rankset *s;
    int n;
    stream *sts;
    bool timed_out;
} run;

/* Forwards the signals that arrived. */
static void forward(run *r)
{
    unsigned char b[16];
    ssize_t k;
    while ((k = read(sig_pipe[0], b, sizeof b)) > 0)
        for (ssize_t i = 0; i < k; i++)
            mp__rankset_signal(r->s, b[i]);
}

/* Watches until every rank ended, pumping output and forwarding signals. */
static void supervise(run *r, int64_t deadline)
{
    size_t nx = 1 + (r->sts ? 2 * (size_t)r->n : 0);
    struct pollfd *x = calloc(nx, sizeof *x);
    if (!x)
        return;
    for (;;) {
        x[0] = (struct pollfd){.fd = sig_pipe[0], .events = POLLIN};
        for (size_t i = 1; i < nx; i++)
            x[i] = (struct pollfd){.fd = r->sts[i - 1].fd, .events = POLLIN};
        int rc = mp__rankset_wait(r->s, x, nx, deadline);
        if (x[0].revents)
            forward(r);
        for (size_t i = 1; i < nx; i++)
            if (x[i].revents && r->sts[i - 1].fd >= 0)
                pump(&r->sts[i - 1]);
        if (rc == MP_ETIMEDOUT) {
            fprintf(stderr, "mprun: time limit reached: stopping the ranks\n");
            r->timed_out = true;
            deadline = MP__NO_DEADLINE;
            mp__rankset_stop(r->s);
        } else if (rc <= 0) {
            break;
        }
    }
    free(x);
    /* What the ranks wrote last, up to the end of each stream (a process
     * they left behind that holds a pipe is not waited for). */
    for (int i = 0; r->sts && i < 2 * r->n; i++) {
        if (r->sts[i].fd >= 0) {
            struct pollfd p = {.fd = r->sts[i].fd, .events = POLLIN};
            while (r->sts[i].fd >= 0 && poll(&p, 1, 100) > 0)
                pump(&r->sts[i]);
        }
    }
}

static int status_of(int code)
{
    return code < 0 ? 128 + (-code & 127) : code;
}

/* With --keep-going: the first death among the ranks, else the largest
 * exit status. */
static int worst_status(const run *r)
{
    int worst = 0;
    for (int k = 0; k < r->n; k++) {
        bool stopped;
        int code = mp__rankset_code(r->s, k, NULL, NULL, &stopped);
        if (stopped)
            continue;
        if (code < 0)
            return status_of(code);
        if (code > worst)
            worst = code;
    }
    return worst;
}

/* Prints what went wrong and returns mprun's exit status. */
static int verdict(const run *r, bool keep_going)
{
    int aborted = mp__rankset_aborted(r->s);
    int failed = mp__rankset_failed(r->s);
    for (int k = 0; k < r->n; k++) {
        const char *report;
        bool stopped;
        int code = mp__rankset_code(r->s, k, NULL, &report, &stopped);
        if (!stopped && code != 0)
            fprintf(stderr, "mprun: rank %d: %s\n", k, report ? report : "failed");
    }
    if (failed >= 0 && !keep_going)
        fprintf(stderr, "mprun: rank %d failed: the other ranks were stopped\n", failed);
    if (r->timed_out)
        return EXIT_TIMEOUT;
    if (aborted >= 0) {
        fprintf(stderr, "mprun: a rank called mp_comm_abort(%d)\n", aborted);
        return aborted ? aborted : 1;
    }
    if (failed >= 0 && !keep_going)
        return status_of(mp__rankset_code(r->s, failed, NULL, NULL, NULL));
    return worst_status(r);
}

static int mprun_main(int n, char **prog, bool tag, bool keep_going, bool bind, double timeout)
{
    if (install_signals() < 0) {
        perror("mprun: signals");
        return 1;
    }
    run r = {.n = n};
    int rc = mp__rankset_new(n, keep_going, bind && n <= mp_cpu_count(), &r.s);
    if (rc < 0) {
        fprintf(stderr, "mprun: %s\n", mp_strerror(rc));
        return 1;
    }
    int *io = NULL;
    if (tag && !(r.sts = make_streams(n, &io))) {
        fprintf(stderr, "mprun: cannot make the output pipes\n");
        mp__rankset_free(r.s);
        return 1;
    }
    fflush(NULL);
    rc = mp__rankset_start_exec(r.s, prog, io);
    for (int i = 0; io && i < 2 * n; i++)
        close(io[i]);
    free(io);
    if (rc < 0) {
        fprintf(stderr, "mprun: cannot start the ranks: %s\n", mp_strerror(rc));
        mp__rankset_stop(r.s);
    }
    supervise(&r, rc < 0 ? MP__NO_DEADLINE : mp__deadline(timeout));
    int status = rc < 0 ? 1 : verdict(&r, keep_going);
    for (int i = 0; r.sts && i < 2 * n; i++) {
        if (r.sts[i].fd >= 0)
            close(r.sts[i].fd);
        free(r.sts[i].buf);
    }
    free(r.sts);
    mp__rankset_free(r.s);
    return status;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mprun -n N [--tag-output] [--keep-going] [--timeout SECS] "
               "[--bind-to core|none] program [args...]\n"
               "Runs N copies of program as the ranks of one mproc world on this machine.\n");
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"np", required_argument, NULL, 'n'},      {"tag-output", no_argument, NULL, 't'},
        {"keep-going", no_argument, NULL, 'k'},    {"timeout", required_argument, NULL, 'T'},
        {"bind-to", required_argument, NULL, 'B'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0}};
    int n = 1, opt;
    bool tag = false, keep_going = false, bind = true;
    double timeout = MP_FOREVER;
    while ((opt = getopt_long(argc, argv, "+n:h", longs, NULL)) != -1) {
        char *end = NULL;
        switch (opt) {
        case 'n':
            n = (int)strtol(optarg, &end, 10);
            if (*end || n < 1 || n > MP__L_MAX_RANKS) {
                fprintf(stderr, "mprun: -n wants 1 to %d ranks\n", MP__L_MAX_RANKS);
                return EXIT_USAGE;
            }
            break;
        case 't':
            tag = true;
            break;
        case 'k':
            keep_going = true;
            break;
        case 'T':
            timeout = strtod(optarg, &end);
            if (*end || !(timeout > 0)) {
                fprintf(stderr, "mprun: --timeout wants a number of seconds\n");
                return EXIT_USAGE;
            }
            break;
        case 'B':
            if (strcmp(optarg, "core") != 0 && strcmp(optarg, "none") != 0) {
                fprintf(stderr, "mprun: --bind-to wants core or none\n");
                return EXIT_USAGE;
            }
            bind = strcmp(optarg, "core") == 0;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("mprun (mproc) %s\n", mp_version_string());
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    return mprun_main(n, argv + optind, tag, keep_going, bind, timeout);
}
