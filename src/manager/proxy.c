/*
 * proxy.c - the public calls on shared objects: each checks its arguments,
 * builds a request (mgr.h) and hands it to mp__mcall(), which performs it
 * on the mapped store or sends it to the server; then it unpacks the
 * reply.  No call here knows which of the two happened.
 */
#define _GNU_SOURCE
#include "client.h"

struct mp_mdict {
    mp__mobj o;
};
struct mp_mlist {
    mp__mobj o;
};
struct mp_mnamespace {
    mp__mobj o;
};
struct mp_mlock {
    mp__mobj o;
};
struct mp_msem {
    mp__mobj o;
};
struct mp_mcond {
    mp__mobj o;
};
struct mp_mevent {
    mp__mobj o;
};
struct mp_mbarrier {
    mp__mobj o;
};
struct mp_mqueue {
    mp__mobj o;
};
struct mp_mvalue {
    mp__mobj o;
};
struct mp_marray {
    mp__mobj o;
};

/* Elements per Array request (store_sync.c's ARRAY_CHUNK). */
#define ARRAY_CHUNK 8192

/* ---- helpers ------------------------------------------------------------------- */

/* Checks a key (or a field name) of the call fn, the argument named what,
 * and points b at it.  Returns 0, or MP_EINVAL with a detail. */
static int key_arg(const char *fn, const char *what, const char *key, mp__mbytes *b)
{
    if (!key)
        return mp__fail(MP_EINVAL, "%s: %s must not be NULL", fn, what);
    size_t n = strnlen(key, MP_MANAGER_MAX_KEY + 1);
    if (n == 0 || n > MP_MANAGER_MAX_KEY)
        return mp__fail(MP_EINVAL, "%s: %s must be 1 to %d bytes (got %s%zu)", fn, what,
                        (int)MP_MANAGER_MAX_KEY, n > MP_MANAGER_MAX_KEY ? "more than " : "",
                        n ? (size_t)MP_MANAGER_MAX_KEY : n);
    b->p = key;
    b->len = (uint32_t)n;
    return 0;
}

/* Checks a value of the call fn, the argument named what, and points b at
 * it.  Returns 0, or MP_EINVAL or MP_EMSGSIZE with a detail. */
static int val_arg(const char *fn, const char *what, const void *val, size_t len, mp__mbytes *b)
{
    if (!val && len)
        return mp__fail(MP_EINVAL, "%s: %s must not be NULL when its length is %zu", fn, what, len);
    if (len > MP_MANAGER_MAX_VALUE)
        return mp__fail(MP_EMSGSIZE, "%s: %s must be at most %zu bytes (got %zu)", fn, what,
                        (size_t)MP_MANAGER_MAX_VALUE, len);
    b->p = val ? val : "";
    b->len = (uint32_t)len;
    return 0;
}

static int64_t cap_arg(size_t cap)
{
    return cap > MP_MANAGER_MAX_VALUE ? (int64_t)MP_MANAGER_MAX_VALUE : (int64_t)cap;
}

static int call(const mp__mobj *h, mp__mreq *rq, mp__mrep *rp)
{
    if (!h || rq->timeout != rq->timeout) {
        rp->status = MP_EINVAL;
        return MP_EINVAL;
    }
    rq->obj = h->index;
    rq->gen = h->gen;
    rq->tid = (uint32_t)mp__self_tid();
    return mp__mcall(h->m, rq, rp);
}

/* An operation whose answer, if any, is a number: *ra gets rp.a. */
static int simple(const mp__mobj *h, uint16_t op, int64_t a, double timeout, int64_t *ra)
{
    mp__mreq rq = {0};
    rq.op = op;
    rq.a = a;
    rq.timeout = timeout;
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = call(h, &rq, &rp);
    if (rc >= 0 && ra)
        *ra = rp.a;
    mp__mrep_free(&rp);
    return rc;
}

/* An operation on strings: nstr of them. */
static int with_strs(const mp__mobj *h, uint16_t op, const mp__mbytes *s, uint32_t nstr, int64_t a,
                     int64_t b, mp__mrep *rp)
{
    mp__mreq rq = {0};
    rq.op = op;
    rq.a = a;
    rq.b = b;
    rq.str = s;
    rq.nstr = nstr;
    return call(h, &rq, rp);
}

/* The first string of a reply into buf (see mp_mdict_get). */
static int value_out(int rc, const mp__mrep *rp, void *buf, size_t cap, size_t *len)
{
    if (rc == MP_EMSGSIZE && len)
        *len = (size_t)rp->a;
    if (rc < 0)
        return rc;
    size_t pos = 0;
    const uint8_t *p;
    uint32_t n;
    if (!mp__mrep_next(rp, &pos, &p, &n))
        return MP_EPROTO;
    if (len)
        *len = n;
    if (n > cap)
        return MP_EMSGSIZE;
    if (n)
        memcpy(buf, p, n);
    return 0;
}

/* The first string of a reply, malloc'ed and NUL-terminated. */
static int value_alloc(int rc, const mp__mrep *rp, void **val, size_t *len)
{
    if (rc < 0)
        return rc;
    size_t pos = 0;
    const uint8_t *p;
    uint32_t n;
    if (!mp__mrep_next(rp, &pos, &p, &n))
        return MP_EPROTO;
    char *v = malloc((size_t)n + 1);
    if (!v)
        return MP_ENOMEM;
    if (n)
        memcpy(v, p, n);
    v[n] = '\0';
    *val = v;
    if (len)
        *len = n;
    return 0;
}

