/* phoenix.c - PhoenixKit's site-to-site API at {prefix}/sync/api/... (seeds 000/001 and
 * shared/seeds/PHOENIXKIT-NOTES.md), so that a PhoenixKit site and a ferry can connect
 * and pull each other's tables. Bodies, errors ({"success":false,"error":...}) and the
 * order of the checks are PhoenixKit's; where PhoenixKit is weak, ferry is strict:
 * - a connection waiting for approval stays pending (PhoenixKit activates it);
 * - allowed and excluded tables apply on every data path;
 * - connection tokens are compared in constant time, failed lookups count against the
 *   caller's address, each connection has its own rate limit, IP allowlist and expiry;
 * - pull-data pages in primary-key order (limit, after -> next_after). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/phoenix.h"
#include "app.h"
#include "sync/feed.h"
#include "sites/sitedata.h"
#include "sites/sites.h"
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

#define MAX_FIELD 4096

/* --- replies ------------------------------------------------------------------------ */

static void fail(struct request *req, int status, const char *error)
{
    http_reply_json(req, status, json_pack("{s:b, s:s}", "success", 0, "error", error));
}

static void fail_err(struct request *req, const struct err *err)
{
    fail(req, http_status_of(err->code), err->msg);
}

/* The module is off: every action answers 503, as PhoenixKit does. */
static bool enabled(struct request *req)
{
    if (req->app->cfg->sites_enabled)
        return true;
    fail(req, 503, "DB Sync module is disabled");
    return false;
}

/* A field is missing when absent, null or "" (PhoenixKit's rule). */
static const char *field(json_t *body, const char *name)
{
    const char *v = json_string_value(json_object_get(body, name));
    return v && *v && strlen(v) <= MAX_FIELD ? v : NULL;
}

/* Replies 400 listing the missing fields; true when all are there. */
static bool require(struct request *req, json_t *body, const char *const *names, size_t n)
{
    json_t *missing = json_array();
    for (size_t i = 0; i < n; i++)
        if (!field(body, names[i]))
            json_array_append_new(missing, json_string(names[i]));
    if (json_array_size(missing) == 0) {
        json_decref(missing);
        return true;
    }
    http_reply_json(req, 400,
                    json_pack("{s:b, s:s, s:o}", "success", 0, "error", "Missing required fields",
                              "fields", missing));
    return false;
}

static json_t *body_of(struct request *req);

/* The start of every POST action: the module is on (503), the body is an object (400),
 * and it has the required fields (400). Returns the body, or NULL after replying. */
static json_t *action_body(struct request *req, const char *const *need, size_t n)
{
    json_t *body;
    if (!enabled(req) || !(body = body_of(req)) || !require(req, body, need, n))
        return NULL;
    return body;
}

static json_t *body_of(struct request *req)
{
    if (json_is_object(req->json))
        return req->json;
    fail(req, 400, req->json ? "The body must be a JSON object" : "Missing required fields");
    return NULL;
}

/* --- rate limits per connection ------------------------------------------------------- */

/* One limiter per distinct limit, keyed by connection id: a connection's limit can be
 * changed at any time, and then moves it to another limiter. */
struct limiter {
    int64_t limit;
    struct ratelimit *rl;
    struct limiter *next;
};
static struct limiter *limiters;
static pthread_mutex_t limiters_lock = PTHREAD_MUTEX_INITIALIZER;

static struct ratelimit *limiter_for(int64_t limit)
{
    pthread_mutex_lock(&limiters_lock);
    struct limiter *l = limiters;
    while (l && l->limit != limit)
        l = l->next;
    if (!l) {
        l = xcalloc(1, sizeof(*l));
        l->limit = limit;
        l->rl = ratelimit_new(limit, 60);
        l->next = limiters;
        limiters = l;
    }
    pthread_mutex_unlock(&limiters_lock);
    return l->rl;
}

