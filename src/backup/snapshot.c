/* snapshot.c - the manifest of a version as JSON (format in docs/backup.md), compressed
 * with zstd and sealed with the repository key. Reading checks every path, so a
 * manifest can never make a restore write outside its target. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "backup/fsio.h"
#include "backup/pack.h"
#include "backup/seal.h"
#include "backup/snapshot.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/path.h"
#include "util/timeutil.h"

#define SNAPSHOT_FORMAT 1
#define SNAPSHOT_MAGIC "FERRYSN1"
#define MAX_SNAPSHOT_FILE (1024u * 1024 * 1024)

static const char *const type_names[] = {"file", "dir", "symlink", "hardlink"};
#define N_TYPES (sizeof(type_names) / sizeof(type_names[0]))

void snapshot_clear(struct snapshot *s)
{
    for (size_t i = 0; i < s->n_entries; i++) {
        free(s->entries[i].path);
        free(s->entries[i].target);
        free(s->entries[i].chunks);
        for (size_t k = 0; k < s->entries[i].n_xattrs; k++) {
            free(s->entries[i].xattrs[k].name);
            free(s->entries[i].xattrs[k].value);
        }
        free(s->entries[i].xattrs);
    }
    for (size_t i = 0; i < s->n_changed; i++)
        free(s->changed[i]);
    free(s->changed);
    free(s->entries);
    free(s->description);
    free(s->source);
    free(s->parent);
    memset(s, 0, sizeof(*s));
}

struct snap_entry *snapshot_add(struct snapshot *s)
{
    if (s->n_entries == s->cap_entries) {
        s->cap_entries = s->cap_entries ? s->cap_entries * 2 : 256;
        s->entries = xrealloc(s->entries, s->cap_entries * sizeof(*s->entries));
    }
    struct snap_entry *e = &s->entries[s->n_entries++];
    memset(e, 0, sizeof(*e));
    return e;
}

void snapshot_add_changed(struct snapshot *s, const char *path)
{
    s->changed = xrealloc(s->changed, (s->n_changed + 1) * sizeof(char *));
    s->changed[s->n_changed++] = xstrdup(path);
}

void snapshot_add_xattr(struct snap_entry *e, const char *name, const void *value, size_t len)
{
    e->xattrs = xrealloc(e->xattrs, (e->n_xattrs + 1) * sizeof(*e->xattrs));
    struct snap_xattr *x = &e->xattrs[e->n_xattrs++];
    x->name = xstrdup(name);
    x->value = xmalloc(len ? len : 1);
    memcpy(x->value, value, len);
    x->len = len;
}

bool snapshot_id_valid(const char *id)
{
    if (strlen(id) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? id[i] != '-' : !strchr("0123456789abcdef", id[i]) || !id[i])
            return false;
    }
    return true;
}

json_t *snapshot_summary_json(const struct snapshot *s)
{
    char when[32];
    time_iso8601(s->created_ms, 1, when);
    json_t *j =
        json_pack("{s:s, s:s, s:I, s:I, s:b, s:s?, s:s?, s:I}", "versionId", s->id, "createdAt",
                  when, "totalSize", (json_int_t)s->total_size, "fileCount",
                  (json_int_t)s->file_count, "isFullBackup", s->full, "description", s->description,
                  "sourceDirectory", s->source, "addedBytes", (json_int_t)s->added_bytes);
    json_object_set_new(j, "feedCursor",
                        s->feed_cursor >= 0 ? json_integer(s->feed_cursor) : json_null());
    return j;
}

json_t *snapshot_created_json(const struct snapshot *s)
{
    json_t *j = snapshot_summary_json(s), *changed = json_array();
    for (size_t i = 0; i < s->n_changed; i++)
        json_array_append_new(changed, json_string(s->changed[i]));
    json_object_set_new(j, "changedFiles", changed);
    return j;
}

static json_t *entry_json(const struct snap_entry *e)
{
    json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i, s:I, s:I, s:I}", "path", e->path, "type",
                          type_names[e->type], "mode", (int)e->mode, "uid", (int)e->uid, "gid",
                          (int)e->gid, "mtimeNs", (json_int_t)e->mtime_ns, "size",
                          (json_int_t)e->size, "inode", (json_int_t)e->inode);
    if (e->target)
        json_object_set_new(j, "target", json_string(e->target));
    if (e->n_xattrs) {
        json_t *xattrs = json_object();
        for (size_t i = 0; i < e->n_xattrs; i++) {
            char *value = base64_encode(e->xattrs[i].value, e->xattrs[i].len);
            json_object_set_new(xattrs, e->xattrs[i].name, json_string(value));
            free(value);
        }
        json_object_set_new(j, "xattrs", xattrs);
    }
    if (e->type == SNAP_FILE) {
        json_t *chunks = json_array();
        for (size_t i = 0; i < e->n_chunks; i++) {
            char hex[65];
            pack_hex(e->chunks[i], hex);
            json_array_append_new(chunks, json_string(hex));
        }
        json_object_set_new(j, "chunks", chunks);
    }
    return j;
}

static json_t *snapshot_json(const struct snapshot *s)
{
    json_t *j = snapshot_created_json(s), *entries = json_array();
    json_object_set_new(j, "format", json_integer(SNAPSHOT_FORMAT));
    json_object_set_new(j, "createdMs", json_integer(s->created_ms));
    json_object_set_new(j, "parent", s->parent ? json_string(s->parent) : json_null());
    for (size_t i = 0; i < s->n_entries; i++)
        json_array_append_new(entries, entry_json(&s->entries[i]));
    json_object_set_new(j, "entries", entries);
    return j;
}

/* Seals text (zstd-compressed first with compress) under ad "WHAT:ID", appended to out. */
static void seal_part(struct buf *out, const uint8_t *key, const char *what, const char *id,
                      const char *text, bool compress)
{
    size_t len = strlen(text), zcap = ZSTD_compressBound(len);
    uint8_t *z = xmalloc(zcap);
    size_t zlen = len;
    if (compress)
        zlen = ZSTD_compress(z, zcap, text, len, 3);
    else
        memcpy(z, text, len);
    uint8_t *sealed = xmalloc(seal_stored_len(key, zlen));
    char ad[64];
    snprintf(ad, sizeof(ad), "%s:%s", what, id);
    size_t sealed_len = seal_encrypt(key, ad, strlen(ad), z, zlen, sealed);
    buf_append(out, sealed, sealed_len);
    free(sealed);
    free(z);
}

