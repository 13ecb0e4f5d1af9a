/* backup.c - EonaCat.Sync's backups under /api/v1:
 *   POST /backup/create                   makes a version of a folder
 *   GET  /backup/versions                 lists a repository's versions
 *   POST /backup/restore                  restores a version into a folder
 *   GET  /backup/restore-point-in-time    restores the newest version at or before a time
 *   POST /backup/prune                    forgets versions by retention, reclaims space
 * Create, restore and prune run as jobs of kind "backup" (progress through the session
 * endpoints); a request waits for its job unless it says wait=false. Every folder must
 * lie under a file root (--file-root) or backup root (--backup-root), never in ferry's
 * data folder. backupPath may instead name a cloud location (--location NAME=s3:B/P): the
 * repository is then worked on in a cache folder in the data folder, brought up to date
 * from the cloud before the run and sent up after it (backup/cloudrepo.c), with a lease in
 * the database holding it across nodes. The repository password comes from the
 * configuration. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/backup.h"
#include "api/cloudsync.h"
#include "app.h"
#include "backup/archive.h"
#include "backup/cloudrepo.h"
#include "backup/prune.h"
#include "backup/repo.h"
#include "backup/restore.h"
#include "backup/snapshot.h"
#include "dbsync/locations.h"
#include "files/leases.h"
#include "sync/feed.h"
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/path.h"
#include "util/timeutil.h"

#define PROGRESS_EVERY_MS 200
#define MAX_POLICY 100000

enum op_kind { OP_CREATE, OP_RESTORE, OP_PRUNE };
static const char *const op_names[] = {"create", "restore", "prune"};

/* One operation, as a request gives it and as a job's params keep it. */
struct op {
    enum op_kind kind;
    const char *repo, *source, *target, *version, *description, *point_in_time;
    bool full, plaintext;
    struct prune_policy policy;
    char *repo_abs, *source_abs, *target_abs; /* resolved under the roots */
    struct locations locs;
    const struct location *cloud; /* the cloud location backupPath names, or NULL */
};

static void op_clear(struct op *op)
{
    locations_cleanup(&op->locs);
    free(op->repo_abs);
    free(op->source_abs);
    free(op->target_abs);
}

/* --- repositories in a cloud location ------------------------------------------------ */

#define LEASE_POLL_NS (100 * 1000 * 1000)

struct cloudside {
    struct apicloud_place place;
    struct cloudrepo cr;
    struct store_conn *c;
    struct lease lease;
    bool leased;
    struct lease_keeper *keeper; /* renews the lease on a timer while the run holds it */
};

static void keep_lease(void *ctx)
{
    struct cloudside *cs = ctx;
    if (cs->leased)
        leases_renew(cs->c, &cs->lease, false, NULL);
}

/* Fencing: nothing goes up or away unless the lease is still this run's (its token, the
 * lease's generation, unchanged). A run that lost it stops before writing more. */
static int check_lease(void *ctx, struct err *err)
{
    struct cloudside *cs = ctx;
    if (!leases_keep_lost(cs->keeper) && leases_renew(cs->c, &cs->lease, true, err) == FERRY_OK)
        return FERRY_OK;
    if (leases_keep_lost(cs->keeper) || err->code == ERR_CONFLICT)
        err_set(err, ERR_CONFLICT,
                "the backup repository's lease was taken over by another run (on this node or "
                "another): this run stopped before writing anything more; run it again");
    return FERRY_ERR;
}

/* Takes the repository's lease (every run, readers too: they share the cache folder),
 * waiting for another holder up to REPO_LOCK_WAIT_MS as the local lock does. It is named
 * after the place in the cloud, not the cache folder: each node's cache is in its own data
 * folder, and the repository in the cloud is the one thing they share. The place as
 * opened (container and cleaned prefix), not the target as spelt: "s3:b/repo" and
 * "s3:b/repo/" are one repository, and two leases for it let two nodes prune it at once. */
