/* test_whsign.c - unit tests for src/webhooks/whsign.c against the Standard Webhooks
 * specification's published test vector, and for the secrets it makes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/base64.h"
#include "webhooks/whsign.h"

#define VECTOR_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VECTOR_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VECTOR_TS 1614265330
#define VECTOR_BODY "{\"test\": 2432232314}"
#define VECTOR_SIGNATURE "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static void test_spec_vector(void **state)
{
    (void)state;
    char sig[WHSIGN_SIGNATURE_MAX];
    struct err err = {0};
    assert_int_equal(whsign_sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY,
                                 strlen(VECTOR_BODY), sig, &err),
                     FERRY_OK);
    assert_string_equal(sig, VECTOR_SIGNATURE);
}

static void test_every_part_is_signed(void **state)
{
    (void)state;
    char sig[WHSIGN_SIGNATURE_MAX];
    struct err err = {0};
    const char *body = VECTOR_BODY;
    /* another id, time, body or key each give another signature */
    assert_int_equal(
        whsign_sign(VECTOR_SECRET, "msg_other", VECTOR_TS, body, strlen(body), sig, &err),
        FERRY_OK);
    assert_string_not_equal(sig, VECTOR_SIGNATURE);
    assert_int_equal(
        whsign_sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS + 1, body, strlen(body), sig, &err),
        FERRY_OK);
    assert_string_not_equal(sig, VECTOR_SIGNATURE);
    assert_int_equal(
        whsign_sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, body, strlen(body) - 1, sig, &err),
        FERRY_OK);
    assert_string_not_equal(sig, VECTOR_SIGNATURE);
    assert_int_equal(whsign_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx", VECTOR_ID, VECTOR_TS,
                                 body, strlen(body), sig, &err),
                     FERRY_OK);
    assert_string_not_equal(sig, VECTOR_SIGNATURE);
}

static void test_bad_secrets(void **state)
{
    (void)state;
    char sig[WHSIGN_SIGNATURE_MAX] = "untouched";
    struct err err = {0};
    assert_int_equal(
        whsign_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", VECTOR_ID, VECTOR_TS, "{}", 2, sig, &err),
        FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_int_equal(whsign_sign("whsec_not base64!", VECTOR_ID, VECTOR_TS, "{}", 2, sig, &err),
                     FERRY_ERR);
    assert_int_equal(whsign_sign("whsec_", VECTOR_ID, VECTOR_TS, "{}", 2, sig, &err), FERRY_ERR);
    assert_string_equal(sig, "untouched");
}

static void test_new_secrets(void **state)
{
    (void)state;
    char a[WHSIGN_SECRET_MAX], b[WHSIGN_SECRET_MAX], sig[WHSIGN_SIGNATURE_MAX];
    unsigned char key[64];
    struct err err = {0};
    whsign_new_secret(a);
    whsign_new_secret(b);
    assert_memory_equal(a, "whsec_", 6);
    assert_string_not_equal(a, b);
    assert_int_equal(base64_decode(a + 6, strlen(a + 6), key, sizeof(key)), WHSIGN_KEY_BYTES);
    assert_int_equal(whsign_sign(a, "msg_1", 1, "{}", 2, sig, &err), FERRY_OK);
    assert_int_equal(strlen(sig), 3 + 44);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_vector),
        cmocka_unit_test(test_every_part_is_signed),
        cmocka_unit_test(test_bad_secrets),
        cmocka_unit_test(test_new_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
