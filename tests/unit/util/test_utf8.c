/* test_utf8.c - utf8_scrub keeps valid UTF-8 and replaces every other byte with '?';
 * utf8_valid tells the two apart by the same rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "util/utf8.h"

static void expect(const char *in, const char *want)
{
    char buf[64];
    strcpy(buf, in);
    utf8_scrub(buf);
    assert_string_equal(buf, want);
}

static void test_scrub(void **state)
{
    (void)state;
    expect("plain ascii", "plain ascii");
    expect("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
           "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    expect("/\xff\xfe", "/??");
    expect("cut \xc3", "cut ?"); /* a sequence cut short at the end */
    expect("\xe2\x82", "??");
    expect("\xc0\xaf", "??");           /* overlong encoding of '/' */
    expect("\xed\xa0\x80", "???");      /* a UTF-16 surrogate */
    expect("\xf4\x90\x80\x80", "????"); /* above U+10FFFF */
    expect("a\x80z", "a?z");            /* a lone continuation byte */
}

static void test_valid(void **state)
{
    (void)state;
    static const char *const good[] = {"", "plain ascii, longer than eight bytes",
                                       "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 and more text",
                                       "\xf4\x8f\xbf\xbf"};
    static const char *const bad[] = {"eight ok\xff",     "\xc0\xaf", "\xed\xa0\x80",
                                      "\xf4\x90\x80\x80", "a\x80z",   "twelve bytes\xe2\x82"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(utf8_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(utf8_valid(bad[i], strlen(bad[i])));
    assert_true(utf8_valid("a\0b", 3));      /* NUL is a character */
    assert_false(utf8_valid("\xc3\xa9", 1)); /* cut short by the length, not a NUL */
    assert_true(utf8_valid("\xc3\xa9", 2));
    /* past the 32-byte ASCII blocks: a bad byte, and a character across a block's end */
    char text[80];
    memset(text, 'a', sizeof(text));
    text[70] = '\xff';
    assert_false(utf8_valid(text, sizeof(text)));
    assert_true(utf8_valid(text, 70));
    memcpy(text + 31, "\xe2\x82\xac", 3);
    assert_true(utf8_valid(text, 70));
    text[33] = 'a';
    assert_false(utf8_valid(text, 70));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scrub),
        cmocka_unit_test(test_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
