/* conflicts.h - conflicts recorded by the manual and merge policies: listing them, and
 * resolving one by keeping the server's row, taking the client's, or supplying merged
 * data. A resolution is itself a change in the feed. */
#ifndef FERRY_CONFLICTS_H
#define FERRY_CONFLICTS_H

#include <jansson.h>

#include "sync/tables.h"

/* Which conflicts conflicts_list reads; NULL members select all. */
struct conflict_filter {
    const char *user_id; /* of this user */
    const char *status;  /* "open" or "resolved" */
    const char *scope;   /* of these tables (comma list: a credential's table scope) */
    /* of rows the caller may read under the sync rules (NULL: any) */
    const struct rules_caller *caller;
};

/* The conflicts the filter selects, oldest first, as a JSON array. */
int conflicts_list(struct store_conn *c, const struct synced_set *set,
                   const struct conflict_filter *f, json_t **out, struct err *err);

/* One conflict and its owner (user id, "" when none) in owner[128]. */
int conflicts_get(struct store_conn *c, const struct synced_set *set, const char *id, json_t **out,
                  char owner[128], struct err *err);

/* Resolves conflict id: resolution "keep_server", "take_client" or "merge" (with data,
 * a full or partial row). The row change and the conflict's new state commit together.
 * ERR_CONFLICT when it is already resolved; ERR_NOT_FOUND when unknown; ERR_INVALID for
 * merged data that does not fit the table; ERR_FORBIDDEN when the sync rules keep the
 * row from caller (NULL: no limit), as for a push. *out is the resolved conflict. */
int conflicts_resolve(struct store_conn *c, const struct synced_set *set, const char *id,
                      const char *resolution, json_t *data, const char *by,
                      const struct rules_caller *caller, json_t **out, struct err *err);

#endif
