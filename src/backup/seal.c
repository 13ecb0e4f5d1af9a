/* seal.c - XChaCha20-Poly1305 (AEAD, 192-bit random nonces, so no nonce is ever reused by
 * chance) and Argon2id13 for the password key, with the process's cache of derived
 * password keys. The bulk cipher is OpenSSL's ChaCha20-Poly1305 under libsodium's
 * HChaCha20 subkey: the same bytes as libsodium's xchacha20poly1305_ietf, at about 1.45x
 * its speed here (OpenSSL's AVX2 code), which backups and restores spend much time in. */
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "backup/seal.h"
#include "util/crypto.h"

int seal_init(struct err *err)
{
    if (sodium_init() < 0)
        return err_set(err, ERR_INTERNAL, "libsodium could not start");
    return FERRY_OK;
}

void seal_new_master(uint8_t key[SEAL_KEY_LEN], struct seal_kdf *kdf)
{
    crypto_aead_xchacha20poly1305_ietf_keygen(key);
    randombytes_buf(kdf->salt, sizeof(kdf->salt));
    kdf->ops_limit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    kdf->mem_limit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
}

/* Password keys already derived in this process. The server opens a repository on every
 * API call, and Argon2id (64 MiB, by design slow) would cost each call 0.1-0.7 s. An entry
 * is named by a keyed BLAKE2b of the salt, the limits and the password, under a secret
 * made at random per process: the salt is unique to one repository and one wrapping of its
 * key, so a changed password or another repository never meets a stale entry, and the
 * names say nothing about the password outside this process. Entries live in
 * sodium_malloc'd memory (locked, guarded) and are wiped at exit. */
#define CACHE_SLOTS 16

struct cache_slot {
    uint64_t used; /* 0: free; else the tick of the last use (the least recent goes first) */
    uint8_t name[crypto_generichash_BYTES];
    uint8_t key[SEAL_KEY_LEN];
};

struct key_cache {
    uint8_t secret[crypto_generichash_KEYBYTES];
    uint64_t tick;
    struct cache_slot slots[CACHE_SLOTS];
};

static struct key_cache *cache; /* NULL until first used, or when it cannot be had */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void cache_wipe(void)
{
    pthread_mutex_lock(&cache_lock);
    if (cache)
        sodium_free(cache); /* sodium_free zeroes the memory first */
    cache = NULL;
    pthread_mutex_unlock(&cache_lock);
}

/* The entry's name; false when there is no cache (the key is then derived every time). */
static bool cache_name(const char *password, const struct seal_kdf *kdf,
                       uint8_t name[crypto_generichash_BYTES])
{
    if (!cache) {
        cache = sodium_malloc(sizeof(*cache));
        if (!cache)
            return false;
        memset(cache, 0, sizeof(*cache));
        randombytes_buf(cache->secret, sizeof(cache->secret));
        atexit(cache_wipe);
    }
    uint64_t limits[2] = {kdf->ops_limit, (uint64_t)kdf->mem_limit};
    crypto_generichash_state st;
    crypto_generichash_init(&st, cache->secret, sizeof(cache->secret), crypto_generichash_BYTES);
    crypto_generichash_update(&st, kdf->salt, sizeof(kdf->salt));
    crypto_generichash_update(&st, (const uint8_t *)limits, sizeof(limits));
    crypto_generichash_update(&st, (const uint8_t *)password, strlen(password));
    crypto_generichash_final(&st, name, crypto_generichash_BYTES);
    sodium_memzero(&st, sizeof(st));
    return true;
}

static bool cache_get(const uint8_t *name, uint8_t key[SEAL_KEY_LEN])
{
    for (int i = 0; i < CACHE_SLOTS; i++) {
        struct cache_slot *s = &cache->slots[i];
        if (s->used && !sodium_memcmp(s->name, name, sizeof(s->name))) {
            s->used = ++cache->tick;
            memcpy(key, s->key, SEAL_KEY_LEN);
            return true;
        }
    }
    return false;
}

static void cache_put(const uint8_t *name, const uint8_t key[SEAL_KEY_LEN])
{
    struct cache_slot *victim = &cache->slots[0];
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache->slots[i].used < victim->used)
            victim = &cache->slots[i];
    victim->used = ++cache->tick;
    memcpy(victim->name, name, sizeof(victim->name));
    memcpy(victim->key, key, SEAL_KEY_LEN);
}

