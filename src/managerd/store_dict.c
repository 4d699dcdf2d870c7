/*
 * store_dict.c - dict and Namespace in the store: an open-addressing hash
 * table of entry offsets.
 *
 * DESIGN
 * An object's words: w[0] the table (an array of cap offsets), w[1] the
 * number of keys, w[2] the slots in use (keys and tombstones), w[3] cap, a
 * power of two.  A slot holds 0 (empty), 1 (a tombstone left by a
 * deletion, so that probe chains stay intact) or the offset of an entry:
 *   u64 hash, u32 key length, u32 value length, u32 value capacity, u32 0,
 *   the key and a NUL, padding to 8 bytes, the value.
 * Linear probing; the table doubles (or is rebuilt at its size when
 * tombstones crowd it) once three quarters of it is in use.  Rebuilding
 * writes a fresh table and swaps one word, so it logs a few words whatever
 * the table's size.
 *
 * A value is overwritten in place when the new one fits its entry and is
 * short (it is logged word by word: the log must hold the longest update
 * of MP_MANAGER_MAX_BATCH pairs); otherwise a new entry replaces the old.
 * That keeps a counter's or a small record's update free of allocation.
 *
 * Everything read from the table is checked (store.c, Trust): a bad
 * offset or length makes the call fail with MP_EPROTO.
 */
#define _GNU_SOURCE
#include "mgr.h"

#define ENT_HDR       24
#define MIN_CAP       8
#define MAX_CAP       ((uint64_t)1 << 26)
#define INPLACE_LIMIT 256

typedef struct ms_entry {
    uint64_t hash;
    uint32_t klen, vlen;
    uint32_t vcap, zero;
} ms_entry;

_Static_assert(sizeof(ms_entry) == ENT_HDR, "entry header");

/* A key as the request carries it. */
typedef struct dkey {
    const char *p;
    size_t len;
    uint64_t hash;
} dkey;

typedef struct dtab {
    uint64_t *slot;
    uint64_t cap;
} dtab;

static size_t value_off(size_t klen)
{
    return ENT_HDR + ((klen + 1 + 7) & ~(size_t)7);
}

/* The entry at off with its key and value, checked. */
static ms_entry *entry_at(const ms_store *s, uint64_t off, const char **key, uint8_t **val)
{
    ms_entry *e = mp__ms_at(s, off, ENT_HDR);
    if (!e || off % 8 || e->klen > MP_MANAGER_MAX_KEY || e->vcap > MP_MANAGER_MAX_VALUE ||
        e->vlen > e->vcap || !mp__ms_at(s, off, value_off(e->klen) + e->vcap))
        return NULL;
    if (key)
        *key = (const char *)e + ENT_HDR;
    if (val)
        *val = (uint8_t *)e + value_off(e->klen);
    return e;
}

static int table(const ms_store *s, const ms_obj *o, dtab *t)
{
    t->cap = o->w[3];
    t->slot = NULL;
    if (t->cap == 0 && o->w[0] == 0)
        return 0;
    if (t->cap < MIN_CAP || t->cap > MAX_CAP || (t->cap & (t->cap - 1)) || o->w[1] > t->cap ||
        o->w[2] > t->cap)
        return MP_EPROTO;
    t->slot = mp__ms_at(s, o->w[0], t->cap * 8);
    return t->slot ? 0 : MP_EPROTO;
}

/* Finds key: returns the slot index holding it (*found true), or the
 * index where it would go (the first tombstone or empty slot met).
 * Returns a negative error for a damaged table or a full one. */