/* The manifest's first part: the summary alone, so listing versions reads no entries. */
static json_t *header_json(const struct snapshot *s)
{
    json_t *j = snapshot_summary_json(s);
    json_object_set_new(j, "format", json_integer(SNAPSHOT_FORMAT));
    json_object_set_new(j, "createdMs", json_integer(s->created_ms));
    json_object_set_new(j, "parent", s->parent ? json_string(s->parent) : json_null());
    return j;
}

int snapshot_save(const char *repo, const uint8_t *key, const struct snapshot *s, struct err *err)
{
    json_t *header = header_json(s), *full = snapshot_json(s);
    char *header_text = json_dumps(header, JSON_COMPACT),
         *full_text = json_dumps(full, JSON_COMPACT);
    struct buf file, part;
    buf_init(&file);
    buf_init(&part);
    seal_part(&part, key, "snapshot-header", s->id, header_text, false);
    uint8_t len[4] = {(uint8_t)part.len, (uint8_t)(part.len >> 8), (uint8_t)(part.len >> 16),
                      (uint8_t)(part.len >> 24)};
    buf_append(&file, SNAPSHOT_MAGIC, 8);
    buf_append(&file, len, 4);
    buf_append(&file, part.data, part.len);
    seal_part(&file, key, "snapshot", s->id, full_text, true);
    char *path = xasprintf("%s/snapshots/%s.snap", repo, s->id);
    int rc = fsio_write_atomic(path, file.data, file.len, err);
    free(path);
    buf_cleanup(&file);
    buf_cleanup(&part);
    free(header_text);
    free(full_text);
    json_decref(header);
    json_decref(full);
    return rc;
}

