/* test_feedshare.c - a kept page answers only the same key at a head no newer than its
 * own, a newer page replaces an older one (never the reverse), and large pages are not
 * kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "sync/feedshare.h"

static struct feedshare_page page_of(const char *text, int64_t head)
{
    return (struct feedshare_page){text, strlen(text), 1, head, false, head};
}

static void test_same_key_and_fresh_enough(void **state)
{
    (void)state;
    struct feedshare *s = feedshare_new();
    struct feedshare_page got, p = page_of("{\"seq\":5}", 5);
    struct buf out;
    buf_init(&out);
    buf_puts(&out, "[");
    assert_false(feedshare_get(s, "k1", 2, 0, &out, &got)); /* nothing kept yet */
    feedshare_put(s, "k1", 2, &p);
    assert_false(feedshare_get(s, "k2", 2, 0, &out, &got)); /* another question */
    assert_false(feedshare_get(s, "k1", 2, 6, &out, &got)); /* older than asked for */
    assert_string_equal(out.data, "[");
    assert_true(feedshare_get(s, "k1", 2, 5, &out, &got));
    assert_string_equal(out.data, "[{\"seq\":5}");
    assert_int_equal(got.len, strlen("{\"seq\":5}"));
    assert_ptr_equal(got.text, out.data + 1);
    assert_int_equal(got.head, 5);
    assert_int_equal(got.next_cursor, 5);
    assert_int_equal(got.n, 1);

    /* a newer page replaces it; an older one offered later does not */
    struct feedshare_page newer = page_of("{\"seq\":7}", 7), older = page_of("{}", 3);
    feedshare_put(s, "k1", 2, &newer);
    feedshare_put(s, "k1", 2, &older);
    buf_cleanup(&out);
    assert_true(feedshare_get(s, "k1", 2, 6, &out, &got));
    assert_string_equal(out.data, "{\"seq\":7}");
    buf_cleanup(&out);
    feedshare_free(s);
    feedshare_free(NULL);
}

static void test_large_pages_are_not_kept(void **state)
{
    (void)state;
    struct feedshare *s = feedshare_new();
    struct buf big, out;
    struct feedshare_page got;
    buf_init(&big);
    buf_init(&out);
    for (int i = 0; i < 70000; i++)
        buf_puts(&big, "x");
    struct feedshare_page p = page_of(big.data, 1);
    feedshare_put(s, "k", 1, &p);
    assert_false(feedshare_get(s, "k", 1, 0, &out, &got));
    buf_cleanup(&big);
    buf_cleanup(&out);
    feedshare_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_key_and_fresh_enough),
        cmocka_unit_test(test_large_pages_are_not_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