/* Items from a reply: keys and values alternate when pairs, else only
 * values (keys NULL) or only keys (values NULL). */
enum { ONLY_KEYS, ONLY_VALUES, PAIRS };

static int items_build(const mp__mrep *rp, int shape, mp_mitems **out)
{
    size_t per = shape == PAIRS ? 2 : 1;
    size_t n = rp->nout / per, bytes = 0, pos = 0;
    const uint8_t *p;
    uint32_t len;
    for (uint32_t i = 0; i < rp->nout; i++) {
        if (!mp__mrep_next(rp, &pos, &p, &len))
            return MP_EPROTO;
        bytes += (size_t)len + 1;
    }
    mp_mitems *it = malloc(sizeof *it + n * sizeof(mp_mitem) + bytes);
    if (!it)
        return MP_ENOMEM;
    it->n = n;
    char *data = (char *)(it->item + n);
    pos = 0;
    for (size_t i = 0; i < n; i++) {
        mp_mitem *e = &it->item[i];
        e->key = NULL;
        e->value = NULL;
        e->len = 0;
        for (size_t k = 0; k < per; k++) {
            (void)mp__mrep_next(rp, &pos, &p, &len);
            memcpy(data, p, len);
            data[len] = '\0';
            if (shape == ONLY_VALUES || (shape == PAIRS && k == 1)) {
                e->value = data;
                e->len = len;
            } else {
                e->key = data;
            }
            data += (size_t)len + 1;
        }
    }
    *out = it;
    return (int)n;
}

void mp_mitems_free(mp_mitems *items)
{
    free(items);
}

/* The failure of a call whose object name is nl bytes long (strnlen up to
 * one past the limit). */
static int name_fail(const char *fn, size_t nl)
{
    if (nl == 0)
        return mp__fail(MP_EINVAL, "%s: name must not be empty", fn);
    return mp__fail(MP_EINVAL, "%s: name must be at most %d bytes", fn, (int)MP_MANAGER_MAX_NAME);
}

/* Opens the object and allocates a handle of size bytes (each public
 * handle type is a struct whose only member is an mp__mobj). */
static int open_handle(const char *fn, mp_manager *m, const char *name, int type, int64_t param,
                       uint16_t flags, size_t size, void **out)
{
    if (!out)
        return mp__fail(MP_EINVAL, "%s: out must not be NULL", fn);
    *out = NULL;
    if (!m)
        return mp__fail(MP_EINVAL, "%s: m must not be NULL", fn);
    size_t nl = name ? strnlen(name, MP_MANAGER_MAX_NAME + 1) : 0;
    if (name && (nl == 0 || nl > MP_MANAGER_MAX_NAME))
        return name_fail(fn, nl);
    mp__mbytes s = {name ? name : "", (uint32_t)nl};
    mp__mreq rq = {0};
    rq.op = MX_OPEN;
    rq.a = type;
    rq.b = param;
    rq.flags = flags;
    rq.str = &s;
    rq.nstr = 1;
    rq.tid = (uint32_t)mp__self_tid();
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = mp__mcall(m, &rq, &rp);
    mp__mrep_free(&rp);
    if (rc < 0)
        return rc;
    if (rp.a < 0 || rp.a >= MP_MANAGER_MAX_OBJECTS)
        return MP_EPROTO;
    mp__mobj *h = malloc(size);
    if (!h)
        return MP_ENOMEM;
    h->m = m;
    h->index = (uint32_t)rp.a;
    h->gen = (uint32_t)rp.b;
    h->type = type;
    *out = h;
    return 0;
}

#define HANDLE_NEW(T, mtype, param, flags) \
    return open_handle(__func__, m, name, (mtype), (param), (flags), sizeof(T), (void **)out)

/* ---- the manager's own calls -------------------------------------------------- */

static int by_name(const char *fn, mp_manager *m, uint16_t op, const char *name, int64_t *ra)
{
    if (!m)
        return mp__fail(MP_EINVAL, "%s: m must not be NULL", fn);
    if (!name)
        return mp__fail(MP_EINVAL, "%s: name must not be NULL", fn);
    size_t nl = strnlen(name, MP_MANAGER_MAX_NAME + 1);
    if (nl == 0 || nl > MP_MANAGER_MAX_NAME)
        return name_fail(fn, nl);
    mp__mbytes s = {name, (uint32_t)nl};
    mp__mreq rq = {0};
    rq.op = op;
    rq.str = &s;
    rq.nstr = 1;
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = mp__mcall(m, &rq, &rp);
    if (rc >= 0 && ra)
        *ra = rp.a;
    mp__mrep_free(&rp);
    return rc;
}

int mp_manager_type(mp_manager *m, const char *name)
{
    int64_t t = 0;
    int rc = by_name(__func__, m, MX_TYPE, name, &t);
    return rc < 0 ? rc : (int)t;
}

int mp_manager_remove(mp_manager *m, const char *name)
{
    return by_name(__func__, m, MX_REMOVE, name, NULL);
}

/* ---- dict ------------------------------------------------------------------------ */

int mp_mdict_new(mp_manager *m, const char *name, mp_mdict **out)
{
    HANDLE_NEW(mp_mdict, MP_MDICT, 0, 0);
}

void mp_mdict_free(mp_mdict *d)
{
    free(d);
}

