/* legacy.c - cloud-sync-api: POST /sync/push (and its alias POST /sync),
 * POST /sync/pull and GET /sync/status, with its bodies and its
 * {"success":false,"error":"..."} errors. ferry's compatible extensions: a push may
 * carry batch_id (a retried batch is answered from the first run), and a pull may carry
 * cursor and answers next_cursor, has_more and the keys deleted since the cursor, and may
 * ask for a large page sent while it is read ("stream": true). */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/pagestream.h"
#include "api/scope.h"
#include "app.h"
#include "http/auth.h"
#include "sync/devices.h"
#include "sync/feed.h"
#include "ops/metrics.h"
#include "sync/push.h"
#include "sync/watch.h"
#include "util/jsonutil.h"
#include "util/jsonw.h"
#include "util/timeutil.h"

#define PULL_DEFAULT_LIMIT 1000
#define PULL_MAX_LIMIT 5000

/* cloud-sync-api answers "Invalid table" for an operation on a table outside the allowlist. */
static bool tables_valid(const struct synced_set *set, json_t *ops)
{
    size_t i;
    json_t *op;
    json_array_foreach(ops, i, op)
    {
        const char *table = json_string_value(json_object_get(op, "table"));
        const struct synced_table *t = table ? tables_find(set, table) : NULL;
        if (!t || t->builtin) /* cloud-sync-api knows only the allow-listed tables */
            return false;
    }
    return true;
}

/* The device a legacy push speaks for: a device credential's own id, else the body's
 * device_id (cloud-sync-api accepts it "for auditing"). A device_id that names a registered
 * device must be one of the caller's (any, for an admin): the name marks the changes as
 * that device's own, which its feed then leaves out. Fails (403) otherwise. */
static int legacy_device(struct request *req, json_t *body, const char **device, struct err *err)
{
    struct err lookup = {0};
    json_t *found = NULL;
    char owner[128];

    *device = json_string_value(json_object_get(body, "device_id"));
    if (req->cred.role == ROLE_DEVICE) {
        *device = req->cred.device_id;
        return FERRY_OK;
    }
    if (!*device || devices_get(req->db, *device, &found, owner, &lookup) != FERRY_OK)
        return FERRY_OK; /* a free label, as in cloud-sync-api */
    json_decref(found);
    if (auth_owns(req, owner))
        return FERRY_OK;
    return err_set(err, ERR_FORBIDDEN, "device_id names another user's device");
}

/* The push's fields: operations (on allow-listed tables), batch_id, device_id. */
static int push_fields(struct request *req, json_t *body, json_t **ops, const char **batch_id,
                       const char **device, struct err *err)
{
    if (jsonutil_get_array(body, "operations", true, ops, err) != FERRY_OK ||
        jsonutil_get_string(body, "batch_id", false, batch_id, err) != FERRY_OK)
        return FERRY_ERR;
    json_t *dev = json_object_get(body, "device_id");
    if (dev && !json_is_string(dev) && !json_is_null(dev))
        return err_set(err, ERR_INVALID, "field 'device_id' must be a string");
    if (!tables_valid(&req->app->synced, *ops))
        return err_set(err, ERR_INVALID, "Invalid table");
    return legacy_device(req, body, device, err);
}

static int push(struct request *req, struct err *err)
{
    json_t *body, *ops = NULL, *result = NULL;
    const char *batch_id = NULL, *device = NULL;
    bool replayed = false;
    int64_t started = time_mono_us();
    struct watch_wake wake = {0};

    if (http_json_body(req, &body, err) != FERRY_OK ||
        push_fields(req, body, &ops, &batch_id, &device, err) != FERRY_OK)
        return FERRY_ERR;
    /* Batch ids are the caller's own: another credential cannot claim them first. */
    char *origin =
        xasprintf("legacy:%s:%s", req->cred.user_id[0] ? req->cred.user_id : req->cred.id,
                  device ? device : "");
    struct rules_caller who;
    scope_caller(req, &who);
    struct push_request r = {
        .origin = origin,
        .batch_id = batch_id,
        .device_id = device,
        .user_id = req->cred.user_id[0] ? req->cred.user_id : NULL,
        .scope = req->cred.tables[0] ? req->cred.tables : NULL,
        .caller = &who,
        .lenient_missing = true,
        .ops = ops,
        .max_ops = req->app->cfg->max_batch,
        .wake = &wake,
    };
    int rc = push_apply(req->db, &req->app->synced, &r, &result, &replayed, err);
    watch_wake(req->app->watch, &wake); /* this node's waiters, before the answer */
    metrics_sync(req->app->metrics, rc == FERRY_OK, (time_mono_us() - started) / 1000,
                 req->bytes_in);
    if (rc == FERRY_OK)
        http_reply_json(req, HTTP_OK,
                        json_pack("{s:b, s:O, s:b}", "success", 1, "cursor",
                                  json_object_get(result, "cursor"), "replayed", replayed));
    json_decref(result);
    free(origin);
    return rc;
}

