/*
 * local.h - the local engine: the ranks of one machine, connected through
 * one shared memory segment that their launcher (mprun, or mp_run's
 * caller) made.  Private to src/comm/local_*.c and launch.c.
 *
 * DESIGN
 * The segment is one memfd, sized once from the number of ranks n and
 * sealed against resizing.  Its parts, at offsets every process computes
 * for itself from n (mp__lseg_layout) and checks against the header, so
 * no offset is ever taken from shared memory:
 *
 *   header    magic, n, sizes; `broken` (the first rank found dead);
 *             `aborted`; the next context id for new communicators.
 *   ranks     per rank: a doorbell (a futex word and a count of sleepers)
 *             and the rank's pid and state (new, alive, done, dead).
 *   rdv       per rank, 64 rendezvous slots: the large messages it is
 *             sending, each with its address and length.
 *   bulk      per rank, a 4 MiB staging area for the large messages it
 *             sends when single-copy reads are not allowed.
 *   comms     32 communicator blocks: context id, the barrier's counter and
 *             generation, the broadcast slots, each member's count of
 *             broadcast chunks finished, the slots' data, and a reduction
 *             area of n + 1 pieces.
 *   rings     per ordered pair (i, j), a single-producer single-consumer
 *             ring of messages from i to j.
 *
 * Messages.  A message of up to `eager` bytes is copied into the ring of
 * its pair (a 16-byte header, the bytes, padded to a cache line), and the
 * sender returns.  The header's first word, a stamp made from the record's
 * position in the ring, is written last: a receiver waits on the line its
 * next record starts on and nothing else, and the line that tells it a
 * message came is the line that brings the message (an 8-byte message
 * costs one cache line's transfer).  A stamp from the ring's previous lap
 * (or zero) says the record is not there yet; the receiver zeroes the
 * first word of every other line of a record it takes, so that a
 * message's bytes never pass for a stamp in the next lap.
 *
 * A larger message is a rendezvous: the sender fills one of its rdv
 * slots and sends a 16-byte request naming it; the receiver, once
 * a receive matches, claims the slot (compare-and-swap) and copies the
 * bytes straight from the sender's memory with one process_vm_readv - a
 * single copy - then marks the slot done.  A long one (MP__L_HELP_MIN
 * bytes or more, each rank on a CPU of its own) is copied by both sides
 * at once: the receiver offers the sender the second half (its buffer's
 * address and where the half starts), copies the first, and then either
 * takes the offer back, if the sender has not taken it, and copies the
 * second half too, or waits for the sender, which writes it into the
 * receiver's buffer with process_vm_writev.  Either way each byte is
 * copied once, and a sender that is not waiting in the library costs
 * the receiver nothing.  Where the kernel refuses that
 * (ptrace rules, seccomp), the receiver asks for a pipeline instead, and
 * the sender streams the message through its bulk area in 64 KiB pieces
 * that the receiver copies out as they come (two copies, overlapped).
 * A sender that gives up (timeout, cancel) takes its slot back by
 * compare-and-swap before any receiver claimed it; a request naming a
 * slot whose generation moved on is dropped by the receiver.
 *
 * Waiting and waking.  A waiting rank polls briefly, then yields, then
 * sleeps on its doorbell.  Whoever publishes something another rank may
 * wait for (a message, ring space, a rendezvous step, a collective step)
 * publishes it, then - after a fence - reads that rank's sleeper count and
 * rings the bell only if it is nonzero.  The sleeper registers (count + 1,
 * fence) before its last check of the condition.  Either the publisher
 * sees the registration or the sleeper sees the news: no wake-up is lost,
 * and a rank that never sleeps costs its peers no system call.  The fences
 * are asymmetric where the kernel allows (membarrier): a publisher's fence
 * would run on every message and wait for the lines the message went to
 * (measured: most of a send's time), so publishers only keep the compiler
 * from reordering, and a rank about to sleep - rarely, after polling for
 * a while - makes every rank's stores visible with one membarrier call.
 * A sender that finds its ring full says so (want_space, on the line the
 * receiver writes its head to), and the receiver, after moving its head,
 * wakes it the same way.
 *
 * Telling the head.  A receiver that wrote its head after every message
 * would pull that line away from a sender that reads it, once per
 * message, in a stream; instead it tells its head (and wakes a sender
 * that asked for room) once per sixteenth of the ring, when it finds the
 * ring empty, and whenever it waits (mp__lw_pause): room it made is
 * always told before it waits for anything.  A sender that finds the
 * ring full therefore waits for a sixteenth of it, not for each message,
 * and between two waits of the receiver it may see a little less room
 * than there is, as if the ring were a sixteenth shorter.  The sender, for its part, asks for the lines of its
 * next records in a writable state up to 16 lines ahead (never past the
 * head it was told), so that in a stream the transfers of lines from the
 * receiver's cache overlap instead of each waiting at its store.
 *
 * Failures.  The launcher marks a rank that ends (done if it exited with
 * 0, dead otherwise, which also sets `broken`) before it reaps it, and
 * rings every bell.  A sleeping rank also wakes every few milliseconds and
 * checks the pidfds of its peers, so it notices a dead peer even without
 * the launcher.  A wait that finds `broken` set, or the rank it needs
 * done or dead, returns MP_EPEERDEAD (after one last look for what it
 * waited for, which may have come just before the end).
 *
 * Everything read from shared memory is checked before use: record kinds
 * and lengths against the ring and the eager limit, slot numbers against
 * 64, lengths of rendezvous against the request, pipeline counters against
 * the message and the bulk area, broadcast lengths against the caller's.
 * A violation is MP_EPROTO.
 */
