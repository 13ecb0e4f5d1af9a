/* tokens.h - API tokens: random secrets with a readable prefix, stored only as their
 * SHA-256, with a role (admin, user, device), an owner, an optional expiry and
 * revocation. The secret is returned once, at creation. */
#ifndef FERRY_TOKENS_H
#define FERRY_TOKENS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"
#include "store/store.h"

#define TOKEN_PREFIX "fy_"
#define TOKEN_PREFIX_DEVICE "fyd_"
#define TOKEN_SECRET_BYTES 32
#define TOKEN_MAX_LEN 128

/* A token's role: parsed once where a role arrives as text (CLI, admin API, the store),
 * named only where it is shown or stored. */
enum token_role { TOKEN_ROLE_NONE, TOKEN_ROLE_ADMIN, TOKEN_ROLE_USER, TOKEN_ROLE_DEVICE };

/* "admin", "user" or "device"; TOKEN_ROLE_NONE for anything else (NULL too). */
enum token_role tokens_parse_role(const char *name);
/* The role's name ("" for TOKEN_ROLE_NONE). */
const char *tokens_role_name(enum token_role role);

struct token_info {
    char id[40];
    enum token_role role;
    char user_id[128];
    char device_id[128];
    char tables[1024]; /* comma list of tables it may sync; empty: all */
    char attrs[1024];  /* its attributes as a compact JSON object; "" when none */
};

struct token_spec {
    enum token_role role;
    const char *name;      /* label shown in listings */
    const char *user_id;   /* owner; for user tokens a user row is made if missing */
    const char *device_id; /* device tokens only */
    int64_t expires_at;    /* ms since epoch, 0 for never */
    const char *tables;    /* comma list of tables it may sync; NULL: all */
    /* Attributes the sync rules' claim rules read (docs/sync-rules.md): a JSON object of
     * string or integer values, as text; NULL or "" for none. */
    const char *attrs;
};

#define TOKEN_ATTRS_MAX 1000 /* longest attributes object, as compact JSON */

/* Checks attributes (JSON text of an object of up to TOKEN_ATTRS_MAX bytes, names 1 to 128
 * characters, values strings or integers) and gives them in compact form (sorted keys) in
 * *out, NULL for none. Caller frees. */
int tokens_check_attrs(const char *attrs, char **out, struct err *err);

/* Checks a token's description (role, name, user, device, expiry, tables) as
 * tokens_create does, without the database; err says what is wrong. */
int tokens_check(const struct token_spec *spec, int64_t now_ms, struct err *err);

/* Makes a token. *secret gets the full token (the caller frees it and shows it once);
 * *id the token's id. On failure nothing is stored. Called inside a transaction, it
 * joins it; otherwise it runs its own. */
int tokens_create(struct store_conn *c, const struct token_spec *spec, char **secret,
                  char id_out[40], struct err *err);

/* Checks a presented token. On success fills *info. ERR_UNAUTHORIZED when the token is
 * unknown, revoked or expired; the message says which (it names no secret). */
int tokens_authenticate(struct store_conn *c, const char *token, int64_t now_ms,
                        struct token_info *info, struct err *err);

/* tokens_authenticate through the process's cache: a token found valid is trusted for
 * ttl_ms without the database (0: no cache), unless it expires first; a connection
 * of st's pool is taken only to ask it (ERR_UNAVAILABLE when none can be had). Revocations made
 * in this process take effect at once (see tokens_forget_all); made elsewhere (another
 * node, the CLI), within ttl_ms. */
int tokens_authenticate_cached(struct store *st, const char *token, int64_t now_ms, int64_t ttl_ms,
                               struct token_info *info, struct err *err);

/* Empties the authentication cache. Whatever revokes tokens (or removes what they stand
 * for) calls it after its commit; tokens_revoke does so itself outside a transaction. */
void tokens_forget_all(void);

/* Lists tokens (never secrets) as a JSON array; user_id filters when not NULL. */
int tokens_list(struct store_conn *c, const char *user_id, json_t **out, struct err *err);

/* One token as JSON, ERR_NOT_FOUND when there is none with that id. */
int tokens_get(struct store_conn *c, const char *id, json_t **out, struct err *err);

/* Replaces a token's attributes (attrs as for token_spec). When they change, the devices
 * that act with them are marked for one resync (a device token's device; a user token's
 * user's devices), since the rows a claim rule lets them read may have changed.
 * ERR_NOT_FOUND for an unknown id. */
int tokens_set_attrs(struct store_conn *c, const char *id, const char *attrs, struct err *err);

/* Revokes a token at once. ERR_NOT_FOUND for an unknown id; revoking twice is fine. */
int tokens_revoke(struct store_conn *c, const char *id, struct err *err);

/* True when the token text has the shape of a ferry token (prefix and length). */
bool tokens_well_formed(const char *token);

/* Whether id can name a device: 1 to 128 characters of A-Z a-z 0-9 - _ . : */
bool tokens_valid_device_id(const char *id);

#endif
