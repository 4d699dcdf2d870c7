/* Tests of the error model: codes, names and messages from one table. */
#include "mp_test.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

TEST(errno_codes_are_negative_errno)
{
    CHECK_EQ(MP_EAGAIN, -EAGAIN);
    CHECK_EQ(MP_ETIMEDOUT, -ETIMEDOUT);
    CHECK_EQ(MP_EOWNERDEAD, -EOWNERDEAD);
    CHECK_EQ(MP_EMSGSIZE, -EMSGSIZE);
    CHECK_EQ(MP_EPIPE, -EPIPE);
}

TEST(own_codes_live_below_errno)
{
    int own[] = {MP_EOF,   MP_ECLOSED, MP_EWORKER, MP_EBROKEN,
                 MP_EAUTH, MP_ETASK,   MP_EINIT,   MP_ESTATE};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        CHECK_LE(own[i], -4000);
        for (size_t j = i + 1; j < sizeof own / sizeof own[0]; j++)
            CHECK_NE(own[i], own[j]);
    }
}

TEST(names_and_messages)
{
    CHECK_STREQ(mp_err_name(MP_ETIMEDOUT), "MP_ETIMEDOUT");
    CHECK_STREQ(mp_strerror(MP_ETIMEDOUT), "timed out");
    CHECK_STREQ(mp_err_name(MP_EOF), "MP_EOF");
    CHECK_CONTAINS(mp_strerror(MP_EOF), "end of stream");
    CHECK_STREQ(mp_err_name(MP_EOWNERDEAD), "MP_EOWNERDEAD");
    CHECK_STREQ(mp_err_name(0), "OK");
    CHECK_STREQ(mp_err_name(17), "OK");
    CHECK_STREQ(mp_strerror(0), "success");
}

TEST(unlisted_errno_falls_back_to_libc)
{
    /* EXDEV is not in the table: the C library names it. */
    CHECK_STREQ(mp_err_name(-EXDEV), "EXDEV");
    CHECK_CONTAINS(mp_strerror(-EXDEV), "link");
    CHECK_STREQ(mp_err_name(-3999999), "MP_EUNKNOWN");
    CHECK_STREQ(mp_strerror(-3999999), "unknown error");
}

TEST(version)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MP_VERSION_MAJOR, MP_VERSION_MINOR, MP_VERSION_PATCH);
    CHECK_STREQ(mp_version_string(), want);
}

/* ---- mp_last_error_detail: which argument, which rule --------------------------- */

/* The call returns code, and the detail names the call and contains what. */
#define CHECK_DETAIL(expr, code, call, what)               \
    do {                                                   \
        CHECK_ERR(expr, code);                             \
        CHECK_CONTAINS(mp_last_error_detail(), call ": "); \
        CHECK_CONTAINS(mp_last_error_detail(), what);      \
    } while (0)

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

TEST(detail_is_empty_before_any_failure)
{
    CHECK_STREQ(mp_last_error_detail(), "");
}

TEST(detail_stays_until_the_next_failure_with_one)
{
    mp_log_level lv;
    CHECK_DETAIL(mp_log_parse_level("loud", &lv), MP_EINVAL, "mp_log_parse_level",
                 "(got \"loud\")");
    /* A success leaves it. */
    CHECK_OK(mp_log_parse_level("info", &lv));
    CHECK_CONTAINS(mp_last_error_detail(), "loud");
    /* The next failure replaces it. */
    CHECK_DETAIL(mp_set_start_method((mp_start_method)42), MP_EINVAL, "mp_set_start_method",
                 "(got 42)");
    CHECK_EQ(strstr(mp_last_error_detail(), "loud") == NULL, 1);
}

static void *fail_in_thread(void *arg)
{
    char *seen = arg;
    /* A thread starts with no detail of its own, whatever the others did. */
    snprintf(seen, 256, "%s", mp_last_error_detail());
    (void)mp_set_start_method((mp_start_method)7);
    return NULL;
}