static int take_lease(struct cloudside *cs, const struct location *loc, struct err *err)
{
    char self[LEASES_OWNER_MAX], name[80], h[65];
    const char *prefix = cs->place.prefix;
    int n = (int)strlen(prefix);
    char *id = xasprintf("%s:%s%s%.*s", locations_kind_name(loc->kind), cs->place.own.container,
                         n ? "/" : "", n ? n - 1 : 0, prefix); /* without the final '/' */
    crypto_sha256_hex(id, strlen(id), h);
    free(id);
    snprintf(name, sizeof(name), "backup:%.32s", h);
    leases_self(self);
    for (int waited = 0; waited <= REPO_LOCK_WAIT_MS; waited += LEASE_POLL_NS / 1000000) {
        if (leases_acquire(cs->c, self, name, &cs->lease, &cs->leased, err) != FERRY_OK)
            return FERRY_ERR;
        if (cs->leased)
            return FERRY_OK;
        nanosleep(&(struct timespec){0, LEASE_POLL_NS}, NULL);
    }
    return err_set(err, ERR_CONFLICT,
                   "another run (on this node or another) holds the backup repository");
}

/* For a repository in a cloud location: holds it and brings the cache up to date with
 * the files of the kinds in what. Nothing for a folder repository. */
static int cloud_begin(const struct app *app, struct store_conn *c, const struct op *op,
                       unsigned what, const atomic_bool *stop, struct cloudside *cs,
                       struct err *err)
{
    memset(cs, 0, sizeof(*cs));
    cs->c = c;
    if (!op->cloud)
        return FERRY_OK;
    if (apicloudsync_open(app, op->cloud, stop, &cs->place, err) != FERRY_OK ||
        take_lease(cs, op->cloud, err) != FERRY_OK)
        return FERRY_ERR;
    cs->keeper = leases_keep(app->store, &cs->lease);
    cs->cr = (struct cloudrepo){.cloud = cs->place.cloud,
                                .container = cs->place.own.container,
                                .prefix = cs->place.prefix,
                                .dir = op->repo_abs,
                                .db = c,
                                .tick = keep_lease,
                                .fence = check_lease,
                                .ctx = cs};
    return cloudrepo_pull(&cs->cr, what, err);
}

/* Sends up what a successful run (rc) made when push (removing what it removed with
 * remove), counts the bytes moved, and lets the repository go. Returns the outcome. */
static int cloud_end(const struct app *app, struct cloudside *cs, int rc, bool push, bool remove,
                     struct err *err)
{
    if (!cs->place.cloud) {
        apicloudsync_close(&cs->place);
        return rc;
    }
    if (rc == FERRY_OK && push)
        rc = cloudrepo_push(&cs->cr, remove, err);
    metrics_cloud(app->metrics, (unsigned)cloud_kind(cs->place.cloud),
                  cs->cr.bytes_up + cs->cr.bytes_down);
    leases_keep_stop(cs->keeper);
    if (cs->leased)
        leases_release(cs->c, &cs->lease);
    apicloudsync_close(&cs->place);
    return rc;
}

/* --- configuration: roots and password ------------------------------------------------ */

/* The file roots and the backup roots, together (entries point into app and *buf). */
static const char **all_roots(const struct app *app, char **buf, size_t *n)
{
    const char *backup = app->cfg->backup_roots ? app->cfg->backup_roots : "";
    const char **roots = xcalloc(app->n_file_roots + strlen(backup) / 2 + 2, sizeof(char *));
    char *save = NULL;
    *n = 0;
    for (size_t i = 0; i < app->n_file_roots; i++)
        roots[(*n)++] = app->file_roots[i];
    *buf = xstrdup(backup);
    for (char *r = strtok_r(*buf, ":", &save); r; r = strtok_r(NULL, ":", &save))
        roots[(*n)++] = r;
    return roots;
}

/* Resolves a folder named by a request: under a root, away from ferry's data folder. */
static int confine(const struct app *app, const char *field, const char *path, char **out,
                   struct err *err)
{
    char *buf = NULL, data[PATH_MAX];
    size_t n = 0;
    const char **roots = all_roots(app, &buf, &n);
    int rc = FERRY_ERR;
    if (!n) {
        err_set(err, ERR_FORBIDDEN,
                "no file or backup roots are configured (--file-root, --backup-root), so no "
                "folder may be named");
        goto out;
    }
    if (path_in_roots(roots, n, path, out, err) != FERRY_OK) {
        err_set(err, err->code, "%s: %s", field, err->msg);
        goto out;
    }
    if (realpath(app->cfg->data_dir, data) &&
        (path_within(data, *out) || path_within(*out, data))) {
        err_set(err, ERR_FORBIDDEN, "%s: ferry's own data folder cannot be used", field);
        goto out;
    }
    rc = FERRY_OK;
out:
    free(buf);
    free(roots);
    return rc;
}

