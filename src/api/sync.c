/* sync.c - Pinakes' device sync, under /api/v1/sync and /api/sync: devices
 * and their tokens, report (push a batch), changes (pull, with long-poll), ack, and
 * conflicts. Bodies are ferry's own (the seed points at a schema it does not include)
 * and are described in docs/openapi.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/files.h"
#include "api/pagestream.h"
#include "api/scope.h"
#include "app.h"
#include "sync/conflicts.h"
#include "sync/devices.h"
#include "sync/feed.h"
#include "ops/metrics.h"
#include "sync/push.h"
#include "sync/watch.h"
#include "http/waiter.h"
#include "store/store.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

#define CHANGES_DEFAULT_LIMIT 100
#define CHANGES_MAX_LIMIT 1000
/* maxBytes: a page ends once its changes reach this many bytes (at least 1 change). */
#define CHANGES_MAX_BYTES ((int64_t)1 << 40)
#define MAX_WAIT_S 60

/* --- who may act on which device ------------------------------------------------- */

/* Checks that the credential may act on a device owned by owner: its own device (device
 * role), one of its user's devices (user role), any (admin). Fails (403) otherwise. */
static int may_use_device(const struct request *req, const char *device_id, const char *owner,
                          struct err *err)
{
    const struct credential *cred = &req->cred;
    bool ok = cred->role == ROLE_ADMIN ||
              (cred->role == ROLE_USER && !strcmp(cred->user_id, owner)) ||
              (cred->role == ROLE_DEVICE && !strcmp(cred->device_id, device_id));
    return ok ? FERRY_OK : err_set(err, ERR_FORBIDDEN, "this device belongs to another user");
}

/* Loads device id into *device (the caller's to release) and checks access. */
static int device_for(struct request *req, const char *id, json_t **device, struct err *err)
{
    char owner[128];
    *device = NULL;
    if (devices_get(req->db, id, device, owner, err) != FERRY_OK)
        return FERRY_ERR;
    if (may_use_device(req, id, owner, err) != FERRY_OK) {
        json_decref(*device);
        *device = NULL;
        return FERRY_ERR;
    }
    return FERRY_OK;
}

/* The device a sync call speaks for: a device credential's own, or the deviceId a user
 * or admin names (optional when `optional`). *id is NULL when none. */
static int acting_device(struct request *req, const char *named, bool optional, const char **id,
                         struct err *err)
{
    json_t *device = NULL;
    *id = NULL;
    if (req->cred.role == ROLE_DEVICE) {
        if (named && strcmp(named, req->cred.device_id) != 0)
            return err_set(err, ERR_FORBIDDEN, "a device token may only act for its device");
        *id = req->cred.device_id;
        devices_seen(req->db, *id);
        return FERRY_OK;
    }
    if (!named)
        return optional ? FERRY_OK
                        : err_set(err, ERR_INVALID,
                                  "field 'deviceId' is required unless a device token is used");
    if (device_for(req, named, &device, err) != FERRY_OK)
        return FERRY_ERR;
    json_decref(device);
    *id = named;
    return FERRY_OK;
}

static const char *scope_of(const struct request *req)
{
    return req->cred.tables[0] ? req->cred.tables : NULL;
}

/* --- devices ----------------------------------------------------------------------- */

static int read_device_spec(json_t *body, struct device_spec *spec, struct err *err)
{
    memset(spec, 0, sizeof(*spec));
    return jsonutil_get_string(body, "id", false, &spec->id, err) != FERRY_OK ||
                   jsonutil_get_string(body, "name", false, &spec->name, err) != FERRY_OK ||
                   jsonutil_get_string(body, "platform", false, &spec->platform, err) != FERRY_OK ||
                   jsonutil_get_string(body, "appVersion", false, &spec->app_version, err) !=
                       FERRY_OK
               ? FERRY_ERR
               : FERRY_OK;
}

