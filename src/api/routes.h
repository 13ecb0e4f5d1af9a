/* routes.h - every surface's route table in matching order, registered in one place,
 * with the state of the surfaces that have some (PhoenixKit's routes and limiters, the
 * directory syncs running inside requests). */
#ifndef FERRY_API_ROUTES_H
#define FERRY_API_ROUTES_H

struct app;

/* Makes the surfaces' state from app->cfg and sets app->tables and app->n_tables (the
 * PhoenixKit paths depend on --sites-prefix). routes_cleanup() releases both; it does
 * nothing for an app routes_init() did not set up. */
void routes_init(struct app *app);
void routes_cleanup(struct app *app);

#endif
