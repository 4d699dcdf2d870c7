/* Tests of connections: framing, order, direction, end of stream, broken
 * pipes, timeouts, messages larger than every buffer, partial messages,
 * descriptor passing, threads, and ends handed to spawned children. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>

/* ---- helpers ------------------------------------------------------------ */

/* A gate: a pipe one process waits on until the other writes a byte. */
/* Byte i of message m: a pattern that makes misplaced bytes visible. */
static unsigned char pat(uint64_t m, uint64_t i)
{
    return (unsigned char)(m * 131 + i * 7 + (i >> 9));
}

static void fill(unsigned char *b, size_t n, uint64_t m)
{
    for (size_t i = 0; i < n; i++)
        b[i] = pat(m, i);
}

static bool matches(const unsigned char *b, size_t n, uint64_t m)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat(m, i))
            return false;
    return true;
}

/* ---- the basics --------------------------------------------------------- */

TEST(duplex_messages_keep_order_and_bounds)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    CHECK_OK(mp_conn_send(a, "hello", 5));
    CHECK_OK(mp_conn_send(a, NULL, 0));
    CHECK_OK(mp_conn_send(a, "world!", 6));
    CHECK_OK(mp_conn_send(b, "back", 4));
    char buf[64];
    size_t len = 99;
    CHECK_OK(mp_conn_recv(b, buf, sizeof buf, &len, 1.0));
    CHECK_EQ(len, 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK_OK(mp_conn_recv(b, buf, sizeof buf, &len, 1.0));
    CHECK_EQ(len, 0);
    CHECK_OK(mp_conn_recv(b, buf, sizeof buf, &len, 1.0));
    CHECK_EQ(len, 6);
    CHECK(memcmp(buf, "world!", 6) == 0);
    CHECK_OK(mp_conn_recv(a, buf, sizeof buf, &len, 1.0));
    CHECK_EQ(len, 4);
    CHECK(memcmp(buf, "back", 4) == 0);
    /* Nothing left either way. */
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 0), MP_EAGAIN);
    CHECK_ERR(mp_conn_recv(b, buf, sizeof buf, &len, 0), MP_EAGAIN);
    mp_conn_free(a);
    mp_conn_free(b);
}

TEST(simplex_ends_have_one_direction)
{
    mp_conn *r, *w;
    CHECK_OK(mp_pipe(&r, &w, false));
    char buf[8];
    size_t len;
    CHECK_ERR(mp_conn_send(r, "x", 1), MP_EBADF);
    CHECK_ERR(mp_conn_recv(w, buf, sizeof buf, &len, 0), MP_EBADF);
    CHECK_ERR(mp_conn_poll(w, 0), MP_EBADF);
    CHECK_ERR(mp_conn_send_fd(r, 0), MP_EBADF);
    CHECK_OK(mp_conn_send(w, "x", 1));
    CHECK_OK(mp_conn_recv(r, buf, sizeof buf, &len, 1.0));
    CHECK_EQ(len, 1);
    CHECK_EQ(buf[0], 'x');
    mp_conn_free(r);
    mp_conn_free(w);
}

TEST(bad_input_and_closed_handles)
{
    mp_conn *a, *b;
    char buf[8];
    size_t len;
    void *p;
    int fd;
    CHECK_ERR(mp_pipe(NULL, &b, true), MP_EINVAL);
    CHECK_OK(mp_pipe(&a, &b, true));
    CHECK_ERR(mp_conn_send(NULL, "x", 1), MP_EINVAL);
    CHECK_ERR(mp_conn_send(a, NULL, 1), MP_EINVAL);
    CHECK_ERR(mp_conn_recv(NULL, buf, sizeof buf, &len, 0), MP_EINVAL);
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, NULL, 0), MP_EINVAL);
    CHECK_ERR(mp_conn_recv(a, NULL, 8, &len, 0), MP_EINVAL);
    CHECK_ERR(mp_conn_recv_alloc(a, NULL, &len, 0), MP_EINVAL);
    CHECK_ERR(mp_conn_recv_fd(a, NULL, 0), MP_EINVAL);
    CHECK_ERR(mp_conn_send_fd(a, -1), MP_EBADF);
    CHECK_ERR(mp_conn_send_fd(a, 1000000), MP_EBADF);
    CHECK_ERR(mp_conn_poll(NULL, 0), MP_EINVAL);
    CHECK_ERR(mp_conn_close(NULL), MP_EINVAL);
    CHECK_ERR(mp_conn_fd(NULL), MP_EINVAL);
    CHECK(mp_conn_fd(a) >= 0);
    CHECK_OK(mp_conn_close(a));
    CHECK_OK(mp_conn_close(a)); /* idempotent */
    CHECK_ERR(mp_conn_fd(a), MP_ECLOSED);
    CHECK_ERR(mp_conn_send(a, "x", 1), MP_ECLOSED);
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 0), MP_ECLOSED);
    CHECK_ERR(mp_conn_recv_alloc(a, &p, &len, 0), MP_ECLOSED);
    CHECK_ERR(mp_conn_recv_fd(a, &fd, 0), MP_ECLOSED);
    CHECK_ERR(mp_conn_poll(a, 0), MP_ECLOSED);
    mp_conn_free(a);
    mp_conn_free(b);
    mp_conn_free(NULL);
}