TEST(detail_is_per_thread)
{
    mp_log_level lv;
    CHECK_ERR(mp_log_parse_level("loud", &lv), MP_EINVAL);
    char seen[256] = "unset";
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, fail_in_thread, seen), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK_STREQ(seen, "");
    /* The thread's failure did not replace this thread's detail. */
    CHECK_CONTAINS(mp_last_error_detail(), "mp_log_parse_level");
}

TEST(detail_is_logged_at_debug_level)
{
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    CHECK_OK(mp_log_set_fd(fds[1]));
    mp_log_set_level(MP_LOG_DEBUG);
    mp_shm *s = NULL;
    CHECK_ERR(mp_shm_create("a/b", 4096, &s), MP_EINVAL);
    mp_log_set_level(MP_LOG_OFF);
    close(fds[1]);
    char buf[1024];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    CHECK_GE(n, 1);
    buf[n > 0 ? n : 0] = '\0';
    CHECK_CONTAINS(buf, "MP_EINVAL");
    CHECK_CONTAINS(buf, "mp_shm_create: name must");
}

TEST(process_details)
{
    mp_process *p = NULL;
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    CHECK_DETAIL(mp_process_new_opts(NULL, NULL, &o, &p), MP_EINVAL, "mp_process_new_opts",
                 "target must not be NULL");
    o.nfds = 65;
    int fd = 0;
    o.fds = &fd;
    CHECK_DETAIL(mp_process_new_opts(nothing, NULL, &o, &p), MP_EINVAL, "mp_process_new_opts",
                 "opts.nfds must be at most 64 (got 65)");
    o.nfds = 1;
    o.fds = NULL;
    CHECK_DETAIL(mp_process_new_opts(nothing, NULL, &o, &p), MP_EINVAL, "mp_process_new_opts",
                 "opts.fds must not be NULL");
    mp_process_opts o2 = MP_PROCESS_OPTS_INIT;
    o2.start_method = MP_START_SPAWN;
    o2.arg_size = 8;
    CHECK_DETAIL(mp_process_new_opts(nothing, NULL, &o2, &p), MP_EINVAL, "mp_process_new_opts",
                 "arg must not be NULL when opts.arg_size is 8");
    o2.start_method = (mp_start_method)9;
    CHECK_DETAIL(mp_process_new_opts(nothing, NULL, &o2, &p), MP_EINVAL, "mp_process_new_opts",
                 "opts.start_method");
    CHECK_DETAIL(mp_process_new(nothing, NULL, NULL, NULL), MP_EINVAL, "mp_process_new_opts",
                 "out must not be NULL");
    CHECK_OK(mp_process_new(nothing, NULL, "idle", &p));
    int code;
    CHECK_DETAIL(mp_process_exitcode(p, NULL), MP_EINVAL, "mp_process_exitcode",
                 "code must not be NULL");
    CHECK_DETAIL(mp_process_error(p, NULL), MP_EINVAL, "mp_process_error", "err must not be NULL");
    CHECK_DETAIL(mp_process_exitcode(NULL, &code), MP_EINVAL, "mp_process_exitcode",
                 "p must not be NULL");
    CHECK_DETAIL(mp_process_signal(p, -1), MP_EINVAL, "mp_process_signal", "signo must be 0 to");
    CHECK_DETAIL(mp_process_signal(p, SIGTERM), MP_ESTATE, "mp_process_signal",
                 "idle was never started");
    CHECK_DETAIL(mp_active_children(NULL, 3), MP_EINVAL, "mp_active_children",
                 "out must not be NULL when cap is 3");
    mp_process_free(p);
}

