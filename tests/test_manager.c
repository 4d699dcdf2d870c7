/*
 * test_manager.c - the manager's objects and operations, each through the
 * three paths a call can take: the starter's fast path (the store mapped),
 * a remote client over the Unix socket, and one over TCP (encrypted).
 * Multi-process cases fork clients that use their parent's handles (and so
 * connect anew as clients of their own).
 */
#include "mp_test.h"
#include "mpt_helpers.h"
#include "mpt_manager.h"

#include "comm_test.h" /* after mp_test.h */

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* Runs body(client) against a fresh server for one kind of client. */
#define FOR_KINDS(fn)          \
    TEST(fn##_local)           \
    {                          \
        run_kind(fn, K_LOCAL); \
    }                          \
    TEST(fn##_unix)            \
    {                          \
        run_kind(fn, K_UNIX);  \
    }                          \
    TEST(fn##_tcp)             \
    {                          \
        run_kind(fn, K_TCP);   \
    }

static void run_kind(void (*fn)(mp_manager *), int kind)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, kind);
    fn(f.client);
    fx_stop(&f);
}

static void get_is(mp_mdict *d, const char *key, const char *want)
{
    char buf[256];
    size_t len = 0;
    CHECK_OK(mp_mdict_get(d, key, buf, sizeof buf, &len));
    CHECK_EQ(len, strlen(want));
    buf[len] = '\0';
    CHECK_STREQ(buf, want);
}

/* The value of key in items, or NULL. */
static const char *item_of(const mp_mitems *it, const char *key)
{
    for (size_t i = 0; i < it->n; i++) {
        if (strcmp(it->item[i].key, key) == 0)
            return it->item[i].value ? it->item[i].value : "";
    }
    return NULL;
}

/* ---- dict ----------------------------------------------------------------------- */

static void dict_basic(mp_mdict *d)
{
    char buf[16];
    size_t len = 0;
    CHECK_EQ(mp_mdict_len(d), 0);
    CHECK_OK(mp_mdict_set(d, "a", "1", 1));
    CHECK_OK(mp_mdict_set(d, "b", "22", 2));
    CHECK_EQ(mp_mdict_len(d), 2);
    get_is(d, "b", "22");
    CHECK_ERR(mp_mdict_get(d, "zz", buf, sizeof buf, &len), MP_ENOKEY);
    CHECK_ERR(mp_mdict_get(d, "b", buf, 1, &len), MP_EMSGSIZE);
    CHECK_EQ(len, 2); /* the size needed */
    CHECK_EQ(mp_mdict_contains(d, "a"), 1);
    CHECK_EQ(mp_mdict_contains(d, "zz"), 0);
    CHECK_OK(mp_mdict_set(d, "a", "x", 1)); /* overwritten in place */
    get_is(d, "a", "x");
    char big[1000];
    memset(big, 'q', sizeof big);
    CHECK_OK(mp_mdict_set(d, "a", big, sizeof big)); /* a new entry */
    void *v = NULL;
    CHECK_OK(mp_mdict_get_alloc(d, "a", &v, &len));
    CHECK_EQ(len, sizeof big);
    CHECK(memcmp(v, big, len) == 0);
    CHECK_EQ(((char *)v)[len], '\0');
    free(v);
    CHECK_OK(mp_mdict_set(d, "e", NULL, 0)); /* an empty value */
    get_is(d, "e", "");
    CHECK_OK(mp_mdict_pop(d, "b", buf, sizeof buf, &len));
    CHECK_EQ(len, 2);
    CHECK_EQ(mp_mdict_contains(d, "b"), 0);
    CHECK_ERR(mp_mdict_pop(d, "b", buf, sizeof buf, &len), MP_ENOKEY);
    CHECK_OK(mp_mdict_set(d, "p", "long", 4));
    CHECK_ERR(mp_mdict_pop(d, "p", buf, 2, &len), MP_EMSGSIZE);
    CHECK_EQ(mp_mdict_contains(d, "p"), 1); /* a pop that does not fit removes nothing */
    CHECK_OK(mp_mdict_del(d, "a"));
    CHECK_ERR(mp_mdict_del(d, "a"), MP_ENOKEY);
    CHECK_EQ(mp_mdict_setdefault(d, "s", "first", 5, buf, sizeof buf, &len), 1);
    CHECK_EQ(len, 5);
    CHECK_EQ(mp_mdict_setdefault(d, "s", "second", 6, buf, sizeof buf, &len), 0);
    CHECK_EQ(len, 5);
    CHECK(memcmp(buf, "first", 5) == 0);
    CHECK_EQ(mp_mdict_setdefault(d, "s2", "x", 1, NULL, 0, NULL), 1);
}

static void dict_bulk(mp_mdict *d)
{
    CHECK_OK(mp_mdict_clear(d));
    mp_mitem items[3] = {{"k1", "v1", 2}, {"k2", "v22", 3}, {"s", "S", 1}};
    CHECK_OK(mp_mdict_update(d, items, 3));
    CHECK_EQ(mp_mdict_len(d), 3);
    mp_mitems *it = NULL;
    CHECK_EQ(mp_mdict_items(d, &it), 3);
    CHECK_STREQ(item_of(it, "k1"), "v1");
    CHECK_STREQ(item_of(it, "k2"), "v22");
    CHECK_STREQ(item_of(it, "s"), "S");
    mp_mitems_free(it);
    CHECK_EQ(mp_mdict_keys(d, &it), 3);
    CHECK(item_of(it, "k2") != NULL);
    CHECK(it->item[0].value == NULL);
    mp_mitems_free(it);
    /* Enough keys to grow the table several times, then half removed. */
    char key[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        CHECK_OK(mp_mdict_set_i64(d, key, i));
    }
    for (int i = 0; i < 3000; i += 2) {
        snprintf(key, sizeof key, "key-%d", i);
        CHECK_OK(mp_mdict_del(d, key));
    }
    CHECK_EQ(mp_mdict_len(d), 3 + 1500);
    for (int i = 0; i < 3000; i++) {
        int64_t x = -1;
        snprintf(key, sizeof key, "key-%d", i);
        if (i % 2) {
            CHECK_OK(mp_mdict_get_i64(d, key, &x));
            CHECK_EQ(x, i);
        } else {
            CHECK_ERR(mp_mdict_get_i64(d, key, &x), MP_ENOKEY);
        }
    }
    CHECK_OK(mp_mdict_clear(d));
    CHECK_EQ(mp_mdict_len(d), 0);
    CHECK_EQ(mp_mdict_keys(d, &it), 0);
    mp_mitems_free(it);
}

static void dict_counters(mp_mdict *d)
{
    int64_t r = 0;
    CHECK_OK(mp_mdict_incr(d, "n", 5, &r));
    CHECK_EQ(r, 5);
    CHECK_OK(mp_mdict_incr(d, "n", -7, &r));
    CHECK_EQ(r, -2);
    CHECK_OK(mp_mdict_get_i64(d, "n", &r));
    CHECK_EQ(r, -2);
    CHECK_OK(mp_mdict_set(d, "t", "ab", 2));
    CHECK_ERR(mp_mdict_incr(d, "t", 1, &r), MP_EINVAL);
    CHECK_ERR(mp_mdict_get_i64(d, "t", &r), MP_EINVAL);
    CHECK_OK(mp_mdict_set_i64(d, "n", INT64_MAX));
    CHECK_ERR(mp_mdict_incr(d, "n", 1, &r), MP_EOVERFLOW);
    CHECK_EQ(mp_mdict_cas(d, "c", NULL, 0, "A", 1), 1);
    CHECK_EQ(mp_mdict_cas(d, "c", NULL, 0, "Z", 1), 0);
    CHECK_EQ(mp_mdict_cas(d, "c", "B", 1, "Z", 1), 0);
    CHECK_EQ(mp_mdict_cas(d, "c", "A", 1, "BB", 2), 1);
    get_is(d, "c", "BB");
}

static void dict_txn(mp_mdict *d)
{
    CHECK_OK(mp_mdict_set_i64(d, "acct_a", 100));
    CHECK_OK(mp_mdict_set(d, "two", "xy", 2));
    uint8_t a100[8] = {100, 0, 0, 0, 0, 0, 0, 0}, buf[8];
    mp_mdict_op ops[4] = {
        {.kind = MP_MTXN_CHECK, .key = "acct_a", .value = a100, .len = 8},
        {.kind = MP_MTXN_INCR, .key = "acct_a", .delta = -10},
        {.kind = MP_MTXN_INCR, .key = "acct_b", .delta = 10},
        {.kind = MP_MTXN_GET, .key = "acct_b", .buf = buf, .cap = sizeof buf},
    };
    CHECK_EQ(mp_mdict_txn(d, ops, 4), 1);
    CHECK_EQ(ops[1].result, 90);
    CHECK_EQ(ops[2].result, 10);
    CHECK_EQ(ops[3].status, 0);
    CHECK_EQ(ops[3].out_len, 8);
    CHECK_EQ(buf[0], 10);
    /* The same again: the check fails now, and nothing changes. */
    CHECK_EQ(mp_mdict_txn(d, ops, 4), 0);
    CHECK_EQ(ops[0].status, MP_ECANCELED);
    int64_t x;
    CHECK_OK(mp_mdict_get_i64(d, "acct_a", &x));
    CHECK_EQ(x, 90);
    CHECK_OK(mp_mdict_get_i64(d, "acct_b", &x));
    CHECK_EQ(x, 10);
    /* A failing operation undoes the ones before it. */
    mp_mdict_op bad[3] = {
        {.kind = MP_MTXN_SET, .key = "new", .value = "v", .len = 1},
        {.kind = MP_MTXN_DEL, .key = "acct_a"},
        {.kind = MP_MTXN_INCR, .key = "two", .delta = 1},
    };
    CHECK_ERR(mp_mdict_txn(d, bad, 3), MP_EINVAL);
    CHECK_EQ(bad[2].status, MP_EINVAL);
    CHECK_EQ(mp_mdict_contains(d, "new"), 0);
    CHECK_EQ(mp_mdict_contains(d, "acct_a"), 1);
    /* A check that a key is absent, a delete of an absent key. */
    mp_mdict_op ab[2] = {{.kind = MP_MTXN_CHECK, .key = "ghost"},
                         {.kind = MP_MTXN_DEL, .key = "ghost"}};
    CHECK_EQ(mp_mdict_txn(d, ab, 2), 1);
    CHECK_EQ(ab[1].status, MP_ENOKEY);
    mp_mdict_op inval = {.kind = 99, .key = "k"};
    CHECK_ERR(mp_mdict_txn(d, &inval, 1), MP_EINVAL);
    CHECK_ERR(mp_mdict_txn(d, ops, MP_MANAGER_MAX_TXN + 1), MP_EINVAL);
    CHECK_ERR(mp_mdict_txn(d, ops, 0), MP_EINVAL);
}

static void dict_bad_input(mp_mdict *d)
{
    static char longkey[MP_MANAGER_MAX_KEY + 2];
    memset(longkey, 'k', MP_MANAGER_MAX_KEY + 1);
    CHECK_ERR(mp_mdict_set(d, longkey, "x", 1), MP_EINVAL);
    longkey[MP_MANAGER_MAX_KEY] = '\0';
    CHECK_OK(mp_mdict_set(d, longkey, "x", 1)); /* the longest key */
    get_is(d, longkey, "x");
    CHECK_ERR(mp_mdict_set(d, NULL, "x", 1), MP_EINVAL);
    CHECK_ERR(mp_mdict_set(d, "", "x", 1), MP_EINVAL);
    CHECK_ERR(mp_mdict_set(d, "k", NULL, 1), MP_EINVAL);
    CHECK_ERR(mp_mdict_set(d, "k", "x", MP_MANAGER_MAX_VALUE + 1), MP_EMSGSIZE);
    CHECK_ERR(mp_mdict_set(NULL, "k", "x", 1), MP_EINVAL);
    CHECK_ERR(mp_mdict_get(d, "k", NULL, 4, NULL), MP_EINVAL);
    CHECK_ERR(mp_mdict_update(d, NULL, 1), MP_EINVAL);
    CHECK_ERR(mp_mdict_update(d, NULL, MP_MANAGER_MAX_BATCH + 1), MP_EINVAL);
    CHECK_ERR(mp_mdict_len(NULL), MP_EINVAL);
}

static void dict_ops(mp_manager *c)
{
    mp_mdict *d = NULL;
    CHECK_OK(mp_mdict_new(c, "d", &d));
    dict_basic(d);
    dict_bulk(d);
    dict_counters(d);
    dict_txn(d);
    dict_bad_input(d);
    mp_mdict_free(d);
}
FOR_KINDS(dict_ops)

TEST(dict_ops_unix_encrypted)
{
    run_kind(dict_ops, K_UNIX_ENC);
}

/* A big value crosses the fast path and the wire whole. */
static void dict_large_value(mp_manager *c)
{
    mp_mdict *d = NULL;
    CHECK_OK(mp_mdict_new(c, "big", &d));
    size_t n = MP_MANAGER_MAX_VALUE;
    uint8_t *v = malloc(n);
    CHECK(v != NULL);
    for (size_t i = 0; i < n; i++)
        v[i] = (uint8_t)(i * 7);
    CHECK_OK(mp_mdict_set(d, "v", v, n));
    void *back = NULL;
    size_t len = 0;
    CHECK_OK(mp_mdict_get_alloc(d, "v", &back, &len));
    CHECK_EQ(len, n);
    CHECK(memcmp(back, v, n) == 0);
    free(back);
    free(v);
    mp_mdict_free(d);
}
FOR_KINDS(dict_large_value)

/* ---- list ---------------------------------------------------------------------------- */

static void list_is(mp_mlist *l, const char *const *want, size_t n)
{
    mp_mitems *it = NULL;
    CHECK_EQ(mp_mlist_slice(l, 0, INT64_MAX, &it), (int)n);
    for (size_t i = 0; i < n; i++) {
        CHECK(it->item[i].key == NULL);
        CHECK_STREQ(it->item[i].value, want[i]);
    }
    mp_mitems_free(it);
}

static void list_ops(mp_manager *c)
{
    mp_mlist *l = NULL;
    char buf[16];
    size_t len;
    CHECK_OK(mp_mlist_new(c, "l", &l));
    CHECK_EQ(mp_mlist_append(l, "a", 1), 1);
    CHECK_EQ(mp_mlist_append(l, "b", 1), 2);
    mp_mitem more[3] = {{NULL, "c", 1}, {NULL, "d", 1}, {NULL, "e", 1}};
    CHECK_EQ(mp_mlist_extend(l, more, 3), 5);
    CHECK_OK(mp_mlist_get(l, 0, buf, sizeof buf, &len));
    CHECK_EQ(buf[0], 'a');
    CHECK_OK(mp_mlist_get(l, -1, buf, sizeof buf, &len));
    CHECK_EQ(buf[0], 'e');
    CHECK_ERR(mp_mlist_get(l, 5, buf, sizeof buf, &len), MP_ERANGE);
    CHECK_ERR(mp_mlist_get(l, -6, buf, sizeof buf, &len), MP_ERANGE);
    CHECK_OK(mp_mlist_set(l, 1, "B", 1));
    CHECK_OK(mp_mlist_insert(l, 0, "z", 1));
    CHECK_OK(mp_mlist_insert(l, 100, "end", 3));
    CHECK_OK(mp_mlist_insert(l, -100, "start", 5));
    const char *w1[] = {"start", "z", "a", "B", "c", "d", "e", "end"};
    list_is(l, w1, 8);
    CHECK_OK(mp_mlist_pop(l, -1, buf, sizeof buf, &len));
    CHECK_EQ(len, 3);
    CHECK_OK(mp_mlist_pop(l, 0, buf, sizeof buf, &len));
    CHECK_EQ(len, 5);
    CHECK_OK(mp_mlist_pop(l, 2, buf, sizeof buf, &len));
    CHECK_EQ(buf[0], 'B');
    CHECK_OK(mp_mlist_remove(l, "c", 1));
    CHECK_ERR(mp_mlist_remove(l, "nope", 4), MP_ENOKEY);
    const char *w2[] = {"z", "a", "d", "e"};
    list_is(l, w2, 4);
    mp_mitems *it = NULL;
    CHECK_EQ(mp_mlist_slice(l, -2, 4, &it), 2);
    CHECK_STREQ(it->item[0].value, "d");
    mp_mitems_free(it);
    CHECK_EQ(mp_mlist_slice(l, 3, 1, &it), 0);
    mp_mitems_free(it);
    void *v = NULL;
    CHECK_OK(mp_mlist_get_alloc(l, 1, &v, &len));
    CHECK_STREQ(v, "a");
    free(v);
    CHECK_OK(mp_mlist_clear(l));
    CHECK_EQ(mp_mlist_len(l), 0);
    CHECK_ERR(mp_mlist_pop(l, -1, buf, sizeof buf, &len), MP_ERANGE);
    /* A ring that wraps: take from the front while adding at the back. */
    for (int i = 0; i < 1000; i++) {
        CHECK_EQ(mp_mlist_append(l, &i, sizeof i), i % 2 ? (i + 1) / 2 + 1 : i / 2 + 1);
        if (i % 2) {
            int x = -1;
            CHECK_OK(mp_mlist_pop(l, 0, &x, sizeof x, &len));
            CHECK_EQ(x, i / 2);
        }
    }
    CHECK_EQ(mp_mlist_len(l), 500);
    int x;
    CHECK_OK(mp_mlist_get(l, 0, &x, sizeof x, &len));
    CHECK_EQ(x, 500);
    CHECK_ERR(mp_mlist_extend(l, NULL, 1), MP_EINVAL);
    mp_mlist_free(l);
}
FOR_KINDS(list_ops)

/* ---- Namespace, Value, Array, names --------------------------------------------------- */

static void namespace_ops(mp_manager *c)
{
    mp_mnamespace *ns = NULL;
    char buf[16];
    size_t len;
    CHECK_OK(mp_mnamespace_new(c, "ns", &ns));
    CHECK_OK(mp_mnamespace_set(ns, "x", "10", 2));
    CHECK_OK(mp_mnamespace_set(ns, "y", "hello", 5));
    CHECK_OK(mp_mnamespace_get(ns, "y", buf, sizeof buf, &len));
    CHECK_EQ(len, 5);
    CHECK_OK(mp_mnamespace_del(ns, "x"));
    CHECK_ERR(mp_mnamespace_get(ns, "x", buf, sizeof buf, &len), MP_ENOKEY);
    mp_mitems *it = NULL;
    CHECK_EQ(mp_mnamespace_items(ns, &it), 1);
    CHECK_STREQ(item_of(it, "y"), "hello");
    mp_mitems_free(it);
    mp_mdict *d = NULL;
    CHECK_ERR(mp_mdict_new(c, "ns", &d), MP_ETYPE);
    CHECK(d == NULL);
    CHECK_EQ(mp_manager_type(c, "ns"), MP_MNAMESPACE);
    mp_mnamespace_free(ns);
}
FOR_KINDS(namespace_ops)

static void value_ops(mp_manager *c)
{
    mp_mvalue *v = NULL;
    int64_t x = -1, old = -1;
    double f = -1;
    CHECK_OK(mp_mvalue_new(c, "vi", MP_TYPE_i, &v));
    CHECK_OK(mp_mvalue_get_i64(v, &x));
    CHECK_EQ(x, 0);
    CHECK_OK(mp_mvalue_set_i64(v, 7));
    CHECK_OK(mp_mvalue_fetch_add(v, 3, &old));
    CHECK_EQ(old, 7);
    CHECK_OK(mp_mvalue_get_i64(v, &x));
    CHECK_EQ(x, 10);
    CHECK_ERR(mp_mvalue_set_i64(v, (int64_t)INT32_MAX + 1), MP_ERANGE);
    CHECK_OK(mp_mvalue_set_i64(v, INT32_MAX));
    CHECK_ERR(mp_mvalue_fetch_add(v, 1, NULL), MP_ERANGE);
    CHECK_ERR(mp_mvalue_get_double(v, &f), MP_EINVAL);
    CHECK_ERR(mp_mvalue_set_double(v, 1.0), MP_EINVAL);
    mp_mvalue_free(v);
    CHECK_OK(mp_mvalue_new(c, "vd", MP_TYPE_d, &v));
    CHECK_OK(mp_mvalue_set_double(v, 2.5));
    CHECK_OK(mp_mvalue_get_double(v, &f));
    CHECK_DBL_NEAR(f, 2.5, 0);
    CHECK_ERR(mp_mvalue_set_i64(v, 1), MP_EINVAL);
    CHECK_ERR(mp_mvalue_fetch_add(v, 1, NULL), MP_EINVAL);
    mp_mvalue_free(v);
    CHECK_OK(mp_mvalue_new(c, "vf", MP_TYPE_f, &v));
    CHECK_ERR(mp_mvalue_set_double(v, 1e39), MP_ERANGE);
    CHECK_OK(mp_mvalue_set_double(v, 0.1));
    CHECK_OK(mp_mvalue_get_double(v, &f));
    CHECK_DBL_NEAR(f, (double)0.1f, 0);
    mp_mvalue_free(v);
    CHECK_OK(mp_mvalue_new(c, "vB", MP_TYPE_B, &v));
    CHECK_ERR(mp_mvalue_set_i64(v, -1), MP_ERANGE);
    CHECK_OK(mp_mvalue_set_i64(v, 255));
    mp_mvalue_free(v);
    CHECK_ERR(mp_mvalue_new(c, "bad", (mp_type)99, &v), MP_EINVAL);
}
FOR_KINDS(value_ops)

static void array_ops(mp_manager *c)
{
    mp_marray *a = NULL;
    double f = -1, d[10], w[3] = {1.25, -2.5, 8};
    CHECK_OK(mp_marray_new(c, "ad", MP_TYPE_d, 10, &a));
    CHECK_EQ(mp_marray_len(a), 10);
    CHECK_OK(mp_marray_set_double(a, 3, 1.5));
    CHECK_OK(mp_marray_get_double(a, 3, &f));
    CHECK_DBL_NEAR(f, 1.5, 0);
    CHECK_OK(mp_marray_write_double(a, 5, 3, w));
    CHECK_OK(mp_marray_read_double(a, 0, 10, d));
    CHECK_DBL_NEAR(d[0], 0, 0);
    CHECK_DBL_NEAR(d[3], 1.5, 0);
    CHECK_DBL_NEAR(d[6], -2.5, 0);
    CHECK_ERR(mp_marray_get_double(a, 10, &f), MP_ERANGE);
    CHECK_ERR(mp_marray_read_double(a, 8, 5, d), MP_ERANGE);
    CHECK_ERR(mp_marray_set_i64(a, 0, 1), MP_EINVAL);
    mp_marray_free(a);
    /* Asked again under the same name: the array that exists. */
    CHECK_OK(mp_marray_new(c, "ad", MP_TYPE_d, 99, &a));
    CHECK_EQ(mp_marray_len(a), 10);
    mp_marray_free(a);
    /* More elements than one request moves. */
    size_t n = 20000;
    int64_t *in = malloc(n * sizeof *in), *out = calloc(n, sizeof *out);
    CHECK(in && out);
    for (size_t i = 0; i < n; i++)
        in[i] = (int64_t)i * 3 - 7;
    CHECK_OK(mp_marray_new(c, "aq", MP_TYPE_q, n, &a));
    CHECK_OK(mp_marray_write_i64(a, 0, n, in));
    CHECK_OK(mp_marray_read_i64(a, 0, n, out));
    CHECK(memcmp(in, out, n * sizeof *in) == 0);
    int64_t x;
    CHECK_OK(mp_marray_get_i64(a, n - 1, &x));
    CHECK_EQ(x, in[n - 1]);
    free(in);
    free(out);
    mp_marray_free(a);
    CHECK_OK(mp_marray_new(c, "ab", MP_TYPE_b, 4, &a));
    int64_t bad[2] = {1, 300};
    CHECK_ERR(mp_marray_write_i64(a, 0, 2, bad), MP_ERANGE);
    CHECK_OK(mp_marray_get_i64(a, 0, &x));
    CHECK_EQ(x, 0); /* nothing of a refused write happened */
    mp_marray_free(a);
    CHECK_ERR(mp_marray_new(c, "a0", MP_TYPE_i, 0, &a), MP_EINVAL);
}
FOR_KINDS(array_ops)

static void names(mp_manager *c)
{
    mp_mdict *a = NULL, *b = NULL;
    mp_mlist *l = NULL;
    char name[MP_MANAGER_MAX_NAME + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    CHECK_ERR(mp_mdict_new(c, name, &a), MP_EINVAL);
    name[MP_MANAGER_MAX_NAME] = '\0';
    CHECK_OK(mp_mdict_new(c, name, &a)); /* the longest name */
    mp_mdict_free(a);
    CHECK_ERR(mp_mdict_new(c, "#1", &a), MP_EINVAL);
    CHECK_ERR(mp_mdict_new(c, "", &a), MP_EINVAL);
    CHECK_ERR(mp_mdict_new(NULL, "x", &a), MP_EINVAL);
    CHECK_ERR(mp_mdict_new(c, "x", NULL), MP_EINVAL);
    /* Anonymous objects are distinct. */
    CHECK_OK(mp_mdict_new(c, NULL, &a));
    CHECK_OK(mp_mdict_new(c, NULL, &b));
    CHECK_OK(mp_mdict_set(a, "k", "a", 1));
    CHECK_EQ(mp_mdict_contains(b, "k"), 0);
    mp_mdict_free(a);
    mp_mdict_free(b);
    /* The same name: the same object; another type: MP_ETYPE. */
    CHECK_OK(mp_mdict_new(c, "shared", &a));
    CHECK_OK(mp_mdict_new(c, "shared", &b));
    CHECK_OK(mp_mdict_set(a, "k", "v", 1));
    CHECK_EQ(mp_mdict_contains(b, "k"), 1);
    CHECK_ERR(mp_mlist_new(c, "shared", &l), MP_ETYPE);
    CHECK_EQ(mp_manager_type(c, "shared"), MP_MDICT);
    CHECK_ERR(mp_manager_type(c, "nothing"), MP_ENOOBJ);
    /* Removed: handles say so; the name can take another type. */
    CHECK_OK(mp_manager_remove(c, "shared"));
    CHECK_ERR(mp_mdict_set(a, "k", "v", 1), MP_ENOOBJ);
    CHECK_ERR(mp_mdict_len(b), MP_ENOOBJ);
    CHECK_ERR(mp_manager_remove(c, "shared"), MP_ENOOBJ);
    CHECK_OK(mp_mlist_new(c, "shared", &l));
    CHECK_ERR(mp_mdict_len(a), MP_ENOOBJ); /* the slot's new object is not a's */
    mp_mdict_free(a);
    mp_mdict_free(b);
    mp_mlist_free(l);
}
FOR_KINDS(names)

static int wait_removed(void *arg)
{
    return mp_mevent_wait(arg, 30) == MP_ENOOBJ ? 0 : 1;
}

/* Removing an object ends the waits on it. */
static void remove_wakes_waiters(mp_manager *c)
{
    mp_mevent *e;
    CHECK_OK(mp_mevent_new(c, "doomed", &e));
    pid_t pid = fork_child(wait_removed, e);
    /* The waiter may not have begun: either way it must see MP_ENOOBJ. */
    CHECK_OK(mp_manager_remove(c, "doomed"));
    reap_ok(pid);
    CHECK_ERR(mp_mevent_set(e), MP_ENOOBJ);
    mp_mevent_free(e);
}
FOR_KINDS(remove_wakes_waiters)

/* The object limit, and removal giving its slots back. */
TEST(object_limit)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_LOCAL);
    char name[32];
    mp_mevent *e = NULL;
    int made = 0;
    for (int i = 0; i < MP_MANAGER_MAX_OBJECTS + 1; i++) {
        snprintf(name, sizeof name, "e%d", i);
        int rc = mp_mevent_new(f.client, name, &e);
        if (rc == MP_ENOSPC)
            break;
        CHECK_OK(rc);
        mp_mevent_free(e);
        made++;
    }
    CHECK_EQ(made, MP_MANAGER_MAX_OBJECTS);
    CHECK_OK(mp_manager_remove(f.client, "e7"));
    CHECK_OK(mp_mevent_new(f.client, "again", &e));
    mp_mevent_free(e);
    fx_stop(&f);
}

