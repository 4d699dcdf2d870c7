/*
 * test_manager_security.c - the manager against clients and servers that
 * do not hold the key, malformed and oversized frames, and a man in the
 * middle who replays or alters encrypted frames; and the standalone
 * server, mproc-manager.
 */
#include "mp_test.h"
#include "mpt_helpers.h"
#include "mpt_manager.h"

#include "managerd/mgr.h"

#include <fcntl.h>
#include <libgen.h>
#include <sys/socket.h>

/* ---- wrong keys ------------------------------------------------------------------- */

/* Waits (bounded) until the log file holds needle. */
static bool log_says(const char *path, const char *needle)
{
    for (int i = 0; i < 20000; i++) {
        char buf[8192] = {0};
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (n > 0 && strstr(buf, needle))
                return true;
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL); /* the server logs on its own time */
    }
    return false;
}

static void wrong_key(int kind)
{
    SKIP_WITHOUT_MANAGER();
    char logpath[] = "/tmp/mproc-test-log-XXXXXX";
    int lfd = mkstemp(logpath);
    CHECK(lfd >= 0);
    close(lfd);
    CHECK_OK(mp_log_set_file(logpath));
    fx f;
    fx_start(&f, kind);
    mp_manager *m = (mp_manager *)1;
    char bad[32];
    memcpy(bad, f.key, 32);
    bad[31] ^= 1;
    CHECK_ERR(mp_manager_connect(f.addr, bad, 32, &m), MP_EAUTH);
    CHECK(m == NULL);
    CHECK_ERR(mp_manager_connect(f.addr, f.key, 31, &m), MP_EAUTH); /* a prefix is wrong too */
    CHECK(log_says(logpath, "wrong authentication key"));
    /* The server goes on serving those who hold the key. */
    mp_manager *ok = fx_connect(&f, kind == K_TCP ? K_TCP : K_UNIX);
    mp_mdict *d;
    CHECK_OK(mp_mdict_new(ok, "d", &d));
    mp_mdict_free(d);
    mp_manager_free(ok);
    fx_stop(&f);
    CHECK_OK(mp_log_set_file(NULL));
    unlink(logpath);
}

TEST(wrong_key_unix)
{
    wrong_key(K_UNIX);
}

TEST(wrong_key_tcp)
{
    wrong_key(K_TCP);
}

/* A server that does not hold the key: the client refuses it. */
typedef struct fake {
    int lfd;
    uint8_t master[MC_KEY];
    bool tamper; /* answer one request with a reply altered in transit */
} fake;

static int fake_server(void *arg)
{
    fake *s = arg;
    int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return 1;
    mp__mconn c;
    mp__mconn_init(&c, fd);
    uint32_t agreed;
    int rc =
        mp__mconn_server_hello(&c, s->master, MH_ENCRYPT, 0, 7, -1, 0, mp__deadline(10), &agreed);
    if (!s->tamper)
        return rc == MP_EAUTH ? 0 : 2; /* the client's proof fails under our key */
    if (rc != 0)
        return 3;
    const uint8_t *p;
    size_t len;
    mp__mbytes strs[MX_MAX_STRS];
    mp__mreq rq;
    if (mp__mconn_recv(&c, &p, &len, mp__deadline(10)) || mp__wire_decode_req(p, len, &rq, strs))
        return 4;
    mp__mrep rp;
    mp__mrep_init(&rp);
    rp.a = 5;
    int n = mp__wire_encode_rep(rq.op, rq.seq, &rp, &c.tx, &c.tx_cap, MC_TAG);
    mw_put32(c.tx, (uint32_t)n + MC_TAG);
    mp__crypto_seal(c.tx_key, c.tx_ctr++, c.tx, 4, c.tx + 4, (size_t)n);
    c.tx[4 + 9] ^= 0x10; /* one bit of the status */
    if (write(fd, c.tx, (size_t)n + 4 + MC_TAG) != n + 4 + MC_TAG)
        return 5;
    char b;
    (void)read(fd, &b, 1); /* until the client hangs up */
    mp__mconn_close(&c);
    return 0;
}