TEST(too_small_buffer_keeps_the_message)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    unsigned char msg[300], buf[300];
    fill(msg, sizeof msg, 1);
    CHECK_OK(mp_conn_send(a, msg, sizeof msg));
    CHECK_OK(mp_conn_send(a, "next", 4));
    size_t len = 0;
    CHECK_ERR(mp_conn_recv(b, buf, 10, &len, 1.0), MP_EMSGSIZE);
    CHECK_EQ(len, 300);
    CHECK_ERR(mp_conn_recv(b, NULL, 0, &len, 1.0), MP_EMSGSIZE);
    CHECK_EQ(len, 300);
    CHECK_EQ(mp_conn_poll(b, 0), 1);
    CHECK_OK(mp_conn_recv(b, buf, sizeof buf, &len, 1.0));
    CHECK_EQ(len, 300);
    CHECK(matches(buf, len, 1));
    void *p = NULL;
    CHECK_OK(mp_conn_recv_alloc(b, &p, &len, 1.0));
    CHECK_EQ(len, 4);
    CHECK(memcmp(p, "next", 4) == 0);
    free(p);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- end of stream and broken pipes ---------------------------------------- */

TEST(eof_only_when_every_holder_closed)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    gate g;
    gate_init(&g);
    pid_t pid = fork();
    if (pid == 0) {
        mp_conn_close(a); /* the child uses b only */
        if (gate_wait(&g, 30) < 0)
            _exit(1);
        for (int i = 0; i < 3; i++)
            if (mp_conn_send(b, &i, sizeof i) < 0)
                _exit(2);
        _exit(0); /* its copy of b closes with it */
    }
    mp_conn_close(b); /* the parent's copy */
    char buf[8];
    size_t len;
    /* The child still holds b: no end of stream, a timeout. */
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 0.05), MP_ETIMEDOUT);
    gate_open(&g);
    for (int i = 0; i < 3; i++) {
        int v;
        CHECK_OK(mp_conn_recv(a, &v, sizeof v, &len, 10.0));
        CHECK_EQ(v, i);
    }
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 10.0), MP_EOF);
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, &len, MP_FOREVER), MP_EOF);
    CHECK_EQ(mp_conn_poll(a, 0), 1); /* a receive would not block */
    reap_ok(pid);
    gate_close(&g);
    mp_conn_free(a);
    mp_conn_free(b);
}

TEST(send_to_a_closed_peer_is_epipe_without_sigpipe)
{
    /* The default disposition: SIGPIPE would kill this process. */
    signal(SIGPIPE, SIG_DFL);
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    mp_conn_close(a);
    CHECK_ERR(mp_conn_send(b, "x", 1), MP_EPIPE);
    CHECK_ERR(mp_conn_send_timeout(b, "x", 1, 0), MP_EPIPE);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK_ERR(mp_conn_send_fd(b, fd), MP_EPIPE);
    close(fd);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* Sends a packet by hand: word, payload, and a descriptor when fd >= 0. */
static void raw_packet(mp_conn *c, uint64_t word, const void *payload, size_t len, int fd)
{
    char pkt[256];
    CHECK_LE_U(len, sizeof pkt - 8);
    memcpy(pkt, &word, 8);
    if (len)
        memcpy(pkt + 8, payload, len);
    CHECK_OK(mp__send_fds(mp_conn_fd(c), pkt, 8 + len, &fd, fd >= 0 ? 1 : 0));
}

/* A packet no mproc sender makes (a length that is not the payload's)
 * is dropped as a protocol error; what follows is read as usual. */
TEST(truncated_message_is_eproto_then_eof)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    /* A header announcing 1000 bytes, with only 10, then the end. */
    char part[10] = {0};
    raw_packet(b, (uint64_t)1000 << 8 | 1, part, sizeof part, -1);
    CHECK_OK(mp_conn_send(b, "next", 4));
    mp_conn_close(b);
    char buf[2000];
    size_t len;
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 10.0), MP_EPROTO);
    CHECK_OK(mp_conn_recv(a, buf, sizeof buf, &len, 10.0));
    CHECK_EQ_U(len, 4);
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 10.0), MP_EOF);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* pipe.h, mp_conn_recv_fd: a descriptor message that came without its
 * descriptor is MP_EPROTO at once, not after the wait; so is a large
 * message without its stream. */
