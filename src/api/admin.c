/* admin.c - ferry's own administration under /api/v1/admin (admin role only): tokens
 * for now; users, tables, site connections and jobs join as they land. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/files.h"
#include "app.h"
#include "sync/purge.h"
#include "auth/tokens.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

/* Longest lifetime a token can be given through expiresIn: ten years. */
#define MAX_EXPIRES_IN_S (10LL * 365 * 24 * 3600)

/* Joins a JSON array of table names into "a,b" (caller frees); NULL when absent. */
static int read_table_list(json_t *body, char **out, struct err *err)
{
    json_t *list = NULL, *item;
    size_t i;
    struct buf b;
    *out = NULL;
    if (jsonutil_get_array(body, "tables", false, &list, err) != FERRY_OK)
        return FERRY_ERR;
    if (!list)
        return FERRY_OK;
    if (json_array_size(list) == 0)
        return err_set(err, ERR_INVALID,
                       "field 'tables' must name at least one table (leave it out for all)");
    buf_init(&b);
    json_array_foreach(list, i, item)
    {
        const char *name = json_string_value(item);
        if (!name || !*name || strchr(name, ',')) {
            buf_cleanup(&b);
            return err_set(err, ERR_INVALID, "field 'tables' must be an array of table names");
        }
        buf_printf(&b, "%s%s", i ? "," : "", name);
    }
    *out = buf_steal(&b);
    return FERRY_OK;
}

/* The admin API's fields are snake_case; requests may still use the camelCase names
 * ferry 0.1.0 had. Returns the name the body uses, the current one when it uses neither. */
static const char *field(json_t *body, const char *name, const char *old)
{
    return !json_object_get(body, name) && json_object_get(body, old) ? old : name;
}

static int read_token_spec(json_t *body, struct token_spec *spec, struct err *err)
{
    int64_t expires_in = 0;
    const char *role = NULL;
    const char *expires_key = field(body, "expires_in", "expiresIn");
    json_t *expires = json_object_get(body, expires_key);
    bool expiry_given = expires && !json_is_null(expires); /* absent: never expires */
    memset(spec, 0, sizeof(*spec));
    if (jsonutil_get_string(body, "name", true, &spec->name, err) != FERRY_OK ||
        jsonutil_get_string(body, "role", true, &role, err) != FERRY_OK ||
        jsonutil_get_string(body, field(body, "user_id", "userId"), false, &spec->user_id, err) !=
            FERRY_OK ||
        jsonutil_get_string(body, field(body, "device_id", "deviceId"), false, &spec->device_id,
                            err) != FERRY_OK ||
        jsonutil_get_int(body, expires_key, false, &expires_in, err) != FERRY_OK)
        return FERRY_ERR;
    spec->role = tokens_parse_role(role);
    if (expiry_given && (expires_in < 1 || expires_in > MAX_EXPIRES_IN_S))
        return err_set(err, ERR_INVALID, "field '%s' must be between 1 and %lld seconds",
                       expires_key, MAX_EXPIRES_IN_S);
    if (expiry_given)
        spec->expires_at = time_now_ms() + expires_in * 1000;
    return FERRY_OK;
}

/* The body's "attrs" (an object, or absent) as JSON text in *out (NULL when absent). */
static int read_attrs(json_t *body, char **out, struct err *err)
{
    json_t *attrs = json_object_get(body, "attrs");
    *out = NULL;
    if (!attrs || json_is_null(attrs))
        return FERRY_OK;
    if (!json_is_object(attrs))
        return err_set(err, ERR_INVALID, "field 'attrs' must be an object");
    *out = json_dumps(attrs, JSON_COMPACT);
    return FERRY_OK;
}

