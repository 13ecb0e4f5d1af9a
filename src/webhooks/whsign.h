/* whsign.h - Standard Webhooks 1.0 signatures: secrets ("whsec_" + base64 of random
 * bytes) and the webhook-signature value, "v1," + base64 of HMAC-SHA256 over
 * "{webhook-id}.{webhook-timestamp}.{body}" keyed with the secret's decoded bytes. */
#ifndef FERRY_WHSIGN_H
#define FERRY_WHSIGN_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

#define WHSIGN_PREFIX "whsec_"
#define WHSIGN_KEY_BYTES 32 /* the specification asks for 24 to 64 */
#define WHSIGN_SECRET_MAX 128
#define WHSIGN_SIGNATURE_MAX 64 /* "v1," + 44 base64 characters + NUL fits */

/* A new secret, "whsec_" + base64 of WHSIGN_KEY_BYTES random bytes. */
void whsign_new_secret(char out[WHSIGN_SECRET_MAX]);

/* Signs one delivery: out gets "v1,<base64 signature>". Fails with ERR_INVALID when the
 * secret is not "whsec_" followed by base64 (nothing is written then). */
int whsign_sign(const char *secret, const char *msg_id, int64_t timestamp, const char *body,
                size_t body_len, char out[WHSIGN_SIGNATURE_MAX], struct err *err);

#endif