static pid_t fake_start(fake *s, const char *authkey, bool tamper, char *addr, size_t cap)
{
    mp__maddr a;
    CHECK_OK(mp__maddr_parse("tcp://127.0.0.1:0", &a));
    s->lfd = mp__maddr_listen(&a);
    CHECK_OK(s->lfd);
    CHECK_OK(mp__set_nonblock(s->lfd, false));
    mp__maddr_format(&a, addr, cap);
    mp__crypto_master(authkey, strlen(authkey), s->master);
    s->tamper = tamper;
    pid_t pid = fork_child(fake_server, s);
    close(s->lfd);
    return pid;
}

TEST(server_without_the_key_refused)
{
    SKIP_WITHOUT_MANAGER();
    fake s;
    char addr[300];
    pid_t pid = fake_start(&s, "the server's guess", false, addr, sizeof addr);
    mp_manager *m = NULL;
    CHECK_ERR(mp_manager_connect(addr, "the real key", 12, &m), MP_EAUTH);
    reap_ok(pid);
}

TEST(altered_reply_refused)
{
    SKIP_WITHOUT_MANAGER();
    fake s;
    char addr[300];
    pid_t pid = fake_start(&s, "key", true, addr, sizeof addr);
    mp_manager *m = NULL;
    CHECK_OK(mp_manager_connect(addr, "key", 3, &m));
    mp_mdict *d = NULL;
    CHECK_ERR(mp_mdict_new(m, "d", &d), MP_EAUTH);
    CHECK_ERR(mp_mdict_new(m, "d", &d), MP_ECONNRESET); /* the connection is dropped */
    mp_manager_free(m);
    reap_ok(pid);
}

/* ---- raw connections --------------------------------------------------------------- */

static mp__mconn raw_client(const fx *f, uint32_t want, mp__mwelcome *w)
{
    mp__maddr a;
    CHECK_OK(mp__maddr_parse(f->addr, &a));
    int fd = mp__maddr_connect(&a, mp__deadline(10));
    CHECK_OK(fd);
    mp__mconn c;
    mp__mconn_init(&c, fd);
    uint8_t master[MC_KEY];
    mp__crypto_master(f->key, (size_t)f->keylen, master);
    CHECK_OK(mp__mconn_client_hello(&c, master, want, mp__deadline(10), w));
    CHECK_EQ(w->store_fd, -1);
    return c;
}

/* Sends one request, receives one reply. */
static int exchange(mp__mconn *c, const mp__mreq *rq, mp__mrep *rp)
{
    int n = mp__wire_encode_req(rq, &c->tx, &c->tx_cap, MC_TAG);
    CHECK_OK(n);
    CHECK_OK(mp__mconn_send(c, (size_t)n, mp__deadline(5)));
    const uint8_t *p;
    size_t len;
    int rc = mp__mconn_recv(c, &p, &len, mp__deadline(10));
    if (rc < 0)
        return rc;
    CHECK_OK(mp__wire_decode_rep(p, len, rq->op, rq->seq, rp));
    return rp->status;
}

/* Sends raw payload bytes as one plain frame, returns the reply's status
 * or the receive error (a disconnect: MP_EOF or MP_ECONNRESET). */
static int raw_frame(mp__mconn *c, const uint8_t *payload, size_t len, uint32_t claimed)
{
    uint8_t hdr[4];
    mw_put32(hdr, claimed);
    CHECK_EQ(send(c->fd, hdr, 4, MSG_NOSIGNAL), 4);
    /* The server may hang up on the header alone (a length it refuses):
     * the payload then meets a closed socket, which is no failure of
     * the test's - the receive below sees the hang-up. */
    if (len) {
        ssize_t k = send(c->fd, payload, len, MSG_NOSIGNAL);
        CHECK(k == (ssize_t)len || (k < 0 && (errno == EPIPE || errno == ECONNRESET)));
    }
    const uint8_t *p;
    size_t n;
    int rc = mp__mconn_recv(c, &p, &n, mp__deadline(10));
    if (rc < 0)
        return rc;
    mp__mrep rp;
    mp__mrep_init(&rp);
    uint16_t op = (uint16_t)(payload[2] | payload[3] << 8);
    CHECK_OK(mp__wire_decode_rep(p, n, op, mw_get32(payload + 4), &rp));
    mp__mrep_free(&rp);
    return rp.status;
}

