/* Tests of the platform layer: deadlines, futexes, the robust mutex,
 * descriptor helpers and descriptor passing, symbols. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"

#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

TEST(deadlines)
{
    CHECK_EQ(mp__deadline(MP_FOREVER), MP__NO_DEADLINE);
    CHECK_EQ(mp__deadline(-5.0), MP__NO_DEADLINE);
    CHECK_EQ(mp__remaining_ns(MP__NO_DEADLINE), INT64_MAX);
    int64_t now = mp__now_ns();
    int64_t d0 = mp__deadline(0);
    CHECK(d0 >= now && d0 - now < 1000000000);
    CHECK(mp__remaining_ns(d0) <= 0);
    int64_t d = mp__deadline(1.5);
    CHECK(d - now >= 1500000000LL);
    CHECK(d - now < 2500000000LL);
    CHECK_EQ(mp__deadline(1e30), MP__NO_DEADLINE);
    struct timespec ts;
    CHECK(!mp__deadline_timespec(MP__NO_DEADLINE, &ts));
    CHECK(mp__deadline_timespec(d, &ts));
    CHECK_EQ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, d);
}

/* The switch of the re-check slices (platform.h): off in every case (the
 * runner sets MPROC_TEST_NO_RECHECK=1), read afresh at each call, so that
 * mpt_allow_recheck() turns them back on; off, a sleep lasts to the
 * deadline, on, a slice at most. */
TEST(recheck_slices_follow_the_test_setting)
{
    CHECK(!mp__recheck_slices());
    int64_t now = mp__now_ns(), far = now + 60000000000LL;
    CHECK_EQ(mp__slice_end(false, far, 100000000LL), far);
    CHECK_EQ(mp__slice_end(false, MP__NO_DEADLINE, 100000000LL), MP__NO_DEADLINE);
    mpt_allow_recheck();
    CHECK(mp__recheck_slices());
    int64_t end = mp__slice_end(true, far, 100000000LL);
    CHECK(end >= now + 100000000LL && end < now + 10000000000LL);
    CHECK_EQ(mp__slice_end(true, now, 100000000LL), now);
    setenv("MPROC_TEST_NO_RECHECK", "1", 1);
    CHECK(!mp__recheck_slices());
}

/* The conversions of the time rule (common.h): saturating, never wrapping. */
TEST(seconds_and_sums_saturate)
{
    CHECK_EQ(mp__seconds_ns(1.5), 1500000000LL);
    CHECK_EQ(mp__seconds_ns(0), 0);
    CHECK_EQ(mp__seconds_ns(-3), 0);
    CHECK_EQ(mp__seconds_ns(1e-10), 0);
    CHECK_EQ(mp__seconds_ns(INFINITY), INT64_MAX);
    CHECK_EQ(mp__seconds_ns(1e10), INT64_MAX);
    CHECK_EQ(mp__seconds_ns(9.2e9), 9200000000000000000LL);
    CHECK_EQ(mp__time_after(100, 5), 105);
    CHECK_EQ(mp__time_after(mp__now_ns(), INT64_MAX), MP__NO_DEADLINE);
    CHECK_EQ(mp__time_after(INT64_MAX - 10, 20), MP__NO_DEADLINE);
    CHECK_EQ(mp__deadline(9.3e9), MP__NO_DEADLINE);
    CHECK_EQ(mp__deadline(-INFINITY), MP__NO_DEADLINE);
    CHECK_ERR(mp__timeout_check(NAN), MP_EINVAL);
    CHECK_OK(mp__timeout_check(-1));
    CHECK_ERR(mp__duration_check(-1), MP_EINVAL);
    CHECK_ERR(mp__duration_check(NAN), MP_EINVAL);
    CHECK_OK(mp__duration_check(INFINITY));
}

TEST(futex_wait_times_out_and_wakes)
{
    _Atomic uint32_t *word;
    CHECK_OK(mp__map_anon_shared(4096, (void **)&word));
    atomic_store(word, 0);
    /* A value that differs returns at once. */
    CHECK_OK(mp__futex_wait(word, 1, mp__deadline(10.0)));
    /* No one wakes us: the deadline ends the wait, not before it. */
    double t0 = mpt_now();
    CHECK_ERR(mp__futex_wait(word, 0, mp__deadline(0.1)), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.1);
    CHECK_ERR(mp__futex_wait(word, 0, mp__deadline(0)), MP_ETIMEDOUT);

    /* Across processes: the child waits for the word to change. */
    pid_t pid = fork();
    if (pid == 0) {
        int64_t dl = mp__deadline(30.0);
        while (atomic_load(word) == 0) {
            if (mp__futex_wait(word, 0, dl) == MP_ETIMEDOUT)
                _exit(1);
        }
        _exit(atomic_load(word) == 7 ? 0 : 2);
    }
    atomic_store(word, 7);
    mp__futex_wake(word, INT32_MAX);
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    mp__unmap((void *)word, 4096);
}

