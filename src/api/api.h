/* api.h - the route tables of every surface, gathered for the router. Each surface's
 * file (ops.c, admin.c, ...) defines its table; routes.c lists the tables. */
#ifndef FERRY_API_H
#define FERRY_API_H

#include <stdbool.h>

#include "http/router.h"

extern const struct route_table api_ops_routes;
extern const struct route_table api_admin_routes;
extern const struct route_table api_legacy_routes;
extern const struct route_table api_sync_routes;
extern const struct route_table api_files_routes;
extern const struct route_table api_tus_routes;
extern const struct route_table api_dirsync_routes;
extern const struct route_table api_site_admin_routes;

/* All tables, in matching order. */
extern const struct route_table *const api_tables[];
extern const size_t api_n_tables;

struct request;
/* Whether the credential may see a record owned by user_id (NULL: no owner): admins see
 * every record, others their user's. */
bool api_owns(const struct request *req, const char *user_id);

#endif
