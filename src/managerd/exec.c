/*
 * exec.c - performs one operation: the same code for a local client (on
 * its own mapping of the store) and for the server (on behalf of a remote
 * client, with a request decoded from the wire).
 *
 * Every request is checked here before anything reads its arguments: the
 * operation must be known, its string count within the operation's range,
 * its timeout a number, and its object a live slot of a type the operation
 * applies to.  The per-type code then checks each string it uses (keys,
 * values, names) against the limits of mproc/manager.h.  Nothing of the
 * request is ever used as a pointer or an unchecked index.
 *
 * Atomicity: the store lock is held from the first read to the last write
 * (waits excepted, store_sync.c), and an operation that fails is rolled
 * back through the undo log, so that it changed nothing - unless it asks
 * to keep what it did (a barrier broken by a leaving party, a condition
 * wait that timed out and took its lock back).
 */
#define _GNU_SOURCE
#include "mgr.h"

#include <math.h>

enum { F_CTRL = 1, F_DICT, F_LIST, F_SYNC };

#define T(x)   (1u << (x))
#define DICTS  (T(MP_MDICT) | T(MP_MNAMESPACE))
#define LOCKS  (T(MP_MLOCK) | T(MP_MRLOCK) | T(MP_MCOND))
#define SEMS   (T(MP_MSEM) | T(MP_MBOUNDEDSEM))
#define LISTS  T(MP_MLIST)
#define QUEUES T(MP_MQUEUE)

typedef struct opdef {
    uint16_t types; /* the object types it applies to (none: no object) */
    uint8_t family;
    uint8_t min_str;
    uint16_t max_str;
} opdef;

static const opdef defs[MX__OP_END] = {
    [MX_PING] = {0, F_CTRL, 0, 0},
    [MX_OPEN] = {0, F_CTRL, 1, 1},
    [MX_REMOVE] = {0, F_CTRL, 1, 1},
    [MX_TYPE] = {0, F_CTRL, 1, 1},
    [MX_SHUTDOWN] = {0, F_CTRL, 0, 0},
    [MX_D_SET] = {DICTS, F_DICT, 2, 2},
    [MX_D_GET] = {DICTS, F_DICT, 1, 1},
    [MX_D_DEL] = {DICTS, F_DICT, 1, 1},
    [MX_D_HAS] = {DICTS, F_DICT, 1, 1},
    [MX_D_LEN] = {DICTS, F_DICT, 0, 0},
    [MX_D_KEYS] = {DICTS, F_DICT, 0, 0},
    [MX_D_ITEMS] = {DICTS, F_DICT, 0, 0},
    [MX_D_POP] = {DICTS, F_DICT, 1, 1},
    [MX_D_SETDEFAULT] = {DICTS, F_DICT, 2, 2},
    [MX_D_UPDATE] = {DICTS, F_DICT, 0, 2 * MP_MANAGER_MAX_BATCH},
    [MX_D_CLEAR] = {DICTS, F_DICT, 0, 0},
    [MX_D_INCR] = {DICTS, F_DICT, 1, 1},
    [MX_D_CAS] = {DICTS, F_DICT, 2, 3},
    [MX_D_TXN] = {T(MP_MDICT), F_DICT, 3, 1 + 2 * MP_MANAGER_MAX_TXN},
    [MX_L_APPEND] = {LISTS, F_LIST, 1, 1},
    [MX_L_EXTEND] = {LISTS, F_LIST, 0, MP_MANAGER_MAX_BATCH},
    [MX_L_GET] = {LISTS, F_LIST, 0, 0},
    [MX_L_SET] = {LISTS, F_LIST, 1, 1},
    [MX_L_INSERT] = {LISTS, F_LIST, 1, 1},
    [MX_L_POP] = {LISTS, F_LIST, 0, 0},
    [MX_L_REMOVE] = {LISTS, F_LIST, 1, 1},
    [MX_L_LEN] = {LISTS | QUEUES, F_LIST, 0, 0},
    [MX_L_CLEAR] = {LISTS | QUEUES, F_LIST, 0, 0},
    [MX_L_SLICE] = {LISTS, F_LIST, 0, 0},
    [MX_Q_PUT] = {QUEUES, F_LIST, 1, 1},
    [MX_Q_GET] = {QUEUES, F_LIST, 0, 0},
    [MX_Q_SIZE] = {QUEUES, F_LIST, 0, 0},
    [MX_K_ACQUIRE] = {LOCKS, F_SYNC, 0, 0},
    [MX_K_RELEASE] = {LOCKS, F_SYNC, 0, 0},
    [MX_S_ACQUIRE] = {SEMS, F_SYNC, 0, 0},
    [MX_S_RELEASE] = {SEMS, F_SYNC, 0, 0},
    [MX_S_VALUE] = {SEMS, F_SYNC, 0, 0},
    [MX_E_SET] = {T(MP_MEVENT), F_SYNC, 0, 0},
    [MX_E_CLEAR] = {T(MP_MEVENT), F_SYNC, 0, 0},
    [MX_E_ISSET] = {T(MP_MEVENT), F_SYNC, 0, 0},
    [MX_E_WAIT] = {T(MP_MEVENT), F_SYNC, 0, 0},
    [MX_C_WAIT] = {T(MP_MCOND), F_SYNC, 0, 0},
    [MX_C_NOTIFY] = {T(MP_MCOND), F_SYNC, 0, 0},
    [MX_B_WAIT] = {T(MP_MBARRIER), F_SYNC, 0, 0},
    [MX_B_ABORT] = {T(MP_MBARRIER), F_SYNC, 0, 0},
    [MX_B_RESET] = {T(MP_MBARRIER), F_SYNC, 0, 0},
    [MX_B_BROKEN] = {T(MP_MBARRIER), F_SYNC, 0, 0},
    [MX_V_GET] = {T(MP_MVALUE), F_SYNC, 0, 0},
    [MX_V_SET] = {T(MP_MVALUE), F_SYNC, 0, 0},
    [MX_V_ADD] = {T(MP_MVALUE), F_SYNC, 0, 0},
    [MX_A_LEN] = {T(MP_MARRAY), F_SYNC, 0, 0},
    [MX_A_GET] = {T(MP_MARRAY), F_SYNC, 0, 0},
    [MX_A_SET] = {T(MP_MARRAY), F_SYNC, 0, 0},
    [MX_A_READ] = {T(MP_MARRAY), F_SYNC, 0, 0},
    [MX_A_WRITE] = {T(MP_MARRAY), F_SYNC, 1, 1},
};

