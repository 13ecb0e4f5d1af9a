/* filesys.h - the files subsystem: the blob store and the folders of unfinished uploads,
 * and what keeps them right when several processes or nodes share them: an upload is
 * completed exactly once (a lease, a blob claim, one commit), one tus PATCH at a time
 * with its progress checkpointed, crashed work recovered, and housekeeping (expiry, blob
 * collection). The server opens it and struct app holds it; the upload surfaces
 * (api/files.c, api/tus.c) are protocol adapters over it. */
#ifndef FERRY_FILESYS_H
#define FERRY_FILESYS_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry.h"
#include "files/blob.h"
#include "files/filescope.h"
#include "files/leases.h"
#include "files/spool.h"
#include "files/uploads.h"
#include "store/store.h"

#define FILESYS_CHECKPOINT (4 * 1024 * 1024) /* a crash loses at most this of a PATCH */

struct filesys {
    struct store *store;
    struct blob_store *blobs; /* DATA_DIR/blobs, or an S3 bucket (blob-store) */
    bool redirect_downloads;  /* S3 store: downloads answer 307 to a presigned URL */
    char *uploads_dir;        /* DATA_DIR/uploads: one folder per unfinished upload */
    int64_t blob_grace_s;     /* a younger unreferenced blob is not collected yet */
    char **shared;            /* shared folders (files/filescope.h), NULL-terminated */
    size_t n_shared;
    char self[LEASES_OWNER_MAX];
};

/* What opening the files subsystem needs; strings are borrowed for its life. */
struct filesys_settings {
    const char *data_dir;
    int64_t blob_grace_s;
    const char *shared_folders;  /* comma-separated folders every user shares (NULL: none) */
    const char *blob_store;      /* "local" or NULL: DATA_DIR/blobs; "s3://bucket/prefix" */
    const char *blob_download;   /* "proxy" (NULL) or "redirect", for an S3 store */
    struct cloud_settings cloud; /* the endpoint and credentials of an S3 store */
};

/* Opens the blob store and the uploads folder under data_dir. Release with
 * filesys_close(). ERR_INVALID for a shared folder that is not a relative path or a
 * blob-store or blob-download setting that is none of the above; an S3 store that does
 * not answer fails here (ERR_CLOUD). */
int filesys_open(const struct filesys_settings *s, struct store *st, struct filesys **out,
                 struct err *err);

/* The scope of a caller with user_id ("" for none) over the file entries. */
struct filescope filesys_scope(const struct filesys *fs, const char *user_id, bool admin);
void filesys_close(struct filesys *fs);

/* Completes what a crash interrupted: tus uploads whose bytes all arrived become their
 * file entries. Run at start. */
int filesys_recover(struct filesys *fs, struct err *err);

/* An upload's folder, a chunk's file, a tus upload's data file (newly allocated). */
char *filesys_upload_dir(const struct filesys *fs, const char *id);
char *filesys_chunk_path(const struct filesys *fs, const char *id, int64_t idx);
char *filesys_data_path(const struct filesys *fs, const char *id);

/* Where a chunk of upload id is spooled while it arrives (newly allocated), and what
 * keeps it once whole: a file in the upload's folder, or, with an S3 store, an object
 * staged there so that any node completes the upload. The spool is freed in every case. */
char *filesys_spool_dir(const struct filesys *fs, const char *id);
int filesys_keep_chunk(struct filesys *fs, const char *id, int64_t idx, struct spool *spool,
                       struct err *err);

/* Makes upload id's folder (with an empty data file for a tus upload). */
int filesys_make_upload(const struct filesys *fs, const char *id, bool data_file, struct err *err);

/* Deletes upload id, its records and its bytes. ERR_LOCKED while a PATCH of it runs. */
int filesys_delete_upload(struct filesys *fs, struct store_conn *c, const char *id,
                          struct err *err);

/* Completes upload u: its chunks (or its data file) become a blob, and the blob a file
 * entry, once, whichever process or node asks. *result gets the entry (JSON text; the
 * caller frees). An upload completed already answers its entry. ERR_CONFLICT while
 * another completes it; ERR_INVALID naming the missing chunks. u is reloaded. */
int filesys_complete(struct filesys *fs, struct store_conn *c, struct upload *u, char **result,
                     struct err *err);

struct filesys_patch;

/* Brings a tus upload's record in line with its data: the offset is never more than the
 * data file holds, and an upload whose bytes all arrived (a crash came before its
 * completion) is completed now. held: the caller's PATCH of it (NULL: the check takes the
 * upload itself, and does nothing while a PATCH of it runs). u is reloaded. */
int filesys_tus_check(struct filesys *fs, struct store_conn *c, struct upload *u,
                      const struct filesys_patch *held, struct err *err);

/* A tus PATCH: holds the upload against other PATCHes, completions and offset repairs
 * in every process, and writes the bytes with checkpoints. Each call takes the caller's
 * store connection, or NULL to borrow one from the pool. */

/* Takes the upload (ERR_LOCKED when another PATCH holds it). */
int filesys_patch_begin(struct filesys *fs, struct store_conn *c, const char *id,
                        struct filesys_patch **out, struct err *err);

/* Opens the data file at u's offset (bytes past it came from a request that never
 * finished). checkpoints: record progress every FILESYS_CHECKPOINT bytes (not when the
 * request's bytes only count once checked whole). */
int filesys_patch_open(struct filesys_patch *p, const struct upload *u, bool checkpoints,
                       struct err *err);

/* Appends bytes; ERR_TOO_LARGE past the upload's length. */
int filesys_patch_write(struct filesys_patch *p, struct store_conn *c, const void *data, size_t len,
                        struct err *err);

/* Ends the writing: keeps the bytes (flushed, on record) or cuts them off. *offset gets
 * the upload's offset; *done says whether that completed it (then *result is its entry,
 * which the caller frees). */
int filesys_patch_settle(struct filesys_patch *p, struct store_conn *c, bool keep, int64_t *offset,
                         bool *done, char **result, struct err *err);

/* Gives the upload back and frees p (NULL: nothing). */
void filesys_patch_end(struct filesys_patch *p, struct store_conn *c);

struct filesys_swept {
    int64_t uploads; /* expired upload sessions whose data was removed */
    int64_t blobs;   /* unreferenced blobs removed */
};

/* Removes the data of expired upload sessions (their records a day later), finished
 * jobs (directory-sync sessions among them) older than jobs_retention_ms, stale blob
 * temporaries and unreferenced blobs older than the grace; run by the purge thread and
 * by POST /api/v1/admin/purge. */
void filesys_housekeeping(struct filesys *fs, struct store_conn *c, int64_t jobs_retention_ms,
                          struct filesys_swept *out);

#endif
