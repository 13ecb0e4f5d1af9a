/* dbsync.c - see dbsync.h. One table at a time: both sides are read in pages of PAGE_ROWS
 * in primary-key order (keyset paging, so PostgreSQL's whole-result fetch stays one page),
 * each in a read snapshot, and merged like two sorted lists. Writes go through a third
 * connection to the target; their new hashes are staged in ferry's database and become
 * the pair's state only once the target committed them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dbsync/dbrows.h"
#include "dbsync/dbstate.h"
#include "dbsync/dbsync.h"
#include "files/leases.h"
#include "util/buf.h"

#define PAGE_ROWS 500
/* PostgreSQL targets take this many rows per INSERT: one round trip instead of a hundred */
#define UPSERT_ROWS 100

struct page {
    struct dbrow rows[PAGE_ROWS];
    size_t n, pos;
    bool end;       /* no page after this one */
    char *last_key; /* of the last page read */
};

struct table_sync {
    const struct dbsync_options *o;
    struct dbsync_result *r;
    const char *entity;
    char pair[40];
    char **names, **decls; /* synced columns and their declared types in the target */
    size_t n_cols;
    int key_col;
    bool int_key;
    enum store_dialect to;
    char *first_sql[2], *next_sql[2], *upsert_sql, *batch_sql, *delete_sql, *get_sql;
    char *qtable, *qkey, *cols_sql, *sets_sql; /* pieces of the upsert statements */
    struct store_conn *src, *read, *write, *state;
    struct page pages[2]; /* source, target */
    struct dbstate_staged staged[PAGE_ROWS];
    size_t n_staged;
    struct dbrow pending[UPSERT_ROWS]; /* source rows waiting for the next batched INSERT */
    size_t n_pending;
    struct dbsync_progress progress;
    struct dbsync_result committed; /* the counts as of the last commit on the target */
    struct lease lease;             /* one sync of a pair's table at a time, on any node */
    bool leased;
    bool captured; /* the source is a ferry database that records this table's changes */
    bool synced;   /* the pair synced this table before this run */
};

static char *upsert_statement(const struct table_sync *t, size_t n_rows);

int dbsync_parse_policy(const char *name, enum dbsync_policy *out, struct err *err)
{
    if (!name || !strcmp(name, "skip") || !strcmp(name, "manual"))
        *out = DBSYNC_KEEP_TARGET;
    else if (!strcmp(name, "overwrite"))
        *out = DBSYNC_OVERWRITE;
    else
        return err_set(err, ERR_INVALID,
                       "field 'conflictPolicy' must be \"skip\" or \"overwrite\"");
    return FERRY_OK;
}

void dbsync_result_clear(struct dbsync_result *r)
{
    json_decref(r->errors);
    json_decref(r->conflicts_at);
    memset(r, 0, sizeof(*r));
}

static void page_clear(struct page *p)
{
    for (size_t i = 0; i < p->n; i++)
        dbrows_clear(&p->rows[i]);
    p->n = p->pos = 0;
}

