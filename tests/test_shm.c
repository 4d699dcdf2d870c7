/* Tests of shared memory: the arena (allocator, placement, attach in fresh
 * images, recovery from a death inside it) and named segments (create,
 * attach by name from related and unrelated processes, tracking, nothing
 * left in /dev/shm after a SIGKILL). */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"
#include "testhooks.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>

extern char **environ;

/* ---- helpers ------------------------------------------------------------ */

static bool shm_exists(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/mproc-%s", name);
    return access(path, F_OK) == 0;
}

/* Waits, on inotify rather than by sleeping, until /dev/shm/mproc-<name>
 * is gone.  Returns true when it is, false after secs. */
static bool wait_shm_gone(const char *name, double secs)
{
    int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    CHECK(in >= 0);
    CHECK(inotify_add_watch(in, "/dev/shm", IN_DELETE) >= 0);
    double end = mpt_now() + secs;
    bool gone;
    while (!(gone = !shm_exists(name))) {
        double left = end - mpt_now();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = in, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) > 0) {
            char buf[4096];
            while (read(in, buf, sizeof buf) > 0) {
            }
        }
    }
    close(in);
    return gone;
}

/* A round trip to the tracker: once it returns, the tracker has handled
 * every message this process sent before, and every death that happened
 * before (it accounts for ends before it answers). */
static void tracker_sync(void)
{
    mp_shm *s;
    CHECK_OK(mp_shm_create(NULL, 1, &s));
    CHECK_OK(mp_shm_unlink(s));
    mp_shm_free(s);
}

/* ---- the arena: allocator ------------------------------------------------------ */

TEST(arena_allocates_aligned_zeroed_blocks_and_coalesces)
{
    mp_arena *a;
    CHECK_OK(mp_arena_new(1 << 20, &a));
    CHECK_EQ(mp_arena_size(a), 1 << 20);
    size_t used0, big0;
    CHECK_OK(mp_arena_usage(a, &used0, &big0));
    CHECK_EQ(used0, 0);
    CHECK(big0 > (1 << 20) - 8192);

    enum { N = 200 };
    unsigned char *p[N];
    for (int i = 0; i < N; i++) {
        size_t size = 1 + (size_t)(i * 37 % 1500);
        p[i] = mp_arena_alloc(a, size);
        CHECK(p[i] != NULL);
        CHECK_EQ((uintptr_t)p[i] % 64, 0);
        for (size_t k = 0; k < size; k++)
            CHECK_EQ(p[i][k], 0);
        memset(p[i], 0xa5, size);
    }
    size_t used;
    CHECK_OK(mp_arena_usage(a, &used, NULL));
    CHECK(used > 0);
    /* Freed in an order that exercises both neighbours. */
    for (int i = 0; i < N; i += 2)
        CHECK_OK(mp_arena_dealloc(a, p[i]));
    for (int i = N - 1; i > 0; i -= 2)
        CHECK_OK(mp_arena_dealloc(NULL, p[i]));
    size_t big;
    CHECK_OK(mp_arena_usage(a, &used, &big));
    CHECK_EQ(used, 0);
    CHECK_EQ(big, big0); /* everything merged back into one block */
    /* Reused memory comes back zeroed. */
    unsigned char *q = mp_arena_alloc(a, 1000);
    for (int k = 0; k < 1000; k++)
        CHECK_EQ(q[k], 0);
    mp_arena_free(a);
}