static int64_t probe(const ms_store *s, const dtab *t, const dkey *k, bool *found)
{
    *found = false;
    if (!t->slot)
        return MP_ENOKEY;
    uint64_t mask = t->cap - 1;
    int64_t insert_at = -1;
    for (uint64_t i = 0, at = k->hash & mask; i < t->cap; i++, at = (at + 1) & mask) {
        uint64_t v = t->slot[at];
        if (v == 0)
            return insert_at >= 0 ? insert_at : (int64_t)at;
        if (v == 1) {
            if (insert_at < 0)
                insert_at = (int64_t)at;
            continue;
        }
        const char *key;
        ms_entry *e = entry_at(s, v, &key, NULL);
        if (!e)
            return MP_EPROTO;
        if (e->hash == k->hash && e->klen == k->len && memcmp(key, k->p, k->len) == 0) {
            *found = true;
            return (int64_t)at;
        }
    }
    return insert_at >= 0 ? insert_at : MP_EPROTO;
}

/* Looks key up.  Returns the entry offset (and its slot in *slotp), 0
 * when absent, or an error. */
static int64_t lookup(const ms_store *s, const ms_obj *o, const dkey *k, uint64_t **slotp)
{
    dtab t;
    if (slotp)
        *slotp = NULL;
    int rc = table(s, o, &t);
    if (rc < 0)
        return rc;
    if (!t.slot)
        return 0;
    bool found;
    int64_t at = probe(s, &t, k, &found);
    if (at == MP_ENOKEY || (at >= 0 && !found))
        return 0;
    if (at < 0)
        return at;
    if (slotp)
        *slotp = t.slot + at;
    return (int64_t)t.slot[at];
}

/* Rebuilds the table with newcap slots (see DESIGN). */
static int rebuild(ms_store *s, ms_obj *o, uint64_t newcap)
{
    dtab old;
    int rc = table(s, o, &old);
    if (rc < 0)
        return rc;
    if (newcap > MAX_CAP)
        return MP_ENOSPC;
    uint64_t off = mp__ms_alloc(s, newcap * 8);
    if (!off)
        return MP_ENOSPC;
    uint64_t *slot = (uint64_t *)(s->base + off);
    memset(slot, 0, newcap * 8);
    uint64_t n = 0;
    for (uint64_t i = 0; old.slot && i < old.cap; i++) {
        uint64_t v = old.slot[i];
        if (v <= 1)
            continue;
        ms_entry *e = entry_at(s, v, NULL, NULL);
        if (!e)
            return MP_EPROTO;
        uint64_t at = e->hash & (newcap - 1);
        while (slot[at])
            at = (at + 1) & (newcap - 1);
        slot[at] = v;
        n++;
    }
    mp__ms_set(s, &o->w[0], off);
    mp__ms_set(s, &o->w[1], n);
    mp__ms_set(s, &o->w[2], n);
    mp__ms_set(s, &o->w[3], newcap);
    if (old.slot)
        mp__ms_free(s, mp__ms_off(s, old.slot));
    return 0;
}

/* Room for one more key. */
static int reserve(ms_store *s, ms_obj *o)
{
    uint64_t cap = o->w[3], count = o->w[1];
    if ((o->w[2] + 1) * 4 <= cap * 3)
        return 0;
    uint64_t want = MIN_CAP;
    while (want * 3 < (count + 1) * 4 * 2 && want <= MAX_CAP)
        want *= 2;
    return rebuild(s, o, want);
}

/* A new entry for key and value.  Returns its offset, or 0. */
static uint64_t entry_new(ms_store *s, const dkey *k, const void *val, size_t len)
{
    size_t vcap = (len + 7) & ~(size_t)7;
    uint64_t off = mp__ms_alloc(s, value_off(k->len) + vcap);
    if (!off)
        return 0;
    uint8_t *p = s->base + off;
    ms_entry e = {k->hash, (uint32_t)k->len, (uint32_t)len, (uint32_t)vcap, 0};
    memcpy(p, &e, ENT_HDR);
    memcpy(p + ENT_HDR, k->p, k->len);
    memset(p + ENT_HDR + k->len, 0, value_off(k->len) - ENT_HDR - k->len);
    if (len)
        memcpy(p + value_off(k->len), val, len);
    return off;
}

