/* siteops.h - administering site-to-site connections: each change is made here and
 * mirrored to the remote site over PhoenixKit's API (register-connection,
 * update-status, delete-connection, verify-connection, get-connection-status), the way
 * PhoenixKit's own admin does. Used by the admin API and by `ferry sites`.
 *
 * Self-healing: verifying a connection asks the remote whether it still has it. A 404
 * means the remote deleted it, and the local side is deleted too; a network error only
 * marks it unreachable, to be tried again later with a growing delay, never deleted. */
#ifndef FERRY_SITEOPS_H
#define FERRY_SITEOPS_H

#include <jansson.h>

#include "sites/siteclient.h"
#include "ferry.h"
#include "store/store.h"

struct siteops_env {
    const char *public_url; /* this site, as the remote reaches it (sender_url) */
    struct siteclient_options client;
};

/* Creates a sender connection to body.url (fields: name, url, password, and the
 * settable fields of sites_update): a new token, the remote's register-connection, and
 * the local record with the remote's answer (active or pending). ERR_BAD_GATEWAY when
 * the remote refuses, with its answer in the message; nothing is stored then. *out is
 * the connection's JSON plus the remote's answer. */
int siteops_create(struct store_conn *c, const struct siteops_env *env, json_t *body, json_t **out,
                   struct err *err);

/* approve | deny | suspend | reactivate | revoke, mirrored to the remote. *out is the
 * connection, with "mirrored" (whether the remote took the change) and, when it did
 * not, "remote_error". */
int siteops_action(struct store_conn *c, const struct siteops_env *env, const char *id,
                   const char *action, json_t **out, struct err *err);

/* Deletes the connection here and asks the remote to delete its side. */
int siteops_delete(struct store_conn *c, const struct siteops_env *env, const char *id,
                   json_t **out, struct err *err);

/* Asks the remote about the connection (see above). *out says what happened:
 * {"result": "exists" | "deleted" | "unreachable", ...}. */
int siteops_verify(struct store_conn *c, const struct siteops_env *env, const char *id,
                   json_t **out, struct err *err);

/* A thread that verifies every connection due (next_check_at) every interval_s. */
struct site_healer;
int siteops_healer_start(struct store *st, const struct siteops_env *env, int64_t interval_s,
                         struct site_healer **out, struct err *err);
void siteops_healer_stop(struct site_healer *h);

#endif
