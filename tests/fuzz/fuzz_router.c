/* fuzz_router.c - the router (src/http/router.c) over ferry's real route tables.
 * Input: a method name, a newline, a path. */
#include "api/api.h"
#include "api/phoenix.h"
#include "fuzz.h"
#include "http/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct route_table **tables;
    static size_t n_tables;
    if (!tables) {
        tables = xcalloc(api_n_tables + 1, sizeof(*tables));
        memcpy(tables, api_tables, api_n_tables * sizeof(*tables));
        tables[api_n_tables] = phoenix_routes("/phoenix_kit");
        n_tables = api_n_tables + 1;
    }
    char *method = fuzz_string(data, size);
    char *path = fuzz_split(method);
    const struct route *route = NULL;
    const char *names[MAX_PATH_PARAMS];
    char *values[MAX_PATH_PARAMS];
    int n_params = 0;
    unsigned allowed = 0;
    char allow[128];
    enum method m = router_method(method);
    if (router_match(tables, n_tables, m ? m : M_GET, path, &route, names, values, &n_params,
                     &allowed) == MATCH_OK) {
        if (!route || n_params < 0 || n_params > MAX_PATH_PARAMS)
            abort();
        for (int i = 0; i < n_params; i++)
            free(values[i]);
    }
    router_allow_header(allowed, allow, sizeof(allow));
    router_surface_of(path, "/phoenix_kit");
    free(method);
    return 0;
}
