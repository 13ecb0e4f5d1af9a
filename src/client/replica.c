/* replica.c - the local side of a libferry replica (see replica.h): libferry's tables,
 * the synced tables made from the server's schema, their capture triggers, rows as JSON
 * in the server's value format, and remote rows written with capture switched off. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/page.h"
#include "client/replica.h"
#include "ferry.h"
#include "util/base64.h"
#include "util/buf.h"

/* The outbox keeps which rows changed (their key as text, as the server keys its change
 * log), not how: a push sends each row as it is then, so many edits of a row are one
 * operation and a row inserted and deleted again before a push is a delete.
 * A remote change to a row with local changes not yet pushed is held back
 * (ferry_client_held) until the push of that row says whether the server kept its own
 * row (then the held change is applied) or took the local one. The capture
 * triggers do nothing while libferry applies remote changes (state.applying = 1, set only
 * inside libferry's own write transactions, which other connections never see). */
static const char SETUP_SQL[] =
    "CREATE TABLE IF NOT EXISTS ferry_client_state ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), applying INTEGER NOT NULL DEFAULT 0,"
    " cursor INTEGER NOT NULL DEFAULT 0, resync INTEGER NOT NULL DEFAULT 0,"
    " replica_id TEXT NOT NULL);"
    "INSERT OR IGNORE INTO ferry_client_state(id, replica_id)"
    " VALUES (1, lower(hex(randomblob(12))));"
    /* the server's last schema answer, so that the replica opens offline */
    "CREATE TABLE IF NOT EXISTS ferry_client_schema ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ferry_client_outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, pk TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS ferry_client_outbox_key ON ferry_client_outbox(tbl, pk);"
    "CREATE TABLE IF NOT EXISTS ferry_client_rows ("
    " tbl TEXT NOT NULL, pk TEXT NOT NULL, version INTEGER NOT NULL,"
    " PRIMARY KEY (tbl, pk)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS ferry_client_held ("
    " tbl TEXT NOT NULL, pk TEXT NOT NULL, version INTEGER NOT NULL, data TEXT,"
    " PRIMARY KEY (tbl, pk)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS ferry_client_seen ("
    " tbl TEXT NOT NULL, pk TEXT NOT NULL, PRIMARY KEY (tbl, pk)) WITHOUT ROWID;"
    /* The batch being pushed, exactly as sent: after a failure or a crash it is sent
     * again unchanged, batch id and all, so the server answers from its first answer
     * whatever the app wrote meanwhile. */
    "CREATE TABLE IF NOT EXISTS ferry_client_inflight ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL, last INTEGER NOT NULL);"
    /* Every conflict the server recorded for this replica's pushes, as the push answer
     * described it, recorded with the answer (so exactly once). */
    "CREATE TABLE IF NOT EXISTS ferry_client_conflicts ("
    " id TEXT PRIMARY KEY, tbl TEXT NOT NULL, pk TEXT NOT NULL, body TEXT NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'open', delivered INTEGER NOT NULL DEFAULT 0);";

int fc_fail(ferry_replica *r, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
    return status;
}

