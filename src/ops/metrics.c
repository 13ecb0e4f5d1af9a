/* metrics.c - see metrics.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops/metrics.h"
#include "ferry.h"

const double metrics_bucket_bounds[METRICS_N_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
};

const char *const metrics_cloud_names[METRICS_N_CLOUD] = {"s3", "azure", "local"};

struct route_stat {
    char *method, *route;
    int status;
    uint64_t count;
};

struct hist {
    char *route;
    uint64_t buckets[METRICS_N_BUCKETS]; /* cumulative at export time */
    uint64_t count;
    double sum_s;
};

struct metrics {
    _Atomic uint64_t requests, bytes_in, bytes_out;
    _Atomic uint64_t sync_ops, sync_ok, sync_failed, sync_ms, data;
    _Atomic uint64_t cloud[METRICS_N_CLOUD];
    _Atomic uint64_t webhooks_ok, webhooks_failed;
    pthread_mutex_t lock;
    struct route_stat *stats;
    size_t n_stats, cap_stats;
    struct hist *hists;
    size_t n_hists, cap_hists;
};

struct metrics *metrics_open(void)
{
    struct metrics *m = xcalloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void metrics_close(struct metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_stats; i++) {
        free(m->stats[i].method);
        free(m->stats[i].route);
    }
    for (size_t i = 0; i < m->n_hists; i++)
        free(m->hists[i].route);
    free(m->stats);
    free(m->hists);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static struct route_stat *stat_for(struct metrics *m, const char *method, const char *route,
                                   int status)
{
    for (size_t i = 0; i < m->n_stats; i++) {
        struct route_stat *s = &m->stats[i];
        if (s->status == status && !strcmp(s->route, route) && !strcmp(s->method, method))
            return s;
    }
    if (m->n_stats == m->cap_stats) {
        m->cap_stats = m->cap_stats ? m->cap_stats * 2 : 32;
        m->stats = xrealloc(m->stats, m->cap_stats * sizeof(*m->stats));
    }
    struct route_stat *s = &m->stats[m->n_stats++];
    *s = (struct route_stat){xstrdup(method), xstrdup(route), status, 0};
    return s;
}

static struct hist *hist_for(struct metrics *m, const char *route)
{
    for (size_t i = 0; i < m->n_hists; i++)
        if (!strcmp(m->hists[i].route, route))
            return &m->hists[i];
    if (m->n_hists == m->cap_hists) {
        m->cap_hists = m->cap_hists ? m->cap_hists * 2 : 32;
        m->hists = xrealloc(m->hists, m->cap_hists * sizeof(*m->hists));
    }
    struct hist *h = &m->hists[m->n_hists++];
    memset(h, 0, sizeof(*h));
    h->route = xstrdup(route);
    return h;
}

void metrics_request(struct metrics *m, const char *method, const char *route, int status,
                     int64_t duration_us, uint64_t bytes_in, uint64_t bytes_out)
{
    double secs = (double)duration_us / 1e6;
    atomic_fetch_add(&m->requests, 1);
    atomic_fetch_add(&m->bytes_in, bytes_in);
    atomic_fetch_add(&m->bytes_out, bytes_out);
    pthread_mutex_lock(&m->lock);
    stat_for(m, method, route, status)->count++;
    struct hist *h = hist_for(m, route);
    for (int i = 0; i < METRICS_N_BUCKETS; i++)
        if (secs <= metrics_bucket_bounds[i]) {
            h->buckets[i]++;
            break;
        }
    h->count++;
    h->sum_s += secs;
    pthread_mutex_unlock(&m->lock);
}

void metrics_sync(struct metrics *m, int ok, int64_t duration_ms, uint64_t bytes)
{
    atomic_fetch_add(&m->sync_ops, 1);
    atomic_fetch_add(ok ? &m->sync_ok : &m->sync_failed, 1);
    atomic_fetch_add(&m->sync_ms, (uint64_t)(duration_ms > 0 ? duration_ms : 0));
    atomic_fetch_add(&m->data, bytes);
}

void metrics_cloud(struct metrics *m, unsigned provider, uint64_t bytes)
{
    if (provider < METRICS_N_CLOUD)
        atomic_fetch_add(&m->cloud[provider], bytes);
}

struct metrics_totals metrics_totals(struct metrics *m)
{
    struct metrics_totals t = {
        .requests = atomic_load(&m->requests),
        .bytes_in = atomic_load(&m->bytes_in),
        .bytes_out = atomic_load(&m->bytes_out),
        .sync_ops = atomic_load(&m->sync_ops),
        .sync_ok = atomic_load(&m->sync_ok),
        .sync_failed = atomic_load(&m->sync_failed),
        .sync_duration_ms_sum = atomic_load(&m->sync_ms),
        .data_transferred = atomic_load(&m->data),
    };
    for (unsigned i = 0; i < METRICS_N_CLOUD; i++)
        t.cloud_bytes[i] = atomic_load(&m->cloud[i]);
    return t;
}

/* Route patterns contain only path characters, but escape anyway: a label value must
 * not be able to break the exposition format. */
static void label_value(struct buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            buf_append(out, "\\", 1);
        if (*s == '\n')
            buf_puts(out, "\\n");
        else
            buf_append(out, s, 1);
    }
}

