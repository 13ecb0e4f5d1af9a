/* dirsync.c - EonaCat.Sync's directory sync and sessions under /api/v1:
 *   POST /sync/files                      runs a directory sync and answers its result
 *   POST /sync/session/start              starts one as a job (jobs/jobs.c)
 *   GET  /sync/session/{id}/status        its status and real progress
 *   POST /sync/session/{id}/complete      closes a finished session
 * Both folders must lie inside the configured file roots (--file-root); with none
 * configured, none is allowed. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/dirsync.h"
#include "app.h"
#include "http/auth.h"
#include "files/dirsync.h"
#include "jobs/jobs.h"
#include "webhooks/webhooks.h"
#include "util/jsonutil.h"
#include "util/path.h"
#include "util/timeutil.h"

#define MAX_EXCLUDES 64
/* Directory syncs run inside requests at once at most; more get 429 (a session, which
 * is a job, has no such limit): each holds one of the few request threads. */
#define MAX_SYNCS_IN_REQUESTS 2
#define PROGRESS_EVERY_MS 100

struct apidirsync {
    atomic_int in_requests; /* directory syncs running inside requests now */
};

struct apidirsync *apidirsync_new(void)
{
    return xcalloc(1, sizeof(struct apidirsync));
}

void apidirsync_free(struct apidirsync *ds)
{
    free(ds);
}

/* --- options shared by both ways of running ------------------------------------------- */

struct sync_request {
    char *source, *target;           /* resolved */
    char *source_root, *target_root; /* the roots holding them, resolved */
    bool delete_missing, verify, full_compare;
    const char *exclude[MAX_EXCLUDES];
    size_t n_exclude;
};

static void sync_request_clear(struct sync_request *s)
{
    free(s->source);
    free(s->target);
    free(s->source_root);
    free(s->target_root);
    memset(s, 0, sizeof(*s));
}

/* The configured root (resolved) that holds path (resolved), or NULL. */
static const char *root_of(const struct app *app, const char *path, char *buf)
{
    for (size_t i = 0; i < app->n_file_roots; i++)
        if (realpath(app->file_roots[i], buf) && path_within(buf, path))
            return buf;
    return NULL;
}

/* Checks both folders against the roots: 403 outside them or overlapping ferry's own
 * data folder (its database and tokens), 400 when one lies inside the other (a sync into
 * itself would never end). */
static int confine(const struct app *app, const char *source, const char *target,
                   struct sync_request *s, struct err *err)
{
    char data[PATH_MAX], root[PATH_MAX];
    if (!app->n_file_roots)
        return err_set(err, ERR_FORBIDDEN,
                       "no file roots are configured (--file-root), so no folder may be named");
    if (path_in_roots((const char *const *)app->file_roots, app->n_file_roots, source, &s->source,
                      err) != FERRY_OK ||
        path_in_roots((const char *const *)app->file_roots, app->n_file_roots, target, &s->target,
                      err) != FERRY_OK)
        return FERRY_ERR;
    if (realpath(app->cfg->data_dir, data) &&
        (path_within(data, s->source) || path_within(s->source, data) ||
         path_within(data, s->target) || path_within(s->target, data)))
        return err_set(err, ERR_FORBIDDEN, "ferry's own data folder cannot be synced");
    if (path_within(s->source, s->target) || path_within(s->target, s->source))
        return err_set(err, ERR_INVALID,
                       "source and target must be separate folders, neither inside the other");
    if (!root_of(app, s->source, root))
        return err_set(err, ERR_FORBIDDEN, "the source is outside the configured file roots");
    s->source_root = xstrdup(root);
    if (!root_of(app, s->target, root))
        return err_set(err, ERR_FORBIDDEN, "the target is outside the configured file roots");
    s->target_root = xstrdup(root);
    return FERRY_OK;
}

