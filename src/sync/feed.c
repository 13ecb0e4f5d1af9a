/* feed.c - see feed.h. One query walks the change log in seq order from the cursor and
 * joins each entry's live row by primary key. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sync/feed.h"
#include "util/buf.h"
#include "util/timeutil.h"

#define LOG_COLS 7 /* seq, tbl, pk, version, deleted, updated_at, device_id */

int feed_parse_cursor(const char *text, int64_t *cursor, struct err *err)
{
    char *end;
    if (!text || !*text) {
        *cursor = 0;
        return FERRY_OK;
    }
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || v < 0 || text[0] == '+' || text[0] == ' ')
        return err_set(err, ERR_INVALID,
                       "cursor '%.40s' is not a cursor (a number from a "
                       "previous answer's cursor)",
                       text);
    *cursor = v;
    return FERRY_OK;
}

int feed_head(struct store_conn *c, int64_t *head, struct err *err)
{
    bool found = false;
    *head = 0;
    return store_query_int(c, "SELECT COALESCE(MAX(seq), 0) FROM ferry_changes", NULL, 0, head,
                           &found, err);
}

int feed_horizon(struct store_conn *c, int64_t *horizon, struct err *err)
{
    bool found = false;
    *horizon = 0;
    return store_query_int(c, "SELECT horizon FROM ferry_writer WHERE id = 1", NULL, 0, horizon,
                           &found, err);
}

static json_t *key_json(const struct synced_table *t, const char *pk)
{
    if (t->cols[t->pk].kind == KIND_INTEGER)
        return json_integer(strtoll(pk, NULL, 10));
    return json_string(pk);
}

/* The log columns come first; table i's columns follow from offset[i]. */
static json_t *change_json(const struct synced_table *t, int offset, const struct store_rows *rows)
{
    char iso[32];
    bool deleted = store_rows_int(rows, 4) != 0;
    const char *pk = store_rows_text(rows, 2);
    json_t *o = json_object();
    /* A file entry marked deleted is a deletion to devices, with its data kept so they
     * see the version. */
    int mark = t->deleted_col >= 0 ? offset + t->deleted_col : -1;
    bool soft_deleted =
        !deleted && mark >= 0 && !store_rows_isnull(rows, mark) && store_rows_int(rows, mark) != 0;

    time_iso8601(store_rows_int(rows, 5), 1, iso);
    json_object_set_new(o, "seq", json_integer(store_rows_int(rows, 0)));
    json_object_set_new(o, "table", json_string(t->name));
    json_object_set_new(o, "id", key_json(t, pk));
    json_object_set_new(o, "op", json_string(deleted || soft_deleted ? "delete" : "upsert"));
    json_object_set_new(o, "version", json_integer(store_rows_int(rows, 3)));
    json_object_set_new(o, "deleted", json_boolean(deleted || soft_deleted));
    json_object_set_new(o, "updatedAt", json_string(iso));
    json_object_set_new(o, "deviceId",
                        store_rows_isnull(rows, 6) ? json_null()
                                                   : json_string(store_rows_text(rows, 6)));
    /* Log and table are read in one snapshot and the triggers write both in one
     * transaction, so only a tombstone lacks its row. */
    if (deleted || store_rows_isnull(rows, offset + (int)t->pk)) {
        json_object_set_new(o, "data", json_null());
        return o;
    }
    json_t *data = json_object();
    for (size_t i = 0; i < t->n_cols; i++)
        json_object_set_new(data, t->cols[i].name,
                            values_to_json(t->cols[i].kind, rows, offset + (int)i));
    json_object_set_new(o, "data", data);
    if (t->builtin)
        filescope_shape_change(o);
    return o;
}

/* Keeps the files namespace to the files the reader may see (a change whose entry is
 * another user's is left out, as if it were another table's). */
static void files_condition(struct buf *b, const struct feed_query *q,
                            const struct filescope *scope)
{
    for (size_t i = 0; scope && i < q->n_tables; i++) {
        if (!q->tables[i]->builtin)
            continue;
        char alias[24];
        snprintf(alias, sizeof(alias), "t%zu", i);
        char *seen = filescope_sql(scope, alias);
        buf_printf(b, " AND (c.tbl <> %s OR %s)", q->tables[i]->literal, seen);
        free(seen);
    }
}

/* One query walks the log in seq order (its primary key) from the cursor and joins each
 * entry's live row from its own table; offsets[i] gets where table i's columns start. */
static char *feed_sql(const struct feed_query *q, const struct filescope *scope, int *offsets)
{
    struct buf b;
    int col = LOG_COLS;
    buf_init(&b);
    buf_puts(&b, "SELECT c.seq, c.tbl, c.pk, c.version, c.deleted, c.updated_at, c.device_id");
    /* Columns by name, not t.*: a column dropped while ferry runs is an error, never a
     * value reported under another column's name. */
    for (size_t i = 0; i < q->n_tables; i++) {
        for (size_t k = 0; k < q->tables[i]->n_cols; k++)
            buf_printf(&b, ", t%zu.%s", i, q->tables[i]->cols[k].quoted);
        offsets[i] = col;
        col += (int)q->tables[i]->n_cols;
    }
    buf_puts(&b, " FROM ferry_changes c");
    for (size_t i = 0; i < q->n_tables; i++) {
        const struct synced_table *t = q->tables[i];
        /* CASE keeps PostgreSQL from casting another table's key to this one's type. */
        buf_printf(&b, " LEFT JOIN %s t%zu ON t%zu.%s = CASE WHEN c.tbl = %s THEN %s END",
                   t->quoted, i, i, t->cols[t->pk].quoted, t->literal, t->pk_cast);
    }
    /* "|| ''" keeps the planner off the (tbl, pk) index: the walk must follow seq. */
    buf_puts(&b, " WHERE c.seq > $1 AND (c.tbl || '') IN (");
    for (size_t i = 0; i < q->n_tables; i++)
        buf_printf(&b, "%s%s", i ? ", " : "", q->tables[i]->literal);
    buf_puts(&b, ")");
    files_condition(&b, q, scope);
    buf_printf(&b, "%s ORDER BY c.seq LIMIT $%d",
               q->exclude_device ? " AND (c.device_id IS NULL OR c.device_id <> $2)" : "",
               q->exclude_device ? 3 : 2);
    return buf_steal(&b);
}

