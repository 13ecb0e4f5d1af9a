/* syncloop.c - ferry_sync(): push the outbox (push.c), pull every page since the cursor,
 * acknowledge; on 410 pull everything again and drop the rows the server no longer has. */
#include <stdlib.h>
#include <string.h>

#include "client/page.h"
#include "client/pull.h"
#include "client/replica.h"
#include "client/transport.h"
#include "ferry.h"

#define SYNC_PATH "/api/v1/sync"

/* --- pull --------------------------------------------------------------------------- */

static int hold(ferry_replica *r, const char *tbl, const char *pk, int64_t version,
                const struct fc_page *page, const struct fc_change *c)
{
    sqlite3_stmt *st = fc_prepare(r, "INSERT INTO ferry_client_held(tbl, pk, version, data)"
                                     " VALUES (?, ?, ?, ?) ON CONFLICT (tbl, pk) DO UPDATE SET"
                                     " version = excluded.version, data = excluded.data");
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    sqlite3_bind_text(st, 1, tbl, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, pk, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, version);
    if (c) {
        json_t *data = fc_change_data(page, c);
        sqlite3_bind_text(st, 4, json_dumps(data, JSON_COMPACT), -1, free);
        json_decref(data);
    }
    return fc_finish(r, st);
}

struct page_ctx {
    const struct fc_page *page;
    bool resync;
    bool outbox_empty; /* then no row has local changes: no lookup per row */
    struct ferry_sync_stats *stats;
};

static int apply_change(ferry_replica *r, const struct fc_change *c, struct page_ctx *p)
{
    const struct fc_table *t = fc_table_find(r, c->table);
    const char *pk = c->pk; /* an integer id comes as its digits */
    int64_t version = c->version;
    bool deleted = c->deleted || (c->op && !strcmp(c->op, "delete"));
    const struct fc_change *data = deleted || !c->has_data ? NULL : c;
    int rc = FERRY_CLIENT_OK;

    if (!t)
        return rc; /* a table this replica does not sync */
    if (!pk)
        return fc_fail(r, FERRY_CLIENT_ESERVER, "a change without a row id");
    if (p->resync)
        rc = fc_run_text(r, "INSERT OR IGNORE INTO ferry_client_seen(tbl, pk) VALUES (?, ?)",
                         t->name, pk);
    if (rc == FERRY_CLIENT_OK && !p->outbox_empty && fc_has_pending(r, t->name, pk)) {
        p->stats->skipped++;
        return hold(r, t->name, pk, version, p->page, data);
    }
    if (rc == FERRY_CLIENT_OK)
        rc = fc_apply_change(r, t, pk, p->page, data);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_set_version(r, t->name, pk, version);
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
        rc = fc_run_text(r, sql, t->name, NULL);
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
    int rc = FERRY_CLIENT_OK;
    /* inside the write transaction: no other connection adds to the outbox meanwhile */
    p->outbox_empty = !fc_outbox_any(r);
    for (size_t i = 0; rc == FERRY_CLIENT_OK && i < p->page->n_changes; i++)
        rc = apply_change(r, &p->page->changes[i], p);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_state_set(r, "cursor", p->page->cursor);
    if (rc == FERRY_CLIENT_OK && p->resync && !p->page->has_more)
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

/* The write transaction pages are applied in. One spans pages until it holds
 * LOAD_TXN_CHANGES changes (an initial load commits a few times, not once per page) or
 * the pull stops; pages applied before a failure to fetch the next stay committed, so a
 * rerun goes on from there. */
#define LOAD_TXN_CHANGES 50000
/* A transaction whose first page has this many changes is a bulk load: the capture
 * triggers are dropped in it and made again before it commits (replica.h). */
#define LOAD_BULK_CHANGES 1000
/* How long an open transaction waits for a page still on its way before it commits: it
 * holds the replica's write lock (and, in a bulk load, the capture triggers are off), so
 * the app's own connections would wait, or fail busy, for as long as the network takes. */
#define LOAD_PAGE_WAIT_MS 100

struct load_txn {
    bool open;
    bool bulk; /* the capture triggers are off in it */
    size_t changes;
};

static int txn_apply(ferry_replica *r, struct load_txn *tx, struct page_ctx *p)
{
    int rc = FERRY_CLIENT_OK;
    if (!tx->open) {
        if ((rc = fc_exec(r, "BEGIN IMMEDIATE")) != FERRY_CLIENT_OK)
            return rc;
        tx->open = true;
        tx->changes = 0;
        tx->bulk = p->page->n_changes >= LOAD_BULK_CHANGES;
        rc = fc_state_set(r, "applying", 1);
        if (rc == FERRY_CLIENT_OK && tx->bulk)
            rc = fc_capture_off(r);
    }
    if (rc == FERRY_CLIENT_OK)
        rc = apply_page(r, p);
    tx->changes += p->page->n_changes;
    if (rc != FERRY_CLIENT_OK) { /* nothing of the transaction stays */
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
        tx->open = false;
    }
    return rc;
}

/* Commits the open transaction (when there is one). */
static int txn_commit(ferry_replica *r, struct load_txn *tx)
{
    if (!tx->open)
        return FERRY_CLIENT_OK;
    tx->open = false;
    return fc_apply_end(r, tx->bulk ? fc_capture_on(r) : FERRY_CLIENT_OK);
}

/* Applies the pages of one pull from the replica's cursor; *restart when the server
 * answered 410 and the pull starts again from 0. */
static int pull_pages(ferry_replica *r, struct ferry_sync_stats *stats, bool *restart, int *gone)
{
    int64_t cursor = 0, resync = 0;
    struct load_txn tx = {0};
    int rc = fc_state_get(r, "cursor", &cursor);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_state_get(r, "resync", &resync);
    struct pull *pages = rc == FERRY_CLIENT_OK ? pull_start(r, cursor, resync != 0) : NULL;
    if (!pages)
        return rc == FERRY_CLIENT_OK ? FERRY_CLIENT_ELOCAL : rc;
    for (bool more = true; rc == FERRY_CLIENT_OK && more;) {
        json_t *answer = NULL;
        struct fc_page *page = NULL;
        long status = 0;
        if (tx.open && !pull_ready(pages, LOAD_PAGE_WAIT_MS) &&
            (rc = txn_commit(r, &tx)) != FERRY_CLIENT_OK)
            break;
        rc = pull_next(pages, &status, &answer, &page);
        if (rc == FERRY_CLIENT_OK && status == 410 && !(*gone)++) {
            json_decref(answer);
            fc_page_free(page);
            rc = txn_commit(r, &tx);
            *restart = true;
            break;
        }
        if (rc == FERRY_CLIENT_OK && status != 200)
            rc = fc_fail(r, FERRY_CLIENT_ESERVER, "pull: HTTP %ld: %s", status,
                         fc_answer_message(answer));
        struct page_ctx p = {page, resync != 0, false, stats};
        if (rc == FERRY_CLIENT_OK)
            rc = txn_apply(r, &tx, &p);
        more = page && page->has_more;
        json_decref(answer);
        if (rc == FERRY_CLIENT_OK && (!more || tx.changes >= LOAD_TXN_CHANGES || r->cancel))
            rc = txn_commit(r, &tx);
        if (rc == FERRY_CLIENT_OK)
            fc_progress(r, stats);
        pull_applied(pages, page);
    }
    int committed = txn_commit(r, &tx); /* what was applied before a failed fetch */
    pull_end(pages);
    return rc == FERRY_CLIENT_OK ? committed : rc;
}

static int pull_all(ferry_replica *r, struct ferry_sync_stats *stats)
{
    for (int gone = 0;;) {
        bool restart = false;
        int rc = pull_pages(r, stats, &restart, &gone);
        if (rc != FERRY_CLIENT_OK || !restart)
            return rc;
        if ((rc = start_resync(r, stats)) != FERRY_CLIENT_OK)
            return rc;
    }
}

static int acknowledge(ferry_replica *r, int64_t cursor)
{
    json_t *body = json_pack("{s:I}", "cursor", (json_int_t)cursor), *answer = NULL;
    if (r->device_id)
        json_object_set_new(body, "deviceId", json_string(r->device_id));
    long status = 0;
    int rc = fc_http(r, "POST", SYNC_PATH "/ack", body, &status, &answer);
    if (rc == FERRY_CLIENT_OK && status != 200)
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "ack: HTTP %ld: %s", status,
                     fc_answer_message(answer));
    json_decref(body);
    json_decref(answer);
    return rc;
}

