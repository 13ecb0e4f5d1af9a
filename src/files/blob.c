/* blob.c - see blob.h. Blobs are written through a spool (spool.h), which hashes the
 * bytes as they arrive. The local folder backend is here; an s3:// store hands the
 * hashed bytes to blob_s3.c (the local folder then only holds temporary files). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "files/blob.h"
#include "files/blob_s3.h"
#include "files/spool.h"
#include "util/crypto.h"

#define TMP_DIR "tmp"
#define COPY_CHUNK (256 * 1024)

struct blob_store {
    char *dir;          /* the blobs, or only the temporary files when s3 is set */
    char *tmp;          /* dir/tmp */
    struct blob_s3 *s3; /* NULL: the local folder backend */
};

struct blob_writer {
    struct blob_store *bs;
    struct spool *spool;
};

static int make_dir(const char *path, struct err *err)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return spool_io_error(err, "cannot create", path);
    return FERRY_OK;
}

/* Removes temporary files not written to for TMP_STALE_S seconds: left by a crash.
 * Younger ones may belong to a writer (of another node sharing the folder). */
#define TMP_STALE_S 3600

/* Puts back a blob a collection renamed aside and did not get to remove (it crashed
 * between the two): the next collection decides again. */
static void restore_doomed(const char *tmp, const char *name)
{
    char hex[65];
    if (sscanf(name, ".doomed-%64[0-9a-f]-", hex) != 1 || !blob_valid_hex(hex))
        return;
    char *from = xasprintf("%s/%s", tmp, name);
    char *to = xasprintf("%s/../%.2s/%.2s/%s", tmp, hex, hex + 2, hex);
    rename(from, to);
    free(from);
    free(to);
}

static void clear_tmp(const char *tmp)
{
    DIR *d = opendir(tmp);
    struct dirent *e;
    struct stat st;
    time_t now = time(NULL);
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (!strncmp(e->d_name, ".doomed-", 8)) {
            restore_doomed(tmp, e->d_name);
            continue;
        }
        char *path = xasprintf("%s/%s", tmp, e->d_name);
        if (lstat(path, &st) == 0 && now - st.st_mtime > TMP_STALE_S)
            unlink(path);
        free(path);
    }
    closedir(d);
}

void blob_clear_stale(struct blob_store *bs)
{
    char *tmp = xasprintf("%s/" TMP_DIR, bs->dir);
    clear_tmp(tmp);
    free(tmp);
}

int blob_store_open(const char *dir, struct blob_store **out, struct err *err)
{
    char *tmp = xasprintf("%s/" TMP_DIR, dir);
    int rc = FERRY_ERR;
    *out = NULL;
    if (make_dir(dir, err) == FERRY_OK && make_dir(tmp, err) == FERRY_OK) {
        clear_tmp(tmp);
        *out = xcalloc(1, sizeof(**out));
        (*out)->dir = xstrdup(dir);
        (*out)->tmp = xstrdup(tmp);
        rc = FERRY_OK;
    }
    free(tmp);
    return rc;
}

int blob_store_open_s3(const char *scratch, const char *url, const struct cloud_settings *settings,
                       struct blob_store **out, struct err *err)
{
    struct blob_s3 *s3 = NULL;
    if (blob_s3_open(url, settings, scratch, &s3, err) != FERRY_OK)
        return FERRY_ERR;
    if (blob_store_open(scratch, out, err) != FERRY_OK) {
        blob_s3_close(s3);
        return FERRY_ERR;
    }
    (*out)->s3 = s3;
    return FERRY_OK;
}

bool blob_remote(const struct blob_store *bs)
{
    return bs->s3 != NULL;
}

void blob_store_close(struct blob_store *bs)
{
    if (!bs)
        return;
    blob_s3_close(bs->s3);
    free(bs->tmp);
    free(bs->dir);
    free(bs);
}

