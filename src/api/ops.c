/* ops.c - health, metrics and the OpenAPI document: cloud-sync-api's GET /health, EonaCat.Sync's
 * GET /api/v1/health and /api/v1/metrics, Prometheus at /metrics. */
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "api/api.h"
#include "app.h"
#include "cloud/usage.h"
#include "jobs/jobs.h"
#include "ops/metrics.h"
#include "util/timeutil.h"

/* Below either threshold the data dir's storage is reported "low". */
#define STORAGE_LOW_BYTES (512LL * 1024 * 1024)
#define STORAGE_LOW_PERCENT 5
#define MEMORY_LOW_PERCENT 10

extern const char ferry_openapi_json[];
extern const size_t ferry_openapi_json_len;

static int legacy_health(struct request *req, struct err *err)
{
    (void)err;
    http_reply_json(req, HTTP_OK, json_pack("{s:s}", "status", "Sync API running"));
    return FERRY_OK;
}

static const char *storage_state(const char *dir)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0)
        return "error";
    long long free_bytes = (long long)vfs.f_bavail * (long long)vfs.f_frsize;
    long long total = (long long)vfs.f_blocks * (long long)vfs.f_frsize;
    if (free_bytes < STORAGE_LOW_BYTES ||
        (total > 0 && free_bytes * 100 / total < STORAGE_LOW_PERCENT))
        return "low";
    return "available";
}

static const char *memory_state(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long long total = 0, avail = -1;
    if (!f)
        return "normal";
    while (fgets(line, sizeof(line), f)) {
        sscanf(line, "MemTotal: %lld kB", &total);
        sscanf(line, "MemAvailable: %lld kB", &avail);
    }
    fclose(f);
    if (total > 0 && avail >= 0 && avail * 100 / total < MEMORY_LOW_PERCENT)
        return "low";
    return "normal";
}

static int v1_health(struct request *req, struct err *err)
{
    char iso[32];
    bool db_ok = store_ping(req->app->store, err) == FERRY_OK;

    time_iso8601(time_now_ms(), 0, iso);
    json_t *body =
        json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s}}", "status", db_ok ? "healthy" : "unhealthy",
                  "timestamp", iso, "version", FERRY_VERSION, "details", "database",
                  db_ok ? "connected" : "error", "storage", storage_state(req->app->cfg->data_dir),
                  "memory", memory_state());
    http_reply_json(req, db_ok ? HTTP_OK : http_status_of(ERR_UNAVAILABLE), body);
    return FERRY_OK;
}

/* Bytes ferry has stored in each provider (cloud/usage.h); *ok false when the database
 * could not say (everything is 0 then). */
static void stored_bytes(struct store *st, uint64_t out[CLOUD_N_PROVIDERS], bool *ok)
{
    struct store_conn *c = NULL;
    *ok = store_acquire(st, &c, NULL) == FERRY_OK && cloudusage_totals(c, out, NULL) == FERRY_OK;
    if (!*ok)
        memset(out, 0, CLOUD_N_PROVIDERS * sizeof(*out));
    store_release(c);
}

/* The job gauges, left out when the database cannot say (ferry_store_up tells why). */
static void job_gauges(struct store *st, struct buf *out)
{
    struct store_conn *c = NULL;
    struct buf lines;
    buf_init(&lines);
    if (store_acquire(st, &c, NULL) == FERRY_OK && jobs_prometheus(c, &lines, NULL) == FERRY_OK &&
        lines.len)
        buf_append(out, lines.data, lines.len);
    store_release(c);
    buf_cleanup(&lines);
}

static int v1_metrics(struct request *req, struct err *err)
{
    uint64_t stored[CLOUD_N_PROVIDERS];
    bool ok;
    struct metrics_totals t = metrics_totals(req->app->metrics);
    json_int_t average = t.sync_ops ? (json_int_t)(t.sync_duration_ms_sum / t.sync_ops) : 0;
    stored_bytes(req->app->store, stored, &ok);
    if (!ok)
        return err_set(err, ERR_DATABASE, "the bytes stored in cloud providers cannot be read");
    /* Bytes stored in the seed's two providers (the local one is in /metrics). */
    json_t *cloud = json_pack("{s:I, s:I}", "azure", (json_int_t)stored[CLOUD_AZURE], "s3",
                              (json_int_t)stored[CLOUD_S3]);
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}", "totalSyncOperations",
                              (json_int_t)t.sync_ops, "successfulSyncs", (json_int_t)t.sync_ok,
                              "failedSyncs", (json_int_t)t.sync_failed, "averageSyncDuration",
                              average, "totalDataTransferred", (json_int_t)t.data_transferred,
                              "cloudStorageUsage", cloud));
    return FERRY_OK;
}

