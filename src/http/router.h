/* router.h - matches a method and a path against the route tables. */
#ifndef FERRY_ROUTER_H
#define FERRY_ROUTER_H

#include "http/http.h"

struct route_table {
    const struct route *routes;
    size_t n_routes;
};

enum match_result {
    MATCH_OK,
    MATCH_NO_PATH,   /* 404 */
    MATCH_NO_METHOD, /* 405; *allowed has the methods the path takes */
};

/* Finds the route for method and path across tables. On MATCH_OK, *route is set and the
 * path parameters are written to names/values (names point into the pattern and end at
 * '}' or NUL; values are newly allocated copies of the decoded path; the caller frees
 * them) with their count in *n_params. A HEAD request matches a GET
 * route. */
enum match_result router_match(const struct route_table *const *tables, size_t n_tables,
                               enum method method, const char *path, const struct route **route,
                               const char **names, char **values, int *n_params, unsigned *allowed);

/* Parses an HTTP method name; 0 for one ferry does not serve. */
enum method router_method(const char *name);

/* Writes "GET, POST" for a method mask into out. */
void router_allow_header(unsigned methods, char *out, size_t out_len);

/* The surface a path belongs to when no route matched it (for 404s). */
enum surface router_surface_of(const char *path, const char *phoenix_prefix);

#endif
