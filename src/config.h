/* config.h - ferry's settings: built-in defaults, then an optional config file, then
 * FERRY_* environment variables, then command-line flags (each overriding the one
 * before). The option table in config.c is the one place a setting is declared. */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

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
    char *cors_origins;        /* comma list, "*" for any */
    char *jwt_secret;
    long long threads;
    long long shutdown_timeout; /* seconds to wait for in-flight requests */
    bool metrics_auth;          /* require a token on /metrics */
    char *allowed_tables;       /* comma list of synced tables */
    char *conflict_policy;      /* "table=policy,..." */
    char *default_conflict_policy;
    long long max_batch;
    long long tombstone_retention; /* seconds */
    long long purge_interval;      /* seconds; 0 = never */
    bool legacy_auth;              /* seed 004 endpoints need a token */
    char *file_roots;              /* colon-separated folders directory sync may name */
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
};

/* Fills cfg from defaults, file, environment and argv (flags only; positional
 * arguments are the caller's). argv may hold the flags of a subcommand; unknown flags
 * are an error naming them. On failure err says which setting was wrong and where it
 * came from. Release with config_cleanup(). */
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
