/* Tests of maps over byte strings (mp_pool_map_bytes and its kin): items
 * and outputs of 0 bytes to 1 MiB, strings allocated after the pool
 * started under every start method, items failing with a message, a
 * crashing item, bad arguments, and the iterators. */
#define _GNU_SOURCE
#include "mp_test.h"

#include <ctype.h>
#include <fcntl.h>
#include <mproc.h>
#include <signal.h>

/* ---- helpers ------------------------------------------------------------ */

static mp_pool *pool_with(int procs, mp_start_method m)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = procs;
    o.start_method = m;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    CHECK(p != NULL);
    return p;
}

/* The output for input in: its bytes reversed, each + 1. */
static int reverse_fn(const void *in, size_t len, mp_buf *out)
{
    unsigned char *d = len ? mp_buf_alloc(out, len) : NULL;
    if (len && !d)
        return MP_ENOMEM;
    const unsigned char *s = in;
    for (size_t i = 0; i < len; i++)
        d[i] = (unsigned char)(s[len - 1 - i] + 1);
    /* The function sees its own output alone. */
    return mp_buf_len(out) == len ? 0 : 99;
}

/* Input: 8 bytes, an output length and a seed (4 bytes each); output that
 * many bytes of a pattern, appended in pieces. */
static int expand_fn(const void *in, size_t len, mp_buf *out)
{
    uint32_t n, seed;
    if (len != 8)
        return 2;
    memcpy(&n, in, 4);
    memcpy(&seed, (const char *)in + 4, 4);
    unsigned char piece[1000];
    for (uint32_t at = 0; at < n; at += sizeof piece) {
        uint32_t k = n - at < sizeof piece ? n - at : (uint32_t)sizeof piece;
        for (uint32_t i = 0; i < k; i++)
            piece[i] = (unsigned char)(seed + (at + i) * 7u);
        CHECK_OK(mp_buf_append(out, piece, k));
    }
    return 0;
}

static unsigned char *pattern(size_t len, unsigned seed)
{
    unsigned char *b = malloc(len ? len : 1);
    CHECK(b != NULL);
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)(seed * 31u + i * 13u);
    return b;
}

static void check_reversed(const mp_results *r, size_t i, const mp_bytes *in)
{
    size_t len = 99;
    const unsigned char *o = mp_results_item(r, i, &len);
    CHECK_EQ(mp_results_error(r, i), 0);
    CHECK_EQ_U(len, in->len);
    CHECK(in->len == 0 ? o == NULL : o != NULL);
    const unsigned char *s = in->data;
    for (size_t k = 0; k < len; k++) {
        if (o[k] != (unsigned char)(s[in->len - 1 - k] + 1)) {
            MPT_CONTEXT("item %zu byte %zu", i, k);
            CHECK_EQ(o[k], (unsigned char)(s[in->len - 1 - k] + 1));
        }
    }
}

/* ---- sizes ------------------------------------------------------------- */

/* Fails when an item's offset or length is lost (one of many sizes, the
 * 1 MiB one crossing chunk and buffer boundaries), or when a function
 * sees the outputs of the items before it in its mp_buf. */
TEST(items_of_0_bytes_to_1_mib_come_back_byte_for_byte)
{
    static const size_t sizes[] = {0, 1, 7, 8, 9, 63, 64, 65, 4095, 4096, 65537, 1 << 20, 0, 3};
    enum { N = 200 };
    mp_bytes in[N];
    for (size_t i = 0; i < N; i++) {
        size_t len = sizes[i % (sizeof sizes / sizeof *sizes)];
        in[i] = (mp_bytes){pattern(len, (unsigned)i), len};
    }
    mp_pool *p = pool_with(2, MP_START_FORK);
    for (size_t chunksize = 0; chunksize <= 7; chunksize += 7) {
        mp_results *r = NULL;
        CHECK_OK(mp_pool_map_bytes(p, reverse_fn, in, N, chunksize, &r));
        CHECK_EQ_U(mp_results_count(r), N);
        for (size_t i = 0; i < N; i++)
            check_reversed(r, i, &in[i]);
        CHECK(mp_results_message(r, 0) == NULL);
        mp_results_free(r);
    }
    for (size_t i = 0; i < N; i++)
        free((void *)in[i].data);
    mp_pool_free(p);
}

