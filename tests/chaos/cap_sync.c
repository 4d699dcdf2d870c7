/*
 * cap_sync.c - shared memory and locks: holders of a robust lock killed
 * at random points, the creator of a named segment killed, and /dev/shm
 * exhausted (RLIMIT_FSIZE, or a small tmpfs in a mount namespace of its
 * own when this is root and may unshare).
 */
#include "chaos.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define NW 4

typedef struct sync_shared {
    mp_lock lock;
    volatile long a, b; /* a == b whenever nobody is inside */
    volatile int holding[NW], stop;
    long ownerdead_seen;
} sync_shared;

static sync_shared *S;

/* Takes the lock, repairing a == b after a holder died. */
static int take(void)
{
    int rc = mp_lock_acquire(&S->lock, 10);
    if (rc == MP_EOWNERDEAD) {
        __atomic_fetch_add(&S->ownerdead_seen, 1, __ATOMIC_RELAXED);
        S->b = S->a;
        rc = mp_lock_consistent(&S->lock);
    }
    return rc;
}

static int locker(void *arg)
{
    int i = (int)(intptr_t)arg;
    while (!S->stop) {
        int rc = take();
        if (rc != 0) {
            chaos_fail("acquire returned %s", mp_err_name(rc));
            return 1;
        }
        S->holding[i] = 1;
        S->a++;
        for (volatile int k = 0; k < 200; k++) {
        }
        S->b++;
        S->holding[i] = 0;
        mp_lock_release(&S->lock);
    }
    return 0;
}

static void lock_round(chaos_rng *r)
{
    int n = 2 + (int)chaos_below(r, NW - 1), expected = 0;
    mp_process *p[NW];
    enum chaos_fault fate[NW];
    CHAOS_CHECK(mp_lock_init(&S->lock) == 0, "lock init");
    for (int i = 0; i < n; i++) {
        fate[i] = CHAOS_NFAULTS;
        CHAOS_CHECK(mp_process_new(locker, (void *)(intptr_t)i, "chaos-locker", &p[i]) == 0, "new");
        CHAOS_CHECK(mp_process_start(p[i]) == 0, "start");
    }
    for (int k = 1 + (int)chaos_below(r, 2); k > 0; k--) {
        int v = (int)chaos_below(r, (unsigned)n);
        chaos_sleep_us(chaos_below(r, 20000));
        if (fate[v] == CHAOS_NFAULTS) {
            fate[v] = chaos_signal_kind(r);
            chaos_signal(mp_process_pid(p[v]), fate[v], r);
        }
    }
    S->stop = 1;
    for (int i = 0; i < n; i++) {
        int code = -1;
        CHAOS_CHECK(mp_process_join(p[i], 20) == 0, "join");
        mp_process_exitcode(p[i], &code);
        if (fate[i] == CHAOS_NFAULTS)
            CHAOS_CHECK(code == 0, "a locker left alone exited %d", code);
        else if (S->holding[i])
            expected++; /* it died holding the lock: the next taker must be told */
        mp_process_free(p[i]);
    }
    int rc = take();
    CHAOS_CHECK(rc == 0, "the parent's acquire returned %s", mp_err_name(rc));
    CHAOS_CHECK(S->a == S->b, "a %ld != b %ld after repair", S->a, S->b);
    mp_lock_release(&S->lock);
    for (int i = 0; i < expected; i++) {
        chaos_expose();
        if (i < S->ownerdead_seen)
            chaos_reported();
    }
}

static char segname[128];
static int ready_fd;

static int creator(void *arg)
{
    (void)arg;
    mp_shm *s;
    if (mp_shm_create(segname, 4096, &s) != 0)
        return 1;
    chaos_put_int(ready_fd, 1);
    for (;;)
        pause();
}

/* The creator of a named segment killed: the tracker unlinks it (the
 * driver checks /dev/shm after the round). */
static void creator_round(chaos_rng *r)
{
    int fds[2], v = 0;
    mp_process *p;
    chaos_pipe(fds);
    ready_fd = fds[1];
    CHAOS_CHECK(mp_process_new(creator, NULL, "chaos-creator", &p) == 0, "new");
    CHAOS_CHECK(mp_process_start(p) == 0, "start");
    if (chaos_below(r, 4) != 0)
        CHAOS_CHECK(chaos_get_int(fds[0], &v, 10) == 0, "the creator never said ready");
    enum chaos_fault k = chaos_signal_kind(r);
    chaos_signal(mp_process_pid(p), k, r);
    chaos_expose();
    int code = 0;
    if (mp_process_join(p, 10) == 0 && mp_process_exitcode(p, &code) == 0 &&
        (code == chaos_signal_code(k) || code == 1))
        chaos_reported();
    mp_process_free(p);
    close(fds[0]);
    close(fds[1]);
}

