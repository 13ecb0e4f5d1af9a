/* purge.c - see purge.h. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sync/devices.h"
#include "sync/feed.h"
#include "sync/settle.h"
#include "sync/purge.h"
#include "util/ticker.h"
#include "sync/tables.h"
#include "util/timeutil.h"
#include "util/log.h"

/* Records the horizon, and keeps the log's head where it was: when the newest entries
 * were purged, a placeholder entry (table '', key '') takes the horizon's seq, so
 * MAX(seq), the head every device compares its cursor with, never moves backwards and
 * SQLite never gives that seq out again. The feed and the purge skip the placeholder. */
static int write_horizon(struct store_conn *c, int64_t horizon, struct err *err)
{
    struct store_val v[] = {sv_int(horizon), sv_int(time_now_ms())};
    if (store_run(c, "UPDATE ferry_writer SET horizon = $1 WHERE id = 1", v, 1, NULL, err) !=
        FERRY_OK)
        return FERRY_ERR;
    return store_run(c,
                     "INSERT INTO ferry_changes(seq, tbl, pk, version, deleted, updated_at)"
                     " SELECT CAST($1 AS BIGINT), '', '', 0, 0, $2 WHERE CAST($1 AS BIGINT) > "
                     "(SELECT COALESCE(MAX(seq), 0)"
                     " FROM ferry_changes) ON CONFLICT (tbl, pk) DO UPDATE SET seq = excluded.seq",
                     v, 2, NULL, err);
}

/* How long a purge waits for the head to reach what committed before it (settle.h). */
#define PURGE_SETTLE_MS 500

int purge_run(struct store_conn *c, int64_t retention_ms, struct purge_result *out, struct err *err)
{
    int64_t cutoff = time_now_ms() - retention_ms, acked = 0, newest = 0, head = 0;
    bool any = false, found = false;
    int rc = FERRY_ERR;

    *out = (struct purge_result){0};
    /* The change log's lock keeps other purges out while the horizon moves. Only
     * tombstones under the head go (settle.h): one above it may be a reader's next
     * change, and a seq below it may still commit, which the horizon must not pass. */
    if (settle_reader(c, PURGE_SETTLE_MS, err) != FERRY_OK || store_begin(c, err) != FERRY_OK ||
        changelog_lock(c, err) != FERRY_OK || feed_head(c, &head, err) != FERRY_OK ||

        devices_min_cursor(c, cutoff, &acked, &any, err) != FERRY_OK ||
        feed_horizon(c, &out->horizon, err) != FERRY_OK)
        goto out;
    if (!any) /* no active device has acknowledged anything: only the retention applies */
        acked = 0;
    struct store_val v[] = {sv_int(acked), sv_int(cutoff), sv_int(head)};
    if (store_query_int(c,
                        "SELECT MAX(seq) FROM ferry_changes WHERE deleted = 1 AND seq <= $3"
                        " AND (seq <= $1 OR updated_at < $2)",
                        v, 3, &newest, &found, err) != FERRY_OK)
        goto out;
    if (found) {
        if (store_run(c,
                      "DELETE FROM ferry_changes WHERE deleted = 1 AND seq <= $3"
                      " AND (seq <= $1 OR updated_at < $2)",
                      v, 3, &out->tombstones, err) != FERRY_OK ||
            store_run(c,
                      "DELETE FROM ferry_field_versions WHERE NOT EXISTS (SELECT 1 FROM"
                      " ferry_changes c WHERE c.tbl = ferry_field_versions.tbl"
                      " AND c.pk = ferry_field_versions.pk)",
                      NULL, 0, NULL, err) != FERRY_OK)
            goto out;
        if (newest > out->horizon) {
            out->horizon = newest;
            if (write_horizon(c, newest, err) != FERRY_OK)
                goto out;
        }
    }
    /* An exit (a row that left a scope, sync rules) is a tombstone for one scope: a device
     * whose cursor is below the horizon resyncs from 0 anyway, so those below it go. */
    struct store_val h = sv_int(out->horizon);
    if (store_run(c, "DELETE FROM ferry_scope_exits WHERE seq <= $1", &h, 1, NULL, err) != FERRY_OK)
        goto out;
    if (store_run(c, "DELETE FROM ferry_batches WHERE created_at < $1", &v[1], 1, &out->batches,
                  err) != FERRY_OK ||
        store_run(c, "DELETE FROM ferry_conflicts WHERE status = 'resolved' AND resolved_at < $1",
                  &v[1], 1, &out->conflicts, err) != FERRY_OK)
        goto out;
    rc = store_commit(c, err);
out:
    store_rollback(c);
    return rc;
}

struct purger {
    struct ticker *ticker;
    struct store *st;
    int64_t retention_ms;
    void (*also)(struct store_conn *c, void *ctx);
    void *ctx;
};

static void purge_tick(struct ticker *t, void *arg)
{
    struct purger *p = arg;
    struct store_conn *c = NULL;
    struct purge_result r;
    struct err err = {0};
    (void)t;
    if (store_acquire(p->st, &c, &err) != FERRY_OK ||
        purge_run(c, p->retention_ms, &r, &err) != FERRY_OK)
        log_warn("purge_failed", json_pack("{s:s, s:s}", "msg", "purge failed", "error", err.msg));
    if (c && p->also)
        p->also(c, p->ctx);
    store_release(c);
}

int purger_start(struct store *st, int64_t interval_s, int64_t retention_ms,
                 void (*also)(struct store_conn *c, void *ctx), void *ctx, struct purger **out,
                 struct err *err)
{
    struct purger *p = xcalloc(1, sizeof(*p));
    *out = NULL;
    p->st = st;
    p->retention_ms = retention_ms;
    p->also = also;
    p->ctx = ctx;
    if (ticker_start("purge", interval_s, purge_tick, p, &p->ticker, err) != FERRY_OK ||
        !p->ticker) {
        free(p);
        return err->code == ERR_NONE ? FERRY_OK : FERRY_ERR;
    }
    *out = p;
    return FERRY_OK;
}

void purger_stop(struct purger *p)
{
    if (!p)
        return;
    ticker_stop(p->ticker);
    free(p);
}