/* More keys than one answer may carry. */
TEST(items_limit)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_LOCAL);
    mp_mdict *d = NULL;
    CHECK_OK(mp_mdict_new(f.client, "many", &d));
    char key[32];
    for (int i = 0; i <= MP_MANAGER_MAX_ITEMS; i++) {
        snprintf(key, sizeof key, "%d", i);
        CHECK_OK(mp_mdict_set(d, key, NULL, 0));
    }
    mp_mitems *it = NULL;
    CHECK_ERR(mp_mdict_keys(d, &it), MP_E2BIG);
    CHECK(it == NULL);
    CHECK_OK(mp_mdict_del(d, "0"));
    CHECK_EQ(mp_mdict_keys(d, &it), MP_MANAGER_MAX_ITEMS);
    mp_mitems_free(it);
    mp_mdict_free(d);
    fx_stop(&f);
}

/* ---- locks --------------------------------------------------------------------------- */

static mp_mlock *g_lock;

static void *other_thread(void *arg)
{
    int *rc = arg;
    rc[0] = mp_mlock_acquire(g_lock, 0);
    rc[1] = mp_mlock_release(g_lock);
    return NULL;
}

static void lock_ops(mp_manager *c)
{
    mp_mlock *l = NULL, *r = NULL;
    CHECK_OK(mp_mlock_new(c, "lock", &l));
    CHECK_OK(mp_mlock_acquire(l, 0));
    CHECK_ERR(mp_mlock_acquire(l, 0), MP_EDEADLK);
    /* Another thread of this client is another owner. */
    g_lock = l;
    int rc[2];
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, other_thread, rc), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_ERR(rc[0], MP_ETIMEDOUT);
    CHECK_ERR(rc[1], MP_EPERM);
    CHECK_OK(mp_mlock_release(l));
    CHECK_ERR(mp_mlock_release(l), MP_EPERM);
    CHECK_ERR(mp_mlock_acquire(l, 0.0 / 0.0), MP_EINVAL);
    CHECK_OK(mp_mrlock_new(c, "rlock", &r));
    CHECK_OK(mp_mlock_acquire(r, 1));
    CHECK_OK(mp_mlock_acquire(r, 1));
    CHECK_OK(mp_mlock_release(r));
    CHECK_OK(mp_mlock_release(r));
    CHECK_ERR(mp_mlock_release(r), MP_EPERM);
    mp_mlock_free(l);
    mp_mlock_free(r);
}
FOR_KINDS(lock_ops)

