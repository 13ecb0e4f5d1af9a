/* dispatch.c - see dispatch.h. A thread holds a store connection only to claim and to
 * record, never across the HTTP call, so a slow receiver keeps no connection busy. */
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>

#include "files/leases.h"
#include "util/buf.h"
#include "util/crashpoint.h"
#include "util/crypto.h"
#include "util/log.h"
#include "util/outcall.h"
#include "util/timeutil.h"
#include "webhooks/dispatch.h"
#include "webhooks/whsign.h"

#define CANDIDATES 8 /* due deliveries looked at per claim */

struct dispatcher {
    struct store *st;
    struct dispatch_options o;
    struct metrics *metrics;
    char self[LEASES_OWNER_MAX];
    pthread_t threads[DISPATCH_THREADS];
    size_t n_threads;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_bool stop;
    _Atomic int64_t purged_at; /* ms: the last purge's start, so one thread runs it */
};

/* One claimed delivery. */
struct claim {
    char event_id[48], webhook_id[48], token[33];
    int64_t attempts; /* made before this one */
    char *url, *secret, *payload;
};

/* What one attempt came to. */
struct outcome {
    long status; /* 0: no HTTP answer */
    bool ok;
    char error[256];
    struct buf answer; /* its first DISPATCH_LOG_ANSWER bytes */
    size_t answer_bytes;
    int64_t duration_ms;
};

int64_t dispatch_backoff_ms(const struct dispatch_options *o, int64_t failed, double jitter01)
{
    double delay = (double)o->retry_base_ms;
    for (int64_t i = 1; i < failed && delay < (double)o->retry_max_ms; i++)
        delay *= 2;
    if (delay > (double)o->retry_max_ms)
        delay = (double)o->retry_max_ms;
    delay *= 0.8 + 0.4 * jitter01; /* spread, so receivers that come back are not stampeded */
    if (delay > (double)o->retry_max_ms)
        delay = (double)o->retry_max_ms;
    return delay < 1 ? 1 : (int64_t)delay;
}

static double jitter(void)
{
    uint32_t r;
    crypto_random(&r, sizeof(r));
    return (double)r / 4294967296.0;
}

/* --- targets ----------------------------------------------------------------------- */

int dispatch_check_target(const char *url, bool allow_private, struct err *err)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = FERRY_ERR;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        err_set(err, ERR_INVALID, "field 'url' is not a URL with a host");
        goto out;
    }
    char bare[256];
    size_t len = strlen(host);
    if (host[0] == '[' && len > 2) /* an IPv6 literal comes back bracketed */
        snprintf(bare, sizeof(bare), "%.*s", (int)(len - 2), host + 1);
    else
        snprintf(bare, sizeof(bare), "%s", host);
    int gai = getaddrinfo(bare, port, &hints, &res);
    if (gai != 0 || !res) {
        err_set(err, ERR_INVALID, "cannot resolve the webhook's host %.120s: %s", bare,
                gai_strerror(gai));
        goto out;
    }
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (!allow_private && outcall_non_public(a->ai_addr)) {
            err_set(err, ERR_INVALID,
                    "%.120s resolves to a private, link-local or loopback address, which"
                    " webhooks may not reach (see --webhook-allow-private)",
                    bare);
            goto out;
        }
    rc = FERRY_OK;
out:
    if (res)
        freeaddrinfo(res);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

/* --- claiming ---------------------------------------------------------------------- */

struct candidate {
    char event_id[48], webhook_id[48], old_token[33];
};

/* The due deliveries of enabled subscriptions that are not waiting out a failure and
 * whose claim, if any, has lapsed: up to CANDIDATES of the first 32 due, so the claims
 * other threads and nodes hold on the oldest do not hide the rest. */
