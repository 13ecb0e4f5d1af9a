/* local.c - the local provider: objects are files under one folder (local-cloud-dir),
 * their etag and metadata in a side file under .ferry-meta/, and shared links are ferry's
 * own URLs signed with HMAC-SHA256 (served by api/cloud.c). Names starting with ".ferry-"
 * are ferry's and never objects. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloud/cloud_internal.h"
#include "cloud/sign.h"
#include "cloud/transfer.h"
#include "util/crypto.h"
#include "util/path.h"

#define COPY_BUF (256 * 1024)
#define META_DIR ".ferry-meta"
#define MAX_DEPTH 64

struct local {
    char *root; /* real path */
};

static bool reserved_key(const char *key)
{
    for (const char *seg = key; seg; seg = strchr(seg, '/'), seg = seg ? seg + 1 : NULL)
        if (!strncmp(seg, ".ferry-", 7))
            return true;
    return false;
}

static int resolve(struct cloud *c, const char *key, char **path, struct err *err)
{
    struct local *l = c->impl;
    if (reserved_key(key))
        return err_set(err, ERR_INVALID, "names starting with .ferry- are reserved");
    return path_confine(l->root, key, path, err);
}

/* Creates the folders above path, which lies under root. */
static int make_parents(const char *root, const char *path, struct err *err)
{
    char *p = xstrdup(path);
    int rc = FERRY_OK;
    for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            rc = err_set(err, ERR_INTERNAL, "cannot create a folder: %s", strerror(errno));
        *s = '/';
        if (rc != FERRY_OK)
            break;
    }
    free(p);
    return rc;
}

static char *meta_path(const struct local *l, const char *key)
{
    return xasprintf("%s/" META_DIR "/%s.json", l->root, key);
}

