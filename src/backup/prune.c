/* prune.c - see prune.h. Order makes it crash-safe: manifests go first (a forgotten
 * version is gone, nothing else changes), then repacked chunks are written and made
 * durable with their indexes, and only then the old indexes and packs are removed. A crash
 * anywhere leaves duplicates or orphan packs, never a version without its chunks. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup/check.h"
#include "backup/fsio.h"
#include "backup/pack.h"
#include "backup/prune.h"
#include "backup/snapshot.h"
#include "util/crashpoint.h"

enum { RULE_DAILY, RULE_WEEKLY, RULE_MONTHLY, N_RULES };

void prune_result_cleanup(struct prune_result *res)
{
    json_decref(res->deleted_ids);
    memset(res, 0, sizeof(*res));
}

static void bucket(int rule, int64_t ms, char out[16])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16,
             rule == RULE_DAILY    ? "%Y-%m-%d"
             : rule == RULE_WEEKLY ? "%G-%V"
                                   : "%Y-%m",
             &tm);
}

/* keep[i] for list (oldest first) by the policy; the newest is always kept. */
static void decide(const struct prune_policy *p, const struct snapshot *list, size_t n,
                   int64_t now_ms, bool *keep)
{
    const int limits[N_RULES] = {p->keep_daily, p->keep_weekly, p->keep_monthly};
    int counts[N_RULES] = {0};
    char last[N_RULES][16] = {{0}};
    size_t rank = 0;
    for (size_t i = n; i-- > 0; rank++) {
        keep[i] = rank == 0 || (p->keep_last > 0 && rank < (size_t)p->keep_last) ||
                  (p->retention_days >= 0 &&
                   list[i].created_ms >= now_ms - (int64_t)p->retention_days * 86400000);
        for (int rule = 0; rule < N_RULES; rule++) {
            char b[16];
            bucket(rule, list[i].created_ms, b);
            if (limits[rule] > 0 && counts[rule] < limits[rule] && strcmp(b, last[rule])) {
                keep[i] = true;
                counts[rule]++;
                memcpy(last[rule], b, sizeof(b));
            }
        }
    }
}

/* Adds every chunk of a kept version to used. */
static int mark_used(struct repo *r, const char *id, struct pack_index *used, struct err *err)
{
    struct snapshot s;
    if (snapshot_load(r->path, r->key, id, &s, err) != FERRY_OK)
        return FERRY_ERR;
    for (size_t e = 0; e < s.n_entries; e++)
        for (size_t c = 0; c < s.entries[e].n_chunks; c++) {
            struct chunk_ref ref = {0};
            memcpy(ref.hash, s.entries[e].chunks[c], 32);
            pack_index_add(used, "used", &ref);
        }
    snapshot_clear(&s);
    return FERRY_OK;
}

static int forget(struct repo *r, const struct snapshot *list, size_t n, const bool *keep,
                  struct prune_result *res, struct pack_index *used, struct err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (keep[i]) {
            res->kept++;
            if (mark_used(r, list[i].id, used, err) != FERRY_OK)
                return FERRY_ERR;
            continue;
        }
        if (snapshot_remove(r->path, list[i].id, err) != FERRY_OK)
            return FERRY_ERR;
        CRASH_AT("backup_prune_forgot");
        res->deleted++;
        json_array_append_new(res->deleted_ids, json_string(list[i].id));
    }
    return FERRY_OK;
}

/* Where a cloud repository's packs come from (fn NULL: every pack is in the folder). */
struct fetcher {
    prune_fetch_fn fn;
    void *ctx;
};

/* A pack's size: its file's, or for a pack absent from the folder (a cloud repository's
 * cache) the stored sizes of its chunks. */
static int64_t pack_size(const char *path, uint64_t stored)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : (int64_t)stored;
}

/* Has f fetch the packs that are partly used: the only ones a prune reads. */
static int fetch_partly_used(const struct fetcher *f, const struct pack_index *ix, const bool *drop,
                             const uint64_t *used_bytes, struct err *err)
{
    if (!f->fn)
        return FERRY_OK;
    bool *partly = xcalloc(ix->n_packs + 1, sizeof(bool));
    for (size_t p = 0; p < ix->n_packs; p++)
        partly[p] = drop[p] && used_bytes[p] > 0;
    int rc = f->fn(f->ctx, ix, partly, err);
    free(partly);
    return rc;
}

/* Copies the used chunks of partly used packs into new packs; marks in *drop every pack
 * that holds any unused chunk (those go once the copies are durable). */
