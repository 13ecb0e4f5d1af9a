/* filesys.c - see filesys.h. Completing an upload, in order: a lease on the completion
 * (a crashed holder's lease is free at once), the blob's bytes hashed as they are read
 * from disk, a claim on the blob recorded, the blob put in place, then one transaction
 * commits the file entry, marks the upload complete and drops the claim. A crash at any
 * step leaves either the upload to complete again or the entry, never a blob that
 * collection may take before its entry names it. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/crashpoint.h"
#include "files/files.h"
#include "files/filesys.h"
#include "files/spool.h"
#include "jobs/jobs.h"
#include "util/buf.h"
#include "util/crypto.h"
#include "util/log.h"
#include "util/path.h"
#include "util/timeutil.h"

#define COPY_BUF (256 * 1024)
#define RECOVER_BATCH 1000

/* The blob store the settings name: DATA_DIR/blobs, or an S3 bucket (DATA_DIR/blobs then
 * holds only temporary files). */
static int open_blobs(struct filesys *fs, const struct filesys_settings *s, struct err *err)
{
    char *blobs = xasprintf("%s/blobs", s->data_dir);
    int rc = FERRY_ERR;
    const char *kind = s->blob_store ? s->blob_store : "local";
    if (!strcmp(kind, "local"))
        rc = blob_store_open(blobs, &fs->blobs, err);
    else if (!strncmp(kind, "s3://", 5))
        rc = blob_store_open_s3(blobs, kind, &s->cloud, &fs->blobs, err);
    else
        err_set(err, ERR_INVALID, "blob-store must be local or s3://bucket/prefix");
    free(blobs);
    const char *dl = s->blob_download ? s->blob_download : "proxy";
    if (rc == FERRY_OK && strcmp(dl, "proxy") != 0 && strcmp(dl, "redirect") != 0)
        rc = err_set(err, ERR_INVALID, "blob-download must be redirect or proxy");
    fs->redirect_downloads = !strcmp(dl, "redirect") && rc == FERRY_OK && blob_remote(fs->blobs);
    return rc;
}

int filesys_open(const struct filesys_settings *s, struct store *st, struct filesys **out,
                 struct err *err)
{
    struct filesys *fs = xcalloc(1, sizeof(*fs));
    int rc = filescope_parse_folders(s->shared_folders, &fs->shared, &fs->n_shared, err);
    if (rc == FERRY_OK)
        rc = open_blobs(fs, s, err);
    fs->store = st;
    fs->blob_grace_s = s->blob_grace_s;
    fs->uploads_dir = xasprintf("%s/uploads", s->data_dir);
    leases_self(fs->self);
    if (rc == FERRY_OK && mkdir(fs->uploads_dir, 0700) != 0 && errno != EEXIST)
        rc = spool_io_error(err, "cannot create", fs->uploads_dir);
    if (rc != FERRY_OK) {
        filesys_close(fs);
        fs = NULL;
    }
    *out = fs;
    return rc;
}

void filesys_close(struct filesys *fs)
{
    if (!fs)
        return;
    blob_store_close(fs->blobs);
    filescope_free_folders(fs->shared);
    free(fs->uploads_dir);
    free(fs);
}

struct filescope filesys_scope(const struct filesys *fs, const char *user_id, bool admin)
{
    return (struct filescope){user_id, admin, (const char *const *)fs->shared, fs->n_shared};
}

char *filesys_upload_dir(const struct filesys *fs, const char *id)
{
    return xasprintf("%s/%s", fs->uploads_dir, id);
}

char *filesys_chunk_path(const struct filesys *fs, const char *id, int64_t idx)
{
    return xasprintf("%s/%s/%lld", fs->uploads_dir, id, (long long)idx);
}

char *filesys_data_path(const struct filesys *fs, const char *id)
{
    return xasprintf("%s/%s/data", fs->uploads_dir, id);
}

