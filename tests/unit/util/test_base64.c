/* test_base64.c - the base64 codec: RFC 4648 vectors both ways, the url alphabet,
 * padding, bounds and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/base64.h"

/* RFC 4648 section 10. */
static const struct {
    const char *in, *std, *url;
} vectors[] = {
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};
#define N_VECTORS (sizeof(vectors) / sizeof(vectors[0]))

static void test_rfc4648_encode(void **state)
{
    (void)state;
    char out[16];
    for (size_t i = 0; i < N_VECTORS; i++) {
        size_t len = strlen(vectors[i].in);
        char *std = base64_encode(vectors[i].in, len);
        assert_string_equal(std, vectors[i].std);
        assert_int_equal(strlen(std), base64_encoded_len(len));
        free(std);
        assert_int_equal(base64_url_encode(vectors[i].in, len, out), strlen(vectors[i].url));
        assert_string_equal(out, vectors[i].url);
    }
}

static void test_rfc4648_decode(void **state)
{
    (void)state;
    char out[16];
    for (size_t i = 0; i < N_VECTORS; i++) {
        size_t want = strlen(vectors[i].in);
        memset(out, 'X', sizeof(out));
        assert_int_equal(base64_decode(vectors[i].std, strlen(vectors[i].std), out, sizeof(out)),
                         want);
        assert_memory_equal(out, vectors[i].in, want);
        assert_int_equal(
            base64_url_decode(vectors[i].url, strlen(vectors[i].url), out, sizeof(out)), want);
        assert_memory_equal(out, vectors[i].in, want);
    }
}

static void test_url_alphabet(void **state)
{
    (void)state;
    char out[16];
    unsigned char bytes[8];
    /* fb ff is "+/8=" in standard base64, "-_8" in base64url. */
    const unsigned char fb_ff[] = {0xfb, 0xff};
    assert_int_equal(base64_url_encode(fb_ff, sizeof(fb_ff), out), 3);
    assert_string_equal(out, "-_8");
    assert_int_equal(base64_url_decode("-_8", 3, bytes, sizeof(bytes)), 2);
    assert_memory_equal(bytes, fb_ff, 2);
    assert_int_equal(base64_decode("+/8=", 4, bytes, sizeof(bytes)), 2);
    assert_memory_equal(bytes, fb_ff, 2);
    /* Each alphabet refuses the other's letters, and base64url has no padding. */
    assert_int_equal(base64_url_decode("+/8", 3, bytes, sizeof(bytes)), -1);
    assert_int_equal(base64_url_decode("Zg==", 4, bytes, sizeof(bytes)), -1);
    assert_int_equal(base64_decode("-_8=", 4, bytes, sizeof(bytes)), -1);
}

static void test_binary_and_bounds(void **state)
{
    (void)state;
    unsigned char zeros[4] = {0}, out[4];
    char *text = base64_encode(zeros, sizeof(zeros));
    assert_string_equal(text, "AAAAAA==");
    assert_int_equal(base64_decode(text, strlen(text), out, sizeof(out)), 4);
    assert_memory_equal(out, zeros, 4);
    /* Exactly cap bytes fit; one more does not. */
    assert_int_equal(base64_decode(text, strlen(text), out, 3), -1);
    free(text);
    assert_int_equal(base64_decode("Zm9v", 4, out, 3), 3);
    assert_int_equal(base64_decode("Zm9vYg==", 8, out, 3), -1);
}

static void test_refusals(void **state)
{
    (void)state;
    unsigned char out[16];
    static const char *bad[] = {"Zg=",   "Zm9",   "Z===", "Zg=a",   "Zm 9v",
                                " Zm9v", "Zm9v ", "Zm9*", "Zm9v\n", "=Zm9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(base64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1);
    assert_int_equal(base64_url_decode("Z", 1, out, sizeof(out)), -1);
    assert_int_equal(base64_url_decode("Zm9v*", 5, out, sizeof(out)), -1);
    assert_int_equal(base64_decode("", 0, out, 0), 0);
    assert_int_equal(base64_url_decode("", 0, out, 0), 0);
}

static void test_token_length(void **state)
{
    (void)state;
    unsigned char raw[32];
    char out[44];
    memset(raw, 0xa5, sizeof(raw));
    assert_int_equal(base64_url_encode(raw, sizeof(raw), out), 43);
    for (size_t i = 0; i < 43; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", out[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_encode), cmocka_unit_test(test_rfc4648_decode),
        cmocka_unit_test(test_url_alphabet),   cmocka_unit_test(test_binary_and_bounds),
        cmocka_unit_test(test_refusals),       cmocka_unit_test(test_token_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