static int repack(struct repo *r, struct pack_index *ix, const struct pack_index *used, bool *drop,
                  const struct fetcher *f, struct err *err)
{
    uint64_t *used_bytes = xcalloc(ix->n_packs + 1, sizeof(uint64_t));
    uint64_t *all_bytes = xcalloc(ix->n_packs + 1, sizeof(uint64_t));
    size_t n_refs = ix->n_refs, n_packs = ix->n_packs;
    struct pack_reader *reader = pack_reader_new(r->path, r->key, ix);
    struct pack_writer *writer = pack_writer_new(r->path, r->key, ix);
    int rc = FERRY_ERR;
    for (size_t i = 0; i < n_refs; i++) {
        all_bytes[ix->refs[i].pack] += ix->refs[i].stored_len;
        if (pack_index_find(used, ix->refs[i].hash))
            used_bytes[ix->refs[i].pack] += ix->refs[i].stored_len;
    }
    for (size_t p = 0; p < n_packs; p++)
        drop[p] = used_bytes[p] < all_bytes[p];
    if (fetch_partly_used(f, ix, drop, used_bytes, err) != FERRY_OK)
        goto out;
    for (size_t i = 0; i < n_refs; i++) {
        struct chunk_ref ref = ix->refs[i];
        const uint8_t *stored = NULL;
        if (!drop[ref.pack] || !pack_index_find(used, ref.hash))
            continue;
        if (pack_reader_stored(reader, &ref, &stored, err) != FERRY_OK ||
            pack_writer_copy(writer, &ref, stored, err) != FERRY_OK)
            goto out;
    }
    rc = pack_writer_flush(writer, err);
out:
    pack_writer_free(writer);
    pack_reader_free(reader);
    free(used_bytes);
    free(all_bytes);
    return rc;
}

static int reclaim(struct repo *r, const struct pack_index *used, const struct fetcher *f,
                   struct prune_result *res, struct err *err)
{
    struct pack_index ix;
    int rc = FERRY_ERR;
    pack_index_init(&ix);
    if (pack_index_load(r->path, r->key, &ix, NULL, NULL, err) != FERRY_OK)
        goto out;
    size_t n_old = ix.n_packs;
    bool *drop = xcalloc(n_old + 1, sizeof(bool));
    uint64_t *stored = xcalloc(n_old + 1, sizeof(uint64_t));
    int64_t before = 0;
    for (size_t i = 0; i < ix.n_refs; i++)
        stored[ix.refs[i].pack] += ix.refs[i].stored_len;
    for (size_t p = 0; p < n_old; p++) {
        char *path = pack_path(r->path, ix.packs[p]);
        before += pack_size(path, stored[p]);
        free(path);
    }
    if (repack(r, &ix, used, drop, f, err) != FERRY_OK) {
        free(drop);
        free(stored);
        goto out;
    }
    CRASH_AT("backup_prune_repacked"); /* old and new copies both indexed */
    for (size_t p = 0; p < n_old; p++)
        if (drop[p]) {
            char *idx = pack_index_path(r->path, ix.packs[p]);
            unlink(idx);
            free(idx);
        }
    CRASH_AT("backup_prune_unindexed"); /* old packs are orphans now */
    for (size_t p = 0; p < n_old; p++) {
        char *path = pack_path(r->path, ix.packs[p]);
        if (drop[p])
            unlink(path);
        else
            before -= pack_size(path, stored[p]);
        free(path);
    }
    for (size_t p = n_old; p < ix.n_packs; p++) {
        char *path = pack_path(r->path, ix.packs[p]);
        before -= pack_size(path, 0);
        free(path);
    }
    res->freed_bytes = before;
    free(stored);
    free(drop);
    rc = fsio_sync_dir(r->path, 1, err);
out:
    pack_index_cleanup(&ix);
    return rc;
}

int prune_run(struct repo *r, const struct prune_policy *p, int64_t now_ms,
              struct prune_result *res, struct err *err)
{
    return prune_run_fetching(r, p, now_ms, NULL, NULL, res, err);
}

int prune_run_fetching(struct repo *r, const struct prune_policy *p, int64_t now_ms,
                       prune_fetch_fn fetch, void *ctx, struct prune_result *res, struct err *err)
{
    const struct fetcher f = {fetch, ctx};
    struct snapshot *list = NULL;
    struct pack_index used;
    size_t n = 0;
    bool *keep = NULL;
    int rc = FERRY_ERR;
    memset(res, 0, sizeof(*res));
    res->deleted_ids = json_array();
    pack_index_init(&used);
    if (p->keep_last < 0 && p->keep_daily < 0 && p->keep_weekly < 0 && p->keep_monthly < 0 &&
        p->retention_days < 0)
        return err_set(err, ERR_INVALID,
                       "say which versions to keep: retentionDays, keepLast, keepDaily, "
                       "keepWeekly or keepMonthly");
    if (repo_lock(r, true, REPO_LOCK_WAIT_MS, err) != FERRY_OK ||
        check_remove_leftovers(r, NULL, err) != FERRY_OK ||
        snapshot_list(r->path, r->key, &list, &n, err) != FERRY_OK)
        goto out;
    keep = xcalloc(n + 1, sizeof(bool));
    decide(p, list, n, now_ms, keep);
    if (forget(r, list, n, keep, res, &used, err) != FERRY_OK)
        goto out;
    rc = reclaim(r, &used, &f, res, err);
out:
    free(keep);
    snapshot_list_free(list, n);
    pack_index_cleanup(&used);
    repo_unlock(r);
    return rc;
}