/* key = val.  *created tells whether the key is new. */
static int dset(ms_store *s, ms_obj *o, const dkey *k, const void *val, size_t len, bool *created)
{
    uint64_t *slotp = NULL;
    int64_t cur = lookup(s, o, k, &slotp);
    if (cur < 0)
        return (int)cur;
    if (created)
        *created = cur == 0;
    if (cur > 0) {
        uint8_t *v = NULL;
        ms_entry *e = entry_at(s, (uint64_t)cur, NULL, &v);
        if (!e || !slotp)
            return MP_EPROTO;
        if (len <= e->vcap && len <= INPLACE_LIMIT) {
            if (len)
                mp__ms_write(s, v, val, len);
            uint32_t lens[2] = {e->klen, (uint32_t)len};
            mp__ms_write(s, &e->klen, lens, sizeof lens);
            return 0;
        }
        uint64_t off = entry_new(s, k, val, len);
        if (!off)
            return MP_ENOSPC;
        mp__ms_set(s, slotp, off);
        mp__ms_free(s, (uint64_t)cur);
        return 0;
    }
    int rc = reserve(s, o);
    if (rc < 0)
        return rc;
    dtab t;
    if ((rc = table(s, o, &t)) < 0)
        return rc;
    bool found;
    int64_t at = t.slot ? probe(s, &t, k, &found) : MP_EPROTO;
    if (at < 0)
        return (int)at;
    uint64_t off = entry_new(s, k, val, len);
    if (!off)
        return MP_ENOSPC;
    bool was_empty = t.slot[at] == 0;
    mp__ms_set(s, &t.slot[at], off);
    mp__ms_set(s, &o->w[1], o->w[1] + 1);
    if (was_empty)
        mp__ms_set(s, &o->w[2], o->w[2] + 1);
    return 0;
}

static int ddel(ms_store *s, ms_obj *o, const dkey *k)
{
    uint64_t *slotp = NULL;
    int64_t cur = lookup(s, o, k, &slotp);
    if (cur <= 0)
        return cur == 0 ? MP_ENOKEY : (int)cur;
    if (!slotp)
        return MP_EPROTO;
    mp__ms_set(s, slotp, 1);
    mp__ms_set(s, &o->w[1], o->w[1] - 1);
    mp__ms_free(s, (uint64_t)cur);
    return 0;
}

/* The value of key: *val and *len, or MP_ENOKEY. */
static int dget(const ms_store *s, const ms_obj *o, const dkey *k, const uint8_t **val, size_t *len)
{
    int64_t cur = lookup(s, o, k, NULL);
    if (cur <= 0)
        return cur == 0 ? MP_ENOKEY : (int)cur;
    uint8_t *v = NULL;
    ms_entry *e = entry_at(s, (uint64_t)cur, NULL, &v);
    if (!e)
        return MP_EPROTO;
    *val = v;
    *len = e->vlen;
    return 0;
}

/* Hands a value back: the bytes, or MP_EMSGSIZE with the size in a when
 * the caller's buffer (cap, in b of the request) is smaller. */
static int give(mp__mrep *rp, const uint8_t *val, size_t len, int64_t cap)
{
    rp->a = (int64_t)len;
    if ((uint64_t)len > (uint64_t)cap)
        return MP_EMSGSIZE;
    return mp__mrep_put(rp, val, len);
}

static bool key_ok(const mp__mbytes *b)
{
    return b->len >= 1 && b->len <= MP_MANAGER_MAX_KEY && !memchr(b->p, 0, b->len);
}

static bool value_ok(const mp__mbytes *b)
{
    return b->len <= MP_MANAGER_MAX_VALUE;
}

static int mkkey(const ms_store *s, const mp__mbytes *b, dkey *k)
{
    if (!key_ok(b))
        return MP_EINVAL;
    k->p = b->p;
    k->len = b->len;
    k->hash = mp__ms_hash(s, b->p, b->len);
    return 0;
}

static int64_t counter_of(const uint8_t *v)
{
    return (int64_t)mw_get64(v);
}

