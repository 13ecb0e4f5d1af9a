/* siteimport.c - see siteimport.h. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "sites/sitedata.h"
#include "sites/siteimport.h"
#include "sites/sites.h"
#include "sync/rowwrite.h"
#include "sync/values.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/crashpoint.h"
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

#define MAX_TABLES 64

/* --- transfers ------------------------------------------------------------------------ */

struct transfer {
    char id[40];
    int64_t records, created, updated, skipped, failed, deleted, bytes;
    int64_t since;  /* the sender's change-feed cursor the rows are current to; -1: none */
    char *last_key; /* JSON text of pull-data's next_after, or NULL: from the start */
    bool done;
};

struct counts {
    int64_t created, updated, skipped, failed, deleted;
};

/* The transfer of table in this job: the one an interrupted run left, or a new one. */
static int transfer_open(struct store_conn *c, const char *site_id, const char *job_id,
                         const char *table, const char *strategy, struct transfer *t,
                         struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v[] = {sv_text(job_id), sv_text(table)};
    int step = -1;
    memset(t, 0, sizeof(*t));
    if (store_query(c,
                    "SELECT id, records, created, updated, skipped, failed, bytes, last_key,"
                    " status, deleted, since_seq FROM ferry_site_transfers"
                    " WHERE job_id = $1 AND tbl = $2",
                    v, 2, &rows, err) != FERRY_OK ||
        (step = store_rows_next(rows, err)) < 0) {
        store_rows_free(rows);
        return FERRY_ERR;
    }
    if (step == 1) {
        snprintf(t->id, sizeof(t->id), "%s", store_rows_text(rows, 0));
        t->records = store_rows_int(rows, 1);
        t->created = store_rows_int(rows, 2);
        t->updated = store_rows_int(rows, 3);
        t->skipped = store_rows_int(rows, 4);
        t->failed = store_rows_int(rows, 5);
        t->bytes = store_rows_int(rows, 6);
        t->last_key = store_rows_isnull(rows, 7) ? NULL : xstrdup(store_rows_text(rows, 7));
        t->done = !strcmp(store_rows_text(rows, 8), "completed");
        t->deleted = store_rows_int(rows, 9);
        t->since = store_rows_isnull(rows, 10) ? -1 : store_rows_int(rows, 10);
        store_rows_free(rows);
        return FERRY_OK;
    }
    store_rows_free(rows);
    t->since = -1;
    char hex[33];
    crypto_random_hex(hex, 16);
    snprintf(t->id, sizeof(t->id), "xfer_%s", hex);
    struct store_val n[] = {sv_text(t->id), sv_text(site_id),  sv_text(job_id),
                            sv_text(table), sv_text(strategy), sv_int(time_now_ms())};
    return store_run(c,
                     "INSERT INTO ferry_site_transfers(id, site_id, job_id, tbl, strategy,"
                     " status, started_at) VALUES ($1, $2, $3, $4, $5, 'running', $6)",
                     n, 6, NULL, err);
}

/* Records a page's outcome; in the page's transaction, so that progress and rows are
 * committed together. */
static int transfer_page(struct store_conn *c, struct transfer *t, const struct counts *k,
                         int64_t records, int64_t bytes, const char *next_key, int64_t since,
                         struct err *err)
{
    struct store_val v[] = {sv_text(t->id),     sv_int(records),
                            sv_int(k->created), sv_int(k->updated),
                            sv_int(k->skipped), sv_int(k->failed),
                            sv_int(bytes),      sv_text(next_key),
                            sv_int(k->deleted), since >= 0 ? sv_int(since) : sv_null()};
    return store_run(c,
                     "UPDATE ferry_site_transfers SET records = records + $2,"
                     " created = created + $3, updated = updated + $4, skipped = skipped + $5,"
                     " failed = failed + $6, bytes = bytes + $7, last_key = $8,"
                     " deleted = deleted + $9, since_seq = COALESCE($10, since_seq) WHERE id = $1",
                     v, 10, NULL, err);
}

/* The cursor the last completed import of table over this connection left, or -1. */
static int64_t last_cursor(struct store_conn *c, const char *site_id, const char *table)
{
    struct store_val v[] = {sv_text(site_id), sv_text(table)};
    int64_t seq = -1;
    bool found = false;
    if (store_query_int(c,
                        "SELECT since_seq FROM ferry_site_transfers WHERE site_id = $1"
                        " AND tbl = $2 AND status = 'completed' AND since_seq IS NOT NULL"
                        " ORDER BY completed_at DESC LIMIT 1",
                        v, 2, &seq, &found, NULL) != FERRY_OK ||
        !found)
        return -1;
    return seq;
}

static int transfer_end(struct store_conn *c, const struct transfer *t, const char *error,
                        struct err *err)
{
    struct store_val v[] = {sv_text(t->id), sv_text(error ? "failed" : "completed"),
                            sv_int(time_now_ms()), sv_text(error)};
    return store_run(c,
                     "UPDATE ferry_site_transfers SET status = $2, completed_at = $3, error = $4"
                     " WHERE id = $1",
                     v, 4, NULL, err);
}

