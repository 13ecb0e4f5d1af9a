/* dirsync.c - EonaCat.Sync's directory sync and sessions under /api/v1:
 *   POST /sync/files                      runs a directory sync and answers its result
 *   POST /sync/session/start              starts one as a job (jobs/jobs.c)
 *   GET  /sync/session/{id}/status        its status and real progress
 *   POST /sync/session/{id}/complete      closes a finished session
 * Both folders must lie inside the configured file roots (--file-root) or be folder
 * locations (--location NAME=folder:PATH); with none configured, none is allowed. A session
 * may name locations: two folders are a directory sync, two databases a database sync
 * (api/dbsync.c, admin only), a folder and a cloud location an upload or download of the
 * tree (api/cloudsync.c). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/cloudsync.h"
#include "api/dbsync.h"
#include "api/dirsync.h"
#include "app.h"
#include "http/auth.h"
#include "dbsync/dbsync.h"
#include "dbsync/locations.h"
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

/* The folders a sync may name: the file roots and the folder locations. */
struct roots {
    const char **dirs;
    size_t n;
    struct locations locs;
};

static void roots_init(const struct app *app, struct roots *r)
{
    memset(r, 0, sizeof(*r));
    /* the configuration was checked at start, so it parses */
    locations_parse(app->cfg->locations, &r->locs, NULL);
    r->dirs = xcalloc(app->n_file_roots + r->locs.n + 1, sizeof(char *));
    for (size_t i = 0; i < app->n_file_roots; i++)
        r->dirs[r->n++] = app->file_roots[i];
    for (size_t i = 0; i < r->locs.n; i++)
        if (r->locs.items[i].kind == LOC_FOLDER)
            r->dirs[r->n++] = r->locs.items[i].target;
}

static void roots_cleanup(struct roots *r)
{
    free(r->dirs);
    locations_cleanup(&r->locs);
}

/* The root (resolved) that holds path (resolved), or NULL. */
static const char *root_of(const struct roots *roots, const char *path, char *buf)
{
    for (size_t i = 0; i < roots->n; i++)
        if (realpath(roots->dirs[i], buf) && path_within(buf, path))
            return buf;
    return NULL;
}

static int confine_in(const struct app *app, const struct roots *roots, const char *source,
                      const char *target, struct sync_request *s, struct err *err)
{
    char data[PATH_MAX], root[PATH_MAX];
    if (!roots->n)
        return err_set(err, ERR_FORBIDDEN,
                       "no file roots are configured (--file-root), so no folder may be named");
    if (path_in_roots(roots->dirs, roots->n, source, &s->source, err) != FERRY_OK ||
        path_in_roots(roots->dirs, roots->n, target, &s->target, err) != FERRY_OK)
        return FERRY_ERR;
    if (realpath(app->cfg->data_dir, data) &&
        (path_within(data, s->source) || path_within(s->source, data) ||
         path_within(data, s->target) || path_within(s->target, data)))
        return err_set(err, ERR_FORBIDDEN, "ferry's own data folder cannot be synced");
    if (path_within(s->source, s->target) || path_within(s->target, s->source))
        return err_set(err, ERR_INVALID,
                       "source and target must be separate folders, neither inside the other");
    if (!root_of(roots, s->source, root))
        return err_set(err, ERR_FORBIDDEN, "the source is outside the configured file roots");
    s->source_root = xstrdup(root);
    if (!root_of(roots, s->target, root))
        return err_set(err, ERR_FORBIDDEN, "the target is outside the configured file roots");
    s->target_root = xstrdup(root);
    return FERRY_OK;
}

/* Checks the folder of a session with a cloud location: under a root, and neither inside
 * ferry's own data folder nor holding it. *out is the resolved path. */
