/* syncloop.c - ferry_sync(): push the outbox in batches (each with a batch id, so a
 * retried batch is never applied twice), pull every page since the cursor, acknowledge;
 * on 410 pull everything again and drop the rows the server no longer has. */
#include <stdlib.h>
#include <string.h>

#include "client/replica.h"
#include "client/transport.h"
#include "ferry.h"

#define SYNC_PATH "/api/v1/sync"

struct key {
    char *tbl, *pk;
};

struct batch {
    struct key *keys;
    int n;
    int64_t first, last; /* the outbox ids it covers */
};

static void batch_free(struct batch *b)
{
    for (int i = 0; i < b->n; i++) {
        free(b->keys[i].tbl);
        free(b->keys[i].pk);
    }
    free(b->keys);
    memset(b, 0, sizeof(*b));
}

static sqlite3_stmt *prepare(ferry_replica *r, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
        fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", sqlite3_errmsg(r->db));
    return st;
}

/* Runs st (bound by the caller) to its end and finalizes it. */
static int finish(ferry_replica *r, sqlite3_stmt *st)
{
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step == SQLITE_DONE || step == SQLITE_ROW)
        return FERRY_CLIENT_OK;
    return fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", sqlite3_errmsg(r->db));
}

/* Runs sql with up to two text parameters (NULL: not bound). */
static int run_text(ferry_replica *r, const char *sql, const char *a, const char *b)
{
    sqlite3_stmt *st = prepare(r, sql);
    if (st && a)
        sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
    if (st && b)
        sqlite3_bind_text(st, 2, b, -1, SQLITE_TRANSIENT);
    return finish(r, st);
}

/* The outbox id where a batch sent but never settled (the answer was lost, or the
 * process died before recording it) ends; INT64_MAX when there is none. */
static int64_t unsettled_last(ferry_replica *r)
{
    sqlite3_stmt *st = prepare(r, "SELECT last FROM ferry_client_sending WHERE id = 1");
    int64_t last = INT64_MAX;
    if (st && sqlite3_step(st) == SQLITE_ROW)
        last = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return last;
}

/* The rows the next batch pushes: the distinct keys of the first batch_size outbox
 * entries, in the order they first changed (a parent before the child that names it).
 * An unsettled batch goes again as it was (the same entries, so the same batch id, which
 * the server answers from its record): entries added since would give it another id,
 * and the server would take the device's own earlier write for a concurrent change. */
static int read_outbox(ferry_replica *r, struct batch *b)
{
    sqlite3_stmt *st = prepare(r, "SELECT id, tbl, pk FROM ferry_client_outbox WHERE id <= ?"
                                  " ORDER BY id LIMIT ?");
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    sqlite3_bind_int64(st, 1, unsettled_last(r));
    sqlite3_bind_int(st, 2, r->batch_size);
    b->keys = xcalloc((size_t)r->batch_size, sizeof(*b->keys));
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *tbl = (const char *)sqlite3_column_text(st, 1);
        const char *pk = (const char *)sqlite3_column_text(st, 2);
        if (!b->first)
            b->first = sqlite3_column_int64(st, 0);
        b->last = sqlite3_column_int64(st, 0);
        int k = 0;
        while (k < b->n && (strcmp(b->keys[k].tbl, tbl) || strcmp(b->keys[k].pk, pk)))
            k++;
        if (k == b->n) {
            b->keys[b->n].tbl = xstrdup(tbl);
            b->keys[b->n++].pk = xstrdup(pk);
        }
    }
    return finish(r, st);
}

