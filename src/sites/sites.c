/* sites.c - see sites.h. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "sync/rowjson.h"
#include "sites/sites.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/crypto.h"
#include "util/timeutil.h"
#include "webhooks/webhooks.h"

#define SITE_COLS                                                                                  \
    "id, name, direction, site_url, token_hash, status, allowed_tables, excluded_tables,"          \
    " ip_allowlist, default_strategy, expires_at, max_records, rate_limit, records_sent,"          \
    " bytes_sent, requests, last_connected_at, last_transfer_at, reachable, failures,"             \
    " next_check_at, created_at, updated_at, approved_at"

/* scrypt's cost: 2^15 * 8 * 128 bytes = 32 MiB and some tens of milliseconds per check,
 * OWASP's recommended minimum for scrypt. */
#define SCRYPT_LOG_N 15
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_MAXMEM (64u * 1024 * 1024)

static char *dup_col(const struct store_rows *rows, int col)
{
    return store_rows_isnull(rows, col) ? NULL : xstrdup(store_rows_text(rows, col));
}

static int64_t int_col(const struct store_rows *rows, int col)
{
    return store_rows_isnull(rows, col) ? 0 : store_rows_int(rows, col);
}

void sites_clear(struct site *s)
{
    free(s->name);
    free(s->site_url);
    free(s->token_hash);
    free(s->allowed_tables);
    free(s->excluded_tables);
    free(s->ip_allowlist);
    memset(s, 0, sizeof(*s));
}

static void read_site(const struct store_rows *rows, struct site *s)
{
    sites_clear(s);
    snprintf(s->id, sizeof(s->id), "%s", store_rows_text(rows, 0));
    s->name = dup_col(rows, 1);
    /* a value another program wrote that ferry does not know counts as the safest */
    if (sites_parse_direction(store_rows_text(rows, 2), &s->direction) != FERRY_OK)
        s->direction = SITE_SENDER;
    s->site_url = dup_col(rows, 3);
    s->token_hash = dup_col(rows, 4);
    if (sites_parse_status(store_rows_text(rows, 5), &s->status) != FERRY_OK)
        s->status = SITE_SUSPENDED;
    s->allowed_tables = dup_col(rows, 6);
    s->excluded_tables = dup_col(rows, 7);
    s->ip_allowlist = dup_col(rows, 8);
    if (sites_parse_strategy(store_rows_text(rows, 9), &s->default_strategy) != FERRY_OK)
        s->default_strategy = STRATEGY_SKIP; /* the column's default */
    s->expires_at = int_col(rows, 10);
    s->max_records = int_col(rows, 11);
    s->rate_limit = int_col(rows, 12);
    s->records_sent = int_col(rows, 13);
    s->bytes_sent = int_col(rows, 14);
    s->requests = int_col(rows, 15);
    s->last_connected_at = int_col(rows, 16);
    s->last_transfer_at = int_col(rows, 17);
    s->reachable = int_col(rows, 18) != 0;
    s->failures = int_col(rows, 19);
    s->next_check_at = int_col(rows, 20);
    s->created_at = int_col(rows, 21);
    s->updated_at = int_col(rows, 22);
    s->approved_at = int_col(rows, 23);
}

