/* test_url.c - URLs through libcurl's URL API: which are http(s) URLs with a host, their
 * paths, and paths replaced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "util/url.h"

static void expect_path(const char *url, const char *want)
{
    char *path = NULL;
    assert_true(url_parse_http(url, &path));
    assert_string_equal(path, want);
    free(path);
}

static void test_parse_http(void **state)
{
    (void)state;
    expect_path("https://b.example", "/");
    expect_path("https://b.example/", "/");
    expect_path("http://b.example:4000/custom/", "/custom/");
    expect_path("HTTP://B.example/a?x=1#f", "/a");
    expect_path("http://[::1]:8080/p", "/p");
    assert_true(url_parse_http("http://127.0.0.1:8080", NULL));
    static const char *bad[] = {"ftp://h", "h.example/x",       "http://", "mailto:a@b", "http//b",
                                "",        "file:///etc/passwd"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(url_parse_http(bad[i], NULL));
}

static void test_with_path(void **state)
{
    (void)state;
    char *u = url_with_path("https://b.example", "/phoenix_kit/sync/api/status");
    assert_string_equal(u, "https://b.example/phoenix_kit/sync/api/status");
    free(u);
    u = url_with_path("http://user:pw@b.example:4000/old?q=1#frag", "/new/path");
    assert_string_equal(u, "http://user:pw@b.example:4000/new/path");
    free(u);
    u = url_with_path("http://[::1]:8080/", "/x");
    assert_string_equal(u, "http://[::1]:8080/x");
    free(u);
    assert_null(url_with_path("not a url", "/x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_http),
        cmocka_unit_test(test_with_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
