/* dbsync.c - EonaCat.Sync's database sync under /api/v1 (admin only):
 *   POST /sync/database             syncs tables between two configured databases, as a job
 *   GET  /sync/database/conflicts   the conflicts recorded for a pair
 * Connection strings are resolved against the configured locations (dbsync/locations.h):
 * a database that is not configured is refused, since the request reaches beyond ferry. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/dbsync.h"
#include "app.h"
#include "dbsync/dbsync.h"
#include "dbsync/locations.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

struct progress_ctx {
    struct store_conn *c;
    const char *job;
    int64_t last_ms;
};

static void report_progress(void *arg, const struct dbsync_progress *p)
{
    struct progress_ctx *ctx = arg;
    if (!jobs_progress_due(&ctx->last_ms, p->rows_done >= p->rows_total))
        return;
    char *msg = xasprintf("Processing database entities: %s (%lld of %lld rows), entity %lld of "
                          "%lld, %lld changes applied",
                          p->entity, (long long)p->rows_done, (long long)p->rows_total,
                          (long long)p->entities_done + 1, (long long)p->entities_total,
                          (long long)p->changes);
    /* items are hundredths of entities (so the percentage moves within a table); bytes
     * are what was written so far */
    int64_t within = p->rows_total > 0 ? p->rows_done * 100 / p->rows_total : 100;
    jobs_progress(ctx->c, ctx->job, p->bytes, 0, p->entities_done * 100 + within,
                  p->entities_total * 100, msg, NULL);
    free(msg);
}

static json_t *result_json(const struct dbsync_result *r, const char *job, int64_t started_ms,
                           int64_t ms)
{
    char iso[32];
    time_iso8601(started_ms + ms, 0, iso);
    return json_pack("{s:b, s:I, s:I, s:O, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:O}", "success",
                     json_array_size(r->errors) == 0, "changesApplied",
                     (json_int_t)(r->inserted + r->updated + r->deleted), "conflictsEncountered",
                     (json_int_t)r->conflicts, "errors", r->errors, "syncedAt", iso,
                     "executionTimeMs", (json_int_t)ms, "jobId", job, "rowsInserted",
                     (json_int_t)r->inserted, "rowsUpdated", (json_int_t)r->updated, "rowsDeleted",
                     (json_int_t)r->deleted, "rowsUnchanged", (json_int_t)r->unchanged,
                     "bytesTransferred", (json_int_t)r->bytes, "conflicts", r->conflicts_at);
}

/* The two locations of params, each a configured database. */
static int pair_of(const struct locations *locs, json_t *params, const struct location **from,
                   const struct location **to, struct err *err)
{
    const char *source = json_string_value(json_object_get(params, "source"));
    const char *target = json_string_value(json_object_get(params, "target"));
    if (locations_resolve_db(locs, source ? source : "", from, err) != FERRY_OK ||
        locations_resolve_db(locs, target ? target : "", to, err) != FERRY_OK)
        return FERRY_ERR;
    if (*from == *to)
        return err_set(err, ERR_INVALID, "source and target are the same database (%s)",
                       (*from)->name);
    return FERRY_OK;
}

int apidbsync_check_pair(const struct app *app, const char *source, const char *target,
                         struct err *err)
{
    struct locations locs;
    const struct location *from, *to;
    json_t *params = json_pack("{s:s, s:s}", "source", source, "target", target);
    int rc = locations_parse(app->cfg->locations, &locs, err);
    if (rc == FERRY_OK)
        rc = pair_of(&locs, params, &from, &to, err);
    locations_cleanup(&locs);
    json_decref(params);
    return rc;
}

/* The entity names of params (NULL: every table of the source). */
static const char **entities_of(json_t *params, size_t *n)
{
    json_t *names = json_object_get(params, "entityNames"), *v;
    size_t i;
    const char **out = NULL;
    *n = 0;
    if (!json_is_array(names))
        return NULL;
    out = xcalloc(json_array_size(names) + 1, sizeof(char *));
    json_array_foreach(names, i, v) out[(*n)++] = json_string_value(v);
    return out;
}

