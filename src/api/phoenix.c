/* phoenix.c - PhoenixKit's site-to-site API at {prefix}/sync/api/... (docs/phoenixkit.md),
 * so that a PhoenixKit site and a ferry can connect
 * and pull each other's tables. Bodies, errors ({"success":false,"error":...}) and the
 * order of the checks are PhoenixKit's; where PhoenixKit is weak, ferry is strict:
 * - a connection waiting for approval stays pending (PhoenixKit activates it);
 * - allowed and excluded tables apply on every data path;
 * - connection tokens are compared in constant time, failed lookups count against the
 *   caller's address, each connection has its own rate limit, IP allowlist and expiry;
 * - pull-data pages in primary-key order (limit, after -> next_after). */
#include <stdlib.h>
#include <string.h>

#include "api/phoenix.h"
#include "app.h"
#include "sync/feed.h"
#include "sites/sitedata.h"
#include "sites/sites.h"
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

#define MAX_FIELD 4096

/* --- the surface's state ------------------------------------------------------------ */

struct phoenix {
    struct route routes[PHOENIX_N_ACTIONS];
    char *patterns[PHOENIX_N_ACTIONS]; /* {prefix}/sync/api/{action} */
    struct route_table table;
    struct ratelimit_set *limiters; /* per connection, by its own limit */
};

/* --- checks every action makes --------------------------------------------------------- */

/* The module is off: every action answers 503, as PhoenixKit does. */
static int enabled(struct request *req, struct err *err)
{
    if (req->app->cfg->sites_enabled)
        return FERRY_OK;
    return err_set(err, ERR_UNAVAILABLE, "DB Sync module is disabled");
}

/* A field is missing when absent, null or "" (PhoenixKit's rule). */
static const char *field(json_t *body, const char *name)
{
    const char *v = json_string_value(json_object_get(body, name));
    return v && *v && strlen(v) <= MAX_FIELD ? v : NULL;
}

/* Fails when a field is missing; the answer (400) lists them, so it is given here. */
static int require(struct request *req, json_t *body, const char *const *names, size_t n,
                   struct err *err)
{
    json_t *missing = json_array();
    for (size_t i = 0; i < n; i++)
        if (!field(body, names[i]))
            json_array_append_new(missing, json_string(names[i]));
    if (json_array_size(missing) == 0) {
        json_decref(missing);
        return FERRY_OK;
    }
    http_reply_json(req, http_status_of(ERR_INVALID),
                    json_pack("{s:b, s:s, s:o}", "success", 0, "error", "Missing required fields",
                              "fields", missing));
    return err_set(err, ERR_INVALID, "Missing required fields");
}

static int body_of(struct request *req, json_t **body, struct err *err)
{
    *body = req->json;
    if (json_is_object(req->json))
        return FERRY_OK;
    return err_set(err, ERR_INVALID, "%s",
                   req->json ? "The body must be a JSON object" : "Missing required fields");
}

/* The start of every POST action: the module is on (503), the body is an object (400),
 * and it has the required fields (400). */
static int action_body(struct request *req, const char *const *need, size_t n, json_t **body,
                       struct err *err)
{
    if (enabled(req, err) != FERRY_OK || body_of(req, body, err) != FERRY_OK)
        return FERRY_ERR;
    return require(req, *body, need, n, err);
}

/* --- finding the caller's connection ------------------------------------------------ */

/* A lookup by token hash that found nothing counts as a failed authentication of the
 * caller's address (ferry's limiter for bearer tokens); an address over the limit is
 * refused before any lookup. */
static int address_may_try(struct request *req, struct err *err)
{
    if (!ratelimit_exhausted(req->app->auth_fail, req->client_addr, time_mono_us()))
        return FERRY_OK;
    http_add_header(req, "Retry-After", "60");
    return err_set(err, ERR_RATE_LIMITED, "Too many failed attempts");
}

static void count_failure(struct request *req)
{
    ratelimit_take(req->app->auth_fail, req->client_addr, time_mono_us());
}

