/* conflicts.c - see conflicts.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/rowjson.h"
#include "sync/conflicts.h"
#include "sync/feed.h"
#include "sync/push.h"
#include "util/buf.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

static const char conflict_columns[] =
    "SELECT id, tbl, pk, device_id, user_id, action, base_version, server_version,"
    " server_data, client_data, fields, status, resolution, created_at, resolved_at,"
    " resolved_by FROM ferry_conflicts";

/* The row's key as the feed writes it: a number for an integer key. */
static json_t *row_id(const struct synced_set *set, const char *table, const char *pk)
{
    const struct synced_table *t = tables_find(set, table);
    if (t && t->cols[t->pk].kind == KIND_INTEGER)
        return json_integer(strtoll(pk, NULL, 10));
    return json_string(pk);
}

static json_t *conflict_json(const struct synced_set *set, const struct store_rows *rows)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(store_rows_text(rows, 0)));
    json_object_set_new(o, "table", json_string(store_rows_text(rows, 1)));
    json_object_set_new(o, "rowId",
                        row_id(set, store_rows_text(rows, 1), store_rows_text(rows, 2)));
    json_object_set_new(o, "deviceId", rowjson_text(rows, 3));
    json_object_set_new(o, "userId", rowjson_text(rows, 4));
    json_object_set_new(o, "action", json_string(store_rows_text(rows, 5)));
    json_object_set_new(o, "baseVersion",
                        store_rows_isnull(rows, 6) ? json_null()
                                                   : json_integer(store_rows_int(rows, 6)));
    json_object_set_new(o, "serverVersion", json_integer(store_rows_int(rows, 7)));
    json_object_set_new(o, "serverData", rowjson_parsed(rows, 8));
    json_object_set_new(o, "clientData", rowjson_parsed(rows, 9));
    json_object_set_new(o, "fields", rowjson_parsed(rows, 10));
    json_object_set_new(o, "status", json_string(store_rows_text(rows, 11)));
    json_object_set_new(o, "resolution", rowjson_text(rows, 12));
    json_object_set_new(o, "createdAt", rowjson_time(rows, 13));
    json_object_set_new(o, "resolvedAt", rowjson_time(rows, 14));
    json_object_set_new(o, "resolvedBy", rowjson_text(rows, 15));
    return o;
}

/* Appends " AND tbl IN (...)" for a comma-separated scope, binding each name. */
static void scope_clause(struct buf *sql, const char *scope, struct store_val **v, size_t *n,
                         char ***names)
{
    char *copy = xstrdup(scope), *save = NULL;
    size_t count = 0;
    for (const char *p = scope; *p; p++)
        count += *p == ',';
    *names = xcalloc(count + 2, sizeof(**names));
    *v = xrealloc(*v, (*n + count + 1) * sizeof(**v));
    buf_puts(sql, " AND tbl IN (");
    count = 0;
    for (char *name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        (*names)[count] = xstrdup(name);
        (*v)[(*n)++] = sv_text((*names)[count]);
        buf_printf(sql, "%s$%zu", count++ ? ", " : "", *n);
    }
    buf_puts(sql, count ? ")" : "NULL)");
    free(copy);
}

/* Appends, per table a sync rule narrows for the caller, that its conflicts are those of
 * rows whose scope value in the change log is the caller's (none when it has none). */
static void rules_clause(struct buf *sql, const struct synced_set *set,
                         const struct rules_caller *caller, struct store_val **v, size_t *n,
                         char (*values)[RULES_VALUE_MAX])
{
    for (size_t i = 0; i < set->n; i++) {
        const struct synced_table *t = &set->tables[i];
        enum rules_reach reach = rules_reach(&t->rule, caller, values[i]);
        if (reach == REACH_NONE)
            buf_printf(sql, " AND tbl <> %s", t->literal);
        if (reach != REACH_VALUE)
            continue;
        *v = xrealloc(*v, (*n + 1) * sizeof(**v));
        (*v)[(*n)++] = sv_text(values[i]);
        buf_printf(sql,
                   " AND NOT (tbl = %s AND NOT EXISTS (SELECT 1 FROM ferry_changes ch"
                   " WHERE ch.tbl = ferry_conflicts.tbl AND ch.pk = ferry_conflicts.pk"
                   " AND ch.scope = $%zu))",
                   t->literal, *n);
    }
}

