/* push.c - see push.h. Every operation is checked against the schema before the
 * transaction starts, so bad input costs no lock. Inside the transaction each operation
 * is one statement on the user's table; the capture triggers write the change log. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync/feed.h"
#include "sync/settle.h"
#include "sync/push.h"
#include "sync/watch.h"
#include "util/buf.h"
#include "util/crashpoint.h"
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "webhooks/webhooks.h"

enum action { ACT_INSERT, ACT_UPDATE, ACT_UPSERT, ACT_DELETE };

static const char *action_names[] = {"insert", "update", "upsert", "delete"};

struct op {
    const struct synced_table *t;
    enum action action;
    json_t *data;
    char *pk;             /* canonical text of the key */
    int64_t base_version; /* -1 when absent */
    char *scope;          /* the caller's scope value when a rule narrows the table, else NULL */
    int *cols;            /* indexes of the data's columns, key first */
    size_t n_cols;
    struct owned_val *vals; /* their values, in the same order */
};

struct batch {
    const char *origin;    /* the device the writes are being marked with now, or NULL */
    int64_t device_cursor; /* the pushing device's acknowledged cursor (-1: none) */
    struct op *ops;
    size_t n;
    json_t *results, *conflicts;
    bool want_results;
    int64_t applied, unchanged, skipped;
    /* The last INSERT text built: a batch's operations usually share table and columns,
     * so the text is built once and the statement cache finds it by pointer-equal text. */
    char *insert_sql;
    const struct op *insert_like;
    bool insert_upsert;
    bool rows_busy; /* another transaction held one of the batch's rows (PostgreSQL) */
    int64_t floor;  /* PostgreSQL: the head before the batch's changes, a cursor safe to answer */
    /* Each operation's row as read for the batch at once (prefetch_states); where
     * state_ready[i] is false it is read when needed. A delete may cascade to other rows,
     * so after one the rest are read again (states_stale). */
    struct row_state *states;
    bool *state_ready;
    bool states_stale;
};

bool push_scope_allows(const char *scope, const char *table)
{
    if (!scope)
        return true;
    size_t len = strlen(table);
    for (const char *p = scope; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && !strncmp(p, table, len))
            return true;
        p += n + (end != NULL);
    }
    return false;
}

/* --- validation ------------------------------------------------------------------- */

static int op_error(struct err *err, size_t i, const struct err *inner)
{
    return err_set(err, inner->code, "operations[%zu]: %s", i, inner->msg);
}

static int parse_action(const char *name, enum action *out)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, action_names[i])) {
            *out = (enum action)i;
            return FERRY_OK;
        }
    return FERRY_ERR;
}

static int by_index(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

static int read_values(struct op *op, struct err *err)
{
    const struct synced_table *t = op->t;
    const char *key;
    json_t *value;

    op->cols = xcalloc(t->n_cols, sizeof(*op->cols));
    op->vals = xcalloc(t->n_cols, sizeof(*op->vals));
    op->cols[op->n_cols++] = (int)t->pk;
    json_object_foreach(op->data, key, value)
    {
        int col = tables_column(t, key);
        if (col < 0)
            return err_set(err, ERR_INVALID, "table '%s' has no column '%s'", t->name, key);
        if (col != (int)t->pk)
            op->cols[op->n_cols++] = col; /* keys are unique (duplicates are refused) */
    }
    /* In table order, whatever the JSON's order: one SQL text per set of columns. */
    qsort(op->cols + 1, op->n_cols - 1, sizeof(*op->cols), by_index);
    if (op->action == ACT_INSERT || op->action == ACT_UPSERT)
        for (size_t i = 0; i < t->n_cols; i++)
            if (t->cols[i].required && !json_object_get(op->data, t->cols[i].name))
                return err_set(err, ERR_INVALID,
                               "table '%s', row '%s', column '%s': is required (NOT NULL without"
                               " a default)",
                               t->name, op->pk, t->cols[i].name);
    for (size_t i = 0; i < op->n_cols; i++) {
        const struct synced_column *col = &t->cols[op->cols[i]];
        json_t *v = json_object_get(op->data, col->name);
        struct err inner = {0};
        if (json_is_null(v) && col->not_null)
            return err_set(err, ERR_INVALID, "table '%s', row '%s', column '%s': may not be null",
                           t->name, op->pk, col->name);
        if (values_from_json(col->kind, v, &op->vals[i], &inner) != FERRY_OK)
            return err_set(err, ERR_INVALID, "table '%s', row '%s', column '%s': %s", t->name,
                           op->pk, col->name, inner.msg);
    }
    return FERRY_OK;
}

/* The JSON value as the scope value's text (a number in decimal); NULL when it has none. */
static char *value_text(json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_integer(v))
        return xasprintf("%lld", (long long)json_integer_value(v));
    return NULL;
}

/* Under an owner or claim rule a row's rule column must hold the caller's value: an
 * insert without it gets it, and a write that gives it another value is refused, so no
 * row can be handed to another user. Rows already there are checked in the transaction
 * (check_owners). */
static int apply_rule(const struct push_request *r, struct op *op, struct err *err)
{
    const struct synced_table *t = op->t;
    char value[RULES_VALUE_MAX];
    if (!rules_may_write(&t->rule, r->caller))
        return err_set(err, ERR_FORBIDDEN,
                       "table '%s' is read-only for devices (sync rule read-only); only admins"
                       " and other programs change it",
                       t->name);
    enum rules_reach reach = rules_reach(&t->rule, r->caller, value);
    if (reach == REACH_ALL)
        return FERRY_OK;
    if (reach == REACH_NONE)
        return t->rule.kind == RULE_CLAIM
                   ? err_set(err, ERR_FORBIDDEN,
                             "table '%s' is shared by claim '%s', which this credential lacks",
                             t->name, t->rule.claim)
                   : err_set(err, ERR_FORBIDDEN,
                             "table '%s' holds users' own rows; this credential has no user",
                             t->name);
    op->scope = xstrdup(value);
    if (op->action == ACT_DELETE)
        return FERRY_OK;
    const struct synced_column *col = &t->cols[t->rule_col];
    json_t *given = json_object_get(op->data, col->name);
    if (!given) {
        if (op->action == ACT_UPDATE)
            return FERRY_OK;
        char *end = NULL;
        long long n = strtoll(value, &end, 10);
        bool number = col->kind == KIND_INTEGER && *value && !*end;
        json_object_set_new(op->data, col->name, number ? json_integer(n) : json_string(value));
        return FERRY_OK;
    }
    char *text = value_text(given);
    bool same = text && !strcmp(text, value);
    free(text);
    return same ? FERRY_OK
                : err_set(err, ERR_FORBIDDEN,
                          "table '%s', row '%s', column '%s': must be the caller's own value"
                          " '%s' (sync rule %s); a row cannot be given to another user",
                          t->name, op->pk, col->name, value,
                          t->rule.kind == RULE_OWNER ? "owner" : "claim");
}

static int parse_op(const struct synced_set *set, const struct push_request *r, json_t *src,
                    struct op *op, struct err *err)
{
    const char *table = NULL, *action = NULL;
    json_t *base = NULL;
    struct err inner = {0};

    op->base_version = -1;
    if (!json_is_object(src))
        return err_set(err, ERR_INVALID, "an operation must be an object");
    if (jsonutil_get_string(src, "table", true, &table, err) != FERRY_OK ||
        jsonutil_get_string(src, "action", true, &action, err) != FERRY_OK ||
        jsonutil_get_object(src, "data", true, &op->data, err) != FERRY_OK)
        return FERRY_ERR;
    if (!(op->t = tables_find(set, table)))
        return err_set(err, ERR_INVALID, "Invalid table: '%s' is not a synced table", table);
    if (op->t->builtin)
        return err_set(err, ERR_FORBIDDEN,
                       "'%s' is changed by uploads, not by pushes (see /api/v1/sync/upload)",
                       table);
    if (!push_scope_allows(r->scope, table))
        return err_set(err, ERR_FORBIDDEN, "this credential may not change table '%s'", table);
    if (parse_action(action, &op->action) != FERRY_OK)
        return err_set(err, ERR_INVALID, "action must be insert, update, upsert or delete");
    base = json_object_get(src, "base_version");
    if (!base)
        base = json_object_get(src, "baseVersion");
    if (base && !json_is_null(base)) {
        if (!json_is_integer(base) || json_integer_value(base) < 0)
            return err_set(err, ERR_INVALID, "base_version must be an integer >= 0");
        op->base_version = json_integer_value(base);
    }
    const struct synced_column *pk = &op->t->cols[op->t->pk];
    json_t *key = json_object_get(op->data, pk->name);
    if (!key || json_is_null(key))
        return err_set(err, ERR_INVALID, "table '%s': data has no primary key '%s'", table,
                       pk->name);
    if (values_pk_text(pk->kind, key, &op->pk, &inner) != FERRY_OK)
        return err_set(err, ERR_INVALID, "table '%s': primary key '%s': %s", table, pk->name,
                       inner.msg);
    if (apply_rule(r, op, err) != FERRY_OK)
        return FERRY_ERR;
    return op->action == ACT_DELETE ? FERRY_OK : read_values(op, err);
}