TEST(arena_bad_input)
{
    mp_arena *a = NULL;
    CHECK_ERR(mp_arena_new(1 << 20, NULL), MP_EINVAL);
    CHECK_ERR(mp_arena_new(0, &a), MP_EINVAL);
    CHECK_ERR(mp_arena_new(1024, &a), MP_EINVAL);
    CHECK_ERR(mp_arena_new((size_t)1 << 40, &a), MP_EINVAL);
    CHECK(a == NULL);
    CHECK_OK(mp_arena_new(64 << 10, &a));
    CHECK(mp_arena_alloc(a, 0) == NULL);
    CHECK(mp_arena_alloc(a, 1 << 20) == NULL);
    int local;
    CHECK_ERR(mp_arena_dealloc(a, &local), MP_EINVAL);
    CHECK_ERR(mp_arena_dealloc(NULL, &local), MP_EINVAL);
    CHECK_OK(mp_arena_dealloc(a, NULL));
    char *p = mp_arena_alloc(a, 100);
    CHECK_ERR(mp_arena_dealloc(a, p + 64), MP_EINVAL); /* inside a block */
    CHECK_ERR(mp_arena_dealloc(a, p + 1), MP_EINVAL);
    CHECK_OK(mp_arena_dealloc(a, p));
    CHECK_ERR(mp_arena_dealloc(a, p), MP_EINVAL); /* twice */
    CHECK_ERR(mp_arena_fd(NULL), MP_EINVAL);
    CHECK_EQ(mp_arena_size(NULL), 0);
    CHECK_ERR(mp_arena_usage(NULL, NULL, NULL), MP_EINVAL);
    CHECK_OK(mp_arena_usage(a, NULL, NULL));
    mp_arena_free(a);
    mp_arena_free(NULL);

    mp_arena *b;
    CHECK_ERR(mp_arena_attach(-1, &b), MP_EINVAL);
    CHECK_ERR(mp_arena_attach(0, NULL), MP_EINVAL);
    int fds[2];
    CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
    CHECK_ERR(mp_arena_attach(fds[0], &b), MP_EINVAL);
    close(fds[0]);
    close(fds[1]);
    int mfd = mp__memfd_new("not-an-arena", 1 << 20);
    CHECK(mfd >= 0);
    CHECK_ERR(mp_arena_attach(mfd, &b), MP_EINVAL);
    close(mfd);
}

/* Close and free are apart for arenas too: close unmaps and closes the
 * descriptor once, after which every call on the handle says MP_ECLOSED;
 * free releases the handle; the default arena is the library's. */
TEST(arena_close_twice_then_free)
{
    mp_arena *a;
    CHECK_OK(mp_arena_new(64 << 10, &a));
    void *p = mp_arena_alloc(a, 100);
    CHECK(p != NULL);
    int fd = mp_arena_fd(a);
    CHECK(fd >= 0);
    CHECK_OK(mp_arena_close(a));
    CHECK_EQ(fcntl(fd, F_GETFD), -1); /* the descriptor is closed */
    CHECK(mp__arena_find(p) == NULL); /* and the mapping gone from the list */
    CHECK_OK(mp_arena_close(a));
    CHECK_ERR(mp_arena_fd(a), MP_ECLOSED);
    CHECK_EQ(mp_arena_size(a), 0);
    CHECK_ERR(mp_arena_usage(a, NULL, NULL), MP_ECLOSED);
    CHECK(mp_arena_alloc(a, 100) == NULL);
    CHECK_ERR(mp_arena_dealloc(a, p), MP_ECLOSED);
    mp_value *v = mpt_not_null();
    CHECK_ERR(mp_value_new_in(a, MP_TYPE_i, NULL, true, &v), MP_ECLOSED);
    CHECK(v == NULL);
    mp_arena_free(a);

    CHECK_ERR(mp_arena_close(NULL), MP_EINVAL);
    CHECK_ERR(mp_arena_close(mp_arena_default()), MP_EPERM);
    CHECK(mp_arena_alloc(NULL, 10) != NULL); /* still mapped */
}

/* Free alone closes too. */
TEST(arena_free_without_close)
{
    mp_arena *a;
    CHECK_OK(mp_arena_new(64 << 10, &a));
    void *p = mp_arena_alloc(a, 100);
    CHECK(mp__arena_find(p) == a);
    mp_arena_free(a);
    CHECK(mp__arena_find(p) == NULL);
}

TEST(default_arena_has_the_default_size)
{
    if (getenv("MPROC_ARENA_SIZE"))
        MPT_SKIP("MPROC_ARENA_SIZE in the environment chose another size");
    CHECK_EQ(mp_arena_size(mp_arena_default()), MP_ARENA_DEFAULT_SIZE);
}

TEST(default_arena_size_is_set_before_first_use)
{
    CHECK_ERR(mp_arena_set_default_size(100), MP_EINVAL);
    CHECK_OK(mp_arena_set_default_size(1 << 20));
    mp_arena *d = mp_arena_default();
    CHECK(d != NULL);
    CHECK(mp_arena_default() == d);
    CHECK_EQ(mp_arena_size(d), 1 << 20);
    CHECK_ERR(mp_arena_set_default_size(2 << 20), MP_ESTATE);
    mp_arena_free(d); /* the default arena stays */
    CHECK(mp_arena_alloc(NULL, 10) != NULL);
}

