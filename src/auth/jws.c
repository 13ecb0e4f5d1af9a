/* jws.c - see jws.h. Every algorithm goes through this one verifier, with OpenSSL's EVP:
 * Debian's libjwt (1.10) has no EdDSA and no JWK support, and one path for all four
 * algorithms keeps the key-type checks that prevent algorithm confusion in one place. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "auth/jws.h"
#include "util/base64.h"

#define MAX_HEADER 2048

/* --- key sets --------------------------------------------------------------------- */

struct jws_keyset *jws_keyset_new(void)
{
    struct jws_keyset *set = xcalloc(1, sizeof(*set));
    atomic_init(&set->refs, 1);
    return set;
}

struct jws_keyset *jws_keyset_ref(struct jws_keyset *set)
{
    atomic_fetch_add(&set->refs, 1);
    return set;
}

void jws_keyset_unref(struct jws_keyset *set)
{
    if (!set || atomic_fetch_sub(&set->refs, 1) != 1)
        return;
    for (size_t i = 0; i < set->n; i++)
        EVP_PKEY_free(set->keys[i].pkey);
    free(set);
}

/* The type of a public key, or FERRY_ERR when ferry does not verify with it. */
static int key_type(EVP_PKEY *pkey, enum jws_kty *type, struct err *err)
{
    char group[32] = "";
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        if (EVP_PKEY_get_bits(pkey) < 2048)
            return err_set(err, ERR_INVALID, "RSA keys must have at least 2048 bits");
        *type = JWS_KEY_RSA;
        return FERRY_OK;
    case EVP_PKEY_EC:
        EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       NULL);
        if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)
            return err_set(err, ERR_INVALID, "EC keys must be on P-256 (for ES256)");
        *type = JWS_KEY_P256;
        return FERRY_OK;
    case EVP_PKEY_ED25519:
        *type = JWS_KEY_ED25519;
        return FERRY_OK;
    default:
        return err_set(err, ERR_INVALID, "only RSA, EC P-256 and Ed25519 public keys are used");
    }
}

int jws_keyset_add_pem(struct jws_keyset *set, const char *path, struct err *err)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *pkey = NULL;
    enum jws_kty type;
    int rc = FERRY_ERR;

    if (!f) {
        err_set(err, ERR_INVALID, "cannot read JWT public key %s", path);
        goto out;
    }
    pkey = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    if (!pkey) {
        err_set(err, ERR_INVALID, "%s holds no PEM public key", path);
        goto out;
    }
    if (key_type(pkey, &type, err) != FERRY_OK) {
        char why[sizeof(err->msg)];
        snprintf(why, sizeof(why), "%s", err->msg);
        err_set(err, ERR_INVALID, "%s: %s", path, why);
        goto out;
    }
    if (set->n == JWS_MAX_KEYS) {
        err_set(err, ERR_INVALID, "at most %d JWT public keys", JWS_MAX_KEYS);
        goto out;
    }
    set->keys[set->n++] = (struct jws_key){.type = type, .pkey = pkey};
    pkey = NULL;
    rc = FERRY_OK;
out:
    EVP_PKEY_free(pkey);
    if (f)
        fclose(f);
    return rc;
}

/* Decodes the base64url member name of jwk into out (cap bytes). Returns the length,
 * or -1 when absent or malformed. */
static ssize_t jwk_bytes(json_t *jwk, const char *name, unsigned char *out, size_t cap)
{
    const char *text = json_string_value(json_object_get(jwk, name));
    if (!text)
        return -1;
    return base64_url_decode(text, strlen(text), out, cap);
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *rsa_from_jwk(json_t *jwk)
{
    unsigned char n[1024], e[16];
    ssize_t n_len = jwk_bytes(jwk, "n", n, sizeof(n)), e_len = jwk_bytes(jwk, "e", e, sizeof(e));
    if (n_len <= 0 || e_len <= 0)
        return NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL), *bn_e = BN_bin2bn(e, (int)e_len, NULL);
    EVP_PKEY *pkey = NULL;
    if (bld && bn_n && bn_e && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
        pkey = from_params("RSA", bld);
    BN_free(bn_n);
    BN_free(bn_e);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *p256_from_jwk(json_t *jwk)
{
    unsigned char point[65] = {0x04}; /* an uncompressed point: 04 || x || y */
    if (jwk_bytes(jwk, "x", point + 1, 32) != 32 || jwk_bytes(jwk, "y", point + 33, 32) != 32)
        return NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    /* OpenSSL refuses a point that is not on the curve here. */
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)))
        pkey = from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *ed25519_from_jwk(json_t *jwk)
{
    unsigned char x[32];
    if (jwk_bytes(jwk, "x", x, sizeof(x)) != 32)
        return NULL;
    return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, sizeof(x));
}