#ifndef MPROC_COMM_LOCAL_H
#define MPROC_COMM_LOCAL_H

#include "engine.h"

#include <stdalign.h>

#define MP__L_LINE      64
#define MP__L_MAGIC     0x31306d6d6f636c6dULL /* "mlcomm01" */
#define MP__L_VERSION   2u
#define MP__L_MAX_RANKS 256
#define MP__L_RDV_SLOTS 64
#define MP__L_PIECE     ((uint64_t)64 << 10) /* pipeline piece */
#define MP__L_HELP_MIN  ((uint64_t)64 << 10) /* rendezvous copied by both sides */
/* Per-rank staging area.  Larger than a CPU's L2 and than most long
 * messages: a sender that never waits for room stays ahead of its
 * receiver, which then reads lines the sender's cache already gave up
 * instead of pulling each out of it (measured on 1 MiB messages: 2.2-3.0
 * GB/s with the two CPUs far apart, 5.5-13.7 near, where a 64-512 KiB
 * area that the message wraps around moved 1.6-2.6 in both).  The
 * segment is a memfd: a rank's area takes memory only as far as its
 * longest pipelined message reached. */
#define MP__L_BULK      ((uint64_t)4 << 20)
#define MP__L_COMMS     32
#define MP__L_BC_SLOTS  16
#define MP__L_BC_CHUNK  ((uint64_t)64 << 10)
#define MP__L_RED_CHUNK ((uint64_t)64 << 10)
/* From this size a broadcast is read straight from the root's memory
 * where the kernel allows it (see local_coll.c). */
#define MP__L_BC_REMOTE_MIN ((size_t)32 << 10)

/* ---- the shared segment ----------------------------------------------------- */

typedef struct mp__llayout {
    uint64_t ring_bytes, eager;
    uint64_t off_ranks, off_rdv, off_bulk, off_comms, off_rings;
    uint64_t bulk_stride, comm_stride, ring_stride;
    uint64_t size;
} mp__llayout;

typedef struct mp__lhdr {
    uint64_t magic;
    uint32_t version, n;
    mp__llayout layout;
    int32_t launcher; /* the launcher's pid; 0 in a world of one */
    int32_t cpus;     /* CPUs the launcher may use (ranks may be bound to one) */
    alignas(MP__L_LINE) _Atomic uint32_t broken; /* 1 + the first rank found dead */
    _Atomic uint32_t aborted;                    /* 1 + the code of mp_comm_abort */
    alignas(MP__L_LINE) _Atomic uint32_t next_ctx;
} mp__lhdr;

enum { MP__LR_NEW = 0, MP__LR_ALIVE = 1, MP__LR_DONE = 2, MP__LR_DEAD = 3 };

typedef struct mp__lrank {
    alignas(MP__L_LINE) _Atomic uint32_t bell; /* bumped by whoever has news for the rank */
    _Atomic uint32_t sleepers;                 /* its threads asleep or about to be */
    alignas(MP__L_LINE) _Atomic int32_t pid;
    _Atomic uint32_t state; /* MP__LR_* */
} mp__lrank;

