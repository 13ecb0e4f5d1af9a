/* test_values.c - declared column types to kinds, and JSON values checked against them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sync/values.h"

static void test_kind_of(void **state)
{
    (void)state;
    struct {
        const char *decl;
        enum col_kind kind;
    } cases[] = {
        {"integer", KIND_INTEGER},    {"bigint", KIND_INTEGER},
        {"int", KIND_INTEGER},        {"smallint", KIND_INTEGER},
        {"text", KIND_TEXT},          {"character varying(20)", KIND_TEXT},
        {"varchar(10)", KIND_TEXT},   {"", KIND_TEXT},
        {"real", KIND_REAL},          {"double precision", KIND_REAL},
        {"float", KIND_REAL},         {"numeric(10,2)", KIND_NUMERIC},
        {"decimal", KIND_NUMERIC},    {"boolean", KIND_BOOLEAN},
        {"date", KIND_DATE},          {"timestamp with time zone", KIND_TIMESTAMP},
        {"datetime", KIND_TIMESTAMP}, {"time", KIND_TIME},
        {"uuid", KIND_UUID},          {"jsonb", KIND_JSON},
        {"blob", KIND_BLOB},          {"bytea", KIND_BLOB},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (values_kind_of(cases[i].decl) != cases[i].kind)
            fail_msg("'%s' classified as %d, want %d", cases[i].decl, values_kind_of(cases[i].decl),
                     cases[i].kind);
    }
}

/* Parses text as JSON and converts it for kind; returns the result code. */
static int convert(enum col_kind kind, const char *text, struct owned_val *out, struct err *err)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    int rc = values_from_json(kind, v, out, err);
    if (rc == FERRY_OK && out->val.type == SV_TEXT && !out->owned) {
        /* text points into v: copy before v goes */
        out->owned = strdup(out->val.s);
        out->val.s = out->owned;
    }
    json_decref(v);
    return rc;
}

static void expect_ok(enum col_kind kind, const char *text, enum store_type type)
{
    struct owned_val out;
    struct err err = {0};
    if (convert(kind, text, &out, &err) != FERRY_OK)
        fail_msg("%s refused for kind %d: %s", text, kind, err.msg);
    assert_int_equal(out.val.type, type);
    values_release(&out);
}

static void expect_bad(enum col_kind kind, const char *text, const char *msg_part)
{
    struct owned_val out;
    struct err err = {0};
    if (convert(kind, text, &out, &err) == FERRY_OK)
        fail_msg("%s accepted for kind %d", text, kind);
    assert_int_equal(err.code, ERR_INVALID);
    if (!strstr(err.msg, msg_part))
        fail_msg("message '%s' lacks '%s'", err.msg, msg_part);
}

static void test_from_json(void **state)
{
    (void)state;
    expect_ok(KIND_INTEGER, "42", SV_INT);
    expect_ok(KIND_INTEGER, "null", SV_NULL);
    expect_bad(KIND_INTEGER, "\"42\"", "expected an integer, got a string");
    expect_bad(KIND_INTEGER, "4.5", "expected an integer, got a number");
    expect_ok(KIND_REAL, "4.5", SV_REAL);
    expect_ok(KIND_REAL, "4", SV_REAL);
    expect_bad(KIND_REAL, "true", "got a boolean");
    expect_ok(KIND_NUMERIC, "\"12.50\"", SV_TEXT);
    expect_ok(KIND_NUMERIC, "12", SV_INT);
    expect_bad(KIND_NUMERIC, "\"12,50\"", "decimal");
    expect_ok(KIND_BOOLEAN, "true", SV_INT);
    expect_bad(KIND_BOOLEAN, "1", "expected a boolean");
    expect_ok(KIND_TEXT, "\"x\"", SV_TEXT);
    expect_bad(KIND_TEXT, "5", "expected a string, got an integer");
    expect_ok(KIND_DATE, "\"2024-02-29\"", SV_TEXT);
    expect_bad(KIND_DATE, "\"2024-02-30\"", "date");
    expect_bad(KIND_DATE, "\"2024-1-5\"", "date");
    expect_ok(KIND_TIMESTAMP, "\"2024-01-15T10:30:00Z\"", SV_TEXT);
    expect_ok(KIND_TIMESTAMP, "\"2024-01-15 10:30:00.123+05:30\"", SV_TEXT);
    expect_ok(KIND_TIMESTAMP, "\"2024-01-15\"", SV_TEXT);
    expect_bad(KIND_TIMESTAMP, "\"yesterday\"", "ISO-8601");
    expect_bad(KIND_TIMESTAMP, "\"2024-01-15T25:00:00Z\"", "ISO-8601");
    expect_ok(KIND_TIME, "\"23:59:59\"", SV_TEXT);
    expect_bad(KIND_TIME, "\"24:00\"", "time");
    expect_ok(KIND_UUID, "\"550e8400-e29b-41d4-a716-446655440000\"", SV_TEXT);
    expect_bad(KIND_UUID, "\"550e8400\"", "UUID");
    expect_ok(KIND_JSON, "{\"a\": [1, 2]}", SV_TEXT);
    expect_ok(KIND_BLOB, "\"aGVsbG8=\"", SV_BLOB);
    expect_bad(KIND_BLOB, "\"not base64!\"", "base64");
}

static void test_blob_bytes(void **state)
{
    (void)state;
    struct owned_val out;
    struct err err = {0};
    assert_int_equal(convert(KIND_BLOB, "\"AAEC\"", &out, &err), FERRY_OK);
    assert_int_equal(out.val.len, 3);
    assert_memory_equal(out.val.s, "\x00\x01\x02", 3);
    values_release(&out);
    assert_int_equal(convert(KIND_BLOB, "\"aGk=\"", &out, &err), FERRY_OK);
    assert_int_equal(out.val.len, 2);
    assert_memory_equal(out.val.s, "hi", 2);
    values_release(&out);
}

static void test_pk_text(void **state)
{
    (void)state;
    char *out = NULL;
    struct err err = {0};
    json_t *i = json_integer(-7), *s = json_string("abc"), *e = json_string(""),
           *r = json_real(1.5);
    assert_int_equal(values_pk_text(KIND_INTEGER, i, &out, &err), FERRY_OK);
    assert_string_equal(out, "-7");
    free(out);
    assert_int_equal(values_pk_text(KIND_TEXT, s, &out, &err), FERRY_OK);
    assert_string_equal(out, "abc");
    free(out);
    assert_int_equal(values_pk_text(KIND_TEXT, e, &out, &err), FERRY_ERR);
    assert_int_equal(values_pk_text(KIND_INTEGER, s, &out, &err), FERRY_ERR);
    assert_int_equal(values_pk_text(KIND_INTEGER, r, &out, &err), FERRY_ERR);
    assert_int_equal(values_pk_text(KIND_TEXT, i, &out, &err), FERRY_ERR);
    assert_null(out);
    json_decref(i);
    json_decref(s);
    json_decref(e);
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_of),
        cmocka_unit_test(test_from_json),
        cmocka_unit_test(test_blob_bytes),
        cmocka_unit_test(test_pk_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
