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

/* Appends the symbolized frames of a crash record. */
static void add_frames(text *t, const mp__report_hdr *h, const unsigned char *rec)
{
    mp__report_frame fr[MP__REPORT_MAX_FRAMES];
    memcpy(fr, rec + sizeof *h, (size_t)h->nframes * sizeof fr[0]);
    const unsigned char *p = rec + sizeof *h + (size_t)h->nframes * sizeof fr[0];
    const unsigned char *end = rec + h->size;
    const char *paths[MP__REPORT_MAX_FRAMES];
    char pathbuf[MP__REPORT_MAX_FRAMES][256];
    int npaths = 0;
    for (int i = 0; i < h->nmodules && i < MP__REPORT_MAX_FRAMES; i++) {
        uint16_t len;
        if (p + 2 > end)
            break;
        memcpy(&len, p, 2);
        if (p + 2 + len > end || len >= sizeof pathbuf[0])
            break;
        memcpy(pathbuf[i], p + 2, len);
        pathbuf[i][len] = '\0';
        paths[i] = pathbuf[i];
        p += 2 + len;
        npaths++;
    }
    text_add(t, "\n  backtrace:");
    for (int i = 0; i < h->nframes; i++) {
        const char *path = fr[i].module >= 0 && fr[i].module < npaths ? paths[fr[i].module] : NULL;
        char name[256];
        uint64_t delta = 0;
        /* Beyond the first frame the addresses are return addresses, one
         * past the call; look up the call itself, which is always inside
         * the caller even when the call was its last instruction. */
        uint64_t look = fr[i].offset - (i > 0 ? 1 : 0);
        if (path && mp__symbolize(path, look, name, sizeof name, &delta) == 0)
            text_add(t, "\n    #%-2d 0x%012" PRIx64 " in %s+0x%" PRIx64 " (%s)", i, fr[i].addr,
                     name, delta + (i > 0 ? 1 : 0), path);
        else if (path)
            text_add(t, "\n    #%-2d 0x%012" PRIx64 " in %s+0x%" PRIx64, i, fr[i].addr, path,
                     fr[i].offset);
        else
            text_add(t, "\n    #%-2d 0x%012" PRIx64, i, fr[i].addr);
    }
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
