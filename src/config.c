/* config.c - see config.h. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dbsync/locations.h"
#include "util/log.h"

/* OPT_LIST is a colon-separated list, OPT_CSV a comma-separated one (its items may hold
 * colons): a repeated flag adds to it, while a later source (file, environment, flags)
 * replaces what an earlier one gave. OPT_MS is a duration kept in milliseconds: 250ms, 5s,
 * 30m, 10h (a bare number is seconds). */
enum opt_type { OPT_STR, OPT_INT, OPT_SIZE, OPT_BOOL, OPT_LIST, OPT_CSV, OPT_MS };

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
    OPT("token-cache-ttl", "FERRY_TOKEN_CACHE_TTL", OPT_INT, token_cache_ttl, "5",
        "seconds a checked token is trusted without asking the database (0: always ask)"),
    OPT("cors-origins", "FERRY_CORS_ORIGINS", OPT_STR, cors_origins, NULL,
        "comma-separated origins allowed by CORS, or *"),
    OPT("jwt-secret", "FERRY_JWT_SECRET", OPT_STR, jwt_secret, NULL,
        "HS256 secret; when set, JWTs are accepted as user credentials"),
    OPT("jwt-public-key", "FERRY_JWT_PUBLIC_KEYS", OPT_LIST, jwt_public_keys, NULL,
        "PEM public key (RSA, EC P-256 or Ed25519) JWTs may be signed with (repeatable; env: "
        "colon-separated)"),
    OPT("jwt-jwks-url", "FERRY_JWT_JWKS_URL", OPT_STR, jwt_jwks_url, NULL,
        "identity provider's JWK Set URL; its keys verify RS256, ES256 and EdDSA JWTs"),
    OPT("jwt-jwks-timeout", "FERRY_JWT_JWKS_TIMEOUT", OPT_INT, jwt_jwks_timeout, "5",
        "seconds one fetch of the JWK Set may take"),
    OPT("jwt-jwks-refresh", "FERRY_JWT_JWKS_REFRESH", OPT_INT, jwt_jwks_refresh, "3600",
        "seconds between scheduled fetches of the JWK Set"),
    OPT("jwt-jwks-min-interval", "FERRY_JWT_JWKS_MIN_INTERVAL", OPT_INT, jwt_jwks_min_interval,
        "30", "fewest seconds between fetches asked for by unknown key ids (and retries)"),
    OPT("jwt-issuer", "FERRY_JWT_ISSUER", OPT_STR, jwt_issuer, NULL,
        "when set, a JWT's iss must equal it"),
    OPT("jwt-audience", "FERRY_JWT_AUDIENCE", OPT_STR, jwt_audience, NULL,
        "when set, a JWT's aud must name it"),
    OPT("jwt-user-claim", "FERRY_JWT_USER_CLAIM", OPT_STR, jwt_user_claim, "sub",
        "the JWT claim that holds the user id"),
    OPT("jwt-claims", "FERRY_JWT_CLAIMS", OPT_STR, jwt_claims, NULL,
        "comma-separated JWT claims sync rules may use (default: every string or integer claim)"),
    OPT("trusted-proxies", "FERRY_TRUSTED_PROXIES", OPT_STR, trusted_proxies, NULL,
        "comma-separated addresses and CIDR ranges of proxies whose forwarded-header is believed"),
    OPT("forwarded-header", "FERRY_FORWARDED_HEADER", OPT_STR, forwarded_header, "x-forwarded-for",
        "the header trusted proxies name the client in: x-forwarded-for or forwarded (RFC 7239)"),
    OPT("threads", "FERRY_THREADS", OPT_INT, threads, "8", "HTTP worker threads"),
    OPT("shutdown-timeout", "FERRY_SHUTDOWN_TIMEOUT", OPT_INT, shutdown_timeout, "10",
        "seconds to let in-flight requests finish on shutdown"),
    OPT("metrics-auth", "FERRY_METRICS_AUTH", OPT_BOOL, metrics_auth, "false",
        "require a token on /metrics"),
    OPT("allowed-tables", "FERRY_ALLOWED_TABLES", OPT_STR, allowed_tables, NULL,
        "comma-separated tables to sync (cloud-sync-api's ALLOWED_TABLES is read too)"),
    OPT("conflict-policy", "FERRY_CONFLICT_POLICY", OPT_STR, conflict_policy, NULL,
        "per-table policies, e.g. notes=merge,orders=manual"),
    OPT("sync-rule", "FERRY_SYNC_RULES", OPT_CSV, sync_rules, NULL,
        "who reads and writes a table's rows: TABLE=shared|owner:COLUMN|claim:NAME:COLUMN|"
        "read-only (repeatable; env: comma-separated)"),
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
    OPT("shared-folder", "FERRY_SHARED_FOLDERS", OPT_CSV, shared_folders, NULL,
        "file path prefix whose files every user sees and writes (repeatable; env: "
        "comma-separated); other files are private to their user"),
    OPT("backup-root", "FERRY_BACKUP_ROOTS", OPT_LIST, backup_roots, NULL,
        "folder that backup repositories may lie in (repeatable; env: colon-separated)"),
    OPT("backup-password-file", "FERRY_BACKUP_PASSWORD_FILE", OPT_STR, backup_password_file, NULL,
        "file holding the backup repositories' password (else FERRY_BACKUP_PASSWORD)"),
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
        "this server's URL as other sites reach it (default http://LISTEN, https:// with "
        "tls-cert)"),
    OPT("sites-verify-interval", "FERRY_SITES_VERIFY_INTERVAL", OPT_INT, sites_verify_interval,
        "300", "seconds between checks that remote sites still have their connections (0: never)"),
    OPT("sites-timeout", "FERRY_SITES_TIMEOUT", OPT_INT, sites_timeout, "30",
        "seconds an outgoing call to another site may take"),
    OPT("sites-allow-private", "FERRY_SITES_ALLOW_PRIVATE", OPT_BOOL, sites_allow_private, "false",
        "let outgoing site calls reach private and loopback addresses"),
    OPT("legacy-auth", "FERRY_LEGACY_AUTH", OPT_BOOL, legacy_auth, "true",
        "require a token on the cloud-sync-api /sync endpoints (false: open, for trusted "
        "networks)"),
    OPT("log-level", "FERRY_LOG_LEVEL", OPT_STR, log_level, "info",
        "least important log lines written: debug, info, warn or error"),
    OPT("log-format", "FERRY_LOG_FORMAT", OPT_STR, log_format, "json",
        "json (one object per line) or text (one human-readable line)"),
    OPT("log-file", "FERRY_LOG_FILE", OPT_STR, log_file, NULL,
        "file the log is appended to; SIGHUP reopens it (default: stderr)"),
    /* limits against clients that send too much or hold connections (issue 10) */
    OPT("max-small-body", "FERRY_MAX_SMALL_BODY", OPT_SIZE, max_small_body, "64K",
        "largest body of a PhoenixKit action or token request (read before any credential)"),
    OPT("max-json-values", "FERRY_MAX_JSON_VALUES", OPT_INT, max_json_values, "500000",
        "most values (objects, arrays, strings, numbers...) in one JSON body"),
    OPT("max-connections", "FERRY_MAX_CONNECTIONS", OPT_INT, max_connections, "10000",
        "most open connections (the open-file limit is raised to fit)"),
    OPT("max-connections-per-ip", "FERRY_MAX_CONNECTIONS_PER_IP", OPT_INT, max_connections_per_ip,
        "256", "most open connections from one client address, or one IPv6 /64 (0: no limit)"),
    OPT("idle-timeout", "FERRY_IDLE_TIMEOUT", OPT_INT, idle_timeout, "30",
        "seconds a connection may stay silent (a waiting long-poll does not count)"),
    OPT("body-timeout", "FERRY_BODY_TIMEOUT", OPT_INT, body_timeout, "60",
        "seconds a request head, and a buffered body, may take to arrive (uploads are not "
        "buffered)"),
    /* transport (issue 11) */
    OPT("tls-cert", "FERRY_TLS_CERT", OPT_STR, tls_cert, NULL,
        "PEM certificate (chain) file: serve HTTPS; SIGHUP reloads it (with tls-key)"),
    OPT("tls-key", "FERRY_TLS_KEY", OPT_STR, tls_key, NULL,
        "PEM private key file of tls-cert (unencrypted)"),
    OPT("tls-min-version", "FERRY_TLS_MIN_VERSION", OPT_STR, tls_min_version, "1.2",
        "oldest TLS version accepted: 1.2 or 1.3"),
    OPT("compress", "FERRY_COMPRESS", OPT_BOOL, compress, "true",
        "gzip or zstd answers for clients that send Accept-Encoding"),
    OPT("compress-min-size", "FERRY_COMPRESS_MIN_SIZE", OPT_SIZE, compress_min_size, "1K",
        "smallest answer body worth compressing"),
    /* cloud storage providers (issue 13) */
    OPT("s3-endpoint", "FERRY_S3_ENDPOINT", OPT_STR, s3_endpoint, NULL,
        "URL of the S3-compatible endpoint the /cloud/s3 calls use (e.g. "
        "https://s3.amazonaws.com)"),
    OPT("s3-region", "FERRY_S3_REGION", OPT_STR, s3_region, "us-east-1",
        "region requests to the S3 endpoint are signed for"),
    OPT("s3-access-key-id", "FERRY_S3_ACCESS_KEY_ID", OPT_STR, s3_access_key_id, NULL,
        "S3 access key id"),
    OPT("s3-secret-access-key", "FERRY_S3_SECRET_ACCESS_KEY", OPT_STR, s3_secret_access_key, NULL,
        "S3 secret access key (never shown in answers or logs)"),
    OPT("s3-bucket", "FERRY_S3_BUCKET", OPT_STR, s3_bucket, NULL, "bucket of the /cloud/s3 calls"),
    OPT("azure-connection-string", "FERRY_AZURE_CONNECTION_STRING", OPT_STR,
        azure_connection_string, NULL,
        "Azure Storage connection string (AccountName=...;AccountKey=...;BlobEndpoint=...)"),
    OPT("azure-container", "FERRY_AZURE_CONTAINER", OPT_STR, azure_container, NULL,
        "blob container of the /cloud/azure calls"),
    OPT("local-cloud-dir", "FERRY_LOCAL_CLOUD_DIR", OPT_STR, local_cloud_dir, NULL,
        "folder the /cloud/local calls store files in"),
    OPT("cloud-part-size", "FERRY_CLOUD_PART_SIZE", OPT_SIZE, cloud_part_size, "8M",
        "part of a multipart S3 upload or block of an Azure upload (S3 needs at least 5M)"),
    OPT("cloud-timeout", "FERRY_CLOUD_TIMEOUT", OPT_INT, cloud_timeout, "30",
        "seconds a cloud provider may take to connect, or stall during a transfer"),
    /* named locations for sessions and database sync (issue 13) */
    OPT("location", "FERRY_LOCATIONS", OPT_CSV, locations, NULL,
        "NAME=KIND:TARGET, KIND folder, sqlite, postgres, s3, azure or local (repeatable; "
        "env: comma-separated)"),
    /* webhook deliveries; the defaults follow the Standard Webhooks guidance: first retry
     * after seconds, the longest gap hours */
    OPT("webhook-retry-base", "FERRY_WEBHOOK_RETRY_BASE", OPT_MS, webhook_retry_base, "5s",
        "delay before a failed webhook delivery's first retry; doubles each time (250ms, 5s)"),
    OPT("webhook-retry-max", "FERRY_WEBHOOK_RETRY_MAX", OPT_MS, webhook_retry_max, "10h",
        "longest delay between webhook delivery attempts"),
    OPT("webhook-timeout", "FERRY_WEBHOOK_TIMEOUT", OPT_INT, webhook_timeout, "15",
        "seconds one webhook delivery attempt may take"),
    OPT("webhook-disable-after", "FERRY_WEBHOOK_DISABLE_AFTER", OPT_INT, webhook_disable_after,
        "20", "consecutive failed attempts after which a webhook subscription is disabled"),
    OPT("webhook-allow-private", "FERRY_WEBHOOK_ALLOW_PRIVATE", OPT_BOOL, webhook_allow_private,
        "false", "let webhook deliveries reach private, link-local and loopback addresses"),
    /* stateless nodes (issue 14) */
    OPT("blob-store", "FERRY_BLOB_STORE", OPT_STR, blob_store, "local",
        "where file contents live: local (DATA_DIR/blobs) or s3://bucket/prefix (an "
        "S3-compatible store shared by every node; endpoint and keys from the s3-* settings)"),
    OPT("blob-download", "FERRY_BLOB_DOWNLOAD", OPT_STR, blob_download, "proxy",
        "downloads from an s3:// blob store: proxy (ferry streams the range) or redirect "
        "(307 to a presigned URL)"),
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

