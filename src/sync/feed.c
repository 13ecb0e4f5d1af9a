/* feed.c - see feed.h. One query walks the change log in seq order from the cursor and
 * joins each entry's live row by primary key. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/feed.h"
#include "sync/feedshare.h"
#include "sync/settle.h"
#include "util/buf.h"
#include "util/jsonw.h"
#include "util/timeutil.h"

/* Appends a string literal (its length known at compile time). */
#define put_lit(b, lit) buf_append((b), (lit), sizeof(lit) - 1)

#define LOG_COLS 7 /* seq, tbl, pk, version, deleted, updated_at, device_id */

/* How long a read waits for the head to reach what committed before it (settle.h) while
 * a transaction older than that runs; then it reads what is safe so far. */
#define READ_SETTLE_MS 100

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

/* On PostgreSQL the safe head (settle.h), below which every seq is final; MAX(seq) may
 * lie above a seq still to commit. */
int feed_head(struct store_conn *c, int64_t *head, struct err *err)
{
    bool found = false;
    *head = 0;
    return store_query_int(c,
                           store_conn_dialect(c) == STORE_POSTGRES
                               ? "SELECT COALESCE(" SETTLE_HEAD_PG ", 0)"
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

/* The state of one page being written: where each table's columns start, and the last
 * second written as ISO-8601 (a page's changes mostly share their seconds). */
struct render {
    const struct feed_query *q;
    const int *offsets;
    struct feed_text *out;
    size_t bytes; /* of the changes written, against q->max_bytes */
    int64_t iso_secs;
    char iso[32];
};

/* The change's time, "YYYY-MM-DDTHH:MM:SS.mmmZ" as time_iso8601 writes it; within the
 * cached second only the milliseconds change. */
#define ISO_MS_LEN 24
static void put_time(struct render *r, struct buf *b, int64_t ms)
{
    if (!r->iso[0] || ms < 0 || ms / 1000 != r->iso_secs) {
        time_iso8601(ms, 1, r->iso);
        r->iso_secs = ms / 1000;
    }
    if (ms < 0 || strlen(r->iso) != ISO_MS_LEN) { /* only years 0-9999 are cut alike */
        jsonw_string(b, r->iso, strlen(r->iso));
        r->iso[0] = '\0';
        return;
    }
    int frac = (int)(ms % 1000);
    r->iso[20] = (char)('0' + frac / 100);
    r->iso[21] = (char)('0' + frac / 10 % 10);
    r->iso[22] = (char)('0' + frac % 10);
    jsonw_string(b, r->iso, ISO_MS_LEN);
}

/* The change's key: an integer for an integer key, else text (nothing when that is not
 * UTF-8: the key is left out, as jansson leaves out a value it refuses). */
static bool put_key(struct buf *b, const struct synced_table *t, const char *pk)
{
    if (t->cols[t->pk].kind == KIND_INTEGER) {
        jsonw_int(b, strtoll(pk, NULL, 10));
        return true;
    }
    return jsonw_text(b, pk);
}

/* The files namespace shows an entry's path as its id, when the path is text. */
static bool put_path_id(struct buf *b, const struct synced_table *t, int offset,
                        const struct store_rows *rows)
{
    for (size_t i = 0; i < t->n_cols; i++) {
        if (strcmp(t->cols[i].name, FILESCOPE_ID_COLUMN) != 0)
            continue;
        size_t mark = b->len;
        if (values_write_json(b, t->cols[i].kind, rows, offset + (int)i) && b->data[mark] == '"')
            return true;
        jsonw_truncate(b, mark);
    }
    return false;
}

/* "key": value; nothing (the key left out) when the value cannot be written. */
static void put_column(struct buf *b, const struct synced_column *col, bool *first,
                       const struct store_rows *rows, int at)
{
    size_t mark = b->len;
    if (!*first)
        put_lit(b, ",");
    if (!jsonw_text(b, col->name)) {
        jsonw_truncate(b, mark);
        return;
    }
    put_lit(b, ":");
    if (values_write_json(b, col->kind, rows, at))
        *first = false;
    else
        jsonw_truncate(b, mark);
}

/* The row's data object: every column by name (the files namespace leaves its internal
 * key out). */
static void put_data(struct buf *b, const struct synced_table *t, int offset,
                     const struct store_rows *rows)
{
    bool first = true;
    put_lit(b, "{");
    for (size_t i = 0; i < t->n_cols; i++)
        if (!t->builtin || strcmp(t->cols[i].name, FILESCOPE_HIDDEN_COLUMN) != 0)
            put_column(b, &t->cols[i], &first, rows, offset + (int)i);
    put_lit(b, "}");
}

/* Log and table are read in one snapshot and the triggers write both in one transaction,
 * so only a tombstone lacks its row. A file entry marked deleted is a deletion to
 * devices, with its data kept so they see the version. */
static bool has_data(const struct synced_table *t, int offset, const struct store_rows *rows,
                     bool *deleted)
{
    *deleted = store_rows_int(rows, 4) != 0;
    int mark = t->deleted_col >= 0 ? offset + t->deleted_col : -1;
    bool soft =
        !*deleted && mark >= 0 && !store_rows_isnull(rows, mark) && store_rows_int(rows, mark) != 0;
    bool data = !*deleted && !store_rows_isnull(rows, offset + (int)t->pk);
    *deleted = *deleted || soft;
    return data;
}

/* One change object, keys in the order clients have always seen them. */
static void put_change(struct render *r, struct buf *b, const struct synced_table *t, int offset,
                       const struct store_rows *rows)
{
    bool deleted;
    bool data = has_data(t, offset, rows, &deleted);
    put_lit(b, "{\"seq\":");
    jsonw_int(b, store_rows_int(rows, 0));
    put_lit(b, ",\"table\":");
    jsonw_string(b, t->name, strlen(t->name));
    size_t mark = b->len;
    put_lit(b, ",\"id\":");
    if (!(data && t->builtin && put_path_id(b, t, offset, rows)) &&
        !put_key(b, t, store_rows_text(rows, 2)))
        jsonw_truncate(b, mark);
    buf_puts(b, deleted ? ",\"op\":\"delete\"" : ",\"op\":\"upsert\"");
    put_lit(b, ",\"version\":");
    jsonw_int(b, store_rows_int(rows, 3));
    buf_puts(b, deleted ? ",\"deleted\":true" : ",\"deleted\":false");
    put_lit(b, ",\"updatedAt\":");
    put_time(r, b, store_rows_int(rows, 5));
    mark = b->len;
    put_lit(b, ",\"deviceId\":");
    if (store_rows_isnull(rows, 6))
        put_lit(b, "null");
    else if (!jsonw_text(b, store_rows_text(rows, 6)))
        jsonw_truncate(b, mark);
    put_lit(b, ",\"data\":");
    if (data)
        put_data(b, t, offset, rows);
    else
        put_lit(b, "null");
    put_lit(b, "}");
}

/* cloud-sync-api's shape: a row's data under its table, or its key among the deleted. */
static void put_by_table(struct render *r, size_t i, const struct store_rows *rows)
{
    const struct synced_table *t = r->q->tables[i];
    bool deleted;
    bool data = has_data(t, r->offsets[i], rows, &deleted);
    struct buf *b = deleted ? &r->out->deleted[i] : &r->out->data[i];
    size_t mark = b->len;
    if (b->len)
        put_lit(b, ",");
    if (!deleted && data)
        put_data(b, t, r->offsets[i], rows);
    else if (!deleted)
        put_lit(b, "null");
    else if (!put_key(b, t, store_rows_text(rows, 2)))
        jsonw_truncate(b, mark);
}

/* Writes the current row of the walk: the limit + 1st only tells that more follow. */
static void put_row(struct render *r, const struct store_rows *rows)
{
    const char *tbl = store_rows_text(rows, 1);
    for (size_t i = 0; i < r->q->n_tables; i++) {
        if (strcmp(r->q->tables[i]->name, tbl) != 0)
            continue;
        if (r->out->n == (size_t)r->q->limit || (r->q->max_bytes && r->bytes >= r->q->max_bytes)) {
            r->out->has_more = true;
            return;
        }
        if (r->out->shape == FEED_BY_TABLE) {
            put_by_table(r, i, rows);
        } else {
            size_t before = r->out->changes->len;
            if (r->out->n)
                put_lit(r->out->changes, ",");
            put_change(r, r->out->changes, r->q->tables[i], r->offsets[i], rows);
            r->bytes += r->out->changes->len - before;
        }
        r->out->n++;
        r->out->next_cursor = store_rows_int(rows, 0);
    }
}

/* The statement's text and its parameters, numbered as they are added. */
struct feed_stmt {
    struct buf sql;
    bool log_only; /* the seq alone (a page's end, found before its rows) */
    bool pg;       /* PostgreSQL: every walk stops at the safe head (settle.h) */
    struct store_val *v;
    size_t n;
    char (*values)[RULES_VALUE_MAX];  /* the caller's scope value per table, bound by v */
    size_t cursor_param, limit_param; /* v[x - 1]: the walk's "seq >" and LIMIT values */
};

static size_t bind(struct feed_stmt *s, struct store_val v)
{
    s->v[s->n++] = v;
    return s->n;
}

/* The columns every feed query selects: the log's, then each table's from offsets[i]
 * (with s->log_only the seq alone). */
static void select_columns(struct feed_stmt *s, const struct feed_query *q, const char *seq,
                           const char *deleted, int *offsets)
{
    struct buf *b = &s->sql;
    int col = LOG_COLS;
    if (s->log_only) {
        buf_printf(b, "SELECT %s", seq);
        return;
    }
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
 * another user's is left out, as if it were another table's). The user is bound, not
 * written: every user's reads then share one prepared statement (a literal made each
 * user's read a statement of its own, prepared per connection: one round trip more). */
static void files_condition(struct feed_stmt *s, const struct feed_query *q)
{
    for (size_t i = 0; q->files && i < q->n_tables; i++) {
        if (!q->tables[i]->builtin)
            continue;
        char alias[24], user_ref[24] = "";
        snprintf(alias, sizeof(alias), "t%zu", i);
        bool user = !q->files->admin && q->files->user_id && *q->files->user_id;
        if (user)
            snprintf(user_ref, sizeof(user_ref), "$%zu", bind(s, sv_text(q->files->user_id)));
        char *seen = filescope_sql_bound(q->files, alias, user ? user_ref : NULL);
        buf_printf(&s->sql, " AND (c.tbl <> %s OR %s)", q->tables[i]->literal, seen);
        free(seen);
    }
}

/* On PostgreSQL the walk's end: the safe head, in the statement's own snapshot. "+ 0"
 * keeps it out of the index condition: the planner knows neither bound's value, takes
 * the range for a few rows, and would read all of it and sort (a bitmap scan: each page of
 * a long pull reading the rest of the log) instead of walking the seq index from the
 * cursor and stopping at the page's end. */
static const char *head_bound(const struct feed_stmt *s, const char *alias)
{
    if (!s->pg)
        return "";
    return !*alias           ? " AND seq + 0 <= " SETTLE_HEAD_PG
           : alias[0] == 'c' ? " AND c.seq + 0 <= " SETTLE_HEAD_PG
                             : " AND x.seq + 0 <= " SETTLE_HEAD_PG;
}

/* One query walks the log in seq order (its primary key) from the cursor and joins each
 * entry's live row from its own table; offsets[i] gets where table i's columns start. */
static void whole_sql(const struct feed_query *q, struct feed_stmt *s, int *offsets)
{
    size_t cursor = bind(s, sv_int(q->cursor)), device = 0;
    s->cursor_param = cursor;
    select_columns(s, q, "c.seq", "c.deleted", offsets);
    buf_puts(&s->sql, " FROM ferry_changes c");
    join_tables(&s->sql, q);
    /* "|| ''" keeps the planner off the (tbl, pk) index: the walk must follow seq. */
    buf_printf(&s->sql, " WHERE c.seq > $%zu%s AND (c.tbl || '') IN (", cursor,
               head_bound(s, "c."));
    for (size_t i = 0; i < q->n_tables; i++)
        buf_printf(&s->sql, "%s%s", i ? ", " : "", q->tables[i]->literal);
    buf_puts(&s->sql, ")");
    files_condition(s, q);
    if (q->exclude_device) {
        device = bind(s, sv_text(q->exclude_device));
        buf_printf(&s->sql, " AND (c.device_id IS NULL OR c.device_id <> $%zu)", device);
    }
    s->limit_param = bind(s, sv_int(q->limit + 1));
    buf_printf(&s->sql, " ORDER BY c.seq LIMIT $%zu", s->limit_param);
}

/* The log's columns, as every branch of a narrowed walk gives them. */
#define BRANCH_COLS "seq, tbl, pk, version, deleted, updated_at, device_id"

/* Under sync rules the walk is a union of range reads, each ordered by seq and cut at the
 * page size: the tables every row of which the caller reads (the log's seq order), and per
 * narrowed table the caller's scope value in the log ((tbl, scope, seq) index) and in the
 * exits of rows that left it (shown as deletes) and are not back in it: a row's return
 * is its own entry, at a seq no lower than the exit's (on PostgreSQL a row that left and
 * came back before a promotion has both at one seq, and the delete could be read last).
 * reach[i] and values[i] say, per table,
 * what the caller reads. Each branch carries the log's columns, so the union joins only
 * the live rows. */
static void scoped_sql(const struct feed_query *q, const enum rules_reach *reach,
                       char (*values)[RULES_VALUE_MAX], struct feed_stmt *s, int *offsets)
{
    size_t cursor = bind(s, sv_int(q->cursor)), limit = bind(s, sv_int(q->limit + 1));
    s->cursor_param = cursor;
    s->limit_param = limit;
    size_t device = q->exclude_device ? bind(s, sv_text(q->exclude_device)) : 0, branch = 0;
    char *mine =
        device ? xasprintf(" AND (device_id IS NULL OR device_id <> $%zu)", device) : xstrdup("");
    select_columns(s, q, "c.seq", "c.deleted", offsets);
    buf_puts(&s->sql, " FROM (");
    bool whole = false;
    for (size_t i = 0; i < q->n_tables; i++)
        whole = whole || reach[i] == REACH_ALL;
    if (whole) {
        buf_printf(&s->sql,
                   "SELECT * FROM (SELECT " BRANCH_COLS " FROM ferry_changes"
                   " WHERE seq > $%zu%s AND (tbl || '') IN (",
                   cursor, head_bound(s, ""));
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
                   " WHERE tbl = %s AND scope = $%zu AND seq > $%zu%s%s ORDER BY seq LIMIT $%zu)"
                   " b%zu UNION ALL SELECT * FROM (SELECT x.seq, x.tbl, x.pk, l.version, 1,"
                   " l.updated_at, l.device_id FROM ferry_scope_exits x JOIN ferry_changes l"
                   " ON l.tbl = x.tbl AND l.pk = x.pk WHERE x.tbl = %s AND x.scope = $%zu"
                   " AND x.seq > $%zu%s AND (l.scope IS NULL OR l.scope <> x.scope)"
                   " ORDER BY x.seq LIMIT $%zu) b%zu",
                   branch ? " UNION ALL " : "", lit, value, cursor, head_bound(s, ""), mine, limit,
                   branch, lit, value, cursor, head_bound(s, "x."), limit, branch + 1);
        branch += 2;
    }
    if (!branch) /* the caller reads none of the tables */
        buf_puts(&s->sql, "SELECT " BRANCH_COLS " FROM ferry_changes WHERE 1 = 0");
    buf_puts(&s->sql, ") c");
    join_tables(&s->sql, q);
    buf_puts(&s->sql, " WHERE 1 = 1");
    files_condition(s, q);
    buf_printf(&s->sql, " ORDER BY c.seq LIMIT $%zu", limit);
    free(mine);
}

/* Builds the page's statement: the plain walk unless a rule narrows a table for the
 * caller; with log_only, selecting the seq alone. */
static void walk_sql(const struct feed_query *q, struct feed_stmt *s, int *offsets, bool log_only,
                     bool pg)
{
    enum rules_reach *reach = xcalloc(q->n_tables + 1, sizeof(*reach));
    char(*values)[RULES_VALUE_MAX] = xcalloc(q->n_tables + 1, sizeof(*values));
    bool narrowed = false;
    s->log_only = log_only;
    s->pg = pg;
    s->values = values;
    for (size_t i = 0; i < q->n_tables; i++) {
        reach[i] = rules_reach(&q->tables[i]->rule, q->caller, values[i]);
        narrowed = narrowed || reach[i] != REACH_ALL;
    }
    buf_init(&s->sql);
    /* cursor, limit, device, a scope value per table, a user per files namespace, and
     * read_page_at_once's device */
    s->v = xcalloc(2 * q->n_tables + 4, sizeof(*s->v));
    s->n = 0;
    if (narrowed)
        scoped_sql(q, reach, values, s, offsets);
    else
        whole_sql(q, s, offsets);
    free(reach);
}

static void feed_sql(const struct feed_query *q, struct feed_stmt *s, int *offsets, bool pg)
{
    walk_sql(q, s, offsets, false, pg);
}

/* Writes the rows of the walk into out until its changes buffer grew by want bytes
 * (0: to the end of the page). 1: more rows may follow; 0: the page is whole; -1: error.
 * The limit + 1st row only tells that more follow, so the walk stops there. */
static int page_rows(struct store_rows *rows, struct render *r, size_t want, struct err *err)
{
    size_t start = r->out->changes ? r->out->changes->len : 0;
    int step = 0;
    while (!r->out->has_more && (step = store_rows_next(rows, err)) == 1) {
        put_row(r, rows);
        if (want && !r->out->has_more && r->out->changes->len - start >= want)
            return 1;
    }
    return step < 0 ? -1 : 0;
}

/* What identifies a read for sharing its page: the statement and its parameters. */
static void share_key(const struct feed_stmt *s, struct buf *key)
{
    buf_append(key, s->sql.data, s->sql.len);
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i].type == SV_TEXT)
            buf_printf(key, "\nt%zu:%s", strlen(s->v[i].s), s->v[i].s);
        else
            buf_printf(key, "\ni%lld", (long long)s->v[i].i);
    }
}

