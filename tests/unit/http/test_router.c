/* test_router.c - unit tests for src/http/router.c over a small route table built here:
 * literal and parameter matching, the trailing wildcard, 404 versus 405, HEAD, the Allow
 * header and the surface of unmatched paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/router.h"

static int h_items(struct request *req, struct err *err)
{
    (void)req;
    (void)err;
    return FERRY_OK;
}
static int h_item(struct request *req, struct err *err)
{
    (void)req;
    (void)err;
    return FERRY_OK;
}
static int h_row(struct request *req, struct err *err)
{
    (void)req;
    (void)err;
    return FERRY_OK;
}
static int h_files(struct request *req, struct err *err)
{
    (void)req;
    (void)err;
    return FERRY_OK;
}
static int h_push(struct request *req, struct err *err)
{
    (void)req;
    (void)err;
    return FERRY_OK;
}
static int h_patch(struct request *req, struct err *err)
{
    (void)req;
    (void)err;
    return FERRY_OK;
}
static int h_shadow(struct request *req, struct err *err)
{
    (void)req;
    (void)err;
    return FERRY_OK;
}

static const struct route v1_routes[] = {
    {M_GET | M_POST, "/api/v1/items", h_items, ROLES_ANY, SURFACE_V1, ROUTE_JSON, NULL},
    {M_GET | M_PUT | M_DELETE, "/api/v1/items/{id}", h_item, ROLES_ANY, SURFACE_V1, 0, NULL},
    {M_GET, "/api/v1/tables/{table}/rows/{row}", h_row, ROLES_ANY, SURFACE_V1, 0, NULL},
    {M_GET | M_PUT, "/files/*", h_files, ROLE_ADMIN, SURFACE_PLAIN, 0, NULL},
    {M_POST, "/sync/push", h_push, ROLE_USER, SURFACE_LEGACY, 0, NULL},
    /* Same path and method as the second route: never chosen, the first match wins. */
    {M_GET, "/api/v1/items/{other}", h_shadow, ROLES_ANY, SURFACE_V1, 0, NULL},
};
static const struct route extra_routes[] = {
    {M_PATCH, "/api/v1/items/{id}", h_patch, ROLES_ANY, SURFACE_V1, 0, NULL},
};
static const struct route_table v1_table = {v1_routes, sizeof(v1_routes) / sizeof(v1_routes[0])};
static const struct route_table extra_table = {extra_routes,
                                               sizeof(extra_routes) / sizeof(extra_routes[0])};
static const struct route_table *const tables[] = {&v1_table, &extra_table};

struct match {
    enum match_result result;
    const struct route *route;
    const char *names[MAX_PATH_PARAMS];
    char *values[MAX_PATH_PARAMS];
    int n_params;
    unsigned allowed;
};

static void run(struct match *m, enum method method, const char *path)
{
    memset(m, 0, sizeof(*m));
    m->n_params = -1;
    m->allowed = 0xdead;
    m->route = &extra_routes[0]; /* must be reset */
    m->result = router_match(tables, 2, method, path, &m->route, m->names, m->values, &m->n_params,
                             &m->allowed);
}

static void release(struct match *m)
{
    for (int i = 0; i < m->n_params; i++)
        free(m->values[i]);
}

/* A parameter name points into the pattern and ends at '}' (or NUL for '*'). */
static void assert_name(const char *name, const char *want)
{
    size_t len = strlen(want);
    assert_non_null(name);
    assert_memory_equal(name, want, len);
    assert_true(name[len] == '}' || name[len] == '\0');
}

static void test_literal_match(void **state)
{
    (void)state;
    struct match m;

    run(&m, M_GET, "/api/v1/items");
    assert_int_equal(m.result, MATCH_OK);
    assert_ptr_equal(m.route, &v1_routes[0]);
    assert_true(m.route->handler == h_items);
    assert_int_equal(m.n_params, 0);
    assert_int_equal(m.allowed, M_GET | M_POST | M_HEAD);

    run(&m, M_POST, "/sync/push");
    assert_int_equal(m.result, MATCH_OK);
    assert_ptr_equal(m.route, &v1_routes[4]);
    assert_int_equal(m.n_params, 0);
    assert_int_equal(m.allowed, M_POST);
}

static void test_param_match(void **state)
{
    (void)state;
    struct match m;

    run(&m, M_GET, "/api/v1/items/abc-123");
    assert_int_equal(m.result, MATCH_OK);
    assert_ptr_equal(m.route, &v1_routes[1]);
    assert_int_equal(m.n_params, 1);
    assert_name(m.names[0], "id");
    assert_string_equal(m.values[0], "abc-123");
    /* Every route on the path, across both tables, is in the mask. */
    assert_int_equal(m.allowed, M_GET | M_PUT | M_DELETE | M_PATCH | M_HEAD);
    release(&m);

    run(&m, M_GET, "/api/v1/tables/notes/rows/42");
    assert_int_equal(m.result, MATCH_OK);
    assert_ptr_equal(m.route, &v1_routes[2]);
    assert_int_equal(m.n_params, 2);
    assert_name(m.names[0], "table");
    assert_name(m.names[1], "row");
    assert_string_equal(m.values[0], "notes");
    assert_string_equal(m.values[1], "42");
    release(&m);
}

