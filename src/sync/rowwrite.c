/* rowwrite.c - see rowwrite.h. */
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "store/store.h"
#include "sync/rowwrite.h"
#include "util/buf.h"

void rowwrite_table_init(struct rowwrite_table *t, const char *table, const char *const *cols,
                         size_t n_cols, int key)
{
    t->quoted = store_quote_ident(table);
    t->cols = xcalloc(n_cols ? n_cols : 1, sizeof(*t->cols));
    for (size_t i = 0; i < n_cols; i++)
        t->cols[i] = store_quote_ident(cols[i]);
    t->n_cols = n_cols;
    t->key = key;
}

void rowwrite_table_free(struct rowwrite_table *t)
{
    for (size_t i = 0; t->cols && i < t->n_cols; i++)
        free(t->cols[i]);
    free(t->cols);
    for (size_t i = 0; t->types && i < t->n_cols; i++)
        free(t->types[i]);
    free(t->types);
    t->types = NULL;
    free(t->quoted);
    t->cols = NULL;
    t->quoted = NULL;
}

void rowwrite_table_types(struct rowwrite_table *t, const char *const *types)
{
    t->types = xcalloc(t->n_cols ? t->n_cols : 1, sizeof(*t->types));
    /* The catalog's names come lower-cased: a quoted one (a type whose name needs quotes)
     * may then name another type, so it is left out. */
    for (size_t i = 0; i < t->n_cols; i++)
        t->types[i] = types[i] && !strchr(types[i], '"') ? xstrdup(types[i]) : NULL;
}

char *rowwrite_insert(const struct rowwrite_table *t, const int *cols, size_t n, size_t rows,
                      enum rowwrite_existing existing)
{
    struct buf b;
    size_t param = 1, set = 0;
    buf_init(&b);
    buf_printf(&b, "INSERT INTO %s (", t->quoted);
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "%s%s", i ? ", " : "", t->cols[cols[i]]);
    buf_puts(&b, ") VALUES ");
    for (size_t r = 0; r < rows; r++) {
        buf_puts(&b, r ? ", (" : "(");
        for (size_t i = 0; i < n; i++)
            buf_printf(&b, "%s$%zu", i ? ", " : "", param++);
        buf_puts(&b, ")");
    }
    if (existing == ROWWRITE_FAIL || t->key < 0)
        return buf_steal(&b);
    buf_printf(&b, " ON CONFLICT (%s) DO ", t->cols[t->key]);
    for (size_t i = 0; existing == ROWWRITE_UPDATE && i < n; i++) {
        if (cols[i] == t->key)
            continue;
        const char *q = t->cols[cols[i]];
        buf_printf(&b, "%s%s = excluded.%s", set++ ? ", " : "UPDATE SET ", q, q);
    }
    if (!set) /* an upsert of the key alone changes nothing either */
        buf_puts(&b, "NOTHING");
    return buf_steal(&b);
}

char *rowwrite_update(const struct rowwrite_table *t, const int *cols, size_t n)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "UPDATE %s SET ", t->quoted);
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "%s%s = $%zu", i ? ", " : "", t->cols[cols[i]], i + 2);
    buf_printf(&b, " WHERE %s = $1", t->cols[t->key]);
    return buf_steal(&b);
}

/* A parameter, cast to column col's type where parameters need one. */
static void add_param(struct buf *b, const struct rowwrite_table *t, int col, size_t param)
{
    if (t->types)
        buf_printf(b, "CAST($%zu AS %s)", param, t->types[col]);
    else
        buf_printf(b, "$%zu", param);
}

char *rowwrite_update_many(const struct rowwrite_table *t, const int *cols, size_t n, size_t rows)
{
    struct buf b;
    size_t param = 1;
    for (size_t i = 0; t->types && i < n; i++)
        if (!t->types[cols[i]])
            return NULL;
    buf_init(&b);
    buf_printf(&b, "UPDATE %s SET ", t->quoted);
    /* VALUES names its columns column1, column2, ... on both databases */
    for (size_t i = 1; i < n; i++)
        buf_printf(&b, "%s%s = v.column%zu", i > 1 ? ", " : "", t->cols[cols[i]], i + 1);
    buf_puts(&b, " FROM (VALUES ");
    for (size_t r = 0; r < rows; r++) {
        buf_puts(&b, r ? ", (" : "(");
        for (size_t i = 0; i < n; i++) {
            buf_puts(&b, i ? ", " : "");
            add_param(&b, t, cols[i], param++);
        }
        buf_puts(&b, ")");
    }
    buf_printf(&b, ") AS v WHERE %s.%s = v.column1", t->quoted, t->cols[t->key]);
    return buf_steal(&b);
}

char *rowwrite_delete_many(const struct rowwrite_table *t, size_t rows)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "DELETE FROM %s WHERE %s IN (", t->quoted, t->cols[t->key]);
    for (size_t r = 0; r < rows; r++)
        buf_printf(&b, "%s$%zu", r ? ", " : "", r + 1);
    buf_puts(&b, ")");
    return buf_steal(&b);
}

char *rowwrite_returning_key(const struct rowwrite_table *t)
{
    return xasprintf(" RETURNING CAST(%s.%s AS TEXT)", t->quoted, t->cols[t->key]);
}

char *rowwrite_delete(const struct rowwrite_table *t)
{
    return xasprintf("DELETE FROM %s WHERE %s = $1", t->quoted, t->cols[t->key]);
}

char *rowwrite_lock(const struct rowwrite_table *t, bool deleting)
{
    const char *k = t->cols[t->key];
    return xasprintf("SELECT 1 FROM %s WHERE %s = ANY($1) ORDER BY %s FOR %s NOWAIT", t->quoted, k,
                     k, deleting ? "UPDATE" : "NO KEY UPDATE");
}