/* Rendezvous slot states (the low byte; the slot's generation above). */
enum {
    MP__RDV_FREE = 0,
    MP__RDV_POSTED = 1,    /* the sender offers it */
    MP__RDV_CLAIMED = 2,   /* a receiver copies it */
    MP__RDV_PIPE = 3,      /* a receiver asks for the pipeline */
    MP__RDV_PUSHING = 4,   /* the sender streams it through its bulk area */
    MP__RDV_DONE = 5,      /* the receiver has it all */
    MP__RDV_CANCELLED = 6, /* the sender took it back */
    MP__RDV_FAILED = 7     /* the receiver could not read it */
};
#define MP__RDV(gen, kind) ((uint32_t)(gen) << 8 | (uint32_t)(kind))
#define MP__RDV_KIND(s)    ((s)&0xffu)
#define MP__RDV_GEN(s)     ((s) >> 8)

/* A long copy's last part, which its receiver offers the sender (a
 * broadcast's reader its root) to write into the receiver's buffer while
 * the receiver copies the rest (see "Messages"): who copies it. */
enum {
    MP__HELP_NONE = 0,
    MP__HELP_OFFERED = 1, /* the receiver offers the sender [cut, len) */
    MP__HELP_TAKEN = 2,   /* the sender copies it into the receiver's buffer */
    MP__HELP_DONE = 3,    /* the sender copied it */
    MP__HELP_FAILED = 4,  /* the sender could not: the receiver copies it */
    MP__HELP_SELF = 5     /* the receiver took the offer back and copies it */
};

typedef struct mp__lhelp {
    _Atomic uint32_t state; /* MP__HELP_* */
    uint32_t pad;
    uint64_t tag;   /* the copy it is for: a claim's generation, a broadcast's chunk + 1 */
    uint64_t raddr; /* the receiver's buffer, in its address space */
    uint64_t cut;   /* where the sender's part starts */
} mp__lhelp;

typedef struct mp__lrdv {
    alignas(MP__L_LINE) _Atomic uint32_t state;
    uint32_t pad;
    uint64_t addr; /* in the sender's address space */
    uint64_t len;
    mp__lhelp help; /* for the claim in force */
} mp__lrdv;

/* The pipeline's counters, then MP__L_BULK bytes of staging. */
typedef struct mp__lbulk {
    alignas(MP__L_LINE) _Atomic uint64_t filled; /* bytes the sender placed */
    alignas(MP__L_LINE) _Atomic uint64_t taken;  /* bytes the receiver copied out */
} mp__lbulk;

/* A broadcast slot holds a chunk of the message (MP__BC_DATA), or a
 * message small enough to travel in the slot's own line (MP__BC_INLINE:
 * a reader's one transfer brings the news and the bytes), or says where
 * the whole message lies in the root's memory, for readers to copy it
 * from there (MP__BC_REMOTE: the root waits for them, and meanwhile
 * copies into each reader's buffer the last 1/n of the message, when the
 * reader offers it in its mp__lbdone line as a rendezvous's receiver
 * does: every CPU copies (n - 1)/n of a message, not one of them all). */
enum { MP__BC_DATA = 1, MP__BC_REMOTE = 2, MP__BC_INLINE = 3 };
#define MP__L_BC_INLINE 24

typedef struct mp__lbslot {
    alignas(MP__L_LINE) _Atomic uint64_t stamp; /* 1 + the chunk number it holds */
    uint32_t len;
    uint32_t kind; /* MP__BC_* */
    int32_t pid;   /* MP__BC_REMOTE: the root, its buffer, its length */
    uint32_t pad;
    uint64_t addr;
    uint64_t rlen;
    unsigned char inl[MP__L_BC_INLINE]; /* MP__BC_INLINE: the message */
} mp__lbslot;

/* How many broadcast chunks a member has finished (as root or reader),
 * on a line of its own that only that member writes: a root reuses a
 * slot once every member is past it, and readers count themselves off
 * with a plain store, not a read-modify-write on the slot's line. */
typedef struct mp__lbdone {
    alignas(MP__L_LINE) _Atomic uint64_t done;
    mp__lhelp help; /* what of a large broadcast this member offers the root */
} mp__lbdone;