static void new_uuid(char out[40])
{
    unsigned char b[16];
    crypto_random(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

int sites_create(struct store_conn *c, struct site *s, struct err *err)
{
    char lookup[65];
    struct err inner = {0};
    int64_t now = time_now_ms();
    new_uuid(s->id);
    crypto_sha256_hex(s->token_hash, strlen(s->token_hash), lookup);
    s->created_at = s->updated_at = now;
    struct store_val v[] = {
        sv_text(s->id),
        sv_text(s->name),
        sv_text(sites_direction_name(s->direction)),
        sv_text(s->site_url),
        sv_text(s->token_hash),
        sv_text(lookup),
        sv_text(sites_status_name(s->status)),
        sv_text(s->allowed_tables),
        sv_text(s->excluded_tables),
        s->expires_at ? sv_int(s->expires_at) : sv_null(),
        sv_int(now),
        sv_text(sites_strategy_name(s->default_strategy)),
    };
    if (webhooks_change(c,
                        "INSERT INTO ferry_sites(id, name, direction, site_url, token_hash, lookup,"
                        " status, allowed_tables, excluded_tables, expires_at, created_at,"
                        " updated_at, default_strategy, approved_at)"
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12,"
                        " CASE WHEN CAST($7 AS TEXT) = 'active' THEN CAST($11 AS BIGINT) END)",
                        v, 12, NULL, WEBHOOK_SITE_CONNECTION_CHANGED,
                        json_pack("{s:s, s:s, s:s, s:s}", "connectionId", s->id, "status",
                                  sites_status_name(s->status), "direction",
                                  sites_direction_name(s->direction), "siteUrl", s->site_url),
                        &inner) == FERRY_OK)
        return FERRY_OK;
    if (inner.code == ERR_CONFLICT)
        return err_set(err, ERR_CONFLICT, "Connection already exists for this site");
    *err = inner;
    return FERRY_ERR;
}

int sites_find(struct store_conn *c, const char *hash, const enum site_direction *direction,
               const char *url, struct site *s, bool *found, struct err *err)
{
    char lookup[65];
    struct store_rows *rows = NULL;
    int step;
    *found = false;
    crypto_sha256_hex(hash, strlen(hash), lookup);
    struct store_val v[] = {sv_text(lookup),
                            sv_text(direction ? sites_direction_name(*direction) : NULL),
                            sv_text(url)};
    int rc = store_query(c,
                         "SELECT " SITE_COLS " FROM ferry_sites WHERE lookup = $1"
                         " AND (CAST($2 AS TEXT) IS NULL OR direction = CAST($2 AS TEXT))"
                         " AND (CAST($3 AS TEXT) IS NULL OR site_url = CAST($3 AS TEXT))"
                         " ORDER BY created_at",
                         v, 3, &rows, err);
    while (rc == FERRY_OK && !*found && (step = store_rows_next(rows, err)) == 1) {
        /* the index found it by the hash of the hash; the hash itself is compared in
         * constant time as well */
        if (crypto_equal(store_rows_text(rows, 4), hash)) {
            read_site(rows, s);
            *found = true;
        }
    }
    if (rc == FERRY_OK && !*found && step < 0)
        rc = FERRY_ERR;
    store_rows_free(rows);
    return rc;
}

int sites_get(struct store_conn *c, const char *id, struct site *s, bool *found, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    int step = -1;
    *found = false;
    if (store_query(c, "SELECT " SITE_COLS " FROM ferry_sites WHERE id = $1", &v, 1, &rows, err) ==
            FERRY_OK &&
        (step = store_rows_next(rows, err)) == 1) {
        read_site(rows, s);
        *found = true;
    }
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

static json_t *list_or_empty(const char *list)
{
    json_t *arr = json_array();
    char *copy = xstrdup(list ? list : ""), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(arr, json_string(t));
    free(copy);
    return arr;
}

static json_t *time_or_null(int64_t ms)
{
    char iso[32];
    if (!ms)
        return json_null();
    time_iso8601(ms, 0, iso);
    return json_string(iso);
}

json_t *sites_json(const struct site *s)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:I, s:o, s:s}", "id",
                          s->id, "name", s->name, "direction", sites_direction_name(s->direction),
                          "site_url", s->site_url, "status", sites_status_name(s->status),
                          "allowed_tables", list_or_empty(s->allowed_tables), "excluded_tables",
                          list_or_empty(s->excluded_tables), "expires_at",
                          time_or_null(s->expires_at), "max_records_per_request",
                          (json_int_t)s->max_records, "rate_limit_requests_per_minute",
                          (json_int_t)s->rate_limit, "ip_whitelist", list_or_empty(s->ip_allowlist),
                          "default_conflict_strategy", sites_strategy_name(s->default_strategy));
    json_object_set_new(o, "records_sent", json_integer(s->records_sent));
    json_object_set_new(o, "bytes_sent", json_integer(s->bytes_sent));
    json_object_set_new(o, "requests", json_integer(s->requests));
    json_object_set_new(o, "last_connected_at", time_or_null(s->last_connected_at));
    json_object_set_new(o, "last_transfer_at", time_or_null(s->last_transfer_at));
    json_object_set_new(o, "reachable", json_boolean(s->reachable));
    json_object_set_new(o, "failures", json_integer(s->failures));
    json_object_set_new(o, "created_at", time_or_null(s->created_at));
    json_object_set_new(o, "updated_at", time_or_null(s->updated_at));
    return o;
}