/* The connection may be used now: active (an expired one is marked so), from an allowed
 * address (403), and under its rate limit (429). */
static int connection_usable(struct request *req, struct store_conn *c, struct site *s,
                             struct err *err)
{
    if (s->expires_at && s->expires_at <= time_now_ms() && s->status == SITE_ACTIVE) {
        sites_set_status(c, s->id, SITE_EXPIRED, NULL);
        s->status = SITE_EXPIRED;
    }
    if (s->status != SITE_ACTIVE)
        return err_set(err, ERR_FORBIDDEN, "Connection is not active");
    if (!sites_ip_allowed(s, req->client_addr))
        return err_set(err, ERR_FORBIDDEN, "Address not allowed for this connection");
    struct rl_result r = ratelimit_take(
        ratelimit_set_for(req->app->phoenix->limiters, s->rate_limit), s->id, time_mono_us());
    if (!r.allowed) {
        char after[24];
        snprintf(after, sizeof(after), "%lld", (long long)r.retry_after);
        http_add_header(req, "Retry-After", after);
        return err_set(err, ERR_RATE_LIMITED, "Rate limit exceeded");
    }
    return FERRY_OK;
}

/* For the data endpoints: the active sender connection whose hash the body gives.
 * 401 "Invalid connection" when none, 403 when it is not active, expired or the
 * address is not allowed, 429 over its rate limit. */
static int data_connection(struct request *req, struct store_conn *c, json_t *body, struct site *s,
                           struct err *err)
{
    bool found = false;
    const char *hash = field(body, "auth_token_hash");
    if (address_may_try(req, err) != FERRY_OK ||
        sites_find(c, hash, &(enum site_direction){SITE_SENDER}, NULL, s, &found, err) != FERRY_OK)
        return FERRY_ERR;
    if (!found) {
        count_failure(req);
        return err_set(err, ERR_UNAUTHORIZED, "Invalid connection");
    }
    return connection_usable(req, c, s, err);
}

/* Answers 200 with answer (consumed), serialised once, and counts the request and what
 * it sent on the connection. */
static void reply_sent(struct request *req, struct store_conn *c, const struct site *s,
                       int64_t records, json_t *answer)
{
    char *text = jsonutil_to_string(answer);
    json_decref(answer);
    sites_touch(c, s->id, req->client_addr, http_header(req, "User-Agent"), records,
                (int64_t)strlen(text), NULL);
    http_reply_text(req, HTTP_OK, "application/json", text, strlen(text));
    free(text);
}

/* --- connection management ---------------------------------------------------------- */

static int status(struct request *req, struct err *err)
{
    struct site_settings st = {0};
    if (sites_settings_get(req->db, &st, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:b, s:b, s:s, s:b}", "success", 1, "enabled",
                              req->app->cfg->sites_enabled, "incoming_mode",
                              sites_mode_name(st.mode), "password_required",
                              st.mode == INCOMING_REQUIRE_PASSWORD));
    sites_settings_clear(&st);
    return FERRY_OK;
}

/* The caller may register under the incoming mode: not deny_all (403), and with the
 * password when one is required (401). Counts against the caller's address. */
static int may_register(struct request *req, const struct site_settings *st, json_t *body,
                        struct err *err)
{
    if (st->mode == INCOMING_DENY_ALL)
        return err_set(err, ERR_FORBIDDEN, "Incoming connections are not allowed");
    static const char *const need[] = {"sender_url", "connection_name", "auth_token"};
    if (body_of(req, &body, err) != FERRY_OK || require(req, body, need, 3, err) != FERRY_OK)
        return FERRY_ERR;
    if (!sites_valid_url(field(body, "sender_url")))
        return err_set(err, ERR_INVALID, "sender_url must be an http or https URL");
    /* Every registration counts against the caller's address like a failed lookup: a
     * password cannot be guessed faster than --auth-fail-limit a minute, nor can one
     * address fill the list of connections waiting for approval. */
    if (address_may_try(req, err) != FERRY_OK)
        return FERRY_ERR;
    count_failure(req);
    if (st->mode != INCOMING_REQUIRE_PASSWORD)
        return FERRY_OK;
    const char *password = field(body, "password");
    if (!password)
        return err_set(err, ERR_UNAUTHORIZED, "Password required for incoming connections");
    if (!sites_password_check(st->password_hash, password))
        return err_set(err, ERR_UNAUTHORIZED, "Invalid password");
    return FERRY_OK;
}