/* A communicator's block, then n mp__lbdone lines; page-aligned data
 * follows (at mp__lcomm_head(n)): MP__L_BC_SLOTS broadcast chunks, then
 * n + 1 reduction pieces. */
typedef struct mp__lcomm {
    alignas(MP__L_LINE) _Atomic uint32_t refs; /* members still using it; 0: free */
    uint32_t ctx;
    _Atomic uint32_t abandoned;
    alignas(MP__L_LINE) _Atomic uint32_t bar_count;
    alignas(MP__L_LINE) _Atomic uint32_t bar_gen;
    mp__lbslot bc[MP__L_BC_SLOTS];
} mp__lcomm;

/* The bytes of a communicator block before its data, for n ranks. */
static inline uint64_t mp__lcomm_head(uint64_t n)
{
    return (sizeof(mp__lcomm) + n * sizeof(mp__lbdone) + 4095) / 4096 * 4096;
}

/* The receiver's index (bytes ever read), then the ring's data.  The
 * sender's index lives in the records' stamps (see "Messages"). */
typedef struct mp__lring {
    alignas(MP__L_LINE) _Atomic uint64_t head; /* written by the receiver */
    _Atomic uint32_t want_space;               /* the sender waits for room */
} mp__lring;
#define MP__LRING_HDR ((uint64_t)MP__L_LINE)

enum { MP__REC_EAGER = 1, MP__REC_RTS = 2 };

/* A record's header, on a line of its own start.  The stamp is written
 * last (release), read first (acquire). */
typedef struct mp__lrec {
    uint32_t stamp; /* mp__lrec_stamp(its position); 0 or older: not there yet */
    uint16_t kind;
    uint16_t len; /* payload bytes (eager <= 16 KiB) */
    int32_t tag;
    uint32_t ctx;
} mp__lrec;

/* The stamp of a record at ring position pos (a multiple of the line):
 * odd, so never the zero of a new or cleared line, and different from the
 * stamp one lap (ring_bytes) before, whatever the ring's size. */
static inline uint32_t mp__lrec_stamp(uint64_t pos)
{
    return (uint32_t)(pos / MP__L_LINE) << 1 | 1u;
}

typedef struct mp__lrts {
    uint64_t len;
    uint32_t slot, gen;
} mp__lrts;

/* ---- this process's side ------------------------------------------------------ */

typedef struct lreq lreq;
typedef struct lmsg lmsg;
typedef struct lcomm lcomm;

/* Doubly linked lists of requests and of unexpected messages. */
typedef struct lreq_list {
    lreq *head, *tail;
} lreq_list;
typedef struct lmsg_list {
    lmsg *head, *tail;
} lmsg_list;

typedef struct lpeer {
    mp__lring *out; /* ring to the peer */
    unsigned char *out_data;
    uint64_t out_tail, out_head; /* our tail; the last head we read */
    uint64_t out_owned;          /* lines before it were asked for to write */
    mp__lring *in;               /* ring from the peer */
    unsigned char *in_data;
    uint64_t in_head; /* our head */
    uint64_t in_told; /* the head the sender was last told */
    bool in_listed;   /* in the world's untold list */
    lreq_list sendq;  /* sends waiting their turn, in order */
    int posted_from;  /* posted receives naming this peer */
    int pidfd;        /* -1 until needed */
} lpeer;

typedef struct lworld {
    mp__lhdr *hdr;
    unsigned char *base;
    size_t size;
    bool owns_map;
    int n, me;
    pid_t pid;
    mp__llayout lay;
    mp__lrank *ranks;
    lpeer *peers;
    /* Matching (under lock once the progress thread runs). */
    lreq_list posted;   /* receives waiting for a message, in order */
    lmsg_list unex;     /* messages no receive wanted yet, in order */
    lreq_list rdv_out;  /* our rendezvous sends */
    lreq_list rdv_in;   /* pipelined receives in progress */
    lreq_list finished; /* futures to finish once the lock is dropped */
    int *untold;        /* peers whose ring head moved since it was told */
    int nuntold;
    int posted_any;    /* posted receives from MP_ANY_SOURCE */
    int nsendq;        /* peers with sends waiting */
    uint64_t rdv_free; /* our free rdv slots, one bit each */
    uint32_t rdv_gen[MP__L_RDV_SLOTS];
    int bulk_slot; /* the rdv slot streaming through our bulk area, -1 */
    int npending;  /* requests with a future, not finished */
    bool cma;      /* single-copy reads allowed, as far as we know */
    bool cma_seen; /* one worked: senders may be offered part of a copy */
    bool oversub;  /* more ranks than CPUs: yield while polling */
    bool own_cpu;  /* bound to one CPU: poll without yielding */
    bool asym;     /* membarrier registered: publishers need no fence */
    bool closed;
    lcomm *world;
    /* The progress thread (see local_p2p.c). */
    pthread_mutex_t lock;
    bool threaded;
    pthread_t thread;
    _Atomic uint32_t kick;
    _Atomic bool stop;
    /* The process-local object outlives a detach while futures hold it. */
    _Atomic int refs;
} lworld;