static const char *alg_of_type(enum jws_kty type)
{
    return type == JWS_KEY_RSA ? "RS256" : type == JWS_KEY_P256 ? "ES256" : "EdDSA";
}

/* Reads one JWK into key. 1: a usable key; 0: one ferry skips; FERRY_ERR: malformed. */
static int key_from_jwk(json_t *jwk, struct jws_key *key, struct err *err)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const char *use = json_string_value(json_object_get(jwk, "use"));
    const char *alg = json_string_value(json_object_get(jwk, "alg"));
    const char *kid = json_string_value(json_object_get(jwk, "kid"));
    EVP_PKEY *pkey = NULL;

    if (!json_is_object(jwk) || !kty)
        return err_set(err, ERR_INVALID, "a JWK has no kty");
    if ((use && strcmp(use, "sig") != 0) || (kid && strlen(kid) >= JWS_MAX_KID))
        return 0;
    if (!strcmp(kty, "RSA"))
        pkey = rsa_from_jwk(jwk);
    else if (!strcmp(kty, "EC") && crv && !strcmp(crv, "P-256"))
        pkey = p256_from_jwk(jwk);
    else if (!strcmp(kty, "OKP") && crv && !strcmp(crv, "Ed25519"))
        pkey = ed25519_from_jwk(jwk);
    else
        return 0;
    if (!pkey)
        return err_set(err, ERR_INVALID, "JWK '%s' (%s) is malformed", kid ? kid : "", kty);
    if (key_type(pkey, &key->type, NULL) != FERRY_OK) {
        EVP_PKEY_free(pkey); /* RSA under 2048 bits */
        return 0;
    }
    if (alg && strcmp(alg, alg_of_type(key->type)) != 0) {
        EVP_PKEY_free(pkey); /* e.g. an RSA key for RS512 or PS256: not ours to use */
        return 0;
    }
    key->alg_pinned = alg != NULL;
    snprintf(key->kid, sizeof(key->kid), "%s", kid ? kid : "");
    key->pkey = pkey;
    return 1;
}

int jws_keyset_from_jwks(const char *text, size_t len, struct jws_keyset **out, struct err *err)
{
    json_t *doc = json_loadb(text, len, 0, NULL);
    json_t *keys = json_object_get(doc, "keys"), *jwk;
    struct jws_keyset *set = jws_keyset_new();
    size_t i;
    int rc = FERRY_ERR;

    if (!json_is_array(keys)) {
        err_set(err, ERR_INVALID, "the key set is not a JWK Set ({\"keys\": [...]})");
        goto out;
    }
    if (json_array_size(keys) > JWS_MAX_KEYS) {
        err_set(err, ERR_INVALID, "the key set has more than %d keys", JWS_MAX_KEYS);
        goto out;
    }
    json_array_foreach(keys, i, jwk)
    {
        int got = key_from_jwk(jwk, &set->keys[set->n], err);
        if (got < 0)
            goto out;
        set->n += (size_t)got;
    }
    *out = set;
    set = NULL;
    rc = FERRY_OK;
out:
    jws_keyset_unref(set);
    json_decref(doc);
    return rc;
}

/* --- tokens ----------------------------------------------------------------------- */

static int parse_alg(const char *name, enum jws_alg *alg)
{
    static const struct {
        const char *name;
        enum jws_alg alg;
    } algs[] = {
        {"HS256", JWS_HS256}, {"RS256", JWS_RS256}, {"ES256", JWS_ES256}, {"EdDSA", JWS_EDDSA}};
    for (size_t i = 0; name && i < sizeof(algs) / sizeof(algs[0]); i++)
        if (!strcmp(name, algs[i].name)) {
            *alg = algs[i].alg;
            return FERRY_OK;
        }
    return FERRY_ERR;
}

