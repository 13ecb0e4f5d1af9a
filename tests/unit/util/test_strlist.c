/* test_strlist.c - unit tests for strlist_has in src/util/strlist.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util/strlist.h"

static void test_names_items_trimmed(void **state)
{
    (void)state;
    assert_true(strlist_has("a,b,c", "b"));
    assert_true(strlist_has(" a , b ,c ", "b"));
    assert_true(strlist_has("orders, catalog", "catalog"));
    assert_true(strlist_has("x", "x"));
}

static void test_no_partial_or_empty_match(void **state)
{
    (void)state;
    assert_false(strlist_has("orders,catalog", "order"));
    assert_false(strlist_has("orders,catalog", "catalogs"));
    assert_false(strlist_has("", "a"));
    assert_false(strlist_has(", ,", "a"));
    assert_false(strlist_has("a b,c", "a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_items_trimmed),
        cmocka_unit_test(test_no_partial_or_empty_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