int sites_list(struct store_conn *c, json_t **out, struct err *err)
{
    struct store_rows *rows = NULL;
    struct site s = {0};
    int step = 0;
    *out = json_array();
    int rc = store_query(c, "SELECT " SITE_COLS " FROM ferry_sites ORDER BY created_at DESC", NULL,
                         0, &rows, err);
    while (rc == FERRY_OK && (step = store_rows_next(rows, err)) == 1) {
        read_site(rows, &s);
        json_array_append_new(*out, sites_json(&s));
    }
    sites_clear(&s);
    store_rows_free(rows);
    return rc == FERRY_OK && step >= 0 ? FERRY_OK : FERRY_ERR;
}

/* Finds name in names[0..n); FERRY_ERR when absent. */
static int parse_name(const char *const *names, int n, const char *name, int *out)
{
    for (int i = 0; name && i < n; i++)
        if (!strcmp(name, names[i])) {
            *out = i;
            return FERRY_OK;
        }
    return FERRY_ERR;
}

static const char *const direction_names[] = {"sender", "receiver"};
static const char *const status_names[] = {"pending", "active", "suspended", "revoked", "expired"};
static const char *const mode_names[] = {"auto_accept", "require_approval", "require_password",
                                         "deny_all"};

int sites_parse_direction(const char *name, enum site_direction *out)
{
    int i;
    if (parse_name(direction_names, 2, name, &i) != FERRY_OK)
        return FERRY_ERR;
    *out = (enum site_direction)i;
    return FERRY_OK;
}

const char *sites_direction_name(enum site_direction direction)
{
    return direction_names[direction];
}

int sites_parse_status(const char *name, enum site_status *out)
{
    int i;
    if (parse_name(status_names, 5, name, &i) != FERRY_OK)
        return FERRY_ERR;
    *out = (enum site_status)i;
    return FERRY_OK;
}

const char *sites_status_name(enum site_status status)
{
    return status_names[status];
}

int sites_parse_mode(const char *name, enum incoming_mode *out)
{
    int i;
    if (parse_name(mode_names, 4, name, &i) != FERRY_OK)
        return FERRY_ERR;
    *out = (enum incoming_mode)i;
    return FERRY_OK;
}

const char *sites_mode_name(enum incoming_mode mode)
{
    return mode_names[mode];
}

static const char *const strategy_names[] = {"skip", "overwrite", "merge", "append"};

int sites_parse_strategy(const char *name, enum import_strategy *out)
{
    for (int i = STRATEGY_SKIP; name && i <= STRATEGY_APPEND; i++)
        if (!strcmp(name, strategy_names[i])) {
            *out = (enum import_strategy)i;
            return FERRY_OK;
        }
    return FERRY_ERR;
}

const char *sites_strategy_name(enum import_strategy strategy)
{
    return strategy_names[strategy];
}

bool sites_valid_strategy(const char *strategy)
{
    enum import_strategy ignored;
    return sites_parse_strategy(strategy, &ignored) == FERRY_OK;
}

int sites_set_status(struct store_conn *c, const char *id, enum site_status status, struct err *err)
{
    struct store_val v[] = {sv_text(id), sv_text(sites_status_name(status)), sv_int(time_now_ms())};
    return webhooks_change(
        c, "UPDATE ferry_sites SET status = $2, updated_at = $3 WHERE id = $1", v, 3, NULL,
        WEBHOOK_SITE_CONNECTION_CHANGED,
        json_pack("{s:s, s:s}", "connectionId", id, "status", sites_status_name(status)), err);
}

int sites_approve(struct store_conn *c, const char *id, struct err *err)
{
    struct store_val v[] = {sv_text(id), sv_int(time_now_ms())};
    return webhooks_change(
        c,
        "UPDATE ferry_sites SET status = 'active', approved_at = $2, updated_at = $2"
        " WHERE id = $1",
        v, 2, NULL, WEBHOOK_SITE_CONNECTION_CHANGED,
        json_pack("{s:s, s:s}", "connectionId", id, "status", "active"), err);
}

int sites_delete(struct store_conn *c, const char *id, bool *found, struct err *err)
{
    struct store_val v = sv_text(id);
    int64_t n = 0;
    int rc = webhooks_change(c, "DELETE FROM ferry_sites WHERE id = $1", &v, 1, &n,
                             WEBHOOK_SITE_CONNECTION_CHANGED,
                             json_pack("{s:s, s:s}", "connectionId", id, "status", "deleted"), err);
    *found = n > 0;
    return rc;
}

