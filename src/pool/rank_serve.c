/*
 * rank_serve.c - a worker rank of a rank pool: the loop that serves the
 * root inside mp_pool_new().
 *
 * DESIGN
 * Role.  Receives the root's messages in order (ranks.h: the wire), runs
 * each task and answers with its result; RT_STOP ends the loop, and so
 * does a root that is gone (the engine's MP_EPEERDEAD), so a worker never
 * waits forever for a root that will not speak again.
 *
 * Functions are found by their place in their module (fnref.c), as for
 * spawn: every rank runs the same binary.  An apply task writes its result
 * into an mp_buf as in a process pool's worker; the mp_buf calls need a
 * worker context with a result file (worker_buf.c), so the loop keeps one:
 * a memfd nobody else reads, whose "ring" is always empty (the result is
 * sent, then forgotten), so every result starts at offset 0 and the file
 * grows to the largest one.  mp_item_fail() finds the item running through
 * the same context.
 *
 * Threads.  The rank's calling thread only.
 */
#define _GNU_SOURCE
#include "fnref.h"
#include "ranks.h"
#include "worker.h"

#include <sys/mman.h>
#include <sys/stat.h>

typedef struct serve {
    mp_comm *dc;
    void *own_initarg;
    wctx c;
    mp__wslot slot;
    unsigned char *hdr, *data, *outs;
    size_t hdr_cap, data_cap, outs_cap;
    mp__fnref last_ref;
    void *last_fn;
    bool stopping;
    rp_fail *fails;
    size_t nfails, fails_cap;
    char *msg;
    size_t msg_len;
} serve;

/* Grows *buf to hold need bytes. */
static int grow(unsigned char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c = c > SIZE_MAX / 2 ? need : c * 2;
    void *n = realloc(*buf, c);
    if (!n)
        return MP_ENOMEM;
    *buf = n;
    *cap = c;
    return 0;
}

/* Receives the root's next message with tag (MP_ANY_TAG: any) into *buf. */
static int recv_root(serve *s, int tag, unsigned char **buf, size_t *cap, mp_comm_status *st)
{
    int rc;
    while ((rc = mp_comm_probe(s->dc, 0, tag, st, RP_WAIT)) == MP_ETIMEDOUT)
        continue;
    if (rc < 0)
        return rc;
    if ((rc = grow(buf, cap, st->count ? st->count : 1)) < 0)
        return rc;
    return mp_comm_recv(s->dc, *buf, *cap, 0, st->tag, st, RP_WAIT);
}

/* The task's function in this image, or NULL (*err says why). */
static void *task_fn(serve *s, const rp_task *t, const char *path, int *err)
{
    mp__fnref ref;
    memset(&ref, 0, sizeof ref);
    ref.offset = t->fn_off;
    memcpy(ref.path, path, t->path_len);
    if (s->last_fn && memcmp(&ref, &s->last_ref, sizeof ref) == 0)
        return s->last_fn;
    void *fn = NULL;
    *err = mp__fnref_resolve(&ref, &fn);
    if (*err < 0)
        return NULL;
    s->last_ref = ref;
    s->last_fn = fn;
    return fn;
}

static int send_result(serve *s, const rp_result *r, const void *data)
{
    size_t fl = s->nfails * sizeof(rp_fail);
    size_t len = sizeof *r + fl + r->msg_len;
    int rc = grow(&s->hdr, &s->hdr_cap, len);
    if (rc < 0)
        return rc;
    memcpy(s->hdr, r, sizeof *r);
    if (fl)
        memcpy(s->hdr + sizeof *r, s->fails, fl);
    if (r->msg_len)
        memcpy(s->hdr + sizeof *r + fl, s->msg, r->msg_len);
    rc = mp_comm_send(s->dc, s->hdr, len, 0, RT_RESULT, RP_WAIT);
    if (rc == 0 && r->data_len)
        rc = mp_comm_send(s->dc, data, r->data_len, 0, RT_RDATA, RP_WAIT);
    return rc;
}