/* key += delta on an 8-byte counter.  *result gets the new value. */
static int dincr(ms_store *s, ms_obj *o, const dkey *k, int64_t delta, int64_t *result)
{
    const uint8_t *v = NULL;
    size_t len = 0;
    int rc = dget(s, o, k, &v, &len);
    int64_t x = 0;
    if (rc == 0) {
        if (len != 8)
            return MP_EINVAL;
        x = counter_of(v);
    } else if (rc != MP_ENOKEY) {
        return rc;
    }
    if ((delta > 0 && x > INT64_MAX - delta) || (delta < 0 && x < INT64_MIN - delta))
        return MP_EOVERFLOW;
    x += delta;
    uint8_t buf[8];
    mw_put64(buf, (uint64_t)x);
    *result = x;
    return dset(s, o, k, buf, 8, NULL);
}

/* Every key (and value) into rp.  Returns the count. */
static int dlist(const ms_store *s, const ms_obj *o, mp__mrep *rp, bool values)
{
    dtab t;
    int rc = table(s, o, &t);
    if (rc < 0)
        return rc;
    if (o->w[1] > MP_MANAGER_MAX_ITEMS)
        return MP_E2BIG;
    int n = 0;
    for (uint64_t i = 0; t.slot && i < t.cap; i++) {
        if (t.slot[i] <= 1)
            continue;
        const char *key;
        uint8_t *val;
        ms_entry *e = entry_at(s, t.slot[i], &key, &val);
        if (!e)
            return MP_EPROTO;
        if (n >= MP_MANAGER_MAX_ITEMS)
            return MP_E2BIG;
        if ((rc = mp__mrep_put(rp, key, e->klen)) < 0)
            return rc;
        if (values && (rc = mp__mrep_put(rp, val, e->vlen)) < 0)
            return rc;
        n++;
    }
    rp->a = n;
    return n;
}

/* Frees every entry and the table, committing after each block: a death
 * halfway leaks what is left, never damages anything. */
static void free_all(ms_store *s, uint64_t tab, uint64_t cap)
{
    uint64_t *slot = mp__ms_at(s, tab, cap * 8);
    for (uint64_t i = 0; slot && i < cap; i++) {
        if (slot[i] > 1) {
            mp__ms_free(s, slot[i]);
            mp__mstore_commit(s);
        }
    }
    if (slot)
        mp__ms_free(s, tab);
    mp__mstore_commit(s);
}

static int dclear(ms_store *s, ms_obj *o)
{
    dtab t;
    int rc = table(s, o, &t);
    if (rc < 0)
        return rc;
    uint64_t tab = o->w[0];
    for (int i = 0; i < 4; i++)
        mp__ms_set(s, &o->w[i], 0);
    mp__mstore_commit(s);
    if (t.slot)
        free_all(s, tab, t.cap);
    return 0;
}

/* ---- transactions ---------------------------------------------------------- */

/* One operation's result, as the reply carries it: i32 status, i64
 * result, the value (for GET). */
static int txn_result(mp__mrep *rp, int status, int64_t result, const uint8_t *val, size_t len)
{
    uint8_t *p = mp__mrep_add(rp, 12 + len);
    if (!p)
        return MP_ENOMEM;
    mw_put32(p, (uint32_t)status);
    mw_put64(p + 4, (uint64_t)result);
    if (len)
        memcpy(p + 12, val, len);
    return 0;
}

/* Runs one operation of a transaction.  Returns 0, 1 for a failed check,
 * or an error that aborts the transaction. */