static int candidates(struct dispatcher *d, struct store_conn *c, int64_t now,
                      struct candidate *out, size_t *n)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_int(now);
    int step = -1;
    *n = 0;
    if (store_query(c,
                    "SELECT d.event_id, d.webhook_id, d.claim_owner, d.claim_token,"
                    " d.claimed_until FROM ferry_webhook_deliveries d"
                    " JOIN ferry_webhooks w ON w.id = d.webhook_id"
                    " WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND w.enabled = 1"
                    " AND (w.retry_at IS NULL OR w.retry_at <= $1)"
                    " ORDER BY d.next_attempt_at LIMIT 32",
                    &v, 1, &rows, NULL) != FERRY_OK)
        goto out;
    while (*n < CANDIDATES && (step = store_rows_next(rows, NULL)) == 1) {
        bool held = !store_rows_isnull(rows, 4) && store_rows_int(rows, 4) >= now &&
                    leases_owner_alive(d->self, store_rows_text(rows, 2));
        if (held)
            continue;
        struct candidate *k = &out[(*n)++];
        snprintf(k->event_id, sizeof(k->event_id), "%s", store_rows_text(rows, 0));
        snprintf(k->webhook_id, sizeof(k->webhook_id), "%s", store_rows_text(rows, 1));
        snprintf(k->old_token, sizeof(k->old_token), "%s",
                 store_rows_isnull(rows, 3) ? "" : store_rows_text(rows, 3));
    }
out:
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

/* Reads what the attempt needs: the target, the secret, the body. */
static bool load_claim(struct store_conn *c, struct claim *k)
{
    struct store_rows *rows = NULL;
    struct store_val v[] = {sv_text(k->event_id), sv_text(k->webhook_id)};
    bool found = false;
    if (store_query(c,
                    "SELECT d.attempts, w.url, w.secret, e.payload FROM ferry_webhook_deliveries d"
                    " JOIN ferry_webhooks w ON w.id = d.webhook_id"
                    " JOIN ferry_webhook_events e ON e.id = d.event_id"
                    " WHERE d.event_id = $1 AND d.webhook_id = $2",
                    v, 2, &rows, NULL) == FERRY_OK &&
        store_rows_next(rows, NULL) == 1) {
        k->attempts = store_rows_int(rows, 0);
        k->url = xstrdup(store_rows_text(rows, 1));
        k->secret = xstrdup(store_rows_text(rows, 2));
        k->payload = xstrdup(store_rows_text(rows, 3));
        found = true;
    }
    store_rows_free(rows);
    return found;
}

/* Takes one due delivery: a compare-and-swap on its claim token, so of two servers that
 * both saw it free only one gets it. */
static bool claim(struct dispatcher *d, struct store_conn *c, struct claim *k)
{
    struct candidate cand[CANDIDATES];
    size_t n = 0;
    int64_t now = time_now_ms();
    if (candidates(d, c, now, cand, &n) != FERRY_OK)
        return false;
    for (size_t i = 0; i < n; i++) {
        int64_t changed = 0;
        crypto_random_hex(k->token, 16);
        struct store_val v[] = {sv_text(cand[i].event_id),
                                sv_text(cand[i].webhook_id),
                                sv_text(d->self),
                                sv_text(k->token),
                                sv_int(now + d->o.timeout_s * 1000 + DISPATCH_CLAIM_MARGIN_MS),
                                sv_text(cand[i].old_token),
                                sv_int(now)};
        /* still due: another node may have attempted it since, and scheduled a retry */
        if (store_run(c,
                      "UPDATE ferry_webhook_deliveries SET claim_owner = $3, claim_token = $4,"
                      " claimed_until = $5 WHERE event_id = $1 AND webhook_id = $2"
                      " AND status = 'pending' AND COALESCE(claim_token, '') = $6"
                      " AND next_attempt_at <= $7",
                      v, 7, &changed, NULL) != FERRY_OK ||
            changed != 1)
            continue;
        memcpy(k->event_id, cand[i].event_id, sizeof(k->event_id)); /* same sizes */
        memcpy(k->webhook_id, cand[i].webhook_id, sizeof(k->webhook_id));
        if (load_claim(c, k))
            return true;
    }
    return false;
}

static void claim_clear(struct claim *k)
{
    free(k->url);
    free(k->secret);
    free(k->payload);
    memset(k, 0, sizeof(*k));
}

/* --- the HTTP call ----------------------------------------------------------------- */

struct call_ctx {
    bool allow_private;
    bool refused; /* the address connected to was one deliveries may not reach */
    struct outcome *out;
};

