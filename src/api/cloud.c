/* cloud.c - EonaCat.Sync's cloud storage calls under /api/v1/cloud/{provider}/ (s3, azure,
 * local): upload, list, download and shared-link, plus the public route that serves the
 * local provider's signed links. Local files must lie in the configured file roots; the
 * providers themselves are cloud/. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "api/api.h"
#include "api/cloud.h"
#include "app.h"
#include "cloud/cloud.h"
#include "cloud/cloudcfg.h"
#include "cloud/usage.h"
#include "util/crashpoint.h"
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/log.h"
#include "util/path.h"
#include "util/timeutil.h"

#define DEFAULT_EXPIRES 3600
#define MAX_EXPIRES 604800 /* 7 days: the longest an S3 presigned URL may last */
#define DEFAULT_LIST_LIMIT 1000
#define MAX_LIST_LIMIT 10000

struct apicloud {
    atomic_int running; /* transfers running inside requests now */
    int max;
};

struct apicloud *apicloud_new(long long threads)
{
    struct apicloud *c = xcalloc(1, sizeof(*c));
    c->max = threads > 1 ? (int)(threads / 2) : 1;
    return c;
}

void apicloud_free(struct apicloud *c)
{
    free(c);
}

/* Takes one of the transfer slots; 429 when none is free. Give it back with release(). */
static int acquire(struct request *req, struct err *err)
{
    struct apicloud *c = req->app->cloud;
    if (atomic_fetch_add(&c->running, 1) < c->max)
        return FERRY_OK;
    atomic_fetch_sub(&c->running, 1);
    http_add_header(req, "Retry-After", "1");
    return err_set(err, ERR_RATE_LIMITED, "too many cloud transfers at once (%d); try again",
                   c->max);
}

static void release(struct request *req)
{
    atomic_fetch_sub(&req->app->cloud->running, 1);
}

/* What one call needs: the opened provider and the settings' own strings. */
struct call {
    struct cloud *cloud;
    enum cloud_provider provider;
    struct cloudcfg own;
    int64_t started_us;
};

static void call_cleanup(struct call *c)
{
    cloud_close(c->cloud);
    cloudcfg_clear(&c->own);
}

static int call_open(struct request *req, struct call *c, struct err *err)
{
    const struct config *cfg = req->app->cfg;
    memset(c, 0, sizeof(*c));
    c->started_us = time_mono_us();
    if (cloud_provider_parse(http_param(req, "provider"), &c->provider, err) != FERRY_OK)
        return FERRY_ERR;
    /* Local links point where the caller reached ferry, unless public-url says otherwise. */
    const char *host = http_header(req, "Host");
    char *base = cfg->public_url || !host || strpbrk(host, "/?#@ ")
                     ? xstrdup(req->app->site_env.public_url)
                     : xasprintf("http://%s", host);
    int rc = cloudcfg_open(cfg, c->provider, base, &req->app->stopping, &c->own, &c->cloud, err);
    free(base);
    return rc;
}

/* Counts a finished transfer in the metrics: a sync operation, and the provider's bytes. */
static void count(struct request *req, const struct call *c, bool ok, uint64_t bytes)
{
    metrics_sync(req->app->metrics, ok, (time_mono_us() - c->started_us) / 1000, bytes);
    metrics_cloud(req->app->metrics, (unsigned)c->provider, bytes);
}

/* Records a stored object for the metrics' cloudStorageUsage. The object is stored whether
 * or not this works, so a failure is logged, not answered. */
static void record_stored(struct request *req, const struct call *c, const char *key, uint64_t size)
{
    struct store_conn *db = NULL;
    struct err e = {0};
    if (store_acquire(req->app->store, &db, &e) != FERRY_OK ||
        cloudusage_stored(db, c->provider, c->own.container, key, size, &e) != FERRY_OK)
        log_warn("cloud_usage_not_recorded",
                 json_pack("{s:s, s:s, s:s}", "msg", "the object's size is not in the metrics",
                           "key", key, "error", e.msg));
    store_release(db);
}

/* A path in the bucket or container: a leading '/' is dropped (the seed writes both
 * "/backups/file.zip" and "backups/file.zip"), and it must be a clean relative path. */
static int object_key(const char *path, const char *field, char **key, struct err *err)
{
    while (*path == '/')
        path++;
    if (strlen(path) > CLOUD_MAX_KEY)
        return err_set(err, ERR_INVALID, "field '%s' is longer than %d bytes", field,
                       CLOUD_MAX_KEY);
    if (path_clean_relative(path, key, err) != FERRY_OK) {
        char why[sizeof(err->msg)]; /* err->msg cannot be both the format's input and output */
        snprintf(why, sizeof(why), "%s", err->msg);
        return err_set(err, ERR_INVALID, "field '%s': %s", field, why);
    }
    return FERRY_OK;
}

