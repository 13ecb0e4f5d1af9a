/* auth.c - see auth.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "auth/jwks.h"
#include "auth/jws.h"
#include "auth/tokens.h"
#include "http/auth.h"
#include "http/netlimit.h"
#include "util/timeutil.h"

struct auth_jwt {
    const char *secret;      /* HS256; NULL: not accepted */
    struct jws_keyset *pem;  /* jwt-public-key files; NULL when none */
    struct jwks_cache *jwks; /* jwt-jwks-url; NULL when none */
    struct jws_expect expect;
    const char *claims; /* jwt-claims: comma list; NULL keeps every claim */
};

static int load_pem_keys(const char *list, struct jws_keyset **out, struct err *err)
{
    char *copy = xstrdup(list), *save = NULL;
    struct jws_keyset *set = jws_keyset_new();
    int rc = FERRY_OK;
    for (char *path = strtok_r(copy, ":", &save); path && rc == FERRY_OK;
         path = strtok_r(NULL, ":", &save))
        rc = jws_keyset_add_pem(set, path, err);
    free(copy);
    if (rc == FERRY_OK)
        *out = set;
    else
        jws_keyset_unref(set);
    return rc;
}

int auth_jwt_open(const struct config *cfg, struct auth_jwt **out, struct err *err)
{
    bool keys = cfg->jwt_public_keys && *cfg->jwt_public_keys;
    bool jwks = cfg->jwt_jwks_url && *cfg->jwt_jwks_url;
    *out = NULL;
    if (!(cfg->jwt_secret && *cfg->jwt_secret) && !keys && !jwks)
        return FERRY_OK; /* JWTs are not accepted */
    struct auth_jwt *j = xcalloc(1, sizeof(*j));
    j->secret = cfg->jwt_secret && *cfg->jwt_secret ? cfg->jwt_secret : NULL;
    j->expect = (struct jws_expect){cfg->jwt_issuer, cfg->jwt_audience, cfg->jwt_user_claim};
    j->claims = cfg->jwt_claims;
    struct jwks_options o = {cfg->jwt_jwks_url, cfg->jwt_jwks_timeout * 1000,
                             cfg->jwt_jwks_refresh * 1000, cfg->jwt_jwks_min_interval * 1000};
    if ((keys && load_pem_keys(cfg->jwt_public_keys, &j->pem, err) != FERRY_OK) ||
        (jwks && jwks_cache_open(&o, &j->jwks, err) != FERRY_OK)) {
        auth_jwt_close(j);
        return FERRY_ERR;
    }
    *out = j;
    return FERRY_OK;
}

void auth_jwt_close(struct auth_jwt *j)
{
    if (!j)
        return;
    jwks_cache_close(j->jwks);
    jws_keyset_unref(j->pem);
    free(j);
}

/* Verifies t's signature with the configured secret and keys; a kid the cached JWK Set
 * lacks asks the cache for a fresh set once. */
static int verify_signature(const struct auth_jwt *j, const struct jws_token *t, struct err *err)
{
    struct jws_keyset *sets[2] = {j->pem, j->jwks ? jwks_cache_keys(j->jwks) : NULL};
    enum jws_verdict v = jws_verify(t, j->secret, sets, 2, err);
    if (v == JWS_NO_KEY && j->jwks) {
        struct err why = {0};
        struct jws_keyset *fresh = jwks_cache_refresh(j->jwks, sets[1], &why);
        if (fresh) {
            jws_keyset_unref(sets[1]);
            sets[1] = fresh;
            v = jws_verify(t, j->secret, sets, 2, err);
        } else {
            char first[sizeof(err->msg)];
            snprintf(first, sizeof(first), "%s", err->msg);
            err_set(err, ERR_UNAUTHORIZED, "%s (%s)", first, why.msg);
        }
    }
    jws_keyset_unref(sets[1]);
    return v == JWS_VALID ? FERRY_OK : FERRY_ERR;
}

/* The claims the rules may use as JSON text: all of them, or only those jwt-claims
 * lists. Caller frees. */
