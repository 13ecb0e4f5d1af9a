/* feed.c - see feed.h. Each table is read with one query that walks its slice of the
 * change log in seq order (index ferry_changes(tbl, seq)) and joins the live row by
 * primary key; the per-table pages are then merged by seq. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/feed.h"
#include "util/timeutil.h"

/* The log columns come first; the table's own columns follow from index LOG_COLS. */
#define LOG_COLS 6

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
        return err_set(err, ERR_INVALID, "cursor '%.40s' is not a cursor (a number from a "
                                         "previous answer's cursor)", text);
    *cursor = v;
    return FERRY_OK;
}

int feed_head(struct store_conn *c, int64_t *head, struct err *err)
{
    bool found = false;
    *head = 0;
    /* The purge may have removed the newest entries; their seqs are at or below the
     * horizon, so the head is the larger of the two and never moves backwards. */
    return store_query_int(c,
                           "SELECT MAX(s) FROM (SELECT COALESCE(MAX(seq), 0) AS s FROM"
                           " ferry_changes UNION ALL SELECT CAST(value AS BIGINT) FROM ferry_meta"
                           " WHERE key = 'purge_horizon') h",
                           NULL, 0, head, &found, err);
}

static int purge_horizon(struct store_conn *c, int64_t *horizon, struct err *err)
{
    struct store_val key = sv_text("purge_horizon");
    bool found = false;
    *horizon = 0;
    return store_query_int(c, "SELECT CAST(value AS BIGINT) FROM ferry_meta WHERE key = $1", &key,
                           1, horizon, &found, err);
}

static json_t *key_json(const struct synced_table *t, const char *pk)
{
    if (t->cols[t->pk].kind == KIND_INTEGER)
        return json_integer(strtoll(pk, NULL, 10));
    return json_string(pk);
}

static json_t *change_json(const struct synced_table *t, const struct store_rows *rows)
{
    char iso[32];
    bool deleted = store_rows_int(rows, 3) != 0;
    const char *pk = store_rows_text(rows, 1);
    json_t *o = json_object();

    time_iso8601(store_rows_int(rows, 4), 1, iso);
    json_object_set_new(o, "seq", json_integer(store_rows_int(rows, 0)));
    json_object_set_new(o, "table", json_string(t->name));
    json_object_set_new(o, "id", key_json(t, pk));
    json_object_set_new(o, "op", json_string(deleted ? "delete" : "upsert"));
    json_object_set_new(o, "version", json_integer(store_rows_int(rows, 2)));
    json_object_set_new(o, "deleted", json_boolean(deleted));
    json_object_set_new(o, "updatedAt", json_string(iso));
    json_object_set_new(o, "deviceId", store_rows_isnull(rows, 5)
                                           ? json_null()
                                           : json_string(store_rows_text(rows, 5)));
    /* Log and table are read in one snapshot and the triggers write both in one
     * transaction, so only a tombstone lacks its row. */
    if (deleted || store_rows_isnull(rows, LOG_COLS + (int)t->pk)) {
        json_object_set_new(o, "data", json_null());
        return o;
    }
    json_t *data = json_object();
    for (size_t i = 0; i < t->n_cols; i++)
        json_object_set_new(data, t->cols[i].name,
                            values_to_json(t->cols[i].kind, rows, LOG_COLS + (int)i));
    json_object_set_new(o, "data", data);
    return o;
}

static char *table_sql(const struct synced_table *t, bool exclude_device)
{
    return xasprintf("SELECT c.seq, c.pk, c.version, c.deleted, c.updated_at, c.device_id, t.*"
                     " FROM ferry_changes c LEFT JOIN %s t ON %s"
                     " WHERE c.tbl = $1 AND c.seq > $2%s ORDER BY c.seq LIMIT $%d",
                     t->quoted, t->pk_match,
                     exclude_device ? " AND (c.device_id IS NULL OR c.device_id <> $3)" : "",
                     exclude_device ? 4 : 3);
}

/* Reads up to limit + 1 changes of one table into out (appending). */
static int read_table(struct store_conn *c, const struct synced_table *t,
                      const struct feed_query *q, json_t *out, struct err *err)
{
    struct store_rows *rows = NULL;
    bool excl = q->exclude_device != NULL;
    char *sql = table_sql(t, excl);
    struct store_val v[4] = {sv_text(t->name), sv_int(q->cursor)};
    int step = FERRY_ERR;

    if (excl)
        v[2] = sv_text(q->exclude_device);
    v[excl ? 3 : 2] = sv_int(q->limit + 1);
    if (store_query(c, sql, v, excl ? 4 : 3, &rows, err) == FERRY_OK)
        while ((step = store_rows_next(rows, err)) == 1)
            json_array_append_new(out, change_json(t, rows));
    store_rows_free(rows);
    free(sql);
    return step == 0 ? FERRY_OK : FERRY_ERR;
}

static int by_seq(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "seq"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "seq"));
    return (x > y) - (x < y);
}

/* Sorts all candidates by seq and keeps the first limit: each table contributed its
 * own first limit + 1, so the kept prefix has no gaps. */
static json_t *merge_pages(json_t *all, int limit, bool *has_more)
{
    size_t n = json_array_size(all);
    json_t **items = xmalloc((n ? n : 1) * sizeof(*items));
    for (size_t i = 0; i < n; i++)
        items[i] = json_array_get(all, i);
    qsort(items, n, sizeof(*items), by_seq);
    json_t *page = json_array();
    for (size_t i = 0; i < n && i < (size_t)limit; i++)
        json_array_append(page, items[i]);
    *has_more = n > (size_t)limit;
    free(items);
    return page;
}

static int check_cursor(struct store_conn *c, int64_t cursor, int64_t head, struct err *err)
{
    int64_t horizon = 0;
    if (cursor > head)
        return err_set(err, ERR_INVALID,
                       "cursor %lld is from the future (the newest change is %lld)",
                       (long long)cursor, (long long)head);
    if (purge_horizon(c, &horizon, err) != FERRY_OK)
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
    json_t *all = json_array();
    int rc = FERRY_ERR;

    memset(page, 0, sizeof(*page));
    if (store_begin_read(c, err) != FERRY_OK)
        goto out;
    if (feed_head(c, &page->head, err) != FERRY_OK ||
        check_cursor(c, q->cursor, page->head, err) != FERRY_OK)
        goto out;
    for (size_t i = 0; i < q->n_tables; i++)
        if (read_table(c, q->tables[i], q, all, err) != FERRY_OK)
            goto out;
    page->changes = merge_pages(all, q->limit, &page->has_more);
    size_t n = json_array_size(page->changes);
    if (page->has_more)
        page->next_cursor =
            json_integer_value(json_object_get(json_array_get(page->changes, n - 1), "seq"));
    else
        page->next_cursor = page->head > q->cursor ? page->head : q->cursor;
    rc = FERRY_OK;
out:
    store_rollback(c);
    json_decref(all);
    return rc;
}

int feed_row(struct store_conn *c, const struct synced_table *t, const char *pk, json_t **out,
             struct err *err)
{
    struct store_rows *rows = NULL;
    char *sql = xasprintf("SELECT t.* FROM %s t, (SELECT CAST($1 AS TEXT) AS pk) c WHERE %s",
                          t->quoted, t->pk_match);
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
