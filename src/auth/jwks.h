/* jwks.h - an identity provider's JWK Set, fetched from its URL with libcurl and cached:
 * one background thread owns every fetch (at start, on a schedule, and when a token
 * names a key the cached set lacks), so a request never fetches by itself and unknown
 * key ids cannot make ferry call the provider more often than the minimum interval. */
#ifndef FERRY_JWKS_H
#define FERRY_JWKS_H

#include <stdint.h>

#include "auth/jws.h"
#include "ferry.h"

/* The largest key set document accepted. */
#define JWKS_MAX_BYTES (1024 * 1024)

struct jwks_options {
    const char *url;
    int64_t timeout_ms;      /* one fetch, connecting included */
    int64_t refresh_ms;      /* between scheduled fetches */
    int64_t min_interval_ms; /* between fetches asked for by unknown key ids (and retries) */
};

struct jwks_cache;

/* Fetches the set once (a failure is logged, not fatal: the thread retries) and starts
 * the thread. FERRY_ERR only for a URL that is not http(s). Close with jwks_cache_close. */
int jwks_cache_open(const struct jwks_options *o, struct jwks_cache **out, struct err *err);
/* Stops the thread (waiting for a fetch under way, at most its timeout). NULL: nothing. */
void jwks_cache_close(struct jwks_cache *cache);

/* The cached set, with a reference for the caller (never NULL; empty before any fetch
 * succeeded). */
struct jws_keyset *jwks_cache_keys(struct jwks_cache *cache);

/* Asks for a fresh set because a token names a key that had (the set the caller took
 * from jwks_cache_keys) lacks, and waits for the fetch, at most a second (or the fetch
 * timeout when shorter). Only one request asks at a time, and at most once per
 * min_interval_ms. Returns a referenced newer set, or NULL with err saying why: a fetch
 * is already under way or did not end in time, the set was refreshed too recently, or
 * the provider could not be reached. */
struct jws_keyset *jwks_cache_refresh(struct jwks_cache *cache, const struct jws_keyset *had,
                                      struct err *err);

#endif