static int default_size_from_env(void *arg)
{
    (void)arg;
    /* A fresh image reads MPROC_ARENA_SIZE at first use. */
    return mp_arena_size(mp_arena_default()) == (3 << 20) ? 0 : 1;
}

TEST(default_arena_size_from_the_environment)
{
    setenv("MPROC_ARENA_SIZE", "3M", 1);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_SPAWN;
    mp_process *p = mpt_new_opts(default_size_from_env, NULL, &o);
    CHECK_OK(mp_process_start(p));
    CHECK_EQ(mpt_finish(p), 0);
    unsetenv("MPROC_ARENA_SIZE");
}

TEST(arena_runs_out_and_recovers)
{
    mp_arena *a;
    CHECK_OK(mp_arena_new(64 << 10, &a));
    void *blocks[1024];
    int n = 0;
    while (n < 1024 && (blocks[n] = mp_arena_alloc(a, 1000)) != NULL)
        n++;
    CHECK(n > 10 && n < 1024);
    CHECK(mp_arena_alloc(a, 1000) == NULL);
    CHECK_OK(mp_arena_dealloc(a, blocks[n / 2]));
    CHECK(mp_arena_alloc(a, 1000) != NULL);
    mp_arena_free(a);
}

TEST(large_freed_blocks_give_their_pages_back)
{
    mp_arena *a;
    CHECK_OK(mp_arena_new(16 << 20, &a));
    struct stat st;
    CHECK_EQ(fstat(mp_arena_fd(a), &st), 0);
    long blocks0 = (long)st.st_blocks;
    char *p = mp_arena_alloc(a, 8 << 20);
    CHECK(p != NULL);
    memset(p, 1, 8 << 20);
    CHECK_EQ(fstat(mp_arena_fd(a), &st), 0);
    CHECK_GE((long)st.st_blocks - blocks0, (8 << 20) / 512 - 16);
    CHECK_OK(mp_arena_dealloc(a, p));
    CHECK_EQ(fstat(mp_arena_fd(a), &st), 0);
    CHECK_LE((long)st.st_blocks - blocks0, 64);
    mp_arena_free(a);
}

typedef struct churn_arg {
    int id;
    int rounds;
} churn_arg;

/* Allocates and frees blocks of random sizes, filling each with its own
 * mark and checking it before freeing: an overlap with another process's
 * block would show. */
static int churn(void *arg)
{
    churn_arg *c = arg;
    unsigned seed = (unsigned)c->id * 2654435761u;
    unsigned char *held[16] = {0};
    size_t sizes[16] = {0};
    for (int r = 0; r < c->rounds; r++) {
        int k = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 16;
        if (held[k]) {
            for (size_t i = 0; i < sizes[k]; i++)
                if (held[k][i] != (unsigned char)c->id)
                    return 1;
            if (mp_arena_dealloc(NULL, held[k]) != 0)
                return 2;
            held[k] = NULL;
        } else {
            sizes[k] = 1 + ((seed >> 8) % 3000);
            held[k] = mp_arena_alloc(NULL, sizes[k]);
            if (!held[k])
                return 3;
            memset(held[k], c->id, sizes[k]);
        }
    }
    for (int k = 0; k < 16; k++)
        if (held[k] && mp_arena_dealloc(NULL, held[k]) != 0)
            return 4;
    return 0;
}

TEST(arena_is_shared_and_safe_across_processes)
{
    mp_arena *d = mp_arena_default();
    size_t used0;
    CHECK_OK(mp_arena_usage(d, &used0, NULL));
    enum { PROCS = 4 };
    churn_arg args[PROCS];
    mp_process *ps[PROCS];
    for (int i = 0; i < PROCS; i++) {
        args[i] = (churn_arg){i + 1, 5000};
        ps[i] = mpt_start(churn, &args[i]);
    }
    churn_arg mine = {PROCS + 1, 5000};
    CHECK_EQ(churn(&mine), 0);
    for (int i = 0; i < PROCS; i++)
        CHECK_EQ(mpt_finish(ps[i]), 0);
    size_t used;
    CHECK_OK(mp_arena_usage(d, &used, NULL));
    CHECK_EQ(used, used0);
}

static int crash_in_alloc(void *arg)
{
    mp__arena_crash_in_alloc(arg);
    _exit(0);
}

