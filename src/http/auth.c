/* auth.c - see auth.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jwt.h>

#include "app.h"
#include "auth/tokens.h"
#include "http/auth.h"
#include "util/timeutil.h"

/* Reads a NumericDate claim (RFC 7519: integer or fractional seconds). FERRY_OK with
 * *present false when absent; FERRY_ERR when present but not a number. jwt_get_grant_int
 * cannot tell a fractional value from a missing one, so the claim is read as JSON. */
static int time_claim(jwt_t *jwt, const char *name, bool *present, double *value)
{
    char *text = jwt_get_grants_json(jwt, name);
    *present = false;
    if (!text)
        return FERRY_OK;
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    free(text);
    int rc = json_is_number(v) ? FERRY_OK : FERRY_ERR;
    if (rc == FERRY_OK) {
        *present = true;
        *value = json_number_value(v);
    }
    json_decref(v);
    return rc;
}

int auth_verify_jwt(const char *token, const char *secret, int64_t now_s, struct credential *cred,
                    struct err *err)
{
    jwt_t *jwt = NULL;
    int rc = FERRY_ERR;
    double exp = 0, nbf = 0;
    bool has_exp, has_nbf;
    const char *sub;

    if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0) {
        err_set(err, ERR_UNAUTHORIZED, "JWT signature or format is invalid");
        goto out;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        err_set(err, ERR_UNAUTHORIZED, "JWT algorithm must be HS256");
        goto out;
    }
    sub = jwt_get_grant(jwt, "sub");
    if (!sub || !*sub || strlen(sub) >= sizeof(cred->user_id)) {
        err_set(err, ERR_UNAUTHORIZED, "JWT has no usable sub claim");
        goto out;
    }
    if (time_claim(jwt, "exp", &has_exp, &exp) != FERRY_OK ||
        time_claim(jwt, "nbf", &has_nbf, &nbf) != FERRY_OK) {
        err_set(err, ERR_UNAUTHORIZED, "JWT exp and nbf must be numbers");
        goto out;
    }
    if (has_exp && exp <= (double)now_s) {
        err_set(err, ERR_UNAUTHORIZED, "JWT has expired");
        goto out;
    }
    if (has_nbf && nbf > (double)now_s) {
        err_set(err, ERR_UNAUTHORIZED, "JWT is not valid yet");
        goto out;
    }
    memset(cred, 0, sizeof(*cred));
    cred->role = ROLE_USER;
    snprintf(cred->id, sizeof(cred->id), "jwt:%s", sub);
    snprintf(cred->user_id, sizeof(cred->user_id), "%s", sub);
    char *grants = jwt_get_grants_json(jwt, NULL);
    auth_claims_from_json(cred, grants);
    free(grants);
    rc = FERRY_OK;
out:
    jwt_free(jwt);
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
    struct store_conn *c = NULL;
    struct token_info info;
    int rc = FERRY_ERR;

    if (store_acquire(req->app->store, &c, err) != FERRY_OK) {
        err->code = ERR_UNAVAILABLE;
        return FERRY_ERR;
    }
    rc = tokens_authenticate(c, token, time_now_ms(), &info, err);
    store_release(c);
    if (rc != FERRY_OK)
        return rc;
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
    const char *secret = req->app->cfg->jwt_secret;

    if (!header || !*header)
        return err_set(err, ERR_UNAUTHORIZED, "missing bearer token");
    if (strncasecmp(header, "Bearer ", 7) != 0)
        return err_set(err, ERR_UNAUTHORIZED, "Authorization must be 'Bearer <token>'");
    const char *token = header + 7;
    while (*token == ' ')
        token++;
    if (tokens_well_formed(token))
        return verify_token(req, token, err);
    if (secret && *secret && looks_like_jwt(token)) {
        struct credential cred;
        if (auth_verify_jwt(token, secret, time_now_ms() / 1000, &cred, err) != FERRY_OK)
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
    if (ratelimit_exhausted(app->auth_fail, req->client_addr, now)) {
        struct rl_result r = ratelimit_take(app->auth_fail, req->client_addr, now);
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
                ratelimit_take(app->auth_fail, req->client_addr, now);
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
