/* dbstate.c - see dbstate.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbsync/dbstate.h"
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

int dbstate_pair(struct store_conn *c, const char *source, const char *target, const char *tbl,
                 char id[40], struct err *err)
{
    struct store_val v[] = {sv_text(source), sv_text(target), sv_text(tbl), sv_null()};
    struct store_rows *rows = NULL;
    char fresh[33];
    int rc = FERRY_ERR, got;
    crypto_random_hex(fresh, 16);
    v[3] = sv_text(fresh);
    /* two runs may record the same new pair at once: the loser's insert does nothing */
    if (store_run(c,
                  "INSERT INTO ferry_dbsync_pairs(id, source, target, tbl) VALUES ($4, $1, $2, $3)"
                  " ON CONFLICT (source, target, tbl) DO NOTHING",
                  v, 4, NULL, err) != FERRY_OK ||
        store_query(c,
                    "SELECT id FROM ferry_dbsync_pairs WHERE source = $1 AND target = $2"
                    " AND tbl = $3",
                    v, 3, &rows, err) != FERRY_OK)
        goto out;
    got = store_rows_next(rows, err);
    if (got == 1) {
        snprintf(id, 40, "%s", store_rows_text(rows, 0));
        rc = FERRY_OK;
    } else if (got == 0) {
        err_set(err, ERR_DATABASE, "the sync pair could not be recorded");
    }
out:
    store_rows_free(rows);
    return rc;
}

int dbstate_synced(struct store_conn *c, const char *pair, bool *synced, struct err *err)
{
    struct store_val v[] = {sv_text(pair)};
    int64_t at = 0;
    bool found = false;
    int rc = store_query_int(c, "SELECT last_sync_at FROM ferry_dbsync_pairs WHERE id = $1", v, 1,
                             &at, &found, err);
    *synced = rc == FERRY_OK && found && at > 0;
    return rc;
}

int dbstate_lookup(struct store_conn *c, const char *pair, const char *key, char source_hash[65],
                   char target_hash[65], bool *found, struct err *err)
{
    struct store_val v[] = {sv_text(pair), sv_text(key)};
    struct store_rows *rows = NULL;
    *found = false;
    if (store_query(c,
                    "SELECT source_hash, target_hash FROM ferry_dbsync_rows"
                    " WHERE pair_id = $1 AND row_key = $2",
                    v, 2, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    int got = store_rows_next(rows, err);
    if (got == 1) {
        snprintf(source_hash, 65, "%s", store_rows_text(rows, 0));
        snprintf(target_hash, 65, "%s", store_rows_text(rows, 1));
        *found = true;
    }
    store_rows_free(rows);
    return got < 0 ? FERRY_ERR : FERRY_OK;
}

int dbstate_stage(struct store_conn *c, const char *run, const char *pair,
                  const struct dbstate_staged *rows, size_t n, struct err *err)
{
    int rc = FERRY_ERR;
    if (!n)
        return FERRY_OK;
    if (store_begin(c, err) != FERRY_OK)
        return FERRY_ERR;
    for (size_t i = 0; i < n; i++) {
        struct store_val v[] = {sv_text(run), sv_text(pair), sv_text(rows[i].key),
                                rows[i].deleted ? sv_null() : sv_text(rows[i].source_hash),
                                rows[i].deleted ? sv_null() : sv_text(rows[i].target_hash)};
        if (store_run(c,
                      "INSERT INTO ferry_dbsync_staged(run_id, pair_id, row_key, source_hash,"
                      " target_hash) VALUES ($1, $2, $3, $4, $5)"
                      " ON CONFLICT (run_id, pair_id, row_key) DO UPDATE SET"
                      " source_hash = excluded.source_hash, target_hash = excluded.target_hash",
                      v, 5, NULL, err) != FERRY_OK)
            goto out;
    }
    rc = store_commit(c, err);
out:
    store_rollback(c);
    return rc;
}

int dbstate_commit(struct store_conn *c, const char *run, const char *pair, struct err *err)
{
    struct store_val v[] = {sv_text(run), sv_text(pair), sv_int(time_now_ms())};
    int rc = FERRY_ERR;
    if (store_begin(c, err) != FERRY_OK)
        return FERRY_ERR;
    /* SQLite needs the WHERE for INSERT ... SELECT ... ON CONFLICT to parse */
    if (store_run(c,
                  "INSERT INTO ferry_dbsync_rows(pair_id, row_key, source_hash, target_hash)"
                  " SELECT pair_id, row_key, source_hash, target_hash FROM ferry_dbsync_staged"
                  " WHERE run_id = $1 AND pair_id = $2 AND source_hash IS NOT NULL"
                  " ON CONFLICT (pair_id, row_key) DO UPDATE SET"
                  " source_hash = excluded.source_hash, target_hash = excluded.target_hash",
                  v, 2, NULL, err) != FERRY_OK ||
        store_run(c,
                  "DELETE FROM ferry_dbsync_rows WHERE pair_id = $2 AND row_key IN"
                  " (SELECT row_key FROM ferry_dbsync_staged WHERE run_id = $1 AND pair_id = $2"
                  " AND source_hash IS NULL)",
                  v, 2, NULL, err) != FERRY_OK ||
        store_run(c, "DELETE FROM ferry_dbsync_staged WHERE run_id = $1 AND pair_id = $2", v, 2,
                  NULL, err) != FERRY_OK ||
        store_run(c, "UPDATE ferry_dbsync_pairs SET last_sync_at = $2 WHERE id = $1", v + 1, 2,
                  NULL, err) != FERRY_OK)
        goto out;
    rc = store_commit(c, err);
out:
    store_rollback(c);
    return rc;
}

void dbstate_discard(struct store_conn *c, const char *run, const char *pair)
{
    struct store_val v[] = {sv_text(run), sv_text(pair)};
    store_rollback(c);
    store_run(c, "DELETE FROM ferry_dbsync_staged WHERE run_id = $1 AND pair_id = $2", v, 2, NULL,
              NULL);
}

int dbstate_conflict(struct store_conn *c, const char *run, const char *pair, const char *key,
                     json_t *source_row, json_t *target_row, const char *resolution,
                     struct err *err)
{
    char *src = source_row ? jsonutil_to_string(source_row) : NULL;
    char *tgt = target_row ? jsonutil_to_string(target_row) : NULL;
    struct store_val v[] = {sv_text(pair),       sv_text(key), sv_text(src),         sv_text(tgt),
                            sv_text(resolution), sv_text(run), sv_int(time_now_ms())};
    int rc = store_run(c,
                       "INSERT INTO ferry_dbsync_conflicts(pair_id, row_key, source_row,"
                       " target_row, resolution, job_id, detected_at)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7)"
                       " ON CONFLICT (pair_id, row_key) DO UPDATE SET"
                       " source_row = excluded.source_row, target_row = excluded.target_row,"
                       " resolution = excluded.resolution, job_id = excluded.job_id,"
                       " detected_at = excluded.detected_at",
                       v, 7, NULL, err);
    free(src);
    free(tgt);
    return rc;
}