static int register_connection(struct request *req, struct err *err)
{
    struct site_settings st = {0};
    struct site s = {0};
    struct store_conn *c = req->db;
    char hash[65];
    int rc = FERRY_ERR;
    if (enabled(req, err) != FERRY_OK || sites_settings_get(c, &st, err) != FERRY_OK ||
        may_register(req, &st, req->json, err) != FERRY_OK)
        goto out;
    const char *token = field(req->json, "auth_token");
    crypto_sha256_hex(token, strlen(token), hash);
    s.name = xasprintf("From: %s", field(req->json, "connection_name"));
    s.direction = SITE_RECEIVER;
    s.site_url = xstrdup(field(req->json, "sender_url"));
    s.token_hash = xstrdup(hash);
    /* require_approval keeps it pending until an admin approves (PhoenixKit activates
     * it at once) */
    s.status = st.mode == INCOMING_REQUIRE_APPROVAL ? SITE_PENDING : SITE_ACTIVE;
    if (sites_create(c, &s, err) != FERRY_OK)
        goto out;
    sites_touch(c, s.id, req->client_addr, http_header(req, "User-Agent"), 0, 0, NULL);
    http_reply_json(
        req, HTTP_OK,
        json_pack("{s:b, s:s, s:s, s:s}", "success", 1, "message",
                  s.status == SITE_PENDING ? "Connection registered; waiting for approval"
                                           : "Connection registered",
                  "connection_status", sites_status_name(s.status), "connection_uuid", s.id));
    rc = FERRY_OK;
out:
    sites_clear(&s);
    sites_settings_clear(&st);
    return rc;
}

/* The connection a management call names: by site URL and token hash, either
 * direction. When there is none, answers 404 with not_found's extra fields. Consumes
 * not_found. */
static int named_connection(struct request *req, json_t *body, const char *url_field,
                            struct site *s, json_t *not_found, struct err *err)
{
    bool found = false;
    int rc = FERRY_ERR;
    if (address_may_try(req, err) != FERRY_OK ||
        sites_find(req->db, field(body, "auth_token_hash"), NULL, field(body, url_field), s, &found,
                   err) != FERRY_OK)
        goto out;
    if (!found) {
        count_failure(req);
        json_object_set_new(not_found, "success", json_false());
        http_reply_json(req, http_status_of(ERR_NOT_FOUND), json_incref(not_found));
        err_set(err, ERR_NOT_FOUND, "Connection not found");
        goto out;
    }
    rc = FERRY_OK;
out:
    json_decref(not_found);
    return rc;
}

static int delete_connection(struct request *req, struct err *err)
{
    static const char *const need[] = {"sender_url", "auth_token_hash"};
    struct site s = {0};
    json_t *body;
    bool found = false;
    int rc = FERRY_ERR;
    if (action_body(req, need, 2, &body, err) != FERRY_OK ||
        named_connection(req, body, "sender_url", &s,
                         json_pack("{s:s}", "error", "Connection not found"), err) != FERRY_OK ||
        sites_delete(req->db, s.id, &found, err) != FERRY_OK)
        goto out;
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:b, s:s}", "success", 1, "message", "Connection deleted"));
    rc = FERRY_OK;
out:
    sites_clear(&s);
    return rc;
}