/* A comma list from a JSON array of non-empty strings without commas ("" for []). */
static int list_from_json(json_t *arr, const char *field, char **out, struct err *err)
{
    struct buf b;
    size_t i;
    json_t *item;
    if (!json_is_array(arr))
        return err_set(err, ERR_INVALID, "field '%s' must be an array of strings", field);
    buf_init(&b);
    json_array_foreach(arr, i, item)
    {
        const char *t = json_string_value(item);
        if (!t || !*t || strchr(t, ',')) {
            buf_cleanup(&b);
            return err_set(err, ERR_INVALID, "field '%s' must hold non-empty names", field);
        }
        buf_printf(&b, "%s%s", b.len ? "," : "", t);
    }
    buf_append(&b, "", 1);
    *out = buf_steal(&b);
    return FERRY_OK;
}

/* Parses an allowlist entry ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7") into its
 * network address, family and prefix length. */
static bool parse_entry(const char *entry, unsigned char net[16], int *family, long *bits)
{
    char host[64], *end;
    const char *slash = strchr(entry, '/');
    size_t len = slash ? (size_t)(slash - entry) : strlen(entry);
    if (len >= sizeof(host))
        return false;
    memcpy(host, entry, len);
    host[len] = '\0';
    *family = strchr(host, ':') ? AF_INET6 : AF_INET;
    int max = *family == AF_INET ? 32 : 128;
    if (inet_pton(*family, host, net) != 1)
        return false;
    *bits = slash ? strtol(slash + 1, &end, 10) : max;
    return !slash || (*end == '\0' && end != slash + 1 && *bits >= 0 && *bits <= max);
}

static bool valid_address(const char *entry)
{
    unsigned char net[16];
    int family;
    long bits;
    return parse_entry(entry, net, &family, &bits);
}

static int update_fields(struct store_conn *c, const char *id, json_t *patch, struct err *err);

int sites_update(struct store_conn *c, const char *id, json_t *patch, struct err *err)
{
    /* all the fields or none */
    int rc = store_begin(c, err) == FERRY_OK && update_fields(c, id, patch, err) == FERRY_OK
                 ? store_commit(c, err)
                 : FERRY_ERR;
    store_rollback(c);
    return rc;
}

static int update_fields(struct store_conn *c, const char *id, json_t *patch, struct err *err)
{
    static const struct {
        const char *field, *column;
        char type; /* s string, l list, i integer, t time */
    } fields[] = {
        {"name", "name", 's'},
        {"allowed_tables", "allowed_tables", 'l'},
        {"excluded_tables", "excluded_tables", 'l'},
        {"ip_whitelist", "ip_allowlist", 'l'},
        {"expires_at", "expires_at", 't'},
        {"max_records_per_request", "max_records", 'i'},
        {"rate_limit_requests_per_minute", "rate_limit", 'i'},
        {"default_conflict_strategy", "default_strategy", 's'},
    };
    const char *key;
    json_t *value;
    json_object_foreach(patch, key, value)
    {
        size_t k = 0;
        while (k < sizeof(fields) / sizeof(fields[0]) && strcmp(fields[k].field, key) != 0)
            k++;
        if (k == sizeof(fields) / sizeof(fields[0]))
            return err_set(err, ERR_INVALID, "field '%s' cannot be set", key);
        struct store_val v[3] = {sv_text(id), sv_null(), sv_int(time_now_ms())};
        char *list = NULL;
        switch (fields[k].type) {
        case 's':
            if (!json_is_string(value) || !*json_string_value(value))
                return err_set(err, ERR_INVALID, "field '%s' must be a non-empty string", key);
            if (!strcmp(key, "default_conflict_strategy") &&
                !sites_valid_strategy(json_string_value(value)))
                return err_set(err, ERR_INVALID,
                               "field '%s' must be skip, overwrite, merge or "
                               "append",
                               key);
            v[1] = sv_text(json_string_value(value));
            break;
        case 'l':
            if (list_from_json(value, key, &list, err) != FERRY_OK)
                return FERRY_ERR;
            if (!strcmp(key, "ip_whitelist")) {
                char *copy = xstrdup(list), *save = NULL;
                bool ok = true;
                for (char *t = strtok_r(copy, ",", &save); t && ok; t = strtok_r(NULL, ",", &save))
                    ok = valid_address(t);
                free(copy);
                if (!ok) {
                    free(list);
                    return err_set(err, ERR_INVALID,
                                   "field 'ip_whitelist' must hold addresses or CIDR ranges");
                }
            }
            v[1] = *list ? sv_text(list) : sv_null();
            break;
        case 'i':
            if (!json_is_integer(value) || json_integer_value(value) < 1)
                return err_set(err, ERR_INVALID, "field '%s' must be an integer of 1 or more", key);
            v[1] = sv_int(json_integer_value(value));
            break;
        case 't':
            if (json_is_null(value))
                break;
            int64_t ms;
            if (!json_is_string(value) || time_parse_iso8601(json_string_value(value), &ms) != 0)
                return err_set(err, ERR_INVALID, "field '%s' must be an ISO-8601 time or null",
                               key);
            v[1] = sv_int(ms);
            break;
        }
        char *sql = xasprintf("UPDATE ferry_sites SET %s = $2, updated_at = $3 WHERE id = $1",
                              fields[k].column);
        int rc = store_run(c, sql, v, 3, NULL, err);
        free(sql);
        free(list);
        if (rc != FERRY_OK)
            return FERRY_ERR;
    }
    return FERRY_OK;
}

