/* push.c - pushing a replica's outbox: each batch is recorded (ferry_client_inflight)
 * before it is sent and sent again unchanged until its answer is settled, so its batch
 * id always names the same operations and a retried batch is never applied twice. */
#include <stdlib.h>
#include <string.h>

#include "client/replica.h"
#include "client/transport.h"
#include "ferry.h"

#define SYNC_PATH "/api/v1/sync"

struct inflight {
    json_t *body; /* {"batchId", "operations": [op + "_pk"]} */
    int64_t last; /* the last outbox id it covers */
};

static json_t *key_json(const struct fc_table *t, const char *pk)
{
    if (!strcmp(t->cols[t->pk].type, "integer"))
        return json_integer(strtoll(pk, NULL, 10));
    return json_string(pk);
}

static bool row_version(ferry_replica *r, const char *tbl, const char *pk, int64_t *version)
{
    sqlite3_stmt *st = fc_prepare(r, "SELECT version FROM ferry_client_rows"
                                     " WHERE tbl = ? AND pk = ?");
    bool found = false;
    if (!st)
        return false;
    sqlite3_bind_text(st, 1, tbl, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, pk, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *version = sqlite3_column_int64(st, 0);
        found = true;
    }
    sqlite3_finalize(st);
    return found;
}

/* The operation that brings the server to the row as it is now: an upsert of the whole
 * row, or a delete when it is gone; "_pk" keeps the outbox key for settling. NULL (and
 * *status OK) for a table no longer synced. */
static json_t *build_op(ferry_replica *r, const char *tbl, const char *pk, int *status)
{
    const struct fc_table *t = fc_table_find(r, tbl);
    int64_t version = 0;
    *status = FERRY_CLIENT_OK;
    if (!t)
        return NULL;
    json_t *row = fc_row_json(r, t, pk, status);
    bool exists = row != NULL;
    if (*status != FERRY_CLIENT_OK)
        return NULL;
    if (!exists) {
        row = json_object();
        json_object_set_new(row, t->cols[t->pk].name, key_json(t, pk));
    }
    json_t *op = json_pack("{s:s, s:s, s:o, s:s}", "table", t->name, "action",
                           exists ? "upsert" : "delete", "data", row, "_pk", pk);
    if (row_version(r, tbl, pk, &version))
        json_object_set_new(op, "base_version", json_integer(version));
    return op;
}

static bool has_op(json_t *ops, const char *tbl, const char *pk)
{
    json_t *op;
    size_t i;
    json_array_foreach(ops, i, op)
    {
        if (!strcmp(json_string_value(json_object_get(op, "table")), tbl) &&
            !strcmp(json_string_value(json_object_get(op, "_pk")), pk))
            return true;
    }
    return false;
}

/* The next batch from the outbox: the distinct rows of the first batch_size entries, in
 * the order they first changed (a parent before the child that names it). */
static int build_batch(ferry_replica *r, struct inflight *f)
{
    sqlite3_stmt *st = fc_prepare(r, "SELECT id, tbl, pk FROM ferry_client_outbox"
                                     " ORDER BY id LIMIT ?");
    json_t *ops = json_array();
    int64_t first = 0;
    int rc = FERRY_CLIENT_OK, step;
    if (!st)
        return json_decref(ops), FERRY_CLIENT_ELOCAL;
    sqlite3_bind_int(st, 1, r->batch_size);
    while (rc == FERRY_CLIENT_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *tbl = (const char *)sqlite3_column_text(st, 1);
        const char *pk = (const char *)sqlite3_column_text(st, 2);
        f->last = sqlite3_column_int64(st, 0);
        first = first ? first : f->last;
        json_t *op = has_op(ops, tbl, pk) ? NULL : build_op(r, tbl, pk, &rc);
        if (op)
            json_array_append_new(ops, op);
    }
    sqlite3_finalize(st);
    if (rc != FERRY_CLIENT_OK || !first)
        return json_decref(ops), rc;
    char *id = xasprintf("%s-%lld-%lld", r->replica_id, (long long)first, (long long)f->last);
    f->body = json_pack("{s:s, s:o}", "batchId", id, "operations", ops);
    free(id);
    return rc;
}

