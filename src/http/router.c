/* router.c - see router.h. Routes are matched segment by segment by a linear walk of
 * the tables: there are a few dozen routes, and the walk is cheaper than hashing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/router.h"

enum method router_method(const char *name)
{
    static const struct {
        const char *name;
        enum method bit;
    } methods[] = {
        {"GET", M_GET},       {"POST", M_POST}, {"PUT", M_PUT},         {"PATCH", M_PATCH},
        {"DELETE", M_DELETE}, {"HEAD", M_HEAD}, {"OPTIONS", M_OPTIONS},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(methods[i].name, name) == 0)
            return methods[i].bit;
    return 0;
}

void router_allow_header(unsigned methods, char *out, size_t out_len)
{
    static const char *names[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"};
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < 7 && used < out_len; i++)
        if (methods & (1u << i))
            used +=
                (size_t)snprintf(out + used, out_len - used, "%s%s", used ? ", " : "", names[i]);
}

/* Matches pattern against path. Parameters are copied out only on a full match. */
static bool match(const char *pattern, const char *path, const char **names, char **values,
                  int *n_params)
{
    const char *p = pattern, *s = path;
    const char *starts[MAX_PATH_PARAMS], *name_starts[MAX_PATH_PARAMS];
    size_t lens[MAX_PATH_PARAMS];
    int n = 0;

    while (*p) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            const char *seg_end = strchr(s, '/');
            size_t len = seg_end ? (size_t)(seg_end - s) : strlen(s);
            if (!close || len == 0 || n == MAX_PATH_PARAMS)
                return false;
            name_starts[n] = p + 1;
            starts[n] = s;
            lens[n++] = len;
            p = close + 1;
            s += len;
        } else if (*p == '*' && p[1] == '\0') {
            if (!*s || n == MAX_PATH_PARAMS)
                return false;
            name_starts[n] = "*";
            starts[n] = s;
            lens[n++] = strlen(s);
            s += strlen(s);
            p++;
        } else {
            if (*p != *s)
                return false;
            p++;
            s++;
        }
    }
    if (*s)
        return false;
    for (int i = 0; i < n; i++) {
        /* Names point into the static pattern and end at its '}' (or NUL for '*');
         * http_param compares up to that terminator. */
        names[i] = name_starts[i];
        values[i] = strndup(starts[i], lens[i]);
        if (!values[i])
            abort();
    }
    *n_params = n;
    return true;
}

static enum match_result match_tables(const struct route_table *const *tables, size_t n_tables,
                                      enum method method, const char *path,
                                      const struct route **route, const char **names, char **values,
                                      int *n_params, unsigned *allowed)
{
    /* HEAD is served by a route that lists it, else by the GET route */
    unsigned want = method == M_HEAD ? (M_HEAD | M_GET) : method;
    bool path_seen = false;
    *allowed = 0;
    *n_params = 0;
    *route = NULL;

    for (size_t t = 0; t < n_tables; t++) {
        for (size_t i = 0; i < tables[t]->n_routes; i++) {
            const struct route *r = &tables[t]->routes[i];
            const char *tmp_names[MAX_PATH_PARAMS];
            char *tmp_values[MAX_PATH_PARAMS];
            int n = 0;
            if (!match(r->pattern, path, tmp_names, tmp_values, &n))
                continue;
            path_seen = true;
            *allowed |= r->methods;
            if ((r->methods & want) && !*route) {
                *route = r;
                for (int k = 0; k < n; k++) {
                    names[k] = tmp_names[k];
                    values[k] = tmp_values[k];
                }
                *n_params = n;
            } else {
                for (int k = 0; k < n; k++)
                    free(tmp_values[k]);
            }
        }
    }
    if (*allowed & M_GET)
        *allowed |= M_HEAD;
    if (*route)
        return MATCH_OK;
    return path_seen ? MATCH_NO_METHOD : MATCH_NO_PATH;
}

/* A trailing '/' is answered as the path without it, as the servers behind the seed APIs
 * (Express, ASP.NET Core, Phoenix) do: the trimmed path is tried first, so a wildcard
 * route never sees the slash, then the path as sent (for patterns that end in '/'). */
enum match_result router_match(const struct route_table *const *tables, size_t n_tables,
                               enum method method, const char *path, const struct route **route,
                               const char **names, char **values, int *n_params, unsigned *allowed)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (path[len] == '\0')
        return match_tables(tables, n_tables, method, path, route, names, values, n_params,
                            allowed);
    char *trimmed = strndup(path, len);
    if (!trimmed)
        abort();
    enum match_result m =
        match_tables(tables, n_tables, method, trimmed, route, names, values, n_params, allowed);
    free(trimmed);
    if (m != MATCH_NO_PATH)
        return m;
    return match_tables(tables, n_tables, method, path, route, names, values, n_params, allowed);
}

enum surface router_surface_of(const char *path, const char *phoenix_prefix)
{
    if (strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0)
        return SURFACE_V1;
    if (strncmp(path, "/tus", 4) == 0)
        return SURFACE_TUS;
    if (strcmp(path, "/health") == 0 || strcmp(path, "/sync") == 0 ||
        strncmp(path, "/sync/", 6) == 0)
        return SURFACE_LEGACY;
    if (phoenix_prefix && *phoenix_prefix &&
        strncmp(path, phoenix_prefix, strlen(phoenix_prefix)) == 0)
        return SURFACE_LEGACY;
    return SURFACE_V1;
}
