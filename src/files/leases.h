/* leases.h - named leases in the database that hold across processes and nodes: one
 * PATCH of a tus upload at a time, one completion of an upload at a time. A lease names
 * its owner (host, process id and the process's start time) and an expiry its holder
 * pushes on while it works; a lease whose owner is a process of this host that is gone,
 * or whose expiry passed, is free at once, so a crash never leaves work stuck. */
#ifndef FERRY_LEASES_H
#define FERRY_LEASES_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry.h"
#include "store/store.h"

#define LEASES_OWNER_MAX 160
#define LEASES_TTL_MS (30 * 1000) /* a holder on another host is trusted this long */
#define LEASES_RENEW_MS (10 * 1000)

/* One held lease. */
struct lease {
    char name[80];
    char token[33];
    int64_t renewed_ms;
};

/* This process's owner text: "host boot-id pid start-time" (see above). */
void leases_self(char out[LEASES_OWNER_MAX]);

/* Whether a lease owner may still be working: false for a process of this host that is
 * gone (or whose pid now names another process); true for another host's. */
bool leases_owner_alive(const char *self, const char *owner);

/* Takes lease name for self unless a live owner holds it: *got says which; l is filled
 * when got. */
int leases_acquire(struct store_conn *c, const char *self, const char *name, struct lease *l,
                   bool *got, struct err *err);

/* Pushes the expiry on (when LEASES_RENEW_MS passed since the last time); ERR_CONFLICT
 * when the lease was lost (it expired and another took it). */
int leases_renew(struct store_conn *c, struct lease *l, bool force, struct err *err);

/* Gives the lease back (nothing when another has taken it meanwhile). */
void leases_release(struct store_conn *c, struct lease *l);

/* A thread that renews a held lease every LEASES_RENEW_MS on its own pooled connection
 * for as long as its holder works, so a step that reports nothing for longer than
 * LEASES_TTL_MS (a quiet prune, one large file) never lets the lease lapse to another node.
 * It stops renewing once the lease was lost (taken over), and says so. */
struct lease_keeper;
/* Starts keeping l (copied); NULL when no thread could be started (the holder's own
 * renewals are then all there is). */
struct lease_keeper *leases_keep(struct store *st, const struct lease *l);
/* Whether the keeper found the lease taken over. leases_keep_lost(NULL) is false. */
bool leases_keep_lost(struct lease_keeper *k);
/* Stops and frees the keeper; NULL does nothing. */
void leases_keep_stop(struct lease_keeper *k);

/* Whether a live owner holds lease name. */
int leases_held(struct store_conn *c, const char *self, const char *name, bool *held,
                struct err *err);

#endif