TEST(a_descriptor_frame_without_its_descriptor_fails_at_once)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    raw_packet(b, 2, NULL, 0, -1);                          /* KIND_FD, no fd */
    raw_packet(b, (uint64_t)1 << 20 << 8 | 3, NULL, 0, -1); /* KIND_BULK, no stream */
    int fd = -1;
    double t0 = mpt_now();
    CHECK_ERR(mp_conn_recv_fd(a, &fd, 30.0), MP_EPROTO);
    char buf[8];
    size_t len;
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 30.0), MP_EPROTO);
    CHECK(mpt_now() - t0 < 5.0);
    CHECK_EQ(fd, -1);
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 0), MP_EAGAIN);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* pipe.h, mp_conn_recv_alloc: the length a peer announces is not trusted
 * beyond the end's limit (1 GiB by default, settable): the call refuses at
 * once, allocating nothing, and the message stays for a receive that can
 * take it. */
TEST(recv_alloc_refuses_a_message_over_its_limit)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    int s[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
    uint64_t huge = (uint64_t)3 << 30; /* 3 GiB, never sent */
    raw_packet(b, huge << 8 | 3, NULL, 0, s[1]);
    void *p = NULL;
    size_t len = 0;
    double t0 = mpt_now();
    CHECK_ERR(mp_conn_recv_alloc(a, &p, &len, 10.0), MP_EMSGSIZE);
    CHECK(mpt_now() - t0 < 5.0);
    CHECK_EQ_U(len, huge);
    CHECK_NULL(p);
    /* A lower limit refuses smaller ones. */
    CHECK_ERR(mp_conn_set_max_message(a, 0), MP_EINVAL);
    CHECK_ERR(mp_conn_set_max_message(NULL, 10), MP_EINVAL);
    mp_conn *c, *d;
    CHECK_OK(mp_pipe(&c, &d, true));
    CHECK_OK(mp_conn_set_max_message(c, 100));
    char msg[200] = {0};
    CHECK_OK(mp_conn_send(d, msg, sizeof msg));
    CHECK_ERR(mp_conn_recv_alloc(c, &p, &len, 1.0), MP_EMSGSIZE);
    CHECK_EQ_U(len, sizeof msg);
    CHECK_OK(mp_conn_set_max_message(c, 200));
    CHECK_OK(mp_conn_recv_alloc(c, &p, &len, 1.0));
    CHECK_EQ_U(len, sizeof msg);
    free(p);
    close(s[0]);
    close(s[1]);
    mp_conn_free(a);
    mp_conn_free(b);
    mp_conn_free(c);
    mp_conn_free(d);
}

/* ---- one message per receive ------------------------------------------------ */

/* Sends message i: its number and size, then a checkable body; every
 * seventh is larger than a packet (64 KiB). */
static void send_numbered(mp_conn *c, uint32_t i)
{
    size_t size = i % 7 == 3 ? 100000 + i : 8 + i % 50;
    unsigned char *m = malloc(size);
    CHECK_NOT_NULL(m);
    fill(m, size, i);
    memcpy(m, &i, sizeof i);
    CHECK_OK(mp_conn_send(c, m, size));
    free(m);
}

