/* dbsync.h - EonaCat.Sync's database sync surface (POST /api/v1/sync/database), and the
 * runner that sessions between two database locations share with it. */
#ifndef FERRY_API_DBSYNC_H
#define FERRY_API_DBSYNC_H

#include <stdatomic.h>

#include <jansson.h>

#include "ferry.h"
#include "jobs/jobs.h"

struct app;

/* The job kind "dbsync" (a database sync whose server died is run again by the worker). */
struct job_kind apidbsync_job_kind(const struct app *app);

/* Runs the database sync described by params ({"source", "target": location names,
 * "entityNames", "useTransactions", "conflictPolicy"}) as job job_id, reporting progress
 * on c; *result is the seed's answer. Counts it in the metrics. */
int apidbsync_run(const struct app *app, struct store_conn *c, const char *job_id, json_t *params,
                  const atomic_bool *stop, json_t **result, struct err *err);

/* Checks a session's database pair: both configured database locations, not the same one. */
int apidbsync_check_pair(const struct app *app, const char *source, const char *target,
                         struct err *err);

#endif
