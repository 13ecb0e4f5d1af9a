/* config.h - ferry's settings: built-in defaults, then an optional config file, then
 * FERRY_* environment variables, then command-line flags (each overriding the one
 * before). The option table in config.c is the one place a setting is declared. */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "ferry.h"

struct config {
    char *listen; /* HOST:PORT */
    char *data_dir;
    char *db_url; /* NULL means sqlite:DATA_DIR/ferry.db */
    char *config_file;
    long long max_body;   /* bytes */
    long long max_header; /* bytes of request line + headers */
    long long max_json_depth;
    long long rate_limit;      /* requests per minute per credential; 0 = off */
    long long auth_fail_limit; /* failed authentications per minute per address */
    long long token_cache_ttl; /* seconds a checked token is trusted without the database */
    char *cors_origins;        /* comma list, "*" for any */
    char *jwt_secret;
    char *jwt_public_keys; /* colon-separated PEM files */
    char *jwt_jwks_url;
    long long jwt_jwks_timeout;      /* seconds */
    long long jwt_jwks_refresh;      /* seconds */
    long long jwt_jwks_min_interval; /* seconds */
    char *jwt_issuer;
    char *jwt_audience;
    char *jwt_user_claim;
    char *jwt_claims;       /* comma list; NULL: every string or integer claim */
    char *trusted_proxies;  /* comma list of addresses and CIDR ranges */
    char *forwarded_header; /* x-forwarded-for or forwarded */
    long long threads;
    long long shutdown_timeout; /* seconds to wait for in-flight requests */
    bool metrics_auth;          /* require a token on /metrics */
    char *allowed_tables;       /* comma list of synced tables */
    char *conflict_policy;      /* "table=policy,..." */
    char *default_conflict_policy;
    char *sync_rules; /* "table=rule,..." (sync/rules.h) */
    long long max_batch;
    long long tombstone_retention; /* seconds */
    long long purge_interval;      /* seconds; 0 = never */
    bool legacy_auth;              /* cloud-sync-api endpoints need a token */
    char *file_roots;              /* colon-separated folders directory sync may name */
    char *shared_folders;          /* comma-separated file paths every user shares */
    char *backup_roots;            /* colon-separated folders backups may use (repositories) */
    char *backup_password_file;    /* the password of backup repositories; NULL: none */
    long long max_upload;          /* bytes */
    long long max_chunk_size;
    long long upload_expiry; /* seconds */
    long long blob_grace;    /* seconds a young unreferenced blob is spared collection */
    bool sites_enabled;
    char *sites_prefix;
    char *sites_incoming_mode; /* NULL: keep the stored mode */
    char *sites_password;      /* NULL: keep the stored password */
    char *public_url;
    bool sites_allow_private;
    long long sites_verify_interval; /* seconds; 0 = never */
    long long sites_timeout;         /* seconds */
    char *log_level;                 /* debug, info, warn, error */
    char *log_format;                /* json, text */
    char *log_file;                  /* NULL: stderr */
    /* limits against clients that send too much or hold connections (issue 10) */
    long long max_small_body;  /* bytes: PhoenixKit actions and token requests */
    long long max_json_values; /* values in one JSON body */
    long long max_connections; /* open connections in all */
    long long max_connections_per_ip;
    long long idle_timeout; /* seconds a connection may stay silent */
    long long body_timeout; /* seconds a buffered request body may take to arrive */
    /* transport: HTTPS and compression (issue 11) */
    char *tls_cert;              /* PEM certificate chain; NULL: plain HTTP */
    char *tls_key;               /* PEM private key, unencrypted */
    char *tls_min_version;       /* "1.2" or "1.3" */
    bool compress;               /* gzip/zstd answers for clients that ask */
    long long compress_min_size; /* bytes: smaller bodies go out as they are */
    /* cloud storage providers (issue 13): secrets, never echoed in answers or logs */
    char *s3_endpoint;
    char *s3_region;
    char *s3_access_key_id;
    char *s3_secret_access_key;
    char *s3_bucket;
    char *azure_connection_string;
    char *azure_container;
    char *local_cloud_dir;
    long long cloud_part_size; /* bytes of one S3 part or Azure block */
    long long cloud_timeout;   /* seconds to connect, and that a transfer may stall */
    char *locations;           /* comma list of NAME=KIND:TARGET (dbsync/locations.h) */
    /* webhook deliveries (webhooks/) */
    long long webhook_retry_base;    /* ms: the first retry's delay */
    long long webhook_retry_max;     /* ms: the longest delay between attempts */
    long long webhook_timeout;       /* seconds one delivery attempt may take */
    long long webhook_disable_after; /* consecutive failed attempts that disable a subscription */
    bool webhook_allow_private;
    char *blob_store;    /* "local" or "s3://bucket/prefix" */
    char *blob_download; /* "proxy" or "redirect" */
};

/* A command line, split by config_parse_args: the command's own options (in order),
 * the settings given as flags (in order), the positional arguments, and --help. The
 * values point into the caller's argv. */
struct config_hit {
    int val;          /* the command's struct option val */
    const char *name; /* its long name */
    const char *value;
};
struct config_flag {
    size_t index; /* of the setting */
    const char *value;
};
struct config_args {
    struct config_hit *own;
    size_t n_own;
    struct config_flag *flags;
    size_t n_flags;
    char **positional;
    size_t n_positional;
    bool help; /* --help or -h */
};

/* Parses argv (the arguments after the command's name) with getopt_long against the
 * command's own options (own[0..n_own), vals below 1000, names unlike any setting's)
 * and every setting, as --name value or --name=value; a bool setting may stand alone.
 * Options and positional arguments may mix; "--" ends the options. On failure err
 * names the unknown option or the one missing its value (a usage error). Release a
 * parsed *a with config_args_cleanup(). */
int config_parse_args(int argc, char **argv, const struct option *own, size_t n_own,
                      struct config_args *a, struct err *err);
void config_args_cleanup(struct config_args *a);

/* Fills cfg from defaults, the config file (FERRY_CONFIG or --config), the FERRY_*
 * environment and the flags in a, each overriding the one before, and checks the
 * result. On failure err says which setting was wrong and where it came from. Release
 * cfg with config_cleanup() whatever the result. */
int config_load_args(struct config *cfg, const struct config_args *a, struct err *err);

/* The same from argv holding only settings' flags (anything else is an error). */
int config_load(struct config *cfg, int argc, char **argv, struct err *err);
void config_cleanup(struct config *cfg);

/* Parses one "key = value" file into cfg (lines starting with # are comments). */
int config_load_file(struct config *cfg, const char *path, struct err *err);

/* Sets one option by its flag name (without the leading dashes). */
int config_set(struct config *cfg, const char *name, const char *value, const char *origin,
               struct err *err);

/* The effective database URL (db_url or the SQLite default). Caller frees. */
char *config_db_url(const struct config *cfg);

/* Splits listen into host and port. */
int config_listen_addr(const struct config *cfg, char *host, size_t host_len, int *port,
                       struct err *err);

/* Prints the options with their environment names and defaults. */
void config_print_help(FILE *out);

#endif