static int dict_set(const char *fn, const mp__mobj *h, const char *key, const void *val, size_t len)
{
    mp__mbytes s[2];
    int rc = key_arg(fn, "key", key, &s[0]);
    if (rc < 0 || (rc = val_arg(fn, "val", val, len, &s[1])) < 0)
        return rc;
    mp__mrep rp;
    mp__mrep_init(&rp);
    rc = with_strs(h, MX_D_SET, s, 2, 0, 0, &rp);
    mp__mrep_free(&rp);
    return rc;
}

/* get and pop: op on key, the value into buf. */
static int dict_take(const char *fn, const mp__mobj *h, uint16_t op, const char *key, void *buf,
                     size_t cap, size_t *len)
{
    mp__mbytes s;
    int rc = key_arg(fn, "key", key, &s);
    if (rc < 0 || (!buf && cap))
        return rc < 0 ? rc : MP_EINVAL;
    mp__mrep rp;
    mp__mrep_init(&rp);
    rc = with_strs(h, op, &s, 1, 0, cap_arg(cap), &rp);
    rc = value_out(rc, &rp, buf, cap, len);
    mp__mrep_free(&rp);
    return rc;
}

static int dict_get_alloc(const char *fn, const mp__mobj *h, const char *key, void **val,
                          size_t *len)
{
    mp__mbytes s;
    if (!val)
        return MP_EINVAL;
    *val = NULL;
    int rc = key_arg(fn, "key", key, &s);
    if (rc < 0)
        return rc;
    mp__mrep rp;
    mp__mrep_init(&rp);
    rc = with_strs(h, MX_D_GET, &s, 1, 0, MP_MANAGER_MAX_VALUE, &rp);
    rc = value_alloc(rc, &rp, val, len);
    mp__mrep_free(&rp);
    return rc;
}

static int dict_keyed(const char *fn, const mp__mobj *h, uint16_t op, const char *key, int64_t a,
                      int64_t *ra)
{
    mp__mbytes s;
    int rc = key_arg(fn, "key", key, &s);
    if (rc < 0)
        return rc;
    mp__mrep rp;
    mp__mrep_init(&rp);
    rc = with_strs(h, op, &s, 1, a, 0, &rp);
    if (rc >= 0 && ra)
        *ra = rp.a;
    mp__mrep_free(&rp);
    return rc;
}

static int dict_list(const mp__mobj *h, uint16_t op, int shape, mp_mitems **out)
{
    if (!out)
        return MP_EINVAL;
    *out = NULL;
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = with_strs(h, op, NULL, 0, 0, 0, &rp);
    if (rc >= 0)
        rc = items_build(&rp, shape, out);
    mp__mrep_free(&rp);
    return rc;
}

int mp_mdict_set(mp_mdict *d, const char *key, const void *val, size_t len)
{
    return dict_set(__func__, d ? &d->o : NULL, key, val, len);
}

int mp_mdict_get(mp_mdict *d, const char *key, void *buf, size_t cap, size_t *len)
{
    return dict_take(__func__, d ? &d->o : NULL, MX_D_GET, key, buf, cap, len);
}

int mp_mdict_get_alloc(mp_mdict *d, const char *key, void **val, size_t *len)
{
    return dict_get_alloc(__func__, d ? &d->o : NULL, key, val, len);
}

int mp_mdict_del(mp_mdict *d, const char *key)
{
    return dict_keyed(__func__, d ? &d->o : NULL, MX_D_DEL, key, 0, NULL);
}

int mp_mdict_contains(mp_mdict *d, const char *key)
{
    int64_t r = 0;
    int rc = dict_keyed(__func__, d ? &d->o : NULL, MX_D_HAS, key, 0, &r);
    return rc < 0 ? rc : (int)r;
}

int mp_mdict_len(mp_mdict *d)
{
    int64_t n = 0;
    int rc = simple(d ? &d->o : NULL, MX_D_LEN, 0, 0, &n);
    return rc < 0 ? rc : (n > INT32_MAX ? INT32_MAX : (int)n);
}

int mp_mdict_pop(mp_mdict *d, const char *key, void *buf, size_t cap, size_t *len)
{
    return dict_take(__func__, d ? &d->o : NULL, MX_D_POP, key, buf, cap, len);
}

int mp_mdict_setdefault(mp_mdict *d, const char *key, const void *dflt, size_t dlen, void *buf,
                        size_t cap, size_t *len)
{
    mp__mbytes s[2];
    int rc = key_arg(__func__, "key", key, &s[0]);
    if (rc < 0 || (rc = val_arg(__func__, "dflt", dflt, dlen, &s[1])) < 0)
        return rc;
    if (!buf && cap)
        return MP_EINVAL;
    mp__mrep rp;
    mp__mrep_init(&rp);
    rc = with_strs(d ? &d->o : NULL, MX_D_SETDEFAULT, s, 2, 0, buf ? cap_arg(cap) : INT64_MAX, &rp);
    int64_t inserted = rp.b;
    if (buf)
        rc = value_out(rc, &rp, buf, cap, len);
    mp__mrep_free(&rp);
    return rc < 0 ? rc : (int)inserted;
}

int mp_mdict_update(mp_mdict *d, const mp_mitem *items, size_t n)
{
    if ((!items && n) || n > MP_MANAGER_MAX_BATCH)
        return MP_EINVAL;
    mp__mbytes s[2 * MP_MANAGER_MAX_BATCH];
    for (size_t i = 0; i < n; i++) {
        int rc = key_arg(__func__, "items[i].key", items[i].key, &s[2 * i]);
        if (rc < 0 || (rc = val_arg(__func__, "items[i].value", items[i].value, items[i].len,
                                    &s[2 * i + 1])) < 0)
            return rc;
    }
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = with_strs(d ? &d->o : NULL, MX_D_UPDATE, s, (uint32_t)(2 * n), 0, 0, &rp);
    mp__mrep_free(&rp);
    return rc;
}