int sites_touch(struct store_conn *c, const char *id, const char *remote_ip, const char *user_agent,
                int64_t records, int64_t bytes, struct err *err)
{
    int64_t now = time_now_ms();
    struct store_val v[] = {sv_text(id),
                            sv_text(remote_ip),
                            sv_text(user_agent),
                            sv_int(records),
                            sv_int(bytes),
                            sv_int(now),
                            records ? sv_int(now) : sv_null()};
    return store_run(c,
                     "UPDATE ferry_sites SET remote_ip = $2, user_agent = $3,"
                     " records_sent = records_sent + $4, bytes_sent = bytes_sent + $5,"
                     " requests = requests + 1, last_connected_at = $6,"
                     " last_transfer_at = COALESCE($7, last_transfer_at) WHERE id = $1",
                     v, 7, NULL, err);
}

int sites_reachability(struct store_conn *c, const char *id, bool reachable, int64_t next_check_at,
                       struct err *err)
{
    struct store_val v[] = {sv_text(id), sv_int(reachable), sv_int(next_check_at)};
    return store_run(c,
                     "UPDATE ferry_sites SET reachable = $2, next_check_at = $3,"
                     " failures = CASE WHEN $2 = 1 THEN 0 ELSE failures + 1 END WHERE id = $1",
                     v, 3, NULL, err);
}

static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, name, n))
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

bool sites_table_allowed(const struct site *s, const char *table)
{
    if (s->allowed_tables && *s->allowed_tables && !in_list(s->allowed_tables, table))
        return false;
    return !in_list(s->excluded_tables, table);
}

/* Whether address lies in entry (see parse_entry). */
static bool address_in(const char *address, const char *entry)
{
    unsigned char a[16], b[16];
    int family;
    long bits;
    if (!parse_entry(entry, b, &family, &bits))
        return false;
    const char *addr = address;
    if (family == AF_INET && !strncmp(address, "::ffff:", 7))
        addr = address + 7; /* an IPv4 client on a dual-stack socket */
    if (inet_pton(family, addr, a) != 1)
        return false;
    int size = family == AF_INET ? 4 : 16;
    for (int i = 0; i < size && bits > 0; i++, bits -= 8) {
        unsigned char mask = bits >= 8 ? 0xff : (unsigned char)(0xff << (8 - bits));
        if ((a[i] & mask) != (b[i] & mask))
            return false;
    }
    return true;
}

bool sites_ip_allowed(const struct site *s, const char *address)
{
    if (!s->ip_allowlist || !*s->ip_allowlist)
        return true;
    char *copy = xstrdup(s->ip_allowlist), *save = NULL;
    bool ok = false;
    for (char *t = strtok_r(copy, ",", &save); t && !ok; t = strtok_r(NULL, ",", &save))
        ok = address_in(address, t);
    free(copy);
    return ok;
}

/* --- settings ----------------------------------------------------------------------- */

void sites_settings_clear(struct site_settings *s)
{
    free(s->password_hash);
    memset(s, 0, sizeof(*s));
}

