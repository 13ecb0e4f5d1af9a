/* dbstate.h - database sync's memory in ferry's own database (migration 11): the pairs
 * of (source, target, table), each row's hashes as of the last sync, the rows a run has
 * written but not yet committed on the target (staged), and the conflicts found. */
#ifndef FERRY_DBSTATE_H
#define FERRY_DBSTATE_H

#include <stdbool.h>

#include <jansson.h>

#include "ferry.h"
#include "store/store.h"

/* Finds or records the pair; id gets its id. */
int dbstate_pair(struct store_conn *c, const char *source, const char *target, const char *tbl,
                 char id[40], struct err *err);

/* Whether the pair finished a sync (some of it) before: from then on a target row this
 * pair never copied, which differs from the source's, was added in the target since. */
int dbstate_synced(struct store_conn *c, const char *pair, bool *synced, struct err *err);

/* The hashes of key as of the pair's last sync; *found false when it never synced. */
int dbstate_lookup(struct store_conn *c, const char *pair, const char *key, char source_hash[65],
                   char target_hash[65], bool *found, struct err *err);

/* One staged row: hashes after this run's write, or both NULL for a delete. */
struct dbstate_staged {
    char *key;
    char source_hash[65], target_hash[65];
    bool deleted;
};

/* Writes staged rows of a run in one transaction. */
int dbstate_stage(struct store_conn *c, const char *run, const char *pair,
                  const struct dbstate_staged *rows, size_t n, struct err *err);
/* The target committed: the run's staged rows become the pair's state. */
int dbstate_commit(struct store_conn *c, const char *run, const char *pair, struct err *err);
/* The target rolled back: the run's staged rows are dropped. */
void dbstate_discard(struct store_conn *c, const char *run, const char *pair);

/* Records (or replaces) the conflict on key. */
int dbstate_conflict(struct store_conn *c, const char *run, const char *pair, const char *key,
                     json_t *source_row, json_t *target_row, const char *resolution,
                     struct err *err);

#endif
