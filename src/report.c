/*
 * report.c - the parent's side of a child's report: what the child wrote to
 * its report pipe, plus its wait status, turned into an exit code, an error
 * and readable text with named functions.
 */
#define _GNU_SOURCE
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REPORT_BYTES (1u << 20)

/* A growing text buffer; on out-of-memory it stops growing and keeps what
 * it has, since a report is best effort. */
typedef struct text {
    char *s;
    size_t len, cap;
} text;

static void text_add(text *t, const char *fmt, ...) MP__PRINTF(2, 3);

static void text_add(text *t, const char *fmt, ...)
{
    for (;;) {
        size_t room = t->cap - t->len;
        va_list ap;
        va_start(ap, fmt);
        /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started just above */
        int n = vsnprintf(t->s ? t->s + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (t->s && (size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t need = t->len + (size_t)n + 256;
        size_t cap = t->cap ? t->cap * 2 : 512;
        while (cap < need)
            cap *= 2;
        char *s = realloc(t->s, cap);
        if (!s)
            return;
        t->s = s;
        t->cap = cap;
    }
}

/* Reads whatever the pipe holds, without blocking (the read end is
 * O_NONBLOCK).  Most children leave nothing: that case costs one read(2)
 * into a stack buffer and no allocation. */
static unsigned char *drain(int fd, unsigned char *stackbuf, size_t stackcap, size_t *len)
{
    *len = 0;
    if (fd < 0)
        return stackbuf;
    unsigned char *buf = stackbuf;
    size_t cap = stackcap;
    for (;;) {
        if (*len == cap) {
            if (cap >= MAX_REPORT_BYTES)
                break;
            size_t ncap = cap * 2;
            unsigned char *nb = buf == stackbuf ? malloc(ncap) : realloc(buf, ncap);
            if (!nb)
                break;
            if (buf == stackbuf)
                memcpy(nb, stackbuf, *len);
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + *len, cap - *len);
        if (n > 0) {
            *len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        break; /* EOF, EAGAIN (nothing more now) or an error */
    }
    return buf;
}

/* ---- frames ---------------------------------------------------------------- */

/* One frame of a crash record, as the report shows it. */
typedef struct frame {
    uint64_t addr, offset;
    int module; /* index into the record's modules, -1 for none */
    bool mproc; /* mproc's own code */
    bool named;
    uint64_t delta; /* from the start of the function named */
    int line;       /* 0: unknown */
    char name[128];
    char file[512];
} frame;

/* The modules a record names: their paths, made canonical, and their
 * debugging information, opened when a frame first needs it. */
typedef struct modinfo {
    char path[PATH_MAX];
    mp__debuginfo *dbg;
    bool tried;
} modinfo;

/* The directory of mproc's own sources as the compiler named them - the
 * names the debugging information of mproc's code carries - so that a
 * frame of the static library, inside the program's own file, is still
 * known as mproc's.  Empty when the compiler was given relative names. */
static char src_root[PATH_MAX];
static pthread_once_t src_root_once = PTHREAD_ONCE_INIT;

static void find_src_root(void)
{
    const char *me = __FILE__; /* <root>/report.c */
    const char *slash = strrchr(me, '/');
    if (me[0] != '/' || !slash)
        return;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - me), me);
    if (!realpath(dir, src_root))
        snprintf(src_root, sizeof src_root, "%s", dir);
    size_t len = strlen(src_root);
    if (len + 1 < sizeof src_root && src_root[len - 1] != '/')
        memcpy(src_root + len, "/", 2);
}

/* Drops "." components and "dir/.." pairs from path, in place, by its
 * text alone: for the names of files that are not on this machine (the
 * sources of a distribution's library). */
static void normalize(char *path)
{
    char *comp[PATH_MAX / 2];
    int n = 0;
    bool abs = path[0] == '/';
    for (char *save = NULL, *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0 && n > 0 && strcmp(comp[n - 1], "..") != 0) {
            n--;
            continue;
        }
        if (strcmp(c, "..") == 0 && n == 0 && abs)
            continue; /* "/.." is "/" */
        comp[n++] = c;
    }
    char out[PATH_MAX];
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        int w = snprintf(out + len, sizeof out - len, "%s%s", i > 0 || abs ? "/" : "", comp[i]);
        if (w < 0 || (size_t)w >= sizeof out - len)
            break;
        len += (size_t)w;
    }
    if (len == 0 && abs)
        memcpy(out, "/", 2);
    memcpy(path, out, strlen(out) + 1);
}

/* Replaces path by its canonical form - no "." or "..", and no symbolic
 * links when it names a file that exists here. */
static void canonical(char *path, size_t cap)
{
    char buf[PATH_MAX];
    if (realpath(path, buf) && strlen(buf) < cap)
        memcpy(path, buf, strlen(buf) + 1);
    else
        normalize(path);
}

