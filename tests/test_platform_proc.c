/* Tests of the platform calls the library's processes are built on: names,
 * the death signal, signal descriptors, the program's image and modules,
 * backtraces, descriptor hygiene, local socket addresses, named segments'
 * identity, giving memory back, and the C library's extras.  Each checks
 * what a port must preserve, not how Linux happens to do it. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

static bool is_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    CHECK(fl >= 0);
    return (fl & FD_CLOEXEC) != 0;
}

/* The name the system shows for thread tid of this process. */
static void comm_of(pid_t tid, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    CHECK(fgets(buf, (int)cap, f) != NULL);
    fclose(f);
}

struct named {
    gate named, done;
    pid_t tid;
};

static void *name_thread(void *arg)
{
    struct named *n = arg;
    n->tid = mp__gettid();
    CHECK_OK(mp__thread_set_name("mpt-named-thread-long"));
    gate_open(&n->named);
    /* Alive until the name was read. */
    CHECK_EQ(gate_wait(&n->done, 30), 0);
    return NULL;
}

TEST(thread_names_are_what_the_system_shows)
{
    CHECK_OK(mp__thread_set_name("mpt-main"));
    char buf[64] = "";
    comm_of(mp__gettid(), buf, sizeof buf);
    CHECK_STREQ(buf, "mpt-main\n");

    /* Another thread's name is its own, cut to what the system keeps. */
    struct named n;
    gate_init(&n.named);
    gate_init(&n.done);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, name_thread, &n), 0);
    CHECK_EQ(gate_wait(&n.named, 30), 0);
    comm_of(n.tid, buf, sizeof buf);
    CHECK_STREQ(buf, "mpt-named-threa\n");
    comm_of(mp__gettid(), buf, sizeof buf);
    CHECK_STREQ(buf, "mpt-main\n");
    gate_open(&n.done);
    CHECK_EQ(pthread_join(t, NULL), 0);
    gate_close(&n.named);
    gate_close(&n.done);
}

/* Thread identities (platform.h): a live thread is known with its start
 * time; a zombie and a reaped process are gone; the caller's own start
 * time is what another process reads, and a forked child has its own. */
TEST(thread_identities_tell_the_living_from_the_dead)
{
    uint64_t mine = mp__thread_start_time(), seen = 0;
    CHECK_NE_U(mine, 0);
    CHECK_OK(mp__thread_check(mp__self_tid(), &seen));
    CHECK_EQ_U(seen, mine);
    int up[2], down[2];
    CHECK_EQ(pipe2(up, O_CLOEXEC), 0);
    CHECK_EQ(pipe2(down, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t start = mp__thread_start_time();
        char c;
        bool ok = write(up[1], &start, sizeof start) == sizeof start && read(down[0], &c, 1) == 1;
        _exit(ok ? 0 : 1);
    }
    uint64_t child = 0;
    CHECK_EQ(read(up[0], &child, sizeof child), (ssize_t)sizeof child);
    CHECK_OK(mp__thread_check(pid, &seen));
    CHECK_EQ_U(seen, child);
    CHECK_GE_U(child, mine);
    CHECK_EQ(write(down[1], "x", 1), 1);
    CHECK(mpt_wait_gone(pid, 30)); /* a zombie now: dead */
    CHECK_ERR(mp__thread_check(pid, &seen), MP_ESRCH);
    reap_ok(pid);
    CHECK_ERR(mp__thread_check(pid, &seen), MP_ESRCH);
    CHECK_ERR(mp__thread_check(0, &seen), MP_ESRCH);
    for (int i = 0; i < 2; i++) {
        close(up[i]);
        close(down[i]);
    }
}

TEST(a_child_dies_with_its_parent)
{
    int pp[2];
    CHECK_OK(mp__pipe(pp, 0));
    pid_t mid = fork();
    CHECK(mid >= 0);
    if (mid == 0) {
        pid_t parent = getpid();
        pid_t kid = fork();
        if (kid == 0) {
            if (mp__die_with_parent(SIGKILL, parent) != 0)
                _exit(3);
            CHECK_EQ(write(pp[1], &parent, sizeof parent), (ssize_t)sizeof parent);
            pause();
            _exit(4);
        }
        pid_t seen;
        CHECK_EQ(read(pp[0], &seen, sizeof seen), (ssize_t)sizeof seen);
        /* Tell the test who the grandchild is, then go. */
        CHECK_EQ(write(pp[1], &kid, sizeof kid), (ssize_t)sizeof kid);
        _exit(0);
    }
    reap_ok(mid);
    close(pp[1]);
    pid_t kid;
    CHECK_EQ(read(pp[0], &kid, sizeof kid), (ssize_t)sizeof kid);
    close(pp[0]);
    /* Its parent is gone: the grandchild follows, by SIGKILL. */
    CHECK_EQ(mpt_wait_gone(kid, 30.0), 1);
}

TEST(dying_with_a_parent_already_gone_is_refused)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* Not this process's parent: as if the parent had died already. */
        _exit(mp__die_with_parent(SIGKILL, getpid()) == MP_ESRCH ? 0 : 1);
    }
    reap_ok(pid);
}

