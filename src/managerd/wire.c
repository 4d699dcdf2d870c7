/*
 * wire.c - the manager's messages as bytes: requests, replies and the
 * three handshake messages, encoded and decoded.
 *
 * Everything here is a pure function of its input, so that a fuzzer can
 * drive it (tests/fuzz/).  Decoding trusts nothing: every length is
 * checked against what is left of the frame before it is used, every
 * count against a limit before anything is sized by it, and a frame must
 * be consumed exactly (trailing bytes are an error too).  The only memory
 * a decoder allocates is a reply's copy of its strings, bounded by the
 * frame.  All numbers are little-endian; doubles travel as their IEEE-754
 * bits.
 */
#define _GNU_SOURCE
#include "mgr.h"

/* ---- replies' strings -------------------------------------------------------- */

void mp__mrep_init(mp__mrep *r)
{
    r->status = 0;
    r->nout = 0;
    r->a = r->b = 0;
    r->x = 0;
    r->out = r->inl;
    r->len = 0;
    r->cap = sizeof r->inl;
}

void mp__mrep_free(mp__mrep *r)
{
    if (r->out != r->inl)
        free(r->out);
    r->out = r->inl;
    r->len = 0;
    r->cap = sizeof r->inl;
    r->nout = 0;
}

/* Room for n more bytes; never beyond what a frame can carry. */
static int reserve(mp__mrep *r, size_t n)
{
    if (n > MW_FRAME_LIMIT - MW_REP_HDR || r->len > MW_FRAME_LIMIT - MW_REP_HDR - n)
        return MP_E2BIG;
    if (r->len + n <= r->cap)
        return 0;
    size_t cap = r->cap * 2;
    while (cap < r->len + n)
        cap *= 2;
    uint8_t *p = r->out == r->inl ? malloc(cap) : realloc(r->out, cap);
    if (!p)
        return MP_ENOMEM;
    if (r->out == r->inl)
        memcpy(p, r->inl, r->len);
    r->out = p;
    r->cap = cap;
    return 0;
}

uint8_t *mp__mrep_add(mp__mrep *r, size_t len)
{
    if (len > UINT32_MAX || reserve(r, 4 + len) < 0)
        return NULL;
    uint8_t *p = r->out + r->len;
    mw_put32(p, (uint32_t)len);
    r->len += 4 + len;
    r->nout++;
    return p + 4;
}

int mp__mrep_put(mp__mrep *r, const void *p, size_t len)
{
    if (len > UINT32_MAX)
        return MP_E2BIG;
    int rc = reserve(r, 4 + len);
    if (rc < 0)
        return rc;
    uint8_t *d = mp__mrep_add(r, len);
    if (len)
        memcpy(d, p, len);
    return 0;
}

bool mp__mrep_next(const mp__mrep *r, size_t *pos, const uint8_t **p, uint32_t *len)
{
    if (*pos + 4 > r->len)
        return false;
    uint32_t n = mw_get32(r->out + *pos);
    if (n > r->len - *pos - 4)
        return false;
    *p = r->out + *pos + 4;
    *len = n;
    *pos += 4 + (size_t)n;
    return true;
}

/* ---- requests and replies ------------------------------------------------------ */

static uint64_t dbits(double x)
{
    uint64_t b;
    memcpy(&b, &x, 8);
    return b;
}

static double bitsd(uint64_t b)
{
    double x;
    memcpy(&x, &b, 8);
    return x;
}

/* Makes *buf hold at least need bytes. */
static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (!p)
        return MP_ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

int mp__wire_encode_req(const mp__mreq *rq, uint8_t **buf, size_t *cap, size_t room)
{
    size_t size = MW_REQ_HDR;
    if (rq->nstr > MX_MAX_STRS)
        return MP_E2BIG;
    for (uint32_t i = 0; i < rq->nstr; i++) {
        size += 4 + (size_t)rq->str[i].len;
        if (size > MW_FRAME_LIMIT)
            return MP_EMSGSIZE;
    }
    int rc = grow(buf, cap, 4 + size + room);
    if (rc < 0)
        return rc;
    uint8_t *p = *buf + 4;
    p[0] = MW_VERSION;
    p[1] = MW_KIND_REQ;
    p[2] = (uint8_t)rq->op;
    p[3] = (uint8_t)(rq->op >> 8);
    mw_put32(p + 4, rq->seq);
    mw_put32(p + 8, rq->obj);
    mw_put32(p + 12, rq->gen);
    mw_put32(p + 16, rq->tid);
    mw_put32(p + 20, (uint32_t)rq->flags | (uint32_t)rq->nstr << 16);
    mw_put64(p + 24, (uint64_t)rq->a);
    mw_put64(p + 32, (uint64_t)rq->b);
    mw_put64(p + 40, dbits(rq->x));
    mw_put64(p + 48, dbits(rq->timeout));
    size_t at = MW_REQ_HDR;
    for (uint32_t i = 0; i < rq->nstr; i++) {
        mw_put32(p + at, rq->str[i].len);
        if (rq->str[i].len)
            memcpy(p + at + 4, rq->str[i].p, rq->str[i].len);
        at += 4 + (size_t)rq->str[i].len;
    }
    return (int)size;
}