int mp_mdict_clear(mp_mdict *d)
{
    return simple(d ? &d->o : NULL, MX_D_CLEAR, 0, 0, NULL);
}

int mp_mdict_keys(mp_mdict *d, mp_mitems **out)
{
    return dict_list(d ? &d->o : NULL, MX_D_KEYS, ONLY_KEYS, out);
}

int mp_mdict_items(mp_mdict *d, mp_mitems **out)
{
    return dict_list(d ? &d->o : NULL, MX_D_ITEMS, PAIRS, out);
}

int mp_mdict_incr(mp_mdict *d, const char *key, int64_t delta, int64_t *result)
{
    int64_t r = 0;
    int rc = dict_keyed(__func__, d ? &d->o : NULL, MX_D_INCR, key, delta, &r);
    if (rc >= 0 && result)
        *result = r;
    return rc < 0 ? rc : 0;
}

int mp_mdict_set_i64(mp_mdict *d, const char *key, int64_t x)
{
    uint8_t b[8];
    mw_put64(b, (uint64_t)x);
    return mp_mdict_set(d, key, b, sizeof b);
}

int mp_mdict_get_i64(mp_mdict *d, const char *key, int64_t *x)
{
    uint8_t b[8];
    size_t len = 0;
    if (!x)
        return MP_EINVAL;
    int rc = mp_mdict_get(d, key, b, sizeof b, &len);
    if (rc == MP_EMSGSIZE || (rc == 0 && len != 8))
        return MP_EINVAL;
    if (rc == 0)
        *x = (int64_t)mw_get64(b);
    return rc;
}

int mp_mdict_cas(mp_mdict *d, const char *key, const void *expected, size_t elen,
                 const void *desired, size_t dlen)
{
    mp__mbytes s[3];
    int rc = key_arg(__func__, "key", key, &s[0]);
    if (rc < 0 || (rc = val_arg(__func__, "desired", desired, dlen, &s[1])) < 0)
        return rc;
    if (expected && (rc = val_arg(__func__, "expected", expected, elen, &s[2])) < 0)
        return rc;
    mp__mreq rq = {0};
    rq.op = MX_D_CAS;
    rq.flags = expected ? MX_F_EXPECT : 0;
    rq.str = s;
    rq.nstr = expected ? 3 : 2;
    mp__mrep rp;
    mp__mrep_init(&rp);
    rc = call(d ? &d->o : NULL, &rq, &rp);
    int64_t swapped = rp.a;
    mp__mrep_free(&rp);
    return rc < 0 ? rc : (int)(swapped != 0);
}

/* One transaction result into its operation (see store_dict.c's dtxn). */
static void txn_unpack(mp_mdict_op *op, const uint8_t *p, uint32_t n)
{
    if (n < 12) {
        op->status = MP_EPROTO;
        return;
    }
    op->status = (int32_t)mw_get32(p);
    op->result = (int64_t)mw_get64(p + 4);
    if (op->kind == MP_MTXN_GET) {
        op->out_len = op->status == MP_EMSGSIZE ? (size_t)op->result : n - 12;
        if (op->status == 0 && n - 12 <= op->cap && op->buf && n > 12)
            memcpy(op->buf, p + 12, n - 12);
        else if (op->status == 0 && n - 12 > op->cap)
            op->status = MP_EMSGSIZE;
    }
}

static int txn_pack(const char *fn, mp_mdict_op *ops, size_t n, uint8_t *desc, mp__mbytes *s)
{
    for (size_t i = 0; i < n; i++) {
        mp_mdict_op *op = &ops[i];
        op->status = 0;
        op->out_len = 0;
        op->result = 0;
        if (op->kind < MP_MTXN_SET || op->kind > MP_MTXN_GET) {
            op->status = MP_EINVAL;
            return mp__fail(MP_EINVAL, "%s: ops[%zu].kind must be an mp_mdict_txn_kind (got %d)",
                            fn, i, op->kind);
        }
        if (!op->buf && op->cap) {
            op->status = MP_EINVAL;
            return mp__fail(MP_EINVAL, "%s: ops[%zu].buf must not be NULL when its cap is %zu", fn,
                            i, op->cap);
        }
        bool absent = op->kind == MP_MTXN_CHECK && !op->value;
        bool has_value = op->kind == MP_MTXN_SET || (op->kind == MP_MTXN_CHECK && !absent);
        int rc = key_arg(fn, "ops[i].key", op->key, &s[1 + 2 * i]);
        if (rc == 0)
            rc = val_arg(fn, "ops[i].value", has_value ? op->value : NULL, has_value ? op->len : 0,
                         &s[2 + 2 * i]);
        if (rc < 0) {
            op->status = rc;
            return rc;
        }
        uint8_t *e = desc + 17 * i;
        e[0] = (uint8_t)(op->kind | (absent ? 0x80 : 0));
        mw_put64(e + 1, (uint64_t)op->delta);
        mw_put64(e + 9, (uint64_t)cap_arg(op->cap));
    }
    return 0;
}

