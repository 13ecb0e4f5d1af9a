/* files.c - see files.h. Writes go through the capture triggers of ferry_files like
 * any synced table's, so the feed shows them; the writer's device is set first so that
 * the uploading device's own feed can leave its upload out. */
#include <stdlib.h>
#include <string.h>

#include "files/files.h"
#include "sync/tables.h"
#include "util/buf.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"
#include "webhooks/webhooks.h"

#define ENTRY_COLS "owner, path, size, sha256, version, deleted, updated_at"

void files_entry_clear(struct file_entry *e)
{
    free(e->owner);
    free(e->path);
    memset(e, 0, sizeof(*e));
}

static void read_entry(const struct store_rows *rows, struct file_entry *e)
{
    files_entry_clear(e);
    e->owner = store_rows_isnull(rows, 0) ? NULL : xstrdup(store_rows_text(rows, 0));
    e->path = xstrdup(store_rows_text(rows, 1));
    e->size = store_rows_int(rows, 2);
    snprintf(e->sha256, sizeof(e->sha256), "%s", store_rows_text(rows, 3));
    e->version = store_rows_int(rows, 4);
    e->deleted = store_rows_int(rows, 5) != 0;
    e->updated_at = store_rows_int(rows, 6);
}

int files_get(struct store_conn *c, const char *owner, const char *path, struct file_entry *e,
              bool *found, struct err *err)
{
    struct store_rows *rows = NULL;
    char *key = filescope_key(owner, path);
    struct store_val v = sv_text(key);
    int step = -1;
    *found = false;
    if (store_query(c, "SELECT " ENTRY_COLS " FROM ferry_files WHERE file_key = $1", &v, 1, &rows,
                    err) == FERRY_OK &&
        (step = store_rows_next(rows, err)) == 1) {
        read_entry(rows, e);
        *found = true;
    }
    store_rows_free(rows);
    free(key);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

/* Writes the entry's next version (deleted or not), inside the caller's transaction
 * (which holds the change-log lock). */
static int put_entry(struct store_conn *c, const char *owner, const char *path, const char *sha256,
                     int64_t size, bool deleted, bool must_exist, const char *device,
                     struct file_entry *e, struct err *err)
{
    bool found = false;
    int64_t now = time_now_ms();
    if (files_get(c, owner, path, e, &found, err) != FERRY_OK)
        return FERRY_ERR;
    if (must_exist && (!found || e->deleted))
        return err_set(err, ERR_NOT_FOUND, "no file at '%s'", path);
    char kept[65];
    if (deleted) { /* a deletion keeps the content's name: the blob goes when unreferenced */
        snprintf(kept, sizeof(kept), "%s", e->sha256);
        sha256 = kept;
        size = e->size;
    }
    char *key = filescope_key(owner, path);
    struct store_val v[] = {sv_text(owner),
                            sv_text(path),
                            sv_int(size),
                            sv_text(sha256),
                            sv_int(found ? e->version + 1 : 1),
                            sv_int(deleted),
                            sv_int(now),
                            sv_text(key)};
    int rc = FERRY_ERR;
    if (changelog_set_device(c, device, err) == FERRY_OK &&
        store_run(c,
                  "INSERT INTO ferry_files(" ENTRY_COLS ", file_key)"
                  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                  " ON CONFLICT (file_key) DO UPDATE SET size = excluded.size,"
                  " sha256 = excluded.sha256, version = excluded.version,"
                  " deleted = excluded.deleted, updated_at = excluded.updated_at",
                  v, 8, NULL, err) == FERRY_OK &&
        changelog_set_device(c, NULL, err) == FERRY_OK)
        rc = FERRY_OK;
    free(key);
    if (rc != FERRY_OK)
        return FERRY_ERR;
    files_entry_clear(e);
    e->owner = owner ? xstrdup(owner) : NULL;
    e->path = xstrdup(path);
    e->size = size;
    snprintf(e->sha256, sizeof(e->sha256), "%s", sha256);
    e->version = v[4].i;
    e->deleted = deleted;
    e->updated_at = now;
    return FERRY_OK;
}

/* put_entry in a transaction of its own. */
static int write_entry(struct store_conn *c, const char *owner, const char *path,
                       const char *sha256, int64_t size, bool deleted, bool must_exist,
                       const char *device, struct file_entry *e, struct err *err)
{
    int rc = FERRY_ERR;
    if (store_begin(c, err) == FERRY_OK && changelog_lock(c, err) == FERRY_OK &&
        put_entry(c, owner, path, sha256, size, deleted, must_exist, device, e, err) == FERRY_OK)
        rc = store_commit(c, err);
    store_rollback(c);
    return rc;
}

int files_commit_upload(struct store_conn *c, const struct upload *u, const char *owner,
                        const char *sha256, int64_t size, struct file_entry *e, char **result,
                        struct err *err)
{
    struct store_val v[] = {sv_text(u->id), sv_int(time_now_ms()), sv_null()};
    int rc = FERRY_ERR;
    int64_t changed = 0;
    *result = NULL;
    if (store_begin(c, err) != FERRY_OK || changelog_lock(c, err) != FERRY_OK ||
        put_entry(c, owner, u->path, sha256, size, false, false, u->device_id, e, err) != FERRY_OK)
        goto out;
    json_t *j = files_entry_json(e);
    *result = jsonutil_to_string(j);
    json_decref(j);
    v[2] = sv_text(*result);
    /* completed_at IS NULL: of two completions, the second to commit changes nothing */
    if (store_run(c,
                  "UPDATE ferry_uploads SET completed_at = $2, result = $3, received = size"
                  " WHERE id = $1 AND completed_at IS NULL",
                  v, 3, &changed, err) != FERRY_OK)
        goto out;
    if (changed != 1) {
        err_set(err, ERR_CONFLICT, "the upload was completed by another request");
        goto out;
    }
    if (store_run(c, "DELETE FROM ferry_upload_chunks WHERE upload_id = $1", v, 1, NULL, err) ==
            FERRY_OK &&
        store_run(c, "DELETE FROM ferry_blob_claims WHERE upload_id = $1", v, 1, NULL, err) ==
            FERRY_OK &&
        webhooks_emit(c, WEBHOOK_UPLOAD_COMPLETED,
                      json_pack("{s:s, s:s?, s:s?, s:o}", "uploadId", u->id, "userId", u->user_id,
                                "deviceId", u->device_id, "file", files_entry_json(e)),
                      err) == FERRY_OK)
        rc = store_commit(c, err);
out:
    store_rollback(c);
    if (rc != FERRY_OK) {
        free(*result);
        *result = NULL;
    }
    return rc;
}

int files_commit(struct store_conn *c, const char *owner, const char *path, const char *sha256,
                 int64_t size, const char *device, struct file_entry *e, struct err *err)
{
    return write_entry(c, owner, path, sha256, size, false, false, device, e, err);
}

int files_delete(struct store_conn *c, const char *owner, const char *path, const char *device,
                 struct file_entry *e, struct err *err)
{
    return write_entry(c, owner, path, NULL, 0, true, true, device, e, err);
}

json_t *files_entry_json(const struct file_entry *e)
{
    char iso[32];
    time_iso8601(e->updated_at, 1, iso);
    return json_pack("{s:s, s:I, s:s, s:I, s:b, s:s}", "path", e->path, "size", (json_int_t)e->size,
                     "sha256", e->sha256, "version", (json_int_t)e->version, "deleted", e->deleted,
                     "updatedAt", iso);
}

/* substr rather than LIKE: no wildcards to escape, and SQLite's LIKE ignores case */
#define LIST_WHERE "deleted = 0 AND substr(path, 1, length($1)) = $1 AND path > $2"

/* An admin's listing: every namespace, or the one only_owner names ($4). One path may
 * be in several namespaces, and the next page starts after a path: a page never ends
 * inside such a group, it takes every entry at the paths of its first $3 entries (so a
 * few more than $3 at most). */
static char *admin_sql(const char *only_owner)
{
    const char *which = !only_owner ? "" : *only_owner ? " AND owner = $4" : " AND owner IS NULL";
    return xasprintf(
        "SELECT " ENTRY_COLS " FROM ferry_files WHERE " LIST_WHERE "%s"
        " AND path <= (SELECT MAX(path) FROM (SELECT path FROM ferry_files WHERE " LIST_WHERE
        "%s ORDER BY path LIMIT $3) page)"
        " ORDER BY path, COALESCE(owner, '')", /* the common one first */
        which, which);
}

/* A user's listing: the user's own files ($4) outside the shared folders and the common
 * namespace's inside them, each a walk of the (owner, path) index that stops at the
 * page's end, merged by path (a path is in one of them only). */
static char *user_sql(const struct filescope *s)
{
    char *shared = filescope_shared_sql(s, "f");
    struct buf b;
    buf_init(&b);
    buf_printf(&b,
               "SELECT " ENTRY_COLS " FROM (SELECT " ENTRY_COLS " FROM ferry_files f"
               " WHERE owner = $4 AND " LIST_WHERE " AND NOT %s ORDER BY path LIMIT $3) mine",
               shared);
    if (s->n_shared)
        buf_printf(&b,
                   " UNION ALL SELECT " ENTRY_COLS " FROM (SELECT " ENTRY_COLS
                   " FROM ferry_files f WHERE owner IS NULL AND " LIST_WHERE
                   " AND %s ORDER BY path LIMIT $3) common",
                   shared);
    buf_puts(&b, " ORDER BY path LIMIT $3");
    free(shared);
    return buf_steal(&b);
}

int files_list(struct store_conn *c, const struct filescope *scope, const char *only_owner,
               const char *prefix, const char *after, int limit, json_t **out, struct err *err)
{
    struct store_rows *rows = NULL;
    struct file_entry e = {0};
    int step;
    bool admin = !scope || scope->admin;
    /* a user without a user id has no files of its own: "" matches no owner */
    const char *fourth = admin ? only_owner : scope->user_id ? scope->user_id : "";
    struct store_val v[] = {sv_text(prefix ? prefix : ""), sv_text(after ? after : ""),
                            sv_int(limit), sv_text(fourth)};
    char *sql = admin ? admin_sql(only_owner) : user_sql(scope);
    *out = json_array();
    int rc = store_query(c, sql, v, fourth && (!admin || *fourth) ? 4 : 3, &rows, err);
    while (rc == FERRY_OK && (step = store_rows_next(rows, err)) == 1) {
        read_entry(rows, &e);
        json_t *j = files_entry_json(&e);
        if (admin) /* who it belongs to, which only an admin may need to ask */
            json_object_set_new(j, "owner", e.owner ? json_string(e.owner) : json_null());
        json_array_append_new(*out, j);
    }
    if (rc == FERRY_OK && step < 0)
        rc = FERRY_ERR;
    files_entry_clear(&e);
    store_rows_free(rows);
    free(sql);
    return rc;
}

int files_blob_used(struct store_conn *c, const char *sha256, bool *used, struct err *err)
{
    struct store_val v = sv_text(sha256);
    int64_t n = 0;
    bool found = false;
    int rc = store_query_int(c,
                             "SELECT (SELECT COUNT(*) FROM ferry_files WHERE sha256 = $1"
                             " AND deleted = 0) + (SELECT COUNT(*) FROM ferry_blob_claims"
                             " WHERE sha256 = $1)",
                             &v, 1, &n, &found, err);
    *used = n > 0;
    return rc;
}
