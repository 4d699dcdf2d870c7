/*
 * mgr.h - declarations shared by the manager's files, never installed.
 *
 * The manager is split by side.  src/managerd/ (this directory) is the
 * server and what both sides share; it depends on nothing that starts
 * processes, so that the start-up roles (boot.c) can run a server:
 *   wire.c        requests and replies as bytes: encode, decode, limits
 *   crypto.c      authentication proofs, key derivation, frame encryption
 *                 (libsodium), or stubs without it
 *   conn.c        one connection: frames over a socket, the handshake
 *   address.c     parsing addresses, listening, connecting
 *   store.c       the shared store: layout, lock and undo log, allocator,
 *                 object table
 *   store_dict.c  dict and Namespace
 *   store_list.c  list and Queue
 *   store_sync.c  Lock, RLock, Semaphore, Event, Condition, Barrier,
 *                 Value, Array, and waiting
 *   exec.c        one operation: validation and dispatch, the same code for
 *                 local clients and for the server
 *   server.c      the server process
 *   role.c        the server as a start-up role: its configuration on the
 *                 wire, and the role's entry point
 * src/manager/ is the client side (client.h):
 *   client.c      start, connect, calls (local or remote), fork
 *   proxy.c       the public per-type calls
 */
#ifndef MPROC_MANAGER_MGR_H
#define MPROC_MANAGER_MGR_H

#include "internal.h"

#include <stdatomic.h>

/* ---- little-endian encoding --------------------------------------------- */

