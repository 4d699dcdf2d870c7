/*
 * child.c - the child's side of a process: set-up, the crash handler, and
 * the report a dying child leaves for its parent.
 *
 * DESIGN
 * A child reports to its parent through a pipe created for it alone: the
 * parent keeps the read end, the child the write end.  A crash handler runs
 * on an alternate stack (so that a stack overflow is reported too) and
 * writes one binary record: the signal, its si_code, the faulting address,
 * the raw backtrace, and for each frame the module and offset it lies in.
 * Everything the handler does is async-signal-safe: mp__backtrace() (its
 * unwinder is loaded beforehand, in mp__crash_prepare), lookups in a module
 * table captured before the crash, and write(2).  Naming the functions -
 * which needs malloc and file I/O - is the parent's work, done after the
 * child is gone (report.c).  The handler then re-raises the signal with its
 * default action, so the parent still sees "killed by SIGSEGV".
 *
 * Stacks on request.  SIGURG asks a child where it is: its handler writes
 * a STACK record of the same form, from the interrupted point, and
 * returns, so the child goes on.  SIGURG is the signal because its default
 * action is to be ignored: a child asked before its handler is installed
 * (a fresh image still loading) loses nothing.  The parent that asks for
 * stacks (a SIGINT under mp_signals_install()) logs them, named, when it
 * reaps each child; its own stack it records with mp__stack_record() from
 * its own handler.
 *
 * SIGINT.  A child keeps SIGINT's disposition as it got it (the parent's
 * through fork, the default in a fresh image), except that a handler of
 * the library's is never inherited, and that when the parent coordinates
 * the shutdown (mp_signals_install()) the child ignores SIGINT.
 *
 * The parent never waits on the pipe: it reads what is there, without
 * blocking, once it has reaped the child.  Liveness is judged from the
 * child's pidfd, never from the pipe's end (a grandchild may hold the write
 * end).  Records carry the writer's pid for the same reason.
 */
#define _GNU_SOURCE
#include "child.h"

#include "report.h"
#include "self.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

#define MAX_MODULES 64
#define MAX_PATH    MP__STACK_PATH_MAX

/* The module table the crash handler reads.  Built in the parent and
 * inherited by fork; rebuilt when the dynamic linker's counters show that
 * modules were loaded or unloaded since. */
static struct module {
    uintptr_t lo, hi, bias;
    bool mproc; /* mproc's own shared library */
    char path[MAX_PATH];
} modules[MAX_MODULES];
static int nmodules;
static uint64_t module_gen = ~(uint64_t)0;
static pthread_mutex_t module_lock = PTHREAD_MUTEX_INITIALIZER;

static int report_fd = -1;

static int ensure_alt_stack(void);

static int collect_cb(const mp__module *mod, void *data)
{
    (void)data;
    if (nmodules >= MAX_MODULES)
        return 1;
    struct module *m = &modules[nmodules];
    m->lo = UINTPTR_MAX;
    m->hi = 0;
    m->mproc = false;
    /* This very function lies in mproc's code: the shared library that
     * holds it is mproc's, and reports hide its frames.  A program linked
     * with the static library holds mproc's code itself; its frames are
     * told apart by name and source file instead (report.c). */
    uintptr_t self = (uintptr_t)collect_cb;
    for (size_t i = 0; i < mod->nsegs; i++) {
        if (mod->seg[i].lo < m->lo)
            m->lo = mod->seg[i].lo;
        if (mod->seg[i].hi > m->hi)
            m->hi = mod->seg[i].hi;
        if (mod->path[0] && self >= mod->seg[i].lo && self < mod->seg[i].hi)
            m->mproc = true;
    }
    if (m->hi == 0)
        return 0;
    m->bias = mod->bias;
    if (mod->path[0])
        snprintf(m->path, sizeof m->path, "%s", mod->path);
    else
        (void)mp__exe_path(m->path, sizeof m->path);
    nmodules++;
    return 0;
}

