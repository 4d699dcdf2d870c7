/*
 * log.c - one time-stamped line per call, shared by every process.
 *
 * DESIGN
 * A line is formatted completely in memory and handed to the kernel in a
 * single write(2).  That is what keeps lines whole when many processes log
 * to the same place: writes to an O_APPEND file are atomic with respect to
 * each other, and writes of at most PIPE_BUF bytes to a pipe are never
 * split.  No lock is taken, so a child that dies while logging cannot
 * wedge the others.
 *
 * The destination is a descriptor.  Once the log owns a descriptor of its
 * own (mp_log_set_file), a later change dup2()s the new file onto that same
 * number, so a thread logging concurrently never writes to a descriptor
 * that was closed and reused for something else.
 *
 * A line that cannot be written is dropped, quietly: a pipe whose reader is
 * gone would raise SIGPIPE and kill the process for a log line, so SIGPIPE
 * is blocked in the writing thread around the write, and one it raised is
 * taken back before the mask is restored (unless one was pending already,
 * which is the program's).
 *
 * The status line (a progress bar on a terminal) belongs here too, because
 * only the writer of the lines knows when one is about to land on it: a
 * line written while a status shows goes out as "clear the terminal line,
 * the log line, the status again", in the same single write.  That one
 * case takes a process-private lock (status_lock), so that the status text
 * cannot change under the writer; a forked child, which may inherit the
 * lock held, never takes it (the status belongs to its parent).
 */
#define _GNU_SOURCE
#include "log.h"

#include "self.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LEVEL_UNSET (-1)

static _Atomic int log_level = LEVEL_UNSET;
static _Atomic int log_fd = STDERR_FILENO;
static int owned_fd = -1; /* the descriptor the log opened itself */
static pthread_mutex_t set_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

/*
 * The detail of this thread's last failure that recorded one.  Per thread,
 * as errno is, so that threads never read each other's; kept until the
 * next failure that records one (a success does not clear it), because a
 * caller reads it after the failing call has returned.
 */
static _Thread_local char last_detail[256];

int mp__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started just above */
    (void)vsnprintf(last_detail, sizeof last_detail, fmt, ap);
    va_end(ap);
    if (mp_log_enabled(MP_LOG_DEBUG))
        mp_log(MP_LOG_DEBUG, "%s: %s", mp_err_name(code), last_detail);
    return code;
}

const char *mp_last_error_detail(void)
{
    return last_detail;
}

/* The level text names, case-insensitive, into *level: 0, or -1 for a
 * name it does not know.  Records no error detail: read_env() uses it from
 * inside the pthread_once that mp_log_enabled() - which recording a
 * detail calls - waits on. */
static int level_of(const char *text, mp_log_level *level)
{
    static const struct {
        const char *name;
        mp_log_level level;
    } names[] = {{"debug", MP_LOG_DEBUG},  {"info", MP_LOG_INFO},   {"warning", MP_LOG_WARNING},
                 {"warn", MP_LOG_WARNING}, {"error", MP_LOG_ERROR}, {"critical", MP_LOG_CRITICAL},
                 {"off", MP_LOG_OFF},      {"none", MP_LOG_OFF}};
    for (size_t i = 0; i < MP__ARRAY_SIZE(names); i++) {
        if (strcasecmp(text, names[i].name) == 0) {
            *level = names[i].level;
            return 0;
        }
    }
    return -1;
}

int mp_log_parse_level(const char *text, mp_log_level *level)
{
    MP__NONNULL(text);
    MP__NONNULL(level);
    if (level_of(text, level) == 0)
        return 0;
    return mp__fail(MP_EINVAL,
                    "mp_log_parse_level: text must be debug, info, warning, error, critical or "
                    "off (got \"%.32s\")",
                    text);
}

static int open_log_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

/* Installs fd (opened by the log) as the destination. */
static void adopt_owned(int fd)
{
    pthread_mutex_lock(&set_lock);
    if (owned_fd >= 0) {
        (void)mp__dup2_cloexec(fd, owned_fd);
        mp__close(fd);
    } else {
        owned_fd = fd;
    }
    atomic_store(&log_fd, owned_fd);
    pthread_mutex_unlock(&set_lock);
}