static void batch_cleanup(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        for (size_t k = 0; b->ops[i].vals && k < b->ops[i].n_cols; k++)
            values_release(&b->ops[i].vals[k]);
        free(b->ops[i].vals);
        free(b->ops[i].cols);
        free(b->ops[i].pk);
        free(b->ops[i].scope);
    }
    free(b->ops);
    free(b->states);
    free(b->state_ready);
    free(b->insert_sql);
    json_decref(b->results);
    json_decref(b->conflicts);
}

static int parse_batch(const struct synced_set *set, const struct push_request *r, struct batch *b,
                       struct err *err)
{
    size_t n = json_array_size(r->ops);
    if (!json_is_array(r->ops))
        return err_set(err, ERR_INVALID, "operations must be an array");
    if (r->max_ops > 0 && (int64_t)n > r->max_ops)
        return err_set(err, ERR_TOO_LARGE, "a batch of %zu operations is over the limit of %lld", n,
                       (long long)r->max_ops);
    b->ops = xcalloc(n ? n : 1, sizeof(*b->ops));
    for (size_t i = 0; i < n; i++) {
        struct err inner = {0};
        b->n = i + 1;
        if (parse_op(set, r, json_array_get(r->ops, i), &b->ops[i], &inner) != FERRY_OK)
            return op_error(err, i, &inner);
    }
    return FERRY_OK;
}

/* --- statements --------------------------------------------------------------------- */

/* INSERT of `rows` rows shaped like op (its columns; parameters numbered row by row),
 * doing nothing on an existing key, or updating the given columns when upsert. */
static char *insert_sql(const struct op *op, size_t rows, bool upsert)
{
    return rowwrite_insert(&op->t->rw, op->cols, op->n_cols, rows,
                           upsert ? ROWWRITE_UPDATE : ROWWRITE_NOTHING);
}