/* --- creating a missing table ------------------------------------------------------- */

/* A column type of the sender's database as this database writes it. */
static const char *map_type(const char *type, bool pg, char *buf, size_t len)
{
    char t[64];
    size_t i = 0;
    for (; type[i] && i < sizeof(t) - 1; i++)
        t[i] = (char)tolower((unsigned char)type[i]);
    t[i] = '\0';
    enum col_kind kind = values_kind_of(t);
    switch (kind) {
    case KIND_INTEGER:
        return pg ? "BIGINT" : "INTEGER";
    case KIND_REAL:
        return pg ? "DOUBLE PRECISION" : "REAL";
    case KIND_NUMERIC:
        return "NUMERIC";
    case KIND_BOOLEAN:
        return "BOOLEAN";
    case KIND_DATE:
        return "DATE";
    case KIND_TIME:
        return "TIME";
    case KIND_TIMESTAMP:
        return pg && (strstr(t, "with time zone") || !strcmp(t, "timestamptz")) ? "TIMESTAMPTZ"
                                                                                : "TIMESTAMP";
    case KIND_UUID:
        return pg ? "UUID" : "TEXT";
    case KIND_JSON:
        return pg ? "JSONB" : "JSON";
    case KIND_BLOB:
        return pg ? "BYTEA" : "BLOB";
    case KIND_TEXT:
        if ((!strncmp(t, "varchar", 7) || !strncmp(t, "character varying", 17)) && strchr(t, '(')) {
            snprintf(buf, len, "VARCHAR(%ld)", strtol(strchr(t, '(') + 1, NULL, 10));
            return buf;
        }
        return "TEXT";
    }
    return "TEXT";
}

/* CREATE TABLE for the sender's schema: its columns and types (mapped), NOT NULL, and
 * its primary key (PhoenixKit does not say which column that is: then "id", when there
 * is one). */
static int create_table(struct store_conn *c, const char *table, json_t *columns, struct err *err)
{
    struct buf sql;
    bool pg = store_conn_dialect(c) == STORE_POSTGRES, any_pk = false;
    size_t i;
    json_t *col;
    json_array_foreach(columns, i, col)
    {
        any_pk = any_pk || json_is_true(json_object_get(col, "primary_key"));
    }
    char *tq = store_quote_ident(table);
    buf_init(&sql);
    buf_printf(&sql, "CREATE TABLE %s (", tq);
    json_array_foreach(columns, i, col)
    {
        const char *name = json_string_value(json_object_get(col, "column_name"));
        const char *type = json_string_value(json_object_get(col, "data_type"));
        if (!name || !*name || !type) {
            free(tq);
            buf_cleanup(&sql);
            return err_set(err, ERR_BAD_GATEWAY, "the sender's schema of '%s' is malformed", table);
        }
        char buf[32], *q = store_quote_ident(name);
        bool pk = any_pk ? json_is_true(json_object_get(col, "primary_key")) : !strcmp(name, "id");
        const char *nullable = json_string_value(json_object_get(col, "is_nullable"));
        buf_printf(&sql, "%s%s %s%s%s", i ? ", " : "", q, map_type(type, pg, buf, sizeof(buf)),
                   pk ? " PRIMARY KEY" : "",
                   !pk && nullable && !strcmp(nullable, "NO") ? " NOT NULL" : "");
        free(q);
    }
    buf_puts(&sql, ")");
    int rc = store_run(c, sql.data, NULL, 0, NULL, err);
    buf_cleanup(&sql);
    free(tq);
    return rc;
}

/* --- applying rows -------------------------------------------------------------------- */

struct target {
    struct store_table *t;
    struct rowwrite_table rw; /* how the statements name it */
    int pk;                   /* -1: no single-column key */
    bool pg;
    bool pk_generated; /* the database makes keys (a default, identity, SQLite's rowid) */
};

/* The value of a row's field for column col: PhoenixKit's binary objects become bytes. */
static int field_value(const struct target *tg, size_t col, json_t *v, struct owned_val *out,
                       struct err *err)
{
    memset(out, 0, sizeof(*out));
    json_t *bin = json_is_object(v) ? json_object_get(v, PHOENIX_BINARY_KEY) : NULL;
    if (json_is_string(bin)) {
        const char *b64 = json_string_value(bin);
        size_t n = strlen(b64);
        out->owned = xmalloc(n / 4 * 3 + 1);
        ssize_t len = base64_decode(b64, n, out->owned, n / 4 * 3);
        if (len < 0) {
            values_release(out);
            return err_set(err, ERR_INVALID, "column '%s': bad %s value", tg->t->cols[col].name,
                           PHOENIX_BINARY_KEY);
        }
        out->val = sv_blob(out->owned, (size_t)len);
        return FERRY_OK;
    }
    enum col_kind kind = values_kind_of(tg->t->cols[col].decl_type);
    if (kind == KIND_BLOB && json_is_string(v)) { /* PhoenixKit sends UTF-8 bytes as text */
        size_t len = json_string_length(v);       /* may hold NUL bytes */
        out->owned = xmalloc(len + 1);
        memcpy(out->owned, json_string_value(v), len + 1);
        out->val = sv_blob(out->owned, len);
        return FERRY_OK;
    }
    if (values_from_json(kind, v, out, err) != FERRY_OK) {
        char why[sizeof(err->msg)];
        snprintf(why, sizeof(why), "%s", err->msg);
        return err_set(err, ERR_INVALID, "column '%s': %s", tg->t->cols[col].name, why);
    }
    return FERRY_OK;
}

