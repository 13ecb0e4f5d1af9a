/* tus.c - resumable uploads with tus 1.0.0 (https://tus.io/protocols/resumable-upload)
 * at /tus/: the core protocol and the creation, termination, expiration and checksum
 * extensions, as an adapter over the files subsystem (files/filesys.h), which holds the
 * upload's bytes (DATA_DIR/uploads/<id>/data), one PATCH at a time across every node,
 * its checkpoints, and the upload's completion into a blob and a file entry at the path
 * the metadata names (key "path", else "filename"). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "api/api.h"
#include "api/files.h"
#include "app.h"
#include "files/filesys.h"
#include "files/uploads.h"
#include "http/tusheader.h"
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

#define TUS_VERSION "1.0.0"
#define TUS_EXTENSIONS "creation,termination,expiration,checksum"
#define MAX_METADATA 4096

/* --- helpers -------------------------------------------------------------------------- */

/* Every request but OPTIONS must say Tus-Resumable: 1.0.0 (412 otherwise). */
static bool version_ok(struct request *req)
{
    const char *v = http_header(req, "Tus-Resumable");
    if (v && !strcmp(v, TUS_VERSION))
        return true;
    http_add_header(req, "Tus-Version", TUS_VERSION);
    http_reply_error(req, ERR_PRECONDITION, "Tus-Resumable: 1.0.0 is required");
    return false;
}

static void add_int_header(struct request *req, const char *name, int64_t v)
{
    char text[24];
    snprintf(text, sizeof(text), "%lld", (long long)v);
    http_add_header(req, name, text);
}

/* Upload-Expires is an HTTP date (RFC 9110 IMF-fixdate). */
static void add_expires(struct request *req, int64_t ms)
{
    char text[64];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    http_add_header(req, "Upload-Expires", text);
}

/* Parses a decimal header value >= 0; -1 when absent or not one. */
static int64_t header_int(struct request *req, const char *name)
{
    return tusheader_int(http_header(req, name));
}

/* The file path named by Upload-Metadata: "path", else "filename". Replies ERR_INVALID
 * and returns NULL when the header is malformed or names none. */
static char *metadata_path(struct request *req, const char *meta)
{
    char *found_path = NULL, *found_name = NULL, *result = NULL;
    const char *why = NULL;
    if (tusheader_metadata(meta, MAX_METADATA - 1, &found_path, &found_name, &why) != 0)
        http_reply_error(req, ERR_INVALID, why);
    else if (!found_path && !found_name)
        http_reply_error(req, ERR_INVALID,
                         "Upload-Metadata must name the file: 'path' or 'filename'");
    else
        result = apifiles_clean_path(req, found_path ? found_path : found_name);
    free(found_path);
    free(found_name);
    return result;
}

/* Loads upload id for this caller (see apifiles_load_upload) and brings it in line with
 * its data (filesys_tus_check): a crash may have left it complete but not completed.
 * held: this request's PATCH of it, if any. False after replying, or with *err set. */
static bool load_upload(struct request *req, struct store_conn *c, const char *id,
                        const struct filesys_patch *held, struct upload *u, struct err *err)
{
    return apifiles_load_upload(req, c, id, UPLOAD_TUS, u) &&
           filesys_tus_check(req->app->files, c, u, held, err) == FERRY_OK;
}

/* --- OPTIONS, POST, HEAD, DELETE ----------------------------------------------------- */

static int options(struct request *req, struct err *err)
{
    (void)err;
    http_add_header(req, "Tus-Version", TUS_VERSION);
    http_add_header(req, "Tus-Extension", TUS_EXTENSIONS);
    http_add_header(req, "Tus-Checksum-Algorithm", "sha1,sha256");
    add_int_header(req, "Tus-Max-Size", req->app->cfg->max_upload);
    http_reply_text(req, HTTP_NO_CONTENT, NULL, "", 0);
    return FERRY_OK;
}

/* The creation request's headers: Upload-Length into *length, and the file's path (NULL
 * after an answer or with *err set). */
static char *create_headers(struct request *req, int64_t *length, struct err *err)
{
    const char *meta = http_header(req, "Upload-Metadata");
    *length = header_int(req, "Upload-Length");
    if (http_header(req, "Upload-Defer-Length"))
        err_set(err, ERR_INVALID, "Upload-Defer-Length is not supported: send Upload-Length");
    else if (*length < 0)
        err_set(err, ERR_INVALID, "Upload-Length must be a number of bytes");
    else if (*length > req->app->cfg->max_upload)
        err_set(err, ERR_TOO_LARGE, "Upload-Length is over Tus-Max-Size");
    else if (meta && strlen(meta) > MAX_METADATA)
        err_set(err, ERR_INVALID, "Upload-Metadata is too long");
    else
        return metadata_path(req, meta ? meta : "");
    return NULL;
}