static int run_owned(struct store_conn *c, const char *sql, const struct op *op,
                     const size_t *which, size_t n, int64_t *changed, struct err *err)
{
    struct store_val *v = xcalloc(n, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = op->vals[which ? which[i] : i].val;
    int rc = store_run(c, sql, v, n, changed, err);
    free(v);
    return rc;
}

static bool same_shape(const struct op *a, const struct op *b)
{
    return a && a->t == b->t && a->n_cols == b->n_cols &&
           (!a->n_cols || !memcmp(a->cols, b->cols, a->n_cols * sizeof(*a->cols)));
}

static int exec_insert(struct store_conn *c, struct batch *b, const struct op *op, bool upsert,
                       int64_t *changed, struct err *err)
{
    if (!b->insert_sql || b->insert_upsert != upsert || !same_shape(b->insert_like, op)) {
        free(b->insert_sql);
        b->insert_sql = insert_sql(op, 1, upsert);
        b->insert_like = op;
        b->insert_upsert = upsert;
    }
    return run_owned(c, b->insert_sql, op, NULL, op->n_cols, changed, err);
}

/* Updates the given data columns (positions into op->cols, key excluded). */
static int exec_update(struct store_conn *c, const struct op *op, const size_t *pos, size_t n,
                       int64_t *changed, struct err *err)
{
    int *cols = xcalloc(n + 1, sizeof(*cols));
    size_t *which = xcalloc(n + 1, sizeof(*which));
    which[0] = 0; /* the key */
    for (size_t i = 0; i < n; i++) {
        cols[i] = op->cols[pos[i]];
        which[i + 1] = pos[i];
    }
    char *sql = rowwrite_update(&op->t->rw, cols, n);
    int rc = run_owned(c, sql, op, which, n + 1, changed, err);
    free(sql);
    free(cols);
    free(which);
    return rc;
}

static int exec_delete(struct store_conn *c, const struct op *op, int64_t *changed, struct err *err)
{
    char *sql = rowwrite_delete(&op->t->rw);
    struct owned_val key = {0};
    struct err inner = {0};
    json_t *k = json_object_get(op->data, op->t->cols[op->t->pk].name);
    int rc = values_from_json(op->t->cols[op->t->pk].kind, k, &key, &inner);
    if (rc == FERRY_OK)
        rc = store_run(c, sql, &key.val, 1, changed, err);
    else
        err_set(err, ERR_INVALID, "%s", inner.msg);
    values_release(&key);
    free(sql);
    return rc;
}

/* --- whose change ------------------------------------------------------------------- */

/* ferry's own changes carry their device, so the device's feed can leave them out. That
 * is right only when the device then holds the row as written: a delete, a whole row, a
 * row the log has never known, or a partial write on top of a version the device has (its
 * base_version, its own last change, or one at or below the cursor it acknowledged; a
 * delete by another device it has not seen counts as a version it does not have). Otherwise the row
 * also holds another writer's changes the device has not seen (and the log keeps only a
 * row's latest change), so the change is marked as no one's and the device's feed
 * brings the row back.
 *
 * PostgreSQL's trigger reads the device from a transaction-local setting. SQLite's
 * triggers cannot see connection state, so they read it from the one-row ferry_writer
 * table, which ferry fills while it writes and empties before commit; SQLite's single
 * writer means no other program's write can fall in between. */
static int set_origin(struct store_conn *c, struct batch *b, const char *device, struct err *err)
{
    if (device == b->origin || (device && b->origin && !strcmp(device, b->origin)))
        return FERRY_OK;
    b->origin = device;
    return changelog_set_device(c, device, err);
}

struct row_state;
static const char *origin_of(const struct push_request *r, const struct batch *b,
                             const struct op *op, const struct row_state *s);

/* --- state, conflicts, results ---------------------------------------------------- */

struct row_state {
    bool found;   /* the change log knows the row */
    bool deleted; /* its last change was a delete */
    int64_t version;
    int64_t
        seq; /* of its last change; INT64_MAX while it has none (pending, before migration 16) */
    char device[128]; /* the device of its last change, "" for none */
};

static const char *origin_of(const struct push_request *r, const struct batch *b,
                             const struct op *op, const struct row_state *s)
{
    if (!r->device_id)
        return NULL;
    if (op->action == ACT_DELETE || op->n_cols == op->t->n_cols)
        return r->device_id;
    if (!s) /* not reached: needs_state reads the state of a device's every partial write */
        return op->action == ACT_INSERT ? r->device_id : NULL;
    if (!s->found) /* a new row is the device's own */
        return r->device_id;
    /* A row another device deleted is no exception: re-created by a partial write, it
     * holds defaults where the device may still hold the deleted row's values. */
    bool seen = s->version == op->base_version || !strcmp(s->device, r->device_id) ||
                s->seq <= b->device_cursor;
    return seen ? r->device_id : NULL;
}

/* Whether applying op needs its row's state: for the results' versions, for the
 * base_version check, or to tell whose change a partial write by a device is. */
static bool needs_state(const struct push_request *r, const struct op *op)
{
    bool partial = op->action != ACT_DELETE && op->n_cols < op->t->n_cols;
    return r->want_results || op->base_version >= 0 || (partial && r->device_id);
}

/* A row state from the log's version, deleted, seq and device_id, at columns from on. */
static void state_from_row(const struct store_rows *rows, int from, struct row_state *s)
{
    s->found = true;
    s->version = store_rows_int(rows, from);
    s->deleted = store_rows_int(rows, from + 1) != 0;
    /* a pending change has no seq yet: no device has seen it, whatever its cursor */
    s->seq = store_rows_isnull(rows, from + 2) ? INT64_MAX : store_rows_int(rows, from + 2);
    snprintf(s->device, sizeof(s->device), "%s",
             store_rows_isnull(rows, from + 3) ? "" : store_rows_text(rows, from + 3));
}

static int row_state(struct store_conn *c, const struct op *op, struct row_state *s,
                     struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v[] = {sv_text(op->t->name), sv_text(op->pk)};
    int step;
    memset(s, 0, sizeof(*s));
    if (store_query(c,
                    "SELECT version, deleted, seq, device_id FROM ferry_changes"
                    " WHERE tbl = $1 AND pk = $2",
                    v, 2, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    if ((step = store_rows_next(rows, err)) == 1)
        state_from_row(rows, 0, s);
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

static void add_result(struct batch *b, size_t index, const struct op *op, const char *status,
                       int64_t version)
{
    if (!b->want_results)
        return;
    json_t *r =
        json_pack("{s:I, s:s, s:O, s:s}", "index", (json_int_t)index, "table", op->t->name, "id",
                  json_object_get(op->data, op->t->cols[op->t->pk].name), "status", status);
    json_object_set_new(r, "version", version > 0 ? json_integer(version) : json_null());
    json_array_append_new(b->results, r);
}

static int record_conflict(struct store_conn *c, const struct push_request *r, const struct op *op,
                           const struct row_state *s, json_t *fields, struct batch *b,
                           struct err *err)
{
    char id[40], iso[32];
    json_t *server = NULL;
    int64_t now = time_now_ms();

    memcpy(id, "cf_", 3);
    crypto_random_hex(id + 3, 12);
    if (feed_row(c, op->t, op->pk, &server, err) != FERRY_OK)
        return FERRY_ERR;
    char *server_text = server ? jsonutil_to_string(server) : NULL;
    char *client_text = jsonutil_to_string(op->data);
    char *fields_text = fields ? jsonutil_to_string(fields) : NULL;
    struct store_val v[] = {
        sv_text(id),
        sv_text(op->t->name),
        sv_text(op->pk),
        sv_text(r->device_id),
        sv_text(r->user_id),
        sv_text(action_names[op->action]),
        op->base_version >= 0 ? sv_int(op->base_version) : sv_null(),
        sv_int(s->version),
        sv_text(server_text),
        sv_text(client_text),
        sv_text(fields_text),
        sv_int(now),
    };
    int rc = store_run(c,
                       "INSERT INTO ferry_conflicts(id, tbl, pk, device_id, user_id, action,"
                       " base_version, server_version, server_data, client_data, fields, status,"
                       " created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,'open',$12)",
                       v, 12, NULL, err);
    if (rc == FERRY_OK) {
        time_iso8601(now, 0, iso);
        json_t *cf =
            json_pack("{s:s, s:s, s:O, s:s, s:o, s:I, s:o, s:O, s:o, s:s}", "id", id, "table",
                      op->t->name, "rowId", json_object_get(op->data, op->t->cols[op->t->pk].name),
                      "action", action_names[op->action], "baseVersion",
                      op->base_version >= 0 ? json_integer(op->base_version) : json_null(),
                      "serverVersion", (json_int_t)s->version, "serverData",
                      server ? json_incref(server) : json_null(), "clientData", op->data, "fields",
                      fields ? json_incref(fields) : json_null(), "createdAt", iso);
        rc = webhooks_emit(c, WEBHOOK_CONFLICT_CREATED, json_incref(cf), err);
        json_array_append_new(b->conflicts, cf);
    }
    json_decref(server);
    free(server_text);
    free(client_text);
    free(fields_text);
    return rc;
}

/* Whether the stored row equals the operation's values in the columns at the given
 * positions of op->cols. The database compares, in each column's own type, so 12.5 equals
 * "12.50" in a decimal column and a timestamp equals itself however it was written. JSON
 * columns are compared as parsed JSON (PostgreSQL's json type has no equality). */
static int row_equals(struct store_conn *c, const struct op *op, const size_t *pos, size_t n,
                      bool *equal, struct err *err)
{
    const struct synced_table *t = op->t;
    struct buf sql;
    size_t *which = xcalloc(n + 1, sizeof(*which)), n_bound = 1;
    json_t *row = NULL;
    int64_t found = 0;
    bool have = false;
    int rc = FERRY_ERR;

    *equal = true;
    buf_init(&sql);
    buf_printf(&sql, "SELECT 1 FROM %s WHERE %s = $1", t->quoted, t->cols[t->pk].quoted);
    for (size_t i = 0; i < n; i++) {
        const struct synced_column *col = &t->cols[op->cols[pos[i]]];
        if (col->kind == KIND_JSON)
            continue;
        which[n_bound] = pos[i];
        buf_printf(&sql, " AND %s IS NOT DISTINCT FROM $%zu", col->quoted, ++n_bound);
    }
    struct store_val *v = xcalloc(n_bound, sizeof(*v));
    for (size_t i = 0; i < n_bound; i++)
        v[i] = op->vals[which[i]].val;
    if (store_query_int(c, sql.data, v, n_bound, &found, &have, err) != FERRY_OK ||
        feed_row(c, t, op->pk, &row, err) != FERRY_OK)
        goto out;
    *equal = have && row;
    for (size_t i = 0; i < n && *equal; i++) {
        const struct synced_column *col = &t->cols[op->cols[pos[i]]];
        if (col->kind == KIND_JSON)
            *equal =
                json_equal(json_object_get(op->data, col->name), json_object_get(row, col->name));
    }
    rc = FERRY_OK;
out:
    json_decref(row);
    buf_cleanup(&sql);
    free(which);
    free(v);
    return rc;
}

/* Field-level merge: applies the client's fields the server has not changed since
 * base_version, and reports the ones changed on both sides to different values. */
static int merge_op(struct store_conn *c, const struct push_request *r, struct op *op,
                    const struct row_state *s, struct batch *b, size_t index, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v[] = {sv_text(op->t->name), sv_text(op->pk), sv_int(op->base_version)};
    json_t *both = json_array();
    size_t *apply = xcalloc(op->n_cols, sizeof(*apply)), n_apply = 0;
    bool *server_changed = xcalloc(op->t->n_cols, sizeof(*server_changed));
    int rc = FERRY_ERR, step;

    if (store_query(c,
                    "SELECT col FROM ferry_field_versions WHERE tbl = $1 AND pk = $2"
                    " AND version > $3",
                    v, 3, &rows, err) != FERRY_OK)
        goto out;
    while ((step = store_rows_next(rows, err)) == 1) {
        int col = tables_column(op->t, store_rows_text(rows, 0));
        if (col >= 0)
            server_changed[col] = true;
    }
    store_rows_free(rows);
    rows = NULL;
    if (step < 0)
        goto out;
    for (size_t i = 1; i < op->n_cols; i++) {
        const struct synced_column *col = &op->t->cols[op->cols[i]];
        bool same = false;
        if (server_changed[op->cols[i]] && row_equals(c, op, &i, 1, &same, err) != FERRY_OK)
            goto out;
        if (server_changed[op->cols[i]] && !same)
            json_array_append_new(both, json_string(col->name));
        else
            apply[n_apply++] = i;
    }
    /* The conflict records the server's row as it was, before the client's fields land. */
    int64_t changed = 0;
    bool conflict = json_array_size(both) > 0;
    if (conflict && record_conflict(c, r, op, s, both, b, err) != FERRY_OK)
        goto out;
    if (n_apply && (set_origin(c, b, NULL, err) != FERRY_OK ||
                    exec_update(c, op, apply, n_apply, &changed, err) != FERRY_OK))
        goto out;
    if (!conflict)
        b->applied++;
    add_result(b, index, op, conflict ? "conflict" : "merged", s->version + (changed > 0));
    /* The merged row holds fields the device has not seen: the answer carries it (and,
     * being no device's own change, the feed brings it too). */
    json_t *merged = NULL;
    if (b->want_results && feed_row(c, op->t, op->pk, &merged, err) != FERRY_OK)
        goto out;
    if (b->want_results)
        json_object_set_new(json_array_get(b->results, json_array_size(b->results) - 1), "data",
                            merged ? merged : json_null());
    rc = FERRY_OK;
out:
    store_rows_free(rows);
    json_decref(both);
    free(apply);
    free(server_changed);
    return rc;
}

/* The operation's base_version is behind the server's row: the policy decides. Returns
 * FERRY_OK with *handled false when the operation should be applied as usual. */
static int on_conflict(struct store_conn *c, const struct push_request *r, struct op *op,
                       const struct row_state *s, struct batch *b, size_t index, bool *handled,
                       struct err *err)
{
    *handled = true;
    switch (op->t->policy) {
    case POLICY_OVERWRITE:
        *handled = false;
        return FERRY_OK;
    case POLICY_SKIP:
        b->skipped++;
        add_result(b, index, op, "skipped", s->version);
        return FERRY_OK;
    case POLICY_MERGE:
        if (op->action != ACT_DELETE && !s->deleted)
            return merge_op(c, r, op, s, b, index, err);
        /* a delete on one side cannot be merged field by field */
        __attribute__((fallthrough));
    case POLICY_MANUAL:
        add_result(b, index, op, "conflict", s->version);
        return record_conflict(c, r, op, s, NULL, b, err);
    }
    return FERRY_OK;
}

/* --- applying ------------------------------------------------------------------------ */

static int insert_over_existing(struct store_conn *c, struct op *op, size_t index, struct err *err)
{
    size_t *pos = xcalloc(op->n_cols, sizeof(*pos));
    bool same = false;
    for (size_t i = 0; i < op->n_cols; i++)
        pos[i] = i;
    int rc = row_equals(c, op, pos, op->n_cols, &same, err);
    free(pos);
    if (rc != FERRY_OK)
        return FERRY_ERR;
    if (same)
        return FERRY_OK;
    return err_set(err, ERR_CONFLICT,
                   "operations[%zu]: row '%s' already exists in '%s' with other values"
                   " (use update or upsert)",
                   index, op->pk, op->t->name);
}

/* An update sets the data's columns of an existing row; with none but the key it only
 * checks the row is there. A missing row is an error, except under cloud-sync-api's lenient
 * semantics where it changes nothing. */
static int apply_update(struct store_conn *c, const struct push_request *r, const struct op *op,
                        struct row_state *s, size_t index, int64_t *changed, struct err *err)
{
    bool missing;
    *changed = 0;
    if (op->n_cols > 1) {
        size_t *pos = xcalloc(op->n_cols, sizeof(*pos));
        for (size_t i = 1; i < op->n_cols; i++)
            pos[i - 1] = i;
        int rc = exec_update(c, op, pos, op->n_cols - 1, changed, err);
        free(pos);
        if (rc != FERRY_OK)
            return FERRY_ERR;
        missing = *changed == 0;
    } else {
        if (row_state(c, op, s, err) != FERRY_OK)
            return FERRY_ERR;
        missing = !s->found || s->deleted;
    }
    if (missing && !r->lenient_missing)
        return err_set(err, ERR_NOT_FOUND, "operations[%zu]: row '%s' not found in '%s'", index,
                       op->pk, op->t->name);
    return FERRY_OK;
}

static int apply_op(struct store_conn *c, const struct push_request *r, struct op *op,
                    struct batch *b, size_t index, struct err *err)
{
    struct row_state s = {0};
    int64_t changed = 0;
    bool need_state = needs_state(r, op);

    if (need_state && b->state_ready[index])
        s = b->states[index];
    else if (need_state && row_state(c, op, &s, err) != FERRY_OK)
        return FERRY_ERR;
    if (op->base_version >= 0 && s.found && s.version > op->base_version) {
        bool handled = false;
        if (on_conflict(c, r, op, &s, b, index, &handled, err) != FERRY_OK)
            return FERRY_ERR;
        if (handled)
            return FERRY_OK;
        if (op->action == ACT_UPDATE && s.deleted)
            op->action = ACT_UPSERT; /* overwrite brings the row back */
    }
    if (set_origin(c, b, origin_of(r, b, op, need_state ? &s : NULL), err) != FERRY_OK)
        return FERRY_ERR;
    int rc;
    switch (op->action) {
    case ACT_INSERT:
    case ACT_UPSERT:
        rc = exec_insert(c, b, op, op->action == ACT_UPSERT, &changed, err);
        if (rc == FERRY_OK && !changed && op->action == ACT_INSERT)
            rc = insert_over_existing(c, op, index, err);
        break;
    case ACT_UPDATE:
        rc = apply_update(c, r, op, &s, index, &changed, err);
        break;
    default:
        rc = exec_delete(c, op, &changed, err);
        b->states_stale = true;
    }
    if (rc != FERRY_OK)
        return FERRY_ERR;
    if (changed) {
        b->applied++;
        add_result(b, index, op, "applied", s.found ? s.version + 1 : 1);
    } else {
        b->unchanged++;
        add_result(b, index, op, "unchanged", s.found ? s.version : 0);
    }
    return FERRY_OK;
}

/* Looks up an earlier answer to (origin, batch id). */
static int stored_answer(struct store_conn *c, const struct push_request *r, json_t **result,
                         struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v[] = {sv_text(r->origin), sv_text(r->batch_id)};
    int step;
    *result = NULL;
    if (store_query(c,
                    "SELECT response FROM ferry_batches WHERE origin = $1 AND batch_id = $2"
                    " AND status = 200",
                    v, 2, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    if ((step = store_rows_next(rows, err)) == 1)
        *result = json_loads(store_rows_text(rows, 0), 0, NULL);
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

static json_t *summary(const struct push_request *r, struct batch *b, int64_t cursor)
{
    json_t *out =
        json_pack("{s:o, s:I, s:I, s:I, s:O, s:I}", "batchId",
                  r->batch_id ? json_string(r->batch_id) : json_null(), "applied",
                  (json_int_t)b->applied, "unchanged", (json_int_t)b->unchanged, "skipped",
                  (json_int_t)b->skipped, "conflicts", b->conflicts, "cursor", (json_int_t)cursor);
    if (r->want_results)
        json_object_set(out, "results", b->results);
    return out;
}

static int claim_batch(struct store_conn *c, const struct push_request *r, struct err *err)
{
    struct store_val v[] = {sv_text(r->origin), sv_text(r->batch_id), sv_int(time_now_ms())};
    return store_run(c,
                     "INSERT INTO ferry_batches(origin, batch_id, status, response, created_at)"
                     " VALUES ($1, $2, 0, '', $3)",
                     v, 3, NULL, err);
}

static int save_answer(struct store_conn *c, const struct push_request *r, json_t *answer,
                       struct err *err)
{
    char *text = jsonutil_to_string(answer);
    struct store_val v[] = {sv_text(text), sv_text(r->origin), sv_text(r->batch_id)};
    int rc = store_run(c,
                       "UPDATE ferry_batches SET status = 200, response = $1"
                       " WHERE origin = $2 AND batch_id = $3",
                       v, 3, NULL, err);
    free(text);
    return rc;
}

/* --- bulk statements --------------------------------------------------------------- */

/* Consecutive operations of one action on the same table and columns, whose rows' states
 * are known and are no conflict, go to the database as one statement (a multi-row INSERT,
 * an UPDATE ... FROM VALUES, a DELETE ... IN): one round trip instead of one per row.
 * RETURNING names the rows that were written; for an insert, a row not returned already
 * existed and is compared as a single insert's would be. */
#define BULK_MAX_ROWS 1000
#define BULK_MAX_PARAMS 30000 /* under SQLite's 32766 and PostgreSQL's 65535 */

/* A small map of key strings (open addressing) to operation indexes, for a run's keys. */
struct keyset {
    const char **slots;
    size_t *index;
    size_t cap;
};

static uint64_t key_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void keyset_init(struct keyset *k, size_t n)
{
    k->cap = 16;
    while (k->cap < n * 2)
        k->cap *= 2;
    k->slots = xcalloc(k->cap, sizeof(*k->slots));
    k->index = xcalloc(k->cap, sizeof(*k->index));
}

static void keyset_cleanup(struct keyset *k)
{
    free(k->slots);
    free(k->index);
}

/* Adds key (not copied) for operation index; false when it was there already. */
static bool keyset_put(struct keyset *k, const char *key, size_t index)
{
    size_t i = key_hash(key) & (k->cap - 1);
    for (; k->slots[i]; i = (i + 1) & (k->cap - 1))
        if (!strcmp(k->slots[i], key))
            return false;
    k->slots[i] = key;
    k->index[i] = index;
    return true;
}

static bool keyset_add(struct keyset *k, const char *key)
{
    return keyset_put(k, key, 0);
}

/* The index key was added with; SIZE_MAX when absent. */
static size_t keyset_get(const struct keyset *k, const char *key)
{
    for (size_t i = key_hash(key) & (k->cap - 1); k->slots[i]; i = (i + 1) & (k->cap - 1))
        if (!strcmp(k->slots[i], key))
            return k->index[i];
    return SIZE_MAX;
}

static bool keyset_has(const struct keyset *k, const char *key)
{
    return keyset_get(k, key) != SIZE_MAX;
}

/* Reads the states of table t's rows that ops [from, n) name and need, in one statement;
 * a key named twice is read when its turn comes (the first write changes it). */
static int prefetch_table(struct store_conn *c, const struct push_request *r, struct batch *b,
                          size_t from, const struct synced_table *t, struct err *err)
{
    struct keyset keys;
    const char **pks = xcalloc(b->n - from, sizeof(*pks));
    size_t n = 0;
    struct store_rows *rows = NULL;
    int step = 0;

    keyset_init(&keys, b->n - from);
    for (size_t i = from; i < b->n; i++) {
        if (b->ops[i].t != t || !needs_state(r, &b->ops[i]))
            continue;
        if (keyset_put(&keys, b->ops[i].pk, i)) {
            pks[n++] = b->ops[i].pk;
            b->state_ready[i] = true;
        }
    }
    char *list = store_list_text(c, pks, n), *match = store_list_match(c, "pk", 2);
    char *sql = xasprintf("SELECT pk, version, deleted, seq, device_id FROM ferry_changes"
                          " WHERE tbl = $1 AND %s",
                          match);
    struct store_val v[] = {sv_text(t->name), sv_text(list)};
    if (n && store_query(c, sql, v, 2, &rows, err) != FERRY_OK)
        step = FERRY_ERR;
    while (rows && (step = store_rows_next(rows, err)) == 1) {
        size_t i = keyset_get(&keys, store_rows_text(rows, 0));
        if (i == SIZE_MAX)
            continue;
        state_from_row(rows, 1, &b->states[i]);
    }
    store_rows_free(rows);
    keyset_cleanup(&keys);
    free(sql);
    free(match);
    free(list);
    free(pks);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

/* Reads the row states ops [from, n) need, one statement per table. */
static int prefetch_states(struct store_conn *c, const struct push_request *r, struct batch *b,
                           size_t from, struct err *err)
{
    int rc = FERRY_OK;
    if (!b->states) {
        b->states = xcalloc(b->n ? b->n : 1, sizeof(*b->states));
        b->state_ready = xcalloc(b->n ? b->n : 1, sizeof(*b->state_ready));
    }
    for (size_t i = from; i < b->n; i++) {
        b->states[i] = (struct row_state){0};
        b->state_ready[i] = false;
    }
    for (size_t i = from; i < b->n && rc == FERRY_OK; i++) {
        const struct synced_table *t = b->ops[i].t;
        size_t k = from;
        if (!needs_state(r, &b->ops[i]))
            continue;
        while (k < i && (b->ops[k].t != t || !needs_state(r, &b->ops[k])))
            k++;
        if (k == i) /* the first of the table's operations that need one */
            rc = prefetch_table(c, r, b, from, t, err);
    }
    b->states_stale = false;
    return rc;
}

/* The state op i was found in; an empty one where none was needed. */
static const struct row_state *state_of(const struct batch *b, size_t i)
{
    return &b->states[i];
}

/* Whether operation i can share a statement: its state known where needed, and no
 * conflict for its policy to decide, row by row. Before any state is read (key_locks
 * asks, on PostgreSQL), an operation that needs one is not. */
static bool bulkable(const struct push_request *r, const struct batch *b, size_t i)
{
    const struct op *op = &b->ops[i];
    if (needs_state(r, op)) {
        if (!b->state_ready || !b->state_ready[i])
            return false;
        const struct row_state *s = state_of(b, i);
        if (op->base_version >= 0 && s->found && s->version > op->base_version)
            return false;
    }
    return op->action != ACT_UPDATE || op->n_cols > 1; /* a key alone only checks the row */
}

static const char *op_origin(const struct push_request *r, const struct batch *b, size_t i)
{
    return origin_of(r, b, &b->ops[i], needs_state(r, &b->ops[i]) ? state_of(b, i) : NULL);
}

/* How many operations from i form one bulk statement: same table, columns, action and
 * origin, distinct keys (a key twice in one statement would be ambiguous), within the
 * caps. */
static size_t run_length(const struct push_request *r, const struct batch *b, size_t i)
{
    const struct op *first = &b->ops[i];
    const char *origin;
    size_t max_rows, n = 0;
    struct keyset keys;

    if (!bulkable(r, b, i))
        return 1;
    origin = op_origin(r, b, i);
    max_rows = BULK_MAX_PARAMS / (first->n_cols ? first->n_cols : 1);
    if (max_rows > BULK_MAX_ROWS)
        max_rows = BULK_MAX_ROWS;

    keyset_init(&keys, max_rows);
    while (i + n < b->n && n < max_rows) {
        const struct op *op = &b->ops[i + n];
        if (!bulkable(r, b, i + n) || op->action != first->action || !same_shape(first, op) ||
            op_origin(r, b, i + n) != origin || !keyset_add(&keys, op->pk))
            break;
        n++;
    }
    keyset_cleanup(&keys);
    /* A few sizes keep the statement texts few (each is cached): hundreds, which clients'
     * batches usually are, and below a hundred powers of two. */
    if (n >= 100)
        return n / 100 * 100;
    size_t fixed = 64;
    while (fixed > n)
        fixed /= 2;
    return fixed;
}

/* The bulk statement answers with the keys it wrote; NULL where it cannot be written
 * (rowwrite_update_many). */
static char *bulk_sql(const struct op *op, size_t rows)
{
    char *body;
    if (op->action == ACT_UPDATE)
        body = rowwrite_update_many(&op->t->rw, op->cols, op->n_cols, rows);
    else if (op->action == ACT_DELETE)
        body = rowwrite_delete_many(&op->t->rw, rows);
    else
        body = insert_sql(op, rows, op->action == ACT_UPSERT);
    if (!body)
        return NULL;
    char *returning = rowwrite_returning_key(&op->t->rw);
    char *sql = xasprintf("%s%s", body, returning);
    free(returning);
    free(body);
    return sql;
}

/* The statement's parameters: each row's values, or a delete's key. */
static int bulk_params(const struct batch *b, size_t i, size_t n, struct store_val *v,
                       struct owned_val *keys, size_t *n_params, struct err *err)
{
    const struct op *first = &b->ops[i];
    *n_params = 0;
    for (size_t r = 0; r < n; r++) {
        const struct op *op = &b->ops[i + r];
        struct err inner = {0};
        if (op->action != ACT_DELETE) {
            for (size_t col = 0; col < op->n_cols; col++)
                v[(*n_params)++] = op->vals[col].val;
            continue;
        }
        const struct synced_column *pk = &first->t->cols[first->t->pk];
        if (values_from_json(pk->kind, json_object_get(op->data, pk->name), &keys[r], &inner) !=
            FERRY_OK)
            return err_set(err, ERR_INVALID, "%s", inner.msg);
        v[(*n_params)++] = keys[r].val;
    }
    return FERRY_OK;
}

/* Runs the statement and collects the keys it returned into written (copies in *keys). */
static int bulk_run(struct store_conn *c, const char *sql, const struct store_val *v, size_t n,
                    struct keyset *written, char **keys, size_t max, struct err *err)
{
    struct store_rows *rows = NULL;
    size_t n_keys = 0;
    int step;
    if (store_query(c, sql, v, n, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    while ((step = store_rows_next(rows, err)) == 1 && n_keys < max) {
        keys[n_keys] = xstrdup(store_rows_text(rows, 0));
        keyset_add(written, keys[n_keys++]);
    }
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

/* Accounts for op i of a bulk statement, as apply_op would. */
static int bulk_account(const struct push_request *req, struct batch *b, size_t i, bool written,
                        struct store_conn *c, struct err *err)
{
    struct op *op = &b->ops[i];
    const struct row_state *s = state_of(b, i);
    if (written) {
        b->applied++;
        add_result(b, i, op, "applied", s->found ? s->version + 1 : 1);
        return FERRY_OK;
    }
    if (op->action == ACT_INSERT && insert_over_existing(c, op, i, err) != FERRY_OK)
        return FERRY_ERR;
    if (op->action == ACT_UPDATE && !req->lenient_missing)
        return err_set(err, ERR_NOT_FOUND, "operations[%zu]: row '%s' not found in '%s'", i, op->pk,
                       op->t->name);
    b->unchanged++;
    add_result(b, i, op, "unchanged", s->found ? s->version : 0);
    return FERRY_OK;
}

/* Runs ops [i, i + n) as one statement and accounts for each. */
static int apply_bulk(struct store_conn *c, const struct push_request *req, struct batch *b,
                      size_t i, size_t n, struct err *err)
{
    struct op *first = &b->ops[i];
    size_t per_row = first->n_cols ? first->n_cols : 1, n_params = 0;
    char *sql = bulk_sql(first, n);
    struct store_val *v = xcalloc(n * per_row, sizeof(*v));
    struct owned_val *keys = xcalloc(n, sizeof(*keys));
    char **returned = xcalloc(n, sizeof(*returned));
    struct keyset written;
    int rc = FERRY_ERR;

    keyset_init(&written, n);
    if (!sql) { /* row by row after all */
        for (size_t r = 0; r < n; r++)
            if (apply_op(c, req, &b->ops[i + r], b, i + r, err) != FERRY_OK)
                goto out;
        rc = FERRY_OK;
        goto out;
    }
    if (set_origin(c, b, op_origin(req, b, i), err) != FERRY_OK ||
        bulk_params(b, i, n, v, keys, &n_params, err) != FERRY_OK ||
        bulk_run(c, sql, v, n_params, &written, returned, n, err) != FERRY_OK)
        goto out;
    for (size_t r = 0; r < n; r++)
        if (bulk_account(req, b, i + r, keyset_has(&written, b->ops[i + r].pk), c, err) != FERRY_OK)
            goto out;
    if (first->action == ACT_DELETE)
        b->states_stale = true;
    rc = FERRY_OK;
out:
    for (size_t r = 0; r < n; r++) {
        free(returned[r]);
        values_release(&keys[r]);
    }
    free(returned);
    free(keys);
    keyset_cleanup(&written);
    free(sql);
    free(v);
    return rc;
}

/* --- rows the sync rules keep from the caller ------------------------------------- */

#define OWNER_CHUNK 500 /* keys per lookup */

/* Adds to foreign the keys among ops [i, i + n) (all of one table) whose row exists with
 * another scope value than the caller's: the change log holds each live row's value
 * (written by the capture triggers in the writer's transaction), found by its key. */
static int foreign_keys(struct store_conn *c, const struct batch *b, const size_t *which, size_t n,
                        struct keyset *foreign, char ***owned, size_t *n_owned, struct err *err)
{
    const struct op *first = &b->ops[which[0]];
    struct store_val *v = xcalloc(n + 2, sizeof(*v));
    struct store_rows *rows = NULL;
    struct buf sql;
    int step = FERRY_ERR;
    buf_init(&sql);
    buf_puts(&sql, "SELECT pk FROM ferry_changes WHERE tbl = $1 AND deleted = 0"
                   " AND (scope IS NULL OR scope <> $2) AND pk IN (");
    v[0] = sv_text(first->t->name);
    v[1] = sv_text(first->scope);
    for (size_t k = 0; k < n; k++) {
        v[k + 2] = sv_text(b->ops[which[k]].pk);
        buf_printf(&sql, "%s$%zu", k ? ", " : "", k + 3);
    }
    buf_puts(&sql, ")");
    if (store_query(c, sql.data, v, n + 2, &rows, err) == FERRY_OK)
        while ((step = store_rows_next(rows, err)) == 1) {
            *owned = xrealloc(*owned, (*n_owned + 1) * sizeof(**owned));
            (*owned)[*n_owned] = xstrdup(store_rows_text(rows, 0));
            keyset_add(foreign, (*owned)[(*n_owned)++]);
        }
    store_rows_free(rows);
    buf_cleanup(&sql);
    free(v);
    return step == 0 ? FERRY_OK : FERRY_ERR;
}

/* Refuses the batch when one of its operations touches a row that exists with another
 * scope value (another user's, or another tenant's): the first such operation is named. */
static int check_owners(struct store_conn *c, const struct batch *b, struct err *err)
{
    struct keyset foreign;
    size_t *which = xcalloc(b->n + 1, sizeof(*which)), n_owned = 0;
    char **owned = NULL;
    int rc = FERRY_OK;
    const struct synced_table **done = xcalloc(b->n + 1, sizeof(*done));
    size_t n_done = 0;
    keyset_init(&foreign, b->n + 1);
    for (size_t i = 0; i < b->n && rc == FERRY_OK; i++) {
        const struct synced_table *t = b->ops[i].t;
        size_t n = 0, d = 0;
        while (d < n_done && done[d] != t)
            d++;
        if (!b->ops[i].scope || d < n_done) /* a table's keys are looked up once */
            continue;
        done[n_done++] = t;
        for (size_t k = i; k < b->n && rc == FERRY_OK; k++) {
            if (b->ops[k].t == t)
                which[n++] = k;
            if (n == OWNER_CHUNK || (n && k == b->n - 1)) {
                rc = foreign_keys(c, b, which, n, &foreign, &owned, &n_owned, err);
                n = 0;
            }
        }
    }
    for (size_t i = 0; i < b->n && rc == FERRY_OK; i++)
        if (b->ops[i].scope && keyset_has(&foreign, b->ops[i].pk))
            rc = err_set(err, ERR_FORBIDDEN,
                         "operations[%zu]: table '%s', row '%s' belongs to another user"
                         " (sync rule %s:%s); it cannot be changed or deleted",
                         i, b->ops[i].t->name, b->ops[i].pk,
                         b->ops[i].t->rule.kind == RULE_OWNER ? "owner" : "claim",
                         b->ops[i].t->rule.column);
    for (size_t i = 0; i < n_owned; i++)
        free(owned[i]);
    free(owned);
    free(done);
    free(which);
    keyset_cleanup(&foreign);
    return rc;
}

static int apply_ops(struct store_conn *c, const struct push_request *r, struct batch *b,
                     struct err *err)
{
    b->states_stale = true;
    for (size_t i = 0; i < b->n;) {
        if (b->states_stale && prefetch_states(c, r, b, i, err) != FERRY_OK)
            return FERRY_ERR;
        size_t n = run_length(r, b, i);
        int rc = n > 1 ? apply_bulk(c, r, b, i, n, err) : apply_op(c, r, &b->ops[i], b, i, err);
        if (rc != FERRY_OK)
            return FERRY_ERR;
        i += n;
    }
    return FERRY_OK;
}

/* --- row locks (PostgreSQL) ---------------------------------------------------------- */

#define PARENT_KEY_MAX 32 /* columns in a foreign key: PostgreSQL's INDEX_MAX_KEYS */

/* Pushes do not wait for one another as a whole: each takes an advisory lock per key it
 * names (key_locks, which bounds how many), in sorted order, before reading any row state,
 * so two pushes naming one key (a new one too, which has no row to lock) run one after the
 * other and each base_version check reads the other's commit. Nothing else takes these locks, and a
 * push holding them waits for nothing that is unbounded, so they never close a cycle. Another
 * program may lock a synced row (SELECT ... FOR UPDATE, or its own write) and then want one the
 * push holds; a push must therefore never wait for a row, or the two wait for each other until
 * PostgreSQL aborts one, perhaps the other program's. So a push locks every row it names, table by
 * table, with NOWAIT; where one is held it gives everything back and tries again (push_apply). The
 * parent rows the batch's foreign keys name are locked the same way, FOR KEY SHARE as the checks
 * take them. For any lock this does not foresee (a cascade, or another program's uncommitted insert
 * of a key the push inserts too), lock_timeout makes the push give up after PUSH_LOCK_TIMEOUT and
 * start over, well before PostgreSQL's deadlock check (deadlock_timeout, 1 s by default) would pick
 * a victim, perhaps the other program. */
#define PUSH_LOCK_TIMEOUT "SET LOCAL lock_timeout = '200ms'"

static int cmp_key(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The first 64 bits of SHA-256 of (table, key), or of the table alone (key NULL). Two keys
 * sharing one only wait for each other. */
static int64_t lock_id(const char *table, const char *key)
{
    char *both = xasprintf("%s%c%s", table, 1, key ? key : ""), hex[65];
    crypto_sha256_hex(both, strlen(both), hex);
    free(both);
    hex[16] = '\0';
    return (int64_t)strtoull(hex, NULL, 16);
}

/* Sorts ids and writes the distinct ones as a PostgreSQL array literal; returns how many. */
static size_t id_array(int64_t *ids, size_t n, struct buf *a)
{
    size_t distinct = 0;
    qsort(ids, n, sizeof(*ids), cmp_key);
    buf_puts(a, "{");
    for (size_t i = 0; i < n; i++)
        if (i == 0 || ids[i] != ids[i - 1])
            buf_printf(a, "%s%lld", distinct++ ? "," : "", (long long)ids[i]);
    buf_puts(a, "}");
    return distinct;
}

/* Takes the advisory locks of ids (sorted, distinct: id_array) in ascending order, shared
 * or exclusive, in one statement. */
static int take_locks(struct store_conn *c, const char *array, bool shared, struct err *err)
{
    struct store_val v = sv_text(array);
    return store_run(c,
                     shared ? "SELECT pg_advisory_xact_lock_shared(k) FROM"
                              " unnest(CAST($1 AS BIGINT[])) WITH ORDINALITY AS u(k, n) ORDER BY n"
                            : "SELECT pg_advisory_xact_lock(k) FROM"
                              " unnest(CAST($1 AS BIGINT[])) WITH ORDINALITY AS u(k, n) ORDER BY n",
                     &v, 1, NULL, err);
}

/* Advisory locks live in PostgreSQL's shared lock table (64 per connection by default,
 * shared by every program), so a push takes at most KEY_LOCKS_MAX key locks. */
#define KEY_LOCKS_MAX 64

/* Marks in bulk[i] the operations that go to the database in a multi-row statement
 * (apply_ops): their INSERT ... ON CONFLICT waits for another writer of the same key and
 * then sees its row, so they need no key lock of their own. No state is read yet, so an
 * operation that needs one (bulkable) is taken for a single one and gets its lock. */
static void mark_bulk(const struct push_request *r, const struct batch *b, bool *bulk)
{
    for (size_t i = 0; i < b->n;) {
        size_t n = run_length(r, b, i);
        for (size_t k = i; k < i + n; k++)
            bulk[k] = n > 1;
        i += n;
    }
}

/* Takes the key locks of the batch: those of every operation when they are few, else those
 * of the operations outside multi-row statements. Before them come the locks of the tables
 * named: shared, or exclusive when even those keys are too many (the push then runs
 * alone on those tables among pushes, never among other programs). Order: tables, then
 * keys, each ascending, so that two pushes never wait for each other in a circle. */
static int key_locks(struct store_conn *c, const struct push_request *r, const struct batch *b,
                     struct err *err)
{
    int64_t *keys = xcalloc(b->n + 1, sizeof(*keys)), *tables = xcalloc(b->n + 1, sizeof(*tables));
    bool *bulk = xcalloc(b->n + 1, sizeof(*bulk));
    struct buf key_list, table_list;
    size_t n_keys = 0, distinct;
    int rc = FERRY_OK;

    buf_init(&key_list);
    buf_init(&table_list);
    for (size_t i = 0; i < b->n; i++)
        keys[i] = lock_id(b->ops[i].t->name, b->ops[i].pk);
    distinct = id_array(keys, b->n, &key_list);
    if (distinct > KEY_LOCKS_MAX) {
        mark_bulk(r, b, bulk);
        for (size_t i = 0; i < b->n; i++)
            if (!bulk[i])
                keys[n_keys++] = lock_id(b->ops[i].t->name, b->ops[i].pk);
        buf_cleanup(&key_list);
        buf_init(&key_list);
        distinct = id_array(keys, n_keys, &key_list);
    }
    bool alone = distinct > KEY_LOCKS_MAX;
    size_t n_tables = 0;
    for (size_t i = 0; i < b->n; i++)
        if (alone || !bulk[i])
            tables[n_tables++] = lock_id(b->ops[i].t->name, NULL);
    id_array(tables, n_tables, &table_list);
    if (n_tables)
        rc = take_locks(c, table_list.data, !alone, err);
    if (rc == FERRY_OK && distinct && !alone)
        rc = take_locks(c, key_list.data, false, err);
    buf_cleanup(&key_list);
    buf_cleanup(&table_list);
    free(keys);
    free(tables);
    free(bulk);
    return rc;
}

/* Adds text as the next element (the first opens the literal) of a PostgreSQL array
 * literal being built in a, quoted; the caller closes it with "}". */
static void array_add(struct buf *a, bool first, const char *text)
{
    buf_puts(a, first ? "{\"" : ",\"");
    for (const char *p = text; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_append(a, "\\", 1);
        buf_append(a, p, 1);
    }
    buf_puts(a, "\"");
}

/* The keys of table t's deletes (or of its other operations) as a PostgreSQL array
 * literal, each element quoted; NULL when there are none. */
static char *key_array(const struct batch *b, const struct synced_table *t, bool deletes)
{
    struct buf a;
    bool first = true;
    buf_init(&a);
    for (size_t i = 0; i < b->n; i++) {
        if (b->ops[i].t != t || (b->ops[i].action == ACT_DELETE) != deletes)
            continue;
        array_add(&a, first, b->ops[i].pk);
        first = false;
    }
    buf_puts(&a, "}");
    if (first)
        buf_cleanup(&a);
    return first ? NULL : buf_steal(&a);
}

/* The text of op's value for column col in num (or pointing into the value); false when
 * the operation does not set the column, sets it NULL (no foreign-key check) or to a blob. */
static bool op_value_text(const struct op *op, int col, char *num, size_t n, const char **out)
{
    for (size_t i = 0; i < op->n_cols; i++) {
        if (op->cols[i] != col)
            continue;
        const struct store_val *v = &op->vals[i].val;
        if (v->type == SV_INT)
            snprintf(num, n, "%lld", (long long)v->i);
        else if (v->type == SV_REAL)
            snprintf(num, n, "%.17g", v->d);
        *out = v->type == SV_TEXT ? v->s : num;
        return v->type == SV_INT || v->type == SV_REAL || v->type == SV_TEXT;
    }
    return false;
}

/* Adds op's values of foreign key k to arrays (one per key column); false when op does not
 * set the whole key, so its statement checks nothing there. */
static bool add_parent_key(const struct op *op, const struct parent_key *k, struct buf *arrays,
                           bool first)
{
    char num[PARENT_KEY_MAX][32];
    const char *text[PARENT_KEY_MAX];
    if (op->action == ACT_DELETE || k->n_cols > PARENT_KEY_MAX)
        return false;
    for (size_t c = 0; c < k->n_cols; c++)
        if (k->cols[c] < 0 || !op_value_text(op, k->cols[c], num[c], sizeof(num[c]), &text[c]))
            return false;
    for (size_t c = 0; c < k->n_cols; c++)
        array_add(&arrays[c], first, text[c]);
    return true;
}

/* Takes FOR KEY SHARE NOWAIT on the parent rows the batch's rows of t will reference, as
 * their foreign-key checks would (parents.h says why). */
static int lock_parent(struct store_conn *c, struct batch *b, const struct parent_key *k,
                       const struct synced_table *t, struct err *err)
{
    struct buf *arrays = xcalloc(k->n_cols, sizeof(*arrays));
    struct store_val *v = xcalloc(k->n_cols, sizeof(*v));
    size_t rows = 0;
    int rc = FERRY_OK;

    for (size_t i = 0; i < b->n; i++)
        if (b->ops[i].t == t && add_parent_key(&b->ops[i], k, arrays, rows == 0))
            rows++;
    if (rows) {
        for (size_t col = 0; col < k->n_cols; col++) {
            buf_puts(&arrays[col], "}");
            v[col] = sv_text(arrays[col].data);
        }
        rc = store_run(c, k->lock_sql, v, k->n_cols, NULL, err);
        b->rows_busy = rc != FERRY_OK && err->code == ERR_UNAVAILABLE;
    }
    for (size_t col = 0; col < k->n_cols; col++)
        buf_cleanup(&arrays[col]);
    free(arrays);
    free(v);
    return rc;
}

/* Locks as the statements will: FOR UPDATE the rows to delete, FOR NO KEY UPDATE the
 * rest (so another program's foreign-key check, FOR KEY SHARE, does not hold a push back
 * where the update itself would not wait for it). */
static int lock_table(struct store_conn *c, struct batch *b, const struct synced_table *t,
                      struct err *err)
{
    int rc = FERRY_OK;
    for (int deletes = 0; deletes < 2 && rc == FERRY_OK; deletes++) {
        char *keys = key_array(b, t, deletes);
        if (!keys)
            continue;
        char *sql = rowwrite_lock(&t->rw, deletes);
        struct store_val v = sv_text(keys);
        rc = store_run(c, sql, &v, 1, NULL, err);
        b->rows_busy = rc != FERRY_OK && err->code == ERR_UNAVAILABLE;
        free(sql);
        free(keys);
    }
    return rc;
}

static int lock_rows(struct store_conn *c, struct batch *b, struct err *err)
{
    const struct synced_table **done = xcalloc(b->n ? b->n : 1, sizeof(*done));
    size_t n_done = 0;
    int rc = FERRY_OK;

    for (size_t i = 0; i < b->n && rc == FERRY_OK; i++) {
        const struct synced_table *t = b->ops[i].t;
        size_t k = 0;
        while (k < n_done && done[k] != t)
            k++;
        if (k < n_done)
            continue;
        done[n_done++] = t;
        rc = lock_table(c, b, t, err);
        for (size_t f = 0; f < t->parents.n && rc == FERRY_OK; f++)
            rc = lock_parent(c, b, &t->parents.keys[f], t, err);
    }
    free(done);
    return rc;
}

/* The cursor of the push's answer: the newest seq its changes drew (ferry.drawn, which the
 * capture triggers set), or the head if it drew none, so that a retry's replay says the
 * same; push_apply waits for the head to reach it before answering (settle.h). On
 * PostgreSQL whatever the commit would run first runs here: the deferred constraint checks
 * and triggers of the user's tables, which may wait for other transactions (within
 * lock_timeout) and may write synced rows themselves. */
#define OWN_CURSOR_PG                                                                              \
    "SELECT NULLIF(current_setting('ferry.drawn', true), '')::bigint, COALESCE(" SETTLE_HEAD_PG    \
    ", 0)"

static int own_cursor(struct store_conn *c, struct batch *b, int64_t *cursor, struct err *err)
{
    struct store_rows *rows = NULL;
    if (store_conn_dialect(c) != STORE_POSTGRES)
        return feed_head(c, cursor, err);
    int step = -1;
    if (store_exec(c, "SET CONSTRAINTS ALL IMMEDIATE", err) == FERRY_OK &&
        store_query(c, OWN_CURSOR_PG, NULL, 0, &rows, err) == FERRY_OK)
        step = store_rows_next(rows, err);
    if (step == 1) {
        b->floor = store_rows_int(rows, 1);
        int64_t drawn = store_rows_isnull(rows, 0) ? 0 : store_rows_int(rows, 0);
        *cursor = drawn > b->floor ? drawn : b->floor;
    }
    store_rows_free(rows);
    if (step == 1)
        return FERRY_OK;
    if (step == 0)
        return err_set(err, ERR_INTERNAL, "the push's cursor could not be read");
    b->rows_busy = err->code == ERR_UNAVAILABLE; /* a deferred check met lock_timeout */
    return FERRY_ERR;
}

static int apply_all(struct store_conn *c, const struct push_request *r, struct batch *b,
                     json_t **result, struct err *err)
{
    int64_t head = 0;
    /* Lock before reading any row state, so that a base_version check cannot race another
     * push (READ COMMITTED transactions would otherwise both see the old version): on
     * SQLite the database's write lock, on PostgreSQL the batch's keys and rows. */
    if (store_conn_dialect(c) != STORE_POSTGRES && changelog_lock(c, err) != FERRY_OK)
        return FERRY_ERR;
    if (store_conn_dialect(c) == STORE_POSTGRES &&
        (key_locks(c, r, b, err) != FERRY_OK || lock_rows(c, b, err) != FERRY_OK ||
         store_exec(c, PUSH_LOCK_TIMEOUT, err) != FERRY_OK))
        return FERRY_ERR;
    if (r->before_ops && r->before_ops(c, r->ctx, err) != FERRY_OK)
        return FERRY_ERR;
    if (check_owners(c, b, err) != FERRY_OK)
        return FERRY_ERR;
    b->device_cursor = -1;
    if (r->device_id) {
        struct store_val dev = sv_text(r->device_id);
        bool found = false;
        if (store_query_int(c, "SELECT cursor FROM ferry_devices WHERE id = $1", &dev, 1,
                            &b->device_cursor, &found, err) != FERRY_OK)
            return FERRY_ERR;
        if (!found)
            b->device_cursor = -1;
    }
    if (apply_ops(c, r, b, err) != FERRY_OK) {
        /* lock_timeout: a row lock was held too long; start over like NOWAIT's refusal */
        b->rows_busy = store_conn_dialect(c) == STORE_POSTGRES && err->code == ERR_UNAVAILABLE;
        return FERRY_ERR;
    }
    if (r->in_txn && r->in_txn(c, r->ctx, err) != FERRY_OK)
        return FERRY_ERR;
    if (set_origin(c, b, NULL, err) != FERRY_OK || own_cursor(c, b, &head, err) != FERRY_OK)
        return FERRY_ERR;
    *result = summary(r, b, head);
    if (r->batch_id && save_answer(c, r, *result, err) != FERRY_OK)
        return FERRY_ERR;
    CRASH_AT("push.before_commit"); /* rows and idempotency record written, not committed */
    return FERRY_OK;
}

/* A try's work inside its transaction (store_write). */
struct
try {
    const struct push_request *r;
    struct batch *b;
    json_t *result;
    bool claim_lost; /* the batch id was claimed by another request first */
};

static int apply_in_txn(struct store_conn *c, void *ctx, struct err *err)
{
    struct try *t = ctx;
    if (t->r->batch_id && claim_batch(c, t->r, err) != FERRY_OK) {
        t->claim_lost = err->code == ERR_CONFLICT;
        return FERRY_ERR;
    }
    if (apply_all(c, t->r, t->b, &t->result, err) == FERRY_OK)
        return FERRY_OK;
    json_decref(t->result);
    t->result = NULL;
    return FERRY_ERR;
}

/* One try at the batch, in its own transaction (on SQLite perhaps in a group of pushes
 * that share one commit); b is filled from scratch. */
static int attempt(struct store_conn *c, const struct synced_set *set, const struct push_request *r,
                   struct batch *b, json_t **result, bool *replayed, struct err *err)
{
    struct try t = {.r = r, .b = b};
    b->results = json_array();
    b->conflicts = json_array();
    b->want_results = r->want_results;
    if (parse_batch(set, r, b, err) != FERRY_OK)
        return FERRY_ERR;
    if (store_write(c, apply_in_txn, &t, err) == FERRY_OK) {
        *result = t.result;
        return FERRY_OK;
    }
    json_decref(t.result);
    /* Another request with the same batch id committed first: answer with its result. */
    if (t.claim_lost && stored_answer(c, r, result, err) == FERRY_OK && *result) {
        *replayed = true;
        return FERRY_OK;
    }
    return FERRY_ERR;
}

/* While another transaction holds one of the batch's rows the batch starts over after a
 * short randomised pause (doubling from RETRY_FIRST_US up to RETRY_MAX_US), for at most
 * RETRY_TOTAL_MS; a row held longer than that is answered 503. */
#define RETRY_FIRST_US 2000
#define RETRY_MAX_US 100000
#define RETRY_TOTAL_MS 5000

static void pause_us(int64_t us)
{
    uint32_t r;
    crypto_random(&r, sizeof(r));
    us = us / 2 + (int64_t)(r % (uint32_t)(us / 2 + 1)); /* jitter: half to all of it */
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* The committed batch's wake keys: each table it wrote, and the caller's scope value of
 * a narrowed table (apply_rule and check_owners hold every row it touched to that value,
 * before and after). A narrowed table written by a caller who may write any row (an
 * admin) has rows of values the batch does not tell: the watcher wakes their readers. */
static void note_wake(const struct push_request *r, const struct batch *b, const json_t *result)
{
    struct watch_wake *k = r->wake;
    k->head = json_integer_value(json_object_get(result, "cursor"));
    for (size_t i = 0; b->applied > 0 && i < b->n; i++) { /* nothing applied: no keys */
        if (rules_scoped(&b->ops[i].t->rule) && !b->ops[i].scope)
            k->unknown = true;
        watch_wake_add(k, b->ops[i].t->name, b->ops[i].scope);
    }
}

/* How long a committed push waits for the head to reach its changes (settle.h) behind
 * transactions older than its own, before it answers the head reached instead. */
#define PUSH_SETTLE_MS 250

/* Before the answer (a new one or a replay) goes out: the head reaches its cursor, so a
 * pull from that cursor skips nothing and the push's own changes are in every read from
 * now on. If a transaction older than the push is still running at the timeout, the
 * answer's cursor is the head instead, which is safe to pull from. A committed push whose
 * wait fails (the database gone meanwhile) still answers, with floor (the head before its
 * changes; its retry would apply it twice without a batch id); a replay has none (-1)
 * and fails, to be asked again. */
static int settle_answer(struct store_conn *c, json_t *answer, int64_t floor, struct err *err)
{
    int64_t cursor = json_integer_value(json_object_get(answer, "cursor")), head = 0;
    if (store_conn_dialect(c) != STORE_POSTGRES)
        return FERRY_OK;
    if (floor >= 0)
        CRASH_AT("push.before_mark"); /* committed, no mark written for it yet */
    if ((floor >= 0 && cursor > floor
             ? settle_written(c, cursor, PUSH_SETTLE_MS, &head, err)
             : settle_to(c, cursor, PUSH_SETTLE_MS, &head, err)) != FERRY_OK) {
        if (floor < 0)
            return FERRY_ERR;
        log_warn("push_settle_failed",
                 json_pack("{s:s, s:s}", "msg", "push committed; its head could not be read",
                           "error", err->msg));
        *err = (struct err){0};
        head = floor;
    }
    if (head < cursor)
        json_object_set_new(answer, "cursor", json_integer(head));
    return FERRY_OK;
}

int push_apply(struct store_conn *c, const struct synced_set *set, const struct push_request *r,
               json_t **result, bool *replayed, struct err *err)
{
    int64_t start = time_mono_us(), wait = RETRY_FIRST_US;
    int rc = FERRY_ERR;

    *result = NULL;
    *replayed = false;
    if (r->batch_id && (!*r->batch_id || strlen(r->batch_id) > 200))
        return err_set(err, ERR_INVALID, "batch id must be 1 to 200 characters");
    if (r->batch_id && stored_answer(c, r, result, err) != FERRY_OK)
        return FERRY_ERR;
    if (*result) {
        *replayed = true;
        return settle_answer(c, *result, -1, err);
    }
    for (;;) {
        struct batch b = {0};
        rc = attempt(c, set, r, &b, result, replayed, err);
        store_rollback(c); /* a failed try keeps nothing, the claim of its batch id included */
        if (rc == FERRY_OK &&
            (rc = settle_answer(c, *result, *replayed ? -1 : b.floor, err)) != FERRY_OK) {
            json_decref(*result);
            *result = NULL;
        }
        if (rc == FERRY_OK && !*replayed && r->wake)
            note_wake(r, &b, *result);
        batch_cleanup(&b);
        if (rc == FERRY_OK || !b.rows_busy)
            break;
        if (time_mono_us() - start > (int64_t)RETRY_TOTAL_MS * 1000) {
            err_set(err, ERR_UNAVAILABLE,
                    "rows of this batch stayed locked by other transactions for %d s;"
                    " try again later",
                    RETRY_TOTAL_MS / 1000);
            break;
        }
        pause_us(wait);
        wait = wait * 2 > RETRY_MAX_US ? RETRY_MAX_US : wait * 2;
    }
    if (rc == FERRY_OK)
        CRASH_AT("push.after_commit"); /* committed, the answer not yet written */
    return rc;
}
