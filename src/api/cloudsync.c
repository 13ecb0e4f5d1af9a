/* cloudsync.c - see cloudsync.h. The folder side is checked by api/dirsync.c (the same
 * roots as directory sync); this file turns a cloud location into an opened provider and
 * a key prefix, and the transfer's outcome into the seed's result and progress. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/cloudsync.h"
#include "app.h"
#include "cloud/cloudcfg.h"
#include "cloud/treesync.h"
#include "jobs/jobs.h"
#include "util/jsonutil.h"
#include "util/path.h"
#include "util/timeutil.h"

#define MAX_EXCLUDES 64
#define MAX_SPARE 64 /* other locations inside a session's cloud place */

int apicloudsync_params(json_t *params, const struct location *cloud, bool upload, struct err *err)
{
    (void)err; /* the options were read (and checked) as directory sync's */
    json_object_set_new(params, "cloudSync", json_true());
    json_object_set_new(params, "cloudLocation", json_string(cloud->name));
    json_object_set_new(params, "upload", json_boolean(upload));
    return FERRY_OK;
}

/* A cloud location's target split into its container (bucket, container, or the local
 * provider's folder) and the prefix of its keys ("" or ending in '/'). */
static int split_target(const struct location *loc, enum cloud_provider *p, char **container,
                        char **prefix, struct err *err)
{
    *p = loc->kind == LOC_S3 ? CLOUD_S3 : loc->kind == LOC_AZURE ? CLOUD_AZURE : CLOUD_LOCAL;
    *prefix = NULL;
    if (*p == CLOUD_LOCAL) {
        *container = xstrdup(loc->target);
        *prefix = xstrdup("");
        return FERRY_OK;
    }
    const char *slash = strchr(loc->target, '/');
    *container =
        slash ? xstrndup(loc->target, (size_t)(slash - loc->target)) : xstrdup(loc->target);
    char *clean = NULL;
    if (!slash || !slash[strspn(slash, "/")]) {
        *prefix = xstrdup("");
    } else if (path_clean_relative(slash + 1, &clean, NULL) == FERRY_OK) {
        *prefix = xasprintf("%s/", clean);
        free(clean);
    }
    if (!**container || !*prefix)
        return err_set(err, ERR_INVALID, "location '%s' must be %s:CONTAINER[/PREFIX]", loc->name,
                       locations_kind_name(loc->kind));
    return FERRY_OK;
}

int apicloudsync_open(const struct app *app, const struct location *loc, const atomic_bool *stop,
                      struct apicloud_place *out, struct err *err)
{
    enum cloud_provider p;
    char *container = NULL;
    int rc = FERRY_ERR;
    memset(out, 0, sizeof(*out));
    if (split_target(loc, &p, &container, &out->prefix, err) == FERRY_OK)
        rc = cloudcfg_open_at(app->cfg, p, container, app->site_env.public_url, stop, &out->own,
                              &out->cloud, err);
    free(container);
    return rc;
}

void apicloudsync_close(struct apicloud_place *p)
{
    cloud_close(p->cloud);
    cloudcfg_clear(&p->own);
    free(p->prefix);
    memset(p, 0, sizeof(*p));
}

int apicloudsync_check(const struct app *app, const struct location *cloud, struct err *err)
{
    struct apicloud_place place;
    int rc = apicloudsync_open(app, cloud, NULL, &place, err);
    apicloudsync_close(&place);
    return rc;
}

struct progress_ctx {
    struct store_conn *c;
    const char *job;
    bool upload;
    int64_t last_ms;
};

static void report_progress(void *arg, const struct treesync_progress *p)
{
    struct progress_ctx *ctx = arg;
    if (!jobs_progress_due(&ctx->last_ms, p->files_done == p->files_total && !p->current))
        return;
    char *msg = xasprintf(
        "%s: %lld of %lld files, %lld of %lld bytes%s%s", ctx->upload ? "uploading" : "downloading",
        (long long)p->files_done, (long long)p->files_total, (long long)p->bytes_done,
        (long long)p->bytes_total, p->current ? "; now " : "", p->current ? p->current : "");
    jobs_progress(ctx->c, ctx->job, p->bytes_done, p->bytes_total, p->files_done, p->files_total,
                  msg, NULL);
    free(msg);
}

static json_t *result_json(const struct treesync_result *r, bool upload, int64_t started_ms,
                           int64_t ms)
{
    char iso[32];
    time_iso8601(started_ms + ms, 0, iso);
    return json_pack(
        "{s:b, s:I, s:i, s:O, s:s, s:I, s:I, s:I, s:I, s:I, s:[], s:s, s:I, s:I}", "success",
        json_array_size(r->errors) == 0, "changesApplied", (json_int_t)r->copied,
        "conflictsEncountered", 0, "errors", r->errors, "syncedAt", iso, "executionTimeMs",
        (json_int_t)ms, "filesCopied", (json_int_t)r->copied, "filesDeleted",
        (json_int_t)r->deleted, "filesUnchanged", (json_int_t)r->unchanged, "bytesCopied",
        (json_int_t)r->bytes, "conflicts", "direction", upload ? "upload" : "download",
        "partsResumed", (json_int_t)r->parts_resumed, "bytesResumed", (json_int_t)r->bytes_resumed);
}