/* Whether /dev/shm/mproc-<segname> exists. */
static bool seg_exists(void)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/mproc-%s", segname);
    return access(path, F_OK) == 0;
}

/* A whole program (an exec of this one, with a session and a tracker of
 * its own) killed right after it created its first named segment, or at a
 * random moment of doing so: within about a second the segment is
 * unlinked and its tracker gone (the driver's process check). */
static void program_round(chaos_rng *r)
{
    int fds[2];
    char ready[16] = "";
    chaos_pipe(fds);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        execl("/proc/self/exe", "chaos", "--program-shm", segname, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (chaos_below(r, 2) && chaos_bug_enabled("tracker-outlives")) {
        /* Killed while it may be inside its first create, starting its
         * tracker: the tracker must not outlive it either. */
        chaos_sleep_us(chaos_below(r, 30000));
    } else {
        ssize_t n = read(fds[0], ready, sizeof ready - 1); /* the program's first line */
        CHAOS_CHECK(n > 0 && atoi(ready) == 0, "the program could not create its segment: %s",
                    ready);
    }
    close(fds[0]);
    enum chaos_fault k = chaos_signal_kind(r);
    chaos_fault(CHAOS_F_PARENT_KILLED);
    chaos_signal(pid, k, r);
    waitpid(pid, NULL, 0);
    double end =
        chaos_now() + 2.0 * (getenv("CHAOS_TIME_SCALE") ? atof(getenv("CHAOS_TIME_SCALE")) : 1);
    while (seg_exists() && chaos_now() < end)
        chaos_sleep_us(5000); /* bounded polling of a file's existence */
    CHAOS_CHECK(!seg_exists(), "the segment of a killed program outlived it by 2 s");
}

/* In a child limited to 64 KiB files: a 1 MiB segment must be refused. */
static int create_big(void *arg)
{
    (void)arg;
    mp_shm *s;
    signal(SIGXFSZ, SIG_IGN); /* the error, not the signal, is the report */
    int rc = mp_shm_create(segname, (size_t)1 << 20, &s);
    if (rc == 0) {
        mp_shm_unlink(s);
        mp_shm_free(s);
    }
    return rc;
}

static int toucher(void *arg)
{
    memset(mp_shm_addr(arg), 1, mp_shm_size(arg));
    return 0;
}

/* In a mount namespace of its own with a 256 KiB tmpfs on /dev/shm: a
 * 1 MiB segment is refused, or the process that fills it is killed by
 * SIGBUS and the parent learns so from its exit code. */
static int tmpfs_big(void *arg)
{
    (void)arg;
    mp_shm *s;
    mp_process *p;
    if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("chaos", "/dev/shm", "tmpfs", 0, "size=256k") != 0)
        return INT_MIN + 2;
    int rc = mp_shm_create(segname, (size_t)1 << 20, &s);
    if (rc != 0)
        return rc;
    int code = 0;
    if (mp_process_new(toucher, s, "chaos-toucher", &p) != 0 || mp_process_start(p) != 0 ||
        mp_process_join(p, 10) != 0 || mp_process_exitcode(p, &code) != 0)
        code = INT_MIN + 3;
    mp_process_free(p);
    mp_shm_unlink(s);
    mp_shm_free(s);
    return code;
}

static void shm_full(chaos_rng *r)
{
    int rc = INT_MIN + 2;
    chaos_fault(CHAOS_F_SHM_EXHAUSTED);
    if (geteuid() == 0 && chaos_below(r, 2))
        rc = chaos_limited(-1, 0, false, tmpfs_big, NULL, 20);
    if (rc == INT_MIN + 2) /* no tmpfs of our own here: the file size limit */
        rc = chaos_limited(RLIMIT_FSIZE, 65536, false, create_big, NULL, 20);
    chaos_expose();
    if (rc == -SIGBUS) {
        chaos_reported();
        chaos_finding("a segment larger than /dev/shm's room is created; its writer dies "
                      "by SIGBUS");
    } else if (rc < 0 && rc > INT_MIN + 4) {
        chaos_reported();
    } else {
        chaos_fail("a segment over the limit: %d %s", rc, mp_err_name(rc));
    }
}

void chaos_sync_round(chaos_rng *r)
{
    S = chaos_shared(sizeof *S);
    snprintf(segname, sizeof segname, "chaos-%d-%d", (int)chaos_driver, (int)getpid());
    unsigned v = chaos_below(r, 6);
    if (v < 3)
        lock_round(r);
    else if (v == 3)
        creator_round(r);
    else if (v == 4)
        program_round(r);
    else
        shm_full(r);
}