struct lcomm {
    lworld *w;
    _Atomic int refs; /* the communicator and its pending requests */
    uint32_t ctx;
    int slot; /* its block in the segment, -1: none (generic collectives) */
    mp__lcomm *shm;
    unsigned char *bc_data, *red_data;
    int size, rank;
    int *group;          /* comm rank -> world rank */
    int *inv;            /* world rank -> comm rank, or -1 */
    mp__lbdone *bc_done; /* per member: broadcast chunks finished */
    uint64_t bc_next;    /* broadcast chunks so far */
    uint64_t bc_past;    /* chunks every member is known to have finished */
    int remote;          /* large broadcasts read from the root: 1 yes, -1 no, 0 not known */
};

/* A wait in progress (see mp__lw_pause). */
typedef struct lwait {
    int64_t deadline;
    int64_t start, elapsed, next_check, yielded;
    unsigned polls;
    uint32_t seen;
    bool sleeping; /* registered as a sleeper */
    bool gone;     /* a needed rank was found gone: one last try */
} lwait;
#define LWAIT_INIT(dl)   \
    {                    \
        .deadline = (dl) \
    }

/* What a wait needs alive: one world rank, any (only a broken world
 * stops it), or every member of the communicator. */
#define LW_ANY (-1)
#define LW_ALL (-2)

/* ---- local_seg.c ------------------------------------------------------------ */

/* The layout for n ranks.  Returns 0 or MP_EINVAL (n out of range). */
int mp__lseg_layout(int n, mp__llayout *lay);

/* Makes a segment for n ranks: a sealed memfd, mapped, header written
 * (with the launcher's pid and its CPU count).  Returns 0 with *fd, *base
 * and *size, or an error. */
int mp__lseg_create(int n, pid_t launcher, int *fd, void **base, size_t *size);

/* Checks a mapped segment's header against what n implies.  Returns 0 or
 * MP_EPROTO. */
int mp__lseg_check(const void *base, size_t size);

/* Joins a mapped segment as rank me; takes ownership of the mapping when
 * owns is true.  Returns 0 and *out, or an error. */
int mp__lw_attach(void *base, size_t size, bool owns, int me, lworld **out);

/* Leaves: marks this rank done, wakes everyone, frees what attach made. */
void mp__lw_detach(lworld *w);

/* Marks rank r ended (done or dead) and rings every bell: for launchers
 * (before they reap it) and for ranks that find a peer dead. */
void mp__lseg_mark(void *base, int r, bool dead);

/* Sets the abort flag (code) and breaks the world. */
void mp__lseg_abort(void *base, int me, int code);

/* The abort code recorded in a segment, or -1. */
int mp__lseg_aborted(const void *base);

/* Rings rank r's bell: wakes its sleeping threads. */
void mp__lw_ring(lworld *w, int r);

/* The publisher's fence, between storing its news and reading whether
 * anyone sleeps on it (see "Waiting and waking"): a full fence, or, where
 * sleepers make the barrier heavy with membarrier, a compiler barrier. */
static inline void mp__lw_fence(const lworld *w)
{
    if (w->asym)
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
}

/* The sleeper's fence, between registering and its last look. */
void mp__lw_fence_heavy(const lworld *w);

/* Rings rank r's bell if one of its threads sleeps.  The caller has
 * published its news.  Inline: every message pays it. */
static inline void mp__lw_notify(lworld *w, int r)
{
    mp__lw_fence(w);
    if (atomic_load_explicit(&w->ranks[r].sleepers, memory_order_relaxed) != 0)
        mp__lw_ring(w, r);
}