/* Receives one numbered message; returns its number. */
static uint32_t recv_numbered(mp_conn *c)
{
    static unsigned char buf[200000];
    size_t len;
    CHECK_OK(mp_conn_recv(c, buf, sizeof buf, &len, 30.0));
    uint32_t i;
    memcpy(&i, buf, sizeof i);
    CHECK_EQ_U(len, i % 7 == 3 ? 100000 + i : 8 + i % 50);
    memcpy(buf, (unsigned char[4]){pat(i, 0), pat(i, 1), pat(i, 2), pat(i, 3)}, 4);
    CHECK(matches(buf, len, i));
    return i;
}

/* pipe.h, "One message per receive": a child that receives one message
 * and exits leaves the others where they were, for the parent that holds
 * the same end (the connection read up to 64 KiB ahead, and the child took
 * what it had read with it). */
TEST(a_child_that_receives_one_message_leaves_the_rest)
{
    mp_conn *r, *w;
    CHECK_OK(mp_pipe(&r, &w, false));
    enum { N = 20 };
    for (uint32_t i = 0; i < N; i++)
        send_numbered(w, i);
    pid_t pid = fork();
    if (pid == 0)
        _exit(recv_numbered(r) == 0 ? 0 : 1);
    reap_ok(pid);
    for (uint32_t i = 1; i < N; i++)
        CHECK_EQ_U(recv_numbered(r), i);
    char buf[8];
    size_t len;
    CHECK_ERR(mp_conn_recv(r, buf, sizeof buf, &len, 0), MP_EAGAIN);
    mp_conn_free(r);
    mp_conn_free(w);
}

/* Two processes receive from one end by turns (never at once, as pipe.h
 * asks), then one exits: every message is received exactly once, in
 * order between them. */
TEST(two_processes_reading_one_end_by_turns_lose_nothing)
{
    mp_conn *r, *w;
    CHECK_OK(mp_pipe(&r, &w, false));
    enum { N = 120, CHILD_TURNS = 40 };
    for (uint32_t i = 0; i < N; i++)
        send_numbered(w, i);
    gate to_child, to_parent;
    gate_init(&to_child);
    gate_init(&to_parent);
    pid_t pid = fork();
    if (pid == 0) {
        /* Even numbers are the child's turns: it must get exactly those. */
        for (uint32_t t = 0; t < CHILD_TURNS; t++) {
            if (gate_wait(&to_child, 30) < 0 || recv_numbered(r) != 2 * t)
                _exit(1);
            gate_open(&to_parent);
        }
        _exit(0);
    }
    for (uint32_t t = 0; t < CHILD_TURNS; t++) {
        gate_open(&to_child);
        CHECK_OK(gate_wait(&to_parent, 30));
        CHECK_EQ_U(recv_numbered(r), 2 * t + 1);
    }
    reap_ok(pid);
    for (uint32_t i = 2 * CHILD_TURNS; i < N; i++)
        CHECK_EQ_U(recv_numbered(r), i);
    gate_close(&to_child);
    gate_close(&to_parent);
    mp_conn_free(r);
    mp_conn_free(w);
}

/* ---- timeouts ------------------------------------------------------------- */

TEST(receive_and_poll_timeouts)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    char buf[8];
    size_t len;
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 0), MP_EAGAIN);
    double t0 = mpt_now();
    CHECK_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 0.1), MP_ETIMEDOUT);
    double dt = mpt_now() - t0;
    CHECK(dt >= 0.1);
    CHECK(dt < 5.0);
    void *p;
    t0 = mpt_now();
    CHECK_ERR(mp_conn_recv_alloc(a, &p, &len, 0.05), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.05);
    int fd;
    CHECK_ERR(mp_conn_recv_fd(a, &fd, 0), MP_EAGAIN);
    CHECK_EQ(mp_conn_poll(a, 0), 0);
    t0 = mpt_now();
    CHECK_EQ(mp_conn_poll(a, 0.1), 0);
    dt = mpt_now() - t0;
    CHECK(dt >= 0.1);
    CHECK(dt < 5.0);
    CHECK_OK(mp_conn_send(b, "x", 1));
    CHECK_EQ(mp_conn_poll(a, 1.0), 1);
    CHECK_EQ(mp_conn_poll(a, 0), 1); /* poll does not consume */
    CHECK_OK(mp_conn_recv(a, buf, sizeof buf, &len, 0));
    mp_conn_free(a);
    mp_conn_free(b);
}

/* Fills the kernel's buffers towards a peer that does not read.  Returns
 * how many bytes went in. */
