/* test_range.c - Range header parsing and If-None-Match lists (http/range.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http/range.h"

static void expect_range(const char *h, uint64_t size, uint64_t start, uint64_t len)
{
    uint64_t s = 99, l = 99;
    assert_int_equal(http_parse_range(h, size, &s, &l), RANGE_SERVE);
    assert_int_equal(s, start);
    assert_int_equal(l, len);
}

static void test_satisfiable(void **state)
{
    (void)state;
    expect_range("bytes=0-0", 10, 0, 1);
    expect_range("bytes=2-5", 10, 2, 4);
    expect_range("bytes=2-", 10, 2, 8);
    expect_range("bytes=2-999", 10, 2, 8); /* the end is clipped to the size */
    expect_range("bytes=-3", 10, 7, 3);
    expect_range("bytes=-30", 10, 0, 10); /* a suffix longer than the file: all of it */
    expect_range("bytes=9-9", 10, 9, 1);
}

static void test_unsatisfiable(void **state)
{
    (void)state;
    uint64_t s, l;
    assert_int_equal(http_parse_range("bytes=10-", 10, &s, &l), RANGE_UNSATISFIABLE);
    assert_int_equal(http_parse_range("bytes=10-20", 10, &s, &l), RANGE_UNSATISFIABLE);
    assert_int_equal(http_parse_range("bytes=-0", 10, &s, &l), RANGE_UNSATISFIABLE);
    assert_int_equal(http_parse_range("bytes=0-", 0, &s, &l), RANGE_UNSATISFIABLE);
}

static void test_ignored(void **state)
{
    (void)state;
    uint64_t s, l;
    const char *bad[] = {"bytes=5-2",  "bytes=a-b",  "bytes=1-2,4-5",
                         "items=0-1",  "bytes=",     "bytes=-",
                         "bytes= 1-2", "bytes=1-2x", "bytes=99999999999999999999-",
                         "bytes=--1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(http_parse_range(bad[i], 10, &s, &l), RANGE_IGNORE);
}

static void test_etag_lists(void **state)
{
    (void)state;
    assert_true(http_etag_listed("\"abc\"", "\"abc\""));
    assert_true(http_etag_listed("\"x\", \"abc\"", "\"abc\""));
    assert_true(http_etag_listed("W/\"abc\"", "\"abc\""));
    assert_true(http_etag_listed("*", "\"abc\""));
    assert_false(http_etag_listed("\"abcd\"", "\"abc\""));
    assert_false(http_etag_listed("\"ab\"", "\"abc\""));
    assert_false(http_etag_listed("abc", "\"abc\""));
    assert_false(http_etag_listed("", "\"abc\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_satisfiable),
        cmocka_unit_test(test_unsatisfiable),
        cmocka_unit_test(test_ignored),
        cmocka_unit_test(test_etag_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
