/* Tests of the shared log: levels, destinations, and whole lines from many
 * processes at once. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <termios.h>

/* Reads a whole small file into a malloc'ed string. */
static char *slurp(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    fstat(fd, &st);
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t n = read(fd, buf, (size_t)st.st_size);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void temp_path(char *buf, size_t cap)
{
    char name[128];
    snprintf(buf, cap, "/tmp/%s.log", mpt_name(name, sizeof name, "log"));
}

TEST(levels_parse_and_filter)
{
    mp_log_level lv;
    CHECK_OK(mp_log_parse_level("debug", &lv));
    CHECK_EQ(lv, MP_LOG_DEBUG);
    CHECK_OK(mp_log_parse_level("WARNING", &lv));
    CHECK_EQ(lv, MP_LOG_WARNING);
    CHECK_OK(mp_log_parse_level("off", &lv));
    CHECK_EQ(lv, MP_LOG_OFF);
    CHECK_ERR(mp_log_parse_level("loud", &lv), MP_EINVAL);
    CHECK_ERR(mp_log_parse_level(NULL, &lv), MP_EINVAL);

    mp_log_set_level(MP_LOG_ERROR);
    CHECK_EQ(mp_log_get_level(), MP_LOG_ERROR);
    CHECK(mp_log_enabled(MP_LOG_CRITICAL));
    CHECK(mp_log_enabled(MP_LOG_ERROR));
    CHECK(!mp_log_enabled(MP_LOG_WARNING));
    mp_log_set_level(MP_LOG_OFF);
    CHECK(!mp_log_enabled(MP_LOG_CRITICAL));
}

TEST(level_and_file_from_the_environment)
{
    /* Each case is a fresh process that has not logged yet, so the
     * environment is read at the first line. */
    char path[256];
    temp_path(path, sizeof path);
    setenv("MPROC_LOG", "debug", 1);
    setenv("MPROC_LOG_FILE", path, 1);
    CHECK_EQ(mp_log_get_level(), MP_LOG_DEBUG);
    mp_log(MP_LOG_DEBUG, "hello %d", 42);
    char *text = slurp(path);
    CHECK_CONTAINS(text, "DEBUG [pid ");
    CHECK_CONTAINS(text, " MainProcess] hello 42\n");
    free(text);
    unlink(path);
}

TEST(line_format)
{
    char path[256];
    temp_path(path, sizeof path);
    CHECK_OK(mp_log_set_file(path));
    mp_log_set_level(MP_LOG_INFO);
    mp_log(MP_LOG_DEBUG, "not shown");
    mp_log(MP_LOG_WARNING, "disk %s at %d%%\n", "sda", 93); /* a trailing newline is not doubled */
    char *text = slurp(path);
    CHECK(strstr(text, "not shown") == NULL);
    /* 2026-11-22T09:14:03.512345Z WARNING [pid 4242 MainProcess] disk sda at 93% */
    int y, mo, d, h, mi, s, us, pid;
    char level[16], name[64];
    CHECK_EQ(sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ %15s [pid %d %63[^]]]", &y, &mo, &d, &h,
                    &mi, &s, &us, level, &pid, name),
             10);
    CHECK_STREQ(level, "WARNING");
    CHECK_EQ(pid, getpid());
    CHECK_STREQ(name, "MainProcess");
    CHECK_CONTAINS(text, "] disk sda at 93%\n");
    CHECK_EQ(strlen(text), (size_t)(strchr(text, '\n') - text) + 1);
    free(text);
    /* Back to stderr; the file is no longer written. */
    CHECK_OK(mp_log_set_file(NULL));
    CHECK_ERR(mp_log_set_fd(-1), MP_EBADF);
    CHECK_ERR(mp_log_set_file("/nonexistent-dir/x.log"), MP_ENOENT);
    unlink(path);
}

