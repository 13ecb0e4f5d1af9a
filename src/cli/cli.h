/* cli.h - what the command-line subcommands (main.c, cli/sites.c) share. */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include "config.h"
#include "ferry.h"
#include "store/store.h"

/* Opens the configured database (creating the data folder), with pool connections. */
int cli_open_store(struct config *cfg, int pool, struct store **st, struct err *err);

/* Prints "ferry: <message>" and returns 1. */
int cli_fail(const struct err *err);

/* `ferry sites ...` */
int cmd_sites(int argc, char **argv);

/* `ferry merge ...` (cli/merge.c) */
int cmd_merge(int argc, char **argv);

#endif