/* Resolves localPath: under a file root, never in ferry's own data folder. */
static int confine(const struct app *app, const char *path, char **out, struct err *err)
{
    char data[PATH_MAX];
    if (!app->n_file_roots)
        return err_set(err, ERR_FORBIDDEN,
                       "no file roots are configured (--file-root), so no local file may be named");
    if (path_in_roots((const char *const *)app->file_roots, app->n_file_roots, path, out, err) !=
        FERRY_OK)
        return FERRY_ERR;
    if (realpath(app->cfg->data_dir, data) && path_within(data, *out)) {
        free(*out);
        *out = NULL;
        return err_set(err, ERR_FORBIDDEN, "files in ferry's own data folder cannot be named");
    }
    return FERRY_OK;
}

/* The two paths of an upload or download body. */
static int read_paths(struct request *req, json_t *body, char **key, char **local, struct err *err)
{
    const char *cloud_path, *local_path;
    if (jsonutil_get_string(body, "cloudPath", true, &cloud_path, err) != FERRY_OK ||
        jsonutil_get_string(body, "localPath", true, &local_path, err) != FERRY_OK ||
        object_key(cloud_path, "cloudPath", key, err) != FERRY_OK)
        return FERRY_ERR;
    return confine(req->app, local_path, local, err);
}

static json_t *object_json(const struct cloud_object *o)
{
    char iso[32];
    const char *slash = strrchr(o->key, '/');
    time_iso8601(o->modified_ms, 0, iso);
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "name", slash ? slash + 1 : o->key, "path",
                     o->key, "size", (json_int_t)o->size, "modifiedDate", iso, "eTag",
                     o->etag ? o->etag : "");
}

/* --- upload --------------------------------------------------------------------------- */

static int upload_file(struct request *req, struct call *c, const char *key, const char *local,
                       const json_t *meta, struct err *err)
{
    struct stat st;
    struct cloud_put_result res;
    /* O_NONBLOCK: a FIFO would hold the open until a writer came (and the shutdown) */
    int fd = open(local, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return err_set(err, ERR_NOT_FOUND, "localPath is not a readable file");
    }
    char *fingerprint = xasprintf("%s\n%lld\n%lld.%ld", local, (long long)st.st_size,
                                  (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct cloud_source src = {fd, (uint64_t)st.st_size, fingerprint, NULL, NULL};
    int rc = cloud_put(c->cloud, key, &src, meta, &res, err);
    uint64_t sent = rc == FERRY_OK ? (uint64_t)st.st_size : 0;
    count(req, c, rc == FERRY_OK, sent);
    if (rc == FERRY_OK)
        record_stored(req, c, key, sent);
    if (rc == FERRY_OK)
        http_reply_json(req, HTTP_OK,
                        json_pack("{s:b, s:s, s:I, s:s, s:I, s:s, s:i, s:i}", "success", 1,
                                  "message", "File uploaded successfully", "executionTimeMs",
                                  (json_int_t)((time_mono_us() - c->started_us) / 1000), "path",
                                  key, "size", (json_int_t)st.st_size, "eTag", res.etag, "parts",
                                  (int)res.parts, "partsResumed", (int)res.parts_resumed));
    free(fingerprint);
    close(fd);
    return rc;
}

static int upload(struct request *req, struct err *err)
{
    struct call c;
    char *key = NULL, *local = NULL;
    json_t *meta = NULL;
    int rc = FERRY_ERR;
    json_t *body = http_json_object(req);
    if (!body)
        return FERRY_OK;
    if (call_open(req, &c, err) != FERRY_OK || read_paths(req, body, &key, &local, err) != FERRY_OK)
        goto out;
    meta = json_object_get(body, "metadata");
    if (json_is_null(meta))
        meta = NULL;
    if (cloud_check_metadata(meta, err) != FERRY_OK || acquire(req, err) != FERRY_OK)
        goto out;
    rc = upload_file(req, &c, key, local, meta, err);
    release(req);
out:
    call_cleanup(&c);
    free(key);
    free(local);
    return rc;
}

/* --- download ------------------------------------------------------------------------- */

struct sink {
    int fd;
    uint64_t written;
};

static int write_part(void *ctx, const void *data, size_t len)
{
    struct sink *s = ctx;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(s->fd, (const char *)data + done, len - done);
        if (n <= 0)
            return FERRY_ERR;
        done += (size_t)n;
    }
    s->written += len;
    CRASH_AT("cloud_download_write");
    return FERRY_OK;
}

/* Creates the missing folders above dest (confined already: its existing part is under a
 * root, so what is made is too). */
static void make_parents(const char *dest)
{
    char *p = xstrdup(dest);
    for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(p, 0755);
        *s = '/';
    }
    free(p);
}

