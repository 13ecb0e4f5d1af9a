/* test_proxies.c - unit tests for src/http/proxies.c: parsing trusted-proxies, and the
 * client address taken from X-Forwarded-For and Forwarded behind trusted proxies only. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/proxies.h"

static struct proxies *parse_for(const char *list, const char *header)
{
    struct proxies *p = NULL;
    struct err err = {0};
    if (proxies_parse(list, header, &p, &err) != FERRY_OK)
        fail_msg("'%s' refused: %s", list, err.msg);
    return p;
}

static struct proxies *parse(const char *list)
{
    return parse_for(list, "x-forwarded-for");
}

/* The client address for a peer (text) and the chain header's value. */
static const char *client(const struct proxies *p, const char *peer, const char *chain)
{
    static char out[PROXIES_ADDR_LEN];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(peer, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, peer, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, peer, &a->sin_addr), 1);
    }
    proxies_client_addr(p, (struct sockaddr *)&ss, chain, out, sizeof(out));
    return out;
}

static void test_parse(void **state)
{
    (void)state;
    struct proxies *p = NULL;
    struct err err;
    assert_int_equal(proxies_parse(NULL, NULL, &p, &err), FERRY_OK);
    assert_null(p);
    assert_int_equal(proxies_parse(" , ", "Forwarded", &p, &err), FERRY_OK);
    assert_null(p);
    static const char *const bad[] = {"10.0.0.0/33",   "::/129",     "10.0.0.1/", "10.0.0.1/x",
                                      "proxy.example", "10.0.0.256", "1.2.3.4/-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (proxies_parse(bad[i], NULL, &p, &err) == FERRY_OK)
            fail_msg("'%s' was accepted", bad[i]);
        assert_non_null(strstr(err.msg, "trusted-proxies"));
    }
    assert_int_equal(proxies_parse("10.0.0.1", "x-real-ip", &p, &err), FERRY_ERR);
    assert_string_equal(err.msg, "forwarded-header must be x-forwarded-for or forwarded");
    p = parse("10.0.0.0/8, 192.168.1.7 ,fd00::/8,::1,::ffff:172.16.0.0/108");
    assert_string_equal(proxies_header_name(p), "X-Forwarded-For");
    proxies_free(p);
    p = parse_for("10.0.0.1", "FORWARDED");
    assert_string_equal(proxies_header_name(p), "Forwarded");
    proxies_free(p);
}

static void test_untrusted_peer_ignores_headers(void **state)
{
    (void)state;
    struct proxies *p = parse("10.0.0.0/8");
    assert_string_equal(client(p, "127.0.0.1", "203.0.113.1"), "127.0.0.1");
    assert_string_equal(client(NULL, "192.0.2.1", "203.0.113.1"), "192.0.2.1");
    proxies_free(p);
}

static void test_x_forwarded_for(void **state)
{
    (void)state;
    struct proxies *p = parse("10.0.0.0/8,2001:db8:ffff::/48");
    assert_string_equal(client(p, "10.0.0.1", "203.0.113.1"), "203.0.113.1");
    assert_string_equal(client(p, "10.0.0.1", NULL), "10.0.0.1");
    /* the right-most untrusted address: a client's own entries are to its left */
    assert_string_equal(client(p, "10.0.0.1", "1.1.1.1, 203.0.113.1"), "203.0.113.1");
    assert_string_equal(client(p, "10.0.0.1", "203.0.113.1, 10.9.9.9 ,10.1.1.1"), "203.0.113.1");
    /* every hop trusted: the left-most */
    assert_string_equal(client(p, "10.0.0.1", "10.2.2.2,10.3.3.3"), "10.2.2.2");
    /* ports, brackets, IPv6, upper case */
    assert_string_equal(client(p, "10.0.0.1", "203.0.113.1:5555"), "203.0.113.1");
    assert_string_equal(client(p, "10.0.0.1", "[2001:DB8::1]:443"), "2001:db8::1");
    assert_string_equal(client(p, "2001:db8:ffff::5", "2001:db8::1"), "2001:db8::1");
    /* garbage stops the walk at the proxy that reported it */
    assert_string_equal(client(p, "10.0.0.1", "203.0.113.1, bogus"), "10.0.0.1");
    assert_string_equal(client(p, "10.0.0.1", "203.0.113.1, , 10.1.1.1"), "10.1.1.1");
    assert_string_equal(client(p, "10.0.0.1", "fe80::1%eth0"), "10.0.0.1");
    proxies_free(p);
}