static void phoenix_cleanup(void)
{
    pthread_mutex_lock(&limiters_lock);
    while (limiters) {
        struct limiter *next = limiters->next;
        ratelimit_free(limiters->rl);
        free(limiters);
        limiters = next;
    }
    pthread_mutex_unlock(&limiters_lock);
}

/* --- finding the caller's connection ------------------------------------------------ */

/* A lookup by token hash that found nothing counts as a failed authentication of the
 * caller's address (ferry's limiter for bearer tokens); an address over the limit is
 * refused before any lookup. */
static bool address_may_try(struct request *req)
{
    if (!ratelimit_exhausted(req->app->auth_fail, req->client_addr, time_mono_us()))
        return true;
    http_add_header(req, "Retry-After", "60");
    fail(req, 429, "Too many failed attempts");
    return false;
}

static void count_failure(struct request *req)
{
    ratelimit_take(req->app->auth_fail, req->client_addr, time_mono_us());
}

/* For the data endpoints: the active sender connection whose hash the body gives.
 * 401 "Invalid connection" when none, 403 when it is not active, expired or the
 * address is not allowed, 429 over its rate limit. */
static bool data_connection(struct request *req, struct store_conn *c, json_t *body, struct site *s)
{
    struct err err = {0};
    bool found = false;
    const char *hash = field(body, "auth_token_hash");
    if (!address_may_try(req))
        return false;
    if (sites_find(c, hash, &(enum site_direction){SITE_SENDER}, NULL, s, &found, &err) !=
        FERRY_OK) {
        fail_err(req, &err);
        return false;
    }
    if (!found) {
        count_failure(req);
        fail(req, 401, "Invalid connection");
        return false;
    }
    if (s->expires_at && s->expires_at <= time_now_ms() && s->status == SITE_ACTIVE) {
        sites_set_status(c, s->id, SITE_EXPIRED, NULL);
        s->status = SITE_EXPIRED;
    }
    if (s->status != SITE_ACTIVE) {
        fail(req, 403, "Connection is not active");
        return false;
    }
    if (!sites_ip_allowed(s, req->client_addr)) {
        fail(req, 403, "Address not allowed for this connection");
        return false;
    }
    struct rl_result r = ratelimit_take(limiter_for(s->rate_limit), s->id, time_mono_us());
    if (!r.allowed) {
        char after[24];
        snprintf(after, sizeof(after), "%lld", (long long)r.retry_after);
        http_add_header(req, "Retry-After", after);
        fail(req, 429, "Rate limit exceeded");
        return false;
    }
    return true;
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
    http_reply_text(req, 200, "application/json", text, strlen(text));
    free(text);
}

/* --- connection management ---------------------------------------------------------- */

static int status(struct request *req, struct err *err)
{
    struct site_settings st = {0};
    struct store_conn *c = req->db;
    if (sites_settings_get(c, &st, err) != FERRY_OK)
        fail_err(req, err);
    else
        http_reply_json(req, 200,
                        json_pack("{s:b, s:b, s:s, s:b}", "success", 1, "enabled",
                                  req->app->cfg->sites_enabled, "incoming_mode",
                                  sites_mode_name(st.mode), "password_required",
                                  st.mode == INCOMING_REQUIRE_PASSWORD));
    sites_settings_clear(&st);
    return FERRY_OK;
}