/* When backupPath names a cloud location: op->cloud is it, and op->repo_abs the cache
 * folder its repository is worked on in (one per location, in the data folder). */
static void cloud_repo(const struct app *app, struct op *op)
{
    char data[PATH_MAX], h[65];
    locations_parse(app->cfg->locations, &op->locs, NULL); /* checked at start */
    const struct location *loc = locations_find(&op->locs, op->repo);
    if (!loc || !locations_is_cloud(loc->kind))
        return;
    op->cloud = loc;
    char *id = xasprintf("%s:%s", locations_kind_name(loc->kind), loc->target);
    crypto_sha256_hex(id, strlen(id), h);
    free(id);
    op->repo_abs = xasprintf("%s/backup-cache/%.32s",
                             realpath(app->cfg->data_dir, data) ? data : app->cfg->data_dir, h);
}

static int confine_op(const struct app *app, struct op *op, struct err *err)
{
    cloud_repo(app, op);
    if ((!op->cloud && confine(app, "backupPath", op->repo, &op->repo_abs, err) != FERRY_OK) ||
        (op->source &&
         confine(app, "sourceDirectory", op->source, &op->source_abs, err) != FERRY_OK) ||
        (op->target && confine(app, "restorePath", op->target, &op->target_abs, err) != FERRY_OK))
        return FERRY_ERR;
    if (op->source_abs && path_within(op->repo_abs, op->source_abs))
        return err_set(err, ERR_INVALID, "sourceDirectory lies inside backupPath");
    if (op->target_abs &&
        (path_within(op->repo_abs, op->target_abs) || path_within(op->target_abs, op->repo_abs)))
        return err_set(err, ERR_INVALID, "restorePath and backupPath must be separate folders");
    return FERRY_OK;
}

/* The repositories' password: FERRY_BACKUP_PASSWORD, else --backup-password-file;
 * *out NULL when neither is set. */
static int password(const struct app *app, char **out, struct err *err)
{
    const char *env = getenv("FERRY_BACKUP_PASSWORD");
    *out = NULL;
    if (env && *env) {
        *out = xstrdup(env);
        return FERRY_OK;
    }
    if (app->cfg->backup_password_file)
        return repo_read_password_file(app->cfg->backup_password_file, out, err);
    return FERRY_OK;
}

static int open_repo(const struct app *app, const struct op *op, bool create, struct repo **r,
                     struct err *err)
{
    char *pw = NULL;
    int rc = password(app, &pw, err);
    if (rc == FERRY_OK)
        rc = repo_open(op->repo_abs, pw, create, op->plaintext, r, err);
    if (rc != FERRY_OK && err->code == ERR_INVALID && create && !pw && !op->plaintext)
        err_set(err, ERR_INVALID,
                "the server has no backup password (--backup-password-file or "
                "FERRY_BACKUP_PASSWORD), so it cannot create or open an encrypted repository");
    free(pw);
    return rc;
}

/* --- operations: read, kept as job params, run ---------------------------------------- */

static int get_count(json_t *j, const char *key, int *out, struct err *err)
{
    int64_t v = -1;
    if (jsonutil_get_int(j, key, false, &v, err) != FERRY_OK)
        return FERRY_ERR;
    if (json_object_get(j, key) && (v < 0 || v > MAX_POLICY))
        return err_set(err, ERR_INVALID, "field '%s' must be a count from 0 to %d", key,
                       MAX_POLICY);
    *out = json_object_get(j, key) ? (int)v : -1;
    return FERRY_OK;
}

static int parse_policy(json_t *j, struct prune_policy *p, struct err *err)
{
    if (get_count(j, "retentionDays", &p->retention_days, err) != FERRY_OK ||
        get_count(j, "keepLast", &p->keep_last, err) != FERRY_OK ||
        get_count(j, "keepDaily", &p->keep_daily, err) != FERRY_OK ||
        get_count(j, "keepWeekly", &p->keep_weekly, err) != FERRY_OK ||
        get_count(j, "keepMonthly", &p->keep_monthly, err) != FERRY_OK)
        return FERRY_ERR;
    if (p->retention_days < 0 && p->keep_last < 0 && p->keep_daily < 0 && p->keep_weekly < 0 &&
        p->keep_monthly < 0)
        return err_set(err, ERR_INVALID,
                       "say which versions to keep: retentionDays, keepLast, "
                       "keepDaily, keepWeekly or keepMonthly");
    return FERRY_OK;
}