TEST(shm_and_arena_details)
{
    mp_shm *s = NULL;
    CHECK_DETAIL(mp_shm_create("a/b", 4096, &s), MP_EINVAL, "mp_shm_create", "(got \"a/b\")");
    CHECK_DETAIL(mp_shm_create(NULL, 0, &s), MP_EINVAL, "mp_shm_create",
                 "size must be 1 to INT64_MAX bytes (got 0)");
    char longname[MP_SHM_NAME_MAX + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_DETAIL(mp_shm_create(longname, 4096, &s), MP_ENAMETOOLONG, "mp_shm_create",
                 "name must be at most 200 bytes (got 201)");
    CHECK_DETAIL(mp_shm_attach(NULL, &s), MP_EINVAL, "mp_shm_attach", "name must not be NULL");
    CHECK_DETAIL(mp_shm_close(NULL), MP_EINVAL, "mp_shm_close", "s must not be NULL");
    CHECK_NULL(s);

    mp_arena *a = NULL;
    CHECK_DETAIL(mp_arena_new(1, &a), MP_EINVAL, "mp_arena_new", "size must be 65536 to");
    CHECK_DETAIL(mp_arena_attach(-1, &a), MP_EINVAL, "mp_arena_attach", "fd must be >= 0 (got -1)");
    CHECK_DETAIL(mp_arena_set_default_size(0), MP_EINVAL, "mp_arena_set_default_size", "(got 0)");
    CHECK_NULL(mp_arena_alloc(NULL, 0));
    CHECK_CONTAINS(mp_last_error_detail(), "mp_arena_alloc: size must be > 0");
    CHECK_DETAIL(mp_arena_close(mp_arena_default()), MP_EPERM, "mp_arena_close", "default arena");
}

TEST(value_details)
{
    mp_value *v = NULL;
    mp_array *a = NULL;
    CHECK_DETAIL(mp_value_new((mp_type)99, NULL, false, &v), MP_EINVAL, "mp_value_new_in",
                 "type must be an mp_type (got 99)");
    CHECK_DETAIL(mp_array_new(MP_TYPE_i, 0, NULL, false, &a), MP_EINVAL, "mp_array_new_in",
                 "n must be > 0");
    CHECK_DETAIL(mp_type_from_code('z'), MP_EINVAL, "mp_type_from_code", "(got 0x7a)");

    CHECK_OK(mp_array_new(MP_TYPE_b, 3, NULL, true, &a));
    int64_t x;
    double d;
    CHECK_DETAIL(mp_array_get_i64(a, 5, &x), MP_ERANGE, "mp_array_get_i64",
                 "index must be < 3 (got 5)");
    CHECK_DETAIL(mp_array_set_i64(a, 0, 1000), MP_ERANGE, "mp_array_set_i64",
                 "x must be -128 to 127 for type 'b' (got 1000)");
    CHECK_DETAIL(mp_array_get_i64(a, 0, NULL), MP_EINVAL, "mp_array_get_i64",
                 "out must not be NULL");
    CHECK_DETAIL(mp_array_get_double(a, 0, &d), MP_EINVAL, "mp_array_get_double",
                 "needs a floating-point type");
    CHECK_DETAIL(mp_array_read(a, 2, 2, &x), MP_ERANGE, "mp_array_read",
                 "start + n must be at most 3 (got 2 + 2)");
    CHECK_DETAIL(mp_array_set(a, 0, NULL), MP_EINVAL, "mp_array_set", "buf must not be NULL");
    mp_array_free(a);

    CHECK_OK(mp_value_new(MP_TYPE_d, NULL, false, &v));
    CHECK_DETAIL(mp_value_set_i64(v, 1), MP_EINVAL, "mp_value_set_i64",
                 "needs an integer type (this one is 'd')");
    CHECK_DETAIL(mp_value_compare_exchange(NULL, &x, 1), MP_EINVAL, "mp_value_compare_exchange",
                 "must be a live mp_value");
    mp_value_free(v);
}

TEST(shutdown_wait_and_start_method_details)
{
    mp_shutdown_opts o = MP_SHUTDOWN_OPTS_INIT;
    o.grace = -1;
    CHECK_DETAIL(mp_shutdown_ex(&o, NULL), MP_EINVAL, "mp_shutdown_ex",
                 "opts.grace must be >= 0 seconds (got -1)");
    CHECK_DETAIL(mp_shutdown_report_get(NULL), MP_EINVAL, "mp_shutdown_report_get",
                 "out must not be NULL");

    mp_waitable w[2] = {mp_waitable_fd(0), mp_waitable_fd(-1)};
    CHECK_DETAIL(mp_wait_any(w, 2, 0), MP_EINVAL, "mp_wait_any",
                 "set[1].obj.fd must be >= 0 (got -1)");
    CHECK_DETAIL(mp_wait_any(w, 0, 0), MP_EINVAL, "mp_wait_any", "n must be > 0");
    CHECK_DETAIL(mp_wait_any(NULL, 1, 0), MP_EINVAL, "mp_wait_any", "set must not be NULL");
    w[0].kind = (mp_wait_kind)77;
    CHECK_DETAIL(mp_wait_any(w, 1, 0), MP_EINVAL, "mp_wait_any",
                 "set[0].kind must be an mp_wait_kind (got 77)");

    CHECK_DETAIL(mp_set_start_method((mp_start_method)5), MP_EINVAL, "mp_set_start_method",
                 "method must be MP_START_FORK");
}

TEST(manager_details)
{
    static const char key[16] = "0123456789abcdef";
    mp_manager *m = NULL;
    CHECK_DETAIL(mp_manager_connect("unix:@x", NULL, 16, &m), MP_EINVAL, "mp_manager_connect_opts",
                 "opts.authkey must not be NULL");
    CHECK_DETAIL(mp_manager_connect("unix:@x", key, 0, &m), MP_EINVAL, "mp_manager_connect_opts",
                 "opts.authkey_len must be 1 to 1024 bytes (got 0)");
    CHECK_DETAIL(mp_manager_connect(NULL, key, 16, &m), MP_EINVAL, "mp_manager_connect_opts",
                 "opts.address must not be NULL");
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.max_clients = -2;
    CHECK_DETAIL(mp_manager_start(&o, &m), MP_EINVAL, "mp_manager_start",
                 "opts.max_clients must be >= 0 (got -2)");
    CHECK_DETAIL(mp_manager_remove(NULL, "x"), MP_EINVAL, "mp_manager_remove",
                 "m must not be NULL");
    mp_mdict *d = NULL;
    CHECK_DETAIL(mp_mdict_new(NULL, "x", &d), MP_EINVAL, "mp_mdict_new", "m must not be NULL");
    CHECK_DETAIL(mp_mdict_set(NULL, "", "v", 1), MP_EINVAL, "mp_mdict_set", "key must be 1 to");
    CHECK_NULL(m);
    if (!mp_manager_available())
        MPT_SKIP("no manager in this build (libsodium)");
    CHECK_DETAIL(mp_manager_connect("nowhere", key, 16, &m), MP_EINVAL, "mp_manager_connect_opts",
                 "opts.address must be unix:/PATH");
}

TEST(sync_details)
{
    mp_lock *l = NULL;
    CHECK_DETAIL(mp_lock_new(NULL), MP_EINVAL, "mp_lock_new", "out must not be NULL");
    CHECK_DETAIL(mp_rlock_new(NULL), MP_EINVAL, "mp_rlock_new", "out must not be NULL");
    CHECK_DETAIL(mp_lock_acquire(NULL, 1), MP_EINVAL, "mp_lock_acquire", "l must be initialised");
    CHECK_OK(mp_lock_new(&l));
    CHECK_DETAIL(mp_lock_acquire(l, NAN), MP_EINVAL, "mp_lock_acquire", "timeout must be a number");
    CHECK_DETAIL(mp_lock_consistent(l), MP_EINVAL, "mp_lock_consistent",
                 "l must be held by the calling thread");
    mp_sem *s = NULL;
    CHECK_DETAIL(mp_sem_new(MP_SEM_VALUE_MAX + 1u, &s), MP_EINVAL, "mp_sem_new",
                 "value must be 0 to");
    CHECK_DETAIL(mp_sem_release(NULL), MP_EINVAL, "mp_sem_release", "s must be initialised");
    CHECK_OK(mp_sem_new_bounded(1, &s));
    CHECK_DETAIL(mp_sem_release(s), MP_EOVERFLOW, "mp_sem_release", "s must be below its bound 1");
    mp_sem_free(s);
    CHECK_DETAIL(mp_event_wait(NULL, 0), MP_EINVAL, "mp_event_wait", "e must be initialised");
    mp_cond *c = NULL;
    CHECK_OK(mp_cond_new(l, &c));
    CHECK_DETAIL(mp_cond_notify(c, 0), MP_EINVAL, "mp_cond_notify", "n must be >= 1 (got 0)");
    CHECK_DETAIL(mp_cond_notify_all(c), MP_EPERM, "mp_cond_notify_all",
                 "c's lock must be held by the calling thread");
    CHECK_DETAIL(mp_cond_wait_for(c, NULL, NULL, 1), MP_EINVAL, "mp_cond_wait_for",
                 "pred must not be NULL");
    mp_barrier *b = NULL;
    CHECK_DETAIL(mp_barrier_new(0, &b), MP_EINVAL, "mp_barrier_new", "parties must be 1 to");
    CHECK_DETAIL(mp_barrier_wait(NULL, 1), MP_EINVAL, "mp_barrier_wait", "b must be initialised");
    mp_cond_free(c);
    mp_lock_free(l);
}

TEST(queue_details)
{
    mp_queue *q = NULL;
    CHECK_DETAIL(mp_queue_new_opts(NULL, NULL), MP_EINVAL, "mp_queue_new_opts",
                 "out must not be NULL");
    mp_queue_opts o = MP_QUEUE_OPTS_INIT;
    o.capacity = (size_t)1 << 31;
    CHECK_DETAIL(mp_queue_new_opts(&o, &q), MP_EINVAL, "mp_queue_new_opts",
                 "opts.capacity must be at most");
    CHECK_DETAIL(mp_queue_attach(-1, &q), MP_EBADF, "mp_queue_attach", "fd must be >= 0 (got -1)");
    CHECK_OK(mp_queue_new(4096, &q));
    CHECK_DETAIL(mp_queue_put(q, NULL, 4, 1), MP_EINVAL, "mp_queue_put",
                 "buf must not be NULL when len > 0");
    CHECK_DETAIL(mp_queue_put(q, "x", 1, NAN), MP_EINVAL, "mp_queue_put", "timeout must be");
    static char big[8192];
    CHECK_DETAIL(mp_queue_put(q, big, sizeof big, 1), MP_EMSGSIZE, "mp_queue_put",
                 "len must be at most");
    CHECK_DETAIL(mp_queue_get(NULL, big, 1, NULL, 0), MP_EINVAL, "mp_queue_get",
                 "q must not be NULL");
    CHECK_DETAIL(mp_queue_task_done(q), MP_ENOTSUP, "mp_queue_task_done", "opts.joinable");
    CHECK_DETAIL(mp_queue_stats_get(q, NULL), MP_EINVAL, "mp_queue_stats_get",
                 "out must not be NULL");
    mp_queue_free(q);
}

TEST(pipe_details)
{
    mp_conn *a = NULL, *b = NULL;
    CHECK_DETAIL(mp_pipe(NULL, &b, true), MP_EINVAL, "mp_pipe", "a must not be NULL");
    CHECK_DETAIL(mp_conn_from_fd(-1, MP_CONN_READABLE, &a), MP_EINVAL, "mp_conn_from_fd",
                 "fd must be >= 0 (got -1)");
    CHECK_DETAIL(mp_conn_from_fd(0, 0, &a), MP_EINVAL, "mp_conn_from_fd", "flags must be");
    CHECK_OK(mp_pipe(&a, &b, true));
    CHECK_DETAIL(mp_conn_send_timeout(a, NULL, 3, 1), MP_EINVAL, "mp_conn_send_timeout",
                 "buf must not be NULL when len > 0");
    CHECK_DETAIL(mp_conn_send_timeout(NULL, "x", 1, 1), MP_EINVAL, "mp_conn_send_timeout",
                 "c must not be NULL");
    char buf[4];
    CHECK_DETAIL(mp_conn_recv(b, buf, sizeof buf, NULL, 0), MP_EINVAL, "mp_conn_recv",
                 "len must not be NULL");
    CHECK_DETAIL(mp_conn_poll(b, NAN), MP_EINVAL, "mp_conn_poll", "timeout must be a number");
    CHECK_DETAIL(mp_conn_send_fd(a, -1), MP_EBADF, "mp_conn_send_fd", "fd must be an open");
    CHECK_DETAIL(mp_conn_set_max_message(a, 0), MP_EINVAL, "mp_conn_set_max_message",
                 "max must be > 0");
    mp_conn_free(a);
    mp_conn_free(b);
}

TEST(future_details)
{
    CHECK_DETAIL(mp_future_wait(NULL, 1), MP_EINVAL, "mp_future_wait", "f must not be NULL");
    CHECK_DETAIL(mp_future_get(NULL, NULL, 0, NULL, 1), MP_EINVAL, "mp_future_get",
                 "f must not be NULL");
    CHECK_DETAIL(mp_future_add_done_callback(NULL, NULL, NULL), MP_EINVAL,
                 "mp_future_add_done_callback", "f must not be NULL");
    CHECK_DETAIL(mp_wait(NULL, 2, MP_ALL_COMPLETED, 1), MP_EINVAL, "mp_wait",
                 "fs must not be NULL when n > 0 (got n 2)");
    CHECK_DETAIL(mp_wait(NULL, 0, (mp_wait_mode)42, 1), MP_EINVAL, "mp_wait",
                 "mode must be MP_ALL_COMPLETED");
    mp_future *fs[1] = {NULL};
    mp_as_completed *it = NULL;
    CHECK_DETAIL(mp_as_completed_new(fs, 1, &it), MP_EINVAL, "mp_as_completed_new",
                 "fs[0] must not be NULL");
    CHECK_OK(mp_as_completed_new(NULL, 0, &it));
    mp_future *f = NULL;
    CHECK_DETAIL(mp_as_completed_next(it, &f, NAN), MP_EINVAL, "mp_as_completed_next",
                 "timeout must be a number");
    CHECK_DETAIL(mp_as_completed_next(it, NULL, 0), MP_EINVAL, "mp_as_completed_next",
                 "f must not be NULL");
    mp_as_completed_free(it);
}

TEST(signals_and_shutdown_event_details)
{
    CHECK_DETAIL(mp_signals_uninstall(), MP_ESTATE, "mp_signals_uninstall",
                 "the handlers are not installed");
    mp_signals_opts o = MP_SIGNALS_OPTS_INIT;
    o.shutdown.grace = -1;
    CHECK_DETAIL(mp_signals_install(&o), MP_EINVAL, "mp_signals_install",
                 "opts.shutdown.grace must be >= 0 (got -1)");
    o = (mp_signals_opts)MP_SIGNALS_OPTS_INIT;
    o.shutdown.timeout = NAN;
    CHECK_DETAIL(mp_signals_install(&o), MP_EINVAL, "mp_signals_install",
                 "opts.shutdown.timeout must be a number");
    CHECK_DETAIL(mp_shutdown_event(NULL), MP_EINVAL, "mp_shutdown_event", "out must not be NULL");
}

TEST(process_join_and_stop_details)
{
    mp_process *p = NULL;
    CHECK_OK(mp_process_new(nothing, NULL, "idle", &p));
    CHECK_DETAIL(mp_process_join(p, NAN), MP_EINVAL, "mp_process_join", "timeout must be a number");
    CHECK_DETAIL(mp_process_join(p, 1), MP_ESTATE, "mp_process_join", "idle was never started");
    CHECK_DETAIL(mp_process_join(NULL, 1), MP_EINVAL, "mp_process_join", "p must not be NULL");
    CHECK_DETAIL(mp_process_stop(p, -1), MP_EINVAL, "mp_process_stop",
                 "grace must be a number >= 0 (got -1)");
    CHECK_DETAIL(mp_process_stop(NULL, 1), MP_EINVAL, "mp_process_stop", "p must not be NULL");
    mp_process_free(p);
}

static int pool_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    return 0;
}