static int verify_connection(struct request *req, struct err *err)
{
    static const char *const need[] = {"sender_url", "auth_token_hash"};
    struct site s = {0};
    json_t *body;
    int rc = FERRY_ERR;
    if (action_body(req, need, 2, &body, err) != FERRY_OK ||
        named_connection(req, body, "sender_url", &s,
                         json_pack("{s:b, s:s}", "exists", 0, "error", "Connection not found"),
                         err) != FERRY_OK)
        goto out;
    sites_touch(req->db, s.id, req->client_addr, http_header(req, "User-Agent"), 0, 0, NULL);
    http_reply_json(req, HTTP_OK, json_pack("{s:b, s:b}", "success", 1, "exists", 1));
    rc = FERRY_OK;
out:
    sites_clear(&s);
    return rc;
}

static int update_status(struct request *req, struct err *err)
{
    static const char *const need[] = {"sender_url", "auth_token_hash", "status"};
    struct site s = {0};
    json_t *body;
    int rc = FERRY_ERR;
    if (action_body(req, need, 3, &body, err) != FERRY_OK)
        return FERRY_ERR;
    enum site_status to;
    if (sites_parse_status(field(body, "status"), &to) != FERRY_OK ||
        (to != SITE_ACTIVE && to != SITE_SUSPENDED && to != SITE_REVOKED))
        return err_set(err, ERR_INVALID, "Invalid status value");
    if (named_connection(req, body, "sender_url", &s,
                         json_pack("{s:s}", "error", "Connection not found"), err) != FERRY_OK)
        goto out;
    /* The sender mirrors its own changes here. The other side may lower a status
     * (suspend, revoke) but raise one only on a receiver this site accepted: never
     * one waiting for this site's admin, never this site's sender connection (a
     * receiver cannot lift the sender's suspension), never a revoked one. */
    bool keep = s.status == SITE_REVOKED || s.status == SITE_EXPIRED ||
                (to == SITE_ACTIVE && (s.direction != SITE_RECEIVER || !s.approved_at));
    if (!keep && sites_set_status(req->db, s.id, to, err) != FERRY_OK)
        goto out;
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:b, s:s, s:s}", "success", 1, "message", "Status updated",
                              "status", sites_status_name(keep ? s.status : to)));
    rc = FERRY_OK;
out:
    sites_clear(&s);
    return rc;
}

static int get_connection_status(struct request *req, struct err *err)
{
    static const char *const need[] = {"receiver_url", "auth_token_hash"};
    struct site s = {0};
    struct store_conn *c = req->db;
    bool found = false;
    json_t *body;
    int rc = FERRY_ERR;
    if (action_body(req, need, 2, &body, err) != FERRY_OK ||
        address_may_try(req, err) != FERRY_OK ||
        sites_find(c, field(body, "auth_token_hash"), &(enum site_direction){SITE_SENDER}, NULL, &s,
                   &found, err) != FERRY_OK)
        goto out;
    if (!found) {
        count_failure(req);
        err_set(err, ERR_NOT_FOUND, "Connection not found");
        goto out;
    }
    /* the receiver has it: a sender connection waiting for that becomes active */
    if (s.status == SITE_PENDING && sites_set_status(c, s.id, SITE_ACTIVE, NULL) == FERRY_OK)
        s.status = SITE_ACTIVE;
    sites_touch(c, s.id, req->client_addr, http_header(req, "User-Agent"), 0, 0, NULL);
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:b, s:s, s:s}", "success", 1, "status",
                              sites_status_name(s.status), "name", s.name));
    rc = FERRY_OK;
out:
    sites_clear(&s);
    return rc;
}

/* --- data endpoints ------------------------------------------------------------------- */

static int list_tables(struct request *req, struct err *err)
{
    static const char *const need[] = {"auth_token_hash"};
    struct site s = {0};
    json_t *body, *tables = NULL;
    int rc = FERRY_ERR;
    if (action_body(req, need, 1, &body, err) == FERRY_OK &&
        data_connection(req, req->db, body, &s, err) == FERRY_OK &&
        sitedata_tables(req->db, &s, &tables, err) == FERRY_OK) {
        reply_sent(req, req->db, &s, 0, json_pack("{s:b, s:O}", "success", 1, "tables", tables));
        rc = FERRY_OK;
    }
    json_decref(tables);
    sites_clear(&s);
    return rc;
}