static int save_inflight(ferry_replica *r, const struct inflight *f)
{
    sqlite3_stmt *st = fc_prepare(r, "INSERT INTO ferry_client_inflight(id, body, last)"
                                     " VALUES (1, ?, ?)");
    if (st) {
        sqlite3_bind_text(st, 1, json_dumps(f->body, JSON_COMPACT), -1, free);
        sqlite3_bind_int64(st, 2, f->last);
    }
    return fc_finish(r, st);
}

/* The batch recorded before, or a new one recorded now; f->body NULL: nothing to push. */
static int next_batch(ferry_replica *r, struct inflight *f)
{
    sqlite3_stmt *st = fc_prepare(r, "SELECT body, last FROM ferry_client_inflight WHERE id = 1");
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        f->body = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
        f->last = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (f->body)
        return FERRY_CLIENT_OK;
    int rc = fc_exec(r, "BEGIN IMMEDIATE");
    if (rc == FERRY_CLIENT_OK)
        rc = build_batch(r, f);
    if (rc == FERRY_CLIENT_OK && f->body)
        rc = save_inflight(r, f);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_exec(r, "COMMIT");
    if (rc != FERRY_CLIENT_OK)
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Applies the remote change held back for a row, if any, and forgets it. */
static int apply_held(ferry_replica *r, const struct fc_table *t, const char *pk)
{
    sqlite3_stmt *st = fc_prepare(r, "SELECT version, data FROM ferry_client_held"
                                     " WHERE tbl = ? AND pk = ?");
    int rc = FERRY_CLIENT_OK;
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    sqlite3_bind_text(st, 1, t->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, pk, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 1);
        json_t *data = text ? json_loads(text, 0, NULL) : NULL;
        rc = fc_apply_row(r, t, pk, data);
        if (rc == FERRY_CLIENT_OK)
            rc = fc_set_version(r, t->name, pk, sqlite3_column_int64(st, 0));
        json_decref(data);
    }
    sqlite3_finalize(st);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_run_text(r, "DELETE FROM ferry_client_held WHERE tbl = ? AND pk = ?", t->name, pk);
    return rc;
}

/* What one result of a push means for the replica. A row the app changed again since
 * the batch was made keeps the app's values (its next push carries them); otherwise the
 * server's outcome is written. */
static int settle_one(ferry_replica *r, json_t *op, json_t *res, struct ferry_sync_stats *stats)
{
    const struct fc_table *t = fc_table_find(r, json_string_value(json_object_get(op, "table")));
    const char *pk = json_string_value(json_object_get(op, "_pk"));
    const char *status = json_string_value(json_object_get(res, "status"));
    json_t *version = json_object_get(res, "version"), *data = json_object_get(res, "data");
    int rc = FERRY_CLIENT_OK;

    stats->pushed++;
    stats->conflicts += status && !strcmp(status, "conflict");
    if (!t || !pk || !status)
        return rc;
    bool changed_since = fc_has_pending(r, t->name, pk);
    if (!strcmp(status, "skipped") || !strcmp(status, "conflict"))
        /* the server kept its row: take it, when the pull brought it already */
        return changed_since ? rc : apply_held(r, t, pk);
    if (!strcmp(status, "merged") && json_is_object(data) && !changed_since)
        rc = fc_apply_row(r, t, pk, data);
    if (rc == FERRY_CLIENT_OK && json_is_integer(version))
        rc = fc_set_version(r, t->name, pk, json_integer_value(version));
    if (rc == FERRY_CLIENT_OK)
        rc = fc_run_text(r, "DELETE FROM ferry_client_held WHERE tbl = ? AND pk = ?", t->name, pk);
    return rc;
}