int mp_mdict_txn(mp_mdict *d, mp_mdict_op *ops, size_t n)
{
    if (!ops || n == 0 || n > MP_MANAGER_MAX_TXN)
        return MP_EINVAL;
    uint8_t desc[17 * MP_MANAGER_MAX_TXN];
    mp__mbytes s[1 + 2 * MP_MANAGER_MAX_TXN];
    int rc = txn_pack(__func__, ops, n, desc, s);
    if (rc < 0)
        return rc;
    s[0].p = desc;
    s[0].len = (uint32_t)(17 * n);
    mp__mrep rp;
    mp__mrep_init(&rp);
    rc = with_strs(d ? &d->o : NULL, MX_D_TXN, s, (uint32_t)(1 + 2 * n), 0, 0, &rp);
    if (rc < 0 || rp.a == 0) {
        if (rp.b >= 0 && (size_t)rp.b < n)
            ops[rp.b].status = rc < 0 ? rc : MP_ECANCELED;
        mp__mrep_free(&rp);
        return rc < 0 ? rc : 0;
    }
    size_t pos = 0;
    const uint8_t *p;
    uint32_t len;
    for (size_t i = 0; i < n; i++) {
        if (!mp__mrep_next(&rp, &pos, &p, &len)) {
            mp__mrep_free(&rp);
            return MP_EPROTO;
        }
        txn_unpack(&ops[i], p, len);
    }
    mp__mrep_free(&rp);
    return 1;
}

/* ---- list ------------------------------------------------------------------------- */

int mp_mlist_new(mp_manager *m, const char *name, mp_mlist **out)
{
    HANDLE_NEW(mp_mlist, MP_MLIST, 0, 0);
}

void mp_mlist_free(mp_mlist *l)
{
    free(l);
}

/* An operation with one value and an index; returns the count it answers
 * (a length) or an error. */
static int list_value(const char *fn, const mp__mobj *h, uint16_t op, int64_t index,
                      const void *val, size_t len)
{
    mp__mbytes s;
    int rc = val_arg(fn, "val", val, len, &s);
    if (rc < 0)
        return rc;
    mp__mrep rp;
    mp__mrep_init(&rp);
    rc = with_strs(h, op, &s, 1, index, 0, &rp);
    int64_t n = rp.a;
    mp__mrep_free(&rp);
    if (rc < 0)
        return rc;
    return op == MX_L_APPEND || op == MX_L_INSERT ? (int)n : 0;
}

static int list_take(const mp__mobj *h, uint16_t op, int64_t index, void *buf, size_t cap,
                     size_t *len)
{
    if (!buf && cap)
        return MP_EINVAL;
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = with_strs(h, op, NULL, 0, index, cap_arg(cap), &rp);
    rc = value_out(rc, &rp, buf, cap, len);
    mp__mrep_free(&rp);
    return rc;
}

int mp_mlist_append(mp_mlist *l, const void *val, size_t len)
{
    return list_value(__func__, l ? &l->o : NULL, MX_L_APPEND, 0, val, len);
}

int mp_mlist_extend(mp_mlist *l, const mp_mitem *items, size_t n)
{
    if ((!items && n) || n > MP_MANAGER_MAX_BATCH)
        return MP_EINVAL;
    mp__mbytes s[MP_MANAGER_MAX_BATCH];
    for (size_t i = 0; i < n; i++) {
        int rc = val_arg(__func__, "items[i].value", items[i].value, items[i].len, &s[i]);
        if (rc < 0)
            return rc;
    }
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = with_strs(l ? &l->o : NULL, MX_L_EXTEND, s, (uint32_t)n, 0, 0, &rp);
    int64_t len = rp.a;
    mp__mrep_free(&rp);
    return rc < 0 ? rc : (int)len;
}

int mp_mlist_get(mp_mlist *l, int64_t index, void *buf, size_t cap, size_t *len)
{
    return list_take(l ? &l->o : NULL, MX_L_GET, index, buf, cap, len);
}

int mp_mlist_get_alloc(mp_mlist *l, int64_t index, void **val, size_t *len)
{
    if (!val)
        return MP_EINVAL;
    *val = NULL;
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = with_strs(l ? &l->o : NULL, MX_L_GET, NULL, 0, index, MP_MANAGER_MAX_VALUE, &rp);
    rc = value_alloc(rc, &rp, val, len);
    mp__mrep_free(&rp);
    return rc;
}

int mp_mlist_set(mp_mlist *l, int64_t index, const void *val, size_t len)
{
    return list_value(__func__, l ? &l->o : NULL, MX_L_SET, index, val, len);
}

int mp_mlist_insert(mp_mlist *l, int64_t index, const void *val, size_t len)
{
    int rc = list_value(__func__, l ? &l->o : NULL, MX_L_INSERT, index, val, len);
    return rc < 0 ? rc : 0;
}

int mp_mlist_pop(mp_mlist *l, int64_t index, void *buf, size_t cap, size_t *len)
{
    return list_take(l ? &l->o : NULL, MX_L_POP, index, buf, cap, len);
}

int mp_mlist_remove(mp_mlist *l, const void *val, size_t len)
{
    return list_value(__func__, l ? &l->o : NULL, MX_L_REMOVE, 0, val, len);
}

int mp_mlist_len(mp_mlist *l)
{
    int64_t n = 0;
    int rc = simple(l ? &l->o : NULL, MX_L_LEN, 0, 0, &n);
    return rc < 0 ? rc : (int)n;
}