int fc_exec(ferry_replica *r, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(r->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return FERRY_CLIENT_OK;
    int rc = fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", msg ? msg : sqlite3_errmsg(r->db));
    sqlite3_free(msg);
    return rc;
}

/* text between quote characters, each quote inside doubled (SQL's identifier and string
 * literal quoting). */
static char *quoted(const char *text, char quote)
{
    struct buf b;
    buf_init(&b);
    buf_append(&b, &quote, 1);
    for (const char *p = text; *p; p++) {
        buf_append(&b, p, 1);
        if (*p == quote)
            buf_append(&b, p, 1);
    }
    buf_append(&b, &quote, 1);
    return buf_steal(&b);
}

static char *quote_ident(const char *name)
{
    return quoted(name, '"');
}

static char *quote_literal(const char *text)
{
    return quoted(text, '\'');
}

/* SQLite's declared type for a server column type. Exact decimals, JSON and times stay
 * text: a NUMERIC or JSON declared type would get numeric affinity and turn "12.50"
 * into 12.5. */
static const char *sqlite_type(const char *label)
{
    if (!strcmp(label, "integer"))
        return "INTEGER";
    if (!strcmp(label, "real"))
        return "REAL";
    if (!strcmp(label, "boolean"))
        return "BOOLEAN";
    if (!strcmp(label, "blob"))
        return "BLOB";
    return "TEXT";
}

static int parse_table(ferry_replica *r, json_t *j, struct fc_table *t)
{
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *pk = json_string_value(json_object_get(j, "primaryKey"));
    json_t *cols = json_object_get(j, "columns"), *c;
    size_t i;

    if (!name || !pk || !json_is_array(cols) || !json_array_size(cols))
        return fc_fail(r, FERRY_CLIENT_ESERVER, "the server's schema is malformed");
    /* libferry's and SQLite's own tables are never synced (ferry refuses ferry_ names
     * too): writing them would let the answer switch capture off or forge the outbox */
    if (!strncasecmp(name, "ferry_", 6) || !strncasecmp(name, "sqlite_", 7))
        return fc_fail(r, FERRY_CLIENT_ESERVER,
                       "table %s is the replica's own: the server's schema may not list it", name);
    t->name = xstrdup(name);
    t->quoted = quote_ident(name);
    t->cols = xcalloc(json_array_size(cols), sizeof(*t->cols));
    t->pk = -1;
    json_array_foreach(cols, i, c)
    {
        const char *col = json_string_value(json_object_get(c, "name"));
        const char *type = json_string_value(json_object_get(c, "type"));
        if (!col || !type)
            return fc_fail(r, FERRY_CLIENT_ESERVER, "the server's schema is malformed");
        t->cols[i].name = xstrdup(col);
        t->cols[i].quoted = quote_ident(col);
        t->cols[i].type = xstrdup(type);
        if (!strcmp(col, pk))
            t->pk = (int)i;
        t->n_cols++;
    }
    if (t->pk < 0)
        return fc_fail(r, FERRY_CLIENT_ESERVER, "table %s: no primary key in the schema", name);
    return FERRY_CLIENT_OK;
}

static char *create_sql(const struct fc_table *t)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "CREATE TABLE IF NOT EXISTS %s (", t->quoted);
    for (int i = 0; i < t->n_cols; i++)
        buf_printf(&b, "%s %s, ", t->cols[i].quoted, sqlite_type(t->cols[i].type));
    buf_printf(&b, "PRIMARY KEY (%s));", t->cols[t->pk].quoted);
    return buf_steal(&b);
}

/* Every column the server syncs must be in the local table (it may have more). */
static int check_columns(ferry_replica *r, const struct fc_table *t)
{
    for (int i = 0; i < t->n_cols; i++) {
        int found = sqlite3_table_column_metadata(r->db, NULL, t->name, t->cols[i].name, NULL, NULL,
                                                  NULL, NULL, NULL);
        if (found != SQLITE_OK)
            return fc_fail(r, FERRY_CLIENT_ESCHEMA,
                           "local table %s has no column %s, which the server syncs", t->name,
                           t->cols[i].name);
    }
    return FERRY_CLIENT_OK;
}

/* The name of one of t's capture triggers, quoted. */
static char *trigger_name(const struct fc_table *t, const char *what)
{
    char *name = xasprintf("ferry_client_%s_%s", what, t->name);
    char *q = quote_ident(name);
    free(name);
    return q;
}

