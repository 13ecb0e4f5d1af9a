/* webhooks.h - webhook subscriptions and the events they receive (seed 003's
 * /webhooks/subscribe, delivered as Standard Webhooks 1.0 messages). Emitting an event
 * writes it, with one outbox row per subscription to its type, on the caller's
 * connection and inside the caller's transaction, so a committed change always has its
 * event and a rolled-back one never does; webhooks/dispatch.c delivers the outbox.
 * Subscriptions are the server's (admin) business: they see every event. */
#ifndef FERRY_WEBHOOKS_H
#define FERRY_WEBHOOKS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"
#include "store/store.h"

enum webhook_event {
    WEBHOOK_SYNC_COMPLETED,          /* a sync (directory sync, session, site import) finished */
    WEBHOOK_SYNC_FAILED,             /* one failed */
    WEBHOOK_CONFLICT_CREATED,        /* a pushed change was recorded as a conflict */
    WEBHOOK_UPLOAD_COMPLETED,        /* an upload (chunked or tus) committed its file entry */
    WEBHOOK_DEVICE_REGISTERED,       /* a device was registered */
    WEBHOOK_SITE_CONNECTION_CHANGED, /* a PhoenixKit connection was made, changed status or went */
    WEBHOOK_BACKUP_COMPLETED,        /* a backup snapshot was written */
    WEBHOOK_N_EVENTS,
};

#define WEBHOOKS_URL_MAX 2048
#define WEBHOOKS_DESCRIPTION_MAX 512
#define WEBHOOKS_LOG_MAX 200 /* deliveries one log page lists at most */

const char *webhooks_event_name(enum webhook_event e);

/* Records event e with data (stolen; an object) for every enabled subscription to e: one
 * event row and one pending delivery per subscription, nothing when none subscribes. Runs
 * inside the caller's transaction when there is one, else in its own. On failure the
 * caller's change must fail too (that is what keeps the two together). */
int webhooks_emit(struct store_conn *c, enum webhook_event e, json_t *data, struct err *err);

/* Runs one statement that changes rows (store_run) and, when it changed any and data
 * (stolen) is not NULL, emits e with data, both in one transaction: the caller's, else one
 * of its own. For changes that are a single statement (a status update), so they keep
 * their event. */
int webhooks_change(struct store_conn *c, const char *sql, const struct store_val *params,
                    size_t n_params, int64_t *changes, enum webhook_event e, json_t *data,
                    struct err *err);

/* The event a finished job of kind (its params: JSON text) reports: a backup that
 * created a snapshot is backup.completed (other backup operations report none), every
 * other job is a sync (sync.completed or sync.failed). WEBHOOK_N_EVENTS: none. */
enum webhook_event webhooks_job_event(const char *kind, const char *params, bool ok);

/* The data of a job's event (result: JSON text or NULL): jobId, kind, source, target,
 * status, message and result. */
json_t *webhooks_job_data(const char *id, const char *kind, const char *source, const char *target,
                          bool ok, const char *result, const char *message);

/* Emits e on a connection of st's pool, for work that holds none (a directory sync run
 * inside a request). */
int webhooks_emit_store(struct store *st, enum webhook_event e, json_t *data, struct err *err);

/* What subscribing needs beyond the body: who asks, and whether private targets are
 * allowed (--webhook-allow-private). */
struct webhooks_env {
    const char *created_by;
    bool allow_private;
};

/* Subscribes body's url to body's events ({url, events, description?}); *out is the
 * subscription with its secret, which is shown this once. ERR_INVALID names a bad field
 * or a target address that is refused. */
int webhooks_subscribe(struct store_conn *c, const struct webhooks_env *env, json_t *body,
                       json_t **out, struct err *err);

/* Every subscription (without secrets), oldest first. */
int webhooks_list(struct store_conn *c, json_t **out, struct err *err);

/* One subscription (without its secret); ERR_NOT_FOUND when there is none. */
int webhooks_get(struct store_conn *c, const char *id, json_t **out, struct err *err);

/* Removes a subscription with its outbox and log; ERR_NOT_FOUND when there is none. */
int webhooks_delete(struct store_conn *c, const char *id, struct err *err);

/* Enables a subscription again: its failure count starts over and its pending deliveries
 * are due at once. *out is the subscription. */
int webhooks_enable(struct store_conn *c, const char *id, json_t **out, struct err *err);

/* The delivery log of a subscription, newest first: each delivery with its event type,
 * status and attempts. status (NULL: any) filters; limit is 1..WEBHOOKS_LOG_MAX. */
int webhooks_deliveries(struct store_conn *c, const char *id, const char *status, int limit,
                        json_t **out, struct err *err);

/* Queues event_id for subscription id again, due at once, with the same webhook-id; the
 * event need not have gone to it before. *out is the delivery. */
int webhooks_redeliver(struct store_conn *c, const char *id, const char *event_id, json_t **out,
                       struct err *err);

#endif