static int table_schema(struct request *req, struct err *err)
{
    static const char *const need[] = {"auth_token_hash", "table_name"};
    struct site s = {0};
    json_t *body, *schema = NULL;
    int rc = FERRY_ERR;
    if (action_body(req, need, 2, &body, err) == FERRY_OK &&
        data_connection(req, req->db, body, &s, err) == FERRY_OK &&
        sitedata_schema(req->db, &s, field(body, "table_name"), &schema, err) == FERRY_OK) {
        reply_sent(req, req->db, &s, 0, json_pack("{s:b, s:O}", "success", 1, "schema", schema));
        rc = FERRY_OK;
    }
    json_decref(schema);
    sites_clear(&s);
    return rc;
}

/* An optional integer field within [min, max]; 400 otherwise. */
static int int_field(json_t *body, const char *name, int64_t def, int64_t min, int64_t max,
                     int64_t *out, struct err *err)
{
    json_t *v = json_object_get(body, name);
    *out = def;
    if (!v || json_is_null(v))
        return FERRY_OK;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return err_set(err, ERR_INVALID, "%s must be an integer from %lld to %lld", name,
                       (long long)min, (long long)max);
    *out = json_integer_value(v);
    return FERRY_OK;
}

/* The paging and key filters of table-records. */
static int records_query_of(json_t *body, struct records_query *q, struct err *err)
{
    json_t *limit = json_object_get(body, "limit");
    /* PhoenixKit's own server clamps a larger limit to 100 rather than refusing it */
    if (json_is_integer(limit) && json_integer_value(limit) > 100)
        q->limit = 100;
    else if (int_field(body, "limit", 10, 1, 100, &q->limit, err) != FERRY_OK)
        return FERRY_ERR;
    if (int_field(body, "offset", 0, 0, INT64_MAX / 2, &q->offset, err) != FERRY_OK)
        return FERRY_ERR;
    q->table = field(body, "table_name");
    q->ids = json_object_get(body, "ids");
    q->id_start = json_object_get(body, "id_start");
    q->id_end = json_object_get(body, "id_end");
    if (json_is_null(q->ids))
        q->ids = NULL;
    if (q->ids && !json_is_array(q->ids))
        return err_set(err, ERR_INVALID, "ids must be an array");
    if (json_is_null(q->id_start))
        q->id_start = NULL;
    if (json_is_null(q->id_end))
        q->id_end = NULL;
    return FERRY_OK;
}

static int table_records(struct request *req, struct err *err)
{
    static const char *const need[] = {"auth_token_hash", "table_name"};
    struct site s = {0};
    struct records_query q = {0};
    json_t *body, *records = NULL;
    int rc = FERRY_ERR;
    if (action_body(req, need, 2, &body, err) == FERRY_OK &&
        records_query_of(body, &q, err) == FERRY_OK &&
        data_connection(req, req->db, body, &s, err) == FERRY_OK &&
        sitedata_records(req->db, &s, &q, &records, err) == FERRY_OK) {
        reply_sent(req, req->db, &s, (int64_t)json_array_size(records),
                   json_pack("{s:b, s:O}", "success", 1, "records", records));
        rc = FERRY_OK;
    }
    json_decref(records);
    sites_clear(&s);
    return rc;
}

