/* cloud.c - see cloud.h: the provider table, the checks shared by every provider, and
 * the records of unfinished multipart uploads (one small JSON file per upload under
 * state_dir, locked with flock while an upload runs). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloud/cloud_internal.h"
#include "cloud/sign.h"
#include "util/crypto.h"

#define MAX_STATE_BYTES (1024 * 1024) /* 10000 parts' etags fit */

static const char *const names[CLOUD_N_PROVIDERS] = {"s3", "azure", "local"};

const char *cloud_provider_name(enum cloud_provider p)
{
    return names[p];
}

int cloud_provider_parse(const char *name, enum cloud_provider *out, struct err *err)
{
    for (int i = 0; i < CLOUD_N_PROVIDERS; i++)
        if (!strcmp(name, names[i])) {
            *out = (enum cloud_provider)i;
            return FERRY_OK;
        }
    return err_set(err, ERR_INVALID, "unknown cloud provider '%.64s': use " CLOUD_PROVIDER_NAMES,
                   name);
}

void cloud_object_cleanup(struct cloud_object *o)
{
    free(o->key);
    free(o->etag);
    json_decref(o->metadata);
    memset(o, 0, sizeof(*o));
}

int cloud_open(enum cloud_provider p, const struct cloud_settings *s, struct cloud **out,
               struct err *err)
{
    struct cloud *c = xcalloc(1, sizeof(*c));
    static int (*const opens[CLOUD_N_PROVIDERS])(struct cloud *,
                                                 struct err *) = {s3_open, azure_open, local_open};
    c->kind = p;
    c->name = names[p];
    c->s = *s;
    if (opens[p](c, err) != FERRY_OK) {
        free(c);
        return FERRY_ERR;
    }
    *out = c;
    return FERRY_OK;
}

void cloud_close(struct cloud *c)
{
    if (!c)
        return;
    c->ops->close(c);
    free(c);
}

enum cloud_provider cloud_kind(const struct cloud *c)
{
    return c->kind;
}