static int register_connection(struct request *req, struct err *err)
{
    static const char *const need[] = {"sender_url", "connection_name", "auth_token"};
    struct site_settings st = {0};
    struct site s = {0};
    json_t *body;
    if (!enabled(req))
        return FERRY_OK;
    struct store_conn *c = req->db;
    if (sites_settings_get(c, &st, err) != FERRY_OK) {
        fail_err(req, err);
        goto out;
    }
    if (st.mode == INCOMING_DENY_ALL) {
        fail(req, 403, "Incoming connections are not allowed");
        goto out;
    }
    if (!(body = body_of(req)) || !require(req, body, need, 3))
        goto out;
    if (!sites_valid_url(field(body, "sender_url"))) {
        fail(req, 400, "sender_url must be an http or https URL");
        goto out;
    }
    /* Every registration counts against the caller's address like a failed lookup: a
     * password cannot be guessed faster than --auth-fail-limit a minute, nor can one
     * address fill the list of connections waiting for approval. */
    if (!address_may_try(req))
        goto out;
    count_failure(req);
    if (st.mode == INCOMING_REQUIRE_PASSWORD) {
        const char *password = field(body, "password");
        if (!password) {
            fail(req, 401, "Password required for incoming connections");
            goto out;
        }
        if (!sites_password_check(st.password_hash, password)) {
            fail(req, 401, "Invalid password");
            goto out;
        }
    }
    char hash[65];
    const char *token = field(body, "auth_token");
    crypto_sha256_hex(token, strlen(token), hash);
    s.name = xasprintf("From: %s", field(body, "connection_name"));
    s.direction = SITE_RECEIVER;
    s.site_url = xstrdup(field(body, "sender_url"));
    s.token_hash = xstrdup(hash);
    /* require_approval keeps it pending until an admin approves (PhoenixKit activates
     * it at once) */
    s.status = st.mode == INCOMING_REQUIRE_APPROVAL ? SITE_PENDING : SITE_ACTIVE;
    if (sites_create(c, &s, err) != FERRY_OK) {
        fail_err(req, err);
        goto out;
    }
    sites_touch(c, s.id, req->client_addr, http_header(req, "User-Agent"), 0, 0, NULL);
    http_reply_json(
        req, 200,
        json_pack("{s:b, s:s, s:s, s:s}", "success", 1, "message",
                  s.status == SITE_PENDING ? "Connection registered; waiting for approval"
                                           : "Connection registered",
                  "connection_status", sites_status_name(s.status), "connection_uuid", s.id));
out:
    sites_clear(&s);
    sites_settings_clear(&st);
    return FERRY_OK;
}

/* The connection a management call names: by site URL and token hash, either
 * direction. Replies 404 (with extra fields) when there is none. */
static bool named_connection(struct request *req, struct store_conn *c, json_t *body,
                             const char *url_field, struct site *s, json_t *not_found)
{
    struct err err = {0};
    bool found = false;
    if (!address_may_try(req)) {
        json_decref(not_found);
        return false;
    }
    if (sites_find(c, field(body, "auth_token_hash"), NULL, field(body, url_field), s, &found,
                   &err) != FERRY_OK) {
        json_decref(not_found);
        fail_err(req, &err);
        return false;
    }
    if (!found) {
        count_failure(req);
        json_object_set_new(not_found, "success", json_false());
        http_reply_json(req, 404, not_found);
        return false;
    }
    json_decref(not_found);
    return true;
}

static int delete_connection(struct request *req, struct err *err)
{
    static const char *const need[] = {"sender_url", "auth_token_hash"};
    struct site s = {0};
    json_t *body;
    bool found = false;
    if (!(body = action_body(req, need, 2)))
        return FERRY_OK;
    struct store_conn *c = req->db;
    if (named_connection(req, c, body, "sender_url", &s,
                         json_pack("{s:s}", "error", "Connection not found"))) {
        if (sites_delete(c, s.id, &found, err) != FERRY_OK)
            fail_err(req, err);
        else
            http_reply_json(req, 200,
                            json_pack("{s:b, s:s}", "success", 1, "message", "Connection deleted"));
    }
    sites_clear(&s);
    return FERRY_OK;
}

static int verify_connection(struct request *req, struct err *err)
{
    (void)err;
    static const char *const need[] = {"sender_url", "auth_token_hash"};
    struct site s = {0};
    json_t *body;
    if (!(body = action_body(req, need, 2)))
        return FERRY_OK;
    struct store_conn *c = req->db;
    if (named_connection(req, c, body, "sender_url", &s,
                         json_pack("{s:b, s:s}", "exists", 0, "error", "Connection not found"))) {
        sites_touch(c, s.id, req->client_addr, http_header(req, "User-Agent"), 0, 0, NULL);
        http_reply_json(req, 200, json_pack("{s:b, s:b}", "success", 1, "exists", 1));
    }
    sites_clear(&s);
    return FERRY_OK;
}

