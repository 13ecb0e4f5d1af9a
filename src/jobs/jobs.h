/* jobs.h - long work as records (DESIGN.md section 2): a job has a kind, a status
 * (pending, running, completed, failed), progress (bytes and items done of total, a
 * message) and a result, and survives restarts. A worker thread runs pending jobs one at
 * a time; a running job has a heartbeat, and one whose heartbeat stops (its server
 * died) goes back to pending and runs again, which is safe because every kind of job is
 * idempotent. Finished jobs are kept for the tombstone retention, then purged. */
#ifndef FERRY_JOBS_H
#define FERRY_JOBS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"
#include "store/store.h"
#include "util/buf.h"

struct job {
    char id[40];
    char *kind, *status, *user_id, *source, *target, *params, *message, *result;
    int64_t bytes_done, bytes_total, items_done, items_total;
    int64_t created_at, started_at, completed_at; /* ms; 0 when not yet */
    bool closed;
};

void jobs_clear(struct job *j);

/* Records a new job (status pending, or running when run_here: the caller runs it). */
int jobs_create(struct store_conn *c, const char *kind, const char *user_id, const char *source,
                const char *target, const char *params, bool run_here, char id[40],
                struct err *err);
int jobs_get(struct store_conn *c, const char *id, struct job *j, bool *found, struct err *err);

/* Progress of a running job (also its heartbeat). */
int jobs_progress(struct store_conn *c, const char *id, int64_t bytes_done, int64_t bytes_total,
                  int64_t items_done, int64_t items_total, const char *message, struct err *err);
/* Ends a job: completed or failed, with its result (JSON text) and a message. */
int jobs_finish(struct store_conn *c, const char *id, bool ok, const char *result,
                const char *message, struct err *err);
/* Marks a finished job closed (EonaCat.Sync's session complete); ERR_CONFLICT while it runs. */
int jobs_close(struct store_conn *c, const char *id, struct err *err);

/* Writes one Prometheus gauge line per kind and status of the jobs waiting or running
 * on any node (ferry_jobs{kind,status} N) into out. */
int jobs_prometheus(struct store_conn *c, struct buf *out, struct err *err);

/* How often a running job writes its progress: at most every 100 ms, and always its last
 * step. True when a step is due, and then *last_ms (0 at first) becomes now. */
bool jobs_progress_due(int64_t *last_ms, bool final);

/* Removes finished jobs completed before `before` (ms). */
int jobs_purge(struct store_conn *c, int64_t before, int64_t *removed, struct err *err);

/* What runs a job of one kind, with its kind's ctx: returns FERRY_OK with *result (JSON
 * text, owned) and a message, or FERRY_ERR with err. It may call jobs_progress through
 * the connection. */
typedef int (*job_runner)(void *ctx, struct store_conn *c, const struct job *j,
                          const atomic_bool *stop, char **result, char **message, struct err *err);

/* A kind of job and what runs it; kind points to a string, and ctx to state, that
 * outlive the worker. */
struct job_kind {
    const char *kind;
    job_runner run;
    void *ctx;
};

/* Starts the worker for the given kinds (at most 4), oldest pending job first. */
struct job_worker;
int jobs_worker_start(struct store *st, const struct job_kind *kinds, size_t n,
                      struct job_worker **out, struct err *err);
/* Wakes the worker (a job was just created). */
void jobs_worker_kick(struct job_worker *w);
/* Stops the worker; a job it is running is told to stop and stays "running" without a
 * heartbeat, so it runs again after the next start. */
void jobs_worker_stop(struct job_worker *w);

/* A thread that stamps job id's heartbeat every 2 s (on its own pooled connection)
 * until stopped: for a job run outside the worker (the CLI's imports). */
struct job_heartbeat;
struct job_heartbeat *jobs_heartbeat_start(struct store *st, const char *id);
void jobs_heartbeat_stop(struct job_heartbeat *h);

/* The milliseconds after which a running job without a heartbeat is taken to be dead
 * (a running job beats every 2 s, whatever it is doing). */
#define JOB_STALE_MS 10000

#endif
