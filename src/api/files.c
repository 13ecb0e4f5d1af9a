/* files.c - Pinakes' chunked uploads and ranged downloads (under /api/v1/sync and
 * /api/sync), and ferry's own listing and deletion of file entries (/api/v1/files), as
 * an adapter over the files subsystem (files/filesys.h).
 *
 * A chunked upload is a folder DATA_DIR/uploads/<id>/ holding one file per received
 * chunk. A chunk streams into a temporary file there, hashed as it arrives; it is
 * claimed in the database (index, size, SHA-256) and only then renamed to its index, so
 * a chunk on record whose file is missing (a crash between the two) is simply asked for
 * again. Completing (filesys_complete) makes the chunks a blob and commits the file
 * entry, which the change feed then shows in the "files" namespace. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "api/files.h"
#include "app.h"
#include "http/auth.h"
#include "files/files.h"
#include "files/filesys.h"
#include "files/spool.h"
#include "files/uploads.h"
#include "sync/push.h"
#include "http/range.h"
#include "util/jsonutil.h"
#include "util/log.h"
#include "util/path.h"
#include "util/timeutil.h"

#define DEFAULT_CHUNK_SIZE (8LL * 1024 * 1024)
#define MIN_CHUNK_SIZE 1024LL
#define MAX_CHUNKS 100000

/* --- shared helpers ------------------------------------------------------------------ */

bool apifiles_allowed(struct request *req)
{
    const char *scope = req->cred.tables[0] ? req->cred.tables : NULL;
    if (push_scope_allows(scope, FILES_NAMESPACE))
        return true;
    http_reply_error(req, ERR_FORBIDDEN, "this credential may not use the files namespace");
    return false;
}

/* Cleans a path from a request; replies 400 and returns NULL when it is not one. */
char *apifiles_clean_path(struct request *req, const char *raw)
{
    struct err err = {0};
    char *clean = NULL;
    json_t *probe = raw ? json_string(raw) : NULL; /* NULL for bytes that are not UTF-8 */
    if (!probe) {
        http_reply_error(req, ERR_INVALID, raw ? "path is not UTF-8" : "path is missing");
        return NULL;
    }
    json_decref(probe);
    if (path_clean_relative(raw, &clean, &err) != FERRY_OK) {
        http_reply_err(req, &err);
        return NULL;
    }
    return clean;
}

struct filescope apifiles_scope(const struct request *req)
{
    return filesys_scope(req->app->files, req->cred.user_id, req->cred.role == ROLE_ADMIN);
}

const char *apifiles_owner(const struct request *req, const struct filescope *s, const char *path)
{
    const char *named = s->admin ? http_query(req, "owner") : NULL;
    if (named)
        return *named ? named : NULL;
    return filescope_owner(s, path);
}

/* The live entry at path that the caller may see; ERR_NOT_FOUND otherwise, the same for
 * another user's file as for none, so the answer says nothing of what others have. */
static int visible_entry(struct request *req, const char *path, struct file_entry *e,
                         struct err *err)
{
    struct filescope s = apifiles_scope(req);
    bool found = false;
    if (files_get(req->db, apifiles_owner(req, &s, path), path, e, &found, err) != FERRY_OK)
        return FERRY_ERR;
    if (!found || e->deleted || !filescope_sees(&s, e->owner, e->path))
        return err_set(err, ERR_NOT_FOUND, "no such file");
    return FERRY_OK;
}

const char *apifiles_device_of(const struct request *req)
{
    return req->cred.device_id[0] ? req->cred.device_id : NULL;
}

/* --- sessions ------------------------------------------------------------------------- */

bool apifiles_load_upload(struct request *req, struct store_conn *c, const char *id,
                          enum upload_kind kind, struct upload *u)
{
    struct err err = {0};
    bool found = false;
    bool chunked = kind == UPLOAD_CHUNKED; /* each surface names its uploads its way */
    if (uploads_get(c, id, u, &found, &err) != FERRY_OK) {
        http_reply_err(req, &err);
        return false;
    }
    if (!found || u->kind != kind || !auth_owns(req, u->user_id)) {
        http_reply_error(req, ERR_NOT_FOUND, chunked ? "no such upload session" : "no such upload");
        return false;
    }
    if (!u->completed_at && u->expires_at <= time_now_ms()) {
        http_reply_error(req, ERR_GONE,
                         chunked ? "the upload session has expired; start a new one"
                                 : "the upload has expired");
        return false;
    }
    return true;
}

