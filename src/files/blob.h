/* blob.h - the content-addressed blob store shared by uploads, directory sync and
 * backups: each blob is a file named by the SHA-256 of its bytes, under
 * DIR/ab/cd/<hash> in a local folder, or PREFIX/ab/cd/<hash> in an S3 bucket. A blob is written to
 * a temporary file, hashed while it streams in, flushed to disk, and only then renamed into place,
 * so a crash never leaves a blob whose bytes do not match its name; identical content is stored
 * once. */
#ifndef FERRY_BLOB_H
#define FERRY_BLOB_H

#include <stdbool.h>
#include <stdint.h>

#include "cloud/cloud.h"
#include "ferry.h"
#include "util/buf.h"

struct blob_store;
struct blob_writer;

/* Opens (creating) the store in dir, and removes temporary files a crash left behind
 * (those untouched for an hour: younger ones may be another node's, writing). The
 * caller owns *out; release with blob_store_close(). */
int blob_store_open(const char *dir, struct blob_store **out, struct err *err);
void blob_store_close(struct blob_store *bs);

/* Opens a store in an S3 bucket (url "s3://bucket/prefix"; settings give the endpoint
 * and credentials) with the local folder scratch for temporary files. Bytes are hashed
 * here before they are put, so nothing is stored under a hash its bytes do not have. */
int blob_store_open_s3(const char *scratch, const char *url, const struct cloud_settings *settings,
                       struct blob_store **out, struct err *err);

/* Whether blobs live in object storage (no local path; see blob_open). */
bool blob_remote(const struct blob_store *bs);

/* Removes temporary files untouched for an hour (housekeeping; see blob_store_open). */
void blob_clear_stale(struct blob_store *bs);

/* Starts a new blob. Write its bytes in any number of calls, then finish or abort. */
int blob_writer_new(struct blob_store *bs, struct blob_writer **out, struct err *err);

/* Appends bytes. ERR_STORAGE_FULL when the disk is full (nothing of the blob stays
 * once it is aborted). */
int blob_writer_write(struct blob_writer *w, const void *data, size_t len, struct err *err);

/* The hash and length of the bytes written so far (lower-case hex), so that a caller
 * can record its claim on the blob before blob_writer_finish() names it. */
void blob_writer_digest(const struct blob_writer *w, char hex[65], uint64_t *size);

/* Completes the blob: checks the hash against expect_sha256 (lower-case hex; NULL to
 * accept any), makes the bytes durable and names them. hex gets the hash and *size the
 * length. On a mismatch the blob is discarded and err says so (ERR_INVALID). The writer
 * is freed in every case. */
int blob_writer_finish(struct blob_writer *w, const char *expect_sha256, char hex[65],
                       uint64_t *size, struct err *err);

/* Discards an unfinished blob and frees the writer. blob_writer_abort(NULL) does nothing. */
void blob_writer_abort(struct blob_writer *w);

/* Stores the contents of an existing file (streamed, never read whole into memory). */
int blob_put_file(struct blob_store *bs, const char *path, char hex[65], uint64_t *size,
                  struct err *err);

/* Turns the finished file at path into a blob by renaming it (no copy when both are on
 * one file system); the file is gone afterwards unless this fails. known_sha256 is its
 * hash when the caller computed it while writing (NULL: the file is read to hash it);
 * expect_sha256 as for blob_writer_finish (on a mismatch the file is left alone). */
int blob_adopt_file(struct blob_store *bs, const char *path, const char *known_sha256,
                    const char *expect_sha256, char hex[65], uint64_t *size, struct err *err);

/* The path of blob hex in a local store (newly allocated), or NULL with ERR_INVALID
 * when hex is not a SHA-256 in lower-case hex. */
char *blob_path(const struct blob_store *bs, const char *hex, struct err *err);

bool blob_exists(const struct blob_store *bs, const char *hex);

/* Opens blob hex of a local store for reading (the caller closes *fd). An S3 store has
 * no file to open: ERR_INVALID; its bytes are read with blob_read. */
int blob_open(struct blob_store *bs, const char *hex, int *fd, struct err *err);

/* Appends len bytes of blob hex from start to out: one ranged GET from an S3 store, so
 * that a large blob is read piece by piece, never copied whole. ERR_INVALID for a local
 * store (open it). */
int blob_read(struct blob_store *bs, const char *hex, uint64_t start, uint64_t len, struct buf *out,
              struct err *err);

/* A URL that GETs blob hex until expires_at (a SigV4 presigned URL; S3 stores only). */
int blob_presign(struct blob_store *bs, const char *hex, int64_t expires_at, char **url,
                 struct err *err);

/* What collection asks before it removes a blob. referenced(hex) answers whether hex is
 * in use; when it answers false it must keep new references out (a lock in the
 * database: writers record their claim under the same lock, before they look for the
 * blob or put it) until done(hex), which collection calls once the blob is gone. */
struct blob_collector {
    bool (*referenced)(const char *hex, void *ctx);
    void (*done)(const char *hex, void *ctx);
    void *ctx;
};

/* Removes every blob older than grace_s seconds (since it was put in place) that who
 * says is unreferenced; *removed counts them. Safe against writers in other processes
 * and nodes, through who's lock. */
int blob_collect(struct blob_store *bs, const struct blob_collector *who, int64_t grace_s,
                 int64_t *removed, struct err *err);

/* Staging for unfinished uploads in an S3 store (blob_remote), so that any node takes
 * the next part: the finished local file at path is put as name ("uploads/ID/3") and
 * removed; a staged object is streamed into write (ERR_NOT_FOUND when missing); staged
 * objects whose names start with name_prefix are removed. */
int blob_stage_put(struct blob_store *bs, const char *name, const char *path, struct err *err);
/* The same from the whole of an open file (left open). */
int blob_stage_put_fd(struct blob_store *bs, const char *name, int fd, struct err *err);
int blob_stage_get(struct blob_store *bs, const char *name, cloud_write_fn write, void *ctx,
                   struct err *err);
void blob_stage_drop(struct blob_store *bs, const char *name_prefix);

/* The local folder of the store's temporary files (spools of an S3 store's parts). */
const char *blob_tmp_dir(const struct blob_store *bs);

/* Hashes the file at path by reading it (what is on disk, not what was sent). */
int blob_hash_file(const char *path, char hex[65], uint64_t *size, struct err *err);

/* Whether text is 64 lower-case hex digits. */
bool blob_valid_hex(const char *text);

#endif
