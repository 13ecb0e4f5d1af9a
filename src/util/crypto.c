/* crypto.c - see crypto.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util/crypto.h"
#include "util/log.h"

void crypto_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int md_len = 0;
    static const char hex[] = "0123456789abcdef";
    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1)
        abort();
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

void crypto_random(void *out, size_t n)
{
    if (RAND_bytes(out, (int)n) != 1) {
        log_fatal("random_failed", "the system random source failed");
        abort();
    }
}

void crypto_random_hex(char *out, size_t n_bytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];
    if (n_bytes > sizeof(raw))
        abort();
    crypto_random(raw, n_bytes);
    for (size_t i = 0; i < n_bytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * n_bytes] = '\0';
}

bool crypto_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    return CRYPTO_memcmp(a, b, la) == 0;
}

EVP_MD_CTX *crypto_digest_new(const EVP_MD *type)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, type, NULL) != 1)
        abort();
    return md;
}

void crypto_sha256_final_hex(EVP_MD_CTX *md, char out[65])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(md, d, &len);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[64] = '\0';
}
