/* test_crypto.c - unit tests for src/util/crypto.c against published vectors
 * (FIPS 180-2 for SHA-256, RFC 4648 for base64) and for the random helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/crypto.h"

static void test_sha256_vectors(void **state)
{
    (void)state;
    char out[65];

    crypto_sha256_hex("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    crypto_sha256_hex("abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    crypto_sha256_hex(two_blocks, strlen(two_blocks), out);
    assert_string_equal(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

    /* len is honoured: only the first three bytes are hashed. */
    crypto_sha256_hex("abcdef", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(strlen(out), 64);
}

static void test_base64url_rfc4648(void **state)
{
    (void)state;
    /* RFC 4648 section 10, which has no '+' or '/' in it, minus the padding. */
    static const struct {
        const char *in;
        const char *want;
    } vectors[] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
    };
    char out[16];

    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        memset(out, 'X', sizeof(out));
        size_t n = crypto_base64url(vectors[i].in, strlen(vectors[i].in), out);
        assert_string_equal(out, vectors[i].want);
        assert_int_equal(n, strlen(vectors[i].want));
    }
}

static void test_base64url_alphabet(void **state)
{
    (void)state;
    char out[16];

    /* Standard base64 of fb ff is "+/8="; the url alphabet gives "-_8". */
    const unsigned char fb_ff[] = {0xfb, 0xff};
    assert_int_equal(crypto_base64url(fb_ff, sizeof(fb_ff), out), 3);
    assert_string_equal(out, "-_8");

    /* fb ef be: standard "++++", ff ff ff: "////". */
    const unsigned char plus[] = {0xfb, 0xef, 0xbe};
    assert_int_equal(crypto_base64url(plus, sizeof(plus), out), 4);
    assert_string_equal(out, "----");
    const unsigned char slash[] = {0xff, 0xff, 0xff};
    assert_int_equal(crypto_base64url(slash, sizeof(slash), out), 4);
    assert_string_equal(out, "____");

    /* Zero bytes are data, not terminators. */
    const unsigned char zeros[] = {0, 0, 0, 0};
    assert_int_equal(crypto_base64url(zeros, sizeof(zeros), out), 6);
    assert_string_equal(out, "AAAAAA");
}

static void test_base64url_token_length(void **state)
{
    (void)state;
    unsigned char raw[32];
    char out[4 * ((32 + 2) / 3) + 1];

    memset(raw, 0xa5, sizeof(raw));
    assert_int_equal(crypto_base64url(raw, sizeof(raw), out), 43);
    assert_int_equal(strlen(out), 43);
    for (size_t i = 0; i < 43; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", out[i]));
}

static void test_equal(void **state)
{
    (void)state;
    assert_true(crypto_equal("", ""));
    assert_true(crypto_equal("abc", "abc"));
    assert_false(crypto_equal("abc", "abd"));
    assert_false(crypto_equal("abc", "Abc"));
    assert_false(crypto_equal("abc", "ab"));
    assert_false(crypto_equal("ab", "abc"));
    assert_false(crypto_equal("", "a"));
    char a[65], b[65];
    crypto_sha256_hex("x", 1, a);
    crypto_sha256_hex("x", 1, b);
    assert_true(crypto_equal(a, b));
    b[63] = b[63] == '0' ? '1' : '0';
    assert_false(crypto_equal(a, b));
}

static void assert_hex(const char *s, size_t want_len)
{
    assert_int_equal(strlen(s), want_len);
    for (size_t i = 0; i < want_len; i++)
        assert_non_null(strchr("0123456789abcdef", s[i]));
}

static void test_random_hex(void **state)
{
    (void)state;
    char a[129], b[129];

    memset(a, 'X', sizeof(a));
    crypto_random_hex(a, 16);
    assert_hex(a, 32);
    assert_int_equal(a[33], 'X'); /* nothing written past the NUL */

    crypto_random_hex(b, 16);
    assert_hex(b, 32);
    assert_string_not_equal(a, b);

    crypto_random_hex(a, 64); /* the largest size */
    assert_hex(a, 128);

    crypto_random_hex(a, 0);
    assert_string_equal(a, "");
}

static void test_random_bytes(void **state)
{
    (void)state;
    unsigned char a[32], b[32], zero[32] = {0};

    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    crypto_random(a, sizeof(a));
    crypto_random(b, sizeof(b));
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, zero, sizeof(a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_base64url_rfc4648),
        cmocka_unit_test(test_base64url_alphabet),
        cmocka_unit_test(test_base64url_token_length),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_random_hex),
        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