static char *triggers_sql(const struct fc_table *t)
{
    char *lit = quote_literal(t->name);
    const char *pk = t->cols[t->pk].quoted;
    const char *when = "WHEN (SELECT applying FROM ferry_client_state WHERE id = 1) = 0";
    char *ins = trigger_name(t, "ins"), *upd = trigger_name(t, "upd"),
         *del = trigger_name(t, "del");
    /* An update that changes the key records both keys: the old one reads as gone. */
    char *sql = xasprintf(
        "CREATE TRIGGER IF NOT EXISTS %s AFTER INSERT ON %s %s BEGIN"
        " INSERT INTO ferry_client_outbox(tbl, pk) VALUES (%s, CAST(NEW.%s AS TEXT)); END;"
        "CREATE TRIGGER IF NOT EXISTS %s AFTER UPDATE ON %s %s BEGIN"
        " INSERT INTO ferry_client_outbox(tbl, pk) SELECT %s, CAST(OLD.%s AS TEXT)"
        "  WHERE OLD.%s IS NOT NEW.%s;"
        " INSERT INTO ferry_client_outbox(tbl, pk) VALUES (%s, CAST(NEW.%s AS TEXT)); END;"
        "CREATE TRIGGER IF NOT EXISTS %s AFTER DELETE ON %s %s BEGIN"
        " INSERT INTO ferry_client_outbox(tbl, pk) VALUES (%s, CAST(OLD.%s AS TEXT)); END;",
        ins, t->quoted, when, lit, pk, upd, t->quoted, when, lit, pk, pk, pk, lit, pk, del,
        t->quoted, when, lit, pk);
    free(ins);
    free(upd);
    free(del);
    free(lit);
    return sql;
}

int fc_capture_off(ferry_replica *r)
{
    int rc = FERRY_CLIENT_OK;
    for (int i = 0; rc == FERRY_CLIENT_OK && i < r->n_tables; i++) {
        const char *what[] = {"ins", "upd", "del"};
        for (int k = 0; rc == FERRY_CLIENT_OK && k < 3; k++) {
            char *name = trigger_name(&r->tables[i], what[k]);
            char *sql = xasprintf("DROP TRIGGER IF EXISTS %s", name);
            rc = fc_exec(r, sql);
            free(sql);
            free(name);
        }
    }
    return rc;
}

int fc_capture_on(ferry_replica *r)
{
    int rc = FERRY_CLIENT_OK;
    for (int i = 0; rc == FERRY_CLIENT_OK && i < r->n_tables; i++) {
        char *sql = triggers_sql(&r->tables[i]);
        rc = fc_exec(r, sql);
        free(sql);
    }
    return rc;
}

static int table_exists(ferry_replica *r, const char *name)
{
    return sqlite3_table_column_metadata(r->db, NULL, name, NULL, NULL, NULL, NULL, NULL, NULL) ==
           SQLITE_OK;
}

static int setup_table(ferry_replica *r, const struct fc_table *t)
{
    int rc = FERRY_CLIENT_OK;
    if (!table_exists(r, t->name)) {
        char *sql = create_sql(t);
        rc = fc_exec(r, sql);
        free(sql);
    } else {
        rc = check_columns(r, t);
    }
    if (rc == FERRY_CLIENT_OK) {
        char *sql = triggers_sql(t);
        rc = fc_exec(r, sql);
        free(sql);
    }
    return rc;
}