bool blob_valid_hex(const char *text)
{
    if (!text || strlen(text) != 64)
        return false;
    for (const char *p = text; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

char *blob_path(const struct blob_store *bs, const char *hex, struct err *err)
{
    if (!blob_valid_hex(hex)) {
        err_set(err, ERR_INVALID, "not a SHA-256 in lower-case hex");
        return NULL;
    }
    return xasprintf("%s/%.2s/%.2s/%s", bs->dir, hex, hex + 2, hex);
}

/* Whether blob hex is stored whole (size bytes), so that a new copy can be dropped. On S3
 * an object of another size is a put that never finished: some S3-compatible servers
 * (s3rver) write a put straight into the object, so a node that died mid-put, or a put
 * still running, shows part of it. It counts as absent, and the caller puts it whole. */
static bool stored_whole(const struct blob_store *bs, const char *hex, uint64_t size)
{
    uint64_t stored = 0;
    if (!bs->s3)
        return blob_exists(bs, hex);
    return blob_valid_hex(hex) && blob_s3_exists(bs->s3, hex, &stored) && stored == size;
}

bool blob_exists(const struct blob_store *bs, const char *hex)
{
    if (bs->s3)
        return blob_valid_hex(hex) && blob_s3_exists(bs->s3, hex, NULL);
    struct stat st;
    char *path = blob_path(bs, hex, NULL);
    bool found = path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
    free(path);
    return found;
}

int blob_writer_new(struct blob_store *bs, struct blob_writer **out, struct err *err)
{
    char *tmp = xasprintf("%s/" TMP_DIR, bs->dir);
    struct spool *spool = NULL;
    int rc = spool_new(tmp, &spool, err);
    free(tmp);
    *out = NULL;
    if (rc != FERRY_OK)
        return rc;
    *out = xcalloc(1, sizeof(**out));
    (*out)->bs = bs;
    (*out)->spool = spool;
    return FERRY_OK;
}

int blob_writer_write(struct blob_writer *w, const void *data, size_t len, struct err *err)
{
    return spool_write(w->spool, data, len, err);
}

void blob_writer_abort(struct blob_writer *w)
{
    if (!w)
        return;
    spool_discard(w->spool);
    free(w);
}

/* Makes the fan-out folders of blob hex; *final gets the blob's path. */
static int make_fanout(const struct blob_store *bs, const char *hex, char **final, struct err *err)
{
    char *first = xasprintf("%s/%.2s", bs->dir, hex);
    char *second = xasprintf("%s/%.2s", first, hex + 2);
    int rc = make_dir(first, err) == FERRY_OK ? make_dir(second, err) : FERRY_ERR;
    *final = rc == FERRY_OK ? xasprintf("%s/%s", second, hex) : NULL;
    free(first);
    free(second);
    return rc;
}

void blob_writer_digest(const struct blob_writer *w, char hex[65], uint64_t *size)
{
    spool_hash(w->spool, hex);
    *size = spool_size(w->spool);
}

int blob_writer_finish(struct blob_writer *w, const char *expect_sha256, char hex[65],
                       uint64_t *size, struct err *err)
{
    struct spool *spool = w->spool;
    struct blob_store *bs = w->bs;
    char *final = NULL;
    int rc = FERRY_ERR;

    free(w);
    spool_hash(spool, hex);
    *size = spool_size(spool);
    if (expect_sha256 && strcmp(expect_sha256, hex) != 0) {
        spool_discard(spool);
        return err_set(err, ERR_INVALID, "checksum mismatch: expected sha256 %.64s, got %s",
                       expect_sha256, hex);
    }
    if (stored_whole(bs, hex, *size)) { /* stored once: this copy is dropped */
        spool_discard(spool);
        return FERRY_OK;
    }
    if (bs->s3) { /* kept as a local file, then put under the hash it was found to have */
        char rnd[17];
        crypto_random_hex(rnd, 8);
        final = xasprintf("%s/" TMP_DIR "/put-%s", bs->dir, rnd);
        rc = spool_keep(spool, final, err) == FERRY_OK ? blob_s3_put(bs->s3, final, hex, err)
                                                       : FERRY_ERR;
        unlink(final);
    } else if (make_fanout(bs, hex, &final, err) == FERRY_OK)
        rc = spool_keep(spool, final, err);
    else
        spool_discard(spool);
    free(final);
    return rc;
}

/* Reads the file at path piece by piece into each(piece, len, ctx); *size gets its
 * length. Stops at the first piece each() refuses. */
static int read_file(const char *path, int (*each)(const char *, size_t, void *, struct err *),
                     void *ctx, uint64_t *size, struct err *err)
{
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = FERRY_ERR;
    ssize_t n;
    if (fd < 0)
        return spool_io_error(err, "cannot read", path);
    buf = xmalloc(COPY_CHUNK);
    *size = 0;
    while ((n = read(fd, buf, COPY_CHUNK)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            spool_io_error(err, "cannot read", path);
            goto out;
        }
        if (each(buf, (size_t)n, ctx, err) != FERRY_OK)
            goto out;
        *size += (uint64_t)n;
    }
    rc = FERRY_OK;
out:
    free(buf);
    close(fd);
    return rc;
}

static int write_piece(const char *piece, size_t len, void *ctx, struct err *err)
{
    return blob_writer_write(ctx, piece, len, err);
}

static int hash_piece(const char *piece, size_t len, void *ctx, struct err *err)
{
    (void)err;
    EVP_DigestUpdate(ctx, piece, len);
    return FERRY_OK;
}

int blob_put_file(struct blob_store *bs, const char *path, char hex[65], uint64_t *size,
                  struct err *err)
{
    struct blob_writer *w = NULL;
    uint64_t read_size = 0;
    if (blob_writer_new(bs, &w, err) != FERRY_OK)
        return FERRY_ERR;
    if (read_file(path, write_piece, w, &read_size, err) != FERRY_OK) {
        blob_writer_abort(w);
        return FERRY_ERR;
    }
    return blob_writer_finish(w, NULL, hex, size, err);
}

struct collect {
    struct blob_store *bs;
    const struct blob_collector *who;
    int64_t young_ms; /* blobs put in place after this are spared */
    int64_t removed;
};

/* Collects one unreferenced blob of the local folder: renamed aside first, then removed,
 * while the collector's answer holds (see blob_collector). */
static void collect_one(struct collect *col, const char *path, const char *hex)
{
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
        (int64_t)st.st_ctime * 1000 > col->young_ms || col->who->referenced(hex, col->who->ctx))
        return;
    char rnd[17];
    crypto_random_hex(rnd, 8);
    char *aside = xasprintf("%s/" TMP_DIR "/.doomed-%s-%s", col->bs->dir, hex, rnd);
    if (rename(path, aside) == 0 && unlink(aside) == 0)
        col->removed++;
    col->who->done(hex, col->who->ctx);
    free(aside);
}

/* Visits DIR/xx/yy/<hash> and collects unreferenced blobs. */
static void collect_in(struct collect *col, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (name[0] == '.' || (depth == 0 && !strcmp(name, TMP_DIR)))
            continue;
        char *path = xasprintf("%s/%s", dir, name);
        if (depth < 2 && strlen(name) == 2)
            collect_in(col, path, depth + 1);
        else if (depth == 2 && blob_valid_hex(name))
            collect_one(col, path, name);
        free(path);
    }
    closedir(d);
}