typedef struct holder {
    mp_mlock *l;
    gate held, go;
} holder;

static int hold_lock(void *arg)
{
    holder *h = arg;
    if (mp_mlock_acquire(h->l, 10) != 0)
        return 1;
    gate_open(&h->held);
    if (gate_wait(&h->go, 30) != 0)
        return 2;
    return mp_mlock_release(h->l) == 0 ? 0 : 3;
}

/* A lock held by another process: a wait times out no earlier than its
 * timeout, and succeeds once the holder lets go. */
static void lock_contended(mp_manager *c)
{
    holder h;
    CHECK_OK(mp_mlock_new(c, "contended", &h.l));
    gate_init(&h.held);
    gate_init(&h.go);
    pid_t pid = fork_child(hold_lock, &h);
    CHECK_EQ(gate_wait(&h.held, 30), 0);
    double t0 = mpt_now();
    CHECK_ERR(mp_mlock_acquire(h.l, 0.2), MP_ETIMEDOUT);
    double dt = mpt_now() - t0;
    CHECK(dt >= 0.2 && dt < 10);
    gate_open(&h.go);
    CHECK_OK(mp_mlock_acquire(h.l, 30));
    CHECK_OK(mp_mlock_release(h.l));
    reap_ok(pid);
    gate_close(&h.held);
    gate_close(&h.go);
    mp_mlock_free(h.l);
}
FOR_KINDS(lock_contended)