/* The marks a page's read checks, read in one statement (one round trip on PostgreSQL):
 * the head (feed_head), the purge horizon (feed_horizon), the device's resync mark (0
 * when it has none) and the newest seq given out, above which a cursor is from the
 * future. On PostgreSQL that is the sequence's, not the head: a cursor a read answered
 * may lie above the head another read sees (settle.h: the head may step back a little
 * when two marks were written at once), and reads from it answer nothing until the head
 * passes it. */
enum { MARK_HEAD, MARK_HORIZON, MARK_RESYNC, MARK_TOP, N_MARKS };
#define MARKS_SQL(head, top)                                                                       \
    "SELECT (" head "), (SELECT horizon FROM ferry_writer WHERE id = 1),"                          \
    " (SELECT resync_seq FROM ferry_devices WHERE id = $1), (" top ")"
#define TOP_PG "SELECT last_value FROM ferry_change_seq"

static int read_marks(struct store_conn *c, const struct feed_query *q, int64_t marks[N_MARKS],
                      struct err *err)
{
    struct store_val dev = sv_text(q->device_id);
    struct store_rows *rows = NULL;
    int step = -1;
    if (store_query(c,
                    store_conn_dialect(c) == STORE_POSTGRES
                        ? MARKS_SQL("SELECT COALESCE(" SETTLE_HEAD_PG ", 0)", TOP_PG)
                        : MARKS_SQL("SELECT COALESCE(MAX(seq), 0) FROM ferry_changes", "SELECT 0"),
                    &dev, 1, &rows, err) == FERRY_OK)
        step = store_rows_next(rows, err);
    for (int i = 0; step == 1 && i < N_MARKS; i++)
        marks[i] = store_rows_isnull(rows, i) ? 0 : store_rows_int(rows, i);
    store_rows_free(rows);
    if (step == 0)
        return err_set(err, ERR_INTERNAL, "the change log's marks are missing");
    return step == 1 ? FERRY_OK : FERRY_ERR;
}

