/* prune.h - forgetting versions by a retention policy and reclaiming the space no
 * remaining version uses (whole packs removed, partly used packs repacked). The newest
 * version is never forgotten. */
#ifndef FERRY_BACKUP_PRUNE_H
#define FERRY_BACKUP_PRUNE_H

#include <stdint.h>

#include <jansson.h>

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

#endif