/* The rows of upserted keys in a feed page, keyed by their key's text. */
static int changed_rows(struct store_conn *c, const struct site *s, const char *table,
                        json_t *changes, json_t **by_key, struct err *err)
{
    struct records_query q = {table, 100, 0, json_array(), NULL, NULL};
    size_t i;
    json_t *ch, *rows = NULL;
    int rc = FERRY_OK;
    *by_key = json_object();
    json_array_foreach(changes, i, ch)
    {
        if (!json_is_true(json_object_get(ch, "deleted")))
            json_array_append(q.ids, json_object_get(ch, "id"));
    }
    if (json_array_size(q.ids))
        rc = sitedata_records(c, s, &q, &rows, err);
    struct store_table *t = NULL;
    if (rc == FERRY_OK && rows && (rc = store_table_info(c, table, &t, err)) == FERRY_OK) {
        const char *pk = NULL;
        for (size_t k = 0; k < t->n_cols; k++)
            if (t->cols[k].primary_key)
                pk = t->cols[k].name;
        json_t *row;
        json_array_foreach(rows, i, row)
        {
            char *key = json_dumps(json_object_get(row, pk), JSON_ENCODE_ANY);
            json_object_set(*by_key, key, row);
            free(key);
        }
    }
    store_table_free(t);
    json_decref(rows);
    json_decref(q.ids);
    return rc;
}

/* The answer to a pull "since" a cursor, from a feed page and the rows it names. */
static json_t *changes_answer(const char *table, const struct feed_page *page, json_t *by_key)
{
    json_t *changes = json_array(), *ch;
    size_t i;
    json_array_foreach(page->changes, i, ch)
    {
        bool gone = json_is_true(json_object_get(ch, "deleted"));
        char *key = json_dumps(json_object_get(ch, "id"), JSON_ENCODE_ANY);
        json_t *row = gone ? NULL : json_object_get(by_key, key);
        free(key);
        /* a row deleted after the feed page was read is a deletion too */
        json_array_append_new(
            changes, json_pack("{s:s, s:O, s:O}", "op", gone || !row ? "delete" : "upsert", "id",
                               json_object_get(ch, "id"), "data", row ? row : json_null()));
    }
    return json_pack("{s:b, s:s, s:o, s:I, s:I, s:b}", "success", 1, "table", table, "changes",
                     changes, "count", (json_int_t)json_array_size(changes), "next_since",
                     (json_int_t)page->next_cursor, "has_more", page->has_more);
}

/* ferry's extension for senders that are ferry: the rows of a change-tracked (synced)
 * table changed since a cursor, from the change feed; deletions come as keys. */
static int pull_changes(struct request *req, const struct site *s, const char *table, json_t *since,
                        int64_t limit, struct err *err)
{
    struct feed_page page = {0};
    json_t *by_key = NULL;
    const struct synced_table *st = tables_find(&req->app->synced, table);
    if (!json_is_integer(since) || json_integer_value(since) < 0)
        return err_set(err, ERR_INVALID,
                       "since must be a cursor (an integer from an earlier answer)");
    if (!sitedata_visible(s, table))
        return err_set(err, ERR_NOT_FOUND, "Table not found");
    if (!st || st->builtin)
        return err_set(err, ERR_INVALID, "the table's changes are not tracked here; pull it whole");
    /* A connection keeps its own table scope: no sync rule narrows it (caller NULL). */
    struct feed_query q = {.tables = &st,
                           .n_tables = 1,
                           .cursor = json_integer_value(since),
                           .limit = (int)(limit < 100 ? limit : 100)};
    int rc = feed_read(req->db, &q, &page, err); /* in its own read snapshot */
    if (rc == FERRY_OK)
        rc = changed_rows(req->db, s, table, page.changes, &by_key, err);
    if (rc == FERRY_OK) {
        json_t *answer = changes_answer(table, &page, by_key);
        reply_sent(req, req->db, s, (int64_t)json_integer_value(json_object_get(answer, "count")),
                   answer);
    }
    json_decref(by_key);
    json_decref(page.changes);
    return rc;
}

