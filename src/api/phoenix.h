/* phoenix.h - the PhoenixKit site-to-site surface, whose paths depend on the configured
 * prefix (--sites-prefix), so its route table is made at start. */
#ifndef FERRY_API_PHOENIX_H
#define FERRY_API_PHOENIX_H

#include "http/router.h"

/* The routes {prefix}/sync/api/...; valid until phoenix_routes_free(). */
const struct route_table *phoenix_routes(const char *prefix);
void phoenix_routes_free(void);

#endif
