/* url.c - see url.h. libcurl parses, normalises and re-assembles; this file only
 * converts its strings (curl_free) into ours (free). */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ferry.h"
#include "util/url.h"

bool url_parse_http(const char *url, char **path)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *part = NULL;
    bool ok = false;
    if (!u)
        abort(); /* out of memory: see ferry.h */
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) ||
        curl_url_get(u, CURLUPART_PATH, &part, 0) != CURLUE_OK)
        goto out;
    if (path)
        *path = xstrdup(part);
    ok = true;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(part);
    curl_url_cleanup(u);
    return ok;
}

char *url_with_path(const char *url, const char *path)
{
    CURLU *u = curl_url();
    char *joined = NULL, *result = NULL;
    if (!u)
        abort();
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_PATH, path, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_QUERY, NULL, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &joined, 0) == CURLUE_OK)
        result = xstrdup(joined);
    curl_free(joined);
    curl_url_cleanup(u);
    return result;
}