static size_t fill_pipe(mp_conn *c)
{
    static char chunk[4096];
    size_t total = 0;
    while (mp_conn_send_timeout(c, chunk, sizeof chunk, 0) == 0)
        total += sizeof chunk;
    return total;
}

TEST(send_timeouts_when_the_peer_does_not_read)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    CHECK(fill_pipe(a) > 0);
    /* Nothing of these goes out: they may be retried. */
    CHECK_ERR(mp_conn_send_timeout(a, "x", 1, 0), MP_EAGAIN);
    double t0 = mpt_now();
    CHECK_ERR(mp_conn_send_timeout(a, "x", 1, 0.1), MP_ETIMEDOUT);
    double dt = mpt_now() - t0;
    CHECK(dt >= 0.1);
    CHECK(dt < 5.0);
    /* Drain: the filler messages arrive whole, then a retried send works. */
    char buf[4096];
    size_t len;
    while (mp_conn_recv(b, buf, sizeof buf, &len, 0) == 0)
        CHECK_EQ(len, sizeof buf);
    CHECK_OK(mp_conn_send_timeout(a, "y", 1, 1.0));
    CHECK_OK(mp_conn_recv(b, buf, sizeof buf, &len, 1.0));
    CHECK_EQ(len, 1);
    CHECK_EQ(buf[0], 'y');
    mp_conn_free(a);
    mp_conn_free(b);
}

/* pipe.h, mp_conn_send_timeout: a large message cut by its timeout is
 * MP_EPROTO for the receiver, and both ends go on. */
TEST(send_timing_out_midway_cuts_only_that_message)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    size_t big = (size_t)8 << 20; /* far more than the socket buffers */
    unsigned char *msg = malloc(big);
    CHECK(msg != NULL);
    fill(msg, big, 3);
    CHECK_ERR(mp_conn_send_timeout(a, msg, big, 0.05), MP_ETIMEDOUT);
    CHECK_OK(mp_conn_send(a, "x", 1));
    /* The other direction works throughout. */
    CHECK_OK(mp_conn_send(b, "ok", 2));
    char buf[8];
    size_t len;
    CHECK_OK(mp_conn_recv(a, buf, sizeof buf, &len, 1.0));
    CHECK_EQ(len, 2);
    unsigned char *in = malloc(big);
    CHECK(in != NULL);
    CHECK_ERR(mp_conn_recv(b, in, big, &len, 10.0), MP_EPROTO);
    CHECK_OK(mp_conn_recv(b, in, big, &len, 10.0));
    CHECK_EQ_U(len, 1);
    CHECK_EQ(in[0], 'x');
    mp_conn_close(a);
    CHECK_ERR(mp_conn_recv(b, in, big, &len, 10.0), MP_EOF);
    free(msg);
    free(in);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- large messages ------------------------------------------------------- */

TEST_TIMEOUT(a_64_mib_message_between_processes, 120)
{
    mp_conn *r, *w;
    CHECK_OK(mp_pipe(&r, &w, false));
    const size_t big = (size_t)64 << 20;
    pid_t pid = fork();
    if (pid == 0) {
        mp_conn_close(r);
        unsigned char *msg = malloc(big);
        if (!msg)
            _exit(1);
        fill(msg, big, 64);
        int rc = mp_conn_send(w, msg, big);
        if (rc == 0)
            rc = mp_conn_send(w, msg, big); /* again, for recv_alloc */
        if (rc == 0)
            rc = mp_conn_send(w, "end", 3);
        _exit(rc == 0 ? 0 : 2);
    }
    mp_conn_close(w);
    unsigned char *buf = malloc(big);
    CHECK(buf != NULL);
    size_t len = 0;
    /* Too small: told the size, and the message (already streaming in)
     * stays whole. */
    CHECK_ERR(mp_conn_recv(r, buf, 1024, &len, 30.0), MP_EMSGSIZE);
    CHECK_EQ(len, big);
    CHECK_OK(mp_conn_recv(r, buf, big, &len, 60.0));
    CHECK_EQ(len, big);
    CHECK(matches(buf, big, 64));
    void *p = NULL;
    CHECK_OK(mp_conn_recv_alloc(r, &p, &len, 60.0));
    CHECK_EQ(len, big);
    CHECK(matches(p, big, 64));
    free(p);
    CHECK_OK(mp_conn_recv(r, buf, big, &len, 10.0));
    CHECK_EQ(len, 3);
    CHECK_ERR(mp_conn_recv(r, buf, big, &len, 10.0), MP_EOF);
    reap_ok(pid);
    free(buf);
    mp_conn_free(r);
    mp_conn_free(w);
}

