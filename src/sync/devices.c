/* devices.c - see devices.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/rowjson.h"
#include "sync/devices.h"
#include "sync/feed.h"
#include "auth/tokens.h"
#include "util/crypto.h"
#include "util/timeutil.h"
#include "webhooks/webhooks.h"

#define SEEN_RESOLUTION_MS 60000

static const char device_columns[] =
    "SELECT id, user_id, name, platform, app_version, cursor, tables, created_at, updated_at,"
    " last_seen_at FROM ferry_devices";

static json_t *device_json(const struct store_rows *rows)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(store_rows_text(rows, 0)));
    json_object_set_new(o, "userId", json_string(store_rows_text(rows, 1)));
    json_object_set_new(o, "name", json_string(store_rows_text(rows, 2)));
    json_object_set_new(o, "platform", rowjson_text(rows, 3));
    json_object_set_new(o, "appVersion", rowjson_text(rows, 4));
    json_object_set_new(o, "cursor", json_integer(store_rows_int(rows, 5)));
    json_object_set_new(o, "tables", rowjson_list(rows, 6));
    json_object_set_new(o, "createdAt", rowjson_time(rows, 7));
    json_object_set_new(o, "updatedAt", rowjson_time(rows, 8));
    json_object_set_new(o, "lastSeenAt", rowjson_time(rows, 9));
    return o;
}

static int check_spec(const struct device_spec *spec, bool creating, struct err *err)
{
    if (spec->id && !tokens_valid_device_id(spec->id))
        return err_set(err, ERR_INVALID,
                       "device id must be 1 to 128 characters of A-Z a-z 0-9 - _ . :");
    if (creating && (!spec->name || !*spec->name))
        return err_set(err, ERR_INVALID, "field 'name' is required");
    const char *fields[] = {spec->name, spec->platform, spec->app_version};
    for (int i = 0; i < 3; i++)
        if (fields[i] && strlen(fields[i]) > 200)
            return err_set(err, ERR_INVALID,
                           "name, platform and appVersion are at most 200 characters");
    return FERRY_OK;
}

static int make_token(struct store_conn *c, const char *id, const char *user_id, const char *tables,
                      const char *attrs, char **token, struct err *err)
{
    char token_id[40];
    char *name = xasprintf("device %s", id);
    struct token_spec spec = {TOKEN_ROLE_DEVICE, name, user_id, id, 0, tables, attrs};
    int rc = tokens_create(c, &spec, token, token_id, err);
    free(name);
    return rc;
}

int devices_register(struct store_conn *c, const char *user_id, const struct device_spec *spec,
                     json_t **device, char **token, struct err *err)
{
    char generated[40];
    const char *id = spec->id;
    int64_t now = time_now_ms();
    char owner[128];
    int rc = FERRY_ERR;

    *device = NULL;
    *token = NULL;
    if (check_spec(spec, true, err) != FERRY_OK)
        return FERRY_ERR;
    if (!id) {
        memcpy(generated, "dev_", 4);
        crypto_random_hex(generated + 4, 12);
        id = generated;
    }
    struct store_val v[] = {sv_text(id),
                            sv_text(user_id),
                            sv_text(spec->name),
                            sv_text(spec->platform),
                            sv_text(spec->app_version),
                            sv_text(spec->tables),
                            sv_int(now)};
    if (store_begin(c, err) != FERRY_OK)
        return FERRY_ERR;
    if (store_run(c,
                  "INSERT INTO ferry_devices(id, user_id, name, platform, app_version, tables,"
                  " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                  v, 7, NULL, err) != FERRY_OK) {
        if (err->code == ERR_CONFLICT)
            err_set(err, ERR_CONFLICT, "a device with id '%s' already exists", id);
        goto out;
    }
    if (make_token(c, id, user_id, spec->tables, spec->attrs, token, err) != FERRY_OK ||
        webhooks_emit(c, WEBHOOK_DEVICE_REGISTERED,
                      json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "deviceId", id, "userId", user_id,
                                "name", spec->name, "platform", spec->platform, "appVersion",
                                spec->app_version),
                      err) != FERRY_OK ||
        store_commit(c, err) != FERRY_OK)
        goto out;
    rc = devices_get(c, id, device, owner, err);
out:
    store_rollback(c);
    if (rc != FERRY_OK) {
        free(*token);
        *token = NULL;
    }
    return rc;
}

int devices_get(struct store_conn *c, const char *id, json_t **device, char owner[128],
                struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    char *sql = xasprintf("%s WHERE id = $1", device_columns);
    int rc = FERRY_ERR, step;

    *device = NULL;
    if (store_query(c, sql, &v, 1, &rows, err) != FERRY_OK)
        goto out;
    if ((step = store_rows_next(rows, err)) < 0)
        goto out;
    if (step == 0) {
        err_set(err, ERR_NOT_FOUND, "no device with id '%s'", id);
        goto out;
    }
    snprintf(owner, 128, "%s", store_rows_text(rows, 1));
    *device = device_json(rows);
    rc = FERRY_OK;
out:
    store_rows_free(rows);
    free(sql);
    return rc;
}

int devices_list(struct store_conn *c, const char *user_id, json_t **list, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(user_id);
    char *sql = xasprintf("%s%s ORDER BY created_at, id", device_columns,
                          user_id ? " WHERE user_id = $1" : "");
    int step = FERRY_ERR;

    *list = json_array();
    if (store_query(c, sql, &v, user_id ? 1 : 0, &rows, err) == FERRY_OK)
        while ((step = store_rows_next(rows, err)) == 1)
            json_array_append_new(*list, device_json(rows));
    store_rows_free(rows);
    free(sql);
    if (step != 0) {
        json_decref(*list);
        *list = NULL;
        return FERRY_ERR;
    }
    return FERRY_OK;
}

int devices_update(struct store_conn *c, const char *id, const struct device_spec *spec,
                   struct err *err)
{
    int64_t changed = 0;
    if (check_spec(spec, false, err) != FERRY_OK)
        return FERRY_ERR;
    if (spec->name && !*spec->name)
        return err_set(err, ERR_INVALID, "field 'name' may not be empty");
    struct store_val v[] = {sv_text(spec->name), sv_text(spec->platform),
                            sv_text(spec->app_version), sv_int(time_now_ms()), sv_text(id)};
    if (store_run(c,
                  "UPDATE ferry_devices SET name = COALESCE($1, name),"
                  " platform = COALESCE($2, platform), app_version = COALESCE($3, app_version),"
                  " updated_at = $4 WHERE id = $5",
                  v, 5, &changed, err) != FERRY_OK)
        return FERRY_ERR;
    return changed ? FERRY_OK : err_set(err, ERR_NOT_FOUND, "no device with id '%s'", id);
}

static int revoke_device_tokens(struct store_conn *c, const char *id, struct err *err)
{
    struct store_val v[] = {sv_int(time_now_ms()), sv_text(id)};
    return store_run(c,
                     "UPDATE ferry_tokens SET revoked_at = $1"
                     " WHERE device_id = $2 AND role = 'device' AND revoked_at IS NULL",
                     v, 2, NULL, err);
}

int devices_delete(struct store_conn *c, const char *id, struct err *err)
{
    struct store_val v = sv_text(id);
    int64_t changed = 0;
    int rc = FERRY_ERR;
    if (store_begin(c, err) != FERRY_OK)
        return FERRY_ERR;
    if (store_run(c, "DELETE FROM ferry_devices WHERE id = $1", &v, 1, &changed, err) != FERRY_OK ||
        revoke_device_tokens(c, id, err) != FERRY_OK)
        goto out;
    if (!changed) {
        err_set(err, ERR_NOT_FOUND, "no device with id '%s'", id);
        goto out;
    }
    rc = store_commit(c, err);
    if (rc == FERRY_OK)
        tokens_forget_all(); /* its tokens stop at once (tokens.h) */
