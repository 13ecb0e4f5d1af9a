/* metrics.h - process-wide counters: requests by route and status, a latency
 * histogram, bytes in and out, and the sync totals of seed 003's /api/v1/metrics.
 * Lock-free atomics for totals; one mutex for the per-route table. */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include <stdint.h>

#include "util/buf.h"

#define METRICS_N_BUCKETS 12
extern const double metrics_bucket_bounds[METRICS_N_BUCKETS]; /* seconds */

struct metrics_totals {
    uint64_t requests;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t sync_ops; /* sync operations run (pushes, pulls, file and site syncs) */
    uint64_t sync_ok;
    uint64_t sync_failed;
    uint64_t sync_duration_ms_sum;
    uint64_t data_transferred; /* bytes moved by sync operations */
};

void metrics_cleanup(void);

/* Records one finished request. route is the matched pattern ("" for none). */
void metrics_request(const char *method, const char *route, int status, int64_t duration_us,
                     uint64_t bytes_in, uint64_t bytes_out);

/* Records one finished sync operation (later capabilities call this). */
void metrics_sync(int ok, int64_t duration_ms, uint64_t bytes);

struct metrics_totals metrics_totals(void);

/* Appends the Prometheus text exposition of the request counters and histogram. */
void metrics_prometheus(struct buf *out);

#endif