/* Reads the record's module list (after the frames) into mods. */
static int read_modules(const mp__report_hdr *h, const unsigned char *rec, modinfo *mods)
{
    const unsigned char *p = rec + sizeof *h + (size_t)h->nframes * sizeof(mp__report_frame);
    const unsigned char *end = rec + h->size;
    int n = 0;
    for (int i = 0; i < h->nmodules && i < MP__REPORT_MAX_FRAMES; i++) {
        uint16_t len;
        if (p + 2 > end)
            break;
        memcpy(&len, p, 2);
        if (p + 2 + len > end || len >= sizeof mods[i].path)
            break;
        memcpy(mods[i].path, p + 2, len);
        mods[i].path[len] = '\0';
        canonical(mods[i].path, sizeof mods[i].path);
        p += 2 + len;
        n++;
    }
    return n;
}

/* Names frame f and finds its source line.  Beyond the first frame the
 * addresses are return addresses, one past the call: the call itself,
 * which is always inside the caller even when it was the caller's last
 * instruction, is what is looked up. */
static void describe(frame *f, int index, modinfo *mod, bool want_line)
{
    uint64_t look = f->offset - (index > 0 ? 1 : 0);
    f->named = mp__symbolize(mod->path, look, f->name, sizeof f->name, &f->delta) == 0;
    if (f->named)
        f->delta += index > 0 ? 1 : 0;
    if (f->named && strncmp(f->name, "mp_", 3) == 0)
        f->mproc = true; /* the public and internal prefixes, mp_ and mp__ */
    if (f->mproc && !want_line)
        return;
    if (!mod->tried) {
        mod->tried = true;
        (void)mp__debuginfo_open(mod->path, &mod->dbg);
    }
    if (mod->dbg && mp__debuginfo_line(mod->dbg, look, f->file, sizeof f->file, &f->line) == 0) {
        canonical(f->file, sizeof f->file);
        if (src_root[0] && strncmp(f->file, src_root, strlen(src_root)) == 0)
            f->mproc = true;
    }
}

static void add_frame(text *t, int i, const frame *f, const modinfo *mod, bool all)
{
    text_add(t, "\n    #%-2d 0x%012" PRIx64, i, f->addr);
    if (f->named && f->line)
        text_add(t, " in %s at %s:%d", f->name, f->file, f->line);
    else if (f->named)
        text_add(t, " in %s+0x%" PRIx64, f->name, f->delta);
    else if (mod)
        text_add(t, " in %s+0x%" PRIx64, mod->path, f->offset);
    if (mod && f->named && (all || !f->line))
        text_add(t, " (%s)", mod->path);
}

/* Appends the frames of a crash record: by default the program's own,
 * from the crash down to the child's entry (mp__child_main), below which
 * the stack only says how the process was started. */
static void add_frames(text *t, const mp__report_hdr *h, const unsigned char *rec)
{
    pthread_once(&src_root_once, find_src_root);
    const char *env = getenv("MPROC_BACKTRACE");
    bool all = env && strcmp(env, "full") == 0;
    modinfo *mods = calloc(MP__REPORT_MAX_FRAMES, sizeof *mods);
    frame *f = calloc(MP__REPORT_MAX_FRAMES, sizeof *f);
    if (!mods || !f) {
        text_add(t, "\n  backtrace: (out of memory)");
        goto out;
    }
    int nmods = read_modules(h, rec, mods);
    text_add(t, "\n  backtrace:");
    int hidden = 0;
    bool below_entry = false;
    for (int i = 0; i < h->nframes; i++) {
        mp__report_frame raw;
        memcpy(&raw, rec + sizeof *h + (size_t)i * sizeof raw, sizeof raw);
        f[i].addr = raw.addr;
        f[i].offset = raw.offset;
        f[i].mproc = (raw.flags & MP__FRAME_MPROC) != 0;
        modinfo *mod = raw.module >= 0 && raw.module < nmods ? &mods[raw.module] : NULL;
        if (mod)
            describe(&f[i], i, mod, all);
        if (all || (!f[i].mproc && !below_entry))
            add_frame(t, i, &f[i], mod, all);
        else
            hidden++;
        if (f[i].named && strcmp(f[i].name, "mp__child_main") == 0)
            below_entry = true;
    }
    if (hidden)
        text_add(t,
                 "\n    (%d frame%s of mproc and of the process's start hidden: "
                 "MPROC_BACKTRACE=full shows them)",
                 hidden, hidden == 1 ? "" : "s");
out:
    for (int m = 0; mods && m < MP__REPORT_MAX_FRAMES; m++)
        mp__debuginfo_close(mods[m].dbg);
    free(mods);
    free(f);
}