int conflicts_list(struct store_conn *c, const struct synced_set *set,
                   const struct conflict_filter *f, json_t **out, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val *v = xcalloc(2, sizeof(*v));
    char(*values)[RULES_VALUE_MAX] = xcalloc(set->n + 1, sizeof(*values));
    char **names = NULL;
    size_t n = 0;
    int step = FERRY_ERR;
    struct buf sql;
    buf_init(&sql);
    buf_printf(&sql, "%s WHERE 1 = 1", conflict_columns);
    if (f->status) {
        v[n++] = sv_text(f->status);
        buf_printf(&sql, " AND status = $%zu", n);
    }
    if (f->user_id) {
        v[n++] = sv_text(f->user_id);
        buf_printf(&sql, " AND user_id = $%zu", n);
    }
    if (f->scope) /* a table-limited credential sees only its tables' conflicts */
        scope_clause(&sql, f->scope, &v, &n, &names);
    rules_clause(&sql, set, f->caller, &v, &n, values);
    buf_puts(&sql, " ORDER BY created_at, id");
    *out = json_array();
    if (store_query(c, sql.data, v, n, &rows, err) == FERRY_OK)
        while ((step = store_rows_next(rows, err)) == 1)
            json_array_append_new(*out, conflict_json(set, rows));
    store_rows_free(rows);
    buf_cleanup(&sql);
    for (size_t i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
    free(v);
    free(values);
    if (step != 0) {
        json_decref(*out);
        *out = NULL;
        return FERRY_ERR;
    }
    return FERRY_OK;
}

int conflicts_get(struct store_conn *c, const struct synced_set *set, const char *id, json_t **out,
                  char owner[128], struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    char *sql = xasprintf("%s WHERE id = $1", conflict_columns);
    int rc = FERRY_ERR, step;

    *out = NULL;
    if (store_query(c, sql, &v, 1, &rows, err) != FERRY_OK ||
        (step = store_rows_next(rows, err)) < 0)
        goto out;
    if (step == 0) {
        err_set(err, ERR_NOT_FOUND, "no conflict with id '%s'", id);
        goto out;
    }
    snprintf(owner, 128, "%s", store_rows_isnull(rows, 4) ? "" : store_rows_text(rows, 4));
    *out = conflict_json(set, rows);
    rc = FERRY_OK;
out:
    store_rows_free(rows);
    free(sql);
    return rc;
}

struct mark_ctx {
    const char *id, *resolution, *by;
    const char *table, *pk;
    int64_t version; /* of the row when the resolution was built; -1 when unknown */
};

static int row_version(struct store_conn *c, const char *table, const char *pk, int64_t *version,
                       struct err *err)
{
    struct store_val v[] = {sv_text(table), sv_text(pk)};
    bool found = false;
    *version = -1;
    if (store_query_int(c, "SELECT version FROM ferry_changes WHERE tbl = $1 AND pk = $2", v, 2,
                        version, &found, err) != FERRY_OK)
        return FERRY_ERR;
    if (!found)
        *version = -1;
    return FERRY_OK;
}

/* The resolution was built from the row as it was before the transaction; a push that
 * landed in between would be undone by it, so the resolution is refused instead. */
static int row_unchanged(struct store_conn *c, void *ctx, struct err *err)
{
    struct mark_ctx *m = ctx;
    int64_t now = -1;
    if (row_version(c, m->table, m->pk, &now, err) != FERRY_OK)
        return FERRY_ERR;
    return now == m->version
               ? FERRY_OK
               : err_set(err, ERR_CONFLICT,
                         "the row changed while resolving conflict '%s'; try again", m->id);
}

/* Marks the conflict resolved inside the resolving transaction; a second resolution
 * finds it no longer open and fails the whole transaction. */
static int mark_resolved(struct store_conn *c, void *ctx, struct err *err)
{
    struct mark_ctx *m = ctx;
    struct store_val v[] = {sv_text(m->resolution), sv_int(time_now_ms()), sv_text(m->by),
                            sv_text(m->id)};
    int64_t changed = 0;
    if (store_run(c,
                  "UPDATE ferry_conflicts SET status = 'resolved', resolution = $1,"
                  " resolved_at = $2, resolved_by = $3 WHERE id = $4 AND status = 'open'",
                  v, 4, &changed, err) != FERRY_OK)
        return FERRY_ERR;
    return changed ? FERRY_OK
                   : err_set(err, ERR_CONFLICT, "conflict '%s' is already resolved", m->id);
}

/* The operation that carries out a resolution, or NULL when the row needs no change
 * (keeping a server row that no longer exists). */
static json_t *resolution_op(struct store_conn *c, const struct synced_table *t,
                             const json_t *conflict, const char *resolution, json_t *data,
                             struct err *err)
{
    json_t *row = NULL, *key, *id = json_object_get(conflict, "rowId");
    char pk_buf[32];
    const char *pk = json_string_value(id);
    if (json_is_integer(id)) {
        snprintf(pk_buf, sizeof(pk_buf), "%lld", (long long)json_integer_value(id));
        pk = pk_buf;
    }

    if (!strcmp(resolution, "keep_server")) {
        /* Rewriting the server's row as it is gives it a new version, so the device whose
         * change lost receives the server's state like any other change. */
        if (feed_row(c, t, pk, &row, err) != FERRY_OK || !row)
            return NULL;
        return json_pack("{s:s, s:s, s:o}", "table", t->name, "action", "upsert", "data", row);
    }
    if (!strcmp(resolution, "take_client")) {
        /* The client's operation again: a partial update stays an update while the row
         * exists; a row deleted since needs the whole row (an upsert). */
        json_t *client = json_object_get(conflict, "clientData");
        const char *action = json_string_value(json_object_get(conflict, "action"));
        if (strcmp(action, "delete") && feed_row(c, t, pk, &row, err) != FERRY_OK)
            return NULL;
        const char *redo = !strcmp(action, "delete") ? "delete" : row ? "update" : "upsert";
        json_decref(row);
        return json_pack("{s:s, s:s, s:O}", "table", t->name, "action", redo, "data", client);
    }
    /* merge: the supplied fields over the row's key; a partial row updates an existing
     * row, and only a row deleted since needs to be whole */
    json_t *merged = json_deep_copy(data);
    key =
        t->cols[t->pk].kind == KIND_INTEGER ? json_integer(strtoll(pk, NULL, 10)) : json_string(pk);
    json_object_set_new(merged, t->cols[t->pk].name, key);
    if (feed_row(c, t, pk, &row, err) != FERRY_OK) {
        json_decref(merged);
        return NULL;
    }
    const char *action = row ? "update" : "upsert";
    json_decref(row);
    return json_pack("{s:s, s:s, s:o}", "table", t->name, "action", action, "data", merged);
}

int conflicts_resolve(struct store_conn *c, const struct synced_set *set, const char *id,
                      const char *resolution, json_t *data, const char *by,
                      const struct rules_caller *caller, json_t **out, struct err *err)
{
    json_t *conflict = NULL, *op = NULL, *ops = json_array(), *result = NULL;
    char owner[128];
    struct mark_ctx mark = {id, resolution, by, NULL, NULL, -1};
    bool replayed = false;
    int rc = FERRY_ERR;

    *out = NULL;
    if (strcmp(resolution, "keep_server") && strcmp(resolution, "take_client") &&
        strcmp(resolution, "merge")) {
        err_set(err, ERR_INVALID, "resolution must be keep_server, take_client or merge");
        goto out;
    }
    if (!strcmp(resolution, "merge") != (data != NULL)) {
        err_set(err, ERR_INVALID,
                data ? "field 'data' is only for the merge resolution"
                     : "the merge resolution needs field 'data' (an object)");
        goto out;
    }
    if (conflicts_get(c, set, id, &conflict, owner, err) != FERRY_OK)
        goto out;
    if (strcmp(json_string_value(json_object_get(conflict, "status")), "open") != 0) {
        err_set(err, ERR_CONFLICT, "conflict '%s' is already resolved", id);
        goto out;
    }
    const struct synced_table *t =
        tables_find(set, json_string_value(json_object_get(conflict, "table")));
    if (!t) {
        err_set(err, ERR_CONFLICT, "table of conflict '%s' is no longer synced", id);
        goto out;
    }
    struct err op_err = {0};
    char pk_buf[32];
    json_t *row_id = json_object_get(conflict, "rowId");
    mark.table = t->name;
    mark.pk =
        json_is_integer(row_id)
            ? (snprintf(pk_buf, sizeof(pk_buf), "%lld", (long long)json_integer_value(row_id)),
               pk_buf)
            : json_string_value(row_id);
    if (row_version(c, mark.table, mark.pk, &mark.version, err) != FERRY_OK)
        goto out;
    op = resolution_op(c, t, conflict, resolution, data, &op_err);
    if (op_err.code != ERR_NONE) {
        *err = op_err;
        goto out;
    }
    if (op)
        json_array_append(ops, op);
    /* A resolution is no device's own change: every device, the resolver's too, must
     * receive the row as resolved. */
    struct push_request r = {
        .origin = "conflict",
        .user_id = by,
        .caller = caller,
        .ops = ops,
        .in_txn = mark_resolved,
        .before_ops = row_unchanged,
        .ctx = &mark,
    };
    if (push_apply(c, set, &r, &result, &replayed, err) != FERRY_OK)
        goto out;
    rc = conflicts_get(c, set, id, out, owner, err);
out:
    json_decref(conflict);
    json_decref(op);
    json_decref(ops);
    json_decref(result);
    return rc;
}
