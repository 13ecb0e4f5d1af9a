/* push.h - applying a batch of operations (insert, update, upsert, delete) from a device
 * in one transaction: all or nothing, idempotent by batch id, with the table's conflict
 * policy deciding when an operation's base_version is behind. */
#ifndef FERRY_PUSH_H
#define FERRY_PUSH_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "sync/tables.h"

struct watch_wake;

struct push_request {
    const char *origin;    /* namespace of batch ids: "device:<id>", "legacy:<device_id>" */
    const char *batch_id;  /* NULL: the batch is not idempotent */
    const char *device_id; /* recorded as the changes' origin; NULL for none */
    const char *user_id;   /* recorded on conflicts */
    const char *scope;     /* tables the credential may touch (comma list); NULL: all */
    /* Whose rows it may write under the tables' sync rules; NULL: any (ferry's own). */
    const struct rules_caller *caller;
    bool lenient_missing; /* cloud-sync-api: update of a missing row changes nothing */
    bool want_results;    /* per-operation results with versions */
    json_t *ops;          /* array of operation objects */
    int64_t max_ops;
    /* Runs inside the transaction after the operations, before commit (resolving a
     * conflict marks it resolved there); a failure rolls everything back. */
    int (*in_txn)(struct store_conn *c, void *ctx, struct err *err);
    /* Runs inside the transaction, after the change log's lock, before the operations:
     * a check that what the operations were built from has not changed. */
    int (*before_ops)(struct store_conn *c, void *ctx, struct err *err);
    void *ctx;
    /* When not NULL, filled once the batch is committed (not for a replayed answer) with
     * what the batch changed, for watch_wake (sync/watch.h); the caller calls it. */
    struct watch_wake *wake;
};

/* Validates every operation, then applies them in one transaction. On success *result is
 * {"batchId","applied","unchanged","skipped","conflicts":[...],"results":[...],"cursor"}
 * (owned by the caller) and *replayed tells whether it came from an earlier run of the
 * same batch. On failure nothing is applied and err names the operation ("operations[3]:
 * ..."): ERR_INVALID for bad input, ERR_FORBIDDEN for a table out of scope (or read-only,
 * or a row the sync rules keep from the caller: another user's row, or one that would
 * become another user's), ERR_NOT_FOUND
 * for an update of a missing row, ERR_CONFLICT for an insert over a different row,
 * ERR_TOO_LARGE for too many operations. */
int push_apply(struct store_conn *c, const struct synced_set *set, const struct push_request *r,
               json_t **result, bool *replayed, struct err *err);

/* Whether a comma-separated scope admits table (NULL scope admits all). */
bool push_scope_allows(const char *scope, const char *table);

#endif