/* Fetches the object into the partial file named after its etag, continuing what an
 * earlier attempt left there, then moves it into place. *resumed is where it continued. */
static int fetch(struct call *c, const char *key, const struct cloud_object *o, const char *dest,
                 uint64_t *resumed, struct sink *s, struct err *err)
{
    char h[65];
    struct stat st;
    int rc = FERRY_ERR;
    crypto_sha256_hex(o->etag, strlen(o->etag), h);
    char *part = xasprintf("%s.ferry-part-%.16s", dest, h);
    make_parents(dest);
    /* O_NOFOLLOW: a link planted under the partial file's name must not lead outside. */
    s->fd = open(part, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (s->fd < 0 || fstat(s->fd, &st) != 0) {
        err_set(err, ERR_INTERNAL, "cannot write next to localPath: %s", strerror(errno));
        goto out;
    }
    *resumed = (uint64_t)st.st_size <= o->size ? (uint64_t)st.st_size : 0;
    if (!*resumed && st.st_size && ftruncate(s->fd, 0) != 0)
        goto out;
    struct cloud_range rest = {*resumed, 0};
    if (*resumed < o->size &&
        cloud_get(c->cloud, key, &rest, o->etag, write_part, s, err) != FERRY_OK) {
        if (err->code == ERR_PRECONDITION) /* it changed since: this partial is useless */
            unlink(part);
        goto out;
    }
    if (fsync(s->fd) != 0 || rename(part, dest) != 0) {
        err_set(err, ERR_INTERNAL, "cannot store localPath: %s", strerror(errno));
        goto out;
    }
    rc = FERRY_OK;
out:
    if (s->fd >= 0)
        close(s->fd);
    free(part);
    return rc;
}

static int download(struct request *req, struct err *err)
{
    struct call c;
    struct cloud_object o = {0};
    struct sink s = {-1, 0};
    char *key = NULL, *local = NULL;
    uint64_t resumed = 0;
    int rc = FERRY_ERR;
    json_t *body = http_json_object(req);
    if (!body)
        return FERRY_OK;
    if (call_open(req, &c, err) != FERRY_OK || read_paths(req, body, &key, &local, err) != FERRY_OK)
        goto out;
    if (cloud_head(c.cloud, key, &o, err) != FERRY_OK) {
        if (err->code == ERR_CLOUD) /* the provider failed the transfer: a failed sync */
            count(req, &c, false, 0);
        goto out;
    }
    if (acquire(req, err) != FERRY_OK)
        goto out;
    rc = fetch(&c, key, &o, local, &resumed, &s, err);
    release(req);
    count(req, &c, rc == FERRY_OK, s.written);
    if (rc == FERRY_OK)
        http_reply_json(req, HTTP_OK,
                        json_pack("{s:b, s:s, s:I, s:s, s:I, s:s, s:O, s:I}", "success", 1,
                                  "message", "File downloaded successfully", "executionTimeMs",
                                  (json_int_t)((time_mono_us() - c.started_us) / 1000), "path", key,
                                  "size", (json_int_t)o.size, "eTag", o.etag, "metadata",
                                  o.metadata ? o.metadata : json_object(), "resumedFrom",
                                  (json_int_t)resumed));
out:
    cloud_object_cleanup(&o);
    call_cleanup(&c);
    free(key);
    free(local);
    return rc;
}

/* --- list ----------------------------------------------------------------------------- */

struct listing {
    json_t *files;
    const char *filter;
    size_t total, limit;
};

static int add_object(void *ctx, const struct cloud_object *o)
{
    struct listing *l = ctx;
    const char *slash = strrchr(o->key, '/');
    if (l->filter && fnmatch(l->filter, slash ? slash + 1 : o->key, 0) != 0)
        return FERRY_OK;
    l->total++;
    if (json_array_size(l->files) < l->limit)
        json_array_append_new(l->files, object_json(o));
    return FERRY_OK;
}

static int list(struct request *req, struct err *err)
{
    struct call c;
    char *prefix = NULL;
    const char *raw_prefix = http_query(req, "prefix"), *limit = http_query(req, "limit");
    struct listing l = {json_array(), http_query(req, "filter"), 0, DEFAULT_LIST_LIMIT};
    int rc = FERRY_ERR;
    if (call_open(req, &c, err) != FERRY_OK)
        goto out;
    if (limit) {
        char *end;
        long n = strtol(limit, &end, 10);
        if (*end || n < 1 || n > MAX_LIST_LIMIT) {
            err_set(err, ERR_INVALID, "limit must be between 1 and %d", MAX_LIST_LIMIT);
            goto out;
        }
        l.limit = (size_t)n;
    }
    while (raw_prefix && *raw_prefix == '/')
        raw_prefix++;
    prefix = xstrdup(raw_prefix ? raw_prefix : "");
    rc = cloud_list(c.cloud, prefix, add_object, &l, err);
    if (rc == FERRY_OK)
        http_reply_json(
            req, HTTP_OK,
            json_pack("{s:O, s:I}", "files", l.files, "totalCount", (json_int_t)l.total));
out:
    json_decref(l.files);
    free(prefix);
    call_cleanup(&c);
    return rc;
}

/* --- shared links --------------------------------------------------------------------- */

static int shared_link(struct request *req, struct err *err)
{
    struct call c;
    struct cloud_object o = {0};
    char *key = NULL, *url = NULL, iso[32];
    const char *path = http_query(req, "path"), *expires = http_query(req, "expiresIn");
    long long expires_in = DEFAULT_EXPIRES;
    int rc = FERRY_ERR;
    if (call_open(req, &c, err) != FERRY_OK)
        goto out;
    if (!path || !*path) {
        err_set(err, ERR_INVALID, "query parameter 'path' is required");
        goto out;
    }
    if (expires) {
        char *end;
        expires_in = strtoll(expires, &end, 10);
        if (*end || end == expires || expires_in < 1 || expires_in > MAX_EXPIRES) {
            err_set(err, ERR_INVALID, "expiresIn must be between 1 and %d seconds", MAX_EXPIRES);
            goto out;
        }
    }
    int64_t expires_at = time_now_ms() / 1000 + expires_in;
    if (object_key(path, "path", &key, err) != FERRY_OK ||
        cloud_head(c.cloud, key, &o, err) != FERRY_OK ||
        cloud_presign(c.cloud, key, expires_at, &url, err) != FERRY_OK)
        goto out;
    time_iso8601(expires_at * 1000, 0, iso);
    http_reply_json(req, HTTP_OK, json_pack("{s:s, s:s}", "url", url, "expiresAt", iso));
    rc = FERRY_OK;
out:
    cloud_object_cleanup(&o);
    call_cleanup(&c);
    free(key);
    free(url);
    return rc;
}

/* GET /api/v1/cloud/local/shared/{path}?expires=&signature=: a local link, public (the
 * signature is the credential). A wrong or expired link is 403, the same answer for both
 * a bad signature and a missing file, so links reveal nothing about other names. */
static int serve_link(struct request *req, struct err *err)
{
    const char *expires = http_query(req, "expires"), *sig = http_query(req, "signature");
    char key_secret[65], *key = NULL, *path = NULL, *end = NULL;
    const struct config *cfg = req->app->cfg;
    int rc = FERRY_ERR;
    long long at = expires ? strtoll(expires, &end, 10) : 0;
    if (!cfg->local_cloud_dir || !expires || !sig || *end ||
        cloudcfg_link_key(cfg->data_dir, key_secret, err) != FERRY_OK ||
        path_clean_relative(http_param(req, "*"), &key, err) != FERRY_OK ||
        !cloud_local_link_valid(key_secret, key, at, sig)) {
        err_set(err, ERR_FORBIDDEN, "the link is not valid");
        goto out;
    }
    if (at < time_now_ms() / 1000) {
        err_set(err, ERR_FORBIDDEN, "the link has expired");
        goto out;
    }
    struct stat st;
    int fd = -1;
    if (path_confine(cfg->local_cloud_dir, key, &path, err) != FERRY_OK ||
        (fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0 || fstat(fd, &st) != 0 ||
        !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        err_set(err, ERR_NOT_FOUND, "the linked file is gone");
        goto out;
    }
    http_reply_file(req, HTTP_OK, "application/octet-stream", fd, 0, (uint64_t)st.st_size);
    rc = FERRY_OK;
out:
    OPENSSL_cleanse(key_secret, sizeof(key_secret));
    free(key);
    free(path);
    return rc;
}

static const struct route routes[] = {
    {M_GET, "/api/v1/cloud/local/shared/*", serve_link, 0, SURFACE_V1, ROUTE_PUBLIC, NULL},
    {M_POST, "/api/v1/cloud/{provider}/upload", upload, ROLE_ADMIN | ROLE_USER, SURFACE_V1,
     ROUTE_JSON, NULL},
    {M_GET, "/api/v1/cloud/{provider}/list", list, ROLE_ADMIN | ROLE_USER, SURFACE_V1, 0, NULL},
    {M_POST, "/api/v1/cloud/{provider}/download", download, ROLE_ADMIN | ROLE_USER, SURFACE_V1,
     ROUTE_JSON, NULL},
    {M_GET, "/api/v1/cloud/{provider}/shared-link", shared_link, ROLE_ADMIN | ROLE_USER, SURFACE_V1,
     0, NULL},
};

const struct route_table api_cloud_routes = {routes, sizeof(routes) / sizeof(routes[0])};