int apidbsync_run(const struct app *app, struct store_conn *c, const char *job_id, json_t *params,
                  const atomic_bool *stop, json_t **result, struct err *err)
{
    struct locations locs = {0};
    const struct location *from, *to;
    struct dbsync_result r = {0};
    struct progress_ctx ctx = {c, job_id, 0};
    struct dbsync_options o = {.use_transactions =
                                   json_is_true(json_object_get(params, "useTransactions")),
                               .run_id = job_id,
                               .state = c,
                               .progress = report_progress,
                               .ctx = &ctx,
                               .stop = stop};
    int64_t started = time_now_ms(), t0 = time_mono_us();
    int rc = FERRY_ERR;
    o.entities = entities_of(params, &o.n_entities);
    if (locations_parse(app->cfg->locations, &locs, err) != FERRY_OK ||
        pair_of(&locs, params, &from, &to, err) != FERRY_OK ||
        dbsync_parse_policy(json_string_value(json_object_get(params, "conflictPolicy")), &o.policy,
                            err) != FERRY_OK)
        goto out;
    o.source_name = from->name, o.target_name = to->name;
    o.source_url = from->target, o.target_url = to->target;
    jobs_progress(c, job_id, 0, 0, 0, 0, "Processing database entities", NULL);
    rc = dbsync_run(&o, &r, err);
    if (rc == FERRY_OK)
        *result = result_json(&r, job_id, started, (time_mono_us() - t0) / 1000);
    metrics_sync(app->metrics, rc == FERRY_OK && json_array_size(r.errors) == 0,
                 (time_mono_us() - t0) / 1000, (uint64_t)r.bytes);
out:
    dbsync_result_clear(&r);
    locations_cleanup(&locs);
    free((void *)o.entities);
    return rc;
}

/* The job's message: what it did, in one line. */
static char *summary(json_t *result)
{
    json_t *errors = json_object_get(result, "errors");
    return xasprintf("%s: %lld changes applied, %lld conflicts, %zu errors",
                     json_array_size(errors) ? "completed with errors" : "completed",
                     (long long)json_integer_value(json_object_get(result, "changesApplied")),
                     (long long)json_integer_value(json_object_get(result, "conflictsEncountered")),
                     json_array_size(errors));
}

static int dbsync_runner(void *app, struct store_conn *c, const struct job *j,
                         const atomic_bool *stop, char **result, char **message, struct err *err)
{
    json_t *params = json_loads(j->params ? j->params : "{}", 0, NULL), *out = NULL;
    int rc = apidbsync_run(app, c, j->id, params, stop, &out, err);
    if (rc == FERRY_OK) {
        *result = jsonutil_to_string(out);
        *message = summary(out);
    }
    json_decref(out);
    json_decref(params);
    return rc;
}

struct job_kind apidbsync_job_kind(const struct app *app)
{
    return (struct job_kind){"dbsync", dbsync_runner, (void *)app};
}

/* --- POST /sync/database ----------------------------------------------------------------- */

/* Checks the body and turns it into the job's params: location names instead of the
 * connection strings, which may hold passwords and are not kept. */
static int params_of(const struct app *app, json_t *body, json_t **out, struct err *err)
{
    const char *source = NULL, *target = NULL, *policy = NULL;
    json_t *names = NULL, *v;
    bool use_txn = true;
    enum dbsync_policy p;
    size_t i;
    if (jsonutil_get_string(body, "sourceConnectionString", true, &source, err) != FERRY_OK ||
        jsonutil_get_string(body, "targetConnectionString", true, &target, err) != FERRY_OK ||
        jsonutil_get_array(body, "entityNames", true, &names, err) != FERRY_OK ||
        jsonutil_get_bool(body, "useTransactions", false, &use_txn, err) != FERRY_OK ||
        jsonutil_get_string(body, "conflictPolicy", false, &policy, err) != FERRY_OK ||
        dbsync_parse_policy(policy, &p, err) != FERRY_OK)
        return FERRY_ERR;
    if (!json_array_size(names) || json_array_size(names) > DBSYNC_MAX_ENTITIES)
        return err_set(err, ERR_INVALID, "field 'entityNames' must name 1 to %d tables",
                       DBSYNC_MAX_ENTITIES);
    json_array_foreach(
        names, i,
        v) if (!json_is_string(v) ||
               !*json_string_value(v)) return err_set(err, ERR_INVALID,
                                                      "field 'entityNames' must hold table names");
    struct locations locs;
    const struct location *from, *to;
    if (locations_parse(app->cfg->locations, &locs, err) != FERRY_OK)
        return FERRY_ERR;
    json_t *conns = json_pack("{s:s, s:s}", "source", source, "target", target);
    int rc = pair_of(&locs, conns, &from, &to, err);
    if (rc == FERRY_OK)
        *out = json_pack("{s:s, s:s, s:O, s:b, s:s}", "source", from->name, "target", to->name,
                         "entityNames", names, "useTransactions", use_txn, "conflictPolicy",
                         p == DBSYNC_OVERWRITE ? "overwrite" : "skip");
    json_decref(conns);
    locations_cleanup(&locs);
    return rc;
}