static int64_t chunk_length(const struct upload *u, int64_t idx)
{
    int64_t start = idx * u->chunk_size;
    return u->size - start < u->chunk_size ? u->size - start : u->chunk_size;
}

static json_t *session_json(const struct upload *u, json_t *received)
{
    if (u->completed_at) { /* its chunk records are gone with its folder: all arrived */
        json_array_clear(received);
        for (int64_t i = 0; i < u->chunk_count; i++)
            json_array_append_new(received, json_integer(i));
    }
    char expires[32], created[32];
    time_iso8601(u->expires_at, 0, expires);
    time_iso8601(u->created_at, 0, created);
    json_t *file = u->result ? json_loads(u->result, 0, NULL) : NULL;
    return json_pack("{s:s, s:s, s:I, s:s?, s:I, s:I, s:o, s:I, s:b, s:s, s:s, s:o}", "id", u->id,
                     "path", u->path ? u->path : "", "size", (json_int_t)u->size, "sha256",
                     u->sha256[0] ? u->sha256 : NULL, "chunkSize", (json_int_t)u->chunk_size,
                     "chunkCount", (json_int_t)u->chunk_count, "receivedChunks", received,
                     "receivedBytes", (json_int_t)u->received, "complete", u->completed_at != 0,
                     "createdAt", created, "expiresAt", expires, "file", file ? file : json_null());
}

static int read_create_body(struct request *req, json_t *body, struct upload *u, struct err *err)
{
    const char *path = NULL, *sha = NULL;
    int64_t size = -1, chunk = 0;
    if (jsonutil_get_string(body, "path", true, &path, err) != FERRY_OK ||
        jsonutil_get_int(body, "size", true, &size, err) != FERRY_OK ||
        jsonutil_get_string(body, "sha256", false, &sha, err) != FERRY_OK ||
        jsonutil_get_int(body, "chunk_size", false, &chunk, err) != FERRY_OK ||
        jsonutil_get_int(body, "chunkSize", false, &chunk, err) != FERRY_OK)
        return FERRY_ERR;
    if (size < 0)
        return err_set(err, ERR_INVALID, "field 'size' must be 0 or more");
    if (size > req->app->cfg->max_upload)
        return err_set(err, ERR_TOO_LARGE, "size %lld is over the upload limit of %lld bytes",
                       (long long)size, req->app->cfg->max_upload);
    if (chunk == 0)
        chunk = DEFAULT_CHUNK_SIZE;
    if (chunk < MIN_CHUNK_SIZE || chunk > req->app->cfg->max_chunk_size)
        return err_set(err, ERR_INVALID, "field 'chunk_size' must be from %lld to %lld bytes",
                       MIN_CHUNK_SIZE, req->app->cfg->max_chunk_size);
    if (sha) {
        char lower[65];
        snprintf(lower, sizeof(lower), "%s", sha);
        for (char *p = lower; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'F' ? *p + 32 : *p);
        if (strlen(sha) != 64 || !blob_valid_hex(lower))
            return err_set(err, ERR_INVALID, "field 'sha256' must be 64 hex digits");
        memcpy(u->sha256, lower, sizeof(u->sha256));
    }
    u->path = apifiles_clean_path(req, path);
    if (!u->path)
        return FERRY_ERR; /* replied */
    u->size = size;
    u->chunk_size = chunk;
    u->chunk_count = (size + chunk - 1) / chunk;
    if (u->chunk_count > MAX_CHUNKS)
        return err_set(err, ERR_INVALID,
                       "%lld chunks are too many (at most %d): choose a larger chunk_size",
                       (long long)u->chunk_count, MAX_CHUNKS);
    return FERRY_OK;
}

static int create_upload(struct request *req, struct err *err)
{
    struct upload u = {0};
    struct store_conn *c = req->db;
    int rc = FERRY_ERR;
    json_t *body = http_json_object(req);
    if (!body || !apifiles_allowed(req))
        return FERRY_OK;
    /* (a path the check refused was answered already: the error then has no effect) */
    if (read_create_body(req, body, &u, err) != FERRY_OK)
        goto out;
    u.kind = UPLOAD_CHUNKED;
    u.user_id = xstrdup(req->cred.user_id);
    u.device_id = apifiles_device_of(req) ? xstrdup(req->cred.device_id) : NULL;
    u.expires_at = time_now_ms() + req->app->cfg->upload_expiry * 1000;
    if (uploads_create(c, &u, err) != FERRY_OK)
        goto out;
    if (filesys_make_upload(req->app->files, u.id, false, err) != FERRY_OK) {
        bool found;
        uploads_delete(c, u.id, &found, NULL);
        goto out;
    }
    http_reply_json(req, 200, session_json(&u, json_array()));
    rc = FERRY_OK;
out:
    uploads_clear(&u);
    return rc;
}

