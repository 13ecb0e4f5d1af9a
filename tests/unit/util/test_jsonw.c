/* test_jsonw.c - the JSON writer prints what jansson's json_dumps(JSON_COMPACT) prints for
 * the same value, byte for byte: strings (every control character, quotes, backslashes,
 * multi-byte UTF-8), text jansson refuses (not UTF-8), integers to the int64 limits,
 * reals (and NaN and infinities as null). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "util/jsonw.h"

/* What jansson prints for v (NULL when v is NULL: jansson refused the value). */
static char *jansson_text(json_t *v)
{
    if (!v)
        return NULL;
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    return s;
}

static void same_text(const char *s)
{
    struct buf b;
    buf_init(&b);
    char *want = jansson_text(json_string(s));
    bool written = jsonw_text(&b, s);
    if (!want) {
        assert_false(written);
        assert_int_equal(b.len, 0);
    } else {
        assert_true(written);
        assert_string_equal(b.data, want);
    }
    free(want);
    buf_cleanup(&b);
}

static void test_strings(void **state)
{
    (void)state;
    char all[128];
    for (int c = 1; c < 128; c++) /* every ASCII byte, controls and DEL included */
        all[c - 1] = (char)c;
    all[127] = '\0';
    same_text(all);
    same_text("");
    same_text("plain");
    same_text(
        "quote \" backslash \\ slash / tab \t newline \n cr \r bs \b ff \f nul-free \x01\x1f");
    same_text("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf");
    same_text("\xe2\x80\xa8 line separator stays as it is");
}

static void test_not_utf8(void **state)
{
    (void)state;
    const char *bad[] = {
        "\xff",
        "a\x80z",
        "cut \xc3",
        "\xe2\x82",
        "\xc0\xaf",
        "\xc1\xbf",
        "\xe0\x80\xaf",
        "\xf0\x80\x80\xaf", /* overlong forms */
        "\xed\xa0\x80",
        "\xed\xbf\xbf", /* UTF-16 surrogates */
        "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80", /* above U+10FFFF */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(jsonw_utf8_valid(bad[i], strlen(bad[i])));
        same_text(bad[i]); /* jansson refuses every one of them too */
    }
    assert_true(jsonw_utf8_valid("\xed\x9f\xbf", 3)); /* U+D7FF, just below the surrogates */
}

static void same_int(int64_t v)
{
    struct buf b;
    buf_init(&b);
    char *want = jansson_text(json_integer(v));
    jsonw_int(&b, v);
    assert_string_equal(b.data, want);
    free(want);
    buf_cleanup(&b);
}

static void test_integers(void **state)
{
    (void)state;
    int64_t values[] = {
        0, 1, -1, 9, 10, 42, -42, 1000000, 9007199254740993LL, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        same_int(values[i]);
}

static void same_real(double d)
{
    struct buf b;
    buf_init(&b);
    char *want = jansson_text(json_real(d));
    jsonw_real(&b, d);
    assert_string_equal(b.data, want);
    free(want);
    buf_cleanup(&b);
}

static void test_reals(void **state)
{
    (void)state;
    double values[] = {0.0,
                       -0.0,
                       0.25,
                       0.1,
                       1.0,
                       100.0,
                       -3.5,
                       1e300,
                       1e-300,
                       1e-5,
                       1e21,
                       1e22,
                       123456789012345678.0,
                       5e-324,
                       1.7976931348623157e308,
                       2.5e-7,
                       3.14159,
                       -1e100};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        same_real(values[i]);
    /* JSON has no NaN or infinity: null, as values_to_json gives */
    double odd[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        struct buf b;
        buf_init(&b);
        jsonw_real(&b, odd[i]);
        assert_string_equal(b.data, "null");
        buf_cleanup(&b);
    }
}

static void test_values_and_truncate(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    json_t *v = json_pack("{s:[i, s, n, b], s:{s:f}}", "a", 1, "x\ny", false, "b", "c", 0.5);
    char *want = jansson_text(json_incref(v));
    jsonw_value(&b, v);
    assert_string_equal(b.data, want);
    size_t mark = b.len;
    jsonw_bool(&b, true);
    jsonw_truncate(&b, mark);
    assert_string_equal(b.data, want);
    jsonw_bool(&b, false);
    assert_int_equal(b.len, mark + 5);
    json_decref(v);
    free(want);
    buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_not_utf8),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_reals),
        cmocka_unit_test(test_values_and_truncate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