static int check_cursor(int64_t cursor, const int64_t marks[N_MARKS], struct err *err)
{
    int64_t newest = marks[MARK_TOP] > marks[MARK_HEAD] ? marks[MARK_TOP] : marks[MARK_HEAD];
    if (cursor > newest)
        return err_set(err, ERR_INVALID,
                       "cursor %lld is from the future (the newest change is %lld)",
                       (long long)cursor, (long long)newest);
    if (cursor > 0 && cursor < marks[MARK_HORIZON])
        return err_set(err, ERR_GONE,
                       "resync required: cursor %lld is older than the purge horizon %lld;"
                       " pull again from cursor 0",
                       (long long)cursor, (long long)marks[MARK_HORIZON]);
    return FERRY_OK;
}

/* A device marked for a resync (its table's rule or its token's attributes changed at
 * seq S) must start again from 0: a read from a cursor in (0, S) answers 410, and a
 * read from 0 (or from S on) clears the mark (*clear = S, for resync_clear after the
 * read), so the resync happens once and the pages of the new pull read on. */
static int resync_of(const struct feed_query *q, int64_t mark, int64_t *clear, struct err *err)
{
    *clear = 0;
    if (!q->device_id || mark == 0)
        return FERRY_OK;
    if (q->cursor > 0 && q->cursor < mark)
        return err_set(err, ERR_GONE,
                       "resync required: the sync rules or this device's attributes changed"
                       " (at %lld, after cursor %lld); pull again from cursor 0",
                       (long long)mark, (long long)q->cursor);
    *clear = mark;
    return FERRY_OK;
}