/* Runs an apply task (or the initializer) and answers. */
static int run_apply(serve *s, const rp_task *t, void *fn)
{
    rp_result r = {RP_MAGIC, 0, t->tid, 0, 0, 0, 0};
    mp_buf b = {.c = &s->c, .where = MP__RES_INLINE};
    s->c.claims++;
    if (t->kind == RK_INIT) {
        void *arg = t->data_len ? s->data : s->own_initarg;
        int rc = fn ? ((mp_init_fn)fn)(arg) : 0;
        r.status = rc == 0 ? 0 : MP_EINIT;
        r.task_error = rc;
        return send_result(s, &r, NULL);
    }
    if (!fn)
        return MP_EPROTO;
    int rc = ((mp_task_fn)fn)(t->data_len ? s->data : NULL, (size_t)t->data_len, &b);
    if (rc == 0 && b.err)
        rc = b.err;
    if (rc != 0) {
        r.status = MP_ETASK;
        r.task_error = rc;
        /* What it appended is its message, as in a process pool. */
        if (b.len >= MP__POOL_MSG_MAX)
            b.len = MP__POOL_MSG_MAX - 1;
    }
    r.data_len = b.len;
    rc = send_result(s, &r, b.data);
    /* A huge result made the file huge: give the memory back. */
    if (s->c.res_cap > RES_KEEP_CAP)
        (void)mp__pool_res_resize(&s->c, RES_MIN_CAP);
    return rc;
}

/* Records the failure of item i (code), with its message if it is the
 * first. */
static void chunk_fail(serve *s, uint64_t i, int64_t code)
{
    if (s->nfails == s->fails_cap) {
        size_t cap = s->fails_cap ? s->fails_cap * 2 : 16;
        rp_fail *n = realloc(s->fails, cap * sizeof *n);
        if (!n)
            return; /* the root still sees the chunk's status */
        s->fails = n;
        s->fails_cap = cap;
    }
    s->fails[s->nfails++] = (rp_fail){i, code};
    const char *text = NULL;
    size_t len = mp__pool_item_msg_take(&s->c, &text);
    if (s->nfails == 1 && len) {
        s->msg = malloc(len);
        if (s->msg) {
            memcpy(s->msg, text, len);
            s->msg_len = len;
        }
    }
}

/* Runs a map chunk (items one by one, or one range call) and answers. */
static int run_chunk(serve *s, const rp_task *t, void *fn, const void *ctx)
{
    if (!fn)
        return MP_EPROTO;
    size_t out_len = (size_t)(t->count * t->out_size);
    int rc = grow(&s->outs, &s->outs_cap, out_len ? out_len : 1);
    if (rc < 0)
        return rc;
    s->nfails = 0;
    s->msg_len = 0;
    if (t->kind == RK_RANGE) {
        s->c.claims++;
        atomic_store_explicit(&s->slot.item, t->first, memory_order_relaxed);
        int code = ((mp_map_range_fn)fn)(s->data, s->outs, (size_t)t->count, ctx);
        for (uint64_t i = 0; code != 0 && i < t->count; i++)
            chunk_fail(s, i, code);
    } else {
        for (uint64_t i = 0; i < t->count; i++) {
            s->c.claims++;
            atomic_store_explicit(&s->slot.item, t->first + i, memory_order_relaxed);
            int code = ((mp_map_fn)fn)(s->data + i * t->in_size, s->outs + i * t->out_size, ctx);
            if (code != 0)
                chunk_fail(s, i, code);
        }
    }
    rp_result r = {RP_MAGIC, 0, t->tid, 0, out_len, s->nfails, s->msg_len};
    rc = send_result(s, &r, s->outs);
    free(s->msg);
    s->msg = NULL;
    s->msg_len = 0;
    return rc;
}

/* Whether a task header is what the root sends (its path and ctx within
 * len). */
static bool task_valid(const rp_task *t, size_t len)
{
    if (len < sizeof *t || t->magic != RP_MAGIC || t->kind < RK_INIT || t->kind > RK_RANGE)
        return false;
    if (t->path_len >= RP_PATH_MAX || t->path_len >= PATH_MAX || t->path_len > len - sizeof *t)
        return false;
    if (t->ctx_len > len - sizeof *t - t->path_len)
        return false;
    if (t->kind == RK_MAP || t->kind == RK_RANGE) {
        if (t->count == 0 || (t->in_size && t->count > UINT64_MAX / t->in_size) ||
            (t->out_size && t->count > SIZE_MAX / t->out_size))
            return false;
        return t->data_len == t->count * t->in_size;
    }
    return true;
}

