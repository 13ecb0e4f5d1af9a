/* sitedata.c - see sitedata.h. Table and column names come from the database's own
 * catalog (store_list_tables, store_table_info) and are quoted; values are bound. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "sites/sitedata.h"
#include "sync/values.h"
#include "util/base64.h"
#include "util/buf.h"

/* PhoenixKit's rule for table names in requests. */
static bool valid_name(const char *name)
{
    if (!name || !(isalpha((unsigned char)*name) || *name == '_'))
        return false;
    for (const char *p = name; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return false;
    return true;
}

bool sitedata_visible(const struct site *s, const char *table)
{
    return valid_name(table) && strncasecmp(table, "ferry_", 6) != 0 &&
           sites_table_allowed(s, table);
}

/* Whether the database has a table of exactly this name: SQLite finds tables whatever
 * the case of the name, which would let "SECRET" past an exclusion of "secret" and
 * "FERRY_SITES" past the rule on ferry's own tables. */
static bool exists_exactly(struct store_conn *c, const char *table)
{
    char **names = NULL;
    size_t n = 0;
    bool found = false;
    if (store_list_tables(c, &names, &n, NULL) != FERRY_OK)
        return false;
    for (size_t i = 0; i < n; i++) {
        found = found || !strcmp(names[i], table);
        free(names[i]);
    }
    free(names);
    return found;
}

/* The table's description, when s may see it; ERR_NOT_FOUND otherwise. */
static int describe(struct store_conn *c, const struct site *s, const char *table,
                    struct store_table **t, struct err *err)
{
    struct err inner = {0};
    *t = NULL;
    if (!sitedata_visible(s, table) || !exists_exactly(c, table) ||
        store_table_info(c, table, t, &inner) != FERRY_OK) {
        if (inner.code != ERR_NONE && inner.code != ERR_NOT_FOUND) {
            *err = inner;
            return FERRY_ERR;
        }
        return err_set(err, ERR_NOT_FOUND, "Table not found");
    }
    return FERRY_OK;
}

static json_t *binary_json(const void *bytes, size_t len)
{
    char *enc = base64_encode(bytes, len);
    json_t *v = json_pack("{s:s}", PHOENIX_BINARY_KEY, enc);
    free(enc);
    return v;
}

json_t *sitedata_value(const struct store_table *t, size_t col, const struct store_rows *rows,
                       int at)
{
    enum col_kind kind = values_kind_of(t->cols[col].decl_type);
    enum store_type stored = store_rows_type(rows, at);
    if (kind == KIND_BLOB || stored == SV_BLOB) {
        size_t len = 0;
        const void *bytes = store_rows_blob(rows, at, &len);
        if (stored == SV_NULL)
            return json_null();
        json_t *text = json_stringn(bytes, len); /* NULL when not UTF-8 */
        return text ? text : binary_json(bytes, len);
    }
    json_t *v = values_to_json(kind, rows, at);
    if (v)
        return v;
    /* text that is not UTF-8 (SQLite stores what it is given) */
    const char *text = store_rows_text(rows, at);
    return binary_json(text, strlen(text));
}

/* The columns of t, quoted, for a SELECT list. */
static char *column_list(const struct store_table *t)
{
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < t->n_cols; i++) {
        char *q = store_quote_ident(t->cols[i].name);
        buf_printf(&b, "%s%s", i ? ", " : "", q);
        free(q);
    }
    return buf_steal(&b);
}

static int pk_index(const struct store_table *t)
{
    if (t->n_pk != 1)
        return -1;
    for (size_t i = 0; i < t->n_cols; i++)
        if (t->cols[i].primary_key)
            return (int)i;
    return -1;
}

/* Runs sql and appends each row as an object to *out. */
static int fetch_rows(struct store_conn *c, const struct store_table *t, const char *sql,
                      const struct store_val *v, size_t n, json_t *out, struct err *err)
{
    struct store_rows *rows = NULL;
    int step = 0;
    int rc = store_query(c, sql, v, n, &rows, err);
    while (rc == FERRY_OK && (step = store_rows_next(rows, err)) == 1) {
        json_t *row = json_object();
        for (size_t i = 0; i < t->n_cols; i++)
            json_object_set_new(row, t->cols[i].name, sitedata_value(t, i, rows, (int)i));
        json_array_append_new(out, row);
    }
    store_rows_free(rows);
    return rc == FERRY_OK && step >= 0 ? FERRY_OK : FERRY_ERR;
}

