/* tus.c - resumable uploads with tus 1.0.0 (https://tus.io/protocols/resumable-upload)
 * at /tus/: the core protocol and the creation, termination, expiration and checksum
 * extensions. An upload is a record (files/uploads.c) and one file,
 * DATA_DIR/uploads/<id>/data, to which PATCH requests append as the bytes arrive. The
 * offset on record is what counts: bytes past it (written before a crash) are cut off
 * by the next PATCH. When the last byte arrives the file becomes a blob (renamed, not
 * copied) and a file entry at the path the metadata names (key "path", else
 * "filename").
 *
 * The file's SHA-256 is computed while the bytes arrive and kept in memory between
 * requests; after a restart, or when the running hash no longer matches the offset, the
 * file is hashed again once it is complete. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "api/api.h"
#include "api/files.h"
#include "api/tus.h"
#include "app.h"
#include "files/spool.h"
#include "files/files.h"
#include "files/uploads.h"
#include "http/tusheader.h"
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"

#define TUS_VERSION "1.0.0"
#define TUS_EXTENSIONS "creation,termination,expiration,checksum"
#define MAX_METADATA 4096
#define WRITEBACK_STEP (8 * 1024 * 1024)

/* --- running hashes and PATCH locks (per process) ------------------------------------ */

/* One entry per upload with a PATCH in flight or a running hash. A PATCH holds `busy`;
 * a second PATCH of the same upload meanwhile gets 423 (tus clients retry it). */
struct live {
    char id[33];
    bool busy;
    EVP_MD_CTX *md; /* SHA-256 of the first `hashed` bytes, or NULL */
    int64_t hashed;
    struct live *next;
};

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct live *live_list;

static struct live *live_find(const char *id)
{
    for (struct live *l = live_list; l; l = l->next)
        if (!strcmp(l->id, id))
            return l;
    return NULL;
}

/* Marks id busy; false when it already is. */
static bool live_acquire(const char *id)
{
    pthread_mutex_lock(&live_lock);
    struct live *l = live_find(id);
    if (!l) {
        l = xcalloc(1, sizeof(*l));
        snprintf(l->id, sizeof(l->id), "%s", id);
        l->next = live_list;
        live_list = l;
    }
    bool got = !l->busy;
    l->busy = true;
    pthread_mutex_unlock(&live_lock);
    return got;
}

/* Whether a PATCH of id runs in this process. */
static bool live_busy(const char *id)
{
    pthread_mutex_lock(&live_lock);
    struct live *l = live_find(id);
    bool busy = l && l->busy;
    pthread_mutex_unlock(&live_lock);
    return busy;
}

void tus_forget(const char *id)
{
    pthread_mutex_lock(&live_lock);
    struct live **pp = &live_list;
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    struct live *l = *pp;
    if (l && !l->busy) {
        *pp = l->next;
        EVP_MD_CTX_free(l->md);
        free(l);
    }
    pthread_mutex_unlock(&live_lock);
}

/* Takes the running hash when it covers exactly `offset` bytes (NULL otherwise). */
static EVP_MD_CTX *live_take_hash(const char *id, int64_t offset)
{
    pthread_mutex_lock(&live_lock);
    struct live *l = live_find(id);
    EVP_MD_CTX *md = NULL;
    if (l && l->md && l->hashed == offset) {
        md = l->md;
        l->md = NULL;
    } else if (l && l->md) {
        EVP_MD_CTX_free(l->md);
        l->md = NULL;
    }
    pthread_mutex_unlock(&live_lock);
    return md;
}

/* Ends a PATCH: keeps md as the running hash of `hashed` bytes (md may be NULL), or
 * forgets the upload when done. */
static void live_release(const char *id, EVP_MD_CTX *md, int64_t hashed, bool done)
{
    pthread_mutex_lock(&live_lock);
    struct live **pp = &live_list;
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    struct live *l = *pp;
    if (l && (done || !md)) {
        *pp = l->next;
        EVP_MD_CTX_free(l->md);
        free(l);
        EVP_MD_CTX_free(md);
    } else if (l) {
        EVP_MD_CTX_free(l->md);
        l->md = md;
        l->hashed = hashed;
        l->busy = false;
    } else {
        EVP_MD_CTX_free(md);
    }
    pthread_mutex_unlock(&live_lock);
}

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