/* Fails when an output's length or bytes are wrong, from nothing to
 * 1 MiB, appended in pieces that make the buffer move. */
TEST(outputs_of_0_bytes_to_1_mib_come_back_byte_for_byte)
{
    static const uint32_t sizes[] = {0, 1, 999, 1000, 1001, 65536, 1 << 20, 5, 0};
    enum { N = 60 };
    uint32_t args[N][2];
    mp_bytes in[N];
    for (uint32_t i = 0; i < N; i++) {
        args[i][0] = sizes[i % (sizeof sizes / sizeof *sizes)];
        args[i][1] = i * 17u;
        in[i] = (mp_bytes){args[i], 8};
    }
    mp_pool *p = pool_with(2, MP_START_FORK);
    mp_results *r = NULL;
    CHECK_OK(mp_pool_map_bytes(p, expand_fn, in, N, 4, &r));
    for (uint32_t i = 0; i < N; i++) {
        size_t len = 0;
        const unsigned char *o = mp_results_item(r, i, &len);
        CHECK_EQ_U(len, args[i][0]);
        for (uint32_t k = 0; k < len; k++) {
            if (o[k] != (unsigned char)(args[i][1] + k * 7u)) {
                MPT_CONTEXT("item %u byte %u", i, k);
                CHECK_EQ(o[k], (unsigned char)(args[i][1] + k * 7u));
            }
        }
    }
    mp_results_free(r);
    mp_pool_free(p);
}

/* ---- fork visibility ------------------------------------------------------ */

/* Upper-cases a string. */
static int upper_fn(const void *in, size_t len, mp_buf *out)
{
    char *d = len ? mp_buf_alloc(out, len) : NULL;
    for (size_t i = 0; i < len; i++)
        d[i] = (char)toupper(((const unsigned char *)in)[i]);
    return 0;
}

/* Strings allocated after the workers started are in no worker's memory:
 * fails when the map passes pointers instead of the bytes (a fork worker
 * reads garbage or crashes; a fresh image has none of it). */
static void check_late_strings(mp_start_method m)
{
    mp_pool *p = pool_with(2, m);
    /* Make sure the workers run before the strings exist. */
    int one = 1;
    mp_bytes warm = {&one, sizeof one};
    mp_results *w = NULL;
    CHECK_OK(mp_pool_map_bytes(p, upper_fn, &warm, 1, 0, &w));
    mp_results_free(w);
    enum { N = 1000 };
    char **s = malloc(N * sizeof *s);
    mp_bytes *in = malloc(N * sizeof *in);
    for (int i = 0; i < N; i++) {
        CHECK(asprintf(&s[i], "item-%d-%.*s", i, i % 50,
                       "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz") > 0);
        in[i] = (mp_bytes){s[i], strlen(s[i])};
    }
    mp_results *r = NULL;
    CHECK_OK(mp_pool_map_bytes(p, upper_fn, in, N, 0, &r));
    for (int i = 0; i < N; i++) {
        size_t len = 0;
        const char *o = mp_results_item(r, (size_t)i, &len);
        CHECK_EQ_U(len, in[i].len);
        for (size_t k = 0; k < len; k++)
            CHECK_EQ(o[k], toupper((unsigned char)s[i][k]));
        free(s[i]);
    }
    mp_results_free(r);
    free(s);
    free(in);
    mp_pool_free(p);
}

TEST(strings_allocated_after_fork_workers_started)
{
    check_late_strings(MP_START_FORK);
}

TEST(strings_allocated_after_forkserver_workers_started)
{
    check_late_strings(MP_START_FORKSERVER);
}

TEST(strings_allocated_after_spawn_workers_started)
{
    check_late_strings(MP_START_SPAWN);
}

