/* remote.h - what the client commands built on libferry share (remote.c): their command
 * line, the server and token they use, and Ctrl-C, which stops a transfer cleanly. */
#ifndef FERRY_CLI_REMOTE_H
#define FERRY_CLI_REMOTE_H

#include <stdbool.h>

#include "cli/cli.h"
#include "cli/clientconf.h"
#include "ferry/client.h"

struct remote_args {
    const char *url, *token, *ca_file, *status, *keep, *device;
    const char *arg;  /* the first positional argument, when the command takes one */
    const char *arg2; /* the second, when given */
    bool json;        /* --json: JSON lines even on a terminal */
    bool follow;      /* set by the caller: --watch SECONDS and --device ID are allowed */
    int watch_s;      /* --watch: 0 when not given */
};

/* Parses --url, --token, --cacert, --status, --keep, --json (--watch and --device when
 * a->follow) and from min to max positional arguments; -1 to go on, or the exit code. */
int remote_parse(const struct cli_command *cmd, int argc, char **argv, int min, int max,
                 struct remote_args *a);

/* The server and token from the flags, the environment or client.conf, into o (which
 * points into c: release c after o's last use); -1 to go on, or the exit code. */
int remote_settings(const struct cli_command *cmd, const struct remote_args *a,
                    struct client_conf *c, struct ferry_client_options *o);

/* Ctrl-C and SIGTERM set a flag that the transfers' progress callbacks answer with a
 * stop, so what arrived is kept for the rerun. */
void remote_catch_interrupts(void);
bool remote_interrupted(void);

#endif