static int type_parse(const char *name, enum snap_type *t)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (!strcmp(name, type_names[i])) {
            *t = (enum snap_type)i;
            return FERRY_OK;
        }
    return FERRY_ERR;
}

static int xattrs_parse(json_t *xattrs, struct snap_entry *e)
{
    const char *name;
    json_t *value;
    json_object_foreach(xattrs, name, value)
    {
        const char *b64 = json_string_value(value);
        size_t cap = b64 ? strlen(b64) : 0;
        uint8_t *bytes = xmalloc(cap + 1);
        ssize_t len = b64 ? base64_decode(b64, cap, bytes, cap + 1) : -1;
        if (len >= 0)
            snapshot_add_xattr(e, name, bytes, (size_t)len);
        free(bytes);
        if (len < 0)
            return FERRY_ERR;
    }
    return FERRY_OK;
}

/* A hard link names another entry of the version: a clean relative path, like its own. */
static bool link_target_valid(const char *target)
{
    char *clean = NULL;
    struct err ignored = {0};
    bool ok = target && path_clean_relative(target, &clean, &ignored) == FERRY_OK &&
              !strcmp(clean, target);
    free(clean);
    return ok;
}

static int entry_parse(json_t *j, struct snap_entry *e)
{
    const char *path = json_string_value(json_object_get(j, "path"));
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *target = json_string_value(json_object_get(j, "target"));
    json_t *chunks = json_object_get(j, "chunks");
    struct err ignored = {0};
    if (!path || !type || type_parse(type, &e->type) != FERRY_OK ||
        path_clean_relative(path, &e->path, &ignored) != FERRY_OK || strcmp(e->path, path))
        return FERRY_ERR;
    e->mode = (uint32_t)json_integer_value(json_object_get(j, "mode")) & 07777;
    e->uid = (uint32_t)json_integer_value(json_object_get(j, "uid"));
    e->gid = (uint32_t)json_integer_value(json_object_get(j, "gid"));
    e->mtime_ns = json_integer_value(json_object_get(j, "mtimeNs"));
    e->size = (uint64_t)json_integer_value(json_object_get(j, "size"));
    e->inode = (uint64_t)json_integer_value(json_object_get(j, "inode"));
    if ((e->type == SNAP_SYMLINK && !target) ||
        (e->type == SNAP_HARDLINK && !link_target_valid(target)))
        return FERRY_ERR;
    if (target)
        e->target = xstrdup(target);
    if (xattrs_parse(json_object_get(j, "xattrs"), e) != FERRY_OK)
        return FERRY_ERR;
    if (e->type != SNAP_FILE)
        return FERRY_OK;
    e->n_chunks = json_array_size(chunks);
    e->chunks = xmalloc((e->n_chunks ? e->n_chunks : 1) * 32);
    for (size_t i = 0; i < e->n_chunks; i++) {
        const char *hex = json_string_value(json_array_get(chunks, i));
        if (!hex || pack_unhex(hex, e->chunks[i]) != FERRY_OK)
            return FERRY_ERR;
    }
    return FERRY_OK;
}