static bool disconnected(int rc)
{
    return rc == MP_EOF || rc == MP_ECONNRESET;
}

/* A request's bytes, for mangling. */
static size_t request_bytes(const mp__mreq *rq, uint8_t *out, size_t cap)
{
    uint8_t *buf = NULL;
    size_t bcap = 0;
    int n = mp__wire_encode_req(rq, &buf, &bcap, 0);
    CHECK_OK(n);
    CHECK((size_t)n <= cap);
    memcpy(out, buf + 4, (size_t)n);
    free(buf);
    return (size_t)n;
}

static void still_serving(fx *f)
{
    mp_mdict *d;
    CHECK_OK(mp_mdict_new(f->client, "alive", &d));
    CHECK_OK(mp_mdict_set(d, "k", "v", 1));
    mp_mdict_free(d);
}

TEST(malformed_frames)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_UNIX);
    mp__mwelcome w;
    mp__mconn c = raw_client(&f, 0, &w);
    uint8_t buf[512];
    mp__mbytes key = {"k", 1};
    mp__mreq rq = {0};
    rq.op = MX_D_GET;
    rq.seq = 9;
    rq.str = &key;
    rq.nstr = 1;
    size_t n = request_bytes(&rq, buf, sizeof buf);
    /* Answered with an error, the connection kept: */
    mw_put32(buf + 20, 0xffffu << 16); /* too many strings */
    CHECK_ERR(raw_frame(&c, buf, n, (uint32_t)n), MP_EPROTO);
    n = request_bytes(&rq, buf, sizeof buf);
    mw_put32(buf + MW_REQ_HDR, 1000); /* a string longer than the frame */
    CHECK_ERR(raw_frame(&c, buf, n, (uint32_t)n), MP_EPROTO);
    n = request_bytes(&rq, buf, sizeof buf);
    buf[n] = 0; /* a trailing byte */
    CHECK_ERR(raw_frame(&c, buf, n + 1, (uint32_t)n + 1), MP_EPROTO);
    n = request_bytes(&rq, buf, sizeof buf);
    buf[0] = 2; /* another version */
    CHECK_ERR(raw_frame(&c, buf, n, (uint32_t)n), MP_EPROTO);
    mp__mreq odd = rq;
    odd.op = 999;
    n = request_bytes(&odd, buf, sizeof buf);
    CHECK_ERR(raw_frame(&c, buf, n, (uint32_t)n), MP_ENOTSUP);
    odd = rq;
    odd.obj = 0xfffffff0u; /* no such slot */
    n = request_bytes(&odd, buf, sizeof buf);
    CHECK_ERR(raw_frame(&c, buf, n, (uint32_t)n), MP_ENOOBJ);
    mp__mrep rp;
    mp__mrep_init(&rp);
    mp__mbytes name = {"d", 1};
    mp__mreq open = {0};
    open.op = MX_OPEN;
    open.a = MP_MDICT;
    open.str = &name;
    open.nstr = 1;
    CHECK_OK(exchange(&c, &open, &rp));
    odd = rq;
    odd.obj = (uint32_t)rp.a;
    odd.gen = (uint32_t)rp.b;
    mp__mbytes nul = {"a\0b", 3};
    odd.str = &nul; /* a key with a NUL inside */
    CHECK_ERR(exchange(&c, &odd, &rp), MP_EINVAL);
    static char longkey[MP_MANAGER_MAX_KEY + 1];
    memset(longkey, 'x', sizeof longkey);
    mp__mbytes lk = {longkey, sizeof longkey};
    odd.str = &lk;
    CHECK_ERR(exchange(&c, &odd, &rp), MP_EINVAL);
    odd.str = &key;
    odd.op = MX_K_ACQUIRE; /* a dict is not a lock */
    odd.nstr = 0;
    CHECK_ERR(exchange(&c, &odd, &rp), MP_ETYPE);
    odd.op = MX_D_LEN;
    odd.timeout = 0.0 / 0.0;
    CHECK_ERR(exchange(&c, &odd, &rp), MP_EINVAL);
    mp__mrep_free(&rp);
    /* Disconnected: a header that cannot be read, an oversized frame. */
    n = request_bytes(&rq, buf, sizeof buf);
    buf[1] = 7; /* not a request */
    CHECK(disconnected(raw_frame(&c, buf, n, (uint32_t)n)));
    mp__mconn_close(&c);
    c = raw_client(&f, 0, &w);
    CHECK(disconnected(raw_frame(&c, buf, 3, 3)));
    mp__mconn_close(&c);
    c = raw_client(&f, 0, &w);
    CHECK(disconnected(raw_frame(&c, buf, 8, (uint32_t)MP_MANAGER_MAX_FRAME + 1)));
    mp__mconn_close(&c);
    /* Half a frame and a hang-up. */
    c = raw_client(&f, 0, &w);
    CHECK_EQ(write(c.fd, "\x40\0\0\0\1\1", 6), 6);
    mp__mconn_close(&c);
    still_serving(&f);
    fx_stop(&f);
}

