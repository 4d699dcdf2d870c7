/*
 * crypto.c - the manager's cryptography, all of it from libsodium: random
 * nonces, keyed BLAKE2b for proofs and key derivation, ChaCha20-Poly1305
 * (IETF) for frames, constant-time comparison, wiping.
 *
 * Why these.  The proofs are MACs over a transcript that holds both
 * sides' fresh random nonces and every flag either side sent, keyed with
 * a key derived from the authentication key: a recorded handshake is
 * worth nothing later, and neither side can be talked into weaker
 * settings.  Frames are sealed with a key per direction (derived from the
 * same transcript, so unique to the connection) and a 64-bit frame
 * counter as nonce, never reused under one key; a frame replayed,
 * reordered, dropped or altered fails to open, and the connection ends.
 * The frame's length prefix is authenticated as associated data.
 *
 * Built without libsodium (MPROC_HAVE_SODIUM undefined) this file only
 * says so: mp__crypto_init() returns false and the manager's entry points
 * return MP_ENOTSUP; the other functions are never reached then.
 */
#define _GNU_SOURCE
#include "mgr.h"

#ifdef MPROC_HAVE_SODIUM

#include <sodium.h>

_Static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == MC_TAG, "tag size");
_Static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == MC_KEY, "key size");

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool ready;

static void init_once(void)
{
    ready = sodium_init() >= 0;
}

bool mp__crypto_init(void)
{
    pthread_once(&once, init_once);
    return ready;
}

void mp__crypto_random(void *buf, size_t len)
{
    randombytes_buf(buf, len);
}

void mp__crypto_master(const void *authkey, size_t len, uint8_t master[MC_KEY])
{
    static const char label[] = "mproc manager key v1";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, MC_KEY);
    crypto_generichash_update(&st, (const unsigned char *)label, sizeof label);
    crypto_generichash_update(&st, authkey, len);
    crypto_generichash_final(&st, master, MC_KEY);
    sodium_memzero(&st, sizeof st);
}

void mp__crypto_derive(const uint8_t master[MC_KEY], const char *label, const uint8_t *t,
                       size_t tlen, uint8_t out[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, master, MC_KEY, 32);
    crypto_generichash_update(&st, (const unsigned char *)label, strlen(label) + 1);
    crypto_generichash_update(&st, t, tlen);
    crypto_generichash_final(&st, out, 32);
    sodium_memzero(&st, sizeof st);
}

bool mp__crypto_equal32(const uint8_t *a, const uint8_t *b)
{
    return crypto_verify_32(a, b) == 0;
}

static void nonce_of(uint64_t counter, uint8_t n[crypto_aead_chacha20poly1305_ietf_NPUBBYTES])
{
    memset(n, 0, crypto_aead_chacha20poly1305_ietf_NPUBBYTES);
    mw_put64(n, counter);
}

void mp__crypto_seal(const uint8_t key[MC_KEY], uint64_t counter, const uint8_t *ad, size_t adlen,
                     uint8_t *p, size_t len)
{
    uint8_t n[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
    nonce_of(counter, n);
    unsigned long long clen;
    crypto_aead_chacha20poly1305_ietf_encrypt(p, &clen, p, len, ad, adlen, NULL, n, key);
}

int mp__crypto_open(const uint8_t key[MC_KEY], uint64_t counter, const uint8_t *ad, size_t adlen,
                    uint8_t *p, size_t len)
{
    uint8_t n[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
    nonce_of(counter, n);
    unsigned long long mlen;
    if (len < MC_TAG ||
        crypto_aead_chacha20poly1305_ietf_decrypt(p, &mlen, NULL, p, len, ad, adlen, n, key) != 0)
        return MP_EAUTH;
    return 0;
}

void mp__crypto_wipe(void *p, size_t len)
{
    sodium_memzero(p, len);
}

#else /* no libsodium */

bool mp__crypto_init(void)
{
    return false;
}

void mp__crypto_random(void *buf, size_t len)
{
    memset(buf, 0, len);
}

void mp__crypto_master(const void *authkey, size_t len, uint8_t master[MC_KEY])
{
    (void)authkey;
    (void)len;
    memset(master, 0, MC_KEY);
}

void mp__crypto_derive(const uint8_t master[MC_KEY], const char *label, const uint8_t *t,
                       size_t tlen, uint8_t out[32])
{
    (void)master;
    (void)label;
    (void)t;
    (void)tlen;
    memset(out, 0, 32);
}

bool mp__crypto_equal32(const uint8_t *a, const uint8_t *b)
{
    (void)a;
    (void)b;
    return false;
}

void mp__crypto_seal(const uint8_t key[MC_KEY], uint64_t counter, const uint8_t *ad, size_t adlen,
                     uint8_t *p, size_t len)
{
    (void)key;
    (void)counter;
    (void)ad;
    (void)adlen;
    (void)p;
    (void)len;
}

int mp__crypto_open(const uint8_t key[MC_KEY], uint64_t counter, const uint8_t *ad, size_t adlen,
                    uint8_t *p, size_t len)
{
    (void)key;
    (void)counter;
    (void)ad;
    (void)adlen;
    (void)p;
    (void)len;
    return MP_EAUTH;
}

void mp__crypto_wipe(void *p, size_t len)
{
    volatile uint8_t *v = p;
    while (len--)
        *v++ = 0;
}

#endif
