/* auth.h - who is asking: bearer tokens (ferry's own, or HS256 JWTs), roles, the
 * per-credential rate limit and the per-address limit on failed authentication. */
#ifndef FERRY_AUTH_H
#define FERRY_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "http/http.h"

/* Decides whether req may reach its handler. On false a reply (401, 403 or 429 in the
 * surface's format) has been set. Adds the X-RateLimit-* headers. */
bool auth_check(struct request *req);

/* Whether the credential may see a record owned by user_id (NULL: no owner): admins see
 * every record, others their user's. */
bool auth_owns(const struct request *req, const char *user_id);

/* Verifies an HS256 JWT with secret at now (seconds). On success fills cred as a user
 * credential (sub = user id). Refuses alg none and every other algorithm, a missing
 * sub, an expired token (exp) and one not yet valid (nbf). */
int auth_verify_jwt(const char *token, const char *secret, int64_t now_s, struct credential *cred,
                    struct err *err);

/* Copies claim name of cred into out as text (a number in its JSON form). FERRY_OK, or
 * FERRY_ERR when cred has no such claim or it does not fit. */
int credential_claim(const struct credential *cred, const char *name, char *out, size_t n);

/* Fills cred->claims from a decoded JWT's grants: every top-level string or integer
 * claim except the registered time claims, as long as the object fits. */
void auth_claims_from_json(struct credential *cred, const char *grants_json);

#endif