/* resync_of, with the device's mark read on its own (a reader answered a shared page). */
static int resync_check(struct store_conn *c, const struct feed_query *q, int64_t *clear,
                        struct err *err)
{
    struct store_val dev = sv_text(q->device_id);
    int64_t mark = 0;
    bool found = false;
    *clear = 0;
    if (!q->device_id)
        return FERRY_OK;
    if (store_query_int(c, "SELECT resync_seq FROM ferry_devices WHERE id = $1", &dev, 1, &mark,
                        &found, err) != FERRY_OK)
        return FERRY_ERR;
    return resync_of(q, found ? mark : 0, clear, err);
}

static int resync_clear(struct store_conn *c, const struct feed_query *q, int64_t mark,
                        struct err *err)
{
    struct store_val v[] = {sv_text(q->device_id), sv_int(mark)};
    return store_run(c, "UPDATE ferry_devices SET resync_seq = 0 WHERE id = $1 AND resync_seq = $2",
                     v, 2, NULL, err);
}

/* Begins the page's read in one snapshot: head, cursor checks, and the walk's statement
 * started in *rows (NULL when the query names no table). On failure the caller ends the
 * read (page_end). */
static int page_begin(struct store_conn *c, const struct feed_query *q, struct feed_stmt *s,
                      struct feed_text *out, int64_t *clear, struct store_rows **rows,
                      struct err *err)
{
    int64_t marks[N_MARKS] = {0};
    *rows = NULL;
    if (store_begin_read(c, err) != FERRY_OK || read_marks(c, q, marks, err) != FERRY_OK ||
        resync_of(q, marks[MARK_RESYNC], clear, err) != FERRY_OK ||
        check_cursor(q->cursor, marks, err) != FERRY_OK)
        return FERRY_ERR;
    out->head = marks[MARK_HEAD];
    return q->n_tables ? store_query(c, s->sql.data, s->v, s->n, rows, err) : FERRY_OK;
}