int fc_replica_setup(ferry_replica *r, json_t *schema)
{
    json_t *tables = json_object_get(schema, "tables"), *j;
    size_t i;
    int rc;

    if (!json_is_array(tables))
        return fc_fail(r, FERRY_CLIENT_ESERVER, "the server's schema is malformed");
    if ((rc = fc_exec(r, "BEGIN IMMEDIATE")) != FERRY_CLIENT_OK)
        return rc;
    rc = fc_exec(r, SETUP_SQL);
    r->tables = xcalloc(json_array_size(tables) + 1, sizeof(*r->tables));
    json_array_foreach(tables, i, j)
    {
        if (rc != FERRY_CLIENT_OK)
            break;
        rc = parse_table(r, j, &r->tables[r->n_tables++]);
        if (rc == FERRY_CLIENT_OK)
            rc = setup_table(r, &r->tables[r->n_tables - 1]);
    }
    if (rc == FERRY_CLIENT_OK)
        rc = fc_exec(r, "COMMIT");
    if (rc != FERRY_CLIENT_OK)
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

const struct fc_table *fc_table_find(const ferry_replica *r, const char *name)
{
    for (int i = 0; name && i < r->n_tables; i++)
        if (!strcmp(r->tables[i].name, name))
            return &r->tables[i];
    return NULL;
}

void fc_bind_key(sqlite3_stmt *st, int idx, const struct fc_table *t, const char *key)
{
    if (!strcmp(t->cols[t->pk].type, "integer"))
        sqlite3_bind_int64(st, idx, strtoll(key, NULL, 10));
    else
        sqlite3_bind_text(st, idx, key, -1, SQLITE_TRANSIENT);
}

/* --- values: SQLite <-> the server's JSON ------------------------------------------ */

static json_t *text_of_number(sqlite3_stmt *st, int i)
{
    return json_string((const char *)sqlite3_column_text(st, i));
}

/* Column i of the current row as the server expects a value of type. */
static json_t *value_json(sqlite3_stmt *st, int i, const char *type)
{
    int kind = sqlite3_column_type(st, i);
    if (kind == SQLITE_NULL)
        return json_null();
    if (!strcmp(type, "boolean") && kind == SQLITE_INTEGER)
        return json_boolean(sqlite3_column_int64(st, i) != 0);
    if (!strcmp(type, "blob")) {
        char *b64 = base64_encode(sqlite3_column_blob(st, i), (size_t)sqlite3_column_bytes(st, i));
        json_t *s = json_string(b64);
        free(b64);
        return s;
    }
    if (!strcmp(type, "json")) {
        const char *text = (const char *)sqlite3_column_text(st, i);
        json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
        return v ? v : json_string(text);
    }
    bool numeric = !strcmp(type, "integer") || !strcmp(type, "real") || !strcmp(type, "numeric") ||
                   !strcmp(type, "boolean");
    if (kind == SQLITE_INTEGER)
        return numeric ? json_integer(sqlite3_column_int64(st, i)) : text_of_number(st, i);
    if (kind == SQLITE_FLOAT)
        return numeric ? json_real(sqlite3_column_double(st, i)) : text_of_number(st, i);
    return json_stringn((const char *)sqlite3_column_text(st, i),
                        (size_t)sqlite3_column_bytes(st, i));
}

json_t *fc_row_json(ferry_replica *r, const struct fc_table *t, const char *key, int *status)
{
    struct buf sql;
    sqlite3_stmt *st = NULL;
    json_t *row = NULL;

    buf_init(&sql);
    buf_puts(&sql, "SELECT ");
    for (int i = 0; i < t->n_cols; i++)
        buf_printf(&sql, "%s%s", i ? ", " : "", t->cols[i].quoted);
    buf_printf(&sql, " FROM %s WHERE %s = ?", t->quoted, t->cols[t->pk].quoted);
    *status = FERRY_CLIENT_OK;
    if (sqlite3_prepare_v2(r->db, sql.data, -1, &st, NULL) != SQLITE_OK) {
        *status = fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", sqlite3_errmsg(r->db));
        goto out;
    }
    fc_bind_key(st, 1, t, key);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        row = json_object();
        for (int i = 0; i < t->n_cols; i++)
            json_object_set_new(row, t->cols[i].name, value_json(st, i, t->cols[i].type));
    } else if (step != SQLITE_DONE) {
        *status = fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", sqlite3_errmsg(r->db));
    }
out:
    sqlite3_finalize(st);
    buf_cleanup(&sql);
    return row;
}

/* Binds a value the server sent for a column of type. */
static int bind_value(sqlite3_stmt *st, int idx, const char *type, json_t *v)
{
    if (json_is_null(v))
        return sqlite3_bind_null(st, idx);
    if (json_is_boolean(v))
        return sqlite3_bind_int(st, idx, json_is_true(v));
    if (json_is_integer(v))
        return sqlite3_bind_int64(st, idx, json_integer_value(v));
    if (json_is_real(v))
        return sqlite3_bind_double(st, idx, json_real_value(v));
    if (json_is_string(v) && !strcmp(type, "blob")) {
        size_t len = json_string_length(v);
        void *bytes = xmalloc(len / 4 * 3 + 3);
        ssize_t n = base64_decode(json_string_value(v), len, bytes, len / 4 * 3 + 3);
        int rc = n < 0 ? SQLITE_MISMATCH : sqlite3_bind_blob(st, idx, bytes, (int)n, free);
        if (n < 0)
            free(bytes);
        return rc;
    }
    if (json_is_string(v))
        return sqlite3_bind_text(st, idx, json_string_value(v), (int)json_string_length(v),
                                 SQLITE_STATIC); /* v outlives the statement's step */
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return sqlite3_bind_text(st, idx, text, -1, free);
}