int sitedata_tables(struct store_conn *c, const struct site *s, json_t **out, struct err *err)
{
    char **names = NULL;
    size_t n = 0;
    int rc = FERRY_OK;
    bool pg = store_conn_dialect(c) == STORE_POSTGRES;
    *out = json_array();
    if (store_list_tables(c, &names, &n, err) != FERRY_OK)
        return FERRY_ERR;
    for (size_t i = 0; i < n; i++) {
        if (rc != FERRY_OK || !sitedata_visible(s, names[i])) {
            free(names[i]);
            continue;
        }
        char *q = store_quote_ident(names[i]);
        char *sql = xasprintf("SELECT COUNT(*) FROM %s", q);
        int64_t count = 0, size = 0;
        bool found = false;
        struct store_val name = sv_text(names[i]);
        rc = store_query_int(c, sql, NULL, 0, &count, &found, err);
        /* the size as the database counts it; SQLite's needs its dbstat table, which a
         * build may lack: then 0 */
        if (rc == FERRY_OK && pg)
            rc = store_query_int(c, "SELECT pg_total_relation_size(quote_ident($1)::regclass)",
                                 &name, 1, &size, &found, err);
        else if (rc == FERRY_OK)
            store_query_int(c, "SELECT SUM(pgsize) FROM dbstat WHERE name = $1", &name, 1, &size,
                            &found, NULL);
        json_array_append_new(*out, json_pack("{s:s, s:I, s:I}", "name", names[i], "row_count",
                                              (json_int_t)count, "size_bytes", (json_int_t)size));
        free(sql);
        free(q);
        free(names[i]);
    }
    free(names);
    return rc;
}

/* "varchar(255)" -> 255; null when the type has no length. */
static json_t *max_length(const char *decl)
{
    const char *open = strchr(decl, '(');
    if (!open || (strncmp(decl, "varchar", 7) && strncmp(decl, "character", 9) &&
                  strncmp(decl, "char", 4) && strncmp(decl, "nvarchar", 8)))
        return json_null();
    long n = strtol(open + 1, NULL, 10);
    return n > 0 ? json_integer(n) : json_null();
}

int sitedata_schema(struct store_conn *c, const struct site *s, const char *table, json_t **out,
                    struct err *err)
{
    struct store_table *t = NULL;
    if (describe(c, s, table, &t, err) != FERRY_OK)
        return FERRY_ERR;
    json_t *cols = json_array();
    for (size_t i = 0; i < t->n_cols; i++) {
        const struct store_column *col = &t->cols[i];
        json_array_append_new(
            cols, json_pack("{s:s, s:s, s:s, s:s?, s:o, s:b}", "column_name", col->name,
                            "data_type", col->decl_type, "is_nullable",
                            col->not_null || col->primary_key ? "NO" : "YES", "column_default",
                            col->default_expr, "character_maximum_length",
                            max_length(col->decl_type), "primary_key", col->primary_key));
    }
    *out = json_pack("{s:s, s:o}", "table_name", table, "columns", cols);
    store_table_free(t);
    return FERRY_OK;
}

/* Binds a key given in JSON as the primary key column's type. */
static int bind_key(const struct store_table *t, int pk, json_t *key, struct owned_val *out,
                    struct err *err)
{
    enum col_kind kind = values_kind_of(t->cols[pk].decl_type);
    if (values_from_json(kind, key, out, err) != FERRY_OK) {
        /* err->msg is both the source and the target of the new message: copy it first */
        char why[sizeof(err->msg)];
        snprintf(why, sizeof(why), "%s", err->msg);
        return err_set(err, ERR_INVALID, "key for '%s': %s", t->cols[pk].name, why);
    }
    return FERRY_OK;
}