TEST(arena_recovers_from_a_death_inside_the_allocator)
{
    mp_arena *a;
    CHECK_OK(mp_arena_new(1 << 20, &a));
    char *keep = mp_arena_alloc(a, 5000);
    strcpy(keep, "survives");
    size_t used0, big0;
    CHECK_OK(mp_arena_usage(a, &used0, &big0));
    mp_log_set_level(MP_LOG_OFF); /* the repair is logged as a warning */
    CHECK_EQ(mpt_finish(mpt_start(crash_in_alloc, a)), 0);
    /* The next user repairs: same usage, same free space, data intact. */
    size_t used, big;
    CHECK_OK(mp_arena_usage(a, &used, &big));
    CHECK_EQ(used, used0);
    CHECK_EQ(big, big0);
    CHECK_STREQ(keep, "survives");
    char *p = mp_arena_alloc(a, 100000);
    CHECK(p != NULL);
    CHECK_OK(mp_arena_dealloc(a, p));
    CHECK_OK(mp_arena_dealloc(a, keep));
    CHECK_OK(mp_arena_usage(a, &used, NULL));
    CHECK_EQ(used, 0);
    mp_arena_free(a);
}

/* ---- the arena: placement ----------------------------------------------------------- */

typedef struct fresh_arg {
    char *text; /* a pointer into the parent's default arena */
} fresh_arg;

static int fresh_image_attaches(void *arg)
{
    fresh_arg *f = arg;
    mp_arena *a;
    int rc = mp_arena_attach(mp_process_inherited_fd(0), &a);
    if (rc != 0)
        return 10;
    if (mp_arena_default() != a)
        return 11; /* the parent's default arena is this one's now */
    mp_arena *again;
    if (mp_arena_attach(mp_process_inherited_fd(0), &again) != 0 || again != a)
        return 12;
    if (strcmp(f->text, "from the parent") != 0)
        return 13;
    strcpy(f->text, "from the child");
    /* Allocations here are visible to the parent too. */
    char *q = mp_arena_alloc(NULL, 64);
    if (!q)
        return 14;
    strcpy(q, "allocated in the child");
    memcpy(f->text + 32, &q, sizeof q);
    return 0;
}

static void check_fresh_image(mp_start_method m)
{
    MPT_CONTEXT("start method %s", m == MP_START_SPAWN ? "spawn" : "forkserver");
    mp_arena *d = mp_arena_default();
    char *text = mp_arena_alloc(NULL, 64);
    strcpy(text, "from the parent");
    fresh_arg f = {text};
    int fd = mp_arena_fd(d);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = m;
    o.arg_size = sizeof f;
    o.fds = &fd;
    o.nfds = 1;
    mp_process *p = mpt_new_opts(fresh_image_attaches, &f, &o);
    CHECK_OK(mp_process_start(p));
    CHECK_EQ(mpt_finish(p), 0);
    CHECK_STREQ(text, "from the child");
    char *q;
    memcpy(&q, text + 32, sizeof q);
    CHECK_STREQ(q, "allocated in the child");
    CHECK_OK(mp_arena_dealloc(NULL, q));
    CHECK_OK(mp_arena_dealloc(NULL, text));
    MPT_CONTEXT_CLEAR();
}

TEST(spawned_child_maps_the_arena_at_the_same_address)
{
    check_fresh_image(MP_START_SPAWN);
}

TEST(forkserver_child_maps_the_arena_at_the_same_address)
{
    check_fresh_image(MP_START_FORKSERVER);
}

TEST(arena_attach_in_the_same_process)
{
    mp_arena *a;
    CHECK_OK(mp_arena_new(1 << 20, &a));
    mp_arena *b;
    CHECK_OK(mp_arena_attach(mp_arena_fd(a), &b));
    CHECK(a == b);
    mp_arena_free(a);
}

/* ---- named segments ------------------------------------------------------------------- */

TEST(segment_create_attach_close_unlink)
{
    char name[128];
    mpt_name(name, sizeof name, "basic");
    mp_shm *s;
    CHECK_OK(mp_shm_create(name, 10000, &s));
    CHECK(mp_shm_addr(s) != NULL);
    CHECK_EQ(mp_shm_size(s), 10000);
    CHECK_STREQ(mp_shm_name(s), name);
    CHECK(shm_exists(name));
    char *p = mp_shm_addr(s);
    CHECK_EQ(p[9999], 0);
    strcpy(p, "shared bytes");
    mp_shm *t;
    CHECK_OK(mp_shm_attach(name, &t));
    CHECK(mp_shm_addr(t) != mp_shm_addr(s));
    CHECK_EQ(mp_shm_size(t), 10000);
    CHECK_STREQ(mp_shm_addr(t), "shared bytes");
    mp_shm *dup = (mp_shm *)1;
    CHECK_ERR(mp_shm_create(name, 100, &dup), MP_EEXIST);
    CHECK(dup == NULL);
    mp_shm_free(t);
    CHECK_OK(mp_shm_unlink(s));
    CHECK(!shm_exists(name));
    CHECK_ERR(mp_shm_unlink(s), MP_ENOENT);
    CHECK_ERR(mp_shm_attach(name, &t), MP_ENOENT);
    CHECK_STREQ(p, "shared bytes"); /* still mapped */
    mp_shm_free(s);
}

