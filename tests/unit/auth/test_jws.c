/* test_jws.c - unit tests for src/auth/jws.c: public keys from PEM files and JWK Sets,
 * RS256, ES256 and EdDSA signatures, key selection by kid, algorithm confusion, and the
 * registered claims. Keys are made here with OpenSSL; tokens are signed here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/jws.h"
#include "util/base64.h"
#include "util/buf.h"

#define NOW INT64_C(1700000000)

static EVP_PKEY *rsa_key, *rsa_key2, *ec_key, *ed_key;

static int make_keys(void **state)
{
    (void)state;
    rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa_key2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    return rsa_key && rsa_key2 && ec_key && ed_key ? 0 : -1;
}

static int free_keys(void **state)
{
    (void)state;
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(rsa_key2);
    EVP_PKEY_free(ec_key);
    EVP_PKEY_free(ed_key);
    return 0;
}

static char *b64(const void *data, size_t len)
{
    char *out = xmalloc(base64_encoded_len(len) + 1);
    base64_url_encode(data, len, out);
    return out;
}

/* DER ECDSA signature to JWS's r || s. */
static size_t raw_ecdsa(const unsigned char *der, size_t der_len, unsigned char out[64])
{
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &der, (long)der_len);
    assert_non_null(sig);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + 32, 32), 32);
    ECDSA_SIG_free(sig);
    return 64;
}

/* header.payload.signature, signed with key as alg says ("HS256" signs with secret). */
static char *sign(const char *alg, const char *kid, const char *claims, EVP_PKEY *key,
                  const char *secret)
{
    char header[256];
    if (kid)
        snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg,
                 kid);
    else
        snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    char *h = b64(header, strlen(header)), *p = b64(claims, strlen(claims));
    char *input = xasprintf("%s.%s", h, p);
    unsigned char sig[1024], raw[64];
    size_t sig_len = sizeof(sig);
    if (!strcmp(alg, "HS256")) {
        unsigned int n = 0;
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)input, strlen(input), sig,
             &n);
        sig_len = n;
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        const EVP_MD *md = !strcmp(alg, "EdDSA") ? NULL : EVP_sha256();
        assert_int_equal(EVP_DigestSignInit(ctx, NULL, md, NULL, key), 1);
        assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, (unsigned char *)input, strlen(input)),
                         1);
        EVP_MD_CTX_free(ctx);
    }
    const unsigned char *out = sig;
    if (!strcmp(alg, "ES256")) {
        sig_len = raw_ecdsa(sig, sig_len, raw);
        out = raw;
    }
    char *s = b64(out, sig_len);
    char *token = xasprintf("%s.%s", input, s);
    free(h);
    free(p);
    free(input);
    free(s);
    return token;
}

static char *bn_b64(EVP_PKEY *key, const char *param)
{
    BIGNUM *bn = NULL;
    unsigned char bytes[512];
    assert_int_equal(EVP_PKEY_get_bn_param(key, param, &bn), 1);
    int n = BN_bn2bin(bn, bytes);
    BN_free(bn);
    return b64(bytes, (size_t)n);
}

static char *ec_coord(EVP_PKEY *key, const char *param)
{
    BIGNUM *bn = NULL;
    unsigned char bytes[32];
    assert_int_equal(EVP_PKEY_get_bn_param(key, param, &bn), 1);
    assert_int_equal(BN_bn2binpad(bn, bytes, 32), 32);
    BN_free(bn);
    return b64(bytes, 32);
}

/* key as a JWK with kid; extra is spliced in (e.g. ",\"alg\":\"RS512\""). */
static char *jwk(EVP_PKEY *key, const char *kid, const char *extra)
{
    char *a = NULL, *b = NULL, *out;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
        a = bn_b64(key, OSSL_PKEY_PARAM_RSA_N);
        b = bn_b64(key, OSSL_PKEY_PARAM_RSA_E);
        out = xasprintf("{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"%s}", kid, a, b,
                        extra);
    } else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
        a = ec_coord(key, OSSL_PKEY_PARAM_EC_PUB_X);
        b = ec_coord(key, OSSL_PKEY_PARAM_EC_PUB_Y);
        out = xasprintf(
            "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"%s}", kid, a,
            b, extra);
    } else {
        unsigned char raw[32];
        size_t len = sizeof(raw);
        assert_int_equal(EVP_PKEY_get_raw_public_key(key, raw, &len), 1);
        a = b64(raw, len);
        out = xasprintf("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"%s\",\"x\":\"%s\"%s}", kid,
                        a, extra);
    }
    free(a);
    free(b);
    return out;
}