static int parse_create(json_t *j, struct op *op, struct err *err)
{
    if (jsonutil_get_string(j, "sourceDirectory", true, &op->source, err) != FERRY_OK ||
        jsonutil_get_string(j, "description", false, &op->description, err) != FERRY_OK ||
        jsonutil_get_bool(j, "isFullBackup", false, &op->full, err) != FERRY_OK ||
        jsonutil_get_bool(j, "insecureNoEncryption", false, &op->plaintext, err) != FERRY_OK)
        return FERRY_ERR;
    if (op->description && strlen(op->description) > 1000)
        return err_set(err, ERR_INVALID, "field 'description' is longer than 1000 characters");
    return FERRY_OK;
}

static int parse_restore(json_t *j, struct op *op, struct err *err)
{
    int64_t ms;
    if (jsonutil_get_string(j, "restorePath", true, &op->target, err) != FERRY_OK ||
        jsonutil_get_string(j, "versionId", false, &op->version, err) != FERRY_OK ||
        jsonutil_get_string(j, "pointInTime", false, &op->point_in_time, err) != FERRY_OK)
        return FERRY_ERR;
    if (!op->version == !op->point_in_time)
        return err_set(err, ERR_INVALID, "give either versionId or pointInTime");
    if (op->point_in_time && time_parse_iso8601(op->point_in_time, &ms) != 0)
        return err_set(err, ERR_INVALID, "pointInTime must be an ISO 8601 time, not '%.100s'",
                       op->point_in_time);
    return FERRY_OK;
}

/* Reads an operation's fields (a request's, or a job's params); strings point into j. */
static int parse_op(json_t *j, enum op_kind kind, struct op *op, struct err *err)
{
    op->kind = kind;
    if (jsonutil_get_string(j, "backupPath", true, &op->repo, err) != FERRY_OK)
        return FERRY_ERR;
    return kind == OP_CREATE    ? parse_create(j, op, err)
           : kind == OP_RESTORE ? parse_restore(j, op, err)
                                : parse_policy(j, &op->policy, err);
}

struct progress_ctx {
    struct store_conn *c;
    const char *job, *verb;
    int64_t last_ms;
    struct cloudside *cs; /* renews its lease while the run goes on (NULL: none) */
};

static void report(void *arg, const struct repo_progress *p)
{
    struct progress_ctx *ctx = arg;
    int64_t now = time_now_ms();
    if (now - ctx->last_ms < PROGRESS_EVERY_MS && p->bytes_done < p->bytes_total)
        return;
    ctx->last_ms = now;
    if (ctx->cs)
        keep_lease(ctx->cs);
    char *msg = xasprintf("%s: %llu of %llu files, %llu of %llu bytes%s%s", ctx->verb,
                          (unsigned long long)p->files_done, (unsigned long long)p->files_total,
                          (unsigned long long)p->bytes_done, (unsigned long long)p->bytes_total,
                          p->current ? ", now " : "", p->current ? p->current : "");
    jobs_progress(ctx->c, ctx->job, (int64_t)p->bytes_done, (int64_t)p->bytes_total,
                  (int64_t)p->files_done, (int64_t)p->files_total, msg, NULL);
    free(msg);
}

static int run_create(const struct app *app, struct op *op, struct progress_ctx *pc,
                      const atomic_bool *stop, json_t **out, struct err *err)
{
    struct repo *r = NULL;
    struct snapshot s;
    int64_t head = -1;
    if (feed_head(pc->c, &head, NULL) != FERRY_OK)
        head = -1; /* the version is still good without the cursor */
    struct archive_options o = {.source = op->source_abs,
                                .full = op->full,
                                .description = op->description,
                                .feed_cursor = head,
                                .progress = report,
                                .progress_ctx = pc,
                                .stop = stop};
    int rc = open_repo(app, op, true, &r, err);
    if (rc == FERRY_OK && (rc = archive_create(r, &o, &s, err)) == FERRY_OK) {
        *out = snapshot_created_json(&s);
        snapshot_clear(&s);
    }
    repo_close(r);
    return rc;
}

