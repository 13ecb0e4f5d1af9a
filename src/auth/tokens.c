/* tokens.c - see tokens.h. Owns the process's authentication cache: tokens checked
 * against the database recently, trusted for a few seconds without asking it again. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/rowjson.h"
#include "sync/tables.h"
#include "auth/tokens.h"
#include "util/base64.h"
#include "util/crypto.h"
#include "util/timeutil.h"

bool tokens_valid_device_id(const char *id)
{
    size_t len = strlen(id);
    if (len == 0 || len > 128)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("-_.:", *p)))
            return false;
    return true;
}

/* last_used_at is refreshed at most this often, so that authenticating stays a read
 * and does not cost a durable write per request. */
#define LAST_USED_RESOLUTION_MS 60000

static const char *const role_names[] = {"", "admin", "user", "device"};

enum token_role tokens_parse_role(const char *name)
{
    for (int i = TOKEN_ROLE_ADMIN; name && i <= TOKEN_ROLE_DEVICE; i++)
        if (!strcmp(name, role_names[i]))
            return (enum token_role)i;
    return TOKEN_ROLE_NONE;
}

const char *tokens_role_name(enum token_role role)
{
    return role >= TOKEN_ROLE_ADMIN && role <= TOKEN_ROLE_DEVICE ? role_names[role] : "";
}

bool tokens_well_formed(const char *token)
{
    size_t len = strlen(token);
    if (len > TOKEN_MAX_LEN)
        return false;
    if (strncmp(token, TOKEN_PREFIX_DEVICE, 4) == 0)
        return len > 4 + 40;
    if (strncmp(token, TOKEN_PREFIX, 3) == 0)
        return len > 3 + 40;
    return false;
}

static void make_secret(enum token_role role, char **secret)
{
    unsigned char raw[TOKEN_SECRET_BYTES];
    char enc[64];
    crypto_random(raw, sizeof(raw));
    base64_url_encode(raw, sizeof(raw), enc);
    *secret =
        xasprintf("%s%s", role == TOKEN_ROLE_DEVICE ? TOKEN_PREFIX_DEVICE : TOKEN_PREFIX, enc);
}

/* "a,b": one or more non-empty names, no empty items. */
static bool valid_table_list(const char *list)
{
    if (!*list || *list == ',' || list[strlen(list) - 1] == ',' || strstr(list, ",,"))
        return false;
    return true;
}

/* A device token names a device; one made directly (CLI, admin API) registers the
 * device when it is new, so it acknowledges and counts as active like any other. A
 * device of another user is refused. */
static int ensure_device(struct store_conn *c, const struct token_spec *spec, int64_t now,
                         struct err *err)
{
    struct store_val v[] = {sv_text(spec->device_id), sv_text(spec->user_id), sv_text(spec->name),
                            sv_text(spec->tables), sv_int(now)};
    int64_t same = 0;
    bool found = false;
    /* An existing device keeps its table limit: the token must carry the same one. */
    if (store_run(c,
                  "INSERT INTO ferry_devices(id, user_id, name, tables, created_at, updated_at)"
                  " VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (id) DO NOTHING",
                  v, 5, NULL, err) != FERRY_OK ||
        store_query_int(c, "SELECT COUNT(*) FROM ferry_devices WHERE id = $1 AND user_id = $2", v,
                        2, &same, &found, err) != FERRY_OK)
        return FERRY_ERR;
    if (!same)
        return err_set(err, ERR_INVALID, "device '%s' belongs to another user", spec->device_id);
    struct store_val limit[] = {sv_text(spec->device_id), sv_text(spec->tables)};
    if (store_query_int(c,
                        "SELECT COUNT(*) FROM ferry_devices WHERE id = $1"
                        " AND COALESCE(tables, '') = COALESCE(CAST($2 AS TEXT), '')",
                        limit, 2, &same, &found, err) != FERRY_OK)
        return FERRY_ERR;
    return same ? FERRY_OK
                : err_set(err, ERR_INVALID,
                          "device '%s' has another table limit; the token must have the same",
                          spec->device_id);
}