TEST(malformed_handshakes)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_UNIX);
    mp__maddr a;
    CHECK_OK(mp__maddr_parse(f.addr, &a));
    uint8_t hello[4 + MW_HELLO_LEN], junk[4 + MW_AUTH_LEN];
    for (int round = 0; round < 3; round++) {
        int fd = mp__maddr_connect(&a, mp__deadline(10));
        CHECK_OK(fd);
        CHECK_OK(mp__read_all(fd, hello, sizeof hello));
        CHECK(memcmp(hello + 4, "MPMH", 4) == 0);
        for (size_t i = 0; i < sizeof junk; i++)
            junk[i] = (uint8_t)(i * 31 + round);
        if (round == 0) {
            mw_put32(junk, MW_AUTH_LEN); /* garbage of the right size */
        } else if (round == 1) {
            mw_put32(junk, MW_AUTH_LEN); /* a proper AUTH of another version */
            mp__mauth au = {2, 0, {0}, {0}};
            mp__wire_auth_build(&au, junk + 4);
        } else {
            mw_put32(junk, 1u << 30); /* an absurd length */
        }
        CHECK_EQ(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
        uint8_t reply[4 + MW_WELCOME_LEN];
        int rc = mp__read_all(fd, reply, sizeof reply);
        if (rc == 0) {
            mp__mwelcome_msg wm;
            CHECK_OK(mp__wire_welcome_parse(reply + 4, MW_WELCOME_LEN, &wm));
            CHECK(wm.status == MP_EPROTO || wm.status == MP_EAUTH);
        }
        char b;
        CHECK_EQ(read(fd, &b, 1), 0); /* then the server hangs up */
        close(fd);
    }
    still_serving(&f);
    fx_stop(&f);
}

/* ---- a man in the middle over TCP ------------------------------------------------------ */

static void open_dict(mp__mconn *c, mp__mreq *rq)
{
    mp__mrep rp;
    mp__mrep_init(&rp);
    mp__mbytes name = {"mitm", 4};
    mp__mreq open = {0};
    open.op = MX_OPEN;
    open.a = MP_MDICT;
    open.str = &name;
    open.nstr = 1;
    CHECK_OK(exchange(c, &open, &rp));
    rq->obj = (uint32_t)rp.a;
    rq->gen = (uint32_t)rp.b;
    mp__mrep_free(&rp);
}

static int64_t counter(fx *f)
{
    mp_mdict *d;
    CHECK_OK(mp_mdict_new(f->owner, "mitm", &d));
    int64_t x = 0;
    int rc = mp_mdict_get_i64(d, "secret-counter", &x);
    mp_mdict_free(d);
    if (rc != MP_ENOKEY)
        CHECK_OK(rc);
    return x;
}