/* Every socket curl opens passes here with the address it is about to connect to: the
 * check that no second DNS answer can get around. */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct call_ctx *ctx = arg;
    (void)purpose;
    if (!ctx->allow_private && outcall_non_public(&a->addr)) {
        ctx->refused = true;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    struct outcome *out = ((struct call_ctx *)arg)->out;
    size_t len = size * n;
    if (out->answer.len < DISPATCH_LOG_ANSWER) {
        size_t keep = DISPATCH_LOG_ANSWER - out->answer.len;
        buf_append(&out->answer, data, len < keep ? len : keep);
    }
    out->answer_bytes += len;
    return out->answer_bytes > DISPATCH_MAX_ANSWER ? 0 : len; /* 0: curl stops reading */
}

static struct curl_slist *message_headers(const struct claim *k, int64_t ts, const char *sig)
{
    char line[320];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
    snprintf(line, sizeof(line), "webhook-id: %s", k->event_id);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "webhook-timestamp: %lld", (long long)ts);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "webhook-signature: %s", sig);
    return curl_slist_append(h, line);
}

static void post(const struct dispatch_options *o, const struct claim *k, struct outcome *out)
{
    char sig[WHSIGN_SIGNATURE_MAX];
    struct err err = {0};
    int64_t ts = time_now_ms() / 1000, t0 = time_mono_us();
    size_t len = strlen(k->payload);
    if (whsign_sign(k->secret, k->event_id, ts, k->payload, len, sig, &err) != FERRY_OK) {
        snprintf(out->error, sizeof(out->error), "%.200s", err.msg);
        return;
    }
    CURL *curl = curl_easy_init();
    if (!curl)
        abort(); /* allocation policy: see ferry.h */
    struct call_ctx ctx = {.allow_private = o->allow_private, .out = out};
    struct curl_slist *headers = message_headers(k, ts, sig);
    curl_easy_setopt(curl, CURLOPT_URL, k->url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, k->payload);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "ferry-webhooks/" FERRY_VERSION);
    outcall_curl_defaults(curl, o->timeout_s);
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &ctx);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &ctx);
    CURLcode res = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
    if (ctx.refused)
        snprintf(out->error, sizeof(out->error),
                 "refused: the target address is private, link-local or loopback"
                 " (see --webhook-allow-private)");
    else if (res != CURLE_OK && !(res == CURLE_WRITE_ERROR && out->status))
        snprintf(out->error, sizeof(out->error), "%s", curl_easy_strerror(res));
    else if (out->status < 200 || out->status > 299)
        snprintf(out->error, sizeof(out->error), "the receiver answered %ld", out->status);
    out->ok = !out->error[0];
    out->duration_ms = (time_mono_us() - t0) / 1000;
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
}

/* --- recording --------------------------------------------------------------------- */