static struct jws_keyset *jwks(const char *doc)
{
    struct jws_keyset *set = NULL;
    struct err err = {0};
    if (jws_keyset_from_jwks(doc, strlen(doc), &set, &err) != FERRY_OK)
        fail_msg("key set refused: %s", err.msg);
    return set;
}

/* The standard set: rsa1, rsa2, ec1, ed1. */
static struct jws_keyset *standard_set(void)
{
    char *k1 = jwk(rsa_key, "rsa1", ""), *k2 = jwk(rsa_key2, "rsa2", ",\"use\":\"sig\"");
    char *k3 = jwk(ec_key, "ec1", ",\"alg\":\"ES256\""), *k4 = jwk(ed_key, "ed1", "");
    char *doc = xasprintf("{\"keys\":[%s,%s,%s,%s]}", k1, k2, k3, k4);
    struct jws_keyset *set = jwks(doc);
    free(k1);
    free(k2);
    free(k3);
    free(k4);
    free(doc);
    return set;
}

static enum jws_verdict check(const char *token, const char *secret, struct jws_keyset *set,
                              struct err *err)
{
    struct jws_token t;
    memset(err, 0, sizeof(*err));
    if (jws_parse(token, &t, err) != FERRY_OK)
        return JWS_INVALID;
    enum jws_verdict v = jws_verify(&t, secret, &set, 1, err);
    jws_token_cleanup(&t);
    return v;
}

#define CLAIMS "{\"sub\":\"alice\",\"exp\":1800000000}"

static void test_each_algorithm_by_kid(void **state)
{
    (void)state;
    struct jws_keyset *set = standard_set();
    struct err err;
    assert_int_equal(set->n, 4);
    static const struct {
        const char *alg, *kid;
        EVP_PKEY **key;
    } cases[] = {{"RS256", "rsa1", &rsa_key},
                 {"RS256", "rsa2", &rsa_key2},
                 {"ES256", "ec1", &ec_key},
                 {"EdDSA", "ed1", &ed_key}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *token = sign(cases[i].alg, cases[i].kid, CLAIMS, *cases[i].key, NULL);
        if (check(token, NULL, set, &err) != JWS_VALID)
            fail_msg("%s with %s refused: %s", cases[i].alg, cases[i].kid, err.msg);
        /* one flipped bit in the payload */
        char *dot = strchr(token, '.');
        dot[3] = dot[3] == 'A' ? 'B' : 'A';
        assert_int_equal(check(token, NULL, set, &err), JWS_INVALID);
        free(token);
    }
    jws_keyset_unref(set);
}

static void test_kid_selects_the_key(void **state)
{
    (void)state;
    struct jws_keyset *set = standard_set();
    struct err err;
    /* signed by rsa2 but naming rsa1: only rsa1 is tried */
    char *token = sign("RS256", "rsa1", CLAIMS, rsa_key2, NULL);
    assert_int_equal(check(token, NULL, set, &err), JWS_INVALID);
    assert_string_equal(err.msg, "JWT signature or format is invalid");
    free(token);
    /* an unknown kid: a fresher set might have it */
    token = sign("RS256", "rsa9", CLAIMS, rsa_key, NULL);
    assert_int_equal(check(token, NULL, set, &err), JWS_NO_KEY);
    assert_string_equal(err.msg, "JWT key id 'rsa9' is unknown");
    free(token);
    /* no kid: the JWKS keys all have kids, so none is tried */
    token = sign("RS256", NULL, CLAIMS, rsa_key, NULL);
    assert_int_equal(check(token, NULL, set, &err), JWS_NO_KEY);
    free(token);
    jws_keyset_unref(set);
}