int mp_mlist_clear(mp_mlist *l)
{
    return simple(l ? &l->o : NULL, MX_L_CLEAR, 0, 0, NULL);
}

int mp_mlist_slice(mp_mlist *l, int64_t start, int64_t stop, mp_mitems **out)
{
    if (!out)
        return MP_EINVAL;
    *out = NULL;
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = with_strs(l ? &l->o : NULL, MX_L_SLICE, NULL, 0, start, stop, &rp);
    if (rc >= 0)
        rc = items_build(&rp, ONLY_VALUES, out);
    mp__mrep_free(&rp);
    return rc;
}

/* ---- Namespace ---------------------------------------------------------------------- */

int mp_mnamespace_new(mp_manager *m, const char *name, mp_mnamespace **out)
{
    HANDLE_NEW(mp_mnamespace, MP_MNAMESPACE, 0, 0);
}

void mp_mnamespace_free(mp_mnamespace *ns)
{
    free(ns);
}

int mp_mnamespace_set(mp_mnamespace *ns, const char *field, const void *val, size_t len)
{
    return dict_set(__func__, ns ? &ns->o : NULL, field, val, len);
}

int mp_mnamespace_get(mp_mnamespace *ns, const char *field, void *buf, size_t cap, size_t *len)
{
    return dict_take(__func__, ns ? &ns->o : NULL, MX_D_GET, field, buf, cap, len);
}

int mp_mnamespace_del(mp_mnamespace *ns, const char *field)
{
    return dict_keyed(__func__, ns ? &ns->o : NULL, MX_D_DEL, field, 0, NULL);
}

int mp_mnamespace_items(mp_mnamespace *ns, mp_mitems **out)
{
    return dict_list(ns ? &ns->o : NULL, MX_D_ITEMS, PAIRS, out);
}

/* ---- locks, semaphores, conditions, events, barriers ------------------------------- */

int mp_mlock_new(mp_manager *m, const char *name, mp_mlock **out)
{
    HANDLE_NEW(mp_mlock, MP_MLOCK, 0, 0);
}

int mp_mrlock_new(mp_manager *m, const char *name, mp_mlock **out)
{
    HANDLE_NEW(mp_mlock, MP_MRLOCK, 0, 0);
}

void mp_mlock_free(mp_mlock *l)
{
    free(l);
}

int mp_mlock_acquire(mp_mlock *l, double timeout)
{
    return simple(l ? &l->o : NULL, MX_K_ACQUIRE, 0, timeout, NULL);
}

int mp_mlock_release(mp_mlock *l)
{
    return simple(l ? &l->o : NULL, MX_K_RELEASE, 0, 0, NULL);
}

int mp_msem_new(mp_manager *m, const char *name, unsigned value, mp_msem **out)
{
    if (value > INT32_MAX)
        return MP_EINVAL;
    HANDLE_NEW(mp_msem, MP_MSEM, value, 0);
}

int mp_msem_new_bounded(mp_manager *m, const char *name, unsigned value, mp_msem **out)
{
    if (value > INT32_MAX)
        return MP_EINVAL;
    HANDLE_NEW(mp_msem, MP_MBOUNDEDSEM, value, 0);
}

void mp_msem_free(mp_msem *s)
{
    free(s);
}

int mp_msem_acquire(mp_msem *s, double timeout)
{
    return simple(s ? &s->o : NULL, MX_S_ACQUIRE, 0, timeout, NULL);
}

int mp_msem_release(mp_msem *s)
{
    return simple(s ? &s->o : NULL, MX_S_RELEASE, 0, 0, NULL);
}

int mp_msem_value(mp_msem *s)
{
    int64_t v = 0;
    int rc = simple(s ? &s->o : NULL, MX_S_VALUE, 0, 0, &v);
    return rc < 0 ? rc : (int)v;
}

int mp_mcond_new(mp_manager *m, const char *name, mp_mcond **out)
{
    HANDLE_NEW(mp_mcond, MP_MCOND, 0, 0);
}

void mp_mcond_free(mp_mcond *c)
{
    free(c);
}

int mp_mcond_acquire(mp_mcond *c, double timeout)
{
    return simple(c ? &c->o : NULL, MX_K_ACQUIRE, 0, timeout, NULL);
}

int mp_mcond_release(mp_mcond *c)
{
    return simple(c ? &c->o : NULL, MX_K_RELEASE, 0, 0, NULL);
}

int mp_mcond_wait(mp_mcond *c, double timeout)
{
    return simple(c ? &c->o : NULL, MX_C_WAIT, 0, timeout, NULL);
}

int mp_mcond_notify(mp_mcond *c, int n)
{
    if (n < 0)
        return MP_EINVAL;
    return simple(c ? &c->o : NULL, MX_C_NOTIFY, n, 0, NULL);
}

int mp_mcond_notify_all(mp_mcond *c)
{
    return simple(c ? &c->o : NULL, MX_C_NOTIFY, -1, 0, NULL);
}

int mp_mevent_new(mp_manager *m, const char *name, mp_mevent **out)
{
    HANDLE_NEW(mp_mevent, MP_MEVENT, 0, 0);
}

void mp_mevent_free(mp_mevent *e)
{
    free(e);
}

int mp_mevent_set(mp_mevent *e)
{
    return simple(e ? &e->o : NULL, MX_E_SET, 0, 0, NULL);
}

int mp_mevent_clear(mp_mevent *e)
{
    return simple(e ? &e->o : NULL, MX_E_CLEAR, 0, 0, NULL);
}