static int sync_database(struct request *req, struct err *err)
{
    json_t *body, *params = NULL, *result = NULL;
    char id[40], *text = NULL, *message = NULL;
    int rc = FERRY_ERR;
    if (http_json_body(req, &body, err) != FERRY_OK ||
        params_of(req->app, body, &params, err) != FERRY_OK)
        return FERRY_ERR;
    text = jsonutil_to_string(params);
    if (jobs_create(req->db, "dbsync", req->cred.user_id,
                    json_string_value(json_object_get(params, "source")),
                    json_string_value(json_object_get(params, "target")), text, true, id,
                    err) != FERRY_OK)
        goto out;
    struct job_heartbeat *beat = jobs_heartbeat_start(req->app->store, id);
    rc = apidbsync_run(req->app, req->db, id, params, &req->app->stopping, &result, err);
    jobs_heartbeat_stop(beat);
    free(text);
    text = rc == FERRY_OK ? jsonutil_to_string(result) : NULL;
    message = rc == FERRY_OK ? summary(result) : NULL;
    jobs_finish(req->db, id, rc == FERRY_OK, text, rc == FERRY_OK ? message : err->msg, NULL);
    if (rc == FERRY_OK) {
        http_reply_json(req, HTTP_OK, result);
        result = NULL;
    }
out:
    json_decref(result);
    json_decref(params);
    free(text);
    free(message);
    return rc;
}

/* --- GET /sync/database/conflicts ----------------------------------------------------------- */

static int list_conflicts(struct request *req, struct err *err)
{
    const char *source = http_query(req, "source"), *target = http_query(req, "target");
    const char *entity = http_query(req, "entity"), *limit_text = http_query(req, "limit");
    struct locations locs;
    const struct location *from, *to;
    json_t *list = NULL, *conns;
    long long limit = limit_text ? strtoll(limit_text, NULL, 10) : 100;
    int rc = FERRY_ERR;
    if (!source || !target)
        return err_set(err, ERR_INVALID, "query parameters 'source' and 'target' are required");
    if (limit < 1 || limit > 1000)
        return err_set(err, ERR_INVALID, "query parameter 'limit' must be from 1 to 1000");
    if (locations_parse(req->app->cfg->locations, &locs, err) != FERRY_OK)
        return FERRY_ERR;
    conns = json_pack("{s:s, s:s}", "source", source, "target", target);
    if (pair_of(&locs, conns, &from, &to, err) == FERRY_OK &&
        dbsync_list_conflicts(req->db, from->name, to->name, entity, limit, &list, err) ==
            FERRY_OK) {
        http_reply_json(req, HTTP_OK,
                        json_pack("{s:o, s:I}", "conflicts", list, "totalCount",
                                  (json_int_t)json_array_size(list)));
        list = NULL;
        rc = FERRY_OK;
    }
    json_decref(list);
    json_decref(conns);
    locations_cleanup(&locs);
    return rc;
}

static const struct route routes[] = {
    {M_POST, "/api/v1/sync/database", sync_database, ROLE_ADMIN, SURFACE_V1,
     ROUTE_JSON | ROUTE_STORE, NULL},
    {M_GET, "/api/v1/sync/database/conflicts", list_conflicts, ROLE_ADMIN, SURFACE_V1, ROUTE_STORE,
     NULL},
};

const struct route_table api_dbsync_routes = {routes, sizeof(routes) / sizeof(routes[0])};
