/* transport.c - see transport.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "client/transport.h"
#include "ferry.h"
#include "util/buf.h"
#include "util/crypto.h"

#define BACKOFF_FIRST_MS 200
#define BACKOFF_MAX_MS 10000
#define RETRY_AFTER_MAX_S 60

/* The largest answer kept, decoded: a page of changes is far smaller, and a server (or
 * something in its place) that sends more, or a compressed bomb, must not exhaust the
 * device's memory. */
#define MAX_ANSWER (64 * 1024 * 1024)

struct exchange {
    struct buf body;
    long retry_after_s; /* -1: none */
    bool too_large;
};

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    struct exchange *x = ctx;
    if (x->body.len + size * n > MAX_ANSWER) {
        x->too_large = true;
        return 0; /* curl stops with a write error */
    }
    buf_append(&x->body, data, size * n);
    return size * n;
}

static size_t on_header(char *line, size_t size, size_t n, void *ctx)
{
    struct exchange *x = ctx;
    if (size * n > 12 && !strncasecmp(line, "Retry-After:", 12))
        x->retry_after_s = strtol(line + 12, NULL, 10);
    return size * n;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether another connection committed to the replica since the long poll began
 * (looked at no more than every 200 ms). */
static bool local_commit(ferry_replica *r)
{
    int64_t now = now_ms(), version = r->data_version;
    if (now - r->checked_ms < 200)
        return false;
    r->checked_ms = now;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return version != r->data_version;
}

void fc_snapshot_local(ferry_replica *r)
{
    sqlite3_stmt *st = NULL;
    r->data_version = 0;
    if (sqlite3_prepare_v2(r->db, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        r->data_version = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
}

/* libcurl's progress callback: a non-zero answer abandons the exchange. */
static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    ferry_replica *r = ctx;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return fc_stopping(r) || (r->watch_local && local_commit(r));
}

/* Sleeps before attempt number attempt (1: the first retry): BACKOFF_FIRST_MS doubling up
 * to BACKOFF_MAX_MS, a random half to all of it, or what Retry-After asked for; in short
 * steps, so a stop is noticed. */
static void back_off(ferry_replica *r, int attempt, long retry_after_s)
{
    long ms = BACKOFF_FIRST_MS;
    for (int i = 1; i < attempt && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    uint32_t rnd = 0;
    crypto_random(&rnd, sizeof(rnd));
    ms = ms / 2 + (long)(rnd % (uint32_t)(ms / 2 + 1));
    if (retry_after_s > 0)
        ms = (retry_after_s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : retry_after_s) * 1000;
    for (int64_t end = now_ms() + ms; !fc_stopping(r) && now_ms() < end;) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

struct curl_slist *fc_curl_base(ferry_replica *r, const char *url, struct curl_slist *headers)
{
    char *auth = xasprintf("Authorization: Bearer %s", r->token);
    headers = curl_slist_append(headers, auth);
    free(auth);
    curl_easy_reset(r->curl);
    curl_easy_setopt(r->curl, CURLOPT_URL, url);
    curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (r->ca_file)
        curl_easy_setopt(r->curl, CURLOPT_CAINFO, r->ca_file);
    return headers;
}

static CURLcode perform(ferry_replica *r, const char *method, const char *url, const char *body,
                        struct exchange *x, long *status)
{
    struct curl_slist *headers = NULL;
    CURL *c = r->curl;

    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = fc_curl_base(r, url, headers);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); /* whatever libcurl can decode */
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(headers);
    return rc;
}

bool fc_is_page(json_t *answer)
{
    return json_is_array(json_object_get(answer, "changes")) &&
           json_is_integer(json_object_get(answer, "cursor")) &&
           json_is_boolean(json_object_get(answer, "hasMore"));
}

bool fc_is_sha256(const char *s)
{
    return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

const char *fc_answer_message(json_t *answer)
{
    /* details first: where an answer has both, it is the specific one */
    static const char *const keys[] = {"details", "detail", "message", "error"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(answer, keys[i]);
        if (json_is_string(v))
            return json_string_value(v);
        if (json_is_object(v) && json_is_string(json_object_get(v, "message")))
            return json_string_value(json_object_get(v, "message"));
    }
    return "no reason given";
}

int fc_http(ferry_replica *r, const char *method, const char *path, json_t *body, long *status,
            json_t **answer)
{
    char *url = xasprintf("%s%s", r->url, path);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    int rc = FERRY_CLIENT_ENETWORK;
    long retry_after_s = -1;

    *answer = NULL;
    for (int attempt = 0; attempt < r->max_attempts && !fc_stopping(r); attempt++) {
        struct exchange x = {.retry_after_s = -1};
        buf_init(&x.body);
        if (attempt)
            back_off(r, attempt, retry_after_s);
        CURLcode cc = perform(r, method, url, text, &x, status);
        /* an answer too large is too large again: no retry */
        bool retry = !x.too_large && (cc != CURLE_OK || *status == 429 || *status >= 500);
        if (x.too_large) {
            rc = fc_fail(r, FERRY_CLIENT_ESERVER, "%s %s: the answer is larger than %d MiB", method,
                         path, MAX_ANSWER / (1024 * 1024));
            buf_cleanup(&x.body);
            break;
        }
        if (cc != CURLE_OK)
            rc =
                fc_fail(r, FERRY_CLIENT_ENETWORK, "%s %s: %s", method, url, curl_easy_strerror(cc));
        else if (retry)
            rc = fc_fail(r, FERRY_CLIENT_ESERVER, "%s %s: HTTP %ld", method, path, *status);
        retry_after_s = x.retry_after_s;
        if (!retry) {
            bool taken = r->on_answer && *status == 200 &&
                         r->on_answer(r->on_answer_ctx, x.body.data, x.body.len);
            *answer = x.body.len && !taken ? json_loadb(x.body.data, x.body.len, 0, NULL) : NULL;
            /* A success whose JSON does not parse was cut on the way: ask again. */
            if (*status < 300 && x.body.len && !*answer && !taken) {
                retry = true;
                rc = fc_fail(r, FERRY_CLIENT_ENETWORK, "%s %s: a truncated answer", method, path);
            }
        }
        if (!retry) {
            rc = FERRY_CLIENT_OK;
            if (*status == 401 || *status == 403)
                rc = fc_fail(r, FERRY_CLIENT_EAUTH, "%s %s: HTTP %ld: %s", method, path, *status,
                             fc_answer_message(*answer));
        }
        buf_cleanup(&x.body);
        if (!retry)
            break;
    }
    free(url);
    free(text);
    return rc;
}

void fc_wait_changes(ferry_replica *r, int64_t cursor)
{
    char *url = xasprintf("%s/api/v1/sync/changes?cursor=%lld&limit=1&wait=%d%s%s", r->url,
                          (long long)cursor, r->poll_s, r->device_id ? "&deviceId=" : "",
                          r->device_id ? r->device_id : "");
    struct exchange x = {.retry_after_s = -1};
    long status = 0, timeout = r->timeout_ms;

    r->checked_ms = 0; /* a commit since the snapshot ends the wait at once */
    r->watch_local = true;
    r->timeout_ms = (long)r->poll_s * 1000 + timeout;
    buf_init(&x.body);
    CURLcode cc = perform(r, "GET", url, NULL, &x, &status);
    r->watch_local = false;
    r->timeout_ms = timeout;
    /* a network failure must not turn the wait into a busy loop */
    if (cc != CURLE_OK && cc != CURLE_ABORTED_BY_CALLBACK)
        back_off(r, 3, x.retry_after_s);
    buf_cleanup(&x.body);
    free(url);
}
