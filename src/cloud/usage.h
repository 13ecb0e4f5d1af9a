/* usage.h - what ferry has stored in each cloud provider (migration 14): every object it
 * puts (cloud API uploads, sessions) is recorded with its size, and one it deletes is
 * dropped, so the metrics' cloudStorageUsage is bytes stored, not bytes moved. */
#ifndef FERRY_CLOUD_USAGE_H
#define FERRY_CLOUD_USAGE_H

#include <stdint.h>

#include "cloud/cloud.h"
#include "store/store.h"

/* Records that key (size bytes) is now stored in container of provider p, replacing an
 * older record of the same key. */
int cloudusage_stored(struct store_conn *c, enum cloud_provider p, const char *container,
                      const char *key, uint64_t size, struct err *err);

/* Drops the record of key (a missing one is no error). */
int cloudusage_removed(struct store_conn *c, enum cloud_provider p, const char *container,
                       const char *key, struct err *err);

/* Bytes stored per provider, in cloud.h's order (s3, azure, local). */
int cloudusage_totals(struct store_conn *c, uint64_t out[CLOUD_N_PROVIDERS], struct err *err);

#endif