TEST(tcp_frames_encrypted_and_authenticated)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_TCP);
    mp__mwelcome w;
    /* Asking for no encryption over TCP gets it anyway. */
    mp__mconn c = raw_client(&f, 0, &w);
    CHECK(w.flags & MH_ENCRYPT);
    CHECK(c.encrypted);
    mp__mbytes key = {"secret-counter", 14};
    mp__mreq rq = {0};
    rq.op = MX_D_INCR;
    rq.a = 1;
    rq.str = &key;
    rq.nstr = 1;
    open_dict(&c, &rq);
    /* A frame as it travels: its key cannot be read in it. */
    int n = mp__wire_encode_req(&rq, &c.tx, &c.tx_cap, MC_TAG);
    CHECK_OK(n);
    CHECK_OK(mp__mconn_send(&c, (size_t)n, mp__deadline(5)));
    size_t wire = (size_t)n + 4 + MC_TAG;
    uint8_t *copy = malloc(wire);
    memcpy(copy, c.tx, wire);
    CHECK(memmem(copy, wire, "secret-counter", 14) == NULL);
    const uint8_t *p;
    size_t len;
    CHECK_OK(mp__mconn_recv(&c, &p, &len, mp__deadline(10)));
    CHECK_EQ(counter(&f), 1);
    /* Replayed: refused, and the connection ends; nothing happens twice. */
    CHECK_EQ(write(c.fd, copy, wire), (ssize_t)wire);
    CHECK(disconnected(mp__mconn_recv(&c, &p, &len, mp__deadline(10))));
    CHECK_EQ(counter(&f), 1);
    mp__mconn_close(&c);
    /* One bit flipped in the ciphertext, or in the tag: refused. */
    for (int where = 0; where < 2; where++) {
        c = raw_client(&f, 0, &w);
        open_dict(&c, &rq);
        n = mp__wire_encode_req(&rq, &c.tx, &c.tx_cap, MC_TAG);
        mw_put32(c.tx, (uint32_t)n + MC_TAG);
        mp__crypto_seal(c.tx_key, c.tx_ctr++, c.tx, 4, c.tx + 4, (size_t)n);
        c.tx[where == 0 ? 4 + 20 : 4 + (size_t)n + 3] ^= 0x04;
        CHECK_EQ(write(c.fd, c.tx, wire), (ssize_t)wire);
        CHECK(disconnected(mp__mconn_recv(&c, &p, &len, mp__deadline(10))));
        mp__mconn_close(&c);
        CHECK_EQ(counter(&f), 1);
    }
    free(copy);
    fx_stop(&f);
}

/* ---- limits of the server -------------------------------------------------------------- */