/* Runs f(ctx) as one row's work: on PostgreSQL inside a savepoint, so that a row the
 * database refuses (a constraint, a value out of range) fails alone, not the page. */
static bool in_savepoint(struct store_conn *c, const struct target *tg,
                         bool (*f)(struct store_conn *, void *), void *ctx)
{
    if (tg->pg && store_exec(c, "SAVEPOINT ferry_row", NULL) != FERRY_OK)
        return false;
    bool ok = f(c, ctx);
    if (tg->pg)
        store_exec(c, ok ? "RELEASE SAVEPOINT ferry_row" : "ROLLBACK TO SAVEPOINT ferry_row", NULL);
    return ok;
}

/* 1 when a row with the key exists, 0 when not, -1 when the lookup failed. */
static int row_exists(struct store_conn *c, const struct target *tg, const struct store_val *key)
{
    char *sql =
        xasprintf("SELECT COUNT(*) FROM %s WHERE %s = $1", tg->rw.quoted, tg->rw.cols[tg->pk]);
    int64_t n = 0;
    bool found = false;
    int rc = store_query_int(c, sql, key, 1, &n, &found, NULL);
    free(sql);
    return rc != FERRY_OK ? -1 : n > 0;
}

/* A new key for append, for a key the database does not make: the next integer (the
 * page holds the table's lock, see apply_page), or a UUID for text keys. */
static bool new_key(struct store_conn *c, const struct target *tg, struct owned_val *out)
{
    enum col_kind kind = values_kind_of(tg->t->cols[tg->pk].decl_type);
    memset(out, 0, sizeof(*out));
    if (kind == KIND_INTEGER) {
        char *sql = xasprintf("SELECT COALESCE(MAX(%s), 0) + 1 FROM %s", tg->rw.cols[tg->pk],
                              tg->rw.quoted);
        int64_t next = 1;
        bool found = false;
        int rc = store_query_int(c, sql, NULL, 0, &next, &found, NULL);
        out->val = sv_int(next);
        free(sql);
        return rc == FERRY_OK;
    }
    unsigned char b[16];
    crypto_random(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    out->owned = xasprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                           b[12], b[13], b[14], b[15]);
    out->val = sv_text(out->owned);
    return true;
}

enum row_outcome { ROW_FAILED, ROW_CREATED, ROW_UPDATED, ROW_SKIPPED };

struct row_job {
    const struct target *tg;
    json_t *row;
    enum import_strategy strategy;
    enum row_outcome outcome;
};

/* Writes one row with the strategy (see siteimport.h). */
static bool row_work(struct store_conn *c, void *arg)
{
    struct row_job *r = arg;
    const struct target *tg = r->tg;
    size_t n = tg->t->n_cols;
    struct owned_val *vals = xcalloc(n, sizeof(*vals));
    bool *present = xcalloc(n, sizeof(*present));
    struct store_val *bind = xcalloc(n + 1, sizeof(*bind));
    int *cols = xcalloc(n + 1, sizeof(*cols));
    struct err err = {0};
    char *sql = NULL;
    int64_t changed = 0;
    size_t nb = 0;
    bool ok = json_is_object(r->row), append = r->strategy == STRATEGY_APPEND;
    int exists = 0;
    r->outcome = ROW_FAILED;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *v = json_object_get(r->row, tg->t->cols[i].name);
        present[i] = v != NULL;
        if (v && field_value(tg, i, v, &vals[i], &err) != FERRY_OK)
            ok = false;
    }
    if (ok && tg->pk >= 0 && append) { /* a new key: the database's, or the next one */
        values_release(&vals[tg->pk]);
        present[tg->pk] = !tg->pk_generated;
        if (present[tg->pk])
            ok = new_key(c, tg, &vals[tg->pk]);
    }
    if (ok && !append && tg->pk >= 0 && present[tg->pk])
        ok = (exists = row_exists(c, tg, &vals[tg->pk].val)) >= 0;
    if (!ok)
        goto out;
    if (exists && r->strategy == STRATEGY_SKIP) {
        r->outcome = ROW_SKIPPED;
    } else if (exists) { /* overwrite: every column given; merge: the non-null ones */
        bool merge = r->strategy == STRATEGY_MERGE;
        bind[nb++] = vals[tg->pk].val;
        for (size_t i = 0; i < n; i++)
            if ((int)i != tg->pk && present[i] && !(merge && vals[i].val.type == SV_NULL)) {
                cols[nb - 1] = (int)i;
                bind[nb++] = vals[i].val;
            }
        sql = nb > 1 ? rowwrite_update(&tg->rw, cols, nb - 1) : NULL;
        if (!sql || store_run(c, sql, bind, nb, &changed, &err) == FERRY_OK)
            r->outcome = ROW_UPDATED; /* (no sql: nothing to change) */
    } else {
        for (size_t i = 0; i < n; i++)
            if (present[i]) {
                cols[nb] = (int)i;
                bind[nb++] = vals[i].val;
            }
        sql = nb ? rowwrite_insert(&tg->rw, cols, nb, 1, ROWWRITE_FAIL) : NULL;
        if (sql && store_run(c, sql, bind, nb, &changed, &err) == FERRY_OK)
            r->outcome = ROW_CREATED;
    }
