/* metrics.h - the server's counters: requests by route and status, a latency histogram,
 * bytes in and out, and the sync totals of EonaCat.Sync's /api/v1/metrics. Lock-free atomics
 * for totals; one mutex for the per-route table. The app opens one and holds it. */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include <stdint.h>

#include "util/buf.h"

#define METRICS_N_BUCKETS 12
/* Cloud providers, in cloud/cloud.h's order (s3, azure, local), and their names. */
#define METRICS_N_CLOUD 3
extern const char *const metrics_cloud_names[METRICS_N_CLOUD];
extern const double metrics_bucket_bounds[METRICS_N_BUCKETS]; /* seconds */

struct metrics_totals {
    uint64_t requests;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t sync_ops; /* sync operations run (pushes, pulls, directory, database, session) */
    uint64_t sync_ok;
    uint64_t sync_failed;
    uint64_t sync_duration_ms_sum;
    uint64_t data_transferred;             /* bytes moved by sync operations */
    uint64_t cloud_bytes[METRICS_N_CLOUD]; /* bytes to and from each cloud provider */
};

struct metrics;

struct metrics *metrics_open(void);
/* Frees the counters; metrics_close(NULL) does nothing. */
void metrics_close(struct metrics *m);

/* Records one finished request. route is the matched pattern ("" for none). */
void metrics_request(struct metrics *m, const char *method, const char *route, int status,
                     int64_t duration_us, uint64_t bytes_in, uint64_t bytes_out);

/* Records one finished sync operation: ok when it succeeded without errors, bytes it
 * moved. */
void metrics_sync(struct metrics *m, int ok, int64_t duration_ms, uint64_t bytes);

/* Records bytes moved to or from cloud provider (an index below METRICS_N_CLOUD). */
void metrics_cloud(struct metrics *m, unsigned provider, uint64_t bytes);
/* Records one webhook delivery attempt (webhooks/dispatch.c); m may be NULL. */
void metrics_webhook_delivery(struct metrics *m, int ok);

struct metrics_totals metrics_totals(struct metrics *m);

/* Appends the Prometheus text exposition of the request counters and histogram, and the
 * sync counters /api/v1/metrics reports. */
void metrics_prometheus(struct metrics *m, struct buf *out);

#endif
