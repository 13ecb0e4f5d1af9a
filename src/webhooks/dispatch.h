/* dispatch.h - delivers the webhook outbox (webhooks.h): a few threads claim due
 * deliveries in the database, POST each event's body, signed per Standard Webhooks 1.0,
 * through libcurl, and record the outcome. At least once: an event keeps its id
 * (webhook-id) on every attempt, and only a 2xx answer ends its retries.
 *
 * - Claims are rows (claim_owner, claim_token, claimed_until), taken by compare-and-swap,
 *   so several servers on one database never attempt the same delivery at once. A claim
 *   lapses when it expires (the attempt's timeout plus a margin) or at once when its
 *   owner is a process of this host that is gone (files/leases.h), so kill -9 loses
 *   nothing.
 * - A failed attempt is retried after retry_base, doubling up to retry_max, each delay
 *   spread by +-20% of jitter; the subscription waits as long before its next attempt of
 *   any event, so a receiver that is down is not hammered. After disable_after
 *   consecutive failed attempts (or a 410 Gone) the subscription is disabled; its pending
 *   deliveries wait for it to be enabled again. A delivery that fails disable_after times
 *   while its subscription keeps working for other events is marked failed.
 * - Only http and https, no redirects, no proxies; the address actually connected to is
 *   checked (CURLOPT_OPENSOCKETFUNCTION), so a name that resolves to a private, loopback
 *   or link-local address, or rebinds to one, is refused unless allow_private. Answers
 *   are read up to DISPATCH_MAX_ANSWER bytes and logged up to DISPATCH_LOG_ANSWER. */
#ifndef FERRY_DISPATCH_H
#define FERRY_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry.h"
#include "ops/metrics.h"
#include "store/store.h"

#define DISPATCH_THREADS 4
#define DISPATCH_MAX_ANSWER (64 * 1024)
#define DISPATCH_LOG_ANSWER 1024
#define DISPATCH_CLAIM_MARGIN_MS 30000 /* a claim outlives its attempt's timeout by this */
#define DISPATCH_POLL_MS 1000          /* how often idle threads look for due deliveries */
#define DISPATCH_PURGE_MS 3600000      /* how often one thread removes what retention let go */

struct dispatch_options {
    int64_t retry_base_ms;
    int64_t retry_max_ms;
    long timeout_s;
    int64_t disable_after;
    bool allow_private;
    int64_t retention_ms; /* finished deliveries, their attempts and events are kept this long */
};

/* The delay before attempt n + 1 after n failed ones (n >= 1), with jitter01 in [0, 1)
 * spreading it by -20%..+20%; never more than retry_max_ms. */
int64_t dispatch_backoff_ms(const struct dispatch_options *o, int64_t failed, double jitter01);

/* Checks that url is an http or https URL whose host resolves only to addresses
 * deliveries may reach (ERR_INVALID says why not). */
int dispatch_check_target(const char *url, bool allow_private, struct err *err);

struct dispatcher;

/* Starts the delivery threads on st; metrics (may be NULL) counts deliveries. */
int dispatch_start(struct store *st, const struct dispatch_options *o, struct metrics *metrics,
                   struct dispatcher **out, struct err *err);

/* Removes deliveries finished (delivered or failed) before `before` (ms), attempts no
 * delivery has any more, and events no delivery names; *removed counts deliveries. */
int dispatch_purge(struct store_conn *c, int64_t before, int64_t *removed, struct err *err);

/* Stops the threads after their current attempt; dispatch_stop(NULL) does nothing. */
void dispatch_stop(struct dispatcher *d);

#endif