TEST(segment_bad_input)
{
    mp_shm *s = NULL;
    char longname[MP_SHM_NAME_MAX + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_ERR(mp_shm_create("", 10, &s), MP_EINVAL);
    CHECK_ERR(mp_shm_create("a/b", 10, &s), MP_EINVAL);
    CHECK_ERR(mp_shm_create(".", 10, &s), MP_EINVAL);
    CHECK_ERR(mp_shm_create("..", 10, &s), MP_EINVAL);
    CHECK_ERR(mp_shm_create(longname, 10, &s), MP_ENAMETOOLONG);
    CHECK_ERR(mp_shm_create(NULL, 0, &s), MP_EINVAL);
    CHECK_ERR(mp_shm_create(NULL, 10, NULL), MP_EINVAL);
    CHECK_ERR(mp_shm_attach(NULL, &s), MP_EINVAL);
    CHECK_ERR(mp_shm_attach("x", NULL), MP_EINVAL);
    CHECK_ERR(mp_shm_attach(longname, &s), MP_ENAMETOOLONG);
    char name[128];
    CHECK_ERR(mp_shm_attach(mpt_name(name, sizeof name, "none"), &s), MP_ENOENT);
    CHECK(s == NULL);
    CHECK_ERR(mp_shm_unlink(NULL), MP_EINVAL);
    CHECK_ERR(mp_shm_close(NULL), MP_EINVAL);
    mp_shm_free(NULL);
    CHECK(mp_shm_addr(NULL) == NULL);
    CHECK_EQ(mp_shm_size(NULL), 0);
    CHECK(mp_shm_name(NULL) == NULL);
}

TEST(segment_names_made_by_the_library)
{
    mp_shm *a, *b;
    CHECK_OK(mp_shm_create(NULL, 100, &a));
    CHECK_OK(mp_shm_create(NULL, 100, &b));
    CHECK(strcmp(mp_shm_name(a), mp_shm_name(b)) != 0);
    char want[64];
    snprintf(want, sizeof want, "%d-%d-", (int)mp__session(), (int)getpid());
    CHECK(strncmp(mp_shm_name(a), want, strlen(want)) == 0);
    char name[128];
    snprintf(name, sizeof name, "%s", mp_shm_name(a));
    CHECK(shm_exists(name));
    /* The only holder frees its handle: the tracker unlinks it. */
    mp_shm_free(a);
    CHECK(wait_shm_gone(name, 30.0));
    CHECK_OK(mp_shm_unlink(b));
    mp_shm_free(b);
}

/* Close and free are apart: close gives up the mapping and the hold, once,
 * and leaves a handle that still names the segment; free releases the
 * handle (ASan's leak check sees that it does). */
TEST(segment_close_twice_then_free)
{
    char name[128];
    mpt_name(name, sizeof name, "close2");
    mp_shm *s;
    CHECK_OK(mp_shm_create(name, 4096, &s));
    CHECK_OK(mp_shm_close(s));
    CHECK(mp_shm_addr(s) == NULL);
    CHECK_EQ(mp_shm_size(s), 0);
    CHECK_STREQ(mp_shm_name(s), name);
    /* The only holder closed: the tracker unlinks the name. */
    CHECK(wait_shm_gone(name, 30.0));
    /* Again: nothing is unmapped or released twice. */
    CHECK_OK(mp_shm_close(s));
    CHECK(mp_shm_addr(s) == NULL);
    CHECK_ERR(mp_shm_unlink(s), MP_ENOENT);
    mp_shm_free(s);
}

/* Free alone closes too: the mapping and the hold go with the handle. */
TEST(segment_free_without_close)
{
    char name[128];
    mpt_name(name, sizeof name, "freeonly");
    mp_shm *s, *t;
    CHECK_OK(mp_shm_create(name, 4096, &s));
    CHECK_OK(mp_shm_attach(name, &t));
    mp_shm_free(t); /* one of two holds: the name stays */
    tracker_sync();
    CHECK(shm_exists(name));
    mp_shm_free(s);
    CHECK(wait_shm_gone(name, 30.0));
}

/* A closed handle can still remove the name while another handle holds
 * the segment, as Python's SharedMemory.unlink() after close() does. */
TEST(segment_unlink_after_close)
{
    char name[128];
    mpt_name(name, sizeof name, "unlinkclosed");
    mp_shm *s, *t;
    CHECK_OK(mp_shm_create(name, 4096, &s));
    CHECK_OK(mp_shm_attach(name, &t));
    CHECK_OK(mp_shm_close(s));
    tracker_sync();
    CHECK(shm_exists(name)); /* t holds it */
    CHECK_OK(mp_shm_unlink(s));
    CHECK(!shm_exists(name));
    CHECK(mp_shm_addr(t) != NULL); /* the mapping outlives the name */
    mp_shm_free(t);
    mp_shm_free(s);
}

typedef struct hold_arg {
    char name[128];
    gate ready, go;
} hold_arg;

/* Attaches by name, checks the data, says so, holds until told. */
static int attach_and_hold(void *arg)
{
    hold_arg *h = arg;
    mp_shm *s;
    if (mp_shm_attach(h->name, &s) != 0)
        return 1;
    if (strcmp(mp_shm_addr(s), "data") != 0)
        return 2;
    gate_open(&h->ready);
    if (gate_wait(&h->go, 60.0) != 0)
        return 3;
    mp_shm_free(s);
    return 0;
}

TEST(segment_lives_while_a_process_of_the_program_holds_it)
{
    hold_arg h;
    mpt_name(h.name, sizeof h.name, "held");
    gate_init(&h.ready);
    gate_init(&h.go);
    mp_shm *s;
    CHECK_OK(mp_shm_create(h.name, 4096, &s));
    strcpy(mp_shm_addr(s), "data");
    mp_process *p = mpt_start(attach_and_hold, &h);
    CHECK_EQ(gate_wait(&h.ready, 30.0), 0);
    /* The creator lets go; the child still holds: the name stays. */
    CHECK_OK(mp_shm_close(s));
    mp_shm_free(s);
    tracker_sync();
    CHECK(shm_exists(h.name));
    gate_open(&h.go);
    CHECK_EQ(mpt_finish(p), 0);
    CHECK(wait_shm_gone(h.name, 30.0));
    gate_close(&h.ready);
    gate_close(&h.go);
}

static int create_and_hold(void *arg)
{
    hold_arg *h = arg;
    mp_shm *s;
    if (mp_shm_create(h->name, 4096, &s) != 0)
        return 1;
    strcpy(mp_shm_addr(s), "data");
    gate_open(&h->ready);
    gate_wait(&h->go, 120.0); /* until SIGKILLed */
    return 2;
}

TEST(sigkilled_creator_leaves_nothing_in_dev_shm)
{
    hold_arg h;
    mpt_name(h.name, sizeof h.name, "killed");
    gate_init(&h.ready);
    gate_init(&h.go);
    mp_process *p = mpt_start(create_and_hold, &h);
    CHECK_EQ(gate_wait(&h.ready, 30.0), 0);
    CHECK(shm_exists(h.name));
    CHECK_OK(mp_process_kill(p));
    CHECK_EQ(mpt_finish(p), -SIGKILL);
    CHECK(wait_shm_gone(h.name, 30.0));
    gate_close(&h.ready);
    gate_close(&h.go);
}

TEST(sigkilled_creator_does_not_unlink_under_another_holder)
{
    hold_arg h;
    mpt_name(h.name, sizeof h.name, "shared-kill");
    gate_init(&h.ready);
    gate_init(&h.go);
    mp_process *creator = mpt_start(create_and_hold, &h);
    CHECK_EQ(gate_wait(&h.ready, 30.0), 0);
    hold_arg h2 = h; /* same name and pipes: the holder waits on go too */
    mp_process *holder = mpt_start(attach_and_hold, &h2);
    CHECK_EQ(gate_wait(&h.ready, 30.0), 0);
    CHECK_OK(mp_process_kill(creator));
    CHECK_EQ(mpt_finish(creator), -SIGKILL);
    tracker_sync(); /* the creator's death is accounted for now */
    CHECK(shm_exists(h.name));
    gate_open(&h.go);
    CHECK_EQ(mpt_finish(holder), 0);
    CHECK(wait_shm_gone(h.name, 30.0));
    gate_close(&h.ready);
    gate_close(&h.go);
}

static int close_inherited(void *arg)
{
    /* A handle inherited through fork: closing it only unmaps. */
    int rc = mp_shm_close(arg);
    mp_shm_free(arg);
    return rc == 0 ? 0 : 1;
}

TEST(forked_child_closing_an_inherited_handle_drops_no_hold)
{
    char name[128];
    mpt_name(name, sizeof name, "inherited");
    mp_shm *s;
    CHECK_OK(mp_shm_create(name, 4096, &s));
    CHECK_EQ(mpt_finish(mpt_start(close_inherited, s)), 0);
    tracker_sync();
    CHECK(shm_exists(name));
    mp_shm_free(s);
    CHECK(wait_shm_gone(name, 30.0));
}

TEST(unlink_and_recreate_does_not_lose_the_new_segment)
{
    char name[128];
    mpt_name(name, sizeof name, "again");
    mp_shm *old, *fresh;
    CHECK_OK(mp_shm_create(name, 4096, &old));
    CHECK_OK(mp_shm_unlink(old));
    CHECK_OK(mp_shm_create(name, 8192, &fresh));
    /* Closing the old handle concerns the old inode only. */
    CHECK_OK(mp_shm_close(old));
    mp_shm_free(old);
    tracker_sync();
    CHECK(shm_exists(name));
    CHECK_EQ(mp_shm_size(fresh), 8192);
    mp_shm_free(fresh);
    CHECK(wait_shm_gone(name, 30.0));
}

static int spawned_attach(void *arg)
{
    hold_arg *h = arg;
    mp_shm *s;
    if (mp_shm_attach(h->name, &s) != 0)
        return 1;
    if (strcmp(mp_shm_addr(s), "data") != 0)
        return 2;
    strcpy((char *)mp_shm_addr(s) + 100, "seen by a fresh image");
    mp_shm_free(s);
    return 0;
}

TEST(spawned_child_attaches_by_name)
{
    hold_arg h;
    mpt_name(h.name, sizeof h.name, "spawned");
    mp_shm *s;
    CHECK_OK(mp_shm_create(h.name, 4096, &s));
    strcpy(mp_shm_addr(s), "data");
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_SPAWN;
    o.arg_size = sizeof h;
    mp_process *p = mpt_new_opts(spawned_attach, &h, &o);
    CHECK_OK(mp_process_start(p));
    CHECK_EQ(mpt_finish(p), 0);
    CHECK_STREQ((char *)mp_shm_addr(s) + 100, "seen by a fresh image");
    CHECK_OK(mp_shm_unlink(s));
    mp_shm_free(s);
}

/* ---- an unrelated program ------------------------------------------------------------- */

/* This test program, executed afresh with MPT_SHM_HELPER=<name> in its
 * environment, is an unrelated program: no mproc parent, a session of its
 * own.  It attaches the segment by name, checks it, answers in it and
 * exits before main() runs. */
__attribute__((constructor)) static void shm_helper(void)
{
    const char *name = getenv("MPT_SHM_HELPER");
    if (!name)
        return;
    mp_shm *s;
    int rc = mp_shm_attach(name, &s);
    if (rc != 0)
        _exit(10);
    char *p = mp_shm_addr(s);
    if (strcmp(p, "written by the creator") != 0)
        _exit(11);
    snprintf(p + 512, 64, "answered by %d", (int)getpid());
    mp_shm_free(s);
    _exit(mp__session() == getpid() ? 0 : 12);
}

TEST(unrelated_exec_process_attaches_by_name)
{
    char name[128];
    mpt_name(name, sizeof name, "unrelated");
    mp_shm *s;
    CHECK_OK(mp_shm_create(name, 4096, &s));
    strcpy(mp_shm_addr(s), "written by the creator");
    char var[200];
    snprintf(var, sizeof var, "MPT_SHM_HELPER=%s", name);
    char *envp[] = {var, NULL};
    char *argv[] = {(char *)"shm-helper", NULL};
    pid_t pid;
    CHECK_EQ(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, envp), 0);
    CHECK(mpt_wait_gone(pid, 60.0));
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    char want[64];
    snprintf(want, sizeof want, "answered by %d", (int)pid);
    CHECK_STREQ((char *)mp_shm_addr(s) + 512, want);
    /* Its close did not unlink what this program created. */
    CHECK_OK(mp_shm_unlink(s));
    mp_shm_free(s);
}

