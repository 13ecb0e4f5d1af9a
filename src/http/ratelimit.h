/* ratelimit.h - token-bucket limits keyed by a string (a credential id or a client
 * address). A bucket holds `limit` requests and refills at limit per `period_s`. */
#ifndef FERRY_RATELIMIT_H
#define FERRY_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit;

/* limit 0 disables the limiter: every take succeeds. */
struct ratelimit *ratelimit_new(int64_t limit, int64_t period_s);
void ratelimit_free(struct ratelimit *rl);

struct rl_result {
    bool allowed;
    int64_t limit;
    int64_t remaining;   /* whole requests left after this one */
    int64_t retry_after; /* seconds until one request is available, when refused */
};

/* Takes one request from key's bucket at time now_us (monotonic microseconds). */
struct rl_result ratelimit_take(struct ratelimit *rl, const char *key, int64_t now_us);
/* Looks without taking: would a request from key be refused now? */
bool ratelimit_exhausted(struct ratelimit *rl, const char *key, int64_t now_us);
int64_t ratelimit_limit(const struct ratelimit *rl);

/* Limiters for keys that each carry their own limit (a site connection's rate limit,
 * which can change at any time): one limiter per distinct limit, made on first use and
 * kept until ratelimit_set_free. Thread-safe. */
struct ratelimit_set;
struct ratelimit_set *ratelimit_set_new(int64_t period_s);
void ratelimit_set_free(struct ratelimit_set *set);
/* The set's limiter for limit (owned by the set). */
struct ratelimit *ratelimit_set_for(struct ratelimit_set *set, int64_t limit);

#endif
