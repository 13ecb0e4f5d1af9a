/* uploads.c - see uploads.h. */
#include <stdlib.h>
#include <string.h>

#include "files/uploads.h"
#include "util/crypto.h"
#include "util/timeutil.h"

#define UPLOAD_COLS                                                                                \
    "id, kind, path, size, sha256, chunk_size, chunk_count, received, metadata, user_id,"          \
    " device_id, created_at, expires_at, completed_at, result"

static char *text_or_null(const struct store_rows *rows, int col)
{
    return store_rows_isnull(rows, col) ? NULL : xstrdup(store_rows_text(rows, col));
}

void uploads_clear(struct upload *u)
{
    free(u->path);
    free(u->metadata);
    free(u->user_id);
    free(u->device_id);
    free(u->result);
    memset(u, 0, sizeof(*u));
}

int uploads_create(struct store_conn *c, struct upload *u, struct err *err)
{
    crypto_random_hex(u->id, 16);
    u->created_at = time_now_ms();
    struct store_val v[] = {
        sv_text(u->id),
        sv_text(u->kind == UPLOAD_TUS ? "tus" : "chunked"),
        sv_text(u->path),
        sv_int(u->size),
        sv_text(u->sha256[0] ? u->sha256 : NULL),
        sv_int(u->chunk_size),
        sv_int(u->chunk_count),
        sv_text(u->metadata),
        sv_text(u->user_id),
        sv_text(u->device_id),
        sv_int(u->created_at),
        sv_int(u->expires_at),
    };
    return store_run(c,
                     "INSERT INTO ferry_uploads(id, kind, path, size, sha256, chunk_size,"
                     " chunk_count, metadata, user_id, device_id, created_at, expires_at)"
                     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                     v, 12, NULL, err);
}