static int run(ferry_replica *r, sqlite3_stmt *st)
{
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step == SQLITE_DONE || step == SQLITE_ROW)
        return FERRY_CLIENT_OK;
    return fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", sqlite3_errmsg(r->db));
}

/* The cached statement slots of table t (made on first use). */
static sqlite3_stmt **table_slot(ferry_replica *r, const struct fc_table *t, bool upsert)
{
    if (!r->st_upsert) {
        r->st_upsert = xcalloc((size_t)r->n_tables + 1, sizeof(*r->st_upsert));
        r->st_delete = xcalloc((size_t)r->n_tables + 1, sizeof(*r->st_delete));
    }
    return (upsert ? r->st_upsert : r->st_delete) + (t - r->tables);
}

static int delete_row(ferry_replica *r, const struct fc_table *t, const char *key)
{
    char *sql = xasprintf("DELETE FROM %s WHERE %s = ?", t->quoted, t->cols[t->pk].quoted);
    sqlite3_stmt *st = fc_cached(r, table_slot(r, t, false), sql);
    free(sql);
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    fc_bind_key(st, 1, t, key);
    return fc_step_reset(r, st);
}

/* The upsert of the columns data gives; *all says whether that is every column. */
static char *upsert_sql(const struct fc_table *t, json_t *data, bool *all)
{
    struct buf cols, vals, set;
    int n = 0;
    buf_init(&cols), buf_init(&vals), buf_init(&set);
    for (int i = 0; i < t->n_cols; i++) {
        if (!json_object_get(data, t->cols[i].name))
            continue;
        buf_printf(&cols, "%s%s", n ? ", " : "", t->cols[i].quoted);
        buf_printf(&vals, "%s?", n ? ", " : "");
        if (i != t->pk)
            buf_printf(&set, "%s%s = excluded.%s", set.len ? ", " : "", t->cols[i].quoted,
                       t->cols[i].quoted);
        n++;
    }
    *all = n == t->n_cols;
    char *sql =
        xasprintf("INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO %s%s", t->quoted,
                  cols.data ? cols.data : "", vals.data ? vals.data : "", t->cols[t->pk].quoted,
                  set.len ? "UPDATE SET " : "NOTHING", set.len ? set.data : "");
    buf_cleanup(&cols), buf_cleanup(&vals), buf_cleanup(&set);
    return sql;
}

/* An upsert of the columns data gives (the feed gives whole rows, whose statement is
 * prepared once per table; columns the replica does not sync are left alone). */
static int upsert_row(ferry_replica *r, const struct fc_table *t, json_t *data)
{
    sqlite3_stmt **slot = table_slot(r, t, true), *st = NULL;
    int present = 0;
    for (int i = 0; i < t->n_cols; i++)
        present += json_object_get(data, t->cols[i].name) != NULL;
    bool all = present == t->n_cols;
    if (all && *slot) {
        st = *slot;
    } else {
        char *sql = upsert_sql(t, data, &all);
        st = all ? fc_cached(r, slot, sql) : fc_prepare(r, sql);
        free(sql);
    }
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    int n = 0;
    for (int i = 0; i < t->n_cols; i++) {
        json_t *v = json_object_get(data, t->cols[i].name);
        if (v && bind_value(st, ++n, t->cols[i].type, v) != SQLITE_OK) {
            all ? (void)(sqlite3_reset(st), sqlite3_clear_bindings(st))
                : (void)sqlite3_finalize(st);
            return fc_fail(r, FERRY_CLIENT_ESERVER,
                           "table %s: column %s: a value of the wrong kind", t->name,
                           t->cols[i].name);
        }
    }
    return all ? fc_step_reset(r, st) : run(r, st);
}