/* Reads the options from a request body or a job's params (same field names). */
static int read_options(json_t *body, struct sync_request *s, struct err *err)
{
    json_t *patterns = NULL, *p;
    const char *type = NULL;
    size_t i;
    if (jsonutil_get_bool(body, "deleteMissingInTarget", false, &s->delete_missing, err) !=
            FERRY_OK ||
        jsonutil_get_bool(body, "verifyIntegrity", false, &s->verify, err) != FERRY_OK ||
        jsonutil_get_array(body, "excludePatterns", false, &patterns, err) != FERRY_OK ||
        jsonutil_get_string(body, "syncType", false, &type, err) != FERRY_OK)
        return FERRY_ERR;
    if (type && strcmp(type, "Full") != 0 && strcmp(type, "Incremental") != 0)
        return err_set(err, ERR_INVALID, "field 'syncType' must be \"Full\" or \"Incremental\"");
    s->full_compare = type && !strcmp(type, "Full");
    if (json_array_size(patterns) > MAX_EXCLUDES)
        return err_set(err, ERR_INVALID, "field 'excludePatterns' has more than %d patterns",
                       MAX_EXCLUDES);
    json_array_foreach(patterns, i, p)
    {
        if (!json_is_string(p) || !*json_string_value(p))
            return err_set(err, ERR_INVALID, "field 'excludePatterns' must hold non-empty strings");
        s->exclude[s->n_exclude++] = json_string_value(p);
    }
    return FERRY_OK;
}

static json_t *result_json(const struct dirsync_result *r, int64_t started_ms, int64_t ms)
{
    char iso[32];
    time_iso8601(started_ms + ms, 0, iso);
    return json_pack(
        "{s:b, s:I, s:I, s:O, s:s, s:I, s:I, s:I, s:I, s:I, s:O}", "success",
        json_array_size(r->errors) == 0, "changesApplied", (json_int_t)(r->copied + r->deleted),
        "conflictsEncountered", (json_int_t)r->conflicts, "errors", r->errors, "syncedAt", iso,
        "executionTimeMs", (json_int_t)ms, "filesCopied", (json_int_t)r->copied, "filesDeleted",
        (json_int_t)r->deleted, "filesUnchanged", (json_int_t)r->unchanged, "bytesCopied",
        (json_int_t)r->bytes_copied, "conflicts", r->conflicts_at);
}

/* Runs the sync; *out is the seed's result object. */
static int run_sync(const struct sync_request *s, const atomic_bool *stop,
                    void (*progress)(void *, const struct dirsync_progress *), void *ctx,
                    json_t **out, struct err *err)
{
    struct dirsync_result r;
    struct dirsync_options o = {
        .source = s->source,
        .target = s->target,
        .source_root = s->source_root,
        .target_root = s->target_root,
        .delete_missing = s->delete_missing,
        .verify = s->verify,
        .full_compare = s->full_compare,
        .exclude = s->exclude,
        .n_exclude = s->n_exclude,
        .progress = progress,
        .ctx = ctx,
        .stop = stop,
    };
    int64_t started = time_now_ms(), t0 = time_mono_us();
    if (dirsync_run(&o, &r, err) != FERRY_OK)
        return FERRY_ERR;
    *out = result_json(&r, started, (time_mono_us() - t0) / 1000);
    json_decref(r.errors);
    json_decref(r.conflicts_at);
    return FERRY_OK;
}

/* --- POST /sync/files ------------------------------------------------------------------ */

static int sync_files(struct request *req, struct err *err)
{
    struct sync_request s = {0};
    const char *source = NULL, *target = NULL;
    json_t *result = NULL;
    atomic_int *running = &req->app->dirsync->in_requests;
    int rc = FERRY_ERR;
    json_t *body;
    if (http_json_body(req, &body, err) != FERRY_OK)
        return FERRY_ERR;
    if (jsonutil_get_string(body, "sourceDirectory", true, &source, err) != FERRY_OK ||
        jsonutil_get_string(body, "targetDirectory", true, &target, err) != FERRY_OK ||
        read_options(body, &s, err) != FERRY_OK ||
        confine(req->app, source, target, &s, err) != FERRY_OK)
        goto out;
    if (atomic_fetch_add(running, 1) >= MAX_SYNCS_IN_REQUESTS) {
        atomic_fetch_sub(running, 1);
        http_add_header(req, "Retry-After", "1");
        err_set(err, ERR_RATE_LIMITED,
                "too many directory syncs at once; try again, or start a session");
        goto out;
    }
    rc = run_sync(&s, &req->app->stopping, NULL, NULL, &result, err);
    atomic_fetch_sub(running, 1);
    webhooks_emit_store(
        req->app->store, rc == FERRY_OK ? WEBHOOK_SYNC_COMPLETED : WEBHOOK_SYNC_FAILED,
        json_pack("{s:s, s:s, s:s, s:s, s:O?, s:s?}", "kind", "files", "source", source, "target",
                  target, "status", rc == FERRY_OK ? "completed" : "failed", "result", result,
                  "message", rc == FERRY_OK ? NULL : err->msg),
        NULL);
    if (rc == FERRY_OK)
        http_reply_json(req, HTTP_OK, result);
out:
    sync_request_clear(&s);
    return rc;
}