TEST(futex_waitv_sleeps_on_many_words)
{
    _Atomic uint32_t *w;
    CHECK_OK(mp__map_anon_shared(4096, (void **)&w));
    _Atomic uint32_t *words[3] = {&w[0], &w[16], &w[32]};
    uint32_t vals[3] = {0, 0, 0};
    CHECK_ERR(mp__futex_waitv(words, vals, 0, mp__deadline(1)), MP_EINVAL);
    CHECK_ERR(mp__futex_waitv(words, vals, MP__FUTEX_WAITV_MAX + 1, mp__deadline(1)), MP_EINVAL);
    if (mp__futex_waitv(words, vals, 3, mp__deadline(0)) == MP_ENOSYS) {
        /* Linux before 5.16: mp_wait_any degrades (tests/test_wait.c). */
        fprintf(stderr, "  futex_waitv: not in this kernel\n");
        mp__unmap((void *)w, 4096);
        return;
    }
    /* A word that differs returns at once; none changing, the deadline. */
    vals[1] = 5;
    CHECK_GE(mp__futex_waitv(words, vals, 3, mp__deadline(10)), 0);
    vals[1] = 0;
    double t0 = mpt_now();
    CHECK_ERR(mp__futex_waitv(words, vals, 3, mp__deadline(0.1)), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.1);
    /* A wake on any one word, from another process, ends the sleep. */
    pid_t pid = fork();
    if (pid == 0) {
        int64_t dl = mp__deadline(30);
        while (atomic_load(&w[32]) == 0)
            if (mp__futex_waitv(words, vals, 3, dl) == MP_ETIMEDOUT)
                _exit(1);
        _exit(0);
    }
    atomic_store(&w[32], 1);
    mp__futex_wake(&w[32], INT32_MAX);
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    mp__unmap((void *)w, 4096);
}

/* A thread that names itself, says so, and waits to be let go. */
typedef struct named_thread {
    const char *name;
    int ready[2], go[2];
    bool self_named;
} named_thread;

static void *named_main(void *arg)
{
    named_thread *t = arg;
    if (t->name)
        mp__thread_set_name(t->name);
    int total, named;
    (void)mp__threads_count("mproc-", &total, &named, &t->self_named);
    char c = 1;
    if (write(t->ready[1], &c, 1) != 1)
        return NULL;
    struct pollfd p = {.fd = t->go[0], .events = POLLIN};
    poll(&p, 1, 30000);
    return NULL;
}

TEST(threads_are_counted_and_the_library_s_told_apart)
{
    int total, named;
    bool self;
    CHECK_OK(mp__threads_count("mproc-", &total, &named, &self));
    CHECK_EQ(total, 1);
    named_thread t[2] = {{.name = "mproc-x"}, {.name = NULL}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(pipe(t[i].ready), 0);
        CHECK_EQ(pipe(t[i].go), 0);
        CHECK_EQ(pthread_create(&th[i], NULL, named_main, &t[i]), 0);
        char c;
        CHECK_EQ(read(t[i].ready[0], &c, 1), 1);
    }
    CHECK_OK(mp__threads_count("mproc-", &total, &named, &self));
    CHECK_EQ(total, 3);
    CHECK_EQ(named, 1);
    CHECK(!self);
    CHECK(t[0].self_named);
    CHECK(!t[1].self_named);
    char name[16];
    CHECK_OK(mp__thread_get_name(name, sizeof name));
    CHECK(strncmp(name, "mproc-", 6) != 0);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(write(t[i].go[1], "x", 1), 1);
        pthread_join(th[i], NULL);
        close(t[i].ready[0]);
        close(t[i].ready[1]);
        close(t[i].go[0]);
        close(t[i].go[1]);
    }
    /* A thread the library starts is named before anyone can count it. */
    pthread_t lt;
    int go[2];
    CHECK_EQ(pipe(go), 0);
    named_thread lib = {.name = NULL};
    CHECK_EQ(pipe(lib.ready), 0);
    lib.go[0] = go[0];
    CHECK_OK(mp__thread_start(&lt, "mproc-lib", named_main, &lib));
    CHECK_OK(mp__threads_count("mproc-", &total, &named, &self));
    CHECK_EQ(total, 2);
    CHECK_EQ(named, 1);
    char c;
    CHECK_EQ(read(lib.ready[0], &c, 1), 1);
    CHECK(lib.self_named);
    CHECK_EQ(write(go[1], "x", 1), 1);
    pthread_join(lt, NULL);
    close(go[0]);
    close(go[1]);
    close(lib.ready[0]);
    close(lib.ready[1]);
}

