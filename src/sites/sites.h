/* sites.h - site-to-site connections in PhoenixKit's model (seeds 000/001 and
 * shared/seeds/PHOENIXKIT-NOTES.md): a connection is a sender (this site serves its
 * tables to the remote) or a receiver (this site pulls the remote's), identified by the
 * remote's URL and authenticated by the SHA-256 of a random token (the hash is the
 * bearer credential PhoenixKit's protocol sends). Also the site settings: the incoming
 * mode and the password remote sites must give, stored scrypt-hashed. */
#ifndef FERRY_SITES_H
#define FERRY_SITES_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"
#include "store/store.h"

/* What an import does with a row whose key exists (see siteimport.h). */
enum import_strategy { STRATEGY_SKIP, STRATEGY_OVERWRITE, STRATEGY_MERGE, STRATEGY_APPEND };

/* "skip", "overwrite", "merge" or "append"; FERRY_ERR (nothing set) for anything else. */
int sites_parse_strategy(const char *name, enum import_strategy *out);
const char *sites_strategy_name(enum import_strategy strategy);

/* Which way rows flow: this site sends (it made the connection) or receives. */
enum site_direction { SITE_SENDER, SITE_RECEIVER };
enum site_status { SITE_PENDING, SITE_ACTIVE, SITE_SUSPENDED, SITE_REVOKED, SITE_EXPIRED };
/* How this site answers a register-connection. */
enum incoming_mode {
    INCOMING_AUTO_ACCEPT,
    INCOMING_REQUIRE_APPROVAL,
    INCOMING_REQUIRE_PASSWORD,
    INCOMING_DENY_ALL,
};

/* Each parses its names ("sender", "active", "auto_accept", ...; FERRY_ERR, nothing set,
 * for anything else) where a state arrives as text, and names it where it is stored or
 * shown. */
int sites_parse_direction(const char *name, enum site_direction *out);
const char *sites_direction_name(enum site_direction direction);
int sites_parse_status(const char *name, enum site_status *out);
const char *sites_status_name(enum site_status status);
int sites_parse_mode(const char *name, enum incoming_mode *out);
const char *sites_mode_name(enum incoming_mode mode);

struct site {
    char id[40];
    char *name, *site_url, *token_hash;
    enum site_direction direction;
    enum site_status status;
    char *allowed_tables, *excluded_tables; /* comma lists; NULL or "": no restriction */
    char *ip_allowlist;                     /* comma list of addresses and CIDR ranges */
    enum import_strategy default_strategy;
    int64_t expires_at; /* ms; 0: never */
    int64_t max_records, rate_limit;
    int64_t records_sent, bytes_sent, requests;
    int64_t last_connected_at, last_transfer_at;
    bool reachable;
    int64_t failures, next_check_at;
    int64_t created_at, updated_at;
    int64_t approved_at; /* when this site accepted it (0: never): only then may the
                          * remote's update-status make it active */
};

void sites_clear(struct site *s);

/* A new connection record: s->id is filled (a UUID); ERR_CONFLICT "Connection already
 * exists for this site" when one of that direction exists for s->site_url. */
int sites_create(struct store_conn *c, struct site *s, struct err *err);

/* The connection whose token hash is hash, of direction (NULL: either) and, when url is
 * given, for that site. The lookup and the final comparison take the same time whether
 * or not a connection matches. */
int sites_find(struct store_conn *c, const char *hash, const enum site_direction *direction,
               const char *url, struct site *s, bool *found, struct err *err);
int sites_get(struct store_conn *c, const char *id, struct site *s, bool *found, struct err *err);
/* Every connection, as sites_json shows it, newest first. */
int sites_list(struct store_conn *c, json_t **out, struct err *err);

int sites_set_status(struct store_conn *c, const char *id, enum site_status status,
                     struct err *err);
/* Makes it active as accepted by this site (an admin's approval). */
int sites_approve(struct store_conn *c, const char *id, struct err *err);
int sites_delete(struct store_conn *c, const char *id, bool *found, struct err *err);

/* Changes the settable fields named in patch (name, allowed_tables, excluded_tables,
 * expires_at, max_records_per_request, rate_limit_requests_per_minute, ip_whitelist,
 * default_conflict_strategy); ERR_INVALID naming a bad one. */
int sites_update(struct store_conn *c, const char *id, json_t *patch, struct err *err);

/* Records a request from the remote (address, user agent) and what was sent. */
int sites_touch(struct store_conn *c, const char *id, const char *remote_ip, const char *user_agent,
                int64_t records, int64_t bytes, struct err *err);

/* Records the outcome of a call to the remote: reachable, or one more failure with the
 * time of the next try (backoff). */
int sites_reachability(struct store_conn *c, const char *id, bool reachable, int64_t next_check_at,
                       struct err *err);

/* The connection for the admin API (never the token hash). */
json_t *sites_json(const struct site *s);

/* Whether the connection may see table (allowed, not excluded). */
bool sites_table_allowed(const struct site *s, const char *table);
/* Whether address is in the connection's IP allowlist (always, when it has none). */
bool sites_ip_allowed(const struct site *s, const char *address);

/* Whether strategy names an import strategy. */
/* An absolute http or https URL with a host (libcurl's URL parser decides): the only
 * kind of site address ferry stores or calls. */
bool sites_valid_url(const char *url);
bool sites_valid_strategy(const char *strategy);

/* --- settings --------------------------------------------------------------------------- */

struct site_settings {
    enum incoming_mode mode;
    char *password_hash; /* scrypt, or NULL */
};

int sites_settings_get(struct store_conn *c, struct site_settings *out, struct err *err);
/* Sets the mode (NULL: keep) and the password (NULL: keep, "": none). */
int sites_settings_set(struct store_conn *c, const char *mode, const char *password,
                       struct err *err);
void sites_settings_clear(struct site_settings *s);

/* scrypt: hashes a password into "scrypt$N$r$p$salt$hash" (caller frees), and checks
 * one against such a hash in time that does not depend on where they differ. */
char *sites_password_hash(const char *password);
bool sites_password_check(const char *stored, const char *given);

/* A new connection token: 32 random bytes, base64url without padding (PhoenixKit's
 * form), and its SHA-256 in lower-case hex. */
void sites_new_token(char token[64], char hash[65]);

#endif
