/* dbsync.h - database sync: copies tables from one database to another (SQLite or
 * PostgreSQL, either way), upserting rows by primary key, carrying deletes, creating a
 * missing target table with mapped types. It walks both tables in key order a page at a
 * time, so no table is ever whole in memory. Per pair of databases and table, ferry's own
 * database keeps a hash of each row on both sides as of the last sync (migration 11): a
 * row unchanged on both sides is not copied again, and a row changed in the target since
 * is a conflict, recorded and kept unless the policy says overwrite. */
#ifndef FERRY_DBSYNC_H
#define FERRY_DBSYNC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"
#include "store/store.h"

#define DBSYNC_MAX_ENTITIES 100

enum dbsync_policy {
    DBSYNC_KEEP_TARGET, /* "skip": a conflicting target row is kept (the default) */
    DBSYNC_OVERWRITE,   /* "overwrite": the source row wins */
};

struct dbsync_progress {
    const char *entity;
    int64_t rows_done, rows_total; /* of this entity's source rows */
    int64_t entities_done, entities_total;
    int64_t changes, bytes;
};

struct dbsync_options {
    const char *source_name, *target_name; /* the pair, as configured locations */
    const char *source_url, *target_url;   /* store URLs, opened without migrations */
    const char *const *entities;           /* tables; NULL: every table of the source */
    size_t n_entities;
    bool use_transactions; /* each entity all or nothing (else each page of writes) */
    enum dbsync_policy policy;
    const char *run_id;       /* this run (a job id), for staged state and conflicts */
    struct store_conn *state; /* ferry's own database: pair state and conflicts */
    void (*progress)(void *ctx, const struct dbsync_progress *p);
    void *ctx;
    const atomic_bool *stop; /* set: the run ends early, as failed */
};

struct dbsync_result {
    int64_t inserted, updated, deleted, unchanged, conflicts, bytes;
    json_t *errors;       /* strings, one per failed entity */
    json_t *conflicts_at; /* {entity, key, reason, resolution}, the first DBSYNC_MAX_LISTED */
};
#define DBSYNC_MAX_LISTED 100

/* Parses "skip" (or "manual") and "overwrite"; ERR_INVALID otherwise. */
int dbsync_parse_policy(const char *name, enum dbsync_policy *out, struct err *err);

/* Runs the sync. An entity that fails is named in r->errors and the others still run;
 * FERRY_ERR (with err) only when a database cannot be opened or ferry's own state cannot
 * be written. The caller releases r with dbsync_result_clear. */
int dbsync_run(const struct dbsync_options *o, struct dbsync_result *r, struct err *err);
void dbsync_result_clear(struct dbsync_result *r);

/* The conflicts recorded for a pair (all tables, or one), newest first, at most limit. */
int dbsync_list_conflicts(struct store_conn *c, const char *source, const char *target,
                          const char *entity, int64_t limit, json_t **out, struct err *err);

#endif
