/* seal.c - libsodium's XChaCha20-Poly1305 (AEAD, 192-bit random nonces, so no nonce is
 * ever reused by chance) and Argon2id13 for the password key. */
#include <string.h>

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

int seal_derive(const char *password, const struct seal_kdf *kdf, uint8_t key[SEAL_KEY_LEN],
                struct err *err)
{
    if (crypto_pwhash(key, SEAL_KEY_LEN, password, strlen(password), kdf->salt, kdf->ops_limit,
                      kdf->mem_limit, crypto_pwhash_ALG_ARGON2ID13) != 0)
        return err_set(err, ERR_INTERNAL, "not enough memory to derive the repository key");
    return FERRY_OK;
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
    if (n < SEAL_OVERHEAD ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(out, &plen, NULL, in + SEAL_NONCE_LEN,
                                                   n - SEAL_NONCE_LEN, ad, ad_len, in, key) != 0)
        return -1;
    return (long)plen;
}
