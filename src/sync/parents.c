/* parents.c - see parents.h. A foreign-key check takes FOR KEY SHARE on the parent row;
 * another program holding that row FOR UPDATE while its own write waits for the change
 * log's lock (which the push holds) would otherwise deadlock with the push. */
#include <stdlib.h>
#include <string.h>

#include "sync/parents.h"
#include "util/buf.h"

/* One row per column of each foreign key, in key order: constraint, parent table,
 * referencing column, referenced column (quoted) and its type. */
static const char FK_SQL[] =
    "SELECT c.conname, c.confrelid::regclass::text, ca.attname, quote_ident(pa.attname),"
    " format_type(pa.atttypid, pa.atttypmod)"
    " FROM pg_constraint c CROSS JOIN LATERAL"
    " unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(ck, pk, i)"
    " JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.ck"
    " JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.pk"
    " WHERE c.conrelid = CAST($1 AS regclass) AND c.contype = 'f'"
    " ORDER BY c.conname, k.i";

struct building {
    struct parent_key key;
    struct buf unnest, on;
};

static void start(struct building *b, const char *parent)
{
    memset(b, 0, sizeof(*b));
    buf_init(&b->unnest);
    buf_init(&b->on);
    buf_printf(&b->unnest, "SELECT 1 FROM %s p JOIN unnest(", parent);
}

static void add_column(struct building *b, int col, const char *parent_col, const char *type)
{
    size_t k = b->key.n_cols++;
    b->key.cols = xrealloc(b->key.cols, b->key.n_cols * sizeof(*b->key.cols));
    b->key.cols[k] = col;
    buf_printf(&b->unnest, "%sCAST($%zu AS text[])", k ? ", " : "", k + 1);
    buf_printf(&b->on, "%sp.%s = CAST(u.v%zu AS %s)", k ? " AND " : "", parent_col, k + 1, type);
}

static void finish(struct building *b, struct parent_keys *out)
{
    buf_puts(&b->unnest, ") AS u(");
    for (size_t k = 0; k < b->key.n_cols; k++)
        buf_printf(&b->unnest, "%sv%zu", k ? ", " : "", k + 1);
    buf_printf(&b->unnest, ") ON %s FOR KEY SHARE OF p NOWAIT", b->on.data);
    b->key.lock_sql = buf_steal(&b->unnest);
    buf_cleanup(&b->on);
    out->keys = xrealloc(out->keys, (out->n + 1) * sizeof(*out->keys));
    out->keys[out->n++] = b->key;
}

static int column_index(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], name))
            return (int)i;
    return -1;
}

int parents_load(struct store_conn *c, const char *quoted, const char *const *names, size_t n,
                 struct parent_keys *out, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(quoted);
    struct building b;
    char *current = NULL;
    int rc = FERRY_ERR, more;

    memset(out, 0, sizeof(*out));
    if (store_conn_dialect(c) != STORE_POSTGRES)
        return FERRY_OK;
    if (store_query(c, FK_SQL, &v, 1, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    while ((more = store_rows_next(rows, err)) == 1) {
        const char *name = store_rows_text(rows, 0);
        if (!current || strcmp(current, name) != 0) {
            if (current)
                finish(&b, out);
            free(current);
            current = xstrdup(name);
            start(&b, store_rows_text(rows, 1));
        }
        add_column(&b, column_index(names, n, store_rows_text(rows, 2)), store_rows_text(rows, 3),
                   store_rows_text(rows, 4));
    }
    if (more == 0) {
        if (current)
            finish(&b, out);
        rc = FERRY_OK;
    } else if (current) {
        buf_cleanup(&b.unnest);
        buf_cleanup(&b.on);
        free(b.key.cols);
    }
    free(current);
    store_rows_free(rows);
    return rc;
}

void parents_cleanup(struct parent_keys *keys)
{
    for (size_t i = 0; i < keys->n; i++) {
        free(keys->keys[i].lock_sql);
        free(keys->keys[i].cols);
    }
    free(keys->keys);
    memset(keys, 0, sizeof(*keys));
}