/* ---- objects by name ---------------------------------------------------------- */

/* A user's name: 1 to MP_MANAGER_MAX_NAME bytes, no NUL, not starting
 * with '#' (anonymous objects' names). */
static bool name_ok(const mp__mbytes *b)
{
    const char *p = b->p;
    return b->len >= 1 && b->len <= MP_MANAGER_MAX_NAME && p[0] != '#' && !memchr(p, 0, b->len);
}

static int64_t find(ms_store *s, const char *name, size_t len, uint32_t hash)
{
    for (uint64_t i = 0; i < s->max_objects; i++) {
        const ms_obj *o = &s->objs[i];
        if (o->type && o->hash == hash && memcmp(o->name, name, len) == 0 && o->name[len] == 0)
            return (int64_t)i;
    }
    return -1;
}

static int type_init(ms_store *s, ms_obj *o, const mp__mreq *rq)
{
    switch (o->type) {
    case MP_MDICT:
    case MP_MNAMESPACE:
        return mp__msd_init(s, o);
    case MP_MLIST:
        return mp__msl_init(s, o, 0);
    case MP_MQUEUE:
        return mp__msl_init(s, o, rq->b);
    default:
        return mp__mss_init(s, o, rq);
    }
}

static void type_destroy(ms_store *s, ms_obj *o, uint32_t type)
{
    switch (type) {
    case MP_MDICT:
    case MP_MNAMESPACE:
        mp__msd_destroy(s, o);
        return;
    case MP_MLIST:
    case MP_MQUEUE:
        mp__msl_destroy(s, o);
        return;
    case MP_MARRAY:
        mp__mss_destroy(s, o);
        return;
    default:
        return;
    }
}

/* Puts a new object of rq's type called name (len bytes) in a free slot. */
static int create(ms_store *s, const char *name, size_t len, uint32_t hash, const mp__mreq *rq,
                  mp__mrep *rp)
{
    ms_header *h = s->h;
    if (h->nobjects >= s->max_objects)
        return MP_ENOSPC;
    uint64_t i = 0;
    while (i < s->max_objects && s->objs[i].type != 0)
        i++;
    if (i == s->max_objects)
        return MP_ENOSPC;
    ms_obj *o = &s->objs[i];
    uint32_t gen = o->gen + 1 ? o->gen + 1 : 1;
    uint32_t head[4] = {(uint32_t)rq->a, gen, hash, 0};
    char nm[MP_MANAGER_MAX_NAME + 1] = {0};
    memcpy(nm, name, len);
    mp__ms_write(s, o, head, sizeof head);
    mp__ms_write(s, o->name, nm, sizeof nm);
    int rc = type_init(s, o, rq);
    if (rc < 0)
        return rc;
    mp__ms_set(s, &h->nobjects, h->nobjects + 1);
    rp->a = (int64_t)i;
    rp->b = gen;
    return 0;
}

static int open_obj(ms_store *s, const mp__mreq *rq, mp__mrep *rp)
{
    if (!mx_type_valid(rq->a))
        return MP_EINVAL;
    const mp__mbytes *nb = &rq->str[0];
    char anon[24];
    const char *name = nb->p;
    size_t len = nb->len;
    if (len == 0) {
        len = (size_t)snprintf(anon, sizeof anon, "#%llu", (unsigned long long)s->h->anon);
        mp__ms_set(s, &s->h->anon, s->h->anon + 1);
        name = anon;
    } else if (!name_ok(nb)) {
        return MP_EINVAL;
    }
    uint32_t hash = (uint32_t)mp__ms_hash(s, name, len);
    int64_t at = find(s, name, len, hash);
    if (at < 0)
        return create(s, name, len, hash, rq, rp);
    const ms_obj *o = &s->objs[at];
    if (o->type != (uint32_t)rq->a)
        return MP_ETYPE;
    rp->a = at;
    rp->b = o->gen;
    return 0;
}