TEST(long_lines_stay_whole)
{
    char path[256];
    temp_path(path, sizeof path);
    CHECK_OK(mp_log_set_file(path));
    mp_log_set_level(MP_LOG_INFO);
    char *big = malloc(20000);
    memset(big, 'x', 19999);
    big[19999] = '\0';
    mp_log(MP_LOG_INFO, "<%s>", big);
    char *text = slurp(path);
    char *start = strchr(text, '<');
    CHECK(start != NULL);
    CHECK_EQ(strspn(start + 1, "x"), 19999);
    CHECK_EQ(start[20000], '>');
    CHECK_EQ(start[20001], '\n');
    free(text);
    free(big);
    unlink(path);
}

/* Many processes log at once to one file: every line arrives, whole. */
typedef struct spam_arg {
    int id;
    int lines;
} spam_arg;

static int spam(void *arg)
{
    spam_arg *a = arg;
    for (int i = 0; i < a->lines; i++)
        mp_log(MP_LOG_INFO, "writer %d line %d %s", a->id, i,
               "....................................................................");
    return 0;
}

TEST(lines_from_many_processes_never_interleave)
{
    enum { WRITERS = 8, LINES = 500 };
    char path[256];
    temp_path(path, sizeof path);
    CHECK_OK(mp_log_set_file(path));
    mp_log_set_level(MP_LOG_INFO);
    mp_process *ps[WRITERS];
    spam_arg args[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        args[i] = (spam_arg){i, LINES};
        char name[16];
        snprintf(name, sizeof name, "writer-%d", i);
        CHECK_OK(mp_process_new(spam, &args[i], name, &ps[i]));
        CHECK_OK(mp_process_start(ps[i]));
    }
    for (int i = 0; i < WRITERS; i++) {
        CHECK_OK(mp_process_join(ps[i], 60.0));
        int code = -1;
        CHECK_OK(mp_process_exitcode(ps[i], &code));
        CHECK_EQ(code, 0);
        mp_process_free(ps[i]);
    }
    char *text = slurp(path);
    int seen[WRITERS][LINES];
    memset(seen, 0, sizeof seen);
    int total = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        int id, n;
        char who[32];
        const char *body = strstr(line, "] writer ");
        CHECK(body != NULL);
        CHECK_EQ(sscanf(body, "] writer %d line %d", &id, &n), 2);
        CHECK(id >= 0 && id < WRITERS && n >= 0 && n < LINES);
        /* The process name in the line is the writer's own. */
        snprintf(who, sizeof who, " writer-%d] ", id);
        CHECK_CONTAINS(line, who);
        CHECK_CONTAINS(line,
                       "....................................................................");
        seen[id][n]++;
        total++;
    }
    CHECK_EQ(total, WRITERS * LINES);
    for (int i = 0; i < WRITERS; i++)
        for (int j = 0; j < LINES; j++)
            CHECK_EQ(seen[i][j], 1);
    free(text);
    unlink(path);
}

/* log.h: "the level comes from MPROC_LOG ... default warning". */
TEST(the_default_level_is_warning)
{
    unsetenv("MPROC_LOG");
    CHECK_EQ(mp_log_get_level(), MP_LOG_WARNING);
    CHECK(mp_log_enabled(MP_LOG_WARNING));
    CHECK(!mp_log_enabled(MP_LOG_INFO));
}

/* log.h: the environment's level counts "unless mp_log_set_level() was
 * called before". */
TEST(a_level_set_before_the_first_line_beats_the_environment)
{
    setenv("MPROC_LOG", "debug", 1);
    mp_log_set_level(MP_LOG_ERROR);
    mp_log(MP_LOG_WARNING, "first line");
    CHECK_EQ(mp_log_get_level(), MP_LOG_ERROR);
}

/* log.h, mp_log_set_fd: "Logs to fd" - and mp_vlog like mp_log. */
__attribute__((format(printf, 1, 2))) static void vlog_it(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mp_vlog(MP_LOG_ERROR, fmt, ap);
    va_end(ap);
}

