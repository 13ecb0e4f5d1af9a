/* blob.c - see blob.h. Hashing is OpenSSL's incremental SHA-256 (EVP_DigestUpdate),
 * fed as the bytes arrive. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "blob/blob.h"

#define TMP_DIR "tmp"
#define COPY_CHUNK (256 * 1024)

struct blob_store {
    char *dir;
};

struct blob_writer {
    struct blob_store *bs;
    char *tmp_path;
    int fd;
    EVP_MD_CTX *md;
    uint64_t size;
};

static int io_error(struct err *err, const char *what, const char *path)
{
    int e = errno;
    return err_set(err, e == ENOSPC || e == EDQUOT ? ERR_STORAGE_FULL : ERR_INTERNAL,
                   "%s %s: %s", what, path, strerror(e));
}

static int make_dir(const char *path, struct err *err)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return io_error(err, "cannot create", path);
    return FERRY_OK;
}

/* Removes temporary files left by a crash: none of them is a finished blob. */
static void clear_tmp(const char *tmp)
{
    DIR *d = opendir(tmp);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *path = xasprintf("%s/%s", tmp, e->d_name);
        unlink(path);
        free(path);
    }
    closedir(d);
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
        rc = FERRY_OK;
    }
    free(tmp);
    return rc;
}

void blob_store_close(struct blob_store *bs)
{
    if (!bs)
        return;
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

bool blob_exists(const struct blob_store *bs, const char *hex)
{
    struct stat st;
    char *path = blob_path(bs, hex, NULL);
    bool found = path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
    free(path);
    return found;
}

int blob_writer_new(struct blob_store *bs, struct blob_writer **out, struct err *err)
{
    struct blob_writer *w = xcalloc(1, sizeof(*w));
    w->bs = bs;
    w->tmp_path = xasprintf("%s/" TMP_DIR "/blob-XXXXXX", bs->dir);
    w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
    *out = NULL;
    if (w->fd < 0) {
        int rc = io_error(err, "cannot create", w->tmp_path);
        free(w->tmp_path);
        free(w);
        return rc;
    }
    w->md = EVP_MD_CTX_new();
    if (!w->md || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1)
        abort(); /* allocation policy: see ferry.h */
    *out = w;
    return FERRY_OK;
}

int blob_writer_write(struct blob_writer *w, const void *data, size_t len, struct err *err)
{
    const char *p = data;
    EVP_DigestUpdate(w->md, data, len);
    while (len > 0) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return io_error(err, "cannot write", w->tmp_path);
        p += n;
        len -= (size_t)n;
        w->size += (uint64_t)n;
    }
    return FERRY_OK;
}

void blob_writer_abort(struct blob_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    unlink(w->tmp_path);
    EVP_MD_CTX_free(w->md);
    free(w->tmp_path);
    free(w);
}

static void to_hex(const unsigned char *md, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

/* Flushes a directory so a rename in it survives a power cut. */
static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Renames the finished temporary file to the blob's name (fan-out folders made as
 * needed). When the blob exists already, the copy is simply dropped. */
static int place(struct blob_writer *w, const char *hex, struct err *err)
{
    char *first = xasprintf("%s/%.2s", w->bs->dir, hex);
    char *second = xasprintf("%s/%.2s", first, hex + 2);
    char *final = xasprintf("%s/%s", second, hex);
    int rc = FERRY_ERR;

    if (blob_exists(w->bs, hex)) {
        unlink(w->tmp_path);
        rc = FERRY_OK;
    } else if (make_dir(first, err) == FERRY_OK && make_dir(second, err) == FERRY_OK) {
        if (rename(w->tmp_path, final) != 0) {
            io_error(err, "cannot store blob", final);
        } else {
            sync_dir(second);
            rc = FERRY_OK;
        }
    }
    free(first);
    free(second);
    free(final);
    return rc;
}

int blob_writer_finish(struct blob_writer *w, const char *expect_sha256, char hex[65],
                       uint64_t *size, struct err *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int rc = FERRY_ERR;

    EVP_DigestFinal_ex(w->md, md, &md_len);
    to_hex(md, hex);
    *size = w->size;
    if (expect_sha256 && strcmp(expect_sha256, hex) != 0) {
        err_set(err, ERR_INVALID, "checksum mismatch: expected sha256 %.64s, got %s",
                expect_sha256, hex);
        goto out;
    }
    if (fsync(w->fd) != 0) {
        io_error(err, "cannot flush", w->tmp_path);
        goto out;
    }
    close(w->fd);
    w->fd = -1;
    rc = place(w, hex, err);
out:
    if (rc != FERRY_OK && w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    if (rc != FERRY_OK)
        unlink(w->tmp_path);
    EVP_MD_CTX_free(w->md);
    free(w->tmp_path);
    free(w);
    return rc;
}

int blob_put_file(struct blob_store *bs, const char *path, char hex[65], uint64_t *size,
                  struct err *err)
{
    struct blob_writer *w = NULL;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = FERRY_ERR;
    ssize_t n;

    if (fd < 0)
        return io_error(err, "cannot read", path);
    if (blob_writer_new(bs, &w, err) != FERRY_OK)
        goto out;
    buf = xmalloc(COPY_CHUNK);
    while ((n = read(fd, buf, COPY_CHUNK)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            io_error(err, "cannot read", path);
            goto out;
        }
        if (blob_writer_write(w, buf, (size_t)n, err) != FERRY_OK)
            goto out;
    }
    rc = blob_writer_finish(w, NULL, hex, size, err);
    w = NULL;
out:
    blob_writer_abort(w);
    free(buf);
    close(fd);
    return rc;
}

/* Visits DIR/xx/yy/<hash> and removes unreferenced blobs. */
static int collect_in(const char *dir, int depth, bool (*referenced)(const char *, void *),
                      void *ctx, int64_t *removed)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return FERRY_OK;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (name[0] == '.' || (depth == 0 && !strcmp(name, TMP_DIR)))
            continue;
        char *path = xasprintf("%s/%s", dir, name);
        if (depth < 2 && strlen(name) == 2)
            collect_in(path, depth + 1, referenced, ctx, removed);
        else if (depth == 2 && blob_valid_hex(name) && !referenced(name, ctx) &&
                 unlink(path) == 0)
            (*removed)++;
        free(path);
    }
    closedir(d);
    return FERRY_OK;
}

int blob_collect(struct blob_store *bs, bool (*referenced)(const char *hex, void *ctx),
                 void *ctx, int64_t *removed, struct err *err)
{
    (void)err;
    *removed = 0;
    return collect_in(bs->dir, 0, referenced, ctx, removed);
}