int sitedata_records(struct store_conn *c, const struct site *s, const struct records_query *q,
                     json_t **out, struct err *err)
{
    struct store_table *t = NULL;
    struct owned_val keys[102] = {{{0}, NULL}};
    size_t n_keys = 0;
    int rc = FERRY_ERR;
    *out = NULL;
    if (describe(c, s, q->table, &t, err) != FERRY_OK)
        return FERRY_ERR;
    int pk = pk_index(t);
    char *cols = column_list(t), *pkq = pk >= 0 ? store_quote_ident(t->cols[pk].name) : NULL;
    char *tq = store_quote_ident(q->table);
    struct buf sql;
    buf_init(&sql);
    buf_printf(&sql, "SELECT %s FROM %s", cols, tq);
    if ((q->ids || q->id_start || q->id_end) && pk < 0) {
        err_set(err, ERR_INVALID, "table '%s' has no single-column primary key", q->table);
        goto out;
    }
    if (q->ids) {
        size_t i;
        json_t *id;
        if (json_array_size(q->ids) == 0 || json_array_size(q->ids) > 100) {
            err_set(err, ERR_INVALID, "ids must list 1 to 100 keys");
            goto out;
        }
        buf_printf(&sql, " WHERE %s IN (", pkq);
        json_array_foreach(q->ids, i, id)
        {
            if (bind_key(t, pk, id, &keys[n_keys], err) != FERRY_OK)
                goto out;
            buf_printf(&sql, "%s$%zu", i ? ", " : "", ++n_keys);
        }
        buf_puts(&sql, ")");
    } else if (q->id_start || q->id_end) {
        const char *joiner = " WHERE";
        if (q->id_start) {
            if (bind_key(t, pk, q->id_start, &keys[n_keys], err) != FERRY_OK)
                goto out;
            buf_printf(&sql, "%s %s >= $%zu", joiner, pkq, ++n_keys);
            joiner = " AND";
        }
        if (q->id_end) {
            if (bind_key(t, pk, q->id_end, &keys[n_keys], err) != FERRY_OK)
                goto out;
            buf_printf(&sql, "%s %s <= $%zu", joiner, pkq, ++n_keys);
        }
    }
    if (pk >= 0)
        buf_printf(&sql, " ORDER BY %s", pkq);
    buf_printf(&sql, " LIMIT %lld OFFSET %lld", (long long)q->limit, (long long)q->offset);
    struct store_val v[102];
    for (size_t i = 0; i < n_keys; i++)
        v[i] = keys[i].val;
    *out = json_array();
    rc = fetch_rows(c, t, sql.data, v, n_keys, *out, err);
    if (rc != FERRY_OK) {
        json_decref(*out);
        *out = NULL;
    }
out:
    for (size_t i = 0; i < n_keys; i++)
        values_release(&keys[i]);
    buf_cleanup(&sql);
    free(cols);
    free(pkq);
    free(tq);
    store_table_free(t);
    return rc;
}

int sitedata_pull(struct store_conn *c, const struct site *s, const char *table, int64_t limit,
                  json_t *after, json_t **rows, json_t **next_after, struct err *err)
{
    struct store_table *t = NULL;
    struct owned_val key = {{0}, NULL};
    struct store_val v[1];
    size_t n = 0;
    int64_t offset = 0;
    int rc = FERRY_ERR;
    *rows = NULL;
    *next_after = NULL;
    if (describe(c, s, table, &t, err) != FERRY_OK)
        return FERRY_ERR;
    int pk = pk_index(t);
    char *cols = column_list(t), *tq = store_quote_ident(table);
    char *pkq = pk >= 0 ? store_quote_ident(t->cols[pk].name) : NULL, *sql = NULL;
    if (pk >= 0 && after && !json_is_null(after)) {
        if (bind_key(t, pk, after, &key, err) != FERRY_OK)
            goto out;
        v[n++] = key.val;
    } else if (pk < 0 && after && !json_is_null(after)) {
        json_t *o = json_object_get(after, "offset");
        if (!json_is_integer(o) || json_integer_value(o) < 0) {
            err_set(err, ERR_INVALID,
                    "after must be {\"offset\": n} for a table without a "
                    "single-column primary key");
            goto out;
        }
        offset = json_integer_value(o);
    }
    if (pk >= 0)
        sql = xasprintf("SELECT %s FROM %s%s%s%s ORDER BY %s LIMIT %lld", cols, tq,
                        n ? " WHERE " : "", n ? pkq : "", n ? " > $1" : "", pkq, (long long)limit);
    else /* no key to page by: position, in the order of every column */
        sql = xasprintf("SELECT %s FROM %s ORDER BY %s LIMIT %lld OFFSET %lld", cols, tq, cols,
                        (long long)limit, (long long)offset);
    *rows = json_array();
    if (fetch_rows(c, t, sql, v, n, *rows, err) != FERRY_OK) {
        json_decref(*rows);
        *rows = NULL;
        goto out;
    }
    size_t got = json_array_size(*rows);
    if ((int64_t)got < limit)
        *next_after = json_null();
    else if (pk >= 0)
        *next_after =
            json_incref(json_object_get(json_array_get(*rows, got - 1), t->cols[pk].name));
    else
        *next_after = json_pack("{s:I}", "offset", (json_int_t)(offset + (int64_t)got));
    rc = FERRY_OK;
out:
    values_release(&key);
    free(sql);
    free(cols);
    free(tq);
    free(pkq);
    store_table_free(t);
    return rc;
}