static int create(struct request *req, struct err *err)
{
    struct upload u = {0};
    struct store_conn *c = req->db;
    char *result = NULL;
    int64_t length = 0;
    int rc = FERRY_ERR;
    if (!version_ok(req) || !apifiles_allowed(req))
        return FERRY_OK;
    if (!(u.path = create_headers(req, &length, err)))
        return err->code ? FERRY_ERR : FERRY_OK;
    const char *meta = http_header(req, "Upload-Metadata");
    u.kind = UPLOAD_TUS;
    u.size = length;
    u.metadata = meta ? xstrdup(meta) : NULL;
    u.user_id = xstrdup(req->cred.user_id);
    u.device_id = apifiles_device_of(req) ? xstrdup(req->cred.device_id) : NULL;
    u.expires_at = time_now_ms() + req->app->cfg->upload_expiry * 1000;
    if (uploads_create(c, &u, err) != FERRY_OK)
        goto out;
    if (filesys_make_upload(req->app->files, u.id, true, err) != FERRY_OK ||
        (length == 0 && filesys_complete(req->app->files, c, &u, &result, err) != FERRY_OK)) {
        /* (an empty file is complete at once: clients send no PATCH for it) */
        bool found;
        uploads_delete(c, u.id, &found, NULL);
        goto out;
    }
    char *location = xasprintf("/tus/%s", u.id);
    http_add_header(req, "Location", location);
    add_expires(req, u.expires_at);
    free(location);
    http_reply_text(req, HTTP_CREATED, NULL, "", 0);
    rc = FERRY_OK;
out:
    free(result);
    uploads_clear(&u);
    return rc;
}

static int head(struct request *req, struct err *err)
{
    struct upload u = {0};
    if (!version_ok(req))
        return FERRY_OK;
    if (!load_upload(req, req->db, http_param(req, "id"), NULL, &u, err)) {
        uploads_clear(&u);
        return err->code ? FERRY_ERR : FERRY_OK;
    }
    http_add_header(req, "Cache-Control", "no-store");
    add_int_header(req, "Upload-Offset", u.received);
    add_int_header(req, "Upload-Length", u.size);
    if (u.metadata)
        http_add_header(req, "Upload-Metadata", u.metadata);
    if (!u.completed_at)
        add_expires(req, u.expires_at);
    http_reply_text(req, HTTP_OK, NULL, "", 0);
    uploads_clear(&u);
    return FERRY_OK;
}

static int terminate(struct request *req, struct err *err)
{
    struct upload u = {0};
    int rc = FERRY_OK;
    if (!version_ok(req))
        return FERRY_OK;
    if (apifiles_load_upload(req, req->db, http_param(req, "id"), UPLOAD_TUS, &u) &&
        (rc = filesys_delete_upload(req->app->files, req->db, u.id, err)) == FERRY_OK)
        http_reply_text(req, HTTP_NO_CONTENT, NULL, "", 0);
    uploads_clear(&u);
    return rc;
}

/* --- PATCH (streamed) ---------------------------------------------------------------- */

struct patch {
    struct filesys_patch *fp;
    int64_t expires_at;
    EVP_MD_CTX *check_md; /* Upload-Checksum's algorithm over this request, or NULL */
    unsigned char check_want[EVP_MAX_MD_SIZE];
    int check_len;
    bool finished; /* the handler has dealt with the bytes */
};

static int open_checksum(struct request *req, struct patch *p)
{
    const char *h = http_header(req, "Upload-Checksum");
    if (!h)
        return 0;
    const EVP_MD *md = NULL;
    const char *why = NULL;
    if (tusheader_checksum(h, &md, p->check_want, sizeof(p->check_want), &p->check_len, &why) !=
        0) {
        http_reply_error(req, ERR_INVALID, why);
        return -1;
    }
    p->check_md = crypto_digest_new(md);
    return 0;
}

static void patch_free(struct request *req, struct patch *p)
{
    filesys_patch_end(p->fp, req->db);
    EVP_MD_CTX_free(p->check_md);
    free(p);
}

/* The request's Upload-Offset and Content-Length against upload u. */
static int check_offset(struct request *req, const struct upload *u, struct err *err)
{
    int64_t offset = header_int(req, "Upload-Offset");
    int64_t length = header_int(req, "Content-Length");
    if (offset < 0)
        return err_set(err, ERR_INVALID, "Upload-Offset must be a number of bytes");
    if (offset != u->received || u->completed_at) {
        add_int_header(req, "Upload-Offset", u->received);
        return err_set(err, ERR_CONFLICT, "Upload-Offset does not match the upload's offset");
    }
    if (length > u->size - offset)
        return err_set(err, ERR_TOO_LARGE, "the body goes past Upload-Length");
    return FERRY_OK;
}

/* Checks a PATCH before its body: on success the upload is held (filesys_patch_begin),
 * so no other PATCH, completion or offset repair of it runs meanwhile, on any node.
 * False after replying. */