/* Ends the read: the cursor of a page with nothing after it is the head read. */
static void page_end(struct store_conn *c, const struct feed_query *q, struct store_rows *rows,
                     struct feed_text *out)
{
    store_rows_free(rows);
    if (!out->has_more)
        out->next_cursor = out->head > q->cursor ? out->head : q->cursor;
    store_rollback(c);
}

/* A woken read on PostgreSQL (the long-polls a push wakes, all at once): the marks and the
 * page in one statement, so in one snapshot without a transaction: one round trip, not
 * three (BEGIN with the marks, the page, ROLLBACK). Each row carries the marks after the
 * page's columns; an empty page is one row of marks alone (its seq NULL). */
static int read_page_at_once(struct store_conn *c, const struct feed_query *q, struct feed_stmt *s,
                             const int *offsets, struct feed_text *out, int64_t *clear,
                             struct err *err)
{
    struct store_rows *rows = NULL;
    struct render r = {.q = q, .offsets = offsets, .out = out};
    struct buf sql;
    int64_t marks[N_MARKS] = {0};
    int cols = LOG_COLS, step = -1, rc = FERRY_ERR;
    for (size_t i = 0; i < q->n_tables; i++)
        cols += (int)q->tables[i]->n_cols;
    buf_init(&sql);
    size_t device = bind(s, sv_text(q->device_id)); /* s->v has room for it (feed_sql) */
    /* ORDER BY 1 (the page's seq), not by name: a synced table may have a column "seq" */
    buf_printf(&sql,
               "SELECT p.*, COALESCE(" SETTLE_HEAD_PG ", 0),"
               " (SELECT horizon FROM ferry_writer WHERE id = 1),"
               " (SELECT resync_seq FROM ferry_devices WHERE id = $%zu), (" TOP_PG ")"
               " FROM (SELECT 1) m LEFT JOIN (%s) p ON true ORDER BY 1",
               device, s->sql.data);
    if (store_query(c, sql.data, s->v, s->n, &rows, err) == FERRY_OK)
        step = store_rows_next(rows, err);
    if (step == 0)
        err_set(err, ERR_INTERNAL, "the change log's marks are missing");
    for (int i = 0; step == 1 && i < N_MARKS; i++)
        marks[i] = store_rows_isnull(rows, cols + i) ? 0 : store_rows_int(rows, cols + i);
    if (step == 1 && resync_of(q, marks[MARK_RESYNC], clear, err) == FERRY_OK &&
        check_cursor(q->cursor, marks, err) == FERRY_OK) {
        out->head = marks[MARK_HEAD];
        if (!store_rows_isnull(rows, 0))
            put_row(&r, rows);
        rc = page_rows(rows, &r, 0, err) == 0 ? FERRY_OK : FERRY_ERR;
    }
    s->n--;
    page_end(c, q, rows, out);
    buf_cleanup(&sql);
    return rc;
}

/* The page of a read in one snapshot: head, cursor checks, changes. */
static int read_page(struct store_conn *c, const struct feed_query *q, struct feed_stmt *s,
                     const int *offsets, struct feed_text *out, int64_t *clear, struct err *err)
{
    struct store_rows *rows = NULL;
    struct render r = {.q = q, .offsets = offsets, .out = out};
    int rc = FERRY_ERR;
    if (q->woken && q->n_tables && store_conn_dialect(c) == STORE_POSTGRES)
        return read_page_at_once(c, q, s, offsets, out, clear, err);
    if (page_begin(c, q, s, out, clear, &rows, err) == FERRY_OK &&
        (!rows || page_rows(rows, &r, 0, err) == 0))
        rc = FERRY_OK;
    page_end(c, q, rows, out);
    return rc;
}

/* Answers from a page another reader of the same statement read (q->share), or reads it
 * and offers it to the next. */
static int shared_page(struct store_conn *c, const struct feed_query *q, struct feed_stmt *s,
                       const int *offsets, struct feed_text *out, int64_t *clear, struct err *err)
{
    struct buf key;
    struct feedshare_page page;
    size_t start = out->changes->len;
    buf_init(&key);
    share_key(s, &key);
    int rc = FERRY_OK;
    if (feedshare_get(q->share, key.data, key.len, q->share_head, out->changes, &page)) {
        rc = resync_check(c, q, clear, err); /* the device's own, whoever read the page */
        out->n = page.n;
        out->next_cursor = page.next_cursor;
        out->has_more = page.has_more;
        out->head = page.head;
    } else if ((rc = read_page(c, q, s, offsets, out, clear, err)) == FERRY_OK) {
        page = (struct feedshare_page){out->changes->data + start,
                                       out->changes->len - start,
                                       out->n,
                                       out->next_cursor,
                                       out->has_more,
                                       out->head};
        feedshare_put(q->share, key.data, key.len, &page);
    }
    buf_cleanup(&key);
    return rc;
}

int feed_read_text(struct store_conn *c, const struct feed_query *q, struct feed_text *out,
                   struct err *err)
{
    int *offsets = xcalloc(q->n_tables + 1, sizeof(*offsets));
    struct feed_stmt s;
    int64_t clear = 0;
    int rc;

