/* test_dispatch.c - unit tests for src/webhooks/dispatch.c's pure parts: the retry
 * schedule (doubling from the base, capped, jittered +-20%) and the target check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "webhooks/dispatch.h"

static void test_backoff_doubles_to_the_cap(void **state)
{
    (void)state;
    struct dispatch_options o = {.retry_base_ms = 5000, .retry_max_ms = 36000000};
    /* jitter 0.5 is the middle: no spread */
    assert_int_equal(dispatch_backoff_ms(&o, 1, 0.5), 5000);
    assert_int_equal(dispatch_backoff_ms(&o, 2, 0.5), 10000);
    assert_int_equal(dispatch_backoff_ms(&o, 5, 0.5), 80000);
    assert_int_equal(dispatch_backoff_ms(&o, 13, 0.5), 20480000);
    assert_int_equal(dispatch_backoff_ms(&o, 14, 0.5), 36000000);
    assert_int_equal(dispatch_backoff_ms(&o, 1000, 0.5), 36000000);
    /* the spread: -20% .. +20%, never past the cap */
    assert_int_equal(dispatch_backoff_ms(&o, 1, 0.0), 4000);
    assert_int_equal(dispatch_backoff_ms(&o, 1, 0.999999), 5999);
    assert_int_equal(dispatch_backoff_ms(&o, 40, 0.999999), 36000000);
    assert_int_equal(dispatch_backoff_ms(&o, 40, 0.0), 28800000);
}

static void test_targets(void **state)
{
    (void)state;
    struct err err = {0};
    const char *refused[] = {"http://127.0.0.1:8080/x", "http://localhost/x",
                             "http://[::1]/x",          "http://169.254.169.254/latest",
                             "http://10.0.0.1/",        "http://192.168.1.1/",
                             "http://[fe80::1]/",       "https://0.0.0.0/"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        assert_int_equal(dispatch_check_target(refused[i], false, &err), FERRY_ERR);
        assert_int_equal(err.code, ERR_INVALID);
        assert_non_null(strstr(err.msg, "private"));
        assert_int_equal(dispatch_check_target(refused[i], true, &err), FERRY_OK);
    }
    assert_int_equal(dispatch_check_target("http://93.184.215.14/hook", false, &err), FERRY_OK);
    assert_int_equal(dispatch_check_target("not a url", true, &err), FERRY_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_to_the_cap),
        cmocka_unit_test(test_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