/* Reads up to limit + 1 changes into out, so the caller can tell whether more follow. */
static int read_changes(struct store_conn *c, const struct feed_query *q,
                        const struct filescope *scope, json_t *out, struct err *err)
{
    struct store_rows *rows = NULL;
    int *offsets = xcalloc(q->n_tables + 1, sizeof(*offsets));
    char *sql = feed_sql(q, scope, offsets);
    struct store_val v[3] = {sv_int(q->cursor), sv_int(q->limit + 1)};
    int step = FERRY_ERR;

    if (q->exclude_device) {
        v[1] = sv_text(q->exclude_device);
        v[2] = sv_int(q->limit + 1);
    }
    if (store_query(c, sql, v, q->exclude_device ? 3 : 2, &rows, err) == FERRY_OK) {
        while ((step = store_rows_next(rows, err)) == 1) {
            const char *tbl = store_rows_text(rows, 1);
            for (size_t i = 0; i < q->n_tables; i++)
                if (!strcmp(q->tables[i]->name, tbl))
                    json_array_append_new(out, change_json(q->tables[i], offsets[i], rows));
        }
    }
    store_rows_free(rows);
    free(sql);
    free(offsets);
    return step == 0 ? FERRY_OK : FERRY_ERR;
}

static int check_cursor(struct store_conn *c, int64_t cursor, int64_t head, struct err *err)
{
    int64_t horizon = 0;
    if (cursor > head)
        return err_set(err, ERR_INVALID,
                       "cursor %lld is from the future (the newest change is %lld)",
                       (long long)cursor, (long long)head);
    if (feed_horizon(c, &horizon, err) != FERRY_OK)
        return FERRY_ERR;
    if (cursor > 0 && cursor < horizon)
        return err_set(err, ERR_GONE,
                       "resync required: cursor %lld is older than the purge horizon %lld;"
                       " pull again from cursor 0",
                       (long long)cursor, (long long)horizon);
    return FERRY_OK;
}

int feed_read(struct store_conn *c, const struct feed_query *q, struct feed_page *page,
              struct err *err)
{
    return feed_read_files(c, q, NULL, page, err);
}

int feed_read_files(struct store_conn *c, const struct feed_query *q, const struct filescope *scope,
                    struct feed_page *page, struct err *err)
{
    int rc = FERRY_ERR;

    memset(page, 0, sizeof(*page));
    if (store_begin_read(c, err) != FERRY_OK)
        goto out;
    if (feed_head(c, &page->head, err) != FERRY_OK ||
        check_cursor(c, q->cursor, page->head, err) != FERRY_OK)
        goto out;
    page->changes = json_array();
    if (q->n_tables && read_changes(c, q, scope, page->changes, err) != FERRY_OK)
        goto out;
    size_t n = json_array_size(page->changes);
    page->has_more = n > (size_t)q->limit;
    if (page->has_more)
        json_array_remove(page->changes, --n);
    if (page->has_more)
        page->next_cursor =
            json_integer_value(json_object_get(json_array_get(page->changes, n - 1), "seq"));
    else
        page->next_cursor = page->head > q->cursor ? page->head : q->cursor;
    rc = FERRY_OK;
out:
    store_rollback(c);
    if (rc != FERRY_OK) {
        json_decref(page->changes);
        page->changes = NULL;
    }
    return rc;
}

int feed_row(struct store_conn *c, const struct synced_table *t, const char *pk, json_t **out,
             struct err *err)
{
    struct store_rows *rows = NULL;
    struct buf cols;
    buf_init(&cols);
    for (size_t k = 0; k < t->n_cols; k++)
        buf_printf(&cols, "%st.%s", k ? ", " : "", t->cols[k].quoted);
    char *sql = xasprintf("SELECT %s FROM %s t, (SELECT CAST($1 AS TEXT) AS pk) c WHERE t.%s = %s",
                          cols.data, t->quoted, t->cols[t->pk].quoted, t->pk_cast);
    buf_cleanup(&cols);
    struct store_val v = sv_text(pk);
    int rc = FERRY_ERR, step;

    *out = NULL;
    if (store_query(c, sql, &v, 1, &rows, err) != FERRY_OK)
        goto out;
    if ((step = store_rows_next(rows, err)) < 0)
        goto out;
    if (step == 1) {
        *out = json_object();
        for (size_t i = 0; i < t->n_cols; i++)
            json_object_set_new(*out, t->cols[i].name,
                                values_to_json(t->cols[i].kind, rows, (int)i));
    }
    rc = FERRY_OK;
out:
    store_rows_free(rows);
    free(sql);
    return rc;
}