static int meta_get(struct store_conn *c, const char *key, char **out, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(key);
    int step = -1;
    *out = NULL;
    if (store_query(c, "SELECT value FROM ferry_meta WHERE key = $1", &v, 1, &rows, err) ==
            FERRY_OK &&
        (step = store_rows_next(rows, err)) == 1)
        *out = xstrdup(store_rows_text(rows, 0));
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

static int meta_set(struct store_conn *c, const char *key, const char *value, struct err *err)
{
    struct store_val v[] = {sv_text(key), sv_text(value)};
    if (!value)
        return store_run(c, "DELETE FROM ferry_meta WHERE key = $1", v, 1, NULL, err);
    return store_run(c,
                     "INSERT INTO ferry_meta(key, value) VALUES ($1, $2)"
                     " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     v, 2, NULL, err);
}

int sites_settings_get(struct store_conn *c, struct site_settings *out, struct err *err)
{
    char *mode = NULL;
    memset(out, 0, sizeof(*out));
    if (meta_get(c, "sites.incoming_mode", &mode, err) != FERRY_OK ||
        meta_get(c, "sites.password", &out->password_hash, err) != FERRY_OK) {
        free(mode);
        return FERRY_ERR;
    }
    if (sites_parse_mode(mode, &out->mode) != FERRY_OK)
        out->mode = INCOMING_REQUIRE_APPROVAL;
    free(mode);
    return FERRY_OK;
}

int sites_settings_set(struct store_conn *c, const char *mode, const char *password,
                       struct err *err)
{
    enum incoming_mode parsed;
    if (mode && sites_parse_mode(mode, &parsed) != FERRY_OK)
        return err_set(err, ERR_INVALID,
                       "incoming mode must be auto_accept, require_approval, "
                       "require_password or deny_all");
    if (mode && meta_set(c, "sites.incoming_mode", mode, err) != FERRY_OK)
        return FERRY_ERR;
    if (!password)
        return FERRY_OK;
    char *hash = *password ? sites_password_hash(password) : NULL;
    int rc = meta_set(c, "sites.password", hash, err);
    free(hash);
    return rc;
}

static bool scrypt_raw(const char *password, const unsigned char *salt, size_t salt_len, uint64_t n,
                       uint64_t r, uint64_t p, unsigned char *out, size_t out_len)
{
    return EVP_PBE_scrypt(password, strlen(password), salt, salt_len, n, r, p, SCRYPT_MAXMEM, out,
                          out_len) == 1;
}

char *sites_password_hash(const char *password)
{
    unsigned char salt[16], key[32];
    char salt64[32], key64[48];
    crypto_random(salt, sizeof(salt));
    if (!scrypt_raw(password, salt, sizeof(salt), 1ULL << SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, key,
                    sizeof(key)))
        abort(); /* only when OpenSSL cannot allocate: see ferry.h */
    base64_url_encode(salt, sizeof(salt), salt64);
    base64_url_encode(key, sizeof(key), key64);
    return xasprintf("scrypt$%d$%d$%d$%s$%s", SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, salt64, key64);
}

bool sites_password_check(const char *stored, const char *given)
{
    int log_n, r, p;
    char salt64[64], key64[64];
    unsigned char salt[48], want[48], got[48];
    if (!stored || !given ||
        sscanf(stored, "scrypt$%d$%d$%d$%63[^$]$%63s", &log_n, &r, &p, salt64, key64) != 5 ||
        log_n < 10 || log_n > 20 || r < 1 || r > 32 || p < 1 || p > 16)
        return false;
    ssize_t salt_len = base64_url_decode(salt64, strlen(salt64), salt, sizeof(salt));
    ssize_t key_len = base64_url_decode(key64, strlen(key64), want, sizeof(want));
    if (salt_len <= 0 || key_len <= 0 ||
        !scrypt_raw(given, salt, (size_t)salt_len, 1ULL << log_n, (uint64_t)r, (uint64_t)p, got,
                    (size_t)key_len))
        return false;
    return CRYPTO_memcmp(got, want, (size_t)key_len) == 0;
}

void sites_new_token(char token[64], char hash[65])
{
    unsigned char raw[32];
    crypto_random(raw, sizeof(raw));
    base64_url_encode(raw, sizeof(raw), token);
    crypto_sha256_hex(token, strlen(token), hash);
}

bool sites_valid_url(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *user = NULL;
    /* no credentials in a site's address (they would be stored and sent as they are),
     * and no empty authority: libcurl reads "http:///x" as host x */
    bool ok = u && !strchr(url, '\\') && !strstr(url, ":///") &&
              curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && *host &&
              curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_NO_USER &&
              (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_url_cleanup(u);
    return ok;
}
