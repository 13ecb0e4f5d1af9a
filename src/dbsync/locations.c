/* locations.c - see locations.h. Connection strings are parsed here by hand: they are
 * short, and the one library that parses them (libpq's PQconninfoParse) knows neither
 * ADO.NET's key names nor SQLite. */
#include <ctype.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dbsync/locations.h"

#define MAX_LOCATIONS 256
#define MAX_CONN_STRING 2048

static const char *const kind_names[] = {"folder", "sqlite", "postgres", "s3", "azure", "local"};

const char *locations_kind_name(enum location_kind kind)
{
    return kind_names[kind];
}

bool locations_is_database(enum location_kind kind)
{
    return kind == LOC_SQLITE || kind == LOC_POSTGRES;
}

bool locations_is_cloud(enum location_kind kind)
{
    return kind == LOC_S3 || kind == LOC_AZURE || kind == LOC_LOCAL;
}

void locations_cleanup(struct locations *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].name);
        free(l->items[i].target);
    }
    free(l->items);
    memset(l, 0, sizeof(*l));
}

const struct location *locations_find(const struct locations *l, const char *name)
{
    for (size_t i = 0; name && i < l->n; i++)
        if (!strcmp(l->items[i].name, name))
            return &l->items[i];
    return NULL;
}

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return false;
    return true;
}

/* One NAME=KIND:TARGET entry (entry is trimmed and non-empty). */
static int parse_entry(const char *entry, struct location *loc, struct err *err)
{
    const char *eq = strchr(entry, '='), *colon = eq ? strchr(eq + 1, ':') : NULL;
    if (!eq || !valid_name(entry, (size_t)(eq - entry)))
        return err_set(err, ERR_INVALID,
                       "location must be NAME=KIND:TARGET with a name of letters, digits, "
                       "'_', '-' or '.'");
    loc->name = xstrndup(entry, (size_t)(eq - entry));
    size_t kind_len = colon ? (size_t)(colon - eq - 1) : 0;
    for (size_t k = 0; k < sizeof(kind_names) / sizeof(kind_names[0]); k++)
        if (strlen(kind_names[k]) == kind_len && !strncmp(eq + 1, kind_names[k], kind_len))
            loc->kind = (enum location_kind)k, kind_len = 0;
    if (!strncmp(eq + 1, "postgresql:", 11))
        loc->kind = LOC_POSTGRES, kind_len = 0;
    if (!colon || kind_len)
        return err_set(err, ERR_INVALID,
                       "location '%s': kind must be folder, sqlite, postgres, s3, azure or local",
                       loc->name);
    const char *target = colon + 1;
    if (!*target)
        return err_set(err, ERR_INVALID, "location '%s' names no target", loc->name);
    if ((loc->kind == LOC_FOLDER || loc->kind == LOC_LOCAL) && target[0] != '/')
        return err_set(err, ERR_INVALID, "location '%s': the folder must be an absolute path",
                       loc->name);
    if (loc->kind == LOC_POSTGRES && strncmp(target, "//", 2) != 0)
        return err_set(err, ERR_INVALID, "location '%s': a postgres location is postgres://...",
                       loc->name);
    /* a database location keeps its whole store URL (sqlite:PATH, postgres://...) */
    loc->target = locations_is_database(loc->kind) ? xstrdup(eq + 1) : xstrdup(target);
    return FERRY_OK;
}

int locations_parse(const char *spec, struct locations *out, struct err *err)
{
    char *copy = xstrdup(spec ? spec : ""), *save = NULL;
    int rc = FERRY_OK;
    memset(out, 0, sizeof(*out));
    for (char *e = strtok_r(copy, ",", &save); e && rc == FERRY_OK;
         e = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*e))
            e++;
        char *end = e + strlen(e);
        while (end > e && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (!*e)
            continue;
        if (out->n == MAX_LOCATIONS) {
            rc = err_set(err, ERR_INVALID, "more than %d locations", MAX_LOCATIONS);
            break;
        }
        out->items = xrealloc(out->items, (out->n + 1) * sizeof(*out->items));
        struct location *loc = &out->items[out->n++];
        memset(loc, 0, sizeof(*loc));
        rc = parse_entry(e, loc, err);
        if (rc == FERRY_OK &&
            locations_find(&(struct locations){out->items, out->n - 1}, loc->name))
            rc = err_set(err, ERR_INVALID, "location '%s' is named twice", loc->name);
    }
    free(copy);
    if (rc != FERRY_OK)
        locations_cleanup(out);
    return rc;
}

