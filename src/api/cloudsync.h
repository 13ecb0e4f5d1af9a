/* cloudsync.h - sessions between a folder and a cloud location (s3, azure, local): the
 * params a session records when it starts, and the runner of its job, which copies the
 * folder's tree up or the location's objects down (cloud/treesync.c). */
#ifndef FERRY_API_CLOUDSYNC_H
#define FERRY_API_CLOUDSYNC_H

#include <stdatomic.h>
#include <stdbool.h>

#include <jansson.h>

#include "dbsync/locations.h"
#include "ferry.h"
#include "store/store.h"

struct app;

/* Adds to params (a copy of the session's body) what the job needs: "cloudSync", the
 * cloud location's name and the way ("upload" when the folder is the source). ERR_INVALID
 * for an option that a cloud session does not take. */
int apicloudsync_params(json_t *params, const struct location *cloud, bool upload, struct err *err);

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
