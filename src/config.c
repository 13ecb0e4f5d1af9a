/* config.c - see config.h. */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* OPT_LIST is a colon-separated list: a repeated flag adds to it, while a later source
 * (file, environment, flags) replaces what an earlier one gave. */
enum opt_type { OPT_STR, OPT_INT, OPT_SIZE, OPT_BOOL, OPT_LIST };

struct option_def {
    const char *name; /* flag without dashes, also the config-file key */
    const char *env;
    enum opt_type type;
    size_t offset;
    const char *def;
    const char *help;
};

#define OPT(n, e, t, field, d, h)                                                                  \
    {                                                                                              \
        n, e, t, offsetof(struct config, field), d, h                                              \
    }

static const struct option_def options[] = {
    OPT("listen", "FERRY_LISTEN", OPT_STR, listen, "127.0.0.1:8080", "address to listen on"),
    OPT("data-dir", "FERRY_DATA_DIR", OPT_STR, data_dir, "./ferry-data",
        "folder for the database, blobs and backups"),
    OPT("db", "FERRY_DB", OPT_STR, db_url, NULL,
        "sqlite:PATH or postgres://... (default sqlite:DATA_DIR/ferry.db)"),
    OPT("config", "FERRY_CONFIG", OPT_STR, config_file, NULL, "config file (key = value)"),
    OPT("max-body", "FERRY_MAX_BODY", OPT_SIZE, max_body, "10M", "largest request body"),
    OPT("max-header", "FERRY_MAX_HEADER", OPT_SIZE, max_header, "32K",
        "largest request line plus headers"),
    OPT("max-json-depth", "FERRY_MAX_JSON_DEPTH", OPT_INT, max_json_depth, "32",
        "deepest JSON nesting accepted"),
    OPT("rate-limit", "FERRY_RATE_LIMIT", OPT_INT, rate_limit, "600",
        "requests per minute per credential (0: no limit)"),
    OPT("auth-fail-limit", "FERRY_AUTH_FAIL_LIMIT", OPT_INT, auth_fail_limit, "30",
        "failed authentications per minute per client address"),
    OPT("cors-origins", "FERRY_CORS_ORIGINS", OPT_STR, cors_origins, NULL,
        "comma-separated origins allowed by CORS, or *"),
    OPT("jwt-secret", "FERRY_JWT_SECRET", OPT_STR, jwt_secret, NULL,
        "HS256 secret; when set, JWTs are accepted as user credentials"),
    OPT("threads", "FERRY_THREADS", OPT_INT, threads, "8", "HTTP worker threads"),
    OPT("shutdown-timeout", "FERRY_SHUTDOWN_TIMEOUT", OPT_INT, shutdown_timeout, "10",
        "seconds to let in-flight requests finish on shutdown"),
    OPT("metrics-auth", "FERRY_METRICS_AUTH", OPT_BOOL, metrics_auth, "false",
        "require a token on /metrics"),
    OPT("allowed-tables", "FERRY_ALLOWED_TABLES", OPT_STR, allowed_tables, NULL,
        "comma-separated tables to sync (seed 004's ALLOWED_TABLES is read too)"),
    OPT("conflict-policy", "FERRY_CONFLICT_POLICY", OPT_STR, conflict_policy, NULL,
        "per-table policies, e.g. notes=merge,orders=manual"),
    OPT("default-conflict-policy", "FERRY_DEFAULT_CONFLICT_POLICY", OPT_STR,
        default_conflict_policy, "overwrite", "overwrite, skip, merge or manual"),
    OPT("max-batch", "FERRY_MAX_BATCH", OPT_INT, max_batch, "5000",
        "most operations in one pushed batch"),
    OPT("tombstone-retention", "FERRY_TOMBSTONE_RETENTION", OPT_INT, tombstone_retention, "2592000",
        "seconds a tombstone is kept for devices that have not acknowledged it"),
    OPT("purge-interval", "FERRY_PURGE_INTERVAL", OPT_INT, purge_interval, "300",
        "seconds between tombstone purges (0: never)"),
    OPT("file-root", "FERRY_FILE_ROOTS", OPT_LIST, file_roots, NULL,
        "folder that directory sync may name (repeatable; env: colon-separated)"),
    OPT("max-upload", "FERRY_MAX_UPLOAD", OPT_SIZE, max_upload, "10G",
        "largest file an upload may create"),
    OPT("max-chunk-size", "FERRY_MAX_CHUNK_SIZE", OPT_SIZE, max_chunk_size, "64M",
        "largest chunk of a chunked upload"),
    OPT("blob-grace", "FERRY_BLOB_GRACE", OPT_INT, blob_grace, "600",
        "seconds a newly stored blob is kept even when nothing names it yet"),
    OPT("upload-expiry", "FERRY_UPLOAD_EXPIRY", OPT_INT, upload_expiry, "86400",
        "seconds an unfinished upload session is kept"),
    OPT("sites-enabled", "FERRY_SITES_ENABLED", OPT_BOOL, sites_enabled, "true",
        "serve PhoenixKit's site-to-site sync API"),
    OPT("sites-prefix", "FERRY_SITES_PREFIX", OPT_STR, sites_prefix, "/phoenix_kit",
        "path prefix of the site-to-site API ({prefix}/sync/api/...)"),
    OPT("sites-incoming-mode", "FERRY_SITES_INCOMING_MODE", OPT_STR, sites_incoming_mode, NULL,
        "auto_accept, require_approval, require_password or deny_all (default: as stored, "
        "else require_approval)"),
    OPT("sites-password", "FERRY_SITES_PASSWORD", OPT_STR, sites_password, NULL,
        "password remote sites must give in require_password mode (stored scrypt-hashed)"),
    OPT("public-url", "FERRY_PUBLIC_URL", OPT_STR, public_url, NULL,
        "this server's URL as other sites reach it (default http://LISTEN)"),
    OPT("sites-verify-interval", "FERRY_SITES_VERIFY_INTERVAL", OPT_INT, sites_verify_interval,
        "300", "seconds between checks that remote sites still have their connections (0: never)"),
    OPT("sites-timeout", "FERRY_SITES_TIMEOUT", OPT_INT, sites_timeout, "30",
        "seconds an outgoing call to another site may take"),
    OPT("sites-allow-private", "FERRY_SITES_ALLOW_PRIVATE", OPT_BOOL, sites_allow_private, "false",
        "let outgoing site calls reach private and loopback addresses"),
    OPT("legacy-auth", "FERRY_LEGACY_AUTH", OPT_BOOL, legacy_auth, "true",
        "require a token on seed 004's /sync endpoints (false: open, for trusted networks)"),
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static const struct option_def *find_option(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    return NULL;
}

/* Accepts 123, 10K, 10M, 1G (binary multiples). */
static int parse_size(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return FERRY_ERR;
    long long mult = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        mult = 1024, end++;
        break;
    case 'M':
        mult = 1024 * 1024, end++;
        break;
    case 'G':
        mult = 1024LL * 1024 * 1024, end++;
        break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || v > (1LL << 50) / mult)
        return FERRY_ERR;
    *out = v * mult;
    return FERRY_OK;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on"))
        *out = true;
    else if (!strcmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no") ||
             !strcasecmp(s, "off"))
        *out = false;
    else
        return FERRY_ERR;
    return FERRY_OK;
}

