/* siteimport.h - imports: a receiver connection pulls tables from its sender site. An
 * import is a job (jobs/jobs.c) with one transfer record per table: the table's
 * schema is fetched, a missing table is created with its column types mapped to this
 * database's (PostgreSQL and SQLite both ways), and the rows arrive page by page in
 * primary-key order (pull-data's limit/after), each page applied in one transaction
 * together with the transfer's progress, so an interrupted import resumes after its
 * last committed page, without duplicates. Conflict strategies, for rows whose key
 * exists: skip keeps the existing row, overwrite replaces every column, merge overlays
 * the incoming non-null values, append inserts under a new key. */
#ifndef FERRY_SITEIMPORT_H
#define FERRY_SITEIMPORT_H

#include <stdbool.h>

#include <jansson.h>

#include "jobs/jobs.h"
#include "sites/siteops.h"
#include "ferry.h"
#include "store/store.h"

/* The job kind "site-import"; env must outlive the worker. */
struct job_kind siteimport_job_kind(const struct siteops_env *env);

/* Queues an import of tables (JSON array of names) from connection id with strategy
 * (NULL: the connection's default); *job_id gets the job. With incremental, a table an
 * earlier import brought from a ferry sender is brought up to date from the sender's
 * change feed (changed rows and deletions only) where the sender tracks it. ERR_CONFLICT
 * unless the connection is an active receiver. */
int siteimport_start(struct store_conn *c, const char *id, json_t *tables, const char *strategy,
                     bool incremental, bool run_here, const char *user_id, char job_id[40],
                     struct err *err);

/* The connection's transfers, newest first. */
int siteimport_transfers(struct store_conn *c, const char *id, json_t **out, struct err *err);

/* Runs an import job created with run_here, here and now, with its heartbeat (the CLI
 * does this, instead of a server's worker; st needs a connection to spare for the
 * heartbeat). */
int siteimport_run_now(struct store *st, struct store_conn *c, const struct siteops_env *env,
                       const char *job_id, struct err *err);

#endif