int mp_mevent_is_set(mp_mevent *e)
{
    int64_t v = 0;
    int rc = simple(e ? &e->o : NULL, MX_E_ISSET, 0, 0, &v);
    return rc < 0 ? rc : (int)v;
}

int mp_mevent_wait(mp_mevent *e, double timeout)
{
    return simple(e ? &e->o : NULL, MX_E_WAIT, 0, timeout, NULL);
}

int mp_mbarrier_new(mp_manager *m, const char *name, unsigned parties, mp_mbarrier **out)
{
    if (parties == 0 || parties > INT32_MAX)
        return MP_EINVAL;
    HANDLE_NEW(mp_mbarrier, MP_MBARRIER, parties, 0);
}

void mp_mbarrier_free(mp_mbarrier *b)
{
    free(b);
}

int mp_mbarrier_wait(mp_mbarrier *b, double timeout)
{
    int64_t index = 0;
    int rc = simple(b ? &b->o : NULL, MX_B_WAIT, 0, timeout, &index);
    return rc < 0 ? rc : (int)index;
}

int mp_mbarrier_abort(mp_mbarrier *b)
{
    return simple(b ? &b->o : NULL, MX_B_ABORT, 0, 0, NULL);
}

int mp_mbarrier_reset(mp_mbarrier *b)
{
    return simple(b ? &b->o : NULL, MX_B_RESET, 0, 0, NULL);
}

int mp_mbarrier_broken(mp_mbarrier *b)
{
    int64_t v = 0;
    int rc = simple(b ? &b->o : NULL, MX_B_BROKEN, 0, 0, &v);
    return rc < 0 ? rc : (int)v;
}

/* ---- Queue -------------------------------------------------------------------------- */

int mp_mqueue_new(mp_manager *m, const char *name, unsigned maxsize, mp_mqueue **out)
{
    if (maxsize > INT32_MAX)
        return MP_EINVAL;
    HANDLE_NEW(mp_mqueue, MP_MQUEUE, maxsize, 0);
}

void mp_mqueue_free(mp_mqueue *q)
{
    free(q);
}

int mp_mqueue_put(mp_mqueue *q, const void *buf, size_t len, double timeout)
{
    mp__mbytes s;
    int rc = val_arg(__func__, "buf", buf, len, &s);
    if (rc < 0)
        return rc;
    mp__mreq rq = {0};
    rq.op = MX_Q_PUT;
    rq.str = &s;
    rq.nstr = 1;
    rq.timeout = timeout;
    mp__mrep rp;
    mp__mrep_init(&rp);
    rc = call(q ? &q->o : NULL, &rq, &rp);
    mp__mrep_free(&rp);
    return rc;
}

static int queue_get(mp_mqueue *q, int64_t cap, double timeout, mp__mrep *rp)
{
    mp__mreq rq = {0};
    rq.op = MX_Q_GET;
    rq.b = cap;
    rq.timeout = timeout;
    return call(q ? &q->o : NULL, &rq, rp);
}

int mp_mqueue_get(mp_mqueue *q, void *buf, size_t cap, size_t *len, double timeout)
{
    if (!buf && cap)
        return MP_EINVAL;
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = queue_get(q, cap_arg(cap), timeout, &rp);
    rc = value_out(rc, &rp, buf, cap, len);
    mp__mrep_free(&rp);
    return rc;
}

int mp_mqueue_get_alloc(mp_mqueue *q, void **buf, size_t *len, double timeout)
{
    if (!buf)
        return MP_EINVAL;
    *buf = NULL;
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = queue_get(q, MP_MANAGER_MAX_VALUE, timeout, &rp);
    rc = value_alloc(rc, &rp, buf, len);
    mp__mrep_free(&rp);
    return rc;
}

int mp_mqueue_qsize(mp_mqueue *q)
{
    int64_t n = 0;
    int rc = simple(q ? &q->o : NULL, MX_Q_SIZE, 0, 0, &n);
    return rc < 0 ? rc : (int)n;
}

/* ---- Value and Array ------------------------------------------------------------------ */

static bool float_type(int64_t t)
{
    return t == MP_TYPE_f || t == MP_TYPE_d;
}

int mp_mvalue_new(mp_manager *m, const char *name, mp_type type, mp_mvalue **out)
{
    if (type < MP_TYPE_b || type > MP_TYPE_c)
        return MP_EINVAL;
    HANDLE_NEW(mp_mvalue, MP_MVALUE, 0, (uint16_t)(type << 8));
}

void mp_mvalue_free(mp_mvalue *v)
{
    free(v);
}

/* A number from a Value or an Array element: int64 or double. */
static int number_get(const mp__mobj *h, uint16_t op, int64_t index, bool want_double, int64_t *i,
                      double *x)
{
    if ((want_double && !x) || (!want_double && !i))
        return MP_EINVAL;
    mp__mreq rq = {0};
    rq.op = op;
    rq.a = index;
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = call(h, &rq, &rp);
    mp__mrep_free(&rp);
    if (rc < 0)
        return rc;
    if (float_type(rp.b) != want_double)
        return MP_EINVAL;
    if (want_double)
        *x = rp.x;
    else
        *i = rp.a;
    return 0;
}

static int number_set(const mp__mobj *h, uint16_t op, int64_t index, bool is_double, int64_t i,
                      double x)
{
    mp__mreq rq = {0};
    rq.op = op;
    rq.a = index;
    rq.b = i;
    rq.x = x;
    rq.flags = is_double ? MX_F_DOUBLE : 0;
    mp__mrep rp;
    mp__mrep_init(&rp);
    int rc = call(h, &rq, &rp);
    mp__mrep_free(&rp);
    return rc;
}