static int prometheus(struct request *req, struct err *err)
{
    struct buf out;
    int size = 0, in_use = 0;
    uint64_t commits = 0, writes = 0;
    bool db_ok = store_ping(req->app->store, err) == FERRY_OK;

    uint64_t stored[CLOUD_N_PROVIDERS];
    bool stored_ok;
    buf_init(&out);
    metrics_prometheus(req->app->metrics, &out);
    stored_bytes(req->app->store, stored, &stored_ok);
    if (stored_ok) {
        buf_puts(&out, "# HELP ferry_cloud_stored_bytes Bytes ferry has stored in each cloud "
                       "provider.\n# TYPE ferry_cloud_stored_bytes gauge\n");
        for (int i = 0; i < CLOUD_N_PROVIDERS; i++)
            buf_printf(&out, "ferry_cloud_stored_bytes{provider=\"%s\"} %llu\n",
                       cloud_provider_name((enum cloud_provider)i), (unsigned long long)stored[i]);
    }
    job_gauges(req->app->store, &out);
    store_pool_stats(req->app->store, &size, &in_use);
    store_write_stats(req->app->store, &commits, &writes);
    buf_printf(&out,
               "# HELP ferry_store_up Whether the database answered a ping.\n"
               "# TYPE ferry_store_up gauge\nferry_store_up{backend=\"%s\"} %d\n"
               "# HELP ferry_store_pool_connections Connections in the store pool.\n"
               "# TYPE ferry_store_pool_connections gauge\n"
               "ferry_store_pool_connections %d\n"
               "# HELP ferry_store_pool_in_use Connections handed out.\n"
               "# TYPE ferry_store_pool_in_use gauge\nferry_store_pool_in_use %d\n"
               "# HELP ferry_store_write_commits_total Pushes' transactions committed.\n"
               "# TYPE ferry_store_write_commits_total counter\n"
               "ferry_store_write_commits_total %llu\n"
               "# HELP ferry_store_write_batches_total Pushes those transactions held.\n"
               "# TYPE ferry_store_write_batches_total counter\n"
               "ferry_store_write_batches_total %llu\n"
               "# HELP ferry_store_schema_version Highest migration applied.\n"
               "# TYPE ferry_store_schema_version gauge\nferry_store_schema_version %d\n"
               "# HELP ferry_uptime_seconds Seconds since the server started.\n"
               "# TYPE ferry_uptime_seconds gauge\nferry_uptime_seconds %lld\n"
               "# HELP ferry_build_info Version of the running binary.\n"
               "# TYPE ferry_build_info gauge\nferry_build_info{version=\"%s\"} 1\n",
               store_dialect_name(req->app->store), db_ok, size, in_use,
               (unsigned long long)commits, (unsigned long long)writes,
               store_schema_version(req->app->store),
               (long long)((time_now_ms() - req->app->started_ms) / 1000), FERRY_VERSION);
    http_reply_text(req, HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                    out.data ? out.data : "", out.len);
    buf_cleanup(&out);
    return FERRY_OK;
}

/* The document's compressed forms, made once: without them each request (public, so
 * anyone's) would cost a compression and hold its own copy until a slow reader took it. */
static struct http_codings openapi_codings = HTTP_CODINGS_INIT;

static int openapi(struct request *req, struct err *err)
{
    (void)err;
    http_reply_static(req, HTTP_OK, "application/json", ferry_openapi_json, ferry_openapi_json_len,
                      &openapi_codings);
    return FERRY_OK;
}

static const struct route routes[] = {
    {M_GET, "/health", legacy_health, 0, SURFACE_LEGACY, ROUTE_PUBLIC, NULL},
    {M_GET, "/api/v1/health", v1_health, 0, SURFACE_V1, ROUTE_PUBLIC, NULL},
    {M_GET, "/api/v1/metrics", v1_metrics, ROLE_ADMIN | ROLE_USER, SURFACE_V1, 0, NULL},
    {M_GET, "/metrics", prometheus, ROLE_ADMIN | ROLE_USER, SURFACE_PLAIN, ROUTE_METRICS_AUTH,
     NULL},
    {M_GET, "/api/v1/openapi.json", openapi, 0, SURFACE_V1, ROUTE_PUBLIC, NULL},
};

const struct route_table api_ops_routes = {routes, sizeof(routes) / sizeof(routes[0])};