/* ---- the tracker outlives no killed program ------------------------------------------ */

/* This test program, executed afresh with MPT_TRACKER_VICTIM=<how> in its
 * environment, is a program of its own (its session is its pid) that
 * creates its first named segment - which starts its tracker - and is
 * SIGKILLed: at a chosen instant of starting the tracker ("connected",
 * "started"), or at a moment the test chooses ("wait": it then waits to
 * be killed). */
static char victim_how[16];

static void die_here(mp__tracker_point where)
{
    if ((where == MP__TP_CONNECTED && strcmp(victim_how, "connected") == 0) ||
        (where == MP__TP_STARTED && strcmp(victim_how, "started") == 0))
        kill(getpid(), SIGKILL);
}

__attribute__((constructor)) static void tracker_victim(void)
{
    const char *v = getenv("MPT_TRACKER_VICTIM");
    if (!v)
        return;
    snprintf(victim_how, sizeof victim_how, "%s", v);
    const char *how = victim_how;
    /* The tracker it starts is this program too: not a victim. */
    unsetenv("MPT_TRACKER_VICTIM");
    mp__tracker_fault = die_here;
    mp_shm *s;
    if (mp_shm_create(NULL, 4096, &s) != 0)
        _exit(10);
    if (strcmp(how, "wait") != 0)
        _exit(11); /* should have died */
    for (;;)
        pause();
}