static int update_status(struct request *req, struct err *err)
{
    static const char *const need[] = {"sender_url", "auth_token_hash", "status"};
    struct site s = {0};
    json_t *body;
    if (!(body = action_body(req, need, 3)))
        return FERRY_OK;
    enum site_status to;
    if (sites_parse_status(field(body, "status"), &to) != FERRY_OK ||
        (to != SITE_ACTIVE && to != SITE_SUSPENDED && to != SITE_REVOKED)) {
        fail(req, 400, "Invalid status value");
        return FERRY_OK;
    }
    struct store_conn *c = req->db;
    if (named_connection(req, c, body, "sender_url", &s,
                         json_pack("{s:s}", "error", "Connection not found"))) {
        /* The sender mirrors its own changes here. The other side may lower a status
         * (suspend, revoke) but raise one only on a receiver this site accepted: never
         * one waiting for this site's admin, never this site's sender connection (a
         * receiver cannot lift the sender's suspension), never a revoked one. */
        bool keep = s.status == SITE_REVOKED || s.status == SITE_EXPIRED ||
                    (to == SITE_ACTIVE && (s.direction != SITE_RECEIVER || !s.approved_at));
        if (!keep && sites_set_status(c, s.id, to, err) != FERRY_OK)
            fail_err(req, err);
        else
            http_reply_json(req, 200,
                            json_pack("{s:b, s:s, s:s}", "success", 1, "message", "Status updated",
                                      "status", sites_status_name(keep ? s.status : to)));
    }
    sites_clear(&s);
    return FERRY_OK;
}

static int get_connection_status(struct request *req, struct err *err)
{
    static const char *const need[] = {"receiver_url", "auth_token_hash"};
    struct site s = {0};
    bool found = false;
    json_t *body;
    if (!(body = action_body(req, need, 2)))
        return FERRY_OK;
    struct store_conn *c = req->db;
    if (!address_may_try(req))
        goto out;
    if (sites_find(c, field(body, "auth_token_hash"), &(enum site_direction){SITE_SENDER}, NULL, &s,
                   &found, err) != FERRY_OK) {
        fail_err(req, err);
    } else if (!found) {
        count_failure(req);
        fail(req, 404, "Connection not found");
    } else {
        /* the receiver has it: a sender connection waiting for that becomes active */
        if (s.status == SITE_PENDING && sites_set_status(c, s.id, SITE_ACTIVE, NULL) == FERRY_OK)
            s.status = SITE_ACTIVE;
        sites_touch(c, s.id, req->client_addr, http_header(req, "User-Agent"), 0, 0, NULL);
        http_reply_json(req, 200,
                        json_pack("{s:b, s:s, s:s}", "success", 1, "status",
                                  sites_status_name(s.status), "name", s.name));
    }
out:
    sites_clear(&s);
    return FERRY_OK;
}

/* --- data endpoints ------------------------------------------------------------------- */

static int list_tables(struct request *req, struct err *err)
{
    static const char *const need[] = {"auth_token_hash"};
    struct site s = {0};
    json_t *body, *tables = NULL;
    if (!(body = action_body(req, need, 1)))
        return FERRY_OK;
    struct store_conn *c = req->db;
    if (data_connection(req, c, body, &s)) {
        if (sitedata_tables(c, &s, &tables, err) != FERRY_OK) {
            fail_err(req, err);
        } else {
            reply_sent(req, c, &s, 0, json_pack("{s:b, s:O}", "success", 1, "tables", tables));
        }
    }
    json_decref(tables);
    sites_clear(&s);
    return FERRY_OK;
}

