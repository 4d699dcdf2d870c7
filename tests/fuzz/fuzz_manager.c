/*
 * fuzz_manager.c - a libFuzzer target for everything of the manager that
 * reads bytes from the wire: request and reply decoding, the handshake's
 * messages, and the execution of any decodable request on a real store.
 *
 * The first byte of an input chooses what the rest is fed to:
 *   0, 1  a request payload: decoded; if it decodes, performed on a store
 *         (with its timeout forced to 0, so that nothing waits), its reply
 *         encoded and decoded back, which must give the same reply;
 *   2     a reply payload, decoded as a client would;
 *   3     a HELLO, AUTH or WELCOME message, parsed.
 * Requests run against one store that lives across inputs (so that
 * sequences of operations build up state), replaced when it fills up or
 * every few thousand inputs.  A crash, an ASan or UBSan report, a leak, a
 * hang, or a reply that does not survive its own round trip is a finding.
 *
 * Build: the CMake option MPROC_FUZZ (on by default where clang is found)
 * builds build/tests/fuzz/fuzz_manager; ctest runs it for 30 seconds from
 * the seed corpus in tests/fuzz/corpus/ (made by make_corpus.py); the
 * target `fuzz` (cmake --build build --target fuzz, or scripts/fuzz.sh)
 * runs it longer.
 */
#define _GNU_SOURCE
#include "managerd/mgr.h"

#include <stdio.h>
#include <stdlib.h>

#define STORE_SIZE ((size_t)4 << 20)
#define RENEW      5000

static ms_store store;
static bool have_store;
static unsigned runs;

static void renew_store(void)
{
    if (have_store)
        mp__mstore_detach(&store);
    if (mp__mstore_create(STORE_SIZE, &store) != 0)
        abort();
    have_store = true;
}

/* The reply, encoded and decoded, must come back the same. */
static void round_trip(const mp__mreq *rq, const mp__mrep *rp)
{
    uint8_t *buf = NULL;
    size_t cap = 0;
    int n = mp__wire_encode_rep(rq->op, rq->seq, rp, &buf, &cap, 0);
    if (n < 0) {
        free(buf);
        return; /* too big for a frame: the server answers with the error */
    }
    mp__mrep back;
    mp__mrep_init(&back);
    if (mp__wire_decode_rep(buf + 4, (size_t)n, rq->op, rq->seq, &back) != 0 ||
        back.status != rp->status || back.nout != rp->nout || back.len != rp->len ||
        back.a != rp->a || back.b != rp->b || (rp->len && memcmp(back.out, rp->out, rp->len))) {
        fprintf(stderr, "reply round trip failed for op %u\n", rq->op);
        abort();
    }
    mp__mrep_free(&back);
    free(buf);
}

static void run_request(const uint8_t *data, size_t size)
{
    static mp__mbytes strs[MX_MAX_STRS];
    mp__mreq rq;
    if (mp__wire_decode_req(data, size, &rq, strs) != 0)
        return;
    if (!have_store || ++runs % RENEW == 0 || store.h->used > STORE_SIZE / 2)
        renew_store();
    rq.timeout = 0; /* a fuzzer must not wait */
    mx_ctx ctx = {&store, 1, NULL, NULL, false, false, false};
    mp__mrep rp;
    mp__mrep_init(&rp);
    mp__mexec(&ctx, &rq, &rp);
    if (ctx.unlocked)
        abort(); /* a wait lost the store lock */
    round_trip(&rq, &rp);
    mp__mrep_free(&rp);
    if (runs % 64 == 0)
        mp__mexec_forget(&store, 1);
}

static void run_reply(const uint8_t *data, size_t size)
{
    if (size < 8)
        return;
    mp__mrep rp;
    mp__mrep_init(&rp);
    uint16_t op = (uint16_t)(data[2] | data[3] << 8);
    if (mp__wire_decode_rep(data, size, op, mw_get32(data + 4), &rp) == 0) {
        size_t pos = 0, n = 0;
        const uint8_t *p;
        uint32_t len;
        while (mp__mrep_next(&rp, &pos, &p, &len))
            n++;
        if (n != rp.nout)
            abort(); /* a decoded reply's strings must all be there */
    }
    mp__mrep_free(&rp);
}

static void run_handshake(const uint8_t *data, size_t size)
{
    mp__mhello h;
    mp__mauth a;
    mp__mwelcome_msg w;
    (void)mp__wire_hello_parse(data, size, &h);
    (void)mp__wire_auth_parse(data, size, &a);
    (void)mp__wire_welcome_parse(data, size, &w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] & 3) {
    case 0:
    case 1:
        run_request(data + 1, size - 1);
        break;
    case 2:
        run_reply(data + 1, size - 1);
        break;
    default:
        run_handshake(data + 1, size - 1);
        break;
    }
    return 0;
}
