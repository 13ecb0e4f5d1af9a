/* sites.c - administering site-to-site connections under /api/v1/admin/sites (admin
 * tokens only): the site settings (incoming mode, password), and connections: create
 * (registers with the remote), list, show, change, approve, deny, suspend, reactivate,
 * revoke, verify and delete, each mirrored to the remote by sites/siteops.c. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "app.h"
#include "jobs/jobs.h"
#include "sites/siteimport.h"
#include "sites/siteops.h"
#include "sites/sites.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

static void settings_json(struct request *req, struct store_conn *c)
{
    struct err err = {0};
    struct site_settings st = {0};
    if (sites_settings_get(c, &st, &err) != FERRY_OK)
        http_reply_err(req, &err);
    else
        http_reply_json(
            req, 200,
            json_pack("{s:b, s:s, s:s, s:b, s:s}", "enabled", req->app->cfg->sites_enabled,
                      "prefix", req->app->cfg->sites_prefix, "incoming_mode",
                      sites_mode_name(st.mode), "password_set", st.password_hash != NULL,
                      "public_url", req->app->site_env.public_url));
    sites_settings_clear(&st);
}

static int get_settings(struct request *req, struct err *err)
{
    (void)err;
    struct store_conn *c = req->db;
    settings_json(req, c);
    return FERRY_OK;
}

static int put_settings(struct request *req, struct err *err)
{
    const char *mode = NULL, *password = NULL;
    json_t *body = http_json_object(req);
    if (!body)
        return FERRY_OK;
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value)
    {
        if (strcmp(key, "incoming_mode") != 0 && strcmp(key, "password") != 0) {
            char *msg = xasprintf("field '%s' cannot be set (incoming_mode, password)", key);
            http_reply_error(req, ERR_INVALID, msg);
            free(msg);
            return FERRY_OK;
        }
    }
    if (jsonutil_get_string(body, "incoming_mode", false, &mode, err) != FERRY_OK ||
        jsonutil_get_string(body, "password", false, &password, err) != FERRY_OK) {
        http_reply_err(req, err);
        return FERRY_OK;
    }
    if (json_is_null(json_object_get(body, "password")))
        password = ""; /* null removes the password */
    struct store_conn *c = req->db;
    if (sites_settings_set(c, mode, password, err) != FERRY_OK)
        http_reply_err(req, err);
    else
        settings_json(req, c);
    return FERRY_OK;
}

static int create_site(struct request *req, struct err *err)
{
    json_t *out = NULL, *body = http_json_object(req);
    if (!body)
        return FERRY_OK;
    struct store_conn *c = req->db;
    if (siteops_create(c, &req->app->site_env, body, &out, err) != FERRY_OK)
        http_reply_err(req, err);
    else
        http_reply_json(req, 201, out);
    return FERRY_OK;
}

static int list_sites(struct request *req, struct err *err)
{
    json_t *list = NULL;
    struct store_conn *c = req->db;
    if (sites_list(c, &list, err) != FERRY_OK)
        http_reply_err(req, err);
    else
        http_reply_json(req, 200,
                        json_pack("{s:O, s:I}", "connections", list, "count",
                                  (json_int_t)json_array_size(list)));
    json_decref(list);
    return FERRY_OK;
}

static int get_site(struct request *req, struct err *err)
{
    struct site s = {0};
    bool found = false;
    struct store_conn *c = req->db;
    if (sites_get(c, http_param(req, "id"), &s, &found, err) != FERRY_OK)
        http_reply_err(req, err);
    else if (!found)
        http_reply_error(req, ERR_NOT_FOUND, "no such site connection");
    else
        http_reply_json(req, 200, sites_json(&s));
    sites_clear(&s);
    return FERRY_OK;
}

static int update_site(struct request *req, struct err *err)
{
    struct site s = {0};
    bool found = false;
    json_t *body = http_json_object(req);
    if (!body)
        return FERRY_OK;
    struct store_conn *c = req->db;
    const char *id = http_param(req, "id");
    if (sites_get(c, id, &s, &found, err) != FERRY_OK)
        http_reply_err(req, err);
    else if (!found)
        http_reply_error(req, ERR_NOT_FOUND, "no such site connection");
    else if (sites_update(c, id, body, err) != FERRY_OK ||
             sites_get(c, id, &s, &found, err) != FERRY_OK)
        http_reply_err(req, err);
    else
        http_reply_json(req, 200, sites_json(&s));
    sites_clear(&s);
    return FERRY_OK;
}

static int delete_site(struct request *req, struct err *err)
{
    json_t *out = NULL;
    struct store_conn *c = req->db;
    if (siteops_delete(c, &req->app->site_env, http_param(req, "id"), &out, err) != FERRY_OK)
        http_reply_err(req, err);
    else
        http_reply_json(req, 200, out);
    return FERRY_OK;
}