int mp__wire_decode_req(const uint8_t *buf, size_t len, mp__mreq *rq, mp__mbytes *strs)
{
    memset(rq, 0, sizeof *rq);
    rq->str = strs;
    if (len < MW_REQ_HDR)
        return MP_EPROTO;
    if (buf[1] != MW_KIND_REQ)
        return MP_EPROTO;
    rq->op = (uint16_t)(buf[2] | buf[3] << 8);
    rq->seq = mw_get32(buf + 4);
    if (buf[0] != MW_VERSION)
        return MP_EPROTO;
    rq->obj = mw_get32(buf + 8);
    rq->gen = mw_get32(buf + 12);
    rq->tid = mw_get32(buf + 16);
    uint32_t fl = mw_get32(buf + 20);
    rq->flags = (uint16_t)fl;
    uint32_t nstr = fl >> 16;
    rq->a = (int64_t)mw_get64(buf + 24);
    rq->b = (int64_t)mw_get64(buf + 32);
    rq->x = bitsd(mw_get64(buf + 40));
    rq->timeout = bitsd(mw_get64(buf + 48));
    if (nstr > MX_MAX_STRS)
        return MP_EPROTO;
    size_t at = MW_REQ_HDR;
    for (uint32_t i = 0; i < nstr; i++) {
        if (len - at < 4)
            return MP_EPROTO;
        uint32_t n = mw_get32(buf + at);
        at += 4;
        if (n > len - at)
            return MP_EPROTO;
        strs[i].p = buf + at;
        strs[i].len = n;
        at += n;
    }
    if (at != len)
        return MP_EPROTO;
    rq->nstr = nstr;
    return 0;
}

int mp__wire_encode_rep(uint16_t op, uint32_t seq, const mp__mrep *rp, uint8_t **buf, size_t *cap,
                        size_t room)
{
    size_t size = MW_REP_HDR + rp->len;
    if (size > MW_FRAME_LIMIT)
        return MP_EMSGSIZE;
    int rc = grow(buf, cap, 4 + size + room);
    if (rc < 0)
        return rc;
    uint8_t *p = *buf + 4;
    p[0] = MW_VERSION;
    p[1] = MW_KIND_REP;
    p[2] = (uint8_t)op;
    p[3] = (uint8_t)(op >> 8);
    mw_put32(p + 4, seq);
    mw_put32(p + 8, (uint32_t)rp->status);
    mw_put32(p + 12, rp->nout);
    mw_put64(p + 16, (uint64_t)rp->a);
    mw_put64(p + 24, (uint64_t)rp->b);
    mw_put64(p + 32, dbits(rp->x));
    if (rp->len)
        memcpy(p + MW_REP_HDR, rp->out, rp->len);
    return (int)size;
}

int mp__wire_decode_rep(const uint8_t *buf, size_t len, uint16_t op, uint32_t seq, mp__mrep *rp)
{
    mp__mrep_free(rp);
    if (len < MW_REP_HDR || buf[0] != MW_VERSION || buf[1] != MW_KIND_REP)
        return MP_EPROTO;
    if ((uint16_t)(buf[2] | buf[3] << 8) != op || mw_get32(buf + 4) != seq)
        return MP_EPROTO;
    int32_t status = (int32_t)mw_get32(buf + 8);
    uint32_t nout = mw_get32(buf + 12);
    /* A status is 0, a count, or an error code; the server is checked too. */
    if (status < -4095 || nout > 2 * MP_MANAGER_MAX_ITEMS + MX_MAX_STRS)
        return MP_EPROTO;
    size_t at = MW_REP_HDR;
    for (uint32_t i = 0; i < nout; i++) {
        if (len - at < 4)
            return MP_EPROTO;
        uint32_t n = mw_get32(buf + at);
        if (n > len - at - 4)
            return MP_EPROTO;
        at += 4 + (size_t)n;
    }
    if (at != len)
        return MP_EPROTO;
    int rc = reserve(rp, len - MW_REP_HDR);
    if (rc < 0)
        return rc == MP_E2BIG ? MP_EPROTO : rc;
    if (len > MW_REP_HDR)
        memcpy(rp->out, buf + MW_REP_HDR, len - MW_REP_HDR);
    rp->len = len - MW_REP_HDR;
    rp->nout = nout;
    rp->status = status;
    rp->a = (int64_t)mw_get64(buf + 16);
    rp->b = (int64_t)mw_get64(buf + 24);
    rp->x = bitsd(mw_get64(buf + 32));
    return 0;
}

