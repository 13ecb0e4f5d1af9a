/* tusheader.h - the tus 1.0 request headers as text: Upload-Offset / Upload-Length,
 * Upload-Metadata and Upload-Checksum. Pure parsing, no request or store, so that the
 * fuzzer (tests/fuzz/) can reach it; api/tus.c acts on the results. */
#ifndef FERRY_TUSHEADER_H
#define FERRY_TUSHEADER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* A decimal header value >= 0 (no sign, no spaces); -1 when value is NULL or not one. */
int64_t tusheader_int(const char *value);

/* Parses Upload-Metadata ("key base64,key base64"): the first "path" and "filename"
 * values, decoded (newly allocated, NULL when absent; the caller frees both). Returns 0,
 * or -1 with *why set (and nothing allocated) when the header is malformed, a value is
 * longer than max_value bytes or holds a NUL. */
int tusheader_metadata(const char *meta, size_t max_value, char **path, char **filename,
                       const char **why);

/* Parses Upload-Checksum ("sha1 base64" or "sha256 base64"): *md and the digest in
 * digest (cap bytes, EVP_MAX_MD_SIZE is enough), its length in *len. Returns 0, or -1
 * with *why set. */
int tusheader_checksum(const char *header, const EVP_MD **md, unsigned char *digest, size_t cap,
                       int *len, const char **why);

#endif