out:
    for (size_t i = 0; i < n; i++)
        values_release(&vals[i]);
    free(vals);
    free(present);
    free(bind);
    free(cols);
    free(sql);
    return r->outcome != ROW_FAILED;
}

/* Applies one row with the strategy; counts what happened. */
static void apply_row(struct store_conn *c, const struct target *tg, json_t *row,
                      enum import_strategy strategy, struct counts *k)
{
    struct row_job r = {tg, row, strategy, ROW_FAILED};
    in_savepoint(c, tg, row_work, &r);
    k->created += r.outcome == ROW_CREATED;
    k->updated += r.outcome == ROW_UPDATED;
    k->skipped += r.outcome == ROW_SKIPPED;
    k->failed += r.outcome == ROW_FAILED;
}

struct delete_job {
    const struct target *tg;
    const struct store_val *key;
    int64_t removed;
};

static bool delete_work(struct store_conn *c, void *arg)
{
    struct delete_job *d = arg;
    char *sql = rowwrite_delete(&d->tg->rw);
    bool ok = store_run(c, sql, d->key, 1, &d->removed, NULL) == FERRY_OK;
    free(sql);
    return ok;
}

/* --- one table ------------------------------------------------------------------------ */

struct import_ctx {
    const struct siteops_env *env;
    struct store_conn *c;
    const struct job *job;
    json_t *job_params; /* also holds "current": the table being imported */
    const struct site *site;
    enum import_strategy strategy;
    bool incremental; /* pull only what changed since the last import, where possible */
    const atomic_bool *stop;
    int64_t rows_done, rows_total;
};

/* Calls the sender (body is consumed); *bytes (when given) gets the answer's length. A
 * sender over its rate limit for this connection (429) is waited for, a second at a
 * time, for up to two minutes. */
static int remote_call(const struct import_ctx *x, const char *action, json_t *body,
                       json_t **answer, int64_t *bytes, struct err *err)
{
    struct site_call call = {0};
    int rc = FERRY_ERR;
    *answer = NULL;
    json_object_set_new(body, "auth_token_hash", json_string(x->site->token_hash));
    for (int tries = 0;; tries++) {
        if (siteclient_call(&x->env->client, x->site->site_url, action, body, &call, err) !=
            FERRY_OK)
            goto out;
        if (call.status != 429 || tries >= 120 || (x->stop && atomic_load(x->stop)))
            break;
        json_decref(call.body);
        call.body = NULL;
        struct timespec second = {1, 0};
        nanosleep(&second, NULL);
    }
    if (call.status != 200 || !json_is_true(json_object_get(call.body, "success"))) {
        err_set(err, ERR_BAD_GATEWAY, "%s: the sender answered %d: %s", action, call.status,
                call.error[0] ? call.error : "no reason given");
        json_decref(call.body);
        goto out;
    }
    *answer = call.body;
    if (bytes)
        *bytes = (int64_t)call.bytes;
    rc = FERRY_OK;
out:
    json_decref(body);
    return rc;
}