int seal_derive(const char *password, const struct seal_kdf *kdf, uint8_t key[SEAL_KEY_LEN],
                struct err *err)
{
    uint8_t name[crypto_generichash_BYTES];
    pthread_mutex_lock(&cache_lock);
    bool cached = cache_name(password, kdf, name), hit = cached && cache_get(name, key);
    pthread_mutex_unlock(&cache_lock);
    if (hit)
        return FERRY_OK;
    /* Derived outside the lock: two first opens in parallel both pay, none waits. */
    if (crypto_pwhash(key, SEAL_KEY_LEN, password, strlen(password), kdf->salt, kdf->ops_limit,
                      kdf->mem_limit, crypto_pwhash_ALG_ARGON2ID13) != 0)
        return err_set(err, ERR_INTERNAL, "not enough memory to derive the repository key");
    pthread_mutex_lock(&cache_lock);
    if (cached && cache)
        cache_put(name, key);
    pthread_mutex_unlock(&cache_lock);
    return FERRY_OK;
}

/* --- XChaCha20-Poly1305 (IETF) through OpenSSL ------------------------------------------
 * The construction (draft-irtf-cfrg-xchacha): subkey = HChaCha20(key, nonce[0..16]), then
 * ChaCha20-Poly1305 (RFC 8439) under the subkey with the 12-byte nonce 0^4 || nonce[16..24]. */

static EVP_CIPHER *chacha; /* fetched once: an implicit fetch per call takes a lock */
static pthread_once_t chacha_once = PTHREAD_ONCE_INIT;

static void chacha_fetch(void)
{
    chacha = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
}

/* out gets the ciphertext and tag its tag (or, decrypting, the plaintext, once tag is
 * found right; else out is wiped). 1 done, 0 the tag does not match, -1 OpenSSL cannot do
 * it (no such cipher here, or lengths beyond an int): then libsodium does. */
static int chacha_run(bool enc, const uint8_t *key, const uint8_t nonce[SEAL_NONCE_LEN],
                      const void *ad, size_t ad_len, const uint8_t *in, size_t n, uint8_t *out,
                      uint8_t tag[SEAL_TAG_LEN])
{
    uint8_t subkey[32], iv[12] = {0};
    int len = 0, rc = 0;
    pthread_once(&chacha_once, chacha_fetch);
    if (!chacha || n > INT_MAX || ad_len > INT_MAX)
        return -1;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        abort(); /* ferry.h: out of memory aborts */
    crypto_core_hchacha20(subkey, nonce, key, NULL);
    memcpy(iv + 4, nonce + 16, 8);
    if (EVP_CipherInit_ex2(ctx, chacha, subkey, iv, enc, NULL) != 1 ||
        (ad_len && EVP_CipherUpdate(ctx, NULL, &len, ad, (int)ad_len) != 1) ||
        (n && EVP_CipherUpdate(ctx, out, &len, in, (int)n) != 1))
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, SEAL_TAG_LEN, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(ctx, out + n, &len) != 1)
        goto out;
    rc = !enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, SEAL_TAG_LEN, tag) == 1;
out:
    if (!rc && !enc)
        sodium_memzero(out, n); /* nothing unauthenticated is left behind */
    sodium_memzero(subkey, sizeof(subkey));
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

size_t seal_stored_len(const uint8_t *key, size_t n)
{
    return key ? n + SEAL_OVERHEAD : n;
}

size_t seal_encrypt(const uint8_t *key, const void *ad, size_t ad_len, const void *plain, size_t n,
                    uint8_t *out)
{
    if (!key) {
        memmove(out, plain, n);
        return n;
    }
    unsigned long long clen = 0;
    /* OpenSSL's DRBG runs in user space; libsodium's randombytes makes a getrandom()
     * system call per nonce, which costs more than sealing a small chunk. */
    crypto_random(out, SEAL_NONCE_LEN);
    if (chacha_run(true, key, out, ad, ad_len, plain, n, out + SEAL_NONCE_LEN,
                   out + SEAL_NONCE_LEN + n) == 1)
        return n + SEAL_OVERHEAD;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + SEAL_NONCE_LEN, &clen, plain, n, ad, ad_len,
                                               NULL, out, key);
    return SEAL_NONCE_LEN + (size_t)clen;
}

long seal_decrypt(const uint8_t *key, const void *ad, size_t ad_len, const uint8_t *in, size_t n,
                  uint8_t *out)
{
    if (!key) {
        memmove(out, in, n);
        return (long)n;
    }
    unsigned long long plen = 0;
    if (n < SEAL_OVERHEAD)
        return -1;
    uint8_t tag[SEAL_TAG_LEN];
    size_t body = n - SEAL_OVERHEAD;
    memcpy(tag, in + n - SEAL_TAG_LEN, SEAL_TAG_LEN);
    int rc = chacha_run(false, key, in, ad, ad_len, in + SEAL_NONCE_LEN, body, out, tag);
    if (rc >= 0)
        return rc ? (long)body : -1;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &plen, NULL, in + SEAL_NONCE_LEN,
                                                   n - SEAL_NONCE_LEN, ad, ad_len, in, key) != 0)
        return -1;
    return (long)plen;
}