TEST(a_message_cut_by_a_timeout_resumes_where_it_stopped)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    const size_t big = (size_t)1 << 20, half = big / 2;
    unsigned char *msg = malloc(big), *buf = malloc(big);
    CHECK(msg && buf);
    fill(msg, big, 9);
    gate g;
    gate_init(&g);
    pid_t pid = fork();
    if (pid == 0) {
        /* Sends the large message by hand: the packet with its stream,
         * half the payload, then the rest once the parent has timed out in
         * the middle. */
        int s[2];
        uint64_t hdr = (uint64_t)big << 8 | 3;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) != 0 ||
            mp__send_fds(mp_conn_fd(b), &hdr, sizeof hdr, &s[1], 1) < 0 ||
            mp__write_all(s[0], msg, half) < 0)
            _exit(1);
        if (gate_wait(&g, 30) < 0 || mp__write_all(s[0], msg + half, big - half) < 0)
            _exit(2);
        close(s[0]);
        _exit(mp_conn_send(b, "after", 5) == 0 ? 0 : 3);
    }
    size_t len;
    CHECK_ERR(mp_conn_recv(a, buf, big, &len, 0.2), MP_ETIMEDOUT);
    CHECK_ERR(mp_conn_recv(a, buf, big, &len, 0), MP_EAGAIN);
    /* What arrived is kept: a buffer too small is told the full size. */
    CHECK_ERR(mp_conn_recv(a, buf, 10, &len, 0), MP_EMSGSIZE);
    CHECK_EQ(len, big);
    gate_open(&g);
    memset(buf, 0, big);
    CHECK_OK(mp_conn_recv(a, buf, big, &len, 30.0));
    CHECK_EQ(len, big);
    CHECK(matches(buf, big, 9));
    CHECK_OK(mp_conn_recv(a, buf, big, &len, 30.0));
    CHECK_EQ(len, 5);
    CHECK(memcmp(buf, "after", 5) == 0);
    reap_ok(pid);
    gate_close(&g);
    free(msg);
    free(buf);
    mp_conn_free(a);
    mp_conn_free(b);
}

TEST(a_stream_of_mixed_sizes_between_processes)
{
    mp_conn *r, *w;
    CHECK_OK(mp_pipe(&r, &w, false));
    enum { N = 3000 };
    pid_t pid = fork();
    if (pid == 0) {
        mp_conn_close(r);
        unsigned char *msg = malloc(200000);
        if (!msg)
            _exit(1);
        for (uint64_t i = 0; i < N; i++) {
            /* Sizes that straddle the connection's buffering thresholds. */
            size_t n = (size_t)((i * 7919) % (i % 50 == 0 ? 200000 : 20000));
            fill(msg, n, i);
            if (mp_conn_send(w, msg, n) < 0)
                _exit(2);
        }
        _exit(0);
    }
    mp_conn_close(w);
    unsigned char *buf = malloc(200000);
    CHECK(buf != NULL);
    for (uint64_t i = 0; i < N; i++) {
        size_t len, n = (size_t)((i * 7919) % (i % 50 == 0 ? 200000 : 20000));
        /* Alternate waiting styles: forever, and short polls. */
        int rc;
        if (i % 2)
            rc = mp_conn_recv(r, buf, 200000, &len, MP_FOREVER);
        else
            while ((rc = mp_conn_recv(r, buf, 200000, &len, 0.001)) == MP_ETIMEDOUT) {
            }
        CHECK_OK(rc);
        CHECK_EQ(len, n);
        CHECK(matches(buf, len, i));
    }
    size_t len;
    CHECK_ERR(mp_conn_recv(r, buf, 200000, &len, 10.0), MP_EOF);
    reap_ok(pid);
    free(buf);
    mp_conn_free(r);
    mp_conn_free(w);
}

/* ---- descriptors ---------------------------------------------------------- */