static int get_upload(struct request *req, struct err *err)
{
    struct upload u = {0};
    json_t *received = NULL;
    int rc = FERRY_OK;
    if (!apifiles_allowed(req))
        return FERRY_OK;
    if (apifiles_load_upload(req, req->db, http_param(req, "id"), UPLOAD_CHUNKED, &u) &&
        (rc = uploads_chunks(req->db, u.id, &received, err)) == FERRY_OK)
        http_reply_json(req, 200, session_json(&u, json_incref(received)));
    json_decref(received);
    uploads_clear(&u);
    return rc;
}

static int delete_upload(struct request *req, struct err *err)
{
    struct upload u = {0};
    int rc = FERRY_OK;
    if (!apifiles_allowed(req))
        return FERRY_OK;
    if (apifiles_load_upload(req, req->db, http_param(req, "id"), UPLOAD_CHUNKED, &u) &&
        (rc = filesys_delete_upload(req->app->files, req->db, u.id, err)) == FERRY_OK)
        http_reply_text(req, 204, NULL, "", 0);
    uploads_clear(&u);
    return rc;
}

/* --- chunks (streamed) ---------------------------------------------------------------- */

struct chunk_put {
    struct upload u;
    int64_t idx, expect;
    struct spool *spool;
};

static void chunk_free(struct chunk_put *cp)
{
    if (!cp)
        return;
    spool_discard(cp->spool);
    uploads_clear(&cp->u);
    free(cp);
}

static bool parse_index(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || end == text || v < 0 || text[0] == '+' || text[0] == ' ')
        return false;
    *out = v;
    return true;
}

static void chunk_open(struct request *req)
{
    struct err err = {0};
    struct chunk_put *cp = xcalloc(1, sizeof(*cp));
    const char *index = http_param(req, "index");
    if (!apifiles_allowed(req) ||
        !apifiles_load_upload(req, req->db, http_param(req, "id"), UPLOAD_CHUNKED, &cp->u))
        goto fail;
    if (cp->u.completed_at) {
        http_reply_error(req, ERR_CONFLICT, "the upload is complete already");
        goto fail;
    }
    if (!parse_index(index, &cp->idx) || cp->idx >= cp->u.chunk_count) {
        char *msg = xasprintf("chunk index '%.40s' is out of range: this upload has chunks 0 to "
                              "%lld",
                              index, (long long)cp->u.chunk_count - 1);
        http_reply_error(req, ERR_INVALID, msg);
        free(msg);
        goto fail;
    }
    cp->expect = chunk_length(&cp->u, cp->idx);
    const char *length = http_header(req, "Content-Length");
    if (length && strtoll(length, NULL, 10) != cp->expect) {
        char *msg = xasprintf("chunk %lld must be %lld bytes, not %s", (long long)cp->idx,
                              (long long)cp->expect, length);
        http_reply_error(req, ERR_INVALID, msg);
        free(msg);
        goto fail;
    }
    char *dir = filesys_spool_dir(req->app->files, cp->u.id);
    int rc = spool_new(dir, &cp->spool, &err);
    free(dir);
    if (rc != FERRY_OK) {
        http_reply_err(req, &err);
        goto fail;
    }
    req->sink_ctx = cp;
    return;
fail:
    chunk_free(cp);
}

static bool chunk_write(struct request *req, const char *data, size_t len)
{
    struct chunk_put *cp = req->sink_ctx;
    struct err err = {0};
    if (spool_size(cp->spool) + len > (uint64_t)cp->expect) {
        char *msg = xasprintf("chunk %lld must be %lld bytes; more arrived", (long long)cp->idx,
                              (long long)cp->expect);
        http_reply_error(req, ERR_INVALID, msg);
        free(msg);
        return false;
    }
    if (spool_write(cp->spool, data, len, &err) != FERRY_OK) {
        http_reply_err(req, &err);
        return false;
    }
    return true;
}