/* The side record when it still describes the file (same size and mtime), else NULL. */
static json_t *read_meta(const struct local *l, const char *key, const struct stat *st)
{
    char *path = meta_path(l, key);
    json_t *rec = json_load_file(path, 0, NULL);
    free(path);
    if (rec && (json_integer_value(json_object_get(rec, "size")) != (json_int_t)st->st_size ||
                json_integer_value(json_object_get(rec, "mtimeNs")) !=
                    (json_int_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec)) {
        json_decref(rec);
        rec = NULL;
    }
    return rec;
}

static void fill_object(const struct local *l, const char *key, const struct stat *st,
                        struct cloud_object *o)
{
    json_t *rec = read_meta(l, key, st);
    o->key = xstrdup(key);
    o->size = (uint64_t)st->st_size;
    o->modified_ms = (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
    if (rec) {
        o->etag = xstrdup(json_string_value(json_object_get(rec, "eTag")));
        o->metadata = json_incref(json_object_get(rec, "metadata"));
    } else { /* a file put there by other means: an etag that changes when it does */
        char text[64], h[65];
        snprintf(text, sizeof(text), "%lld-%lld.%ld", (long long)st->st_size,
                 (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
        crypto_sha256_hex(text, strlen(text), h);
        o->etag = xstrndup(h, 32);
        o->metadata = json_object();
    }
    json_decref(rec);
}

/* Copies src into the open file out, hashing as it goes. */
static int copy_in(const struct cloud *c, const struct cloud_source *src, int out, char etag[33],
                   struct err *err)
{
    char *buf = xmalloc(COPY_BUF), h[65];
    EVP_MD_CTX *md = crypto_digest_new(EVP_sha256());
    uint64_t done = 0;
    int rc = FERRY_ERR;
    while (done < src->size) {
        if (c->s.stop && atomic_load(c->s.stop)) {
            err_set(err, ERR_UNAVAILABLE, "local: interrupted, the server is stopping");
            goto out;
        }
        size_t want = src->size - done < COPY_BUF ? (size_t)(src->size - done) : COPY_BUF;
        ssize_t got = pread(src->fd, buf, want, (off_t)done);
        if (got <= 0) {
            err_set(err, ERR_INTERNAL, "the local file changed while it was read");
            goto out;
        }
        if (write(out, buf, (size_t)got) != got) {
            err_set(err, ERR_CLOUD, "local: cannot write: %s", strerror(errno));
            goto out;
        }
        EVP_DigestUpdate(md, buf, (size_t)got);
        done += (uint64_t)got;
        if (src->sent)
            src->sent(src->sent_ctx, (uint64_t)got);
    }
    if (fsync(out) != 0) {
        err_set(err, ERR_CLOUD, "local: cannot write: %s", strerror(errno));
        goto out;
    }
    crypto_sha256_final_hex(md, h);
    snprintf(etag, 33, "%.32s", h);
    rc = FERRY_OK;
out:
    EVP_MD_CTX_free(md);
    free(buf);
    return rc;
}

static int write_meta(struct local *l, const char *key, const char *path, const char *etag,
                      const json_t *meta, struct err *err)
{
    struct stat st;
    char *mpath = meta_path(l, key);
    int rc = FERRY_ERR;
    if (stat(path, &st) != 0 || make_parents(l->root, mpath, err) != FERRY_OK)
        goto out;
    json_t *rec =
        json_pack("{s:s, s:I, s:I, s:O}", "eTag", etag, "size", (json_int_t)st.st_size, "mtimeNs",
                  (json_int_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, "metadata",
                  meta ? (json_t *)meta : json_object());
    if (!meta)
        json_decref(json_object_get(rec, "metadata")); /* O took a reference of its own */
    rc = json_dump_file(rec, mpath, JSON_COMPACT) == 0
             ? FERRY_OK
             : err_set(err, ERR_CLOUD, "local: cannot write the metadata");
    json_decref(rec);
out:
    free(mpath);
    return rc;
}

static int local_put(struct cloud *c, const char *key, const struct cloud_source *src,
                     const json_t *meta, struct cloud_put_result *res, struct err *err)
{
    struct local *l = c->impl;
    char *path = NULL, *tmp = NULL, rnd[17];
    int fd = -1, rc = FERRY_ERR;
    if (resolve(c, key, &path, err) != FERRY_OK || make_parents(l->root, path, err) != FERRY_OK)
        goto out;
    crypto_random_hex(rnd, 8);
    tmp = xasprintf("%.*s/.ferry-tmp-%s", (int)(strrchr(path, '/') - path), path, rnd);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_set(err, ERR_CLOUD, "local: cannot create a file: %s", strerror(errno));
        goto out;
    }
    if (copy_in(c, src, fd, res->etag, err) != FERRY_OK)
        goto out;
    if (rename(tmp, path) != 0) {
        err_set(err, ERR_CLOUD, "local: cannot store the file: %s", strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    res->parts = 1;
    rc = write_meta(l, key, path, res->etag, meta, err);
out:
    if (fd >= 0)
        close(fd);
    if (tmp)
        unlink(tmp);
    free(tmp);
    free(path);
    return rc;
}

static int open_object(struct cloud *c, const char *key, int *fd, struct stat *st, struct err *err)
{
    char *path = NULL;
    if (resolve(c, key, &path, err) != FERRY_OK)
        return FERRY_ERR;
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (*fd < 0 || fstat(*fd, st) != 0 || !S_ISREG(st->st_mode)) {
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
        return err_set(err, ERR_NOT_FOUND, "local: no file '%.256s'", key);
    }
    return FERRY_OK;
}

static int local_head(struct cloud *c, const char *key, struct cloud_object *out, struct err *err)
{
    int fd;
    struct stat st;
    if (open_object(c, key, &fd, &st, err) != FERRY_OK)
        return FERRY_ERR;
    close(fd);
    fill_object(c->impl, key, &st, out);
    return FERRY_OK;
}

static int local_get(struct cloud *c, const char *key, const struct cloud_range *r,
                     const char *etag, cloud_write_fn write_fn, void *ctx, struct err *err)
{
    uint64_t offset = r->offset, end;
    int fd, rc = FERRY_ERR;
    struct stat st;
    struct cloud_object o = {0};
    char *buf = NULL;
    if (open_object(c, key, &fd, &st, err) != FERRY_OK)
        return FERRY_ERR;
    fill_object(c->impl, key, &st, &o);
    if (etag && strcmp(etag, o.etag) != 0) {
        err_set(err, ERR_PRECONDITION, "local: '%.256s' changed", key);
        goto out;
    }
    if (offset && offset >= (uint64_t)st.st_size) {
        err_set(err, ERR_RANGE, "local: the range starts past the end");
        goto out;
    }
    end = r->length && offset + r->length < (uint64_t)st.st_size ? offset + r->length
                                                                 : (uint64_t)st.st_size;
    buf = xmalloc(COPY_BUF);
    for (ssize_t got; offset < end; offset += (uint64_t)got) {
        size_t want = end - offset < COPY_BUF ? (size_t)(end - offset) : COPY_BUF;
        if (c->s.stop && atomic_load(c->s.stop)) {
            err_set(err, ERR_UNAVAILABLE, "local: interrupted, the server is stopping");
            goto out;
        }
        got = pread(fd, buf, want, (off_t)offset);
        if (got == 0)
            break;
        if (got < 0) {
            err_set(err, ERR_CLOUD, "local: cannot read: %s", strerror(errno));
            goto out;
        }
        if (write_fn(ctx, buf, (size_t)got) != FERRY_OK) {
            err_set(err, ERR_INTERNAL, "local: the downloaded bytes could not be written");
            goto out;
        }
    }
    rc = FERRY_OK;
out:
    free(buf);
    cloud_object_cleanup(&o);
    close(fd);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in folder dir (relative to root; "" for root), sorted, ferry's own left out. */
static char **read_names(const struct local *l, const char *dir, size_t *n)
{
    char *path = *dir ? xasprintf("%s/%s", l->root, dir) : xstrdup(l->root);
    DIR *d = opendir(path);
    char **names = NULL;
    struct dirent *e;
    *n = 0;
    free(path);
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' &&
            (!e->d_name[1] || !strcmp(e->d_name, "..") || !strncmp(e->d_name, ".ferry-", 7)))
            continue;
        names = xrealloc(names, (*n + 1) * sizeof(char *));
        names[(*n)++] = xstrdup(e->d_name);
    }
    if (d)
        closedir(d);
    if (*n)
        qsort(names, *n, sizeof(char *), cmp_names);
    return names;
}

/* Whether a key under dir (relative, "" for the root) may start with prefix. */
static bool may_match(const char *dir, const char *prefix)
{
    size_t n = strlen(dir), p = strlen(prefix);
    return !n || !strncmp(dir, prefix, n < p ? n : p);
}

static int walk(struct cloud *c, const char *dir, const char *prefix, int depth, cloud_list_fn fn,
                void *ctx, struct err *err)
{
    struct local *l = c->impl;
    size_t n;
    char **names = read_names(l, dir, &n);
    int rc = FERRY_OK;
    for (size_t i = 0; i < n; i++) {
        char *rel = *dir ? xasprintf("%s/%s", dir, names[i]) : xstrdup(names[i]);
        char *path = xasprintf("%s/%s", l->root, rel);
        char *sub = xasprintf("%s/", rel);
        struct stat st;
        if (rc == FERRY_OK && lstat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode) && depth < MAX_DEPTH && may_match(sub, prefix)) {
                rc = walk(c, rel, prefix, depth + 1, fn, ctx, err);
            } else if (S_ISREG(st.st_mode) && !strncmp(rel, prefix, strlen(prefix))) {
                struct cloud_object o = {0};
                fill_object(l, rel, &st, &o);
                rc = fn(ctx, &o);
                cloud_object_cleanup(&o);
            }
        }
        free(sub);
        free(path);
        free(rel);
        free(names[i]);
    }
    free(names);
    return rc;
}

static int local_list(struct cloud *c, const char *prefix, cloud_list_fn fn, void *ctx,
                      struct err *err)
{
    return walk(c, "", prefix ? prefix : "", 0, fn, ctx, err);
}

static int local_del(struct cloud *c, const char *key, struct err *err)
{
    char *path = NULL;
    if (resolve(c, key, &path, err) != FERRY_OK)
        return FERRY_ERR;
    int rc = unlink(path) == 0 || errno == ENOENT
                 ? FERRY_OK
                 : err_set(err, ERR_CLOUD, "local: cannot remove: %s", strerror(errno));
    free(path);
    char *mpath = meta_path(c->impl, key);
    unlink(mpath);
    free(mpath);
    return rc;
}

static int local_presign(struct cloud *c, const char *key, int64_t expires_at, char **url,
                         struct err *err)
{
    char sig[65];
    if (!c->s.link_base || !c->s.link_key)
        return err_set(err, ERR_CLOUD, "local: links need ferry's public URL");
    char *text = xasprintf("%s\n%lld", key, (long long)expires_at);
    sign_hmac_hex(c->s.link_key, text, sig);
    free(text);
    char *enc = sign_uri_encode(key, true);
    *url = xasprintf("%s/api/v1/cloud/local/shared/%s?expires=%lld&signature=%s", c->s.link_base,
                     enc, (long long)expires_at, sig);
    free(enc);
    return FERRY_OK;
}

static void local_close(struct cloud *c)
{
    struct local *l = c->impl;
    free(l->root);
    free(l);
}

static const struct cloud_ops ops = {local_put, local_head,    local_get,  local_list,
                                     local_del, local_presign, local_close};

int local_open(struct cloud *c, struct err *err)
{
    char real[PATH_MAX];
    if (!c->s.local_dir || !*c->s.local_dir)
        return err_set(err, ERR_CLOUD, "local is not configured (local-cloud-dir)");
    if (mkdir(c->s.local_dir, 0755) != 0 && errno != EEXIST)
        return err_set(err, ERR_CLOUD, "local: cannot create its folder: %s", strerror(errno));
    if (!realpath(c->s.local_dir, real))
        return err_set(err, ERR_CLOUD, "local: its folder is not usable: %s", strerror(errno));
    struct local *l = xcalloc(1, sizeof(*l));
    l->root = xstrdup(real);
    c->impl = l;
    c->ops = &ops;
    return FERRY_OK;
}
