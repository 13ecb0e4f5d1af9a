/* test_path.c - path confinement: lexical cleaning, root containment, and symlinks
 * that point out of a root, on a real temporary directory tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/path.h"

static char base[64]; /* temp dir holding root/ and outside/ */
static char root[128];

static int setup(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(base, sizeof(base), "/tmp/ferry-path-XXXXXX");
    if (!mkdtemp(base))
        return -1;
    snprintf(root, sizeof(root), "%s/root", base);
    snprintf(cmd, sizeof(cmd),
             "mkdir -p %s/root/sub %s/outside && echo x > %s/outside/secret &&"
             " ln -s ../outside %s/root/escape && ln -s sub %s/root/inside",
             base, base, base, base, base);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void expect_clean(const char *in, const char *want)
{
    char *out = NULL;
    struct err err = {0};
    assert_int_equal(path_clean_relative(in, &out, &err), FERRY_OK);
    assert_string_equal(out, want);
    free(out);
}

static void expect_unclean(const char *in, const char *msg_part)
{
    char *out = NULL;
    struct err err = {0};
    assert_int_equal(path_clean_relative(in, &out, &err), FERRY_ERR);
    assert_null(out);
    assert_int_equal(err.code, ERR_INVALID);
    assert_non_null(strstr(err.msg, msg_part));
}

static void test_clean_relative(void **state)
{
    (void)state;
    expect_clean("a/b/c.txt", "a/b/c.txt");
    expect_clean("a//b/./c", "a/b/c");
    expect_clean("./a/", "a");
    expect_clean("..a/b..", "..a/b..");
    expect_unclean("", "empty");
    expect_unclean("../etc/passwd", "'..'");
    expect_unclean("a/../../b", "'..'");
    expect_unclean("a/..", "'..'");
    expect_unclean("/etc/passwd", "relative");
    expect_unclean("a\\..\\b", "backslash");
    expect_unclean("a\nb", "control");
    expect_unclean("./.", "no file");
}

static void test_within(void **state)
{
    (void)state;
    assert_true(path_within("/data", "/data"));
    assert_true(path_within("/data", "/data/x"));
    assert_true(path_within("/data/", "/data/x"));
    assert_false(path_within("/data", "/dat"));
    assert_false(path_within("/data", "/database"));
    assert_false(path_within("/data", "/"));
    assert_true(path_within("/", "/anything"));
}

static void test_confine(void **state)
{
    (void)state;
    char *out = NULL, want[256];
    struct err err = {0};

    assert_int_equal(path_confine(root, "sub/new.txt", &out, &err), FERRY_OK);
    snprintf(want, sizeof(want), "%s/sub/new.txt", root);
    assert_string_equal(out, want);
    free(out);

    /* a symlink that stays inside is followed */
    assert_int_equal(path_confine(root, "inside/f", &out, &err), FERRY_OK);
    snprintf(want, sizeof(want), "%s/sub/f", root);
    assert_string_equal(out, want);
    free(out);

    /* a symlink out of the root is refused, for the link and anything under it */
    assert_int_equal(path_confine(root, "escape", &out, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_FORBIDDEN);
    assert_int_equal(path_confine(root, "escape/secret", &out, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_FORBIDDEN);
    assert_int_equal(path_confine(root, "escape/not-yet", &out, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_FORBIDDEN);
    assert_null(out);

    assert_int_equal(path_confine(root, "../outside/secret", &out, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
}

static void test_in_roots(void **state)
{
    (void)state;
    char *out = NULL, path[256], outside[256];
    struct err err = {0};
    const char *roots[] = {"/nonexistent-root", root};

    snprintf(path, sizeof(path), "%s/sub/x", root);
    assert_int_equal(path_in_roots(roots, 2, path, &out, &err), FERRY_OK);
    assert_string_equal(out, path);
    free(out);

    snprintf(outside, sizeof(outside), "%s/outside", base);
    assert_int_equal(path_in_roots(roots, 2, outside, &out, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_FORBIDDEN);

    snprintf(path, sizeof(path), "%s/escape/secret", root);
    assert_int_equal(path_in_roots(roots, 2, path, &out, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_FORBIDDEN);

    snprintf(path, sizeof(path), "%s/sub/../../outside", root);
    assert_int_equal(path_in_roots(roots, 2, path, &out, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);

    assert_int_equal(path_in_roots(roots, 2, "relative/path", &out, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_int_equal(path_in_roots(roots, 0, "/tmp", &out, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_FORBIDDEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_relative),
        cmocka_unit_test(test_within),
        cmocka_unit_test(test_confine),
        cmocka_unit_test(test_in_roots),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
