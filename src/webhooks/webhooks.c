/* webhooks.c - see webhooks.h. A subscription's events are kept as a comma list; an
 * event type matches when ",type," occurs in ",events," (event names hold no comma and
 * no LIKE wildcard). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"
#include "util/url.h"
#include "webhooks/dispatch.h"
#include "webhooks/webhooks.h"
#include "webhooks/whsign.h"

static const char *const event_names[WEBHOOK_N_EVENTS] = {
    "sync.completed",   "sync.failed",       "conflict.created",
    "upload.completed", "device.registered", "site.connection.changed",
    "backup.completed",
};

const char *webhooks_event_name(enum webhook_event e)
{
    return e < WEBHOOK_N_EVENTS ? event_names[e] : "unknown";
}

static json_t *iso_or_null(const struct store_rows *rows, int col)
{
    char iso[32];
    if (store_rows_isnull(rows, col))
        return json_null();
    time_iso8601(store_rows_int(rows, col), 1, iso);
    return json_string(iso);
}

static json_t *text_or_null(const struct store_rows *rows, int col)
{
    return store_rows_isnull(rows, col) ? json_null() : json_string(store_rows_text(rows, col));
}

/* --- emitting ---------------------------------------------------------------------- */

static int insert_event(struct store_conn *c, const char *id, enum webhook_event e, json_t *data,
                        int64_t now, struct err *err)
{
    char iso[32];
    time_iso8601(now, 1, iso);
    json_t *payload = json_pack("{s:s, s:s, s:O}", "type", webhooks_event_name(e), "timestamp", iso,
                                "data", data);
    char *text = jsonutil_to_string(payload);
    struct store_val v[] = {sv_text(id), sv_text(webhooks_event_name(e)), sv_text(text),
                            sv_int(now)};
    int rc = store_run(c,
                       "INSERT INTO ferry_webhook_events(id, type, payload, created_at)"
                       " VALUES ($1, $2, $3, $4)",
                       v, 4, NULL, err);
    free(text);
    json_decref(payload);
    return rc;
}

int webhooks_emit(struct store_conn *c, enum webhook_event e, json_t *data, struct err *err)
{
    char id[40], hex[33], pattern[64];
    int64_t now = time_now_ms(), queued = 0;
    bool own = !store_in_txn(c);
    int rc = FERRY_ERR;
    crypto_random_hex(hex, 16);
    snprintf(id, sizeof(id), "msg_%s", hex);
    snprintf(pattern, sizeof(pattern), "%%,%s,%%", webhooks_event_name(e));
    struct store_val v[] = {sv_text(id), sv_int(now), sv_text(pattern)};
    if (!data)
        data = json_object();
    if (own && store_begin(c, err) != FERRY_OK)
        goto out;
    /* the common case, nobody subscribed, costs this one statement */
    if (store_run(c,
                  "INSERT INTO ferry_webhook_deliveries(event_id, webhook_id, status,"
                  " next_attempt_at, created_at)"
                  " SELECT CAST($1 AS TEXT), id, 'pending', CAST($2 AS BIGINT), CAST($2 AS BIGINT)"
                  " FROM ferry_webhooks WHERE enabled = 1 AND (',' || events || ',') LIKE $3",
                  v, 3, &queued, err) != FERRY_OK)
        goto out;
    if (queued && insert_event(c, id, e, data, now, err) != FERRY_OK)
        goto out;
    rc = own ? store_commit(c, err) : FERRY_OK;
out:
    if (own)
        store_rollback(c);
    json_decref(data);
    return rc;
}

int webhooks_change(struct store_conn *c, const char *sql, const struct store_val *params,
                    size_t n_params, int64_t *changes, enum webhook_event e, json_t *data,
                    struct err *err)
{
    int64_t changed = 0;
    bool own = !store_in_txn(c);
    int rc = FERRY_ERR;
    if ((own && store_begin(c, err) != FERRY_OK) ||
        store_run(c, sql, params, n_params, &changed, err) != FERRY_OK)
        goto out;
    rc = changed && data ? webhooks_emit(c, e, json_incref(data), err) : FERRY_OK;
    if (rc == FERRY_OK && own)
        rc = store_commit(c, err);
out:
    if (own)
        store_rollback(c);
    json_decref(data);
    if (changes)
        *changes = rc == FERRY_OK ? changed : 0;
    return rc;
}