TEST(descriptors_travel_in_order_with_messages)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    int mfd = mp__memfd_new("pipe-test", 4096);
    CHECK(mfd >= 0);
    CHECK_EQ(pwrite(mfd, "shared!", 7, 0), 7);
    pid_t pid = fork();
    if (pid == 0) {
        mp_conn_close(a);
        char buf[16];
        size_t len;
        int fd = -1;
        /* Order: bytes, then a descriptor, then bytes. */
        if (mp_conn_recv(b, buf, sizeof buf, &len, 10.0) < 0 || len != 6)
            _exit(1);
        /* The next message is a descriptor: a byte receive refuses it
         * without consuming it. */
        if (mp_conn_recv(b, buf, sizeof buf, &len, 10.0) != MP_EPROTO)
            _exit(2);
        if (mp_conn_recv_fd(b, &fd, 10.0) < 0)
            _exit(3);
        char got[8] = {0};
        if (pread(fd, got, 7, 0) != 7 || memcmp(got, "shared!", 7) != 0)
            _exit(4);
        if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC))
            _exit(5);
        /* Writes through the received descriptor reach the same memory. */
        if (pwrite(fd, "child", 5, 100) != 5)
            _exit(6);
        if (mp_conn_recv_fd(b, &fd, 10.0) != MP_EPROTO)
            _exit(7); /* bytes come next */
        if (mp_conn_recv(b, buf, sizeof buf, &len, 10.0) < 0 || len != 4)
            _exit(8);
        _exit(mp_conn_send(b, "done", 4) == 0 ? 0 : 9);
    }
    mp_conn_close(b);
    CHECK_OK(mp_conn_send(a, "before", 6));
    CHECK_OK(mp_conn_send_fd(a, mfd));
    CHECK_OK(mp_conn_send(a, "tail", 4));
    char buf[16];
    size_t len;
    CHECK_OK(mp_conn_recv(a, buf, sizeof buf, &len, 30.0));
    CHECK_EQ(len, 4);
    char got[8] = {0};
    CHECK_EQ(pread(mfd, got, 5, 100), 5);
    CHECK(memcmp(got, "child", 5) == 0);
    reap_ok(pid);
    close(mfd);
    mp_conn_free(a);
    mp_conn_free(b);
}

TEST(many_descriptors_none_leaked)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    enum { N = 40 };
    int p[2];
    CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    for (int i = 0; i < N; i++) {
        CHECK_OK(mp_conn_send(a, &i, sizeof i));
        CHECK_OK(mp_conn_send_fd(a, p[1]));
    }
    for (int i = 0; i < N; i++) {
        int v, fd;
        size_t len;
        CHECK_OK(mp_conn_recv(b, &v, sizeof v, &len, 1.0));
        CHECK_EQ(v, i);
        CHECK_OK(mp_conn_recv_fd(b, &fd, 1.0));
        CHECK(fd != p[1]);
        char c = (char)i;
        CHECK_EQ(write(fd, &c, 1), 1);
        close(fd);
        CHECK_EQ(read(p[0], &c, 1), 1);
        CHECK_EQ(c, (char)i);
    }
    /* Descriptors sent and never taken are closed with the connection. */
    CHECK_OK(mp_conn_send_fd(a, p[1]));
    CHECK_OK(mp_conn_send_fd(a, p[1]));
    CHECK_EQ(mp_conn_poll(b, 1.0), 1);
    mp_conn_free(b);
    close(p[1]);
    char c;
    CHECK_EQ(read(p[0], &c, 1), 0); /* every copy of the write end is gone */
    close(p[0]);
    mp_conn_free(a);
}

/* ---- threads -------------------------------------------------------------- */

typedef struct sender_arg {
    mp_conn *c;
    int id;
    size_t size;
    int n;
} sender_arg;

static void *sender_thread(void *p)
{
    sender_arg *s = p;
    unsigned char *msg = malloc(s->size);
    for (int i = 0; msg && i < s->n; i++) {
        fill(msg, s->size, (uint64_t)s->id * 1000 + (uint64_t)i);
        if (mp_conn_send(s->c, msg, s->size) < 0)
            break;
    }
    free(msg);
    return NULL;
}