static void read_env(void)
{
    const char *lv = getenv("MPROC_LOG");
    mp_log_level level = MP_LOG_WARNING;
    if (lv && *lv)
        (void)level_of(lv, &level);
    int unset = LEVEL_UNSET;
    atomic_compare_exchange_strong(&log_level, &unset, (int)level);
    const char *path = getenv("MPROC_LOG_FILE");
    if (path && *path) {
        int fd = open_log_file(path);
        if (fd >= 0)
            adopt_owned(fd);
    }
}

/* Writes a line, dropping it rather than raising SIGPIPE (see DESIGN). */
static void write_quietly(int fd, const char *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    (void)sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    if (mp__write_all(fd, buf, len) == MP_EPIPE && !was_pending) {
        static const struct timespec now = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &now) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static int current_level(void)
{
    int lv = atomic_load_explicit(&log_level, memory_order_relaxed);
    if (lv == LEVEL_UNSET) {
        pthread_once(&env_once, read_env);
        lv = atomic_load(&log_level);
    }
    return lv;
}

bool mp_log_enabled(mp_log_level level)
{
    return (int)level >= current_level() && level < MP_LOG_OFF;
}

void mp_log_set_level(mp_log_level level)
{
    pthread_once(&env_once, read_env);
    atomic_store(&log_level, (int)level);
}

mp_log_level mp_log_get_level(void)
{
    return (mp_log_level)current_level();
}

int mp_log_set_file(const char *path)
{
    pthread_once(&env_once, read_env);
    if (!path) {
        atomic_store(&log_fd, STDERR_FILENO);
        return 0;
    }
    int fd = open_log_file(path);
    if (fd < 0)
        return fd;
    adopt_owned(fd);
    return 0;
}

int mp_log_set_fd(int fd)
{
    if (fd < 0)
        return MP_EBADF;
    pthread_once(&env_once, read_env);
    atomic_store(&log_fd, fd);
    return 0;
}

int mp__log_fd(bool *custom)
{
    int fd = atomic_load(&log_fd);
    *custom = fd != STDERR_FILENO;
    return fd;
}

void mp__log_adopt(int fd, int level)
{
    if (level != LEVEL_UNSET)
        atomic_store(&log_level, level);
    if (fd >= 0)
        adopt_owned(fd);
}

/* ---- the status line ---------------------------------------------------- */

/* Erases the terminal line the cursor is on: back to its start, then
 * clear to its end (VT100, which every terminal emulator speaks). */
#define CLEAR_LINE "\r\033[K"
#define STATUS_MAX 512
#define STATUS_FD  STDERR_FILENO

static pthread_mutex_t status_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic pid_t status_owner; /* the process showing a status, 0: none */
static char status_text[STATUS_MAX];
static size_t status_len;

/* Whether the status is shown, by this process. */
static bool status_mine(void)
{
    pid_t owner = atomic_load_explicit(&status_owner, memory_order_acquire);
    return owner != 0 && owner == mp__self_pid();
}

void mp__log_status_set(const char *text, bool final)
{
    if (!text)
        return;
    size_t len = strnlen(text, STATUS_MAX - 1);
    char buf[STATUS_MAX + 16];
    if (!isatty(STATUS_FD)) {
        memcpy(buf, text, len);
        buf[len] = '\n';
        write_quietly(STATUS_FD, buf, len + 1);
        return;
    }
    /* Drawn over the current line; the clear after the text removes what
     * a longer previous status left. */
    int n = snprintf(buf, sizeof buf, "\r%.*s\033[K%s", (int)len, text, final ? "\n" : "");
    pthread_mutex_lock(&status_lock);
    if (final) {
        status_len = 0;
        atomic_store_explicit(&status_owner, 0, memory_order_release);
    } else {
        memcpy(status_text, text, len);
        status_len = len;
        atomic_store_explicit(&status_owner, mp__self_pid(), memory_order_release);
    }
    if (n > 0)
        write_quietly(STATUS_FD, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    pthread_mutex_unlock(&status_lock);
}

void mp__log_status_clear(void)
{
    if (!status_mine())
        return;
    pthread_mutex_lock(&status_lock);
    if (status_mine()) {
        status_len = 0;
        atomic_store_explicit(&status_owner, 0, memory_order_release);
        write_quietly(STATUS_FD, CLEAR_LINE, sizeof CLEAR_LINE - 1);
    }
    pthread_mutex_unlock(&status_lock);
}

/* Whether fd is the terminal the status is drawn on. */
static bool on_status_terminal(int fd)
{
    if (fd == STATUS_FD)
        return true;
    struct stat a, b;
    return fstat(fd, &a) == 0 && fstat(STATUS_FD, &b) == 0 && S_ISCHR(a.st_mode) &&
           a.st_rdev == b.st_rdev;
}

/* Writes the log line line[0..len) to fd, around the status line when
 * this process shows one on the same terminal. */
static void write_line(int fd, const char *line, size_t len)
{
    if (!status_mine() || !on_status_terminal(fd)) {
        write_quietly(fd, line, len);
        return;
    }
    size_t cap = sizeof CLEAR_LINE + len + STATUS_MAX;
    char stackbuf[4096 + sizeof CLEAR_LINE + STATUS_MAX];
    char *buf = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
    if (!buf) {
        write_quietly(fd, line, len);
        return;
    }
    pthread_mutex_lock(&status_lock);
    size_t n = 0;
    if (status_mine()) {
        memcpy(buf, CLEAR_LINE, sizeof CLEAR_LINE - 1);
        n = sizeof CLEAR_LINE - 1;
    }
    memcpy(buf + n, line, len);
    n += len;
    if (status_mine()) {
        memcpy(buf + n, status_text, status_len);
        n += status_len;
    }
    write_quietly(fd, buf, n);
    pthread_mutex_unlock(&status_lock);
    if (buf != stackbuf)
        free(buf);
}

static const char *level_name(mp_log_level level)
{
    if (level >= MP_LOG_CRITICAL)
        return "CRITICAL";
    if (level >= MP_LOG_ERROR)
        return "ERROR";
    if (level >= MP_LOG_WARNING)
        return "WARNING";
    if (level >= MP_LOG_INFO)
        return "INFO";
    return "DEBUG";
}

void mp_vlog(mp_log_level level, const char *fmt, va_list ap)
{
    if (!fmt || !mp_log_enabled(level))
        return;
    int saved_errno = errno;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);

    char stackbuf[4096];
    char *buf = stackbuf;
    int head =
        snprintf(stackbuf, sizeof stackbuf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %s [pid %d %s] ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000, level_name(level), (int)getpid(), mp__self_name());
    if (head < 0 || (size_t)head >= sizeof stackbuf)
        head = 0;
    va_list ap2;
    va_copy(ap2, ap);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): ap2 is a va_copy of the caller's list */
    int body = vsnprintf(stackbuf + head, sizeof stackbuf - (size_t)head, fmt, ap2);
    va_end(ap2);
    if (body < 0) {
        errno = saved_errno;
        return;
    }
    size_t len = (size_t)head + (size_t)body;
    if (len + 1 >= sizeof stackbuf) {
        /* A long line gets a buffer of its own, so it still goes out in one
         * write (atomic on an O_APPEND file). */
        buf = malloc(len + 2);
        if (!buf) {
            buf = stackbuf;
            len = sizeof stackbuf - 2;
        } else {
            memcpy(buf, stackbuf, (size_t)head);
            vsnprintf(buf + head, len + 2 - (size_t)head, fmt, ap);
        }
    }
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    buf[len++] = '\n';
    write_line(atomic_load(&log_fd), buf, len);
    if (buf != stackbuf)
        free(buf);
    errno = saved_errno;
}

void mp_log(mp_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mp_vlog(level, fmt, ap);
    va_end(ap);
}