static char *data_path(const struct app *app, const char *id)
{
    char *dir = files_upload_dir(app, id), *path = xasprintf("%s/data", dir);
    free(dir);
    return path;
}

/* Parses a decimal header value >= 0; -1 when absent or not one. */
static int64_t header_int(struct request *req, const char *name)
{
    return tusheader_int(http_header(req, name));
}

/* The file path named by Upload-Metadata: "path", else "filename". Replies 400 and
 * returns NULL when the header is malformed or names none. */
static char *metadata_path(struct request *req, const char *meta)
{
    char *found_path = NULL, *found_name = NULL, *result = NULL;
    const char *why = NULL;
    if (tusheader_metadata(meta, MAX_METADATA - 1, &found_path, &found_name, &why) != 0)
        reply_status(req, 400, why);
    else if (!found_path && !found_name)
        reply_status(req, 400, "Upload-Metadata must name the file: 'path' or 'filename'");
    else
        result = apifiles_clean_path(req, found_path ? found_path : found_name);
    free(found_path);
    free(found_name);
    return result;
}

/* The offset that counts is the one on record, but never more than the data file holds:
 * were the file lost or cut short (a restore without uploads/, say), the upload goes on
 * from what is really there instead of padding the gap with zeros. */
static int reconcile(const struct app *app, struct store_conn *c, struct upload *u, struct err *err)
{
    struct stat st;
    if (u->completed_at || u->received == 0)
        return FERRY_OK;
    char *path = data_path(app, u->id);
    int64_t have = stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
    free(path);
    if (have >= u->received)
        return FERRY_OK;
    u->received = have;
    return uploads_set_received(c, u->id, have, err);
}

/* Loads upload id for this caller (see apifiles_load_upload), its offset repaired against
 * the data on disk when may_reconcile. */
static bool load_upload(struct request *req, struct store_conn *c, const char *id,
                        bool may_reconcile, struct upload *u)
{
    struct err err = {0};
    if (!apifiles_load_upload(req, c, id, UPLOAD_TUS, u))
        return false;
    if (may_reconcile && reconcile(req->app, c, u, &err) != FERRY_OK) {
        http_reply_err(req, &err);
        return false;
    }
    return true;
}

static int complete(struct request *req, struct store_conn *c, struct upload *u, EVP_MD_CTX *md,
                    struct err *err);

/* --- OPTIONS, POST, HEAD, DELETE ----------------------------------------------------- */

static int options(struct request *req, struct err *err)
{
    (void)err;
    http_add_header(req, "Tus-Version", TUS_VERSION);
    http_add_header(req, "Tus-Extension", TUS_EXTENSIONS);
    http_add_header(req, "Tus-Checksum-Algorithm", "sha1,sha256");
    add_int_header(req, "Tus-Max-Size", req->app->cfg->max_upload);
    http_reply_text(req, 204, NULL, "", 0);
    return FERRY_OK;
}

