/*
 * mpt_manager.h - fixtures shared by the manager's test programs: a server
 * and a client of a chosen kind (the starter's own fast path, a remote
 * client over the Unix socket, an encrypted one over it, or one over TCP),
 * and helpers for forked clients.  Include after mp_test.h and
 * mpt_helpers.h.
 */
#ifndef MPROC_TEST_MANAGER_H
#define MPROC_TEST_MANAGER_H

#include <signal.h>

/* The manager needs libsodium; without it every case says so and passes. */
#define SKIP_WITHOUT_MANAGER()                                  \
    do {                                                        \
        if (!mp_manager_available()) {                          \
            mp_manager *m_;                                     \
            CHECK_ERR(mp_manager_start(NULL, &m_), MP_ENOTSUP); \
            printf("  skipped: built without libsodium\n");     \
            return;                                             \
        }                                                       \
    } while (0)

enum { K_LOCAL, K_UNIX, K_UNIX_ENC, K_TCP };

typedef struct fx {
    mp_manager *owner;  /* the starter's handle (fast path) */
    mp_manager *client; /* the handle of the kind asked for (may be owner) */
    char key[64];
    int keylen;
    char addr[300];
} fx;

/* Connects to the fixture's server as the given kind of client. */
static inline mp_manager *fx_connect(fx *f, int kind)
{
    if (kind == K_LOCAL)
        return f->owner;
    mp_manager_client_opts o = MP_MANAGER_CLIENT_OPTS_INIT;
    o.address = f->addr;
    o.authkey = f->key;
    o.authkey_len = (size_t)f->keylen;
    o.no_fastpath = true;
    o.encrypt = kind == K_UNIX_ENC;
    mp_manager *c = NULL;
    CHECK_OK(mp_manager_connect_opts(&o, &c));
    CHECK(!mp_manager_is_local(c));
    return c;
}

static inline void fx_start(fx *f, int kind)
{
    memset(f, 0, sizeof *f);
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    if (kind == K_TCP)
        o.address = "tcp://127.0.0.1:0"; /* a free port, picked at run time */
    /* Both ways of starting a server under the whole suite: a fork of the
     * test (the default here, single-threaded) for some kinds, a fresh
     * image in the manager role for the others. */
    if (kind == K_TCP || kind == K_UNIX_ENC)
        o.start_method = MP_START_SPAWN;
    CHECK_OK(mp_manager_start(&o, &f->owner));
    CHECK(mp_manager_is_local(f->owner));
    CHECK_GE(mp_manager_pid(f->owner), 1);
    f->keylen = mp_manager_authkey(f->owner, f->key, sizeof f->key);
    CHECK_EQ(f->keylen, 32);
    snprintf(f->addr, sizeof f->addr, "%s", mp_manager_address(f->owner));
    f->client = fx_connect(f, kind);
}

/* Stops the server and checks that it is gone. */
static inline void fx_stop(fx *f)
{
    pid_t pid = mp_manager_pid(f->owner);
    if (f->client != f->owner)
        mp_manager_free(f->client);
    CHECK_OK(mp_manager_shutdown(f->owner, 10.0));
    CHECK_EQ(mp_manager_pid(f->owner), 0);
    mp_manager_free(f->owner);
    CHECK(mpt_wait_gone(pid, 5.0));
}

/* Forks a child that runs fn(arg) and exits with its result; the child
 * dies with the test. */
static inline pid_t fork_child(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(fn(arg));
    }
    return pid;
}

/* Reaps pid with a time limit; returns its wait status. */
static inline int reap_within(pid_t pid, double secs)
{
    CHECK(mpt_wait_gone(pid, secs));
    int st = 0;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    return st;
}

#endif /* MPROC_TEST_MANAGER_H */
