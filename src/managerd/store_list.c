/*
 * store_list.c - list and Queue in the store: a ring of item offsets.
 *
 * DESIGN
 * An object's words: w[0] the ring (cap offsets), w[1] cap (0 or a power
 * of two), w[2] the ring index of item 0, w[3] the length; a Queue adds
 * w[4], its maxsize (0: none).  An item is a block: u32 length, u32 0, the
 * bytes.  Appending, and removing at either end, change two or three
 * logged words; growing copies the ring into a fresh block and swaps one
 * word.  Inserting or removing in the middle builds a fresh ring with the
 * change rather than moving items in place, so that an operation logs a
 * handful of words whatever the list's length (the undo log is bounded).
 *
 * A Queue is a list used at both ends, with waits: get sleeps while it is
 * empty and put while it holds maxsize items (store_sync.c's sleep), and
 * both wake the other side.
 */
#define _GNU_SOURCE
#include "mgr.h"

#define MIN_CAP 8
#define MAX_CAP ((uint64_t)1 << 26)

typedef struct ring {
    uint64_t *slot;
    uint64_t cap, head, len;
} ring;

static int ring_of(const ms_store *s, const ms_obj *o, ring *r)
{
    r->cap = o->w[1];
    r->head = o->w[2];
    r->len = o->w[3];
    r->slot = NULL;
    if (r->cap == 0)
        return o->w[0] == 0 && r->len == 0 && r->head == 0 ? 0 : MP_EPROTO;
    if (r->cap > MAX_CAP || (r->cap & (r->cap - 1)) || r->head >= r->cap || r->len > r->cap)
        return MP_EPROTO;
    r->slot = mp__ms_at(s, o->w[0], r->cap * 8);
    return r->slot ? 0 : MP_EPROTO;
}

static uint64_t *at(const ring *r, uint64_t i)
{
    return &r->slot[(r->head + i) & (r->cap - 1)];
}

/* The item at offset off: its bytes and length, checked. */
static const uint8_t *item_at(const ms_store *s, uint64_t off, size_t *len)
{
    const uint8_t *p = mp__ms_at(s, off, 8);
    if (!p)
        return NULL;
    uint32_t n = mw_get32(p);
    if (n > MP_MANAGER_MAX_VALUE || !mp__ms_at(s, off, 8 + (size_t)n))
        return NULL;
    *len = n;
    return p + 8;
}

static uint64_t item_new(ms_store *s, const void *val, size_t len)
{
    uint64_t off = mp__ms_alloc(s, 8 + len);
    if (!off)
        return 0;
    uint8_t *p = s->base + off;
    mw_put32(p, (uint32_t)len);
    mw_put32(p + 4, 0);
    if (len)
        memcpy(p + 8, val, len);
    return off;
}

/* Replaces the ring with a fresh one of cap slots holding the items of r,
 * with item `val` (an offset, or 0 for none) inserted at index ins and
 * the item at index skip left out (-1: none). */
static int rebuild(ms_store *s, ms_obj *o, const ring *r, uint64_t cap, int64_t ins, uint64_t val,
                   int64_t skip)
{
    if (cap > MAX_CAP)
        return MP_ENOSPC;
    uint64_t off = mp__ms_alloc(s, cap * 8);
    if (!off)
        return MP_ENOSPC;
    uint64_t *slot = (uint64_t *)(s->base + off), n = 0;
    for (uint64_t i = 0; i <= r->len; i++) {
        if (val && (int64_t)i == ins)
            slot[n++] = val;
        if (i < r->len && (int64_t)i != skip)
            slot[n++] = *at(r, i);
    }
    if (n > cap)
        return MP_EPROTO;
    mp__ms_set(s, &o->w[0], off);
    mp__ms_set(s, &o->w[1], cap);
    mp__ms_set(s, &o->w[2], 0);
    mp__ms_set(s, &o->w[3], n);
    if (r->slot)
        mp__ms_free(s, mp__ms_off(s, r->slot));
    return 0;
}

static int append(ms_store *s, ms_obj *o, const void *val, size_t len)
{
    ring r;
    int rc = ring_of(s, o, &r);
    if (rc < 0)
        return rc;
    if (r.len >= (uint64_t)INT32_MAX)
        return MP_ENOSPC;
    uint64_t item = item_new(s, val, len);
    if (!item)
        return MP_ENOSPC;
    if (r.len == r.cap)
        return rebuild(s, o, &r, r.cap ? r.cap * 2 : MIN_CAP, (int64_t)r.len, item, -1);
    mp__ms_set(s, at(&r, r.len), item);
    mp__ms_set(s, &o->w[3], r.len + 1);
    return 0;
}