static bool row_version(ferry_replica *r, const char *tbl, const char *pk, int64_t *version)
{
    sqlite3_stmt *st = prepare(r, "SELECT version FROM ferry_client_rows WHERE tbl = ? AND pk = ?");
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

static int set_version(ferry_replica *r, const char *tbl, const char *pk, int64_t version)
{
    sqlite3_stmt *st = prepare(r, "INSERT INTO ferry_client_rows(tbl, pk, version)"
                                  " VALUES (?, ?, ?) ON CONFLICT (tbl, pk)"
                                  " DO UPDATE SET version = excluded.version");
    if (st) {
        sqlite3_bind_text(st, 1, tbl, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, pk, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, version);
    }
    return finish(r, st);
}

static json_t *key_json(const struct fc_table *t, const char *pk)
{
    if (!strcmp(t->cols[t->pk].type, "integer"))
        return json_integer(strtoll(pk, NULL, 10));
    return json_string(pk);
}

/* The operation that brings the server to the row as it is now: an upsert of the whole
 * row, or a delete when it is gone. NULL (and *status OK) for a table no longer synced. */
static json_t *build_op(ferry_replica *r, const struct key *k, int *status)
{
    const struct fc_table *t = fc_table_find(r, k->tbl);
    int64_t version = 0;
    *status = FERRY_CLIENT_OK;
    if (!t)
        return NULL;
    json_t *row = fc_row_json(r, t, k->pk, status);
    bool exists = row != NULL;
    if (*status != FERRY_CLIENT_OK)
        return NULL;
    if (!exists) {
        row = json_object();
        json_object_set_new(row, t->cols[t->pk].name, key_json(t, k->pk));
    }
    json_t *op = json_pack("{s:s, s:s, s:o}", "table", t->name, "action",
                           exists ? "upsert" : "delete", "data", row);
    if (row_version(r, k->tbl, k->pk, &version))
        json_object_set_new(op, "base_version", json_integer(version));
    return op;
}

/* Applies the remote change held back for a row, if any, and forgets it. */
static int apply_held(ferry_replica *r, const struct fc_table *t, const char *pk)
{
    sqlite3_stmt *st = prepare(r, "SELECT version, data FROM ferry_client_held"
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
            rc = set_version(r, t->name, pk, sqlite3_column_int64(st, 0));
        json_decref(data);
    }
    sqlite3_finalize(st);
    if (rc == FERRY_CLIENT_OK)
        rc = run_text(r, "DELETE FROM ferry_client_held WHERE tbl = ? AND pk = ?", t->name, pk);
    return rc;
}

/* What one result of a push means for the replica. */
static int settle_one(ferry_replica *r, const struct key *k, json_t *res,
                      struct ferry_sync_stats *stats)
{
    const struct fc_table *t = fc_table_find(r, k->tbl);
    const char *status = json_string_value(json_object_get(res, "status"));
    json_t *version = json_object_get(res, "version"), *data = json_object_get(res, "data");
    int rc = FERRY_CLIENT_OK;

    stats->pushed++;
    if (!t || !status)
        return rc;
    if (!strcmp(status, "skipped") || !strcmp(status, "conflict")) {
        /* the server kept its row: take it, when the pull brought it already */
        stats->conflicts += !strcmp(status, "conflict");
        return apply_held(r, t, k->pk);
    }
    if (!strcmp(status, "merged") && json_is_object(data))
        rc = fc_apply_row(r, t, k->pk, data);
    if (rc == FERRY_CLIENT_OK && json_is_integer(version))
        rc = set_version(r, t->name, k->pk, json_integer_value(version));
    if (rc == FERRY_CLIENT_OK)
        rc = run_text(r, "DELETE FROM ferry_client_held WHERE tbl = ? AND pk = ?", t->name, k->pk);
    return rc;
}

/* Runs body(r, ctx) in one write transaction with capture off. */
static int in_apply_txn(ferry_replica *r, int (*body)(ferry_replica *, void *), void *ctx)
{
    int rc = fc_exec(r, "BEGIN IMMEDIATE");
    if (rc != FERRY_CLIENT_OK)
        return rc;
    rc = fc_state_set(r, "applying", 1);
    if (rc == FERRY_CLIENT_OK)
        rc = body(r, ctx);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_state_set(r, "applying", 0);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_exec(r, "COMMIT");
    if (rc != FERRY_CLIENT_OK)
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

struct settle_ctx {
    struct batch *b;
    json_t *ops, *results;
    struct ferry_sync_stats *stats;
};

static int settle(ferry_replica *r, void *arg)
{
    struct settle_ctx *c = arg;
    json_t *res;
    size_t i;
    int rc = FERRY_CLIENT_OK;
    json_array_foreach(c->results, i, res)
    {
        json_t *index = json_object_get(res, "index");
        json_t *op = json_array_get(c->ops, (size_t)json_integer_value(index));
        json_t *key = op ? json_object_get(op, "_key") : NULL;
        if (rc == FERRY_CLIENT_OK && json_is_integer(key))
            rc = settle_one(r, &c->b->keys[json_integer_value(key)], res, c->stats);
    }
    if (rc == FERRY_CLIENT_OK)
        rc = fc_exec(r, "DELETE FROM ferry_client_sending");
    sqlite3_stmt *st = prepare(r, "DELETE FROM ferry_client_outbox WHERE id <= ?");
    if (st)
        sqlite3_bind_int64(st, 1, c->b->last);
    return rc == FERRY_CLIENT_OK ? finish(r, st) : (sqlite3_finalize(st), rc);
}

/* Sends b as one report with a batch id made of the replica's id and the outbox ids it
 * covers: a retry of the same entries (after a lost answer or a crash) replays. */
static int send_batch(ferry_replica *r, struct batch *b, json_t *ops,
                      struct ferry_sync_stats *stats)
{
    char *batch_id =
        xasprintf("%s-%lld-%lld", r->replica_id, (long long)b->first, (long long)b->last);
    json_t *wire = json_deep_copy(ops), *op, *answer = NULL;
    size_t i;
    long status = 0;
    json_array_foreach(wire, i, op) json_object_del(op, "_key");
    json_t *body = json_pack("{s:s, s:o}", "batchId", batch_id, "operations", wire);
    sqlite3_stmt *st = prepare(r, "INSERT OR REPLACE INTO ferry_client_sending(id, last)"
                                  " VALUES (1, ?)");
    if (st)
        sqlite3_bind_int64(st, 1, b->last);
    int rc = finish(r, st);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_http(r, "POST", SYNC_PATH "/report", body, &status, &answer);
    if (rc == FERRY_CLIENT_OK && status != 200)
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "push: HTTP %ld: %s", status,
                     fc_answer_message(answer));
    if (rc == FERRY_CLIENT_OK) {
        struct settle_ctx c = {b, ops, json_object_get(answer, "results"), stats};
        rc = in_apply_txn(r, settle, &c);
    }
    json_decref(answer);
    json_decref(body);
    free(batch_id);
    return rc;
}

static int push_batch(ferry_replica *r, struct ferry_sync_stats *stats, bool *more)
{
    struct batch b = {0};
    json_t *ops = json_array();
    int rc = read_outbox(r, &b);

    *more = false;
    for (int i = 0; rc == FERRY_CLIENT_OK && i < b.n; i++) {
        json_t *op = build_op(r, &b.keys[i], &rc);
        if (op) {
            json_object_set_new(op, "_key", json_integer(i));
            json_array_append_new(ops, op);
        }
    }
    if (rc == FERRY_CLIENT_OK && b.n) {
        rc = send_batch(r, &b, ops, stats);
        *more = rc == FERRY_CLIENT_OK;
    }
    json_decref(ops);
    batch_free(&b);
    return rc;
}

/* --- pull --------------------------------------------------------------------------- */

static bool has_pending(ferry_replica *r, const char *tbl, const char *pk)
{
    sqlite3_stmt *st = prepare(r, "SELECT 1 FROM ferry_client_outbox WHERE tbl = ? AND pk = ?"
                                  " LIMIT 1");
    bool found = false;
    if (st) {
        sqlite3_bind_text(st, 1, tbl, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, pk, -1, SQLITE_TRANSIENT);
        found = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
    }
    return found;
}

static int hold(ferry_replica *r, const char *tbl, const char *pk, int64_t version, json_t *data)
{
    sqlite3_stmt *st = prepare(r, "INSERT INTO ferry_client_held(tbl, pk, version, data)"
                                  " VALUES (?, ?, ?, ?) ON CONFLICT (tbl, pk) DO UPDATE SET"
                                  " version = excluded.version, data = excluded.data");
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    sqlite3_bind_text(st, 1, tbl, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, pk, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, version);
    if (data)
        sqlite3_bind_text(st, 4, json_dumps(data, JSON_COMPACT), -1, free);
    return finish(r, st);
}

struct page_ctx {
    json_t *page;
    bool resync;
    struct ferry_sync_stats *stats;
};

static int apply_change(ferry_replica *r, json_t *c, struct page_ctx *p)
{
    const struct fc_table *t = fc_table_find(r, json_string_value(json_object_get(c, "table")));
    json_t *id = json_object_get(c, "id"), *data = json_object_get(c, "data");
    const char *op = json_string_value(json_object_get(c, "op"));
    int64_t version = json_integer_value(json_object_get(c, "version"));
    bool deleted = json_is_true(json_object_get(c, "deleted")) || (op && !strcmp(op, "delete"));
    char num[32];
    const char *pk = json_string_value(id);
    int rc = FERRY_CLIENT_OK;

    if (!t)
        return rc; /* a table this replica does not sync */
    if (json_is_integer(id)) {
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(id));
        pk = num;
    }
    if (!pk)
        return fc_fail(r, FERRY_CLIENT_ESERVER, "a change without a row id");
    if (p->resync)
        rc = run_text(r, "INSERT OR IGNORE INTO ferry_client_seen(tbl, pk) VALUES (?, ?)", t->name,
                      pk);
    if (rc == FERRY_CLIENT_OK && has_pending(r, t->name, pk)) {
        p->stats->skipped++;
        return hold(r, t->name, pk, version, deleted ? NULL : data);
    }
    if (rc == FERRY_CLIENT_OK)
        rc = fc_apply_row(r, t, pk, deleted || !json_is_object(data) ? NULL : data);
    if (rc == FERRY_CLIENT_OK)
        rc = set_version(r, t->name, pk, version);
    p->stats->pulled += rc == FERRY_CLIENT_OK;
    return rc;
}

