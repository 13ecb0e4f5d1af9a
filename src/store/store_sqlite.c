/* store_sqlite.c - the embedded SQLite backend behind store.h. One sqlite3 handle per
 * pooled connection, WAL journal, synchronous=FULL so that a committed transaction
 * survives a power cut, and a per-connection cache of prepared statements. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store/store_internal.h"
#include "util/buf.h"

/* How long a connection waits for another writer's lock before giving up. */
#define BUSY_TIMEOUT_MS 30000

struct sqlite_rows {
    struct rows_head head;
    sqlite3_stmt *stmt;
    bool cached; /* statement belongs to the cache: reset, not finalised */
};

static int db_error(sqlite3 *db, const char *what, struct err *err)
{
    int code = sqlite3_errcode(db);
    enum err_code kind = ERR_DATABASE;
    if (code == SQLITE_CONSTRAINT)
        kind = ERR_CONFLICT;
    else if (code == SQLITE_FULL)
        kind = ERR_STORAGE_FULL;
    return err_set(err, kind, "%s: %s", what, sqlite3_errmsg(db));
}

/* SQLite's memory statistics take a global mutex on every allocation; ferry reads none
 * of them. This must run before SQLite initialises, so it runs once, first. */
static void configure_library(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static int sqlite_connect(struct store *st, void **handle, struct err *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, configure_library);
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    char *msg = NULL;

    if (sqlite3_open_v2(st->target, &db, flags, NULL) != SQLITE_OK) {
        err_set(err, ERR_DATABASE, "cannot open SQLite database %s: %s", st->target,
                db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return FERRY_ERR;
    }
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(db, 0);
    /* The journal mode is stored in the file; synchronous and foreign_keys last for the
     * connection only. */
    if (sqlite3_exec(db,
                     st->foreign ? "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                                 : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                                   " PRAGMA foreign_keys=ON;",
                     NULL, NULL, &msg) != SQLITE_OK) {
        err_set(err, ERR_DATABASE, "cannot configure SQLite database %s: %s", st->target,
                msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        sqlite3_close(db);
        return FERRY_ERR;
    }
    *handle = db;
    return FERRY_OK;
}

static void sqlite_disconnect(void *handle)
{
    sqlite3_close_v2(handle);
}

static bool sqlite_healthy(void *handle)
{
    (void)handle;
    return true;
}

static int sqlite_exec(struct store_conn *conn, const char *sql, struct err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(conn->handle, sql, NULL, NULL, &msg) != SQLITE_OK) {
        err_set(err, ERR_DATABASE, "%s", msg ? msg : sqlite3_errmsg(conn->handle));
        if (sqlite3_errcode(conn->handle) == SQLITE_FULL)
            err->code = ERR_STORAGE_FULL;
        sqlite3_free(msg);
        return FERRY_ERR;
    }
    return FERRY_OK;
}

/* Rewrites PostgreSQL-style $N parameters to SQLite's ?N, leaving string literals and
 * quoted identifiers alone. */
static char *rewrite_params(const char *sql)
{
    struct buf b;
    char quote = 0;
    buf_init(&b);
    for (const char *p = sql; *p; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '$' && isdigit((unsigned char)p[1])) {
            buf_append(&b, "?", 1);
            continue;
        }
        buf_append(&b, p, 1);
    }
    return buf_steal(&b);
}

static void finalize_stmt(void *stmt, void *ctx)
{
    (void)ctx;
    sqlite3_finalize(stmt);
}

static int bind_params(sqlite3_stmt *stmt, const struct store_val *params, size_t n, sqlite3 *db,
                       struct err *err)
{
    for (size_t i = 0; i < n; i++) {
        int idx = (int)i + 1, rc;
        const struct store_val *v = &params[i];
        switch (v->type) {
        case SV_INT:
            rc = sqlite3_bind_int64(stmt, idx, v->i);
            break;
        case SV_REAL:
            rc = sqlite3_bind_double(stmt, idx, v->d);
            break;
        case SV_TEXT:
            rc = sqlite3_bind_text(stmt, idx, v->s, -1, SQLITE_STATIC);
            break;
        case SV_BLOB:
            rc = sqlite3_bind_blob64(stmt, idx, v->s, v->len, SQLITE_STATIC);
            break;
        default:
            rc = sqlite3_bind_null(stmt, idx);
        }
        if (rc != SQLITE_OK)
            return db_error(db, "cannot bind parameter", err);
    }
    return FERRY_OK;
}