static inline void mw_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t mw_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void mw_put64(uint8_t *p, uint64_t v)
{
    mw_put32(p, (uint32_t)v);
    mw_put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t mw_get64(const uint8_t *p)
{
    return (uint64_t)mw_get32(p) | (uint64_t)mw_get32(p + 4) << 32;
}

/* ---- operations ------------------------------------------------------------ */

enum mp__mop {
    MX_PING = 1,
    MX_OPEN,     /* str[0] name ("" anonymous); a = type, b = parameter; -> a obj, b gen */
    MX_REMOVE,   /* str[0] name */
    MX_TYPE,     /* str[0] name; -> a type */
    MX_SHUTDOWN, /* ask the server to stop */
    MX_D_SET = 16,
    MX_D_GET,
    MX_D_DEL,
    MX_D_HAS,
    MX_D_LEN,
    MX_D_KEYS,
    MX_D_ITEMS,
    MX_D_POP,
    MX_D_SETDEFAULT,
    MX_D_UPDATE,
    MX_D_CLEAR,
    MX_D_INCR,
    MX_D_CAS, /* str: key, desired[, expected]; flags MX_F_EXPECT */
    MX_D_TXN, /* str[0] kinds (1 byte each), then key, value per op; deltas in str */
    MX_L_APPEND = 40,
    MX_L_EXTEND,
    MX_L_GET,
    MX_L_SET,
    MX_L_INSERT,
    MX_L_POP,
    MX_L_REMOVE,
    MX_L_LEN,
    MX_L_CLEAR,
    MX_L_SLICE,
    MX_Q_PUT,
    MX_Q_GET,
    MX_Q_SIZE,
    MX_K_ACQUIRE = 64, /* locks, and a condition's lock */
    MX_K_RELEASE,
    MX_S_ACQUIRE,
    MX_S_RELEASE,
    MX_S_VALUE,
    MX_E_SET,
    MX_E_CLEAR,
    MX_E_ISSET,
    MX_E_WAIT,
    MX_C_WAIT,
    MX_C_NOTIFY, /* a = n, -1 for all */
    MX_B_WAIT,
    MX_B_ABORT,
    MX_B_RESET,
    MX_B_BROKEN,
    MX_V_GET = 96,
    MX_V_SET, /* integer in a, or double in x with MX_F_DOUBLE */
    MX_V_ADD,
    MX_A_LEN,
    MX_A_GET,
    MX_A_SET,
    MX_A_READ,  /* a = start, b = n; -> str[0] n x 8 bytes, little-endian */
    MX_A_WRITE, /* a = start, str[0] n x 8 bytes */
    MX__OP_END
};

#define MX_F_EXPECT  1u /* D_CAS: str[2] is the expected value (else: absent) */
#define MX_F_DOUBLE  2u /* V_SET, A_SET, A_READ, A_WRITE: doubles */
#define MX_F_BOUNDED 4u /* OPEN of a semaphore */

/* ---- requests and replies ---------------------------------------------------
 *
 * A request is an operation on one object with a few numbers and byte
 * strings; the same structure describes a call of a local client (strings
 * point at the caller's memory) and one decoded from the wire (strings
 * point into the frame).  Replies own their bytes.
 */
typedef struct mp__mbytes {
    const void *p;
    uint32_t len;
} mp__mbytes;

/* Strings in one request: an update of MP_MANAGER_MAX_BATCH pairs, or a
 * transaction of MP_MANAGER_MAX_TXN operations with three strings each. */
#define MX_MAX_STRS (2 * MP_MANAGER_MAX_BATCH + 2)

typedef struct mp__mreq {
    uint16_t op;
    uint16_t flags;
    uint32_t seq;
    uint32_t obj; /* object slot */
    uint32_t gen; /* its generation, as the handle knows it */
    uint32_t tid; /* the calling thread, for lock ownership */
    uint32_t nstr;
    int64_t a, b;
    double x;
    double timeout;
    const mp__mbytes *str;
} mp__mreq;

#define MX_REP_INLINE 512

typedef struct mp__mrep {
    int32_t status;
    uint32_t nout;
    int64_t a, b;
    double x;
    /* nout strings, each a 32-bit little-endian length and the bytes */
    uint8_t *out;
    size_t len, cap;
    uint8_t inl[MX_REP_INLINE];
} mp__mrep;

void mp__mrep_init(mp__mrep *r);
void mp__mrep_free(mp__mrep *r);
/* Makes room for a string of len bytes and returns where to write it, or
 * NULL (MP_ENOMEM or over the frame limit). */
uint8_t *mp__mrep_add(mp__mrep *r, size_t len);
int mp__mrep_put(mp__mrep *r, const void *p, size_t len);
/* Iterates over the strings: *pos starts at 0.  Returns false at the end. */
bool mp__mrep_next(const mp__mrep *r, size_t *pos, const uint8_t **p, uint32_t *len);

/* ---- the wire (wire.c) -------------------------------------------------------
 *
 * Every frame is a 32-bit little-endian length and that many bytes; over
 * an encrypted connection the bytes are sealed (crypto.c).  A request:
 *   u8 version, u8 kind (1), u16 op, u32 seq, u32 obj, u32 gen, u32 tid,
 *   u16 flags, u16 nstr, i64 a, i64 b, f64 x, f64 timeout,
 *   nstr x (u32 length, bytes)
 * A reply:
 *   u8 version, u8 kind (2), u16 op, u32 seq, i32 status, u32 nout,
 *   i64 a, i64 b, f64 x, nout x (u32 length, bytes)
 */
#define MW_VERSION     1
#define MW_KIND_REQ    1
#define MW_KIND_REP    2
#define MW_REQ_HDR     56
#define MW_REP_HDR     40
#define MW_FRAME_LIMIT (MP_MANAGER_MAX_FRAME)

/* Encodes rq after the 4-byte length of a frame into *buf (grown as
 * needed, up to the frame limit), leaving `room` spare bytes at the end
 * for a seal.  Returns the frame's payload size or an error
 * (MP_EMSGSIZE). */
int mp__wire_encode_req(const mp__mreq *rq, uint8_t **buf, size_t *cap, size_t room);
int mp__wire_encode_rep(uint16_t op, uint32_t seq, const mp__mrep *rp, uint8_t **buf, size_t *cap,
                        size_t room);

/* Decodes a request payload of len bytes.  Strings point into buf; strs
 * has room for MX_MAX_STRS.  Returns 0, or MP_EPROTO for anything
 * malformed (*seq and *op are set whenever the header could be read, so
 * that an error can be answered; else *op is 0). */
int mp__wire_decode_req(const uint8_t *buf, size_t len, mp__mreq *rq, mp__mbytes *strs);

/* Decodes a reply payload into rp (copying its strings).  Returns 0 or
 * MP_EPROTO / MP_ENOMEM. */
int mp__wire_decode_rep(const uint8_t *buf, size_t len, uint16_t op, uint32_t seq, mp__mrep *rp);

/* The handshake (conn.c says how it goes):
 *   HELLO   server -> client: "MPMH", u16 version, u16 flags required,
 *           u16 flags offered, u16 busy, 32-byte server nonce
 *   AUTH    client -> server: "MPMA", u16 version, u16 flags wanted,
 *           32-byte client nonce, 32-byte client proof
 *   WELCOME server -> client: "MPMW", i32 status, u32 flags agreed,
 *           u32 client id, u64 store size, 32-byte server proof */
#define MW_HELLO_LEN   44
#define MW_AUTH_LEN    72
#define MW_WELCOME_LEN 56

typedef struct mp__mhello {
    uint16_t version, require, offer, busy;
    uint8_t nonce[32];
} mp__mhello;

typedef struct mp__mauth {
    uint16_t version, want;
    uint8_t nonce[32];
    uint8_t proof[32];
} mp__mauth;

typedef struct mp__mwelcome_msg {
    int32_t status;
    uint32_t agreed;
    uint32_t client_id;
    uint64_t store_size;
    uint8_t proof[32];
} mp__mwelcome_msg;

void mp__wire_hello_build(const mp__mhello *h, uint8_t out[MW_HELLO_LEN]);
int mp__wire_hello_parse(const uint8_t *p, size_t len, mp__mhello *h);
void mp__wire_auth_build(const mp__mauth *a, uint8_t out[MW_AUTH_LEN]);
int mp__wire_auth_parse(const uint8_t *p, size_t len, mp__mauth *a);
void mp__wire_welcome_build(const mp__mwelcome_msg *w, uint8_t out[MW_WELCOME_LEN]);
int mp__wire_welcome_parse(const uint8_t *p, size_t len, mp__mwelcome_msg *w);

/* ---- crypto (crypto.c) ----------------------------------------------------- */

#define MC_KEY   32
#define MC_NONCE 32
#define MC_PROOF 32
#define MC_TAG   16

bool mp__crypto_init(void);
void mp__crypto_random(void *buf, size_t len);
/* The fixed-size key everything else is keyed with, from the user's key. */
void mp__crypto_master(const void *authkey, size_t len, uint8_t master[MC_KEY]);
/* A proof or a session key: keyed BLAKE2b over label and transcript. */
void mp__crypto_derive(const uint8_t master[MC_KEY], const char *label, const uint8_t *t,
                       size_t tlen, uint8_t out[32]);
/* Constant-time comparison of 32 bytes. */
bool mp__crypto_equal32(const uint8_t *a, const uint8_t *b);
/* Seals len bytes at p in place, appending the tag; ad is authenticated
 * too.  counter is the frame's number in its direction. */
void mp__crypto_seal(const uint8_t key[MC_KEY], uint64_t counter, const uint8_t *ad, size_t adlen,
                     uint8_t *p, size_t len);
/* Opens len bytes (tag included) in place.  Returns 0 or MP_EAUTH. */
int mp__crypto_open(const uint8_t key[MC_KEY], uint64_t counter, const uint8_t *ad, size_t adlen,
                    uint8_t *p, size_t len);
void mp__crypto_wipe(void *p, size_t len);

/* ---- connections (conn.c) -------------------------------------------------- */

typedef struct mp__mconn {
    int fd;
    bool encrypted;
    bool unix_socket;
    uint8_t tx_key[MC_KEY], rx_key[MC_KEY];
    uint64_t tx_ctr, rx_ctr;
    uint8_t *rx; /* receive buffer: rx_len bytes of the stream, the first
                  * rx_used of them the frame handed out last */
    size_t rx_cap, rx_len, rx_used;
    int64_t rcvtimeo_ns; /* SO_RCVTIMEO, 0 for none */
    uint8_t *tx;         /* send buffer */
    size_t tx_cap;
} mp__mconn;

/* Handshake flags. */
#define MH_ENCRYPT  1u
#define MH_FASTPATH 2u

/* What the server's last handshake message tells the client. */
typedef struct mp__mwelcome {
    uint32_t client_id;
    uint32_t flags;
    uint64_t store_size;
    int store_fd; /* -1 unless the fast path was granted */
} mp__mwelcome;

void mp__mconn_init(mp__mconn *c, int fd);
void mp__mconn_close(mp__mconn *c);

/* Client side of the handshake.  want: MH_* flags.  Returns 0, MP_EAUTH,
 * MP_EPROTO, MP_ETIMEDOUT, MP_ECONNRESET. */
int mp__mconn_client_hello(mp__mconn *c, const uint8_t master[MC_KEY], uint32_t want,
                           int64_t deadline, mp__mwelcome *w);

/* Server side.  require: MH_ENCRYPT for TCP; offer: MH_FASTPATH for Unix
 * sockets.  store_fd is sent to a client granted the fast path.  Returns
 * 0 (and the flags agreed in *agreed), MP_EAUTH (after telling the
 * client), or another error. */
int mp__mconn_server_hello(mp__mconn *c, const uint8_t master[MC_KEY], uint32_t require,
                           uint32_t offer, uint32_t client_id, int store_fd, uint64_t store_size,
                           int64_t deadline, uint32_t *agreed);

/* Sends the frame whose payload (len bytes) is at c->tx + 4, sealing it on
 * an encrypted connection.  Waits for room until the deadline.  Returns 0
 * or an error. */
int mp__mconn_send(mp__mconn *c, size_t len, int64_t deadline);

/* Receives one frame; *payload points into c->rx.  Waits until the
 * deadline.  Returns 0, MP_EOF (peer closed between frames),
 * MP_ECONNRESET, MP_EPROTO (a malformed or oversized frame), MP_EAUTH (a
 * frame that fails authentication), MP_ETIMEDOUT. */
int mp__mconn_recv(mp__mconn *c, const uint8_t **payload, size_t *len, int64_t deadline);

/* Bounds every blocking read by seconds (SO_RCVTIMEO), so that a read
 * against a deadline at least that far away needs no poll() first. */
void mp__mconn_set_rcvtimeo(mp__mconn *c, double seconds);

/* Whether the peer hung up (without blocking). */
bool mp__mconn_hung_up(const mp__mconn *c);

/* ---- addresses (address.c) ---------------------------------------------- */

typedef struct mp__maddr {
    int family; /* AF_UNIX or AF_INET / AF_INET6 after resolution */
    bool abstract;
    char path[108]; /* Unix: the path or the abstract name */
    char host[256];
    int port;
} mp__maddr;

/* Parses "unix:@name", "unix:/path", "tcp://host:port".  Returns 0 or
 * MP_EINVAL. */
int mp__maddr_parse(const char *text, mp__maddr *a);
/* Formats an address as text. */
void mp__maddr_format(const mp__maddr *a, char *buf, size_t cap);
/* Binds and listens (SOCK_CLOEXEC); for TCP with port 0, a->port gets the
 * port picked.  Returns the socket or an error. */
int mp__maddr_listen(mp__maddr *a);
/* An IP address as "HOST port PORT" into buf (buf may be NULL); returns
 * the port. */
struct sockaddr_storage;
int mp__maddr_text(const struct sockaddr_storage *ss, char *buf, size_t cap);
/* For the server: the options of an accepted socket. */
void mp__maddr_accepted(int fd, const mp__maddr *a);
/* Connects before the deadline.  Returns the socket or an error
 * (MP_ECONNREFUSED, MP_ETIMEDOUT, MP_EINVAL for an unknown host). */
int mp__maddr_connect(const mp__maddr *a, int64_t deadline);

/* ---- the store (store.c and friends) --------------------------------------
 *
 * See store.c for the design.  A store is a memory file mapped by the
 * server and by every local client; everything in it is an offset from
 * its start, checked before use.
 */
#define MS_LOG_CAP 16384
#define MS_NCLASS  48

typedef struct ms_undo {
    uint64_t off, old;
} ms_undo;

typedef struct ms_header {
    uint64_t magic;
    uint64_t version;
    uint64_t size;
    uint64_t objs_off;
    uint64_t heap_off;
    uint64_t max_objects;
    int64_t server_tid; /* the holder of life while the server lives */
    uint64_t seed;      /* of the key hash */
    _Alignas(64) mp__mutex life;
    _Alignas(64) mp__mutex lock;
    /* Below: written only with lock held, each write logged first. */
    _Alignas(64) uint64_t top;
    uint64_t free_head[MS_NCLASS];
    uint64_t used;
    uint64_t nobjects;
    uint64_t anon;
    uint64_t logged_end; /* marks the end of the logged header words */
    /* The undo log: log_n entries. */
    _Alignas(64) uint64_t log_n;
    ms_undo log[MS_LOG_CAP];
} ms_header;

/* One object.  type, gen, hash, flags and name form the first 80 bytes;
 * seq and nsleep are the futex word sleepers wait on and their count
 * (changed atomically, never logged); w holds the type's state. */
typedef struct ms_obj {
    uint32_t type;
    uint32_t gen;
    uint32_t hash;
    uint32_t flags;
    char name[MP_MANAGER_MAX_NAME + 1];
    _Atomic uint32_t seq;
    _Atomic uint32_t nsleep;
    uint64_t w[5];
} ms_obj;

/* This process's view of a store: its layout is copied out of the header
 * once, at attach, and never read from shared memory again. */
typedef struct ms_store {
    uint8_t *base;
    size_t size;
    ms_header *h;
    ms_obj *objs;
    uint64_t objs_off, heap_off, max_objects;
    int64_t server_tid;
    uint64_t seed;
    int fd;
    bool lost; /* the undo log overflowed in this operation (a bug) */
} ms_store;

/* Creates a store of size bytes in a new memory file (the server).
 * Returns 0 or an error. */
int mp__mstore_create(size_t size, ms_store *s);
/* Maps the store behind fd (a client).  Returns 0, or MP_EPROTO when what
 * fd holds is not a store. */
int mp__mstore_attach(int fd, ms_store *s);
void mp__mstore_detach(ms_store *s);
/* Takes the life lock (the server's main thread, for its whole life). */
int mp__mstore_live(ms_store *s);
/* Whether the server still lives (no system call). */
bool mp__mstore_alive(const ms_store *s);

/* The store lock: taking it after a holder died rolls back what it had
 * half done.  unlock commits. */
int mp__mstore_lock(ms_store *s);
void mp__mstore_unlock(ms_store *s);
/* Undoes every logged write since the lock was taken (or the last
 * commit), and commits the empty change. */
void mp__mstore_rollback(ms_store *s);
/* Makes the writes so far permanent (the log empty) while staying locked. */
void mp__mstore_commit(ms_store *s);

/* Logged writes: the old contents go to the undo log first. */
void mp__ms_set(ms_store *s, uint64_t *word, uint64_t v);
void mp__ms_write(ms_store *s, void *dst, const void *src, size_t len);

/* Called, when set, after every logged write with the number of words
 * logged so far in the operation.  NULL in normal use; a test sets it in
 * a client that must die exactly there. */
extern void (*mp__mstore_fault)(uint64_t logged);

/* Bounds-checked access: the address of [off, off + len) inside the heap,
 * or NULL. */
void *mp__ms_at(const ms_store *s, uint64_t off, size_t len);
static inline uint64_t mp__ms_off(const ms_store *s, const void *p)
{
    return (uint64_t)((const uint8_t *)p - s->base);
}

/* The allocator: payload offsets, 8-aligned; 0 when out of memory. */
uint64_t mp__ms_alloc(ms_store *s, size_t size);
/* The payload size of the block at off (0 if off is not a live block). */
size_t mp__ms_block_size(const ms_store *s, uint64_t off);
void mp__ms_free(ms_store *s, uint64_t off);

uint64_t mp__ms_hash(const ms_store *s, const void *p, size_t len);

/* The object at index, if it has that generation (and is live). */
ms_obj *mp__ms_obj(ms_store *s, uint32_t index, uint32_t gen);

/* ---- execution (exec.c) ---------------------------------------------------- */

/* Who performs an operation. */
typedef struct mx_ctx {
    ms_store *s;
    uint32_t client; /* the connection's id, lock owner */
    /* Called between the slices of a wait: returns 0 to go on waiting, or
     * the error to end the wait with (the server stops, the client hung up,
     * the server died). */
    int (*check)(void *arg);
    void *arg;
    bool shutdown; /* set by MX_SHUTDOWN */
    bool unlocked; /* a wait could not take the store lock back */
    bool keep;     /* keep the writes of an operation that fails */
} mx_ctx;

/* Longest single sleep of a wait, so that check runs this often. */
#define MX_SLICE_NS 50000000LL

/* Performs rq, filling rp.  Returns rp->status. */
int mp__mexec(mx_ctx *c, const mp__mreq *rq, mp__mrep *rp);

/* Releases what a client that went away held: its locks, its place in
 * conditions.  Called by the server when the connection ends. */
void mp__mexec_forget(ms_store *s, uint32_t client);

/* Object types as stored (mp_mtype values). */
static inline bool mx_type_valid(int64_t t)
{
    return t >= MP_MDICT && t <= MP_MARRAY;
}

/* Per-type operations, called by exec with the store locked and the
 * object checked.  They read their arguments from rq and answer in rp. */
int mp__msd_op(mx_ctx *c, ms_obj *o, const mp__mreq *rq, mp__mrep *rp);
int mp__msl_op(mx_ctx *c, ms_obj *o, const mp__mreq *rq, mp__mrep *rp);
int mp__mss_op(mx_ctx *c, ms_obj *o, const mp__mreq *rq, mp__mrep *rp);
/* Creating and freeing a type's state in a fresh or removed slot
 * (mp__mss_destroy: an Array's). */
int mp__msd_init(ms_store *s, ms_obj *o);
void mp__msd_destroy(ms_store *s, ms_obj *o);
int mp__msl_init(ms_store *s, ms_obj *o, int64_t maxsize);
void mp__msl_destroy(ms_store *s, ms_obj *o);
int mp__mss_init(ms_store *s, ms_obj *o, const mp__mreq *rq);
void mp__mss_destroy(ms_store *s, ms_obj *o);
void mp__mss_forget(ms_store *s, ms_obj *o, uint32_t client);

/* Waits, with the store locked, for o to change: see store_sync.c. */
int mp__mss_sleep(mx_ctx *c, ms_obj *o, uint32_t gen, int64_t deadline);
void mp__mss_wake(ms_obj *o);

/* ---- the server (server.c) -------------------------------------------------- */

typedef struct mp__mserver_cfg {
    mp__maddr addr;         /* the main address */
    bool also_local;        /* a private Unix address too (TCP main address) */
    mp__maddr local;        /* filled in when also_local */
    uint8_t master[MC_KEY]; /* derived from the key */
    size_t memory;
    int max_clients;
    bool detached; /* not tied to the starter */
    bool forked;   /* started by mp_manager_start (ignores SIGINT) */
    pid_t owner;   /* the starter, for the death signal */
    pid_t session; /* the starter's session (mp__session), for log lines */
    int keep_fd;   /* a descriptor to keep open (the log's), or -1 */
    void (*ready)(const char *address, void *arg);
    void *ready_arg;
} mp__mserver_cfg;

/* Runs a server until it is shut down.  Reports readiness on ready_fd
 * (the bound addresses and the pid) when ready_fd >= 0, and through
 * cfg->ready.  Returns 0 or the error that kept it from serving. */
int mp__mserver_run(const mp__mserver_cfg *cfg, int ready_fd);

/* The entry point of a server process: runs the server and exits. */
_Noreturn void mp__manager_serve(const mp__mserver_cfg *cfg, int ready_fd);

/* ---- the server as a start-up role (role.c) ---------------------------------- */

/* Sends a fresh image in the manager role (boot.c) its configuration on
 * sock: cfg's addresses, derived key and options, the log's descriptor
 * (log_fd >= 0) and level.  fault is a mp__manager_fault (testhooks.h),
 * 0 in normal use.  Returns 0 or an error. */
int mp__mrole_send(int sock, const mp__mserver_cfg *cfg, int log_fd, int log_level, int fault);

#endif /* MPROC_MANAGER_MGR_H */