/* --- sessions (jobs of kind "dirsync") ------------------------------------------------- */

struct progress_ctx {
    struct store_conn *c;
    const char *job;
    int64_t last_ms;
};

static void report_progress(void *arg, const struct dirsync_progress *p)
{
    struct progress_ctx *ctx = arg;
    int64_t now = time_now_ms();
    bool last = p->files_done == p->files_total;
    if (!last && now - ctx->last_ms < PROGRESS_EVERY_MS)
        return;
    ctx->last_ms = now;
    char *msg =
        xasprintf("copying: %lld of %lld files, %lld of %lld bytes", (long long)p->files_done,
                  (long long)p->files_total, (long long)p->bytes_done, (long long)p->bytes_total);
    jobs_progress(ctx->c, ctx->job, p->bytes_done, p->bytes_total, p->files_done, p->files_total,
                  msg, NULL);
    free(msg);
}

/* The job runner: the job's folders are checked against the roots again, as the
 * configuration may have changed since the session started. */
static int run_job(struct store_conn *c, const struct job *j, const atomic_bool *stop,
                   char **result, char **message, struct err *err, const struct app *app)
{
    struct sync_request s = {0};
    json_t *params = json_loads(j->params ? j->params : "{}", 0, NULL), *out = NULL;
    struct progress_ctx ctx = {c, j->id, 0};
    int rc = FERRY_ERR;
    jobs_progress(c, j->id, 0, 0, 0, 0, "scanning the source folder", NULL);
    if (params && read_options(params, &s, err) == FERRY_OK &&
        confine(app, j->source, j->target, &s, err) == FERRY_OK &&
        run_sync(&s, stop, report_progress, &ctx, &out, err) == FERRY_OK) {
        *result = jsonutil_to_string(out);
        json_t *errors = json_object_get(out, "errors");
        *message = xasprintf("%s: %lld changes applied, %zu errors",
                             json_array_size(errors) ? "completed with errors" : "completed",
                             (long long)json_integer_value(json_object_get(out, "changesApplied")),
                             json_array_size(errors));
        rc = FERRY_OK;
    }
    json_decref(out);
    json_decref(params);
    sync_request_clear(&s);
    return rc;
}

static int dirsync_runner(void *app, struct store_conn *c, const struct job *j,
                          const atomic_bool *stop, char **result, char **message, struct err *err)
{
    return run_job(c, j, stop, result, message, err, app);
}

struct job_kind apidirsync_job_kind(const struct app *app)
{
    return (struct job_kind){"dirsync", dirsync_runner, (void *)app};
}

static int start_session(struct request *req, struct err *err)
{
    struct sync_request s = {0};
    const char *source = NULL, *target = NULL;
    char id[40], iso[32], *params = NULL;
    int rc = FERRY_ERR;
    json_t *body;
    if (http_json_body(req, &body, err) != FERRY_OK)
        return FERRY_ERR;
    if (jsonutil_get_string(body, "sourceLocation", true, &source, err) != FERRY_OK ||
        jsonutil_get_string(body, "targetLocation", true, &target, err) != FERRY_OK ||
        read_options(body, &s, err) != FERRY_OK ||
        confine(req->app, source, target, &s, err) != FERRY_OK)
        goto out;
    params = jsonutil_to_string(body);
    if (jobs_create(req->db, "dirsync", req->cred.user_id, s.source, s.target, params, false, id,
                    err) != FERRY_OK)
        goto out;
    jobs_worker_kick(req->app->jobs);
    time_iso8601(time_now_ms(), 0, iso);
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:s, s:s, s:s, s:s}", "sessionId", id, "startedAt", iso,
                              "sourceIdentifier", source, "targetIdentifier", target));
    rc = FERRY_OK;