int filesys_make_upload(const struct filesys *fs, const char *id, bool data_file, struct err *err)
{
    if (blob_remote(fs->blobs))
        return FERRY_OK; /* chunks and tus parts are staged in the S3 store */
    char *dir = filesys_upload_dir(fs, id), *data = filesys_data_path(fs, id);
    int fd = -1, rc = FERRY_OK;
    if (mkdir(dir, 0700) != 0)
        rc = spool_io_error(err, "cannot create", dir);
    else if (data_file && (fd = open(data, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0)
        rc = spool_io_error(err, "cannot create", data);
    if (fd >= 0)
        close(fd);
    free(dir);
    free(data);
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Removes upload id's folder and everything in it (symlinks, never their targets), and
 * its parts staged in an S3 store. */
static void remove_upload_dir(const struct filesys *fs, const char *id)
{
    char *dir = filesys_upload_dir(fs, id);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    if (blob_remote(fs->blobs)) {
        char *staged = xasprintf("uploads/%s/", id);
        blob_stage_drop(fs->blobs, staged);
        free(staged);
    }
}

char *filesys_spool_dir(const struct filesys *fs, const char *id)
{
    return blob_remote(fs->blobs) ? xstrdup(blob_tmp_dir(fs->blobs)) : filesys_upload_dir(fs, id);
}

int filesys_keep_chunk(struct filesys *fs, const char *id, int64_t idx, struct spool *spool,
                       struct err *err)
{
    if (!blob_remote(fs->blobs)) {
        char *final = filesys_chunk_path(fs, id, idx);
        int rc = spool_keep(spool, final, err);
        free(final);
        return rc;
    }
    char rnd[17];
    crypto_random_hex(rnd, 8);
    char *local = xasprintf("%s/chunk-%s", blob_tmp_dir(fs->blobs), rnd);
    char *name = xasprintf("uploads/%s/%lld", id, (long long)idx);
    int rc = spool_keep(spool, local, err) == FERRY_OK ? blob_stage_put(fs->blobs, name, local, err)
                                                       : FERRY_ERR;
    free(local);
    free(name);
    return rc;
}

static void lease_name(char *out, size_t cap, const char *what, const char *id)
{
    snprintf(out, cap, "%s:%s", what, id);
}

int filesys_delete_upload(struct filesys *fs, struct store_conn *c, const char *id, struct err *err)
{
    struct filesys_patch *p = NULL;
    bool found = false;
    if (filesys_patch_begin(fs, c, id, &p, err) != FERRY_OK)
        return FERRY_ERR;
    int rc = uploads_delete(c, id, &found, err);
    if (rc == FERRY_OK)
        remove_upload_dir(fs, id);
    filesys_patch_end(p, c);
    return rc;
}

/* --- completing ---------------------------------------------------------------------- */

/* ERR_INVALID naming the first few chunks not received, when any is missing. */
static int check_chunks(struct store_conn *c, const struct upload *u, struct err *err)
{
    json_t *received = NULL;
    struct buf b;
    int64_t missing = 0;
    size_t k = 0;
    if (uploads_chunks(c, u->id, &received, err) != FERRY_OK)
        return FERRY_ERR;
    buf_init(&b);
    for (int64_t i = 0; i < u->chunk_count; i++) {
        if (k < json_array_size(received) && json_integer_value(json_array_get(received, k)) == i) {
            k++;
            continue;
        }
        if (missing++ < 20)
            buf_printf(&b, "%s%lld", b.len ? ", " : "", (long long)i);
    }
    if (missing > 20)
        buf_printf(&b, " and %lld more", (long long)missing - 20);
    char *list = buf_steal(&b);
    int rc = missing ? err_set(err, ERR_INVALID, "%lld of %lld chunks are missing: %s",
                               (long long)missing, (long long)u->chunk_count, list)
                     : FERRY_OK;
    free(list);
    json_decref(received);
    return rc;
}

#define CLAIM_TRIES 250 /* 5 s of 20 ms waits for a collection holding the blob's lease */

/* Records upload id's claim on blob hex under the blob's lease, which collection holds
 * from asking whether a blob is used until it is gone: so the claim either comes first
 * and spares the blob, or comes after and the blob is then found missing and put. */
static int claim_blob(struct filesys *fs, struct store_conn *c, const char *id, const char *hex,
                      struct err *err)
{
    char name[80];
    struct lease l = {0};
    bool got = false;
    lease_name(name, sizeof(name), "blob", hex);
    for (int i = 0; i < CLAIM_TRIES && !got; i++) {
        if (leases_acquire(c, fs->self, name, &l, &got, err) != FERRY_OK)
            return FERRY_ERR;
        if (!got)
            usleep(20 * 1000);
    }
    if (!got)
        return err_set(err, ERR_LOCKED, "the blob is being collected; ask again shortly");
    int rc = uploads_claim_blob(c, id, hex, err);
    leases_release(c, &l);
    return rc;
}

struct part_copy {
    struct blob_writer *w;
    int64_t bytes;
};

static int copy_part(void *ctx, const void *data, size_t len)
{
    struct part_copy *pc = ctx;
    pc->bytes += (int64_t)len;
    return blob_writer_write(pc->w, data, len, NULL);
}

/* copy_chunk for chunks staged in an S3 store. */
static int copy_staged_chunk(struct filesys *fs, const struct upload *u, int64_t idx,
                             struct blob_writer *w, bool *lost, struct err *err)
{
    char *name = xasprintf("uploads/%s/%lld", u->id, (long long)idx);
    struct part_copy pc = {w, 0};
    int64_t expect = idx < u->chunk_count - 1 ? u->chunk_size : u->size - idx * u->chunk_size;
    int rc = blob_stage_get(fs->blobs, name, copy_part, &pc, err);
    free(name);
    /* missing, or cut short (a store that kept part of a put a dying node began) */
    if ((rc != FERRY_OK && err && err->code == ERR_NOT_FOUND) ||
        (rc == FERRY_OK && pc.bytes != expect)) {
        *lost = true;
        return err_set(err, ERR_INVALID, "chunk %lld was lost; send it again", (long long)idx);
    }
    return rc;
}

/* Streams chunk idx into w; *lost when its file is gone. */
static int copy_chunk(struct filesys *fs, const struct upload *u, int64_t idx,
                      struct blob_writer *w, char *buf, bool *lost, struct err *err)
{
    if (blob_remote(fs->blobs))
        return copy_staged_chunk(fs, u, idx, w, lost, err);
    char *path = filesys_chunk_path(fs, u->id, idx);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = 0;
    if (fd < 0) {
        *lost = true;
        free(path);
        return err_set(err, ERR_INVALID, "chunk %lld was lost; send it again", (long long)idx);
    }
    while ((n = read(fd, buf, COPY_BUF)) > 0 &&
           blob_writer_write(w, buf, (size_t)n, err) == FERRY_OK)
        ;
    if (n < 0)
        spool_io_error(err, "cannot read", path);
    close(fd);
    free(path);
    return n == 0 ? FERRY_OK : FERRY_ERR;
}

/* A chunked upload's blob: the chunks streamed in order into a new blob, hashed as they
 * are read, claimed, then put in place. */
static int chunked_blob(struct filesys *fs, struct store_conn *c, struct lease *l,
                        const struct upload *u, char hex[65], struct err *err)
{
    struct blob_writer *w = NULL;
    char *buf = xmalloc(COPY_BUF);
    uint64_t size = 0;
    bool lost = false;
    int rc = FERRY_ERR;
    int64_t i = 0;
    if (blob_writer_new(fs->blobs, &w, err) != FERRY_OK)
        goto out;
    for (; i < u->chunk_count; i++)
        if (copy_chunk(fs, u, i, w, buf, &lost, err) != FERRY_OK ||
            leases_renew(c, l, false, err) != FERRY_OK)
            goto out;
    blob_writer_digest(w, hex, &size);
    if (claim_blob(fs, c, u->id, hex, err) != FERRY_OK)
        goto out;
    CRASH_AT("complete.after_claim");
    rc = blob_writer_finish(w, u->sha256[0] ? u->sha256 : NULL, hex, &size, err);
    w = NULL;
out:
    if (lost)
        uploads_forget_chunk(c, u->id, i, NULL);
    blob_writer_abort(w);
    free(buf);
    return rc;
}

/* A tus upload's blob: its data file, hashed as it is on disk, claimed, then renamed
 * into the store. After a crash that came between the rename and the commit, the file
 * is gone and the claim names the blob. */
static char *tus_part_name(const char *id, int64_t offset)
{
    return xasprintf("uploads/%s/tus-%020lld", id, (long long)offset);
}

/* tus_blob for an S3 store: the parts staged by the PATCHes (each named by the offset it
 * starts at, and put before that offset's end was recorded) streamed in order, from 0,
 * into a new blob, hashed as they arrive, claimed, then put. */
static int tus_blob_staged(struct filesys *fs, struct store_conn *c, const struct upload *u,
                           char hex[65], struct err *err)
{
    struct part_copy pc = {NULL, 0};
    uint64_t size = 0;
    int rc = FERRY_ERR;
    if (blob_writer_new(fs->blobs, &pc.w, err) != FERRY_OK)
        return FERRY_ERR;
    while (pc.bytes < u->size) {
        int64_t from = pc.bytes;
        char *name = tus_part_name(u->id, from);
        int got = blob_stage_get(fs->blobs, name, copy_part, &pc, err);
        free(name);
        if (got != FERRY_OK || pc.bytes == from) {
            if (got == FERRY_OK || err->code == ERR_NOT_FOUND)
                err_set(err, ERR_INTERNAL, "the upload's bytes from %lld are lost",
                        (long long)from);
            goto out;
        }
    }
    blob_writer_digest(pc.w, hex, &size);
    if ((int64_t)size != u->size) {
        err_set(err, ERR_CONFLICT, "the upload holds %llu of its %lld bytes",
                (unsigned long long)size, (long long)u->size);
        goto out;
    }
    if (claim_blob(fs, c, u->id, hex, err) != FERRY_OK)
        goto out;
    CRASH_AT("complete.after_claim");
    rc = blob_writer_finish(pc.w, NULL, hex, &size, err);
    pc.w = NULL;
out:
    blob_writer_abort(pc.w);
    return rc;
}

static int tus_blob(struct filesys *fs, struct store_conn *c, const struct upload *u, char hex[65],
                    struct err *err)
{
    if (blob_remote(fs->blobs))
        return tus_blob_staged(fs, c, u, hex, err);
    char *path = filesys_data_path(fs, u->id);
    uint64_t size = 0;
    int rc = FERRY_ERR;
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) {
        if (uploads_claimed_blob(c, u->id, hex, err) == FERRY_OK)
            rc = hex[0] && blob_exists(fs->blobs, hex)
                     ? FERRY_OK
                     : err_set(err, ERR_INTERNAL, "the upload's bytes are lost");
    } else if (blob_hash_file(path, hex, &size, err) == FERRY_OK) {
        if ((int64_t)size != u->size)
            rc = err_set(err, ERR_CONFLICT, "the upload holds %llu of its %lld bytes",
                         (unsigned long long)size, (long long)u->size);
        else if (claim_blob(fs, c, u->id, hex, err) == FERRY_OK) {
            CRASH_AT("complete.after_claim");
            char known[65];
            memcpy(known, hex, sizeof(known));
            rc = blob_adopt_file(fs->blobs, path, known, NULL, hex, &size, err);
        }
    }
    free(path);
    return rc;
}

/* Under the completion lease: the blob, then the entry. */
static int complete_held(struct filesys *fs, struct store_conn *c, struct lease *l,
                         struct upload *u, char **result, struct err *err)
{
    char hex[65];
    struct file_entry e = {0};
    bool found = false;
    int rc = FERRY_ERR;
    if (uploads_get(c, u->id, u, &found, err) != FERRY_OK)
        return FERRY_ERR;
    if (!found)
        return err_set(err, ERR_NOT_FOUND, "no such upload");
    if (u->completed_at) { /* completed meanwhile: the same answer */
        *result = xstrdup(u->result ? u->result : "null");
        return FERRY_OK;
    }
    if (u->kind == UPLOAD_CHUNKED && check_chunks(c, u, err) != FERRY_OK)
        return FERRY_ERR;
    CRASH_AT("complete.before_blob");
    if ((u->kind == UPLOAD_CHUNKED ? chunked_blob(fs, c, l, u, hex, err)
                                   : tus_blob(fs, c, u, hex, err)) != FERRY_OK)
        return FERRY_ERR;
    CRASH_AT("complete.after_rename");
    /* the namespace as the configuration says now: a folder shared since the upload
     * began takes it */
    const char *owner =
        filescope_owner_of((const char *const *)fs->shared, fs->n_shared, u->user_id, u->path);
    if (files_commit_upload(c, u, owner, hex, u->size, &e, result, err) == FERRY_OK) {
        CRASH_AT("complete.after_commit");
        rc = FERRY_OK;
    }
    files_entry_clear(&e);
    return rc;
}

int filesys_complete(struct filesys *fs, struct store_conn *c, struct upload *u, char **result,
                     struct err *err)
{
    char name[80];
    struct lease l = {0};
    bool got = false;
    *result = NULL;
    lease_name(name, sizeof(name), "complete", u->id);
    if (leases_acquire(c, fs->self, name, &l, &got, err) != FERRY_OK)
        return FERRY_ERR;
    if (!got)
        return err_set(err, ERR_CONFLICT, "the upload is being completed; ask again shortly");
    int rc = complete_held(fs, c, &l, u, result, err);
    if (rc == FERRY_OK) {
        remove_upload_dir(fs, u->id);
        bool found = false;
        uploads_get(c, u->id, u, &found, NULL);
    }
    leases_release(c, &l);
    return rc;
}

/* --- tus ----------------------------------------------------------------------------- */

/* An upload whose bytes have all arrived is not done until its entry is committed: an
 * offset equal to the length tells a tus client that it is, so while another request (or
 * the lease of a node that died) holds the completion, the answer is 423 and the client
 * asks again. */
static int not_yet_complete(struct err *err)
{
    return err_set(err, ERR_LOCKED, "the upload is being completed; ask again shortly");
}

/* filesys_tus_check's work, while the caller holds the upload's PATCH lease. */
static int tus_check_held(struct filesys *fs, struct store_conn *c, struct upload *u,
                          struct err *err)
{
    char *result = NULL;
    struct stat st;
    /* Were the file lost or cut short (a restore without uploads/, say), the upload goes
     * on from what is really there instead of padding the gap with zeros. A file that is
     * gone may have become the blob already (see tus_blob). */
    char *path = filesys_data_path(fs, u->id);
    bool exists = !blob_remote(fs->blobs) && stat(path, &st) == 0; /* S3: the record holds */
    free(path);
    if (exists && st.st_size < u->received) {
        if (uploads_set_received(c, u->id, st.st_size, err) != FERRY_OK)
            return FERRY_ERR;
        u->received = st.st_size;
    }
    if (u->received != u->size)
        return FERRY_OK;
    int rc = filesys_complete(fs, c, u, &result, err);
    free(result);
    if (rc != FERRY_OK && err->code == ERR_CONFLICT)
        return not_yet_complete(err); /* another request (or a dead node's lease) has it */
    return rc;
}

int filesys_tus_check(struct filesys *fs, struct store_conn *c, struct upload *u,
                      const struct filesys_patch *held, struct err *err)
{
    struct filesys_patch *p = NULL;
    if (u->completed_at)
        return FERRY_OK;
    if (held)
        return tus_check_held(fs, c, u, err);
    if (filesys_patch_begin(fs, c, u->id, &p, err) != FERRY_OK) {
        if (err->code != ERR_LOCKED)
            return FERRY_ERR;
        /* a PATCH runs (or its dead node's lease lingers): the offset on record stands */
        return u->received == u->size ? not_yet_complete(err) : FERRY_OK;
    }
    int rc = tus_check_held(fs, c, u, err);
    filesys_patch_end(p, c);
    return rc;
}

/* Completes the tus uploads whose bytes all arrived but whose entry was never committed
 * (a crash between the two), on connection c. */
static int recover_on(struct filesys *fs, struct store_conn *c, struct err *err)
{
    char **ids = NULL;
    size_t n = 0;
    struct upload u = {0};
    int rc = uploads_unfinished_tus(c, RECOVER_BATCH, &ids, &n, err);
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        struct err one = {0};
        if (rc == FERRY_OK && uploads_get(c, ids[i], &u, &found, &one) == FERRY_OK && found &&
            filesys_tus_check(fs, c, &u, NULL, &one) != FERRY_OK && one.code != ERR_LOCKED)
            log_warn("tus_recovery", json_pack("{s:s, s:s, s:s}", "msg", "tus upload not recovered",
                                               "id", ids[i], "error", one.msg));
        free(ids[i]);
    }
    free(ids);
    uploads_clear(&u);
    return rc;
}

int filesys_recover(struct filesys *fs, struct err *err)
{
    struct store_conn *c = NULL;
    if (store_acquire(fs->store, &c, err) != FERRY_OK)
        return FERRY_ERR;
    int rc = recover_on(fs, c, err);
    store_release(c);
    return rc;
}

/* --- PATCH ---------------------------------------------------------------------------- */

#define WRITEBACK_STEP (8 * 1024 * 1024)

struct filesys_patch {
    struct filesys *fs;
    struct lease lease;
    struct upload u;
    int fd;
    int64_t start, written;
    int64_t flushed;      /* bytes of this PATCH already handed to writeback */
    int64_t checkpointed; /* bytes of this PATCH on record */
    bool checkpoints;
    bool lost;          /* the lease was taken over: this PATCH must not touch the upload again */
    bool staged;        /* S3 store: fd holds the bytes from piece_from, put as a part */
    int64_t piece_from; /* upload offset fd's first byte has */
};

int filesys_patch_begin(struct filesys *fs, struct store_conn *c, const char *id,
                        struct filesys_patch **out, struct err *err)
{
    char name[80];
    bool got = false;
    struct filesys_patch *p = xcalloc(1, sizeof(*p));
    p->fs = fs;
    p->fd = -1;
    *out = NULL;
    lease_name(name, sizeof(name), "patch", id);
    if (leases_acquire(c, fs->self, name, &p->lease, &got, err) != FERRY_OK || !got) {
        free(p);
        return got ? FERRY_ERR
                   : err_set(err, ERR_LOCKED, "another PATCH of this upload is in progress");
    }
    *out = p;
    return FERRY_OK;
}

int filesys_patch_open(struct filesys_patch *p, const struct upload *u, bool checkpoints,
                       struct err *err)
{
    char *path = filesys_data_path(p->fs, u->id);
    int rc = FERRY_OK;
    snprintf(p->u.id, sizeof(p->u.id), "%s", u->id);
    p->u.path = u->path ? xstrdup(u->path) : NULL;
    p->u.size = u->size;
    p->u.received = u->received;
    p->start = u->received;
    p->checkpoints = checkpoints;
    p->staged = blob_remote(p->fs->blobs);
    p->piece_from = p->start;
    if (p->staged) { /* an unnamed local file per part: nothing of it is left behind */
        const char *tmp = blob_tmp_dir(p->fs->blobs);
        if ((p->fd = open(tmp, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) < 0)
            rc = spool_io_error(err, "cannot create a file in", tmp);
        free(path);
        return rc;
    }
    p->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    /* bytes past the recorded offset came from a request that never finished */
    if (p->fd < 0 || ftruncate(p->fd, p->start) != 0 || lseek(p->fd, p->start, SEEK_SET) < 0)
        rc = spool_io_error(err, "cannot open", path);
    free(path);
    return rc;
}

/* The caller's connection, or one from the pool (*own says which to give back). */
static struct store_conn *conn_for(struct filesys *fs, struct store_conn *c,
                                   struct store_conn **own, struct err *err)
{
    *own = NULL;
    if (c)
        return c;
    return store_acquire(fs->store, own, err) == FERRY_OK ? *own : NULL;
}

/* With an S3 store: puts the bytes of fd (the upload's from piece_from to offset) as the
 * part named by piece_from, before offset is recorded, and starts the next part. */
static int put_part(struct filesys_patch *p, int64_t offset, struct err *err)
{
    if (offset == p->piece_from)
        return FERRY_OK;
    char *name = tus_part_name(p->u.id, p->piece_from);
    int rc = blob_stage_put_fd(p->fs->blobs, name, p->fd, err);
    free(name);
    if (rc != FERRY_OK)
        return FERRY_ERR;
    if (ftruncate(p->fd, 0) != 0 || lseek(p->fd, 0, SEEK_SET) < 0)
        return spool_io_error(err, "cannot truncate", p->u.id);
    p->piece_from = offset;
    return FERRY_OK;
}

/* Records the offset reached (its bytes flushed first, or put as a part) and keeps the
 * lease. */
static int checkpoint(struct filesys_patch *p, struct store_conn *conn, int64_t offset,
                      struct err *err)
{
    struct store_conn *own = NULL, *c = NULL;
    int rc = FERRY_ERR;
    if (p->staged ? put_part(p, offset, err) != FERRY_OK : fdatasync(p->fd) != 0)
        return p->staged ? FERRY_ERR : spool_io_error(err, "cannot flush", p->u.id);
    if (!(c = conn_for(p->fs, conn, &own, err)))
        return FERRY_ERR;
    if (leases_renew(c, &p->lease, true, err) != FERRY_OK)
        p->lost = true;
    else if (offset == p->u.received || uploads_set_received(c, p->u.id, offset, err) == FERRY_OK)
        rc = FERRY_OK;
    if (rc == FERRY_OK)
        p->u.received = offset;
    store_release(own);
    return rc;
}

/* Keeps the lease while bytes trickle in without reaching a checkpoint. */
static int keep_lease(struct filesys_patch *p, struct store_conn *conn, struct err *err)
{
    struct store_conn *own = NULL, *c = NULL;
    if (time_now_ms() - p->lease.renewed_ms < LEASES_RENEW_MS)
        return FERRY_OK;
    if (!(c = conn_for(p->fs, conn, &own, err)))
        return FERRY_ERR;
    int rc = leases_renew(c, &p->lease, true, err);
    store_release(own);
    p->lost = rc != FERRY_OK;
    return rc;
}

static int write_all(struct filesys_patch *p, const char *data, size_t len, struct err *err)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = write(p->fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return spool_io_error(err, "cannot write upload", p->u.id);
        done += (size_t)n;
        p->written += n;
    }
    return FERRY_OK;
}

int filesys_patch_write(struct filesys_patch *p, struct store_conn *c, const void *data, size_t len,
                        struct err *err)
{
    if (p->start + p->written + (int64_t)len > p->u.size)
        return err_set(err, ERR_TOO_LARGE, "the body goes past Upload-Length");
    if (keep_lease(p, c, err) != FERRY_OK || write_all(p, data, len, err) != FERRY_OK)
        return FERRY_ERR;
    /* Start writing what arrived to disk now, a few MiB at a time, so that the flush
     * before the answer waits only for the tail, not for the whole body. */
    if (!p->staged && p->written - p->flushed >= WRITEBACK_STEP) {
        sync_file_range(p->fd, p->start + p->flushed, p->written - p->flushed,
                        SYNC_FILE_RANGE_WRITE);
        p->flushed = p->written;
    }
    if (p->checkpoints && p->written - p->checkpointed >= FILESYS_CHECKPOINT) {
        if (checkpoint(p, c, p->start + p->written, err) != FERRY_OK)
            return FERRY_ERR;
        p->checkpointed = p->written;
        CRASH_AT("tus.patch.checkpoint");
    }
    return FERRY_OK;
}

/* Completes the upload p wrote the last byte of. */
static int complete_patched(struct filesys_patch *p, struct store_conn *c, char **result,
                            struct err *err)
{
    struct upload u = {0};
    bool found = false;
    int rc = uploads_get(c, p->u.id, &u, &found, err);
    if (rc == FERRY_OK)
        rc = found ? filesys_complete(p->fs, c, &u, result, err)
                   : err_set(err, ERR_NOT_FOUND, "no such upload");
    uploads_clear(&u);
    return rc;
}

int filesys_patch_settle(struct filesys_patch *p, struct store_conn *conn, bool keep,
                         int64_t *offset, bool *done, char **result, struct err *err)
{
    struct store_conn *own = NULL, *c = NULL;
    int rc = FERRY_OK;
    *done = false;
    *result = NULL;
    *offset = p->u.received;
    if (p->lost)
        return err_set(err, ERR_CONFLICT, "another PATCH took this upload over");
    if (p->fd < 0)
        return FERRY_OK;
    CRASH_AT("tus.patch.before_settle");
    if (!keep && ftruncate(p->fd, p->staged ? 0 : p->start) != 0)
        return spool_io_error(err, "cannot truncate", p->u.id);
    if (!keep)
        p->piece_from = p->start;
    if (!(c = conn_for(p->fs, conn, &own, err)))
        return FERRY_ERR;
    rc = checkpoint(p, c, p->start + (keep ? p->written : 0), err);
    *offset = p->u.received;
    close(p->fd);
    p->fd = -1;
    if (rc == FERRY_OK && keep && p->u.received == p->u.size) {
        CRASH_AT("tus.patch.before_complete");
        rc = complete_patched(p, c, result, err);
        *done = rc == FERRY_OK;
    }
    store_release(own);
    return rc;
}

void filesys_patch_end(struct filesys_patch *p, struct store_conn *conn)
{
    struct store_conn *own = NULL, *c = NULL;
    if (!p)
        return;
    if (p->fd >= 0)
        close(p->fd);
    if (!p->lost && (c = conn_for(p->fs, conn, &own, NULL)) != NULL) {
        leases_release(c, &p->lease);
        store_release(own);
    }
    uploads_clear(&p->u);
    free(p);
}

/* --- housekeeping -------------------------------------------------------------------- */

struct collecting {
    struct filesys *fs;
    struct store_conn *c;
    struct lease held; /* the blob's lease, from an unreferenced answer until done */
};

/* Under the blob's lease (the one claims are recorded under), so the answer "unused"
 * holds until the blob is gone; a blob whose lease another holds is kept this time. */
static bool blob_in_use(const char *hex, void *ctx)
{
    struct collecting *col = ctx;
    char name[80];
    bool got = false, used = true; /* on a database error, keep the blob */
    lease_name(name, sizeof(name), "blob", hex);
    if (leases_acquire(col->c, col->fs->self, name, &col->held, &got, NULL) != FERRY_OK || !got)
        return true;
    files_blob_used(col->c, hex, &used, NULL);
    if (used)
        leases_release(col->c, &col->held);
    return used;
}

static void blob_collected(const char *hex, void *ctx)
{
    struct collecting *col = ctx;
    (void)hex;
    leases_release(col->c, &col->held);
}

void filesys_housekeeping(struct filesys *fs, struct store_conn *c, int64_t jobs_retention_ms,
                          struct filesys_swept *out)
{
    int64_t old_jobs = 0;
    char **ids = NULL;
    size_t n = 0;
    struct err err = {0};
    memset(out, 0, sizeof(*out));
    /* A complete upload whose node died before committing its entry (and whose lease
     * has since expired) is completed here, before any expiry could take it. */
    recover_on(fs, c, &err);
    /* Expired sessions lose their bytes at once and their record a day later, so that
     * a client asking in between learns that the session expired (410), not that it
     * never was (404). */
    int64_t now = time_now_ms();
    if (uploads_expired(c, now, 1000, &ids, &n, &err) == FERRY_OK) {
        for (size_t i = 0; i < n; i++) {
            char *dir = filesys_upload_dir(fs, ids[i]);
            struct stat st;
            if (stat(dir, &st) == 0 || blob_remote(fs->blobs)) {
                remove_upload_dir(fs, ids[i]);
                out->uploads++;
            }
            free(dir);
            free(ids[i]);
        }
        free(ids);
    }
    struct store_val v = sv_int(now - 86400000);
    store_run(c,
              "DELETE FROM ferry_upload_chunks WHERE upload_id IN"
              " (SELECT id FROM ferry_uploads WHERE expires_at < $1)",
              &v, 1, NULL, NULL);
    store_run(c,
              "DELETE FROM ferry_blob_claims WHERE upload_id IN"
              " (SELECT id FROM ferry_uploads WHERE expires_at < $1)",
              &v, 1, NULL, NULL);
    store_run(c, "DELETE FROM ferry_uploads WHERE expires_at < $1", &v, 1, NULL, NULL);
    store_run(c, "DELETE FROM ferry_leases WHERE expires_at < $1", &v, 1, NULL, NULL);
    jobs_purge(c, now - jobs_retention_ms, &old_jobs, NULL);
    blob_clear_stale(fs->blobs);
    struct collecting col = {.fs = fs, .c = c};
    struct blob_collector who = {blob_in_use, blob_collected, &col};
    blob_collect(fs->blobs, &who, fs->blob_grace_s, &out->blobs, &err);
}