/* Reads the page after last_key on side (0 source, 1 target). */
static int fetch(struct table_sync *t, int side, struct err *err)
{
    struct page *p = &t->pages[side];
    struct store_conn *c = side ? t->read : t->src;
    struct store_rows *rows = NULL;
    struct store_val key =
        t->int_key && p->last_key ? sv_int(strtoll(p->last_key, NULL, 10)) : sv_text(p->last_key);
    int got = 0;
    page_clear(p);
    if (store_query(c, p->last_key ? t->next_sql[side] : t->first_sql[side], &key,
                    p->last_key ? 1 : 0, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    while (p->n < PAGE_ROWS && (got = store_rows_next(rows, err)) == 1)
        dbrows_copy(rows, (int)t->n_cols, t->key_col, &p->rows[p->n++]);
    store_rows_free(rows);
    if (got < 0)
        return FERRY_ERR;
    p->end = p->n < PAGE_ROWS;
    if (p->n) {
        free(p->last_key);
        p->last_key = xstrdup(p->rows[p->n - 1].key);
    }
    return FERRY_OK;
}

/* The next row of a side, or NULL at its end. */
static int current(struct table_sync *t, int side, struct dbrow **row, struct err *err)
{
    struct page *p = &t->pages[side];
    *row = NULL;
    if (p->pos == p->n && !p->end && fetch(t, side, err) != FERRY_OK)
        return FERRY_ERR;
    if (p->pos < p->n)
        *row = &p->rows[p->pos];
    return FERRY_OK;
}

static void stage(struct table_sync *t, const char *key, const char *source_hash,
                  const char *target_hash)
{
    struct dbstate_staged *s = &t->staged[t->n_staged++];
    s->key = xstrdup(key);
    s->deleted = !source_hash;
    snprintf(s->source_hash, sizeof(s->source_hash), "%s", source_hash ? source_hash : "");
    snprintf(s->target_hash, sizeof(s->target_hash), "%s", target_hash ? target_hash : "");
}

static struct store_val key_val(const struct table_sync *t, const char *key)
{
    return t->int_key ? sv_int(strtoll(key, NULL, 10)) : sv_text(key);
}

/* Reads back the target's row of key (as stored) and stages it with the source's hash. */
static int read_back(struct table_sync *t, const char *key, const char *source_hash,
                     struct err *err)
{
    struct store_val v = key_val(t, key);
    struct store_rows *rows = NULL;
    struct dbrow back = {0};
    int rc = FERRY_ERR, got;
    if (store_query(t->write, t->get_sql, &v, 1, &rows, err) != FERRY_OK ||
        (got = store_rows_next(rows, err)) < 0)
        goto out;
    if (got == 0) {
        err_set(err, ERR_DATABASE, "row %s of %s was written but cannot be read back", key,
                t->entity);
        goto out;
    }
    dbrows_copy(rows, (int)t->n_cols, t->key_col, &back);
    stage(t, key, source_hash, back.hash);
    rc = FERRY_OK;
out:
    dbrows_clear(&back);
    store_rows_free(rows);
    return rc;
}

static void bind_row(const struct table_sync *t, const struct dbrow *s, struct store_val *v)
{
    for (size_t i = 0; i < t->n_cols; i++)
        v[i] = dbrows_bind(&s->vals[i], t->decls[i], t->to);
}

/* Stages each returned row against the pending row of its key; a pending row the INSERT
 * did not return (a key-only table's DO NOTHING) is read back. */
static int stage_returned(struct table_sync *t, struct store_rows *rows, struct err *err)
{
    bool *seen = xcalloc(t->n_pending, sizeof(bool));
    int got, rc = FERRY_ERR;
    while ((got = store_rows_next(rows, err)) == 1) {
        struct dbrow back = {0};
        dbrows_copy(rows, (int)t->n_cols, t->key_col, &back);
        for (size_t i = 0; i < t->n_pending; i++)
            if (!seen[i] && !strcmp(t->pending[i].key, back.key)) {
                stage(t, back.key, t->pending[i].hash, back.hash);
                seen[i] = true;
                break;
            }
        dbrows_clear(&back);
    }
    store_rows_free(rows);
    for (size_t i = 0; got == 0 && i < t->n_pending; i++)
        if (!seen[i] && read_back(t, t->pending[i].key, t->pending[i].hash, err) != FERRY_OK)
            goto out;
    rc = got == 0 ? FERRY_OK : FERRY_ERR;
out:
    free(seen);
    return rc;
}

/* Writes the pending rows in one INSERT ... RETURNING (PostgreSQL). */
static int flush_upserts(struct table_sync *t, struct err *err)
{
    struct store_val *v;
    struct store_rows *rows = NULL;
    char *partial = NULL;
    int rc = FERRY_ERR;
    if (!t->n_pending)
        return FERRY_OK;
    v = xcalloc(t->n_pending * t->n_cols, sizeof(*v));
    for (size_t i = 0; i < t->n_pending; i++)
        bind_row(t, &t->pending[i], v + i * t->n_cols);
    if (t->n_pending < UPSERT_ROWS)
        partial = upsert_statement(t, t->n_pending);
    if (store_query(t->write, partial ? partial : t->batch_sql, v, t->n_pending * t->n_cols, &rows,
                    err) == FERRY_OK)
        rc = stage_returned(t, rows, err);
    for (size_t i = 0; i < t->n_pending; i++)
        dbrows_clear(&t->pending[i]);
    t->n_pending = 0;
    free(partial);
    free(v);
    return rc;
}

/* Writes the source row to the target and stages its new hashes, of the row as the
 * target stored it, so that the next sync compares like with like. PostgreSQL's RETURNING
 * gives that row in the same round trip, so rows for it are batched; SQLite's RETURNING
 * does not always (an integral REAL comes back as an integer), and SQLite is local, so
 * there each row is written and read back. */
static int upsert(struct table_sync *t, const struct dbrow *s, struct err *err)
{
    for (size_t i = 0; i < t->n_cols; i++)
        t->r->bytes += (int64_t)s->vals[i].len;
    if (t->to == STORE_POSTGRES) {
        dbrows_dup(s, &t->pending[t->n_pending++]);
        return t->n_pending == UPSERT_ROWS ? flush_upserts(t, err) : FERRY_OK;
    }
    struct store_val *v = xcalloc(t->n_cols, sizeof(*v));
    bind_row(t, s, v);
    int rc = store_run(t->write, t->upsert_sql, v, t->n_cols, NULL, err);
    free(v);
    return rc == FERRY_OK ? read_back(t, s->key, s->hash, err) : FERRY_ERR;
}

static int delete_row(struct table_sync *t, const char *key, struct err *err)
{
    struct store_val v = key_val(t, key);
    if (store_run(t->write, t->delete_sql, &v, 1, NULL, err) != FERRY_OK)
        return FERRY_ERR;
    stage(t, key, NULL, NULL);
    t->r->deleted++;
    return FERRY_OK;
}

/* A row changed in the target since the last sync: recorded, listed, and overwritten only
 * when the policy says so. */
static int conflict(struct table_sync *t, const struct dbrow *s, const struct dbrow *g,
                    const char *reason, struct err *err)
{
    bool overwrite = t->o->policy == DBSYNC_OVERWRITE;
    const char *resolution = overwrite ? "overwritten" : "kept-target";
    const char *key = s ? s->key : g->key;
    json_t *src = s ? dbrows_json(s, t->names) : NULL, *tgt = g ? dbrows_json(g, t->names) : NULL;
    int rc = dbstate_conflict(t->state, t->o->run_id, t->pair, key, src, tgt, resolution, err);
    json_decref(src);
    json_decref(tgt);
    t->r->conflicts++;
    if (json_array_size(t->r->conflicts_at) < DBSYNC_MAX_LISTED)
        json_array_append_new(t->r->conflicts_at,
                              json_pack("{s:s, s:s, s:s, s:s}", "entity", t->entity, "key", key,
                                        "reason", reason, "resolution", resolution));
    if (rc != FERRY_OK || !overwrite)
        return rc;
    if (!s)
        return delete_row(t, key, err);
    t->r->updated += g != NULL;
    t->r->inserted += g == NULL;
    return upsert(t, s, err);
}

/* Whether the source's change log (a ferry database capturing the table) holds a
 * tombstone for key: a delete made there, to be carried even to a target row this pair
 * never copied. */
static int source_deleted(struct table_sync *t, const char *key, bool *deleted, struct err *err)
{
    struct store_val v[] = {sv_text(t->entity), sv_text(key)};
    int64_t flag = 0;
    *deleted = false;
    if (!t->captured)
        return FERRY_OK;
    if (store_query_int(t->src, "SELECT deleted FROM ferry_changes WHERE tbl = $1 AND pk = $2", v,
                        2, &flag, deleted, err) != FERRY_OK)
        return FERRY_ERR;
    *deleted = *deleted && flag == 1;
    return FERRY_OK;
}

/* One key: s is the source row (NULL: not in the source), g the target's. */
static int step(struct table_sync *t, const struct dbrow *s, const struct dbrow *g, struct err *err)
{
    char was_source[65], was_target[65];
    bool known = false;
    if (dbstate_lookup(t->state, t->pair, s ? s->key : g->key, was_source, was_target, &known,
                       err) != FERRY_OK)
        return FERRY_ERR;
    if (s && !g) {
        if (known)
            return conflict(t, s, NULL, "deleted in the target", err);
        t->r->inserted++;
        return upsert(t, s, err);
    }
    if (!s) { /* a target row never synced from this source is ours to delete only when
               * the source's change log says it deleted the row */
        bool tombstone = false;
        if (!known && source_deleted(t, g->key, &tombstone, err) != FERRY_OK)
            return FERRY_ERR;
        if (!known)
            return tombstone ? delete_row(t, g->key, err) : FERRY_OK;
        if (!strcmp(g->hash, was_target))
            return delete_row(t, g->key, err);
        return conflict(t, NULL, g, "deleted in the source, changed in the target", err);
    }
    if (!known && t->synced && strcmp(s->hash, g->hash) != 0)
        return conflict(t, s, g, "added in the target since the last sync", err);
    bool source_changed = !known || strcmp(s->hash, was_source) != 0;
    bool target_changed = known && strcmp(g->hash, was_target) != 0;
    if (target_changed)
        return conflict(t, s, g, "changed in the target", err);
    if (!source_changed || (!known && !strcmp(s->hash, g->hash))) {
        if (!known) /* equal already (same dialect): remember it */
            stage(t, s->key, s->hash, g->hash);
        t->r->unchanged++;
        return FERRY_OK;
    }
    t->r->updated++;
    return upsert(t, s, err);
}

static void staged_clear(struct table_sync *t)
{
    for (size_t i = 0; i < t->n_staged; i++)
        free(t->staged[i].key);
    t->n_staged = 0;
}

/* A page of writes is done: stage its state; without useTransactions commit the target
 * and make the state the pair's. last: the entity is done. */
static int flush(struct table_sync *t, bool last, struct err *err)
{
    if (flush_upserts(t, err) != FERRY_OK)
        return FERRY_ERR;
    int rc = dbstate_stage(t->state, t->o->run_id, t->pair, t->staged, t->n_staged, err);
    staged_clear(t);
    if (rc != FERRY_OK)
        return FERRY_ERR;
    if (t->o->progress)
        t->o->progress(t->o->ctx, &t->progress);
    if (leases_renew(t->state, &t->lease, false, err) != FERRY_OK)
        return FERRY_ERR;
    if (t->o->use_transactions && !last)
        return FERRY_OK;
    if (store_commit(t->write, err) != FERRY_OK)
        return FERRY_ERR;
    t->committed = *t->r;
    if (dbstate_commit(t->state, t->o->run_id, t->pair, err) != FERRY_OK)
        return FERRY_ERR;
    return last ? FERRY_OK : store_begin(t->write, err);
}

/* Merges the two sides in key order. */
static int walk(struct table_sync *t, struct err *err)
{
    for (;;) {
        struct dbrow *s = NULL, *g = NULL;
        if (t->o->stop && atomic_load(t->o->stop))
            return err_set(err, ERR_UNAVAILABLE, "the sync was stopped (server shutting down)");
        if (current(t, 0, &s, err) != FERRY_OK || current(t, 1, &g, err) != FERRY_OK)
            return FERRY_ERR;
        if (!s && !g)
            break;
        int cmp = !s ? 1 : !g ? -1 : dbrows_key_cmp(s->key, g->key, t->int_key);
        if (step(t, cmp <= 0 ? s : NULL, cmp >= 0 ? g : NULL, err) != FERRY_OK)
            return FERRY_ERR;
        if (cmp <= 0)
            t->pages[0].pos++, t->progress.rows_done++;
        if (cmp >= 0)
            t->pages[1].pos++;
        t->progress.changes = t->r->inserted + t->r->updated + t->r->deleted;
        t->progress.bytes = t->r->bytes;
        if (t->n_staged + t->n_pending >= PAGE_ROWS - 1 && flush(t, false, err) != FERRY_OK)
            return FERRY_ERR;
    }
    return flush(t, true, err);
}

/* The key as each side orders it: PostgreSQL text keys by bytes ("C"), as SQLite does and
 * as dbrows_key_cmp compares, whatever the database's collation. */
static char *key_expr(const char *qkey, enum store_dialect d, bool int_key)
{
    return d == STORE_POSTGRES && !int_key ? xasprintf("(%s::text COLLATE \"C\")", qkey)
                                           : xstrdup(qkey);
}

static void build_selects(struct table_sync *t, int side, enum store_dialect d, const char *qtable,
                          const char *cols, const char *qkey)
{
    char *k = key_expr(qkey, d, t->int_key);
    t->first_sql[side] =
        xasprintf("SELECT %s FROM %s ORDER BY %s LIMIT %d", cols, qtable, k, PAGE_ROWS);
    t->next_sql[side] = xasprintf("SELECT %s FROM %s WHERE %s > $1 ORDER BY %s LIMIT %d", cols,
                                  qtable, k, k, PAGE_ROWS);
    free(k);
}

/* INSERT ... ON CONFLICT of n_rows rows (RETURNING them on PostgreSQL). */
static char *upsert_statement(const struct table_sync *t, size_t n_rows)
{
    struct buf sql;
    buf_init(&sql);
    buf_printf(&sql, "INSERT INTO %s (%s) VALUES ", t->qtable, t->cols_sql);
    for (size_t r = 0; r < n_rows; r++) {
        buf_puts(&sql, r ? ", (" : "(");
        for (size_t i = 0; i < t->n_cols; i++)
            buf_printf(&sql, "%s$%zu", i ? ", " : "", r * t->n_cols + i + 1);
        buf_puts(&sql, ")");
    }
    buf_printf(&sql, " ON CONFLICT (%s) DO %s%s", t->qkey, *t->sets_sql ? "UPDATE SET " : "NOTHING",
               t->sets_sql);
    if (t->to == STORE_POSTGRES)
        buf_printf(&sql, " RETURNING %s", t->cols_sql);
    return buf_steal(&sql);
}

/* The statements of one table, over the synced columns. */
static void build_sql(struct table_sync *t, enum store_dialect from)
{
    struct buf cols, sets;
    buf_init(&cols);
    buf_init(&sets);
    for (size_t i = 0; i < t->n_cols; i++) {
        char *q = store_quote_ident(t->names[i]);
        buf_printf(&cols, "%s%s", i ? ", " : "", q);
        if ((int)i != t->key_col)
            buf_printf(&sets, "%s%s = excluded.%s", sets.len ? ", " : "", q, q);
        free(q);
    }
    t->qtable = store_quote_ident(t->entity);
    t->qkey = store_quote_ident(t->names[t->key_col]);
    t->cols_sql = buf_steal(&cols);
    t->sets_sql = sets.len ? buf_steal(&sets) : xstrdup("");
    build_selects(t, 0, from, t->qtable, t->cols_sql, t->qkey);
    build_selects(t, 1, t->to, t->qtable, t->cols_sql, t->qkey);
    t->upsert_sql = upsert_statement(t, 1);
    t->batch_sql = upsert_statement(t, UPSERT_ROWS);
    t->delete_sql = xasprintf("DELETE FROM %s WHERE %s = $1", t->qtable, t->qkey);
    t->get_sql = xasprintf("SELECT %s FROM %s WHERE %s = $1", t->cols_sql, t->qtable, t->qkey);
    buf_cleanup(&sets);
}

/* Creates the target table from the source's columns, types mapped to its dialect. */
static int create_target(struct table_sync *t, const struct store_table *src,
                         enum store_dialect from, struct err *err)
{
    struct buf sql;
    char *qtable = store_quote_ident(t->entity);
    buf_init(&sql);
    buf_printf(&sql, "CREATE TABLE %s (", qtable);
    for (size_t i = 0; i < src->n_cols; i++) {
        char *q = store_quote_ident(src->cols[i].name);
        char *type = dbrows_map_type(src->cols[i].decl_type, from, t->to);
        buf_printf(&sql, "%s%s %s%s%s", i ? ", " : "", q, type,
                   src->cols[i].not_null || src->cols[i].primary_key ? " NOT NULL" : "",
                   src->cols[i].primary_key ? " PRIMARY KEY" : "");
        free(q);
        free(type);
    }
    buf_puts(&sql, ")");
    int rc = store_exec(t->write, sql.data, err);
    buf_cleanup(&sql);
    free(qtable);
    return rc;
}

static const struct store_column *column(const struct store_table *tbl, const char *name)
{
    for (size_t i = 0; i < tbl->n_cols; i++)
        if (!strcmp(tbl->cols[i].name, name))
            return &tbl->cols[i];
    return NULL;
}

/* A ferry database lists the tables it captures in ferry_synced; any other database has
 * no such table, and the query's failure only means "not captured". */
static void detect_capture(struct table_sync *t)
{
    struct store_val v = sv_text(t->entity);
    int64_t n = 0;
    bool found = false;
    t->captured = store_query_int(t->src, "SELECT COUNT(*) FROM ferry_synced WHERE tbl = $1", &v, 1,
                                  &n, &found, NULL) == FERRY_OK &&
                  n > 0;
}

/* Reads both tables' columns (creating the target's), and picks the synced columns: the
 * source's that the target has too. */
static int prepare(struct table_sync *t, struct err *err)
{
    struct store_table *src = NULL, *tgt = NULL;
    enum store_dialect from = store_conn_dialect(t->src);
    int rc = FERRY_ERR;
    if (store_table_info(t->src, t->entity, &src, err) != FERRY_OK)
        goto out;
    if (src->n_pk != 1) {
        err_set(err, ERR_INVALID, "table %s needs a primary key of one column", t->entity);
        goto out;
    }
    if (store_table_info(t->write, t->entity, &tgt, err) != FERRY_OK) {
        if (err->code != ERR_NOT_FOUND || create_target(t, src, from, err) != FERRY_OK ||
            store_table_info(t->write, t->entity, &tgt, err) != FERRY_OK)
            goto out;
    }
    t->names = xcalloc(src->n_cols, sizeof(char *));
    t->decls = xcalloc(src->n_cols, sizeof(char *));
    t->key_col = -1;
    for (size_t i = 0; i < src->n_cols; i++) {
        const struct store_column *g = column(tgt, src->cols[i].name);
        if (!g)
            continue;
        if (src->cols[i].primary_key) {
            t->key_col = (int)t->n_cols;
            t->int_key = dbrows_is_int_type(src->cols[i].decl_type);
        }
        t->names[t->n_cols] = xstrdup(g->name);
        t->decls[t->n_cols++] = xstrdup(g->decl_type ? g->decl_type : "");
    }
    if (t->key_col < 0 || !column(tgt, t->names[t->key_col])->primary_key) {
        err_set(err, ERR_INVALID, "the target's table %s does not have the source's primary key",
                t->entity);
        goto out;
    }
    build_sql(t, from);
    detect_capture(t);
    rc = FERRY_OK;
out:
    store_table_free(src);
    store_table_free(tgt);
    return rc;
}

static void table_sync_cleanup(struct table_sync *t)
{
    for (int side = 0; side < 2; side++) {
        page_clear(&t->pages[side]);
        free(t->pages[side].last_key);
        free(t->first_sql[side]);
        free(t->next_sql[side]);
    }
    for (size_t i = 0; i < t->n_cols; i++) {
        free(t->names[i]);
        free(t->decls[i]);
    }
    free(t->names);
    free(t->decls);
    free(t->upsert_sql);
    free(t->batch_sql);
    free(t->qtable);
    free(t->qkey);
    free(t->cols_sql);
    free(t->sets_sql);
    for (size_t i = 0; i < t->n_pending; i++)
        dbrows_clear(&t->pending[i]);
    free(t->delete_sql);
    free(t->get_sql);
    staged_clear(t);
    store_release(t->src);
    if (t->read != t->write) /* one connection when the target reads where it writes */
        store_release(t->read);
    store_release(t->write);
}

static int count_rows(struct table_sync *t, int64_t *n, struct err *err)
{
    char *qtable = store_quote_ident(t->entity),
         *sql = xasprintf("SELECT COUNT(*) FROM %s", qtable);
    bool found = false;
    int rc = store_query_int(t->src, sql, NULL, 0, n, &found, err);
    free(sql);
    free(qtable);
    return rc;
}

/* Takes the pair's lease: two syncs of one pair at once would each take the other's
 * writes for changes made in the target. */
static int lease_pair(struct table_sync *t, struct err *err)
{
    char self[LEASES_OWNER_MAX], name[80];
    leases_self(self);
    snprintf(name, sizeof(name), "dbsync:%s", t->pair);
    if (leases_acquire(t->state, self, name, &t->lease, &t->leased, err) != FERRY_OK)
        return FERRY_ERR;
    return t->leased ? FERRY_OK
                     : err_set(err, ERR_CONFLICT, "another sync of this pair is running");
}

/* Opens the target's reading side. Pages of writes commit while the target is read from
 * a snapshot of its own, beside them: PostgreSQL and an SQLite file in WAL mode allow it.
 * An SQLite file in a rollback journal (its mode is the user's, and stays) cannot commit
 * while another connection reads it, so there the writing connection reads too: the walk
 * reads only keys past those it has written, so its own writes do not show up. */
static int open_reader(struct table_sync *t, struct store *to, struct err *err)
{
    struct store_rows *rows = NULL;
    bool wal = t->to != STORE_SQLITE;
    int got;
    if (!wal) {
        if (store_query(t->write, "PRAGMA journal_mode", NULL, 0, &rows, err) != FERRY_OK ||
            (got = store_rows_next(rows, err)) < 0) {
            store_rows_free(rows);
            return FERRY_ERR;
        }
        wal = got == 1 && !strcasecmp(store_rows_text(rows, 0), "wal");
        store_rows_free(rows);
    }
    if (!wal) {
        t->read = t->write;
        return store_begin(t->write, err);
    }
    if (store_acquire(to, &t->read, err) != FERRY_OK || store_begin_read(t->read, err) != FERRY_OK)
        return FERRY_ERR;
    return store_begin(t->write, err);
}

/* Syncs one table. On failure nothing of the current unit (the entity with
 * useTransactions, else the current page of writes) stays, and the counts go back to what
 * the target committed. */
static int sync_entity(const struct dbsync_options *o, struct store *from, struct store *to,
                       const char *entity, struct dbsync_result *r, struct dbsync_progress *prog,
                       struct err *err)
{
    struct table_sync *t = xcalloc(1, sizeof(*t));
    int rc = FERRY_ERR;
    *t = (struct table_sync){.o = o, .r = r, .entity = entity, .state = o->state, .committed = *r};
    t->to = store_dialect(to);
    t->progress = *prog;
    t->progress.entity = entity;
    t->progress.rows_done = 0;
    if (store_acquire(from, &t->src, err) != FERRY_OK ||
        store_acquire(to, &t->write, err) != FERRY_OK ||
        dbstate_pair(o->state, o->source_name, o->target_name, entity, t->pair, err) != FERRY_OK ||
        lease_pair(t, err) != FERRY_OK ||
        dbstate_synced(o->state, t->pair, &t->synced, err) != FERRY_OK ||
        prepare(t, err) != FERRY_OK || store_begin_read(t->src, err) != FERRY_OK ||
        count_rows(t, &t->progress.rows_total, err) != FERRY_OK ||
        open_reader(t, to, err) != FERRY_OK)
        goto out;
    rc = walk(t, err);
out:
    if (rc != FERRY_OK) {
        store_rollback(t->write);
        if (*t->pair)
            dbstate_discard(o->state, o->run_id, t->pair);
        r->inserted = t->committed.inserted;
        r->updated = t->committed.updated;
        r->deleted = t->committed.deleted;
        r->bytes = t->committed.bytes;
    }
    *prog = t->progress;
    if (t->leased)
        leases_release(o->state, &t->lease);
    table_sync_cleanup(t);
    free(t);
    return rc;
}

/* Every table of the source, when the caller named none. */
static int all_tables(struct store *st, char ***names, size_t *n, struct err *err)
{
    struct store_conn *c = NULL;
    int rc = store_acquire(st, &c, err);
    if (rc == FERRY_OK)
        rc = store_list_tables(c, names, n, err);
    store_release(c);
    return rc;
}

static int run_entities(const struct dbsync_options *o, struct store *from, struct store *to,
                        struct dbsync_result *r, struct err *err)
{
    char **owned = NULL;
    size_t n = o->n_entities;
    const char *const *names = o->entities;
    struct dbsync_progress prog = {0};
    if (!names) {
        if (all_tables(from, &owned, &n, err) != FERRY_OK)
            return FERRY_ERR;
        names = (const char *const *)owned;
    }
    prog.entities_total = (int64_t)n;
    for (size_t i = 0; i < n; i++) {
        struct err e = {0};
        if (sync_entity(o, from, to, names[i], r, &prog, &e) != FERRY_OK) {
            char *msg = xasprintf("%s: %s", names[i], e.msg);
            json_array_append_new(r->errors, json_string(msg));
            free(msg);
        }
        prog.entities_done++;
    }
    for (size_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    return FERRY_OK;
}

int dbsync_run(const struct dbsync_options *o, struct dbsync_result *r, struct err *err)
{
    struct store *from = NULL, *to = NULL;
    struct err e = {0};
    int rc = FERRY_ERR;
    memset(r, 0, sizeof(*r));
    r->errors = json_array();
    r->conflicts_at = json_array();
    /* the URLs are not echoed: they may hold passwords */
    if (store_open_foreign(o->source_url, 1, &from, &e) != FERRY_OK) {
        err_set(err, ERR_DATABASE, "cannot open the source database %s: %s", o->source_name, e.msg);
        goto out;
    }
    if (store_open_foreign(o->target_url, 2, &to, &e) != FERRY_OK) {
        err_set(err, ERR_DATABASE, "cannot open the target database %s: %s", o->target_name, e.msg);
        goto out;
    }
    rc = run_entities(o, from, to, r, err);
out:
    store_close(from);
    store_close(to);
    return rc;
}

int dbsync_list_conflicts(struct store_conn *c, const char *source, const char *target,
                          const char *entity, int64_t limit, json_t **out, struct err *err)
{
    struct store_val v[] = {sv_text(source), sv_text(target), sv_text(entity), sv_int(limit)};
    struct store_rows *rows = NULL;
    int got;
    *out = json_array();
    if (store_query(
            c,
            "SELECT p.tbl, c.row_key, c.source_row, c.target_row, c.resolution, c.job_id,"
            " c.detected_at FROM ferry_dbsync_conflicts c"
            " JOIN ferry_dbsync_pairs p ON p.id = c.pair_id"
            " WHERE p.source = $1 AND p.target = $2 AND (CAST($3 AS TEXT) IS NULL OR p.tbl = $3)"
            " ORDER BY c.detected_at DESC, p.tbl, c.row_key LIMIT $4",
            v, 4, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    while ((got = store_rows_next(rows, err)) == 1) {
        json_t *src =
            store_rows_text(rows, 2) ? json_loads(store_rows_text(rows, 2), 0, NULL) : NULL;
        json_t *tgt =
            store_rows_text(rows, 3) ? json_loads(store_rows_text(rows, 3), 0, NULL) : NULL;
        json_array_append_new(*out,
                              json_pack("{s:s, s:s, s:o, s:o, s:s, s:s?, s:I}", "entity",
                                        store_rows_text(rows, 0), "key", store_rows_text(rows, 1),
                                        "sourceRow", src ? src : json_null(), "targetRow",
                                        tgt ? tgt : json_null(), "resolution",
                                        store_rows_text(rows, 4), "jobId", store_rows_text(rows, 5),
                                        "detectedAt", (json_int_t)store_rows_int(rows, 6)));
    }
    store_rows_free(rows);
    return got < 0 ? FERRY_ERR : FERRY_OK;
}