static int ensure_user(struct store_conn *c, const char *user_id, int64_t now, struct err *err)
{
    struct store_val v[] = {sv_text(user_id), sv_text(user_id), sv_int(now)};
    return store_run(c,
                     "INSERT INTO ferry_users(id, name, created_at) VALUES ($1, $2, $3)"
                     " ON CONFLICT (id) DO NOTHING",
                     v, 3, NULL, err);
}

int tokens_check_attrs(const char *attrs, char **out, struct err *err)
{
    json_error_t jerr;
    json_t *obj = attrs && *attrs ? json_loads(attrs, 0, &jerr) : NULL, *v;
    const char *name;
    int rc = FERRY_ERR;
    *out = NULL;
    if (!attrs || !*attrs)
        return FERRY_OK;
    if (!json_is_object(obj)) {
        err_set(err, ERR_INVALID, "attributes must be a JSON object of names and values");
        goto out;
    }
    json_object_foreach(obj, name, v)
    {
        if (!*name || strlen(name) > 128) {
            err_set(err, ERR_INVALID, "an attribute's name must be 1 to 128 characters");
            goto out;
        }
        if (!json_is_string(v) && !json_is_integer(v)) {
            err_set(err, ERR_INVALID, "attribute '%.128s' must be a string or an integer", name);
            goto out;
        }
    }
    char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    if (strlen(text) > TOKEN_ATTRS_MAX) {
        free(text);
        err_set(err, ERR_INVALID, "attributes are at most %d bytes of JSON", TOKEN_ATTRS_MAX);
        goto out;
    }
    *out = json_object_size(obj) ? text : NULL;
    if (!*out)
        free(text);
    rc = FERRY_OK;
out:
    json_decref(obj);
    return rc;
}

int tokens_check(const struct token_spec *spec, int64_t now, struct err *err)
{
    if (!tokens_role_name(spec->role)[0])
        return err_set(err, ERR_INVALID, "role must be admin, user or device");
    if (!spec->name || !*spec->name || strlen(spec->name) > 200)
        return err_set(err, ERR_INVALID, "name must be 1 to 200 characters");
    if (spec->role != TOKEN_ROLE_ADMIN && (!spec->user_id || !*spec->user_id))
        return err_set(err, ERR_INVALID, "a %s token needs a user", tokens_role_name(spec->role));
    bool is_device = spec->role == TOKEN_ROLE_DEVICE;
    bool has_device = spec->device_id && *spec->device_id;
    if (is_device != has_device)
        return err_set(err, ERR_INVALID,
                       is_device ? "a device token needs a device id"
                                 : "only a device token has a device id");
    if (is_device && !tokens_valid_device_id(spec->device_id))
        return err_set(err, ERR_INVALID,
                       "device id must be 1 to 128 characters of A-Z a-z 0-9 - _ . :");
    if (spec->expires_at && spec->expires_at <= now)
        return err_set(err, ERR_INVALID, "the expiry must be in the future");
    if (spec->tables && strlen(spec->tables) >= sizeof(((struct token_info *)0)->tables))
        return err_set(err, ERR_INVALID, "the table list is too long");
    if (spec->tables && !valid_table_list(spec->tables))
        return err_set(err, ERR_INVALID,
                       "the table list must name at least one table, separated by commas");
    char *attrs = NULL;
    int rc = tokens_check_attrs(spec->attrs, &attrs, err);
    free(attrs);
    return rc;
}

