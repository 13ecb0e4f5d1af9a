/* blob_s3.h - the blob store's S3 backend (blob_s3.c), used by blob.c only: blobs are
 * objects PREFIX/ab/cd/<hash> in a bucket of an S3-compatible endpoint, so nodes that
 * share no folder share the store. Bytes are hashed on this node before they are put. */
#ifndef FERRY_BLOB_S3_H
#define FERRY_BLOB_S3_H

#include <stdbool.h>
#include <stdint.h>

#include "cloud/cloud.h"
#include "ferry.h"
#include "util/buf.h"

struct blob_s3;

/* Parses url ("s3://bucket/prefix", the prefix optional) and checks that the bucket
 * answers. settings are copied (their strings must outlive the backend); scratch is a
 * local folder for the multipart upload records. */
int blob_s3_open(const char *url, const struct cloud_settings *settings, const char *scratch,
                 struct blob_s3 **out, struct err *err);
void blob_s3_close(struct blob_s3 *s);

/* Puts the file at path as blob hex (its bytes hashed to hex by the caller). */
int blob_s3_put(struct blob_s3 *s, const char *path, const char *hex, struct err *err);

/* Whether blob hex is stored (false too when the endpoint does not answer), with the
 * stored object's size in *size when size is not NULL. */
bool blob_s3_exists(struct blob_s3 *s, const char *hex, uint64_t *size);

/* Appends len bytes of blob hex from start to out. A store that sends more than asked (one
 * that ignores the range) is stopped, and that is an error (ERR_CLOUD). */
int blob_s3_fetch(struct blob_s3 *s, const char *hex, uint64_t start, uint64_t len, struct buf *out,
                  struct err *err);

/* A presigned GET URL of blob hex valid until expires_at. */
int blob_s3_presign(struct blob_s3 *s, const char *hex, int64_t expires_at, char **url,
                    struct err *err);

/* Calls each(hex, modified_ms, ctx) for every stored blob (listing order). */
int blob_s3_each(struct blob_s3 *s, void (*each)(const char *hex, int64_t modified_ms, void *ctx),
                 void *ctx, struct err *err);

int blob_s3_delete(struct blob_s3 *s, const char *hex, struct err *err);

/* Staged objects PREFIX/staging/<name> (parts of unfinished uploads): put from a local
 * file, streamed into write, and removed by name prefix. ERR_NOT_FOUND for a missing one. */
int blob_s3_stage_put(struct blob_s3 *s, const char *name, const char *path, struct err *err);
int blob_s3_stage_put_fd(struct blob_s3 *s, const char *name, int fd, struct err *err);
int blob_s3_stage_get(struct blob_s3 *s, const char *name, cloud_write_fn write, void *ctx,
                      struct err *err);
void blob_s3_stage_drop(struct blob_s3 *s, const char *name_prefix);

#endif
