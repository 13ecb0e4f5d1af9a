/* sign.c - see sign.h. Hand-written because libcurl's CURLOPT_AWS_SIGV4 signs only the
 * requests curl itself sends (a shared link is a URL for someone else's client), and
 * Azure's SharedKey scheme is in no Debian library; each follows the provider's
 * documented algorithm step by step, and the unit tests hold it to the documented
 * example values. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include "cloud/sign.h"
#include "ferry.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/crypto.h"

static void hmac(const void *key, size_t key_len, const char *text, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)text, strlen(text), out, &len);
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
}

void sign_hmac_hex(const char *key, const char *text, char out[65])
{
    unsigned char mac[32];
    hmac(key, strlen(key), text, mac);
    hex(mac, 32, out);
}

char *sign_uri_encode(const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(s);
    char *out = xmalloc(len * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~' ||
            (keep_slash && *p == '/')) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* --- SigV4 (docs.aws.amazon.com, "Authenticating Requests: Using Query Parameters") --- */

char *sign_sigv4_presign_query(const struct sign_sigv4 *p)
{
    char date[9], stamp[17], canon_hash[65], sig[65];
    unsigned char k[32];
    struct tm tm;
    time_t now = (time_t)p->now;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y%m%d", &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);

    char *scope = xasprintf("%s/%s/%s/aws4_request", date, p->region, p->service);
    char *credential = xasprintf("%s/%s", p->access_key_id, scope);
    char *cred_enc = sign_uri_encode(credential, false);
    /* Parameters in byte order of their names, as the canonical query must be. */
    char *query = xasprintf("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s&X-Amz-Date=%s"
                            "&X-Amz-Expires=%lld&X-Amz-SignedHeaders=host",
                            cred_enc, stamp, (long long)p->expires_in);
    char *canonical =
        xasprintf("GET\n%s\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD", p->path, query, p->host);
    crypto_sha256_hex(canonical, strlen(canonical), canon_hash);
    char *to_sign = xasprintf("AWS4-HMAC-SHA256\n%s\n%s\n%s", stamp, scope, canon_hash);

    char *secret = xasprintf("AWS4%s", p->secret_access_key);
    hmac(secret, strlen(secret), date, k);
    hmac(k, 32, p->region, k);
    hmac(k, 32, p->service, k);
    hmac(k, 32, "aws4_request", k);
    unsigned char mac[32];
    hmac(k, 32, to_sign, mac);
    hex(mac, 32, sig);

    char *out = xasprintf("%s&X-Amz-Signature=%s", query, sig);
    OPENSSL_cleanse(secret, strlen(secret));
    free(secret);
    free(scope);
    free(credential);
    free(cred_enc);
    free(query);
    free(canonical);
    free(to_sign);
    return out;
}

/* --- Azure SharedKey ("Authorize with Shared Key", Blob service) ---------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lower-cases each "name:value" line's name and sorts the lines. */
static char **canonical_lines(const char *const *lines, size_t n, char sep)
{
    char **out = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        out[i] = xstrdup(lines[i]);
        for (char *p = out[i]; *p && *p != sep; p++)
            *p = (char)tolower((unsigned char)*p);
        char *eq = strchr(out[i], sep);
        if (sep == '=' && eq)
            *eq = ':'; /* query parameters become "name:value" lines */
    }
    qsort(out, n, sizeof(char *), cmp_str);
    return out;
}

char *sign_azure_string_to_sign(const char *verb, const char *const std[AZ_N_STD],
                                const char *const *ms_headers, size_t n_ms, const char *account,
                                const char *path, const char *const *query, size_t n_query)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s\n", verb);
    for (int i = 0; i < AZ_N_STD; i++)
        buf_printf(&b, "%s\n", std[i] ? std[i] : "");
    char **headers = canonical_lines(ms_headers, n_ms, ':');
    for (size_t i = 0; i < n_ms; i++) {
        buf_printf(&b, "%s\n", headers[i]);
        free(headers[i]);
    }
    free(headers);
    buf_printf(&b, "/%s%s", account, path);
    char **params = canonical_lines(query, n_query, '=');
    for (size_t i = 0; i < n_query; i++) {
        buf_printf(&b, "\n%s", params[i]);
        free(params[i]);
    }
    free(params);
    return buf_steal(&b);
}

char *sign_hmac_b64(const char *key_b64, const char *text)
{
    size_t len = strlen(key_b64);
    unsigned char *key = xmalloc(len + 1), mac[32];
    ssize_t key_len = base64_decode(key_b64, len, key, len + 1);
    char *out = NULL;
    if (key_len > 0) {
        hmac(key, (size_t)key_len, text, mac);
        out = base64_encode(mac, sizeof(mac));
    }
    OPENSSL_cleanse(key, len + 1);
    free(key);
    return out;
}

char *sign_azure_sas(const char *key_b64, const char *account, const char *container,
                     const char *blob, const char *expiry)
{
    /* Service SAS, version 2020-12-06 and later: sp, st, se, canonicalized resource, si,
     * sip, spr, sv, sr, snapshot time, encryption scope, then the five response headers. */
    char *to_sign = xasprintf("r\n\n%s\n/blob/%s/%s/%s\n\n\n\n2020-12-06\nb\n\n\n\n\n\n\n", expiry,
                              account, container, blob);
    char *sig = sign_hmac_b64(key_b64, to_sign);
    free(to_sign);
    return sig;
}