static int prepare(struct store_conn *conn, const char *sql, sqlite3_stmt **out, struct err *err)
{
    if (conn->cache && stmt_cache_count(conn->cache) >= STMT_CACHE_MAX) {
        stmt_cache_free(conn->cache); /* no result is open: store_query checks */
        conn->cache = NULL;
    }
    if (!conn->cache)
        conn->cache = stmt_cache_new(finalize_stmt, NULL);
    sqlite3_stmt *stmt = stmt_cache_get(conn->cache, sql);
    if (!stmt) {
        char *rewritten = rewrite_params(sql);
        int rc =
            sqlite3_prepare_v3(conn->handle, rewritten, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
        free(rewritten);
        if (rc != SQLITE_OK)
            return db_error(conn->handle, "cannot prepare statement", err);
        stmt_cache_put(conn->cache, sql, stmt);
    }
    *out = stmt;
    return FERRY_OK;
}

static int sqlite_query(struct store_conn *conn, const char *sql, const struct store_val *params,
                        size_t n_params, struct store_rows **out, int64_t *changes, struct err *err)
{
    sqlite3_stmt *stmt = NULL;
    sqlite3 *db = conn->handle;
    int step;

    if (prepare(conn, sql, &stmt, err) != FERRY_OK)
        return FERRY_ERR;
    if ((size_t)sqlite3_bind_parameter_count(stmt) != n_params) {
        sqlite3_reset(stmt);
        return err_set(err, ERR_INTERNAL, "statement wants %d parameters, got %zu",
                       sqlite3_bind_parameter_count(stmt), n_params);
    }
    if (bind_params(stmt, params, n_params, db, err) != FERRY_OK) {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
        return FERRY_ERR;
    }
    if (out) {
        struct sqlite_rows *rows = xcalloc(1, sizeof(*rows));
        rows->head.conn = conn;
        rows->stmt = stmt;
        rows->cached = true;
        *out = (struct store_rows *)rows;
        return FERRY_OK;
    }
    /* total_changes counts only this statement's rows, where sqlite3_changes would
     * report the previous write's count after a statement that writes nothing. */
    int64_t before = sqlite3_total_changes64(db);
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW)
        ;
    int rc = FERRY_OK;
    if (step != SQLITE_DONE)
        rc = db_error(db, "statement failed", err);
    else
        *changes = sqlite3_total_changes64(db) - before;
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return rc;
}

static int sqlite_rows_next(struct store_rows *r, struct err *err)
{
    struct sqlite_rows *rows = (struct sqlite_rows *)r;
    int step = sqlite3_step(rows->stmt);
    if (step == SQLITE_ROW)
        return 1;
    if (step == SQLITE_DONE)
        return 0;
    return db_error(rows->head.conn->handle, "query failed", err);
}

static int sqlite_rows_ncols(const struct store_rows *r)
{
    return sqlite3_column_count(((const struct sqlite_rows *)r)->stmt);
}

static const char *sqlite_rows_name(const struct store_rows *r, int col)
{
    return sqlite3_column_name(((const struct sqlite_rows *)r)->stmt, col);
}

static bool sqlite_rows_isnull(const struct store_rows *r, int col)
{
    return sqlite3_column_type(((const struct sqlite_rows *)r)->stmt, col) == SQLITE_NULL;
}

static const char *sqlite_rows_text(const struct store_rows *r, int col)
{
    return (const char *)sqlite3_column_text(((const struct sqlite_rows *)r)->stmt, col);
}

static int64_t sqlite_rows_int(const struct store_rows *r, int col)
{
    return sqlite3_column_int64(((const struct sqlite_rows *)r)->stmt, col);
}

static double sqlite_rows_real(const struct store_rows *r, int col)
{
    return sqlite3_column_double(((const struct sqlite_rows *)r)->stmt, col);
}

static const void *sqlite_rows_blob(const struct store_rows *r, int col, size_t *len)
{
    sqlite3_stmt *stmt = ((const struct sqlite_rows *)r)->stmt;
    const void *p = sqlite3_column_blob(stmt, col);
    *len = (size_t)sqlite3_column_bytes(stmt, col);
    return p;
}

