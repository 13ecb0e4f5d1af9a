/* siteclient.c - see siteclient.h. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "sites/siteclient.h"
#include "util/outcall.h"
#include "util/url.h"
#include "util/buf.h"
#include "util/jsonutil.h"

#define DEFAULT_PREFIX "/phoenix_kit"
#define MAX_ANSWER (64L * 1024 * 1024) /* a pull-data page of large rows fits */

void siteclient_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void siteclient_global_cleanup(void)
{
    curl_global_cleanup();
}

char *siteclient_url(const char *site_url, const char *action)
{
    char *path = NULL, *url = NULL;
    if (url_parse_http(site_url, &path)) {
        size_t len = strlen(path);
        while (len && path[len - 1] == '/')
            len--;
        char *call_path =
            xasprintf("%.*s%s/sync/api/%s", (int)len, path, len ? "" : DEFAULT_PREFIX, action);
        url = url_with_path(site_url, call_path);
        free(call_path);
        free(path);
    }
    /* Not an http URL: the call fails with that reason when it checks the URL. */
    return url ? url : xasprintf("%s%s/sync/api/%s", site_url, DEFAULT_PREFIX, action);
}

/* Resolves the URL's host, checks every address, and pins the first for curl
 * (CURLOPT_RESOLVE), so that the connection goes where the check looked. */
static int pin_address(CURL *curl, const char *url, bool allow_private, struct curl_slist **pins,
                       struct site_call *out, struct err *err)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *scheme = NULL;
    int rc = FERRY_ERR;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        snprintf(out->error, sizeof(out->error), "not an http or https URL");
        err_set(err, ERR_INVALID, "%s", out->error);
        goto out;
    }
    /* an IPv6 literal comes back bracketed */
    char bare[256];
    size_t hl = strlen(host);
    if (hl >= sizeof(bare)) {
        snprintf(out->error, sizeof(out->error), "host name too long");
        err_set(err, ERR_INVALID, "%s", out->error);
        goto out;
    }
    snprintf(bare, sizeof(bare), "%s", host[0] == '[' ? host + 1 : host);
    if (host[0] == '[' && hl > 1)
        bare[hl - 2] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(bare, port, &hints, &res);
    if (gai != 0 || !res) {
        snprintf(out->error, sizeof(out->error), "cannot resolve %.120s: %s", bare,
                 gai_strerror(gai));
        err_set(err, ERR_UNAVAILABLE, "%s", out->error);
        goto out;
    }
    char addr[INET6_ADDRSTRLEN] = "";
    bool refused = false;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        refused = refused || (!allow_private && outcall_non_public(a->ai_addr));
        if (!addr[0])
            getnameinfo(a->ai_addr, a->ai_addrlen, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST);
    }
    freeaddrinfo(res);
    if (refused) {
        snprintf(out->error, sizeof(out->error),
                 "%.120s resolves to a private or loopback address (see --sites-allow-private)",
                 bare);
        err_set(err, ERR_FORBIDDEN, "%s", out->error);
        goto out;
    }
    char *pin = strchr(addr, ':') ? xasprintf("%s:%s:[%s]", bare, port, addr)
                                  : xasprintf("%s:%s:%s", bare, port, addr);
    *pins = curl_slist_append(NULL, pin);
    free(pin);
    curl_easy_setopt(curl, CURLOPT_RESOLVE, *pins);
    rc = FERRY_OK;
out:
    curl_free(host);
    curl_free(port);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
    struct buf *b = ctx;
    if (b->len + size * n > (size_t)MAX_ANSWER)
        return 0; /* too big: curl stops with a write error */
    buf_append(b, data, size * n);
    return size * n;
}

int siteclient_call(const struct siteclient_options *o, const char *site_url, const char *action,
                    json_t *body, struct site_call *out, struct err *err)
{
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = NULL, *pins = NULL;
    struct buf answer;
    char *url = siteclient_url(site_url, action), *text = NULL;
    int rc = FERRY_ERR;
    long status = 0;

    memset(out, 0, sizeof(*out));
    buf_init(&answer);
    if (!curl)
        abort(); /* allocation policy: see ferry.h */
    if (pin_address(curl, url, o->allow_private, &pins, out, err) != FERRY_OK)
        goto out;
    headers = curl_slist_append(headers, "Accept: application/json");
    if (body) {
        text = jsonutil_to_string(body);
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "ferry/" FERRY_VERSION);
    outcall_curl_defaults(curl, o->timeout_s);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    CURLcode res = curl_easy_perform(curl);
    if (res != CURLE_OK) {
        snprintf(out->error, sizeof(out->error), "%s", curl_easy_strerror(res));
        err_set(err, ERR_UNAVAILABLE, "%s: %s", site_url, out->error);
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    out->status = (int)status;
    out->bytes = answer.len;
    out->body = answer.len ? json_loadb(answer.data, answer.len, JSON_ALLOW_NUL, NULL) : NULL;
    if (!out->body)
        snprintf(out->error, sizeof(out->error), "the answer (status %ld) is not JSON", status);
    else if (json_is_string(json_object_get(out->body, "error")))
        snprintf(out->error, sizeof(out->error), "%s",
                 json_string_value(json_object_get(out->body, "error")));
    rc = FERRY_OK;
out:
    curl_slist_free_all(headers);
    curl_slist_free_all(pins);
    curl_easy_cleanup(curl);
    buf_cleanup(&answer);
    free(text);
    free(url);
    return rc;
}
