/* test_auth_jwt.c - unit tests for auth_verify_jwt in src/http/auth.c with an HS256
 * secret (the public-key algorithms: tests/unit/auth/test_jws.c). Tokens are made here
 * with libjwt, or by hand for the algorithms libjwt will not sign (none). */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jwt.h>

#include "config.h"
#include "http/auth.h"
#include "util/base64.h"
#include "util/crypto.h"

#define SECRET "correct horse battery staple"
#define NOW INT64_C(1700000000)
#define ABSENT LONG_MIN

/* Signs {sub, exp, nbf} (each left out when NULL / ABSENT) with alg and key. The caller
 * frees the token. */
static char *make_token(jwt_alg_t alg, const char *key, const char *sub, long exp, long nbf)
{
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    if (sub)
        assert_int_equal(jwt_add_grant(jwt, "sub", sub), 0);
    if (exp != ABSENT)
        assert_int_equal(jwt_add_grant_int(jwt, "exp", exp), 0);
    if (nbf != ABSENT)
        assert_int_equal(jwt_add_grant_int(jwt, "nbf", nbf), 0);
    assert_int_equal(jwt_add_grant_int(jwt, "iat", (long)NOW - 5), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *token = jwt_encode_str(jwt);
    assert_non_null(token);
    jwt_free(jwt);
    return token;
}

/* Signs an arbitrary claims document with HS256. */
static char *make_token_json(const char *claims)
{
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, claims), 0);
    assert_int_equal(
        jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    char *token = jwt_encode_str(jwt);
    assert_non_null(token);
    jwt_free(jwt);
    return token;
}

static char *b64(const char *text)
{
    char *out = xmalloc(4 * ((strlen(text) + 2) / 3) + 1);
    base64_url_encode(text, strlen(text), out);
    return out;
}

/* A token assembled by hand: base64url(header).base64url(payload).signature. */
static char *hand_token(const char *header, const char *payload, const char *signature)
{
    char *h = b64(header), *p = b64(payload);
    char *token = xasprintf("%s.%s.%s", h, p, signature);
    free(h);
    free(p);
    return token;
}

/* Verifies with a verifier built from settings as serve builds it: the secret, and
 * the given jwt-claims, jwt-issuer and jwt-audience (NULL: unset). */
static int verify_with(const char *token, const char *claims, const char *issuer,
                       const char *audience, struct credential *cred, struct err *err)
{
    struct config cfg;
    struct auth_jwt *j = NULL;
    memset(&cfg, 0, sizeof(cfg));
    cfg.jwt_secret = SECRET;
    cfg.jwt_user_claim = "sub";
    cfg.jwt_claims = (char *)claims;
    cfg.jwt_issuer = (char *)issuer;
    cfg.jwt_audience = (char *)audience;
    memset(err, 0, sizeof(*err));
    assert_int_equal(auth_jwt_open(&cfg, &j, err), FERRY_OK);
    assert_non_null(j);
    int rc = auth_verify_jwt(j, token, NOW, cred, err);
    auth_jwt_close(j);
    return rc;
}

static int verify(const char *token, struct credential *cred, struct err *err)
{
    return verify_with(token, NULL, NULL, NULL, cred, err);
}

static void assert_refused(const char *token, const char *want_msg)
{
    struct credential cred;
    struct err err;
    memset(&cred, 0x5a, sizeof(cred));
    if (verify(token, &cred, &err) != FERRY_ERR)
        fail_msg("token was accepted as %s; it must be refused", cred.id);
    assert_int_equal(err.code, ERR_UNAUTHORIZED);
    if (want_msg)
        assert_string_equal(err.msg, want_msg);
    assert_int_equal(cred.id[0], 0x5a); /* untouched */
}

static void test_valid(void **state)
{
    (void)state;
    char *token = make_token(JWT_ALG_HS256, SECRET, "user-42", NOW + 3600, NOW - 60);
    struct credential cred;
    struct err err;

    memset(&cred, 0x5a, sizeof(cred));
    assert_int_equal(verify(token, &cred, &err), FERRY_OK);
    assert_int_equal(cred.role, ROLE_USER);
    assert_string_equal(cred.id, "jwt:user-42");
    assert_string_equal(cred.user_id, "user-42");
    assert_string_equal(cred.device_id, "");
    free(token);
}

static void test_claims_kept_for_rules(void **state)
{
    (void)state;
    char *token = make_token_json("{\"sub\":\"u\",\"tenant_id\":\"acme\",\"org\":42,"
                                  "\"exp\":1800000000,\"roles\":[\"a\"],\"big\":1.5}");
    struct credential cred;
    struct err err;
    char value[64];

    assert_int_equal(verify(token, &cred, &err), FERRY_OK);
    assert_string_equal(cred.claims, "{\"org\":42,\"sub\":\"u\",\"tenant_id\":\"acme\"}");
    assert_int_equal(credential_claim(&cred, "tenant_id", value, sizeof(value)), FERRY_OK);
    assert_string_equal(value, "acme");
    assert_int_equal(credential_claim(&cred, "org", value, sizeof(value)), FERRY_OK);
    assert_string_equal(value, "42");
    assert_int_equal(credential_claim(&cred, "roles", value, sizeof(value)), FERRY_ERR);
    assert_int_equal(credential_claim(&cred, "exp", value, sizeof(value)), FERRY_ERR);
    assert_int_equal(credential_claim(&cred, "tenant_id", value, 4), FERRY_ERR);
    free(token);
}

