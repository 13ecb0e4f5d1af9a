/* test_json.c - unit tests for src/util/json.c: parsing with the depth cap and
 * duplicate-key refusal, the depth scan, and the typed field getters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/jsonutil.h"

/* Parses a NUL-terminated document; the caller decrefs *out. */
static int parse(const char *doc, int max_depth, json_t **out, struct err *err)
{
    return jsonutil_parse(doc, strlen(doc), max_depth, out, err);
}

static int depth(const char *doc)
{
    return jsonutil_depth(doc, strlen(doc));
}

/* --- jsonutil_parse ----------------------------------------------------------------- */

static void test_parse_valid_object(void **state)
{
    (void)state;
    struct err err = {0};
    json_t *v = NULL;

    assert_int_equal(parse("{\"name\": \"ferry\", \"n\": 3, \"ok\": true}", 32, &v, &err),
                     FERRY_OK);
    assert_non_null(v);
    assert_true(json_is_object(v));
    assert_int_equal(json_object_size(v), 3);
    assert_string_equal(json_string_value(json_object_get(v, "name")), "ferry");
    assert_int_equal(json_integer_value(json_object_get(v, "n")), 3);
    assert_true(json_is_true(json_object_get(v, "ok")));
    assert_int_equal(err.code, ERR_NONE);
    json_decref(v);
}

static void test_parse_any_value(void **state)
{
    (void)state;
    struct err err = {0};
    json_t *v = NULL;

    /* JSON_DECODE_ANY: a bare scalar is one JSON value too. */
    assert_int_equal(parse("42", 32, &v, &err), FERRY_OK);
    assert_true(json_is_integer(v));
    assert_int_equal(json_integer_value(v), 42);
    json_decref(v);
}

static void test_parse_empty_body(void **state)
{
    (void)state;
    struct err err = {0};
    json_t *v = (json_t *)&err; /* must be reset to NULL */

    assert_int_equal(jsonutil_parse("", 0, 32, &v, &err), FERRY_ERR);
    assert_null(v);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "request body is empty; a JSON value was expected");
}

static void test_parse_malformed_names_line_and_column(void **state)
{
    (void)state;
    struct err err = {0};
    json_t *v = (json_t *)&err;

    assert_int_equal(parse("{\n  \"a\": 1,\n  \"b\": tru\n}", 32, &v, &err), FERRY_ERR);
    assert_null(v);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "malformed JSON at line 3, column 10: invalid token near 'tru'");

    memset(&err, 0, sizeof(err));
    assert_int_equal(parse("{\"a\": }", 32, &v, &err), FERRY_ERR);
    assert_null(v);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "malformed JSON at line 1, column 7: unexpected token near '}'");

    memset(&err, 0, sizeof(err));
    assert_int_equal(parse("{\"a\":1} x", 32, &v, &err), FERRY_ERR);
    assert_null(v);
    assert_string_equal(err.msg,
                        "malformed JSON at line 1, column 9: end of file expected near 'x'");
}

static void test_parse_whitespace_only_is_malformed(void **state)
{
    (void)state;
    struct err err = {0};
    json_t *v = NULL;

    assert_int_equal(parse("   ", 32, &v, &err), FERRY_ERR);
    assert_null(v);
    assert_int_equal(err.code, ERR_INVALID);
    assert_non_null(strstr(err.msg, "malformed JSON at line 1, column 3"));
}

static void test_parse_duplicate_keys_refused(void **state)
{
    (void)state;
    struct err err = {0};
    json_t *v = (json_t *)&err;

    assert_int_equal(parse("{\"a\":1,\"a\":2}", 32, &v, &err), FERRY_ERR);
    assert_null(v);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg,
                        "malformed JSON at line 1, column 10: duplicate object key near '\"a\"'");

    /* The same key in two different objects is not a duplicate. */
    assert_int_equal(parse("[{\"a\":1},{\"a\":2}]", 32, &v, &err), FERRY_OK);
    assert_int_equal(json_array_size(v), 2);
    json_decref(v);
}