static void chunk_release(struct request *req)
{
    chunk_free(req->sink_ctx);
    req->sink_ctx = NULL;
}

/* Keeps the chunk's bytes under its index, after claiming it. */
static int keep_chunk(struct request *req, struct store_conn *c, struct chunk_put *cp,
                      const char *sha, bool *fresh, struct err *err)
{
    char have[65];
    bool claimed = false;
    int64_t size = (int64_t)spool_size(cp->spool);
    *fresh = false;
    if (uploads_claim_chunk(c, cp->u.id, cp->idx, size, sha, &claimed, have, err) != FERRY_OK)
        return FERRY_ERR;
    if (!claimed) {
        if (strcmp(have, sha) != 0)
            return err_set(err, ERR_INVALID,
                           "chunk %lld was received before with different bytes (sha256 %s, "
                           "now %s)",
                           (long long)cp->idx, have, sha);
        return FERRY_OK; /* the same bytes again: nothing to do */
    }
    int rc = filesys_keep_chunk(req->app->files, cp->u.id, cp->idx, cp->spool, err);
    cp->spool = NULL;
    if (rc != FERRY_OK)
        uploads_forget_chunk(c, cp->u.id, cp->idx, NULL);
    *fresh = rc == FERRY_OK;
    return rc;
}

static int put_chunk(struct request *req, struct err *err)
{
    struct chunk_put *cp = req->sink_ctx;
    char sha[65];
    bool fresh = false;
    if (!cp) /* a request without a body never opened the sink's file */
        return err_set(err, ERR_INVALID, "the chunk's bytes are missing");
    if ((int64_t)spool_size(cp->spool) != cp->expect)
        return err_set(err, ERR_INVALID, "chunk %lld must be %lld bytes, not %llu",
                       (long long)cp->idx, (long long)cp->expect,
                       (unsigned long long)spool_size(cp->spool));
    spool_hash(cp->spool, sha);
    if (keep_chunk(req, req->db, cp, sha, &fresh, err) != FERRY_OK)
        return FERRY_ERR;
    http_reply_json(req, 200,
                    json_pack("{s:s, s:I, s:I, s:s, s:b}", "id", cp->u.id, "index",
                              (json_int_t)cp->idx, "size", (json_int_t)cp->expect, "sha256", sha,
                              "stored", fresh));
    return FERRY_OK;
}

static const struct body_sink chunk_sink = {chunk_open, chunk_write, chunk_release};

/* --- completing ----------------------------------------------------------------------- */

/* The answer for an upload another request has completed: the same entry, or 409
 * while it is still being completed. */
static void completed_elsewhere(struct request *req, struct store_conn *c, const char *id)
{
    struct upload u = {0};
    if (apifiles_load_upload(req, c, id, UPLOAD_CHUNKED, &u)) {
        if (u.completed_at)
            http_reply_json(req, 200, json_loads(u.result, 0, NULL));
        else
            http_reply_error(req, ERR_CONFLICT, "the upload is being completed; ask again shortly");
    }
    uploads_clear(&u);
}

static int complete_upload(struct request *req, struct err *err)
{
    struct upload u = {0};
    char *result = NULL;
    int rc = FERRY_OK;
    if (!apifiles_allowed(req) ||
        !apifiles_load_upload(req, req->db, http_param(req, "id"), UPLOAD_CHUNKED, &u))
        goto out;
    rc = filesys_complete(req->app->files, req->db, &u, &result, err);
    if (rc == FERRY_OK) {
        http_reply_json(req, 200, json_loads(result, 0, NULL)); /* twice: the same answer */
    } else if (err->code == ERR_CONFLICT) {
        completed_elsewhere(req, req->db, u.id);
        rc = FERRY_OK;
    }
out:
    free(result);
    uploads_clear(&u);
    return rc;
}

/* --- downloads ------------------------------------------------------------------------ */

#define BLOB_LINK_S 300 /* a redirect's presigned URL works this long */

/* 307 to a presigned URL of blob hex in an S3 store. */
static int redirect_to_blob(struct request *req, const char *hex, struct err *err)
{
    char *url = NULL;
    if (blob_presign(req->app->files->blobs, hex, time_now_ms() / 1000 + BLOB_LINK_S, &url, err) !=
        FERRY_OK)
        return FERRY_ERR;
    http_add_header(req, "Location", url);
    http_add_header(req, "Cache-Control", "no-store");
    http_reply_text(req, 307, NULL, "", 0);
    free(url);
    return FERRY_OK;
}

