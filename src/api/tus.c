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
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

#define TUS_VERSION "1.0.0"
#define TUS_EXTENSIONS "creation,termination,expiration,checksum"
#define MAX_METADATA 4096

/* --- helpers -------------------------------------------------------------------------- */

static void reply_status(struct request *req, int status, const char *text)
{
    char *body = xasprintf("%s\n", text);
    http_reply_text(req, status, "text/plain; charset=utf-8", body, strlen(body));
    free(body);
}

/* Every request but OPTIONS must say Tus-Resumable: 1.0.0 (412 otherwise). */
static bool version_ok(struct request *req)
{
    const char *v = http_header(req, "Tus-Resumable");
    if (v && !strcmp(v, TUS_VERSION))
        return true;
    http_add_header(req, "Tus-Version", TUS_VERSION);
    reply_status(req, 412, "Tus-Resumable: 1.0.0 is required");
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
    const char *v = http_header(req, name);
    char *end;
    if (!v || !*v || *v < '0' || *v > '9')
        return -1;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    return errno || *end ? -1 : n;
}

/* Decodes standard base64 (with padding) into out; returns the length or -1. */
static int base64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (len % 4 || len / 4 * 3 > cap)
        return -1;
    if (len == 0)
        return 0;
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -1;
    for (size_t i = len; i > 0 && in[i - 1] == '='; i--)
        n--;
    return n;
}

/* The file path named by Upload-Metadata ("key base64,key base64"): "path", else
 * "filename". Replies 400 and returns NULL when the header is malformed or names none. */
static char *metadata_path(struct request *req, const char *meta)
{
    char *found_path = NULL, *found_name = NULL, *result = NULL;
    unsigned char value[MAX_METADATA];
    const char *p = meta;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ')
            p++, len--;
        const char *space = memchr(p, ' ', len);
        size_t key_len = space ? (size_t)(space - p) : len;
        const char *b64 = space ? space + 1 : p + len;
        size_t b64_len = space ? len - key_len - 1 : 0;
        int n = base64_decode(b64, b64_len, value, sizeof(value) - 1);
        if (key_len == 0 || n < 0) {
            reply_status(req, 400, "Upload-Metadata must be 'key base64value' pairs");
            goto out;
        }
        value[n] = '\0';
        if (memchr(value, '\0', (size_t)n)) {
            reply_status(req, 400, "Upload-Metadata: a value contains a NUL byte");
            goto out;
        }
        if (key_len == 4 && !strncmp(p, "path", 4) && !found_path)
            found_path = xstrndup((char *)value, (size_t)n);
        else if (key_len == 8 && !strncmp(p, "filename", 8) && !found_name)
            found_name = xstrndup((char *)value, (size_t)n);
        p = end ? end + 1 : NULL;
    }
    if (!found_path && !found_name) {
        reply_status(req, 400, "Upload-Metadata must name the file: 'path' or 'filename'");
        goto out;
    }
    result = files_clean_path(req, found_path ? found_path : found_name);
out:
    free(found_path);
    free(found_name);
    return result;
}

/* Loads upload id for this caller (see files_load_upload) and brings it in line with
 * its data (filesys_tus_check): a crash may have left it complete but not completed.
 * held: this request's PATCH of it, if any. */
static bool load_upload(struct request *req, struct store_conn *c, const char *id,
                        const struct filesys_patch *held, struct upload *u)
{
    struct err err = {0};
    if (!files_load_upload(req, c, id, UPLOAD_TUS, u))
        return false;
    if (filesys_tus_check(req->app->files, c, u, held, &err) != FERRY_OK) {
        http_reply_err(req, &err);
        return false;
    }
    return true;
}

/* --- OPTIONS, POST, HEAD, DELETE ----------------------------------------------------- */

static void options(struct request *req)
{
    http_add_header(req, "Tus-Version", TUS_VERSION);
    http_add_header(req, "Tus-Extension", TUS_EXTENSIONS);
    http_add_header(req, "Tus-Checksum-Algorithm", "sha1,sha256");
    add_int_header(req, "Tus-Max-Size", req->app->cfg->max_upload);
    http_reply_text(req, 204, NULL, "", 0);
}

