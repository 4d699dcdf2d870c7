/*
 * worker.h - the worker process's side of the pool: its context and the
 * interface between worker.c, worker_run.c and worker_buf.c.  Private to
 * src/pool/.
 *
 * DESIGN
 * One worker context (wctx) per worker process, on its stack: where the
 * shared regions are mapped in this process, and the worker's own view of
 * its rings.  Nothing here is shared; what is shared is in records.h.
 * Single-threaded: no locks.
 */
#ifndef MPROC_POOL_WORKER_H
#define MPROC_POOL_WORKER_H

#include "records.h"

#define SPIN_ROUNDS  200
#define RES_MIN_CAP  ((size_t)64 << 10)
#define RES_KEEP_CAP ((size_t)16 << 20)

typedef struct wctx {
    mp__pool_hdr *hdr;
    mp__wslot *slot;
    uint32_t w;
    uint32_t *order;
    mp__job *jobs;
    mp__fnent *fns;
    unsigned char *data;
    size_t data_mapped;
    int data_fd;
    int res_fd;
    unsigned char *res;
    size_t res_cap;
    uint64_t res_produced;
    size_t res_head;
    /* Set when a result was published at offset 0, as number
     * res_fresh_at: until the supervisor reads it (res_consumed passes
     * res_fresh_at), its res_tail is the end of older results - which the
     * result at 0 may reach past - and the unread ones start at 0. */
    bool res_fresh;
    uint64_t res_fresh_at;
    int ev_fd;
    bool fresh; /* forkserver or spawn: functions are found by reference */
    void *fn_cache[MP__POOL_FNS];
    uint64_t maxtasks, tasks;
    uint32_t done_head;
    uint64_t claims;
    uint64_t res_seen;      /* res_consumed when a wait for result space began */
    unsigned char *scratch; /* a RIN/ROUT map's slice buffers */
    size_t scratch_cap;
    /* The memory files as attached (a task may close their descriptors,
     * and the numbers may come back naming other files). */
    dev_t data_dev, res_dev;
    ino_t data_ino, res_ino;
    bool cut_off; /* a descriptor of the pool's is gone: leave after this unit */
} wctx;

struct mp_buf {
    wctx *c;
    unsigned char *data;
    size_t len, cap;
    size_t off; /* in the result file, when where == MP__RES_RING */
    int where;
    int err; /* why growing it failed (then it stays failed), or 0 */
    /* What the task sees starts here: a map over byte strings gives each
     * item's function the same buffer, past the items before it. */
    size_t base;
};

/* ---- worker.c ------------------------------------------------------------ */

/* Maps what the parent added to the data region, so that [0, need) is
 * mapped.  Returns 0, or an error when the parent never published that
 * much (a broken protocol) or the mapping fails.  Inline, for the common
 * case where it is mapped already: every unit asks. */
int mp__pool_map_more(wctx *c, uint64_t need);
static inline int mp__pool_ensure_data(wctx *c, uint64_t need)
{
    return need <= c->data_mapped ? 0 : mp__pool_map_more(c, need);
}

/* Waits, for at most a short while, until the supervisor has freed ring or
 * result space - done() says when - waking it first.  Callers loop. */
void mp__pool_wait_supervisor(wctx *c, bool (*done)(wctx *));

/* Whether descriptor fd still names the memory file (dev, ino) attached.
 * Returns 0, or MP_EBADF when a task closed it (or its number now names
 * another file). */
int mp__pool_fd_check(int fd, dev_t dev, ino_t ino);

/* Leaves the pool at once: a task closed a descriptor the worker needs
 * (what), so it can no longer take work or wake the supervisor.  Its exit
 * is what wakes the supervisor now; what it held is settled as for any
 * death (records.h: before a unit begins, or after DONE, that fails
 * nothing). */
_Noreturn void mp__pool_worker_cut_off(wctx *c, const char *what, int err);

/* Appends a completion record and wakes the supervisor if it sleeps. */
void mp__pool_push_rec(wctx *c, uint32_t kind, uint32_t entry, uint64_t unit, uint64_t item,
                       int64_t code);

/* Item `item` of unit u of map job e failed with code: an ITEM_ERROR
 * record, with the message the item left with mp_item_fail(), if any. */
void mp__pool_push_item_error(wctx *c, uint32_t e, uint64_t u, uint64_t item, int64_t code);

/* The message mp_item_fail() left during the running task, if any: its
 * length, and *text (valid until the next call).  Forgets it either way,
 * so that the next item starts with none. */
size_t mp__pool_item_msg_take(wctx *c, const char **text);

/* The worker this process runs (for mp_item_fail), or NULL. */
extern wctx *mp__pool_worker_self;

/* The task function with index id in this image, or NULL. */
void *mp__pool_resolve_fn(wctx *c, uint32_t id);

/* ---- worker_run.c ---------------------------------------------------------- */

/* Runs apply job e, claimed by this worker. */
void mp__pool_run_apply(wctx *c, uint32_t e);

/* Runs unit u of map job e.  Returns false when the pool stopped before
 * the unit's inputs were all there: the unit is left unfinished, for the
 * supervisor to cancel. */
bool mp__pool_run_map(wctx *c, uint32_t e, uint64_t u);

/* ---- worker_buf.c ---------------------------------------------------------- */

/* Whether the supervisor has read every result this worker produced. */
bool mp__pool_res_empty(wctx *c);

/* Sets the result file's capacity to cap bytes and maps it.  Only while
 * the ring is empty of unread results. */
int mp__pool_res_resize(wctx *c, size_t cap);

/* Puts len bytes into the result ring as a result of their own (read and
 * released in order by the supervisor, as an apply task's).  Returns 0 and
 * their offset, or an error (nothing is put then). */
int mp__pool_ring_put(wctx *c, const void *data, size_t len, uint64_t *off);
/* Counts the result of len bytes at off in the ring as produced: the
 * supervisor is about to be told where it is. */
void mp__pool_res_publish(wctx *c, size_t off, size_t len);

#endif /* MPROC_POOL_WORKER_H */