/* A proxied download from an S3 store is sent in pieces, each fetched as the client takes
 * the last one: a large file costs neither its size in local disk or memory nor the whole
 * transfer before the first byte. A piece that cannot be fetched cuts the answer. */
#define PROXY_PIECE (1024 * 1024)

struct proxied {
    struct blob_store *bs;
    char hex[65];
    uint64_t next, end;
    struct buf first; /* fetched before the answer, so a missing blob is a proper error */
};

static int proxy_fill(void *ctx, struct buf *out)
{
    struct proxied *p = ctx;
    struct err err = {0};
    uint64_t n = p->end - p->next < PROXY_PIECE ? p->end - p->next : PROXY_PIECE;
    if (n && blob_read(p->bs, p->hex, p->next, n, out, &err) != FERRY_OK) {
        log_warn("download_cut", json_pack("{s:s, s:s, s:I}", "msg", err.msg, "sha256", p->hex,
                                           "offset", (json_int_t)p->next));
        return -1;
    }
    p->next += n;
    return p->next < p->end ? 1 : 0;
}

static void proxy_done(void *ctx)
{
    struct proxied *p = ctx;
    buf_cleanup(&p->first);
    free(p);
}

/* A proxy for len bytes of blob hex from start, its first piece fetched (*out; the
 * answer is set up by proxy_reply once its headers are). */
static int proxy_open(struct request *req, const char *hex, uint64_t start, uint64_t len,
                      struct proxied **out, struct err *err)
{
    struct proxied *p = xcalloc(1, sizeof(*p));
    p->bs = req->app->files->blobs;
    snprintf(p->hex, sizeof(p->hex), "%s", hex);
    p->next = start;
    p->end = start + len;
    buf_init(&p->first);
    uint64_t n = len < PROXY_PIECE ? len : PROXY_PIECE;
    if (n && blob_read(p->bs, hex, start, n, &p->first, err) != FERRY_OK) {
        proxy_done(p);
        return FERRY_ERR;
    }
    p->next += n;
    *out = p;
    return FERRY_OK;
}

static void proxy_reply(struct request *req, int status, struct proxied *p, uint64_t len)
{
    http_reply_stream(req, status, "application/octet-stream", &p->first, proxy_fill, proxy_done,
                      p);
    http_stream_length(req, len);
}

static int download(struct request *req, struct err *err)
{
    struct file_entry e = {0};
    uint64_t start = 0, len = 0;
    char etag[72], *path = NULL;
    int rc = FERRY_ERR;
    if (!apifiles_allowed(req) || !(path = apifiles_clean_path(req, http_param(req, "*"))))
        return FERRY_OK;
    if (visible_entry(req, path, &e, err) != FERRY_OK)
        goto out;
    rc = FERRY_OK;
    snprintf(etag, sizeof(etag), "\"%s\"", e.sha256);
    http_add_header(req, "ETag", etag);
    http_add_header(req, "Accept-Ranges", "bytes");
    const char *inm = http_header(req, "If-None-Match");
    if (inm && http_etag_listed(inm, etag)) {
        http_reply_text(req, 304, NULL, "", 0);
        goto out;
    }
    const char *range = http_header(req, "Range"), *if_range = http_header(req, "If-Range");
    /* If-Range with another tag (or a date, which ferry does not compare): whole file */
    enum range_result rr = range && (!if_range || !strcmp(if_range, etag))
                               ? http_parse_range(range, (uint64_t)e.size, &start, &len)
                               : RANGE_IGNORE;
    if (rr == RANGE_UNSATISFIABLE) {
        char *cr = xasprintf("bytes */%lld", (long long)e.size);
        http_add_header(req, "Content-Range", cr);
        free(cr);
        http_reply_error(req, ERR_RANGE, "the range starts past the end of the file");
        goto out;
    }
    bool partial = rr == RANGE_SERVE;
    if (!partial) {
        start = 0;
        len = (uint64_t)e.size;
    }
    if (req->app->files->redirect_downloads) { /* the client asks S3, sending its Range */
        rc = redirect_to_blob(req, e.sha256, err);
        goto out;
    }
    int fd = -1;
    struct proxied *proxy = NULL;
    struct blob_store *blobs = req->app->files->blobs;
    if ((blob_remote(blobs) ? proxy_open(req, e.sha256, start, len, &proxy, err)
                            : blob_open(blobs, e.sha256, &fd, err)) != FERRY_OK) {
        rc = FERRY_ERR;
        goto out;
    }
    if (partial) {
        char *cr = xasprintf("bytes %llu-%llu/%lld", (unsigned long long)start,
                             (unsigned long long)(start + len - 1), (long long)e.size);
        http_add_header(req, "Content-Range", cr);
        free(cr);
    }
    char *version = xasprintf("%lld", (long long)e.version);
    http_add_header(req, "X-File-Version", version);
    free(version);
    if (proxy)
        proxy_reply(req, partial ? 206 : 200, proxy, len);
    else
        http_reply_file(req, partial ? 206 : 200, "application/octet-stream", fd, start, len);
out:
    free(path);
    files_entry_clear(&e);
    return rc;
}