TEST(pool_details)
{
    mp_pool *p = NULL;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = -1;
    CHECK_DETAIL(mp_pool_new(&o, &p), MP_EINVAL, "mp_pool_new", "opts.processes");
    CHECK_DETAIL(mp_pool_new(NULL, NULL), MP_EINVAL, "mp_pool_new", "out must not be NULL");
    CHECK_DETAIL(mp_pool_apply(NULL, pool_task, NULL, 0, NULL, 0, NULL, 1), MP_EINVAL,
                 "mp_pool_apply", "p must not be NULL");
    mp_map_spec s = {0};
    CHECK_DETAIL(mp_pool_map_ex(NULL, &s), MP_EINVAL, "mp_pool_map_ex", "p must not be NULL");
    mp_imap *it = NULL;
    CHECK_DETAIL(mp_pool_imap_ex(NULL, &s, true, &it), MP_EINVAL, "mp_pool_imap_ex",
                 "p must not be NULL");
    mp_results *r = NULL;
    CHECK_DETAIL(mp_pool_map_bytes(NULL, NULL, NULL, 0, 0, &r), MP_EINVAL,
                 "mp_pool_map_bytes_async", "p must not be NULL");
    CHECK_DETAIL(mp_pool_join(NULL, 1), MP_EINVAL, "mp_pool_join", "p must not be NULL");
    CHECK_DETAIL(mp_pool_shutdown(NULL, false, NAN), MP_EINVAL, "mp_pool_shutdown",
                 "timeout must be a number");
    mp_pool_stats st;
    CHECK_DETAIL(mp_pool_stats_get(NULL, &st), MP_EINVAL, "mp_pool_stats_get",
                 "p must not be NULL");
    CHECK_NULL(mp_pool_shared_alloc(NULL, 8));
    CHECK_CONTAINS(mp_last_error_detail(), "mp_pool_shared_alloc: p must not be NULL");
    CHECK_DETAIL(mp_imap_next(NULL, NULL, NULL, 1), MP_EINVAL, "mp_imap_next",
                 "it must not be NULL");
}

