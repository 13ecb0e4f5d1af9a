/* cloudcfg.h - a cloud provider opened from ferry's configuration: the settings every
 * user of the providers (the cloud API, sessions between a folder and a cloud location)
 * builds the same way, with the local provider's link key and the upload state folder
 * kept in the data folder. */
#ifndef FERRY_CLOUDCFG_H
#define FERRY_CLOUDCFG_H

#include <stdatomic.h>

#include "cloud/cloud.h"
#include "config.h"

/* The strings an opened provider's settings point at; they must outlive the provider. */
struct cloudcfg {
    char *state_dir;
    char link_key[65];
    char *link_base;
    char *container; /* the bucket, container or folder the provider was opened on */
};

/* Opens provider p as configured in cfg. link_base is where the local provider's links
 * point (copied); stop ends transfers early when it becomes true (may be NULL). own
 * holds the settings' strings: cloud_close the provider, then cloudcfg_clear(own). */
int cloudcfg_open(const struct config *cfg, enum cloud_provider p, const char *link_base,
                  const atomic_bool *stop, struct cloudcfg *own, struct cloud **out,
                  struct err *err);
/* The same on container (an S3 bucket, an Azure container or a local folder) instead of
 * the configured one, for a cloud location that names its own (--location NAME=s3:B/P). */
int cloudcfg_open_at(const struct config *cfg, enum cloud_provider p, const char *container,
                     const char *link_base, const atomic_bool *stop, struct cloudcfg *own,
                     struct cloud **out, struct err *err);
void cloudcfg_clear(struct cloudcfg *own);

/* The secret the local provider's links are signed with (64 hex digits and a NUL): made
 * once, kept in the data folder so links outlive a restart (deleting it revokes them). */
int cloudcfg_link_key(const char *data_dir, char out[65], struct err *err);

#endif
