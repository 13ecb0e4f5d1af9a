/* clientconf.h - where the client commands (sync, login, push, pull, conflicts, resolve)
 * find the server and token: flags, then FERRY_URL/FERRY_TOKEN/FERRY_CACERT, then the file
 * `ferry login` writes (~/.config/ferry/client.conf, mode 0600). */
#ifndef FERRY_CLI_CLIENTCONF_H
#define FERRY_CLI_CLIENTCONF_H

#include <stddef.h>

#include "ferry/client.h"

struct client_conf {
    char *url, *token, *ca_file; /* NULL when not found anywhere */
};

/* The file's path ($XDG_CONFIG_HOME/ferry/client.conf or ~/.config/...); NULL without a
 * home. The caller frees it. */
char *clientconf_path(void);

/* Fills c from the flags given (NULL: not given), the environment and the file. */
void clientconf_resolve(struct client_conf *c, const char *url, const char *token,
                        const char *ca_file);

/* Writes the file (its folder made private when missing), replacing it whole; 0 or -1
 * with the reason in why. */
int clientconf_save(const struct client_conf *c, char *why, size_t whylen);

void clientconf_free(struct client_conf *c);

/* Where the state of an upload of file to path is kept: $XDG_STATE_HOME (or
 * ~/.local/state)/ferry/uploads/<SHA-256 of the file's real path and path>.json, the
 * folder made private when missing. NULL without a home. The caller frees it. */
char *clientconf_upload_state(const char *file, const char *path);

/* Prints a sync's stats as one JSON line (sync.c). */
void cli_print_sync_stats(const struct ferry_sync_stats *s);

#endif
