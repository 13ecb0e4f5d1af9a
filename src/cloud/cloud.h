/* cloud.h - one client interface to object stores, whatever the provider: S3-compatible
 * endpoints (s3.c), Azure Blob Storage (azure.c) and a local folder (local.c). Bodies
 * stream through callbacks and file descriptors, never whole in memory; large uploads go
 * in parts whose progress is recorded, so a retry after a failure continues. */
#ifndef FERRY_CLOUD_H
#define FERRY_CLOUD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"

enum cloud_provider { CLOUD_S3, CLOUD_AZURE, CLOUD_LOCAL };
#define CLOUD_N_PROVIDERS 3
#define CLOUD_PROVIDER_NAMES "s3, azure or local"

/* Metadata limits: S3 allows 2 KB of user metadata in all; names are lower-cased (S3
 * does so, Azure compares them without case) and values printable ASCII. */
#define CLOUD_MAX_META_BYTES 2048
#define CLOUD_MAX_KEY 1024 /* bytes of an object key (S3's limit) */

/* The provider's name ("s3"), and the parse of one (ERR_INVALID naming the three). */
const char *cloud_provider_name(enum cloud_provider p);
int cloud_provider_parse(const char *name, enum cloud_provider *out, struct err *err);

/* What opening a provider needs; strings are borrowed for the life of the struct cloud. */
struct cloud_settings {
    const char *s3_endpoint, *s3_region, *s3_access_key_id, *s3_secret_access_key, *s3_bucket;
    const char *azure_connection_string, *azure_container;
    const char *local_dir;
    const char *link_base; /* URL ferry is reached at, for the local provider's links */
    const char *link_key;  /* secret the local provider's links are signed with */
    const char *state_dir; /* where unfinished multipart uploads are recorded */
    uint64_t part_size;
    long timeout_s;
    const atomic_bool *stop; /* when it turns true, transfers end early (NULL: never) */
};

/* One stored object. Strings and metadata are owned; release with cloud_object_cleanup. */
struct cloud_object {
    char *key; /* full path in the bucket or container, "a/b/c.zip" */
    uint64_t size;
    int64_t modified_ms;
    char *etag;       /* without quotes */
    json_t *metadata; /* object of strings; NULL when the listing does not carry it */
};
void cloud_object_cleanup(struct cloud_object *o);

/* A file to upload: its descriptor (read with pread, never moved), size and a text that
 * changes whenever its content may have (path, size, mtime), so a recorded upload is
 * continued only for the same content. */
struct cloud_source {
    int fd;
    uint64_t size;
    const char *fingerprint;
    /* Told of the file's bytes as they go out (a part sent again after a failure is told
     * again), so a caller can show motion within one large file; may be NULL. */
    void (*sent)(void *ctx, uint64_t n);
    void *sent_ctx;
};

/* What an upload did: parts sent now, parts an earlier attempt had already sent. */
struct cloud_put_result {
    unsigned parts, parts_resumed;
    char etag[130];
};

/* Receives a download's bytes in order; FERRY_ERR stops the transfer. */
typedef int (*cloud_write_fn)(void *ctx, const void *data, size_t len);
/* Receives listed objects in key order; FERRY_ERR stops the listing. */
typedef int (*cloud_list_fn)(void *ctx, const struct cloud_object *o);

struct cloud;

/* Opens a provider from settings. ERR_CLOUD when it is not configured (the message names
 * the setting, never its value). Free with cloud_close(); cloud_close(NULL) does nothing. */
int cloud_open(enum cloud_provider p, const struct cloud_settings *s, struct cloud **out,
               struct err *err);
void cloud_close(struct cloud *c);
enum cloud_provider cloud_kind(const struct cloud *c);

/* Checks metadata from a request: an object of string values within the limits above.
 * ERR_INVALID says which entry is wrong. */
int cloud_check_metadata(const json_t *meta, struct err *err);

/* Stores src as key with metadata (NULL: none). Files larger than one part go in parts
 * (S3 multipart, Azure blocks); the parts done are recorded under state_dir, so after a
 * failure a call with the same key and source continues where the last one stopped.
 * Errors: ERR_CLOUD when the provider is down or refuses, ERR_CONFLICT when another
 * upload of the same key and source is running. */
int cloud_put(struct cloud *c, const char *key, const struct cloud_source *src, const json_t *meta,
              struct cloud_put_result *res, struct err *err);

/* The object's size, etag, date and metadata. ERR_NOT_FOUND when there is none. */
int cloud_head(struct cloud *c, const char *key, struct cloud_object *out, struct err *err);

/* A byte range of an object: length bytes from offset; length 0 means to the end. */
struct cloud_range {
    uint64_t offset, length;
};

/* Streams the bytes of key in range (NULL: all of it) into write. When etag is not NULL
 * the object must still have that etag (ERR_PRECONDITION otherwise), so a resumed
 * download never splices two versions. ERR_RANGE when the range starts past the end. */
int cloud_get(struct cloud *c, const char *key, const struct cloud_range *range, const char *etag,
              cloud_write_fn write, void *ctx, struct err *err);

/* Lists the objects whose keys start with prefix ("" for all), page by page. */
int cloud_list(struct cloud *c, const char *prefix, cloud_list_fn fn, void *ctx, struct err *err);

/* Removes key; removing a missing key succeeds. */
int cloud_delete(struct cloud *c, const char *key, struct err *err);

/* A URL anyone may GET the object with until expires_at (seconds since the epoch): a
 * SigV4 presigned URL, an Azure SAS URL, or ferry's own signed link. Caller frees *url. */
int cloud_presign(struct cloud *c, const char *key, int64_t expires_at, char **url,
                  struct err *err);

/* The local provider's link check, for the public route that serves its links: whether
 * signature is the one cloud_presign made for key and expires_at, with time left. */
bool cloud_local_link_valid(const char *link_key, const char *key, int64_t expires_at,
                            const char *signature);

#endif
