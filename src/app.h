/* app.h - the running server's shared state, built once by main and read by every
 * request: configuration, store, limiters, routes. */
#ifndef FERRY_APP_H
#define FERRY_APP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "files/filesys.h"
#include "sites/siteops.h"
#include "sync/tables.h"
#include "http/ratelimit.h"
#include "http/proxies.h"
#include "http/router.h"
#include "http/waiter.h"
#include "ops/metrics.h"
#include "store/store.h"

struct phoenix;    /* api/phoenix.c: PhoenixKit's routes and their limiters */
struct apidirsync; /* api/dirsync.c: the directory syncs running inside requests */
struct auth_jwt;   /* http/auth.c: the JWT verifier (NULL: JWTs not accepted) */
struct apicloud;   /* api/cloud.c: the cloud transfers running inside requests */
struct watch;      /* sync/watch.c: the change watcher */

struct app {
    struct config *cfg;
    struct store *store;
    struct ratelimit *rate;                  /* per credential */
    struct ratelimit *auth_fail;             /* per client address, failed authentications */
    const struct route_table *const *tables; /* set by routes_init (api/routes.c) */
    size_t n_tables;
    struct phoenix *phoenix;
    struct apidirsync *dirsync;
    struct apicloud *cloud;
    int64_t started_ms;
    atomic_int in_flight;
    atomic_int streams;   /* streamed feed pages holding a store connection (api/pagestream.c) */
    atomic_bool stopping; /* the shutdown timeout passed: long requests end early */
    struct synced_set synced; /* the synced tables, loaded at start */
    struct filesys *files;    /* blobs, unfinished uploads, their leases and housekeeping */
    char **file_roots;        /* folders directory sync may name (file-root) */
    size_t n_file_roots;
    struct job_worker *jobs;     /* runs jobs: directory-sync sessions, site imports */
    struct siteops_env site_env; /* this site's URL and the outgoing-call options */
    struct metrics *metrics;     /* request and sync counters */
    struct waiter *waiter;       /* parked long-polls */
    struct feedshare *feedshare; /* feed pages shared by the long-polls a change wakes */
    struct watch *watch;         /* the change watcher, poked after a write (sync/watch.h) */
    struct auth_jwt *jwt;        /* JWT secret and keys, NULL when none is configured */
    struct proxies *proxies;     /* trusted-proxies; NULL: the socket address is the client */
};

#endif