static int register_device(struct request *req, struct err *err)
{
    struct device_spec spec;
    const char *user = req->cred.user_id;
    json_t *body, *device = NULL;
    char *token = NULL;

    if (http_json_body(req, &body, err) != FERRY_OK ||
        read_device_spec(body, &spec, err) != FERRY_OK ||
        jsonutil_get_string(body, "userId", req->cred.role == ROLE_ADMIN && !user[0], &user, err) !=
            FERRY_OK)
        return FERRY_ERR;
    if (req->cred.role != ROLE_ADMIN && strcmp(user, req->cred.user_id) != 0)
        return err_set(err, ERR_FORBIDDEN, "a user registers devices only for itself");
    spec.tables = scope_of(req);
    /* the device's token carries the registering credential's claims (a JWT's, or a
     * ferry token's attributes), so the claim rules read the same rows with it */
    spec.attrs = req->cred.claims[0] ? req->cred.claims : NULL;
    int rc = devices_register(req->db, user, &spec, &device, &token, err);
    if (rc == FERRY_OK) {
        json_object_set_new(device, "token", json_string(token));
        http_reply_json(req, HTTP_OK, device);
    }
    free(token);
    return rc;
}

static int list_devices(struct request *req, struct err *err)
{
    json_t *list = NULL;
    if (req->cred.role == ROLE_DEVICE) {
        char owner[128];
        json_t *self = NULL;
        list = json_array();
        if (devices_get(req->db, req->cred.device_id, &self, owner, err) == FERRY_OK)
            json_array_append_new(list, self);
    } else {
        const char *user =
            req->cred.role == ROLE_ADMIN ? http_query(req, "userId") : req->cred.user_id;
        devices_list(req->db, user, &list, err);
    }
    if (!list)
        return FERRY_ERR;
    http_reply_json(
        req, HTTP_OK,
        json_pack("{s:o, s:I}", "devices", list, "totalCount", (json_int_t)json_array_size(list)));
    return FERRY_OK;
}