out:
    store_rollback(c);
    return rc;
}

int devices_new_token(struct store_conn *c, const char *id, char **token, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    char *user_id = NULL, *tables = NULL, *attrs = NULL;
    int rc = FERRY_ERR, step;

    *token = NULL;
    if (store_begin(c, err) != FERRY_OK)
        return FERRY_ERR;
    if (store_query(
            c,
            "SELECT d.user_id, d.tables, (SELECT t.attrs FROM ferry_tokens t"
            " WHERE t.device_id = d.id AND t.role = 'device'"
            " ORDER BY t.created_at DESC, t.id LIMIT 1) FROM ferry_devices d WHERE d.id = $1",
            &v, 1, &rows, err) != FERRY_OK ||
        (step = store_rows_next(rows, err)) < 0)
        goto out;
    if (step == 0) {
        err_set(err, ERR_NOT_FOUND, "no device with id '%s'", id);
        goto out;
    }
    user_id = xstrdup(store_rows_text(rows, 0));
    tables = store_rows_isnull(rows, 1) ? NULL : xstrdup(store_rows_text(rows, 1));
    attrs = store_rows_isnull(rows, 2) ? NULL : xstrdup(store_rows_text(rows, 2));
    store_rows_free(rows);
    rows = NULL;
    if (revoke_device_tokens(c, id, err) != FERRY_OK ||
        make_token(c, id, user_id, tables, attrs, token, err) != FERRY_OK ||
        store_commit(c, err) != FERRY_OK)
        goto out;
    tokens_forget_all(); /* the old tokens stop at once (tokens.h) */
    rc = FERRY_OK;
out:
    store_rows_free(rows);
    store_rollback(c);
    if (rc != FERRY_OK) {
        free(*token);
        *token = NULL;
    }
    free(user_id);
    free(tables);
    free(attrs);
    return rc;
}

