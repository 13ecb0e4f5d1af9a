/* test_response.c - unit tests for src/http/response.c: the one table that maps error
 * codes to HTTP statuses and v1 names, and how an error is rendered in each surface's
 * format (v1 JSON, the legacy/PhoenixKit {"success":false,...}, tus and plain text). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"

static const struct {
    enum err_code code;
    int status;
    const char *name;
} expected[] = {
    {ERR_INVALID, 400, "INVALID_REQUEST"},
    {ERR_UNAUTHORIZED, 401, "UNAUTHORIZED"},
    {ERR_FORBIDDEN, 403, "FORBIDDEN"},
    {ERR_NOT_FOUND, 404, "NOT_FOUND"},
    {ERR_METHOD, 405, "METHOD_NOT_ALLOWED"},
    {ERR_CONFLICT, 409, "CONFLICT"},
    {ERR_GONE, 410, "GONE"},
    {ERR_PRECONDITION, 412, "PRECONDITION_FAILED"},
    {ERR_TOO_LARGE, 413, "PAYLOAD_TOO_LARGE"},
    {ERR_MEDIA_TYPE, 415, "UNSUPPORTED_MEDIA_TYPE"},
    {ERR_RANGE, 416, "RANGE_NOT_SATISFIABLE"},
    {ERR_LOCKED, 423, "LOCKED"},
    {ERR_RATE_LIMITED, 429, "RATE_LIMITED"},
    {ERR_HEADERS_TOO_LARGE, 431, "HEADERS_TOO_LARGE"},
    {ERR_CHECKSUM, 460, "CHECKSUM_MISMATCH"},
    {ERR_DATABASE, 500, "DATABASE_ERROR"},
    {ERR_INTERNAL, 500, "SYNC_FAILED"},
    {ERR_BAD_GATEWAY, 502, "REMOTE_ERROR"},
    {ERR_UNAVAILABLE, 503, "SERVICE_UNAVAILABLE"},
    {ERR_CLOUD, 503, "CLOUD_ERROR"},
    {ERR_STORAGE_FULL, 507, "INSUFFICIENT_STORAGE"},
};

#define N_EXPECTED (sizeof(expected) / sizeof(expected[0]))

static void test_every_code_has_its_status(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_EXPECTED; i++) {
        assert_int_equal(http_status_of(expected[i].code), expected[i].status);
        assert_string_equal(http_error_name(expected[i].code), expected[i].name);
        assert_true(strlen(http_error_text(expected[i].code)) > 0);
    }
    /* every code of the enum is in the table: ERR_CHECKSUM is the last one */
    assert_int_equal(N_EXPECTED, ERR_CHECKSUM);
}

static void test_unmapped_code_is_a_server_fault(void **state)
{
    (void)state;
    assert_int_equal(http_status_of(ERR_NONE), 500);
    assert_string_equal(http_error_name(ERR_NONE), "SYNC_FAILED");
}

/* Renders err on a request of the given surface; the caller frees with reply_free. */
static struct request *render(enum surface surface, enum err_code code, const char *msg)
{
    struct request *req = calloc(1, sizeof(*req));
    struct err err = {0};
    req->surface = surface;
    req->resp.fd = -1;
    err_set(&err, code, "%s", msg);
    http_reply_err(req, &err);
    return req;
}

static void reply_free(struct request *req)
{
    free(req->resp.body);
    free(req);
}

static json_t *body_json(const struct request *req)
{
    json_t *j = json_loadb(req->resp.body, req->resp.body_len, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_v1_format(void **state)
{
    (void)state;
    struct request *req = render(SURFACE_V1, ERR_LOCKED, "held by another PATCH");
    assert_true(req->replied);
    assert_int_equal(req->resp.status, 423);
    assert_string_equal(req->resp.content_type, "application/json");
    json_t *j = body_json(req);
    assert_string_equal(json_string_value(json_object_get(j, "errorCode")), "LOCKED");
    assert_string_equal(json_string_value(json_object_get(j, "message")),
                        http_error_text(ERR_LOCKED));
    assert_string_equal(json_string_value(json_object_get(j, "details")), "held by another PATCH");
    assert_non_null(json_string_value(json_object_get(j, "timestamp")));
    json_decref(j);
    reply_free(req);
}

static void test_legacy_format(void **state)
{
    (void)state;
    struct request *req = render(SURFACE_LEGACY, ERR_RATE_LIMITED, "Rate limit exceeded");
    assert_int_equal(req->resp.status, 429);
    json_t *j = body_json(req);
    assert_int_equal(json_object_size(j), 2);
    assert_true(json_is_false(json_object_get(j, "success")));
    assert_string_equal(json_string_value(json_object_get(j, "error")), "Rate limit exceeded");
    json_decref(j);
    reply_free(req);
}

static void test_tus_and_plain_format(void **state)
{
    (void)state;
    struct request *req = render(SURFACE_TUS, ERR_CHECKSUM, "Checksum Mismatch");
    assert_int_equal(req->resp.status, 460);
    assert_string_equal(req->resp.content_type, "text/plain; charset=utf-8");
    assert_string_equal(req->resp.body, "Checksum Mismatch\n");
    reply_free(req);

    req = render(SURFACE_PLAIN, ERR_PRECONDITION, "Tus-Resumable: 1.0.0 is required");
    assert_int_equal(req->resp.status, 412);
    assert_string_equal(req->resp.body, "Tus-Resumable: 1.0.0 is required\n");
    reply_free(req);
}

static void test_error_without_code_is_internal(void **state)
{
    (void)state;
    struct request *req = calloc(1, sizeof(*req));
    struct err err = {0};
    req->surface = SURFACE_LEGACY;
    req->resp.fd = -1;
    http_reply_err(req, &err);
    assert_int_equal(req->resp.status, 500);
    reply_free(req);
}

static void test_first_reply_wins(void **state)
{
    (void)state;
    struct request *req = render(SURFACE_V1, ERR_NOT_FOUND, "no such file");
    struct err err = {0};
    err_set(&err, ERR_INTERNAL, "later");
    http_reply_err(req, &err); /* what the server does when a handler replied and failed */
    assert_int_equal(req->resp.status, 404);
    reply_free(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_its_status),
        cmocka_unit_test(test_unmapped_code_is_a_server_fault),
        cmocka_unit_test(test_v1_format),
        cmocka_unit_test(test_legacy_format),
        cmocka_unit_test(test_tus_and_plain_format),
        cmocka_unit_test(test_error_without_code_is_internal),
        cmocka_unit_test(test_first_reply_wins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
