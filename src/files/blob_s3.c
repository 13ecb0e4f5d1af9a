/* blob_s3.c - see blob_s3.h. A cloud client (cloud.h) is opened per operation: the
 * client keeps per-transfer state and the store is used from many request threads. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files/blob_s3.h"
#include "files/spool.h"

struct blob_s3 {
    struct cloud_settings settings;
    char *bucket, *prefix; /* prefix is "" or ends in '/' */
    char *scratch;
};

/* Whether text is a 64-digit lower-case hex name (blob.c's check; blob.h is not included
 * here, the backend sits below it). */
static bool hex_name(const char *text)
{
    return strlen(text) == 64 && strspn(text, "0123456789abcdef") == 64;
}

static char *key_of(const struct blob_s3 *s, const char *hex)
{
    return xasprintf("%s%.2s/%.2s/%s", s->prefix, hex, hex + 2, hex);
}

static int client(const struct blob_s3 *s, struct cloud **out, struct err *err)
{
    return cloud_open(CLOUD_S3, &s->settings, out, err);
}

static int parse_url(struct blob_s3 *s, const char *url, struct err *err)
{
    const char *rest = url + strlen("s3://");
    const char *slash = strchr(rest, '/');
    size_t bucket_len = slash ? (size_t)(slash - rest) : strlen(rest);
    if (strncmp(url, "s3://", 5) != 0 || bucket_len == 0)
        return err_set(err, ERR_INVALID, "blob-store must be a folder or s3://bucket/prefix");
    s->bucket = xstrndup(rest, bucket_len);
    const char *prefix = slash ? slash + 1 : "";
    size_t n = strlen(prefix);
    while (n && prefix[n - 1] == '/')
        n--;
    s->prefix = n ? xasprintf("%.*s/", (int)n, prefix) : xstrdup("");
    return FERRY_OK;
}

static int probe_list(void *ctx, const struct cloud_object *o)
{
    (void)ctx;
    (void)o;
    return FERRY_OK;
}

int blob_s3_open(const char *url, const struct cloud_settings *settings, const char *scratch,
                 struct blob_s3 **out, struct err *err)
{
    struct blob_s3 *s = xcalloc(1, sizeof(*s));
    struct cloud *c = NULL;
    int rc = FERRY_ERR;
    *out = NULL;
    s->settings = *settings;
    s->scratch = xasprintf("%s/s3-state", scratch);
    if (parse_url(s, url, err) != FERRY_OK)
        goto out;
    s->settings.s3_bucket = s->bucket;
    s->settings.state_dir = s->scratch;
    if (client(s, &c, err) != FERRY_OK)
        goto out;
    /* an empty listing: the bucket answers, without reading what it holds */
    char *probe_prefix = xasprintf("%s.ferry-probe/", s->prefix);
    struct err probe = {0};
    rc = cloud_list(c, probe_prefix, probe_list, NULL, &probe);
    free(probe_prefix);
    if (rc != FERRY_OK) {
        rc = err_set(err, probe.code, "blob-store %s: %s", url, probe.msg);
        goto out;
    }
    rc = FERRY_OK;
    *out = s;
    s = NULL;
out:
    cloud_close(c);
    blob_s3_close(s);
    return rc;
}

void blob_s3_close(struct blob_s3 *s)
{
    if (!s)
        return;
    free(s->bucket);
    free(s->prefix);
    free(s->scratch);
    free(s);
}

/* Puts the open file fd (read with pread from 0) as key. */
static int put_fd(struct blob_s3 *s, const char *key, int fd, struct err *err)
{
    struct cloud *c = NULL;
    struct cloud_put_result res;
    struct stat st;
    int rc = FERRY_ERR;
    if (fstat(fd, &st) != 0)
        return spool_io_error(err, "cannot read", key);
    /* the local file is this put's own: a record left by another never matches it */
    char *fingerprint =
        xasprintf("%s %lld %lld %lld %lld", key, (long long)st.st_dev, (long long)st.st_ino,
                  (long long)st.st_size, (long long)st.st_mtim.tv_nsec);
    struct cloud_source src = {fd, (uint64_t)st.st_size, fingerprint, NULL, NULL};
    if (client(s, &c, err) == FERRY_OK)
        rc = cloud_put(c, key, &src, NULL, &res, err);
    free(fingerprint);
    cloud_close(c);
    return rc;
}

static int put_key(struct blob_s3 *s, const char *key, const char *path, struct err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return spool_io_error(err, "cannot read", path);
    int rc = put_fd(s, key, fd, err);
    close(fd);
    return rc;
}

int blob_s3_stage_put_fd(struct blob_s3 *s, const char *name, int fd, struct err *err)
{
    char *key = xasprintf("%sstaging/%s", s->prefix, name);
    int rc = put_fd(s, key, fd, err);
    free(key);
    return rc;
}

int blob_s3_put(struct blob_s3 *s, const char *path, const char *hex, struct err *err)
{
    char *key = key_of(s, hex);
    int rc = put_key(s, key, path, err);
    free(key);
    return rc;
}

int blob_s3_stage_put(struct blob_s3 *s, const char *name, const char *path, struct err *err)
{
    char *key = xasprintf("%sstaging/%s", s->prefix, name);
    int rc = put_key(s, key, path, err);
    free(key);
    return rc;
}