/* Accepts 250ms, 5s, 30m, 10h, or a bare number of seconds. */
static int parse_ms(const char *s, long long *out)
{
    static const struct {
        const char *unit;
        long long ms;
    } units[] = {{"ms", 1}, {"", 1000}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return FERRY_ERR;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (!strcmp(end, units[i].unit) && v <= (1LL << 50) / units[i].ms) {
            *out = v * units[i].ms;
            return FERRY_OK;
        }
    return FERRY_ERR;
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
    case OPT_CSV:
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
    case OPT_MS:
        if (parse_ms(value, (long long *)field) != FERRY_OK)
            return err_set(err, ERR_INVALID,
                           "%s: %s must be a duration like 250ms, 5s, 30m or 10h, not '%s'", origin,
                           o->name, value);
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

/* --- the command line ------------------------------------------------------------ */

#define SETTING_VAL 1000 /* getopt_long's val for setting i is SETTING_VAL + i */

/* The long options of a command: its own, every setting, and --help. Caller frees. */
static struct option *long_options(const struct option *own, size_t n_own)
{
    struct option *all = xcalloc(n_own + N_OPTIONS + 2, sizeof(*all));
    if (n_own)
        memcpy(all, own, n_own * sizeof(*own));
    for (size_t i = 0; i < N_OPTIONS; i++)
        all[n_own + i] = (struct option){
            options[i].name, options[i].type == OPT_BOOL ? optional_argument : required_argument,
            NULL, SETTING_VAL + (int)i};
    all[n_own + N_OPTIONS] = (struct option){"help", no_argument, NULL, 'h'};
    return all;
}

static const char *option_name(const struct option *all, int val)
{
    for (const struct option *o = all; o->name; o++)
        if (o->val == val)
            return o->name;
    return "?";
}

/* What getopt_long refused, as a message: an unknown option, or a value given to one
 * that takes none. */
static int refused(const struct option *all, const char *arg, int short_opt, struct err *err)
{
    if (strncmp(arg, "--", 2) != 0) /* for a long option getopt sets optopt to its val */
        return err_set(err, ERR_INVALID, "unknown option '-%c'", short_opt ? short_opt : '?');
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    for (const struct option *o = all; eq && o->name; o++)
        if (strlen(o->name) == len - 2 && !strncmp(o->name, arg + 2, len - 2))
            return err_set(err, ERR_INVALID, "option '--%s' takes no value", o->name);
    return err_set(err, ERR_INVALID, "unknown option '%.*s'", (int)len, arg);
}

/* A bool setting may stand alone (true) or take its value as the next argument when
 * that is not an option. */
static const char *bool_value(int argc, char **argv)
{
    if (optind < argc && argv[optind][0] != '-')
        return argv[optind++];
    return "true";
}

static void record(struct config_args *a, const struct option *all, int val, const char *value)
{
    if (val >= SETTING_VAL) {
        a->flags = xrealloc(a->flags, (a->n_flags + 1) * sizeof(*a->flags));
        a->flags[a->n_flags++] = (struct config_flag){(size_t)(val - SETTING_VAL), value};
    } else {
        a->own = xrealloc(a->own, (a->n_own + 1) * sizeof(*a->own));
        a->own[a->n_own++] = (struct config_hit){val, option_name(all, val), value};
    }
}

void config_args_cleanup(struct config_args *a)
{
    free(a->own);
    free(a->flags);
    free(a->positional);
    memset(a, 0, sizeof(*a));
}

int config_parse_args(int argc, char **argv, const struct option *own, size_t n_own,
                      struct config_args *a, struct err *err)
{
    struct option *all = long_options(own, n_own);
    /* getopt_long wants a program name first, and reorders what it is given */
    char **args = xcalloc((size_t)argc + 2, sizeof(char *));
    int rc = FERRY_ERR, c;
    args[0] = "ferry";
    if (argc > 0)
        memcpy(args + 1, argv, (size_t)argc * sizeof(char *));
    memset(a, 0, sizeof(*a));
    optind = 0; /* glibc: start afresh */
    opterr = 0;
    while ((c = getopt_long(argc + 1, args, ":h", all, NULL)) != -1) {
        if (c == '?') {
            refused(all, args[optind - 1], optopt, err);
            goto out;
        }
        if (c == ':') {
            err_set(err, ERR_INVALID, "option '--%s' needs a value", option_name(all, optopt));
            goto out;
        }
        if (c == 'h')
            a->help = true;
        else if (c >= SETTING_VAL && options[c - SETTING_VAL].type == OPT_BOOL && !optarg)
            record(a, all, c, bool_value(argc + 1, args));
        else
            record(a, all, c, optarg);
    }
    a->positional = xcalloc((size_t)(argc + 1 - optind) + 1, sizeof(char *));
    while (optind < argc + 1)
        a->positional[a->n_positional++] = args[optind++];
    rc = FERRY_OK;
out:
    if (rc != FERRY_OK)
        config_args_cleanup(a);
    free(args);
    free(all);
    return rc;
}

/* Applies the flags in order; a repeated list flag adds to the list. When only is
 * non-NULL just that setting is applied (used to find --config first). */
static int apply_flags(struct config *cfg, const struct config_args *a, const char *only,
                       struct err *err)
{
    bool seen[N_OPTIONS] = {0};
    for (size_t i = 0; i < a->n_flags; i++) {
        const struct option_def *o = &options[a->flags[i].index];
        const char *value = a->flags[i].value;
        if (only && strcmp(only, o->name) != 0)
            continue;
        char **list = (char **)((char *)cfg + o->offset);
        if ((o->type == OPT_LIST || o->type == OPT_CSV) && seen[a->flags[i].index] && *list) {
            char *joined = xasprintf("%s%c%s", *list, o->type == OPT_CSV ? ',' : ':', value);
            free(*list);
            *list = joined;
            continue;
        }
        seen[a->flags[i].index] = true;
        if (apply(cfg, o, value, "command line", err) != FERRY_OK)
            return FERRY_ERR;
    }
    return FERRY_OK;
}

static int check_transport(const struct config *cfg, struct err *err)
{
    bool cert = cfg->tls_cert && *cfg->tls_cert, key = cfg->tls_key && *cfg->tls_key;
    if (cert != key)
        return err_set(err, ERR_INVALID, "tls-cert and tls-key go together: %s is missing",
                       cert ? "tls-key" : "tls-cert");
    if (strcmp(cfg->tls_min_version, "1.2") != 0 && strcmp(cfg->tls_min_version, "1.3") != 0)
        return err_set(err, ERR_INVALID, "tls-min-version must be 1.2 or 1.3, not '%s'",
                       cfg->tls_min_version);
    return FERRY_OK;
}

static int check(const struct config *cfg, struct err *err)
{
    enum log_level level;
    enum log_format format;
    if (cfg->max_json_depth < 1)
        return err_set(err, ERR_INVALID, "max-json-depth must be at least 1");
    if (cfg->token_cache_ttl < 0 || cfg->token_cache_ttl > 3600)
        return err_set(err, ERR_INVALID, "token-cache-ttl must be between 0 and 3600 seconds");
    if (cfg->threads < 1 || cfg->threads > 256)
        return err_set(err, ERR_INVALID, "threads must be between 1 and 256");
    if (cfg->max_header < 1024)
        return err_set(err, ERR_INVALID, "max-header must be at least 1K");
    if (cfg->sites_timeout < 1)
        return err_set(err, ERR_INVALID, "sites-timeout must be at least 1 second");
    if (log_parse_level(cfg->log_level, &level) != FERRY_OK)
        return err_set(err, ERR_INVALID, "log-level must be debug, info, warn or error, not '%s'",
                       cfg->log_level);
    if (log_parse_format(cfg->log_format, &format) != FERRY_OK)
        return err_set(err, ERR_INVALID, "log-format must be json or text, not '%s'",
                       cfg->log_format);
    /* a failed fetch is retried after jwt-jwks-min-interval: 0 would be a busy loop */
    if (cfg->jwt_jwks_timeout < 1 || cfg->jwt_jwks_refresh < 1 || cfg->jwt_jwks_min_interval < 1)
        return err_set(err, ERR_INVALID,
                       "jwt-jwks-timeout, jwt-jwks-refresh and jwt-jwks-min-interval must be at "
                       "least 1");
    if (cfg->max_connections < 16 || cfg->max_json_values < 1 || cfg->idle_timeout < 1 ||
        cfg->body_timeout < 1)
        return err_set(err, ERR_INVALID,
                       "max-connections must be at least 16; max-json-values, "
                       "idle-timeout and body-timeout at least 1");
    if (cfg->webhook_retry_base < 1 || cfg->webhook_retry_max < cfg->webhook_retry_base ||
        cfg->webhook_timeout < 1 || cfg->webhook_disable_after < 1)
        return err_set(err, ERR_INVALID,
                       "webhook-retry-base must be above 0 and at most webhook-retry-max; "
                       "webhook-timeout and webhook-disable-after at least 1");
    if (cfg->cloud_part_size < 64 * 1024 || cfg->cloud_part_size > 4000LL * 1024 * 1024 ||
        cfg->cloud_timeout < 1)
        return err_set(err, ERR_INVALID,
                       "cloud-part-size must be between 64K and 4000M, cloud-timeout at least 1");
    struct locations locs;
    if (locations_parse(cfg->locations, &locs, err) != FERRY_OK)
        return FERRY_ERR;
    locations_cleanup(&locs);
    return check_transport(cfg, err);
}

int config_load_args(struct config *cfg, const struct config_args *a, struct err *err)
{
    set_defaults(cfg);
    /* The file's name may come from a flag or the environment, so find it first. */
    const char *env_file = getenv("FERRY_CONFIG");
    if (env_file && *env_file)
        apply(cfg, find_option("config"), env_file, "FERRY_CONFIG", NULL);
    if (apply_flags(cfg, a, "config", err) != FERRY_OK)
        return FERRY_ERR;
    if (cfg->config_file && config_load_file(cfg, cfg->config_file, err) != FERRY_OK)
        return FERRY_ERR;
    if (apply_env(cfg, err) != FERRY_OK || apply_flags(cfg, a, NULL, err) != FERRY_OK)
        return FERRY_ERR;
    return check(cfg, err);
}

int config_load(struct config *cfg, int argc, char **argv, struct err *err)
{
    struct config_args a;
    int rc = FERRY_ERR;
    memset(cfg, 0, sizeof(*cfg)); /* config_cleanup is safe whatever happens */
    if (config_parse_args(argc, argv, NULL, 0, &a, err) != FERRY_OK)
        return FERRY_ERR;
    if (a.n_positional)
        err_set(err, ERR_INVALID, "unexpected argument '%s'", a.positional[0]);
    else if (a.help)
        err_set(err, ERR_INVALID, "unexpected option '--help'");
    else
        rc = config_load_args(cfg, &a, err);
    config_args_cleanup(&a);
    return rc;
}

void config_cleanup(struct config *cfg)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].type == OPT_STR || options[i].type == OPT_LIST ||
            options[i].type == OPT_CSV) {
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