/* Resolves the pull's table list: the named ones (each must be synced), or all. */
static int pull_tables(struct request *req, json_t *body, const struct synced_table ***out,
                       size_t *n, struct err *err)
{
    const struct synced_set *set = &req->app->synced;
    json_t *names = NULL, *name;
    size_t i;

    *out = NULL;
    *n = 0;
    if (jsonutil_get_array(body, "tables", false, &names, err) != FERRY_OK)
        return FERRY_ERR;
    const char *scope = req->cred.tables[0] ? req->cred.tables : NULL;
    if (!names) {
        size_t user_tables = 0;
        for (i = 0; i < set->n; i++)
            user_tables += !set->tables[i].builtin;
        if (user_tables == 0)
            return err_set(err, ERR_INVALID, "No tables configured");
        *out = xcalloc(set->n, sizeof(**out));
        for (i = 0; i < set->n; i++) /* every table the credential may read */
            if (!set->tables[i].builtin && push_scope_allows(scope, set->tables[i].name))
                (*out)[(*n)++] = &set->tables[i];
        return FERRY_OK;
    }
    *out = xcalloc(json_array_size(names) + 1, sizeof(**out));
    json_array_foreach(names, i, name)
    {
        const char *text = json_string_value(name);
        const struct synced_table *t = tables_find(set, text ? text : "");
        if (!t || t->builtin)
            return err_set(err, ERR_INVALID, "Invalid table");
        if (!push_scope_allows(scope, t->name))
            return err_set(err, ERR_FORBIDDEN, "this credential may not read table '%s'", t->name);
        bool seen = false;
        for (size_t k = 0; k < *n; k++)
            seen = seen || (*out)[k] == t;
        if (!seen) /* a table named twice is read once */
            (*out)[(*n)++] = t;
    }
    return FERRY_OK;
}

/* The page's size: limit, cut to max as cloud-sync-api cuts it (PULL_MAX_LIMIT, or
 * PAGESTREAM_MAX_LIMIT for a streamed page). */
static int pull_limit(json_t *body, int max, int *limit, struct err *err)
{
    int64_t v = PULL_DEFAULT_LIMIT;
    if (jsonutil_get_int(body, "limit", false, &v, err) != FERRY_OK)
        return FERRY_ERR;
    if (v < 1)
        return err_set(err, ERR_INVALID, "field 'limit' must be at least 1");
    *limit = v > max ? max : (int)v;
    return FERRY_OK;
}

static int pull_cursor(json_t *body, int64_t *cursor, struct err *err)
{
    json_t *v = json_object_get(body, "cursor");
    *cursor = 0;
    if (!v || json_is_null(v))
        return FERRY_OK;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *cursor = json_integer_value(v);
        return FERRY_OK;
    }
    if (json_is_string(v))
        return feed_parse_cursor(json_string_value(v), cursor, err);
    return err_set(err, ERR_INVALID, "field 'cursor' must be a cursor from a previous pull");
}

/* {table: [items], ...} from one comma-separated list per table. */
static void put_lists(struct buf *out, const struct synced_table *const *tables, size_t n,
                      const struct buf *lists)
{
    buf_puts(out, "{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_puts(out, ",");
        jsonw_string(out, tables[i]->name, strlen(tables[i]->name));
        buf_puts(out, ":[");
        buf_append(out, lists[i].data, lists[i].len);
        buf_puts(out, "]");
    }
    buf_puts(out, "}");
}

/* The end of a pull's answer, after its deleted keys. */
static void pull_tail(struct buf *out, const struct feed_text *p)
{
    buf_printf(out, ",\"next_cursor\":%lld,\"has_more\":%s}", (long long)p->next_cursor,
               p->has_more ? "true" : "false");
}

/* cloud-sync-api's answer, {"success":true, "data":{table:[rows]}, "limit":n,
 * "deleted":{table:[ids]}, "next_cursor":c, "has_more":b}, around the rows the feed wrote
 * per table. */
static void pull_answer(struct buf *out, const struct synced_table *const *tables, size_t n,
                        const struct feed_text *p, int limit)
{
    buf_puts(out, "{\"success\":true,\"data\":");
    put_lists(out, tables, n, p->data);
    buf_printf(out, ",\"limit\":%d,\"deleted\":", limit);
    put_lists(out, tables, n, p->deleted);
    pull_tail(out, p);
}