/* Removes item i (an index already checked) and frees it.  Returns 0. */
static int remove_at(ms_store *s, ms_obj *o, const ring *r, uint64_t i)
{
    uint64_t item = *at(r, i);
    int rc = 0;
    if (i == r->len - 1) {
        mp__ms_set(s, &o->w[3], r->len - 1);
    } else if (i == 0) {
        mp__ms_set(s, &o->w[2], (r->head + 1) & (r->cap - 1));
        mp__ms_set(s, &o->w[3], r->len - 1);
    } else {
        rc = rebuild(s, o, r, r->cap, -1, 0, (int64_t)i);
    }
    if (rc == 0)
        mp__ms_free(s, item);
    return rc;
}

/* Python's index rules: negative counts from the end. */
static int index_of(int64_t i, uint64_t len, uint64_t *out)
{
    if (i < 0)
        i += (int64_t)len;
    if (i < 0 || (uint64_t)i >= len)
        return MP_ERANGE;
    *out = (uint64_t)i;
    return 0;
}

static int give(mp__mrep *rp, const uint8_t *val, size_t len, int64_t cap)
{
    rp->a = (int64_t)len;
    if ((uint64_t)len > (uint64_t)cap)
        return MP_EMSGSIZE;
    return mp__mrep_put(rp, val, len);
}

/* Hands item i back and, when pop, removes it. */
static int take(ms_store *s, ms_obj *o, const ring *r, uint64_t i, int64_t cap, bool pop,
                mp__mrep *rp)
{
    size_t len;
    const uint8_t *v = item_at(s, *at(r, i), &len);
    if (!v)
        return MP_EPROTO;
    int rc = give(rp, v, len, cap);
    if (rc < 0 || !pop)
        return rc;
    return remove_at(s, o, r, i);
}

static int slice(ms_store *s, const ring *r, int64_t start, int64_t stop, mp__mrep *rp)
{
    int64_t len = (int64_t)r->len;
    if (start < 0)
        start = start + len < 0 ? 0 : start + len;
    if (stop < 0)
        stop = stop + len < 0 ? 0 : stop + len;
    if (start > len)
        start = len;
    if (stop > len)
        stop = len;
    if (stop - start > MP_MANAGER_MAX_ITEMS)
        return MP_E2BIG;
    for (int64_t i = start; i < stop; i++) {
        size_t n;
        const uint8_t *v = item_at(s, *at(r, (uint64_t)i), &n);
        if (!v)
            return MP_EPROTO;
        int rc = mp__mrep_put(rp, v, n);
        if (rc < 0)
            return rc;
    }
    rp->a = stop > start ? stop - start : 0;
    return 0;
}

static int lremove(ms_store *s, ms_obj *o, const ring *r, const mp__mbytes *val)
{
    for (uint64_t i = 0; i < r->len; i++) {
        size_t n;
        const uint8_t *v = item_at(s, *at(r, i), &n);
        if (!v)
            return MP_EPROTO;
        if (n == val->len && memcmp(v, val->p, n) == 0)
            return remove_at(s, o, r, i);
    }
    return MP_ENOKEY;
}

static int insert(ms_store *s, ms_obj *o, const ring *r, int64_t i, const mp__mbytes *val)
{
    int64_t len = (int64_t)r->len;
    if (i < 0)
        i = i + len < 0 ? 0 : i + len;
    if (i >= len)
        return append(s, o, val->p, val->len);
    uint64_t item = item_new(s, val->p, val->len);
    if (!item)
        return MP_ENOSPC;
    uint64_t cap = r->len == r->cap ? r->cap * 2 : r->cap;
    return rebuild(s, o, r, cap, i, item, -1);
}

static int set_at(ms_store *s, const ring *r, int64_t index, const mp__mbytes *val)
{
    uint64_t i;
    int rc = index_of(index, r->len, &i);
    if (rc < 0)
        return rc;
    uint64_t item = item_new(s, val->p, val->len);
    if (!item)
        return MP_ENOSPC;
    uint64_t old = *at(r, i);
    mp__ms_set(s, at(r, i), item);
    mp__ms_free(s, old);
    return 0;
}

/* Frees the ring and every item, committing after each (a death halfway
 * leaks the rest, nothing worse). */
static void free_all(ms_store *s, const ring *r)
{
    for (uint64_t i = 0; r->slot && i < r->len; i++) {
        mp__ms_free(s, *at(r, i));
        mp__mstore_commit(s);
    }
    if (r->slot)
        mp__ms_free(s, mp__ms_off(s, r->slot));
    mp__mstore_commit(s);
}

static int lclear(ms_store *s, ms_obj *o, const ring *r)
{
    for (int i = 0; i < 4; i++)
        mp__ms_set(s, &o->w[i], 0);
    mp__mstore_commit(s);
    free_all(s, r);
    return 0;
}