static int remove_obj(ms_store *s, const mp__mbytes *nb)
{
    if (!name_ok(nb) && !(nb->len > 1 && nb->len <= MP_MANAGER_MAX_NAME &&
                          ((const char *)nb->p)[0] == '#' && !memchr(nb->p, 0, nb->len)))
        return MP_EINVAL;
    uint32_t hash = (uint32_t)mp__ms_hash(s, nb->p, nb->len);
    int64_t at = find(s, nb->p, nb->len, hash);
    if (at < 0)
        return MP_ENOOBJ;
    ms_obj *o = &s->objs[at];
    /* Unlisted first and committed: a death while its memory is freed
     * leaks what is left of it, and nothing can reach a half-freed object. */
    uint32_t type = o->type;
    uint32_t head[2] = {0, o->gen + 1 ? o->gen + 1 : 1};
    mp__ms_write(s, o, head, sizeof head);
    mp__ms_set(s, &s->h->nobjects, s->h->nobjects ? s->h->nobjects - 1 : 0);
    mp__mstore_commit(s);
    mp__mss_wake(o);
    type_destroy(s, o, type);
    for (int i = 0; i < 5; i++)
        mp__ms_set(s, &o->w[i], 0);
    return 0;
}

static int control(mx_ctx *c, const mp__mreq *rq, mp__mrep *rp)
{
    ms_store *s = c->s;
    if (rq->op == MX_PING)
        return 0;
    if (rq->op == MX_SHUTDOWN) {
        c->shutdown = true;
        return 0;
    }
    int rc = mp__mstore_lock(s);
    if (rc < 0)
        return rc;
    if (rq->op == MX_OPEN) {
        rc = open_obj(s, rq, rp);
    } else if (rq->op == MX_REMOVE) {
        rc = remove_obj(s, &rq->str[0]);
    } else {
        const mp__mbytes *nb = &rq->str[0];
        int64_t at = -1;
        if (nb->len >= 1 && nb->len <= MP_MANAGER_MAX_NAME && !memchr(nb->p, 0, nb->len))
            at = find(s, nb->p, nb->len, (uint32_t)mp__ms_hash(s, nb->p, nb->len));
        rp->a = at >= 0 ? s->objs[at].type : 0;
        rc = at >= 0 ? 0 : MP_ENOOBJ;
    }
    if (rc < 0)
        mp__mstore_rollback(s);
    mp__mstore_unlock(s);
    return rc;
}

/* ---- one operation --------------------------------------------------------- */

static int on_object(mx_ctx *c, const opdef *d, const mp__mreq *rq, mp__mrep *rp)
{
    int rc = mp__mstore_lock(c->s);
    if (rc < 0)
        return rc;
    ms_obj *o = mp__ms_obj(c->s, rq->obj, rq->gen);
    if (!o)
        rc = MP_ENOOBJ;
    else if (!mx_type_valid(o->type) || !(d->types & T(o->type)))
        rc = MP_ETYPE;
    else if (d->family == F_DICT)
        rc = mp__msd_op(c, o, rq, rp);
    else if (d->family == F_LIST)
        rc = mp__msl_op(c, o, rq, rp);
    else
        rc = mp__mss_op(c, o, rq, rp);
    if (c->unlocked)
        return rc;
    if (rc < 0 && !c->keep)
        mp__mstore_rollback(c->s);
    mp__mstore_unlock(c->s);
    return rc;
}

int mp__mexec(mx_ctx *c, const mp__mreq *rq, mp__mrep *rp)
{
    int rc;
    const opdef *d = rq->op < MX__OP_END ? &defs[rq->op] : NULL;
    c->unlocked = false;
    c->keep = false;
    if (!d || d->family == 0)
        rc = MP_ENOTSUP;
    else if (rq->nstr < d->min_str || rq->nstr > d->max_str || isnan(rq->timeout))
        rc = MP_EINVAL;
    else if (d->family == F_CTRL)
        rc = control(c, rq, rp);
    else
        rc = on_object(c, d, rq, rp);
    if (rc < 0 && rc != MP_EMSGSIZE) {
        /* An error carries no data. */
        rp->len = 0;
        rp->nout = 0;
    }
    rp->status = rc;
    return rc;
}

void mp__mexec_forget(ms_store *s, uint32_t client)
{
    if (mp__mstore_lock(s) < 0)
        return;
    for (uint64_t i = 0; i < s->max_objects; i++) {
        ms_obj *o = &s->objs[i];
        if (o->type)
            mp__mss_forget(s, o, client);
    }
    mp__mstore_unlock(s);
}