void mp__crash_prepare(void)
{
    /* The unwinder is loaded here, not in the handler: loading it calls
     * dlopen(), which is not async-signal-safe. */
    mp__backtrace_prepare();
    uint64_t gen = mp__modules_generation();
    pthread_mutex_lock(&module_lock);
    (void)ensure_alt_stack(); /* a failure is reported by the child */
    if (gen != module_gen) {
        nmodules = 0;
        (void)mp__modules_each(collect_cb, NULL);
        module_gen = gen;
    }
    pthread_mutex_unlock(&module_lock);
}

/* Static: the handlers must not allocate.  A crash ends the process; a
 * stack request may come again, so it has a buffer of its own. */
#define RECORD_CAP MP__STACK_RECORD_CAP
static unsigned char crash_buf[RECORD_CAP];
static unsigned char stack_buf[RECORD_CAP];

size_t mp__stack_record(void *buf, size_t cap, uint32_t kind, int signo, const siginfo_t *si,
                        const void *uctx)
{
    if (cap < RECORD_CAP)
        return 0;
    void *raw[MP__REPORT_MAX_FRAMES + 8];
    int n = mp__backtrace(raw, (int)MP__ARRAY_SIZE(raw));
    /* Drop the handler's own frames and the signal trampoline: the
     * interrupted code starts at the frame whose address is the pc of the
     * signal context. */
    uintptr_t pc = mp__context_pc(uctx);
    int first = n > 2 ? 2 : 0;
    for (int i = 0; i < n; i++) {
        if ((uintptr_t)raw[i] == pc) {
            first = i;
            break;
        }
    }
    int nframes = n - first;
    if (nframes > MP__REPORT_MAX_FRAMES)
        nframes = MP__REPORT_MAX_FRAMES;

    unsigned char *out = buf;
    mp__report_hdr *h = (mp__report_hdr *)out;
    mp__report_frame *fr = (mp__report_frame *)(out + sizeof *h);
    unsigned char *tail = (unsigned char *)(fr + nframes);
    int used[MAX_MODULES]; /* module index -> index in this record, or -1 */
    for (int m = 0; m < MAX_MODULES; m++)
        used[m] = -1;
    int nused = 0;
    for (int i = 0; i < nframes; i++) {
        uintptr_t a = (uintptr_t)raw[first + i];
        fr[i].addr = a;
        fr[i].offset = a;
        fr[i].module = -1;
        fr[i].flags = 0;
        for (int m = 0; m < nmodules; m++) {
            if (a >= modules[m].lo && a < modules[m].hi) {
                if (used[m] < 0) {
                    used[m] = nused++;
                    size_t len = strnlen(modules[m].path, MAX_PATH - 1);
                    uint16_t l16 = (uint16_t)len;
                    memcpy(tail, &l16, 2);
                    memcpy(tail + 2, modules[m].path, len);
                    tail += 2 + len;
                }
                fr[i].module = used[m];
                fr[i].offset = a - modules[m].bias;
                fr[i].flags = modules[m].mproc ? MP__FRAME_MPROC : 0;
                break;
            }
        }
    }
    h->magic = MP__REPORT_MAGIC;
    h->kind = kind;
    h->pid = (int32_t)getpid();
    h->signo = signo;
    h->code = si ? si->si_code : 0;
    h->nframes = nframes;
    h->nmodules = nused;
    h->addr = (si && (signo == SIGSEGV || signo == SIGBUS || signo == SIGFPE || signo == SIGILL ||
                      signo == SIGTRAP))
                  ? (uint64_t)(uintptr_t)si->si_addr
                  : 0;
    h->size = (uint32_t)(tail - out);
    return h->size;
}

static void crash_handler(int signo, siginfo_t *si, void *uctx)
{
    static _Atomic int entered;
    int saved_errno = errno;
    if (atomic_exchange(&entered, 1) == 0 && report_fd >= 0) {
        size_t len =
            mp__stack_record(crash_buf, sizeof crash_buf, MP__REPORT_CRASH, signo, si, uctx);
        (void)mp__write_all(report_fd, crash_buf, len);
    }
    errno = saved_errno;
    /* SA_RESETHAND restored the default action, SA_NODEFER lets the signal
     * in again at once: this ends the process by the same signal. */
    raise(signo);
}

