/* test_crypto.c - unit tests for src/util/crypto.c against published vectors
 * (FIPS 180-2 for SHA-256) and for the random helpers. */
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
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_random_hex),
        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
