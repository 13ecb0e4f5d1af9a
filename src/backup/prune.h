/* prune.h - forgetting versions by a retention policy and reclaiming the space no
 * remaining version uses (whole packs removed, partly used packs repacked). The newest
 * version is never forgotten. */
#ifndef FERRY_BACKUP_PRUNE_H
#define FERRY_BACKUP_PRUNE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "backup/pack.h"
#include "backup/repo.h"
#include "ferry.h"

/* -1 leaves a rule out; a version is kept when any rule keeps it. */
struct prune_policy {
    int keep_last;      /* the newest N */
    int keep_daily;     /* the newest of each of the last N days that have versions (UTC) */
    int keep_weekly;    /* ... ISO weeks */
    int keep_monthly;   /* ... months */
    int retention_days; /* every version made in the last N days (EonaCat.Sync's field) */
};

struct prune_result {
    size_t deleted, kept;
    int64_t freed_bytes;
    json_t *deleted_ids; /* array of version ids */
};

void prune_result_cleanup(struct prune_result *res);

/* Prunes under r's exclusive lock. ERR_INVALID when the policy has no rule. */
int prune_run(struct repo *r, const struct prune_policy *p, int64_t now_ms,
              struct prune_result *res, struct err *err);

/* Brings the packs marked in needed (by index of ix->packs) into the repository folder
 * before prune reads them; FERRY_ERR (with err) stops the prune before it changes a pack. */
typedef int (*prune_fetch_fn)(void *ctx, const struct pack_index *ix, const bool *needed,
                              struct err *err);

/* prune_run for a repository whose folder holds every index but only some packs (a cloud
 * repository's cache): the packs it must rewrite (partly used) are fetched first; a pack
 * no remaining version uses is dropped unread, one every chunk of which is used is left
 * alone, and freed_bytes counts an absent pack by its chunks' stored sizes. */
int prune_run_fetching(struct repo *r, const struct prune_policy *p, int64_t now_ms,
                       prune_fetch_fn fetch, void *ctx, struct prune_result *res, struct err *err);

#endif