static int confine_one(const struct app *app, const char *folder, char **out, struct err *err)
{
    struct roots roots;
    char data[PATH_MAX];
    int rc = FERRY_ERR;
    *out = NULL;
    roots_init(app, &roots);
    if (!roots.n)
        err_set(err, ERR_FORBIDDEN,
                "no file roots are configured (--file-root), so no folder may be named");
    else if (path_in_roots(roots.dirs, roots.n, folder, out, err) == FERRY_OK) {
        if (realpath(app->cfg->data_dir, data) &&
            (path_within(data, *out) || path_within(*out, data)))
            err_set(err, ERR_FORBIDDEN, "ferry's own data folder cannot be synced");
        else
            rc = FERRY_OK;
    }
    roots_cleanup(&roots);
    if (rc != FERRY_OK) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* Checks both folders against the roots: 403 outside them or overlapping ferry's own
 * data folder (its database and tokens), 400 when one lies inside the other (a sync into
 * itself would never end). */
static int confine(const struct app *app, const char *source, const char *target,
                   struct sync_request *s, struct err *err)
{
    struct roots roots;
    roots_init(app, &roots);
    int rc = confine_in(app, &roots, source, target, s, err);
    roots_cleanup(&roots);
    return rc;
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

/* Runs the sync, counted in the metrics; *out is the seed's result object. */
static int run_sync(const struct app *app, const struct sync_request *s, const atomic_bool *stop,
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
    if (dirsync_run(&o, &r, err) != FERRY_OK) {
        metrics_sync(app->metrics, false, (time_mono_us() - t0) / 1000, 0);
        return FERRY_ERR;
    }
    int64_t ms = (time_mono_us() - t0) / 1000;
    metrics_sync(app->metrics, json_array_size(r.errors) == 0, ms, (uint64_t)r.bytes_copied);
    *out = result_json(&r, started, ms);
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
    rc = run_sync(req->app, &s, &req->app->stopping, NULL, NULL, &result, err);
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
    if (!jobs_progress_due(&ctx->last_ms, p->files_done == p->files_total))
        return;
    char *msg =
        xasprintf("copying: %lld of %lld files, %lld of %lld bytes", (long long)p->files_done,
                  (long long)p->files_total, (long long)p->bytes_done, (long long)p->bytes_total);
    jobs_progress(ctx->c, ctx->job, p->bytes_done, p->bytes_total, p->files_done, p->files_total,
                  msg, NULL);
    free(msg);
}

/* Runs a session between two folders. Its folders are checked against the roots again,
 * as the configuration may have changed since the session started. */
static int run_folders(struct store_conn *c, const struct job *j, json_t *params,
                       const atomic_bool *stop, json_t **out, struct err *err,
                       const struct app *app)
{
    struct sync_request s = {0};
    struct progress_ctx ctx = {c, j->id, 0};
    jobs_progress(c, j->id, 0, 0, 0, 0, "scanning the source folder", NULL);
    int rc = FERRY_ERR;
    if (read_options(params, &s, err) == FERRY_OK &&
        confine(app, j->source, j->target, &s, err) == FERRY_OK)
        rc = run_sync(app, &s, stop, report_progress, &ctx, out, err);
    sync_request_clear(&s);
    return rc;
}

/* Runs a session between a folder and a cloud location; its folder is checked again. */
static int run_cloud(struct store_conn *c, const struct job *j, json_t *params,
                     const atomic_bool *stop, json_t **out, struct err *err, const struct app *app)
{
    bool upload = json_is_true(json_object_get(params, "upload"));
    char *folder = NULL;
    int rc = FERRY_ERR;
    if (confine_one(app, upload ? j->source : j->target, &folder, err) == FERRY_OK)
        rc = apicloudsync_run(app, c, j->id, params, folder, stop, out, err);
    free(folder);
    return rc;
}

/* The job runner: a folder session, a database session (params "databaseSync") or one
 * between a folder and a cloud location (params "cloudSync"). */
static int run_job(struct store_conn *c, const struct job *j, const atomic_bool *stop,
                   char **result, char **message, struct err *err, const struct app *app)
{
    json_t *params = json_loads(j->params ? j->params : "{}", 0, NULL), *out = NULL;
    int rc = FERRY_ERR;
    if (!params)
        err_set(err, ERR_INTERNAL, "the session's parameters cannot be read");
    else if (json_is_true(json_object_get(params, "databaseSync")))
        rc = apidbsync_run(app, c, j->id, params, stop, &out, err);
    else if (json_is_true(json_object_get(params, "cloudSync")))
        rc = run_cloud(c, j, params, stop, &out, err, app);
    else
        rc = run_folders(c, j, params, stop, &out, err, app);
    if (rc == FERRY_OK) {
        *result = jsonutil_to_string(out);
        json_t *errors = json_object_get(out, "errors");
        *message = xasprintf("%s: %lld changes applied, %zu errors",
                             json_array_size(errors) ? "completed with errors" : "completed",
                             (long long)json_integer_value(json_object_get(out, "changesApplied")),
                             json_array_size(errors));
    }
    json_decref(out);
    json_decref(params);
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

/* A database session's params: the two locations and the database sync's options. */
static int database_params(struct request *req, json_t *body, const char *source,
                           const char *target, char **params, struct err *err)
{
    json_t *names = NULL, *v;
    bool use_txn = true;
    const char *policy = NULL;
    enum dbsync_policy p;
    size_t i;
    if (req->cred.role != ROLE_ADMIN)
        return err_set(err, ERR_FORBIDDEN, "a session between databases needs an admin token");
    if (jsonutil_get_array(body, "entityNames", false, &names, err) != FERRY_OK ||
        jsonutil_get_bool(body, "useTransactions", false, &use_txn, err) != FERRY_OK ||
        jsonutil_get_string(body, "conflictPolicy", false, &policy, err) != FERRY_OK ||
        dbsync_parse_policy(policy, &p, err) != FERRY_OK ||
        apidbsync_check_pair(req->app, source, target, err) != FERRY_OK)
        return FERRY_ERR;
    if (json_array_size(names) > DBSYNC_MAX_ENTITIES)
        return err_set(err, ERR_INVALID, "field 'entityNames' names more than %d tables",
                       DBSYNC_MAX_ENTITIES);
    json_array_foreach(
        names, i,
        v) if (!json_is_string(v) ||
               !*json_string_value(v)) return err_set(err, ERR_INVALID,
                                                      "field 'entityNames' must hold table names");
    json_t *o = json_pack("{s:b, s:s, s:s, s:b, s:s}", "databaseSync", 1, "source", source,
                          "target", target, "useTransactions", use_txn, "conflictPolicy",
                          p == DBSYNC_OVERWRITE ? "overwrite" : "skip");
    if (names)
        json_object_set(o, "entityNames", names);
    *params = jsonutil_to_string(o);
    json_decref(o);
    return FERRY_OK;
}

/* What a session's end names: a location, else an absolute folder. */
static int session_end(const struct locations *locs, const char *name, const struct location **loc,
                       struct err *err)
{
    *loc = locations_find(locs, name);
    if (!*loc && name[0] != '/')
        return err_set(err, ERR_INVALID,
                       "'%s' is neither a configured location (--location) nor an absolute "
                       "folder path",
                       name);
    return FERRY_OK;
}

/* Records a session between a folder and a cloud location: the job names the folder
 * resolved, and the cloud location by its name. */
static int cloud_session(struct request *req, json_t *body, const struct location *from,
                         const struct location *to, const char *source, const char *target,
                         char id[40], struct err *err)
{
    struct sync_request s = {0};
    bool upload = to && locations_is_cloud(to->kind);
    const struct location *cloud = upload ? to : from, *other = upload ? from : to;
    char *folder = NULL, *params = NULL;
    json_t *p = NULL;
    int rc = FERRY_ERR;
    if (other && other->kind != LOC_FOLDER) {
        err_set(err, ERR_INVALID,
                "a session with a cloud location joins it to a folder, not to a %s location",
                locations_kind_name(other->kind));
        goto out;
    }
    if (read_options(body, &s, err) != FERRY_OK ||
        confine_one(req->app, other ? other->target : (upload ? source : target), &folder, err) !=
            FERRY_OK)
        goto out;
    char real[PATH_MAX]; /* a local location is a folder too: it must not overlap this one */
    if (cloud->kind == LOC_LOCAL && realpath(cloud->target, real) &&
        (path_within(real, folder) || path_within(folder, real))) {
        err_set(err, ERR_INVALID,
                "the folder and the local location '%s' must be separate folders, neither "
                "inside the other",
                cloud->name);
        goto out;
    }
    p = json_deep_copy(body);
    if (apicloudsync_params(p, cloud, upload, err) != FERRY_OK ||
        apicloudsync_check(req->app, cloud, err) != FERRY_OK)
        goto out;
    params = jsonutil_to_string(p);
    rc = jobs_create(req->db, "dirsync", req->cred.user_id, upload ? folder : cloud->name,
                     upload ? cloud->name : folder, params, false, id, err);
out:
    json_decref(p);
    free(params);
    free(folder);
    sync_request_clear(&s);
    return rc;
}

/* Records the session's job: *source and *target become what the job names. */
static int create_session(struct request *req, json_t *body, const char *source, const char *target,
                          char id[40], struct err *err)
{
    struct sync_request s = {0};
    struct locations locs;
    const struct location *from, *to;
    char *params = NULL;
    int rc = FERRY_ERR;
    if (locations_parse(req->app->cfg->locations, &locs, err) != FERRY_OK)
        return FERRY_ERR;
    if (session_end(&locs, source, &from, err) != FERRY_OK ||
        session_end(&locs, target, &to, err) != FERRY_OK)
        goto out;
    bool db_from = from && locations_is_database(from->kind);
    bool db_to = to && locations_is_database(to->kind);
    if ((from && locations_is_cloud(from->kind)) || (to && locations_is_cloud(to->kind))) {
        rc = cloud_session(req, body, from, to, source, target, id, err);
        goto out;
    }
    if (db_from != db_to) {
        err_set(err, ERR_INVALID, "a session joins two folders or two databases, not one of each");
        goto out;
    }
    if (db_from) {
        if (database_params(req, body, source, target, &params, err) == FERRY_OK)
            rc = jobs_create(req->db, "dirsync", req->cred.user_id, source, target, params, false,
                             id, err);
        goto out;
    }
    if (read_options(body, &s, err) != FERRY_OK ||
        confine(req->app, from ? from->target : source, to ? to->target : target, &s, err) !=
            FERRY_OK)
        goto out;
    params = jsonutil_to_string(body);
    rc = jobs_create(req->db, "dirsync", req->cred.user_id, s.source, s.target, params, false, id,
                     err);
out:
    free(params);
    sync_request_clear(&s);
    locations_cleanup(&locs);
    return rc;
}

static int start_session(struct request *req, struct err *err)
{
    const char *source = NULL, *target = NULL, *type = NULL;
    char id[40], iso[32];
    json_t *body;
    if (http_json_body(req, &body, err) != FERRY_OK)
        return FERRY_ERR;
    if (jsonutil_get_string(body, "sourceLocation", true, &source, err) != FERRY_OK ||
        jsonutil_get_string(body, "targetLocation", true, &target, err) != FERRY_OK ||
        jsonutil_get_string(body, "syncType", false, &type, err) != FERRY_OK)
        return FERRY_ERR;
    if (type && strcmp(type, "Full") != 0 && strcmp(type, "Incremental") != 0)
        return err_set(err, ERR_INVALID, "field 'syncType' must be \"Full\" or \"Incremental\"");
    if (create_session(req, body, source, target, id, err) != FERRY_OK)
        return FERRY_ERR;
    jobs_worker_kick(req->app->jobs);
    time_iso8601(time_now_ms(), 0, iso);
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:s, s:s, s:s, s:s}", "sessionId", id, "startedAt", iso,
                              "sourceIdentifier", source, "targetIdentifier", target));
    return FERRY_OK;
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
    if (!found || (strcmp(j->kind, "dirsync") && strcmp(j->kind, "backup")) ||
        !auth_owns(req, j->user_id))
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