static void test_alg_confusion(void **state)
{
    (void)state;
    struct jws_keyset *set = standard_set();
    struct err err;
    /* HS256 "signed" with the RSA public key as the HMAC secret */
    BIO *mem = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(mem, rsa_key);
    char *pem = NULL;
    long pem_len = BIO_get_mem_data(mem, &pem);
    char *pem_text = xstrndup(pem, (size_t)pem_len);
    char *token = sign("HS256", "rsa1", CLAIMS, NULL, pem_text);
    assert_int_equal(check(token, NULL, set, &err), JWS_INVALID);
    assert_string_equal(err.msg, "JWT algorithm HS256 is not accepted here");
    assert_int_equal(check(token, "the real secret", set, &err), JWS_INVALID);
    free(token);
    free(pem_text);
    BIO_free(mem);
    /* an RS256 header naming the EC key, an ES256 one naming an RSA key */
    token = sign("RS256", "ec1", CLAIMS, rsa_key, NULL);
    assert_int_equal(check(token, NULL, set, &err), JWS_INVALID);
    assert_string_equal(err.msg, "JWT key 'ec1' is not a key for its algorithm");
    free(token);
    token = sign("ES256", "rsa1", CLAIMS, ec_key, NULL);
    assert_int_equal(check(token, NULL, set, &err), JWS_INVALID);
    free(token);
    token = sign("EdDSA", "ec1", CLAIMS, ed_key, NULL);
    assert_int_equal(check(token, NULL, set, &err), JWS_INVALID);
    free(token);
    /* alg none, and algorithms ferry does not take */
    token = sign("HS256", NULL, CLAIMS, NULL, "x");
    char *none = xasprintf("eyJhbGciOiJub25lIn0%s", strchr(token, '.')); /* {"alg":"none"} */
    assert_int_equal(check(none, NULL, set, &err), JWS_INVALID);
    assert_string_equal(err.msg, "JWT algorithm must be HS256, RS256, ES256 or EdDSA");
    free(none);
    free(token);
    jws_keyset_unref(set);
}

static void test_jwk_pinned_to_another_alg_is_skipped(void **state)
{
    (void)state;
    char *k = jwk(rsa_key, "rsa1", ",\"alg\":\"RS512\""),
         *e = jwk(rsa_key2, "enc", ",\"use\":\"enc\"");
    char *doc =
        xasprintf("{\"keys\":[%s,%s,{\"kty\":\"oct\",\"kid\":\"h\",\"k\":\"c2VjcmV0\"}]}", k, e);
    struct jws_keyset *set = jwks(doc);
    struct err err;
    assert_int_equal(set->n, 0);
    char *token = sign("RS256", "rsa1", CLAIMS, rsa_key, NULL);
    assert_int_equal(check(token, NULL, set, &err), JWS_NO_KEY);
    free(token);
    /* a symmetric JWK is never an HMAC secret */
    token = sign("HS256", "h", CLAIMS, NULL, "secret");
    assert_int_equal(check(token, NULL, set, &err), JWS_INVALID);
    free(token);
    jws_keyset_unref(set);
    free(doc);
    free(k);
    free(e);
}

static void test_malformed_jwks(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "not json",
        "{\"keys\":{}}",
        "[]",
        "{\"keys\":[{\"kid\":\"no kty\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":\"!!\",\"e\":\"AQAB\"}]}",
        /* a point that is not on P-256 */
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":"
        "\"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"y\":"
        "\"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}]}",
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AQID\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct jws_keyset *set = NULL;
        struct err err = {0};
        if (jws_keyset_from_jwks(bad[i], strlen(bad[i]), &set, &err) == FERRY_OK)
            fail_msg("key set %zu was accepted", i);
        assert_null(set);
    }
    struct buf many;
    buf_init(&many);
    buf_puts(&many, "{\"keys\":[");
    for (int i = 0; i <= JWS_MAX_KEYS; i++)
        buf_printf(&many, "%s{\"kty\":\"oct\"}", i ? "," : "");
    buf_puts(&many, "]}");
    struct jws_keyset *set = NULL;
    struct err err = {0};
    assert_int_equal(jws_keyset_from_jwks(many.data, many.len, &set, &err), FERRY_ERR);
    buf_cleanup(&many);
}

static char *write_pem(EVP_PKEY *key)
{
    char *path = xstrdup("/tmp/ferry-test-jws-XXXXXX");
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    assert_int_equal(PEM_write_PUBKEY(f, key), 1);
    fclose(f);
    return path;
}

static void test_pem_keys(void **state)
{
    (void)state;
    struct jws_keyset *set = jws_keyset_new();
    struct err err = {0};
    EVP_PKEY *keys[] = {rsa_key, ec_key, ed_key};
    const char *algs[] = {"RS256", "ES256", "EdDSA"};
    for (int i = 0; i < 3; i++) {
        char *path = write_pem(keys[i]);
        assert_int_equal(jws_keyset_add_pem(set, path, &err), FERRY_OK);
        unlink(path);
        free(path);
    }
    for (int i = 0; i < 3; i++) {
        /* PEM keys have no kid: a token's kid does not matter to them */
        char *token = sign(algs[i], i ? "whatever" : NULL, CLAIMS, keys[i], NULL);
        if (check(token, NULL, set, &err) != JWS_VALID)
            fail_msg("%s refused: %s", algs[i], err.msg);
        free(token);
    }
    char *token = sign("RS256", NULL, CLAIMS, rsa_key2, NULL);
    assert_int_equal(check(token, NULL, set, &err), JWS_INVALID);
    free(token);
    /* a kid no key has, and signed by no configured key: perhaps a newer JWKS key */
    token = sign("RS256", "new", CLAIMS, rsa_key2, NULL);
    assert_int_equal(check(token, NULL, set, &err), JWS_NO_KEY);
    free(token);
    assert_int_equal(jws_keyset_add_pem(set, "/nonexistent.pem", &err), FERRY_ERR);
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    char *path = write_pem(small);
    assert_int_equal(jws_keyset_add_pem(set, path, &err), FERRY_ERR);
    assert_non_null(strstr(err.msg, "at least 2048 bits"));
    unlink(path);
    free(path);
    EVP_PKEY_free(small);
    jws_keyset_unref(set);
}