static int apply(struct config *cfg, const struct option_def *o, const char *value,
                 const char *origin, struct err *err)
{
    char *field = (char *)cfg + o->offset;
    char *end;
    switch (o->type) {
    case OPT_LIST:
    case OPT_STR:
        free(*(char **)field);
        *(char **)field = value ? xstrdup(value) : NULL;
        return FERRY_OK;
    case OPT_INT:
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < 0)
            return err_set(err, ERR_INVALID, "%s: %s must be a whole number >= 0, not '%s'", origin,
                           o->name, value);
        *(long long *)field = v;
        return FERRY_OK;
    case OPT_SIZE:
        if (parse_size(value, (long long *)field) != FERRY_OK)
            return err_set(err, ERR_INVALID, "%s: %s must be a size like 512K or 10M, not '%s'",
                           origin, o->name, value);
        return FERRY_OK;
    case OPT_BOOL:
        if (parse_bool(value, (bool *)field) != FERRY_OK)
            return err_set(err, ERR_INVALID, "%s: %s must be true or false, not '%s'", origin,
                           o->name, value);
        return FERRY_OK;
    }
    return FERRY_ERR;
}

int config_set(struct config *cfg, const char *name, const char *value, const char *origin,
               struct err *err)
{
    const struct option_def *o = find_option(name);
    if (!o)
        return err_set(err, ERR_INVALID, "%s: unknown setting '%s'", origin, name);
    return apply(cfg, o, value, origin, err);
}

static void set_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].def)
            apply(cfg, &options[i], options[i].def, "default", NULL);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

int config_load_file(struct config *cfg, const char *path, struct err *err)
{
    FILE *f = fopen(path, "r");
    char line[4096], origin[512];
    int lineno = 0, rc = FERRY_OK;

    if (!f)
        return err_set(err, ERR_INVALID, "cannot read config file %s: %s", path, strerror(errno));
    while (rc == FERRY_OK && fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
            rc = err_set(err, ERR_INVALID, "%s:%d: line is longer than %zu bytes", path, lineno,
                         sizeof(line) - 2);
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
        if (!eq) {
            rc = err_set(err, ERR_INVALID, "%s: expected 'key = value'", origin);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        if (strcmp(key, "config") == 0)
            rc = err_set(err, ERR_INVALID, "%s: a config file cannot name another", origin);
        else
            rc = config_set(cfg, key, value, origin, err);
    }
    fclose(f);
    return rc;
}

/* Names other programs use for the same setting, read when ferry's own is unset. */
static const char *legacy_env(const char *env)
{
    return strcmp(env, "FERRY_ALLOWED_TABLES") == 0 ? "ALLOWED_TABLES" : NULL;
}

static int apply_env(struct config *cfg, struct err *err)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *v = getenv(options[i].env);
        const char *alias = legacy_env(options[i].env);
        if ((!v || !*v) && alias)
            v = getenv(alias);
        if (v && *v && apply(cfg, &options[i], v, options[i].env, err) != FERRY_OK)
            return FERRY_ERR;
    }
    return FERRY_OK;
}

