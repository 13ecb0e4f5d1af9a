/* seal.h - the backup repository's cryptography (libsodium): authenticated encryption of
 * every stored object with XChaCha20-Poly1305, a random master key wrapped by a key that
 * Argon2id derives from the repository password (so the password can change without
 * re-encrypting anything). A NULL key means a plaintext repository: objects pass through. */
#ifndef FERRY_BACKUP_SEAL_H
#define FERRY_BACKUP_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

#define SEAL_KEY_LEN 32
#define SEAL_SALT_LEN 16
#define SEAL_NONCE_LEN 24
#define SEAL_TAG_LEN 16
#define SEAL_OVERHEAD (SEAL_NONCE_LEN + SEAL_TAG_LEN) /* nonce first, tag last */

struct seal_kdf {
    uint8_t salt[SEAL_SALT_LEN];
    uint64_t ops_limit;
    size_t mem_limit;
};

/* Starts libsodium (idempotent); ERR_INTERNAL when it cannot. */
int seal_init(struct err *err);

/* A fresh random master key and KDF parameters (a new salt, libsodium's interactive
 * limits). */
void seal_new_master(uint8_t key[SEAL_KEY_LEN], struct seal_kdf *kdf);

/* Derives the password key with Argon2id13, once per process for the same password, salt
 * and limits (later calls answer from a cache in locked memory, wiped at exit).
 * ERR_INTERNAL when memory runs short. */
int seal_derive(const char *password, const struct seal_kdf *kdf, uint8_t key[SEAL_KEY_LEN],
                struct err *err);

/* Encrypts n bytes of plain into out (n + SEAL_OVERHEAD bytes: nonce, ciphertext, tag),
 * binding ad (additional data, may be NULL) to it. With key NULL copies plain to out and
 * returns n. Returns the bytes written. */
size_t seal_encrypt(const uint8_t *key, const void *ad, size_t ad_len, const void *plain, size_t n,
                    uint8_t *out);

/* Decrypts and authenticates what seal_encrypt wrote (n bytes) into out (n - SEAL_OVERHEAD
 * bytes); with key NULL copies. Returns the plain length, or -1 when the object was altered,
 * was made with another key or ad, or is too short. */
long seal_decrypt(const uint8_t *key, const void *ad, size_t ad_len, const uint8_t *in, size_t n,
                  uint8_t *out);

/* Bytes one object of n plain bytes takes stored. */
size_t seal_stored_len(const uint8_t *key, size_t n);

#endif