static int table_schema(struct request *req, struct err *err)
{
    static const char *const need[] = {"auth_token_hash", "table_name"};
    struct site s = {0};
    json_t *body, *schema = NULL;
    if (!(body = action_body(req, need, 2)))
        return FERRY_OK;
    struct store_conn *c = req->db;
    if (data_connection(req, c, body, &s)) {
        if (sitedata_schema(c, &s, field(body, "table_name"), &schema, err) != FERRY_OK) {
            fail_err(req, err);
        } else {
            reply_sent(req, c, &s, 0, json_pack("{s:b, s:O}", "success", 1, "schema", schema));
        }
    }
    json_decref(schema);
    sites_clear(&s);
    return FERRY_OK;
}

/* An optional integer field within [min, max]; 400 otherwise. */
static bool int_field(struct request *req, json_t *body, const char *name, int64_t def, int64_t min,
                      int64_t max, int64_t *out)
{
    json_t *v = json_object_get(body, name);
    *out = def;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        char *msg = xasprintf("%s must be an integer from %lld to %lld", name, (long long)min,
                              (long long)max);
        fail(req, 400, msg);
        free(msg);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

static int table_records(struct request *req, struct err *err)
{
    static const char *const need[] = {"auth_token_hash", "table_name"};
    struct site s = {0};
    struct records_query q = {0};
    json_t *body, *records = NULL;
    if (!(body = action_body(req, need, 2)))
        return FERRY_OK;
    if (!int_field(req, body, "limit", 10, 1, 100, &q.limit) ||
        !int_field(req, body, "offset", 0, 0, INT64_MAX / 2, &q.offset))
        return FERRY_OK;
    q.table = field(body, "table_name");
    q.ids = json_object_get(body, "ids");
    q.id_start = json_object_get(body, "id_start");
    q.id_end = json_object_get(body, "id_end");
    if (json_is_null(q.ids))
        q.ids = NULL;
    if (q.ids && !json_is_array(q.ids)) {
        fail(req, 400, "ids must be an array");
        return FERRY_OK;
    }
    if (json_is_null(q.id_start))
        q.id_start = NULL;
    if (json_is_null(q.id_end))
        q.id_end = NULL;
    struct store_conn *c = req->db;
    if (data_connection(req, c, body, &s)) {
        if (sitedata_records(c, &s, &q, &records, err) != FERRY_OK) {
            fail_err(req, err);
        } else {
            reply_sent(req, c, &s, (int64_t)json_array_size(records),
                       json_pack("{s:b, s:O}", "success", 1, "records", records));
        }
    }
    json_decref(records);
    sites_clear(&s);
    return FERRY_OK;
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

/* ferry's extension for senders that are ferry: the rows of a change-tracked (synced)
 * table changed since a cursor, from the change feed; deletions come as keys. */
static void pull_changes(struct request *req, struct store_conn *c, const struct site *s,
                         const char *table, json_t *since, int64_t limit)
{
    struct err err = {0};
    struct feed_page page = {0};
    json_t *by_key = NULL;
    const struct synced_table *st = tables_find(&req->app->synced, table);
    if (!json_is_integer(since) || json_integer_value(since) < 0) {
        fail(req, 400, "since must be a cursor (an integer from an earlier answer)");
        return;
    }
    if (!sitedata_visible(s, table)) {
        fail(req, 404, "Table not found");
        return;
    }
    if (!st || st->builtin) {
        fail(req, 400, "the table's changes are not tracked here; pull it whole");
        return;
    }
    struct feed_query q = {&st, 1, json_integer_value(since), (int)(limit < 100 ? limit : 100),
                           NULL};
    int rc = feed_read(c, &q, &page, &err); /* in its own read snapshot */
    if (rc == FERRY_OK)
        rc = changed_rows(c, s, table, page.changes, &by_key, &err);
    if (rc != FERRY_OK) {
        fail(req, err.code == ERR_GONE ? 410 : http_status_of(err.code), err.msg);
        json_decref(page.changes);
        json_decref(by_key);
        return;
    }
    json_t *changes = json_array(), *ch;
    size_t i;
    json_array_foreach(page.changes, i, ch)
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
    json_t *answer =
        json_pack("{s:b, s:s, s:o, s:I, s:I, s:b}", "success", 1, "table", table, "changes",
                  changes, "count", (json_int_t)json_array_size(changes), "next_since",
                  (json_int_t)page.next_cursor, "has_more", page.has_more);
    reply_sent(req, c, s, (int64_t)json_array_size(changes), answer);
    json_decref(by_key);
    json_decref(page.changes);
}

static int pull_data(struct request *req, struct err *err)
{
    static const char *const need[] = {"auth_token_hash", "table_name"};
    struct site s = {0};
    json_t *body, *rows = NULL, *next = NULL;
    int64_t limit = 0, cursor = -1;
    if (!(body = action_body(req, need, 2)))
        return FERRY_OK;
    const char *strategy = field(body, "conflict_strategy");
    if (strategy && !sites_valid_strategy(strategy)) {
        fail(req, 400, "conflict_strategy must be skip, overwrite, merge or append");
        return FERRY_OK;
    }
    struct store_conn *c = req->db;
    if (!data_connection(req, c, body, &s) ||
        !int_field(req, body, "limit", s.max_records, 1, s.max_records, &limit))
        goto out;
    const char *table = field(body, "table_name");
    json_t *since = json_object_get(body, "since"), *after = json_object_get(body, "after");
    if (since && !json_is_null(since)) {
        pull_changes(req, c, &s, table, since, limit);
        goto out;
    }
    /* a full pull of a change-tracked table starts with the feed's head, read before the
     * rows: a later pull "since" it misses nothing */
    const struct synced_table *st = tables_find(&req->app->synced, table);
    if (st && !st->builtin && (!after || json_is_null(after)) &&
        feed_head(c, &cursor, err) != FERRY_OK) {
        fail_err(req, err);
        goto out;
    }
    if (sitedata_pull(c, &s, table, limit, after, &rows, &next, err) != FERRY_OK) {
        fail_err(req, err);
        goto out;
    }
    json_t *answer =
        json_pack("{s:b, s:s, s:O, s:I, s:O}", "success", 1, "table", table, "data", rows, "count",
                  (json_int_t)json_array_size(rows), "next_after", next);
    if (cursor >= 0)
        json_object_set_new(answer, "cursor", json_integer(cursor));
    reply_sent(req, c, &s, (int64_t)json_array_size(rows), answer);
out:
    json_decref(rows);
    json_decref(next);
    sites_clear(&s);
    return FERRY_OK;
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

#define N_ACTIONS (sizeof(actions) / sizeof(actions[0]))

static struct route routes[N_ACTIONS];
static char *patterns[N_ACTIONS];
static struct route_table table = {routes, N_ACTIONS};

const struct route_table *phoenix_routes(const char *prefix)
{
    for (size_t i = 0; i < N_ACTIONS; i++) {
        free(patterns[i]);
        patterns[i] = xasprintf("%s/sync/api/%s", prefix, actions[i].action);
        /* status answers even when the module is off; every POST action is refused
         * before its body is read */
        unsigned flags = ROUTE_PUBLIC | ROUTE_JSON | ROUTE_SMALL_BODY | ROUTE_STORE;
        if (actions[i].method == M_POST)
            flags |= ROUTE_SITES;
        routes[i] = (struct route){
            actions[i].method, patterns[i], actions[i].handler, 0, SURFACE_LEGACY, flags, NULL};
    }
    return &table;
}

void phoenix_routes_free(void)
{
    for (size_t i = 0; i < N_ACTIONS; i++) {
        free(patterns[i]);
        patterns[i] = NULL;
    }
    phoenix_cleanup();
}
