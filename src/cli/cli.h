/* cli.h - the ferry subcommands (one file each in cli/) and what they share: the command
 * line parsed once with getopt_long, the exit codes, and opening the store. main.c only
 * dispatches to them. */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "config.h"
#include "ferry.h"
#include "store/store.h"

/* Exit codes, the same for every command. */
enum {
    CLI_OK = 0,
    CLI_FAILED = 1, /* the command ran and failed (database, network, not found, ...) */
    CLI_USAGE = 2,  /* the command line is wrong: unknown option, missing argument, ... */
};

struct cli_command {
    const char *name;
    const char *summary; /* one line for `ferry --help` */
    /* Runs the command on the arguments after its name; returns the exit code. */
    int (*run)(int argc, char **argv);
    /* Prints the command's usage and options (`ferry NAME --help`). */
    void (*usage)(FILE *out);
};

extern const struct cli_command cli_serve;
extern const struct cli_command cli_token;
extern const struct cli_command cli_sites;
extern const struct cli_command cli_merge;
extern const struct cli_command cli_sync;
extern const struct cli_command cli_backup;
extern const struct cli_command cli_login, cli_push, cli_pull, cli_conflicts, cli_resolve;
extern const struct cli_command cli_download, cli_ls, cli_upload, cli_mirror, cli_jobs;

/* Parses a command's arguments (its own options, then the settings), loads the
 * settings into cfg and sends the log to stderr at their level and format. Returns -1 when the
 * command should go on; otherwise the exit code to return at once: CLI_OK after printing the usage
 * for --help, CLI_USAGE after a one-line message. Release a and cfg (config_args_cleanup,
 * config_cleanup) either way. */
int cli_parse(const struct cli_command *cmd, int argc, char **argv, const struct option *own,
              size_t n_own, struct config_args *a, struct config *cfg);

/* Sends the log where the settings say, at their level and in their format; the file
 * (--log-file) only with with_file (ferry serve: other commands log on stderr). */
int cli_open_log(const struct config *cfg, bool with_file, struct err *err);

/* Prints "ferry CMD: <message> (see 'ferry CMD --help')" and returns CLI_USAGE. */
int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "ferry: <message>" on one line (line breaks in it become spaces) and returns
 * CLI_FAILED. */
int cli_fail(const struct err *err);

/* Creates dir and its parents (like mkdir -p), private to the owner. */
int cli_make_dirs(const char *dir, struct err *err);

/* Opens the configured database with pool connections. With create (ferry serve) the
 * data folder is made when missing and must be writable, and a new SQLite database is
 * made; without it a data folder or SQLite database that does not exist is an error and
 * nothing is created. */
int cli_open_store(const struct config *cfg, int pool, bool create, struct store **st,
                   struct err *err);

/* Prints v as indented JSON and a newline on stdout. */
void cli_print_json(json_t *v);

#endif