static int run_restore(const struct app *app, struct op *op, struct progress_ctx *pc,
                       const atomic_bool *stop, json_t **out, struct err *err)
{
    struct repo *r = NULL;
    struct restore_result res = {0};
    char id[37], when[32];
    int64_t at = 0, created = 0;
    struct restore_options o = {.version_id = op->version,
                                .target = op->target_abs,
                                .progress = report,
                                .progress_ctx = pc,
                                .stop = stop};
    int rc = open_repo(app, op, false, &r, err);
    if (rc == FERRY_OK && op->point_in_time) {
        time_parse_iso8601(op->point_in_time, &at);
        rc = restore_pick(r, at, id, &created, err);
        o.version_id = id;
    }
    if (rc == FERRY_OK && pc->cs && pc->cs->place.cloud) /* only the packs it reads */
        rc = cloudrepo_pull_version(&pc->cs->cr, r->key, o.version_id, err);
    if (rc == FERRY_OK)
        rc = restore_run(r, &o, &res, err);
    if (rc == FERRY_OK) {
        time_iso8601(time_now_ms(), 1, when);
        *out = json_pack("{s:s, s:s, s:I, s:I, s:s, s:O}", "versionId", o.version_id, "restorePath",
                         op->target_abs, "fileCount", (json_int_t)res.files, "totalSize",
                         (json_int_t)res.bytes, "restoredAt", when, "damagedFiles", res.damaged);
        if (op->point_in_time) {
            time_iso8601(created, 1, when);
            json_object_set_new(*out, "createdAt", json_string(when));
            json_object_set_new(*out, "pointInTime", json_string(op->point_in_time));
        }
    }
    restore_result_cleanup(&res);
    repo_close(r);
    return rc;
}

static int fetch_for_prune(void *ctx, const struct pack_index *ix, const bool *needed,
                           struct err *err)
{
    return cloudrepo_fetch_packs(&((struct cloudside *)ctx)->cr, ix, needed, err);
}

/* In a cloud location, the prune fetches only the packs it rewrites (cs NULL: none). */
static int run_prune(const struct app *app, struct op *op, struct cloudside *cs, json_t **out,
                     struct err *err)
{
    struct repo *r = NULL;
    struct prune_result res = {0};
    bool cloud = cs && cs->place.cloud;
    int rc = open_repo(app, op, false, &r, err);
    if (rc == FERRY_OK &&
        (rc = prune_run_fetching(r, &op->policy, time_now_ms(), cloud ? fetch_for_prune : NULL, cs,
                                 &res, err)) == FERRY_OK)
        *out = json_pack("{s:I, s:I, s:I, s:O}", "deletedCount", (json_int_t)res.deleted,
                         "keptCount", (json_int_t)res.kept, "freedBytes",
                         (json_int_t)res.freed_bytes, "deletedVersions", res.deleted_ids);
    prune_result_cleanup(&res);
    repo_close(r);
    return rc;
}

/* Runs a job's operation: its folders are checked against the roots again (the
 * configuration may have changed since it was asked for). *out is the answer. */
static int run_op(const struct app *app, struct store_conn *c, const struct job *j,
                  const atomic_bool *stop, json_t **out, struct err *err)
{
    json_t *params = json_loads(j->params ? j->params : "{}", 0, NULL);
    const char *name = json_string_value(json_object_get(params, "op"));
    struct op op = {0};
    struct progress_ctx pc = {c, j->id, name, 0, NULL};
    int rc = FERRY_ERR, kind = -1;
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, op_names[i]))
            kind = i;
    if (kind < 0) {
        err_set(err, ERR_INTERNAL, "job %s has no backup operation", j->id);
        goto out;
    }
    if (parse_op(params, (enum op_kind)kind, &op, err) != FERRY_OK ||
        confine_op(app, &op, err) != FERRY_OK)
        goto out;
    struct cloudside cs;
    pc.cs = &cs;
    rc = cloud_begin(app, c, &op, CLOUDREPO_INDEX, stop, &cs, err);
    if (rc == FERRY_OK)
        rc = kind == OP_CREATE    ? run_create(app, &op, &pc, stop, out, err)
             : kind == OP_RESTORE ? run_restore(app, &op, &pc, stop, out, err)
                                  : run_prune(app, &op, &cs, out, err);
    rc = cloud_end(app, &cs, rc, kind != OP_RESTORE, kind == OP_PRUNE, err);
    if (rc == FERRY_OK) {
        json_object_set_new(*out, "jobId", json_string(j->id));
    } else { /* the run's answer, when its push then failed */
        json_decref(*out);
        *out = NULL;
    }