/* After a full pull on resync: every row the server did not send is gone there. */
static int drop_unseen(ferry_replica *r)
{
    int rc = FERRY_CLIENT_OK;
    for (int i = 0; rc == FERRY_CLIENT_OK && i < r->n_tables; i++) {
        const struct fc_table *t = &r->tables[i];
        char *sql = xasprintf("DELETE FROM %s WHERE CAST(%s AS TEXT) NOT IN"
                              " (SELECT pk FROM ferry_client_seen WHERE tbl = ?1)"
                              " AND CAST(%s AS TEXT) NOT IN"
                              " (SELECT pk FROM ferry_client_outbox WHERE tbl = ?1)",
                              t->quoted, t->cols[t->pk].quoted, t->cols[t->pk].quoted);
        rc = run_text(r, sql, t->name, NULL);
        free(sql);
    }
    if (rc == FERRY_CLIENT_OK)
        rc = fc_exec(r, "DELETE FROM ferry_client_seen");
    if (rc == FERRY_CLIENT_OK)
        rc = fc_state_set(r, "resync", 0);
    return rc;
}

static int apply_page(ferry_replica *r, void *arg)
{
    struct page_ctx *p = arg;
    json_t *changes = json_object_get(p->page, "changes"), *c;
    size_t i;
    int rc = FERRY_CLIENT_OK;
    json_array_foreach(changes, i, c)
    {
        if (rc == FERRY_CLIENT_OK)
            rc = apply_change(r, c, p);
    }
    if (rc == FERRY_CLIENT_OK)
        rc = fc_state_set(r, "cursor", json_integer_value(json_object_get(p->page, "cursor")));
    if (rc == FERRY_CLIENT_OK && p->resync && !json_is_true(json_object_get(p->page, "hasMore")))
        rc = drop_unseen(r);
    return rc;
}

