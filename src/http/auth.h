/* auth.h - who is asking: bearer tokens (ferry's own, or JWTs), roles, the
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

struct config;
/* The JWT verifier built from the jwt-* settings: the HS256 secret, PEM public keys and
 * the identity provider's JWK Set (fetched now, then refreshed in the background).
 * *out is NULL when none is configured (JWTs are then not accepted). On failure err
 * names the bad setting. Close with auth_jwt_close (NULL: nothing). */
struct auth_jwt;
int auth_jwt_open(const struct config *cfg, struct auth_jwt **out, struct err *err);
void auth_jwt_close(struct auth_jwt *j);

/* Verifies a JWT at now (seconds). On success fills cred as a user credential (the user
 * claim = user id, claims = those jwt-claims allows). Refuses alg none and algorithms
 * other than HS256, RS256, ES256 and EdDSA, a token of one algorithm verified with
 * another's key, a kid naming an unknown or unfitting key, iss or aud other than the
 * configured ones, a missing user claim, an expired token (exp) and one not yet valid
 * (nbf). May wait (bounded) for a refresh of the JWK Set when the kid is unknown. */
int auth_verify_jwt(const struct auth_jwt *j, const char *token, int64_t now_s,
                    struct credential *cred, struct err *err);

/* Copies claim name of cred into out as text (a number in its JSON form). FERRY_OK, or
 * FERRY_ERR when cred has no such claim or it does not fit. */
int credential_claim(const struct credential *cred, const char *name, char *out, size_t n);

/* Fills cred->claims from a decoded JWT's grants: every top-level string or integer
 * claim except the registered time claims, as long as the object fits. */
void auth_claims_from_json(struct credential *cred, const char *grants_json);

#endif