    out->n = 0;
    out->has_more = false;
    out->next_cursor = 0;
    out->head = 0;
    feed_sql(q, &s, offsets, store_conn_dialect(c) == STORE_POSTGRES);
    /* What committed before the read is in it: the head is brought up to the newest
     * committed entry first (settle.h; a push's own changes are there already, other
     * programs' may not be yet). A woken read need not: what woke it is below the head,
     * and whatever lies above is left to the next read, which the head's move wakes. */
    if (!q->woken && settle_reader(c, READ_SETTLE_MS, err) != FERRY_OK)
        rc = FERRY_ERR;
    else if (q->share && out->shape == FEED_CHANGES)
        rc = shared_page(c, q, &s, offsets, out, &clear, err);
    else
        rc = read_page(c, q, &s, offsets, out, &clear, err);
    if (rc == FERRY_OK && clear) /* after the read's snapshot: a write of its own */
        rc = resync_clear(c, q, clear, err);
    buf_cleanup(&s.sql);
    free(s.v);
    free(s.values);
    free(offsets);
    return rc;
}

int feed_read(struct store_conn *c, const struct feed_query *q, struct feed_page *page,
              struct err *err)
{
    struct buf text;
    struct feed_text out = {.shape = FEED_CHANGES, .changes = &text};
    json_error_t jerr;