static void test_forwarded(void **state)
{
    (void)state;
    struct proxies *p = parse_for("10.0.0.0/8", "forwarded");
    assert_string_equal(client(p, "10.0.0.1", "for=192.0.2.60;proto=http;by=203.0.113.43"),
                        "192.0.2.60");
    assert_string_equal(client(p, "10.0.0.1", "For=\"[2001:db8:cafe::17]:4711\""),
                        "2001:db8:cafe::17");
    assert_string_equal(client(p, "10.0.0.1", "for=192.0.2.43, for=10.5.5.5"), "192.0.2.43");
    assert_string_equal(client(p, "10.0.0.1", "proto=https;for=192.0.2.7"), "192.0.2.7");
    assert_string_equal(client(p, "127.0.0.1", "for=203.0.113.1"), "127.0.0.1"); /* untrusted */
    assert_string_equal(client(p, "10.0.0.1", "for=unknown"), "10.0.0.1");
    assert_string_equal(client(p, "10.0.0.1", "for=_hidden, for=10.2.2.2"), "10.2.2.2");
    assert_string_equal(client(p, "10.0.0.1", "proto=https"), "10.0.0.1");
    proxies_free(p);
}

/* A client writes the left of the chain and the trusted proxy appends its peer after a
 * comma: a quote the client left open must not swallow that comma, or the client would
 * be taken for the proxy itself (and pass IP allowlists that name the proxy). */
static void test_client_quote_cannot_hide_its_hop(void **state)
{
    (void)state;
    struct proxies *p = parse("10.0.0.0/8");
    assert_string_equal(client(p, "10.0.0.1", "\", 203.0.113.9"), "203.0.113.9");
    assert_string_equal(client(p, "10.0.0.1", "9.9.9.9, \"x, 203.0.113.9"), "203.0.113.9");
    proxies_free(p);
    p = parse_for("10.0.0.0/8", "forwarded");
    assert_string_equal(client(p, "10.0.0.1", "for=\", for=203.0.113.9"), "203.0.113.9");
    assert_string_equal(client(p, "10.0.0.1", "for=1.2.3.4;x=\"a, for=203.0.113.9"), "203.0.113.9");
    proxies_free(p);
}

static void test_ipv4_mapped(void **state)
{
    (void)state;
    /* a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d */
    struct proxies *p = parse("127.0.0.1");
    assert_string_equal(client(p, "::ffff:127.0.0.1", "203.0.113.1"), "203.0.113.1");
    assert_string_equal(client(p, "::ffff:127.0.0.2", "203.0.113.1"), "127.0.0.2");
    proxies_free(p);
    p = parse("::ffff:10.0.0.0/104");
    assert_string_equal(client(p, "10.1.2.3", "203.0.113.1"), "203.0.113.1");
    proxies_free(p);
}

static void test_long_chain(void **state)
{
    (void)state;
    struct proxies *p = parse("10.0.0.0/8");
    char chain[4096] = "203.0.113.1";
    for (int i = 0; i < 100; i++)
        strcat(chain, ",10.0.0.9");
    /* only the right-most 32 hops are looked at: all trusted, so the left-most of those */
    assert_string_equal(client(p, "10.0.0.1", chain), "10.0.0.9");
    proxies_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_untrusted_peer_ignores_headers),
        cmocka_unit_test(test_x_forwarded_for),
        cmocka_unit_test(test_forwarded),
        cmocka_unit_test(test_client_quote_cannot_hide_its_hop),
        cmocka_unit_test(test_ipv4_mapped),
        cmocka_unit_test(test_long_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
