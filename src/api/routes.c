/* routes.c - the list of route tables the server matches against, and helpers every
 * surface shares. */
#include "api/api.h"
#include "app.h"

#include <string.h>

const struct route_table *const api_tables[] = {
    &api_ops_routes,   &api_admin_routes, &api_legacy_routes,  &api_sync_routes,
    &api_files_routes, &api_tus_routes,   &api_dirsync_routes, &api_site_admin_routes,
};
const size_t api_n_tables = sizeof(api_tables) / sizeof(api_tables[0]);

bool api_owns(const struct request *req, const char *user_id)
{
    return req->cred.role == ROLE_ADMIN || (user_id && !strcmp(user_id, req->cred.user_id));
}