static int start_round(ferry_replica *r, struct ferry_sync_stats **stats,
                       struct ferry_sync_stats *local)
{
    if (!r)
        return FERRY_CLIENT_EINVAL;
    if (!*stats)
        *stats = local;
    memset(*stats, 0, sizeof(**stats));
    r->error[0] = '\0';
    r->cancel = 0;
    return FERRY_CLIENT_OK;
}

/* A call the progress handler stopped says so. */
static int stopped(ferry_replica *r, int rc)
{
    if (rc != FERRY_CLIENT_OK && r && r->cancel)
        rc = fc_fail(r, FERRY_CLIENT_ENETWORK, "stopped (the next sync goes on from here)");
    return rc;
}

void fc_progress(ferry_replica *r, const struct ferry_sync_stats *stats)
{
    if (r->progress_fn &&
        r->progress_fn(r->progress_ctx, r->pushed_before + stats->pushed, stats->pulled))
        r->cancel = 1;
}

void ferry_set_progress_handler(ferry_replica *r, ferry_sync_progress_fn fn, void *ctx)
{
    if (r) {
        r->progress_fn = fn;
        r->progress_ctx = ctx;
    }
}

int ferry_push(ferry_replica *r, struct ferry_sync_stats *stats)
{
    struct ferry_sync_stats local;
    int rc = start_round(r, &stats, &local);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_push_all(r, stats);
    if (r) {
        int delivered = fc_deliver_conflicts(r);
        rc = rc == FERRY_CLIENT_OK ? delivered : rc;
        if (fc_state_get(r, "cursor", &stats->cursor) != FERRY_CLIENT_OK && rc == FERRY_CLIENT_OK)
            rc = FERRY_CLIENT_ELOCAL;
    }
    return stopped(r, rc);
}

int ferry_pull(ferry_replica *r, struct ferry_sync_stats *stats)
{
    struct ferry_sync_stats local;
    int rc = start_round(r, &stats, &local);
    if (rc == FERRY_CLIENT_OK)
        rc = pull_all(r, stats);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_state_get(r, "cursor", &stats->cursor);
    if (rc == FERRY_CLIENT_OK && stats->cursor > 0)
        rc = acknowledge(r, stats->cursor);
    return stopped(r, rc);
}

int ferry_sync(ferry_replica *r, struct ferry_sync_stats *stats)
{
    struct ferry_sync_stats local, pulled;
    if (!stats)
        stats = &local;
    int rc = ferry_push(r, stats);
    if (rc == FERRY_CLIENT_OK) {
        r->pushed_before = stats->pushed; /* the progress of the pull counts them too */
        rc = ferry_pull(r, &pulled);
        r->pushed_before = 0;
        stats->pulled = pulled.pulled;
        stats->skipped = pulled.skipped;
        stats->resynced = pulled.resynced;
        stats->cursor = pulled.cursor;
    }
    return rc;
}
