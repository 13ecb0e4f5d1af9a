/* base64.c - see base64.h. OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock do the coding;
 * this file adds what they leave to the caller: the padding bytes EVP_DecodeBlock counts
 * as data, the url alphabet, and bounds. */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ferry.h"
#include "util/base64.h"

size_t base64_encoded_len(size_t len)
{
    return 4 * ((len + 2) / 3);
}

char *base64_encode(const void *data, size_t len)
{
    if (len > INT_MAX / 4 * 3)
        abort(); /* larger than any body ferry accepts */
    char *out = xmalloc(base64_encoded_len(len) + 1);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

size_t base64_url_encode(const void *data, size_t len, char *out)
{
    if (len > INT_MAX / 4 * 3)
        abort();
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (int i = 0; i < n; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return (size_t)n;
}

ssize_t base64_decode(const char *in, size_t len, void *out, size_t cap)
{
    ssize_t rc = -1;
    unsigned char *bytes = NULL;
    if (len % 4 || len > INT_MAX)
        return -1;
    if (len == 0)
        return 0;
    /* EVP_DecodeBlock reads '=' anywhere as zero bits and skips whitespace at either
     * end, so the text is checked here first. */
    size_t pad = 0;
    while (pad < len && in[len - 1 - pad] == '=')
        pad++;
    if (pad > 2)
        return -1;
    for (size_t i = 0; i < len - pad; i++)
        if (!isalnum((unsigned char)in[i]) && in[i] != '+' && in[i] != '/')
            return -1;
    size_t full = len / 4 * 3;
    bytes = xmalloc(full);
    int n = EVP_DecodeBlock(bytes, (const unsigned char *)in, (int)len);
    if (n < 0 || (size_t)n != full || full - pad > cap)
        goto out;
    memcpy(out, bytes, full - pad);
    rc = (ssize_t)(full - pad);
out:
    free(bytes);
    return rc;
}

ssize_t base64_url_decode(const char *in, size_t len, void *out, size_t cap)
{
    if (len % 4 == 1 || len > INT_MAX - 3)
        return -1;
    char *std = xmalloc(len + 3);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '+' || in[i] == '/' || in[i] == '=') {
            free(std);
            return -1;
        }
        std[k++] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    }
    while (k % 4)
        std[k++] = '=';
    ssize_t n = base64_decode(std, k, out, cap);
    free(std);
    return n;
}