/* The upload's folder and its empty data file. */
static int make_data_file(const struct app *app, const char *id, struct err *err)
{
    char *dir = files_upload_dir(app, id), *data = data_path(app, id);
    int fd = -1, rc = FERRY_OK;
    if (mkdir(dir, 0700) != 0)
        rc = spool_io_error(err, "cannot create", dir);
    else if ((fd = open(data, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0)
        rc = spool_io_error(err, "cannot create", data);
    if (fd >= 0)
        close(fd);
    free(dir);
    free(data);
    return rc;
}

static int create(struct request *req, struct err *err)
{
    struct upload u = {0};
    if (!version_ok(req) || !apifiles_allowed(req))
        return FERRY_OK;
    int64_t length = header_int(req, "Upload-Length");
    const char *meta = http_header(req, "Upload-Metadata");
    if (http_header(req, "Upload-Defer-Length")) {
        reply_status(req, 400, "Upload-Defer-Length is not supported: send Upload-Length");
        return FERRY_OK;
    }
    if (length < 0) {
        reply_status(req, 400, "Upload-Length must be a number of bytes");
        return FERRY_OK;
    }
    if (length > req->app->cfg->max_upload) {
        reply_status(req, 413, "Upload-Length is over Tus-Max-Size");
        return FERRY_OK;
    }
    if (meta && strlen(meta) > MAX_METADATA) {
        reply_status(req, 400, "Upload-Metadata is too long");
        return FERRY_OK;
    }
    if (!(u.path = metadata_path(req, meta ? meta : "")))
        return FERRY_OK;
    struct store_conn *c = req->db;
    u.kind = UPLOAD_TUS;
    u.size = length;
    u.metadata = meta ? xstrdup(meta) : NULL;
    u.user_id = xstrdup(req->cred.user_id);
    u.device_id = apifiles_device_of(req) ? xstrdup(req->cred.device_id) : NULL;
    u.expires_at = time_now_ms() + req->app->cfg->upload_expiry * 1000;
    if (uploads_create(c, &u, err) != FERRY_OK) {
        http_reply_err(req, err);
    } else if (make_data_file(req->app, u.id, err) != FERRY_OK ||
               (length == 0 && complete(req, c, &u, NULL, err) != FERRY_OK)) {
        /* (an empty file is complete at once: clients send no PATCH for it) */
        bool found;
        uploads_delete(c, u.id, &found, NULL);
        http_reply_err(req, err);
    } else {
        char *location = xasprintf("/tus/%s", u.id);
        http_add_header(req, "Location", location);
        add_expires(req, u.expires_at);
        free(location);
        http_reply_text(req, 201, NULL, "", 0);
    }
    uploads_clear(&u);
    return FERRY_OK;
}

static int head(struct request *req, struct err *err)
{
    (void)err;
    struct upload u = {0};
    if (!version_ok(req))
        return FERRY_OK;
    struct store_conn *c = req->db;
    const char *id = http_param(req, "id");
    if (load_upload(req, c, id, !live_busy(id), &u)) {
        http_add_header(req, "Cache-Control", "no-store");
        add_int_header(req, "Upload-Offset", u.received);
        add_int_header(req, "Upload-Length", u.size);
        if (u.metadata)
            http_add_header(req, "Upload-Metadata", u.metadata);
        if (!u.completed_at)
            add_expires(req, u.expires_at);
        http_reply_text(req, 200, NULL, "", 0);
    }
    uploads_clear(&u);
    return FERRY_OK;
}

static int terminate(struct request *req, struct err *err)
{
    struct upload u = {0};
    bool found = false;
    if (!version_ok(req))
        return FERRY_OK;
    struct store_conn *c = req->db;
    if (load_upload(req, c, http_param(req, "id"), false, &u)) {
        if (!live_acquire(u.id)) {
            reply_status(req, 423, "a PATCH of this upload is in progress");
        } else if (uploads_delete(c, u.id, &found, err) != FERRY_OK) {
            live_release(u.id, NULL, 0, false);
            http_reply_err(req, err);
        } else {
            files_remove_upload(req->app, u.id);
            live_release(u.id, NULL, 0, true);
            http_reply_text(req, 204, NULL, "", 0);
        }
    }
    uploads_clear(&u);
    return FERRY_OK;
}

/* --- PATCH (streamed) ---------------------------------------------------------------- */

struct patch {
    struct upload u;
    int fd;
    int64_t start, written;
    int64_t flushed;      /* bytes of this PATCH already handed to writeback */
    EVP_MD_CTX *file_md;  /* SHA-256 of the whole file so far, or NULL */
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
        reply_status(req, 400, why);
        return -1;
    }
    p->check_md = crypto_digest_new(md);
    return 0;
}

static void patch_free(struct patch *p)
{
    if (p->fd >= 0)
        close(p->fd);
    EVP_MD_CTX_free(p->check_md);
    uploads_clear(&p->u);
    free(p);
}

/* Records the offset the PATCH reached, after flushing its bytes (keep), or cuts them
 * off again (!keep). */
static int settle(struct store_conn *c, struct patch *p, bool keep, struct err *err)
{
    int64_t offset = p->start + (keep ? p->written : 0);
    int rc = FERRY_OK;
    if (!keep && ftruncate(p->fd, p->start) != 0)
        rc = spool_io_error(err, "cannot truncate", p->u.id);
    if (keep && p->written && fdatasync(p->fd) != 0)
        rc = spool_io_error(err, "cannot flush", p->u.id), offset = p->start;
    if (offset != p->u.received && c) {
        if (uploads_set_received(c, p->u.id, offset, err) == FERRY_OK)
            p->u.received = offset;
        else
            rc = FERRY_ERR;
    }
    return rc;
}

/* Ends a PATCH that did not complete the upload: settles it and hands the running hash
 * back (or drops it when the bytes were cut off). */
static int end_patch(struct store_conn *c, struct patch *p, bool keep, struct err *err)
{
    int rc = settle(c, p, keep, err);
    p->finished = true;
    live_release(p->u.id, keep && rc == FERRY_OK ? p->file_md : NULL, p->u.received, false);
    if (!keep || rc != FERRY_OK)
        EVP_MD_CTX_free(p->file_md);
    p->file_md = NULL;
    return rc;
}

/* Checks a PATCH before its body: on success the upload is held (live_acquire), so no
 * other PATCH, completion or offset repair of it runs meanwhile. */
static bool patch_prepare(struct request *req, struct patch *p)
{
    const char *ct = http_header(req, "Content-Type"), *id = http_param(req, "id");
    if (!version_ok(req) || !apifiles_allowed(req))
        return false;
    if (!ct || strncmp(ct, "application/offset+octet-stream", 31) != 0) {
        reply_status(req, 415, "Content-Type must be application/offset+octet-stream");
        return false;
    }
    if (!live_acquire(id)) {
        reply_status(req, 423, "another PATCH of this upload is in progress");
        return false;
    }
    bool ok = load_upload(req, req->db, id, true, &p->u);
    int64_t offset = header_int(req, "Upload-Offset");
    int64_t length = header_int(req, "Content-Length");
    if (!ok) {
        /* replied */
    } else if (offset < 0) {
        reply_status(req, 400, "Upload-Offset must be a number of bytes");
        ok = false;
    } else if (offset != p->u.received || p->u.completed_at) {
        add_int_header(req, "Upload-Offset", p->u.received);
        reply_status(req, 409, "Upload-Offset does not match the upload's offset");
        ok = false;
    } else if (length > p->u.size - offset) {
        reply_status(req, 413, "the body goes past Upload-Length");
        ok = false;
    } else {
        ok = open_checksum(req, p) == 0;
    }
    if (!ok)
        live_release(id, NULL, 0, false);
    return ok;
}

static void patch_open(struct request *req)
{
    struct err err = {0};
    struct patch *p = xcalloc(1, sizeof(*p));
    p->fd = -1;
    if (!patch_prepare(req, p)) {
        patch_free(p);
        return;
    }
    p->start = p->u.received;
    char *path = data_path(req->app, p->u.id);
    p->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    /* bytes past the recorded offset came from a request that never finished */
    if (p->fd < 0 || ftruncate(p->fd, p->start) != 0 || lseek(p->fd, p->start, SEEK_SET) < 0) {
        spool_io_error(&err, "cannot open", path);
        http_reply_err(req, &err);
        live_release(p->u.id, NULL, 0, false);
        patch_free(p);
        free(path);
        return;
    }
    free(path);
    p->file_md = live_take_hash(p->u.id, p->start);
    if (!p->file_md && p->start == 0) {
        p->file_md = crypto_digest_new(EVP_sha256());
    }
    req->sink_ctx = p;
}

static bool patch_write(struct request *req, const char *data, size_t len)
{
    struct patch *p = req->sink_ctx;
    struct err err = {0};
    if (p->start + p->written + (int64_t)len > p->u.size) { /* refused whole: nothing kept */
        end_patch(req->db, p, false, &err);
        reply_status(req, 413, "the body goes past Upload-Length");
        return false;
    }
    for (size_t done = 0; done < len;) {
        ssize_t n = write(p->fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            spool_io_error(&err, "cannot write upload", p->u.id);
            end_patch(req->db, p, false, NULL);
            http_reply_err(req, &err);
            return false;
        }
        if (p->file_md)
            EVP_DigestUpdate(p->file_md, data + done, (size_t)n);
        if (p->check_md)
            EVP_DigestUpdate(p->check_md, data + done, (size_t)n);
        done += (size_t)n;
        p->written += n;
    }
    /* Start writing what arrived to disk now, a few MiB at a time, so that the flush
     * before the answer waits only for the tail, not for the whole body. */
    if (p->written - p->flushed >= WRITEBACK_STEP) {
        sync_file_range(p->fd, p->start + p->flushed, p->written - p->flushed,
                        SYNC_FILE_RANGE_WRITE);
        p->flushed = p->written;
    }
    return true;
}

/* The client went away, or a reply came early: keep what arrived, unless a checksum
 * was promised for the whole request (then it cannot be checked, so nothing counts). */
static void patch_release(struct request *req)
{
    struct patch *p = req->sink_ctx;
    if (!p->finished)
        end_patch(req->db, p, !p->check_md, NULL);
    patch_free(p);
    req->sink_ctx = NULL;
}

/* The last byte arrived: the file becomes a blob and a file entry. */
static int complete(struct request *req, struct store_conn *c, struct upload *u, EVP_MD_CTX *md,
                    struct err *err)
{
    char known[65], hex[65], *path = data_path(req->app, u->id);
    uint64_t size = 0;
    struct file_entry e = {0};
    int rc = FERRY_ERR;
    bool claimed = false;
    if (md)
        crypto_sha256_final_hex(md, known);
    /* another server sharing the database may hold this upload too */
    if (uploads_claim_completion(c, u->id, true, &claimed, err) != FERRY_OK) {
        free(path);
        return FERRY_ERR;
    }
    if (!claimed) {
        free(path);
        return err_set(err, ERR_CONFLICT, "the upload is being completed elsewhere");
    }
    pthread_rwlock_rdlock(&req->app->blob_lock);
    if (blob_adopt_file(req->app->blobs, path, md ? known : NULL, NULL, hex, &size, err) ==
            FERRY_OK &&
        files_commit(c, u->path, hex, (int64_t)size, u->device_id, &e, err) == FERRY_OK) {
        json_t *j = files_entry_json(&e);
        char *result = jsonutil_to_string(j);
        json_decref(j);
        rc = uploads_finish(c, u->id, result, err);
        free(result);
    }
    pthread_rwlock_unlock(&req->app->blob_lock);
    if (rc != FERRY_OK)
        uploads_claim_completion(c, u->id, false, NULL, NULL);
    if (rc == FERRY_OK)
        files_remove_upload(req->app, u->id);
    files_entry_clear(&e);
    free(path);
    return rc;
}

static int patch(struct request *req, struct err *err)
{
    struct patch *p = req->sink_ctx;
    if (!p) {
        reply_status(req, 400, "the PATCH has no body");
        return FERRY_OK;
    }
    if (p->check_md) {
        unsigned char got[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(p->check_md, got, &len);
        if ((int)len != p->check_len || memcmp(got, p->check_want, len) != 0) {
            end_patch(req->db, p, false, NULL);
            reply_status(req, 460, "Checksum Mismatch: the bytes were discarded");
            return FERRY_OK;
        }
    }
    bool done = p->start + p->written == p->u.size;
    if (!done && end_patch(req->db, p, true, err) != FERRY_OK) {
        http_reply_err(req, err);
        return FERRY_OK;
    }
    if (done) { /* still holding the upload, so no other PATCH comes between */
        p->finished = true;
        int rc = settle(req->db, p, true, err);
        if (rc == FERRY_OK)
            rc = complete(req, req->db, &p->u, p->file_md, err);
        EVP_MD_CTX_free(p->file_md);
        p->file_md = NULL;
        live_release(p->u.id, NULL, 0, true);
        if (rc != FERRY_OK) {
            http_reply_err(req, err);
            return FERRY_OK;
        }
    }
    add_int_header(req, "Upload-Offset", p->u.received);
    if (!done)
        add_expires(req, p->u.expires_at);
    http_reply_text(req, 204, NULL, "", 0);
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