/* SIGURG: a request for this child's stack (see DESIGN).  Requests that
 * overlap are merged: the signal is blocked while the handler runs. */
static void stack_handler(int signo, siginfo_t *si, void *uctx)
{
    int saved_errno = errno;
    if (report_fd >= 0) {
        size_t len =
            mp__stack_record(stack_buf, sizeof stack_buf, MP__REPORT_STACK, signo, si, uctx);
        (void)mp__write_all(report_fd, stack_buf, len);
    }
    errno = saved_errno;
}

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};

/* The alternate stack crash handlers run on: room for backtrace()'s
 * unwinder (and a sanitizer's larger frames).  Allocated once in the parent
 * (mp__crash_prepare) and inherited by every forked child, so a start costs
 * no mapping; it is only written to when a child crashes, so the pages are
 * never copied otherwise. */
#define ALT_STACK_SIZE ((size_t)256 * 1024)
static void *alt_stack;

static int ensure_alt_stack(void)
{
    if (alt_stack)
        return 0;
    return mp__map_stack(ALT_STACK_SIZE, &alt_stack);
}

/* Installs the crash handler on the alternate stack.  Returns 0 or -errno. */
static int install_crash_handlers(void)
{
    int rc = ensure_alt_stack();
    if (rc < 0)
        return rc;
    stack_t ss = {.ss_sp = alt_stack, .ss_size = ALT_STACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        return -errno;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = crash_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < MP__ARRAY_SIZE(fatal_signals); i++) {
        if (sigaction(fatal_signals[i], &sa, NULL) != 0)
            return -errno;
    }
    sa.sa_sigaction = stack_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    if (sigaction(MP__STACK_SIGNAL, &sa, NULL) != 0)
        return -errno;
    return 0;
}

static _Atomic bool sigint_ignored;

void mp__child_sigint_set_ignored(bool ignore)
{
    atomic_store(&sigint_ignored, ignore);
}

bool mp__child_sigint_ignored(void)
{
    return atomic_load(&sigint_ignored);
}

/* SIGINT as DESIGN says.  A library handler inherited through fork is
 * gone already: the modules that install one restore the disposition in
 * their pthread_atfork child handlers.  The flag stays set, so that this
 * child's own children ignore SIGINT too. */
static void settle_sigint(bool ignore)
{
    if (ignore) {
        signal(SIGINT, SIG_IGN);
        atomic_store(&sigint_ignored, true);
    }
}

/* Writes an ERROR or SETUP record. */
static void write_record(uint32_t kind, int code)
{
    if (report_fd < 0)
        return;
    mp__report_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = MP__REPORT_MAGIC;
    h.kind = kind;
    h.pid = (int32_t)getpid();
    h.code = code;
    h.size = sizeof h;
    (void)mp__write_all(report_fd, &h, sizeof h);
}

_Noreturn void mp__child_main(const mp__child_spec *s)
{
    report_fd = s->report_fd;
    /* Die with the parent; if it is gone already, no signal will ever
     * come, so go now. */
    if (mp__die_with_parent(SIGKILL, s->parent) != 0)
        raise(SIGKILL);
    (void)mp__thread_set_name(s->name);
    mp__self_enter_child(s->name, s->ident, s->session, s->origin);
    mp__self_set_inherited_fds(s->fds, s->nfds);
    settle_sigint(s->ignore_sigint);
    int rc = s->setup_error ? s->setup_error : install_crash_handlers();
    if (rc < 0) {
        write_record(MP__REPORT_SETUP, rc);
        _exit(127);
    }
    if (s->mask)
        mp__signals_restore(s->mask);

    int r = s->target(s->arg);

    int status = r;
    if (r < 0 || r > 255) {
        write_record(MP__REPORT_ERROR, r);
        status = 1;
    }
    /* Flush what the target printed, but skip atexit handlers and
     * destructors inherited from the parent: they belong to the parent's
     * state (its temporary files, its shared segments), as in Python. */
    fflush(NULL);
    _exit(status);
}