/* Decodes one base64url part of len characters as a JSON object. */
static json_t *json_part(const char *part, size_t len, size_t cap)
{
    char *bytes = xmalloc(cap);
    ssize_t n = base64_url_decode(part, len, bytes, cap);
    json_t *v = n > 0 ? json_loadb(bytes, (size_t)n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(bytes);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

static int parse_header(const char *part, size_t len, struct jws_token *t, struct err *err)
{
    json_t *header = json_part(part, len, MAX_HEADER);
    const char *alg = json_string_value(json_object_get(header, "alg"));
    json_t *kid = json_object_get(header, "kid");
    int rc = FERRY_ERR;

    if (!header)
        err_set(err, ERR_UNAUTHORIZED, "JWT signature or format is invalid");
    else if (parse_alg(alg, &t->alg) != FERRY_OK)
        err_set(err, ERR_UNAUTHORIZED, "JWT algorithm must be HS256, RS256, ES256 or EdDSA");
    else if (json_object_get(header, "crit"))
        err_set(err, ERR_UNAUTHORIZED, "JWT header has extensions ferry does not know (crit)");
    else if (kid && (!json_is_string(kid) || json_string_length(kid) >= sizeof(t->kid)))
        err_set(err, ERR_UNAUTHORIZED, "JWT kid must be a short string");
    else {
        snprintf(t->kid, sizeof(t->kid), "%s", kid ? json_string_value(kid) : "");
        rc = FERRY_OK;
    }
    json_decref(header);
    return rc;
}

int jws_parse(const char *token, struct jws_token *t, struct err *err)
{
    size_t len = strnlen(token, JWS_MAX_TOKEN + 1);
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    const char *sig = dot2 ? dot2 + 1 : NULL;
    ssize_t sig_len;

    memset(t, 0, sizeof(*t));
    if (len > JWS_MAX_TOKEN)
        return err_set(err, ERR_UNAUTHORIZED, "JWT is longer than %d bytes", JWS_MAX_TOKEN);
    if (!dot2 || memchr(sig, '.', len - (size_t)(sig - token)))
        return err_set(err, ERR_UNAUTHORIZED, "JWT signature or format is invalid");
    if (parse_header(token, (size_t)(dot1 - token), t, err) != FERRY_OK)
        return FERRY_ERR;
    t->claims = json_part(dot1 + 1, (size_t)(dot2 - dot1 - 1), JWS_MAX_TOKEN);
    sig_len = base64_url_decode(sig, len - (size_t)(sig - token), t->sig, sizeof(t->sig));
    if (!t->claims || sig_len <= 0) {
        jws_token_cleanup(t);
        return err_set(err, ERR_UNAUTHORIZED, "JWT signature or format is invalid");
    }
    t->sig_len = (size_t)sig_len;
    t->signed_part = token;
    t->signed_len = (size_t)(dot2 - token);
    return FERRY_OK;
}

void jws_token_cleanup(struct jws_token *t)
{
    json_decref(t->claims);
    t->claims = NULL;
}

/* --- signatures ------------------------------------------------------------------- */

static bool hmac_ok(const struct jws_token *t, const char *secret)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)t->signed_part,
              t->signed_len, mac, &mac_len))
        return false;
    return mac_len == t->sig_len && CRYPTO_memcmp(mac, t->sig, mac_len) == 0;
}

/* ES256 signatures are r || s (32 bytes each, RFC 7518 section 3.4); OpenSSL wants DER. */
static size_t es256_der(const struct jws_token *t, unsigned char *der, size_t cap)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(t->sig, 32, NULL), *s = BN_bin2bn(t->sig + 32, 32, NULL);
    size_t len = 0;
    if (sig && r && s && ECDSA_SIG_set0(sig, r, s) == 1) {
        r = s = NULL; /* sig owns them */
        int n = i2d_ECDSA_SIG(sig, NULL);
        unsigned char *p = der;
        if (n > 0 && (size_t)n <= cap && i2d_ECDSA_SIG(sig, &p) == n)
            len = (size_t)n;
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return len;
}

static bool signature_ok(const struct jws_token *t, EVP_PKEY *pkey)
{
    unsigned char der[80];
    const unsigned char *sig = t->sig;
    size_t sig_len = t->sig_len;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    /* EdDSA hashes inside the signature scheme: no digest is named for it. */
    const EVP_MD *md = t->alg == JWS_EDDSA ? NULL : EVP_sha256();
    bool ok = false;

    if (t->alg == JWS_ES256) {
        sig_len = t->sig_len == 64 ? es256_der(t, der, sizeof(der)) : 0;
        sig = der;
    }
    if (ctx && sig_len && EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1)
        ok = EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)t->signed_part,
                              t->signed_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static enum jws_kty type_for(enum jws_alg alg)
{
    return alg == JWS_RS256 ? JWS_KEY_RSA : alg == JWS_ES256 ? JWS_KEY_P256 : JWS_KEY_ED25519;
}

static const struct jws_key *find_kid(struct jws_keyset *const *sets, size_t n_sets,
                                      const char *kid)
{
    for (size_t s = 0; *kid && s < n_sets; s++)
        for (size_t i = 0; sets[s] && i < sets[s]->n; i++)
            if (!strcmp(sets[s]->keys[i].kid, kid))
                return &sets[s]->keys[i];
    return NULL;
}

