/* url.h - URLs taken apart and put together by libcurl's URL API (curl_url), never by
 * hand: the scheme check for site URLs and the paths of calls to other sites. */
#ifndef FERRY_URL_H
#define FERRY_URL_H

#include <stdbool.h>

/* Whether url is an absolute http or https URL with a host. When path is not NULL and
 * the answer is true, *path is the URL's path ("/" when it names none), which the caller
 * frees with free(). */
bool url_parse_http(const char *url, char **path);

/* url with its path replaced by path (which starts with '/'); query and fragment are
 * dropped. Returns a new string for free(), or NULL when url does not parse. */
char *url_with_path(const char *url, const char *path);

#endif