TEST(mutex_recovers_from_a_dead_holder)
{
    mp__mutex *m;
    CHECK_OK(mp__map_anon_shared(4096, (void **)&m));
    CHECK_OK(mp__mutex_init(m));
    CHECK_OK(mp__mutex_lock(m, MP__NO_DEADLINE));
    CHECK_ERR(mp__mutex_lock(m, MP__NO_DEADLINE), MP_EDEADLK);
    CHECK_OK(mp__mutex_unlock(m));
    CHECK_ERR(mp__mutex_unlock(m), MP_EPERM);

    int ready[2];
    CHECK_EQ(pipe2(ready, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (mp__mutex_lock(m, MP__NO_DEADLINE) != 0)
            _exit(1);
        char c = 1;
        (void)!write(ready[1], &c, 1);
        for (;;)
            pause(); /* dies holding the lock */
    }
    char c;
    struct pollfd pf = {.fd = ready[0], .events = POLLIN};
    CHECK_EQ(poll(&pf, 1, 30000), 1);
    CHECK_EQ(read(ready[0], &c, 1), 1);
    /* Held by the child: a timed lock times out. */
    CHECK_ERR(mp__mutex_lock(m, mp__deadline(0.05)), MP_ETIMEDOUT);
    CHECK_ERR(mp__mutex_trylock(m), MP_EBUSY);
    kill(pid, SIGKILL);
    CHECK_EQ(waitpid(pid, NULL, 0), pid);
    /* The holder died: the next locker is told, and repairs. */
    CHECK_ERR(mp__mutex_lock(m, mp__deadline(10.0)), MP_EOWNERDEAD);
    CHECK_OK(mp__mutex_consistent(m));
    CHECK_OK(mp__mutex_unlock(m));
    CHECK_OK(mp__mutex_lock(m, mp__deadline(10.0)));
    CHECK_OK(mp__mutex_unlock(m));
    mp__mutex_destroy(m);
    mp__unmap(m, 4096);
    close(ready[0]);
    close(ready[1]);
}

TEST(mutex_unrepaired_is_not_recoverable)
{
    mp__mutex *m;
    CHECK_OK(mp__map_anon_shared(4096, (void **)&m));
    CHECK_OK(mp__mutex_init(m));
    pid_t pid = fork();
    if (pid == 0) {
        mp__mutex_lock(m, MP__NO_DEADLINE);
        _exit(0); /* exits holding it */
    }
    CHECK_EQ(waitpid(pid, NULL, 0), pid);
    CHECK_ERR(mp__mutex_lock(m, mp__deadline(10.0)), MP_EOWNERDEAD);
    CHECK_OK(mp__mutex_unlock(m)); /* without consistent(): given up */
    CHECK_ERR(mp__mutex_lock(m, mp__deadline(10.0)), MP_ENOTRECOVERABLE);
    mp__mutex_destroy(m);
    mp__unmap(m, 4096);
}

TEST(read_write_all_and_eof)
{
    int p[2];
    CHECK_OK(mp__pipe(p, 0));
    char big[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)i;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        _exit(mp__write_all(p[1], big, sizeof big) == 0 ? 0 : 1);
    }
    close(p[1]);
    char got[sizeof big];
    CHECK_OK(mp__read_all(p[0], got, sizeof got));
    CHECK(memcmp(got, big, sizeof big) == 0);
    CHECK_ERR(mp__read_all(p[0], got, 10), MP_EOF);
    CHECK_EQ(waitpid(pid, NULL, 0), pid);
    close(p[0]);

    /* A stream that ends midway is a protocol error, not an EOF. */
    CHECK_OK(mp__pipe(p, 0));
    CHECK_EQ(write(p[1], "abc", 3), 3);
    close(p[1]);
    CHECK_ERR(mp__read_all(p[0], got, 10), MP_EPROTO);
    close(p[0]);

    /* Writing to a socket nobody reads is MP_EPIPE, never SIGPIPE. */
    int sv[2];
    CHECK_OK(mp__socketpair(SOCK_STREAM, sv));
    close(sv[1]);
    CHECK_ERR(mp__send_fds(sv[0], "x", 1, NULL, 0), MP_EPIPE);
    close(sv[0]);
}

