/* uploads.h - upload sessions as records: Pinakes' chunked uploads and tus uploads.
 * A session names its destination path and size; a chunked session also its chunk size
 * and the chunks received (each with its size and SHA-256), a tus session its offset.
 * The bytes live on disk (api/files.c, api/tus.c); these records say what is there, and
 * survive a restart with it. */
#ifndef FERRY_UPLOADS_H
#define FERRY_UPLOADS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"
#include "store/store.h"

enum upload_kind { UPLOAD_CHUNKED, UPLOAD_TUS };

struct upload {
    char id[33];
    enum upload_kind kind;
    char *path; /* where the file goes (NULL: a tus upload without one yet) */
    int64_t size;
    char sha256[65]; /* expected SHA-256, "" when not given */
    int64_t chunk_size, chunk_count;
    int64_t received; /* bytes: the tus offset, or the sum of the received chunks */
    char *metadata;   /* tus Upload-Metadata as sent, or NULL */
    char *user_id, *device_id;
    int64_t created_at, expires_at, completed_at; /* ms; completed_at 0 while open */
    char *result; /* the committed file entry (JSON text) once complete */
};

void uploads_clear(struct upload *u);

/* Records a new session; fills u->id and created_at. */
int uploads_create(struct store_conn *c, struct upload *u, struct err *err);

/* The session id; *found false when there is none. */
int uploads_get(struct store_conn *c, const char *id, struct upload *u, bool *found,
                struct err *err);

/* The indexes of the received chunks, ascending, as a JSON array. */
int uploads_chunks(struct store_conn *c, const char *id, json_t **out, struct err *err);

/* Claims chunk idx for bytes with the given size and hash. *claimed is true when the
 * chunk was new (and counts as received from now on); otherwise have_sha256 gets the
 * hash of the bytes received before. */
int uploads_claim_chunk(struct store_conn *c, const char *id, int64_t idx, int64_t size,
                        const char *sha256, bool *claimed, char have_sha256[65], struct err *err);

/* Forgets chunk idx (its bytes were lost): it must be sent again. */
int uploads_forget_chunk(struct store_conn *c, const char *id, int64_t idx, struct err *err);

/* Sets a tus upload's offset (not once it is complete). */
int uploads_set_received(struct store_conn *c, const char *id, int64_t received, struct err *err);

/* Records that upload id is about to name blob sha256, before the blob is put in
 * place: collection keeps a claimed blob. The claim goes with the transaction that
 * commits the upload's file entry (files_commit_upload), or with the upload. */
int uploads_claim_blob(struct store_conn *c, const char *id, const char *sha256, struct err *err);

/* The blob upload id claimed, "" when none (*sha256). */
int uploads_claimed_blob(struct store_conn *c, const char *id, char sha256[65], struct err *err);

/* Ids of tus uploads whose bytes have all arrived but which have no file entry yet (a
 * crash came between), at most limit; the caller frees each and the array. */
int uploads_unfinished_tus(struct store_conn *c, int limit, char ***ids, size_t *n,
                           struct err *err);

/* Removes the session's records. *found false when there was none. */
int uploads_delete(struct store_conn *c, const char *id, bool *found, struct err *err);

/* Ids of sessions that expired before `before` (ms), at most limit; the caller frees
 * each and the array. */
int uploads_expired(struct store_conn *c, int64_t before, int limit, char ***ids, size_t *n,
                    struct err *err);

#endif