static void test_param_in_second_table(void **state)
{
    (void)state;
    struct match m;

    run(&m, M_PATCH, "/api/v1/items/7");
    assert_int_equal(m.result, MATCH_OK);
    assert_ptr_equal(m.route, &extra_routes[0]);
    assert_true(m.route->handler == h_patch);
    assert_int_equal(m.n_params, 1);
    assert_name(m.names[0], "id");
    assert_string_equal(m.values[0], "7");
    release(&m);
}

static void test_first_match_wins(void **state)
{
    (void)state;
    struct match m;

    run(&m, M_GET, "/api/v1/items/x");
    assert_int_equal(m.result, MATCH_OK);
    assert_true(m.route->handler == h_item);
    assert_int_equal(m.n_params, 1);
    assert_name(m.names[0], "id");
    assert_string_equal(m.values[0], "x");
    release(&m);
}

static void test_wildcard(void **state)
{
    (void)state;
    struct match m;

    run(&m, M_GET, "/files/a/b/c");
    assert_int_equal(m.result, MATCH_OK);
    assert_ptr_equal(m.route, &v1_routes[3]);
    assert_int_equal(m.n_params, 1);
    assert_string_equal(m.names[0], "*");
    assert_string_equal(m.values[0], "a/b/c");
    release(&m);

    run(&m, M_PUT, "/files/one.txt");
    assert_int_equal(m.result, MATCH_OK);
    assert_int_equal(m.n_params, 1);
    assert_string_equal(m.values[0], "one.txt");
    release(&m);

    /* The wildcard needs at least one character. */
    run(&m, M_GET, "/files/");
    assert_int_equal(m.result, MATCH_NO_PATH);
    assert_int_equal(m.n_params, 0);
    run(&m, M_GET, "/files");
    assert_int_equal(m.result, MATCH_NO_PATH);
}

static void test_no_path(void **state)
{
    (void)state;
    struct match m;

    run(&m, M_GET, "/nothing/here");
    assert_int_equal(m.result, MATCH_NO_PATH);
    assert_null(m.route);
    assert_int_equal(m.n_params, 0);
    assert_int_equal(m.allowed, 0);

    run(&m, M_GET, "/api/v1/item");
    assert_int_equal(m.result, MATCH_NO_PATH);
    run(&m, M_GET, "/api/v1/itemsx");
    assert_int_equal(m.result, MATCH_NO_PATH);
    run(&m, M_GET, "/api/v1/items/a/b");
    assert_int_equal(m.result, MATCH_NO_PATH);
    run(&m, M_GET, "");
    assert_int_equal(m.result, MATCH_NO_PATH);
}

static void test_no_method(void **state)
{
    (void)state;
    struct match m;

    run(&m, M_POST, "/api/v1/items/abc");
    assert_int_equal(m.result, MATCH_NO_METHOD);
    assert_null(m.route);
    assert_int_equal(m.n_params, 0); /* values of non-chosen routes were freed */
    assert_int_equal(m.allowed, M_GET | M_PUT | M_DELETE | M_PATCH | M_HEAD);

    run(&m, M_GET, "/sync/push");
    assert_int_equal(m.result, MATCH_NO_METHOD);
    assert_int_equal(m.allowed, M_POST); /* no GET, so no HEAD either */

    run(&m, M_HEAD, "/sync/push");
    assert_int_equal(m.result, MATCH_NO_METHOD);
    assert_int_equal(m.allowed, M_POST);

    run(&m, M_DELETE, "/api/v1/tables/t/rows/1");
    assert_int_equal(m.result, MATCH_NO_METHOD);
    assert_int_equal(m.allowed, M_GET | M_HEAD);
}

static void test_head_matches_get(void **state)
{
    (void)state;
    struct match m;

    run(&m, M_HEAD, "/api/v1/items");
    assert_int_equal(m.result, MATCH_OK);
    assert_ptr_equal(m.route, &v1_routes[0]);

    run(&m, M_HEAD, "/api/v1/items/z");
    assert_int_equal(m.result, MATCH_OK);
    assert_ptr_equal(m.route, &v1_routes[1]);
    assert_string_equal(m.values[0], "z");
    release(&m);
}