/* ---- semaphores, events --------------------------------------------------------------- */

static int sem_waiter(void *arg)
{
    return mp_msem_acquire(arg, 30) == 0 ? 0 : 1;
}

static void sem_ops(mp_manager *c)
{
    mp_msem *s = NULL, *b = NULL;
    CHECK_OK(mp_msem_new(c, "sem", 2, &s));
    CHECK_OK(mp_msem_acquire(s, 0));
    CHECK_OK(mp_msem_acquire(s, 0));
    CHECK_ERR(mp_msem_acquire(s, 0), MP_ETIMEDOUT);
    CHECK_EQ(mp_msem_value(s), 0);
    pid_t pid = fork_child(sem_waiter, s);
    CHECK_OK(mp_msem_release(s));
    reap_ok(pid); /* the waiter took the unit */
    CHECK_EQ(mp_msem_value(s), 0);
    CHECK_OK(mp_msem_release(s));
    CHECK_OK(mp_msem_release(s));
    CHECK_OK(mp_msem_release(s)); /* not bounded */
    CHECK_EQ(mp_msem_value(s), 3);
    CHECK_OK(mp_msem_new_bounded(c, "bsem", 1, &b));
    CHECK_ERR(mp_msem_release(b), MP_EOVERFLOW);
    CHECK_OK(mp_msem_acquire(b, 0));
    CHECK_OK(mp_msem_release(b));
    CHECK_ERR(mp_msem_release(b), MP_EOVERFLOW);
    CHECK_EQ(mp_msem_value(b), 1);
    mp_msem *wrong = NULL;
    CHECK_ERR(mp_msem_new(c, "bsem", 1, &wrong), MP_ETYPE); /* bounded is its own type */
    mp_msem_free(s);
    mp_msem_free(b);
}
FOR_KINDS(sem_ops)

typedef struct evarg {
    mp_mevent *e;
    gate go;
} evarg;

static int event_setter(void *arg)
{
    evarg *a = arg;
    if (gate_wait(&a->go, 30) != 0)
        return 1;
    return mp_mevent_set(a->e) == 0 ? 0 : 2;
}

static void event_ops(mp_manager *c)
{
    evarg a;
    CHECK_OK(mp_mevent_new(c, "ev", &a.e));
    gate_init(&a.go);
    CHECK_EQ(mp_mevent_is_set(a.e), 0);
    double t0 = mpt_now();
    CHECK_ERR(mp_mevent_wait(a.e, 0.1), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.1);
    pid_t pid = fork_child(event_setter, &a);
    gate_open(&a.go);
    CHECK_OK(mp_mevent_wait(a.e, 30));
    CHECK_EQ(mp_mevent_is_set(a.e), 1);
    CHECK_OK(mp_mevent_wait(a.e, 0));
    CHECK_OK(mp_mevent_clear(a.e));
    CHECK_EQ(mp_mevent_is_set(a.e), 0);
    reap_ok(pid);
    gate_close(&a.go);
    mp_mevent_free(a.e);
}
FOR_KINDS(event_ops)