void mp__lw_notify_members(lworld *w, const lcomm *c);

/* One step of a wait: polls, yields or sleeps a little, and checks the
 * world's health.  Returns 0 to try again, or MP_ETIMEDOUT, MP_EPEERDEAD,
 * MP_EABANDONED (only with a communicator whose collectives broke).  Call
 * mp__lw_end once the wait is over, whatever its outcome. */
int mp__lw_pause(lworld *w, lwait *wt, const lcomm *c, int need);

static inline void mp__lw_end(lworld *w, lwait *wt)
{
    if (wt->sleeping) {
        atomic_fetch_sub(&w->ranks[w->me].sleepers, 1);
        wt->sleeping = false;
    }
}

/* The health check alone: 0, MP_EPEERDEAD or MP_EABANDONED. */
int mp__lw_health(lworld *w, const lcomm *c, int need);

/* ---- local_p2p.c ------------------------------------------------------------ */

int mp__lp_send(lcomm *c, const void *buf, size_t len, int dest, int tag, int64_t deadline);
int mp__lp_recv(lcomm *c, void *buf, size_t cap, int src, int tag, mp_comm_status *st,
                int64_t deadline);
int mp__lp_sendrecv(lcomm *c, const void *sbuf, size_t slen, int dest, int stag, void *rbuf,
                    size_t rcap, int src, int rtag, mp_comm_status *st, int64_t deadline);
int mp__lp_isend(lcomm *c, const void *buf, size_t len, int dest, int tag, mp_future **out);
int mp__lp_irecv(lcomm *c, void *buf, size_t cap, int src, int tag, mp_future **out);
int mp__lp_probe(lcomm *c, int src, int tag, mp_comm_status *st, int64_t deadline);

/* Long copies shared by both sides (see "Messages"; local_seg.c).  Where
 * the sender's part of a copy of len bytes between n ranks starts: the
 * last 1/n, on a page; len for none - a short copy, or ranks that share
 * CPUs (the sender would copy on the receiver's time). */
uint64_t mp__lh_cut(const lworld *w, uint64_t len, int n);

/* The receiver offers h's part [cut, ...) of buf, for the copy tag, and
 * wakes the rank that serves it. */
void mp__lh_offer(lworld *w, mp__lhelp *h, int server, void *buf, uint64_t cut, uint64_t tag);

/* The receiver, its own part copied, takes the offer back unless the
 * sender took it.  Returns whether it did (it then copies the rest). */
bool mp__lh_reclaim(mp__lhelp *h);

/* The sender: if h offers the part of copy tag (len bytes from buf), takes
 * it and writes it into process pid's buffer; the outcome (done, failed)
 * goes into h.  Returns whether it took it (the caller wakes the
 * receiver). */
bool mp__lh_serve(mp__lhelp *h, uint64_t tag, pid_t pid, const void *buf, uint64_t len);

/* The receiver, about to end a copy without the sender's part (an error,
 * a dead peer), waits until the sender is out of its buffer: its write
 * (one system call) ended, or world rank server ended.  A second at most,
 * whatever happens.  Returns h's state then. */
uint32_t mp__lh_settle(lworld *w, mp__lhelp *h, int server);

/* Tells every sender the head of its ring that moved since it was last
 * told (see "Telling the head").  Called by a wait, without the lock. */
void mp__lp_tell_all(lworld *w);

/* Sets up and tears down the process's matching engine.  fini stops the
 * progress thread and fails what is pending with MP_ECLOSED. */
int mp__lp_init(lworld *w);
void mp__lp_fini(lworld *w);

/* References on the process-local world (futures hold one). */
void mp__lw_ref(lworld *w);
void mp__lw_unref(lworld *w);

/* Whether single-copy reads are used (tests and benchmarks measure both
 * paths).  Applies to worlds joined afterwards; MPROC_COMM_CMA=0 in the
 * environment turns them off too. */
void mp__lp_set_cma(bool on);

/* ---- local_coll.c ----------------------------------------------------------- */

/* Takes a reference on / releases a communicator's local state. */
void mp__lc_ref(lcomm *c);
void mp__lc_unref(lcomm *c);

/* The world communicator's local state, made at attach. */
int mp__lc_world(lworld *w, lcomm **out);

#endif /* MPROC_COMM_LOCAL_H */