static int txn_one(ms_store *s, ms_obj *o, uint8_t kind, int64_t delta, const mp__mbytes *kb,
                   const mp__mbytes *vb, int64_t cap, mp__mrep *rp)
{
    dkey k;
    bool absent = kind & 0x80;
    kind &= 0x7f;
    int rc = mkkey(s, kb, &k);
    if (rc < 0 || !value_ok(vb))
        return MP_EINVAL;
    const uint8_t *v = NULL;
    size_t len = 0;
    int64_t result = 0;
    switch (kind) {
    case MP_MTXN_SET:
        rc = dset(s, o, &k, vb->p, vb->len, NULL);
        return rc < 0 ? rc : txn_result(rp, 0, 0, NULL, 0);
    case MP_MTXN_DEL:
        rc = ddel(s, o, &k);
        if (rc < 0 && rc != MP_ENOKEY)
            return rc;
        return txn_result(rp, rc, 0, NULL, 0);
    case MP_MTXN_INCR:
        rc = dincr(s, o, &k, delta, &result);
        return rc < 0 ? rc : txn_result(rp, 0, result, NULL, 0);
    case MP_MTXN_CHECK:
        rc = dget(s, o, &k, &v, &len);
        if (rc < 0 && rc != MP_ENOKEY)
            return rc;
        if (absent ? rc == 0 : (rc != 0 || len != vb->len || memcmp(v, vb->p, len) != 0))
            return 1;
        return txn_result(rp, 0, 0, NULL, 0);
    case MP_MTXN_GET:
        rc = dget(s, o, &k, &v, &len);
        if (rc < 0 && rc != MP_ENOKEY)
            return rc;
        if (rc == 0 && (int64_t)len > cap)
            return txn_result(rp, MP_EMSGSIZE, (int64_t)len, NULL, 0);
        return txn_result(rp, rc, rc == 0 ? (int64_t)len : 0, rc == 0 ? v : NULL,
                          rc == 0 ? len : 0);
    default:
        return MP_EINVAL;
    }
}

/* str[0]: per operation u8 kind (0x80: value absent), i64 delta, i64
 * cap; then key and value strings.  Replies a = 1 (done) or 0 (a check
 * failed, b its index), one result string per operation when done. */
static int dtxn(mx_ctx *c, ms_obj *o, const mp__mreq *rq, mp__mrep *rp)
{
    const mp__mbytes *str = rq->str;
    size_t n = str[0].len / 17;
    if (n == 0 || n > MP_MANAGER_MAX_TXN || str[0].len % 17 || rq->nstr != 1 + 2 * n)
        return MP_EINVAL;
    const uint8_t *d = str[0].p;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = d + 17 * i;
        int rc = txn_one(c->s, o, e[0], (int64_t)mw_get64(e + 1), &str[1 + 2 * i], &str[2 + 2 * i],
                         (int64_t)mw_get64(e + 9), rp);
        if (rc != 0) {
            /* Nothing of it happened: undo the operations before. */
            mp__mstore_rollback(c->s);
            rp->len = 0;
            rp->nout = 0;
            rp->b = (int64_t)i;
            rp->a = 0;
            return rc > 0 ? 0 : rc;
        }
    }
    rp->a = 1;
    return 0;
}

/* ---- the operations -------------------------------------------------------- */

int mp__msd_init(ms_store *s, ms_obj *o)
{
    (void)s;
    for (int i = 0; i < 4; i++)
        mp__ms_set(s, &o->w[i], 0);
    return 0;
}

void mp__msd_destroy(ms_store *s, ms_obj *o)
{
    uint64_t tab = o->w[0], cap = o->w[3];
    if (tab && cap >= MIN_CAP && cap <= MAX_CAP)
        free_all(s, tab, cap);
}

static int d_setdefault(ms_store *s, ms_obj *o, const dkey *k, const mp__mreq *rq, mp__mrep *rp)
{
    const uint8_t *v = NULL;
    size_t len = 0;
    int rc = dget(s, o, k, &v, &len);
    if (rc == MP_ENOKEY) {
        if ((rc = dset(s, o, k, rq->str[1].p, rq->str[1].len, NULL)) < 0)
            return rc;
        rc = give(rp, rq->str[1].p, rq->str[1].len, rq->b);
        rp->b = 1;
        return rc;
    }
    if (rc < 0)
        return rc;
    rc = give(rp, v, len, rq->b);
    rp->b = 0;
    return rc;
}