/* Starts over from cursor 0 after the server's 410: the replica is rebuilt as the pages
 * come, and rows never seen are dropped at the end (the resync flag survives a crash). */
static int start_resync(ferry_replica *r, struct ferry_sync_stats *stats)
{
    stats->resynced = 1;
    int rc = fc_exec(r, "BEGIN IMMEDIATE; DELETE FROM ferry_client_seen;"
                        " UPDATE ferry_client_state SET resync = 1, cursor = 0 WHERE id = 1;"
                        " COMMIT;");
    if (rc != FERRY_CLIENT_OK)
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int pull_all(ferry_replica *r, struct ferry_sync_stats *stats)
{
    for (int gone = 0;;) {
        int64_t cursor = 0, resync = 0;
        json_t *page = NULL;
        long status = 0;
        int rc = fc_state_get(r, "cursor", &cursor);
        if (rc == FERRY_CLIENT_OK)
            rc = fc_state_get(r, "resync", &resync);
        /* From 0 (a new replica, a resync) the device's own rows count too: the replica
         * may not have them. */
        char *path = xasprintf(SYNC_PATH "/changes?cursor=%lld&limit=%d%s", (long long)cursor,
                               r->page_size, cursor == 0 || resync ? "&includeOwn=true" : "");
        if (rc == FERRY_CLIENT_OK)
            rc = fc_http(r, "GET", path, NULL, &status, &page);
        free(path);
        if (rc == FERRY_CLIENT_OK && status == 410 && !gone++) {
            json_decref(page);
            if ((rc = start_resync(r, stats)) != FERRY_CLIENT_OK)
                return rc;
            continue;
        }
        if (rc == FERRY_CLIENT_OK && status != 200)
            rc = fc_fail(r, FERRY_CLIENT_ESERVER, "pull: HTTP %ld: %s", status,
                         fc_answer_message(page));
        struct page_ctx p = {page, resync != 0, stats};
        if (rc == FERRY_CLIENT_OK)
            rc = in_apply_txn(r, apply_page, &p);
        bool more = rc == FERRY_CLIENT_OK && json_is_true(json_object_get(page, "hasMore"));
        json_decref(page);
        if (rc != FERRY_CLIENT_OK || !more)
            return rc;
    }
}

static int acknowledge(ferry_replica *r, int64_t cursor)
{
    json_t *body = json_pack("{s:I}", "cursor", (json_int_t)cursor), *answer = NULL;
    long status = 0;
    int rc = fc_http(r, "POST", SYNC_PATH "/ack", body, &status, &answer);
    if (rc == FERRY_CLIENT_OK && status != 200)
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "ack: HTTP %ld: %s", status,
                     fc_answer_message(answer));
    json_decref(body);
    json_decref(answer);
    return rc;
}

int ferry_sync(ferry_replica *r, struct ferry_sync_stats *stats)
{
    struct ferry_sync_stats local;
    bool more = true;
    int rc = FERRY_CLIENT_OK;

    if (!r)
        return FERRY_CLIENT_EINVAL;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof(*stats));
    r->error[0] = '\0';
    while (rc == FERRY_CLIENT_OK && more)
        rc = push_batch(r, stats, &more);
    if (rc == FERRY_CLIENT_OK)
        rc = pull_all(r, stats);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_state_get(r, "cursor", &stats->cursor);
    if (rc == FERRY_CLIENT_OK && stats->cursor > 0)
        rc = acknowledge(r, stats->cursor);
    return rc;
}