/* ---- the handshake --------------------------------------------------------------- */

static const uint8_t magic_mpmh[4] = {'M', 'P', 'M', 'H'};
static const uint8_t magic_mpma[4] = {'M', 'P', 'M', 'A'};
static const uint8_t magic_mpmw[4] = {'M', 'P', 'M', 'W'};

void mp__wire_hello_build(const mp__mhello *h, uint8_t out[MW_HELLO_LEN])
{
    memcpy(out, magic_mpmh, 4);
    out[4] = (uint8_t)h->version;
    out[5] = (uint8_t)(h->version >> 8);
    out[6] = (uint8_t)h->require;
    out[7] = (uint8_t)(h->require >> 8);
    out[8] = (uint8_t)h->offer;
    out[9] = (uint8_t)(h->offer >> 8);
    out[10] = (uint8_t)h->busy;
    out[11] = (uint8_t)(h->busy >> 8);
    memcpy(out + 12, h->nonce, MC_NONCE);
}

int mp__wire_hello_parse(const uint8_t *p, size_t len, mp__mhello *h)
{
    if (len != MW_HELLO_LEN || memcmp(p, magic_mpmh, 4) != 0)
        return MP_EPROTO;
    h->version = (uint16_t)(p[4] | p[5] << 8);
    h->require = (uint16_t)(p[6] | p[7] << 8);
    h->offer = (uint16_t)(p[8] | p[9] << 8);
    h->busy = (uint16_t)(p[10] | p[11] << 8);
    memcpy(h->nonce, p + 12, MC_NONCE);
    return 0;
}

void mp__wire_auth_build(const mp__mauth *a, uint8_t out[MW_AUTH_LEN])
{
    memcpy(out, magic_mpma, 4);
    out[4] = (uint8_t)a->version;
    out[5] = (uint8_t)(a->version >> 8);
    out[6] = (uint8_t)a->want;
    out[7] = (uint8_t)(a->want >> 8);
    memcpy(out + 8, a->nonce, MC_NONCE);
    memcpy(out + 8 + MC_NONCE, a->proof, MC_PROOF);
}

int mp__wire_auth_parse(const uint8_t *p, size_t len, mp__mauth *a)
{
    if (len != MW_AUTH_LEN || memcmp(p, magic_mpma, 4) != 0)
        return MP_EPROTO;
    a->version = (uint16_t)(p[4] | p[5] << 8);
    a->want = (uint16_t)(p[6] | p[7] << 8);
    memcpy(a->nonce, p + 8, MC_NONCE);
    memcpy(a->proof, p + 8 + MC_NONCE, MC_PROOF);
    return 0;
}

void mp__wire_welcome_build(const mp__mwelcome_msg *w, uint8_t out[MW_WELCOME_LEN])
{
    memcpy(out, magic_mpmw, 4);
    mw_put32(out + 4, (uint32_t)w->status);
    mw_put32(out + 8, w->agreed);
    mw_put32(out + 12, w->client_id);
    mw_put64(out + 16, w->store_size);
    memcpy(out + 24, w->proof, MC_PROOF);
}

int mp__wire_welcome_parse(const uint8_t *p, size_t len, mp__mwelcome_msg *w)
{
    if (len != MW_WELCOME_LEN || memcmp(p, magic_mpmw, 4) != 0)
        return MP_EPROTO;
    w->status = (int32_t)mw_get32(p + 4);
    w->agreed = mw_get32(p + 8);
    w->client_id = mw_get32(p + 12);
    w->store_size = mw_get64(p + 16);
    memcpy(w->proof, p + 24, MC_PROOF);
    return 0;
}