/* A whole-table pull, a page of rows at a time in primary-key order. */
static int pull_rows(struct request *req, const struct site *s, const char *table, int64_t limit,
                     json_t *after, struct err *err)
{
    json_t *rows = NULL, *next = NULL;
    int64_t cursor = -1;
    int rc = FERRY_ERR;
    /* a full pull of a change-tracked table starts with the feed's head, read before the
     * rows: a later pull "since" it misses nothing */
    const struct synced_table *st = tables_find(&req->app->synced, table);
    if (st && !st->builtin && (!after || json_is_null(after)) &&
        feed_head(req->db, &cursor, err) != FERRY_OK)
        goto out;
    if (sitedata_pull(req->db, s, table, limit, after, &rows, &next, err) != FERRY_OK)
        goto out;
    json_t *answer =
        json_pack("{s:b, s:s, s:O, s:I, s:O}", "success", 1, "table", table, "data", rows, "count",
                  (json_int_t)json_array_size(rows), "next_after", next);
    if (cursor >= 0)
        json_object_set_new(answer, "cursor", json_integer(cursor));
    reply_sent(req, req->db, s, (int64_t)json_array_size(rows), answer);
    rc = FERRY_OK;
out:
    json_decref(rows);
    json_decref(next);
    return rc;
}

static int pull_data(struct request *req, struct err *err)
{
    static const char *const need[] = {"auth_token_hash", "table_name"};
    struct site s = {0};
    json_t *body;
    int64_t limit = 0;
    int rc = FERRY_ERR;
    if (action_body(req, need, 2, &body, err) != FERRY_OK)
        return FERRY_ERR;
    const char *strategy = field(body, "conflict_strategy");
    if (strategy && !sites_valid_strategy(strategy))
        return err_set(err, ERR_INVALID,
                       "conflict_strategy must be skip, overwrite, merge or append");
    if (data_connection(req, req->db, body, &s, err) != FERRY_OK ||
        int_field(body, "limit", s.max_records, 1, s.max_records, &limit, err) != FERRY_OK)
        goto out;
    const char *table = field(body, "table_name");
    json_t *since = json_object_get(body, "since");
    if (since && !json_is_null(since))
        rc = pull_changes(req, &s, table, since, limit, err);
    else
        rc = pull_rows(req, &s, table, limit, json_object_get(body, "after"), err);
out:
    sites_clear(&s);
    return rc;
}

/* --- routes ------------------------------------------------------------------------- */

static const struct {
    unsigned method;
    const char *action;
    handler_fn handler;
} actions[] = {
    {M_GET, "status", status},
    {M_POST, "register-connection", register_connection},
    {M_POST, "delete-connection", delete_connection},
    {M_POST, "verify-connection", verify_connection},
    {M_POST, "update-status", update_status},
    {M_POST, "get-connection-status", get_connection_status},
    {M_POST, "list-tables", list_tables},
    {M_POST, "table-schema", table_schema},
    {M_POST, "table-records", table_records},
    {M_POST, "pull-data", pull_data},
};

_Static_assert(sizeof(actions) / sizeof(actions[0]) == PHOENIX_N_ACTIONS,
               "PHOENIX_N_ACTIONS counts the actions");

struct phoenix *phoenix_new(const char *prefix)
{
    struct phoenix *px = xcalloc(1, sizeof(*px));
    for (size_t i = 0; i < PHOENIX_N_ACTIONS; i++) {
        px->patterns[i] = xasprintf("%s/sync/api/%s", prefix, actions[i].action);
        /* status answers even when the module is off; every POST action is refused
         * before its body is read */
        unsigned flags = ROUTE_PUBLIC | ROUTE_JSON | ROUTE_SMALL_BODY | ROUTE_STORE;
        if (actions[i].method == M_POST)
            flags |= ROUTE_SITES;
        px->routes[i] = (struct route){
            actions[i].method, px->patterns[i], actions[i].handler, 0, SURFACE_LEGACY, flags, NULL};
    }
    px->table = (struct route_table){px->routes, PHOENIX_N_ACTIONS};
    px->limiters = ratelimit_set_new(60);
    return px;
}

const struct route_table *phoenix_routes(const struct phoenix *px)
{
    return &px->table;
}

void phoenix_free(struct phoenix *px)
{
    if (!px)
        return;
    for (size_t i = 0; i < PHOENIX_N_ACTIONS; i++)
        free(px->patterns[i]);
    ratelimit_set_free(px->limiters);
    free(px);
}