int tokens_create(struct store_conn *c, const struct token_spec *spec, char **secret,
                  char id_out[40], struct err *err)
{
    char hash[65], id[40], prefix[16];
    int64_t now = time_now_ms();
    int rc = FERRY_ERR;
    bool own_txn = false;

    *secret = NULL;
    if (tokens_check(spec, now, err) != FERRY_OK)
        return FERRY_ERR;
    bool is_device = spec->role == TOKEN_ROLE_DEVICE;

    char *tok = NULL, *attrs = NULL;
    tokens_check_attrs(spec->attrs, &attrs, err); /* checked above */
    make_secret(spec->role, &tok);
    crypto_sha256_hex(tok, strlen(tok), hash);
    memcpy(id, "tok_", 4);
    crypto_random_hex(id + 4, 12);
    snprintf(prefix, sizeof(prefix), "%.*s", (int)(strchr(tok, '_') - tok) + 5, tok);

    struct store_val v[] = {
        sv_text(id),
        sv_text(spec->name),
        sv_text(tokens_role_name(spec->role)),
        sv_text(spec->user_id && *spec->user_id ? spec->user_id : NULL),
        sv_text(spec->device_id && *spec->device_id ? spec->device_id : NULL),
        sv_text(hash),
        sv_text(prefix),
        sv_int(now),
        spec->expires_at ? sv_int(spec->expires_at) : sv_null(),
        sv_text(spec->tables && *spec->tables ? spec->tables : NULL),
        sv_text(attrs),
    };
    /* Inside a caller's transaction (registering a device) the token joins it. */
    own_txn = !store_in_txn(c);
    if (own_txn && store_begin(c, err) != FERRY_OK)
        goto out;
    if (spec->user_id && *spec->user_id && ensure_user(c, spec->user_id, now, err) != FERRY_OK)
        goto out;
    if (is_device && ensure_device(c, spec, now, err) != FERRY_OK)
        goto out;
    if (store_run(c,
                  "INSERT INTO ferry_tokens(id, name, role, user_id, device_id, token_hash,"
                  " prefix, created_at, expires_at, tables, attrs)"
                  " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                  v, 11, NULL, err) != FERRY_OK)
        goto out;
    if (own_txn && store_commit(c, err) != FERRY_OK)
        goto out;
    *secret = tok;
    tok = NULL;
    memcpy(id_out, id, sizeof(id));
    rc = FERRY_OK;
out:
    if (own_txn)
        store_rollback(c);
    free(tok);
    free(attrs);
    return rc;
}

static void copy_text(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* What the cache needs of a token row besides its token_info (0: none). */
struct token_times {
    int64_t expires_at, last_used;
};

static int authenticate(struct store_conn *c, const char *hash, int64_t now_ms,
                        struct token_info *info, struct token_times *times, struct err *err);

/* --- the authentication cache ----------------------------------------------------------
 * Checking a token is a database read (and, on SQLite, its file locks) on every request;
 * the cache keeps the answer for a token that was valid, keyed by its hash, for at most
 * ttl_ms. It is process-wide like the database it mirrors: every path that revokes a token
 * in this process goes through this module (tokens_revoke, tokens_forget_all), wherever
 * the request came from. Those paths empty the cache after their commit and bump the
 * generation, and an answer read from the database is kept only if no revocation
 * happened since its read began, so a revocation in this process is never undone by a
 * read that raced it. Other processes' revocations reach it within ttl_ms. Entries are
 * direct-mapped by hash: a collision evicts. Only valid tokens are kept; an expiry is
 * checked on every hit. */
#define CACHE_SLOTS 1024

struct cache_entry {
    char hash[65]; /* "" when the slot is empty */
    int64_t cached_ms, expires_at, last_used;
    struct token_info info;
};

static struct {
    pthread_mutex_t lock;
    uint64_t generation; /* bumped by every revocation */
    struct cache_entry slots[CACHE_SLOTS];
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct cache_entry *slot_of(const char *hash)
{
    unsigned idx = (unsigned)strtoul((char[]){hash[0], hash[1], hash[2], hash[3], 0}, NULL, 16);
    return &cache.slots[idx % CACHE_SLOTS];
}

static uint64_t cache_generation(void)
{
    pthread_mutex_lock(&cache.lock);
    uint64_t gen = cache.generation;
    pthread_mutex_unlock(&cache.lock);
    return gen;
}

/* A fresh, unexpired entry for hash into *info. A token whose last use is due to be
 * recorded is left to the database (LAST_USED_RESOLUTION_MS). */
static bool cache_get(const char *hash, int64_t now_ms, int64_t ttl_ms, struct token_info *info)
{
    bool hit = false;
    pthread_mutex_lock(&cache.lock);
    struct cache_entry *e = slot_of(hash);
    if (e->hash[0] && crypto_equal(e->hash, hash) && now_ms - e->cached_ms < ttl_ms &&
        now_ms >= e->cached_ms && (!e->expires_at || e->expires_at > now_ms) &&
        now_ms - e->last_used <= LAST_USED_RESOLUTION_MS) {
        *info = e->info;
        hit = true;
    }
    pthread_mutex_unlock(&cache.lock);
    return hit;
}

static void cache_put(const char *hash, uint64_t generation, int64_t now_ms,
                      const struct token_times *times, const struct token_info *info)
{
    pthread_mutex_lock(&cache.lock);
    if (cache.generation == generation) {
        struct cache_entry *e = slot_of(hash);
        memcpy(e->hash, hash, sizeof(e->hash));
        e->cached_ms = now_ms;
        e->expires_at = times->expires_at;
        e->last_used = times->last_used;
        e->info = *info;
    }
    pthread_mutex_unlock(&cache.lock);
}

void tokens_forget_all(void)
{
    pthread_mutex_lock(&cache.lock);
    cache.generation++;
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        cache.slots[i].hash[0] = '\0';
    pthread_mutex_unlock(&cache.lock);
}

/* The database's answer, with a connection from the pool. */
static int authenticate_pooled(struct store *st, const char *hash, int64_t now_ms,
                               struct token_info *info, struct token_times *times, struct err *err)
{
    struct store_conn *c = NULL;
    if (store_acquire(st, &c, err) != FERRY_OK) {
        err->code = ERR_UNAVAILABLE;
        return FERRY_ERR;
    }
    int rc = authenticate(c, hash, now_ms, info, times, err);
    store_release(c);
    return rc;
}

int tokens_authenticate_cached(struct store *st, const char *token, int64_t now_ms, int64_t ttl_ms,
                               struct token_info *info, struct err *err)
{
    char hash[65];
    struct token_times times = {0};
    if (!tokens_well_formed(token))
        return err_set(err, ERR_UNAUTHORIZED, "malformed token");
    crypto_sha256_hex(token, strlen(token), hash);
    if (ttl_ms > 0 && cache_get(hash, now_ms, ttl_ms, info))
        return FERRY_OK;
    uint64_t generation = cache_generation();
    if (authenticate_pooled(st, hash, now_ms, info, &times, err) != FERRY_OK)
        return FERRY_ERR;
    if (ttl_ms > 0)
        cache_put(hash, generation, now_ms, &times, info);
    return FERRY_OK;
}

int tokens_authenticate(struct store_conn *c, const char *token, int64_t now_ms,
                        struct token_info *info, struct err *err)
{
    char hash[65];
    struct token_times times;
    if (!tokens_well_formed(token))
        return err_set(err, ERR_UNAUTHORIZED, "malformed token");
    crypto_sha256_hex(token, strlen(token), hash);
    return authenticate(c, hash, now_ms, info, &times, err);
}

/* Looks the token up by its hash; *times gets its expiry and last use. Records the use
 * at most once a LAST_USED_RESOLUTION_MS. */
static int authenticate(struct store_conn *c, const char *hash, int64_t now_ms,
                        struct token_info *info, struct token_times *times, struct err *err)
{
    struct store_rows *rows = NULL;
    int rc = FERRY_ERR, step;

    struct store_val v = sv_text(hash);
    if (store_query(c,
                    "SELECT id, role, user_id, device_id, token_hash, expires_at, revoked_at,"
                    " last_used_at, tables, attrs FROM ferry_tokens WHERE token_hash = $1",
                    &v, 1, &rows, err) != FERRY_OK)
        goto out;
    step = store_rows_next(rows, err);
    if (step < 0)
        goto out;
    /* The index finds the row by hash; the hash is compared again in constant time so
     * that no code path depends on how much of a guessed hash matched. */
    if (step == 0 || !crypto_equal(store_rows_text(rows, 4), hash)) {
        err_set(err, ERR_UNAUTHORIZED, "unknown token");
        goto out;
    }
    if (!store_rows_isnull(rows, 6)) {
        err_set(err, ERR_UNAUTHORIZED, "token %s is revoked", store_rows_text(rows, 0));
        goto out;
    }
    if (!store_rows_isnull(rows, 5) && store_rows_int(rows, 5) <= now_ms) {
        err_set(err, ERR_UNAUTHORIZED, "token %s has expired", store_rows_text(rows, 0));
        goto out;
    }
    copy_text(info->id, sizeof(info->id), store_rows_text(rows, 0));
    info->role = tokens_parse_role(store_rows_text(rows, 1));
    copy_text(info->user_id, sizeof(info->user_id), store_rows_text(rows, 2));
    copy_text(info->device_id, sizeof(info->device_id), store_rows_text(rows, 3));
    copy_text(info->tables, sizeof(info->tables), store_rows_text(rows, 8));
    copy_text(info->attrs, sizeof(info->attrs), store_rows_text(rows, 9));
    times->last_used = store_rows_isnull(rows, 7) ? 0 : store_rows_int(rows, 7);
    times->expires_at = store_rows_isnull(rows, 5) ? 0 : store_rows_int(rows, 5);
    rc = FERRY_OK;
out:
    store_rows_free(rows);
    if (rc == FERRY_OK && now_ms - times->last_used > LAST_USED_RESOLUTION_MS) {
        struct store_val u[] = {sv_int(now_ms), sv_text(info->id)};
        struct err ignored;
        if (store_run(c, "UPDATE ferry_tokens SET last_used_at = $1 WHERE id = $2", u, 2, NULL,
                      &ignored) == FERRY_OK)
            times->last_used = now_ms;
    }
    return rc;
}

static const char token_columns[] = "SELECT id, name, role, user_id, device_id, prefix,"
                                    " created_at, expires_at, last_used_at, revoked_at, tables,"
                                    " attrs FROM ferry_tokens";

static json_t *token_json(const struct store_rows *rows)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(store_rows_text(rows, 0)));
    json_object_set_new(o, "name", json_string(store_rows_text(rows, 1)));
    json_object_set_new(o, "role", json_string(store_rows_text(rows, 2)));
    json_object_set_new(o, "user_id", rowjson_text(rows, 3));
    json_object_set_new(o, "device_id", rowjson_text(rows, 4));
    json_object_set_new(o, "prefix", json_string(store_rows_text(rows, 5)));
    json_object_set_new(o, "created_at", rowjson_time(rows, 6));
    json_object_set_new(o, "expires_at", rowjson_time(rows, 7));
    json_object_set_new(o, "last_used_at", rowjson_time(rows, 8));
    json_object_set_new(o, "revoked_at", rowjson_time(rows, 9));
    json_object_set_new(o, "revoked", json_boolean(!store_rows_isnull(rows, 9)));
    json_object_set_new(o, "tables", rowjson_list(rows, 10));
    json_t *attrs =
        store_rows_isnull(rows, 11) ? NULL : json_loads(store_rows_text(rows, 11), 0, NULL);
    json_object_set_new(o, "attrs", attrs ? attrs : json_object());
    return o;
}

int tokens_list(struct store_conn *c, const char *user_id, json_t **out, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(user_id);
    char *sql = xasprintf("%s%s ORDER BY created_at, id", token_columns,
                          user_id ? " WHERE user_id = $1" : "");
    json_t *list = json_array();
    int step = FERRY_ERR;

    if (store_query(c, sql, &v, user_id ? 1 : 0, &rows, err) == FERRY_OK)
        while ((step = store_rows_next(rows, err)) == 1)
            json_array_append_new(list, token_json(rows));
    store_rows_free(rows);
    free(sql);
    if (step != 0) {
        json_decref(list);
        return FERRY_ERR;
    }
    *out = list;
    return FERRY_OK;
}

int tokens_get(struct store_conn *c, const char *id, json_t **out, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    char *sql = xasprintf("%s WHERE id = $1", token_columns);
    int rc = FERRY_ERR, step;

    *out = NULL;
    if (store_query(c, sql, &v, 1, &rows, err) != FERRY_OK)
        goto out;
    step = store_rows_next(rows, err);
    if (step < 0)
        goto out;
    if (step == 0) {
        err_set(err, ERR_NOT_FOUND, "no token with id '%s'", id);
        goto out;
    }
    *out = token_json(rows);
    rc = FERRY_OK;
out:
    store_rows_free(rows);
    free(sql);
    return rc;
}

/* The devices acting with token id resync once: they may now read other rows. */
static int resync_holders(struct store_conn *c, const char *id, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    char *user = NULL, *device = NULL;
    int64_t seq = 0;
    int rc = FERRY_ERR;
    if (store_query(c, "SELECT user_id, device_id FROM ferry_tokens WHERE id = $1", &v, 1, &rows,
                    err) != FERRY_OK ||
        store_rows_next(rows, err) != 1)
        goto out;
    user = store_rows_isnull(rows, 0) ? NULL : xstrdup(store_rows_text(rows, 0));
    device = store_rows_isnull(rows, 1) ? NULL : xstrdup(store_rows_text(rows, 1));
    store_rows_free(rows);
    rows = NULL;
    rc = FERRY_OK;
    if ((user || device) &&
        (changelog_lock(c, err) != FERRY_OK || changelog_resync_mark(c, &seq, err) != FERRY_OK ||
         changelog_resync_devices(c, seq, device, user, NULL, err) != FERRY_OK))
        rc = FERRY_ERR;
out:
    store_rows_free(rows);
    free(user);
    free(device);
    return rc;
}

int tokens_set_attrs(struct store_conn *c, const char *id, const char *attrs, struct err *err)
{
    char *clean = NULL;
    int64_t changed = 0;
    int rc = FERRY_ERR;
    if (tokens_check_attrs(attrs, &clean, err) != FERRY_OK)
        return FERRY_ERR;
    struct store_val v[] = {sv_text(clean), sv_text(id)};
    if (store_begin(c, err) != FERRY_OK)
        goto out;
    bool found = false;
    int64_t exists = 0;
    if (store_query_int(c, "SELECT COUNT(*) FROM ferry_tokens WHERE id = $1", &v[1], 1, &exists,
                        &found, err) != FERRY_OK)
        goto out;
    if (!exists) {
        err_set(err, ERR_NOT_FOUND, "no token with id '%s'", id);
        goto out;
    }
    if (store_run(c,
                  "UPDATE ferry_tokens SET attrs = $1 WHERE id = $2"
                  " AND COALESCE(attrs, '') <> COALESCE(CAST($1 AS TEXT), '')",
                  v, 2, &changed, err) != FERRY_OK ||
        (changed && resync_holders(c, id, err) != FERRY_OK) || store_commit(c, err) != FERRY_OK)
        goto out;
    if (changed)
        tokens_forget_all(); /* cached credentials carry the old attributes as claims */
    rc = FERRY_OK;
out:
    store_rollback(c);
    free(clean);
    return rc;
}

int tokens_revoke(struct store_conn *c, const char *id, struct err *err)
{
    struct store_val v[] = {sv_int(time_now_ms()), sv_text(id)};
    int64_t changed = 0;
    if (store_run(c, "UPDATE ferry_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
                  v, 2, &changed, err) != FERRY_OK)
        return FERRY_ERR;
    if (changed == 0)
        return err_set(err, ERR_NOT_FOUND, "no token with id '%s'", id);
    if (!store_in_txn(c)) /* else the caller forgets after its commit */
        tokens_forget_all();
    return FERRY_OK;
}