TEST(lines_go_to_a_descriptor_of_the_callers)
{
    int p[2];
    CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    CHECK_OK(mp_log_set_fd(p[1]));
    mp_log_set_level(MP_LOG_INFO);
    mp_log(MP_LOG_INFO, "to the pipe %d", 1);
    vlog_it("and %s", "through mp_vlog");
    char buf[512] = {0};
    size_t got = 0;
    while (got < sizeof buf - 1 && !strstr(buf, "mp_vlog\n")) {
        ssize_t n = read(p[0], buf + got, sizeof buf - 1 - got);
        CHECK(n > 0);
        got += (size_t)n;
    }
    CHECK_CONTAINS(buf, "INFO [pid ");
    CHECK_CONTAINS(buf, "] to the pipe 1\n");
    CHECK_CONTAINS(buf, "ERROR [pid ");
    CHECK_CONTAINS(buf, "] and through mp_vlog\n");
    CHECK_OK(mp_log_set_fd(STDERR_FILENO));
    close(p[0]);
    close(p[1]); /* the library never closes it: this does not fail */
}

/* log.h, mp_log: "Never fails visibly: a line that cannot be written is
 * dropped" - not even when the destination is a pipe nobody reads any
 * more (a write there raises SIGPIPE, which would kill the process). */
TEST(a_line_that_cannot_be_written_is_dropped_quietly)
{
    int p[2];
    CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    close(p[0]);
    CHECK_OK(mp_log_set_fd(p[1]));
    mp_log(MP_LOG_ERROR, "into a pipe without a reader");
    mp_log(MP_LOG_ERROR, "and again");
    CHECK_OK(mp_log_set_fd(STDERR_FILENO));
    close(p[1]);
    /* SIGPIPE, had it been raised, is not left pending either. */
    sigset_t pending;
    CHECK_EQ(sigpending(&pending), 0);
    CHECK(!sigismember(&pending, SIGPIPE));
}

/* log.h: "Children inherit the destination and the level" - a fresh image
 * too (spawn), which has none of the parent's memory. */
static int log_in_child(void *arg)
{
    (void)arg;
    mp_log(MP_LOG_DEBUG, "child debug");
    mp_log(MP_LOG_INFO, "child info");
    return mp_log_get_level() == MP_LOG_INFO ? 0 : 1;
}

TEST(children_inherit_the_destination_and_the_level)
{
    char path[256];
    temp_path(path, sizeof path);
    CHECK_OK(mp_log_set_file(path));
    mp_log_set_level(MP_LOG_INFO);
    const mp_start_method methods[] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};
    for (size_t i = 0; i < MP__ARRAY_SIZE(methods); i++) {
        MPT_CONTEXT("start method %zu", i);
        mp_process_opts o = MP_PROCESS_OPTS_INIT;
        o.start_method = methods[i];
        o.name = "logger";
        mp_process *p = mpt_new_opts(log_in_child, NULL, &o);
        CHECK_OK(mp_process_start(p));
        CHECK_EQ(mpt_finish(p), 0);
        char *text = slurp(path);
        CHECK_CONTAINS(text, " logger] child info\n");
        CHECK(strstr(text, "child debug") == NULL);
        free(text);
        CHECK_EQ(truncate(path, 0), 0);
    }
    MPT_CONTEXT_CLEAR();
    CHECK_OK(mp_log_set_file(NULL));
    unlink(path);
}

/* ---- the status line ------------------------------------------------------ */

/* stderr on a pseudo-terminal, and what arrives at its other end, read by
 * a thread of its own so that no writer ever blocks on a full terminal -
 * or, for a case that starts a process and must stay single-threaded (a
 * thread would make the start use the forkserver, which would keep the
 * terminal open), read at the end: such a case writes a few lines only,
 * far less than the terminal holds. */
typedef struct tty_capture {
    int master, slave, saved_stderr;
    bool threaded;
    pthread_t reader;
    char *buf;
    size_t len, cap;
} tty_capture;