static enum store_type sqlite_rows_type(const struct store_rows *r, int col)
{
    switch (sqlite3_column_type(((const struct sqlite_rows *)r)->stmt, col)) {
    case SQLITE_INTEGER:
        return SV_INT;
    case SQLITE_FLOAT:
        return SV_REAL;
    case SQLITE_TEXT:
        return SV_TEXT;
    case SQLITE_BLOB:
        return SV_BLOB;
    default:
        return SV_NULL;
    }
}

static void sqlite_rows_free(struct store_rows *r)
{
    struct sqlite_rows *rows = (struct sqlite_rows *)r;
    if (!rows)
        return;
    sqlite3_reset(rows->stmt);
    sqlite3_clear_bindings(rows->stmt);
    free(rows);
}

static char *lower_dup(const char *s)
{
    char *out = xstrdup(s ? s : "");
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return out;
}

static int sqlite_table_info(struct store_conn *conn, const char *table, struct store_table **out,
                             struct err *err)
{
    /* pragma_table_info as a table-valued function takes the name as a bound value, so
     * the table name is never spliced into SQL. */
    static const char sql[] = "SELECT name, type, \"notnull\", pk, dflt_value IS NOT NULL,"
                              " dflt_value FROM pragma_table_info($1) ORDER BY cid";
    struct store_rows *rows = NULL;
    struct store_table *t = xcalloc(1, sizeof(*t));
    struct store_val arg = sv_text(table);
    int rc = FERRY_ERR, step;
    size_t cap = 0;

    t->name = xstrdup(table);
    if (store_query(conn, sql, &arg, 1, &rows, err) != FERRY_OK)
        goto out;
    while ((step = store_rows_next(rows, err)) == 1) {
        if (t->n_cols == cap) {
            cap = cap ? cap * 2 : 8;
            t->cols = xrealloc(t->cols, cap * sizeof(*t->cols));
        }
        struct store_column *c = &t->cols[t->n_cols++];
        c->name = xstrdup(store_rows_text(rows, 0));
        c->decl_type = lower_dup(store_rows_text(rows, 1));
        c->not_null = store_rows_int(rows, 2) != 0;
        c->primary_key = store_rows_int(rows, 3) != 0;
        c->has_default = store_rows_int(rows, 4) != 0;
        c->default_expr = store_rows_isnull(rows, 5) ? NULL : xstrdup(store_rows_text(rows, 5));
        t->n_pk += c->primary_key;
    }
    if (step < 0)
        goto out;
    if (t->n_cols == 0) {
        err_set(err, ERR_NOT_FOUND, "table '%s' does not exist", table);
        goto out;
    }
    *out = t;
    t = NULL;
    rc = FERRY_OK;
out:
    store_rows_free(rows);
    store_table_free(t);
    return rc;
}

static int sqlite_list_tables(struct store_conn *conn, char ***names, size_t *n, struct err *err)
{
    static const char sql[] = "SELECT name FROM sqlite_schema WHERE type = 'table'"
                              " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                              " AND name NOT LIKE 'ferry\\_%' ESCAPE '\\' ORDER BY name";
    struct store_rows *rows = NULL;
    size_t cap = 0;
    int step;

    if (store_query(conn, sql, NULL, 0, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    while ((step = store_rows_next(rows, err)) == 1) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *names = xrealloc(*names, cap * sizeof(**names));
        }
        (*names)[(*n)++] = xstrdup(store_rows_text(rows, 0));
    }
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

static void sqlite_clear_cache(struct store_conn *conn)
{
    stmt_cache_free(conn->cache);
    conn->cache = NULL;
}

const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .connect = sqlite_connect,
    .disconnect = sqlite_disconnect,
    .healthy = sqlite_healthy,
    .exec = sqlite_exec,
    .query = sqlite_query,
    .rows_next = sqlite_rows_next,
    .rows_ncols = sqlite_rows_ncols,
    .rows_name = sqlite_rows_name,
    .rows_isnull = sqlite_rows_isnull,
    .rows_text = sqlite_rows_text,
    .rows_int = sqlite_rows_int,
    .rows_real = sqlite_rows_real,
    .rows_blob = sqlite_rows_blob,
    .rows_type = sqlite_rows_type,
    .rows_free = sqlite_rows_free,
    .table_info = sqlite_table_info,
    .list_tables = sqlite_list_tables,
    .clear_cache = sqlite_clear_cache,
};