/* ---- Condition ------------------------------------------------------------------------ */

typedef struct condarg {
    mp_mcond *c;
    mp_msem *ready;
    mp_mdict *d;
} condarg;

/* Waits on the condition; counts itself woken. */
static int cond_waiter(void *arg)
{
    condarg *a = arg;
    if (mp_mcond_acquire(a->c, 30) != 0 || mp_msem_release(a->ready) != 0)
        return 1;
    int rc = mp_mcond_wait(a->c, 30);
    if (rc != 0)
        return 2;
    if (mp_mdict_incr(a->d, "woken", 1, NULL) != 0)
        return 3;
    return mp_mcond_release(a->c) == 0 ? 0 : 4;
}

/* Takes the condition's lock once all n waiters wait (each released the
 * semaphore holding the lock, which only its wait gives up). */
static void all_waiting(condarg *a, int n)
{
    for (int i = 0; i < n; i++)
        CHECK_OK(mp_msem_acquire(a->ready, 30));
    CHECK_OK(mp_mcond_acquire(a->c, 30));
}

static void cond_ops(mp_manager *c)
{
    condarg a;
    CHECK_OK(mp_mcond_new(c, "cond", &a.c));
    CHECK_OK(mp_msem_new(c, "cond-ready", 0, &a.ready));
    CHECK_OK(mp_mdict_new(c, "cond-count", &a.d));
    CHECK_ERR(mp_mcond_wait(a.c, 0), MP_EPERM);
    CHECK_ERR(mp_mcond_notify(a.c, 1), MP_EPERM);
    CHECK_OK(mp_mcond_acquire(a.c, 1));
    double t0 = mpt_now();
    CHECK_ERR(mp_mcond_wait(a.c, 0.1), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.1);
    CHECK_OK(mp_mcond_release(a.c)); /* wait took the lock back */
    CHECK_ERR(mp_mcond_release(a.c), MP_EPERM);
    /* notify(1) wakes one of two waiters; the second notify the other. */
    pid_t p[3];
    for (int i = 0; i < 2; i++)
        p[i] = fork_child(cond_waiter, &a);
    all_waiting(&a, 2);
    CHECK_OK(mp_mcond_notify(a.c, 1));
    CHECK_OK(mp_mcond_release(a.c));
    int64_t woken = 0;
    for (int tries = 0; tries < 20000 && woken == 0; tries++) {
        if (mp_mdict_get_i64(a.d, "woken", &woken) != 0)
            woken = 0;
        if (woken == 0)
            nanosleep(&(struct timespec){0, 1000000}, NULL); /* polls the outcome only */
    }
    CHECK_EQ(woken, 1);
    CHECK_OK(mp_mcond_acquire(a.c, 30));
    CHECK_OK(mp_mcond_notify(a.c, 1));
    CHECK_OK(mp_mcond_release(a.c));
    reap_ok(p[0]);
    reap_ok(p[1]);
    /* notify_all wakes all three. */
    for (int i = 0; i < 3; i++)
        p[i] = fork_child(cond_waiter, &a);
    all_waiting(&a, 3);
    CHECK_OK(mp_mcond_notify_all(a.c));
    CHECK_OK(mp_mcond_release(a.c));
    for (int i = 0; i < 3; i++)
        reap_ok(p[i]);
    CHECK_OK(mp_mdict_get_i64(a.d, "woken", &woken));
    CHECK_EQ(woken, 5);
    mp_mcond_free(a.c);
    mp_msem_free(a.ready);
    mp_mdict_free(a.d);
}
FOR_KINDS(cond_ops)

/* ---- Barrier ---------------------------------------------------------------------------- */

static int barrier_party(void *arg)
{
    int rc = mp_mbarrier_wait(arg, 30);
    return rc < 0 ? 100 : rc; /* the arrival index as exit code */
}

static void barrier_ops(mp_manager *c)
{
    mp_mbarrier *b = NULL;
    CHECK_OK(mp_mbarrier_new(c, "bar", 4, &b));
    pid_t p[3];
    for (int i = 0; i < 3; i++)
        p[i] = fork_child(barrier_party, b);
    int seen = 0, idx = mp_mbarrier_wait(b, 30);
    CHECK_GE(idx, 0);
    seen |= 1 << idx;
    for (int i = 0; i < 3; i++) {
        int st = reap_within(p[i], 30);
        CHECK(WIFEXITED(st));
        CHECK_LE(WEXITSTATUS(st), 3);
        seen |= 1 << WEXITSTATUS(st);
    }
    CHECK_EQ(seen, 0xf); /* indices 0..3, each once */
    mp_mbarrier_free(b);
    /* A waiter's timeout breaks the barrier for all. */
    CHECK_OK(mp_mbarrier_new(c, "bar2", 2, &b));
    double t0 = mpt_now();
    CHECK_ERR(mp_mbarrier_wait(b, 0.1), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.1);
    CHECK_EQ(mp_mbarrier_broken(b), 1);
    CHECK_ERR(mp_mbarrier_wait(b, 1), MP_EBROKEN);
    CHECK_OK(mp_mbarrier_reset(b));
    CHECK_EQ(mp_mbarrier_broken(b), 0);
    pid_t q = fork_child(barrier_party, b);
    CHECK_GE(mp_mbarrier_wait(b, 30), 0);
    CHECK(WIFEXITED(reap_within(q, 30)));
    /* abort reaches a party already waiting. */
    q = fork_child(barrier_party, b);
    CHECK_OK(mp_mbarrier_abort(b));
    int st = reap_within(q, 30);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 100);
    CHECK_ERR(mp_mbarrier_new(c, "bar3", 0, &b), MP_EINVAL);
    mp_mbarrier_free(b);
}
FOR_KINDS(barrier_ops)

/* ---- Queue ----------------------------------------------------------------------------- */

typedef struct qarg {
    mp_mqueue *q;
    mp_mdict *d;
    int id, n;
} qarg;

static int producer(void *arg)
{
    qarg *a = arg;
    for (int i = 0; i < a->n; i++) {
        int64_t v = a->id * 100000 + i;
        if (mp_mqueue_put(a->q, &v, sizeof v, 30) != 0)
            return 1;
    }
    return 0;
}

/* Takes messages until the value -1; sums what it took. */
static int consumer(void *arg)
{
    qarg *a = arg;
    for (;;) {
        int64_t v;
        size_t len;
        if (mp_mqueue_get(a->q, &v, sizeof v, &len, 30) != 0 || len != 8)
            return 1;
        if (v < 0)
            return 0;
        if (mp_mdict_incr(a->d, "sum", v, NULL) != 0 || mp_mdict_incr(a->d, "n", 1, NULL) != 0)
            return 2;
    }
}

static void queue_ops(mp_manager *c)
{
    mp_mqueue *q = NULL;
    char buf[8];
    size_t len;
    CHECK_OK(mp_mqueue_new(c, "q2", 2, &q));
    CHECK_OK(mp_mqueue_put(q, "one", 3, 0));
    CHECK_OK(mp_mqueue_put(q, "two", 3, 0));
    double t0 = mpt_now();
    CHECK_ERR(mp_mqueue_put(q, "three", 5, 0.1), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.1);
    CHECK_EQ(mp_mqueue_qsize(q), 2);
    CHECK_ERR(mp_mqueue_get(q, buf, 2, &len, 0), MP_EMSGSIZE);
    CHECK_EQ(len, 3);
    CHECK_EQ(mp_mqueue_qsize(q), 2); /* the message stays */
    CHECK_OK(mp_mqueue_get(q, buf, sizeof buf, &len, 0));
    CHECK(len == 3 && memcmp(buf, "one", 3) == 0);
    void *v = NULL;
    CHECK_OK(mp_mqueue_get_alloc(q, &v, &len, 0));
    CHECK_STREQ(v, "two");
    free(v);
    CHECK_ERR(mp_mqueue_get(q, buf, sizeof buf, &len, 0), MP_ETIMEDOUT);
    mp_mqueue_free(q);
    /* Two producers, two consumers: every message arrives exactly once. */
    qarg a = {NULL, NULL, 0, 300};
    CHECK_OK(mp_mqueue_new(c, "q", 16, &a.q));
    CHECK_OK(mp_mdict_new(c, "qsum", &a.d));
    pid_t p[4];
    for (int i = 0; i < 2; i++) {
        a.id = i + 1;
        p[i] = fork_child(producer, &a);
        p[2 + i] = fork_child(consumer, &a);
    }
    reap_ok(p[0]);
    reap_ok(p[1]);
    int64_t end = -1;
    CHECK_OK(mp_mqueue_put(a.q, &end, 8, 30));
    CHECK_OK(mp_mqueue_put(a.q, &end, 8, 30));
    reap_ok(p[2]);
    reap_ok(p[3]);
    int64_t sum = 0, n = 0, want = 0;
    for (int id = 1; id <= 2; id++)
        for (int i = 0; i < a.n; i++)
            want += id * 100000 + i;
    CHECK_OK(mp_mdict_get_i64(a.d, "sum", &sum));
    CHECK_OK(mp_mdict_get_i64(a.d, "n", &n));
    CHECK_EQ(n, 2 * a.n);
    CHECK_EQ(sum, want);
    mp_mqueue_free(a.q);
    mp_mdict_free(a.d);
}
FOR_KINDS(queue_ops)