int cloud_check_metadata(const json_t *meta, struct err *err)
{
    const char *name;
    json_t *v;
    size_t total = 0;
    if (!meta)
        return FERRY_OK;
    if (!json_is_object(meta))
        return err_set(err, ERR_INVALID, "field 'metadata' must be an object of strings");
    json_object_foreach((json_t *)meta, name, v)
    {
        if (!json_is_string(v))
            return err_set(err, ERR_INVALID, "metadata '%.64s' must be a string", name);
        if (!*name)
            return err_set(err, ERR_INVALID, "metadata names must not be empty");
        for (const char *p = name; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
                return err_set(err, ERR_INVALID,
                               "metadata name '%.64s' may hold only letters, digits, - and _",
                               name);
        for (const char *p = json_string_value(v); *p; p++)
            if (*p < 0x20 || *p > 0x7e)
                return err_set(err, ERR_INVALID, "metadata '%.64s' must be printable ASCII", name);
        total += strlen(name) + json_string_length(v);
    }
    if (total > CLOUD_MAX_META_BYTES)
        return err_set(err, ERR_INVALID, "metadata is larger than %d bytes", CLOUD_MAX_META_BYTES);
    return FERRY_OK;
}

int cloud_put(struct cloud *c, const char *key, const struct cloud_source *src, const json_t *meta,
              struct cloud_put_result *res, struct err *err)
{
    memset(res, 0, sizeof(*res));
    return c->ops->put(c, key, src, meta, res, err);
}

int cloud_head(struct cloud *c, const char *key, struct cloud_object *out, struct err *err)
{
    memset(out, 0, sizeof(*out));
    return c->ops->head(c, key, out, err);
}

int cloud_get(struct cloud *c, const char *key, const struct cloud_range *range, const char *etag,
              cloud_write_fn write, void *ctx, struct err *err)
{
    static const struct cloud_range all = {0, 0};
    return c->ops->get(c, key, range ? range : &all, etag, write, ctx, err);
}

bool cloud_range_header(const struct cloud_range *r, char out[64])
{
    if (!r->offset && !r->length)
        return false;
    if (r->length)
        snprintf(out, 64, "bytes=%llu-%llu", (unsigned long long)r->offset,
                 (unsigned long long)(r->offset + r->length - 1));
    else
        snprintf(out, 64, "bytes=%llu-", (unsigned long long)r->offset);
    return true;
}

/* A listing's callback behind the check that each key starts with the prefix asked for. */
struct guard {
    const char *prefix;
    size_t len;
    cloud_list_fn fn;
    void *ctx;
    bool foreign;
};

static int guarded(void *ctx, const struct cloud_object *o)
{
    struct guard *g = ctx;
    if (strncmp(o->key, g->prefix, g->len) != 0) {
        g->foreign = true;
        return FERRY_ERR;
    }
    return g->fn(g->ctx, o);
}

/* Callers take each key's part after the prefix, and sessions delete by what a listing
 * lacks: a key outside the prefix (a provider's answer is not trusted) ends the listing. */
int cloud_list(struct cloud *c, const char *prefix, cloud_list_fn fn, void *ctx, struct err *err)
{
    struct guard g = {prefix ? prefix : "", prefix ? strlen(prefix) : 0, fn, ctx, false};
    int rc = c->ops->list(c, prefix, guarded, &g, err);
    if (g.foreign)
        rc = err_set(err, ERR_CLOUD, "%s: the listing names a key outside the prefix asked for",
                     names[c->kind]);
    return rc;
}

int cloud_delete(struct cloud *c, const char *key, struct err *err)
{
    return c->ops->del(c, key, err);
}

int cloud_presign(struct cloud *c, const char *key, int64_t expires_at, char **url, struct err *err)
{
    return c->ops->presign(c, key, expires_at, url, err);
}

bool cloud_local_link_valid(const char *link_key, const char *key, int64_t expires_at,
                            const char *signature)
{
    char want[65];
    char *text = xasprintf("%s\n%lld", key, (long long)expires_at);
    sign_hmac_hex(link_key, text, want);
    free(text);
    return crypto_equal(want, signature);
}

unsigned cloud_n_parts(const struct cloud *c, const struct cloud_source *src)
{
    uint64_t n = (src->size + c->s.part_size - 1) / c->s.part_size;
    return n ? (unsigned)n : 1;
}

/* --- records of unfinished uploads ------------------------------------------------- */

static char *state_path(const struct cloud *c, const char *key, const struct cloud_source *src)
{
    char id[65];
    char *text = xasprintf("%s\n%s\n%s\n%llu", c->name, key, src->fingerprint,
                           (unsigned long long)c->s.part_size);
    crypto_sha256_hex(text, strlen(text), id);
    free(text);
    return xasprintf("%s/%s.json", c->s.state_dir, id);
}

static json_t *read_record(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size > MAX_STATE_BYTES)
        return json_object();
    char *text = xmalloc((size_t)st.st_size);
    ssize_t got = pread(fd, text, (size_t)st.st_size, 0);
    json_t *rec = got == st.st_size ? json_loadb(text, (size_t)got, 0, NULL) : NULL;
    free(text);
    /* A record torn by a crash is no record: the upload starts over. */
    if (!json_is_object(rec)) {
        json_decref(rec);
        rec = json_object();
    }
    return rec;
}

int cloud_state_open(struct cloud *c, const char *key, const struct cloud_source *src,
                     struct cloud_state *st, struct err *err)
{
    st->fd = -1;
    st->rec = NULL;
    if (mkdir(c->s.state_dir, 0700) != 0 && errno != EEXIST)
        return err_set(err, ERR_INTERNAL, "cannot create %s: %s", c->s.state_dir, strerror(errno));
    char *path = state_path(c, key, src);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(path);
    if (fd < 0)
        return err_set(err, ERR_INTERNAL, "cannot record the upload: %s", strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return err_set(err, ERR_CONFLICT, "an upload of '%.256s' from the same file is running",
                       key);
    }
    st->fd = fd;
    st->rec = read_record(fd);
    return FERRY_OK;
}

int cloud_state_save(struct cloud_state *st, struct err *err)
{
    char *text = json_dumps(st->rec, JSON_COMPACT);
    size_t len = strlen(text);
    int ok = ftruncate(st->fd, 0) == 0 && pwrite(st->fd, text, len, 0) == (ssize_t)len &&
             fdatasync(st->fd) == 0;
    free(text);
    return ok ? FERRY_OK
              : err_set(err, ERR_INTERNAL, "cannot record the upload: %s", strerror(errno));
}

void cloud_state_close(struct cloud *c, const char *key, const struct cloud_source *src,
                       struct cloud_state *st, bool done)
{
    if (st->fd >= 0 && done) {
        char *path = state_path(c, key, src);
        unlink(path); /* while still locked, so no other upload reads it half-gone */
        free(path);
    }
    if (st->fd >= 0)
        close(st->fd);
    json_decref(st->rec);
    st->fd = -1;
    st->rec = NULL;
}