enum webhook_event webhooks_job_event(const char *kind, const char *params, bool ok)
{
    if (!kind || strcmp(kind, "backup") != 0)
        return ok ? WEBHOOK_SYNC_COMPLETED : WEBHOOK_SYNC_FAILED;
    json_t *p = params ? json_loads(params, 0, NULL) : NULL;
    const char *op = json_string_value(json_object_get(p, "op"));
    bool created = ok && op && !strcmp(op, "create");
    json_decref(p);
    return created ? WEBHOOK_BACKUP_COMPLETED : WEBHOOK_N_EVENTS;
}

json_t *webhooks_job_data(const char *id, const char *kind, const char *source, const char *target,
                          bool ok, const char *result, const char *message)
{
    json_t *parsed = result ? json_loads(result, 0, NULL) : NULL;
    return json_pack("{s:s, s:s?, s:s?, s:s?, s:s, s:s?, s:o?}", "jobId", id, "kind", kind,
                     "source", source, "target", target, "status", ok ? "completed" : "failed",
                     "message", message, "result", parsed);
}

int webhooks_emit_store(struct store *st, enum webhook_event e, json_t *data, struct err *err)
{
    struct store_conn *c = NULL;
    int rc = store_acquire(st, &c, err) == FERRY_OK ? webhooks_emit(c, e, data, err) : FERRY_ERR;
    if (!c)
        json_decref(data);
    store_release(c);
    return rc;
}

/* --- subscriptions ----------------------------------------------------------------- */

#define HOOK_COLS                                                                                  \
    "id, url, events, description, enabled, failures, retry_at, disabled_at, disabled_reason,"     \
    " created_at, updated_at"

static json_t *events_array(const char *list)
{
    json_t *arr = json_array();
    char *copy = xstrdup(list), *save = NULL;
    for (char *e = strtok_r(copy, ",", &save); e; e = strtok_r(NULL, ",", &save))
        json_array_append_new(arr, json_string(e));
    free(copy);
    return arr;
}

static json_t *hook_json(const struct store_rows *rows)
{
    return json_pack("{s:s, s:s, s:o, s:o, s:b, s:I, s:o, s:o, s:o, s:o, s:o}", "id",
                     store_rows_text(rows, 0), "url", store_rows_text(rows, 1), "events",
                     events_array(store_rows_text(rows, 2)), "description", text_or_null(rows, 3),
                     "enabled", store_rows_int(rows, 4) != 0, "consecutiveFailures",
                     (json_int_t)store_rows_int(rows, 5), "nextRetryAt", iso_or_null(rows, 6),
                     "disabledAt", iso_or_null(rows, 7), "disabledReason", text_or_null(rows, 8),
                     "createdAt", iso_or_null(rows, 9), "updatedAt", iso_or_null(rows, 10));
}

/* The comma list of a JSON array of known event names, each once. */
static int parse_events(json_t *arr, struct buf *out, struct err *err)
{
    bool seen[WEBHOOK_N_EVENTS] = {false};
    size_t i;
    json_t *item;
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return err_set(err, ERR_INVALID, "field 'events' must be a non-empty array of event names");
    json_array_foreach(arr, i, item)
    {
        int found = -1;
        for (int e = 0; e < WEBHOOK_N_EVENTS && json_is_string(item); e++)
            if (!strcmp(json_string_value(item), event_names[e]))
                found = e;
        if (found < 0)
            return err_set(err, ERR_INVALID,
                           "events[%zu] is not an event ferry emits (sync.completed, sync.failed,"
                           " conflict.created, upload.completed, device.registered,"
                           " site.connection.changed, backup.completed)",
                           i);
        if (!seen[found])
            buf_printf(out, "%s%s", out->len ? "," : "", event_names[found]);
        seen[found] = true;
    }
    return FERRY_OK;
}