static int open_target(struct import_ctx *x, const char *table, struct target *tg, struct err *err)
{
    struct err inner = {0};
    memset(tg, 0, sizeof(*tg));
    tg->pg = store_conn_dialect(x->c) == STORE_POSTGRES;
    if (store_table_info(x->c, table, &tg->t, &inner) != FERRY_OK) {
        if (inner.code != ERR_NOT_FOUND) {
            *err = inner;
            return FERRY_ERR;
        }
        json_t *answer = NULL;
        if (remote_call(x, "table-schema", json_pack("{s:s}", "table_name", table), &answer, NULL,
                        err) != FERRY_OK)
            return FERRY_ERR;
        json_t *cols = json_object_get(json_object_get(answer, "schema"), "columns");
        int rc = json_array_size(cols)
                     ? create_table(x->c, table, cols, err)
                     : err_set(err, ERR_BAD_GATEWAY, "the sender gave no columns for '%s'", table);
        json_decref(answer);
        if (rc != FERRY_OK || store_table_info(x->c, table, &tg->t, err) != FERRY_OK)
            return FERRY_ERR;
    }
    tg->pk = -1;
    for (size_t i = 0; tg->t->n_pk == 1 && i < tg->t->n_cols; i++)
        if (tg->t->cols[i].primary_key)
            tg->pk = (int)i;
    const char **names = xcalloc(tg->t->n_cols + 1, sizeof(*names));
    for (size_t i = 0; i < tg->t->n_cols; i++)
        names[i] = tg->t->cols[i].name;
    rowwrite_table_init(&tg->rw, table, names, tg->t->n_cols, tg->pk);
    free(names);
    if (tg->pk >= 0) /* SQLite: an INTEGER PRIMARY KEY is the rowid, made on insert */
        tg->pk_generated = tg->t->cols[tg->pk].has_default ||
                           (!tg->pg && !strcmp(tg->t->cols[tg->pk].decl_type, "integer"));
    return FERRY_OK;
}

/* Applies one page in one transaction, with the transfer's progress. */
static int apply_page(struct import_ctx *x, const struct target *tg, struct transfer *tr,
                      json_t *rows, json_t *changes, int64_t bytes, char *next_key, int64_t since,
                      struct err *err)
{
    struct counts k = {0};
    size_t i;
    json_t *item;
    CRASH_AT("import.page.before");
    int rc = store_begin(x->c, err);
    if (rc == FERRY_OK && tg->pg && tg->pk >= 0 && !tg->pk_generated &&
        x->strategy == STRATEGY_APPEND) {
        /* append computes the next key: no other writer may take it meanwhile */
        char *sql = xasprintf("LOCK TABLE %s IN EXCLUSIVE MODE", tg->rw.quoted);
        rc = store_exec(x->c, sql, err);
        free(sql);
    }
    if (rc == FERRY_OK)
        json_array_foreach(rows, i, item) apply_row(x->c, tg, item, x->strategy, &k);
    if (rc == FERRY_OK)
        json_array_foreach(changes, i, item)
        {
            const char *op = json_string_value(json_object_get(item, "op"));
            if (!op || strcmp(op, "delete") != 0) {
                /* a changed row is the sender's newer version: skip would never take it */
                apply_row(x->c, tg, json_object_get(item, "data"),
                          x->strategy == STRATEGY_SKIP ? STRATEGY_OVERWRITE : x->strategy, &k);
                continue;
            }
            struct owned_val key;
            struct err ignored = {0};
            if (tg->pk < 0 || field_value(tg, (size_t)tg->pk, json_object_get(item, "id"), &key,
                                          &ignored) != FERRY_OK) {
                k.failed++;
                continue;
            }
            struct delete_job d = {tg, &key.val, 0};
            if (in_savepoint(x->c, tg, delete_work, &d))
                k.deleted += d.removed;
            else
                k.failed++;
            values_release(&key);
        }
    int64_t got = (int64_t)(json_array_size(rows) + json_array_size(changes));
    CRASH_AT("import.page.rows_written"); /* the page's rows, not yet its transfer progress */
    if (rc == FERRY_OK)
        rc = transfer_page(x->c, tr, &k, got, bytes, next_key, since, err);
    if (rc == FERRY_OK)
        rc = store_commit(x->c, err);
    store_rollback(x->c);
    if (rc != FERRY_OK)
        return FERRY_ERR;
    CRASH_AT("import.page.after_commit"); /* rows and progress in, the job's count not */
    tr->records += got;
    tr->created += k.created;
    tr->updated += k.updated;
    tr->skipped += k.skipped;
    tr->failed += k.failed;
    tr->deleted += k.deleted;
    if (since >= 0)
        tr->since = since;
    x->rows_done += got;
    const char *table = json_string_value(json_object_get(x->job_params, "current"));
    char *msg = xasprintf("importing %s: %lld rows", table ? table : "", (long long)tr->records);
    jobs_progress(x->c, x->job->id, 0, 0, x->rows_done, x->rows_total, msg, NULL);
    free(msg);
    return FERRY_OK;
}

/* The whole table, page by page in key order, from where the transfer stopped. */
/* last_key once the last page of a whole pull is in: an import stopped after it (and
 * before the transfer was marked done) does not start the table again */
#define WHOLE_DONE "null"