int blob_s3_stage_get(struct blob_s3 *s, const char *name, cloud_write_fn write, void *ctx,
                      struct err *err)
{
    struct cloud *c = NULL;
    char *key = xasprintf("%sstaging/%s", s->prefix, name);
    int rc = client(s, &c, err);
    if (rc == FERRY_OK)
        rc = cloud_get(c, key, NULL, NULL, write, ctx, err);
    cloud_close(c);
    free(key);
    return rc;
}

struct doomed {
    char **keys;
    size_t n;
};

static int note_key(void *ctx, const struct cloud_object *o)
{
    struct doomed *d = ctx;
    d->keys = xrealloc(d->keys, (d->n + 1) * sizeof(*d->keys));
    d->keys[d->n++] = xstrdup(o->key);
    return FERRY_OK;
}

void blob_s3_stage_drop(struct blob_s3 *s, const char *name_prefix)
{
    struct cloud *c = NULL;
    struct doomed d = {0};
    char *prefix = xasprintf("%sstaging/%s", s->prefix, name_prefix);
    if (client(s, &c, NULL) == FERRY_OK)
        cloud_list(c, prefix, note_key, &d, NULL);
    for (size_t i = 0; i < d.n; i++) {
        cloud_delete(c, d.keys[i], NULL);
        free(d.keys[i]);
    }
    free(d.keys);
    free(prefix);
    cloud_close(c);
}

bool blob_s3_exists(struct blob_s3 *s, const char *hex, uint64_t *size)
{
    struct cloud *c = NULL;
    struct cloud_object o = {0};
    char *key = key_of(s, hex);
    bool found = client(s, &c, NULL) == FERRY_OK && cloud_head(c, key, &o, NULL) == FERRY_OK;
    if (found && size)
        *size = o.size;
    cloud_object_cleanup(&o);
    cloud_close(c);
    free(key);
    return found;
}

struct sink {
    struct buf *out;
    uint64_t want, written;
};

static int to_buf(void *ctx, const void *data, size_t len)
{
    struct sink *k = ctx;
    k->written += len;
    if (k->written > k->want) /* the range was ignored: not the whole object in memory */
        return FERRY_ERR;
    buf_append(k->out, data, len);
    return FERRY_OK;
}

int blob_s3_fetch(struct blob_s3 *s, const char *hex, uint64_t start, uint64_t len, struct buf *out,
                  struct err *err)
{
    struct cloud *c = NULL;
    struct sink k = {out, len, 0};
    struct cloud_range r = {start, len};
    char *key = key_of(s, hex);
    int rc = client(s, &c, err);
    if (rc == FERRY_OK)
        rc = cloud_get(c, key, &r, NULL, to_buf, &k, err);
    if (k.written > len)
        rc = err_set(err, ERR_CLOUD, "the blob store sent more than the %llu bytes asked for",
                     (unsigned long long)len);
    else if (rc == FERRY_OK && k.written != len)
        rc = err_set(err, ERR_CLOUD, "the blob store sent %llu of %llu bytes",
                     (unsigned long long)k.written, (unsigned long long)len);
    cloud_close(c);
    free(key);
    return rc;
}

int blob_s3_presign(struct blob_s3 *s, const char *hex, int64_t expires_at, char **url,
                    struct err *err)
{
    struct cloud *c = NULL;
    char *key = key_of(s, hex);
    int rc = client(s, &c, err);
    if (rc == FERRY_OK)
        rc = cloud_presign(c, key, expires_at, url, err);
    cloud_close(c);
    free(key);
    return rc;
}

struct each {
    void (*fn)(const char *, int64_t, void *);
    void *ctx;
    size_t prefix_len;
};

static int each_object(void *ctx, const struct cloud_object *o)
{
    struct each *e = ctx;
    const char *tail = strrchr(o->key, '/');
    tail = tail ? tail + 1 : o->key;
    /* only PREFIX/ab/cd/<hash> whose fan-out matches its name */
    if (strlen(o->key) == e->prefix_len + 6 + 64 && hex_name(tail) &&
        !strncmp(o->key + e->prefix_len, tail, 2) &&
        !strncmp(o->key + e->prefix_len + 3, tail + 2, 2))
        e->fn(tail, o->modified_ms, e->ctx);
    return FERRY_OK;
}

int blob_s3_each(struct blob_s3 *s, void (*each)(const char *hex, int64_t modified_ms, void *ctx),
                 void *ctx, struct err *err)
{
    struct cloud *c = NULL;
    struct each e = {each, ctx, strlen(s->prefix)};
    int rc = client(s, &c, err);
    if (rc == FERRY_OK)
        rc = cloud_list(c, s->prefix, each_object, &e, err);
    cloud_close(c);
    return rc;
}

int blob_s3_delete(struct blob_s3 *s, const char *hex, struct err *err)
{
    struct cloud *c = NULL;
    char *key = key_of(s, hex);
    int rc = client(s, &c, err);
    if (rc == FERRY_OK)
        rc = cloud_delete(c, key, err);
    cloud_close(c);
    free(key);
    return rc;
}