out:
    op_clear(&op);
    json_decref(params);
    return rc;
}

static int backup_runner(void *app, struct store_conn *c, const struct job *j,
                         const atomic_bool *stop, char **result, char **message, struct err *err)
{
    json_t *out = NULL;
    if (run_op(app, c, j, stop, &out, err) != FERRY_OK)
        return FERRY_ERR;
    *result = jsonutil_to_string(out);
    *message = xstrdup("completed");
    json_decref(out);
    return FERRY_OK;
}

struct job_kind apibackup_job_kind(const struct app *app)
{
    return (struct job_kind){"backup", backup_runner, (void *)app};
}

/* --- requests ------------------------------------------------------------------------- */

/* Runs job id inside the request (with a heartbeat, so the worker leaves it alone). */
static int run_here(struct request *req, const char *id, json_t **out, struct err *err)
{
    struct job j = {0};
    bool found = false;
    if (jobs_get(req->db, id, &j, &found, err) != FERRY_OK)
        return FERRY_ERR;
    struct job_heartbeat *beat = jobs_heartbeat_start(req->app->store, id);
    int rc = run_op(req->app, req->db, &j, &req->app->stopping, out, err);
    jobs_heartbeat_stop(beat);
    char *text = rc == FERRY_OK ? jsonutil_to_string(*out) : NULL;
    jobs_finish(req->db, id, rc == FERRY_OK, text, rc == FERRY_OK ? "completed" : err->msg, NULL);
    free(text);
    jobs_clear(&j);
    return rc;
}

/* Starts an operation as a job: runs it here and answers its result, or (wait false)
 * leaves it to the worker and answers 202 with the job's id. */
static int start_op(struct request *req, json_t *fields, enum op_kind kind, struct err *err)
{
    struct op op = {0};
    bool wait = true;
    char id[40], *params = NULL;
    json_t *out = NULL;
    int rc = FERRY_ERR;
    if (jsonutil_get_bool(fields, "wait", false, &wait, err) != FERRY_OK ||
        parse_op(fields, kind, &op, err) != FERRY_OK || confine_op(req->app, &op, err) != FERRY_OK)
        goto out;
    json_object_set_new(fields, "op", json_string(op_names[kind]));
    params = jsonutil_to_string(fields);
    const char *repo = op.cloud ? op.cloud->name : op.repo_abs;
    if (jobs_create(req->db, "backup", req->cred.user_id, op.source_abs ? op.source_abs : repo,
                    op.target_abs ? op.target_abs : repo, params, wait, id, err) != FERRY_OK)
        goto out;
    if (!wait) {
        char *url = xasprintf("/api/v1/sync/session/%s/status", id);
        jobs_worker_kick(req->app->jobs);
        http_reply_json(
            req, HTTP_ACCEPTED,
            json_pack("{s:s, s:s, s:s}", "jobId", id, "status", "pending", "statusUrl", url));
        free(url);
        rc = FERRY_OK;
        goto out;
    }
    if ((rc = run_here(req, id, &out, err)) == FERRY_OK)
        http_reply_json(req, HTTP_OK, out);
out:
    free(params);
    op_clear(&op);
    return rc;
}

/* The query's fields as a JSON object: counts as integers, wait as a boolean. */
static int query_fields(struct request *req, const char *const *names, json_t *into,
                        struct err *err)
{
    for (size_t i = 0; names[i]; i++) {
        const char *v = http_query(req, names[i]);
        bool number = !strncmp(names[i], "keep", 4) || !strcmp(names[i], "retentionDays");
        char *end;
        if (!v)
            continue;
        if (!strcmp(names[i], "wait")) {
            json_object_set_new(into, "wait", json_boolean(strcmp(v, "false") != 0));
        } else if (number) {
            long long n = strtoll(v, &end, 10);
            if (*end || end == v)
                return err_set(err, ERR_INVALID, "query parameter '%s' must be a number", names[i]);
            json_object_set_new(into, names[i], json_integer(n));
        } else {
            json_object_set_new(into, names[i], json_string(v));
        }
    }
    return FERRY_OK;
}