static char *rule_claims(const struct auth_jwt *j, json_t *claims)
{
    if (!j->claims || !*j->claims)
        return json_dumps(claims, JSON_COMPACT);
    json_t *kept = json_object();
    char *list = xstrdup(j->claims), *save = NULL;
    for (char *name = strtok_r(list, ", ", &save); name; name = strtok_r(NULL, ", ", &save)) {
        json_t *v = json_object_get(claims, name);
        if (v)
            json_object_set(kept, name, v);
    }
    free(list);
    char *text = json_dumps(kept, JSON_COMPACT);
    json_decref(kept);
    return text;
}

int auth_verify_jwt(const struct auth_jwt *j, const char *token, int64_t now_s,
                    struct credential *cred, struct err *err)
{
    struct jws_token t;
    const char *user;
    int rc = FERRY_ERR;

    if (jws_parse(token, &t, err) != FERRY_OK)
        return FERRY_ERR;
    if (verify_signature(j, &t, err) != FERRY_OK ||
        jws_check_claims(&t, &j->expect, now_s, sizeof(cred->user_id), &user, err) != FERRY_OK)
        goto out;
    memset(cred, 0, sizeof(*cred));
    cred->role = ROLE_USER;
    snprintf(cred->id, sizeof(cred->id), "jwt:%s", user);
    snprintf(cred->user_id, sizeof(cred->user_id), "%s", user);
    char *grants = rule_claims(j, t.claims);
    auth_claims_from_json(cred, grants);
    free(grants);
    rc = FERRY_OK;
out:
    jws_token_cleanup(&t);
    return rc;
}

static bool is_time_claim(const char *name)
{
    return !strcmp(name, "exp") || !strcmp(name, "nbf") || !strcmp(name, "iat");
}

void auth_claims_from_json(struct credential *cred, const char *grants_json)
{
    json_t *all = grants_json ? json_loads(grants_json, 0, NULL) : NULL;
    json_t *kept = json_object();
    const char *name;
    json_t *v;

    cred->claims[0] = '\0';
    json_object_foreach(all, name, v)
    {
        if (!is_time_claim(name) && (json_is_string(v) || json_is_integer(v)))
            json_object_set(kept, name, v);
    }
    char *text = json_dumps(kept, JSON_COMPACT | JSON_SORT_KEYS);
    /* Claims that do not fit are dropped whole rather than cut: a rule then finds no
     * claim and refuses, instead of matching on a truncated value. */
    if (text && strlen(text) < sizeof(cred->claims))
        memcpy(cred->claims, text, strlen(text) + 1);
    free(text);
    json_decref(kept);
    json_decref(all);
}

int credential_claim(const struct credential *cred, const char *name, char *out, size_t n)
{
    json_t *all = cred->claims[0] ? json_loads(cred->claims, 0, NULL) : NULL;
    json_t *v = json_object_get(all, name);
    int rc = FERRY_ERR;
    int len = -1;

    if (json_is_string(v))
        len = snprintf(out, n, "%s", json_string_value(v));
    else if (json_is_integer(v))
        len = snprintf(out, n, "%lld", (long long)json_integer_value(v));
    if (len >= 0 && (size_t)len < n)
        rc = FERRY_OK;
    json_decref(all);
    return rc;
}

static enum role role_of(enum token_role role)
{
    switch (role) {
    case TOKEN_ROLE_ADMIN:
        return ROLE_ADMIN;
    case TOKEN_ROLE_USER:
        return ROLE_USER;
    case TOKEN_ROLE_DEVICE:
        return ROLE_DEVICE;
    default:
        return ROLE_NONE;
    }
}

static int verify_token(struct request *req, const char *token, struct err *err)
{
    struct token_info info;
    if (tokens_authenticate_cached(req->app->store, token, time_now_ms(),
                                   req->app->cfg->token_cache_ttl * 1000, &info, err) != FERRY_OK)
        return FERRY_ERR;
    memset(&req->cred, 0, sizeof(req->cred));
    req->cred.role = role_of(info.role);
    snprintf(req->cred.id, sizeof(req->cred.id), "%s", info.id);
    snprintf(req->cred.user_id, sizeof(req->cred.user_id), "%s", info.user_id);
    snprintf(req->cred.device_id, sizeof(req->cred.device_id), "%s", info.device_id);
    snprintf(req->cred.tables, sizeof(req->cred.tables), "%s", info.tables);
    auth_claims_from_json(&req->cred, info.attrs); /* a token's attributes are its claims */
    return FERRY_OK;
}

