/* cloud_internal.h - what the providers (s3.c, azure.c, local.c) share with cloud.c: the
 * table of a provider's operations, the opened provider, and the record of an unfinished
 * multipart upload. Not for use outside src/cloud/. */
#ifndef FERRY_CLOUD_INTERNAL_H
#define FERRY_CLOUD_INTERNAL_H

#include "cloud/cloud.h"

struct cloud_ops {
    int (*put)(struct cloud *c, const char *key, const struct cloud_source *src, const json_t *meta,
               struct cloud_put_result *res, struct err *err);
    int (*head)(struct cloud *c, const char *key, struct cloud_object *out, struct err *err);
    int (*get)(struct cloud *c, const char *key, const struct cloud_range *r, const char *etag,
               cloud_write_fn write, void *ctx, struct err *err);
    int (*list)(struct cloud *c, const char *prefix, cloud_list_fn fn, void *ctx, struct err *err);
    int (*del)(struct cloud *c, const char *key, struct err *err);
    int (*presign)(struct cloud *c, const char *key, int64_t expires_at, char **url,
                   struct err *err);
    void (*close)(struct cloud *c);
};

struct cloud {
    enum cloud_provider kind;
    const char *name;
    const struct cloud_ops *ops;
    struct cloud_settings s;
    void *impl; /* the provider's own state */
};

/* Each provider's open: checks its settings and fills c->ops and c->impl. */
int s3_open(struct cloud *c, struct err *err);
int azure_open(struct cloud *c, struct err *err);
int local_open(struct cloud *c, struct err *err);

/* The record of one multipart upload (of key from src), a JSON object kept in a file
 * under state_dir and locked while an upload uses it. rec is {} for a fresh upload. */
struct cloud_state {
    int fd;
    json_t *rec;
};

/* Opens (creating) and locks the record; ERR_CONFLICT when another upload holds it. */
int cloud_state_open(struct cloud *c, const char *key, const struct cloud_source *src,
                     struct cloud_state *st, struct err *err);
/* Writes rec durably (after a part is done). */
int cloud_state_save(struct cloud_state *st, struct err *err);
/* Unlocks and closes; done removes the record (the upload finished). */
void cloud_state_close(struct cloud *c, const char *key, const struct cloud_source *src,
                       struct cloud_state *st, bool done);

/* The HTTP Range value of r ("bytes=0-99"), or false when r is the whole object. */
bool cloud_range_header(const struct cloud_range *r, char out[64]);

/* Number of parts of src at the configured part size (at least 1). */
unsigned cloud_n_parts(const struct cloud *c, const struct cloud_source *src);

#endif