int uploads_get(struct store_conn *c, const char *id, struct upload *u, bool *found,
                struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    int step = -1;
    *found = false;
    if (store_query(c, "SELECT " UPLOAD_COLS " FROM ferry_uploads WHERE id = $1", &v, 1, &rows,
                    err) == FERRY_OK &&
        (step = store_rows_next(rows, err)) == 1) {
        uploads_clear(u);
        snprintf(u->id, sizeof(u->id), "%s", store_rows_text(rows, 0));
        u->kind = !strcmp(store_rows_text(rows, 1), "tus") ? UPLOAD_TUS : UPLOAD_CHUNKED;
        u->path = text_or_null(rows, 2);
        u->size = store_rows_int(rows, 3);
        snprintf(u->sha256, sizeof(u->sha256), "%s",
                 store_rows_isnull(rows, 4) ? "" : store_rows_text(rows, 4));
        u->chunk_size = store_rows_int(rows, 5);
        u->chunk_count = store_rows_int(rows, 6);
        u->received = store_rows_int(rows, 7);
        u->metadata = text_or_null(rows, 8);
        u->user_id = text_or_null(rows, 9);
        u->device_id = text_or_null(rows, 10);
        u->created_at = store_rows_int(rows, 11);
        u->expires_at = store_rows_int(rows, 12);
        u->completed_at = store_rows_isnull(rows, 13) ? 0 : store_rows_int(rows, 13);
        u->result = text_or_null(rows, 14);
        *found = true;
    }
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

int uploads_chunks(struct store_conn *c, const char *id, json_t **out, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    int step = 0;
    *out = json_array();
    int rc = store_query(c, "SELECT idx FROM ferry_upload_chunks WHERE upload_id = $1 ORDER BY idx",
                         &v, 1, &rows, err);
    while (rc == FERRY_OK && (step = store_rows_next(rows, err)) == 1)
        json_array_append_new(*out, json_integer(store_rows_int(rows, 0)));
    store_rows_free(rows);
    return rc == FERRY_OK && step >= 0 ? FERRY_OK : FERRY_ERR;
}

int uploads_claim_chunk(struct store_conn *c, const char *id, int64_t idx, int64_t size,
                        const char *sha256, bool *claimed, char have_sha256[65], struct err *err)
{
    struct store_val v[] = {sv_text(id), sv_int(idx), sv_int(size), sv_text(sha256)};
    struct store_rows *rows = NULL;
    int64_t inserted = 0;
    int rc = FERRY_ERR, step;

    *claimed = false;
    have_sha256[0] = '\0';
    if (store_begin(c, err) != FERRY_OK ||
        store_run(c,
                  "INSERT INTO ferry_upload_chunks(upload_id, idx, size, sha256)"
                  " VALUES ($1, $2, $3, $4) ON CONFLICT (upload_id, idx) DO NOTHING",
                  v, 4, &inserted, err) != FERRY_OK)
        goto out;
    if (inserted) {
        if (store_run(c, "UPDATE ferry_uploads SET received = received + $2 WHERE id = $1",
                      (struct store_val[]){sv_text(id), sv_int(size)}, 2, NULL, err) != FERRY_OK)
            goto out;
        *claimed = true;
    } else {
        if (store_query(c,
                        "SELECT sha256 FROM ferry_upload_chunks WHERE upload_id = $1 AND idx = $2",
                        v, 2, &rows, err) != FERRY_OK ||
            (step = store_rows_next(rows, err)) < 0)
            goto out;
        if (step == 1)
            snprintf(have_sha256, 65, "%s", store_rows_text(rows, 0));
    }
    rc = store_commit(c, err);
out:
    store_rows_free(rows);
    store_rollback(c);
    return rc;
}

int uploads_forget_chunk(struct store_conn *c, const char *id, int64_t idx, struct err *err)
{
    struct store_val v[] = {sv_text(id), sv_int(idx)};
    int rc = FERRY_ERR;
    if (store_begin(c, err) == FERRY_OK &&
        store_run(c,
                  "UPDATE ferry_uploads SET received = received - (SELECT size FROM"
                  " ferry_upload_chunks WHERE upload_id = $1 AND idx = $2) WHERE id = $1"
                  " AND EXISTS (SELECT 1 FROM ferry_upload_chunks WHERE upload_id = $1"
                  " AND idx = $2)",
                  v, 2, NULL, err) == FERRY_OK &&
        store_run(c, "DELETE FROM ferry_upload_chunks WHERE upload_id = $1 AND idx = $2", v, 2,
                  NULL, err) == FERRY_OK)
        rc = store_commit(c, err);
    store_rollback(c);
    return rc;
}

int uploads_set_received(struct store_conn *c, const char *id, int64_t received, struct err *err)
{
    struct store_val v[] = {sv_text(id), sv_int(received)};
    return store_run(c,
                     "UPDATE ferry_uploads SET received = $2 WHERE id = $1"
                     " AND completed_at IS NULL",
                     v, 2, NULL, err);
}

int uploads_claim_blob(struct store_conn *c, const char *id, const char *sha256, struct err *err)
{
    struct store_val v[] = {sv_text(id), sv_text(sha256), sv_int(time_now_ms())};
    return store_run(c,
                     "INSERT INTO ferry_blob_claims(upload_id, sha256, created_at)"
                     " VALUES ($1, $2, $3) ON CONFLICT (upload_id, sha256) DO NOTHING",
                     v, 3, NULL, err);
}

int uploads_claimed_blob(struct store_conn *c, const char *id, char sha256[65], struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    int step = -1;
    sha256[0] = '\0';
    if (store_query(c,
                    "SELECT sha256 FROM ferry_blob_claims WHERE upload_id = $1"
                    " ORDER BY created_at DESC",
                    &v, 1, &rows, err) == FERRY_OK &&
        (step = store_rows_next(rows, err)) == 1)
        snprintf(sha256, 65, "%s", store_rows_text(rows, 0));
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

/* The first column of each row of sql (one int parameter) as strings. */
static int id_list(struct store_conn *c, const char *sql, const struct store_val *v, size_t nv,
                   char ***ids, size_t *n, struct err *err)
{
    struct store_rows *rows = NULL;
    int step = 0;
    *ids = NULL;
    *n = 0;
    int rc = store_query(c, sql, v, nv, &rows, err);
    while (rc == FERRY_OK && (step = store_rows_next(rows, err)) == 1) {
        *ids = xrealloc(*ids, (*n + 1) * sizeof(**ids));
        (*ids)[(*n)++] = xstrdup(store_rows_text(rows, 0));
    }
    store_rows_free(rows);
    return rc == FERRY_OK && step >= 0 ? FERRY_OK : FERRY_ERR;
}

int uploads_unfinished_tus(struct store_conn *c, int limit, char ***ids, size_t *n, struct err *err)
{
    struct store_val v[] = {sv_int(limit), sv_int(time_now_ms())};
    return id_list(c,
                   "SELECT id FROM ferry_uploads WHERE kind = 'tus' AND completed_at IS NULL"
                   " AND received = size AND expires_at > $2 LIMIT $1",
                   v, 2, ids, n, err);
}

int uploads_delete(struct store_conn *c, const char *id, bool *found, struct err *err)
{
    struct store_val v = sv_text(id);
    int64_t n = 0;
    int rc = FERRY_ERR;
    *found = false;
    if (store_begin(c, err) == FERRY_OK &&
        store_run(c, "DELETE FROM ferry_upload_chunks WHERE upload_id = $1", &v, 1, NULL, err) ==
            FERRY_OK &&
        store_run(c, "DELETE FROM ferry_blob_claims WHERE upload_id = $1", &v, 1, NULL, err) ==
            FERRY_OK &&
        store_run(c, "DELETE FROM ferry_uploads WHERE id = $1", &v, 1, &n, err) == FERRY_OK)
        rc = store_commit(c, err);
    store_rollback(c);
    *found = n > 0;
    return rc;
}

int uploads_expired(struct store_conn *c, int64_t before, int limit, char ***ids, size_t *n,
                    struct err *err)
{
    struct store_val v[] = {sv_int(before), sv_int(limit)};
    return id_list(c, "SELECT id FROM ferry_uploads WHERE expires_at < $1 LIMIT $2", v, 2, ids, n,
                   err);
}
