/* fuzz_router.c - the router (src/http/router.c) over ferry's real route tables.
 * Input: a method name, a newline, a path. */
#include "api/routes.h"
#include "app.h"
#include "fuzz.h"
#include "http/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the server's own tables, PhoenixKit's at the default prefix, built once */
    static struct config cfg = {.sites_prefix = "/phoenix_kit"};
    static struct app app = {.cfg = &cfg};
    if (!app.tables)
        routes_init(&app);
    char *method = fuzz_string(data, size);
    char *path = fuzz_split(method);
    const struct route *route = NULL;
    const char *names[MAX_PATH_PARAMS];
    char *values[MAX_PATH_PARAMS];
    int n_params = 0;
    unsigned allowed = 0;
    char allow[128];
    enum method m = router_method(method);
    if (router_match(app.tables, app.n_tables, m ? m : M_GET, path, &route, names, values,
                     &n_params, &allowed) == MATCH_OK) {
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
