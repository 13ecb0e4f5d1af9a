/* crypto.h - the few primitives ferry needs, all from OpenSSL's libcrypto: SHA-256,
 * secure random bytes, constant-time comparison, base64url. */
#ifndef FERRY_CRYPTO_H
#define FERRY_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

/* SHA-256 of data as 64 lower-case hex characters plus NUL. */
void crypto_sha256_hex(const void *data, size_t len, char out[65]);
/* An incremental digest (EVP_sha256(), EVP_sha1()), started; aborts when OpenSSL cannot
 * allocate one (ferry.h's policy). Feed with EVP_DigestUpdate, free with
 * EVP_MD_CTX_free. */
EVP_MD_CTX *crypto_digest_new(const EVP_MD *type);
/* Ends an incremental SHA-256 as 64 lower-case hex characters plus NUL. */
void crypto_sha256_final_hex(EVP_MD_CTX *md, char out[65]);

/* Fills out with n cryptographically secure random bytes; aborts if the system's
 * random source fails (no token may ever be made from weak randomness). */
void crypto_random(void *out, size_t n);
/* n random bytes as 2n hex characters plus NUL. */
void crypto_random_hex(char *out, size_t n_bytes);
/* Compares two strings in time that depends only on their lengths. */
bool crypto_equal(const char *a, const char *b);

#endif