static void create(struct request *req)
{
    struct err err = {0};
    struct upload u = {0};
    if (!version_ok(req) || !files_allowed(req))
        return;
    int64_t length = header_int(req, "Upload-Length");
    const char *meta = http_header(req, "Upload-Metadata");
    if (http_header(req, "Upload-Defer-Length")) {
        reply_status(req, 400, "Upload-Defer-Length is not supported: send Upload-Length");
        return;
    }
    if (length < 0) {
        reply_status(req, 400, "Upload-Length must be a number of bytes");
        return;
    }
    if (length > req->app->cfg->max_upload) {
        reply_status(req, 413, "Upload-Length is over Tus-Max-Size");
        return;
    }
    if (meta && strlen(meta) > MAX_METADATA) {
        reply_status(req, 400, "Upload-Metadata is too long");
        return;
    }
    if (!(u.path = metadata_path(req, meta ? meta : "")))
        return;
    struct store_conn *c = api_conn(req);
    if (!c) {
        uploads_clear(&u);
        return;
    }
    u.kind = UPLOAD_TUS;
    u.size = length;
    u.metadata = meta ? xstrdup(meta) : NULL;
    u.user_id = xstrdup(req->cred.user_id);
    u.device_id = files_device_of(req) ? xstrdup(req->cred.device_id) : NULL;
    u.expires_at = time_now_ms() + req->app->cfg->upload_expiry * 1000;
    char *result = NULL;
    if (uploads_create(c, &u, &err) != FERRY_OK) {
        http_reply_err(req, &err);
    } else if (filesys_make_upload(req->app->files, u.id, true, &err) != FERRY_OK ||
               (length == 0 &&
                filesys_complete(req->app->files, c, &u, &result, &err) != FERRY_OK)) {
        /* (an empty file is complete at once: clients send no PATCH for it) */
        bool found;
        uploads_delete(c, u.id, &found, NULL);
        http_reply_err(req, &err);
    } else {
        char *location = xasprintf("/tus/%s", u.id);
        http_add_header(req, "Location", location);
        add_expires(req, u.expires_at);
        free(location);
        http_reply_text(req, 201, NULL, "", 0);
    }
    free(result);
    store_release(c);
    uploads_clear(&u);
}

static void head(struct request *req)
{
    struct upload u = {0};
    if (!version_ok(req))
        return;
    struct store_conn *c = api_conn(req);
    if (!c)
        return;
    if (load_upload(req, c, http_param(req, "id"), NULL, &u)) {
        http_add_header(req, "Cache-Control", "no-store");
        add_int_header(req, "Upload-Offset", u.received);
        add_int_header(req, "Upload-Length", u.size);
        if (u.metadata)
            http_add_header(req, "Upload-Metadata", u.metadata);
        if (!u.completed_at)
            add_expires(req, u.expires_at);
        http_reply_text(req, 200, NULL, "", 0);
    }
    store_release(c);
    uploads_clear(&u);
}

static void terminate(struct request *req)
{
    struct err err = {0};
    struct upload u = {0};
    if (!version_ok(req))
        return;
    struct store_conn *c = api_conn(req);
    if (!c)
        return;
    if (files_load_upload(req, c, http_param(req, "id"), UPLOAD_TUS, &u)) {
        if (filesys_delete_upload(req->app->files, c, u.id, &err) == FERRY_OK)
            http_reply_text(req, 204, NULL, "", 0);
        else if (err.code == ERR_CONFLICT)
            reply_status(req, 423, "a PATCH of this upload is in progress");
        else
            http_reply_err(req, &err);
    }
    store_release(c);
    uploads_clear(&u);
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
    const char *space = strchr(h, ' ');
    const EVP_MD *md = NULL;
    if (space && space - h == 4 && !strncmp(h, "sha1", 4))
        md = EVP_sha1();
    else if (space && space - h == 6 && !strncmp(h, "sha256", 6))
        md = EVP_sha256();
    if (!md) {
        reply_status(req, 400, "Upload-Checksum: the algorithm must be sha1 or sha256");
        return -1;
    }
    p->check_len =
        base64_decode(space + 1, strlen(space + 1), p->check_want, sizeof(p->check_want));
    if (p->check_len != EVP_MD_get_size(md)) {
        reply_status(req, 400, "Upload-Checksum: the value is not a base64 digest");
        return -1;
    }
    p->check_md = crypto_digest_new(md);
    return 0;
}

static void patch_free(struct patch *p)
{
    filesys_patch_end(p->fp, NULL);
    EVP_MD_CTX_free(p->check_md);
    free(p);
}

/* Checks a PATCH before its body: on success the upload is held (filesys_patch_begin),
 * so no other PATCH, completion or offset repair of it runs meanwhile, on any node. */
