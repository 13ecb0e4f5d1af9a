/* api.h - the route table of each surface, each defined in its surface's file (ops.c,
 * admin.c, ...). routes.c lists them for the router; no surface depends on that list. */
#ifndef FERRY_API_H
#define FERRY_API_H

#include "http/router.h"

extern const struct route_table api_ops_routes;
extern const struct route_table api_admin_routes;
extern const struct route_table api_legacy_routes;
extern const struct route_table api_sync_routes;
extern const struct route_table api_files_routes;
extern const struct route_table api_tus_routes;
extern const struct route_table api_dirsync_routes;
extern const struct route_table api_site_admin_routes;
extern const struct route_table api_merge_routes;
extern const struct route_table api_cloud_routes;
extern const struct route_table api_dbsync_routes;
extern const struct route_table api_backup_routes;
extern const struct route_table api_webhooks_routes;

#endif