/* ---- failures ----------------------------------------------------------------- */

/* "fail:" items fail with mp_task_fail, "item:" with mp_item_fail, "raw:"
 * with the bytes they appended; "crash" kills its worker. */
static int picky_fn(const void *in, size_t len, mp_buf *out)
{
    const char *s = in;
    if (len == 5 && memcmp(s, "crash", 5) == 0)
        raise(SIGSEGV);
    if (len >= 5 && memcmp(s, "fail:", 5) == 0) {
        (void)mp_buf_append(out, "dropped", 7);
        return mp_task_fail(out, "bad item '%.*s'", (int)len, s);
    }
    if (len >= 5 && memcmp(s, "item:", 5) == 0)
        return mp_item_fail("item says %.*s", (int)(len - 5), s + 5);
    if (len == 4 && memcmp(s, "hang", 4) == 0)
        (void)poll(NULL, 0, 30000);
    if (len == 4 && memcmp(s, "app:", 4) == 0) {
        (void)mp_buf_append(out, "junk", 4);
        return mp_item_fail("replaced");
    }
    if (len == 3 && memcmp(s, "big", 3) == 0) {
        char *d = mp_buf_alloc(out, 100000);
        if (d)
            memset(d, 'z', 100000);
        return 3;
    }
    if (len >= 4 && memcmp(s, "raw:", 4) == 0) {
        (void)mp_buf_append(out, s + 4, len - 4);
        return 7;
    }
    return upper_fn(in, len, out);
}

static mp_bytes str(const char *s)
{
    return (mp_bytes){s, strlen(s)};
}

/* Fails when a failing item's message is lost or taken for another's, or
 * when its failure spoils the items around it. */
TEST(failing_items_carry_their_message_and_spare_the_others)
{
    mp_bytes in[] = {str("ok"),      str("fail:x"), str("b"),    str("item:boom"), str(""),
                     str("raw:why"), str("zz"),     str("app:"), str("big")};
    size_t n = sizeof in / sizeof *in;
    mp_pool *p = pool_with(2, MP_START_FORK);
    for (size_t chunksize = 1; chunksize <= n; chunksize += n - 1) {
        mp_results *r = NULL;
        CHECK_ERR(mp_pool_map_bytes(p, picky_fn, in, n, chunksize, &r), MP_ETASK);
        CHECK_EQ(mp_results_error(r, 1), MP_ETASK);
        CHECK_STREQ(mp_results_message(r, 1), "bad item 'fail:x'");
        CHECK(mp_results_item(r, 1, NULL) == NULL);
        CHECK_EQ(mp_results_error(r, 3), MP_ETASK);
        CHECK_STREQ(mp_results_message(r, 3), "item says boom");
        CHECK_EQ(mp_results_error(r, 5), MP_ETASK);
        CHECK_STREQ(mp_results_message(r, 5), "why");
        size_t len = 0;
        CHECK_EQ(mp_results_error(r, 4), 0);
        CHECK(mp_results_item(r, 4, &len) == NULL);
        CHECK_EQ_U(len, 0);
        CHECK_EQ(mp_results_error(r, 6), 0);
        CHECK(memcmp(mp_results_item(r, 6, &len), "ZZ", 2) == 0);
        CHECK_EQ_U(len, 2);
        CHECK(mp_results_message(r, 6) == NULL);
        CHECK(memcmp(mp_results_item(r, 0, NULL), "OK", 2) == 0);
        CHECK(memcmp(mp_results_item(r, 2, NULL), "B", 1) == 0);
        /* mp_item_fail's text replaces what the item appended; a long
         * output as a message is cut at 64 KiB. */
        CHECK_STREQ(mp_results_message(r, 7), "replaced");
        CHECK_EQ_U(strlen(mp_results_message(r, 8)), (64 << 10) - 1);
        CHECK_EQ(mp_results_message(r, 8)[1000], 'z');
        CHECK_ERR(mp_results_error(r, n), MP_EINVAL);
        mp_results_free(r);
    }
    /* The async form: the future reports the first failed item. */
    mp_results *r = NULL;
    mp_future *f = mp_pool_map_bytes_async(p, picky_fn, in, n, 2, &r);
    CHECK(f != NULL && r != NULL);
    CHECK_ERR(mp_future_wait(f, 30.0), 0);
    CHECK_ERR(mp_future_status(f), MP_ETASK);
    CHECK_EQ(mp_future_failed_index(f), 1);
    CHECK_STREQ(mp_future_report(f), "bad item 'fail:x'");
    CHECK(memcmp(mp_results_item(r, 6, NULL), "ZZ", 2) == 0);
    mp_future_free(f);
    mp_results_free(r);
    mp_pool_free(p);
}