/* --- file entries (/api/v1/files) ----------------------------------------------------- */

static int list_files(struct request *req, struct err *err)
{
    json_t *items = NULL;
    const char *prefix = http_query(req, "prefix"), *after = http_query(req, "after");
    const char *limit_text = http_query(req, "limit");
    int64_t limit = 1000;
    if (!apifiles_allowed(req))
        return FERRY_OK;
    if (limit_text && (!parse_index(limit_text, &limit) || limit < 1 || limit > 1000))
        return err_set(err, ERR_INVALID, "limit must be from 1 to 1000");
    struct filescope s = apifiles_scope(req);
    if (files_list(req->db, &s, http_query(req, "owner"), prefix, after, (int)limit, &items, err) !=
        FERRY_OK)
        return FERRY_ERR;
    size_t n = json_array_size(items);
    json_t *last = n ? json_object_get(json_array_get(items, n - 1), "path") : NULL;
    http_reply_json(req, 200,
                    json_pack("{s:O, s:I, s:O?}", "files", items, "count", (json_int_t)n,
                              "nextAfter", (int64_t)n >= limit ? last : NULL));
    json_decref(items);
    return FERRY_OK;
}

static int file_entry(struct request *req, struct err *err)
{
    struct file_entry e = {0};
    char *path = NULL;
    if (!apifiles_allowed(req) || !(path = apifiles_clean_path(req, http_param(req, "*"))))
        return FERRY_OK;
    /* a deletion names the entry the caller sees: another user's answers 404 */
    int rc = visible_entry(req, path, &e, err);
    if (rc == FERRY_OK && req->method_bit == M_DELETE) {
        char *owner = e.owner ? xstrdup(e.owner) : NULL; /* e is rewritten */
        rc = files_delete(req->db, owner, path, apifiles_device_of(req), &e, err);
        free(owner);
    }
    if (rc == FERRY_OK)
        http_reply_json(req, 200, files_entry_json(&e));
    free(path);
    files_entry_clear(&e);
    return rc;
}

/* --- routes ----------------------------------------------------------------------- */

// clang-format off
#define FILE_ROUTES(P)                                                                             \
    {M_POST, P "/upload", create_upload, ROLES_ANY, SURFACE_V1, ROUTE_JSON | ROUTE_STORE, NULL},   \
    {M_GET, P "/upload/{id}", get_upload, ROLES_ANY, SURFACE_V1, ROUTE_STORE, NULL},               \
    {M_DELETE, P "/upload/{id}", delete_upload, ROLES_ANY, SURFACE_V1, ROUTE_STORE, NULL},         \
    {M_PUT, P "/upload/{id}/chunks/{index}", put_chunk, ROLES_ANY, SURFACE_V1, ROUTE_STORE,        \
     &chunk_sink},                                                                                 \
    {M_POST, P "/upload/{id}/complete", complete_upload, ROLES_ANY, SURFACE_V1, ROUTE_STORE,       \
     NULL},                                                                                        \
    {M_GET, P "/download/*", download, ROLES_ANY, SURFACE_V1, ROUTE_STORE, NULL}
// clang-format on

static const struct route routes[] = {
    FILE_ROUTES("/api/v1/sync"),
    FILE_ROUTES("/api/sync"),
    {M_GET, "/api/v1/files", list_files, ROLES_ANY, SURFACE_V1, ROUTE_STORE, NULL},
    {M_GET | M_DELETE, "/api/v1/files/*", file_entry, ROLES_ANY, SURFACE_V1, ROUTE_STORE, NULL},
};

const struct route_table api_files_routes = {routes, sizeof(routes) / sizeof(routes[0])};