/* In a one-rank world: 0 when each refusal has its code and detail, else
 * the line of the first that has not. */
static int comm_details_rank(mp_comm *w, void *arg)
{
    (void)arg;
    int x = 0;
    if (mp_comm_send(w, &x, sizeof x, 5, 0, 1) != MP_EINVAL ||
        !strstr(mp_last_error_detail(), "mp_comm_send: dest must be 0 to 0 (got 5)"))
        return __LINE__;
    if (mp_comm_recv(w, &x, sizeof x, 0, -7, NULL, 1) != MP_EINVAL ||
        !strstr(mp_last_error_detail(), "mp_comm_recv: tag must be >= 0 or MP_ANY_TAG (got -7)"))
        return __LINE__;
    if (mp_comm_bcast(w, NULL, 4, 0, 1) != MP_EINVAL ||
        !strstr(mp_last_error_detail(), "mp_comm_bcast: buf must not be NULL for 4 bytes"))
        return __LINE__;
    if (mp_comm_barrier(w, NAN) != MP_EINVAL ||
        !strstr(mp_last_error_detail(), "mp_comm_barrier: timeout must be a number"))
        return __LINE__;
    mp_comm *d = NULL;
    if (mp_comm_split(w, -5, 0, 1, &d) != MP_EINVAL ||
        !strstr(mp_last_error_detail(), "mp_comm_split: color must be >= 0 or MP_UNDEFINED"))
        return __LINE__;
    return 0;
}

TEST(comm_details)
{
    CHECK_DETAIL(mp_comm_send(NULL, NULL, 0, 0, 0, 1), MP_EINVAL, "mp_comm_send",
                 "c must be a communicator");
    CHECK_DETAIL(mp_comm_rank(NULL), MP_EINVAL, "mp_comm_rank", "c must be a communicator");
    char name[4];
    CHECK_DETAIL(mp_comm_processor_name(name, 0), MP_EINVAL, "mp_comm_processor_name",
                 "cap must be > 0");
    CHECK_DETAIL(mp_run(0, comm_details_rank, NULL), MP_EINVAL, "mp_run_with_opts",
                 "n must be 1 to");
    CHECK_DETAIL(mp_run(1, NULL, NULL), MP_EINVAL, "mp_run_with_opts", "fn must not be NULL");
    CHECK_OK(mp_run(1, comm_details_rank, NULL));
}

MPT_MAIN()