static int log_attempt(struct store_conn *c, const struct claim *k, const struct outcome *out,
                       int64_t now, struct err *err)
{
    char *answer = out->answer.len ? xstrndup(out->answer.data, out->answer.len) : NULL;
    struct store_val v[] = {sv_text(k->event_id),
                            sv_text(k->webhook_id),
                            sv_int(k->attempts + 1),
                            sv_int(now),
                            out->status ? sv_int(out->status) : sv_null(),
                            sv_int(out->ok),
                            sv_int(out->duration_ms),
                            sv_text(out->ok ? NULL : out->error),
                            sv_text(answer)};
    int rc = store_run(c,
                       "INSERT INTO ferry_webhook_attempts(event_id, webhook_id, attempt, at,"
                       " status, ok, duration_ms, error, response)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                       v, 9, NULL, err);
    free(answer);
    return rc;
}

/* The delivery's new state, where this attempt still holds its claim. */
static int update_delivery(struct store_conn *c, const struct claim *k, const struct outcome *out,
                           const char *status, int64_t next, int64_t now, struct err *err)
{
    int64_t changed = 0;
    struct store_val v[] = {sv_text(k->event_id),
                            sv_text(k->webhook_id),
                            sv_text(k->token),
                            sv_text(status),
                            sv_int(next),
                            out->status ? sv_int(out->status) : sv_null(),
                            sv_text(out->ok ? NULL : out->error),
                            out->ok ? sv_int(now) : sv_null()};
    if (store_run(c,
                  "UPDATE ferry_webhook_deliveries SET status = $4, attempts = attempts + 1,"
                  " next_attempt_at = $5, last_status = $6, last_error = $7, delivered_at = $8,"
                  " claim_owner = NULL, claim_token = NULL, claimed_until = NULL"
                  " WHERE event_id = $1 AND webhook_id = $2 AND claim_token = $3",
                  v, 8, &changed, err) != FERRY_OK)
        return FERRY_ERR;
    return changed == 1 ? FERRY_OK
                        : err_set(err, ERR_CONFLICT, "the delivery was redelivered or removed");
}

/* A failure: the delivery waits out its backoff and the subscription with it; enough
 * failures in a row (or 410 Gone) disable the subscription. *disabled says whether. */
static int record_failure(struct dispatcher *d, struct store_conn *c, const struct claim *k,
                          const struct outcome *out, int64_t now, bool *disabled, struct err *err)
{
    int64_t failures = 0;
    bool found = false;
    struct store_val id = sv_text(k->webhook_id);
    if (store_query_int(c, "SELECT failures FROM ferry_webhooks WHERE id = $1", &id, 1, &failures,
                        &found, err) != FERRY_OK)
        return FERRY_ERR;
    int64_t next = now + dispatch_backoff_ms(&d->o, k->attempts + 1, jitter());
    *disabled = failures + 1 >= d->o.disable_after || out->status == 410;
    const char *status = !*disabled && k->attempts + 1 >= d->o.disable_after ? "failed" : "pending";
    char reason[320];
    snprintf(reason, sizeof(reason), "%lld consecutive failed deliveries; the last: %.250s",
             (long long)(failures + 1), out->error);
    struct store_val v[] = {sv_text(k->webhook_id), sv_int(next), sv_int(now), sv_int(*disabled),
                            sv_text(reason)};
    if (update_delivery(c, k, out, status, next, now, err) != FERRY_OK)
        return FERRY_ERR;
    return store_run(c,
                     "UPDATE ferry_webhooks SET failures = failures + 1, retry_at = $2,"
                     " updated_at = $3, enabled = CASE WHEN $4 = 1 THEN 0 ELSE enabled END,"
                     " disabled_at = CASE WHEN $4 = 1 THEN $3 ELSE disabled_at END,"
                     " disabled_reason = CASE WHEN $4 = 1 THEN $5 ELSE disabled_reason END"
                     " WHERE id = $1",
                     v, 5, NULL, err);
}

/* A 2xx: the delivery is done and the subscription's failure count starts over. */
static int record_success(struct store_conn *c, const struct claim *k, const struct outcome *out,
                          int64_t now, struct err *err)
{
    struct store_val id = sv_text(k->webhook_id);
    if (update_delivery(c, k, out, "delivered", now, now, err) != FERRY_OK)
        return FERRY_ERR;
    return store_run(c, "UPDATE ferry_webhooks SET failures = 0, retry_at = NULL WHERE id = $1",
                     &id, 1, NULL, err);
}

/* Records the attempt and its consequences in one transaction; nothing when the claim
 * was lost meanwhile (a re-delivery or an unsubscribe took the row). */
static void record(struct dispatcher *d, struct store_conn *c, const struct claim *k,
                   const struct outcome *out)
{
    struct err err = {0};
    int64_t now = time_now_ms();
    bool disabled = false;
    int rc = FERRY_ERR;
    if (store_begin(c, &err) == FERRY_OK && log_attempt(c, k, out, now, &err) == FERRY_OK &&
        (out->ok ? record_success(c, k, out, now, &err)
                 : record_failure(d, c, k, out, now, &disabled, &err)) == FERRY_OK)
        rc = store_commit(c, &err);
    store_rollback(c);
    metrics_webhook_delivery(d->metrics, out->ok);
    if (rc != FERRY_OK && err.code != ERR_CONFLICT)
        log_warn("webhook_record_failed", json_pack("{s:s, s:s, s:s}", "msg", err.msg, "webhook",
                                                    k->webhook_id, "event", k->event_id));
    if (rc == FERRY_OK && disabled)
        log_warn("webhook_disabled",
                 json_pack("{s:s, s:s, s:s}", "msg", "webhook subscription disabled after failures",
                           "webhook", k->webhook_id, "error", out->error));
}

/* --- retention --------------------------------------------------------------------- */

int dispatch_purge(struct store_conn *c, int64_t before, int64_t *removed, struct err *err)
{
    struct store_val v = sv_int(before);
    int rc = FERRY_ERR;
    if (store_begin(c, err) == FERRY_OK &&
        store_run(c,
                  "DELETE FROM ferry_webhook_deliveries WHERE status <> 'pending'"
                  " AND created_at < $1",
                  &v, 1, removed, err) == FERRY_OK &&
        store_run(c,
                  "DELETE FROM ferry_webhook_attempts WHERE at < $1 AND NOT EXISTS (SELECT 1"
                  " FROM ferry_webhook_deliveries d WHERE d.event_id ="
                  " ferry_webhook_attempts.event_id AND d.webhook_id ="
                  " ferry_webhook_attempts.webhook_id)",
                  &v, 1, NULL, err) == FERRY_OK &&
        store_run(c,
                  "DELETE FROM ferry_webhook_events WHERE created_at < $1 AND NOT EXISTS"
                  " (SELECT 1 FROM ferry_webhook_deliveries d WHERE d.event_id ="
                  " ferry_webhook_events.id)",
                  &v, 1, NULL, err) == FERRY_OK)
        rc = store_commit(c, err);
    store_rollback(c);
    return rc;
}

/* Purges once per DISPATCH_PURGE_MS across the threads (the compare-and-swap picks one). */
static void maybe_purge(struct dispatcher *d)
{
    int64_t now = time_now_ms(), last = atomic_load(&d->purged_at);
    struct store_conn *c = NULL;
    struct err err = {0};
    int64_t removed = 0;
    if (now - last < DISPATCH_PURGE_MS ||
        !atomic_compare_exchange_strong(&d->purged_at, &last, now))
        return;
    if (store_acquire(d->st, &c, &err) != FERRY_OK ||
        dispatch_purge(c, now - d->o.retention_ms, &removed, &err) != FERRY_OK)
        log_warn("webhook_purge_failed", json_pack("{s:s}", "msg", err.msg));
    store_release(c);
}

/* --- the threads ------------------------------------------------------------------- */

/* Claims and attempts one delivery; false when none was due. */
static bool run_once(struct dispatcher *d)
{
    struct store_conn *c = NULL;
    struct claim k = {0};
    bool claimed = false;
    if (store_acquire(d->st, &c, NULL) == FERRY_OK)
        claimed = claim(d, c, &k);
    store_release(c);
    c = NULL;
    if (!claimed)
        return false;
    struct outcome out = {0};
    buf_init(&out.answer);
    post(&d->o, &k, &out);
    CRASH_AT("webhooks.after_post"); /* the receiver has it; nothing is recorded yet */
    if (store_acquire(d->st, &c, NULL) == FERRY_OK)
        record(d, c, &k, &out);
    store_release(c);
    buf_cleanup(&out.answer);
    claim_clear(&k);
    return true;
}

static void *thread_main(void *arg)
{
    struct dispatcher *d = arg;
    int64_t poll_ms = d->o.retry_base_ms / 2;
    if (poll_ms > DISPATCH_POLL_MS)
        poll_ms = DISPATCH_POLL_MS;
    if (poll_ms < 50)
        poll_ms = 50;
    while (!atomic_load(&d->stop)) {
        maybe_purge(d);
        if (run_once(d))
            continue;
        struct timespec until = time_after_ms(CLOCK_REALTIME, poll_ms);
        pthread_mutex_lock(&d->lock);
        while (!atomic_load(&d->stop) && pthread_cond_timedwait(&d->wake, &d->lock, &until) == 0)
            ;
        pthread_mutex_unlock(&d->lock);
    }
    return NULL;
}

int dispatch_start(struct store *st, const struct dispatch_options *o, struct metrics *metrics,
                   struct dispatcher **out, struct err *err)
{
    struct dispatcher *d = xcalloc(1, sizeof(*d));
    d->st = st;
    d->o = *o;
    d->metrics = metrics;
    leases_self(d->self);
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    for (size_t i = 0; i < DISPATCH_THREADS; i++) {
        if (pthread_create(&d->threads[i], NULL, thread_main, d) != 0)
            break;
        d->n_threads++;
    }
    *out = d;
    if (d->n_threads == 0) {
        dispatch_stop(d);
        *out = NULL;
        return err_set(err, ERR_INTERNAL, "cannot start the webhook delivery threads");
    }
    return FERRY_OK;
}

void dispatch_stop(struct dispatcher *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    atomic_store(&d->stop, true);
    pthread_cond_broadcast(&d->wake);
    pthread_mutex_unlock(&d->lock);
    for (size_t i = 0; i < d->n_threads; i++)
        pthread_join(d->threads[i], NULL);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    free(d);
}