/* --- connection strings ---------------------------------------------------------------- */

/* What identifies a database for the allowlist. */
struct db_identity {
    enum location_kind kind;
    char path[PATH_MAX]; /* SQLite: the file, resolved as far as it exists */
    char host[256], port[16], dbname[256];
};

static void sqlite_identity(const char *path, struct db_identity *id)
{
    char dir[PATH_MAX], base[PATH_MAX], real[PATH_MAX];
    id->kind = LOC_SQLITE;
    if (realpath(path, id->path))
        return;
    snprintf(dir, sizeof(dir), "%s", path);
    snprintf(base, sizeof(base), "%s", path);
    /* a file not created yet: its folder resolved, its name as given */
    if (realpath(dirname(dir), real) && strlen(real) + strlen(basename(base)) + 2 <= PATH_MAX)
        snprintf(id->path, sizeof(id->path), "%.*s/%s", (int)(PATH_MAX / 2), real, basename(base));
    else
        snprintf(id->path, sizeof(id->path), "%s", path);
}

/* Loopback and socket directories are one host: the same server, reached two ways. */
static void set_host(struct db_identity *id, const char *host, size_t len)
{
    snprintf(id->host, sizeof(id->host), "%.*s", (int)len, host);
    if (!*id->host || *id->host == '/' || !strcmp(id->host, "127.0.0.1") ||
        !strcmp(id->host, "::1") || !strcmp(id->host, "[::1]"))
        snprintf(id->host, sizeof(id->host), "localhost");
    for (char *p = id->host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

/* postgres://[user[:password]@][host][:port][/dbname][?...] */
static void url_identity(const char *url, struct db_identity *id)
{
    const char *s = strstr(url, "://") + 3, *at = strchr(s, '@'), *slash;
    id->kind = LOC_POSTGRES;
    if (at && (!strchr(s, '/') || at < strchr(s, '/')))
        s = at + 1;
    size_t hostport = strcspn(s, "/?");
    const char *colon = memchr(s, ']', hostport) ? memchr(s, ']', hostport) + 1 : s;
    colon = memchr(colon, ':', hostport - (size_t)(colon - s));
    set_host(id, s, colon ? (size_t)(colon - s) : hostport);
    snprintf(id->port, sizeof(id->port), "%.*s", colon ? (int)(s + hostport - colon - 1) : 0,
             colon ? colon + 1 : "");
    slash = s[hostport] == '/' ? s + hostport + 1 : NULL;
    if (slash)
        snprintf(id->dbname, sizeof(id->dbname), "%.*s", (int)strcspn(slash, "?"), slash);
}

static bool key_is(const char *key, size_t len, const char *const *names)
{
    for (; *names; names++)
        if (strlen(*names) == len && !strncasecmp(key, *names, len))
            return true;
    return false;
}

/* Host=...;Port=...;Database=...;Username=...;Password=... (ADO.NET, Npgsql); Server is
 * Host; Data Source names an SQLite file. Credentials are not needed: the configured
 * location's own are used. */
static int keyvalue_identity(const char *conn, struct db_identity *id, struct err *err)
{
    static const char *const host_keys[] = {"host", "server", "address", "addr", NULL};
    static const char *const db_keys[] = {"database", "initial catalog", "dbname", NULL};
    static const char *const file_keys[] = {"data source", "datasource", "filename", NULL};
    static const char *const port_keys[] = {"port", NULL};
    bool any = false;
    for (const char *p = conn; *p;) {
        size_t len = strcspn(p, ";"), key_len;
        const char *eq = memchr(p, '=', len);
        while (len && isspace((unsigned char)*p))
            p++, len--;
        if (len && !eq)
            return err_set(err, ERR_INVALID, "connection string: expected key=value pairs");
        if (len) {
            key_len = (size_t)(eq - p);
            while (key_len && isspace((unsigned char)p[key_len - 1]))
                key_len--;
            const char *v = eq + 1, *v_end = p + len;
            while (v < v_end && isspace((unsigned char)*v))
                v++;
            while (v_end > v && isspace((unsigned char)v_end[-1]))
                v_end--;
            int vlen = (int)(v_end - v);
            if (key_is(p, key_len, host_keys))
                set_host(id, v, (size_t)vlen), any = true;
            else if (key_is(p, key_len, db_keys))
                snprintf(id->dbname, sizeof(id->dbname), "%.*s", vlen, v);
            else if (key_is(p, key_len, port_keys))
                snprintf(id->port, sizeof(id->port), "%.*s", vlen, v);
            else if (key_is(p, key_len, file_keys)) {
                char path[PATH_MAX];
                snprintf(path, sizeof(path), "%.*s", vlen, v);
                sqlite_identity(path, id);
                return FERRY_OK;
            }
        }
        p += len + (p[len] == ';');
    }
    if (!any || !*id->dbname)
        return err_set(err, ERR_INVALID,
                       "connection string names no database: give Host (or Server) and Database, "
                       "sqlite:PATH, postgres://... or a configured location name");
    id->kind = LOC_POSTGRES;
    return FERRY_OK;
}

static int identity_of(const char *conn, struct db_identity *id, struct err *err)
{
    memset(id, 0, sizeof(*id));
    if (!strncmp(conn, "sqlite:", 7)) {
        const char *path = conn + 7 + (strncmp(conn + 7, "//", 2) ? 0 : 2);
        if (!*path)
            return err_set(err, ERR_INVALID, "connection string sqlite: names no file");
        sqlite_identity(path, id);
    } else if (!strncmp(conn, "postgres://", 11) || !strncmp(conn, "postgresql://", 13)) {
        url_identity(conn, id);
    } else if (strchr(conn, '=')) {
        if (keyvalue_identity(conn, id, err) != FERRY_OK)
            return FERRY_ERR;
    } else {
        return err_set(err, ERR_INVALID,
                       "connection string must be a configured location name, sqlite:PATH, "
                       "postgres://... or Host=...;Database=...");
    }
    if (id->kind == LOC_POSTGRES && !*id->port)
        snprintf(id->port, sizeof(id->port), "5432");
    if (id->kind == LOC_POSTGRES && !*id->host)
        snprintf(id->host, sizeof(id->host), "localhost");
    return FERRY_OK;
}

static bool same_db(const struct db_identity *a, const struct db_identity *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == LOC_SQLITE)
        return !strcmp(a->path, b->path);
    return !strcmp(a->host, b->host) && !strcmp(a->port, b->port) && !strcmp(a->dbname, b->dbname);
}

int locations_resolve_db(const struct locations *l, const char *conn, const struct location **loc,
                         struct err *err)
{
    struct db_identity want, have;
    const struct location *named = locations_find(l, conn);
    *loc = NULL;
    if (named) {
        if (!locations_is_database(named->kind))
            return err_set(err, ERR_INVALID, "location '%s' is a %s, not a database", named->name,
                           locations_kind_name(named->kind));
        *loc = named;
        return FERRY_OK;
    }
    if (strlen(conn) > MAX_CONN_STRING)
        return err_set(err, ERR_INVALID, "connection string is longer than %d bytes",
                       MAX_CONN_STRING);
    if (identity_of(conn, &want, err) != FERRY_OK)
        return FERRY_ERR;
    for (size_t i = 0; i < l->n; i++)
        if (locations_is_database(l->items[i].kind) &&
            identity_of(l->items[i].target, &have, NULL) == FERRY_OK && same_db(&want, &have)) {
            *loc = &l->items[i];
            return FERRY_OK;
        }
    /* name the database, never the string: it may hold a password */
    if (want.kind == LOC_SQLITE)
        return err_set(err, ERR_FORBIDDEN,
                       "the database %s is not a configured location (--location)", want.path);
    return err_set(err, ERR_FORBIDDEN,
                   "the database %s on %s:%s is not a configured location (--location)",
                   want.dbname, want.host, want.port);
}
