/* app.h - the running server's shared state, built once by main and read by every
 * request: configuration, store, limiters, routes. */
#ifndef FERRY_APP_H
#define FERRY_APP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "engine/tables.h"
#include "http/ratelimit.h"
#include "http/router.h"
#include "store/store.h"

struct app {
    struct config *cfg;
    struct store *store;
    struct ratelimit *rate;      /* per credential */
    struct ratelimit *auth_fail; /* per client address, failed authentications */
    const struct route_table *const *tables;
    size_t n_tables;
    int64_t started_ms;
    atomic_int in_flight;
    struct synced_set synced; /* the synced tables, loaded at start */
};

#endif