/* The page read whole, then answered. */
static int plain_pull(struct request *req, const struct feed_query *q, struct buf *answer,
                      struct err *err)
{
    struct feed_text page = {.shape = FEED_BY_TABLE};
    page.data = xcalloc(q->n_tables + 1, sizeof(*page.data));
    page.deleted = xcalloc(q->n_tables + 1, sizeof(*page.deleted));
    int rc = feed_read_text(req->db, q, &page, err);
    if (rc == FERRY_OK) {
        pull_answer(answer, q->tables, q->n_tables, &page, q->limit);
        http_reply_json_text(req, HTTP_OK, answer);
    }
    for (size_t i = 0; i < q->n_tables; i++) {
        buf_cleanup(&page.data[i]);
        buf_cleanup(&page.deleted[i]);
    }
    free(page.data);
    free(page.deleted);
    return rc;
}

/* The page sent while it is read (api/pagestream.h), the same answer as plain_pull's for
 * the same limit; a page that fits in the first part is answered as a plain one. */
static int stream_pull(struct request *req, const struct feed_query *q, struct buf *answer,
                       struct err *err)
{
    struct feed_stream *fs = NULL;
    struct feed_text page = {.shape = FEED_BY_TABLE};
    bool streamed = false;
    char *between = xasprintf(",\"limit\":%d,\"deleted\":", q->limit);
    int rc = FERRY_ERR;

    buf_puts(answer, "{\"success\":true,\"data\":");
    if (feed_stream_by_table(req->db, q, between, &fs, err) != FERRY_OK)
        feed_stream_free(fs);
    else
        rc = pagestream_send(req, fs, answer, pull_tail, &page, &streamed, err);
    if (!streamed)
        pagestream_give(req->app);
    if (rc == FERRY_OK && !streamed) {
        pull_tail(answer, &page);
        http_reply_json_text(req, HTTP_OK, answer);
    }
    free(between);
    return rc;
}

static int pull(struct request *req, struct err *err)
{
    json_t *body = NULL;
    const struct synced_table **tables = NULL;
    struct feed_query q = {0};
    struct buf answer;
    bool stream = false;
    int64_t started = time_mono_us();
    int rc = FERRY_ERR;

    buf_init(&answer);
    if (req->json && http_json_body(req, &body, err) != FERRY_OK)
        return FERRY_ERR;
    if (pull_tables(req, body, &tables, &q.n_tables, err) != FERRY_OK ||
        jsonutil_get_bool(body, "stream", false, &stream, err) != FERRY_OK ||
        pull_limit(body, stream ? PAGESTREAM_MAX_LIMIT : PULL_MAX_LIMIT, &q.limit, err) !=
            FERRY_OK ||
        pull_cursor(body, &q.cursor, err) != FERRY_OK)
        goto out;
    /* beyond the streams' places a plain page, as if the pull had not asked */
    if (stream && !pagestream_take(req->app)) {
        stream = false;
        q.limit = q.limit < PULL_MAX_LIMIT ? q.limit : PULL_MAX_LIMIT;
    }
    q.tables = tables;
    struct rules_caller who;
    scope_caller(req, &who);
    q.caller = &who;
    rc = stream ? stream_pull(req, &q, &answer, err) : plain_pull(req, &q, &answer, err);
    metrics_sync(req->app->metrics, rc == FERRY_OK, (time_mono_us() - started) / 1000, 0);
out:
    buf_cleanup(&answer);
    free(tables);
    return rc;
}

static int status(struct request *req, struct err *err)
{
    json_t *names = json_array();
    for (size_t i = 0; i < req->app->synced.n; i++)
        if (!req->app->synced.tables[i].builtin)
            json_array_append_new(names, json_string(req->app->synced.tables[i].name));
    if (store_ping(req->app->store, err) != FERRY_OK) {
        /* cloud-sync-api's answer carries a status field besides the error */
        json_decref(names);
        http_reply_json(req, http_status_of(ERR_UNAVAILABLE),
                        json_pack("{s:b, s:s, s:s}", "success", 0, "status", "error", "error",
                                  "Database unavailable"));
        return FERRY_ERR;
    }
    http_reply_json(
        req, HTTP_OK,
        json_pack("{s:b, s:s, s:o}", "success", 1, "status", "ok", "allowed_tables", names));
    return FERRY_OK;
}

static const struct route routes[] = {
    {M_POST, "/sync/push", push, ROLES_ANY, SURFACE_LEGACY,
     ROUTE_JSON | ROUTE_LEGACY_AUTH | ROUTE_STORE, NULL},
    {M_POST, "/sync", push, ROLES_ANY, SURFACE_LEGACY, ROUTE_JSON | ROUTE_LEGACY_AUTH | ROUTE_STORE,
     NULL},
    {M_POST, "/sync/pull", pull, ROLES_ANY, SURFACE_LEGACY,
     ROUTE_JSON | ROUTE_LEGACY_AUTH | ROUTE_STORE, NULL},
    {M_GET, "/sync/status", status, ROLES_ANY, SURFACE_LEGACY, ROUTE_LEGACY_AUTH, NULL},
};

const struct route_table api_legacy_routes = {routes, sizeof(routes) / sizeof(routes[0])};
