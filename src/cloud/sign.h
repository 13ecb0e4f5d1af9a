/* sign.h - the request signatures libcurl does not make: SigV4 query presigning (curl's
 * CURLOPT_AWS_SIGV4 signs requests it sends, not URLs handed to others), Azure's
 * SharedKey and service SAS, and ferry's own links. All HMAC-SHA256 from OpenSSL. */
#ifndef FERRY_CLOUD_SIGN_H
#define FERRY_CLOUD_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Percent-encodes s the way SigV4 and Azure want: unreserved bytes (A-Z a-z 0-9 - . _ ~)
 * stay, '/' stays when keep_slash, the rest become %XX (upper-case). Caller frees. */
char *sign_uri_encode(const char *s, bool keep_slash);

/* What a SigV4 presigned GET names. path is the canonical URI (already encoded, e.g.
 * "/bucket/key"); host the Host header ("s3.amazonaws.com" or "127.0.0.1:4569"). */
struct sign_sigv4 {
    const char *access_key_id, *secret_access_key, *region, *service;
    const char *host, *path;
    int64_t now; /* seconds since the epoch: the signing time */
    int64_t expires_in;
};

/* The query string of the presigned URL ("X-Amz-Algorithm=...&X-Amz-Signature=..."), the
 * part after '?'. Caller frees. */
char *sign_sigv4_presign_query(const struct sign_sigv4 *p);

/* The eleven standard headers of an Azure SharedKey string-to-sign, in its order. */
enum sign_azure_std {
    AZ_CONTENT_ENCODING,
    AZ_CONTENT_LANGUAGE,
    AZ_CONTENT_LENGTH, /* "" when the body is empty */
    AZ_CONTENT_MD5,
    AZ_CONTENT_TYPE,
    AZ_DATE,
    AZ_IF_MODIFIED_SINCE,
    AZ_IF_MATCH,
    AZ_IF_NONE_MATCH,
    AZ_IF_UNMODIFIED_SINCE,
    AZ_RANGE,
    AZ_N_STD
};

/* The SharedKey string-to-sign (Blob service, versions 2015-02-21 and later). std values
 * may be NULL (empty). ms_headers are "x-ms-name:value" lines, any case and order;
 * query holds "name=value" pairs with decoded values, any order. path is the URL's path
 * as sent (encoded). Caller frees. */
char *sign_azure_string_to_sign(const char *verb, const char *const std[AZ_N_STD],
                                const char *const *ms_headers, size_t n_ms, const char *account,
                                const char *path, const char *const *query, size_t n_query);

/* base64(HMAC-SHA256(base64-decoded key_b64, text)); NULL when key_b64 is not base64.
 * Caller frees. */
char *sign_hmac_b64(const char *key_b64, const char *text);

/* The sig of a read-only service SAS for one blob (sv=2020-12-06, sr=b, sp=r), expiring
 * at expiry ("2024-01-15T11:30:00Z"). NULL when key_b64 is not base64. Caller frees. */
char *sign_azure_sas(const char *key_b64, const char *account, const char *container,
                     const char *blob, const char *expiry);

/* Lower-case hex HMAC-SHA256 of text under key (a secret string), into out. */
void sign_hmac_hex(const char *key, const char *text, char out[65]);

#endif