/* Fails when a worker's death loses the items of other chunks, or is not
 * reported as MP_EWORKER with a report on the crashing chunk's items. */
TEST(a_crashing_item_fails_its_chunk_with_mp_eworker)
{
    mp_bytes in[] = {str("a"), str("b"), str("crash"), str("d"), str("e"), str("f")};
    mp_pool *p = pool_with(2, MP_START_FORK);
    mp_results *r = NULL;
    CHECK_ERR(mp_pool_map_bytes(p, picky_fn, in, 6, 2, &r), MP_EWORKER);
    CHECK_EQ(mp_results_error(r, 2), MP_EWORKER);
    CHECK_EQ(mp_results_error(r, 3), MP_EWORKER);
    CHECK(mp_results_message(r, 2) != NULL);
    static const char *want[] = {"A", "B", NULL, NULL, "E", "F"};
    for (size_t i = 0; i < 6; i++) {
        if (!want[i])
            continue;
        size_t len = 0;
        CHECK_EQ(mp_results_error(r, i), 0);
        CHECK(memcmp(mp_results_item(r, i, &len), want[i], 1) == 0);
        CHECK_EQ_U(len, 1);
    }
    mp_results_free(r);
    /* The pool goes on with a fresh worker. */
    CHECK_OK(mp_pool_map_bytes(p, picky_fn, in, 2, 0, &r));
    mp_results_free(r);
    mp_pool_free(p);
}

/* Fails when a chunk past opts.task_timeout is not stopped (the map
 * hangs), or spoils the other chunks. */
TEST(a_chunk_past_the_time_limit_fails_with_mp_etimelimit)
{
    mp_bytes in[] = {str("a"), str("hang"), str("c")};
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.start_method = MP_START_FORK;
    o.task_timeout = 0.3;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    mp_results *r = NULL;
    CHECK_ERR(mp_pool_map_bytes(p, picky_fn, in, 3, 1, &r), MP_ETIMELIMIT);
    CHECK_ERR(mp_results_error(r, 1), MP_ETIMELIMIT);
    CHECK(mp_results_message(r, 1) != NULL);
    CHECK_OK(mp_results_error(r, 0));
    CHECK_OK(mp_results_error(r, 2));
    CHECK(memcmp(mp_results_item(r, 2, NULL), "C", 1) == 0);
    mp_results_free(r);
    mp_pool_free(p);
}

/* Fails when a bad argument is accepted (and read, or crashes) instead of
 * refused with MP_EINVAL before anything runs. */