int mp_mvalue_get_i64(mp_mvalue *v, int64_t *x)
{
    return number_get(v ? &v->o : NULL, MX_V_GET, 0, false, x, NULL);
}

int mp_mvalue_set_i64(mp_mvalue *v, int64_t x)
{
    return number_set(v ? &v->o : NULL, MX_V_SET, 0, false, x, 0);
}

int mp_mvalue_get_double(mp_mvalue *v, double *x)
{
    return number_get(v ? &v->o : NULL, MX_V_GET, 0, true, NULL, x);
}

int mp_mvalue_set_double(mp_mvalue *v, double x)
{
    return number_set(v ? &v->o : NULL, MX_V_SET, 0, true, 0, x);
}

int mp_mvalue_fetch_add(mp_mvalue *v, int64_t delta, int64_t *old)
{
    int64_t o = 0;
    int rc = simple(v ? &v->o : NULL, MX_V_ADD, delta, 0, &o);
    if (rc >= 0 && old)
        *old = o;
    return rc;
}

int mp_marray_new(mp_manager *m, const char *name, mp_type type, size_t n, mp_marray **out)
{
    if (type < MP_TYPE_b || type > MP_TYPE_c || n == 0 || n > ((size_t)1 << 20))
        return MP_EINVAL;
    HANDLE_NEW(mp_marray, MP_MARRAY, (int64_t)n, (uint16_t)(type << 8));
}

void mp_marray_free(mp_marray *a)
{
    free(a);
}

int mp_marray_len(mp_marray *a)
{
    int64_t n = 0;
    int rc = simple(a ? &a->o : NULL, MX_A_LEN, 0, 0, &n);
    return rc < 0 ? rc : (int)n;
}

static int64_t index_arg(size_t i)
{
    return i > (size_t)INT64_MAX ? -1 : (int64_t)i;
}

int mp_marray_get_i64(mp_marray *a, size_t i, int64_t *x)
{
    return number_get(a ? &a->o : NULL, MX_A_GET, index_arg(i), false, x, NULL);
}

int mp_marray_set_i64(mp_marray *a, size_t i, int64_t x)
{
    return number_set(a ? &a->o : NULL, MX_A_SET, index_arg(i), false, x, 0);
}

int mp_marray_get_double(mp_marray *a, size_t i, double *x)
{
    return number_get(a ? &a->o : NULL, MX_A_GET, index_arg(i), true, NULL, x);
}

int mp_marray_set_double(mp_marray *a, size_t i, double x)
{
    return number_set(a ? &a->o : NULL, MX_A_SET, index_arg(i), true, 0, x);
}

/* Reads or writes n elements of 8 bytes (int64 or double bits) in chunks. */
static int array_io(const mp__mobj *h, bool write, bool dbl, size_t start, size_t n, void *data)
{
    if (!data && n)
        return MP_EINVAL;
    uint8_t *bytes = data;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < ARRAY_CHUNK ? n - done : ARRAY_CHUNK;
        uint8_t buf[8 * 64], *wire = NULL;
        mp__mbytes s;
        mp__mreq rq = {0};
        rq.op = write ? MX_A_WRITE : MX_A_READ;
        rq.a = index_arg(start + done);
        rq.b = (int64_t)k;
        rq.flags = dbl ? MX_F_DOUBLE : 0;
        if (write) {
            wire = k <= 64 ? buf : malloc(8 * k);
            if (!wire)
                return MP_ENOMEM;
            for (size_t i = 0; i < k; i++) {
                uint64_t v;
                memcpy(&v, bytes + 8 * (done + i), 8);
                mw_put64(wire + 8 * i, v);
            }
            s.p = wire;
            s.len = (uint32_t)(8 * k);
            rq.str = &s;
            rq.nstr = 1;
        }
        mp__mrep rp;
        mp__mrep_init(&rp);
        int rc = call(h, &rq, &rp);
        if (wire && wire != buf)
            free(wire);
        size_t pos = 0;
        const uint8_t *p;
        uint32_t len;
        if (rc >= 0 && !write) {
            if (!mp__mrep_next(&rp, &pos, &p, &len) || len != 8 * k) {
                rc = MP_EPROTO;
            } else {
                for (size_t i = 0; i < k; i++) {
                    uint64_t v = mw_get64(p + 8 * i);
                    memcpy(bytes + 8 * (done + i), &v, 8);
                }
            }
        }
        mp__mrep_free(&rp);
        if (rc < 0)
            return rc;
        done += k;
    }
    return 0;
}

int mp_marray_read_i64(mp_marray *a, size_t start, size_t n, int64_t *out)
{
    return array_io(a ? &a->o : NULL, false, false, start, n, out);
}

int mp_marray_write_i64(mp_marray *a, size_t start, size_t n, const int64_t *in)
{
    return array_io(a ? &a->o : NULL, true, false, start, n, (void *)in);
}

int mp_marray_read_double(mp_marray *a, size_t start, size_t n, double *out)
{
    return array_io(a ? &a->o : NULL, false, true, start, n, out);
}

int mp_marray_write_double(mp_marray *a, size_t start, size_t n, const double *in)
{
    return array_io(a ? &a->o : NULL, true, true, start, n, (void *)in);
}