TEST(threads_send_whole_messages_concurrently)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    enum { T = 3, N = 20 };
    /* Larger than the socket buffer, so that sends go out in pieces and
     * would interleave if they were not serialised. */
    const size_t size = 300000;
    pthread_t th[T];
    sender_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (sender_arg){a, t, size, N};
        CHECK_EQ(pthread_create(&th[t], NULL, sender_thread, &args[t]), 0);
    }
    unsigned char *buf = malloc(size);
    CHECK(buf != NULL);
    int next[T] = {0};
    for (int k = 0; k < T * N; k++) {
        size_t len;
        CHECK_OK(mp_conn_recv(b, buf, size, &len, 30.0));
        CHECK_EQ(len, size);
        int who = -1;
        for (int t = 0; t < T && who < 0; t++)
            if (next[t] < N && matches(buf, size, (uint64_t)t * 1000 + (uint64_t)next[t]))
                who = t;
        CHECK(who >= 0); /* whole, and in each thread's order */
        next[who]++;
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    free(buf);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- spawned children ------------------------------------------------------ */

static int echo_child(void *arg)
{
    (void)arg;
    mp_conn *c;
    int rc = mp_conn_from_fd(mp_process_inherited_fd(0), MP_CONN_READABLE | MP_CONN_WRITABLE, &c);
    if (rc < 0)
        return rc;
    for (;;) {
        void *p;
        size_t len;
        rc = mp_conn_recv_alloc(c, &p, &len, 30.0);
        if (rc == MP_EOF)
            break;
        if (rc < 0)
            return rc;
        rc = mp_conn_send(c, p, len);
        free(p);
        if (rc < 0)
            return rc;
    }
    mp_conn_free(c);
    return 0;
}

TEST(an_end_handed_to_a_spawned_child)
{
    mp_conn *a, *b;
    CHECK_OK(mp_pipe(&a, &b, true));
    int fd = mp_conn_fd(b);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = MP_START_SPAWN;
    o.fds = &fd;
    o.nfds = 1;
    mp_process *p = mpt_new_opts(echo_child, NULL, &o);
    CHECK(p != NULL);
    CHECK_OK(mp_process_start(p));
    mp_conn_close(b);
    for (int i = 0; i < 5; i++) {
        char msg[32], buf[32];
        int n = snprintf(msg, sizeof msg, "echo %d", i);
        size_t len;
        CHECK_OK(mp_conn_send(a, msg, (size_t)n));
        CHECK_OK(mp_conn_recv(a, buf, sizeof buf, &len, 30.0));
        CHECK_EQ(len, (size_t)n);
        CHECK(memcmp(buf, msg, len) == 0);
    }
    mp_conn_close(a); /* the child sees the end and returns 0 */
    CHECK_OK(mp_process_join(p, 30.0));
    CHECK_EQ(mpt_exitcode(p), 0);
    mp_process_free(p);
    mp_conn_free(a);
    mp_conn_free(b);
}

TEST(from_fd_takes_only_packet_sockets)
{
    mp_conn *c = NULL;
    int p[2];
    CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    CHECK_ERR(mp_conn_from_fd(p[0], MP_CONN_READABLE, &c), MP_EINVAL);
    CHECK(c == NULL);
    int s[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, s), 0);
    CHECK_ERR(mp_conn_from_fd(s[0], MP_CONN_READABLE, &c), MP_EINVAL);
    CHECK_ERR(mp_conn_from_fd(-1, MP_CONN_READABLE, &c), MP_EINVAL);
    CHECK_ERR(mp_conn_from_fd(p[0], 0, &c), MP_EINVAL);
    CHECK_ERR(mp_conn_from_fd(p[0], MP_CONN_READABLE, NULL), MP_EINVAL);
    close(p[0]);
    close(p[1]);
    close(s[0]);
    close(s[1]);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
    CHECK_ERR(mp_conn_from_fd(s[0], MP_CONN_READABLE, &c), MP_EINVAL);
    close(s[0]);
    close(s[1]);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, s), 0);
    mp_conn *x, *y;
    CHECK_OK(mp_conn_from_fd(s[0], MP_CONN_WRITABLE, &x));
    CHECK_OK(mp_conn_from_fd(s[1], MP_CONN_READABLE, &y));
    CHECK(fcntl(s[0], F_GETFD) & FD_CLOEXEC);
    CHECK_OK(mp_conn_send(x, "hi", 2));
    char buf[4];
    size_t len;
    CHECK_OK(mp_conn_recv(y, buf, sizeof buf, &len, 1.0));
    CHECK_EQ(len, 2);
    mp_conn_free(x); /* closes s[0] */
    mp_conn_free(y);
    CHECK_EQ(fcntl(s[0], F_GETFD), -1);
}

MPT_MAIN()
