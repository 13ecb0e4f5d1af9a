/* routes.c - the list of route tables the server matches against, in order, and the
 * surfaces' state the app holds while it serves them. */
#include <stdlib.h>

#include "api/api.h"
#include "api/cloud.h"
#include "api/dirsync.h"
#include "api/phoenix.h"
#include "api/routes.h"
#include "app.h"

static const struct route_table *const fixed_tables[] = {
    &api_ops_routes,      &api_admin_routes, &api_legacy_routes,  &api_sync_routes,
    &api_files_routes,    &api_tus_routes,   &api_dirsync_routes, &api_site_admin_routes,
    &api_merge_routes,    &api_cloud_routes, &api_dbsync_routes,  &api_backup_routes,
    &api_webhooks_routes,
};

#define N_FIXED (sizeof(fixed_tables) / sizeof(fixed_tables[0]))

void routes_init(struct app *app)
{
    const struct route_table **tables = xcalloc(N_FIXED + 1, sizeof(*tables));
    for (size_t i = 0; i < N_FIXED; i++)
        tables[i] = fixed_tables[i];
    app->phoenix = phoenix_new(app->cfg->sites_prefix);
    app->dirsync = apidirsync_new();
    app->cloud = apicloud_new(app->cfg->threads);
    tables[N_FIXED] = phoenix_routes(app->phoenix);
    app->tables = tables;
    app->n_tables = N_FIXED + 1;
}

void routes_cleanup(struct app *app)
{
    free((void *)app->tables);
    app->tables = NULL;
    app->n_tables = 0;
    phoenix_free(app->phoenix);
    app->phoenix = NULL;
    apidirsync_free(app->dirsync);
    app->dirsync = NULL;
    apicloud_free(app->cloud);
    app->cloud = NULL;
}