/* Whether the tracker of session sess (by its address, which lives as long
 * as it does) is listed in /proc/net/unix. */
static bool tracker_listed(pid_t sess)
{
    char want[96], line[512];
    snprintf(want, sizeof want, "@mproc-tracker-%u-%d\n", (unsigned)getuid(), (int)sess);
    FILE *f = fopen("/proc/net/unix", "re");
    CHECK_NOT_NULL(f);
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        const char *at = strchr(line, '@');
        found = at && strcmp(at, want) == 0;
    }
    fclose(f);
    return found;
}

static pid_t spawn_victim(const char *how)
{
    char var[64];
    snprintf(var, sizeof var, "MPT_TRACKER_VICTIM=%s", how);
    char *envp[] = {var, NULL};
    char *argv[] = {(char *)"tracker-victim", NULL};
    pid_t pid;
    CHECK_EQ(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, envp), 0);
    return pid;
}

/* Reaps the victim, then gives whatever tracker it started limit seconds to
 * be gone: the time to start a fresh image and see its first client's end,
 * far below the 5 s a tracker waited for a client that never came. */
static void check_tracker_goes(pid_t victim, double limit)
{
    int st;
    CHECK_EQ(waitpid(victim, &st, 0), victim);
    CHECK(WIFSIGNALED(st));
    double end = mpt_now() + limit;
    while (tracker_listed(victim) && mpt_now() < end) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL); /* bounded polling: no event announces it */
    }
    CHECK(!tracker_listed(victim));
}