enum jws_verdict jws_verify(const struct jws_token *t, const char *secret,
                            struct jws_keyset *const *sets, size_t n_sets, struct err *err)
{
    enum jws_kty want = type_for(t->alg);
    size_t tried = 0;

    if (t->alg == JWS_HS256) {
        if (!secret || !*secret) {
            err_set(err, ERR_UNAUTHORIZED, "JWT algorithm HS256 is not accepted here");
            return JWS_INVALID;
        }
        if (hmac_ok(t, secret))
            return JWS_VALID;
        err_set(err, ERR_UNAUTHORIZED, "JWT signature or format is invalid");
        return JWS_INVALID;
    }
    const struct jws_key *named = find_kid(sets, n_sets, t->kid);
    if (named && named->type != want) {
        err_set(err, ERR_UNAUTHORIZED, "JWT key '%s' is not a key for its algorithm", t->kid);
        return JWS_INVALID;
    }
    if (named) {
        if (signature_ok(t, named->pkey))
            return JWS_VALID;
        err_set(err, ERR_UNAUTHORIZED, "JWT signature or format is invalid");
        return JWS_INVALID;
    }
    for (size_t s = 0; s < n_sets; s++)
        for (size_t i = 0; sets[s] && i < sets[s]->n; i++) {
            const struct jws_key *k = &sets[s]->keys[i];
            if (k->kid[0] || k->type != want)
                continue;
            tried++;
            if (signature_ok(t, k->pkey))
                return JWS_VALID;
        }
    if (tried && !t->kid[0]) {
        err_set(err, ERR_UNAUTHORIZED, "JWT signature or format is invalid");
        return JWS_INVALID;
    }
    if (t->kid[0])
        err_set(err, ERR_UNAUTHORIZED, "JWT key id '%s' is unknown", t->kid);
    else
        err_set(err, ERR_UNAUTHORIZED, "no configured key fits this JWT's algorithm");
    return JWS_NO_KEY;
}

/* --- claims ----------------------------------------------------------------------- */

/* Reads a NumericDate claim (RFC 7519: integer or fractional seconds). FERRY_OK with
 * *present false when absent; FERRY_ERR when present but not a number. */
static int time_claim(json_t *claims, const char *name, bool *present, double *value)
{
    json_t *v = json_object_get(claims, name);
    *present = v != NULL;
    if (!v)
        return FERRY_OK;
    if (!json_is_number(v))
        return FERRY_ERR;
    *value = json_number_value(v);
    return FERRY_OK;
}

static bool audience_ok(json_t *aud, const char *want)
{
    size_t i;
    json_t *one;
    if (json_is_string(aud))
        return !strcmp(json_string_value(aud), want);
    json_array_foreach(aud, i, one)
    {
        if (json_is_string(one) && !strcmp(json_string_value(one), want))
            return true;
    }
    return false;
}

int jws_check_claims(const struct jws_token *t, const struct jws_expect *x, int64_t now_s,
                     size_t user_cap, const char **user, struct err *err)
{
    const char *claim = x->user_claim && *x->user_claim ? x->user_claim : "sub";
    const char *iss = json_string_value(json_object_get(t->claims, "iss"));
    const char *who = json_string_value(json_object_get(t->claims, claim));
    double exp = 0, nbf = 0;
    bool has_exp, has_nbf;

    if (time_claim(t->claims, "exp", &has_exp, &exp) != FERRY_OK ||
        time_claim(t->claims, "nbf", &has_nbf, &nbf) != FERRY_OK)
        return err_set(err, ERR_UNAUTHORIZED, "JWT exp and nbf must be numbers");
    if (has_exp && exp <= (double)now_s)
        return err_set(err, ERR_UNAUTHORIZED, "JWT has expired");
    if (has_nbf && nbf > (double)now_s)
        return err_set(err, ERR_UNAUTHORIZED, "JWT is not valid yet");
    if (x->issuer && *x->issuer && (!iss || strcmp(iss, x->issuer) != 0))
        return err_set(err, ERR_UNAUTHORIZED, "JWT issuer (iss) is not the configured one");
    if (x->audience && *x->audience && !audience_ok(json_object_get(t->claims, "aud"), x->audience))
        return err_set(err, ERR_UNAUTHORIZED, "JWT audience (aud) does not name this server");
    if (!who || !*who || strlen(who) >= user_cap)
        return err_set(err, ERR_UNAUTHORIZED, "JWT has no usable %s claim", claim);
    *user = who;
    return FERRY_OK;
}