/* ---- many clients at once -------------------------------------------------------------- */

#define WORKERS 8
#define ROUNDS  300

typedef struct crowd {
    fx *f;
    int id;
} crowd;

/* One of many clients: half use the fast path (the owner's handle,
 * inherited), half a remote connection of their own. */
static int crowd_member(void *arg)
{
    crowd *c = arg;
    mp_manager *m = c->id % 2 ? fx_connect(c->f, K_UNIX) : c->f->owner;
    mp_mdict *d;
    mp_mlist *l;
    mp_mvalue *v;
    mp_mlock *lk;
    if (mp_mdict_new(m, "crowd", &d) || mp_mlist_new(m, "log", &l) ||
        mp_mvalue_new(m, "total", MP_TYPE_q, &v) || mp_mlock_new(m, "lk", &lk))
        return 1;
    for (int i = 0; i < ROUNDS; i++) {
        char item[32];
        int n = snprintf(item, sizeof item, "%d:%d", c->id, i);
        mp_mdict_op move[2] = {{.kind = MP_MTXN_INCR, .key = "acct_a", .delta = -3},
                               {.kind = MP_MTXN_INCR, .key = "acct_b", .delta = 3}};
        if (mp_mdict_incr(d, "count", 1, NULL) || mp_mlist_append(l, item, (size_t)n) <= 0 ||
            mp_mvalue_fetch_add(v, 1, NULL) || mp_mdict_txn(d, move, 2) != 1)
            return 2;
        /* A read-modify-write under a manager lock. */
        int64_t x = 0;
        if (mp_mlock_acquire(lk, 30) || (mp_mdict_get_i64(d, "locked", &x) && x != 0) ||
            mp_mdict_set_i64(d, "locked", x + 1) || mp_mlock_release(lk))
            return 3;
    }
    mp_mdict_free(d);
    mp_mlist_free(l);
    mp_mvalue_free(v);
    mp_mlock_free(lk);
    if (m != c->f->owner)
        mp_manager_free(m);
    return 0;
}

static void crowd_run(int kind)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, kind);
    crowd c[WORKERS];
    pid_t p[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        c[i] = (crowd){&f, i};
        p[i] = fork_child(crowd_member, &c[i]);
    }
    for (int i = 0; i < WORKERS; i++)
        reap_ok(p[i]);
    mp_mdict *d;
    mp_mlist *l;
    mp_mvalue *v;
    CHECK_OK(mp_mdict_new(f.client, "crowd", &d));
    CHECK_OK(mp_mlist_new(f.client, "log", &l));
    CHECK_OK(mp_mvalue_new(f.client, "total", MP_TYPE_q, &v));
    int64_t x;
    CHECK_OK(mp_mdict_get_i64(d, "count", &x));
    CHECK_EQ(x, WORKERS * ROUNDS);
    CHECK_OK(mp_mdict_get_i64(d, "locked", &x));
    CHECK_EQ(x, WORKERS * ROUNDS);
    CHECK_OK(mp_mdict_get_i64(d, "acct_a", &x));
    CHECK_EQ(x, -3 * WORKERS * ROUNDS);
    CHECK_OK(mp_mdict_get_i64(d, "acct_b", &x));
    CHECK_EQ(x, 3 * WORKERS * ROUNDS);
    CHECK_OK(mp_mvalue_get_i64(v, &x));
    CHECK_EQ(x, WORKERS * ROUNDS);
    CHECK_EQ(mp_mlist_len(l), WORKERS * ROUNDS);
    /* Each client's items in its own order. */
    mp_mitems *it;
    CHECK_EQ(mp_mlist_slice(l, 0, INT64_MAX, &it), WORKERS * ROUNDS);
    int next[WORKERS] = {0};
    for (size_t i = 0; i < it->n; i++) {
        int id, k;
        CHECK_EQ(sscanf(it->item[i].value, "%d:%d", &id, &k), 2);
        CHECK(id >= 0 && id < WORKERS);
        CHECK_EQ(k, next[id]);
        next[id]++;
    }
    mp_mitems_free(it);
    mp_mdict_free(d);
    mp_mlist_free(l);
    mp_mvalue_free(v);
    fx_stop(&f);
}

TEST_TIMEOUT(many_clients, 120)
{
    crowd_run(K_LOCAL);
}

/* ---- compound operations racing ---------------------------------------------------------- */

static int racer(void *arg)
{
    crowd *c = arg;
    mp_mdict *d;
    if (mp_mdict_new(c->f->owner, "race", &d))
        return 1;
    /* get-or-set: one racer inserts, all see its value. */
    char mine[16], seen[16];
    size_t len;
    snprintf(mine, sizeof mine, "r%d", c->id);
    int ins = mp_mdict_setdefault(d, "winner", mine, strlen(mine), seen, sizeof seen - 1, &len);
    if (ins < 0)
        return 2;
    if (ins == 1 && mp_mdict_incr(d, "inserted", 1, NULL))
        return 3;
    seen[len] = '\0';
    if (ins == 1 && strcmp(seen, mine) != 0)
        return 4;
    /* Increments by compare-and-set on a decimal text value. */
    for (int i = 0; i < 100; i++) {
        for (;;) {
            char cur[32] = "0", next[32];
            size_t n = 1;
            int rc = mp_mdict_get(d, "text", cur, sizeof cur - 1, &n);
            if (rc != 0 && rc != MP_ENOKEY)
                return 5;
            cur[rc == 0 ? n : 1] = '\0';
            snprintf(next, sizeof next, "%lld", atoll(cur) + 1);
            rc = mp_mdict_cas(d, "text", rc == 0 ? cur : NULL, n, next, strlen(next));
            if (rc == 1)
                break;
            if (rc != 0)
                return 6;
        }
    }
    mp_mdict_free(d);
    return 0;
}

TEST_TIMEOUT(compound_racing, 120)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_LOCAL);
    crowd c[WORKERS];
    pid_t p[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        c[i] = (crowd){&f, i};
        p[i] = fork_child(racer, &c[i]);
    }
    for (int i = 0; i < WORKERS; i++)
        reap_ok(p[i]);
    mp_mdict *d;
    CHECK_OK(mp_mdict_new(f.client, "race", &d));
    int64_t x;
    CHECK_OK(mp_mdict_get_i64(d, "inserted", &x));
    CHECK_EQ(x, 1);
    char text[32];
    size_t len;
    CHECK_OK(mp_mdict_get(d, "text", text, sizeof text - 1, &len));
    text[len] = '\0';
    CHECK_EQ(atoll(text), WORKERS * 100);
    mp_mdict_free(d);
    fx_stop(&f);
}

/* ---- after fork, addresses, lifetimes -------------------------------------------------- */

static int lock_from_child(void *arg)
{
    /* The parent holds the lock; a child is another client. */
    if (mp_mlock_acquire(arg, 0) != MP_ETIMEDOUT)
        return 1;
    if (mp_mlock_release(arg) != MP_EPERM)
        return 2;
    return 0;
}

TEST(fork_child_is_another_client)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_LOCAL);
    mp_mlock *l;
    CHECK_OK(mp_mlock_new(f.client, "fl", &l));
    CHECK_OK(mp_mlock_acquire(l, 0));
    reap_ok(fork_child(lock_from_child, l));
    CHECK_OK(mp_mlock_release(l));
    mp_mlock_free(l);
    fx_stop(&f);
}

TEST(socket_file_removed)
{
    SKIP_WITHOUT_MANAGER();
    char dir[] = "/tmp/mproc-test-XXXXXX", addr[300], path[280];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/mgr.sock", dir);
    snprintf(addr, sizeof addr, "unix:%s", path);
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.address = addr;
    mp_manager *m;
    struct stat st;
    /* Shut down: the server removes its file. */
    CHECK_OK(mp_manager_start(&o, &m));
    CHECK_STREQ(mp_manager_address(m), addr);
    CHECK_EQ(stat(path, &st), 0);
    mp_manager *again;
    CHECK_ERR(mp_manager_start(&o, &again), MP_EADDRINUSE);
    CHECK_EQ(stat(path, &st), 0); /* the refused server left it alone */
    CHECK_OK(mp_manager_shutdown(m, 10));
    CHECK(stat(path, &st) != 0);
    mp_manager_free(m);
    /* Freed by its starter: killed, and the file removed for it. */
    CHECK_OK(mp_manager_start(&o, &m));
    mp_manager_free(m);
    CHECK(stat(path, &st) != 0);
    CHECK_EQ(rmdir(dir), 0);
}