/* jwt-claims keeps only the listed claims for the rules. */
static void test_claims_filtered(void **state)
{
    (void)state;
    char *token = make_token_json("{\"sub\":\"u\",\"tenant_id\":\"acme\",\"org\":42,"
                                  "\"secret_flag\":\"x\"}");
    struct credential cred;
    struct err err;
    char value[64];

    assert_int_equal(verify_with(token, "tenant_id, org", NULL, NULL, &cred, &err), FERRY_OK);
    assert_string_equal(cred.claims, "{\"org\":42,\"tenant_id\":\"acme\"}");
    assert_int_equal(credential_claim(&cred, "secret_flag", value, sizeof(value)), FERRY_ERR);
    assert_int_equal(credential_claim(&cred, "sub", value, sizeof(value)), FERRY_ERR);
    free(token);
}

/* jwt-issuer and jwt-audience, when set, must match (aud may be a list). */
static void test_issuer_and_audience(void **state)
{
    (void)state;
    struct credential cred;
    struct err err;
    char *good =
        make_token_json("{\"sub\":\"u\",\"iss\":\"https://idp\",\"aud\":[\"x\",\"ferry\"]}");
    char *other_iss = make_token_json("{\"sub\":\"u\",\"iss\":\"https://evil\",\"aud\":\"ferry\"}");
    char *other_aud = make_token_json("{\"sub\":\"u\",\"iss\":\"https://idp\",\"aud\":\"other\"}");
    char *none = make_token_json("{\"sub\":\"u\"}");

    assert_int_equal(verify_with(good, NULL, "https://idp", "ferry", &cred, &err), FERRY_OK);
    assert_int_equal(verify_with(other_iss, NULL, "https://idp", "ferry", &cred, &err), FERRY_ERR);
    assert_string_equal(err.msg, "JWT issuer (iss) is not the configured one");
    assert_int_equal(verify_with(other_aud, NULL, "https://idp", "ferry", &cred, &err), FERRY_ERR);
    assert_string_equal(err.msg, "JWT audience (aud) does not name this server");
    assert_int_equal(verify_with(none, NULL, "https://idp", NULL, &cred, &err), FERRY_ERR);
    assert_int_equal(verify_with(none, NULL, NULL, "ferry", &cred, &err), FERRY_ERR);
    /* unchecked when not configured */
    assert_int_equal(verify_with(other_iss, NULL, NULL, NULL, &cred, &err), FERRY_OK);
    free(good);
    free(other_iss);
    free(other_aud);
    free(none);
}

static void test_valid_without_time_claims(void **state)
{
    (void)state;
    char *token = make_token(JWT_ALG_HS256, SECRET, "u", ABSENT, ABSENT);
    struct credential cred;
    struct err err;

    assert_int_equal(verify(token, &cred, &err), FERRY_OK);
    assert_string_equal(cred.id, "jwt:u");
    assert_string_equal(cred.user_id, "u");
    free(token);
}

static void test_wrong_secret(void **state)
{
    (void)state;
    char *token = make_token(JWT_ALG_HS256, "another secret", "user-42", NOW + 3600, ABSENT);
    assert_refused(token, "JWT signature or format is invalid");
    free(token);
}

static void test_tampered_payload(void **state)
{
    (void)state;
    char *token = make_token(JWT_ALG_HS256, SECRET, "user-42", NOW + 3600, ABSENT);
    char *first = strchr(token, '.'), *second = strchr(first + 1, '.');
    char *payload = b64("{\"sub\":\"admin\",\"exp\":1800000000}");
    char *forged = xasprintf("%.*s.%s%s", (int)(first - token), token, payload, second);

    assert_refused(forged, "JWT signature or format is invalid");
    free(forged);
    free(payload);
    free(token);
}

static void test_expired(void **state)
{
    (void)state;
    char *token = make_token(JWT_ALG_HS256, SECRET, "user-42", NOW - 1, ABSENT);
    assert_refused(token, "JWT has expired");
    free(token);

    /* exp is the first instant the token is no longer valid. */
    token = make_token(JWT_ALG_HS256, SECRET, "user-42", NOW, ABSENT);
    assert_refused(token, "JWT has expired");
    free(token);

    token = make_token(JWT_ALG_HS256, SECRET, "user-42", NOW + 1, ABSENT);
    struct credential cred;
    struct err err;
    assert_int_equal(verify(token, &cred, &err), FERRY_OK);
    free(token);
}

