/* siteclient.h - ferry's calls to other sites' PhoenixKit API (libcurl): a JSON POST (or
 * GET) to {site}/{prefix}/sync/api/{action}, with timeouts on every call, no redirects,
 * http and https only, and the remote's addresses checked before connecting: private,
 * loopback, link-local and other non-public addresses are refused unless allowed, and
 * the address checked is the one connected to (no second DNS answer can swap it). */
#ifndef FERRY_SITECLIENT_H
#define FERRY_SITECLIENT_H

#include <stdbool.h>

#include <jansson.h>

#include "ferry.h"

struct site_call {
    int status;      /* HTTP status, 0 when no answer came */
    json_t *body;    /* the answer's JSON, or NULL */
    size_t bytes;    /* the answer's length as received */
    char error[256]; /* why there was no usable answer */
};

struct siteclient_options {
    bool allow_private; /* --sites-allow-private */
    long timeout_s;     /* the whole call */
};

/* The remote site's API address for action: site_url's own path is the prefix when it
 * has one, else PhoenixKit's /phoenix_kit. Caller frees. */
char *siteclient_url(const char *site_url, const char *action);

/* Calls action on site_url with body (NULL: a GET). FERRY_OK when an HTTP answer came
 * (whatever its status); FERRY_ERR with out->error (and err: ERR_UNAVAILABLE for the
 * network, ERR_FORBIDDEN for a refused address, ERR_INVALID for a bad URL) otherwise.
 * The caller frees out->body. */
int siteclient_call(const struct siteclient_options *o, const char *site_url, const char *action,
                    json_t *body, struct site_call *out, struct err *err);

void siteclient_global_init(void);
void siteclient_global_cleanup(void);

#endif