static int create_backup(struct request *req, struct err *err)
{
    json_t *body;
    if (http_json_body(req, &body, err) != FERRY_OK)
        return FERRY_ERR;
    return start_op(req, body, OP_CREATE, err);
}

static int restore_backup(struct request *req, struct err *err)
{
    json_t *body;
    if (http_json_body(req, &body, err) != FERRY_OK)
        return FERRY_ERR;
    if (!json_object_get(body, "versionId"))
        return err_set(err, ERR_INVALID, "field 'versionId' is required");
    return start_op(req, body, OP_RESTORE, err);
}

static int restore_point_in_time(struct request *req, struct err *err)
{
    static const char *const names[] = {"backupPath", "pointInTime", "restorePath", "wait", NULL};
    json_t *fields = json_object();
    int rc = FERRY_ERR;
    if (query_fields(req, names, fields, err) != FERRY_OK)
        goto out;
    if (!json_object_get(fields, "pointInTime")) {
        err_set(err, ERR_INVALID, "query parameter 'pointInTime' is required");
        goto out;
    }
    rc = start_op(req, fields, OP_RESTORE, err);
out:
    json_decref(fields);
    return rc;
}

/* The seed passes prune's fields as query parameters; a JSON body may carry them too. */
static int prune_backups(struct request *req, struct err *err)
{
    static const char *const names[] = {"backupPath", "retentionDays", "keepLast", "keepDaily",
                                        "keepWeekly", "keepMonthly",   "wait",     NULL};
    json_t *fields = req->json ? json_deep_copy(req->json) : json_object();
    int rc = FERRY_ERR;
    if (!json_is_object(fields)) {
        err_set(err, ERR_INVALID, "the body must be a JSON object");
        goto out;
    }
    if (query_fields(req, names, fields, err) == FERRY_OK)
        rc = start_op(req, fields, OP_PRUNE, err);
out:
    json_decref(fields);
    return rc;
}

static int list_versions(struct request *req, struct err *err)
{
    struct op op = {.repo = http_query(req, "backupPath")};
    struct repo *r = NULL;
    struct snapshot *list = NULL;
    struct cloudside cs = {0};
    size_t n = 0;
    int rc = FERRY_ERR;
    if (!op.repo)
        return err_set(err, ERR_INVALID, "query parameter 'backupPath' is required");
    if (confine_op(req->app, &op, err) != FERRY_OK ||
        cloud_begin(req->app, req->db, &op, 0, &req->app->stopping, &cs, err) != FERRY_OK ||
        open_repo(req->app, &op, false, &r, err) != FERRY_OK ||
        repo_lock(r, false, REPO_LOCK_WAIT_MS, err) != FERRY_OK ||
        snapshot_list(r->path, r->key, &list, &n, err) != FERRY_OK)
        goto out;
    json_t *versions = json_array();
    for (size_t i = n; i-- > 0;) /* newest first */
        json_array_append_new(versions, snapshot_summary_json(&list[i]));
    http_reply_json(req, HTTP_OK,
                    json_pack("{s:o, s:I}", "versions", versions, "totalCount", (json_int_t)n));
    rc = FERRY_OK;
out:
    snapshot_list_free(list, n);
    repo_close(r);
    rc = cloud_end(req->app, &cs, rc, false, false, err);
    op_clear(&op);
    return rc;
}

static const struct route routes[] = {
    {M_POST, "/api/v1/backup/create", create_backup, ROLE_ADMIN | ROLE_USER, SURFACE_V1,
     ROUTE_JSON | ROUTE_STORE, NULL},
    {M_GET, "/api/v1/backup/versions", list_versions, ROLE_ADMIN | ROLE_USER, SURFACE_V1,
     ROUTE_STORE, NULL},
    {M_POST, "/api/v1/backup/restore", restore_backup, ROLE_ADMIN | ROLE_USER, SURFACE_V1,
     ROUTE_JSON | ROUTE_STORE, NULL},
    {M_GET, "/api/v1/backup/restore-point-in-time", restore_point_in_time, ROLE_ADMIN | ROLE_USER,
     SURFACE_V1, ROUTE_STORE, NULL},
    {M_POST, "/api/v1/backup/prune", prune_backups, ROLE_ADMIN | ROLE_USER, SURFACE_V1,
     ROUTE_JSON | ROUTE_STORE, NULL},
};

const struct route_table api_backup_routes = {routes, sizeof(routes) / sizeof(routes[0])};