static int pull_whole(struct import_ctx *x, const char *table, const struct target *tg,
                      struct transfer *tr, struct err *err)
{
    if (tr->last_key && !strcmp(tr->last_key, WHOLE_DONE))
        return FERRY_OK;
    for (;;) {
        if (x->stop && atomic_load(x->stop))
            return err_set(err, ERR_UNAVAILABLE, "interrupted: the server is stopping");
        json_t *after = tr->last_key ? json_loads(tr->last_key, JSON_DECODE_ANY, NULL) : NULL;
        /* no limit: the sender's own page size (its max_records_per_request), which it
         * always accepts */
        json_t *body = json_pack("{s:s}", "table_name", table);
        if (after)
            json_object_set_new(body, "after", after);
        json_t *answer = NULL;
        int64_t bytes = 0;
        if (remote_call(x, "pull-data", body, &answer, &bytes, err) != FERRY_OK)
            return FERRY_ERR;
        json_t *data = json_object_get(answer, "data"),
               *next = json_object_get(answer, "next_after");
        json_t *cursor = json_object_get(answer, "cursor"); /* a ferry sender's feed head */
        if (!json_is_array(data)) {
            json_decref(answer);
            return err_set(err, ERR_BAD_GATEWAY, "pull-data: the sender's answer has no data");
        }
        /* without next_after (a PhoenixKit sender) the one answer is the whole table */
        char *next_text = next && !json_is_null(next) ? json_dumps(next, JSON_ENCODE_ANY) : NULL;
        if (next_text && tr->last_key && !strcmp(next_text, tr->last_key)) {
            free(next_text);
            json_decref(answer);
            return err_set(err, ERR_BAD_GATEWAY,
                           "pull-data: the sender's next_after does not advance");
        }
        int64_t got = (int64_t)json_array_size(data);
        int rc = apply_page(x, tg, tr, data, NULL, bytes, next_text && got ? next_text : WHOLE_DONE,
                            json_is_integer(cursor) ? json_integer_value(cursor) : -1, err);
        json_decref(answer);
        free(tr->last_key);
        tr->last_key = rc == FERRY_OK ? next_text : NULL;
        if (rc != FERRY_OK) {
            free(next_text);
            return FERRY_ERR;
        }
        if (!next_text || got == 0)
            return FERRY_OK;
    }
}

/* Only what changed since the cursor (a ferry sender's change feed). *refused is set
 * when the sender cannot (the table is not change-tracked there, or the cursor is older
 * than its purge horizon): then the table is pulled whole instead. */
static int pull_changes(struct import_ctx *x, const char *table, const struct target *tg,
                        struct transfer *tr, int64_t since, bool *refused, struct err *err)
{
    *refused = false;
    for (;;) {
        if (x->stop && atomic_load(x->stop))
            return err_set(err, ERR_UNAVAILABLE, "interrupted: the server is stopping");
        json_t *body = json_pack("{s:s, s:I, s:I}", "table_name", table, "limit", (json_int_t)100,
                                 "since", (json_int_t)(tr->since >= 0 ? tr->since : since));
        json_t *answer = NULL;
        struct err call_err = {0};
        int64_t bytes = 0;
        int called = remote_call(x, "pull-data", body, &answer, &bytes, &call_err);
        if (called != FERRY_OK) {
            *refused = strstr(call_err.msg, "answered 400") || strstr(call_err.msg, "answered 410");
            *err = call_err;
            return FERRY_ERR;
        }
        json_t *changes = json_object_get(answer, "changes");
        json_t *next = json_object_get(answer, "next_since");
        bool more = json_is_true(json_object_get(answer, "has_more"));
        int64_t from = tr->since >= 0 ? tr->since : since;
        if (!json_is_array(changes) || !json_is_integer(next) ||
            (more && json_integer_value(next) <= from)) {
            json_decref(answer);
            return err_set(err, ERR_BAD_GATEWAY,
                           "pull-data: the sender's changes or next_since are not usable");
        }
        int rc = apply_page(x, tg, tr, NULL, changes, bytes, NULL, json_integer_value(next), err);
        json_decref(answer);
        if (rc != FERRY_OK)
            return FERRY_ERR;
        if (!more)
            return FERRY_OK;
    }
}

static int import_table(struct import_ctx *x, const char *table, json_t *report, struct err *err)
{
    struct transfer tr;
    struct target tg = {0};
    int rc = FERRY_ERR;
    bool refused = false, whole = true;
    int64_t since = -1;
    if (transfer_open(x->c, x->site->id, x->job->id, table, sites_strategy_name(x->strategy), &tr,
                      err) != FERRY_OK)
        return FERRY_ERR;
    x->rows_done += tr.records;
    json_object_set_new(x->job_params, "current", json_string(table));
    if (tr.done) {
        rc = FERRY_OK;
        goto report;
    }
    since = x->incremental ? last_cursor(x->c, x->site->id, table) : -1;
    whole = since < 0 || tr.last_key; /* resuming a whole pull finishes it whole */
    if (open_target(x, table, &tg, err) != FERRY_OK)
        goto fail;
    if (!whole)
        rc = pull_changes(x, table, &tg, &tr, since, &refused, err);
    if (whole || refused)
        rc = pull_whole(x, table, &tg, &tr, err);
    if (rc != FERRY_OK && x->stop && atomic_load(x->stop))
        goto out; /* left running: the next start resumes after the last page */
    if (rc != FERRY_OK || transfer_end(x->c, &tr, NULL, err) != FERRY_OK)
        goto fail;
    rc = FERRY_OK;
    goto report;
fail:
    rc = FERRY_ERR;
    transfer_end(x->c, &tr, err->msg, NULL);
report:
    json_array_append_new(
        report,
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}", "table", table, "mode",
                  whole || refused ? "whole" : "changes", "status",
                  rc == FERRY_OK ? "completed" : "failed", "records", (json_int_t)tr.records,
                  "created", (json_int_t)tr.created, "updated", (json_int_t)tr.updated, "skipped",
                  (json_int_t)tr.skipped, "deleted", (json_int_t)tr.deleted, "failed",
                  (json_int_t)tr.failed, "error", rc == FERRY_OK ? NULL : err->msg));