static bool looks_like_jwt(const char *token)
{
    const char *dot = strchr(token, '.');
    return dot && strchr(dot + 1, '.') && !strchr(strchr(dot + 1, '.') + 1, '.');
}

/* Resolves the bearer credential. ERR_UNAUTHORIZED for a missing or bad one;
 * ERR_DATABASE when the store could not be asked. */
static int identify(struct request *req, struct err *err)
{
    const char *header = http_header(req, "Authorization");
    if (!header || !*header)
        return err_set(err, ERR_UNAUTHORIZED, "missing bearer token");
    if (strncasecmp(header, "Bearer ", 7) != 0)
        return err_set(err, ERR_UNAUTHORIZED, "Authorization must be 'Bearer <token>'");
    const char *token = header + 7;
    while (*token == ' ')
        token++;
    if (tokens_well_formed(token))
        return verify_token(req, token, err);
    if (req->app->jwt && looks_like_jwt(token)) {
        struct credential cred;
        if (auth_verify_jwt(req->app->jwt, token, time_now_ms() / 1000, &cred, err) != FERRY_OK)
            return FERRY_ERR;
        req->cred = cred;
        return FERRY_OK;
    }
    return err_set(err, ERR_UNAUTHORIZED, "token is not a ferry token or a valid JWT");
}

static void set_rate_headers(struct request *req, const struct rl_result *r)
{
    char num[32];
    snprintf(num, sizeof(num), "%lld", (long long)r->limit);
    http_add_header(req, "X-RateLimit-Limit", num);
    snprintf(num, sizeof(num), "%lld", (long long)r->remaining);
    http_add_header(req, "X-RateLimit-Remaining", num);
    if (!r->allowed) {
        snprintf(num, sizeof(num), "%lld", (long long)r->retry_after);
        http_add_header(req, "Retry-After", num);
    }
}

static bool needs_credential(const struct request *req)
{
    const struct route *r = req->route;
    if (r->flags & ROUTE_METRICS_AUTH)
        return req->app->cfg->metrics_auth;
    if (r->flags & ROUTE_LEGACY_AUTH)
        return req->app->cfg->legacy_auth;
    return !(r->flags & ROUTE_PUBLIC);
}

bool auth_check(struct request *req)
{
    struct app *app = req->app;
    struct err err = {0};
    int64_t now = time_mono_us();

    if (!needs_credential(req))
        return true;
    char who[80]; /* an IPv6 client's /64: it holds all of its 2^64 addresses */
    netlimit_key(req->client_addr, who, sizeof(who));
    if (ratelimit_exhausted(app->auth_fail, who, now)) {
        struct rl_result r = ratelimit_take(app->auth_fail, who, now);
        set_rate_headers(req, &r);
        http_reply_error(req, ERR_RATE_LIMITED,
                         "too many failed authentication attempts from this address");
        return false;
    }
    if (identify(req, &err) != FERRY_OK) {
        if (err.code == ERR_UNAUTHORIZED) {
            /* Only a wrong credential counts as a failed attempt; a missing one guesses
             * nothing. */
            if (http_header(req, "Authorization"))
                ratelimit_take(app->auth_fail, who, now);
            http_add_header(req, "WWW-Authenticate", "Bearer realm=\"ferry\"");
            /* The reason (unknown, revoked, expired) goes to the client: it names no
             * secret, and a device needs to know whether to ask for a new token. */
            http_reply_error(req, ERR_UNAUTHORIZED, err.msg);
        } else {
            http_reply_err(req, &err);
        }
        return false;
    }
    if (req->cred.role != ROLE_ADMIN && !(req->route->roles & req->cred.role)) {
        http_reply_error(req, ERR_FORBIDDEN, "this credential's role may not use this endpoint");
        return false;
    }
    struct rl_result r = ratelimit_take(app->rate, req->cred.id, now);
    if (ratelimit_limit(app->rate) > 0)
        set_rate_headers(req, &r);
    if (!r.allowed) {
        http_reply_error(req, ERR_RATE_LIMITED, "rate limit exceeded; see Retry-After");
        return false;
    }
    return true;
}

bool auth_owns(const struct request *req, const char *user_id)
{
    return req->cred.role == ROLE_ADMIN || (user_id && !strcmp(user_id, req->cred.user_id));
}