static int get_device(struct request *req, struct err *err)
{
    json_t *device = NULL;
    if (device_for(req, http_param(req, "id"), &device, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_OK, device);
    return FERRY_OK;
}

static int update_device(struct request *req, struct err *err)
{
    struct device_spec spec;
    const char *id = http_param(req, "id");
    json_t *body, *device = NULL;
    char owner[128];
    if (http_json_body(req, &body, err) != FERRY_OK ||
        read_device_spec(body, &spec, err) != FERRY_OK)
        return FERRY_ERR;
    if (spec.id && strcmp(spec.id, id) != 0)
        return err_set(err, ERR_INVALID, "a device's id cannot change");
    spec.id = NULL;
    if (device_for(req, id, &device, err) != FERRY_OK)
        return FERRY_ERR;
    json_decref(device);
    device = NULL;
    if (devices_update(req->db, id, &spec, err) != FERRY_OK ||
        devices_get(req->db, id, &device, owner, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_OK, device);
    return FERRY_OK;
}

static int delete_device(struct request *req, struct err *err)
{
    const char *id = http_param(req, "id");
    json_t *device = NULL;
    if (device_for(req, id, &device, err) != FERRY_OK)
        return FERRY_ERR;
    json_decref(device);
    if (devices_delete(req->db, id, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_text(req, HTTP_NO_CONTENT, NULL, "", 0);
    return FERRY_OK;
}

/* Whether a credential limited to scope (NULL: every table) may hand out a token for a
 * device limited to tables (a JSON array, or null for every table). */
static bool scope_covers(const char *scope, json_t *tables)
{
    size_t i;
    json_t *name;
    if (!scope)
        return true;
    if (!json_is_array(tables))
        return false;
    json_array_foreach(tables, i,
                       name) if (!push_scope_allows(scope, json_string_value(name))) return false;
    return true;
}

static int new_device_token(struct request *req, struct err *err)
{
    const char *id = http_param(req, "id");
    char *token = NULL;
    json_t *device = NULL;
    int rc = FERRY_ERR;
    if (device_for(req, id, &device, err) != FERRY_OK)
        return FERRY_ERR;
    if (!scope_covers(scope_of(req), json_object_get(device, "tables")))
        err_set(err, ERR_FORBIDDEN, "this credential's table limit is narrower than the device's");
    else if ((rc = devices_new_token(req->db, id, &token, err)) == FERRY_OK)
        http_reply_json(req, HTTP_OK, json_pack("{s:s, s:s}", "deviceId", id, "token", token));
    json_decref(device);
    free(token);
    return rc;
}

/* --- report, changes, ack ------------------------------------------------------- */

static int report(struct request *req, struct err *err)
{
    json_t *body, *ops = NULL, *result = NULL;
    const char *batch_id = NULL, *named = NULL, *device = NULL;
    bool replayed = false;
    int64_t started = time_mono_us();
    struct watch_wake wake = {0};

    if (http_json_body(req, &body, err) != FERRY_OK ||
        jsonutil_get_array(body, "operations", true, &ops, err) != FERRY_OK ||
        jsonutil_get_string(body, "batchId", false, &batch_id, err) != FERRY_OK ||
        jsonutil_get_string(body, "deviceId", false, &named, err) != FERRY_OK ||
        acting_device(req, named, false, &device, err) != FERRY_OK)
        return FERRY_ERR;
    char *origin = xasprintf("device:%s", device);
    struct rules_caller who;
    scope_caller(req, &who);
    struct push_request r = {
        .origin = origin,
        .batch_id = batch_id,
        .device_id = device,
        .user_id = req->cred.user_id[0] ? req->cred.user_id : NULL,
        .scope = scope_of(req),
        .caller = &who,
        .want_results = true,
        .ops = ops,
        .max_ops = req->app->cfg->max_batch,
        .wake = &wake,
    };
    int rc = push_apply(req->db, &req->app->synced, &r, &result, &replayed, err);
    watch_wake(req->app->watch, &wake); /* this node's waiters, before the answer */
    metrics_sync(req->app->metrics, rc == FERRY_OK, (time_mono_us() - started) / 1000,
                 req->bytes_in);
    if (rc == FERRY_OK) {
        json_object_set_new(result, "deviceId", json_string(device));
        json_object_set_new(result, "replayed", json_boolean(replayed));
        http_reply_json(req, HTTP_OK, json_incref(result));
    }
    free(origin);
    json_decref(result);
    return rc;
}

static int query_int(struct request *req, const char *name, int64_t def, int64_t max, int64_t *out,
                     struct err *err)
{
    const char *text = http_query(req, name);
    char *end;
    *out = def;
    if (!text)
        return FERRY_OK;
    long long v = strtoll(text, &end, 10);
    if (!*text || *end || v < 0)
        return err_set(err, ERR_INVALID, "%s must be a whole number", name);
    if (v > max)
        return err_set(err, ERR_INVALID, "%s must be at most %lld", name, (long long)max);
    *out = v;
    return FERRY_OK;
}

/* The tables a changes call reads: the tables= list (each synced and in scope), or every
 * synced table in scope. Caller frees *out. */
static int changes_tables(struct request *req, const struct synced_table ***out, size_t *n,
                          struct err *err)
{
    const struct synced_set *set = &req->app->synced;
    const char *list = http_query(req, "tables");
    *out = xcalloc(set->n + 1, sizeof(**out));
    *n = 0;
    for (size_t i = 0; i < set->n; i++) {
        const struct synced_table *t = &set->tables[i];
        bool named = list && push_scope_allows(list, t->name);
        if ((list && !named) || (!list && !push_scope_allows(scope_of(req), t->name)))
            continue;
        if (named && !push_scope_allows(scope_of(req), t->name))
            return err_set(err, ERR_FORBIDDEN, "this credential may not read table '%s'", t->name);
        (*out)[(*n)++] = t;
    }
    if (list) {
        char *copy = xstrdup(list), *save = NULL;
        int rc = FERRY_OK;
        for (char *name = strtok_r(copy, ",", &save); name && rc == FERRY_OK;
             name = strtok_r(NULL, ",", &save))
            if (!tables_find(set, name))
                rc = err_set(err, ERR_INVALID, "'%s' is not a synced table", name);
        free(copy);
        return rc;
    }
    return FERRY_OK;
}

static json_t *table_schema(const struct synced_table *t)
{
    json_t *cols = json_array();
    for (size_t i = 0; i < t->n_cols; i++) {
        const struct synced_column *c = &t->cols[i];
        json_array_append_new(cols,
                              json_pack("{s:s, s:s, s:b}", "name", c->name, "type",
                                        values_kind_label(c->kind), "nullable", !c->not_null));
    }
    return json_pack("{s:s, s:s, s:o}", "name", t->name, "primaryKey", t->cols[t->pk].name,
                     "columns", cols);
}

/* GET schema: the synced tables this credential may sync, with their columns, so that a
 * client can create its local replica (libferry does). */
static int schema(struct request *req, struct err *err)
{
    const struct synced_set *set = &req->app->synced;
    json_t *tables = json_array();
    (void)err;
    for (size_t i = 0; i < set->n; i++) {
        const struct synced_table *t = &set->tables[i];
        if (!t->builtin && push_scope_allows(scope_of(req), t->name))
            json_array_append_new(tables, table_schema(t));
    }
    http_reply_json(req, HTTP_OK, json_pack("{s:o}", "tables", tables));
    return FERRY_OK;
}

/* Whether the client asked for a streamed page (stream=true). */
static int stream_asked(struct request *req, bool *stream, struct err *err)
{
    const char *text = http_query(req, "stream");
    *stream = text && !strcmp(text, "true");
    if (text && !*stream && strcmp(text, "false") != 0)
        return err_set(err, ERR_INVALID, "stream must be true or false");
    return FERRY_OK;
}

/* The query of a changes call: cursor, limit, wait (seconds) and tables. */
static int changes_query(struct request *req, struct feed_query *q, int64_t *wait,
                         const struct synced_table ***tables, bool stream, struct err *err)
{
    int64_t limit = 0, max_bytes = 0;
    if (feed_parse_cursor(http_query(req, "cursor"), &q->cursor, err) != FERRY_OK ||
        query_int(req, "limit", CHANGES_DEFAULT_LIMIT,
                  stream ? PAGESTREAM_MAX_LIMIT : CHANGES_MAX_LIMIT, &limit, err) != FERRY_OK ||
        query_int(req, "maxBytes", 0, CHANGES_MAX_BYTES, &max_bytes, err) != FERRY_OK ||
        query_int(req, "wait", 0, MAX_WAIT_S, wait, err) != FERRY_OK ||
        changes_tables(req, tables, &q->n_tables, err) != FERRY_OK)
        return FERRY_ERR;
    if (limit < 1)
        return err_set(err, ERR_INVALID, "limit must be at least 1");
    q->tables = *tables;
    q->limit = (int)limit;
    q->max_bytes = (size_t)max_bytes;
    return FERRY_OK;
}

/* The end of a changes answer, after its changes. */
static void changes_tail(struct buf *text, const struct feed_text *page)
{
    buf_printf(text, "],\"cursor\":%lld,\"hasMore\":%s}", (long long)page->next_cursor,
               page->has_more ? "true" : "false");
}

/* The page read as a stream (api/pagestream.h). An empty page goes the way of a read
 * page (a long-poll waits). */
static int stream_page(struct request *req, const struct feed_query *q, struct buf *text,
                       struct feed_text *page, bool *streamed, struct err *err)
{
    struct feed_stream *fs = NULL;
    *streamed = false;
    if (feed_stream_open(req->db, q, &fs, err) != FERRY_OK) {
        feed_stream_free(fs);
        return FERRY_ERR;
    }
    return pagestream_send(req, fs, text, changes_tail, page, streamed, err);
}

static int changes(struct request *req, struct err *err)
{
    const struct synced_table **tables = NULL;
    struct feed_query q = {0};
    struct buf text;
    struct feed_text page = {.shape = FEED_CHANGES, .changes = &text};
    int64_t wait = 0;
    const char *device = NULL;
    const char *include_own = http_query(req, "includeOwn");
    bool stream = false, streamed = false;
    int rc = FERRY_ERR;

    buf_init(&text);
    if (stream_asked(req, &stream, err) != FERRY_OK ||
        changes_query(req, &q, &wait, &tables, stream, err) != FERRY_OK ||
        acting_device(req, http_query(req, "deviceId"), true, &device, err) != FERRY_OK)
        goto out;
    /* beyond the streams' places a plain page (at most CHANGES_MAX_LIMIT changes, the
     * same answer's shape), which its client follows by cursor like any page */
    if (stream && !pagestream_take(req->app)) {
        stream = false;
        q.limit = q.limit < CHANGES_MAX_LIMIT ? q.limit : CHANGES_MAX_LIMIT;
    }
    q.exclude_device = include_own && !strcmp(include_own, "true") ? NULL : device;
    struct rules_caller who;
    scope_caller(req, &who);
    q.caller = &who;
    q.device_id = device;
    struct filescope files = apifiles_scope(req); /* a user's devices see that user's files */
    q.files = &files;
    if (req->wait_deadline && !stream && !q.max_bytes) { /* woken: readers of the same page
                                                           share one read */
        q.share = req->app->feedshare;
        q.share_head = req->woke_head > req->wait_head ? req->woke_head : req->wait_head;
        q.woken = req->woke_head > 0;
    }
    buf_puts(&text, "{\"changes\":[");
    int read = stream ? stream_page(req, &q, &text, &page, &streamed, err)
                      : feed_read_text(req->db, &q, &page, err);
    if (stream && !streamed)
        pagestream_give(req->app);
    if (read != FERRY_OK)
        goto out;
    rc = FERRY_OK;
    if (streamed)
        goto out;
    /* Nothing new and the client will wait: park until the log moves or time is up. */
    if (page.n == 0 && wait > 0 && !req->wait_expired) {
        if (!req->wait_deadline)
            req->wait_deadline = time_now_ms() + wait * 1000;
        uint64_t keys[WATCH_MAX_KEYS];
        waiter_wait_keys(req, keys, watch_keys_of(&q, keys)); /* woken by these changes only */
        http_wait(req, req->wait_deadline, page.head);
        goto out;
    }
    changes_tail(&text, &page);
    http_reply_json_text(req, HTTP_OK, &text);
out:
    buf_cleanup(&text);
    free(tables);
    return rc;
}

static int ack(struct request *req, struct err *err)
{
    json_t *body, *cursor_json;
    const char *named = NULL, *device = NULL;
    int64_t cursor = 0, stored = 0;
    if (http_json_body(req, &body, err) != FERRY_OK ||
        jsonutil_get_string(body, "deviceId", false, &named, err) != FERRY_OK)
        return FERRY_ERR;
    cursor_json = json_object_get(body, "cursor");
    if (json_is_integer(cursor_json) && json_integer_value(cursor_json) >= 0)
        cursor = json_integer_value(cursor_json);
    else if (!json_is_string(cursor_json) ||
             feed_parse_cursor(json_string_value(cursor_json), &cursor, err) != FERRY_OK)
        return err_set(err, ERR_INVALID, "%s",
                       cursor_json ? "field 'cursor' is not a cursor"
                                   : "field 'cursor' is required");
    if (acting_device(req, named, false, &device, err) != FERRY_OK ||
        devices_ack(req->db, device, cursor, &stored, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:s, s:I}", "deviceId", device, "cursor", (json_int_t)stored));
    return FERRY_OK;
}

/* --- conflicts ---------------------------------------------------------------------- */

static int list_conflicts(struct request *req, struct err *err)
{
    json_t *list = NULL;
    const char *status = http_query(req, "status");
    if (!status)
        status = "open";
    if (strcmp(status, "open") && strcmp(status, "resolved") && strcmp(status, "all"))
        return err_set(err, ERR_INVALID, "status must be open, resolved or all");
    const char *user = req->cred.role == ROLE_ADMIN ? http_query(req, "userId") : req->cred.user_id;
    struct rules_caller who;
    scope_caller(req, &who);
    struct conflict_filter filter = {user, strcmp(status, "all") ? status : NULL, scope_of(req),
                                     &who};
    if (conflicts_list(req->db, &req->app->synced, &filter, &list, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:o, s:I}", "conflicts", list, "totalCount",
                              (json_int_t)json_array_size(list)));
    return FERRY_OK;
}

/* The conflict is the caller's (403 otherwise), in a table it may change. */
static int may_resolve(const struct request *req, const char *owner, json_t *conflict,
                       struct err *err)
{
    if (req->cred.role != ROLE_ADMIN && strcmp(owner, req->cred.user_id) != 0)
        return err_set(err, ERR_FORBIDDEN, "this conflict belongs to another user");
    if (!push_scope_allows(scope_of(req), json_string_value(json_object_get(conflict, "table"))))
        return err_set(err, ERR_FORBIDDEN, "this credential may not change that table");
    return FERRY_OK;
}

static int resolve_conflict(struct request *req, struct err *err)
{
    json_t *body, *data = NULL, *conflict = NULL, *done = NULL;
    const char *resolution = NULL, *id = http_param(req, "id");
    char owner[128];
    int rc = FERRY_ERR;
    struct rules_caller who;
    scope_caller(req, &who);
    if (http_json_body(req, &body, err) != FERRY_OK ||
        jsonutil_get_string(body, "resolution", true, &resolution, err) != FERRY_OK ||
        jsonutil_get_object(body, "data", false, &data, err) != FERRY_OK)
        return FERRY_ERR;
    if (conflicts_get(req->db, &req->app->synced, id, &conflict, owner, err) == FERRY_OK &&
        may_resolve(req, owner, conflict, err) == FERRY_OK &&
        conflicts_resolve(req->db, &req->app->synced, id, resolution, data,
                          req->cred.user_id[0] ? req->cred.user_id : req->cred.id, &who, &done,
                          err) == FERRY_OK) {
        http_reply_json(req, HTTP_OK, done);
        rc = FERRY_OK;
    }
    json_decref(conflict);
    return rc;
}

/* Both prefixes of Pinakes serve the same handlers. */
/* One route a line, as a table. */
// clang-format off
#define SYNC_ROUTES(P)                                                                             \
    {M_POST, P "/devices", register_device, ROLE_USER, SURFACE_V1,                                 \
     ROUTE_JSON | ROUTE_STORE, NULL},                                                              \
    {M_GET, P "/devices", list_devices, ROLES_ANY, SURFACE_V1, ROUTE_STORE, NULL},                 \
    {M_GET, P "/devices/{id}", get_device, ROLES_ANY, SURFACE_V1, ROUTE_STORE, NULL},              \
    {M_PUT, P "/devices/{id}", update_device, ROLES_ANY, SURFACE_V1,                               \
     ROUTE_JSON | ROUTE_STORE, NULL},                                                              \
    {M_DELETE, P "/devices/{id}", delete_device, ROLE_USER, SURFACE_V1, ROUTE_STORE, NULL},        \
    {M_POST, P "/devices/{id}/token", new_device_token, ROLE_USER, SURFACE_V1, ROUTE_STORE, NULL}, \
    {M_POST, P "/report", report, ROLES_ANY, SURFACE_V1, ROUTE_JSON | ROUTE_STORE, NULL},          \
    {M_GET, P "/changes", changes, ROLES_ANY, SURFACE_V1, ROUTE_STORE, NULL},                      \
    {M_GET, P "/schema", schema, ROLES_ANY, SURFACE_V1, 0, NULL},                                  \
    {M_POST, P "/ack", ack, ROLES_ANY, SURFACE_V1, ROUTE_JSON | ROUTE_STORE, NULL},                \
    {M_GET, P "/conflicts", list_conflicts, ROLES_ANY, SURFACE_V1, ROUTE_STORE, NULL},             \
    {M_POST, P "/conflicts/{id}/resolve", resolve_conflict, ROLES_ANY, SURFACE_V1,                 \
     ROUTE_JSON | ROUTE_STORE, NULL}
// clang-format on

static const struct route routes[] = {
    SYNC_ROUTES("/api/v1/sync"),
    SYNC_ROUTES("/api/sync"),
};

const struct route_table api_sync_routes = {routes, sizeof(routes) / sizeof(routes[0])};