out:
    free(tr.last_key);
    store_table_free(tg.t);
    rowwrite_table_free(&tg.rw);
    return rc;
}

/* --- the job ---------------------------------------------------------------------------- */

static int64_t remote_rows(struct import_ctx *x, json_t *tables)
{
    json_t *answer = NULL;
    struct err ignored = {0};
    int64_t total = 0;
    if (remote_call(x, "list-tables", json_object(), &answer, NULL, &ignored) != FERRY_OK)
        return 0;
    size_t i, k;
    json_t *t, *name;
    json_array_foreach(json_object_get(answer, "tables"), i, t)
    {
        json_array_foreach(tables, k, name)
        {
            if (json_equal(json_object_get(t, "name"), name))
                total += json_integer_value(json_object_get(t, "row_count"));
        }
    }
    json_decref(answer);
    return total;
}

static int run_import(void *env, struct store_conn *c, const struct job *j, const atomic_bool *stop,
                      char **result, char **message, struct err *err)
{
    struct site s = {0};
    bool found = false;
    int rc = FERRY_ERR;
    json_t *params = json_loads(j->params ? j->params : "{}", 0, NULL);
    json_t *tables = json_object_get(params, "tables"), *report = json_array();
    const char *named = json_string_value(json_object_get(params, "strategy"));
    const char *connection = json_string_value(json_object_get(params, "connection"));
    if (sites_get(c, connection ? connection : "", &s, &found, err) != FERRY_OK)
        goto out;
    if (!found || s.direction != SITE_RECEIVER || s.status != SITE_ACTIVE) {
        err_set(err, ERR_CONFLICT, "the connection is gone, or not an active receiver");
        goto out;
    }
    enum import_strategy strategy = s.default_strategy;
    if (named && sites_parse_strategy(named, &strategy) != FERRY_OK) {
        err_set(err, ERR_INVALID, "the job's strategy '%s' is not one ferry knows", named);
        goto out;
    }
    struct import_ctx x = {
        env,  c, j, params, &s, strategy, json_is_true(json_object_get(params, "incremental")),
        stop, 0, 0};
    x.rows_total = remote_rows(&x, tables);
    size_t i;
    json_t *name;
    int failed = 0;
    json_array_foreach(tables, i, name)
    {
        struct err table_err = {0};
        if (import_table(&x, json_string_value(name), report, &table_err) != FERRY_OK) {
            failed++;
            if (stop && atomic_load(stop)) {
                *err = table_err;
                goto out;
            }
        }
    }
    json_t *summary = json_pack("{s:O}", "tables", report);
    *result = json_dumps(summary, JSON_COMPACT);
    json_decref(summary);
    *message = xasprintf("imported %zu tables from %s%s", json_array_size(tables) - (size_t)failed,
                         s.site_url, failed ? " (some failed)" : "");
    rc = failed == (int)json_array_size(tables) && failed ? FERRY_ERR : FERRY_OK;
    if (rc != FERRY_OK)
        err_set(err, ERR_BAD_GATEWAY, "every table failed; see the transfers");
out:
    json_decref(report);
    json_decref(params);
    sites_clear(&s);
    return rc;
}

struct job_kind siteimport_job_kind(const struct siteops_env *env)
{
    return (struct job_kind){"site-import", run_import, (void *)env};
}

