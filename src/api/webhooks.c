/* webhooks.c - seed 003's webhook subscriptions under /api/v1/webhooks (admin tokens
 * only: a subscription sees every event of the server): subscribe, list, show,
 * unsubscribe, enable again, the delivery log, and re-delivery of a past event. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "app.h"
#include "webhooks/webhooks.h"

static int subscribe(struct request *req, struct err *err)
{
    struct webhooks_env env = {.created_by = req->cred.id,
                               .allow_private = req->app->cfg->webhook_allow_private};
    json_t *body, *out = NULL;
    if (http_json_body(req, &body, err) != FERRY_OK ||
        webhooks_subscribe(req->db, &env, body, &out, err) != FERRY_OK)
        return FERRY_ERR;
    char *location =
        xasprintf("/api/v1/webhooks/%s", json_string_value(json_object_get(out, "id")));
    http_add_header(req, "Location", location);
    free(location);
    http_reply_json(req, HTTP_CREATED, out);
    return FERRY_OK;
}

static int list(struct request *req, struct err *err)
{
    json_t *hooks = NULL;
    if (webhooks_list(req->db, &hooks, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:o, s:I}", "webhooks", hooks, "totalCount",
                              (json_int_t)json_array_size(hooks)));
    return FERRY_OK;
}

static int show(struct request *req, struct err *err)
{
    json_t *hook = NULL;
    if (webhooks_get(req->db, http_param(req, "id"), &hook, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_OK, hook);
    return FERRY_OK;
}

static int unsubscribe(struct request *req, struct err *err)
{
    if (webhooks_delete(req->db, http_param(req, "id"), err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_text(req, HTTP_NO_CONTENT, NULL, "", 0);
    return FERRY_OK;
}

static int enable(struct request *req, struct err *err)
{
    json_t *hook = NULL;
    if (webhooks_enable(req->db, http_param(req, "id"), &hook, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_OK, hook);
    return FERRY_OK;
}

static int deliveries(struct request *req, struct err *err)
{
    const char *limit_text = http_query(req, "limit");
    char *end = NULL;
    long limit = limit_text ? strtol(limit_text, &end, 10) : 50;
    json_t *log = NULL;
    if (limit_text && (!*limit_text || *end || limit < 1 || limit > WEBHOOKS_LOG_MAX))
        return err_set(err, ERR_INVALID, "limit must be from 1 to %d", WEBHOOKS_LOG_MAX);
    if (webhooks_deliveries(req->db, http_param(req, "id"), http_query(req, "status"), (int)limit,
                            &log, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_OK, log);
    return FERRY_OK;
}

static int redeliver(struct request *req, struct err *err)
{
    json_t *delivery = NULL;
    if (webhooks_redeliver(req->db, http_param(req, "id"), http_param(req, "event"), &delivery,
                           err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_ACCEPTED, delivery);
    return FERRY_OK;
}

static const struct route routes[] = {
    {M_POST, "/api/v1/webhooks/subscribe", subscribe, ROLE_ADMIN, SURFACE_V1,
     ROUTE_JSON | ROUTE_STORE, NULL},
    {M_GET, "/api/v1/webhooks", list, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE, NULL},
    {M_GET, "/api/v1/webhooks/{id}", show, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE, NULL},
    {M_DELETE, "/api/v1/webhooks/{id}", unsubscribe, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE, NULL},
    {M_POST, "/api/v1/webhooks/{id}/enable", enable, ROLE_ADMIN, SURFACE_V1,
     ROUTE_JSON | ROUTE_STORE, NULL},
    {M_GET, "/api/v1/webhooks/{id}/deliveries", deliveries, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE,
     NULL},
    {M_POST, "/api/v1/webhooks/{id}/deliveries/{event}/redeliver", redeliver, ROLE_ADMIN,
     SURFACE_V1, ROUTE_JSON | ROUTE_STORE, NULL},
};

const struct route_table api_webhooks_routes = {routes, sizeof(routes) / sizeof(routes[0])};
