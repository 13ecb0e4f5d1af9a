/* base64.h - the one base64 codec: standard base64 with padding (RFC 4648 section 4)
 * for values in JSON and tus headers, base64url without padding (section 5) for tokens
 * and password hashes. Built on OpenSSL's block coder. */
#ifndef FERRY_BASE64_H
#define FERRY_BASE64_H

#include <stddef.h>
#include <sys/types.h>

/* Length of the padded standard encoding of len bytes, without the NUL. */
size_t base64_encoded_len(size_t len);

/* Encodes len bytes (standard alphabet, padded) into a new NUL-terminated string, which
 * the caller frees. */
char *base64_encode(const void *data, size_t len);

/* Encodes len bytes as base64url without padding into out, which must hold
 * base64_encoded_len(len) + 1 bytes; returns the length written before the NUL. */
size_t base64_url_encode(const void *data, size_t len, char *out);

/* Decodes len characters of standard base64 (a multiple of 4, at most two '=' at the
 * end, no whitespace) into out, which holds cap bytes. Returns the number of bytes, or
 * -1 when the text is not base64 or its bytes do not fit; out is then unspecified. */
ssize_t base64_decode(const char *in, size_t len, void *out, size_t cap);

/* The same for base64url without padding. */
ssize_t base64_url_decode(const char *in, size_t len, void *out, size_t cap);

#endif
