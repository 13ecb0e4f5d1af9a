/* jwks.c - see jwks.h. Thread safety: every member below the mutex is read and written
 * with it held; the key sets themselves are immutable and reference counted, so a
 * request verifies with the set it took while the thread publishes the next one. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "auth/jwks.h"
#include "util/buf.h"
#include "util/log.h"

/* How long the request that asks for a fetch waits for it. Only that one request waits
 * (requests arriving while a fetch is under way are answered at once), and such fetches
 * come at most once per min_interval_ms, so tokens with made-up key ids hold at most one
 * HTTP thread (and the connections libmicrohttpd gives it) for this long per interval.
 * A fetch that takes longer goes on; the next request with that key id finds it done. */
#define MAX_WAIT_MS 1000

struct jwks_cache {
    char *url;
    struct jwks_options o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* the thread: a fetch is wanted, or stop */
    pthread_cond_t done; /* waiting requests: a fetch ended */
    struct jws_keyset *keys;
    bool wanted, stopping, fetching, last_ok, running;
    uint64_t generation;   /* fetches ended */
    int64_t last_start_ms; /* monotonic */
    int64_t next_due_ms;   /* monotonic */
    char last_error[sizeof(((struct err *)0)->msg)];
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t when_ms)
{
    struct timespec ts = {.tv_sec = when_ms / 1000, .tv_nsec = (when_ms % 1000) * 1000000};
    pthread_cond_timedwait(cond, mu, &ts);
}

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
    struct buf *b = ctx;
    if (b->len + size * n > JWKS_MAX_BYTES)
        return 0; /* too big: curl stops with a write error */
    buf_append(b, data, size * n);
    return size * n;
}

/* One fetch. The provider is the operator's choice, so unlike calls to other sites it
 * may be on a private address, and the environment's proxy settings apply. */
static struct jws_keyset *fetch(const struct jwks_cache *c, struct err *err)
{
    CURL *curl = curl_easy_init();
    struct jws_keyset *set = NULL;
    struct buf answer;
    long status = 0;

    buf_init(&answer);
    if (!curl) {
        err_set(err, ERR_UNAVAILABLE, "cannot start an HTTP client");
        goto out;
    }
    curl_easy_setopt(curl, CURLOPT_URL, c->url);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "ferry/" FERRY_VERSION);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)c->o.timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)c->o.timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    CURLcode res = curl_easy_perform(curl);
    if (res != CURLE_OK) {
        err_set(err, ERR_UNAVAILABLE, "%s", curl_easy_strerror(res));
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        err_set(err, ERR_UNAVAILABLE, "the key set URL answered HTTP %ld", status);
        goto out;
    }
    jws_keyset_from_jwks(answer.data, answer.len, &set, err);
out:
    curl_easy_cleanup(curl);
    buf_cleanup(&answer);
    return set;
}

/* Publishes the outcome of a fetch that started at started_ms. Call with mu held. */
static void publish(struct jwks_cache *c, struct jws_keyset *set, const struct err *err,
                    int64_t started_ms)
{
    c->last_ok = set != NULL;
    if (set) {
        jws_keyset_unref(c->keys);
        c->keys = set;
        c->next_due_ms = started_ms + c->o.refresh_ms;
        c->last_error[0] = '\0';
    } else {
        c->next_due_ms = started_ms + c->o.min_interval_ms;
        snprintf(c->last_error, sizeof(c->last_error), "%s", err->msg);
    }
    c->generation++;
    c->fetching = false;
    pthread_cond_broadcast(&c->done);
}

static void log_outcome(const struct jwks_cache *c, const struct jws_keyset *set,
                        const struct err *err)
{
    if (set)
        log_info("jwks_fetched",
                 json_pack("{s:s, s:I}", "url", c->url, "keys", (json_int_t)set->n));
    else
        log_warn("jwks_fetch_failed", json_pack("{s:s, s:s}", "url", c->url, "msg", err->msg));
}