static int claims_of(const char *claims, const struct jws_expect *x, const char **user,
                     struct err *err)
{
    struct jws_token t;
    char *token = sign("EdDSA", NULL, claims, ed_key, NULL);
    assert_int_equal(jws_parse(token, &t, err), FERRY_OK);
    int rc = jws_check_claims(&t, x, NOW, 128, user, err);
    static char copy[128];
    if (rc == FERRY_OK) {
        snprintf(copy, sizeof(copy), "%s", *user);
        *user = copy;
    }
    jws_token_cleanup(&t);
    free(token);
    return rc;
}

static void test_claims(void **state)
{
    (void)state;
    struct jws_expect x = {"https://idp.example", "ferry", "email"};
    const char *user = NULL;
    struct err err;
    assert_int_equal(claims_of("{\"sub\":\"1\",\"email\":\"a@x\",\"iss\":\"https://idp.example\","
                               "\"aud\":\"ferry\"}",
                               &x, &user, &err),
                     FERRY_OK);
    assert_string_equal(user, "a@x");
    assert_int_equal(claims_of("{\"sub\":\"1\",\"iss\":\"https://idp.example\",\"aud\":\"ferry\"}",
                               &x, &user, &err),
                     FERRY_ERR);
    assert_string_equal(err.msg, "JWT has no usable email claim");
    assert_int_equal(claims_of("{\"email\":\"a@x\",\"iss\":\"https://idp.example/\","
                               "\"aud\":\"ferry\"}",
                               &x, &user, &err),
                     FERRY_ERR);
    assert_int_equal(claims_of("{\"email\":\"a@x\",\"iss\":\"https://idp.example\","
                               "\"aud\":[\"a\",\"b\"]}",
                               &x, &user, &err),
                     FERRY_ERR);
    assert_int_equal(claims_of("{\"email\":\"a@x\",\"iss\":\"https://idp.example\","
                               "\"aud\":\"ferry\",\"exp\":1600000000}",
                               &x, &user, &err),
                     FERRY_ERR);
    assert_string_equal(err.msg, "JWT has expired");
}

static void test_parse_refuses(void **state)
{
    (void)state;
    struct jws_token t;
    struct err err;
    char *token = sign("EdDSA", NULL, CLAIMS, ed_key, NULL);
    /* duplicate claims are ambiguous */
    char *dup = sign("EdDSA", NULL, "{\"sub\":\"a\",\"sub\":\"admin\"}", ed_key, NULL);
    assert_int_equal(jws_parse(dup, &t, &err), FERRY_ERR);
    jws_token_cleanup(&t);
    /* crit extensions */
    char *crit = b64("{\"alg\":\"EdDSA\",\"crit\":[\"x\"],\"x\":1}", 36);
    char *with_crit = xasprintf("%s%s", crit, strchr(token, '.'));
    assert_int_equal(jws_parse(with_crit, &t, &err), FERRY_ERR);
    jws_token_cleanup(&t);
    /* too long */
    char *huge = xmalloc(JWS_MAX_TOKEN + 2);
    memset(huge, 'a', JWS_MAX_TOKEN + 1);
    huge[JWS_MAX_TOKEN + 1] = '\0';
    assert_int_equal(jws_parse(huge, &t, &err), FERRY_ERR);
    free(huge);
    free(with_crit);
    free(crit);
    free(dup);
    free(token);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_algorithm_by_kid),
        cmocka_unit_test(test_kid_selects_the_key),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_jwk_pinned_to_another_alg_is_skipped),
        cmocka_unit_test(test_malformed_jwks),
        cmocka_unit_test(test_pem_keys),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_parse_refuses),
    };
    return cmocka_run_group_tests(tests, make_keys, free_keys);
}