static void test_parse_depth_limit(void **state)
{
    (void)state;
    struct err err = {0};
    json_t *v = NULL;

    /* Depth 3 with a limit of 3 passes. */
    assert_int_equal(parse("{\"a\":[{\"b\":1}]}", 3, &v, &err), FERRY_OK);
    assert_non_null(v);
    json_decref(v);

    /* One deeper fails, before jansson sees it. */
    v = (json_t *)&err;
    assert_int_equal(parse("{\"a\":[{\"b\":[1]}]}", 3, &v, &err), FERRY_ERR);
    assert_null(v);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "JSON nesting is deeper than the limit of 3");
}

static void test_parse_depth_limit_ignores_strings(void **state)
{
    (void)state;
    struct err err = {0};
    json_t *v = NULL;

    /* Brackets inside strings and an escaped quote do not count: depth is 1. */
    const char *doc = "{\"k\": \"[[[{{{\\\"]]]{{{\", \"q\": \"\\\\\"}";
    assert_int_equal(depth(doc), 1);
    assert_int_equal(parse(doc, 1, &v, &err), FERRY_OK);
    assert_string_equal(json_string_value(json_object_get(v, "k")), "[[[{{{\"]]]{{{");
    assert_string_equal(json_string_value(json_object_get(v, "q")), "\\");
    json_decref(v);
}

static void test_parse_deep_array_at_exact_limit(void **state)
{
    (void)state;
    struct err err = {0};
    json_t *v = NULL;
    char doc[2 * 32 + 1];

    for (int i = 0; i < 32; i++) {
        doc[i] = '[';
        doc[32 + i] = ']';
    }
    doc[64] = '\0';
    assert_int_equal(depth(doc), 32);
    assert_int_equal(parse(doc, 32, &v, &err), FERRY_OK);
    json_decref(v);
    v = NULL;
    assert_int_equal(parse(doc, 31, &v, &err), FERRY_ERR);
    assert_null(v);
    assert_string_equal(err.msg, "JSON nesting is deeper than the limit of 31");
}

/* --- jsonutil_depth ------------------------------------------------------------------ */

static void test_depth_plain(void **state)
{
    (void)state;
    assert_int_equal(depth(""), 0);
    assert_int_equal(depth("42"), 0);
    assert_int_equal(depth("\"x\""), 0);
    assert_int_equal(depth("{}"), 1);
    assert_int_equal(depth("[]"), 1);
    assert_int_equal(depth("[[],[[]],[]]"), 3);
    assert_int_equal(depth("{\"a\":{\"b\":{}},\"c\":[]}"), 3);
    /* Siblings do not add up: the maximum, not the total, counts. */
    assert_int_equal(depth("[[1],[2],[3],[4]]"), 2);
}

static void test_depth_tricky_strings(void **state)
{
    (void)state;
    /* Brackets in a string. */
    assert_int_equal(depth("\"[[[[\""), 0);
    assert_int_equal(depth("[\"]]]]\", [1]]"), 2);
    /* An escaped quote does not end the string. */
    assert_int_equal(depth("[\"a\\\"[[[\"]"), 1);
    /* An escaped backslash followed by a quote does end it. */
    assert_int_equal(depth("[\"a\\\\\", [[1]]]"), 3);
    /* A string with a unicode escape. */
    assert_int_equal(depth("{\"\\u005b\": [\"\\u005d\"]}"), 2);
    /* Keys count as strings too. */
    assert_int_equal(depth("{\"{[{[\": 1}"), 1);
    /* Respects len: the scan stops at len, not at the NUL. */
    assert_int_equal(jsonutil_depth("[[[[", 2), 2);
    /* A backslash as the last byte must not read past len. */
    assert_int_equal(jsonutil_depth("[\"\\", 3), 1);
}

/* --- jsonutil_scan: the value count ---------------------------------------------- */

static size_t values(const char *doc)
{
    int d;
    size_t n;
    jsonutil_scan(doc, strlen(doc), &d, &n);
    return n;
}

static void test_scan_counts_values(void **state)
{
    (void)state;
    assert_int_equal(values(""), 0);
    assert_int_equal(values("42"), 1);
    assert_int_equal(values("[]"), 1);
    assert_int_equal(values("[ ]"), 1);
    assert_int_equal(values("{}"), 1);
    assert_int_equal(values("[1, 2, 3]"), 4);
    assert_int_equal(values("[{},{},{}]"), 4);
    /* keys are not values; commas between members do not count twice */
    assert_int_equal(values("{\"a\": 1, \"b\": [true, null]}"), 5);
    assert_int_equal(values("[[], [[]], {\"x\": []}]"), 6);
    /* commas and colons in strings are text */
    assert_int_equal(values("[\",:,\", \"[\"]"), 3);
    /* found by fuzz_json: more closing than opening brackets (malformed) */
    assert_int_equal(depth("}},[[]"), 2);
}