out:
    free(params);
    sync_request_clear(&s);
    return rc;
}

static const char *status_name(const char *status)
{
    return !strcmp(status, "running") ? "in-progress" : status;
}

static json_t *session_json(const struct job *j)
{
    char created[32], completed[32];
    int64_t pct = j->bytes_total > 0   ? j->bytes_done * 100 / j->bytes_total
                  : j->items_total > 0 ? j->items_done * 100 / j->items_total
                                       : 0;
    if (!strcmp(j->status, "completed"))
        pct = 100;
    time_iso8601(j->created_at, 0, created);
    time_iso8601(j->completed_at, 0, completed);
    json_t *result = j->result ? json_loads(j->result, 0, NULL) : NULL;
    return json_pack("{s:s, s:s, s:I, s:s?, s:o, s:s, s:s?, s:I, s:I, s:I, s:I, s:b}", "sessionId",
                     j->id, "status", status_name(j->status), "progressPercentage", (json_int_t)pct,
                     "message", j->message, "result", result ? result : json_null(), "createdAt",
                     created, "completedAt", j->completed_at ? completed : NULL, "filesDone",
                     (json_int_t)j->items_done, "filesTotal", (json_int_t)j->items_total,
                     "bytesDone", (json_int_t)j->bytes_done, "bytesTotal",
                     (json_int_t)j->bytes_total, "closed", j->closed);
}

/* Loads session id for this caller (404 when unknown or someone else's). */
static int load_job(struct request *req, struct job *j, struct err *err)
{
    bool found = false;
    if (jobs_get(req->db, http_param(req, "id"), j, &found, err) != FERRY_OK)
        return FERRY_ERR;
    if (!found || strcmp(j->kind, "dirsync") != 0 || !auth_owns(req, j->user_id))
        return err_set(err, ERR_NOT_FOUND, "no such session");
    return FERRY_OK;
}

static int session_status(struct request *req, struct err *err)
{
    struct job j = {0};
    int rc = load_job(req, &j, err);
    if (rc == FERRY_OK)
        http_reply_json(req, HTTP_OK, session_json(&j));
    jobs_clear(&j);
    return rc;
}

static int complete_session(struct request *req, struct err *err)
{
    struct job j = {0};
    bool found = false;
    int rc = FERRY_ERR;
    if (load_job(req, &j, err) != FERRY_OK)
        goto out;
    if (jobs_close(req->db, j.id, err) != FERRY_OK) {
        /* say what state the session is in, so the client knows why it cannot close */
        char *msg = xasprintf("%s (%s)", err->msg, j.message ? j.message : status_name(j.status));
        err_set(err, err->code, "%s", msg);
        free(msg);
        goto out;
    }
    if (jobs_get(req->db, j.id, &j, &found, err) != FERRY_OK)
        goto out;
    http_reply_json(req, HTTP_OK, session_json(&j));
    rc = FERRY_OK;
out:
    jobs_clear(&j);
    return rc;
}

static const struct route routes[] = {
    {M_POST, "/api/v1/sync/files", sync_files, ROLE_ADMIN | ROLE_USER, SURFACE_V1, ROUTE_JSON,
     NULL},
    {M_POST, "/api/v1/sync/session/start", start_session, ROLE_ADMIN | ROLE_USER, SURFACE_V1,
     ROUTE_JSON | ROUTE_STORE, NULL},
    {M_GET, "/api/v1/sync/session/{id}/status", session_status, ROLE_ADMIN | ROLE_USER, SURFACE_V1,
     ROUTE_STORE, NULL},
    {M_POST, "/api/v1/sync/session/{id}/complete", complete_session, ROLE_ADMIN | ROLE_USER,
     SURFACE_V1, ROUTE_STORE, NULL},
};

const struct route_table api_dirsync_routes = {routes, sizeof(routes) / sizeof(routes[0])};