/* POST /sites/{id}/pull {tables, strategy}: queues an import job (202). */
static void start_pull(struct request *req, const char *id)
{
    struct err err = {0};
    char job[40];
    const char *strategy = NULL;
    bool incremental = false;
    json_t *body = http_json_object(req);
    if (!body)
        return;
    if (jsonutil_get_string(body, "strategy", false, &strategy, &err) != FERRY_OK ||
        jsonutil_get_bool(body, "incremental", false, &incremental, &err) != FERRY_OK) {
        http_reply_err(req, &err);
        return;
    }
    struct store_conn *c = req->db;
    if (siteimport_start(c, id, json_object_get(body, "tables"), strategy, incremental, false,
                         req->cred.user_id, job, &err) != FERRY_OK) {
        http_reply_err(req, &err);
    } else {
        jobs_worker_kick(req->app->jobs);
        char *url = xasprintf("/api/v1/admin/jobs/%s", job);
        http_add_header(req, "Location", url);
        http_reply_json(
            req, 202,
            json_pack("{s:s, s:s, s:s}", "job_id", job, "status", "pending", "status_url", url));
        free(url);
    }
}

static int site_action(struct request *req, struct err *err)
{
    json_t *out = NULL;
    const char *action = http_param(req, "action"), *id = http_param(req, "id");
    if (!strcmp(action, "pull")) {
        start_pull(req, id);
        return FERRY_OK;
    }
    struct store_conn *c = req->db;
    int rc = !strcmp(action, "verify")
                 ? siteops_verify(c, &req->app->site_env, id, &out, err)
                 : siteops_action(c, &req->app->site_env, id, action, &out, err);
    if (rc != FERRY_OK)
        http_reply_err(req, err);
    else
        http_reply_json(req, 200, out);
    return FERRY_OK;
}

static int list_transfers(struct request *req, struct err *err)
{
    json_t *list = NULL;
    struct store_conn *c = req->db;
    if (siteimport_transfers(c, http_param(req, "id"), &list, err) != FERRY_OK)
        http_reply_err(req, err);
    else
        http_reply_json(req, 200, json_pack("{s:O}", "transfers", list));
    json_decref(list);
    return FERRY_OK;
}

static int get_job(struct request *req, struct err *err)
{
    struct job j = {0};
    bool found = false;
    char created[32], started[32], done[32];
    struct store_conn *c = req->db;
    if (jobs_get(c, http_param(req, "id"), &j, &found, err) != FERRY_OK) {
        http_reply_err(req, err);
    } else if (!found) {
        http_reply_error(req, ERR_NOT_FOUND, "no such job");
    } else {
        time_iso8601(j.created_at, 0, created);
        time_iso8601(j.started_at, 0, started);
        time_iso8601(j.completed_at, 0, done);
        json_t *result = j.result ? json_loads(j.result, 0, NULL) : NULL;
        http_reply_json(req, 200,
                        json_pack("{s:s, s:s, s:s, s:s?, s:I, s:I, s:I, s:I, s:o, s:s, s:s?, s:s?}",
                                  "id", j.id, "kind", j.kind, "status", j.status, "message",
                                  j.message, "items_done", (json_int_t)j.items_done, "items_total",
                                  (json_int_t)j.items_total, "bytes_done", (json_int_t)j.bytes_done,
                                  "bytes_total", (json_int_t)j.bytes_total, "result",
                                  result ? result : json_null(), "created_at", created,
                                  "started_at", j.started_at ? started : NULL, "completed_at",
                                  j.completed_at ? done : NULL));
    }
    jobs_clear(&j);
    return FERRY_OK;
}

static const struct route routes[] = {
    {M_GET, "/api/v1/admin/sites/settings", get_settings, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE,
     NULL},
    {M_PUT, "/api/v1/admin/sites/settings", put_settings, ROLE_ADMIN, SURFACE_V1,
     ROUTE_JSON | ROUTE_STORE, NULL},
    {M_POST, "/api/v1/admin/sites", create_site, ROLE_ADMIN, SURFACE_V1, ROUTE_JSON | ROUTE_STORE,
     NULL},
    {M_GET, "/api/v1/admin/sites", list_sites, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE, NULL},
    {M_GET, "/api/v1/admin/sites/{id}", get_site, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE, NULL},
    {M_PATCH, "/api/v1/admin/sites/{id}", update_site, ROLE_ADMIN, SURFACE_V1,
     ROUTE_JSON | ROUTE_STORE, NULL},
    {M_DELETE, "/api/v1/admin/sites/{id}", delete_site, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE, NULL},
    {M_POST, "/api/v1/admin/sites/{id}/{action}", site_action, ROLE_ADMIN, SURFACE_V1,
     ROUTE_JSON | ROUTE_STORE, NULL},
    {M_GET, "/api/v1/admin/sites/{id}/transfers", list_transfers, ROLE_ADMIN, SURFACE_V1,
     ROUTE_STORE, NULL},
    {M_GET, "/api/v1/admin/jobs/{id}", get_job, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE, NULL},
};

const struct route_table api_site_admin_routes = {routes, sizeof(routes) / sizeof(routes[0])};