static int d_cas(ms_store *s, ms_obj *o, const dkey *k, const mp__mreq *rq, mp__mrep *rp)
{
    const uint8_t *v = NULL;
    size_t len = 0;
    int rc = dget(s, o, k, &v, &len);
    if (rc < 0 && rc != MP_ENOKEY)
        return rc;
    bool match;
    if (rq->flags & MX_F_EXPECT) {
        if (rq->nstr < 3 || !value_ok(&rq->str[2]))
            return MP_EINVAL;
        match = rc == 0 && len == rq->str[2].len && memcmp(v, rq->str[2].p, len) == 0;
    } else {
        match = rc == MP_ENOKEY;
    }
    rp->a = match;
    if (!match)
        return 0;
    return dset(s, o, k, rq->str[1].p, rq->str[1].len, NULL);
}

static int d_update(ms_store *s, ms_obj *o, const mp__mreq *rq)
{
    if (rq->nstr % 2 || rq->nstr / 2 > MP_MANAGER_MAX_BATCH)
        return MP_EINVAL;
    for (uint32_t i = 0; i < rq->nstr; i += 2) {
        dkey k;
        int rc = mkkey(s, &rq->str[i], &k);
        if (rc < 0 || !value_ok(&rq->str[i + 1]))
            return MP_EINVAL;
        if ((rc = dset(s, o, &k, rq->str[i + 1].p, rq->str[i + 1].len, NULL)) < 0)
            return rc;
    }
    return 0;
}

/* Operations on one key: str[0] is the key. */
static int d_keyed(mx_ctx *c, ms_obj *o, const mp__mreq *rq, mp__mrep *rp)
{
    ms_store *s = c->s;
    dkey k;
    if (rq->nstr < 1 || mkkey(s, &rq->str[0], &k) < 0)
        return MP_EINVAL;
    bool two = rq->op == MX_D_SET || rq->op == MX_D_SETDEFAULT || rq->op == MX_D_CAS;
    if (two && (rq->nstr < 2 || !value_ok(&rq->str[1])))
        return MP_EINVAL;
    const uint8_t *v = NULL;
    size_t len = 0;
    int rc;
    switch (rq->op) {
    case MX_D_SET:
        return dset(s, o, &k, rq->str[1].p, rq->str[1].len, NULL);
    case MX_D_GET:
        rc = dget(s, o, &k, &v, &len);
        return rc < 0 ? rc : give(rp, v, len, rq->b);
    case MX_D_DEL:
        return ddel(s, o, &k);
    case MX_D_HAS:
        rc = dget(s, o, &k, &v, &len);
        rp->a = rc == 0;
        return rc == MP_ENOKEY ? 0 : rc;
    case MX_D_POP:
        rc = dget(s, o, &k, &v, &len);
        if (rc < 0 || (rc = give(rp, v, len, rq->b)) < 0)
            return rc;
        return ddel(s, o, &k);
    case MX_D_SETDEFAULT:
        return d_setdefault(s, o, &k, rq, rp);
    case MX_D_INCR:
        return dincr(s, o, &k, rq->a, &rp->a);
    case MX_D_CAS:
        return d_cas(s, o, &k, rq, rp);
    default:
        return MP_ENOTSUP;
    }
}

int mp__msd_op(mx_ctx *c, ms_obj *o, const mp__mreq *rq, mp__mrep *rp)
{
    switch (rq->op) {
    case MX_D_LEN:
        rp->a = (int64_t)o->w[1];
        return o->w[1] <= MAX_CAP ? 0 : MP_EPROTO;
    case MX_D_KEYS:
    case MX_D_ITEMS: {
        int rc = dlist(c->s, o, rp, rq->op == MX_D_ITEMS);
        return rc < 0 ? rc : 0;
    }
    case MX_D_UPDATE:
        return d_update(c->s, o, rq);
    case MX_D_CLEAR:
        return dclear(c->s, o);
    case MX_D_TXN:
        return dtxn(c, o, rq, rp);
    default:
        return d_keyed(c, o, rq, rp);
    }
}