static bool patch_prepare(struct request *req, struct store_conn *c, struct patch *p)
{
    const char *ct = http_header(req, "Content-Type");
    struct err err = {0};
    struct upload u = {0};
    if (!ct || strncmp(ct, "application/offset+octet-stream", 31) != 0) {
        reply_status(req, 415, "Content-Type must be application/offset+octet-stream");
        return false;
    }
    if (filesys_patch_begin(req->app->files, c, http_param(req, "id"), &p->fp, &err) != FERRY_OK) {
        if (err.code == ERR_CONFLICT)
            reply_status(req, 423, "another PATCH of this upload is in progress");
        else
            http_reply_err(req, &err);
        return false;
    }
    bool ok = load_upload(req, c, http_param(req, "id"), p->fp, &u);
    int64_t offset = header_int(req, "Upload-Offset");
    int64_t length = header_int(req, "Content-Length");
    if (!ok) {
        /* replied */
    } else if (offset < 0) {
        reply_status(req, 400, "Upload-Offset must be a number of bytes");
        ok = false;
    } else if (offset != u.received || u.completed_at) {
        add_int_header(req, "Upload-Offset", u.received);
        reply_status(req, 409, "Upload-Offset does not match the upload's offset");
        ok = false;
    } else if (length > u.size - offset) {
        reply_status(req, 413, "the body goes past Upload-Length");
        ok = false;
    } else if ((ok = open_checksum(req, p) == 0)) {
        p->expires_at = u.expires_at;
        /* a request whose checksum covers it whole counts only once checked */
        if (filesys_patch_open(p->fp, &u, !p->check_md, &err) != FERRY_OK) {
            http_reply_err(req, &err);
            ok = false;
        }
    }
    uploads_clear(&u);
    return ok;
}

static void patch_open(struct request *req)
{
    struct patch *p = xcalloc(1, sizeof(*p));
    if (!version_ok(req) || !files_allowed(req)) {
        patch_free(p);
        return;
    }
    struct store_conn *c = api_conn(req);
    bool ok = c && patch_prepare(req, c, p);
    store_release(c);
    if (!ok) {
        patch_free(p);
        return;
    }
    req->sink_ctx = p;
}

/* Settles the bytes (kept or cut off); *done when the upload is complete now. */
static int settle(struct patch *p, bool keep, int64_t *offset, bool *done, struct err *err)
{
    char *result = NULL;
    p->finished = true;
    int rc = filesys_patch_settle(p->fp, NULL, keep, offset, done, &result, err);
    free(result);
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
    settle(p, false, &offset, &done, NULL); /* refused whole: nothing of it kept */
    if (err.code == ERR_TOO_LARGE)
        reply_status(req, 413, "the body goes past Upload-Length");
    else
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
        settle(p, !p->check_md, &offset, &done, NULL);
    patch_free(p);
    req->sink_ctx = NULL;
}

static void patch(struct request *req)
{
    struct patch *p = req->sink_ctx;
    struct err err = {0};
    int64_t offset = 0;
    bool done = false;
    if (!p) {
        reply_status(req, 400, "the PATCH has no body");
        return;
    }
    if (p->check_md) {
        unsigned char got[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(p->check_md, got, &len);
        if ((int)len != p->check_len || memcmp(got, p->check_want, len) != 0) {
            settle(p, false, &offset, &done, NULL);
            reply_status(req, 460, "Checksum Mismatch: the bytes were discarded");
            return;
        }
    }
    if (settle(p, true, &offset, &done, &err) != FERRY_OK) {
        http_reply_err(req, &err);
        return;
    }
    add_int_header(req, "Upload-Offset", offset);
    if (!done)
        add_expires(req, p->expires_at);
    http_reply_text(req, 204, NULL, "", 0);
}

static const struct body_sink patch_sink = {patch_open, patch_write, patch_release};

static const struct route routes[] = {
    {M_OPTIONS, "/tus", options, 0, SURFACE_TUS, ROUTE_PUBLIC, NULL},
    {M_OPTIONS, "/tus/", options, 0, SURFACE_TUS, ROUTE_PUBLIC, NULL},
    {M_OPTIONS, "/tus/{id}", options, 0, SURFACE_TUS, ROUTE_PUBLIC, NULL},
    {M_POST, "/tus", create, ROLES_ANY, SURFACE_TUS, 0, NULL},
    {M_POST, "/tus/", create, ROLES_ANY, SURFACE_TUS, 0, NULL},
    {M_HEAD, "/tus/{id}", head, ROLES_ANY, SURFACE_TUS, 0, NULL},
    {M_PATCH, "/tus/{id}", patch, ROLES_ANY, SURFACE_TUS, 0, &patch_sink},
    {M_DELETE, "/tus/{id}", terminate, ROLES_ANY, SURFACE_TUS, 0, NULL},
};

const struct route_table api_tus_routes = {routes, sizeof(routes) / sizeof(routes[0])};