static bool record_valid(const mp__report_hdr *h, size_t len)
{
    return h->magic == MP__REPORT_MAGIC && h->size >= sizeof *h && h->size <= len &&
           h->nframes >= 0 && h->nframes <= MP__REPORT_MAX_FRAMES && h->nmodules >= 0 &&
           sizeof *h + (size_t)h->nframes * sizeof(mp__report_frame) <= h->size;
}

char *mp__report_stack_text(const void *rec, size_t len, const char *title)
{
    mp__report_hdr h;
    if (len < sizeof h)
        return NULL;
    memcpy(&h, rec, sizeof h);
    if (!record_valid(&h, len))
        return NULL;
    text t = {0};
    text_add(&t, "%s", title);
    add_frames(&t, &h, rec);
    return t.s;
}

/* Logs a stack the child was asked for. */
static void log_stack(const char *name, pid_t pid, int n, const unsigned char *rec, size_t len)
{
    char title[MP__MAX_NAME + 96];
    snprintf(title, sizeof title, "process '%s' (pid %d), asked for its stack%s, was at:", name,
             (int)pid, n > 1 ? " again" : "");
    char *s = mp__report_stack_text(rec, len, title);
    if (s)
        mp_log(MP_LOG_WARNING, "%s", s);
    free(s);
}

void mp__outcome_build(mp__outcome *out, const char *name, pid_t pid, int wstatus, int report_fd,
                       bool log)
{
    memset(out, 0, sizeof *out);
    if (WIFEXITED(wstatus))
        out->exitcode = WEXITSTATUS(wstatus);
    else if (WIFSIGNALED(wstatus))
        out->exitcode = -WTERMSIG(wstatus);

    size_t len;
    /* Small: a clean exit leaves nothing to read, and every stack page
     * touched here is one more page fault after each fork. */
    unsigned char stackbuf[512];
    unsigned char *buf = drain(report_fd, stackbuf, sizeof stackbuf, &len);
    /* Copies, not pointers into buf: records after a crash record's
     * variable-length tail are not aligned. */
    mp__report_hdr crash_h, error_h;
    const mp__report_hdr *crash = NULL, *error = NULL;
    const unsigned char *crash_rec = NULL;
    int nstacks = 0;
    for (size_t off = 0; off + sizeof(mp__report_hdr) <= len;) {
        mp__report_hdr h;
        memcpy(&h, buf + off, sizeof h);
        if (h.magic != MP__REPORT_MAGIC || h.size < sizeof h || h.size > len - off)
            break; /* torn or foreign: stop, keep what was understood */
        bool sane_frames = h.nframes >= 0 && h.nframes <= MP__REPORT_MAX_FRAMES &&
                           sizeof h + (size_t)h.nframes * sizeof(mp__report_frame) <= h.size;
        /* Records of grandchildren that inherited the pipe are not ours. */
        if (h.pid == pid) {
            if (h.kind == MP__REPORT_CRASH && !crash && sane_frames) {
                crash_h = h;
                crash = &crash_h;
                crash_rec = buf + off;
            } else if ((h.kind == MP__REPORT_ERROR || h.kind == MP__REPORT_SETUP) && !error) {
                error_h = h;
                error = &error_h;
            } else if (h.kind == MP__REPORT_STACK && sane_frames && log) {
                log_stack(name, pid, ++nstacks, buf + off, h.size);
            }
        }
        off += h.size;
    }

    text t = {0};
    if (crash) {
        text_add(&t, "process '%s' (pid %d) was killed by %s (%s)", name, (int)pid,
                 mp__signal_name(crash->signo), mp__signal_code_text(crash->signo, crash->code));
        if (crash->addr || crash->signo == SIGSEGV || crash->signo == SIGBUS)
            text_add(&t, " at address 0x%" PRIx64, crash->addr);
        add_frames(&t, crash, crash_rec);
    } else if (error) {
        out->error = error->code;
        if (error->kind == MP__REPORT_SETUP)
            text_add(&t, "process '%s' (pid %d) failed to set up: %s (%s)", name, (int)pid,
                     mp_err_name(error->code), mp_strerror(error->code));
        else if (error->code < 0)
            text_add(&t, "process '%s' (pid %d): its target returned %d (%s: %s)", name, (int)pid,
                     error->code, mp_err_name(error->code), mp_strerror(error->code));
        else
            text_add(&t, "process '%s' (pid %d): its target returned %d, beyond an exit status",
                     name, (int)pid, error->code);
    } else if (out->exitcode < 0) {
        text_add(&t, "process '%s' (pid %d) was killed by %s", name, (int)pid,
                 mp__signal_name(-out->exitcode));
    } else if (out->exitcode > 0) {
        text_add(&t, "process '%s' (pid %d) exited with status %d", name, (int)pid, out->exitcode);
    }
    out->report = t.s;
    if (log && t.s && (crash || error))
        mp_log(MP_LOG_ERROR, "%s", t.s);
    if (buf != stackbuf)
        free(buf);
}