struct settle_ctx {
    struct inflight *f;
    json_t *results, *conflicts;
    struct ferry_sync_stats *stats;
};

/* Keeps the conflicts a push answer reports, for the app to see and resolve. */
static int record_conflicts(ferry_replica *r, json_t *conflicts)
{
    json_t *cf;
    size_t i;
    int rc = FERRY_CLIENT_OK;
    json_array_foreach(conflicts, i, cf)
    {
        json_t *row = json_object_get(cf, "rowId");
        const char *id = json_string_value(json_object_get(cf, "id"));
        const char *tbl = json_string_value(json_object_get(cf, "table"));
        sqlite3_stmt *st = id && tbl ? fc_prepare(r, "INSERT OR IGNORE INTO ferry_client_conflicts"
                                                     "(id, tbl, pk, body) VALUES (?, ?, ?, ?)")
                                     : NULL;
        if (!st)
            continue;
        char *pk = json_is_string(row) ? xstrdup(json_string_value(row))
                                       : xasprintf("%lld", (long long)json_integer_value(row));
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, tbl, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, pk, -1, free);
        sqlite3_bind_text(st, 4, json_dumps(cf, JSON_COMPACT), -1, free);
        if (rc == FERRY_CLIENT_OK)
            rc = fc_finish(r, st);
        else
            sqlite3_finalize(st);
    }
    return rc;
}

static int settle(ferry_replica *r, void *arg)
{
    struct settle_ctx *c = arg;
    json_t *ops = json_object_get(c->f->body, "operations"), *res;
    size_t i;
    sqlite3_stmt *st = fc_prepare(r, "DELETE FROM ferry_client_outbox WHERE id <= ?");
    if (st)
        sqlite3_bind_int64(st, 1, c->f->last);
    int rc = fc_finish(r, st);
    json_array_foreach(c->results, i, res)
    {
        json_t *op = json_array_get(ops, (size_t)json_integer_value(json_object_get(res, "index")));
        if (rc == FERRY_CLIENT_OK && op)
            rc = settle_one(r, op, res, c->stats);
    }
    if (rc == FERRY_CLIENT_OK)
        rc = record_conflicts(r, c->conflicts);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_exec(r, "DELETE FROM ferry_client_inflight");
    return rc;
}

static int send_batch(ferry_replica *r, struct inflight *f, struct ferry_sync_stats *stats)
{
    json_t *wire = json_deep_copy(f->body), *op, *answer = NULL;
    size_t i;
    long status = 0;
    json_array_foreach(json_object_get(wire, "operations"), i, op) json_object_del(op, "_pk");
    if (r->device_id)
        json_object_set_new(wire, "deviceId", json_string(r->device_id));
    int rc = fc_http(r, "POST", SYNC_PATH "/report", wire, &status, &answer);
    if (rc == FERRY_CLIENT_OK && status != 200)
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "push: HTTP %ld: %s", status,
                     fc_answer_message(answer));
    if (rc == FERRY_CLIENT_OK && !json_is_array(json_object_get(answer, "results")))
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "push: an answer without results");
    if (rc == FERRY_CLIENT_OK) {
        struct settle_ctx c = {f, json_object_get(answer, "results"),
                               json_object_get(answer, "conflicts"), stats};
        rc = fc_in_apply_txn(r, settle, &c);
    }
    json_decref(answer);
    json_decref(wire);
    return rc;
}

int fc_push_all(ferry_replica *r, struct ferry_sync_stats *stats)
{
    for (;;) {
        struct inflight f = {0};
        int rc = next_batch(r, &f);
        if (rc == FERRY_CLIENT_OK && f.body)
            rc = send_batch(r, &f, stats);
        bool sent = f.body != NULL;
        json_decref(f.body);
        if (rc == FERRY_CLIENT_OK && sent)
            fc_progress(r, stats);
        if (rc != FERRY_CLIENT_OK || !sent)
            return rc;
    }
}