/* Collects one listed object of an s3:// store (same protocol as collect_one). */
static void collect_object(const char *hex, int64_t modified_ms, void *ctx)
{
    struct collect *col = ctx;
    if (modified_ms > col->young_ms || col->who->referenced(hex, col->who->ctx))
        return;
    if (blob_s3_delete(col->bs->s3, hex, NULL) == FERRY_OK)
        col->removed++;
    col->who->done(hex, col->who->ctx);
}

int blob_collect(struct blob_store *bs, const struct blob_collector *who, int64_t grace_s,
                 int64_t *removed, struct err *err)
{
    struct collect col = {bs, who, ((int64_t)time(NULL) - grace_s) * 1000, 0};
    int rc = FERRY_OK;
    if (bs->s3)
        rc = blob_s3_each(bs->s3, collect_object, &col, err);
    else
        collect_in(&col, bs->dir, 0);
    *removed = col.removed;
    return rc;
}

int blob_open(struct blob_store *bs, const char *hex, int *fd, struct err *err)
{
    *fd = -1;
    if (bs->s3)
        return err_set(err, ERR_INVALID, "an S3 blob store has no files to open");
    char *path = blob_path(bs, hex, err);
    *fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    free(path);
    return *fd >= 0
               ? FERRY_OK
               : err_set(err, ERR_INTERNAL, "the file's content is missing from the blob store");
}