int devices_ack(struct store_conn *c, const char *id, int64_t cursor, int64_t *stored,
                struct err *err)
{
    int64_t head = 0;
    bool found = false;
    struct store_val v[] = {sv_int(cursor), sv_int(time_now_ms()), sv_text(id)};
    struct store_val key = sv_text(id);

    if (feed_head(c, &head, err) != FERRY_OK)
        return FERRY_ERR;
    if (cursor > head)
        return err_set(err, ERR_INVALID, "cursor %lld is from the future (the newest is %lld)",
                       (long long)cursor, (long long)head);
    if (store_run(c,
                  "UPDATE ferry_devices SET cursor = CASE WHEN cursor < $1 THEN $1 ELSE cursor END,"
                  " last_seen_at = $2 WHERE id = $3",
                  v, 3, NULL, err) != FERRY_OK ||
        store_query_int(c, "SELECT cursor FROM ferry_devices WHERE id = $1", &key, 1, stored,
                        &found, err) != FERRY_OK)
        return FERRY_ERR;
    return found ? FERRY_OK : err_set(err, ERR_NOT_FOUND, "no device with id '%s'", id);
}

int devices_min_cursor(struct store_conn *c, int64_t since_ms, int64_t *cursor, bool *any,
                       struct err *err)
{
    struct store_val v = sv_int(since_ms);
    *cursor = 0;
    return store_query_int(c,
                           "SELECT MIN(cursor) FROM ferry_devices"
                           " WHERE COALESCE(last_seen_at, created_at) >= $1",
                           &v, 1, cursor, any, err);
}

/* The devices this process marked seen lately, so that a device's requests within
 * SEEN_RESOLUTION_MS cost no write statement (on SQLite even an UPDATE that changes
 * nothing takes the database's write lock). A small direct-mapped table: a collision only
 * costs one more UPDATE. Process-wide like the token cache (auth/tokens.c): the mark is
 * advisory, and what another node writes is only ever newer. */
#define SEEN_SLOTS 1024
#define SEEN_ID_MAX 128

static struct {
    pthread_mutex_t lock;
    struct {
        char id[SEEN_ID_MAX];
        int64_t at;
    } slot[SEEN_SLOTS];
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Whether id was marked seen at or after since; if not, notes it as marked at now. */
static bool seen_lately(const char *id, int64_t since, int64_t now)
{
    size_t len = strlen(id);
    if (len >= SEEN_ID_MAX)
        return false;
    uint64_t hash = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ (unsigned char)id[i]) * 1099511628211ULL;
    size_t at = (size_t)(hash % SEEN_SLOTS);
    pthread_mutex_lock(&seen.lock);
    bool recent = !strcmp(seen.slot[at].id, id) && seen.slot[at].at >= since;
    if (!recent) {
        memcpy(seen.slot[at].id, id, len + 1);
        seen.slot[at].at = now;
    }
    pthread_mutex_unlock(&seen.lock);
    return recent;
}

void devices_seen(struct store_conn *c, const char *id)
{
    int64_t now = time_now_ms();
    if (seen_lately(id, now - SEEN_RESOLUTION_MS, now))
        return;
    struct store_val v[] = {sv_int(now), sv_text(id), sv_int(now - SEEN_RESOLUTION_MS)};
    struct err ignored;
    store_run(c,
              "UPDATE ferry_devices SET last_seen_at = $1 WHERE id = $2"
              " AND (last_seen_at IS NULL OR last_seen_at < $3)",
              v, 3, NULL, &ignored);
}