int mp__msl_init(ms_store *s, ms_obj *o, int64_t maxsize)
{
    if (maxsize < 0 || maxsize > INT32_MAX)
        return MP_EINVAL;
    for (int i = 0; i < 4; i++)
        mp__ms_set(s, &o->w[i], 0);
    mp__ms_set(s, &o->w[4], (uint64_t)maxsize);
    return 0;
}

void mp__msl_destroy(ms_store *s, ms_obj *o)
{
    ring r;
    if (ring_of(s, o, &r) == 0)
        free_all(s, &r);
}

static bool value_ok(const mp__mbytes *b)
{
    return b->len <= MP_MANAGER_MAX_VALUE;
}

/* ---- Queue ------------------------------------------------------------------ */

static int qput(mx_ctx *c, ms_obj *o, const mp__mreq *rq, int64_t deadline)
{
    uint32_t gen = o->gen;
    for (;;) {
        uint64_t max = o->w[4], len = o->w[3];
        if (max == 0 || len < max)
            break;
        int rc = mp__mss_sleep(c, o, gen, deadline);
        if (rc < 0)
            return rc;
    }
    int rc = append(c->s, o, rq->str[0].p, rq->str[0].len);
    if (rc == 0)
        mp__mss_wake(o);
    return rc;
}

static int qget(mx_ctx *c, ms_obj *o, const mp__mreq *rq, mp__mrep *rp, int64_t deadline)
{
    uint32_t gen = o->gen;
    for (;;) {
        ring r;
        int rc = ring_of(c->s, o, &r);
        if (rc < 0)
            return rc;
        if (r.len > 0) {
            rc = take(c->s, o, &r, 0, rq->b, true, rp);
            if (rc == 0)
                mp__mss_wake(o);
            return rc;
        }
        if ((rc = mp__mss_sleep(c, o, gen, deadline)) < 0)
            return rc;
    }
}

/* ---- the operations ---------------------------------------------------------- */

static int lextend(ms_store *s, ms_obj *o, const mp__mreq *rq, mp__mrep *rp)
{
    if (rq->nstr > MP_MANAGER_MAX_BATCH)
        return MP_EINVAL;
    for (uint32_t i = 0; i < rq->nstr; i++) {
        if (!value_ok(&rq->str[i]))
            return MP_EINVAL;
        int rc = append(s, o, rq->str[i].p, rq->str[i].len);
        if (rc < 0)
            return rc;
    }
    rp->a = (int64_t)o->w[3];
    return 0;
}

int mp__msl_op(mx_ctx *c, ms_obj *o, const mp__mreq *rq, mp__mrep *rp)
{
    ms_store *s = c->s;
    ring r;
    int rc = ring_of(s, o, &r);
    if (rc < 0)
        return rc;
    bool needs_value = rq->op == MX_L_APPEND || rq->op == MX_L_SET || rq->op == MX_L_INSERT ||
                       rq->op == MX_L_REMOVE || rq->op == MX_Q_PUT;
    if (needs_value && (rq->nstr < 1 || !value_ok(&rq->str[0])))
        return MP_EINVAL;
    uint64_t i;
    switch (rq->op) {
    case MX_L_APPEND:
        if ((rc = append(s, o, rq->str[0].p, rq->str[0].len)) < 0)
            return rc;
        rp->a = (int64_t)o->w[3];
        return 0;
    case MX_L_EXTEND:
        return lextend(s, o, rq, rp);
    case MX_L_GET:
    case MX_L_POP:
        if ((rc = index_of(rq->a, r.len, &i)) < 0)
            return rc;
        return take(s, o, &r, i, rq->b, rq->op == MX_L_POP, rp);
    case MX_L_SET:
        return set_at(s, &r, rq->a, &rq->str[0]);
    case MX_L_INSERT:
        if ((rc = insert(s, o, &r, rq->a, &rq->str[0])) < 0)
            return rc;
        rp->a = (int64_t)o->w[3];
        return 0;
    case MX_L_REMOVE:
        return lremove(s, o, &r, &rq->str[0]);
    case MX_L_LEN:
    case MX_Q_SIZE:
        rp->a = (int64_t)r.len;
        return 0;
    case MX_L_CLEAR:
        rc = lclear(s, o, &r);
        mp__mss_wake(o);
        return rc;
    case MX_L_SLICE:
        return slice(s, &r, rq->a, rq->b, rp);
    case MX_Q_PUT:
        return qput(c, o, rq, mp__deadline(rq->timeout));
    case MX_Q_GET:
        return qget(c, o, rq, rp, mp__deadline(rq->timeout));
    default:
        return MP_ENOTSUP;
    }
}