static void test_parse_capped_refuses_many_values(void **state)
{
    (void)state;
    struct err err = {0};
    json_t *v = NULL;
    const char *doc = "[{},{},{},{}]";
    assert_int_equal(jsonutil_parse_capped(doc, strlen(doc), 32, 4, &v, &err), FERRY_ERR);
    assert_null(v);
    assert_int_equal(err.code, ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "4 values"));
    assert_int_equal(jsonutil_parse_capped(doc, strlen(doc), 32, 5, &v, &err), FERRY_OK);
    json_decref(v);
}

/* --- getters --------------------------------------------------------------------- */

static json_t *load(const char *doc)
{
    json_error_t jerr;
    json_t *v = json_loads(doc, 0, &jerr);
    assert_non_null(v);
    return v;
}

static const char getter_doc[] = "{\"s\": \"text\", \"i\": -7, \"b\": false, \"a\": [1, 2],"
                                 " \"o\": {\"x\": 1}, \"n\": null, \"r\": 1.5,"
                                 " \"limit\": \"10\", \"big\": 9007199254740993}";

static void test_get_string(void **state)
{
    (void)state;
    json_t *obj = load(getter_doc);
    struct err err = {0};
    const char *s = "keep";

    assert_int_equal(jsonutil_get_string(obj, "s", true, &s, &err), FERRY_OK);
    assert_string_equal(s, "text");

    s = "keep";
    assert_int_equal(jsonutil_get_string(obj, "absent", false, &s, &err), FERRY_OK);
    assert_string_equal(s, "keep");
    assert_int_equal(jsonutil_get_string(obj, "n", false, &s, &err), FERRY_OK);
    assert_string_equal(s, "keep");

    assert_int_equal(jsonutil_get_string(obj, "x", true, &s, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "field 'x' is required");
    assert_string_equal(s, "keep");

    assert_int_equal(jsonutil_get_string(obj, "n", true, &s, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'n' is required");

    assert_int_equal(jsonutil_get_string(obj, "i", false, &s, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "field 'i' must be a string, not an integer");
    assert_string_equal(s, "keep");
    json_decref(obj);
}

static void test_get_int(void **state)
{
    (void)state;
    json_t *obj = load(getter_doc);
    struct err err = {0};
    int64_t i = 99;

    assert_int_equal(jsonutil_get_int(obj, "i", true, &i, &err), FERRY_OK);
    assert_int_equal(i, -7);
    assert_int_equal(jsonutil_get_int(obj, "big", true, &i, &err), FERRY_OK);
    assert_true(i == INT64_C(9007199254740993));

    i = 99;
    assert_int_equal(jsonutil_get_int(obj, "absent", false, &i, &err), FERRY_OK);
    assert_int_equal(i, 99);
    assert_int_equal(jsonutil_get_int(obj, "n", false, &i, &err), FERRY_OK);
    assert_int_equal(i, 99);

    assert_int_equal(jsonutil_get_int(obj, "limit", false, &i, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "field 'limit' must be an integer, not a string");
    assert_int_equal(i, 99);

    assert_int_equal(jsonutil_get_int(obj, "r", false, &i, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'r' must be an integer, not a number");
    assert_int_equal(jsonutil_get_int(obj, "b", false, &i, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'b' must be an integer, not a boolean");
    assert_int_equal(jsonutil_get_int(obj, "a", false, &i, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'a' must be an integer, not an array");
    assert_int_equal(jsonutil_get_int(obj, "o", false, &i, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'o' must be an integer, not an object");

    assert_int_equal(jsonutil_get_int(obj, "limit2", true, &i, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'limit2' is required");
    json_decref(obj);
}

static void test_get_bool(void **state)
{
    (void)state;
    json_t *obj = load(getter_doc);
    struct err err = {0};
    bool b = true;

    assert_int_equal(jsonutil_get_bool(obj, "b", true, &b, &err), FERRY_OK);
    assert_false(b);

    b = true;
    assert_int_equal(jsonutil_get_bool(obj, "absent", false, &b, &err), FERRY_OK);
    assert_true(b);

    assert_int_equal(jsonutil_get_bool(obj, "s", false, &b, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "field 's' must be a boolean, not a string");
    /* 0/1 are not booleans. */
    assert_int_equal(jsonutil_get_bool(obj, "i", false, &b, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'i' must be a boolean, not an integer");
    assert_true(b);

    assert_int_equal(jsonutil_get_bool(obj, "n", true, &b, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'n' is required");
    json_decref(obj);
}

static void test_get_array_and_object(void **state)
{
    (void)state;
    json_t *obj = load(getter_doc);
    struct err err = {0};
    json_t *a = NULL, *o = NULL;

    assert_int_equal(jsonutil_get_array(obj, "a", true, &a, &err), FERRY_OK);
    assert_ptr_equal(a, json_object_get(obj, "a"));
    assert_int_equal(json_array_size(a), 2);

    assert_int_equal(jsonutil_get_object(obj, "o", true, &o, &err), FERRY_OK);
    assert_ptr_equal(o, json_object_get(obj, "o"));
    assert_int_equal(json_integer_value(json_object_get(o, "x")), 1);

    a = NULL;
    o = NULL;
    assert_int_equal(jsonutil_get_array(obj, "absent", false, &a, &err), FERRY_OK);
    assert_null(a);
    assert_int_equal(jsonutil_get_object(obj, "n", false, &o, &err), FERRY_OK);
    assert_null(o);

    assert_int_equal(jsonutil_get_array(obj, "o", false, &a, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'o' must be an array, not an object");
    assert_int_equal(jsonutil_get_object(obj, "a", false, &o, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'a' must be an object, not an array");
    assert_int_equal(jsonutil_get_object(obj, "r", false, &o, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'r' must be an object, not a number");
    assert_null(a);
    assert_null(o);

    assert_int_equal(jsonutil_get_array(obj, "items", true, &a, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "field 'items' is required");
    assert_int_equal(jsonutil_get_object(obj, "meta", true, &o, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'meta' is required");
    json_decref(obj);
}

static void test_get_on_non_object(void **state)
{
    (void)state;
    json_t *arr = load("[1, 2]");
    struct err err = {0};
    int64_t i = 5;

    /* A non-object has no fields: optional ones are absent, required ones missing. */
    assert_int_equal(jsonutil_get_int(arr, "limit", false, &i, &err), FERRY_OK);
    assert_int_equal(i, 5);
    assert_int_equal(jsonutil_get_int(arr, "limit", true, &i, &err), FERRY_ERR);
    assert_string_equal(err.msg, "field 'limit' is required");
    assert_int_equal(jsonutil_get_int(NULL, "limit", false, &i, &err), FERRY_OK);
    json_decref(arr);
}

static void test_to_string(void **state)
{
    (void)state;
    json_t *obj = load("{\"a\": [1, 2], \"b\": \"x\"}");
    char *s = jsonutil_to_string(obj);
    assert_string_equal(s, "{\"a\":[1,2],\"b\":\"x\"}");
    free(s);
    json_decref(obj);

    json_t *str = json_string("hi");
    s = jsonutil_to_string(str);
    assert_string_equal(s, "\"hi\"");
    free(s);
    json_decref(str);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid_object),
        cmocka_unit_test(test_parse_any_value),
        cmocka_unit_test(test_parse_empty_body),
        cmocka_unit_test(test_parse_malformed_names_line_and_column),
        cmocka_unit_test(test_parse_whitespace_only_is_malformed),
        cmocka_unit_test(test_parse_duplicate_keys_refused),
        cmocka_unit_test(test_parse_depth_limit),
        cmocka_unit_test(test_parse_depth_limit_ignores_strings),
        cmocka_unit_test(test_parse_deep_array_at_exact_limit),
        cmocka_unit_test(test_depth_plain),
        cmocka_unit_test(test_depth_tricky_strings),
        cmocka_unit_test(test_scan_counts_values),
        cmocka_unit_test(test_parse_capped_refuses_many_values),
        cmocka_unit_test(test_get_string),
        cmocka_unit_test(test_get_int),
        cmocka_unit_test(test_get_bool),
        cmocka_unit_test(test_get_array_and_object),
        cmocka_unit_test(test_get_on_non_object),
        cmocka_unit_test(test_to_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