static void *capture_read(void *arg)
{
    tty_capture *c = arg;
    for (;;) {
        if (c->cap - c->len < 4096) {
            c->cap = c->cap ? 2 * c->cap : 65536;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t n = read(c->master, c->buf + c->len, c->cap - c->len - 1);
        if (n > 0)
            c->len += (size_t)n;
        else if (n == 0 || errno != EINTR)
            break; /* EIO once every slave descriptor is closed */
    }
    c->buf[c->len] = '\0';
    return NULL;
}

static void capture_begin(tty_capture *c, bool threaded)
{
    memset(c, 0, sizeof *c);
    c->threaded = threaded;
    c->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(c->master >= 0);
    CHECK_EQ(grantpt(c->master), 0);
    CHECK_EQ(unlockpt(c->master), 0);
    c->slave = open(ptsname(c->master), O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(c->slave >= 0);
    /* The bytes as written: no "\n" -> "\r\n" on the way. */
    struct termios t;
    CHECK_EQ(tcgetattr(c->slave, &t), 0);
    t.c_oflag &= ~(tcflag_t)OPOST;
    CHECK_EQ(tcsetattr(c->slave, TCSANOW, &t), 0);
    if (threaded)
        CHECK_EQ(pthread_create(&c->reader, NULL, capture_read, c), 0);
    c->saved_stderr = dup(STDERR_FILENO);
    CHECK(c->saved_stderr >= 0);
    CHECK_EQ(dup2(c->slave, STDERR_FILENO), STDERR_FILENO);
    CHECK(isatty(STDERR_FILENO));
}

/* Puts stderr back and returns what the terminal received. */
static const char *capture_stop(tty_capture *c)
{
    dup2(c->saved_stderr, STDERR_FILENO);
    close(c->saved_stderr);
    close(c->slave);
    if (c->threaded)
        CHECK_EQ(pthread_join(c->reader, NULL), 0);
    else
        capture_read(c); /* every slave end is closed: reads to EIO */
    close(c->master);
    return c->buf;
}

static void capture_start(tty_capture *c)
{
    capture_begin(c, true);
}

#define CLEAR "\r\033[K"

TEST(log_lines_go_above_the_status_line_on_a_terminal)
{
    mp_log_set_level(MP_LOG_INFO);
    tty_capture c;
    capture_start(&c);
    mp__log_status_set(" 42%|####| 42/100", false);
    mp_log(MP_LOG_WARNING, "between");
    mp__log_status_set("100%|########| 100/100", true); /* stays, as a line */
    mp_log(MP_LOG_WARNING, "after");
    const char *out = capture_stop(&c);

    /* The bar, then: clear it, the line, the bar again. */
    const char *first = "\r 42%|####| 42/100\033[K" CLEAR;
    if (strncmp(out, first, strlen(first)) != 0)
        mpt_fail(__FILE__, __LINE__, "the terminal got \"%s\"", out);
    CHECK_CONTAINS(out, " WARNING [pid ");
    CHECK_CONTAINS(out, " MainProcess] between\n 42%|####| 42/100"
                        "\r100%|########| 100/100\033[K\n");
    /* Once the status is final, lines go out alone. */
    const char *after = strstr(out, "100/100\033[K\n");
    CHECK_NOT_NULL(after);
    after += strlen("100/100\033[K\n");
    CHECK_EQ(after[0], '2'); /* the year of the timestamp: no clear first */
    CHECK_CONTAINS(after, " MainProcess] after\n");
    CHECK_EQ(strlen(strstr(after, "] after\n")), strlen("] after\n"));
    free(c.buf);
}

TEST(a_status_line_off_a_terminal_is_a_line_per_update)
{
    int pfd[2];
    CHECK_EQ(pipe2(pfd, O_CLOEXEC | O_NONBLOCK), 0);
    int saved = dup(STDERR_FILENO);
    dup2(pfd[1], STDERR_FILENO);
    mp_log_set_level(MP_LOG_INFO);
    mp__log_status_set("10%|#", false);
    mp_log(MP_LOG_WARNING, "plain");
    mp__log_status_set("20%|##", false);
    mp__log_status_clear(); /* nothing to erase off a terminal */
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[1024];
    ssize_t n = read(pfd[0], buf, sizeof buf - 1);
    close(pfd[0]);
    close(pfd[1]);
    CHECK(n > 0);
    buf[n] = '\0';
    CHECK_EQ(strncmp(buf, "10%|#\n", 6), 0);
    CHECK_CONTAINS(buf, " MainProcess] plain\n20%|##\n");
    CHECK(strchr(buf, '\r') == NULL);
    CHECK(strchr(buf, '\033') == NULL);
}

/* A child's lines are its own: they carry its name and never redraw the
 * status line its parent shows (they may run into it; the parent's next
 * update redraws it). */
static int child_logs(void *arg)
{
    (void)arg;
    mp_log(MP_LOG_WARNING, "from the child");
    return 0;
}

TEST(status_clear_erases_it_and_children_keep_their_names)
{
    mp_log_set_level(MP_LOG_INFO);
    tty_capture c;
    capture_begin(&c, false);
    mp__log_status_set("50%|##", false);
    mp_process *p = NULL;
    CHECK_OK(mp_process_new(child_logs, NULL, "logger", &p));
    CHECK_OK(mp_process_start(p));
    CHECK_OK(mp_process_join(p, 30.0));
    mp_process_free(p);
    mp__log_status_clear();
    mp_log(MP_LOG_WARNING, "cleared");
    const char *out = capture_stop(&c);
    CHECK_CONTAINS(out, " logger] from the child\n");
    /* The child wrote its line alone: no redraw of the parent's status. */
    CHECK(strstr(out, "from the child\n50%") == NULL);
    /* Erased, then a line with nothing around it. */
    CHECK_CONTAINS(out, CLEAR "2");
    CHECK_EQ(strlen(strstr(out, "] cleared\n")), strlen("] cleared\n"));
    free(c.buf);
}

/* The pool's progress bar draws through the status line: a line logged
 * while it shows (from the progress callback, which runs just before each
 * redraw) goes above it, never into it. */
static int spin_item(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    volatile unsigned long x = 0;
    for (int i = 0; i < 100000; i++)
        x += (unsigned long)i;
    *(int *)out = *(const int *)in + (int)(x & 0);
    return 0;
}

static _Atomic int progress_lines;

static void log_progress(size_t done, size_t total, void *ctx)
{
    (void)ctx;
    mp_log(MP_LOG_WARNING, "progress %zu of %zu", done, total);
    atomic_fetch_add(&progress_lines, 1);
}

TEST(the_pools_progress_bar_is_never_torn_by_a_log_line)
{
    mp_log_set_level(MP_LOG_INFO);
    tty_capture c;
    capture_start(&c);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.progress = log_progress;
    o.progress_bar = true;
    o.progress_interval = 0.01;
    /* The capture's reader is a thread of the program's: the default would
     * be the forkserver, which outlives the pool and keeps the terminal
     * open, so the capture would never see its end.  Spawned workers are
     * the pool's, and gone when it is freed. */
    o.start_method = MP_START_SPAWN;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    enum { N = 600 };
    int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    CHECK_OK(mp_pool_map(p, spin_item, in, N, sizeof in[0], out, sizeof out[0], 5));
    mp_pool_free(p); /* runs the reports still queued */
    const char *text = capture_stop(&c);
    CHECK_GE(atomic_load(&progress_lines), 2);
    CHECK_CONTAINS(text, "100%|");
    CHECK_CONTAINS(text, "600/600");
    /* A bar is always followed by the clearing of the rest of its line,
     * a redraw over it, or the end - never by a log line. */
    for (const char *b = strstr(text, " it/s]"); b; b = strstr(b + 1, " it/s]")) {
        const char *next = b + strlen(" it/s]");
        if (strncmp(next, "\033[K", 3) != 0 && next[0] != '\r' && next[0] != '\0')
            mpt_fail(__FILE__, __LINE__, "a bar runs into \"%.40s\"", next);
    }
    /* Every line logged after the first bar was drawn clears it first. */
    const char *bar = strstr(text, " it/s]");
    CHECK_NOT_NULL(bar);
    int cleared = 0;
    for (const char *l = strstr(bar, "] progress "); l; l = strstr(l + 1, "] progress ")) {
        const char *start = l;
        while (start > text && start[-1] != '\n' && start[-1] != 'K')
            start--;
        if (start - text < 4 || strncmp(start - 4, CLEAR, 4) != 0)
            mpt_fail(__FILE__, __LINE__, "a line without a clear before it: \"%.60s\"", start);
        cleared++;
    }
    CHECK_GE(cleared, 1);
    free(c.buf);
}

MPT_MAIN()