TEST(poll_fd_deadline)
{
    int p[2];
    CHECK_OK(mp__pipe(p, 0));
    double t0 = mpt_now();
    CHECK_ERR(mp__poll_fd(p[0], POLLIN, mp__deadline(0.05)), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.05);
    CHECK_EQ(write(p[1], "x", 1), 1);
    CHECK(mp__poll_fd(p[0], POLLIN, mp__deadline(0)) & POLLIN);
    close(p[0]);
    close(p[1]);
}

TEST(descriptors_pass_over_a_socket)
{
    int sv[2], p[2];
    CHECK_OK(mp__socketpair(SOCK_STREAM, sv));
    CHECK_OK(mp__pipe(p, 0));
    CHECK_OK(mp__send_fds(sv[0], "hello", 5, &p[1], 1));
    char buf[16];
    int fds[4];
    size_t n = 4;
    CHECK_EQ(mp__recv_fds(sv[1], buf, sizeof buf, fds, &n), 5);
    CHECK_EQ(n, 1);
    CHECK(memcmp(buf, "hello", 5) == 0);
    /* The received descriptor is the pipe's write end, close-on-exec. */
    CHECK(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
    CHECK_EQ(write(fds[0], "z", 1), 1);
    CHECK_EQ(read(p[0], buf, 1), 1);
    CHECK_EQ(buf[0], 'z');
    /* More descriptors than the receiver takes are closed, not leaked. */
    int two[2] = {p[0], p[1]};
    CHECK_OK(mp__send_fds(sv[0], "y", 1, two, 2));
    n = 1;
    CHECK_EQ(mp__recv_fds(sv[1], buf, sizeof buf, fds + 1, &n), 1);
    CHECK_EQ(n, 1);
    close(fds[0]);
    close(fds[1]);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
}

TEST(memfd_maps_at_a_chosen_address)
{
    int fd = mp__memfd_new("test", 8192);
    CHECK(fd >= 0);
    void *a;
    CHECK_OK(mp__map_fd(fd, 8192, NULL, &a));
    strcpy(a, "shared");
    void *b;
    CHECK_OK(mp__map_fd(fd, 8192, NULL, &b));
    CHECK_STREQ(b, "shared");
    /* An address already in use is refused, not overwritten. */
    void *c;
    CHECK_ERR(mp__map_fd(fd, 8192, a, &c), MP_EEXIST);
    mp__unmap(a, 8192);
    mp__unmap(b, 8192);
    close(fd);
}

__attribute__((noinline)) static int a_static_function(int x)
{
    return x * 3 + 1;
}

TEST(symbols_of_static_functions)
{
    mp__fnref ref;
    CHECK_OK(mp__fnref_from_ptr((const void *)a_static_function, &ref));
    CHECK_STREQ(ref.path, "");
    void *fn;
    CHECK_OK(mp__fnref_resolve(&ref, &fn));
    CHECK(fn == (void *)a_static_function);
    CHECK_EQ(((int (*)(int))fn)(4), 13);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n] = '\0';
    char name[128];
    uint64_t delta;
    CHECK_OK(mp__symbolize(exe, ref.offset + 2, name, sizeof name, &delta));
    CHECK_STREQ(name, "a_static_function");
    CHECK_EQ(delta, 2);
    /* Data is not code: no reference to it. */
    static int data;
    CHECK_ERR(mp__fnref_from_ptr(&data, &ref), MP_EINVAL);
    CHECK_ERR(mp__symbolize("/nonexistent", 0, name, sizeof name, &delta), MP_ENOENT);
}

TEST(signal_names)
{
    CHECK_STREQ(mp__signal_name(SIGSEGV), "SIGSEGV");
    CHECK_STREQ(mp__signal_name(SIGKILL), "SIGKILL");
    CHECK_STREQ(mp__signal_code_text(SIGSEGV, SEGV_MAPERR), "address not mapped to object");
    CHECK_STREQ(mp__signal_code_text(SIGFPE, FPE_INTDIV), "integer divide by zero");
    CHECK_STREQ(mp__signal_name(0), "unknown signal");
}

MPT_MAIN()