int siteimport_start(struct store_conn *c, const char *id, json_t *tables, const char *strategy,
                     bool incremental, bool run_here, const char *user_id, char job_id[40],
                     struct err *err)
{
    struct site s = {0};
    bool found = false;
    size_t i;
    json_t *name;
    if (sites_get(c, id, &s, &found, err) != FERRY_OK)
        return FERRY_ERR;
    int rc = FERRY_ERR;
    if (!found) {
        err_set(err, ERR_NOT_FOUND, "no site connection '%s'", id);
        goto out;
    }
    if (s.direction != SITE_RECEIVER || s.status != SITE_ACTIVE) {
        err_set(err, ERR_CONFLICT,
                "only an active incoming (receiver) connection can pull; this "
                "one is a %s, %s",
                sites_direction_name(s.direction), sites_status_name(s.status));
        goto out;
    }
    if (!json_is_array(tables) || json_array_size(tables) == 0 ||
        json_array_size(tables) > MAX_TABLES) {
        err_set(err, ERR_INVALID, "field 'tables' must list 1 to %d table names", MAX_TABLES);
        goto out;
    }
    json_array_foreach(tables, i, name)
    {
        const char *t = json_string_value(name);
        bool ok = t && *t && (isalpha((unsigned char)*t) || *t == '_') &&
                  strncasecmp(t, "ferry_", 6) != 0;
        for (const char *p = t; ok && *p; p++)
            ok = isalnum((unsigned char)*p) || *p == '_';
        if (!ok) {
            err_set(err, ERR_INVALID,
                    "table names must match [A-Za-z_][A-Za-z0-9_]* and not "
                    "start with ferry_");
            goto out;
        }
    }
    enum import_strategy chosen = s.default_strategy;
    if (strategy && sites_parse_strategy(strategy, &chosen) != FERRY_OK) {
        err_set(err, ERR_INVALID, "strategy must be skip, overwrite, merge or append");
        goto out;
    }
    if (incremental && chosen == STRATEGY_APPEND) {
        /* changed rows would arrive again under new keys, and deletions name the
         * sender's keys, which append does not keep */
        err_set(err, ERR_INVALID, "an incremental import needs skip, overwrite or merge");
        goto out;
    }
    json_t *params = json_pack("{s:s, s:O, s:s, s:b}", "connection", id, "tables", tables,
                               "strategy", sites_strategy_name(chosen), "incremental", incremental);
    char *text = json_dumps(params, JSON_COMPACT);
    rc = jobs_create(c, "site-import", user_id, s.site_url, NULL, text, run_here, job_id, err);
    free(text);
    json_decref(params);
out:
    sites_clear(&s);
    return rc;
}

int siteimport_transfers(struct store_conn *c, const char *id, json_t **out, struct err *err)
{
    struct site s = {0};
    bool found = false;
    *out = NULL;
    if (sites_get(c, id, &s, &found, err) != FERRY_OK)
        return FERRY_ERR;
    sites_clear(&s);
    if (!found)
        return err_set(err, ERR_NOT_FOUND, "no site connection '%s'", id);
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    int step = 0;
    char started[32], done[32];
    *out = json_array();
    int rc = store_query(c,
                         "SELECT id, job_id, tbl, strategy, status, records, created, updated,"
                         " skipped, failed, bytes, started_at, completed_at, error, deleted,"
                         " since_seq FROM ferry_site_transfers WHERE site_id = $1"
                         " ORDER BY started_at DESC",
                         &v, 1, &rows, err);
    while (rc == FERRY_OK && (step = store_rows_next(rows, err)) == 1) {
        json_t *item;
        time_iso8601(store_rows_int(rows, 11), 0, started);
        if (!store_rows_isnull(rows, 12))
            time_iso8601(store_rows_int(rows, 12), 0, done);
        item = json_pack(
            "{s:s, s:s?, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:s?, s:s?}", "id",
            store_rows_text(rows, 0), "job_id",
            store_rows_isnull(rows, 1) ? NULL : store_rows_text(rows, 1), "table",
            store_rows_text(rows, 2), "strategy", store_rows_text(rows, 3), "status",
            store_rows_text(rows, 4), "records", (json_int_t)store_rows_int(rows, 5), "created",
            (json_int_t)store_rows_int(rows, 6), "updated", (json_int_t)store_rows_int(rows, 7),
            "skipped", (json_int_t)store_rows_int(rows, 8), "failed",
            (json_int_t)store_rows_int(rows, 9), "bytes", (json_int_t)store_rows_int(rows, 10),
            "started_at", started, "completed_at", store_rows_isnull(rows, 12) ? NULL : done,
            "error", store_rows_isnull(rows, 13) ? NULL : store_rows_text(rows, 13));
        json_object_set_new(item, "deleted", json_integer(store_rows_int(rows, 14)));
        json_object_set_new(item, "cursor",
                            store_rows_isnull(rows, 15) ? json_null()
                                                        : json_integer(store_rows_int(rows, 15)));
        json_array_append_new(*out, item);
    }
    store_rows_free(rows);
    return rc == FERRY_OK && step >= 0 ? FERRY_OK : FERRY_ERR;
}

int siteimport_run_now(struct store *st, struct store_conn *c, const struct siteops_env *env,
                       const char *job_id, struct err *err)
{
    struct job j = {0};
    bool found = false;
    char *result = NULL, *message = NULL;
    if (jobs_get(c, job_id, &j, &found, err) != FERRY_OK)
        return FERRY_ERR;
    if (!found)
        return err_set(err, ERR_NOT_FOUND, "no job '%s'", job_id);
    /* a server's worker must not take it for dead while it runs here */
    struct job_heartbeat *beat = jobs_heartbeat_start(st, job_id);
    int rc = run_import((void *)env, c, &j, NULL, &result, &message, err);
    jobs_heartbeat_stop(beat);
    jobs_finish(c, job_id, rc == FERRY_OK, result, rc == FERRY_OK ? message : err->msg, NULL);
    free(result);
    free(message);
    jobs_clear(&j);
    return rc;
}