static void test_not_yet_valid(void **state)
{
    (void)state;
    char *token = make_token(JWT_ALG_HS256, SECRET, "user-42", NOW + 3600, NOW + 60);
    assert_refused(token, "JWT is not valid yet");
    free(token);

    /* nbf is the first instant the token is valid. */
    token = make_token(JWT_ALG_HS256, SECRET, "user-42", NOW + 3600, NOW);
    struct credential cred;
    struct err err;
    assert_int_equal(verify(token, &cred, &err), FERRY_OK);
    free(token);
}

/* RFC 7519 section 2: a NumericDate may be non-integer. A fractional nbf in the future
 * must still keep the token out. */
static void test_fractional_nbf_in_future(void **state)
{
    (void)state;
    char *token = make_token_json("{\"sub\": \"user-42\", \"nbf\": 4102444800.5}");
    struct credential cred;
    struct err err;
    int rc = verify(token, &cred, &err);
    free(token);
    if (rc != FERRY_ERR)
        fail_msg("a token with nbf 4102444800.5 (year 2100) was accepted as %s", cred.id);
    assert_int_equal(err.code, ERR_UNAUTHORIZED);
    assert_string_equal(err.msg, "JWT is not valid yet");
}

static void test_fractional_exp_in_future(void **state)
{
    (void)state;
    char *token = make_token_json("{\"sub\": \"user-42\", \"exp\": 4102444800.5}");
    struct credential cred;
    struct err err;
    int rc = verify(token, &cred, &err);
    free(token);
    if (rc != FERRY_OK)
        fail_msg("a token with exp 4102444800.5 (year 2100) was refused: %s", err.msg);
    assert_string_equal(cred.user_id, "user-42");

    token = make_token_json("{\"sub\": \"user-42\", \"exp\": 1600000000.5}");
    assert_refused(token, "JWT has expired");
    free(token);
}

static void test_no_usable_sub(void **state)
{
    (void)state;
    char *token = make_token(JWT_ALG_HS256, SECRET, NULL, NOW + 3600, ABSENT);
    assert_refused(token, "JWT has no usable sub claim");
    free(token);

    token = make_token(JWT_ALG_HS256, SECRET, "", NOW + 3600, ABSENT);
    assert_refused(token, "JWT has no usable sub claim");
    free(token);

    token = make_token_json("{\"sub\": 42}");
    assert_refused(token, "JWT has no usable sub claim");
    free(token);

    /* A sub that would not fit user_id (128 bytes with its NUL). */
    char long_sub[129];
    memset(long_sub, 'u', 128);
    long_sub[128] = '\0';
    token = make_token(JWT_ALG_HS256, SECRET, long_sub, ABSENT, ABSENT);
    assert_refused(token, "JWT has no usable sub claim");
    free(token);

    /* 127 characters fit. */
    long_sub[127] = '\0';
    token = make_token(JWT_ALG_HS256, SECRET, long_sub, ABSENT, ABSENT);
    struct credential cred;
    struct err err;
    assert_int_equal(verify(token, &cred, &err), FERRY_OK);
    assert_string_equal(cred.user_id, long_sub);
    free(token);
}

static void test_alg_none(void **state)
{
    (void)state;
    char *token = hand_token("{\"alg\":\"none\",\"typ\":\"JWT\"}",
                             "{\"sub\":\"admin\",\"exp\":1800000000}", "");
    assert_refused(token, NULL);
    free(token);

    token = hand_token("{\"alg\":\"None\",\"typ\":\"JWT\"}", "{\"sub\":\"admin\"}", "");
    assert_refused(token, NULL);
    free(token);

    /* An alg-none header with a signature stuck on. */
    token = hand_token("{\"alg\":\"none\"}", "{\"sub\":\"admin\"}", "c2lnbmF0dXJl");
    assert_refused(token, NULL);
    free(token);
}

static void test_other_hmac_algorithms(void **state)
{
    (void)state;
    char *token = make_token(JWT_ALG_HS512, SECRET, "user-42", NOW + 3600, ABSENT);
    assert_refused(token, "JWT algorithm must be HS256, RS256, ES256 or EdDSA");
    free(token);

    token = make_token(JWT_ALG_HS384, SECRET, "user-42", NOW + 3600, ABSENT);
    assert_refused(token, "JWT algorithm must be HS256, RS256, ES256 or EdDSA");
    free(token);
}

static void test_garbage(void **state)
{
    (void)state;
    static const char *const garbage[] = {
        "garbage",
        "",
        "a.b.c",
        "...",
        "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",
        "fy_notajwtatall",
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
        assert_refused(garbage[i], "JWT signature or format is invalid");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_valid_without_time_claims),
        cmocka_unit_test(test_claims_kept_for_rules),
        cmocka_unit_test(test_claims_filtered),
        cmocka_unit_test(test_issuer_and_audience),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_tampered_payload),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_not_yet_valid),
        cmocka_unit_test(test_fractional_nbf_in_future),
        cmocka_unit_test(test_fractional_exp_in_future),
        cmocka_unit_test(test_no_usable_sub),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_other_hmac_algorithms),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