TEST(a_signal_descriptor_reports_children_ending)
{
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    CHECK_EQ(pthread_sigmask(SIG_BLOCK, &chld, &old), 0);
    int fd = mp__sigfd_new(&chld);
    CHECK_OK(fd);
    CHECK(is_cloexec(fd));
    CHECK_ERR(mp__poll_fd(fd, POLLIN, mp__deadline(0)), MP_ETIMEDOUT);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(0);
    CHECK_GE(mp__poll_fd(fd, POLLIN, mp__deadline(30.0)), 1);
    reap_ok(pid);
    mp__sigfd_drain(fd);
    CHECK_ERR(mp__poll_fd(fd, POLLIN, mp__deadline(0)), MP_ETIMEDOUT);
    mp__close(fd);
    CHECK_EQ(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

TEST(close_from_closes_exactly_from_there)
{
    int pp[2];
    CHECK_OK(mp__pipe(pp, 0));
    int low = mp__dup_cloexec(pp[0], 200);
    int high = mp__dup_cloexec(pp[0], 300);
    CHECK_EQ(low, 200);
    CHECK_EQ(high, 300);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        mp__close_from(201);
        bool ok = fcntl(low, F_GETFD) >= 0 && fcntl(high, F_GETFD) < 0 && errno == EBADF &&
                  fcntl(pp[1], F_GETFD) >= 0;
        _exit(ok ? 0 : 1);
    }
    reap_ok(pid);
    mp__close(low);
    mp__close(high);
    mp__close(pp[0]);
    mp__close(pp[1]);
}

TEST(dup2_cloexec_replaces_in_place)
{
    int a[2], b[2];
    CHECK_OK(mp__pipe(a, 0));
    CHECK_OK(mp__pipe(b, 0));
    CHECK_OK(mp__set_cloexec(b[1], false));
    CHECK_OK(mp__dup2_cloexec(a[1], b[1]));
    CHECK(is_cloexec(b[1]));
    /* The number now writes into the first pipe. */
    CHECK_EQ(write(b[1], "x", 1), 1);
    char c = 0;
    CHECK_EQ(read(a[0], &c, 1), 1);
    CHECK_EQ(c, 'x');
    CHECK_ERR(mp__dup2_cloexec(-1, b[1]), MP_EBADF);
    for (int i = 0; i < 2; i++) {
        mp__close(a[i]);
        mp__close(b[i]);
    }
}

TEST(received_descriptors_are_cloexec)
{
    int sv[2], pp[2];
    CHECK_OK(mp__socketpair(SOCK_STREAM, sv));
    CHECK_OK(mp__pipe(pp, 0));
    CHECK_OK(mp__send_fds(sv[0], "m", 1, &pp[0], 1));
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    char buf[4];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    CHECK_EQ(mp__recvmsg(sv[1], &msg, 0), 1);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    CHECK(cm != NULL && cm->cmsg_type == SCM_RIGHTS);
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    CHECK(is_cloexec(fd));
    mp__close(fd);
    /* Nothing waiting: a non-blocking receive says so. */
    CHECK_ERR(mp__recvmsg(sv[1], &msg, MSG_DONTWAIT), MP_EAGAIN);
    mp__close(sv[0]);
    mp__close(sv[1]);
    mp__close(pp[0]);
    mp__close(pp[1]);
}

TEST(local_addresses_leave_nothing_behind)
{
    char name[64];
    mpt_name(name, sizeof name, "addr");
    struct sockaddr_un sa;
    socklen_t len;
    CHECK_OK(mp__local_address(name, &sa, &len));
    for (int round = 0; round < 2; round++) {
        int l = mp__unix_socket(SOCK_SEQPACKET);
        CHECK_OK(l);
        CHECK(is_cloexec(l));
        /* The second round binds the same address: the first listener's
         * close freed it, with nothing to unlink. */
        CHECK_EQ(bind(l, (struct sockaddr *)&sa, len), 0);
        CHECK_EQ(listen(l, 4), 0);
        CHECK_OK(mp__set_nonblock(l, true));
        CHECK_ERR(mp__accept(l), MP_EAGAIN);
        int c = mp__unix_socket(SOCK_SEQPACKET);
        CHECK_OK(c);
        CHECK_EQ(connect(c, (struct sockaddr *)&sa, len), 0);
        int s = mp__accept(l);
        CHECK_OK(s);
        CHECK(is_cloexec(s));
        CHECK((fcntl(s, F_GETFL) & O_NONBLOCK) != 0);
        uid_t uid = (uid_t)-1;
        CHECK_OK(mp__peer_cred(s, NULL, &uid));
        CHECK_EQ(uid, getuid());
        mp__close(s);
        mp__close(c);
        mp__close(l);
    }
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_ERR(mp__local_address(longname, &sa, &len), MP_ENAMETOOLONG);
}

TEST(a_named_segment_is_known_by_its_identity)
{
    char name[80] = "/";
    mpt_name(name + 1, sizeof name - 1, "ident");
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    struct stat st;
    CHECK_EQ(fstat(fd, &st), 0);
    uint64_t dev = 0, ino = 0;
    CHECK_OK(mp__shm_identity(name, &dev, &ino));
    CHECK_EQ(dev, (uint64_t)st.st_dev);
    CHECK_EQ(ino, (uint64_t)st.st_ino);
    CHECK_EQ(shm_unlink(name), 0);
    CHECK_ERR(mp__shm_identity(name, &dev, &ino), MP_ENOENT);
    mp__close(fd);
}

TEST(released_memory_reads_as_zeros_everywhere)
{
    size_t page = mp__page_size();
    int fd = mp__memfd_new("release", 4 * page);
    CHECK_OK(fd);
    unsigned char *a, *b;
    CHECK_OK(mp__map_fd(fd, 4 * page, NULL, (void **)&a));
    CHECK_OK(mp__map_fd(fd, 4 * page, NULL, (void **)&b));
    memset(a, 0xab, 4 * page);
    CHECK_OK(mp__vm_release(a + page, 2 * page));
    /* Through the other mapping: the released pages are zeros, the rest
     * kept, and the file kept its size. */
    CHECK_EQ(b[0], 0xab);
    CHECK_EQ(b[page], 0);
    CHECK_EQ(b[3 * page - 1], 0);
    CHECK_EQ(b[3 * page], 0xab);
    size_t size = 0;
    CHECK_OK(mp__fd_size(fd, &size));
    CHECK_EQ(size, 4 * page);
    mp__unmap(a, 4 * page);
    mp__unmap(b, 4 * page);
    mp__close(fd);
}

TEST(a_private_stack_is_writable)
{
    void *s = NULL;
    CHECK_OK(mp__map_stack(64 * 1024, &s));
    memset(s, 1, 64 * 1024);
    CHECK_EQ(((unsigned char *)s)[64 * 1024 - 1], 1);
    CHECK_EQ(munmap(s, 64 * 1024), 0);
}

static void *try_lock(void *arg)
{
    return (void *)(intptr_t)pthread_mutex_trylock(arg);
}

TEST(a_local_mutex_excludes)
{
    pthread_mutex_t m;
    CHECK_OK(mp__local_mutex_init(&m));
    CHECK_EQ(pthread_mutex_lock(&m), 0);
    pthread_t t;
    void *res;
    CHECK_EQ(pthread_create(&t, NULL, try_lock, &m), 0);
    CHECK_EQ(pthread_join(t, &res), 0);
    CHECK_EQ((intptr_t)res, EBUSY);
    CHECK_EQ(pthread_mutex_unlock(&m), 0);
    CHECK_EQ(pthread_mutex_destroy(&m), 0);
}

/* Finds the module and segment holding an address. */
struct where {
    uintptr_t addr;
    int index; /* of the module, in the order they were listed */
    int seen;  /* modules listed so far */
    bool exec; /* the segment is executable */
    char path[PATH_MAX];
};

static int where_cb(const mp__module *m, void *ctx)
{
    struct where *w = ctx;
    for (size_t i = 0; i < m->nsegs; i++) {
        if (w->addr >= m->seg[i].lo && w->addr < m->seg[i].hi) {
            w->index = w->seen;
            w->exec = m->seg[i].exec;
            snprintf(w->path, sizeof w->path, "%s", m->path);
            return 1;
        }
    }
    w->seen++;
    return 0;
}

TEST(modules_list_the_program_first)
{
    struct where w = {.addr = (uintptr_t)where_cb, .index = -1};
    CHECK_EQ(mp__modules_each(where_cb, &w), 1);
    CHECK_EQ(w.index, 0);
    CHECK(w.exec);
    CHECK_STREQ(w.path, "");
    /* Data is not executable. */
    static int datum;
    struct where d = {.addr = (uintptr_t)&datum, .index = -1};
    CHECK_EQ(mp__modules_each(where_cb, &d), 1);
    CHECK(!d.exec);
    /* A shared library (the C library's, or a sanitizer's in front of it)
     * is a module with a path of its own. */
    struct where c = {.addr = (uintptr_t)&getpid, .index = -1};
    CHECK_EQ(mp__modules_each(where_cb, &c), 1);
    CHECK(c.index > 0);
    CHECK_CONTAINS(c.path, ".so");
    CHECK_EQ(mp__modules_generation(), mp__modules_generation());
}

TEST(the_executable_path_is_this_program)
{
    char path[PATH_MAX];
    int n = mp__exe_path(path, sizeof path);
    CHECK_GE(n, 1);
    CHECK_EQ((size_t)n, strlen(path));
    CHECK_CONTAINS(path, "test_platform_proc");
    struct stat a, b;
    CHECK_EQ(stat(path, &a), 0);
    CHECK_EQ(stat("/proc/self/exe", &b), 0);
    CHECK_EQ(a.st_ino, b.st_ino);
    char small[5];
    CHECK_EQ(mp__exe_path(small, sizeof small), 4);
    CHECK_EQ(strlen(small), 4);
    CHECK_ERR(mp__exe_path(small, 0), MP_EINVAL);
    CHECK(!mp__secure_exec());
}

static _Atomic uintptr_t handler_pc;

static void pc_handler(int signo, siginfo_t *si, void *uctx)
{
    (void)signo;
    (void)si;
    atomic_store(&handler_pc, mp__context_pc(uctx));
}

__attribute__((noinline)) static int backtrace_here(void **frames, int max)
{
    return mp__backtrace(frames, max);
}

TEST(backtraces_and_the_interrupted_pc)
{
    mp__backtrace_prepare();
    void *frames[32];
    int n = backtrace_here(frames, 32);
    CHECK_GE(n, 2);
    /* The innermost frames are in this program's code. */
    struct where w = {.addr = (uintptr_t)frames[0], .index = -1};
    CHECK_EQ(mp__modules_each(where_cb, &w), 1);
    CHECK(w.exec);
    CHECK_EQ(mp__backtrace(frames, 0), 0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = pc_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    CHECK_EQ(raise(SIGUSR1), 0);
    uintptr_t pc = atomic_load(&handler_pc);
    CHECK_NE(pc, 0);
    struct where p = {.addr = pc, .index = -1};
    CHECK_EQ(mp__modules_each(where_cb, &p), 1);
    CHECK(p.exec);
    CHECK_EQ(mp__context_pc(NULL), 0);
}

TEST(errno_names_and_texts)
{
    CHECK_STREQ(mp__errno_name(ENOENT), "ENOENT");
    CHECK(mp__errno_text(ENOENT) != NULL);
    CHECK(mp__errno_name(0) == NULL);
    CHECK(mp__errno_name(-1) == NULL);
    CHECK(mp__errno_text(0) == NULL);
    CHECK(mp__errno_name(99999) == NULL);
}

TEST(discarded_output_is_never_written)
{
    int pp[2];
    CHECK_OK(mp__pipe(pp, 0));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        FILE *f = fdopen(pp[1], "w");
        if (!f)
            _exit(1);
        setvbuf(f, NULL, _IOFBF, 4096);
        fputs("lost ", f);
        mp__stdio_discard(f);
        fputs("kept\n", f);
        fclose(f);
        _exit(0);
    }
    close(pp[1]);
    char buf[64] = "";
    size_t got = 0;
    for (;;) {
        CHECK_GE(mp__poll_fd(pp[0], POLLIN, mp__deadline(30.0)), 1);
        ssize_t r = read(pp[0], buf + got, sizeof buf - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    close(pp[0]);
    reap_ok(pid);
    CHECK_STREQ(buf, "kept\n");
}

MPT_MAIN()