int blob_read(struct blob_store *bs, const char *hex, uint64_t start, uint64_t len, struct buf *out,
              struct err *err)
{
    if (!bs->s3)
        return err_set(err, ERR_INVALID, "a local blob store is read from its files");
    if (len == 0) /* a range of 0 bytes would be "to the end" for the store */
        return FERRY_OK;
    return blob_s3_fetch(bs->s3, hex, start, len, out, err);
}

int blob_presign(struct blob_store *bs, const char *hex, int64_t expires_at, char **url,
                 struct err *err)
{
    if (!bs->s3)
        return err_set(err, ERR_INVALID, "a local blob store has no links");
    return blob_s3_presign(bs->s3, hex, expires_at, url, err);
}

int blob_hash_file(const char *path, char hex[65], uint64_t *size, struct err *err)
{
    EVP_MD_CTX *md = crypto_digest_new(EVP_sha256());
    int rc = read_file(path, hash_piece, md, size, err);
    if (rc == FERRY_OK)
        crypto_sha256_final_hex(md, hex);
    EVP_MD_CTX_free(md);
    return rc;
}

int blob_adopt_file(struct blob_store *bs, const char *path, const char *known_sha256,
                    const char *expect_sha256, char hex[65], uint64_t *size, struct err *err)
{
    struct stat st;
    char *final = NULL;
    int rc = FERRY_ERR;

    if (known_sha256) {
        snprintf(hex, 65, "%s", known_sha256);
        if (stat(path, &st) != 0)
            return spool_io_error(err, "cannot read", path);
        *size = (uint64_t)st.st_size;
    } else if (blob_hash_file(path, hex, size, err) != FERRY_OK) {
        return FERRY_ERR;
    }
    if (expect_sha256 && strcmp(expect_sha256, hex) != 0)
        return err_set(err, ERR_INVALID, "checksum mismatch: expected sha256 %.64s, got %s",
                       expect_sha256, hex);
    if (stored_whole(bs, hex, *size)) {
        unlink(path);
        return FERRY_OK;
    }
    if (bs->s3) {
        rc = blob_s3_put(bs->s3, path, hex, err);
        if (rc == FERRY_OK)
            unlink(path);
        return rc;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        rc = spool_io_error(err, "cannot flush", path);
    } else if (make_fanout(bs, hex, &final, err) == FERRY_OK) {
        if (rename(path, final) == 0) {
            char *dir = xasprintf("%s/%.2s/%.2s", bs->dir, hex, hex + 2);
            spool_sync_dir(dir);
            free(dir);
            rc = FERRY_OK;
        } else if (errno == EXDEV) { /* blobs on another file system: copy instead */
            char copied[65];
            rc = blob_put_file(bs, path, copied, size, err);
            if (rc == FERRY_OK && strcmp(copied, hex) != 0) /* changed since it was hashed */
                rc = err_set(err, ERR_INVALID, "%s changed while it was stored", path);
            if (rc == FERRY_OK)
                unlink(path);
        } else {
            rc = spool_io_error(err, "cannot store blob", final);
        }
    }
    if (fd >= 0)
        close(fd);
    free(final);
    return rc;
}

const char *blob_tmp_dir(const struct blob_store *bs)
{
    return bs->tmp;
}

int blob_stage_put(struct blob_store *bs, const char *name, const char *path, struct err *err)
{
    if (!bs->s3)
        return err_set(err, ERR_INTERNAL, "a local blob store stages nothing");
    int rc = blob_s3_stage_put(bs->s3, name, path, err);
    unlink(path);
    return rc;
}

int blob_stage_put_fd(struct blob_store *bs, const char *name, int fd, struct err *err)
{
    if (!bs->s3)
        return err_set(err, ERR_INTERNAL, "a local blob store stages nothing");
    return blob_s3_stage_put_fd(bs->s3, name, fd, err);
}

int blob_stage_get(struct blob_store *bs, const char *name, cloud_write_fn write, void *ctx,
                   struct err *err)
{
    if (!bs->s3)
        return err_set(err, ERR_INTERNAL, "a local blob store stages nothing");
    return blob_s3_stage_get(bs->s3, name, write, ctx, err);
}

void blob_stage_drop(struct blob_store *bs, const char *name_prefix)
{
    if (bs->s3)
        blob_s3_stage_drop(bs->s3, name_prefix);
}
