/* test_sites.c - the parts of site-to-site sync that need no server: scrypt passwords,
 * IP allowlists with CIDR ranges, allowed and excluded tables, the remote API's URL,
 * and the refusal of private addresses before any connection is made. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sites/siteclient.h"
#include "sites/sites.h"
#include "util/timeutil.h"

static void test_password(void **state)
{
    (void)state;
    char *hash = sites_password_hash("correct horse");
    char *again = sites_password_hash("correct horse");
    assert_int_equal(strncmp(hash, "scrypt$15$8$1$", 14), 0);
    assert_string_not_equal(hash, again); /* salted */
    assert_true(sites_password_check(hash, "correct horse"));
    assert_true(sites_password_check(again, "correct horse"));
    assert_false(sites_password_check(hash, "correct horsf"));
    assert_false(sites_password_check(hash, ""));
    assert_false(sites_password_check(NULL, "correct horse"));
    assert_false(sites_password_check("plain", "plain"));
    assert_false(sites_password_check("scrypt$40$8$1$AAAA$AAAA", "x")); /* absurd cost */
    free(hash);
    free(again);
}

static void test_ip_allowlist(void **state)
{
    (void)state;
    struct site s = {0};
    assert_true(sites_ip_allowed(&s, "203.0.113.9")); /* no list: everyone */
    s.ip_allowlist = "10.0.0.0/8,192.0.2.7,2001:db8::/32";
    assert_true(sites_ip_allowed(&s, "10.200.3.4"));
    assert_true(sites_ip_allowed(&s, "::ffff:10.1.2.3"));
    assert_true(sites_ip_allowed(&s, "192.0.2.7"));
    assert_false(sites_ip_allowed(&s, "192.0.2.8"));
    assert_false(sites_ip_allowed(&s, "11.0.0.1"));
    assert_true(sites_ip_allowed(&s, "2001:db8:1::5"));
    assert_false(sites_ip_allowed(&s, "2001:db9::5"));
    assert_false(sites_ip_allowed(&s, "unknown"));
    s.ip_allowlist = "172.16.0.0/12";
    assert_true(sites_ip_allowed(&s, "172.31.255.255"));
    assert_false(sites_ip_allowed(&s, "172.32.0.0"));
}

static void test_tables(void **state)
{
    (void)state;
    struct site s = {0};
    assert_true(sites_table_allowed(&s, "posts"));
    s.excluded_tables = "users,secrets";
    assert_false(sites_table_allowed(&s, "users"));
    assert_true(sites_table_allowed(&s, "user"));
    s.allowed_tables = "posts,users";
    assert_true(sites_table_allowed(&s, "posts"));
    assert_false(sites_table_allowed(&s, "users")); /* excluded wins */
    assert_false(sites_table_allowed(&s, "comments"));
}

static void test_urls(void **state)
{
    (void)state;
    char *u = siteclient_url("https://b.example", "pull-data");
    assert_string_equal(u, "https://b.example/phoenix_kit/sync/api/pull-data");
    free(u);
    u = siteclient_url("https://b.example/", "status");
    assert_string_equal(u, "https://b.example/phoenix_kit/sync/api/status");
    free(u);
    u = siteclient_url("http://b.example:4000/custom", "status");
    assert_string_equal(u, "http://b.example:4000/custom/sync/api/status");
    free(u);
}

static void test_valid_url(void **state)
{
    (void)state;
    assert_true(sites_valid_url("http://a.example"));
    assert_true(sites_valid_url("https://a.example:4000/custom"));
    assert_true(sites_valid_url("HTTPS://A.EXAMPLE/"));
    assert_false(sites_valid_url("file:///etc/passwd"));
    assert_false(sites_valid_url("javascript:alert(1)"));
    assert_false(sites_valid_url("ftp://a.example"));
    assert_false(sites_valid_url("http://"));
    assert_false(sites_valid_url("a.example"));
    assert_false(sites_valid_url(""));
}

static void test_private_addresses_refused(void **state)
{
    (void)state;
    static const char *refused[] = {"http://127.0.0.1:1",        "http://10.1.2.3",
                                    "http://192.168.1.1",        "http://169.254.169.254",
                                    "http://[::1]:80",           "http://[fd00::1]",
                                    "http://[::ffff:127.0.0.1]", "http://0.0.0.0"};
    struct siteclient_options o = {.allow_private = false, .timeout_s = 2};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        struct site_call call;
        struct err err = {0};
        assert_int_equal(siteclient_call(&o, refused[i], "status", NULL, &call, &err), FERRY_ERR);
        assert_int_equal(err.code, ERR_FORBIDDEN);
        assert_int_equal(call.status, 0);
    }
    struct site_call call;
    struct err err = {0};
    assert_int_equal(siteclient_call(&o, "ftp://b.example", "status", NULL, &call, &err),
                     FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
}

static void test_iso8601(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_int_equal(time_parse_iso8601("2024-01-15T10:30:00Z", &ms), 0);
    assert_int_equal(ms, 1705314600000LL);
    assert_int_equal(time_parse_iso8601("2024-01-15T10:30:00.25+00:00", &ms), 0);
    assert_int_equal(ms, 1705314600250LL);
    assert_int_equal(time_parse_iso8601("2024-01-15 10:30:00Z", &ms), -1);
    assert_int_equal(time_parse_iso8601("2024-13-15T10:30:00Z", &ms), -1);
    assert_int_equal(time_parse_iso8601("2024-01-15T10:30:00+02:00", &ms), -1);
}

int main(void)
{
    siteclient_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password),  cmocka_unit_test(test_ip_allowlist),
        cmocka_unit_test(test_tables),    cmocka_unit_test(test_urls),
        cmocka_unit_test(test_valid_url), cmocka_unit_test(test_private_addresses_refused),
        cmocka_unit_test(test_iso8601),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    siteclient_global_cleanup();
    return rc;
}
