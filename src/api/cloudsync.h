/* cloudsync.h - sessions between a folder and a cloud location (s3, azure, local): the
 * params a session records when it starts, and the runner of its job, which copies the
 * folder's tree up or the location's objects down (cloud/treesync.c). */
#ifndef FERRY_API_CLOUDSYNC_H
#define FERRY_API_CLOUDSYNC_H

#include <stdatomic.h>
#include <stdbool.h>

#include <jansson.h>

#include "cloud/cloudcfg.h"
#include "dbsync/locations.h"
#include "ferry.h"
#include "store/store.h"

struct app;

/* Adds to params (a copy of the session's body) what the job needs: "cloudSync", the
 * cloud location's name and the way ("upload" when the folder is the source). ERR_INVALID
 * never: a cloud session takes every option a folder session does. */
int apicloudsync_params(json_t *params, const struct location *cloud, bool upload, struct err *err);

/* A cloud location opened: its provider (on the location's own bucket, container or
 * folder, own.container) and the prefix of its keys ("" or ending in '/'). */
struct apicloud_place {
    struct cloudcfg own;
    struct cloud *cloud;
    char *prefix;
};

/* Opens loc's provider. ERR_CLOUD naming the missing settings when it is not configured,
 * ERR_INVALID for a malformed target. Close with apicloudsync_close (also after a failure). */
int apicloudsync_open(const struct app *app, const struct location *loc, const atomic_bool *stop,
                      struct apicloud_place *out, struct err *err);
void apicloudsync_close(struct apicloud_place *p);

/* Checks that the cloud location's provider is configured (ERR_CLOUD naming the missing
 * settings) and its target well formed, without calling the provider. */
int apicloudsync_check(const struct app *app, const struct location *cloud, struct err *err);

/* Runs the session of job job_id: folder is its folder (resolved and confined again by the
 * caller), params what apicloudsync_params made. *result is the seed's result object;
 * counted in the metrics as a sync and as the provider's bytes. ERR_CLOUD when the
 * provider is down or refuses, ERR_NOT_FOUND when the location is no longer configured. */
int apicloudsync_run(const struct app *app, struct store_conn *c, const char *job_id,
                     json_t *params, const char *folder, const atomic_bool *stop, json_t **result,
                     struct err *err);

#endif
