/* locations.h - named locations from the configuration (--location NAME=KIND:TARGET): the
 * folders, databases and cloud containers that sessions and database sync may name, and
 * the allowlist database sync checks every connection string against. */
#ifndef FERRY_LOCATIONS_H
#define FERRY_LOCATIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry.h"

enum location_kind {
    LOC_FOLDER,
    LOC_SQLITE,
    LOC_POSTGRES,
    LOC_S3,
    LOC_AZURE,
    LOC_LOCAL,
};

struct location {
    char *name;
    enum location_kind kind;
    char *target; /* folder path, bucket/prefix, container/prefix, or a store URL */
};

struct locations {
    struct location *items;
    size_t n;
};

/* Parses a comma-separated list of NAME=KIND:TARGET entries. On failure *out is empty and
 * err names the bad entry (a database entry is named by its location name only, since
 * its URL may hold a password). Release with locations_cleanup. */
int locations_parse(const char *spec, struct locations *out, struct err *err);
void locations_cleanup(struct locations *l);

/* The location called name, or NULL. */
const struct location *locations_find(const struct locations *l, const char *name);

const char *locations_kind_name(enum location_kind kind);
bool locations_is_database(enum location_kind kind);
bool locations_is_cloud(enum location_kind kind);

/* Resolves a database connection string against the allowlist: a location name,
 * sqlite:PATH, postgres://..., or the ADO.NET/Npgsql form (Host=...;Database=...;
 * Username=...;Password=...; Server=... for Host; Data Source=PATH for SQLite). The
 * database must be a configured sqlite or postgres location (same file, or same host,
 * port and database); *loc is that location, whose URL (with its credentials) is the one
 * to open. ERR_INVALID for a malformed string, ERR_FORBIDDEN for one not configured. */
int locations_resolve_db(const struct locations *l, const char *conn, const struct location **loc,
                         struct err *err);

#endif
