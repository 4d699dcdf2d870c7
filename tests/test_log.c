/* Tests of the shared log: levels, destinations, and whole lines from many
 * processes at once. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>

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
static void vlog_it(const char *fmt, ...)
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

MPT_MAIN()