int fc_apply_row(ferry_replica *r, const struct fc_table *t, const char *key, json_t *data)
{
    return data ? upsert_row(r, t, data) : delete_row(r, t, key);
}

/* Binds a value of a page as bind_value binds the same value parsed by jansson. */
static int bind_page_value(sqlite3_stmt *st, int idx, const char *type, const struct fc_value *v)
{
    switch (v->kind) {
    case FC_NULL:
        return sqlite3_bind_null(st, idx);
    case FC_FALSE:
    case FC_TRUE:
        return sqlite3_bind_int(st, idx, v->kind == FC_TRUE);
    case FC_INT:
        return sqlite3_bind_int64(st, idx, v->i);
    case FC_REAL:
        return sqlite3_bind_double(st, idx, v->d);
    case FC_STRING:
        if (strcmp(type, "blob") != 0) /* the page outlives the statement's step */
            return sqlite3_bind_text(st, idx, v->s, (int)v->len, SQLITE_STATIC);
        break;
    default:
        break;
    }
    json_t *j = fc_value_json(v); /* a blob's base64, a nested value: rare, as before */
    int rc = j ? bind_value(st, idx, type, j) : SQLITE_MISMATCH;
    json_decref(j);
    return rc;
}

/* Where the value of each of t's columns is in c (the last one of a name, as jansson
 * keeps it); false when c lacks one. */
static bool whole_row(const struct fc_table *t, const struct fc_page *pg, const struct fc_change *c,
                      size_t *at)
{
    for (int i = 0; i < t->n_cols; i++) {
        at[i] = SIZE_MAX;
        for (size_t k = c->first; k < c->first + c->n; k++)
            if (!strcmp(pg->values[k].col, t->cols[i].name))
                at[i] = k;
        if (at[i] == SIZE_MAX)
            return false;
    }
    return true;
}

int fc_apply_change(ferry_replica *r, const struct fc_table *t, const char *key,
                    const struct fc_page *pg, const struct fc_change *c)
{
    if (!c)
        return delete_row(r, t, key);
    size_t few[32], *at = t->n_cols <= 32 ? few : xcalloc((size_t)t->n_cols, sizeof(*at));
    sqlite3_stmt **slot = table_slot(r, t, true), *st = NULL;
    int rc = FERRY_CLIENT_ELOCAL;
    if (!whole_row(t, pg, c, at)) { /* some columns only: the upsert of those */
        json_t *data = fc_change_data(pg, c);
        rc = upsert_row(r, t, data);
        json_decref(data);
        goto out;
    }
    if (!*slot) {
        bool all;
        json_t *data = fc_change_data(pg, c);
        char *sql = upsert_sql(t, data, &all);
        fc_cached(r, slot, sql);
        free(sql);
        json_decref(data);
    }
    if (!(st = *slot))
        goto out;
    for (int i = 0; i < t->n_cols; i++)
        if (bind_page_value(st, i + 1, t->cols[i].type, &pg->values[at[i]]) != SQLITE_OK) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            rc = fc_fail(r, FERRY_CLIENT_ESERVER, "table %s: column %s: a value of the wrong kind",
                         t->name, t->cols[i].name);
            goto out;
        }
    rc = fc_step_reset(r, st);
out:
    if (at != few)
        free(at);
    return rc;
}

int fc_state_get(ferry_replica *r, const char *column, int64_t *value)
{
    sqlite3_stmt *st = NULL;
    char *sql = xasprintf("SELECT %s FROM ferry_client_state WHERE id = 1", column);
    int rc = sqlite3_prepare_v2(r->db, sql, -1, &st, NULL);
    free(sql);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        *value = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return FERRY_CLIENT_OK;
    }
    sqlite3_finalize(st);
    return fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", sqlite3_errmsg(r->db));
}

int fc_state_set(ferry_replica *r, const char *column, int64_t value)
{
    char *sql =
        xasprintf("UPDATE ferry_client_state SET %s = %lld WHERE id = 1", column, (long long)value);
    int rc = fc_exec(r, sql);
    free(sql);
    return rc;
}