static int snapshot_parse(json_t *j, bool full, struct snapshot *s)
{
    const char *id = json_string_value(json_object_get(j, "versionId"));
    const char *desc = json_string_value(json_object_get(j, "description"));
    const char *source = json_string_value(json_object_get(j, "sourceDirectory"));
    const char *parent = json_string_value(json_object_get(j, "parent"));
    json_t *cursor = json_object_get(j, "feedCursor"),
           *changed = json_object_get(j, "changedFiles");
    json_t *entries = json_object_get(j, "entries");
    if (!id || !snapshot_id_valid(id) || (full && !json_is_array(entries)))
        return FERRY_ERR;
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->created_ms = json_integer_value(json_object_get(j, "createdMs"));
    s->full = json_is_true(json_object_get(j, "isFullBackup"));
    s->description = desc ? xstrdup(desc) : NULL;
    s->source = source ? xstrdup(source) : NULL;
    s->parent = parent ? xstrdup(parent) : NULL;
    s->feed_cursor = json_is_integer(cursor) ? json_integer_value(cursor) : -1;
    s->total_size = (uint64_t)json_integer_value(json_object_get(j, "totalSize"));
    s->file_count = (uint64_t)json_integer_value(json_object_get(j, "fileCount"));
    s->added_bytes = (uint64_t)json_integer_value(json_object_get(j, "addedBytes"));
    for (size_t i = 0; i < json_array_size(changed); i++)
        if (json_is_string(json_array_get(changed, i)))
            snapshot_add_changed(s, json_string_value(json_array_get(changed, i)));
    for (size_t i = 0; i < json_array_size(entries); i++)
        if (entry_parse(json_array_get(entries, i), snapshot_add(s)) != FERRY_OK)
            return FERRY_ERR;
    return FERRY_OK;
}

/* Decrypts (and with compressed, decompresses) one sealed part into JSON. */
/* The one zstd frame z holds, in a buffer grown as its output arrives, never past limit;
 * NULL when damaged. The size a frame's header claims is not trusted: a plaintext
 * repository's bytes are checked by nothing before this, and a claimed 8 GiB would
 * otherwise be allocated up front. */
static uint8_t *inflate(const uint8_t *z, size_t zlen, size_t limit, size_t *len)
{
    ZSTD_DStream *ds = ZSTD_createDStream();
    ZSTD_inBuffer in = {z, zlen, 0};
    size_t cap = zlen * 4 + 4096, ret = 1;
    uint8_t *out = xmalloc(cap);
    *len = 0;
    while (ds && ret != 0) {
        if (*len == cap) {
            if (cap >= limit)
                break;
            cap = cap > limit / 2 ? limit : cap * 2;
            out = xrealloc(out, cap);
        }
        size_t before_in = in.pos, before_out = *len;
        ZSTD_outBuffer o = {out, cap, *len};
        ret = ZSTD_decompressStream(ds, &o, &in);
        *len = o.pos;
        if (ZSTD_isError(ret) || (ret != 0 && in.pos == before_in && o.pos == before_out))
            break; /* damaged, or cut short: no progress */
    }
    ZSTD_freeDStream(ds);
    if (ret != 0 || in.pos != in.size) {
        free(out);
        return NULL;
    }
    return out;
}

static json_t *unseal(const char *what, const char *id, const uint8_t *key, const uint8_t *sealed,
                      size_t len, bool compressed)
{
    json_t *j = NULL;
    char ad[64];
    uint8_t *z = xmalloc(len + 1), *text = NULL;
    snprintf(ad, sizeof(ad), "%s:%s", what, id);
    long zlen = seal_decrypt(key, ad, strlen(ad), sealed, len, z);
    if (zlen <= 0)
        goto out;
    if (!compressed) {
        j = json_loadb((const char *)z, (size_t)zlen, 0, NULL);
        goto out;
    }
    /* A manifest's JSON compresses well, but nowhere near 1024:1 (its chunk ids are
     * random); beyond that a frame is a bomb, not a manifest. */
    size_t got = 0, limit = (size_t)zlen * 1024 + (1u << 20);
    if (limit > MAX_SNAPSHOT_FILE * 8ULL)
        limit = MAX_SNAPSHOT_FILE * 8ULL;
    if ((text = inflate(z, (size_t)zlen, limit, &got)) != NULL)
        j = json_loadb((const char *)text, got, 0, NULL);
out:
    free(z);
    free(text);
    return j;
}