TEST(bad_arguments_get_mp_einval)
{
    mp_pool *p = pool_with(1, MP_START_FORK);
    mp_bytes good[2] = {str("a"), str("b")};
    mp_bytes nullp[2] = {str("a"), {NULL, 3}};
    mp_bytes huge[2] = {str("a"), {"x", SIZE_MAX - 1}};
    mp_bytes big[2] = {{"x", (size_t)1 << 62}, {"y", (size_t)1 << 62}};
    mp_results *r = (mp_results *)1;
    mp_imap_bytes *it = (mp_imap_bytes *)1;
    CHECK_ERR(mp_pool_map_bytes(p, upper_fn, nullp, 2, 0, &r), MP_EINVAL);
    CHECK(r == NULL);
    CHECK_ERR(mp_pool_map_bytes(p, upper_fn, good, 0, 0, &r), MP_EINVAL);
    CHECK_ERR(mp_pool_map_bytes(p, upper_fn, huge, 2, 0, &r), MP_EINVAL);
    CHECK_ERR(mp_pool_map_bytes(p, upper_fn, big, 2, 0, &r), MP_EINVAL);
    CHECK_ERR(mp_pool_map_bytes(p, upper_fn, NULL, 2, 0, &r), MP_EINVAL);
    CHECK_ERR(mp_pool_map_bytes(p, NULL, good, 2, 0, &r), MP_EINVAL);
    CHECK_ERR(mp_pool_map_bytes(NULL, upper_fn, good, 2, 0, &r), MP_EINVAL);
    CHECK_ERR(mp_pool_map_bytes(p, upper_fn, good, 2, 0, NULL), MP_EINVAL);
    CHECK_ERR(mp_pool_imap_bytes(p, upper_fn, nullp, 2, 0, &it), MP_EINVAL);
    CHECK(it == NULL);
    CHECK_ERR(mp_pool_imap_bytes_unordered(p, upper_fn, good, 0, 0, &it), MP_EINVAL);
    CHECK_ERR(mp_pool_imap_bytes(p, upper_fn, good, 2, 0, NULL), MP_EINVAL);
    mp_future *f = mp_pool_map_bytes_async(p, upper_fn, huge, 2, 0, &r);
    CHECK(f != NULL && r == NULL);
    CHECK_ERR(mp_future_status(f), MP_EINVAL);
    mp_future_free(f);
    f = mp_pool_map_bytes_async(p, upper_fn, good, 2, 0, NULL);
    CHECK_ERR(mp_future_status(f), MP_EINVAL);
    mp_future_free(f);
    CHECK_ERR(mp_imap_bytes_next(NULL, NULL, NULL, NULL, 1.0), MP_EINVAL);
    CHECK_EQ_U(mp_results_count(NULL), 0);
    CHECK(mp_results_item(NULL, 0, NULL) == NULL);
    CHECK_ERR(mp_results_error(NULL, 0), MP_EINVAL);
    mp_results_free(NULL);
    mp_imap_bytes_free(NULL);
    /* The pool still works. */
    CHECK_OK(mp_pool_map_bytes(p, upper_fn, good, 2, 0, &r));
    mp_results_free(r);
    mp_pool_free(p);
}

/* ---- iterators ------------------------------------------------------------------- */

/* Fails when an item is handed out twice or never, out of order for the
 * ordered iterator, with the wrong bytes, or when failures stop it. */
static void check_imap(bool ordered)
{
    enum { N = 300 };
    mp_bytes in[N];
    char *s[N];
    for (int i = 0; i < N; i++) {
        CHECK(asprintf(&s[i], i % 37 == 5 ? "fail:%d" : "w%dx", i) > 0);
        in[i] = str(s[i]);
    }
    mp_pool *p = pool_with(2, MP_START_FORK);
    mp_imap_bytes *it = NULL;
    CHECK_OK(ordered ? mp_pool_imap_bytes(p, picky_fn, in, N, 7, &it)
                     : mp_pool_imap_bytes_unordered(p, picky_fn, in, N, 7, &it));
    bool seen[N] = {false};
    for (int k = 0; k < N; k++) {
        const void *data = NULL;
        size_t len = 0, idx = SIZE_MAX;
        int rc = mp_imap_bytes_next(it, &data, &len, &idx, 30.0);
        CHECK_LE_U(idx, N - 1);
        CHECK(!seen[idx]);
        seen[idx] = true;
        if (ordered)
            CHECK_EQ_U(idx, (size_t)k);
        if (idx % 37 == 5) {
            CHECK_ERR(rc, MP_ETASK);
            CHECK_CONTAINS((const char *)data, "bad item");
            continue;
        }
        CHECK_OK(rc);
        CHECK_EQ_U(len, in[idx].len);
        for (size_t b = 0; b < len; b++)
            CHECK_EQ(((const char *)data)[b], toupper((unsigned char)s[idx][b]));
    }
    CHECK_ERR(mp_imap_bytes_next(it, NULL, NULL, NULL, 1.0), MP_EOF);
    mp_imap_bytes_free(it);
    for (int i = 0; i < N; i++)
        free(s[i]);
    mp_pool_free(p);
}

