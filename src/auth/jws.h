/* jws.h - JSON Web Tokens (RFC 7519) in their signed compact form (JWS, RFC 7515):
 * parsing, signature verification (HS256 with a shared secret; RS256, ES256 and EdDSA
 * with public keys from PEM files or a JWK Set, RFC 7517) and the registered claims. */
#ifndef FERRY_JWS_H
#define FERRY_JWS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "ferry.h"

/* Caps on what a token may carry: checked before anything is decoded. */
#define JWS_MAX_TOKEN 16384
#define JWS_MAX_SIGNATURE 1024 /* an RSA-8192 signature */
/* Caps on a key set: a JWK Set holding more is refused whole. */
#define JWS_MAX_KEYS 64
#define JWS_MAX_KID 128

enum jws_alg { JWS_HS256, JWS_RS256, JWS_ES256, JWS_EDDSA };
/* The kinds of public key ferry verifies with; each serves exactly one algorithm. */
enum jws_kty { JWS_KEY_RSA, JWS_KEY_P256, JWS_KEY_ED25519 };

struct jws_key {
    char kid[JWS_MAX_KID]; /* "" when the key has none (PEM keys) */
    enum jws_kty type;
    bool alg_pinned; /* the JWK named its algorithm; it was the one type serves */
    EVP_PKEY *pkey;
};

/* A set of public keys, immutable once built and shared by reference: a verifying
 * thread keeps the set it took alive while a refresh publishes the next one. */
struct jws_keyset {
    atomic_int refs;
    size_t n;
    struct jws_key keys[JWS_MAX_KEYS];
};

/* An empty set with one reference. */
struct jws_keyset *jws_keyset_new(void);
struct jws_keyset *jws_keyset_ref(struct jws_keyset *set);
/* Drops a reference; the last one frees the keys. NULL does nothing. */
void jws_keyset_unref(struct jws_keyset *set);
/* Adds the public key in the PEM file path (RSA of at least 2048 bits, EC P-256 or
 * Ed25519). On failure err names the file and why; set is unchanged. */
int jws_keyset_add_pem(struct jws_keyset *set, const char *path, struct err *err);
/* Builds a set from a JWK Set document. Keys ferry cannot use (other types or curves,
 * "use" other than "sig", RSA under 2048 bits) are skipped; a malformed document, a
 * malformed key of a supported type, or more than JWS_MAX_KEYS keys fail the whole set. */
int jws_keyset_from_jwks(const char *text, size_t len, struct jws_keyset **out, struct err *err);

/* A parsed token: its header's algorithm and key id, its claims, and its signature. */
struct jws_token {
    enum jws_alg alg;
    char kid[JWS_MAX_KID];   /* "" when the header names none */
    json_t *claims;          /* the payload object, owned */
    const char *signed_part; /* header.payload, pointing into the token given */
    size_t signed_len;
    unsigned char sig[JWS_MAX_SIGNATURE];
    size_t sig_len;
};

/* Parses token (not verifying it). Refuses alg "none" and every algorithm but the
 * four, a "crit" header, and anything malformed, with ERR_UNAUTHORIZED. On success
 * release t with jws_token_cleanup (safe on a zeroed or failed t as well). */
int jws_parse(const char *token, struct jws_token *t, struct err *err);
void jws_token_cleanup(struct jws_token *t);

enum jws_verdict {
    JWS_VALID,
    JWS_INVALID, /* err says why */
    JWS_NO_KEY,  /* no key fits the token's kid and algorithm: a fresher set may have one */
};

/* Verifies t's signature. HS256 only with secret (NULL: HS256 is refused), never with
 * a public key; the other algorithms only with a key of their own type from sets
 * (n_sets of them, NULL entries skipped): the key whose kid the token names, or when it
 * names none or no set has that kid, each key without a kid of the right type. A kid
 * naming a key of another type or pinned to another algorithm is refused. */
enum jws_verdict jws_verify(const struct jws_token *t, const char *secret,
                            struct jws_keyset *const *sets, size_t n_sets, struct err *err);

/* What the registered claims must say; NULL members are not checked. */
struct jws_expect {
    const char *issuer;     /* iss must equal it */
    const char *audience;   /* aud (a string or an array of strings) must hold it */
    const char *user_claim; /* the claim naming the user (default "sub") */
};

/* Checks exp and nbf against now_s (seconds), iss and aud, and that the user claim is a
 * non-empty string shorter than user_cap; *user points into t->claims. */
int jws_check_claims(const struct jws_token *t, const struct jws_expect *x, int64_t now_s,
                     size_t user_cap, const char **user, struct err *err);

#endif