/* The file's header part or its whole manifest, as JSON; NULL when damaged. */
static json_t *read_part(const char *id, const uint8_t *key, const uint8_t *file, size_t len,
                         bool full)
{
    if (len < 12 || memcmp(file, SNAPSHOT_MAGIC, 8) != 0)
        return NULL;
    size_t header_len =
        (size_t)file[8] | (size_t)file[9] << 8 | (size_t)file[10] << 16 | (size_t)file[11] << 24;
    if (header_len > len - 12)
        return NULL;
    if (!full)
        return unseal("snapshot-header", id, key, file + 12, header_len, false);
    return unseal("snapshot", id, key, file + 12 + header_len, len - 12 - header_len, true);
}

static int load(const char *repo, const uint8_t *key, const char *id, bool full, struct snapshot *s,
                struct err *err)
{
    int rc = FERRY_ERR;
    uint8_t *file = NULL;
    size_t len = 0;
    json_t *j = NULL;
    char *path = NULL;
    memset(s, 0, sizeof(*s));
    if (!snapshot_id_valid(id))
        return err_set(err, ERR_NOT_FOUND, "no backup version %s", id);
    path = xasprintf("%s/snapshots/%s.snap", repo, id);
    if (fsio_read_all(path, MAX_SNAPSHOT_FILE, &file, &len, err) != FERRY_OK) {
        if (err && err->code == ERR_NOT_FOUND)
            err_set(err, ERR_NOT_FOUND, "no backup version %s", id);
        goto out;
    }
    j = read_part(id, key, file, len, full);
    if (!j || snapshot_parse(j, full, s) != FERRY_OK || strcmp(s->id, id)) {
        snapshot_clear(s);
        err_set(err, ERR_INTERNAL, "the manifest of version %s is damaged", id);
        goto out;
    }
    rc = FERRY_OK;
out:
    json_decref(j);
    free(file);
    free(path);
    return rc;
}

int snapshot_load(const char *repo, const uint8_t *key, const char *id, struct snapshot *s,
                  struct err *err)
{
    return load(repo, key, id, true, s, err);
}

static int by_time(const void *a, const void *b)
{
    const struct snapshot *x = a, *y = b;
    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

void snapshot_list_free(struct snapshot *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        snapshot_clear(&list[i]);
    free(list);
}

int snapshot_list(const char *repo, const uint8_t *key, struct snapshot **list, size_t *n,
                  struct err *err)
{
    char *dir_path = xasprintf("%s/snapshots", repo);
    DIR *dir = opendir(dir_path);
    struct dirent *de;
    int rc = FERRY_ERR;
    *list = NULL;
    *n = 0;
    if (!dir) {
        err_set(err, ERR_INTERNAL, "cannot read %s: %s", dir_path, strerror(errno));
        goto out;
    }
    while ((de = readdir(dir))) {
        size_t len = strlen(de->d_name);
        if (len != 41 || strcmp(de->d_name + 36, ".snap"))
            continue;
        char id[37];
        snprintf(id, sizeof(id), "%.36s", de->d_name);
        *list = xrealloc(*list, (*n + 1) * sizeof(**list));
        if (load(repo, key, id, false, &(*list)[*n], err) != FERRY_OK)
            goto out;
        (*n)++;
    }
    if (*n)
        qsort(*list, *n, sizeof(**list), by_time);
    rc = FERRY_OK;
out:
    if (rc != FERRY_OK) {
        snapshot_list_free(*list, *n);
        *list = NULL;
        *n = 0;
    }
    if (dir)
        closedir(dir);
    free(dir_path);
    return rc;
}

int snapshot_remove(const char *repo, const char *id, struct err *err)
{
    char *path = xasprintf("%s/snapshots/%s.snap", repo, id);
    int rc = FERRY_OK;
    if (unlink(path) != 0 && errno != ENOENT)
        rc = err_set(err, ERR_INTERNAL, "cannot remove %s: %s", path, strerror(errno));
    else
        rc = fsio_sync_dir(path, 0, err);
    free(path);
    return rc;
}