/* The program's shutdown ends a server this process started as it ends
 * the children: the server is gone and reaped, its socket file removed,
 * and the report counts it among the objects closed. */
TEST(program_shutdown_ends_the_server)
{
    SKIP_WITHOUT_MANAGER();
    char dir[] = "/tmp/mproc-test-XXXXXX", addr[300], path[280];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/mgr.sock", dir);
    snprintf(addr, sizeof addr, "unix:%s", path);
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.address = addr;
    mp_manager *m;
    CHECK_OK(mp_manager_start(&o, &m));
    pid_t server = mp_manager_pid(m);
    CHECK(server > 0);
    mp_shutdown_report r;
    CHECK(mp_shutdown_ex(NULL, &r) >= 0);
    CHECK(r.closed >= 1);
    errno = 0;
    CHECK_EQ(waitpid(server, NULL, WNOHANG), -1); /* reaped already */
    CHECK_EQ(errno, ECHILD);
    struct stat st;
    CHECK(stat(path, &st) != 0);
    /* The handle stays usable to free; calls on it fail. */
    mp_mlist *l;
    CHECK(mp_mlist_new(m, "after", &l) < 0);
    mp_manager_free(m);
    CHECK_EQ(rmdir(dir), 0);
}

TEST(shutdown_reaches_every_client)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_UNIX);
    mp_manager *local2;
    CHECK_OK(mp_manager_connect(f.addr, f.key, (size_t)f.keylen, &local2));
    CHECK(mp_manager_is_local(local2));
    mp_mdict *d1, *d2;
    CHECK_OK(mp_mdict_new(f.client, "d", &d1));
    CHECK_OK(mp_mdict_new(local2, "d", &d2));
    CHECK_OK(mp_manager_shutdown(local2, 10)); /* any client may ask */
    CHECK(mpt_wait_gone(mp_manager_pid(f.owner), 10));
    CHECK_ERR(mp_mdict_set(d1, "k", "v", 1), MP_ECONNRESET);
    CHECK_ERR(mp_mdict_set(d2, "k", "v", 1), MP_ECONNRESET);
    mp_mdict_free(d1);
    mp_mdict_free(d2);
    mp_manager_free(local2);
    mp_manager_free(f.client);
    CHECK_OK(mp_manager_shutdown(f.owner, 10)); /* reaps it */
    mp_manager_free(f.owner);
}

typedef struct starter {
    int pipe[2];
    bool detached;
    mp_start_method method;
} starter;

/* Starts a server and reports its pid, address and key, then waits to be
 * killed or exits (the detached case). */
static int start_and_report(void *arg)
{
    starter *s = arg;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.detached = s->detached;
    o.start_method = s->method;
    mp_manager *m;
    if (mp_manager_start(&o, &m) != 0)
        return 1;
    char msg[512], key[32];
    mp_manager_authkey(m, key, sizeof key);
    int n = snprintf(msg, sizeof msg, "%d %s ", (int)mp_manager_pid(m), mp_manager_address(m));
    memcpy(msg + n, key, 32);
    if (write(s->pipe[1], msg, (size_t)n + 32) != n + 32)
        return 2;
    if (s->detached)
        return 0; /* exits without stopping it */
    pause();
    return 3;
}

static pid_t read_report(starter *s, char *addr, char *key)
{
    char msg[512];
    struct pollfd pf = {.fd = s->pipe[0], .events = POLLIN};
    CHECK_EQ(poll(&pf, 1, 30000), 1);
    ssize_t n = read(s->pipe[0], msg, sizeof msg - 1);
    CHECK_GE(n, 32);
    msg[n] = '\0';
    int pid = 0, off = 0;
    /* Exactly one space before the key: a directive's space would skip a
     * key byte that happens to be white space too. */
    CHECK_EQ(sscanf(msg, "%d %299s%n", &pid, addr, &off), 2);
    CHECK_GE(n, off + 1 + 32);
    memcpy(key, msg + off + 1, 32);
    return pid;
}

static void dies_with_its_starter(mp_start_method method)
{
    SKIP_WITHOUT_MANAGER();
    starter s = {{-1, -1}, false, method};
    CHECK_EQ(pipe(s.pipe), 0);
    pid_t child = fork_child(start_and_report, &s);
    char addr[300], key[32];
    pid_t server = read_report(&s, addr, key);
    CHECK(kill(child, SIGKILL) == 0);
    reap_within(child, 10);
    CHECK(mpt_wait_gone(server, 10)); /* SIGTERM from the kernel, a clean stop */
    close(s.pipe[0]);
    close(s.pipe[1]);
}

TEST(server_dies_with_its_starter)
{
    dies_with_its_starter(MP_START_FORK);
}

TEST(server_image_dies_with_its_starter)
{
    dies_with_its_starter(MP_START_SPAWN);
}

static void outlives_its_starter(mp_start_method method)
{
    SKIP_WITHOUT_MANAGER();
    starter s = {{-1, -1}, true, method};
    CHECK_EQ(pipe(s.pipe), 0);
    pid_t child = fork_child(start_and_report, &s);
    char addr[300], key[32];
    pid_t server = read_report(&s, addr, key);
    reap_ok(child);
    mp_manager *m;
    CHECK_OK(mp_manager_connect(addr, key, 32, &m));
    mp_mdict *d;
    CHECK_OK(mp_mdict_new(m, "still-here", &d));
    CHECK_OK(mp_mdict_set(d, "k", "v", 1));
    mp_mdict_free(d);
    CHECK_OK(mp_manager_shutdown(m, 10));
    mp_manager_free(m);
    CHECK(mpt_wait_gone(server, 10));
    close(s.pipe[0]);
    close(s.pipe[1]);
}

TEST(detached_server_outlives_its_starter)
{
    outlives_its_starter(MP_START_FORK);
}

TEST(detached_server_image_outlives_its_starter)
{
    outlives_its_starter(MP_START_SPAWN);
}

/* ---- how the server starts --------------------------------------------------------- */

/* A shared mapping under a name of its own: a forked server inherits it,
 * a fresh image of the program does not. */
static void *map_marker(void)
{
    int fd = memfd_create("mpt-fork-marker", MFD_CLOEXEC);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, 4096), 0);
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    close(fd);
    return p;
}

/* Whether the file /proc/PID/WHAT holds the len bytes at needle. */
static bool proc_file_has(pid_t pid, const char *what, const void *needle, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, what);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    static char buf[1 << 20];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof buf && (k = read(fd, buf + n, sizeof buf - n)) > 0)
        n += (size_t)k;
    close(fd);
    CHECK(n > 0);
    return memmem(buf, n, needle, len) != NULL;
}

typedef struct thread_holder {
    pthread_mutex_t lock;
    gate held, release;
} thread_holder;

/* A thread of the program that holds a lock of its own (and stdout's)
 * while the server starts: a fork at that instant would copy them held. */
static void *hold_locks(void *arg)
{
    thread_holder *h = arg;
    pthread_mutex_lock(&h->lock);
    flockfile(stdout);
    gate_open(&h->held);
    CHECK_EQ(gate_wait(&h->release, 60), 0);
    funlockfile(stdout);
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

TEST(start_beside_a_thread_holding_a_lock)
{
    SKIP_WITHOUT_MANAGER();
    void *marker = map_marker();
    thread_holder h = {.lock = PTHREAD_MUTEX_INITIALIZER};
    gate_init(&h.held);
    gate_init(&h.release);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, hold_locks, &h), 0);
    CHECK_EQ(gate_wait(&h.held, 30), 0);
    /* An explicit fork is refused while the thread runs... */
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.start_method = MP_START_FORK;
    mp_manager *m = mpt_not_null();
    CHECK_ERR(mp_manager_start(&o, &m), MP_ETHREADS);
    CHECK(m == NULL);
    /* ... and the default starts a fresh image, which works. */
    o.start_method = MP_START_DEFAULT;
    o.address = "tcp://127.0.0.1:0";
    CHECK_OK(mp_manager_start(&o, &m));
    pid_t server = mp_manager_pid(m);
    CHECK(!proc_file_has(server, "maps", "mpt-fork-marker", 15));
    CHECK(proc_file_has(getpid(), "maps", "mpt-fork-marker", 15)); /* the check can see it */
    mp_mdict *d;
    CHECK_OK(mp_mdict_new(m, "beside", &d));
    CHECK_OK(mp_mdict_set(d, "k", "v", 1));
    mp_mdict_free(d);
    char key[32];
    CHECK_EQ(mp_manager_authkey(m, key, sizeof key), 32);
    mp_manager *c;
    mp_manager_client_opts co = MP_MANAGER_CLIENT_OPTS_INIT;
    co.address = mp_manager_address(m);
    co.authkey = key;
    co.authkey_len = sizeof key;
    CHECK_OK(mp_manager_connect_opts(&co, &c)); /* over TCP: served by the server's threads */
    CHECK_OK(mp_mdict_new(c, "beside", &d));
    char v[4];
    size_t vlen = 0;
    CHECK_OK(mp_mdict_get(d, "k", v, sizeof v, &vlen));
    CHECK_EQ(vlen, 1);
    mp_mdict_free(d);
    mp_manager_free(c);
    CHECK_OK(mp_manager_shutdown(m, 10));
    mp_manager_free(m);
    CHECK(mpt_wait_gone(server, 10));
    gate_open(&h.release);
    CHECK_EQ(pthread_join(th, NULL), 0);
    gate_close(&h.held);
    gate_close(&h.release);
    munmap(marker, 4096);
}

