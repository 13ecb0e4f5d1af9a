/* feed.c - see feed.h. One query walks the change log in seq order from the cursor and
 * joins each entry's live row by primary key. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/feed.h"
#include "sync/promote.h"
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

/* On PostgreSQL the newest seq promoted (promote.h), which never moves back; MAX(seq)
 * would while the newest entry is pending again. Below the head everything is committed
 * and numbered. */
int feed_head(struct store_conn *c, int64_t *head, struct err *err)
{
    bool found = false;
    *head = 0;
    return store_query_int(c,
                           store_conn_dialect(c) == STORE_POSTGRES
                               ? "SELECT seq FROM ferry_head WHERE id = 1"
                               : "SELECT COALESCE(MAX(seq), 0) FROM ferry_changes",
                           NULL, 0, head, &found, err);
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

/* The statement's text and its parameters, numbered as they are added. */
struct feed_stmt {
    struct buf sql;
    struct store_val *v;
    size_t n;
    char (*values)[RULES_VALUE_MAX]; /* the caller's scope value per table, bound by v */
};

static size_t bind(struct feed_stmt *s, struct store_val v)
{
    s->v[s->n++] = v;
    return s->n;
}

/* The columns every feed query selects: the log's, then each table's from offsets[i]. */
static void select_columns(struct buf *b, const struct feed_query *q, const char *seq,
                           const char *deleted, int *offsets)
{
    int col = LOG_COLS;
    buf_printf(b, "SELECT %s, c.tbl, c.pk, c.version, %s, c.updated_at, c.device_id", seq, deleted);
    /* Columns by name, not t.*: a column dropped while ferry runs is an error, never a
     * value reported under another column's name. */
    for (size_t i = 0; i < q->n_tables; i++) {
        for (size_t k = 0; k < q->tables[i]->n_cols; k++)
            buf_printf(b, ", t%zu.%s", i, q->tables[i]->cols[k].quoted);
        offsets[i] = col;
        col += (int)q->tables[i]->n_cols;
    }
}

static void join_tables(struct buf *b, const struct feed_query *q)
{
    for (size_t i = 0; i < q->n_tables; i++) {
        const struct synced_table *t = q->tables[i];
        /* CASE keeps PostgreSQL from casting another table's key to this one's type. */
        buf_printf(b, " LEFT JOIN %s t%zu ON t%zu.%s = CASE WHEN c.tbl = %s THEN %s END", t->quoted,
                   i, i, t->cols[t->pk].quoted, t->literal, t->pk_cast);
    }
}

/* Keeps the files namespace to the files the reader may see (a change whose entry is
 * another user's is left out, as if it were another table's). */
static void files_condition(struct buf *b, const struct feed_query *q)
{
    for (size_t i = 0; q->files && i < q->n_tables; i++) {
        if (!q->tables[i]->builtin)
            continue;
        char alias[24];
        snprintf(alias, sizeof(alias), "t%zu", i);
        char *seen = filescope_sql(q->files, alias);
        buf_printf(b, " AND (c.tbl <> %s OR %s)", q->tables[i]->literal, seen);
        free(seen);
    }
}

/* One query walks the log in seq order (its primary key) from the cursor and joins each
 * entry's live row from its own table; offsets[i] gets where table i's columns start. */
static void whole_sql(const struct feed_query *q, struct feed_stmt *s, int *offsets)
{
    size_t cursor = bind(s, sv_int(q->cursor)), device = 0;
    select_columns(&s->sql, q, "c.seq", "c.deleted", offsets);
    buf_puts(&s->sql, " FROM ferry_changes c");
    join_tables(&s->sql, q);
    /* "|| ''" keeps the planner off the (tbl, pk) index: the walk must follow seq. */
    buf_printf(&s->sql, " WHERE c.seq > $%zu AND (c.tbl || '') IN (", cursor);
    for (size_t i = 0; i < q->n_tables; i++)
        buf_printf(&s->sql, "%s%s", i ? ", " : "", q->tables[i]->literal);
    buf_puts(&s->sql, ")");
    files_condition(&s->sql, q);
    if (q->exclude_device) {
        device = bind(s, sv_text(q->exclude_device));
        buf_printf(&s->sql, " AND (c.device_id IS NULL OR c.device_id <> $%zu)", device);
    }
    buf_printf(&s->sql, " ORDER BY c.seq LIMIT $%zu", bind(s, sv_int(q->limit + 1)));
}

/* The log's columns, as every branch of a narrowed walk gives them. */
#define BRANCH_COLS "seq, tbl, pk, version, deleted, updated_at, device_id"

/* Under sync rules the walk is a union of range reads, each ordered by seq and cut at the
 * page size: the tables every row of which the caller reads (the log's seq order), and per
 * narrowed table the caller's scope value in the log ((tbl, scope, seq) index) and in the
 * exits of rows that left it (shown as deletes). reach[i] and values[i] say, per table,
 * what the caller reads. Each branch carries the log's columns, so the union joins only
 * the live rows. */
static void scoped_sql(const struct feed_query *q, const enum rules_reach *reach,
                       char (*values)[RULES_VALUE_MAX], struct feed_stmt *s, int *offsets)
{
    size_t cursor = bind(s, sv_int(q->cursor)), limit = bind(s, sv_int(q->limit + 1));
    size_t device = q->exclude_device ? bind(s, sv_text(q->exclude_device)) : 0, branch = 0;
    char *mine =
        device ? xasprintf(" AND (device_id IS NULL OR device_id <> $%zu)", device) : xstrdup("");
    select_columns(&s->sql, q, "c.seq", "c.deleted", offsets);
    buf_puts(&s->sql, " FROM (");
    bool whole = false;
    for (size_t i = 0; i < q->n_tables; i++)
        whole = whole || reach[i] == REACH_ALL;
    if (whole) {
        buf_printf(&s->sql,
                   "SELECT * FROM (SELECT " BRANCH_COLS " FROM ferry_changes"
                   " WHERE seq > $%zu AND (tbl || '') IN (",
                   cursor);
        for (size_t i = 0, n = 0; i < q->n_tables; i++)
            if (reach[i] == REACH_ALL)
                buf_printf(&s->sql, "%s%s", n++ ? ", " : "", q->tables[i]->literal);
        buf_printf(&s->sql, ")%s ORDER BY seq LIMIT $%zu) b%zu", mine, limit, branch++);
    }
    for (size_t i = 0; i < q->n_tables; i++) {
        if (reach[i] != REACH_VALUE)
            continue;
        size_t value = bind(s, sv_text(values[i]));
        const char *lit = q->tables[i]->literal;
        buf_printf(&s->sql,
                   "%sSELECT * FROM (SELECT " BRANCH_COLS " FROM ferry_changes"
                   " WHERE tbl = %s AND scope = $%zu AND seq > $%zu%s ORDER BY seq LIMIT $%zu)"
                   " b%zu UNION ALL SELECT * FROM (SELECT x.seq, x.tbl, x.pk, l.version, 1,"
                   " l.updated_at, l.device_id FROM ferry_scope_exits x JOIN ferry_changes l"
                   " ON l.tbl = x.tbl AND l.pk = x.pk WHERE x.tbl = %s AND x.scope = $%zu"
                   " AND x.seq > $%zu ORDER BY x.seq LIMIT $%zu) b%zu",
                   branch ? " UNION ALL " : "", lit, value, cursor, mine, limit, branch, lit, value,
                   cursor, limit, branch + 1);
        branch += 2;
    }
    if (!branch) /* the caller reads none of the tables */
        buf_puts(&s->sql, "SELECT " BRANCH_COLS " FROM ferry_changes WHERE 1 = 0");
    buf_puts(&s->sql, ") c");
    join_tables(&s->sql, q);
    buf_puts(&s->sql, " WHERE 1 = 1");
    files_condition(&s->sql, q);
    buf_printf(&s->sql, " ORDER BY c.seq LIMIT $%zu", limit);
    free(mine);
}

/* Builds the page's statement: the plain walk unless a rule narrows a table for the
 * caller. */
static void feed_sql(const struct feed_query *q, struct feed_stmt *s, int *offsets)
{
    enum rules_reach *reach = xcalloc(q->n_tables + 1, sizeof(*reach));
    char(*values)[RULES_VALUE_MAX] = xcalloc(q->n_tables + 1, sizeof(*values));
    bool narrowed = false;
    s->values = values;
    for (size_t i = 0; i < q->n_tables; i++) {
        reach[i] = rules_reach(&q->tables[i]->rule, q->caller, values[i]);
        narrowed = narrowed || reach[i] != REACH_ALL;
    }
    buf_init(&s->sql);
    s->v = xcalloc(q->n_tables + 4, sizeof(*s->v));
    s->n = 0;
    if (narrowed)
        scoped_sql(q, reach, values, s, offsets);
    else
        whole_sql(q, s, offsets);
    free(reach);
}

/* Reads up to limit + 1 changes into out, so the caller can tell whether more follow. */
static int read_changes(struct store_conn *c, const struct feed_query *q, json_t *out,
                        struct err *err)
{
    struct store_rows *rows = NULL;
    int *offsets = xcalloc(q->n_tables + 1, sizeof(*offsets));
    struct feed_stmt s;
    int step = FERRY_ERR;

    feed_sql(q, &s, offsets);
    if (store_query(c, s.sql.data, s.v, s.n, &rows, err) == FERRY_OK) {
        while ((step = store_rows_next(rows, err)) == 1) {
            const char *tbl = store_rows_text(rows, 1);
            for (size_t i = 0; i < q->n_tables; i++)
                if (!strcmp(q->tables[i]->name, tbl))
                    json_array_append_new(out, change_json(q->tables[i], offsets[i], rows));
        }
    }
    store_rows_free(rows);
    buf_cleanup(&s.sql);
    free(s.v);
    free(s.values);
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

/* A device marked for a resync (its table's rule or its token's attributes changed at
 * seq S) must start again from 0: a read from a cursor in (0, S) answers 410, and a
 * read from 0 (or from S on) clears the mark, so the resync happens once and the pages
 * of the new pull read on. */
static int device_resync(struct store_conn *c, const struct feed_query *q, struct err *err)
{
    struct store_val dev = sv_text(q->device_id);
    int64_t mark = 0;
    bool found = false;
    if (store_query_int(c, "SELECT resync_seq FROM ferry_devices WHERE id = $1", &dev, 1, &mark,
                        &found, err) != FERRY_OK)
        return FERRY_ERR;
    if (!found || mark == 0)
        return FERRY_OK;
    if (q->cursor > 0 && q->cursor < mark)
        return err_set(err, ERR_GONE,
                       "resync required: the sync rules or this device's attributes changed"
                       " (at %lld, after cursor %lld); pull again from cursor 0",
                       (long long)mark, (long long)q->cursor);
    struct store_val v[] = {dev, sv_int(mark)};
    return store_run(c, "UPDATE ferry_devices SET resync_seq = 0 WHERE id = $1 AND resync_seq = $2",
                     v, 2, NULL, err);
}

int feed_read(struct store_conn *c, const struct feed_query *q, struct feed_page *page,
              struct err *err)
{
    int rc = FERRY_ERR;

    memset(page, 0, sizeof(*page));
    /* Other programs' committed writes wait as pending entries until a promoter numbers
     * them; the reader does it when the listener has not yet (or no node listens). */
    if (promote_pending(c, err) != FERRY_OK)
        goto out;
    if (q->device_id && device_resync(c, q, err) != FERRY_OK)
        goto out;
    if (store_begin_read(c, err) != FERRY_OK)
        goto out;
    if (feed_head(c, &page->head, err) != FERRY_OK ||
        check_cursor(c, q->cursor, page->head, err) != FERRY_OK)
        goto out;
    page->changes = json_array();
    if (q->n_tables && read_changes(c, q, page->changes, err) != FERRY_OK)
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

int feed_read_files(struct store_conn *c, const struct feed_query *q, const struct filescope *scope,
                    struct feed_page *page, struct err *err)
{
    struct feed_query scoped = *q;
    scoped.files = scope;
    return feed_read(c, &scoped, page, err);
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