    memset(page, 0, sizeof(*page));
    buf_init(&text);
    buf_puts(&text, "[");
    int rc = feed_read_text(c, q, &out, err);
    if (rc == FERRY_OK) {
        buf_puts(&text, "]");
        /* the text was written to be JSON: a failure here is a bug, not the caller's */
        page->changes = json_loadb(text.data, text.len, 0, &jerr);
        if (!page->changes)
            rc =
                err_set(err, ERR_INTERNAL, "the feed wrote a page that is not JSON: %s", jerr.text);
        page->next_cursor = out.next_cursor;
        page->has_more = out.has_more;
        page->head = out.head;
    }
    buf_cleanup(&text);
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

/* --- a page written while it is sent ------------------------------------------------ */

/* PostgreSQL hands a statement's rows over whole: a streamed page is read there in
 * statements of at most this many rows, each from where the one before ended (seq order,
 * one snapshot, and a caller's feed never shows two changes at one seq), so the server
 * holds a chunk of the page, not up to CHANGES_STREAM_MAX_LIMIT rows whatever maxBytes. */
#define STREAM_PG_CHUNK 1000

struct feed_stream {
    struct store_conn *c;
    struct feed_query q;                /* the caller's, with tables and exclude owned */
    const struct synced_table **tables; /* owned */
    char *exclude;                      /* owned */
    struct feed_stmt s;
    int *offsets;
    struct store_rows *rows;
    struct feed_text out; /* counts and cursors; its buffer is the one being filled */
    struct render r;
    int64_t clear;
    bool reading;        /* the read's snapshot is open */
    int64_t chunk;       /* PostgreSQL: the rows one statement reads; 0: the whole page */
    size_t chunk_start;  /* the changes written before the running statement's */
    struct by_table *bt; /* FEED_BY_TABLE's passes; NULL for FEED_CHANGES */
};

/* A page grouped by table (cloud-sync-api's shape) is written in passes over one snapshot:
 * its end (the seq of its last change) found first, over the log alone (for one table,
 * where the page is that table's walk cut at the limit, by its rows' pass); then per table
 * its rows in (cursor, end] in seq order, then per table the keys deleted there. Each
 * pass walks the page's statement narrowed to one table: that statement is a filter (or
 * under rules a union of branches) per table, so a table's walk is its part of the page,
 * exits included, in the page's order. */
struct by_table {
    char *between;    /* written between the data object and the deleted object, owned */
    int64_t end;      /* the page's last seq (INT64_MAX: the page ends at the head) */
    bool *deletes_in; /* per table: its rows' pass met deleted ones */
    size_t pass;      /* 0..n-1: table i's rows, n..2n-1: its deleted keys; 2n: done */
    bool open, first; /* the pass's list is open; and still empty */
    bool past_end;    /* the running statement read past the page's end */
    bool done;
    struct feed_stmt *s; /* per table: the page's statement narrowed to it */
    int offset[1];
    int64_t read, last; /* rows the running statement gave, and the last one's seq */
};

/* The LIMIT of the walk's next statement: the page's rows still to read (and the one
 * telling that more follow), at most a chunk (and that one: a page of a chunk's changes
 * is one statement). */
static int64_t chunk_limit(const struct feed_stream *fs)
{
    int64_t left = (int64_t)fs->q.limit + 1 - (int64_t)fs->out.n;
    return left <= fs->chunk + 1 ? left : fs->chunk;
}

/* After a statement's rows ran out: 1 when a next statement was started (the last one
 * read as many rows as it asked for, and the page is not whole), 0 when the page is whole,
 * -1 on error. */
static int next_chunk(struct feed_stream *fs, struct err *err)
{
    if (!fs->chunk || fs->out.has_more ||
        (int64_t)(fs->out.n - fs->chunk_start) < fs->s.v[fs->s.limit_param - 1].i)
        return 0;
    store_rows_free(fs->rows);
    fs->rows = NULL;
    fs->s.v[fs->s.cursor_param - 1] = sv_int(fs->out.next_cursor);
    fs->s.v[fs->s.limit_param - 1] = sv_int(chunk_limit(fs));
    fs->chunk_start = fs->out.n;
    return store_query(fs->c, fs->s.sql.data, fs->s.v, fs->s.n, &fs->rows, err) == FERRY_OK ? 1
                                                                                            : -1;
}

static struct feed_stream *stream_new(struct store_conn *c, const struct feed_query *q,
                                      enum feed_shape shape)
{
    struct feed_stream *fs = xcalloc(1, sizeof(*fs));
    fs->c = c;
    fs->q = *q;
    fs->q.share = NULL; /* a stream is this reader's own */
    fs->tables = xcalloc(q->n_tables + 1, sizeof(*fs->tables));
    memcpy(fs->tables, q->tables, q->n_tables * sizeof(*fs->tables));
    fs->q.tables = fs->tables;
    fs->exclude = q->exclude_device ? xstrdup(q->exclude_device) : NULL;
    fs->q.exclude_device = fs->exclude;
    fs->offsets = xcalloc(q->n_tables + 1, sizeof(*fs->offsets));
    fs->out.shape = shape;
    fs->r = (struct render){.q = &fs->q, .offsets = fs->offsets, .out = &fs->out};
    if (store_conn_dialect(c) == STORE_POSTGRES)
        fs->chunk = STREAM_PG_CHUNK;
    return fs;
}

int feed_stream_open(struct store_conn *c, const struct feed_query *q, struct feed_stream **out,
                     struct err *err)
{
    struct feed_stream *fs = stream_new(c, q, FEED_CHANGES);
    feed_sql(&fs->q, &fs->s, fs->offsets, store_conn_dialect(c) == STORE_POSTGRES);
    if (fs->chunk)
        fs->s.v[fs->s.limit_param - 1] = sv_int(chunk_limit(fs));
    *out = fs;
    if (settle_reader(c, READ_SETTLE_MS, err) != FERRY_OK)
        return FERRY_ERR;
    fs->reading = true;
    return page_begin(c, &fs->q, &fs->s, &fs->out, &fs->clear, &fs->rows, err);
}

/* The page's end from the statement of feed_stream_by_table: the last of its first limit
 * changes, when there are that many (fewer: the page ends at the head). Whether more
 * follow, the rows' passes tell (a table's walk reads on past the end). */
static int read_end(struct feed_stream *fs, struct err *err)
{
    struct by_table *bt = fs->bt;
    int step = fs->rows ? store_rows_next(fs->rows, err) : 0;
    bt->end = INT64_MAX;
    if (step == 1 && store_rows_int(fs->rows, 0) == fs->q.limit)
        bt->end = store_rows_int(fs->rows, 1);
    store_rows_free(fs->rows);
    fs->rows = NULL;
    fs->out.next_cursor = bt->end; /* the head instead when nothing follows (page_end) */
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

int feed_stream_by_table(struct store_conn *c, const struct feed_query *q, const char *between,
                         struct feed_stream **out, struct err *err)
{
    struct feed_stream *fs = stream_new(c, q, FEED_BY_TABLE);
    struct buf sql;
    fs->bt = xcalloc(1, sizeof(*fs->bt));
    fs->bt->between = xstrdup(between);
    fs->bt->deletes_in = xcalloc(q->n_tables + 1, sizeof(bool));
    /* The page's walk over the log's seq (the joins stay only where a condition reads
     * the row), cut at the limit: how many and the last, which needs no order outside. */
    walk_sql(&fs->q, &fs->s, fs->offsets, true, store_conn_dialect(c) == STORE_POSTGRES);
    fs->s.v[fs->s.limit_param - 1] = sv_int(q->limit);
    /* each table's walk, built while the caller's rules caller lives (the stream outlives
     * the request's handler) */
    fs->bt->s = xcalloc(q->n_tables + 1, sizeof(*fs->bt->s));
    for (size_t i = 0; i < q->n_tables; i++) {
        struct feed_query one = fs->q;
        one.tables = &fs->tables[i];
        one.n_tables = 1;
        feed_sql(&one, &fs->bt->s[i], fs->bt->offset, store_conn_dialect(c) == STORE_POSTGRES);
    }
    fs->q.caller = NULL;
    fs->q.files = NULL;
    buf_init(&sql);
    buf_printf(&sql, "SELECT COUNT(*), MAX(seq) FROM (%s) w", fs->s.sql.data);
    buf_cleanup(&fs->s.sql);
    fs->s.sql = sql;
    *out = fs;
    if (settle_reader(c, READ_SETTLE_MS, err) != FERRY_OK)
        return FERRY_ERR;
    fs->reading = true;
    /* One table's page is its walk cut at the limit: the rows' pass finds the end. */
    struct feed_query marks = fs->q;
    marks.n_tables = q->n_tables == 1 ? 0 : q->n_tables; /* no end walk for one table */
    if (page_begin(c, &marks, &fs->s, &fs->out, &fs->clear, &fs->rows, err) != FERRY_OK)
        return FERRY_ERR;
    return read_end(fs, err);
}

static void stmt_cleanup(struct feed_stmt *s)
{
    buf_cleanup(&s->sql);
    free(s->v);
    free(s->values);
}

/* One row of a pass: a row's data (null when gone) in the rows' pass, a deleted row's key
 * in the keys' pass, as feed_read_text's FEED_BY_TABLE writes them. */
static void put_listed(struct feed_stream *fs, struct buf *b)
{
    struct by_table *bt = fs->bt;
    size_t i = bt->pass % fs->q.n_tables;
    bool keys = bt->pass >= fs->q.n_tables, deleted;
    bool data = has_data(fs->tables[i], bt->offset[0], fs->rows, &deleted);
    if (!keys) {
        fs->out.n++;
        bt->deletes_in[i] = bt->deletes_in[i] || deleted;
    }
    if (deleted != keys)
        return;
    size_t mark = b->len;
    if (!bt->first)
        put_lit(b, ",");
    if (!deleted && data)
        put_data(b, fs->tables[i], bt->offset[0], fs->rows);
    else if (!deleted)
        put_lit(b, "null");
    else if (!put_key(b, fs->tables[i], store_rows_text(fs->rows, 2))) {
        jsonw_truncate(b, mark);
        return;
    }
    bt->first = false;
}

/* Writes the running statement's rows of the page until b grew by want bytes since
 * start: 1 when it did, 0 when the rows ran out or passed the page's end, -1 on error. */
static int pass_rows(struct feed_stream *fs, struct buf *b, size_t start, size_t want,
                     struct err *err)
{
    struct by_table *bt = fs->bt;
    int step;
    while ((step = store_rows_next(fs->rows, err)) == 1) {
        int64_t seq = store_rows_int(fs->rows, 0);
        if (fs->q.n_tables == 1 && bt->pass == 0 && fs->out.n == (size_t)fs->q.limit)
            bt->end = bt->last; /* one table: its rows' pass wrote the whole page */
        if (seq > bt->end) {    /* a change after the page's end: more follow */
            bt->past_end = true;
            fs->out.has_more = true;
            fs->out.next_cursor = bt->end;
            return 0;
        }
        bt->read++;
        bt->last = seq;
        put_listed(fs, b);
        if (b->len - start >= want)
            return 1;
    }
    return step < 0 ? -1 : 0;
}

/* Starts the pass's statement from cursor; the pass's table's walk reads at most the
 * page's limit + 1 rows, or on PostgreSQL a chunk of them. */
static int pass_query(struct feed_stream *fs, int64_t cursor, struct err *err)
{
    struct by_table *bt = fs->bt;
    struct feed_stmt *s = &bt->s[bt->pass % fs->q.n_tables];
    s->v[s->cursor_param - 1] = sv_int(cursor);
    if (fs->chunk)
        s->v[s->limit_param - 1] = sv_int(fs->chunk);
    bt->read = 0;
    bt->past_end = false;
    return store_query(fs->c, s->sql.data, s->v, s->n, &fs->rows, err);
}

/* After the running statement's rows ran out: 1 when the pass's next chunk was started
 * (PostgreSQL: the last one was full and short of the page's end), 0 when the pass is
 * over, -1 on error. */
static int pass_next_chunk(struct feed_stream *fs, struct err *err)
{
    struct by_table *bt = fs->bt;
    if (!fs->chunk || bt->past_end || bt->read < fs->chunk)
        return 0;
    store_rows_free(fs->rows);
    fs->rows = NULL;
    return pass_query(fs, bt->last, err) == FERRY_OK ? 1 : -1;
}

/* Closes the pass's list (and after the last table's, its object) and begins the next
 * pass: its list opened, and its statement started when there is something to read. */
static int next_pass(struct feed_stream *fs, struct buf *b, struct err *err)
{
    struct by_table *bt = fs->bt;
    size_t n = fs->q.n_tables;
    store_rows_free(fs->rows);
    fs->rows = NULL;
    if (bt->open) {
        put_lit(b, "]");
        bt->open = false;
        bt->pass++;
    }
    if (n == 0 || bt->pass == 2 * n) {
        buf_puts(b, n ? "}" : "{}");
        buf_puts(b, n ? "" : bt->between);
        buf_puts(b, n ? "" : "{}");
        bt->done = true;
        return FERRY_OK;
    }
    if (bt->pass == n) {
        put_lit(b, "}");
        buf_puts(b, bt->between);
    }
    size_t i = bt->pass % n;
    buf_puts(b, i == 0 ? "{" : ",");
    jsonw_string(b, fs->tables[i]->name, strlen(fs->tables[i]->name));
    put_lit(b, ":[");
    bt->open = bt->first = true;
    if (bt->pass >= n && !bt->deletes_in[i])
        return FERRY_OK; /* no deleted keys: the list closes at the next call */
    return pass_query(fs, fs->q.cursor, err);
}

/* feed_stream_next for FEED_BY_TABLE: the passes' lists until b grew by want bytes. */
static int next_by_table(struct feed_stream *fs, struct buf *b, size_t want, struct err *err)
{
    size_t start = b->len;
    int step;
    while (!fs->bt->done) {
        if (fs->rows && (step = pass_rows(fs, b, start, want, err)) != 0)
            return step;
        if (fs->rows && (step = pass_next_chunk(fs, err)) != 0) {
            if (step < 0)
                return -1;
            continue;
        }
        if (next_pass(fs, b, err) != FERRY_OK)
            return -1;
        if (b->len - start >= want && !fs->bt->done)
            return 1;
    }
    return 0;
}

int feed_stream_next(struct feed_stream *fs, struct buf *changes, size_t want, struct err *err)
{
    int step = 0;
    fs->out.changes = changes;
    if (fs->bt)
        step = next_by_table(fs, changes, want, err);
    else
        while (fs->rows && (step = page_rows(fs->rows, &fs->r, want, err)) == 0 &&
               (step = next_chunk(fs, err)) == 1)
            ;
    if (step != 0)
        return step;
    page_end(fs->c, &fs->q, fs->rows, &fs->out);
    fs->rows = NULL;
    fs->reading = false;
    if (fs->clear && resync_clear(fs->c, &fs->q, fs->clear, err) != FERRY_OK)
        return -1;
    fs->clear = 0;
    return 0;
}

const struct feed_text *feed_stream_page(const struct feed_stream *fs)
{
    return &fs->out;
}

void feed_stream_free(struct feed_stream *fs)
{
    if (!fs)
        return;
    if (fs->reading)
        page_end(fs->c, &fs->q, fs->rows, &fs->out);
    for (size_t i = 0; fs->bt && i < fs->q.n_tables; i++)
        stmt_cleanup(&fs->bt->s[i]);
    if (fs->bt) {
        free(fs->bt->s);
        free(fs->bt->between);
        free(fs->bt->deletes_in);
    }
    free(fs->bt);
    stmt_cleanup(&fs->s);
    free(fs->offsets);
    free(fs->tables);
    free(fs->exclude);
    free(fs);
}
