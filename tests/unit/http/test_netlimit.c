/* test_netlimit.c - unit tests for src/http/netlimit.c: an IPv6 /64 gets one address's
 * share of connections whatever address of it connects; IPv4 (and IPv4-mapped IPv6) is
 * left to libmicrohttpd's own per-address count. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/netlimit.h"

static struct sockaddr_in6 v6(const char *text)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, text, &sa.sin6_addr), 1);
    return sa;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void test_one_network_shares_one_limit(void **state)
{
    (void)state;
    struct netlimit *nl = netlimit_new(3);
    const char *same[] = {"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"};
    for (int i = 0; i < 3; i++) {
        struct sockaddr_in6 a = v6(same[i]);
        assert_true(netlimit_admits(nl, SA(a)));
        netlimit_opened(nl, SA(a));
    }
    struct sockaddr_in6 fourth = v6("2001:db8:1:2:1234::77"), other = v6("2001:db8:1:3::1");
    assert_false(netlimit_admits(nl, SA(fourth))); /* a new address of the same /64 */
    assert_true(netlimit_admits(nl, SA(other)));   /* the next /64 is another client */
    struct sockaddr_in6 first = v6(same[0]);
    netlimit_closed(nl, SA(first));
    assert_true(netlimit_admits(nl, SA(fourth)));
    netlimit_free(nl);
}

static void test_ipv4_and_mapped_are_not_counted(void **state)
{
    (void)state;
    struct netlimit *nl = netlimit_new(1);
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    struct sockaddr_in6 mapped = v6("::ffff:10.0.0.1");
    for (int i = 0; i < 5; i++) {
        assert_true(netlimit_admits(nl, SA(v4)));
        netlimit_opened(nl, SA(v4));
        assert_true(netlimit_admits(nl, SA(mapped)));
        netlimit_opened(nl, SA(mapped));
    }
    netlimit_free(nl);
}

static void test_zero_means_no_limit(void **state)
{
    (void)state;
    struct netlimit *nl = netlimit_new(0);
    struct sockaddr_in6 a = v6("2001:db8::1");
    for (int i = 0; i < 100; i++) {
        assert_true(netlimit_admits(nl, SA(a)));
        netlimit_opened(nl, SA(a));
    }
    netlimit_free(nl);
    netlimit_free(NULL);
}

static void test_many_networks_come_and_go(void **state)
{
    (void)state;
    struct netlimit *nl = netlimit_new(2);
    char text[64];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 5000; i++) {
            snprintf(text, sizeof(text), "2001:db8:%x:%x::1", i >> 8, i & 0xff);
            struct sockaddr_in6 a = v6(text);
            assert_true(netlimit_admits(nl, SA(a)));
            netlimit_opened(nl, SA(a));
        }
        for (int i = 0; i < 5000; i++) {
            snprintf(text, sizeof(text), "2001:db8:%x:%x::1", i >> 8, i & 0xff);
            struct sockaddr_in6 a = v6(text);
            netlimit_closed(nl, SA(a));
        }
    }
    netlimit_free(nl);
}

static void test_failed_auth_key(void **state)
{
    (void)state;
    char key[80];
    netlimit_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", key, sizeof(key));
    assert_string_equal(key, "2001:db8:1:2::/64");
    netlimit_key("2001:db8:1:2::ffff", key, sizeof(key));
    assert_string_equal(key, "2001:db8:1:2::/64");
    netlimit_key("127.0.0.1", key, sizeof(key));
    assert_string_equal(key, "127.0.0.1");
    netlimit_key("::ffff:10.0.0.1", key, sizeof(key));
    assert_string_equal(key, "::ffff:10.0.0.1");
    netlimit_key("", key, sizeof(key));
    assert_string_equal(key, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_network_shares_one_limit),
        cmocka_unit_test(test_ipv4_and_mapped_are_not_counted),
        cmocka_unit_test(test_zero_means_no_limit),
        cmocka_unit_test(test_many_networks_come_and_go),
        cmocka_unit_test(test_failed_auth_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
