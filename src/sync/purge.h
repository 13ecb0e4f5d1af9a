/* purge.h - removing tombstones no device needs any more: those every active device has
 * acknowledged past, and those older than the retention (and, past the retention,
 * idempotency records and resolved conflicts). The highest purged seq becomes
 * the purge horizon; a device whose cursor is below it must resync (feed_read says so). */
#ifndef FERRY_PURGE_H
#define FERRY_PURGE_H

#include <stdint.h>

#include "ferry.h"
#include "store/store.h"

struct purge_result {
    int64_t tombstones; /* tombstones removed */
    int64_t batches;    /* idempotency records removed */
    int64_t conflicts;  /* resolved conflicts removed */
    int64_t horizon;    /* the purge horizon after the run */
};

/* One purge in one transaction. A device counts as active when it was seen within the
 * retention. */
int purge_run(struct store_conn *c, int64_t retention_ms, struct purge_result *out,
              struct err *err);

/* A background thread running purge_run every interval_s seconds (first run after one
 * interval), then also(c, ctx) when given, for housekeeping of other modules. */
struct purger;
int purger_start(struct store *st, int64_t interval_s, int64_t retention_ms,
                 void (*also)(struct store_conn *c, void *ctx), void *ctx, struct purger **out,
                 struct err *err);
void purger_stop(struct purger *p);

#endif