static int read_subscription(json_t *body, const char **url, const char **description,
                             struct buf *events, struct err *err)
{
    if (jsonutil_get_string(body, "url", true, url, err) != FERRY_OK ||
        jsonutil_get_string(body, "description", false, description, err) != FERRY_OK ||
        parse_events(json_object_get(body, "events"), events, err) != FERRY_OK)
        return FERRY_ERR;
    if (strlen(*url) > WEBHOOKS_URL_MAX || !url_parse_http(*url, NULL))
        return err_set(err, ERR_INVALID,
                       "field 'url' must be an http or https URL of at most %d"
                       " characters",
                       WEBHOOKS_URL_MAX);
    if (*description && strlen(*description) > WEBHOOKS_DESCRIPTION_MAX)
        return err_set(err, ERR_INVALID, "field 'description' is longer than %d characters",
                       WEBHOOKS_DESCRIPTION_MAX);
    return FERRY_OK;
}

int webhooks_subscribe(struct store_conn *c, const struct webhooks_env *env, json_t *body,
                       json_t **out, struct err *err)
{
    const char *url = NULL, *description = NULL;
    char id[40], hex[25], secret[WHSIGN_SECRET_MAX];
    struct buf events;
    int rc = FERRY_ERR;
    buf_init(&events);
    *out = NULL;
    if (read_subscription(body, &url, &description, &events, err) != FERRY_OK ||
        dispatch_check_target(url, env->allow_private, err) != FERRY_OK)
        goto out;
    crypto_random_hex(hex, 12);
    snprintf(id, sizeof(id), "wh_%s", hex);
    whsign_new_secret(secret);
    struct store_val v[] = {sv_text(id),          sv_text(url),    sv_text(events.data),
                            sv_text(description), sv_text(secret), sv_text(env->created_by),
                            sv_int(time_now_ms())};
    if (store_run(c,
                  "INSERT INTO ferry_webhooks(id, url, events, description, secret, created_by,"
                  " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                  v, 7, NULL, err) != FERRY_OK ||
        webhooks_get(c, id, out, err) != FERRY_OK)
        goto out;
    json_object_set_new(*out, "secret", json_string(secret));
    json_object_set_new(*out, "success", json_true());
    json_object_set_new(*out, "message", json_string("Subscribed; the secret is shown only once"));
    rc = FERRY_OK;
out:
    buf_cleanup(&events);
    return rc;
}

int webhooks_list(struct store_conn *c, json_t **out, struct err *err)
{
    struct store_rows *rows = NULL;
    int step = -1;
    *out = json_array();
    if (store_query(c, "SELECT " HOOK_COLS " FROM ferry_webhooks ORDER BY created_at, id", NULL, 0,
                    &rows, err) == FERRY_OK)
        while ((step = store_rows_next(rows, err)) == 1)
            json_array_append_new(*out, hook_json(rows));
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

int webhooks_get(struct store_conn *c, const char *id, json_t **out, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    int step = -1;
    *out = NULL;
    if (store_query(c, "SELECT " HOOK_COLS " FROM ferry_webhooks WHERE id = $1", &v, 1, &rows,
                    err) == FERRY_OK &&
        (step = store_rows_next(rows, err)) == 1)
        *out = hook_json(rows);
    store_rows_free(rows);
    if (step == 0)
        return err_set(err, ERR_NOT_FOUND, "no webhook subscription '%s'", id);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

int webhooks_delete(struct store_conn *c, const char *id, struct err *err)
{
    struct store_val v = sv_text(id);
    int64_t gone = 0;
    int rc = FERRY_ERR;
    if (store_begin(c, err) != FERRY_OK ||
        store_run(c, "DELETE FROM ferry_webhooks WHERE id = $1", &v, 1, &gone, err) != FERRY_OK)
        goto out;
    if (!gone) {
        err_set(err, ERR_NOT_FOUND, "no webhook subscription '%s'", id);
        goto out;
    }
    if (store_run(c, "DELETE FROM ferry_webhook_deliveries WHERE webhook_id = $1", &v, 1, NULL,
                  err) == FERRY_OK &&
        store_run(c, "DELETE FROM ferry_webhook_attempts WHERE webhook_id = $1", &v, 1, NULL,
                  err) == FERRY_OK)
        rc = store_commit(c, err);
out:
    store_rollback(c);
    return rc;
}

int webhooks_enable(struct store_conn *c, const char *id, json_t **out, struct err *err)
{
    struct store_val v[] = {sv_text(id), sv_int(time_now_ms())};
    int64_t found = 0;
    int rc = FERRY_ERR;
    *out = NULL;
    if (store_begin(c, err) != FERRY_OK ||
        store_run(c,
                  "UPDATE ferry_webhooks SET enabled = 1, failures = 0, retry_at = NULL,"
                  " disabled_at = NULL, disabled_reason = NULL, updated_at = $2 WHERE id = $1",
                  v, 2, &found, err) != FERRY_OK)
        goto out;
    if (!found) {
        err_set(err, ERR_NOT_FOUND, "no webhook subscription '%s'", id);
        goto out;
    }
    if (store_run(c,
                  "UPDATE ferry_webhook_deliveries SET next_attempt_at = $2"
                  " WHERE webhook_id = $1 AND status = 'pending'",
                  v, 2, NULL, err) == FERRY_OK &&
        store_commit(c, err) == FERRY_OK)
        rc = webhooks_get(c, id, out, err);
out:
    store_rollback(c);
    return rc;
}

/* --- the delivery log -------------------------------------------------------------- */

#define DELIVERY_COLS                                                                              \
    "d.event_id, e.type, d.status, d.attempts, d.next_attempt_at, d.last_status, d.last_error,"    \
    " d.delivered_at, d.created_at"

/* The attempts at one delivery, oldest first. */
static int attempts_json(struct store_conn *c, const char *hook, const char *event, json_t **out,
                         struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v[] = {sv_text(event), sv_text(hook)};
    int step = -1;
    *out = json_array();
    if (store_query(c,
                    "SELECT attempt, at, status, ok, duration_ms, error, response"
                    " FROM ferry_webhook_attempts WHERE event_id = $1 AND webhook_id = $2"
                    " ORDER BY attempt",
                    v, 2, &rows, err) == FERRY_OK)
        while ((step = store_rows_next(rows, err)) == 1)
            json_array_append_new(
                *out, json_pack("{s:I, s:o, s:o, s:b, s:I, s:o, s:o}", "attempt",
                                (json_int_t)store_rows_int(rows, 0), "at", iso_or_null(rows, 1),
                                "statusCode",
                                store_rows_isnull(rows, 2) ? json_null()
                                                           : json_integer(store_rows_int(rows, 2)),
                                "success", store_rows_int(rows, 3) != 0, "durationMs",
                                (json_int_t)store_rows_int(rows, 4), "error", text_or_null(rows, 5),
                                "response", text_or_null(rows, 6)));
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

static json_t *delivery_json(const struct store_rows *rows)
{
    bool pending = !strcmp(store_rows_text(rows, 2), "pending");
    return json_pack(
        "{s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:o}", "eventId", store_rows_text(rows, 0),
        "eventType", store_rows_text(rows, 1), "status", store_rows_text(rows, 2), "attempts",
        (json_int_t)store_rows_int(rows, 3), "nextAttemptAt",
        pending ? iso_or_null(rows, 4) : json_null(), "lastStatusCode",
        store_rows_isnull(rows, 5) ? json_null() : json_integer(store_rows_int(rows, 5)),
        "lastError", text_or_null(rows, 6), "deliveredAt", iso_or_null(rows, 7), "createdAt",
        iso_or_null(rows, 8));
}

/* The deliveries the query selects, each with its attempts. */
static int collect_deliveries(struct store_conn *c, const char *id, const char *sql,
                              const struct store_val *v, size_t n, json_t *list, struct err *err)
{
    struct store_rows *rows = NULL;
    int step = -1;
    if (store_query(c, sql, v, n, &rows, err) == FERRY_OK)
        while ((step = store_rows_next(rows, err)) == 1)
            json_array_append_new(list, delivery_json(rows));
    store_rows_free(rows);
    size_t i;
    json_t *d, *attempts = NULL;
    json_array_foreach(list, i, d)
    {
        if (step < 0 || attempts_json(c, id, json_string_value(json_object_get(d, "eventId")),
                                      &attempts, err) != FERRY_OK) {
            json_decref(attempts);
            return FERRY_ERR;
        }
        json_object_set_new(d, "attemptLog", attempts);
        attempts = NULL;
    }
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

int webhooks_deliveries(struct store_conn *c, const char *id, const char *status, int limit,
                        json_t **out, struct err *err)
{
    json_t *hook = NULL;
    *out = NULL;
    if (status && strcmp(status, "pending") && strcmp(status, "delivered") &&
        strcmp(status, "failed"))
        return err_set(err, ERR_INVALID, "status must be pending, delivered or failed");
    if (webhooks_get(c, id, &hook, err) != FERRY_OK)
        return FERRY_ERR;
    json_decref(hook);
    struct store_val v[] = {sv_text(id), sv_int(limit), sv_text(status)};
    json_t *list = json_array();
    if (collect_deliveries(
            c, id,
            "SELECT " DELIVERY_COLS " FROM ferry_webhook_deliveries d"
            " JOIN ferry_webhook_events e ON e.id = d.event_id"
            " WHERE d.webhook_id = $1 AND (CAST($3 AS TEXT) IS NULL OR d.status = CAST($3 AS TEXT))"
            " ORDER BY d.created_at DESC, d.event_id LIMIT $2",
            v, 3, list, err) != FERRY_OK) {
        json_decref(list);
        return FERRY_ERR;
    }
    *out = json_pack("{s:s, s:o, s:I}", "webhookId", id, "deliveries", list, "totalCount",
                     (json_int_t)json_array_size(list));
    return FERRY_OK;
}

int webhooks_redeliver(struct store_conn *c, const char *id, const char *event_id, json_t **out,
                       struct err *err)
{
    json_t *hook = NULL, *list = json_array();
    int64_t now = time_now_ms(), found = 0;
    bool any = false;
    int rc = FERRY_ERR;
    struct store_val v[] = {sv_text(event_id), sv_text(id), sv_int(now)};
    *out = NULL;
    if (webhooks_get(c, id, &hook, err) != FERRY_OK ||
        store_query_int(c, "SELECT COUNT(*) FROM ferry_webhook_events WHERE id = $1", v, 1, &found,
                        &any, err) != FERRY_OK)
        goto out;
    if (!found) {
        err_set(err, ERR_NOT_FOUND, "no webhook event '%s'", event_id);
        goto out;
    }
    /* a claim in progress is dropped: its outcome no longer counts, this attempt does */
    if (store_run(c,
                  "INSERT INTO ferry_webhook_deliveries(event_id, webhook_id, status,"
                  " next_attempt_at, created_at) VALUES ($1, $2, 'pending', $3, $3)"
                  " ON CONFLICT (event_id, webhook_id) DO UPDATE SET status = 'pending',"
                  " next_attempt_at = $3, claim_owner = NULL, claim_token = NULL,"
                  " claimed_until = NULL",
                  v, 3, NULL, err) != FERRY_OK ||
        collect_deliveries(c, id,
                           "SELECT " DELIVERY_COLS " FROM ferry_webhook_deliveries d"
                           " JOIN ferry_webhook_events e ON e.id = d.event_id"
                           " WHERE d.event_id = $1 AND d.webhook_id = $2",
                           v, 2, list, err) != FERRY_OK)
        goto out;
    *out = json_incref(json_array_get(list, 0));
    rc = FERRY_OK;
out:
    json_decref(hook);
    json_decref(list);
    return rc;
}