/* Runs the task whose header is in s->hdr (len bytes) and data in
 * s->data.  Returns 0 or what ends the loop. */
static int run_task(serve *s, size_t len)
{
    rp_task t;
    memcpy(&t, s->hdr, sizeof t);
    const char *path = (const char *)s->hdr + sizeof t;
    const void *ctx = t.ctx_len ? s->hdr + sizeof t + t.path_len : NULL;
    int err = 0;
    void *fn = t.has_fn ? task_fn(s, &t, path, &err) : NULL;
    (void)len;
    if (t.has_fn && !fn) {
        /* Not found here: the same binary is not on this host. */
        rp_result r = {RP_MAGIC, err ? err : MP_ENOENT, t.tid, 0, 0, 0, 0};
        s->nfails = 0;
        return send_result(s, &r, NULL);
    }
    if (t.kind == RK_MAP || t.kind == RK_RANGE)
        return run_chunk(s, &t, fn, ctx);
    s->nfails = 0;
    return run_apply(s, &t, fn);
}

/* One message from the root.  Returns 1 when it said stop, 0 to go on,
 * or an error. */
static int serve_one(serve *s)
{
    mp_comm_status st;
    int rc = recv_root(s, MP_ANY_TAG, &s->hdr, &s->hdr_cap, &st);
    if (rc < 0)
        return rc;
    if (st.tag == RT_STOP)
        return 1;
    rp_task t;
    if (st.tag != RT_TASK || !task_valid((const rp_task *)(void *)s->hdr, st.count))
        return MP_EPROTO;
    memcpy(&t, s->hdr, sizeof t);
    if (t.data_len) {
        /* The header's bytes stay where they are: the data has its own
         * buffer. */
        mp_comm_status ds;
        rc = recv_root(s, RT_TDATA, &s->data, &s->data_cap, &ds);
        if (rc < 0)
            return rc;
        if (ds.count != t.data_len)
            return MP_EPROTO;
    }
    /* Tasks sent before a stop are dropped: look for one first. */
    if (!s->stopping && mp_comm_probe(s->dc, 0, RT_STOP, &st, 0) == 0)
        s->stopping = true;
    if (s->stopping)
        return 0;
    return run_task(s, st.count);
}

static int serve_init(serve *s)
{
    s->c.slot = &s->slot;
    s->c.fresh = true;
    s->c.res_fd = mp__memfd_new("rank-pool-res", 0);
    if (s->c.res_fd < 0)
        return s->c.res_fd;
    struct stat sb;
    if (fstat(s->c.res_fd, &sb) < 0)
        return -errno;
    s->c.res_dev = sb.st_dev;
    s->c.res_ino = sb.st_ino;
    /* Never NULL, so that offsets from them are defined even for empty
     * inputs and outputs. */
    int rc = grow(&s->data, &s->data_cap, 1);
    return rc < 0 ? rc : grow(&s->outs, &s->outs_cap, 1);
}

int mp__rpool_serve(mp_comm *dc, void *own_initarg)
{
    serve *s = calloc(1, sizeof *s);
    if (!s)
        return MP_ENOMEM;
    s->dc = dc;
    s->own_initarg = own_initarg;
    s->c.res_fd = -1;
    int rc = serve_init(s);
    wctx *prev = mp__pool_worker_self;
    mp__pool_worker_self = &s->c;
    while (rc == 0)
        rc = serve_one(s);
    if (rc == 1)
        rc = mp_comm_send(dc, "", 0, 0, RT_BYE, RP_WAIT);
    mp__pool_worker_self = prev;
    if (s->c.res)
        munmap(s->c.res, s->c.res_cap);
    mp__close(s->c.res_fd);
    free(s->hdr);
    free(s->data);
    free(s->outs);
    free(s->fails);
    free(s->msg);
    free(s);
    return rc;
}