static int create_token(struct request *req, struct err *err)
{
    struct token_spec spec;
    char *secret = NULL, id[40], *tables = NULL, *attrs = NULL;
    json_t *body, *out = NULL;
    int rc = FERRY_ERR;

    if (http_json_body(req, &body, err) != FERRY_OK ||
        read_token_spec(body, &spec, err) != FERRY_OK ||
        read_table_list(body, &tables, err) != FERRY_OK ||
        read_attrs(body, &attrs, err) != FERRY_OK)
        goto out;
    spec.tables = tables;
    spec.attrs = attrs;
    if (tokens_create(req->db, &spec, &secret, id, err) != FERRY_OK ||
        tokens_get(req->db, id, &out, err) != FERRY_OK)
        goto out;
    json_object_set_new(out, "token", json_string(secret));
    http_reply_json(req, HTTP_CREATED, out);
    rc = FERRY_OK;
out:
    free(secret);
    free(tables);
    free(attrs);
    return rc;
}

/* PATCH: replaces the token's attributes (the devices using it then resync once). */
static int update_token(struct request *req, struct err *err)
{
    json_t *body, *tok = NULL;
    char *attrs = NULL;
    const char *id = http_param(req, "id");
    if (http_json_body(req, &body, err) != FERRY_OK || read_attrs(body, &attrs, err) != FERRY_OK)
        return FERRY_ERR;
    if (!json_object_get(body, "attrs")) {
        free(attrs);
        return err_set(err, ERR_INVALID, "field 'attrs' is required (an object; {} for none)");
    }
    int rc = tokens_set_attrs(req->db, id, attrs, err);
    free(attrs);
    if (rc != FERRY_OK || tokens_get(req->db, id, &tok, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_OK, tok);
    return FERRY_OK;
}

static int list_tokens(struct request *req, struct err *err)
{
    json_t *list = NULL;
    const char *user = http_query(req, "user_id");
    if (!user)
        user = http_query(req, "userId"); /* the 0.1.0 spelling */
    if (tokens_list(req->db, user, &list, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(
        req, HTTP_OK,
        json_pack("{s:o, s:I}", "tokens", list, "total_count", (json_int_t)json_array_size(list)));
    return FERRY_OK;
}

static int get_token(struct request *req, struct err *err)
{
    json_t *tok = NULL;
    if (tokens_get(req->db, http_param(req, "id"), &tok, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_OK, tok);
    return FERRY_OK;
}

static int revoke_token(struct request *req, struct err *err)
{
    if (tokens_revoke(req->db, http_param(req, "id"), err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_text(req, HTTP_NO_CONTENT, NULL, "", 0);
    return FERRY_OK;
}

static int purge_now(struct request *req, struct err *err)
{
    struct purge_result r;
    struct filesys_swept swept;
    if (purge_run(req->db, req->app->cfg->tombstone_retention * 1000, &r, err) != FERRY_OK)
        return FERRY_ERR;
    filesys_housekeeping(req->app->files, req->db, req->app->cfg->tombstone_retention * 1000,
                         &swept);
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "tombstones_purged",
                              (json_int_t)r.tombstones, "batches_purged", (json_int_t)r.batches,
                              "conflicts_purged", (json_int_t)r.conflicts, "horizon",
                              (json_int_t)r.horizon, "uploads_expired", (json_int_t)swept.uploads,
                              "blobs_collected", (json_int_t)swept.blobs));
    return FERRY_OK;
}

static const struct route routes[] = {
    {M_POST, "/api/v1/admin/purge", purge_now, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE, NULL},
    {M_POST, "/api/v1/admin/tokens", create_token, ROLE_ADMIN, SURFACE_V1,
     ROUTE_JSON | ROUTE_SMALL_BODY | ROUTE_STORE, NULL},
    {M_GET, "/api/v1/admin/tokens", list_tokens, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE, NULL},
    {M_GET, "/api/v1/admin/tokens/{id}", get_token, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE, NULL},
    {M_PATCH, "/api/v1/admin/tokens/{id}", update_token, ROLE_ADMIN, SURFACE_V1,
     ROUTE_JSON | ROUTE_SMALL_BODY | ROUTE_STORE, NULL},
    {M_DELETE, "/api/v1/admin/tokens/{id}", revoke_token, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE,
     NULL},
};

const struct route_table api_admin_routes = {routes, sizeof(routes) / sizeof(routes[0])};