/* --- small statements shared by push and pull ---------------------------------------- */

sqlite3_stmt *fc_prepare(ferry_replica *r, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
        fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", sqlite3_errmsg(r->db));
    return st;
}

int fc_finish(ferry_replica *r, sqlite3_stmt *st)
{
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step == SQLITE_DONE || step == SQLITE_ROW)
        return FERRY_CLIENT_OK;
    return fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", sqlite3_errmsg(r->db));
}

int fc_run_text(ferry_replica *r, const char *sql, const char *a, const char *b)
{
    sqlite3_stmt *st = fc_prepare(r, sql);
    if (st && a)
        sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
    if (st && b)
        sqlite3_bind_text(st, 2, b, -1, SQLITE_TRANSIENT);
    return fc_finish(r, st);
}

int fc_set_version(ferry_replica *r, const char *tbl, const char *pk, int64_t version)
{
    sqlite3_stmt *st = fc_cached(r, &r->st_version,
                                 "INSERT INTO ferry_client_rows(tbl, pk, version)"
                                 " VALUES (?, ?, ?) ON CONFLICT (tbl, pk)"
                                 " DO UPDATE SET version = excluded.version");
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    sqlite3_bind_text(st, 1, tbl, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, pk, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, version);
    return fc_step_reset(r, st);
}

sqlite3_stmt *fc_cached(ferry_replica *r, sqlite3_stmt **slot, const char *sql)
{
    if (!*slot &&
        sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK) {
        fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", sqlite3_errmsg(r->db));
        sqlite3_finalize(*slot);
        *slot = NULL;
    }
    return *slot;
}

int fc_step_reset(ferry_replica *r, sqlite3_stmt *st)
{
    int step = sqlite3_step(st);
    int rc = step == SQLITE_DONE || step == SQLITE_ROW
                 ? FERRY_CLIENT_OK
                 : fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", sqlite3_errmsg(r->db));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

void fc_cache_free(ferry_replica *r)
{
    sqlite3_finalize(r->st_pending);
    sqlite3_finalize(r->st_version);
    sqlite3_finalize(r->st_any);
    for (int i = 0; r->st_upsert && i < r->n_tables; i++) {
        sqlite3_finalize(r->st_upsert[i]);
        sqlite3_finalize(r->st_delete[i]);
    }
    free(r->st_upsert);
    free(r->st_delete);
    r->st_pending = r->st_version = r->st_any = NULL;
    r->st_upsert = r->st_delete = NULL;
}

bool fc_has_pending(ferry_replica *r, const char *tbl, const char *pk)
{
    sqlite3_stmt *st = fc_cached(
        r, &r->st_pending, "SELECT 1 FROM ferry_client_outbox WHERE tbl = ? AND pk = ? LIMIT 1");
    bool found = false;
    if (st) {
        sqlite3_bind_text(st, 1, tbl, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, pk, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    return found;
}

bool fc_outbox_any(ferry_replica *r)
{
    sqlite3_stmt *st = fc_cached(r, &r->st_any, "SELECT 1 FROM ferry_client_outbox LIMIT 1");
    bool found = !st || sqlite3_step(st) == SQLITE_ROW; /* unsure: look row by row */
    if (st)
        sqlite3_reset(st);
    return found;
}

int fc_in_apply_txn(ferry_replica *r, int (*body)(ferry_replica *, void *), void *ctx)
{
    int rc = fc_exec(r, "BEGIN IMMEDIATE");
    if (rc != FERRY_CLIENT_OK)
        return rc;
    rc = fc_state_set(r, "applying", 1);
    if (rc == FERRY_CLIENT_OK)
        rc = body(r, ctx);
    return fc_apply_end(r, rc);
}

int fc_apply_end(ferry_replica *r, int rc)
{
    if (rc == FERRY_CLIENT_OK)
        rc = fc_state_set(r, "applying", 0);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_exec(r, "COMMIT");
    if (rc != FERRY_CLIENT_OK)
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