TEST(too_many_clients)
{
    SKIP_WITHOUT_MANAGER();
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.max_clients = 2;
    mp_manager *m, *a, *b = NULL;
    CHECK_OK(mp_manager_start(&o, &m)); /* the starter is one */
    char key[32];
    CHECK_EQ(mp_manager_authkey(m, key, sizeof key), 32);
    CHECK_OK(mp_manager_connect(mp_manager_address(m), key, 32, &a));
    CHECK_ERR(mp_manager_connect(mp_manager_address(m), key, 32, &b), MP_EAGAIN);
    mp_manager_free(a);
    /* The slot comes back once the server has seen the hang-up. */
    int rc = MP_EAGAIN;
    for (int i = 0; i < 20000 && rc == MP_EAGAIN; i++) {
        rc = mp_manager_connect(mp_manager_address(m), key, 32, &b);
        if (rc == MP_EAGAIN)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    CHECK_OK(rc);
    mp_manager_free(b);
    CHECK_OK(mp_manager_shutdown(m, 10));
    mp_manager_free(m);
}

/* ---- the standalone server ------------------------------------------------------------- */

TEST(standalone_server)
{
    SKIP_WITHOUT_MANAGER();
    char exe[512], tool[600];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK_GE(n, 1);
    exe[n] = '\0';
    snprintf(tool, sizeof tool, "%s/../mproc-manager", dirname(exe));
    CHECK_EQ(access(tool, X_OK), 0);
    char keyfile[] = "/tmp/mproc-test-key-XXXXXX";
    int kfd = mkstemp(keyfile);
    CHECK(kfd >= 0);
    CHECK_EQ(write(kfd, "sesame\n", 7), 7);
    close(kfd);
    int out[2];
    CHECK_EQ(pipe(out), 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(out[1], 1);
        execl(tool, "mproc-manager", "--listen", "tcp://127.0.0.1:0", "--authkey-file", keyfile,
              (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[400] = {0};
    size_t got = 0;
    while (got < sizeof line - 1 && !strchr(line, '\n')) {
        struct pollfd pf = {.fd = out[0], .events = POLLIN};
        CHECK_EQ(poll(&pf, 1, 30000), 1);
        ssize_t k = read(out[0], line + got, sizeof line - 1 - got);
        CHECK_GE(k, 1);
        got += (size_t)k;
    }
    char addr[300];
    CHECK_EQ(sscanf(line, "mproc-manager: listening on %299s", addr), 1);
    CHECK(strncmp(addr, "tcp://127.0.0.1:", 16) == 0);
    CHECK(strcmp(addr, "tcp://127.0.0.1:0") != 0);
    mp_manager *m;
    CHECK_ERR(mp_manager_connect(addr, "sesame\n", 7, &m), MP_EAUTH); /* the newline is not in it */
    CHECK_OK(mp_manager_connect(addr, "sesame", 6, &m));
    CHECK(!mp_manager_is_local(m));
    mp_mdict *d;
    CHECK_OK(mp_mdict_new(m, "d", &d));
    CHECK_OK(mp_mdict_set(d, "k", "v", 1));
    mp_mdict_free(d);
    CHECK_OK(mp_manager_shutdown(m, 10));
    mp_manager_free(m);
    int st = reap_within(pid, 10);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    close(out[0]);
    unlink(keyfile);
}

/* mp_manager_serve in the calling process: until a client shuts it down,
 * or until SIGTERM. */
static const char *serve_addr;

static int serve_here(void *arg)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.address = serve_addr;
    o.authkey = arg;
    o.authkey_len = 6;
    return mp_manager_serve(&o) == 0 ? 0 : 1;
}

static mp_manager *connect_soon(const char *addr)
{
    mp_manager *m = NULL;
    int rc = MP_ECONNREFUSED;
    for (int i = 0; i < 20000 && rc == MP_ECONNREFUSED; i++) {
        rc = mp_manager_connect(addr, "sesame", 6, &m);
        if (rc == MP_ECONNREFUSED)
            nanosleep(&(struct timespec){0, 1000000}, NULL); /* not listening yet */
    }
    CHECK_OK(rc);
    return m;
}

TEST(serve_in_this_process)
{
    SKIP_WITHOUT_MANAGER();
    char name[80], addr[100];
    snprintf(addr, sizeof addr, "unix:@%s", mpt_name(name, sizeof name, "serve"));
    serve_addr = addr;
    CHECK_ERR(mp_manager_serve(NULL), MP_EINVAL);
    mp_manager_opts bad = MP_MANAGER_OPTS_INIT;
    bad.address = addr; /* no key */
    CHECK_ERR(mp_manager_serve(&bad), MP_EINVAL);
    /* Stopped by a client. */
    pid_t pid = fork_child(serve_here, "sesame");
    mp_manager *m = connect_soon(addr);
    CHECK(mp_manager_is_local(m));
    CHECK_EQ(mp_manager_pid(m), 0); /* not started by this process */
    CHECK_OK(mp_manager_shutdown(m, 10));
    mp_manager_free(m);
    int st = reap_within(pid, 10);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    /* Stopped by SIGTERM: its clients see it go. */
    pid = fork_child(serve_here, "sesame");
    m = connect_soon(addr);
    mp_mevent *e;
    CHECK_OK(mp_mevent_new(m, "e", &e));
    CHECK_EQ(kill(pid, SIGTERM), 0);
    st = reap_within(pid, 10);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK_ERR(mp_mevent_wait(e, 10), MP_ECONNRESET);
    mp_mevent_free(e);
    mp_manager_free(m);
}

MPT_MAIN()