/* Walks argv for --name value / --name=value; a bool flag may stand alone. When only
 * is non-NULL just that option is applied (used to find --config first). */
static int apply_flags(struct config *cfg, int argc, char **argv, const char *only, struct err *err)
{
    bool seen[N_OPTIONS] = {0};
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0)
            return err_set(err, ERR_INVALID, "unexpected argument '%s'", arg);
        char name[64];
        const char *value = NULL, *eq = strchr(arg + 2, '=');
        size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (len >= sizeof(name))
            return err_set(err, ERR_INVALID, "unknown option '%s'", arg);
        memcpy(name, arg + 2, len);
        name[len] = '\0';
        const struct option_def *o = find_option(name);
        if (!o)
            return err_set(err, ERR_INVALID, "unknown option '--%s' (see --help)", name);
        if (eq)
            value = eq + 1;
        else if (o->type == OPT_BOOL && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0))
            value = "true";
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return err_set(err, ERR_INVALID, "option '--%s' needs a value", name);
        if (only && strcmp(only, name) != 0)
            continue;
        size_t index = (size_t)(o - options);
        char **list = (char **)((char *)cfg + o->offset);
        if (o->type == OPT_LIST && seen[index] && *list) { /* a repeated flag adds */
            char *joined = xasprintf("%s:%s", *list, value);
            free(*list);
            *list = joined;
            continue;
        }
        seen[index] = true;
        if (apply(cfg, o, value, "command line", err) != FERRY_OK)
            return FERRY_ERR;
    }
    return FERRY_OK;
}

int config_load(struct config *cfg, int argc, char **argv, struct err *err)
{
    set_defaults(cfg);
    /* The file's name may come from a flag or the environment, so find it first. */
    const char *env_file = getenv("FERRY_CONFIG");
    if (env_file && *env_file)
        apply(cfg, find_option("config"), env_file, "FERRY_CONFIG", NULL);
    if (apply_flags(cfg, argc, argv, "config", err) != FERRY_OK)
        return FERRY_ERR;
    if (cfg->config_file && config_load_file(cfg, cfg->config_file, err) != FERRY_OK)
        return FERRY_ERR;
    if (apply_env(cfg, err) != FERRY_OK || apply_flags(cfg, argc, argv, NULL, err) != FERRY_OK)
        return FERRY_ERR;
    if (cfg->max_json_depth < 1)
        return err_set(err, ERR_INVALID, "max-json-depth must be at least 1");
    if (cfg->threads < 1 || cfg->threads > 256)
        return err_set(err, ERR_INVALID, "threads must be between 1 and 256");
    if (cfg->max_header < 1024)
        return err_set(err, ERR_INVALID, "max-header must be at least 1K");
    if (cfg->sites_timeout < 1)
        return err_set(err, ERR_INVALID, "sites-timeout must be at least 1 second");
    return FERRY_OK;
}

void config_cleanup(struct config *cfg)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].type == OPT_STR || options[i].type == OPT_LIST) {
            char **field = (char **)((char *)cfg + options[i].offset);
            free(*field);
            *field = NULL;
        }
}

char *config_db_url(const struct config *cfg)
{
    if (cfg->db_url && *cfg->db_url)
        return xstrdup(cfg->db_url);
    return xasprintf("sqlite:%s/ferry.db", cfg->data_dir);
}

int config_listen_addr(const struct config *cfg, char *host, size_t host_len, int *port,
                       struct err *err)
{
    const char *colon = strrchr(cfg->listen, ':');
    char *end;
    if (!colon || colon == cfg->listen)
        return err_set(err, ERR_INVALID, "listen must be HOST:PORT, not '%s'", cfg->listen);
    long p = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p < 0 || p > 65535)
        return err_set(err, ERR_INVALID, "listen port must be 0-65535, not '%s'", colon + 1);
    const char *h = cfg->listen;
    size_t len = (size_t)(colon - h);
    if (h[0] == '[' && colon[-1] == ']') { /* [::1]:8080 */
        h++;
        len -= 2;
    }
    if (len + 1 > host_len)
        return err_set(err, ERR_INVALID, "listen host is too long");
    memcpy(host, h, len);
    host[len] = '\0';
    *port = (int)p;
    return FERRY_OK;
}

void config_print_help(FILE *out)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option_def *o = &options[i];
        fprintf(out, "  --%-18s %s\n  %-20s (env %s", o->name, o->help, "", o->env);
        if (o->def)
            fprintf(out, ", default %s", o->def);
        fprintf(out, ")\n");
    }
}