static bool patch_prepare(struct request *req, struct patch *p)
{
    const char *ct = http_header(req, "Content-Type"), *id = http_param(req, "id");
    struct err err = {0};
    struct upload u = {0};
    bool ok = false;
    if (!ct || strncmp(ct, "application/offset+octet-stream", 31) != 0)
        err_set(&err, ERR_MEDIA_TYPE, "Content-Type must be application/offset+octet-stream");
    else if (filesys_patch_begin(req->app->files, req->db, id, &p->fp, &err) == FERRY_OK &&
             load_upload(req, req->db, id, p->fp, &u, &err) &&
             check_offset(req, &u, &err) == FERRY_OK && open_checksum(req, p) == 0) {
        p->expires_at = u.expires_at;
        /* a request whose checksum covers it whole counts only once checked */
        ok = filesys_patch_open(p->fp, &u, !p->check_md, &err) == FERRY_OK;
    }
    if (!ok)
        http_reply_err(req, &err); /* no effect when answered already */
    uploads_clear(&u);
    return ok;
}

static void patch_open(struct request *req)
{
    struct patch *p = xcalloc(1, sizeof(*p));
    if (!version_ok(req) || !apifiles_allowed(req) || !patch_prepare(req, p)) {
        patch_free(req, p);
        return;
    }
    req->sink_ctx = p;
}

/* Settles the bytes (kept or cut off); *done when the upload is complete now. The upload
 * is let go of here, before the answer goes out: a client that has its 204 may send the
 * next PATCH at once, to any node, and must not find this one still holding it (423). */
static int settle(struct request *req, struct patch *p, bool keep, int64_t *offset, bool *done,
                  struct err *err)
{
    char *result = NULL;
    p->finished = true;
    int rc = filesys_patch_settle(p->fp, req->db, keep, offset, done, &result, err);
    free(result);
    filesys_patch_end(p->fp, req->db);
    p->fp = NULL;
    return rc;
}

static bool patch_write(struct request *req, const char *data, size_t len)
{
    struct patch *p = req->sink_ctx;
    struct err err = {0};
    int64_t offset = 0;
    bool done = false;
    if (p->check_md)
        EVP_DigestUpdate(p->check_md, data, len);
    if (filesys_patch_write(p->fp, NULL, data, len, &err) == FERRY_OK)
        return true;
    settle(req, p, false, &offset, &done, NULL); /* refused whole: nothing of it kept */
    http_reply_err(req, &err);
    return false;
}

/* The client went away, or a reply came early: keep what arrived, unless a checksum
 * was promised for the whole request (then it cannot be checked, so nothing counts). */
static void patch_release(struct request *req)
{
    struct patch *p = req->sink_ctx;
    int64_t offset = 0;
    bool done = false;
    if (!p->finished)
        settle(req, p, !p->check_md, &offset, &done, NULL);
    patch_free(req, p);
    req->sink_ctx = NULL;
}

static int patch(struct request *req, struct err *err)
{
    struct patch *p = req->sink_ctx;
    int64_t offset = 0;
    bool done = false;
    if (!p)
        return err_set(err, ERR_INVALID, "the PATCH has no body");
    if (p->check_md) {
        unsigned char got[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(p->check_md, got, &len);
        if ((int)len != p->check_len || memcmp(got, p->check_want, len) != 0) {
            settle(req, p, false, &offset, &done, NULL);
            return err_set(err, ERR_CHECKSUM, "Checksum Mismatch: the bytes were discarded");
        }
    }
    if (settle(req, p, true, &offset, &done, err) != FERRY_OK)
        return FERRY_ERR;
    add_int_header(req, "Upload-Offset", offset);
    if (!done)
        add_expires(req, p->expires_at);
    http_reply_text(req, HTTP_NO_CONTENT, NULL, "", 0);
    return FERRY_OK;
}

static const struct body_sink patch_sink = {patch_open, patch_write, patch_release};

static const struct route routes[] = {
    {M_OPTIONS, "/tus", options, 0, SURFACE_TUS, ROUTE_PUBLIC, NULL},
    {M_OPTIONS, "/tus/", options, 0, SURFACE_TUS, ROUTE_PUBLIC, NULL},
    {M_OPTIONS, "/tus/{id}", options, 0, SURFACE_TUS, ROUTE_PUBLIC, NULL},
    {M_POST, "/tus", create, ROLES_ANY, SURFACE_TUS, ROUTE_STORE, NULL},
    {M_POST, "/tus/", create, ROLES_ANY, SURFACE_TUS, ROUTE_STORE, NULL},
    {M_HEAD, "/tus/{id}", head, ROLES_ANY, SURFACE_TUS, ROUTE_STORE, NULL},
    {M_PATCH, "/tus/{id}", patch, ROLES_ANY, SURFACE_TUS, ROUTE_STORE, &patch_sink},
    {M_DELETE, "/tus/{id}", terminate, ROLES_ANY, SURFACE_TUS, ROUTE_STORE, NULL},
};

const struct route_table api_tus_routes = {routes, sizeof(routes) / sizeof(routes[0])};