TEST(key_not_in_the_servers_cmdline_or_environ)
{
    SKIP_WITHOUT_MANAGER();
    static const char key[] = "mpt-secret-key-never-in-proc-0123456789";
    mp_start_method methods[] = {MP_START_SPAWN, MP_START_FORK};
    for (size_t i = 0; i < 2; i++) {
        mp_manager_opts o = MP_MANAGER_OPTS_INIT;
        o.authkey = key;
        o.authkey_len = sizeof key - 1;
        o.start_method = methods[i];
        mp_manager *m;
        CHECK_OK(mp_manager_start(&o, &m));
        pid_t server = mp_manager_pid(m);
        CHECK_GE(server, 1);
        /* The checks can find what they look for: a part of the key that
         * is nowhere, and the name of the test program that is. */
        CHECK(proc_file_has(server, "cmdline", "test_manager", 12));
        CHECK(!proc_file_has(server, "cmdline", key, 12));
        CHECK(!proc_file_has(server, "environ", key, 12));
        CHECK_OK(mp_manager_shutdown(m, 10));
        mp_manager_free(m);
        CHECK(mpt_wait_gone(server, 10));
    }
}

TEST(start_method_checked)
{
    SKIP_WITHOUT_MANAGER();
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.start_method = (mp_start_method)77;
    mp_manager *m = mpt_not_null();
    CHECK_ERR(mp_manager_start(&o, &m), MP_EINVAL);
    CHECK(m == NULL);
    CHECK(strstr(mp_last_error_detail(), "start_method") != NULL);
}

TEST(bad_arguments)
{
    SKIP_WITHOUT_MANAGER();
    mp_manager *m = (mp_manager *)1;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    CHECK_ERR(mp_manager_start(NULL, NULL), MP_EINVAL);
    o.address = "nonsense";
    CHECK_ERR(mp_manager_start(&o, &m), MP_EINVAL);
    CHECK(m == NULL);
    o.address = "tcp://127.0.0.1:99999";
    CHECK_ERR(mp_manager_start(&o, &m), MP_EINVAL);
    o.address = NULL;
    o.authkey = "k";
    o.authkey_len = 0;
    CHECK_ERR(mp_manager_start(&o, &m), MP_EINVAL);
    o.authkey_len = MP_MANAGER_MAX_AUTHKEY + 1;
    CHECK_ERR(mp_manager_start(&o, &m), MP_EINVAL);
    CHECK_ERR(mp_manager_connect(NULL, "k", 1, &m), MP_EINVAL);
    CHECK_ERR(mp_manager_connect("unix:@x", NULL, 0, &m), MP_EINVAL);
    CHECK_ERR(mp_manager_connect("unix:@mproc-nobody-listens-here", "k", 1, &m), MP_ECONNREFUSED);
    CHECK_ERR(mp_manager_shutdown(NULL, 1), MP_EINVAL);
    mp_manager_free(NULL);
    CHECK_STREQ(mp_manager_address(NULL), "");
    CHECK_EQ(mp_manager_pid(NULL), 0);
    CHECK(!mp_manager_is_local(NULL));
    mp_mitems_free(NULL);
}

/* ---- an idle connection ------------------------------------------------------------- */

/* CPU time process pid has used so far (all its threads), in
 * microseconds. */
static long long cpu_us_of(pid_t pid)
{
    clockid_t clk;
    struct timespec ts;
    CHECK_EQ(clock_getcpuclockid(pid, &clk), 0);
    CHECK_EQ(clock_gettime(clk, &ts), 0);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Lets wall time pass; nothing is waited for, the window is measured. */
static void let_time_pass(double secs)
{
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A manager read looks at its socket without sleeping before it blocks
 * (recv_look in conn.c), but only for a bounded while: a connection with
 * nothing to read must sleep in the kernel, both at the server (its
 * connection thread between requests) and at a client blocked in a
 * request the server answers late (an event wait that times out).  A look
 * without bound burns the whole 300 ms window on a CPU; the bound allows
 * 10 % of it.  With one CPU there is no look and nothing to skip. */
TEST(idle_connection_costs_no_cpu)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_UNIX);
    pid_t server = mp_manager_pid(f.owner), me = getpid();
    mp_mdict *d;
    mp_mevent *e;
    CHECK_OK(mp_mdict_new(f.client, "idle", &d));
    CHECK_OK(mp_mevent_new(f.client, "never-set", &e));
    /* Round trips first, so that the reads at both ends look. */
    for (int i = 0; i < 200; i++) {
        int64_t v = -1;
        CHECK_OK(mp_mdict_set_i64(d, "n", i));
        CHECK_OK(mp_mdict_get_i64(d, "n", &v));
        CHECK_EQ(v, i);
    }

    long long s0 = cpu_us_of(server), c0 = cpu_us_of(me);
    double t0 = mpt_now();
    let_time_pass(0.3);
    long long idle_server = cpu_us_of(server) - s0, idle_client = cpu_us_of(me) - c0;
    double idle_wall = mpt_now() - t0;

    s0 = cpu_us_of(server);
    c0 = cpu_us_of(me);
    t0 = mpt_now();
    CHECK_ERR(mp_mevent_wait(e, 0.3), MP_ETIMEDOUT);
    long long late_server = cpu_us_of(server) - s0, late_client = cpu_us_of(me) - c0;
    double late_wall = mpt_now() - t0;

    printf("  idle %.0f ms: server %.2f ms CPU, client %.2f ms; "
           "late answer %.0f ms: server %.2f ms, client %.2f ms\n",
           idle_wall * 1e3, (double)idle_server / 1e3, (double)idle_client / 1e3, late_wall * 1e3,
           (double)late_server / 1e3, (double)late_client / 1e3);
    CHECK(late_wall >= 0.3);
    CHECK_LE(idle_server, 30000);
    CHECK_LE(idle_client, 30000);
    CHECK_LE(late_server, 30000);
    CHECK_LE(late_client, 30000);
    /* The connection still serves after its sleep. */
    int64_t v = -1;
    CHECK_OK(mp_mdict_get_i64(d, "n", &v));
    CHECK_EQ(v, 199);
    mp_mevent_free(e);
    mp_mdict_free(d);
    fx_stop(&f);
}

/* ---- a rank's manager ---------------------------------------------------------------- */

/* Each rank of a world starts a manager of its own and uses it: under an
 * engine that forbids fork (Open MPI) it is a fresh image, and an
 * explicit fork is refused; the local engine (mprun) forks it.  Run as
 * `mprun -n N test_manager --ranks` or `mpiexec -n N ... --ranks`. */
static int rank_manager(mp_comm *w)
{
    rk_me = mp_comm_rank(w);
    bool mpi = strcmp(mp_comm_engine(w), "mpi") == 0;
    void *marker = map_marker();
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    mp_manager *m;
    if (mpi) {
        o.start_method = MP_START_FORK;
        RK_ERR(mp_manager_start(&o, &m), MP_ENOTSUP);
        o.start_method = MP_START_DEFAULT;
    }
    RK_OK(mp_manager_start(&o, &m));
    pid_t server = mp_manager_pid(m);
    RK_CHECK(server > 0);
    RK_EQ(proc_file_has(server, "maps", "mpt-fork-marker", 15), !mpi);
    mp_mdict *d;
    int64_t v = -1;
    RK_OK(mp_mdict_new(m, "rank", &d));
    RK_OK(mp_mdict_set_i64(d, "me", rk_me));
    RK_OK(mp_mdict_get_i64(d, "me", &v));
    RK_EQ(v, rk_me);
    mp_mdict_free(d);
    RK_OK(mp_manager_shutdown(m, 10));
    mp_manager_free(m);
    munmap(marker, 4096);
    return mp_comm_barrier(w, 60);
}

static int ranks_main(void)
{
    mp_comm *w;
    int rc = mp_comm_world(&w);
    if (rc < 0) {
        fprintf(stderr, "test_manager: no world: %s\n", mp_err_name(rc));
        return 100;
    }
    int st = mp_manager_available() ? rank_manager(w) : 0;
    printf("rank %d of %d (%s): manager %s\n", mp_comm_rank(w), mp_comm_size(w), mp_comm_engine(w),
           st ? "FAILED" : "ok");
    return st;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--ranks") == 0)
        return ranks_main();
    return mpt_run(argc, argv);
}