/* Reads the options a session's params carry into o (the patterns stay in params). */
static int read_options(json_t *params, const char **exclude, struct treesync_options *o,
                        struct err *err)
{
    json_t *patterns = json_object_get(params, "excludePatterns"), *v;
    const char *type = json_string_value(json_object_get(params, "syncType"));
    size_t i;
    o->upload = json_is_true(json_object_get(params, "upload"));
    o->incremental = !type || strcmp(type, "Full") != 0;
    o->delete_missing = json_is_true(json_object_get(params, "deleteMissingInTarget"));
    o->verify = json_is_true(json_object_get(params, "verifyIntegrity"));
    if (json_array_size(patterns) > MAX_EXCLUDES)
        return err_set(err, ERR_INVALID, "field 'excludePatterns' has more than %d patterns",
                       MAX_EXCLUDES);
    json_array_foreach(patterns, i, v)
    {
        if (!json_is_string(v))
            return err_set(err, ERR_INVALID, "field 'excludePatterns' must hold strings");
        exclude[o->n_exclude++] = json_string_value(v);
    }
    o->exclude = exclude;
    return FERRY_OK;
}

/* Where location l lies inside place, as a folder relative to it (owned), or NULL: the
 * same provider and container with a longer prefix, or for the local provider a folder
 * inside place's folder. */
static char *inner_folder(const struct location *l, const struct apicloud_place *place)
{
    enum cloud_provider p;
    char *container = NULL, *prefix = NULL, *inner = NULL;
    struct err ignored = {0};
    const char *mine = place->own.container;
    size_t n = strlen(place->prefix);
    if (!locations_is_cloud(l->kind) ||
        split_target(l, &p, &container, &prefix, &ignored) != FERRY_OK ||
        p != cloud_kind(place->cloud)) {
        /* not a place of this provider */
    } else if (p == CLOUD_LOCAL) {
        if (container[0] == '/' && strcmp(container, mine) != 0 && path_within(mine, container))
            inner = xstrdup(container + strlen(mine) + 1);
    } else if (!strcmp(container, mine) && strlen(prefix) > n &&
               !strncmp(prefix, place->prefix, n)) {
        inner = xstrndup(prefix + n, strlen(prefix) - n - 1); /* without the final '/' */
    }
    free(container);
    free(prefix);
    return inner;
}

/* The other cloud locations inside loc's place, into spare (owned): a session's
 * deleteMissingInTarget removes nothing of theirs. */
static size_t inner_locations(const struct locations *locs, const struct location *loc,
                              const struct apicloud_place *place, char **spare)
{
    size_t n = 0;
    for (size_t i = 0; i < locs->n && n < MAX_SPARE; i++) {
        char *inner = &locs->items[i] != loc ? inner_folder(&locs->items[i], place) : NULL;
        if (inner)
            spare[n++] = inner;
    }
    return n;
}

/* Runs the transfer on an opened provider and counts it. */
static int transfer(const struct app *app, struct store_conn *c, struct treesync_options *o,
                    json_t **result, struct err *err)
{
    struct treesync_result r;
    int64_t started = time_now_ms(), t0 = time_mono_us();
    int rc = treesync_run(c, o, &r, err);
    int64_t ms = (time_mono_us() - t0) / 1000;
    metrics_sync(app->metrics, rc == FERRY_OK && json_array_size(r.errors) == 0, ms,
                 (uint64_t)r.bytes);
    metrics_cloud(app->metrics, (unsigned)cloud_kind(o->cloud), (uint64_t)r.bytes);
    if (rc == FERRY_OK)
        *result = result_json(&r, o->upload, started, ms);
    json_decref(r.errors);
    return rc;
}

int apicloudsync_run(const struct app *app, struct store_conn *c, const char *job_id,
                     json_t *params, const char *folder, const atomic_bool *stop, json_t **result,
                     struct err *err)
{
    struct locations locs = {0};
    struct apicloud_place place = {0};
    const char *exclude[MAX_EXCLUDES];
    char *spare[MAX_SPARE];
    size_t n_spare = 0;
    const char *name = json_string_value(json_object_get(params, "cloudLocation"));
    struct treesync_options o = {.folder = folder, .stop = stop};
    struct progress_ctx ctx = {c, job_id, false, 0};
    int rc = FERRY_ERR;
    jobs_progress(c, job_id, 0, 0, 0, 0, "listing both sides", NULL);
    if (locations_parse(app->cfg->locations, &locs, err) != FERRY_OK)
        goto out;
    const struct location *loc = locations_find(&locs, name);
    if (!loc || !locations_is_cloud(loc->kind)) {
        err_set(err, ERR_NOT_FOUND, "cloud location '%s' is no longer configured",
                name ? name : "");
        goto out;
    }
    if (read_options(params, exclude, &o, err) != FERRY_OK ||
        apicloudsync_open(app, loc, stop, &place, err) != FERRY_OK)
        goto out;
    ctx.upload = o.upload;
    o.cloud = place.cloud;
    o.container = place.own.container;
    o.prefix = place.prefix;
    o.progress = report_progress;
    o.ctx = &ctx;
    n_spare = inner_locations(&locs, loc, &place, spare);
    o.spare = (const char *const *)spare;
    o.n_spare = n_spare;
    rc = transfer(app, c, &o, result, err);
out:
    for (size_t i = 0; i < n_spare; i++)
        free(spare[i]);
    apicloudsync_close(&place);
    locations_cleanup(&locs);
    return rc;
}