/* shm.h's promise that nothing outlives the program, in the window where a
 * tracker started for a program killed at once waited 5 s (its start came
 * before the program's connection): killed just after connecting to the
 * new address, and just after starting the tracker. */
TEST(a_program_killed_while_starting_its_tracker_leaves_no_tracker)
{
    const char *points[] = {"connected", "started"};
    for (size_t i = 0; i < MP__ARRAY_SIZE(points); i++) {
        MPT_CONTEXT("killed when %s", points[i]);
        check_tracker_goes(spawn_victim(points[i]), 2.0);
    }
    MPT_CONTEXT_CLEAR();
}

/* The same at moments of the test's choosing, 0 to 3 ms after the program
 * started (where the window was hit 12 times in 60), and once it runs. */
TEST_TIMEOUT(programs_killed_at_random_moments_leave_no_tracker, 120)
{
    uint64_t rng = 0x2545f4914f6cdd1dull ^ (uint64_t)getpid();
    for (int i = 0; i < 30; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        double delay = (double)(rng % 3000) * 1e-6;
        MPT_CONTEXT("kill %d, %.0f us after the start", i, delay * 1e6);
        pid_t pid = spawn_victim("wait");
        double until = mpt_now() + delay;
        while (mpt_now() < until) {
        }
        kill(pid, SIGKILL);
        check_tracker_goes(pid, 2.0);
    }
    MPT_CONTEXT_CLEAR();
}

MPT_MAIN()
