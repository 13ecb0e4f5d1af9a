/* phoenix.h - the PhoenixKit site-to-site surface. Its paths depend on the configured
 * prefix (--sites-prefix), so its route table is made at start, together with the state
 * its handlers share (a rate limiter per distinct connection limit). */
#ifndef FERRY_API_PHOENIX_H
#define FERRY_API_PHOENIX_H

#include "http/router.h"

#define PHOENIX_N_ACTIONS 10

struct phoenix;

/* The surface for the routes {prefix}/sync/api/...; phoenix_free() releases it. The
 * handlers find it as req->app->phoenix. */
struct phoenix *phoenix_new(const char *prefix);
void phoenix_free(struct phoenix *px);

/* Its route table, valid until phoenix_free(). */
const struct route_table *phoenix_routes(const struct phoenix *px);

#endif
