/* test_utf8.c - utf8_scrub keeps valid UTF-8 and replaces every other byte with '?'. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scrub),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