void metrics_webhook_delivery(struct metrics *m, int ok)
{
    if (m)
        atomic_fetch_add(ok ? &m->webhooks_ok : &m->webhooks_failed, 1);
}

void metrics_prometheus(struct metrics *m, struct buf *out)
{
    struct metrics_totals t = metrics_totals(m);
    buf_puts(out, "# HELP ferry_cloud_transferred_bytes_total Bytes moved to and from each cloud "
                  "provider.\n# TYPE ferry_cloud_transferred_bytes_total counter\n");
    for (unsigned i = 0; i < METRICS_N_CLOUD; i++)
        buf_printf(out, "ferry_cloud_transferred_bytes_total{provider=\"%s\"} %llu\n",
                   metrics_cloud_names[i], (unsigned long long)t.cloud_bytes[i]);
    pthread_mutex_lock(&m->lock);
    buf_puts(out, "# HELP ferry_http_requests_total HTTP requests by route and status.\n"
                  "# TYPE ferry_http_requests_total counter\n");
    for (size_t i = 0; i < m->n_stats; i++) {
        buf_printf(out, "ferry_http_requests_total{method=\"%s\",route=\"", m->stats[i].method);
        label_value(out, m->stats[i].route);
        buf_printf(out, "\",status=\"%d\"} %llu\n", m->stats[i].status,
                   (unsigned long long)m->stats[i].count);
    }
    buf_puts(out, "# HELP ferry_http_request_duration_seconds Time to answer a request.\n"
                  "# TYPE ferry_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < m->n_hists; i++) {
        const struct hist *h = &m->hists[i];
        uint64_t cumulative = 0;
        for (int b = 0; b < METRICS_N_BUCKETS; b++) {
            cumulative += h->buckets[b];
            buf_puts(out, "ferry_http_request_duration_seconds_bucket{route=\"");
            label_value(out, h->route);
            buf_printf(out, "\",le=\"%g\"} %llu\n", metrics_bucket_bounds[b],
                       (unsigned long long)cumulative);
        }
        buf_puts(out, "ferry_http_request_duration_seconds_bucket{route=\"");
        label_value(out, h->route);
        buf_printf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
        buf_puts(out, "ferry_http_request_duration_seconds_sum{route=\"");
        label_value(out, h->route);
        buf_printf(out, "\"} %.6f\n", h->sum_s);
        buf_puts(out, "ferry_http_request_duration_seconds_count{route=\"");
        label_value(out, h->route);
        buf_printf(out, "\"} %llu\n", (unsigned long long)h->count);
    }
    pthread_mutex_unlock(&m->lock);
    buf_printf(out,
               "# HELP ferry_http_request_bytes_total Bytes of request bodies received.\n"
               "# TYPE ferry_http_request_bytes_total counter\n"
               "ferry_http_request_bytes_total %llu\n"
               "# HELP ferry_http_response_bytes_total Bytes of response bodies sent.\n"
               "# TYPE ferry_http_response_bytes_total counter\n"
               "ferry_http_response_bytes_total %llu\n",
               (unsigned long long)t.bytes_in, (unsigned long long)t.bytes_out);
    buf_printf(out,
               "# HELP ferry_sync_operations_total Sync operations run (pushes, pulls, directory,"
               " database and session syncs) by result.\n"
               "# TYPE ferry_sync_operations_total counter\n"
               "ferry_sync_operations_total{result=\"success\"} %llu\n"
               "ferry_sync_operations_total{result=\"failure\"} %llu\n"
               "# HELP ferry_sync_duration_milliseconds_total Time spent in sync operations.\n"
               "# TYPE ferry_sync_duration_milliseconds_total counter\n"
               "ferry_sync_duration_milliseconds_total %llu\n"
               "# HELP ferry_sync_transferred_bytes_total Bytes moved by sync operations.\n"
               "# TYPE ferry_sync_transferred_bytes_total counter\n"
               "ferry_sync_transferred_bytes_total %llu\n",
               (unsigned long long)t.sync_ok, (unsigned long long)t.sync_failed,
               (unsigned long long)t.sync_duration_ms_sum, (unsigned long long)t.data_transferred);
    buf_printf(out,
               "# HELP ferry_webhook_deliveries_total Webhook delivery attempts by outcome.\n"
               "# TYPE ferry_webhook_deliveries_total counter\n"
               "ferry_webhook_deliveries_total{result=\"ok\"} %llu\n"
               "ferry_webhook_deliveries_total{result=\"failed\"} %llu\n",
               (unsigned long long)atomic_load(&m->webhooks_ok),
               (unsigned long long)atomic_load(&m->webhooks_failed));
}