static void *run(void *arg)
{
    struct jwks_cache *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stopping && !c->wanted && mono_ms() < c->next_due_ms)
            wait_until(&c->wake, &c->mu, c->next_due_ms);
        if (c->stopping)
            break;
        c->wanted = false;
        c->fetching = true;
        c->last_start_ms = mono_ms();
        int64_t started = c->last_start_ms;
        pthread_mutex_unlock(&c->mu);
        struct err err = {0};
        struct jws_keyset *set = fetch(c, &err);
        log_outcome(c, set, &err);
        pthread_mutex_lock(&c->mu);
        publish(c, set, &err, started);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int jwks_cache_open(const struct jwks_options *o, struct jwks_cache **out, struct err *err)
{
    if (strncasecmp(o->url, "http://", 7) != 0 && strncasecmp(o->url, "https://", 8) != 0)
        return err_set(err, ERR_INVALID, "jwt-jwks-url must be an http:// or https:// URL");
    struct jwks_cache *c = xcalloc(1, sizeof(*c));
    pthread_condattr_t attr;
    c->url = xstrdup(o->url);
    c->o = *o;
    c->o.url = c->url;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->wake, &attr);
    pthread_cond_init(&c->done, &attr);
    pthread_condattr_destroy(&attr);
    c->keys = jws_keyset_new();

    struct err fetch_err = {0};
    int64_t started = mono_ms();
    struct jws_keyset *set = fetch(c, &fetch_err);
    log_outcome(c, set, &fetch_err);
    c->last_start_ms = started;
    publish(c, set, &fetch_err, started);
    int rc = pthread_create(&c->thread, NULL, run, c);
    c->running = rc == 0;
    if (rc != 0) {
        jwks_cache_close(c);
        return err_set(err, ERR_INTERNAL, "cannot start the key set thread: %s", strerror(rc));
    }
    *out = c;
    return FERRY_OK;
}

void jwks_cache_close(struct jwks_cache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    bool started = c->running;
    pthread_cond_broadcast(&c->wake);
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->mu);
    if (started)
        pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->done);
    pthread_mutex_destroy(&c->mu);
    jws_keyset_unref(c->keys);
    free(c->url);
    free(c);
}

struct jws_keyset *jwks_cache_keys(struct jwks_cache *c)
{
    pthread_mutex_lock(&c->mu);
    struct jws_keyset *set = jws_keyset_ref(c->keys);
    pthread_mutex_unlock(&c->mu);
    return set;
}

/* Whether the caller may ask for a fetch now; sets err when not. Call with mu held. */
static bool may_refresh(const struct jwks_cache *c, int64_t now, struct err *err)
{
    if (c->stopping) {
        err_set(err, ERR_UNAUTHORIZED, "ferry is stopping");
        return false;
    }
    if (c->fetching || c->wanted) {
        err_set(err, ERR_UNAUTHORIZED,
                "the identity provider's key set is being fetched; try again in a moment");
        return false;
    }
    if (now - c->last_start_ms < c->o.min_interval_ms) {
        if (c->last_ok)
            err_set(err, ERR_UNAUTHORIZED, "the key set was refreshed %lld s ago",
                    (long long)((now - c->last_start_ms) / 1000));
        else
            err_set(err, ERR_UNAUTHORIZED,
                    "the identity provider's key set could not be fetched: %s", c->last_error);
        return false;
    }
    return true;
}

struct jws_keyset *jwks_cache_refresh(struct jwks_cache *c, const struct jws_keyset *had,
                                      struct err *err)
{
    struct jws_keyset *set = NULL;
    pthread_mutex_lock(&c->mu);
    int64_t now = mono_ms();
    int64_t deadline = now + (c->o.timeout_ms < MAX_WAIT_MS ? c->o.timeout_ms : MAX_WAIT_MS);
    uint64_t gen = c->generation;
    if (c->keys != had && c->last_ok) {
        set = jws_keyset_ref(c->keys); /* another request's refresh got here first */
        goto out;
    }
    if (!may_refresh(c, now, err))
        goto out;
    c->wanted = true;
    pthread_cond_signal(&c->wake);
    while (c->generation == gen && !c->stopping && mono_ms() < deadline)
        wait_until(&c->done, &c->mu, deadline);
    if (c->generation == gen)
        err_set(err, ERR_UNAUTHORIZED,
                "the identity provider's key set is being fetched; try again in a moment");
    else if (!c->last_ok)
        err_set(err, ERR_UNAUTHORIZED, "the identity provider's key set could not be fetched: %s",
                c->last_error);
    else
        set = jws_keyset_ref(c->keys);
out:
    pthread_mutex_unlock(&c->mu);
    return set;
}