static void test_trailing_slash_and_empty_segment(void **state)
{
    (void)state;
    struct match m;

    /* a trailing '/' is answered as the path without it */
    run(&m, M_GET, "/api/v1/items/");
    assert_int_equal(m.result, MATCH_OK);
    assert_ptr_equal(m.route, &v1_routes[0]);
    assert_int_equal(m.n_params, 0);

    run(&m, M_POST, "/sync/push//");
    assert_int_equal(m.result, MATCH_OK);
    assert_ptr_equal(m.route, &v1_routes[4]);

    run(&m, M_GET, "/api/v1/tables/t/rows/5/");
    assert_int_equal(m.result, MATCH_OK);
    assert_int_equal(m.n_params, 2);
    assert_string_equal(m.values[1], "5");
    release(&m);

    /* the wildcard does not see the slash */
    run(&m, M_GET, "/files/a/b/");
    assert_int_equal(m.result, MATCH_OK);
    assert_string_equal(m.values[0], "a/b");
    release(&m);

    run(&m, M_DELETE, "/sync/push/");
    assert_int_equal(m.result, MATCH_NO_METHOD);
    assert_int_equal(m.allowed, M_POST);

    run(&m, M_GET, "/api/v1/tables//rows/5");
    assert_int_equal(m.result, MATCH_NO_PATH);
    assert_int_equal(m.n_params, 0);

    run(&m, M_GET, "/api/v1/tables/t/rows/");
    assert_int_equal(m.result, MATCH_NO_PATH);
}

static void test_method_names(void **state)
{
    (void)state;
    assert_int_equal(router_method("GET"), M_GET);
    assert_int_equal(router_method("POST"), M_POST);
    assert_int_equal(router_method("PUT"), M_PUT);
    assert_int_equal(router_method("PATCH"), M_PATCH);
    assert_int_equal(router_method("DELETE"), M_DELETE);
    assert_int_equal(router_method("HEAD"), M_HEAD);
    assert_int_equal(router_method("OPTIONS"), M_OPTIONS);
    assert_int_equal(router_method("get"), 0);
    assert_int_equal(router_method("TRACE"), 0);
    assert_int_equal(router_method(""), 0);
}

static void test_allow_header(void **state)
{
    (void)state;
    char out[128];

    router_allow_header(M_GET, out, sizeof(out));
    assert_string_equal(out, "GET");
    router_allow_header(M_DELETE | M_GET | M_POST, out, sizeof(out));
    assert_string_equal(out, "GET, POST, DELETE");
    router_allow_header(M_GET | M_HEAD | M_PUT | M_DELETE | M_PATCH, out, sizeof(out));
    assert_string_equal(out, "GET, PUT, PATCH, DELETE, HEAD");
    router_allow_header(0x7f, out, sizeof(out));
    assert_string_equal(out, "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS");
    strcpy(out, "stale");
    router_allow_header(0, out, sizeof(out));
    assert_string_equal(out, "");

    /* A short buffer truncates and stays terminated. */
    char small[8];
    router_allow_header(M_GET | M_POST, small, sizeof(small));
    assert_string_equal(small, "GET, PO");
}

static void test_surface_of(void **state)
{
    (void)state;
    assert_int_equal(router_surface_of("/api/v1/x", NULL), SURFACE_V1);
    assert_int_equal(router_surface_of("/api", NULL), SURFACE_V1);
    assert_int_equal(router_surface_of("/sync/push", NULL), SURFACE_LEGACY);
    assert_int_equal(router_surface_of("/sync", NULL), SURFACE_LEGACY);
    assert_int_equal(router_surface_of("/synchronize", NULL), SURFACE_V1);
    assert_int_equal(router_surface_of("/health", NULL), SURFACE_LEGACY);
    assert_int_equal(router_surface_of("/healthz", NULL), SURFACE_V1);
    assert_int_equal(router_surface_of("/tus/abc", NULL), SURFACE_TUS);
    assert_int_equal(router_surface_of("/tus", NULL), SURFACE_TUS);
    assert_int_equal(router_surface_of("/other", NULL), SURFACE_V1);
    assert_int_equal(router_surface_of("/", NULL), SURFACE_V1);
    /* The PhoenixKit prefix speaks the legacy format when one is configured. */
    assert_int_equal(router_surface_of("/phoenix_kit/sync", "/phoenix_kit"), SURFACE_LEGACY);
    assert_int_equal(router_surface_of("/phoenix_kit/sync", ""), SURFACE_V1);
    assert_int_equal(router_surface_of("/other", "/phoenix_kit"), SURFACE_V1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_match),
        cmocka_unit_test(test_param_match),
        cmocka_unit_test(test_param_in_second_table),
        cmocka_unit_test(test_first_match_wins),
        cmocka_unit_test(test_wildcard),
        cmocka_unit_test(test_no_path),
        cmocka_unit_test(test_no_method),
        cmocka_unit_test(test_head_matches_get),
        cmocka_unit_test(test_trailing_slash_and_empty_segment),
        cmocka_unit_test(test_method_names),
        cmocka_unit_test(test_allow_header),
        cmocka_unit_test(test_surface_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