TEST(imap_bytes_hands_out_every_item_in_order)
{
    check_imap(true);
}

TEST(imap_bytes_unordered_hands_out_every_item_once)
{
    check_imap(false);
}

/* Fails when freeing the results or the iterator before the map ends
 * leaks or touches freed memory (ASan), or when the pool's free waits on
 * them. */
TEST(results_and_iterators_freed_early)
{
    mp_bytes in[64];
    for (int i = 0; i < 64; i++)
        in[i] = str("some words");
    mp_pool *p = pool_with(2, MP_START_FORK);
    mp_results *r = NULL;
    mp_future *f = mp_pool_map_bytes_async(p, upper_fn, in, 64, 1, &r);
    mp_results_free(r);
    mp_imap_bytes *it = NULL;
    CHECK_OK(mp_pool_imap_bytes_unordered(p, upper_fn, in, 64, 1, &it));
    mp_imap_bytes_free(it);
    CHECK_OK(mp_future_wait(f, 30.0));
    CHECK_OK(mp_future_status(f));
    mp_future_free(f);
    mp_pool_free(p);
}

/* Fails when a map on a closed pool is run, or reports nothing. */
TEST(map_bytes_on_a_closed_pool_fails_every_item_with_mp_eclosed)
{
    mp_bytes in[3] = {str("a"), str("b"), str("c")};
    mp_pool *p = pool_with(1, MP_START_FORK);
    CHECK_OK(mp_pool_close(p));
    mp_results *r = NULL;
    CHECK_ERR(mp_pool_map_bytes(p, upper_fn, in, 3, 1, &r), MP_ECLOSED);
    for (size_t i = 0; i < 3; i++)
        CHECK_ERR(mp_results_error(r, i), MP_ECLOSED);
    mp_results_free(r);
    CHECK_OK(mp_pool_join(p, 30.0));
    mp_pool_free(p);
}

static int gate_fd = -1;

/* Waits (at most 30 s) until the test writes to the gate. */
static int gated_fn(const void *in, size_t len, mp_buf *out)
{
    struct pollfd pf = {.fd = gate_fd, .events = POLLIN};
    (void)poll(&pf, 1, 30000);
    return upper_fn(in, len, out);
}

/* Fails when a terminate leaves the map's future unfinished, or its
 * items without an outcome (a hang, or MP_ESTATE). */
TEST(terminate_cancels_a_running_map_bytes)
{
    int fds[2];
    CHECK_OK(pipe2(fds, O_CLOEXEC) == 0 ? 0 : -errno);
    gate_fd = fds[0];
    mp_bytes in[40];
    for (int i = 0; i < 40; i++)
        in[i] = str("x");
    mp_pool *p = pool_with(2, MP_START_FORK);
    mp_results *r = NULL;
    mp_future *f = mp_pool_map_bytes_async(p, gated_fn, in, 40, 1, &r);
    CHECK(f != NULL && r != NULL);
    CHECK_OK(mp_pool_terminate(p));
    CHECK_OK(mp_future_wait(f, 30.0));
    int st = mp_future_status(f);
    CHECK(st == MP_ECANCELED || st == MP_EWORKER);
    for (size_t i = 0; i < 40; i++) {
        int e = mp_results_error(r, i);
        CHECK(e == MP_ECANCELED || e == MP_EWORKER);
    }
    mp_future_free(f);
    mp_results_free(r);
    mp_pool_free(p);
    close(fds[0]);
    close(fds[1]);
}

MPT_MAIN()
