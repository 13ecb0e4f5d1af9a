/* whsign.c - see whsign.h. HMAC comes from OpenSSL; only the framing is ours. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/params.h>

#include "util/base64.h"
#include "util/crypto.h"
#include "webhooks/whsign.h"

void whsign_new_secret(char out[WHSIGN_SECRET_MAX])
{
    unsigned char key[WHSIGN_KEY_BYTES];
    crypto_random(key, sizeof(key));
    char *text = base64_encode(key, sizeof(key));
    snprintf(out, WHSIGN_SECRET_MAX, WHSIGN_PREFIX "%s", text);
    free(text);
}

int whsign_sign(const char *secret, const char *msg_id, int64_t timestamp, const char *body,
                size_t body_len, char out[WHSIGN_SIGNATURE_MAX], struct err *err)
{
    unsigned char key[96], mac[EVP_MAX_MD_SIZE];
    size_t plen = strlen(WHSIGN_PREFIX);
    if (strncmp(secret, WHSIGN_PREFIX, plen) != 0)
        return err_set(err, ERR_INVALID, "a webhook secret starts with " WHSIGN_PREFIX);
    ssize_t key_len = base64_decode(secret + plen, strlen(secret + plen), key, sizeof(key));
    if (key_len <= 0)
        return err_set(err, ERR_INVALID, "a webhook secret is " WHSIGN_PREFIX " and base64");
    char head[320];
    int head_len = snprintf(head, sizeof(head), "%s.%lld.", msg_id, (long long)timestamp);
    if (head_len < 0 || (size_t)head_len >= sizeof(head))
        return err_set(err, ERR_INVALID, "webhook message id too long");
    EVP_MAC *mac_algo = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac_algo ? EVP_MAC_CTX_new(mac_algo) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t out_len = 0;
    int ok = ctx && EVP_MAC_init(ctx, key, (size_t)key_len, params) &&
             EVP_MAC_update(ctx, (const unsigned char *)head, (size_t)head_len) &&
             EVP_MAC_update(ctx, (const unsigned char *)body, body_len) &&
             EVP_MAC_final(ctx, mac, &out_len, sizeof(mac));
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac_algo);
    OPENSSL_cleanse(key, sizeof(key));
    if (!ok)
        abort(); /* OpenSSL without HMAC-SHA256: the allocation policy's case (ferry.h) */
    char *text = base64_encode(mac, out_len);
    snprintf(out, WHSIGN_SIGNATURE_MAX, "v1,%s", text);
    free(text);
    return FERRY_OK;
}
